#!/usr/bin/python3
"""Privileges (SPEC sections 2 and 12, ARCHITECTURE.md "Privileges"):
what the master, the workers and the admin process hold when started as
root, under the systemd unit's restrictions, as an ordinary user, and as
an ordinary user with an ambient CAP_NET_BIND_SERVICE.
Run as root: /usr/bin/python3 t/integration/test_privs.py [NAME...]"""

import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402

SETPRIV = "/usr/bin/setpriv"

CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_NET_BIND_SERVICE = 5, 6, 7, 10
# ARCHITECTURE.md, "Privileges": what a root master keeps, and what it uses itself.
MASTER_PERMITTED = sum(1 << c for c in (CAP_NET_BIND_SERVICE, CAP_KILL, CAP_SETUID, CAP_SETGID))
MASTER_EFFECTIVE = (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_KILL)
# The unit's CapabilityBoundingSet (conf/mc-proxy.service), for setpriv.
UNIT_BOUNDING = "-all,+net_bind_service,+kill,+setuid,+setgid"


def need_root():
    if os.geteuid() != 0:
        mctest.skip("needs root")
    if not os.access(SETPRIV, os.X_OK):
        mctest.skip("needs %s (util-linux)" % SETPRIV)


def nobody():
    return pwd.getpwnam("nobody")


def server(setpriv_args=None, grpc=True, metrics=False, addr=None, **overrides):
    """A Server (use it in `with`) with one listener routing a.test to
    backend .backend, the admin API on admin.sock when grpc (a dict adds
    to its section), the metrics exporter when metrics, run under setpriv
    with setpriv_args when given."""
    backend = mctest.RawBackend(mctest.hello_echo_handler)
    if grpc:
        overrides["grpc"] = dict({"addr": "unix:admin.sock", "socket_mode": "0660"},
                                 **(grpc if isinstance(grpc, dict) else {}))
    if metrics:
        overrides["metrics"] = {"addr": "127.0.0.1:%d" % mctest.free_port()}
    srv = mctest.proxy_server([("a.test", backend.addr)], addr=addr, **overrides)
    srv.backend = backend
    srv.sock = srv.dir.join("admin.sock") if grpc else None
    srv.metrics = metrics
    if setpriv_args is not None:
        srv.args = setpriv_args + [srv.bin] + srv.args
        srv.bin = SETPRIV
    return srv


def serves(srv):
    s = mctest.connect(srv.port, host=srv.host)
    try:
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"through the proxy")
    finally:
        s.close()


def children(srv):
    """Every child of the master once the workers, the admin and the
    metrics exporter (those configured) run."""
    srv.wait_workers(2)
    if srv.sock:
        at.wait_admin(srv)

    def kids():
        pids = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and mctest.proc_ppid(int(name)) == srv.pid \
                        and mctest.proc_alive(int(name)):
                    pids.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
        return pids
    want = 2 + bool(srv.sock) + bool(srv.metrics)
    return mctest.wait_until(lambda: len(kids()) == want and kids(), 10,
                             what="%d children of the master" % want)


