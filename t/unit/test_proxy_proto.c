/*
 * Unit tests for worker/proxy_proto.c. Valid headers must parse at their
 * full length and at no shorter one; invalid ones are written as the
 * longest valid prefix plus the rest, and must be INCOMPLETE at every
 * length up to that prefix and BAD from the next byte on. Every parse
 * runs over a heap copy of exactly n bytes, so ASan catches a read past n.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/mc.h"
#include "hello_fixtures.h"
#include "tap.h"
#include "worker/proxy_proto.h"

#define V2_SIG "0d0a0d0a000d0a515549540a"

/* proxy_proto_parse() over an exact-size heap copy of buf[0..n). */
static enum proxy_proto_status parse_n(const uint8_t *buf, size_t n, struct proxy_proto_hdr *h)
{
    uint8_t *copy = malloc(n ? n : 1);
    enum proxy_proto_status r;

    if (copy == NULL)
        abort();
    memcpy(copy, buf, n);
    r = proxy_proto_parse(copy, n, h);
    free(copy);
    return r;
}

/* "ip:port" of a parsed address, or "-" for a local header. */
static const char *fmt(const struct proxy_proto_hdr *h, const struct mc_addr *a, char *buf)
{
    if (h->local)
        return strcpy(buf, "-");
    return addr_format(a, buf, ADDR_STRLEN);
}

/* Hex digits, spaces ignored, into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        unsigned v;

        if (*s == ' ')
            continue;
        if (n >= cap || sscanf(s, "%2x", &v) != 1)
            abort();
        out[n++] = (uint8_t)v;
        s++;
    }
    return n;
}

/*
 * A valid header of len bytes: INCOMPLETE at every shorter length, OK
 * with len exact, and the same result with a ClientHello after it in the
 * same buffer, fed one byte at a time.
 */
static void check_valid(const char *name, const uint8_t *hdr, size_t len, const char *want_src,
                        const char *want_dst)
{
    static uint8_t both[PROXY_PROTO_MAX + sizeof(hello_plain)];
    struct proxy_proto_hdr h;
    char s[ADDR_STRLEN], d[ADDR_STRLEN], got[160] = "";
    size_t first_bad = 0, ok_at = 0;
    bool same = true;
    enum proxy_proto_status r;

    for (size_t k = 0; k < len && first_bad == 0; k++)
        if (parse_n(hdr, k, &h) != PROXY_PROTO_INCOMPLETE)
            first_bad = k + 1;
    if (first_bad != 0)
        snprintf(got, sizeof(got), " (not at %zu)", first_bad - 1);
    T_OK(first_bad == 0, "%s: INCOMPLETE at every length below %zu%s", name, len, got);

    r = parse_n(hdr, len, &h);
    fmt(&h, &h.src, s);
    fmt(&h, &h.dst, d);
    if (r != PROXY_PROTO_OK || h.len != len || strcmp(s, want_src) != 0 || strcmp(d, want_dst) != 0)
        snprintf(got, sizeof(got), " (got %d, len %zu, %s -> %s, %s)", r, h.len, s, d,
                 h.err ? h.err : "");
    T_OK(r == PROXY_PROTO_OK && h.len == len && h.err == NULL && strcmp(s, want_src) == 0 &&
             strcmp(d, want_dst) == 0,
         "%s: OK, len %zu, %s -> %s%s", name, len, want_src, want_dst, got);

    memcpy(both, hdr, len);
    memcpy(both + len, hello_plain, sizeof(hello_plain));
    for (size_t n = 1; n <= len + sizeof(hello_plain); n++) {
        r = parse_n(both, n, &h);
        if (r == PROXY_PROTO_OK && ok_at == 0)
            ok_at = n;
        if (r != (n < len ? PROXY_PROTO_INCOMPLETE : PROXY_PROTO_OK) ||
            (r == PROXY_PROTO_OK && h.len != len))
            same = false;
    }
    T_OK(same && ok_at == len && strcmp(fmt(&h, &h.src, s), want_src) == 0 &&
             strcmp(fmt(&h, &h.dst, d), want_dst) == 0,
         "%s: fed byte by byte with a ClientHello behind it, OK from %zu bytes on, len %zu", name,
         len, len);
}

