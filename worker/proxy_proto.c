/*
 * PROXY protocol header parser and v2 builder (proxy_proto.h).
 *
 * Every check is made on the bytes received so far, so a header that can
 * no longer become valid is refused at its first bad byte rather than
 * when its end arrives. For v1 that includes the line cap: a prefix is
 * refused once its shortest valid completion would not fit in
 * PROXY_PROTO_V1_MAX bytes (each field scanner reports how many bytes its
 * token still needs at least).
 *
 * The address scanners are written out rather than calling inet_pton
 * because they must also judge an unfinished token; they accept exactly
 * what glibc's inet_pton accepts (the unit test compares them).
 */
#include <netinet/in.h>
#include <string.h>

#include "common/mc.h"
#include "worker/proxy_proto.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4      0x11
#define V2_TCP6      0x21
#define V2_ADDR4_LEN 12  /* two IPv4 addresses, two ports */
#define V2_ADDR6_LEN 36  /* two IPv6 addresses, two ports */
#define V2_UNIX_LEN  216 /* two 108-byte socket paths */
#define V2_TLV_HDR   3   /* type, 16-bit length */

/* Shortest token of each v1 field: "0.0.0.0", "::", "0". */
#define V1_MIN_IP4  7
#define V1_MIN_IP6  2
#define V1_MIN_PORT 1

static enum proxy_proto_status bad(struct proxy_proto_hdr *out, const char *why)
{
    out->err = why;
    return PROXY_PROTO_BAD;
}

/* buf[0..n) against the literal lit: OK when all of it is there,
 * INCOMPLETE when n stops inside it, BAD at a differing byte. */
static enum proxy_proto_status match_lit(const uint8_t *buf, size_t n, const void *lit, size_t len)
{
    if (memcmp(buf, lit, MC_MIN(n, len)) != 0)
        return PROXY_PROTO_BAD;
    return n >= len ? PROXY_PROTO_OK : PROXY_PROTO_INCOMPLETE;
}

/*
 * The token scanners below take the token's bytes s[0..len) and whole,
 * true when its delimiter has been seen. They return OK (whole and valid,
 * value stored), INCOMPLETE (not whole, and a valid prefix; *need is the
 * fewest bytes that would make it valid) or BAD.
 */

/* Dotted quad, four decimal octets 0..255, no leading zeros. */
static enum proxy_proto_status scan_ip4(const uint8_t *s, size_t len, bool whole, uint8_t ip[4],
                                        size_t *need)
{
    unsigned octets = 0, val = 0;
    bool digit = false; /* inside an octet */

    for (size_t i = 0; i < len; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            if (digit && val == 0)
                return PROXY_PROTO_BAD; /* a leading zero */
            val = val * 10 + (unsigned)(s[i] - '0');
            if (val > 255)
                return PROXY_PROTO_BAD;
            if (!digit)
                octets++;
            digit = true;
            ip[octets - 1] = (uint8_t)val;
        } else if (s[i] == '.' && digit && octets < 4) {
            digit = false;
            val = 0;
        } else {
            return PROXY_PROTO_BAD;
        }
    }
    if (!whole) {
        /* finish this octet, then ".0" for each missing one */
        *need = digit ? 2 * (4 - octets) : 1 + 2 * (3 - octets);
        return PROXY_PROTO_INCOMPLETE;
    }
    return octets == 4 && digit ? PROXY_PROTO_OK : PROXY_PROTO_BAD;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * RFC 4291 text form: eight groups of 1..4 hex digits, one "::" standing
 * for one or more zero groups, the last 32 bits optionally a dotted quad.
 * After each byte the groups written so far must still fit: 8 without
 * "::", 7 with it.
 */
