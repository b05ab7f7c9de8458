/*
 * One line per event on stderr. Each line is formatted into a stack
 * buffer and written with a single write(2) of at most PIPE_BUF bytes, so
 * lines from the master and the workers sharing stderr never interleave
 * mid-line.
 *
 * After log_nonblock() a destination (a "sink": stderr, or the access
 * file) is written without ever blocking, and without touching the open
 * file description other processes may share: a socket (journald) gets
 * send(MSG_DONTWAIT), a pipe or terminal is reopened through
 * /proc/self/fd into a description of our own with O_NONBLOCK (made our
 * fd 2, which the master's children then inherit), a regular file never
 * blocks. What it cannot take waits in a bounded buffer, as
 * whole lines, flushed on EPOLLOUT; past the bound lines are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"

#define LOG_BUF_SIZE (64 * 1024) /* per sink: a few hundred lines waiting for a slow reader */
#define LOG_EXIT_MS  500         /* how long an exiting process waits for a slow reader */

_Static_assert(sizeof(((struct log_rec *)0)->buf) <= PIPE_BUF,
               "a line reaches a pipe whole or not at all");

enum sink_how {
    SINK_BLOCKING, /* before log_nonblock(): plain write(2) */
    SINK_WRITE,    /* write(2) to a description that is ours and O_NONBLOCK, or a regular file */
    SINK_SEND,     /* a socket: send(MSG_DONTWAIT) leaves the shared description blocking */
    SINK_POLL,     /* shared and not reopenable: poll() first (racy, the last resort) */
};

struct log_sink {
    const char *name;
    int fd; /* -1: none */
    enum sink_how how;
    struct ev ev;
    bool watched;     /* registered for EPOLLOUT */
    uint64_t dropped; /* lines lost since the last notice */
    size_t off, len;  /* buf[off, len) waits to be written: whole lines, but for a short write */
    char buf[LOG_BUF_SIZE];
};

static const char *log_proc = "mc-proxy";
static int log_level = LOGL_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static struct log_sink sink_err = {.name = "stderr", .fd = STDERR_FILENO};
static struct log_sink sink_access = {.name = "access_file", .fd = -1, .how = SINK_WRITE};
static struct loop *log_loop;
static pid_t log_loop_pid; /* the process log_loop belongs to */
static _Atomic uint64_t *log_drop_counter;
static uint64_t log_drops;

void log_init(const char *proc)
{
    log_proc = proc;
}

void log_configure(int level, enum log_format format)
{
    log_level = level;
    log_format = format;
}

bool log_enabled(int level)
{
    return level >= log_level;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < (int)MC_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0)
            return i;
    }
    return -1;
}

static void rec_put(struct log_rec *r, const char *s, size_t n)
{
    /* keep room for the closing "}\n" */
    size_t room = sizeof(r->buf) - 3 - r->len;
    if (n > room) {
        n = room;
        r->truncated = true;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void rec_puts(struct log_rec *r, const char *s)
{
    rec_put(r, s, strlen(s));
}

static bool safe_bare(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._:/-[]*@+,", c) != NULL;
}

/*
 * Escapes untrusted bytes: printable ASCII stays, the rest (and quotes and
 * backslashes) becomes the text \xHH, in both formats (JSON carries it as
 * "\\xHH"), so every line stays one valid line whatever a client sent and
 * reads the same in text and JSON.
 */
static void rec_put_escaped(struct log_rec *r, const char *val, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)val[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            rec_put(r, (const char *)&c, 1);
        } else if (log_format == LOG_FORMAT_JSON) {
            char e[5] = {'\\', '\\', 'x', hex[c >> 4], hex[c & 0xf]};
            rec_put(r, e, 5);
        } else {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xf]};
            rec_put(r, e, 4);
        }
    }
}

static void rec_value(struct log_rec *r, const char *val, size_t len)
{
    bool bare = len > 0 && log_format == LOG_FORMAT_TEXT;
    for (size_t i = 0; bare && i < len; i++)
        bare = safe_bare((unsigned char)val[i]);
    if (bare) {
        rec_put(r, val, len);
        return;
    }
    rec_put(r, "\"", 1);
    rec_put_escaped(r, val, len);
    rec_put(r, "\"", 1);
}

static void rec_key(struct log_rec *r, const char *key)
{
    if (log_format == LOG_FORMAT_JSON) {
        rec_puts(r, ",\"");
        rec_puts(r, key);
        rec_puts(r, "\":");
    } else {
        rec_puts(r, " ");
        rec_puts(r, key);
        rec_puts(r, "=");
    }
}

