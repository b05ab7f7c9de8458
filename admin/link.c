/*
 * The admin's channel to the master: the settings it starts with, and
 * the synchronous, bounded round trip of each forwarded call. One call
 * is in flight at a time, which serialises mutations at the single
 * SQLite writer. A reply that arrives after its call timed out carries
 * an old id and is dropped.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/msg.h"

/* Copies n bytes of untrusted text into a fresh C string; NULL if it holds a NUL. */
static char *dup_text(const uint8_t *p, size_t n)
{
    if (memchr(p, '\0', n) != NULL)
        return NULL;
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

const char *link_unix_path(const char *addr)
{
    return strncmp(addr, "unix:", 5) == 0 ? addr + 5 : NULL;
}

void link_settings_free(struct admin_settings *s)
{
    mc_free(&s->addr);
    mc_free(&s->tls_cert);
    mc_free(&s->tls_key);
    mc_free(&s->client_ca);
}

int link_settings_parse(const uint8_t *data, size_t len, struct admin_settings *out,
                        const char **err)
{
    struct msg_admin_settings m;

    memset(out, 0, sizeof(*out));
    if (len < sizeof(m)) {
        *err = "settings message too short";
        return -1;
    }
    memcpy(&m, data, sizeof(m));
    const uint16_t lens[4] = {m.addr_len, m.tls_cert_len, m.tls_key_len, m.client_ca_len};
    char **dst[4] = {&out->addr, &out->tls_cert, &out->tls_key, &out->client_ca};
    size_t off = sizeof(m);

    /* four u16 lengths cannot overflow a size_t sum */
    if (len != off + (size_t)lens[0] + lens[1] + lens[2] + lens[3]) {
        *err = "settings message size does not match its string lengths";
        return -1;
    }
    if (m.log_level < LOGL_DEBUG || m.log_level > LOGL_ERROR ||
        (m.log_format != LOG_FORMAT_TEXT && m.log_format != LOG_FORMAT_JSON) ||
        m.socket_mode > 07777) {
        *err = "settings message has an out-of-range value";
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (lens[i] == 0)
            continue;
        *dst[i] = dup_text(data + off, lens[i]);
        if (*dst[i] == NULL) {
            *err = "settings string holds a NUL or memory ran out";
            goto fail;
        }
        off += lens[i];
    }
    if (out->addr == NULL || (link_unix_path(out->addr) != NULL && out->addr[5] == '\0')) {
        *err = "settings carry no admin address";
        goto fail;
    }
    if (link_unix_path(out->addr) == NULL &&
        (out->tls_cert == NULL || out->tls_key == NULL || out->client_ca == NULL)) {
        *err = "a TCP admin address needs tls_cert, tls_key and client_ca";
        goto fail;
    }
    out->setuid = m.setuid != 0;
    out->uid = m.uid;
    out->gid = m.gid;
    out->log_level = m.log_level;
    out->log_format = (enum log_format)m.log_format;
    out->socket_mode = (mode_t)m.socket_mode;
    out->socket_gid = (gid_t)m.socket_gid;
    return 0;
fail:
    link_settings_free(out);
    return -1;
}

int link_resp_parse(const uint8_t *data, size_t len, struct admin_resp_view *out)
{
    struct msg_admin_resp m;

    if (len < sizeof(m))
        return -1;
    memcpy(&m, data, sizeof(m));
    if (m.message_len > len - sizeof(m))
        return -1;
    out->id = m.id;
    out->status = m.status;
    out->message = (const char *)data + sizeof(m);
    out->message_len = m.message_len;
    out->body = data + sizeof(m) + m.message_len;
    out->body_len = len - sizeof(m) - m.message_len;
    return 0;
}

void link_reply_free(struct link_reply *r)
{
    mc_free(&r->message);
    mc_free(&r->body);
}

static int link_reply_copy(const struct admin_resp_view *v, struct link_reply *out)
{
    out->status = v->status;
    out->message = malloc(v->message_len + 1);
    out->body = malloc(v->body_len > 0 ? v->body_len : 1);
    out->body_len = v->body_len;
    if (out->message == NULL || out->body == NULL) {
        link_reply_free(out);
        return -1;
    }
    memcpy(out->message, v->message, v->message_len);
    out->message[v->message_len] = '\0';
    if (v->body_len > 0)
        memcpy(out->body, v->body, v->body_len);
    return 0;
}

/* What one chan_drain() pass is looking for, and what it found. */
struct link_want {
    uint32_t id;                     /* the reply wanted; 0 = none (stale replies only) */
    struct link_reply *reply;        /* filled when it arrives */
    struct admin_settings *settings; /* non-NULL: expecting MSG_ADMIN_SETTINGS */
    struct link *link;               /* where pings are answered; NULL before the settings */
    bool found;
};

/* chan_drain() handler: the master sends settings once, then replies and
 * pings (answered at once: the master's watchdog waits for them). */
static int link_on_message(void *arg, struct chan_msg *msg)
{
    struct link_want *w = arg;
    struct admin_resp_view v;
    const char *err;

    if (msg->fd >= 0)
        close(msg->fd);
    if (msg->hdr.type == MSG_PING && msg->hdr.len == 0 && w->link != NULL) {
        if (chan_send(&w->link->chan, MSG_PONG, 0, NULL, 0, -1) < 0 ||
            chan_flush(&w->link->chan) == MC_ERROR)
            return -1;
        return 0;
    }
    if (w->settings != NULL && !w->found) {
        if (msg->hdr.type != MSG_ADMIN_SETTINGS) {
            log_error("expected settings from the master, got message type %u", msg->hdr.type);
            return -1;
        }
        if (link_settings_parse(msg->data, msg->hdr.len, w->settings, &err) < 0) {
            log_error("bad settings from the master: %s", err);
            return -1;
        }
        w->found = true;
        return 0;
    }
    if (msg->hdr.type != MSG_ADMIN_RESP || link_resp_parse(msg->data, msg->hdr.len, &v) < 0) {
        log_error("master sent an unexpected message (type %u, %u bytes)", msg->hdr.type,
                  msg->hdr.len);
        return -1;
    }
    if (w->id == 0 || v.id != w->id || w->found) {
        log_debug("dropping the master's late reply to request %u", v.id);
        return 0;
    }
    if (link_reply_copy(&v, w->reply) < 0) {
        log_error("out of memory copying the master's reply");
        return -1;
    }
    w->found = true;
    return 0;
}

/*
 * Reads what the master sent, waiting up to timeout_ms (0: not at all)
 * until w is found. LINK_OK once found, LINK_TIMEOUT, or LINK_GONE when
 * the channel closed or broke first.
 */
static enum link_result link_wait(struct link *l, struct link_want *w, int timeout_ms)
{
    uint64_t deadline = mc_monotonic_ms() + (uint64_t)timeout_ms;
    struct pollfd pfd = {.fd = l->chan.fd, .events = POLLIN};

    for (;;) {
        int rc = chan_drain(&l->chan, link_on_message, w);
        if (w->found)
            return LINK_OK;
        if (rc != MC_OK)
            return LINK_GONE;
        uint64_t now = mc_monotonic_ms();
        if (now >= deadline)
            return LINK_TIMEOUT;
        if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
            log_errno(LOGL_ERROR, errno, "poll() on the master channel");
            return LINK_GONE;
        }
    }
}

