/* The master's side of the workers: start, feed, watch, replace, stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/proc.h"
#include "common/ratelimit.h"
#include "master/certs.h"
#include "master/master.h"
#include "master/spawn.h"

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
        .rate_limit = cfg->firewall.rate_limit,
        .rate_window_ms = cfg->firewall.rate_window_ms,
        .response_timeout_ms = cfg->proxy.response_timeout_ms,
    };
    chan_send(&w->chan, MSG_SETTINGS, 0, &s, sizeof(s), -1);
}

static void worker_flush(struct worker_proc *w)
{
    child_chan_flush(&w->chan, "worker", w->pid);
}

/* MSG_ROUTE messages being filled, for one listener at a time (msg.h). */
struct route_batch {
    struct chan *c;
    struct certs *certs;
    uint32_t gen;
    struct msg_routes head;
    unsigned n;
    struct msg_route routes[MSG_ROUTES_PER_MSG];
    struct iovec iov[1 + 3 * MSG_ROUTES_PER_MSG]; /* the head, then each route's three parts */
};

_Static_assert(sizeof(struct msg_routes) +
                       MSG_ROUTES_PER_MSG * (sizeof(struct msg_route) + 2 * UINT8_MAX) <=
                   CHAN_MAX_PAYLOAD,
               "a full MSG_ROUTE fits in a channel message");

/* Queues the routes packed so far, if any. */
static int batch_flush(struct route_batch *b)
{
    int n = 1 + 3 * (int)b->n;

    if (b->n == 0)
        return 0;
    b->n = 0;
    b->iov[0] = (struct iovec){&b->head, sizeof(b->head)};
    return chan_sendv(b->c, MSG_ROUTE, b->gen, b->iov, n, -1);
}

/*
 * An l7 route in a MSG_ROUTE of its own: the route, its policies, then
 * its certificate chain and key (msg.h). Without a good certificate it
 * still goes, so that the worker's tables add up; the worker closes its
 * connections (certs_get logged why).
 */
static int batch_send_l7(struct route_batch *b, struct msg_route *mr, const struct route_conf *r)
{
    const struct cert_pem *pem = certs_get(b->certs, r);
    size_t size = sizeof(*mr) + mr->hostname_len + mr->backend_len;

    if (pem != NULL) {
        mr->cert_len = (uint32_t)pem->cert_len;
        mr->key_len = (uint32_t)pem->key_len;
    }
    mr->n_policies = (uint16_t)MC_MIN(r->n_policies, UINT16_MAX);
    for (unsigned i = 0; i < mr->n_policies; i++)
        size += sizeof(struct msg_policy) + MC_MIN(strlen(r->policies[i].value), UINT16_MAX);
    size += mr->cert_len + mr->key_len;
    if (sizeof(b->head) + size > CHAN_MAX_PAYLOAD) {
        log_error("route %s does not fit a channel message", r->hostname);
        return -1;
    }
    uint8_t *buf = malloc(size), *p = buf;
    if (buf == NULL)
        return -1;
    memcpy(p, mr, sizeof(*mr));
    p = (uint8_t *)mempcpy(p + sizeof(*mr), r->hostname, mr->hostname_len);
    p = (uint8_t *)mempcpy(p, r->backend, mr->backend_len);
    for (unsigned i = 0; i < mr->n_policies; i++) {
        struct msg_policy mp = {.type = (uint8_t)r->policies[i].type,
                                .value_len =
                                    (uint16_t)MC_MIN(strlen(r->policies[i].value), UINT16_MAX)};
        p = (uint8_t *)mempcpy(p, &mp, sizeof(mp));
        p = (uint8_t *)mempcpy(p, r->policies[i].value, mp.value_len);
    }
    if (pem != NULL) {
        p = (uint8_t *)mempcpy(p, pem->cert, pem->cert_len);
        memcpy(p, pem->key, pem->key_len);
    }
    struct iovec iov[2] = {{&b->head, sizeof(b->head)}, {buf, size}};
    int rc = chan_sendv(b->c, MSG_ROUTE, b->gen, iov, 2, -1);
    free(buf);
    return rc;
}

