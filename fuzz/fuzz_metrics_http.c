/*
 * http_parse_request() fed as bytes arrive must agree with one call over
 * the whole input: the first answer other than "need more" is the final
 * one, with the same request. Input: byte 0 is the largest chunk
 * (1..256), byte 1 seeds the chunk sizes, the rest is what the client
 * sent, at most the exporter's 4 KiB. Bytes past len are ASan-poisoned.
 */
#include "metrics/http.h"

#include <string.h>

#include "fuzz/fuzz_chunks.h"

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
    struct fuzz_chunks c;
    size_t len;

    if (size < 3 || size - 2 > REQ_MAX)
        return 0;
    len = size - 2;

    rw = http_parse_request(data + 2, len, &whole);
    if (!sane(rw, &whole, data + 2, len))
        __builtin_trap();

    if (!fuzz_chunks_init(&c, data + 2, len, (size_t)data[0] + 1, data[1]))
        return 0;
    while (ri == HTTP_NEED_MORE && fuzz_chunks_next(&c) > 0)
        ri = http_parse_request(c.buf, c.have, &inc);
    fuzz_chunks_all(&c);
    if (!same(rw, &whole, ri, &inc, data + 2, c.buf))
        __builtin_trap();
    fuzz_chunks_free(&c);
    return 0;
}
