/*
 * The SQLite store. Every SQL text lives in this file: the schema in the
 * migrations table below, the queries next to the one function that runs
 * each. Values are always bound as parameters, never written into SQL.
 *
 * Error discipline: internal helpers return a STORE_* code and leave the
 * message in st->msg; each public function ends with store_end(), which
 * rolls back whatever transaction a failure left open and hands the
 * message out, so a failed call changes nothing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hostname.h"
#include "mc.h"
#include "store.h"

/* STRICT tables (3.37) and RETURNING (3.35). */
#if SQLITE_VERSION_NUMBER < 3037000
#error "mc-proxy needs SQLite 3.37 or newer"
#endif

#define STORE_BUSY_TIMEOUT_MS 2000
#define STORE_MSG_MAX         512
#define STORE_CHECK_ROWS      5 /* quick_check findings quoted in a message */
#define SNAPSHOT_PREFIX       "mc-proxy-"
#define SNAPSHOT_TS_LEN       16   /* YYYYMMDDTHHMMSSZ */
#define SNAPSHOT_MAX_SEQ      1000 /* -1 .. -999 after a name taken in the same second */

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

static const char *const route_mode_names[] = {
    [ROUTE_L4] = "l4",
    [ROUTE_L7] = "l7",
};

static const char *const policy_type_names[] = {
    [POLICY_BLOCK_USER_AGENT] = "block_user_agent",
    [POLICY_REQUIRE_HEADER] = "require_header",
};

struct store {
    sqlite3 *db;
    char *path;
    const char *op; /* what the current call does, prefixed to database errors */
    char msg[STORE_MSG_MAX];
};

/* Messages of the calls that have no store to hold them (open, snapshot). */
static char static_msg[STORE_MSG_MAX];

/* A snapshot file found in backups/, for pruning. */
struct snapshot {
    char ts[SNAPSHOT_TS_LEN + 1];
    unsigned seq;
    char name[NAME_MAX + 1];
};

static const char *name_of(const char *const *names, size_t n, unsigned v)
{
    return v < n ? names[v] : NULL;
}

/* The index of s in names, or -1. */
static int name_parse(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], s) == 0)
            return (int)i;
    }
    return -1;
}

static int store_fail(struct store *st, int code, const char *fmt, ...) MC_PRINTF(3, 4);

static int store_fail(struct store *st, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    return code;
}

/* A failed SQLite call: a constraint is the caller's value, anything else the database's. */
static int db_fail(struct store *st, int rc)
{
    int code = (rc & 0xff) == SQLITE_CONSTRAINT ? STORE_INVALID : STORE_ERROR;

    return store_fail(st, code, "%s: %s", st->op, sqlite3_errmsg(st->db));
}

static int nomem(struct store *st)
{
    return store_fail(st, STORE_ERROR, "%s: out of memory", st->op);
}

/*
 * Prepares sql and binds its parameters ?1, ?2... from the arguments, one
 * per letter of types: 't' const char * (NULL binds NULL), 'i' int or
 * bool, 'u' unsigned, 'I' sqlite3_int64. Text is bound without a copy and
 * must outlive the statement. NULL with the error recorded on failure;
 * the stmt_* functions below take that NULL and return STORE_ERROR, so a
 * call can be written as stmt_run(st, stmt(st, ...)).
 */
static sqlite3_stmt *stmt(struct store *st, const char *sql, const char *types, ...)
{
    sqlite3_stmt *q;
    va_list ap;
    int rc, i;

    rc = sqlite3_prepare_v2(st->db, sql, -1, &q, NULL);
    if (rc != SQLITE_OK) {
        db_fail(st, rc);
        return NULL;
    }
    va_start(ap, types);
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
    va_end(ap);
    if (rc != SQLITE_OK) {
        store_fail(st, STORE_ERROR, "%s: cannot bind parameter %d: %s", st->op, i,
                   sqlite3_errstr(rc));
        sqlite3_finalize(q);
        return NULL;
    }
    return q;
}

/* Steps q: 1 with a row ready, 0 at its end, or a negative STORE_* code. */
static int stmt_step(struct store *st, sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_fail(st, rc);
}

/* Runs q to its end, ignoring any row, and finalizes it. */
static int stmt_run(struct store *st, sqlite3_stmt *q)
{
    int rc;

    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1)
        ;
    sqlite3_finalize(q);
    return rc;
}

/* Runs q and finalizes it: the first column of its first row in *v, or STORE_NOT_FOUND. */
static int stmt_int(struct store *st, sqlite3_stmt *q, sqlite3_int64 *v)
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
    sqlite3_finalize(q);
    if (rc == 0 && !found)
        return STORE_NOT_FOUND;
    return rc;
}

/* A copy of text column i, NULL when it is NULL (or memory ran out). */
static char *col_strdup(sqlite3_stmt *q, int i)
{
    const char *s = (const char *)sqlite3_column_text(q, i);

    return s != NULL ? strdup(s) : NULL;
}

