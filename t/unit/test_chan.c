/*
 * Channel tests. tap.h's T_OK evaluates its condition twice, so every
 * check with a side effect is computed into a local first.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/mc.h"
#include "tap.h"

static void pair_opts(struct chan *a, struct chan *b, int type)
{
    int sv[2];

    if (socketpair(AF_UNIX, type, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
    chan_init(a, sv[0]);
    chan_init(b, sv[1]);
}

static void pair(struct chan *a, struct chan *b)
{
    pair_opts(a, b, SOCK_STREAM);
}

/* A channel on one end and the raw other end, for writing as a hostile peer. */
static int raw_pair(struct chan *c)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
    chan_init(c, sv[1]);
    return sv[0];
}

static void raw_write(int fd, const void *p, size_t len)
{
    if (write(fd, p, len) != (ssize_t)len)
        perror("write");
}

static void raw_hdr(int fd, uint16_t flags, uint32_t len)
{
    struct chan_hdr h = {.type = 1, .flags = flags, .len = len};

    raw_write(fd, &h, sizeof(h));
}

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;

    while (d != NULL && readdir(d) != NULL)
        n++;
    if (d != NULL)
        closedir(d);
    return n;
}

/*
 * Moves bytes from tx to rx, alternating flush and read, until rx yields
 * the next message: chan_next()'s result (1 or MC_ERROR), or 0 when
 * nothing more arrives. Counts MC_AGAIN from chan_flush in *again.
 */
static int pump(struct chan *tx, struct chan *rx, struct chan_msg *m, unsigned *again)
{
    int i, r;

    for (i = 0; i < 100000; i++) {
        r = chan_next(rx, m);
        if (r != 0)
            return r;
        if (chan_pending(tx)) {
            r = chan_flush(tx);
            if (r == MC_ERROR)
                return MC_ERROR;
            if (r == MC_AGAIN && again != NULL)
                (*again)++;
        }
        r = chan_read(rx);
        if (r != MC_OK && r != MC_AGAIN)
            return r == 1 ? 0 : r;
    }
    return 0;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 31 + seed);
}

/* Writes through fd and reads at p0: proves fd is that pipe's write end. */
static bool same_pipe(int fd, int p0)
{
    char c = 0;

    return fd >= 0 && write(fd, "x", 1) == 1 && read(p0, &c, 1) == 1 && c == 'x';
}

static void test_sizes(void)
{
    static const size_t sizes[] = {0, 1, 4096, CHAN_MAX_PAYLOAD};
    uint8_t *buf = calloc(1, CHAN_MAX_PAYLOAD + 1), *want = malloc(CHAN_MAX_PAYLOAD);
    struct iovec iov[2] = {{buf, CHAN_MAX_PAYLOAD}, {buf, 1}};
    struct chan a, b;
    struct chan_msg m;
    size_t i;
    bool ok;

    pair(&a, &b);
    for (i = 0; i < MC_ARRAY_LEN(sizes); i++) {
        fill(buf, sizes[i], (unsigned)i);
        memcpy(want, buf, sizes[i]);
        ok = chan_send(&a, (uint16_t)(i + 1), 7, buf, sizes[i], -1) == 0;
        memset(buf, 0, sizes[i]); /* the queue holds its own copy */
        ok = ok && pump(&a, &b, &m, NULL) == 1 && m.hdr.type == i + 1 && m.hdr.gen == 7 &&
             m.hdr.len == sizes[i] && m.fd == -1 && memcmp(m.data, want, sizes[i]) == 0;
        T_OK(ok, "round trip of %zu bytes", sizes[i]);
    }
    ok = chan_send(&a, 1, 0, buf, CHAN_MAX_PAYLOAD + 1, -1) == -1 && !chan_pending(&a);
    T_OK(ok, "payload over CHAN_MAX_PAYLOAD rejected by chan_send");
    ok = chan_sendv(&a, 1, 0, iov, 2, -1) == -1 && !chan_pending(&a);
    T_OK(ok, "iovecs adding up to over the max rejected");
    chan_close(&a);
    chan_close(&b);
    free(buf);
    free(want);
}

