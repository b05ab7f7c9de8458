/*
 * The master's side of GeoIP: the database named by firewall.geoip_db,
 * copied into a sealed memfd (common/geoip.c) that every new worker is
 * handed before it drops its privileges. A reload starts new workers, so
 * a new copy reaches them all; a copy that fails keeps the previous one.
 */
#include <unistd.h>

#include "common/geoip.h"
#include "common/log.h"
#include "master/master.h"

int master_geoip_load(struct master *m, const struct config *cfg)
{
    char err[512];

    if (cfg->firewall.geoip_db == NULL) {
        if (m->geoip_fd >= 0)
            close(m->geoip_fd);
        m->geoip_fd = -1;
        return 0;
    }
    int fd = geoip_load(cfg->firewall.geoip_db, err, sizeof(err));
    if (fd < 0) {
        if (m->geoip_fd >= 0) {
            log_error("GeoIP database %s; the previous copy stays in use", err);
            return 0;
        }
        log_error("GeoIP database %s", err);
        return -1;
    }
    if (m->geoip_fd >= 0)
        close(m->geoip_fd);
    m->geoip_fd = fd;
    log_info("GeoIP database %s loaded", cfg->firewall.geoip_db);
    return 0;
}
