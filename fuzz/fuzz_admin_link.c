/*
 * The admin process's parsers of what its master sends (admin/link.c):
 * link_settings_parse() and link_resp_parse(), each fed the input as a
 * payload. A settings header whose string lengths do not add up to the
 * size is rejected first, so the input is also tried with those lengths
 * rewritten to cover exactly the bytes that follow, which reaches the
 * string and value checks. Whatever a parser accepts must satisfy its
 * documented contract; every byte it hands out is read, so ASan catches
 * a view that points past the input.
 *
 * The same input also drives the link itself (link_read_settings,
 * link_call, link_poll and the reports) over a socketpair whose other
 * end plays the master: it is then a list of records, each a control
 * byte, a 2-byte length and that many payload bytes, sent as one
 * channel message. Control bits 0-1: the kind (settings, reply, ping,
 * or another type named by the payload's first 2 bytes); bit 2: with an
 * fd; bit 3: the phase ends here; bit 4: fitted (a settings record's
 * string lengths made to cover its payload, a reply's id made that of
 * the call it precedes). Each phase's messages are sent, then the link
 * acts: the settings read first, then calls and polls in turn. At the
 * end the master closes, and a poll must find the link gone.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

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

    if (link_settings_parse(data, size, &st, &err) < 0) {
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
    const char *path = link_unix_path(st.addr);
    if (path != NULL ? path[0] == '\0'
                     : st.tls_cert == NULL || st.tls_key == NULL || st.client_ca == NULL)
        abort();
    if (st.socket_mode > 07777 || st.log_level < LOGL_DEBUG || st.log_level > LOGL_ERROR ||
        (st.log_format != LOG_FORMAT_TEXT && st.log_format != LOG_FORMAT_JSON))
        abort();
    link_settings_free(&st);
}

/* Rewrites the four string lengths of a settings payload to cover the
 * bytes after its header exactly; false when that cannot be. */
static bool fit_lengths(uint8_t *p, size_t size)
{
    struct msg_admin_settings m;

    if (size < sizeof(m) || size - sizeof(m) > 4 * (size_t)UINT16_MAX)
        return false;
    memcpy(&m, p, sizeof(m));
    uint16_t *lens[4] = {&m.addr_len, &m.tls_cert_len, &m.tls_key_len, &m.client_ca_len};
    size_t left = size - sizeof(m);
    for (int i = 0; i < 4; i++) {
        size_t n = i == 3 || *lens[i] > left ? left : *lens[i];
        if (n > UINT16_MAX)
            n = UINT16_MAX;
        *lens[i] = (uint16_t)n;
        left -= n;
    }
    memcpy(p, &m, sizeof(m));
    return left == 0;
}

/* The input with its four string lengths made to cover the rest exactly. */
static void settings_fitted(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size > 0 ? size : 1);

    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    if (fit_lengths(copy, size))
        settings(copy, size);
    free(copy);
}

static void resp(const uint8_t *data, size_t size)
{
    struct admin_resp_view v;

    if (link_resp_parse(data, size, &v) < 0)
        return;
    const uint8_t *msg = (const uint8_t *)v.message;
    if (msg != data + sizeof(struct msg_admin_resp) || v.body != msg + v.message_len ||
        sizeof(struct msg_admin_resp) + v.message_len + v.body_len != size)
        abort();
    touch(msg, v.message_len);
    touch(v.body, v.body_len);
}

/* The master's end of the link. */
struct master {
    struct chan chan;
    int devnull;
};

#define REC_KIND  0x03
#define REC_FD    0x04
#define REC_PHASE 0x08
#define REC_FIT   0x10

enum { KIND_SETTINGS, KIND_RESP, KIND_PING, KIND_OTHER };

/* Sends the records of one phase; false when the input ran out. */
static bool send_phase(struct master *m, const struct link *l, const uint8_t **in, size_t *left)
{
    static const uint16_t types[] = {MSG_ADMIN_SETTINGS, MSG_ADMIN_RESP, MSG_PING};
    uint8_t buf[UINT16_MAX];

    while (*left >= 3) {
        uint8_t ctl = (*in)[0];
        size_t len = MC_MIN((size_t)((*in)[1] | (*in)[2] << 8), *left - 3);
        uint16_t type;

        memcpy(buf, *in + 3, len);
        *in += 3 + len;
        *left -= 3 + len;
        if ((ctl & REC_KIND) == KIND_OTHER)
            type = len >= 2 ? (uint16_t)(buf[0] | buf[1] << 8) : 0;
        else
            type = types[ctl & REC_KIND];
        if ((ctl & REC_FIT) && type == MSG_ADMIN_SETTINGS)
            (void)fit_lengths(buf, len);
        if ((ctl & REC_FIT) && type == MSG_ADMIN_RESP && len >= sizeof(uint32_t)) {
            uint32_t id = l->last_id + 1 != 0 ? l->last_id + 1 : 1; /* link_call skips 0 */
            memcpy(buf, &id, sizeof(id));
        }
        if (chan_send(&m->chan, type, 0, buf, len, ctl & REC_FD ? m->devnull : -1) < 0)
            abort();
        if (ctl & REC_PHASE)
            break;
    }
    (void)chan_flush(&m->chan); /* a full socket: the rest goes with the next phase */
    return *left >= 3;
}

/* Reads what the link sent the master (requests, pongs, reports), so it never blocks. */
static void master_reads(struct master *m)
{
    struct chan_msg msg;

    while (chan_read(&m->chan) == MC_OK) {
        while (chan_next(&m->chan, &msg) == 1)
            if (msg.fd >= 0)
                close(msg.fd);
    }
}

/* The link's next action; false once it is gone (the admin would exit). */
static bool act(struct link *l, int phase)
{
    struct admin_settings st;
    struct link_reply reply = {0};
    static const uint8_t req[] = {0x08, 0x01};

    if (phase == 0) {
        if (link_read_settings(l, 0, &st) < 0)
            return false;
        if (st.addr == NULL)
            abort();
        link_settings_free(&st);
        return link_report_listening(l) == 0;
    }
    if (phase % 2 == 0)
        return link_poll(l) == LINK_OK && link_report_drops(l, (uint64_t)phase) == 0;
    enum link_result r = link_call(l, (uint32_t)phase, req, sizeof(req), 0, &reply);
    if (r == LINK_OK) {
        touch(reply.message, strlen(reply.message));
        touch(reply.body, reply.body_len);
        link_reply_free(&reply);
    }
    return r != LINK_GONE;
}

static void drive_link(const uint8_t *data, size_t size)
{
    static int devnull = -1;
    struct master m;
    struct link l = {0};
    int sv[2];
    bool alive = true, more = true;

    if (devnull < 0)
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    chan_init(&m.chan, sv[0]);
    m.devnull = devnull;
    chan_init(&l.chan, sv[1]);
    for (int phase = 0; alive && more; phase++) {
        more = send_phase(&m, &l, &data, &size);
        alive = act(&l, phase);
        master_reads(&m);
    }
    chan_close(&m.chan); /* the master goes away */
    if (alive && link_poll(&l) != LINK_GONE)
        abort();
    chan_close(&l.chan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;

    if (!quiet) {
        log_configure(LOGL_ERROR + 1, LOG_FORMAT_TEXT); /* the link's complaints are expected */
        quiet = true;
    }
    settings(data, size);
    settings_fitted(data, size);
    resp(data, size);
    drive_link(data, size);
    return 0;
}
