/*
 * The connection lifecycle every route mode shares (conn.h):
 *
 *   accept     counted, max_connections (all workers together) -> close
 *   PROXY      when the listener takes one: the peer must be a trusted
 *              proxy, the header strictly valid -> else RST
 *   admission  firewall and rate limit on the client address -> RST
 *   HELLO      read until the ClientHello is complete (handshake_timeout,
 *              counted from accept, covers the PROXY header too)
 *   route      by SNI in the generation the connection was admitted with,
 *              then handed to its mode (l4.c)
 *
 * conn_close() is the one place a connection is torn down.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/prefix.h"
#include "common/ratelimit.h"
#include "worker/conn.h"
#include "worker/firewall.h"
#include "worker/gen.h"
#include "worker/proxy_proto.h"

#define HS_INITIAL_CAP 2048

static void conn_on_client(struct ev *ev, uint32_t events);
static void conn_on_timer(struct timer *t);
static void conn_read(struct conn *c);

static void conn_log(struct conn *c, const char *result)
{
    char client[ADDR_STRLEN], peer[ADDR_STRLEN];
    struct log_rec r;

    if (!log_enabled(LOGL_INFO))
        return;
    log_rec_begin(&r, LOGL_INFO, "conn");
    log_rec_str(&r, "listener", c->l->addr);
    log_rec_str(&r, "client", addr_format(&c->client, client, sizeof(client)));
    if (c->proxied)
        log_rec_str(&r, "peer", addr_format(&c->peer, peer, sizeof(peer)));
    if (c->sni != NULL)
        log_rec_str(&r, "sni", c->sni);
    if (c->route != NULL) {
        log_rec_str(&r, "route", c->route->hostname);
        log_rec_str(&r, "backend", c->route->backend);
        log_rec_str(&r, "mode", c->route->mode == ROUTE_L7 ? "l7" : "l4");
    }
    log_rec_u64(&r, "bytes_in", c->up.bytes);
    log_rec_u64(&r, "bytes_out", c->down.bytes);
    log_rec_u64(&r, "duration_ms", loop_now(c->w->loop) - c->t_accept);
    log_rec_str(&r, "result", result);
    log_rec_end(&r);
}

static void close_fd(struct ev *ev)
{
    if (ev->fd < 0)
        return;
    /* the only reference to the socket: close() also takes it out of epoll */
    close(ev->fd);
    ev->fd = -1;
}

/* Refusals of a peer that must not learn more than that it was refused. */
static bool reason_resets(enum reason r)
{
    switch (r) {
    case REASON_UNTRUSTED_PROXY:
    case REASON_BAD_PROXY_HEADER:
    case REASON_FIREWALL_IP:
    case REASON_FIREWALL_CIDR:
    case REASON_FIREWALL_COUNTRY:
    case REASON_RATE_LIMIT:
        return true;
    default:
        return false;
    }
}

/*
 * Tears the connection down: fds, timer, generation and route references,
 * counters, the access log line. A firewall or PROXY refusal is an RST
 * (SO_LINGER 0): no FIN, no byte, nothing for a scanner to tell apart.
 */
void conn_close(struct conn *c, enum reason reason, const char *result)
{
    struct worker *w = c->w;

    if (c->state == CS_CLOSED)
        return;
    if (reason != REASON_NONE) {
        atomic_fetch_add_explicit(&w->slot->refused[reason], 1, memory_order_relaxed);
        result = reason_name(reason);
    }
    conn_log(c, result);

    if (reason_resets(reason) && c->cev.fd >= 0) {
        struct linger rst = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->cev.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
    }
    c->state = CS_CLOSED;
    loop_timer_stop(w->loop, &c->timer);
    close_fd(&c->cev);
    close_fd(&c->bev);
    relay_dir_release(&c->up, &w->pipes);
    relay_dir_release(&c->down, &w->pipes);
    if (c->hs != NULL)
        free(c->hs->data);
    mc_free(&c->hs);
    l7_free(c);
    route_unref(c->route);
    c->route = NULL;
    gen_unref(c->gen);
    c->gen = NULL;
    mc_free(&c->sni);

    atomic_fetch_sub_explicit(&w->shm->listeners[c->l->id].active, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->slot->listener_active[c->l->id], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->slot->active, 1, memory_order_relaxed);

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->n_conns--;
    if (c->heap) {
        c->next_dead = w->dead;
        w->dead = c;
    }
}

