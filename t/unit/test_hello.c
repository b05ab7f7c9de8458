/*
 * hello_parse(): real OpenSSL ClientHellos (hello_fixtures.h) fed whole,
 * split at every offset, byte by byte and re-framed into many records;
 * every length field mutated; hand-built hellos for each rule of the
 * parser; non-TLS input. Every call goes through an exact-size heap copy
 * of the bytes, so ASan reports any read past len.
 */
#include "hello_fixtures.h"
#include "tap.h"
#include "worker/hello.h"

#include <stdlib.h>
#include <string.h>

#define PQ_MSG     (hello_pq + 5) /* the handshake message inside the record */
#define PQ_MSG_LEN (sizeof(hello_pq) - 5)
#define RAW_BIG    (HELLO_MAX_RAW * 2)

static uint8_t scratch[HELLO_MAX_MSG];

/* One call over in[0..len), through a copy of exactly len bytes. */
static enum hello_result parse_at(struct hello *h, const uint8_t *in, size_t len)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    enum hello_result r;

    memcpy(copy, in, len);
    r = hello_parse(h, copy, len, scratch);
    free(copy);
    return r;
}

static enum hello_result parse_once(struct hello *h, const uint8_t *in, size_t len)
{
    memset(h, 0, sizeof(*h));
    return parse_at(h, in, len);
}

/* Bytes arriving one at a time; stops at the first final result. */
static enum hello_result parse_bytewise(struct hello *h, const uint8_t *in, size_t len)
{
    enum hello_result r = HELLO_NEED_MORE;

    memset(h, 0, sizeof(*h));
    for (size_t k = 1; k <= len && r == HELLO_NEED_MORE; k++)
        r = parse_at(h, in, k);
    return r;
}

static int same(const struct hello *a, enum hello_result ra, const struct hello *b,
                enum hello_result rb)
{
    if (ra != rb || a->reject != b->reject)
        return 0;
    if (ra != HELLO_OK)
        return 1;
    return a->hello_end == b->hello_end && a->sni_len == b->sni_len &&
           memcmp(a->sni, b->sni, a->sni_len + 1) == 0 && a->alpn_len == b->alpn_len &&
           memcmp(a->alpn, b->alpn, a->alpn_len) == 0;
}

/* OK with the PQ fixture's SNI and ALPN, ending at end. */
static int is_pq_result(const struct hello *h, enum hello_result r, size_t end)
{
    return r == HELLO_OK && h->hello_end == end && h->sni_len == strlen(HELLO_PQ_SNI) &&
           strcmp(h->sni, HELLO_PQ_SNI) == 0 && h->alpn_len == strlen(HELLO_PQ_ALPN) &&
           memcmp(h->alpn, HELLO_PQ_ALPN, h->alpn_len) == 0;
}

/* Same outcome whole and byte by byte, and it is the expected one. */
static int expect(const uint8_t *in, size_t len, enum hello_result want, enum hello_reject why)
{
    struct hello once, bytewise;
    enum hello_result r1 = parse_once(&once, in, len);
    enum hello_result r2 = parse_bytewise(&bytewise, in, len);

    return same(&once, r1, &bytewise, r2) && r1 == want && once.reject == why;
}

/* in[0..k-1) is still undecided, in[0..k) is rejected for why. */
static int rejects_after(const uint8_t *in, size_t k, enum hello_reject why)
{
    struct hello h;

    if (k > 1 && parse_once(&h, in, k - 1) != HELLO_NEED_MORE)
        return 0;
    return parse_once(&h, in, k) == HELLO_REJECT && h.reject == why;
}

/* Byte writer for building records and messages. */
struct wbuf {
    uint8_t b[RAW_BIG];
    size_t n;
};

