/*
 * TLS ClientHello reader (RFC 8446 5.1 and 4.1.2, RFC 6066 3, RFC 7301 3.1).
 * All integers are big-endian.
 *
 * TLS record; the handshake message may be fragmented over any number:
 *
 *   +------+-------------+-----------+---------------------+
 *   | 0x16 | 0x03 0x01-4 | length(2) | fragment[length]    |  length 1..16384
 *   +------+-------------+-----------+---------------------+
 *    type   legacy_record_version
 *
 * Handshake message, the fragments concatenated:
 *
 *   +------+-----------+------------------------------+
 *   | 0x01 | length(3) | ClientHello body[length]     |  length <= HELLO_MAX_MSG
 *   +------+-----------+------------------------------+
 *
 * ClientHello body:
 *
 *   legacy_version(2) random(32)
 *   session_id_len(1)      session_id[0..32]
 *   cipher_suites_len(2)   cipher_suites[2..65534]        even
 *   compression_len(1)     compression_methods[1..255]
 *   extensions_len(2)      extensions[extensions_len]     absent only if the
 *                                                         body ends here; else
 *                                                         ends exactly at it
 * each extension:
 *   type(2) len(2) data[len]                              no type twice
 *
 * server_name (type 0) data:
 *   list_len(2) = len - 2
 *     name_type(1) = 0 (host_name)  host_name_len(2)  host_name[1..255]
 *   exactly one entry
 *
 * application_layer_protocol_negotiation (type 16) data:
 *   list_len(2) = len - 2, >= 2
 *     name_len(1) name[1..255]   repeated to the end of the list
 */
#include "worker/hello.h"

#include <string.h>

#define REC_HDR         5
#define REC_MAX         16384 /* RFC 8446 5.1: 2^14 */
#define HS_HDR          4
#define CT_HANDSHAKE    22
#define HS_CLIENT_HELLO 1
#define SESSION_ID_MAX  32
#define EXT_SERVER_NAME 0
#define EXT_ALPN        16
#define NAME_TYPE_HOST  0

/* Bounds-checked reader: every take fails instead of reading past the end. */
struct cur {
    const uint8_t *p;
    size_t left;
};

static int cur_take(struct cur *c, size_t n, struct cur *out)
{
    if (c->left < n)
        return -1;
    if (out != NULL) {
        out->p = c->p;
        out->left = n;
    }
    c->p += n;
    c->left -= n;
    return 0;
}

static int cur_uint(struct cur *c, size_t width, size_t *v)
{
    struct cur f;

    if (cur_take(c, width, &f) < 0)
        return -1;
    *v = 0;
    for (size_t i = 0; i < width; i++)
        *v = *v << 8 | f.p[i];
    return 0;
}

/* A vector with a length prefix of width bytes, returned as a sub-reader. */
static int cur_vec(struct cur *c, size_t width, struct cur *out)
{
    size_t n;

    if (cur_uint(c, width, &n) < 0)
        return -1;
    return cur_take(c, n, out);
}

/* server_name: exactly one host_name entry of 1..HELLO_SNI_MAX bytes. */
static int parse_sni(struct hello *h, struct cur ext)
{
    struct cur list, name;
    size_t type;

    if (cur_vec(&ext, 2, &list) < 0 || ext.left != 0)
        return -1;
    if (cur_uint(&list, 1, &type) < 0 || type != NAME_TYPE_HOST)
        return -1;
    if (cur_vec(&list, 2, &name) < 0 || list.left != 0)
        return -1;
    if (name.left == 0 || name.left > HELLO_SNI_MAX)
        return -1;
    /* raw bytes: the route lookup validates the hostname */
    memcpy(h->sni, name.p, name.left);
    h->sni[name.left] = '\0';
    h->sni_len = (uint16_t)name.left;
    return 0;
}

/* ALPN: a non-empty list of non-empty names; kept in wire form. */
static int parse_alpn(struct hello *h, struct cur ext)
{
    struct cur list, names, name;

    if (cur_vec(&ext, 2, &list) < 0 || ext.left != 0 || list.left == 0)
        return -1;
    names = list;
    while (names.left > 0) {
        if (cur_vec(&names, 1, &name) < 0 || name.left == 0)
            return -1;
    }
    h->alpn_len = (uint16_t)(list.left < HELLO_ALPN_MAX ? list.left : HELLO_ALPN_MAX);
    memcpy(h->alpn, list.p, h->alpn_len);
    return 0;
}

static int parse_extensions(struct hello *h, struct cur exts)
{
    uint8_t seen[65536 / 8] = {0}; /* one bit per extension type */
    struct cur data;
    size_t type;

    while (exts.left > 0) {
        if (cur_uint(&exts, 2, &type) < 0 || cur_vec(&exts, 2, &data) < 0)
            return -1;
        /* RFC 8446 4.2: no duplicates, so the backend cannot see another SNI */
        if (seen[type / 8] & (1u << (type % 8)))
            return -1;
        seen[type / 8] |= (uint8_t)(1u << (type % 8));
        if (type == EXT_SERVER_NAME && parse_sni(h, data) < 0)
            return -1;
        if (type == EXT_ALPN && parse_alpn(h, data) < 0)
            return -1;
    }
    return 0;
}

