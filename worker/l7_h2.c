/*
 * An L7 client connection that chose h2 by ALPN (l7.h): an nghttp2 server
 * session over the TLS connection l7.c terminated, and a stream object
 * per request. Each stream's request goes to the backend as HTTP/1.1 on a
 * backend connection of its own (from the pool, as HTTP/1.1 clients' do),
 * and its response, parsed by http1.c, comes back as HEADERS and DATA.
 *
 *   request   fields collected by l7_h2_req.c, made into an HTTP/1.1 head
 *             and parsed strictly; then the same checks as HTTP/1.1
 *             (421, 403) and the same rewriting (l7_head.c)
 *   body      DATA into the stream's backend buffer (chunked when the
 *             client gave no content-length); its window credit goes back
 *             (nghttp2_session_consume) only once the backend took it
 *   response  the head within response_timeout (504), 502 when the backend
 *             cannot be reached or fails before its head; the body pulled
 *             by nghttp2's data provider from the backend buffer, so a
 *             client that does not open its window stops our reads of the
 *             backend (the buffer is full) and nothing grows
 *
 * Bounds: 100 streams (advertised, enforced by nghttp2, and by our count
 * of streams with backend work); a stream window of 64 KiB and a
 * connection window of 100 of them, so one stalled stream never starves
 * the others; per stream a backend buffer each way (out: a head and one
 * window, in: L7_BUF_MAX); the client write buffer L7_BUF_MAX, which
 * nghttp2's send callback fills and never passes. Attacks: rapid reset (a
 * budget of resets, nghttp2's own rate limit too), CONTINUATION floods
 * (64 KiB of header block, nghttp2's cap on CONTINUATION frames), empty
 * DATA frames, SETTINGS/PING floods (nghttp2's ack cap, our check of its
 * outbound queue): each ends the connection with GOAWAY. A gRPC call
 * goes to the backend over h2 instead (l7_h2be.c), trailers and all.
 *
 * A stream object is freed at the end of the loop iteration (like a
 * connection), since its backend socket's events may be queued already.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/l7.h"
#include "common/log.h"

#define L7_H2_STREAMS     100
#define L7_H2_WINDOW      65535 /* stream window: SETTINGS_INITIAL_WINDOW_SIZE's default */
#define L7_H2_CONN_WINDOW (L7_H2_STREAMS * L7_H2_WINDOW)
#define L7_H2_BLOCK_MAX   HTTP1_HEAD_MAX /* header block bytes on the wire, CONTINUATIONs too */
#define L7_H2_RESETS      100  /* reset budget: one less a client reset, one more a clean end */
#define L7_H2_EMPTY_MAX   16   /* empty DATA frames in a row */
#define L7_H2_OUTQ_MAX    2000 /* frames nghttp2 may queue for a client that does not read */
#define L7_H2_NEW_STREAMS 200  /* streams one read may open (nginx: twice the limit) */
#define L7_H2_OUT_MAX     (L7_BUF_MAX + L7_H2_WINDOW + 4096) /* a head, a window, chunk lines */
#define L7_H2_CHUNK_HDR   10                                 /* "%08zx\r\n" */

/* Freed after the loop iteration: an event may be queued for one. */
static struct l7_h2_stream *l7_h2_dead;

/* The HTTP/1.1 head a request becomes, and its fields: one at a time. */
static uint8_t l7_h2_head[L7_H2_REQ_MAX + 512];
static struct http1_field l7_h2_fields[L7_FIELDS];

static void l7_h2_on_backend(struct ev *ev, uint32_t events);

static struct l7_h2_stream *l7_h2_stream(struct l7_h2 *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->s, id);
}

/* Ends the connection: GOAWAY with code, then nothing more is read. */
static void l7_h2_fail(struct conn *c, uint32_t code, const char *why)
{
    struct l7_h2 *h = c->l7->h2;

    if (!h->calm)
        log_debug("h2 client %s: %s", c->sni ? c->sni : "-", why);
    h->calm = true;
    nghttp2_session_terminate_session(h->s, code);
    c->l7->close_after = true;
    h->t_active = loop_now(c->w->loop); /* the GOAWAY has an idle_timeout to leave */
}

