/*
 * epoll plus a binary min-heap of timers. Arming, re-arming and stopping
 * a timer is O(log n); an idle connection costs one heap slot, and the
 * loop never scans all connections.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"

#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    uint64_t now;
    struct timer **heap; /* heap[0..n) */
    unsigned n, cap;
};

uint64_t mc_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->now = mc_monotonic_ms();
    return l;
}

void loop_free(struct loop *l)
{
    if (l == NULL)
        return;
    close(l->epfd);
    free(l->heap);
    free(l);
}

int loop_add(struct loop *l, struct ev *ev, uint32_t events)
{
    struct epoll_event ee = {.events = events, .data.ptr = ev};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, ev->fd, &ee);
}

int loop_mod(struct loop *l, struct ev *ev, uint32_t events)
{
    struct epoll_event ee = {.events = events, .data.ptr = ev};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, ev->fd, &ee);
}

void loop_del(struct loop *l, struct ev *ev)
{
    /* fails only if the fd was never added; closing the fd would drop it anyway */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
}

uint64_t loop_now(const struct loop *l)
{
    return l->now;
}

uint64_t loop_update_time(struct loop *l)
{
    l->now = mc_monotonic_ms();
    return l->now;
}

unsigned loop_timer_count(const struct loop *l)
{
    return l->n;
}

static void heap_place(struct loop *l, unsigned i, struct timer *t)
{
    l->heap[i] = t;
    t->idx = i + 1;
}

static void heap_up(struct loop *l, unsigned i)
{
    struct timer *t = l->heap[i];
    while (i > 0) {
        unsigned parent = (i - 1) / 2;
        if (l->heap[parent]->deadline <= t->deadline)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void heap_down(struct loop *l, unsigned i)
{
    struct timer *t = l->heap[i];
    for (;;) {
        unsigned child = 2 * i + 1;
        if (child >= l->n)
            break;
        if (child + 1 < l->n && l->heap[child + 1]->deadline < l->heap[child]->deadline)
            child++;
        if (t->deadline <= l->heap[child]->deadline)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void loop_timer_stop(struct loop *l, struct timer *t)
{
    if (t->idx == 0)
        return;
    unsigned i = t->idx - 1;
    t->idx = 0;
    l->n--;
    if (i == l->n)
        return;
    struct timer *last = l->heap[l->n];
    heap_place(l, i, last);
    if (i > 0 && last->deadline < l->heap[(i - 1) / 2]->deadline)
        heap_up(l, i);
    else
        heap_down(l, i);
}

void loop_timer_set_at(struct loop *l, struct timer *t, uint64_t deadline)
{
    if (t->idx != 0) {
        uint64_t old = t->deadline;
        t->deadline = deadline;
        if (deadline < old)
            heap_up(l, t->idx - 1);
        else
            heap_down(l, t->idx - 1);
        return;
    }
    if (l->n == l->cap) {
        unsigned cap = l->cap ? l->cap * 2 : 64;
        struct timer **h = realloc(l->heap, cap * sizeof(*h));
        if (h == NULL) {
            /* cannot happen in practice; never leave a connection without a deadline silently */
            log_error("timer heap: out of memory, firing timer at once");
            t->deadline = 0;
            t->cb(t);
            return;
        }
        l->heap = h;
        l->cap = cap;
    }
    t->deadline = deadline;
    l->heap[l->n] = t;
    t->idx = ++l->n;
    heap_up(l, l->n - 1);
}

void loop_timer_set(struct loop *l, struct timer *t, uint64_t ms)
{
    loop_timer_set_at(l, t, l->now + ms);
}

static void run_timers(struct loop *l)
{
    while (l->n > 0 && l->heap[0]->deadline <= l->now) {
        struct timer *t = l->heap[0];
        loop_timer_stop(l, t);
        t->cb(t);
    }
}

int loop_run_once(struct loop *l, const sigset_t *sigmask)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    int timeout = -1;

    loop_update_time(l);
    if (l->n > 0) {
        uint64_t d = l->heap[0]->deadline;
        timeout = d <= l->now ? 0 : (int)MC_MIN(d - l->now, (uint64_t)60000);
    }
    int n = epoll_pwait(l->epfd, events, LOOP_MAX_EVENTS, timeout, sigmask);
    int err = errno;
    /* also after a signal: its handling arms timers (shutdown_timeout) from
     * loop_now(), which must not be the moment this process went idle */
    loop_update_time(l);
    if (n < 0) {
        if (err == EINTR)
            return 0;
        log_errno(LOGL_ERROR, err, "epoll_pwait() failed");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct ev *ev = events[i].data.ptr;
        ev->cb(ev, events[i].events);
    }
    run_timers(l);
    return 0;
}
