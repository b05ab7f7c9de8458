/*
 * Unit tests for master/store.c and master/state.c. Every database lives
 * in a fresh directory under /tmp; a second, plain SQLite connection
 * ("raw") looks at the file from outside the store to check what was
 * really committed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "mc.h"
#include "state.h"
#include "store.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_store.XXXXXX";

/* ---- the test config, filled by hand (no YAML loader needed) ---- */

static struct policy_conf apps_policies[] = {
    {POLICY_BLOCK_USER_AGENT, "zgrab"},
    {POLICY_REQUIRE_HEADER, "X-Api-Key"},
    {POLICY_BLOCK_USER_AGENT, "curl"},
};

static struct policy_conf internal_policies[] = {
    {POLICY_REQUIRE_HEADER, "X-Token"},
};

/* The last entry is a spare the diff test switches on as an "extra route". */
static struct route_conf web_routes[] = {
    {.hostname = "git.example.com", .backend = "127.0.0.1:3000", .mode = ROUTE_L4},
    {.hostname = "*.apps.example.com",
     .backend = "[::1]:8443",
     .mode = ROUTE_L7,
     .tls_cert = "/etc/mc-proxy/apps.pem",
     .tls_key = "/etc/mc-proxy/apps.key",
     .backend_tls = true,
     .send_proxy_protocol = true,
     .policies = apps_policies,
     .n_policies = MC_ARRAY_LEN(apps_policies)},
    {.hostname = "api.example.com",
     .backend = "10.0.0.2:80",
     .mode = ROUTE_L4,
     .send_proxy_protocol = true},
    {.hostname = "new.example.com", .backend = "127.0.0.1:4000", .mode = ROUTE_L4},
};
#define N_WEB_ROUTES 3

static struct route_conf internal_routes[] = {
    {.hostname = "internal.example.com",
     .backend = "127.0.0.1:9000",
     .mode = ROUTE_L7,
     .tls_cert = "/etc/mc-proxy/internal.pem",
     .tls_key = "/etc/mc-proxy/internal.key",
     .policies = internal_policies,
     .n_policies = MC_ARRAY_LEN(internal_policies)},
};

static const char *const trusted_text[] = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"};
static struct mc_cidr trusted[MC_ARRAY_LEN(trusted_text)];

static struct listener_conf listeners[] = {
    {.addr = ":443", .routes = web_routes, .n_routes = N_WEB_ROUTES},
    {.addr = "127.0.0.1:8443",
     .proxy_protocol = true,
     .trusted_proxies = trusted,
     .n_trusted_proxies = MC_ARRAY_LEN(trusted),
     .max_connections = 100,
     .routes = internal_routes,
     .n_routes = MC_ARRAY_LEN(internal_routes)},
};

static char *blocked_ips[] = {"192.0.2.7", "2001:db8::7"};
static char *blocked_cidrs[] = {"198.51.100.0/24"};
static char *blocked_countries[] = {"CN", "RU"};

static struct config cfg = {
    .listeners = listeners,
    .n_listeners = MC_ARRAY_LEN(listeners),
    .firewall =
        {
            .blocked_ips = blocked_ips,
            .n_blocked_ips = MC_ARRAY_LEN(blocked_ips),
            .blocked_cidrs = blocked_cidrs,
            .n_blocked_cidrs = MC_ARRAY_LEN(blocked_cidrs),
            .blocked_countries = blocked_countries,
            .n_blocked_countries = MC_ARRAY_LEN(blocked_countries),
        },
};

/* What the rules load back as: by type name, then value. */
static const struct {
    enum fw_type type;
    const char *value;
} want_rules[] = {
    {FW_CIDR, "198.51.100.0/24"}, {FW_COUNTRY, "CN"},     {FW_COUNTRY, "RU"},
    {FW_IP, "192.0.2.7"},         {FW_IP, "2001:db8::7"},
};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "test_store: %s: %s\n", what, detail);
    exit(1);
}

/* Parses the addresses config_load would have parsed. */
static void cfg_init(void)
{
    const char *err = NULL;
    unsigned i, j;

    for (i = 0; i < MC_ARRAY_LEN(trusted_text); i++) {
        if (addr_parse_cidr(trusted_text[i], true, &trusted[i], &err) < 0)
            die(trusted_text[i], err);
    }
    for (i = 0; i < MC_ARRAY_LEN(listeners); i++) {
        struct listener_conf *l = &listeners[i];

        if (addr_parse_bind(l->addr, &l->bind, &err) < 0)
            die(l->addr, err);
        /* the spare route too */
        for (j = 0; j < (l->routes == web_routes ? MC_ARRAY_LEN(web_routes) : l->n_routes); j++) {
            if (addr_parse_hostport(l->routes[j].backend, &l->routes[j].backend_addr, &err) < 0)
                die(l->routes[j].backend, err);
        }
    }
}

/* ---- helpers ---- */

static void path_in(char *out, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);

    if (n < 0 || n >= PATH_MAX)
        die("path too long", name);
}

/* A fresh directory (under tmpdir) holding nothing yet; the db path in it. */
static void fresh_db(char *db, const char *name)
{
    char dir[PATH_MAX];

    path_in(dir, name);
    if (mkdir(dir, 0700) < 0)
        die(dir, strerror(errno));
    if (snprintf(db, PATH_MAX, "%s/mc-proxy.db", dir) >= PATH_MAX)
        die("path too long", dir);
}

static struct store *open_ok(const char *db)
{
    const char *err = NULL;
    struct store *st = store_open(db, &err);

    if (st == NULL)
        die(db, err);
    return st;
}

static struct store *open_seeded(const char *db)
{
    const char *err = NULL;
    struct store *st = open_ok(db);

    if (store_seed(st, &cfg, &err) != STORE_OK)
        die("seed", err);
    return st;
}

static bool str_same(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die(path, db != NULL ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* The first column of the first row of sql on a fresh raw connection; -1 on error. */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *q = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* Whether the first column of the first row of sql is the text want. */
static bool raw_text_is(const char *path, const char *sql, const char *want)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *q = NULL;
    bool same = false;

    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        same = str_same((const char *)sqlite3_column_text(q, 0), want);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return same;
}

static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

    sqlite3_close(db);
    return rc;
}

