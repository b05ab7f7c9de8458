/*
 * The master's side of the admin process (mc-proxy-admin, which links
 * gRPC and so is exec'd, never merely forked): start it with its
 * settings, hand its requests to admin_rpc.c, carry the replies back,
 * and replace it when it dies.
 */
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "master/master.h"
#include "master/spawn.h"

static void admin_flush(struct aux_proc *a)
{
    child_chan_flush(&a->chan, "admin", a->pid);
}

static int admin_on_message(void *arg, struct chan_msg *msg)
{
    struct aux_proc *a = arg;

    if (msg->fd >= 0)
        close(msg->fd);
    watchdog_alive(&a->live, loop_now(a->m->loop)); /* any message is a sign of life */
    if (msg->hdr.type == MSG_PONG && msg->hdr.len == 0)
        return 0;
    if (msg->hdr.type == MSG_LISTENING && msg->hdr.len == 0) {
        aux_listening(a);
        return 0;
    }
    if (msg->hdr.type == MSG_ADMIN_LOG_DROPPED && msg->hdr.len == sizeof(uint64_t)) {
        uint64_t n;
        memcpy(&n, msg->data, sizeof(n));
        atomic_fetch_add_explicit(&a->m->shm->log_dropped_admin, n, memory_order_relaxed);
        return 0;
    }
    if (msg->hdr.type != MSG_ADMIN_REQ) {
        log_error("admin (pid %d): unexpected message type %u; killing it", (int)a->pid,
                  msg->hdr.type);
        return -1;
    }
    admin_rpc_handle(a->m, msg);
    return 0;
}

static void admin_on_event(struct ev *ev, uint32_t events)
{
    struct aux_proc *a = ev->data;
    child_chan_event(a->m->loop, &a->chan, &a->ev, a->pid, events, admin_on_message, a, "admin");
}

/* The workers' account is a member of gr (its primary group, or listed). */
static bool group_holds_workers(const struct group *gr, const struct master *m)
{
    if (gr->gr_gid == m->gid)
        return true;
    for (char **mem = gr->gr_mem; *mem != NULL; mem++) {
        if (strcmp(*mem, m->cfg->user) == 0)
            return true;
    }
    return false;
}

/* This process has gid as its effective or a supplementary group. */
static bool in_group(gid_t gid)
{
    int n = getgroups(0, NULL);
    gid_t *groups = n > 0 ? calloc((size_t)n, sizeof(*groups)) : NULL;
    bool found = gid == getegid();

    if (groups != NULL)
        n = getgroups(n, groups);
    for (int i = 0; groups != NULL && i < n && !found; i++)
        found = groups[i] == gid;
    free(groups);
    return found;
}

int admin_accounts_resolve(const struct master *m, bool notices, struct admin_accounts *out)
{
    const struct grpc_conf *g = &m->cfg->grpc;

    *out = (struct admin_accounts){.uid = m->uid, .gid = m->gid, .socket_gid = (gid_t)-1};
    if (!g->enabled)
        return 0;
    if (!m->setuid) {
        if (g->user != NULL && notices)
            log_info("not started as root: ignoring grpc.user \"%s\"", g->user);
    } else if (g->user != NULL) {
        struct passwd *pw = getpwnam(g->user);
        if (pw == NULL) {
            log_error("grpc.user \"%s\" does not exist", g->user);
            return -1;
        }
        if (pw->pw_uid == 0) {
            /* root owns the database: the admin process must not */
            log_error("grpc.user \"%s\" is root: name an account of its own", g->user);
            return -1;
        }
        out->uid = pw->pw_uid;
        out->gid = pw->pw_gid;
    }
    if (g->unix_path == NULL)
        return 0;
    if (g->socket_group == NULL) {
        if (m->setuid)
            out->socket_gid = 0;
        return 0;
    }
    struct group *gr = getgrnam(g->socket_group);
    if (gr == NULL) {
        log_error("grpc.socket_group \"%s\" does not exist", g->socket_group);
        return -1;
    }
    if (!m->setuid && !in_group(gr->gr_gid)) {
        /* without root, a file's group can only become one of our own */
        log_error("grpc.socket_group \"%s\": not started as root, and the service user is "
                  "not in that group",
                  g->socket_group);
        return -1;
    }
    if (m->setuid && group_holds_workers(gr, m)) {
        log_error("grpc.socket_group \"%s\" has the workers' account \"%s\" in it: they could "
                  "connect to the admin API; use a group of its own",
                  g->socket_group, m->cfg->user);
        return -1;
    }
    out->socket_gid = gr->gr_gid;
    return 0;
}

/* What identifies a TLS file's content without reading it: a rotated
 * certificate is a new inode or a new mtime. All zero when missing. */
struct admin_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;
};