static int store_exec(struct store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc);
}

/* Starts a public mutation: one write transaction, taken at once so that
 * a busy database fails here (after busy_timeout) rather than halfway. */
static int store_begin(struct store *st, const char *op)
{
    st->op = op;
    return store_exec(st, "BEGIN IMMEDIATE");
}

/* Ends a public call: rolls back what a failure left open, hands out the message. */
static int store_end(struct store *st, int rc, const char **err)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc != STORE_OK)
        *err = st->msg;
    return rc;
}

/* Commits when everything before succeeded; passes a failure through. */
static int store_commit(struct store *st, int rc)
{
    return rc == STORE_OK ? store_exec(st, "COMMIT") : rc;
}

/*
 * PRAGMA quick_check: STORE_OK, or STORE_ERROR with a message that says
 * "corrupt" and quotes the first findings. A file that is not a database
 * at all fails the prepare with SQLITE_NOTADB, which is reported the same.
 */
static int store_check(struct store *st, const char *path)
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
    sqlite3_finalize(q);
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

static int store_setup(struct store *st)
{
    int rc;

    st->op = "open database";
    rc = store_create(st);
    if (rc != STORE_OK)
        return rc;
    rc = sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
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

struct store *store_open(const char *path, const char **err)
{
    struct store *st = calloc(1, sizeof(*st));

    if (st == NULL || (st->path = strdup(path)) == NULL) {
        free(st);
        *err = "open database: out of memory";
        return NULL;
    }
    if (store_setup(st) != STORE_OK) {
        if (st->db != NULL && !sqlite3_get_autocommit(st->db))
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        snprintf(static_msg, sizeof(static_msg), "%s", st->msg);
        *err = static_msg;
        store_close(st);
        return NULL;
    }
    return st;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    sqlite3_close(st->db);
    free(st->path);
    free(st);
}

/* The firewall rules of one type in the config. */
static char **config_rules(const struct firewall_conf *fw, enum fw_type t, unsigned *n)
{
    switch (t) {
    case FW_IP:
        *n = fw->n_blocked_ips;
        return fw->blocked_ips;
    case FW_CIDR:
        *n = fw->n_blocked_cidrs;
        return fw->blocked_cidrs;
    case FW_COUNTRY:
        *n = fw->n_blocked_countries;
        return fw->blocked_countries;
    }
    *n = 0;
    return NULL;
}

int store_is_empty(struct store *st, bool *empty, const char **err)
{
    sqlite3_int64 v = 0;
    int rc;

    st->op = "check for an empty database";
    /* Routes and policies cannot exist without a listener (foreign keys). */
    rc = stmt_int(st,
                  stmt(st,
                       "SELECT NOT EXISTS (SELECT 1 FROM seeded)"
                       " AND NOT EXISTS (SELECT 1 FROM listeners)"
                       " AND NOT EXISTS (SELECT 1 FROM firewall_rules)",
                       ""),
                  &v);
    *empty = v != 0;
    return store_end(st, rc, err);
}

/* "10.0.0.0/8" from a parsed CIDR, or -1 when its family is unknown. */
static int cidr_format(const struct mc_cidr *c, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];

    if ((c->family != AF_INET && c->family != AF_INET6) ||
        inet_ntop(c->family, c->addr, ip, sizeof(ip)) == NULL)
        return -1;
    snprintf(buf, size, "%s/%u", ip, (unsigned)c->prefix);
    return 0;
}

/* Appends a policy after the route's last one. */
static int policy_append(struct store *st, sqlite3_int64 route_id, const struct policy_conf *p)
{
    return stmt_run(st, stmt(st,
                             "INSERT INTO l7_policies (route_id, position, type, value)"
                             " SELECT ?1, coalesce(max(position) + 1, 0), ?2, ?3"
                             " FROM l7_policies WHERE route_id = ?1",
                             "Itt", route_id,
                             name_of(policy_type_names, MC_ARRAY_LEN(policy_type_names), p->type),
                             p->value));
}

/*
 * Inserts the route, or rewrites every field of the one with its hostname
 * (keeping its id), and replaces its policies with r's, in order. An
 * unknown mode or policy type binds NULL, which the schema refuses.
 */
static int route_write(struct store *st, sqlite3_int64 listener_id, const struct route_conf *r)
{
    sqlite3_int64 id;
    int rc;

    rc = stmt_int(
        st,
        stmt(st,
             "INSERT INTO routes (listener_id, hostname, backend, mode, tls_cert, tls_key,"
             " backend_tls, send_proxy_protocol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
             " ON CONFLICT (listener_id, hostname) DO UPDATE SET backend = excluded.backend,"
             " mode = excluded.mode, tls_cert = excluded.tls_cert, tls_key = excluded.tls_key,"
             " backend_tls = excluded.backend_tls,"
             " send_proxy_protocol = excluded.send_proxy_protocol"
             " RETURNING id",
             "Itttttii", listener_id, r->hostname, r->backend,
             name_of(route_mode_names, MC_ARRAY_LEN(route_mode_names), r->mode), r->tls_cert,
             r->tls_key, r->backend_tls, r->send_proxy_protocol),
        &id);
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM l7_policies WHERE route_id = ?1", "I", id));
    for (unsigned i = 0; rc == STORE_OK && i < r->n_policies; i++)
        rc = policy_append(st, id, &r->policies[i]);
    return rc;
}

