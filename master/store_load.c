/*
 * Reading the database: the whole state in one read transaction, every
 * row checked as the config's values are, and how far the config differs
 * from what the database holds.
 */
#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "store_impl.h"

static int load_trusted(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct mc_cidr *c;
    const char *text, *perr;
    int rc;

    q = stmt(st, "SELECT cidr FROM trusted_proxies WHERE listener_id = ?1 ORDER BY position", "I",
             listener_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((c = store_push(l->trusted_proxies, l->n_trusted_proxies, sizeof(*c))) == NULL) {
            rc = store_nomem(st);
            break;
        }
        l->trusted_proxies = c;
        c = &c[l->n_trusted_proxies++];
        text = (const char *)sqlite3_column_text(q, 0);
        if (text == NULL) {
            rc = store_nomem(st);
            break;
        }
        if (addr_parse_cidr(text, false, c, &perr) < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: trusted_proxies of listener %s: '%s': %s", st->op,
                            l->addr, text, perr);
            break;
        }
    }
    sqlite3_finalize(q);
    return rc;
}

static int load_policies(struct store *st, sqlite3_int64 route_id, struct route_conf *r)
{
    sqlite3_stmt *q;
    struct policy_conf *p;
    const char *type;
    int rc, t;

    q = stmt(st, "SELECT id, type, value FROM l7_policies WHERE route_id = ?1 ORDER BY position",
             "I", route_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((p = store_push(r->policies, r->n_policies, sizeof(*p))) == NULL) {
            rc = store_nomem(st);
            break;
        }
        r->policies = p;
        p = &p[r->n_policies++];
        type = (const char *)sqlite3_column_text(q, 1);
        if (type == NULL || (p->value = col_strdup(q, 2)) == NULL) {
            rc = store_nomem(st);
            break;
        }
        t = policy_type_parse(type);
        if (t < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: l7_policies row %lld: unknown type '%s'", st->op,
                            sqlite3_column_int64(q, 0), type);
            break;
        }
        p->type = (enum policy_type)t;
    }
    sqlite3_finalize(q);
    return rc;
}

/* Fills r from a routes row (id, hostname, backend, mode, tls_cert, tls_key,
 * backend_tls, send_proxy_protocol) and loads its policies. */
static int load_route(struct store *st, sqlite3_stmt *q, const char *listener, struct route_conf *r)
{
    char norm[MC_HOSTNAME_MAX + 1];
    sqlite3_int64 id = sqlite3_column_int64(q, 0);
    const char *mode, *perr = NULL;
    int m;

    r->hostname = col_strdup(q, 1);
    r->backend = col_strdup(q, 2);
    mode = (const char *)sqlite3_column_text(q, 3);
    if (r->hostname == NULL || r->backend == NULL || mode == NULL)
        return store_nomem(st);
    if (sqlite3_column_type(q, 4) != SQLITE_NULL && (r->tls_cert = col_strdup(q, 4)) == NULL)
        return store_nomem(st);
    if (sqlite3_column_type(q, 5) != SQLITE_NULL && (r->tls_key = col_strdup(q, 5)) == NULL)
        return store_nomem(st);
    r->backend_tls = sqlite3_column_int(q, 6) != 0;
    r->send_proxy_protocol = sqlite3_column_int(q, 7) != 0;

    m = route_mode_parse(mode);
    if (hostname_normalize_pattern(r->hostname, strlen(r->hostname), norm) < 0 ||
        strcmp(norm, r->hostname) != 0)
        perr = "hostname is not a normalised name";
    else if (addr_parse_hostport(r->backend, &r->backend_addr, &perr) < 0)
        ; /* perr set */
    else if (m < 0)
        perr = "unknown mode";
    if (perr != NULL)
        return store_fail(st, STORE_ERROR, "%s: routes row %lld (%s on listener %s): %s", st->op,
                          id, r->hostname, listener, perr);
    r->mode = (enum route_mode)m;
    return load_policies(st, id, r);
}

static int load_routes(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct route_conf *r;
    int rc;

    q = stmt(st,
             "SELECT id, hostname, backend, mode, tls_cert, tls_key, backend_tls,"
             " send_proxy_protocol FROM routes WHERE listener_id = ?1 ORDER BY hostname",
             "I", listener_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((r = store_push(l->routes, l->n_routes, sizeof(*r))) == NULL) {
            rc = store_nomem(st);
            break;
        }
        l->routes = r;
        rc = load_route(st, q, l->addr, &r[l->n_routes++]);
        if (rc != STORE_OK)
            break;
    }
    sqlite3_finalize(q);
    return rc;
}

