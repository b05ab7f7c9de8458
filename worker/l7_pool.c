/*
 * The worker's idle keep-alive connections to its L7 backends (l7.h), as
 * nginx's upstream keepalive and HAProxy's idle pools have them: an
 * exchange that leaves its backend connection reusable puts it here, and
 * the next request for the same backend takes it instead of connecting.
 *
 * Keyed by backend address and, for backend_tls, by the SNI its handshake
 * carried: a TLS session is never handed to another name. Routes with
 * send_proxy_protocol never come here (their header names one client).
 *
 * Bounds: L7_POOL_PER_BACKEND idle per backend, L7_POOL_MAX per worker,
 * the oldest evicted first. HTTP/2 streams in flight to an HTTP/1.1
 * backend raise the first bound by their number (l7_pool_want()): each
 * holds a connection, and streams come in bursts (a client sends the
 * next 32 as the last 32 answers arrive), so a fixed 16 would close half
 * of them and connect them again; the newest is taken first, so a quiet period
 * lets the surplus age out. An idle connection is watched: the backend
 * closing it, or sending anything unasked, closes it; so does
 * L7_POOL_IDLE_MS without use, kept under the usual backend keep-alive
 * timeouts (5 s for Apache, Node.js) so that we close first.
 *
 * The slots are a fixed array, never freed: an event for a connection
 * closed earlier in the same loop iteration finds its slot empty, or
 * holding another connection, which the check below finds healthy.
 */
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/l7.h"

/* nginx's documented keepalive example is 16 to 32 per upstream; a worker
 * serves many routes, and W workers hold up to W times these */
#define L7_POOL_PER_BACKEND 16
#define L7_POOL_MAX         256 /* idle fds per worker: small against RLIMIT_NOFILE */
#define L7_POOL_IDLE_MS     4000

struct l7_pool_conn {
    struct ev ev; /* fd -1: a free slot */
    struct timer idle;
    SSL *ssl; /* backend_tls: the connection's TLS, handshake done */
    struct mc_addr to;
    char sni[MC_HOSTNAME_MAX + 1]; /* backend_tls: the name its handshake carried */
    uint64_t seq;                  /* pooled in this order: the lowest is the oldest */
};

static struct {
    struct l7_pool_conn conns[L7_POOL_MAX];
    bool init;
    uint64_t seq;
    unsigned demand; /* HTTP/2 streams in flight to HTTP/1.1 backends */
    struct loop *loop;
} l7_pool;

static void l7_pool_init(struct loop *loop)
{
    if (l7_pool.init)
        return;
    for (unsigned i = 0; i < L7_POOL_MAX; i++)
        l7_pool.conns[i].ev.fd = -1;
    l7_pool.loop = loop;
    l7_pool.init = true;
}

static void l7_pool_drop(struct l7_pool_conn *p)
{
    if (p->ev.fd < 0)
        return;
    loop_timer_stop(l7_pool.loop, &p->idle);
    if (p->ssl != NULL)
        SSL_shutdown(p->ssl); /* best effort: our close_notify */
    SSL_free(p->ssl);
    ERR_clear_error();
    p->ssl = NULL;
    close(p->ev.fd); /* also leaves epoll */
    p->ev.fd = -1;
}

/* The key of c's backend: the route's address, and its SNI for backend_tls. */
static bool l7_pool_match(const struct l7_pool_conn *p, const struct conn *c)
{
    const struct mc_addr *to = &c->route->backend_addr;

    if (p->ev.fd < 0 || p->to.len != to->len || memcmp(&p->to.ss, &to->ss, to->len) != 0 ||
        (p->ssl != NULL) != c->route->backend_tls)
        return false;
    return p->ssl == NULL || strcmp(p->sni, l7_backend_sni(c)) == 0;
}

