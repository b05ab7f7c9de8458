/*
 * What an admin request carries, checked and normalised before anything
 * is stored: hostnames, backends, modes, certificate pairs, L7 policies
 * and firewall rules. Each check answers the request itself (rpc_error)
 * when the input is invalid.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "admin_rpc.h"
#include "hostname.h"

/* Normalises a hostname pattern from a request; -1 (answered) when invalid. */
int normalize_host(const struct rpc *r, const char *in, char *out)
{
    if (hostname_normalize_pattern(in, strlen(in), out) < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT,
                  "invalid hostname \"%.300s\": a DNS name of at most %d bytes, or *. and one", in,
                  MC_HOSTNAME_MAX);
        return -1;
    }
    return 0;
}

/* An HTTP header name (RFC 9110 token). */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c) != NULL))
            return false;
    }
    return true;
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    }
    return true;
}

/* A policy from a request, pointing into it; -1 (answered) when invalid. */
int policy_from_pb(const struct rpc *r, const pb_policy *in, struct policy_conf *out)
{
    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "policy is required");
        return -1;
    }
    int t = policy_type_parse(in->type);
    if (t < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT,
                  "invalid policy type \"%.64s\": block_user_agent or require_header", in->type);
        return -1;
    }
    out->type = (enum policy_type)t;
    if (in->value[0] == '\0' || !is_printable(in->value) ||
        (out->type == POLICY_REQUIRE_HEADER && !is_token(in->value))) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "invalid %s value \"%.300s\": %s", in->type, in->value,
                  out->type == POLICY_REQUIRE_HEADER ? "a header name is required"
                                                     : "printable ASCII text is required");
        return -1;
    }
    out->value = in->value;
    return 0;
}

/* The certificate chain and key load and belong together; -1 with msg set otherwise. */
static int check_key_pair(const char *cert, const char *key, char *msg, size_t size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = NULL, *file = NULL;

    if (ctx == NULL) {
        snprintf(msg, size, "cannot check tls_cert and tls_key: out of memory");
        return -1;
    }
    /* an encrypted key must fail here, not prompt on the master's terminal */
    SSL_CTX_set_default_passwd_cb(ctx, NULL);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        what = "tls_cert: cannot load a PEM certificate chain from";
        file = cert;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* loading a key already checks it against the certificate */
        what = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                   ? "tls_key does not match the certificate in tls_cert:"
                   : "tls_key: cannot load an unencrypted PEM private key from";
        file = key;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        what = "tls_key does not match the certificate in tls_cert:";
        file = key;
    }
    if (what != NULL) {
        const char *reason = ERR_reason_error_string(ERR_peek_last_error());
        snprintf(msg, size, "%s %s (%s)", what, file, reason != NULL ? reason : "unknown error");
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return what != NULL ? -1 : 0;
}

/*
 * Validates and normalises a Route from AddRoute into rc, pointing into
 * the request and host; policies are allocated (caller frees
 * rc->policies). -1 (answered) when invalid.
 */
int route_from_pb(const struct rpc *r, const pb_route *in, struct route_conf *rc, char *host)
{
    const char *err;
    char msg[1024];

    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "route is required");
        return -1;
    }
    if (normalize_host(r, in->hostname, host) < 0)
        return -1;
    rc->hostname = host;
    if (addr_parse_hostport(in->backend, &rc->backend_addr, &err) < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "invalid backend \"%.300s\": %s", in->backend, err);
        return -1;
    }
    rc->backend = in->backend;
    /* empty means l4, as in the config */
    int mode = in->mode[0] == '\0' ? ROUTE_L4 : route_mode_parse(in->mode);
    if (mode < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "invalid mode \"%.64s\": l4 or l7", in->mode);
        return -1;
    }
    rc->mode = (enum route_mode)mode;

    bool has_cert = in->tls_cert[0] != '\0', has_key = in->tls_key[0] != '\0';
    if (rc->mode == ROUTE_L4) {
        /* the same rule as the config: TLS options on an l4 route are a mistake */
        if (has_cert || has_key || in->backend_tls || in->n_l7_policies > 0) {
            rpc_error(r, RPC_INVALID_ARGUMENT,
                      "tls_cert, tls_key, backend_tls and l7_policies need mode l7");
            return -1;
        }
    } else {
        if (!has_cert || !has_key) {
            rpc_error(r, RPC_INVALID_ARGUMENT, "mode l7 needs tls_cert and tls_key");
            return -1;
        }
        if (in->tls_cert[0] != '/' || in->tls_key[0] != '/') {
            rpc_error(r, RPC_INVALID_ARGUMENT, "tls_cert and tls_key must be absolute paths");
            return -1;
        }
        if (check_key_pair(in->tls_cert, in->tls_key, msg, sizeof(msg)) < 0) {
            rpc_error(r, RPC_INVALID_ARGUMENT, "%s", msg);
            return -1;
        }
        rc->tls_cert = in->tls_cert;
        rc->tls_key = in->tls_key;
    }
    rc->backend_tls = in->backend_tls;
    rc->send_proxy_protocol = in->send_proxy_protocol;

    if (in->n_l7_policies > 0) {
        rc->policies = calloc(in->n_l7_policies, sizeof(*rc->policies));
        if (rc->policies == NULL) {
            rpc_error(r, RPC_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        rc->n_policies = (unsigned)in->n_l7_policies;
    }
    for (unsigned i = 0; i < rc->n_policies; i++) {
        if (policy_from_pb(r, in->l7_policies[i], &rc->policies[i]) < 0)
            return -1;
    }
    return 0;
}

/*
 * A firewall rule in canonical form (the config's: IP text, CIDR with
 * host bits zero, upper-case country); -1 (answered) when invalid.
 */
int rule_from_pb(const struct rpc *r, const pb_rule *in, enum fw_type *type, char *value,
                 size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    struct mc_cidr cidr;
    const char *err;
    int t;

    if (in == NULL) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "rule is required");
        return -1;
    }
    t = fw_type_parse(in->type);
    if (t < 0) {
        rpc_error(r, RPC_INVALID_ARGUMENT, "invalid rule type \"%.64s\": ip, cidr or country",
                  in->type);
        return -1;
    }
    *type = (enum fw_type)t;
    switch (*type) {
    case FW_IP:
        if (strchr(in->value, '/') != NULL || addr_parse_cidr(in->value, true, &cidr, &err) < 0) {
            rpc_error(r, RPC_INVALID_ARGUMENT, "invalid IP address \"%.100s\"", in->value);
            return -1;
        }
        inet_ntop(cidr.family, cidr.addr, value, (socklen_t)size);
        return 0;
    case FW_CIDR:
        if (addr_parse_cidr(in->value, false, &cidr, &err) < 0) {
            rpc_error(r, RPC_INVALID_ARGUMENT, "invalid CIDR \"%.100s\": %s", in->value, err);
            return -1;
        }
        snprintf(value, size, "%s/%u", inet_ntop(cidr.family, cidr.addr, ip, sizeof(ip)),
                 cidr.prefix);
        return 0;
    case FW_COUNTRY:
        if (strlen(in->value) != 2 || !is_letter(in->value[0]) || !is_letter(in->value[1])) {
            rpc_error(r, RPC_INVALID_ARGUMENT,
                      "invalid country \"%.100s\": a two-letter ISO 3166-1 code", in->value);
            return -1;
        }
        for (int i = 0; i < 2; i++)
            value[i] = in->value[i] >= 'a' ? (char)(in->value[i] - 'a' + 'A') : in->value[i];
        value[2] = '\0';
        return 0;
    }
    return -1;
}
