/*
 * proxy_proto_build_v2() over arbitrary addresses must write a header
 * that proxy_proto_parse() reads back whole, with the same addresses:
 * TCP4 exactly when both have an IPv4 form (IPv4, or IPv4-mapped IPv6),
 * TCP6 otherwise with IPv4 ones mapped. Input: byte 0 picks the two
 * families (bit 0 src, bit 1 dst: set is IPv6), then 16 bytes of src
 * address, 16 of dst, 2 of src port and 2 of dst port; byte 37, when
 * present, shortens the output buffer by that many bytes.
 */
#include "worker/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define IN_LEN 37

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The address's IP as 16 bytes, IPv4 mapped. */
static void as_ip6(const struct mc_addr *a, uint8_t ip[16])
{
    if (a->ss.ss_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
        return;
    }
    memset(ip, 0, 10);
    ip[10] = ip[11] = 0xff;
    memcpy(ip + 12, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
}

static uint16_t port_of(const struct mc_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* Same IP (compared in IPv6 form) and port. */
static int same_addr(const struct mc_addr *a, const struct mc_addr *b)
{
    uint8_t x[16], y[16];

    as_ip6(a, x);
    as_ip6(b, y);
    return memcmp(x, y, 16) == 0 && port_of(a) == port_of(b);
}

static int has_ip4(const struct mc_addr *a)
{
    struct mc_addr u = *a;

    addr_unmap(&u);
    return u.ss.ss_family == AF_INET;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mc_addr src, dst;
    struct proxy_proto_hdr h;
    uint8_t out[64];
    size_t cap = sizeof(out), n, want;
    int tcp4;

    if (size < IN_LEN)
        return 0;
    addr_from_ip(&src, data[0] & 1 ? AF_INET6 : AF_INET, data + 1,
                 (uint16_t)(data[33] << 8 | data[34]));
    addr_from_ip(&dst, data[0] & 2 ? AF_INET6 : AF_INET, data + 17,
                 (uint16_t)(data[35] << 8 | data[36]));
    if (size > IN_LEN)
        cap -= data[IN_LEN] % sizeof(out);
    tcp4 = has_ip4(&src) && has_ip4(&dst);
    want = tcp4 ? 28 : 52;

    n = proxy_proto_build_v2(out, cap, &src, &dst);
    if (cap < want) {
        if (n != 0)
            __builtin_trap();
        return 0;
    }
    if (n != want || proxy_proto_parse(out, n, &h) != PROXY_PROTO_OK || h.len != n || h.local ||
        h.src.ss.ss_family != (tcp4 ? AF_INET : AF_INET6) || !same_addr(&h.src, &src) ||
        !same_addr(&h.dst, &dst))
        __builtin_trap();
    return 0;
}
