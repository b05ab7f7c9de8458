/*
 * gRPC calls of an HTTP/2 client connection to the backend (l7.h): one
 * nghttp2 client session, h2c to a plaintext backend or h2 by ALPN with
 * backend_tls, that carries every gRPC stream of the client connection,
 * as many at once as the backend's SETTINGS allow (nghttp2 queues the
 * rest). HTTP/1.1 cannot carry trailers, which gRPC ends every call with.
 *
 * The session belongs to its client connection: a PROXY header names one
 * client, and the session's lifetime is the connection's at most. It is
 * opened by the first gRPC call and lives until either side ends it.
 *
 * Flow control, both ways tied to what the other side took: request DATA
 * waits in the stream's out buffer (the client's stream window bounds
 * it) and its client window credit goes back when this session's data
 * provider took the bytes for the backend; response DATA waits in the
 * stream's in buffer (this session's stream window bounds it), credited
 * to the backend when the client's data provider took it. Response
 * fields and trailers are passed as they came (nghttp2 checked them),
 * packed in the stream's rhdr until they are submitted to the client.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker/l7.h"
#include "common/log.h"

#define L7_H2BE_FIELDS_MAX HTTP1_HEAD_MAX /* packed response fields, or trailers */

struct l7_h2be {
    struct l7_h2be *next; /* the client connection's sessions */
    struct conn *c;
    struct l7_be be; /* out: the session's bytes to send; in: the backend's */
    nghttp2_session *s;
    bool dead;
    bool moved; /* a callback moved bytes */
    struct l7_h2be *next_dead;
};

/* Freed after the loop iteration: an event may be queued for one. */
static struct l7_h2be *l7_h2be_dead;

static void l7_h2be_on_event(struct ev *ev, uint32_t events);

/* A field into rhdr: its name's and value's lengths (4 bytes each), then both. */
static bool l7_h2be_pack(struct l7_buf *b, const uint8_t *name, size_t nlen, const uint8_t *value,
                         size_t vlen)
{
    uint32_t len[2] = {(uint32_t)nlen, (uint32_t)vlen};

    return b->len + sizeof(len) + nlen + vlen <= L7_H2BE_FIELDS_MAX &&
           l7_buf_put(b, len, sizeof(len)) && l7_buf_put(b, name, nlen) &&
           l7_buf_put(b, value, vlen);
}

/* rhdr's fields as nghttp2_nv over its bytes; how many. */
static size_t l7_h2be_unpack(const struct l7_buf *b, nghttp2_nv *nv, size_t max)
{
    size_t n = 0;
    uint32_t len[2];

    for (size_t off = 0; off + sizeof(len) <= b->len && n < max; n++) {
        memcpy(len, b->p + off, sizeof(len));
        off += sizeof(len);
        nv[n] = (nghttp2_nv){b->p + off, b->p + off + len[0], len[0], len[1], NGHTTP2_NV_FLAG_NONE};
        off += (size_t)len[0] + len[1];
    }
    return n;
}

static void l7_h2be_fail(struct l7_h2be *up);

bool l7_h2be_trailers(nghttp2_session *client, struct l7_h2_stream *st)
{
    nghttp2_nv nv[L7_FIELDS];
    size_t n = l7_h2be_unpack(&st->rhdr, nv, L7_FIELDS);

    return nghttp2_submit_trailer(client, st->id, nv, n) == 0;
}

/* The session's output into be.out, never past its bound. */
static ssize_t l7_h2be_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                            void *user)
{
    struct l7_h2be *up = user;
    struct l7_buf *out = &up->be.out;

    (void)s;
    (void)flags;
    if (!l7_buf_room(out, 1))
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = MC_MIN(len, out->cap - out->len);
    memcpy(out->p + out->len, data, n);
    out->len += n;
    up->moved = true;
    return (ssize_t)n;
}

