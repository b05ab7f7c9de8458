/*
 * Per-source new-connection limit shared by every worker process: at most
 * `limit` admits per `window` per source, in a fixed window that starts
 * at the source's first connection (so exactly `limit` connections pass
 * inside it, the next is refused, and once it ends a new one begins).
 *
 * The table lives in its own memfd, mapped MAP_SHARED by the master and
 * the workers (the metrics exporter's read-only counters stay apart). It
 * is set-associative: RATELIMIT_SETS sets of RATELIMIT_WAYS entries, the
 * set chosen by SipHash of the source under a random per-region key, so
 * sources cannot be aimed at one set. A new source takes a free or
 * expired entry of its set, else evicts the one whose window began
 * first. Nothing ever grows: 65,536 entries, 2.5 MiB, whatever the
 * traffic. 65,536 remembers every source of a 10 s window up to 6,500
 * new sources a second across all workers; past that, the evicted (the
 * oldest) sources start a fresh window early: a flood of sources makes
 * the limiter forget, never makes it refuse others or use more memory.
 * An admit costs one SipHash and a scan of one 320-byte set: ~80 ns
 * when cached, ~400 ns when not (optimised build).
 *
 * limit and window come with each call, so a reload applies from the
 * next connection without touching the table (a window already begun
 * is then judged by the new length).
 *
 * Each set has a lock word holding the holder's pid (0 when free), taken
 * with a compare-and-swap and held for a scan of 8 entries. A worker
 * killed while holding one leaves its pid there: the master calls
 * ratelimit_reap() with the pid when it reaps the worker, before it
 * starts a replacement (so the pid cannot be a live holder's). The dead
 * worker's half-done update touches one entry at worst: one source's
 * count may be wrong for one window.
 */
#ifndef MC_RATELIMIT_H
#define MC_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_WAYS 8
#define RATELIMIT_SETS 8192

/* Bytes of the region: fixed, whatever the traffic. */
size_t ratelimit_region_size(void);

/* Master, before any child maps it: clears the table and sets the hash key. */
void ratelimit_init(void *region, uint64_t seed);

/* Master: a sealed memfd of ratelimit_region_size() bytes, mapped at
 * *region and initialised with a random seed. Returns the fd (kept open
 * to pass to workers), -1 on error (logged). */
int ratelimit_create(void **region);

/* Worker: maps the region from a received memfd (which it may then
 * close). -1 on a wrong size or magic (logged). */
int ratelimit_attach(int fd, void **region);

/* The table key of a source: an IPv4 address as ::ffff:a.b.c.d (so a
 * mapped client is the same source), an IPv6 address's /64 (low 64 bits
 * zeroed). Another family gives all zeroes. */
void ratelimit_key(int family, const uint8_t *ip, uint8_t key[16]);

/* True when the source may open a connection now, which is counted.
 * now_ms from CLOCK_MONOTONIC (the same clock in every process); limit
 * 0 always admits; window_ms 0 starts a new window every time. */
bool ratelimit_admit(void *region, const uint8_t key[16], uint64_t now_ms, uint32_t limit,
                     uint64_t window_ms);

/* Releases every lock the (dead) process pid held. */
void ratelimit_reap(void *region, int32_t pid);

/* For tests: takes the lock of key's set and keeps it, as a process
 * killed inside ratelimit_admit() would. */
void ratelimit_hold(void *region, const uint8_t key[16]);

#endif
