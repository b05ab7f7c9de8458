/*
 * A prefix set built from untrusted rule text, one rule per line, each
 * parsed with addr_parse_cidr() as the firewall's rules are. Every rule
 * the parser accepts must be added; then lookups on addresses derived
 * from the input (each rule's address, its neighbours past the prefix,
 * the IPv4-mapped form, raw input bytes) must agree with brute force:
 * addr_cidr_contains() over every rule, longest wins, and among equal
 * prefixes the last added (which replaced the others' tags).
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "common/addr.h"
#include "common/prefix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RULES     256 /* the reference is quadratic */
#define RULE_TEXT_MAX 80  /* longer than any rule the parser accepts */

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct prefix_set *s = prefix_set_new();
    size_t n = 0, pos = 0;

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
            if (addr_parse_cidr(line, true, &rules[n], &err) == 0) {
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
    if (prefix_set_seal(s) < 0)
        goto out;
    if (prefix_set_count(s) != reference_count(n))
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        check_around(s, n, &rules[i]);
    for (pos = 0; pos + 16 <= size; pos += 16) {
        check(s, n, AF_INET, data + pos);
        check(s, n, AF_INET6, data + pos);
    }
out:
    prefix_set_free(s);
    return 0;
}