static int listener_insert(struct store *st, const struct listener_conf *l)
{
    char cidr[INET6_ADDRSTRLEN + sizeof("/128")];
    sqlite3_int64 id;
    unsigned i;
    int rc;

    rc = stmt_int(st,
                  stmt(st,
                       "INSERT INTO listeners (addr, proxy_protocol, max_connections)"
                       " VALUES (?1, ?2, ?3) RETURNING id",
                       "tiu", l->addr, l->proxy_protocol, l->max_connections),
                  &id);
    for (i = 0; rc == STORE_OK && i < l->n_trusted_proxies; i++) {
        if (cidr_format(&l->trusted_proxies[i], cidr, sizeof(cidr)) < 0)
            return store_fail(st, STORE_INVALID, "%s: listener %s: trusted proxy %u is invalid",
                              st->op, l->addr, i);
        rc = stmt_run(st, stmt(st,
                               "INSERT INTO trusted_proxies (listener_id, position, cidr)"
                               " VALUES (?1, ?2, ?3)",
                               "Iut", id, i, cidr));
    }
    for (i = 0; rc == STORE_OK && i < l->n_routes; i++)
        rc = route_write(st, id, &l->routes[i]);
    return rc;
}

/* Adding a rule that exists already succeeds and changes nothing:
 * AddFirewallRule answers with the rule either way. */
static int rule_insert(struct store *st, enum fw_type type, const char *value)
{
    return stmt_run(st, stmt(st,
                             "INSERT INTO firewall_rules (type, value) VALUES (?1, ?2)"
                             " ON CONFLICT (type, value) DO NOTHING",
                             "tt", fw_type_name(type), value));
}

int store_seed(struct store *st, const struct config *cfg, const char **err)
{
    static const enum fw_type types[] = {FW_IP, FW_CIDR, FW_COUNTRY};
    unsigned i, j, n;
    char **values;
    int rc;

    rc = store_begin(st, "seed database");
    if (rc == STORE_OK) {
        rc = stmt_run(st, stmt(st,
                               "INSERT INTO seeded (id, seeded_at)"
                               " VALUES (1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                               ""));
        if (rc == STORE_INVALID)
            rc = store_fail(st, rc, "%s: the database was seeded already", st->op);
    }
    for (i = 0; rc == STORE_OK && i < cfg->n_listeners; i++)
        rc = listener_insert(st, &cfg->listeners[i]);
    for (i = 0; rc == STORE_OK && i < MC_ARRAY_LEN(types); i++) {
        values = config_rules(&cfg->firewall, types[i], &n);
        for (j = 0; rc == STORE_OK && j < n; j++)
            rc = rule_insert(st, types[i], values[j]);
    }
    return store_end(st, store_commit(st, rc), err);
}

/* Grows arr (n elements of size bytes) by one zeroed element; NULL when out of memory. */
static void *push(void *arr, unsigned n, size_t size)
{
    char *p = reallocarray(arr, (size_t)n + 1, size);

    if (p != NULL)
        memset(p + (size_t)n * size, 0, size);
    return p;
}

static int load_trusted(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct mc_cidr *c;
    const char *text, *perr;
    int rc;

    q = stmt(st, "SELECT cidr FROM trusted_proxies WHERE listener_id = ?1 ORDER BY position", "I",
             listener_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((c = push(l->trusted_proxies, l->n_trusted_proxies, sizeof(*c))) == NULL) {
            rc = nomem(st);
            break;
        }
        l->trusted_proxies = c;
        c = &c[l->n_trusted_proxies++];
        text = (const char *)sqlite3_column_text(q, 0);
        if (text == NULL) {
            rc = nomem(st);
            break;
        }
        if (addr_parse_cidr(text, false, c, &perr) < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: trusted_proxies of listener %s: '%s': %s", st->op,
                            l->addr, text, perr);
            break;
        }
    }
    sqlite3_finalize(q);
    return rc;
}

static int load_policies(struct store *st, sqlite3_int64 route_id, struct route_conf *r)
{
    sqlite3_stmt *q;
    struct policy_conf *p;
    const char *type;
    int rc, t;

    q = stmt(st, "SELECT id, type, value FROM l7_policies WHERE route_id = ?1 ORDER BY position",
             "I", route_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((p = push(r->policies, r->n_policies, sizeof(*p))) == NULL) {
            rc = nomem(st);
            break;
        }
        r->policies = p;
        p = &p[r->n_policies++];
        type = (const char *)sqlite3_column_text(q, 1);
        if (type == NULL || (p->value = col_strdup(q, 2)) == NULL) {
            rc = nomem(st);
            break;
        }
        t = name_parse(policy_type_names, MC_ARRAY_LEN(policy_type_names), type);
        if (t < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: l7_policies row %lld: unknown type '%s'", st->op,
                            sqlite3_column_int64(q, 0), type);
            break;
        }
        p->type = (enum policy_type)t;
    }
    sqlite3_finalize(q);
    return rc;
}

