/*
 * The master's side of the metrics exporter (`mc-proxy __metrics`,
 * metrics/): start it with a read-only view of the shared counters and
 * its settings, and replace it when it dies. It only answers the
 * watchdog's pings.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "master/master.h"
#include "master/spawn.h"

static int metrics_on_message(void *arg, struct chan_msg *msg)
{
    struct aux_proc *x = arg;

    if (msg->fd >= 0)
        close(msg->fd);
    /* any message is a sign of life, MSG_LISTENING too: an exporter stopped
     * before its first pong must not get the whole start-up grace */
    watchdog_alive(&x->live, loop_now(x->m->loop));
    if (msg->hdr.type == MSG_PONG && msg->hdr.len == 0)
        return 0;
    if (msg->hdr.type == MSG_LISTENING && msg->hdr.len == 0) {
        aux_listening(x);
        return 0;
    }
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

/* MSG_METRICS_SETTINGS from the current config, as iov[0..2); names is the caller's to free. */
static int metrics_settings_build(const struct master *m, struct msg_metrics_settings *s,
                                  char (**names)[ADDR_STRLEN], struct iovec iov[2])
{
    memset(s, 0, sizeof(*s)); /* the padding too: the bytes are compared across reloads */
    s->setuid = m->setuid;
    s->uid = m->uid;
    s->gid = m->gid;
    s->log_level = m->cfg->log_level;
    s->log_format = m->cfg->log_format;
    s->n_listeners = m->n_bound;
    s->listen = m->cfg->metrics.listen_addr;
    *names = calloc(m->n_bound + 1, ADDR_STRLEN);
    if (*names == NULL)
        return -1;
    for (unsigned i = 0; i < m->n_bound; i++)
        snprintf((*names)[i], ADDR_STRLEN, "%s", m->bound[i]);
    iov[0] = (struct iovec){s, sizeof(*s)};
    iov[1] = (struct iovec){*names, (size_t)m->n_bound * ADDR_STRLEN};
    return 0;
}

void metrics_spawn(struct master *m)
{
    struct aux_proc *x = &m->metrics;
    char exe[] = "/proc/self/exe";
    char *argv[] = {"mc-proxy", PROC_METRICS_ARG, NULL};
    struct msg_metrics_settings s;
    char(*names)[ADDR_STRLEN] = NULL;
    struct iovec iov[2];

    x->ev = (struct ev){.cb = metrics_on_event, .data = x};
    pid_t pid = spawn_child(m->loop, exe, argv, &x->chan, &x->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &x->respawn, 1000);
        return;
    }
    int rc = metrics_settings_build(m, &s, &names, iov);
    aux_started(m, x, pid, iov, rc == 0 ? 2 : 0);
    if (rc < 0 || metrics_send_shm(m) < 0 ||
        chan_sendv(&x->chan, MSG_METRICS_SETTINGS, 0, iov, 2, -1) < 0) {
        /* it exits when its channel closes, and is respawned */
        log_error("metrics: cannot queue its start-up messages");
        child_chan_close(m->loop, &x->chan, &x->ev);
        free(names);
        return;
    }
    free(names);
    child_chan_flush(&x->chan, "metrics", x->pid);
    log_info("metrics exporter started, pid %d", (int)pid);
}

void metrics_exited(struct master *m, int status)
{
    aux_exited(m, &m->metrics, status, m->cfg->metrics.enabled);
}

void metrics_stop(struct master *m)
{
    aux_stop(m, &m->metrics);
}

void metrics_reload(struct master *m)
{
    struct msg_metrics_settings s;
    char(*names)[ADDR_STRLEN] = NULL;
    struct iovec iov[2];
    bool wanted = m->cfg->metrics.enabled;

    int n = wanted && metrics_settings_build(m, &s, &names, iov) == 0 ? 2 : 0;
    aux_reload(m, &m->metrics, wanted, iov, n);
    free(names);
}
