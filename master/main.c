/*
 * mc-proxy: command-line entry point. The same binary is the master
 * ("server") and, exec'd by the master, each worker and the metrics exporter (common/proc.h).
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

#include "common/config.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/version.h"
#include "master/master.h"
#include "master/store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mc-proxy server   -c FILE           run the proxy (foreground)\n"
            "       mc-proxy status   -c FILE [--cert F --key F --ca F]\n"
            "                                           status of the running server (the\n"
            "                                           client certificate for a TCP admin API)\n"
            "       mc-proxy snapshot -c FILE [-o OUT]  back up the database\n"
            "       mc-proxy check    -c FILE           validate the configuration and exit\n"
            "       mc-proxy --version\n");
}

static void report_to_stderr(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "mc-proxy: %s\n", msg);
}

/* What may follow the subcommand: "-c FILE", and "-o OUT" for snapshot or
 * the client's TLS files for status. */
struct cli_args {
    const char *file;
    const char *out;
    const char *tls[3]; /* --cert, --key, --ca */
};

enum { OPT_CERT = 256, OPT_KEY, OPT_CA };

/* Parses the options after the subcommand; -1 (usage printed) when one is
 * missing, malformed or not the subcommand's. */
static int cli_parse(int argc, char **argv, const char *cmd, struct cli_args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ca", required_argument, NULL, OPT_CA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool snapshot = strcmp(cmd, "snapshot") == 0, status = strcmp(cmd, "status") == 0;
    int c;

    optind = 2;
    while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
        if (c == 'c') {
            a->file = optarg;
        } else if (c == 'o' && snapshot) {
            a->out = optarg;
        } else if (c >= OPT_CERT && c <= OPT_CA && status) {
            a->tls[c - OPT_CERT] = optarg;
        } else if (c == 'h') {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            return -1;
        }
    }
    if (a->file == NULL || optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* The status query is a gRPC call, and this binary never links gRPC: mcproxyctl does it. */
static int run_status(const struct cli_args *a)
{
    char self[PATH_MAX], ctl[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) {
        perror("mc-proxy: readlink(/proc/self/exe)");
        return 1;
    }
    self[n] = '\0';
    snprintf(ctl, sizeof(ctl), "%s/mcproxyctl", dirname(self));
    static const char *const tls_opts[3] = {"--cert", "--key", "--ca"};
    const char *argv[12] = {"mcproxyctl", "-c", a->file};
    int k = 3;
    for (int i = 0; i < 3; i++) {
        if (a->tls[i] != NULL) {
            argv[k++] = tls_opts[i];
            argv[k++] = a->tls[i];
        }
    }
    argv[k++] = "status";
    argv[k] = NULL;
    execv(ctl, (char *const *)argv);
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
    if (argc >= 2 && strcmp(argv[1], PROC_WORKER_ARG) == 0) {
        (void)prctl(PR_SET_NAME, "mc-proxy-worker");
        return worker_main(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], PROC_METRICS_ARG) == 0) {
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
    struct cli_args args = {0};
    if (strcmp(cmd, "server") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "snapshot") != 0 &&
        strcmp(cmd, "status") != 0) {
        fprintf(stderr, "mc-proxy: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    if (cli_parse(argc, argv, cmd, &args) < 0)
        return 2;
    if (strcmp(cmd, "status") == 0)
        return run_status(&args);
    const char *file = args.file;

    log_init("master");
    struct config *cfg = config_load(file, report_to_stderr, NULL);
    if (cfg == NULL) {
        fprintf(stderr, "mc-proxy: configuration file %s is invalid\n", file);
        return 1;
    }
    if (strcmp(cmd, "snapshot") == 0) {
        int rc = run_snapshot(cfg, args.out);
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
