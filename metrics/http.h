/*
 * The metrics exporter's HTTP request reader: the request line of an
 * HTTP/1.0 or 1.1 request, headers skipped up to the blank line. A pure
 * function over the bytes received so far; the caller bounds the buffer.
 */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_METHOD_MAX 16 /* longer is not a method we could answer */

enum http_result {
    HTTP_NEED_MORE, /* valid so far, the blank line has not arrived */
    HTTP_OK,
    HTTP_BAD, /* not an HTTP/1.x request: answer 400 and close */
};

enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_OTHER, /* a well-formed method we do not serve: 405 */
};

struct http_request {
    enum http_method method;
    const uint8_t *path; /* the request target up to '?', inside the buffer */
    size_t path_len;
    unsigned minor;    /* HTTP/1.minor */
    size_t header_end; /* bytes up to and including the blank line */
};

/*
 * Parses buf[0..len). Lines end in CRLF or a bare LF. Returns HTTP_BAD
 * as soon as a byte cannot belong to a valid request, so garbage is
 * refused without waiting for the buffer to fill; *req is filled only
 * on HTTP_OK.
 */
enum http_result http_parse_request(const uint8_t *buf, size_t len, struct http_request *req);

#endif
