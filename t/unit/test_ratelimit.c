/*
 * Unit tests for common/ratelimit.c: the window arithmetic, the source
 * keys, a fixed-size table under 1,000,000 sources, and worker processes
 * sharing one region: concurrent admits never exceed the limit, and a
 * process killed holding a lock stops blocking others once reaped.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/mc.h"
#include "common/ratelimit.h"
#include "tap.h"

static void *region;
static int region_fd;

/* A fresh table for each test. */
static void reset(void)
{
    ratelimit_init(region, 42);
}

static void key_of(const char *ip, uint8_t key[16])
{
    uint8_t addr[16];
    int family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;

    if (inet_pton(family, ip, addr) != 1)
        abort(); /* a typo in the test */
    ratelimit_key(family, addr, key);
}

static bool admit(const char *ip, uint64_t now, uint32_t limit, uint64_t window)
{
    uint8_t key[16];

    key_of(ip, key);
    return ratelimit_admit(region, key, now, limit, window);
}

/* How many of n tries at `now` are admitted. */
static unsigned admits(const char *ip, unsigned n, uint64_t now, uint32_t limit, uint64_t window)
{
    unsigned ok = 0;

    for (unsigned i = 0; i < n; i++)
        ok += admit(ip, now, limit, window);
    return ok;
}

static void test_window(void)
{
    reset();
    T_OK(admits("192.0.2.1", 5, 1000, 5, 10000) == 5, "window: the first 5 of 5 are admitted");
    T_OK(!admit("192.0.2.1", 1001, 5, 10000), "window: the 6th is refused");
    T_OK(!admit("192.0.2.1", 10999, 5, 10000), "window: refused up to the window's last ms");
    T_OK(admits("192.0.2.1", 6, 11000, 5, 10000) == 5, "window: a new window admits 5 again");
    T_OK(!admit("192.0.2.1", 12000, 5, 10000), "window: and refuses the 6th");
    T_OK(admits("192.0.2.1", 3, 999, 5, 10000) == 0,
         "window: a clock read a little before the window began is inside it");
    T_OK(admits("192.0.2.1", 100, 12000, 0, 10000) == 100, "window: limit 0 admits everything");
    T_OK(admits("192.0.2.9", 3, 12000, 1, 0) == 3, "window: window 0 admits every time");

    reset();
    T_OK(admits("192.0.2.1", 3, 0, 2, 1000) == 2 && admits("192.0.2.2", 3, 0, 2, 1000) == 2 &&
             admits("2001:db8::1", 3, 0, 2, 1000) == 2,
         "sources: each has its own count");
    T_OK(!admit("192.0.2.1", 999, 2, 1000) && admit("192.0.2.1", 1000, 2, 1000),
         "sources: the first source's window ends on time");
    T_OK(!admit("192.0.2.2", 999, 2, 1000), "sources: the others' do not move");
}

static void test_keys(void)
{
    uint8_t a[16], b[16];
    static const uint8_t want_v4[16] = {[10] = 0xff, [11] = 0xff, 192, 0, 2, 1};
    static const uint8_t want_v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1};

    key_of("192.0.2.1", a);
    key_of("::ffff:192.0.2.1", b);
    T_OK(memcmp(a, want_v4, 16) == 0 && memcmp(b, want_v4, 16) == 0,
         "key: IPv4 and IPv4-mapped are ::ffff:a.b.c.d");
    key_of("::ffff:192.0.2.2", b);
    T_OK(memcmp(a, b, 16) != 0, "key: mapped addresses are not grouped by /64");
    key_of("2001:db8:0:1::1", a);
    key_of("2001:db8:0:1:ffff:ffff:ffff:ffff", b);
    T_OK(memcmp(a, want_v6, 16) == 0 && memcmp(b, want_v6, 16) == 0, "key: IPv6 is its /64");

    reset();
    T_OK(admit("2001:db8:0:1::1", 0, 1, 1000) && !admit("2001:db8:0:1:a:b:c:d", 0, 1, 1000),
         "key: one /64 shares one count");
    T_OK(admit("2001:db8:0:2::1", 0, 1, 1000), "key: the next /64 has its own");
    T_OK(admit("192.0.2.1", 0, 1, 1000) && !admit("::ffff:192.0.2.1", 0, 1, 1000),
         "key: a mapped client counts as its IPv4 address");
}

