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
static void l7_backend_close_socket(struct conn *c)
{
    struct l7 *l = c->l7;

    if (c->bev.fd >= 0) {
        close(c->bev.fd); /* also leaves epoll */
        c->bev.fd = -1;
    }
    SSL_free(l->bssl);
    l->bssl = NULL;
    l->bhandshaken = false;
    l->connecting = false;
    l->backend_eof = l->backend_shut = false;
    l->bin.len = 0;
}

void l7_backend_close(struct conn *c)
{
    struct l7 *l = c->l7;

    l7_backend_close_socket(c);
    l->bout.len = l->bout.off = 0;
    l->replay = false;
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
static bool l7_backend_put_proxy_header(struct conn *c)
{
    struct l7_buf *out = &c->l7->bout;
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
static bool l7_backend_send_proxy_header(struct conn *c)
{
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36];
    size_t n = l7_backend_proxy_header(c, hdr);

    return n > 0 && send(c->bev.fd, hdr, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

/* A new connection to the route's backend. */
static bool l7_backend_open(struct conn *c, ev_fn *cb)
{
    struct l7 *l = c->l7;
    const struct mc_addr *to = &c->route->backend_addr;
    int one = 1;

    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = (struct ev){.fd = fd, .cb = cb, .data = c};
    c->t_connect_us = shm_clock_us();
    if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS) {
        log_errno(LOGL_DEBUG, errno, "connect() to %s", c->route->backend);
        return false;
    }
    l->connecting = true;
    if (loop_add(c->w->loop, &c->bev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        return false;
    return !c->route->send_proxy_protocol || c->route->backend_tls ||
           l7_backend_put_proxy_header(c);
}

/* The connection this client used last (a PROXY route's, kept for it),
 * an idle one from the pool, or a new one. */
bool l7_backend_connect(struct conn *c, ev_fn *cb)
{
    struct l7 *l = c->l7;

    l->reused = c->bev.fd >= 0 || (!c->route->send_proxy_protocol && l7_pool_take(c, cb));
    if (l->reused)
        l->bready = true; /* it may have said something while it waited */
    return l->reused || l7_backend_open(c, cb);
}

/* An idle connection that proved dead before any response byte: the
 * request, kept whole in bout (l->replay), goes once more on a new one. */
bool l7_backend_retry(struct conn *c, ev_fn *cb)
{
    struct l7 *l = c->l7;

    log_debug("idle connection to %s was closed: request sent again", c->route->backend);
    l7_backend_close_socket(c);
    l->bout.off = 0;
    l->replay = l->reused = false;
    return l7_backend_open(c, cb);
}

/* The exchange is over: a connection fit for another request goes to the
 * pool, or stays for this client when a PROXY header names it; else it
 * is closed. */
void l7_backend_release(struct conn *c)
{
    struct l7 *l = c->l7;
    bool reusable = c->bev.fd >= 0 && !l->connecting && !l->tunnel && l->rs == RS_DONE &&
                    l->resp.keep_alive && l->resp.body != HTTP1_BODY_CLOSE && l->rq == RQ_DONE &&
                    l->bout.len == 0 && l->bin.len == 0 && !l->backend_eof &&
                    (l->bssl == NULL || l->bhandshaken);

    if (!reusable)
        l7_backend_close(c);
    else if (!c->route->send_proxy_protocol)
        l7_pool_put(c);
}

/*
 * backend_tls: the client side of TLS to the backend, one context per
 * worker. SNI is the route's name (the client's for a wildcard route);
 * the backend's certificate is not verified (SPEC section 6), which the
 * master says at start.
 */
static SSL *l7_backend_ssl(struct conn *c)
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
    if (ssl == NULL || SSL_set_fd(ssl, c->bev.fd) != 1 ||
        (name[0] != '\0' && SSL_set_tlsext_host_name(ssl, name) != 1)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* One send to the backend: bytes taken, 0 when it would block, -1 on error. */
static ssize_t l7_backend_send(struct conn *c, const uint8_t *p, size_t n)
{
    struct l7 *l = c->l7;

    if (l->bssl != NULL) {
        int r = SSL_write(l->bssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->bssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
    }
    for (;;) {
        ssize_t r = send(c->bev.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? 0 : -1;
    }
}

/* One read from the backend: bytes read, 0 at EOF, MC_AGAIN when it would block, -1 on error. */
static ssize_t l7_backend_recv(struct conn *c, uint8_t *p, size_t n)
{
    struct l7 *l = c->l7;

    if (l->bssl != NULL) {
        int r = SSL_read(l->bssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->bssl, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return MC_AGAIN;
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0) ? 0 : -1;
    }
    for (;;) {
        ssize_t r = recv(c->bev.fd, p, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? MC_AGAIN : -1;
    }
}

/* Backend bytes into bin; bout to the backend. */
int l7_backend_io(struct conn *c)
{
    struct l7 *l = c->l7;
    bool moved = false;
    ssize_t n;

    if (c->bev.fd < 0 || l->connecting)
        return 0;
    if (l->bssl != NULL && !l->bhandshaken) {
        int r = SSL_do_handshake(l->bssl);
        if (r != 1) {
            int e = SSL_get_error(l->bssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            log_debug("TLS to backend %s failed: %s", c->route->backend,
                      ERR_reason_error_string(ERR_peek_last_error())
                          ? ERR_reason_error_string(ERR_peek_last_error())
                          : "closed");
            ERR_clear_error();
            return -1;
        }
        l->bhandshaken = true;
        moved = true;
    }
    while (l->bout.off < l->bout.len) {
        if ((n = l7_backend_send(c, l->bout.p + l->bout.off, l->bout.len - l->bout.off)) < 0)
            return -1;
        if (n == 0)
            break;
        l->bout.off += (size_t)n;
        c->up.bytes += (uint64_t)n;
        atomic_fetch_add_explicit(&c->w->slot->bytes_in, (uint64_t)n, memory_order_relaxed);
        moved = true;
    }
    if (l->bout.off == l->bout.len && !l->replay)
        l->bout.len = l->bout.off = 0;
    if (l->tunnel && l->client_eof && l->bout.len == 0 && !l->backend_shut) {
        /* the client is done sending: so are we (TLS: our close_notify) */
        if (l->bssl != NULL)
            SSL_shutdown(l->bssl);
        else
            shutdown(c->bev.fd, SHUT_WR);
        l->backend_shut = true;
    }
    while (!l->backend_eof && (l->bready || l->bssl != NULL) && l7_buf_room(&l->bin, 1)) {
        size_t room = l->bin.cap - l->bin.len;
        n = l7_backend_recv(c, l->bin.p + l->bin.len, room);
        if (n == MC_AGAIN) {
            l->bready = false;
            break;
        }
        if (n < 0)
            return -1;
        if (n == 0) {
            l->backend_eof = true;
            moved = true;
            break;
        }
        l->bin.len += (size_t)n;
        moved = true;
        if (l->replay) {
            /* the backend answers: this connection was alive, no retry */
            l->replay = false;
            if (l->bout.off == l->bout.len)
                l->bout.len = l->bout.off = 0;
        }
        /* a short read of a plain socket drained it: no read just to see EAGAIN
         * (the next segment raises a new edge); OpenSSL's reads say nothing of the socket */
        if (l->bssl == NULL && (size_t)n < room) {
            l->bready = false;
            break;
        }
    }
    return moved;
}

bool l7_backend_connected(struct conn *c)
{
    struct l7 *l = c->l7;

    l->connecting = false;
    l->bready = true;
    shm_observe_connect(c->w->slot, shm_clock_us() - c->t_connect_us);
    if (!c->route->backend_tls)
        return true;
    return (!c->route->send_proxy_protocol || l7_backend_send_proxy_header(c)) &&
           (l->bssl = l7_backend_ssl(c)) != NULL;
}
