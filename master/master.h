/*
 * The master process: binds the listeners, starts and supervises the
 * workers, owns the state they route by, and talks to systemd. It never
 * reads a byte of client traffic.
 */
#ifndef MC_MASTER_H
#define MC_MASTER_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/chan.h"
#include "common/config.h"
#include "common/loop.h"
#include "common/msg.h"
#include "common/shm.h"
#include "master/certs.h"
#include "master/state.h"
#include "master/store.h"

/* What the watchdog (watchdog.c) knows of one child's progress. */
struct liveness {
    uint64_t seen;    /* workers: the beat count last read from shm */
    uint64_t last_ms; /* when it last showed progress (or started) */
    uint64_t ping_ms; /* admin, exporter: when the unanswered MSG_PING went out; 0: none */
    bool shown;       /* it has shown progress since it started */
    bool killed;      /* the watchdog sent it SIGKILL */
};

struct worker_proc {
    struct master *m;
    unsigned id;   /* slot in shm */
    bool used;     /* the slot belongs to a running or restarting worker */
    bool retiring; /* of the previous generation: stops accepting once the new one is ready */
    bool draining; /* sent MSG_STOP: its slot is freed when it exits */
    unsigned pos, stride; /* it accepts on every listener's sockets s with s % stride == pos */
    pid_t pid;            /* 0 when not running */
    struct chan chan;
    struct ev ev;
    bool ready;         /* has applied a generation and is accepting */
    uint32_t acked_gen; /* newest generation it applied */
    uint32_t start_gen; /* the generation it was started with: it accepts nothing older */
    uint64_t started_ms;
    unsigned quick_deaths; /* consecutive exits soon after start: the crash-loop brake */
    struct timer respawn;
    struct liveness live;
};

/* An auxiliary process with a channel: the admin (gRPC API, admin/) and the
 * metrics exporter (metrics/). */
struct aux_proc {
    struct master *m;
    const char *name;
    pid_t pid; /* 0 when not running */
    struct chan chan;
    struct ev ev;
    uint64_t started_ms;
    unsigned quick_deaths;
    bool restarting; /* asked to exit to be started again: its exit is no crash */
    /* READY=1 waits for each configured one to be listening, or to have
     * failed to start (exited before it listened) since then */
    bool listening; /* said MSG_LISTENING */
    bool failed;    /* exited before listening; cleared when it listens or a reload retries */
    struct timer respawn;
    struct liveness live;
    /* What it was started with (its settings, and for the admin its TLS
     * files' identity): a reload restarts it only when that changed. */
    void *started_with;
    size_t started_with_len;
};

/* A change waiting for every live worker's ack of its generation. applied
 * is false when the wait expired first (PUBLISH_DEADLINE_MS). */
typedef void master_done_fn(void *arg, bool applied);
#define PUBLISH_DEADLINE_MS (MSG_ADMIN_TIMEOUT_MS - MSG_ADMIN_TIMEOUT_MS / 5)
struct publish_wait {
    uint32_t gen;
    uint64_t started_ms;
    master_done_fn *done;
    void *arg;
    struct publish_wait *next;
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

    struct store *store;
    /* What the workers route by: loaded from the store, replaced after every change. */
    struct state *state;
    struct msg_fw_rule *rules_packed; /* state's rules as the channel carries them */
    int geoip_fd;                     /* sealed copy of firewall.geoip_db, or -1 */
    int ratelimit_fd;                 /* the workers' shared rate-limit table */
    void *ratelimit;
    struct certs certs;                 /* the L7 routes' certificates and keys */
    struct msg_ticket_keys ticket_keys; /* TLS session tickets, the same in every worker */
    struct timer ticket_rotate;
    uint32_t gen;
    struct publish_wait *waits; /* oldest first */

    /* Listeners bound at start-up, in shm index order (the set is fixed while running). */
    char **bound;
    unsigned n_bound;
    char *self_dir; /* directory of our executable, where mc-proxy-admin lives */

