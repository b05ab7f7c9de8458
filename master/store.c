/*
 * The SQLite store. Every SQL text lives in the store's files: the schema
 * in the migrations table below, the queries next to the one function
 * that runs each. Values are always bound as parameters, never written
 * into SQL.
 *
 * Error discipline: internal helpers return a STORE_* code and leave the
 * message in st->msg; each public function ends with store_end(), which
 * rolls back whatever transaction a failure left open and hands the
 * message out, so a failed call changes nothing.
 *
 * This file opens, checks, migrates and closes the database and holds the
 * helpers the other parts share; store_load.c reads the state,
 * store_mutate.c writes it, store_snapshot.c copies the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "master/store_impl.h"

/* STRICT tables (3.37) and RETURNING (3.35). */
#if SQLITE_VERSION_NUMBER < 3037000
#error "mc-proxy needs SQLite 3.37 or newer"
#endif

#define STORE_CHECK_ROWS 5 /* quick_check findings quoted in a message */

/*
 * The schema. Migration N is migrations[N - 1], applied once in its own
 * transaction and recorded in schema_migrations. Forward only: a released
 * entry is never edited; a change is a new entry at the end.
 */
static const char *const migrations[] = {
    /* 1: listeners, routes, L7 policies, firewall rules, seed marker. */
    "CREATE TABLE listeners ("
    " id INTEGER PRIMARY KEY,"
    " addr TEXT NOT NULL UNIQUE CHECK (addr <> ''),"
    " proxy_protocol INTEGER NOT NULL CHECK (proxy_protocol IN (0, 1)),"
    " max_connections INTEGER NOT NULL CHECK (max_connections BETWEEN 0 AND 4294967295)"
    ") STRICT;"
    "CREATE TABLE trusted_proxies ("
    " listener_id INTEGER NOT NULL REFERENCES listeners (id) ON DELETE CASCADE,"
    " position INTEGER NOT NULL,"
    " cidr TEXT NOT NULL,"
    " PRIMARY KEY (listener_id, position)"
    ") STRICT;"
    "CREATE TABLE routes ("
    " id INTEGER PRIMARY KEY,"
    " listener_id INTEGER NOT NULL REFERENCES listeners (id) ON DELETE CASCADE,"
    " hostname TEXT NOT NULL CHECK (hostname <> ''),"
    " backend TEXT NOT NULL,"
    " mode TEXT NOT NULL CHECK (mode IN ('l4', 'l7')),"
    " tls_cert TEXT,"
    " tls_key TEXT,"
    " backend_tls INTEGER NOT NULL CHECK (backend_tls IN (0, 1)),"
    " send_proxy_protocol INTEGER NOT NULL CHECK (send_proxy_protocol IN (0, 1)),"
    " UNIQUE (listener_id, hostname),"
    " CHECK (mode = 'l4' OR (tls_cert IS NOT NULL AND tls_key IS NOT NULL))"
    ") STRICT;"
    "CREATE TABLE l7_policies ("
    " id INTEGER PRIMARY KEY,"
    " route_id INTEGER NOT NULL REFERENCES routes (id) ON DELETE CASCADE,"
    " position INTEGER NOT NULL,"
    " type TEXT NOT NULL CHECK (type IN ('block_user_agent', 'require_header')),"
    " value TEXT NOT NULL CHECK (value <> ''),"
    " UNIQUE (route_id, position),"
    " UNIQUE (route_id, type, value)"
    ") STRICT;"
    "CREATE TABLE firewall_rules ("
    " id INTEGER PRIMARY KEY,"
    " type TEXT NOT NULL CHECK (type IN ('ip', 'cidr', 'country')),"
    " value TEXT NOT NULL CHECK (value <> ''),"
    " UNIQUE (type, value)"
    ") STRICT;"
    /* One row once seeded: the config seeds a database once, even if the
     * admin later removes every entry. */
    "CREATE TABLE seeded ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seeded_at TEXT NOT NULL"
    ") STRICT;",
};

#define SCHEMA_VERSION ((sqlite3_int64)MC_ARRAY_LEN(migrations))

char store_static_msg[STORE_MSG_MAX];