/*
 * An invalid header: buf[0..ok_len) is a valid prefix, buf[ok_len] the
 * first byte that cannot continue one.
 */
static void check_bad(const char *name, const uint8_t *buf, size_t ok_len, size_t total)
{
    struct proxy_proto_hdr h;
    size_t first_bad = 0;
    enum proxy_proto_status r1, r2;
    char why[96];

    for (size_t k = 0; k <= ok_len && first_bad == 0; k++)
        if (parse_n(buf, k, &h) != PROXY_PROTO_INCOMPLETE)
            first_bad = k + 1;
    r1 = parse_n(buf, ok_len + 1, &h);
    if (first_bad != 0)
        snprintf(why, sizeof(why), "refused at %zu bytes already", first_bad - 1);
    else
        snprintf(why, sizeof(why), "%s", r1 == PROXY_PROTO_BAD ? h.err : "not refused");
    T_OK(first_bad == 0 && r1 == PROXY_PROTO_BAD && h.err != NULL,
         "%s: INCOMPLETE up to %zu bytes, BAD with byte %zu (%s)", name, ok_len, ok_len, why);
    r2 = parse_n(buf, total, &h);
    T_OK(r2 == PROXY_PROTO_BAD && h.err != NULL, "%s: BAD whole (%zu bytes)", name, total);
}

struct v1_valid {
    const char *in;
    const char *src, *dst; /* "-" for UNKNOWN */
};

#define SRC45 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
#define DST44 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.25"
/* "PROXY UNKNOWN " and 91 x: 105 bytes, so CRLF makes it 107 */
#define X13    "xxxxxxxxxxxxx"
#define X91    X13 X13 X13 X13 X13 X13 X13
#define UNK105 "PROXY UNKNOWN " X91

static const struct v1_valid v1_valid[] = {
    {"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", "192.0.2.1:56324", "198.51.100.2:443"},
    {"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", "0.0.0.0:0", "255.255.255.255:65535"},
    {"PROXY TCP4 10.0.0.1 10.20.30.40 9 10\r\n", "10.0.0.1:9", "10.20.30.40:10"},
    {"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", "[2001:db8::1]:1", "[2001:db8::2]:2"},
    {"PROXY TCP6 :: ::1 0 0\r\n", "[::]:0", "[::1]:0"},
    {"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1000 443\r\n", "[::ffff:192.0.2.1]:1000",
     "[::ffff:198.51.100.2]:443"},
    {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 1:2:3:4:5:6:7:8 65535 65535\r\n",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[1:2:3:4:5:6:7:8]:65535"},
    {"PROXY TCP6 0001:00a0:: ABCD::eF 1 2\r\n", "[1:a0::]:1", "[abcd::ef]:2"},
    {"PROXY TCP6 1:2:3:4:5:6:7:: ::2:3:4:5:6:7:8 1 2\r\n", "[1:2:3:4:5:6:7:0]:1",
     "[0:2:3:4:5:6:7:8]:2"},
    {"PROXY TCP6 1:2:3:4:5::1.2.3.4 ::0.0.0.0 1 2\r\n", "[1:2:3:4:5:0:102:304]:1", "[::]:2"},
    {"PROXY TCP6 " SRC45 " " DST44 " 1 2\r\n", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff19]:2"},
    {"PROXY UNKNOWN\r\n", "-", "-"},
    {"PROXY UNKNOWN ffff:: ::1 1 2\r\n", "-", "-"},
    {"PROXY UNKNOWN \x01\t\x7f\xff anything\r\n", "-", "-"},
    {UNK105 "\r\n", "-", "-"},
};

struct v1_bad {
    const char *ok;   /* the longest valid prefix */
    const char *rest; /* from the first bad byte */
};

