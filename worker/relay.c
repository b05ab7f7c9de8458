#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

void pipe_pool_init(struct pipe_pool *p, unsigned cap)
{
    p->fds = calloc(cap, sizeof(*p->fds));
    p->cap = p->fds ? cap : 0;
    p->n = 0;
}

void pipe_pool_free(struct pipe_pool *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        close(p->fds[i][0]);
        close(p->fds[i][1]);
    }
    free(p->fds);
    p->fds = NULL;
    p->n = p->cap = 0;
}

static int pipe_get(struct pipe_pool *p, struct relay_dir *d)
{
    int fds[2];
    if (p->n > 0) {
        p->n--;
        d->pipe_r = p->fds[p->n][0];
        d->pipe_w = p->fds[p->n][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
    return 0;
}

void relay_dir_init(struct relay_dir *d)
{
    *d = (struct relay_dir){.pipe_r = -1, .pipe_w = -1};
}

void relay_dir_release(struct relay_dir *d, struct pipe_pool *p)
{
    if (d->pipe_r < 0)
        return;
    if (d->pending == 0 && p->n < p->cap) {
        p->fds[p->n][0] = d->pipe_r;
        p->fds[p->n][1] = d->pipe_w;
        p->n++;
    } else {
        /* a pipe with bytes left in it must not carry them into another connection */
        close(d->pipe_r);
        close(d->pipe_w);
    }
    d->pipe_r = d->pipe_w = -1;
    d->pending = 0;
}

enum relay_status relay_pump(struct relay_dir *d, int src, int dst, struct pipe_pool *pool,
                             size_t *budget)
{
    const unsigned flags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
    ssize_t n;

    if (d->done)
        return RELAY_DONE;
    for (;;) {
        while (d->pending > 0) {
            n = splice(d->pipe_r, NULL, dst, NULL, d->pending, flags);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EAGAIN ? RELAY_WAIT : RELAY_ERROR;
            }
            if (n == 0)
                return RELAY_WAIT;
            d->pending -= (uint32_t)n;
            d->bytes += (uint64_t)n;
        }
        if (d->eof) {
            relay_dir_release(d, pool);
            /* half-close: the other direction keeps flowing */
            if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN)
                return RELAY_ERROR;
            d->done = true;
            return RELAY_DONE;
        }
        if (*budget == 0)
            return RELAY_YIELD;
        if (d->pipe_r < 0 && pipe_get(pool, d) < 0)
            return RELAY_ERROR;
        /* the pipe is empty here, so EAGAIN can only mean the source is drained */
        n = splice(src, NULL, d->pipe_w, NULL, RELAY_CHUNK, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return RELAY_ERROR;
            relay_dir_release(d, pool);
            return RELAY_WAIT;
        }
        if (n == 0)
            d->eof = true;
        d->pending = (uint32_t)n;
        *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
    }
}