int store_fail(struct store *st, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    return code;
}

/* A failed SQLite call: a constraint is the caller's value, anything else the database's. */
int db_fail(struct store *st, int rc)
{
    int code = (rc & 0xff) == SQLITE_CONSTRAINT ? STORE_INVALID : STORE_ERROR;

    return store_fail(st, code, "%s: %s", st->op, sqlite3_errmsg(st->db));
}

int store_nomem(struct store *st)
{
    return store_fail(st, STORE_ERROR, "%s: out of memory", st->op);
}

/*
 * The statement for sql: the one kept for it when keep is set and it is
 * idle, else a new one, kept when keep is set and there is room. A kept
 * statement is marked in use until stmt_done, so a nested use of the same
 * sql gets a statement of its own instead of resetting the outer one.
 */
static sqlite3_stmt *stmt_prepare(struct store *st, const char *sql, bool keep)
{
    struct kept_stmt *k = NULL;
    sqlite3_stmt *q;
    unsigned i;
    int rc;

    for (i = 0; keep && i < st->n_kept; i++) {
        if (st->kept[i].sql == sql) {
            if (!st->kept[i].in_use) {
                st->kept[i].in_use = true;
                return st->kept[i].q;
            }
            keep = false;
        }
    }
    if (keep && st->n_kept < STORE_KEPT_MAX)
        k = &st->kept[st->n_kept];
    rc = sqlite3_prepare_v3(st->db, sql, -1, k != NULL ? SQLITE_PREPARE_PERSISTENT : 0, &q, NULL);
    if (rc != SQLITE_OK) {
        db_fail(st, rc);
        return NULL;
    }
    if (k != NULL) {
        *k = (struct kept_stmt){.sql = sql, .q = q, .in_use = true};
        st->n_kept++;
    }
    return q;
}

static sqlite3_stmt *stmt_vnew(struct store *st, const char *sql, bool keep, const char *types,
                               va_list ap)
{
    sqlite3_stmt *q = stmt_prepare(st, sql, keep);
    int rc = SQLITE_OK, i;

    if (q == NULL)
        return NULL;
    for (i = 0; rc == SQLITE_OK && types[i] != '\0'; i++) {
        switch (types[i]) {
        case 't':
            rc = sqlite3_bind_text(q, i + 1, va_arg(ap, const char *), -1, SQLITE_STATIC);
            break;
        case 'i':
            rc = sqlite3_bind_int(q, i + 1, va_arg(ap, int));
            break;
        case 'u':
            rc = sqlite3_bind_int64(q, i + 1, va_arg(ap, unsigned));
            break;
        case 'I':
            rc = sqlite3_bind_int64(q, i + 1, va_arg(ap, sqlite3_int64));
            break;
        default:
            rc = SQLITE_MISUSE;
            break;
        }
    }
    if (rc != SQLITE_OK) {
        store_fail(st, STORE_ERROR, "%s: cannot bind parameter %d: %s", st->op, i,
                   sqlite3_errstr(rc));
        stmt_done(st, q);
        return NULL;
    }
    return q;
}

/*
 * Prepares sql and binds its parameters ?1, ?2... from the arguments, one
 * per letter of types: 't' const char * (NULL binds NULL), 'i' int or
 * bool, 'u' unsigned, 'I' sqlite3_int64. Text is bound without a copy and
 * must outlive the statement's use. NULL with the error recorded on
 * failure; the stmt_* functions below take that NULL and return
 * STORE_ERROR, so a call can be written as stmt_run(st, stmt(st, ...)).
 * The statement ends with stmt_done (stmt_run and stmt_int call it).
 */
sqlite3_stmt *stmt(struct store *st, const char *sql, const char *types, ...)
{
    sqlite3_stmt *q;
    va_list ap;

    va_start(ap, types);
    q = stmt_vnew(st, sql, false, types, ap);
    va_end(ap);
    return q;
}

/*
 * stmt for a query run once per row (seeding, loading): compiling the SQL
 * costs far more than running it, so the statement is prepared on first
 * use and kept, stmt_done resets it, store_close finalizes it. sql must
 * be a string constant: its address is the key.
 */
