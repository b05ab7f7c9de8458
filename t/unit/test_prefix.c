/*
 * Unit tests for common/prefix.c: a table of edge cases, then 100,000
 * random rules checked against a brute-force reference on 100,000
 * addresses, with the build time, memory and lookup cost printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/addr.h"
#include "common/mc.h"
#include "common/prefix.h"
#include "tap.h"

struct rule_case {
    const char *cidr; /* a bare address is a full-length prefix */
    uint32_t tag;
};

struct lookup_case {
    const char *ip;
    uint32_t want;
};

struct set_case {
    const char *name;
    struct rule_case rules[6];
    size_t count; /* distinct prefixes */
    struct lookup_case lookups[8];
};

static const struct set_case set_cases[] = {
    {"empty set", {{NULL, 0}}, 0, {{"1.2.3.4", 0}, {"::1", 0}, {"::ffff:1.2.3.4", 0}}},
    {"IPv4 /0 matches all of IPv4, no IPv6",
     {{"0.0.0.0/0", 1}},
     1,
     {{"1.2.3.4", 1}, {"255.255.255.255", 1}, {"0.0.0.0", 1}, {"::1", 0}, {"::ffff:1.2.3.4", 1}}},
    {"IPv6 /0 matches all of IPv6, no IPv4",
     {{"::/0", 1}},
     1,
     {{"::1", 1}, {"2001:db8::1", 1}, {"1.2.3.4", 0}, {"::ffff:1.2.3.4", 0}}},
    {"/32 matches its host only",
     {{"192.0.2.1", 5}},
     1,
     {{"192.0.2.1", 5}, {"192.0.2.0", 0}, {"192.0.2.2", 0}, {"::ffff:192.0.2.1", 5}}},
    {"/128 matches its host only",
     {{"2001:db8::1", 5}},
     1,
     {{"2001:db8::1", 5}, {"2001:db8::", 0}, {"2001:db8::2", 0}, {"2001:db8::1:1", 0}}},
    {"nested IPv4, shortest added first: longest wins",
     {{"10.0.0.0/8", 1}, {"10.1.0.0/16", 2}, {"10.1.2.0/24", 3}, {"10.1.2.3", 4}},
     4,
     {{"10.1.2.3", 4},
      {"10.1.2.4", 3},
      {"10.1.3.1", 2},
      {"10.2.0.0", 1},
      {"11.0.0.0", 0},
      {"9.255.255.255", 0}}},
    {"nested IPv4, longest added first: longest wins",
     {{"10.1.2.3", 4}, {"10.1.2.0/24", 3}, {"10.1.0.0/16", 2}, {"10.0.0.0/8", 1}},
     4,
     {{"10.1.2.3", 4}, {"10.1.2.4", 3}, {"10.1.3.1", 2}, {"10.2.0.0", 1}, {"11.0.0.0", 0}}},
    {"siblings and a branch point between them",
     {{"192.0.2.0/25", 1}, {"192.0.2.128/25", 2}, {"192.0.2.64/26", 3}, {"192.0.3.0/24", 4}},
     4,
     {{"192.0.2.1", 1},
      {"192.0.2.64", 3},
      {"192.0.2.127", 3},
      {"192.0.2.128", 2},
      {"192.0.3.9", 4},
      {"192.0.4.0", 0}}},
    {"nested IPv6 across the 64-bit word boundary",
     {{"2001:db8::/63", 1},
      {"2001:db8:0:1::/64", 2},
      {"2001:db8:0:1:8000::/65", 3},
      {"2001:db8::/127", 4},
      {"2001:db8::/32", 5}},
     5,
     {{"2001:db8::1", 4},
      {"2001:db8::2", 1},
      {"2001:db8:0:1::1", 2},
      {"2001:db8:0:1:8000::1", 3},
      {"2001:db8:0:2::", 5},
      {"2001:db9::", 0}}},
    {"IPv4 and IPv6 with the same leading bits stay apart",
     {{"10.0.0.0/8", 1}, {"a00::/8", 2}},
     2,
     {{"10.0.0.1", 1}, {"a00::1", 2}, {"::a00:1", 0}, {"::ffff:10.0.0.1", 1}, {"11.0.0.1", 0}}},
    {"a mapped address is looked up as IPv4, not in ::ffff:0:0/96",
     {{"::ffff:0:0/96", 1}, {"10.0.0.0/8", 2}},
     2,
     {{"::ffff:10.0.0.1", 2}, {"::ffff:11.0.0.1", 0}, {"11.0.0.1", 0}, {"::fffe:0:1", 0}}},
    {"re-adding a prefix replaces its tag",
     {{"10.0.0.0/8", 1}, {"2001:db8::/32", 2}, {"10.0.0.0/8", 7}, {"2001:db8::/32", 8}},
     2,
     {{"10.0.0.1", 7}, {"2001:db8::1", 8}}},
    {"a rule on a branch point is counted once",
     {{"10.0.0.0/16", 1}, {"10.1.128.0/17", 2}, {"10.0.0.0/15", 3}, {"10.0.0.0/15", 4}},
     3,
     {{"10.0.0.1", 1}, {"10.1.128.1", 2}, {"10.1.0.1", 4}, {"10.2.0.0", 0}}},
};

