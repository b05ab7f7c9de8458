/*
 * Master process: start-up (database, listening sockets, children), the
 * supervision loop, publishing state changes, and stopping.
 *
 * Signal handlers only set flags; the handled signals are blocked except
 * inside epoll_pwait(), and all the work happens in the loop after it
 * returns (nginx's sigsuspend pattern, on epoll).
 */
#include <errno.h>
#include <libgen.h>
#include <malloc.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/priv.h"
#include "common/ratelimit.h"
#include "master/listen.h"
#include "master/master.h"
#include "master/sdnotify.h"
#include "master/spawn.h"

#define STOP_GRACE_MS 2000 /* past shutdown_timeout before stragglers are killed */
#define QUIT_GRACE_MS 1000
/* How long READY=1 waits for the admin API and the metrics listener once
 * every worker accepts: past it, READY=1 goes out with a STATUS= saying
 * what is not up (a hung child must not hold the unit in "activating"). */
#define READY_AUX_WAIT_MS 10000

static volatile sig_atomic_t sig_child, sig_term, sig_quit, sig_hup, sig_usr1;

static void on_signal(int signo)
{
    switch (signo) {
    case SIGCHLD:
        sig_child = 1;
        break;
    case SIGTERM:
    case SIGINT:
        sig_term = 1;
        break;
    case SIGQUIT:
        sig_quit = 1;
        break;
    case SIGHUP:
        sig_hup = 1;
        break;
    case SIGUSR1:
        sig_usr1 = 1;
        break;
    }
}

static const int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1};

