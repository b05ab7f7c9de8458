/*
 * Bytes that arrive in random pieces, for the targets whose parser is fed
 * a connection's bytes as they come in: a heap copy of the input whose
 * bytes not yet arrived are ASan-poisoned, so a parser that reads past
 * what it was given is caught.
 */
#ifndef MC_FUZZ_CHUNKS_H
#define MC_FUZZ_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUZZ_CHUNKS_WHOLE 0 /* max: everything in one piece */

struct fuzz_chunks {
    uint8_t *buf; /* the copy; buf[0..have) has arrived */
    size_t len, have;
    size_t max; /* the largest piece */
    uint32_t rnd;
};

/* A copy of data[0..len) of which nothing has arrived, to come in pieces
 * of 1..max bytes whose sizes seed picks; false when memory ran out. */
bool fuzz_chunks_init(struct fuzz_chunks *c, const uint8_t *data, size_t len, size_t max,
                      uint8_t seed);

/* The next piece arrives: its size, 0 once everything has. */
size_t fuzz_chunks_next(struct fuzz_chunks *c);

/* The rest arrives at once. */
void fuzz_chunks_all(struct fuzz_chunks *c);

void fuzz_chunks_free(struct fuzz_chunks *c);

#endif
