/*
 * http1_parse() and http1_chunked_feed() fed as bytes arrive, in random
 * splits, must agree with one call over the whole input: the same answer,
 * the same head (every span and flag) or the same byte counts. An OK head
 * lies within the input and HTTP1_HEAD_MAX, its spans within the head,
 * and one byte less of it is NEED_MORE; an error carries a status the
 * role allows; the decoder never uses more than it was given, nor counts
 * more data than it used. A chunked head's body is decoded too. Input:
 * byte 0 picks the role (low 2 bits: request, response, response to
 * HEAD, bare chunked body) and the field array's size (the rest, 1..64),
 * byte 1 is the largest piece (1..256), byte 2 seeds the piece sizes, the
 * rest is the bytes. Bytes not yet fed are ASan-poisoned, so a read past
 * n is caught.
 */
#include "worker/http1.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { REQ, RESP, RESP_HEAD, CHUNKED };

#define MAX_FIELDS 64

struct pieces {
    size_t max;
    uint32_t rnd;
};

static size_t next_piece(struct pieces *p, size_t left)
{
    size_t n;

    p->rnd = p->rnd * 1103515245u + 12345u;
    n = 1 + (p->rnd >> 16) % p->max;
    return n < left ? n : left;
}

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static void init(struct http1_head *h, int role, struct http1_field *f, size_t max)
{
    if (role == REQ)
        http1_request_init(h, f, max);
    else
        http1_response_init(h, f, max, role == RESP_HEAD);
}

static int same_span(struct http1_span a, struct http1_span b)
{
    return a.off == b.off && a.len == b.len;
}

static int span_in(struct http1_span s, size_t len)
{
    return s.off <= len && s.len <= len - s.off;
}

static int same_head(enum http1_status ra, const struct http1_head *a, enum http1_status rb,
                     const struct http1_head *b)
{
    if (ra != rb)
        return 0;
    if (ra == HTTP1_ERROR)
        return a->status == b->status && a->err == b->err;
    if (ra == HTTP1_NEED_MORE)
        return 1;
    if (a->len != b->len || a->nfields != b->nfields || a->version != b->version ||
        a->method_id != b->method_id || a->target_form != b->target_form ||
        !same_span(a->method, b->method) || !same_span(a->target, b->target) ||
        !same_span(a->path, b->path) || !same_span(a->host, b->host) ||
        a->expect_continue != b->expect_continue || a->code != b->code ||
        !same_span(a->reason, b->reason) || a->body != b->body ||
        a->content_length != b->content_length || a->has_content_length != b->has_content_length ||
        a->keep_alive != b->keep_alive || a->upgrade_websocket != b->upgrade_websocket)
        return 0;
    for (size_t i = 0; i < a->nfields; i++)
        if (!same_span(a->fields[i].name, b->fields[i].name) ||
            !same_span(a->fields[i].value, b->fields[i].value))
            return 0;
    return 1;
}

static int sane_head(enum http1_status r, const struct http1_head *h, int role, const uint8_t *buf,
                     size_t n, size_t max_fields)
{
    struct http1_field f[MAX_FIELDS];
    struct http1_head shorter;

    if (r == HTTP1_NEED_MORE)
        return n < HTTP1_HEAD_MAX;
    if (r == HTTP1_ERROR)
        return h->err != NULL && (role == REQ ? h->status == 400 || h->status == 431 ||
                                                    h->status == 501 || h->status == 505
                                              : h->status == 502);
    if (r != HTTP1_OK || h->len > n || h->len > HTTP1_HEAD_MAX || h->nfields > max_fields ||
        (h->version != 10 && h->version != 11))
        return 0;
    if (!span_in(h->method, h->len) || !span_in(h->target, h->len) || !span_in(h->path, h->len) ||
        !span_in(h->host, h->len) || !span_in(h->reason, h->len))
        return 0;
    for (size_t i = 0; i < h->nfields; i++) {
        if (!span_in(h->fields[i].name, h->len) || !span_in(h->fields[i].value, h->len) ||
            h->fields[i].name.len == 0)
            return 0;
        (void)http1_must_drop(h, buf, i);
    }
    if (role == REQ && h->version == 11 && h->host.len == 0)
        return 0;
    if (role != REQ && (h->code < 100 || h->code > 599))
        return 0;
    if (h->body == HTTP1_BODY_CHUNKED && h->has_content_length)
        return 0;
    init(&shorter, role, f, max_fields);
    return http1_parse(&shorter, buf, h->len - 1) == HTTP1_NEED_MORE;
}

struct chunk_result {
    enum http1_status r;
    size_t used, data;
    const char *err;
};

static struct chunk_result chunk_feed(uint8_t *buf, size_t len, struct pieces *p)
{
    struct http1_chunked c;
    struct chunk_result res = {HTTP1_NEED_MORE, 0, 0, NULL};
    size_t at = 0;

    http1_chunked_init(&c);
    ASAN_POISON_MEMORY_REGION(buf, len);
    while (res.r == HTTP1_NEED_MORE && at < len) {
        size_t n = p ? next_piece(p, len - at) : len, used, data;

        ASAN_UNPOISON_MEMORY_REGION(buf + at, n);
        res.r = http1_chunked_feed(&c, buf + at, n, &used, &data);
        check(used <= n && data <= used && (res.r != HTTP1_NEED_MORE || used == n));
        check((res.r == HTTP1_ERROR) == (c.err != NULL));
        res.used += used;
        res.data += data;
        at += n;
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, len);
    res.err = c.err;
    return res;
}

static void check_chunked(uint8_t *buf, size_t len, struct pieces *p)
{
    struct chunk_result whole = chunk_feed(buf, len, NULL), split = chunk_feed(buf, len, p);

    check(whole.r == split.r && whole.used == split.used && whole.data == split.data &&
          whole.err == split.err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http1_field fw[MAX_FIELDS], fi[MAX_FIELDS];
    struct http1_head whole, inc;
    enum http1_status rw, ri = HTTP1_NEED_MORE;
    struct pieces p;
    size_t len, have = 0, max_fields;
    int role;
    uint8_t *buf;

    if (size < 4)
        return 0;
    role = data[0] & 3;
    max_fields = 1 + (size_t)(data[0] >> 2);
    p.max = (size_t)data[1] + 1;
    p.rnd = data[2] | 0x100u;
    data += 3;
    len = size - 3;

    buf = malloc(len);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, len);
    if (role == CHUNKED) {
        check_chunked(buf, len, &p);
        free(buf);
        return 0;
    }

    init(&inc, role, fi, max_fields);
    ASAN_POISON_MEMORY_REGION(buf, len);
    while (ri == HTTP1_NEED_MORE && have < len) {
        size_t n = next_piece(&p, len - have);

        ASAN_UNPOISON_MEMORY_REGION(buf + have, n);
        have += n;
        ri = http1_parse(&inc, buf, have);
        check(sane_head(ri, &inc, role, buf, have, max_fields));
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, len);
    init(&whole, role, fw, max_fields);
    rw = http1_parse(&whole, buf, len);
    check(sane_head(rw, &whole, role, buf, len, max_fields));
    check(same_head(rw, &whole, ri, &inc));
    if (rw == HTTP1_OK && whole.body == HTTP1_BODY_CHUNKED)
        check_chunked(buf + whole.len, len - whole.len, &p);
    free(buf);
    return 0;
}
