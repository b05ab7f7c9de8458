/* Placeholder until the metrics exporter lands: metrics are not served. */
#include "log.h"
#include "master.h"

void metrics_spawn(struct master *m)
{
    log_warn("metrics.addr %s: the metrics exporter is not built yet", m->cfg->metrics.addr);
}

void metrics_exited(struct master *m, int status)
{
    (void)status;
    m->metrics.pid = 0;
}

void metrics_stop(struct master *m)
{
    (void)m;
}
