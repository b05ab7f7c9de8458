/*
 * The life cycle the auxiliary processes (admin and metrics exporter)
 * share on the master's side: the messages both send, what they were
 * started with, exit handling and respawn, stopping, and reload.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/master.h"
#include "master/spawn.h"

int aux_dispatch(struct aux_proc *x, struct chan_msg *msg, aux_msg_fn *own)
{
    if (msg->fd >= 0)
        close(msg->fd);
    /* any message is a sign of life, MSG_LISTENING too: one stopped before
     * its first pong must not get the whole start-up grace */
    watchdog_alive(&x->c.live, loop_now(x->c.m->loop));
    if (msg->hdr.type == MSG_PONG && msg->hdr.len == 0)
        return 0;
    if (msg->hdr.type == MSG_LISTENING && msg->hdr.len == 0) {
        aux_listening(x);
        return 0;
    }
    if (own != NULL && own(x, msg) == 0)
        return 0;
    /* our own child speaking out of turn is a bug; it is replaced, not trusted */
    log_error("%s (pid %d): unexpected message type %u; killing it", x->c.kind->name, (int)x->c.pid,
              msg->hdr.type);
    return -1;
}

enum child_exit aux_exited(struct child *c, int status)
{
    struct aux_proc *x = CHILD_OF(struct aux_proc, c);
    struct master *m = c->m;
    char how[64];
    bool asked = x->restarting;

    spawn_describe_exit(status, how, sizeof(how));
    child_close(c);
    c->pid = 0;
    x->restarting = false;
    /* a READY=1 waiting for it waits no longer: it failed this time */
    x->failed = x->failed || (!x->listening && !asked);
    x->listening = false;
    master_ready_update(m);
    if (m->phase == MASTER_STOPPING || !c->kind->wanted(c)) {
        log_info("%s %s", c->kind->name, how);
        return CHILD_REPLACED;
    }
    if (asked) {
        /* a restart the master asked for is not a crash: no brake */
        log_info("%s %s, restarting it on the new settings", c->kind->name, how);
        loop_timer_set(m->loop, &c->respawn, 0);
        return CHILD_REPLACED;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == MC_EXIT_FATAL) {
        log_error("%s %s (fatal: see its log), not respawning it", c->kind->name, how);
        return CHILD_FATAL;
    }
    uint64_t delay = spawn_restart_delay(&c->quick_deaths, c->started_ms, loop_now(m->loop));
    log_msg(delay > 0 ? LOGL_ERROR : LOGL_WARN, "%s %s%s, respawning in %llu ms", c->kind->name,
            how, delay > 0 ? " soon after starting again" : "", (unsigned long long)delay);
    loop_timer_set(m->loop, &c->respawn, delay);
    return CHILD_REPLACED;
}

void aux_stop(struct child *c, bool graceful)
{
    struct aux_proc *x = CHILD_OF(struct aux_proc, c);

    (void)graceful; /* SIGTERM either way: it answers the calls it took, then exits */
    loop_timer_stop(c->m->loop, &c->respawn);
    x->restarting = false;
    if (c->pid != 0)
        kill(c->pid, SIGTERM);
}

/* The bytes of iov[0..n) in one buffer; NULL when out of memory. */
static void *aux_iov_join(const struct iovec *iov, int n, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    unsigned char *p = malloc(total > 0 ? total : 1);
    if (p == NULL)
        return NULL;
    *len = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len > 0)
            memcpy(p + *len, iov[i].iov_base, iov[i].iov_len);
        *len += iov[i].iov_len;
    }
    return p;
}

void aux_started(struct aux_proc *x, const struct iovec *iov, int n)
{
    x->restarting = false;
    x->listening = false;
    free(x->started_with);
    /* out of memory: NULL, which differs from anything, so the next reload restarts it */
    x->started_with = aux_iov_join(iov, n, &x->started_with_len);
}

void aux_reload(struct aux_proc *x, const struct iovec *iov, int n)
{
    struct master *m = x->c.m;
    bool wanted = x->c.kind->wanted(&x->c);
    size_t len;
    void *now = aux_iov_join(iov, n, &len);
    bool same = now != NULL && x->started_with != NULL && len == x->started_with_len &&
                memcmp(now, x->started_with, len) == 0;

    free(now);
    if (!wanted) {
        aux_stop(&x->c, true);
        return;
    }
    if (x->c.pid != 0) {
        if (!same && !x->restarting) {
            log_info("%s (pid %d): its settings changed, restarting it", x->c.kind->name,
                     (int)x->c.pid);
            x->restarting = true;
            x->listening = false; /* the READY=1 after this reload waits for the new one */
            x->failed = false;
            kill(x->c.pid, SIGTERM);
        }
        /* already restarting: it is started again on the settings current by then */
        return;
    }
    if (same && timer_armed(&x->c.respawn))
        return; /* a respawn on these settings is due: the crash-loop brake stands */
    /* failed, never started, or due on other settings: the reload is the retry */
    x->failed = false;
    loop_timer_set(m->loop, &x->c.respawn, 0);
}

void aux_listening(struct aux_proc *x)
{
    if (x->listening)
        return;
    x->listening = true;
    x->failed = false;
    log_info("%s (pid %d) is accepting connections", x->c.kind->name, (int)x->c.pid);
    master_ready_update(x->c.m);
}

bool aux_settled(const struct aux_proc *x)
{
    return !x->c.kind->wanted(&x->c) || x->listening || x->failed;
}

void aux_free(struct aux_proc *x)
{
    if (x->c.chan.fd >= 0)
        chan_close(&x->c.chan);
    free(x->started_with);
    x->started_with = NULL;
}
