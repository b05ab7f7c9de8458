/* Binding the listening sockets: one SO_REUSEPORT socket per listener per worker. */
#ifndef MC_LISTEN_H
#define MC_LISTEN_H

#include "common/addr.h"

#define LISTEN_BACKLOG 4096

/* A bound, listening, non-blocking, close-on-exec socket, or -1 (logged). */
int listen_open(const char *name, const struct mc_bind *b);
/*
 * 0 when nothing listens on b's port yet: a bind without SO_REUSEPORT,
 * closed at once, so the kernel itself says whether the port is taken.
 * Otherwise -1, logged with the port and, when it can be seen, the pid
 * holding it. Run once at start, before the first listen_open: a
 * listen_open of the same port would join another instance's sockets.
 */
int listen_probe(const char *name, const struct mc_bind *b);

#endif
