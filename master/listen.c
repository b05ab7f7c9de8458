#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

static int listen_try(const struct mc_addr *a, int v6only)
{
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        /* inherited by every accepted socket: one setsockopt per listener, not per client */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        /* every client speaks first (ClientHello, PROXY header): the kernel
         * hands a connection over with its first bytes, one wakeup instead
         * of two; a silent one only after ~1 s, then handshake_timeout runs */
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one)) < 0 ||
        (a->ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

int listen_open(const char *name, const struct mc_bind *b)
{
    int fd = listen_try(&b->addr, b->v6only);
    if (fd < 0 && b->dual_stack && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        /* ":port" on a host without IPv6: fall back to IPv4 only */
        struct mc_addr v4 = {.len = sizeof(struct sockaddr_in)};
        struct sockaddr_in *sin = (struct sockaddr_in *)&v4.ss;
        sin->sin_family = AF_INET;
        sin->sin_port = ((const struct sockaddr_in6 *)&b->addr.ss)->sin6_port;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        fd = listen_try(&v4, 0);
    }
    if (fd < 0)
        log_errno(LOGL_ERROR, errno, "listener %s: cannot listen", name);
    return fd;
}
