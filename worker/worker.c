/*
 * Worker process main: the channel to the master, the routing-state
 * generations, its accept sockets (common/acceptor.c) and the drain on
 * stop.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/geoip.h"
#include "common/log.h"
#include "common/prefix.h"
#include "common/priv.h"
#include "common/proc.h"
#include "common/ratelimit.h"
#include "worker/firewall.h"
#include "worker/route_l7.h"
#include "worker/tickets.h"
#include "worker/worker.h"

#define ACCEPT_BATCH  64 /* accepts per wakeup before other events get a turn */
#define PIPE_POOL_CAP 64

static volatile sig_atomic_t sig_drain, sig_quit;
static struct worker worker;

static void worker_sock_on_accept(void *arg, int fd, const struct mc_addr *peer)
{
    struct wsock *ws = arg;
    conn_accept(ws->l, fd, peer);
}

static void worker_sock_start(struct wsock *ws)
{
    if (!ws->l->w->draining)
        acceptor_start(&ws->acc);
}

/* Takes ownership of fd, an accept socket of listener l. */
static int worker_sock_add(struct worker *w, struct wlistener *l, int fd)
{
    struct wsock **socks = realloc(w->socks, (w->n_socks + 1) * sizeof(*socks));
    struct wsock *ws = socks ? calloc(1, sizeof(*ws)) : NULL;

    if (socks != NULL)
        w->socks = socks;
    if (ws == NULL) {
        close(fd);
        return -1;
    }
    ws->l = l;
    acceptor_init(&ws->acc, w->loop, fd, ACCEPT_BATCH, l->addr, &w->emfile_logged_ms,
                  worker_sock_on_accept, ws);
    w->socks[w->n_socks++] = ws;
    if (w->started)
        worker_sock_start(ws);
    return 0;
}

static void worker_exit(struct worker *w, int code);

static void worker_drain_deadline(struct timer *t)
{
    struct worker *w = t->data;
    log_info("shutdown timeout exceeded, forcing close of %u connection(s)", w->n_conns);
    conn_close_all(w);
}

static void worker_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    for (unsigned i = 0; i < w->n_socks; i++)
        acceptor_close(&w->socks[i]->acc);
    l7_pool_close_all(); /* and l7_pool_put() pools no more */
    conn_drain_all(w);
    log_info("draining %u connection(s)", w->n_conns);
    if (w->n_conns > 0)
        loop_timer_set(w->loop, &w->drain_timer, w->settings.shutdown_timeout_ms);
}

static void worker_ops_clear(struct worker *w)
{
    for (unsigned i = 0; i < w->n_ops; i++) {
        if (w->ops[i].add != NULL)
            route_unref(w->ops[i].add);
        free(w->ops[i].del);
    }
    w->n_ops = 0;
}

static int worker_ops_push(struct worker *w, struct delta_op op)
{
    if (w->n_ops == w->cap_ops) {
        unsigned cap = w->cap_ops ? w->cap_ops * 2 : 16;
        struct delta_op *ops = realloc(w->ops, cap * sizeof(*ops));
        if (ops == NULL)
            return -1;
        w->ops = ops;
        w->cap_ops = cap;
    }
    w->ops[w->n_ops++] = op;
    return 0;
}

/* Applies a delta generation's changes to the tables it shares with the current one. */
static int worker_ops_apply(struct worker *w)
{
    for (unsigned i = 0; i < w->n_ops; i++) {
        struct delta_op *op = &w->ops[i];
        struct route_table **t = &w->pending->listeners[op->listener].routes;
        if (op->del != NULL) {
            if (*t != NULL)
                route_table_remove(*t, op->del);
            continue;
        }
        if (*t == NULL && (*t = route_table_new(16)) == NULL)
            return -1;
        if (route_table_add(*t, op->add) < 0)
            return -1;
    }
    worker_ops_clear(w);
    return 0;
}

static void worker_pending_clear(struct worker *w)
{
    worker_ops_clear(w);
    gen_unref(w->pending);
    w->pending = NULL;
}

