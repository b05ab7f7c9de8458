/*
 * Unit tests for common/config.c. Fixtures live in t/unit/config/ (argv[1],
 * else that path relative to the current directory); the one-rule cases
 * are written to a temporary directory from the tables below.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/mc.h"
#include "tap.h"

#define MAX_MSGS 64

struct msgs {
    char *m[MAX_MSGS];
    unsigned n;
};

static void collect(void *arg, const char *msg)
{
    struct msgs *ms = arg;

    if (ms->n < MAX_MSGS)
        ms->m[ms->n] = strdup(msg);
    ms->n++;
}

static void msgs_clear(struct msgs *ms)
{
    for (unsigned i = 0; i < ms->n && i < MAX_MSGS; i++)
        free(ms->m[i]);
    ms->n = 0;
}

static void msgs_print(const struct msgs *ms)
{
    for (unsigned i = 0; i < ms->n && i < MAX_MSGS; i++)
        printf("# %s\n", ms->m[i]);
}

static const char *fixtures;
static char tmpdir[] = "/tmp/test_config.XXXXXX";
static char tmpfile_path[PATH_MAX];

/* Writes text to the scratch file and loads it. */
static struct config *load_text(const char *text, struct msgs *ms)
{
    FILE *f = fopen(tmpfile_path, "w");

    if (f == NULL) {
        perror(tmpfile_path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    /* the values' meaning; the files an L7 route names are the integration tests' */
    return config_load_no_files(tmpfile_path, collect, ms);
}

static struct config *load_fixture(const char *name, struct msgs *ms)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", fixtures, name);
    return config_load_no_files(path, collect, ms);
}

/* out = a "/" b; the tests cannot go on with a cut path. */
static void join(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);

    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "path too long: %s/%s\n", a, b);
        exit(1);
    }
}

/* The absolute directory of the fixtures, as config.c should compute it. */
static void fixture_dir(char *out, size_t size)
{
    char cwd[PATH_MAX];

    if (fixtures[0] == '/')
        snprintf(out, size, "%s", fixtures);
    else if (getcwd(cwd, sizeof(cwd)) != NULL)
        join(out, size, cwd, fixtures);
}

static bool streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static bool path_is(const char *got, const char *dir, const char *rel)
{
    char want[PATH_MAX * 2];

    snprintf(want, sizeof(want), "%s/%s", dir, rel);
    return streq(got, want);
}

