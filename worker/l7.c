/*
 * An L7 route: the connection, routed by conn.c on the SNI of the
 * ClientHello it already read, is terminated with the route's
 * certificate and its HTTP/1.1 requests are proxied to the backend.
 *
 *   TLS      SSL_accept over the bytes conn.c buffered (a memory BIO
 *            that serves them first, then the socket), non-blocking,
 *            inside handshake_timeout
 *   REQUEST  a head parsed strictly (http1.c), checked (Host belongs to
 *            the route, else 421; policies, else 403), rewritten
 *            (hop-by-hop fields dropped, X-Forwarded-For / X-Real-IP /
 *            X-Forwarded-Proto set) and sent with its body, streamed
 *   RESPONSE a head within response_timeout (else 504), rewritten the
 *            same way, its body streamed; then the next request on the
 *            same connection (keep-alive), the backend connection kept
 *            for it when both sides allow
 *   TUNNEL   after a 101 to a WebSocket upgrade, bytes both ways as is
 *
 * Four buffers per connection, each allocated on first use and bounded
 * (L7_BUF_MAX): client plaintext in, to the backend, from the backend,
 * to the client. A full buffer stops reading its source, so a slow
 * reader on either side holds the other back and nothing buffers a body.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "gen.h"
#include "hostname.h"
#include "http1.h"
#include "log.h"
#include "proxy_proto.h"
#include "route_l7.h"

#define L7_BUF_FIRST (16 * 1024)
#define L7_BUF_MAX   (HTTP1_HEAD_MAX + 4096) /* a whole head, and room to rewrite it */
#define L7_FIELDS    100                     /* header fields per head; more -> 431 */

struct l7_buf {
    uint8_t *p;
    size_t len, cap;
    size_t off; /* output buffers: bytes already sent */
};

enum l7_req { RQ_HEAD, RQ_BODY, RQ_DONE };
enum l7_resp { RS_IDLE, RS_HEAD, RS_BODY, RS_DONE };

struct l7 {
    SSL *ssl;
    bool preface; /* the read BIO still serves the buffered ClientHello */
    bool handshaken;
    bool want_write; /* OpenSSL waits for the client socket to be writable */
    bool client_eof, backend_eof, backend_shut;
    SSL *bssl;        /* backend_tls: the backend connection's TLS */
    bool bhandshaken; /* ... and its handshake is done */
    bool connecting;  /* backend connect() in progress */
    bool close_after; /* close once everything for the client is written */
    bool tunnel;      /* after a WebSocket 101: bytes both ways as they are */
    bool keep;        /* this exchange leaves both connections reusable */
    struct l7_buf in, bout, bin, cout;
    struct http1_head req, resp;
    struct http1_field req_fields[L7_FIELDS], resp_fields[L7_FIELDS];
    struct http1_chunked req_chunked, resp_chunked;
    enum l7_req rq;
    enum l7_resp rs;
    uint64_t req_left, resp_left;
    /* for the request's access line (the head's bytes are gone by then) */
    char method[16], host[MC_HOSTNAME_MAX + 8], path[256];
    unsigned status;
    uint64_t req_bytes, resp_bytes, t_req, t_sent, t_resp;
};

static const char *l7_reason(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Error";
}

