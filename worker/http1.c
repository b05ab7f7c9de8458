/*
 * HTTP/1.1 head parsers, chunked decoder and forwarding filter (http1.h).
 *
 * The head parser works line by line: http1_parse() looks for the next LF
 * from where the previous call's search stopped, and judges a line only
 * once it is complete, field by field as they arrive (so a duplicate Host
 * or a bad Content-Length is refused without waiting for the empty line);
 * the rules that need the whole head (Host required, CL with TE, the
 * framing decision) run at the empty line. Character classes come from one
 * table, so the grammar's alphabets (tchar, field-vchar, the target's and
 * the host's bytes) are written once.
 */
#include <string.h>

#include "common/mc.h"
#include "worker/http1.h"

#define C_TOKEN  0x01 /* tchar (RFC 9110 5.6.2) */
#define C_VALUE  0x02 /* field-vchar: VCHAR or obs-text (5.5) */
#define C_TARGET 0x04 /* request-target byte: VCHAR but '#' */
#define C_HOST   0x08 /* reg-name byte: unreserved, sub-delims, '%' (RFC 3986 3.2.2) */
#define C_HEX    0x10

#define TVTH (C_TOKEN | C_VALUE | C_TARGET | C_HOST)
#define VT   (C_VALUE | C_TARGET)

static const uint8_t cls[256] = {
    ['!'] = TVTH,
    ['"'] = VT,
    ['#'] = C_TOKEN | C_VALUE,
    ['$'] = TVTH,
    ['%'] = TVTH,
    ['&'] = TVTH,
    ['\''] = TVTH,
    ['('] = VT | C_HOST,
    [')'] = VT | C_HOST,
    ['*'] = TVTH,
    ['+'] = TVTH,
    [','] = VT | C_HOST,
    ['-'] = TVTH,
    ['.'] = TVTH,
    ['/'] = VT,
    ['0' ... '9'] = TVTH | C_HEX,
    [':'] = VT,
    [';'] = VT | C_HOST,
    ['<'] = VT,
    ['='] = VT | C_HOST,
    ['>'] = VT,
    ['?'] = VT,
    ['@'] = VT,
    ['A' ... 'F'] = TVTH | C_HEX,
    ['G' ... 'Z'] = TVTH,
    ['['] = VT,
    ['\\'] = VT,
    [']'] = VT,
    ['^'] = C_TOKEN | VT,
    ['_'] = TVTH,
    ['`'] = C_TOKEN | VT,
    ['a' ... 'f'] = TVTH | C_HEX,
    ['g' ... 'z'] = TVTH,
    ['{'] = VT,
    ['|'] = C_TOKEN | VT,
    ['}'] = VT,
    ['~'] = TVTH,
    [0x80 ... 0xff] = C_VALUE,
};

enum stage { ST_START, ST_FIELDS, ST_OK, ST_ERROR };
enum role { ROLE_REQUEST, ROLE_RESPONSE, ROLE_RESPONSE_HEAD };