/* Fills r from a routes row (id, hostname, backend, mode, tls_cert, tls_key,
 * backend_tls, send_proxy_protocol) and loads its policies. */
static int load_route(struct store *st, sqlite3_stmt *q, const char *listener, struct route_conf *r)
{
    char norm[MC_HOSTNAME_MAX + 1];
    sqlite3_int64 id = sqlite3_column_int64(q, 0);
    const char *mode, *perr = NULL;
    int m;

    r->hostname = col_strdup(q, 1);
    r->backend = col_strdup(q, 2);
    mode = (const char *)sqlite3_column_text(q, 3);
    if (r->hostname == NULL || r->backend == NULL || mode == NULL)
        return nomem(st);
    if (sqlite3_column_type(q, 4) != SQLITE_NULL && (r->tls_cert = col_strdup(q, 4)) == NULL)
        return nomem(st);
    if (sqlite3_column_type(q, 5) != SQLITE_NULL && (r->tls_key = col_strdup(q, 5)) == NULL)
        return nomem(st);
    r->backend_tls = sqlite3_column_int(q, 6) != 0;
    r->send_proxy_protocol = sqlite3_column_int(q, 7) != 0;

    m = name_parse(route_mode_names, MC_ARRAY_LEN(route_mode_names), mode);
    if (hostname_normalize_pattern(r->hostname, strlen(r->hostname), norm) < 0 ||
        strcmp(norm, r->hostname) != 0)
        perr = "hostname is not a normalised name";
    else if (addr_parse_hostport(r->backend, &r->backend_addr, &perr) < 0)
        ; /* perr set */
    else if (m < 0)
        perr = "unknown mode";
    if (perr != NULL)
        return store_fail(st, STORE_ERROR, "%s: routes row %lld (%s on listener %s): %s", st->op,
                          id, r->hostname, listener, perr);
    r->mode = (enum route_mode)m;
    return load_policies(st, id, r);
}

static int load_routes(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct route_conf *r;
    int rc;

    q = stmt(st,
             "SELECT id, hostname, backend, mode, tls_cert, tls_key, backend_tls,"
             " send_proxy_protocol FROM routes WHERE listener_id = ?1 ORDER BY hostname",
             "I", listener_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((r = push(l->routes, l->n_routes, sizeof(*r))) == NULL) {
            rc = nomem(st);
            break;
        }
        l->routes = r;
        rc = load_route(st, q, l->addr, &r[l->n_routes++]);
        if (rc != STORE_OK)
            break;
    }
    sqlite3_finalize(q);
    return rc;
}

static int load_listeners(struct store *st, struct state *s)
{
    sqlite3_stmt *q;
    struct listener_conf *l;
    sqlite3_int64 id;
    const char *perr;
    int rc;

    q = stmt(st, "SELECT id, addr, proxy_protocol, max_connections FROM listeners ORDER BY addr",
             "");
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((l = push(s->listeners, s->n_listeners, sizeof(*l))) == NULL) {
            rc = nomem(st);
            break;
        }
        s->listeners = l;
        l = &l[s->n_listeners++];
        id = sqlite3_column_int64(q, 0);
        if ((l->addr = col_strdup(q, 1)) == NULL) {
            rc = nomem(st);
            break;
        }
        if (addr_parse_bind(l->addr, &l->bind, &perr) < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: listeners row %lld (addr '%s'): %s", st->op, id,
                            l->addr, perr);
            break;
        }
        l->proxy_protocol = sqlite3_column_int(q, 2) != 0;
        /* The schema keeps it within 0..UINT32_MAX. */
        l->max_connections = (uint32_t)sqlite3_column_int64(q, 3);
        rc = load_trusted(st, id, l);
        if (rc == STORE_OK)
            rc = load_routes(st, id, l);
        if (rc != STORE_OK)
            break;
    }
    sqlite3_finalize(q);
    return rc;
}

