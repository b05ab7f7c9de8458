/*
 * Step 4 of the config loader (see config.c): what each value means.
 * The raw structs libcyaml filled are checked and converted into struct
 * config, relative paths resolved against the config's directory; each
 * error is reported at the line the index of step 2 has for its key.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "addr.h"
#include "config_impl.h"
#include "hostname.h"
#include "log.h"

#define DEFAULT_BACKUPS_KEEP 7
#define MAX_BACKUPS_KEEP     1000
#define DEFAULT_SOCKET_MODE  0660
/* Timers are armed in int milliseconds (epoll, timerfd helpers). */
#define MAX_DURATION_MS (596ULL * 3600 * 1000)
#define MAX_DURATION    "596h"

static bool tainted(struct loader *ld, const char *path)
{
    const struct path_entry *e;

    if (ld->n_tainted == 0) /* the common case: no look-up */
        return false;
    e = cfg_idx_find(ld, path);
    return e != NULL && e->tainted;
}

/*
 * Reports an error about PREFIX.KEY at the line of that key, or of the
 * nearest enclosing one when the key is absent from the file.
 */
static void bad(struct loader *ld, const char *prefix, const char *key, const char *fmt, ...)
    MC_PRINTF(4, 5);

static void bad(struct loader *ld, const char *prefix, const char *key, const char *fmt, ...)
{
    char path[PATH_LEN], near[PATH_LEN];
    const struct path_entry *e;
    va_list ap;

    snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
    snprintf(near, sizeof(near), "%s", path);
    while ((e = cfg_idx_find(ld, near)) == NULL && near[0] != '\0') {
        char *cut = strrchr(near, '.'), *bracket = strrchr(near, '[');
        if (cut == NULL || (bracket != NULL && bracket > cut))
            cut = bracket;
        *(cut != NULL ? cut : near) = '\0';
    }
    va_start(ap, fmt);
    cfg_vfail(ld, e ? e->line : 0, e ? e->env : NULL, path, fmt, ap);
    va_end(ap);
}

static char *dup_str(struct loader *ld, const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        ld->oom = true;
    return d;
}

/* Relative paths are taken from the directory of the config file. */
static char *resolve(struct loader *ld, const char *path)
{
    const char *sep;
    char *out;

    if (path[0] == '/')
        return dup_str(ld, path);
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    sep = ld->dir[strlen(ld->dir) - 1] == '/' ? "" : "/";
    if (asprintf(&out, "%s%s%s", ld->dir, sep, path) < 0) {
        ld->oom = true;
        return NULL;
    }
    return out;
}

static void file_path(struct loader *ld, const char *prefix, const char *key, const char *raw,
                      char **out)
{
    if (raw == NULL)
        return;
    if (raw[0] == '\0')
        bad(ld, prefix, key, "must not be empty");
    else
        *out = resolve(ld, raw);
}

static void duration(struct loader *ld, const char *prefix, const char *key, const char *raw,
                     uint64_t *out)
{
    uint64_t ms;

    if (raw == NULL)
        return;
    if (config_parse_duration(raw, &ms) < 0)
        bad(ld, prefix, key, "invalid duration \"%s\": use a number and ms, s, m or h, e.g. \"5s\"",
            QUOTED(raw));
    else if (ms == 0)
        bad(ld, prefix, key, "must be greater than zero");
    else if (ms > MAX_DURATION_MS)
        bad(ld, prefix, key, "must be at most %s", MAX_DURATION);
    else
        *out = ms;
}

/* proxy.worker_watchdog: a duration of at least CONFIG_WATCHDOG_MIN_MS, or 0 (off). */
static void watchdog(struct loader *ld, const char *raw, uint64_t *out)
{
    uint64_t ms = 0;

    if (raw == NULL)
        return;
    /* "off" needs no unit */
    if (strcmp(raw, "0") != 0 && config_parse_duration(raw, &ms) < 0)
        bad(ld, "proxy", "worker_watchdog",
            "invalid duration \"%s\": use a number and ms, s, m or h, e.g. \"5s\", or 0 for off",
            QUOTED(raw));
    else if (ms != 0 && ms < CONFIG_WATCHDOG_MIN_MS)
        /* children prove progress every CONFIG_WATCHDOG_MIN_MS / 4 (shm.h) */
        bad(ld, "proxy", "worker_watchdog", "must be 0 (off) or at least %llums",
            (unsigned long long)CONFIG_WATCHDOG_MIN_MS);
    else if (ms > MAX_DURATION_MS)
        bad(ld, "proxy", "worker_watchdog", "must be at most %s", MAX_DURATION);
    else
        *out = ms;
}

