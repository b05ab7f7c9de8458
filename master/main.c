/*
 * mc-proxy: command-line entry point. The same binary is the master
 * ("server") and, exec'd by the master, each worker ("__worker").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: mc-proxy server -c FILE    run the proxy (foreground)\n"
               "       mc-proxy check -c FILE     validate the configuration and exit\n"
               "       mc-proxy --version\n");
}

static void report_to_stderr(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "mc-proxy: %s\n", msg);
}

/* Parses "-c FILE" after the subcommand; NULL (usage printed) when missing. */
static const char *config_arg(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    int c;

    optind = 2;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return NULL;
        }
    }
    if (file == NULL || optind != argc) {
        usage(stderr);
        return NULL;
    }
    return file;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "__worker") == 0)
        return worker_main(argc, argv);
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("mc-proxy %s\n", MC_VERSION);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }

    const char *cmd = argv[1];
    if (strcmp(cmd, "server") != 0 && strcmp(cmd, "check") != 0) {
        fprintf(stderr, "mc-proxy: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *file = config_arg(argc, argv);
    if (file == NULL)
        return 2;

    log_init("master");
    struct config *cfg = config_load(file, report_to_stderr, NULL);
    if (cfg == NULL) {
        fprintf(stderr, "mc-proxy: configuration file %s is invalid\n", file);
        return 1;
    }
    if (strcmp(cmd, "check") == 0) {
        printf("mc-proxy: configuration file %s is valid\n", file);
        config_free(cfg);
        return 0;
    }
    log_configure(cfg->log_level, cfg->log_format);
    log_info("mc-proxy %s starting with %s", MC_VERSION, file);
    int rc = master_run(cfg);
    config_free(cfg);
    return rc;
}