static int l7_h2be_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                             size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                             void *user)
{
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

    (void)flags;
    (void)user;
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0 && vlen < sizeof(st->log.grpc_status)) {
        memcpy(st->log.grpc_status, value, vlen);
        st->log.grpc_status[vlen] = '\0';
    }
    /* past 64 KiB of fields: the backend's stream is reset, and the client's answered */
    return l7_h2be_pack(&st->rhdr, name, nlen, value, vlen) ? 0
                                                            : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* The backend's response head: HEADERS to the client, the end too when it is trailers-only. */
static void l7_h2be_response(struct l7_h2_stream *st, bool end)
{
    nghttp2_nv nv[L7_FIELDS + 1];
    size_t n = l7_h2be_unpack(&st->rhdr, nv, sizeof(nv) / sizeof(nv[0]));
    unsigned status =
        n > 0 && nv[0].namelen == 7 && memcmp(nv[0].name, ":status", 7) == 0 && nv[0].valuelen == 3
            ? (unsigned)((nv[0].value[0] - '0') * 100 + (nv[0].value[1] - '0') * 10 +
                         (nv[0].value[2] - '0'))
            : 0;

    if (status >= 100 && status < 200) {
        st->rhdr.len = 0; /* an interim response: the final one follows */
        return;
    }
    st->log.status = status;
    st->log.t_resp = loop_now(st->c->w->loop);
    l7_count(st->c, status, false);
    st->be.eof = end;
    l7_h2_submit(st, nv, n, !end); /* nghttp2 copies the fields */
    st->rhdr.len = 0;
}

static int l7_h2be_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct l7_h2_stream *st =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id) : NULL;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)user;
    if (st == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        l7_h2be_response(st, end);
    } else if (f->hd.type == NGHTTP2_HEADERS && end && st->resp_head) {
        st->trailers = st->rhdr.len > 0; /* empty trailers are none: END_STREAM on DATA */
        st->be.eof = true;
        l7_h2_resume(st);
    } else if (f->hd.type == NGHTTP2_DATA && end) {
        st->be.eof = true;
        l7_h2_resume(st);
    }
    return 0;
}

static int l7_h2be_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                           size_t len, void *user)
{
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    (void)flags;
    (void)user;
    if (st == NULL || !st->resp_head) {
        nghttp2_session_consume(s, id, len); /* nobody takes it */
        return 0;
    }
    if (!l7_buf_put(&st->be.in, data, len)) {
        /* only a backend sending past the window it was given gets here */
        nghttp2_session_consume(s, id, len);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    l7_h2_resume(st);
    return 0;
}

static int l7_h2be_on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    (void)user;
    if (st == NULL)
        return 0;
    st->bid = 0;
    if (!st->be.eof) {
        log_debug("gRPC stream to %s ended early: %s", st->c->route->backend,
                  nghttp2_http2_strerror(code));
        l7_h2_answer(st, 502); /* trailers-only UNAVAILABLE, or a reset once the head went */
    }
    return 0;
}

