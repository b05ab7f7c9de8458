/*
 * The schema of the configuration file: the one list of its keys, from
 * which the structural walk (config_tree.c) and the environment
 * overrides take their keys, and step 3, the typed load by libcyaml.
 */
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"
#include "log.h"

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

const cyaml_schema_field_t cfg_root_fields[] = {
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

const cyaml_schema_value_t cfg_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_config, cfg_root_fields),
};

/* Step 2 never hands libcyaml an alias; NO_ALIAS makes sure of it. */
static const cyaml_config_t cyaml_cfg = {
    .log_fn = NULL,
    .mem_fn = cyaml_mem,
    .log_level = CYAML_LOG_ERROR,
    .flags = CYAML_CFG_NO_ALIAS,
};

/* The word for value v in one of the tables above, or NULL. */
static const char *strval_name(const cyaml_strval_t *t, size_t n, int64_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].val == v)
            return t[i].str;
    }
    return NULL;
}

/* The value of word s in one of the tables above, or -1. */
static int strval_parse(const cyaml_strval_t *t, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].str, s) == 0)
            return (int)t[i].val;
    }
    return -1;
}

const char *route_mode_name(enum route_mode m)
{
    return strval_name(mode_strings, MC_ARRAY_LEN(mode_strings), m);
}

int route_mode_parse(const char *s)
{
    return strval_parse(mode_strings, MC_ARRAY_LEN(mode_strings), s);
}

const char *policy_type_name(enum policy_type t)
{
    return strval_name(policy_strings, MC_ARRAY_LEN(policy_strings), t);
}

int policy_type_parse(const char *s)
{
    return strval_parse(policy_strings, MC_ARRAY_LEN(policy_strings), s);
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

/* The tree as YAML text again, in out (to free); false when that failed. */
static bool emit_tree(struct loader *ld, struct outbuf *out)
{
    yaml_emitter_t em;
    int ok;

    if (!yaml_emitter_initialize(&em)) {
        ld->oom = true;
        return false;
    }
    yaml_emitter_set_output(&em, out_write, out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    ok = yaml_emitter_open(&em);
    if (ok) {
        ok = yaml_emitter_dump(&em, &ld->doc); /* frees the document, whatever happens */
        ld->have_doc = false;
    }
    ok = ok && yaml_emitter_close(&em) && yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);
    if (!ok)
        cfg_fail(ld, 0, NULL, "", "internal error: cannot re-emit the document");
    return ok;
}

/*
 * libcyaml loads from text. When steps 1 and 2 left the tree as the file
 * wrote it, the file's own bytes are that text: the same events, but for
 * anchors and tags, which libcyaml ignores (step 2 refused every alias).
 * Otherwise the tree is emitted again, which would cost as much as
 * libcyaml's own parse.
 */
struct raw_config *cfg_typed_load(struct loader *ld)
{
    struct raw_config *raw = NULL;
    struct outbuf out = {0};
    cyaml_err_t err;

    if (ld->changed) {
        if (!emit_tree(ld, &out)) {
            free(out.p);
            return NULL;
        }
    } else {
        yaml_document_delete(&ld->doc); /* not needed any more */
        ld->have_doc = false;
        out.p = (unsigned char *)ld->text;
        out.len = ld->text_len;
    }
    err = cyaml_load_data(out.p, out.len, &cyaml_cfg, &cfg_schema, (cyaml_data_t **)&raw, NULL);
    if (err != CYAML_OK)
        cfg_fail(ld, 0, NULL, "", "internal error: libcyaml: %s", cyaml_strerror(err));
    if (ld->changed)
        free(out.p);
    return raw;
}

void cfg_raw_free(struct raw_config *raw)
{
    cyaml_free(&cyaml_cfg, &cfg_schema, raw, 0);
}