def caps(status):
    return {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")}


def assert_unprivileged(pid, uid, gid):
    """pid, in every thread: uid and gid in all four fields, no groups, no
    capabilities in any set but the bounding one, NO_NEW_PRIVS."""
    what = " ".join(a.decode() for a in mctest.proc_cmdline(pid) if a)
    # a child that just started may still be dropping: its last step sets NO_NEW_PRIVS
    mctest.wait_until(lambda: at.proc_status(pid)["NoNewPrivs"] == "1"
                      and int(at.proc_status(pid)["CapEff"], 16) == 0, 5,
                      what="%s (pid %d) to drop its privileges" % (what, pid))
    for tid in (int(t) for t in os.listdir("/proc/%d/task" % pid)):
        s = at.proc_status(pid, tid)
        where = "%s (pid %d, thread %d)" % (what, pid, tid)
        assert s["Uid"].split() == [str(uid)] * 4, "%s: Uid %s" % (where, s["Uid"])
        assert s["Gid"].split() == [str(gid)] * 4, "%s: Gid %s" % (where, s["Gid"])
        assert s["Groups"] == "", "%s: Groups %r" % (where, s["Groups"])
        c = caps(s)
        for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert c[k] == 0, "%s: %s=%x" % (where, k, c[k])
        assert s["NoNewPrivs"] == "1", "%s: NoNewPrivs=%s" % (where, s["NoNewPrivs"])


def assert_restricted_master(srv):
    s = at.proc_status(srv.pid)
    c = caps(s)
    assert s["Uid"].split() == ["0"] * 4, "master Uid %s" % s["Uid"]
    assert c["CapEff"] == MASTER_EFFECTIVE, "master CapEff %x, want %x" % (c["CapEff"],
                                                                          MASTER_EFFECTIVE)
    assert c["CapPrm"] == MASTER_PERMITTED, "master CapPrm %x, want %x" % (c["CapPrm"],
                                                                          MASTER_PERMITTED)
    assert c["CapBnd"] == MASTER_PERMITTED, "master CapBnd %x, want %x" % (c["CapBnd"],
                                                                          MASTER_PERMITTED)
    assert c["CapInh"] == 0 and c["CapAmb"] == 0, "master CapInh %x CapAmb %x" % (c["CapInh"],
                                                                                c["CapAmb"])
    assert s["NoNewPrivs"] == "1", "master NoNewPrivs=%s" % s["NoNewPrivs"]


def assert_cannot_read(pid, path, control):
    """With the credentials pid runs with (its filesystem uid and gid, its
    groups, no capabilities), reading path fails with EACCES while reading
    control (a world-readable file in the same place) works."""
    s = at.proc_status(pid)
    fsuid, fsgid = s["Uid"].split()[3], s["Gid"].split()[3]
    groups = s["Groups"].split()
    run_as = [SETPRIV, "--reuid=" + fsuid, "--regid=" + fsgid,
              "--groups=" + ",".join(groups) if groups else "--clear-groups",
              "--inh-caps=-all", "--no-new-privs", "cat"]
    ok = subprocess.run(run_as + [control], capture_output=True, timeout=10)
    assert ok.returncode == 0, "control read of %s failed: %r" % (control, ok.stderr)
    r = subprocess.run(run_as + [path], capture_output=True, timeout=10)
    assert r.returncode != 0 and b"Permission denied" in r.stderr, \
        "uid %s gid %s read %s: rc %d %r" % (fsuid, fsgid, path, r.returncode, r.stderr)


def database_files(srv):
    db = srv.dir.join("mc-proxy.db")
    files = [p for p in (db, db + "-wal", db + "-shm") if os.path.exists(p)]
    assert db in files, "no database at %s" % db
    return files


def free_low_port():
    """A port below 1024 free on 127.0.0.1."""
    for port in (444, 853, 563, 614, 989, 990, 992, 994):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    mctest.skip("no free port below 1024 on 127.0.0.1")


# ---------------------------------------------------------------- started as root


@test
def root_children_have_no_privileges():
    need_root()
    with server(metrics=True) as srv:
        pids = children(srv)
        for pid in pids:
            assert_unprivileged(pid, nobody().pw_uid, nobody().pw_gid)
        serves(srv)


@test
def root_children_cannot_read_the_database():
    need_root()
    with server(metrics=True) as srv:
        pids = children(srv)
        serves(srv)  # a routed connection: the state has been applied everywhere
        for path in database_files(srv):
            for pid in pids:
                assert_cannot_read(pid, path, srv.config_path)


@test
def root_master_keeps_only_its_set():
    need_root()
    with server() as srv:
        children(srv)
        assert_restricted_master(srv)
        srv.wait_log(lambda r: "running as root with CAP_NET_BIND_SERVICE" in r["msg"],
                     what="the master's privileges notice")


@test
def root_master_still_supervises():
    """What the kept capabilities are for: children exec'd by the
    restricted master switch to nobody (CAP_SETUID, CAP_SETGID), the admin
    socket is root's with grpc.socket_group's group (created so, by
    CAP_SETGID: no CAP_CHOWN), a killed worker is replaced under the new
    set, and SIGTERM stops the admin, which runs as nobody, at once
    (CAP_KILL)."""
    need_root()
    with server(grpc={"socket_group": "adm"}) as srv:
        children(srv)
        st = os.lstat(srv.sock)
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("adm").gr_gid), \
            "admin socket owner %d:%d" % (st.st_uid, st.st_gid)
        workers = srv.worker_pids()
        os.kill(workers[0], signal.SIGKILL)
        fresh = mctest.wait_until(
            lambda: [p for p in srv.worker_pids() if p not in workers], 5, what="a new worker")
        assert_unprivileged(fresh[0], nobody().pw_uid, nobody().pw_gid)
        serves(srv)
        admin = at.admin_pids(srv)[0]
        rc = srv.stop(signal.SIGTERM, timeout=4.0)
        assert rc == 0, "exit status %d" % rc
        assert not mctest.proc_alive(admin), "admin still running"
        srv.wait_log(lambda r: r["msg"] == "admin exited with status 0", 1,
                     what="the admin's clean exit")