static const struct v1_bad v1_bad[] = {
    {"", "GET / HTTP/1.1\r\n"},
    {"", "\x16\x03\x01\x02\x00\x01"},
    {"", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROX", "Z TCP4"},
    {"PROXY", "\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY", "\r\n"},
    {"PROXY ", " TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY ", "tcp4 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY TCP", "5 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4", "\r\n"},
    {"PROXY TCP4 ", " 1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 ", " 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 0", "1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3.0", "0 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 25", "6.1.1.1 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3.4", ".5 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3", " 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.", ".3 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 ", ".1.2.3 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8", "\t1 2\r\n"},
    {"PROXY TCP4 ", "::1 ::1 1 2\r\n"},
    {"PROXY TCP4 ", "x1.2.3.4 5.6.7.8 1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 0", "1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0", "0\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 6553", "6 1\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 65535", "0 1\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 ", "+1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 ", "-1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 ", " 1 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 ", " 2\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 ", "\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1", "\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", " \r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "x\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "\r\n"},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "x"},
    {"PROXY TCP6 1", ".2.3.4 ::1 1 2\r\n"},
    {"PROXY TCP6 ", "g::1 ::1 1 2\r\n"},
    {"PROXY TCP6 ", " ::1 ::1 1 2\r\n"},
    {"PROXY TCP6 :", "1::2 ::1 1 2\r\n"},
    {"PROXY TCP6 ::", ": ::1 1 2\r\n"},
    {"PROXY TCP6 1::2:", ":3 ::1 1 2\r\n"},
    {"PROXY TCP6 1234", "5::1 ::1 1 2\r\n"},
    {"PROXY TCP6 fe80::1", "%eth0 ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:6:7", " ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:6:7:8", ":9 ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:6:7:8", "::1 ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:6::7", ":8 ::1 1 2\r\n"},
    {"PROXY TCP6 1:", " ::1 1 2\r\n"},
    {"PROXY TCP6 ::1:", " ::1 1 2\r\n"},
    {"PROXY TCP6 ::ffff:1.2.3.0", "4 ::1 1 2\r\n"},
    {"PROXY TCP6 ::ffff:1.2.3.4", ":5 ::1 1 2\r\n"},
    {"PROXY TCP6 ::ffff:1.2.3", " ::1 1 2\r\n"},
    {"PROXY TCP6 ::ffff:1a", ".2.3.4 ::1 1 2\r\n"},
    {"PROXY TCP6 ::ffff:", ".1.2.3.4 ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:6::1", ".2.3.4 ::1 1 2\r\n"},
    {"PROXY TCP6 1:2:3:4:5:1", ".2.3.4 ::1 1 2\r\n"},
    {"PROXY TCP6 " SRC45 " " DST44, "5 1 2\r\n"},
    {"PROXY TCP6 " SRC45 " " DST44 " 1 2", "3\r\n"},
    {"PROXY UNKNOWN", "X\r\n"},
    {"PROXY UNKNOWN", "\n"},
    {"PROXY UNKNOWN foo", "\n"},
    {"PROXY UNKNOWN\r", "\r\n"},
    {"PROXY UNKNOWN foo\r", "x\r\n"},
    {UNK105, "x\r\n"},
    {UNK105 "\r", "\r\n"},
    {"PROXY UNKNOWN", "\x00\r\n"},
};

/* A case's name: prefix, then s up to its first byte that is not printable. */
static void label(char *out, size_t cap, const char *prefix, const char *s)
{
    size_t n = strlen(prefix);

    memcpy(out, prefix, n + 1);
    for (; *s >= ' ' && *s < 0x7f && n + 1 < cap; s++)
        out[n++] = *s;
    out[n] = '\0';
}