static bool is(uint8_t c, uint8_t mask)
{
    return (cls[c] & mask) != 0;
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* s[0..len) equals the lower-case literal lit, ASCII case aside. */
static bool ieq(const uint8_t *s, size_t len, const char *lit)
{
    size_t i = 0;

    for (; i < len && lit[i] != '\0'; i++)
        if (lower(s[i]) != (uint8_t)lit[i])
            return false;
    return i == len && lit[i] == '\0';
}

/* The same, with '_' in s read as '-': backends that map field names to
 * CGI-style variables (HTTP_CONTENT_LENGTH) read both spellings alike. */
static bool ieq_dash(const uint8_t *s, size_t len, const char *lit)
{
    size_t i = 0;

    for (; i < len && lit[i] != '\0'; i++)
        if (lower(s[i]) != (uint8_t)lit[i] && !(s[i] == '_' && lit[i] == '-'))
            return false;
    return i == len && lit[i] == '\0';
}

static bool span_ieq(const uint8_t *buf, struct http1_span a, struct http1_span b)
{
    if (a.len != b.len)
        return false;
    for (uint32_t i = 0; i < a.len; i++)
        if (lower(buf[a.off + i]) != lower(buf[b.off + i]))
            return false;
    return true;
}

static struct http1_span span(const uint8_t *buf, const uint8_t *s, size_t len)
{
    return (struct http1_span){(uint32_t)(s - buf), (uint32_t)len};
}

static enum http1_status fail(struct http1_head *h, int status, const char *why)
{
    h->p.stage = ST_ERROR;
    h->status = h->p.role == ROLE_REQUEST ? status : 502;
    h->err = why;
    return HTTP1_ERROR;
}

/*
 * The next element of the comma-separated list s[0..len) from *pos on,
 * without surrounding whitespace (RFC 9110 5.6.1); empty elements are
 * returned too, for the callers that refuse them. False at the end.
 */
static bool list_next(const uint8_t *s, size_t len, size_t *pos, const uint8_t **e, size_t *elen)
{
    size_t i = *pos, end;

    if (i > len)
        return false;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    end = i;
    while (end < len && s[end] != ',')
        end++;
    *pos = end + 1;
    *e = s + i;
    while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    *elen = end - i;
    return true;
}

static bool is_token(const uint8_t *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is(s[i], C_TOKEN))
            return false;
    return true;
}

/* "HTTP/d.d": 10 or 11, 0 for another well-formed version, -1 when malformed. */
static int parse_version(const uint8_t *s, size_t len)
{
    if (len != 8 || memcmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' ||
        s[7] < '0' || s[7] > '9')
        return -1;
    if (s[5] == '1' && (s[7] == '0' || s[7] == '1'))
        return 10 + (s[7] - '0');
    return 0;
}

/* host [ ":" port ] (RFC 9110 7.2): a reg-name or an IP literal in
 * brackets, and a port of 1 to 5 digits. */
