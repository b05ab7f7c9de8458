/*
 * One direction of an L4 relay.
 *
 * Small messages (request/response traffic) go through recv()/send() via
 * a per-worker buffer: two syscalls a message. Once a read fills that
 * buffer the direction is bulk and switches to splice() through a pipe,
 * so payload stops being copied through user space; it switches back when
 * reads get short. Bytes the destination cannot take yet wait in a pipe
 * from a per-worker pool, returned as soon as it is empty: an idle
 * connection holds two sockets and nothing else.
 *
 * With edge-triggered epoll, src_ready says the source may hold unread
 * bytes and dst_blocked that the destination refused some; the caller
 * sets src_ready on an input event (src_hup too on EPOLLRDHUP/HUP/ERR)
 * and clears dst_blocked on an output event. A short read proves the
 * source drained, since a later arrival raises a new edge, so no syscall
 * is spent just to see EAGAIN; but a FIN already signalled raises none,
 * so with src_hup set the source is read until it returns 0.
 */
#ifndef MC_RELAY_H
#define MC_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_CHUNK (64 * 1024) /* one pipe's default capacity: a splice's size */

struct pipe_pool {
    int (*fds)[2];
    unsigned n, cap;
};

struct relay_dir {
    int pipe_r, pipe_w; /* -1 when no pipe is held */
    uint32_t pending;   /* bytes in the pipe, not yet written to the destination */
    bool src_ready;     /* the source may hold unread bytes */
    bool src_hup;       /* the source's FIN (or error) was signalled: read until it shows */
    bool dst_blocked;   /* the destination refused bytes; wait for its output event */
    bool bulk;          /* splice mode */
    bool eof;           /* the source sent FIN */
    bool done;          /* EOF propagated with shutdown(SHUT_WR) */
    uint64_t bytes;     /* moved to the destination */
};

enum relay_status {
    RELAY_WAIT,  /* nothing to do until an event */
    RELAY_DONE,  /* EOF reached and propagated; this direction is finished */
    RELAY_YIELD, /* budget used up with work left: call again soon */
    RELAY_ERROR, /* a socket error (reset, broken pipe) or no pipe available */
};

/* The buffer small messages pass through; one per worker, used only within a call. */
struct relay_buf {
    uint8_t *data;
    size_t size;
};

void relay_dir_init(struct relay_dir *d);
/*
 * Moves bytes from src to dst until there is nothing to do, EOF, or the
 * budget (bytes, decremented) runs out. errno is set on RELAY_ERROR.
 */
enum relay_status relay_pump(struct relay_dir *d, int src, int dst, struct pipe_pool *pool,
                             const struct relay_buf *buf, size_t *budget);
/* Gives the pipe back (or closes it if it still holds data). */
void relay_dir_release(struct relay_dir *d, struct pipe_pool *pool);

void pipe_pool_init(struct pipe_pool *p, unsigned cap);
void pipe_pool_free(struct pipe_pool *p);

#endif