static void test_full(void)
{
    struct msgs ms = {0};
    struct config *c = load_fixture("full.yaml", &ms);
    char dir[PATH_MAX];
    char buf[ADDR_STRLEN];

    fixture_dir(dir, sizeof(dir));
    T_OK(c != NULL && ms.n == 0, "full: loads without errors");
    if (c == NULL) {
        msgs_print(&ms);
        msgs_clear(&ms);
        return;
    }
    T_OK(streq(c->dir, dir) && path_is(c->path, dir, "full.yaml"),
         "full: path and dir are absolute");
    T_OK(path_is(c->database_path, dir, "state/mc.db"), "full: database.path resolved");
    T_OK(c->database_backups_keep == 30, "full: database.backups_keep");
    T_OK(streq(c->user, "mc-proxy"), "full: user");
    T_OK(c->workers == 4 && config_worker_count(c) == 4, "full: workers");
    T_OK(c->cpu_affinity, "full: cpu_affinity");

    T_OK(c->n_listeners == 3, "full: three listeners");
    const struct listener_conf *l = &c->listeners[0];
    T_OK(streq(l->addr, ":443") && l->bind.dual_stack && !l->bind.v6only,
         "full: listeners[0].addr dual stack");
    T_OK(l->proxy_protocol, "full: listeners[0].proxy_protocol");
    T_OK(l->n_trusted_proxies == 3 && l->trusted_proxies[0].family == AF_INET &&
             l->trusted_proxies[0].prefix == 8 && l->trusted_proxies[1].family == AF_INET6 &&
             l->trusted_proxies[1].prefix == 32 && l->trusted_proxies[2].prefix == 32,
         "full: listeners[0].trusted_proxies (a bare IP is a /32)");
    T_OK(l->max_connections == 1000, "full: listeners[0].max_connections");
    T_OK(l->n_routes == 2, "full: listeners[0] has two routes");
    const struct route_conf *r = &l->routes[0];
    T_OK(streq(r->hostname, "git.example.com"), "full: hostname normalised (case, trailing dot)");
    T_OK(streq(r->backend, "127.0.0.1:3000") &&
             streq(addr_format(&r->backend_addr, buf, sizeof(buf)), "127.0.0.1:3000"),
         "full: backend and backend_addr");
    T_OK(r->mode == ROUTE_L7, "full: mode l7");
    T_OK(path_is(r->tls_cert, dir, "certs/git.pem") && streq(r->tls_key, "/etc/ssl/git.key"),
         "full: tls_cert resolved, absolute tls_key kept");
    T_OK(r->backend_tls && r->send_proxy_protocol, "full: backend_tls, send_proxy_protocol");
    T_OK(r->n_policies == 2 && r->policies[0].type == POLICY_BLOCK_USER_AGENT &&
             streq(r->policies[0].value, "zgrab") && r->policies[1].type == POLICY_REQUIRE_HEADER &&
             streq(r->policies[1].value, "X-Api-Key"),
         "full: l7_policies in order");
    r = &l->routes[1];
    T_OK(streq(r->hostname, "*.apps.example.com") && r->mode == ROUTE_L4 && !r->backend_tls &&
             !r->send_proxy_protocol && r->tls_cert == NULL && r->n_policies == 0 &&
             streq(addr_format(&r->backend_addr, buf, sizeof(buf)), "[::1]:8080"),
         "full: wildcard L4 route with defaults and an IPv6 backend");
    l = &c->listeners[1];
    T_OK(streq(l->addr, "[::]:8443") && l->bind.v6only && !l->bind.dual_stack && l->n_routes == 0 &&
             !l->proxy_protocol && l->max_connections == 0,
         "full: listeners[1] IPv6 only, empty routes, defaults");
    l = &c->listeners[2];
    T_OK(streq(l->addr, "127.0.0.1:9443") && !l->bind.v6only && !l->bind.dual_stack &&
             l->bind.addr.ss.ss_family == AF_INET,
         "full: listeners[2] IPv4");

    T_OK(c->grpc.enabled && streq(c->grpc.addr, "127.0.0.1:9090") && c->grpc.unix_path == NULL,
         "full: grpc over TCP");
    T_OK(c->grpc.socket_mode == 0600, "full: grpc.socket_mode is octal");
    T_OK(c->grpc.socket_group != NULL && strcmp(c->grpc.socket_group, "mc-proxy-ops") == 0 &&
             c->grpc.user != NULL && strcmp(c->grpc.user, "mc-proxy-admin") == 0,
         "full: grpc.socket_group and grpc.user");
    T_OK(path_is(c->grpc.tls_cert, dir, "admin.pem") &&
             path_is(c->grpc.tls_key, dir, "admin.key") &&
             streq(c->grpc.client_ca, "/etc/mc-proxy/ca.pem"),
         "full: grpc certificate paths (./ stripped)");

    const struct firewall_conf *fw = &c->firewall;
    T_OK(path_is(fw->geoip_db, dir, "GeoLite2-Country.mmdb"), "full: firewall.geoip_db resolved");
    T_OK(fw->n_blocked_ips == 2 && streq(fw->blocked_ips[0], "192.0.2.7") &&
             streq(fw->blocked_ips[1], "2001:db8::7"),
         "full: blocked_ips in canonical form");
    T_OK(fw->n_blocked_cidrs == 2 && streq(fw->blocked_cidrs[0], "198.51.100.0/24") &&
             streq(fw->blocked_cidrs[1], "2001:db8:bad::/48"),
         "full: blocked_cidrs in canonical form");
    T_OK(fw->n_blocked_countries == 2 && streq(fw->blocked_countries[0], "KP") &&
             streq(fw->blocked_countries[1], "RU"),
         "full: blocked_countries upper-cased");
    T_OK(fw->rate_limit == 50 && fw->rate_window_ms == 60000, "full: rate_limit, rate_window");

    T_OK(c->proxy.connect_timeout_ms == 500 && c->proxy.handshake_timeout_ms == 3000 &&
             c->proxy.idle_timeout_ms == 3600000 && c->proxy.response_timeout_ms == 90000 &&
             c->proxy.shutdown_timeout_ms == 120000,
         "full: proxy timeouts");
    T_OK(c->metrics.enabled && streq(c->metrics.addr, "[::1]:9091") &&
             c->metrics.listen_addr.ss.ss_family == AF_INET6,
         "full: metrics on [::1]");
    T_OK(c->log_level == LOGL_DEBUG && c->log_format == LOG_FORMAT_JSON, "full: log level, format");
    T_OK(path_is(c->log_access_file, dir, "logs/access.log"), "full: log.access_file resolved");

    /* what the master keeps once the database is loaded */
    config_drop_seed(c);
    T_OK(c->listeners == NULL && c->n_listeners == 0 && fw->blocked_ips == NULL &&
             fw->n_blocked_ips == 0 && fw->blocked_cidrs == NULL && fw->n_blocked_cidrs == 0 &&
             fw->blocked_countries == NULL && fw->n_blocked_countries == 0,
         "full: config_drop_seed frees listeners, routes and rule lists");
    T_OK(path_is(c->firewall.geoip_db, dir, "GeoLite2-Country.mmdb"),
         "full: config_drop_seed keeps the GeoIP path");
    config_free(c); /* after a drop: no double free (ASan) */
}

static void test_defaults(void)
{
    struct msgs ms = {0};
    struct config *c = load_fixture("minimal.yaml", &ms);

    T_OK(c != NULL && ms.n == 0, "minimal: loads");
    if (c == NULL) {
        msgs_print(&ms);
        msgs_clear(&ms);
        return;
    }
    T_OK(streq(c->database_path, "/var/lib/mc-proxy/mc-proxy.db"),
         "defaults: an absolute database.path is kept");
    T_OK(c->database_backups_keep == 7, "defaults: backups_keep 7");
    T_OK(c->user == NULL, "defaults: no user");
    T_OK(c->workers == 0 && config_worker_count(c) >= 1, "defaults: workers auto");
    T_OK(!c->cpu_affinity, "defaults: cpu_affinity false");
    T_OK(c->n_listeners == 0 && c->listeners == NULL, "defaults: no listeners");
    T_OK(!c->grpc.enabled && c->grpc.addr == NULL && c->grpc.socket_mode == 0660,
         "defaults: no grpc, socket_mode 0660");
    T_OK(c->firewall.geoip_db == NULL && c->firewall.n_blocked_ips == 0 &&
             c->firewall.n_blocked_cidrs == 0 && c->firewall.n_blocked_countries == 0 &&
             c->firewall.rate_limit == 0 && c->firewall.rate_window_ms == 10000,
         "defaults: firewall empty, rate_limit 0, rate_window 10s");
    T_OK(c->proxy.connect_timeout_ms == 5000 && c->proxy.handshake_timeout_ms == 10000 &&
             c->proxy.idle_timeout_ms == 300000 && c->proxy.response_timeout_ms == 60000 &&
             c->proxy.shutdown_timeout_ms == 30000,
         "defaults: timeouts 5s 10s 300s 60s 30s");
    T_OK(c->proxy.worker_watchdog_ms == 5000, "defaults: worker_watchdog 5s");
    T_OK(!c->metrics.enabled && c->metrics.addr == NULL, "defaults: no metrics");
    T_OK(c->log_level == LOGL_INFO && c->log_format == LOG_FORMAT_TEXT, "defaults: log info text");
    T_OK(c->log_access_file == NULL, "defaults: no access file (access lines go to stderr)");
    config_free(c);
}

