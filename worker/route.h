/*
 * Per-listener route tables: hostname -> backend. Routes are immutable
 * and reference-counted, so a connection keeps the route it was given
 * after the table it came from has been replaced.
 */
#ifndef MC_ROUTE_H
#define MC_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/config.h"

struct route_l7;

struct route {
    unsigned refs;
    char *hostname; /* normalised; "*.suffix" for a wildcard */
    char *backend;  /* as configured, for logs */
    struct mc_addr backend_addr;
    enum route_mode mode;
    bool backend_tls;
    bool send_proxy_protocol;
    struct route_l7 *l7; /* mode l7: its TLS context and policies, owned (route_l7.h) */
};

struct route_table; /* opaque open-addressing hash table */

/* New route with one reference. The hostname is stored as
 * hostname_normalize_pattern() writes it. NULL on allocation failure or
 * when the hostname is invalid. */
struct route *route_new(const char *hostname, const char *backend,
                        const struct mc_addr *backend_addr, enum route_mode mode, bool backend_tls,
                        bool send_proxy_protocol);
struct route *route_ref(struct route *r);
void route_unref(struct route *r);

/* An empty table sized for about `expected` routes, with one reference.
 * NULL on allocation failure. Tables are shared by consecutive routing
 * generations (a delta changes the table in place), hence the count. */
struct route_table *route_table_new(unsigned expected);
struct route_table *route_table_ref(struct route_table *t);
/* Drops a reference; the last one frees the table and its references on every route. */
void route_table_unref(struct route_table *t);

/* Adds r (the table takes one new reference). An existing entry with the
 * same hostname is replaced. -1 on allocation failure. */
int route_table_add(struct route_table *t, struct route *r);
unsigned route_table_count(const struct route_table *t);
/* Drops the entry for a normalised hostname (pattern); 1 if there was one, 0 if not. */
int route_table_remove(struct route_table *t, const char *hostname);

/*
 * Looks up an SNI exactly as the client sent it (sni[0..len), any
 * bytes). The name goes through hostname_normalize(); an invalid name
 * never matches. Exact match first, then "*." + the name minus its first
 * label. Returns a borrowed pointer (route_ref it to keep it) or NULL.
 */
struct route *route_table_lookup(const struct route_table *t, const char *sni, size_t len);

#endif
