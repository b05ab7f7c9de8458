/* Why a connection was refused: one code, the same in logs and metrics (SPEC section 5). */
#ifndef MC_REASON_H
#define MC_REASON_H

enum reason {
    REASON_NONE = 0, /* not refused */
    REASON_MAX_CONNECTIONS,
    REASON_UNTRUSTED_PROXY,
    REASON_BAD_PROXY_HEADER,
    REASON_FIREWALL_IP,
    REASON_FIREWALL_CIDR,
    REASON_FIREWALL_COUNTRY,
    REASON_RATE_LIMIT,
    REASON_NOT_TLS,
    REASON_HELLO_TOO_LARGE,
    REASON_HELLO_TIMEOUT,
    REASON_NO_SNI,
    REASON_NO_ROUTE,
    REASON_BACKEND_CONNECT_FAILED,
    REASON_BACKEND_CONNECT_TIMEOUT,
    REASON__COUNT
};

static inline const char *reason_name(enum reason r)
{
    static const char *const names[REASON__COUNT] = {
        [REASON_NONE] = "ok",
        [REASON_MAX_CONNECTIONS] = "max_connections",
        [REASON_UNTRUSTED_PROXY] = "untrusted_proxy",
        [REASON_BAD_PROXY_HEADER] = "bad_proxy_header",
        [REASON_FIREWALL_IP] = "firewall_ip",
        [REASON_FIREWALL_CIDR] = "firewall_cidr",
        [REASON_FIREWALL_COUNTRY] = "firewall_country",
        [REASON_RATE_LIMIT] = "rate_limit",
        [REASON_NOT_TLS] = "not_tls",
        [REASON_HELLO_TOO_LARGE] = "hello_too_large",
        [REASON_HELLO_TIMEOUT] = "hello_timeout",
        [REASON_NO_SNI] = "no_sni",
        [REASON_NO_ROUTE] = "no_route",
        [REASON_BACKEND_CONNECT_FAILED] = "backend_connect_failed",
        [REASON_BACKEND_CONNECT_TIMEOUT] = "backend_connect_timeout",
    };
    return (unsigned)r < REASON__COUNT ? names[r] : "unknown";
}

#endif
