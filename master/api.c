/*
 * The admin API's handlers, run in the master (SPEC section 8). The
 * admin process forwards each gRPC call as its method index and request
 * bytes; here they are unpacked, validated, and answered with a gRPC
 * status code and the packed response.
 *
 * Reads answer from the state (what the workers route by). A mutation is
 * validated and normalised, committed to the store, then published to
 * every worker; the reply goes out once every live worker has applied it
 * (the publish's done callback). A store failure changes nothing and
 * is answered at once. The one status after a commit that is not OK is
 * DEADLINE_EXCEEDED (a worker has not applied it in PUBLISH_DEADLINE_MS)
 * or UNKNOWN (out of memory after the commit), and the message says the
 * change is saved: no other status leaves a change behind.
 *
 * What a request carries is checked in api_check.c. The master links
 * protobuf-c, never gRPC: the status codes are the gRPC numbers
 * (api.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hostname.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/shm.h"
#include "common/version.h"
#include "master/api_impl.h"
#include "master/state.h"
#include "master/store.h"

/* A reply body must fit one channel message next to its header and status text. */
#define API_MAX_BODY (CHAN_MAX_PAYLOAD - sizeof(struct msg_admin_resp) - 1024)

static const ProtobufCServiceDescriptor *const service =
    &mc_proxy__v1__proxy_admin_service__descriptor;

void api_error(const struct api_call *r, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->a->reply(r->a->ctx, r->admin, r->id, code, msg, NULL, 0);
}

/* Packs resp into a fresh buffer; NULL (with *len 0) when it is too large or memory ran out. */
static uint8_t *api_pack(const ProtobufCMessage *resp, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(resp);
    uint8_t *buf = n <= API_MAX_BODY ? malloc(n > 0 ? n : 1) : NULL;

    *len = 0;
    if (buf != NULL)
        *len = protobuf_c_message_pack(resp, buf);
    return buf;
}

static void api_send(const struct api_call *r, const ProtobufCMessage *resp)
{
    size_t len;
    uint8_t *buf = api_pack(resp, &len);

    if (buf == NULL) {
        api_error(r, API_RESOURCE_EXHAUSTED, "the response is too large (%zu bytes)",
                  protobuf_c_message_get_packed_size(resp));
        return;
    }
    r->a->reply(r->a->ctx, r->admin, r->id, API_OK, NULL, buf, len);
    free(buf);
}

static int api_store_code(int rc)
{
    switch (rc) {
    case STORE_NOT_FOUND:
        return API_NOT_FOUND;
    case STORE_INVALID:
        return API_INVALID_ARGUMENT;
    default:
        return API_INTERNAL;
    }
}

/* ------------------------------------------------------------ lookups */

static const struct listener_conf *api_find_listener(const struct api_call *r, const char *addr)
{
    const struct listener_conf *l = state_listener(*r->a->state, addr);

    if (l == NULL)
        api_error(r, API_NOT_FOUND, "listener \"%s\" not found", addr);
    return l;
}

static const struct route_conf *api_route_in(const struct listener_conf *l, const char *host)
{
    for (unsigned i = 0; i < l->n_routes; i++) {
        if (strcmp(l->routes[i].hostname, host) == 0)
            return &l->routes[i];
    }
    return NULL;
}

/* The route named by a request's listener and hostname; NULL (answered) otherwise. */
static const struct route_conf *api_find_route(const struct api_call *r, const char *listener,
                                               const char *hostname)
{
    char host[MC_HOSTNAME_MAX + 1];
    const struct listener_conf *l = api_find_listener(r, listener);

    if (l == NULL || api_check_host(r, hostname, host) < 0)
        return NULL;
    const struct route_conf *rc = api_route_in(l, host);
    if (rc == NULL)
        api_error(r, API_NOT_FOUND, "route \"%s\" on listener \"%s\" not found", host, listener);
    return rc;
}

/* ------------------------------------------------------------ state -> messages */

static char *api_str_or_empty(char *s)
{
    return s != NULL ? s : "";
}

