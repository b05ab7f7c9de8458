/* An L7 route's TLS context and policies (route_l7.h). */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "worker/route_l7.h"
#include "worker/tickets.h"

/* TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3's are all modern. */
#define ROUTE_L7_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* h2 preferred, then http/1.1 (ours first: SSL_select_next_proto keeps our order) */
static const uint8_t alpn_ours[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

struct route_l7 *route_l7_new(unsigned n_policies)
{
    struct route_l7 *l7 = calloc(1, sizeof(*l7));

    if (l7 == NULL)
        return NULL;
    if (n_policies > 0 && (l7->policies = calloc(n_policies, sizeof(*l7->policies))) == NULL) {
        free(l7);
        return NULL;
    }
    return l7;
}

/* A client offering neither gets no ALPN, and speaks HTTP/1.1 or leaves. */
static int route_l7_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, alpn_ours, sizeof(alpn_ours), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Leaf then chain from a PEM blob into ctx. */
static int route_l7_use_chain(SSL_CTX *ctx, const uint8_t *pem, size_t len)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int rc = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1 ? 0 : -1;

    X509_free(x);
    while (rc == 0 && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            rc = -1;
        }
    }
    BIO_free(b);
    ERR_clear_error(); /* the end of the chain reads as an error */
    return rc;
}

int route_l7_set_tls(struct route_l7 *l7, const uint8_t *cert, size_t cert_len, const uint8_t *key,
                     size_t key_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *kb = BIO_new_mem_buf(key, (int)key_len);
    EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int rc = -1;

    if (ctx != NULL && pk != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
        SSL_CTX_set_cipher_list(ctx, ROUTE_L7_CIPHERS) == 1 &&
        route_l7_use_chain(ctx, cert, cert_len) == 0 && SSL_CTX_use_PrivateKey(ctx, pk) == 1 &&
        SSL_CTX_check_private_key(ctx) == 1) {
        /* clients that close without close_notify end, they do not fail */
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mc-proxy", 8);
        SSL_CTX_set_read_ahead(ctx, 1); /* a record's header and body in one read */
        /* tickets resume on any worker; a cache of this worker's sessions would only
         * let a session outlive its ticket key */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        tickets_use(ctx);
        SSL_CTX_set_alpn_select_cb(ctx, route_l7_alpn, NULL);
        SSL_CTX_free(l7->ctx);
        l7->ctx = ctx;
        ctx = NULL;
        rc = 0;
    }
    ERR_clear_error();
    EVP_PKEY_free(pk);
    BIO_free(kb);
    SSL_CTX_free(ctx);
    return rc;
}

void route_l7_free(struct route_l7 *l7)
{
    if (l7 == NULL)
        return;
    for (unsigned i = 0; i < l7->n_policies; i++)
        free(l7->policies[i].value);
    free(l7->policies);
    SSL_CTX_free(l7->ctx);
    free(l7);
}
