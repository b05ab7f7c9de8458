/*
 * Shared by the admin API's handlers (admin_rpc.c) and the checks of what
 * a request carries (admin_check.c): the gRPC status codes, the request
 * being answered, and the validating conversions from its messages.
 */
#ifndef MC_ADMIN_RPC_H
#define MC_ADMIN_RPC_H

#include <stddef.h>

#include "master/master.h"
#include "proto/admin.pb-c.h"

enum rpc_code {
    RPC_OK = 0,
    RPC_UNKNOWN = 2, /* a change was saved but its outcome beyond that is not known */
    RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4, /* a change was committed but not yet applied everywhere */
    RPC_NOT_FOUND = 5,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_ABORTED = 10,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
};

typedef McProxy__V1__Route pb_route;
typedef McProxy__V1__L7Policy pb_policy;
typedef McProxy__V1__FirewallRule pb_rule;
typedef McProxy__V1__ListenerStatus pb_listener;

/* One request being answered. */
struct rpc {
    struct master *m;
    pid_t admin; /* the admin process that asked */
    uint32_t id;
};

/* Answers r with a status code and message (every error path ends here). */
void rpc_error(const struct rpc *r, int code, const char *fmt, ...) MC_PRINTF(3, 4);

/* admin_check.c, on common/check.c's checks: each returns -1 after
 * answering r when the input is invalid. */
int normalize_host(const struct rpc *r, const char *in, char *out);
int policy_from_pb(const struct rpc *r, const pb_policy *in, struct policy_conf *out);
/* rc points into the request and host; the caller frees rc->policies. */
int route_from_pb(const struct rpc *r, const pb_route *in, struct route_conf *rc, char *host);
/* value: ADDR_STRLEN bytes, the rule's canonical form */
int rule_from_pb(const struct rpc *r, const pb_rule *in, enum fw_type *type, char *value);
int max_connections_check(const struct rpc *r, int64_t n);

#endif