static void test_v1(void)
{
    char name[160];

    for (size_t i = 0; i < MC_ARRAY_LEN(v1_valid); i++) {
        const struct v1_valid *c = &v1_valid[i];

        label(name, sizeof(name), "v1 ", c->in);
        check_valid(name, (const uint8_t *)c->in, strlen(c->in), c->src, c->dst);
    }
    for (size_t i = 0; i < MC_ARRAY_LEN(v1_bad); i++) {
        const struct v1_bad *c = &v1_bad[i];
        uint8_t buf[256];
        size_t ok = strlen(c->ok);
        /* the NUL row's rest has an explicit length */
        size_t rest = c->rest[0] == '\0' ? 3 : strlen(c->rest);

        memcpy(buf, c->ok, ok);
        memcpy(buf + ok, c->rest, rest);
        label(name, sizeof(name), "v1 bad: ", c->ok);
        snprintf(name + strlen(name), sizeof(name) - strlen(name), " then 0x%02x",
                 (uint8_t)c->rest[0]);
        check_bad(name, buf, ok, ok + rest);
    }
}

struct v2_valid {
    const char *name;
    const char *hex;
    const char *src, *dst; /* "-" for LOCAL */
};

static const struct v2_valid v2_valid[] = {
    {"v2 PROXY TCP4", V2_SIG "21 11 000c c0000201 c6336402 dc04 01bb", "192.0.2.1:56324",
     "198.51.100.2:443"},
    {"v2 PROXY TCP6",
     V2_SIG "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 "
            "0001 ffff",
     "[2001:db8::1]:1", "[2001:db8::2]:65535"},
    {"v2 PROXY TCP6 IPv4-mapped stays IPv6",
     V2_SIG "21 21 0024 00000000000000000000ffffc0000201 00000000000000000000ffffc6336402 "
            "0050 01bb",
     "[::ffff:192.0.2.1]:80", "[::ffff:198.51.100.2]:443"},
    {"v2 PROXY TCP4 ports 0", V2_SIG "21 11 000c 00000000 ffffffff 0000 0000", "0.0.0.0:0",
     "255.255.255.255:0"},
    {"v2 LOCAL UNSPEC", V2_SIG "20 00 0000", "-", "-"},
    {"v2 LOCAL UNSPEC with bytes, skipped", V2_SIG "20 00 0005 0102030405", "-", "-"},
    {"v2 LOCAL with a TCP4 address block, skipped", V2_SIG "20 11 000c c0000201 c6336402 dc04 01bb",
     "-", "-"},
    {"v2 LOCAL TCP4 with a bad TLV, skipped unread",
     V2_SIG "20 11 000e c0000201 c6336402 dc04 01bb ffff", "-", "-"},
    {"v2 LOCAL UDP6",
     V2_SIG "20 22 0024 "
            "00000000000000000000000000000001"
            "00000000000000000000000000000002 0001 0002",
     "-", "-"},
    {"v2 PROXY TCP4 ALPN and AUTHORITY TLVs",
     V2_SIG "21 11 0022 0a000001 0a000002 3039 01bb 01 0002 6832 02 000b 6578616d706c652e636f6d "
            "04 0000",
     "10.0.0.1:12345", "10.0.0.2:443"},
    {"v2 PROXY TCP6 custom TLV and CRC32C TLV (not verified)",
     V2_SIG "21 21 0032 000000000000000000000000000000aa 000000000000000000000000000000bb 0001 "
            "0002 e0 0004 deadbeef 03 0004 00000000",
     "[::aa]:1", "[::bb]:2"},
    /* captured from HAProxy 2.6.12, server options "send-proxy-v2 proxy-v2-options
     * crc32c,unique-id check check-send-proxy" */
    {"v2 LOCAL with a CRC32C TLV, as HAProxy health checks send it",
     V2_SIG "20 00 0007 03 0004 a9b87e8f", "-", "-"},
    {"v2 PROXY TCP4 with CRC32C and UNIQUE_ID TLVs, as HAProxy sends it",
     V2_SIG "21 11 003f 7f000005 7f000001 c8c7 d5db 03 0004 837147d2 05 0029 "
            "37463030303030353a433843375f37463030303030313a443544425f36423133313239345f30303030",
     "127.0.0.5:51399", "127.0.0.1:54747"},
    {"v2 PROXY TCP4 with an empty TLV last",
     V2_SIG "21 11 000f 01020304 05060708 0001 0002 04 0000", "1.2.3.4:1", "5.6.7.8:2"},
};

struct v2_bad {
    const char *name;
    const char *hex;
    size_t ok; /* bytes of valid prefix */
};

