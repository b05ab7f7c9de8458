/*
 * mc-proxy-admin: started by the mc-proxy master (fork+exec, channel on
 * fd 3), never by hand. Order matters:
 *   1. settings from the master, TLS files read (may need root);
 *   2. gRPC starts and binds (may need root for the socket's directory);
 *   3. privileges dropped for good, then serving.
 * Capabilities are per thread and gRPC starts threads in grpc_init(), so
 * without a user switch every privilege is dropped before gRPC starts;
 * with one, setresuid() (applied to every thread by glibc) clears the
 * capabilities of all threads at once. NO_NEW_PRIVS is set first so that
 * every thread inherits it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/log.h>

#include "admin/admin.h"
#include "common/log.h"
#include "common/pb.h"
#include "common/priv.h"
#include "common/proc.h"

#define SETTINGS_TIMEOUT_MS 5000

static volatile sig_atomic_t sig_stop;

/* gRPC's own diagnostics (TLS handshake failures, bind errors) go to our log.
 * Its ERROR lines are mostly about clients, hence warn. */
static void grpc_log(gpr_log_func_args *a)
{
    int level = a->severity == GPR_LOG_SEVERITY_ERROR  ? LOGL_WARN
                : a->severity == GPR_LOG_SEVERITY_INFO ? LOGL_INFO
                                                       : LOGL_DEBUG;
    log_msg(level, "grpc: %s", a->message);
}

static void pem_free(struct admin_pem *p)
{
    if (p->key != NULL)
        explicit_bzero(p->key, strlen(p->key));
    mc_free(&p->cert);
    mc_free(&p->key);
    mc_free(&p->client_ca);
}

static int pem_load(const struct admin_settings *st, struct admin_pem *p)
{
    if (link_unix_path(st->addr) != NULL)
        return 0;
    const char *paths[3] = {st->tls_cert, st->tls_key, st->client_ca};
    char **bufs[3] = {&p->cert, &p->key, &p->client_ca};
    char err[512];

    for (int i = 0; i < 3; i++) {
        *bufs[i] = pb_read_pem(paths[i], err, sizeof(err));
        if (*bufs[i] == NULL) {
            log_error("admin API: %s", err);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct admin_settings st;
    struct admin_pem pem = {0};
    struct link link = {0};
    int rc;

    (void)argv;
    log_init("admin");
    log_nonblock(NULL); /* flushed by the server loop (rpc.c) */
    if (argc != 1 || fcntl(PROC_CHAN_FD, F_GETFD) < 0) {
        fprintf(stderr, "mc-proxy-admin: started by mc-proxy, not by hand\n");
        return MC_EXIT_FATAL;
    }
    /* the master may die at any time; the channel's EOF is the backstop */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        log_errno(LOGL_ERROR, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
        return MC_EXIT_FATAL;
    }
    proc_signals((const struct proc_signal[]){{SIGTERM, &sig_stop},
                                              {SIGINT, &sig_stop},
                                              {SIGQUIT, &sig_stop}},
                 3, NULL, NULL);
    chan_init(&link.chan, PROC_CHAN_FD);
    if (link_read_settings(&link, SETTINGS_TIMEOUT_MS, &st) < 0) {
        chan_close(&link.chan);
        return MC_EXIT_FATAL;
    }
    log_configure(st.log_level, st.log_format);

    rc = MC_EXIT_FATAL;
    if (pem_load(&st, &pem) < 0 || (!st.setuid && priv_drop(false, 0, 0) < 0))
        goto out;

    gpr_set_log_function(grpc_log);
    grpc_init();
    struct rpc_server *srv = rpc_server_new(&st, &pem, &link);
    pem_free(&pem);
    if (srv == NULL) {
        /* may be transient (address in use): let the master retry */
        rc = PROC_EXIT_RESPAWN;
    } else {
        if (!st.setuid || priv_drop(true, st.uid, st.gid) == 0) {
            /* a credential change clears the parent-death signal */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            rc = rpc_server_run(srv, &sig_stop) == 0 ? 0 : PROC_EXIT_RESPAWN;
        }
        rpc_server_close(srv);
    }
    grpc_shutdown();
out:
    pem_free(&pem);
    link_settings_free(&st);
    chan_close(&link.chan);
    return rc;
}
