/*
 * Unit tests for master/store_snapshot.c: consistent copies of a database
 * another process is writing, and the default backups/ directory with its
 * pruning. Every database lives in a fresh directory under /tmp; a second,
 * plain SQLite connection ("raw") looks at the files from outside the
 * store. The config and the helpers the store's tests share are in
 * store_fixture.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_fixture.h"
#include "tap.h"

/* ---- tests ---- */

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
    pid_t pid;

    fresh_db(db, "snap-live");
    /* closed before the writer opens it: a database has one store at a time */
    store_close(open_seeded(db));
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

int main(void)
{
    store_fixture_setup();

    test_snapshot_concurrent();
    test_snapshot_default_and_prune();

    store_fixture_teardown(tap_failed);
    return tap_done();
}
