/*
 * The parts of an L7 connection (l7.c) that its helper files share:
 * l7_buf.c (the bounded buffers), l7_head.c (what a head becomes when it
 * is passed on), l7_backend.c (the backend connection, plain or TLS),
 * l7_pool.c (the worker's idle backend connections).
 */
#ifndef MC_L7_H
#define MC_L7_H

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
    bool bready;      /* the backend socket may have bytes: it raised an edge since it drained */
    bool connecting;  /* backend connect() in progress */
    bool close_after; /* close once everything for the client is written */
    bool tunnel;      /* after a WebSocket 101: bytes both ways as they are */
    bool keep;        /* this exchange leaves both connections reusable */
    bool reused;      /* the backend connection served an earlier request */
    bool replay;      /* ... and bout keeps the request whole, to retry it on a new one */
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
/* Whether one of the route's policies refuses the parsed request. */
bool l7_head_refused(const struct conn *c, const uint8_t *buf);
/* The parsed request (over buf) as the backend gets it, into bout. */
bool l7_head_request(struct conn *c, const uint8_t *buf);
/* The parsed response (over bin) as the client gets it, into cout. */
bool l7_head_response(struct conn *c);

/* l7_backend.c */
/* A backend connection for the request: the one kept for this client, an
 * idle one from the pool, or a new one; cb gets its events. false when
 * it cannot be started. */
bool l7_backend_connect(struct conn *c, ev_fn *cb);
/* The request in bout again, on a new connection. */
bool l7_backend_retry(struct conn *c, ev_fn *cb);
/* The exchange is over: the connection to the pool, kept, or closed. */
void l7_backend_release(struct conn *c);
/* backend_tls: the name the backend's handshake carries ("" for none). */
const char *l7_backend_sni(const struct conn *c);
/* Connected: a PROXY header and TLS where the route wants them. */
bool l7_backend_connected(struct conn *c);
/* Moves bout to the backend and the backend's bytes into bin: 1 when
 * something moved, 0 when nothing could, -1 when the backend failed. */
int l7_backend_io(struct conn *c);
void l7_backend_close(struct conn *c);

/* l7_pool.c */
/* c's backend connection, reusable, into the pool (or closed when draining). */
void l7_pool_put(struct conn *c);
/* An idle connection to c's backend into c->bev and bssl; false when none. */
bool l7_pool_take(struct conn *c, ev_fn *cb);

#endif
