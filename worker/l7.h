/*
 * The parts of an L7 connection (l7.c) that its helper files share:
 * l7_buf.c (the bounded buffers), l7_head.c (what a head becomes when it
 * is passed on), l7_backend.c (the backend connection, plain or TLS),
 * l7_pool.c (the worker's idle backend connections), l7_h2.c (HTTP/2
 * clients), l7_h2_req.c (their requests' fields), l7_h2be.c (their gRPC
 * calls' h2 session to the backend).
 */
#ifndef MC_L7_H
#define MC_L7_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mc.h"
#include "worker/conn.h"
#include "worker/http1.h"

#define L7_BUF_FIRST (16 * 1024)
#define L7_BUF_MAX   (HTTP1_HEAD_MAX + 4096) /* a whole head, and room to rewrite it */
#define L7_FIELDS    100                     /* header fields per head; more -> 431 */

struct l7_buf {
    uint8_t *p;
    size_t len, cap;
    size_t off; /* output buffers: bytes already sent */
    size_t max; /* largest cap; 0 is L7_BUF_MAX */
};

/* A connection to the route's backend, plain or TLS: the client's own in
 * HTTP/1.1, one per stream in HTTP/2 (l7_backend.c). */
struct l7_be {
    struct ev ev; /* fd -1: none; cb and data stay for a retry */
    SSL *ssl;     /* backend_tls */
    bool handshaken;
    bool ready;      /* the socket may have bytes: it raised an edge since it drained */
    bool connecting; /* connect() in progress */
    bool eof, shut;
    bool reused; /* it served an earlier request */
    bool replay; /* ... and out keeps the request whole, to retry it on a new one */
    bool h2;     /* speaks h2 (gRPC): ALPN h2 with backend_tls, never pooled */
    struct l7_buf out, in;
    uint64_t t_connect_us; /* connect() called: for the latency histogram */
};

/* What a request's access line says (the head's bytes are gone by then). */
struct l7_reqlog {
    char method[16], host[MC_HOSTNAME_MAX + 8], path[256];
    unsigned status;
    char grpc_status[4]; /* gRPC calls: the grpc-status the call ended with */
    uint64_t req_bytes, resp_bytes, t_req, t_sent, t_resp;
};

struct l7_h2;

enum l7_req { RQ_HEAD, RQ_BODY, RQ_DONE };
enum l7_resp { RS_IDLE, RS_HEAD, RS_BODY, RS_DONE };

struct l7 {
    SSL *ssl;
    bool preface; /* the read BIO still serves the buffered ClientHello */
    bool handshaken;
    bool want_write; /* OpenSSL waits for the client socket to be writable */
    bool client_eof;
    bool close_after; /* close once everything for the client is written */
    bool tunnel;      /* after a WebSocket 101: bytes both ways as they are */
    bool keep;        /* this exchange leaves both connections reusable */
    struct l7_h2 *h2; /* ALPN h2: the session and its streams (l7_h2.c) */
    struct l7_buf in, cout;
    struct l7_be be; /* HTTP/1.1: the backend connection, out and in its buffers */
    struct http1_head req, resp;
    struct http1_field req_fields[L7_FIELDS], resp_fields[L7_FIELDS];
    struct http1_chunked req_chunked, resp_chunked;
    enum l7_req rq;
    enum l7_resp rs;
    uint64_t req_left, resp_left;
    struct l7_reqlog log;
};

/* l7.c, shared with l7_h2.c */
/* Decrypted client bytes into in: 1 when some came, 0 when none, -1 on error. */
int l7_client_read(struct conn *c);
/* cout to the client: 1 when some left, 0 when none could, -1 on error. */
int l7_client_write(struct conn *c);
/* The request's fields for its access line, from its parsed head over buf. */
void l7_reqlog_start(struct conn *c, struct l7_reqlog *rl, const struct http1_head *h,
                     const uint8_t *buf);
/* Its access line; proto is "HTTP/1.1" or "HTTP/2.0". */
void l7_reqlog_write(struct conn *c, struct l7_reqlog *rl, const char *proto);
/* Whether a request with method m may go again (RFC 9110 9.2.2). */
bool l7_idempotent(enum http1_method m);
/* Counts a final response (the backend's or ours) in the route's metrics. */
void l7_count(struct conn *c, unsigned status, bool policy_block);

/* l7_buf.c: room for at least want more bytes, growing up to L7_BUF_MAX;
 * false when there is none. */
