/*
 * Socket address parsing and formatting. Only IP literals are accepted
 * (inet_pton): the proxy never resolves names, so a config or an admin
 * request cannot make it depend on DNS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/addr.h"
#include "common/mc.h"

/* Longer than any IPv6 literal inet_pton accepts (45 bytes). */
#define IP_TEXT_MAX 64

/* "1".."65535": decimal digits only, so no sign, space or junk slips by. */
static int parse_port(const char *s, uint16_t *port, const char **err)
{
    unsigned long v = 0;
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5) {
            *err = "port must be a number from 1 to 65535";
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (i == 0) {
        *err = "missing port";
        return -1;
    }
    if (v == 0 || v > 65535) {
        *err = "port must be a number from 1 to 65535";
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

/* Copies the first len bytes of s into buf as a C string, if they fit. */
static int copy_ip(const char *s, size_t len, char *buf)
{
    if (len >= IP_TEXT_MAX)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

static void set_v4(struct mc_addr *out, const struct in_addr *ip, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;

    memset(out, 0, sizeof(*out));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = *ip;
    out->len = sizeof(*sin);
}

static void set_v6(struct mc_addr *out, const struct in6_addr *ip, uint16_t port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

    memset(out, 0, sizeof(*out));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = *ip;
    out->len = sizeof(*sin6);
}

void addr_from_ip(struct mc_addr *out, int family, const uint8_t *ip, uint16_t port)
{
    if (family == AF_INET) {
        struct in_addr ip4;

        memcpy(&ip4, ip, sizeof(ip4));
        set_v4(out, &ip4, port);
    } else {
        struct in6_addr ip6;

        memcpy(&ip6, ip, sizeof(ip6));
        set_v6(out, &ip6, port);
    }
}

/*
 * Splits "host:port" or "[v6]:port" and parses both halves. An empty host
 * (":443") is accepted only when allow_empty, and reported as *empty.
 */
static int parse_hostport(const char *s, bool allow_empty, struct mc_addr *out, bool *empty,
                          bool *bracketed, const char **err)
{
    char host[IP_TEXT_MAX];
    const char *port;
    uint16_t portnum;

    *empty = false;
    *bracketed = false;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        struct in6_addr ip6;

        if (end == NULL || copy_ip(s + 1, (size_t)(end - s - 1), host) < 0 ||
            inet_pton(AF_INET6, host, &ip6) != 1) {
            *err = "invalid IPv6 address";
            return -1;
        }
        if (end[1] != ':') {
            *err = end[1] == '\0' ? "missing port" : "expected ':' after ']'";
            return -1;
        }
        if (parse_port(end + 2, &portnum, err) < 0)
            return -1;
        set_v6(out, &ip6, portnum);
        *bracketed = true;
        return 0;
    }

    port = strrchr(s, ':');
    if (port == NULL) {
        *err = "missing port";
        return -1;
    }
    if (memchr(s, ':', (size_t)(port - s)) != NULL) {
        *err = "an IPv6 address needs brackets: [addr]:port";
        return -1;
    }
    if (parse_port(port + 1, &portnum, err) < 0)
        return -1;
    if (port == s) {
        if (!allow_empty) {
            *err = "missing address";
            return -1;
        }
        *empty = true;
        set_v6(out, &in6addr_any, portnum);
        return 0;
    }

    struct in_addr ip4;
    if (copy_ip(s, (size_t)(port - s), host) < 0 || inet_pton(AF_INET, host, &ip4) != 1) {
        *err = "invalid IPv4 address";
        return -1;
    }
    set_v4(out, &ip4, portnum);
    return 0;
}

int addr_parse_hostport(const char *s, struct mc_addr *out, const char **err)
{
    bool empty, bracketed;

    return parse_hostport(s, false, out, &empty, &bracketed, err);
}

int addr_parse_bind(const char *s, struct mc_bind *out, const char **err)
{
    bool empty, bracketed;

    memset(out, 0, sizeof(*out));
    if (parse_hostport(s, true, &out->addr, &empty, &bracketed, err) < 0)
        return -1;
    out->dual_stack = empty;
    out->v6only = bracketed;
    return 0;
}

/* The prefix length: decimal, no sign or leading zero, at most max. */
static int parse_prefix(const char *s, unsigned max, uint8_t *out)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 3 || (i == 1 && s[0] == '0'))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (i == 0 || v > max)
        return -1;
    *out = (uint8_t)v;
    return 0;
}

