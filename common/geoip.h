/*
 * GeoIP country lookups (libmaxminddb, Country or City databases).
 *
 * Workers cannot open files once they have dropped privileges, and a
 * database file replaced or truncated under a mapping would SIGBUS them,
 * so the master copies the file into a memfd sealed against every change
 * (geoip_load) and passes the descriptor on; each worker maps it through
 * /proc/self/fd (geoip_open). The pages are shared: N workers cost one
 * copy of the database.
 */
#ifndef MC_GEOIP_H
#define MC_GEOIP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/addr.h"

struct geoip;

/* Master: path into a sealed memfd that libmaxminddb accepts. The fd, or
 * -1 with err (errlen bytes) saying why. */
int geoip_load(const char *path, char *err, size_t errlen);

/* Maps the database in fd (which stays the caller's). NULL with err. */
struct geoip *geoip_open(int fd, char *err, size_t errlen);
void geoip_close(struct geoip *g);

/* The ISO 3166-1 alpha-2 code of a's country into cc (NUL-terminated);
 * false when the database has none for it. */
bool geoip_country(const struct geoip *g, const struct mc_addr *a, char cc[3]);

#endif
