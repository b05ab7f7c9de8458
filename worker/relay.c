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

    if (d->pipe_r >= 0)
        return 0;
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

/* Writes what the pipe holds to dst. 0 when it is empty, 1 when dst is full, -1 on error. */
static int flush_pipe(struct relay_dir *d, int dst, struct pipe_pool *pool)
{
    while (d->pending > 0) {
        ssize_t n =
            splice(d->pipe_r, NULL, dst, NULL, d->pending, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        if (n <= 0) {
            d->dst_blocked = true;
            return 1;
        }
        d->pending -= (uint32_t)n;
        d->bytes += (uint64_t)n;
    }
    relay_dir_release(d, pool);
    return 0;
}

/* One recv()/send() round through the worker's buffer; <0 on error. */
static int move_small(struct relay_dir *d, int src, int dst, struct pipe_pool *pool,
                      const struct relay_buf *buf, size_t *budget)
{
    ssize_t n = recv(src, buf->data, buf->size, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno != EAGAIN)
            return -1;
        d->src_ready = false;
        return 0;
    }
    if (n == 0) {
        d->eof = true;
        return 0;
    }
    if ((size_t)n < buf->size)
        d->src_ready = d->src_hup; /* drained: a later arrival raises a new edge */
    else
        d->bulk = true; /* a full buffer: more is likely queued behind it */
    *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;

    ssize_t m = send(dst, buf->data, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (m < 0 && errno != EAGAIN && errno != EINTR)
        return -1;
    if (m < 0)
        m = 0;
    d->bytes += (uint64_t)m;
    if (m == n)
        return 0;
    /* dst is full: park the rest in a pipe (it fits, the pipe is empty) */
    d->dst_blocked = true;
    if (pipe_get(pool, d) < 0 || write(d->pipe_w, buf->data + m, (size_t)(n - m)) != n - m)
        return -1;
    d->pending = (uint32_t)(n - m);
    return 0;
}

/* One splice() from src into the pipe; <0 on error. */
static int move_bulk(struct relay_dir *d, int src, struct pipe_pool *pool,
                     const struct relay_buf *buf, size_t *budget)
{
    if (pipe_get(pool, d) < 0)
        return -1;
    /* the pipe is empty here, so EAGAIN can only mean the source is drained */
    ssize_t n = splice(src, NULL, d->pipe_w, NULL, RELAY_CHUNK, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno != EAGAIN)
            return -1;
        d->src_ready = false;
        relay_dir_release(d, pool);
        return 0;
    }
    if (n == 0) {
        d->eof = true;
        return 0;
    }
    /* a splice can come back short with more queued (pipe slots): only a
     * small read sends the direction back to recv()/send(), which drains exactly */
    if ((size_t)n < buf->size / 2)
        d->bulk = false;
    d->pending = (uint32_t)n;
    *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
    return 0;
}

enum relay_status relay_pump(struct relay_dir *d, int src, int dst, struct pipe_pool *pool,
                             const struct relay_buf *buf, size_t *budget)
{
    if (d->done)
        return RELAY_DONE;
    for (;;) {
        if (d->pending > 0) {
            if (d->dst_blocked)
                return RELAY_WAIT;
            int rc = flush_pipe(d, dst, pool);
            if (rc < 0)
                return RELAY_ERROR;
            if (rc > 0)
                return RELAY_WAIT;
        }
        if (d->eof) {
            relay_dir_release(d, pool);
            /* half-close: the other direction keeps flowing */
            if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN)
                return RELAY_ERROR;
            d->done = true;
            return RELAY_DONE;
        }
        if (!d->src_ready)
            return RELAY_WAIT;
        if (*budget == 0)
            return RELAY_YIELD;
        int rc = d->bulk ? move_bulk(d, src, pool, buf, budget)
                         : move_small(d, src, dst, pool, buf, budget);
        if (rc < 0)
            return RELAY_ERROR;
    }
}