static void parse_ip(const char *s, int *family, uint8_t ip[16])
{
    *family = strchr(s, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(*family, s, ip) != 1)
        abort(); /* a typo in the table */
}

#define FILLER_RULES 8192 /* per family: enough for prefix_set_seal() to index it */

/* Rules no table address falls in: 198.18.0.0/15 as /28s, 3fff:0:0:N::/64. */
static bool add_filler(struct prefix_set *s)
{
    for (uint32_t i = 0; i < FILLER_RULES; i++) {
        struct mc_cidr v4 = {
            AF_INET, {198, (uint8_t)(18 + (i >> 12)), (uint8_t)(i >> 4), (uint8_t)(i << 4)}, 28};
        struct mc_cidr v6 = {AF_INET6, {0x3f, 0xff, [6] = (uint8_t)(i >> 8), [7] = (uint8_t)i}, 64};

        if (prefix_set_add(s, &v4, 1000 + i) < 0 || prefix_set_add(s, &v6, 1000 + i) < 0)
            return false;
    }
    return true;
}

/* Each case alone, then among filler rules, which makes the seal index
 * both families by their top bits (the path big rule sets take). */
static void test_table(bool filler)
{
    const char *how = filler ? " (indexed)" : "";

    for (size_t i = 0; i < MC_ARRAY_LEN(set_cases); i++) {
        const struct set_case *c = &set_cases[i];
        struct prefix_set *s = prefix_set_new();
        size_t want_count = c->count + (filler ? 2 * FILLER_RULES : 0);
        bool added = s != NULL && (!filler || add_filler(s));

        for (size_t j = 0; added && j < MC_ARRAY_LEN(c->rules) && c->rules[j].cidr; j++) {
            struct mc_cidr r;
            const char *err;

            added = addr_parse_cidr(c->rules[j].cidr, true, &r, &err) == 0 &&
                    prefix_set_add(s, &r, c->rules[j].tag) == 0;
        }
        /* sealing twice must neither leak nor change an answer */
        added = added && prefix_set_seal(s) == 0 && (!filler || prefix_set_seal(s) == 0);
        T_OK(added && prefix_set_count(s) == want_count, "%s%s: %zu prefixes", c->name, how,
             want_count);
        for (size_t j = 0; added && j < MC_ARRAY_LEN(c->lookups) && c->lookups[j].ip; j++) {
            const struct lookup_case *l = &c->lookups[j];
            uint8_t ip[16];
            int family;
            uint32_t got;

            parse_ip(l->ip, &family, ip);
            got = prefix_set_lookup(s, family, ip);
            T_OK(got == l->want, "%s%s: %s -> %u (got %u)", c->name, how, l->ip, l->want, got);
        }
        prefix_set_free(s);
    }
}

