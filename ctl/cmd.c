/*
 * mcproxyctl's commands: each builds its request, makes the call, and
 * prints the answer, as JSON with --json or as short lines a person (or
 * awk) reads: one route, rule or policy a line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "proto/admin.pb-c.h"

typedef McProxy__V1__Route pb_route;
typedef McProxy__V1__ListenerStatus pb_listener;

void ctl_print_safe(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\x%02x", c);
    }
}

/* "1d2h3m4s", leading zero units left out. */
static void print_duration(int64_t s)
{
    static const struct {
        int64_t secs;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    bool started = false;

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (started || s >= units[i].secs) {
            printf("%" PRId64 "%c", s / units[i].secs, units[i].unit);
            s %= units[i].secs;
            started = true;
        }
    }
    printf("%" PRId64 "s", s);
}

static void print_listener(const pb_listener *l, const char *indent)
{
    fputs(indent, stdout);
    ctl_print_safe(stdout, l->addr);
    printf(" routes=%" PRIu32 " active=%" PRId64 " total=%" PRIu64, l->route_count,
           l->active_connections, l->total_connections);
    if (l->max_connections > 0)
        printf(" max=%" PRId64, l->max_connections);
    else
        printf(" max=unlimited");
    if (l->proxy_protocol)
        printf(" proxy-protocol");
    putchar('\n');
}