/* Why a firewall rule's value is unusable, or NULL when it is fine. */
static const char *rule_value_error(enum fw_type t, const char *v)
{
    struct mc_cidr c;
    const char *perr = NULL;

    switch (t) {
    case FW_IP:
        if (strchr(v, '/') != NULL || addr_parse_cidr(v, true, &c, &perr) < 0)
            return "not an IP address";
        return NULL;
    case FW_CIDR:
        return addr_parse_cidr(v, false, &c, &perr) < 0 ? perr : NULL;
    case FW_COUNTRY:
        if (strlen(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z')
            return "not a two-letter upper-case country code";
        return NULL;
    }
    return "unknown type";
}

static int load_rules(struct store *st, struct state *s)
{
    sqlite3_stmt *q;
    struct fw_rule *r;
    const char *type, *perr;
    int rc, t;

    q = stmt(st, "SELECT id, type, value FROM firewall_rules ORDER BY type, value", "");
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((r = push(s->rules, s->n_rules, sizeof(*r))) == NULL) {
            rc = nomem(st);
            break;
        }
        s->rules = r;
        r = &r[s->n_rules++];
        type = (const char *)sqlite3_column_text(q, 1);
        if (type == NULL || (r->value = col_strdup(q, 2)) == NULL) {
            rc = nomem(st);
            break;
        }
        t = fw_type_parse(type);
        perr = t < 0 ? "unknown type" : rule_value_error((enum fw_type)t, r->value);
        if (perr != NULL) {
            rc = store_fail(st, STORE_ERROR, "%s: firewall_rules row %lld (%s %s): %s", st->op,
                            sqlite3_column_int64(q, 0), type, r->value, perr);
            break;
        }
        r->type = (enum fw_type)t;
    }
    sqlite3_finalize(q);
    return rc;
}

struct state *store_load(struct store *st, const char **err)
{
    struct state *s = calloc(1, sizeof(*s));
    int rc;

    st->op = "load state";
    if (s == NULL) {
        store_end(st, nomem(st), err);
        return NULL;
    }
    /* One read transaction: every table from the same commit. */
    rc = store_exec(st, "BEGIN");
    if (rc == STORE_OK)
        rc = load_listeners(st, s);
    if (rc == STORE_OK)
        rc = load_rules(st, s);
    if (store_end(st, store_commit(st, rc), err) != STORE_OK) {
        state_free(s);
        return NULL;
    }
    return s;
}

static const struct listener_conf *find_listener(const struct listener_conf *ls, unsigned n,
                                                 const char *addr)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(ls[i].addr, addr) == 0)
            return &ls[i];
    }
    return NULL;
}

static const struct route_conf *find_route(const struct listener_conf *l, const char *hostname)
{
    for (unsigned i = 0; i < l->n_routes; i++) {
        if (strcmp(l->routes[i].hostname, hostname) == 0)
            return &l->routes[i];
    }
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool cidr_eq(const struct mc_cidr *a, const struct mc_cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

/* How many of a's trusted proxies b lacks. */
static unsigned cidrs_missing(const struct listener_conf *a, const struct listener_conf *b)
{
    unsigned n = 0, i, j;

    for (i = 0; i < a->n_trusted_proxies; i++) {
        for (j = 0; j < b->n_trusted_proxies; j++) {
            if (cidr_eq(&a->trusted_proxies[i], &b->trusted_proxies[j]))
                break;
        }
        n += j == b->n_trusted_proxies;
    }
    return n;
}

/* How many of a's policies b lacks (policies compare as a set). */
static unsigned policies_missing(const struct route_conf *a, const struct route_conf *b)
{
    unsigned n = 0, i, j;

    for (i = 0; i < a->n_policies; i++) {
        for (j = 0; j < b->n_policies; j++) {
            if (a->policies[i].type == b->policies[j].type &&
                str_eq(a->policies[i].value, b->policies[j].value))
                break;
        }
        n += j == b->n_policies;
    }
    return n;
}

static bool route_differs(const struct route_conf *a, const struct route_conf *b)
{
    return !str_eq(a->backend, b->backend) || a->mode != b->mode ||
           !str_eq(a->tls_cert, b->tls_cert) || !str_eq(a->tls_key, b->tls_key) ||
           a->backend_tls != b->backend_tls || a->send_proxy_protocol != b->send_proxy_protocol;
}

/* Differences between the routes of one listener on both sides. */
static unsigned routes_diff(const struct listener_conf *a, const struct listener_conf *b)
{
    const struct route_conf *r, *o;
    unsigned n = 0, i;

    for (i = 0; i < a->n_routes; i++) {
        r = &a->routes[i];
        if ((o = find_route(b, r->hostname)) == NULL)
            n++;
        else
            n += route_differs(r, o) + policies_missing(r, o) + policies_missing(o, r);
    }
    for (i = 0; i < b->n_routes; i++)
        n += find_route(a, b->routes[i].hostname) == NULL;
    return n;
}

static bool listener_differs(const struct listener_conf *a, const struct listener_conf *b)
{
    return a->proxy_protocol != b->proxy_protocol || a->max_connections != b->max_connections ||
           cidrs_missing(a, b) != 0 || cidrs_missing(b, a) != 0;
}

static bool value_in(char **values, unsigned n, const char *v)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(values[i], v) == 0)
            return true;
    }
    return false;
}

