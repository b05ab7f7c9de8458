#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/spawn.h"

#define QUICK_DEATH_MS                                                                             \
    1000 /* a child dying sooner than this after start counts toward the brake                     \
          */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000

static sigset_t child_sigmask;

void spawn_set_sigmask(const void *origmask)
{
    child_sigmask = *(const sigset_t *)origmask;
}

pid_t spawn_child(struct loop *l, const char *path, char *const argv[], struct chan *chan,
                  struct ev *ev)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        log_errno(LOGL_ERROR, errno, "socketpair() for %s", argv[0]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_errno(LOGL_ERROR, errno, "fork() for %s", argv[0]);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        /* a fresh image: no inherited heap, database handle or address-space layout */
        sigprocmask(SIG_SETMASK, &child_sigmask, NULL);
        if (sv[1] == CHILD_CHAN_FD)
            fcntl(sv[1], F_SETFD, 0);
        else if (dup2(sv[1], CHILD_CHAN_FD) < 0)
            _exit(127);
        execv(path, argv);
        log_errno(LOGL_ERROR, errno, "cannot execute %s", path);
        _exit(127);
    }
    close(sv[1]);
    chan_init(chan, sv[0]);
    ev->fd = sv[0];
    if (loop_add(l, ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        log_errno(LOGL_ERROR, errno, "epoll_ctl() for the channel of %s", argv[0]);
    return pid;
}

const char *spawn_describe_exit(int status, char *buf, size_t size)
{
    if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    return buf;
}

uint64_t spawn_restart_delay(unsigned *quick_deaths, uint64_t started_ms, uint64_t now_ms)
{
    *quick_deaths = now_ms - started_ms < QUICK_DEATH_MS ? *quick_deaths + 1 : 0;
    if (*quick_deaths <= 1)
        return 0;
    unsigned shift = *quick_deaths - 2 < 6 ? *quick_deaths - 2 : 6;
    uint64_t delay = (uint64_t)RESTART_MIN_MS << shift;
    return delay < RESTART_MAX_MS ? delay : RESTART_MAX_MS;
}
