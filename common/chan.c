/*
 * Master <-> child channel: length-prefixed messages over a non-blocking
 * SOCK_STREAM socketpair, with at most one fd per message (SCM_RIGHTS).
 *
 * An fd is attached to the sendmsg() that carries the first byte of its
 * message, so on the receiving side it is always queued in rfds no later
 * than its message is complete; chan_next() pairs them up in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/loop.h"
#include "common/mc.h"

#define CHAN_RBUF_MIN   4096u
#define CHAN_IOV_BATCH  32
#define CHAN_HDR_SIZE   sizeof(struct chan_hdr)
#define CHAN_CMSG_SPACE CMSG_SPACE(CHAN_MAX_FDS * sizeof(int))

struct chan_out {
    struct chan_out *next;
    int fd;     /* dup()ed, closed once sent; -1 when none or already sent */
    size_t len; /* header + payload */
    size_t off; /* bytes already written */
    uint8_t buf[];
};

_Static_assert(sizeof(struct chan_hdr) == 16, "chan_hdr has no padding");

void chan_init(struct chan *c, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void chan_out_free(struct chan_out *o)
{
    if (o->fd >= 0)
        close(o->fd);
    free(o);
}

void chan_close(struct chan *c)
{
    struct chan_out *o, *next;

    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    for (; c->rfd_count > 0; c->rfd_count--) {
        close(c->rfds[c->rfd_head]);
        c->rfd_head = (c->rfd_head + 1) % CHAN_MAX_FDS;
    }
    mc_free(&c->rbuf);
    c->rlen = c->rcap = c->roff = 0;
    for (o = c->out_head; o != NULL; o = next) {
        next = o->next;
        chan_out_free(o);
    }
    c->out_head = c->out_tail = NULL;
    c->out_bytes = 0;
}

int chan_sendv(struct chan *c, uint16_t type, uint32_t gen, const struct iovec *iov, int iovcnt,
               int fd)
{
    struct chan_hdr hdr;
    struct chan_out *o;
    size_t len = 0, off;
    int i;

    for (i = 0; i < iovcnt; i++) {
        /* checked one by one so the sum cannot wrap */
        if (iov[i].iov_len > CHAN_MAX_PAYLOAD - len)
            return -1;
        len += iov[i].iov_len;
    }
    if (c->out_bytes + CHAN_HDR_SIZE + len > CHAN_MAX_QUEUED)
        return -1;

    o = malloc(sizeof(*o) + CHAN_HDR_SIZE + len);
    if (o == NULL)
        return -1;
    o->fd = -1;
    if (fd >= 0) {
        o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (o->fd < 0) {
            free(o);
            return -1;
        }
    }

    hdr = (struct chan_hdr){
        .type = type,
        .flags = fd >= 0 ? CHAN_F_FD : 0,
        .len = (uint32_t)len,
        .seq = c->seq++,
        .gen = gen,
    };
    memcpy(o->buf, &hdr, CHAN_HDR_SIZE);
    off = CHAN_HDR_SIZE;
    for (i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(o->buf + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    o->len = off;
    o->off = 0;
    o->next = NULL;

    if (c->out_tail != NULL)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->out_bytes += o->len;
    return 0;
}

int chan_send(struct chan *c, uint16_t type, uint32_t gen, const void *data, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};

    return chan_sendv(c, type, gen, &iov, 1, fd);
}

/* Drops n written bytes from the front of the queue. */
static void chan_consume(struct chan *c, size_t n)
{
    struct chan_out *o;
    size_t take;

    while (n > 0 && (o = c->out_head) != NULL) {
        take = MC_MIN(n, o->len - o->off);
        o->off += take;
        c->out_bytes -= take;
        n -= take;
        if (o->off < o->len)
            break;
        c->out_head = o->next;
        if (c->out_head == NULL)
            c->out_tail = NULL;
        chan_out_free(o);
    }
}

int chan_flush(struct chan *c)
{
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } cbuf;
    struct iovec iov[CHAN_IOV_BATCH];
    struct msghdr mh;
    struct cmsghdr *cm;
    struct chan_out *o;
    ssize_t n;
    int niov;

    while (c->out_head != NULL) {
        memset(&mh, 0, sizeof(mh));
        niov = 0;
        for (o = c->out_head; o != NULL && niov < CHAN_IOV_BATCH; o = o->next) {
            /* one fd per sendmsg: a later message with an fd starts the next batch */
            if (o->fd >= 0 && niov > 0)
                break;
            iov[niov].iov_base = o->buf + o->off;
            iov[niov].iov_len = o->len - o->off;
            niov++;
        }
        mh.msg_iov = iov;
        mh.msg_iovlen = niov;
        if (c->out_head->fd >= 0) {
            memset(&cbuf, 0, sizeof(cbuf));
            mh.msg_control = cbuf.buf;
            mh.msg_controllen = sizeof(cbuf.buf);
            cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &c->out_head->fd, sizeof(int));
        }

        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return MC_AGAIN;
            return MC_ERROR;
        }
        if (mh.msg_control != NULL) {
            /* the peer holds its own reference now */
            close(c->out_head->fd);
            c->out_head->fd = -1;
        }
        chan_consume(c, (size_t)n);
    }
    return MC_OK;
}