void log_rec_begin(struct log_rec *r, int level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char head[96];

    r->len = 0;
    r->truncated = false;
    r->access = strcmp(msg, LOG_ACCESS_MSG) == 0;
    r->level = level;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(head + n, sizeof(head) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    if (log_format == LOG_FORMAT_JSON) {
        rec_puts(r, "{\"time\":\"");
        rec_puts(r, head);
        rec_puts(r, "\"");
    } else {
        rec_puts(r, head);
    }
    log_rec_str(r, "level", level_names[level]);
    log_rec_str(r, "proc", log_proc);
    log_rec_u64(r, "pid", (uint64_t)getpid());
    log_rec_str(r, "msg", msg);
}

void log_rec_strn(struct log_rec *r, const char *key, const char *val, size_t len)
{
    rec_key(r, key);
    rec_value(r, val, len);
}

void log_rec_str(struct log_rec *r, const char *key, const char *val)
{
    log_rec_strn(r, key, val ? val : "", val ? strlen(val) : 0);
}

void log_rec_u64(struct log_rec *r, const char *key, uint64_t val)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)val);
    rec_key(r, key);
    rec_put(r, num, (size_t)n);
}

static void rec_close(struct log_rec *r)
{
    if (log_format == LOG_FORMAT_JSON)
        r->buf[r->len++] = '}';
    r->buf[r->len++] = '\n';
}

/* ------------------------------------------------------------------ sinks */

static void sink_put(struct log_sink *s, const char *line, size_t n);

static void sink_drop(struct log_sink *s, uint64_t lines)
{
    s->dropped += lines;
    log_drops += lines;
    if (log_drop_counter != NULL)
        atomic_fetch_add_explicit(log_drop_counter, lines, memory_order_relaxed);
}

static void sink_on_writable(struct ev *ev, uint32_t events);

static void sink_watch(struct log_sink *s)
{
    /* a child forked but not yet exec'd shares the parent's epoll set: hands off */
    if (log_loop == NULL || s->watched || getpid() != log_loop_pid)
        return;
    s->ev = (struct ev){.fd = s->fd, .cb = sink_on_writable, .data = s};
    /* a regular file cannot be watched (EPERM), but never makes us wait either */
    s->watched = loop_add(log_loop, &s->ev, EPOLLOUT) == 0;
}

static void sink_unwatch(struct log_sink *s)
{
    if (s->watched)
        loop_del(log_loop, &s->ev);
    s->watched = false;
}

/* One attempt: bytes taken, or -1 with errno (EAGAIN: not now). */
static ssize_t sink_try(struct log_sink *s, const char *p, size_t n)
{
    ssize_t w;

    if (s->how == SINK_POLL) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
        if (poll(&pfd, 1, 0) < 1) {
            errno = EAGAIN;
            return -1;
        }
        if (!(pfd.revents & POLLOUT)) {
            errno = EPIPE;
            return -1;
        }
    }
    do {
        if (s->how == SINK_SEND)
            w = send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            w = write(s->fd, p, n);
    } while (w < 0 && errno == EINTR);
    return w;
}

static bool would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
    return lines;
}

/*
 * Writes what waits, at most PIPE_BUF bytes of whole lines at a time (a
 * pipe takes such a write whole or not at all, so no line is ever split
 * by another process's). MC_OK when nothing is left, MC_AGAIN when the
 * destination is full, MC_ERROR when it failed (what waited is dropped).
 */
static int sink_flush(struct log_sink *s)
{
    while (s->off < s->len) {
        size_t n = MC_MIN(s->len - s->off, (size_t)PIPE_BUF);
        const char *p = s->buf + s->off;
        if (s->off + n < s->len) {
            const char *nl = memrchr(p, '\n', n);
            if (nl != NULL)
                n = (size_t)(nl - p) + 1;
        }
        ssize_t w = sink_try(s, p, n);
        if (w < 0 && would_block(errno))
            return MC_AGAIN;
        if (w <= 0) {
            sink_drop(s, count_lines(p, s->len - s->off));
            s->off = s->len = 0;
            return MC_ERROR;
        }
        s->off += (size_t)w;
    }
    s->off = s->len = 0;
    return MC_OK;
}

/* "dropped N lines", once the destination takes lines again. */
static void sink_notice(struct log_sink *s)
{
    struct log_rec r;
    char msg[64];
    uint64_t n = s->dropped;

    s->dropped = 0;
    snprintf(msg, sizeof(msg), "dropped %llu lines", (unsigned long long)n);
    log_rec_begin(&r, LOGL_WARN, msg);
    log_rec_str(&r, "dest", s->name);
    log_rec_u64(&r, "dropped", n);
    rec_close(&r);
    sink_put(s, r.buf, r.len);
}

/* Flushes what waits; once all is out, stops watching and says what was dropped. */
static void sink_resume(struct log_sink *s)
{
    if (s->fd < 0 || sink_flush(s) == MC_AGAIN)
        return;
    sink_unwatch(s);
    if (s->dropped > 0)
        sink_notice(s);
}

static void sink_on_writable(struct ev *ev, uint32_t events)
{
    (void)events;
    sink_resume(ev->data);
}