static enum proxy_proto_status scan_ip6(const uint8_t *s, size_t len, bool whole, uint8_t ip[16],
                                        size_t *need)
{
    uint16_t grp[8];
    unsigned g = 0;      /* groups complete */
    unsigned nd = 0;     /* hex digits of the group being read */
    unsigned val = 0;    /* its value */
    unsigned colons = 0; /* 1 after a single ':', 2 after "::" */
    int dc = -1;         /* groups before the "::", -1 when none yet */
    bool lead = false;   /* a leading ':', which must begin "::" */
    size_t tok = 0;      /* where the group being read began */

    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        int d = hex_value(c);

        if (lead && c != ':')
            return PROXY_PROTO_BAD;
        if (d >= 0) {
            if (nd == 4)
                return PROXY_PROTO_BAD;
            if (nd == 0)
                tok = i;
            val = val << 4 | (unsigned)d;
            nd++;
            colons = 0;
        } else if (c == ':') {
            if (nd > 0) {
                grp[g++] = (uint16_t)val;
                nd = 0;
                val = 0;
                colons = 1;
            } else if (i == 0) {
                lead = true;
                colons = 1;
            } else if (colons == 1 && dc < 0) {
                dc = (int)g;
                lead = false;
                colons = 2;
            } else {
                return PROXY_PROTO_BAD; /* ":::" or a second "::" */
            }
        } else if (c == '.') {
            /* the group being read was the first octet of a dotted quad,
             * which takes the last two groups */
            uint8_t ip4[4];
            size_t need4 = 0;
            enum proxy_proto_status r;

            if (nd == 0 || (dc < 0 ? g != 6 : g > 5))
                return PROXY_PROTO_BAD;
            r = scan_ip4(s + tok, len - tok, whole, ip4, &need4);
            if (r != PROXY_PROTO_OK) {
                *need = need4;
                return r;
            }
            grp[g++] = (uint16_t)(ip4[0] << 8 | ip4[1]);
            grp[g++] = (uint16_t)(ip4[2] << 8 | ip4[3]);
            nd = 0;
            colons = 0;
            break;
        } else {
            return PROXY_PROTO_BAD;
        }
        if (g + (nd > 0 || colons == 1) > (dc < 0 ? 8u : 7u))
            return PROXY_PROTO_BAD;
    }
    if (!whole) {
        if (lead || colons == 1)
            *need = 1; /* ":" or a digit */
        else if (colons == 2 || (nd > 0 && (dc >= 0 || g == 7)))
            *need = 0; /* valid as it stands */
        else
            *need = 2; /* "::" */
        return PROXY_PROTO_INCOMPLETE;
    }
    if (colons == 1) /* a trailing single ':', or ":" alone */
        return PROXY_PROTO_BAD;
    if (nd > 0)
        grp[g++] = (uint16_t)val;
    if (dc < 0 && g != 8)
        return PROXY_PROTO_BAD;
    memset(ip, 0, 16);
    for (unsigned k = 0; k < g; k++) {
        /* groups after the "::" go to the end */
        unsigned at = dc >= 0 && k >= (unsigned)dc ? 8 - g + k : k;

        ip[2 * at] = (uint8_t)(grp[k] >> 8);
        ip[2 * at + 1] = (uint8_t)grp[k];
    }
    return PROXY_PROTO_OK;
}

/* Decimal 0..65535, no sign, no leading zeros. */
static enum proxy_proto_status scan_port(const uint8_t *s, size_t len, bool whole, uint16_t *port,
                                         size_t *need)
{
    unsigned val = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || (i > 0 && s[0] == '0'))
            return PROXY_PROTO_BAD;
        val = val * 10 + (unsigned)(s[i] - '0');
        if (val > 65535)
            return PROXY_PROTO_BAD;
    }
    if (!whole) {
        *need = len == 0 ? V1_MIN_PORT : 0;
        return PROXY_PROTO_INCOMPLETE;
    }
    if (len == 0)
        return PROXY_PROTO_BAD;
    *port = (uint16_t)val;
    return PROXY_PROTO_OK;
}

/* "PROXY UNKNOWN" is followed by CRLF, or by a space and anything but CR
 * or LF up to the CRLF. */