static bool valid_host(const uint8_t *s, size_t len)
{
    size_t i = 0, digits = 0;

    if (len > 0 && s[0] == '[') {
        for (i = 1; i < len && s[i] != ']'; i++)
            if (!is(s[i], C_HEX) && s[i] != ':' && s[i] != '.')
                return false;
        if (i == len || i == 1)
            return false;
        i++;
    } else {
        while (i < len && is(s[i], C_HOST))
            i++;
        if (i == 0)
            return false;
    }
    if (i == len)
        return true;
    if (s[i++] != ':')
        return false;
    for (; i < len; i++, digits++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return digits >= 1 && digits <= 5;
}

static enum http1_method method_of(const uint8_t *s, size_t len)
{
    static const struct {
        const char *name;
        enum http1_method id;
    } known[] = {
        {"GET", HTTP1_METHOD_GET},       {"HEAD", HTTP1_METHOD_HEAD},
        {"POST", HTTP1_METHOD_POST},     {"PUT", HTTP1_METHOD_PUT},
        {"DELETE", HTTP1_METHOD_DELETE}, {"OPTIONS", HTTP1_METHOD_OPTIONS},
        {"TRACE", HTTP1_METHOD_TRACE},   {"PATCH", HTTP1_METHOD_PATCH},
    };

    /* methods are case-sensitive (RFC 9110 9.1) */
    for (size_t i = 0; i < MC_ARRAY_LEN(known); i++)
        if (strlen(known[i].name) == len && memcmp(s, known[i].name, len) == 0)
            return known[i].id;
    return HTTP1_METHOD_OTHER;
}

/* The target after "scheme://": authority, then path. */
static enum http1_status parse_absolute(struct http1_head *h, const uint8_t *buf, const uint8_t *s,
                                        size_t len)
{
    size_t a = 0;

    while (a < len && s[a] != '/' && s[a] != '?')
        a++;
    if (!valid_host(s, a))
        return fail(h, 400, "bad authority in request-target");
    h->host = span(buf, s, a);
    h->path = span(buf, s + a, len - a);
    return HTTP1_OK;
}

/* method SP request-target SP HTTP-version (RFC 9112 3). */
static enum http1_status parse_request_line(struct http1_head *h, const uint8_t *buf,
                                            const uint8_t *s, size_t len)
{
    size_t m = 0, t, v;
    int version;

    while (m < len && is(s[m], C_TOKEN))
        m++;
    if (m == 0 || m == len || s[m] != ' ')
        return fail(h, 400, "bad method");
    for (t = m + 1; t < len && s[t] != ' '; t++)
        if (!is(s[t], C_TARGET))
            return fail(h, 400, "bad byte in request-target");
    if (t == m + 1 || t == len)
        return fail(h, 400, "bad request line");
    version = parse_version(s + t + 1, len - t - 1);
    if (version < 0)
        return fail(h, 400, "bad HTTP version");
    if (version == 0)
        return fail(h, 505, "HTTP version not supported");
    h->version = (unsigned)version;
    h->method = span(buf, s, m);
    h->method_id = method_of(s, m);
    if (m == 7 && memcmp(s, "CONNECT", 7) == 0)
        return fail(h, 501, "CONNECT not supported");

    s += m + 1;
    v = t - m - 1;
    h->target = span(buf, s, v);
    if (s[0] == '/') {
        h->target_form = HTTP1_TARGET_ORIGIN;
        h->path = h->target;
        return HTTP1_OK;
    }
    if (v == 1 && s[0] == '*') {
        if (h->method_id != HTTP1_METHOD_OPTIONS)
            return fail(h, 400, "'*' target without OPTIONS");
        h->target_form = HTTP1_TARGET_ASTERISK;
        return HTTP1_OK;
    }
    h->target_form = HTTP1_TARGET_ABSOLUTE;
    if (v > 7 && ieq(s, 7, "http://"))
        return parse_absolute(h, buf, s + 7, v - 7);
    if (v > 8 && ieq(s, 8, "https://"))
        return parse_absolute(h, buf, s + 8, v - 8);
    return fail(h, 400, "bad request-target form");
}

/* HTTP-version SP status-code [ SP reason-phrase ] (RFC 9112 4); the SP
 * before an empty reason may be missing, as some servers send it. */
static enum http1_status parse_status_line(struct http1_head *h, const uint8_t *buf,
                                           const uint8_t *s, size_t len)
{
    int version = len >= 8 ? parse_version(s, 8) : -1;

    if (version <= 0 || len < 12 || s[8] != ' ' || s[9] < '1' || s[9] > '5' || s[10] < '0' ||
        s[10] > '9' || s[11] < '0' || s[11] > '9' || (len > 12 && s[12] != ' '))
        return fail(h, 502, "bad status line");
    for (size_t i = 13; i < len; i++)
        if (!is(s[i], C_VALUE) && s[i] != ' ' && s[i] != '\t')
            return fail(h, 502, "bad byte in reason phrase");
    h->version = (unsigned)version;
    h->code = (unsigned)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    h->reason = len > 12 ? span(buf, s + 13, len - 13) : span(buf, s + len, 0);
    return HTTP1_OK;
}

/* Content-Length = 1#DIGIT, all elements equal (RFC 9110 8.6). */
static enum http1_status parse_content_length(struct http1_head *h, const uint8_t *v, size_t len)
{
    const uint8_t *e;
    size_t elen, pos = 0;

    while (list_next(v, len, &pos, &e, &elen)) {
        uint64_t n = 0;

        if (elen == 0)
            return fail(h, 400, "empty Content-Length");
        for (size_t i = 0; i < elen; i++) {
            if (e[i] < '0' || e[i] > '9')
                return fail(h, 400, "bad Content-Length");
            n = n * 10 + (uint64_t)(e[i] - '0');
            if (n > HTTP1_LENGTH_MAX) /* checked per digit: no overflow */
                return fail(h, 400, "Content-Length too large");
        }
        if (h->p.cl && n != h->content_length)
            return fail(h, 400, "differing Content-Length values");
        h->p.cl = true;
        h->content_length = n;
    }
    return HTTP1_OK;
}

/* Transfer-Encoding = #transfer-coding; chunked must come once, last. */
static enum http1_status parse_transfer_encoding(struct http1_head *h, const uint8_t *v, size_t len)
{
    const uint8_t *e;
    size_t elen, pos = 0;

    h->p.te = true;
    while (list_next(v, len, &pos, &e, &elen)) {
        if (!is_token(e, elen))
            return fail(h, 400, "bad Transfer-Encoding");
        if (h->p.te_chunked)
            return fail(h, 400, "Transfer-Encoding after chunked");
        if (ieq(e, elen, "chunked"))
            h->p.te_chunked = true;
        else
            h->p.te_other = true;
    }
    return HTTP1_OK;
}

/* Connection = #connection-option (RFC 9110 7.6.1); empty elements skipped. */
static enum http1_status parse_connection(struct http1_head *h, const uint8_t *v, size_t len)
{
    const uint8_t *e;
    size_t elen, pos = 0;

    while (list_next(v, len, &pos, &e, &elen)) {
        if (elen == 0)
            continue;
        if (!is_token(e, elen))
            return fail(h, 400, "bad Connection");
        if (ieq(e, elen, "close"))
            h->p.conn_close = true;
        else if (ieq(e, elen, "keep-alive"))
            h->p.conn_keep_alive = true;
        else if (ieq(e, elen, "upgrade"))
            h->p.conn_upgrade = true;
    }
    return HTTP1_OK;
}

/* Upgrade = #protocol (RFC 9110 7.8): whether it offers WebSocket and
 * whether it offers anything else (then it is no WebSocket upgrade: the
 * backend could pick the other, h2c say, which is never relayed). */
static void parse_upgrade(struct http1_head *h, const uint8_t *v, size_t len)
{
    const uint8_t *e;
    size_t elen, pos = 0;

    while (list_next(v, len, &pos, &e, &elen)) {
        if (ieq(e, elen, "websocket"))
            h->p.upgrade_ws = true;
        else if (elen > 0)
            h->p.upgrade_other = true;
    }
}

/* Whether the list s[0..len) has the element lit, case aside. */
static bool list_has(const uint8_t *s, size_t len, const char *lit)
{
    const uint8_t *e;
    size_t elen, pos = 0;

    while (list_next(s, len, &pos, &e, &elen))
        if (ieq(e, elen, lit))
            return true;
    return false;
}

/* What the proxy must know of one field, judged as it arrives. */
static enum http1_status field_meaning(struct http1_head *h, const uint8_t *buf,
                                       const struct http1_field *f)
{
    const uint8_t *name = buf + f->name.off, *v = buf + f->value.off;
    size_t nlen = f->name.len, vlen = f->value.len;
    bool request = h->p.role == ROLE_REQUEST;

    if ((ieq_dash(name, nlen, "content-length") || ieq_dash(name, nlen, "transfer-encoding")) &&
        memchr(name, '_', nlen) != NULL)
        return fail(h, 400, "framing field name spelled with '_'");
    if (ieq(name, nlen, "content-length"))
        return parse_content_length(h, v, vlen);
    if (ieq(name, nlen, "transfer-encoding"))
        return parse_transfer_encoding(h, v, vlen);
    if (ieq(name, nlen, "connection"))
        return parse_connection(h, v, vlen);
    if (ieq(name, nlen, "upgrade")) {
        parse_upgrade(h, v, vlen);
    } else if (request && ieq(name, nlen, "host")) {
        if (++h->p.hosts > 1)
            return fail(h, 400, "duplicate Host");
        if (!valid_host(v, vlen))
            return fail(h, 400, "bad Host");
        if (h->target_form == HTTP1_TARGET_ABSOLUTE) {
            if (!span_ieq(buf, h->host, f->value))
                return fail(h, 400, "Host differs from the request-target's authority");
        } else {
            h->host = f->value;
        }
    } else if (request && ieq(name, nlen, "expect")) {
        if (list_has(v, vlen, "100-continue"))
            h->expect_continue = true;
    }
    return HTTP1_OK;
}

/* name ":" OWS value OWS (RFC 9112 5). */
static enum http1_status parse_field(struct http1_head *h, const uint8_t *buf, const uint8_t *s,
                                     size_t len)
{
    struct http1_field *f;
    size_t i = 0, vs, ve;

    if (s[0] == ' ' || s[0] == '\t')
        return fail(h, 400, h->nfields ? "obs-fold" : "whitespace before the first field");
    while (i < len && is(s[i], C_TOKEN))
        i++;
    if (i < len && (s[i] == ' ' || s[i] == '\t'))
        return fail(h, 400, "whitespace between field name and colon");
    if (i == 0 || i == len || s[i] != ':')
        return fail(h, 400, "bad field name");
    for (vs = i + 1; vs < len && (s[vs] == ' ' || s[vs] == '\t'); vs++)
        ;
    for (ve = len; ve > vs && (s[ve - 1] == ' ' || s[ve - 1] == '\t'); ve--)
        ;
    for (size_t k = vs; k < ve; k++)
        if (!is(s[k], C_VALUE) && s[k] != ' ' && s[k] != '\t')
            return fail(h, 400, "bad byte in field value");
    if (h->nfields == h->max_fields)
        return fail(h, 431, "too many header fields");
    f = &h->fields[h->nfields++];
    f->name = span(buf, s, i);
    f->value = span(buf, s + vs, ve - vs);
    return field_meaning(h, buf, f);
}

/* The rules that need the whole request head, and its framing. */
static enum http1_status finish_request(struct http1_head *h)
{
    if (h->version == 11 && h->p.hosts == 0)
        return fail(h, 400, "missing Host");
    if (h->p.te) {
        if (h->version == 10)
            return fail(h, 400, "Transfer-Encoding in HTTP/1.0");
        if (h->p.cl)
            return fail(h, 400, "both Content-Length and Transfer-Encoding");
        if (!h->p.te_chunked)
            return fail(h, 400, "Transfer-Encoding not ending in chunked");
        if (h->p.te_other)
            return fail(h, 501, "transfer coding not supported");
        h->body = HTTP1_BODY_CHUNKED;
    } else if (h->p.cl) {
        h->body = HTTP1_BODY_LENGTH;
        h->has_content_length = true;
    }
    h->upgrade_websocket = h->p.upgrade_ws && !h->p.upgrade_other && h->p.conn_upgrade &&
                           h->method_id == HTTP1_METHOD_GET && h->version == 11;
    if (h->version == 10)
        h->expect_continue = false; /* RFC 9110 10.1.1: ignored in HTTP/1.0 */
    return HTTP1_OK;
}

/* The framing of a response (RFC 9112 6.3). */
static enum http1_status finish_response(struct http1_head *h)
{
    bool no_body =
        h->code < 200 || h->code == 204 || h->code == 304 || h->p.role == ROLE_RESPONSE_HEAD;

    if (h->p.te) {
        if (h->version == 10)
            return fail(h, 502, "Transfer-Encoding in HTTP/1.0");
        if (h->p.cl)
            return fail(h, 502, "both Content-Length and Transfer-Encoding");
        if (!h->p.te_chunked || h->p.te_other)
            return fail(h, 502, "Transfer-Encoding not exactly chunked");
    }
    h->has_content_length = h->p.cl && h->code >= 200 && h->code != 204;
    if (no_body)
        h->body = HTTP1_BODY_NONE;
    else if (h->p.te)
        h->body = HTTP1_BODY_CHUNKED;
    else if (h->p.cl)
        h->body = HTTP1_BODY_LENGTH;
    else
        h->body = HTTP1_BODY_CLOSE;
    h->upgrade_websocket =
        h->code == 101 && h->p.upgrade_ws && !h->p.upgrade_other && h->p.conn_upgrade;
    return HTTP1_OK;
}

enum http1_status http1_parse(struct http1_head *h, const uint8_t *buf, size_t n)
{
    size_t limit = n < HTTP1_HEAD_MAX ? n : HTTP1_HEAD_MAX;

    for (;;) {
        const uint8_t *lf, *s;
        size_t len, end;
        enum http1_status r;

        if (h->p.stage == ST_OK)
            return HTTP1_OK;
        if (h->p.stage == ST_ERROR)
            return HTTP1_ERROR;
        lf = h->p.scan < limit ? memchr(buf + h->p.scan, '\n', limit - h->p.scan) : NULL;
        if (lf == NULL) {
            h->p.scan = (uint32_t)(limit > h->p.scan ? limit : h->p.scan);
            if (n >= HTTP1_HEAD_MAX)
                return fail(h, 431, "header block too large");
            return HTTP1_NEED_MORE;
        }
        end = (size_t)(lf - buf);
        if (end == h->p.pos || buf[end - 1] != '\r')
            return fail(h, 400, "line not ending in CRLF");
        s = buf + h->p.pos;
        len = end - 1 - h->p.pos;
        h->p.pos = h->p.scan = (uint32_t)(end + 1);

        if (h->p.stage == ST_START) {
            if (len == 0 && h->p.role == ROLE_REQUEST)
                continue; /* an empty line before the request line (RFC 9112 2.2) */
            if (len == 0)
                return fail(h, 502, "empty status line");
            r = h->p.role == ROLE_REQUEST ? parse_request_line(h, buf, s, len)
                                          : parse_status_line(h, buf, s, len);
            h->p.stage = h->p.stage == ST_ERROR ? ST_ERROR : ST_FIELDS;
        } else if (len > 0) {
            r = parse_field(h, buf, s, len);
        } else {
            r = h->p.role == ROLE_REQUEST ? finish_request(h) : finish_response(h);
            if (r != HTTP1_OK)
                return r;
            h->keep_alive =
                h->version == 11 ? !h->p.conn_close : h->p.conn_keep_alive && !h->p.conn_close;
            if (h->body == HTTP1_BODY_CLOSE)
                h->keep_alive = false;
            h->len = end + 1;
            h->p.stage = ST_OK;
            return HTTP1_OK;
        }
        if (r != HTTP1_OK)
            return r;
    }
}

static void head_init(struct http1_head *h, struct http1_field *fields, size_t max_fields,
                      enum role role)
{
    memset(h, 0, sizeof(*h));
    h->fields = fields;
    h->max_fields = max_fields;
    h->p.role = (uint8_t)role;
}

void http1_request_init(struct http1_head *h, struct http1_field *fields, size_t max_fields)
{
    head_init(h, fields, max_fields, ROLE_REQUEST);
}

void http1_response_init(struct http1_head *h, struct http1_field *fields, size_t max_fields,
                         bool head_request)
{
    head_init(h, fields, max_fields, head_request ? ROLE_RESPONSE_HEAD : ROLE_RESPONSE);
}

/* Whether a Connection field of h lists the name buf[name]. */
static bool named_by_connection(const struct http1_head *h, const uint8_t *buf,
                                struct http1_span name)
{
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http1_field *f = &h->fields[i];
        const uint8_t *e;
        size_t elen, pos = 0;

        if (!ieq(buf + f->name.off, f->name.len, "connection"))
            continue;
        while (list_next(buf + f->value.off, f->value.len, &pos, &e, &elen))
            if (span_ieq(buf, span(buf, e, elen), name))
                return true;
    }
    return false;
}

