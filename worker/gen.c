/* Routing-state generations (gen.h). */
#include <stdlib.h>

#include "common/prefix.h"
#include "worker/firewall.h"
#include "worker/gen.h"
#include "worker/route.h"

struct gen *gen_new(uint32_t id, const struct geoip *geoip)
{
    struct gen *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->refs = 1;
    g->id = id;
    g->geoip = geoip;
    return g;
}

struct gen *gen_derive(const struct gen *prev, uint32_t id)
{
    struct gen *g = gen_new(id, prev->geoip);

    if (g == NULL)
        return NULL;
    for (unsigned i = 0; i < MC_MAX_LISTENERS; i++)
        g->listeners[i].routes = route_table_ref(prev->listeners[i].routes);
    g->fw = firewall_ref(prev->fw);
    return g;
}

struct gen *gen_ref(struct gen *g)
{
    g->refs++;
    return g;
}

void gen_unref(struct gen *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    for (unsigned i = 0; i < MC_MAX_LISTENERS; i++) {
        route_table_unref(g->listeners[i].routes);
        prefix_set_free(g->listeners[i].trusted);
    }
    firewall_unref(g->fw);
    free(g);
}