static int parse_body(struct hello *h, struct cur body)
{
    struct cur v, exts;

    if (cur_take(&body, 2 + 32, NULL) < 0) /* legacy_version, random */
        return -1;
    if (cur_vec(&body, 1, &v) < 0 || v.left > SESSION_ID_MAX)
        return -1;
    if (cur_vec(&body, 2, &v) < 0 || v.left == 0 || v.left % 2 != 0)
        return -1;
    if (cur_vec(&body, 1, &v) < 0 || v.left == 0)
        return -1;
    if (body.left == 0) /* extensions are optional */
        return 0;
    if (cur_vec(&body, 2, &exts) < 0 || body.left != 0)
        return -1;
    return parse_extensions(h, exts);
}

static size_t rec_len(const uint8_t *rec)
{
    return (size_t)rec[3] << 8 | rec[4];
}

static void clear_results(struct hello *h)
{
    h->sni_len = 0;
    h->sni[0] = '\0';
    h->alpn_len = 0;
}

static enum hello_result reject(struct hello *h, enum hello_reject why)
{
    h->reject = why;
    clear_results(h);
    return HELLO_REJECT;
}

/*
 * Checks as much of the record header at buf[pos] as has arrived, so that
 * non-TLS input is refused on its first byte and an oversized record as
 * soon as its length is in, without waiting for its body.
 */
static enum hello_reject check_record_header(const uint8_t *buf, size_t len, size_t pos)
{
    size_t have = len - pos;

    /* no room left in the budget for even a 1-byte record */
    if (pos + REC_HDR + 1 > HELLO_MAX_RAW)
        return HELLO_REJECT_TOO_LARGE;
    if (have >= 1 && buf[pos] != CT_HANDSHAKE)
        return HELLO_REJECT_NOT_TLS;
    if (have >= 2 && buf[pos + 1] != 3)
        return HELLO_REJECT_NOT_TLS;
    if (have >= 3 && (buf[pos + 2] < 1 || buf[pos + 2] > 4))
        return HELLO_REJECT_NOT_TLS;
    if (have >= REC_HDR) {
        size_t n = rec_len(buf + pos);

        if (n == 0) /* RFC 8446 5.1: no zero-length handshake fragments */
            return HELLO_REJECT_NOT_TLS;
        if (n > REC_MAX || pos + REC_HDR + n > HELLO_MAX_RAW)
            return HELLO_REJECT_TOO_LARGE;
    }
    return HELLO_REJECT_NONE;
}

/*
 * Accounts one complete record's fragment to the handshake message. The
 * 4-byte handshake header may itself be split, so it is collected in
 * h->hs_hdr; the rest of the message is gathered only once complete.
 */
static enum hello_reject take_fragment(struct hello *h, const uint8_t *frag, size_t n)
{
    for (size_t i = 0; i < n && h->hs_hdr_have < HS_HDR; i++)
        h->hs_hdr[h->hs_hdr_have++] = frag[i];
    h->msg_have += (uint32_t)n;

    /* records are never empty, so the type byte is in */
    if (h->hs_hdr[0] != HS_CLIENT_HELLO)
        return HELLO_REJECT_NOT_TLS;
    if (h->msg_need == 0 && h->hs_hdr_have == HS_HDR) {
        size_t body = (size_t)h->hs_hdr[1] << 16 | (size_t)h->hs_hdr[2] << 8 | h->hs_hdr[3];

        if (body > HELLO_MAX_MSG)
            return HELLO_REJECT_TOO_LARGE;
        h->msg_need = (uint32_t)(HS_HDR + body);
    }
    return HELLO_REJECT_NONE;
}

static int msg_complete(const struct hello *h)
{
    return h->msg_need != 0 && h->msg_have >= h->msg_need;
}

/*
 * Copies the message body out of the records in buf[0..end), which were
 * all validated by the walk: drops record headers and the handshake
 * header, and stops at the body's end.
 */
static void gather(const uint8_t *buf, size_t end, uint8_t *dst, size_t body_len)
{
    size_t skip = HS_HDR, got = 0;

    for (size_t pos = 0; pos < end; pos += REC_HDR + rec_len(buf + pos)) {
        const uint8_t *frag = buf + pos + REC_HDR;
        size_t n = rec_len(buf + pos);
        size_t k = n < skip ? n : skip;

        frag += k;
        n -= k;
        skip -= k;
        if (n > body_len - got)
            n = body_len - got;
        memcpy(dst + got, frag, n);
        got += n;
    }
}

enum hello_result hello_parse(struct hello *h, const uint8_t *buf, size_t len, uint8_t *scratch)
{
    enum hello_reject why;
    struct cur body;

    if (h->reject != HELLO_REJECT_NONE)
        return HELLO_REJECT;

    /* walk only the records completed since the last call */
    while (!msg_complete(h)) {
        size_t pos = h->next_rec, n;

        why = check_record_header(buf, len, pos);
        if (why != HELLO_REJECT_NONE)
            return reject(h, why);
        if (len - pos < REC_HDR)
            return HELLO_NEED_MORE;
        n = rec_len(buf + pos);
        if (len - pos - REC_HDR < n)
            return HELLO_NEED_MORE;
        why = take_fragment(h, buf + pos + REC_HDR, n);
        if (why != HELLO_REJECT_NONE)
            return reject(h, why);
        h->next_rec = (uint32_t)(pos + REC_HDR + n);
        h->one_record = pos == 0;
    }
    h->hello_end = h->next_rec;

    body.left = h->msg_need - HS_HDR;
    if (h->one_record) {
        body.p = buf + REC_HDR + HS_HDR;
    } else {
        gather(buf, h->hello_end, scratch, body.left);
        body.p = scratch;
    }
    clear_results(h);
    if (parse_body(h, body) < 0)
        return reject(h, HELLO_REJECT_NOT_TLS);
    return HELLO_OK;
}
