/*
 * The database-owned state. Everything in a struct state is allocated
 * element by element with malloc (store_load, state_from_config), so state_free walks the
 * same shape and frees every string and array; a partly filled state
 * (zeroed elements, NULL pointers) is freed the same way. The listeners
 * are the config's structs, allocated as config_load allocates them, and
 * freed by the config's listener_conf_free_array.
 */
#include <stdlib.h>
#include <string.h>

#include "common/mc.h"
#include "master/state.h"

static const char *const fw_type_names[] = {
    [FW_IP] = "ip",
    [FW_CIDR] = "cidr",
    [FW_COUNTRY] = "country",
};

void state_free(struct state *s)
{
    if (s == NULL)
        return;
    listener_conf_free_array(s->listeners, s->n_listeners);
    for (unsigned i = 0; i < s->n_rules; i++)
        free(s->rules[i].value);
    free(s->rules);
    free(s);
}

/* strdup that keeps NULL; *ok turns false when a copy fails. */
static char *dup_or_null(const char *s, bool *ok)
{
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *ok = false;
    return d;
}

/* A copy of n elements of size bytes (NULL for none); *ok turns false when it fails. */
static void *dup_array(const void *a, unsigned n, size_t size, bool *ok)
{
    void *d;

    if (n == 0)
        return NULL;
    if ((d = calloc(n, size)) == NULL) {
        *ok = false;
        return NULL;
    }
    return memcpy(d, a, n * size);
}

/* Deep-copies what a route's struct copy shares with its source. */
static bool route_own(struct route_conf *r)
{
    bool ok = true;

    r->hostname = dup_or_null(r->hostname, &ok);
    r->backend = dup_or_null(r->backend, &ok);
    r->tls_cert = dup_or_null(r->tls_cert, &ok);
    r->tls_key = dup_or_null(r->tls_key, &ok);
    r->policies = dup_array(r->policies, r->n_policies, sizeof(*r->policies), &ok);
    if (r->policies == NULL)
        r->n_policies = 0;
    for (unsigned i = 0; i < r->n_policies; i++)
        r->policies[i].value = dup_or_null(r->policies[i].value, &ok);
    return ok;
}

static int route_by_hostname(const void *a, const void *b)
{
    return strcmp(((const struct route_conf *)a)->hostname,
                  ((const struct route_conf *)b)->hostname);
}

/* Deep-copies what a listener's struct copy shares with its source; routes by hostname. */
static bool listener_own(struct listener_conf *l)
{
    bool ok = true;
    unsigned n = l->n_routes;

    l->addr = dup_or_null(l->addr, &ok);
    l->trusted_proxies =
        dup_array(l->trusted_proxies, l->n_trusted_proxies, sizeof(*l->trusted_proxies), &ok);
    if (l->trusted_proxies == NULL)
        l->n_trusted_proxies = 0;
    /* routes are copied one by one so that a failure leaves a shape state_free walks */
    l->routes = dup_array(l->routes, n, sizeof(*l->routes), &ok);
    l->n_routes = 0;
    for (unsigned i = 0; ok && i < n; i++, l->n_routes++)
        ok = route_own(&l->routes[i]);
    if (ok)
        qsort(l->routes, l->n_routes, sizeof(*l->routes), route_by_hostname);
    return ok;
}

static int listener_by_addr(const void *a, const void *b)
{
    return strcmp(((const struct listener_conf *)a)->addr, ((const struct listener_conf *)b)->addr);
}

static int rule_cmp(const void *a, const void *b)
{
    const struct fw_rule *x = a, *y = b;
    int c = strcmp(fw_type_name(x->type), fw_type_name(y->type));

    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Appends copies of cfg's rules of type t. */
static bool rules_copy(struct state *s, enum fw_type t, char *const *values, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if ((s->rules[s->n_rules].value = strdup(values[i])) == NULL)
            return false;
        s->rules[s->n_rules++].type = t;
    }
    return true;
}

/* Sorts the rules and drops repeats, as the seed's ON CONFLICT DO NOTHING does. */
static void rules_sort_unique(struct state *s)
{
    unsigned k = 0;

    qsort(s->rules, s->n_rules, sizeof(*s->rules), rule_cmp);
    for (unsigned i = 0; i < s->n_rules; i++) {
        if (k > 0 && rule_cmp(&s->rules[k - 1], &s->rules[i]) == 0)
            free(s->rules[i].value);
        else
            s->rules[k++] = s->rules[i];
    }
    s->n_rules = k;
}

struct state *state_from_config(const struct config *cfg)
{
    const struct firewall_conf *fw = &cfg->firewall;
    unsigned n_rules = fw->n_blocked_ips + fw->n_blocked_cidrs + fw->n_blocked_countries;
    struct state *s = calloc(1, sizeof(*s));
    bool ok = s != NULL;

