/*
 * One client connection through the L4 pipeline:
 *
 *   HELLO    read until the ClientHello is complete (handshake_timeout,
 *            counted from accept); route by SNI
 *   CONNECT  non-blocking connect to the backend (connect_timeout)
 *   REPLAY   write every byte read so far to the backend, then free them
 *   RELAY    splice both ways, half-close propagated (idle_timeout)
 *
 * conn_close() is the one place a connection is torn down. The struct is
 * freed after the current loop iteration, since another event for it may
 * be queued in the same epoll batch.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "reason.h"
#include "worker.h"

#define HS_INITIAL_CAP 2048
#define PUMP_BUDGET    (1024 * 1024) /* bytes per direction per turn, for fairness */

enum conn_state {
    CS_HELLO,
    CS_CONNECT,
    CS_REPLAY,
    CS_RELAY,
    CS_CLOSED,
};

/* Everything read before the relay starts; freed once replayed. */
struct conn_hs {
    struct hello hello;
    uint32_t len, cap;
    uint8_t *data;
};

struct conn {
    struct worker *w;
    struct wlistener *l;
    enum conn_state state;
    struct ev cev, bev; /* client, backend */
    struct timer timer;
    struct mc_addr client;
    struct route *route; /* referenced: survives table swaps */
    char *sni;           /* as sent, for the access log */
    struct conn_hs *hs;
    uint32_t replay_off;
    struct relay_dir up, down; /* client->backend, backend->client */
    uint64_t t_accept, t_active;
    uint64_t t_connect_us; /* connect() called: for the latency histogram */
    struct conn *prev, *next;
    struct conn *next_dead;
    struct conn *next_resume;
    bool resume_queued;
};

static void conn_on_client(struct ev *ev, uint32_t events);
static void conn_on_backend(struct ev *ev, uint32_t events);
static void conn_replay(struct conn *c);
static void conn_on_timer(struct timer *t);
static void conn_read_hello(struct conn *c);

