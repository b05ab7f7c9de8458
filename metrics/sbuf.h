/*
 * A growing output buffer (the exporter's answers). A failure, out of
 * memory or past SBUF_MAX, sticks: the writer checks `failed` once at
 * the end.
 */
#ifndef MC_SBUF_H
#define MC_SBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "common/mc.h"

#define SBUF_MAX (4u << 20) /* far above what the counters can render to */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

void sbuf_append(struct sbuf *b, const char *s, size_t n);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) MC_PRINTF(2, 3);
void sbuf_free(struct sbuf *b);

#endif
