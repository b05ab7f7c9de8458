/* Unit tests for common/addr.c: one table per parser, one line per row. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "common/addr.h"
#include "common/mc.h"
#include "tap.h"

/* For accepted rows, `want` is what addr_format() prints back. */
struct hostport_case {
    const char *in;
    const char *want;
};

static const struct hostport_case hostport_cases[] = {
    {"127.0.0.1:3000", "127.0.0.1:3000"},
    {"10.1.2.3:1", "10.1.2.3:1"},
    {"192.0.2.1:65535", "192.0.2.1:65535"},
    {"[::1]:443", "[::1]:443"},
    {"[2001:DB8::1]:8443", "[2001:db8::1]:8443"},
    {"[::ffff:192.0.2.1]:80", "[::ffff:192.0.2.1]:80"},
    {"127.0.0.1", NULL},
    {"127.0.0.1:", NULL},
    {"127.0.0.1:0", NULL},
    {"127.0.0.1:65536", NULL},
    {"127.0.0.1:123456", NULL},
    {"127.0.0.1:+80", NULL},
    {"127.0.0.1:80 ", NULL},
    {" 127.0.0.1:80", NULL},
    {"127.0.0.1:80x", NULL},
    {"127.0.0.1:8_0", NULL},
    {"127.1:80", NULL},
    {"256.0.0.1:80", NULL},
    {"127.0.0.01:80", NULL},
    {"localhost:80", NULL},
    {"example.com:443", NULL},
    {":443", NULL},
    {"[::1]", NULL},
    {"[::1]443", NULL},
    {"[::1]:", NULL},
    {"[::1]:0", NULL},
    {"[127.0.0.1]:80", NULL},
    {"[fe80::1%eth0]:80", NULL},
    {"[::1:80", NULL},
    {"[]:80", NULL},
    {"::1:80", NULL},
    {"2001:db8::1:443", NULL},
    {"", NULL},
};

static void test_hostport(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(hostport_cases); i++) {
        const struct hostport_case *c = &hostport_cases[i];
        struct mc_addr a;
        const char *err = NULL;
        char buf[ADDR_STRLEN];
        int rc = addr_parse_hostport(c->in, &a, &err);

        if (c->want != NULL)
            T_OK(rc == 0 && strcmp(addr_format(&a, buf, sizeof(buf)), c->want) == 0,
                 "hostport: \"%s\" -> %s", c->in, c->want);
        else
            T_OK(rc == -1 && err != NULL && err[0] != '\0', "hostport: \"%s\" rejected (%s)", c->in,
                 err ? err : "no message");
    }
}

struct bind_case {
    const char *in;
    const char *want; /* addr_format() of the bind address; NULL = rejected */
    bool dual_stack;
    bool v6only;
};

static const struct bind_case bind_cases[] = {
    {":443", "[::]:443", true, false},
    {"0.0.0.0:443", "0.0.0.0:443", false, false},
    {"[::]:443", "[::]:443", false, true},
    {"127.0.0.1:8443", "127.0.0.1:8443", false, false},
    {"[::1]:8443", "[::1]:8443", false, true},
    {":0", NULL, false, false},
    {":", NULL, false, false},
    {"443", NULL, false, false},
    {":443x", NULL, false, false},
    {"*:443", NULL, false, false},
    {"[::]", NULL, false, false},
    {":::443", NULL, false, false},
};

static void test_bind(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(bind_cases); i++) {
        const struct bind_case *c = &bind_cases[i];
        struct mc_bind b;
        const char *err = NULL;
        char buf[ADDR_STRLEN];
        int rc = addr_parse_bind(c->in, &b, &err);

        if (c->want != NULL)
            T_OK(rc == 0 && strcmp(addr_format(&b.addr, buf, sizeof(buf)), c->want) == 0 &&
                     b.dual_stack == c->dual_stack && b.v6only == c->v6only,
                 "bind: \"%s\" -> %s dual_stack=%d v6only=%d", c->in, c->want, c->dual_stack,
                 c->v6only);
        else
            T_OK(rc == -1 && err != NULL, "bind: \"%s\" rejected (%s)", c->in,
                 err ? err : "no message");
    }
}

struct cidr_case {
    const char *in;
    bool allow_bare;
    int family; /* 0 = rejected */
    unsigned prefix;
};

static const struct cidr_case cidr_cases[] = {
    {"10.0.0.0/8", false, AF_INET, 8},
    {"0.0.0.0/0", false, AF_INET, 0},
    {"192.0.2.1/32", false, AF_INET, 32},
    {"2001:db8::/32", false, AF_INET6, 32},
    {"::/0", false, AF_INET6, 0},
    {"::1/128", false, AF_INET6, 128},
    {"192.0.2.7", true, AF_INET, 32},
    {"2001:db8::7", true, AF_INET6, 128},
    {"192.0.2.7", false, 0, 0},
    {"10.0.0.1/8", false, 0, 0},
    {"2001:db8::1/32", false, 0, 0},
    {"10.0.0.0/33", false, 0, 0},
    {"::/129", false, 0, 0},
    {"10.0.0.0/", false, 0, 0},
    {"10.0.0.0/08", false, 0, 0},
    {"10.0.0.0/-8", false, 0, 0},
    {"10.0.0.0/8 ", false, 0, 0},
    {"10.0.0.0/8/8", false, 0, 0},
    {"10.0.0/8", false, 0, 0},
    {"/8", false, 0, 0},
    {"[::1]/128", false, 0, 0},
    {"example.com/8", false, 0, 0},
};