    /* n_bound x MC_MAX_WORKERS listening sockets, -1 once closed. A listener has
     * n_sockets of them: as many as the most workers any generation had, so a
     * reload to fewer workers closes none (connections queued on a closed
     * SO_REUSEPORT socket would be reset). */
    int *lfds;
    unsigned n_sockets;
    struct worker_proc workers[MC_MAX_WORKERS]; /* slots; [0, n_slots) ever used */
    unsigned n_slots;
    unsigned n_workers; /* size of the current generation */

    /* SIGHUP: the new generation of workers starts beside the old one */
    bool reloading, reload_pending;
    struct config *cfg_prev; /* kept until the reload completes, restored if it fails */
    unsigned n_workers_prev;
    uint64_t reload_started_ms;

    bool setuid;
    uid_t uid;
    gid_t gid;

    struct aux_proc admin;
    struct aux_proc metrics;
    /* READY=1 is owed (start-up, or a reload that completed) until the
     * admin and metrics processes are listening, or READY_AUX_WAIT_MS */
    bool ready_owed, ready_reloaded;
    struct timer ready_timer;

    int access_fd; /* log.access_file, -1 when unset; each worker has a copy */

    struct timer stop_timer;
    struct timer watchdog;       /* systemd's (WATCHDOG_USEC) */
    struct timer child_watchdog; /* ours over the children (watchdog.c) */
};

/* Runs the server until it stops; returns the process exit code. Takes
 * ownership of cfg (a reload replaces it). */
int master_run(struct config *cfg);

/*
 * After a committed store mutation: reloads the state from the store and
 * pushes it to every live worker as a new generation. done(arg) runs once
 * every live worker has acknowledged that generation (a worker that dies
 * or is killed by the watchdog meanwhile no longer counts; its replacement
 * starts from the new state), or with applied false after
 * PUBLISH_DEADLINE_MS, the change being committed but not yet everywhere.
 * Returns -1, with nothing changed in memory or in any worker, when the
 * state cannot be loaded; done is then never called.
 */
int master_publish(struct master *m, master_done_fn *done, void *arg);

/* Index of the bound listener named addr (its shm slot), or -1. */
int master_listener_index(const struct master *m, const char *addr);

/* Answers request id of the admin process admin (its pid) on the admin
 * channel (see msg.h); dropped when that process is gone, since its
 * replacement numbers its requests afresh. */
void master_admin_reply(struct master *m, pid_t admin, uint32_t id, int32_t status,
                        const char *message, const void *body, size_t len);

/* graceful: workers stop accepting and drain; immediate: they exit now */
void master_stop(struct master *m, bool graceful);

/* Between the master's own files. */
int *master_lfd(struct master *m, unsigned listener, unsigned sock);
void master_reload_failed(struct master *m, const char *why);
/* A worker acked: completes the start-up or a reload. */
void master_check_ready(struct master *m);
/* The admin or exporter started listening or exited: sends READY=1 when
 * it is owed and everything is up. */
void master_ready_update(struct master *m);
void master_check_waits(struct master *m);
/* Ends, as not applied, the publishes older than PUBLISH_DEADLINE_MS. */
void master_expire_waits(struct master *m);

/* watchdog.c: proxy.worker_watchdog over workers and the admin process */
void watchdog_start(struct master *m);
/* A child just started: its time to show progress starts now. */
void watchdog_reset(struct liveness *l, uint64_t now_ms, uint64_t seen);
/* The admin or the exporter said something: it is alive. */
void watchdog_alive(struct liveness *l, uint64_t now_ms);

/* workers.c */
/* Starts a generation of m->n_workers workers in free slots; -1 if too few slots. */
int workers_start_generation(struct master *m);
void worker_spawn(struct master *m, struct worker_proc *w);
/* Queues the current state as a new generation: a delta of n_changes
 * route changes, or the whole state when n_changes is -1. */
void worker_push_state(struct master *m, struct worker_proc *w, const struct route_change *changes,
                       int n_changes, bool rules);
void worker_exited(struct master *m, struct worker_proc *w, int status);
void worker_stop(struct master *m, struct worker_proc *w, bool graceful);
unsigned workers_alive(const struct master *m);