/* COMMIT: the new generation becomes current. Connections keep the one they hold. */
static int worker_commit(struct worker *w, uint32_t gen)
{
    struct gen *g = w->pending;
    unsigned n_routes = 0;

    if (w->pending_delta && worker_ops_apply(w) < 0)
        return -1;
    if (w->pending_rules && (g->fw->n_rules != w->pending_n_rules || firewall_seal(g->fw) < 0)) {
        log_error("generation %u: %u firewall rule(s) received, the master sent %u", gen,
                  g->fw->n_rules, w->pending_n_rules);
        return -1;
    }
    for (unsigned i = 0; i < MC_MAX_LISTENERS; i++)
        n_routes += g->listeners[i].routes ? route_table_count(g->listeners[i].routes) : 0;
    if (n_routes != w->pending_n_routes) {
        /* a delta applied to tables that were not what the master thought */
        log_error("generation %u leaves %u routes, the master counts %u", gen, n_routes,
                  w->pending_n_routes);
        return -1;
    }
    gen_unref(w->cur);
    w->cur = g;
    w->pending = NULL;
    if (!w->started) {
        w->started = true;
        for (unsigned i = 0; i < w->n_socks; i++)
            worker_sock_start(w->socks[i]);
    }
    chan_send(&w->chan, MSG_ACK, gen, NULL, 0, -1);
    log_debug("generation %u applied (%s)", gen, w->pending_delta ? "delta" : "full");
    return 0;
}

static int worker_settings(struct worker *w, const struct msg_settings *s)
{
    bool first = !w->have_settings;

    if (s->worker_id != w->id) {
        log_error("settings for worker %u sent to worker %u", s->worker_id, w->id);
        return -1;
    }
    w->settings = *s;
    w->have_settings = true;
    log_configure(s->log_level, (enum log_format)s->log_format);
    if (!first)
        return 0;
    if (s->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(s->cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) < 0)
            log_errno(LOGL_WARN, errno, "cannot pin worker %u to CPU %d", w->id, s->cpu);
    }
    /* before any client byte is read */
    if (priv_drop(s->setuid, s->uid, s->gid) < 0)
        worker_exit(w, MC_EXIT_FATAL);
    return 0;
}

/*
 * An l7 route's policies, certificate and key, the len bytes at p after
 * its backend (msg.h), into r; adds what they take to *used. A
 * certificate OpenSSL refuses leaves the route without a context: its
 * connections are closed, and the master has said why.
 */
static int worker_route_add_l7(struct route *r, const struct msg_route *mr, const uint8_t *p,
                               size_t len, size_t *used)
{
    size_t off = 0;

    if ((r->l7 = route_l7_new(mr->n_policies)) == NULL)
        return -1;
    for (unsigned i = 0; i < mr->n_policies; i++) {
        struct msg_policy mp;
        struct route_policy *rp = &r->l7->policies[i];
        if (len - off < sizeof(mp))
            return -1;
        memcpy(&mp, p + off, sizeof(mp));
        off += sizeof(mp);
        if (len - off < mp.value_len || mp.type > POLICY_REQUIRE_HEADER)
            return -1;
        if ((rp->value = strndup((const char *)p + off, mp.value_len)) == NULL)
            return -1;
        rp->type = (enum policy_type)mp.type;
        rp->len = mp.value_len;
        r->l7->n_policies++;
        off += mp.value_len;
    }
    if (len - off < (size_t)mr->cert_len + mr->key_len || mr->cert_len > MSG_PEM_MAX ||
        mr->key_len > MSG_PEM_MAX)
        return -1;
    if (mr->cert_len > 0 &&
        route_l7_set_tls(r->l7, p + off, mr->cert_len, p + off + mr->cert_len, mr->key_len) < 0)
        log_error("route %s: its certificate does not load here; its connections are closed",
                  r->hostname);
    *used += off + mr->cert_len + mr->key_len;
    return 0;
}

/*
 * One packed route at p (len bytes left in the message) into the new
 * table of a full generation, or a delta's ops; *used is its size.
 */