static void l7_h2_stream_free(struct l7_h2 *h, struct l7_h2_stream *st)
{
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    h->n_streams--;
    if (st->pooled)
        l7_pool_want(false);
    l7_backend_free(&st->be);
    l7_h2_req_free(&st->req);
    l7_buf_free(&st->rhdr);
    st->dead = true;
    st->next_dead = l7_h2_dead;
    l7_h2_dead = st;
}

void l7_h2_free_dead(void)
{
    l7_h2be_free_dead();
    while (l7_h2_dead != NULL) {
        struct l7_h2_stream *st = l7_h2_dead;
        l7_h2_dead = st->next_dead;
        free(st);
    }
}

/* The response body, from the backend's bytes in be.in: DATA payload. */
static ssize_t l7_h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                               uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct l7_h2_stream *st = src->ptr;
    struct l7_buf *in = &st->be.in;
    size_t n = 0, used, data;

    (void)id;
    (void)user;
    while (n < length && in->len > 0 && !st->resp_end) {
        size_t k = MC_MIN(length - n, in->len);
        if (st->resp.body == HTTP1_BODY_LENGTH) {
            k = (size_t)MC_MIN((uint64_t)k, st->resp_left);
            st->resp_left -= k;
            st->resp_end = st->resp_left == 0;
        } else if (st->resp.body == HTTP1_BODY_CHUNKED) {
            uint64_t d = http1_chunked_data_left(&st->resp_chunked);
            enum http1_status r = http1_chunked_feed(&st->resp_chunked, in->p,
                                                     d ? (size_t)MC_MIN(d, k) : 1, &used, &data);
            if (r == HTTP1_ERROR) {
                log_debug("bad chunked response from %s: %s", st->c->route->backend,
                          st->resp_chunked.err);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
            }
            st->resp_end = r == HTTP1_OK;
            memcpy(buf + n, in->p, data);
            n += data;
            l7_buf_consume(in, used);
            continue;
        }
        memcpy(buf + n, in->p, k);
        n += k;
        l7_buf_consume(in, k);
    }
    if (st->resp.body == HTTP1_BODY_CLOSE && st->be.eof && in->len == 0)
        st->resp_end = true;
    st->log.resp_bytes += n;
    st->t_active = loop_now(st->c->w->loop);
    if (st->grpc)
        l7_h2be_consumed(st, n);
    if (st->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers) {
            /* the backend's trailers end the stream, after the last DATA (nghttp2 #269) */
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (!l7_h2be_trailers(s, st))
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

void l7_h2_submit(struct l7_h2_stream *st, const nghttp2_nv *nv, size_t n, bool body)
{
    struct l7_h2 *h = st->c->l7->h2;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = l7_h2_read_body};

    st->resp_head = true;
    st->resp_end = !body;
    if (nghttp2_submit_response(h->s, st->id, nv, n, body ? &prd : NULL) != 0)
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

/* The gRPC status for a status of ours (the gRPC HTTP-to-gRPC table). */
static unsigned l7_h2_grpc_status(unsigned status)
{
    switch (status) {
    case 403:
        return 7; /* PERMISSION_DENIED */
    case 400:
    case 431:
        return 13; /* INTERNAL */
    case 502:
    case 503:
    case 504:
        return 14; /* UNAVAILABLE */
    }
    return 2; /* UNKNOWN */
}

/*
 * Answers the stream with a small error of our own; a gRPC call gets it
 * in trailers-only form (HTTP 200 and grpc-status), which its clients
 * read, rather than a page they cannot. Once the backend's head went out,
 * the stream can only be reset.
 */
void l7_h2_answer(struct l7_h2_stream *st, unsigned status)
{
    struct conn *c = st->c;
    struct l7_h2 *h = c->l7->h2;
    char code[8], len[24], gs[4], msg[48];

    l7_h2be_detach(st);
    l7_backend_close(&st->be);
    st->dispatched = true;
    if (st->resp_head) {
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        st->resp_end = true;
        return;
    }
    st->log.status = status;
    l7_count(c, status, status == 403);
    if (st->grpc) {
        int gn = snprintf(gs, sizeof(gs), "%u", l7_h2_grpc_status(status) % 100); /* 0..16 */
        snprintf(st->log.grpc_status, sizeof(st->log.grpc_status), "%s", gs);
        /* our reasons are ASCII without '%': the percent-encoding gRPC wants is the text */
        int mn = snprintf(msg, sizeof(msg), "mc-proxy: %u %s", status, l7_head_reason(status));
        nghttp2_nv nv[] = {
            L7_NV(":status", "200", 3), L7_NV("content-type", "application/grpc", 16),
            L7_NV("grpc-status", gs, (size_t)gn), L7_NV("grpc-message", msg, (size_t)mn)};
        l7_h2_submit(st, nv, sizeof(nv) / sizeof(nv[0]), false);
        return;
    }
    const char *reason = l7_head_reason(status);
    st->be.in.len = 0;
    l7_buf_printf(&st->be.in, "%u %s\n", status, reason);
    st->resp.body = HTTP1_BODY_LENGTH;
    st->resp_left = st->be.in.len;
    int cn = snprintf(code, sizeof(code), "%u", status);
    int ln = snprintf(len, sizeof(len), "%zu", st->be.in.len);
    nghttp2_nv nv[] = {L7_NV(":status", code, (size_t)cn), L7_NV("content-type", "text/plain", 10),
                       L7_NV("content-length", len, (size_t)ln)};
    l7_h2_submit(st, nv, sizeof(nv) / sizeof(nv[0]), st->method != HTTP1_METHOD_HEAD);
}

/* The client's header block is complete: check the request, pass it on. */
static void l7_h2_request(struct l7_h2_stream *st)
{
    struct conn *c = st->c;
    struct http1_head req;

    st->grpc = st->req.grpc;
    st->log.t_req = loop_now(c->w->loop);
    snprintf(st->log.method, sizeof(st->log.method), "-");
    snprintf(st->log.path, sizeof(st->log.path), "-");
    if (st->req.refuse != 0) {
        l7_h2_answer(st, st->req.refuse);
        return;
    }
    size_t n = l7_h2_req_head(&st->req, !st->req_end, l7_h2_head, sizeof(l7_h2_head));
    http1_request_init(&req, l7_h2_fields, L7_FIELDS);
    enum http1_status r = n == 0 ? HTTP1_ERROR : http1_parse(&req, l7_h2_head, n);
    if (r != HTTP1_OK) {
        log_debug("refused h2 request from %s: %s", c->l->addr, n == 0 ? "too large" : req.err);
        l7_h2_answer(st, n == 0 || r == HTTP1_NEED_MORE ? 431 : (unsigned)req.status);
        return;
    }
    l7_reqlog_start(c, &st->log, &req, l7_h2_head);
    st->method = req.method_id;
    st->chunked = req.body == HTTP1_BODY_CHUNKED;
    l7_h2_req_free(&st->req); /* the head is all that is needed of it now */
    unsigned refused = l7_head_check(c, &req, l7_h2_head);
    if (refused != 0) {
        l7_h2_answer(st, refused);
        return;
    }
    st->be.out.max = L7_H2_OUT_MAX;
    http1_response_init(&st->resp, st->resp_fields, L7_FIELDS, req.method_id == HTTP1_METHOD_HEAD);
    if (st->grpc) {
        st->chunked = false; /* DATA as it came, to an h2 backend */
        st->dispatched = true;
        if (!l7_h2be_request(c, st, &req, l7_h2_head)) {
            l7_h2_answer(st, 502);
            return;
        }
    } else if (!l7_head_request(c, &req, l7_h2_head, &st->be.out) ||
               !l7_backend_connect(c, &st->be, l7_h2_on_backend, st)) {
        l7_h2_answer(st, 502);
        return;
    }
    if ((st->pooled = !st->grpc))
        l7_pool_want(true);
    st->dispatched = true;
    st->log.req_bytes = n;
    st->be.replay = st->be.reused && st->req_end && l7_idempotent(req.method_id);
    st->log.t_sent = st->t_active = loop_now(c->w->loop);
}

/* Request body bytes to the backend, in a chunk when it goes chunked. */
static bool l7_h2_body(struct l7_h2_stream *st, const uint8_t *p, size_t n)
{
    struct l7_buf *out = &st->be.out;
    char hdr[L7_H2_CHUNK_HDR + 1];

    if (!st->chunked)
        return l7_buf_put(out, p, n);
    if (st->chunk_open && out->len > 0 && st->chunk_at >= out->off) {
        /* the last chunk has not left yet: it grows (its size has a fixed width) */
        size_t size = out->len - st->chunk_at - L7_H2_CHUNK_HDR - 2 + n;
        out->len -= 2;
        if (!l7_buf_put(out, p, n) || !l7_buf_put(out, "\r\n", 2))
            return false;
        snprintf(hdr, sizeof(hdr), "%08zx\r\n", size);
        memcpy(out->p + st->chunk_at, hdr, L7_H2_CHUNK_HDR);
        return true;
    }
    snprintf(hdr, sizeof(hdr), "%08zx\r\n", n);
    st->chunk_at = out->len;
    st->chunk_open = true;
    return l7_buf_put(out, hdr, L7_H2_CHUNK_HDR) && l7_buf_put(out, p, n) &&
           l7_buf_put(out, "\r\n", 2);
}

/* The client's END_STREAM: a chunked body gets its last chunk. */
static void l7_h2_req_end(struct l7_h2 *h, struct l7_h2_stream *st)
{
    st->req_end = true;
    st->chunk_open = false;
    l7_h2be_resume(st);
    if (st->chunked && st->be.ev.fd >= 0 && !l7_buf_put(&st->be.out, "0\r\n\r\n", 5))
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static int l7_h2_on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *user)
{
    struct conn *c = user;
    struct l7_h2 *h = c->l7->h2;

    (void)s;
    if (hd->type == NGHTTP2_HEADERS)
        h->block = hd->length;
    else if (hd->type == NGHTTP2_CONTINUATION)
        h->block += hd->length;
    if ((hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION) &&
        h->block > L7_H2_BLOCK_MAX) {
        /* a header block past 64 KiB on the wire: a flood, not a request */
        l7_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, "header block over 64 KiB");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int l7_h2_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct conn *c = user;
    struct l7_h2 *h = c->l7->h2;
    struct l7_h2_stream *st;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (++h->new_now > L7_H2_NEW_STREAMS) {
        l7_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, "too many new streams at once");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (h->n_streams >= L7_H2_STREAMS) {
        /* nghttp2 refuses past the SETTINGS it sent; this counts streams whose
         * backend work goes on, which a reset does not end in nghttp2's count */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->c = c;
    st->id = f->hd.stream_id;
    st->be.ev.fd = -1;
    st->t_active = loop_now(c->w->loop);
    l7_h2_req_init(&st->req);
    st->next = h->streams;
    if (h->streams != NULL)
        h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int l7_h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                           size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                           void *user)
{
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

    (void)flags;
    (void)user;
    /* trailers of a request body are not passed to an HTTP/1.1 backend */
    if (st == NULL || st->dispatched || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    return l7_h2_req_field(&st->req, name, nlen, value, vlen)
               ? 0
               : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int l7_h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct conn *c = user;
    struct l7_h2 *h = c->l7->h2;
    struct l7_h2_stream *st = f->hd.stream_id ? l7_h2_stream(h, f->hd.stream_id) : NULL;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_DATA:
        if (f->hd.length == 0 && !end && ++h->empty > L7_H2_EMPTY_MAX) {
            l7_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, "empty DATA frames");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (f->hd.length > 0)
            h->empty = 0;
        if (st != NULL && end)
            l7_h2_req_end(h, st);
        break;
    case NGHTTP2_HEADERS:
        if (st == NULL)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            st->req_end = end;
            l7_h2_request(st);
        } else if (end) {
            l7_h2_req_end(h, st);
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (h->budget == 0 || --h->budget == 0) {
            l7_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, "rapid reset");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    }
    return 0;
}

static int l7_h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct conn *c = user;
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    (void)flags;
    if (st == NULL || (st->be.ev.fd < 0 && st->bid == 0)) {
        /* nobody takes it (answered already, or refused): its window goes back now */
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (!l7_h2_body(st, data, len)) {
        /* only a client sending past the window it was given gets here */
        nghttp2_session_consume(s, id, len);
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
        l7_backend_close(&st->be);
        return 0;
    }
    st->unconsumed += len;
    st->log.req_bytes += len;
    st->t_active = loop_now(c->w->loop);
    l7_h2be_resume(st);
    return 0;
}

static int l7_h2_on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    struct conn *c = user;
    struct l7_h2 *h = c->l7->h2;
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    if (st == NULL)
        return 0;
    if (st->unconsumed > 0) /* the stream is gone: the connection's window must not leak */
        nghttp2_session_consume_connection(s, st->unconsumed);
    if (code == NGHTTP2_NO_ERROR && st->resp_end && h->budget < L7_H2_RESETS)
        h->budget++;
    if (code != NGHTTP2_NO_ERROR && st->log.status == 0 && st->dispatched)
        st->log.status = 499; /* reset before its answer: nginx's "client closed request" */
    l7_reqlog_write(c, &st->log, "HTTP/2.0");
    l7_h2be_detach(st);
    l7_backend_release(c, &st->be,
                       st->resp_end && st->req_end && st->resp.keep_alive &&
                           st->resp.body != HTTP1_BODY_CLOSE && st->be.out.len == 0);
    nghttp2_session_set_stream_user_data(s, id, NULL);
    l7_h2_stream_free(h, st);
    h->t_active = loop_now(c->w->loop);
    return 0;
}

/* nghttp2's output into cout, never past its bound: the rest waits. */
static ssize_t l7_h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    struct conn *c = user;
    struct l7_buf *out = &c->l7->cout;

    (void)s;
    (void)flags;
    if (!l7_buf_room(out, 1))
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = MC_MIN(len, out->cap - out->len);
    memcpy(out->p + out->len, data, n);
    out->len += n;
    c->l7->h2->moved = true;
    return (ssize_t)n;
}

