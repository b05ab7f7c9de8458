/*
 * The gRPC server on the core C API: one completion queue, one thread.
 *
 * Every method of ProxyAdminService is registered generically from the
 * protobuf-c service descriptor, plus grpc.health.v1.Health/Check, which
 * is answered here. Any other method (Health/Watch included) is taken
 * through grpc_server_request_call() and answered UNIMPLEMENTED, since
 * gRPC core would otherwise hold it until its deadline.
 *
 * A ProxyAdminService call is checked to unpack as its request type and
 * forwarded to the master; the loop blocks on that round trip (bounded),
 * so calls are handled one at a time, in arrival order.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "admin/admin.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/msg.h"
#include "common/pb.h"
#include "proto/admin.pb-c.h"
#include "proto/health.pb-c.h"

#define ADMIN_MAX_REQUEST                                                                          \
    (256 * 1024) /* far above any real request, well under a channel message */
#define ADMIN_MAX_STREAMS    16
#define ADMIN_HANDSHAKE_MS   10000                /* a silent TCP client is dropped after this */
#define ADMIN_MASTER_TIMEOUT MSG_ADMIN_TIMEOUT_MS /* ms the master gets to answer one call */
#define ADMIN_POLL_MS        200 /* how often the loop looks at signals and the master */
#define ADMIN_DRAIN_MS       (ADMIN_MASTER_TIMEOUT + 2000) /* a stop waits this for open calls */
/* Requests outstanding per method: a call gRPC has not matched to one when
 * the server shuts down is failed, so a stop can finish only matched ones. */
#define ADMIN_ARMED            ADMIN_MAX_STREAMS
#define SERVICE_PREFIX         "/mc_proxy.v1.ProxyAdminService/"
#define HEALTH_CHECK_PATH      "/grpc.health.v1.Health/Check"
#define ADMIN_SERVICE_FULLNAME "mc_proxy.v1.ProxyAdminService"

static const ProtobufCServiceDescriptor *const service =
    &mc_proxy__v1__proxy_admin_service__descriptor;

enum call_kind {
    CALL_ADMIN,  /* a ProxyAdminService method: forwarded to the master */
    CALL_HEALTH, /* Health/Check: answered here */
    CALL_OTHER,  /* anything else: UNIMPLEMENTED */
};

/* One call, from the requested slot to the completion of its reply. */
struct call {
    enum call_kind kind;
    unsigned method; /* CALL_ADMIN: index in the service descriptor */
    bool replying;   /* the tag now means "reply batch done" */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* CALL_OTHER: the method path */
    grpc_byte_buffer *req;
    grpc_byte_buffer *resp;
    grpc_slice status_details;
    int cancelled;
    uint64_t start_ms;
};

struct rpc_server {
    grpc_server *srv;
    grpc_completion_queue *cq;
    void **methods; /* registered handles, service->n_methods of them */
    void *health;
    struct link *link;
    bool stopping;
    bool master_gone;
    uint64_t drops_reported; /* dropped log lines the master was told about */
};

/* Only its address matters: the tag of grpc_server_shutdown_and_notify(). */
static char shutdown_tag;

static void call_free(struct call *c)
{
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->kind == CALL_OTHER)
        grpc_call_details_destroy(&c->details);
    if (c->req != NULL)
        grpc_byte_buffer_destroy(c->req);
    if (c->resp != NULL)
        grpc_byte_buffer_destroy(c->resp);
    if (c->replying)
        grpc_slice_unref(c->status_details);
    free(c);
}

/* Asks gRPC for the next call of this kind (and method). */
static int rpc_arm(struct rpc_server *s, enum call_kind kind, unsigned method)
{
    struct call *c = calloc(1, sizeof(*c));
    grpc_call_error err;

    if (c == NULL) {
        log_error("out of memory arming a gRPC call");
        return -1;
    }
    c->kind = kind;
    c->method = method;
    grpc_metadata_array_init(&c->md);
    switch (kind) {
    case CALL_ADMIN:
    case CALL_HEALTH:
        err = grpc_server_request_registered_call(
            s->srv, kind == CALL_ADMIN ? s->methods[method] : s->health, &c->call, &c->deadline,
            &c->md, &c->req, s->cq, s->cq, c);
        break;
    default:
        grpc_call_details_init(&c->details);
        err = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, s->cq, s->cq, c);
        break;
    }
    if (err != GRPC_CALL_OK) {
        log_error("cannot request a gRPC call: error %d", (int)err);
        call_free(c);
        return -1;
    }
    return 0;
}

