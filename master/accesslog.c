/*
 * log.access_file: the master opens it (the workers cannot open files)
 * and hands each worker a descriptor over its channel (MSG_LOG_FILE).
 * SIGUSR1 and a reload open the path again and hand the new descriptor
 * out, for log rotation; a worker writes each line whole to one file or
 * the other, and lines it was holding go to the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "master/master.h"

/* O_NONBLOCK is safe here: only the master and its workers share this description. */
static int accesslog_open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0640);
    if (fd < 0)
        log_errno(LOGL_ERROR, errno, "cannot open log.access_file %s", path);
    return fd;
}

int accesslog_open(struct master *m)
{
    m->access_fd = -1;
    if (m->cfg->log_access_file == NULL)
        return 0;
    m->access_fd = accesslog_open_path(m->cfg->log_access_file);
    return m->access_fd >= 0 ? 0 : -1;
}

void accesslog_close(struct master *m)
{
    if (m->access_fd >= 0)
        close(m->access_fd);
    m->access_fd = -1;
}

static void accesslog_queue(struct worker_proc *w, int fd)
{
    if (w->pid != 0 && w->chan.fd >= 0)
        chan_send(&w->chan, MSG_LOG_FILE, 0, NULL, 0, fd);
}

void accesslog_send(struct master *m, struct worker_proc *w)
{
    if (m->access_fd >= 0)
        accesslog_queue(w, m->access_fd);
}

void accesslog_reopen(struct master *m, const char *why)
{
    const char *path = m->cfg->log_access_file;
    int fd = -1;

    if (path == NULL && m->access_fd < 0) {
        log_debug("%s: no log.access_file to reopen", why);
        return;
    }
    if (path != NULL && (fd = accesslog_open_path(path)) < 0) {
        log_error("%s: access lines keep going where they went", why);
        return;
    }
    accesslog_close(m);
    m->access_fd = fd;
    for (unsigned i = 0; i < m->n_slots; i++) {
        struct worker_proc *w = &m->workers[i];
        accesslog_queue(w, fd);
        child_chan_flush(&w->chan, "worker", w->pid);
    }
    log_info("%s: access lines go to %s", why, path != NULL ? path : "stderr");
}
