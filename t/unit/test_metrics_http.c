/* http_parse_request(): the metrics exporter's request reader. */
#include <string.h>

#include "common/mc.h"
#include "metrics/http.h"
#include "tap.h"

#define IN(s)       s, sizeof(s) - 1
#define OK(m, p, v) .want = HTTP_OK, .method = m, .path = p, .minor = v

struct row {
    const char *name;
    const char *in;
    size_t len; /* inputs may hold NULs */
    enum http_result want;
    enum http_method method; /* checked on HTTP_OK */
    const char *path;
    unsigned minor;
    size_t header_end; /* 0: the whole input */
};

static const struct row rows[] = {
    {"GET 1.0, no headers", IN("GET /metrics HTTP/1.0\r\n\r\n"), OK(HTTP_GET, "/metrics", 0)},
    {"GET 1.1 with headers",
     IN("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9091\r\nUser-Agent: Prometheus/2.45\r\n"
        "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n"),
     OK(HTTP_GET, "/metrics", 1)},
    {"HEAD", IN("HEAD /metrics HTTP/1.1\r\n\r\n"), OK(HTTP_HEAD, "/metrics", 1)},
    {"bare LF line ends", IN("GET /metrics HTTP/1.1\nHost: x\n\n"), OK(HTTP_GET, "/metrics", 1)},
    {"query string is not part of the path", IN("GET /metrics?name[]=x HTTP/1.1\r\n\r\n"),
     OK(HTTP_GET, "/metrics", 1)},
    {"other path parses (404 is the caller's)", IN("GET / HTTP/1.1\r\n\r\n"), OK(HTTP_GET, "/", 1)},
    {"other method parses as OTHER (405)",
     IN("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), OK(HTTP_OTHER, "/metrics", 1)},
    {"methods are case-sensitive", IN("get /metrics HTTP/1.1\r\n\r\n"),
     OK(HTTP_OTHER, "/metrics", 1)},
    {"empty header value, tab and obs-text",
     IN("GET /metrics HTTP/1.1\r\nX-A:\r\nX-B:\t\xe9t\xe9\r\n\r\n"), OK(HTTP_GET, "/metrics", 1)},
    {"bytes after the blank line are not consumed", IN("GET /metrics HTTP/1.1\r\n\r\nbody"),
     OK(HTTP_GET, "/metrics", 1), .header_end = 25},
    {"16-byte method", IN("ABCDEFGHIJKLMNOP /metrics HTTP/1.1\r\n\r\n"),
     OK(HTTP_OTHER, "/metrics", 1)},

    {"empty input", IN(""), .want = HTTP_NEED_MORE},
    {"request line incomplete", IN("GET /metr"), .want = HTTP_NEED_MORE},
    {"version incomplete", IN("GET /metrics HTTP/1"), .want = HTTP_NEED_MORE},
    {"CR at the end", IN("GET /metrics HTTP/1.1\r"), .want = HTTP_NEED_MORE},
    {"headers incomplete", IN("GET /metrics HTTP/1.1\r\nHost: x\r\n"), .want = HTTP_NEED_MORE},
    {"blank line incomplete", IN("GET /metrics HTTP/1.1\r\nHost: x\r\n\r"), .want = HTTP_NEED_MORE},

    {"TLS ClientHello", IN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), .want = HTTP_BAD},
    {"leading space", IN(" GET /metrics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"leading CRLF", IN("\r\nGET /metrics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"17-byte method", IN("ABCDEFGHIJKLMNOPQ /metrics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"two spaces after method", IN("GET  /metrics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"no target", IN("GET HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"control byte in target", IN("GET /met\x01rics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"NUL in target", IN("GET /met\0rics HTTP/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"HTTP/0.9 simple request", IN("GET /metrics\r\n\r\n"), .want = HTTP_BAD},
    {"HTTP/2.0", IN("GET /metrics HTTP/2.0\r\n\r\n"), .want = HTTP_BAD},
    {"HTTP/1.2", IN("GET /metrics HTTP/1.2\r\n\r\n"), .want = HTTP_BAD},
    {"lower-case version", IN("GET /metrics http/1.1\r\n\r\n"), .want = HTTP_BAD},
    {"trailing space after version", IN("GET /metrics HTTP/1.1 \r\n\r\n"), .want = HTTP_BAD},
    {"bare CR line end", IN("GET /metrics HTTP/1.1\rHost: x\r\n\r\n"), .want = HTTP_BAD},
    {"header without colon", IN("GET /metrics HTTP/1.1\r\nHost x\r\n\r\n"), .want = HTTP_BAD},
    {"header with empty name", IN("GET /metrics HTTP/1.1\r\n: x\r\n\r\n"), .want = HTTP_BAD},
    {"space before colon", IN("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n"), .want = HTTP_BAD},
    {"obs-fold continuation", IN("GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), .want = HTTP_BAD},
    {"NUL in header value", IN("GET /metrics HTTP/1.1\r\nA: b\0c\r\n\r\n"), .want = HTTP_BAD},
    {"bad byte after a partial header", IN("GET /metrics HTTP/1.1\r\nHo\x01"), .want = HTTP_BAD},
};

static int check_row(const struct row *r)
{
    const uint8_t *in = (const uint8_t *)r->in;
    size_t len = r->len;
    struct http_request req;

    if (http_parse_request(in, len, &req) != r->want)
        return 0;
    if (r->want != HTTP_OK)
        return 1;
    size_t end = r->header_end ? r->header_end : len;
    if (req.method != r->method || req.minor != r->minor || req.header_end != end ||
        req.path_len != strlen(r->path) || memcmp(req.path, r->path, req.path_len) != 0)
        return 0;
    /* fed a byte at a time, it must wait, never fail, until the blank line */
    for (size_t k = 0; k < end; k++) {
        if (http_parse_request(in, k, &req) != HTTP_NEED_MORE)
            return 0;
    }
    return 1;
}

int main(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(rows); i++)
        T_OK(check_row(&rows[i]), "%s", rows[i].name);
    return tap_done();
}
