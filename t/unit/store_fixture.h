/*
 * The shared fixture of the master/store.c unit tests (test_store.c,
 * test_store_mutate.c, test_store_snapshot.c): a config filled by hand,
 * a temporary directory the databases live in, and helpers that open and
 * seed databases there and look at them from outside the store (a second,
 * plain SQLite connection, "raw"). Defined in store_fixture.c.
 */
#ifndef MC_STORE_FIXTURE_H
#define MC_STORE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "common/mc.h"
#include "master/state.h"
#include "master/store.h"

/* Where every database lives: made by store_fixture_setup. */
extern char tmpdir[];

/* ---- the test config, filled by hand (no YAML loader needed) ---- */

/* The sizes are checked against the definitions in store_fixture.c. */
extern struct policy_conf apps_policies[3];
/* The last entry is a spare the diff test switches on as an "extra route". */
extern struct route_conf web_routes[4];
#define N_WEB_ROUTES 3
extern struct route_conf internal_routes[1];
extern struct mc_cidr trusted[3];
extern struct listener_conf listeners[2];
extern char *blocked_countries[2];
extern struct config cfg;

/* What the rules load back as: by type name, then value. */
struct want_rule {
    enum fw_type type;
    const char *value;
};
extern const struct want_rule want_rules[5];

void die(const char *what, const char *detail);

/*
 * Makes tmpdir and parses the addresses config_load would have parsed;
 * store_fixture_teardown removes tmpdir when no check failed (failed is
 * the program's tap_failed) and keeps it otherwise.
 */
void store_fixture_setup(void);
void store_fixture_teardown(int failed);

/* ---- helpers ---- */

void path_in(char *out, const char *name);
/* A fresh directory (under tmpdir) holding nothing yet; the db path in it. */
void fresh_db(char *db, const char *name);
struct store *open_ok(const char *db);
struct store *open_seeded(const char *db);
bool str_same(const char *a, const char *b);
sqlite3 *raw_open(const char *path);
/* The first column of the first row of sql on a fresh raw connection; -1 on error. */
long long raw_int(const char *path, const char *sql);
/* Every row of the tables (without the rules when !rules), as text. */
void raw_dump(const char *path, bool rules, char *buf, size_t size);
bool addr_same(const struct mc_addr *a, const struct mc_addr *b);
/* Every field, policies in order. */
bool route_same(const struct route_conf *a, const struct route_conf *b);
const struct route_conf *route_named(const struct listener_conf *l, const char *hostname);
struct state *load_ok(struct store *st);
mode_t file_mode(const char *path);
void write_at(const char *path, off_t off, const void *buf, size_t len);

#endif
