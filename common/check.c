/*
 * The checks the config loader and the admin API share (check.h).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/check.h"
#include "common/hostname.h"

static void check_fail(struct check_report *rep, const char *key, const char *fmt, ...)
    MC_PRINTF(3, 4);

static void check_fail(struct check_report *rep, const char *key, const char *fmt, ...)
{
    char msg[CHECK_MSG_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rep->n_err++;
    rep->fn(rep->arg, key, msg);
}

const char *check_quote(const char *s, char *buf, size_t size)
{
    size_t o = 0;

    for (; *s != '\0' && o + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    if (*s != '\0')
        o += (size_t)snprintf(buf + o, size - o, "...");
    buf[o] = '\0';
    return buf;
}

int check_hostname(const char *in, char *out, struct check_report *rep)
{
    if (hostname_normalize_pattern(in, strlen(in), out) < 0) {
        out[0] = '\0';
        check_fail(rep, "hostname",
                   "invalid hostname \"%s\": a DNS name of at most %d bytes, or *. and one",
                   CHECK_QUOTED(in), MC_HOSTNAME_MAX);
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

static bool is_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    }
    return true;
}

int check_policy(const struct policy_conf *p, const char *key, struct check_report *rep)
{
    bool header = p->type == POLICY_REQUIRE_HEADER;

    if (p->value[0] == '\0' || !is_printable(p->value) || (header && !is_token(p->value))) {
        check_fail(rep, key, "invalid %s value \"%s\": %s", config_policy_type_name(p->type),
                   CHECK_QUOTED(p->value),
                   header ? "a header name is required" : "printable ASCII text is required");
        return -1;
    }
    return 0;
}

int check_route_mode(const char *s, enum route_mode *out, const char *key, struct check_report *rep)
{
    /* empty means l4, as an absent key in the config */
    int m = s[0] == '\0' ? ROUTE_L4 : config_route_mode_parse(s);

    if (m < 0) {
        check_fail(rep, key, "expected one of l4, l7, got \"%s\"", CHECK_QUOTED(s));
        return -1;
    }
    *out = (enum route_mode)m;
    return 0;
}

int check_policy_type(const char *s, enum policy_type *out, const char *key,
                      struct check_report *rep)
{
    int t = config_policy_type_parse(s);

    if (t < 0) {
        check_fail(rep, key, "expected one of block_user_agent, require_header, got \"%s\"",
                   CHECK_QUOTED(s));
        return -1;
    }
    *out = (enum policy_type)t;
    return 0;
}

/* The certificate chain and the key load and belong together; -1 reported otherwise. */
static int check_key_pair(const char *cert, const char *key, struct check_report *rep)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = NULL, *field = NULL, *file = NULL;

    if (ctx == NULL) {
        check_fail(rep, "tls_cert", "cannot check the certificate and key: out of memory");
        return -1;
    }
    /* an encrypted key must fail here, not prompt on the terminal */
    SSL_CTX_set_default_passwd_cb(ctx, NULL);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        field = "tls_cert";
        what = "cannot load a PEM certificate chain from";
        file = cert;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* loading a key already checks it against the certificate */
        field = "tls_key";
        what = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                   ? "does not match the certificate in tls_cert:"
                   : "cannot load an unencrypted PEM private key from";
        file = key;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        field = "tls_key";
        what = "does not match the certificate in tls_cert:";
        file = key;
    }
    if (what != NULL) {
        const char *reason = ERR_reason_error_string(ERR_peek_last_error());
        check_fail(rep, field, "%s %s (%s)", what, CHECK_QUOTED(file),
                   reason != NULL ? reason : "unknown error");
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return what != NULL ? -1 : 0;
}

