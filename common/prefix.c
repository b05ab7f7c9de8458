/*
 * Longest-prefix match: a path-compressed binary trie per family (see
 * prefix.h). Every node holds its whole prefix, so a lookup checks a node
 * with one masked compare and never backtracks: it walks down while the
 * node's prefix matches, remembering the last node carrying a rule.
 * Nodes live in one array and link by index (0 = none), so sealing can
 * shrink the array without fixing up pointers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mc.h"
#include "common/prefix.h"

#define PREFIX_MIN_NODES 64u
/* Sealing a family with this many rules indexes its trie by the top
 * PREFIX_STRIDE bits (512 KiB, at most 64 bytes per such rule): on random
 * rules that skips ~14 of ~16 node visits, each a likely cache miss. */
#define PREFIX_STRIDE           16
#define PREFIX_STRIDE_MIN_RULES 8192u

/* Bits as big-endian words: bit 0 is the top bit of key[0]. */
struct prefix_node {
    uint64_t key[2]; /* bits past len are zero */
    uint32_t child[2];
    uint32_t tag; /* 0: a branch point, no rule */
    uint8_t len;
};

/* Where the walk for an address with these top bits reaches depth
 * PREFIX_STRIDE, and the best tag it met on the way. */
struct prefix_slot {
    uint32_t node;
    uint32_t tag;
};

struct prefix_set {
    struct prefix_node *nodes; /* nodes[0] unused: index 0 means none */
    uint32_t used, cap;
    uint32_t root[2]; /* [0] IPv4, [1] IPv6 */
    size_t count[2];
    struct prefix_slot *stride[2]; /* NULL: walk from the root */
    bool sealed;
};

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The address as a 128-bit key and its trie (0 v4, 1 v6); -1 for another family. */
static int prefix_key(int family, const uint8_t *ip, uint64_t k[2])
{
    if (family == AF_INET) {
        k[0] = (uint64_t)ip[0] << 56 | (uint64_t)ip[1] << 48 | (uint64_t)ip[2] << 40 |
               (uint64_t)ip[3] << 32;
        k[1] = 0;
        return 0;
    }
    if (family == AF_INET6) {
        k[0] = load_be64(ip);
        k[1] = load_be64(ip + 8);
        return 1;
    }
    return -1;
}

static uint64_t word_mask(unsigned bits) /* the top `bits` (0..64) bits set */
{
    return bits == 0 ? 0 : ~(uint64_t)0 << (64 - bits);
}

static bool prefix_eq(const uint64_t a[2], const uint64_t b[2], unsigned len)
{
    uint64_t m0 = word_mask(MC_MIN(len, 64u)), m1 = word_mask(len > 64 ? len - 64 : 0);
    return (((a[0] ^ b[0]) & m0) | ((a[1] ^ b[1]) & m1)) == 0;
}

static unsigned prefix_bit(const uint64_t k[2], unsigned i)
{
    return i < 64 ? (unsigned)(k[0] >> (63 - i)) & 1 : (unsigned)(k[1] >> (127 - i)) & 1;
}

/* Length of the common leading bits of a and b, 0..128. */
static unsigned prefix_common(const uint64_t a[2], const uint64_t b[2])
{
    uint64_t x0 = a[0] ^ b[0], x1 = a[1] ^ b[1];
    if (x0 != 0)
        return (unsigned)__builtin_clzll(x0);
    return x1 != 0 ? 64 + (unsigned)__builtin_clzll(x1) : 128;
}

struct prefix_set *prefix_set_new(void)
{
    struct prefix_set *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->nodes = calloc(PREFIX_MIN_NODES, sizeof(*s->nodes));
    if (s->nodes == NULL) {
        free(s);
        return NULL;
    }
    s->cap = PREFIX_MIN_NODES;
    s->used = 1;
    return s;
}

/* Room for the two nodes one add may create. */
static int prefix_reserve(struct prefix_set *s)
{
    struct prefix_node *n;
    uint32_t cap;

    if (s->used + 2 <= s->cap)
        return 0;
    if (s->cap > UINT32_MAX / 2) {
        errno = ENOMEM;
        return -1;
    }
    cap = s->cap * 2;
    n = realloc(s->nodes, (size_t)cap * sizeof(*n));
    if (n == NULL)
        return -1;
    s->nodes = n;
    s->cap = cap;
    return 0;
}

static uint32_t prefix_node_add(struct prefix_set *s, const uint64_t k[2], unsigned len,
                                uint32_t tag)
{
    uint32_t i = s->used++;
    struct prefix_node *n = &s->nodes[i];

    n->key[0] = k[0] & word_mask(MC_MIN(len, 64u));
    n->key[1] = k[1] & word_mask(len > 64 ? len - 64 : 0);
    n->child[0] = n->child[1] = 0;
    n->tag = tag;
    n->len = (uint8_t)len;
    return i;
}

