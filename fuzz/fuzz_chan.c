/*
 * The channel between the two ends of a socketpair, driven by a program
 * that the input spells. Each op byte's low 3 bits pick the op, bit 6 a
 * flag, bit 7 a size class; the bytes after it are its argument:
 *
 *   RAW   the peer writes b + 1 raw bytes of the input (times 64 with
 *         bit 7; b is the next byte), with an fd when bit 6
 *   SEND  the writer queues a message: type (2 bytes), b payload bytes
 *         (b * 64 with bit 7: more than the socket takes at once) cycled
 *         from the input, in two iovecs (an empty one by chan_send), with
 *         an fd when bit 6; then flushes, reading the other end while the
 *         socket is full. b = 255 with bit 7 asks for more than
 *         CHAN_MAX_PAYLOAD, which must be refused
 *   FLUSH the writer flushes (chan_flush_wait with no time to wait)
 *   READ  the reader reads until the socket is empty (chan_read and
 *         chan_next)
 *   DRAIN the same with chan_drain(), whose handler fails when bit 6
 *   FDS   the peer sends one byte with b % 72 + 1 fds (more than
 *         CHAN_MAX_FDS, or than one recvmsg takes, is an error)
 *   EOF   the peer stops writing
 *
 * While only SEND has written, what arrives must be what was sent, in
 * order (type, length, payload, fd or none), and at the end every sent
 * message must have arrived. A reader that saw an error reads no more.
 * Every payload byte handed out is read, every fd handed out closed; the
 * process holds the same number of fds afterwards.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/mc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { OP_RAW, OP_SEND, OP_FLUSH, OP_READ, OP_DRAIN, OP_FDS, OP_EOF };

#define OP_FLAG    0x40
#define OP_BIG     0x80
#define MAX_SENT   64         /* messages checked in flight */
#define MAX_BYTES  (1u << 16) /* payload bytes one input may send */
#define SNDBUF     4096       /* the writer's socket buffer: partial writes come soon */
#define MAX_PASSED (CHAN_MAX_FDS + 8)
#define MAX_ROUNDS 4096 /* flush/read rounds of one op */

struct sent {
    uint16_t type;
    uint32_t len, sum;
    bool fd;
};

struct run {
    const uint8_t *in; /* the program */
    size_t size, pos;
    struct chan w, r; /* the writer and the reader, the two ends */
    int devnull;
    bool clean; /* only SEND has written: arrivals are checked */
    bool dead;  /* the reader saw an error */
    bool eof;
    struct sent q[MAX_SENT];
    unsigned q_head, q_len;
    size_t bytes;
};

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;

    if (d == NULL)
        abort();
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static uint8_t next_byte(struct run *x)
{
    return x->pos < x->size ? x->in[x->pos++] : 0;
}

static uint32_t sum_of(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* sendmsg() of p[0..len) with nfds copies of /dev/null; a full socket takes less. */
static void raw_send(struct run *x, const uint8_t *p, size_t len, int nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(MAX_PASSED * sizeof(int))];
    } cbuf = {0};
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds > 0) {
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        for (int i = 0; i < nfds; i++)
            memcpy(CMSG_DATA(cm) + i * sizeof(int), &x->devnull, sizeof(int));
    }
    (void)sendmsg(x->w.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    x->clean = false;
}

/* One arrival: read every byte, close its fd, and compare it with what was sent. */
static int arrived(void *arg, struct chan_msg *m)
{
    struct run *x = arg;
    uint32_t sum = sum_of(m->data, m->hdr.len);

    if (m->fd >= 0)
        close(m->fd);
    if (x->clean) {
        const struct sent *s = &x->q[x->q_head];
        check(x->q_len > 0 && m->hdr.type == s->type && m->hdr.len == s->len && sum == s->sum &&
              (m->fd >= 0) == s->fd);
        x->q_head = (x->q_head + 1) % MAX_SENT;
        x->q_len--;
    }
    return 0;
}

/* The reader reads until the socket is empty: 0, 1 at EOF, -1 once it saw an error. */
static int read_some(struct run *x)
{
    struct chan_msg m;
    int r = MC_OK, next, queued;

    for (int i = 0; !x->dead && i < MAX_ROUNDS; i++) {
        r = chan_read(&x->r);
        while ((next = chan_next(&x->r, &m)) == 1)
            arrived(x, &m);
        if (r == MC_ERROR || next < 0)
            x->dead = true;
        else if (r == 1 || ioctl(x->r.fd, FIONREAD, &queued) < 0 || queued == 0)
            break;
    }
    check(!(x->dead && x->clean)); /* what the channel itself sent never breaks it */
    return x->dead ? -1 : r == 1;
}