static int worker_route_add(struct worker *w, const struct msg_routes *h, const uint8_t *p,
                            size_t len, size_t *used)
{
    char host[UINT8_MAX + 1], backend[ADDR_STRLEN];
    struct msg_route mr;
    struct mc_addr addr;

    if (len < sizeof(mr))
        return -1;
    memcpy(&mr, p, sizeof(mr));
    *used = sizeof(mr) + mr.hostname_len + mr.backend_len;
    if (*used > len || mr.hostname_len == 0 || mr.backend_len == 0 ||
        mr.backend_len >= ADDR_STRLEN || mr.mode > ROUTE_L7 || msg_route_get_addr(&mr, &addr) < 0)
        return -1;
    memcpy(host, p + sizeof(mr), mr.hostname_len);
    host[mr.hostname_len] = '\0';
    memcpy(backend, p + sizeof(mr) + mr.hostname_len, mr.backend_len);
    backend[mr.backend_len] = '\0';

    struct route *r = route_new(host, backend, &addr, (enum route_mode)mr.mode, mr.backend_tls,
                                mr.send_proxy_protocol);
    if (r == NULL)
        return -1;
    if (mr.mode == ROUTE_L7 ? worker_route_add_l7(r, &mr, p + *used, len - *used, used) < 0
                            : mr.n_policies != 0 || mr.cert_len != 0 || mr.key_len != 0) {
        route_unref(r);
        return -1;
    }
    if (w->pending_delta) {
        if (worker_ops_push(w, (struct delta_op){.listener = h->listener_id, .add = r}) == 0)
            return 0;
        route_unref(r);
        return -1;
    }
    /* sized once for the listener's routes; no more than the generation holds */
    struct route_table **t = &w->pending->listeners[h->listener_id].routes;
    if (*t == NULL &&
        (*t = route_table_new(MC_MIN(h->listener_routes, w->pending_n_routes))) == NULL) {
        route_unref(r);
        return -1;
    }
    int rc = route_table_add(*t, r);
    route_unref(r);
    return rc;
}

/* MSG_ROUTE: one or more routes of one listener, packed (msg.h). */
static int worker_routes_add(struct worker *w, const struct chan_msg *m)
{
    struct msg_routes h;
    size_t used;

    if (m->hdr.len <= sizeof(h))
        return -1;
    memcpy(&h, m->data, sizeof(h));
    if (h.listener_id >= MC_MAX_LISTENERS)
        return -1;
    for (size_t off = sizeof(h); off < m->hdr.len; off += used) {
        if (worker_route_add(w, &h, m->data + off, m->hdr.len - off, &used) < 0)
            return -1;
    }
    return 0;
}

static int worker_route_del(struct worker *w, const struct chan_msg *m)
{
    struct msg_route_del md;

    if (!w->pending_delta || m->hdr.len < sizeof(md))
        return -1;
    memcpy(&md, m->data, sizeof(md));
    if (m->hdr.len != sizeof(md) + md.hostname_len || md.hostname_len == 0 ||
        md.listener_id >= MC_MAX_LISTENERS)
        return -1;
    char *host = strndup((const char *)m->data + sizeof(md), md.hostname_len);
    if (host == NULL ||
        worker_ops_push(w, (struct delta_op){.listener = md.listener_id, .del = host}) < 0) {
        free(host);
        return -1;
    }
    return 0;
}

/* MSG_LISTENER_CONF: a listener's settings and its trusted proxies. */
static int worker_listener_conf(struct worker *w, const struct chan_msg *m)
{
    struct msg_listener_conf lc;
    struct msg_cidr mc;
    struct mc_cidr c;

    if (m->hdr.len < sizeof(lc))
        return -1;
    memcpy(&lc, m->data, sizeof(lc));
    if (lc.id >= MC_MAX_LISTENERS || lc.n_trusted > MSG_TRUSTED_MAX ||
        m->hdr.len != sizeof(lc) + lc.n_trusted * sizeof(mc))
        return -1;
    struct gen_listener *gl = &w->pending->listeners[lc.id];
    gl->max_connections = lc.max_connections;
    gl->proxy_protocol = lc.proxy_protocol;
    prefix_set_free(gl->trusted);
    gl->trusted = NULL;
    if (lc.n_trusted == 0)
        return 0;
    if ((gl->trusted = prefix_set_new()) == NULL)
        return -1;
    for (uint32_t i = 0; i < lc.n_trusted; i++) {
        memcpy(&mc, m->data + sizeof(lc) + i * sizeof(mc), sizeof(mc));
        if (msg_cidr_get(&mc, &c) < 0 || prefix_set_add(gl->trusted, &c, 1) < 0)
            return -1;
    }
    return prefix_set_seal(gl->trusted);
}

/* MSG_FW_RULES: part of the new generation's firewall. */
static int worker_fw_rules(struct worker *w, const struct chan_msg *m)
{
    struct msg_fw_rules h;
    struct msg_fw_rule r;

    if (m->hdr.len < sizeof(h))
        return -1;
    memcpy(&h, m->data, sizeof(h));
    if (h.n > MSG_FW_RULES_PER_MSG || m->hdr.len != sizeof(h) + h.n * sizeof(r) ||
        w->pending->fw->n_rules + h.n > w->pending_n_rules)
        return -1;
    for (uint32_t i = 0; i < h.n; i++) {
        memcpy(&r, m->data + sizeof(h) + i * sizeof(r), sizeof(r));
        if (firewall_add(w->pending->fw, &r) < 0)
            return -1;
    }
    return 0;
}