static enum proxy_proto_status parse_v1_unknown(const uint8_t *buf, size_t n, size_t p,
                                                struct proxy_proto_hdr *out)
{
    if (p < n && buf[p] != '\r' && buf[p] != ' ')
        return bad(out, "v1 UNKNOWN not followed by a space or CRLF");
    for (; p < n; p++) {
        if (buf[p] == '\n')
            return bad(out, "v1 line ends in a lone LF");
        if (buf[p] == '\r')
            break;
    }
    if (p >= n) {
        if (n + 2 > PROXY_PROTO_V1_MAX)
            return bad(out, "v1 line without CRLF within 107 bytes");
        return PROXY_PROTO_INCOMPLETE;
    }
    /* buf[p] is CR */
    if (p + 1 >= n)
        return p + 2 > PROXY_PROTO_V1_MAX ? bad(out, "v1 line without CRLF within 107 bytes")
                                          : PROXY_PROTO_INCOMPLETE;
    if (buf[p + 1] != '\n')
        return bad(out, "v1 line has a lone CR");
    if (p + 2 > PROXY_PROTO_V1_MAX)
        return bad(out, "v1 line without CRLF within 107 bytes");
    out->len = p + 2;
    out->local = true;
    return PROXY_PROTO_OK;
}

/* The four fields of a TCP4 or TCP6 line, from p (just past "TCPx "). */
static enum proxy_proto_status parse_v1_tcp(const uint8_t *buf, size_t n, size_t p, int family,
                                            struct proxy_proto_hdr *out)
{
    static const char *const field_err[4] = {"v1 bad source address", "v1 bad destination address",
                                             "v1 bad source port", "v1 bad destination port"};
    const size_t min_ip = family == AF_INET ? V1_MIN_IP4 : V1_MIN_IP6;
    uint8_t ip[2][16];
    uint16_t port[2];

    for (int k = 0; k < 4; k++) {
        /* the last field ends at the CR, the others at a space */
        const uint8_t *end = memchr(buf + p, k == 3 ? '\r' : ' ', n - p);
        bool whole = end != NULL;
        size_t tlen = whole ? (size_t)(end - (buf + p)) : n - p;
        size_t need = 0;
        enum proxy_proto_status r;

        if (k >= 2)
            r = scan_port(buf + p, tlen, whole, &port[k - 2], &need);
        else if (family == AF_INET)
            r = scan_ip4(buf + p, tlen, whole, ip[k], &need);
        else
            r = scan_ip6(buf + p, tlen, whole, ip[k], &need);
        if (r == PROXY_PROTO_BAD)
            return bad(out, field_err[k]);
        if (r == PROXY_PROTO_INCOMPLETE) {
            /* this token, a space and the shortest token for each field
             * after it, and the CRLF */
            size_t min_len = n + need + 2;

            for (int j = k + 1; j < 4; j++)
                min_len += 1 + (j >= 2 ? V1_MIN_PORT : min_ip);
            if (min_len > PROXY_PROTO_V1_MAX)
                return bad(out, "v1 line longer than 107 bytes");
            return PROXY_PROTO_INCOMPLETE;
        }
        p += tlen + 1;
    }
    /* buf[p - 1] is the CR */
    if (p >= n)
        return p + 1 > PROXY_PROTO_V1_MAX ? bad(out, "v1 line longer than 107 bytes")
                                          : PROXY_PROTO_INCOMPLETE;
    if (buf[p] != '\n')
        return bad(out, "v1 line has a lone CR");
    if (p + 1 > PROXY_PROTO_V1_MAX)
        return bad(out, "v1 line longer than 107 bytes");
    out->len = p + 1;
    addr_from_ip(&out->src, family, ip[0], port[0]);
    addr_from_ip(&out->dst, family, ip[1], port[1]);
    return PROXY_PROTO_OK;
}

