/*
 * The admin API's handlers (master/api.c) driven without a master: a
 * real store seeded from the fixture's config, the state loaded from it,
 * and publish and reply recorded here. That this is all they need is
 * the point (master/api.h).
 */
#include <stdlib.h>
#include <string.h>

#include "common/shm.h"
#include "master/api.h"
#include "proto/admin.pb-c.h"
#include "store_fixture.h"
#include "tap.h"

#define ADMIN_PID 4242

static struct state *state;
static struct config *cfgp = &cfg;
static struct shm shm;
static char *bound[] = {":443", "127.0.0.1:8443"};

/* The last reply, and the publish waiting for its ack. */
static struct {
    unsigned n;
    uint32_t id;
    int32_t status;
    char message[1024];
    uint8_t body[65536];
    size_t len;
} reply;
static api_done_fn *pending_done;
static void *pending_arg;

/* What the master does: the new state from the store; done runs once "every worker" has it. */
static int publish(void *ctx, api_done_fn *done, void *arg)
{
    struct store *st = ctx;
    struct state *next = load_ok(st);

    state_free(state);
    state = next;
    pending_done = done;
    pending_arg = arg;
    return 0;
}

static void record(void *ctx, pid_t admin, uint32_t id, int32_t status, const char *message,
                   const void *body, size_t len)
{
    (void)ctx;
    if (admin != ADMIN_PID || len > sizeof(reply.body))
        die("reply", "to the wrong admin, or too long");
    reply.n++;
    reply.id = id;
    reply.status = status;
    snprintf(reply.message, sizeof(reply.message), "%s", message ? message : "");
    if (len > 0)
        memcpy(reply.body, body, len);
    reply.len = len;
}

/* Sends one call by method name (an unknown name: index 999) with request req. */
static void call(const struct api *a, uint32_t id, const char *method, const ProtobufCMessage *req)
{
    const ProtobufCServiceDescriptor *svc = &mc_proxy__v1__proxy_admin_service__descriptor;
    const ProtobufCMethodDescriptor *md =
        protobuf_c_service_descriptor_get_method_by_name(svc, method);
    struct msg_admin_req hdr = {.id = id, .method = md ? (uint32_t)(md - svc->methods) : 999};
    static uint8_t buf[65536];

    memcpy(buf, &hdr, sizeof(hdr));
    size_t n = req ? protobuf_c_message_pack(req, buf + sizeof(hdr)) : 0;
    struct chan_msg msg = {
        .hdr = {.type = MSG_ADMIN_REQ, .len = (uint32_t)(sizeof(hdr) + n)}, .data = buf, .fd = -1};
    reply.n = 0;
    api_handle(a, ADMIN_PID, &msg);
}

static void test_reads(const struct api *a)
{
    McProxy__V1__GetStatusRequest gs = MC_PROXY__V1__GET_STATUS_REQUEST__INIT;
    McProxy__V1__ListRoutesRequest lr = MC_PROXY__V1__LIST_ROUTES_REQUEST__INIT;

    call(a, 1, "GetStatus", &gs.base);
    McProxy__V1__GetStatusResponse *st =
        mc_proxy__v1__get_status_response__unpack(NULL, reply.len, reply.body);
    T_OK(reply.n == 1 && reply.id == 1 && reply.status == 0 && st != NULL,
         "GetStatus answers OK at once");
    uint64_t total = 0;
    for (size_t i = 0; st != NULL && i < st->n_listeners; i++) {
        if (strcmp(st->listeners[i]->addr, ":443") == 0)
            total = st->listeners[i]->total_connections;
    }
    T_OK(st != NULL && st->n_listeners == 2 && total == 5 && st->n_workers == 1 &&
             st->workers[0]->pid == 77,
         "GetStatus reports the listeners' and running workers' counters from shm");
    mc_proxy__v1__get_status_response__free_unpacked(st, NULL);

    lr.listener = ":443";
    call(a, 2, "ListRoutes", &lr.base);
    McProxy__V1__ListRoutesResponse *routes =
        mc_proxy__v1__list_routes_response__unpack(NULL, reply.len, reply.body);
    T_OK(reply.n == 1 && reply.status == 0 && routes != NULL && routes->n_routes == N_WEB_ROUTES,
         "ListRoutes lists the state's routes");
    mc_proxy__v1__list_routes_response__free_unpacked(routes, NULL);

    lr.listener = "127.0.0.1:1";
    call(a, 3, "ListRoutes", &lr.base);
    T_OK(reply.n == 1 && reply.status == 5 && strstr(reply.message, "not found") != NULL,
         "an unknown listener is NOT_FOUND");
}

static void test_mutation(const struct api *a)
{
    McProxy__V1__AddRouteRequest ar = MC_PROXY__V1__ADD_ROUTE_REQUEST__INIT;
    McProxy__V1__Route r = MC_PROXY__V1__ROUTE__INIT;

    r.hostname = "New.Example.com";
    r.backend = "127.0.0.1:4000";
    r.mode = "l4";
    ar.listener = ":443";
    ar.route = &r;
    call(a, 10, "AddRoute", &ar.base);
    T_OK(reply.n == 0 && pending_done != NULL, "AddRoute commits and waits for the publish");
    T_OK(state_listener(state, ":443")->n_routes == N_WEB_ROUTES + 1,
         "the published state holds the new route");
    api_done_fn *done = pending_done;
    pending_done = NULL;
    done(pending_arg, true);
    McProxy__V1__AddRouteResponse *resp =
        mc_proxy__v1__add_route_response__unpack(NULL, reply.len, reply.body);
    T_OK(reply.n == 1 && reply.id == 10 && reply.status == 0 && resp != NULL &&
             strcmp(resp->route->hostname, "new.example.com") == 0,
         "once applied, AddRoute answers the route as stored (normalised)");
    mc_proxy__v1__add_route_response__free_unpacked(resp, NULL);

    r.backend = "nowhere";
    call(a, 11, "AddRoute", &ar.base);
    T_OK(reply.n == 1 && reply.status == 3 && pending_done == NULL &&
             state_listener(state, ":443")->n_routes == N_WEB_ROUTES + 1,
         "a bad backend is INVALID_ARGUMENT and changes nothing: %s", reply.message);
}

static void test_dispatch(const struct api *a)
{
    struct chan_msg shortmsg = {
        .hdr = {.type = MSG_ADMIN_REQ, .len = 2}, .data = (const uint8_t *)"xx", .fd = -1};

    call(a, 20, "NoSuchMethod", NULL);
    T_OK(reply.n == 1 && reply.id == 20 && reply.status == 12,
         "an unknown method is UNIMPLEMENTED");
    reply.n = 0;
    api_handle(a, ADMIN_PID, &shortmsg);
    T_OK(reply.n == 0, "a request too short to hold an id gets no reply");
}

int main(void)
{
    char db[4096];

    store_fixture_setup();
    fresh_db(db, "api");
    struct store *st = open_seeded(db);
    state = load_ok(st);
    shm.listeners[0].total = 5;
    shm.workers[3].pid = 77;
    struct api a = {.state = &state,
                    .cfg = &cfgp,
                    .store = st,
                    .shm = &shm,
                    .bound = bound,
                    .n_bound = MC_ARRAY_LEN(bound),
                    .publish = publish,
                    .reply = record,
                    .ctx = st};

    test_reads(&a);
    test_mutation(&a);
    test_dispatch(&a);

    state_free(state);
    store_close(st);
    store_fixture_teardown(tap_failed);
    return tap_done();
}