/* The request body from the stream's out buffer; the client's window credit as it goes. */
static ssize_t l7_h2be_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                                 uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct l7_h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

    (void)src;
    (void)user;
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the client's stream is gone */
    struct l7_buf *out = &st->be.out;
    size_t n = MC_MIN(length, out->len);
    if (n > 0) {
        memcpy(buf, out->p, n);
        l7_buf_consume(out, n);
        nghttp2_session_consume(st->c->l7->h2->s, st->id, n);
        st->unconsumed -= MC_MIN(st->unconsumed, n);
    }
    if (st->req_end && out->len == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static void l7_h2be_free_one(struct l7_h2be *up);

/* The session new calls go on, opened on first use. One that had GOAWAY
 * (a backend's connection age, its restart) takes no more: it finishes
 * its calls, and new ones go on a new session. */
static struct l7_h2be *l7_h2be_get(struct conn *c)
{
    struct l7_h2 *h = c->l7->h2;
    struct l7_h2be *up = h->up;
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;

    if (up != NULL && nghttp2_session_check_request_allowed(up->s))
        return up;
    if ((up = calloc(1, sizeof(*up))) == NULL)
        return NULL;
    up->c = c;
    up->be.ev.fd = -1;
    up->be.h2 = true;
    up->next = h->ups;
    h->ups = h->up = up;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    bool ok = nghttp2_session_callbacks_new(&cb) == 0 && nghttp2_option_new(&opt) == 0;
    if (ok) {
        nghttp2_session_callbacks_set_send_callback(cb, l7_h2be_send);
        nghttp2_session_callbacks_set_on_header_callback(cb, l7_h2be_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, l7_h2be_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, l7_h2be_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, l7_h2be_on_stream_close);
        /* the backend's window reopens as the client takes the bytes */
        nghttp2_option_set_no_auto_window_update(opt, 1);
        nghttp2_option_set_peer_max_concurrent_streams(opt, 100); /* until its SETTINGS */
        ok = nghttp2_session_client_new2(&up->s, cb, up, opt) == 0 &&
             nghttp2_submit_settings(up->s, NGHTTP2_FLAG_NONE, iv, 1) == 0 &&
             /* a window per stream, so that one slow client stream holds back only itself */
             nghttp2_session_set_local_window_size(up->s, NGHTTP2_FLAG_NONE, 0,
                                                   100 * NGHTTP2_INITIAL_WINDOW_SIZE) == 0 &&
             l7_backend_connect(c, &up->be, l7_h2be_on_event, up);
    }
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (!ok) {
        l7_h2be_free_one(up);
        return NULL;
    }
    return up;
}

bool l7_h2be_request(struct conn *c, struct l7_h2_stream *st, const struct http1_head *h,
                     const uint8_t *buf)
{
    struct l7_h2be *up = l7_h2be_get(c);
    nghttp2_nv nv[L7_FIELDS + 8];
    char ip[ADDR_STRLEN];
    size_t n = 0;

    if (up == NULL)
        return false;
    addr_format_ip(&c->client, ip, sizeof(ip));
    nv[n++] = L7_NV(":method", buf + h->method.off, h->method.len);
    nv[n++] =
        L7_NV(":scheme", c->route->backend_tls ? "https" : "http", c->route->backend_tls ? 5 : 4);
    nv[n++] = L7_NV(":authority", buf + h->host.off, h->host.len);
    nv[n++] = L7_NV(":path", buf + h->target.off, h->target.len);
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http1_field *f = &h->fields[i];
        /* the Host line is :authority's; hop-by-hop and the client's forwarding fields go */
        if (http1_must_drop(h, buf, i) ||
            (f->name.len == 4 && strncasecmp((const char *)buf + f->name.off, "host", 4) == 0))
            continue;
        nv[n++] = (nghttp2_nv){(uint8_t *)buf + f->name.off, (uint8_t *)buf + f->value.off,
                               f->name.len, f->value.len, NGHTTP2_NV_FLAG_NONE};
    }
    nv[n++] = L7_NV("x-forwarded-for", ip, strlen(ip));
    nv[n++] = L7_NV("x-real-ip", ip, strlen(ip));
    nv[n++] = L7_NV("x-forwarded-proto", "https", 5);
    nghttp2_data_provider prd = {.read_callback = l7_h2be_read_body};
    int32_t id = nghttp2_submit_request(up->s, NULL, nv, n, st->req_end ? NULL : &prd, st);
    if (id < 0)
        return false;
    st->bid = id;
    st->up = up;
    st->resp.body = HTTP1_BODY_CLOSE; /* DATA until the backend's END_STREAM */
    return true;
}

void l7_h2be_resume(struct l7_h2_stream *st)
{
    if (st->bid != 0)
        nghttp2_session_resume_data(st->up->s, st->bid);
}

void l7_h2be_consumed(struct l7_h2_stream *st, size_t n)
{
    struct l7_h2be *up = st->up;

    if (up == NULL || n == 0)
        return;
    if (st->bid != 0)
        nghttp2_session_consume(up->s, st->bid, n);
    else /* its stream is closed: the connection's window must not leak */
        nghttp2_session_consume_connection(up->s, n);
}