@test
def root_under_the_unit_restrictions():
    """As systemd starts it (conf/mc-proxy.service): CapabilityBoundingSet
    of the four and NoNewPrivileges, so no CAP_SETPCAP and children capped
    at the master's permitted set."""
    need_root()
    with server(["--bounding-set=" + UNIT_BOUNDING, "--no-new-privs"],
                grpc={"socket_group": "adm"}) as srv:
        for pid in children(srv):
            assert_unprivileged(pid, nobody().pw_uid, nobody().pw_gid)
        assert_restricted_master(srv)
        serves(srv)
        # the socket's group without CAP_CHOWN anywhere in the unit
        st = os.lstat(srv.sock)
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("adm").gr_gid), (st.st_uid, st.st_gid)


@test
def root_without_a_needed_capability_refuses_to_start():
    need_root()
    srv = server(["--bounding-set=" + UNIT_BOUNDING.replace(",+kill", "")], grpc=False)
    srv.wait_ready = False
    with srv:
        assert srv.wait_exit(15) == 1, "exit status %s" % srv.returncode
        srv.wait_log(lambda r: "without CAP_KILL" in r["msg"], 1, what="the missing capability")
        assert not srv.worker_pids()


@test
def root_with_securebits_noroot_refuses_to_start():
    need_root()
    srv = server(["--securebits=+noroot"], grpc=False)
    srv.wait_ready = False
    with srv:
        assert srv.wait_exit(15) == 1, "exit status %s" % srv.returncode
        srv.wait_log(lambda r: "noroot" in r["msg"], 1, what="the securebits error")