static void set_defaults(struct config *c)
{
    c->database_backups_keep = DEFAULT_BACKUPS_KEEP;
    c->grpc.socket_mode = DEFAULT_SOCKET_MODE;
    c->firewall.rate_window_ms = 10 * 1000;
    c->proxy.connect_timeout_ms = 5 * 1000;
    c->proxy.handshake_timeout_ms = 10 * 1000;
    c->proxy.idle_timeout_ms = 300 * 1000;
    c->proxy.response_timeout_ms = 60 * 1000;
    c->proxy.shutdown_timeout_ms = 30 * 1000;
    c->proxy.worker_watchdog_ms = 5 * 1000;
    c->log_level = LOGL_INFO;
    c->log_format = LOG_FORMAT_TEXT;
}

/* cfg->path made absolute (without resolving symlinks), and its directory. */
static int set_paths(struct loader *ld, struct config *c)
{
    const char *file = ld->file;
    char *cwd, *slash;

    if (file[0] == '/') {
        c->path = dup_str(ld, file);
    } else {
        cwd = getcwd(NULL, 0);
        if (cwd == NULL) {
            cfg_fail(ld, 0, NULL, "", "cannot find the current directory: %s", strerror(errno));
            return -1;
        }
        while (file[0] == '.' && file[1] == '/')
            file += 2;
        if (asprintf(&c->path, "%s/%s", cwd, file) < 0) {
            c->path = NULL;
            ld->oom = true;
        }
        free(cwd);
    }
    if (c->path == NULL)
        return -1;
    slash = strrchr(c->path, '/');
    c->dir = strndup(c->path, slash == c->path ? 1 : (size_t)(slash - c->path));
    if (c->dir == NULL) {
        ld->oom = true;
        return -1;
    }
    ld->dir = c->dir;
    return 0;
}

static void conv_top(struct loader *ld, const struct raw_config *r, struct config *c)
{
    uint64_t n;

    if (r->database != NULL && !tainted(ld, "database")) {
        if (r->database->path[0] == '\0')
            bad(ld, "database", "path", "must not be empty");
        else
            c->database_path = resolve(ld, r->database->path);
        if (r->database->backups_keep != NULL) {
            unsigned keep = *r->database->backups_keep;
            if (keep < 1 || keep > MAX_BACKUPS_KEEP)
                bad(ld, "database", "backups_keep", "must be from 1 to %u, got %u",
                    MAX_BACKUPS_KEEP, keep);
            else
                c->database_backups_keep = keep;
        }
    }
    if (r->user != NULL && !tainted(ld, "user")) {
        if (r->user[0] == '\0')
            bad(ld, "", "user", "must not be empty");
        else
            c->user = dup_str(ld, r->user);
    }
    if (r->workers != NULL && !tainted(ld, "workers") && strcmp(r->workers, "auto") != 0) {
        if (cfg_parse_decimal(r->workers, MC_MAX_WORKERS, &n) && n >= 1)
            c->workers = (unsigned)n;
        else
            bad(ld, "", "workers", "must be auto or a number from 1 to %u, got \"%s\"",
                MC_MAX_WORKERS, QUOTED(r->workers));
    }
    c->cpu_affinity = r->cpu_affinity;
}

static void conv_route(struct loader *ld, const struct raw_route *r, const char *p,
                       struct route_conf *rc)
{
    char host[MC_HOSTNAME_MAX + 1];
    const char *err;

    if (tainted(ld, p))
        return;
    if (hostname_normalize_pattern(r->hostname, strlen(r->hostname), host) < 0)
        bad(ld, p, "hostname", "invalid hostname \"%s\" (a DNS name, or *. and a DNS name)",
            QUOTED(r->hostname));
    else
        rc->hostname = dup_str(ld, host);
    if (addr_parse_hostport(r->backend, &rc->backend_addr, &err) < 0)
        bad(ld, p, "backend", "invalid backend \"%s\": %s", QUOTED(r->backend), err);
    else
        rc->backend = dup_str(ld, r->backend);