static void api_policy_to_pb(const struct policy_conf *p, pb_policy *out)
{
    mc_proxy__v1__l7_policy__init(out);
    out->type = (char *)config_policy_type_name(p->type);
    out->value = p->value;
}

/* Route messages for routes[0..n), with their policies; one allocation, free() it. */
static pb_route *api_routes_to_pb(const struct route_conf *routes, unsigned n)
{
    size_t n_pol = 0;

    for (unsigned i = 0; i < n; i++)
        n_pol += routes[i].n_policies;
    /* routes, then policies, then the policies' pointer array */
    pb_route *out = calloc(1, n * sizeof(pb_route) + n_pol * (sizeof(pb_policy) + sizeof(void *)));
    if (out == NULL)
        return NULL;
    pb_policy *pol = (pb_policy *)(out + n);
    pb_policy **ptr = (pb_policy **)(pol + n_pol);

    for (unsigned i = 0; i < n; i++) {
        const struct route_conf *rc = &routes[i];
        pb_route *pr = &out[i];

        mc_proxy__v1__route__init(pr);
        pr->hostname = rc->hostname;
        pr->backend = rc->backend;
        pr->mode = (char *)config_route_mode_name(rc->mode);
        pr->tls_cert = api_str_or_empty(rc->tls_cert);
        pr->tls_key = api_str_or_empty(rc->tls_key);
        pr->backend_tls = rc->backend_tls;
        pr->send_proxy_protocol = rc->send_proxy_protocol;
        pr->n_l7_policies = rc->n_policies;
        pr->l7_policies = ptr;
        for (unsigned k = 0; k < rc->n_policies; k++) {
            api_policy_to_pb(&rc->policies[k], pol);
            *ptr++ = pol++;
        }
    }
    return out;
}

/* The shm slot of the bound listener addr, or -1. */
static int api_listener_index(const struct api *a, const char *addr)
{
    for (unsigned i = 0; i < a->n_bound; i++) {
        if (strcmp(a->bound[i], addr) == 0)
            return (int)i;
    }
    return -1;
}

static void api_listener_to_pb(const struct api *a, const struct listener_conf *l, pb_listener *out)
{
    int idx = api_listener_index(a, l->addr);

    mc_proxy__v1__listener_status__init(out);
    out->addr = l->addr;
    out->route_count = l->n_routes;
    out->proxy_protocol = l->proxy_protocol;
    out->max_connections = l->max_connections;
    if (idx >= 0) {
        const struct shm_listener *sl = &a->shm->listeners[idx];
        out->active_connections = atomic_load(&sl->active);
        out->total_connections = atomic_load(&sl->total);
    }
}

/* ------------------------------------------------------------ mutations */

/* What a mutation answers once every worker has applied it. */
enum pending_reply {
    PENDING_BODY,     /* the prepared body (a rule, a policy, or nothing) */
    PENDING_ROUTE,    /* the route as now stored */
    PENDING_LISTENER, /* the listener's status */
};

struct pending {
    struct api_call r;
    enum pending_reply what;
    char *listener;
    char *hostname;
    uint8_t *body;
    size_t len;
};

static void api_pending_free(struct pending *p)
{
    free(p->listener);
    free(p->hostname);
    free(p->body);
    free(p);
}

