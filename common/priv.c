#include <errno.h>
#include <grp.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/priv.h"

/*
 * What a master started as root keeps (ARCHITECTURE.md, "Privileges").
 * Only the effective ones are used by the master itself; the others stay
 * permitted so that its children, exec'd as uid 0, start with them even
 * under NO_NEW_PRIVS (which caps a child's permitted set at its parent's).
 */
static const struct {
    cap_value_t cap;
    const char *name;
    bool effective;
    const char *why;
} master_caps[] = {
    {CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE", true, "to bind ports below 1024"},
    {CAP_KILL, "CAP_KILL", true, "to signal children that run as `user`"},
    {CAP_SETUID, "CAP_SETUID", false, "for its children to switch to `user`"},
    {CAP_SETGID, "CAP_SETGID", false,
     "for its children to switch to the group of `user` (and the admin's socket to "
     "grpc.socket_group's)"},
};

static bool master_keeps(cap_value_t cap)
{
    for (size_t i = 0; i < MC_ARRAY_LEN(master_caps); i++) {
        if (master_caps[i].cap == cap)
            return true;
    }
    return false;
}

/* Nothing is carried into an exec'd program beyond what the kernel's rules
 * derive from the permitted and bounding sets. */
static int seal_exec(void)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        log_errno(LOGL_ERROR, errno, "cannot clear ambient capabilities");
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        log_errno(LOGL_ERROR, errno, "prctl(PR_SET_NO_NEW_PRIVS) failed");
        return -1;
    }
    return 0;
}

int priv_drop(bool do_setuid, uid_t uid, gid_t gid)
{
    if (do_setuid) {
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
            setresuid(uid, uid, uid) < 0) {
            log_errno(LOGL_ERROR, errno, "cannot switch to uid %u gid %u", (unsigned)uid,
                      (unsigned)gid);
            return -1;
        }
    }
    cap_t none = cap_init();
    if (none == NULL || cap_set_proc(none) < 0) {
        log_errno(LOGL_ERROR, errno, "cannot drop capabilities");
        cap_free(none);
        return -1;
    }
    cap_free(none);
    return seal_exec();
}

/* Every capability the master keeps must be both permitted and in the bounding set. */
static int master_caps_present(void)
{
    cap_t cur = cap_get_proc();
    int rc = 0;

    if (cur == NULL) {
        log_errno(LOGL_ERROR, errno, "cannot read the process capabilities");
        return -1;
    }
    for (size_t i = 0; i < MC_ARRAY_LEN(master_caps); i++) {
        cap_flag_value_t v = CAP_CLEAR;
        if (cap_get_flag(cur, master_caps[i].cap, CAP_PERMITTED, &v) < 0 || v != CAP_SET ||
            cap_get_bound(master_caps[i].cap) != 1) {
            log_error("started as root without %s, which the master needs %s", master_caps[i].name,
                      master_caps[i].why);
            rc = -1;
        }
    }
    cap_free(cur);
    return rc;
}

int priv_restrict_master(void)
{
    if (geteuid() != 0)
        return 0;
    /* A uid-0 execve() grants the bounding set, which is how the children get
     * CAP_SETUID and the rest; SECBIT_NOROOT turns that off. */
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits < 0 || (bits & SECBIT_NOROOT)) {
        log_error("securebits noroot is set: children of a root master could not switch to "
                  "`user`; start mc-proxy as root without it, or as the service user");
        return -1;
    }
    if (master_caps_present() < 0)
        return -1;
    /* The bounding set first: dropping from it takes CAP_SETPCAP, which goes next. */
    cap_value_t n_caps = (cap_value_t)cap_max_bits();
    for (cap_value_t c = 0; c < n_caps; c++) {
        if (!master_keeps(c) && cap_get_bound(c) == 1 && cap_drop_bound(c) < 0) {
            int err = errno;
            char *name = cap_to_name(c);
            log_errno(LOGL_ERROR, err, "cannot drop %s from the bounding set (needs cap_setpcap)",
                      name != NULL ? name : "a capability");
            cap_free(name);
            return -1;
        }
    }
    cap_t keep = cap_init();
    int rc = keep != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < MC_ARRAY_LEN(master_caps); i++) {
        rc = cap_set_flag(keep, CAP_PERMITTED, 1, &master_caps[i].cap, CAP_SET);
        if (rc == 0 && master_caps[i].effective)
            rc = cap_set_flag(keep, CAP_EFFECTIVE, 1, &master_caps[i].cap, CAP_SET);
    }
    if (rc < 0 || cap_set_proc(keep) < 0) {
        log_errno(LOGL_ERROR, errno, "cannot restrict the master's capabilities");
        cap_free(keep);
        return -1;
    }
    cap_free(keep);
    if (seal_exec() < 0)
        return -1;
    log_info("running as root with CAP_NET_BIND_SERVICE and CAP_KILL; children start with "
             "CAP_SETUID and CAP_SETGID as well and drop them all");
    return 0;
}