/* Queues line[0, n) whole, or drops it: never a part of it. */
static void sink_queue(struct log_sink *s, const char *line, size_t n)
{
    if (s->len + n > sizeof(s->buf) && s->off > 0) {
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->len + n > sizeof(s->buf)) {
        sink_drop(s, 1);
        return;
    }
    memcpy(s->buf + s->len, line, n);
    s->len += n;
    sink_watch(s);
}

static void sink_put(struct log_sink *s, const char *line, size_t n)
{
    if (s->how == SINK_BLOCKING) {
        /* stderr may be a pipe to journald; a failed log write has nowhere to go */
        ssize_t MC_UNUSED w = write(s->fd, line, n);
        return;
    }
    if (s->len > 0 && sink_flush(s) == MC_AGAIN) {
        sink_queue(s, line, n);
        return;
    }
    if (s->dropped > 0)
        sink_notice(s); /* may queue: then the line waits behind it */
    if (s->len > 0) {
        sink_queue(s, line, n);
        return;
    }
    ssize_t w = sink_try(s, line, n);
    if (w == (ssize_t)n)
        return;
    if (w < 0 && !would_block(errno)) {
        sink_drop(s, 1);
        return;
    }
    if (w < 0)
        w = 0;
    /* after a short write (a terminal) the rest goes out before any other line */
    sink_queue(s, line + w, n - (size_t)w);
}

void log_rec_end(struct log_rec *r)
{
    rec_close(r);
    sink_put(r->access && sink_access.fd >= 0 ? &sink_access : &sink_err, r->buf, r->len);
}

void log_nonblock(struct loop *l)
{
    struct stat st;

    log_loop = l;
    log_loop_pid = getpid();
    if (sink_err.how != SINK_BLOCKING)
        return;
    if (fstat(STDERR_FILENO, &st) < 0 || S_ISREG(st.st_mode)) {
        /* a file never makes a write wait; no stderr: nothing to wait on */
        sink_err.how = SINK_WRITE;
    } else if (S_ISSOCK(st.st_mode)) {
        sink_err.how = SINK_SEND;
    } else if (fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK) {
        sink_err.how = SINK_WRITE; /* already ours (from the master), or made so by its owner */
    } else {
        /*
         * O_NONBLOCK on the inherited description would change it for every
         * process sharing it. A new one of the same pipe or tty is ours, and
         * becomes our fd 2, so that our children inherit it and need not
         * reopen (which their credentials may not allow).
         */
        int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        sink_err.how = fd >= 0 && dup2(fd, STDERR_FILENO) >= 0 ? SINK_WRITE : SINK_POLL;
        if (fd >= 0)
            close(fd);
    }
}

/*
 * The process is about to exit: what waits gets until the deadline to go
 * out (a slow reader loses nothing; a stuck one holds the exit briefly),
 * the rest is dropped.
 */
static void sink_finish(struct log_sink *s, uint64_t deadline)
{
    uint64_t now;

    sink_unwatch(s);
    while (s->fd >= 0 && sink_flush(s) == MC_AGAIN && (now = mc_monotonic_ms()) < deadline) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
        poll(&pfd, 1, (int)(deadline - now));
    }
    sink_drop(s, count_lines(s->buf + s->off, s->len - s->off));
    s->off = s->len = 0;
}

void log_detach(void)
{
    uint64_t deadline = mc_monotonic_ms() + LOG_EXIT_MS;

    log_flush();
    sink_finish(&sink_access, deadline);
    sink_finish(&sink_err, deadline);
    log_loop = NULL;
}

void log_flush(void)
{
    sink_resume(&sink_access);
    sink_resume(&sink_err);
}

void log_count_drops(_Atomic uint64_t *counter)
{
    log_drop_counter = counter;
    if (counter != NULL && log_drops > 0)
        atomic_fetch_add_explicit(counter, log_drops, memory_order_relaxed);
}

uint64_t log_dropped(void)
{
    return log_drops;
}

void log_set_access_fd(int fd)
{
    struct log_sink *s = &sink_access;

    sink_unwatch(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    if (fd >= 0) {
        if (s->len > 0)
            sink_watch(s); /* what waited goes to the new file: not lost, not split */
        return;
    }
    /* no access file any more: what waited goes where access lines now go */
    for (const char *p = s->buf + s->off, *e = s->buf + s->len, *nl; p < e; p = nl + 1) {
        if ((nl = memchr(p, '\n', (size_t)(e - p))) == NULL)
            break;
        sink_put(&sink_err, p, (size_t)(nl - p) + 1);
    }
    s->off = s->len = 0;
    s->dropped = 0;
}

static void log_vmsg(int level, int err, const char *fmt, va_list ap)
{
    struct log_rec r;
    char msg[1024];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        n = 0;
    if (err && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
    log_rec_begin(&r, level, msg);
    log_rec_end(&r);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    log_vmsg(level, 0, fmt, ap);
    va_end(ap);
}

void log_errno(int level, int err, const char *fmt, ...)
{
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    log_vmsg(level, err, fmt, ap);
    va_end(ap);
}
