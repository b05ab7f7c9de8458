#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "worker/route.h"

static struct route *mk(const char *hostname, const char *backend)
{
    return route_new(hostname, backend, NULL, ROUTE_L4, false, false);
}

/* tap.h's T_OK evaluates its condition twice: only pure checks go inside it. */

/* Adds a new route and drops the caller's reference: the table owns it. */
static struct route *add(struct route_table *t, const char *hostname, const char *backend)
{
    struct route *r = mk(hostname, backend);

    if (r == NULL || route_table_add(t, r) < 0) {
        route_unref(r);
        return NULL;
    }
    route_unref(r);
    return r;
}

static const char *backend_of(const struct route_table *t, const char *sni, size_t len)
{
    struct route *r = route_table_lookup(t, sni, len);

    return r ? r->backend : "(none)";
}

static bool routes_to(const struct route_table *t, const char *sni, const char *backend)
{
    return strcmp(backend_of(t, sni, strlen(sni)), backend) == 0;
}

static void test_route_new(void)
{
    struct mc_addr a = {.len = 16};
    struct route *r = route_new("WWW.Example.com.", "10.0.0.1:443", &a, ROUTE_L7, true, true);
    bool ok;

    T_OK(r != NULL && strcmp(r->hostname, "www.example.com") == 0 && r->refs == 1 &&
             strcmp(r->backend, "10.0.0.1:443") == 0 && r->backend_addr.len == 16 &&
             r->mode == ROUTE_L7 && r->backend_tls && r->send_proxy_protocol,
         "route_new: copies fields, normalises the hostname, one reference");
    route_unref(r);
    r = mk("a..b", "x");
    ok = r == NULL;
    route_unref(r);
    r = mk("192.0.2.1", "x");
    ok = ok && r == NULL;
    route_unref(r);
    T_OK(ok, "route_new: invalid hostname rejected");
}

static void test_lookup(void)
{
    struct route_table *t = route_table_new(4);
    char long_sni[300];
    size_t i;

    add(t, "example.com", "exact");
    add(t, "*.example.com", "wild");
    add(t, "www.example.com", "www");
    add(t, "*.com", "tld");

    T_OK(routes_to(t, "example.com", "exact"), "exact match");
    T_OK(routes_to(t, "ExAmPlE.CoM", "exact"), "case-insensitive");
    T_OK(routes_to(t, "example.com.", "exact"), "one trailing dot removed");
    T_OK(routes_to(t, "example.com..", "(none)"), "two trailing dots never match");
    T_OK(routes_to(t, "a.example.com", "wild"), "wildcard matches one label");
    T_OK(routes_to(t, "A.Example.Com.", "wild"), "wildcard after normalisation");
    T_OK(routes_to(t, "b.a.example.com", "(none)"), "wildcard does not match two labels");
    T_OK(routes_to(t, "www.example.com", "www"), "exact wins over wildcard");
    T_OK(routes_to(t, "other.org", "(none)"), "no match");
    T_OK(routes_to(t, "com", "(none)"), "single label without route: no match");

    T_OK(strcmp(backend_of(t, "a.example.com\0x", 15), "(none)") == 0 &&
             strcmp(backend_of(t, "example.com\0", 12), "(none)") == 0,
         "invalid: NUL inside never matches");
    T_OK(routes_to(t, "a\x1b[31m.example.com", "(none)") &&
             routes_to(t, "a\r\n.example.com", "(none)"),
         "invalid: control bytes never match");
    T_OK(routes_to(t, "a..example.com", "(none)") && routes_to(t, ".example.com", "(none)") &&
             routes_to(t, "", "(none)"),
         "invalid: empty labels never match");
    /* 254 bytes whose wildcard form would be "*.com" */
    for (i = 0; i < 250; i++)
        long_sni[i] = 'a';
    strcpy(long_sni + 250, ".com");
    T_OK(routes_to(t, long_sni, "(none)"), "invalid: 254 bytes never match");
    long_sni[63] = '\0';
    strcat(long_sni, ".com");
    T_OK(routes_to(t, long_sni, "tld"), "control: 63-byte label matches *.com");
    T_OK(routes_to(t, "192.0.2.1", "(none)") && routes_to(t, "[::1]", "(none)"),
         "invalid: IP literals never match");
    route_table_unref(t);

    t = route_table_new(1);
    add(t, "*.example.com", "wild");
    T_OK(routes_to(t, "example.com", "(none)"), "wildcard does not match its own suffix");
    route_table_unref(t);
}

