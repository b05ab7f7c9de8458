/*
 * The YAML configuration (SPEC section 3).
 *
 * libcyaml stops at the first error it meets, and an operator fixing a
 * file wants them all, so loading runs in four steps:
 *
 *  1. libyaml reads the file into a document tree, and the MCPROXY_*
 *     environment overrides are spliced into that tree.
 *  2. A walk of the tree against the libcyaml schema below (the one list
 *     of keys) records the line of every key path and reports unknown
 *     keys, wrong shapes, bad scalars and missing keys. A bad value is
 *     replaced with a placeholder that the schema accepts, and its entity
 *     (the top-level key, or the listener, route or policy holding it) is
 *     marked tainted: the typed load still succeeds, and the checks of
 *     step 4 skip what is already known to be wrong instead of reporting
 *     it twice.
 *  3. The tree is emitted again and libcyaml loads it into the raw_*
 *     structs below.
 *  4. Conversion into struct config checks what each value means and
 *     resolves relative paths, finding each value's line by key path.
 *
 * Errors are collected as they are found and reported in file order.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cyaml/cyaml.h>
#include <yaml.h>

#include "addr.h"
#include "config.h"
#include "hostname.h"
#include "log.h"
#include "mc.h"

#define DEFAULT_BACKUPS_KEEP 7
#define MAX_BACKUPS_KEEP     1000
#define DEFAULT_SOCKET_MODE  0660
/* Timers are armed in int milliseconds (epoll, timerfd helpers). */
#define MAX_DURATION_MS (596ULL * 3600 * 1000)
#define MAX_DURATION    "596h"

/* Key paths are built from schema keys and indices only, so this is ample. */
#define PATH_LEN 256
/* Values quoted back in messages are cut to this many bytes. */
#define QUOTE_LEN 64

/* The file as libcyaml loads it: strings where the meaning is checked later. */
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
    uint32_t max_connections;
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
};

struct raw_metrics {
    char *addr;
};

struct raw_log {
    int *level; /* NULL when absent: the default (info) is not the first value */
    enum log_format format;
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

/*
 * The schema. Strings are unconstrained here (emptiness and syntax are
 * checked in step 4, with better messages) and sequences have no minimum,
 * which keeps the placeholders of step 2 simple.
 */
#define OPT    CYAML_FLAG_OPTIONAL
#define STRICT CYAML_FLAG_STRICT
#define FIELD_STR(key, flags, type, member)                                                        \
    CYAML_FIELD_STRING_PTR(key, flags, type, member, 0, CYAML_UNLIMITED)
#define FIELD_SEQ(key, type, member, count, entry, max)                                            \
    CYAML_FIELD_SEQUENCE_COUNT(key, CYAML_FLAG_POINTER | OPT, type, member, count, entry, 0, max)

static const cyaml_strval_t mode_strings[] = {
    {"l4", ROUTE_L4},
    {"l7", ROUTE_L7},
};

static const cyaml_strval_t policy_strings[] = {
    {"block_user_agent", POLICY_BLOCK_USER_AGENT},
    {"require_header", POLICY_REQUIRE_HEADER},
};

static const cyaml_strval_t level_strings[] = {
    {"debug", LOGL_DEBUG},
    {"info", LOGL_INFO},
    {"warn", LOGL_WARN},
    {"error", LOGL_ERROR},
};

static const cyaml_strval_t format_strings[] = {
    {"text", LOG_FORMAT_TEXT},
    {"json", LOG_FORMAT_JSON},
};

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_schema_field_t policy_fields[] = {
    CYAML_FIELD_ENUM("type", STRICT, struct raw_policy, type, policy_strings,
                     MC_ARRAY_LEN(policy_strings)),
    FIELD_STR("value", 0, struct raw_policy, value),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t policy_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_policy, policy_fields),
};

static const cyaml_schema_field_t route_fields[] = {
    FIELD_STR("hostname", 0, struct raw_route, hostname),
    FIELD_STR("backend", 0, struct raw_route, backend),
    CYAML_FIELD_ENUM("mode", OPT | STRICT, struct raw_route, mode, mode_strings,
                     MC_ARRAY_LEN(mode_strings)),
    FIELD_STR("tls_cert", OPT, struct raw_route, tls_cert),
    FIELD_STR("tls_key", OPT, struct raw_route, tls_key),
    CYAML_FIELD_BOOL("backend_tls", OPT, struct raw_route, backend_tls),
    CYAML_FIELD_BOOL("send_proxy_protocol", OPT, struct raw_route, send_proxy_protocol),
    FIELD_SEQ("l7_policies", struct raw_route, policies, n_policies, &policy_entry,
              CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t route_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_route, route_fields),
};

static const cyaml_schema_field_t listener_fields[] = {
    FIELD_STR("addr", 0, struct raw_listener, addr),
    CYAML_FIELD_BOOL("proxy_protocol", OPT, struct raw_listener, proxy_protocol),
    FIELD_SEQ("trusted_proxies", struct raw_listener, trusted_proxies, n_trusted_proxies,
              &string_entry, CYAML_UNLIMITED),
    CYAML_FIELD_UINT("max_connections", OPT, struct raw_listener, max_connections),
    FIELD_SEQ("routes", struct raw_listener, routes, n_routes, &route_entry, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t listener_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct raw_listener, listener_fields),
};