static const struct v2_bad v2_bad[] = {
    {"v2 version 1", V2_SIG "11 11 000c 01020304 05060708 0001 0002", 12},
    {"v2 version 3", V2_SIG "31 11 000c 01020304 05060708 0001 0002", 12},
    {"v2 version 0", V2_SIG "01 11 000c 01020304 05060708 0001 0002", 12},
    {"v2 command 2", V2_SIG "22 11 000c 01020304 05060708 0001 0002", 12},
    {"v2 command 0xf", V2_SIG "2f 11 000c 01020304 05060708 0001 0002", 12},
    {"v2 family 0x10 (INET, transport UNSPEC)", V2_SIG "21 10 000c 01020304 05060708 0001 0002",
     13},
    {"v2 family 0x13", V2_SIG "21 13 000c 01020304 05060708 0001 0002", 13},
    {"v2 family 0x41", V2_SIG "21 41 000c 01020304 05060708 0001 0002", 13},
    {"v2 LOCAL family 0x01", V2_SIG "20 01 0000", 13},
    {"v2 LOCAL family 0xff", V2_SIG "20 ff 0000", 13},
    {"v2 PROXY UNSPEC", V2_SIG "21 00 0000", 13},
    {"v2 PROXY UDP4", V2_SIG "21 12 000c 01020304 05060708 0001 0002", 13},
    {"v2 PROXY UDP6", V2_SIG "21 22 0024", 13},
    {"v2 PROXY UNIX stream", V2_SIG "21 31 00d8", 13},
    {"v2 PROXY UNIX datagram", V2_SIG "21 32 00d8", 13},
    {"v2 PROXY TCP4 length 11", V2_SIG "21 11 000b 01020304 05060708 0001 00", 15},
    {"v2 PROXY TCP4 length 0", V2_SIG "21 11 0000", 15},
    {"v2 PROXY TCP6 length 35", V2_SIG "21 21 0023", 15},
    {"v2 PROXY TCP6 given a TCP4 block", V2_SIG "21 21 000c 01020304 05060708 0001 0002", 15},
    {"v2 LOCAL TCP4 length 11", V2_SIG "20 11 000b 01020304 05060708 0001 00", 15},
    {"v2 LOCAL UNIX length 215", V2_SIG "20 31 00d7", 15},
    {"v2 length 0x0401 over the cap", V2_SIG "21 11 0401", 15},
    {"v2 length 0xffff", V2_SIG "21 11 ffff", 15},
    {"v2 one byte after the address block", V2_SIG "21 11 000d 01020304 05060708 0001 0002 04", 15},
    {"v2 two bytes after the address block", V2_SIG "21 11 000e 01020304 05060708 0001 0002 0400",
     15},
    {"v2 TLV one byte past the end", V2_SIG "21 11 0011 01020304 05060708 0001 0002 04 0003 0000",
     30},
    {"v2 TLV far past the end", V2_SIG "21 11 0011 01020304 05060708 0001 0002 04 ffff 0000", 30},
    {"v2 second TLV past the end",
     V2_SIG "21 11 0018 01020304 05060708 0001 0002 04 0000 01 0002 6832 04 0002 00", 38},
    {"v2 one byte left after a TLV", V2_SIG "21 11 0010 01020304 05060708 0001 0002 04 0000 04",
     30},
    {"v2 TLV past the end of a TCP6 header",
     V2_SIG "21 21 0028 00000000000000000000000000000001 00000000000000000000000000000002 "
            "0001 0002 02 0002 6162",
     54},
};