/* aux.c: a child's channel, and the auxiliary processes' life cycle */
void child_chan_close(struct loop *l, struct chan *c, struct ev *ev);
void child_chan_flush(struct chan *c, const char *name, pid_t pid);
/* Flushes on EPOLLOUT, drains on input; on EOF or garbage closes the channel
 * (killing a child that sent garbage). */
void child_chan_event(struct loop *l, struct chan *c, struct ev *ev, pid_t pid, uint32_t events,
                      chan_handler_fn *handle, void *arg, const char *name);
/* Exit of an auxiliary process: respawned unless the master is stopping, it
 * is no longer wanted, or it exited fatally; at once when the master asked
 * it to restart, else through the crash-loop brake. */
void aux_exited(struct master *m, struct aux_proc *x, int status, bool wanted);
void aux_stop(struct master *m, struct aux_proc *x);
/* Records what a just started x runs with (iov: its settings as sent, plus
 * anything else whose change needs a restart). */
void aux_started(struct master *m, struct aux_proc *x, pid_t pid, const struct iovec *iov, int n);
/*
 * After a reload: x ends up running on the current settings when wanted,
 * stopped otherwise, whatever state it was in. A running x is restarted
 * (gracefully: SIGTERM, and its exit respawns it at once) only when iov,
 * what it would be started with now, differs from what it runs with; one
 * not running is started now unless a respawn with the same settings is
 * already due.
 */
void aux_reload(struct master *m, struct aux_proc *x, bool wanted, const struct iovec *iov, int n);
void aux_free(struct aux_proc *x);
/* x said MSG_LISTENING. */
void aux_listening(struct aux_proc *x);
/* What READY=1 waits for: x not wanted, listening, or failed to start. */
bool aux_settled(const struct aux_proc *x, bool wanted);

/* geoip.c: (re)loads cfg's GeoIP database into m->geoip_fd. A failure
 * keeps a copy already loaded (logged); -1 only when there is none. */
int master_geoip_load(struct master *m, const struct config *cfg);

/* ticketkeys.c: the session ticket keys. ticketkeys_start draws the first
 * (-1 when getrandom() fails) and arms the rotation; ticketkeys_send gives a
 * starting worker the current and previous key. */
int ticketkeys_start(struct master *m);
void ticketkeys_send(struct master *m, struct worker_proc *w);

/* accesslog.c: log.access_file. accesslog_open at start (-1: cannot open it);
 * accesslog_send gives a starting worker the file; accesslog_reopen (SIGUSR1,
 * reload) opens the configured path again and gives every worker the new fd. */
int accesslog_open(struct master *m);
void accesslog_close(struct master *m);
void accesslog_send(struct master *m, struct worker_proc *w);
void accesslog_reopen(struct master *m, const char *why);

/* admin.c */
/* Who the admin process runs as and who may connect to its unix socket. */
struct admin_accounts {
    uid_t uid; /* grpc.user, else `user` (used when m->setuid) */
    gid_t gid;
    gid_t socket_gid; /* grpc.socket_group; as root, root's group by default; -1: as created */
};
/* Resolves them for m->cfg, after `user` (m->uid). -1 (logged) when an
 * account does not exist or would let the workers reach the admin API;
 * notices says what a master that is not root ignores. */
int admin_accounts_resolve(const struct master *m, bool notices, struct admin_accounts *out);
void admin_spawn(struct master *m);
void admin_exited(struct master *m, int status);
void admin_stop(struct master *m);
void admin_reload(struct master *m);

/* metrics.c */
void metrics_spawn(struct master *m);
void metrics_exited(struct master *m, int status);
void metrics_stop(struct master *m);
void metrics_reload(struct master *m);

/* master/admin_rpc.c: handles one MSG_ADMIN_REQ. Every path ends in exactly
 * one master_admin_reply() for the request's id, now or after a publish. */
void admin_rpc_handle(struct master *m, const struct chan_msg *msg);

#endif
