/*
 * The schema of the configuration file: the one list of its keys, from
 * which the structural walk (config_tree.c) and the environment
 * overrides take their keys, and step 3, the typed load: the schema
 * describes the raw structs, and step 3 fills them from the tree of step
 * 2 by that description.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/config_impl.h"
#include "common/log.h"

/*
 * The schema. Strings are unconstrained here (emptiness and syntax are
 * checked in step 4, with better messages) and sequences have no minimum,
 * which keeps the placeholders of step 2 simple. A string member points
 * into the tree; every other CFG_POINTER member is allocated by step 3.
 */
/* clang-format off */
#define MEMBER_SIZE(T, M) sizeof(((T *)0)->M)
#define ENTRY_SIZE(T, M)  sizeof(*((T *)0)->M)
#define FIELD(K, T, M, ...) {.key = K, .offset = offsetof(T, M), .value = {__VA_ARGS__}}
#define FIELD_STR(K, F, T, M) FIELD(K, T, M, .type = CFG_STRING, .flags = (F) | CFG_POINTER)
#define FIELD_BOOL(K, T, M)                                                                        \
    FIELD(K, T, M, .type = CFG_BOOL, .flags = CFG_OPTIONAL, .size = MEMBER_SIZE(T, M))
#define FIELD_UINT(K, T, M)                                                                        \
    FIELD(K, T, M, .type = CFG_UINT, .flags = CFG_OPTIONAL, .size = MEMBER_SIZE(T, M))
#define FIELD_UINT_PTR(K, T, M)                                                                    \
    FIELD(K, T, M, .type = CFG_UINT, .flags = CFG_OPTIONAL | CFG_POINTER, .size = ENTRY_SIZE(T, M))
#define FIELD_ENUM(K, F, T, M, W)                                                                  \
    FIELD(K, T, M, .type = CFG_ENUM, .flags = (F), .size = MEMBER_SIZE(T, M), .words = W,          \
          .n_words = MC_ARRAY_LEN(W))
#define FIELD_ENUM_PTR(K, T, M, W)                                                                 \
    FIELD(K, T, M, .type = CFG_ENUM, .flags = CFG_OPTIONAL | CFG_POINTER,                          \
          .size = ENTRY_SIZE(T, M), .words = W, .n_words = MC_ARRAY_LEN(W))
#define FIELD_MAPPING_PTR(K, F, T, M, FIELDS)                                                      \
    FIELD(K, T, M, .type = CFG_MAPPING, .flags = (F) | CFG_POINTER, .size = ENTRY_SIZE(T, M),      \
          .fields = FIELDS)
#define FIELD_SEQ(K, T, M, COUNT, ENTRY, MAX)                                                      \
    {.key = K, .offset = offsetof(T, M), .count_offset = offsetof(T, COUNT),                       \
     .count_size = MEMBER_SIZE(T, COUNT),                                                          \
     .value = {.type = CFG_SEQUENCE, .flags = CFG_OPTIONAL | CFG_POINTER, .entry = ENTRY,          \
               .max = MAX}}
#define FIELD_END {.key = NULL}
/* clang-format on */
#define UNLIMITED UINT32_MAX

static const struct cfg_word mode_strings[] = {
    {"l4", ROUTE_L4},
    {"l7", ROUTE_L7},
};

static const struct cfg_word policy_strings[] = {
    {"block_user_agent", POLICY_BLOCK_USER_AGENT},
    {"require_header", POLICY_REQUIRE_HEADER},
};

static const struct cfg_word level_strings[] = {
    {"debug", LOGL_DEBUG},
    {"info", LOGL_INFO},
    {"warn", LOGL_WARN},
    {"error", LOGL_ERROR},
};

static const struct cfg_word format_strings[] = {
    {"text", LOG_FORMAT_TEXT},
    {"json", LOG_FORMAT_JSON},
};

static const struct cfg_value string_entry = {
    .type = CFG_STRING,
    .flags = CFG_POINTER,
    .size = sizeof(char *),
};

static const struct cfg_field policy_fields[] = {
    FIELD_ENUM("type", 0, struct raw_policy, type, policy_strings),
    FIELD_STR("value", 0, struct raw_policy, value),
    FIELD_END,
};

static const struct cfg_value policy_entry = {
    .type = CFG_MAPPING,
    .size = sizeof(struct raw_policy),
    .fields = policy_fields,
};

static const struct cfg_field route_fields[] = {
    FIELD_STR("hostname", 0, struct raw_route, hostname),
    FIELD_STR("backend", 0, struct raw_route, backend),
    FIELD_ENUM("mode", CFG_OPTIONAL, struct raw_route, mode, mode_strings),
    FIELD_STR("tls_cert", CFG_OPTIONAL, struct raw_route, tls_cert),
    FIELD_STR("tls_key", CFG_OPTIONAL, struct raw_route, tls_key),
    FIELD_BOOL("backend_tls", struct raw_route, backend_tls),
    FIELD_BOOL("send_proxy_protocol", struct raw_route, send_proxy_protocol),
    FIELD_SEQ("l7_policies", struct raw_route, policies, n_policies, &policy_entry, UNLIMITED),
    FIELD_END,
};

