/*
 * proxy_proto_parse() fed as bytes arrive must agree with one call over
 * the whole input: the first answer other than INCOMPLETE is the final
 * one, with the same header. An OK header lies within the input and
 * within PROXY_PROTO_MAX, and one byte less of it is INCOMPLETE. Input:
 * byte 0 is the largest chunk (1..256), byte 1 seeds the chunk sizes, the
 * rest is the connection's bytes. Bytes past len are ASan-poisoned, so
 * any read past n is caught.
 *
 * The same bytes are also tried as the source address of a v1 TCP4 and
 * TCP6 line, which must be accepted exactly when inet_pton accepts them.
 */
#include "worker/proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "fuzz/fuzz_chunks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(enum proxy_proto_status ra, const struct proxy_proto_hdr *a,
                enum proxy_proto_status rb, const struct proxy_proto_hdr *b)
{
    if (ra != rb)
        return 0;
    if (ra != PROXY_PROTO_OK)
        return 1;
    return a->len == b->len && a->local == b->local &&
           (a->local || (memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
                         memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0));
}

static int sane(enum proxy_proto_status r, const struct proxy_proto_hdr *h, const uint8_t *buf,
                size_t len)
{
    struct proxy_proto_hdr shorter;

    if (r == PROXY_PROTO_INCOMPLETE)
        return h->err == NULL;
    if (r == PROXY_PROTO_BAD)
        return h->err != NULL;
    if (r != PROXY_PROTO_OK || h->err != NULL || h->len > len || h->len > PROXY_PROTO_MAX)
        return 0;
    if (buf[0] == 'P' && h->len > PROXY_PROTO_V1_MAX)
        return 0;
    if (!h->local && (h->src.ss.ss_family != h->dst.ss.ss_family ||
                      (h->src.ss.ss_family != AF_INET && h->src.ss.ss_family != AF_INET6)))
        return 0;
    return proxy_proto_parse(buf, h->len - 1, &shorter) == PROXY_PROTO_INCOMPLETE;
}

/* data as the source address of a v1 line of the family: OK exactly when
 * inet_pton accepts it, with the same bytes. */
static int agrees_with_pton(int family, const uint8_t *data, size_t len)
{
    char text[64], line[128];
    uint8_t want[16];
    struct proxy_proto_hdr h;
    int pton, n;
    enum proxy_proto_status r;

    if (len >= sizeof(text) || memchr(data, '\0', len) != NULL)
        return 1;
    memcpy(text, data, len);
    text[len] = '\0';
    if (strpbrk(text, " \r\n") != NULL)
        return 1; /* would split the line differently */
    pton = inet_pton(family, text, want) == 1;
    n = snprintf(line, sizeof(line), "PROXY %s %s %s 1 2\r\n", family == AF_INET ? "TCP4" : "TCP6",
                 text, family == AF_INET ? "1.1.1.1" : "::1");
    r = proxy_proto_parse((const uint8_t *)line, (size_t)n, &h);
    if (!pton)
        return r == PROXY_PROTO_BAD;
    if (r != PROXY_PROTO_OK)
        return 0;
    if (family == AF_INET)
        return memcmp(&((struct sockaddr_in *)&h.src.ss)->sin_addr, want, 4) == 0;
    return memcmp(&((struct sockaddr_in6 *)&h.src.ss)->sin6_addr, want, 16) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_proto_hdr whole, inc;
    enum proxy_proto_status rw, ri = PROXY_PROTO_INCOMPLETE;
    struct fuzz_chunks c;
    size_t len;

    if (size < 3)
        return 0;
    len = size - 2;

    if (!agrees_with_pton(AF_INET, data + 2, len) || !agrees_with_pton(AF_INET6, data + 2, len))
        __builtin_trap();

    if (!fuzz_chunks_init(&c, data + 2, len, (size_t)data[0] + 1, data[1]))
        return 0;
    while (ri == PROXY_PROTO_INCOMPLETE && fuzz_chunks_next(&c) > 0) {
        ri = proxy_proto_parse(c.buf, c.have, &inc);
        if (!sane(ri, &inc, c.buf, c.have))
            __builtin_trap();
    }
    fuzz_chunks_all(&c);
    rw = proxy_proto_parse(c.buf, len, &whole);
    if (!sane(rw, &whole, c.buf, len) || !same(rw, &whole, ri, &inc))
        __builtin_trap();
    fuzz_chunks_free(&c);
    return 0;
}