int prefix_set_add(struct prefix_set *s, const struct mc_cidr *c, uint32_t tag)
{
    uint64_t k[2];
    int t = prefix_key(c->family, c->addr, k);
    unsigned len = c->prefix;

    if (t < 0 || len > (t == 0 ? 32u : 128u) || tag == 0) {
        errno = EINVAL;
        return -1;
    }
    if (s->sealed) {
        errno = EPERM;
        return -1;
    }
    if (prefix_reserve(s) < 0)
        return -1;

    uint32_t *link = &s->root[t];
    while (*link != 0) {
        struct prefix_node *n = &s->nodes[*link];
        unsigned common = MC_MIN(prefix_common(n->key, k), MC_MIN((unsigned)n->len, len));

        if (common == n->len) { /* n is a prefix of c (or c itself) */
            if (n->len == len) {
                s->count[t] += n->tag == 0;
                n->tag = tag;
                return 0;
            }
            link = &n->child[prefix_bit(k, n->len)];
            continue;
        }
        /* c and n part at bit `common`, above n: c itself or a branch point goes there */
        uint32_t old = *link, up;
        if (common == len) {
            up = prefix_node_add(s, k, len, tag);
        } else {
            up = prefix_node_add(s, k, common, 0);
            s->nodes[up].child[prefix_bit(k, common)] = prefix_node_add(s, k, len, tag);
        }
        s->nodes[up].child[prefix_bit(s->nodes[old].key, common)] = old;
        *link = up;
        s->count[t]++;
        return 0;
    }
    *link = prefix_node_add(s, k, len, tag);
    s->count[t]++;
    return 0;
}

/* One step of a lookup: the node to visit after i, or 0 to stop. */
static uint32_t prefix_step(const struct prefix_set *s, uint32_t i, const uint64_t k[2],
                            uint32_t *best)
{
    const struct prefix_node *n = &s->nodes[i];

    if (!prefix_eq(n->key, k, n->len))
        return 0;
    if (n->tag != 0)
        *best = n->tag;
    return n->len == 128 ? 0 : n->child[prefix_bit(k, n->len)];
}

/* Replays the first PREFIX_STRIDE bits of the walk for every value of them. */
static struct prefix_slot *prefix_stride_build(const struct prefix_set *s, int t)
{
    struct prefix_slot *tab = malloc(sizeof(*tab) << PREFIX_STRIDE);

    if (tab == NULL)
        return NULL;
    for (uint32_t x = 0; x < 1u << PREFIX_STRIDE; x++) {
        uint64_t k[2] = {(uint64_t)x << (64 - PREFIX_STRIDE), 0};
        uint32_t i = s->root[t], best = 0;

        /* a node this short is decided by the top bits alone, and so is its child */
        while (i != 0 && s->nodes[i].len < PREFIX_STRIDE)
            i = prefix_step(s, i, k, &best);
        tab[x].node = i;
        tab[x].tag = best;
    }
    return tab;
}

int prefix_set_seal(struct prefix_set *s)
{
    struct prefix_node *n = realloc(s->nodes, (size_t)s->used * sizeof(*n));

    s->sealed = true;
    if (n == NULL)
        return -1;
    s->nodes = n;
    s->cap = s->used;
    /* a second call (after ENOMEM, say) builds only what is missing */
    for (int t = 0; t < 2; t++) {
        if (s->count[t] >= PREFIX_STRIDE_MIN_RULES && s->stride[t] == NULL &&
            (s->stride[t] = prefix_stride_build(s, t)) == NULL)
            return -1;
    }
    return 0;
}

uint32_t prefix_set_lookup(const struct prefix_set *s, int family, const uint8_t *ip)
{
    uint32_t best = 0, i;
    uint64_t k[2];
    int t;

    if (s == NULL)
        return 0;
    /* a v4 client on a dual-stack socket: v4 rules apply, and v6 rules
     * never see ::ffff:0:0/96 (so a v6 rule there matches nothing) */
    if (family == AF_INET6 && addr_ip_v4mapped(ip)) {
        family = AF_INET;
        ip += 12;
    }
    if ((t = prefix_key(family, ip, k)) < 0)
        return 0;
    i = s->root[t];
    if (s->stride[t] != NULL) {
        const struct prefix_slot *slot = &s->stride[t][k[0] >> (64 - PREFIX_STRIDE)];
        i = slot->node;
        best = slot->tag;
    }
    while (i != 0)
        i = prefix_step(s, i, k, &best);
    return best;
}

size_t prefix_set_count(const struct prefix_set *s)
{
    return s->count[0] + s->count[1];
}

size_t prefix_set_memory(const struct prefix_set *s)
{
    size_t stride = (size_t)((s->stride[0] != NULL) + (s->stride[1] != NULL)) << PREFIX_STRIDE;
    return sizeof(*s) + (size_t)s->cap * sizeof(*s->nodes) + stride * sizeof(struct prefix_slot);
}

void prefix_set_free(struct prefix_set *s)
{
    if (s == NULL)
        return;
    free(s->stride[0]);
    free(s->stride[1]);
    free(s->nodes);
    free(s);
}
