/* How every process sets up its signals and how a child talks to the master (proc.h). */
#include <errno.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "common/proc.h"

/* The flag each handled signal sets; written before the handler is installed. */
static volatile sig_atomic_t *proc_flags[NSIG];

static void proc_on_signal(int signo)
{
    if (signo > 0 && signo < NSIG && proc_flags[signo] != NULL)
        *proc_flags[signo] = 1;
}

void proc_signals(const struct proc_signal *sigs, size_t n, sigset_t *origmask, sigset_t *waitmask)
{
    struct sigaction sa = {.sa_handler = proc_on_signal, .sa_flags = waitmask ? 0 : SA_RESTART};
    sigset_t block, orig;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < n; i++) {
        proc_flags[sigs[i].signo] = sigs[i].flag;
        sigaddset(&block, sigs[i].signo);
        sigaction(sigs[i].signo, &sa, NULL);
    }
    if (waitmask == NULL)
        return;
    sigprocmask(SIG_BLOCK, &block, &orig);
    if (origmask != NULL)
        *origmask = orig;
    *waitmask = orig;
    for (size_t i = 0; i < n; i++)
        sigdelset(waitmask, sigs[i].signo);
}

int proc_chan_open(struct loop *l, struct chan *c, struct ev *ev, uint32_t events)
{
    chan_init(c, PROC_CHAN_FD);
    ev->fd = PROC_CHAN_FD;
    if (loop_add(l, ev, events) < 0) {
        log_errno(LOGL_ERROR, errno, "epoll_ctl() for the master channel");
        return -1;
    }
    return 0;
}

bool proc_chan_event(struct loop *l, struct chan *c, struct ev *ev, chan_handler_fn *handle,
                     void *arg)
{
    if (c->fd < 0)
        return false;
    /* edge-triggered: drain until the socket would block */
    int rc = chan_drain(c, handle, arg);
    if (rc == MC_OK && chan_flush(c) == MC_ERROR)
        rc = MC_ERROR;
    if (rc == MC_OK)
        return true;
    loop_del(l, ev);
    chan_close(c);
    return false;
}