static void put(struct wbuf *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_uint(struct wbuf *w, size_t v, size_t width)
{
    for (size_t i = width; i > 0; i--)
        w->b[w->n++] = (uint8_t)(v >> (8 * (i - 1)));
}

static void set_uint(uint8_t *at, size_t v, size_t width)
{
    for (size_t i = width; i > 0; i--)
        *at++ = (uint8_t)(v >> (8 * (i - 1)));
}

/*
 * Frames msg[0..len) into handshake records whose fragment sizes run
 * through sizes[0..nsizes), the last one repeating.
 */
static void frame(struct wbuf *w, const uint8_t *msg, size_t len, const size_t *sizes,
                  size_t nsizes)
{
    w->n = 0;
    size_t i = 0;

    for (size_t off = 0, n; off < len; off += n) {
        n = sizes[i] < len - off ? sizes[i] : len - off;
        if (i + 1 < nsizes)
            i++;

        put_uint(w, 0x16, 1);
        put_uint(w, off == 0 ? 0x0301 : 0x0303, 2);
        put_uint(w, n, 2);
        put(w, msg + off, n);
    }
}

static void frame_one(struct wbuf *w, const struct wbuf *msg)
{
    size_t whole = msg->n;

    frame(w, msg->b, msg->n, &whole, 1);
}

/*
 * A ClientHello message: the fixed fields with vectors of the given
 * lengths, then an extensions block the caller fills and msg_end() closes.
 */
static size_t msg_begin(struct wbuf *m, size_t sid, size_t suites, size_t comp)
{
    static const uint8_t filler[64] = {0x13, 0x01, 0x13, 0x02, 0x13, 0x03};

    m->n = 0;
    put_uint(m, 1, 1);
    put_uint(m, 0, 3);
    put_uint(m, 0x0303, 2);
    put(m, filler, 32);
    put_uint(m, sid, 1);
    put(m, filler, sid);
    put_uint(m, suites, 2);
    put(m, filler, suites);
    put_uint(m, comp, 1);
    memset(m->b + m->n, 0, comp);
    m->n += comp;
    put_uint(m, 0, 2);
    return m->n - 2;
}

static void msg_end(struct wbuf *m, size_t exts)
{
    set_uint(m->b + exts, m->n - exts - 2, 2);
    set_uint(m->b + 1, m->n - 4, 3);
}

static void put_ext(struct wbuf *m, size_t type, const void *data, size_t len)
{
    put_uint(m, type, 2);
    put_uint(m, len, 2);
    put(m, data, len);
}

static void put_sni_ext(struct wbuf *m, const char *name, size_t len)
{
    put_uint(m, 0, 2);
    put_uint(m, len + 5, 2);
    put_uint(m, len + 3, 2);
    put_uint(m, 0, 1);
    put_uint(m, len, 2);
    put(m, name, len);
}

/* A one-record hello with the given extensions block contents. */
static void hello_with(struct wbuf *rec, const void *exts, size_t len)
{
    static struct wbuf m;
    size_t at = msg_begin(&m, 32, 4, 1);

    put(&m, exts, len);
    msg_end(&m, at);
    frame_one(rec, &m);
}

static void test_fixtures(void)
{
    struct hello h;
    enum hello_result r = parse_once(&h, hello_pq, sizeof(hello_pq));

    T_OK(is_pq_result(&h, r, sizeof(hello_pq)), "PQ fixture (%zu bytes): SNI, ALPN, hello_end",
         sizeof(hello_pq));
    r = parse_once(&h, hello_plain, sizeof(hello_plain));
    T_OK(r == HELLO_OK && strcmp(h.sni, HELLO_PLAIN_SNI) == 0 &&
             h.hello_end == sizeof(hello_plain) && h.alpn_len == strlen(HELLO_PQ_ALPN),
         "plain fixture (%zu bytes)", sizeof(hello_plain));
}

static void test_splits(void)
{
    struct hello ref, h;
    enum hello_result rref = parse_once(&ref, hello_pq, sizeof(hello_pq)), r;
    int ok = 1;

    for (size_t k = 1; k < sizeof(hello_pq); k++) {
        memset(&h, 0, sizeof(h));
        r = parse_at(&h, hello_pq, k);
        if (r == HELLO_NEED_MORE)
            r = parse_at(&h, hello_pq, sizeof(hello_pq));
        ok &= same(&ref, rref, &h, r);
    }
    T_OK(ok, "PQ fixture in two parts at every offset equals one-shot");

    r = parse_bytewise(&h, hello_pq, sizeof(hello_pq));
    T_OK(same(&ref, rref, &h, r), "PQ fixture one byte at a time equals one-shot");

    ok = 1;
    for (size_t k = 1; k < sizeof(hello_pq); k++)
        ok &= parse_once(&h, hello_pq, k) == HELLO_NEED_MORE;
    T_OK(ok, "PQ fixture truncated at every offset: NEED_MORE");

    ok = 1;
    for (size_t k = 1; k < sizeof(hello_plain); k++)
        ok &= parse_once(&h, hello_plain, k) == HELLO_NEED_MORE;
    T_OK(ok, "plain fixture truncated at every offset: NEED_MORE");
}

static void test_multi_record(void)
{
    static const struct {
        const char *name;
        size_t sizes[4];
        size_t nsizes;
    } rows[] = {
        {"1-byte records", {1}, 1},
        {"20-byte records", {20}, 1},
        {"2 records, split inside handshake header", {2, PQ_MSG_LEN}, 2},
        {"2 records, split after handshake header", {4, PQ_MSG_LEN}, 2},
        {"handshake header over 4 records", {1, 1, 1, PQ_MSG_LEN}, 4},
        {"2 records, split inside SNI", {HELLO_PQ_OFF_HOST_NAME - 5 + 3, PQ_MSG_LEN}, 2},
        {"last byte in its own record", {PQ_MSG_LEN - 1, 1}, 2},
        {"3 records, 100/7/rest", {100, 7, PQ_MSG_LEN}, 3},
        {"1000-byte records", {1000}, 1},
    };
    static struct wbuf w;
    struct hello h;
    enum hello_result r1, r2;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        frame(&w, PQ_MSG, PQ_MSG_LEN, rows[i].sizes, rows[i].nsizes);
        r1 = parse_once(&h, w.b, w.n);
        r2 = is_pq_result(&h, r1, w.n);
        r1 = parse_bytewise(&h, w.b, w.n);
        T_OK(r2 && is_pq_result(&h, r1, w.n), "multi-record: %s", rows[i].name);
    }
}