bool l7_h2_start(struct conn *c)
{
    struct l7_h2 *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    int rc = -1;

    if (h == NULL)
        return false;
    c->l7->h2 = h;
    h->budget = L7_H2_RESETS;
    h->t_active = loop_now(c->w->loop);
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_send_callback(cb, l7_h2_send);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, l7_h2_on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, l7_h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, l7_h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, l7_h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, l7_h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, l7_h2_on_stream_close);
    /* window credit goes back when the backend took the bytes, not on receipt */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
#ifdef MC_HAVE_NGHTTP2_RESET_RATE_LIMIT
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * L7_H2_RESETS, 33);
#endif
#ifdef MC_HAVE_NGHTTP2_MAX_CONTINUATIONS
    nghttp2_option_set_max_continuations(opt, 8);
#endif
    if (nghttp2_session_server_new2(&h->s, cb, c, opt) != 0)
        goto out;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, L7_H2_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, L7_H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTP1_HEAD_MAX},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, L7_H2_CONN_WINDOW) != 0)
        goto out;
    rc = 0;
out:
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    return rc == 0;
}

void l7_h2_free(struct conn *c)
{
    struct l7_h2 *h = c->l7->h2;

    if (h == NULL)
        return;
    l7_h2be_free(c);
    while (h->streams != NULL) {
        l7_reqlog_write(c, &h->streams->log, "HTTP/2.0");
        l7_h2_stream_free(h, h->streams);
    }
    nghttp2_session_del(h->s);
    mc_free(&c->l7->h2);
}