static void test_many(void)
{
    struct chan a, b;
    struct chan_msg m;
    const uint8_t *first = NULL;
    uint32_t i, v, n = 0, bad = 0, seq0 = 0;
    int r;

    pair(&a, &b);
    for (i = 0; i < 1000; i++)
        chan_send(&a, (uint16_t)(i % 9 + 1), i * 3, &i, sizeof(i), -1);
    r = chan_flush_wait(&a, 1000);
    T_OK(r == MC_OK && !chan_pending(&a), "1000 queued messages flushed at once");

    while ((r = pump(&a, &b, &m, NULL)) == 1) {
        memcpy(&v, m.data, sizeof(v));
        if (n == 0) {
            seq0 = m.hdr.seq;
            first = m.data;
        }
        /* chan_next() must not move data it handed out before the next chan_read() */
        if (n == 1 && (first + 20 != m.data || memcmp(first, &(uint32_t){0}, 4) != 0))
            bad++;
        if (m.hdr.seq != seq0 + n || m.hdr.type != n % 9 + 1 || m.hdr.gen != n * 3 || v != n ||
            m.hdr.len != sizeof(v))
            bad++;
        n++;
    }
    T_OK(r == 0 && n == 1000 && bad == 0, "read back in order with seq/type/gen intact");
    chan_close(&a);
    chan_close(&b);
}

static void test_fds(void)
{
    unsigned fds0 = count_fds();
    struct chan a, b;
    struct chan_msg m[5];
    int p[2], i;
    bool ok = true;
    char c;

    pair(&a, &b);
    if (pipe(p) < 0)
        return;
    chan_send(&a, 1, 0, "a", 1, -1);
    chan_send(&a, 2, 0, "b", 1, p[1]);
    chan_send(&a, 3, 0, NULL, 0, -1);
    chan_send(&a, 4, 0, "d", 1, p[1]);
    chan_send(&a, 5, 0, "e", 1, -1);
    close(p[1]); /* the queue holds its own dup()s */
    for (i = 0; i < 5; i++)
        ok = ok && pump(&a, &b, &m[i], NULL) == 1 && m[i].hdr.type == i + 1;
    T_OK(ok, "messages with and without fds arrive in order");
    ok = ok && m[0].fd == -1 && m[2].fd == -1 && m[4].fd == -1;
    T_OK(ok, "messages without an fd carry none");
    ok = ok && same_pipe(m[1].fd, p[0]) && same_pipe(m[3].fd, p[0]);
    T_OK(ok, "received fds are the pipe's write end");
    for (i = 0; i < 5; i++)
        if (m[i].fd >= 0)
            close(m[i].fd);
    /* EOF proves the sender closed its dup()s once sent */
    ok = read(p[0], &c, 1) == 0;
    T_OK(ok, "sender closed its copies of the fds");
    close(p[0]);
    chan_close(&a);
    chan_close(&b);
    T_OK(count_fds() == fds0, "fds: none leaked");
}