static int refuse(void *arg, struct chan_msg *m)
{
    arrived(arg, m);
    return -1;
}

static void drain_some(struct run *x, bool fail)
{
    if (x->dead)
        return;
    int rc = chan_drain(&x->r, fail ? refuse : arrived, x);
    if (rc == MC_ERROR) {
        x->dead = true;
        check(!x->clean || fail);
        x->clean = false; /* a refused message was taken off the queue all the same */
    }
}

/* The writer flushes, the reader making room, until nothing is pending or no room comes. */
static void flush_all(struct run *x)
{
    for (int i = 0; i < MAX_ROUNDS && chan_pending(&x->w); i++) {
        int rc = chan_flush(&x->w);
        if (rc == MC_ERROR || (rc == MC_AGAIN && read_some(x) != 0))
            break;
    }
}

static void op_send(struct run *x, uint8_t op)
{
    uint16_t type = (uint16_t)(next_byte(x) << 8);
    type |= next_byte(x);
    uint8_t b = next_byte(x);
    size_t len = (size_t)b * (op & OP_BIG ? 64 : 1);
    bool fd = op & OP_FLAG;
    static const uint8_t one;

    if (b == 255 && (op & OP_BIG)) {
        /* refused before the payload is read */
        struct iovec iov = {.iov_base = (void *)&one, .iov_len = CHAN_MAX_PAYLOAD + 1};
        check(chan_sendv(&x->w, type, 0, &iov, 1, -1) < 0);
        return;
    }
    if (x->bytes + len > MAX_BYTES)
        return;
    x->bytes += len;
    uint8_t *p = malloc(len > 0 ? len : 1);
    if (p == NULL)
        return;
    for (size_t i = 0, n; i < len; i += n) {
        n = MC_MIN(x->size, len - i); /* size > 0: this op's byte came from it */
        memcpy(p + i, x->in, n);
    }
    struct iovec iov[2] = {{p, len / 3}, {p + len / 3, len - len / 3}};
    int rc = len == 0 ? chan_send(&x->w, type, 0, NULL, 0, fd ? x->devnull : -1)
                      : chan_sendv(&x->w, type, (uint32_t)len, iov, 2, fd ? x->devnull : -1);
    if (rc == 0) {
        if (x->q_len == MAX_SENT)
            x->clean = false;
        if (x->clean) {
            x->q[(x->q_head + x->q_len) % MAX_SENT] =
                (struct sent){.type = type, .len = (uint32_t)len, .sum = sum_of(p, len), .fd = fd};
            x->q_len++;
        }
    }
    free(p);
    flush_all(x);
}

static void step(struct run *x)
{
    uint8_t op = next_byte(x);
    size_t n;

    if (x->eof && (op & 7) != OP_READ && (op & 7) != OP_DRAIN)
        return;
    switch (op & 7) {
    case OP_RAW:
        n = (size_t)(next_byte(x) + 1) * (op & OP_BIG ? 64 : 1);
        n = MC_MIN(n, x->size - x->pos);
        raw_send(x, x->in + x->pos, n, op & OP_FLAG ? 1 : 0);
        x->pos += n;
        break;
    case OP_SEND:
        op_send(x, op);
        break;
    case OP_FLUSH:
        (void)chan_flush_wait(&x->w, 0);
        break;
    case OP_READ:
        read_some(x);
        break;
    case OP_DRAIN:
        drain_some(x, op & OP_FLAG);
        break;
    case OP_FDS:
        raw_send(x, (const uint8_t *)"", 1, next_byte(x) % MAX_PASSED + 1);
        break;
    default:
        shutdown(x->w.fd, SHUT_WR);
        x->eof = true;
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int devnull = -1;
    static struct run x;
    unsigned fds0;
    int sv[2];

    if (devnull < 0)
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fds0 = count_fds();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    x = (struct run){.in = data, .size = size, .devnull = devnull, .clean = true};
    /* the kernel's minimum (about 4 KiB) rather than its default */
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int){SNDBUF}, sizeof(int));
    chan_init(&x.w, sv[0]);
    chan_init(&x.r, sv[1]);
    while (x.pos < x.size)
        step(&x);
    /* the end: what the writer still holds goes out, then EOF */
    if (!x.eof) {
        flush_all(&x);
        shutdown(x.w.fd, SHUT_WR);
    }
    for (int i = 0; i < MAX_ROUNDS && read_some(&x) == 0; i++)
        ;
    if (x.clean && !chan_pending(&x.w))
        check(x.q_len == 0); /* everything sent arrived */
    chan_close(&x.w);
    chan_close(&x.r);
    check(count_fds() == fds0); /* no fd leaked */
    return 0;
}
