#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/relay.h"

static void stack_init(struct pipe_stack *s, unsigned cap)
{
    s->fds = calloc(cap, sizeof(*s->fds));
    s->cap = s->fds ? cap : 0;
    s->n = 0;
}

static void stack_free(struct pipe_stack *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        close(s->fds[i][0]);
        close(s->fds[i][1]);
    }
    free(s->fds);
    s->fds = NULL;
    s->n = s->cap = 0;
}

void pipe_pool_init(struct pipe_pool *p, unsigned cap)
{
    stack_init(&p->small, cap);
    stack_init(&p->big, RELAY_BIG_POOL);
}

void pipe_pool_free(struct pipe_pool *p)
{
    stack_free(&p->small);
    stack_free(&p->big);
}

static bool stack_pop(struct pipe_stack *s, struct relay_dir *d)
{
    if (s->n == 0)
        return false;
    s->n--;
    d->pipe_r = s->fds[s->n][0];
    d->pipe_w = s->fds[s->n][1];
    return true;
}

static bool stack_push(struct pipe_stack *s, const struct relay_dir *d)
{
    if (s->n == s->cap)
        return false;
    s->fds[s->n][0] = d->pipe_r;
    s->fds[s->n][1] = d->pipe_w;
    s->n++;
    return true;
}

static int pipe_get(struct pipe_pool *p, struct relay_dir *d)
{
    int fds[2];

    if (d->pipe_r >= 0)
        return 0;
    /* an enlarged one first: a direction that splices is likely a long stream */
    if (stack_pop(&p->big, d)) {
        d->pipe_big = true;
        return 0;
    }
    if (stack_pop(&p->small, d))
        return 0;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
    return 0;
}

static void pipe_put(struct relay_dir *d, struct pipe_pool *p)
{
    if (d->pipe_r < 0)
        return;
    /* a pipe with bytes left in it must not carry them into another connection */
    if (d->pending != 0 || !stack_push(d->pipe_big ? &p->big : &p->small, d)) {
        close(d->pipe_r);
        close(d->pipe_w);
    }
    d->pipe_r = d->pipe_w = -1;
    d->pipe_big = false;
    d->pending = 0;
}

void relay_dir_init(struct relay_dir *d)
{
    *d = (struct relay_dir){.pipe_r = -1, .pipe_w = -1};
}

void relay_dir_read(struct relay_dir *d, bool filled)
{
    if (filled) {
        d->src_ready = true;
        return;
    }
    /* drained: a later arrival raises a new edge. After a FIN every byte
     * before it was queued, so this read took them all: no recv() just to
     * see 0. An error raises no edge: read until it shows. */
    d->eof = d->src_fin;
    d->src_ready = d->src_hup && !d->src_fin;
}

void relay_dir_release(struct relay_dir *d, struct pipe_pool *p)
{
    pipe_put(d, p);
    free(d->park);
    d->park = NULL;
    d->park_off = d->park_len = 0;
}

/* Sends what is parked or in the pipe to dst. 0 when all went, 1 when dst is full, -1 on error. */
static int flush(struct relay_dir *d, int dst, struct pipe_pool *pool)
{
    while (d->park != NULL) {
        ssize_t n = send(dst, d->park + d->park_off, d->park_len - d->park_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        if (n < 0) {
            d->dst_blocked = true;
            return 1;
        }
        d->park_off += (uint32_t)n;
        d->bytes += (uint64_t)n;
        if (d->park_off == d->park_len)
            relay_dir_release(d, pool);
    }
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
    /* a bulk direction splices again at once: keep its pipe until the source drains */
    if (!d->bulk)
        pipe_put(d, pool);
    return 0;
}

/* One recv()/send() round through the worker's buffer; <0 on error. */
static int move_small(struct relay_dir *d, int src, int dst, const struct relay_buf *buf,
                      size_t *budget)
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
    relay_dir_read(d, (size_t)n == buf->size);
    if ((size_t)n == buf->size)
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
    /* dst is full: the buffer is the worker's, so keep a copy of the rest */
    d->dst_blocked = true;
    d->park_len = (uint32_t)(n - m);
    d->park_off = 0;
    d->park = malloc(d->park_len);
    if (d->park == NULL)
        return -1;
    memcpy(d->park, buf->data + m, d->park_len);
    return 0;
}

/* One splice() from src into the pipe; <0 on error. */
static int move_bulk(struct relay_dir *d, int src, struct pipe_pool *pool,
                     const struct relay_buf *buf, size_t *budget)
{
    if (pipe_get(pool, d) < 0)
        return -1;
    /* the pipe is empty here, so EAGAIN can only mean the source is drained */
    ssize_t n =
        splice(src, NULL, d->pipe_w, NULL, RELAY_BULK_PIPE, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno != EAGAIN)
            return -1;
        d->src_ready = false;
        pipe_put(d, pool);
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
    /* a long stream (the splice filled most of a pooled pipe): fewer,
     * larger splices from here on. Refused past the user's pipe budget,
     * and then the pipe stays as it is. */
    if (!d->pipe_big && (size_t)n >= RELAY_BULK_GROW_AT &&
        fcntl(d->pipe_w, F_SETPIPE_SZ, RELAY_BULK_PIPE) >= 0)
        d->pipe_big = true;
    d->pending = (uint32_t)n;
    *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
    return 0;
}

enum relay_status relay_pump(struct relay_dir *d, int src, int dst, bool last,
                             struct pipe_pool *pool, const struct relay_buf *buf, size_t *budget)
{
    if (d->done)
        return RELAY_DONE;
    for (;;) {
        if (d->park != NULL || d->pending > 0) {
            if (d->dst_blocked)
                return RELAY_WAIT;
            int rc = flush(d, dst, pool);
            if (rc < 0)
                return RELAY_ERROR;
            if (rc > 0)
                return RELAY_WAIT;
        }
        if (d->eof) {
            relay_dir_release(d, pool);
            /* half-close: the other direction keeps flowing. The last one
             * leaves the FIN to close(), dst having nothing left to read. */
            if (!last && shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN)
                return RELAY_ERROR;
            d->done = true;
            return RELAY_DONE;
        }
        if (!d->src_ready)
            return RELAY_WAIT;
        if (*budget == 0)
            return RELAY_YIELD;
        int rc =
            d->bulk ? move_bulk(d, src, pool, buf, budget) : move_small(d, src, dst, buf, budget);
        if (rc < 0)
            return RELAY_ERROR;
    }
}