static void test_partial(void)
{
    const size_t len = 256 * 1024;
    uint8_t *buf = malloc(len);
    int p[2], small = 4096;
    struct chan a, b;
    struct chan_msg m1, m2, m3;
    unsigned again = 0;
    char c = 0;
    bool ok;

    pair(&a, &b);
    setsockopt(a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    if (pipe(p) < 0)
        return;
    fill(buf, len, 5);
    chan_send(&a, 1, 1, buf, len, p[1]);
    chan_send(&a, 2, 2, buf, len, p[1]);
    chan_send(&a, 3, 3, "z", 1, -1);
    ok = pump(&a, &b, &m1, &again) == 1 && m1.hdr.type == 1 && m1.hdr.len == len &&
         memcmp(m1.data, buf, len) == 0 && same_pipe(m1.fd, p[0]) && again > 0;
    T_OK(ok, "message larger than SO_SNDBUF arrives intact after partial writes");
    ok = pump(&a, &b, &m2, &again) == 1 && m2.hdr.type == 2 && m2.hdr.len == len &&
         memcmp(m2.data, buf, len) == 0 && same_pipe(m2.fd, p[0]);
    T_OK(ok, "second partially written message, with its own fd, intact");
    ok = pump(&a, &b, &m3, &again) == 1 && m3.hdr.type == 3 && m3.data[0] == 'z' && m3.fd == -1;
    T_OK(ok, "following message intact");
    if (m1.fd >= 0)
        close(m1.fd);
    if (m2.fd >= 0)
        close(m2.fd);
    close(p[1]);
    ok = read(p[0], &c, 1) == 0;
    T_OK(ok, "partial writes: sender closed its fds");
    close(p[0]);
    chan_close(&a);
    chan_close(&b);
    free(buf);
}

static void test_hostile(void)
{
    static uint8_t junk[65536];
    unsigned fds0 = count_fds();
    struct chan c;
    struct chan_msg m;
    int peer, i, r = 0, r2;

    peer = raw_pair(&c);
    raw_hdr(peer, 0, CHAN_MAX_PAYLOAD + 1);
    raw_write(peer, junk, sizeof(junk));
    for (i = 0; i < 20 && r == 0; i++)
        r = chan_read(&c) == MC_OK ? chan_next(&c, &m) : MC_AGAIN;
    T_OK(r == MC_ERROR && c.rcap < CHAN_MAX_PAYLOAD,
         "len CHAN_MAX_PAYLOAD+1: chan_next fails, nothing that large allocated");
    chan_close(&c);
    close(peer);

    peer = raw_pair(&c);
    raw_hdr(peer, CHAN_F_FD, 0);
    r = chan_read(&c) == MC_OK ? chan_next(&c, &m) : MC_AGAIN;
    T_OK(r == MC_ERROR, "CHAN_F_FD without an fd: MC_ERROR");
    chan_close(&c);
    close(peer);

    peer = raw_pair(&c);
    raw_hdr(peer, 0x8000, 0);
    r = chan_read(&c) == MC_OK ? chan_next(&c, &m) : MC_AGAIN;
    T_OK(r == MC_ERROR, "unknown flag bit: MC_ERROR");
    chan_close(&c);
    close(peer);

    peer = raw_pair(&c);
    raw_hdr(peer, 0, 100);
    raw_write(peer, junk, 10);
    close(peer);
    r = chan_read(&c);
    r2 = chan_read(&c);
    T_OK(r == MC_OK && r2 == 1 && chan_next(&c, &m) == 0,
         "EOF mid-message: chan_read 1, chan_next 0");
    chan_close(&c);
    T_OK(count_fds() == fds0, "hostile peers: no fd leaked");
}

/* A peer passing more fds than CHAN_MAX_FDS in one sendmsg. */
static void test_fd_flood(void)
{
    enum { N = CHAN_MAX_FDS + 6 };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(N * sizeof(int))];
    } cbuf;
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    unsigned fds0 = count_fds();
    struct cmsghdr *cm;
    struct chan c;
    int fds[N], peer, i, r;

    peer = raw_pair(&c);
    for (i = 0; i < N; i++)
        fds[i] = peer;
    memset(&cbuf, 0, sizeof(cbuf));
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    r = sendmsg(peer, &mh, 0) == 1 ? chan_read(&c) : MC_AGAIN;
    T_OK(r == MC_ERROR, "more than CHAN_MAX_FDS fds at once: MC_ERROR");
    chan_close(&c);
    close(peer);
    T_OK(count_fds() == fds0, "more than CHAN_MAX_FDS fds at once: all closed");

    /* one at a time, never claimed: the FIFO fills up */
    peer = raw_pair(&c);
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    mh.msg_controllen = CMSG_SPACE(sizeof(int));
    for (i = 0, r = MC_OK; i <= CHAN_MAX_FDS && r == MC_OK; i++)
        r = sendmsg(peer, &mh, 0) == 1 ? chan_read(&c) : MC_AGAIN;
    T_OK(r == MC_ERROR && i == CHAN_MAX_FDS + 1, "unclaimed fds over CHAN_MAX_FDS: MC_ERROR");
    chan_close(&c);
    close(peer);
    T_OK(count_fds() == fds0, "chan_close closes received fds not handed out");
}