/* Packs r, a route of listener id; a message full or of another listener is queued first. */
static int batch_add(struct route_batch *b, int id, uint32_t listener_routes,
                     const struct route_conf *r)
{
    struct msg_route *mr;
    struct iovec *iov;

    if (r->mode == ROUTE_L7 && batch_flush(b) < 0)
        return -1;
    if ((b->head.listener_id != (uint32_t)id || b->n == MSG_ROUTES_PER_MSG) && batch_flush(b) < 0)
        return -1;
    b->head = (struct msg_routes){.listener_id = (uint32_t)id, .listener_routes = listener_routes};
    mr = &b->routes[b->n];
    *mr = (struct msg_route){
        .mode = (uint8_t)r->mode,
        .backend_tls = r->backend_tls,
        .send_proxy_protocol = r->send_proxy_protocol,
        .hostname_len = (uint8_t)strlen(r->hostname),
        .backend_len = (uint8_t)strlen(r->backend),
    };
    msg_route_set_addr(mr, &r->backend_addr);
    if (r->mode == ROUTE_L7)
        return batch_send_l7(b, mr, r);
    iov = &b->iov[1 + 3 * b->n++];
    iov[0] = (struct iovec){mr, sizeof(*mr)};
    iov[1] = (struct iovec){r->hostname, mr->hostname_len};
    iov[2] = (struct iovec){r->backend, mr->backend_len};
    return 0;
}

static int send_route_del(struct chan *c, uint32_t gen, int id, const struct route_conf *r)
{
    struct msg_route_del md = {.listener_id = (uint32_t)id,
                               .hostname_len = (uint8_t)strlen(r->hostname)};
    struct iovec iov[2] = {{&md, sizeof(md)}, {r->hostname, md.hostname_len}};
    return chan_sendv(c, MSG_ROUTE_DEL, gen, iov, 2, -1);
}

/* One listener's settings, its trusted proxies in binary form after them. */
static int send_listener_conf(struct master *m, struct chan *c, int id,
                              const struct listener_conf *l)
{
    struct msg_cidr trusted[MSG_TRUSTED_MAX];
    unsigned n = MC_MIN(l->n_trusted_proxies, (unsigned)MSG_TRUSTED_MAX);
    struct msg_listener_conf lc = {
        .id = (uint32_t)id,
        .max_connections = l->max_connections,
        .n_trusted = n,
        .proxy_protocol = l->proxy_protocol,
    };

    for (unsigned i = 0; i < n; i++)
        msg_cidr_set(&trusted[i], &l->trusted_proxies[i]);
    struct iovec iov[2] = {{&lc, sizeof(lc)}, {trusted, n * sizeof(trusted[0])}};
    return chan_sendv(c, MSG_LISTENER_CONF, m->gen, iov, 2, -1);
}

/* Every rule, whole, in messages of MSG_FW_RULES_PER_MSG. */
static int send_rules(struct master *m, struct chan *c)
{
    for (unsigned off = 0; off < m->state->n_rules; off += MSG_FW_RULES_PER_MSG) {
        struct msg_fw_rules h = {.n = MC_MIN(m->state->n_rules - off, MSG_FW_RULES_PER_MSG)};
        struct iovec iov[2] = {{&h, sizeof(h)},
                               {m->rules_packed + off, h.n * sizeof(*m->rules_packed)}};
        if (chan_sendv(c, MSG_FW_RULES, m->gen, iov, 2, -1) < 0)
            return -1;
    }
    return 0;
}

/* BEGIN, every bound listener's settings and, when asked, the rules; routes follow, then COMMIT. */
static int send_begin(struct master *m, struct chan *c, bool delta, bool rules)
{
    const struct state *st = m->state;
    struct msg_state_begin b = {
        .n_listeners = st->n_listeners,
        .n_rules = rules ? st->n_rules : 0,
        .delta = delta,
        .rules = rules,
    };

    for (unsigned i = 0; i < st->n_listeners; i++) {
        if (master_listener_index(m, st->listeners[i].addr) >= 0)
            b.n_routes += st->listeners[i].n_routes;
    }
    if (chan_send(c, MSG_STATE_BEGIN, m->gen, &b, sizeof(b), -1) < 0)
        return -1;
    for (unsigned i = 0; i < st->n_listeners; i++) {
        const struct listener_conf *l = &st->listeners[i];
        int id = master_listener_index(m, l->addr);
        if (id < 0)
            continue; /* in the database but not bound: only a restart binds it */
        if (send_listener_conf(m, c, id, l) < 0)
            return -1;
    }
    return rules ? send_rules(m, c) : 0;
}