static void test_v2(void)
{
    uint8_t buf[PROXY_PROTO_MAX + 16];

    for (size_t i = 0; i < MC_ARRAY_LEN(v2_valid); i++) {
        const struct v2_valid *c = &v2_valid[i];
        size_t n = unhex(c->hex, buf, sizeof(buf));

        check_valid(c->name, buf, n, c->src, c->dst);
    }
    for (size_t i = 0; i < MC_ARRAY_LEN(v2_bad); i++) {
        const struct v2_bad *c = &v2_bad[i];
        size_t n = unhex(c->hex, buf, sizeof(buf));

        check_bad(c->name, buf, c->ok, n);
    }

    /* each signature byte, wrong */
    for (size_t i = 0; i < 12; i++) {
        char name[64];
        size_t n = unhex(V2_SIG "21 11 000c 01020304 05060708 0001 0002", buf, sizeof(buf));

        buf[i] ^= 0x20;
        snprintf(name, sizeof(name), "v2 signature byte %zu wrong", i);
        check_bad(name, buf, i, n);
    }

    /* the largest header accepted, a TCP4 block and one NOOP TLV filling
     * the rest, and one byte more */
    size_t len = PROXY_PROTO_MAX - PROXY_PROTO_V2_HDR;
    size_t n = unhex(V2_SIG "21 11 0000 01020304 05060708 0001 0002 04 0000", buf, sizeof(buf));
    size_t noop = len - 12 - 3;

    buf[14] = (uint8_t)(len >> 8);
    buf[15] = (uint8_t)len;
    buf[n - 2] = (uint8_t)(noop >> 8);
    buf[n - 1] = (uint8_t)noop;
    memset(buf + n, 0xab, noop);
    check_valid("v2 header of PROXY_PROTO_MAX bytes", buf, PROXY_PROTO_MAX, "1.2.3.4:1",
                "5.6.7.8:2");
    len++;
    noop++;
    buf[14] = (uint8_t)(len >> 8);
    buf[15] = (uint8_t)len;
    buf[n - 2] = (uint8_t)(noop >> 8);
    buf[n - 1] = (uint8_t)noop;
    buf[PROXY_PROTO_MAX] = 0xab;
    check_bad("v2 header of PROXY_PROTO_MAX + 1 bytes", buf, 15, PROXY_PROTO_MAX + 1);

    /* LOCAL over a UNIX socket: a 216-byte block, skipped */
    n = unhex(V2_SIG "20 31 00d8", buf, sizeof(buf));
    memset(buf + n, 'u', 216);
    check_valid("v2 LOCAL UNIX stream", buf, n + 216, "-", "-");
}

/*
 * The address scanners against glibc's inet_pton: every string over a
 * small alphabet up to a length must be accepted exactly when inet_pton
 * accepts it, with the same bytes, and every prefix of an accepted one
 * must be INCOMPLETE.
 */
static void compare_pton(int family, const char *alphabet, size_t max_len)
{
    const char *proto = family == AF_INET ? "TCP4" : "TCP6";
    const char *other = family == AF_INET ? "1.1.1.1" : "::1";
    size_t na = strlen(alphabet), tried = 0, mismatch = 0, prefix_bad = 0;
    unsigned idx[16] = {0};
    char first[64] = "";

    for (size_t len = 1; len <= max_len; len++) {
        memset(idx, 0, sizeof(idx));
        for (;;) {
            char s[16], line[128];
            uint8_t want[16];
            struct proxy_proto_hdr h;
            int pton, plen;
            bool ok;

            for (size_t i = 0; i < len; i++)
                s[i] = alphabet[idx[i]];
            s[len] = '\0';
            pton = inet_pton(family, s, want) == 1;
            plen = snprintf(line, sizeof(line), "PROXY %s %s %s 1 2\r\n", proto, s, other);
            ok = proxy_proto_parse((const uint8_t *)line, (size_t)plen, &h) == PROXY_PROTO_OK;
            if (ok) {
                const void *got =
                    family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)&h.src.ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&h.src.ss)->sin6_addr;

                ok = memcmp(got, want, family == AF_INET ? 4 : 16) == 0 || !pton;
            }
            if (ok != pton) {
                if (mismatch++ == 0)
                    snprintf(first, sizeof(first), " (not on \"%s\")", s);
            }
            if (pton) {
                /* "PROXY TCPx " and any part of s: a valid prefix */
                for (size_t k = 0; k < len; k++)
                    if (proxy_proto_parse((const uint8_t *)line, 11 + k, &h) !=
                        PROXY_PROTO_INCOMPLETE)
                        prefix_bad++;
            }
            tried++;

            size_t i = 0;
            while (i < len && ++idx[i] == na)
                idx[i++] = 0;
            if (i == len)
                break;
        }
    }
    T_OK(mismatch == 0, "%s addresses agree with inet_pton on %zu strings%s", proto, tried, first);
    T_OK(prefix_bad == 0, "%s: every prefix of an address inet_pton accepts is INCOMPLETE", proto);
}

