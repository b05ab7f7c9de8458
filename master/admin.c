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
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "msg.h"
#include "spawn.h"

static void admin_flush(struct aux_proc *a)
{
    child_chan_flush(&a->chan, "admin", a->pid);
}

static int admin_on_message(void *arg, struct chan_msg *msg)
{
    struct aux_proc *a = arg;

    if (msg->fd >= 0)
        close(msg->fd);
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

static int admin_send_settings(struct master *m)
{
    const struct grpc_conf *g = &m->cfg->grpc;
    char unix_addr[4096 + 8];
    const char *addr = g->addr;
    struct admin_accounts acc;

    if (admin_accounts_resolve(m, false, &acc) < 0)
        return -1;

    if (g->unix_path != NULL) {
        /* the resolved path: the admin does not share the config's directory as cwd */
        snprintf(unix_addr, sizeof(unix_addr), "unix:%s", g->unix_path);
        addr = unix_addr;
    }
    const char *s[4] = {addr, g->tls_cert, g->tls_key, g->client_ca};
    struct msg_admin_settings as = {
        .setuid = m->setuid,
        .uid = acc.uid,
        .gid = acc.gid,
        .log_level = m->cfg->log_level,
        .log_format = m->cfg->log_format,
        .socket_mode = g->socket_mode,
        .socket_gid = (uint32_t)acc.socket_gid,
    };
    uint16_t *lens[4] = {&as.addr_len, &as.tls_cert_len, &as.tls_key_len, &as.client_ca_len};
    struct iovec iov[5] = {{&as, sizeof(as)}};

    for (int i = 0; i < 4; i++) {
        size_t n = s[i] ? strlen(s[i]) : 0;
        if (n > UINT16_MAX)
            return -1;
        *lens[i] = (uint16_t)n;
        iov[i + 1] = (struct iovec){(void *)(s[i] ? s[i] : ""), n};
    }
    return chan_sendv(&m->admin.chan, MSG_ADMIN_SETTINGS, 0, iov, 5, -1);
}

void admin_spawn(struct master *m)
{
    struct aux_proc *a = &m->admin;
    char path[4096];
    char *argv[] = {"mc-proxy-admin", NULL};

    snprintf(path, sizeof(path), "%s/mc-proxy-admin", m->self_dir);
    a->ev = (struct ev){.cb = admin_on_event, .data = a};
    pid_t pid = spawn_child(m->loop, path, argv, &a->chan, &a->ev);
    if (pid < 0) {
        loop_timer_set(m->loop, &a->respawn, 1000);
        return;
    }
    a->pid = pid;
    a->started_ms = loop_now(m->loop);
    if (admin_send_settings(m) < 0)
        log_error("admin: cannot queue its settings");
    admin_flush(a);
    log_info("admin started, pid %d, serving %s", (int)pid, m->cfg->grpc.addr);
}

void admin_exited(struct master *m, int status)
{
    aux_exited(m, &m->admin, status, "admin", m->cfg->grpc.enabled);
}

void admin_stop(struct master *m)
{
    aux_stop(m, &m->admin);
}

void master_admin_reply(struct master *m, uint32_t id, int32_t status, const char *message,
                        const void *body, size_t len)
{
    struct aux_proc *a = &m->admin;
    size_t mlen = message ? strlen(message) : 0;
    struct msg_admin_resp r = {.id = id, .status = status, .message_len = (uint32_t)mlen};
    struct iovec iov[3] = {
        {&r, sizeof(r)},
        {(void *)(message ? message : ""), mlen},
        {(void *)body, len},
    };

    if (a->chan.fd < 0)
        return; /* the admin died; its caller already got UNAVAILABLE */
    if (chan_sendv(&a->chan, MSG_ADMIN_RESP, 0, iov, 3, -1) < 0)
        log_error("admin: cannot queue the reply to request %u", id);
    admin_flush(a);
}