/* After every prefix, the saved walk position is the last complete record's end. */
static void test_walk_position(void)
{
    static const size_t twenty = 20;
    static struct wbuf w;
    struct hello h;
    int ok = 1;

    frame(&w, PQ_MSG, PQ_MSG_LEN, &twenty, 1);
    memset(&h, 0, sizeof(h));
    for (size_t k = 1; k < w.n; k++) {
        ok &= parse_at(&h, w.b, k) == HELLO_NEED_MORE;
        ok &= h.next_rec == k / 25 * 25 && h.msg_have == k / 25 * 20;
    }
    T_OK(ok, "walk position saved between calls");
}

static void test_length_mutations(void)
{
    static const struct {
        const char *name;
        size_t off, width;
    } rows[] = {
        {"record length", HELLO_PQ_OFF_REC_LEN, 2},
        {"handshake length", HELLO_PQ_OFF_HS_LEN, 3},
        {"session_id length", HELLO_PQ_OFF_SESSION_ID_LEN, 1},
        {"cipher_suites length", HELLO_PQ_OFF_CIPHER_SUITES_LEN, 2},
        {"compression_methods length", HELLO_PQ_OFF_COMPRESSION_LEN, 1},
        {"extensions length", HELLO_PQ_OFF_EXTENSIONS_LEN, 2},
        {"server_name_list length", HELLO_PQ_OFF_SERVER_NAME_LIST_LEN, 2},
        {"host_name length", HELLO_PQ_OFF_HOST_NAME_LEN, 2},
        {"ALPN list length", HELLO_PQ_OFF_ALPN_LIST_LEN, 2},
        {"ALPN name length", HELLO_PQ_OFF_ALPN_NAME_LEN, 1},
    };
    size_t nrows = sizeof(rows) / sizeof(rows[0]);
    size_t next = sizeof(hello_pq_ext_len_off) / sizeof(hello_pq_ext_len_off[0]);
    uint8_t in[sizeof(hello_pq)];
    struct hello a, b;

    for (size_t i = 0; i < nrows + next; i++) {
        size_t off = i < nrows ? rows[i].off : hello_pq_ext_len_off[i - nrows];
        size_t width = i < nrows ? rows[i].width : 2;
        size_t orig = 0;
        int ok = 1;

        for (size_t j = 0; j < width; j++)
            orig = orig << 8 | hello_pq[off + j];
        size_t vals[] = {orig - 1, orig + 1, 0, ((size_t)1 << (8 * width)) - 1};

        for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
            enum hello_result r1, r2;

            if (vals[v] == orig) /* 0 for the empty extensions: no mutation */
                continue;
            memcpy(in, hello_pq, sizeof(in));
            set_uint(in + off, vals[v], width);
            r1 = parse_once(&a, in, sizeof(in));
            r2 = parse_bytewise(&b, in, sizeof(in));
            ok &= r1 != HELLO_OK && same(&a, r1, &b, r2);
        }
        if (i < nrows)
            T_OK(ok, "%s -1/+1/0/max: never OK", rows[i].name);
        else
            T_OK(ok, "extension #%zu length -1/+1/0/max: never OK", i - nrows);
    }
}

