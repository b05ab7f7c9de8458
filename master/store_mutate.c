/*
 * Writing the database: seeding it from the config once, and the
 * mutations of the admin API, each one transaction.
 */
#include "master/store_impl.h"

/* The firewall rules of one type in the config. */
char **store_config_rules(const struct firewall_conf *fw, enum fw_type t, unsigned *n)
{
    switch (t) {
    case FW_IP:
        *n = fw->n_blocked_ips;
        return fw->blocked_ips;
    case FW_CIDR:
        *n = fw->n_blocked_cidrs;
        return fw->blocked_cidrs;
    case FW_COUNTRY:
        *n = fw->n_blocked_countries;
        return fw->blocked_countries;
    }
    *n = 0;
    return NULL;
}

int store_is_empty(struct store *st, bool *empty, const char **err)
{
    sqlite3_int64 v = 0;
    int rc;

    st->op = "check for an empty database";
    /* Routes and policies cannot exist without a listener (foreign keys). */
    rc = stmt_int(st,
                  stmt(st,
                       "SELECT NOT EXISTS (SELECT 1 FROM seeded)"
                       " AND NOT EXISTS (SELECT 1 FROM listeners)"
                       " AND NOT EXISTS (SELECT 1 FROM firewall_rules)",
                       ""),
                  &v);
    *empty = v != 0;
    return store_end(st, rc, err);
}

/* Appends a policy after the route's last one. */
static int policy_append(struct store *st, sqlite3_int64 route_id, const struct policy_conf *p)
{
    return stmt_run(st, stmt_kept(st,
                                  "INSERT INTO l7_policies (route_id, position, type, value)"
                                  " SELECT ?1, coalesce(max(position) + 1, 0), ?2, ?3"
                                  " FROM l7_policies WHERE route_id = ?1",
                                  "Itt", route_id, config_policy_type_name(p->type), p->value));
}

/* Appends r's policies, in order, to the route with that id. */
static int policies_append(struct store *st, sqlite3_int64 id, const struct route_conf *r)
{
    int rc = STORE_OK;

    for (unsigned i = 0; rc == STORE_OK && i < r->n_policies; i++)
        rc = policy_append(st, id, &r->policies[i]);
    return rc;
}

/*
 * Inserts the route, or rewrites every field of the one with its hostname
 * (keeping its id), and replaces its policies with r's, in order. An
 * unknown mode or policy type binds NULL, which the schema refuses.
 */
static int store_route_write(struct store *st, sqlite3_int64 listener_id,
                             const struct route_conf *r)
{
    sqlite3_int64 id;
    int rc;

    rc = stmt_int(
        st,
        stmt(st,
             "INSERT INTO routes (listener_id, hostname, backend, mode, tls_cert, tls_key,"
             " backend_tls, send_proxy_protocol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
             " ON CONFLICT (listener_id, hostname) DO UPDATE SET backend = excluded.backend,"
             " mode = excluded.mode, tls_cert = excluded.tls_cert, tls_key = excluded.tls_key,"
             " backend_tls = excluded.backend_tls,"
             " send_proxy_protocol = excluded.send_proxy_protocol"
             " RETURNING id",
             "Itttttii", listener_id, r->hostname, r->backend, config_route_mode_name(r->mode),
             r->tls_cert, r->tls_key, r->backend_tls, r->send_proxy_protocol),
        &id);
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM l7_policies WHERE route_id = ?1", "I", id));
    return rc == STORE_OK ? policies_append(st, id, r) : rc;
}

/*
 * Seeding: inserts a route of a listener inserted in the same
 * transaction, which has nothing to replace; a hostname twice in one
 * listener (config_load refuses that) fails the seed, as an address
 * twice does. Seeding runs this once per route, so it is a kept plain
 * INSERT: store_route_write's upsert with RETURNING builds a temporary table
 * on every run and costs several times as much.
 */
