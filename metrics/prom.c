/*
 * The Prometheus text format (version 0.0.4) of the shared counters: a
 * pure function of what it is given, read with relaxed atomic loads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reason.h"
#include "metrics/prom.h"

#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed)

/* A label value, escaped as the text format requires. */
static void prom_label_value(struct sbuf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            sbuf_append(b, "\\\\", 2);
        else if (*s == '"')
            sbuf_append(b, "\\\"", 2);
        else if (*s == '\n')
            sbuf_append(b, "\\n", 2);
        else
            sbuf_append(b, s, 1);
    }
}

/* Microseconds as decimal seconds, no trailing zeros: 2500 -> "0.0025". */
static const char *prom_seconds(uint64_t us, char *buf, size_t size)
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

static void prom_family(struct sbuf *b, const char *name, const char *type, const char *help)
{
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_listeners(struct sbuf *b, const struct prom_input *x)
{
    static const char *const kinds[2][3] = {
        {"mcproxy_connections_total", "counter", "Connections accepted, per listener."},
        {"mcproxy_connections_active", "gauge", "Connections open now, per listener."},
    };

    for (int k = 0; k < 2; k++) {
        prom_family(b, kinds[k][0], kinds[k][1], kinds[k][2]);
        for (unsigned i = 0; i < x->n_listeners; i++) {
            const struct shm_listener *l = &x->shm->listeners[i];
            sbuf_printf(b, "%s{listener=\"", kinds[k][0]);
            prom_label_value(b, x->listeners[i]);
            if (k == 0)
                sbuf_printf(b, "\"} %llu\n", (unsigned long long)LOAD(&l->total));
            else
                sbuf_printf(b, "\"} %lld\n", (long long)LOAD(&l->active));
        }
    }
}

static void prom_workers(struct sbuf *b, const struct shm *s)
{
    unsigned running = 0;

    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        running += LOAD(&s->workers[i].pid) != 0;
    prom_family(b, "mcproxy_workers", "gauge", "Worker processes running.");
    sbuf_printf(b, "mcproxy_workers %u\n", running);

    prom_family(b, "mcproxy_worker_connections_total", "counter",
                "Connections accepted, per running worker slot.");
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        if (LOAD(&s->workers[i].pid) != 0)
            sbuf_printf(b, "mcproxy_worker_connections_total{worker=\"%u\"} %llu\n", i,
                        (unsigned long long)LOAD(&s->workers[i].total));
    }
    prom_family(b, "mcproxy_worker_connections_active", "gauge",
                "Connections open now, per running worker slot.");
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        if (LOAD(&s->workers[i].pid) != 0)
            sbuf_printf(b, "mcproxy_worker_connections_active{worker=\"%u\"} %lld\n", i,
                        (long long)LOAD(&s->workers[i].active));
    }
}

