/*
 * One generation of a worker's routing state: every listener's route
 * table and settings, the firewall, the GeoIP handle. A generation is
 * built aside while the master's messages arrive and becomes current as
 * one pointer swap on COMMIT, so no connection ever sees half of one.
 *
 * Reference-counted: the worker holds the current one, and a connection
 * holds the one it was admitted with until it is routed (its firewall
 * verdict, trusted proxies and route lookup all come from it). Parts that
 * did not change are shared with the previous generation: a delta keeps
 * the firewall and updates the shared route tables in place, so a change
 * costs the same with 10 routes or 10,000.
 */
#ifndef MC_GEN_H
#define MC_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/mc.h"

struct firewall;
struct geoip;
struct prefix_set;
struct route_table;

struct gen_listener {
    struct route_table *routes; /* referenced; NULL: no routes */
    uint32_t max_connections;   /* 0 = unlimited */
    bool proxy_protocol;
    struct prefix_set *trusted; /* owned; NULL: nobody may send a PROXY header */
};

struct gen {
    unsigned refs;
    uint32_t id;
    struct gen_listener listeners[MC_MAX_LISTENERS];
    struct firewall *fw;       /* referenced; NULL: none yet */
    const struct geoip *geoip; /* the worker's, for its whole life; NULL: none */
};

/* An empty generation with one reference; NULL on ENOMEM. */
struct gen *gen_new(uint32_t id, const struct geoip *geoip);
/* A generation sharing prev's route tables and firewall (a delta's
 * base); listener settings start empty, as every generation sends them. */
struct gen *gen_derive(const struct gen *prev, uint32_t id);
struct gen *gen_ref(struct gen *g);
void gen_unref(struct gen *g);

#endif
