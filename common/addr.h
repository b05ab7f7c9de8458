/* Socket address parsing and formatting. IP literals only: no DNS. */
#ifndef MC_ADDR_H
#define MC_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text addr_format() writes: "[" v6 "]:" port, plus NUL. */
#define ADDR_STRLEN 64

struct mc_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* A listen address: ":443" is dual stack, "[::]:443" IPv6 only. */
struct mc_bind {
    struct mc_addr addr;
    bool dual_stack; /* ":port": [::] with IPV6_V6ONLY off (0.0.0.0 if no IPv6) */
    bool v6only;     /* explicit IPv6 address: IPV6_V6ONLY on */
};

struct mc_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix; /* 0..32 or 0..128 */
};

/* "1.2.3.4:80", "[::1]:80". Port 1..65535. 0 on success, -1 with *err set. */
int addr_parse_hostport(const char *s, struct mc_addr *out, const char **err);

/* ":443", "0.0.0.0:443", "[::]:443", "127.0.0.1:8443". */
int addr_parse_bind(const char *s, struct mc_bind *out, const char **err);

/* "10.0.0.0/8", "2001:db8::/32"; a bare IP is a full-length prefix only if
 * allow_bare. Host bits set past the prefix are an error. */
int addr_parse_cidr(const char *s, bool allow_bare, struct mc_cidr *out, const char **err);

/* True when ip (AF_INET 4 bytes or AF_INET6 16 bytes) lies inside c. */
bool addr_cidr_contains(const struct mc_cidr *c, int family, const uint8_t *ip);

/* True when the 16 bytes are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
bool addr_ip_v4mapped(const uint8_t *ip);

/* Rewrites an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as AF_INET in place. */
void addr_unmap(struct mc_addr *a);

/* An AF_INET (4 bytes at ip) or else AF_INET6 (16 bytes) address and a
 * host-order port into out. */
void addr_from_ip(struct mc_addr *out, int family, const uint8_t *ip, uint16_t port);

/* "1.2.3.4:5678" or "[2001:db8::1]:443" into buf (ADDR_STRLEN bytes). */
const char *addr_format(const struct mc_addr *a, char *buf, size_t size);

/* The address without the port: "1.2.3.4" or "2001:db8::1". */
const char *addr_format_ip(const struct mc_addr *a, char *buf, size_t size);

/* "10.0.0.0/8" or "2001:db8::/32" into buf (ADDR_STRLEN bytes is ample);
 * NULL when c's family is neither AF_INET nor AF_INET6. */
const char *addr_format_cidr(const struct mc_cidr *c, char *buf, size_t size);

#endif
