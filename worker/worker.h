/*
 * A worker process: one epoll loop, no threads. It accepts on its own
 * SO_REUSEPORT sockets and runs every connection through
 * [PROXY] -> firewall -> SNI -> route (conn.c) -> L4 relay (l4.c) or L7
 * proxy (l7*.c). What it
 * routes by arrives from the master over the channel, one generation
 * (gen.h) at a time.
 */
#ifndef MC_WORKER_H
#define MC_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/acceptor.h"
#include "common/addr.h"
#include "common/chan.h"
#include "common/loop.h"
#include "common/msg.h"
#include "common/shm.h"
#include "worker/gen.h"
#include "worker/hello.h"
#include "worker/relay.h"
#include "worker/route.h"

struct conn;

/* One change of a delta generation: add (or replace) a route, or remove one. */
struct delta_op {
    uint32_t listener;
    struct route *add; /* referenced */
    char *del;         /* hostname */
};

/* A listener's sockets (struct wsock) share this; what it routes by is in struct gen. */
struct wlistener {
    struct worker *w;
    unsigned id;
    char addr[ADDR_STRLEN];
};

/*
 * One accept socket. A worker usually has one per listener; after a reload
 * to fewer workers it takes over several, so no socket is ever closed.
 */
struct wsock {
    struct wlistener *l;
    struct acceptor acc;
};

struct worker {
    unsigned id;
    struct loop *loop;
    struct chan chan;
    struct ev chan_ev;
    struct shm *shm;
    struct shm_worker *slot;
    struct msg_settings settings;
    bool have_settings;

    struct wlistener listeners[MC_MAX_LISTENERS];
    struct wsock **socks;
    unsigned n_socks;

    struct gen *cur;           /* what new connections are admitted and routed with */
    struct gen *pending;       /* the generation being received, current from its COMMIT */
    bool pending_delta;        /* it shares cur's route tables: ops change them at COMMIT */
    bool pending_rules;        /* it carries a new firewall */
    uint32_t pending_n_routes; /* total the tables must hold after the commit */
    uint32_t pending_n_rules;
    struct delta_op *ops;
    unsigned n_ops, cap_ops;
    bool started;

    struct geoip *geoip; /* NULL without geoip_db */
    void *ratelimit;     /* the shared rate-limit table */

    struct conn *conns; /* every live connection */
    unsigned n_conns;
    struct conn *dead;   /* closed this iteration, freed after it */
    struct conn *resume; /* relays that yielded with work left */
    struct timer resume_timer;

    bool draining;
    struct timer drain_timer;
    struct timer beat_timer;   /* wakes an idle loop so that it shows life (shm.h) */
    uint64_t emfile_logged_ms; /* the last accept pause logged, for all its sockets */

    struct pipe_pool pipes;
    uint8_t scratch[HELLO_MAX_MSG]; /* hello_parse() gathers split messages here */
};

/* conn.c */
void conn_accept(struct wlistener *l, int fd, const struct mc_addr *peer);
void conn_close_all(struct worker *w);
void conn_free_dead(struct worker *w);
/* The worker drains: connections that can say so (HTTP/2's GOAWAY) are told. */
void conn_drain_all(struct worker *w);
/* l4.c: resumes the relays that yielded with work left */
void l4_resume_all(struct timer *t);
/* l7_pool.c: closes the idle backend connections (drain, exit) */
void l7_pool_close_all(void);

#endif
