/*
 * hello_parse() fed incrementally must agree with one call over the whole
 * input. Input: byte 0 is the largest chunk (1..256), byte 1 seeds the
 * chunk sizes, the rest is the connection's bytes. Each call sees a buffer
 * whose bytes past len are ASan-poisoned, so any read past len is caught.
 */
#include "worker/hello.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

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
    size_t max_chunk, len, have = 0;
    uint32_t rnd;
    uint8_t *buf;

    if (size < 3)
        return 0;
    max_chunk = (size_t)data[0] + 1;
    rnd = data[1] | 0x100u;
    data += 2;
    len = size - 2;

    rw = hello_parse(&whole, data, len, scratch);
    if (!sane(&whole, rw, len))
        __builtin_trap();

    buf = malloc(len);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, len);
    ASAN_POISON_MEMORY_REGION(buf, len);
    while (ri == HELLO_NEED_MORE && have < len) {
        size_t n;

        rnd = rnd * 1103515245u + 12345u;
        n = 1 + (rnd >> 16) % max_chunk;
        n = n < len - have ? n : len - have;
        ASAN_UNPOISON_MEMORY_REGION(buf + have, n);
        have += n;
        ri = hello_parse(&inc, buf, have, scratch);
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, len);
    free(buf);

    if (!same(&whole, rw, &inc, ri))
        __builtin_trap();
    return 0;
}
