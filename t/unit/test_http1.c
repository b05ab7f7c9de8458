/*
 * Unit tests for worker/http1.c. A valid head must be NEED_MORE at every
 * shorter length, OK at its length with a body behind it, and give the
 * same answer fed one byte at a time through one struct; an invalid one
 * must be refused with its status, whole and fed byte by byte. The
 * chunked decoder must give the same answer split at every offset as in
 * one call. Every parse runs over a heap copy of exactly the bytes given,
 * with the bytes not yet "received" poisoned, so ASan catches a read past n.
 */
#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

#include "common/mc.h"
#include "tap.h"
#include "worker/http1.h"

#define MAX_FIELDS 100

static struct http1_field fields[MAX_FIELDS];

enum role { REQ, RESP, RESP_HEAD };

static void init(struct http1_head *h, enum role role)
{
    if (role == REQ)
        http1_request_init(h, fields, MAX_FIELDS);
    else
        http1_response_init(h, fields, MAX_FIELDS, role == RESP_HEAD);
}

static uint8_t *copy(const void *s, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);

    if (c == NULL)
        abort();
    memcpy(c, s, n);
    return c;
}

/* One call over an exact-size copy of s[0..n). */
static enum http1_status parse_n(enum role role, const void *s, size_t n, struct http1_head *h)
{
    uint8_t *c = copy(s, n);
    enum http1_status r;

    init(h, role);
    r = http1_parse(h, c, n);
    free(c);
    return r;
}

/* Fed one byte at a time through one struct: the first answer other than
 * NEED_MORE, or NEED_MORE when there is none. */
static enum http1_status parse_bytewise(enum role role, const void *s, size_t n,
                                        struct http1_head *h)
{
    uint8_t *c = copy(s, n);
    enum http1_status r = HTTP1_NEED_MORE;

    init(h, role);
    ASAN_POISON_MEMORY_REGION(c, n);
    for (size_t k = 1; k <= n && r == HTTP1_NEED_MORE; k++) {
        ASAN_UNPOISON_MEMORY_REGION(c + k - 1, 1);
        r = http1_parse(h, c, k);
    }
    ASAN_UNPOISON_MEMORY_REGION(c, n);
    free(c);
    return r;
}

static bool span_is(const char *buf, struct http1_span s, const char *want)
{
    return want == NULL || (s.len == strlen(want) && memcmp(buf + s.off, want, s.len) == 0);
}

struct ok_case {
    const char *name, *in;
    enum http1_body body;
    uint64_t cl;
    bool close, ws, expect;  /* close: !keep_alive */
    const char *host, *path; /* NULL: not checked */
    unsigned code;           /* responses */
    enum role role;          /* REQ by default */
};

/* The outputs the table entry names. */
static bool outputs_match(const struct ok_case *c, const char *buf, const struct http1_head *h)
{
    if (h->body != c->body || (c->body == HTTP1_BODY_LENGTH && h->content_length != c->cl) ||
        h->keep_alive == c->close || h->upgrade_websocket != c->ws)
        return false;
    if (c->role == REQ)
        return h->expect_continue == c->expect && span_is(buf, h->host, c->host) &&
               span_is(buf, h->path, c->path);
    return h->code == c->code;
}

static void check_ok(const struct ok_case *c)
{
    size_t len = strlen(c->in), first = 0;
    struct http1_head h;
    char *with_body;
    enum http1_status r;

    for (size_t k = 0; k < len && first == 0; k++)
        if (parse_n(c->role, c->in, k, &h) != HTTP1_NEED_MORE)
            first = k + 1;
    T_OK(first == 0, "%s: NEED_MORE at every length below %zu (first other at %zu)", c->name, len,
         first ? first - 1 : len);

    with_body = malloc(len + 5);
    if (with_body == NULL)
        abort();
    memcpy(with_body, c->in, len);
    memcpy(with_body + len, "BODY!", 5);
    r = parse_n(c->role, with_body, len + 5, &h);
    T_OK(r == HTTP1_OK && h.len == len && outputs_match(c, with_body, &h),
         "%s: OK, len %zu, framing and flags as expected (got %d, len %zu, body %d, cl %llu, "
         "keep-alive %d, ws %d, %s)",
         c->name, len, r, h.len, h.body, (unsigned long long)h.content_length, h.keep_alive,
         h.upgrade_websocket, r == HTTP1_ERROR ? h.err : "-");
    r = parse_bytewise(c->role, with_body, len + 5, &h);
    T_OK(r == HTTP1_OK && h.len == len && outputs_match(c, with_body, &h),
         "%s: the same fed byte by byte", c->name);
    free(with_body);
}

struct bad_case {
    const char *name, *in;
    int status;
    enum role role;
    size_t len; /* 0: strlen(in) */
};

/* A literal with a NUL in it: its length cannot come from strlen. */
#define NUL_IN(lit) .in = lit, .len = sizeof(lit) - 1

static void check_bad(const struct bad_case *c)
{
    size_t len = c->len ? c->len : strlen(c->in);
    struct http1_head h, hb;
    enum http1_status r = parse_n(c->role, c->in, len, &h);
    enum http1_status rb = parse_bytewise(c->role, c->in, len, &hb);

    T_OK(r == HTTP1_ERROR && h.status == c->status && h.err != NULL,
         "%s: refused with %d (got %d, %d: %s)", c->name, c->status, r, h.status,
         r == HTTP1_ERROR ? h.err : "-");
    T_OK(rb == HTTP1_ERROR && hb.status == c->status && hb.err == h.err,
         "%s: the same fed byte by byte", c->name);
}

