#include <errno.h>
#include <grp.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "priv.h"

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