    rc->mode = r->mode;
    if (r->mode == ROUTE_L7) {
        if (r->tls_cert == NULL)
            bad(ld, p, "tls_cert", "required when mode is l7");
        if (r->tls_key == NULL)
            bad(ld, p, "tls_key", "required when mode is l7");
    } else {
        if (r->tls_cert != NULL)
            bad(ld, p, "tls_cert", "only allowed when mode is l7");
        if (r->tls_key != NULL)
            bad(ld, p, "tls_key", "only allowed when mode is l7");
        if (r->backend_tls)
            bad(ld, p, "backend_tls", "only allowed when mode is l7");
        if (r->n_policies > 0)
            bad(ld, p, "l7_policies", "only allowed when mode is l7");
    }
    file_path(ld, p, "tls_cert", r->tls_cert, &rc->tls_cert);
    file_path(ld, p, "tls_key", r->tls_key, &rc->tls_key);
    rc->backend_tls = r->backend_tls;
    rc->send_proxy_protocol = r->send_proxy_protocol;

    if (r->n_policies == 0)
        return;
    rc->policies = calloc(r->n_policies, sizeof(*rc->policies));
    if (rc->policies == NULL) {
        ld->oom = true;
        return;
    }
    rc->n_policies = r->n_policies;
    for (unsigned i = 0; i < r->n_policies; i++) {
        char pp[PATH_LEN];

        snprintf(pp, sizeof(pp), "%s.l7_policies[%u]", p, i);
        if (tainted(ld, pp))
            continue;
        rc->policies[i].type = r->policies[i].type;
        if (r->policies[i].value[0] == '\0')
            bad(ld, pp, "value", "must not be empty");
        else
            rc->policies[i].value = dup_str(ld, r->policies[i].value);
    }
}

static bool same_bind(const struct mc_bind *a, const struct mc_bind *b)
{
    return a->dual_stack == b->dual_stack && a->v6only == b->v6only && a->addr.len == b->addr.len &&
           memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0;
}

static void conv_listener(struct loader *ld, const struct raw_listener *r, unsigned li,
                          struct listener_conf *lc)
{
    struct name_index names; /* hostname -> the first route that has it */
    char p[32], key[64];
    const char *err;
    unsigned j;

    snprintf(p, sizeof(p), "listeners[%u]", li);
    if (!tainted(ld, p)) {
        if (addr_parse_bind(r->addr, &lc->bind, &err) < 0)
            bad(ld, p, "addr", "invalid listen address \"%s\": %s", QUOTED(r->addr), err);
        else
            lc->addr = dup_str(ld, r->addr);
        lc->proxy_protocol = r->proxy_protocol;
        if (r->proxy_protocol && r->n_trusted_proxies == 0)
            bad(ld, p, "trusted_proxies", "required and non-empty when proxy_protocol is true");
        if (r->n_trusted_proxies > 0) {
            lc->trusted_proxies = calloc(r->n_trusted_proxies, sizeof(*lc->trusted_proxies));
            if (lc->trusted_proxies == NULL) {
                ld->oom = true;
                return;
            }
            lc->n_trusted_proxies = r->n_trusted_proxies;
        }
        for (unsigned i = 0; i < r->n_trusted_proxies; i++) {
            if (addr_parse_cidr(r->trusted_proxies[i], true, &lc->trusted_proxies[i], &err) < 0) {
                snprintf(key, sizeof(key), "trusted_proxies[%u]", i);
                bad(ld, p, key, "invalid CIDR \"%s\": %s", QUOTED(r->trusted_proxies[i]), err);
            }
        }
        lc->max_connections = r->max_connections;
    }

    if (r->n_routes == 0)
        return;
    lc->routes = calloc(r->n_routes, sizeof(*lc->routes));
    if (lc->routes == NULL) {
        ld->oom = true;
        return;
    }
    lc->n_routes = r->n_routes;
    /* a table, not a comparison of every pair: a listener may have tens of thousands */
    if (name_index_init(&names, r->n_routes) < 0) {
        ld->oom = true;
        return;
    }
    for (unsigned i = 0; i < r->n_routes && !ld->oom; i++) {
        snprintf(key, sizeof(key), "%s.routes[%u]", p, i);
        conv_route(ld, &r->routes[i], key, &lc->routes[i]);
        if (lc->routes[i].hostname == NULL)
            continue;
        j = (unsigned)name_index_add(&names, lc->routes[i].hostname, i);
        if (j != i)
            bad(ld, key, "hostname", "\"%s\" is already routed by %s.routes[%u]",
                lc->routes[i].hostname, p, j);
    }
    name_index_free(&names);
}