#define GET11     "GET / HTTP/1.1\r\nHost: a.example\r\n"
#define POST11    "POST /up HTTP/1.1\r\nHost: a.example\r\n"
#define WS_FIELDS "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"

static const struct ok_case requests_ok[] = {
    {.name = "GET origin-form", .in = GET11 "\r\n", .host = "a.example", .path = "/"},
    {.name = "query, fields, obs-text in a value",
     .in = "GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: a.example:8443\r\nUser-Agent: t\xe9st\r\n"
           "X-Empty:\r\nAccept: */*\r\n\r\n",
     .host = "a.example:8443",
     .path = "/p/q?x=1&y=%20"},
    {.name = "OWS around a value, tabs",
     .in = "GET / HTTP/1.1\r\nHost:\t a.example \t\r\n\r\n",
     .host = "a.example"},
    {.name = "Transfer-Encoding:\\tchunked (OWS)",
     .in = POST11 "Transfer-Encoding:\tchunked\r\n\r\n",
     .body = HTTP1_BODY_CHUNKED},
    {.name = "Transfer-Encoding: CHUNKED (case)",
     .in = POST11 "Transfer-Encoding: CHUNKED\r\n\r\n",
     .body = HTTP1_BODY_CHUNKED},
    {.name = "Content-Length 0",
     .in = POST11 "Content-Length: 0\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 0},
    {.name = "Content-Length 42",
     .in = POST11 "Content-Length: 42\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 42},
    {.name = "identical Content-Length twice",
     .in = POST11 "Content-Length: 7\r\nContent-Length: 7\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 7},
    {.name = "Content-Length list 7, 7",
     .in = POST11 "Content-Length: 7 , 7\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 7},
    {.name = "Content-Length HTTP1_LENGTH_MAX",
     .in = POST11 "Content-Length: 4503599627370495\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = HTTP1_LENGTH_MAX},
    {.name = "Content-Length with leading zeros",
     .in = POST11 "Content-Length: 007\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 7},
    {.name = "Connection: close", .in = GET11 "Connection: close\r\n\r\n", .close = true},
    {.name = "Connection: keep-alive, close",
     .in = GET11 "Connection: keep-alive, close\r\n\r\n",
     .close = true},
    {.name = "Connection list with empty elements",
     .in = GET11 "Connection: ,, close ,\r\n\r\n",
     .close = true},
    {.name = "HTTP/1.0 closes by default",
     .in = "GET / HTTP/1.0\r\n\r\n",
     .close = true,
     .host = ""},
    {.name = "HTTP/1.0 keep-alive",
     .in = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n",
     .host = "h"},
    {.name = "HTTP/1.0 with Content-Length",
     .in = "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 3,
     .close = true},
    {.name = "leading empty lines skipped", .in = "\r\n\r\n" GET11 "\r\n", .host = "a.example"},
    {.name = "absolute-form, Host equal",
     .in = "GET http://A.example/x?y HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n",
     .host = "A.example",
     .path = "/x?y"},
    {.name = "absolute-form https, empty path",
     .in = "GET HTTPS://a.example:443 HTTP/1.1\r\n"
           "Host: a.example:443\r\n\r\n",
     .host = "a.example:443",
     .path = ""},
    {.name = "absolute-form, HTTP/1.0 without Host",
     .in = "GET http://b.example/ HTTP/1.0\r\n\r\n",
     .close = true,
     .host = "b.example",
     .path = "/"},
    {.name = "IPv6 literal Host",
     .in = "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
     .host = "[2001:db8::1]:8080"},
    {.name = "OPTIONS *",
     .in = "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
     .host = "a.example"},
    {.name = "unknown token method", .in = "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", .host = "a"},
    {.name = "WebSocket upgrade", .in = GET11 WS_FIELDS "\r\n", .ws = true},
    {.name = "Upgrade: websocket without Connection: upgrade",
     .in = GET11 "Upgrade: websocket\r\n\r\n"},
    {.name = "Upgrade: websocket on POST is not one", .in = POST11 WS_FIELDS "\r\n"},
    {.name = "Upgrade: websocket, h2c is not WebSocket",
     .in = GET11 "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\n"},
    {.name = "Upgrade in two fields, one h2c, is not WebSocket",
     .in = GET11 "Upgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"},
    {.name = "Upgrade: WebSocket (case) with Connection: keep-alive, Upgrade",
     .in = GET11 "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
     .ws = true},
    {.name = "Upgrade: h2c is not WebSocket",
     .in = GET11 "Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n"},
    {.name = "Expect: 100-continue",
     .in = POST11 "Expect: 100-Continue\r\nContent-Length: 5\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 5,
     .expect = true},
    {.name = "Expect in HTTP/1.0 ignored",
     .in = "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
     .close = true},
};

static const struct bad_case requests_bad[] = {
    /* smuggling: framing */
    {.name = "CL.TE",
     .in = POST11 "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "TE.CL",
     .in = POST11 "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n",
     .status = 400},
    {.name = "CL.TE with CL 0",
     .in = POST11 "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: xchunked",
     .in = POST11 "Transfer-Encoding: xchunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding : chunked",
     .in = POST11 "Transfer-Encoding : chunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked twice (two fields)",
     .in = POST11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked, chunked",
     .in = POST11 "Transfer-Encoding: chunked, chunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked, identity",
     .in = POST11 "Transfer-Encoding: chunked, identity\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: identity",
     .in = POST11 "Transfer-Encoding: identity\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked then x in a second field",
     .in = POST11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked, (trailing comma)",
     .in = POST11 "Transfer-Encoding: chunked,\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding empty", .in = POST11 "Transfer-Encoding:\r\n\r\n", .status = 400},
    {"Transfer-Encoding: \"chunked\"", POST11 "Transfer-Encoding: \"chunked\"\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: chunked;x=1",
     .in = POST11 "Transfer-Encoding: chunked;x=1\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding with a vertical tab",
     .in = POST11 "Transfer-Encoding:\vchunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding in HTTP/1.0",
     .in = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "Transfer-Encoding: gzip, chunked",
     .in = POST11 "Transfer-Encoding: gzip, chunked\r\n\r\n",
     .status = 501},
    {.name = "Transfer-Encoding: gzip then chunked",
     .in = POST11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 501},
    {.name = "Content-Length: 5, 6", .in = POST11 "Content-Length: 5, 6\r\n\r\n", .status = 400},
    {.name = "Content-Length 5 then 6",
     .in = POST11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
     .status = 400},
    {.name = "Content-Length: +5", .in = POST11 "Content-Length: +5\r\n\r\n", .status = 400},
    {.name = "Content-Length: -1", .in = POST11 "Content-Length: -1\r\n\r\n", .status = 400},
    {.name = "Content-Length: 0x10", .in = POST11 "Content-Length: 0x10\r\n\r\n", .status = 400},
    {.name = "Content-Length: 1 2", .in = POST11 "Content-Length: 1 2\r\n\r\n", .status = 400},
    {.name = "Content-Length: 5,", .in = POST11 "Content-Length: 5,\r\n\r\n", .status = 400},
    {.name = "Content-Length empty", .in = POST11 "Content-Length:\r\n\r\n", .status = 400},
    {.name = "Content-Length over HTTP1_LENGTH_MAX",
     .in = POST11 "Content-Length: 4503599627370496\r\n\r\n",
     .status = 400},
    {.name = "Content-Length overflowing 64 bits",
     .in = POST11 "Content-Length: 99999999999999999999\r\n\r\n",
     .status = 400},
    {.name = "Content-Length : 5", .in = POST11 "Content-Length : 5\r\n\r\n", .status = 400},
    {.name = "Transfer_Encoding: chunked",
     .in = POST11 "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     .status = 400},
    {.name = "content_length: 5", .in = POST11 "content_length: 5\r\n\r\n", .status = 400},
    /* line endings and folding */
    {.name = "bare LF request line", .in = "GET / HTTP/1.1\nHost: a\r\n\r\n", .status = 400},
    {.name = "bare LF field line", .in = GET11 "X: y\n\r\n", .status = 400},
    {.name = "bare LF end of head", .in = GET11 "\n", .status = 400},
    {.name = "bare CR in a value", .in = GET11 "X: a\rb\r\n\r\n", .status = 400},
    {.name = "bare CR at the end of a value", .in = GET11 "X: a\r\r\n\r\n", .status = 400},
    {.name = "bare CR in the request line",
     .in = "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "bare LF as the first line",
     .in = "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "obs-fold (space)", .in = GET11 "X: a\r\n b\r\n\r\n", .status = 400},
    {.name = "obs-fold (tab)",
     .in = GET11 "X: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "whitespace before the first field",
     .in = "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
     .status = 400},
    /* field grammar */
    {.name = "NUL in a value", .status = 400, NUL_IN(GET11 "X: a\0b\r\n\r\n")},
    {.name = "DEL in a value", .in = GET11 "X: a\x7f\r\n\r\n", .status = 400},
    {.name = "ESC in a value", .in = GET11 "X: \x1b[0m\r\n\r\n", .status = 400},
    {.name = "NUL in a name", .status = 400, NUL_IN(GET11 "X\0: a\r\n\r\n")},
    {.name = "space in a name", .in = GET11 "X Y: a\r\n\r\n", .status = 400},
    {.name = "tab before the colon", .in = GET11 "X\t: a\r\n\r\n", .status = 400},
    {.name = "no colon", .in = GET11 "X-No-Colon\r\n\r\n", .status = 400},
    {.name = "empty name", .in = GET11 ": a\r\n\r\n", .status = 400},
    {.name = "non-token byte in a name", .in = GET11 "X(y): a\r\n\r\n", .status = 400},
    {.name = "obs-text in a name", .in = GET11 "X\xe9: a\r\n\r\n", .status = 400},
    /* request line */
    {.name = "lower-case version", .in = "GET / http/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "HTTP/0.9 line", .in = "GET /\r\n\r\n", .status = 400},
    {.name = "two spaces after the method",
     .in = "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "tab after the method", .in = "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "trailing space after the version",
     .in = "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "empty method", .in = " / HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "non-token method", .in = "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "malformed version HTTP/1.10",
     .in = "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "malformed version HTTP/1", .in = "GET / HTTP/1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "HTTP/2.0", .in = "GET / HTTP/2.0\r\nHost: a\r\n\r\n", .status = 505},
    {.name = "HTTP/1.2", .in = "GET / HTTP/1.2\r\nHost: a\r\n\r\n", .status = 505},
    {.name = "HTTP/0.9 version", .in = "GET / HTTP/0.9\r\nHost: a\r\n\r\n", .status = 505},
    {.name = "CTL in the target", .in = "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "tab in the target", .in = "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "byte over 0x7e in the target",
     .in = "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "fragment in the target", .in = "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "NUL in the target", .status = 400, NUL_IN("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n")},
    {.name = "relative target", .in = "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "authority-form with GET",
     .in = "GET a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "CONNECT",
     .in = "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
     .status = 501},
    {.name = "* without OPTIONS", .in = "GET * HTTP/1.1\r\nHost: a\r\n\r\n", .status = 400},
    {.name = "absolute-form, other scheme",
     .in = "GET ftp://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
     .status = 400},
    {.name = "absolute-form, userinfo",
     .in = "GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
     .status = 400},
    {.name = "absolute-form, empty authority",
     .in = "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
     .status = 400},
    {.name = "absolute-form, Host differs",
     .in = "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
     .status = 400},
    {.name = "absolute-form, no Host in 1.1",
     .in = "GET http://a.example/ HTTP/1.1\r\n\r\n",
     .status = 400},
    /* Host */
    {.name = "missing Host", .in = "GET / HTTP/1.1\r\nX: y\r\n\r\n", .status = 400},
    {.name = "duplicate Host", .in = GET11 "Host: a.example\r\n\r\n", .status = 400},
    {.name = "duplicate Host in HTTP/1.0",
     .in = "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
     .status = 400},
    {.name = "empty Host", .in = "GET / HTTP/1.1\r\nHost:\r\n\r\n", .status = 400},
    {.name = "Host with a space", .in = "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .status = 400},
    {.name = "Host with userinfo", .in = "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", .status = 400},
    {.name = "Host with a path", .in = "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .status = 400},
    {.name = "Host with an empty port", .in = "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", .status = 400},
    {.name = "Host with a bad port", .in = "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", .status = 400},
    {.name = "Host list", .in = "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", .status = 400},
    {.name = "Host with an unclosed bracket",
     .in = "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
     .status = 400},
    /* lists the proxy reads */
    {.name = "Connection with a non-token",
     .in = GET11 "Connection: close; x\r\n\r\n",
     .status = 400},
};

static const struct ok_case responses_ok[] = {
    {.name = "200 with Content-Length",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 12,
     .code = 200,
     .role = RESP},
    {.name = "200 chunked",
     .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     .body = HTTP1_BODY_CHUNKED,
     .code = 200,
     .role = RESP},
    {.name = "200 read until close",
     .in = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
     .body = HTTP1_BODY_CLOSE,
     .close = true,
     .code = 200,
     .role = RESP},
    {.name = "200 without a reason, no SP",
     .in = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .code = 200,
     .role = RESP},
    {.name = "200 with an empty reason",
     .in = "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .code = 200,
     .role = RESP},
    {.name = "reason with spaces and obs-text",
     .in = "HTTP/1.1 404 Not \xc3\xa9 Found\r\nContent-Length: 0\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .code = 404,
     .role = RESP},
    {.name = "204 has no body", .in = "HTTP/1.1 204 No Content\r\n\r\n", .code = 204, .role = RESP},
    {.name = "304 has no body whatever its CL",
     .in = "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
     .code = 304,
     .role = RESP},
    {.name = "100 Continue", .in = "HTTP/1.1 100 Continue\r\n\r\n", .code = 100, .role = RESP},
    {.name = "103 Early Hints",
     .in = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
     .code = 103,
     .role = RESP},
    {.name = "101 WebSocket",
     .in = "HTTP/1.1 101 Switching Protocols\r\n" WS_FIELDS "\r\n",
     .ws = true,
     .code = 101,
     .role = RESP},
    {.name = "101 h2c is not WebSocket",
     .in = "HTTP/1.1 101 Switching\r\nUpgrade: h2c\r\nConnection: upgrade"
           "\r\n\r\n",
     .code = 101,
     .role = RESP},
    {.name = "200 to HEAD has no body",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
     .code = 200,
     .role = RESP_HEAD},
    {.name = "chunked 200 to HEAD has no body",
     .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     .code = 200,
     .role = RESP_HEAD},
    {.name = "Connection: close",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 1,
     .close = true,
     .code = 200,
     .role = RESP},
    {.name = "HTTP/1.0 response closes",
     .in = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 1,
     .close = true,
     .code = 200,
     .role = RESP},
    {.name = "HTTP/1.0 keep-alive response",
     .in = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .cl = 1,
     .code = 200,
     .role = RESP},
    {.name = "599",
     .in = "HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n",
     .body = HTTP1_BODY_LENGTH,
     .code = 599,
     .role = RESP},
};

static const struct bad_case responses_bad[] = {
    {.name = "CL and TE",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "differing CL",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "TE gzip",
     .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "TE gzip, chunked",
     .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "TE in HTTP/1.0",
     .in = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "obs-fold",
     .in = "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "bare LF",
     .in = "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "NUL in a value",
     .status = 502,
     .role = RESP,
     NUL_IN("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n")},
    {.name = "status 099", .in = "HTTP/1.1 099 X\r\n\r\n", .status = 502, .role = RESP},
    {.name = "status 600", .in = "HTTP/1.1 600 X\r\n\r\n", .status = 502, .role = RESP},
    {.name = "two-digit status", .in = "HTTP/1.1 20 OK\r\n\r\n", .status = 502, .role = RESP},
    {.name = "status 2000", .in = "HTTP/1.1 2000 OK\r\n\r\n", .status = 502, .role = RESP},
    {.name = "HTTP/2.0 status line", .in = "HTTP/2.0 200 OK\r\n\r\n", .status = 502, .role = RESP},
    {.name = "lower-case version", .in = "http/1.1 200 OK\r\n\r\n", .status = 502, .role = RESP},
    {.name = "CTL in the reason", .in = "HTTP/1.1 200 O\x01K\r\n\r\n", .status = 502, .role = RESP},
    {.name = "leading empty line",
     .in = "\r\nHTTP/1.1 200 OK\r\n\r\n",
     .status = 502,
     .role = RESP},
    {.name = "bad CL to HEAD still refused",
     .in = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
     .status = 502,
     .role = RESP_HEAD},
};

/* A request whose head is exactly len bytes (len >= 64), from one large field. */
static char *sized_request(size_t len)
{
    static const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ";
    char *s = malloc(len + 1);

    if (s == NULL)
        abort();
    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'x', len - (sizeof(pre) - 1) - 4);
    memcpy(s + len - 4, "\r\n\r\n", 4);
    s[len] = '\0';
    return s;
}

static void test_limits(void)
{
    struct http1_head h;
    char *s, buf[8192];
    size_t n;
    enum http1_status r;

    s = sized_request(40 * 1024);
    r = parse_n(REQ, s, strlen(s), &h);
    T_OK(r == HTTP1_OK && h.len == 40 * 1024, "a 40 KiB head is OK");
    free(s);

    s = sized_request(HTTP1_HEAD_MAX);
    r = parse_n(REQ, s, HTTP1_HEAD_MAX, &h);
    T_OK(r == HTTP1_OK && h.len == HTTP1_HEAD_MAX, "a head of exactly HTTP1_HEAD_MAX is OK");
    r = parse_bytewise(REQ, s, HTTP1_HEAD_MAX, &h);
    T_OK(r == HTTP1_OK && h.len == HTTP1_HEAD_MAX, "the same fed byte by byte");
    free(s);

    s = sized_request(HTTP1_HEAD_MAX + 1);
    r = parse_n(REQ, s, HTTP1_HEAD_MAX + 1, &h);
    T_OK(r == HTTP1_ERROR && h.status == 431, "a head of HTTP1_HEAD_MAX + 1 bytes: 431");
    r = parse_n(REQ, s, HTTP1_HEAD_MAX, &h);
    T_OK(r == HTTP1_ERROR && h.status == 431,
         "431 decided from the first HTTP1_HEAD_MAX bytes, none past them read");
    r = parse_n(REQ, s, HTTP1_HEAD_MAX - 1, &h);
    T_OK(r == HTTP1_NEED_MORE, "NEED_MORE one byte below the cap");
    r = parse_bytewise(REQ, s, HTTP1_HEAD_MAX + 1, &h);
    T_OK(r == HTTP1_ERROR && h.status == 431, "431 fed byte by byte");
    free(s);

    s = sized_request(HTTP1_HEAD_MAX + 1);
    for (size_t i = 0; i + 1 < HTTP1_HEAD_MAX; i += 2)
        memcpy(s + i, "\r\n", 2);
    r = parse_n(REQ, s, HTTP1_HEAD_MAX + 1, &h);
    T_OK(r == HTTP1_ERROR && h.status == 431, "64 KiB of empty lines before a request: 431");
    free(s);

    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < MAX_FIELDS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, i ? "X-%d: v\r\n" : "Host: a\r\n", i);
    memcpy(buf + n, "\r\n", 3);
    r = parse_n(REQ, buf, n + 2, &h);
    T_OK(r == HTTP1_OK && h.nfields == MAX_FIELDS, "%d fields: OK", MAX_FIELDS);
    memcpy(buf + n, "X-Last: v\r\n\r\n", 14);
    r = parse_n(REQ, buf, n + 13, &h);
    T_OK(r == HTTP1_ERROR && h.status == 431, "%d fields: 431", MAX_FIELDS + 1);
}

/* The fields and spans of a parsed head. */
static void test_fields(void)
{
    static const char req[] = "POST /a?b HTTP/1.1\r\nHost: h.example\r\nX-A:  one two \r\n"
                              "Content-Length: 3\r\n\r\nabc";
    struct http1_head h;
    enum http1_status r = parse_n(REQ, req, sizeof(req) - 1, &h);

    T_OK(r == HTTP1_OK && h.nfields == 3 && span_is(req, h.fields[1].name, "X-A") &&
             span_is(req, h.fields[1].value, "one two") && span_is(req, h.method, "POST") &&
             h.method_id == HTTP1_METHOD_POST && span_is(req, h.target, "/a?b") &&
             h.target_form == HTTP1_TARGET_ORIGIN && h.version == 11 &&
             strcmp(req + h.len, "abc") == 0,
         "request spans: method, target, fields trimmed, body at buf + len");

    static const char resp[] = "HTTP/1.1 418 I'm a teapot\r\nX: y\r\n\r\n";
    r = parse_n(RESP, resp, sizeof(resp) - 1, &h);
    T_OK(r == HTTP1_OK && h.code == 418 && span_is(resp, h.reason, "I'm a teapot") &&
             h.nfields == 1,
         "response spans: code and reason");

    static const char two[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                              "Content-Length: 0\r\n\r\n";
    r = parse_n(RESP, two, sizeof(two) - 1, &h);
    size_t first = h.len;
    bool ok1 = r == HTTP1_OK && h.code == 100 && h.body == HTTP1_BODY_NONE;
    r = parse_n(RESP, two + first, sizeof(two) - 1 - first, &h);
    T_OK(ok1 && r == HTTP1_OK && h.code == 200 && h.has_content_length,
         "a 100 Continue, then the final response at buf + len");

    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    r = parse_n(RESP_HEAD, head, sizeof(head) - 1, &h);
    T_OK(r == HTTP1_OK && h.body == HTTP1_BODY_NONE && h.has_content_length &&
             h.content_length == 1000,
         "a HEAD response keeps its Content-Length to forward, framing none");
    static const char nc[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    r = parse_n(RESP, nc, sizeof(nc) - 1, &h);
    T_OK(r == HTTP1_OK && !h.has_content_length, "a 204's Content-Length is not forwarded");

    struct http1_field few[2];
    static const char three[] = "GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n";
    http1_request_init(&h, few, 2);
    r = http1_parse(&h, (const uint8_t *)three, sizeof(three) - 1);
    T_OK(r == HTTP1_ERROR && h.status == 431, "the caller's field count is the cap");

    r = http1_parse(&h, (const uint8_t *)three, sizeof(three) - 1);
    T_OK(r == HTTP1_ERROR, "an error is sticky");
}

/* Which fields must_drop() drops: name -> expected, for each head. */
static void check_drops(const char *name, enum role role, const char *in, const char *drop)
{
    struct http1_head h;
    char got[128] = "";
    size_t len = strlen(in), g = 0;
    enum http1_status r = parse_n(role, in, len, &h);

    for (size_t i = 0; r == HTTP1_OK && i < h.nfields && g + 2 < sizeof(got); i++)
        got[g++] = http1_must_drop(&h, (const uint8_t *)in, i) ? 'D' : 'k';
    got[g] = '\0';
    T_OK(r == HTTP1_OK && strcmp(got, drop) == 0, "drops, %s: want %s, got %s", name, drop, got);
}

static void test_drops(void)
{
    check_drops("request hop-by-hop and replaced fields", REQ,
                "GET / HTTP/1.1\r\n"
                "Host: a\r\n"                  /* k */
                "Connection: close, X-Hop\r\n" /* D */
                "X-Hop: 1\r\n"                 /* D, named by Connection */
                "x-hop: 2\r\n"                 /* D, case aside */
                "Keep-Alive: 5\r\n"            /* D */
                "Proxy-Connection: x\r\n"      /* D */
                "TE: trailers\r\n"             /* k */
                "TE: gzip\r\n"                 /* D */
                "Upgrade: h2c\r\n"             /* D */
                "HTTP2-Settings: AAA\r\n"      /* D */
                "X-Forwarded-For: 1.2.3.4\r\n" /* D */
                "X-Real-IP: 1.2.3.4\r\n"       /* D */
                "X-Forwarded-Proto: http\r\n"  /* D */
                "Forwarded: for=1.2.3.4\r\n"   /* D */
                "Cookie: c=1\r\n"              /* k */
                "X_Forwarded_For: 1.2.3.4\r\n" /* D, as CGI reads it */
                "X_Custom: 1\r\n"              /* k */
                "Content-Length: 1\r\n"        /* D, re-written */
                "\r\n",
                "kDDDDDkDDDDDDDkDkD");
    check_drops("Connection cannot drop Host", REQ,
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: host, cookie\r\nCookie: c\r\n\r\n",
                "kDD");
    check_drops("chunked request", REQ,
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n", "kDk");
    check_drops("WebSocket upgrade keeps Upgrade", REQ, GET11 WS_FIELDS "\r\n", "kkDk");
    check_drops("Upgrade offering h2c besides websocket is dropped", REQ,
                GET11 "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\n", "kDD");
    check_drops("response hop-by-hop", RESP,
                "HTTP/1.1 200 OK\r\nConnection: X-Gone\r\nX-Gone: 1\r\nKeep-Alive: t=5\r\n"
                "X-Forwarded-For: kept\r\nTransfer-Encoding: chunked\r\nUpgrade: websocket\r\n"
                "Set-Cookie: s\r\n\r\n",
                "DDDkDDk");
    check_drops("101 WebSocket keeps Upgrade", RESP,
                "HTTP/1.1 101 Switching Protocols\r\n" WS_FIELDS "\r\n", "kDk");
}

/* ---- chunked ---- */

struct chunk_result {
    enum http1_status r;
    size_t used, data;
    const char *err;
};

/* in[0..n) split at the given offsets (ascending, 0-terminated list). */
static struct chunk_result chunk_split(const char *in, size_t n, const size_t *cuts, size_t ncuts)
{
    struct http1_chunked c;
    struct chunk_result res = {HTTP1_NEED_MORE, 0, 0, NULL};
    size_t start = 0;

    http1_chunked_init(&c);
    for (size_t k = 0; k <= ncuts && res.r == HTTP1_NEED_MORE; k++) {
        size_t end = k < ncuts ? cuts[k] : n, used, data;
        uint8_t *piece = copy(in + start, end - start);

        res.r = http1_chunked_feed(&c, piece, end - start, &used, &data);
        free(piece);
        if (res.r == HTTP1_NEED_MORE && used != end - start)
            res.r = 99; /* NEED_MORE must take everything */
        res.used += used;
        res.data += data;
        start = end;
    }
    res.err = c.err;
    return res;
}

static bool same_result(struct chunk_result a, struct chunk_result b)
{
    return a.r == b.r && a.used == b.used && a.data == b.data && a.err == b.err;
}

/* One call, every two-piece split, and byte by byte agree; the one-call
 * answer is want_r with used bytes of which data are chunk data. */
static void check_chunked(const char *name, const char *in, size_t n, enum http1_status want_r,
                          size_t want_used, size_t want_data)
{
    struct chunk_result one = chunk_split(in, n, NULL, 0), r;
    size_t *cuts = malloc((n ? n : 1) * sizeof(*cuts));
    bool splits = true, bytes;

    if (cuts == NULL)
        abort();
    T_OK(one.r == want_r && one.used == want_used && one.data == want_data,
         "chunked %s: %s, %zu bytes used, %zu of data (got %d, %zu, %zu, %s)", name,
         want_r == HTTP1_OK      ? "OK"
         : want_r == HTTP1_ERROR ? "ERROR"
                                 : "NEED_MORE",
         want_used, want_data, one.r, one.used, one.data, one.err ? one.err : "-");
    /* every offset of a short body, a thousand spread over a long one */
    for (size_t k = 1; k < n && splits; k += 1 + n / 1024) {
        cuts[0] = k;
        r = chunk_split(in, n, cuts, 1);
        splits = same_result(one, r);
    }
    for (size_t k = 1; k < n; k++)
        cuts[k - 1] = k;
    r = chunk_split(in, n, cuts, n ? n - 1 : 0);
    bytes = same_result(one, r);
    T_OK(splits && bytes, "chunked %s: the same split at every offset and byte by byte", name);
    free(cuts);
}

#define CHUNK(name, lit, r, used, data) check_chunked(name, lit, sizeof(lit) - 1, r, used, data)

static void test_chunked(void)
{
    char *big;
    size_t n;

    CHUNK("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", HTTP1_OK, 26, 11);
    CHUNK("hex sizes and a next message", "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\nGET",
          HTTP1_OK, 35, 20);
    CHUNK("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", HTTP1_OK, 20, 5);
    CHUNK("extensions", "5;name=val;q=\"x y\"\r\nhello\r\n0 ; last\r\n\r\n", HTTP1_OK, 39, 5);
    CHUNK("trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B:\r\n\r\n", HTTP1_OK, 29, 3);
    CHUNK("empty body", "0\r\n\r\n", HTTP1_OK, 5, 0);
    CHUNK("unfinished data", "5\r\nhel", HTTP1_NEED_MORE, 6, 3);
    CHUNK("unfinished trailer", "0\r\nX: y\r\n", HTTP1_NEED_MORE, 9, 0);
    CHUNK("largest size", "fffffffffffff\r\nab", HTTP1_NEED_MORE, 17, 2);

    CHUNK("size over HTTP1_LENGTH_MAX", "10000000000000\r\n", HTTP1_ERROR, 13, 0);
    CHUNK("size overflowing 64 bits", "100000000000000000000\r\n", HTTP1_ERROR, 13, 0);
    CHUNK("no size", "\r\n", HTTP1_ERROR, 0, 0);
    CHUNK("non-hex size", "5g\r\nhello\r\n", HTTP1_ERROR, 1, 0);
    CHUNK("negative size", "-5\r\n", HTTP1_ERROR, 0, 0);
    CHUNK("0x prefix", "0x5\r\n", HTTP1_ERROR, 1, 0);
    CHUNK("space before the size", " 5\r\n", HTTP1_ERROR, 0, 0);
    CHUNK("space after the size, no extension", "5 \r\nhello\r\n", HTTP1_ERROR, 2, 0);
    CHUNK("bare LF after the size", "5\nhello\r\n0\r\n\r\n", HTTP1_ERROR, 1, 0);
    CHUNK("bare CR after the size", "5\rhello", HTTP1_ERROR, 2, 0);
    CHUNK("bare LF in an extension", "5;a\nhello\r\n", HTTP1_ERROR, 3, 0);
    CHUNK("NUL in an extension", "5;a\0b\r\nhello\r\n", HTTP1_ERROR, 3, 0);
    CHUNK("data longer than its size", "5\r\nhelloX\r\n0\r\n\r\n", HTTP1_ERROR, 8, 5);
    CHUNK("data without CRLF", "5\r\nhello\n0\r\n\r\n", HTTP1_ERROR, 8, 5);
    CHUNK("bare LF ending the body", "0\r\n\n", HTTP1_ERROR, 3, 0);
    CHUNK("bare LF in a trailer", "0\r\nX: y\n\r\n", HTTP1_ERROR, 7, 0);
    CHUNK("space before a trailer's colon", "0\r\nX : y\r\n\r\n", HTTP1_ERROR, 4, 0);
    CHUNK("folded trailer", "0\r\nX: y\r\n z\r\n\r\n", HTTP1_ERROR, 9, 0);
    CHUNK("Content-Length in trailers", "0\r\ncontent-length: 5\r\n\r\n", HTTP1_ERROR, 17, 0);
    CHUNK("Transfer_Encoding in trailers", "0\r\nTransfer_Encoding: x\r\n\r\n", HTTP1_ERROR, 20, 0);
    CHUNK("Content-Lengths in trailers is another name", "0\r\nContent-Lengths: 5\r\n\r\n",
          HTTP1_OK, 25, 0);
    CHUNK("Content-Lengt in trailers is another name", "0\r\nContent-Lengt: 5\r\n\r\n", HTTP1_OK,
          23, 0);
    CHUNK("NUL in a trailer", "0\r\nX: \0\r\n\r\n", HTTP1_ERROR, 6, 0);

    big = malloc(HTTP1_CHUNK_LINE_MAX + 16);
    if (big == NULL)
        abort();
    memset(big, 'a', HTTP1_CHUNK_LINE_MAX + 16);
    big[0] = '1';
    big[1] = ';';
    memcpy(big + HTTP1_CHUNK_LINE_MAX - 2, "\r\nx\r\n0\r\n\r\n", 10);
    check_chunked("size line of HTTP1_CHUNK_LINE_MAX", big, HTTP1_CHUNK_LINE_MAX + 8, HTTP1_OK,
                  HTTP1_CHUNK_LINE_MAX + 8, 1);
    memset(big + 2, 'a', HTTP1_CHUNK_LINE_MAX);
    memcpy(big + HTTP1_CHUNK_LINE_MAX - 1, "\r\nx\r\n0\r\n\r\n", 10);
    check_chunked("size line over HTTP1_CHUNK_LINE_MAX", big, HTTP1_CHUNK_LINE_MAX + 9, HTTP1_ERROR,
                  HTTP1_CHUNK_LINE_MAX, 0);
    free(big);

    /* the trailer cap: 0 CRLF, then trailer lines filling the section */
    n = 3 + HTTP1_HEAD_MAX + 1;
    big = malloc(n);
    if (big == NULL)
        abort();
    memcpy(big, "0\r\n", 3);
    memset(big + 3, 'x', HTTP1_HEAD_MAX);
    memcpy(big + 3, "T:", 2);
    memcpy(big + 3 + HTTP1_HEAD_MAX - 4, "\r\n\r\n", 4);
    check_chunked("trailer section of HTTP1_HEAD_MAX", big, 3 + HTTP1_HEAD_MAX, HTTP1_OK,
                  3 + HTTP1_HEAD_MAX, 0);
    memcpy(big + 3 + HTTP1_HEAD_MAX - 4, "x\r\n\r\n", 5);
    check_chunked("trailer section over HTTP1_HEAD_MAX", big, n, HTTP1_ERROR, 3 + HTTP1_HEAD_MAX,
                  0);
    free(big);

    {
        struct http1_chunked c;
        size_t used, data;
        static const uint8_t body[] = "0\r\n\r\nNEXT";
        enum http1_status r1, r2;

        http1_chunked_init(&c);
        r1 = http1_chunked_feed(&c, body, sizeof(body) - 1, &used, &data);
        r2 = http1_chunked_feed(&c, body + used, sizeof(body) - 1 - used, &used, &data);
        T_OK(r1 == HTTP1_OK && r2 == HTTP1_OK && used == 0 && data == 0,
             "chunked: OK is sticky and uses nothing more");
    }
}

/* Taking the data bytes as http1_chunked_data_left() says, framing byte
 * by byte between them (as the HTTP/2 path does), yields the chunks' data. */
static void test_chunked_data_left(void)
{
    static const char body[] = "5;x=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nT: v\r\n\r\n";
    struct http1_chunked c;
    char out[32];
    size_t n = 0, used, data;
    enum http1_status st = HTTP1_NEED_MORE;

    http1_chunked_init(&c);
    T_OK(http1_chunked_data_left(&c) == 0, "chunked: no data before a size line");
    for (size_t i = 0; i < sizeof(body) - 1 && st == HTTP1_NEED_MORE; i += used) {
        uint64_t d = http1_chunked_data_left(&c);
        size_t k = d ? (size_t)MC_MIN(d, sizeof(body) - 1 - i) : 1;
        st = http1_chunked_feed(&c, (const uint8_t *)body + i, k, &used, &data);
        T_OK(data == (d ? used : 0), "chunked: %zu data bytes at %zu, as said", data, i);
        memcpy(out + n, body + i, data);
        n += data;
    }
    T_OK(st == HTTP1_OK && n == 12 && memcmp(out, "hello world!", 12) == 0,
         "chunked: the data taken as data_left says is the body's (%.*s)", (int)n, out);
}

int main(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(requests_ok); i++)
        check_ok(&requests_ok[i]);
    for (size_t i = 0; i < MC_ARRAY_LEN(requests_bad); i++)
        check_bad(&requests_bad[i]);
    for (size_t i = 0; i < MC_ARRAY_LEN(responses_ok); i++)
        check_ok(&responses_ok[i]);
    for (size_t i = 0; i < MC_ARRAY_LEN(responses_bad); i++)
        check_bad(&responses_bad[i]);
    test_limits();
    test_fields();
    test_drops();
    test_chunked();
    test_chunked_data_left();
    return tap_done();
}
