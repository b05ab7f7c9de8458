/*
 * The database-owned state. Everything in a struct state is allocated
 * element by element with malloc (store_load), so state_free walks the
 * same shape and frees every string and array; a partly filled state
 * (zeroed elements, NULL pointers) is freed the same way. The listeners
 * are the config's structs, allocated as config_load allocates them, and
 * freed by the config's listener_conf_free_array.
 */
#include <stdlib.h>
#include <string.h>

#include "mc.h"
#include "state.h"

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