# What code running as the workers' uid tries against the control plane:
# argv[1] is a JSON list of [name, action, target]; prints {name: "ok" or
# the errno name}. Signals are signal 0: the kernel's permission check
# without a signal. Ptrace target "own_child" is a child of the probe.
PROBE = r"""
import ctypes, errno, json, os, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH, WALL = 16, 17, 0x40000000

def ptrace_attach(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    os.waitpid(pid, WALL)
    libc.ptrace(PTRACE_DETACH, pid, None, None)

def attempt(action, target):
    if action == "connect":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(target)
    elif action == "open":
        os.close(os.open(target, os.O_RDWR))
    elif action == "signal":
        os.kill(target, 0)
    elif target != "own_child":
        ptrace_attach(target)
    else:
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        try:
            ptrace_attach(child)
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)

out = {}
for name, action, target in json.loads(sys.argv[1]):
    try:
        attempt(action, target)
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""


def probe_as(uid, gid, attempts, groups=()):
    """Runs PROBE with uid, gid and groups, no capabilities and
    NO_NEW_PRIVS, like a worker; returns its verdicts."""
    args = [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % gid,
            "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            sys.executable, "-c", PROBE, json.dumps(attempts)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "probe failed: %r" % r
    return json.loads(r.stdout)


@test
def root_workers_uid_reaches_no_control_plane():
    """SPEC section 12: code running as the workers' uid (a compromised
    worker) cannot connect to the admin socket, open the database, or
    signal or ptrace the master or the admin process, which runs as its
    own account (grpc.user). The controls show each probe can succeed: a
    member of grpc.socket_group connects, the workers' uid signals a
    worker and ptraces a child of its own."""
    need_root()
    daemon = pwd.getpwnam("daemon")
    adm = grp.getgrnam("adm")
    with server(grpc={"user": "daemon", "socket_group": "adm"}) as srv:
        children(srv)
        admin = at.admin_pids(srv)[0]
        assert_unprivileged(admin, daemon.pw_uid, daemon.pw_gid)
        for pid in srv.worker_pids():
            assert_unprivileged(pid, nobody().pw_uid, nobody().pw_gid)
        worker = srv.worker_pids()[0]
        attempts = [["connect admin socket", "connect", srv.sock],
                    ["signal master", "signal", srv.pid],
                    ["signal admin", "signal", admin],
                    ["ptrace master", "ptrace", srv.pid],
                    ["ptrace admin", "ptrace", admin],
                    ["control: signal a worker", "signal", worker],
                    ["control: ptrace a child of its own", "ptrace", "own_child"]]
        attempts += [["open " + os.path.basename(p), "open", p] for p in database_files(srv)]
        got = probe_as(nobody().pw_uid, nobody().pw_gid, attempts)
        want = {a[0]: "EPERM" for a in attempts if a[1] in ("signal", "ptrace")}
        want.update({a[0]: "EACCES" for a in attempts if a[1] in ("connect", "open")})
        want["control: signal a worker"] = "ok"
        want["control: ptrace a child of its own"] = "ok"
        assert got == want, "as the workers' uid: %s, want %s" % (got, want)
        member = probe_as(nobody().pw_uid, nobody().pw_gid, attempts[:1], groups=[adm.gr_gid])
        assert member == {"connect admin socket": "ok"}, member
        serves(srv)
        assert mctest.proc_alive(admin) and mctest.proc_alive(srv.pid)


@test
def root_refuses_admin_accounts_the_workers_share():
    """grpc.socket_group holding the workers' account, a grpc.user that is
    root, or one that does not exist: the master refuses to start."""
    need_root()
    cases = [({"socket_group": "nogroup"}, "has the workers' account"),
             ({"user": "root"}, "is root"),
             ({"user": "no-such-account-here"}, "does not exist"),
             ({"socket_group": "no-such-group-here"}, "does not exist")]
    for extra, msg in cases:
        srv = server(grpc=extra)
        srv.wait_ready = False
        with srv:
            assert srv.wait_exit(15) == 1, "%s: exit status %s" % (extra, srv.returncode)
            srv.wait_log(lambda r: msg in r["msg"], 1, what="%s: %r" % (extra, msg))


# ---------------------------------------------------------------- started as an ordinary user


def as_nobody(extra=()):
    nb = nobody()
    return ["--reuid=%d" % nb.pw_uid, "--regid=%d" % nb.pw_gid, "--clear-groups"] + list(extra)


@test
def ordinary_user_serves_and_ignores_user():
    need_root()
    nb = nobody()
    srv = server(as_nobody(), grpc=False)
    # the service user's own data directory; root's files stay out of reach
    os.chown(srv.dir.path, nb.pw_uid, nb.pw_gid)
    with srv:
        for pid in children(srv):
            assert_unprivileged(pid, nb.pw_uid, nb.pw_gid)
        serves(srv)
        srv.wait_log(lambda r: r["msg"].startswith("not started as root: ignoring user")
                     and "nobody" in r["msg"], 1, what="the notice that user is ignored")
        st = os.stat(srv.dir.join("mc-proxy.db"))
        assert st.st_uid == nb.pw_uid, "database owner %d" % st.st_uid


@test
def ordinary_user_socket_group_is_one_of_its_own():
    """Not root: grpc.user is ignored, grpc.socket_group applies when the
    service user is in that group, and is refused at start otherwise."""
    need_root()
    nb, adm = nobody(), grp.getgrnam("adm")
    srv = server(as_nobody(), grpc={"socket_group": "adm", "user": "daemon"})
    srv.wait_ready = False
    os.chown(srv.dir.path, nb.pw_uid, nb.pw_gid)
    with srv:
        assert srv.wait_exit(15) == 1, "exit status %s" % srv.returncode
        srv.wait_log(lambda r: "not started as root, and the service user is not in that group"
                     in r["msg"], 1, what="the socket_group refusal")
    args = ["--reuid=%d" % nb.pw_uid, "--regid=%d" % nb.pw_gid, "--groups=%d" % adm.gr_gid]
    srv = server(args, grpc={"socket_group": "adm", "user": "daemon"})
    os.chown(srv.dir.path, nb.pw_uid, nb.pw_gid)
    with srv:
        children(srv)
        admin = at.admin_pids(srv)[0]
        st = os.lstat(srv.sock)
        assert (st.st_uid, st.st_gid) == (nb.pw_uid, adm.gr_gid), (st.st_uid, st.st_gid)
        assert at.proc_status(admin)["Uid"].split()[0] == str(nb.pw_uid), "grpc.user applied"
        srv.wait_log(lambda r: r["msg"].startswith("not started as root: ignoring grpc.user")
                     and "daemon" in r["msg"], 1, what="the notice that grpc.user is ignored")


@test
def ordinary_user_with_ambient_bind_cap_binds_a_low_port():
    need_root()
    nb = nobody()
    port = free_low_port()
    srv = server(as_nobody(["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]),
                 grpc=False, addr="127.0.0.1:%d" % port)
    os.chown(srv.dir.path, nb.pw_uid, nb.pw_gid)
    with srv:
        for pid in children(srv):
            assert_unprivileged(pid, nb.pw_uid, nb.pw_gid)
        serves(srv)
        master = at.proc_status(srv.pid)
        assert master["Uid"].split()[0] == str(nb.pw_uid), "master Uid %s" % master["Uid"]
        assert int(master["CapEff"], 16) == 1 << CAP_NET_BIND_SERVICE, \
            "master CapEff %s" % master["CapEff"]


if __name__ == "__main__":
    mctest.main()
