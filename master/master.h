/*
 * The master process: binds the listeners, starts and supervises the
 * workers, owns the state they route by, and talks to systemd. It never
 * reads a byte of client traffic.
 */
#ifndef MC_MASTER_H
#define MC_MASTER_H

#include <stdbool.h>
#include <sys/types.h>

#include "chan.h"
#include "config.h"
#include "loop.h"
#include "shm.h"

struct worker_proc {
    struct master *m;
    unsigned id; /* slot in shm and index of its listening sockets */
    pid_t pid;   /* 0 when not running */
    struct chan chan;
    struct ev ev;
    bool ready;         /* has applied a generation and is accepting */
    uint32_t acked_gen; /* newest generation it applied */
    uint64_t started_ms;
    unsigned quick_deaths; /* consecutive exits soon after start: the crash-loop brake */
    struct timer respawn;
};

enum master_phase {
    MASTER_STARTING, /* waiting for every worker's first ack */
    MASTER_RUNNING,
    MASTER_STOPPING,
};

struct master {
    struct config *cfg;
    struct loop *loop;
    struct shm *shm;
    int shm_fd;
    enum master_phase phase;
    int exit_code;
    bool done;

    /* Routing state pushed to workers. From the config today; the store owns it later. */
    const struct listener_conf *listeners;
    unsigned n_listeners;
    uint32_t gen;

    int *lfds; /* n_listeners x n_workers listening sockets, -1 once closed */
    struct worker_proc workers[MC_MAX_WORKERS];
    unsigned n_workers;

    bool setuid;
    uid_t uid;
    gid_t gid;

    struct timer stop_timer;
    struct timer watchdog;
};

/* Runs the server until it stops; returns the process exit code. */
int master_run(struct config *cfg);

#endif