static const char *const dump_all[] = {
    "SELECT * FROM listeners ORDER BY id",
    "SELECT * FROM trusted_proxies ORDER BY listener_id, position",
    "SELECT * FROM routes ORDER BY id",
    "SELECT * FROM l7_policies ORDER BY id",
    "SELECT * FROM firewall_rules ORDER BY id",
    "SELECT * FROM seeded",
    "SELECT * FROM schema_migrations ORDER BY version",
};

/* Every row of the tables (dump_all without the rules when !rules), as text. */
static void raw_dump(const char *path, bool rules, char *buf, size_t size)
{
    sqlite3 *db = raw_open(path);
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < MC_ARRAY_LEN(dump_all); i++) {
        sqlite3_stmt *q = NULL;
        int rc;

        if (!rules && strstr(dump_all[i], "firewall_rules") != NULL)
            continue;
        if (sqlite3_prepare_v2(db, dump_all[i], -1, &q, NULL) != SQLITE_OK)
            die(dump_all[i], sqlite3_errmsg(db));
        len += (size_t)snprintf(buf + len, size - len, "%s\n", dump_all[i]);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW && len < size) {
            for (int c = 0; c < sqlite3_column_count(q) && len < size; c++) {
                const char *t = (const char *)sqlite3_column_text(q, c);

                len += (size_t)snprintf(buf + len, size - len, "%s|", t != NULL ? t : "NULL");
            }
            if (len < size)
                len += (size_t)snprintf(buf + len, size - len, "\n");
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            die(dump_all[i], sqlite3_errmsg(db));
        sqlite3_finalize(q);
        if (len >= size)
            die("dump", "buffer too small");
    }
    sqlite3_close(db);
}

static bool addr_same(const struct mc_addr *a, const struct mc_addr *b)
{
    char x[ADDR_STRLEN], y[ADDR_STRLEN];

    return a->len == b->len && a->ss.ss_family == b->ss.ss_family &&
           strcmp(addr_format(a, x, sizeof(x)), addr_format(b, y, sizeof(y))) == 0;
}

static bool cidr_same(const struct mc_cidr *a, const struct mc_cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Every field, policies in order. */
static bool route_same(const struct route_conf *a, const struct route_conf *b)
{
    if (!str_same(a->hostname, b->hostname) || !str_same(a->backend, b->backend) ||
        !addr_same(&a->backend_addr, &b->backend_addr) || a->mode != b->mode ||
        !str_same(a->tls_cert, b->tls_cert) || !str_same(a->tls_key, b->tls_key) ||
        a->backend_tls != b->backend_tls || a->send_proxy_protocol != b->send_proxy_protocol ||
        a->n_policies != b->n_policies)
        return false;
    for (unsigned i = 0; i < a->n_policies; i++) {
        if (a->policies[i].type != b->policies[i].type ||
            !str_same(a->policies[i].value, b->policies[i].value))
            return false;
    }
    return true;
}

static const struct route_conf *route_named(const struct listener_conf *l, const char *hostname)
{
    for (unsigned i = 0; i < l->n_routes; i++) {
        if (strcmp(l->routes[i].hostname, hostname) == 0)
            return &l->routes[i];
    }
    return NULL;
}

/* Listener settings (not its routes). */
static bool listener_same(const struct listener_conf *a, const struct listener_conf *b)
{
    if (!str_same(a->addr, b->addr) || !addr_same(&a->bind.addr, &b->bind.addr) ||
        a->bind.dual_stack != b->bind.dual_stack || a->bind.v6only != b->bind.v6only ||
        a->proxy_protocol != b->proxy_protocol || a->max_connections != b->max_connections ||
        a->n_trusted_proxies != b->n_trusted_proxies)
        return false;
    for (unsigned i = 0; i < a->n_trusted_proxies; i++) {
        if (!cidr_same(&a->trusted_proxies[i], &b->trusted_proxies[i]))
            return false;
    }
    return true;
}

/* Each of cfg's routes is in s with every field equal, and s has no other. */
static bool routes_match(const struct state *s, const struct config *c)
{
    for (unsigned i = 0; i < c->n_listeners; i++) {
        const struct listener_conf *l = &c->listeners[i];
        const struct listener_conf *d = state_listener(s, l->addr);

        if (d == NULL || d->n_routes != l->n_routes)
            return false;
        for (unsigned j = 0; j < l->n_routes; j++) {
            const struct route_conf *r = route_named(d, l->routes[j].hostname);

            if (r == NULL || !route_same(&l->routes[j], r))
                return false;
        }
    }
    return true;
}

static bool rules_match(const struct state *s)
{
    if (s->n_rules != MC_ARRAY_LEN(want_rules))
        return false;
    for (unsigned i = 0; i < s->n_rules; i++) {
        if (s->rules[i].type != want_rules[i].type ||
            strcmp(s->rules[i].value, want_rules[i].value) != 0)
            return false;
    }
    return true;
}

static struct state *load_ok(struct store *st)
{
    const char *err = NULL;
    struct state *s = store_load(st, &err);

    if (s == NULL)
        die("load", err);
    return s;
}

static mode_t file_mode(const char *path)
{
    struct stat sb;

    return stat(path, &sb) < 0 ? (mode_t)-1 : sb.st_mode & 07777;
}

/* Every descriptor this process has open on a file whose path starts with prefix is close-on-exec.
 */
static bool fds_cloexec(const char *prefix, unsigned *n_found)
{
    char link[64], target[PATH_MAX];
    struct dirent *de;
    bool ok = true;
    DIR *d = opendir("/proc/self/fd");

    *n_found = 0;
    if (d == NULL)
        return false;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        ssize_t n;

        if (de->d_name[0] == '.' || fd == dirfd(d))
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, prefix, strlen(prefix)) != 0)
            continue;
        (*n_found)++;
        if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
            ok = false;
    }
    closedir(d);
    return ok;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ---- */

