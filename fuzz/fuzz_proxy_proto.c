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
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    size_t max_chunk, len, have = 0;
    uint32_t rnd;
    uint8_t *buf;

    if (size < 3)
        return 0;
    max_chunk = (size_t)data[0] + 1;
    rnd = data[1] | 0x100u;
    data += 2;
    len = size - 2;

    if (!agrees_with_pton(AF_INET, data, len) || !agrees_with_pton(AF_INET6, data, len))
        __builtin_trap();

    buf = malloc(len);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, len);
    ASAN_POISON_MEMORY_REGION(buf, len);
    while (ri == PROXY_PROTO_INCOMPLETE && have < len) {
        size_t n;

        rnd = rnd * 1103515245u + 12345u;
        n = 1 + (rnd >> 16) % max_chunk;
        n = n < len - have ? n : len - have;
        ASAN_UNPOISON_MEMORY_REGION(buf + have, n);
        have += n;
        ri = proxy_proto_parse(buf, have, &inc);
        if (!sane(ri, &inc, buf, have))
            __builtin_trap();
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, len);
    rw = proxy_proto_parse(buf, len, &whole);
    if (!sane(rw, &whole, buf, len) || !same(rw, &whole, ri, &inc))
        __builtin_trap();
    free(buf);
    return 0;
}
