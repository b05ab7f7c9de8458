/*
 * Random pieces of the input (fuzz_chunks.h). The sizes come from a
 * small LCG seeded by an input byte, so a crash replays exactly.
 */
#include "fuzz/fuzz_chunks.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

bool fuzz_chunks_init(struct fuzz_chunks *c, const uint8_t *data, size_t len, size_t max,
                      uint8_t seed)
{
    *c = (struct fuzz_chunks){.len = len, .max = max, .rnd = seed | 0x100u};
    c->buf = malloc(len > 0 ? len : 1);
    if (c->buf == NULL)
        return false;
    memcpy(c->buf, data, len);
    ASAN_POISON_MEMORY_REGION(c->buf, len);
    return true;
}

size_t fuzz_chunks_next(struct fuzz_chunks *c)
{
    size_t n = c->len - c->have;

    if (c->max != FUZZ_CHUNKS_WHOLE) {
        c->rnd = c->rnd * 1103515245u + 12345u;
        n = 1 + (c->rnd >> 16) % c->max;
        n = n < c->len - c->have ? n : c->len - c->have;
    }
    ASAN_UNPOISON_MEMORY_REGION(c->buf + c->have, n);
    c->have += n;
    return n;
}

void fuzz_chunks_all(struct fuzz_chunks *c)
{
    ASAN_UNPOISON_MEMORY_REGION(c->buf, c->len);
    c->have = c->len;
}

void fuzz_chunks_free(struct fuzz_chunks *c)
{
    fuzz_chunks_all(c);
    free(c->buf);
    c->buf = NULL;
}
