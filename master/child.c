/*
 * The master's side of every child, whatever its kind: starting it
 * through its kind (child.h), the respawn timer, its channel (flush,
 * drain on an event, close) and finding it when it is reaped.
 */
#include <signal.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "master/master.h"
#include "master/spawn.h"

#define SPAWN_RETRY_MS 1000 /* fork or socketpair failed: try again after this */

void child_close(struct child *c)
{
    if (c->chan.fd < 0)
        return;
    loop_del(c->m->loop, &c->ev);
    chan_close(&c->chan);
    c->chan.fd = -1;
}

void child_flush(struct child *c)
{
    if (c->chan.fd >= 0 && chan_flush(&c->chan) == MC_ERROR)
        log_warn("%s (pid %d): channel closed", c->kind->name, (int)c->pid);
}

/* Flushes on EPOLLOUT, drains on input; on EOF or garbage closes the
 * channel (killing a child that sent garbage). */
static void child_on_event(struct ev *ev, uint32_t events)
{
    struct child *c = ev->data;

    if (events & EPOLLOUT)
        child_flush(c);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) || c->chan.fd < 0)
        return;
    int rc = chan_drain(&c->chan, c->kind->dispatch, c);
    if (rc != MC_OK) {
        /* EOF or garbage: the process is gone or broken; SIGCHLD does the rest */
        if (rc == MC_ERROR && c->pid != 0)
            kill(c->pid, SIGKILL);
        child_close(c);
    }
}

static void child_respawn_cb(struct timer *t)
{
    struct child *c = t->data;

    if (c->m->phase != MASTER_STOPPING && c->pid == 0 && c->kind->wanted(c))
        child_spawn(c);
}

void child_init(struct child *c, struct master *m, const struct child_kind *kind)
{
    *c = (struct child){.kind = kind, .m = m, .chan.fd = -1};
    c->respawn = (struct timer){.cb = child_respawn_cb, .data = c};
}

void child_spawn(struct child *c)
{
    struct master *m = c->m;
    struct child_exec e = {0};

    c->kind->exec(c, &e);
    c->ev = (struct ev){.cb = child_on_event, .data = c};
    pid_t pid = spawn_child(m->loop, e.path, e.argv, &c->chan, &c->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &c->respawn, SPAWN_RETRY_MS);
        return;
    }
    c->pid = pid;
    c->started_ms = loop_now(m->loop);
    watchdog_reset(&c->live, c->started_ms, 0);
    c->kind->init(c);
}

struct child *child_find(struct master *m, pid_t pid)
{
    if (m->admin.c.pid == pid)
        return &m->admin.c;
    if (m->metrics.c.pid == pid)
        return &m->metrics.c;
    for (unsigned i = 0; i < m->n_slots; i++) {
        if (m->workers[i].c.pid == pid)
            return &m->workers[i].c;
    }
    return NULL;
}
