/* prom_render(): the exporter's Prometheus text, from counters set by hand. */
#include <stdlib.h>
#include <string.h>

#include "metrics/prom.h"
#include "tap.h"

/* The lines the counters below must render to, each whole. */
static const char *const want[] = {
    "# TYPE mcproxy_connections_total counter",
    "mcproxy_connections_total{listener=\"0.0.0.0:443\"} 7",
    "mcproxy_connections_active{listener=\"a\\\"b\\\\c\\nd\"} 3",
    "mcproxy_refusals_total{reason=\"firewall_ip\"} 5",
    "mcproxy_bytes_total{direction=\"in\"} 300",
    "mcproxy_bytes_total{direction=\"out\"} 30",
    "mcproxy_backend_connect_seconds_bucket{le=\"+Inf\"} 4",
    "mcproxy_backend_connect_seconds_sum 0.0025",
    "mcproxy_backend_connect_seconds_count 4",
    "mcproxy_http_responses_total{listener=\"0.0.0.0:443\",route=\"a.example\",code=\"2xx\"} 3",
    "mcproxy_http_responses_total{listener=\"0.0.0.0:443\",route=\"(other)\",code=\"5xx\"} 1",
    "mcproxy_policy_blocks_total{listener=\"0.0.0.0:443\",route=\"a.example\"} 1",
    "mcproxy_reloads_total 2",
    "mcproxy_worker_restarts_total{reason=\"exit\"} 1",
    "mcproxy_worker_restarts_total{reason=\"watchdog\"} 1",
    "mcproxy_workers 2",
    "mcproxy_worker_connections_total{worker=\"1\"} 4",
    "mcproxy_log_lines_dropped_total{process=\"metrics\"} 9",
    "mcproxy_start_time_seconds 1700000000",
};

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    }
    return false;
}

/* One response of route on listener 0, counted by worker w (rows of two workers merge). */
static void count_route(struct shm *s, unsigned w, const char *route, unsigned status, bool block)
{
    s->workers[w].total = 1;
    shm_http_count(shm_http_route(&s->workers[w], 0, route), status, block);
}

int main(void)
{
    struct shm *s = calloc(1, sizeof(*s));
    char names[2][ADDR_STRLEN] = {"0.0.0.0:443", "a\"b\\c\nd"};
    struct sbuf b = {0};

    if (s == NULL)
        return 1;
    s->started_at = 1700000000;
    s->reloads = 2;
    s->worker_restarts = 2;
    s->worker_restarts_watchdog = 1;
    s->listeners[0].total = 7;
    s->listeners[1].active = 3;
    s->workers[0].pid = 100;
    s->workers[1].pid = 101;
    s->workers[0].refused[REASON_FIREWALL_IP] = 2;
    s->workers[1].refused[REASON_FIREWALL_IP] = 3;
    s->workers[0].bytes_in = 100;
    s->workers[1].bytes_in = 200;
    s->workers[1].bytes_out = 30;
    s->workers[0].connect_buckets[0] = 3;
    s->workers[1].connect_buckets[SHM_CONNECT_BOUNDS] = 1;
    s->workers[0].connect_sum_us = 2500;
    count_route(s, 0, "a.example", 200, false);
    count_route(s, 1, "a.example", 204, false);
    count_route(s, 1, "a.example", 201, false);
    count_route(s, 1, "a.example", 403, true);
    shm_http_count(&s->workers[1].http_other[0], 502, false);
    s->workers[1].total = 4;

    prom_render(&b, &(struct prom_input){.shm = s,
                                         .listeners = (const char(*)[ADDR_STRLEN])names,
                                         .n_listeners = 2,
                                         .own_log_dropped = 9});
    T_OK(!b.failed && b.p != NULL, "renders");
    for (size_t i = 0; b.p != NULL && i < MC_ARRAY_LEN(want); i++)
        T_OK(has_line(b.p, want[i]), "line: %s", want[i]);
    T_OK(b.p != NULL && !has_line(b.p, "mcproxy_worker_connections_total{worker=\"2\"} 0"),
         "an empty worker slot has no per-worker lines");
    T_OK(b.p != NULL && b.p[b.len - 1] == '\n', "ends with a newline");
    sbuf_free(&b);
    free(s);
    return tap_done();
}