/* Blocks the handled signals outside epoll_pwait; returns the mask to wait with. */
static void signals_setup(sigset_t *waitmask)
{
    sigset_t block, orig;
    struct sigaction sa = {.sa_handler = on_signal};

    sigemptyset(&block);
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < MC_ARRAY_LEN(handled_signals); i++) {
        sigaddset(&block, handled_signals[i]);
        sigaction(handled_signals[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_BLOCK, &block, &orig);
    spawn_set_sigmask(&orig);
    *waitmask = orig;
    for (size_t i = 0; i < MC_ARRAY_LEN(handled_signals); i++)
        sigdelset(waitmask, handled_signals[i]);
}

int *master_lfd(struct master *m, unsigned listener, unsigned sock)
{
    return &m->lfds[listener * MC_MAX_WORKERS + sock];
}

int master_listener_index(const struct master *m, const char *addr)
{
    for (unsigned i = 0; i < m->n_bound; i++) {
        if (strcmp(m->bound[i], addr) == 0)
            return (int)i;
    }
    return -1;
}

static void master_reload(struct master *m);

static bool generation_ready(const struct master *m)
{
    unsigned ready = 0;
    for (unsigned i = 0; i < m->n_slots; i++) {
        const struct worker_proc *w = &m->workers[i];
        ready += w->used && !w->retiring && w->ready;
    }
    return ready == m->n_workers;
}

/* Appends to buf what READY=1 says of x when it is wanted and not listening. */
static void ready_describe_down(char *buf, size_t size, const char *what, const struct aux_proc *x,
                                bool wanted)
{
    size_t n = strlen(buf);

    if (wanted && !x->listening)
        snprintf(buf + n, size - n, "; %s NOT UP (%s)", what,
                 x->failed ? "it failed to start" : "not listening yet");
}

/* READY=1, when owed: once the admin and exporter are up (or failed to
 * start), or at the deadline, saying what is not up. */
static void master_ready_send(struct master *m, bool deadline)
{
    bool admin = m->cfg->grpc.enabled, metrics = m->cfg->metrics.enabled;
    char down[160] = "";

    if (!m->ready_owed ||
        (!deadline && !(aux_settled(&m->admin, admin) && aux_settled(&m->metrics, metrics))))
        return;
    m->ready_owed = false;
    loop_timer_stop(m->loop, &m->ready_timer);
    if (m->phase == MASTER_STOPPING)
        return;
    ready_describe_down(down, sizeof(down), "admin API", &m->admin, admin);
    ready_describe_down(down, sizeof(down), "metrics listener", &m->metrics, metrics);
    if (down[0] != '\0')
        log_error("ready with the workers accepting, but%s: see its lines above", down + 1);
    sdnotify("READY=1\nSTATUS=serving %u listener(s) with %u worker(s)%s%s", m->n_bound,
             m->n_workers, m->ready_reloaded ? "; reloaded" : "", down);
}

static void ready_timer_cb(struct timer *t)
{
    master_ready_send(t->data, true);
}

/* Every worker accepts: READY=1 goes out once the rest is up too, or
 * after READY_AUX_WAIT_MS. */
static void master_ready_owe(struct master *m, bool reloaded)
{
    m->ready_owed = true;
    m->ready_reloaded = reloaded;
    loop_timer_set(m->loop, &m->ready_timer, READY_AUX_WAIT_MS);
    master_ready_send(m, false);
}

void master_ready_update(struct master *m)
{
    master_ready_send(m, false);
}

/* The new generation is accepting: the old one stops accepting and drains. */
static void reload_complete(struct master *m)
{
    unsigned retired = 0;

    for (unsigned i = 0; i < m->n_slots; i++) {
        struct worker_proc *w = &m->workers[i];
        if (w->used && w->retiring) {
            worker_stop(m, w, true);
            retired++;
        }
    }
    config_free(m->cfg_prev);
    m->cfg_prev = NULL;
    m->reloading = false;
    atomic_fetch_add_explicit(&m->shm->reloads, 1, memory_order_relaxed);
    /* restarted only when their own settings (or certificates) changed */
    admin_reload(m);
    metrics_reload(m);
    log_info("reload complete in %llu ms: %u worker(s) took over, %u draining",
             (unsigned long long)(loop_now(m->loop) - m->reload_started_ms), m->n_workers, retired);
    master_ready_owe(m, true);
    if (m->reload_pending) {
        m->reload_pending = false;
        master_reload(m);
    }
}

void master_check_ready(struct master *m)
{
    if (!generation_ready(m))
        return;
    if (m->phase == MASTER_STARTING) {
        m->phase = MASTER_RUNNING;
        log_info("ready: %u listener(s), %u worker(s)", m->n_bound, m->n_workers);
        /* the start-up push of every route to every worker is sent: give its buffers back */
        malloc_trim(0);
        master_ready_owe(m, false);
    } else if (m->reloading) {
        reload_complete(m);
    }
}

/* A country rule without a GeoIP database cannot match: say so where operators look. */
static void master_warn_countries(const struct master *m)
{
    unsigned n = 0;

    for (unsigned i = 0; i < m->state->n_rules; i++)
        n += m->state->rules[i].type == FW_COUNTRY;
    if (n > 0 && m->geoip_fd < 0)
        log_warn("%u country rule(s) in the database are NOT enforced: firewall.geoip_db is not "
                 "set",
                 n);
}

/* Whether generation gen waits for wp: a live worker that has not applied
 * it, unless it is still starting from that generation or a newer one (it
 * accepts nothing before; under back-to-back reloads new workers keep
 * starting, and waiting for them would hold a reply for ever). */
static bool worker_owes_ack(const struct worker_proc *wp, uint32_t gen)
{
    return wp->pid != 0 && wp->chan.fd >= 0 && wp->acked_gen < gen &&
           (wp->ready || wp->start_gen < gen);
}

void master_expire_waits(struct master *m)
{
    uint64_t now = loop_now(m->loop);

    while (m->waits != NULL && now - m->waits->started_ms >= PUBLISH_DEADLINE_MS) {
        struct publish_wait *w = m->waits;
        log_error("generation %u is not applied by every worker after %d ms: answering its "
                  "change as committed but not yet applied everywhere",
                  w->gen, PUBLISH_DEADLINE_MS);
        m->waits = w->next;
        w->done(w->arg, false);
        free(w);
    }
}

/* backend_tls re-encrypts without verifying the backend (SPEC section 6): said once, at start. */
static void master_warn_backend_tls(const struct master *m)
{
    unsigned n = 0;

    for (unsigned i = 0; i < m->state->n_listeners; i++) {
        for (unsigned j = 0; j < m->state->listeners[i].n_routes; j++)
            n += m->state->listeners[i].routes[j].backend_tls;
    }
    if (n > 0)
        log_warn("%u route(s) with backend_tls: backend certificates are not verified", n);
}

/* Runs the callbacks of every publish that all live workers have acknowledged. */
void master_check_waits(struct master *m)
{
    while (m->waits != NULL) {
        struct publish_wait *w = m->waits;
        for (unsigned i = 0; i < m->n_slots; i++) {
            if (worker_owes_ack(&m->workers[i], w->gen))
                return;
        }
        m->waits = w->next;
        w->done(w->arg, true);
        free(w);
    }
}

int master_publish(struct master *m, master_done_fn *done, void *arg)
{
    const char *err;
    struct publish_wait *w = malloc(sizeof(*w));
    struct state *st = w ? store_load(m->store, &err) : NULL;

    if (st == NULL) {
        log_error("cannot load the state from the database: %s", w ? err : "out of memory");
        free(w);
        return -1;
    }
    /* a delta when few routes changed: the cost of a change then does not grow with the table */
    struct route_change *changes;
    struct state *old = m->state;
    int n_changes = state_route_changes(old, st, &changes);
    unsigned n_routes = 0;
    for (unsigned i = 0; i < st->n_listeners; i++)
        n_routes += st->listeners[i].n_routes;
    if (n_changes > 0 && (unsigned)n_changes > n_routes / 2) {
        free(changes);
        changes = NULL;
        n_changes = -1;
    }
    /* the rules travel only when they changed: a route change stays small at 100,000 rules */
    bool rules = !state_rules_equal(old, st);
    if (rules) {
        struct msg_fw_rule *packed;
        if (state_rules_pack(st, &packed) < 0) {
            log_error("out of memory packing %u firewall rule(s)", st->n_rules);
            free(changes);
            state_free(st);
            free(w);
            return -1;
        }
        free(m->rules_packed);
        m->rules_packed = packed;
    }
    m->state = st;
    m->gen++;
    /* an admin change reads the certificates of the routes it sends again */
    certs_mark_stale(&m->certs, m->state);
    *w = (struct publish_wait){
        .gen = m->gen, .started_ms = loop_now(m->loop), .done = done, .arg = arg};
    struct publish_wait **tail = &m->waits;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = w;
    for (unsigned i = 0; i < m->n_slots; i++)
        worker_push_state(m, &m->workers[i], changes, n_changes, rules);
    free(changes);
    if (rules)
        master_warn_countries(m);
    state_free(old); /* after the push: removed routes' names point into it */
    master_check_waits(m);
    return 0;
}

static void worker_respawn_cb(struct timer *t)
{
    struct worker_proc *w = t->data;
    if (w->m->phase != MASTER_STOPPING && w->used && !w->retiring && w->pid == 0)
        worker_spawn(w->m, w);
}

static void admin_respawn_cb(struct timer *t)
{
    struct master *m = t->data;
    if (m->phase != MASTER_STOPPING && m->admin.pid == 0 && m->cfg->grpc.enabled)
        admin_spawn(m);
}

static void metrics_respawn_cb(struct timer *t)
{
    struct master *m = t->data;
    if (m->phase != MASTER_STOPPING && m->metrics.pid == 0 && m->cfg->metrics.enabled)
        metrics_spawn(m);
}

static void master_reap(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == m->admin.pid) {
            admin_exited(m, status);
            continue;
        }
        if (pid == m->metrics.pid) {
            metrics_exited(m, status);
            continue;
        }
        for (unsigned i = 0; i < m->n_slots; i++) {
            if (m->workers[i].pid == pid) {
                worker_exited(m, &m->workers[i], status);
                break;
            }
        }
    }
}

