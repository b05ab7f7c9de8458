/*
 * The L7 routes' certificate chains and keys. Workers cannot open files,
 * so the master reads them (PEM, at most MSG_PEM_MAX each), checks that
 * OpenSSL takes the chain and that the key matches, and sends the bytes
 * with the route. What it read last is kept: a file that goes bad (or
 * away) keeps serving the copy read before, and says why in the log.
 * Reading again happens after an admin change and on SIGHUP
 * (certs_mark_stale), when the copy is next asked for.
 */
#ifndef MC_CERTS_H
#define MC_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

struct state;

struct cert_pem {
    char *cert_path, *key_path;
    uint8_t *cert, *key;
    size_t cert_len, key_len;
    bool stale; /* read again on the next certs_get */
};

struct certs {
    struct cert_pem *v;
    unsigned n;
};

/* The PEM of r's tls_cert and tls_key, or NULL when there is none good
 * (logged). Borrowed: valid until the next certs_* call. */
const struct cert_pem *certs_get(struct certs *cs, const struct route_conf *r);
/* Everything is read again when next asked for; copies for pairs no route
 * of st names are dropped. */
void certs_mark_stale(struct certs *cs, const struct state *st);
void certs_free(struct certs *cs);

#endif
