/* The accept loop with its pause when out of descriptors (acceptor.h). */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/acceptor.h"
#include "common/log.h"

#define ACCEPTOR_LOG_EVERY_MS 1000

static void acceptor_pause(struct acceptor *a, int err)
{
    uint64_t now = loop_now(a->loop);

    if (now - *a->log_ms >= ACCEPTOR_LOG_EVERY_MS) {
        log_errno(LOGL_ERROR, err, "accept() on %s; pausing accepts for %d ms", a->name,
                  ACCEPTOR_PAUSE_MS);
        *a->log_ms = now;
    }
    loop_del(a->loop, &a->ev);
    a->accepting = false;
    loop_timer_set(a->loop, &a->pause, ACCEPTOR_PAUSE_MS);
}

static void acceptor_on_event(struct ev *ev, uint32_t events)
{
    struct acceptor *a = ev->data;
    (void)events;

    /* fn may close the acceptor (a drain): then it stops here */
    for (unsigned i = 0; i < a->batch && a->accepting; i++) {
        struct mc_addr peer = {.len = sizeof(peer.ss)};
        int fd =
            accept4(a->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            a->fn(a->arg, fd, &peer);
            continue;
        }
        switch (errno) {
        case EAGAIN:
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            acceptor_pause(a, errno);
            return;
        default:
            log_errno(LOGL_ERROR, errno, "accept() on %s", a->name);
            return;
        }
    }
}

static void acceptor_resume(struct timer *t)
{
    acceptor_start(t->data);
}

void acceptor_init(struct acceptor *a, struct loop *l, int fd, unsigned batch, const char *name,
                   uint64_t *log_ms, acceptor_fn *fn, void *arg)
{
    *a = (struct acceptor){
        .loop = l, .fd = fd, .batch = batch, .name = name, .log_ms = log_ms, .fn = fn, .arg = arg};
    a->ev = (struct ev){.fd = fd, .cb = acceptor_on_event, .data = a};
    a->pause = (struct timer){.cb = acceptor_resume, .data = a};
}

int acceptor_start(struct acceptor *a)
{
    if (a->fd < 0 || a->accepting)
        return 0;
    if (loop_add(a->loop, &a->ev, EPOLLIN) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() for the listener on %s", a->name);
        return -1;
    }
    a->accepting = true;
    return 0;
}

void acceptor_close(struct acceptor *a)
{
    if (a->fd < 0)
        return;
    if (a->accepting)
        loop_del(a->loop, &a->ev);
    loop_timer_stop(a->loop, &a->pause);
    close(a->fd);
    a->fd = -1;
    a->accepting = false;
}
