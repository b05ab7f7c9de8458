/*
 * Messages on the master <-> worker channel (see chan.h for framing).
 * Payloads are plain structs: both ends are the same binary. Variable
 * parts (names) follow the fixed struct and their lengths are in it;
 * every handler checks the exact total size.
 *
 * Start-up and every later change follow one pattern (relayd's):
 *   master: MSG_STATE_BEGIN(gen), MSG_LISTENER_CONF..., MSG_ROUTE...,
 *           MSG_STATE_COMMIT(gen)
 *   worker: builds the new tables aside, swaps them in on COMMIT, answers
 *           MSG_ACK(gen).
 * A worker starts accepting after its first COMMIT, so the master's first
 * ACK from every worker means "every worker is accepting".
 */
#ifndef MC_MSG_H
#define MC_MSG_H

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "common/addr.h"
#include "common/mc.h"

enum msg_type {
    MSG_SHM = 1,       /* m->w, fd: the shared counters memfd; struct msg_shm */
    MSG_SETTINGS,      /* m->w: struct msg_settings, applies at once */
    MSG_LISTENER,      /* m->w, fd: this worker's socket for listener id; struct msg_listener */
    MSG_STATE_BEGIN,   /* m->w, gen: struct msg_state_begin */
    MSG_LISTENER_CONF, /* m->w, gen: struct msg_listener_conf */
    MSG_ROUTE,         /* m->w, gen: struct msg_routes, then routes packed (below) */
    MSG_STATE_COMMIT,  /* m->w, gen: no payload */
    MSG_ACK,           /* w->m, gen: no payload */
    MSG_STOP,          /* m->w: stop accepting, drain, exit; no payload */
    MSG_ROUTE_DEL,     /* m->w, gen (delta only): struct msg_route_del + hostname */
    MSG_FW_RULES,      /* m->w, gen (when BEGIN says rules): struct msg_fw_rules + rules */
    MSG_GEOIP,         /* m->w, fd: the GeoIP database, a sealed memfd; no payload */
    MSG_RATELIMIT,     /* m->w, fd: the rate-limit table memfd; struct msg_shm */
    MSG_LOG_FILE,      /* m->w, fd or none: where access lines go from now on; no payload */
    MSG_TICKET_KEYS,   /* m->w: struct msg_ticket_keys, after MSG_SETTINGS and at each rotation */

    /* master <-> admin process */
    MSG_ADMIN_SETTINGS, /* m->a: struct msg_admin_settings + addr, tls_cert, tls_key, client_ca */
    MSG_ADMIN_REQ,      /* a->m: struct msg_admin_req + the packed protobuf request */
    MSG_ADMIN_RESP,     /* m->a: struct msg_admin_resp + status message + packed response */
    MSG_ADMIN_LOG_DROPPED, /* a->m: uint64_t, log lines dropped since the last report */

    /* master -> metrics exporter: MSG_SHM (a read-only fd), then this, once */
    MSG_METRICS_SETTINGS, /* struct msg_metrics_settings + n_listeners x char[ADDR_STRLEN] */

    /* master <-> admin process and metrics exporter, liveness (proxy.worker_watchdog) */
    MSG_PING, /* m->child: no payload; answered at once */
    MSG_PONG, /* child->m: no payload */

    /* admin process, metrics exporter -> master: its socket is bound and
     * accepting; once per process. No payload. READY=1 waits for it. */
    MSG_LISTENING,
    MSG__COUNT
};

/* How long the admin process waits for the master's answer to one call.
 * The master answers a change its workers have not all applied by then
 * itself, MSG_ADMIN_TIMEOUT_MS / 5 earlier, saying so. */
#define MSG_ADMIN_TIMEOUT_MS 10000

struct msg_shm {
    uint64_t size;
};