int addr_parse_cidr(const char *s, bool allow_bare, struct mc_cidr *out, const char **err)
{
    char ip[IP_TEXT_MAX];
    const char *slash = strchr(s, '/');
    size_t iplen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned bits, i;

    memset(out, 0, sizeof(*out));
    if (copy_ip(s, iplen, ip) < 0) {
        *err = "invalid IP address";
        return -1;
    }
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        *err = "invalid IP address";
        return -1;
    }

    if (slash == NULL) {
        if (!allow_bare) {
            *err = "missing prefix length (/N)";
            return -1;
        }
        out->prefix = (uint8_t)bits;
        return 0;
    }
    if (parse_prefix(slash + 1, bits, &out->prefix) < 0) {
        *err =
            out->family == AF_INET ? "prefix length must be 0..32" : "prefix length must be 0..128";
        return -1;
    }

    /* "10.0.0.1/8" is almost always a typo for a host or for 10.0.0.0/8. */
    for (i = out->prefix; i < bits; i++) {
        if (out->addr[i / 8] & (0x80 >> (i % 8))) {
            *err = "host bits set past the prefix length";
            return -1;
        }
    }
    return 0;
}

bool addr_cidr_contains(const struct mc_cidr *c, int family, const uint8_t *ip)
{
    unsigned whole = c->prefix / 8, rest = c->prefix % 8;

    if (family != c->family)
        return false;
    if (memcmp(c->addr, ip, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[whole] & mask) == (ip[whole] & mask);
}

bool addr_ip_v4mapped(const uint8_t *ip)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ip, mapped, sizeof(mapped)) == 0;
}

void addr_unmap(struct mc_addr *a)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
    struct in_addr ip4;
    uint16_t port;

    if (a->ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
        return;
    memcpy(&ip4, &sin6->sin6_addr.s6_addr[12], sizeof(ip4));
    port = ntohs(sin6->sin6_port);
    set_v4(a, &ip4, port);
}

const char *addr_format_ip(const struct mc_addr *a, char *buf, size_t size)
{
    const void *ip;

    if (a->ss.ss_family == AF_INET)
        ip = &((const struct sockaddr_in *)&a->ss)->sin_addr;
    else if (a->ss.ss_family == AF_INET6)
        ip = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    else
        ip = NULL;
    if (ip == NULL || inet_ntop(a->ss.ss_family, ip, buf, (socklen_t)size) == NULL)
        snprintf(buf, size, "?");
    return buf;
}

const char *addr_format(const struct mc_addr *a, char *buf, size_t size)
{
    char ip[IP_TEXT_MAX];
    unsigned port;

    addr_format_ip(a, ip, sizeof(ip));
    if (a->ss.ss_family == AF_INET6) {
        port = ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
        snprintf(buf, size, "[%s]:%u", ip, port);
    } else if (a->ss.ss_family == AF_INET) {
        port = ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
        snprintf(buf, size, "%s:%u", ip, port);
    } else {
        snprintf(buf, size, "?");
    }
    return buf;
}

const char *addr_format_cidr(const struct mc_cidr *c, char *buf, size_t size)
{
    char ip[IP_TEXT_MAX];

    if ((c->family != AF_INET && c->family != AF_INET6) ||
        inet_ntop(c->family, c->addr, ip, sizeof(ip)) == NULL)
        return NULL;
    snprintf(buf, size, "%s/%u", ip, (unsigned)c->prefix);
    return buf;
}
