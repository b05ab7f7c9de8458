/*
 * What an admin request carries, checked and normalised before anything
 * is stored, by the config loader's own checks (common/check.c): the same
 * input gets the same verdict and the same words. Each function answers
 * the request itself when the input is invalid: INVALID_ARGUMENT with
 * "KEY: MESSAGE" for the first error found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "master/admin_rpc.h"

/* The first error a check reports, as the answer's text. */
struct first_error {
    bool set;
    char text[CHECK_MSG_LEN + 64];
};

static void keep_first(void *arg, const char *key, const char *msg)
{
    struct first_error *fe = arg;

    if (!fe->set)
        snprintf(fe->text, sizeof(fe->text), "%s: %s", key, msg);
    fe->set = true;
}

#define REPORT(fe) ((struct check_report){.fn = keep_first, .arg = (fe)})

/* -1 after answering r with the first error, when there was one. */
static int answer(const struct rpc *r, const struct first_error *fe)
{
    if (!fe->set)
        return 0;
    rpc_error(r, RPC_INVALID_ARGUMENT, "%s", fe->text);
    return -1;
}

int normalize_host(const struct rpc *r, const char *in, char *out)
{
    struct first_error fe = {0};
    struct check_report rep = REPORT(&fe);

    check_hostname(in, out, &rep);
    return answer(r, &fe);
}

int policy_from_pb(const struct rpc *r, const pb_policy *in, struct policy_conf *out)
{
    struct first_error fe = {0};
    struct check_report rep = REPORT(&fe);

    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "policy is required");
        return -1;
    }
    if (check_policy_type(in->type, &out->type, "type", &rep) == 0) {
        out->value = in->value;
        check_policy(out, "value", &rep);
    }
    return answer(r, &fe);
}

int route_from_pb(const struct rpc *r, const pb_route *in, struct route_conf *rc, char *host)
{
    struct first_error fe = {0};
    struct check_report rep = REPORT(&fe);

    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "route is required");
        return -1;
    }
    if (check_route_mode(in->mode, &rc->mode, "mode", &rep) < 0)
        return answer(r, &fe);
    rc->hostname = in->hostname;
    rc->backend = in->backend;
    rc->tls_cert = in->tls_cert[0] != '\0' ? in->tls_cert : NULL;
    rc->tls_key = in->tls_key[0] != '\0' ? in->tls_key : NULL;
    rc->backend_tls = in->backend_tls;
    rc->send_proxy_protocol = in->send_proxy_protocol;
    if (in->n_l7_policies > 0) {
        rc->policies = calloc(in->n_l7_policies, sizeof(*rc->policies));
        if (rc->policies == NULL) {
            rpc_error(r, RPC_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        rc->n_policies = (unsigned)in->n_l7_policies;
    }
    /* the types first (the config's schema reads them before any check);
     * check_route checks the values */
    for (unsigned i = 0; i < rc->n_policies && !fe.set; i++) {
        char key[32];
        snprintf(key, sizeof(key), "l7_policies[%u].type", i);
        if (check_policy_type(in->l7_policies[i]->type, &rc->policies[i].type, key, &rep) == 0)
            rc->policies[i].value = in->l7_policies[i]->value;
    }
    if (fe.set)
        return answer(r, &fe);
    check_route(rc, host, &rep);
    rc->hostname = host;
    return answer(r, &fe);
}

int rule_from_pb(const struct rpc *r, const pb_rule *in, enum fw_type *type, char *value)
{
    char msg[CHECK_MSG_LEN];
    int t;

    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "rule is required");
        return -1;
    }
    t = fw_type_parse(in->type);
    if (t < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "type: expected one of ip, cidr, country, got \"%s\"",
                  CHECK_QUOTED(in->type));
        return -1;
    }
    *type = (enum fw_type)t;
    if (check_fw_rule(*type, in->value, value, msg) < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "value: %s", msg);
        return -1;
    }
    return 0;
}

int max_connections_check(const struct rpc *r, int64_t n)
{
    struct first_error fe = {0};
    struct check_report rep = REPORT(&fe);

    check_max_connections(n, &rep);
    return answer(r, &fe);
}
