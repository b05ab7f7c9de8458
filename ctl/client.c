/*
 * mcproxyctl's gRPC client: one channel, one unary call at a time, on a
 * pluck completion queue. Over TCP it presents the client certificate
 * the server's client_ca must have signed, and verifies the server
 * against --ca.
 */
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "common/mc.h"
#include "common/pb.h"
#include "ctl/ctl.h"
#include "proto/admin.pb-c.h"

#define CALL_TIMEOUT_S 15 /* the admin gives the master 10 s */

struct ctl_client {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    bool tcp;
};

static const ProtobufCServiceDescriptor *const service =
    &mc_proxy__v1__proxy_admin_service__descriptor;

/* gRPC's own diagnostics only on request (GRPC_VERBOSITY): the status line says what failed. */
static void grpc_log(gpr_log_func_args *a)
{
    if (getenv("GRPC_VERBOSITY") != NULL)
        fprintf(stderr, "mcproxyctl: grpc: %s\n", a->message);
}

static grpc_channel_credentials *tls_creds(const struct ctl_target *t)
{
    char err[512];
    char *cert = pb_read_pem(t->cert, err, sizeof(err));
    char *key = cert != NULL ? pb_read_pem(t->key, err, sizeof(err)) : NULL;
    char *ca = key != NULL ? pb_read_pem(t->ca, err, sizeof(err)) : NULL;
    grpc_channel_credentials *creds = NULL;

    if (ca == NULL) {
        fprintf(stderr, "mcproxyctl: %s\n", err);
    } else {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        creds = grpc_ssl_credentials_create(ca, &pair, NULL, NULL);
    }
    free(cert);
    if (key != NULL)
        explicit_bzero(key, strlen(key));
    free(key);
    free(ca);
    return creds;
}

struct ctl_client *client_open(const struct ctl_target *t)
{
    struct ctl_client *c = calloc(1, sizeof(*c));
    grpc_channel_credentials *creds;

    if (c == NULL) {
        fprintf(stderr, "mcproxyctl: out of memory\n");
        return NULL;
    }
    gpr_set_log_function(grpc_log);
    grpc_init();
    c->tcp = t->tcp;
    creds = t->tcp ? tls_creds(t) : grpc_insecure_credentials_create();
    if (creds == NULL) {
        free(c);
        grpc_shutdown();
        return NULL;
    }
    c->ch = grpc_channel_create(t->addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    return c;
}

void client_close(struct ctl_client *c)
{
    grpc_event ev;

    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    do {
        ev = grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(c->cq);
    free(c);
    grpc_shutdown();
}

static void report(const struct ctl_client *c, grpc_status_code status, grpc_slice details)
{
    char *text = grpc_slice_to_c_string(details);

    fprintf(stderr, "mcproxyctl: %s: ", pb_status_name(status));
    ctl_print_safe(stderr, text);
    fputc('\n', stderr);
    gpr_free(text);
    if (status == GRPC_STATUS_UNAVAILABLE && c->tcp)
        fprintf(stderr, "mcproxyctl: hint: the server accepts only a client certificate signed "
                        "by its client_ca (--cert, --key), and --ca must be the CA that signed "
                        "the server's certificate\n");
}

int client_call(struct ctl_client *c, const char *name, const ProtobufCMessage *req,
                ProtobufCMessage **resp)
{
    const ProtobufCMethodDescriptor *md =
        protobuf_c_service_descriptor_get_method_by_name(service, name);
    grpc_metadata_array initial_md, trailing_md;
    grpc_byte_buffer *req_bb = pb_bb_pack(req), *resp_bb = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;
    grpc_op ops[6];
    char path[256];
    int rc = -1;

    *resp = NULL;
    if (md == NULL || req_bb == NULL) {
        fprintf(stderr, "mcproxyctl: cannot build the %s request\n", name);
        if (req_bb != NULL)
            grpc_byte_buffer_destroy(req_bb);
        return -1;
    }
    snprintf(path, sizeof(path), "/%s/%s", service->name, md->name);
    grpc_slice method = grpc_slice_from_copied_string(path);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_seconds(CALL_TIMEOUT_S, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method,
                                               NULL, deadline, NULL);
    grpc_slice_unref(method);
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    void *tag = &ops;
    if (grpc_call_start_batch(call, ops, MC_ARRAY_LEN(ops), tag, NULL) != GRPC_CALL_OK) {
        fprintf(stderr, "mcproxyctl: cannot start the %s call\n", name);
    } else {
        grpc_completion_queue_pluck(c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (status != GRPC_STATUS_OK) {
            report(c, status, details);
        } else if ((*resp = pb_bb_unpack(md->output, resp_bb)) == NULL) {
            fprintf(stderr, "mcproxyctl: the server sent a malformed %s response\n", name);
        } else {
            rc = 0;
        }
    }

    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_byte_buffer_destroy(req_bb);
    if (resp_bb != NULL)
        grpc_byte_buffer_destroy(resp_bb);
    grpc_call_unref(call);
    return rc;
}
