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

#include "common/addr.h"
#include "common/config_impl.h"
#include "common/hostname.h"
#include "common/log.h"
#include "common/msg.h"

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

/* A user or group name; whether it exists is the master's to check when it starts. */
static void account_name(struct loader *ld, const char *prefix, const char *key, const char *raw,
                         char **out)
{
    if (raw == NULL)
        return;
    if (raw[0] == '\0')
        bad(ld, prefix, key, "must not be empty");
    else
        *out = dup_str(ld, raw);
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
    if (!tainted(ld, "user"))
        account_name(ld, "", "user", r->user, &c->user);
    if (r->workers != NULL && !tainted(ld, "workers") && strcmp(r->workers, "auto") != 0) {
        if (cfg_parse_decimal(r->workers, MC_MAX_WORKERS, &n) && n >= 1)
            c->workers = (unsigned)n;
        else
            bad(ld, "", "workers", "must be auto or a number from 1 to %u, got \"%s\"",
                MC_MAX_WORKERS, QUOTED(r->workers));
    }
    c->cpu_affinity = r->cpu_affinity;
}

/* check.h's reports, as config errors under one entity's key path. */
struct entity_report {
    struct loader *ld;
    const char *prefix;
};

static void report_key(void *arg, const char *key, const char *msg)
{
    const struct entity_report *er = arg;
    char sub[PATH_LEN];
    const char *dot = strchr(key, '.');

    /* an item (a policy) whose structure was already reported is not checked again */
    snprintf(sub, sizeof(sub), "%s.%.*s", er->prefix, dot ? (int)(dot - key) : 0, key);
    if (dot == NULL || !tainted(er->ld, sub))
        bad(er->ld, er->prefix, key, "%s", msg);
}

/* An optional file path: resolved when set and non-empty, else as it is. */
static char *resolve_opt(struct loader *ld, const char *raw)
{
    return raw != NULL && raw[0] != '\0' ? resolve(ld, raw) : NULL;
}

static void conv_route(struct loader *ld, const struct raw_route *r, const char *p,
                       struct route_conf *rc)
{
    struct entity_report er = {ld, p};
    struct check_report rep = {.fn = report_key, .arg = &er, .no_files = ld->no_files};
    char host[MC_HOSTNAME_MAX + 1];

    if (tainted(ld, p))
        return;
    /* checked as the API checks it: strings as written, files resolved */
    rc->hostname = r->hostname;
    rc->backend = r->backend;
    rc->mode = r->mode;
    rc->tls_cert = resolve_opt(ld, r->tls_cert);
    rc->tls_key = resolve_opt(ld, r->tls_key);
    rc->backend_tls = r->backend_tls;
    rc->send_proxy_protocol = r->send_proxy_protocol;
    if (r->n_policies > 0) {
        rc->policies = calloc(r->n_policies, sizeof(*rc->policies));
        if (rc->policies == NULL) {
            ld->oom = true;
            rc->hostname = rc->backend = NULL;
            return;
        }
        rc->n_policies = r->n_policies;
        /* an item already reported may lack its value; it is not reported again */
        for (unsigned i = 0; i < r->n_policies; i++)
            rc->policies[i] = (struct policy_conf){
                r->policies[i].type, r->policies[i].value ? r->policies[i].value : ""};
    }
    check_route(rc, host, &rep);
    /* from here rc owns copies, as listener_conf_free_array expects */
    rc->hostname = host[0] != '\0' ? dup_str(ld, host) : NULL;
    rc->backend = dup_str(ld, r->backend);
    for (unsigned i = 0; i < rc->n_policies; i++)
        rc->policies[i].value = dup_str(ld, rc->policies[i].value);
}

static void listener_max(struct loader *ld, const char *p, const char *s, uint32_t *out)
{
    struct entity_report er = {ld, p};
    struct check_report rep = {.fn = report_key, .arg = &er};
    bool neg = s[0] == '-';
    uint64_t v;

    if (!cfg_parse_decimal(s + neg, INT64_MAX, &v))
        bad(ld, p, "max_connections", "expected a number from 0 (unlimited) to %u, got \"%s\"",
            UINT32_MAX, QUOTED(s));
    else if (check_max_connections(neg ? -(int64_t)v : (int64_t)v, &rep) == 0)
        *out = (uint32_t)v;
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
        if (r->n_trusted_proxies > MSG_TRUSTED_MAX)
            bad(ld, p, "trusted_proxies", "at most %d entries (use wider prefixes)",
                MSG_TRUSTED_MAX);
        else if (r->n_trusted_proxies > 0) {
            lc->trusted_proxies = calloc(r->n_trusted_proxies, sizeof(*lc->trusted_proxies));
            if (lc->trusted_proxies == NULL) {
                ld->oom = true;
                return;
            }
            lc->n_trusted_proxies = r->n_trusted_proxies;
        }
        for (unsigned i = 0; i < lc->n_trusted_proxies; i++) {
            if (addr_parse_cidr(r->trusted_proxies[i], true, &lc->trusted_proxies[i], &err) < 0) {
                snprintf(key, sizeof(key), "trusted_proxies[%u]", i);
                bad(ld, p, key, "invalid CIDR \"%s\": %s", QUOTED(r->trusted_proxies[i]), err);
            }
        }
        if (r->max_connections != NULL)
            listener_max(ld, p, r->max_connections, &lc->max_connections);
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
    else if (g->socket_mode & 0002)
        /* connecting takes write permission: every account, the workers' too */
        bad(ld, "grpc", "socket_mode",
            "\"%s\" lets every local account connect, the workers' included: give access "
            "through socket_group instead",
            QUOTED(r->socket_mode));
    account_name(ld, "grpc", "socket_group", r->socket_group, &g->socket_group);
    account_name(ld, "grpc", "user", r->user, &g->user);
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

/* One of the firewall's rule lists, each value checked as AddFirewallRule checks it. */
static void fw_list(struct loader *ld, const char *name, enum fw_type type, char **raw, unsigned n,
                    char ***out, unsigned *n_out)
{
    char key[PATH_LEN], text[ADDR_STRLEN], msg[CHECK_MSG_LEN];

    *out = str_array(ld, n);
    if (*out == NULL)
        return;
    *n_out = n;
    for (unsigned i = 0; i < n; i++) {
        if (check_fw_rule(type, raw[i], text, msg) < 0) {
            snprintf(key, sizeof(key), "%s[%u]", name, i);
            bad(ld, "firewall", key, "%s", msg);
        } else {
            (*out)[i] = dup_str(ld, text);
        }
    }
}

static void conv_firewall(struct loader *ld, const struct raw_firewall *r, struct firewall_conf *fw)
{
    if (r == NULL || tainted(ld, "firewall"))
        return;
    file_path(ld, "firewall", "geoip_db", r->geoip_db, &fw->geoip_db);

    fw_list(ld, "blocked_ips", FW_IP, r->blocked_ips, r->n_blocked_ips, &fw->blocked_ips,
            &fw->n_blocked_ips);
    fw_list(ld, "blocked_cidrs", FW_CIDR, r->blocked_cidrs, r->n_blocked_cidrs, &fw->blocked_cidrs,
            &fw->n_blocked_cidrs);
    fw_list(ld, "blocked_countries", FW_COUNTRY, r->blocked_countries, r->n_blocked_countries,
            &fw->blocked_countries, &fw->n_blocked_countries);
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
    file_path(ld, "log", "access_file", r->access_file, &c->log_access_file);
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
