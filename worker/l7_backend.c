/* The backend side of an L7 connection, plain TCP or TLS (l7.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/l7.h"
#include "worker/proxy_proto.h"

/* The socket and its TLS only: what was to be sent stays. */
static void l7_backend_close_socket(struct l7_be *b)
{
    if (b->ev.fd >= 0) {
        close(b->ev.fd); /* also leaves epoll */
        b->ev.fd = -1;
    }
    SSL_free(b->ssl);
    b->ssl = NULL;
    b->handshaken = false;
    b->connecting = false;
    b->eof = b->shut = false;
    b->in.len = 0;
}

void l7_backend_close(struct l7_be *b)
{
    l7_backend_close_socket(b);
    b->out.len = b->out.off = 0;
    b->replay = false;
}

void l7_backend_free(struct l7_be *b)
{
    l7_backend_close(b);
    l7_buf_free(&b->out);
    l7_buf_free(&b->in);
}

const char *l7_backend_sni(const struct conn *c)
{
    const char *name = c->route->hostname[0] == '*' ? c->sni : c->route->hostname;
    return name != NULL ? name : "";
}

/* send_proxy_protocol: the v2 header for this client into hdr; its length, or 0. */
static size_t l7_backend_proxy_header(struct conn *c, uint8_t hdr[PROXY_PROTO_V2_HDR + 36])
{
    struct mc_addr local = {.len = sizeof(local.ss)};

    if (c->proxied)
        local = c->local;
    else if (getsockname(c->cev.fd, (struct sockaddr *)&local.ss, &local.len) < 0)
        return 0;
    return proxy_proto_build_v2(hdr, PROXY_PROTO_V2_HDR + 36, &c->client, &local);
}

/* A plaintext backend: the header goes in front of everything else to send. */
static bool l7_backend_put_proxy_header(struct conn *c, struct l7_be *b)
{
    struct l7_buf *out = &b->out;
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36];
    size_t n = l7_backend_proxy_header(c, hdr);

    if (n == 0 || !l7_buf_room(out, n))
        return false;
    memmove(out->p + out->off + n, out->p + out->off, out->len - out->off);
    memcpy(out->p + out->off, hdr, n);
    out->len += n;
    return true;
}

/* A TLS backend: the header goes before the handshake, on a socket just
 * connected, which takes 52 bytes whole. */