static void test_record_layer(void)
{
    uint8_t in[sizeof(hello_plain)];
    static struct wbuf w;
    static const size_t hundred = 100;

    for (size_t minor = 1; minor <= 4; minor++) {
        memcpy(in, hello_plain, sizeof(in));
        in[2] = (uint8_t)minor;
        T_OK(expect(in, sizeof(in), HELLO_OK, HELLO_REJECT_NONE), "record version 3.%zu accepted",
             minor);
    }
    static const struct {
        const char *name;
        size_t off;
        uint8_t val;
        size_t decided_at;
    } bad[] = {
        {"record type 0x17 (application data)", 0, 0x17, 1},
        {"record type 0x15 (alert)", 0, 0x15, 1},
        {"record version 0x0201", 1, 0x02, 2},
        {"record version 0x0300", 2, 0x00, 3},
        {"record version 0x0305", 2, 0x05, 3},
        {"handshake type 2 (ServerHello)", 5, 0x02, sizeof(hello_plain)},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(in, hello_plain, sizeof(in));
        in[bad[i].off] = bad[i].val;
        T_OK(rejects_after(in, bad[i].decided_at, HELLO_REJECT_NOT_TLS) &&
                 expect(in, sizeof(in), HELLO_REJECT, HELLO_REJECT_NOT_TLS),
             "%s: REJECT NOT_TLS after %zu bytes", bad[i].name, bad[i].decided_at);
    }

    static const uint8_t empty[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
    static const uint8_t huge[] = {0x16, 0x03, 0x01, 0xff, 0xff};
    static const uint8_t over[] = {0x16, 0x03, 0x01, 0x40, 0x01};
    T_OK(rejects_after(empty, 5, HELLO_REJECT_NOT_TLS), "zero-length record: REJECT");
    T_OK(rejects_after(huge, 5, HELLO_REJECT_TOO_LARGE),
         "record length 0xFFFF: TOO_LARGE after the header");
    T_OK(rejects_after(over, 5, HELLO_REJECT_TOO_LARGE), "record length 16385: TOO_LARGE");

    /* the message in two records, the second one spoiled */
    frame(&w, hello_plain + 5, sizeof(hello_plain) - 5, &hundred, 1);
    w.b[105] = 0x17;
    T_OK(expect(w.b, w.n, HELLO_REJECT, HELLO_REJECT_NOT_TLS),
         "non-handshake record inside the message: REJECT");
    frame(&w, hello_plain + 5, sizeof(hello_plain) - 5, &hundred, 1);
    memmove(w.b + 110, w.b + 105, w.n - 105);
    memcpy(w.b + 105, empty, 5);
    w.n += 5;
    T_OK(expect(w.b, w.n, HELLO_REJECT, HELLO_REJECT_NOT_TLS),
         "zero-length record inside the message: REJECT");
}

static void test_trailing(void)
{
    static struct wbuf w;
    static uint8_t msg[PQ_MSG_LEN + 30];
    static const size_t hundred = 100;
    struct hello h;
    enum hello_result r;
    size_t k;

    w.n = 0;
    put(&w, hello_pq, sizeof(hello_pq));
    put(&w,
        "\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x05"
        "early",
        16);
    r = parse_once(&h, w.b, w.n);
    T_OK(is_pq_result(&h, r, sizeof(hello_pq)), "trailing records after the hello: OK, hello_end");

    /* message plus 30 extra bytes, framed: the extra bytes share the last record */
    memcpy(msg, PQ_MSG, PQ_MSG_LEN);
    memset(msg + PQ_MSG_LEN, 0xee, 30);
    frame(&w, msg, sizeof(msg), &hundred, 1);
    r = parse_bytewise(&h, w.b, w.n);
    T_OK(is_pq_result(&h, r, w.n), "bytes after the message in its last record: OK");

    frame(&w, PQ_MSG, PQ_MSG_LEN, &hundred, 1);
    k = w.n;
    memset(w.b + w.n, 0x17, 500);
    w.n += 500;
    r = parse_bytewise(&h, w.b, w.n);
    T_OK(is_pq_result(&h, r, k), "garbage after the last record of a multi-record hello: OK");
}

static void test_not_tls(void)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } rows[] = {
        {"HTTP request", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 37},
        {"SSH banner", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 32},
        {"SSLv2-compatible hello", "\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", 11},
        {"PROXY v1 header", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", 36},
    };
    static uint8_t xs[1000];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        T_OK(rejects_after((const uint8_t *)rows[i].bytes, 1, HELLO_REJECT_NOT_TLS) &&
                 expect((const uint8_t *)rows[i].bytes, rows[i].len, HELLO_REJECT,
                        HELLO_REJECT_NOT_TLS),
             "%s: REJECT NOT_TLS after 1 byte", rows[i].name);
    memset(xs, 'x', sizeof(xs));
    T_OK(rejects_after(xs, 1, HELLO_REJECT_NOT_TLS) &&
             expect(xs, sizeof(xs), HELLO_REJECT, HELLO_REJECT_NOT_TLS),
         "1000 x 'x': REJECT NOT_TLS");
}

