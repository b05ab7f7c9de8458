/*
 * What routes, backends, hostnames, L7 policies, firewall rules and
 * listener settings mean: one set of checks that the config loader
 * (config_check.c) and the admin API (master/admin_check.c) both call, so
 * that what one refuses the other refuses, in the same words (SPEC
 * section 12).
 *
 * An error names the key within the object it is about ("backend",
 * "l7_policies[1].value") and says what is wrong. The config reports it
 * as "FILE:LINE: listeners[0].routes[2].backend: MESSAGE", the API answers
 * INVALID_ARGUMENT with "backend: MESSAGE". The checks are pure but for
 * an L7 route's certificate and key, which are loaded to see that they
 * load and belong together.
 */
#ifndef MC_CHECK_H
#define MC_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/config.h"
#include "common/mc.h"

/* Room for a message; values quoted in one are cut to CHECK_QUOTE_LEN bytes. */
#define CHECK_MSG_LEN   512
#define CHECK_QUOTE_LEN 64

/* Where a check's errors go: fn(arg, key, message), once per error. */
typedef void check_report_fn(void *arg, const char *key, const char *msg);

struct check_report {
    check_report_fn *fn;
    void *arg;
    bool no_files;  /* skip what reads files (a client that only wants the grpc section) */
    unsigned n_err; /* errors reported so far */
};

/* s for a message: printable ASCII stays, the rest is \xHH; cut after
 * CHECK_QUOTE_LEN bytes ("..."). buf must hold CHECK_QUOTE_LEN + 8 bytes. */
const char *check_quote(const char *s, char *buf, size_t size);
#define CHECK_QUOTED(s) check_quote((s), (char[CHECK_QUOTE_LEN + 8]){0}, CHECK_QUOTE_LEN + 8)

/* A hostname pattern, normalised into out (MC_HOSTNAME_MAX + 1 bytes). */
int check_hostname(const char *in, char *out, struct check_report *rep);

/*
 * A route as given, fields pointing at the caller's strings: hostname and
 * backend as written, tls_cert and tls_key NULL or "" when unset (the
 * config's already resolved against its directory). Checks every field
 * and every policy, reporting each error; fills host (normalised, ""
 * when invalid) and rc->backend_addr. Returns the number of errors.
 */
unsigned check_route(struct route_conf *rc, char *host, struct check_report *rep);

/* A policy's value for its type: printable ASCII, a header name (RFC 9110
 * token) for require_header. key names it in the report. */
int check_policy(const struct policy_conf *p, const char *key, struct check_report *rep);

/* The words of a route mode and a policy type from an API request, with
 * the config's error text (the config's schema reads its enums itself). */
int check_route_mode(const char *s, enum route_mode *out, const char *key,
                     struct check_report *rep);
int check_policy_type(const char *s, enum policy_type *out, const char *key,
                      struct check_report *rep);

/*
 * A firewall rule's value for its type, written in canonical form (the
 * database's and the channel's: IP text, CIDR with host bits zero,
 * upper-case country) into out (ADDR_STRLEN bytes). The message has no
 * key: the config names the list entry, the API the rule's value.
 */
int check_fw_rule(enum fw_type type, const char *value, char *out, char msg[CHECK_MSG_LEN]);

/* A listener's max_connections: 0 (unlimited) to UINT32_MAX. */
int check_max_connections(int64_t n, struct check_report *rep);

#endif