static void test_replace(void)
{
    struct route_table *t = route_table_new(0);
    struct route *old = mk("example.com", "old");

    route_table_add(t, old);
    add(t, "Example.com.", "new");
    T_OK(route_table_count(t) == 1 && routes_to(t, "example.com", "new") && old->refs == 1,
         "add replaces the same hostname and drops its reference to the old route");
    route_unref(old);
    route_table_unref(t);
}

static void test_many(void)
{
    struct route_table *t = route_table_new(1);
    char name[64], want[64];
    bool added = true, found = true;
    unsigned i;

    for (i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "h%u.example.com", i);
        added = added && add(t, name, name) != NULL;
    }
    T_OK(added && route_table_count(t) == 10000, "10,000 routes added, table grew");
    for (i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "H%u.EXAMPLE.com", i);
        snprintf(want, sizeof(want), "h%u.example.com", i);
        found = found && routes_to(t, name, want);
    }
    T_OK(found, "10,000 routes all found");
    T_OK(routes_to(t, "h10000.example.com", "(none)"), "absent name among 10,000 not found");
    route_table_unref(t);
}

static void test_refcount(void)
{
    struct route_table *t = route_table_new(2);
    struct route *r;

    add(t, "example.com", "b");
    r = route_table_lookup(t, "example.com", 11);
    T_OK(r != NULL && r->refs == 1, "the table holds the only reference");
    route_ref(r);
    route_table_unref(t);
    T_OK(r->refs == 1 && strcmp(r->hostname, "example.com") == 0,
         "a ref'd route survives route_table_unref");
    route_unref(r); /* LeakSanitizer reports it if this did not free */
}

/* Removing keeps every other entry reachable, whatever the probe runs look like
 * (a small table with many collisions, then a large one). */
static void test_remove(void)
{
    char name[64];
    bool ok = true;

    for (unsigned n = 8; n <= 4000 && ok; n = n * 5) {
        struct route_table *t = route_table_new(1);
        for (unsigned i = 0; i < n; i++) {
            snprintf(name, sizeof(name), "r%u.test", i);
            ok = ok && add(t, name, name) != NULL;
        }
        for (unsigned i = 0; i < n; i += 3) { /* every third one goes */
            snprintf(name, sizeof(name), "r%u.test", i);
            ok = ok && route_table_remove(t, name) == 1 && route_table_remove(t, name) == 0;
        }
        for (unsigned i = 0; i < n; i++) {
            snprintf(name, sizeof(name), "r%u.test", i);
            ok = ok && routes_to(t, name, i % 3 == 0 ? "(none)" : name);
        }
        ok = ok && route_table_count(t) == n - (n + 2) / 3;
        for (unsigned i = 0; i < n; i += 3) { /* and come back */
            snprintf(name, sizeof(name), "r%u.test", i);
            ok = ok && add(t, name, "again") != NULL;
        }
        for (unsigned i = 0; i < n; i++) {
            snprintf(name, sizeof(name), "r%u.test", i);
            ok = ok && routes_to(t, name, i % 3 == 0 ? "again" : name);
        }
        ok = ok && route_table_count(t) == n;
        route_table_unref(t);
    }
    T_OK(ok, "remove: every third of 8..1000 routes removed and re-added, the rest still found");
    struct route_table *t = route_table_new(1);
    T_OK(route_table_remove(t, "absent.test") == 0, "remove of an absent name: 0");
    route_table_unref(t);
}

int main(void)
{
    test_route_new();
    test_lookup();
    test_replace();
    test_many();
    test_refcount();
    test_remove();
    return tap_done();
}
