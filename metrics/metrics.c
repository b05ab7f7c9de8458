/*
 * The metrics exporter: `mc-proxy __metrics`, started by the master.
 * It maps the shared counters read-only, binds its loopback address,
 * drops to the service user with no capabilities, and answers
 * GET /metrics with the Prometheus text format (prom.c). It never
 * sees client traffic and holds nothing but the counters; it exits when
 * its channel to the master closes.
 *
 * The HTTP side is deliberately small: one request per connection, a
 * bounded request buffer, a deadline per connection, a cap on
 * connections, and "Connection: close" on every answer.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/acceptor.h"
#include "common/chan.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/msg.h"
#include "common/priv.h"
#include "common/proc.h"
#include "common/shm.h"
#include "metrics/http.h"
#include "metrics/prom.h"

#define REQ_MAX         4096 /* request line and headers */
#define CONN_MAX        64
#define CONN_TIMEOUT_MS 5000 /* to send the request; again to take the answer */
#define ACCEPT_BATCH    16
#define METRICS_BACKLOG 64

enum hconn_state {
    HC_READ,   /* collecting the request */
    HC_WRITE,  /* sending the answer */
    HC_LINGER, /* answer sent and our side shut: discard until the client closes */
};

struct exporter;

struct hconn {
    struct exporter *x;
    enum hconn_state state;
    struct ev ev;
    struct timer timer;
    uint8_t req[REQ_MAX];
    size_t req_len;
    struct sbuf out;
    size_t out_off;
    struct hconn *prev, *next;
};

struct exporter {
    struct loop *loop;
    struct chan chan;
    struct ev chan_ev;
    const struct shm *shm;
    bool configured;
    char (*listeners)[ADDR_STRLEN]; /* names in shm index order */
    unsigned n_listeners;
    char addr[ADDR_STRLEN]; /* what it listens on */
    struct acceptor acc;
    uint64_t pause_logged_ms;
    struct hconn *conns;
    unsigned n_conns;
    bool done;
    int exit_code;
};

static volatile sig_atomic_t sig_stop;
static struct exporter exporter;

/* ------------------------------------------------------------ connections */

static void hconn_close(struct hconn *c)
{
    struct exporter *x = c->x;

    loop_timer_stop(x->loop, &c->timer);
    loop_del(x->loop, &c->ev);
    close(c->ev.fd);
    sbuf_free(&c->out);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        x->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    x->n_conns--;
    free(c);
}

static void hconn_on_timer(struct timer *t)
{
    hconn_close(t->data);
}