static void test_pton(void)
{
    static const char *const v6[] = {
        "::",
        "::1",
        "1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6::8",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5::1.2.3.4",
        "1:2:3:4:5:6::1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::ffff:01.2.3.4",
        "::ffff:1.2.3.256",
        "::ffff:1.2.3",
        "::ffff:1.2.3.4.5",
        "fffff::",
        "0000:0000:0000:0000:0000:0000:0000:0000",
        ":1::",
        "1:::",
        "1:",
        ":",
        "::1:",
        "1.2.3.4",
        "1::1.2.3.4:5",
    };
    for (size_t i = 0; i < MC_ARRAY_LEN(v6); i++) {
        char line[128];
        uint8_t want[16];
        struct proxy_proto_hdr h;
        int pton = inet_pton(AF_INET6, v6[i], want) == 1;
        int plen = snprintf(line, sizeof(line), "PROXY TCP6 %s ::1 1 2\r\n", v6[i]);
        enum proxy_proto_status r = proxy_proto_parse((const uint8_t *)line, (size_t)plen, &h);
        bool same = pton ? r == PROXY_PROTO_OK &&
                               memcmp(&((struct sockaddr_in6 *)&h.src.ss)->sin6_addr, want, 16) == 0
                         : r == PROXY_PROTO_BAD;

        T_OK(same, "TCP6 \"%s\": %s as inet_pton says", v6[i], pton ? "accepted" : "refused");
    }
    compare_pton(AF_INET, "0129.", 8);
    compare_pton(AF_INET6, "0f:.", 10);
}

struct build_case {
    const char *name;
    int sfam, dfam;
    const char *sip, *dip;
    uint16_t sport, dport;
    const char *want_hex;
};

static const struct build_case build_cases[] = {
    {"IPv4", AF_INET, AF_INET, "192.0.2.1", "198.51.100.2", 56324, 443,
     V2_SIG "21 11 000c c0000201 c6336402 dc04 01bb"},
    {"IPv6", AF_INET6, AF_INET6, "2001:db8::1", "2001:db8::2", 1, 65535,
     V2_SIG "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 0001 "
            "ffff"},
    {"IPv4-mapped src and dst", AF_INET6, AF_INET6, "::ffff:192.0.2.1", "::ffff:198.51.100.2", 80,
     443, V2_SIG "21 11 000c c0000201 c6336402 0050 01bb"},
    {"IPv4-mapped src, IPv4 dst", AF_INET6, AF_INET, "::ffff:10.1.2.3", "10.0.0.1", 1234, 8443,
     V2_SIG "21 11 000c 0a010203 0a000001 04d2 20fb"},
    {"IPv6 src, IPv4 dst mapped", AF_INET6, AF_INET, "2001:db8::1", "10.0.0.1", 1, 2,
     V2_SIG "21 21 0024 20010db8000000000000000000000001 00000000000000000000ffff0a000001 0001 "
            "0002"},
    {"IPv4 src, IPv6 dst: TCP6, src mapped", AF_INET, AF_INET6, "10.0.0.1", "2001:db8::2", 1, 2,
     V2_SIG "21 21 0024 00000000000000000000ffff0a000001 20010db8000000000000000000000002 0001 "
            "0002"},
};

static void make_addr(struct mc_addr *a, int family, const char *ip, uint16_t port)
{
    uint8_t raw[16];

    if (inet_pton(family, ip, raw) != 1)
        abort();
    addr_from_ip(a, family, raw, port);
}