static void test_bad_adds(void)
{
    struct prefix_set *s = prefix_set_new();
    struct mc_cidr c = {.family = AF_INET, .addr = {10, 1, 2, 3}, .prefix = 8};
    uint8_t ip[16] = {10, 9, 9, 9};

    if (s == NULL)
        abort();
    T_OK(prefix_set_add(s, &c, 1) == 0 && prefix_set_lookup(s, AF_INET, ip) == 1,
         "host bits past the prefix are ignored");
    c.prefix = 33;
    T_OK(prefix_set_add(s, &c, 2) == -1 && errno == EINVAL, "IPv4 /33 rejected");
    c.family = AF_INET6;
    c.prefix = 129;
    T_OK(prefix_set_add(s, &c, 2) == -1 && errno == EINVAL, "IPv6 /129 rejected");
    c.family = AF_UNIX;
    c.prefix = 0;
    T_OK(prefix_set_add(s, &c, 2) == -1 && errno == EINVAL, "family AF_UNIX rejected");
    c.family = AF_INET;
    c.prefix = 16;
    T_OK(prefix_set_add(s, &c, 0) == -1 && errno == EINVAL, "tag 0 rejected");
    T_OK(prefix_set_count(s) == 1 && prefix_set_lookup(s, AF_INET, ip) == 1,
         "rejected adds change nothing");
    T_OK(prefix_set_seal(s) == 0 && prefix_set_add(s, &c, 2) == -1 && errno == EPERM,
         "no add after seal");
    T_OK(prefix_set_lookup(s, AF_UNIX, ip) == 0, "lookup of family AF_UNIX -> 0");
    T_OK(prefix_set_lookup(NULL, AF_INET, ip) == 0, "lookup in no set -> 0");
    prefix_set_free(s);
    prefix_set_free(NULL);
}

