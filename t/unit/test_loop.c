/* The event loop's timer heap and fd dispatch. */
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/loop.h"
#include "tap.h"

#define N 2000

static uint64_t fired_at[N];
static unsigned fired_order[N], n_fired;

static void on_timer(struct timer *t)
{
    unsigned i = (unsigned)(uintptr_t)t->data;
    fired_order[n_fired++] = i;
    fired_at[i] = t->deadline;
}

static void test_heap_order(void)
{
    static struct timer t[N];
    struct loop *l = loop_new();
    uint64_t base = loop_now(l);
    bool stopped[N] = {0};

    srand(7);
    n_fired = 0;
    for (unsigned i = 0; i < N; i++) {
        t[i] = (struct timer){.cb = on_timer, .data = (void *)(uintptr_t)i};
        loop_timer_set_at(l, &t[i], base - 100000 + (uint64_t)(rand() % 100000));
    }
    /* re-arm a third, stop a third */
    for (unsigned i = 0; i < N; i += 3)
        loop_timer_set_at(l, &t[i], base - 100000 + (uint64_t)(rand() % 100000));
    for (unsigned i = 1; i < N; i += 3) {
        loop_timer_stop(l, &t[i]);
        stopped[i] = true;
    }
    T_OK(loop_timer_count(l) == N - (N + 1) / 3, "timer count after stops");
    loop_run_once(l, NULL);
    bool ordered = true, none_stopped = true;
    for (unsigned k = 1; k < n_fired; k++)
        ordered &= fired_at[fired_order[k - 1]] <= fired_at[fired_order[k]];
    for (unsigned k = 0; k < n_fired; k++)
        none_stopped &= !stopped[fired_order[k]];
    T_OK(n_fired == N - (N + 1) / 3, "every armed expired timer fires once (%u)", n_fired);
    T_OK(ordered, "timers fire in deadline order after random set, re-arm and stop");
    T_OK(none_stopped, "stopped timers never fire");
    T_OK(loop_timer_count(l) == 0 && !timer_armed(&t[0]), "fired timers are disarmed");
    loop_free(l);
}

static void test_future_timer_waits(void)
{
    struct loop *l = loop_new();
    struct timer t = {.cb = on_timer, .data = (void *)0};
    n_fired = 0;
    /* a timer counts from loop_now(), the loop's cached time, which may be
     * well before this moment on a busy machine: measure from it */
    uint64_t start = loop_now(l);
    loop_timer_set(l, &t, 50);
    while (n_fired == 0 && mc_monotonic_ms() - start < 30000)
        loop_run_once(l, NULL);
    uint64_t took = mc_monotonic_ms() - start;
    T_OK(n_fired == 1 && took >= 50, "a 50 ms timer fires no earlier than 50 ms (%llu)",
         (unsigned long long)took);
    loop_free(l);
}

static int ev_hits;
static void on_ev(struct ev *ev, uint32_t events)
{
    char buf[8];
    (void)events;
    ev_hits++;
    (void)!read(ev->fd, buf, sizeof(buf));
}

static void test_fd_dispatch(void)
{
    struct loop *l = loop_new();
    int p[2];
    (void)!pipe(p);
    struct ev ev = {.fd = p[0], .cb = on_ev};
    T_OK(loop_add(l, &ev, EPOLLIN) == 0, "loop_add");
    (void)!write(p[1], "x", 1);
    struct timer guard = {.cb = on_timer, .data = (void *)1};
    loop_timer_set(l, &guard, 1000);
    loop_run_once(l, NULL);
    T_OK(ev_hits == 1, "a readable fd is dispatched to its callback");
    loop_del(l, &ev);
    (void)!write(p[1], "x", 1);
    loop_timer_set(l, &guard, 10);
    n_fired = 0;
    while (n_fired == 0)
        loop_run_once(l, NULL);
    T_OK(ev_hits == 1, "a removed fd is not dispatched");
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

static void on_usr1(int sig)
{
    (void)sig;
}

/* A signal that ends a long wait leaves loop_now() current: the drain
 * deadline a SIGTERM arms is counted from the signal, not from when the
 * process went idle. */
static void test_time_after_signal(void)
{
    struct loop *l = loop_new();
    struct sigaction sa = {.sa_handler = on_usr1};
    sigset_t block, waitmask;
    struct timer far = {.cb = on_timer};
    pid_t parent = getpid(), child;
    uint64_t before;
    int rc;

    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGUSR1);
    sigaction(SIGUSR1, &sa, NULL);
    loop_timer_set(l, &far, 60000); /* the wait is bounded by this, not forever */
    before = loop_now(l);
    if ((child = fork()) == 0) {
        usleep(300 * 1000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    rc = loop_run_once(l, &waitmask);
    waitpid(child, NULL, 0);
    T_OK(rc == 0 && loop_now(l) - before >= 250,
         "time: loop_now() moved on by %llu ms during a wait a signal ended (want >= 250)",
         (unsigned long long)(loop_now(l) - before));
    loop_timer_stop(l, &far);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    loop_free(l);
}

int main(void)
{
    test_heap_order();
    test_time_after_signal();
    test_future_timer_waits();
    test_fd_dispatch();
    return tap_done();
}
