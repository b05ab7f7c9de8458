/*
 * The shared counters region. A memfd (not an anonymous mapping) because
 * workers are exec'd: the fd is how they find the region.
 */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"

const uint32_t shm_connect_bounds_us[SHM_CONNECT_BOUNDS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

int shm_create(struct shm **out)
{
    int fd = memfd_create("mc-proxy-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        log_errno(LOGL_ERROR, errno, "memfd_create() failed");
        return -1;
    }
    if (ftruncate(fd, sizeof(struct shm)) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        log_errno(LOGL_ERROR, errno, "sizing the shared memory failed");
        close(fd);
        return -1;
    }
    struct shm *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) {
        log_errno(LOGL_ERROR, errno, "mmap() of the shared memory failed");
        close(fd);
        return -1;
    }
    s->magic = SHM_MAGIC;
    s->version = SHM_VERSION;
    s->started_at = (uint64_t)time(NULL);
    *out = s;
    return fd;
}

static int shm_map(int fd, int prot, struct shm **out)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(struct shm)) {
        log_error("shared memory has the wrong size");
        return -1;
    }
    struct shm *s = mmap(NULL, sizeof(*s), prot, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) {
        log_errno(LOGL_ERROR, errno, "mmap() of the shared memory failed");
        return -1;
    }
    if (s->magic != SHM_MAGIC || s->version != SHM_VERSION) {
        log_error("shared memory has the wrong magic or version");
        munmap(s, sizeof(*s));
        return -1;
    }
    *out = s;
    return 0;
}

int shm_attach(int fd, struct shm **out)
{
    return shm_map(fd, PROT_READ | PROT_WRITE, out);
}

int shm_attach_readonly(int fd, const struct shm **out)
{
    struct shm *s;
    if (shm_map(fd, PROT_READ, &s) < 0)
        return -1;
    *out = s;
    return 0;
}

void shm_worker_reap(struct shm *s, unsigned slot)
{
    struct shm_worker *w = &s->workers[slot];
    for (unsigned i = 0; i < MC_MAX_LISTENERS; i++) {
        int64_t n = atomic_exchange(&w->listener_active[i], 0);
        if (n != 0)
            atomic_fetch_sub(&s->listeners[i].active, n);
    }
    atomic_store(&w->active, 0);
    atomic_store(&w->pid, 0);
}

uint64_t shm_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void shm_observe_connect(struct shm_worker *w, uint64_t usec)
{
    unsigned i = 0;
    while (i < SHM_CONNECT_BOUNDS && usec > shm_connect_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&w->connect_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->connect_sum_us, usec, memory_order_relaxed);
}

struct shm_http_counts *shm_http_route(struct shm_worker *w, unsigned listener, const char *route)
{
    uint32_t used = atomic_load_explicit(&w->http_routes_used, memory_order_relaxed);

    for (uint32_t i = 0; i < used; i++) {
        struct shm_http_route *e = &w->http_routes[i];
        if (e->listener == listener && strcmp(e->route, route) == 0)
            return &e->n;
    }
    size_t len = strlen(route);
    if (used == SHM_HTTP_ROUTES || len > MC_HOSTNAME_MAX)
        return &w->http_other[listener];
    struct shm_http_route *e = &w->http_routes[used];
    e->listener = listener;
    memcpy(e->route, route, len + 1);
    atomic_store_explicit(&w->http_routes_used, used + 1, memory_order_release);
    return &e->n;
}

void shm_http_count(struct shm_http_counts *c, unsigned status, bool policy_block)
{
    unsigned k = status / 100 - 1;

    if (k < SHM_HTTP_CLASSES)
        atomic_fetch_add_explicit(&c->responses[k], 1, memory_order_relaxed);
    if (policy_block)
        atomic_fetch_add_explicit(&c->policy_blocks, 1, memory_order_relaxed);
}
