/*
 * HTTP/1.1 message framing for the L7 proxy (RFC 9110, RFC 9112): the
 * request and response head parsers, the chunked body decoder, and which
 * fields the proxy drops when it forwards a head. It faces a client's bytes
 * before anything else has judged them, so it is strict where a lenient
 * reading would let two parsers disagree on where a message ends (request
 * smuggling) or on which fields it carries (header injection).
 *
 * Both parsers are pure functions over the bytes received so far: no I/O,
 * no allocation, nothing read past n or past HTTP1_HEAD_MAX. They are
 * resumable: struct http1_head keeps the offset of the first line not yet
 * parsed and how far the search for its end got, so calling again with
 * more bytes (the same buffer, grown) costs only the new bytes; a peer
 * trickling a 64 KiB head one byte at a time does not make it quadratic.
 * A line is judged once its LF arrived, so a bad line is refused as soon
 * as it is complete, and every prefix of a valid head is NEED_MORE.
 * Fields are offsets into the buffer: the caller may move the buffer
 * between calls, but not change the bytes already passed.
 *
 * Accepted: a request line "method SP request-target SP HTTP/1.x" with
 * single spaces; origin-form ("/path?query"), absolute-form
 * ("http://authority/path", scheme http or https), and "*" for OPTIONS;
 * up to the caller's field count of "name: value" lines, values trimmed
 * of surrounding spaces and tabs, obs-text (bytes >= 0x80) allowed in
 * values only. Leading empty lines before a request line are skipped, as
 * RFC 9112 2.2 recommends; they count towards the head's length and cap.
 *
 * Refused (HTTP1_ERROR, with the status the proxy answers and a reason),
 * with 400 unless said otherwise:
 * - Line ends: every line must end in CRLF. A bare LF is refused rather
 *   than taken as a line end (RFC 9112 2.2 allows either; HAProxy and
 *   nginx take it): no client that matters sends one, and a proxy that
 *   accepts what its backend may read otherwise creates the disagreement
 *   smuggling lives on. A bare CR anywhere is refused (2.2: a proxy must
 *   not pass it on). obs-fold and whitespace before the first field are
 *   refused (5.2, 2.2) rather than rewritten.
 * - Grammar: NUL and other CTLs in names or values; whitespace between a
 *   name and its colon (5.1); a name or method with a non-token byte; a
 *   request-target with a CTL, SP, '#' or a byte over 0x7e; an
 *   origin-form target not starting with '/'; an absolute-form one with
 *   another scheme, userinfo or a bad authority; an authority-form one;
 *   "*" with a method other than OPTIONS; a malformed version ("http/1.1"
 *   is malformed: case matters); a Connection element that is no token.
 * - Host (RFC 9112 3.2): none in an HTTP/1.1 request, more than one, an
 *   empty or malformed one (a reg-name or a bracketed IP literal, then
 *   optionally ':' and a port of 1 to 5 digits). With an absolute-form
 *   target, whose authority wins (3.2.2), a Host present must equal it
 *   (case aside), so the proxy and a backend routing by Host never see
 *   different hosts.
 * - Content-Length: anything but digits (no sign, no space inside), an
 *   empty list element, a value over HTTP1_LENGTH_MAX, or values that
 *   differ, in one list ("5, 6") or in several fields. Identical values
 *   are collapsed (RFC 9110 8.6 allows it); the proxy writes one
 *   Content-Length of its own, so no duplicate is forwarded.
 * - Transfer-Encoding: with Content-Length (RFC 9112 6.3 item 3 allows
 *   refusing, and refusing is what rules out CL.TE and TE.CL); in an
 *   HTTP/1.0 message (6.1: its framing is faulty); a final coding other
 *   than chunked ("xchunked", "chunked, identity"), chunked twice, an
 *   empty element, a coding with parameters. Other codings before a
 *   final chunked ("gzip, chunked") are well formed but answered 501:
 *   the proxy writes its own "Transfer-Encoding: chunked" and would lose
 *   them.
 * - Content_Length and Transfer_Encoding (any case): backends that read
 *   field names as CGI-style variables take them for the real ones.
 * - CONNECT: 501 (a reverse proxy opens no tunnels on request).
 * - 431: more fields than the caller's array holds, or a head (start
 *   line through the empty line) over HTTP1_HEAD_MAX bytes, decided with
 *   no byte past the cap read.
 * - 505: a well-formed version other than HTTP/1.0 and HTTP/1.1.
 *
 * A response is held to the same grammar and to its own rules: status
 * code 100..599, an optional reason of visible bytes, spaces and tabs, no
 * leading empty lines, a Transfer-Encoding only as exactly "chunked" (the
 * proxy could not re-frame another coding: 6.3 would read it to close).
 * Every response error answers 502: the backend's message cannot be
 * relayed, and its connection must be closed.
 */
