/*
 * mcproxyctl: the admin API's command-line client (SPEC section 9).
 * main.c parses the command line and picks the server, client.c makes
 * the gRPC calls, cmd.c builds the requests and prints the answers,
 * json.c prints any protobuf-c message as JSON.
 */
#ifndef MC_CTL_H
#define MC_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#define CTL_EXIT_ERROR 1 /* the call failed: gRPC status, connection, bad config */
#define CTL_EXIT_USAGE 2

/* Where the server is: a unix socket, or TCP with mTLS. */
struct ctl_target {
    char *addr; /* gRPC target: "unix:/path" or "host:port" */
    bool tcp;
    const char *cert, *key, *ca; /* TCP only: the client's identity and the server's CA */
};

struct ctl_client;

/* Opens a channel to the target. NULL (reported) on failure. */
struct ctl_client *client_open(const struct ctl_target *t);
void client_close(struct ctl_client *c);

/*
 * One unary call of ProxyAdminService method `name`. On OK returns 0 and
 * sets *resp (free with protobuf_c_message_free_unpacked). Otherwise
 * prints "mcproxyctl: STATUS: message" (and a hint for UNAVAILABLE over
 * TCP) to stderr and returns -1.
 */
int client_call(struct ctl_client *c, const char *name, const ProtobufCMessage *req,
                ProtobufCMessage **resp);

/* Writes msg as one line of JSON, field names as in the .proto. */
void json_print(FILE *f, const ProtobufCMessage *msg);

/* Options that only `routes add` takes. */
struct ctl_route_opts {
    const char *mode;
    const char *tls_cert;
    const char *tls_key;
    bool backend_tls;
    bool send_proxy_protocol;
};

/* Runs the command in words[0..n); returns the exit code. */
int cmd_run(struct ctl_client *c, bool json, const struct ctl_route_opts *ro, char **words, int n);

/* True when words[0..n) name a command, with the right number of arguments. */
bool cmd_valid(char **words, int n, bool route_opts);

/* Prints s with anything outside printable ASCII as \xHH (server text may be anything). */
void ctl_print_safe(FILE *f, const char *s);

#endif
