/*
 * The master's watchdog over its children (proxy.worker_watchdog). A
 * worker shows progress by the beat count of its shared-memory slot,
 * which its loop bumps on every iteration and at least every SHM_BEAT_MS;
 * the admin process and the metrics exporter by answering MSG_PING. A child that shows none for
 * the watchdog's time is killed with SIGKILL; its exit then replaces it
 * like any other death (a worker at once, on the same sockets, from the
 * full state). A stuck worker would otherwise keep receiving its share of
 * new connections and hold every change's reply.
 */
#include <signal.h>

#include "common/log.h"
#include "common/msg.h"
#include "master/master.h"

#define WATCHDOG_TICK_MS 250
/* Before a child's first sign of life: exec, sanitizer start-up, the
 * admin's TLS files and gRPC start-up, on a loaded machine. */
#define WATCHDOG_START_GRACE_MS 10000

void watchdog_reset(struct liveness *l, uint64_t now_ms, uint64_t seen)
{
    *l = (struct liveness){.seen = seen, .last_ms = now_ms};
}

void watchdog_alive(struct liveness *l, uint64_t now_ms)
{
    l->last_ms = now_ms;
    l->ping_ms = 0;
    l->shown = true;
}

/* Whether l is past its time: limit_ms since since_ms (plus the grace before
 * the first sign of life). */
static bool overdue(const struct liveness *l, uint64_t since_ms, uint64_t now_ms, uint64_t limit_ms)
{
    uint64_t allowed = limit_ms + (l->shown ? 0 : WATCHDOG_START_GRACE_MS);
    return !l->killed && now_ms - since_ms >= allowed;
}

/* limit 0: the watchdog is off; progress is still recorded, so that turning
 * it on by a reload does not find everyone overdue */
static void watch_worker(struct master *m, struct worker_proc *w, uint64_t now, uint64_t limit)
{
    uint64_t beats = atomic_load_explicit(&m->shm->workers[w->id].beats, memory_order_relaxed);

    if (beats != w->live.seen || limit == 0) {
        w->live.shown |= beats != w->live.seen;
        w->live.seen = beats;
        w->live.last_ms = now;
        return;
    }
    if (!overdue(&w->live, w->live.last_ms, now, limit))
        return;
    log_error("worker %u (pid %d) showed no progress for %llu ms: killing it (watchdog)", w->id,
              (int)w->pid, (unsigned long long)(now - w->live.last_ms));
    w->live.killed = true;
    kill(w->pid, SIGKILL);
    /* it no longer counts for any publish: its replacement starts from the current state */
    child_chan_close(m->loop, &w->chan, &w->ev);
}

/* A ping goes out SHM_BEAT_MS after the last sign of life; each gets the
 * whole watchdog's time to be answered. */
static void watch_aux(struct aux_proc *a, uint64_t now, uint64_t limit)
{
    if (limit == 0) {
        a->live.last_ms = now;
        a->live.ping_ms = 0;
        return;
    }
    if (a->live.ping_ms != 0) {
        if (overdue(&a->live, a->live.ping_ms, now, limit)) {
            log_error("%s (pid %d) showed no progress for %llu ms: killing it (watchdog)", a->name,
                      (int)a->pid, (unsigned long long)(now - a->live.last_ms));
            a->live.killed = true;
            kill(a->pid, SIGKILL);
        }
        return;
    }
    if (a->chan.fd >= 0 && now - a->live.last_ms >= SHM_BEAT_MS) {
        a->live.ping_ms = now;
        if (chan_send(&a->chan, MSG_PING, 0, NULL, 0, -1) == 0)
            child_chan_flush(&a->chan, a->name, a->pid);
    }
}

static void watchdog_tick(struct timer *t)
{
    struct master *m = t->data;
    uint64_t now = loop_now(m->loop);
    uint64_t limit = m->cfg->proxy.worker_watchdog_ms;

    if (m->phase != MASTER_STOPPING) {
        for (unsigned i = 0; i < m->n_slots; i++) {
            if (m->workers[i].pid != 0)
                watch_worker(m, &m->workers[i], now, limit);
        }
        if (m->admin.pid != 0)
            watch_aux(&m->admin, now, limit);
        if (m->metrics.pid != 0)
            watch_aux(&m->metrics, now, limit);
    }
    master_expire_waits(m);
    master_check_waits(m);
    loop_timer_set(m->loop, t, WATCHDOG_TICK_MS);
}

void watchdog_start(struct master *m)
{
    m->child_watchdog = (struct timer){.cb = watchdog_tick, .data = m};
    loop_timer_set(m->loop, &m->child_watchdog, WATCHDOG_TICK_MS);
}