/* Everything summed over the worker slots: a dead worker's counts stay in its slot. */
static void prom_sums(struct sbuf *b, const struct shm *s)
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

    prom_family(b, "mcproxy_refusals_total", "counter", "Connections refused, by reason.");
    for (unsigned r = REASON_NONE + 1; r < REASON__COUNT; r++)
        sbuf_printf(b, "mcproxy_refusals_total{reason=\"%s\"} %llu\n", reason_name(r),
                    (unsigned long long)refused[r]);

    prom_family(b, "mcproxy_bytes_total", "counter",
                "Bytes relayed: in is client to backend, out is backend to client.");
    sbuf_printf(b, "mcproxy_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)bytes_in);
    sbuf_printf(b, "mcproxy_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)bytes_out);

    /* count is the bucket total, so +Inf and _count agree even mid-update */
    prom_family(b, "mcproxy_backend_connect_seconds", "histogram",
                "Time to establish backend TCP connections.");
    for (unsigned k = 0; k < SHM_CONNECT_BOUNDS; k++) {
        count += buckets[k];
        sbuf_printf(b, "mcproxy_backend_connect_seconds_bucket{le=\"%s\"} %llu\n",
                    prom_seconds(shm_connect_bounds_us[k], secs, sizeof(secs)),
                    (unsigned long long)count);
    }
    count += buckets[SHM_CONNECT_BOUNDS];
    sbuf_printf(b, "mcproxy_backend_connect_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)count);
    sbuf_printf(b, "mcproxy_backend_connect_seconds_sum %s\n",
                prom_seconds(sum_us, secs, sizeof(secs)));
    sbuf_printf(b, "mcproxy_backend_connect_seconds_count %llu\n", (unsigned long long)count);
}

/* One (listener, route) pair's counters, summed over the worker slots. */
struct prom_row {
    uint32_t listener;
    const char *route;
    uint64_t responses[SHM_HTTP_CLASSES], policy_blocks;
};

static int prom_row_cmp(const void *a, const void *b)
{
    const struct prom_row *x = a, *y = b;

    if (x->listener != y->listener)
        return x->listener < y->listener ? -1 : 1;
    return strcmp(x->route, y->route);
}

static void prom_row_add(struct prom_row *r, const struct shm_http_counts *n)
{
    for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
        r->responses[k] += LOAD(&n->responses[k]);
    r->policy_blocks += LOAD(&n->policy_blocks);
}

/* name{listener="...",route="..." (the caller closes the braces) */
static void prom_row_labels(struct sbuf *b, const char *name, const struct prom_input *x,
                            const struct prom_row *r)
{
    sbuf_printf(b, "%s{listener=\"", name);
    prom_label_value(b, x->listeners[r->listener]);
    sbuf_printf(b, "\",route=\"");
    prom_label_value(b, r->route);
    sbuf_printf(b, "\"");
}

/*
 * Every worker's route table, merged by (listener, route), then each
 * listener's overflow bucket as route="(other)" when it counted
 * anything. Rows come sorted, so the output is stable between scrapes.
 */
static void prom_http(struct sbuf *b, const struct prom_input *x)
{
    const struct shm *s = x->shm;
    size_t n = 0, cap = 0;

    /* a slot that never accepted a connection has answered nothing: its pages stay untouched */
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        if (LOAD(&s->workers[i].total) != 0)
            cap +=
                MC_MIN(atomic_load_explicit(&s->workers[i].http_routes_used, memory_order_acquire),
                       (uint32_t)SHM_HTTP_ROUTES);
    struct prom_row *rows = calloc(cap + x->n_listeners + 1, sizeof(*rows));
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
            prom_row_add(&rows[n++], &e->n);
        }
    }
    qsort(rows, n, sizeof(*rows), prom_row_cmp);
    size_t m = 0; /* merge equal neighbours */
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && prom_row_cmp(&rows[m - 1], &rows[i]) == 0) {
            for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
                rows[m - 1].responses[k] += rows[i].responses[k];
            rows[m - 1].policy_blocks += rows[i].policy_blocks;
        } else {
            rows[m++] = rows[i];
        }
    }
    for (unsigned l = 0; l < x->n_listeners; l++) {
        struct prom_row o = {.listener = l, .route = "(other)"};
        for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
            if (LOAD(&s->workers[i].total) != 0)
                prom_row_add(&o, &s->workers[i].http_other[l]);
        uint64_t any = o.policy_blocks;
        for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++)
            any += o.responses[k];
        if (any > 0)
            rows[m++] = o;
    }

    prom_family(b, "mcproxy_http_responses_total", "counter",
                "L7 responses (the backend's and our own), by listener, route and status class.");
    for (size_t i = 0; i < m; i++) {
        for (unsigned k = 0; k < SHM_HTTP_CLASSES; k++) {
            prom_row_labels(b, "mcproxy_http_responses_total", x, &rows[i]);
            sbuf_printf(b, ",code=\"%uxx\"} %llu\n", k + 1,
                        (unsigned long long)rows[i].responses[k]);
        }
    }
    prom_family(b, "mcproxy_policy_blocks_total", "counter",
                "L7 requests refused by a route policy (403), by listener and route.");
    for (size_t i = 0; i < m; i++) {
        prom_row_labels(b, "mcproxy_policy_blocks_total", x, &rows[i]);
        sbuf_printf(b, "} %llu\n", (unsigned long long)rows[i].policy_blocks);
    }
    free(rows);
}

void prom_render(struct sbuf *b, const struct prom_input *x)
{
    const struct shm *s = x->shm;

    prom_listeners(b, x);
    prom_sums(b, s);
    prom_http(b, x);
    prom_family(b, "mcproxy_reloads_total", "counter", "Configuration reloads.");
    sbuf_printf(b, "mcproxy_reloads_total %llu\n", (unsigned long long)LOAD(&s->reloads));
    prom_family(b, "mcproxy_worker_restarts_total", "counter",
                "Workers respawned after dying, by reason (watchdog: killed showing no progress).");
    uint64_t restarts = LOAD(&s->worker_restarts), by_watchdog = LOAD(&s->worker_restarts_watchdog);
    sbuf_printf(b, "mcproxy_worker_restarts_total{reason=\"exit\"} %llu\n",
                (unsigned long long)(restarts > by_watchdog ? restarts - by_watchdog : 0));
    sbuf_printf(b, "mcproxy_worker_restarts_total{reason=\"watchdog\"} %llu\n",
                (unsigned long long)by_watchdog);
    prom_workers(b, s);
    prom_family(b, "mcproxy_log_lines_dropped_total", "counter",
                "Log lines dropped because their destination could not take them, by process.");
    sbuf_printf(b, "mcproxy_log_lines_dropped_total{process=\"master\"} %llu\n",
                (unsigned long long)LOAD(&s->log_dropped_master));
    sbuf_printf(b, "mcproxy_log_lines_dropped_total{process=\"worker\"} %llu\n",
                (unsigned long long)LOAD(&s->log_dropped_workers));
    sbuf_printf(b, "mcproxy_log_lines_dropped_total{process=\"admin\"} %llu\n",
                (unsigned long long)LOAD(&s->log_dropped_admin));
    sbuf_printf(b, "mcproxy_log_lines_dropped_total{process=\"metrics\"} %llu\n",
                (unsigned long long)x->own_log_dropped);
    prom_family(b, "mcproxy_start_time_seconds", "gauge", "Unix time the server started.");
    sbuf_printf(b, "mcproxy_start_time_seconds %llu\n", (unsigned long long)s->started_at);
}
