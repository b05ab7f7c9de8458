/*
 * What the unit test and the fuzz target of hello_parse() require of its
 * answers: one place for both (t/unit/test_hello.c, fuzz/fuzz_hello.c).
 */
#ifndef MC_HELLO_CHECK_H
#define MC_HELLO_CHECK_H

#include <string.h>

#include "worker/hello.h"

/* The same answer: result, reason and, for OK, every field handed out. */
static inline int hello_check_same(const struct hello *a, enum hello_result ra,
                                   const struct hello *b, enum hello_result rb)
{
    if (ra != rb || a->reject != b->reject)
        return 0;
    if (ra != HELLO_OK)
        return 1;
    return a->hello_end == b->hello_end && a->sni_len == b->sni_len &&
           memcmp(a->sni, b->sni, a->sni_len + 1) == 0 && a->alpn_len == b->alpn_len &&
           memcmp(a->alpn, b->alpn, a->alpn_len) == 0;
}

/* An answer that keeps hello.h's promises for len bytes of input. */
static inline int hello_check_sane(const struct hello *h, enum hello_result r, size_t len)
{
    if (r == HELLO_NEED_MORE)
        return len < HELLO_MAX_RAW;
    if (r == HELLO_REJECT)
        return h->reject != HELLO_REJECT_NONE;
    return h->reject == HELLO_REJECT_NONE && h->hello_end <= len && h->sni_len <= HELLO_SNI_MAX &&
           h->sni[h->sni_len] == '\0' && h->alpn_len <= HELLO_ALPN_MAX;
}

#endif
