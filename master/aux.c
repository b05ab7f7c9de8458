/*
 * What every child with a channel shares on the master's side: closing
 * and flushing its channel, draining it on an event, and (for the
 * auxiliary processes, admin and metrics) exit handling and stopping.
 */
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "log.h"
#include "master.h"
#include "spawn.h"

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

void aux_exited(struct master *m, struct aux_proc *x, int status, const char *name, bool wanted)
{
    char how[64];

    spawn_describe_exit(status, how, sizeof(how));
    child_chan_close(m->loop, &x->chan, &x->ev);
    x->pid = 0;
    if (m->phase == MASTER_STOPPING || !wanted) {
        log_info("%s %s", name, how);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == MC_EXIT_FATAL) {
        log_error("%s %s (fatal: see its log), not respawning it", name, how);
        return;
    }
    /* status 0: it was asked to stop (a reload restarts it on the new settings) */
    bool asked = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    uint64_t delay = spawn_restart_delay(&x->quick_deaths, x->started_ms, loop_now(m->loop));
    log_msg(asked ? LOGL_INFO : LOGL_WARN, "%s %s, respawning in %llu ms", name, how,
            (unsigned long long)delay);
    loop_timer_set(m->loop, &x->respawn, delay);
}

void aux_stop(struct master *m, struct aux_proc *x)
{
    loop_timer_stop(m->loop, &x->respawn);
    if (x->pid != 0)
        kill(x->pid, SIGTERM);
}