sqlite3_stmt *stmt_kept(struct store *st, const char *sql, const char *types, ...)
{
    sqlite3_stmt *q;
    va_list ap;

    va_start(ap, types);
    q = stmt_vnew(st, sql, true, types, ap);
    va_end(ap);
    return q;
}

/* Ends a statement: a kept one is reset for its next use, another finalized. */
void stmt_done(struct store *st, sqlite3_stmt *q)
{
    for (unsigned i = 0; q != NULL && i < st->n_kept; i++) {
        if (st->kept[i].q == q) {
            sqlite3_reset(q);
            /* the bound text is the caller's and about to be freed */
            sqlite3_clear_bindings(q);
            st->kept[i].in_use = false;
            return;
        }
    }
    sqlite3_finalize(q);
}

/* Steps q: 1 with a row ready, 0 at its end, or a negative STORE_* code. */
int stmt_step(struct store *st, sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_fail(st, rc);
}

/* Runs q to its end, ignoring any row, and ends it (stmt_done). */
int stmt_run(struct store *st, sqlite3_stmt *q)
{
    int rc;

    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1)
        ;
    stmt_done(st, q);
    return rc;
}

/* Runs q and ends it: the first column of its first row in *v, or STORE_NOT_FOUND. */
int stmt_int(struct store *st, sqlite3_stmt *q, sqlite3_int64 *v)
{
    bool found = false;
    int rc;

    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if (!found)
            *v = sqlite3_column_int64(q, 0);
        found = true;
    }
    stmt_done(st, q);
    if (rc == 0 && !found)
        return STORE_NOT_FOUND;
    return rc;
}

/* A copy of text column i, NULL when it is NULL (or memory ran out). */
char *col_strdup(sqlite3_stmt *q, int i)
{
    const char *s = (const char *)sqlite3_column_text(q, i);

    return s != NULL ? strdup(s) : NULL;
}

/*
 * Grows arr (n elements of size bytes, grown by store_push only) by one
 * zeroed element; NULL when out of memory. The room doubles whenever n
 * reaches a power of two, so loading n rows reallocates log n times, not
 * n times.
 */
void *store_push(void *arr, unsigned n, size_t size)
{
    char *p = arr;

    if ((n & (n - 1)) == 0 && (p = reallocarray(arr, n == 0 ? 1 : 2 * (size_t)n, size)) == NULL)
        return NULL;
    memset(p + (size_t)n * size, 0, size);
    return p;
}

int store_exec(struct store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc);
}

/* Starts a public mutation: one write transaction, taken at once so that
 * a busy database fails here (after busy_timeout) rather than halfway. */
int store_begin(struct store *st, const char *op)
{
    st->op = op;
    return store_exec(st, "BEGIN IMMEDIATE");
}

/* Ends a public call: rolls back what a failure left open, hands out the message. */
int store_end(struct store *st, int rc, const char **err)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc != STORE_OK)
        *err = st->msg;
    return rc;
}

/* Commits when everything before succeeded; passes a failure through. */
int store_commit(struct store *st, int rc)
{
    return rc == STORE_OK ? store_exec(st, "COMMIT") : rc;
}

/*
 * PRAGMA quick_check: STORE_OK, or STORE_ERROR with a message that says
 * "corrupt" and quotes the first findings. A file that is not a database
 * at all fails the prepare with SQLITE_NOTADB, which is reported the same.
 */
int store_check(struct store *st, const char *path)
{
    sqlite3_stmt *q;
    size_t len = 0;
    unsigned rows = 0;
    int rc;

    rc = sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &q, NULL);
    while (q != NULL && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(q, 0);

        if (line == NULL || strcmp(line, "ok") == 0)
            continue;
        if (rows++ == 0)
            len = (size_t)snprintf(st->msg, sizeof(st->msg), "database %s is corrupt: %s", path,
                                   line);
        else if (rows <= STORE_CHECK_ROWS && len < sizeof(st->msg))
            len += (size_t)snprintf(st->msg + len, sizeof(st->msg) - len, "; %s", line);
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        bool corrupt = (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;

        store_fail(st, STORE_ERROR, "database %s %s: %s", path,
                   corrupt ? "is corrupt" : "cannot be checked", sqlite3_errmsg(st->db));
        rows = 1;
    }
    sqlite3_finalize(q);
    return rows == 0 ? STORE_OK : STORE_ERROR;
}

