/*
 * The YAML configuration (SPEC section 3).
 *
 * An operator fixing a file wants every error in it, not the first, so
 * loading runs in four steps over one parse of the file:
 *
 *  1. libyaml reads the file into a document tree, and the MCPROXY_*
 *     environment overrides are spliced into that tree.
 *  2. A walk of the tree against the libcyaml schema (the one list
 *     of keys) records the line of every key path and reports unknown
 *     keys, wrong shapes, bad scalars and missing keys. A bad value is
 *     replaced with a placeholder that the schema accepts, and its entity
 *     (the top-level key, or the listener, route or policy holding it) is
 *     marked tainted: the typed load still succeeds, and the checks of
 *     step 4 skip what is already known to be wrong instead of reporting
 *     it twice.
 *  3. The tree, now the schema's shape, fills the raw_* structs by the
 *     schema's description of them (libcyaml's own load would parse the
 *     text a second time, which cost as much as all the rest).
 *  4. Conversion into struct config checks what each value means and
 *     resolves relative paths, finding each value's line by key path.
 *
 * Errors are collected as they are found and reported in file order.
 *
 * This file holds the entry points, the error collection, the name table
 * steps 2 and 4 share, and what works on a loaded config (freeing,
 * lookups); config_tree.c holds steps 1 and 2, config_schema.c the schema
 * and step 3, config_check.c step 4.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config_impl.h"

/* P with room for element N (of *CAP allocated), or NULL when memory ran out. */
void *cfg_grow(void *p, size_t *cap, size_t n, size_t size)
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

void cfg_vfail(struct loader *ld, unsigned line, const char *env, const char *path, const char *fmt,
               va_list ap)
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

    errs = cfg_grow(ld->errs, &ld->cap_errs, ld->n_errs, sizeof(*errs));
    if (errs == NULL) {
        ld->oom = true;
        return;
    }
    ld->errs = errs;
    if ((errs[ld->n_errs].msg = strdup(msg)) == NULL) {
        ld->oom = true;
        return;
    }
    ld->errs[ld->n_errs].line = env != NULL ? 0 : line;
    ld->errs[ld->n_errs].seq = ld->n_errs;
    ld->n_errs++;
}

void cfg_fail(struct loader *ld, unsigned line, const char *env, const char *path, const char *fmt,
              ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_vfail(ld, line, env, path, fmt, ap);
    va_end(ap);
}

/* Decimal digits only, no sign, space or leading zero, at most max. */
bool cfg_parse_decimal(const char *s, uint64_t max, uint64_t *out)
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

int name_index_init(struct name_index *x, size_t n)
{
    size_t size = 16;

    while (size < 2 * n)
        size *= 2;
    x->slots = calloc(size, sizeof(*x->slots));
    x->mask = size - 1;
    return x->slots != NULL ? 0 : -1;
}

void name_index_free(struct name_index *x)
{
    free(x->slots);
    x->slots = NULL;
}

/* FNV-1a: the names are the operator's own file, not an attacker's. */
static size_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (size_t)h;
}

/* The slot holding name, or the empty one where it would go. */
static struct name_slot *name_slot(const struct name_index *x, const char *name)
{
    size_t k = name_hash(name) & x->mask;

    while (x->slots[k].name != NULL && strcmp(x->slots[k].name, name) != 0)
        k = (k + 1) & x->mask;
    return &x->slots[k];
}

size_t name_index_add(struct name_index *x, const char *name, size_t v)
{
    struct name_slot *s = name_slot(x, name);

    if (s->name == NULL)
        *s = (struct name_slot){.name = name, .value = v};
    return s->value;
}

size_t name_index_find(const struct name_index *x, const char *name)
{
    const struct name_slot *s;

    if (x->slots == NULL)
        return SIZE_MAX;
    s = name_slot(x, name);
    return s->name != NULL ? s->value : SIZE_MAX;
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
    name_index_free(&ld->idx_by_path);
    for (size_t i = 0; i < ld->n_vars; i++)
        free(ld->vars[i]);
    free(ld->vars);
    free(ld->env);
    free(ld->seen);
    for (size_t i = 0; i < ld->n_blocks; i++)
        free(ld->blocks[i]);
    free(ld->blocks);
    free(ld->text);
    if (ld->have_doc)
        yaml_document_delete(&ld->doc);
}

static struct config *load(const char *file, bool no_files, config_report_fn *report, void *arg)
{
    struct loader ld = {.file = file, .no_files = no_files};
    struct raw_config *raw = NULL;
    struct config *cfg = NULL;

    if (cfg_read_file(&ld) == 0 && cfg_walk(&ld))
        raw = cfg_typed_load(&ld);
    if (raw != NULL)
        cfg = cfg_convert(&ld, raw);
    if (ld.n_errs > 0 || ld.oom) {
        config_free(cfg);
        cfg = NULL;
    }
    loader_finish(&ld, report, arg);
    return cfg;
}

struct config *config_load(const char *file, config_report_fn *report, void *arg)
{
    return load(file, false, report, arg);
}

struct config *config_load_no_files(const char *file, config_report_fn *report, void *arg)
{
    return load(file, true, report, arg);
}

static void free_strs(char **a, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

void listener_conf_free_array(struct listener_conf *ls, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct listener_conf *l = &ls[i];
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
    free(ls);
}

struct listener_conf *listener_conf_find(struct listener_conf *ls, unsigned n, const char *addr)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(ls[i].addr, addr) == 0)
            return &ls[i];
    }
    return NULL;
}

void config_drop_seed(struct config *cfg)
{
    listener_conf_free_array(cfg->listeners, cfg->n_listeners);
    cfg->listeners = NULL;
    cfg->n_listeners = 0;
    free_strs(cfg->firewall.blocked_ips, cfg->firewall.n_blocked_ips);
    free_strs(cfg->firewall.blocked_cidrs, cfg->firewall.n_blocked_cidrs);
    free_strs(cfg->firewall.blocked_countries, cfg->firewall.n_blocked_countries);
    cfg->firewall.blocked_ips = cfg->firewall.blocked_cidrs = cfg->firewall.blocked_countries =
        NULL;
    cfg->firewall.n_blocked_ips = cfg->firewall.n_blocked_cidrs = 0;
    cfg->firewall.n_blocked_countries = 0;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    config_drop_seed(cfg);
    free(cfg->grpc.addr);
    free(cfg->grpc.unix_path);
    free(cfg->grpc.socket_group);
    free(cfg->grpc.user);
    free(cfg->grpc.tls_cert);
    free(cfg->grpc.tls_key);
    free(cfg->grpc.client_ca);
    free(cfg->firewall.geoip_db);
    free(cfg->metrics.addr);
    free(cfg->log_access_file);
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
