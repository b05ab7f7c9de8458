/*
 * An HTTP/2 request's header block, field by field as nghttp2 decodes it,
 * and the HTTP/1.1 head it becomes (l7.h). Pure: no I/O, memory grows with
 * the bytes that came, up to the 64 KiB a head may have.
 *
 * The head it writes goes through http1.c's strict parser next, so the
 * HTTP/1.1 rules (Host, policies, hop-by-hop fields, framing) are the
 * same code for both protocols. What the parser cannot see is checked
 * here: a CR, LF or NUL in a name or value would make one field two
 * (nghttp2's messaging checks refuse them first; this holds without), a
 * Host that differs from :authority (RFC 9113 8.3.1), connection-specific
 * fields (8.2.2). Cookie fields, which HTTP/2 may split, are joined with
 * "; " (8.2.3).
 */
#include <string.h>
#include <strings.h>

#include "worker/l7.h"

void l7_h2_req_init(struct l7_h2_req *r)
{
    memset(r, 0, sizeof(*r));
    r->lines.max = r->pseudo.max = L7_H2_REQ_MAX;
}

void l7_h2_req_free(struct l7_h2_req *r)
{
    l7_buf_free(&r->lines);
    l7_buf_free(&r->pseudo);
}

static bool l7_h2_req_is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Whether p[0..n) could be one HTTP/1.1 field name or value as it is. */
static bool l7_h2_req_clean(const uint8_t *p, size_t n, bool name)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0' || (name && (p[i] == ':' || p[i] <= ' ')))
            return false;
    return true;
}

static bool l7_h2_req_pseudo(struct l7_h2_req *r, const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen)
{
    struct http1_span *s = l7_h2_req_is(name, nlen, ":method")      ? &r->method
                           : l7_h2_req_is(name, nlen, ":scheme")    ? &r->scheme
                           : l7_h2_req_is(name, nlen, ":authority") ? &r->authority
                           : l7_h2_req_is(name, nlen, ":path")      ? &r->path
                                                                    : NULL;

    if (s == NULL || s->len != 0 || vlen == 0) {
        r->refuse = 400; /* :protocol (no extended CONNECT), a repeated or empty one */
        return true;
    }
    s->off = (uint32_t)r->pseudo.len;
    s->len = (uint32_t)vlen;
    return l7_buf_put(&r->pseudo, value, vlen);
}

bool l7_h2_req_field(struct l7_h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen)
{
    /* what the field costs in the HTTP/1.1 head: the 64 KiB cap is the same */
    r->bytes += nlen + vlen + 4;
    if (r->bytes > HTTP1_HEAD_MAX && r->refuse == 0)
        r->refuse = 431;
    if (r->refuse != 0)
        return true; /* nothing more is kept: the answer is decided */
    if (nlen == 0 || !l7_h2_req_clean(name, nlen, name[0] != ':') ||
        !l7_h2_req_clean(value, vlen, false)) {
        r->refuse = 400;
        return true;
    }
    if (name[0] == ':')
        return l7_h2_req_pseudo(r, name, nlen, value, vlen);
    if (l7_h2_req_is(name, nlen, "host") && r->authority.len != 0) {
        if (vlen != r->authority.len ||
            strncasecmp((const char *)value, (const char *)r->pseudo.p + r->authority.off, vlen) !=
                0)
            r->refuse = 400;
        return true; /* the Host line is written from :authority */
    }
    if (l7_h2_req_is(name, nlen, "connection") || l7_h2_req_is(name, nlen, "keep-alive") ||
        l7_h2_req_is(name, nlen, "proxy-connection") ||
        l7_h2_req_is(name, nlen, "transfer-encoding") || l7_h2_req_is(name, nlen, "upgrade")) {
        r->refuse = 400;
        return true;
    }
    if (l7_h2_req_is(name, nlen, "content-length"))
        r->has_length = true;
    if (l7_h2_req_is(name, nlen, "content-type") && vlen >= 16 &&
        memcmp(value, "application/grpc", 16) == 0)
        r->grpc = true;
    return l7_buf_put(&r->lines, name, nlen) && l7_buf_put(&r->lines, ": ", 2) &&
           l7_buf_put(&r->lines, value, vlen) && l7_buf_put(&r->lines, "\r\n", 2);
}

/* Appends p[0..n) to out[*len..cap); false when it does not fit. */
static bool l7_h2_req_out(uint8_t *out, size_t cap, size_t *len, const void *p, size_t n)
{
    if (cap - *len < n)
        return false;
    if (n > 0)
        memcpy(out + *len, p, n);
    *len += n;
    return true;
}

size_t l7_h2_req_head(const struct l7_h2_req *r, bool body, uint8_t *out, size_t cap)
{
    /* "" for a buffer never allocated: no field of that kind came */
    const uint8_t *ps = r->pseudo.p ? r->pseudo.p : (const uint8_t *)"";
    const uint8_t *lines = r->lines.p ? r->lines.p : (const uint8_t *)"";
    /* CONNECT has no :path: its authority is the target, which the parser refuses (501) */
    struct http1_span target = r->path.len ? r->path : r->authority;
    size_t len = 0, cookies = 0;

    if (!l7_h2_req_out(out, cap, &len, ps + r->method.off, r->method.len) ||
        !l7_h2_req_out(out, cap, &len, " ", 1) ||
        !l7_h2_req_out(out, cap, &len, ps + target.off, target.len) ||
        !l7_h2_req_out(out, cap, &len, " HTTP/1.1\r\n", 11))
        return 0;
    if (r->authority.len != 0 &&
        (!l7_h2_req_out(out, cap, &len, "Host: ", 6) ||
         !l7_h2_req_out(out, cap, &len, ps + r->authority.off, r->authority.len) ||
         !l7_h2_req_out(out, cap, &len, "\r\n", 2)))
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: every line but cookies; pass 1: the cookies' values in one line */
        for (size_t i = 0; i < r->lines.len;) {
            const uint8_t *eol = memmem(lines + i, r->lines.len - i, "\r\n", 2);
            if (eol == NULL)
                return 0; /* not as l7_h2_req_field() writes them */
            size_t n = (size_t)(eol - (lines + i)) + 2;
            bool cookie = n >= 10 && memcmp(lines + i, "cookie: ", 8) == 0;
            const char *sep = cookies > 0 ? "; " : "cookie: ";
            if (pass == 0 && !cookie && !l7_h2_req_out(out, cap, &len, lines + i, n))
                return 0;
            if (pass == 1 && cookie &&
                (!l7_h2_req_out(out, cap, &len, sep, strlen(sep)) ||
                 !l7_h2_req_out(out, cap, &len, lines + i + 8, n - 10)))
                return 0;
            cookies += pass == 1 && cookie;
            i += n;
        }
    }
    if (cookies > 0 && !l7_h2_req_out(out, cap, &len, "\r\n", 2))
        return 0;
    if (body && !r->has_length &&
        !l7_h2_req_out(out, cap, &len, "Transfer-Encoding: chunked\r\n", 28))
        return 0;
    return l7_h2_req_out(out, cap, &len, "\r\n", 2) ? len : 0;
}