int link_read_settings(struct link *l, int timeout_ms, struct admin_settings *out)
{
    struct link_want w = {.settings = out};
    enum link_result rc = link_wait(l, &w, timeout_ms);

    if (rc == LINK_TIMEOUT)
        log_error("no settings from the master within %d ms", timeout_ms);
    else if (rc == LINK_GONE && !w.found)
        log_error("the master closed the channel before sending settings");
    return rc == LINK_OK ? 0 : -1;
}

enum link_result link_call(struct link *l, uint32_t method, const void *req, size_t len,
                           int timeout_ms, struct link_reply *out)
{
    struct msg_admin_req h = {.id = ++l->last_id, .method = method};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)req, len}};

    if (h.id == 0) /* 0 means "no reply wanted" */
        h.id = ++l->last_id;
    if (chan_sendv(&l->chan, MSG_ADMIN_REQ, 0, iov, 2, -1) < 0 ||
        chan_flush_wait(&l->chan, timeout_ms) < 0)
        return LINK_GONE;
    struct link_want w = {.id = h.id, .reply = out, .link = l};
    return link_wait(l, &w, timeout_ms);
}

int link_report_drops(struct link *l, uint64_t n)
{
    if (chan_send(&l->chan, MSG_ADMIN_LOG_DROPPED, 0, &n, sizeof(n), -1) < 0)
        return -1;
    return chan_flush(&l->chan) == MC_ERROR ? -1 : 0;
}

int link_report_listening(struct link *l)
{
    if (chan_send(&l->chan, MSG_LISTENING, 0, NULL, 0, -1) < 0)
        return -1;
    return chan_flush(&l->chan) == MC_ERROR ? -1 : 0;
}

enum link_result link_poll(struct link *l)
{
    struct link_want w = {.link = l};

    return link_wait(l, &w, 0) == LINK_TIMEOUT ? LINK_OK : LINK_GONE;
}