#ifndef MC_HTTP1_H
#define MC_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest request or response head, and largest trailer section. */
#define HTTP1_HEAD_MAX (64 * 1024)

/*
 * Largest Content-Length and chunk size, 2^52 - 1 (4 PiB): beyond 2^53 a
 * backend whose numbers are doubles (JavaScript) reads a length inexactly,
 * and an inexact length is a different end of message.
 */
#define HTTP1_LENGTH_MAX ((UINT64_C(1) << 52) - 1)

/* Largest chunk-size line, extensions and CRLF included. */
#define HTTP1_CHUNK_LINE_MAX 4096

enum http1_status {
    HTTP1_NEED_MORE = 0, /* valid so far: call again with more bytes */
    HTTP1_OK = 1,        /* a whole valid head (or chunked body) */
    HTTP1_ERROR = -1,    /* invalid whatever follows: see status and err */
};

/* How the message's body is delimited. */
enum http1_body {
    HTTP1_BODY_NONE,    /* no body: the next message starts at buf + len */
    HTTP1_BODY_LENGTH,  /* content_length bytes (possibly 0) */
    HTTP1_BODY_CHUNKED, /* chunked: run struct http1_chunked over it */
    HTTP1_BODY_CLOSE,   /* a response read until the backend closes */
};

enum http1_method {
    HTTP1_METHOD_OTHER, /* a valid token the parser gives no meaning to */
    HTTP1_METHOD_GET,
    HTTP1_METHOD_HEAD,
    HTTP1_METHOD_POST,
    HTTP1_METHOD_PUT,
    HTTP1_METHOD_DELETE,
    HTTP1_METHOD_OPTIONS,
    HTTP1_METHOD_TRACE,
    HTTP1_METHOD_PATCH,
};

enum http1_target {
    HTTP1_TARGET_ORIGIN,   /* "/path?query" */
    HTTP1_TARGET_ABSOLUTE, /* "http://authority/path?query" */
    HTTP1_TARGET_ASTERISK, /* "*" (OPTIONS) */
};

/* A span of the parsed buffer: buf + off, len bytes. */
struct http1_span {
    uint32_t off, len;
};

struct http1_field {
    struct http1_span name, value; /* value without surrounding whitespace */
};

struct http1_head {
    struct http1_field *fields; /* the caller's array, max_fields long */
    size_t max_fields;

    /* On HTTP1_OK: */
    size_t len;       /* bytes of the head, empty line included: the body starts at buf + len */
    size_t nfields;   /* fields[0..nfields) in order of arrival */
    unsigned version; /* 10 or 11 */

    /* Request only. */
    enum http1_method method_id;
    enum http1_target target_form;
    struct http1_span method, target;
    struct http1_span path; /* origin- and absolute-form: the target without scheme and
                               authority; empty means "/", and one not starting with '/'
                               (only "?query") needs a '/' before it */
    struct http1_span host; /* the absolute-form authority, else the Host value; len 0
                               only in an HTTP/1.0 request without Host */
    bool expect_continue;   /* HTTP/1.1 with "Expect: 100-continue" */

    /* Response only. */
    unsigned code;            /* 100..599 */
    struct http1_span reason; /* possibly empty */

    enum http1_body body;
    uint64_t content_length;
    bool has_content_length; /* a Content-Length to write when forwarding (also for HEAD
                                and 304, where it frames nothing; never for 1xx or 204) */
    bool keep_alive;         /* the connection may carry another message after this one */
    bool upgrade_websocket;  /* request: HTTP/1.1 GET with "Upgrade: websocket" (and no
                                other protocol) and "Connection: upgrade"; response: the
                                same fields on a 101 */

    /* On HTTP1_ERROR: */
    int status;      /* to answer: 400, 431, 501, 505; 502 for any response error */
    const char *err; /* a short static reason, for the log */