static void close_listeners(struct master *m)
{
    for (unsigned i = 0; m->lfds != NULL && i < m->n_bound * MC_MAX_WORKERS; i++) {
        if (m->lfds[i] >= 0)
            close(m->lfds[i]);
        m->lfds[i] = -1;
    }
}

static bool children_alive(const struct master *m)
{
    return workers_alive(m) > 0 || m->admin.pid != 0 || m->metrics.pid != 0;
}

static void stop_timer_cb(struct timer *t)
{
    struct master *m = t->data;
    for (unsigned i = 0; i < m->n_slots; i++) {
        if (m->workers[i].pid != 0) {
            log_warn("worker %u (pid %d) still running at the deadline, killing it", i,
                     (int)m->workers[i].pid);
            kill(m->workers[i].pid, SIGKILL);
        }
    }
    if (m->admin.pid != 0)
        kill(m->admin.pid, SIGKILL);
    if (m->metrics.pid != 0)
        kill(m->metrics.pid, SIGKILL);
}

void master_stop(struct master *m, bool graceful)
{
    if (m->phase == MASTER_STOPPING && graceful)
        return;
    log_info("%s stop: %u worker(s) running", graceful ? "graceful" : "immediate",
             workers_alive(m));
    sdnotify("STOPPING=1\nSTATUS=stopping");
    m->phase = MASTER_STOPPING;
    close_listeners(m);
    for (unsigned i = 0; i < m->n_slots; i++)
        worker_stop(m, &m->workers[i], graceful);
    admin_stop(m);
    metrics_stop(m);
    loop_timer_set(m->loop, &m->stop_timer,
                   graceful ? m->cfg->proxy.shutdown_timeout_ms + STOP_GRACE_MS : QUIT_GRACE_MS);
}

