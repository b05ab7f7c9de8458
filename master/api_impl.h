/*
 * Shared by the admin API's handlers (api.c) and the checks of what
 * a request carries (api_check.c): the gRPC status codes, the request
 * being answered, and the validating conversions from its messages.
 */
#ifndef MC_API_IMPL_H
#define MC_API_IMPL_H

#include <stddef.h>

#include "common/config.h"
#include "master/api.h"
#include "proto/admin.pb-c.h"

enum api_code {
    API_OK = 0,
    API_UNKNOWN = 2, /* a change was saved but its outcome beyond that is not known */
    API_INVALID_ARGUMENT = 3,
    API_DEADLINE_EXCEEDED = 4, /* a change was committed but not yet applied everywhere */
    API_NOT_FOUND = 5,
    API_RESOURCE_EXHAUSTED = 8,
    API_ABORTED = 10,
    API_UNIMPLEMENTED = 12,
    API_INTERNAL = 13,
};

typedef McProxy__V1__Route pb_route;
typedef McProxy__V1__L7Policy pb_policy;
typedef McProxy__V1__FirewallRule pb_rule;
typedef McProxy__V1__ListenerStatus pb_listener;

/* One request being answered. */
struct api_call {
    const struct api *a;
    pid_t admin; /* the admin process that asked */
    uint32_t id;
};

/* Answers r with a status code and message (every error path ends here). */
void api_error(const struct api_call *r, int code, const char *fmt, ...) MC_PRINTF(3, 4);

/* api_check.c, on common/check.c's checks: each returns -1 after
 * answering r when the input is invalid. */
int api_check_host(const struct api_call *r, const char *in, char *out);
int api_check_policy(const struct api_call *r, const pb_policy *in, struct policy_conf *out);
/* rc points into the request and host; the caller frees rc->policies. */
int api_check_route(const struct api_call *r, const pb_route *in, struct route_conf *rc,
                    char *host);
/* value: ADDR_STRLEN bytes, the rule's canonical form */
int api_check_rule(const struct api_call *r, const pb_rule *in, enum fw_type *type, char *value);
int api_check_max_connections(const struct api_call *r, int64_t n);

#endif