bool http1_must_drop(const struct http1_head *h, const uint8_t *buf, size_t i)
{
    static const char *const always[] = {
        "connection",        "keep-alive",     "proxy-connection",
        "transfer-encoding", "content-length", "http2-settings",
    };
    static const char *const request_only[] = {
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "forwarded",
    };
    const struct http1_field *f = &h->fields[i];
    const uint8_t *name = buf + f->name.off;
    size_t nlen = f->name.len;

    for (size_t k = 0; k < MC_ARRAY_LEN(always); k++)
        if (ieq_dash(name, nlen, always[k]))
            return true;
    if (h->p.role == ROLE_REQUEST)
        for (size_t k = 0; k < MC_ARRAY_LEN(request_only); k++)
            if (ieq_dash(name, nlen, request_only[k]))
                return true;
    if (ieq(name, nlen, "te"))
        return !ieq(buf + f->value.off, f->value.len, "trailers");
    if (ieq(name, nlen, "upgrade"))
        return !h->upgrade_websocket;
    if (ieq(name, nlen, "host"))
        return false;
    return named_by_connection(h, buf, f->name);
}

enum chunk_state {
    CH_SIZE0,    /* the first hex digit of a chunk size */
    CH_SIZE,     /* more hex digits, or the end of the size */
    CH_BWS,      /* whitespace after the size: ';' must follow */
    CH_EXT,      /* a chunk extension, skipped up to CR */
    CH_SIZE_LF,  /* the LF ending the size line */
    CH_DATA,     /* chunk data */
    CH_DATA_CR,  /* the CRLF after chunk data */
    CH_DATA_LF,  /* its LF */
    CH_TR_START, /* the start of a trailer line, or the final CRLF */
    CH_TR_NAME,  /* a trailer field's name */
    CH_TR_VALUE, /* its value, up to CR */
    CH_TR_LF,    /* the LF ending a trailer line */
    CH_END_LF,   /* the LF of the final CRLF */
    CH_DONE,
    CH_ERROR,
};

