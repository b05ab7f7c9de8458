/*
 * Routes and per-listener route tables.
 *
 * A table is an open-addressing hash (linear probing) over a power-of-two
 * array of route pointers, at most half full; a removal shifts the probe
 * run back (no tombstones), so a delta generation can change a table in
 * place. The hash is SipHash-1-3 with
 * a random key per table, so clients cannot aim SNIs at long probe runs.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/hostname.h"
#include "common/siphash.h"
#include "worker/route.h"
#include "worker/route_l7.h"

#define ROUTE_TABLE_MIN 8u

struct route_table {
    unsigned refs;
    struct route **slots;
    size_t mask; /* number of slots - 1 */
    unsigned count;
    uint64_t key[2];
};

struct route *route_new(const char *hostname, const char *backend,
                        const struct mc_addr *backend_addr, enum route_mode mode, bool backend_tls,
                        bool send_proxy_protocol)
{
    char name[MC_HOSTNAME_MAX + 1];
    size_t hlen, blen;
    struct route *r;
    int n;

    /* lookups compare normalised names, so store nothing else */
    if ((n = hostname_normalize_pattern(hostname, strlen(hostname), name)) < 0)
        return NULL;
    hlen = (size_t)n + 1;
    blen = strlen(backend) + 1;
    /* one block, the strings after the struct: a worker holds one per route */
    r = calloc(1, sizeof(*r) + hlen + blen);
    if (r == NULL)
        return NULL;
    r->hostname = memcpy((char *)(r + 1), name, hlen);
    r->backend = memcpy(r->hostname + hlen, backend, blen);
    r->refs = 1;
    if (backend_addr != NULL)
        r->backend_addr = *backend_addr;
    r->mode = mode;
    r->backend_tls = backend_tls;
    r->send_proxy_protocol = send_proxy_protocol;
    return r;
}

struct route *route_ref(struct route *r)
{
    r->refs++;
    return r;
}

void route_unref(struct route *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    route_l7_free(r->l7);
    free(r);
}

/* The slot holding name, or the empty slot where it would go. */
static size_t route_table_slot(const struct route_table *t, const char *name, size_t len)
{
    size_t i = (size_t)siphash13(t->key, name, len) & t->mask;

    while (t->slots[i] != NULL && strcmp(t->slots[i]->hostname, name) != 0)
        i = (i + 1) & t->mask;
    return i;
}

static size_t route_table_size_for(size_t n)
{
    size_t size = ROUTE_TABLE_MIN;

    while (size < 2 * n)
        size *= 2;
    return size;
}

struct route_table *route_table_new(unsigned expected)
{
    struct route_table *t = calloc(1, sizeof(*t));
    size_t size = route_table_size_for(expected);

    if (t == NULL)
        return NULL;
    t->slots = calloc(size, sizeof(*t->slots));
    if (t->slots == NULL || getrandom(t->key, sizeof(t->key), 0) != sizeof(t->key)) {
        free(t->slots);
        free(t);
        return NULL;
    }
    t->mask = size - 1;
    t->refs = 1;
    return t;
}

struct route_table *route_table_ref(struct route_table *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void route_table_unref(struct route_table *t)
{
    size_t i;

    if (t == NULL || --t->refs > 0)
        return;
    for (i = 0; i <= t->mask; i++)
        route_unref(t->slots[i]);
    free(t->slots);
    free(t);
}

static int route_table_grow(struct route_table *t)
{
    size_t size = (t->mask + 1) * 2, i;
    struct route **old = t->slots;
    size_t old_size = t->mask + 1;
    struct route *r;

    t->slots = calloc(size, sizeof(*t->slots));
    if (t->slots == NULL) {
        t->slots = old;
        return -1;
    }
    t->mask = size - 1;
    for (i = 0; i < old_size; i++) {
        r = old[i];
        if (r != NULL)
            t->slots[route_table_slot(t, r->hostname, strlen(r->hostname))] = r;
    }
    free(old);
    return 0;
}

int route_table_add(struct route_table *t, struct route *r)
{
    size_t len = strlen(r->hostname), i = route_table_slot(t, r->hostname, len);

    if (t->slots[i] != NULL) {
        route_unref(t->slots[i]);
        t->slots[i] = route_ref(r);
        return 0;
    }
    if (2 * ((size_t)t->count + 1) > t->mask + 1) {
        if (route_table_grow(t) < 0)
            return -1;
        i = route_table_slot(t, r->hostname, len);
    }
    t->slots[i] = route_ref(r);
    t->count++;
    return 0;
}

/*
 * Linear probing without tombstones: after emptying a slot, entries further
 * along the same run move back into the hole when their home slot is not
 * between the hole and where they sit (backward-shift deletion).
 */
int route_table_remove(struct route_table *t, const char *hostname)
{
    size_t hole = route_table_slot(t, hostname, strlen(hostname));

    if (t->slots[hole] == NULL)
        return 0;
    route_unref(t->slots[hole]);
    t->slots[hole] = NULL;
    t->count--;
    for (size_t i = (hole + 1) & t->mask; t->slots[i] != NULL; i = (i + 1) & t->mask) {
        const char *name = t->slots[i]->hostname;
        size_t home = (size_t)siphash13(t->key, name, strlen(name)) & t->mask;
        /* stays if its home lies cyclically in (hole, i] */
        if (((i - home) & t->mask) < ((i - hole) & t->mask))
            continue;
        t->slots[hole] = t->slots[i];
        t->slots[i] = NULL;
        hole = i;
    }
    return 1;
}

unsigned route_table_count(const struct route_table *t)
{
    return t->count;
}

struct route *route_table_lookup(const struct route_table *t, const char *sni, size_t len)
{
    char name[MC_HOSTNAME_MAX + 1], wild[MC_HOSTNAME_MAX + 1];
    const char *dot;
    size_t i, wlen;
    int n;

    n = hostname_normalize(sni, len, name);
    if (n < 0)
        return NULL;
    i = route_table_slot(t, name, (size_t)n);
    if (t->slots[i] != NULL)
        return t->slots[i];

    /* "*." + the name minus its first label: one label deep, no more */
    dot = memchr(name, '.', (size_t)n);
    if (dot == NULL)
        return NULL;
    wlen = (size_t)(name + n - dot) + 1;
    wild[0] = '*';
    memcpy(wild + 1, dot, wlen); /* with the NUL; fits, the first label is >= 1 byte */
    i = route_table_slot(t, wild, wlen);
    return t->slots[i];
}