static const struct cfg_value route_entry = {
    .type = CFG_MAPPING,
    .size = sizeof(struct raw_route),
    .fields = route_fields,
};

static const struct cfg_field listener_fields[] = {
    FIELD_STR("addr", 0, struct raw_listener, addr),
    FIELD_BOOL("proxy_protocol", struct raw_listener, proxy_protocol),
    FIELD_SEQ("trusted_proxies", struct raw_listener, trusted_proxies, n_trusted_proxies,
              &string_entry, UNLIMITED),
    FIELD_STR("max_connections", CFG_OPTIONAL, struct raw_listener, max_connections),
    FIELD_SEQ("routes", struct raw_listener, routes, n_routes, &route_entry, UNLIMITED),
    FIELD_END,
};

static const struct cfg_value listener_entry = {
    .type = CFG_MAPPING,
    .size = sizeof(struct raw_listener),
    .fields = listener_fields,
};

static const struct cfg_field database_fields[] = {
    FIELD_STR("path", 0, struct raw_database, path),
    FIELD_UINT_PTR("backups_keep", struct raw_database, backups_keep),
    FIELD_END,
};

static const struct cfg_field grpc_fields[] = {
    FIELD_STR("addr", 0, struct raw_grpc, addr),
    FIELD_STR("socket_mode", CFG_OPTIONAL, struct raw_grpc, socket_mode),
    FIELD_STR("socket_group", CFG_OPTIONAL, struct raw_grpc, socket_group),
    FIELD_STR("user", CFG_OPTIONAL, struct raw_grpc, user),
    FIELD_STR("tls_cert", CFG_OPTIONAL, struct raw_grpc, tls_cert),
    FIELD_STR("tls_key", CFG_OPTIONAL, struct raw_grpc, tls_key),
    FIELD_STR("client_ca", CFG_OPTIONAL, struct raw_grpc, client_ca),
    FIELD_END,
};

static const struct cfg_field firewall_fields[] = {
    FIELD_STR("geoip_db", CFG_OPTIONAL, struct raw_firewall, geoip_db),
    FIELD_SEQ("blocked_ips", struct raw_firewall, blocked_ips, n_blocked_ips, &string_entry,
              UNLIMITED),
    FIELD_SEQ("blocked_cidrs", struct raw_firewall, blocked_cidrs, n_blocked_cidrs, &string_entry,
              UNLIMITED),
    FIELD_SEQ("blocked_countries", struct raw_firewall, blocked_countries, n_blocked_countries,
              &string_entry, UNLIMITED),
    FIELD_UINT("rate_limit", struct raw_firewall, rate_limit),
    FIELD_STR("rate_window", CFG_OPTIONAL, struct raw_firewall, rate_window),
    FIELD_END,
};

static const struct cfg_field proxy_fields[] = {
    FIELD_STR("connect_timeout", CFG_OPTIONAL, struct raw_proxy, connect_timeout),
    FIELD_STR("handshake_timeout", CFG_OPTIONAL, struct raw_proxy, handshake_timeout),
    FIELD_STR("idle_timeout", CFG_OPTIONAL, struct raw_proxy, idle_timeout),
    FIELD_STR("response_timeout", CFG_OPTIONAL, struct raw_proxy, response_timeout),
    FIELD_STR("shutdown_timeout", CFG_OPTIONAL, struct raw_proxy, shutdown_timeout),
    FIELD_STR("worker_watchdog", CFG_OPTIONAL, struct raw_proxy, worker_watchdog),
    FIELD_END,
};

static const struct cfg_field metrics_fields[] = {
    FIELD_STR("addr", 0, struct raw_metrics, addr),
    FIELD_END,
};

static const struct cfg_field log_fields[] = {
    FIELD_ENUM_PTR("level", struct raw_log, level, level_strings),
    FIELD_ENUM("format", CFG_OPTIONAL, struct raw_log, format, format_strings),
    FIELD_STR("access_file", CFG_OPTIONAL, struct raw_log, access_file),
    FIELD_END,
};