    /* Parse state: set by http1_*_init, read by nothing else. */
    struct {
        uint32_t pos;  /* first byte of the line not yet parsed */
        uint32_t scan; /* how far the search for that line's LF got */
        uint8_t stage, role;
        bool te, te_chunked, te_other, cl, conn_close, conn_keep_alive, conn_upgrade, upgrade_ws,
            upgrade_other;
        uint32_t hosts;
    } p;
};

/* Prepares h for a request head, with fields[0..max_fields) for its fields. */
void http1_request_init(struct http1_head *h, struct http1_field *fields, size_t max_fields);

/* Prepares h for a response head; head_request tells that it answers a HEAD
 * request, so that it has no body whatever it says. */
void http1_response_init(struct http1_head *h, struct http1_field *fields, size_t max_fields,
                         bool head_request);

/*
 * Parses the head at buf[0..n), the bytes received so far, continuing from
 * the previous call on h. Once it returned OK or ERROR, it returns the same
 * again. After OK the outputs above are valid; after a 1xx response other
 * than 101, the final response follows at buf + len (init h again).
 */
enum http1_status http1_parse(struct http1_head *h, const uint8_t *buf, size_t n);

/*
 * Whether field i of the parsed head h (over buf) must not be forwarded:
 * - hop-by-hop fields (RFC 9110 7.6.1): Connection, every field it names
 *   (Host excepted: a client cannot make the proxy drop it), Keep-Alive,
 *   Proxy-Connection, TE unless its value is exactly "trailers", Upgrade
 *   unless the head is a WebSocket upgrade being relayed, HTTP2-Settings
 *   (h2c upgrades are never relayed);
 * - the framing fields Content-Length and Transfer-Encoding: the proxy
 *   writes its own from has_content_length/content_length and body;
 * - in a request, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and
 *   Forwarded: the proxy writes its own, a client's are not trusted.
 * The proxy writes its own Connection field as well. The fixed names above
 * are matched with '_' read as '-' (X_Forwarded_For is dropped too), for
 * the same CGI-style backends; nginx drops every name with '_' for this.
 */
bool http1_must_drop(const struct http1_head *h, const uint8_t *buf, size_t i);

/*
 * Chunked body decoder (RFC 9112 7.1), incremental: fed the body's bytes
 * as they arrive, in any split, it tells how many belong to the body and
 * how many of those are chunk data, so the proxy forwards them as they are
 * and knows where the message ends (after the last chunk, the trailer
 * section and its final CRLF). Strict as the head parser: chunk sizes are
 * hex digits, at most HTTP1_LENGTH_MAX; a size line (extensions included) is at
 * most HTTP1_CHUNK_LINE_MAX bytes, extensions are skipped but must be
 * visible bytes, spaces or tabs; every line ends in CRLF; trailer fields
 * follow the field grammar, Content-Length and Transfer-Encoding (in any
 * spelling the head parser refuses) are refused among them, since a
 * recipient merging trailers into the head would frame by them, and the
 * trailer section is at most
 * HTTP1_HEAD_MAX bytes, counted on its own (the head was forwarded and
 * freed by then, so the cap only stops an endless body, it buffers
 * nothing).
 */
struct http1_chunked {
    uint64_t left;    /* data bytes left in the current chunk */
    uint32_t line;    /* bytes of the size line, or of a trailer field's name, so far */
    uint32_t trailer; /* bytes of the trailer section so far */
    uint8_t state;
    uint8_t framing; /* which framing names the trailer name so far can still be */
    const char *err; /* on HTTP1_ERROR: a short static reason */
};

void http1_chunked_init(struct http1_chunked *c);

/*
 * Consumes body bytes buf[0..n). *used is set to how many belong to the
 * body (n on NEED_MORE; on OK the next message starts at buf + *used; on
 * ERROR the bytes before the bad one) and *data to how many of those are
 * chunk data. Once it returned OK or ERROR it returns the same, using 0.
 */
enum http1_status http1_chunked_feed(struct http1_chunked *c, const uint8_t *buf, size_t n,
                                     size_t *used, size_t *data);

/* How many of the next body bytes are chunk data (0 while framing comes):
 * a proxy that re-frames the body (HTTP/2 DATA) takes those as they are
 * and feeds the framing between them byte by byte. */
uint64_t http1_chunked_data_left(const struct http1_chunked *c);

#endif
