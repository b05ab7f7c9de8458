/*
 * One direction of an L4 relay: splice() from the source socket into a
 * pipe and from the pipe into the destination socket, so payload never
 * enters user space. Pipes come from a per-worker pool and go back as
 * soon as they are empty: an idle connection holds no pipe, which keeps
 * idle connections at two fds and no buffers.
 */
#ifndef MC_RELAY_H
#define MC_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_CHUNK (64 * 1024) /* one pipe's default capacity */

struct pipe_pool {
    int (*fds)[2];
    unsigned n, cap;
};

struct relay_dir {
    int pipe_r, pipe_w; /* -1 when no pipe is held */
    uint32_t pending;   /* bytes in the pipe, not yet written to the destination */
    bool eof;           /* the source sent FIN */
    bool done;          /* EOF propagated with shutdown(SHUT_WR) */
    uint64_t bytes;     /* moved to the destination */
};

enum relay_status {
    RELAY_WAIT,  /* source empty or destination full: wait for an event */
    RELAY_DONE,  /* EOF reached and propagated; this direction is finished */
    RELAY_YIELD, /* budget used up with work left: call again soon */
    RELAY_ERROR, /* a socket error (reset, broken pipe) or no pipe available */
};

void relay_dir_init(struct relay_dir *d);
/*
 * Moves bytes from src to dst until one side would block, EOF, or the
 * budget (bytes, decremented) runs out. errno is set on RELAY_ERROR.
 */
enum relay_status relay_pump(struct relay_dir *d, int src, int dst, struct pipe_pool *pool,
                             size_t *budget);
/* Gives the pipe back (or closes it if it still holds data). */
void relay_dir_release(struct relay_dir *d, struct pipe_pool *pool);

void pipe_pool_init(struct pipe_pool *p, unsigned cap);
void pipe_pool_free(struct pipe_pool *p);

#endif
