/*
 * Privileges: what the master keeps when started as root, and giving up
 * everything in a child process (workers, admin, metrics exporter). ARCHITECTURE.md,
 * "Privileges", explains the sets and why.
 */
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

/*
 * For the master, once its listeners are bound and before it starts any
 * child. Started as root (euid 0): keeps CAP_NET_BIND_SERVICE, CAP_KILL,
 * CAP_SETUID and CAP_SETGID in the permitted and bounding sets, only the
 * first two effective, nothing inheritable or ambient, and sets
 * PR_SET_NO_NEW_PRIVS. A child exec'd as uid 0 then starts with exactly
 * the four and drops them itself (priv_drop). Not root: does
 * nothing (the children drop what they inherit). 0, or -1 (logged) when
 * a needed capability is missing or cannot be kept: the master must not
 * start children then.
 */
int priv_restrict_master(void);

#endif