static void watchdog_cb(struct timer *t)
{
    struct master *m = t->data;
    sdnotify("WATCHDOG=1");
    loop_timer_set(m->loop, t, sdnotify_watchdog_ms() / 2);
}

/* Resolves `user` and the admin's accounts; when not root `user` is ignored
 * with a notice. */
static int master_resolve_user(struct master *m)
{
    if (geteuid() != 0) {
        if (m->cfg->user != NULL)
            log_info("not started as root: ignoring user \"%s\"", m->cfg->user);
        return admin_accounts_resolve(m, true, &(struct admin_accounts){0});
    }
    if (m->cfg->user == NULL) {
        log_error("started as root: the config must name a `user` for workers to run as");
        return -1;
    }
    struct passwd *pw = getpwnam(m->cfg->user);
    if (pw == NULL) {
        log_error("user \"%s\" does not exist", m->cfg->user);
        return -1;
    }
    m->setuid = true;
    m->uid = pw->pw_uid;
    m->gid = pw->pw_gid;
    return admin_accounts_resolve(m, true, &(struct admin_accounts){0});
}

/* A proxy holds two fds per connection: take the whole hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Opens the database, seeds it on first run, and loads the state. */
static int master_load_state(struct master *m)
{
    const struct config *cfg = m->cfg;
    const char *err;
    bool empty;
    unsigned n_diff;

    m->store = store_open(cfg->database_path, &err);
    if (m->store == NULL) {
        log_error("%s", err);
        return -1;
    }
    if (store_is_empty(m->store, &empty, &err) < 0) {
        log_error("database %s: %s", cfg->database_path, err);
        return -1;
    }
    if (empty) {
        if (store_seed(m->store, cfg, &err) < 0) {
            log_error("seeding database %s from the config: %s", cfg->database_path, err);
            return -1;
        }
        log_info("database %s was empty: seeded from %s", cfg->database_path, cfg->path);
        /* what the seed just committed, without reading 10,000 routes back */
        if ((m->state = state_from_config(cfg)) == NULL) {
            log_error("out of memory building the state from %s", cfg->path);
            return -1;
        }
    } else if ((m->state = store_load(m->store, &err)) == NULL) {
        log_error("database %s: %s", cfg->database_path, err);
        return -1;
    }
    if (!empty && store_config_diff(m->store, cfg, m->state, &n_diff, &err) < 0) {
        log_error("database %s: %s", cfg->database_path, err);
        return -1;
    }
    if (!empty && n_diff > 0)
        log_warn("the config's listeners, routes and rules differ from the database in %u "
                 "entr%s; the database wins",
                 n_diff, n_diff == 1 ? "y" : "ies");
    config_drop_seed(m->cfg);
    store_release_memory(m->store);
    if (state_rules_pack(m->state, &m->rules_packed) < 0) {
        log_error("out of memory packing %u firewall rule(s)", m->state->n_rules);
        return -1;
    }
    return 0;
}

