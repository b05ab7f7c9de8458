/*
 * chan_read()/chan_next() fed by a hostile peer. Input: byte 0 steers the
 * writer (bits 0-5: piece size - 1; bit 7: pieces 64 times larger; bit 6:
 * pass an fd with every piece), the rest is what the peer writes, piece
 * by piece, draining the channel after each piece and after EOF. Every
 * handed-out payload byte is read and every handed-out fd closed; the
 * process must hold the same number of fds afterwards.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/mc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

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

static int write_piece(int fd, const uint8_t *p, size_t len, int pass_fd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cbuf = {0};
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *cm;

    if (pass_fd >= 0) {
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Reads and claims messages until the socket is empty: 0, 1 at EOF, -1 on error. */
static int drain(struct chan *c)
{
    struct chan_msg m;
    int i, r, next, queued;
    uint32_t j;

    for (i = 0; i < 1024; i++) {
        r = chan_read(c);
        if (r == MC_ERROR)
            return -1;
        while ((next = chan_next(c, &m)) == 1) {
            if (m.fd >= 0)
                close(m.fd);
            for (j = 0; j < m.hdr.len; j++)
                sink ^= m.data[j];
        }
        if (next < 0)
            return -1;
        if (r == 1)
            return 1;
        if (ioctl(c->fd, FIONREAD, &queued) < 0 || queued == 0)
            return 0;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int devnull = -1;
    struct chan c;
    size_t piece, n;
    unsigned fds0;
    int sv[2], pass_fd, r = 0;

    if (size < 1)
        return 0;
    if (devnull < 0)
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    piece = (size_t)(data[0] & 0x3f) + 1;
    if (data[0] & 0x80)
        piece *= 64;
    pass_fd = (data[0] & 0x40) ? devnull : -1;
    data++;
    size--;

    fds0 = count_fds();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    chan_init(&c, sv[1]);
    while (size > 0 && r == 0) {
        n = MC_MIN(piece, size);
        if (write_piece(sv[0], data, n, pass_fd) < 0)
            abort(); /* drained after every piece, so the socket has room */
        data += n;
        size -= n;
        r = drain(&c);
    }
    close(sv[0]);
    if (r == 0)
        drain(&c);
    chan_close(&c);
    if (count_fds() != fds0)
        abort(); /* an fd leaked */
    return 0;
}
