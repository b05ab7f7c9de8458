/*
 * What an L7 route adds to a route: its TLS context, built from the PEM
 * the master sent (the worker opens no file), and its policies. Owned by
 * the route and freed with it.
 */
#ifndef MC_ROUTE_L7_H
#define MC_ROUTE_L7_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

struct route_policy {
    enum policy_type type;
    size_t len;
    char *value; /* NUL-terminated too */
};

struct shm_http_counts;

struct route_l7 {
    SSL_CTX *ctx; /* NULL: the master had no good certificate, connections are closed */
    struct route_policy *policies;
    unsigned n_policies;
    /* this worker's response counters for the route (shm_http_route()), found on first use */
    struct shm_http_counts *counts;
};

/* An empty L7 part (no context, no policies); NULL on ENOMEM. */
struct route_l7 *route_l7_new(unsigned n_policies);
/* The TLS context from a PEM chain and key, with the shared ticket keys
 * (tickets.h): TLS 1.2 at least, modern ciphers, ALPN h2 then http/1.1. -1 when
 * OpenSSL refuses them. */
int route_l7_set_tls(struct route_l7 *l7, const uint8_t *cert, size_t cert_len, const uint8_t *key,
                     size_t key_len);
void route_l7_free(struct route_l7 *l7);

#endif