static void test_state_helpers(void)
{
    T_OK(strcmp(fw_type_name(FW_IP), "ip") == 0 && strcmp(fw_type_name(FW_CIDR), "cidr") == 0 &&
             strcmp(fw_type_name(FW_COUNTRY), "country") == 0,
         "state: fw_type_name names every type");
    T_OK(fw_type_name((enum fw_type)7) == NULL, "state: fw_type_name of an unknown type is NULL");
    T_OK(fw_type_parse("ip") == FW_IP && fw_type_parse("cidr") == FW_CIDR &&
             fw_type_parse("country") == FW_COUNTRY,
         "state: fw_type_parse reads every name");
    T_OK(fw_type_parse("IP") == -1 && fw_type_parse("") == -1 && fw_type_parse("asn") == -1,
         "state: fw_type_parse refuses other names");
    state_free(NULL);
    T_OK(1, "state: state_free(NULL) is a no-op");
}

static void test_open(void)
{
    char db[PATH_MAX], wal[PATH_MAX + 4], other[PATH_MAX], link[PATH_MAX];
    const char *err = NULL;
    struct store *st;
    unsigned n_fds;
    int fd;

    fresh_db(db, "open");
    umask(022);
    st = store_open(db, &err);
    T_OK(st != NULL, "open: creates a new database");
    if (st == NULL)
        return;
    T_OK(file_mode(db) == 0600, "open: database file is mode 0600 (umask 022)");
    snprintf(wal, sizeof(wal), "%s-wal", db);
    T_OK(file_mode(wal) == 0600, "open: WAL file is mode 0600 too");
    T_OK(fds_cloexec(db, &n_fds) && n_fds > 0,
         "open: the %u descriptors on the database files are close-on-exec", n_fds);
    T_OK(raw_text_is(db, "PRAGMA journal_mode", "wal"), "open: journal_mode is wal");
    T_OK(raw_int(db, "SELECT max(version) FROM schema_migrations") == 1 &&
             raw_int(db, "SELECT count(*) FROM schema_migrations WHERE applied_at LIKE '20%Z'") ==
                 1,
         "open: migration 1 recorded with its time");
    store_close(st);

    /* Reopening applies nothing twice. */
    st = open_ok(db);
    T_OK(raw_int(db, "SELECT count(*) FROM schema_migrations") == 1,
         "open: reopening records no migration again");
    store_close(st);

    /* An existing file readable by others is tightened. */
    path_in(other, "open/loose.db");
    fd = open(other, O_CREAT | O_WRONLY, 0644);
    close(fd);
    chmod(other, 0644);
    st = store_open(other, &err);
    T_OK(st != NULL && file_mode(other) == 0600, "open: an existing 0644 file is made 0600");
    store_close(st);

    path_in(link, "open/link.db");
    if (symlink(db, link) < 0)
        die(link, strerror(errno));
    err = NULL;
    st = store_open(link, &err);
    T_OK(st == NULL && err != NULL && strstr(err, "symbolic link") != NULL,
         "open: a symbolic link is refused (%s)", err != NULL ? err : "no message");
    store_close(st);

    path_in(other, "open/no/such/dir.db");
    err = NULL;
    st = store_open(other, &err);
    T_OK(st == NULL && err != NULL && strstr(err, other) != NULL,
         "open: a missing directory fails naming the path (%s)", err != NULL ? err : "");
    store_close(st);
}

static void test_seed_load(void)
{
    char db[PATH_MAX];
    const char *err = NULL;
    struct state *s;
    struct store *st;
    bool empty = false;
    int rc;

    fresh_db(db, "seed");
    st = open_ok(db);
    rc = store_is_empty(st, &empty, &err);
    T_OK(rc == STORE_OK && empty, "seed: a new database is empty");
    rc = store_seed(st, &cfg, &err);
    T_OK(rc == STORE_OK, "seed: seeds from the config");
    rc = store_is_empty(st, &empty, &err);
    T_OK(rc == STORE_OK && !empty, "seed: not empty once seeded");
    err = NULL;
    rc = store_seed(st, &cfg, &err);
    T_OK(rc == STORE_INVALID && err != NULL && strstr(err, "seeded already") != NULL,
         "seed: a second seed is refused (%s)", err != NULL ? err : "");

    s = load_ok(st);
    T_OK(s->n_listeners == 2 && strcmp(s->listeners[0].addr, "127.0.0.1:8443") == 0 &&
             strcmp(s->listeners[1].addr, ":443") == 0,
         "load: listeners ordered by addr");
    T_OK(state_listener(s, ":443") != NULL &&
             listener_same(&listeners[0], state_listener(s, ":443")) &&
             state_listener(s, "127.0.0.1:8443") != NULL &&
             listener_same(&listeners[1], state_listener(s, "127.0.0.1:8443")),
         "load: listener fields (bind, proxy_protocol, trusted proxies in order, max) round-trip");
    T_OK(state_listener(s, "[::]:443") == NULL, "load: state_listener of an unknown addr is NULL");
    T_OK(routes_match(s, &cfg), "load: every route field and policy order round-trips");
    {
        const struct listener_conf *l = state_listener(s, ":443");

        T_OK(l != NULL && l->n_routes == 3 &&
                 strcmp(l->routes[0].hostname, "*.apps.example.com") == 0 &&
                 strcmp(l->routes[1].hostname, "api.example.com") == 0 &&
                 strcmp(l->routes[2].hostname, "git.example.com") == 0,
             "load: routes ordered by hostname");
        T_OK(l != NULL && l->routes[2].tls_cert == NULL && l->routes[2].tls_key == NULL,
             "load: an unset tls_cert/tls_key loads as NULL");
    }
    T_OK(rules_match(s), "load: every rule type round-trips, ordered by type then value");
    state_free(s);
    store_close(st);

    st = open_ok(db);
    s = load_ok(st);
    T_OK(s->n_listeners == 2 && routes_match(s, &cfg) && rules_match(s) &&
             listener_same(&listeners[1], state_listener(s, "127.0.0.1:8443")),
         "load: a reopened database holds the same state");
    state_free(s);
    store_close(st);
}