static void test_example(void)
{
    struct msgs ms = {0};
    char path[PATH_MAX];
    struct config *c;

    snprintf(path, sizeof(path), "%s/../../../conf/mc-proxy.yaml", fixtures);
    c = config_load(path, collect, &ms);
    T_OK(c != NULL && ms.n == 0, "conf/mc-proxy.yaml loads as is");
    msgs_print(&ms);
    if (c != NULL)
        T_OK(c->n_listeners == 1 && c->listeners[0].n_routes == 1 &&
                 streq(c->listeners[0].routes[0].hostname, "demo.localhost") &&
                 streq(c->listeners[0].routes[0].backend, "127.0.0.1:9443") &&
                 c->listeners[0].routes[0].mode == ROUTE_L4 && !c->grpc.enabled && c->user == NULL,
             "conf/mc-proxy.yaml: one L4 route, no grpc, no user");
    config_free(c);
    msgs_clear(&ms);
}

static void test_multi_error(void)
{
    static const char *const want[] = {
        "multi-error.yaml:3: listeners[0].bogus: unknown key",
        "multi-error.yaml:9: listeners[1].max_connections: expected a number from 0 (unlimited) to",
        "multi-error.yaml:14: listeners[1].routes[1].backend: invalid backend",
        "multi-error.yaml:16: proxy.idle_timeout: invalid duration",
        "multi-error.yaml:18: log.level: expected one of debug, info, warn, error",
        "multi-error.yaml:19: workers: must be auto or a number from 1 to 256",
    };
    struct msgs ms = {0};
    struct config *c = load_fixture("multi-error.yaml", &ms);

    T_OK(c == NULL, "multi-error: rejected");
    T_OK(ms.n == MC_ARRAY_LEN(want), "multi-error: %zu errors reported, got %u", MC_ARRAY_LEN(want),
         ms.n);
    for (size_t i = 0; i < MC_ARRAY_LEN(want); i++)
        T_OK(i < ms.n && strstr(ms.m[i], want[i]) != NULL, "multi-error: #%zu \"%s\"", i + 1,
             want[i]);
    T_OK(ms.n > 0 && strncmp(ms.m[0], fixtures, strlen(fixtures)) == 0,
         "multi-error: messages start with the file name");
    if (ms.n != MC_ARRAY_LEN(want))
        msgs_print(&ms);
    config_free(c);
    msgs_clear(&ms);
}

/* A file with exactly one problem, and the text its one message must contain. */
struct bad_case {
    const char *name;
    const char *yaml;
    const char *want;
};

#define DB "database: {path: db}\n"
#define L1 DB "listeners:\n  - addr: \":443\"\n    routes:\n"
/* L1 puts the first route's first key on line 5 */