/* The backend is gone before the answer ended: a retry, an answer, or a reset. */
static void l7_h2_lost(struct l7_h2_stream *st, bool connect)
{
    struct conn *c = st->c;

    if (connect)
        atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_FAILED], 1,
                                  memory_order_relaxed);
    if (!st->resp_head && !connect && st->be.replay && st->be.in.len == 0 &&
        l7_backend_retry(c, &st->be))
        return;
    l7_h2_answer(st, 502);
}

/* The backend's response head: HEADERS for the client. */
static void l7_h2_response(struct l7_h2_stream *st)
{
    struct http1_head *r = &st->resp;
    uint8_t *buf = st->be.in.p;
    nghttp2_nv nv[L7_FIELDS + 2];
    char code[12], len[24];
    size_t n = 0;

    if (r->code < 200) {
        if (r->code == 101) { /* no upgrade was asked: HTTP/2 has none */
            l7_h2_answer(st, 502);
            return;
        }
        l7_buf_consume(&st->be.in, r->len); /* 100 Continue and friends: the final one follows */
        http1_response_init(r, st->resp_fields, L7_FIELDS, st->method == HTTP1_METHOD_HEAD);
        return;
    }
    snprintf(code, sizeof(code), "%u", r->code);
    nv[n++] = L7_NV(":status", code, 3);
    for (size_t i = 0; i < r->nfields; i++) {
        const struct http1_field *f = &r->fields[i];
        if (http1_must_drop(r, buf, i))
            continue;
        for (uint32_t j = 0; j < f->name.len; j++) /* HTTP/2 names are lower case */
            if (buf[f->name.off + j] >= 'A' && buf[f->name.off + j] <= 'Z')
                buf[f->name.off + j] += 'a' - 'A';
        nv[n++] = (nghttp2_nv){buf + f->name.off, buf + f->value.off, f->name.len, f->value.len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    if (r->has_content_length) {
        int ln = snprintf(len, sizeof(len), "%llu", (unsigned long long)r->content_length);
        nv[n++] = L7_NV("content-length", len, (size_t)ln);
    }
    st->log.status = r->code;
    st->log.t_resp = loop_now(st->c->w->loop);
    l7_count(st->c, r->code, false);
    st->resp_left = r->content_length;
    http1_chunked_init(&st->resp_chunked);
    bool body =
        r->body != HTTP1_BODY_NONE && !(r->body == HTTP1_BODY_LENGTH && r->content_length == 0);
    /* nghttp2 copies the fields: the head's bytes can go */
    l7_h2_submit(st, nv, n, body);
    l7_buf_consume(&st->be.in, r->len);
}

/* One stream's backend: bytes both ways, its response head, its window. */
static bool l7_h2_stream_io(struct l7_h2 *h, struct l7_h2_stream *st)
{
    struct conn *c = st->c;
    bool moved = false;
    int rc;

    if (st->be.ev.fd < 0 || st->be.connecting)
        return false;
    if ((rc = l7_backend_io(c, &st->be)) < 0) {
        l7_h2_lost(st, false);
        return true;
    }
    moved = rc > 0;
    if (st->be.out.len == 0) {
        st->chunk_open = false;
        if (st->unconsumed > 0) { /* the backend took it all: the client may send more */
            nghttp2_session_consume(h->s, st->id, st->unconsumed);
            st->unconsumed = 0;
            moved = true;
        }
    }
    if (moved)
        st->t_active = loop_now(c->w->loop);
    if (!st->resp_head && st->be.in.len > 0) {
        switch (http1_parse(&st->resp, st->be.in.p, st->be.in.len)) {
        case HTTP1_NEED_MORE:
            l7_buf_room(&st->be.in,
                        MC_MIN((size_t)HTTP1_HEAD_MAX + 1 - st->be.in.len, L7_BUF_FIRST));
            break;
        case HTTP1_ERROR:
            log_debug("bad response head from %s: %s", c->route->backend, st->resp.err);
            l7_h2_answer(st, 502);
            return true;
        case HTTP1_OK:
            l7_h2_response(st);
            moved = true;
            break;
        }
    }
    if (st->be.eof && st->be.in.len == 0 && st->be.ev.fd >= 0 && !st->resp_end &&
        st->resp.body != HTTP1_BODY_CLOSE) {
        l7_h2_lost(st, false); /* closed before the response ended */
        return true;
    }
    if (st->deferred && st->resp_head && (st->be.in.len > 0 || st->be.eof)) {
        l7_h2_resume(st);
        moved = true;
    }
    return moved;
}

void l7_h2_resume(struct l7_h2_stream *st)
{
    if (st->deferred && st->resp_head) {
        st->deferred = false;
        nghttp2_session_resume_data(st->c->l7->h2->s, st->id);
    }
}

/* A stream waiting for its response head has response_timeout, any other idle_timeout. */
static uint64_t l7_h2_deadline(const struct conn *c, const struct l7_h2_stream *st)
{
    return st->t_active + (st->dispatched && !st->resp_head ? c->w->settings.response_timeout_ms
                                                            : c->w->settings.idle_timeout_ms);
}

void l7_h2_run(struct conn *c)
{
    struct l7 *l = c->l7;
    struct l7_h2 *h = l->h2;
    int rc;

    for (int round = 0; round < 1024; round++) {
        bool moved = false;
        h->moved = false;
        if ((rc = l7_client_read(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        if (l->in.len > 0 && !l->close_after) {
            h->new_now = 0;
            ssize_t n = nghttp2_session_mem_recv(h->s, l->in.p, l->in.len);
            if (n < 0) {
                if (!h->calm)
                    l7_h2_fail(c,
                               n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                                        : NGHTTP2_PROTOCOL_ERROR,
                               nghttp2_strerror((int)n));
                l->in.len = 0;
            } else {
                l7_buf_consume(&l->in, (size_t)n);
            }
            if (nghttp2_session_get_outbound_queue_size(h->s) > L7_H2_OUTQ_MAX)
                l7_h2_fail(c, NGHTTP2_ENHANCE_YOUR_CALM, "client reads nothing of our frames");
            moved = true;
        }
        for (struct l7_h2_stream *st = h->streams; st != NULL; st = st->next)
            moved |= l7_h2_stream_io(h, st);
        moved |= l7_h2be_run(c) > 0;
        if (nghttp2_session_send(h->s) != 0) {
            conn_close(c, REASON_NONE, "error");
            return;
        }
        moved |= h->moved;
        if ((rc = l7_client_write(c)) < 0) {
            conn_close(c, REASON_NONE, "client_error");
            return;
        }
        moved |= rc > 0;
        if (l->cout.len == 0 &&
            (l->close_after || l->client_eof ||
             (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)))) {
            conn_close(c, REASON_NONE,
                       h->calm            ? "h2_calm"
                       : h->n_streams > 0 ? "client_closed"
                                          : "ok");
            return;
        }
        if (!moved)
            break;
    }
    /* the earliest deadline: a stream's, or the connection's when it has none or closes */
    uint64_t at = h->t_active + c->w->settings.idle_timeout_ms;
    if (h->n_streams > 0 && !l->close_after) {
        at = UINT64_MAX;
        for (struct l7_h2_stream *st = h->streams; st != NULL; st = st->next)
            at = MC_MIN(at, l7_h2_deadline(c, st));
    }
    loop_timer_set_at(c->w->loop, &c->timer, at);
}

void l7_h2_on_timer(struct conn *c)
{
    struct l7_h2 *h = c->l7->h2;
    uint64_t now = loop_now(c->w->loop);

    if (c->l7->close_after) {
        /* a client that does not read our GOAWAY within idle_timeout is not waited for */
        conn_close(c, REASON_NONE, h->calm ? "h2_calm" : "idle_timeout");
        return;
    }
    if (h->n_streams == 0 && h->t_active + c->w->settings.idle_timeout_ms <= now) {
        /* idle: GOAWAY, and the connection closes once it is written */
        nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
        c->l7->close_after = true;
        h->t_active = now;
    }
    for (struct l7_h2_stream *st = h->streams; st != NULL; st = st->next) {
        bool waiting = st->dispatched && !st->resp_head;
        if (l7_h2_deadline(c, st) > now)
            continue;
        st->t_active = now;
        if (waiting) {
            if (st->be.connecting)
                atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_TIMEOUT], 1,
                                          memory_order_relaxed);
            l7_h2_answer(st, st->be.connecting ? 502 : 504);
        } else {
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
            l7_backend_close(&st->be);
        }
    }
    l7_h2_run(c);
}

void l7_h2_drain(struct conn *c)
{
    nghttp2_session *s = c->l7->h2->s;

    nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    l7_h2_run(c);
}

static void l7_h2_on_backend(struct ev *ev, uint32_t events)
{
    struct l7_h2_stream *st = ev->data;

    if (st->dead || st->c->state != CS_L7)
        return; /* closed earlier in this loop iteration */
    int err = l7_backend_connect_result(st->c, &st->be, events);
    if (err == EINPROGRESS)
        return;
    if (err != 0)
        l7_h2_lost(st, err > 0);
    l7_h2_run(st->c);
}
