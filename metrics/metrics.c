/*
 * The metrics exporter: `mc-proxy __metrics`, started by the master.
 * It maps the shared counters read-only, binds its loopback address,
 * drops to the service user with no capabilities, and answers
 * GET /metrics with the Prometheus text format (version 0.0.4). It never
 * sees client traffic and holds nothing but the counters; it exits when
 * its channel to the master closes.
 *
 * The HTTP side is deliberately small: one request per connection, a
 * bounded request buffer, a deadline per connection, a cap on
 * connections, and "Connection: close" on every answer.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/msg.h"
#include "common/priv.h"
#include "common/proc.h"
#include "common/shm.h"
#include "metrics/http.h"

#define METRICS_CHAN_FD 3
#define REQ_MAX         4096 /* request line and headers */
#define CONN_MAX        64
#define CONN_TIMEOUT_MS 5000 /* to send the request; again to take the answer */
#define ACCEPT_BATCH    16
#define ACCEPT_PAUSE_MS 250 /* out of descriptors: wait instead of spinning */
#define LISTEN_BACKLOG  64
#define BODY_MAX        (4u << 20) /* far above what the counters can render to */
#define EXIT_PROTOCOL   1
#define EXIT_TRANSIENT  1 /* e.g. address in use: the master retries, with its brake */
#define LOAD(p)         atomic_load_explicit((p), memory_order_relaxed)

/* A growing output buffer; the first failure sticks and is checked once. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

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
    struct ev lev; /* listening socket, level-triggered */
    bool accepting;
    struct timer accept_pause;
    struct hconn *conns;
    unsigned n_conns;
    bool done;
    int exit_code;
};

static volatile sig_atomic_t sig_stop;
static struct exporter exporter;

static void on_signal(int signo)
{
    (void)signo;
    sig_stop = 1;
}

/* ------------------------------------------------------------ output */

/* Room for n more bytes and a NUL. */
static bool sb_reserve(struct sbuf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->cap - b->len > n)
        return true;
    size_t cap = MC_MAX(b->cap * 2, b->len + n + 1);
    char *p = cap <= BODY_MAX ? realloc(b->p, cap) : NULL;
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_append(struct sbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void MC_PRINTF(2, 3) sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A label value, escaped as the text format requires. */
static void sb_label_value(struct sbuf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            sb_append(b, "\\\\", 2);
        else if (*s == '"')
            sb_append(b, "\\\"", 2);
        else if (*s == '\n')
            sb_append(b, "\\n", 2);
        else
            sb_append(b, s, 1);
    }
}

static void sb_free(struct sbuf *b)
{
    free(b->p);
    *b = (struct sbuf){0};
}

/* Microseconds as decimal seconds, no trailing zeros: 2500 -> "0.0025". */
static const char *fmt_seconds(uint64_t us, char *buf, size_t size)
{
    unsigned long long sec = us / 1000000u, frac = us % 1000000u;

    if (frac == 0) {
        snprintf(buf, size, "%llu", sec);
        return buf;
    }
    int n = snprintf(buf, size, "%llu.%06llu", sec, frac);
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
    return buf;
}