static int load_listeners(struct store *st, struct state *s)
{
    sqlite3_stmt *q;
    struct listener_conf *l;
    sqlite3_int64 id;
    const char *perr;
    int rc;

    q = stmt(st, "SELECT id, addr, proxy_protocol, max_connections FROM listeners ORDER BY addr",
             "");
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((l = store_push(s->listeners, s->n_listeners, sizeof(*l))) == NULL) {
            rc = store_nomem(st);
            break;
        }
        s->listeners = l;
        l = &l[s->n_listeners++];
        id = sqlite3_column_int64(q, 0);
        if ((l->addr = col_strdup(q, 1)) == NULL) {
            rc = store_nomem(st);
            break;
        }
        if (addr_parse_bind(l->addr, &l->bind, &perr) < 0) {
            rc = store_fail(st, STORE_ERROR, "%s: listeners row %lld (addr '%s'): %s", st->op, id,
                            l->addr, perr);
            break;
        }
        l->proxy_protocol = sqlite3_column_int(q, 2) != 0;
        /* The schema keeps it within 0..UINT32_MAX. */
        l->max_connections = (uint32_t)sqlite3_column_int64(q, 3);
        rc = load_trusted(st, id, l);
        if (rc == STORE_OK)
            rc = load_routes(st, id, l);
        if (rc != STORE_OK)
            break;
    }
    sqlite3_finalize(q);
    return rc;
}

