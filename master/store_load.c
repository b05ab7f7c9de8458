/*
 * Reading the database: the whole state in one read transaction, every
 * row checked as the config's values are, and how far the config differs
 * from what the database holds.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hostname.h"
#include "master/store_impl.h"

static int load_trusted(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct mc_cidr *c;
    const char *text, *perr;
    int rc;

    q = stmt_kept(st, "SELECT cidr FROM trusted_proxies WHERE listener_id = ?1 ORDER BY position",
                  "I", listener_id);
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
    stmt_done(st, q);
    return rc;
}

/* Appends the policy of a load_routes row (columns 8-10: id, type, value) to r. */
static int load_policy(struct store *st, sqlite3_stmt *q, struct route_conf *r)
{
    struct policy_conf *p;
    const char *type;
    int t;

    if ((p = store_push(r->policies, r->n_policies, sizeof(*p))) == NULL)
        return store_nomem(st);
    r->policies = p;
    p = &p[r->n_policies++];
    type = (const char *)sqlite3_column_text(q, 9);
    if (type == NULL || (p->value = col_strdup(q, 10)) == NULL)
        return store_nomem(st);
    t = config_policy_type_parse(type);
    if (t < 0)
        return store_fail(st, STORE_ERROR, "%s: l7_policies row %lld: unknown type '%s'", st->op,
                          sqlite3_column_int64(q, 8), type);
    p->type = (enum policy_type)t;
    return STORE_OK;
}

/* Fills r from a load_routes row (columns 0-7: id, hostname, backend, mode,
 * tls_cert, tls_key, backend_tls, send_proxy_protocol). */
static int load_route(struct store *st, sqlite3_stmt *q, const char *listener, struct route_conf *r)
{
    char norm[MC_HOSTNAME_MAX + 1];
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

    m = config_route_mode_parse(mode);
    if (hostname_normalize_pattern(r->hostname, strlen(r->hostname), norm) < 0 ||
        strcmp(norm, r->hostname) != 0)
        perr = "hostname is not a normalised name";
    else if (addr_parse_hostport(r->backend, &r->backend_addr, &perr) < 0)
        ; /* perr set */
    else if (m < 0)
        perr = "unknown mode";
    if (perr != NULL)
        return store_fail(st, STORE_ERROR, "%s: routes row %lld (%s on listener %s): %s", st->op,
                          sqlite3_column_int64(q, 0), r->hostname, listener, perr);
    r->mode = (enum route_mode)m;
    return STORE_OK;
}

/*
 * The routes of a listener with their policies, in one query rather than
 * one per route: a row per policy, in order, or one with NULL policy
 * columns for a route that has none. A route's rows are adjacent, since
 * the hostname is unique within the listener.
 */