static bool rule_in_state(const struct state *s, enum fw_type t, const char *v)
{
    for (unsigned i = 0; i < s->n_rules; i++) {
        if (s->rules[i].type == t && strcmp(s->rules[i].value, v) == 0)
            return true;
    }
    return false;
}

static unsigned rules_diff(const struct firewall_conf *fw, const struct state *s)
{
    static const enum fw_type types[] = {FW_IP, FW_CIDR, FW_COUNTRY};
    unsigned n = 0, i, j, nv;
    char **values;

    for (i = 0; i < MC_ARRAY_LEN(types); i++) {
        values = config_rules(fw, types[i], &nv);
        for (j = 0; j < nv; j++)
            n += !rule_in_state(s, types[i], values[j]);
    }
    for (i = 0; i < s->n_rules; i++) {
        values = config_rules(fw, s->rules[i].type, &nv);
        n += !value_in(values, nv, s->rules[i].value);
    }
    return n;
}

/*
 * Counts each difference once, at the outermost entry where it shows: a
 * listener on one side only is one (its routes are not counted again), a
 * listener on both with other settings is one plus its route differences;
 * likewise a route on one side only, or on both with other fields, is one,
 * plus one per policy on one side only; and one per rule on one side only.
 */
int store_config_diff(struct store *st, const struct config *cfg, unsigned *n_diff,
                      const char **err)
{
    const struct listener_conf *l, *d;
    struct state *s;
    unsigned n = 0, i;

    s = store_load(st, err);
    if (s == NULL)
        return STORE_ERROR;
    for (i = 0; i < cfg->n_listeners; i++) {
        l = &cfg->listeners[i];
        if ((d = find_listener(s->listeners, s->n_listeners, l->addr)) == NULL)
            n++;
        else
            n += listener_differs(l, d) + routes_diff(l, d);
    }
    for (i = 0; i < s->n_listeners; i++)
        n += find_listener(cfg->listeners, cfg->n_listeners, s->listeners[i].addr) == NULL;
    n += rules_diff(&cfg->firewall, s);
    state_free(s);
    *n_diff = n;
    return STORE_OK;
}

/* The id of a listener, or STORE_NOT_FOUND with a message naming it. */
static int listener_id(struct store *st, const char *addr, sqlite3_int64 *id)
{
    int rc = stmt_int(st, stmt(st, "SELECT id FROM listeners WHERE addr = ?1", "t", addr), id);

    if (rc == STORE_NOT_FOUND)
        store_fail(st, rc, "listener %s not found", addr);
    return rc;
}

static int route_id(struct store *st, const char *listener, const char *hostname, sqlite3_int64 *id)
{
    sqlite3_int64 lid;
    int rc = listener_id(st, listener, &lid);

    if (rc != STORE_OK)
        return rc;
    rc = stmt_int(st,
                  stmt(st, "SELECT id FROM routes WHERE listener_id = ?1 AND hostname = ?2", "It",
                       lid, hostname),
                  id);
    if (rc == STORE_NOT_FOUND)
        store_fail(st, rc, "route %s on listener %s not found", hostname, listener);
    return rc;
}

int store_route_upsert(struct store *st, const char *listener, const struct route_conf *r,
                       const char **err)
{
    sqlite3_int64 lid;
    int rc = store_begin(st, "upsert route");

    if (rc == STORE_OK)
        rc = listener_id(st, listener, &lid);
    if (rc == STORE_OK)
        rc = route_write(st, lid, r);
    return store_end(st, store_commit(st, rc), err);
}

int store_route_delete(struct store *st, const char *listener, const char *hostname,
                       const char **err)
{
    sqlite3_int64 id;
    int rc = store_begin(st, "delete route");

    if (rc == STORE_OK)
        rc = route_id(st, listener, hostname, &id);
    /* Its policies go with it (ON DELETE CASCADE). */
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM routes WHERE id = ?1", "I", id));
    return store_end(st, store_commit(st, rc), err);
}

int store_rule_add(struct store *st, enum fw_type type, const char *value, const char **err)
{
    int rc = store_begin(st, "add firewall rule");

    if (rc == STORE_OK)
        rc = rule_insert(st, type, value);
    return store_end(st, store_commit(st, rc), err);
}

int store_rule_delete(struct store *st, enum fw_type type, const char *value, const char **err)
{
    int rc = store_begin(st, "delete firewall rule");

    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM firewall_rules WHERE type = ?1 AND value = ?2",
                               "tt", fw_type_name(type), value));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "firewall rule %s %s not found",
                        fw_type_name(type) != NULL ? fw_type_name(type) : "?", value);
    return store_end(st, store_commit(st, rc), err);
}

