/*
 * mcproxyctl: command line, and which server to talk to.
 *
 *   -c FILE          the server's own config: its grpc section says where
 *   --socket PATH    a unix socket (access is the socket's file mode)
 *   --addr HOST:PORT TCP, mTLS: --cert/--key are ours, --ca verifies the server
 *
 * Options may come anywhere on the line ("--" ends them). Exit status:
 * 0 done, 1 the call failed, 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/version.h"
#include "ctl/ctl.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: mcproxyctl [-c FILE | --socket PATH | --addr HOST:PORT --cert F --key F --ca F]\n"
        "                  [--json] COMMAND\n"
        "commands:\n"
        "  status\n"
        "  routes list LISTENER\n"
        "  routes add LISTENER HOSTNAME BACKEND [--mode l4|l7] [--tls-cert F] [--tls-key F]\n"
        "             [--backend-tls] [--send-proxy-protocol]\n"
        "  routes remove LISTENER HOSTNAME\n"
        "  firewall list | firewall add TYPE VALUE | firewall remove TYPE VALUE\n"
        "  listeners set-max-connections LISTENER N\n"
        "  policies list LISTENER HOSTNAME\n"
        "  policies add|remove LISTENER HOSTNAME TYPE VALUE\n"
        "TYPE is ip, cidr or country for firewall rules; block_user_agent or\n"
        "require_header for policies. N = 0 means unlimited.\n");
}

enum {
    OPT_SOCKET = 256,
    OPT_ADDR,
    OPT_CERT,
    OPT_KEY,
    OPT_CA,
    OPT_JSON,
    OPT_MODE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_BACKEND_TLS,
    OPT_SEND_PROXY,
    OPT_VERSION,
};

struct options {
    const char *config, *socket, *addr;
    struct ctl_target target;
    bool json;
    bool route_opts; /* any `routes add` option given */
    struct ctl_route_opts ro;
};

/* Returns -1 after printing usage to stderr. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"addr", required_argument, NULL, OPT_ADDR},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ca", required_argument, NULL, OPT_CA},
        {"json", no_argument, NULL, OPT_JSON},
        {"mode", required_argument, NULL, OPT_MODE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"backend-tls", no_argument, NULL, OPT_BACKEND_TLS},
        {"send-proxy-protocol", no_argument, NULL, OPT_SEND_PROXY},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case OPT_SOCKET:
            o->socket = optarg;
            break;
        case OPT_ADDR:
            o->addr = optarg;
            break;
        case OPT_CERT:
            o->target.cert = optarg;
            break;
        case OPT_KEY:
            o->target.key = optarg;
            break;
        case OPT_CA:
            o->target.ca = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_MODE:
            o->ro.mode = optarg;
            o->route_opts = true;
            break;
        case OPT_TLS_CERT:
            o->ro.tls_cert = optarg;
            o->route_opts = true;
            break;
        case OPT_TLS_KEY:
            o->ro.tls_key = optarg;
            o->route_opts = true;
            break;
        case OPT_BACKEND_TLS:
            o->ro.backend_tls = true;
            o->route_opts = true;
            break;
        case OPT_SEND_PROXY:
            o->ro.send_proxy_protocol = true;
            o->route_opts = true;
            break;
        case OPT_VERSION:
            printf("mcproxyctl %s\n", MC_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

static void report_config_error(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "mcproxyctl: %s\n", msg);
}

/* A listening address to connect to: the wildcard means this host. */
static char *connect_addr(const char *listen)
{
    char *out;
    const char *port = strrchr(listen, ':');

    if (port != NULL && (strncmp(listen, "0.0.0.0:", 8) == 0 || strncmp(listen, "[::]:", 5) == 0))
        return asprintf(&out, "%s%s", listen[0] == '[' ? "[::1]" : "127.0.0.1", port) < 0 ? NULL
                                                                                          : out;
    return strdup(listen);
}

/* Fills o->target.addr from -c; the exit code on failure, else 0. */
static int target_from_config(struct options *o)
{
    struct config *cfg = config_load_no_files(o->config, report_config_error, NULL);
    int rc = 0;

    if (cfg == NULL) {
        fprintf(stderr, "mcproxyctl: cannot use the configuration file %s\n", o->config);
        return CTL_EXIT_ERROR;
    }
    if (!cfg->grpc.enabled) {
        fprintf(stderr, "mcproxyctl: %s has no grpc section: the admin API is off\n", o->config);
        rc = CTL_EXIT_ERROR;
    } else if (cfg->grpc.unix_path != NULL) {
        if (asprintf(&o->target.addr, "unix:%s", cfg->grpc.unix_path) < 0)
            o->target.addr = NULL;
    } else {
        o->target.tcp = true;
        o->target.addr = connect_addr(cfg->grpc.addr);
        if (o->target.cert == NULL || o->target.key == NULL || o->target.ca == NULL) {
            fprintf(stderr,
                    "mcproxyctl: the admin API in %s is TCP with mTLS (%s): give --cert and "
                    "--key (a client certificate its client_ca signed) and --ca\n",
                    o->config, cfg->grpc.addr);
            rc = CTL_EXIT_USAGE;
        }
    }
    if (rc == 0 && o->target.addr == NULL) {
        fprintf(stderr, "mcproxyctl: out of memory\n");
        rc = CTL_EXIT_ERROR;
    }
    config_free(cfg);
    return rc;
}

/* Picks the server from the options; the exit code on failure, else 0. */
static int pick_target(struct options *o)
{
    int given = (o->config != NULL) + (o->socket != NULL) + (o->addr != NULL);
    bool tls_files = o->target.cert != NULL || o->target.key != NULL || o->target.ca != NULL;

    if (given != 1) {
        fprintf(stderr,
                "mcproxyctl: give exactly one of -c FILE, --socket PATH, --addr HOST:PORT\n");
        return CTL_EXIT_USAGE;
    }
    if (o->config != NULL)
        return target_from_config(o);
    if (o->socket != NULL) {
        if (tls_files) {
            fprintf(stderr, "mcproxyctl: --cert, --key and --ca are for TCP (--addr or -c)\n");
            return CTL_EXIT_USAGE;
        }
        if (asprintf(&o->target.addr, "unix:%s", o->socket) < 0)
            return CTL_EXIT_ERROR;
        return 0;
    }
    if (o->target.cert == NULL || o->target.key == NULL || o->target.ca == NULL) {
        fprintf(stderr, "mcproxyctl: --addr needs --cert, --key and --ca (the admin API over "
                        "TCP is mTLS only)\n");
        return CTL_EXIT_USAGE;
    }
    o->target.tcp = true;
    o->target.addr = strdup(o->addr);
    return o->target.addr != NULL ? 0 : CTL_EXIT_ERROR;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int rc;

    if (parse_options(argc, argv, &o) < 0)
        return CTL_EXIT_USAGE;
    char **words = argv + optind;
    int n = argc - optind;
    if (!cmd_valid(words, n, o.route_opts)) {
        if (n == 0)
            fprintf(stderr, "mcproxyctl: no command given\n");
        else
            fprintf(stderr, "mcproxyctl: unknown command or wrong arguments: %s%s%s\n", words[0],
                    n > 1 ? " " : "", n > 1 ? words[1] : "");
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    rc = pick_target(&o);
    if (rc != 0) {
        free(o.target.addr);
        return rc;
    }
    struct ctl_client *c = client_open(&o.target);
    if (c == NULL) {
        rc = CTL_EXIT_ERROR;
    } else {
        rc = cmd_run(c, o.json, &o.ro, words, n);
        client_close(c);
    }
    free(o.target.addr);
    return rc;
}