/* Room for at least want more bytes, growing up to L7_BUF_MAX; false when there is none. */
static bool l7_buf_room(struct l7_buf *b, size_t want)
{
    if (b->cap - b->len >= want)
        return true;
    size_t cap = b->cap ? b->cap : L7_BUF_FIRST;
    while (cap - b->len < want && cap < L7_BUF_MAX)
        cap = MC_MIN(cap * 2, (size_t)L7_BUF_MAX);
    if (cap - b->len < want || cap == b->cap)
        return b->cap - b->len >= want;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static void l7_buf_consume(struct l7_buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static bool l7_buf_put(struct l7_buf *b, const void *p, size_t n)
{
    if (!l7_buf_room(b, n))
        return false;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return true;
}

static bool l7_buf_printf(struct l7_buf *b, const char *fmt, ...) MC_PRINTF(2, 3);
static bool l7_buf_printf(struct l7_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof(tmp) && l7_buf_put(b, tmp, (size_t)n);
}

static void l7_buf_free(struct l7_buf *b)
{
    mc_free(&b->p);
    b->len = b->cap = b->off = 0;
}

void l7_free(struct conn *c)
{
    struct l7 *l = c->l7;

    if (l == NULL)
        return;
    SSL_free(l->ssl);
    SSL_free(l->bssl);
    l7_buf_free(&l->in);
    l7_buf_free(&l->bout);
    l7_buf_free(&l->bin);
    l7_buf_free(&l->cout);
    mc_free(&c->l7);
}

static void l7_copy_span(char *dst, size_t size, const uint8_t *buf, struct http1_span s)
{
    size_t n = MC_MIN((size_t)s.len, size - 1);
    memcpy(dst, buf + s.off, n);
    dst[n] = '\0';
}

/* One access line per request (the connection's own line comes at its close). */
static void l7_log_request(struct conn *c)
{
    struct l7 *l = c->l7;
    char client[ADDR_STRLEN];
    struct log_rec r;
    uint64_t now = loop_now(c->w->loop);

    if (l->status == 0 || !log_enabled(LOGL_INFO))
        return;
    log_rec_begin(&r, LOGL_INFO, "request");
    log_rec_str(&r, "listener", c->l->addr);
    log_rec_str(&r, "client", addr_format(&c->client, client, sizeof(client)));
    log_rec_str(&r, "route", c->route->hostname);
    log_rec_str(&r, "backend", c->route->backend);
    log_rec_str(&r, "method", l->method);
    log_rec_str(&r, "host", l->host);
    log_rec_str(&r, "path", l->path);
    log_rec_u64(&r, "status", l->status);
    log_rec_u64(&r, "bytes_in", l->req_bytes);
    log_rec_u64(&r, "bytes_out", l->resp_bytes);
    if (l->t_resp != 0)
        log_rec_u64(&r, "upstream_ms", l->t_resp - l->t_sent);
    log_rec_u64(&r, "duration_ms", now - l->t_req);
    log_rec_end(&r);
    l->status = 0;
}

static void l7_backend_close(struct conn *c)
{
    struct l7 *l = c->l7;

    if (c->bev.fd >= 0) {
        close(c->bev.fd); /* also leaves epoll */
        c->bev.fd = -1;
    }
    SSL_free(l->bssl);
    l->bssl = NULL;
    l->bhandshaken = false;
    l->connecting = false;
    l->backend_eof = l->backend_shut = false;
    l->bin.len = 0;
    l->bout.len = l->bout.off = 0;
}

/*
 * Answers the request with a small error of our own and closes the
 * connection once it is written: what the client sent next cannot be
 * trusted to start where we think it does.
 */
static void l7_answer(struct conn *c, unsigned status)
{
    struct l7 *l = c->l7;
    const char *reason = l7_reason(status);

    l->cout.len = l->cout.off = 0;
    l7_buf_printf(&l->cout,
                  "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n%u %s\n",
                  status, reason, strlen(reason) + 5, status, reason);
    l->status = status;
    l->resp_bytes = l->cout.len;
    l->rq = RQ_DONE;
    l->rs = RS_DONE;
    l->close_after = true;
    l->tunnel = false;
    l7_backend_close(c);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

/* Whether the request's Host (or absolute-form authority) is a name of the SNI-chosen route. */
static bool l7_host_ok(struct conn *c, const uint8_t *buf, struct http1_span hs)
{
    char name[MC_HOSTNAME_MAX + 1];
    const char *pattern = c->route->hostname;
    const char *h = (const char *)buf + hs.off;
    size_t len = hs.len;

    if (len == 0 || h[0] == '[')
        return false; /* an IP literal names no route */
    const char *colon = memchr(h, ':', len);
    if (colon != NULL)
        len = (size_t)(colon - h);
    int n = hostname_normalize(h, len, name);
    if (n < 0)
        return false;
    if (pattern[0] == '*') {
        const char *dot = strchr(name, '.');
        if (dot == NULL || dot == name || strcmp(dot + 1, pattern + 2) != 0)
            return false;
    } else if (strcmp(name, pattern) != 0) {
        return false;
    }
    /* a name the table routes elsewhere (an exact route inside this wildcard) is not ours */
    const struct route_table *t = c->w->cur->listeners[c->l->id].routes;
    const struct route *r = t ? route_table_lookup(t, name, (size_t)n) : NULL;
    return r == NULL || strcmp(r->hostname, pattern) == 0;
}

static bool l7_field_is(const uint8_t *buf, const struct http1_field *f, const char *name)
{
    return f->name.len == strlen(name) &&
           strncasecmp((const char *)buf + f->name.off, name, f->name.len) == 0;
}

/* The route's policies, in order: true when one refuses the request. */
static bool l7_policy_refuses(const struct conn *c, const uint8_t *buf)
{
    const struct route_l7 *rl = c->route->l7;
    const struct http1_head *h = &c->l7->req;

    for (unsigned i = 0; i < rl->n_policies; i++) {
        const struct route_policy *p = &rl->policies[i];
        bool found = false;
        for (size_t j = 0; j < h->nfields && !found; j++) {
            const struct http1_field *f = &h->fields[j];
            if (p->type == POLICY_REQUIRE_HEADER)
                found = l7_field_is(buf, f, p->value);
            else if (l7_field_is(buf, f, "User-Agent"))
                found = memmem(buf + f->value.off, f->value.len, p->value, p->len) != NULL;
        }
        if (p->type == POLICY_REQUIRE_HEADER ? !found : found)
            return true;
    }
    return false;
}

/* The fields of h over buf that are forwarded, as "name: value" lines into out. */
static bool l7_put_fields(struct l7_buf *out, const struct http1_head *h, const uint8_t *buf)
{
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http1_field *f = &h->fields[i];
        if (http1_must_drop(h, buf, i))
            continue;
        if (!l7_buf_put(out, buf + f->name.off, f->name.len) || !l7_buf_put(out, ": ", 2) ||
            !l7_buf_put(out, buf + f->value.off, f->value.len) || !l7_buf_put(out, "\r\n", 2))
            return false;
    }
    return true;
}

static bool l7_put_framing(struct l7_buf *out, const struct http1_head *h)
{
    if (h->body == HTTP1_BODY_CHUNKED)
        return l7_buf_printf(out, "Transfer-Encoding: chunked\r\n");
    if (h->has_content_length)
        return l7_buf_printf(out, "Content-Length: %llu\r\n",
                             (unsigned long long)h->content_length);
    return true;
}

/* The request head as the backend gets it, into bout. */
static bool l7_put_request(struct conn *c, const uint8_t *buf)
{
    struct l7 *l = c->l7;
    const struct http1_head *h = &l->req;
    struct l7_buf *out = &l->bout;
    char ip[ADDR_STRLEN];

    addr_format_ip(&c->client, ip, sizeof(ip));
    if (!l7_buf_put(out, buf + h->method.off, h->method.len) || !l7_buf_put(out, " ", 1))
        return false;
    if (h->target_form == HTTP1_TARGET_ASTERISK) {
        if (!l7_buf_put(out, "*", 1))
            return false;
    } else if (h->path.len == 0 || buf[h->path.off] != '/') {
        /* absolute-form without a path, or only "?query": origin-form needs the '/' */
        if (!l7_buf_put(out, "/", 1) || !l7_buf_put(out, buf + h->path.off, h->path.len))
            return false;
    } else if (!l7_buf_put(out, buf + h->path.off, h->path.len)) {
        return false;
    }
    if (!l7_buf_printf(out, " HTTP/1.1\r\n"))
        return false;
    /* an absolute-form target's authority is the Host the backend must see */
    if (h->target_form == HTTP1_TARGET_ABSOLUTE || h->host.len == 0) {
        const char *host = h->host.len ? NULL : c->sni;
        if (!l7_buf_put(out, "Host: ", 6) ||
            !(host ? l7_buf_put(out, host, strlen(host))
                   : l7_buf_put(out, buf + h->host.off, h->host.len)) ||
            !l7_buf_put(out, "\r\n", 2))
            return false;
    }
    for (size_t i = 0; i < h->nfields; i++) {
        if (h->target_form == HTTP1_TARGET_ABSOLUTE && l7_field_is(buf, &h->fields[i], "Host"))
            continue;
        const struct http1_field *f = &h->fields[i];
        if (http1_must_drop(h, buf, i))
            continue;
        if (!l7_buf_put(out, buf + f->name.off, f->name.len) || !l7_buf_put(out, ": ", 2) ||
            !l7_buf_put(out, buf + f->value.off, f->value.len) || !l7_buf_put(out, "\r\n", 2))
            return false;
    }
    return l7_put_framing(out, h) &&
           l7_buf_printf(out,
                         "X-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: https\r\n", ip,
                         ip) &&
           l7_buf_printf(out, "Connection: %s\r\n\r\n",
                         h->upgrade_websocket ? "upgrade" : "keep-alive");
}

/* send_proxy_protocol: the v2 header for this client into hdr; its length, or 0. */
static size_t l7_proxy_header(struct conn *c, uint8_t hdr[PROXY_PROTO_V2_HDR + 36])
{
    struct mc_addr local = {.len = sizeof(local.ss)};

    if (c->proxied)
        local = c->local;
    else if (getsockname(c->cev.fd, (struct sockaddr *)&local.ss, &local.len) < 0)
        return 0;
    return proxy_proto_build_v2(hdr, PROXY_PROTO_V2_HDR + 36, &c->client, &local);
}

/* A plaintext backend: the header goes in front of everything else to send. */
static bool l7_put_proxy_header(struct conn *c)
{
    struct l7_buf *out = &c->l7->bout;
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36];
    size_t n = l7_proxy_header(c, hdr);

    if (n == 0 || !l7_buf_room(out, n))
        return false;
    memmove(out->p + out->off + n, out->p + out->off, out->len - out->off);
    memcpy(out->p + out->off, hdr, n);
    out->len += n;
    return true;
}

/* A TLS backend: the header goes before the handshake, on a socket just
 * connected, which takes 52 bytes whole. */
static bool l7_send_proxy_header(struct conn *c)
{
    uint8_t hdr[PROXY_PROTO_V2_HDR + 36];
    size_t n = l7_proxy_header(c, hdr);

    return n > 0 && send(c->bev.fd, hdr, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

static void l7_on_backend(struct ev *ev, uint32_t events);

/* A backend connection for the request, unless the last one is still good. */
static bool l7_connect(struct conn *c)
{
    struct l7 *l = c->l7;
    const struct mc_addr *to = &c->route->backend_addr;
    int one = 1;

    if (c->bev.fd >= 0)
        return true;
    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = (struct ev){.fd = fd, .cb = l7_on_backend, .data = c};
    c->t_connect_us = shm_clock_us();
    if (connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0 && errno != EINPROGRESS) {
        log_errno(LOGL_DEBUG, errno, "connect() to %s", c->route->backend);
        return false;
    }
    l->connecting = true;
    if (loop_add(c->w->loop, &c->bev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        return false;
    return !c->route->send_proxy_protocol || c->route->backend_tls || l7_put_proxy_header(c);
}

/* A complete request head: check it, then pass it on. */
static void l7_request(struct conn *c)
{
    struct l7 *l = c->l7;
    struct http1_head *h = &l->req;
    const uint8_t *buf = l->in.p;

    l->t_req = loop_now(c->w->loop);
    l->req_bytes = l->resp_bytes = 0;
    l->t_resp = 0;
    l7_copy_span(l->method, sizeof(l->method), buf, h->method);
    l7_copy_span(l->host, sizeof(l->host), buf, h->host);
    /* the path without its query: queries carry secrets more often than paths */
    struct http1_span path = h->path;
    const uint8_t *q = memchr(buf + path.off, '?', path.len);
    if (q != NULL)
        path.len = (uint32_t)(q - (buf + path.off));
    l7_copy_span(l->path, sizeof(l->path), buf, path);
    if (l->path[0] == '\0')
        snprintf(l->path, sizeof(l->path), "/");

    if (!(h->host.len == 0 ? c->sni != NULL : l7_host_ok(c, buf, h->host))) {
        l7_answer(c, 421);
        return;
    }
    if (c->route->l7->n_policies > 0 && l7_policy_refuses(c, buf)) {
        l7_answer(c, 403);
        return;
    }
    if (!l7_put_request(c, buf) || !l7_connect(c)) {
        l7_answer(c, 502);
        return;
    }
    http1_response_init(&l->resp, l->resp_fields, L7_FIELDS, h->method_id == HTTP1_METHOD_HEAD);
    l->req_left = h->content_length;
    http1_chunked_init(&l->req_chunked);
    l->rq = h->body == HTTP1_BODY_NONE || (h->body == HTTP1_BODY_LENGTH && h->content_length == 0)
                ? RQ_DONE
                : RQ_BODY;
    l->rs = RS_HEAD;
    l->req_bytes = h->len;
    l7_buf_consume(&l->in, h->len);
    l->t_sent = loop_now(c->w->loop);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.response_timeout_ms);
}

/* Client bytes into the request: the head first, then its body as framed. */
static bool l7_up_process(struct conn *c)
{
    struct l7 *l = c->l7;
    size_t n, used, data;

    if (l->in.len == 0 || l->close_after)
        return false;
    if (l->tunnel) {
        n = l7_buf_room(&l->bout, 1) ? MC_MIN(l->in.len, l->bout.cap - l->bout.len) : 0;
        l7_buf_put(&l->bout, l->in.p, n);
        l7_buf_consume(&l->in, n);
        return n > 0;
    }
    switch (l->rq) {
    case RQ_HEAD:
        if (l->rs != RS_IDLE)
            return false; /* a pipelined request waits for the answer before it */
        switch (http1_parse(&l->req, l->in.p, l->in.len)) {
        case HTTP1_NEED_MORE:
            /* room to read the rest of the head; the parser refuses one over the cap */
            l7_buf_room(&l->in, MC_MIN((size_t)HTTP1_HEAD_MAX + 1 - l->in.len, L7_BUF_FIRST));
            return false;
        case HTTP1_ERROR:
            log_debug("refused request head from %s: %s", c->l->addr, l->req.err);
            snprintf(l->method, sizeof(l->method), "-");
            snprintf(l->path, sizeof(l->path), "-");
            l->t_req = loop_now(c->w->loop);
            l7_answer(c, (unsigned)l->req.status);
            return true;
        case HTTP1_OK:
            l7_request(c);
            return true;
        }
        return false;
    case RQ_BODY:
        if (!l7_buf_room(&l->bout, 1))
            return false;
        n = MC_MIN(l->in.len, l->bout.cap - l->bout.len);
        if (l->req.body == HTTP1_BODY_LENGTH) {
            n = (size_t)MC_MIN((uint64_t)n, l->req_left);
            l->req_left -= n;
            if (l->req_left == 0)
                l->rq = RQ_DONE;
        } else {
            enum http1_status st = http1_chunked_feed(&l->req_chunked, l->in.p, n, &used, &data);
            if (st == HTTP1_ERROR) {
                log_debug("bad chunked request body: %s", l->req_chunked.err);
                if (l->rs == RS_HEAD)
                    l7_answer(c, 400);
                else
                    l->close_after = true;
                return true;
            }
            n = used;
            if (st == HTTP1_OK)
                l->rq = RQ_DONE;
        }
        l7_buf_put(&l->bout, l->in.p, n);
        l7_buf_consume(&l->in, n);
        l->req_bytes += n;
        return n > 0;
    case RQ_DONE:
        return false;
    }
    return false;
}

/* The response's head, rewritten for the client, into cout. */
static bool l7_put_response(struct conn *c)
{
    struct l7 *l = c->l7;
    const struct http1_head *h = &l->resp;
    const uint8_t *buf = l->bin.p;

    if (!l7_buf_printf(&l->cout, "HTTP/1.1 %u ", h->code) ||
        !l7_buf_put(&l->cout, buf + h->reason.off, h->reason.len) ||
        !l7_buf_put(&l->cout, "\r\n", 2) || !l7_put_fields(&l->cout, h, buf))
        return false;
    if (h->code == 101)
        return l7_buf_printf(&l->cout, "Connection: upgrade\r\n\r\n");
    if (h->code < 200)
        return l7_buf_put(&l->cout, "\r\n", 2);
    return l7_put_framing(&l->cout, h) &&
           l7_buf_printf(&l->cout, "%s\r\n",
                         l->keep ? (l->req.version == 10 ? "Connection: keep-alive\r\n" : "")
                                 : "Connection: close\r\n");
}

/* A complete response head from the backend. */
static void l7_response(struct conn *c)
{
    struct l7 *l = c->l7;
    struct http1_head *h = &l->resp;

    if (h->code == 101) {
        if (!l->req.upgrade_websocket || !h->upgrade_websocket) {
            l7_answer(c, 502);
            return;
        }
        l->tunnel = true;
    }
    if (l->t_resp == 0)
        l->t_resp = loop_now(c->w->loop);
    /* a read-to-close body ends the client connection too; so does a request body not all sent */
    l->keep = l->req.keep_alive && h->keep_alive && h->body != HTTP1_BODY_CLOSE;
    size_t before = l->cout.len;
    if (!l7_put_response(c)) {
        l7_answer(c, 502);
        return;
    }
    l->resp_bytes += l->cout.len - before;
    l7_buf_consume(&l->bin, h->len);
    if (h->code < 200 && h->code != 101) {
        /* 100 Continue and friends: passed on, the final response follows */
        http1_response_init(&l->resp, l->resp_fields, L7_FIELDS,
                            l->req.method_id == HTTP1_METHOD_HEAD);
        return;
    }
    l->status = h->code;
    l->resp_left = h->content_length;
    http1_chunked_init(&l->resp_chunked);
    l->rs = h->body == HTTP1_BODY_NONE || h->code == 101 ||
                    (h->body == HTTP1_BODY_LENGTH && h->content_length == 0)
                ? RS_DONE
                : RS_BODY;
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

/* Backend bytes into the response: the head first, then its body as framed. */
static bool l7_down_process(struct conn *c)
{
    struct l7 *l = c->l7;
    size_t n, used, data;

    if (l->tunnel || l->rs == RS_BODY) {
        if (l->bin.len == 0 || !l7_buf_room(&l->cout, 1))
            return false;
        n = MC_MIN(l->bin.len, l->cout.cap - l->cout.len);
        if (!l->tunnel && l->resp.body == HTTP1_BODY_LENGTH) {
            n = (size_t)MC_MIN((uint64_t)n, l->resp_left);
            l->resp_left -= n;
            if (l->resp_left == 0)
                l->rs = RS_DONE;
        } else if (!l->tunnel && l->resp.body == HTTP1_BODY_CHUNKED) {
            enum http1_status st = http1_chunked_feed(&l->resp_chunked, l->bin.p, n, &used, &data);
            if (st == HTTP1_ERROR) {
                log_debug("bad chunked response from %s: %s", c->route->backend,
                          l->resp_chunked.err);
                l->close_after = true;
                l7_backend_close(c);
                return true;
            }
            n = used;
            if (st == HTTP1_OK)
                l->rs = RS_DONE;
        }
        l7_buf_put(&l->cout, l->bin.p, n);
        l7_buf_consume(&l->bin, n);
        l->resp_bytes += n;
        return n > 0;
    }
    if (l->rs != RS_HEAD) {
        if (l->bin.len > 0) /* nothing was asked: a backend that talks anyway is not reused */
            l7_backend_close(c);
        return false;
    }
    if (l->bin.len == 0)
        return false;
    switch (http1_parse(&l->resp, l->bin.p, l->bin.len)) {
    case HTTP1_NEED_MORE:
        l7_buf_room(&l->bin, MC_MIN((size_t)HTTP1_HEAD_MAX + 1 - l->bin.len, L7_BUF_FIRST));
        return false;
    case HTTP1_ERROR:
        log_debug("bad response head from %s: %s", c->route->backend, l->resp.err);
        l7_answer(c, 502);
        return true;
    case HTTP1_OK:
        l7_response(c);
        return true;
    }
    return false;
}

static bool l7_want_client_bytes(const struct l7 *l)
{
    return !l->client_eof && !l->close_after && l7_buf_room((struct l7_buf *)&l->in, 1);
}

/* Decrypted client bytes into in, until OpenSSL has none or in is full. */
static int l7_up_read(struct conn *c)
{
    struct l7 *l = c->l7;
    bool moved = false;

    while (l7_want_client_bytes(l)) {
        int n = SSL_read(l->ssl, l->in.p + l->in.len, (int)(l->in.cap - l->in.len));
        if (n > 0) {
            l->in.len += (size_t)n;
            moved = true;
            continue;
        }
        switch (SSL_get_error(l->ssl, n)) {
        case SSL_ERROR_WANT_READ:
            return moved;
        case SSL_ERROR_WANT_WRITE:
            l->want_write = true;
            return moved;
        case SSL_ERROR_ZERO_RETURN:
            l->client_eof = true;
            return true;
        case SSL_ERROR_SYSCALL:
            if (n == 0 || errno == 0) {
                l->client_eof = true; /* closed without close_notify */
                return true;
            }
            /* fallthrough */
        default:
            ERR_clear_error();
            return -1;
        }
    }
    return moved;
}

/* cout to the client through OpenSSL. */
static int l7_down_write(struct conn *c)
{
    struct l7 *l = c->l7;
    bool moved = false;

    while (l->cout.off < l->cout.len) {
        int n = SSL_write(l->ssl, l->cout.p + l->cout.off, (int)(l->cout.len - l->cout.off));
        if (n > 0) {
            l->cout.off += (size_t)n;
            c->down.bytes += (uint64_t)n;
            atomic_fetch_add_explicit(&c->w->slot->bytes_out, (uint64_t)n, memory_order_relaxed);
            moved = true;
            continue;
        }
        switch (SSL_get_error(l->ssl, n)) {
        case SSL_ERROR_WANT_WRITE:
            l->want_write = true;
            return moved;
        case SSL_ERROR_WANT_READ:
            return moved;
        default:
            ERR_clear_error();
            return -1;
        }
    }
    l->cout.len = l->cout.off = 0;
    return moved;
}

/*
 * backend_tls: the client side of TLS to the backend, one context per
 * worker. SNI is the route's name (the client's for a wildcard route);
 * the backend's certificate is not verified (SPEC section 6), which the
 * worker says once.
 */
static SSL *l7_backend_ssl(struct conn *c)
{
    static SSL_CTX *ctx;
    static const uint8_t alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

    if (ctx == NULL) {
        if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
            return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        /* many backends close without close_notify: that is an end, not an error */
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        log_warn("backend_tls: backend certificates are not verified");
    }
    SSL *ssl = SSL_new(ctx);
    const char *name = c->route->hostname[0] == '*' ? c->sni : c->route->hostname;
    if (ssl == NULL || SSL_set_fd(ssl, c->bev.fd) != 1 ||
        (name != NULL && SSL_set_tlsext_host_name(ssl, name) != 1)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* One send to the backend: bytes taken, 0 when it would block, -1 on error. */
static ssize_t l7_backend_send(struct conn *c, const uint8_t *p, size_t n)
{
    struct l7 *l = c->l7;

    if (l->bssl != NULL) {
        int r = SSL_write(l->bssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->bssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
    }
    for (;;) {
        ssize_t r = send(c->bev.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? 0 : -1;
    }
}

/* One read from the backend: bytes read, 0 at EOF, MC_AGAIN when it would block, -1 on error. */
static ssize_t l7_backend_recv(struct conn *c, uint8_t *p, size_t n)
{
    struct l7 *l = c->l7;

    if (l->bssl != NULL) {
        int r = SSL_read(l->bssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->bssl, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return MC_AGAIN;
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0) ? 0 : -1;
    }
    for (;;) {
        ssize_t r = recv(c->bev.fd, p, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EAGAIN ? MC_AGAIN : -1;
    }
}

/* Backend bytes into bin; bout to the backend. */
static int l7_backend_io(struct conn *c)
{
    struct l7 *l = c->l7;
    bool moved = false;
    ssize_t n;

    if (c->bev.fd < 0 || l->connecting)
        return 0;
    if (l->bssl != NULL && !l->bhandshaken) {
        int r = SSL_do_handshake(l->bssl);
        if (r != 1) {
            int e = SSL_get_error(l->bssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            log_debug("TLS to backend %s failed: %s", c->route->backend,
                      ERR_reason_error_string(ERR_peek_last_error())
                          ? ERR_reason_error_string(ERR_peek_last_error())
                          : "closed");
            ERR_clear_error();
            return -1;
        }
        l->bhandshaken = true;
        moved = true;
    }
    while (l->bout.off < l->bout.len) {
        if ((n = l7_backend_send(c, l->bout.p + l->bout.off, l->bout.len - l->bout.off)) < 0)
            return -1;
        if (n == 0)
            break;
        l->bout.off += (size_t)n;
        c->up.bytes += (uint64_t)n;
        atomic_fetch_add_explicit(&c->w->slot->bytes_in, (uint64_t)n, memory_order_relaxed);
        moved = true;
    }
    if (l->bout.off == l->bout.len)
        l->bout.len = l->bout.off = 0;
    if (l->tunnel && l->client_eof && l->bout.len == 0 && !l->backend_shut) {
        /* the client is done sending: so are we (TLS: our close_notify) */
        if (l->bssl != NULL)
            SSL_shutdown(l->bssl);
        else
            shutdown(c->bev.fd, SHUT_WR);
        l->backend_shut = true;
    }
    while (!l->backend_eof && l7_buf_room(&l->bin, 1)) {
        n = l7_backend_recv(c, l->bin.p + l->bin.len, l->bin.cap - l->bin.len);
        if (n == MC_AGAIN)
            break;
        if (n < 0)
            return -1;
        if (n == 0) {
            l->backend_eof = true;
            moved = true;
            break;
        }
        l->bin.len += (size_t)n;
        moved = true;
    }
    return moved;
}

/* One exchange is over and written: the next request, or the end. */
static void l7_exchange_done(struct conn *c)
{
    struct l7 *l = c->l7;

    l7_log_request(c);
    if (!l->keep || l->rq != RQ_DONE || l->close_after) {
        l->close_after = true;
        return;
    }
    /* the backend connection serves the next request if it said it would */
    if (!l->resp.keep_alive || l->bin.len > 0 || l->backend_eof || l->bout.len > 0)
        l7_backend_close(c);
    l->rq = RQ_HEAD;
    l->rs = RS_IDLE;
    http1_request_init(&l->req, l->req_fields, L7_FIELDS);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

/* A backend that failed or went away: an answer if none started, else the end. */
static void l7_backend_failed(struct conn *c, bool connect)
{
    struct l7 *l = c->l7;

    if (connect)
        atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_FAILED], 1,
                                  memory_order_relaxed);
    if (l->rs == RS_HEAD) {
        l7_answer(c, 502);
        return;
    }
    l7_backend_close(c);
    l->close_after = true;
}

/*
 * Moves bytes every way they can go until nothing moves: the sockets are
 * edge-triggered, so each is read or written until it would block or its
 * buffer is full; a full buffer is drained by the other side first.
 */
static void l7_run(struct conn *c)
{
    struct l7 *l = c->l7;
    int rc;

    for (int round = 0; round < 1024; round++) {
        bool moved = false;
        l->want_write = false;
        if ((rc = l7_up_read(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        moved |= l7_up_process(c);
        if ((rc = l7_backend_io(c)) < 0) {
            l7_backend_failed(c, false);
            moved = true;
        }
        moved |= rc > 0;
        moved |= l7_down_process(c);
        if (l->backend_eof && c->bev.fd >= 0 && l->bin.len == 0 && !l->tunnel) {
            if (l->rs == RS_BODY && l->resp.body == HTTP1_BODY_CLOSE) {
                l->rs = RS_DONE;
                l7_backend_close(c);
            } else if (l->rs == RS_HEAD || l->rs == RS_BODY) {
                l7_backend_failed(c, false); /* closed before the response ended */
            } else {
                l7_backend_close(c); /* an idle keep-alive connection the backend closed */
            }
            moved = true;
        }
        if ((rc = l7_down_write(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        if (l->rs == RS_DONE && l->cout.len == 0 && !l->tunnel) {
            l7_exchange_done(c);
            moved = true;
        }
        if (l->tunnel && l->backend_eof && l->bin.len == 0 && l->cout.len == 0 &&
            (l->client_eof || l->bout.len == 0)) {
            conn_close(c, REASON_NONE, "ok");
            return;
        }
        if (l->close_after && l->cout.len == 0) {
            SSL_shutdown(l->ssl); /* best effort: our close_notify, not waiting for theirs */
            ERR_clear_error();
            conn_close(c, REASON_NONE, "ok");
            return;
        }
        if (l->client_eof && !l->tunnel && l->cout.len == 0 &&
            (l->rs == RS_IDLE || l->rq != RQ_DONE)) {
            conn_close(c, REASON_NONE, l->rs == RS_IDLE ? "ok" : "client_closed");
            return;
        }
        if (!moved)
            return;
    }
}

/* The TLS handshake, over the buffered ClientHello first, then the socket. */
static void l7_handshake(struct conn *c)
{
    struct l7 *l = c->l7;

    for (;;) {
        int n = SSL_do_handshake(l->ssl);
        if (n == 1)
            break;
        int err = SSL_get_error(l->ssl, n);
        if (err == SSL_ERROR_WANT_READ && l->preface) {
            /* every buffered byte is OpenSSL's now: read the socket from here on */
            BIO *rb = BIO_new_socket(c->cev.fd, BIO_NOCLOSE);
            if (rb == NULL) {
                conn_close(c, REASON_NONE, "error");
                return;
            }
            SSL_set0_rbio(l->ssl, rb);
            l->preface = false;
            continue;
        }
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return;
        log_debug("TLS handshake with %s failed: %s", c->sni ? c->sni : "-",
                  ERR_reason_error_string(ERR_peek_last_error())
                      ? ERR_reason_error_string(ERR_peek_last_error())
                      : "closed");
        ERR_clear_error();
        conn_close(c, REASON_NONE, "tls_error");
        return;
    }
    l->handshaken = true;
    http1_request_init(&l->req, l->req_fields, L7_FIELDS);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
    l7_run(c);
}

void l7_on_client(struct conn *c)
{
    if (!c->l7->handshaken)
        l7_handshake(c);
    else
        l7_run(c);
}

static void l7_on_backend(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;
    struct l7 *l = c->l7;

    if (l->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if ((events & (EPOLLERR | EPOLLHUP)) &&
            getsockopt(c->bev.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
            err = ECONNREFUSED;
        if (err == EINPROGRESS)
            return;
        if (err != 0) {
            log_errno(LOGL_DEBUG, err, "connect() to %s", c->route->backend);
            l7_backend_failed(c, true);
            l7_run(c);
            return;
        }
        l->connecting = false;
        shm_observe_connect(c->w->slot, shm_clock_us() - c->t_connect_us);
        if (c->route->backend_tls && ((c->route->send_proxy_protocol && !l7_send_proxy_header(c)) ||
                                      (l->bssl = l7_backend_ssl(c)) == NULL)) {
            l7_backend_failed(c, false);
            l7_run(c);
            return;
        }
    }
    l7_run(c);
}

void l7_on_timer(struct conn *c)
{
    struct l7 *l = c->l7;

    if (!l->handshaken) {
        conn_close(c, REASON_HELLO_TIMEOUT, NULL);
        return;
    }
    if (l->rs == RS_HEAD) {
        if (l->connecting)
            atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_TIMEOUT], 1,
                                      memory_order_relaxed);
        l7_answer(c, l->connecting ? 502 : 504);
        l7_run(c);
        return;
    }
    conn_close(c, REASON_NONE, "idle_timeout");
}

void l7_start(struct conn *c)
{
    struct conn_hs *hs = c->hs;
    struct l7 *l;

    if (c->route->l7 == NULL || c->route->l7->ctx == NULL) {
        conn_close(c, REASON_NONE, "no_certificate");
        return;
    }
    if ((l = c->l7 = calloc(1, sizeof(*l))) == NULL ||
        (l->ssl = SSL_new(c->route->l7->ctx)) == NULL) {
        conn_close(c, REASON_NONE, "error");
        return;
    }
    /* the ClientHello conn.c read is OpenSSL's first input: not a byte lost */
    BIO *pre = BIO_new(BIO_s_mem()), *wb = BIO_new_socket(c->cev.fd, BIO_NOCLOSE);
    if (pre == NULL || wb == NULL || BIO_write(pre, hs->data, (int)hs->len) != (int)hs->len) {
        BIO_free(pre);
        BIO_free(wb);
        conn_close(c, REASON_NONE, "error");
        return;
    }
    BIO_set_mem_eof_return(pre, -1); /* drained is "wait", not end of file */
    SSL_set_bio(l->ssl, pre, wb);
    SSL_set_accept_state(l->ssl);
    l->preface = true;
    free(hs->data);
    mc_free(&c->hs);
    c->state = CS_L7;
    l7_handshake(c);
}