int conn_connect_result(int fd, uint32_t events)
{
    int err = 0;
    socklen_t len = sizeof(err);

    /* writable without an error means connected: SO_ERROR only on the failure path */
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return EINPROGRESS;
    if ((events & (EPOLLERR | EPOLLHUP)) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
        err = ECONNREFUSED;
    return err;
}

void conn_free_dead(struct worker *w)
{
    l7_h2_free_dead();
    while (w->dead != NULL) {
        struct conn *c = w->dead;
        w->dead = c->next_dead;
        free(c);
    }
}

void conn_drain_all(struct worker *w)
{
    for (struct conn *c = w->conns, *next; c != NULL; c = next) {
        next = c->next; /* it may close */
        if (c->state == CS_L7)
            l7_drain(c);
    }
}

void conn_close_all(struct worker *w)
{
    while (w->conns != NULL)
        conn_close(w->conns, REASON_NONE, "shutdown");
}

/* Counts the connection in and links it in: conn_close undoes all of it. */
static int64_t conn_init(struct conn *c, struct wlistener *l, int fd, const struct mc_addr *peer)
{
    struct worker *w = l->w;
    struct shm_listener *sl = &w->shm->listeners[l->id];

    c->w = w;
    c->l = l;
    c->state = CS_HELLO;
    c->gen = gen_ref(w->cur);
    c->client = *peer;
    addr_unmap(&c->client);
    c->t_accept = c->t_active = loop_now(w->loop);
    c->cev = (struct ev){.fd = fd, .cb = conn_on_client, .data = c};
    c->bev = (struct ev){.fd = -1};
    c->timer = (struct timer){.cb = conn_on_timer, .data = c};
    relay_dir_init(&c->up);
    relay_dir_init(&c->down);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;

    atomic_fetch_add_explicit(&sl->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->slot->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->slot->listener_active[l->id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->slot->active, 1, memory_order_relaxed);
    /* counted across all workers: reserve first, give it back (conn_close) if over */
    return atomic_fetch_add_explicit(&sl->active, 1, memory_order_relaxed);
}

/* The client address is final: firewall, then the rate limit. */
static enum reason conn_admit(struct conn *c)
{
    const struct msg_settings *s = &c->w->settings;
    const uint8_t *ip;
    uint8_t key[16];

    enum reason r = firewall_check(c->gen->fw, c->gen->geoip, &c->client);
    if (r != REASON_NONE || s->rate_limit == 0 || c->w->ratelimit == NULL)
        return r;
    if (c->client.ss.ss_family == AF_INET)
        ip = (const uint8_t *)&((const struct sockaddr_in *)&c->client.ss)->sin_addr;
    else
        ip = (const uint8_t *)&((const struct sockaddr_in6 *)&c->client.ss)->sin6_addr;
    ratelimit_key(c->client.ss.ss_family, ip, key);
    if (!ratelimit_admit(c->w->ratelimit, key, loop_now(c->w->loop), s->rate_limit,
                         s->rate_window_ms))
        return REASON_RATE_LIMIT;
    return REASON_NONE;
}

static bool conn_peer_trusted(const struct conn *c)
{
    const struct prefix_set *trusted = c->gen->listeners[c->l->id].trusted;
    const struct mc_addr *a = &c->client;

    if (a->ss.ss_family == AF_INET)
        return prefix_set_lookup(trusted, AF_INET,
                                 (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr);
    return prefix_set_lookup(trusted, AF_INET6,
                             (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

void conn_accept(struct wlistener *l, int fd, const struct mc_addr *peer)
{
    struct worker *w = l->w;
    struct conn *c = calloc(1, sizeof(*c));
    struct conn stand_in = {0}; /* out of memory: still refused, counted and logged as one */
    enum reason refuse = REASON_NONE;

    if (c == NULL)
        c = &stand_in;
    c->heap = c != &stand_in;
    int64_t active = conn_init(c, l, fd, peer);
    const struct gen_listener *gl = &c->gen->listeners[l->id];

    if (gl->max_connections != 0 && active >= (int64_t)gl->max_connections) {
        conn_close(c, REASON_MAX_CONNECTIONS, NULL);
        return;
    }
    if (!c->heap) {
        log_error("out of memory accepting a connection on %s", l->addr);
        conn_close(c, REASON_NONE, "error");
        return;
    }
    if (gl->proxy_protocol) {
        c->state = CS_PROXY;
        c->peer = c->client;
        if (!conn_peer_trusted(c))
            refuse = REASON_UNTRUSTED_PROXY;
    } else {
        refuse = conn_admit(c);
    }
    if (refuse != REASON_NONE) {
        conn_close(c, refuse, NULL);
        return;
    }

    /* TCP_NODELAY is inherited from the listening socket */
    loop_timer_set(w->loop, &c->timer, w->settings.handshake_timeout_ms);
    /* EPOLLOUT too: the relay waits on it when the client reads slower than the backend sends */
    if (loop_add(w->loop, &c->cev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() failed for a client");
        conn_close(c, REASON_NONE, "error");
        return;
    }
    /* deferred accept: the first bytes are usually here already, no need to wait for the edge */
    conn_read(c);
}

/* HELLO has a complete ClientHello: pick the route, or refuse. */
static void conn_route(struct conn *c)
{
    const struct hello *h = &c->hs->hello;

    if (h->sni_len == 0) {
        conn_close(c, REASON_NO_SNI, NULL);
        return;
    }
    c->sni = strndup(h->sni, h->sni_len);
    const struct route_table *t = c->gen->listeners[c->l->id].routes;
    struct route *r = t ? route_table_lookup(t, h->sni, h->sni_len) : NULL;
    if (r == NULL) {
        conn_close(c, REASON_NO_ROUTE, NULL);
        return;
    }
    c->route = route_ref(r);
    /* the route holds what its mode needs; an old generation is not kept alive by it */
    gen_unref(c->gen);
    c->gen = NULL;
    if (r->mode == ROUTE_L7)
        l7_start(c);
    else
        l4_start(c);
}

/*
 * A complete PROXY header at the start of the buffer: its source is the
 * client from here on, its bytes are dropped, and what followed them
 * (the ClientHello may share the segment) stays for the hello parser.
 */
static enum reason conn_proxy_header(struct conn *c, const struct proxy_proto_hdr *h)
{
    struct conn_hs *hs = c->hs;

    if (!h->local) {
        c->client = h->src;
        addr_unmap(&c->client);
        c->local = h->dst;
        c->proxied = true;
    }
    memmove(hs->data, hs->data + h->len, hs->len - h->len);
    hs->len -= (uint32_t)h->len;
    c->state = CS_HELLO;
    return conn_admit(c);
}

/*
 * Feeds what was read so far to the parser of the current state: 1 when
 * the hello is complete (routed, or closed), 0 for more bytes, and -1
 * when the connection was closed.
 */
static int conn_parse(struct conn *c)
{
    struct conn_hs *hs = c->hs;
    struct proxy_proto_hdr ph;

    if (c->state == CS_PROXY) {
        switch (proxy_proto_parse(hs->data, hs->len, &ph)) {
        case PROXY_PROTO_INCOMPLETE:
            return 0;
        case PROXY_PROTO_BAD:
            log_debug("bad PROXY header from a trusted peer: %s", ph.err);
            conn_close(c, REASON_BAD_PROXY_HEADER, NULL);
            return -1;
        case PROXY_PROTO_OK: {
            enum reason r = conn_proxy_header(c, &ph);
            if (r != REASON_NONE) {
                conn_close(c, r, NULL);
                return -1;
            }
            if (hs->len == 0)
                return 0;
            break;
        }
        }
    }
    switch (hello_parse(&hs->hello, hs->data, hs->len, c->w->scratch)) {
    case HELLO_NEED_MORE:
        return 0;
    case HELLO_REJECT:
        conn_close(
            c, hs->hello.reject == HELLO_REJECT_TOO_LARGE ? REASON_HELLO_TOO_LARGE : REASON_NOT_TLS,
            NULL);
        return -1;
    case HELLO_OK:
        break;
    }
    return 1;
}

/* Reads what the client sent, for the PROXY header and the ClientHello. */
static void conn_read(struct conn *c)
{
    if (c->hs == NULL) {
        c->hs = calloc(1, sizeof(*c->hs));
        if (c->hs == NULL || (c->hs->data = malloc(HS_INITIAL_CAP)) == NULL) {
            conn_close(c, REASON_NONE, "error");
            return;
        }
        c->hs->cap = HS_INITIAL_CAP;
    }
    struct conn_hs *hs = c->hs;
    for (;;) {
        if (hs->len == hs->cap) {
            /* grow by what actually arrived, never by what a length field claims;
             * a PROXY header is parsed (and dropped) before it could eat into the cap */
            uint32_t cap = MC_MIN(hs->cap * 2, (uint32_t)HELLO_MAX_RAW);
            if (cap == hs->cap) {
                conn_close(c, REASON_HELLO_TOO_LARGE, NULL);
                return;
            }
            uint8_t *p = realloc(hs->data, cap);
            if (p == NULL) {
                conn_close(c, REASON_NONE, "error");
                return;
            }
            hs->data = p;
            hs->cap = cap;
        }
        size_t room = hs->cap - hs->len;
        ssize_t n = read(c->cev.fd, hs->data + hs->len, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(c, REASON_NONE, "client_error");
            return;
        }
        if (n == 0) {
            /* a trusted proxy that closes without a header sent none */
            conn_close(c, REASON_NONE, "client_closed");
            return;
        }
        hs->len += (uint32_t)n;
        int rc = conn_parse(c);
        if (rc < 0)
            return;
        if (rc > 0) {
            /* a short read drained the socket: the relay need not look again */
            relay_dir_read(&c->up, (size_t)n == room);
            conn_route(c);
            return;
        }
    }
}

/* Edges are remembered in every state, so none is lost before the relay starts. */
static void conn_on_client(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;
    bool in = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);

    if (in)
        c->up.src_ready = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->up.src_hup = true;
    if ((events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP)
        c->up.src_fin = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->down.dst_blocked = false;
    switch (c->state) {
    case CS_PROXY:
    case CS_HELLO:
        /* before the relay, only client input matters: skip the write-readiness edge */
        if (in)
            conn_read(c);
        break;
    case CS_L7:
        l7_on_client(c);
        break;
    case CS_CLOSED:
        break;
    default:
        l4_on_client(c);
        break;
    }
}

static void conn_on_timer(struct timer *t)
{
    struct conn *c = t->data;

    switch (c->state) {
    case CS_PROXY:
    case CS_HELLO:
        conn_close(c, REASON_HELLO_TIMEOUT, NULL);
        break;
    case CS_L7:
        l7_on_timer(c);
        break;
    case CS_CLOSED:
        break;
    default:
        l4_on_timer(c);
        break;
    }
}
