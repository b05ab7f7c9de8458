/*
 * The state the database owns and the master pushes to the workers:
 * listeners (with their routes and L7 policies) and firewall rules. It
 * reuses the config's listener/route/policy structs, so seeding from the
 * config and loading from the database produce the same shape.
 */
#ifndef MC_STATE_H
#define MC_STATE_H

#include "common/config.h"
#include "common/msg.h"

struct fw_rule {
    enum fw_type type;
    char *value; /* canonical: IP text, CIDR with host bits zero, upper-case country */
};

struct state {
    struct listener_conf *listeners; /* ordered by addr */
    unsigned n_listeners;
    struct fw_rule *rules; /* ordered by type name, then value */
    unsigned n_rules;
};

void state_free(struct state *s);
/*
 * The state a seed of cfg stores, as store_load would read it back:
 * copies of cfg's listeners by addr, their routes by hostname (policies
 * in order), and its rules by type name then value, once each. The
 * master builds the first state from the config it has just seeded
 * instead of reading 10,000 routes back. NULL when memory runs out.
 */
struct state *state_from_config(const struct config *cfg);

/* A route that differs between two states: added or changed (route points
 * into the newer state), or removed (into the older one). */
struct route_change {
    const struct listener_conf *listener; /* in the newer state */
    const struct route_conf *route;
    bool removed;
};
/*
 * The routes that differ between two states loaded by store_load (listeners
 * by addr, routes by hostname), in an array the caller frees. Returns their
 * number, or -1 when the listeners differ (only a full push will do) or
 * memory runs out.
 */
int state_route_changes(const struct state *old, const struct state *next,
                        struct route_change **out);
/* Whether two states hold the same firewall rules (both in store order). */
bool state_rules_equal(const struct state *a, const struct state *b);
/* The rules in the channel's binary form (msg.h), in state order, in an
 * array the caller frees. -1 when memory runs out. */
int state_rules_pack(const struct state *s, struct msg_fw_rule **out);
/* The listener named addr (exact string), or NULL. */
struct listener_conf *state_listener(const struct state *s, const char *addr);
/* "ip" / "cidr" / "country" <-> enum; NULL / -1 when unknown. */
const char *fw_type_name(enum fw_type t);
int fw_type_parse(const char *s);

#endif
