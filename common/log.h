/*
 * Logging to stderr (journald), one line per event, as key=value text or
 * JSON. log_msg() is for events described in prose; struct log_rec
 * builds a structured line field by field (the access log).
 *
 * A process that serves traffic calls log_nonblock() once at start: from
 * then on no log write blocks. A line the destination cannot take now
 * waits in a small buffer, flushed when it becomes writable; past that
 * buffer lines are dropped, counted, and one line says how many once the
 * destination takes lines again. Before log_nonblock() (tools, start-up)
 * writes block, so nothing is lost.
 */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "common/mc.h"

enum {
    LOGL_DEBUG = 0,
    LOGL_INFO = 1,
    LOGL_WARN = 2,
    LOGL_ERROR = 3,
};

/* The msg of access lines (one per connection): they go to the access file when one is set. */
#define LOG_ACCESS_MSG "conn"

struct loop;

/* proc names the process kind in every line ("master", "worker", ...). */
void log_init(const char *proc);
void log_configure(int level, enum log_format format);

/*
 * Makes every later write non-blocking (see ARCHITECTURE.md, Logs). Call it
 * before dropping privileges: it may reopen stderr through /proc/self/fd,
 * which checks the pipe's or tty's own permissions.
 * With l, buffered lines are flushed when the destination is writable;
 * without (a process with no such loop), by log_flush().
 */
void log_nonblock(struct loop *l);
/* At exit, before the loop is freed: waits up to 500 ms for what waits to go out; the rest
 * counts as dropped. */
void log_detach(void);
void log_flush(void);
/* Also counts every dropped line in *counter (shared memory), those so far included. */
void log_count_drops(_Atomic uint64_t *counter);
/* Lines this process dropped. */
uint64_t log_dropped(void);
/* Access lines go to fd (taken over; opened non-blocking by its owner), or to stderr for -1. */
void log_set_access_fd(int fd);
bool log_enabled(int level);
/* "debug" .. "error" -> LOGL_*, or -1. */
int log_level_parse(const char *s);

void log_msg(int level, const char *fmt, ...) MC_PRINTF(2, 3);
/* Like log_msg, with ": strerror(err)" appended. */
void log_errno(int level, int err, const char *fmt, ...) MC_PRINTF(3, 4);

#define log_debug(...) log_msg(LOGL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOGL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOGL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)

/* A structured line: begin, add fields, end (which writes it). */
struct log_rec {
    char buf[2048];
    size_t len;
    bool truncated;
    bool access; /* an access line (LOG_ACCESS_MSG) */
    int level;
};
void log_rec_begin(struct log_rec *r, int level, const char *msg);
/* Value is escaped: bytes outside printable ASCII, quotes and backslashes
 * become \xHH, so untrusted input (SNI) cannot forge lines or fields. */
void log_rec_str(struct log_rec *r, const char *key, const char *val);
void log_rec_strn(struct log_rec *r, const char *key, const char *val, size_t len);
void log_rec_u64(struct log_rec *r, const char *key, uint64_t val);
void log_rec_end(struct log_rec *r);

#endif