static const struct bad_case bad_cases[] = {
    /* structure */
    {"unknown top-level key", DB "listener: []\n", ":2: listener: unknown key"},
    {"unknown nested key",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        "
        "tls: true\n",
     ":7: listeners[0].routes[0].tls: unknown key"},
    {"duplicate key", DB "log:\n  level: info\n  level: warn\n", ":4: log.level: duplicate key"},
    {"missing database", "user: x\n", ":1: database: missing (required)"},
    {"missing database.path", "database:\n  backups_keep: 3\n",
     ":1: database.path: missing (required)"},
    {"empty database.path is missing", "database:\n  path:\n",
     ":1: database.path: missing (required)"},
    {"missing route backend", L1 "      - hostname: a.example\n",
     ":5: listeners[0].routes[0].backend: missing (required)"},
    {"missing listener addr", DB "listeners:\n  - max_connections: 3\n",
     ":3: listeners[0].addr: missing (required)"},
    {"missing policy value",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n        tls_key: k\n        l7_policies:\n          - type: "
        "require_header\n",
     ":11: listeners[0].routes[0].l7_policies[0].value: missing (required)"},
    {"listeners not a sequence", DB "listeners:\n  addr: \":443\"\n",
     ":2: listeners: expected a sequence"},
    {"route not a mapping", L1 "      - a.example\n",
     ":5: listeners[0].routes[0]: expected a mapping"},
    {"scalar where a mapping goes", DB "proxy: 5s\n", ":2: proxy: expected a mapping"},
    {"mapping where a scalar goes", DB "user: {name: x}\n", ":2: user: expected a string"},
    {"bool", DB "cpu_affinity: maybe\n", ":2: cpu_affinity: expected true or false, got \"maybe\""},
    {"negative integer", DB "listeners:\n  - addr: \":443\"\n    max_connections: -1\n",
     ":4: listeners[0].max_connections: must be from 0 (unlimited) to 4294967295, got -1"},
    {"integer with junk", DB "firewall: {rate_limit: 5x}\n",
     ":2: firewall.rate_limit: expected an unsigned integer"},
    {"integer overflow", DB "firewall: {rate_limit: 4294967296}\n",
     ":2: firewall.rate_limit: expected an unsigned integer"},
    {"octal-looking integer", DB "firewall: {rate_limit: 010}\n",
     ":2: firewall.rate_limit: expected an unsigned integer"},
    {"bad mode", L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l5\n",
     ":7: listeners[0].routes[0].mode: expected one of l4, l7, got \"l5\""},
    {"bad policy type",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n        tls_key: k\n        l7_policies:\n          - {type: deny, "
        "value: x}\n",
     ":11: listeners[0].routes[0].l7_policies[0].type: expected one of block_user_agent, "
     "require_header"},
    {"bad log.format", DB "log: {format: xml}\n", ":2: log.format: expected one of text, json"},
    {"empty log.access_file", DB "log: {access_file: \"\"}\n",
     ":2: log.access_file: must not be empty"},
    {"log.access_file not a string", DB "log:\n  access_file: [a]\n", ":3: log.access_file:"},
    {"alias", DB "listeners:\n  - &l {addr: \":443\"}\n  - *l\n",
     "listeners[1]: YAML aliases are not supported"},
    {"NUL byte", DB "user: \"a\\0b\"\n", ":2: user: contains a NUL byte"},
    {"top level not a mapping", "- a\n- b\n", ":1: the top level must be a mapping"},
    {"syntax error", "database: {path: db\nuser: x\n", "YAML syntax error"},
    {"two documents", DB "---\nuser: x\n", ":2: only one YAML document is allowed"},
    {"duplicate section", DB "database: {path: db}\n", ":2: database: duplicate key"},
    /* meaning */
    {"database.path empty", "database: {path: \"\"}\n", ":1: database.path: must not be empty"},
    {"backups_keep 0", "database: {path: db, backups_keep: 0}\n",
     ":1: database.backups_keep: must be from 1 to 1000, got 0"},
    {"backups_keep 1001", "database: {path: db, backups_keep: 1001}\n",
     ":1: database.backups_keep: must be from 1 to 1000"},
    {"user empty", DB "user: \"\"\n", ":2: user: must not be empty"},
    {"workers 257", DB "workers: 257\n", ":2: workers: must be auto or a number from 1 to 256"},
    {"workers word", DB "workers: all\n", ":2: workers: must be auto"},
    {"listener addr", DB "listeners:\n  - addr: \"443\"\n",
     ":3: listeners[0].addr: invalid listen address \"443\": missing port"},
    {"listener addr DNS", DB "listeners:\n  - addr: localhost:443\n",
     ":3: listeners[0].addr: invalid listen address"},
    {"duplicate listener",
     DB "listeners:\n  - addr: \":443\"\n  - addr: 0.0.0.0:80\n  - addr: "
        "\":443\"\n",
     ":5: listeners[2].addr: \":443\" is the same address as listeners[0]"},
    {"hostname invalid", L1 "      - hostname: a..example\n        backend: 127.0.0.1:1\n",
     ":5: listeners[0].routes[0].hostname: invalid hostname"},
    {"hostname IP literal", L1 "      - hostname: 192.0.2.1\n        backend: 127.0.0.1:1\n",
     ":5: listeners[0].routes[0].hostname: invalid hostname"},
    {"hostname bare wildcard", L1 "      - hostname: \"*\"\n        backend: 127.0.0.1:1\n",
     ":5: listeners[0].routes[0].hostname: invalid hostname"},
    {"duplicate hostname after normalisation",
     L1 "      - hostname: A.Example.com\n        backend: 127.0.0.1:1\n      - hostname: "
        "a.example.com.\n        backend: 127.0.0.1:2\n",
     ":7: listeners[0].routes[1].hostname: \"a.example.com\" is already routed by "
     "listeners[0].routes[0]"},
    {"backend DNS name", L1 "      - hostname: a.example\n        backend: localhost:80\n",
     ":6: listeners[0].routes[0].backend: invalid backend \"localhost:80\""},
    {"backend port 0", L1 "      - hostname: a.example\n        backend: 127.0.0.1:0\n",
     ":6: listeners[0].routes[0].backend: invalid backend"},
    {"backend port 65536", L1 "      - hostname: a.example\n        backend: 127.0.0.1:65536\n",
     ":6: listeners[0].routes[0].backend: invalid backend"},
    {"backend IPv6 without brackets", L1 "      - hostname: a.example\n        backend: ::1:80\n",
     ":6: listeners[0].routes[0].backend: invalid backend"},
    {"backend without port", L1 "      - hostname: a.example\n        backend: \"[::1]\"\n",
     ":6: listeners[0].routes[0].backend: invalid backend \"[::1]\": missing port"},
    {"l7 without tls_cert",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_key: k\n",
     ":5: listeners[0].routes[0].tls_cert: required when mode is l7"},
    {"l7 without tls_key",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n",
     ":5: listeners[0].routes[0].tls_key: required when mode is l7"},
    {"tls_cert on l4",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        "
        "tls_cert: c\n",
     ":7: listeners[0].routes[0].tls_cert: only allowed when mode is l7"},
    {"tls_key on l4",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        "
        "mode: l4\n        tls_key: k\n",
     ":8: listeners[0].routes[0].tls_key: only allowed when mode is l7"},
    {"backend_tls on l4",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        "
        "backend_tls: true\n",
     ":7: listeners[0].routes[0].backend_tls: only allowed when mode is l7"},
    {"l7_policies on l4",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        l7_policies:\n        "
        "  - {type: require_header, value: X-A}\n",
     ":7: listeners[0].routes[0].l7_policies: only allowed when mode is l7"},
    {"policy value empty",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n        tls_key: k\n        l7_policies:\n          - {type: "
        "block_user_agent, value: \"\"}\n",
     ":11: listeners[0].routes[0].l7_policies[0].value: invalid block_user_agent value \"\": "
     "printable ASCII text is required"},
    {"policy value not printable",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n        tls_key: k\n        l7_policies:\n          - {type: "
        "block_user_agent, value: \"a\\tb\"}\n",
     ":11: listeners[0].routes[0].l7_policies[0].value: invalid block_user_agent value "
     "\"a\\x09b\": printable ASCII text is required"},
    {"require_header not a header name",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: c\n        tls_key: k\n        l7_policies:\n          - {type: "
        "require_header, value: X Key}\n",
     ":11: listeners[0].routes[0].l7_policies[0].value: invalid require_header value "
     "\"X Key\": a header name is required"},
    {"tls_cert empty",
     L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        mode: l7\n        "
        "tls_cert: \"\"\n        tls_key: k\n",
     ":8: listeners[0].routes[0].tls_cert: required when mode is l7"},
    {"proxy_protocol without trusted_proxies",
     DB "listeners:\n  - addr: \":443\"\n    proxy_protocol: true\n",
     ":3: listeners[0].trusted_proxies: required and non-empty when proxy_protocol is true"},
    {"proxy_protocol with empty trusted_proxies",
     DB "listeners:\n  - addr: \":443\"\n    proxy_protocol: true\n    trusted_proxies: []\n",
     ":5: listeners[0].trusted_proxies: required and non-empty"},
    {"trusted_proxies host bits",
     DB "listeners:\n  - addr: \":443\"\n    trusted_proxies: "
        "[10.0.0.0/8, 10.0.0.1/8]\n",
     ":4: listeners[0].trusted_proxies[1]: invalid CIDR \"10.0.0.1/8\": host bits set"},
    {"trusted_proxies not an address",
     DB "listeners:\n  - addr: \":443\"\n    trusted_proxies:\n      - proxy.example\n",
     ":5: listeners[0].trusted_proxies[0]: invalid CIDR"},
    {"blocked_ips CIDR", DB "firewall:\n  blocked_ips: [10.0.0.0/8]\n",
     ":3: firewall.blocked_ips[0]: \"10.0.0.0/8\" is not an IP address"},
    {"blocked_ips name", DB "firewall:\n  blocked_ips:\n    - 192.0.2.1\n    - host.example\n",
     ":5: firewall.blocked_ips[1]: \"host.example\" is not an IP address"},
    {"blocked_cidrs host bits", DB "firewall:\n  blocked_cidrs: [\"2001:db8::1/32\"]\n",
     ":3: firewall.blocked_cidrs[0]: invalid CIDR \"2001:db8::1/32\": host bits set"},
    {"blocked_cidrs bare IP", DB "firewall:\n  blocked_cidrs: [192.0.2.1]\n",
     ":3: firewall.blocked_cidrs[0]: invalid CIDR \"192.0.2.1\": missing prefix length"},
    {"blocked_countries three letters", DB "firewall:\n  geoip_db: g\n  blocked_countries: [USA]\n",
     ":4: firewall.blocked_countries[0]: \"USA\" is not a two-letter country code"},
    {"blocked_countries digit", DB "firewall:\n  geoip_db: g\n  blocked_countries: [u1]\n",
     ":4: firewall.blocked_countries[0]: \"u1\" is not a two-letter country code"},
    {"blocked_countries without geoip_db", DB "firewall:\n  blocked_countries: [KP]\n",
     ":2: firewall.geoip_db: required when blocked_countries is non-empty"},
    {"rate_window 0", DB "firewall:\n  rate_window: 0s\n",
     ":3: firewall.rate_window: must be greater than zero"},
    {"grpc addr DNS",
     DB "grpc: {addr: \"localhost:9090\", tls_cert: a, tls_key: b, client_ca: c}\n",
     ":2: grpc.addr: invalid address \"localhost:9090\""},
    {"grpc TCP without client_ca",
     DB "grpc:\n  addr: 127.0.0.1:9090\n  tls_cert: a\n  tls_key: b\n",
     ":2: grpc.client_ca: required when grpc.addr is TCP"},
    {"grpc TCP without tls_cert",
     DB "grpc:\n  addr: 127.0.0.1:9090\n  tls_key: b\n  client_ca: c\n",
     ":2: grpc.tls_cert: required when grpc.addr is TCP"},
    {"grpc TCP without tls_key",
     DB "grpc:\n  addr: 127.0.0.1:9090\n  tls_cert: a\n  client_ca: c\n",
     ":2: grpc.tls_key: required when grpc.addr is TCP"},
    {"grpc unix empty", DB "grpc:\n  addr: \"unix:\"\n",
     ":3: grpc.addr: the unix: socket path is empty"},
    {"grpc unix too long",
     DB "grpc:\n  addr: "
        "unix:/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
     ":3: grpc.addr: socket path"},
    {"grpc missing addr", DB "grpc:\n  socket_mode: \"0600\"\n",
     ":2: grpc.addr: missing (required)"},
    {"grpc socket_mode not octal", DB "grpc:\n  addr: unix:/run/a.sock\n  socket_mode: \"0999\"\n",
     ":4: grpc.socket_mode: invalid mode \"0999\""},
    {"grpc socket_mode setuid", DB "grpc:\n  addr: unix:/run/a.sock\n  socket_mode: \"4755\"\n",
     ":4: grpc.socket_mode: invalid mode"},
    {"grpc socket_mode open to all",
     DB "grpc:\n  addr: unix:/run/a.sock\n  socket_mode: \"0666\"\n",
     ":4: grpc.socket_mode: \"0666\" lets every local account connect, the workers' included"},
    {"grpc socket_group empty", DB "grpc:\n  addr: unix:/run/a.sock\n  socket_group: \"\"\n",
     ":4: grpc.socket_group: must not be empty"},
    {"grpc user empty", DB "grpc:\n  addr: unix:/run/a.sock\n  user: \"\"\n",
     ":4: grpc.user: must not be empty"},
    {"metrics not loopback", DB "metrics:\n  addr: 10.0.0.1:9091\n",
     ":3: metrics.addr: \"10.0.0.1:9091\" is not a loopback address"},
    {"metrics IPv6 not loopback", DB "metrics:\n  addr: \"[2001:db8::1]:9091\"\n",
     ":3: metrics.addr: \"[2001:db8::1]:9091\" is not a loopback address"},
    {"metrics without port", DB "metrics:\n  addr: 127.0.0.1\n",
     ":3: metrics.addr: invalid address \"127.0.0.1\": missing port"},
    {"duration without unit", DB "proxy:\n  connect_timeout: 5\n",
     ":3: proxy.connect_timeout: invalid duration \"5\""},
    {"duration negative", DB "proxy:\n  handshake_timeout: -5s\n",
     ":3: proxy.handshake_timeout: invalid duration \"-5s\""},
    {"duration zero", DB "proxy:\n  idle_timeout: 0ms\n",
     ":3: proxy.idle_timeout: must be greater than zero"},
    {"duration huge", DB "proxy:\n  response_timeout: 1000h\n",
     ":3: proxy.response_timeout: must be at most 596h"},
    {"duration fraction", DB "proxy:\n  shutdown_timeout: 1.5s\n",
     ":3: proxy.shutdown_timeout: invalid duration \"1.5s\""},
    {"watchdog too short", DB "proxy:\n  worker_watchdog: 500ms\n",
     ":3: proxy.worker_watchdog: must be 0 (off) or at least 1000ms"},
    {"watchdog not a duration", DB "proxy:\n  worker_watchdog: soon\n",
     ":3: proxy.worker_watchdog: invalid duration \"soon\""},
};

static void test_bad_cases(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *b = &bad_cases[i];
        struct msgs ms = {0};
        struct config *c = load_text(b->yaml, &ms);
        bool ok = c == NULL && ms.n == 1 && strstr(ms.m[0], b->want) != NULL &&
                  strncmp(ms.m[0], tmpfile_path, strlen(tmpfile_path)) == 0;

        T_OK(ok, "rejects %s: %s", b->name, b->want);
        if (!ok)
            msgs_print(&ms);
        config_free(c);
        msgs_clear(&ms);
    }
}

/* Things that look odd but are accepted. */
static void test_accepted(void)
{
    struct msgs ms = {0};
    struct config *c;

    c = load_text(DB "grpc:\nfirewall: ~\nmetrics: null\nuser:\n", &ms);
    T_OK(c != NULL && !c->grpc.enabled && !c->metrics.enabled && c->user == NULL,
         "a null section or value counts as absent");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);

    c = load_text("", &ms);
    T_OK(c == NULL && ms.n == 1 && strstr(ms.m[0], "database: missing") != NULL,
         "an empty file only lacks database");
    config_free(c);
    msgs_clear(&ms);

    c = load_text(DB "cpu_affinity: TRUE\nworkers: \"256\"\ngrpc:\n  addr: unix:/run/mc.sock\n  "
                     "socket_mode: 0660\n",
                  &ms);
    T_OK(c != NULL && c->cpu_affinity && c->workers == 256 && c->grpc.socket_mode == 0660 &&
             streq(c->grpc.unix_path, "/run/mc.sock"),
         "TRUE, a quoted worker count, an unquoted socket_mode, an absolute unix socket");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);

    c = load_text(DB "grpc:\n  addr: unix:/run/mc.sock\n  tls_cert: a\n", &ms);
    T_OK(c != NULL, "a unix admin socket does not need mTLS");
    config_free(c);
    msgs_clear(&ms);

    c = load_text(DB "proxy:\n  worker_watchdog: 0\n", &ms);
    T_OK(c != NULL && c->proxy.worker_watchdog_ms == 0, "worker_watchdog: 0 turns it off");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);

    c = load_text(DB "proxy:\n  worker_watchdog: 2s\n", &ms);
    T_OK(c != NULL && c->proxy.worker_watchdog_ms == 2000, "worker_watchdog: 2s");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);

    c = load_text(DB "metrics: {addr: 127.1.2.3:9091}\n", &ms);
    T_OK(c != NULL && c->metrics.enabled, "metrics on any 127.0.0.0/8 address");
    config_free(c);
    msgs_clear(&ms);

    c = load_text(L1 "      - hostname: a.example\n        backend: 127.0.0.1:1\n        "
                     "backend_tls: false\n        l7_policies: []\n",
                  &ms);
    T_OK(c != NULL, "backend_tls: false and empty l7_policies are fine on l4");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);

    c = load_text(DB "listeners:\n  - addr: \":443\"\n    routes:\n      - {hostname: a.example, "
                     "backend: \"127.0.0.1:1\"}\n  - addr: \":8443\"\n    routes:\n      - "
                     "{hostname: a.example, backend: \"127.0.0.1:2\"}\n",
                  &ms);
    T_OK(c != NULL, "the same hostname on two listeners");
    config_free(c);
    msgs_print(&ms);
    msgs_clear(&ms);
}

