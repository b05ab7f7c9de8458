/*
 * Unit tests for master/store_mutate.c: the admin's changes to routes,
 * rules, listeners and policies, and that each is all or nothing. Every
 * database lives in a fresh directory under /tmp; a second, plain SQLite
 * connection ("raw") looks at the file from outside the store to check
 * what was really committed. The config and the helpers the store's tests
 * share are in store_fixture.c.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "store_fixture.h"
#include "tap.h"

/* ---- helpers ---- */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ---- */

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

int main(void)
{
    store_fixture_setup();

    test_route_mutations();
    test_rule_listener_policy_mutations();
    test_atomicity();

    store_fixture_teardown(tap_failed);
    return tap_done();
}
