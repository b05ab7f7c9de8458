/*
 * One relay direction over real loopback TCP sockets: src_peer writes into
 * src, relay_pump() moves src -> dst, dst_peer reads. The test plays the
 * event loop: it sets the flags conn.c sets from epoll events.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "worker/relay.h"

#define BUF_SIZE   (16 * 1024)
#define DEADLINE_S 20 /* a stream that has not arrived by then has stalled */

static uint8_t scratch[BUF_SIZE];
static const struct relay_buf buf = {scratch, sizeof(scratch)};

struct rig {
    int src_peer, src, dst, dst_peer;
    struct relay_dir d;
    struct pipe_pool pool;
};

static void nonblock(int fd)
{
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A connected loopback TCP pair, both ends non-blocking. */
static int tcp_pair(int *a, int *b)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (*a < 0 || connect(*a, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        return -1;
    *b = accept(l, NULL, NULL);
    close(l);
    if (*b < 0)
        return -1;
    nonblock(*a);
    nonblock(*b);
    return 0;
}

static int rig_open(struct rig *r)
{
    relay_dir_init(&r->d);
    pipe_pool_init(&r->pool, 4);
    return tcp_pair(&r->src_peer, &r->src) < 0 || tcp_pair(&r->dst, &r->dst_peer) < 0 ? -1 : 0;
}

static void rig_close(struct rig *r)
{
    relay_dir_release(&r->d, &r->pool);
    pipe_pool_free(&r->pool);
    close(r->src_peer);
    close(r->src);
    if (r->dst >= 0)
        close(r->dst);
    close(r->dst_peer);
}

static enum relay_status pump(struct rig *r, bool last)
{
    size_t budget = SIZE_MAX;
    return relay_pump(&r->d, r->src, r->dst, last, &r->pool, &buf, &budget);
}

/* What the event loop does on EPOLLRDHUP without EPOLLERR. */
static void saw_fin(struct relay_dir *d)
{
    d->src_ready = d->src_hup = d->src_fin = true;
}

static void test_small_message(void)
{
    struct rig r;
    char out[256];

    T_OK(rig_open(&r) == 0, "small: loopback pairs");
    T_OK(send(r.src_peer, "hello, backend", 14, 0) == 14, "small: client sends");
    r.d.src_ready = true;
    T_OK(pump(&r, false) == RELAY_WAIT, "small: pump waits for more");
    ssize_t n = recv(r.dst_peer, out, sizeof(out), 0);
    T_OK(n == 14 && memcmp(out, "hello, backend", 14) == 0, "small: bytes arrive as sent");
    T_OK(!r.d.src_ready, "small: a short read marks the source drained (no EAGAIN read)");
    T_OK(r.d.pipe_r < 0 && r.d.park == NULL && r.d.bytes == 14,
         "small: nothing held after the message, bytes counted");
    rig_close(&r);
}

static void test_fin(bool last)
{
    struct rig r;
    char out[64];
    const char *what = last ? "fin, last direction" : "fin";

    T_OK(rig_open(&r) == 0, "%s: loopback pairs", what);
    T_OK(send(r.src_peer, "bye", 3, 0) == 3 && shutdown(r.src_peer, SHUT_WR) == 0,
         "%s: data then FIN", what);
    saw_fin(&r.d);
    T_OK(pump(&r, last) == RELAY_DONE, "%s: one read reaches EOF", what);
    T_OK(recv(r.dst_peer, out, sizeof(out), 0) == 3, "%s: the data arrives", what);
    if (!last) {
        T_OK(recv(r.dst_peer, out, sizeof(out), 0) == 0, "%s: FIN propagated by shutdown", what);
    } else {
        errno = 0;
        T_OK(recv(r.dst_peer, out, sizeof(out), 0) < 0 && errno == EAGAIN,
             "%s: no shutdown, the FIN is left to close()", what);
        close(r.dst);
        r.dst = -1;
        T_OK(recv(r.dst_peer, out, sizeof(out), 0) == 0, "%s: close() sends the FIN", what);
    }
    rig_close(&r);
}

static void test_reset_read_until_shown(void)
{
    struct rig r;
    char out[64];
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    T_OK(rig_open(&r) == 0, "reset: loopback pairs");
    T_OK(send(r.src_peer, "partial", 7, 0) == 7, "reset: data first");
    T_OK(setsockopt(r.src_peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0 &&
             close(r.src_peer) == 0,
         "reset: then an abortive close");
    r.src_peer = dup(r.dst_peer); /* keeps rig_close simple */
    /* EPOLLERR comes with RDHUP: hup without fin */
    r.d.src_ready = r.d.src_hup = true;
    T_OK(pump(&r, false) == RELAY_ERROR, "reset: read until the error shows");
    T_OK(recv(r.dst_peer, out, sizeof(out), 0) == 7, "reset: the data before it was relayed");
    rig_close(&r);
}

/*
 * Pushes total bytes of a pattern through, playing writer, event loop and
 * reader, with the destination's buffers shrunk so it blocks often.
 * Returns the bytes that arrived intact, or -1 on a relay error.
 */
static long stream(struct rig *r, size_t total, bool *saw_park, bool *saw_big)
{
    static uint8_t chunk[64 * 1024];
    size_t sent = 0, got = 0;
    time_t deadline = time(NULL) + DEADLINE_S;

    while (got < total && time(NULL) < deadline) {
        /* the writer runs ahead: up to 1 MiB a round, as much as the socket takes */
        for (int i = 0; i < 16 && sent < total; i++) {
            size_t want = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);
            for (size_t j = 0; j < want; j++)
                chunk[j] = (uint8_t)((sent + j) * 7 + 3);
            ssize_t n = send(r->src_peer, chunk, want, MSG_DONTWAIT);
            if (n <= 0)
                break;
            sent += (size_t)n;
            if (sent == total)
                shutdown(r->src_peer, SHUT_WR);
        }
        /* what epoll would say: RDHUP once the FIN has arrived, not when it was sent */
        struct pollfd pf = {.fd = r->src, .events = POLLIN | POLLRDHUP};
        (void)poll(&pf, 1, 0);
        if (pf.revents & POLLRDHUP)
            saw_fin(&r->d);
        else
            r->d.src_ready = true;
        r->d.dst_blocked = false; /* as if EPOLLOUT came */
        enum relay_status st = pump(r, false);
        if (st == RELAY_ERROR)
            return -1;
        *saw_park |= r->d.park != NULL;
        *saw_big |= r->d.pipe_r >= 0 && fcntl(r->d.pipe_w, F_GETPIPE_SZ) == RELAY_BULK_PIPE;
        ssize_t n;
        size_t got0 = got;
        while ((n = recv(r->dst_peer, chunk, sizeof(chunk), MSG_DONTWAIT)) > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (chunk[i] != (uint8_t)((got + (size_t)i) * 7 + 3))
                    return (long)got;
            got += (size_t)n;
        }
        if (got == got0) {
            /* nothing moved: wait (bounded) for the kernel, a window update or a probe */
            struct pollfd p[2] = {{.fd = r->dst_peer, .events = POLLIN},
                                  {.fd = r->src_peer, .events = POLLOUT}};
            (void)poll(p, 2, 50);
        }
    }
    return (long)got;
}

static void test_blocked_destination_parks(void)
{
    struct rig r;
    int small = 16384;
    int tiny[2];
    bool park = false, big = false;

    T_OK(rig_open(&r) == 0, "park: loopback pairs");
    setsockopt(r.dst, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(r.dst_peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    /* a one-page pipe in the pool, as the kernel hands out past the
     * user's pipe budget: parking must not depend on a pipe's capacity */
    T_OK(pipe2(tiny, O_NONBLOCK) == 0 && fcntl(tiny[1], F_SETPIPE_SZ, 4096) == 4096,
         "park: a one-page pipe");
    r.pool.small.fds[0][0] = tiny[0];
    r.pool.small.fds[0][1] = tiny[1];
    r.pool.small.n = 1;
    T_OK(stream(&r, 1 << 20, &park, &big) == 1 << 20,
         "park: 1 MiB through a slow destination arrives whole and in order");
    T_OK(park, "park: leftovers of a blocked send were parked");
    T_OK(r.d.done && r.d.park == NULL && r.d.pipe_r < 0, "park: nothing held once done");
    rig_close(&r);
}

/* The rig's sockets again, for another stream through the same pool. */
static int rig_reconnect(struct rig *r)
{
    relay_dir_release(&r->d, &r->pool);
    relay_dir_init(&r->d);
    close(r->src_peer);
    close(r->src);
    close(r->dst);
    close(r->dst_peer);
    return tcp_pair(&r->src_peer, &r->src) < 0 || tcp_pair(&r->dst, &r->dst_peer) < 0 ? -1 : 0;
}

static void test_long_stream_pipe(void)
{
    struct rig r;
    bool park = false, big = false;
    int size = 64 * 1024;

    T_OK(rig_open(&r) == 0, "bulk: loopback pairs");
    /* so the destination blocks now and then while the pipe holds bytes */
    setsockopt(r.dst, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(r.dst_peer, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    T_OK(stream(&r, 16 << 20, &park, &big) == 16 << 20, "bulk: 16 MiB arrive whole and in order");
    T_OK(big, "bulk: a long stream's pipe was enlarged to RELAY_BULK_PIPE");
    bool small_big = false;
    for (unsigned i = 0; i < r.pool.small.n; i++)
        small_big |= fcntl(r.pool.small.fds[i][1], F_GETPIPE_SZ) > 64 * 1024;
    T_OK(!small_big && r.pool.big.n == 1 && r.d.pipe_r < 0 &&
             fcntl(r.pool.big.fds[0][1], F_GETPIPE_SZ) == RELAY_BULK_PIPE,
         "bulk: done, the enlarged pipe waits in the pool's big stack, not the default one");

    /* the next long stream takes that pipe: no pipe2(), no F_SETPIPE_SZ */
    struct stat before, after;
    T_OK(fstat(r.pool.big.fds[0][1], &before) == 0, "bulk: the pooled pipe's inode");
    T_OK(rig_reconnect(&r) == 0, "bulk: loopback pairs again");
    T_OK(stream(&r, 4 << 20, &park, &big) == 4 << 20, "bulk: a second stream arrives whole");
    T_OK(r.pool.big.n == 1 && fstat(r.pool.big.fds[0][1], &after) == 0 &&
             after.st_ino == before.st_ino,
         "bulk: the second stream used the pooled enlarged pipe, not a new one");
    rig_close(&r);
}

int main(void)
{
    test_small_message();
    test_fin(false);
    test_fin(true);
    test_reset_read_until_shown();
    test_blocked_destination_parks();
    test_long_stream_pipe();
    return tap_done();
}
