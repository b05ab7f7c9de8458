/* The worker's session ticket keys (tickets.h). */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "worker/tickets.h"

/* 80 bytes as OpenSSL's SSL_CTX_set_tlsext_ticket_keys() lays them out */
struct tickets_key {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
};

static struct {
    struct tickets_key cur, prev;
    bool have_cur, have_prev;
} tickets;

_Static_assert(sizeof(struct tickets_key) == MSG_TICKET_KEY_LEN, "ticket key layout");

void tickets_set(const struct msg_ticket_keys *k)
{
    OPENSSL_cleanse(&tickets, sizeof(tickets));
    memcpy(&tickets.cur, k->current, sizeof(tickets.cur));
    tickets.have_cur = true;
    if (k->has_previous) {
        memcpy(&tickets.prev, k->previous, sizeof(tickets.prev));
        tickets.have_prev = true;
    }
}

static int tickets_init(const struct tickets_key *k, const unsigned char iv[16],
                        EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    if (EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) != 1 ||
        EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return 0;
}

/*
 * OpenSSL's ticket callback. Encrypting: under the current key. Decrypting:
 * 1 for the current key, 2 for the previous (accepted, and a new ticket
 * under the current key is issued), 0 for any other (a full handshake).
 */
static int tickets_cb(SSL *ssl, unsigned char name[16], unsigned char iv[16], EVP_CIPHER_CTX *cctx,
                      EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    if (enc) {
        if (!tickets.have_cur)
            return 0; /* no ticket: the session cannot resume */
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(name, tickets.cur.name, sizeof(tickets.cur.name));
        return tickets_init(&tickets.cur, iv, cctx, hctx, 1) == 0 ? 1 : -1;
    }
    if (tickets.have_cur && CRYPTO_memcmp(name, tickets.cur.name, 16) == 0)
        return tickets_init(&tickets.cur, iv, cctx, hctx, 0) == 0 ? 1 : -1;
    if (tickets.have_prev && CRYPTO_memcmp(name, tickets.prev.name, 16) == 0)
        return tickets_init(&tickets.prev, iv, cctx, hctx, 0) == 0 ? 2 : -1;
    return 0;
}

void tickets_use(SSL_CTX *ctx)
{
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tickets_cb);
}