static enum proxy_proto_status parse_v1(const uint8_t *buf, size_t n, struct proxy_proto_hdr *out)
{
    static const struct {
        const char *lit;
        int family; /* AF_UNSPEC: UNKNOWN */
    } protos[] = {{"TCP4 ", AF_INET}, {"TCP6 ", AF_INET6}, {"UNKNOWN", AF_UNSPEC}};
    const size_t p = 6; /* past "PROXY " */
    enum proxy_proto_status r = match_lit(buf, n, "PROXY ", p);
    bool partial = false;

    if (r != PROXY_PROTO_OK)
        return r == PROXY_PROTO_BAD ? bad(out, "v1 header does not start with \"PROXY \"") : r;
    for (size_t i = 0; i < MC_ARRAY_LEN(protos); i++) {
        size_t len = strlen(protos[i].lit);

        r = match_lit(buf + p, n - p, protos[i].lit, len);
        if (r == PROXY_PROTO_INCOMPLETE)
            partial = true;
        if (r != PROXY_PROTO_OK)
            continue;
        if (protos[i].family == AF_UNSPEC)
            return parse_v1_unknown(buf, n, p + len, out);
        return parse_v1_tcp(buf, n, p + len, protos[i].family, out);
    }
    return partial ? PROXY_PROTO_INCOMPLETE : bad(out, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
}

/* Size of the address block of a v2 family byte; -1 for an invalid byte. */
static int v2_block_len(uint8_t fam)
{
    switch (fam) {
    case 0x00: /* UNSPEC */
        return 0;
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
        return V2_ADDR4_LEN;
    case 0x21:
    case 0x22:
        return V2_ADDR6_LEN;
    case 0x31: /* UNIX stream */
    case 0x32: /* UNIX datagram */
        return V2_UNIX_LEN;
    default:
        return -1;
    }
}

/* TLVs in buf[from..total), checked as far as n: each must end inside
 * the header, and they must fill it exactly. */
static enum proxy_proto_status v2_check_tlvs(const uint8_t *buf, size_t n, size_t from,
                                             size_t total, struct proxy_proto_hdr *out)
{
    size_t at = from;

    while (at < total) {
        if (total - at < V2_TLV_HDR)
            return bad(out, "v2 TLV header runs past the end of the header");
        if (n < at + V2_TLV_HDR)
            return PROXY_PROTO_INCOMPLETE;
        at += V2_TLV_HDR + ((size_t)buf[at + 1] << 8 | buf[at + 2]);
        if (at > total)
            return bad(out, "v2 TLV runs past the end of the header");
    }
    return n >= total ? PROXY_PROTO_OK : PROXY_PROTO_INCOMPLETE;
}

static enum proxy_proto_status parse_v2(const uint8_t *buf, size_t n, struct proxy_proto_hdr *out)
{
    enum proxy_proto_status r = match_lit(buf, n, v2_sig, sizeof(v2_sig));
    unsigned cmd;
    int block;
    size_t total;