static int store_route_insert(struct store *st, sqlite3_int64 listener_id,
                              const struct route_conf *r)
{
    int rc;

    rc = stmt_run(st, stmt_kept(st,
                                "INSERT INTO routes (listener_id, hostname, backend, mode,"
                                " tls_cert, tls_key, backend_tls, send_proxy_protocol)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                "Itttttii", listener_id, r->hostname, r->backend,
                                config_route_mode_name(r->mode), r->tls_cert, r->tls_key,
                                r->backend_tls, r->send_proxy_protocol));
    return rc == STORE_OK ? policies_append(st, sqlite3_last_insert_rowid(st->db), r) : rc;
}

static int listener_insert(struct store *st, const struct listener_conf *l)
{
    char cidr[ADDR_STRLEN];
    sqlite3_int64 id;
    unsigned i;
    int rc;

    rc = stmt_int(st,
                  stmt(st,
                       "INSERT INTO listeners (addr, proxy_protocol, max_connections)"
                       " VALUES (?1, ?2, ?3) RETURNING id",
                       "tiu", l->addr, l->proxy_protocol, l->max_connections),
                  &id);
    for (i = 0; rc == STORE_OK && i < l->n_trusted_proxies; i++) {
        if (addr_format_cidr(&l->trusted_proxies[i], cidr, sizeof(cidr)) == NULL)
            return store_fail(st, STORE_INVALID, "%s: listener %s: trusted proxy %u is invalid",
                              st->op, l->addr, i);
        rc = stmt_run(st, stmt_kept(st,
                                    "INSERT INTO trusted_proxies (listener_id, position, cidr)"
                                    " VALUES (?1, ?2, ?3)",
                                    "Iut", id, i, cidr));
    }
    for (i = 0; rc == STORE_OK && i < l->n_routes; i++)
        rc = store_route_insert(st, id, &l->routes[i]);
    return rc;
}

/* Adding a rule that exists already succeeds and changes nothing:
 * AddFirewallRule answers with the rule either way. */
static int rule_insert(struct store *st, enum fw_type type, const char *value)
{
    return stmt_run(st, stmt_kept(st,
                                  "INSERT INTO firewall_rules (type, value) VALUES (?1, ?2)"
                                  " ON CONFLICT (type, value) DO NOTHING",
                                  "tt", fw_type_name(type), value));
}

