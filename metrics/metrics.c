/* Placeholder until the metrics exporter lands. */
#include "log.h"
#include "metrics.h"

int metrics_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    log_init("metrics");
    log_error("the metrics exporter is not built yet");
    return MC_EXIT_FATAL;
}