/* Whether an idle connection is still quiet: nothing to read, no EOF. */
static bool l7_pool_quiet(struct l7_pool_conn *p)
{
    uint8_t b;

    if (p->ssl != NULL) {
        /* a late TLS 1.3 session ticket is read here, and is no reason to close */
        int r = SSL_read(p->ssl, &b, 1);
        bool quiet = r <= 0 && SSL_get_error(p->ssl, r) == SSL_ERROR_WANT_READ;
        ERR_clear_error();
        return quiet;
    }
    ssize_t r = recv(p->ev.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EINTR);
}

static void l7_pool_on_event(struct ev *ev, uint32_t events)
{
    struct l7_pool_conn *p = ev->data;

    (void)events; /* the socket says itself: the event may be another's */
    if (p->ev.fd >= 0 && !l7_pool_quiet(p))
        l7_pool_drop(p);
}

static void l7_pool_on_idle(struct timer *t)
{
    l7_pool_drop(t->data);
}

void l7_pool_put(struct conn *c, struct l7_be *b)
{
    struct l7_pool_conn *free_slot = NULL, *oldest = NULL, *oldest_same = NULL;
    unsigned same = 0;

    if (c->w->draining) {
        l7_backend_close(b);
        return;
    }
    l7_pool_init(c->w->loop);
    for (unsigned i = 0; i < L7_POOL_MAX; i++) {
        struct l7_pool_conn *p = &l7_pool.conns[i];
        if (p->ev.fd < 0) {
            if (free_slot == NULL)
                free_slot = p;
            continue;
        }
        if (oldest == NULL || p->seq < oldest->seq)
            oldest = p;
        if (l7_pool_match(p, c)) {
            same++;
            if (oldest_same == NULL || p->seq < oldest_same->seq)
                oldest_same = p;
        }
    }
    struct l7_pool_conn *p = same >= L7_POOL_PER_BACKEND + l7_pool.demand ? oldest_same
                             : free_slot != NULL                          ? free_slot
                                                                          : oldest;
    l7_pool_drop(p);
    p->ev = (struct ev){.fd = b->ev.fd, .cb = l7_pool_on_event, .data = p};
    p->idle = (struct timer){.cb = l7_pool_on_idle, .data = p};
    p->ssl = b->ssl;
    p->to = c->route->backend_addr;
    snprintf(p->sni, sizeof(p->sni), "%s", p->ssl != NULL ? l7_backend_sni(c) : "");
    p->seq = ++l7_pool.seq;
    /* the connection is the pool's now: its old owner's teardown must not touch it */
    b->ev.fd = -1;
    b->ssl = NULL;
    l7_backend_close(b);
    if (loop_mod(l7_pool.loop, &p->ev, EPOLLIN | EPOLLRDHUP | EPOLLET) < 0) {
        l7_pool_drop(p);
        return;
    }
    loop_timer_set(l7_pool.loop, &p->idle, L7_POOL_IDLE_MS);
}

bool l7_pool_take(struct conn *c, struct l7_be *b)
{
    struct l7_pool_conn *newest = NULL;

    if (!l7_pool.init)
        return false;
    for (unsigned i = 0; i < L7_POOL_MAX; i++) {
        struct l7_pool_conn *p = &l7_pool.conns[i];
        if (l7_pool_match(p, c) && (newest == NULL || p->seq > newest->seq))
            newest = p;
    }
    if (newest == NULL)
        return false;
    b->ev.fd = newest->ev.fd;
    b->ssl = newest->ssl;
    b->handshaken = b->ssl != NULL;
    loop_timer_stop(l7_pool.loop, &newest->idle);
    newest->ev.fd = -1;
    newest->ssl = NULL;
    if (loop_mod(c->w->loop, &b->ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        l7_backend_close(b);
        return false;
    }
    return true;
}

void l7_pool_want(bool more)
{
    if (more)
        l7_pool.demand++;
    else if (l7_pool.demand > 0)
        l7_pool.demand--;
}

void l7_pool_close_all(void)
{
    if (!l7_pool.init)
        return;
    for (unsigned i = 0; i < L7_POOL_MAX; i++)
        l7_pool_drop(&l7_pool.conns[i]);
}
