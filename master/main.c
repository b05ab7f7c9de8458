/*
 * mc-proxy: command-line entry point. The same binary is the master
 * ("server") and, exec'd by the master, each worker ("__worker").
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "metrics.h"
#include "store.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: mc-proxy server   -c FILE           run the proxy (foreground)\n"
               "       mc-proxy status   -c FILE           status of the running server\n"
               "       mc-proxy snapshot -c FILE [-o OUT]  back up the database\n"
               "       mc-proxy check    -c FILE           validate the configuration and exit\n"
               "       mc-proxy --version\n");
}

static void report_to_stderr(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "mc-proxy: %s\n", msg);
}

/* Parses "-c FILE" (and "-o OUT" when out is given) after the subcommand;
 * NULL (usage printed) when missing or malformed. */
static const char *config_arg(int argc, char **argv, const char **out)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    int c;

    optind = 2;
    while ((c = getopt_long(argc, argv, out ? "c:o:h" : "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            file = optarg;
            break;
        case 'o':
            if (out == NULL) {
                usage(stderr);
                return NULL;
            }
            *out = optarg;
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

/* The status query is a gRPC call, and this binary never links gRPC: mcproxyctl does it. */
static int run_status(const char *file)
{
    char self[PATH_MAX], ctl[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        perror("mc-proxy: readlink(/proc/self/exe)");
        return 1;
    }
    self[n] = '\0';
    snprintf(ctl, sizeof(ctl), "%s/mcproxyctl", dirname(self));
    char *argv[] = {"mcproxyctl", "-c", (char *)file, "status", NULL};
    execv(ctl, argv);
    fprintf(stderr, "mc-proxy: cannot run %s: %s\n", ctl, strerror(errno));
    return 1;
}

static int run_snapshot(const struct config *cfg, const char *out)
{
    char written[PATH_MAX];
    const char *err;

    if (store_snapshot(cfg->database_path, out, cfg->database_backups_keep, written, &err) < 0) {
        fprintf(stderr, "mc-proxy: snapshot of %s failed: %s\n", cfg->database_path, err);
        return 1;
    }
    printf("mc-proxy: snapshot of %s written to %s\n", cfg->database_path, written);
    return 0;
}

int main(int argc, char **argv)
{
    /* exec'd as /proc/self/exe, a child would be "exe" to ps, top and pgrep */
    if (argc >= 2 && strcmp(argv[1], "__worker") == 0) {
        (void)prctl(PR_SET_NAME, "mc-proxy-worker");
        return worker_main(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "__metrics") == 0) {
        (void)prctl(PR_SET_NAME, "mc-proxy-metric");
        return metrics_main(argc, argv);
    }
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("mc-proxy %s\n", MC_VERSION);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }

    const char *cmd = argv[1];
    const char *out = NULL;
    if (strcmp(cmd, "server") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "snapshot") != 0 &&
        strcmp(cmd, "status") != 0) {
        fprintf(stderr, "mc-proxy: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *file = config_arg(argc, argv, strcmp(cmd, "snapshot") == 0 ? &out : NULL);
    if (file == NULL)
        return 2;
    if (strcmp(cmd, "status") == 0)
        return run_status(file);

    log_init("master");
    struct config *cfg = config_load(file, report_to_stderr, NULL);
    if (cfg == NULL) {
        fprintf(stderr, "mc-proxy: configuration file %s is invalid\n", file);
        return 1;
    }
    if (strcmp(cmd, "snapshot") == 0) {
        int rc = run_snapshot(cfg, out);
        config_free(cfg);
        return rc;
    }
    if (strcmp(cmd, "check") == 0) {
        printf("mc-proxy: configuration file %s is valid\n", file);
        config_free(cfg);
        return 0;
    }
    log_configure(cfg->log_level, cfg->log_format);
    log_info("mc-proxy %s starting with %s", MC_VERSION, file);
    return master_run(cfg);
}
