/*
 * The master's side of the metrics exporter (`mc-proxy __metrics`,
 * metrics/): start it with a read-only view of the shared counters and
 * its settings, and replace it when it dies. It only answers the
 * watchdog's pings.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/proc.h"
#include "master/master.h"

/* It says nothing of its own: only what every auxiliary process says. */
static int child_metrics_dispatch(void *arg, struct chan_msg *msg)
{
    return aux_dispatch(CHILD_OF(struct aux_proc, arg), msg, NULL);
}

/* The counters, as an fd that cannot be mapped writable: the exporter only reads. */
static int child_metrics_send_shm(struct master *m)
{
    char path[64];
    struct msg_shm s = {.size = sizeof(struct shm)};

    snprintf(path, sizeof(path), "/proc/self/fd/%d", m->shm_fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_errno(LOGL_ERROR, errno, "metrics: cannot reopen the shared memory read-only");
        return -1;
    }
    int rc = chan_send(&m->metrics.c.chan, MSG_SHM, 0, &s, sizeof(s), fd);
    close(fd);
    return rc;
}

/* MSG_METRICS_SETTINGS from the current config, as iov[0..2); names is the caller's to free. */
static int child_metrics_settings_build(const struct master *m, struct msg_metrics_settings *s,
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

static void child_metrics_exec(const struct child *c, struct child_exec *e)
{
    (void)c;
    snprintf(e->path, sizeof(e->path), "/proc/self/exe");
    e->argv[0] = "mc-proxy";
    e->argv[1] = PROC_METRICS_ARG;
}

/* A read-only view of the counters, then its settings. */
static void child_metrics_init(struct child *c)
{
    struct master *m = c->m;
    struct aux_proc *x = CHILD_OF(struct aux_proc, c);
    struct msg_metrics_settings s;
    char(*names)[ADDR_STRLEN] = NULL;
    struct iovec iov[2];

    int rc = child_metrics_settings_build(m, &s, &names, iov);
    aux_started(x, iov, rc == 0 ? 2 : 0);
    if (rc < 0 || child_metrics_send_shm(m) < 0 ||
        chan_sendv(&c->chan, MSG_METRICS_SETTINGS, 0, iov, 2, -1) < 0) {
        /* it exits when its channel closes, and is respawned */
        log_error("metrics: cannot queue its start-up messages");
        child_close(c);
        free(names);
        return;
    }
    free(names);
    child_flush(c);
    log_info("metrics exporter started, pid %d", (int)c->pid);
}

static bool child_metrics_wanted(const struct child *c)
{
    return c->m->cfg->metrics.enabled;
}

void child_metrics_reload(struct master *m)
{
    struct msg_metrics_settings s;
    char(*names)[ADDR_STRLEN] = NULL;
    struct iovec iov[2];

    int n =
        child_metrics_wanted(&m->metrics.c) && child_metrics_settings_build(m, &s, &names, iov) == 0
            ? 2
            : 0;
    aux_reload(&m->metrics, iov, n);
    free(names);
}

const struct child_kind child_metrics_kind = {
    .name = "metrics exporter",
    .id = CHILD_METRICS,
    .exec = child_metrics_exec,
    .init = child_metrics_init,
    .dispatch = child_metrics_dispatch,
    .wanted = child_metrics_wanted,
    .exited = aux_exited,
    .stop = aux_stop,
};
