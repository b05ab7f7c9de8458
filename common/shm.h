/*
 * Counters shared by every process: a memfd the master creates before
 * starting any child, mapped MAP_SHARED by the master and each worker
 * (the fd travels over the channel, since workers are exec'd).
 *
 * Each worker writes only its own slot, except the per-listener active
 * counts, which are global (max_connections is enforced across workers):
 * a worker adds to both the listener total and its own slot's share, so
 * the master can subtract a dead worker's share when it reaps it. The
 * master writes the global counters (reloads, worker restarts, the admin
 * process's dropped log lines), but for log_dropped_workers, which every
 * worker adds to; the metrics exporter only reads.
 */
#ifndef MC_SHM_H
#define MC_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/mc.h"
#include "common/reason.h"

#define SHM_MAGIC   0x6d637078u /* "mcpx" */
#define SHM_VERSION 5

/* Upper bounds (microseconds) of the backend connect latency buckets; one
 * more bucket past the last holds everything slower. */
#define SHM_CONNECT_BOUNDS 12
extern const uint32_t shm_connect_bounds_us[SHM_CONNECT_BOUNDS];

/*
 * L7 responses by route and status class, and policy blocks. Routes
 * come and go while running, so each worker keeps a bounded table of
 * the (listener, route) pairs it has answered for since its slot was
 * first used, in the order it met them; a pair that finds the table
 * full is counted in its listener's overflow bucket instead (exported
 * as route="(other)", which no hostname can be). An entry is written
 * whole before http_routes_used publishes it (release; the exporter
 * acquires), and never changes its name after: only its counters move.
 * A respawned worker in the same slot finds its predecessor's entries
 * and goes on counting in them.
 */
#define SHM_HTTP_ROUTES  128
#define SHM_HTTP_CLASSES 5 /* 1xx .. 5xx */

struct shm_http_counts {
    _Atomic uint64_t responses[SHM_HTTP_CLASSES];
    _Atomic uint64_t policy_blocks;
};

struct shm_http_route {
    uint32_t listener;
    char route[MC_HOSTNAME_MAX + 1];
    struct shm_http_counts n;
};

struct shm_listener {
    _Atomic int64_t active;
    _Atomic uint64_t total;
};

struct shm_worker {
    _Atomic int32_t pid; /* 0 when the slot is empty */
    _Atomic int64_t active;
    _Atomic uint64_t total;
    _Atomic uint64_t bytes_in;  /* client -> backend */
    _Atomic uint64_t bytes_out; /* backend -> client */
    _Atomic uint64_t refused[REASON__COUNT];
    _Atomic int64_t listener_active[MC_MAX_LISTENERS]; /* this worker's share */
    /* backend connect latency: per bucket, not cumulative (the exporter sums) */
    _Atomic uint64_t connect_buckets[SHM_CONNECT_BOUNDS + 1];
    _Atomic uint64_t connect_sum_us;
    /* Liveness: bumped by the worker's loop on every iteration and at least
     * every SHM_BEAT_MS; the master's watchdog kills a worker whose count
     * stops moving (proxy.worker_watchdog). */
    _Atomic uint64_t beats;
    _Atomic uint32_t http_routes_used;
    struct shm_http_route http_routes[SHM_HTTP_ROUTES];
    struct shm_http_counts http_other[MC_MAX_LISTENERS];
};

/* How often an idle worker's loop wakes to show life: a quarter of the
 * shortest watchdog (CONFIG_WATCHDOG_MIN_MS), which leaves a loaded
 * machine half of it for lateness. */
#define SHM_BEAT_MS 250

struct shm {
    uint32_t magic;
    uint32_t version;
    uint64_t started_at;                       /* unix seconds */
    _Atomic uint64_t reloads;                  /* the master counts them */
    _Atomic uint64_t worker_restarts;          /* workers respawned after dying, for any reason */
    _Atomic uint64_t worker_restarts_watchdog; /* of those, killed by the watchdog */
    /* log lines dropped because their destination could not take them, per
     * kind of process (every worker adds to one, so a dead one's stay); the
     * exporter, which maps this read-only, reports its own */
    _Atomic uint64_t log_dropped_master;
    _Atomic uint64_t log_dropped_workers;
    _Atomic uint64_t log_dropped_admin; /* the master adds what the admin reports */
    struct shm_listener listeners[MC_MAX_LISTENERS];
    struct shm_worker workers[MC_MAX_WORKERS];
};

/* Master: creates and maps the region; returns the memfd (kept open to pass on). */
int shm_create(struct shm **out);
/* Child: maps the region from a received memfd (which it may then close). */
int shm_attach(int fd, struct shm **out);
/* The same, read-only: the metrics exporter, whose fd the master reopens
 * O_RDONLY so that it could not map the region writable either. */
int shm_attach_readonly(int fd, const struct shm **out);

/* The dead worker's per-listener shares are subtracted from the totals and its slot cleared. */
void shm_worker_reap(struct shm *s, unsigned slot);

/* A worker's loop shows it is making progress. */
static inline void shm_beat(struct shm_worker *w)
{
    atomic_fetch_add_explicit(&w->beats, 1, memory_order_relaxed);
}

/* Monotonic microseconds, the clock connect latency is measured with. */
uint64_t shm_clock_us(void);
/* Counts one completed backend connect that took usec. */
void shm_observe_connect(struct shm_worker *w, uint64_t usec);

/* The counters of a (listener, route) pair in this worker's table: its
 * entry, added if new, or the listener's overflow bucket when the table
 * is full. Only the worker that owns the slot calls it. */
struct shm_http_counts *shm_http_route(struct shm_worker *w, unsigned listener, const char *route);
/* Counts one response (status 100..599) in c, and a policy block if it was one. */
void shm_http_count(struct shm_http_counts *c, unsigned status, bool policy_block);

#endif
