/*
 * What every child with a channel shares on the master's side: closing
 * and flushing its channel, draining it on an event, and (for the
 * auxiliary processes, admin and metrics) exit handling and stopping.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "common/log.h"
#include "master/master.h"
#include "master/spawn.h"

void child_chan_close(struct loop *l, struct chan *c, struct ev *ev)
{
    if (c->fd < 0)
        return;
    loop_del(l, ev);
    chan_close(c);
    c->fd = -1;
}

void child_chan_flush(struct chan *c, const char *name, pid_t pid)
{
    if (c->fd >= 0 && chan_flush(c) == MC_ERROR)
        log_warn("%s (pid %d): channel closed", name, (int)pid);
}

void child_chan_event(struct loop *l, struct chan *c, struct ev *ev, pid_t pid, uint32_t events,
                      chan_handler_fn *handle, void *arg, const char *name)
{
    if (events & EPOLLOUT)
        child_chan_flush(c, name, pid);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) || c->fd < 0)
        return;
    int rc = chan_drain(c, handle, arg);
    if (rc != MC_OK) {
        /* EOF or garbage: the process is gone or broken; SIGCHLD does the rest */
        if (rc == MC_ERROR && pid != 0)
            kill(pid, SIGKILL);
        child_chan_close(l, c, ev);
    }
}

void aux_exited(struct master *m, struct aux_proc *x, int status, bool wanted)
{
    char how[64];
    bool asked = x->restarting;

    spawn_describe_exit(status, how, sizeof(how));
    child_chan_close(m->loop, &x->chan, &x->ev);
    x->pid = 0;
    x->restarting = false;
    /* a READY=1 waiting for it waits no longer: it failed this time */
    x->failed = x->failed || (!x->listening && !asked);
    x->listening = false;
    master_ready_update(m);
    if (m->phase == MASTER_STOPPING || !wanted) {
        log_info("%s %s", x->name, how);
        return;
    }
    if (asked) {
        /* a restart the master asked for is not a crash: no brake */
        log_info("%s %s, restarting it on the new settings", x->name, how);
        loop_timer_set(m->loop, &x->respawn, 0);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == MC_EXIT_FATAL) {
        log_error("%s %s (fatal: see its log), not respawning it", x->name, how);
        return;
    }
    uint64_t delay = spawn_restart_delay(&x->quick_deaths, x->started_ms, loop_now(m->loop));
    log_msg(delay > 0 ? LOGL_ERROR : LOGL_WARN, "%s %s%s, respawning in %llu ms", x->name, how,
            delay > 0 ? " soon after starting again" : "", (unsigned long long)delay);
    loop_timer_set(m->loop, &x->respawn, delay);
}

void aux_stop(struct master *m, struct aux_proc *x)
{
    loop_timer_stop(m->loop, &x->respawn);
    x->restarting = false;
    if (x->pid != 0)
        kill(x->pid, SIGTERM);
}

/* The bytes of iov[0..n) in one buffer; NULL when out of memory. */
static void *iov_join(const struct iovec *iov, int n, size_t *len)
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

void aux_started(struct master *m, struct aux_proc *x, pid_t pid, const struct iovec *iov, int n)
{
    x->pid = pid;
    x->started_ms = loop_now(m->loop);
    x->restarting = false;
    x->listening = false;
    watchdog_reset(&x->live, x->started_ms, 0);
    free(x->started_with);
    /* out of memory: NULL, which differs from anything, so the next reload restarts it */
    x->started_with = iov_join(iov, n, &x->started_with_len);
}

void aux_reload(struct master *m, struct aux_proc *x, bool wanted, const struct iovec *iov, int n)
{
    size_t len;
    void *now = iov_join(iov, n, &len);
    bool same = now != NULL && x->started_with != NULL && len == x->started_with_len &&
                memcmp(now, x->started_with, len) == 0;

    free(now);
    if (!wanted) {
        aux_stop(m, x);
        return;
    }
    if (x->pid != 0) {
        if (!same && !x->restarting) {
            log_info("%s (pid %d): its settings changed, restarting it", x->name, (int)x->pid);
            x->restarting = true;
            x->listening = false; /* the READY=1 after this reload waits for the new one */
            x->failed = false;
            kill(x->pid, SIGTERM);
        }
        /* already restarting: it is started again on the settings current by then */
        return;
    }
    if (same && timer_armed(&x->respawn))
        return; /* a respawn on these settings is due: the crash-loop brake stands */
    /* failed, never started, or due on other settings: the reload is the retry */
    x->failed = false;
    loop_timer_set(m->loop, &x->respawn, 0);
}

void aux_listening(struct aux_proc *x)
{
    if (x->listening)
        return;
    x->listening = true;
    x->failed = false;
    log_info("%s (pid %d) is accepting connections", x->name, (int)x->pid);
    master_ready_update(x->m);
}

bool aux_settled(const struct aux_proc *x, bool wanted)
{
    return !wanted || x->listening || x->failed;
}

void aux_free(struct aux_proc *x)
{
    if (x->chan.fd >= 0)
        chan_close(&x->chan);
    free(x->started_with);
    x->started_with = NULL;
}