/* The caller for the audit log: the client certificate's CN over mTLS, else the peer address. */
static void call_peer(grpc_call *call, char *buf, size_t size)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    const grpc_auth_property *p = NULL;

    if (ctx != NULL) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        p = grpc_auth_property_iterator_next(&it);
    }
    if (p != NULL) {
        snprintf(buf, size, "x509:%.*s", (int)MC_MIN(p->value_length, (size_t)INT_MAX), p->value);
    } else {
        char *peer = grpc_call_get_peer(call);
        snprintf(buf, size, "%s", peer != NULL ? peer : "?");
        gpr_free(peer);
    }
    grpc_auth_context_release(ctx);
}

static const char *call_method_name(const struct call *c)
{
    switch (c->kind) {
    case CALL_ADMIN:
        return service->methods[c->method].name;
    case CALL_HEALTH:
        return "Health/Check";
    default:
        return "unknown";
    }
}

/*
 * Sends the reply: status, message, and resp (owned by the call from
 * now on) when the status is OK. The call is freed when the batch
 * completes.
 */
static void call_reply(struct call *c, grpc_status_code status, const char *message,
                       grpc_byte_buffer *resp)
{
    grpc_op ops[4];
    size_t n = 0;
    char peer[256];
    struct log_rec r;

    c->replying = true;
    c->resp = resp;
    c->status_details = grpc_slice_from_copied_string(message);
    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (resp != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = resp;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;

    int level = c->kind == CALL_HEALTH ? LOGL_DEBUG : LOGL_INFO;
    if (log_enabled(level)) {
        call_peer(c->call, peer, sizeof(peer));
        log_rec_begin(&r, level, "rpc");
        log_rec_str(&r, "method", call_method_name(c));
        if (c->kind == CALL_OTHER)
            log_rec_strn(&r, "path", (const char *)GRPC_SLICE_START_PTR(c->details.method),
                         GRPC_SLICE_LENGTH(c->details.method));
        log_rec_str(&r, "peer", peer);
        log_rec_str(&r, "status", pb_status_name(status));
        if (status != GRPC_STATUS_OK)
            log_rec_str(&r, "error", message);
        log_rec_u64(&r, "duration_ms", mc_monotonic_ms() - c->start_ms);
        log_rec_end(&r);
    }

    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, c, NULL);
    if (err != GRPC_CALL_OK) {
        log_error("cannot send a gRPC reply: error %d", (int)err);
        call_free(c);
    }
}

/* Whether a method changes state (AddRoute, RemoveRoute, SetListener...). */
static bool method_changes(unsigned method)
{
    const char *name = service->methods[method].name;
    return strncmp(name, "Add", 3) == 0 || strncmp(name, "Remove", 6) == 0 ||
           strncmp(name, "Set", 3) == 0;
}