struct msg_settings {
    uint32_t worker_id;
    int32_t cpu;    /* CPU to pin to, or -1 */
    uint8_t setuid; /* switch to uid/gid (the master runs as root) */
    uint32_t uid;
    uint32_t gid;
    int32_t log_level;
    int32_t log_format;
    uint64_t connect_timeout_ms;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t shutdown_timeout_ms;
    uint32_t rate_limit; /* new connections per source per rate_window; 0 = off */
    uint64_t rate_window_ms;
    uint64_t response_timeout_ms;
};

/*
 * L7: the session ticket keys (each a name, an HMAC and an AES key), the
 * same in every worker so that a client resumes whichever worker it
 * reaches. The master draws a new current key every
 * MSG_TICKET_ROTATE_MS; the previous one still decrypts, so a ticket
 * survives one rotation and not two.
 */
#define MSG_TICKET_KEY_LEN   80
#define MSG_TICKET_ROTATE_MS (12ull * 3600 * 1000)

struct msg_ticket_keys {
    uint8_t current[MSG_TICKET_KEY_LEN];
    uint8_t previous[MSG_TICKET_KEY_LEN];
    uint8_t has_previous;
};

struct msg_listener {
    uint32_t id;            /* index into shm listeners */
    char addr[ADDR_STRLEN]; /* the listener's name, NUL-terminated */
};

/*
 * A generation is full (every listener's routes: the tables are rebuilt)
 * or a delta (only the routes that changed, MSG_ROUTE to add or replace,
 * MSG_ROUTE_DEL to remove, applied to the current tables at COMMIT), so a
 * change costs the same with 10 routes or 10,000. Either way n_routes is
 * the total afterwards: a worker whose tables do not add up exits and is
 * replaced from a full state. Every generation carries every bound
 * listener's settings; the firewall rules travel whole when `rules` is
 * set (always in a full generation, in a delta only when they changed),
 * n_rules of them; otherwise the worker keeps the ones it has.
 */
struct msg_state_begin {
    uint32_t n_listeners;
    uint32_t n_routes;
    uint32_t n_rules;
    uint8_t delta;
    uint8_t rules;
};

/* An IP prefix in binary form: the worker never parses rule text. */
struct msg_cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix; /* 0..32 or 0..128 */
    uint8_t addr[16];
};

/* MSG_FW_RULES: a struct msg_fw_rules, then n x struct msg_fw_rule. */
#define MSG_FW_RULES_PER_MSG 4096

struct msg_fw_rules {
    uint32_t n;
};

struct msg_fw_rule {
    uint8_t type;        /* enum fw_type */
    char country[2];     /* FW_COUNTRY: ISO 3166-1 alpha-2, upper case */
    struct msg_cidr net; /* FW_IP (a full-length prefix), FW_CIDR */
};

struct msg_route_del {
    uint32_t listener_id;
    uint8_t hostname_len; /* bytes following the struct, no NUL */
};

/* Followed by n_trusted x struct msg_cidr: the peers allowed to send a PROXY header. */
struct msg_listener_conf {
    uint32_t id;
    uint32_t max_connections;
    uint32_t n_trusted;
    uint8_t proxy_protocol;
};

#define MSG_TRUSTED_MAX 4096 /* trusted_proxies per listener that fit one message */

static inline void msg_cidr_set(struct msg_cidr *m, const struct mc_cidr *c)
{
    *m = (struct msg_cidr){.family = (uint8_t)c->family, .prefix = c->prefix};
    memcpy(m->addr, c->addr, sizeof(m->addr));
}

/* The worker's side: -1 when the family or the prefix length is out of range. */
static inline int msg_cidr_get(const struct msg_cidr *m, struct mc_cidr *c)
{
    if (!((m->family == AF_INET && m->prefix <= 32) || (m->family == AF_INET6 && m->prefix <= 128)))
        return -1;
    *c = (struct mc_cidr){.family = m->family, .prefix = m->prefix};
    memcpy(c->addr, m->addr, sizeof(c->addr));
    return 0;
}

/*
 * MSG_ROUTE carries routes of one listener, packed: a struct msg_routes,
 * then one or more struct msg_route, each followed by its hostname and
 * backend. 10,000 routes take a few dozen messages, not 10,000, and the
 * backend address travels as family, port and IP rather than as a
 * sockaddr_storage of mostly zeros.
 */
