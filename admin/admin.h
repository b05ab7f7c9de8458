/*
 * mc-proxy-admin: the gRPC API process. The master fork+execs it with
 * its channel on PROC_CHAN_FD (common/proc.h) and sends MSG_ADMIN_SETTINGS; the admin serves
 * gRPC and forwards every ProxyAdminService call to the master
 * (MSG_ADMIN_REQ), answering with the master's MSG_ADMIN_RESP. It never
 * touches the database and never forks.
 */
#ifndef MC_ADMIN_H
#define MC_ADMIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/config.h"

struct admin_settings {
    bool setuid;
    uid_t uid;
    gid_t gid;
    int log_level;
    enum log_format log_format;
    mode_t socket_mode;
    gid_t socket_gid; /* (gid_t)-1: as created */
    /* NUL-terminated copies; NULL when unset (addr is always set) */
    char *addr;
    char *tls_cert;
    char *tls_key;
    char *client_ca;
};

/*
 * Parses a MSG_ADMIN_SETTINGS payload (pure: no I/O). Checks the exact
 * size, that no string holds a NUL, that addr is set, and that a TCP
 * address comes with all three TLS files. 0, or -1 with *err set.
 */
int link_settings_parse(const uint8_t *data, size_t len, struct admin_settings *out,
                        const char **err);
void link_settings_free(struct admin_settings *s);

/* "unix:/path" -> "/path"; NULL for a TCP address. */
const char *link_unix_path(const char *addr);

/* A MSG_ADMIN_RESP payload, pointing into the message it was parsed from. */
struct admin_resp_view {
    uint32_t id;
    int32_t status;
    const char *message; /* message_len bytes, not NUL-terminated */
    size_t message_len;
    const uint8_t *body;
    size_t body_len;
};

/* Parses a MSG_ADMIN_RESP payload (pure). 0, or -1 when malformed. */
int link_resp_parse(const uint8_t *data, size_t len, struct admin_resp_view *out);

/* The admin's side of its channel to the master. */
struct link {
    struct chan chan;
    uint32_t last_id;
};

enum link_result {
    LINK_OK = 0,
    LINK_TIMEOUT = -1, /* no answer in time: the call fails, the link stays */
    LINK_GONE = -2,    /* the master closed the channel or broke the protocol */
};

/* The master's answer to one request; free with link_reply_free(). */
struct link_reply {
    int32_t status;
    char *message; /* NUL-terminated, "" when none */
    uint8_t *body;
    size_t body_len;
};

/* Blocks up to timeout_ms for MSG_ADMIN_SETTINGS (the master's first message). */
int link_read_settings(struct link *l, int timeout_ms, struct admin_settings *out);

/*
 * Forwards one request (method index + packed request) and waits up to
 * timeout_ms for the reply with the same id. Replies to earlier requests
 * that timed out are dropped on the way.
 */
enum link_result link_call(struct link *l, uint32_t method, const void *req, size_t len,
                           int timeout_ms, struct link_reply *out);
void link_reply_free(struct link_reply *r);

/* Reads without blocking and drops stale replies; LINK_GONE once the master is gone. */
enum link_result link_poll(struct link *l);

/* Tells the master about n more dropped log lines (it counts them in shared memory). */
int link_report_drops(struct link *l, uint64_t n);

/* Tells the master the API accepts connections (READY=1 waits for it). */
int link_report_listening(struct link *l);

/* The TLS material of a TCP admin address, read before privileges are dropped. */
struct admin_pem {
    char *cert;
    char *key;
    char *client_ca;
};

/*
 * The gRPC server (admin/rpc.c). rpc_server_new() creates it and binds
 * the address, so it runs with whatever privileges binding needs; the
 * unix socket keeps its creator as owner (root, when the master runs as
 * root) and gets settings->socket_mode and socket_gid.
 * rpc_server_run() serves until *stop is set or the master is gone
 * (returns 0 then), or -1 on a gRPC failure.
 * rpc_server_close() shuts the server down in gRPC's documented order
 * and frees it; unless the master is gone, the calls already taken are
 * answered first (bounded), so a restart fails no call in flight.
 */
struct rpc_server;
struct rpc_server *rpc_server_new(const struct admin_settings *settings,
                                  const struct admin_pem *pem, struct link *link);
int rpc_server_run(struct rpc_server *s, volatile sig_atomic_t *stop);
void rpc_server_close(struct rpc_server *s);

#endif