void http1_chunked_init(struct http1_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

static enum http1_status chunk_fail(struct http1_chunked *c, const char *why)
{
    c->state = CH_ERROR;
    c->err = why;
    return HTTP1_ERROR;
}

static unsigned hex_value(uint8_t b)
{
    return b <= '9' ? (unsigned)(b - '0') : (unsigned)(lower(b) - 'a' + 10);
}

/*
 * Fields that frame a message have no meaning in a trailer section (RFC
 * 9110 6.5.1), but a recipient that merges trailers into the header
 * section would take them for framing: refused, '_' read as '-' again.
 */
static const char *const trailer_refused[] = {"content-length", "transfer-encoding"};

/* One byte of a trailer field's name, at c->line: which of trailer_refused
 * the name can still be (c->framing, one bit each). */
static void trailer_name_byte(struct http1_chunked *c, uint8_t b)
{
    for (unsigned k = 0; k < MC_ARRAY_LEN(trailer_refused); k++) {
        const char *lit = trailer_refused[k];

        if (c->line >= strlen(lit) ||
            (lower(b) != (uint8_t)lit[c->line] && !(b == '_' && lit[c->line] == '-')))
            c->framing &= (uint8_t) ~(1u << k);
    }
    c->line++;
}

/* One framing byte b in state c->state; OK to go on. */
static enum http1_status chunk_byte(struct http1_chunked *c, uint8_t b)
{
    bool in_line = c->state <= CH_SIZE_LF;
    bool in_trailer = c->state >= CH_TR_START && c->state <= CH_END_LF;

    if (in_line && ++c->line > HTTP1_CHUNK_LINE_MAX)
        return chunk_fail(c, "chunk size line too long");
    if (in_trailer && ++c->trailer > HTTP1_HEAD_MAX)
        return chunk_fail(c, "trailer section too large");
    switch (c->state) {
    case CH_SIZE0:
    case CH_SIZE:
        if (is(b, C_HEX)) {
            c->left = c->left << 4 | hex_value(b);
            if (c->left > HTTP1_LENGTH_MAX) /* checked per digit: no overflow */
                return chunk_fail(c, "chunk size too large");
            c->state = CH_SIZE;
            return HTTP1_OK;
        }
        if (c->state == CH_SIZE0)
            return chunk_fail(c, "bad chunk size");
        /* fall through */
    case CH_BWS:
        if (b == ' ' || b == '\t')
            c->state = CH_BWS;
        else if (b == ';')
            c->state = CH_EXT;
        else if (b == '\r' && c->state == CH_SIZE)
            c->state = CH_SIZE_LF;
        else
            return chunk_fail(c, "bad byte after chunk size");
        return HTTP1_OK;
    case CH_EXT:
        if (b == '\r')
            c->state = CH_SIZE_LF;
        else if (!is(b, C_VALUE) && b != ' ' && b != '\t')
            return chunk_fail(c, "bad byte in chunk extension");
        return HTTP1_OK;
    case CH_SIZE_LF:
        if (b != '\n')
            return chunk_fail(c, "chunk size line not ending in CRLF");
        c->line = 0;
        c->state = c->left ? CH_DATA : CH_TR_START;
        return HTTP1_OK;
    case CH_DATA_CR:
        if (b != '\r')
            return chunk_fail(c, "chunk data not followed by CRLF");
        c->state = CH_DATA_LF;
        return HTTP1_OK;
    case CH_DATA_LF:
        if (b != '\n')
            return chunk_fail(c, "chunk data not followed by CRLF");
        c->state = CH_SIZE0;
        return HTTP1_OK;
    case CH_TR_START:
        if (b == '\r') {
            c->state = CH_END_LF;
        } else if (is(b, C_TOKEN)) {
            c->state = CH_TR_NAME;
            c->line = 0;
            c->framing = (1u << MC_ARRAY_LEN(trailer_refused)) - 1;
            trailer_name_byte(c, b);
        } else {
            return chunk_fail(c, "bad trailer field");
        }
        return HTTP1_OK;
    case CH_TR_NAME:
        if (b == ':') {
            for (unsigned k = 0; k < MC_ARRAY_LEN(trailer_refused); k++)
                if ((c->framing & (1u << k)) && c->line == strlen(trailer_refused[k]))
                    return chunk_fail(c, "framing field in the trailer section");
            c->state = CH_TR_VALUE;
        } else if (is(b, C_TOKEN)) {
            trailer_name_byte(c, b);
        } else {
            return chunk_fail(c, "bad trailer field name");
        }
        return HTTP1_OK;
    case CH_TR_VALUE:
        if (b == '\r')
            c->state = CH_TR_LF;
        else if (!is(b, C_VALUE) && b != ' ' && b != '\t')
            return chunk_fail(c, "bad byte in trailer field value");
        return HTTP1_OK;
    case CH_TR_LF:
    case CH_END_LF:
        if (b != '\n')
            return chunk_fail(c, "trailer line not ending in CRLF");
        c->state = c->state == CH_TR_LF ? CH_TR_START : CH_DONE;
        return HTTP1_OK;
    default:
        return chunk_fail(c, "chunked decoder misused");
    }
}

enum http1_status http1_chunked_feed(struct http1_chunked *c, const uint8_t *buf, size_t n,
                                     size_t *used, size_t *data)
{
    size_t i = 0;

    *data = 0;
    while (i < n && c->state != CH_DONE && c->state != CH_ERROR) {
        if (c->state == CH_DATA) {
            size_t take = n - i < c->left ? n - i : (size_t)c->left;

            i += take;
            *data += take;
            c->left -= take;
            if (c->left == 0)
                c->state = CH_DATA_CR;
        } else if (chunk_byte(c, buf[i]) == HTTP1_OK) {
            i++;
        }
    }
    *used = i;
    if (c->state == CH_DONE)
        return HTTP1_OK;
    if (c->state == CH_ERROR)
        return HTTP1_ERROR;
    return HTTP1_NEED_MORE;
}

uint64_t http1_chunked_data_left(const struct http1_chunked *c)
{
    return c->state == CH_DATA ? c->left : 0;
}
