/*
 * SipHash-1-3: a keyed hash for tables whose keys clients choose. Without
 * the (random) key a client cannot pick inputs that land together.
 */
#ifndef MC_SIPHASH_H
#define MC_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash13(const uint64_t key[2], const void *data, size_t len);

#endif