static void sb_family(struct sbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_listeners(struct sbuf *b, const struct exporter *x)
{
    static const char *const kinds[2][3] = {
        {"mcproxy_connections_total", "counter", "Connections accepted, per listener."},
        {"mcproxy_connections_active", "gauge", "Connections open now, per listener."},
    };

    for (int k = 0; k < 2; k++) {
        sb_family(b, kinds[k][0], kinds[k][1], kinds[k][2]);
        for (unsigned i = 0; i < x->n_listeners; i++) {
            const struct shm_listener *l = &x->shm->listeners[i];
            sb_printf(b, "%s{listener=\"", kinds[k][0]);
            sb_label_value(b, x->listeners[i]);
            if (k == 0)
                sb_printf(b, "\"} %llu\n", (unsigned long long)LOAD(&l->total));
            else
                sb_printf(b, "\"} %lld\n", (long long)LOAD(&l->active));
        }
    }
}

static void render_workers(struct sbuf *b, const struct shm *s)
{
    unsigned running = 0;

    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        running += LOAD(&s->workers[i].pid) != 0;
    sb_family(b, "mcproxy_workers", "gauge", "Worker processes running.");
    sb_printf(b, "mcproxy_workers %u\n", running);

    sb_family(b, "mcproxy_worker_connections_total", "counter",
              "Connections accepted, per running worker slot.");
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        if (LOAD(&s->workers[i].pid) != 0)
            sb_printf(b, "mcproxy_worker_connections_total{worker=\"%u\"} %llu\n", i,
                      (unsigned long long)LOAD(&s->workers[i].total));
    }
    sb_family(b, "mcproxy_worker_connections_active", "gauge",
              "Connections open now, per running worker slot.");
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        if (LOAD(&s->workers[i].pid) != 0)
            sb_printf(b, "mcproxy_worker_connections_active{worker=\"%u\"} %lld\n", i,
                      (long long)LOAD(&s->workers[i].active));
    }
}

