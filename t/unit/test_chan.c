#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chan.h"
#include "mc.h"
#include "tap.h"

static void pair(struct chan *a, struct chan *b)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        exit(1);
    }
    chan_init(a, sv[0]);
    chan_init(b, sv[1]);
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
 * nothing more arrives.
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
        if (r != MC_OK)
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

static void test_sizes(void)
{
    static const size_t sizes[] = {0, 1, 4096, CHAN_MAX_PAYLOAD};
    uint8_t *buf = malloc(CHAN_MAX_PAYLOAD + 1), *want = malloc(CHAN_MAX_PAYLOAD);
    struct chan a, b;
    struct chan_msg m;
    size_t i;

    pair(&a, &b);
    for (i = 0; i < MC_ARRAY_LEN(sizes); i++) {
        fill(buf, sizes[i], (unsigned)i);
        memcpy(want, buf, sizes[i]);
        int sent = chan_send(&a, (uint16_t)(i + 1), 7, buf, sizes[i], -1);
        memset(buf, 0, sizes[i]); /* the queue holds its own copy */
        T_OK(sent == 0 && pump(&a, &b, &m, NULL) == 1 && m.hdr.type == i + 1 && m.hdr.gen == 7 &&
                 m.hdr.len == sizes[i] && m.fd == -1 && memcmp(m.data, want, sizes[i]) == 0,
             "round trip of %zu bytes", sizes[i]);
    }
    T_OK(chan_send(&a, 1, 0, buf, CHAN_MAX_PAYLOAD + 1, -1) == -1 && !chan_pending(&a),
         "payload over CHAN_MAX_PAYLOAD rejected by chan_send");
    struct iovec iov[2] = {{buf, CHAN_MAX_PAYLOAD}, {buf, 1}};
    T_OK(chan_sendv(&a, 1, 0, iov, 2, -1) == -1, "iovecs adding up to over the max rejected");
    chan_close(&a);
    chan_close(&b);
    free(buf);
    free(want);
}

static void test_many(void)
{
    struct chan a, b;
    struct chan_msg m, first;
    uint32_t i, n = 0, bad = 0, seq0 = 0;
    uint8_t first_copy[4];
    int r;

    pair(&a, &b);
    for (i = 0; i < 1000; i++)
        chan_send(&a, (uint16_t)(i % 9 + 1), i * 3, &i, sizeof(i), -1);
    T_OK(chan_flush_wait(&a, 1000) == MC_OK && !chan_pending(&a), "1000 messages flushed at once");

    while ((r = pump(&a, &b, &m, NULL)) == 1) {
        uint32_t v;

        memcpy(&v, m.data, sizeof(v));
        if (n == 0) {
            seq0 = m.hdr.seq;
            first = m;
            memcpy(first_copy, m.data, sizeof(first_copy));
        }
        if (n == 1 && memcmp(first.data, first_copy, sizeof(first_copy)) != 0)
            bad++; /* the first message's data moved before the next chan_read() */
        if (m.hdr.seq != seq0 + n || m.hdr.type != n % 9 + 1 || m.hdr.gen != n * 3 || v != n ||
            m.hdr.len != sizeof(v))
            bad++;
        n++;
    }
    T_OK(r == 0 && n == 1000 && bad == 0, "read back in order with seq/type/gen intact");
    chan_close(&a);
    chan_close(&b);
}

/* Writes through fd and reads at p0: proves fd is that pipe's write end. */
static bool same_pipe(int fd, int p0)
{
    char c = 0;

    return fd >= 0 && write(fd, "x", 1) == 1 && read(p0, &c, 1) == 1 && c == 'x';
}

static void test_fds(void)
{
    struct chan a, b;
    struct chan_msg m[5];
    int p[2], i, ok = 1;
    unsigned fds0 = count_fds();
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
    T_OK(m[0].fd == -1 && m[2].fd == -1 && m[4].fd == -1, "messages without fd carry none");
    T_OK(same_pipe(m[1].fd, p[0]) && same_pipe(m[3].fd, p[0]), "received fds are the pipe");
    close(m[1].fd);
    close(m[3].fd);
    /* EOF proves the sender closed its dup()s once sent */
    T_OK(read(p[0], &c, 1) == 0, "sender closed its copies of the fds");
    close(p[0]);
    chan_close(&a);
    chan_close(&b);
    T_OK(count_fds() == fds0, "no fd leaked");
}

static void test_partial(void)
{
    const size_t len = 256 * 1024;
    uint8_t *buf = malloc(len);
    int sv[2], p[2], small = 4096;
    struct chan a, b;
    struct chan_msg m1, m2, m3;
    unsigned again = 0;
    char c = 0;

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    chan_init(&a, sv[0]);
    chan_init(&b, sv[1]);
    if (pipe(p) < 0)
        return;
    fill(buf, len, 5);
    chan_send(&a, 1, 1, buf, len, p[1]);
    chan_send(&a, 2, 2, buf, len, p[1]);
    chan_send(&a, 3, 3, "z", 1, -1);
    T_OK(pump(&a, &b, &m1, &again) == 1 && m1.hdr.type == 1 && m1.hdr.len == len &&
             memcmp(m1.data, buf, len) == 0 && same_pipe(m1.fd, p[0]) && again > 0,
         "message larger than SO_SNDBUF arrives intact after partial writes");
    T_OK(pump(&a, &b, &m2, &again) == 1 && m2.hdr.type == 2 && memcmp(m2.data, buf, len) == 0 &&
             same_pipe(m2.fd, p[0]),
         "second partially written message with fd intact");
    T_OK(pump(&a, &b, &m3, &again) == 1 && m3.hdr.type == 3 && m3.data[0] == 'z' && m3.fd == -1,
         "following message intact");
    close(m1.fd);
    close(m2.fd);
    close(p[1]);
    T_OK(read(p[0], &c, 1) == 0, "partially written messages: sender closed its fds");
    close(p[0]);
    chan_close(&a);
    chan_close(&b);
    free(buf);
}

