/*
 * The children the one mc-proxy binary runs besides the master: the
 * master execs itself with the child's argv[1] and main() dispatches on
 * it. Each child's code lives in its own folder; only this header joins
 * them to the master.
 */
#ifndef MC_PROC_H
#define MC_PROC_H

#define PROC_WORKER_ARG  "__worker"
#define PROC_METRICS_ARG "__metrics"

int worker_main(int argc, char **argv);  /* worker/worker.c */
int metrics_main(int argc, char **argv); /* metrics/metrics.c */

#endif
