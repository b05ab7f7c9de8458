/*
 * The schema of the configuration file: the one list of its keys, from
 * which the structural walk (config_tree.c) and the environment
 * overrides take their keys, and step 3, the typed load: libcyaml's
 * schema types describe the raw structs, and step 3 fills them from the
 * tree of step 2 by that description.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config_impl.h"
#include "common/log.h"

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
    FIELD_STR("max_connections", OPT, struct raw_listener, max_connections),
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
    FIELD_STR("socket_group", OPT, struct raw_grpc, socket_group),
    FIELD_STR("user", OPT, struct raw_grpc, user),
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
    FIELD_STR("worker_watchdog", OPT, struct raw_proxy, worker_watchdog),
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
    FIELD_STR("access_file", OPT, struct raw_log, access_file),
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

/* A zeroed block of n * size bytes, freed when the loader finishes; NULL when memory ran out. */
static void *raw_alloc(struct loader *ld, size_t n, size_t size)
{
    void **blocks = cfg_grow(ld->blocks, &ld->cap_blocks, ld->n_blocks, sizeof(*blocks));
    void *p;

    if (blocks == NULL) {
        ld->oom = true;
        return NULL;
    }
    ld->blocks = blocks;
    if ((p = calloc(n, size)) == NULL) {
        ld->oom = true;
        return NULL;
    }
    blocks[ld->n_blocks++] = p;
    return p;
}

/* Stores v in the unsigned integer of size bytes at dst. */
static void store_uint(void *dst, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;

    switch (size) {
    case 1:
        memcpy(dst, &u8, 1);
        break;
    case 2:
        memcpy(dst, &u16, 2);
        break;
    case 4:
        memcpy(dst, &u32, 4);
        break;
    default:
        memcpy(dst, &v, 8);
        break;
    }
}

static void fill_value(struct loader *ld, int id, const cyaml_schema_value_t *s, void *slot);

/* Each pair of a mapping into the fields of the struct at base. */
static void fill_mapping(struct loader *ld, const yaml_node_t *m,
                         const cyaml_schema_field_t *fields, char *base)
{
    for (const yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
         p++) {
        const char *key = (const char *)yaml_document_get_node(&ld->doc, p->key)->data.scalar.value;
        const cyaml_schema_field_t *f = fields;

        /* step 2 removed every key the schema does not have */
        while (f->key != NULL && strcmp(f->key, key) != 0)
            f++;
        if (f->key == NULL)
            continue;
        fill_value(ld, p->value, &f->value, base + f->data_offset);
        if (f->value.type == CYAML_SEQUENCE) {
            const yaml_node_t *seq = yaml_document_get_node(&ld->doc, p->value);
            store_uint(base + f->count_offset, f->count_size,
                       (uint64_t)(seq->data.sequence.items.top - seq->data.sequence.items.start));
        }
    }
}

/*
 * Node id into slot, the storage schema s describes (the pointer to it,
 * for a CYAML_FLAG_POINTER value). Step 2 made the tree match the schema
 * and checked every scalar, so nothing here can fail but memory. Strings
 * point into the tree, which outlives the raw structs.
 */
static void fill_value(struct loader *ld, int id, const cyaml_schema_value_t *s, void *slot)
{
    const yaml_node_t *n = yaml_document_get_node(&ld->doc, id);
    const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
    void *data = slot;
    uint64_t u;

    if (s->type == CYAML_STRING) { /* always a pointer (FIELD_STR, string_entry) */
        memcpy(slot, &v, sizeof(v));
        return;
    }
    if (s->type == CYAML_SEQUENCE) { /* always a pointer and a count (FIELD_SEQ) */
        const yaml_node_item_t *items = n->data.sequence.items.start;
        size_t len = (size_t)(n->data.sequence.items.top - items);
        char *a = len > 0 ? raw_alloc(ld, len, s->data_size) : NULL;

        for (size_t i = 0; a != NULL && i < len; i++)
            fill_value(ld, items[i], s->sequence.entry, a + i * s->data_size);
        memcpy(slot, &a, sizeof(a));
        return;
    }
    if (s->flags & CYAML_FLAG_POINTER) {
        if ((data = raw_alloc(ld, 1, s->data_size)) == NULL)
            return;
        memcpy(slot, &data, sizeof(data));
    }
    switch (s->type) {
    case CYAML_MAPPING:
        fill_mapping(ld, n, s->mapping.fields, data);
        break;
    case CYAML_UINT:
        if (cfg_parse_decimal(v, UINT64_MAX, &u))
            store_uint(data, s->data_size, u);
        break;
    case CYAML_BOOL:
        store_uint(data, s->data_size, strcasecmp(v, "true") == 0);
        break;
    case CYAML_ENUM:
        for (uint32_t i = 0; i < s->enumeration.count; i++) {
            if (strcmp(v, s->enumeration.strings[i].str) == 0) {
                store_uint(data, s->data_size, (uint64_t)s->enumeration.strings[i].val);
                break;
            }
        }
        break;
    default:
        break;
    }
}

/*
 * The raw structs, from the tree that steps 1 and 2 built and checked:
 * the file is parsed once. NULL when memory ran out.
 */
struct raw_config *cfg_typed_load(struct loader *ld)
{
    struct raw_config *raw = NULL;

    fill_value(ld, 1, &cfg_schema, &raw);
    return ld->oom ? NULL : raw;
}