bool l7_buf_room(struct l7_buf *b, size_t want);
void l7_buf_consume(struct l7_buf *b, size_t n);
bool l7_buf_put(struct l7_buf *b, const void *p, size_t n);
bool l7_buf_printf(struct l7_buf *b, const char *fmt, ...) MC_PRINTF(2, 3);
void l7_buf_free(struct l7_buf *b);

/* l7_head.c */
const char *l7_head_reason(unsigned status);
/* Whether the request's Host (or absolute-form authority) names c's route. */
bool l7_head_host_ok(struct conn *c, const uint8_t *buf, struct http1_span host);
/* The checks a parsed request h over buf meets before it goes on: 0 when
 * it may, else the status to answer (421, 403). */
unsigned l7_head_check(struct conn *c, const struct http1_head *h, const uint8_t *buf);
/* Whether one of the route's policies refuses the parsed request h over buf. */
bool l7_head_refused(const struct conn *c, const struct http1_head *h, const uint8_t *buf);
/* The parsed request h (over buf) as the backend gets it, into out. */
bool l7_head_request(struct conn *c, const struct http1_head *h, const uint8_t *buf,
                     struct l7_buf *out);
/* The parsed response (over be.in) as the client gets it, into cout. */
bool l7_head_response(struct conn *c);

/* l7_backend.c */
/* A backend connection b for c's request: the one b kept, an idle one from
 * the pool, or a new one; cb gets its events with data. false when it
 * cannot be started. */
bool l7_backend_connect(struct conn *c, struct l7_be *b, ev_fn *cb, void *data);
/* The request in b->out again, on a new connection. */
bool l7_backend_retry(struct conn *c, struct l7_be *b);
/* The exchange is over: a reusable connection to the pool (or kept for
 * a PROXY route's client), else closed. */
void l7_backend_release(struct conn *c, struct l7_be *b, bool reusable);
/* Whether b is fit for another request once its exchange is over. */
bool l7_backend_reusable(const struct l7_be *b);
/* backend_tls: the name the backend's handshake carries ("" for none). */
const char *l7_backend_sni(const struct conn *c);
/* Its connect() ended, by these epoll events: 0 connected (PROXY header
 * and TLS started where the route wants them), EINPROGRESS not yet, -1
 * connected but neither could start, else the errno connect() failed with. */
int l7_backend_connect_result(struct conn *c, struct l7_be *b, uint32_t events);
/* Moves b->out to the backend and the backend's bytes into b->in: 1 when
 * something moved, 0 when nothing could, -1 when the backend failed. */
int l7_backend_io(struct conn *c, struct l7_be *b);
/* Our side is done sending (TLS: our close_notify). */
void l7_backend_shutdown(struct l7_be *b);
/* The socket and its TLS closed, what was to be sent dropped. */
void l7_backend_close(struct l7_be *b);
/* ... and its buffers freed. */
void l7_backend_free(struct l7_be *b);

/* l7_pool.c */
/* b, reusable, into the pool (or closed when draining). */
void l7_pool_put(struct conn *c, struct l7_be *b);
/* An idle connection to c's backend into b; false when none. */
bool l7_pool_take(struct conn *c, struct l7_be *b);
/* An HTTP/2 stream to an HTTP/1.1 backend starts (more) or ends: while it
 * runs, the pool keeps one more idle connection per backend. */
void l7_pool_want(bool more);

/* l7_h2_req.c: an HTTP/2 request's fields, and the HTTP/1.1 head they make. */
#define L7_H2_REQ_MAX (HTTP1_HEAD_MAX + 1024) /* a head's fields, kept as lines */
struct l7_h2_req {
    struct l7_buf lines;  /* the regular fields, "name: value\r\n" */
    struct l7_buf pseudo; /* the pseudo-header values, at the spans below */
    struct http1_span method, scheme, authority, path;
    size_t bytes;    /* name and value bytes, 4 more a field: what the head costs */
    unsigned refuse; /* 0, or the status the request gets (400, 431) */
    bool has_length; /* a content-length field came */
    bool grpc;       /* content-type application/grpc... */
};
void l7_h2_req_init(struct l7_h2_req *r);
/* One field of the header block, in order; false on ENOMEM. A bad one
 * sets refuse, and no field is kept after that. */
bool l7_h2_req_field(struct l7_h2_req *r, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen);
/* The request as an HTTP/1.1 head into out[0..cap), chunked when a body
 * follows without a content-length: its length, 0 when it does not fit. */
size_t l7_h2_req_head(const struct l7_h2_req *r, bool body, uint8_t *out, size_t cap);
void l7_h2_req_free(struct l7_h2_req *r);

