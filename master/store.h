/*
 * The SQLite store: the only code that opens the database, and the
 * master the only process that holds it open. WAL mode, foreign keys on,
 * bounded busy_timeout, file mode 0600, numbered forward-only migrations.
 *
 * Every mutation is one transaction: it either commits whole or changes
 * nothing. Functions return STORE_OK, or a negative STORE_* code with a
 * message in *err (static or owned by the store; valid until the next
 * call) naming what was wrong.
 */
#ifndef MC_STORE_H
#define MC_STORE_H

#include <stdbool.h>

#include "common/config.h"
#include "master/state.h"

enum {
    STORE_OK = 0,
    STORE_ERROR = -1,     /* database failure (I/O, corruption, read-only, busy) */
    STORE_NOT_FOUND = -2, /* the named listener/route/rule/policy does not exist */
    STORE_INVALID = -3,   /* the value breaks a constraint (bad mode, duplicate, ...) */
};

struct store;

/*
 * Locks the database first: PATH.lock (created mode 0600) is write-locked
 * for as long as the store is open, and a database another process holds
 * is refused, naming that process's pid, before anything is touched.
 * Then opens (creating if needed, mode 0600) and checks the database: runs
 * PRAGMA quick_check (a corrupt file is refused), applies pending
 * migrations, refuses a schema newer than this binary knows. NULL with
 * *err set on failure.
 */
struct store *store_open(const char *path, const char **err);
void store_close(struct store *st);
/* Gives back SQLite's page cache (the start-up load filled it); it refills on use. */
void store_release_memory(struct store *st);

/*
 * True when the database holds no listener, route, rule or policy and was
 * never seeded: store_seed records that it ran, so a database the admin
 * emptied is not seeded again from the config.
 */
int store_is_empty(struct store *st, bool *empty, const char **err);
/* Seeds listeners, routes, policies and firewall rules from cfg in one
 * transaction. STORE_INVALID when the database was seeded already. */
int store_seed(struct store *st, const struct config *cfg, const char **err);
/* The whole state, freshly allocated (state_free). NULL with *err on failure. */
struct state *store_load(struct store *st, const char **err);
/*
 * How many of the config's listeners, routes, policies and rules differ
 * from the database's state db, as store_load gave it (present in one and
 * not the other, or with different values): the startup log says the
 * database wins over that many entries.
 */
int store_config_diff(struct store *st, const struct config *cfg, const struct state *db,
                      unsigned *n_diff, const char **err);

/*
 * Mutations. Inputs are already validated and normalised by the caller.
 * Adding a firewall rule or a policy that exists already succeeds and
 * changes nothing (AddFirewallRule / AddL7Policy answer with it either
 * way); store_policy_add appends after the route's last policy.
 */
int store_route_upsert(struct store *st, const char *listener, const struct route_conf *r,
                       const char **err);
int store_route_delete(struct store *st, const char *listener, const char *hostname,
                       const char **err);
int store_rule_add(struct store *st, enum fw_type type, const char *value, const char **err);
int store_rule_delete(struct store *st, enum fw_type type, const char *value, const char **err);
int store_listener_set_max(struct store *st, const char *listener, uint32_t max, const char **err);
int store_policy_add(struct store *st, const char *listener, const char *hostname,
                     const struct policy_conf *p, const char **err);
int store_policy_delete(struct store *st, const char *listener, const char *hostname,
                        const struct policy_conf *p, const char **err);

/*
 * VACUUM INTO out, or, when out is NULL, into
 * <dir of db>/backups/mc-proxy-YYYYMMDDTHHMMSSZ.db, keeping the newest
 * `keep` snapshots there (0: prune nothing; other files in backups/ are
 * never counted or removed). The file is created 0600 and must
 * not exist yet. Safe while a server has the database open.
 * The path written is returned in written (PATH_MAX bytes), empty when
 * no snapshot was made; a failure to prune keeps the snapshot and its path.
 */
int store_snapshot(const char *db_path, const char *out, unsigned keep, char *written,
                   const char **err);

#endif