static void set_nodelay(int fd)
{
    int one = 1;
    /* best effort: a proxy must not add Nagle delays; failure changes only latency */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void conn_log(struct conn *c, const char *result)
{
    char client[ADDR_STRLEN];
    struct log_rec r;

    if (!log_enabled(LOGL_INFO))
        return;
    log_rec_begin(&r, LOGL_INFO, "conn");
    log_rec_str(&r, "listener", c->l->addr);
    log_rec_str(&r, "client", addr_format(&c->client, client, sizeof(client)));
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

static void hs_free(struct conn *c)
{
    if (c->hs == NULL)
        return;
    free(c->hs->data);
    mc_free(&c->hs);
}

static void close_fd(struct ev *ev)
{
    if (ev->fd < 0)
        return;
    /* the only reference to the socket: close() also takes it out of epoll */
    close(ev->fd);
    ev->fd = -1;
}

/*
 * Tears the connection down: fds, timer, route reference, counters, the
 * access log line. reason is a refusal code, or REASON_NONE with result
 * saying how an accepted connection ended.
 */
static void conn_close(struct conn *c, enum reason reason, const char *result)
{
    struct worker *w = c->w;

    if (c->state == CS_CLOSED)
        return;
    if (reason != REASON_NONE) {
        atomic_fetch_add_explicit(&w->slot->refused[reason], 1, memory_order_relaxed);
        result = reason_name(reason);
    }
    conn_log(c, result);

    c->state = CS_CLOSED;
    loop_timer_stop(w->loop, &c->timer);
    close_fd(&c->cev);
    close_fd(&c->bev);
    relay_dir_release(&c->up, &w->pipes);
    relay_dir_release(&c->down, &w->pipes);
    hs_free(c);
    if (c->route != NULL)
        route_unref(c->route);
    c->route = NULL;
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
    c->next_dead = w->dead;
    w->dead = c;
}

void conn_free_dead(struct worker *w)
{
    while (w->dead != NULL) {
        struct conn *c = w->dead;
        w->dead = c->next_dead;
        free(c);
    }
}

void conn_close_all(struct worker *w)
{
    while (w->conns != NULL)
        conn_close(w->conns, REASON_NONE, "shutdown");
}

void conn_accept(struct wlistener *l, int fd, const struct mc_addr *peer)
{
    struct worker *w = l->w;
    struct shm_listener *sl = &w->shm->listeners[l->id];

    atomic_fetch_add_explicit(&sl->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->slot->total, 1, memory_order_relaxed);
    /* counted across all workers: reserve a slot first, give it back if over */
    int64_t active = atomic_fetch_add_explicit(&sl->active, 1, memory_order_relaxed);
    if (l->max_connections != 0 && active >= (int64_t)l->max_connections) {
        atomic_fetch_sub_explicit(&sl->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->slot->refused[REASON_MAX_CONNECTIONS], 1,
                                  memory_order_relaxed);
        close(fd);
        if (log_enabled(LOGL_INFO)) {
            char client[ADDR_STRLEN];
            struct log_rec r;
            log_rec_begin(&r, LOGL_INFO, "conn");
            log_rec_str(&r, "listener", l->addr);
            log_rec_str(&r, "client", addr_format(peer, client, sizeof(client)));
            log_rec_str(&r, "result", reason_name(REASON_MAX_CONNECTIONS));
            log_rec_end(&r);
        }
        return;
    }
    atomic_fetch_add_explicit(&w->slot->listener_active[l->id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->slot->active, 1, memory_order_relaxed);

    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("out of memory accepting a connection on %s", l->addr);
        atomic_fetch_sub_explicit(&sl->active, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&w->slot->listener_active[l->id], 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&w->slot->active, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    c->w = w;
    c->l = l;
    c->state = CS_HELLO;
    c->client = *peer;
    addr_unmap(&c->client);
    c->t_accept = c->t_active = loop_now(w->loop);
    c->cev = (struct ev){.fd = fd, .cb = conn_on_client, .data = c};
    c->bev = (struct ev){.fd = -1, .cb = conn_on_backend, .data = c};
    c->timer = (struct timer){.cb = conn_on_timer, .data = c};
    relay_dir_init(&c->up);
    relay_dir_init(&c->down);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;

    /* TCP_NODELAY is inherited from the listening socket */
    loop_timer_set(w->loop, &c->timer, w->settings.handshake_timeout_ms);
    /* EPOLLOUT too: the relay waits on it when the client reads slower than the backend sends */
    if (loop_add(w->loop, &c->cev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() failed for a client");
        conn_close(c, REASON_NONE, "error");
        return;
    }
    /* deferred accept: the hello is usually here already, no need to wait for the edge */
    conn_read_hello(c);
}

static void conn_connect(struct conn *c)
{
    struct worker *w = c->w;
    const struct mc_addr *to = &c->route->backend_addr;

    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_errno(LOGL_WARN, errno, "socket() for backend %s", c->route->backend);
        conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
        return;
    }
    c->bev.fd = fd;
    set_nodelay(fd);
    c->t_connect_us = shm_clock_us();
    if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS) {
        log_errno(LOGL_DEBUG, errno, "connect() to %s", c->route->backend);
        conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
        return;
    }
    c->state = CS_CONNECT;
    loop_timer_set(w->loop, &c->timer, w->settings.connect_timeout_ms);
    if (loop_add(w->loop, &c->bev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() failed for a backend");
        conn_close(c, REASON_NONE, "error");
        return;
    }
    conn_replay(c);
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
    struct route *r = c->l->routes ? route_table_lookup(c->l->routes, h->sni, h->sni_len) : NULL;
    if (r == NULL) {
        conn_close(c, REASON_NO_ROUTE, NULL);
        return;
    }
    c->route = route_ref(r);
    conn_connect(c);
}

/* Reads what the client sent and feeds the ClientHello parser. */
static void conn_read_hello(struct conn *c)
{
    struct worker *w = c->w;

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
            /* grow by what actually arrived, never by what a length field claims */
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
            conn_close(c, REASON_NONE, "client_closed");
            return;
        }
        hs->len += (uint32_t)n;
        switch (hello_parse(&hs->hello, hs->data, hs->len, w->scratch)) {
        case HELLO_NEED_MORE:
            continue;
        case HELLO_REJECT:
            conn_close(c,
                       hs->hello.reject == HELLO_REJECT_TOO_LARGE ? REASON_HELLO_TOO_LARGE
                                                                  : REASON_NOT_TLS,
                       NULL);
            return;
        case HELLO_OK:
            /* a short read drained the socket: the relay need not look again */
            relay_dir_read(&c->up, (size_t)n == room);
            conn_route(c);
            return;
        }
    }
}

static void conn_relay(struct conn *c);

/* Connected: from here a stall is an idle connection, not a slow connect. */
static void conn_established(struct conn *c)
{
    shm_observe_connect(c->w->slot, shm_clock_us() - c->t_connect_us);
    c->state = CS_REPLAY;
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

/*
 * Sends the bytes read during HELLO to the backend, as they came. Also
 * tried right after connect(): a nearby backend has usually answered the
 * SYN by then, and a write that goes through saves waiting for the
 * writable edge; EAGAIN means still connecting, an error that it failed.
 */
static void conn_replay(struct conn *c)
{
    struct conn_hs *hs = c->hs;

    while (c->replay_off < hs->len) {
        ssize_t n = send(c->bev.fd, hs->data + c->replay_off, hs->len - c->replay_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            if (c->state == CS_CONNECT) {
                log_errno(LOGL_DEBUG, errno, "connect() to %s", c->route->backend);
                conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
            } else {
                conn_close(c, REASON_NONE, "backend_error");
            }
            return;
        }
        if (c->state == CS_CONNECT)
            conn_established(c);
        c->replay_off += (uint32_t)n;
    }
    c->up.bytes = hs->len;
    atomic_fetch_add_explicit(&c->w->slot->bytes_in, hs->len, memory_order_relaxed);
    hs_free(c);
    c->state = CS_RELAY;
    c->t_active = loop_now(c->w->loop);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
    conn_relay(c);
}

static void conn_connected(struct conn *c, uint32_t events)
{
    int err = 0;
    socklen_t len = sizeof(err);

    /* writable without an error means connected: SO_ERROR only on the failure path */
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return;
    if ((events & (EPOLLERR | EPOLLHUP)) &&
        getsockopt(c->bev.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS)
        return;
    if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
        err = ECONNREFUSED;
    if (err != 0) {
        log_errno(LOGL_DEBUG, err, "connect() to %s", c->route->backend);
        conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
        return;
    }
    conn_established(c);
    conn_replay(c);
}

static void conn_queue_resume(struct conn *c)
{
    struct worker *w = c->w;
    if (c->resume_queued)
        return;
    c->resume_queued = true;
    c->next_resume = w->resume;
    w->resume = c;
    if (!timer_armed(&w->resume_timer))
        loop_timer_set(w->loop, &w->resume_timer, 0);
}

static void conn_relay(struct conn *c)
{
    struct worker *w = c->w;
    size_t up_budget = PUMP_BUDGET, down_budget = PUMP_BUDGET;
    uint64_t up0 = c->up.bytes, down0 = c->down.bytes;
    /* hello parsing is over: its scratch is the relay's buffer now */
    const struct relay_buf buf = {w->scratch, sizeof(w->scratch)};

    enum relay_status up =
        relay_pump(&c->up, c->cev.fd, c->bev.fd, c->down.done, &w->pipes, &buf, &up_budget);
    int err = errno;
    enum relay_status down =
        relay_pump(&c->down, c->bev.fd, c->cev.fd, c->up.done, &w->pipes, &buf, &down_budget);
    if (up != RELAY_ERROR)
        err = errno;

    if (c->up.bytes != up0 || c->down.bytes != down0) {
        c->t_active = loop_now(w->loop);
        atomic_fetch_add_explicit(&w->slot->bytes_in, c->up.bytes - up0, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->slot->bytes_out, c->down.bytes - down0, memory_order_relaxed);
    }
    if (up == RELAY_ERROR || down == RELAY_ERROR) {
        /* an abortive close by either peer is common and worth telling apart */
        conn_close(c, REASON_NONE, err == ECONNRESET || err == EPIPE ? "reset" : "error");
        return;
    }
    if (up == RELAY_DONE && down == RELAY_DONE) {
        conn_close(c, REASON_NONE, "ok");
        return;
    }
    if (up == RELAY_YIELD || down == RELAY_YIELD)
        conn_queue_resume(c);
}

void conn_resume_all(struct timer *t)
{
    struct worker *w = t->data;
    struct conn *list = w->resume;

    w->resume = NULL;
    while (list != NULL) {
        struct conn *c = list;
        list = c->next_resume;
        c->resume_queued = false;
        if (c->state == CS_RELAY)
            conn_relay(c);
    }
}

/* backend_events: the backend socket's epoll events, 0 for a client event */
static void conn_run(struct conn *c, uint32_t backend_events)
{
    bool backend_event = backend_events != 0;

    switch (c->state) {
    case CS_HELLO:
        conn_read_hello(c);
        break;
    case CS_CONNECT:
        /* client bytes wait in the socket; the relay picks them up */
        if (backend_event)
            conn_connected(c, backend_events);
        break;
    case CS_REPLAY:
        if (backend_event)
            conn_replay(c);
        break;
    case CS_RELAY:
        conn_relay(c);
        break;
    case CS_CLOSED:
        break;
    }
}

#define EV_IN  (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define EV_HUP (EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define EV_OUT (EPOLLOUT | EPOLLHUP | EPOLLERR)

/* Edges are remembered in every state, so none is lost before the relay starts. */
static void conn_on_client(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;

    if (events & EV_IN)
        c->up.src_ready = true;
    if (events & EV_HUP)
        c->up.src_hup = true;
    if ((events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP)
        c->up.src_fin = true;
    if (events & EV_OUT)
        c->down.dst_blocked = false;
    /* before the relay, only client input matters: skip the write-readiness edge */
    if (c->state != CS_RELAY && !(events & EV_IN))
        return;
    conn_run(c, 0);
}

static void conn_on_backend(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;

    if (events & EV_IN)
        c->down.src_ready = true;
    if (events & EV_HUP)
        c->down.src_hup = true;
    if ((events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP)
        c->down.src_fin = true;
    if (events & EV_OUT)
        c->up.dst_blocked = false;
    conn_run(c, events);
}

static void conn_on_timer(struct timer *t)
{
    struct conn *c = t->data;
    struct worker *w = c->w;

    switch (c->state) {
    case CS_HELLO:
        conn_close(c, REASON_HELLO_TIMEOUT, NULL);
        break;
    case CS_CONNECT:
        conn_close(c, REASON_BACKEND_CONNECT_TIMEOUT, NULL);
        break;
    case CS_REPLAY:
    case CS_RELAY: {
        /* activity only stamps t_active; the timer is re-armed lazily here */
        uint64_t deadline = c->t_active + w->settings.idle_timeout_ms;
        if (deadline > loop_now(w->loop))
            loop_timer_set_at(w->loop, t, deadline);
        else
            conn_close(c, REASON_NONE, "idle_timeout");
        break;
    }
    case CS_CLOSED:
        break;
    }
}
