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

#include "log.h"
#include "shm.h"

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

int shm_attach(int fd, struct shm **out)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(struct shm)) {
        log_error("shared memory has the wrong size");
        return -1;
    }
    struct shm *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
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