/* An L7 route's certificate or key path: set and absolute; -1 reported otherwise. */
static int check_tls_path(const char *path, const char *key, struct check_report *rep)
{
    if (path == NULL || path[0] == '\0') {
        check_fail(rep, key, "required when mode is l7");
        return -1;
    }
    if (path[0] != '/') {
        check_fail(rep, key, "\"%s\" is not an absolute path", CHECK_QUOTED(path));
        return -1;
    }
    return 0;
}

unsigned check_route(struct route_conf *rc, char *host, struct check_report *rep)
{
    unsigned before = rep->n_err;
    const char *err;

    check_hostname(rc->hostname, host, rep);
    if (addr_parse_hostport(rc->backend, &rc->backend_addr, &err) < 0)
        check_fail(rep, "backend", "invalid backend \"%s\": %s", CHECK_QUOTED(rc->backend), err);

    bool has_cert = rc->tls_cert != NULL && rc->tls_cert[0] != '\0';
    bool has_key = rc->tls_key != NULL && rc->tls_key[0] != '\0';
    if (rc->mode == ROUTE_L7) {
        int ok = check_tls_path(rc->tls_cert, "tls_cert", rep);
        ok |= check_tls_path(rc->tls_key, "tls_key", rep);
        if (ok == 0 && !rep->no_files)
            check_key_pair(rc->tls_cert, rc->tls_key, rep);
    } else {
        /* TLS options on an l4 route are a mistake, not something to ignore */
        if (has_cert)
            check_fail(rep, "tls_cert", "only allowed when mode is l7");
        if (has_key)
            check_fail(rep, "tls_key", "only allowed when mode is l7");
        if (rc->backend_tls)
            check_fail(rep, "backend_tls", "only allowed when mode is l7");
        if (rc->n_policies > 0)
            check_fail(rep, "l7_policies", "only allowed when mode is l7");
    }
    for (unsigned i = 0; i < rc->n_policies; i++) {
        char key[32];
        snprintf(key, sizeof(key), "l7_policies[%u].value", i);
        check_policy(&rc->policies[i], key, rep);
    }
    return rep->n_err - before;
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int check_fw_rule(enum fw_type type, const char *value, char *out, char msg[CHECK_MSG_LEN])
{
    struct mc_cidr cidr;
    const char *err;

    switch (type) {
    case FW_IP:
        if (strchr(value, '/') != NULL || addr_parse_cidr(value, true, &cidr, &err) < 0) {
            snprintf(msg, CHECK_MSG_LEN, "\"%s\" is not an IP address%s", CHECK_QUOTED(value),
                     strchr(value, '/') ? " (a CIDR is a cidr rule: blocked_cidrs)" : "");
            return -1;
        }
        inet_ntop(cidr.family, cidr.addr, out, ADDR_STRLEN);
        return 0;
    case FW_CIDR:
        if (addr_parse_cidr(value, false, &cidr, &err) < 0) {
            snprintf(msg, CHECK_MSG_LEN, "invalid CIDR \"%s\": %s", CHECK_QUOTED(value), err);
            return -1;
        }
        addr_format_cidr(&cidr, out, ADDR_STRLEN);
        return 0;
    case FW_COUNTRY:
        if (strlen(value) != 2 || !is_letter(value[0]) || !is_letter(value[1])) {
            snprintf(msg, CHECK_MSG_LEN, "\"%s\" is not a two-letter country code (ISO 3166-1)",
                     CHECK_QUOTED(value));
            return -1;
        }
        for (int i = 0; i < 2; i++)
            out[i] = value[i] >= 'a' ? (char)(value[i] - 'a' + 'A') : value[i];
        out[2] = '\0';
        return 0;
    }
    snprintf(msg, CHECK_MSG_LEN, "unknown rule type %d", (int)type);
    return -1;
}

int check_max_connections(int64_t n, struct check_report *rep)
{
    if (n < 0 || n > UINT32_MAX) {
        check_fail(rep, "max_connections", "must be from 0 (unlimited) to %u, got %lld", UINT32_MAX,
                   (long long)n);
        return -1;
    }
    return 0;
}