static void conv_listeners(struct loader *ld, const struct raw_config *r, struct config *c)
{
    if (r->n_listeners == 0 || tainted(ld, "listeners"))
        return;
    c->listeners = calloc(r->n_listeners, sizeof(*c->listeners));
    if (c->listeners == NULL) {
        ld->oom = true;
        return;
    }
    c->n_listeners = r->n_listeners;
    for (unsigned i = 0; i < r->n_listeners && !ld->oom; i++) {
        conv_listener(ld, &r->listeners[i], i, &c->listeners[i]);
        for (unsigned j = 0; j < i && c->listeners[i].addr != NULL; j++) {
            if (c->listeners[j].addr != NULL &&
                same_bind(&c->listeners[i].bind, &c->listeners[j].bind)) {
                char p[PATH_LEN];
                snprintf(p, sizeof(p), "listeners[%u]", i);
                bad(ld, p, "addr", "\"%s\" is the same address as listeners[%u]",
                    QUOTED(c->listeners[i].addr), j);
                break;
            }
        }
    }
}

/* "0660": one to four octal digits, at most 0777 (no set-id bits on a socket). */
static int parse_mode(const char *s, uint32_t *mode)
{
    uint32_t v = 0;
    size_t i;

    for (i = 0; s[i] >= '0' && s[i] <= '7' && i < 4; i++)
        v = v * 8 + (uint32_t)(s[i] - '0');
    if (i == 0 || s[i] != '\0' || v > 0777)
        return -1;
    *mode = v;
    return 0;
}

