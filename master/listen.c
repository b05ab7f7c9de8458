#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "master/listen.h"

#define TCP_STATE_LISTEN 0x0A /* the "st" column of /proc/net/tcp */

/*
 * A socket bound to a. A listener has SO_REUSEPORT, so that every worker
 * has its own socket on the port; a probe has not, so that the kernel
 * refuses it on a port that anything already listens on.
 */
static int listen_try(const struct mc_addr *a, int v6only, bool probe)
{
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (!probe && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        (a->ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
        (!probe &&
         /* inherited by every accepted socket: one setsockopt per listener, not per client */
         (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
          /* every client speaks first (ClientHello, PROXY header): the kernel
           * hands a connection over with its first bytes, one wakeup instead
           * of two; a silent one only after ~1 s, then handshake_timeout runs */
          setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one)) < 0 ||
          listen(fd, LISTEN_BACKLOG) < 0))) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int listen_socket(const struct mc_bind *b, bool probe)
{
    int fd = listen_try(&b->addr, b->v6only, probe);
    if (fd < 0 && b->dual_stack && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        /* ":port" on a host without IPv6: fall back to IPv4 only */
        struct mc_addr v4 = {.len = sizeof(struct sockaddr_in)};
        struct sockaddr_in *sin = (struct sockaddr_in *)&v4.ss;
        sin->sin_family = AF_INET;
        sin->sin_port = ((const struct sockaddr_in6 *)&b->addr.ss)->sin6_port;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        fd = listen_try(&v4, 0, probe);
    }
    return fd;
}

static unsigned listen_port(const struct mc_bind *b)
{
    if (b->addr.ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&b->addr.ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&b->addr.ss)->sin_port);
}

/* The inode and uid of a socket listening on port in the kernel's table; false if none. */
static bool listen_port_socket(unsigned port, unsigned long *inode, unsigned *uid)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    char line[512];
    bool found = false;

    for (size_t i = 0; i < MC_ARRAY_LEN(tables) && !found; i++) {
        FILE *f = fopen(tables[i], "re");
        if (f == NULL)
            continue;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode; the header fails the scan */
        while (!found && fgets(line, sizeof(line), f) != NULL) {
            unsigned lport, st;
            found = sscanf(line,
                           " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %u "
                           "%*d %lu",
                           &lport, &st, uid, inode) == 4 &&
                    lport == port && st == TCP_STATE_LISTEN && *inode != 0;
        }
        fclose(f);
    }
    return found;
}

/* True when process pid (its name in /proc, open as proc) holds the socket want ("socket:[N]"). */
static bool listen_proc_holds(int proc, const char *pid, const char *want)
{
    char fdpath[NAME_MAX + 8], target[64];
    struct dirent *e;
    bool found = false;

    snprintf(fdpath, sizeof(fdpath), "%s/fd", pid);
    int dfd = openat(proc, fdpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *fds = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (fds == NULL) {
        if (dfd >= 0)
            close(dfd);
        return false;
    }
    while (!found && (e = readdir(fds)) != NULL) {
        ssize_t n = readlinkat(dfd, e->d_name, target, sizeof(target) - 1);
        found = n > 0 && (size_t)n == strlen(want) && memcmp(target, want, (size_t)n) == 0;
    }
    closedir(fds);
    return found;
}

/*
 * The first process (in /proc order) holding socket inode, with its
 * name in comm; 0 when none is visible (another uid to a process that
 * is not root, another pid namespace). Only for an error message.
 */
static pid_t listen_socket_owner(unsigned long inode, char *comm, size_t size)
{
    char want[40];
    struct dirent *e;
    pid_t pid = 0;

    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return 0;
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    while (pid == 0 && (e = readdir(proc)) != NULL) {
        if (e->d_name[strspn(e->d_name, "0123456789")] != '\0' ||
            !listen_proc_holds(dirfd(proc), e->d_name, want))
            continue;
        pid = (pid_t)strtol(e->d_name, NULL, 10);
        char path[NAME_MAX + 8];
        snprintf(path, sizeof(path), "%s/comm", e->d_name);
        int fd = openat(dirfd(proc), path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, comm, size - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0 && comm[n - 1] == '\n')
            n--;
        comm[n > 0 ? n : 0] = '\0';
    }
    closedir(proc);
    return pid;
}

/* Says why binding b failed: for a port in use, who holds it, when that can be seen. */
static void listen_report(const char *name, const struct mc_bind *b, int err)
{
    unsigned port = listen_port(b), uid = 0;
    unsigned long inode = 0;
    char comm[32] = "";
    pid_t pid;

    if (err != EADDRINUSE) {
        log_errno(LOGL_ERROR, err, "listener %s: cannot listen", name);
        return;
    }
    if (!listen_port_socket(port, &inode, &uid)) {
        log_error("listener %s: port %u is already in use", name, port);
        return;
    }
    pid = listen_socket_owner(inode, comm, sizeof(comm));
    if (pid == 0)
        log_error("listener %s: port %u is already in use by a process of uid %u", name, port, uid);
    else if (strncmp(comm, "mc-proxy", 8) == 0)
        log_error("listener %s: port %u is already served by another mc-proxy (pid %d, %s); "
                  "two instances need ports of their own",
                  name, port, (int)pid, comm);
    else
        log_error("listener %s: port %u is already in use by pid %d (%s)", name, port, (int)pid,
                  comm);
}

int listen_open(const char *name, const struct mc_bind *b)
{
    int fd = listen_socket(b, false);
    if (fd < 0)
        listen_report(name, b, errno);
    return fd;
}

int listen_probe(const char *name, const struct mc_bind *b)
{
    int fd = listen_socket(b, true);
    if (fd < 0) {
        listen_report(name, b, errno);
        return -1;
    }
    close(fd);
    return 0;
}