static void test_rows_that_do_not_parse(void)
{
    static const struct {
        const char *sql;
        const char *want; /* in the message */
        const char *name;
    } cases[] = {
        {"UPDATE listeners SET addr = 'nonsense' WHERE addr = ':443'", "nonsense",
         "a bad listener addr"},
        {"UPDATE routes SET backend = 'localhost:80' WHERE hostname = 'git.example.com'",
         "git.example.com", "a bad backend"},
        {"UPDATE routes SET hostname = 'Git.Example.com' WHERE hostname = 'git.example.com'",
         "Git.Example.com", "a hostname not normalised"},
        {"UPDATE trusted_proxies SET cidr = '10.0.0.1/8' WHERE position = 0", "10.0.0.1/8",
         "a bad trusted proxy"},
        {"UPDATE firewall_rules SET value = 'cn' WHERE value = 'CN'", "country cn",
         "a bad country rule"},
        {"UPDATE firewall_rules SET value = '198.51.100.0' WHERE type = 'cidr'", "198.51.100.0",
         "a cidr rule without prefix"},
    };
    char db[PATH_MAX], name[32];

    for (size_t i = 0; i < MC_ARRAY_LEN(cases); i++) {
        const char *err = NULL;
        struct store *st;
        struct state *s;

        snprintf(name, sizeof(name), "badrow%zu", i);
        fresh_db(db, name);
        store_close(open_seeded(db));
        if (raw_exec(db, cases[i].sql) != SQLITE_OK)
            die("corrupting a row", cases[i].sql);
        st = open_ok(db);
        s = store_load(st, &err);
        T_OK(s == NULL && err != NULL && strstr(err, cases[i].want) != NULL,
             "load: %s fails naming the row (%s)", cases[i].name, err != NULL ? err : "loaded");
        state_free(s);
        store_close(st);
    }
}

static unsigned diff(struct store *st)
{
    const char *err = NULL;
    unsigned n = 12345;
    struct state *s = store_load(st, &err);

    if (s == NULL || store_config_diff(st, &cfg, s, &n, &err) != STORE_OK)
        die("diff", err);
    state_free(s);
    return n;
}

static void test_diff(void)
{
    char db[PATH_MAX];
    struct store *st;
    unsigned n;

    fresh_db(db, "diff");
    st = open_seeded(db);
    T_OK(diff(st) == 0, "diff: the seeding config differs in 0 entries");

    web_routes[0].backend = "127.0.0.1:3001";
    T_OK((n = diff(st)) == 1, "diff: a changed backend is 1 (got %u)", n);
    listeners[0].n_routes = N_WEB_ROUTES + 1;
    T_OK((n = diff(st)) == 2, "diff: plus an extra route is 2 (got %u)", n);
    cfg.firewall.n_blocked_countries = 1;
    T_OK((n = diff(st)) == 3, "diff: plus a removed rule is 3 (got %u)", n);
    web_routes[0].backend = "127.0.0.1:3000";
    listeners[0].n_routes = N_WEB_ROUTES;
    cfg.firewall.n_blocked_countries = MC_ARRAY_LEN(blocked_countries);
    T_OK(diff(st) == 0, "diff: restored config differs in 0 entries");

    apps_policies[2].value = "masscan";
    T_OK((n = diff(st)) == 2, "diff: a replaced policy is 2: one on each side (got %u)", n);
    apps_policies[2].value = "curl";
    web_routes[1].n_policies = 2;
    T_OK((n = diff(st)) == 1, "diff: a policy missing from the config is 1 (got %u)", n);
    web_routes[1].n_policies = MC_ARRAY_LEN(apps_policies);

    listeners[1].max_connections = 5;
    T_OK((n = diff(st)) == 1, "diff: a changed max_connections is 1 (got %u)", n);
    listeners[1].max_connections = 100;
    listeners[1].n_trusted_proxies = 2;
    T_OK((n = diff(st)) == 1, "diff: a changed trusted_proxies list is 1 (got %u)", n);
    listeners[1].n_trusted_proxies = MC_ARRAY_LEN(trusted);

    cfg.n_listeners = 1;
    T_OK((n = diff(st)) == 1,
         "diff: a listener only in the database is 1, its routes not "
         "counted again (got %u)",
         n);
    cfg.n_listeners = MC_ARRAY_LEN(listeners);

    {
        const char *err = NULL;

        store_rule_add(st, FW_IP, "203.0.113.9", &err);
        T_OK((n = diff(st)) == 1, "diff: a rule only in the database is 1 (got %u)", n);
    }
    store_close(st);
}