/* Why a firewall rule's value is unusable, or NULL when it is fine. */
static const char *rule_value_error(enum fw_type t, const char *v)
{
    struct mc_cidr c;
    const char *perr = NULL;

    switch (t) {
    case FW_IP:
        if (strchr(v, '/') != NULL || addr_parse_cidr(v, true, &c, &perr) < 0)
            return "not an IP address";
        return NULL;
    case FW_CIDR:
        return addr_parse_cidr(v, false, &c, &perr) < 0 ? perr : NULL;
    case FW_COUNTRY:
        if (strlen(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z')
            return "not a two-letter upper-case country code";
        return NULL;
    }
    return "unknown type";
}

static int load_rules(struct store *st, struct state *s)
{
    sqlite3_stmt *q;
    struct fw_rule *r;
    const char *type, *perr;
    int rc, t;

    q = stmt(st, "SELECT id, type, value FROM firewall_rules ORDER BY type, value", "");
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        if ((r = store_push(s->rules, s->n_rules, sizeof(*r))) == NULL) {
            rc = store_nomem(st);
            break;
        }
        s->rules = r;
        r = &r[s->n_rules++];
        type = (const char *)sqlite3_column_text(q, 1);
        if (type == NULL || (r->value = col_strdup(q, 2)) == NULL) {
            rc = store_nomem(st);
            break;
        }
        t = fw_type_parse(type);
        perr = t < 0 ? "unknown type" : rule_value_error((enum fw_type)t, r->value);
        if (perr != NULL) {
            rc = store_fail(st, STORE_ERROR, "%s: firewall_rules row %lld (%s %s): %s", st->op,
                            sqlite3_column_int64(q, 0), type, r->value, perr);
            break;
        }
        r->type = (enum fw_type)t;
    }
    sqlite3_finalize(q);
    return rc;
}

struct state *store_load(struct store *st, const char **err)
{
    struct state *s = calloc(1, sizeof(*s));
    int rc;

    st->op = "load state";
    if (s == NULL) {
        store_end(st, store_nomem(st), err);
        return NULL;
    }
    /* One read transaction: every table from the same commit. */
    rc = store_exec(st, "BEGIN");
    if (rc == STORE_OK)
        rc = load_listeners(st, s);
    if (rc == STORE_OK)
        rc = load_rules(st, s);
    if (store_end(st, store_commit(st, rc), err) != STORE_OK) {
        state_free(s);
        return NULL;
    }
    return s;
}

static bool str_eq(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool cidr_eq(const struct mc_cidr *a, const struct mc_cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

/* How many of a's trusted proxies b lacks. */
static unsigned cidrs_missing(const struct listener_conf *a, const struct listener_conf *b)
{
    unsigned n = 0, i, j;

    for (i = 0; i < a->n_trusted_proxies; i++) {
        for (j = 0; j < b->n_trusted_proxies; j++) {
            if (cidr_eq(&a->trusted_proxies[i], &b->trusted_proxies[j]))
                break;
        }
        n += j == b->n_trusted_proxies;
    }
    return n;
}

/* How many of a's policies b lacks (policies compare as a set). */
static unsigned policies_missing(const struct route_conf *a, const struct route_conf *b)
{
    unsigned n = 0, i, j;

    for (i = 0; i < a->n_policies; i++) {
        for (j = 0; j < b->n_policies; j++) {
            if (a->policies[i].type == b->policies[j].type &&
                str_eq(a->policies[i].value, b->policies[j].value))
                break;
        }
        n += j == b->n_policies;
    }
    return n;
}

static bool route_differs(const struct route_conf *a, const struct route_conf *b)
{
    return !str_eq(a->backend, b->backend) || a->mode != b->mode ||
           !str_eq(a->tls_cert, b->tls_cert) || !str_eq(a->tls_key, b->tls_key) ||
           a->backend_tls != b->backend_tls || a->send_proxy_protocol != b->send_proxy_protocol;
}

/* Differences between the routes of one listener on both sides. */
static unsigned routes_diff(const struct listener_conf *a, const struct listener_conf *b)
{
    const struct route_conf *r, *o;
    unsigned n = 0, i;

    for (i = 0; i < a->n_routes; i++) {
        r = &a->routes[i];
        if ((o = route_conf_find(b, r->hostname)) == NULL)
            n++;
        else
            n += route_differs(r, o) + policies_missing(r, o) + policies_missing(o, r);
    }
    for (i = 0; i < b->n_routes; i++)
        n += route_conf_find(a, b->routes[i].hostname) == NULL;
    return n;
}

static bool listener_differs(const struct listener_conf *a, const struct listener_conf *b)
{
    return a->proxy_protocol != b->proxy_protocol || a->max_connections != b->max_connections ||
           cidrs_missing(a, b) != 0 || cidrs_missing(b, a) != 0;
}

static bool value_in(char **values, unsigned n, const char *v)
{
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(values[i], v) == 0)
            return true;
    }
    return false;
}

static bool rule_in_state(const struct state *s, enum fw_type t, const char *v)
{
    for (unsigned i = 0; i < s->n_rules; i++) {
        if (s->rules[i].type == t && strcmp(s->rules[i].value, v) == 0)
            return true;
    }
    return false;
}

static unsigned rules_diff(const struct firewall_conf *fw, const struct state *s)
{
    static const enum fw_type types[] = {FW_IP, FW_CIDR, FW_COUNTRY};
    unsigned n = 0, i, j, nv;
    char **values;

    for (i = 0; i < MC_ARRAY_LEN(types); i++) {
        values = store_config_rules(fw, types[i], &nv);
        for (j = 0; j < nv; j++)
            n += !rule_in_state(s, types[i], values[j]);
    }
    for (i = 0; i < s->n_rules; i++) {
        values = store_config_rules(fw, s->rules[i].type, &nv);
        n += !value_in(values, nv, s->rules[i].value);
    }
    return n;
}

/*
 * Counts each difference once, at the outermost entry where it shows: a
 * listener on one side only is one (its routes are not counted again), a
 * listener on both with other settings is one plus its route differences;
 * likewise a route on one side only, or on both with other fields, is one,
 * plus one per policy on one side only; and one per rule on one side only.
 */
int store_config_diff(struct store *st, const struct config *cfg, unsigned *n_diff,
                      const char **err)
{
    const struct listener_conf *l, *d;
    struct state *s;
    unsigned n = 0, i;

    s = store_load(st, err);
    if (s == NULL)
        return STORE_ERROR;
    for (i = 0; i < cfg->n_listeners; i++) {
        l = &cfg->listeners[i];
        if ((d = listener_conf_find(s->listeners, s->n_listeners, l->addr)) == NULL)
            n++;
        else
            n += listener_differs(l, d) + routes_diff(l, d);
    }
    for (i = 0; i < s->n_listeners; i++)
        n += listener_conf_find(cfg->listeners, cfg->n_listeners, s->listeners[i].addr) == NULL;
    n += rules_diff(&cfg->firewall, s);
    state_free(s);
    *n_diff = n;
    return STORE_OK;
}
