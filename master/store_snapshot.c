/*
 * Snapshots of the database (VACUUM INTO) and the pruning of old ones in
 * backups/. These run without an open store: the server may hold the
 * database meanwhile.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "master/store_impl.h"

#define SNAPSHOT_PREFIX  "mc-proxy-"
#define SNAPSHOT_TS_LEN  16   /* YYYYMMDDTHHMMSSZ */
#define SNAPSHOT_MAX_SEQ 1000 /* -1 .. -999 after a name taken in the same second */

/* A snapshot file found in backups/, for pruning. */
struct snapshot {
    char ts[SNAPSHOT_TS_LEN + 1];
    unsigned seq;
    char name[NAME_MAX + 1];
};

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
        if ((p = store_push(snaps, n, sizeof(*snaps))) == NULL) {
            rc = store_nomem(st);
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
        snprintf(store_static_msg, sizeof(store_static_msg), "%s", st.msg);
        *err = store_static_msg;
    }
    return rc;
}