static void test_too_many_listeners(void)
{
    struct msgs ms = {0};
    size_t len = 0, cap = 32 + 30 * (MC_MAX_LISTENERS + 1);
    char *text = malloc(cap);
    struct config *c;

    len += (size_t)snprintf(text + len, cap - len, DB "listeners:\n");
    for (unsigned i = 0; i <= MC_MAX_LISTENERS; i++)
        len += (size_t)snprintf(text + len, cap - len, "  - addr: \":%u\"\n", 1000 + i);
    c = load_text(text, &ms);
    T_OK(c == NULL && ms.n == 1 && strstr(ms.m[0], ":2: listeners: at most 256 entries") != NULL,
         "rejects 257 listeners");
    config_free(c);
    msgs_clear(&ms);
    free(text);
}

static void test_relative_paths(void)
{
    struct msgs ms = {0};
    char dir[PATH_MAX], abs[PATH_MAX];
    struct config *c = load_fixture("unix-grpc.yaml", &ms);

    fixture_dir(dir, sizeof(dir));
    T_OK(c != NULL && path_is(c->database_path, dir, "db/mc.db"),
         "relative: ./db/mc.db resolved against the config directory");
    T_OK(c != NULL && path_is(c->grpc.unix_path, dir, "run/admin.sock") &&
             streq(c->grpc.addr, "unix:run/admin.sock"),
         "relative: unix socket path resolved, addr kept as written");
    config_free(c);
    msgs_clear(&ms);

    /* The same file by its absolute path gives the same answer. */
    join(abs, sizeof(abs), dir, "unix-grpc.yaml");
    c = config_load(abs, collect, &ms);
    T_OK(c != NULL && path_is(c->database_path, dir, "db/mc.db") && streq(c->path, abs),
         "relative: loading by absolute path resolves the same");
    config_free(c);
    msgs_clear(&ms);

    c = config_load(tmpdir, collect, &ms);
    T_OK(c == NULL && ms.n == 1 && strstr(ms.m[0], ": cannot read: Is a directory") != NULL,
         "a directory is one error");
    msgs_clear(&ms);

    c = config_load("/nonexistent/mc-proxy.yaml", collect, &ms);
    T_OK(c == NULL && ms.n == 1 &&
             strcmp(ms.m[0],
                    "/nonexistent/mc-proxy.yaml: cannot open: No such file or directory") == 0,
         "a missing file is one error naming the file");
    msgs_clear(&ms);
}