/* Queues one whole generation of routing state: BEGIN, objects, COMMIT. */
static int worker_send_state(struct master *m, struct worker_proc *w, struct route_batch *b)
{
    const struct state *st = m->state;
    struct chan *c = &w->chan;

    if (send_begin(m, c, false, true) < 0)
        return -1;
    for (unsigned i = 0; i < st->n_listeners; i++) {
        const struct listener_conf *l = &st->listeners[i];
        int id = master_listener_index(m, l->addr);
        for (unsigned j = 0; id >= 0 && j < l->n_routes; j++) {
            if (batch_add(b, id, l->n_routes, &l->routes[j]) < 0)
                return -1;
        }
    }
    if (batch_flush(b) < 0)
        return -1;
    return chan_send(c, MSG_STATE_COMMIT, m->gen, NULL, 0, -1);
}

/* Queues a delta generation: only the routes that changed. */
static int worker_send_delta(struct master *m, struct worker_proc *w, struct route_batch *b,
                             const struct route_change *changes, unsigned n, bool rules)
{
    struct chan *c = &w->chan;

    if (send_begin(m, c, true, rules) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        int id = master_listener_index(m, changes[i].listener->addr);
        if (id < 0)
            continue;
        int rc;
        if (!changes[i].removed)
            rc = batch_add(b, id, 0, changes[i].route);
        else if ((rc = batch_flush(b)) == 0) /* in the order the changes are listed */
            rc = send_route_del(c, m->gen, id, changes[i].route);
        if (rc < 0)
            return -1;
    }
    if (batch_flush(b) < 0)
        return -1;
    return chan_send(c, MSG_STATE_COMMIT, m->gen, NULL, 0, -1);
}

void worker_push_state(struct master *m, struct worker_proc *w, const struct route_change *changes,
                       int n_changes, bool rules)
{
    struct route_batch b = {.c = &w->chan, .certs = &m->certs, .gen = m->gen};

    if (w->pid == 0 || w->chan.fd < 0)
        return;
    int rc = n_changes >= 0 ? worker_send_delta(m, w, &b, changes, (unsigned)n_changes, rules)
                            : worker_send_state(m, w, &b);
    if (rc < 0) {
        /* it would run on stale routes: replace it, it restarts from the current state */
        log_error("worker %u: cannot queue generation %u, restarting it", w->id, m->gen);
        kill(w->pid, SIGKILL);
        return;
    }
    worker_flush(w);
}

static int worker_on_message(void *arg, struct chan_msg *msg)
{
    struct worker_proc *w = arg;

    if (msg->fd >= 0)
        close(msg->fd);
    if (msg->hdr.type == MSG_ACK && msg->hdr.len == 0) {
        w->acked_gen = msg->hdr.gen;
        if (!w->ready) {
            w->ready = true;
            log_debug("worker %u (pid %d) is accepting", w->id, (int)w->pid);
            master_check_ready(w->m);
        }
        master_check_waits(w->m);
        return 0;
    }
    /* our own child speaking out of turn is a bug; it is replaced, not trusted */
    log_error("worker %u (pid %d): unexpected message type %u len %u; killing it", w->id,
              (int)w->pid, msg->hdr.type, msg->hdr.len);
    return -1;
}

static void worker_chan_close(struct worker_proc *w)
{
    child_chan_close(w->m->loop, &w->chan, &w->ev);
}

static void worker_on_event(struct ev *ev, uint32_t events)
{
    struct worker_proc *w = ev->data;
    child_chan_event(w->m->loop, &w->chan, &w->ev, w->pid, events, worker_on_message, w, "worker");
}

