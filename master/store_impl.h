/*
 * Private to the store, store*.c: the connection and the helpers every
 * part of it uses. The error discipline is described in store.c.
 */
#ifndef MC_STORE_IMPL_H
#define MC_STORE_IMPL_H

#include <sqlite3.h>

#include "common/mc.h"
#include "master/store.h"

#define STORE_BUSY_TIMEOUT_MS 2000
#define STORE_MSG_MAX         512
#define STORE_KEPT_MAX        16 /* statements kept prepared (stmt_kept); more are not kept */

struct kept_stmt {
    const char *sql; /* the key: the SQL string constant's address */
    sqlite3_stmt *q;
    bool in_use; /* handed out and not yet ended by stmt_done */
};

struct store {
    sqlite3 *db;
    char *path;
    int lock_fd;    /* PATH.lock, write-locked while the store is open (store_lock) */
    const char *op; /* what the current call does, prefixed to database errors */
    char msg[STORE_MSG_MAX];
    struct kept_stmt kept[STORE_KEPT_MAX];
    unsigned n_kept;
};

/* Messages of the calls that have no store to hold them (open, snapshot). */
extern char store_static_msg[STORE_MSG_MAX];

/* store.c: errors, statements, transactions, the integrity check. */
int store_fail(struct store *st, int code, const char *fmt, ...) MC_PRINTF(3, 4);
int db_fail(struct store *st, int rc);
int store_nomem(struct store *st);
sqlite3_stmt *stmt(struct store *st, const char *sql, const char *types, ...);
sqlite3_stmt *stmt_kept(struct store *st, const char *sql, const char *types, ...);
void stmt_done(struct store *st, sqlite3_stmt *q);
int stmt_step(struct store *st, sqlite3_stmt *q);
int stmt_run(struct store *st, sqlite3_stmt *q);
int stmt_int(struct store *st, sqlite3_stmt *q, sqlite3_int64 *v);
char *col_strdup(sqlite3_stmt *q, int i);
void *store_push(void *arr, unsigned n, size_t size);
int store_exec(struct store *st, const char *sql);
int store_begin(struct store *st, const char *op);
int store_end(struct store *st, int rc, const char **err);
int store_commit(struct store *st, int rc);
int store_check(struct store *st, const char *path);

/* store_mutate.c: the firewall rules of one type in the config. */
char **store_config_rules(const struct firewall_conf *fw, enum fw_type t, unsigned *n);

#endif
