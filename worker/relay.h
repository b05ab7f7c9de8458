/*
 * One direction of an L4 relay.
 *
 * Small messages (request/response traffic) go through recv()/send() via
 * a per-worker buffer: two syscalls a message; what the destination cannot
 * take yet is parked in a heap copy (at most one buffer's worth) until it
 * drains. Once a read fills the buffer the direction is bulk and switches
 * to splice() through a pipe, so payload stops being copied through user
 * space, and switches back when reads get short. Pipes come from a
 * per-worker pool, held only while in use; a long stream's pipe is
 * enlarged to RELAY_BULK_PIPE, so one splice moves up to that much, and
 * a few enlarged pipes are pooled too (struct pipe_pool). An idle
 * connection holds two sockets and nothing else.
 *
 * With edge-triggered epoll, src_ready says the source may hold unread
 * bytes and dst_blocked that the destination refused some; the caller
 * sets src_ready on an input event (src_hup too on EPOLLRDHUP/HUP/ERR,
 * src_fin on EPOLLRDHUP without ERR) and clears dst_blocked on an output
 * event. A short read proves the source drained, since a later arrival
 * raises a new edge, so no syscall is spent just to see EAGAIN; once a
 * FIN was signalled a short read has taken everything before it, so it
 * counts as EOF; an error raises no edge, so it is read until it shows.
 */
#ifndef MC_RELAY_H
#define MC_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_BULK_PIPE    (1024 * 1024) /* a long stream's pipe: one splice's most */
#define RELAY_BULK_GROW_AT (32 * 1024)   /* a splice this big marks a long stream */

#define RELAY_BIG_POOL 2 /* enlarged pipes a worker keeps empty for the next long stream */

/*
 * Empty pipes kept for reuse: default-size ones, and a few enlarged ones,
 * so that a long stream whose source drains between bursts (TLS records
 * from a CPU-bound sender) does not pay pipe2 + F_SETPIPE_SZ + two close()
 * each time. The kernel counts a pipe's capacity against the user's pipe
 * budget even while it is empty, hence only RELAY_BIG_POOL of those.
 */
struct pipe_stack {
    int (*fds)[2];
    unsigned n, cap;
};

struct pipe_pool {
    struct pipe_stack small, big;
};

struct relay_dir {
    int pipe_r, pipe_w; /* -1 when no pipe is held */
    bool pipe_big;      /* enlarged for bulk (RELAY_BULK_PIPE) */
    uint32_t pending;   /* bytes in the pipe, not yet written to the destination */
    uint8_t *park;      /* bytes a small-mode send left over, NULL when none */
    uint32_t park_off, park_len;
    bool src_ready;   /* the source may hold unread bytes */
    bool src_hup;     /* the source's FIN or error was signalled */
    bool src_fin;     /* ... and it was a FIN: a short read reaches EOF */
    bool dst_blocked; /* the destination refused bytes; wait for its output event */
    bool bulk;        /* splice mode */
    bool eof;         /* the source sent FIN */
    bool done;        /* EOF propagated (shutdown(SHUT_WR), or close() for the last) */
    uint64_t bytes;   /* moved to the destination */
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
 * last: the other direction is done (dst's EOF was read), so this one's
 * EOF is left for the caller's close() to send instead of a shutdown().
 */
enum relay_status relay_pump(struct relay_dir *d, int src, int dst, bool last,
                             struct pipe_pool *pool, const struct relay_buf *buf, size_t *budget);
/* After a read from the source: filled says it took all the room given. */
void relay_dir_read(struct relay_dir *d, bool filled);
/* Gives the pipe back (or closes it if it still holds data) and drops parked bytes. */
void relay_dir_release(struct relay_dir *d, struct pipe_pool *pool);

/* cap default-size pipes and RELAY_BIG_POOL enlarged ones at most. */
void pipe_pool_init(struct pipe_pool *p, unsigned cap);
void pipe_pool_free(struct pipe_pool *p);

#endif
