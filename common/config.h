/*
 * The YAML configuration (SPEC section 3), read with libyaml and loaded
 * by the schema in config_schema.c (config.c describes the steps).
 *
 * config_load() parses, applies MCPROXY_<SECTION>_<KEY> environment
 * overrides, validates, and either returns a complete config or reports
 * every error it found (each naming the key path and the line) and
 * returns NULL. Nothing is half-loaded: a caller either gets a config
 * that passed every check or nothing.
 */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"

enum route_mode {
    ROUTE_L4 = 0,
    ROUTE_L7 = 1,
};

enum policy_type {
    POLICY_BLOCK_USER_AGENT = 0,
    POLICY_REQUIRE_HEADER = 1,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

struct policy_conf {
    enum policy_type type;
    char *value;
};

struct route_conf {
    char *hostname; /* normalised: lower-case, no trailing dot; may be "*.suffix" */
    char *backend;  /* as written, validated */
    struct mc_addr backend_addr;
    enum route_mode mode;
    char *tls_cert; /* NULL unless set; absolute paths (resolved against the config dir) */
    char *tls_key;
    bool backend_tls;
    bool send_proxy_protocol;
    struct policy_conf *policies;
    unsigned n_policies;
};

struct listener_conf {
    char *addr; /* as written, e.g. ":443", used as the listener's name */
    struct mc_bind bind;
    bool proxy_protocol;
    struct mc_cidr *trusted_proxies;
    unsigned n_trusted_proxies;
    uint32_t max_connections; /* 0 = unlimited */
    struct route_conf *routes;
    unsigned n_routes;
};

struct grpc_conf {
    bool enabled;         /* false when the section is absent */
    char *addr;           /* "unix:/path" or "host:port" */
    char *unix_path;      /* set when addr is unix: */
    uint32_t socket_mode; /* default 0660 */
    char *socket_group;   /* the unix socket's group; NULL: root's (as root), unchanged (not) */
    char *user;           /* the admin process's account; NULL: `user` */
    char *tls_cert;
    char *tls_key;
    char *client_ca;
};

/* A firewall rule's type: the config's three lists, the database's rows, the channel's rules. */
enum fw_type {
    FW_IP = 0,
    FW_CIDR = 1,
    FW_COUNTRY = 2,
};

struct firewall_conf {
    char *geoip_db;
    char **blocked_ips; /* validated, canonical text form */
    unsigned n_blocked_ips;
    char **blocked_cidrs; /* validated, host bits zero */
    unsigned n_blocked_cidrs;
    char **blocked_countries; /* two upper-case letters */
    unsigned n_blocked_countries;
    uint32_t rate_limit; /* 0 = off */
    uint64_t rate_window_ms;
};

/* The shortest proxy.worker_watchdog: workers show life four times as often. */
#define CONFIG_WATCHDOG_MIN_MS 1000

struct proxy_conf {
    uint64_t connect_timeout_ms;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t response_timeout_ms;
    uint64_t shutdown_timeout_ms;
    uint64_t worker_watchdog_ms; /* a child showing no progress this long is killed; 0 = off */
};

struct metrics_conf {
    bool enabled;
    char *addr;
    struct mc_addr listen_addr;
};

struct config {
    char *path; /* the file it was read from */
    char *dir;  /* its directory: relative paths in the file are resolved against it */
    char *database_path;
    unsigned database_backups_keep; /* snapshots kept; default 7 */
    char *user;                     /* NULL when absent */
    unsigned workers;               /* 0 = auto */
    bool cpu_affinity;
    struct listener_conf *listeners;
    unsigned n_listeners;
    struct grpc_conf grpc;
    struct firewall_conf firewall;
    struct proxy_conf proxy;
    struct metrics_conf metrics;
    int log_level; /* LOGL_DEBUG .. LOGL_ERROR from log.h */
    enum log_format log_format;
    char *log_access_file; /* NULL: access lines go to stderr with the rest */
};

/*
 * Loads and validates FILE. On success returns the config (free with
 * config_free). On failure returns NULL and has called report(arg, msg)
 * once per error, in file order, each message of the form
 * "FILE:LINE: KEY.PATH: what is wrong" (LINE omitted only when no line
 * is known, e.g. an unreadable file or a bad environment override, in
 * which case the variable is named instead).
 */
typedef void config_report_fn(void *arg, const char *msg);
struct config *config_load(const char *file, config_report_fn *report, void *arg);
/* The same, without the checks that read other files (an L7 route's
 * certificate and key): for a client that only wants the grpc section,
 * and may not be able to read the keys. */
struct config *config_load_no_files(const char *file, config_report_fn *report, void *arg);
void config_free(struct config *cfg);
/* Frees what only seeds the database (listeners, routes, firewall rule
 * lists): once the database is loaded the master has no use for them. */
void config_drop_seed(struct config *cfg);

/*
 * Frees n listeners, their routes and policies, and the array itself.
 * Every string and array in them is its own malloc'd block, or NULL; a
 * partly filled listener (zeroed fields) is freed the same way. The
 * database state (state.h) reuses these structs and this function.
 */
void listener_conf_free_array(struct listener_conf *ls, unsigned n);

/* The listener named addr (exact string) among ls[0..n), or NULL. */
struct listener_conf *listener_conf_find(struct listener_conf *ls, unsigned n, const char *addr);

/* The words the file uses: "l4" / "l7", "block_user_agent" /
 * "require_header" <-> enum; NULL / -1 when unknown. */
const char *config_route_mode_name(enum route_mode m);
int config_route_mode_parse(const char *s);
const char *config_policy_type_name(enum policy_type t);
int config_policy_type_parse(const char *s);

/* Number of workers to run: cfg->workers, or the online CPU count for auto. */
unsigned config_worker_count(const struct config *cfg);

/* Parses "500ms", "5s", "10m", "1h" into milliseconds. -1 on error. */
int config_parse_duration(const char *s, uint64_t *ms);

#endif
