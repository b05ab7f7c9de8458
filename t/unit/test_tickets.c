/*
 * Session ticket keys (worker/tickets.c) through real OpenSSL handshakes
 * in memory: a ticket resumes under the key that issued it, after one
 * rotation (the previous key), not after two; TLS 1.2 and 1.3.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "worker/route_l7.h"
#include "worker/tickets.h"

/* A self-signed P-256 certificate and its key, as PEM. */
static int make_cert(char **cert, size_t *cert_len, char **key, size_t *key_len)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    char *p;
    int rc = -1;

    if (pk == NULL || x == NULL || cb == NULL || kb == NULL)
        goto out;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"a.test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    if (X509_set_pubkey(x, pk) != 1 || X509_sign(x, pk, EVP_sha256()) == 0 ||
        PEM_write_bio_X509(cb, x) != 1 ||
        PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) != 1)
        goto out;
    *cert_len = (size_t)BIO_get_mem_data(cb, &p);
    *cert = memcpy(malloc(*cert_len), p, *cert_len);
    *key_len = (size_t)BIO_get_mem_data(kb, &p);
    *key = memcpy(malloc(*key_len), p, *key_len);
    rc = 0;
out:
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

/*
 * One connection in memory offering session (may be NULL): handshake,
 * then a byte each way so that TLS 1.3's tickets arrive. Returns 1 if the
 * session was resumed, 0 if not, -1 on failure; *out gets the client's
 * session afterwards.
 */
static int connect_once(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *session, SSL_SESSION **out)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *sb, *cb;
    int rc = -1;
    unsigned char byte = 'x';

    if (s == NULL || c == NULL || BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
        goto out;
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    SSL_set_tlsext_host_name(c, "a.test");
    if (session != NULL && SSL_set_session(c, session) != 1)
        goto out;
    bool sdone = false, cdone = false;
    for (int i = 0; i < 100 && !(sdone && cdone); i++) {
        if (!cdone) {
            int n = SSL_do_handshake(c);
            if (n == 1)
                cdone = true;
            else if (SSL_get_error(c, n) != SSL_ERROR_WANT_READ)
                goto out;
        }
        if (!sdone) {
            int n = SSL_do_handshake(s);
            if (n == 1)
                sdone = true;
            else if (SSL_get_error(s, n) != SSL_ERROR_WANT_READ)
                goto out;
        }
    }
    if (!sdone || !cdone || SSL_write(s, &byte, 1) != 1 || SSL_read(c, &byte, 1) != 1 ||
        SSL_write(c, &byte, 1) != 1 || SSL_read(s, &byte, 1) != 1)
        goto out;
    rc = SSL_session_reused(c);
    SSL_shutdown(c); /* freed without close_notify, the session would be marked unresumable */
    *out = SSL_get1_session(c);
out:
    ERR_clear_error();
    SSL_free(s);
    SSL_free(c);
    return rc;
}

static void set_keys(struct msg_ticket_keys *k, int cur, int prev)
{
    memset(k, 0, sizeof(*k));
    memset(k->current, cur, sizeof(k->current));
    if (prev >= 0) {
        memset(k->previous, prev, sizeof(k->previous));
        k->has_previous = 1;
    }
    tickets_set(k);
}

static void test_rotation(SSL_CTX *sctx, int version, const char *name)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_SESSION *first = NULL, *again = NULL;
    struct msg_ticket_keys k;

    SSL_CTX_set_min_proto_version(cctx, version);
    SSL_CTX_set_max_proto_version(cctx, version);
    set_keys(&k, 1, -1);
    T_OK(connect_once(sctx, cctx, NULL, &first) == 0 && first != NULL &&
             SSL_SESSION_has_ticket(first),
         "%s: a full handshake issues a ticket", name);
    T_OK(connect_once(sctx, cctx, first, &again) == 1, "%s: the ticket resumes under its key",
         name);
    SSL_SESSION_free(again);
    again = NULL;

    set_keys(&k, 2, 1); /* one rotation */
    T_OK(connect_once(sctx, cctx, first, &again) == 1, "%s: the ticket resumes after one rotation",
         name);
    SSL_SESSION *renewed = again;
    again = NULL;

    set_keys(&k, 3, 2); /* two rotations since the first ticket */
    T_OK(connect_once(sctx, cctx, first, &again) == 0,
         "%s: the ticket no longer resumes after two rotations", name);
    SSL_SESSION_free(again);
    again = NULL;
    /* what the previous key's ticket was renewed into (under key 2) still resumes */
    T_OK(renewed != NULL && connect_once(sctx, cctx, renewed, &again) == 1,
         "%s: a ticket renewed after the first rotation resumes after the second", name);
    SSL_SESSION_free(again);
    SSL_SESSION_free(renewed);
    SSL_SESSION_free(first);
    SSL_CTX_free(cctx);
}

int main(void)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len, key_len;
    struct route_l7 *l7 = route_l7_new(0);

    T_OK(l7 != NULL && make_cert(&cert, &cert_len, &key, &key_len) == 0 &&
             route_l7_set_tls(l7, (uint8_t *)cert, cert_len, (uint8_t *)key, key_len) == 0,
         "a route context with the ticket callback");
    if (l7 == NULL || l7->ctx == NULL) {
        free(cert);
        free(key);
        route_l7_free(l7);
        return tap_done();
    }
    test_rotation(l7->ctx, TLS1_2_VERSION, "TLS 1.2");
    test_rotation(l7->ctx, TLS1_3_VERSION, "TLS 1.3");
    free(cert);
    free(key);
    route_l7_free(l7);
    return tap_done();
}