/*
 * One message from the master. The master is trusted but checked: a
 * malformed message is a bug on our side, so the worker exits and is
 * replaced rather than running on state it cannot trust.
 */
static int worker_on_message(struct worker *w, struct chan_msg *m)
{
    uint32_t len = m->hdr.len;
    bool want_fd = m->hdr.type == MSG_SHM || m->hdr.type == MSG_LISTENER ||
                   m->hdr.type == MSG_GEOIP || m->hdr.type == MSG_RATELIMIT;

    if (want_fd != (m->fd >= 0) && m->hdr.type != MSG_LOG_FILE)
        return -1;
    switch (m->hdr.type) {
    case MSG_SHM: {
        int rc = len == sizeof(struct msg_shm) ? shm_attach(m->fd, &w->shm) : -1;
        close(m->fd);
        if (rc == 0) {
            w->slot = &w->shm->workers[w->id];
            log_count_drops(&w->shm->log_dropped_workers);
        }
        return rc;
    }
    case MSG_GEOIP: {
        /* before the settings, so before the privileges go */
        char err[256];
        if (len != 0 || w->have_settings || w->geoip != NULL) {
            close(m->fd);
            return -1;
        }
        w->geoip = geoip_open(m->fd, err, sizeof(err));
        close(m->fd);
        if (w->geoip == NULL)
            log_error("GeoIP database from the master: %s; country rules cannot match", err);
        return 0;
    }
    case MSG_RATELIMIT: {
        int rc = len == sizeof(struct msg_shm) && w->ratelimit == NULL
                     ? ratelimit_attach(m->fd, &w->ratelimit)
                     : -1;
        close(m->fd);
        return rc;
    }
    case MSG_SETTINGS: {
        struct msg_settings s;
        if (len != sizeof(s) || w->shm == NULL)
            return -1;
        memcpy(&s, m->data, sizeof(s));
        return worker_settings(w, &s);
    }
    case MSG_LISTENER: {
        struct msg_listener ml;
        if (len != sizeof(ml) || !w->have_settings) {
            close(m->fd);
            return -1;
        }
        memcpy(&ml, m->data, sizeof(ml));
        if (ml.id >= MC_MAX_LISTENERS || memchr(ml.addr, '\0', sizeof(ml.addr)) == NULL) {
            close(m->fd);
            return -1;
        }
        struct wlistener *l = &w->listeners[ml.id];
        memcpy(l->addr, ml.addr, sizeof(l->addr));
        return worker_sock_add(w, l, m->fd);
    }
    case MSG_STATE_BEGIN: {
        struct msg_state_begin b;
        if (len != sizeof(b) || !w->have_settings)
            return -1;
        memcpy(&b, m->data, sizeof(b));
        worker_pending_clear(w);
        /* a delta needs a base: only after the first full generation; a full one carries rules */
        if ((b.delta && !w->started) || (!b.delta && !b.rules))
            return -1;
        w->pending_delta = b.delta;
        w->pending_rules = b.rules;
        w->pending_n_routes = b.n_routes;
        w->pending_n_rules = b.n_rules;
        w->pending = b.delta ? gen_derive(w->cur, m->hdr.gen) : gen_new(m->hdr.gen, w->geoip);
        if (w->pending == NULL)
            return -1;
        if (b.rules) {
            firewall_unref(w->pending->fw);
            if ((w->pending->fw = firewall_new()) == NULL)
                return -1;
        }
        return 0;
    }
    case MSG_LISTENER_CONF:
        if (w->pending == NULL || m->hdr.gen != w->pending->id)
            return -1;
        return worker_listener_conf(w, m);
    case MSG_FW_RULES:
        if (w->pending == NULL || m->hdr.gen != w->pending->id || !w->pending_rules)
            return -1;
        return worker_fw_rules(w, m);
    case MSG_ROUTE:
        if (w->pending == NULL || m->hdr.gen != w->pending->id)
            return -1;
        return worker_routes_add(w, m);
    case MSG_ROUTE_DEL:
        if (w->pending == NULL || m->hdr.gen != w->pending->id)
            return -1;
        return worker_route_del(w, m);
    case MSG_STATE_COMMIT:
        if (len != 0 || w->pending == NULL || m->hdr.gen != w->pending->id)
            return -1;
        return worker_commit(w, m->hdr.gen);
    case MSG_STOP:
        if (len != 0)
            return -1;
        worker_drain(w);
        return 0;
    case MSG_LOG_FILE:
        if (len != 0) {
            if (m->fd >= 0)
                close(m->fd);
            return -1;
        }
        log_set_access_fd(m->fd);
        return 0;
    case MSG_TICKET_KEYS: {
        struct msg_ticket_keys k;
        if (len != sizeof(k) || !w->have_settings)
            return -1;
        memcpy(&k, m->data, sizeof(k));
        tickets_set(&k);
        OPENSSL_cleanse(&k, sizeof(k));
        return 0;
    }
    }
    return -1;
}

