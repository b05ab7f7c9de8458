/*
 * An L7 route: the connection, routed by conn.c on the SNI of the
 * ClientHello it already read, is terminated with the route's
 * certificate and its HTTP/1.1 requests are proxied to the backend (a
 * client that chose h2 by ALPN is l7_h2.c's after the handshake).
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
 *            same connection (keep-alive), the backend connection to
 *            the worker's pool (l7_pool.c) when it can serve another
 *   TUNNEL   after a 101 to a WebSocket upgrade, bytes both ways as is
 *
 * Four buffers per connection, each allocated on first use and bounded
 * (L7_BUF_MAX): client plaintext in, to the backend, from the backend,
 * to the client. A full buffer stops reading its source, so a slow
 * reader on either side holds the other back and nothing buffers a body.
 * The heads' rewriting is l7_head.c, the backend connection l7_backend.c.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "worker/l7.h"
#include "worker/route_l7.h"

static void l7_on_backend(struct ev *ev, uint32_t events);

void l7_free(struct conn *c)
{
    struct l7 *l = c->l7;

    if (l == NULL)
        return;
    l7_h2_free(c);
    SSL_free(l->ssl);
    l7_backend_free(&l->be);
    l7_buf_free(&l->in);
    l7_buf_free(&l->cout);
    mc_free(&c->l7);
}

static void l7_copy_span(char *dst, size_t size, const uint8_t *buf, struct http1_span s)
{
    size_t n = MC_MIN((size_t)s.len, size - 1);
    memcpy(dst, buf + s.off, n);
    dst[n] = '\0';
}

void l7_reqlog_start(struct conn *c, struct l7_reqlog *rl, const struct http1_head *h,
                     const uint8_t *buf)
{
    rl->t_req = loop_now(c->w->loop);
    rl->req_bytes = rl->resp_bytes = 0;
    rl->t_resp = 0;
    l7_copy_span(rl->method, sizeof(rl->method), buf, h->method);
    l7_copy_span(rl->host, sizeof(rl->host), buf, h->host);
    /* the path without its query: queries carry secrets more often than paths */
    struct http1_span path = h->path;
    const uint8_t *q = memchr(buf + path.off, '?', path.len);
    if (q != NULL)
        path.len = (uint32_t)(q - (buf + path.off));
    l7_copy_span(rl->path, sizeof(rl->path), buf, path);
    if (rl->path[0] == '\0')
        snprintf(rl->path, sizeof(rl->path), "/");
}

/* One access line per request (the connection's own line comes at its close). */
void l7_reqlog_write(struct conn *c, struct l7_reqlog *l, const char *proto)
{
    char client[ADDR_STRLEN];
    struct log_rec r;
    uint64_t now = loop_now(c->w->loop);

    if (l->status == 0 || !log_enabled(LOGL_INFO)) {
        l->status = 0;
        return;
    }
    log_rec_begin(&r, LOGL_INFO, "request");
    log_rec_str(&r, "listener", c->l->addr);
    log_rec_str(&r, "client", addr_format(&c->client, client, sizeof(client)));
    log_rec_str(&r, "route", c->route->hostname);
    log_rec_str(&r, "backend", c->route->backend);
    log_rec_str(&r, "proto", proto);
    log_rec_str(&r, "method", l->method);
    log_rec_str(&r, "host", l->host);
    log_rec_str(&r, "path", l->path);
    log_rec_u64(&r, "status", l->status);
    if (l->grpc_status[0] != '\0')
        log_rec_str(&r, "grpc_status", l->grpc_status);
    log_rec_u64(&r, "bytes_in", l->req_bytes);
    log_rec_u64(&r, "bytes_out", l->resp_bytes);
    if (l->t_resp != 0)
        log_rec_u64(&r, "upstream_ms", l->t_resp - l->t_sent);
    log_rec_u64(&r, "duration_ms", now - l->t_req);
    log_rec_end(&r);
    l->status = 0;
}

