/* Binding the listening sockets: one SO_REUSEPORT socket per listener per worker. */
#ifndef MC_LISTEN_H
#define MC_LISTEN_H

#include "addr.h"

#define LISTEN_BACKLOG 4096

/* A bound, listening, non-blocking, close-on-exec socket, or -1 (logged). */
int listen_open(const char *name, const struct mc_bind *b);

#endif