void worker_spawn(struct master *m, struct worker_proc *w)
{
    char id[16];
    char exe[] = "/proc/self/exe";
    char *argv[] = {"mc-proxy", PROC_WORKER_ARG, id, NULL};

    snprintf(id, sizeof(id), "%u", w->id);
    w->ev = (struct ev){.cb = worker_on_event, .data = w};
    pid_t pid = spawn_child(m->loop, exe, argv, &w->chan, &w->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &w->respawn, 1000);
        return;
    }
    w->pid = pid;
    w->ready = false;
    w->acked_gen = 0;
    w->start_gen = m->gen;
    w->started_ms = loop_now(m->loop);
    watchdog_reset(&w->live, w->started_ms,
                   atomic_load_explicit(&m->shm->workers[w->id].beats, memory_order_relaxed));
    atomic_store(&m->shm->workers[w->id].pid, pid);

    struct msg_shm s = {.size = sizeof(struct shm)};
    chan_send(&w->chan, MSG_SHM, 0, &s, sizeof(s), m->shm_fd);
    struct msg_shm rl = {.size = ratelimit_region_size()};
    chan_send(&w->chan, MSG_RATELIMIT, 0, &rl, sizeof(rl), m->ratelimit_fd);
    if (m->geoip_fd >= 0)
        chan_send(&w->chan, MSG_GEOIP, 0, NULL, 0, m->geoip_fd);
    worker_send_settings(m, w);
    ticketkeys_send(m, w);
    accesslog_send(m, w);
    for (unsigned i = 0; i < m->n_bound; i++) {
        struct msg_listener ml = {.id = i};
        snprintf(ml.addr, sizeof(ml.addr), "%s", m->bound[i]);
        for (unsigned s = w->pos; s < m->n_sockets; s += w->stride)
            chan_send(&w->chan, MSG_LISTENER, 0, &ml, sizeof(ml), *master_lfd(m, i, s));
    }
    worker_push_state(m, w, NULL, -1, true);
    log_info("worker %u started, pid %d", w->id, (int)pid);
}

unsigned workers_alive(const struct master *m)
{
    unsigned n = 0;
    for (unsigned i = 0; i < m->n_slots; i++)
        n += m->workers[i].pid != 0;
    return n;
}

int workers_start_generation(struct master *m)
{
    struct worker_proc *slots[MC_MAX_WORKERS];
    unsigned n = 0;

    for (unsigned i = 0; i < MC_MAX_WORKERS && n < m->n_workers; i++) {
        if (!m->workers[i].used)
            slots[n++] = &m->workers[i];
    }
    if (n < m->n_workers)
        return -1;
    for (unsigned p = 0; p < n; p++) {
        struct worker_proc *w = slots[p];
        w->used = true;
        w->retiring = false;
        w->draining = false;
        w->pos = p;
        w->stride = n;
        w->quick_deaths = 0;
        if (w->id + 1 > m->n_slots)
            m->n_slots = w->id + 1;
        worker_spawn(m, w);
    }
    return 0;
}

void worker_exited(struct master *m, struct worker_proc *w, int status)
{
    char how[64];

    spawn_describe_exit(status, how, sizeof(how));
    worker_chan_close(w);
    shm_worker_reap(m->shm, w->id);
    ratelimit_reap(m->ratelimit, w->pid);
    w->pid = 0;
    w->ready = false;
    master_check_waits(m);

    if (m->phase == MASTER_STOPPING || w->draining) {
        log_info("worker %u %s", w->id, how);
        w->used = false;
        loop_timer_stop(m->loop, &w->respawn);
        return;
    }
    if (w->retiring) {
        /* a reload is replacing it: not respawned, but the slot is kept so
         * that a failed reload starts it again */
        log_warn("worker %u %s during a reload", w->id, how);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == MC_EXIT_FATAL) {
        log_error("worker %u %s (fatal), not respawning it", w->id, how);
        w->used = false;
        if (m->reloading) {
            master_reload_failed(m, "a new worker could not start");
            return;
        }
        if (workers_alive(m) == 0) {
            log_error("no worker left, stopping");
            m->exit_code = 1;
            master_stop(m, true);
        }
        return;
    }
    atomic_fetch_add(&m->shm->worker_restarts, 1);
    if (w->live.killed)
        atomic_fetch_add(&m->shm->worker_restarts_watchdog, 1);
    uint64_t delay = spawn_restart_delay(&w->quick_deaths, w->started_ms, loop_now(m->loop));
    if (delay == 0) {
        log_warn("worker %u %s, respawning", w->id, how);
        worker_spawn(m, w);
        return;
    }
    log_error("worker %u %s soon after starting again, respawning in %llu ms", w->id, how,
              (unsigned long long)delay);
    loop_timer_set(m->loop, &w->respawn, delay);
}

void worker_stop(struct master *m, struct worker_proc *w, bool graceful)
{
    loop_timer_stop(m->loop, &w->respawn);
    if (w->pid == 0) {
        w->used = false; /* waiting to be respawned: nothing left to wait for */
        return;
    }
    w->draining = true;
    if (graceful && w->chan.fd >= 0) {
        chan_send(&w->chan, MSG_STOP, 0, NULL, 0, -1);
        worker_flush(w);
    } else {
        kill(w->pid, SIGQUIT);
    }
}
