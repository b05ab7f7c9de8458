/*
 * A set of IPv4 and IPv6 prefixes, each with a non-zero tag, answering
 * "the tag of the longest prefix containing this address". Used for the
 * firewall's ip/cidr rules and for trusted_proxies.
 *
 * One path-compressed binary trie per family (two roots over one node
 * array): a lookup visits at most address-bits + 1 nodes whatever the
 * number of rules, each visit one masked 128-bit compare. Sealing a
 * family of 8192 rules or more adds a table indexed by the top 16 bits
 * giving where the walk stands at depth 16: on 100,000 random rules a
 * lookup then visits ~1.3 nodes instead of ~16 (each a likely cache
 * miss): ~150 ns with a cold cache in an optimised build, ~100 ms to
 * build (both about doubled under ASan). A hash table per prefix length
 * would probe up to 129 lengths for IPv6, each a likely miss.
 *
 * Memory: each add creates at most two 32-byte nodes (the rule and the
 * branch point above it): at most 64 bytes per rule + 100 bytes once
 * sealed, plus 512 KiB per indexed family (at most 64 bytes per rule of
 * it), so at most 128 bytes per rule + 100 bytes in all; 100,000 random
 * rules take 5.9 MB (63 bytes per rule). While building, the node array's
 * doubling can hold up to twice its final size.
 *
 * Built once, then only read: adds, then prefix_set_seal(), then
 * lookups (which need no lock, so a set can be shared read-only).
 */
#ifndef MC_PREFIX_H
#define MC_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"

struct prefix_set;

/* An empty set; NULL on ENOMEM. */
struct prefix_set *prefix_set_new(void);

/* Adds c with a non-zero tag; re-adding the same prefix replaces its tag.
 * Host bits past the prefix length are ignored. -1 on ENOMEM, or EINVAL
 * for a bad family, prefix length or a zero tag, or EPERM once sealed. */
int prefix_set_add(struct prefix_set *s, const struct mc_cidr *c, uint32_t tag);

/* Call after the last add, before lookups: gives back the array's spare
 * capacity and indexes a big family by its top bits. -1 on ENOMEM: the
 * set still answers right (slower), and calling again retries. */
int prefix_set_seal(struct prefix_set *s);

/* Tag of the longest prefix containing ip (4 bytes for AF_INET, 16 for
 * AF_INET6), 0 if none. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is
 * looked up as the IPv4 address. NULL s -> 0. */
uint32_t prefix_set_lookup(const struct prefix_set *s, int family, const uint8_t *ip);

/* Distinct prefixes held. */
size_t prefix_set_count(const struct prefix_set *s);

/* Bytes held (the struct and its node array). */
size_t prefix_set_memory(const struct prefix_set *s);

void prefix_set_free(struct prefix_set *s);

#endif