    if (ok && cfg->n_listeners > 0) {
        s->listeners = dup_array(cfg->listeners, cfg->n_listeners, sizeof(*s->listeners), &ok);
        for (unsigned i = 0; ok && i < cfg->n_listeners; i++, s->n_listeners++)
            ok = listener_own(&s->listeners[i]);
        /* one that failed is counted: it holds copies or NULLs, never cfg's pointers */
        if (ok)
            qsort(s->listeners, s->n_listeners, sizeof(*s->listeners), listener_by_addr);
    }
    if (ok && n_rules > 0) {
        ok = (s->rules = calloc(n_rules, sizeof(*s->rules))) != NULL &&
             rules_copy(s, FW_IP, fw->blocked_ips, fw->n_blocked_ips) &&
             rules_copy(s, FW_CIDR, fw->blocked_cidrs, fw->n_blocked_cidrs) &&
             rules_copy(s, FW_COUNTRY, fw->blocked_countries, fw->n_blocked_countries);
        if (ok)
            rules_sort_unique(s);
    }
    if (!ok) {
        state_free(s);
        return NULL;
    }
    return s;
}

struct listener_conf *state_listener(const struct state *s, const char *addr)
{
    return listener_conf_find(s->listeners, s->n_listeners, addr);
}

const char *fw_type_name(enum fw_type t)
{
    if ((unsigned)t >= MC_ARRAY_LEN(fw_type_names))
        return NULL;
    return fw_type_names[t];
}

int fw_type_parse(const char *s)
{
    for (unsigned i = 0; i < MC_ARRAY_LEN(fw_type_names); i++) {
        if (strcmp(s, fw_type_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static bool route_conf_eq(const struct route_conf *a, const struct route_conf *b)
{
    if (!str_eq(a->backend, b->backend) || a->mode != b->mode ||
        !str_eq(a->tls_cert, b->tls_cert) || !str_eq(a->tls_key, b->tls_key) ||
        a->backend_tls != b->backend_tls || a->send_proxy_protocol != b->send_proxy_protocol ||
        a->n_policies != b->n_policies)
        return false;
    for (unsigned i = 0; i < a->n_policies; i++) {
        if (a->policies[i].type != b->policies[i].type ||
            !str_eq(a->policies[i].value, b->policies[i].value))
            return false;
    }
    return true;
}

static int change_push(struct route_change **out, unsigned *n, unsigned *cap, struct route_change c)
{
    if (*n == *cap) {
        unsigned ncap = *cap ? *cap * 2 : 8;
        struct route_change *p = realloc(*out, ncap * sizeof(*p));
        if (p == NULL)
            return -1;
        *out = p;
        *cap = ncap;
    }
    (*out)[(*n)++] = c;
    return 0;
}

int state_route_changes(const struct state *old, const struct state *next,
                        struct route_change **out)
{
    unsigned n = 0, cap = 0;

    *out = NULL;
    if (old->n_listeners != next->n_listeners)
        return -1;
    for (unsigned l = 0; l < next->n_listeners; l++) {
        const struct listener_conf *a = &old->listeners[l], *b = &next->listeners[l];
        unsigned i = 0, j = 0;
        if (strcmp(a->addr, b->addr) != 0)
            goto full;
        /* both sorted by hostname (store_load): one merge walk */
        while (i < a->n_routes || j < b->n_routes) {
            int cmp = i == a->n_routes   ? 1
                      : j == b->n_routes ? -1
                                         : strcmp(a->routes[i].hostname, b->routes[j].hostname);
            struct route_change c = {.listener = b};
            if (cmp < 0) {
                c.route = &a->routes[i++];
                c.removed = true;
            } else if (cmp > 0) {
                c.route = &b->routes[j++];
            } else if (!route_conf_eq(&a->routes[i++], &b->routes[j])) {
                c.route = &b->routes[j++];
            } else {
                j++;
                continue;
            }
            if (change_push(out, &n, &cap, c) < 0)
                goto full;
        }
    }
    return (int)n;
full:
    free(*out);
    *out = NULL;
    return -1;
}

bool state_rules_equal(const struct state *a, const struct state *b)
{
    if (a->n_rules != b->n_rules)
        return false;
    for (unsigned i = 0; i < a->n_rules; i++) {
        if (a->rules[i].type != b->rules[i].type || strcmp(a->rules[i].value, b->rules[i].value))
            return false;
    }
    return true;
}

int state_rules_pack(const struct state *s, struct msg_fw_rule **out)
{
    struct msg_fw_rule *p = calloc(s->n_rules ? s->n_rules : 1, sizeof(*p));
    const char *err;

    if (p == NULL)
        return -1;
    for (unsigned i = 0; i < s->n_rules; i++) {
        const struct fw_rule *r = &s->rules[i];
        struct mc_cidr net;
        p[i].type = (uint8_t)r->type;
        if (r->type == FW_COUNTRY) {
            memcpy(p[i].country, r->value, sizeof(p[i].country));
            continue;
        }
        /* canonical text, checked by store_load and the config loader */
        if (addr_parse_cidr(r->value, r->type == FW_IP, &net, &err) < 0) {
            free(p);
            return -1;
        }
        msg_cidr_set(&p[i].net, &net);
    }
    *out = p;
    return 0;
}