int store_seed(struct store *st, const struct config *cfg, const char **err)
{
    static const enum fw_type types[] = {FW_IP, FW_CIDR, FW_COUNTRY};
    unsigned i, j, n;
    char **values;
    int rc;

    rc = store_begin(st, "seed database");
    if (rc == STORE_OK) {
        rc = stmt_run(st, stmt(st,
                               "INSERT INTO seeded (id, seeded_at)"
                               " VALUES (1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                               ""));
        if (rc == STORE_INVALID)
            rc = store_fail(st, rc, "%s: the database was seeded already", st->op);
    }
    for (i = 0; rc == STORE_OK && i < cfg->n_listeners; i++)
        rc = listener_insert(st, &cfg->listeners[i]);
    for (i = 0; rc == STORE_OK && i < MC_ARRAY_LEN(types); i++) {
        values = store_config_rules(&cfg->firewall, types[i], &n);
        for (j = 0; rc == STORE_OK && j < n; j++)
            rc = rule_insert(st, types[i], values[j]);
    }
    return store_end(st, store_commit(st, rc), err);
}

/* The id of a listener, or STORE_NOT_FOUND with a message naming it. */
static int listener_id(struct store *st, const char *addr, sqlite3_int64 *id)
{
    int rc = stmt_int(st, stmt(st, "SELECT id FROM listeners WHERE addr = ?1", "t", addr), id);

    if (rc == STORE_NOT_FOUND)
        store_fail(st, rc, "listener %s not found", addr);
    return rc;
}

static int store_route_id(struct store *st, const char *listener, const char *hostname,
                          sqlite3_int64 *id)
{
    sqlite3_int64 lid;
    int rc = listener_id(st, listener, &lid);

    if (rc != STORE_OK)
        return rc;
    rc = stmt_int(st,
                  stmt(st, "SELECT id FROM routes WHERE listener_id = ?1 AND hostname = ?2", "It",
                       lid, hostname),
                  id);
    if (rc == STORE_NOT_FOUND)
        store_fail(st, rc, "route %s on listener %s not found", hostname, listener);
    return rc;
}

int store_route_upsert(struct store *st, const char *listener, const struct route_conf *r,
                       const char **err)
{
    sqlite3_int64 lid;
    int rc = store_begin(st, "upsert route");

    if (rc == STORE_OK)
        rc = listener_id(st, listener, &lid);
    if (rc == STORE_OK)
        rc = store_route_write(st, lid, r);
    return store_end(st, store_commit(st, rc), err);
}

int store_route_delete(struct store *st, const char *listener, const char *hostname,
                       const char **err)
{
    sqlite3_int64 id;
    int rc = store_begin(st, "delete route");

    if (rc == STORE_OK)
        rc = store_route_id(st, listener, hostname, &id);
    /* Its policies go with it (ON DELETE CASCADE). */
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM routes WHERE id = ?1", "I", id));
    return store_end(st, store_commit(st, rc), err);
}

int store_rule_add(struct store *st, enum fw_type type, const char *value, const char **err)
{
    int rc = store_begin(st, "add firewall rule");

    if (rc == STORE_OK)
        rc = rule_insert(st, type, value);
    return store_end(st, store_commit(st, rc), err);
}

int store_rule_delete(struct store *st, enum fw_type type, const char *value, const char **err)
{
    int rc = store_begin(st, "delete firewall rule");

    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "DELETE FROM firewall_rules WHERE type = ?1 AND value = ?2",
                               "tt", fw_type_name(type), value));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "firewall rule %s %s not found",
                        fw_type_name(type) != NULL ? fw_type_name(type) : "?", value);
    return store_end(st, store_commit(st, rc), err);
}

int store_listener_set_max(struct store *st, const char *listener, uint32_t max, const char **err)
{
    int rc = store_begin(st, "set listener max_connections");

    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st, "UPDATE listeners SET max_connections = ?1 WHERE addr = ?2",
                               "ut", (unsigned)max, listener));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "listener %s not found", listener);
    return store_end(st, store_commit(st, rc), err);
}

/* Adding a policy the route has already succeeds and leaves it in its place. */
int store_policy_add(struct store *st, const char *listener, const char *hostname,
                     const struct policy_conf *p, const char **err)
{
    const char *type = config_policy_type_name(p->type);
    sqlite3_int64 rid, pid;
    int rc = store_begin(st, "add l7 policy");

    if (rc == STORE_OK)
        rc = store_route_id(st, listener, hostname, &rid);
    if (rc == STORE_OK) {
        rc = stmt_int(st,
                      stmt(st,
                           "SELECT id FROM l7_policies"
                           " WHERE route_id = ?1 AND type = ?2 AND value = ?3",
                           "Itt", rid, type, p->value),
                      &pid);
        if (rc == STORE_NOT_FOUND)
            rc = policy_append(st, rid, p);
    }
    return store_end(st, store_commit(st, rc), err);
}

int store_policy_delete(struct store *st, const char *listener, const char *hostname,
                        const struct policy_conf *p, const char **err)
{
    const char *type = config_policy_type_name(p->type);
    sqlite3_int64 rid;
    int rc = store_begin(st, "delete l7 policy");

    if (rc == STORE_OK)
        rc = store_route_id(st, listener, hostname, &rid);
    if (rc == STORE_OK)
        rc = stmt_run(st, stmt(st,
                               "DELETE FROM l7_policies"
                               " WHERE route_id = ?1 AND type = ?2 AND value = ?3",
                               "Itt", rid, type, p->value));
    if (rc == STORE_OK && sqlite3_changes(st->db) == 0)
        rc = store_fail(st, STORE_NOT_FOUND, "l7 policy %s %s on route %s not found",
                        type != NULL ? type : "?", p->value, hostname);
    return store_end(st, store_commit(st, rc), err);
}
