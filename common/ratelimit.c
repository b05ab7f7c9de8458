/*
 * The shared rate-limit table (see ratelimit.h). Entries are plain memory
 * read and written only under their set's lock; the lock word is the one
 * atomic, so the layout works across processes (lock-free atomics are
 * address-free).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/siphash.h"

#define RATELIMIT_MAGIC   0x6d63726cu /* "mcrl" */
#define RATELIMIT_VERSION 1
/* Lock attempts before yielding the CPU: a holder scans 8 entries, but
 * may have been preempted, and spinning would keep it off the CPU. */
#define RATELIMIT_SPINS 100

struct rl_entry {
    uint8_t key[16];
    uint64_t start_ms; /* when this source's window began */
    uint32_t count;    /* admits in the window; 0: the entry is free */
};

struct rl_set {
    _Atomic int32_t lock; /* pid of the holder, 0 when free */
    struct rl_entry e[RATELIMIT_WAYS];
} __attribute__((aligned(64)));

struct rl_region {
    uint32_t magic;
    uint32_t version;
    uint64_t hash_key[2];
    struct rl_set sets[RATELIMIT_SETS] __attribute__((aligned(64)));
};

_Static_assert((RATELIMIT_SETS & (RATELIMIT_SETS - 1)) == 0, "RATELIMIT_SETS is a power of two");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the lock word must be lock-free to be shared");

size_t ratelimit_region_size(void)
{
    return sizeof(struct rl_region);
}

void ratelimit_init(void *region, uint64_t seed)
{
    struct rl_region *r = region;

    memset(r, 0, sizeof(*r));
    r->magic = RATELIMIT_MAGIC;
    r->version = RATELIMIT_VERSION;
    r->hash_key[0] = seed;
    r->hash_key[1] = ~seed;
}

int ratelimit_create(void **region)
{
    size_t size = ratelimit_region_size();
    uint64_t seed;
    void *r;
    int fd;

    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
        log_errno(LOGL_ERROR, errno, "getrandom() for the rate-limit table failed");
        return -1;
    }
    fd = memfd_create("mc-proxy-ratelimit", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        log_errno(LOGL_ERROR, errno, "memfd_create() for the rate-limit table failed");
        return -1;
    }
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        log_errno(LOGL_ERROR, errno, "sizing the rate-limit table failed");
        close(fd);
        return -1;
    }
    r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) {
        log_errno(LOGL_ERROR, errno, "mmap() of the rate-limit table failed");
        close(fd);
        return -1;
    }
    ratelimit_init(r, seed);
    *region = r;
    return fd;
}

int ratelimit_attach(int fd, void **region)
{
    size_t size = ratelimit_region_size();
    struct rl_region *r;
    struct stat st;

    if (fstat(fd, &st) < 0 || (size_t)st.st_size != size) {
        log_error("rate-limit table has the wrong size");
        return -1;
    }
    r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED) {
        log_errno(LOGL_ERROR, errno, "mmap() of the rate-limit table failed");
        return -1;
    }
    if (r->magic != RATELIMIT_MAGIC || r->version != RATELIMIT_VERSION) {
        log_error("rate-limit table has the wrong magic or version");
        munmap(r, size);
        return -1;
    }
    *region = r;
    return 0;
}

void ratelimit_key(int family, const uint8_t *ip, uint8_t key[16])
{
    memset(key, 0, 16);
    if (family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, ip, 4);
    } else if (family == AF_INET6) {
        /* a mapped address is one IPv4 source, not a /64 of them */
        memcpy(key, ip, addr_ip_v4mapped(ip) ? 16 : 8);
    }
}

static struct rl_set *rl_set_of(struct rl_region *r, const uint8_t key[16])
{
    return &r->sets[siphash13(r->hash_key, key, 16) & (RATELIMIT_SETS - 1)];
}

/* This process's pid, the lock owner's name. Cached: getpid() is a
 * system call, and costs microseconds on some virtual machines; a
 * fork()ed child (the tests) forgets the parent's. */
static int32_t rl_pid;

static void rl_pid_forget(void)
{
    rl_pid = 0;
}

static void rl_pid_watch_forks(void)
{
    pthread_atfork(NULL, NULL, rl_pid_forget);
}

static int32_t rl_self(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    if (rl_pid == 0) {
        pthread_once(&once, rl_pid_watch_forks);
        rl_pid = (int32_t)getpid();
    }
    return rl_pid;
}

static void rl_lock(struct rl_set *set, int32_t pid)
{
    for (unsigned spins = 0;; spins++) {
        int32_t free_word = 0;

        if (atomic_load_explicit(&set->lock, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&set->lock, &free_word, pid, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        if (spins >= RATELIMIT_SPINS)
            sched_yield();
    }
}

static void rl_unlock(struct rl_set *set)
{
    atomic_store_explicit(&set->lock, 0, memory_order_release);
}

/* Inside its window. Another worker may have read the clock a little
 * later and started the window "after" now_ms: that is inside too. */
static bool rl_live(const struct rl_entry *e, uint64_t now_ms, uint64_t window_ms)
{
    return now_ms < e->start_ms || now_ms - e->start_ms < window_ms;
}

/* Eviction order: a free entry first, then an expired one, then the one
 * whose window began first. */
static uint64_t rl_worth(const struct rl_entry *e, uint64_t now_ms, uint64_t window_ms)
{
    if (e->count == 0)
        return 0;
    return rl_live(e, now_ms, window_ms) ? e->start_ms + 2 : 1;
}

/* The source's entry (*found), or the one it takes over. Under the set's lock. */
static struct rl_entry *rl_find(struct rl_set *set, const uint8_t key[16], uint64_t now_ms,
                                uint64_t window_ms, bool *found)
{
    struct rl_entry *victim = &set->e[0];

    for (unsigned i = 0; i < RATELIMIT_WAYS; i++) {
        struct rl_entry *e = &set->e[i];

        if (e->count != 0 && memcmp(e->key, key, 16) == 0) {
            *found = true;
            return e;
        }
        if (rl_worth(e, now_ms, window_ms) < rl_worth(victim, now_ms, window_ms))
            victim = e;
    }
    *found = false;
    return victim;
}

bool ratelimit_admit(void *region, const uint8_t key[16], uint64_t now_ms, uint32_t limit,
                     uint64_t window_ms)
{
    struct rl_set *set;
    struct rl_entry *e;
    bool found, admit = true;

    if (limit == 0)
        return true;
    set = rl_set_of(region, key);
    rl_lock(set, rl_self());
    e = rl_find(set, key, now_ms, window_ms, &found);
    if (found && rl_live(e, now_ms, window_ms)) {
        admit = e->count < limit;
        e->count += admit;
    } else {
        memcpy(e->key, key, 16);
        e->start_ms = now_ms;
        e->count = 1;
    }
    rl_unlock(set);
    return admit;
}

void ratelimit_reap(void *region, int32_t pid)
{
    struct rl_region *r = region;

    for (unsigned i = 0; i < RATELIMIT_SETS; i++) {
        int32_t held = pid;
        atomic_compare_exchange_strong(&r->sets[i].lock, &held, 0);
    }
}

void ratelimit_hold(void *region, const uint8_t key[16])
{
    rl_lock(rl_set_of(region, key), rl_self());
}