/* Everything summed over the worker slots: a dead worker's counts stay in its slot. */
static void render_sums(struct sbuf *b, const struct shm *s)
{
    uint64_t refused[REASON__COUNT] = {0}, buckets[SHM_CONNECT_BOUNDS + 1] = {0};
    uint64_t bytes_in = 0, bytes_out = 0, sum_us = 0, count = 0;
    char secs[32];

    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        const struct shm_worker *w = &s->workers[i];
        for (unsigned r = 0; r < REASON__COUNT; r++)
            refused[r] += LOAD(&w->refused[r]);
        for (unsigned k = 0; k <= SHM_CONNECT_BOUNDS; k++)
            buckets[k] += LOAD(&w->connect_buckets[k]);
        bytes_in += LOAD(&w->bytes_in);
        bytes_out += LOAD(&w->bytes_out);
        sum_us += LOAD(&w->connect_sum_us);
    }

    sb_family(b, "mcproxy_refusals_total", "counter", "Connections refused, by reason.");
    for (unsigned r = REASON_NONE + 1; r < REASON__COUNT; r++)
        sb_printf(b, "mcproxy_refusals_total{reason=\"%s\"} %llu\n", reason_name(r),
                  (unsigned long long)refused[r]);

    sb_family(b, "mcproxy_bytes_total", "counter",
              "Bytes relayed: in is client to backend, out is backend to client.");
    sb_printf(b, "mcproxy_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)bytes_in);
    sb_printf(b, "mcproxy_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)bytes_out);

    /* count is the bucket total, so +Inf and _count agree even mid-update */
    sb_family(b, "mcproxy_backend_connect_seconds", "histogram",
              "Time to establish backend TCP connections.");
    for (unsigned k = 0; k < SHM_CONNECT_BOUNDS; k++) {
        count += buckets[k];
        sb_printf(b, "mcproxy_backend_connect_seconds_bucket{le=\"%s\"} %llu\n",
                  fmt_seconds(shm_connect_bounds_us[k], secs, sizeof(secs)),
                  (unsigned long long)count);
    }
    count += buckets[SHM_CONNECT_BOUNDS];
    sb_printf(b, "mcproxy_backend_connect_seconds_bucket{le=\"+Inf\"} %llu\n",
              (unsigned long long)count);
    sb_printf(b, "mcproxy_backend_connect_seconds_sum %s\n",
              fmt_seconds(sum_us, secs, sizeof(secs)));
    sb_printf(b, "mcproxy_backend_connect_seconds_count %llu\n", (unsigned long long)count);
}

/* One (listener, route) pair's counters, summed over the worker slots. */
struct http_row {
    uint32_t listener;
    const char *route;
    uint64_t responses[SHM_HTTP_CLASSES], policy_blocks;
};

static int http_row_cmp(const void *a, const void *b)
{
    const struct http_row *x = a, *y = b;

    if (x->listener != y->listener)
        return x->listener < y->listener ? -1 : 1;
    return strcmp(x->route, y->route);
}

static void http_row_add(struct http_row *r, const struct shm_http_counts *n)
{
    for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
        r->responses[k] += LOAD(&n->responses[k]);
    r->policy_blocks += LOAD(&n->policy_blocks);
}

/* name{listener="...",route="..." (the caller closes the braces) */
static void http_row_labels(struct sbuf *b, const char *name, const struct exporter *x,
                            const struct http_row *r)
{
    sb_printf(b, "%s{listener=\"", name);
    sb_label_value(b, x->listeners[r->listener]);
    sb_printf(b, "\",route=\"");
    sb_label_value(b, r->route);
    sb_printf(b, "\"");
}

/*
 * Every worker's route table, merged by (listener, route), then each
 * listener's overflow bucket as route="(other)" when it counted
 * anything. Rows come sorted, so the output is stable between scrapes.
 */
static void render_http(struct sbuf *b, const struct exporter *x)
{
    const struct shm *s = x->shm;
    size_t n = 0, cap = 0;

    /* a slot that never accepted a connection has answered nothing: its pages stay untouched */
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        if (LOAD(&s->workers[i].total) != 0)
            cap +=
                MC_MIN(atomic_load_explicit(&s->workers[i].http_routes_used, memory_order_acquire),
                       (uint32_t)SHM_HTTP_ROUTES);
    struct http_row *rows = calloc(cap + x->n_listeners + 1, sizeof(*rows));
    if (rows == NULL) {
        b->failed = true;
        return;
    }
    for (unsigned i = 0; i < MC_MAX_WORKERS && n < cap; i++) {
        const struct shm_worker *w = &s->workers[i];
        if (LOAD(&w->total) == 0)
            continue;
        uint32_t used = MC_MIN(atomic_load_explicit(&w->http_routes_used, memory_order_acquire),
                               (uint32_t)SHM_HTTP_ROUTES);
        for (uint32_t j = 0; j < used && n < cap; j++) {
            const struct shm_http_route *e = &w->http_routes[j];
            /* the worker wrote the name whole and terminated before publishing it */
            if (e->listener >= x->n_listeners || memchr(e->route, '\0', sizeof(e->route)) == NULL)
                continue;
            rows[n].listener = e->listener;
            rows[n].route = e->route;
            http_row_add(&rows[n++], &e->n);
        }
    }
    qsort(rows, n, sizeof(*rows), http_row_cmp);
    size_t m = 0; /* merge equal neighbours */
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && http_row_cmp(&rows[m - 1], &rows[i]) == 0) {
            for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
                rows[m - 1].responses[k] += rows[i].responses[k];
            rows[m - 1].policy_blocks += rows[i].policy_blocks;
        } else {
            rows[m++] = rows[i];
        }
    }
    for (unsigned l = 0; l < x->n_listeners; l++) {
        struct http_row o = {.listener = l, .route = "(other)"};
        for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
            if (LOAD(&s->workers[i].total) != 0)
                http_row_add(&o, &s->workers[i].http_other[l]);
        uint64_t any = o.policy_blocks;
        for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
            any += o.responses[k];
        if (any > 0)
            rows[m++] = o;
    }

    sb_family(b, "mcproxy_http_responses_total", "counter",
              "L7 responses (the backend's and our own), by listener, route and status class.");
    for (size_t i = 0; i < m; i++) {
        for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++) {
            http_row_labels(b, "mcproxy_http_responses_total", x, &rows[i]);
            sb_printf(b, ",code=\"%uxx\"} %llu\n", k + 1, (unsigned long long)rows[i].responses[k]);
        }
    }
    sb_family(b, "mcproxy_policy_blocks_total", "counter",
              "L7 requests refused by a route policy (403), by listener and route.");
    for (size_t i = 0; i < m; i++) {
        http_row_labels(b, "mcproxy_policy_blocks_total", x, &rows[i]);
        sb_printf(b, "} %llu\n", (unsigned long long)rows[i].policy_blocks);
    }
    free(rows);
}