static void api_pending_done(void *arg, bool applied)
{
    struct pending *p = arg;

    if (!applied) {
        api_error(&p->r, API_DEADLINE_EXCEEDED,
                  "the change is committed, but not every worker applied it within %d ms; it "
                  "takes effect there once that worker answers or is replaced",
                  PUBLISH_DEADLINE_MS);
        api_pending_free(p);
        return;
    }
    const struct listener_conf *l =
        p->what == PENDING_BODY ? NULL : state_listener(*p->r.a->state, p->listener);
    const struct route_conf *route =
        l != NULL && p->hostname != NULL ? api_route_in(l, p->hostname) : NULL;

    switch (p->what) {
    case PENDING_BODY:
        p->r.a->reply(p->r.a->ctx, p->r.admin, p->r.id, API_OK, NULL, p->body, p->len);
        break;
    case PENDING_ROUTE:
        if (route == NULL) {
            api_error(&p->r, API_ABORTED, "the route was changed again before this reply");
        } else {
            McProxy__V1__AddRouteResponse resp = MC_PROXY__V1__ADD_ROUTE_RESPONSE__INIT;
            resp.route = api_routes_to_pb(route, 1);
            if (resp.route == NULL)
                api_error(&p->r, API_RESOURCE_EXHAUSTED, "out of memory");
            else
                api_send(&p->r, &resp.base);
            free(resp.route);
        }
        break;
    case PENDING_LISTENER:
        if (l == NULL) {
            api_error(&p->r, API_ABORTED, "the listener was changed again before this reply");
        } else {
            McProxy__V1__SetListenerMaxConnectionsResponse resp =
                MC_PROXY__V1__SET_LISTENER_MAX_CONNECTIONS_RESPONSE__INIT;
            pb_listener ls;
            api_listener_to_pb(p->r.a, l, &ls);
            resp.listener = &ls;
            api_send(&p->r, &resp.base);
        }
        break;
    }
    api_pending_free(p);
}

static void api_publish_only(void *arg, bool applied)
{
    (void)arg;
    (void)applied;
}

/*
 * Ends a mutation: on a store failure answers at once; otherwise
 * publishes the new state and answers when every worker has it. body
 * (PENDING_BODY only; may be NULL) is packed now.
 */
static void api_commit(const struct api_call *r, int rc, const char *err, enum pending_reply what,
                       const char *listener, const char *hostname, const ProtobufCMessage *body)
{
    struct pending *p;

    if (rc != STORE_OK) {
        api_error(r, api_store_code(rc), "%s", err);
        return;
    }
    p = calloc(1, sizeof(*p));
    if (p != NULL) {
        p->r = *r;
        p->what = what;
        p->listener = listener != NULL ? strdup(listener) : NULL;
        p->hostname = hostname != NULL ? strdup(hostname) : NULL;
        if (body != NULL)
            p->body = api_pack(body, &p->len);
    }
    if (p == NULL || (listener != NULL && p->listener == NULL) ||
        (hostname != NULL && p->hostname == NULL) || (body != NULL && p->body == NULL)) {
        if (p != NULL)
            api_pending_free(p);
        /* the change is committed: apply it even though no reply can be built */
        api_error(r, API_UNKNOWN, "saved, %s, but out of memory for the reply",
                  r->a->publish(r->a->ctx, api_publish_only, NULL) == 0
                      ? "being applied"
                      : "not applied (see the log)");
        return;
    }
    if (r->a->publish(r->a->ctx, api_pending_done, p) < 0) {
        api_error(r, API_UNKNOWN,
                  "saved to the database, but the new state could not be loaded to apply it "
                  "(see the server log)");
        api_pending_free(p);
    }
}

/* ------------------------------------------------------------ handlers */

