/* The exporter's answer to GET /metrics (prom.c). */
#ifndef MC_PROM_H
#define MC_PROM_H

#include <stdint.h>

#include "common/addr.h"
#include "common/shm.h"
#include "metrics/sbuf.h"

/* What the rendering reads. */
struct prom_input {
    const struct shm *shm;
    const char (*listeners)[ADDR_STRLEN]; /* names in shm index order */
    unsigned n_listeners;
    uint64_t own_log_dropped; /* the exporter's own dropped log lines (it has no shm counter) */
};

/* Appends every metric to b; b->failed when memory ran out. */
void prom_render(struct sbuf *b, const struct prom_input *x);

#endif
