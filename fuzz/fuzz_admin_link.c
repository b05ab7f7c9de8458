/*
 * The admin process's parsers of what its master sends (admin/link.c):
 * admin_settings_parse() and admin_resp_parse(), each fed the input as a
 * payload. A settings header whose string lengths do not add up to the
 * size is rejected first, so the input is also tried with those lengths
 * rewritten to cover exactly the bytes that follow, which reaches the
 * string and value checks. Whatever a parser accepts must satisfy its
 * documented contract; every byte it hands out is read, so ASan catches
 * a view that points past the input.
 */
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "common/log.h"
#include "common/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink ^= ((const uint8_t *)p)[i];
}

/* Length of an accepted string: unset is NULL, set is non-empty. */
static size_t text_len(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0)
        abort();
    touch(s, n);
    return n;
}

static void settings(const uint8_t *data, size_t size)
{
    struct admin_settings st;
    const char *err = NULL;

    if (admin_settings_parse(data, size, &st, &err) < 0) {
        /* a rejection says why and leaves nothing allocated */
        if (err == NULL || st.addr != NULL || st.tls_cert != NULL || st.tls_key != NULL ||
            st.client_ca != NULL)
            abort();
        return;
    }
    /* no string lost a byte to an embedded NUL: together they fill the payload */
    size_t strings =
        text_len(st.addr) + text_len(st.tls_cert) + text_len(st.tls_key) + text_len(st.client_ca);
    if (st.addr == NULL || sizeof(struct msg_admin_settings) + strings != size)
        abort();
    const char *path = admin_unix_path(st.addr);
    if (path != NULL ? path[0] == '\0'
                     : st.tls_cert == NULL || st.tls_key == NULL || st.client_ca == NULL)
        abort();
    if (st.socket_mode > 07777 || st.log_level < LOGL_DEBUG || st.log_level > LOGL_ERROR ||
        (st.log_format != LOG_FORMAT_TEXT && st.log_format != LOG_FORMAT_JSON))
        abort();
    admin_settings_free(&st);
}

/* The input with its four string lengths made to cover the rest exactly. */
static void settings_fitted(const uint8_t *data, size_t size)
{
    struct msg_admin_settings m;

    if (size < sizeof(m) || size - sizeof(m) > 4 * (size_t)UINT16_MAX)
        return;
    memcpy(&m, data, sizeof(m));
    uint16_t *lens[4] = {&m.addr_len, &m.tls_cert_len, &m.tls_key_len, &m.client_ca_len};
    size_t left = size - sizeof(m);
    for (int i = 0; i < 4; i++) {
        size_t n = i == 3 || *lens[i] > left ? left : *lens[i];
        if (n > UINT16_MAX)
            n = UINT16_MAX;
        *lens[i] = (uint16_t)n;
        left -= n;
    }
    if (left != 0)
        return;
    uint8_t *copy = malloc(size);
    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    memcpy(copy, &m, sizeof(m));
    settings(copy, size);
    free(copy);
}

static void resp(const uint8_t *data, size_t size)
{
    struct admin_resp_view v;

    if (admin_resp_parse(data, size, &v) < 0)
        return;
    const uint8_t *msg = (const uint8_t *)v.message;
    if (msg != data + sizeof(struct msg_admin_resp) || v.body != msg + v.message_len ||
        sizeof(struct msg_admin_resp) + v.message_len + v.body_len != size)
        abort();
    touch(msg, v.message_len);
    touch(v.body, v.body_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    settings(data, size);
    settings_fitted(data, size);
    resp(data, size);
    return 0;
}