    if (r != PROXY_PROTO_OK)
        return r == PROXY_PROTO_BAD ? bad(out, "bad v2 signature") : r;
    if (n < 13)
        return PROXY_PROTO_INCOMPLETE;
    if (buf[12] >> 4 != 2)
        return bad(out, "v2 version is not 2");
    cmd = buf[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return bad(out, "v2 command is neither LOCAL nor PROXY");
    if (n < 14)
        return PROXY_PROTO_INCOMPLETE;
    block = v2_block_len(buf[13]);
    if (block < 0)
        return bad(out, "v2 family or transport is invalid");
    if (cmd == V2_CMD_PROXY && buf[13] != V2_TCP4 && buf[13] != V2_TCP6)
        return bad(out, "v2 PROXY is not TCP over IPv4 or IPv6");
    if (n < PROXY_PROTO_V2_HDR)
        return PROXY_PROTO_INCOMPLETE;
    total = PROXY_PROTO_V2_HDR + ((size_t)buf[14] << 8 | buf[15]);
    if (total < PROXY_PROTO_V2_HDR + (size_t)block)
        return bad(out, "v2 length shorter than its address block");
    if (total > PROXY_PROTO_MAX)
        return bad(out, "v2 header longer than mc-proxy accepts");
    if (cmd == V2_CMD_LOCAL) {
        if (n < total)
            return PROXY_PROTO_INCOMPLETE;
        out->len = total;
        out->local = true;
        return PROXY_PROTO_OK;
    }
    r = v2_check_tlvs(buf, n, PROXY_PROTO_V2_HDR + (size_t)block, total, out);
    if (r != PROXY_PROTO_OK)
        return r;
    out->len = total;
    if (buf[13] == V2_TCP4) {
        const uint8_t *a = buf + PROXY_PROTO_V2_HDR;

        addr_from_ip(&out->src, AF_INET, a, (uint16_t)(a[8] << 8 | a[9]));
        addr_from_ip(&out->dst, AF_INET, a + 4, (uint16_t)(a[10] << 8 | a[11]));
    } else {
        const uint8_t *a = buf + PROXY_PROTO_V2_HDR;

        addr_from_ip(&out->src, AF_INET6, a, (uint16_t)(a[32] << 8 | a[33]));
        addr_from_ip(&out->dst, AF_INET6, a + 16, (uint16_t)(a[34] << 8 | a[35]));
    }
    return PROXY_PROTO_OK;
}

enum proxy_proto_status proxy_proto_parse(const uint8_t *buf, size_t n, struct proxy_proto_hdr *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return PROXY_PROTO_INCOMPLETE;
    if (buf[0] == 'P')
        return parse_v1(buf, n, out);
    if (buf[0] == v2_sig[0])
        return parse_v2(buf, n, out);
    return bad(out, "not a PROXY protocol header");
}

/* The address's IP as 4 bytes (IPv4, or IPv4-mapped IPv6 unmapped) when
 * it has that form; false otherwise. */
static bool ip4_of(const struct mc_addr *a, uint8_t ip[4])
{
    struct mc_addr u = *a;

    addr_unmap(&u);
    if (u.ss.ss_family != AF_INET)
        return false;
    memcpy(ip, &((const struct sockaddr_in *)&u.ss)->sin_addr, 4);
    return true;
}

/* The address's IP as 16 bytes, an IPv4 one mapped; false for neither. */
static bool ip6_of(const struct mc_addr *a, uint8_t ip[16])
{
    if (a->ss.ss_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
        return true;
    }
    if (a->ss.ss_family != AF_INET)
        return false;
    memset(ip, 0, 10);
    ip[10] = ip[11] = 0xff;
    memcpy(ip + 12, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
    return true;
}

/* The port in network byte order, as the header carries it. */
static const uint8_t *port_of(const struct mc_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_port;
    return (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_port;
}

size_t proxy_proto_build_v2(uint8_t *out, size_t cap, const struct mc_addr *src,
                            const struct mc_addr *dst)
{
    uint8_t s[16], d[16];
    bool v4 = ip4_of(src, s) && ip4_of(dst, d);
    size_t block = v4 ? V2_ADDR4_LEN : V2_ADDR6_LEN;
    size_t ip_len = v4 ? 4 : 16;
    uint8_t *a = out + PROXY_PROTO_V2_HDR;

    if (!v4 && (!ip6_of(src, s) || !ip6_of(dst, d)))
        return 0;
    if (cap < PROXY_PROTO_V2_HDR + block)
        return 0;
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x20 | V2_CMD_PROXY;
    out[13] = v4 ? V2_TCP4 : V2_TCP6;
    out[14] = 0;
    out[15] = (uint8_t)block;
    memcpy(a, s, ip_len);
    memcpy(a + ip_len, d, ip_len);
    memcpy(a + 2 * ip_len, port_of(src), 2);
    memcpy(a + 2 * ip_len + 2, port_of(dst), 2);
    return PROXY_PROTO_V2_HDR + block;
}