/* An nghttp2 field named by a string literal, its value v[0..vlen) (nghttp2 copies both). */
#define L7_NV(name, v, vlen)                                                                       \
    ((nghttp2_nv){(uint8_t *)(name), (uint8_t *)(v), sizeof(name) - 1, (vlen),                     \
                  NGHTTP2_NV_FLAG_NONE})

/* l7_h2.c: a client connection that chose h2 by ALPN. */
struct l7_h2be;
struct l7_h2_stream {
    struct l7_h2_stream *prev, *next, *next_dead;
    struct conn *c;
    int32_t id;
    bool dead;
    bool dispatched; /* the request went to the backend, or was answered */
    bool req_end;    /* the client's END_STREAM came */
    bool chunked;    /* the request body goes chunked */
    bool chunk_open; /* out ends in a chunk not sent yet, at chunk_at: more data joins it */
    bool resp_head;  /* the response's head was submitted */
    bool resp_end;   /* every body byte went into DATA */
    bool deferred;   /* the data provider waits for bytes */
    bool grpc;
    bool pooled; /* counted in the pool's demand (l7_pool_want()) */
    size_t chunk_at;
    size_t unconsumed; /* DATA bytes in out, not yet consumed for the window */
    uint64_t t_active;
    struct l7_h2_req req;
    struct l7_be be;
    enum http1_method method;
    struct http1_head resp;
    struct http1_field resp_fields[L7_FIELDS];
    struct http1_chunked resp_chunked;
    uint64_t resp_left;
    struct l7_reqlog log;
    /* gRPC, to the backend's h2 session (l7_h2be.c): out holds the request
     * body, in the response's DATA; be has no socket */
    struct l7_h2be *up; /* the backend session carrying it, NULL for none */
    int32_t bid;        /* its stream on that session, 0 once closed */
    struct l7_buf rhdr; /* the backend's response fields or trailers, packed */
    bool trailers;      /* rhdr holds trailers for the end of the DATA */
};

struct l7_h2 {
    nghttp2_session *s;
    struct l7_h2_stream *streams;
    unsigned n_streams;
    unsigned budget;     /* resets left */
    unsigned empty;      /* empty DATA frames in a row */
    unsigned new_now;    /* streams opened by the current read */
    size_t block;        /* header block bytes so far */
    bool calm;           /* we decided to end it with ENHANCE_YOUR_CALM */
    bool moved;          /* a callback moved bytes */
    uint64_t t_active;   /* the last time a stream closed, or the start */
    struct l7_h2be *up;  /* gRPC: the backend session new calls go on, NULL until needed */
    struct l7_h2be *ups; /* every backend session: up, and those finishing after GOAWAY */
};

/* A small answer of ours to the stream: gRPC trailers-only for gRPC calls. */
void l7_h2_answer(struct l7_h2_stream *st, unsigned status);
/* Submits the response of nv[0..n), with a body to pull from be.in. */
void l7_h2_submit(struct l7_h2_stream *st, const nghttp2_nv *nv, size_t n, bool body);
/* Bytes came for a deferred response body: nghttp2 asks for them again. */
void l7_h2_resume(struct l7_h2_stream *st);
/* Starts its session; false when it cannot be. */
bool l7_h2_start(struct conn *c);
/* Moves what can move; the connection may be closed on return. */
void l7_h2_run(struct conn *c);
void l7_h2_on_timer(struct conn *c);
/* GOAWAY: no new streams; the connection closes after its last one. */
void l7_h2_drain(struct conn *c);
/* The session and its streams' backend connections closed, at conn_close(). */
void l7_h2_free(struct conn *c);

/* l7_h2be.c: gRPC calls to the backend over one h2 session per client connection. */
/* Submits st's request (the parsed head h over buf) to the session; false
 * when the session cannot be had. */
bool l7_h2be_request(struct conn *c, struct l7_h2_stream *st, const struct http1_head *h,
                     const uint8_t *buf);
/* Request body bytes came into st->be.out, or its end. */
void l7_h2be_resume(struct l7_h2_stream *st);
/* The client took n response bytes from st->be.in: the backend may send more. */
void l7_h2be_consumed(struct l7_h2_stream *st, size_t n);
/* The client's stream is gone: so is the backend's. */
void l7_h2be_detach(struct l7_h2_stream *st);
/* The backend's trailers of st to the client session, at the end of its DATA. */
bool l7_h2be_trailers(nghttp2_session *client, struct l7_h2_stream *st);
/* Moves the session's bytes: 1 when some moved. */
int l7_h2be_run(struct conn *c);
void l7_h2be_free(struct conn *c);
void l7_h2be_free_dead(void);

#endif
