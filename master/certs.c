/* The master's copies of the L7 certificate and key files (certs.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "master/certs.h"
#include "master/state.h"

/* The whole file at path, at most MSG_PEM_MAX bytes; NULL with *why. */
static uint8_t *certs_read_file(const char *path, size_t *len, const char **why)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    uint8_t *buf = NULL;

    *why = NULL;
    if (fd < 0) {
        *why = strerror(errno);
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > MSG_PEM_MAX) {
        *why = "not a regular, non-empty file of at most 256 KiB";
    } else if ((buf = malloc((size_t)st.st_size)) == NULL) {
        *why = "out of memory";
    } else {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                *why = n < 0 ? strerror(errno) : "the file shrank while read";
                break;
            }
            got += (size_t)n;
        }
        *len = got;
    }
    close(fd);
    if (*why != NULL)
        mc_free(&buf);
    return buf;
}

/* Whether OpenSSL takes cert (a chain) and key, and the key matches. */
static const char *certs_check(const uint8_t *cert, size_t cert_len, const uint8_t *key,
                               size_t key_len)
{
    const char *why = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *cb = BIO_new_mem_buf(cert, (int)cert_len), *kb = BIO_new_mem_buf(key, (int)key_len);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;

    if (ctx == NULL || cb == NULL || kb == NULL)
        why = "out of memory";
    else if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1)
        why = "tls_cert holds no PEM certificate";
    else if (pk == NULL || SSL_CTX_use_PrivateKey(ctx, pk) != 1)
        why = "tls_key holds no unencrypted PEM private key";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        why = "tls_key does not match the certificate in tls_cert";
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(pk);
    BIO_free(cb);
    BIO_free(kb);
    SSL_CTX_free(ctx);
    return why;
}

static struct cert_pem *certs_find(struct certs *cs, const struct route_conf *r)
{
    for (unsigned i = 0; i < cs->n; i++) {
        if (strcmp(cs->v[i].cert_path, r->tls_cert) == 0 &&
            strcmp(cs->v[i].key_path, r->tls_key) == 0)
            return &cs->v[i];
    }
    struct cert_pem *v = realloc(cs->v, (cs->n + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    cs->v = v;
    struct cert_pem *p = &v[cs->n];
    *p = (struct cert_pem){
        .cert_path = strdup(r->tls_cert), .key_path = strdup(r->tls_key), .stale = true};
    if (p->cert_path == NULL || p->key_path == NULL) {
        free(p->cert_path);
        free(p->key_path);
        return NULL;
    }
    cs->n++;
    return p;
}

const struct cert_pem *certs_get(struct certs *cs, const struct route_conf *r)
{
    const char *why = NULL, *path;
    size_t cert_len = 0, key_len = 0;
    uint8_t *cert, *key = NULL;

    if (r->tls_cert == NULL || r->tls_key == NULL)
        return NULL;
    struct cert_pem *p = certs_find(cs, r);
    if (p == NULL) {
        log_error("route %s: out of memory for its certificate", r->hostname);
        return NULL;
    }
    if (!p->stale)
        return p->cert != NULL ? p : NULL;
    p->stale = false;
    path = r->tls_cert;
    cert = certs_read_file(r->tls_cert, &cert_len, &why);
    if (cert != NULL) {
        path = r->tls_key;
        key = certs_read_file(r->tls_key, &key_len, &why);
    }
    if (key != NULL && (why = certs_check(cert, cert_len, key, key_len)) == NULL) {
        free(p->cert);
        free(p->key);
        p->cert = cert;
        p->cert_len = cert_len;
        p->key = key;
        p->key_len = key_len;
        return p;
    }
    if (key != NULL)
        path = r->tls_cert;
    free(cert);
    free(key);
    if (p->cert != NULL) {
        log_error("route %s: %s: %s; the copy read before stays in use", r->hostname, path, why);
        return p;
    }
    log_error("route %s: %s: %s; its connections are closed until it is fixed", r->hostname, path,
              why);
    return NULL;
}

static void certs_mark_all_stale(struct certs *cs);

/* Whether some l7 route of st names this pair. */
static bool certs_in_use(const struct cert_pem *p, const struct state *st)
{
    for (unsigned i = 0; i < st->n_listeners; i++) {
        const struct listener_conf *l = &st->listeners[i];
        for (unsigned j = 0; j < l->n_routes; j++) {
            const struct route_conf *r = &l->routes[j];
            if (r->mode == ROUTE_L7 && r->tls_cert != NULL && r->tls_key != NULL &&
                strcmp(r->tls_cert, p->cert_path) == 0 && strcmp(r->tls_key, p->key_path) == 0)
                return true;
        }
    }
    return false;
}

void certs_mark_stale(struct certs *cs, const struct state *st)
{
    unsigned k = 0;

    /* copies no route names any more go: route churn must not grow the master */
    for (unsigned i = 0; i < cs->n; i++) {
        if (!certs_in_use(&cs->v[i], st)) {
            free(cs->v[i].cert_path);
            free(cs->v[i].key_path);
            free(cs->v[i].cert);
            free(cs->v[i].key);
            continue;
        }
        cs->v[k++] = cs->v[i];
    }
    cs->n = k;
    certs_mark_all_stale(cs);
}

static void certs_mark_all_stale(struct certs *cs)
{
    for (unsigned i = 0; i < cs->n; i++)
        cs->v[i].stale = true;
}

void certs_free(struct certs *cs)
{
    for (unsigned i = 0; i < cs->n; i++) {
        free(cs->v[i].cert_path);
        free(cs->v[i].key_path);
        free(cs->v[i].cert);
        free(cs->v[i].key);
    }
    mc_free(&cs->v);
    cs->n = 0;
}