#define MSG_ROUTES_PER_MSG 256 /* 256 of the longest are well under CHAN_MAX_PAYLOAD */

struct msg_routes {
    uint32_t listener_id;
    uint32_t
        listener_routes; /* all its routes in a full generation, to size its table; 0 in a delta */
};

struct msg_route {
    uint8_t mode;
    uint8_t backend_tls;
    uint8_t send_proxy_protocol;
    uint8_t hostname_len; /* bytes following the struct, no NUL */
    uint8_t backend_len;  /* bytes following the hostname, no NUL */
    uint8_t family;       /* AF_INET or AF_INET6 */
    uint16_t port;        /* network byte order */
    uint8_t ip[16];       /* the first 4 bytes for AF_INET */
    /* l7 only (an l7 route travels alone in its MSG_ROUTE): after the
     * backend, n_policies x (struct msg_policy + value), then the
     * certificate chain and the key, PEM, as the master read them */
    uint16_t n_policies;
    uint32_t cert_len, key_len;
};

struct msg_policy {
    uint8_t type;       /* enum policy_type */
    uint16_t value_len; /* bytes following, no NUL */
};

/* What an l7 route's certificate and key may take (both fit one message). */
#define MSG_PEM_MAX (256 * 1024)

/* The master's side: a's family, port and IP into mr (family 0, refused, for another family). */
static inline void msg_route_set_addr(struct msg_route *mr, const struct mc_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
        mr->family = AF_INET;
        mr->port = sin->sin_port;
        memcpy(mr->ip, &sin->sin_addr, sizeof(sin->sin_addr));
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
        mr->family = AF_INET6;
        mr->port = sin6->sin6_port;
        memcpy(mr->ip, &sin6->sin6_addr, sizeof(sin6->sin6_addr));
    }
}

/* The worker's side: the address back from mr; -1 when its family is neither. */
static inline int msg_route_get_addr(const struct msg_route *mr, struct mc_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (mr->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = mr->port;
        memcpy(&sin->sin_addr, mr->ip, sizeof(sin->sin_addr));
        a->len = sizeof(*sin);
        return 0;
    }
    if (mr->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = mr->port;
        memcpy(&sin6->sin6_addr, mr->ip, sizeof(sin6->sin6_addr));
        a->len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/*
 * The admin process forwards each gRPC call as the method's index in the
 * generated ProtobufCServiceDescriptor plus the request bytes as received;
 * the master unpacks, acts, and answers with a gRPC status code and the
 * packed response (empty unless the status is OK).
 */
struct msg_admin_settings {
    uint8_t setuid; /* switch to uid/gid (grpc.user, else user) once bound */
    uint32_t uid;
    uint32_t gid;
    int32_t log_level;
    int32_t log_format;
    uint32_t socket_mode;
    uint32_t socket_gid; /* the unix socket's group; (uint32_t)-1 leaves it as created */
    /* lengths of the strings that follow, in this order, no NULs; 0 = unset */
    uint16_t addr_len, tls_cert_len, tls_key_len, client_ca_len;
};

struct msg_admin_req {
    uint32_t id;     /* chosen by the admin, echoed in the response */
    uint32_t method; /* index into mc_proxy__v1__proxy_admin_service__descriptor.methods */
};

struct msg_admin_resp {
    uint32_t id;
    int32_t status;       /* grpc_status_code */
    uint32_t message_len; /* status message bytes that follow; then the response */
};

/*
 * The exporter binds listen (loopback, checked by the config loader) before
 * dropping to uid/gid. The listener names follow, in shm index order, each
 * NUL-terminated in a fixed ADDR_STRLEN slot.
 */
struct msg_metrics_settings {
    uint8_t setuid;
    uint32_t uid;
    uint32_t gid;
    int32_t log_level;
    int32_t log_format;
    uint32_t n_listeners;
    struct mc_addr listen;
};

#endif
