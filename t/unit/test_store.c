/*
 * Unit tests for master/store.c and master/state.c: opening, locking,
 * migrating, seeding, loading, diffing, rows that do not parse, corrupt files and a
 * newer schema. Every database lives in a fresh directory under /tmp; a
 * second, plain SQLite connection ("raw") looks at the file from outside
 * the store to check what was really committed. The config and the
 * helpers the store's tests share are in store_fixture.c; mutations are
 * tested in test_store_mutate.c, snapshots in test_store_snapshot.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_fixture.h"
#include "tap.h"

/* ---- helpers ---- */

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

static bool cidr_same(const struct mc_cidr *a, const struct mc_cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
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

/* What store_open(db) says in another process: "opened", or its error. */
static void open_in_child(const char *db, char *out, size_t size)
{
    int fds[2], status;
    ssize_t n, got = 0;
    pid_t pid;

    if (pipe(fds) < 0)
        die("pipe", strerror(errno));
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        const char *err = "opened";
        if (store_open(db, &err) == NULL && err == NULL)
            err = "no message";
        _exit(write(fds[1], err, strlen(err)) < 0);
    }
    close(fds[1]);
    while (got < (ssize_t)size - 1 && (n = read(fds[0], out + got, size - 1 - (size_t)got)) > 0)
        got += n;
    out[got] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
}

static void test_lock(void)
{
    char db[PATH_MAX], lock[PATH_MAX + 8], said[1024], want[64];
    struct store *st;

    fresh_db(db, "lock");
    st = open_ok(db);
    snprintf(lock, sizeof(lock), "%s.lock", db);
    T_OK(file_mode(lock) == 0600, "lock: %s.lock is created beside the database, mode 0600", db);
    open_in_child(db, said, sizeof(said));
    snprintf(want, sizeof(want), "in use by another mc-proxy, pid %d", (int)getpid());
    T_OK(strstr(said, want) != NULL && strstr(said, lock) != NULL,
         "lock: another process is refused, naming the holder's pid and the lock (%s)", said);
    store_close(st);
    open_in_child(db, said, sizeof(said));
    T_OK(strcmp(said, "opened") == 0, "lock: closing the store releases it (%s)", said);
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

/* Every listener, route and rule, in order. */
static bool states_same(const struct state *a, const struct state *b)
{
    if (a->n_listeners != b->n_listeners || a->n_rules != b->n_rules)
        return false;
    for (unsigned i = 0; i < a->n_listeners; i++) {
        const struct listener_conf *x = &a->listeners[i], *y = &b->listeners[i];

        if (!listener_same(x, y) || x->n_routes != y->n_routes)
            return false;
        for (unsigned j = 0; j < x->n_routes; j++) {
            if (!route_same(&x->routes[j], &y->routes[j]))
                return false;
        }
    }
    for (unsigned i = 0; i < a->n_rules; i++) {
        if (a->rules[i].type != b->rules[i].type || strcmp(a->rules[i].value, b->rules[i].value))
            return false;
    }
    return true;
}

/* The master's first state after a seed is built from the config, not read back. */
static void test_seed_state(void)
{
    static char *countries[] = {"RU", "CN", "RU"};
    struct config c = cfg;
    char db[PATH_MAX];
    const char *err = NULL;
    struct state *from, *loaded;
    struct store *st;

    c.firewall.blocked_countries = countries;
    c.firewall.n_blocked_countries = MC_ARRAY_LEN(countries);
    fresh_db(db, "seed_state");
    st = open_ok(db);
    T_OK(store_seed(st, &c, &err) == STORE_OK, "seed state: seeded (%s)", err ? err : "");
    from = state_from_config(&c);
    loaded = load_ok(st);
    T_OK(from != NULL && states_same(from, loaded),
         "seed state: state_from_config equals what store_load reads back (listeners by addr, "
         "routes by hostname, policies in order, trusted proxies, rules)");
    T_OK(from != NULL && rules_match(from), "seed state: a repeated rule is there once");
    T_OK(strcmp(listeners[0].addr, ":443") == 0 &&
             strcmp(web_routes[0].hostname, "git.example.com") == 0 && from != NULL &&
             from->listeners[1].routes != web_routes,
         "seed state: the config is left as it was (the state holds copies)");
    state_free(from);
    state_free(loaded);
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

int main(void)
{
    store_fixture_setup();

    test_state_helpers();
    test_open();
    test_lock();
    test_seed_load();
    test_seed_state();
    test_rows_that_do_not_parse();
    test_diff();
    test_corrupt();
    test_newer_schema();

    store_fixture_teardown(tap_failed);
    return tap_done();
}