static void test_route_mutations(void)
{
    struct route_conf r = {
        .hostname = "new.example.com",
        .backend = "127.0.0.1:4000",
        .mode = ROUTE_L4,
    };
    struct policy_conf pols[] = {{POLICY_REQUIRE_HEADER, "X-One"},
                                 {POLICY_REQUIRE_HEADER, "X-Two"}};
    const struct route_conf *got;
    const char *err = NULL;
    char db[PATH_MAX];
    struct store *st;
    struct state *s;
    long long n_pol;
    int rc;

    fresh_db(db, "routes");
    st = open_seeded(db);
    if (addr_parse_hostport(r.backend, &r.backend_addr, &err) < 0)
        die(r.backend, err);

    rc = store_route_upsert(st, ":443", &r, &err);
    s = load_ok(st);
    got = route_named(state_listener(s, ":443"), "new.example.com");
    T_OK(rc == STORE_OK && got != NULL && route_same(&r, got), "upsert: inserts a new route");
    state_free(s);

    r.backend = "[2001:db8::5]:443";
    if (addr_parse_hostport(r.backend, &r.backend_addr, &err) < 0)
        die(r.backend, err);
    r.mode = ROUTE_L7;
    r.tls_cert = "/c.pem";
    r.tls_key = "/c.key";
    r.backend_tls = true;
    r.send_proxy_protocol = true;
    r.policies = pols;
    r.n_policies = 2;
    rc = store_route_upsert(st, ":443", &r, &err);
    s = load_ok(st);
    got = route_named(state_listener(s, ":443"), "new.example.com");
    T_OK(rc == STORE_OK && got != NULL && route_same(&r, got) &&
             state_listener(s, ":443")->n_routes == N_WEB_ROUTES + 1,
         "upsert: replaces every field of an existing route, policies in order");
    state_free(s);

    r.n_policies = 1;
    rc = store_route_upsert(st, ":443", &r, &err);
    s = load_ok(st);
    got = route_named(state_listener(s, ":443"), "new.example.com");
    T_OK(rc == STORE_OK && got != NULL && got->n_policies == 1 &&
             strcmp(got->policies[0].value, "X-One") == 0,
         "upsert: replaces the route's policies with the new list");
    state_free(s);

    err = NULL;
    rc = store_route_upsert(st, ":8080", &r, &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, ":8080") != NULL,
         "upsert: an unknown listener is NOT_FOUND (%s)", err != NULL ? err : "");

    r.tls_key = NULL;
    err = NULL;
    rc = store_route_upsert(st, ":443", &r, &err);
    T_OK(rc == STORE_INVALID, "upsert: l7 without tls_key is INVALID (%s)", err != NULL ? err : "");
    r.tls_key = "/c.key";
    r.mode = (enum route_mode)7;
    rc = store_route_upsert(st, ":443", &r, &err);
    T_OK(rc == STORE_INVALID, "upsert: an unknown mode is INVALID");
    r.mode = ROUTE_L7;
    pols[1].type = (enum policy_type)9;
    r.n_policies = 2;
    rc = store_route_upsert(st, ":443", &r, &err);
    T_OK(rc == STORE_INVALID, "upsert: an unknown policy type is INVALID");
    pols[1].type = POLICY_REQUIRE_HEADER;

    n_pol = raw_int(db, "SELECT count(*) FROM l7_policies");
    rc = store_route_delete(st, ":443", "*.apps.example.com", &err);
    s = load_ok(st);
    T_OK(rc == STORE_OK && route_named(state_listener(s, ":443"), "*.apps.example.com") == NULL,
         "delete route: removes it");
    T_OK(raw_int(db, "SELECT count(*) FROM l7_policies") == n_pol - 3,
         "delete route: its policies go with it (foreign keys on)");
    state_free(s);
    err = NULL;
    rc = store_route_delete(st, ":443", "*.apps.example.com", &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, "*.apps.example.com") != NULL,
         "delete route: an absent route is NOT_FOUND (%s)", err != NULL ? err : "");
    rc = store_route_delete(st, ":8080", "git.example.com", &err);
    T_OK(rc == STORE_NOT_FOUND, "delete route: an unknown listener is NOT_FOUND");
    store_close(st);
}

static void test_rule_listener_policy_mutations(void)
{
    struct policy_conf p = {POLICY_BLOCK_USER_AGENT, "nikto"};
    const struct route_conf *r;
    const char *err = NULL;
    char db[PATH_MAX];
    struct store *st;
    struct state *s;
    bool empty;
    int rc;

    fresh_db(db, "rules");
    st = open_seeded(db);

    rc = store_rule_add(st, FW_CIDR, "203.0.113.0/24", &err);
    T_OK(rc == STORE_OK && raw_int(db, "SELECT count(*) FROM firewall_rules WHERE type = 'cidr' "
                                       "AND value = '203.0.113.0/24'") == 1,
         "rule add: adds it");
    rc = store_rule_add(st, FW_CIDR, "203.0.113.0/24", &err);
    T_OK(rc == STORE_OK && raw_int(db, "SELECT count(*) FROM firewall_rules") ==
                               (long long)MC_ARRAY_LEN(want_rules) + 1,
         "rule add: a duplicate succeeds and adds nothing");
    rc = store_rule_add(st, (enum fw_type)5, "x", &err);
    T_OK(rc == STORE_INVALID, "rule add: an unknown type is INVALID");
    rc = store_rule_delete(st, FW_CIDR, "203.0.113.0/24", &err);
    T_OK(rc == STORE_OK && raw_int(db, "SELECT count(*) FROM firewall_rules WHERE type = 'cidr' "
                                       "AND value = '203.0.113.0/24'") == 0,
         "rule delete: removes it");
    err = NULL;
    rc = store_rule_delete(st, FW_CIDR, "203.0.113.0/24", &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, "203.0.113.0/24") != NULL,
         "rule delete: an absent rule is NOT_FOUND (%s)", err != NULL ? err : "");

    rc = store_listener_set_max(st, ":443", 4000000000u, &err);
    s = load_ok(st);
    T_OK(rc == STORE_OK && state_listener(s, ":443")->max_connections == 4000000000u,
         "set max: stores any uint32");
    state_free(s);
    rc = store_listener_set_max(st, ":443", 0, &err);
    T_OK(rc == STORE_OK, "set max: 0 (unlimited) is accepted");
    err = NULL;
    rc = store_listener_set_max(st, "[::]:443", 5, &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, "[::]:443") != NULL,
         "set max: an unknown listener is NOT_FOUND (%s)", err != NULL ? err : "");

    rc = store_policy_add(st, ":443", "*.apps.example.com", &p, &err);
    s = load_ok(st);
    r = route_named(state_listener(s, ":443"), "*.apps.example.com");
    T_OK(rc == STORE_OK && r != NULL && r->n_policies == 4 &&
             strcmp(r->policies[3].value, "nikto") == 0 &&
             strcmp(r->policies[0].value, "zgrab") == 0,
         "policy add: appended after the others");
    state_free(s);
    rc = store_policy_add(st, ":443", "*.apps.example.com", &apps_policies[0], &err);
    s = load_ok(st);
    r = route_named(state_listener(s, ":443"), "*.apps.example.com");
    T_OK(rc == STORE_OK && r != NULL && r->n_policies == 4 &&
             strcmp(r->policies[0].value, "zgrab") == 0,
         "policy add: a duplicate succeeds and keeps its place");
    state_free(s);
    err = NULL;
    rc = store_policy_add(st, ":443", "nope.example.com", &p, &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, "nope.example.com") != NULL,
         "policy add: an unknown route is NOT_FOUND (%s)", err != NULL ? err : "");
    rc = store_policy_add(st, ":9", "git.example.com", &p, &err);
    T_OK(rc == STORE_NOT_FOUND, "policy add: an unknown listener is NOT_FOUND");

    rc = store_policy_delete(st, ":443", "*.apps.example.com", &apps_policies[1], &err);
    s = load_ok(st);
    r = route_named(state_listener(s, ":443"), "*.apps.example.com");
    T_OK(rc == STORE_OK && r != NULL && r->n_policies == 3 &&
             strcmp(r->policies[0].value, "zgrab") == 0 &&
             strcmp(r->policies[1].value, "curl") == 0 &&
             strcmp(r->policies[2].value, "nikto") == 0,
         "policy delete: removes it, the others keep their order");
    state_free(s);
    err = NULL;
    rc = store_policy_delete(st, ":443", "*.apps.example.com", &apps_policies[1], &err);
    T_OK(rc == STORE_NOT_FOUND && err != NULL && strstr(err, "X-Api-Key") != NULL,
         "policy delete: an absent policy is NOT_FOUND (%s)", err != NULL ? err : "");
    rc = store_policy_delete(st, ":443", "nope.example.com", &p, &err);
    T_OK(rc == STORE_NOT_FOUND, "policy delete: an unknown route is NOT_FOUND");
    store_close(st);

    /* Seeded once: removing everything the config gave does not make it empty again. */
    {
        struct config rules_only = {.firewall = cfg.firewall};

        fresh_db(db, "rules-only");
        st = open_ok(db);
        rc = store_seed(st, &rules_only, &err);
        for (size_t i = 0; rc == STORE_OK && i < MC_ARRAY_LEN(want_rules); i++)
            rc = store_rule_delete(st, want_rules[i].type, want_rules[i].value, &err);
        T_OK(rc == STORE_OK && store_is_empty(st, &empty, &err) == STORE_OK && !empty,
             "is_empty: a seeded database the admin emptied is not empty");
        store_close(st);
    }
}

