/* SipHash-1-3 (Aumasson and Bernstein): one compression round per 8-byte word, three to finish. */
#include "common/siphash.h"

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

uint64_t siphash13(const uint64_t key[2], const void *data, size_t len)
{
    const unsigned char *s = data;
    uint64_t v[4] = {
        key[0] ^ 0x736f6d6570736575ull,
        key[1] ^ 0x646f72616e646f6dull,
        key[0] ^ 0x6c7967656e657261ull,
        key[1] ^ 0x7465646279746573ull,
    };
    uint64_t m;
    size_t i, j;

    for (i = 0; i + 8 <= len; i += 8) {
        for (m = 0, j = 0; j < 8; j++)
            m |= (uint64_t)s[i + j] << (8 * j);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    for (m = (uint64_t)len << 56, j = 0; i + j < len; j++)
        m |= (uint64_t)s[i + j] << (8 * j);
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
    v[2] ^= 0xff;
    sip_round(v);
    sip_round(v);
    sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}
