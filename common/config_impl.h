/*
 * Private to the config loader, config*.c: the raw structs libcyaml
 * fills, the loader state its steps share, and what each step's file
 * offers the others. config.c describes the steps.
 */
#ifndef MC_CONFIG_IMPL_H
#define MC_CONFIG_IMPL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cyaml/cyaml.h>
#include <yaml.h>

#include "common/check.h"
#include "common/config.h"
#include "common/mc.h"

/* Key paths are built from schema keys and indices only, so this is ample. */
#define PATH_LEN 256

/* The file as step 3 loads it: strings where the meaning is checked later.
 * The strings point into the document tree. */
struct raw_policy {
    enum policy_type type;
    char *value;
};

struct raw_route {
    char *hostname;
    char *backend;
    enum route_mode mode;
    char *tls_cert;
    char *tls_key;
    bool backend_tls;
    bool send_proxy_protocol;
    struct raw_policy *policies;
    unsigned n_policies;
};

struct raw_listener {
    char *addr;
    bool proxy_protocol;
    char **trusted_proxies;
    unsigned n_trusted_proxies;
    char *max_connections; /* checked as SetListenerMaxConnections checks it */
    struct raw_route *routes;
    unsigned n_routes;
};

struct raw_database {
    char *path;
    unsigned *backups_keep; /* NULL when absent: 0 is an error, not "default" */
};

struct raw_grpc {
    char *addr;
    char *socket_mode;
    char *socket_group;
    char *user;
    char *tls_cert;
    char *tls_key;
    char *client_ca;
};

struct raw_firewall {
    char *geoip_db;
    char **blocked_ips;
    unsigned n_blocked_ips;
    char **blocked_cidrs;
    unsigned n_blocked_cidrs;
    char **blocked_countries;
    unsigned n_blocked_countries;
    uint32_t rate_limit;
    char *rate_window;
};

struct raw_proxy {
    char *connect_timeout;
    char *handshake_timeout;
    char *idle_timeout;
    char *response_timeout;
    char *shutdown_timeout;
    char *worker_watchdog;
};

struct raw_metrics {
    char *addr;
};

struct raw_log {
    int *level; /* NULL when absent: the default (info) is not the first value */
    enum log_format format;
    char *access_file;
};

struct raw_config {
    struct raw_database *database;
    char *user;
    char *workers;
    bool cpu_affinity;
    struct raw_listener *listeners;
    unsigned n_listeners;
    struct raw_grpc *grpc;
    struct raw_firewall *firewall;
    struct raw_proxy *proxy;
    struct raw_metrics *metrics;
    struct raw_log *log;
};

/* A hash table from names (not copied) to numbers: open addressing, linear
 * probing, at most half full. */
struct name_slot {
    const char *name; /* NULL: empty */
    size_t value;
};

struct name_index {
    struct name_slot *slots;
    size_t mask;
};

/* Where a key path is in the file: its line, or the variable that set it. */
struct path_entry {
    char *path;
    unsigned line;
    const char *env;
    bool tainted; /* an error was reported inside this entity */
};

struct error {
    unsigned line; /* 0 (no line) sorts last */
    size_t seq;
    char *msg;
};

/* A node the environment created, and the variable it came from. */
struct env_node {
    int id;
    const char *var;
};

struct loader {
    const char *file;
    const char *dir; /* cfg->dir, once step 4 has set it */
    char *text;      /* the file's bytes, read once by step 1 */
    size_t text_len;
    yaml_document_t doc;
    bool have_doc;
    uint8_t *seen; /* per node id: walked already (a second visit is an alias) */
    size_t n_seen;
    char **vars; /* names of the variables applied, owned */
    size_t n_vars;
    struct env_node *env;
    size_t n_env;
    struct path_entry *idx;
    size_t n_idx, cap_idx;
    struct name_index idx_by_path; /* built at the first look-up (most loads need none) */
    size_t n_tainted;              /* entities marked tainted */
    void **blocks;                 /* the raw structs' arrays and structs (step 3), owned */
    size_t n_blocks, cap_blocks;
    struct error *errs;
    size_t n_errs, cap_errs;
    bool oom;
    bool no_files; /* CONFIG_NO_FILE_CHECKS */
};

/* config.c: error collection, and helpers of more than one step. */
void *cfg_grow(void *p, size_t *cap, size_t n, size_t size);
#define QUOTED(s) CHECK_QUOTED(s)
void cfg_vfail(struct loader *ld, unsigned line, const char *env, const char *path, const char *fmt,
               va_list ap);
void cfg_fail(struct loader *ld, unsigned line, const char *env, const char *path, const char *fmt,
              ...) MC_PRINTF(5, 6);
bool cfg_parse_decimal(const char *s, uint64_t max, uint64_t *out);
/* An empty table with room for n names; -1 when memory ran out. */
int name_index_init(struct name_index *x, size_t n);
void name_index_free(struct name_index *x);
/* The value of name; else adds name with value v (at most n of init) and returns v. */
size_t name_index_add(struct name_index *x, const char *name, size_t v);
/* The value of name, or SIZE_MAX when absent (or the table was never made). */
size_t name_index_find(const struct name_index *x, const char *name);

/* config_tree.c: steps 1 and 2, and the key path index they build. */
int cfg_read_file(struct loader *ld);
bool cfg_walk(struct loader *ld);
/* The index entry of a key path such as "listeners[0].addr", or NULL. */
const struct path_entry *cfg_idx_find(struct loader *ld, const char *path);

/* config_schema.c: the schema, the one list of keys, and step 3. */
extern const cyaml_schema_field_t cfg_root_fields[];
extern const cyaml_schema_value_t cfg_schema;
/* The raw structs, valid until loader_finish (they point into the tree). */
struct raw_config *cfg_typed_load(struct loader *ld);

/* config_check.c: step 4. */
struct config *cfg_convert(struct loader *ld, const struct raw_config *r);

#endif