/* Binds more SO_REUSEPORT sockets so that every listener has n. */
static int master_grow_sockets(struct master *m, unsigned n)
{
    for (unsigned i = 0; i < m->n_bound; i++) {
        const struct listener_conf *l =
            listener_conf_find(m->state->listeners, m->state->n_listeners, m->bound[i]);
        for (unsigned s = m->n_sockets; s < n; s++) {
            if (l == NULL || (*master_lfd(m, i, s) = listen_open(l->addr, &l->bind)) < 0)
                return -1;
        }
    }
    if (n > m->n_sockets)
        m->n_sockets = n;
    return 0;
}

static int master_bind(struct master *m)
{
    const struct state *st = m->state;

    if (st->n_listeners > MC_MAX_LISTENERS) {
        log_error("%u listeners in the database; at most %d are supported", st->n_listeners,
                  MC_MAX_LISTENERS);
        return -1;
    }
    m->bound = calloc(st->n_listeners + 1, sizeof(*m->bound));
    m->lfds = malloc(sizeof(int) * (st->n_listeners + 1) * MC_MAX_WORKERS);
    if (m->bound == NULL || m->lfds == NULL)
        return -1;
    for (unsigned i = 0; i < (st->n_listeners + 1) * MC_MAX_WORKERS; i++)
        m->lfds[i] = -1;
    for (unsigned i = 0; i < st->n_listeners; i++) {
        if ((m->bound[i] = strdup(st->listeners[i].addr)) == NULL)
            return -1;
        m->n_bound = i + 1;
    }
    /* only at start: a reload's new sockets join this instance's own on its ports */
    for (unsigned i = 0; i < st->n_listeners; i++) {
        if (listen_probe(st->listeners[i].addr, &st->listeners[i].bind) < 0)
            return -1;
    }
    if (master_grow_sockets(m, m->n_workers) < 0)
        return -1;
    for (unsigned i = 0; i < st->n_listeners; i++)
        log_info("listening on %s (%u route(s))", st->listeners[i].addr, st->listeners[i].n_routes);
    return 0;
}

/*
 * The old generation keeps serving until the new one is ready; then it is
 * retired. Run when a new worker dies fatally before that point.
 */
void master_reload_failed(struct master *m, const char *why)
{
    for (unsigned i = 0; i < m->n_slots; i++) {
        struct worker_proc *w = &m->workers[i];
        if (!w->used)
            continue;
        if (!w->retiring) {
            /* the new generation: never accepted for long, if at all */
            w->retiring = true;
            loop_timer_stop(m->loop, &w->respawn);
            if (w->pid != 0)
                worker_stop(m, w, true);
            else
                w->used = false;
        } else if (!w->draining) {
            /* the generation that keeps serving: one that died meanwhile starts again */
            w->retiring = false;
            if (w->pid == 0 && !timer_armed(&w->respawn))
                loop_timer_set(m->loop, &w->respawn, 0);
        }
    }
    config_free(m->cfg);
    m->cfg = m->cfg_prev;
    m->cfg_prev = NULL;
    m->n_workers = m->n_workers_prev;
    m->reloading = false;
    log_configure(m->cfg->log_level, m->cfg->log_format);
    accesslog_reopen(m, "reload rollback");
    log_error("reload failed: %s; the previous configuration keeps running", why);
    sdnotify("READY=1\nSTATUS=reload failed: %s; running the previous configuration", why);
}

static void report_reload_error(void *arg, const char *msg)
{
    unsigned *n = arg;
    (*n)++;
    log_error("reload: %s", msg);
}

/* What a reload cannot change is kept, and said once. */
static void reload_keep_fixed(struct master *m, struct config *next)
{
    if (strcmp(next->database_path, m->cfg->database_path) != 0)
        log_warn("reload: database.path changed to %s; it takes effect on restart, %s stays open",
                 next->database_path, m->cfg->database_path);
    for (unsigned i = 0; i < next->n_listeners; i++) {
        if (master_listener_index(m, next->listeners[i].addr) < 0)
            log_warn("reload: listener %s is in the config but not bound; listeners are owned "
                     "by the database and bound at start",
                     next->listeners[i].addr);
    }
}

