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
