/*
 * What every child has on the master's side, whatever its kind (worker,
 * admin, metrics exporter), and the kind that says how each is started,
 * fed and replaced: one struct child_kind per kind, a row of relayd's
 * struct privsep_proc table (child_worker.c, child_admin.c,
 * child_metrics.c define them).
 * One spawn, one respawn timer, one channel event handler and one reap
 * serve every kind; the kind supplies only what differs.
 */
#ifndef MC_CHILD_H
#define MC_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/loop.h"

struct master;
struct child;

/* What the watchdog (watchdog.c) knows of one child's progress. */
struct liveness {
    uint64_t seen;    /* workers: the beat count last read from shm */
    uint64_t last_ms; /* when it last showed progress (or started) */
    uint64_t ping_ms; /* admin, exporter: when the unanswered MSG_PING went out; 0: none */
    bool shown;       /* it has shown progress since it started */
    bool killed;      /* the watchdog sent it SIGKILL */
};

enum child_id { CHILD_WORKER, CHILD_ADMIN, CHILD_METRICS };

/* What an exit leaves for the master to decide. */
enum child_exit {
    CHILD_REPLACED, /* respawned (now or on its timer), or not wanted any more */
    CHILD_FATAL,    /* exited with MC_EXIT_FATAL: not respawned */
};

/* How a child is exec'd: its executable and arguments. */
struct child_exec {
    char path[4096];
    char arg[16]; /* room for one argument, e.g. a worker's slot */
    char *argv[4];
};

struct child_kind {
    const char *name; /* in logs */
    enum child_id id;
    /* How c is exec'd. */
    void (*exec)(const struct child *c, struct child_exec *e);
    /* Queues its start-up messages, once it runs. */
    void (*init)(struct child *c);
    /* One message from it; -1 kills it (our own child speaking out of turn). */
    chan_handler_fn *dispatch;
    /* Whether a respawn that comes due still starts it. */
    bool (*wanted)(const struct child *c);
    /* It was reaped with status: its kind's bookkeeping and respawn. */
    enum child_exit (*exited)(struct child *c, int status);
    /* The master stops: gracefully, or at once. */
    void (*stop)(struct child *c, bool graceful);
};

struct child {
    const struct child_kind *kind;
    struct master *m;
    pid_t pid; /* 0 when not running */
    struct chan chan;
    struct ev ev;
    uint64_t started_ms;
    unsigned quick_deaths; /* consecutive exits soon after start: the crash-loop brake */
    struct timer respawn;
    struct liveness live;
};

/* Once, before anything else touches c. */
void child_init(struct child *c, struct master *m, const struct child_kind *kind);
/* The struct that embeds c as its member c. */
#define CHILD_OF(type, cp) ((type *)(void *)((char *)(cp)-offsetof(type, c)))
/* Starts c (its kind's exec and init); on failure its respawn is due in 1 s. */
void child_spawn(struct child *c);
/* The child of m with that pid, or NULL. */
struct child *child_find(struct master *m, pid_t pid);
/* Flushes what is queued for c. */
void child_flush(struct child *c);
/* Closes c's channel (it may still run). */
void child_close(struct child *c);

#endif