/* Writes raw bytes as a hostile peer would, bypassing chan_send(). */
static void raw_hdr(int fd, uint16_t flags, uint32_t len)
{
    struct chan_hdr h = {.type = 1, .flags = flags, .len = len};

    if (write(fd, &h, sizeof(h)) != sizeof(h))
        perror("write");
}

static void test_hostile(void)
{
    static uint8_t junk[65536];
    struct chan c;
    struct chan_msg m;
    unsigned fds0 = count_fds();
    int sv[2], i, r = 0;

    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    chan_init(&c, sv[1]);
    raw_hdr(sv[0], 0, CHAN_MAX_PAYLOAD + 1);
    if (write(sv[0], junk, sizeof(junk)) < 0)
        perror("write");
    for (i = 0; i < 20 && r == 0; i++)
        r = chan_read(&c) == MC_OK ? chan_next(&c, &m) : MC_ERROR;
    T_OK(r == MC_ERROR && c.rcap < CHAN_MAX_PAYLOAD,
         "len CHAN_MAX_PAYLOAD+1: chan_next fails, nothing that large allocated");
    chan_close(&c);
    close(sv[0]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    chan_init(&c, sv[1]);
    raw_hdr(sv[0], CHAN_F_FD, 0);
    T_OK(chan_read(&c) == MC_OK && chan_next(&c, &m) == MC_ERROR, "CHAN_F_FD without an fd");
    chan_close(&c);
    close(sv[0]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    chan_init(&c, sv[1]);
    raw_hdr(sv[0], 0x8000, 0);
    T_OK(chan_read(&c) == MC_OK && chan_next(&c, &m) == MC_ERROR, "unknown flag bit");
    chan_close(&c);
    close(sv[0]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    chan_init(&c, sv[1]);
    raw_hdr(sv[0], 0, 100);
    if (write(sv[0], junk, 10) != 10)
        perror("write");
    close(sv[0]);
    T_OK(chan_read(&c) == MC_OK && chan_read(&c) == 1 && chan_next(&c, &m) == 0,
         "EOF mid-message: chan_read 1, chan_next 0");
    chan_close(&c);
    T_OK(count_fds() == fds0, "hostile peers: no fd leaked");
}

/* A peer passing more fds than CHAN_MAX_FDS in one go. */
static void test_fd_flood(void)
{
    enum { N = CHAN_MAX_FDS + 6 };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(N * sizeof(int))];
    } cbuf;
    int fds[N], sv[2], i;
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *cm;
    unsigned fds0 = count_fds();
    struct chan c;

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    chan_init(&c, sv[1]);
    for (i = 0; i < N; i++)
        fds[i] = sv[0];
    memset(&cbuf, 0, sizeof(cbuf));
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    T_OK(sendmsg(sv[0], &mh, 0) == 1 && chan_read(&c) == MC_ERROR, "too many fds: MC_ERROR");
    chan_close(&c);
    close(sv[0]);
    T_OK(count_fds() == fds0, "too many fds: all closed");
}

static void test_eof(void)
{
    struct chan a, b;
    struct chan_msg m;
    int r, i, got = 0;

    pair(&a, &b);
    chan_send(&a, 1, 0, "one", 3, -1);
    chan_send(&a, 2, 0, "two", 3, -1);
    chan_flush_wait(&a, 1000);
    chan_close(&a);
    for (i = 0; i < 10 && (r = chan_read(&b)) == MC_OK; i++)
        ;
    while (chan_next(&b, &m) == 1)
        got++;
    T_OK(r == 1 && got == 2, "EOF: messages buffered before it are still delivered");
    chan_close(&b);

    pair(&a, &b);
    chan_close(&b);
    chan_send(&a, 1, 0, "x", 1, -1);
    T_OK(chan_flush(&a) == MC_ERROR, "peer closed: chan_flush MC_ERROR (no SIGPIPE)");
    chan_close(&a);
}

static void test_flush_wait_timeout(void)
{
    static uint8_t buf[CHAN_MAX_PAYLOAD];
    struct chan a, b;

    pair(&a, &b);
    chan_send(&a, 1, 0, buf, sizeof(buf), -1); /* more than the socket holds, nobody reads */
    T_OK(chan_flush_wait(&a, 50) == MC_ERROR && chan_pending(&a),
         "chan_flush_wait gives up at its deadline");
    chan_close(&a);
    chan_close(&b);
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
    return tap_done();
}
