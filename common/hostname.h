/*
 * Hostname validation and normalisation, shared by the config, the admin
 * path and the worker's SNI lookup so that all three agree on what a name
 * is (no trailing-dot or case bypass between routing and TLS).
 */
#ifndef MC_HOSTNAME_H
#define MC_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

#include "common/mc.h"

/*
 * Normalises a DNS name taken from untrusted input: lower-cases it and
 * removes one trailing dot. Accepts LDH labels plus '_' (seen in the
 * wild), each 1..63 bytes, total 1..253. Rejects NUL and control bytes,
 * empty labels ("a..b", ".a"), "*", and IP literals. Writes the result
 * and a NUL to out (MC_HOSTNAME_MAX + 1 bytes); returns its length, or
 * -1 when the name is invalid.
 */
int hostname_normalize(const char *in, size_t len, char *out);

/*
 * The same for a route's hostname as an operator writes it: either a
 * name accepted by hostname_normalize, or "*." followed by one (a
 * single-label wildcard). Returns the length, or -1.
 */
int hostname_normalize_pattern(const char *in, size_t len, char *out);

#endif
