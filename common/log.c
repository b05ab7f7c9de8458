/*
 * One line per event on stderr. Each line is formatted into a stack
 * buffer and written with a single write(2), so lines from the master and
 * the workers sharing stderr never interleave mid-line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_proc = "mc-proxy";
static int log_level = LOGL_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

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

void log_rec_end(struct log_rec *r)
{
    if (log_format == LOG_FORMAT_JSON)
        r->buf[r->len++] = '}';
    r->buf[r->len++] = '\n';
    /* stderr may be a pipe to journald; a failed log write has nowhere to go */
    ssize_t MC_UNUSED n = write(STDERR_FILENO, r->buf, r->len);
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
