/*
 * hello_parse() fed incrementally must agree with one call over the whole
 * input. Input: byte 0 is the largest chunk (1..256), byte 1 seeds the
 * chunk sizes, the rest is the connection's bytes. Each call sees a buffer
 * whose bytes past len are ASan-poisoned (fuzz_chunks.h), so any read past
 * len is caught.
 */
#include "worker/hello.h"

#include <string.h>

#include "fuzz/fuzz_chunks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const struct hello *a, enum hello_result ra, const struct hello *b,
                enum hello_result rb)
{
    if (ra != rb || a->reject != b->reject)
        return 0;
    if (ra != HELLO_OK)
        return 1;
    return a->hello_end == b->hello_end && a->sni_len == b->sni_len &&
           memcmp(a->sni, b->sni, a->sni_len + 1) == 0 && a->alpn_len == b->alpn_len &&
           memcmp(a->alpn, b->alpn, a->alpn_len) == 0;
}

static int sane(const struct hello *h, enum hello_result r, size_t len)
{
    if (r == HELLO_NEED_MORE)
        return len < HELLO_MAX_RAW;
    if (r == HELLO_REJECT)
        return h->reject != HELLO_REJECT_NONE;
    return h->reject == HELLO_REJECT_NONE && h->hello_end <= len && h->sni_len <= HELLO_SNI_MAX &&
           h->sni[h->sni_len] == '\0' && h->alpn_len <= HELLO_ALPN_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t scratch[HELLO_MAX_MSG];
    struct hello whole = {0}, inc = {0};
    enum hello_result rw, ri = HELLO_NEED_MORE;
    struct fuzz_chunks c;
    size_t len;

    if (size < 3)
        return 0;
    len = size - 2;

    rw = hello_parse(&whole, data + 2, len, scratch);
    if (!sane(&whole, rw, len))
        __builtin_trap();

    if (!fuzz_chunks_init(&c, data + 2, len, (size_t)data[0] + 1, data[1]))
        return 0;
    while (ri == HELLO_NEED_MORE && fuzz_chunks_next(&c) > 0)
        ri = hello_parse(&inc, c.buf, c.have, scratch);
    fuzz_chunks_free(&c);

    if (!same(&whole, rw, &inc, ri))
        __builtin_trap();
    return 0;
}
