/*
 * The processes of mc-proxy, from the child's side. The one mc-proxy
 * binary runs the master and, exec'd by the master with the child's
 * argv[1], each worker and the metrics exporter; mc-proxy-admin is a
 * binary of its own. Every child starts the same way: its signals
 * (proc_signals), its channel to the master on PROC_CHAN_FD
 * (proc_chan_open), and it leaves once that channel closes
 * (proc_chan_event). Each child's code lives in its own folder; only
 * this header joins them to the master.
 */
#ifndef MC_PROC_H
#define MC_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/chan.h"
#include "common/loop.h"

#define PROC_WORKER_ARG  "__worker"
#define PROC_METRICS_ARG "__metrics"

#define PROC_CHAN_FD 3 /* where a child finds its channel to the master */

/* A child's exit status when the master should start it again (through
 * its crash-loop brake): a malformed message, an address in use. One that
 * must not be restarted exits MC_EXIT_FATAL. */
#define PROC_EXIT_RESPAWN 1

int worker_main(int argc, char **argv);  /* worker/worker.c */
int metrics_main(int argc, char **argv); /* metrics/metrics.c */

/* A signal a process handles: its handler sets *flag, and nothing else. */
struct proc_signal {
    int signo;
    volatile sig_atomic_t *flag;
};

/*
 * Installs the handlers of sigs[0..n) and ignores SIGPIPE, and SIGHUP
 * and SIGUSR1 unless they are in sigs (reloading and reopening the
 * access file are the master's: a signal sent to the whole unit is
 * harmless to the children). With waitmask, the handled signals are
 * blocked from now on, *waitmask is the mask to wait with
 * (loop_run_once: they arrive only inside epoll_pwait, so none is lost
 * between a flag's check and the wait) and *origmask, unless NULL, the
 * mask before. Without (the admin, whose gRPC threads do not wait that
 * way) they stay unblocked, and interrupted calls restart.
 */
void proc_signals(const struct proc_signal *sigs, size_t n, sigset_t *origmask, sigset_t *waitmask);

/* The child's end of its channel, on PROC_CHAN_FD: initialises c and
 * registers ev (cb and data set by the caller) on l for events.
 * -1 (logged). */
int proc_chan_open(struct loop *l, struct chan *c, struct ev *ev, uint32_t events);

/*
 * A channel event: handles every message that came (chan_drain) and
 * flushes what is queued. True while the master is there; false once it
 * went away (EOF) or the channel broke, the channel then closed and off
 * the loop: the child leaves (a worker after draining).
 */
bool proc_chan_event(struct loop *l, struct chan *c, struct ev *ev, chan_handler_fn *handle,
                     void *arg);

#endif
