/*
 * Channel between the master and a child process: one non-blocking
 * SOCK_STREAM socketpair carrying length-prefixed typed messages, each
 * optionally with one file descriptor (SCM_RIGHTS). OpenBSD's imsg is the
 * model.
 *
 * Wire form: struct chan_hdr, then hdr.len payload bytes. The reader
 * rejects a header whose len exceeds CHAN_MAX_PAYLOAD before allocating
 * anything; every handler checks the exact payload size it expects.
 */
#ifndef MC_CHAN_H
#define MC_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define CHAN_MAX_PAYLOAD (1u << 20)  /* 1 MiB */
#define CHAN_MAX_QUEUED  (64u << 20) /* outgoing bytes a peer may owe us before we give up on it */
#define CHAN_MAX_FDS     64          /* received fds not yet claimed by a message */

#define CHAN_F_FD 0x1 /* the message carries a file descriptor */

struct chan_hdr {
    uint16_t type;
    uint16_t flags;
    uint32_t len; /* payload bytes after the header */
    uint32_t seq; /* per-channel message counter, for logs */
    uint32_t gen; /* configuration generation the message belongs to, 0 if none */
};

struct chan_msg {
    struct chan_hdr hdr;
    const uint8_t *data; /* hdr.len bytes, valid until the next chan_read() */
    int fd;              /* -1, or an fd the caller now owns and must close */
};

struct chan_out; /* queued outgoing message */

struct chan {
    int fd;
    uint32_t seq;
    /* receive side */
    uint8_t *rbuf;
    size_t rlen, rcap, roff;
    int rfds[CHAN_MAX_FDS];
    unsigned rfd_head, rfd_count;
    /* send side */
    struct chan_out *out_head, *out_tail;
    size_t out_bytes;
};

/* Takes ownership of fd (made non-blocking and close-on-exec). */
void chan_init(struct chan *c, int fd);
/* Closes the fd and any received fds not yet handed out; frees queues. */
void chan_close(struct chan *c);

/*
 * Queues a message; the payload is the concatenation of iov. If fd >= 0
 * it is dup()ed, so the caller keeps its own descriptor. Returns 0, or
 * -1 when the payload is over CHAN_MAX_PAYLOAD, the queue is over
 * CHAN_MAX_QUEUED, or dup/allocation fails. Nothing is written until
 * chan_flush().
 */
int chan_sendv(struct chan *c, uint16_t type, uint32_t gen, const struct iovec *iov, int iovcnt,
               int fd);
int chan_send(struct chan *c, uint16_t type, uint32_t gen, const void *data, size_t len, int fd);

/* Writes what it can: MC_OK when the queue is empty, MC_AGAIN when the
 * socket is full (wait for EPOLLOUT), MC_ERROR when the peer is gone. */
int chan_flush(struct chan *c);
bool chan_pending(const struct chan *c);

/* One recvmsg: MC_OK when bytes were read (or a complete message is
 * already buffered), MC_AGAIN when the socket had nothing, 1 at EOF,
 * MC_ERROR on a socket error or too many queued fds. */
int chan_read(struct chan *c);

/*
 * Takes the next complete message out of the receive buffer: returns 1
 * and fills m, 0 when no complete message is buffered, or MC_ERROR on a
 * protocol violation (oversized len, CHAN_F_FD without a received fd).
 */
int chan_next(struct chan *c, struct chan_msg *m);

/*
 * Reads until the socket would block, handing each complete message to
 * handle(), which owns m->fd. For edge-triggered epoll. Returns MC_OK
 * (drained, still open), 1 (EOF, after every complete message was
 * handled), or MC_ERROR (socket or protocol error, or handle() < 0).
 */
typedef int chan_handler_fn(void *arg, struct chan_msg *m);
int chan_drain(struct chan *c, chan_handler_fn *handle, void *arg);

/* Blocking helper for start-up and tests: flushes, waiting up to
 * timeout_ms for the socket to drain. MC_OK or MC_ERROR. */
int chan_flush_wait(struct chan *c, int timeout_ms);

#endif