static void test_sizes(void)
{
    static const size_t ten = 10, max_rec = 16384;
    static struct wbuf m, w;
    struct hello h;
    enum hello_result r = HELLO_NEED_MORE;
    size_t at, k;

    /* a valid hello of exactly HELLO_MAX_MSG body bytes, padded */
    at = msg_begin(&m, 32, 4, 1);
    put_sni_ext(&m, "big.example", 11);
    k = HELLO_MAX_MSG - (m.n - 4) - 4;
    put_uint(&m, 21, 2);
    put_uint(&m, k, 2);
    memset(m.b + m.n, 0, k);
    m.n += k;
    msg_end(&m, at);
    frame(&w, m.b, m.n, &max_rec, 1);
    r = parse_once(&h, w.b, w.n);
    T_OK(r == HELLO_OK && strcmp(h.sni, "big.example") == 0 && h.hello_end == w.n,
         "body of HELLO_MAX_MSG bytes over 2 records: OK");

    /* one byte more: refused once the handshake header is in */
    set_uint(m.b + 1, HELLO_MAX_MSG + 1, 3);
    frame(&w, m.b, m.n, &max_rec, 1);
    T_OK(rejects_after(w.b, 5 + 16384, HELLO_REJECT_TOO_LARGE),
         "body of HELLO_MAX_MSG+1 bytes: TOO_LARGE");
    set_uint(m.b + 1, 0xffffff, 3);
    frame(&w, m.b, 200, &max_rec, 1);
    T_OK(expect(w.b, w.n, HELLO_REJECT, HELLO_REJECT_TOO_LARGE),
         "handshake length 0xFFFFFF: TOO_LARGE");

    /* the big message in 10-byte records: over HELLO_MAX_RAW raw bytes */
    set_uint(m.b + 1, HELLO_MAX_MSG, 3);
    frame(&w, m.b, m.n, &ten, 1);
    memset(&h, 0, sizeof(h));
    r = HELLO_NEED_MORE;
    for (k = 0; k < HELLO_MAX_RAW && r == HELLO_NEED_MORE;) {
        k = k + 1000 < HELLO_MAX_RAW ? k + 1000 : HELLO_MAX_RAW;
        r = parse_at(&h, w.b, k);
    }
    T_OK(w.n > HELLO_MAX_RAW && r == HELLO_REJECT && h.reject == HELLO_REJECT_TOO_LARGE,
         "raw input reaching HELLO_MAX_RAW without a message: TOO_LARGE (at %zu bytes)", k);

    /* records end 4 bytes short of the budget: no room for another one */
    frame(&w, m.b, m.n, (const size_t[]){18, 10}, 2);
    T_OK(w.b[HELLO_MAX_RAW - 4] == 0x16 &&
             rejects_after(w.b, HELLO_MAX_RAW - 4, HELLO_REJECT_TOO_LARGE),
         "record ending too close to HELLO_MAX_RAW: TOO_LARGE at its end");
}