int store_listener_set_max(struct store *st, const char *listener, uint32_t max, const char **err)
{
    int rc = store_begin(st, "set listener max_connections");

    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "UPDATE listeners SET max_connections = ?1 WHERE addr = ?2",
                               "ut", (unsigned)max, listener));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "listener %s not found", listener);
    return store_end(st, store_commit(st, rc), err);
}

/* Adding a policy the route has already succeeds and leaves it in its place. */
int store_policy_add(struct store *st, const char *listener, const char *hostname,
                     const struct policy_conf *p, const char **err)
{
    const char *type = name_of(policy_type_names, MC_ARRAY_LEN(policy_type_names), p->type);
    sqlite3_int64 rid, pid;
    int rc = store_begin(st, "add l7 policy");

    if (rc == STORE_OK)
        rc = route_id(st, listener, hostname, &rid);
    if (rc == STORE_OK) {
        rc = stmt_int(st,
                      stmt(st,
                           "SELECT id FROM l7_policies"
                           " WHERE route_id = ?1 AND type = ?2 AND value = ?3",
                           "Itt", rid, type, p->value),
                      &pid);
        if (rc == STORE_NOT_FOUND)
            rc = policy_append(st, rid, p);
    }
    return store_end(st, store_commit(st, rc), err);
}

int store_policy_delete(struct store *st, const char *listener, const char *hostname,
                        const struct policy_conf *p, const char **err)
{
    const char *type = name_of(policy_type_names, MC_ARRAY_LEN(policy_type_names), p->type);
    sqlite3_int64 rid;
    int rc = store_begin(st, "delete l7 policy");

    if (rc == STORE_OK)
        rc = route_id(st, listener, hostname, &rid);
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st,
                               "DELETE FROM l7_policies"
                               " WHERE route_id = ?1 AND type = ?2 AND value = ?3",
                               "Itt", rid, type, p->value));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "l7 policy %s %s on route %s not found",
                        type != NULL ? type : "?", p->value, hostname);
    return store_end(st, store_commit(st, rc), err);
}

/* Creates path empty and 0600, so the snapshot is never readable by others
 * (VACUUM INTO fills an existing empty file and keeps its mode). */
static int snapshot_reserve(struct store *st, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0)
        return store_fail(st, errno == EEXIST ? STORE_INVALID : STORE_ERROR, "cannot create %s: %s",
                          path, strerror(errno));
    close(fd);
    return STORE_OK;
}

/* <dir of db_path>/backups, created 0700 when missing. */
static int backups_dir(struct store *st, const char *db_path, char *dir)
{
    const char *slash = strrchr(db_path, '/');
    int len;

    if (slash == NULL)
        len = snprintf(dir, PATH_MAX, "backups");
    else if (slash == db_path)
        len = snprintf(dir, PATH_MAX, "/backups");
    else
        len = snprintf(dir, PATH_MAX, "%.*s/backups", (int)(slash - db_path), db_path);
    if (len < 0 || len >= PATH_MAX)
        return store_fail(st, STORE_ERROR, "database path %s is too long", db_path);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return store_fail(st, STORE_ERROR, "cannot create %s: %s", dir, strerror(errno));
    return STORE_OK;
}

/* Reserves dir/mc-proxy-<UTC time>.db, or -1, -2... when that name is taken. */
static int snapshot_name_reserve(struct store *st, const char *dir, char *path)
{
    char ts[SNAPSHOT_TS_LEN + 1];
    time_t now = time(NULL);
    struct tm tm;
    int rc = STORE_INVALID, len;

    if (gmtime_r(&now, &tm) == NULL || strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm) == 0)
        return store_fail(st, STORE_ERROR, "cannot format the current time");
    for (unsigned seq = 0; rc == STORE_INVALID && seq < SNAPSHOT_MAX_SEQ; seq++) {
        if (seq == 0)
            len = snprintf(path, PATH_MAX, "%s/" SNAPSHOT_PREFIX "%s.db", dir, ts);
        else
            len = snprintf(path, PATH_MAX, "%s/" SNAPSHOT_PREFIX "%s-%u.db", dir, ts, seq);
        if (len < 0 || len >= PATH_MAX)
            return store_fail(st, STORE_ERROR, "backup directory %s: path too long", dir);
        rc = snapshot_reserve(st, path);
    }
    return rc;
}

