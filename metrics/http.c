/*
 * HTTP/1.x request line and header skipping (RFC 9112 section 3 and 5),
 * strict enough that anything but a plain request is refused early:
 *
 *   method SP target SP "HTTP/1." digit EOL
 *   *( token ":" *(visible / obs-text / SP / HTAB) EOL )
 *   EOL
 *
 * with EOL = CRLF or LF. No header is interpreted: a scrape needs none.
 */
#include <stdbool.h>
#include <string.h>

#include "metrics/http.h"

static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte allowed in a field value (anything but controls other than HTAB). */
static bool is_field_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* At p[*i]: consumes CRLF or LF. */
static enum http_result eol(const uint8_t *p, size_t len, size_t *i)
{
    if (*i < len && p[*i] == '\r')
        (*i)++;
    if (*i == len)
        return HTTP_NEED_MORE;
    if (p[*i] != '\n')
        return HTTP_BAD;
    (*i)++;
    return HTTP_OK;
}

static enum http_result request_line(const uint8_t *p, size_t len, size_t *i,
                                     struct http_request *req)
{
    static const char version[] = "HTTP/1.";
    size_t start = *i;

    while (*i < len && is_tchar(p[*i])) {
        if (++*i - start > HTTP_METHOD_MAX)
            return HTTP_BAD;
    }
    if (*i == len)
        return HTTP_NEED_MORE;
    if (*i == start || p[*i] != ' ')
        return HTTP_BAD;
    size_t mlen = *i - start;
    if (mlen == 3 && memcmp(p + start, "GET", 3) == 0)
        req->method = HTTP_GET;
    else if (mlen == 4 && memcmp(p + start, "HEAD", 4) == 0)
        req->method = HTTP_HEAD;
    else
        req->method = HTTP_OTHER;
    (*i)++;

    start = *i;
    while (*i < len && p[*i] > 0x20 && p[*i] < 0x7f)
        (*i)++;
    if (*i == len)
        return HTTP_NEED_MORE;
    if (*i == start || p[*i] != ' ')
        return HTTP_BAD;
    const uint8_t *q = memchr(p + start, '?', *i - start);
    req->path = p + start;
    req->path_len = (q != NULL ? (size_t)(q - p) : *i) - start;
    (*i)++;

    for (size_t k = 0; k < sizeof(version) - 1; k++, (*i)++) {
        if (*i == len)
            return HTTP_NEED_MORE;
        if (p[*i] != (uint8_t)version[k])
            return HTTP_BAD;
    }
    if (*i == len)
        return HTTP_NEED_MORE;
    if (p[*i] != '0' && p[*i] != '1')
        return HTTP_BAD;
    req->minor = (unsigned)(p[*i] - '0');
    (*i)++;
    return eol(p, len, i);
}

/* One header field line, not interpreted. */
static enum http_result header_line(const uint8_t *p, size_t len, size_t *i)
{
    size_t start = *i;

    while (*i < len && is_tchar(p[*i]))
        (*i)++;
    if (*i == len)
        return HTTP_NEED_MORE;
    if (*i == start || p[*i] != ':')
        return HTTP_BAD;
    (*i)++;
    while (*i < len && is_field_char(p[*i]))
        (*i)++;
    return eol(p, len, i);
}

enum http_result http_parse_request(const uint8_t *buf, size_t len, struct http_request *req)
{
    struct http_request r = {0};
    size_t i = 0;
    enum http_result rc = request_line(buf, len, &i, &r);

    while (rc == HTTP_OK) {
        if (i == len)
            return HTTP_NEED_MORE;
        if (buf[i] == '\r' || buf[i] == '\n') {
            rc = eol(buf, len, &i);
            if (rc != HTTP_OK)
                return rc;
            r.header_end = i;
            *req = r;
            return HTTP_OK;
        }
        rc = header_line(buf, len, &i);
    }
    return rc;
}