static void api_get_status(const struct api_call *r, const void *req)
{
    const struct api *a = r->a;
    const struct state *st = *a->state;
    McProxy__V1__GetStatusResponse resp = MC_PROXY__V1__GET_STATUS_RESPONSE__INIT;
    pb_listener *ls = calloc(st->n_listeners + 1, sizeof(*ls));
    pb_listener **lp = calloc(st->n_listeners + 1, sizeof(*lp));
    McProxy__V1__WorkerStatus *ws = calloc(MC_MAX_WORKERS, sizeof(*ws));
    McProxy__V1__WorkerStatus **wp = calloc(MC_MAX_WORKERS, sizeof(*wp));
    unsigned n_ws = 0;
    time_t now = time(NULL);

    (void)req;
    if (ls == NULL || lp == NULL || ws == NULL || wp == NULL) {
        api_error(r, API_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    resp.version = MC_VERSION;
    resp.started_at = (int64_t)a->shm->started_at;
    resp.uptime_seconds = now > resp.started_at ? now - resp.started_at : 0;
    for (unsigned i = 0; i < st->n_listeners; i++) {
        api_listener_to_pb(a, &st->listeners[i], &ls[i]);
        lp[i] = &ls[i];
        resp.total_connections += ls[i].total_connections;
    }
    resp.n_listeners = st->n_listeners;
    resp.listeners = lp;
    /* every running worker, draining ones of a previous generation included */
    for (unsigned i = 0; i < MC_MAX_WORKERS; i++) {
        const struct shm_worker *sw = &a->shm->workers[i];
        if (atomic_load(&sw->pid) == 0)
            continue;
        mc_proxy__v1__worker_status__init(&ws[n_ws]);
        ws[n_ws].pid = atomic_load(&sw->pid);
        ws[n_ws].active_connections = atomic_load(&sw->active);
        ws[n_ws].total_connections = atomic_load(&sw->total);
        wp[n_ws] = &ws[n_ws];
        n_ws++;
    }
    resp.n_workers = n_ws;
    resp.workers = wp;
    api_send(r, &resp.base);
out:
    free(ls);
    free(lp);
    free(ws);
    free(wp);
}

static void api_list_routes(const struct api_call *r, const void *msg)
{
    const McProxy__V1__ListRoutesRequest *req = msg;
    McProxy__V1__ListRoutesResponse resp = MC_PROXY__V1__LIST_ROUTES_RESPONSE__INIT;
    const struct listener_conf *l = api_find_listener(r, req->listener);

    if (l == NULL)
        return;
    pb_route *routes = api_routes_to_pb(l->routes, l->n_routes);
    pb_route **ptrs = calloc(l->n_routes + 1, sizeof(*ptrs));
    if (routes == NULL || ptrs == NULL) {
        api_error(r, API_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (unsigned i = 0; i < l->n_routes; i++)
            ptrs[i] = &routes[i];
        resp.n_routes = l->n_routes;
        resp.routes = ptrs;
        api_send(r, &resp.base);
    }
    free(routes);
    free(ptrs);
}

static void api_add_route(const struct api_call *r, const void *msg)
{
    const McProxy__V1__AddRouteRequest *req = msg;
    char host[MC_HOSTNAME_MAX + 1];
    struct route_conf rc = {0};
    const char *err = NULL;

    if (api_find_listener(r, req->listener) != NULL &&
        api_check_route(r, req->route, &rc, host) == 0) {
        int s = store_route_upsert(r->a->store, req->listener, &rc, &err);
        if (s == STORE_OK)
            log_info("admin: route %s on %s -> %s (%s) saved", host, req->listener, rc.backend,
                     config_route_mode_name(rc.mode));
        api_commit(r, s, err, PENDING_ROUTE, req->listener, host, NULL);
    }
    free(rc.policies);
}

static void api_remove_route(const struct api_call *r, const void *msg)
{
    const McProxy__V1__RemoveRouteRequest *req = msg;
    McProxy__V1__RemoveRouteResponse resp = MC_PROXY__V1__REMOVE_ROUTE_RESPONSE__INIT;
    const struct route_conf *rc = api_find_route(r, req->listener, req->hostname);
    const char *err = NULL;

    if (rc == NULL)
        return;
    /* rc lives in the state, which the publish replaces: log before */
    int s = store_route_delete(r->a->store, req->listener, rc->hostname, &err);
    if (s == STORE_OK)
        log_info("admin: route %s on %s removed", rc->hostname, req->listener);
    api_commit(r, s, err, PENDING_BODY, NULL, NULL, &resp.base);
}

static void api_list_firewall_rules(const struct api_call *r, const void *msg)
{
    const struct state *st = *r->a->state;
    McProxy__V1__ListFirewallRulesResponse resp = MC_PROXY__V1__LIST_FIREWALL_RULES_RESPONSE__INIT;
    pb_rule *rules = calloc(st->n_rules + 1, sizeof(*rules));
    pb_rule **ptrs = calloc(st->n_rules + 1, sizeof(*ptrs));

    (void)msg;
    if (rules == NULL || ptrs == NULL) {
        api_error(r, API_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (unsigned i = 0; i < st->n_rules; i++) {
            mc_proxy__v1__firewall_rule__init(&rules[i]);
            rules[i].type = (char *)fw_type_name(st->rules[i].type);
            rules[i].value = st->rules[i].value;
            ptrs[i] = &rules[i];
        }
        resp.n_rules = st->n_rules;
        resp.rules = ptrs;
        api_send(r, &resp.base);
    }
    free(rules);
    free(ptrs);
}

static void api_add_firewall_rule(const struct api_call *r, const void *msg)
{
    const McProxy__V1__AddFirewallRuleRequest *req = msg;
    McProxy__V1__AddFirewallRuleResponse resp = MC_PROXY__V1__ADD_FIREWALL_RULE_RESPONSE__INIT;
    pb_rule rule = MC_PROXY__V1__FIREWALL_RULE__INIT;
    char value[ADDR_STRLEN];
    enum fw_type type;
    const char *err = NULL;

    if (api_check_rule(r, req->rule, &type, value) < 0)
        return;
    if (type == FW_COUNTRY && (*r->a->cfg)->firewall.geoip_db == NULL) {
        api_error(r, API_INVALID_ARGUMENT,
                  "country rules need firewall.geoip_db in the configuration");
        return;
    }
    int s = store_rule_add(r->a->store, type, value, &err);
    if (s == STORE_OK)
        log_info("admin: firewall rule %s %s added", fw_type_name(type), value);
    rule.type = (char *)fw_type_name(type);
    rule.value = value;
    resp.rule = &rule;
    api_commit(r, s, err, PENDING_BODY, NULL, NULL, &resp.base);
}

static void api_remove_firewall_rule(const struct api_call *r, const void *msg)
{
    const McProxy__V1__RemoveFirewallRuleRequest *req = msg;
    McProxy__V1__RemoveFirewallRuleResponse resp =
        MC_PROXY__V1__REMOVE_FIREWALL_RULE_RESPONSE__INIT;
    char value[ADDR_STRLEN];
    enum fw_type type;
    const char *err = NULL;

    if (api_check_rule(r, req->rule, &type, value) < 0)
        return;
    int s = store_rule_delete(r->a->store, type, value, &err);
    if (s == STORE_OK)
        log_info("admin: firewall rule %s %s removed", fw_type_name(type), value);
    api_commit(r, s, err, PENDING_BODY, NULL, NULL, &resp.base);
}

static void api_set_listener_max_connections(const struct api_call *r, const void *msg)
{
    const McProxy__V1__SetListenerMaxConnectionsRequest *req = msg;
    const char *err = NULL;

    if (api_find_listener(r, req->listener) == NULL)
        return;
    if (api_check_max_connections(r, req->max_connections) < 0)
        return;
    int s =
        store_listener_set_max(r->a->store, req->listener, (uint32_t)req->max_connections, &err);
    if (s == STORE_OK)
        log_info("admin: listener %s max_connections %lld", req->listener,
                 (long long)req->max_connections);
    api_commit(r, s, err, PENDING_LISTENER, req->listener, NULL, NULL);
}

static void api_list_l7_policies(const struct api_call *r, const void *msg)
{
    const McProxy__V1__ListL7PoliciesRequest *req = msg;
    McProxy__V1__ListL7PoliciesResponse resp = MC_PROXY__V1__LIST_L7_POLICIES_RESPONSE__INIT;
    const struct route_conf *rc = api_find_route(r, req->listener, req->hostname);

    if (rc == NULL)
        return;
    pb_route *pr = api_routes_to_pb(rc, 1);
    if (pr == NULL) {
        api_error(r, API_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    resp.n_policies = pr->n_l7_policies;
    resp.policies = pr->l7_policies;
    api_send(r, &resp.base);
    free(pr);
}

/* AddL7Policy and RemoveL7Policy: the same request shape, different store call. */
static void api_change_l7_policy(const struct api_call *r,
                                 const McProxy__V1__AddL7PolicyRequest *req, bool add)
{
    McProxy__V1__AddL7PolicyResponse added = MC_PROXY__V1__ADD_L7_POLICY_RESPONSE__INIT;
    McProxy__V1__RemoveL7PolicyResponse removed = MC_PROXY__V1__REMOVE_L7_POLICY_RESPONSE__INIT;
    const struct route_conf *rc = api_find_route(r, req->listener, req->hostname);
    struct policy_conf p;
    pb_policy pp;
    const char *err = NULL;
    int s;

    if (rc == NULL || api_check_policy(r, req->policy, &p) < 0)
        return;
    if (add && rc->mode != ROUTE_L7) {
        api_error(r, API_INVALID_ARGUMENT, "route \"%s\" is l4: policies need mode l7",
                  rc->hostname);
        return;
    }
    if (add)
        s = store_policy_add(r->a->store, req->listener, rc->hostname, &p, &err);
    else
        s = store_policy_delete(r->a->store, req->listener, rc->hostname, &p, &err);
    if (s == STORE_OK)
        log_info("admin: l7 policy %s %s %s route %s on %s", config_policy_type_name(p.type),
                 p.value, add ? "added to" : "removed from", rc->hostname, req->listener);
    api_policy_to_pb(&p, &pp);
    added.policy = &pp;
    api_commit(r, s, err, PENDING_BODY, NULL, NULL, add ? &added.base : &removed.base);
}

static void api_add_l7_policy(const struct api_call *r, const void *msg)
{
    api_change_l7_policy(r, msg, true);
}

static void api_remove_l7_policy(const struct api_call *r, const void *msg)
{
    /* RemoveL7PolicyRequest has AddL7PolicyRequest's fields, in the same order */
    const McProxy__V1__RemoveL7PolicyRequest *in = msg;
    McProxy__V1__AddL7PolicyRequest req = MC_PROXY__V1__ADD_L7_POLICY_REQUEST__INIT;

    req.listener = in->listener;
    req.hostname = in->hostname;
    req.policy = in->policy;
    api_change_l7_policy(r, &req, false);
}

/* ------------------------------------------------------------ dispatch */

typedef void api_handler_fn(const struct api_call *r, const void *req);

static const struct {
    const char *name;
    api_handler_fn *fn;
} handlers[] = {
    {"GetStatus", api_get_status},
    {"ListRoutes", api_list_routes},
    {"AddRoute", api_add_route},
    {"RemoveRoute", api_remove_route},
    {"ListFirewallRules", api_list_firewall_rules},
    {"AddFirewallRule", api_add_firewall_rule},
    {"RemoveFirewallRule", api_remove_firewall_rule},
    {"SetListenerMaxConnections", api_set_listener_max_connections},
    {"ListL7Policies", api_list_l7_policies},
    {"AddL7Policy", api_add_l7_policy},
    {"RemoveL7Policy", api_remove_l7_policy},
};

void api_handle(const struct api *a, pid_t admin, const struct chan_msg *msg)
{
    struct msg_admin_req hdr;
    struct api_call r = {.a = a, .admin = admin};

    if (msg->hdr.len < sizeof(hdr)) {
        log_error("admin: request of %u bytes is too short", msg->hdr.len);
        return; /* no id to answer: the admin times the call out */
    }
    memcpy(&hdr, msg->data, sizeof(hdr));
    r.id = hdr.id;
    if (hdr.method >= service->n_methods) {
        api_error(&r, API_UNIMPLEMENTED, "unknown method %u", hdr.method);
        return;
    }
    const ProtobufCMethodDescriptor *md = &service->methods[hdr.method];
    api_handler_fn *fn = NULL;
    for (size_t i = 0; i < MC_ARRAY_LEN(handlers) && fn == NULL; i++) {
        if (strcmp(handlers[i].name, md->name) == 0)
            fn = handlers[i].fn;
    }
    if (fn == NULL) {
        api_error(&r, API_UNIMPLEMENTED, "%s is not implemented", md->name);
        return;
    }
    ProtobufCMessage *req = protobuf_c_message_unpack(md->input, NULL, msg->hdr.len - sizeof(hdr),
                                                      msg->data + sizeof(hdr));
    if (req == NULL) {
        api_error(&r, API_INVALID_ARGUMENT, "malformed %s request", md->name);
        return;
    }
    fn(&r, req);
    protobuf_c_message_free_unpacked(req, NULL);
}