static void test_atomicity(void)
{
    static char dump_before[32768], dump_after[32768];
    struct policy_conf dup[] = {{POLICY_REQUIRE_HEADER, "X-New"},
                                {POLICY_BLOCK_USER_AGENT, "zz"},
                                {POLICY_REQUIRE_HEADER, "X-New"}};
    struct route_conf r = web_routes[1]; /* *.apps.example.com, 3 policies */
    struct listener_conf bad_listeners[2];
    struct route_conf bad_route;
    struct config bad = cfg;
    const char *err = NULL;
    char db[PATH_MAX];
    struct store *st;
    bool empty = false;
    double t0, dt;
    sqlite3 *raw;
    int rc;

    fresh_db(db, "atomic");
    st = open_seeded(db);

    /* A constraint failure after the route row and one policy were written. */
    raw_dump(db, true, dump_before, sizeof(dump_before));
    r.backend = "127.0.0.1:1";
    r.policies = dup;
    r.n_policies = MC_ARRAY_LEN(dup);
    err = NULL;
    rc = store_route_upsert(st, ":443", &r, &err);
    raw_dump(db, true, dump_after, sizeof(dump_after));
    T_OK(rc == STORE_INVALID && strcmp(dump_before, dump_after) == 0,
         "atomic: a duplicate policy halfway through an upsert changes nothing (%s)",
         err != NULL ? err : "");

    /* A real write failure: the file may not grow (like a full disk). */
    {
        static struct policy_conf big[200];
        static char values[200][2048];
        struct rlimit lim, old;
        struct stat sb;
        char wal[PATH_MAX + 4];
        off_t max = 0;

        for (unsigned i = 0; i < MC_ARRAY_LEN(big); i++) {
            memset(values[i], 'a' + (char)(i % 26), sizeof(values[i]) - 8);
            snprintf(values[i] + sizeof(values[i]) - 8, 8, "%u", i);
            big[i] = (struct policy_conf){POLICY_BLOCK_USER_AGENT, values[i]};
        }
        r.policies = big;
        r.n_policies = MC_ARRAY_LEN(big);
        snprintf(wal, sizeof(wal), "%s-wal", db);
        if (stat(db, &sb) == 0)
            max = sb.st_size;
        if (stat(wal, &sb) == 0 && sb.st_size > max)
            max = sb.st_size;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = (rlim_t)max + 4096;
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        err = NULL;
        rc = store_route_upsert(st, ":443", &r, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_DFL);
        raw_dump(db, true, dump_after, sizeof(dump_after));
        T_OK(rc == STORE_ERROR && strcmp(dump_before, dump_after) == 0,
             "atomic: a write that fails on I/O is STORE_ERROR and changes nothing (%s)",
             err != NULL ? err : "");
        r.n_policies = 1;
        rc = store_route_upsert(st, ":443", &r, &err);
        T_OK(rc == STORE_OK, "atomic: the store works again once the disk has room");
    }

    /* Another connection holds the write lock: bounded wait, then an error. */
    raw_dump(db, true, dump_before, sizeof(dump_before));
    raw = raw_open(db);
    sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    t0 = now_s();
    err = NULL;
    rc = store_rule_add(st, FW_IP, "203.0.113.50", &err);
    dt = now_s() - t0;
    sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(raw);
    raw_dump(db, true, dump_after, sizeof(dump_after));
    T_OK(rc == STORE_ERROR && err != NULL && strstr(err, "locked") != NULL &&
             strcmp(dump_before, dump_after) == 0,
         "atomic: a locked database is STORE_ERROR and changes nothing (%s)",
         err != NULL ? err : "");
    T_OK(dt > 1.5 && dt < 5.0, "atomic: the wait is bounded by busy_timeout (%.2fs)", dt);
    rc = store_rule_add(st, FW_IP, "203.0.113.50", &err);
    T_OK(rc == STORE_OK, "atomic: the next call succeeds once the lock is gone");
    store_close(st);

    /* A seed that fails on its second listener leaves the database empty. */
    fresh_db(db, "atomic-seed");
    st = open_ok(db);
    memcpy(bad_listeners, listeners, sizeof(bad_listeners));
    bad_route = internal_routes[0];
    bad_route.tls_cert = NULL;
    bad_listeners[1].routes = &bad_route;
    bad.listeners = bad_listeners;
    err = NULL;
    rc = store_seed(st, &bad, &err);
    T_OK(rc == STORE_INVALID && store_is_empty(st, &empty, &err) == STORE_OK && empty &&
             raw_int(db, "SELECT (SELECT count(*) FROM listeners) + (SELECT count(*) FROM "
                         "routes) + (SELECT count(*) FROM l7_policies) + (SELECT count(*) "
                         "FROM firewall_rules) + (SELECT count(*) FROM seeded)") == 0,
         "atomic: a seed failing halfway leaves the database empty");
    rc = store_seed(st, &cfg, &err);
    T_OK(rc == STORE_OK, "atomic: the same database seeds fine afterwards");
    store_close(st);
}

