/*
 * A listening socket's accept loop, the workers' and the metrics
 * exporter's: up to `batch` connections per wake-up, so that other
 * events get a turn, and when the process runs out of descriptors or
 * memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) a pause of ACCEPTOR_PAUSE_MS
 * instead of spinning on a socket that stays readable.
 */
#ifndef MC_ACCEPTOR_H
#define MC_ACCEPTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/loop.h"

#define ACCEPTOR_PAUSE_MS 250

/* A new connection: fd (non-blocking, close-on-exec) is the callee's. */
typedef void acceptor_fn(void *arg, int fd, const struct mc_addr *peer);

struct acceptor {
    struct loop *loop;
    int fd; /* the listening socket, -1 once closed */
    struct ev ev;
    struct timer pause;
    bool accepting; /* registered on the loop */
    unsigned batch;
    const char *name; /* for logs: what it listens on */
    uint64_t *log_ms; /* when a pause was last logged (at most once a second); may be shared */
    acceptor_fn *fn;
    void *arg;
};

/* Takes ownership of fd; not accepting until acceptor_start. */
void acceptor_init(struct acceptor *a, struct loop *l, int fd, unsigned batch, const char *name,
                   uint64_t *log_ms, acceptor_fn *fn, void *arg);
/* Starts accepting (level-triggered); a closed or accepting one is left as is. -1 (logged). */
int acceptor_start(struct acceptor *a);
/* Stops accepting and closes the socket. */
void acceptor_close(struct acceptor *a);

#endif
