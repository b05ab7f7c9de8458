/*
 * The master's side of the metrics exporter (`mc-proxy __metrics`,
 * metrics/): start it with a read-only view of the shared counters and
 * its settings, and replace it when it dies. It never talks back.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "msg.h"
#include "spawn.h"

static int metrics_on_message(void *arg, struct chan_msg *msg)
{
    struct aux_proc *x = arg;

    if (msg->fd >= 0)
        close(msg->fd);
    log_error("metrics (pid %d): unexpected message type %u; killing it", (int)x->pid,
              msg->hdr.type);
    return -1;
}

static void metrics_on_event(struct ev *ev, uint32_t events)
{
    struct aux_proc *x = ev->data;
    child_chan_event(x->m->loop, &x->chan, &x->ev, x->pid, events, metrics_on_message, x,
                     "metrics");
}

/* The counters, as an fd that cannot be mapped writable: the exporter only reads. */
static int metrics_send_shm(struct master *m)
{
    char path[64];
    struct msg_shm s = {.size = sizeof(struct shm)};

    snprintf(path, sizeof(path), "/proc/self/fd/%d", m->shm_fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_errno(LOGL_ERROR, errno, "metrics: cannot reopen the shared memory read-only");
        return -1;
    }
    int rc = chan_send(&m->metrics.chan, MSG_SHM, 0, &s, sizeof(s), fd);
    close(fd);
    return rc;
}

static int metrics_send_settings(struct master *m)
{
    struct msg_metrics_settings s = {
        .setuid = m->setuid,
        .uid = m->uid,
        .gid = m->gid,
        .log_level = m->cfg->log_level,
        .log_format = m->cfg->log_format,
        .n_listeners = m->n_bound,
        .listen = m->cfg->metrics.listen_addr,
    };
    char(*names)[ADDR_STRLEN] = calloc(m->n_bound + 1, ADDR_STRLEN);

    if (names == NULL)
        return -1;
    for (unsigned i = 0; i < m->n_bound; i++)
        snprintf(names[i], ADDR_STRLEN, "%s", m->bound[i]);
    struct iovec iov[2] = {{&s, sizeof(s)}, {names, (size_t)m->n_bound * ADDR_STRLEN}};
    int rc = chan_sendv(&m->metrics.chan, MSG_METRICS_SETTINGS, 0, iov, 2, -1);
    free(names);
    return rc;
}

void metrics_spawn(struct master *m)
{
    struct aux_proc *x = &m->metrics;
    char exe[] = "/proc/self/exe";
    char *argv[] = {"mc-proxy", "__metrics", NULL};

    x->ev = (struct ev){.cb = metrics_on_event, .data = x};
    pid_t pid = spawn_child(m->loop, exe, argv, &x->chan, &x->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &x->respawn, 1000);
        return;
    }
    x->pid = pid;
    x->started_ms = loop_now(m->loop);
    if (metrics_send_shm(m) < 0 || metrics_send_settings(m) < 0) {
        /* it exits when its channel closes, and is respawned */
        log_error("metrics: cannot queue its start-up messages");
        child_chan_close(m->loop, &x->chan, &x->ev);
        return;
    }
    child_chan_flush(&x->chan, "metrics", x->pid);
    log_info("metrics exporter started, pid %d", (int)pid);
}

void metrics_exited(struct master *m, int status)
{
    aux_exited(m, &m->metrics, status, "metrics exporter", m->cfg->metrics.enabled);
}

void metrics_stop(struct master *m)
{
    aux_stop(m, &m->metrics);
}
