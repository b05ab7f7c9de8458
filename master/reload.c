/*
 * Reload (SIGHUP): the config file is read again and a new generation of
 * workers starts beside the old one on the same listening sockets; the
 * old one keeps accepting until every new worker is ready, then drains.
 * A new worker that cannot start rolls the whole reload back.
 */
#include <string.h>

#include "common/log.h"
#include "master/master.h"
#include "master/sdnotify.h"

static void reload_report_error(void *arg, const char *msg)
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
void reload_start(struct master *m)
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
    struct config *next = config_load(m->cfg->path, reload_report_error, &n_errors);
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
    geoip_db_load(m, next);
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
    if (child_worker_start_generation(m) < 0) {
        reload_failed(m, "no free worker slots for a new generation");
        return;
    }
    master_check_ready(m);
}

/* The new generation is accepting: the old one stops accepting and drains. */
void reload_complete(struct master *m)
{
    unsigned retired = 0;

    for (unsigned i = 0; i < m->n_slots; i++) {
        struct child_worker *w = &m->workers[i];
        if (w->used && w->retiring) {
            child_worker_stop(&w->c, true);
            retired++;
        }
    }
    config_free(m->cfg_prev);
    m->cfg_prev = NULL;
    m->reloading = false;
    atomic_fetch_add_explicit(&m->shm->reloads, 1, memory_order_relaxed);
    /* restarted only when their own settings (or certificates) changed */
    child_admin_reload(m);
    child_metrics_reload(m);
    log_info("reload complete in %llu ms: %u worker(s) took over, %u draining",
             (unsigned long long)(loop_now(m->loop) - m->reload_started_ms), m->n_workers, retired);
    master_ready_owe(m, true);
    if (m->reload_pending) {
        m->reload_pending = false;
        reload_start(m);
    }
}

/*
 * The old generation keeps serving until the new one is ready; then it is
 * retired. Run when a new worker dies fatally before that point.
 */
void reload_failed(struct master *m, const char *why)
{
    for (unsigned i = 0; i < m->n_slots; i++) {
        struct child_worker *w = &m->workers[i];
        if (!w->used)
            continue;
        if (!w->retiring) {
            /* the new generation: never accepted for long, if at all */
            w->retiring = true;
            loop_timer_stop(m->loop, &w->c.respawn);
            if (w->c.pid != 0)
                child_worker_stop(&w->c, true);
            else
                w->used = false;
        } else if (!w->draining) {
            /* the generation that keeps serving: one that died meanwhile starts again */
            w->retiring = false;
            if (w->c.pid == 0 && !timer_armed(&w->c.respawn))
                loop_timer_set(m->loop, &w->c.respawn, 0);
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
