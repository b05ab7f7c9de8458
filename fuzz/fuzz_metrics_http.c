/*
 * http_parse_request() fed as bytes arrive must agree with one call over
 * the whole input: the first answer other than "need more" is the final
 * one, with the same request. Input: byte 0 is the largest chunk
 * (1..256), byte 1 seeds the chunk sizes, the rest is what the client
 * sent, at most the exporter's 4 KiB. Bytes past len are ASan-poisoned.
 */
#include "metrics/http.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

#define REQ_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(enum http_result ra, const struct http_request *a, enum http_result rb,
                const struct http_request *b, const uint8_t *base_a, const uint8_t *base_b)
{
    if (ra != rb)
        return 0;
    if (ra != HTTP_OK)
        return 1;
    return a->method == b->method && a->minor == b->minor && a->header_end == b->header_end &&
           a->path - base_a == b->path - base_b && a->path_len == b->path_len;
}

static int sane(enum http_result r, const struct http_request *req, const uint8_t *buf, size_t len)
{
    if (r != HTTP_OK)
        return r == HTTP_NEED_MORE || r == HTTP_BAD;
    return req->header_end >= 2 && req->header_end <= len && req->minor <= 1 && req->path >= buf &&
           (size_t)(req->path - buf) + req->path_len < req->header_end &&
           memchr(req->path, ' ', req->path_len) == NULL &&
           memchr(req->path, '?', req->path_len) == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request whole, inc;
    enum http_result rw, ri = HTTP_NEED_MORE;
    size_t max_chunk, len, have = 0;
    uint32_t rnd;
    uint8_t *buf;

    if (size < 3 || size - 2 > REQ_MAX)
        return 0;
    max_chunk = (size_t)data[0] + 1;
    rnd = data[1] | 0x100u;
    data += 2;
    len = size - 2;

    rw = http_parse_request(data, len, &whole);
    if (!sane(rw, &whole, data, len))
        __builtin_trap();

    buf = malloc(len);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, len);
    ASAN_POISON_MEMORY_REGION(buf, len);
    while (ri == HTTP_NEED_MORE && have < len) {
        size_t n;

        rnd = rnd * 1103515245u + 12345u;
        n = 1 + (rnd >> 16) % max_chunk;
        n = n < len - have ? n : len - have;
        ASAN_UNPOISON_MEMORY_REGION(buf + have, n);
        have += n;
        ri = http_parse_request(buf, have, &inc);
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, len);
    if (!same(rw, &whole, ri, &inc, data, buf))
        __builtin_trap();
    free(buf);
    return 0;
}