static void test_eof(void)
{
    struct chan a, b;
    struct chan_msg m;
    int r = MC_OK, i, got = 0;

    pair(&a, &b);
    chan_send(&a, 1, 0, "one", 3, -1);
    chan_send(&a, 2, 0, "two", 3, -1);
    chan_flush_wait(&a, 1000);
    chan_close(&a);
    for (i = 0; i < 10 && r == MC_OK; i++)
        r = chan_read(&b);
    while (chan_next(&b, &m) == 1)
        got++;
    T_OK(r == 1 && got == 2, "EOF: messages buffered before it are still delivered");
    chan_close(&b);

    pair(&a, &b);
    chan_close(&b);
    chan_send(&a, 1, 0, "x", 1, -1);
    r = chan_flush(&a);
    T_OK(r == MC_ERROR, "peer closed: chan_flush MC_ERROR (no SIGPIPE)");
    chan_close(&a);
}

static void test_flush_wait_timeout(void)
{
    uint8_t *buf = calloc(1, CHAN_MAX_PAYLOAD);
    struct chan a, b;
    int r;

    pair(&a, &b);
    chan_send(&a, 1, 0, buf, CHAN_MAX_PAYLOAD, -1); /* more than the socket holds; nobody reads */
    r = chan_flush_wait(&a, 50);
    T_OK(r == MC_ERROR && chan_pending(&a), "chan_flush_wait gives up at its deadline");
    chan_close(&a);
    chan_close(&b);
    free(buf);
}

static int drain_count(void *arg, struct chan_msg *m)
{
    unsigned *n = arg;
    if (m->fd >= 0)
        close(m->fd);
    (*n)++;
    return 0;
}

/* chan_drain() reads until EAGAIN, so an edge-triggered caller never strands
 * messages: the first recvmsg stops at a message carrying an fd. */
static void test_drain(void)
{
    struct chan a, b;
    unsigned n = 0;
    int p[2];

    pair(&a, &b);
    (void)!pipe(p);
    chan_send(&a, 1, 0, "x", 1, p[0]);
    for (unsigned i = 0; i < 3000; i++)
        chan_send(&a, 2, 0, &i, sizeof(i), i % 500 == 0 ? p[1] : -1);
    chan_send(&a, 3, 0, NULL, 0, -1);
    int r = MC_OK, rc = MC_AGAIN;
    for (int i = 0; i < 1000 && n < 3002; i++) {
        r = chan_flush(&a);
        rc = chan_drain(&b, drain_count, &n);
        if (r == MC_ERROR || rc != MC_OK)
            break;
    }
    T_OK(r == MC_OK && rc == MC_OK && n == 3002,
         "chan_drain delivers every message, fds included, until EAGAIN (%u)", n);
    T_OK(chan_drain(&b, drain_count, &n) == MC_OK && n == 3002,
         "chan_drain on an empty socket: MC_OK, nothing delivered");
    chan_close(&a);
    T_OK(chan_drain(&b, drain_count, &n) == 1, "chan_drain after the peer closed: 1 (EOF)");
    chan_close(&b);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    test_sizes();
    test_many();
    test_fds();
    test_partial();
    test_hostile();
    test_fd_flood();
    test_eof();
    test_flush_wait_timeout();
    test_drain();
    return tap_done();
}
