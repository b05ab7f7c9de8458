/*
 * Steps 1 and 2 of the config loader (see config.c): libyaml reads the
 * file into a document tree, the environment overrides are spliced in,
 * and a walk of the tree against the schema records the line of every
 * key path in the index that step 4 looks lines up in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config_impl.h"

#define NO_ENTITY SIZE_MAX

/* ---- step 1: read the file, apply the environment ---- */

/* The whole file into ld->text, which libyaml parses from memory. */
static int read_text(struct loader *ld)
{
    struct stat st;
    ssize_t n = 0;
    size_t cap;
    char *p;
    int fd;

    fd = open(ld->file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_fail(ld, 0, NULL, "", "cannot open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_fail(ld, 0, NULL, "", "cannot read: %s", strerror(EISDIR));
        close(fd);
        return -1;
    }
    /* a regular file fits at once, with a byte to spare so that its end is
     * seen without growing the buffer */
    cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if ((ld->text = malloc(cap)) == NULL)
        ld->oom = true;
    while (!ld->oom) {
        n = read(fd, ld->text + ld->text_len, cap - ld->text_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ld->text_len += (size_t)n;
        if (ld->text_len == cap) {
            if ((p = realloc(ld->text, 2 * cap)) == NULL)
                ld->oom = true;
            else
                ld->text = p, cap *= 2;
        }
    }
    if (n < 0)
        cfg_fail(ld, 0, NULL, "", "cannot read: %s", strerror(errno));
    close(fd);
    return ld->oom || n < 0 ? -1 : 0;
}

int cfg_read_file(struct loader *ld)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    int rc = -1;

    if (read_text(ld) < 0)
        return -1;
    if (!yaml_parser_initialize(&parser)) {
        ld->oom = true;
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ld->text, ld->text_len);

    if (!yaml_parser_load(&parser, &ld->doc))
        goto syntax;
    ld->have_doc = true;
    /* libyaml loads one document at a time; a second one would be ignored silently. */
    if (!yaml_parser_load(&parser, &extra))
        goto syntax;
    if (yaml_document_get_root_node(&extra) != NULL)
        cfg_fail(ld, (unsigned)extra.start_mark.line + 1, NULL, "",
                 "only one YAML document is allowed");
    else
        rc = 0;
    yaml_document_delete(&extra);
    goto out;

syntax:
    if (parser.error == YAML_MEMORY_ERROR)
        ld->oom = true;
    else if (parser.error == YAML_READER_ERROR)
        cfg_fail(ld, 0, NULL, "", "cannot read: %s at byte %zu", parser.problem,
                 parser.problem_offset);
    else
        cfg_fail(ld, (unsigned)parser.problem_mark.line + 1, NULL, "", "YAML syntax error: %s%s%s",
                 parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                 parser.context ? parser.context : "");
out:
    yaml_parser_delete(&parser);
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

/* A new node, spliced in by the caller; 0 when memory ran out. */
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
    for (const cyaml_schema_field_t *f = cfg_root_fields; f->key != NULL && !ld->oom; f++) {
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
    struct path_entry *idx = cfg_grow(ld->idx, &ld->cap_idx, ld->n_idx, sizeof(*idx)), *e;

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
    if (entity != NO_ENTITY && !ld->idx[entity].tainted) {
        ld->idx[entity].tainted = true;
        ld->n_tainted++;
    }
}

/*
 * Key paths are built in place, a key or an index at a time, cut at
 * PATH_LEN - 1 bytes; without printf, which was a third of the walk.
 * Each returns the new length.
 */
static size_t path_append(char *path, size_t len, const char *s, size_t n)
{
    n = MC_MIN(n, PATH_LEN - 1 - len);
    memcpy(path + len, s, n);
    path[len + n] = '\0';
    return len + n;
}

static size_t path_key(char *path, size_t len, const char *key)
{
    if (len > 0)
        len = path_append(path, len, ".", 1);
    return path_append(path, len, key, strlen(key));
}

static size_t path_index(char *path, size_t len, size_t i)
{
    char buf[24], *p = buf + sizeof(buf);

    *--p = ']';
    do
        *--p = (char)('0' + i % 10);
    while ((i /= 10) != 0);
    *--p = '[';
    return path_append(path, len, p, (size_t)(buf + sizeof(buf) - p));
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
        return cfg_parse_decimal(v, UINT64_MAX >> (64 - 8 * s->data_size), &n);
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
            cfg_fail(ld, line, env, path, "keys must be plain strings (no aliases)");
            remove_pair(ld, map, i);
            continue;
        }
        key = (const char *)k->data.scalar.value;
        for (f = fields; f->key != NULL && strcmp(f->key, key) != 0; f++)
            ;
        if (f->key == NULL) {
            char buf[PATH_LEN];
            snprintf(buf, sizeof(buf), "%s%s%s", path, len ? "." : "", QUOTED(key));
            cfg_fail(ld, line, env, buf, "unknown key");
            remove_pair(ld, map, i);
            continue;
        }
        bit = 1ULL << (f - fields);
        flen = path_key(path, len, key);
        if (present & bit) {
            cfg_fail(ld, line, env, path, "duplicate key");
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
        cfg_fail(ld, ld->idx[self].line, ld->idx[self].env, path, "missing (required)");
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
        cfg_fail(ld, line, env, path, "YAML aliases are not supported");
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
            cfg_fail(ld, line, env, path, "at most %u entries are allowed", s->sequence.max);
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
            ilen = path_index(path, len, i);
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
            cfg_fail(ld, line, env, path, "contains a NUL byte");
            goto bad;
        }
        if (scalar_ok(s, (const char *)n->data.scalar.value))
            return true;
        cfg_fail(ld, line, env, path, "expected %s, got \"%s\"", expected(s, buf, sizeof(buf)),
                 QUOTED((const char *)n->data.scalar.value));
        goto bad;
    }
    cfg_fail(ld, line, env, path, "expected %s", expected(s, buf, sizeof(buf)));
bad:
    taint(ld, entity);
    return false;
}

/* Walks the whole tree; false when the typed load cannot follow. */
bool cfg_walk(struct loader *ld)
{
    char path[PATH_LEN] = "";
    yaml_node_t *root;
    bool ok;

    /* An empty file is an empty mapping: the environment may still fill it. */
    if (yaml_document_get_root_node(&ld->doc) == NULL && add_mapping(ld) == 0)
        return false;
    root = yaml_document_get_root_node(&ld->doc);
    if (root->type != YAML_MAPPING_NODE) {
        cfg_fail(ld, (unsigned)root->start_mark.line + 1, NULL, "",
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
    ok = walk_value(ld, 1, &cfg_schema, path, 0, (unsigned)root->start_mark.line + 1, NULL,
                    NO_ENTITY);
    return ok && !ld->oom;
}

/* The index is complete once the walk is done; only errors and taints look in it. */
const struct path_entry *cfg_idx_find(struct loader *ld, const char *path)
{
    size_t i;

    if (ld->idx_by_path.slots == NULL) {
        if (name_index_init(&ld->idx_by_path, ld->n_idx) < 0) {
            ld->oom = true;
            return NULL;
        }
        for (i = 0; i < ld->n_idx; i++)
            name_index_add(&ld->idx_by_path, ld->idx[i].path, i);
    }
    i = name_index_find(&ld->idx_by_path, path);

    return i != SIZE_MAX ? &ld->idx[i] : NULL;
}