static int load_routes(struct store *st, sqlite3_int64 listener_id, struct listener_conf *l)
{
    sqlite3_stmt *q;
    struct route_conf *r = NULL;
    sqlite3_int64 id, last_id = 0;
    int rc;

    q = stmt_kept(st,
                  "SELECT r.id, r.hostname, r.backend, r.mode, r.tls_cert, r.tls_key,"
                  " r.backend_tls, r.send_proxy_protocol, p.id, p.type, p.value"
                  " FROM routes r LEFT JOIN l7_policies p ON p.route_id = r.id"
                  " WHERE r.listener_id = ?1 ORDER BY r.hostname, p.position",
                  "I", listener_id);
    if (q == NULL)
        return STORE_ERROR;
    while ((rc = stmt_step(st, q)) == 1) {
        id = sqlite3_column_int64(q, 0);
        if (r == NULL || id != last_id) {
            if ((r = store_push(l->routes, l->n_routes, sizeof(*r))) == NULL) {
                rc = store_nomem(st);
                break;
            }
            l->routes = r;
            r = &r[l->n_routes++];
            last_id = id;
            rc = load_route(st, q, l->addr, r);
            if (rc != STORE_OK)
                break;
        }
        if (sqlite3_column_type(q, 8) != SQLITE_NULL && (rc = load_policy(st, q, r)) != STORE_OK)
            break;
    }
    stmt_done(st, q);
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
    stmt_done(st, q);
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
    stmt_done(st, q);
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

static bool store_route_differs(const struct route_conf *a, const struct route_conf *b)
{
    return !str_eq(a->backend, b->backend) || a->mode != b->mode ||
           !str_eq(a->tls_cert, b->tls_cert) || !str_eq(a->tls_key, b->tls_key) ||
           a->backend_tls != b->backend_tls || a->send_proxy_protocol != b->send_proxy_protocol;
}

static int store_route_cmp(const void *a, const void *b)
{
    const struct route_conf *const *x = a, *const *y = b;

    return strcmp((*x)->hostname, (*y)->hostname);
}

/* The routes of l by hostname (an array to free), NULL when out of memory. */
static const struct route_conf **routes_by_name(const struct listener_conf *l)
{
    const struct route_conf **v = malloc(((size_t)l->n_routes + 1) * sizeof(*v));

    if (v == NULL)
        return NULL;
    for (unsigned i = 0; i < l->n_routes; i++)
        v[i] = &l->routes[i];
    qsort(v, l->n_routes, sizeof(*v), store_route_cmp);
    return v;
}

/*
 * Adds the differences between the routes of a config listener and the
 * database's to *n: a merge of both sorted by hostname, since a listener
 * may have tens of thousands. store_load gives the database's in that
 * order already (SQLite's BINARY collation is strcmp's order).
 */
static int routes_diff(struct store *st, const struct listener_conf *cfg,
                       const struct listener_conf *db, unsigned *n)
{
    const struct route_conf **x = routes_by_name(cfg), *y;
    unsigned i = 0, j = 0;
    int c;

    if (x == NULL)
        return store_nomem(st);
    while (i < cfg->n_routes || j < db->n_routes) {
        if (i == cfg->n_routes)
            c = 1;
        else if (j == db->n_routes)
            c = -1;
        else
            c = strcmp(x[i]->hostname, db->routes[j].hostname);
        if (c < 0) {
            (*n)++, i++;
        } else if (c > 0) {
            (*n)++, j++;
        } else {
            y = &db->routes[j++];
            *n += store_route_differs(x[i], y) + policies_missing(x[i], y) +
                  policies_missing(y, x[i]);
            i++;
        }
    }
    free(x);
    return STORE_OK;
}

static bool listener_differs(const struct listener_conf *a, const struct listener_conf *b)
{
    return a->proxy_protocol != b->proxy_protocol || a->max_connections != b->max_connections ||
           cidrs_missing(a, b) != 0 || cidrs_missing(b, a) != 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Values of a missing from b plus those of b missing from a, both sorted;
 * a value repeated on one side and missing from the other counts each time. */
static unsigned sorted_missing(char **a, unsigned na, char **b, unsigned nb)
{
    unsigned n = 0, i = 0, j = 0;
    const char *v;
    int c;

    while (i < na || j < nb) {
        c = i == na ? 1 : j == nb ? -1 : strcmp(a[i], b[j]);
        if (c < 0) {
            n++, i++;
        } else if (c > 0) {
            n++, j++;
        } else {
            for (v = a[i]; i < na && strcmp(a[i], v) == 0; i++)
                ;
            for (; j < nb && strcmp(b[j], v) == 0; j++)
                ;
        }
    }
    return n;
}

/* Adds the firewall rules on one side only to *n, type by type, sorted and merged. */
static int rules_diff(struct store *st, const struct firewall_conf *fw, const struct state *s,
                      unsigned *n)
{
    static const enum fw_type types[] = {FW_IP, FW_CIDR, FW_COUNTRY};
    unsigned i, j, na, nb;
    char **values, **a, **b;

    for (i = 0; i < MC_ARRAY_LEN(types); i++) {
        values = store_config_rules(fw, types[i], &na);
        a = malloc(((size_t)na + s->n_rules + 1) * sizeof(*a));
        if (a == NULL)
            return store_nomem(st);
        for (j = 0; j < na; j++)
            a[j] = values[j];
        b = a + na;
        for (j = 0, nb = 0; j < s->n_rules; j++) {
            if (s->rules[j].type == types[i])
                b[nb++] = s->rules[j].value;
        }
        qsort(a, na, sizeof(*a), str_cmp);
        qsort(b, nb, sizeof(*b), str_cmp);
        *n += sorted_missing(a, na, b, nb);
        free(a);
    }
    return STORE_OK;
}

/*
 * Counts each difference once, at the outermost entry where it shows: a
 * listener on one side only is one (its routes are not counted again), a
 * listener on both with other settings is one plus its route differences;
 * likewise a route on one side only, or on both with other fields, is one,
 * plus one per policy on one side only; and one per rule on one side only.
 */
int store_config_diff(struct store *st, const struct config *cfg, const struct state *s,
                      unsigned *n_diff, const char **err)
{
    const struct listener_conf *l, *d;
    unsigned n = 0, i;
    int rc = STORE_OK;

    st->op = "compare the config with the database";
    for (i = 0; rc == STORE_OK && i < cfg->n_listeners; i++) {
        l = &cfg->listeners[i];
        if ((d = listener_conf_find(s->listeners, s->n_listeners, l->addr)) == NULL) {
            n++;
        } else {
            n += listener_differs(l, d);
            rc = routes_diff(st, l, d, &n);
        }
    }
    for (i = 0; i < s->n_listeners; i++)
        n += listener_conf_find(cfg->listeners, cfg->n_listeners, s->listeners[i].addr) == NULL;
    if (rc == STORE_OK)
        rc = rules_diff(st, &cfg->firewall, s, &n);
    if (rc == STORE_OK)
        *n_diff = n;
    return store_end(st, rc, err);
}