/* xorshift64*: a fixed sequence, so a failure can be replayed */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void random_bits(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* Sets the bits of ip from bit `from` on to random values. */
static void randomize_from(uint8_t ip[16], unsigned from, unsigned bits)
{
    for (unsigned i = from; i < bits; i++) {
        uint8_t m = (uint8_t)(0x80 >> (i % 8));
        ip[i / 8] = (uint8_t)((rnd() & 1) ? ip[i / 8] | m : ip[i / 8] & ~m);
    }
}

#define RANDOM_RULES   100000
#define RANDOM_LOOKUPS 100000

static struct mc_cidr rules[RANDOM_RULES];

/* Rule indices by family and first byte: every random rule is /8 or
 * longer, so a rule containing an address shares its first byte and the
 * reference below still checks every rule that could match. */
static uint32_t *bucket[2][256];
static size_t bucket_len[2][256];

static int fam_index(int family)
{
    return family == AF_INET6;
}

static void random_rule(size_t i, struct mc_cidr *c)
{
    unsigned bits;

    /* a quarter extend an earlier rule, so IPv6 rules nest too */
    if (i > 0 && rnd() % 4 == 0) {
        *c = rules[rnd() % i];
        bits = c->family == AF_INET ? 32 : 128;
        unsigned len = c->prefix + 1 + (unsigned)(rnd() % 8);
        len = MC_MIN(len, bits);
        randomize_from(c->addr, c->prefix, len);
        c->prefix = (uint8_t)len;
        return;
    }
    memset(c, 0, sizeof(*c));
    c->family = rnd() % 2 ? AF_INET : AF_INET6;
    bits = c->family == AF_INET ? 32 : 128;
    c->prefix = (uint8_t)(c->family == AF_INET ? 8 + rnd() % 25 : 16 + rnd() % 113);
    random_bits(c->addr, bits / 8);
    for (unsigned b = c->prefix; b < bits; b++)
        c->addr[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
}

/* Brute force: the longest rule containing ip; among equal prefixes the
 * last added (which replaced the others' tags). Tag = index + 1. */
static uint32_t reference_lookup(int family, const uint8_t *ip)
{
    int f = fam_index(family);
    uint32_t best = 0;
    int best_len = -1;

    for (size_t j = 0; j < bucket_len[f][ip[0]]; j++) {
        uint32_t r = bucket[f][ip[0]][j];
        if (addr_cidr_contains(&rules[r], family, ip) && rules[r].prefix >= best_len) {
            best = r + 1;
            best_len = rules[r].prefix;
        }
    }
    return best;
}

static int cidr_cmp(const void *a, const void *b)
{
    const struct mc_cidr *x = a, *y = b;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    if (x->prefix != y->prefix)
        return x->prefix < y->prefix ? -1 : 1;
    return memcmp(x->addr, y->addr, sizeof(x->addr));
}

static size_t distinct_rules(void)
{
    struct mc_cidr *sorted = malloc(sizeof(rules));
    size_t n = 0;

    if (sorted == NULL)
        abort();
    memcpy(sorted, rules, sizeof(rules));
    qsort(sorted, RANDOM_RULES, sizeof(*sorted), cidr_cmp);
    for (size_t i = 0; i < RANDOM_RULES; i++)
        n += i == 0 || cidr_cmp(&sorted[i - 1], &sorted[i]) != 0;
    free(sorted);
    return n;
}

/* CPU time: what the work costs, whatever else the machine runs. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct probe {
    int family;
    uint8_t ip[16];
};

static void test_random(void)
{
    static struct probe probes[RANDOM_LOOKUPS];
    struct prefix_set *s;
    size_t mismatches = 0, mapped_mismatches = 0, hits = 0, timed_hits = 0, distinct, mem;
    double t0, build_ms, lookup_ns;
    bool built = true;

    for (size_t i = 0; i < RANDOM_RULES; i++) {
        random_rule(i, &rules[i]);
        bucket_len[fam_index(rules[i].family)][rules[i].addr[0]]++;
    }
    for (int f = 0; f < 2; f++) {
        for (int b = 0; b < 256; b++) {
            bucket[f][b] = malloc((bucket_len[f][b] + 1) * sizeof(uint32_t));
            if (bucket[f][b] == NULL)
                abort();
            bucket_len[f][b] = 0;
        }
    }
    for (uint32_t i = 0; i < RANDOM_RULES; i++) {
        int f = fam_index(rules[i].family);
        bucket[f][rules[i].addr[0]][bucket_len[f][rules[i].addr[0]]++] = i;
    }

    t0 = now_ms();
    s = prefix_set_new();
    for (size_t i = 0; s != NULL && built && i < RANDOM_RULES; i++)
        built = prefix_set_add(s, &rules[i], (uint32_t)i + 1) == 0;
    built = s != NULL && built && prefix_set_seal(s) == 0;
    build_ms = now_ms() - t0;
    if (!built)
        abort();
    distinct = distinct_rules();
    mem = prefix_set_memory(s);
    T_OK(prefix_set_count(s) == distinct, "random: %d rules, %zu distinct prefixes", RANDOM_RULES,
         distinct);
    T_OK(mem <= 128 * prefix_set_count(s) + 100, "random: %zu bytes, at most 128 per rule + 100",
         mem);

    /* half anywhere, half inside a rule (so mostly inside nested rules) */
    for (size_t i = 0; i < RANDOM_LOOKUPS; i++) {
        struct probe *p = &probes[i];
        memset(p, 0, sizeof(*p));
        if (i % 2 == 0) {
            p->family = rnd() % 2 ? AF_INET : AF_INET6;
            random_bits(p->ip, p->family == AF_INET ? 4 : 16);
        } else {
            const struct mc_cidr *c = &rules[rnd() % RANDOM_RULES];
            p->family = c->family;
            memcpy(p->ip, c->addr, sizeof(p->ip));
            randomize_from(p->ip, c->prefix, c->family == AF_INET ? 32 : 128);
        }
    }
    for (size_t i = 0; i < RANDOM_LOOKUPS; i++) {
        const struct probe *p = &probes[i];
        uint32_t want = reference_lookup(p->family, p->ip);

        hits += want != 0;
        mismatches += prefix_set_lookup(s, p->family, p->ip) != want;
        if (p->family == AF_INET) {
            uint8_t m[16] = {[10] = 0xff, [11] = 0xff};
            memcpy(m + 12, p->ip, 4);
            mapped_mismatches += prefix_set_lookup(s, AF_INET6, m) != want;
        }
    }
    T_OK(mismatches == 0, "random: %d lookups (%zu hits) agree with brute force (%zu differ)",
         RANDOM_LOOKUPS, hits, mismatches);
    T_OK(mapped_mismatches == 0, "random: IPv4-mapped lookups agree with IPv4 (%zu differ)",
         mapped_mismatches);

    /* the lookups alone, timed (their answers used, so none is optimised away) */
    t0 = now_ms();
    for (size_t i = 0; i < RANDOM_LOOKUPS; i++)
        timed_hits += prefix_set_lookup(s, probes[i].family, probes[i].ip) != 0;
    lookup_ns = (now_ms() - t0) * 1e6 / RANDOM_LOOKUPS;
    T_OK(timed_hits == hits, "random: the same lookups again give the same hits");
    printf("# prefix: %d rules built in %.1f ms CPU, %zu bytes (%.1f per rule), lookup %.0f ns\n",
           RANDOM_RULES, build_ms, mem, (double)mem / (double)prefix_set_count(s), lookup_ns);

    prefix_set_free(s);
    for (int f = 0; f < 2; f++)
        for (int b = 0; b < 256; b++)
            free(bucket[f][b]);
}

int main(void)
{
    test_table(false);
    test_table(true);
    test_bad_adds();
    test_random();
    return tap_done();
}
