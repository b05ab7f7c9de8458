/*
 * The non-blocking log path: stderr is a pipe nobody reads; writes never
 * wait, lines past the bound are dropped and counted, the shared
 * description stays blocking, a drained pipe gets every waiting line whole
 * and then "dropped N lines"; access lines follow log_set_access_fd().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "tap.h"

#define MAX_LINES 100000 /* far past pipe + buffer: a stuck write shows as no drop */

static char got[1 << 20];
static size_t got_len;

/* Reads what the pipe holds (its read end is non-blocking). */
static void drain(int fd)
{
    ssize_t n;
    while (got_len < sizeof(got) && (n = read(fd, got + got_len, sizeof(got) - got_len)) > 0)
        got_len += (size_t)n;
}

static unsigned count(const char *needle)
{
    unsigned n = 0;
    for (const char *p = got;
         (p = memmem(p, got_len - (size_t)(p - got), needle, strlen(needle))) != NULL; p++)
        n++;
    return n;
}

/* Every line whole: starts with a timestamp, has its level, ends with a newline. */
static bool lines_whole(void)
{
    const char *p = got, *e = got + got_len;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (nl == NULL ||
            !(p[0] == '2' && p[4] == '-' && memmem(p, (size_t)(nl - p), " level=", 7)))
            return false;
        p = nl + 1;
    }
    return true;
}

static void access_line(const char *client)
{
    struct log_rec r;
    log_rec_begin(&r, LOGL_INFO, LOG_ACCESS_MSG);
    log_rec_str(&r, "client", client);
    log_rec_end(&r);
}

static void on_guard(struct timer *t)
{
    (void)t;
}

int main(void)
{
    int p[2], q[2];
    _Atomic uint64_t shared = 0;
    char want[64];

    if (pipe2(p, O_NONBLOCK) < 0 || pipe2(q, O_NONBLOCK) < 0)
        return 1;
    fcntl(p[1], F_SETFL, 0); /* the write end as a parent hands it over: blocking */
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    if (dup2(p[1], STDERR_FILENO) < 0)
        return 1; /* p[1] stays open: the description we share with the "process" */

    struct loop *l = loop_new();
    struct timer guard = {.cb = on_guard};
    log_init("test");
    log_configure(LOGL_INFO, LOG_FORMAT_TEXT);
    log_nonblock(l);
    log_count_drops(&shared);

    unsigned sent = 0;
    while (log_dropped() == 0 && sent < MAX_LINES) {
        log_info("line %u of a log nobody reads", sent);
        sent++;
    }
    T_OK(log_dropped() > 0, "a stuck pipe: lines dropped after %u, none waited for", sent);
    T_OK(sent > 64 * 1024 / 100, "the buffer held lines before dropping any (%u)", sent);
    T_OK(!(fcntl(p[1], F_GETFL) & O_NONBLOCK), "the shared stderr description stays blocking");
    T_OK(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK,
         "fd 2 is a description of our own, non-blocking, for children to inherit");
    for (unsigned i = 0; i < 100; i++)
        log_info("line %u, past the bound", sent + i);
    uint64_t lost = log_dropped();
    T_OK(lost >= 100 && atomic_load(&shared) == lost, "every dropped line counted (%llu)",
         (unsigned long long)lost);

    /* the reader is back: what waited goes out, then the notice */
    snprintf(want, sizeof(want), "msg=\"dropped %llu lines\" dest=stderr dropped=%llu\n",
             (unsigned long long)lost, (unsigned long long)lost);
    for (int i = 0; i < 200 && count(want) == 0; i++) {
        drain(p[0]);
        loop_timer_set(l, &guard, 50);
        loop_run_once(l, NULL);
        drain(p[0]);
    }
    T_OK(count(want) == 1, "one \"dropped N lines\" once the pipe drains");
    T_OK(count(" level=info ") == sent - lost + 100, "every line not dropped arrived (%u)",
         count(" level=info "));
    T_OK(lines_whole(), "every line whole");
    log_info("after the notice");
    drain(p[0]);
    T_OK(count("msg=\"after the notice\"") == 1 && log_dropped() == lost, "logging resumed");

    /* access lines to the access file, the rest to stderr */
    got_len = 0;
    fcntl(q[1], F_SETFL, O_NONBLOCK);
    log_set_access_fd(q[1]);
    access_line("192.0.2.1:1");
    log_info("not an access line");
    drain(p[0]);
    T_OK(count("msg=\"not an access line\"") == 1 && count("msg=conn") == 0,
         "other lines stay on stderr");
    got_len = 0;
    drain(q[0]);
    T_OK(count("msg=conn client=192.0.2.1:1\n") == 1 && count("not an access") == 0,
         "access lines go to the access file");
    log_set_access_fd(-1);
    got_len = 0;
    access_line("192.0.2.2:2");
    drain(p[0]);
    T_OK(count("msg=conn client=192.0.2.2:2\n") == 1, "without one, access lines go to stderr");

    log_detach();
    loop_free(l);
    return tap_done();
}
