/*
 * Arbitrary bytes, after the client preface, into an nghttp2 server
 * session set up as l7_h2.c sets up its own (messaging checks on, no
 * automatic WINDOW_UPDATE, 100 streams, the Debian backports' reset and
 * CONTINUATION limits), whose header callbacks hand every request field
 * to l7_h2_req.c, as l7_h2.c's do. Each complete request becomes an
 * HTTP/1.1 head, which http1.c's parser must take whole or refuse with a
 * status; a request refused while its fields came keeps no more of them.
 * The session's output goes nowhere (no socket).
 */
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "worker/l7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAMS 8 /* requests kept at once; more are refused */

static struct {
    int32_t id; /* 0: a free slot */
    struct l7_h2_req req;
} reqs[STREAMS];

static uint8_t head[L7_H2_REQ_MAX + 512];
static struct http1_field fields[L7_FIELDS];

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int slot(int32_t id)
{
    for (int i = 0; i < STREAMS; i++)
        if (reqs[i].id == id)
            return i;
    return -1;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    int i = slot(0);

    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (i < 0) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    reqs[i].id = f->hd.stream_id;
    l7_h2_req_init(&reqs[i].req);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    int i = slot(f->hd.stream_id);

    (void)s;
    (void)flags;
    (void)user;
    if (i < 0 || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct l7_h2_req *r = &reqs[i].req;
    size_t kept = r->lines.len + r->pseudo.len;
    bool refused = r->refuse != 0;
    if (!l7_h2_req_field(r, name, nlen, value, vlen))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    check(!refused || r->lines.len + r->pseudo.len == kept);
    check(r->lines.len <= L7_H2_REQ_MAX && r->pseudo.len <= L7_H2_REQ_MAX);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    int i = slot(f->hd.stream_id);
    struct http1_head h;

    (void)s;
    (void)user;
    if (i < 0 || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct l7_h2_req *r = &reqs[i].req;
    bool body = !(f->hd.flags & NGHTTP2_FLAG_END_STREAM);
    size_t n = r->refuse ? 0 : l7_h2_req_head(r, body, head, sizeof(head));
    if (n > 0) {
        http1_request_init(&h, fields, L7_FIELDS);
        enum http1_status st = http1_parse(&h, head, n);
        /* the head is whole: never NEED_MORE; taken, it ends where it was written */
        check(st != HTTP1_NEED_MORE);
        check(st != HTTP1_OK || h.len == n);
        check(st != HTTP1_ERROR || (h.status >= 400 && h.status < 600));
        check(st != HTTP1_OK || body || h.body == HTTP1_BODY_NONE ||
              (h.body == HTTP1_BODY_LENGTH && r->has_length));
    }
    l7_h2_req_free(r);
    reqs[i].id = 0;
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    int i = slot(id);

    (void)s;
    (void)code;
    (void)user;
    if (i >= 0) {
        l7_h2_req_free(&reqs[i].req);
        reqs[i].id = 0;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    (void)data;
    (void)user;
    nghttp2_session_consume(s, id, len);
    return 0;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)s;
    (void)data;
    (void)flags;
    (void)user;
    return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s;

    if (nghttp2_session_callbacks_new(&cb) != 0)
        return 0;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_recv_client_magic(opt, 1); /* the input is frames */
#ifdef MC_HAVE_NGHTTP2_RESET_RATE_LIMIT
    nghttp2_option_set_stream_reset_rate_limit(opt, 200, 33);
#endif
#ifdef MC_HAVE_NGHTTP2_MAX_CONTINUATIONS
    nghttp2_option_set_max_continuations(opt, 8);
#endif
    if (nghttp2_session_server_new2(&s, cb, NULL, opt) == 0) {
        nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
        nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1);
        /* in pieces, as a socket hands them over: byte 0 is the piece size */
        size_t piece = size > 0 ? 1 + data[0] * 64u : 1;
        for (size_t off = size > 0 ? 1 : 0; off < size;) {
            size_t n = size - off < piece ? size - off : piece;
            if (nghttp2_session_mem_recv(s, data + off, n) < 0)
                break;
            nghttp2_session_send(s);
            off += n;
        }
        nghttp2_session_del(s);
    }
    for (int i = 0; i < STREAMS; i++) {
        l7_h2_req_free(&reqs[i].req);
        reqs[i].id = 0;
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return 0;
}