/* Runs a PRAGMA and checks the value it answers (case-insensitive). */
static int store_pragma(struct store *st, const char *sql, const char *want)
{
    sqlite3_stmt *q = stmt(st, sql, "");
    const char *got;
    int rc;

    if (q == NULL)
        return STORE_ERROR;
    rc = stmt_step(st, q);
    if (rc == 1) {
        got = (const char *)sqlite3_column_text(q, 0);
        rc = got != NULL && strcasecmp(got, want) == 0
                 ? STORE_OK
                 : store_fail(st, STORE_ERROR, "%s: %s answered %s, not %s", st->op, sql,
                              got != NULL ? got : "nothing", want);
    } else if (rc == 0) {
        rc = store_fail(st, STORE_ERROR, "%s: %s answered nothing", st->op, sql);
    }
    stmt_done(st, q);
    return rc;
}

/*
 * Applies the pending migrations, one transaction each. The version is
 * read inside the transaction that applies the next one, so two openers
 * cannot both apply it.
 */
static int store_migrate(struct store *st)
{
    sqlite3_int64 version;
    int rc;

    rc = store_exec(st, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY,"
                        " applied_at TEXT NOT NULL"
                        ") STRICT");
    for (;;) {
        if (rc == STORE_OK)
            rc = store_exec(st, "BEGIN IMMEDIATE");
        if (rc == STORE_OK)
            rc = stmt_int(st,
                          stmt(st, "SELECT coalesce(max(version), 0) FROM schema_migrations", ""),
                          &version);
        if (rc != STORE_OK)
            return rc;
        if (version > SCHEMA_VERSION)
            return store_fail(st, STORE_ERROR,
                              "database %s: schema version %lld is newer than this mc-proxy "
                              "supports (%lld)",
                              st->path, version, SCHEMA_VERSION);
        if (version == SCHEMA_VERSION)
            return store_exec(st, "COMMIT");
        rc = store_exec(st, migrations[version]);
        if (rc == STORE_OK)
            rc = stmt_run(st, stmt(st,
                                   "INSERT INTO schema_migrations (version, applied_at)"
                                   " VALUES (?1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                                   "I", version + 1));
        rc = store_commit(st, rc);
    }
}

/*
 * Creates the file 0600 if needed (SQLite would use 0644 less the umask)
 * and tightens an existing one that group or others can read. A symbolic
 * link is refused: the master opens it as root. An existing file is never
 * opened here: closing any descriptor of a file drops every POSIX lock
 * the process holds on it, those of another SQLite connection included.
 */
static int store_create(struct store *st)
{
    struct stat sb;
    int fd;

    if (lstat(st->path, &sb) < 0) {
        if (errno != ENOENT)
            return store_fail(st, STORE_ERROR, "cannot stat database %s: %s", st->path,
                              strerror(errno));
        fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return store_fail(st, STORE_ERROR, "cannot create database %s: %s", st->path,
                              strerror(errno));
        close(fd);
        return STORE_OK;
    }
    if (S_ISLNK(sb.st_mode))
        return store_fail(st, STORE_ERROR, "database %s is a symbolic link", st->path);
    if (!S_ISREG(sb.st_mode))
        return store_fail(st, STORE_ERROR, "database %s is not a regular file", st->path);
    if ((sb.st_mode & 077) != 0 && chmod(st->path, sb.st_mode & 0700) < 0)
        return store_fail(st, STORE_ERROR, "cannot chmod database %s: %s", st->path,
                          strerror(errno));
    return STORE_OK;
}

/*
 * One master per database: a POSIX write lock on PATH.lock, held while
 * the store is open. It is taken before anything touches the database,
 * the listening ports or the admin socket. The kernel drops it when the
 * process exits, however it exits, so a kill -9 leaves no stale lock; and
 * F_GETLK names the live holder, so no pid file can mislead. A lock of
 * its own file: SQLite's locks on the database would be dropped by any
 * close of it. Not inherited across fork: no child ever holds it.
 */
static int store_lock(struct store *st)
{
    char path[PATH_MAX];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    struct stat sb;

    if (snprintf(path, sizeof(path), "%s.lock", st->path) >= (int)sizeof(path))
        return store_fail(st, STORE_ERROR, "database path %s is too long", st->path);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (st->lock_fd < 0)
        return store_fail(st, STORE_ERROR, "database %s: cannot open its lock file %s: %s",
                          st->path, path,
                          errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    if (fstat(st->lock_fd, &sb) < 0 || !S_ISREG(sb.st_mode))
        return store_fail(st, STORE_ERROR, "database %s: its lock file %s is not a regular file",
                          st->path, path);
    /* bounded: the holder may exit between the two calls, and another take it */
    for (int tries = 0; fcntl(st->lock_fd, F_SETLK, &fl) < 0; tries++) {
        struct flock held = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

        if ((errno != EAGAIN && errno != EACCES) || tries == 3 ||
            fcntl(st->lock_fd, F_GETLK, &held) < 0)
            return store_fail(st, STORE_ERROR, "database %s: cannot lock %s: %s", st->path, path,
                              strerror(errno));
        if (held.l_type == F_UNLCK)
            continue;
        /* l_pid is 0 when the holder is in another pid namespace (a container) */
        if (held.l_pid > 0)
            return store_fail(st, STORE_ERROR,
                              "database %s is in use by another mc-proxy, pid %d (it holds %s)",
                              st->path, (int)held.l_pid, path);
        return store_fail(st, STORE_ERROR,
                          "database %s is in use by another mc-proxy in another pid namespace "
                          "(it holds %s)",
                          st->path, path);
    }
    /* no one but the master may lock it: a read lock would keep the next start out */
    if ((sb.st_mode & 077) != 0 && fchmod(st->lock_fd, sb.st_mode & 0700) < 0)
        return store_fail(st, STORE_ERROR, "database %s: cannot chmod its lock file %s: %s",
                          st->path, path, strerror(errno));
    return STORE_OK;
}

static int store_setup(struct store *st)
{
    int rc;

    st->op = "open database";
    rc = store_lock(st);
    if (rc == STORE_OK)
        rc = store_create(st);
    if (rc != STORE_OK)
        return rc;
    /* NOMUTEX: only the master's one thread uses the connection, and
     * locking it for every column read was a fifth of loading the state. */
    rc = sqlite3_open_v2(st->path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return store_fail(st, STORE_ERROR, "cannot open database %s: %s", st->path,
                          st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    /* No writable_schema or other ways to corrupt the file through SQL. */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

    rc = store_check(st, st->path);
    if (rc == STORE_OK)
        rc = store_pragma(st, "PRAGMA journal_mode = WAL", "wal");
    if (rc == STORE_OK)
        rc = store_exec(st, "PRAGMA foreign_keys = ON");
    if (rc == STORE_OK)
        rc = store_pragma(st, "PRAGMA foreign_keys", "1");
    /* FULL: a change acknowledged to the admin survives a power cut. */
    if (rc == STORE_OK)
        rc = store_exec(st, "PRAGMA synchronous = FULL");
    if (rc == STORE_OK)
        rc = store_migrate(st);
    return rc;
}

void store_release_memory(struct store *st)
{
    sqlite3_db_release_memory(st->db);
}

struct store *store_open(const char *path, const char **err)
{
    struct store *st = calloc(1, sizeof(*st));

    if (st == NULL || (st->path = strdup(path)) == NULL) {
        free(st);
        *err = "open database: out of memory";
        return NULL;
    }
    st->lock_fd = -1;
    if (store_setup(st) != STORE_OK) {
        if (st->db != NULL && !sqlite3_get_autocommit(st->db))
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        snprintf(store_static_msg, sizeof(store_static_msg), "%s", st->msg);
        *err = store_static_msg;
        store_close(st);
        return NULL;
    }
    return st;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    for (unsigned i = 0; i < st->n_kept; i++)
        sqlite3_finalize(st->kept[i].q);
    sqlite3_close(st->db);
    /* after the database is closed: the next master must not find it still open */
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free(st->path);
    free(st);
}