static bool l7_backend_send_proxy_header(struct conn *c, struct l7_be *b)
{
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36];
    size_t n = l7_backend_proxy_header(c, hdr);

    return n > 0 && send(b->ev.fd, hdr, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

/* A new connection to the route's backend; b->ev's cb and data are set. */
static bool l7_backend_open(struct conn *c, struct l7_be *b)
{
    const struct mc_addr *to = &c->route->backend_addr;
    int one = 1;

    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    b->ev.fd = fd;
    b->t_connect_us = shm_clock_us();
    if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS) {
        log_errno(LOGL_DEBUG, errno, "connect() to %s", c->route->backend);
        return false;
    }
    b->connecting = true;
    if (loop_add(c->w->loop, &b->ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        return false;
    return !c->route->send_proxy_protocol || c->route->backend_tls ||
           l7_backend_put_proxy_header(c, b);
}

/* The connection b kept (a PROXY route's, kept for its client), an idle
 * one from the pool, or a new one. */
bool l7_backend_connect(struct conn *c, struct l7_be *b, ev_fn *cb, void *data)
{
    b->ev.cb = cb;
    b->ev.data = data;
    b->reused = b->ev.fd >= 0 || (!c->route->send_proxy_protocol && !b->h2 && l7_pool_take(c, b));
    if (b->reused)
        b->ready = true; /* it may have said something while it waited */
    return b->reused || l7_backend_open(c, b);
}

/* An idle connection that proved dead before any response byte: the
 * request, kept whole in out (b->replay), goes once more on a new one. */
bool l7_backend_retry(struct conn *c, struct l7_be *b)
{
    log_debug("idle connection to %s was closed: request sent again", c->route->backend);
    l7_backend_close_socket(b);
    b->out.off = 0;
    b->replay = b->reused = false;
    return l7_backend_open(c, b);
}

bool l7_backend_reusable(const struct l7_be *b)
{
    return b->ev.fd >= 0 && !b->connecting && b->out.len == 0 && b->in.len == 0 && !b->eof &&
           (b->ssl == NULL || b->handshaken);
}

/* The exchange is over: a connection fit for another request goes to the
 * pool, or stays for this client when a PROXY header names it; else it
 * is closed. */
void l7_backend_release(struct conn *c, struct l7_be *b, bool reusable)
{
    if (!reusable || b->h2 || !l7_backend_reusable(b))
        l7_backend_close(b);
    else if (!c->route->send_proxy_protocol)
        l7_pool_put(c, b);
}

/*
 * backend_tls: the client side of TLS to the backend, one context per
 * worker. SNI is the route's name (the client's for a wildcard route);
 * the backend's certificate is not verified (SPEC section 6), which the
 * master says at start.
 */
static SSL *l7_backend_ssl(struct conn *c, struct l7_be *b)
{
    static SSL_CTX *ctx;
    static const uint8_t alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

    if (ctx == NULL) {
        if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
            return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_read_ahead(ctx, 1); /* a record's header and body in one read */
        /* many backends close without close_notify: that is an end, not an error */
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    SSL *ssl = SSL_new(ctx);
    const char *name = l7_backend_sni(c);
    if (ssl == NULL || SSL_set_fd(ssl, b->ev.fd) != 1 ||
        (name[0] != '\0' && SSL_set_tlsext_host_name(ssl, name) != 1)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    if (b->h2) {
        static const uint8_t alpn_h2[] = {2, 'h', '2'};
        if (SSL_set_alpn_protos(ssl, alpn_h2, sizeof(alpn_h2)) != 0) {
            SSL_free(ssl);
            return NULL;
        }
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* One send to the backend: bytes taken, 0 when it would block, -1 on error. */
static ssize_t l7_backend_send(struct l7_be *b, const uint8_t *p, size_t n)
{
    if (b->ssl != NULL) {
        int r = SSL_write(b->ssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(b->ssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
    }
    for (;;) {
        ssize_t r = send(b->ev.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? 0 : -1;
    }
}

/* One read from the backend: bytes read, 0 at EOF, MC_AGAIN when it would block, -1 on error. */
static ssize_t l7_backend_recv(struct l7_be *b, uint8_t *p, size_t n)
{
    if (b->ssl != NULL) {
        int r = SSL_read(b->ssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(b->ssl, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return MC_AGAIN;
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0) ? 0 : -1;
    }
    for (;;) {
        ssize_t r = recv(b->ev.fd, p, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? MC_AGAIN : -1;
    }
}

/* Backend bytes into in; out to the backend. */
int l7_backend_io(struct conn *c, struct l7_be *b)
{
    bool moved = false;
    ssize_t n;

    if (b->ev.fd < 0 || b->connecting)
        return 0;
    if (b->ssl != NULL && !b->handshaken) {
        int r = SSL_do_handshake(b->ssl);
        if (r != 1) {
            int e = SSL_get_error(b->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            log_debug("TLS to backend %s failed: %s", c->route->backend,
                      ERR_reason_error_string(ERR_peek_last_error())
                          ? ERR_reason_error_string(ERR_peek_last_error())
                          : "closed");
            ERR_clear_error();
            return -1;
        }
        b->handshaken = true;
        moved = true;
    }
    while (b->out.off < b->out.len) {
        if ((n = l7_backend_send(b, b->out.p + b->out.off, b->out.len - b->out.off)) < 0)
            return -1;
        if (n == 0)
            break;
        b->out.off += (size_t)n;
        c->up.bytes += (uint64_t)n;
        atomic_fetch_add_explicit(&c->w->slot->bytes_in, (uint64_t)n, memory_order_relaxed);
        moved = true;
    }
    if (b->out.off == b->out.len && !b->replay)
        b->out.len = b->out.off = 0;
    while (!b->eof && (b->ready || b->ssl != NULL) && l7_buf_room(&b->in, 1)) {
        size_t room = b->in.cap - b->in.len;
        n = l7_backend_recv(b, b->in.p + b->in.len, room);
        if (n == MC_AGAIN) {
            b->ready = false;
            break;
        }
        if (n < 0)
            return -1;
        if (n == 0) {
            b->eof = true;
            moved = true;
            break;
        }
        b->in.len += (size_t)n;
        moved = true;
        if (b->replay) {
            /* the backend answers: this connection was alive, no retry */
            b->replay = false;
            if (b->out.off == b->out.len)
                b->out.len = b->out.off = 0;
        }
        /* a short read of a plain socket drained it: no read just to see EAGAIN
         * (the next segment raises a new edge); OpenSSL's reads say nothing of the socket */
        if (b->ssl == NULL && (size_t)n < room) {
            b->ready = false;
            break;
        }
    }
    return moved;
}

void l7_backend_shutdown(struct l7_be *b)
{
    if (b->shut || b->ev.fd < 0)
        return;
    if (b->ssl != NULL)
        SSL_shutdown(b->ssl);
    else
        shutdown(b->ev.fd, SHUT_WR);
    ERR_clear_error();
    b->shut = true;
}

int l7_backend_connect_result(struct conn *c, struct l7_be *b, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        b->ready = true;
    if (!b->connecting)
        return 0;
    int err = conn_connect_result(b->ev.fd, events);
    if (err != 0) {
        if (err != EINPROGRESS)
            log_errno(LOGL_DEBUG, err, "connect() to %s", c->route->backend);
        return err;
    }
    b->connecting = false;
    b->ready = true;
    shm_observe_connect(c->w->slot, shm_clock_us() - b->t_connect_us);
    if (!c->route->backend_tls)
        return 0;
    if ((c->route->send_proxy_protocol && !l7_backend_send_proxy_header(c, b)) ||
        (b->ssl = l7_backend_ssl(c, b)) == NULL)
        return -1;
    return 0;
}