void l7_count(struct conn *c, unsigned status, bool policy_block)
{
    struct route_l7 *r = c->route->l7;

    if (r->counts == NULL)
        r->counts = shm_http_route(c->w->slot, c->l->id, c->route->hostname);
    shm_http_count(r->counts, status, policy_block);
}

/*
 * Answers the request with a small error of our own and closes the
 * connection once it is written: what the client sent next cannot be
 * trusted to start where we think it does.
 */
static void l7_answer(struct conn *c, unsigned status)
{
    struct l7 *l = c->l7;
    const char *reason = l7_head_reason(status);

    l->cout.len = l->cout.off = 0;
    l7_buf_printf(&l->cout,
                  "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n%u %s\n",
                  status, reason, strlen(reason) + 5, status, reason);
    l->log.status = status;
    l7_count(c, status, status == 403); /* our only 403 is a policy's */
    l->log.resp_bytes = l->cout.len;
    l->rq = RQ_DONE;
    l->rs = RS_DONE;
    l->close_after = true;
    l->tunnel = false;
    l7_backend_close(&l->be);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

bool l7_idempotent(enum http1_method m)
{
    return m == HTTP1_METHOD_GET || m == HTTP1_METHOD_HEAD || m == HTTP1_METHOD_PUT ||
           m == HTTP1_METHOD_DELETE || m == HTTP1_METHOD_OPTIONS || m == HTTP1_METHOD_TRACE;
}

/* A complete request head: check it, then pass it on. */
static void l7_request(struct conn *c)
{
    struct l7 *l = c->l7;
    struct http1_head *h = &l->req;
    const uint8_t *buf = l->in.p;

    l7_reqlog_start(c, &l->log, h, buf);
    unsigned refused = l7_head_check(c, h, buf);
    if (refused != 0) {
        l7_answer(c, refused);
        return;
    }
    if (!l7_head_request(c, h, buf, &l->be.out) ||
        !l7_backend_connect(c, &l->be, l7_on_backend, c)) {
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
    l->log.req_bytes = h->len;
    l7_buf_consume(&l->in, h->len);
    /* one that can go again if a reused connection turns out dead (RFC 9110 9.2.2) */
    l->be.replay = l->be.reused && l->rq == RQ_DONE && l7_idempotent(h->method_id);
    l->log.t_sent = loop_now(c->w->loop);
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
        n = l7_buf_room(&l->be.out, 1) ? MC_MIN(l->in.len, l->be.out.cap - l->be.out.len) : 0;
        l7_buf_put(&l->be.out, l->in.p, n);
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
            snprintf(l->log.method, sizeof(l->log.method), "-");
            snprintf(l->log.path, sizeof(l->log.path), "-");
            l->log.t_req = loop_now(c->w->loop);
            l7_answer(c, (unsigned)l->req.status);
            return true;
        case HTTP1_OK:
            l7_request(c);
            return true;
        }
        return false;
    case RQ_BODY:
        if (!l7_buf_room(&l->be.out, 1))
            return false;
        n = MC_MIN(l->in.len, l->be.out.cap - l->be.out.len);
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
        l7_buf_put(&l->be.out, l->in.p, n);
        l7_buf_consume(&l->in, n);
        l->log.req_bytes += n;
        return n > 0;
    case RQ_DONE:
        return false;
    }
    return false;
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
    if (l->log.t_resp == 0)
        l->log.t_resp = loop_now(c->w->loop);
    /* a read-to-close body ends the client connection too; so does a request body not all sent */
    l->keep = l->req.keep_alive && h->keep_alive && h->body != HTTP1_BODY_CLOSE;
    size_t before = l->cout.len;
    if (!l7_head_response(c)) {
        l7_answer(c, 502);
        return;
    }
    l->log.resp_bytes += l->cout.len - before;
    l7_buf_consume(&l->be.in, h->len);
    if (h->code < 200 && h->code != 101) {
        /* 100 Continue and friends: passed on, the final response follows */
        http1_response_init(&l->resp, l->resp_fields, L7_FIELDS,
                            l->req.method_id == HTTP1_METHOD_HEAD);
        return;
    }
    l->log.status = h->code;
    l7_count(c, h->code, false);
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
        if (l->be.in.len == 0 || !l7_buf_room(&l->cout, 1))
            return false;
        n = MC_MIN(l->be.in.len, l->cout.cap - l->cout.len);
        if (!l->tunnel && l->resp.body == HTTP1_BODY_LENGTH) {
            n = (size_t)MC_MIN((uint64_t)n, l->resp_left);
            l->resp_left -= n;
            if (l->resp_left == 0)
                l->rs = RS_DONE;
        } else if (!l->tunnel && l->resp.body == HTTP1_BODY_CHUNKED) {
            enum http1_status st =
                http1_chunked_feed(&l->resp_chunked, l->be.in.p, n, &used, &data);
            if (st == HTTP1_ERROR) {
                log_debug("bad chunked response from %s: %s", c->route->backend,
                          l->resp_chunked.err);
                l->close_after = true;
                l7_backend_close(&l->be);
                return true;
            }
            n = used;
            if (st == HTTP1_OK)
                l->rs = RS_DONE;
        }
        l7_buf_put(&l->cout, l->be.in.p, n);
        l7_buf_consume(&l->be.in, n);
        l->log.resp_bytes += n;
        return n > 0;
    }
    if (l->rs != RS_HEAD) {
        if (l->be.in.len > 0) /* nothing was asked: a backend that talks anyway is not reused */
            l7_backend_close(&l->be);
        return false;
    }
    if (l->be.in.len == 0)
        return false;
    switch (http1_parse(&l->resp, l->be.in.p, l->be.in.len)) {
    case HTTP1_NEED_MORE:
        l7_buf_room(&l->be.in, MC_MIN((size_t)HTTP1_HEAD_MAX + 1 - l->be.in.len, L7_BUF_FIRST));
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

/* Whether to read the client now; makes room in `in` when it can. */
static bool l7_want_client_bytes(struct l7 *l)
{
    return !l->client_eof && !l->close_after && l7_buf_room(&l->in, 1);
}

/* Decrypted client bytes into in, until OpenSSL has none or in is full. */
int l7_client_read(struct conn *c)
{
    struct l7 *l = c->l7;
    bool moved = false;

    /* the socket raised an edge since OpenSSL last drained it, or OpenSSL
     * holds bytes it read ahead: else a read would only see EAGAIN */
    while ((c->up.src_ready || SSL_has_pending(l->ssl)) && l7_want_client_bytes(l)) {
        int n = SSL_read(l->ssl, l->in.p + l->in.len, (int)(l->in.cap - l->in.len));
        if (n > 0) {
            l->in.len += (size_t)n;
            moved = true;
            continue;
        }
        switch (SSL_get_error(l->ssl, n)) {
        case SSL_ERROR_WANT_READ:
            c->up.src_ready = false;
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
int l7_client_write(struct conn *c)
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

/* One exchange is over and written: the next request, or the end. */
static void l7_exchange_done(struct conn *c)
{
    struct l7 *l = c->l7;

    l7_reqlog_write(c, &l->log, "HTTP/1.1");
    l7_backend_release(c, &l->be,
                       !l->tunnel && l->rs == RS_DONE && l->rq == RQ_DONE && l->resp.keep_alive &&
                           l->resp.body != HTTP1_BODY_CLOSE);
    if (!l->keep || l->rq != RQ_DONE || l->close_after) {
        l->close_after = true;
        return;
    }
    l->rq = RQ_HEAD;
    l->rs = RS_IDLE;
    http1_request_init(&l->req, l->req_fields, L7_FIELDS);
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
}

/* A backend that failed or went away: an answer if none started, else the end. */
static void l7_lost_backend(struct conn *c, bool connect)
{
    struct l7 *l = c->l7;

    if (connect)
        atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_FAILED], 1,
                                  memory_order_relaxed);
    if (l->rs == RS_HEAD) {
        /* a reused connection the backend had closed, and nothing of an answer yet */
        if (!connect && l->be.replay && l->be.in.len == 0 && l7_backend_retry(c, &l->be))
            return;
        l7_answer(c, 502);
        return;
    }
    l7_backend_close(&l->be);
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
        if ((rc = l7_client_read(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        /* parse and move all that is there before writing: a head and the body
         * bytes behind it leave in one write (one TLS record) */
        while (l7_up_process(c))
            moved = true;
        if ((rc = l7_backend_io(c, &l->be)) < 0) {
            l7_lost_backend(c, false);
            moved = true;
        }
        moved |= rc > 0;
        if (l->tunnel && l->client_eof && l->be.out.len == 0)
            l7_backend_shutdown(&l->be); /* the client is done sending: so are we */
        while (l7_down_process(c))
            moved = true;
        if (l->be.eof && l->be.ev.fd >= 0 && l->be.in.len == 0 && !l->tunnel) {
            if (l->rs == RS_BODY && l->resp.body == HTTP1_BODY_CLOSE) {
                l->rs = RS_DONE;
                l7_backend_close(&l->be);
            } else if (l->rs == RS_HEAD || l->rs == RS_BODY) {
                l7_lost_backend(c, false); /* closed before the response ended */
            } else {
                l7_backend_close(&l->be); /* an idle keep-alive connection the backend closed */
            }
            moved = true;
        }
        if ((rc = l7_client_write(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        if (l->rs == RS_DONE && l->cout.len == 0 && !l->tunnel) {
            l7_exchange_done(c);
            moved = true;
        }
        if (l->tunnel && l->be.eof && l->be.in.len == 0 && l->cout.len == 0 &&
            (l->client_eof || l->be.out.len == 0)) {
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
    c->up.src_ready = true; /* a request may have come with the Finished message */
    loop_timer_set(c->w->loop, &c->timer, c->w->settings.idle_timeout_ms);
    const unsigned char *proto;
    unsigned proto_len;
    SSL_get0_alpn_selected(l->ssl, &proto, &proto_len);
    if (proto_len == 2 && memcmp(proto, "h2", 2) == 0) {
        if (!l7_h2_start(c)) {
            conn_close(c, REASON_NONE, "error");
            return;
        }
        l7_h2_run(c);
        return;
    }
    http1_request_init(&l->req, l->req_fields, L7_FIELDS);
    l7_run(c);
}

void l7_drain(struct conn *c)
{
    if (c->l7->h2 != NULL)
        l7_h2_drain(c);
}

void l7_on_client(struct conn *c)
{
    if (!c->l7->handshaken)
        l7_handshake(c);
    else if (c->l7->h2 != NULL)
        l7_h2_run(c);
    else
        l7_run(c);
}

static void l7_on_backend(struct ev *ev, uint32_t events)
{
    struct conn *c = ev->data;
    struct l7 *l = c->l7;

    if (c->state != CS_L7)
        return; /* closed earlier in this loop iteration */
    int err = l7_backend_connect_result(c, &l->be, events);
    if (err == EINPROGRESS)
        return;
    if (err != 0)
        l7_lost_backend(c, err > 0);
    l7_run(c);
}

void l7_on_timer(struct conn *c)
{
    struct l7 *l = c->l7;

    if (!l->handshaken) {
        conn_close(c, REASON_HELLO_TIMEOUT, NULL);
        return;
    }
    if (l->h2 != NULL) {
        l7_h2_on_timer(c);
        return;
    }
    if (l->rs == RS_HEAD) {
        if (l->be.connecting)
            atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_TIMEOUT], 1,
                                      memory_order_relaxed);
        l7_answer(c, l->be.connecting ? 502 : 504);
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
    l->be.ev.fd = -1;
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