const struct cfg_field cfg_root_fields[] = {
    FIELD_MAPPING_PTR("database", 0, struct raw_config, database, database_fields),
    FIELD_STR("user", CFG_OPTIONAL, struct raw_config, user),
    FIELD_STR("workers", CFG_OPTIONAL, struct raw_config, workers),
    FIELD_BOOL("cpu_affinity", struct raw_config, cpu_affinity),
    FIELD_SEQ("listeners", struct raw_config, listeners, n_listeners, &listener_entry,
              MC_MAX_LISTENERS),
    FIELD_MAPPING_PTR("grpc", CFG_OPTIONAL, struct raw_config, grpc, grpc_fields),
    FIELD_MAPPING_PTR("firewall", CFG_OPTIONAL, struct raw_config, firewall, firewall_fields),
    FIELD_MAPPING_PTR("proxy", CFG_OPTIONAL, struct raw_config, proxy, proxy_fields),
    FIELD_MAPPING_PTR("metrics", CFG_OPTIONAL, struct raw_config, metrics, metrics_fields),
    FIELD_MAPPING_PTR("log", CFG_OPTIONAL, struct raw_config, log, log_fields),
    FIELD_END,
};

const struct cfg_value cfg_schema = {
    .type = CFG_MAPPING,
    .flags = CFG_POINTER,
    .size = sizeof(struct raw_config),
    .fields = cfg_root_fields,
};

/* The word for value v in one of the tables above, or NULL. */
static const char *strval_name(const struct cfg_word *t, size_t n, int64_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].val == v)
            return t[i].str;
    }
    return NULL;
}

/* The value of word s in one of the tables above, or -1. */
static int strval_parse(const struct cfg_word *t, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].str, s) == 0)
            return (int)t[i].val;
    }
    return -1;
}

const char *config_route_mode_name(enum route_mode m)
{
    return strval_name(mode_strings, MC_ARRAY_LEN(mode_strings), m);
}

int config_route_mode_parse(const char *s)
{
    return strval_parse(mode_strings, MC_ARRAY_LEN(mode_strings), s);
}

const char *config_policy_type_name(enum policy_type t)
{
    return strval_name(policy_strings, MC_ARRAY_LEN(policy_strings), t);
}

int config_policy_type_parse(const char *s)
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
static void fill_uint(void *dst, size_t size, uint64_t v)
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

static void fill_value(struct loader *ld, int id, const struct cfg_value *s, void *slot);

/* Each pair of a mapping into the fields of the struct at base. */
static void fill_mapping(struct loader *ld, const yaml_node_t *m, const struct cfg_field *fields,
                         char *base)
{
    for (const yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
         p++) {
        const char *key = (const char *)yaml_document_get_node(&ld->doc, p->key)->data.scalar.value;
        const struct cfg_field *f = fields;

        /* step 2 removed every key the schema does not have */
        while (f->key != NULL && strcmp(f->key, key) != 0)
            f++;
        if (f->key == NULL)
            continue;
        fill_value(ld, p->value, &f->value, base + f->offset);
        if (f->value.type == CFG_SEQUENCE) {
            const yaml_node_t *seq = yaml_document_get_node(&ld->doc, p->value);
            fill_uint(base + f->count_offset, f->count_size,
                      (uint64_t)(seq->data.sequence.items.top - seq->data.sequence.items.start));
        }
    }
}

/*
 * Node id into slot, the storage schema s describes (the pointer to it,
 * for a CFG_POINTER value). Step 2 made the tree match the schema
 * and checked every scalar, so nothing here can fail but memory. Strings
 * point into the tree, which outlives the raw structs.
 */
static void fill_value(struct loader *ld, int id, const struct cfg_value *s, void *slot)
{
    const yaml_node_t *n = yaml_document_get_node(&ld->doc, id);
    const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
    void *data = slot;
    uint64_t u;

    if (s->type == CFG_STRING) { /* always a pointer (FIELD_STR, string_entry) */
        memcpy(slot, &v, sizeof(v));
        return;
    }
    if (s->type == CFG_SEQUENCE) { /* always a pointer and a count (FIELD_SEQ) */
        const yaml_node_item_t *items = n->data.sequence.items.start;
        size_t len = (size_t)(n->data.sequence.items.top - items);
        char *a = len > 0 ? raw_alloc(ld, len, s->entry->size) : NULL;

        for (size_t i = 0; a != NULL && i < len; i++)
            fill_value(ld, items[i], s->entry, a + i * s->entry->size);
        memcpy(slot, &a, sizeof(a));
        return;
    }
    if (s->flags & CFG_POINTER) {
        if ((data = raw_alloc(ld, 1, s->size)) == NULL)
            return;
        memcpy(slot, &data, sizeof(data));
    }
    switch (s->type) {
    case CFG_MAPPING:
        fill_mapping(ld, n, s->fields, data);
        break;
    case CFG_UINT:
        if (cfg_parse_decimal(v, UINT64_MAX, &u))
            fill_uint(data, s->size, u);
        break;
    case CFG_BOOL: /* v: step 2 left only scalars where the schema wants them */
        if (v != NULL)
            fill_uint(data, s->size, strcasecmp(v, "true") == 0);
        break;
    case CFG_ENUM:
        for (uint32_t i = 0; v != NULL && i < s->n_words; i++) {
            if (strcmp(v, s->words[i].str) == 0) {
                fill_uint(data, s->size, (uint64_t)s->words[i].val);
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
