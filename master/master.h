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
#include "master/api.h"
#include "master/certs.h"
#include "master/child.h"
#include "master/state.h"
#include "master/store.h"

/* A worker on the master's side (child_worker.c). */
struct child_worker {
    struct child c;
    unsigned id;   /* slot in shm */
    bool used;     /* the slot belongs to a running or restarting worker */
    bool retiring; /* of the previous generation: stops accepting once the new one is ready */
    bool draining; /* sent MSG_STOP: its slot is freed when it exits */
    unsigned pos, stride; /* it accepts on every listener's sockets s with s % stride == pos */
    bool ready;           /* has applied a generation and is accepting */
    uint32_t acked_gen;   /* newest generation it applied */
    uint32_t start_gen;   /* the generation it was started with: it accepts nothing older */
};

/* An auxiliary process (aux.c): the admin (gRPC API, admin/) and the
 * metrics exporter (metrics/). */
struct aux_proc {
    struct child c;
    bool restarting; /* asked to exit to be started again: its exit is no crash */
    /* READY=1 waits for each configured one to be listening, or to have
     * failed to start (exited before it listened) since then */
    bool listening; /* said MSG_LISTENING */
    bool failed;    /* exited before listening; cleared when it listens or a reload retries */
    /* What it was started with (its settings, and for the admin its TLS
     * files' identity): a reload restarts it only when that changed. */
    void *started_with;
    size_t started_with_len;
};

/* A change waiting for every live worker's ack of its generation. applied
 * is false when the wait expired first (PUBLISH_DEADLINE_MS). */
typedef api_done_fn master_done_fn;
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
    struct child_worker workers[MC_MAX_WORKERS]; /* slots; [0, n_slots) ever used */
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
    struct api api; /* what the admin's requests are handled with (api.c) */
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
void child_admin_reply(struct master *m, pid_t admin, uint32_t id, int32_t status,
                       const char *message, const void *body, size_t len);

/* graceful: workers stop accepting and drain; immediate: they exit now */
void master_stop(struct master *m, bool graceful);

/* Between the master's own files. */
int *master_lfd(struct master *m, unsigned listener, unsigned sock);
/* Resolves `user` and the admin's accounts for m->cfg; -1 (logged). */
int master_resolve_user(struct master *m);
/* Binds more SO_REUSEPORT sockets so that every listener has n; -1 (logged). */
int master_grow_sockets(struct master *m, unsigned n);
/* Every worker accepts: READY=1 goes out once the admin and exporter are up too. */
void master_ready_owe(struct master *m, bool reloaded);
/* A worker acked: completes the start-up or a reload. */
void master_check_ready(struct master *m);
/* The admin or exporter started listening or exited: sends READY=1 when
 * it is owed and everything is up. */
void master_ready_update(struct master *m);
void master_check_waits(struct master *m);
/* Ends, as not applied, the publishes older than PUBLISH_DEADLINE_MS. */
void master_expire_waits(struct master *m);

/* reload.c: SIGHUP. reload_start begins one (or queues it behind the one
 * in progress); reload_complete retires the old generation once the new
 * one is ready; reload_failed rolls back to the previous configuration. */
void reload_start(struct master *m);
void reload_complete(struct master *m);
void reload_failed(struct master *m, const char *why);

/* watchdog.c: proxy.worker_watchdog over workers and the admin process */
void watchdog_start(struct master *m);
/* A child just started: its time to show progress starts now. */
void watchdog_reset(struct liveness *l, uint64_t now_ms, uint64_t seen);
/* The admin or the exporter said something: it is alive. */
void watchdog_alive(struct liveness *l, uint64_t now_ms);

/* child_worker.c: the master's side of the workers */
extern const struct child_kind child_worker_kind;
/* Starts a generation of m->n_workers workers in free slots; -1 if too few slots. */
int child_worker_start_generation(struct master *m);
/* Queues the current state as a new generation: a delta of n_changes
 * route changes, or the whole state when n_changes is -1. */
void child_worker_push_state(struct master *m, struct child_worker *w,
                             const struct route_change *changes, int n_changes, bool rules);