static void conv_grpc(struct loader *ld, const struct raw_grpc *r, struct grpc_conf *g)
{
    struct mc_addr a;
    const char *err;

    if (r == NULL || tainted(ld, "grpc"))
        return;
    g->enabled = true;
    if (strncmp(r->addr, "unix:", 5) == 0) {
        if (r->addr[5] == '\0') {
            bad(ld, "grpc", "addr", "the unix: socket path is empty");
        } else {
            g->unix_path = resolve(ld, r->addr + 5);
            if (g->unix_path != NULL &&
                strlen(g->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                bad(ld, "grpc", "addr", "socket path \"%s\" is too long (at most %zu bytes)",
                    QUOTED(g->unix_path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        }
    } else {
        if (addr_parse_hostport(r->addr, &a, &err) < 0)
            bad(ld, "grpc", "addr", "invalid address \"%s\": %s (or use unix:/path)",
                QUOTED(r->addr), err);
        /* SPEC 12: the admin API over TCP is refused without mTLS. */
        if (r->tls_cert == NULL)
            bad(ld, "grpc", "tls_cert", "required when grpc.addr is TCP (mTLS is mandatory)");
        if (r->tls_key == NULL)
            bad(ld, "grpc", "tls_key", "required when grpc.addr is TCP (mTLS is mandatory)");
        if (r->client_ca == NULL)
            bad(ld, "grpc", "client_ca", "required when grpc.addr is TCP (mTLS is mandatory)");
    }
    g->addr = dup_str(ld, r->addr);
    if (r->socket_mode != NULL && parse_mode(r->socket_mode, &g->socket_mode) < 0)
        bad(ld, "grpc", "socket_mode", "invalid mode \"%s\": use octal, e.g. \"0660\"",
            QUOTED(r->socket_mode));
    file_path(ld, "grpc", "tls_cert", r->tls_cert, &g->tls_cert);
    file_path(ld, "grpc", "tls_key", r->tls_key, &g->tls_key);
    file_path(ld, "grpc", "client_ca", r->client_ca, &g->client_ca);
}

static char **str_array(struct loader *ld, unsigned n)
{
    char **a;

    if (n == 0)
        return NULL;
    a = calloc(n, sizeof(*a));
    if (a == NULL)
        ld->oom = true;
    return a;
}

static void conv_firewall(struct loader *ld, const struct raw_firewall *r, struct firewall_conf *fw)
{
    char key[PATH_LEN], text[ADDR_STRLEN];
    struct mc_cidr cidr;
    const char *err;

    if (r == NULL || tainted(ld, "firewall"))
        return;
    file_path(ld, "firewall", "geoip_db", r->geoip_db, &fw->geoip_db);

    fw->blocked_ips = str_array(ld, r->n_blocked_ips);
    if (fw->blocked_ips != NULL)
        fw->n_blocked_ips = r->n_blocked_ips;
    for (unsigned i = 0; i < fw->n_blocked_ips; i++) {
        const char *s = r->blocked_ips[i];
        if (strchr(s, '/') != NULL || addr_parse_cidr(s, true, &cidr, &err) < 0) {
            snprintf(key, sizeof(key), "blocked_ips[%u]", i);
            bad(ld, "firewall", key, "\"%s\" is not an IP address%s", QUOTED(s),
                strchr(s, '/') ? " (put CIDRs in blocked_cidrs)" : "");
        } else {
            inet_ntop(cidr.family, cidr.addr, text, sizeof(text));
            fw->blocked_ips[i] = dup_str(ld, text);
        }
    }

    fw->blocked_cidrs = str_array(ld, r->n_blocked_cidrs);
    if (fw->blocked_cidrs != NULL)
        fw->n_blocked_cidrs = r->n_blocked_cidrs;
    for (unsigned i = 0; i < fw->n_blocked_cidrs; i++) {
        const char *s = r->blocked_cidrs[i];
        if (addr_parse_cidr(s, false, &cidr, &err) < 0) {
            snprintf(key, sizeof(key), "blocked_cidrs[%u]", i);
            bad(ld, "firewall", key, "invalid CIDR \"%s\": %s", QUOTED(s), err);
        } else {
            addr_format_cidr(&cidr, text, sizeof(text));
            fw->blocked_cidrs[i] = dup_str(ld, text);
        }
    }

    fw->blocked_countries = str_array(ld, r->n_blocked_countries);
    if (fw->blocked_countries != NULL)
        fw->n_blocked_countries = r->n_blocked_countries;
    for (unsigned i = 0; i < fw->n_blocked_countries; i++) {
        const char *s = r->blocked_countries[i];
        char cc[3];
        bool ok = strlen(s) == 2;

        for (size_t k = 0; ok && k < 2; k++) {
            char ch = s[k];
            if (ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 'a' + 'A');
            ok = ch >= 'A' && ch <= 'Z';
            cc[k] = ch;
        }
        if (!ok) {
            snprintf(key, sizeof(key), "blocked_countries[%u]", i);
            bad(ld, "firewall", key, "\"%s\" is not a two-letter country code (ISO 3166-1)",
                QUOTED(s));
        } else {
            cc[2] = '\0';
            fw->blocked_countries[i] = dup_str(ld, cc);
        }
    }
    if (r->n_blocked_countries > 0 && r->geoip_db == NULL)
        bad(ld, "firewall", "geoip_db", "required when blocked_countries is non-empty");

    fw->rate_limit = r->rate_limit;
    duration(ld, "firewall", "rate_window", r->rate_window, &fw->rate_window_ms);
}

static void conv_proxy(struct loader *ld, const struct raw_proxy *r, struct proxy_conf *px)
{
    if (r == NULL || tainted(ld, "proxy"))
        return;
    duration(ld, "proxy", "connect_timeout", r->connect_timeout, &px->connect_timeout_ms);
    duration(ld, "proxy", "handshake_timeout", r->handshake_timeout, &px->handshake_timeout_ms);
    duration(ld, "proxy", "idle_timeout", r->idle_timeout, &px->idle_timeout_ms);
    duration(ld, "proxy", "response_timeout", r->response_timeout, &px->response_timeout_ms);
    duration(ld, "proxy", "shutdown_timeout", r->shutdown_timeout, &px->shutdown_timeout_ms);
    watchdog(ld, r->worker_watchdog, &px->worker_watchdog_ms);
}

static bool is_loopback(const struct mc_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static void conv_metrics(struct loader *ld, const struct raw_metrics *r, struct metrics_conf *m)
{
    const char *err;

    if (r == NULL || tainted(ld, "metrics"))
        return;
    if (addr_parse_hostport(r->addr, &m->listen_addr, &err) < 0) {
        bad(ld, "metrics", "addr", "invalid address \"%s\": %s", QUOTED(r->addr), err);
        return;
    }
    if (!is_loopback(&m->listen_addr)) {
        bad(ld, "metrics", "addr", "\"%s\" is not a loopback address (127.0.0.0/8 or [::1])",
            QUOTED(r->addr));
        return;
    }
    m->enabled = true;
    m->addr = dup_str(ld, r->addr);
}

static void conv_log(struct loader *ld, const struct raw_log *r, struct config *c)
{
    if (r == NULL || tainted(ld, "log"))
        return;
    if (r->level != NULL)
        c->log_level = *r->level;
    c->log_format = r->format;
}

struct config *cfg_convert(struct loader *ld, const struct raw_config *r)
{
    struct config *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        ld->oom = true;
        return NULL;
    }
    set_defaults(c);
    if (set_paths(ld, c) < 0)
        return c;
    conv_top(ld, r, c);
    conv_listeners(ld, r, c);
    conv_grpc(ld, r->grpc, &c->grpc);
    conv_firewall(ld, r->firewall, &c->firewall);
    conv_proxy(ld, r->proxy, &c->proxy);
    conv_metrics(ld, r->metrics, &c->metrics);
    conv_log(ld, r->log, c);
    return c;
}