/* MSG_ADMIN_SETTINGS from the current config, as iov[0..5). */
struct admin_settings_msg {
    struct msg_admin_settings as;
    char unix_addr[4096 + 8];
    struct iovec iov[5];
    struct admin_file_id files[3];
};

static int admin_settings_build(const struct master *m, struct admin_settings_msg *b)
{
    const struct grpc_conf *g = &m->cfg->grpc;
    const char *addr = g->addr;
    struct admin_accounts acc;

    if (admin_accounts_resolve(m, false, &acc) < 0)
        return -1;

    memset(b, 0, sizeof(*b)); /* the padding too: the bytes are compared across reloads */
    if (g->unix_path != NULL) {
        /* the resolved path: the admin does not share the config's directory as cwd */
        snprintf(b->unix_addr, sizeof(b->unix_addr), "unix:%s", g->unix_path);
        addr = b->unix_addr;
    }
    const char *s[4] = {addr, g->tls_cert, g->tls_key, g->client_ca};
    b->as.setuid = m->setuid;
    b->as.uid = acc.uid;
    b->as.gid = acc.gid;
    b->as.log_level = m->cfg->log_level;
    b->as.log_format = m->cfg->log_format;
    b->as.socket_mode = g->socket_mode;
    b->as.socket_gid = (uint32_t)acc.socket_gid;
    uint16_t *lens[4] = {&b->as.addr_len, &b->as.tls_cert_len, &b->as.tls_key_len,
                         &b->as.client_ca_len};

    b->iov[0] = (struct iovec){&b->as, sizeof(b->as)};
    for (int i = 0; i < 4; i++) {
        size_t n = s[i] ? strlen(s[i]) : 0;
        if (n > UINT16_MAX)
            return -1;
        *lens[i] = (uint16_t)n;
        b->iov[i + 1] = (struct iovec){(void *)(s[i] ? s[i] : ""), n};
    }
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (s[i + 1] != NULL && stat(s[i + 1], &st) == 0)
            b->files[i] = (struct admin_file_id){st.st_dev, st.st_ino, (uint64_t)st.st_size,
                                                 st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    }
    return 0;
}

/* The settings message plus the TLS files' identity: what a restart would change. */
static int admin_started_with(const struct admin_settings_msg *b, struct iovec out[6])
{
    memcpy(out, b->iov, sizeof(b->iov));
    out[5] = (struct iovec){(void *)b->files, sizeof(b->files)};
    return 6;
}

void admin_spawn(struct master *m)
{
    struct aux_proc *a = &m->admin;
    struct admin_settings_msg b;
    struct iovec with[6];
    char path[4096];
    char *argv[] = {"mc-proxy-admin", NULL};

    snprintf(path, sizeof(path), "%s/mc-proxy-admin", m->self_dir);
    a->ev = (struct ev){.cb = admin_on_event, .data = a};
    pid_t pid = spawn_child(m->loop, path, argv, &a->chan, &a->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &a->respawn, 1000);
        return;
    }
    int rc = admin_settings_build(m, &b);
    aux_started(m, a, pid, with, rc == 0 ? admin_started_with(&b, with) : 0);
    if (rc < 0 || chan_sendv(&a->chan, MSG_ADMIN_SETTINGS, 0, b.iov, 5, -1) < 0)
        log_error("admin: cannot queue its settings");
    admin_flush(a);
    log_info("admin started, pid %d, serving %s", (int)pid, m->cfg->grpc.addr);
}

void admin_exited(struct master *m, int status)
{
    aux_exited(m, &m->admin, status, m->cfg->grpc.enabled);
}

void admin_stop(struct master *m)
{
    aux_stop(m, &m->admin);
}

void admin_reload(struct master *m)
{
    struct admin_settings_msg b;
    struct iovec with[6];
    bool wanted = m->cfg->grpc.enabled;

    aux_reload(m, &m->admin, wanted, with,
               wanted && admin_settings_build(m, &b) == 0 ? admin_started_with(&b, with) : 0);
}

void master_admin_reply(struct master *m, pid_t admin, uint32_t id, int32_t status,
                        const char *message, const void *body, size_t len)
{
    struct aux_proc *a = &m->admin;
    size_t mlen = message ? strlen(message) : 0;
    struct msg_admin_resp r = {.id = id, .status = status, .message_len = (uint32_t)mlen};
    struct iovec iov[3] = {
        {&r, sizeof(r)},
        {(void *)(message ? message : ""), mlen},
        {(void *)body, len},
    };

    if (a->chan.fd < 0 || a->pid != admin)
        return; /* the admin died; its caller already got an error */
    if (chan_sendv(&a->chan, MSG_ADMIN_RESP, 0, iov, 3, -1) < 0)
        log_error("admin: cannot queue the reply to request %u", id);
    admin_flush(a);
}