static void print_status(const ProtobufCMessage *msg)
{
    const McProxy__V1__GetStatusResponse *s = (const void *)msg;
    time_t started = (time_t)s->started_at;
    struct tm tm;
    char when[64] = "?";

    if (gmtime_r(&started, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    printf("mc-proxy ");
    ctl_print_safe(stdout, s->version);
    printf("\nuptime: ");
    print_duration(s->uptime_seconds);
    printf(" (since %s)\nconnections: %" PRIu64 "\n", when, s->total_connections);
    for (size_t i = 0; i < s->n_listeners; i++)
        print_listener(s->listeners[i], "  ");
    printf("workers: %zu\n", s->n_workers);
    for (size_t i = 0; i < s->n_workers; i++) {
        const McProxy__V1__WorkerStatus *w = s->workers[i];
        printf("  pid=%" PRId32 " active=%" PRId64 " total=%" PRIu64 "\n", w->pid,
               w->active_connections, w->total_connections);
    }
}

/* "a.test -> 127.0.0.1:9000 l7 [tls backend-tls proxy-v2 policies=2]" */
static void print_route(const pb_route *r)
{
    const char *tags[3];
    size_t n = 0;

    ctl_print_safe(stdout, r->hostname);
    printf(" -> ");
    ctl_print_safe(stdout, r->backend);
    printf(" %s", r->mode[0] != '\0' ? r->mode : "l4");
    if (r->tls_cert[0] != '\0')
        tags[n++] = "tls";
    if (r->backend_tls)
        tags[n++] = "backend-tls";
    if (r->send_proxy_protocol)
        tags[n++] = "proxy-v2";
    if (n > 0 || r->n_l7_policies > 0) {
        printf(" [");
        for (size_t i = 0; i < n; i++)
            printf("%s%s", i > 0 ? " " : "", tags[i]);
        if (r->n_l7_policies > 0)
            printf("%spolicies=%zu", n > 0 ? " " : "", r->n_l7_policies);
        putchar(']');
    }
    putchar('\n');
}

/* "TYPE VALUE": a firewall rule or an L7 policy (both are {type, value}). */
static void print_pair(const char *type, const char *value)
{
    ctl_print_safe(stdout, type);
    putchar(' ');
    ctl_print_safe(stdout, value);
    putchar('\n');
}

static void print_routes(const ProtobufCMessage *msg)
{
    const McProxy__V1__ListRoutesResponse *r = (const void *)msg;
    for (size_t i = 0; i < r->n_routes; i++)
        print_route(r->routes[i]);
}

static void print_added_route(const ProtobufCMessage *msg)
{
    const McProxy__V1__AddRouteResponse *r = (const void *)msg;
    if (r->route != NULL)
        print_route(r->route);
}

static void print_rules(const ProtobufCMessage *msg)
{
    const McProxy__V1__ListFirewallRulesResponse *r = (const void *)msg;
    for (size_t i = 0; i < r->n_rules; i++)
        print_pair(r->rules[i]->type, r->rules[i]->value);
}

static void print_added_rule(const ProtobufCMessage *msg)
{
    const McProxy__V1__AddFirewallRuleResponse *r = (const void *)msg;
    if (r->rule != NULL)
        print_pair(r->rule->type, r->rule->value);
}

static void print_set_max(const ProtobufCMessage *msg)
{
    const McProxy__V1__SetListenerMaxConnectionsResponse *r = (const void *)msg;
    if (r->listener != NULL)
        print_listener(r->listener, "");
}

static void print_policies(const ProtobufCMessage *msg)
{
    const McProxy__V1__ListL7PoliciesResponse *r = (const void *)msg;
    for (size_t i = 0; i < r->n_policies; i++)
        print_pair(r->policies[i]->type, r->policies[i]->value);
}

static void print_added_policy(const ProtobufCMessage *msg)
{
    const McProxy__V1__AddL7PolicyResponse *r = (const void *)msg;
    if (r->policy != NULL)
        print_pair(r->policy->type, r->policy->value);
}

/* "N" as a non-negative count; -1 when it is not one. */
static int parse_count(const char *s, int64_t *out)
{
    char *end;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* The server resolves nothing against its own cwd: send absolute paths. */
static char *absolute_path(const char *path)
{
    char *cwd, *out;

    if (path == NULL || path[0] == '/' || path[0] == '\0')
        return path != NULL ? strdup(path) : NULL;
    cwd = getcwd(NULL, 0);
    if (cwd == NULL || asprintf(&out, "%s/%s", cwd, path) < 0)
        out = NULL;
    free(cwd);
    return out;
}

typedef void printer_fn(const ProtobufCMessage *resp);

/* Makes the call and prints its answer; the exit code. */
static int call_and_print(struct ctl_client *c, bool json, const char *method,
                          const ProtobufCMessage *req, printer_fn *print)
{
    ProtobufCMessage *resp;

    if (client_call(c, method, req, &resp) < 0)
        return CTL_EXIT_ERROR;
    if (json)
        json_print(stdout, resp);
    else if (print != NULL)
        print(resp);
    protobuf_c_message_free_unpacked(resp, NULL);
    return fflush(stdout) == 0 ? 0 : CTL_EXIT_ERROR;
}

struct cmd_ctx {
    struct ctl_client *c;
    bool json;
    const struct ctl_route_opts *ro;
    char **arg; /* the arguments after the command words */
};

static int cmd_status(const struct cmd_ctx *x)
{
    McProxy__V1__GetStatusRequest req = MC_PROXY__V1__GET_STATUS_REQUEST__INIT;
    return call_and_print(x->c, x->json, "GetStatus", &req.base, print_status);
}

static int cmd_routes_list(const struct cmd_ctx *x)
{
    McProxy__V1__ListRoutesRequest req = MC_PROXY__V1__LIST_ROUTES_REQUEST__INIT;
    req.listener = x->arg[0];
    return call_and_print(x->c, x->json, "ListRoutes", &req.base, print_routes);
}

static int cmd_routes_add(const struct cmd_ctx *x)
{
    McProxy__V1__AddRouteRequest req = MC_PROXY__V1__ADD_ROUTE_REQUEST__INIT;
    pb_route route = MC_PROXY__V1__ROUTE__INIT;
    char *cert = absolute_path(x->ro->tls_cert), *key = absolute_path(x->ro->tls_key);
    int rc = CTL_EXIT_ERROR;

    if ((x->ro->tls_cert != NULL && cert == NULL) || (x->ro->tls_key != NULL && key == NULL)) {
        fprintf(stderr, "mcproxyctl: cannot make the certificate paths absolute\n");
        goto out;
    }
    req.listener = x->arg[0];
    route.hostname = x->arg[1];
    route.backend = x->arg[2];
    route.mode = (char *)(x->ro->mode != NULL ? x->ro->mode : "");
    route.tls_cert = cert != NULL ? cert : "";
    route.tls_key = key != NULL ? key : "";
    route.backend_tls = x->ro->backend_tls;
    route.send_proxy_protocol = x->ro->send_proxy_protocol;
    req.route = &route;
    rc = call_and_print(x->c, x->json, "AddRoute", &req.base, print_added_route);
out:
    free(cert);
    free(key);
    return rc;
}

static int cmd_routes_remove(const struct cmd_ctx *x)
{
    McProxy__V1__RemoveRouteRequest req = MC_PROXY__V1__REMOVE_ROUTE_REQUEST__INIT;
    req.listener = x->arg[0];
    req.hostname = x->arg[1];
    return call_and_print(x->c, x->json, "RemoveRoute", &req.base, NULL);
}

static int cmd_firewall_list(const struct cmd_ctx *x)
{
    McProxy__V1__ListFirewallRulesRequest req = MC_PROXY__V1__LIST_FIREWALL_RULES_REQUEST__INIT;
    return call_and_print(x->c, x->json, "ListFirewallRules", &req.base, print_rules);
}

static int cmd_firewall_change(const struct cmd_ctx *x, bool add)
{
    McProxy__V1__FirewallRule rule = MC_PROXY__V1__FIREWALL_RULE__INIT;
    McProxy__V1__AddFirewallRuleRequest a = MC_PROXY__V1__ADD_FIREWALL_RULE_REQUEST__INIT;
    McProxy__V1__RemoveFirewallRuleRequest r = MC_PROXY__V1__REMOVE_FIREWALL_RULE_REQUEST__INIT;

    rule.type = x->arg[0];
    rule.value = x->arg[1];
    a.rule = r.rule = &rule;
    if (add)
        return call_and_print(x->c, x->json, "AddFirewallRule", &a.base, print_added_rule);
    return call_and_print(x->c, x->json, "RemoveFirewallRule", &r.base, NULL);
}

static int cmd_firewall_add(const struct cmd_ctx *x)
{
    return cmd_firewall_change(x, true);
}

static int cmd_firewall_remove(const struct cmd_ctx *x)
{
    return cmd_firewall_change(x, false);
}

static int cmd_set_max(const struct cmd_ctx *x)
{
    McProxy__V1__SetListenerMaxConnectionsRequest req =
        MC_PROXY__V1__SET_LISTENER_MAX_CONNECTIONS_REQUEST__INIT;

    req.listener = x->arg[0];
    if (parse_count(x->arg[1], &req.max_connections) < 0) {
        fprintf(stderr, "mcproxyctl: max connections must be a number (0 = unlimited)\n");
        return CTL_EXIT_USAGE;
    }
    return call_and_print(x->c, x->json, "SetListenerMaxConnections", &req.base, print_set_max);
}

static int cmd_policies_list(const struct cmd_ctx *x)
{
    McProxy__V1__ListL7PoliciesRequest req = MC_PROXY__V1__LIST_L7_POLICIES_REQUEST__INIT;
    req.listener = x->arg[0];
    req.hostname = x->arg[1];
    return call_and_print(x->c, x->json, "ListL7Policies", &req.base, print_policies);
}

static int cmd_policies_change(const struct cmd_ctx *x, bool add)
{
    McProxy__V1__L7Policy policy = MC_PROXY__V1__L7_POLICY__INIT;
    McProxy__V1__AddL7PolicyRequest a = MC_PROXY__V1__ADD_L7_POLICY_REQUEST__INIT;
    McProxy__V1__RemoveL7PolicyRequest r = MC_PROXY__V1__REMOVE_L7_POLICY_REQUEST__INIT;

    policy.type = x->arg[2];
    policy.value = x->arg[3];
    a.listener = r.listener = x->arg[0];
    a.hostname = r.hostname = x->arg[1];
    a.policy = r.policy = &policy;
    if (add)
        return call_and_print(x->c, x->json, "AddL7Policy", &a.base, print_added_policy);
    return call_and_print(x->c, x->json, "RemoveL7Policy", &r.base, NULL);
}

static int cmd_policies_add(const struct cmd_ctx *x)
{
    return cmd_policies_change(x, true);
}

static int cmd_policies_remove(const struct cmd_ctx *x)
{
    return cmd_policies_change(x, false);
}

static const struct command {
    const char *group;
    const char *verb; /* NULL: the group is the whole command */
    int n_args;
    int (*fn)(const struct cmd_ctx *x);
} commands[] = {
    {"status", NULL, 0, cmd_status},
    {"routes", "list", 1, cmd_routes_list},
    {"routes", "add", 3, cmd_routes_add},
    {"routes", "remove", 2, cmd_routes_remove},
    {"firewall", "list", 0, cmd_firewall_list},
    {"firewall", "add", 2, cmd_firewall_add},
    {"firewall", "remove", 2, cmd_firewall_remove},
    {"listeners", "set-max-connections", 2, cmd_set_max},
    {"policies", "list", 2, cmd_policies_list},
    {"policies", "add", 4, cmd_policies_add},
    {"policies", "remove", 4, cmd_policies_remove},
};

static const struct command *cmd_find(char **words, int n)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct command *c = &commands[i];
        int used = c->verb != NULL ? 2 : 1;
        if (n == used + c->n_args && strcmp(words[0], c->group) == 0 &&
            (c->verb == NULL || strcmp(words[1], c->verb) == 0))
            return c;
    }
    return NULL;
}

bool cmd_valid(char **words, int n, bool route_opts)
{
    const struct command *c = n > 0 ? cmd_find(words, n) : NULL;

    /* --mode and friends belong to `routes add` only */
    return c != NULL && (!route_opts || c->fn == cmd_routes_add);
}

int cmd_run(struct ctl_client *c, bool json, const struct ctl_route_opts *ro, char **words, int n)
{
    const struct command *cmd = cmd_find(words, n);
    struct cmd_ctx x = {.c = c, .json = json, .ro = ro};

    x.arg = words + (cmd->verb != NULL ? 2 : 1);
    return cmd->fn(&x);
}
