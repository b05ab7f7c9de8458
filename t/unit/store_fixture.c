/*
 * The shared fixture of the master/store.c unit tests (test_store.c,
 * test_store_mutate.c, test_store_snapshot.c): a config filled by hand,
 * a temporary directory the databases live in, and helpers that open and
 * seed databases there and look at them from outside the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_fixture.h"

char tmpdir[] = "/tmp/test_store.XXXXXX";

/* ---- the test config, filled by hand (no YAML loader needed) ---- */

struct policy_conf apps_policies[] = {
    {POLICY_BLOCK_USER_AGENT, "zgrab"},
    {POLICY_REQUIRE_HEADER, "X-Api-Key"},
    {POLICY_BLOCK_USER_AGENT, "curl"},
};

static struct policy_conf internal_policies[] = {
    {POLICY_REQUIRE_HEADER, "X-Token"},
};

/* The last entry is a spare the diff test switches on as an "extra route". */
struct route_conf web_routes[] = {
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

struct route_conf internal_routes[] = {
    {.hostname = "internal.example.com",
     .backend = "127.0.0.1:9000",
     .mode = ROUTE_L7,
     .tls_cert = "/etc/mc-proxy/internal.pem",
     .tls_key = "/etc/mc-proxy/internal.key",
     .policies = internal_policies,
     .n_policies = MC_ARRAY_LEN(internal_policies)},
};

static const char *const trusted_text[] = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"};
struct mc_cidr trusted[MC_ARRAY_LEN(trusted_text)];

struct listener_conf listeners[] = {
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
char *blocked_countries[] = {"CN", "RU"};

struct config cfg = {
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
const struct want_rule want_rules[] = {
    {FW_CIDR, "198.51.100.0/24"}, {FW_COUNTRY, "CN"},     {FW_COUNTRY, "RU"},
    {FW_IP, "192.0.2.7"},         {FW_IP, "2001:db8::7"},
};

void die(const char *what, const char *detail)
{
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, detail);
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

void path_in(char *out, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);

    if (n < 0 || n >= PATH_MAX)
        die("path too long", name);
}

/* A fresh directory (under tmpdir) holding nothing yet; the db path in it. */
void fresh_db(char *db, const char *name)
{
    char dir[PATH_MAX];

    path_in(dir, name);
    if (mkdir(dir, 0700) < 0)
        die(dir, strerror(errno));
    if (snprintf(db, PATH_MAX, "%s/mc-proxy.db", dir) >= PATH_MAX)
        die("path too long", dir);
}

struct store *open_ok(const char *db)
{
    const char *err = NULL;
    struct store *st = store_open(db, &err);

    if (st == NULL)
        die(db, err);
    return st;
}

struct store *open_seeded(const char *db)
{
    const char *err = NULL;
    struct store *st = open_ok(db);

    if (store_seed(st, &cfg, &err) != STORE_OK)
        die("seed", err);
    return st;
}

bool str_same(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die(path, db != NULL ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* The first column of the first row of sql on a fresh raw connection; -1 on error. */
long long raw_int(const char *path, const char *sql)
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
void raw_dump(const char *path, bool rules, char *buf, size_t size)
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

bool addr_same(const struct mc_addr *a, const struct mc_addr *b)
{
    char x[ADDR_STRLEN], y[ADDR_STRLEN];

    return a->len == b->len && a->ss.ss_family == b->ss.ss_family &&
           strcmp(addr_format(a, x, sizeof(x)), addr_format(b, y, sizeof(y))) == 0;
}

/* Every field, policies in order. */
bool route_same(const struct route_conf *a, const struct route_conf *b)
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

const struct route_conf *route_named(const struct listener_conf *l, const char *hostname)
{
    for (unsigned i = 0; i < l->n_routes; i++) {
        if (strcmp(l->routes[i].hostname, hostname) == 0)
            return &l->routes[i];
    }
    return NULL;
}

struct state *load_ok(struct store *st)
{
    const char *err = NULL;
    struct state *s = store_load(st, &err);

    if (s == NULL)
        die("load", err);
    return s;
}

mode_t file_mode(const char *path)
{
    struct stat sb;

    return stat(path, &sb) < 0 ? (mode_t)-1 : sb.st_mode & 07777;
}

void write_at(const char *path, off_t off, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);

    if (fd < 0 || pwrite(fd, buf, len, off) != (ssize_t)len)
        die(path, strerror(errno));
    close(fd);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void store_fixture_setup(void)
{
    umask(022); /* the modes the tests expect of created files */
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp", strerror(errno));
    cfg_init();
}

void store_fixture_teardown(int failed)
{
    if (failed == 0) {
        if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
            printf("# could not remove %s\n", tmpdir);
    } else {
        printf("# databases kept in %s\n", tmpdir);
    }
}