/* Discards what the client still sends, so closing does not reset the answer away. */
static void hconn_linger(struct hconn *c)
{
    uint8_t sink[512];

    for (;;) {
        ssize_t n = read(c->ev.fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        hconn_close(c);
        return;
    }
}

static void hconn_write(struct hconn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = write(c->ev.fd, c->out.p + c->out_off, c->out.len - c->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            hconn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    shutdown(c->ev.fd, SHUT_WR);
    sbuf_free(&c->out);
    c->state = HC_LINGER;
    if (loop_mod(c->x->loop, &c->ev, EPOLLIN | EPOLLRDHUP) < 0) {
        hconn_close(c);
        return;
    }
    hconn_linger(c);
}

/* Queues the whole answer and starts sending it. */
static void hconn_respond(struct hconn *c, bool head, const char *status, const char *extra,
                          const char *body, size_t body_len)
{
    struct sbuf *o = &c->out;

    sbuf_printf(o,
                "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                status, body_len, extra);
    if (!head)
        sbuf_append(o, body, body_len);
    if (o->failed) {
        hconn_close(c);
        return;
    }
    c->state = HC_WRITE;
    loop_timer_set(c->x->loop, &c->timer, CONN_TIMEOUT_MS);
    if (loop_mod(c->x->loop, &c->ev, EPOLLOUT) < 0) {
        hconn_close(c);
        return;
    }
    hconn_write(c);
}

static void hconn_error(struct hconn *c, bool head, const char *status, const char *extra)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", status);
    hconn_respond(c, head, status, extra, body, (size_t)n);
}

static void hconn_answer(struct hconn *c, const struct http_request *req)
{
    static const char path[] = "/metrics";
    bool head = req->method == HTTP_HEAD;

    if (req->method == HTTP_OTHER) {
        hconn_error(c, false, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    if (req->path_len != sizeof(path) - 1 || memcmp(req->path, path, req->path_len) != 0) {
        hconn_error(c, head, "404 Not Found", "");
        return;
    }
    struct sbuf body = {0};
    const struct exporter *x = c->x;
    prom_render(&body, &(struct prom_input){.shm = x->shm,
                                            .listeners = (const char(*)[ADDR_STRLEN])x->listeners,
                                            .n_listeners = x->n_listeners,
                                            .own_log_dropped = log_dropped()});
    if (body.failed)
        hconn_error(c, head, "500 Internal Server Error", "");
    else
        hconn_respond(c, head, "200 OK", "", body.p, body.len);
    sbuf_free(&body);
}

static void hconn_read(struct hconn *c)
{
    for (;;) {
        if (c->req_len == sizeof(c->req)) {
            hconn_error(c, false, "431 Request Header Fields Too Large", "");
            return;
        }
        ssize_t n = read(c->ev.fd, c->req + c->req_len, sizeof(c->req) - c->req_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            hconn_close(c);
            return;
        }
        c->req_len += (size_t)n;

        struct http_request req;
        switch (http_parse_request(c->req, c->req_len, &req)) {
        case HTTP_NEED_MORE:
            continue;
        case HTTP_BAD:
            hconn_error(c, false, "400 Bad Request", "");
            return;
        case HTTP_OK:
            hconn_answer(c, &req);
            return;
        }
    }
}

static void hconn_on_event(struct ev *ev, uint32_t events)
{
    struct hconn *c = ev->data;

    switch (c->state) {
    case HC_READ:
        hconn_read(c);
        break;
    case HC_WRITE:
        if (events & (EPOLLERR | EPOLLHUP))
            hconn_close(c);
        else
            hconn_write(c);
        break;
    case HC_LINGER:
        hconn_linger(c);
        break;
    }
}

static void exporter_on_accept(void *arg, int fd, const struct mc_addr *peer)
{
    struct exporter *x = arg;
    struct hconn *c = x->n_conns < CONN_MAX ? calloc(1, sizeof(*c)) : NULL;

    (void)peer;
    if (c == NULL) {
        close(fd); /* over the cap: a scraper retries, a flood gets nothing */
        return;
    }
    c->x = x;
    c->state = HC_READ;
    c->ev = (struct ev){.fd = fd, .cb = hconn_on_event, .data = c};
    c->timer = (struct timer){.cb = hconn_on_timer, .data = c};
    if (loop_add(x->loop, &c->ev, EPOLLIN | EPOLLRDHUP) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = x->conns;
    if (x->conns != NULL)
        x->conns->prev = c;
    x->conns = c;
    x->n_conns++;
    loop_timer_set(x->loop, &c->timer, CONN_TIMEOUT_MS);
}

/* ------------------------------------------------------------ start-up */

/* Binds a; its name into x->addr. */
static int metrics_listen(struct exporter *x, const struct mc_addr *a)
{
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    addr_format(a, x->addr, sizeof(x->addr));
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, METRICS_BACKLOG) < 0) {
        log_errno(LOGL_ERROR, errno, "cannot listen on %s", x->addr);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    log_info("serving metrics on http://%s/metrics", x->addr);
    return fd;
}

static void exporter_exit(struct exporter *x, int code)
{
    x->done = true;
    x->exit_code = code;
}

/* Settings arrive once: bind, then give up every privilege before serving. */
static int metrics_configure(struct exporter *x, const struct chan_msg *m)
{
    struct msg_metrics_settings s;

    if (m->hdr.len < sizeof(s))
        return -1;
    memcpy(&s, m->data, sizeof(s));
    if (s.n_listeners > MC_MAX_LISTENERS ||
        m->hdr.len != sizeof(s) + (size_t)s.n_listeners * ADDR_STRLEN ||
        s.listen.len > sizeof(s.listen.ss) ||
        (s.listen.ss.ss_family != AF_INET && s.listen.ss.ss_family != AF_INET6))
        return -1;
    x->listeners = calloc(s.n_listeners + 1, ADDR_STRLEN);
    if (x->listeners == NULL)
        return -1;
    memcpy(x->listeners, m->data + sizeof(s), (size_t)s.n_listeners * ADDR_STRLEN);
    for (unsigned i = 0; i < s.n_listeners; i++) {
        if (memchr(x->listeners[i], '\0', ADDR_STRLEN) == NULL)
            return -1;
    }
    x->n_listeners = s.n_listeners;
    x->configured = true;
    log_configure(s.log_level, (enum log_format)s.log_format);

    int fd = metrics_listen(x, &s.listen);
    if (fd < 0) {
        exporter_exit(x, PROC_EXIT_RESPAWN);
        return 0;
    }
    if (priv_drop(s.setuid, s.uid, s.gid) < 0) {
        exporter_exit(x, MC_EXIT_FATAL);
        return 0;
    }
    acceptor_init(&x->acc, x->loop, fd, ACCEPT_BATCH, x->addr, &x->pause_logged_ms,
                  exporter_on_accept, x);
    if (acceptor_start(&x->acc) < 0) {
        exporter_exit(x, PROC_EXIT_RESPAWN);
        return 0;
    }
    /* READY=1 waits for this: the socket accepts from now on */
    if (chan_send(&x->chan, MSG_LISTENING, 0, NULL, 0, -1) < 0 ||
        chan_flush(&x->chan) == MC_ERROR) {
        log_error("cannot tell the master that the metrics listener is up");
        exporter_exit(x, PROC_EXIT_RESPAWN);
    }
    return 0;
}

/* The master is trusted but checked: anything unexpected is a bug, and we exit. */
static int metrics_on_message(struct exporter *x, struct chan_msg *m)
{
    switch (m->hdr.type) {
    case MSG_SHM: {
        int rc = -1;
        if (m->fd >= 0 && m->hdr.len == sizeof(struct msg_shm) && x->shm == NULL)
            rc = shm_attach_readonly(m->fd, &x->shm);
        if (m->fd >= 0)
            close(m->fd);
        return rc;
    }
    case MSG_METRICS_SETTINGS:
        if (m->fd >= 0) {
            close(m->fd);
            return -1;
        }
        if (x->shm == NULL || x->configured)
            return -1;
        return metrics_configure(x, m);
    case MSG_PING:
        /* the master's watchdog: answered at once */
        if (m->fd >= 0 || m->hdr.len != 0)
            break;
        return chan_send(&x->chan, MSG_PONG, 0, NULL, 0, -1) < 0 || chan_flush(&x->chan) == MC_ERROR
                   ? -1
                   : 0;
    }
    if (m->fd >= 0)
        close(m->fd);
    return -1;
}

static int metrics_on_message_cb(void *arg, struct chan_msg *m)
{
    struct exporter *x = arg;

    if (metrics_on_message(x, m) < 0) {
        log_error("malformed message type %u (len %u) from the master", m->hdr.type, m->hdr.len);
        exporter_exit(x, PROC_EXIT_RESPAWN);
    }
    return x->done ? -1 : 0;
}

static void metrics_chan_event(struct ev *ev, uint32_t events)
{
    struct exporter *x = ev->data;
    (void)events;

    if (!x->done && !proc_chan_event(x->loop, &x->chan, &x->chan_ev, metrics_on_message_cb, x) &&
        !x->done) {
        log_info("master channel closed, exiting");
        exporter_exit(x, 0);
    }
}

static void exporter_free(struct exporter *x)
{
    while (x->conns != NULL)
        hconn_close(x->conns);
    acceptor_close(&x->acc);
    free(x->listeners);
    chan_close(&x->chan);
    log_detach();
    loop_free(x->loop);
}

int metrics_main(int argc, char **argv)
{
    struct exporter *x = &exporter;
    sigset_t waitmask;

    (void)argv;
    log_init("metrics");
    if (argc != 2)
        return PROC_EXIT_RESPAWN;
    proc_signals((const struct proc_signal[]){{SIGTERM, &sig_stop}, {SIGINT, &sig_stop}}, 2, NULL,
                 &waitmask);

    x->loop = loop_new();
    if (x->loop == NULL)
        return PROC_EXIT_RESPAWN;
    log_nonblock(x->loop);
    x->acc.fd = -1;
    x->chan_ev = (struct ev){.cb = metrics_chan_event, .data = x};
    if (proc_chan_open(x->loop, &x->chan, &x->chan_ev, EPOLLIN | EPOLLRDHUP | EPOLLET) < 0)
        exporter_exit(x, PROC_EXIT_RESPAWN);
    while (!x->done && !sig_stop) {
        if (loop_run_once(x->loop, &waitmask) < 0)
            exporter_exit(x, PROC_EXIT_RESPAWN);
    }
    exporter_free(x);
    return x->exit_code;
}
