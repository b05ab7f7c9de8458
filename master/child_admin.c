/*
 * The master's side of the admin process (mc-proxy-admin, which links
 * gRPC and so is exec'd, never merely forked): start it with its
 * settings, hand its requests to api.c, carry the replies back,
 * and replace it when it dies.
 */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "master/master.h"

/* The admin's own messages: its dropped log lines, and the API's requests. */
static int child_admin_message(struct aux_proc *a, const struct chan_msg *msg)
{
    if (msg->hdr.type == MSG_ADMIN_LOG_DROPPED && msg->hdr.len == sizeof(uint64_t)) {
        uint64_t n;
        memcpy(&n, msg->data, sizeof(n));
        atomic_fetch_add_explicit(&a->c.m->shm->log_dropped_admin, n, memory_order_relaxed);
        return 0;
    }
    if (msg->hdr.type != MSG_ADMIN_REQ)
        return -1;
    api_handle(&a->c.m->api, a->c.pid, msg);
    return 0;
}

static int child_admin_dispatch(void *arg, struct chan_msg *msg)
{
    return aux_dispatch(CHILD_OF(struct aux_proc, arg), msg, child_admin_message);
}

/* The workers' account is a member of gr (its primary group, or listed). */
static bool child_admin_group_holds_workers(const struct group *gr, const struct master *m)
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
static bool child_admin_in_group(gid_t gid)
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

int child_admin_accounts_resolve(const struct master *m, bool notices,
                                 struct child_admin_accounts *out)
{
    const struct grpc_conf *g = &m->cfg->grpc;

    *out = (struct child_admin_accounts){.uid = m->uid, .gid = m->gid, .socket_gid = (gid_t)-1};
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
    if (!m->setuid && !child_admin_in_group(gr->gr_gid)) {
        /* without root, a file's group can only become one of our own */
        log_error("grpc.socket_group \"%s\": not started as root, and the service user is "
                  "not in that group",
                  g->socket_group);
        return -1;
    }
    if (m->setuid && child_admin_group_holds_workers(gr, m)) {
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
struct child_admin_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;
};

/* MSG_ADMIN_SETTINGS from the current config, as iov[0..5). */
struct child_admin_settings {
    struct msg_admin_settings as;
    char unix_addr[4096 + 8];
    struct iovec iov[5];
    struct child_admin_file_id files[3];
};

static int child_admin_settings_build(const struct master *m, struct child_admin_settings *b)
{
    const struct grpc_conf *g = &m->cfg->grpc;
    const char *addr = g->addr;
    struct child_admin_accounts acc;

    if (child_admin_accounts_resolve(m, false, &acc) < 0)
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
            b->files[i] = (struct child_admin_file_id){st.st_dev, st.st_ino, (uint64_t)st.st_size,
                                                       st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    }
    return 0;
}

/* The settings message plus the TLS files' identity: what a restart would change. */
static int child_admin_started_with(const struct child_admin_settings *b, struct iovec out[6])
{
    memcpy(out, b->iov, sizeof(b->iov));
    out[5] = (struct iovec){(void *)b->files, sizeof(b->files)};
    return 6;
}

static void child_admin_exec(const struct child *c, struct child_exec *e)
{
    snprintf(e->path, sizeof(e->path), "%s/mc-proxy-admin", c->m->self_dir);
    e->argv[0] = "mc-proxy-admin";
}

/* Its settings; what it was started with is kept for the next reload. */
static void child_admin_init(struct child *c)
{
    struct master *m = c->m;
    struct aux_proc *a = CHILD_OF(struct aux_proc, c);
    struct child_admin_settings b;
    struct iovec with[6];

    int rc = child_admin_settings_build(m, &b);
    aux_started(a, with, rc == 0 ? child_admin_started_with(&b, with) : 0);
    if (rc < 0 || chan_sendv(&c->chan, MSG_ADMIN_SETTINGS, 0, b.iov, 5, -1) < 0)
        log_error("admin: cannot queue its settings");
    child_flush(c);
    log_info("admin started, pid %d, serving %s", (int)c->pid, m->cfg->grpc.addr);
}

static bool child_admin_wanted(const struct child *c)
{
    return c->m->cfg->grpc.enabled;
}

void child_admin_reload(struct master *m)
{
    struct child_admin_settings b;
    struct iovec with[6];

    aux_reload(&m->admin, with,
               child_admin_wanted(&m->admin.c) && child_admin_settings_build(m, &b) == 0
                   ? child_admin_started_with(&b, with)
                   : 0);
}

void child_admin_reply(struct master *m, pid_t admin, uint32_t id, int32_t status,
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

    if (a->c.chan.fd < 0 || a->c.pid != admin)
        return; /* the admin died; its caller already got an error */
    if (chan_sendv(&a->c.chan, MSG_ADMIN_RESP, 0, iov, 3, -1) < 0)
        log_error("admin: cannot queue the reply to request %u", id);
    child_flush(&a->c);
}

static int child_admin_publish(void *m, api_done_fn *done, void *arg)
{
    return master_publish(m, done, arg);
}

static void child_admin_api_reply(void *m, pid_t admin, uint32_t id, int32_t status,
                                  const char *message, const void *body, size_t len)
{
    child_admin_reply(m, admin, id, status, message, body, len);
}

void child_admin_api_init(struct master *m)
{
    m->api = (struct api){
        .state = &m->state,
        .cfg = &m->cfg,
        .store = m->store,
        .shm = m->shm,
        .bound = m->bound,
        .n_bound = m->n_bound,
        .publish = child_admin_publish,
        .reply = child_admin_api_reply,
        .ctx = m,
    };
}

const struct child_kind child_admin_kind = {
    .name = "admin",
    .id = CHILD_ADMIN,
    .exec = child_admin_exec,
    .init = child_admin_init,
    .dispatch = child_admin_dispatch,
    .wanted = child_admin_wanted,
    .exited = aux_exited,
    .stop = aux_stop,
};
