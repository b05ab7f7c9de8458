/*
 * Unit tests for common/siphash.c: known answers under the all-zero key,
 * the values CPython 3.11+ gives hash(bytes) with PYTHONHASHSEED=0 (its
 * hash is SipHash-1-3 with that key), across the 8-byte word boundaries.
 */
#include <string.h>

#include "common/mc.h"
#include "common/siphash.h"
#include "tap.h"

static const struct {
    const char *in;
    uint64_t want;
} cases[] = {
    {"a", 0x407448d2b89b1813ull},
    {"abcdefg", 0x6db12aae9070f506ull},
    {"abcdefgh", 0x3f7b849c0b8e35eaull},
    {"0123456789abcdef", 0x1d42b30f7e060c24ull},
    {"abcdefghijklmnopq", 0x61c47e6da27eacccull},
};

int main(void)
{
    static const uint64_t zero[2] = {0, 0}, other[2] = {1, 0};

    for (size_t i = 0; i < MC_ARRAY_LEN(cases); i++)
        T_OK(siphash13(zero, cases[i].in, strlen(cases[i].in)) == cases[i].want,
             "siphash13(\"%s\") under the zero key", cases[i].in);
    T_OK(siphash13(other, "a", 1) != cases[0].want, "another key gives another hash");
    return tap_done();
}