/* config_load (not the _no_files table above) loads an L7 route's pair, as AddRoute does. */
static void test_l7_files(void)
{
    static const char text[] = "database:\n  path: x.db\nlisteners:\n  - addr: \":443\"\n"
                               "    routes:\n      - hostname: a.example\n"
                               "        backend: 127.0.0.1:1\n        mode: l7\n"
                               "        tls_cert: missing.pem\n        tls_key: missing.key\n";
    struct msgs ms = {0};
    struct config *c = load_text(text, &ms);

    T_OK(c != NULL && ms.n == 0, "l7 files: not read by config_load_no_files");
    config_free(c);
    msgs_clear(&ms);
    c = config_load(tmpfile_path, collect, &ms);
    T_OK(c == NULL && ms.n == 1 &&
             strstr(ms.m[0], ":9: listeners[0].routes[0].tls_cert: cannot load a PEM "
                             "certificate chain from ") != NULL &&
             strstr(ms.m[0], "/missing.pem (") != NULL,
         "l7 files: config_load refuses a certificate that does not load");
    config_free(c);
    msgs_clear(&ms);
}

static void test_env(void)
{
    struct msgs ms = {0};
    struct config *c;

    setenv("MCPROXY_DATABASE_PATH", "other.db", 1);
    setenv("MCPROXY_DATABASE_BACKUPS_KEEP", "3", 1);
    setenv("MCPROXY_USER", "nobody", 1);
    setenv("MCPROXY_WORKERS", "2", 1);
    setenv("MCPROXY_CPU_AFFINITY", "true", 1);
    setenv("MCPROXY_PROXY_CONNECT_TIMEOUT", "2s", 1);
    setenv("MCPROXY_LOG_LEVEL", "warn", 1);
    setenv("MCPROXY_LOG_FORMAT", "json", 1);
    setenv("MCPROXY_LOG_ACCESS_FILE", "/var/log/mc-proxy/access.log", 1);
    setenv("MCPROXY_FIREWALL_RATE_LIMIT", "9", 1);
    setenv("MCPROXY_METRICS_ADDR", "127.0.0.1:9999", 1);
    setenv("MCPROXY_GRPC_ADDR", "unix:/run/x.sock", 1);
    setenv("MCPROXY_GRPC_SOCKET_MODE", "0600", 1);
    c = load_text("database:\n  path: db\nworkers: auto\nlog:\n  level: info\n", &ms);
    T_OK(c != NULL && ms.n == 0, "env: valid overrides load");
    msgs_print(&ms);
    if (c != NULL) {
        T_OK(path_is(c->database_path, tmpdir, "other.db") && c->database_backups_keep == 3,
             "env: MCPROXY_DATABASE_PATH (resolved) and _BACKUPS_KEEP");
        T_OK(streq(c->user, "nobody") && c->workers == 2 && c->cpu_affinity,
             "env: MCPROXY_USER, MCPROXY_WORKERS, MCPROXY_CPU_AFFINITY");
        T_OK(c->proxy.connect_timeout_ms == 2000 && c->proxy.idle_timeout_ms == 300000,
             "env: MCPROXY_PROXY_CONNECT_TIMEOUT creates proxy, others keep defaults");
        T_OK(c->log_level == LOGL_WARN && c->log_format == LOG_FORMAT_JSON,
             "env: MCPROXY_LOG_LEVEL replaces the file's, MCPROXY_LOG_FORMAT adds a key");
        T_OK(streq(c->log_access_file, "/var/log/mc-proxy/access.log"),
             "env: MCPROXY_LOG_ACCESS_FILE, an absolute path kept");
        T_OK(c->firewall.rate_limit == 9, "env: MCPROXY_FIREWALL_RATE_LIMIT");
        T_OK(c->metrics.enabled && streq(c->metrics.addr, "127.0.0.1:9999"),
             "env: MCPROXY_METRICS_ADDR enables metrics");
        T_OK(c->grpc.enabled && streq(c->grpc.unix_path, "/run/x.sock") &&
                 c->grpc.socket_mode == 0600,
             "env: MCPROXY_GRPC_ADDR enables grpc");
    }
    config_free(c);
    msgs_clear(&ms);
    unsetenv("MCPROXY_DATABASE_PATH");
    unsetenv("MCPROXY_DATABASE_BACKUPS_KEEP");
    unsetenv("MCPROXY_USER");
    unsetenv("MCPROXY_WORKERS");
    unsetenv("MCPROXY_CPU_AFFINITY");
    unsetenv("MCPROXY_PROXY_CONNECT_TIMEOUT");
    unsetenv("MCPROXY_LOG_FORMAT");
    unsetenv("MCPROXY_LOG_ACCESS_FILE");
    unsetenv("MCPROXY_FIREWALL_RATE_LIMIT");
    unsetenv("MCPROXY_METRICS_ADDR");
    unsetenv("MCPROXY_GRPC_SOCKET_MODE");
    unsetenv("MCPROXY_GRPC_ADDR");

    setenv("MCPROXY_LOG_LEVEL", "", 1);
    c = load_text(DB "log: {level: error}\n", &ms);
    T_OK(c != NULL && c->log_level == LOGL_ERROR, "env: an empty variable is ignored");
    config_free(c);
    msgs_clear(&ms);
    unsetenv("MCPROXY_LOG_LEVEL");

    static const struct {
        const char *var, *value, *want;
    } bad[] = {
        {"MCPROXY_LOG_LEVEL", "verbose", ": MCPROXY_LOG_LEVEL: log.level: expected one of"},
        {"MCPROXY_FIREWALL_RATE_LIMIT", "lots",
         ": MCPROXY_FIREWALL_RATE_LIMIT: firewall.rate_limit: expected an unsigned integer"},
        {"MCPROXY_PROXY_IDLE_TIMEOUT", "5",
         ": MCPROXY_PROXY_IDLE_TIMEOUT: proxy.idle_timeout: "
         "invalid duration"},
        {"MCPROXY_CPU_AFFINITY", "yes please",
         ": MCPROXY_CPU_AFFINITY: cpu_affinity: expected "
         "true or false"},
        {"MCPROXY_WORKERS", "0", ": MCPROXY_WORKERS: workers: must be auto"},
        {"MCPROXY_DATABASE_BACKUPS_KEEP", "0",
         ": MCPROXY_DATABASE_BACKUPS_KEEP: database.backups_keep: must be from 1 to 1000"},
        {"MCPROXY_METRICS_ADDR", "0.0.0.0:9091",
         ": MCPROXY_METRICS_ADDR: metrics.addr: \"0.0.0.0:9091\" is not a loopback address"},
        {"MCPROXY_GRPC_ADDR", "127.0.0.1:9090",
         ": MCPROXY_GRPC_ADDR: grpc.tls_cert: required when grpc.addr is TCP"},
        {"MCPROXY_GRPC_TLS_CERT", "a.pem", ": MCPROXY_GRPC_TLS_CERT: grpc.addr: missing"},
    };
    for (size_t i = 0; i < MC_ARRAY_LEN(bad); i++) {
        setenv(bad[i].var, bad[i].value, 1);
        c = load_text(DB "log: {level: info}\n", &ms);
        T_OK(c == NULL && ms.n >= 1 && strstr(ms.m[0], bad[i].want) != NULL &&
                 strncmp(ms.m[0], tmpfile_path, strlen(tmpfile_path)) == 0,
             "env: %s=%s rejected naming the variable", bad[i].var, bad[i].value);
        if (c != NULL || ms.n == 0 || strstr(ms.m[0], bad[i].want) == NULL)
            msgs_print(&ms);
        config_free(c);
        msgs_clear(&ms);
        unsetenv(bad[i].var);
    }

    /* Line errors come in file order, the variables' after them. */
    setenv("MCPROXY_LOG_LEVEL", "loud", 1);
    c = load_text(DB "user: \"\"\n", &ms);
    T_OK(c == NULL && ms.n == 2 && strstr(ms.m[0], ":2: user:") != NULL &&
             strstr(ms.m[1], "MCPROXY_LOG_LEVEL") != NULL,
         "env: errors from variables come after the file's");
    config_free(c);
    msgs_clear(&ms);
    unsetenv("MCPROXY_LOG_LEVEL");
}

