/*
 * A client connection. conn.c runs the part every route mode shares:
 *
 *   accept -> admission (max_connections) -> [PROXY header] -> firewall
 *          -> HELLO (ClientHello, handshake_timeout) -> route -> close + log
 *
 * and hands a routed connection to its mode: l4.c connects, replays the
 * hello and relays. conn_close() is the one place a connection is torn
 * down, refusals included; the struct is freed after the current loop
 * iteration, since another event for it may be queued in the same batch.
 */
#ifndef MC_CONN_H
#define MC_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/loop.h"
#include "common/reason.h"
#include "worker/hello.h"
#include "worker/relay.h"
#include "worker/worker.h"

enum conn_state {
    CS_PROXY, /* reading the PROXY header */
    CS_HELLO,
    CS_CONNECT, /* l4.c from here on */
    CS_REPLAY,
    CS_RELAY,
    CS_L7, /* l7.c: TLS terminated, HTTP proxied; its own phases in struct l7 */
    CS_CLOSED,
};

/* Everything read before the relay starts; freed once replayed. */
struct conn_hs {
    struct hello hello;
    uint32_t len, cap;
    uint8_t *data;
};

struct l7;

struct conn {
    struct worker *w;
    struct wlistener *l;
    enum conn_state state;
    bool heap;          /* false for the stand-in conn_accept uses when memory runs out */
    struct ev cev, bev; /* client, backend */
    struct timer timer;
    struct mc_addr client; /* the TCP peer, or the address its PROXY header gave */
    struct mc_addr peer;   /* the TCP peer, when a PROXY header replaced it */
    struct mc_addr local;  /* the address the client reached, when a PROXY header said it */
    bool proxied;
    struct gen *gen;     /* referenced from accept until routed */
    struct route *route; /* referenced: survives table swaps */
    char *sni;           /* as sent, for the access log */
    struct conn_hs *hs;
    struct l7 *l7; /* mode l7: TLS and HTTP state, owned */
    uint32_t replay_off;
    uint32_t replay_prefix;    /* of hs: our PROXY header, not the client's bytes */
    struct relay_dir up, down; /* client->backend, backend->client */
    uint64_t t_accept, t_active;
    uint64_t t_connect_us; /* connect() called: for the latency histogram */
    struct conn *prev, *next;
    struct conn *next_dead;
    struct conn *next_resume;
    bool resume_queued;
};

/* A non-blocking connect of socket fd, from its epoll events: 0
 * connected, EINPROGRESS still going, else why it failed. */
int conn_connect_result(int fd, uint32_t events);

/* reason is a refusal code, or REASON_NONE with result saying how an
 * admitted connection ended. */
void conn_close(struct conn *c, enum reason reason, const char *result);

/* l7.c: a routed L7 connection: TLS with the route's certificate, then HTTP/1.1 or HTTP/2. */
void l7_start(struct conn *c);
void l7_on_client(struct conn *c);
void l7_on_timer(struct conn *c);
void l7_free(struct conn *c);
/* The worker drains: an HTTP/2 client gets GOAWAY and ends with its last stream. */
void l7_drain(struct conn *c);
/* l7_h2.c: frees the HTTP/2 streams closed in this loop iteration. */
void l7_h2_free_dead(void);

/* l4.c: a routed L4 connection: connect, replay, relay. */
void l4_start(struct conn *c);
/* A client event in one of l4's states. */
void l4_on_client(struct conn *c);
/* The connection's timer in one of l4's states. */
void l4_on_timer(struct conn *c);

#endif
