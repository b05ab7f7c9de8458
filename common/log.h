/*
 * Logging to stderr (journald), one line per event, as key=value text or
 * JSON. log_msg() is for events described in prose; struct log_rec
 * builds a structured line field by field (the access log).
 */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "mc.h"

enum {
    LOGL_DEBUG = 0,
    LOGL_INFO = 1,
    LOGL_WARN = 2,
    LOGL_ERROR = 3,
};

/* proc names the process kind in every line ("master", "worker", ...). */
void log_init(const char *proc);
void log_configure(int level, enum log_format format);
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
