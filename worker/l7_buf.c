/* The bounded buffers of an L7 connection (l7.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/l7.h"

/* Room for at least want more bytes, growing up to its max; false when there is none. */
bool l7_buf_room(struct l7_buf *b, size_t want)
{
    size_t max = b->max ? b->max : L7_BUF_MAX;

    if (b->cap - b->len >= want)
        return true;
    size_t cap = b->cap ? b->cap : MC_MIN((size_t)L7_BUF_FIRST, max);
    while (cap - b->len < want && cap < max)
        cap = MC_MIN(cap * 2, max);
    if (cap - b->len < want || cap == b->cap)
        return b->cap - b->len >= want;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

void l7_buf_consume(struct l7_buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

bool l7_buf_put(struct l7_buf *b, const void *p, size_t n)
{
    if (!l7_buf_room(b, n))
        return false;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return true;
}

bool l7_buf_printf(struct l7_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof(tmp) && l7_buf_put(b, tmp, (size_t)n);
}

void l7_buf_free(struct l7_buf *b)
{
    mc_free(&b->p);
    b->len = b->cap = b->off = 0;
}