/*
 * SIGHUP: re-reads the config file and applies what it owns (timeouts,
 * log, workers, affinity, user, admin and metrics settings) by starting a
 * new generation of workers on the same listening sockets; the old one
 * keeps accepting until the new one is ready, then drains. A bad config
 * changes nothing.
 */
static void master_reload(struct master *m)
{
    unsigned n_errors = 0;

    if (m->phase != MASTER_RUNNING || m->reloading) {
        m->reload_pending = m->phase != MASTER_STOPPING;
        log_info("SIGHUP: a reload is already in progress; another one follows it");
        return;
    }
    /* a READY=1 still owed is this reload's to send */
    m->ready_owed = false;
    loop_timer_stop(m->loop, &m->ready_timer);
    sdnotify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
             (unsigned long long)mc_monotonic_ms() * 1000, m->cfg->path);
    log_info("SIGHUP: reloading %s", m->cfg->path);
    struct config *next = config_load(m->cfg->path, report_reload_error, &n_errors);
    if (next == NULL) {
        log_error("reload: %u error(s) in %s; the previous configuration keeps running", n_errors,
                  m->cfg->path);
        sdnotify("READY=1\nSTATUS=reload failed: %u error(s) in %s; running the previous "
                 "configuration",
                 n_errors, m->cfg->path);
        return;
    }
    reload_keep_fixed(m, next);
    config_drop_seed(next);
    /* the new workers get new copies; a file that fails keeps the old one */
    master_geoip_load(m, next);
    certs_mark_stale(&m->certs, m->state);

    struct config *prev = m->cfg;
    bool prev_setuid = m->setuid;
    uid_t prev_uid = m->uid;
    gid_t prev_gid = m->gid;
    unsigned n = config_worker_count(next);
    m->cfg = next;
    if (master_resolve_user(m) < 0 || master_grow_sockets(m, n) < 0) {
        m->cfg = prev;
        m->setuid = prev_setuid;
        m->uid = prev_uid;
        m->gid = prev_gid;
        config_free(next);
        sdnotify("READY=1\nSTATUS=reload failed; running the previous configuration");
        return;
    }
    m->cfg_prev = prev;
    m->n_workers_prev = m->n_workers;
    m->n_workers = n;
    m->reloading = true;
    m->reload_started_ms = loop_now(m->loop);
    log_configure(next->log_level, next->log_format);
    accesslog_reopen(m, "reload");
    for (unsigned i = 0; i < m->n_slots; i++) {
        if (m->workers[i].used)
            m->workers[i].retiring = true;
    }
    if (workers_start_generation(m) < 0) {
        master_reload_failed(m, "no free worker slots for a new generation");
        return;
    }
    master_check_ready(m);
}

static int master_find_self(struct master *m)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n < 0) {
        log_errno(LOGL_ERROR, errno, "readlink(/proc/self/exe)");
        return -1;
    }
    path[n] = '\0';
    m->self_dir = strdup(dirname(path));
    return m->self_dir ? 0 : -1;
}

static void master_free(struct master *m)
{
    close_listeners(m);
    free(m->lfds);
    for (unsigned i = 0; m->bound != NULL && i < m->n_bound; i++)
        free(m->bound[i]);
    free(m->bound);
    for (unsigned i = 0; i < m->n_slots; i++) {
        if (m->workers[i].chan.fd >= 0)
            chan_close(&m->workers[i].chan);
    }
    config_free(m->cfg_prev);
    aux_free(&m->admin);
    aux_free(&m->metrics);
    while (m->waits != NULL) {
        struct publish_wait *w = m->waits;
        m->waits = w->next;
        free(w);
    }
    state_free(m->state);
    certs_free(&m->certs);
    free(m->rules_packed);
    store_close(m->store);
    if (m->geoip_fd >= 0)
        close(m->geoip_fd);
    if (m->ratelimit_fd >= 0)
        close(m->ratelimit_fd);
    if (m->shm_fd >= 0)
        close(m->shm_fd);
    free(m->self_dir);
    accesslog_close(m);
    log_detach();
    loop_free(m->loop);
}