/* Forwards a ProxyAdminService call to the master and relays its answer. */
static void rpc_admin(struct rpc_server *s, struct call *c)
{
    const ProtobufCMessageDescriptor *in = service->methods[c->method].input;
    struct link_reply r = {0};
    grpc_slice req;

    if (pb_bb_slice(c->req, &req) < 0) {
        call_reply(c, GRPC_STATUS_INVALID_ARGUMENT, "missing request message", NULL);
        return;
    }
    /* only well-formed requests reach the master */
    ProtobufCMessage *m =
        protobuf_c_message_unpack(in, NULL, GRPC_SLICE_LENGTH(req), GRPC_SLICE_START_PTR(req));
    if (m == NULL) {
        grpc_slice_unref(req);
        call_reply(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message", NULL);
        return;
    }
    protobuf_c_message_free_unpacked(m, NULL);

    enum link_result lr = link_call(s->link, c->method, GRPC_SLICE_START_PTR(req),
                                    GRPC_SLICE_LENGTH(req), ADMIN_MASTER_TIMEOUT, &r);
    grpc_slice_unref(req);
    switch (lr) {
    case LINK_OK:
        break;
    /* a change the master may have committed is never answered UNAVAILABLE,
     * which promises that nothing changed */
    case LINK_TIMEOUT:
        if (method_changes(c->method))
            call_reply(c, GRPC_STATUS_DEADLINE_EXCEEDED,
                       "the proxy did not answer in time; the change may have been applied: "
                       "check before retrying",
                       NULL);
        else
            call_reply(c, GRPC_STATUS_UNAVAILABLE, "the proxy did not answer in time", NULL);
        return;
    default:
        s->master_gone = true;
        if (method_changes(c->method))
            call_reply(c, GRPC_STATUS_UNKNOWN,
                       "the proxy went away during the call; the change may have been applied: "
                       "check before retrying",
                       NULL);
        else
            call_reply(c, GRPC_STATUS_UNAVAILABLE, "the proxy is shutting down", NULL);
        return;
    }

    grpc_status_code status = r.status >= GRPC_STATUS_OK && r.status <= GRPC_STATUS_UNAUTHENTICATED
                                  ? (grpc_status_code)r.status
                                  : GRPC_STATUS_UNKNOWN;
    grpc_byte_buffer *resp = NULL;
    if (status == GRPC_STATUS_OK) {
        resp = pb_bb_from_bytes(r.body, r.body_len);
        if (resp == NULL) {
            status = GRPC_STATUS_RESOURCE_EXHAUSTED;
            log_error("out of memory building a gRPC reply");
        }
    }
    call_reply(c, status, status == GRPC_STATUS_OK ? "" : r.message, resp);
    link_reply_free(&r);
}

/* Health/Check: SERVING for the whole server ("") and for the admin service. */
static void rpc_health(struct call *c)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    ProtobufCMessage *m = pb_bb_unpack(&grpc__health__v1__health_check_request__descriptor, c->req);

    if (m == NULL) {
        call_reply(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message", NULL);
        return;
    }
    const char *name = ((Grpc__Health__V1__HealthCheckRequest *)m)->service;
    bool known = name[0] == '\0' || strcmp(name, ADMIN_SERVICE_FULLNAME) == 0;
    protobuf_c_message_free_unpacked(m, NULL);
    if (!known) {
        call_reply(c, GRPC_STATUS_NOT_FOUND, "unknown service", NULL);
        return;
    }
    resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    grpc_byte_buffer *bb = pb_bb_pack(&resp.base);
    if (bb == NULL)
        call_reply(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
    else
        call_reply(c, GRPC_STATUS_OK, "", bb);
}

static void rpc_on_call(struct rpc_server *s, struct call *c)
{
    c->start_ms = mc_monotonic_ms();
    /* re-arm first: each kind keeps ADMIN_ARMED requests outstanding */
    if (!s->stopping && rpc_arm(s, c->kind, c->method) < 0)
        log_error("%s: no longer accepting calls of this method", call_method_name(c));
    /* a call that arrived before a stop is served: only a gone master fails it */
    if (s->master_gone) {
        call_reply(c, GRPC_STATUS_UNAVAILABLE, "the admin server is shutting down", NULL);
        return;
    }
    switch (c->kind) {
    case CALL_ADMIN:
        rpc_admin(s, c);
        break;
    case CALL_HEALTH:
        rpc_health(c);
        break;
    default:
        call_reply(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method", NULL);
        break;
    }
}

static void rpc_on_event(struct rpc_server *s, const grpc_event *ev)
{
    struct call *c = ev->tag;

    if (ev->type != GRPC_OP_COMPLETE || ev->tag == &shutdown_tag)
        return;
    if (c->replying || !ev->success) {
        /* a reply went out (or the call died), or a requested slot was cancelled at shutdown */
        call_free(c);
        return;
    }
    rpc_on_call(s, c);
}

/*
 * gRPC's documented order: shutdown+notify, cancel, drain, destroy, then
 * the queue. Unless the master is gone, the calls already taken are
 * served first (a restart on new settings must not fail them), for at
 * most ADMIN_DRAIN_MS; then whatever is left is cancelled.
 */
static void rpc_shutdown(struct rpc_server *s)
{
    grpc_event ev;
    bool cancelled = s->master_gone;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(ADMIN_DRAIN_MS, GPR_TIMESPAN));

    s->stopping = true;
    grpc_server_shutdown_and_notify(s->srv, s->cq, &shutdown_tag);
    if (cancelled)
        grpc_server_cancel_all_calls(s->srv);
    for (;;) {
        ev = grpc_completion_queue_next(
            s->cq,
            cancelled ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                      : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(ADMIN_POLL_MS, GPR_TIMESPAN)),
            NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            /* still answering the master's pings, or its watchdog kills us mid-drain */
            if (link_poll(s->link) != LINK_OK)
                s->master_gone = true;
            if (s->master_gone || gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) >= 0) {
                if (!s->master_gone)
                    log_warn("calls still open %d ms into the stop: cancelling them",
                             ADMIN_DRAIN_MS);
                grpc_server_cancel_all_calls(s->srv);
                cancelled = true;
            }
            continue;
        }
        rpc_on_event(s, &ev);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == &shutdown_tag)
            break;
    }
    grpc_server_destroy(s->srv);
    grpc_completion_queue_shutdown(s->cq);
    do {
        ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        rpc_on_event(s, &ev);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(s->cq);
}