static void render(struct sbuf *b, const struct exporter *x)
{
    const struct shm *s = x->shm;

    render_listeners(b, x);
    render_sums(b, s);
    render_http(b, x);
    sb_family(b, "mcproxy_reloads_total", "counter", "Configuration reloads.");
    sb_printf(b, "mcproxy_reloads_total %llu\n", (unsigned long long)LOAD(&s->reloads));
    sb_family(b, "mcproxy_worker_restarts_total", "counter",
              "Workers respawned after dying, by reason (watchdog: killed showing no progress).");
    uint64_t restarts = LOAD(&s->worker_restarts), by_watchdog = LOAD(&s->worker_restarts_watchdog);
    sb_printf(b, "mcproxy_worker_restarts_total{reason=\"exit\"} %llu\n",
              (unsigned long long)(restarts > by_watchdog ? restarts - by_watchdog : 0));
    sb_printf(b, "mcproxy_worker_restarts_total{reason=\"watchdog\"} %llu\n",
              (unsigned long long)by_watchdog);
    render_workers(b, s);
    sb_family(b, "mcproxy_log_lines_dropped_total", "counter",
              "Log lines dropped because their destination could not take them, by process.");
    sb_printf(b, "mcproxy_log_lines_dropped_total{process=\"master\"} %llu\n",
              (unsigned long long)LOAD(&s->log_dropped_master));
    sb_printf(b, "mcproxy_log_lines_dropped_total{process=\"worker\"} %llu\n",
              (unsigned long long)LOAD(&s->log_dropped_workers));
    sb_printf(b, "mcproxy_log_lines_dropped_total{process=\"admin\"} %llu\n",
              (unsigned long long)LOAD(&s->log_dropped_admin));
    sb_printf(b, "mcproxy_log_lines_dropped_total{process=\"metrics\"} %llu\n",
              (unsigned long long)log_dropped());
    sb_family(b, "mcproxy_start_time_seconds", "gauge", "Unix time the server started.");
    sb_printf(b, "mcproxy_start_time_seconds %llu\n", (unsigned long long)s->started_at);
}

/* ------------------------------------------------------------ connections */

static void hconn_close(struct hconn *c)
{
    struct exporter *x = c->x;

    loop_timer_stop(x->loop, &c->timer);
    loop_del(x->loop, &c->ev);
    close(c->ev.fd);
    sb_free(&c->out);
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
    sb_free(&c->out);
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

    sb_printf(o,
              "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
              "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
              status, body_len, extra);
    if (!head)
        sb_append(o, body, body_len);
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
    render(&body, c->x);
    if (body.failed)
        hconn_error(c, head, "500 Internal Server Error", "");
    else
        hconn_respond(c, head, "200 OK", "", body.p, body.len);
    sb_free(&body);
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

static void listener_resume(struct timer *t)
{
    struct exporter *x = t->data;

    if (loop_add(x->loop, &x->lev, EPOLLIN) == 0)
        x->accepting = true;
    else
        loop_timer_set(x->loop, &x->accept_pause, ACCEPT_PAUSE_MS);
}

static void listener_on_accept(struct ev *ev, uint32_t events)
{
    struct exporter *x = ev->data;
    (void)events;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(x->lev.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            log_errno(LOGL_ERROR, errno, "accept(); pausing for %d ms", ACCEPT_PAUSE_MS);
            loop_del(x->loop, &x->lev);
            x->accepting = false;
            loop_timer_set(x->loop, &x->accept_pause, ACCEPT_PAUSE_MS);
            return;
        }
        struct hconn *c = x->n_conns < CONN_MAX ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            close(fd); /* over the cap: a scraper retries, a flood gets nothing */
            continue;
        }
        c->x = x;
        c->state = HC_READ;
        c->ev = (struct ev){.fd = fd, .cb = hconn_on_event, .data = c};
        c->timer = (struct timer){.cb = hconn_on_timer, .data = c};
        if (loop_add(x->loop, &c->ev, EPOLLIN | EPOLLRDHUP) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = x->conns;
        if (x->conns != NULL)
            x->conns->prev = c;
        x->conns = c;
        x->n_conns++;
        loop_timer_set(x->loop, &c->timer, CONN_TIMEOUT_MS);
    }
}