static int worker_on_message_cb(void *arg, struct chan_msg *m)
{
    struct worker *w = arg;
    if (worker_on_message(w, m) < 0) {
        log_error("malformed message type %u (len %u) from the master", m->hdr.type, m->hdr.len);
        worker_exit(w, PROC_EXIT_RESPAWN);
    }
    return 0;
}

static void worker_chan_event(struct ev *ev, uint32_t events)
{
    struct worker *w = ev->data;

    (void)events;
    if (w->chan.fd >= 0 &&
        !proc_chan_event(w->loop, &w->chan, &w->chan_ev, worker_on_message_cb, w)) {
        /* the master is gone (or its channel broke): finish what we have and leave */
        if (!w->draining)
            log_warn("master channel closed, draining");
        worker_drain(w);
    }
}

static void worker_exit(struct worker *w, int code)
{
    conn_close_all(w);
    conn_free_dead(w);
    l7_pool_close_all();
    for (unsigned i = 0; i < w->n_socks; i++) {
        acceptor_close(&w->socks[i]->acc);
        free(w->socks[i]);
    }
    free(w->socks);
    gen_unref(w->cur);
    w->cur = NULL;
    worker_pending_clear(w);
    geoip_close(w->geoip);
    free(w->ops);
    pipe_pool_free(&w->pipes);
    chan_close(&w->chan);
    log_detach();
    loop_free(w->loop);
    exit(code);
}

/* Only wakes the loop: each of its iterations is a beat. */
static void worker_beat_tick(struct timer *t)
{
    struct worker *w = t->data;
    loop_timer_set(w->loop, t, SHM_BEAT_MS);
}

int worker_main(int argc, char **argv)
{
    struct worker *w = &worker;
    sigset_t waitmask;
    char *end;

    log_init("worker");
    if (argc != 3)
        return PROC_EXIT_RESPAWN;
    unsigned long id = strtoul(argv[2], &end, 10);
    if (*end != '\0' || id >= MC_MAX_WORKERS)
        return PROC_EXIT_RESPAWN;
    w->id = (unsigned)id;

    proc_signals((const struct proc_signal[]){{SIGTERM, &sig_drain},
                                              {SIGINT, &sig_drain},
                                              {SIGQUIT, &sig_quit}},
                 3, NULL, &waitmask);

    w->loop = loop_new();
    if (w->loop == NULL)
        return PROC_EXIT_RESPAWN;
    log_nonblock(w->loop);
    pipe_pool_init(&w->pipes, PIPE_POOL_CAP);
    for (unsigned i = 0; i < MC_MAX_LISTENERS; i++) {
        struct wlistener *l = &w->listeners[i];
        l->w = w;
        l->id = i;
    }
    w->resume_timer = (struct timer){.cb = l4_resume_all, .data = w};
    w->drain_timer = (struct timer){.cb = worker_drain_deadline, .data = w};
    w->beat_timer = (struct timer){.cb = worker_beat_tick, .data = w};
    loop_timer_set(w->loop, &w->beat_timer, SHM_BEAT_MS);
    w->chan_ev = (struct ev){.cb = worker_chan_event, .data = w};
    if (proc_chan_open(w->loop, &w->chan, &w->chan_ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) <
        0)
        return PROC_EXIT_RESPAWN;

    for (;;) {
        if (loop_run_once(w->loop, &waitmask) < 0)
            worker_exit(w, PROC_EXIT_RESPAWN);
        if (w->slot != NULL)
            shm_beat(w->slot); /* the master's watchdog watches this move */
        conn_free_dead(w);
        if (sig_quit)
            worker_exit(w, 0);
        if (sig_drain) {
            sig_drain = 0;
            worker_drain(w);
        }
        if (w->draining && w->n_conns == 0) {
            log_info("drained, exiting");
            worker_exit(w, 0);
        }
    }
}