void l7_h2be_detach(struct l7_h2_stream *st)
{
    struct l7_h2be *up = st->up;

    if (up == NULL || st->bid == 0)
        return;
    nghttp2_session_set_stream_user_data(up->s, st->bid, NULL);
    nghttp2_submit_rst_stream(up->s, NGHTTP2_FLAG_NONE, st->bid, NGHTTP2_CANCEL);
    st->bid = 0;
}

/* The session failed or ended: its calls get UNAVAILABLE (or a reset), it goes. */
static void l7_h2be_fail(struct l7_h2be *up)
{
    for (struct l7_h2_stream *st = up->c->l7->h2->streams; st != NULL; st = st->next) {
        if (st->up == up && st->bid != 0) {
            st->bid = 0;
            l7_h2_answer(st, 502);
        }
    }
    l7_h2be_free_one(up);
}

/* One session's bytes both ways: 1 when some moved. */
static int l7_h2be_run_one(struct conn *c, struct l7_h2be *up)
{
    bool moved = false;
    int rc;

    if (up->be.connecting)
        return 0;
    up->moved = false;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0 reads and sends what was queued; pass 1 sends what reading queued */
        if ((rc = l7_backend_io(c, &up->be)) < 0) {
            l7_h2be_fail(up);
            return 1;
        }
        moved |= rc > 0;
        if (pass == 1)
            break;
        if (up->be.in.len > 0) {
            ssize_t n = nghttp2_session_mem_recv(up->s, up->be.in.p, up->be.in.len);
            if (n < 0) {
                log_debug("h2 backend %s: %s", c->route->backend, nghttp2_strerror((int)n));
                l7_h2be_fail(up);
                return 1;
            }
            l7_buf_consume(&up->be.in, (size_t)n);
            moved = true;
        }
        if (nghttp2_session_send(up->s) != 0) {
            l7_h2be_fail(up);
            return 1;
        }
    }
    moved |= up->moved;
    if (up->be.eof || (!nghttp2_session_want_read(up->s) && !nghttp2_session_want_write(up->s))) {
        l7_h2be_fail(up); /* closed, or GOAWAY and every stream done */
        return 1;
    }
    return moved;
}

int l7_h2be_run(struct conn *c)
{
    int moved = 0;

    for (struct l7_h2be *up = c->l7->h2->ups, *next; up != NULL; up = next) {
        next = up->next; /* it may go */
        moved |= l7_h2be_run_one(c, up);
    }
    return moved;
}

static void l7_h2be_on_event(struct ev *ev, uint32_t events)
{
    struct l7_h2be *up = ev->data;
    struct conn *c = up->c;

    if (up->dead || c->state != CS_L7)
        return; /* closed earlier in this loop iteration */
    int err = l7_backend_connect_result(c, &up->be, events);
    if (err == EINPROGRESS)
        return;
    if (err != 0) {
        if (err > 0)
            atomic_fetch_add_explicit(&c->w->slot->refused[REASON_BACKEND_CONNECT_FAILED], 1,
                                      memory_order_relaxed);
        l7_h2be_fail(up);
    }
    l7_h2_run(c);
}

static void l7_h2be_free_one(struct l7_h2be *up)
{
    struct l7_h2 *h = up->c->l7->h2;

    for (struct l7_h2be **p = &h->ups; *p != NULL; p = &(*p)->next) {
        if (*p == up) {
            *p = up->next;
            break;
        }
    }
    if (h->up == up)
        h->up = NULL;
    for (struct l7_h2_stream *st = h->streams; st != NULL; st = st->next) {
        if (st->up == up) {
            st->up = NULL;
            st->bid = 0;
        }
    }
    l7_backend_free(&up->be);
    nghttp2_session_del(up->s);
    up->s = NULL;
    up->dead = true;
    up->next_dead = l7_h2be_dead;
    l7_h2be_dead = up;
}

void l7_h2be_free(struct conn *c)
{
    while (c->l7->h2->ups != NULL)
        l7_h2be_free_one(c->l7->h2->ups);
}

void l7_h2be_free_dead(void)
{
    while (l7_h2be_dead != NULL) {
        struct l7_h2be *up = l7_h2be_dead;
        l7_h2be_dead = up->next_dead;
        free(up);
    }
}