/* graceful: MSG_STOP, it drains; else SIGQUIT. Its slot is freed when it exits. */
void child_worker_stop(struct child *c, bool graceful);
unsigned child_worker_count_alive(const struct master *m);

/* aux.c: the auxiliary processes' (admin, metrics) life cycle */
/* A kind's own messages: 0 when taken, -1 when not one of them. */
typedef int aux_msg_fn(struct aux_proc *x, const struct chan_msg *msg);
/* Their kinds' dispatch: what both say (MSG_PONG, MSG_LISTENING, any
 * message a sign of life), then own (may be NULL); anything else kills it. */
int aux_dispatch(struct aux_proc *x, struct chan_msg *msg, aux_msg_fn *own);
/* Their kinds' exited: respawned unless the master is stopping, it is no
 * longer wanted, or it exited fatally; at once when the master asked it to
 * restart, else through the crash-loop brake. */
enum child_exit aux_exited(struct child *c, int status);
/* Their kinds' stop: SIGTERM, graceful or not. */
void aux_stop(struct child *c, bool graceful);
/* Records what a just started x runs with (iov: its settings as sent, plus
 * anything else whose change needs a restart). */
void aux_started(struct aux_proc *x, const struct iovec *iov, int n);
/*
 * After a reload: x ends up running on the current settings when wanted,
 * stopped otherwise, whatever state it was in. A running x is restarted
 * (gracefully: SIGTERM, and its exit respawns it at once) only when iov,
 * what it would be started with now, differs from what it runs with; one
 * not running is started now unless a respawn with the same settings is
 * already due.
 */
void aux_reload(struct aux_proc *x, const struct iovec *iov, int n);
void aux_free(struct aux_proc *x);
/* x said MSG_LISTENING. */
void aux_listening(struct aux_proc *x);
/* What READY=1 waits for: x not wanted, listening, or failed to start. */
bool aux_settled(const struct aux_proc *x);

/* geoip_db.c: (re)loads cfg's GeoIP database into m->geoip_fd. A failure
 * keeps a copy already loaded (logged); -1 only when there is none. */
int geoip_db_load(struct master *m, const struct config *cfg);

/* ticketkeys.c: the session ticket keys. ticketkeys_start draws the first
 * (-1 when getrandom() fails) and arms the rotation; ticketkeys_send gives a
 * starting worker the current and previous key. */
int ticketkeys_start(struct master *m);
void ticketkeys_send(struct master *m, struct child_worker *w);

/* accesslog.c: log.access_file. accesslog_open at start (-1: cannot open it);
 * accesslog_send gives a starting worker the file; accesslog_reopen (SIGUSR1,
 * reload) opens the configured path again and gives every worker the new fd. */
int accesslog_open(struct master *m);
void accesslog_close(struct master *m);
void accesslog_send(struct master *m, struct child_worker *w);
void accesslog_reopen(struct master *m, const char *why);

/* child_admin.c: the master's side of the admin process */
/* Who the admin process runs as and who may connect to its unix socket. */
struct child_admin_accounts {
    uid_t uid; /* grpc.user, else `user` (used when m->setuid) */
    gid_t gid;
    gid_t socket_gid; /* grpc.socket_group; as root, root's group by default; -1: as created */
};
/* Resolves them for m->cfg, after `user` (m->uid). -1 (logged) when an
 * account does not exist or would let the workers reach the admin API;
 * notices says what a master that is not root ignores. */
int child_admin_accounts_resolve(const struct master *m, bool notices,
                                 struct child_admin_accounts *out);
/* What the admin's requests are handled with: m's state, store and counters,
 * once the listeners are bound. */
void child_admin_api_init(struct master *m);
extern const struct child_kind child_admin_kind;
/* After a reload: restarted only when its settings or TLS files changed. */
void child_admin_reload(struct master *m);

/* child_metrics.c: the master's side of the metrics exporter */
extern const struct child_kind child_metrics_kind;
/* After a reload: restarted only when its settings changed. */
void child_metrics_reload(struct master *m);

#endif
