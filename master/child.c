/*
 * The master's end of a child's channel, the same for every kind of
 * child: flushing it, draining it on an event, and closing it.
 */
#include <signal.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "master/master.h"

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
