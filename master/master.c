/*
 * Master process loop. Signal handlers only set flags; signals are
 * blocked except inside epoll_pwait(), and all the work happens in the
 * loop after it returns (nginx's sigsuspend pattern, on epoll).
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "sdnotify.h"

#define QUICK_DEATH_MS                                                                             \
    1000 /* a worker dying sooner than this after start counts toward the brake */
#define RESPAWN_MAX_MS 5000
#define STOP_GRACE_MS  2000 /* past shutdown_timeout before stragglers are killed */
#define QUIT_GRACE_MS  1000
#define WORKER_CHAN_FD 3

static volatile sig_atomic_t sig_child, sig_term, sig_quit, sig_hup;

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
    }
}

static const int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP};

/* Blocks the handled signals outside epoll_pwait; returns the mask to wait with. */
static void signals_setup(sigset_t *waitmask, sigset_t *origmask)
{
    sigset_t block;
    struct sigaction sa = {.sa_handler = on_signal};

    sigemptyset(&block);
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < MC_ARRAY_LEN(handled_signals); i++) {
        sigaddset(&block, handled_signals[i]);
        sigaction(handled_signals[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_BLOCK, &block, origmask);
    *waitmask = *origmask;
    for (size_t i = 0; i < MC_ARRAY_LEN(handled_signals); i++)
        sigdelset(waitmask, handled_signals[i]);
}

static sigset_t orig_sigmask;

static int *lfd(struct master *m, unsigned listener, unsigned worker)
{
    return &m->lfds[listener * m->n_workers + worker];
}

static void worker_send_settings(struct master *m, struct worker_proc *w)
{
    const struct config *cfg = m->cfg;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct msg_settings s = {
        .worker_id = w->id,
        .cpu = cfg->cpu_affinity && ncpu > 0 ? (int32_t)(w->id % (unsigned)ncpu) : -1,
        .setuid = m->setuid,
        .uid = m->uid,
        .gid = m->gid,
        .log_level = cfg->log_level,
        .log_format = cfg->log_format,
        .connect_timeout_ms = cfg->proxy.connect_timeout_ms,
        .handshake_timeout_ms = cfg->proxy.handshake_timeout_ms,
        .idle_timeout_ms = cfg->proxy.idle_timeout_ms,
        .shutdown_timeout_ms = cfg->proxy.shutdown_timeout_ms,
    };
    chan_send(&w->chan, MSG_SETTINGS, 0, &s, sizeof(s), -1);
}

/* Queues one whole generation of routing state: BEGIN, objects, COMMIT. */
static int worker_send_state(struct master *m, struct worker_proc *w)
{
    struct chan *c = &w->chan;
    unsigned n_routes = 0;

    for (unsigned i = 0; i < m->n_listeners; i++)
        n_routes += m->listeners[i].n_routes;
    struct msg_state_begin b = {.n_listeners = m->n_listeners, .n_routes = n_routes};
    if (chan_send(c, MSG_STATE_BEGIN, m->gen, &b, sizeof(b), -1) < 0)
        return -1;
    for (unsigned i = 0; i < m->n_listeners; i++) {
        const struct listener_conf *l = &m->listeners[i];
        struct msg_listener_conf lc = {
            .id = i,
            .max_connections = l->max_connections,
            .proxy_protocol = l->proxy_protocol,
        };
        if (chan_send(c, MSG_LISTENER_CONF, m->gen, &lc, sizeof(lc), -1) < 0)
            return -1;
        for (unsigned j = 0; j < l->n_routes; j++) {
            const struct route_conf *r = &l->routes[j];
            struct msg_route mr = {
                .listener_id = i,
                .mode = (uint8_t)r->mode,
                .backend_tls = r->backend_tls,
                .send_proxy_protocol = r->send_proxy_protocol,
                .hostname_len = (uint8_t)strlen(r->hostname),
                .backend_len = (uint16_t)strlen(r->backend),
                .backend_addr = r->backend_addr,
            };
            struct iovec iov[3] = {
                {&mr, sizeof(mr)},
                {r->hostname, mr.hostname_len},
                {r->backend, mr.backend_len},
            };
            if (chan_sendv(c, MSG_ROUTE, m->gen, iov, 3, -1) < 0)
                return -1;
        }
    }
    return chan_send(c, MSG_STATE_COMMIT, m->gen, NULL, 0, -1);
}

static void worker_flush(struct worker_proc *w)
{
    if (chan_flush(&w->chan) == MC_ERROR)
        log_warn("worker %u (pid %d): channel closed", w->id, (int)w->pid);
}

static void master_check_ready(struct master *m)
{
    if (m->phase != MASTER_STARTING)
        return;
    for (unsigned i = 0; i < m->n_workers; i++) {
        if (!m->workers[i].ready)
            return;
    }
    m->phase = MASTER_RUNNING;
    log_info("ready: %u listener(s), %u worker(s)", m->n_listeners, m->n_workers);
    sdnotify("READY=1\nSTATUS=serving %u listener(s) with %u worker(s)", m->n_listeners,
             m->n_workers);
}

static void worker_on_message(struct worker_proc *w, const struct chan_msg *msg)
{
    switch (msg->hdr.type) {
    case MSG_ACK:
        if (msg->hdr.len != 0)
            break;
        w->acked_gen = msg->hdr.gen;
        if (!w->ready) {
            w->ready = true;
            log_debug("worker %u (pid %d) is accepting", w->id, (int)w->pid);
            master_check_ready(w->m);
        }
        return;
    }
    /* our own child speaking out of turn is a bug; it is replaced, not trusted */
    log_error("worker %u (pid %d): unexpected message type %u len %u; killing it", w->id,
              (int)w->pid, msg->hdr.type, msg->hdr.len);
    kill(w->pid, SIGKILL);
}

static void worker_on_event(struct ev *ev, uint32_t events)
{
    struct worker_proc *w = ev->data;
    struct chan_msg msg;
    int rc;

    if (events & EPOLLOUT)
        worker_flush(w);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    rc = chan_read(&w->chan);
    while (chan_next(&w->chan, &msg) == 1) {
        if (msg.fd >= 0)
            close(msg.fd);
        worker_on_message(w, &msg);
    }
    if (rc != MC_OK) {
        /* EOF or error: the process is gone or going; SIGCHLD does the rest */
        loop_del(w->m->loop, &w->ev);
        chan_close(&w->chan);
        w->chan.fd = -1;
    }
}

static void worker_spawn(struct master *m, struct worker_proc *w)
{
    int sv[2];
    char id[16];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        log_errno(LOGL_ERROR, errno, "worker %u: socketpair() failed", w->id);
        loop_timer_set(m->loop, &w->respawn, RESPAWN_MAX_MS);
        return;
    }
    snprintf(id, sizeof(id), "%u", w->id);
    pid_t pid = fork();
    if (pid < 0) {
        log_errno(LOGL_ERROR, errno, "worker %u: fork() failed", w->id);
        close(sv[0]);
        close(sv[1]);
        loop_timer_set(m->loop, &w->respawn, RESPAWN_MAX_MS);
        return;
    }
    if (pid == 0) {
        /* exec a fresh image: no inherited heap, database handle or ASLR layout */
        char *argv[] = {"mc-proxy", "__worker", id, NULL};
        sigprocmask(SIG_SETMASK, &orig_sigmask, NULL);
        if (sv[1] == WORKER_CHAN_FD)
            fcntl(sv[1], F_SETFD, 0);
        else if (dup2(sv[1], WORKER_CHAN_FD) < 0)
            _exit(127);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(sv[1]);
    w->pid = pid;
    w->ready = false;
    w->acked_gen = 0;
    w->started_ms = loop_now(m->loop);
    chan_init(&w->chan, sv[0]);
    w->ev = (struct ev){.fd = sv[0], .cb = worker_on_event, .data = w};
    if (loop_add(m->loop, &w->ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        log_errno(LOGL_ERROR, errno, "worker %u: epoll_ctl() failed", w->id);
    atomic_store(&m->shm->workers[w->id].pid, pid);

    struct msg_shm s = {.size = sizeof(struct shm)};
    chan_send(&w->chan, MSG_SHM, 0, &s, sizeof(s), m->shm_fd);
    worker_send_settings(m, w);
    for (unsigned i = 0; i < m->n_listeners; i++) {
        struct msg_listener ml = {.id = i};
        snprintf(ml.addr, sizeof(ml.addr), "%s", m->listeners[i].addr);
        chan_send(&w->chan, MSG_LISTENER, 0, &ml, sizeof(ml), *lfd(m, i, w->id));
    }
    if (worker_send_state(m, w) < 0)
        log_error("worker %u: cannot queue the routing state", w->id);
    worker_flush(w);
    log_info("worker %u started, pid %d", w->id, (int)pid);
}

static void worker_respawn_cb(struct timer *t)
{
    struct worker_proc *w = t->data;
    if (w->m->phase != MASTER_STOPPING && w->pid == 0)
        worker_spawn(w->m, w);
}

static unsigned workers_alive(const struct master *m)
{
    unsigned n = 0;
    for (unsigned i = 0; i < m->n_workers; i++)
        n += m->workers[i].pid != 0;
    return n;
}

static void worker_exited(struct master *m, struct worker_proc *w, int status)
{
    char how[64];
    bool fatal = WIFEXITED(status) && WEXITSTATUS(status) == MC_EXIT_FATAL;

    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    if (w->chan.fd >= 0) {
        loop_del(m->loop, &w->ev);
        chan_close(&w->chan);
        w->chan.fd = -1;
    }
    shm_worker_reap(m->shm, w->id);
    w->pid = 0;
    w->ready = false;

    if (m->phase == MASTER_STOPPING) {
        log_info("worker %u %s", w->id, how);
        return;
    }
    if (fatal) {
        log_error("worker %u %s (fatal), not respawning it", w->id, how);
        if (workers_alive(m) == 0) {
            log_error("no worker left, stopping");
            m->exit_code = 1;
            m->phase = MASTER_STOPPING;
        }
        return;
    }
    uint64_t lived = loop_now(m->loop) - w->started_ms;
    w->quick_deaths = lived < QUICK_DEATH_MS ? w->quick_deaths + 1 : 0;
    if (w->quick_deaths <= 1) {
        log_warn("worker %u %s, respawning", w->id, how);
        worker_spawn(m, w);
        return;
    }
    uint64_t delay =
        MC_MIN((uint64_t)100 << MC_MIN(w->quick_deaths - 2, 10u), (uint64_t)RESPAWN_MAX_MS);
    log_error("worker %u %s again within %u ms of starting, respawning in %llu ms", w->id, how,
              QUICK_DEATH_MS, (unsigned long long)delay);
    loop_timer_set(m->loop, &w->respawn, delay);
}

static void master_reap(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < m->n_workers; i++) {
            if (m->workers[i].pid == pid) {
                worker_exited(m, &m->workers[i], status);
                break;
            }
        }
    }
}

static void close_listeners(struct master *m)
{
    for (unsigned i = 0; i < m->n_listeners * m->n_workers; i++) {
        if (m->lfds[i] >= 0)
            close(m->lfds[i]);
        m->lfds[i] = -1;
    }
}

static void stop_timer_cb(struct timer *t)
{
    struct master *m = t->data;
    for (unsigned i = 0; i < m->n_workers; i++) {
        if (m->workers[i].pid != 0) {
            log_warn("worker %u (pid %d) still running at the deadline, killing it", i,
                     (int)m->workers[i].pid);
            kill(m->workers[i].pid, SIGKILL);
        }
    }
}

/* graceful: workers stop accepting and drain; immediate: workers exit now */
static void master_stop(struct master *m, bool graceful)
{
    if (m->phase == MASTER_STOPPING && graceful)
        return;
    log_info("%s stop: %u worker(s) running", graceful ? "graceful" : "immediate",
             workers_alive(m));
    sdnotify("STOPPING=1\nSTATUS=stopping");
    m->phase = MASTER_STOPPING;
    close_listeners(m);
    for (unsigned i = 0; i < m->n_workers; i++) {
        struct worker_proc *w = &m->workers[i];
        loop_timer_stop(m->loop, &w->respawn);
        if (w->pid == 0)
            continue;
        if (graceful && w->chan.fd >= 0) {
            chan_send(&w->chan, MSG_STOP, 0, NULL, 0, -1);
            worker_flush(w);
        } else {
            kill(w->pid, SIGQUIT);
        }
    }
    loop_timer_set(m->loop, &m->stop_timer,
                   graceful ? m->cfg->proxy.shutdown_timeout_ms + STOP_GRACE_MS : QUIT_GRACE_MS);
}

static void watchdog_cb(struct timer *t)
{
    struct master *m = t->data;
    sdnotify("WATCHDOG=1");
    loop_timer_set(m->loop, t, sdnotify_watchdog_ms() / 2);
}

/* Resolves `user`; when not root it is ignored with a notice. */
static int master_resolve_user(struct master *m)
{
    if (geteuid() != 0) {
        if (m->cfg->user != NULL)
            log_info("not started as root: ignoring user \"%s\"", m->cfg->user);
        return 0;
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
    return 0;
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

static int master_bind(struct master *m)
{
    m->lfds = malloc(sizeof(int) * (m->n_listeners ? m->n_listeners : 1) * m->n_workers);
    if (m->lfds == NULL)
        return -1;
    for (unsigned i = 0; i < m->n_listeners * m->n_workers; i++)
        m->lfds[i] = -1;
    for (unsigned i = 0; i < m->n_listeners; i++) {
        const struct listener_conf *l = &m->listeners[i];
        for (unsigned w = 0; w < m->n_workers; w++) {
            *lfd(m, i, w) = listen_open(l->addr, &l->bind);
            if (*lfd(m, i, w) < 0)
                return -1;
        }
        log_info("listening on %s (%u route(s))", l->addr, l->n_routes);
    }
    return 0;
}

static void master_free(struct master *m)
{
    close_listeners(m);
    free(m->lfds);
    for (unsigned i = 0; i < m->n_workers; i++) {
        if (m->workers[i].chan.fd >= 0)
            chan_close(&m->workers[i].chan);
    }
    if (m->shm_fd >= 0)
        close(m->shm_fd);
    loop_free(m->loop);
}

int master_run(struct config *cfg)
{
    struct master m = {.cfg = cfg, .shm_fd = -1, .exit_code = 0, .gen = 1};
    sigset_t waitmask;

    m.listeners = cfg->listeners;
    m.n_listeners = cfg->n_listeners;
    m.n_workers = config_worker_count(cfg);
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++)
        m.workers[i].chan.fd = -1;

    sdnotify_init();
    raise_nofile();
    m.loop = loop_new();
    if (m.loop == NULL || master_resolve_user(&m) < 0)
        goto fail;
    m.shm_fd = shm_create(&m.shm);
    if (m.shm_fd < 0 || master_bind(&m) < 0)
        goto fail;
    signals_setup(&waitmask, &orig_sigmask);

    m.stop_timer = (struct timer){.cb = stop_timer_cb, .data = &m};
    if (sdnotify_watchdog_ms() > 0) {
        m.watchdog = (struct timer){.cb = watchdog_cb, .data = &m};
        loop_timer_set(m.loop, &m.watchdog, sdnotify_watchdog_ms() / 2);
    }
    sdnotify("STATUS=starting %u worker(s)", m.n_workers);
    for (unsigned i = 0; i < m.n_workers; i++) {
        struct worker_proc *w = &m.workers[i];
        w->m = &m;
        w->id = i;
        w->respawn = (struct timer){.cb = worker_respawn_cb, .data = w};
        worker_spawn(&m, w);
    }

    while (!(m.phase == MASTER_STOPPING && workers_alive(&m) == 0)) {
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
            log_warn("SIGHUP: configuration reload is not implemented yet; nothing changed");
            sdnotify("READY=1\nSTATUS=reload not implemented");
        }
    }
    log_info("stopped");
    master_free(&m);
    return m.exit_code;
fail:
    master_free(&m);
    return 1;
}