/*
 * Gives the freshly bound unix socket its mode, and its group when
 * creating it did not (a set-group-ID directory, or a master that is not
 * root, whose children cannot take another group as their own). Its
 * owner stays the creator: root when the master runs as root, so that
 * neither the workers' account nor the admin's own can connect unless
 * the group or the mode lets it.
 */
static int unix_socket_perms(const char *path, const struct admin_settings *st)
{
    struct stat sb;

    /* the path was just bound; refuse to follow anything else put there */
    if (lstat(path, &sb) < 0 || !S_ISSOCK(sb.st_mode)) {
        log_error("admin socket %s: not a socket after binding", path);
        return -1;
    }
    if (chmod(path, st->socket_mode) < 0) {
        log_errno(LOGL_ERROR, errno, "chmod(%s, %04o)", path, (unsigned)st->socket_mode);
        return -1;
    }
    if (st->socket_gid != (gid_t)-1 && sb.st_gid != st->socket_gid &&
        lchown(path, (uid_t)-1, st->socket_gid) < 0) {
        log_errno(LOGL_ERROR, errno, "chown(%s) to group %u (grpc.socket_group)", path,
                  (unsigned)st->socket_gid);
        return -1;
    }
    return 0;
}

/* Binds the one configured address; returns 0 or -1 (logged). */
static int rpc_bind(struct rpc_server *s, const struct admin_settings *st,
                    const struct admin_pem *pem)
{
    const char *path = link_unix_path(st->addr);
    grpc_server_credentials *creds;
    int port;

    if (path != NULL) {
        creds = grpc_insecure_server_credentials_create();
        /* created owner-only; opened up to socket_mode once the group is right */
        mode_t old = umask(0177);
        /* A new file takes the creator's group: as root (CAP_SETGID, there for
         * the switch to grpc.user anyway) create it as socket_group's, so that
         * no process needs CAP_CHOWN. glibc applies setegid to every thread. */
        gid_t egid = getegid();
        bool as_group = st->setuid && st->socket_gid != (gid_t)-1 && st->socket_gid != egid;
        if (as_group && setegid(st->socket_gid) < 0) {
            log_errno(LOGL_ERROR, errno, "setegid(%u) for the admin socket's group",
                      (unsigned)st->socket_gid);
            umask(old);
            grpc_server_credentials_release(creds);
            return -1;
        }
        port = grpc_server_add_http2_port(s->srv, st->addr, creds);
        if (as_group && setegid(egid) < 0) {
            log_errno(LOGL_ERROR, errno, "setegid(%u) back after binding", (unsigned)egid);
            port = 0;
        }
        umask(old);
    } else {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = pem->key, .cert_chain = pem->cert};
        creds = grpc_ssl_server_credentials_create_ex(
            pem->client_ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
            NULL);
        port = creds != NULL ? grpc_server_add_http2_port(s->srv, st->addr, creds) : 0;
    }
    if (creds != NULL)
        grpc_server_credentials_release(creds);
    if (port == 0) {
        log_error("cannot serve the admin API on %s (see the grpc lines above)", st->addr);
        return -1;
    }
    if (path != NULL && unix_socket_perms(path, st) < 0)
        return -1;
    log_info("admin API listening on %s%s", st->addr, path != NULL ? "" : " (mTLS)");
    return 0;
}

