/* Giving up privileges in a child process (workers, admin). */
#ifndef MC_PRIV_H
#define MC_PRIV_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * When do_setuid, clears supplementary groups and switches to uid/gid;
 * then drops every capability (effective, permitted, inheritable,
 * ambient) and sets PR_SET_NO_NEW_PRIVS. 0, or -1 (logged): the caller
 * must not go on running with privileges it meant to give up.
 */
int priv_drop(bool do_setuid, uid_t uid, gid_t gid);

#endif