/* ------------------------------------------------------------ start-up */

static int listen_open(const struct mc_addr *a)
{
    char name[ADDR_STRLEN];
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    addr_format(a, name, sizeof(name));
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        log_errno(LOGL_ERROR, errno, "cannot listen on %s", name);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    log_info("serving metrics on http://%s/metrics", name);
    return fd;
}

static void exporter_exit(struct exporter *x, int code)
{
    x->done = true;
    x->exit_code = code;
}

/* Settings arrive once: bind, then give up every privilege before serving. */
static int configure(struct exporter *x, const struct chan_msg *m)
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

    x->lev.fd = listen_open(&s.listen);
    if (x->lev.fd < 0) {
        exporter_exit(x, EXIT_TRANSIENT);
        return 0;
    }
    if (priv_drop(s.setuid, s.uid, s.gid) < 0) {
        exporter_exit(x, MC_EXIT_FATAL);
        return 0;
    }
    listener_resume(&x->accept_pause);
    /* READY=1 waits for this: the socket accepts from now on */
    if (chan_send(&x->chan, MSG_LISTENING, 0, NULL, 0, -1) < 0 ||
        chan_flush(&x->chan) == MC_ERROR) {
        log_error("cannot tell the master that the metrics listener is up");
        exporter_exit(x, EXIT_TRANSIENT);
    }
    return 0;
}

/* The master is trusted but checked: anything unexpected is a bug, and we exit. */
static int on_message(struct exporter *x, struct chan_msg *m)
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
        return configure(x, m);
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

static int on_message_cb(void *arg, struct chan_msg *m)
{
    struct exporter *x = arg;

    if (on_message(x, m) < 0) {
        log_error("malformed message type %u (len %u) from the master", m->hdr.type, m->hdr.len);
        exporter_exit(x, EXIT_PROTOCOL);
    }
    return x->done ? -1 : 0;
}

static void chan_on_event(struct ev *ev, uint32_t events)
{
    struct exporter *x = ev->data;
    (void)events;

    if (x->done)
        return;
    int rc = chan_drain(&x->chan, on_message_cb, x);
    if (rc != MC_OK && !x->done) {
        log_info("master channel closed, exiting");
        exporter_exit(x, 0);
    }
}

static void exporter_free(struct exporter *x)
{
    while (x->conns != NULL)
        hconn_close(x->conns);
    if (x->lev.fd >= 0) {
        if (x->accepting)
            loop_del(x->loop, &x->lev);
        close(x->lev.fd);
    }
    loop_timer_stop(x->loop, &x->accept_pause);
    free(x->listeners);
    chan_close(&x->chan);
    log_detach();
    loop_free(x->loop);
}

int metrics_main(int argc, char **argv)
{
    struct exporter *x = &exporter;
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t block, waitmask;

    (void)argv;
    log_init("metrics");
    if (argc != 2)
        return EXIT_PROTOCOL;

    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* reload is the master's job */
    /* and so is reopening the access file (SIGUSR1 to the whole unit is harmless) */
    signal(SIGUSR1, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);

    x->loop = loop_new();
    if (x->loop == NULL)
        return EXIT_PROTOCOL;
    log_nonblock(x->loop);
    x->lev = (struct ev){.fd = -1, .cb = listener_on_accept, .data = x};
    x->accept_pause = (struct timer){.cb = listener_resume, .data = x};
    chan_init(&x->chan, METRICS_CHAN_FD);
    x->chan_ev = (struct ev){.fd = METRICS_CHAN_FD, .cb = chan_on_event, .data = x};
    if (loop_add(x->loop, &x->chan_ev, EPOLLIN | EPOLLRDHUP | EPOLLET) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() for the master channel");
        exporter_exit(x, EXIT_PROTOCOL);
    }
    while (!x->done && !sig_stop) {
        if (loop_run_once(x->loop, &waitmask) < 0)
            exporter_exit(x, EXIT_PROTOCOL);
    }
    exporter_free(x);
    return x->exit_code;
}
