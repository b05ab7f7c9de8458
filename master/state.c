/*
 * The database-owned state. Everything in a struct state is allocated
 * element by element with malloc (store_load), so state_free walks the
 * same shape and frees every string and array; a partly filled state
 * (zeroed elements, NULL pointers) is freed the same way.
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

static void route_free(struct route_conf *r)
{
    for (unsigned i = 0; i < r->n_policies; i++)
        free(r->policies[i].value);
    free(r->policies);
    free(r->hostname);
    free(r->backend);
    free(r->tls_cert);
    free(r->tls_key);
}

static void listener_free(struct listener_conf *l)
{
    for (unsigned i = 0; i < l->n_routes; i++)
        route_free(&l->routes[i]);
    free(l->routes);
    free(l->trusted_proxies);
    free(l->addr);
}

void state_free(struct state *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->n_listeners; i++)
        listener_free(&s->listeners[i]);
    free(s->listeners);
    for (unsigned i = 0; i < s->n_rules; i++)
        free(s->rules[i].value);
    free(s->rules);
    free(s);
}

struct listener_conf *state_listener(const struct state *s, const char *addr)
{
    for (unsigned i = 0; i < s->n_listeners; i++) {
        if (strcmp(s->listeners[i].addr, addr) == 0)
            return &s->listeners[i];
    }
    return NULL;
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
