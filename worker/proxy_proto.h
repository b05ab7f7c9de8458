/*
 * PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
 * proxy-protocol.txt specifies them: the header a trusted proxy in front
 * puts before the client's bytes to say whose connection it is.
 *
 * proxy_proto_parse() reads one header from an untrusted peer. It is a
 * pure function over the bytes received so far: it allocates nothing,
 * never reads past n, and is resumable by calling it again over the same
 * buffer with more bytes (it re-parses from buf[0]; a header is at most
 * PROXY_PROTO_MAX bytes, so that is cheap). It is exact about prefixes:
 * INCOMPLETE only while the bytes so far can still begin a valid header,
 * BAD as soon as they cannot, so a peer cannot hold a connection open by
 * trickling a header that will never be valid.
 *
 * proxy_proto_build_v2() writes the v2 header mc-proxy sends to backends.
 */
#ifndef MC_PROXY_PROTO_H
#define MC_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"

/* Longest v1 line, CRLF included (the specification's worst case). */
#define PROXY_PROTO_V1_MAX 107

/* The fixed part of a v2 header: signature, version/command, family, length. */
#define PROXY_PROTO_V2_HDR 16

/*
 * Largest header accepted (v2: 16 + its length field). The specification
 * allows 16 + 65535, but the connection reads header and ClientHello into
 * one buffer, and every byte allowed here is a byte more per connection,
 * not a byte taken from the ClientHello's 16 KiB. 1 KiB of address block
 * and TLVs holds the largest address block (IPv6, 36 bytes) with every TLV
 * a real sender emits: HAProxy's ALPN, AUTHORITY (an SNI of at most 255
 * bytes), UNIQUE_ID (at most 128), SSL with its sub-TLVs and NETNS, and
 * the cloud load balancers' endpoint-id TLVs, with room to spare. A header
 * over it is refused as malformed, never truncated.
 */
#define PROXY_PROTO_MAX (PROXY_PROTO_V2_HDR + 1024)

enum proxy_proto_status {
    PROXY_PROTO_INCOMPLETE = 0, /* a valid prefix: call again with more bytes */
    PROXY_PROTO_OK = 1,         /* a whole valid header; see struct proxy_proto_hdr */
    PROXY_PROTO_BAD = -1,       /* not a valid header, whatever follows; see err */
};

struct proxy_proto_hdr {
    size_t len; /* bytes the header occupies: the caller's ClientHello starts at buf + len */
    bool local; /* v2 LOCAL, or v1 UNKNOWN: keep the TCP peer's address */
    struct mc_addr src,
        dst;         /* as sent (an IPv4-mapped IPv6 address stays IPv6); valid when !local */
    const char *err; /* on BAD: a short static text saying what was wrong (for the debug log) */
};

/*
 * Parses the header at buf[0..n), the first bytes of the connection; v1 or
 * v2 is told by the first byte. Validation is strict: v1 is exactly
 * "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces, addresses
 * of the named family (IPv4 without leading zeros, IPv6 as inet_pton
 * reads it) and decimal ports 0..65535 without leading zeros, or "PROXY
 * UNKNOWN" then anything up to the CRLF, all within PROXY_PROTO_V1_MAX
 * bytes. v2 needs version 2, command LOCAL or PROXY, for PROXY a TCP over
 * IPv4 or IPv6 family, a length covering the address block and within
 * PROXY_PROTO_MAX, and TLVs that each end inside the header. A LOCAL
 * header's address block and TLVs are skipped unread, as the
 * specification says.
 */
enum proxy_proto_status proxy_proto_parse(const uint8_t *buf, size_t n,
                                          struct proxy_proto_hdr *out);

/*
 * Writes a v2 PROXY header for a TCP connection from src to dst into out:
 * TCP4 when src is IPv4 or IPv4-mapped IPv6, with dst converted to IPv4;
 * TCP6 otherwise, with an IPv4 dst written as IPv4-mapped. A dst that has
 * no IPv4 form under an IPv4 src (no real connection has one) makes it
 * TCP6 too, src mapped, so that no address is lost. No TLVs. Returns the
 * header's length (28 or 52), or 0 when cap is too small or an address is
 * neither IPv4 nor IPv6.
 */
size_t proxy_proto_build_v2(uint8_t *out, size_t cap, const struct mc_addr *src,
                            const struct mc_addr *dst);

#endif