bool chan_pending(const struct chan *c)
{
    return c->out_head != NULL;
}

/* Queues the fds of one SCM_RIGHTS message; -1 if any had to be closed. */
static int chan_take_fds(struct chan *c, struct cmsghdr *cm)
{
    size_t i, nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int fd, rc = 0;

    for (i = 0; i < nfds; i++) {
        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        if (c->rfd_count == CHAN_MAX_FDS) {
            close(fd);
            rc = -1;
            continue;
        }
        c->rfds[(c->rfd_head + c->rfd_count) % CHAN_MAX_FDS] = fd;
        c->rfd_count++;
    }
    return rc;
}

/* Room for the message at the front of the buffer: at least its header,
 * the whole of it once the header is known, never more than one message. */
static int chan_reserve(struct chan *c)
{
    struct chan_hdr hdr;
    size_t want = CHAN_RBUF_MIN;
    uint8_t *p;

    if (c->rlen >= CHAN_HDR_SIZE) {
        memcpy(&hdr, c->rbuf, CHAN_HDR_SIZE);
        if (hdr.len <= CHAN_MAX_PAYLOAD)
            want = MC_MAX(want, CHAN_HDR_SIZE + hdr.len);
        /* an oversized len is left for chan_next() to reject */
    }
    if (want <= c->rcap)
        return 0;
    p = realloc(c->rbuf, want);
    if (p == NULL)
        return -1;
    c->rbuf = p;
    c->rcap = want;
    return 0;
}

int chan_read(struct chan *c)
{
    union {
        struct cmsghdr hdr;
        char buf[CHAN_CMSG_SPACE];
    } cbuf;
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *cm;
    ssize_t n;
    int rc = MC_OK;

    /* compact here, not in chan_next(), so handed-out data stays put */
    if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    if (c->rlen == 0 && c->rcap > CHAN_RBUF_MIN) {
        /* don't keep a large message's buffer for the channel's lifetime */
        mc_free(&c->rbuf);
        c->rcap = 0;
    }
    if (chan_reserve(c) < 0)
        return MC_ERROR;
    if (c->rlen == c->rcap)
        return MC_OK; /* a complete (or oversized) message waits for chan_next() */

    iov.iov_base = c->rbuf + c->rlen;
    iov.iov_len = c->rcap - c->rlen;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);

    do {
        n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? MC_AGAIN : MC_ERROR;

    for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && chan_take_fds(c, cm) < 0)
            rc = MC_ERROR;
    }
    if (mh.msg_flags & MSG_CTRUNC)
        rc = MC_ERROR; /* the kernel dropped fds we were sent */
    if (rc != MC_OK)
        return rc;
    if (n == 0)
        return 1;
    c->rlen += (size_t)n;
    return MC_OK;
}

int chan_next(struct chan *c, struct chan_msg *m)
{
    struct chan_hdr hdr;
    size_t avail = c->rlen - c->roff;

    if (avail < CHAN_HDR_SIZE)
        return 0;
    memcpy(&hdr, c->rbuf + c->roff, CHAN_HDR_SIZE);
    if (hdr.len > CHAN_MAX_PAYLOAD || (hdr.flags & ~CHAN_F_FD) != 0)
        return MC_ERROR;
    if (avail - CHAN_HDR_SIZE < hdr.len)
        return 0;

    m->fd = -1;
    if (hdr.flags & CHAN_F_FD) {
        if (c->rfd_count == 0)
            return MC_ERROR;
        m->fd = c->rfds[c->rfd_head];
        c->rfd_head = (c->rfd_head + 1) % CHAN_MAX_FDS;
        c->rfd_count--;
    }
    m->hdr = hdr;
    m->data = c->rbuf + c->roff + CHAN_HDR_SIZE;
    c->roff += CHAN_HDR_SIZE + hdr.len;
    return 1;
}

int chan_drain(struct chan *c, chan_handler_fn *handle, void *arg)
{
    struct chan_msg m;
    int rc, next;

    do {
        rc = chan_read(c);
        while ((next = chan_next(c, &m)) == 1) {
            if (handle(arg, &m) < 0)
                return MC_ERROR;
        }
        if (next < 0)
            return MC_ERROR;
    } while (rc == MC_OK);
    return rc == MC_AGAIN ? MC_OK : rc;
}

int chan_flush_wait(struct chan *c, int timeout_ms)
{
    uint64_t deadline = mc_monotonic_ms() + (uint64_t)MC_MAX(timeout_ms, 0), now;
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    int rc;

    for (;;) {
        rc = chan_flush(c);
        if (rc != MC_AGAIN)
            return rc;
        now = mc_monotonic_ms();
        if (now >= deadline)
            return MC_ERROR;
        if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR)
            return MC_ERROR;
    }
}
