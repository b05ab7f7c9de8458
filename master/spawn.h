/* Starting and supervising child processes (workers, admin). */
#ifndef MC_SPAWN_H
#define MC_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/loop.h"

#define CHILD_CHAN_FD 3 /* where a child finds its channel to the master */

/*
 * fork+execs path with argv, its channel on fd 3 and the signal mask
 * restored to origmask. On success initialises *chan (the master's end),
 * registers ev (fd, cb, data set by the caller except fd) and returns the
 * pid; -1 (logged) on failure.
 */
pid_t spawn_child(struct loop *l, const char *path, char *const argv[], struct chan *chan,
                  struct ev *ev);

/* Saved by the master before it blocks signals; children get it back. */
void spawn_set_sigmask(const void *origmask);

/* "exited with status N" / "killed by signal N" into buf. */
const char *spawn_describe_exit(int status, char *buf, size_t size);

/*
 * The crash-loop brake. Call when a child exits; returns the delay in ms
 * before restarting it: 0 normally, growing from 100 ms to 5 s while it
 * keeps dying within 1 s of starting.
 */
uint64_t spawn_restart_delay(unsigned *quick_deaths, uint64_t started_ms, uint64_t now_ms);

#endif