/* Parses the names snapshots get: "mc-proxy-YYYYMMDDTHHMMSSZ[-N].db". */
static bool snapshot_parse(const char *name, struct snapshot *out)
{
    static const char ts_pattern[] = "ddddddddTddddddZ"; /* d: a digit */
    const char *p = name + strlen(SNAPSHOT_PREFIX);
    unsigned long seq = 0;
    char *end;

    if (strncmp(name, SNAPSHOT_PREFIX, strlen(SNAPSHOT_PREFIX)) != 0 ||
        strlen(name) >= sizeof(out->name))
        return false;
    for (int i = 0; i < SNAPSHOT_TS_LEN; i++) {
        if (ts_pattern[i] == 'd' ? p[i] < '0' || p[i] > '9' : p[i] != ts_pattern[i])
            return false;
    }
    memcpy(out->ts, p, SNAPSHOT_TS_LEN);
    out->ts[SNAPSHOT_TS_LEN] = '\0';
    p += SNAPSHOT_TS_LEN;
    if (p[0] == '-') {
        if (p[1] < '1' || p[1] > '9')
            return false;
        seq = strtoul(p + 1, &end, 10);
        if (seq >= SNAPSHOT_MAX_SEQ)
            return false;
        p = end;
    }
    if (strcmp(p, ".db") != 0)
        return false;
    out->seq = (unsigned)seq;
    memcpy(out->name, name, strlen(name) + 1);
    return true;
}

/* Newest first. */
static int snapshot_cmp(const void *a, const void *b)
{
    const struct snapshot *x = a, *y = b;
    int c = strcmp(y->ts, x->ts);

    if (c != 0)
        return c;
    return y->seq < x->seq ? -1 : y->seq > x->seq;
}

/*
 * Removes all but the newest keep snapshots in dir, the one just written
 * (newest_path) always among those kept, even if a clock set back makes
 * its name sort older. Files with other names are left alone.
 */
static int snapshot_prune(struct store *st, const char *dir, unsigned keep, const char *newest_path)
{
    const char *newest = strrchr(newest_path, '/') + 1;
    struct snapshot *snaps = NULL, *p;
    unsigned n = 0, kept = 1, i;
    struct dirent *de;
    int rc = STORE_OK;
    DIR *d;

    if ((d = opendir(dir)) == NULL)
        return store_fail(st, STORE_ERROR, "cannot read %s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        struct snapshot one;

        if (!snapshot_parse(de->d_name, &one) || strcmp(de->d_name, newest) == 0)
            continue;
        if ((p = push(snaps, n, sizeof(*snaps))) == NULL) {
            rc = nomem(st);
            break;
        }
        snaps = p;
        snaps[n++] = one;
    }
    if (rc == STORE_OK && n > 1)
        qsort(snaps, n, sizeof(*snaps), snapshot_cmp);
    for (i = 0; rc == STORE_OK && i < n; i++) {
        if (kept < keep)
            kept++;
        else if (unlinkat(dirfd(d), snaps[i].name, 0) < 0 && errno != ENOENT)
            rc = store_fail(st, STORE_ERROR, "cannot remove old snapshot %s/%s: %s", dir,
                            snaps[i].name, strerror(errno));
    }
    closedir(d);
    free(snaps);
    return rc;
}

/* Opens path read-only as st's connection. */
static int snapshot_open(struct store *st, const char *path)
{
    int rc;

    rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK)
        return store_fail(st, STORE_ERROR, "cannot open %s: %s", path,
                          st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    return STORE_OK;
}

/* Copies db_path into out (reserved, empty) through a read-only connection,
 * then checks the copy. VACUUM INTO reads one snapshot of a WAL database,
 * so a server writing meanwhile is neither blocked nor seen half-way. */
static int snapshot_write(struct store *st, const char *db_path, const char *out)
{
    struct store copy = {.op = "check snapshot"};
    int rc;

    rc = snapshot_open(st, db_path);
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "VACUUM INTO ?1", "t", out));
    sqlite3_close(st->db);
    st->db = NULL;
    if (rc != STORE_OK)
        return rc;
    rc = snapshot_open(&copy, out);
    if (rc == STORE_OK)
        rc = store_check(&copy, out);
    sqlite3_close(copy.db);
    if (rc != STORE_OK)
        snprintf(st->msg, sizeof(st->msg), "%s", copy.msg);
    return rc;
}

int store_snapshot(const char *db_path, const char *out, unsigned keep, char *written,
                   const char **err)
{
    struct store st = {.op = "copy database"};
    char dir[PATH_MAX];
    int rc;

    written[0] = '\0';
    if (out != NULL) {
        if (snprintf(written, PATH_MAX, "%s", out) >= PATH_MAX)
            rc = store_fail(&st, STORE_ERROR, "snapshot path %s is too long", out);
        else
            rc = snapshot_reserve(&st, written);
    } else {
        rc = backups_dir(&st, db_path, dir);
        if (rc == STORE_OK)
            rc = snapshot_name_reserve(&st, dir, written);
    }
    if (rc == STORE_OK) {
        rc = snapshot_write(&st, db_path, written);
        if (rc != STORE_OK)
            unlink(written);
    }
    if (rc != STORE_OK)
        written[0] = '\0';
    else if (out == NULL && keep > 0)
        rc = snapshot_prune(&st, dir, keep, written); /* on failure the snapshot stands */
    if (rc != STORE_OK) {
        snprintf(static_msg, sizeof(static_msg), "%s", st.msg);
        *err = static_msg;
    }
    return rc;
}
