/*
 * A prefix set built from untrusted rule text, one rule per line, each
 * parsed with addr_parse_cidr() as the firewall's rules are. Every rule
 * the parser accepts must be added; then lookups on addresses derived
 * from the input (each rule's address, its neighbours past the prefix,
 * the IPv4-mapped form, raw input bytes) must agree with brute force:
 * addr_cidr_contains() over every rule, longest wins, and among equal
 * prefixes the last added (which replaced the others' tags). A sealed
 * set refuses adds, as does any set a bad rule or a zero tag.
 *
 * With a line "#stride" among them, the first rule is also spread over
 * BIG_RULES neighbours in a second set, enough for sealing to
 * index that family by its top bits: every lookup must then answer as
 * the walk from the root answered before sealing. That costs thousands
 * of ordinary inputs and walks the same code whatever the rule, so a
 * process makes at most STRIDE_BUDGET of them (a crash input replayed
 * alone still makes its own).
 */
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <string.h>

#include "common/addr.h"
#include "common/prefix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RULES     256  /* the reference is quadratic */
#define RULE_TEXT_MAX 80   /* longer than any rule the parser accepts */
#define BIG_RULES     8192 /* prefix.c's PREFIX_STRIDE_MIN_RULES: sealing indexes them */
#define PROBES        1024
#define STRIDE_BUDGET 64

static struct mc_cidr rules[MAX_RULES];

static uint32_t reference_lookup(size_t n, int family, const uint8_t *ip)
{
    uint32_t best = 0;
    int best_len = -1;

    if (family == AF_INET6 && addr_ip_v4mapped(ip)) {
        family = AF_INET;
        ip += 12;
    }
    for (size_t j = 0; j < n; j++) {
        if (addr_cidr_contains(&rules[j], family, ip) && rules[j].prefix >= best_len) {
            best = (uint32_t)j + 1;
            best_len = rules[j].prefix;
        }
    }
    return best;
}

static size_t reference_count(size_t n)
{
    size_t distinct = 0;

    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i &&
               !(rules[j].family == rules[i].family && rules[j].prefix == rules[i].prefix &&
                 memcmp(rules[j].addr, rules[i].addr, sizeof(rules[i].addr)) == 0))
            j++;
        distinct += j == i;
    }
    return distinct;
}

static void check(const struct prefix_set *s, size_t n, int family, const uint8_t *ip)
{
    if (prefix_set_lookup(s, family, ip) != reference_lookup(n, family, ip))
        __builtin_trap();
}

/* The rule's own address, the addresses just past its prefix and at its
 * end, and the same as IPv4-mapped IPv6 for an IPv4 rule. */
static void check_around(const struct prefix_set *s, size_t n, const struct mc_cidr *c)
{
    unsigned bits = c->family == AF_INET ? 32 : 128;
    uint8_t ip[16], m[16] = {[10] = 0xff, [11] = 0xff};

    memcpy(ip, c->addr, sizeof(ip));
    for (int k = 0; k < 3; k++) {
        check(s, n, c->family, ip);
        if (c->family == AF_INET) {
            memcpy(m + 12, ip, 4);
            check(s, n, AF_INET6, m);
        }
        if (k == 0 && c->prefix < bits)
            ip[c->prefix / 8] ^= (uint8_t)(0x80 >> (c->prefix % 8));
        else
            ip[bits / 8 - 1] ^= 1;
    }
}

/* Neighbour j of c: j in the bits below a prefix lengthened to hold it. */
static struct mc_cidr spread(const struct mc_cidr *c, uint32_t j)
{
    struct mc_cidr d = *c;
    int at = d.family == AF_INET ? 1 : 4; /* bytes at..at+1 get j */

    if (d.prefix < (at + 2) * 8)
        d.prefix = (uint8_t)((at + 2) * 8);
    d.addr[at] = (uint8_t)(j >> 8);
    d.addr[at + 1] = (uint8_t)j;
    return d;
}

/* The big set of "#stride": the same answers before and after sealing. */
static void check_stride(const struct mc_cidr *first)
{
    static uint32_t before[PROBES];
    struct prefix_set *s = prefix_set_new();

    if (s == NULL)
        return;
    for (uint32_t j = 0; j < BIG_RULES; j++) {
        struct mc_cidr d = spread(first, j);
        if (prefix_set_add(s, &d, j + 1) < 0)
            goto out; /* ENOMEM */
    }
    for (uint32_t j = 0; j < PROBES; j++) {
        struct mc_cidr d = spread(first, j * 11 + 3); /* some past the rules, at 65535 */
        before[j] = prefix_set_lookup(s, d.family, d.addr);
    }
    if (prefix_set_seal(s) < 0)
        goto out;
    for (uint32_t j = 0; j < PROBES; j++) {
        struct mc_cidr d = spread(first, j * 11 + 3);
        if (prefix_set_lookup(s, d.family, d.addr) != before[j])
            __builtin_trap();
    }
    if (prefix_set_memory(s) < prefix_set_count(s) * 32)
        __builtin_trap(); /* a node per rule at least */
out:
    prefix_set_free(s);
}

/* What the set must refuse, leaving it as it was. */
static void check_refusals(struct prefix_set *s, size_t n, bool sealed)
{
    struct mc_cidr bad = n > 0 ? rules[0] : (struct mc_cidr){.family = AF_INET};
    size_t count = prefix_set_count(s);

    if (prefix_set_add(s, &bad, 0) == 0 || errno != EINVAL)
        __builtin_trap(); /* a zero tag */
    bad.prefix = 129;
    if (prefix_set_add(s, &bad, 1) == 0 || errno != EINVAL)
        __builtin_trap();
    bad.family = AF_UNIX;
    bad.prefix = 0;
    if (prefix_set_add(s, &bad, 1) == 0 || errno != EINVAL)
        __builtin_trap();
    if (sealed && n > 0 && (prefix_set_add(s, &rules[0], 1) == 0 || errno != EPERM))
        __builtin_trap();
    if (prefix_set_count(s) != count || prefix_set_lookup(s, AF_UNIX, rules[0].addr) != 0 ||
        prefix_set_lookup(NULL, AF_INET, rules[0].addr) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned strides; /* stride checks made by this process */
    struct prefix_set *s = prefix_set_new();
    size_t n = 0, pos = 0;
    bool stride = false;

    if (s == NULL)
        return 0;
    while (pos < size && n < MAX_RULES) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - data - pos) : size - pos;
        char line[RULE_TEXT_MAX];
        const char *err;

        if (len < sizeof(line)) {
            memcpy(line, data + pos, len);
            line[len] = '\0';
            if (strcmp(line, "#stride") == 0)
                stride = true;
            else if (addr_parse_cidr(line, true, &rules[n], &err) == 0) {
                if (prefix_set_add(s, &rules[n], (uint32_t)n + 1) < 0) {
                    if (errno != ENOMEM)
                        __builtin_trap(); /* a rule the parser accepted */
                    goto out;
                }
                n++;
            }
        }
        pos += len + 1;
    }
    check_refusals(s, n, false);
    if (prefix_set_seal(s) < 0)
        goto out;
    check_refusals(s, n, true);
    if (prefix_set_count(s) != reference_count(n))
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        check_around(s, n, &rules[i]);
    for (pos = 0; pos + 16 <= size; pos += 16) {
        check(s, n, AF_INET, data + pos);
        check(s, n, AF_INET6, data + pos);
    }
    if (stride && n > 0 && strides < STRIDE_BUDGET) {
        strides++;
        check_stride(&rules[0]);
    }
out:
    prefix_set_free(s);
    return 0;
}