static void test_cidr(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(cidr_cases); i++) {
        const struct cidr_case *c = &cidr_cases[i];
        struct mc_cidr r;
        const char *err = NULL;
        int rc = addr_parse_cidr(c->in, c->allow_bare, &r, &err);

        if (c->family != 0)
            T_OK(rc == 0 && r.family == c->family && r.prefix == c->prefix,
                 "cidr: \"%s\" (bare %d) -> /%u", c->in, c->allow_bare, c->prefix);
        else
            T_OK(rc == -1 && err != NULL, "cidr: \"%s\" (bare %d) rejected (%s)", c->in,
                 c->allow_bare, err ? err : "no message");
    }
}

struct contains_case {
    const char *cidr;
    const char *ip;
    bool want;
};

static const struct contains_case contains_cases[] = {
    {"10.0.0.0/8", "10.255.1.2", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"192.0.2.128/25", "192.0.2.200", true},
    {"192.0.2.128/25", "192.0.2.127", false},
    {"0.0.0.0/0", "203.0.113.9", true},
    {"192.0.2.1/32", "192.0.2.1", true},
    {"192.0.2.1/32", "192.0.2.2", false},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"2001:db8::/33", "2001:db8:8000::1", false},
    {"::/0", "::1", true},
    {"10.0.0.0/8", "::ffff:10.0.0.1", false},
    {"::/0", "10.0.0.1", false},
};

static void test_contains(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(contains_cases); i++) {
        const struct contains_case *c = &contains_cases[i];
        struct mc_cidr r;
        const char *err;
        uint8_t ip[16];
        int family = strchr(c->ip, ':') ? AF_INET6 : AF_INET;
        bool ok =
            addr_parse_cidr(c->cidr, false, &r, &err) == 0 && inet_pton(family, c->ip, ip) == 1;

        T_OK(ok && addr_cidr_contains(&r, family, ip) == c->want, "contains: %s %s %s", c->cidr,
             c->want ? "holds" : "does not hold", c->ip);
    }
}

static void test_unmap_and_format(void)
{
    struct mc_addr a;
    const char *err;
    char buf[ADDR_STRLEN];

    addr_parse_hostport("[::ffff:192.0.2.1]:8080", &a, &err);
    addr_unmap(&a);
    T_OK(a.ss.ss_family == AF_INET && a.len == sizeof(struct sockaddr_in) &&
             strcmp(addr_format(&a, buf, sizeof(buf)), "192.0.2.1:8080") == 0,
         "unmap: [::ffff:192.0.2.1]:8080 -> 192.0.2.1:8080");

    addr_parse_hostport("[2001:db8::1]:443", &a, &err);
    addr_unmap(&a);
    T_OK(a.ss.ss_family == AF_INET6 &&
             strcmp(addr_format(&a, buf, sizeof(buf)), "[2001:db8::1]:443") == 0,
         "unmap: a plain IPv6 address is left alone");

    addr_parse_hostport("192.0.2.1:80", &a, &err);
    addr_unmap(&a);
    T_OK(a.ss.ss_family == AF_INET &&
             strcmp(addr_format(&a, buf, sizeof(buf)), "192.0.2.1:80") == 0,
         "unmap: an IPv4 address is left alone");

    addr_parse_hostport("[2001:db8::1]:443", &a, &err);
    T_OK(strcmp(addr_format_ip(&a, buf, sizeof(buf)), "2001:db8::1") == 0,
         "format_ip: IPv6 without brackets or port");
    addr_parse_hostport("192.0.2.1:80", &a, &err);
    T_OK(strcmp(addr_format_ip(&a, buf, sizeof(buf)), "192.0.2.1") == 0,
         "format_ip: IPv4 without port");

    addr_parse_hostport("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", &a, &err);
    T_OK(strcmp(addr_format(&a, buf, sizeof(buf)),
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535") == 0,
         "format: the longest address fits in ADDR_STRLEN");

    memset(&a, 0, sizeof(a));
    T_OK(strcmp(addr_format(&a, buf, sizeof(buf)), "?") == 0, "format: an empty address prints ?");
}

static void test_v4mapped(void)
{
    static const struct {
        const char *ip;
        bool mapped;
    } cases[] = {
        {"::ffff:192.0.2.1", true},  {"::ffff:0.0.0.0", true},     {"::192.0.2.1", false},
        {"::fffe:192.0.2.1", false}, {"1::ffff:192.0.2.1", false}, {"::1", false},
    };

    for (size_t i = 0; i < MC_ARRAY_LEN(cases); i++) {
        uint8_t ip[16];
        T_OK(inet_pton(AF_INET6, cases[i].ip, ip) == 1 && addr_ip_v4mapped(ip) == cases[i].mapped,
             "v4mapped: %s -> %s", cases[i].ip, cases[i].mapped ? "mapped" : "not mapped");
    }
}

int main(void)
{
    test_hostport();
    test_bind();
    test_cidr();
    test_contains();
    test_unmap_and_format();
    test_v4mapped();
    return tap_done();
}
