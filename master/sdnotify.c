/*
 * sd_notify without libsystemd: one datagram per state change on the
 * unix socket named by NOTIFY_SOCKET ("@name" is the abstract namespace).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "master/sdnotify.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static uint64_t watchdog_ms;

void sdnotify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    const char *usec = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");

    if (usec != NULL && (wpid == NULL || strtol(wpid, NULL, 10) == getpid()))
        watchdog_ms = strtoull(usec, NULL, 10) / 1000;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");

    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        goto out;
    size_t len = strlen(path);
    if (len >= sizeof(notify_addr.sun_path)) {
        log_error("NOTIFY_SOCKET is too long, not notifying systemd");
        goto out;
    }
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, len);
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0';
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify_fd < 0)
        log_errno(LOGL_ERROR, errno, "notify socket");
out:
    unsetenv("NOTIFY_SOCKET");
}

void sdnotify(const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    if (notify_fd < 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return;
    /* never wait: a receiver that stopped reading must not freeze the master
     * (its supervision, the admin API); the message is dropped, and said */
    if (sendto(notify_fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
               (struct sockaddr *)&notify_addr, notify_len) < 0)
        log_errno(LOGL_WARN, errno, "sd_notify(%.*s) failed", (int)strcspn(buf, "\n"), buf);
}

uint64_t sdnotify_watchdog_ms(void)
{
    return watchdog_ms;
}