static const cyaml_schema_field_t database_fields[] = {
    FIELD_STR("path", 0, struct raw_database, path),
    CYAML_FIELD_UINT_PTR("backups_keep", OPT, struct raw_database, backups_keep),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t grpc_fields[] = {
    FIELD_STR("addr", 0, struct raw_grpc, addr),
    FIELD_STR("socket_mode", OPT, struct raw_grpc, socket_mode),
    FIELD_STR("tls_cert", OPT, struct raw_grpc, tls_cert),
    FIELD_STR("tls_key", OPT, struct raw_grpc, tls_key),
    FIELD_STR("client_ca", OPT, struct raw_grpc, client_ca),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t firewall_fields[] = {
    FIELD_STR("geoip_db", OPT, struct raw_firewall, geoip_db),
    FIELD_SEQ("blocked_ips", struct raw_firewall, blocked_ips, n_blocked_ips, &string_entry,
              CYAML_UNLIMITED),
    FIELD_SEQ("blocked_cidrs", struct raw_firewall, blocked_cidrs, n_blocked_cidrs, &string_entry,
              CYAML_UNLIMITED),
    FIELD_SEQ("blocked_countries", struct raw_firewall, blocked_countries, n_blocked_countries,
              &string_entry, CYAML_UNLIMITED),
    CYAML_FIELD_UINT("rate_limit", OPT, struct raw_firewall, rate_limit),
    FIELD_STR("rate_window", OPT, struct raw_firewall, rate_window),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t proxy_fields[] = {
    FIELD_STR("connect_timeout", OPT, struct raw_proxy, connect_timeout),
    FIELD_STR("handshake_timeout", OPT, struct raw_proxy, handshake_timeout),
    FIELD_STR("idle_timeout", OPT, struct raw_proxy, idle_timeout),
    FIELD_STR("response_timeout", OPT, struct raw_proxy, response_timeout),
    FIELD_STR("shutdown_timeout", OPT, struct raw_proxy, shutdown_timeout),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t metrics_fields[] = {
    FIELD_STR("addr", 0, struct raw_metrics, addr),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t log_fields[] = {
    CYAML_FIELD_ENUM_PTR("level", OPT | STRICT, struct raw_log, level, level_strings,
                         MC_ARRAY_LEN(level_strings)),
    CYAML_FIELD_ENUM("format", OPT | STRICT, struct raw_log, format, format_strings,
                     MC_ARRAY_LEN(format_strings)),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t root_fields[] = {
    CYAML_FIELD_MAPPING_PTR("database", 0, struct raw_config, database, database_fields),
    FIELD_STR("user", OPT, struct raw_config, user),
    FIELD_STR("workers", OPT, struct raw_config, workers),
    CYAML_FIELD_BOOL("cpu_affinity", OPT, struct raw_config, cpu_affinity),
    FIELD_SEQ("listeners", struct raw_config, listeners, n_listeners, &listener_entry,
              MC_MAX_LISTENERS),
    CYAML_FIELD_MAPPING_PTR("grpc", OPT, struct raw_config, grpc, grpc_fields),
    CYAML_FIELD_MAPPING_PTR("firewall", OPT, struct raw_config, firewall, firewall_fields),
    CYAML_FIELD_MAPPING_PTR("proxy", OPT, struct raw_config, proxy, proxy_fields),
    CYAML_FIELD_MAPPING_PTR("metrics", OPT, struct raw_config, metrics, metrics_fields),
    CYAML_FIELD_MAPPING_PTR("log", OPT, struct raw_config, log, log_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t config_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_config, root_fields),
};

/* Step 2 never hands libcyaml an alias; NO_ALIAS makes sure of it. */
static const cyaml_config_t cyaml_cfg = {
    .log_fn = NULL,
    .mem_fn = cyaml_mem,
    .log_level = CYAML_LOG_ERROR,
    .flags = CYAML_CFG_NO_ALIAS,
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
    struct error *errs;
    size_t n_errs, cap_errs;
    bool oom;
};

#define NO_ENTITY SIZE_MAX

/* P with room for element N (of *CAP allocated), or NULL when memory ran out. */
static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? *cap * 2 : 16;
    void *np;

    if (n < *cap)
        return p;
    np = reallocarray(p, ncap, size);
    if (np != NULL)
        *cap = ncap;
    return np;
}

/* Escapes s for a message: printable ASCII stays, the rest is \xHH; long values are cut. */
static const char *escape(const char *s, char *buf, size_t size)
{
    size_t o = 0;

    for (; *s != '\0' && o + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    if (*s != '\0')
        o += (size_t)snprintf(buf + o, size - o, "...");
    buf[o] = '\0';
    return buf;
}

#define QUOTED(s) escape((s), (char[QUOTE_LEN + 8]){0}, QUOTE_LEN + 8)

static void vfail(struct loader *ld, unsigned line, const char *env, const char *path,
                  const char *fmt, va_list ap)
{
    char what[512], msg[1024];
    struct error *errs;
    int n;

    vsnprintf(what, sizeof(what), fmt, ap);
    if (env != NULL)
        n = snprintf(msg, sizeof(msg), "%s: %s: ", ld->file, env);
    else if (line != 0)
        n = snprintf(msg, sizeof(msg), "%s:%u: ", ld->file, line);
    else
        n = snprintf(msg, sizeof(msg), "%s: ", ld->file);
    if (n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, "%s%s%s", path, *path ? ": " : "", what);

    errs = grow(ld->errs, &ld->cap_errs, ld->n_errs, sizeof(*errs));
    if (errs == NULL || (errs[ld->n_errs].msg = strdup(msg)) == NULL) {
        ld->oom = true;
        return;
    }
    ld->errs = errs;
    ld->errs[ld->n_errs].line = env != NULL ? 0 : line;
    ld->errs[ld->n_errs].seq = ld->n_errs;
    ld->n_errs++;
}

static void fail(struct loader *ld, unsigned line, const char *env, const char *path,
                 const char *fmt, ...) MC_PRINTF(5, 6);

static void fail(struct loader *ld, unsigned line, const char *env, const char *path,
                 const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(ld, line, env, path, fmt, ap);
    va_end(ap);
}

/* ---- step 1: read the file, apply the environment ---- */

static int read_file(struct loader *ld)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    struct stat st;
    FILE *f;
    int rc = -1;

    f = fopen(ld->file, "rb");
    if (f == NULL) {
        fail(ld, 0, NULL, "", "cannot open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fail(ld, 0, NULL, "", "cannot read: %s", strerror(EISDIR));
        fclose(f);
        return -1;
    }
    if (!yaml_parser_initialize(&parser)) {
        ld->oom = true;
        fclose(f);
        return -1;
    }
    yaml_parser_set_input_file(&parser, f);

    if (!yaml_parser_load(&parser, &ld->doc))
        goto syntax;
    ld->have_doc = true;
    /* libyaml loads one document at a time; a second one would be ignored silently. */
    if (!yaml_parser_load(&parser, &extra))
        goto syntax;
    if (yaml_document_get_root_node(&extra) != NULL)
        fail(ld, (unsigned)extra.start_mark.line + 1, NULL, "",
             "only one YAML document is allowed");
    else
        rc = 0;
    yaml_document_delete(&extra);
    goto out;

syntax:
    if (parser.error == YAML_MEMORY_ERROR)
        ld->oom = true;
    else if (parser.error == YAML_READER_ERROR)
        fail(ld, 0, NULL, "", "cannot read: %s at byte %zu", parser.problem, parser.problem_offset);
    else
        fail(ld, (unsigned)parser.problem_mark.line + 1, NULL, "", "YAML syntax error: %s%s%s",
             parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
             parser.context ? parser.context : "");
out:
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static yaml_node_t *node(struct loader *ld, int id)
{
    return yaml_document_get_node(&ld->doc, id);
}

static const char *node_env(const struct loader *ld, int id)
{
    for (size_t i = 0; i < ld->n_env; i++)
        if (ld->env[i].id == id)
            return ld->env[i].var;
    return NULL;
}

static bool is_scalar_type(enum cyaml_type t)
{
    return t != CYAML_MAPPING && t != CYAML_SEQUENCE;
}

/* An empty, "~" or "null" plain scalar: YAML's null, taken as "key absent". */
static bool is_null(const yaml_node_t *n)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int add_scalar(struct loader *ld, const char *value, yaml_scalar_style_t style)
{
    int id = yaml_document_add_scalar(&ld->doc, NULL, (const yaml_char_t *)value, -1, style);

    if (id == 0)
        ld->oom = true;
    return id;
}

static int add_mapping(struct loader *ld)
{
    int id = yaml_document_add_mapping(&ld->doc, NULL, YAML_BLOCK_MAPPING_STYLE);

    if (id == 0)
        ld->oom = true;
    return id;
}

static bool add_pair(struct loader *ld, int map, int key, int value)
{
    if (key == 0 || value == 0 || !yaml_document_append_mapping_pair(&ld->doc, map, key, value)) {
        ld->oom = true;
        return false;
    }
    return true;
}

static yaml_node_pair_t *find_pair(struct loader *ld, int map, const char *key)
{
    yaml_node_t *m = node(ld, map);

    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(ld, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return p;
    }
    return NULL;
}

static int env_mark(struct loader *ld, int id, const char *var)
{
    void *np;

    if (id == 0)
        return 0;
    np = reallocarray(ld->env, ld->n_env + 1, sizeof(*ld->env));
    if (np == NULL) {
        ld->oom = true;
        return 0;
    }
    ld->env = np;
    ld->env[ld->n_env++] = (struct env_node){id, var};
    return id;
}

/*
 * The mapping of top-level section NAME, created when the file omits it
 * (or leaves it empty), so that MCPROXY_GRPC_ADDR alone enables the admin
 * API. 0 when the file gives the section a value that is not a mapping:
 * the walk reports that.
 */
static int env_section(struct loader *ld, const char *name, const char *var)
{
    yaml_node_pair_t *p = find_pair(ld, 1, name);
    int map;

    if (p != NULL && node(ld, p->value)->type == YAML_MAPPING_NODE)
        return p->value;
    if (p != NULL && !is_null(node(ld, p->value)))
        return 0;
    map = env_mark(ld, add_mapping(ld), var);
    if (map == 0)
        return 0;
    p = find_pair(ld, 1, name);
    if (p != NULL) {
        p->value = map;
        return map;
    }
    if (!add_pair(ld, 1, env_mark(ld, add_scalar(ld, name, YAML_PLAIN_SCALAR_STYLE), var), map))
        return 0;
    return map;
}

/* The value is double-quoted so that it is never read as a YAML null. */
static void env_set(struct loader *ld, int map, const char *key, const char *value, const char *var)
{
    int v = env_mark(ld, add_scalar(ld, value, YAML_DOUBLE_QUOTED_SCALAR_STYLE), var);
    yaml_node_pair_t *p;

    if (v == 0)
        return;
    p = find_pair(ld, map, key);
    if (p != NULL)
        p->value = v;
    else
        add_pair(ld, map, env_mark(ld, add_scalar(ld, key, YAML_PLAIN_SCALAR_STYLE), var), v);
}

static void env_override(struct loader *ld, const char *section, const char *key)
{
    char var[64], *name;
    const char *value;
    int map = 1;
    void *np;

    snprintf(var, sizeof(var), "MCPROXY_%s%s%s", section ? section : "", section ? "_" : "", key);
    for (char *c = var; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    value = getenv(var);
    /* An empty variable counts as unset, as systemd's Environment= users expect. */
    if (value == NULL || value[0] == '\0')
        return;

    np = reallocarray(ld->vars, ld->n_vars + 1, sizeof(*ld->vars));
    if (np == NULL || (name = strdup(var)) == NULL) {
        if (np != NULL)
            ld->vars = np;
        ld->oom = true;
        return;
    }
    ld->vars = np;
    ld->vars[ld->n_vars++] = name;

    if (section != NULL)
        map = env_section(ld, section, name);
    if (map != 0)
        env_set(ld, map, key, value, name);
}

/*
 * Every scalar of the schema has a variable MCPROXY_<SECTION>_<KEY>, or
 * MCPROXY_<KEY> at the top level; sequences have none. An override is
 * spliced into the tree before the walk, so it is checked exactly like
 * the file's own value, and errors name the variable. An override for a
 * section the file omits creates the section as if the file had it with
 * that one key: MCPROXY_GRPC_ADDR alone enables the admin API, while
 * MCPROXY_GRPC_TLS_CERT alone is an error (grpc.addr is missing).
 */
static void env_apply(struct loader *ld)
{
    for (const cyaml_schema_field_t *f = root_fields; f->key != NULL && !ld->oom; f++) {
        if (f->value.type == CYAML_MAPPING) {
            for (const cyaml_schema_field_t *s = f->value.mapping.fields; s->key != NULL; s++)
                if (is_scalar_type(s->value.type))
                    env_override(ld, f->key, s->key);
        } else if (is_scalar_type(f->value.type)) {
            env_override(ld, NULL, f->key);
        }
    }
}

/* ---- step 2: walk the tree against the schema ---- */

static size_t idx_add(struct loader *ld, const char *path, unsigned line, const char *env)
{
    struct path_entry *idx = grow(ld->idx, &ld->cap_idx, ld->n_idx, sizeof(*idx)), *e;

    if (idx == NULL) {
        ld->oom = true;
        return NO_ENTITY;
    }
    ld->idx = idx;
    e = &idx[ld->n_idx];
    *e = (struct path_entry){.path = strdup(path), .line = line, .env = env};
    if (e->path == NULL) {
        ld->oom = true;
        return NO_ENTITY;
    }
    return ld->n_idx++;
}

static void taint(struct loader *ld, size_t entity)
{
    if (entity != NO_ENTITY)
        ld->idx[entity].tainted = true;
}

static size_t path_push(char *path, size_t len, const char *fmt, ...) MC_PRINTF(3, 4);

static size_t path_push(char *path, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(path + len, PATH_LEN - len, fmt, ap);
    va_end(ap);
    return n < 0 ? len : MC_MIN(len + (size_t)n, PATH_LEN - 1);
}

static size_t path_key(char *path, size_t len, const char *key)
{
    return path_push(path, len, "%s%s", len ? "." : "", key);
}

static const char *expected(const cyaml_schema_value_t *s, char *buf, size_t size)
{
    size_t o;

    switch (s->type) {
    case CYAML_MAPPING:
        return "a mapping";
    case CYAML_SEQUENCE:
        return "a sequence";
    case CYAML_BOOL:
        return "true or false";
    case CYAML_UINT:
        return "an unsigned integer";
    case CYAML_ENUM:
        o = (size_t)snprintf(buf, size, "one of");
        for (uint32_t i = 0; i < s->enumeration.count && o < size; i++)
            o += (size_t)snprintf(buf + o, size - o, "%s %s", i ? "," : "",
                                  s->enumeration.strings[i].str);
        return buf;
    default:
        return "a string";
    }
}

/* Decimal digits only, no sign, space or leading zero, at most max. */
static bool parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if ((i == 1 && s[0] == '0') || v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (i == 0 || s[i] != '\0')
        return false;
    *out = v;
    return true;
}

/*
 * Whether a scalar suits its schema type. Stricter than libcyaml itself
 * (which reads "5abc" as 5 and anything but a few words as true), so
 * that whatever passes here loads with the meaning it appears to have.
 */
static bool scalar_ok(const cyaml_schema_value_t *s, const char *v)
{
    uint64_t n;

    switch (s->type) {
    case CYAML_UINT:
        return parse_decimal(v, UINT64_MAX >> (64 - 8 * s->data_size), &n);
    case CYAML_BOOL:
        return strcasecmp(v, "true") == 0 || strcasecmp(v, "false") == 0;
    case CYAML_ENUM:
        for (uint32_t i = 0; i < s->enumeration.count; i++)
            if (strcmp(v, s->enumeration.strings[i].str) == 0)
                return true;
        return false;
    case CYAML_STRING:
        return true;
    default:
        return false;
    }
}

/* A value the schema accepts, standing in for a bad or missing one. */
static int placeholder(struct loader *ld, const cyaml_schema_value_t *s)
{
    int id;

    switch (s->type) {
    case CYAML_MAPPING:
        id = add_mapping(ld);
        for (const cyaml_schema_field_t *f = s->mapping.fields; id && f->key != NULL; f++)
            if (!(f->value.flags & CYAML_FLAG_OPTIONAL) &&
                !add_pair(ld, id, add_scalar(ld, f->key, YAML_PLAIN_SCALAR_STYLE),
                          placeholder(ld, &f->value)))
                return 0;
        return id;
    case CYAML_SEQUENCE:
        id = yaml_document_add_sequence(&ld->doc, NULL, YAML_BLOCK_SEQUENCE_STYLE);
        if (id == 0)
            ld->oom = true;
        return id;
    case CYAML_UINT:
        return add_scalar(ld, "0", YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    case CYAML_BOOL:
        return add_scalar(ld, "false", YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    case CYAML_ENUM:
        return add_scalar(ld, s->enumeration.strings[0].str, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    default:
        return add_scalar(ld, "", YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    }
}

static bool walk_value(struct loader *ld, int id, const cyaml_schema_value_t *s, char *path,
                       size_t len, unsigned line, const char *env, size_t entity);

static void remove_pair(struct loader *ld, int map, size_t i)
{
    yaml_node_t *m = node(ld, map);
    yaml_node_pair_t *p = m->data.mapping.pairs.start;
    size_t n = (size_t)(m->data.mapping.pairs.top - p);

    memmove(&p[i], &p[i + 1], (n - i - 1) * sizeof(*p));
    m->data.mapping.pairs.top--;
}

/* Marks a node walked; false when it was already (an alias of an earlier node). */
static bool first_visit(struct loader *ld, int id)
{
    size_t i = (size_t)id - 1;

    if (i < ld->n_seen && ld->seen[i])
        return false;
    if (i < ld->n_seen)
        ld->seen[i] = 1;
    return true;
}

static void walk_mapping(struct loader *ld, int map, const cyaml_schema_field_t *fields, char *path,
                         size_t len, size_t self, size_t entity)
{
    uint64_t present = 0; /* bit i: fields[i] seen (no mapping has 64 keys) */
    size_t i = 0, flen;

    for (;;) {
        yaml_node_t *m = node(ld, map);
        yaml_node_pair_t pair;
        const cyaml_schema_field_t *f;
        const yaml_node_t *k;
        const char *key, *env;
        unsigned line;
        uint64_t bit;

        if (ld->oom || i >= (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start))
            break;
        pair = m->data.mapping.pairs.start[i];
        k = node(ld, pair.key);
        line = (unsigned)k->start_mark.line + 1;
        env = node_env(ld, pair.value);
        if (env == NULL)
            env = node_env(ld, pair.key);

        if (k->type != YAML_SCALAR_NODE || !first_visit(ld, pair.key)) {
            fail(ld, line, env, path, "keys must be plain strings (no aliases)");
            remove_pair(ld, map, i);
            continue;
        }
        key = (const char *)k->data.scalar.value;
        for (f = fields; f->key != NULL && strcmp(f->key, key) != 0; f++)
            ;
        if (f->key == NULL) {
            char buf[PATH_LEN];
            snprintf(buf, sizeof(buf), "%s%s%s", path, len ? "." : "", QUOTED(key));
            fail(ld, line, env, buf, "unknown key");
            remove_pair(ld, map, i);
            continue;
        }
        bit = 1ULL << (f - fields);
        flen = path_key(path, len, key);
        if (present & bit) {
            fail(ld, line, env, path, "duplicate key");
            remove_pair(ld, map, i);
        } else if (is_null(node(ld, pair.value))) {
            remove_pair(ld, map, i);
        } else {
            present |= bit;
            if (!walk_value(ld, pair.value, &f->value, path, flen, line, env,
                            len == 0 ? NO_ENTITY : entity))
                node(ld, map)->data.mapping.pairs.start[i].value = placeholder(ld, &f->value);
            i++;
        }
        path[len] = '\0';
    }

    for (const cyaml_schema_field_t *f = fields; f->key != NULL && !ld->oom; f++) {
        size_t e;

        if ((present & (1ULL << (f - fields))) || (f->value.flags & CYAML_FLAG_OPTIONAL))
            continue;
        flen = path_key(path, len, f->key);
        fail(ld, ld->idx[self].line, ld->idx[self].env, path, "missing (required)");
        e = idx_add(ld, path, ld->idx[self].line, ld->idx[self].env);
        taint(ld, len == 0 ? e : entity);
        add_pair(ld, map, add_scalar(ld, f->key, YAML_PLAIN_SCALAR_STYLE),
                 placeholder(ld, &f->value));
        path[len] = '\0';
    }
}

/*
 * Checks node ID against schema S, recording PATH's line. ENTITY is the
 * index entry to taint on error; NO_ENTITY makes this node an entity of
 * its own. False when the node must be replaced by a placeholder.
 */
static bool walk_value(struct loader *ld, int id, const cyaml_schema_value_t *s, char *path,
                       size_t len, unsigned line, const char *env, size_t entity)
{
    char buf[256];
    size_t self = idx_add(ld, path, line, env);
    const yaml_node_t *n = node(ld, id);

    if (self == NO_ENTITY)
        return true;
    if (entity == NO_ENTITY)
        entity = self;
    if (!first_visit(ld, id)) {
        fail(ld, line, env, path, "YAML aliases are not supported");
        goto bad;
    }

    switch (s->type) {
    case CYAML_MAPPING:
        if (n->type != YAML_MAPPING_NODE)
            break;
        walk_mapping(ld, id, s->mapping.fields, path, len, self, entity);
        return true;
    case CYAML_SEQUENCE:
        if (n->type != YAML_SEQUENCE_NODE)
            break;
        if ((size_t)(n->data.sequence.items.top - n->data.sequence.items.start) > s->sequence.max) {
            fail(ld, line, env, path, "at most %u entries are allowed", s->sequence.max);
            goto bad;
        }
        for (size_t i = 0; !ld->oom; i++) {
            const yaml_node_t *seq = node(ld, id); /* placeholders move the node array */
            const cyaml_schema_value_t *es = s->sequence.entry;
            size_t ilen;
            int item;

            if (i >= (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start))
                break;
            item = seq->data.sequence.items.start[i];
            ilen = path_push(path, len, "[%zu]", i);
            if (!walk_value(ld, item, es, path, ilen, (unsigned)node(ld, item)->start_mark.line + 1,
                            node_env(ld, item), es->type == CYAML_MAPPING ? NO_ENTITY : entity))
                node(ld, id)->data.sequence.items.start[i] = placeholder(ld, es);
            path[len] = '\0';
        }
        return true;
    default:
        if (n->type != YAML_SCALAR_NODE)
            break;
        if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
            fail(ld, line, env, path, "contains a NUL byte");
            goto bad;
        }
        if (scalar_ok(s, (const char *)n->data.scalar.value))
            return true;
        fail(ld, line, env, path, "expected %s, got \"%s\"", expected(s, buf, sizeof(buf)),
             QUOTED((const char *)n->data.scalar.value));
        goto bad;
    }
    fail(ld, line, env, path, "expected %s", expected(s, buf, sizeof(buf)));
bad:
    taint(ld, entity);
    return false;
}

static int idx_cmp(const void *a, const void *b)
{
    return strcmp(((const struct path_entry *)a)->path, ((const struct path_entry *)b)->path);
}

/* Walks the whole tree; false when the typed load cannot follow. */
static bool walk(struct loader *ld)
{
    char path[PATH_LEN] = "";
    yaml_node_t *root;
    bool ok;

    /* An empty file is an empty mapping: the environment may still fill it. */
    if (yaml_document_get_root_node(&ld->doc) == NULL && add_mapping(ld) == 0)
        return false;
    root = yaml_document_get_root_node(&ld->doc);
    if (root->type != YAML_MAPPING_NODE) {
        fail(ld, (unsigned)root->start_mark.line + 1, NULL, "",
             "the top level must be a mapping of keys");
        return false;
    }
    env_apply(ld);

    ld->n_seen = (size_t)(ld->doc.nodes.top - ld->doc.nodes.start);
    ld->seen = calloc(ld->n_seen, 1);
    if (ld->seen == NULL) {
        ld->oom = true;
        return false;
    }
    root = yaml_document_get_root_node(&ld->doc);
    ok = walk_value(ld, 1, &config_schema, path, 0, (unsigned)root->start_mark.line + 1, NULL,
                    NO_ENTITY);
    if (ld->n_idx > 1)
        qsort(ld->idx, ld->n_idx, sizeof(*ld->idx), idx_cmp);
    return ok && !ld->oom;
}

/* ---- step 3: the typed load ---- */

struct outbuf {
    unsigned char *p;
    size_t len, cap;
};

static int out_write(void *data, unsigned char *buf, size_t size)
{
    struct outbuf *o = data;

    if (size > o->cap - o->len) {
        size_t cap = MC_MAX(o->cap * 2, o->len + size);
        unsigned char *np = realloc(o->p, cap);
        if (np == NULL)
            return 0;
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->len, buf, size);
    o->len += size;
    return 1;
}

static struct raw_config *typed_load(struct loader *ld)
{
    struct raw_config *raw = NULL;
    struct outbuf out = {0};
    yaml_emitter_t em;
    cyaml_err_t err;
    int ok;

    if (!yaml_emitter_initialize(&em)) {
        ld->oom = true;
        return NULL;
    }
    yaml_emitter_set_output(&em, out_write, &out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    ok = yaml_emitter_open(&em);
    if (ok) {
        ok = yaml_emitter_dump(&em, &ld->doc); /* frees the document, whatever happens */
        ld->have_doc = false;
    }
    ok = ok && yaml_emitter_close(&em) && yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);

    if (!ok) {
        fail(ld, 0, NULL, "", "internal error: cannot re-emit the document");
    } else {
        err = cyaml_load_data(out.p, out.len, &cyaml_cfg, &config_schema, (cyaml_data_t **)&raw,
                              NULL);
        if (err != CYAML_OK)
            fail(ld, 0, NULL, "", "internal error: libcyaml: %s", cyaml_strerror(err));
    }
    free(out.p);
    return raw;
}

/* ---- step 4: meaning ---- */

static const struct path_entry *idx_find(const struct loader *ld, const char *path)
{
    struct path_entry key = {.path = (char *)path};

    return bsearch(&key, ld->idx, ld->n_idx, sizeof(*ld->idx), idx_cmp);
}

static bool tainted(const struct loader *ld, const char *path)
{
    const struct path_entry *e = idx_find(ld, path);

    return e != NULL && e->tainted;
}

/*
 * Reports an error about PREFIX.KEY at the line of that key, or of the
 * nearest enclosing one when the key is absent from the file.
 */
static void bad(struct loader *ld, const char *prefix, const char *key, const char *fmt, ...)
    MC_PRINTF(4, 5);

static void bad(struct loader *ld, const char *prefix, const char *key, const char *fmt, ...)
{
    char path[PATH_LEN], near[PATH_LEN];
    const struct path_entry *e;
    va_list ap;

    snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
    snprintf(near, sizeof(near), "%s", path);
    while ((e = idx_find(ld, near)) == NULL && near[0] != '\0') {
        char *cut = strrchr(near, '.'), *bracket = strrchr(near, '[');
        if (cut == NULL || (bracket != NULL && bracket > cut))
            cut = bracket;
        *(cut != NULL ? cut : near) = '\0';
    }
    va_start(ap, fmt);
    vfail(ld, e ? e->line : 0, e ? e->env : NULL, path, fmt, ap);
    va_end(ap);
}

static char *dup_str(struct loader *ld, const char *s)
{
    char *d = strdup(s);

    if (d == NULL)
        ld->oom = true;
    return d;
}

/* Relative paths are taken from the directory of the config file. */
static char *resolve(struct loader *ld, const char *path)
{
    const char *sep;
    char *out;

    if (path[0] == '/')
        return dup_str(ld, path);
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    sep = ld->dir[strlen(ld->dir) - 1] == '/' ? "" : "/";
    if (asprintf(&out, "%s%s%s", ld->dir, sep, path) < 0) {
        ld->oom = true;
        return NULL;
    }
    return out;
}

static void file_path(struct loader *ld, const char *prefix, const char *key, const char *raw,
                      char **out)
{
    if (raw == NULL)
        return;
    if (raw[0] == '\0')
        bad(ld, prefix, key, "must not be empty");
    else
        *out = resolve(ld, raw);
}

static void duration(struct loader *ld, const char *prefix, const char *key, const char *raw,
                     uint64_t *out)
{
    uint64_t ms;

    if (raw == NULL)
        return;
    if (config_parse_duration(raw, &ms) < 0)
        bad(ld, prefix, key, "invalid duration \"%s\": use a number and ms, s, m or h, e.g. \"5s\"",
            QUOTED(raw));
    else if (ms == 0)
        bad(ld, prefix, key, "must be greater than zero");
    else if (ms > MAX_DURATION_MS)
        bad(ld, prefix, key, "must be at most %s", MAX_DURATION);
    else
        *out = ms;
}

static void set_defaults(struct config *c)
{
    c->database_backups_keep = DEFAULT_BACKUPS_KEEP;
    c->grpc.socket_mode = DEFAULT_SOCKET_MODE;
    c->firewall.rate_window_ms = 10 * 1000;
    c->proxy.connect_timeout_ms = 5 * 1000;
    c->proxy.handshake_timeout_ms = 10 * 1000;
    c->proxy.idle_timeout_ms = 300 * 1000;
    c->proxy.response_timeout_ms = 60 * 1000;
    c->proxy.shutdown_timeout_ms = 30 * 1000;
    c->log_level = LOGL_INFO;
    c->log_format = LOG_FORMAT_TEXT;
}

/* cfg->path made absolute (without resolving symlinks), and its directory. */
static int set_paths(struct loader *ld, struct config *c)
{
    const char *file = ld->file;
    char *cwd, *slash;

    if (file[0] == '/') {
        c->path = dup_str(ld, file);
    } else {
        cwd = getcwd(NULL, 0);
        if (cwd == NULL) {
            fail(ld, 0, NULL, "", "cannot find the current directory: %s", strerror(errno));
            return -1;
        }
        while (file[0] == '.' && file[1] == '/')
            file += 2;
        if (asprintf(&c->path, "%s/%s", cwd, file) < 0) {
            c->path = NULL;
            ld->oom = true;
        }
        free(cwd);
    }
    if (c->path == NULL)
        return -1;
    slash = strrchr(c->path, '/');
    c->dir = strndup(c->path, slash == c->path ? 1 : (size_t)(slash - c->path));
    if (c->dir == NULL) {
        ld->oom = true;
        return -1;
    }
    ld->dir = c->dir;
    return 0;
}

static void conv_top(struct loader *ld, const struct raw_config *r, struct config *c)
{
    uint64_t n;

    if (r->database != NULL && !tainted(ld, "database")) {
        if (r->database->path[0] == '\0')
            bad(ld, "database", "path", "must not be empty");
        else
            c->database_path = resolve(ld, r->database->path);
        if (r->database->backups_keep != NULL) {
            unsigned keep = *r->database->backups_keep;
            if (keep < 1 || keep > MAX_BACKUPS_KEEP)
                bad(ld, "database", "backups_keep", "must be from 1 to %u, got %u",
                    MAX_BACKUPS_KEEP, keep);
            else
                c->database_backups_keep = keep;
        }
    }
    if (r->user != NULL && !tainted(ld, "user")) {
        if (r->user[0] == '\0')
            bad(ld, "", "user", "must not be empty");
        else
            c->user = dup_str(ld, r->user);
    }
    if (r->workers != NULL && !tainted(ld, "workers") && strcmp(r->workers, "auto") != 0) {
        if (parse_decimal(r->workers, MC_MAX_WORKERS, &n) && n >= 1)
            c->workers = (unsigned)n;
        else
            bad(ld, "", "workers", "must be auto or a number from 1 to %u, got \"%s\"",
                MC_MAX_WORKERS, QUOTED(r->workers));
    }
    c->cpu_affinity = r->cpu_affinity;
}

static void conv_route(struct loader *ld, const struct raw_route *r, const char *p,
                       struct route_conf *rc)
{
    char host[MC_HOSTNAME_MAX + 1];
    const char *err;

    if (tainted(ld, p))
        return;
    if (hostname_normalize_pattern(r->hostname, strlen(r->hostname), host) < 0)
        bad(ld, p, "hostname", "invalid hostname \"%s\" (a DNS name, or *. and a DNS name)",
            QUOTED(r->hostname));
    else
        rc->hostname = dup_str(ld, host);
    if (addr_parse_hostport(r->backend, &rc->backend_addr, &err) < 0)
        bad(ld, p, "backend", "invalid backend \"%s\": %s", QUOTED(r->backend), err);
    else
        rc->backend = dup_str(ld, r->backend);

    rc->mode = r->mode;
    if (r->mode == ROUTE_L7) {
        if (r->tls_cert == NULL)
            bad(ld, p, "tls_cert", "required when mode is l7");
        if (r->tls_key == NULL)
            bad(ld, p, "tls_key", "required when mode is l7");
    } else {
        if (r->tls_cert != NULL)
            bad(ld, p, "tls_cert", "only allowed when mode is l7");
        if (r->tls_key != NULL)
            bad(ld, p, "tls_key", "only allowed when mode is l7");
        if (r->backend_tls)
            bad(ld, p, "backend_tls", "only allowed when mode is l7");
        if (r->n_policies > 0)
            bad(ld, p, "l7_policies", "only allowed when mode is l7");
    }
    file_path(ld, p, "tls_cert", r->tls_cert, &rc->tls_cert);
    file_path(ld, p, "tls_key", r->tls_key, &rc->tls_key);
    rc->backend_tls = r->backend_tls;
    rc->send_proxy_protocol = r->send_proxy_protocol;

    if (r->n_policies == 0)
        return;
    rc->policies = calloc(r->n_policies, sizeof(*rc->policies));
    if (rc->policies == NULL) {
        ld->oom = true;
        return;
    }
    rc->n_policies = r->n_policies;
    for (unsigned i = 0; i < r->n_policies; i++) {
        char pp[PATH_LEN];

        snprintf(pp, sizeof(pp), "%s.l7_policies[%u]", p, i);
        if (tainted(ld, pp))
            continue;
        rc->policies[i].type = r->policies[i].type;
        if (r->policies[i].value[0] == '\0')
            bad(ld, pp, "value", "must not be empty");
        else
            rc->policies[i].value = dup_str(ld, r->policies[i].value);
    }
}

static bool same_bind(const struct mc_bind *a, const struct mc_bind *b)
{
    return a->dual_stack == b->dual_stack && a->v6only == b->v6only && a->addr.len == b->addr.len &&
           memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0;
}

static void conv_listener(struct loader *ld, const struct raw_listener *r, unsigned li,
                          struct listener_conf *lc)
{
    char p[32], key[64];
    const char *err;

    snprintf(p, sizeof(p), "listeners[%u]", li);
    if (!tainted(ld, p)) {
        if (addr_parse_bind(r->addr, &lc->bind, &err) < 0)
            bad(ld, p, "addr", "invalid listen address \"%s\": %s", QUOTED(r->addr), err);
        else
            lc->addr = dup_str(ld, r->addr);
        lc->proxy_protocol = r->proxy_protocol;
        if (r->proxy_protocol && r->n_trusted_proxies == 0)
            bad(ld, p, "trusted_proxies", "required and non-empty when proxy_protocol is true");
        if (r->n_trusted_proxies > 0) {
            lc->trusted_proxies = calloc(r->n_trusted_proxies, sizeof(*lc->trusted_proxies));
            if (lc->trusted_proxies == NULL) {
                ld->oom = true;
                return;
            }
            lc->n_trusted_proxies = r->n_trusted_proxies;
        }
        for (unsigned i = 0; i < r->n_trusted_proxies; i++) {
            if (addr_parse_cidr(r->trusted_proxies[i], true, &lc->trusted_proxies[i], &err) < 0) {
                snprintf(key, sizeof(key), "trusted_proxies[%u]", i);
                bad(ld, p, key, "invalid CIDR \"%s\": %s", QUOTED(r->trusted_proxies[i]), err);
            }
        }
        lc->max_connections = r->max_connections;
    }

    if (r->n_routes == 0)
        return;
    lc->routes = calloc(r->n_routes, sizeof(*lc->routes));
    if (lc->routes == NULL) {
        ld->oom = true;
        return;
    }
    lc->n_routes = r->n_routes;
    for (unsigned i = 0; i < r->n_routes && !ld->oom; i++) {
        snprintf(key, sizeof(key), "%s.routes[%u]", p, i);
        conv_route(ld, &r->routes[i], key, &lc->routes[i]);
        for (unsigned j = 0; j < i && lc->routes[i].hostname != NULL; j++) {
            if (lc->routes[j].hostname != NULL &&
                strcmp(lc->routes[i].hostname, lc->routes[j].hostname) == 0) {
                bad(ld, key, "hostname", "\"%s\" is already routed by %s.routes[%u]",
                    lc->routes[i].hostname, p, j);
                break;
            }
        }
    }
}

static void conv_listeners(struct loader *ld, const struct raw_config *r, struct config *c)
{
    if (r->n_listeners == 0 || tainted(ld, "listeners"))
        return;
    c->listeners = calloc(r->n_listeners, sizeof(*c->listeners));
    if (c->listeners == NULL) {
        ld->oom = true;
        return;
    }
    c->n_listeners = r->n_listeners;
    for (unsigned i = 0; i < r->n_listeners && !ld->oom; i++) {
        conv_listener(ld, &r->listeners[i], i, &c->listeners[i]);
        for (unsigned j = 0; j < i && c->listeners[i].addr != NULL; j++) {
            if (c->listeners[j].addr != NULL &&
                same_bind(&c->listeners[i].bind, &c->listeners[j].bind)) {
                char p[PATH_LEN];
                snprintf(p, sizeof(p), "listeners[%u]", i);
                bad(ld, p, "addr", "\"%s\" is the same address as listeners[%u]",
                    QUOTED(c->listeners[i].addr), j);
                break;
            }
        }
    }
}

/* "0660": one to four octal digits, at most 0777 (no set-id bits on a socket). */
static int parse_mode(const char *s, uint32_t *mode)
{
    uint32_t v = 0;
    size_t i;

    for (i = 0; s[i] >= '0' && s[i] <= '7' && i < 4; i++)
        v = v * 8 + (uint32_t)(s[i] - '0');
    if (i == 0 || s[i] != '\0' || v > 0777)
        return -1;
    *mode = v;
    return 0;
}

static void conv_grpc(struct loader *ld, const struct raw_grpc *r, struct grpc_conf *g)
{
    struct mc_addr a;
    const char *err;

    if (r == NULL || tainted(ld, "grpc"))
        return;
    g->enabled = true;
    if (strncmp(r->addr, "unix:", 5) == 0) {
        if (r->addr[5] == '\0') {
            bad(ld, "grpc", "addr", "the unix: socket path is empty");
        } else {
            g->unix_path = resolve(ld, r->addr + 5);
            if (g->unix_path != NULL &&
                strlen(g->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                bad(ld, "grpc", "addr", "socket path \"%s\" is too long (at most %zu bytes)",
                    QUOTED(g->unix_path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        }
    } else {
        if (addr_parse_hostport(r->addr, &a, &err) < 0)
            bad(ld, "grpc", "addr", "invalid address \"%s\": %s (or use unix:/path)",
                QUOTED(r->addr), err);
        /* SPEC 12: the admin API over TCP is refused without mTLS. */
        if (r->tls_cert == NULL)
            bad(ld, "grpc", "tls_cert", "required when grpc.addr is TCP (mTLS is mandatory)");
        if (r->tls_key == NULL)
            bad(ld, "grpc", "tls_key", "required when grpc.addr is TCP (mTLS is mandatory)");
        if (r->client_ca == NULL)
            bad(ld, "grpc", "client_ca", "required when grpc.addr is TCP (mTLS is mandatory)");
    }
    g->addr = dup_str(ld, r->addr);
    if (r->socket_mode != NULL && parse_mode(r->socket_mode, &g->socket_mode) < 0)
        bad(ld, "grpc", "socket_mode", "invalid mode \"%s\": use octal, e.g. \"0660\"",
            QUOTED(r->socket_mode));
    file_path(ld, "grpc", "tls_cert", r->tls_cert, &g->tls_cert);
    file_path(ld, "grpc", "tls_key", r->tls_key, &g->tls_key);
    file_path(ld, "grpc", "client_ca", r->client_ca, &g->client_ca);
}

static char **str_array(struct loader *ld, unsigned n)
{
    char **a;

    if (n == 0)
        return NULL;
    a = calloc(n, sizeof(*a));
    if (a == NULL)
        ld->oom = true;
    return a;
}

static void conv_firewall(struct loader *ld, const struct raw_firewall *r, struct firewall_conf *fw)
{
    char key[PATH_LEN], text[INET6_ADDRSTRLEN + 8];
    struct mc_cidr cidr;
    const char *err;

    if (r == NULL || tainted(ld, "firewall"))
        return;
    file_path(ld, "firewall", "geoip_db", r->geoip_db, &fw->geoip_db);

    fw->blocked_ips = str_array(ld, r->n_blocked_ips);
    if (fw->blocked_ips != NULL)
        fw->n_blocked_ips = r->n_blocked_ips;
    for (unsigned i = 0; i < fw->n_blocked_ips; i++) {
        const char *s = r->blocked_ips[i];
        if (strchr(s, '/') != NULL || addr_parse_cidr(s, true, &cidr, &err) < 0) {
            snprintf(key, sizeof(key), "blocked_ips[%u]", i);
            bad(ld, "firewall", key, "\"%s\" is not an IP address%s", QUOTED(s),
                strchr(s, '/') ? " (put CIDRs in blocked_cidrs)" : "");
        } else {
            inet_ntop(cidr.family, cidr.addr, text, sizeof(text));
            fw->blocked_ips[i] = dup_str(ld, text);
        }
    }

    fw->blocked_cidrs = str_array(ld, r->n_blocked_cidrs);
    if (fw->blocked_cidrs != NULL)
        fw->n_blocked_cidrs = r->n_blocked_cidrs;
    for (unsigned i = 0; i < fw->n_blocked_cidrs; i++) {
        const char *s = r->blocked_cidrs[i];
        if (addr_parse_cidr(s, false, &cidr, &err) < 0) {
            snprintf(key, sizeof(key), "blocked_cidrs[%u]", i);
            bad(ld, "firewall", key, "invalid CIDR \"%s\": %s", QUOTED(s), err);
        } else {
            inet_ntop(cidr.family, cidr.addr, text, sizeof(text));
            if (asprintf(&fw->blocked_cidrs[i], "%s/%u", text, cidr.prefix) < 0) {
                fw->blocked_cidrs[i] = NULL;
                ld->oom = true;
            }
        }
    }

    fw->blocked_countries = str_array(ld, r->n_blocked_countries);
    if (fw->blocked_countries != NULL)
        fw->n_blocked_countries = r->n_blocked_countries;
    for (unsigned i = 0; i < fw->n_blocked_countries; i++) {
        const char *s = r->blocked_countries[i];
        char cc[3];
        bool ok = strlen(s) == 2;

        for (size_t k = 0; ok && k < 2; k++) {
            char ch = s[k];
            if (ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 'a' + 'A');
            ok = ch >= 'A' && ch <= 'Z';
            cc[k] = ch;
        }
        if (!ok) {
            snprintf(key, sizeof(key), "blocked_countries[%u]", i);
            bad(ld, "firewall", key, "\"%s\" is not a two-letter country code (ISO 3166-1)",
                QUOTED(s));
        } else {
            cc[2] = '\0';
            fw->blocked_countries[i] = dup_str(ld, cc);
        }
    }
    if (r->n_blocked_countries > 0 && r->geoip_db == NULL)
        bad(ld, "firewall", "geoip_db", "required when blocked_countries is non-empty");

    fw->rate_limit = r->rate_limit;
    duration(ld, "firewall", "rate_window", r->rate_window, &fw->rate_window_ms);
}

static void conv_proxy(struct loader *ld, const struct raw_proxy *r, struct proxy_conf *px)
{
    if (r == NULL || tainted(ld, "proxy"))
        return;
    duration(ld, "proxy", "connect_timeout", r->connect_timeout, &px->connect_timeout_ms);
    duration(ld, "proxy", "handshake_timeout", r->handshake_timeout, &px->handshake_timeout_ms);
    duration(ld, "proxy", "idle_timeout", r->idle_timeout, &px->idle_timeout_ms);
    duration(ld, "proxy", "response_timeout", r->response_timeout, &px->response_timeout_ms);
    duration(ld, "proxy", "shutdown_timeout", r->shutdown_timeout, &px->shutdown_timeout_ms);
}

static bool is_loopback(const struct mc_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static void conv_metrics(struct loader *ld, const struct raw_metrics *r, struct metrics_conf *m)
{
    const char *err;

    if (r == NULL || tainted(ld, "metrics"))
        return;
    if (addr_parse_hostport(r->addr, &m->listen_addr, &err) < 0) {
        bad(ld, "metrics", "addr", "invalid address \"%s\": %s", QUOTED(r->addr), err);
        return;
    }
    if (!is_loopback(&m->listen_addr)) {
        bad(ld, "metrics", "addr", "\"%s\" is not a loopback address (127.0.0.0/8 or [::1])",
            QUOTED(r->addr));
        return;
    }
    m->enabled = true;
    m->addr = dup_str(ld, r->addr);
}

static void conv_log(struct loader *ld, const struct raw_log *r, struct config *c)
{
    if (r == NULL || tainted(ld, "log"))
        return;
    if (r->level != NULL)
        c->log_level = *r->level;
    c->log_format = r->format;
}

static struct config *convert(struct loader *ld, const struct raw_config *r)
{
    struct config *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        ld->oom = true;
        return NULL;
    }
    set_defaults(c);
    if (set_paths(ld, c) < 0)
        return c;
    conv_top(ld, r, c);
    conv_listeners(ld, r, c);
    conv_grpc(ld, r->grpc, &c->grpc);
    conv_firewall(ld, r->firewall, &c->firewall);
    conv_proxy(ld, r->proxy, &c->proxy);
    conv_metrics(ld, r->metrics, &c->metrics);
    conv_log(ld, r->log, c);
    return c;
}

/* ---- the entry points ---- */

static int err_cmp(const void *a, const void *b)
{
    const struct error *x = a, *y = b;
    unsigned lx = x->line ? x->line : UINT_MAX, ly = y->line ? y->line : UINT_MAX;

    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void loader_finish(struct loader *ld, config_report_fn *report, void *arg)
{
    if (ld->n_errs > 1)
        qsort(ld->errs, ld->n_errs, sizeof(*ld->errs), err_cmp);
    for (size_t i = 0; i < ld->n_errs; i++) {
        report(arg, ld->errs[i].msg);
        free(ld->errs[i].msg);
    }
    if (ld->oom) {
        char msg[PATH_LEN];
        snprintf(msg, sizeof(msg), "%s: out of memory", ld->file);
        report(arg, msg);
    }
    free(ld->errs);
    for (size_t i = 0; i < ld->n_idx; i++)
        free(ld->idx[i].path);
    free(ld->idx);
    for (size_t i = 0; i < ld->n_vars; i++)
        free(ld->vars[i]);
    free(ld->vars);
    free(ld->env);
    free(ld->seen);
    if (ld->have_doc)
        yaml_document_delete(&ld->doc);
}

struct config *config_load(const char *file, config_report_fn *report, void *arg)
{
    struct loader ld = {.file = file};
    struct raw_config *raw = NULL;
    struct config *cfg = NULL;

    if (read_file(&ld) == 0 && walk(&ld))
        raw = typed_load(&ld);
    if (raw != NULL) {
        cfg = convert(&ld, raw);
        cyaml_free(&cyaml_cfg, &config_schema, raw, 0);
    }
    if (ld.n_errs > 0 || ld.oom) {
        config_free(cfg);
        cfg = NULL;
    }
    loader_finish(&ld, report, arg);
    return cfg;
}

static void free_strs(char **a, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        struct listener_conf *l = &cfg->listeners[i];
        for (unsigned j = 0; j < l->n_routes; j++) {
            struct route_conf *r = &l->routes[j];
            free(r->hostname);
            free(r->backend);
            free(r->tls_cert);
            free(r->tls_key);
            for (unsigned k = 0; k < r->n_policies; k++)
                free(r->policies[k].value);
            free(r->policies);
        }
        free(l->routes);
        free(l->trusted_proxies);
        free(l->addr);
    }
    free(cfg->listeners);
    free(cfg->grpc.addr);
    free(cfg->grpc.unix_path);
    free(cfg->grpc.tls_cert);
    free(cfg->grpc.tls_key);
    free(cfg->grpc.client_ca);
    free(cfg->firewall.geoip_db);
    free_strs(cfg->firewall.blocked_ips, cfg->firewall.n_blocked_ips);
    free_strs(cfg->firewall.blocked_cidrs, cfg->firewall.n_blocked_cidrs);
    free_strs(cfg->firewall.blocked_countries, cfg->firewall.n_blocked_countries);
    free(cfg->metrics.addr);
    free(cfg->database_path);
    free(cfg->user);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

unsigned config_worker_count(const struct config *cfg)
{
    long n;

    if (cfg->workers != 0)
        return cfg->workers;
    n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > MC_MAX_WORKERS ? MC_MAX_WORKERS : (unsigned)n;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}};
    uint64_t v = 0;
    size_t i;

    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (i == 0)
        return -1;
    for (size_t u = 0; u < MC_ARRAY_LEN(units); u++) {
        if (strcmp(s + i, units[u].suffix) == 0) {
            if (v > UINT64_MAX / units[u].ms)
                return -1;
            *ms = v * units[u].ms;
            return 0;
        }
    }
    return -1;
}