static void master_start_children(struct master *m)
{
    m->stop_timer = (struct timer){.cb = stop_timer_cb, .data = m};
    m->ready_timer = (struct timer){.cb = ready_timer_cb, .data = m};
    if (sdnotify_watchdog_ms() > 0) {
        m->watchdog = (struct timer){.cb = watchdog_cb, .data = m};
        loop_timer_set(m->loop, &m->watchdog, sdnotify_watchdog_ms() / 2);
    }
    sdnotify("STATUS=starting %u worker(s)", m->n_workers);
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        struct worker_proc *w = &m->workers[i];
        w->m = m;
        w->id = i;
        w->respawn = (struct timer){.cb = worker_respawn_cb, .data = w};
    }
    workers_start_generation(m);
    watchdog_start(m);
    m->admin.m = m;
    m->admin.name = "admin";
    m->admin.respawn = (struct timer){.cb = admin_respawn_cb, .data = m};
    if (m->cfg->grpc.enabled)
        admin_spawn(m);
    m->metrics.m = m;
    m->metrics.name = "metrics exporter";
    m->metrics.respawn = (struct timer){.cb = metrics_respawn_cb, .data = m};
    if (m->cfg->metrics.enabled)
        metrics_spawn(m);
}

int master_run(struct config *cfg)
{
    struct master m = {.cfg = cfg,
                       .shm_fd = -1,
                       .geoip_fd = -1,
                       .ratelimit_fd = -1,
                       .access_fd = -1,
                       .exit_code = 0,
                       .gen = 1};
    sigset_t waitmask;

    m.n_workers = config_worker_count(cfg);
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        m.workers[i].chan.fd = -1;
    m.admin.chan.fd = -1;
    m.metrics.chan.fd = -1;

    sdnotify_init();
    raise_nofile();
    m.loop = loop_new();
    if (m.loop == NULL || master_find_self(&m) < 0 || master_resolve_user(&m) < 0 ||
        master_load_state(&m) < 0)
        goto fail;
    /* it binds and supervises from here on: no log write may hold it up. Before
     * priv_restrict_master(): reopening stderr may need CAP_DAC_OVERRIDE (another
     * user's pipe). */
    log_nonblock(m.loop);
    m.shm_fd = shm_create(&m.shm);
    m.ratelimit_fd = ratelimit_create(&m.ratelimit);
    if (m.shm_fd < 0 || m.ratelimit_fd < 0 || master_geoip_load(&m, m.cfg) < 0 ||
        ticketkeys_start(&m) < 0)
        goto fail;
    master_warn_countries(&m);
    master_warn_backend_tls(&m);
    /* bound: from here on the master keeps only what supervising needs */
    if (master_bind(&m) < 0 || priv_restrict_master() < 0)
        goto fail;
    if (accesslog_open(&m) < 0)
        goto fail;
    log_count_drops(&m.shm->log_dropped_master);
    signals_setup(&waitmask);
    master_start_children(&m);

    while (!(m.phase == MASTER_STOPPING && !children_alive(&m))) {
        if (loop_run_once(m.loop, &waitmask) < 0) {
            m.exit_code = 1;
            break;
        }
        if (sig_child) {
            sig_child = 0;
            master_reap(&m);
        }
        if (sig_quit) {
            sig_quit = 0;
            master_stop(&m, false);
        }
        if (sig_term) {
            sig_term = 0;
            master_stop(&m, true);
        }
        if (sig_hup) {
            sig_hup = 0;
            master_reload(&m);
        }
        if (sig_usr1) {
            sig_usr1 = 0;
            accesslog_reopen(&m, "SIGUSR1");
        }
    }
    log_info("stopped");
    master_free(&m);
    config_free(m.cfg);
    return m.exit_code;
fail:
    master_free(&m);
    config_free(m.cfg);
    return 1;
}