/* The process's size and resident set in pages, from /proc/self/statm,
 * read without allocating (the measurement must not move the numbers). */
static bool vm_pages(long *size, long *rss)
{
    char buf[256];
    ssize_t n;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return sscanf(buf, "%ld %ld", size, rss) == 2;
}

static void source_key(uint32_t i, uint8_t key[16])
{
    uint8_t ip[16] = {
        0x20,      0x01, 0x0d, 0xb8, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8),
        (uint8_t)i};
    ratelimit_key(AF_INET6, ip, key);
}

#define MANY_SOURCES 1000000u
#define RECENT       1000u

static void test_many_sources(void)
{
    struct stat st0, st1;
    long rss0 = 0, vsz0 = 0, rss1 = -1, vsz1 = -1;
    unsigned admitted = 0, remembered = 0, forgotten = 0;
    uint8_t key[16];

    reset(); /* writes every page of the region, so none is first touched below */
    fstat(region_fd, &st0);
    vm_pages(&vsz0, &rss0); /* once to fault in the code it runs */
    vm_pages(&vsz0, &rss0);
    /* limit 1 in a window no source outlives: only eviction forgets one */
    for (uint32_t i = 0; i < MANY_SOURCES; i++) {
        source_key(i, key);
        admitted += ratelimit_admit(region, key, i, 1, UINT64_MAX / 2);
    }
    vm_pages(&vsz1, &rss1);
    fstat(region_fd, &st1);
    T_OK(admitted == MANY_SOURCES, "many: %u distinct sources each admitted once", MANY_SOURCES);
    T_OK(st0.st_size == st1.st_size && (size_t)st1.st_size == ratelimit_region_size(),
         "many: the region stays %zu bytes", ratelimit_region_size());
    T_OK(rss0 > 0 && rss1 <= rss0 && vsz0 == vsz1,
         "many: the process's memory stays the same (RSS %ld -> %ld pages, size %ld -> %ld)", rss0,
         rss1, vsz0, vsz1);

    /* the newest sources of each set are kept, the oldest were evicted */
    for (uint32_t i = MANY_SOURCES - RECENT; i < MANY_SOURCES; i++) {
        source_key(i, key);
        remembered += !ratelimit_admit(region, key, MANY_SOURCES, 1, UINT64_MAX / 2);
    }
    for (uint32_t i = 0; i < RECENT; i++) {
        source_key(i, key);
        forgotten += ratelimit_admit(region, key, MANY_SOURCES, 1, UINT64_MAX / 2);
    }
    T_OK(remembered == RECENT, "many: the last %u sources are still counted (%u)", RECENT,
         remembered);
    T_OK(forgotten == RECENT, "many: the first %u were evicted (%u)", RECENT, forgotten);
}

#define RACE_CHILDREN 4
#define RACE_KEYS     2
#define RACE_ROUNDS   50000
#define RACE_LIMIT    100000

/* Children attach to the region by its fd, as workers do, wait at the
 * start pipe, then all try every key RACE_ROUNDS times. */
static void race_child(int start_fd, unsigned (*counts)[RACE_KEYS], unsigned me)
{
    void *r;
    char c;

    if (ratelimit_attach(region_fd, &r) < 0 || read(start_fd, &c, 1) != 0)
        _exit(1);
    for (unsigned round = 0; round < RACE_ROUNDS; round++) {
        for (uint32_t k = 0; k < RACE_KEYS; k++) {
            uint8_t key[16];
            source_key(k, key);
            counts[me][k] += ratelimit_admit(r, key, 5000, RACE_LIMIT, 60000);
        }
    }
    _exit(0);
}