struct rpc_server *rpc_server_new(const struct admin_settings *st, const struct admin_pem *pem,
                                  struct link *link)
{
    struct rpc_server *s = calloc(1, sizeof(*s));
    char path[256];
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = ADMIN_MAX_REQUEST},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
         .value.integer = ADMIN_MAX_STREAMS},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
         .value.integer = ADMIN_HANDSHAKE_MS},
    };
    grpc_channel_args cargs = {.num_args = MC_ARRAY_LEN(args), .args = args};

    if (s == NULL || (s->methods = calloc(service->n_methods, sizeof(void *))) == NULL) {
        log_error("out of memory creating the gRPC server");
        free(s);
        return NULL;
    }
    s->link = link;
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->srv = grpc_server_create(&cargs, NULL);
    grpc_server_register_completion_queue(s->srv, s->cq, NULL);
    for (unsigned i = 0; i < service->n_methods; i++) {
        snprintf(path, sizeof(path), SERVICE_PREFIX "%s", service->methods[i].name);
        s->methods[i] = grpc_server_register_method(s->srv, path, NULL,
                                                    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
    s->health = grpc_server_register_method(s->srv, HEALTH_CHECK_PATH, NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (rpc_bind(s, st, pem) < 0) {
        /* nothing was started, but the documented shutdown order still applies */
        rpc_server_close(s);
        return NULL;
    }
    return s;
}

int rpc_server_run(struct rpc_server *s, volatile sig_atomic_t *stop)
{
    int rc = 0;

    grpc_server_start(s->srv);
    for (unsigned k = 0; k < ADMIN_ARMED && rc == 0; k++) {
        for (unsigned i = 0; i < service->n_methods && rc == 0; i++)
            rc = rpc_arm(s, CALL_ADMIN, i);
        if (rc == 0)
            rc = rpc_arm(s, CALL_HEALTH, 0);
        if (rc == 0)
            rc = rpc_arm(s, CALL_OTHER, 0);
    }
    /* started and armed: a caller that connects now is served */
    if (rc == 0 && link_report_listening(s->link) < 0)
        s->master_gone = true;

    uint64_t stop_ms = 0;
    while (rc == 0 && !s->master_gone) {
        if (*stop && stop_ms == 0) {
            /* gRPC accepts connections only while the queue is polled: the
             * callers that connected during the last call are served first */
            log_info("stopping on a signal, once the calls already made are answered");
            stop_ms = mc_monotonic_ms();
        }
        grpc_event ev = grpc_completion_queue_next(
            s->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis(ADMIN_POLL_MS, GPR_TIMESPAN)),
            NULL);
        if (stop_ms != 0 &&
            (ev.type == GRPC_QUEUE_TIMEOUT || mc_monotonic_ms() - stop_ms >= ADMIN_DRAIN_MS))
            break; /* idle for ADMIN_POLL_MS, or draining too long */
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            log_error("the gRPC completion queue shut down unexpectedly");
            rc = -1;
            break;
        }
        rpc_on_event(s, &ev);
        log_flush(); /* lines a stuck stderr could not take yet */
        uint64_t dropped = log_dropped();
        if (dropped != s->drops_reported &&
            link_report_drops(s->link, dropped - s->drops_reported) == 0)
            s->drops_reported = dropped;
        /* between calls: notice the master's exit and drop stale replies */
        if (link_poll(s->link) != LINK_OK)
            s->master_gone = true;
    }
    if (s->master_gone)
        log_info("the master is gone, stopping");
    return rc;
}

void rpc_server_close(struct rpc_server *s)
{
    rpc_shutdown(s);
    free(s->methods);
    free(s);
}
