/*
 * The event loop of the master, the workers and the metrics exporter:
 * epoll (edge- or level-triggered per registration), a binary min-heap of
 * timers, and a millisecond monotonic clock cached once per iteration.
 * Their signals are delivered only inside epoll_pwait() (proc_signals),
 * so handlers that set flags never race the loop.
 */
#ifndef MC_LOOP_H
#define MC_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct loop;
struct ev;
struct timer;

typedef void ev_fn(struct ev *ev, uint32_t events);
typedef void timer_fn(struct timer *t);

struct ev {
    int fd;
    ev_fn *cb;
    void *data;
};

struct timer {
    uint64_t deadline; /* monotonic ms */
    unsigned idx;      /* position in the heap + 1; 0 when not armed */
    timer_fn *cb;
    void *data;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* epoll_ctl wrappers; ev must stay valid while registered. */
int loop_add(struct loop *l, struct ev *ev, uint32_t events);
int loop_mod(struct loop *l, struct ev *ev, uint32_t events);
void loop_del(struct loop *l, struct ev *ev);

/* Arms (or re-arms) t to fire ms from now. */
void loop_timer_set(struct loop *l, struct timer *t, uint64_t ms);
void loop_timer_set_at(struct loop *l, struct timer *t, uint64_t deadline);
void loop_timer_stop(struct loop *l, struct timer *t);
static inline bool timer_armed(const struct timer *t)
{
    return t->idx != 0;
}

/* Cached monotonic clock, refreshed each iteration. */
uint64_t loop_now(const struct loop *l);
/* Reads the clock now, updating the cache. */
uint64_t loop_update_time(struct loop *l);
uint64_t mc_monotonic_ms(void);

/*
 * Waits for events (at most until the next timer), dispatches them, then
 * runs expired timers. sigmask is passed to epoll_pwait: the signals the
 * process keeps blocked elsewhere are delivered only here. Returns 0, or
 * -1 on an epoll failure other than EINTR.
 */
int loop_run_once(struct loop *l, const sigset_t *sigmask);

/* Number of armed timers (tests, drain logic). */
unsigned loop_timer_count(const struct loop *l);

#endif