static void test_race(void)
{
    unsigned(*counts)[RACE_KEYS] = mmap(NULL, sizeof(unsigned[RACE_CHILDREN][RACE_KEYS]),
                                        PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[RACE_CHILDREN];
    unsigned exact = 0, clean = 0;
    int start[2];

    reset();
    if (counts == MAP_FAILED || pipe(start) < 0)
        abort();
    for (unsigned i = 0; i < RACE_CHILDREN; i++) {
        if ((pids[i] = fork()) == 0) {
            close(start[1]);
            race_child(start[0], counts, i);
        }
    }
    close(start[0]);
    close(start[1]); /* EOF: every child starts at once */
    for (unsigned i = 0; i < RACE_CHILDREN; i++) {
        int status;
        clean += pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
                 WEXITSTATUS(status) == 0;
    }
    for (unsigned k = 0; k < RACE_KEYS; k++) {
        unsigned sum = 0;
        for (unsigned i = 0; i < RACE_CHILDREN; i++)
            sum += counts[i][k];
        exact += sum == RACE_LIMIT;
    }
    T_OK(clean == RACE_CHILDREN, "race: %d processes ran to the end", RACE_CHILDREN);
    T_OK(exact == RACE_KEYS, "race: %d processes x %d tries admit exactly %d per source (%u of %d)",
         RACE_CHILDREN, RACE_ROUNDS, RACE_LIMIT, exact, RACE_KEYS);
    munmap(counts, sizeof(unsigned[RACE_CHILDREN][RACE_KEYS]));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Whether pid exits within ms (with status 0 in *ok); false if still running. */
static bool exits_within(pid_t pid, double ms, bool *ok)
{
    double end = now_ms() + ms;
    int status;

    do {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            return true;
        }
        usleep(2000);
    } while (now_ms() < end);
    return false;
}

static void test_dead_holder(void)
{
    uint8_t key[16];
    pid_t holder, waiter;
    int sync[2], status;
    bool ok = false;
    char c;

    reset();
    source_key(7, key);
    if (pipe(sync) < 0)
        abort();
    if ((holder = fork()) == 0) {
        ratelimit_hold(region, key);
        if (write(sync[1], "x", 1) != 1)
            _exit(1);
        raise(SIGKILL);
    }
    close(sync[1]);
    T_OK(holder > 0 && read(sync[0], &c, 1) == 1 && waitpid(holder, &status, 0) == holder &&
             WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
         "dead holder: a child took the lock and was SIGKILLed");
    close(sync[0]);

    if ((waiter = fork()) == 0)
        _exit(ratelimit_admit(region, key, 0, 1, 1000) ? 0 : 1);
    /* still waiting after a while is what a held lock looks like; the
     * check can only fail if the lock was not held */
    T_OK(!exits_within(waiter, 200, &ok), "dead holder: another process waits on its lock");
    ratelimit_reap(region, getpid());
    T_OK(!exits_within(waiter, 100, &ok), "dead holder: reaping another pid releases nothing");
    ratelimit_reap(region, holder);
    T_OK(exits_within(waiter, 30000, &ok) && ok,
         "dead holder: reaped, the waiter gets the lock and is admitted");
    if (!ok && kill(waiter, SIGKILL) == 0)
        waitpid(waiter, &status, 0);
    T_OK(!ratelimit_admit(region, key, 1, 1, 1000),
         "dead holder: the table works on (refused 2nd)");
}

static void test_attach(void)
{
    void *r;
    int fd = memfd_create("not-a-ratelimit", MFD_CLOEXEC);

    T_OK(fd >= 0 && ratelimit_attach(fd, &r) == -1, "attach: an empty memfd is refused");
    T_OK(fd >= 0 && ftruncate(fd, (off_t)ratelimit_region_size()) == 0 &&
             ratelimit_attach(fd, &r) == -1,
         "attach: the right size without the magic is refused");
    T_OK(ftruncate(region_fd, 4096) == -1, "attach: the region cannot be resized (sealed)");
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    region_fd = ratelimit_create(&region);
    T_OK(region_fd >= 0, "create: a sealed memfd of %zu bytes", ratelimit_region_size());
    if (region_fd < 0)
        return tap_done();
    test_window();
    test_keys();
    test_many_sources();
    test_race();
    test_dead_holder();
    test_attach();
    munmap(region, ratelimit_region_size());
    close(region_fd);
    return tap_done();
}
