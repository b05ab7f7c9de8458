/* The metrics process: Prometheus text exposition of the shared counters. */
#ifndef MC_METRICS_H
#define MC_METRICS_H

int metrics_main(int argc, char **argv);

#endif