static void write_at(const char *path, off_t off, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);

    if (fd < 0 || pwrite(fd, buf, len, off) != (ssize_t)len)
        die(path, strerror(errno));
    close(fd);
}

static void test_corrupt(void)
{
    char db[PATH_MAX], garbage[4096];
    const char *err;
    struct store *st;

    memset(garbage, 0xa5, sizeof(garbage));

    fresh_db(db, "corrupt-header");
    write_at(db, 0, "this is not an SQLite database, just some text.\n", 48);
    write_at(db, 48, garbage, sizeof(garbage));
    err = NULL;
    st = store_open(db, &err);
    T_OK(st == NULL && err != NULL && strstr(err, "corrupt") != NULL &&
             strstr(err, "not a database") != NULL && strstr(err, db) != NULL,
         "corrupt: a bad header is refused (%s)", err != NULL ? err : "opened");
    store_close(st);

    fresh_db(db, "corrupt-page");
    store_close(open_seeded(db));
    write_at(db, 4096, garbage, sizeof(garbage));
    err = NULL;
    st = store_open(db, &err);
    T_OK(st == NULL && err != NULL && strstr(err, "corrupt") != NULL,
         "corrupt: garbage over page 2 is refused (%s)", err != NULL ? err : "opened");
    store_close(st);

    fresh_db(db, "corrupt-truncated");
    store_close(open_seeded(db));
    if (truncate(db, 4096 * 3 + 100) < 0)
        die(db, strerror(errno));
    err = NULL;
    st = store_open(db, &err);
    T_OK(st == NULL && err != NULL && strstr(err, "corrupt") != NULL,
         "corrupt: a truncated file is refused (%s)", err != NULL ? err : "opened");
    store_close(st);
}

static void test_newer_schema(void)
{
    char db[PATH_MAX], before[8192], after[8192];
    const char *err = NULL;
    struct store *st;

    fresh_db(db, "newer");
    store_close(open_seeded(db));
    if (raw_exec(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')") !=
        SQLITE_OK)
        die("newer", "insert");
    raw_dump(db, true, before, sizeof(before));
    st = store_open(db, &err);
    raw_dump(db, true, after, sizeof(after));
    T_OK(st == NULL && err != NULL && strstr(err, "schema version 99 is newer") != NULL &&
             strstr(err, "(1)") != NULL,
         "migrations: a newer schema is refused (%s)", err != NULL ? err : "opened");
    T_OK(strcmp(before, after) == 0, "migrations: the refused database is left as it was");
    store_close(st);
}

/* Writer child: adds ip rules 10.0.x.y in order, one transaction each, until stop is readable. */
static void writer(const char *db, int stop)
{
    const char *err = NULL;
    struct store *st = store_open(db, &err);
    char v[32];
    char c;

    if (st == NULL)
        _exit(2);
    for (unsigned i = 0; i < 60000 && read(stop, &c, 1) < 0 && errno == EAGAIN; i++) {
        snprintf(v, sizeof(v), "10.0.%u.%u", i / 250, i % 250 + 1);
        if (store_rule_add(st, FW_IP, v, &err) != STORE_OK)
            _exit(3);
    }
    store_close(st);
    _exit(0);
}

/*
 * The writer's rules in a copy: how many, and whether they are exactly
 * its first n (each add commits alone, so a consistent copy holds a prefix).
 */
static bool writer_rules(const char *path, long long *n)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *q = NULL;
    long long count = 0, max = -1;
    unsigned a, b;

    if (sqlite3_prepare_v2(db, "SELECT value FROM firewall_rules WHERE value LIKE '10.0.%'", -1, &q,
                           NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (sscanf((const char *)sqlite3_column_text(q, 0), "10.0.%u.%u", &a, &b) != 2)
            break;
        count++;
        max = MC_MAX(max, (long long)a * 250 + b - 1);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    *n = count;
    return max == count - 1;
}

static bool quick_check_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    bool ok = false;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        ok = strcmp((const char *)sqlite3_column_text(q, 0), "ok") == 0 &&
             sqlite3_step(q) == SQLITE_DONE;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return ok;
}

static void test_snapshot_concurrent(void)
{
    static char live[32768], snap[32768];
    char db[PATH_MAX], out[PATH_MAX], written[PATH_MAX];
    long long first = -1, last = -1, n;
    bool all_ok = true;
    int stop[2], status;
    const char *err;
    struct store *st;
    pid_t pid;

    fresh_db(db, "snap-live");
    st = open_seeded(db);
    raw_dump(db, false, live, sizeof(live));
    if (pipe2(stop, O_NONBLOCK) < 0)
        die("pipe", strerror(errno));
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        close(stop[1]);
        writer(db, stop[0]);
    }
    close(stop[0]);
    while (raw_int(db, "SELECT count(*) FROM firewall_rules") <
           (long long)MC_ARRAY_LEN(want_rules) + 20)
        usleep(1000);

    for (int i = 0; i < 5; i++) {
        n = -1;
        snprintf(out, sizeof(out), "%s/snap-live/copy%d.db", tmpdir, i);
        err = NULL;
        if (store_snapshot(db, out, 0, written, &err) != STORE_OK) {
            printf("# snapshot %d: %s\n", i, err);
            all_ok = false;
            continue;
        }
        raw_dump(out, false, snap, sizeof(snap));
        if (strcmp(written, out) != 0 || file_mode(out) != 0600 || !quick_check_ok(out) ||
            strcmp(snap, live) != 0 || !writer_rules(out, &n) ||
            raw_int(out, "SELECT count(*) FROM firewall_rules WHERE value NOT LIKE '10.0.%'") !=
                (long long)MC_ARRAY_LEN(want_rules)) {
            printf("# snapshot %d is not a consistent copy\n", i);
            all_ok = false;
        }
        if (first < 0)
            first = n;
        last = n;
    }
    /* Let the writer get past the last snapshot, so the copies were taken mid-stream. */
    while (raw_int(db, "SELECT count(*) FROM firewall_rules WHERE value LIKE '10.0.%'") <= last)
        usleep(1000);
    if (write(stop[1], "x", 1) != 1)
        die("pipe", strerror(errno));
    waitpid(pid, &status, 0);
    close(stop[1]);
    T_OK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "snapshot: the concurrent writer ran "
                                                        "without an error");
    T_OK(all_ok, "snapshot: 5 copies taken while another process writes are 0600, pass "
                 "quick_check and hold a consistent set of rows");
    T_OK(first >= 20, "snapshot: the copies caught the writer mid-stream (%lld..%lld rules)", first,
         last);

    /* An existing output is refused and left alone. */
    err = NULL;
    T_OK(store_snapshot(db, out, 0, written, &err) != STORE_OK && err != NULL &&
             strstr(err, "exists") != NULL && quick_check_ok(out),
         "snapshot: an existing output file is refused and kept (%s)", err != NULL ? err : "");
    store_close(st);

    /* A corrupt database makes no snapshot file. */
    {
        char bad[PATH_MAX], bad_out[PATH_MAX];
        char garbage[8192];

        fresh_db(bad, "snap-corrupt");
        memset(garbage, 0x5a, sizeof(garbage));
        write_at(bad, 0, garbage, sizeof(garbage));
        path_in(bad_out, "snap-corrupt/out.db");
        err = NULL;
        T_OK(store_snapshot(bad, bad_out, 0, written, &err) != STORE_OK &&
                 access(bad_out, F_OK) < 0 && written[0] == '\0',
             "snapshot: a corrupt database fails and leaves no file (%s)", err != NULL ? err : "");
    }
}