static void test_extensions(void)
{
    static struct wbuf m, w, short_msg;
    static char name[300];
    struct hello h;
    enum hello_result r;
    size_t at;

    at = msg_begin(&m, 32, 4, 1);
    put_ext(&m, 43, "\x02\x03\x04", 3);
    msg_end(&m, at);
    frame_one(&w, &m);
    r = parse_once(&h, w.b, w.n);
    T_OK(r == HELLO_OK && h.sni_len == 0 && h.sni[0] == '\0' && h.alpn_len == 0,
         "no server_name: OK, sni_len 0");

    at = msg_begin(&m, 32, 4, 1);
    m.n = at;
    set_uint(m.b + 1, m.n - 4, 3);
    frame_one(&w, &m);
    r = parse_once(&h, w.b, w.n);
    T_OK(r == HELLO_OK && h.sni_len == 0, "no extensions block: OK");

    at = msg_begin(&m, 32, 4, 1);
    msg_end(&m, at);
    frame_one(&w, &m);
    T_OK(expect(w.b, w.n, HELLO_OK, HELLO_REJECT_NONE), "empty extensions block: OK");

    at = msg_begin(&m, 32, 4, 1);
    put_sni_ext(&m, "a.example", 9);
    put_uint(&m, 0, 1);
    msg_end(&m, at);
    m.b[at + 1]--; /* the block ends one byte before the message */
    frame_one(&w, &m);
    T_OK(expect(w.b, w.n, HELLO_REJECT, HELLO_REJECT_NOT_TLS),
         "byte after the extensions block: REJECT");

    static const struct {
        const char *name;
        size_t sid, suites, comp;
        enum hello_result want;
    } fixed[] = {
        {"session_id of 32", 32, 2, 1, HELLO_OK},
        {"session_id of 0", 0, 2, 1, HELLO_OK},
        {"session_id of 33", 33, 2, 1, HELLO_REJECT},
        {"cipher_suites empty", 32, 0, 1, HELLO_REJECT},
        {"cipher_suites odd length", 32, 3, 1, HELLO_REJECT},
        {"compression_methods empty", 32, 2, 0, HELLO_REJECT},
        {"compression_methods of 2", 32, 2, 2, HELLO_OK},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        at = msg_begin(&m, fixed[i].sid, fixed[i].suites, fixed[i].comp);
        put_sni_ext(&m, "a.example", 9);
        msg_end(&m, at);
        frame_one(&w, &m);
        T_OK(expect(w.b, w.n, fixed[i].want,
                    fixed[i].want == HELLO_OK ? HELLO_REJECT_NONE : HELLO_REJECT_NOT_TLS),
             "%s: %s", fixed[i].name, fixed[i].want == HELLO_OK ? "OK" : "REJECT");
    }

    /* the body cut short at every offset, lengths kept consistent */
    at = msg_begin(&m, 32, 4, 1);
    put_sni_ext(&m, "a.example", 9);
    put_ext(&m, 16, "\x00\x03\x02h2", 5);
    msg_end(&m, at);
    int ok = 1;
    for (size_t cut = 4; cut < m.n; cut++) {
        memcpy(short_msg.b, m.b, cut);
        short_msg.n = cut;
        set_uint(short_msg.b + 1, cut - 4, 3);
        frame_one(&w, &short_msg);
        r = parse_once(&h, w.b, w.n);
        ok &= cut == at ? r == HELLO_OK : r == HELLO_REJECT && h.reject == HELLO_REJECT_NOT_TLS;
    }
    T_OK(ok, "body cut at every offset: REJECT (OK only where extensions begin)");

    static const struct {
        const char *name;
        const char *ext;
        size_t len;
        enum hello_result want;
    } exts[] = {
        {"duplicate server_name",
         "\x00\x00\x00\x06\x00\x04\x00\x00\x01\x61"
         "\x00\x00\x00\x06\x00\x04\x00\x00\x01\x62",
         20, HELLO_REJECT},
        {"duplicate unknown extension", "\xff\x01\x00\x01\x00\xff\x01\x00\x01\x00", 10,
         HELLO_REJECT},
        {"two server_name entries", "\x00\x00\x00\x0a\x00\x08\x00\x00\x01\x61\x00\x00\x01\x62", 14,
         HELLO_REJECT},
        {"name_type 1", "\x00\x00\x00\x06\x00\x04\x01\x00\x01\x61", 10, HELLO_REJECT},
        {"empty host_name", "\x00\x00\x00\x05\x00\x03\x00\x00\x00", 9, HELLO_REJECT},
        {"server_name_list of 0", "\x00\x00\x00\x02\x00\x00", 6, HELLO_REJECT},
        {"server_name_list of 2", "\x00\x00\x00\x04\x00\x02\x00\x00", 8, HELLO_REJECT},
        {"server_name extension empty", "\x00\x00\x00\x00", 4, HELLO_REJECT},
        {"extension overruns the block", "\x00\x2b\x00\x09\x02\x03\x04", 7, HELLO_REJECT},
        {"ALPN h2", "\x00\x10\x00\x05\x00\x03\x02h2", 9, HELLO_OK},
        {"ALPN empty list", "\x00\x10\x00\x02\x00\x00", 6, HELLO_REJECT},
        {"ALPN empty name", "\x00\x10\x00\x06\x00\x04\x02h2\x00", 10, HELLO_REJECT},
        {"ALPN name overruns the list", "\x00\x10\x00\x05\x00\x03\x03h2", 9, HELLO_REJECT},
        {"ALPN list shorter than the extension", "\x00\x10\x00\x06\x00\x03\x02h2\x00", 10,
         HELLO_REJECT},
        {"ALPN duplicate", "\x00\x10\x00\x05\x00\x03\x02h2\x00\x10\x00\x05\x00\x03\x02h2", 18,
         HELLO_REJECT},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        hello_with(&w, exts[i].ext, exts[i].len);
        T_OK(expect(w.b, w.n, exts[i].want,
                    exts[i].want == HELLO_OK ? HELLO_REJECT_NONE : HELLO_REJECT_NOT_TLS),
             "%s: %s", exts[i].name, exts[i].want == HELLO_OK ? "OK" : "REJECT");
    }

    for (size_t len = 254; len <= 256; len++) {
        memset(name, 'a', len);
        at = msg_begin(&m, 32, 4, 1);
        put_sni_ext(&m, name, len);
        msg_end(&m, at);
        frame_one(&w, &m);
        r = parse_once(&h, w.b, w.n);
        if (len <= HELLO_SNI_MAX)
            T_OK(r == HELLO_OK && h.sni_len == len && strlen(h.sni) == len,
                 "host_name of %zu bytes: OK", len);
        else
            T_OK(r == HELLO_REJECT && h.reject == HELLO_REJECT_NOT_TLS,
                 "host_name of %zu bytes: REJECT", len);
    }

    at = msg_begin(&m, 32, 4, 1);
    put_sni_ext(&m, "a\0\x1b[31m\xff", 8);
    msg_end(&m, at);
    frame_one(&w, &m);
    r = parse_once(&h, w.b, w.n);
    T_OK(r == HELLO_OK && h.sni_len == 8 && memcmp(h.sni, "a\0\x1b[31m\xff", 9) == 0,
         "host_name bytes copied raw, NUL-terminated");

    /* a 300-byte ALPN list: copied truncated */
    at = msg_begin(&m, 32, 4, 1);
    put_uint(&m, 16, 2);
    put_uint(&m, 302, 2);
    put_uint(&m, 300, 2);
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "proto%04d", i);
        put_uint(&m, 9, 1);
        put(&m, name, 9);
    }
    msg_end(&m, at);
    frame_one(&w, &m);
    r = parse_once(&h, w.b, w.n);
    T_OK(r == HELLO_OK && h.alpn_len == HELLO_ALPN_MAX &&
             memcmp(h.alpn, w.b + w.n - 300, HELLO_ALPN_MAX) == 0,
         "ALPN list of 300 bytes: truncated copy");
}

static void test_after_result(void)
{
    static const uint8_t alert = 0x15;
    struct hello h;
    enum hello_result r1, r2;

    r1 = parse_once(&h, &alert, 1);
    r2 = parse_at(&h, hello_plain, sizeof(hello_plain));
    T_OK(r1 == HELLO_REJECT && r2 == HELLO_REJECT, "rejected stays rejected");
    r1 = parse_once(&h, hello_pq, sizeof(hello_pq));
    r2 = parse_at(&h, hello_pq, sizeof(hello_pq));
    T_OK(r1 == HELLO_OK && is_pq_result(&h, r2, sizeof(hello_pq)),
         "calling again after OK gives the same result");
}

int main(void)
{
    test_fixtures();
    test_splits();
    test_multi_record();
    test_walk_position();
    test_length_mutations();
    test_record_layer();
    test_trailing();
    test_not_tls();
    test_sizes();
    test_extensions();
    test_after_result();
    return tap_done();
}
