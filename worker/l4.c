/*
 * An L4 route: the connection, routed by conn.c, is relayed as raw TCP.
 *
 *   CONNECT  non-blocking connect to the backend (connect_timeout)
 *   REPLAY   write every byte read so far to the backend, then free them
 *   RELAY    splice both ways, half-close propagated (idle_timeout)
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/conn.h"
#include "worker/proxy_proto.h"

#define PUMP_BUDGET (1024 * 1024) /* bytes per direction per turn, for fairness */

static void l4_replay(struct conn *c);
static void l4_relay(struct conn *c);

static void set_nodelay(int fd)
{
    int one = 1;
    /* best effort: a proxy must not add Nagle delays; failure changes only latency */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void l4_run(struct conn *c, uint32_t backend_events);

static void l4_on_backend(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->down.src_ready = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->down.src_hup = true;
    if ((events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP)
        c->down.src_fin = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->up.dst_blocked = false;
    l4_run(c, events);
}

/*
 * send_proxy_protocol: a v2 header in front of the bytes to replay, so
 * header and ClientHello leave in the same first write. It names the
 * client and the address the client reached (the upstream's word for
 * both when this connection came through a PROXY header).
 */
static int l4_prepend_proxy(struct conn *c)
{
    struct conn_hs *hs = c->hs;
    struct mc_addr local = {.len = sizeof(local.ss)};
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36]; /* the largest address block: TCP6 */

    if (c->proxied)
        local = c->local;
    else if (getsockname(c->cev.fd, (struct sockaddr *)&local.ss, &local.len) < 0)
        return -1;
    size_t n = proxy_proto_build_v2(hdr, sizeof(hdr), &c->client, &local);
    if (n == 0)
        return -1;
    if (hs->cap - hs->len < n) {
        uint8_t *p = realloc(hs->data, hs->len + n);
        if (p == NULL)
            return -1;
        hs->data = p;
        hs->cap = hs->len + (uint32_t)n;
    }
    memmove(hs->data + n, hs->data, hs->len);
    memcpy(hs->data, hdr, n);
    hs->len += (uint32_t)n;
    c->replay_prefix = (uint32_t)n;
    return 0;
}

void l4_start(struct conn *c)
{
    struct worker *w = c->w;
    const struct mc_addr *to = &c->route->backend_addr;

    if (c->route->send_proxy_protocol && l4_prepend_proxy(c) < 0) {
        log_error("cannot build the PROXY header for backend %s", c->route->backend);
        conn_close(c, REASON_NONE, "error");
        return;
    }

    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_errno(LOGL_WARN, errno, "socket() for backend %s", c->route->backend);
        conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
        return;
    }
    c->bev = (struct ev){.fd = fd, .cb = l4_on_backend, .data = c};
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
    l4_replay(c);
}

/* Connected: from here a stall is an idle connection, not a slow connect. */
static void l4_established(struct conn *c)
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
static void l4_replay(struct conn *c)
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
            l4_established(c);
        c->replay_off += (uint32_t)n;
    }
    /* the client's bytes: our PROXY header is not traffic */
    c->up.bytes = hs->len - c->replay_prefix;
    atomic_fetch_add_explicit(&c->w->slot->bytes_in, c->up.bytes, memory_order_relaxed);
    free(hs->data);
    mc_free(&c->hs);
    c->state = CS_RELAY;
    c->t_active = loop_now(c->w->loop);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
    l4_relay(c);
}

static void l4_connected(struct conn *c, uint32_t events)
{
    int err = conn_connect_result(c->bev.fd, events);

    if (err == EINPROGRESS)
        return;
    if (err != 0) {
        log_errno(LOGL_DEBUG, err, "connect() to %s", c->route->backend);
        conn_close(c, REASON_BACKEND_CONNECT_FAILED, NULL);
        return;
    }
    l4_established(c);
    l4_replay(c);
}

static void l4_queue_resume(struct conn *c)
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

static void l4_relay(struct conn *c)
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
        l4_queue_resume(c);
}

void l4_resume_all(struct timer *t)
{
    struct worker *w = t->data;
    struct conn *list = w->resume;

    w->resume = NULL;
    while (list != NULL) {
        struct conn *c = list;
        list = c->next_resume;
        c->resume_queued = false;
        if (c->state == CS_RELAY)
            l4_relay(c);
    }
}

/* backend_events: the backend socket's epoll events, 0 for a client event */
static void l4_run(struct conn *c, uint32_t backend_events)
{
    switch (c->state) {
    case CS_CONNECT:
        /* client bytes wait in the socket; the relay picks them up */
        if (backend_events != 0)
            l4_connected(c, backend_events);
        break;
    case CS_REPLAY:
        if (backend_events != 0)
            l4_replay(c);
        break;
    case CS_RELAY:
        l4_relay(c);
        break;
    default:
        break;
    }
}

void l4_on_client(struct conn *c)
{
    l4_run(c, 0);
}

void l4_on_timer(struct conn *c)
{
    struct worker *w = c->w;

    switch (c->state) {
    case CS_CONNECT:
        conn_close(c, REASON_BACKEND_CONNECT_TIMEOUT, NULL);
        break;
    case CS_REPLAY:
    case CS_RELAY: {
        /* activity only stamps t_active; the timer is re-armed lazily here */
        uint64_t deadline = c->t_active + w->settings.idle_timeout_ms;
        if (deadline > loop_now(w->loop))
            loop_timer_set_at(w->loop, &c->timer, deadline);
        else
            conn_close(c, REASON_NONE, "idle_timeout");
        break;
    }
    default:
        break;
    }
}