static void test_build(void)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(build_cases); i++) {
        const struct build_case *c = &build_cases[i];
        struct mc_addr src, dst, usrc, udst;
        uint8_t want[64], got[64];
        size_t wn = unhex(c->want_hex, want, sizeof(want)), gn, small;
        struct proxy_proto_hdr h;
        enum proxy_proto_status r;
        char s1[ADDR_STRLEN], s2[ADDR_STRLEN], d1[ADDR_STRLEN], d2[ADDR_STRLEN];

        make_addr(&src, c->sfam, c->sip, c->sport);
        make_addr(&dst, c->dfam, c->dip, c->dport);
        memset(got, 0xee, sizeof(got));
        gn = proxy_proto_build_v2(got, sizeof(got), &src, &dst);
        T_OK(gn == wn && memcmp(got, want, wn) == 0 && got[wn] == 0xee,
             "build %s: %zu bytes as expected (got %zu)", c->name, wn, gn);
        small = proxy_proto_build_v2(got, wn - 1, &src, &dst);
        T_OK(small == 0 && proxy_proto_build_v2(got, wn, &src, &dst) == wn,
             "build %s: needs %zu bytes of room, refuses %zu", c->name, wn, wn - 1);

        /* round trip: the parser gives the addresses back (the byte
         * checks above say in which family) */
        usrc = src;
        udst = dst;
        addr_unmap(&usrc);
        addr_unmap(&udst);
        r = proxy_proto_parse(got, gn, &h);
        addr_unmap(&h.src);
        addr_unmap(&h.dst);
        T_OK(r == PROXY_PROTO_OK && h.len == gn && !h.local &&
                 strcmp(addr_format(&h.src, s1, sizeof(s1)), addr_format(&usrc, s2, sizeof(s2))) ==
                     0 &&
                 strcmp(addr_format(&h.dst, d1, sizeof(d1)), addr_format(&udst, d2, sizeof(d2))) ==
                     0,
             "build %s: parses back to %s -> %s", c->name, addr_format(&usrc, s2, sizeof(s2)),
             addr_format(&udst, d2, sizeof(d2)));
    }

    struct mc_addr un, v4;
    uint8_t out[64];

    memset(&un, 0, sizeof(un));
    un.ss.ss_family = AF_UNIX;
    make_addr(&v4, AF_INET, "10.0.0.1", 1);
    T_OK(proxy_proto_build_v2(out, sizeof(out), &un, &v4) == 0 &&
             proxy_proto_build_v2(out, sizeof(out), &v4, &un) == 0,
         "build: an address neither IPv4 nor IPv6 gives 0");
}

static void test_edges(void)
{
    struct proxy_proto_hdr h;
    static const uint8_t two[] =
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nPROXY TCP4 9.9.9.9 9.9.9.9 9 9\r\n";

    static const uint8_t ip4[4] = {192, 0, 2, 1};
    static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    struct mc_addr a4, a6;
    char b4[ADDR_STRLEN], b6[ADDR_STRLEN];

    addr_from_ip(&a4, AF_INET, ip4, 65535);
    addr_from_ip(&a6, AF_INET6, ip6, 1);
    T_OK(strcmp(addr_format(&a4, b4, sizeof(b4)), "192.0.2.1:65535") == 0 &&
             a4.len == sizeof(struct sockaddr_in) &&
             strcmp(addr_format(&a6, b6, sizeof(b6)), "[2001:db8::1]:1") == 0 &&
             a6.len == sizeof(struct sockaddr_in6),
         "addr_from_ip: %s and %s", b4, b6);
    T_OK(proxy_proto_parse(NULL, 0, &h) == PROXY_PROTO_INCOMPLETE, "no bytes: INCOMPLETE");
    T_OK(proxy_proto_parse(two, sizeof(two) - 1, &h) == PROXY_PROTO_OK && h.len == 32 &&
             ntohl(((struct sockaddr_in *)&h.src.ss)->sin_addr.s_addr) == 0x01020304,
         "a second header after the first is not read");
}

int main(void)
{
    test_v1();
    test_v2();
    test_pton();
    test_build();
    test_edges();
    return tap_done();
}