static bool backup_exists(const char *dir, const char *name)
{
    char p[PATH_MAX * 2];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void touch(const char *dir, const char *name)
{
    char p[PATH_MAX * 2];
    int fd;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    fd = open(p, O_CREAT | O_WRONLY, 0600);
    if (fd < 0)
        die(p, strerror(errno));
    close(fd);
}

static void test_snapshot_default_and_prune(void)
{
    static const char *const old[] = {
        "mc-proxy-20000101T000000Z.db",   "mc-proxy-20000101T000000Z-1.db",
        "mc-proxy-20000101T000000Z-2.db", "mc-proxy-20000101T000000Z-10.db",
        "mc-proxy-20010101T000000Z.db",
    };
    static const char *const foreign[] = {"mc-proxy-notes.db", "other.db",
                                          "mc-proxy-20000101T000000Z-01.db"};
    char db[PATH_MAX], backups[PATH_MAX], first[PATH_MAX], second[PATH_MAX], third[PATH_MAX];
    const char *err = NULL, *base;
    struct store *st;
    unsigned n;
    int rc;

    fresh_db(db, "snap-default");
    st = open_seeded(db);
    snprintf(backups, sizeof(backups), "%s/snap-default/backups", tmpdir);

    rc = store_snapshot(db, NULL, 0, first, &err);
    base = strrchr(first, '/');
    T_OK(rc == STORE_OK && file_mode(backups) == 0700 && (file_mode(first) == 0600) &&
             strncmp(first, backups, strlen(backups)) == 0 && base != NULL &&
             strlen(base) == strlen("/mc-proxy-YYYYMMDDTHHMMSSZ.db") &&
             strncmp(base, "/mc-proxy-20", 12) == 0 && base[18] == 'T' && base[25] == 'Z' &&
             quick_check_ok(first),
         "snapshot: default goes to backups/ (0700) as mc-proxy-<UTC time>.db, 0600 (%s)", first);
    rc = store_snapshot(db, NULL, 0, second, &err);
    T_OK(rc == STORE_OK && strcmp(first, second) != 0 && backup_exists(backups, base + 1),
         "snapshot: a second one gets its own name (%s)", second);

    for (n = 0; n < MC_ARRAY_LEN(old); n++)
        touch(backups, old[n]);
    for (n = 0; n < MC_ARRAY_LEN(foreign); n++)
        touch(backups, foreign[n]);
    /* 8 snapshots once the next is made; keep 5: the three new ones, the
     * 2001 one and 2000...-10 (sequence numbers compare as numbers). */
    rc = store_snapshot(db, NULL, 5, third, &err);
    n = 0;
    for (size_t i = 0; i < MC_ARRAY_LEN(old); i++)
        n += backup_exists(backups, old[i]);
    T_OK(rc == STORE_OK && n == 2 && backup_exists(backups, "mc-proxy-20010101T000000Z.db") &&
             backup_exists(backups, "mc-proxy-20000101T000000Z-10.db") &&
             backup_exists(backups, base + 1) && access(second, F_OK) == 0 &&
             access(third, F_OK) == 0,
         "snapshot: pruning keeps the newest N, -10 after -2 (%s)", rc == STORE_OK ? "" : err);
    n = 0;
    for (size_t i = 0; i < MC_ARRAY_LEN(foreign); i++)
        n += backup_exists(backups, foreign[i]);
    T_OK(n == MC_ARRAY_LEN(foreign), "snapshot: pruning leaves files of other names alone");
    /* A name from a clock set ahead sorts newer; the new one is kept anyway. */
    touch(backups, "mc-proxy-29990101T000000Z.db");
    rc = store_snapshot(db, NULL, 1, third, &err);
    n = 0;
    {
        DIR *d = opendir(backups);
        struct dirent *de;

        while (d != NULL && (de = readdir(d)) != NULL)
            n += de->d_name[0] != '.';
        if (d != NULL)
            closedir(d);
    }
    T_OK(rc == STORE_OK && access(third, F_OK) == 0 && n == 1 + MC_ARRAY_LEN(foreign),
         "snapshot: keep 1 leaves only the new one, even with a newer-named file there");
    store_close(st);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp", strerror(errno));
    cfg_init();

    test_state_helpers();
    test_open();
    test_seed_load();
    test_rows_that_do_not_parse();
    test_diff();
    test_route_mutations();
    test_rule_listener_policy_mutations();
    test_atomicity();
    test_corrupt();
    test_newer_schema();
    test_snapshot_concurrent();
    test_snapshot_default_and_prune();

    if (tap_failed == 0) {
        if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
            printf("# could not remove %s\n", tmpdir);
    } else {
        printf("# databases kept in %s\n", tmpdir);
    }
    return tap_done();
}