static void test_durations(void)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"500ms", 0, 500},
        {"5s", 0, 5000},
        {"10m", 0, 600000},
        {"1h", 0, 3600000},
        {"0s", 0, 0},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -1, 0},
        {"18446744073709552s", -1, 0},
        {"5", -1, 0},
        {"", -1, 0},
        {"s", -1, 0},
        {"-5s", -1, 0},
        {"+5s", -1, 0},
        {" 5s", -1, 0},
        {"5s ", -1, 0},
        {"5 s", -1, 0},
        {"5sec", -1, 0},
        {"5S", -1, 0},
        {"1.5s", -1, 0},
        {"5d", -1, 0},
        {"5m5s", -1, 0},
        {"0x10s", -1, 0},
    };

    for (size_t i = 0; i < MC_ARRAY_LEN(cases); i++) {
        uint64_t ms = 12345;
        int rc = config_parse_duration(cases[i].in, &ms);

        if (cases[i].rc == 0)
            T_OK(rc == 0 && ms == cases[i].ms, "duration: \"%s\" = %llu ms", cases[i].in,
                 (unsigned long long)cases[i].ms);
        else
            T_OK(rc == -1 && ms == 12345, "duration: \"%s\" rejected", cases[i].in);
    }
}

static void cleanup(void)
{
    unlink(tmpfile_path);
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    fixtures = argc > 1 ? argv[1] : "t/unit/config";
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(tmpfile_path, sizeof(tmpfile_path), "%s/mc-proxy.yaml", tmpdir);
    atexit(cleanup);

    test_full();
    test_defaults();
    test_example();
    test_multi_error();
    test_bad_cases();
    test_accepted();
    test_too_many_listeners();
    test_relative_paths();
    test_l7_files();
    test_env();
    test_durations();
    return tap_done();
}
