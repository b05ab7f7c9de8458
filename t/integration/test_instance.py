#!/usr/bin/python3
"""One instance per database and per port: the database lock, the port
probe at start, and what still works beside a running instance.
Run: /usr/bin/python3 t/integration/test_instance.py [NAME...]"""

import hashlib
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def instance_config(d, addr, backend, **overrides):
    """A config file in TempDir d: one listener on addr routing a.test to
    backend, the database and the admin socket in d."""
    cfg = mctest.base_config([mctest.listener(addr, [("a.test", backend)])],
                             grpc={"addr": "unix:admin.sock", "socket_mode": "0660"}, **overrides)
    return d.write("mc-proxy.yaml", mctest.to_yaml(cfg))


def server(config_path, wait_ready=True):
    """A Server (use it in `with`) run on an existing config file, so that
    several share one database."""
    return mctest.Server("", args=["server", "-c", config_path], wait_ready=wait_ready)


def refused_start(config_path, timeout=None):
    """Starts `mc-proxy server` on config_path, expecting it to refuse:
    exit status 1 before the deadline. Returns its output's error messages."""
    srv = server(config_path, wait_ready=False)
    srv.start()
    try:
        mctest.wait_until(lambda: not srv.running() or "READY=1" in srv.notify.drain(),
                          timeout or mctest.READY_TIMEOUT, what="the instance to exit")
        assert not srv.running(), "the instance started instead of refusing; log:\n%s" \
            % srv.log_tail()
        rc = srv.wait_exit(1)
        assert rc == 1, "exit status %d, expected 1; log:\n%s" % (rc, srv.log_tail())
        lines = srv.log_lines()
        assert not [r for r in lines if "listening on" in r.get("msg", "")], \
            "the refused instance bound a listener:\n%s" % srv.log_tail()
        return [r.get("msg", "") for r in lines if r.get("level") == "error"]
    finally:
        srv.close()


def listening_inodes(port):
    return {inode for lport, _, state, inode in mctest.tcp_table()
            if state == "0A" and lport == port}


def files_state(*paths):
    """Size, mtime and content digest of each path that exists."""
    out = {}
    for p in paths:
        if os.path.exists(p):
            st = os.stat(p)
            with open(p, "rb") as f:
                out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


def relay_pids(srv, port, n):
    """Opens n relays through port, one after another; returns the pid
    of the access line of each (they must all be srv's workers')."""
    ports = []
    for _ in range(n):
        s = mctest.connect(port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"who serves")
        ports.append(s.getsockname()[1])
        s.close()
    want = {"127.0.0.1:%d" % p for p in ports}

    def logged():
        recs = {r.get("client"): r for r in srv.conn_logs() if r.get("client") in want}
        return recs if len(recs) == len(want) else None
    recs = mctest.wait_until(logged, 10, what="an access line for each of %d relays" % n)
    return [int(r["pid"]) for r in recs.values()]


def locks_on(path):
    """Lines of /proc/locks on the file at path (by inode)."""
    st = os.stat(path)
    tag = ":%02x:%02x:%d " % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return [line for line in f if tag in line]


@test
def second_instance_on_the_same_database_refused():
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_echo_handler) as be:
        port = mctest.free_port()
        config = instance_config(d, "127.0.0.1:%d" % port, be.addr)
        with server(config) as first:
            sock = d.join("admin.sock")
            first.sock = sock
            admintest.wait_admin(first)
            sock_ino = os.stat(sock).st_ino
            inodes = listening_inodes(port)
            db = d.join("mc-proxy.db")
            before = files_state(db, db + "-wal")

            errors = refused_start(config)
            assert any("in use by another mc-proxy, pid %d" % first.pid in m and db in m
                       for m in errors), "no error naming pid %d: %r" % (first.pid, errors)

            assert os.stat(sock).st_ino == sock_ino, "the admin socket was replaced"
            admintest.ctl_ok("--socket", sock, "status")
            assert listening_inodes(port) == inodes, "listening sockets changed"
            assert files_state(db, db + "-wal") == before, "the database changed"
            workers = set(first.worker_pids())
            pids = relay_pids(first, port, 8)
            assert set(pids) <= workers, "relays served by %r, not by %r" % (pids, workers)

            # the lock goes with the process, however it dies
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait_exit(10) == -signal.SIGKILL
            assert locks_on(d.join("mc-proxy.db.lock")) == [], "a lock outlived its master"
            # its orphaned workers close their listeners when they see the
            # master gone; a port still listened on is refused, by design
            mctest.wait_until(lambda: not listening_inodes(port), 10,
                              what="the orphaned workers to close their listeners")
            with server(config) as again:
                workers = set(again.worker_pids())
                pids = relay_pids(again, port, 2)
                assert set(pids) <= workers, "relays served by %r, not by %r" % (pids, workers)


@test
def lock_survives_reload_and_child_restarts():
    with mctest.TempDir() as d:
        config = instance_config(d, "127.0.0.1:%d" % mctest.free_port(), "127.0.0.1:9")
        with server(config) as srv:
            srv.sock = d.join("admin.sock")
            admin = admintest.wait_admin(srv)
            srv.send_signal(signal.SIGHUP)
            srv.wait_log(lambda r: "reload complete" in r.get("msg", ""), 20)
            workers = srv.wait_workers(2, 20)
            os.kill(workers[0], signal.SIGKILL)
            mctest.wait_until(lambda: len(srv.worker_pids()) == 2
                              and workers[0] not in srv.worker_pids(), 10,
                              what="a replacement worker")
            # a reload keeps an admin process whose settings did not change: kill it instead
            admin = admintest.wait_admin(srv)
            os.kill(admin, signal.SIGKILL)
            mctest.wait_until(lambda: [p for p in admintest.admin_pids(srv) if p != admin], 10,
                              what="a replacement admin process")
            errors = refused_start(config)
            assert any("in use by another mc-proxy, pid %d" % srv.pid in m for m in errors), \
                "no error naming pid %d: %r" % (srv.pid, errors)
            admintest.wait_admin(srv)


@test
def another_database_on_the_same_port_refused():
    with mctest.TempDir() as d1, mctest.TempDir() as d2, \
            mctest.RawBackend(mctest.hello_echo_handler) as be:
        port = mctest.free_port()
        addr = "127.0.0.1:%d" % port
        with server(instance_config(d1, addr, be.addr)) as first:
            inodes = listening_inodes(port)
            errors = refused_start(instance_config(d2, addr, be.addr))
            holders = {first.pid} | set(first.worker_pids())
            named = [m for m in errors if "port %d is already served by another mc-proxy" % port in m]
            assert named, "no error naming port %d and mc-proxy: %r" % (port, errors)
            assert any("pid %d," % p in named[0] for p in holders), \
                "%r names none of %r" % (named[0], holders)
            assert listening_inodes(port) == inodes, "listening sockets changed"
            workers = set(first.worker_pids())
            pids = relay_pids(first, port, 8)
            assert set(pids) <= workers, "relays served by %r, not by %r" % (pids, workers)


@test
def port_held_by_another_program_refused():
    # SO_REUSEPORT and the same uid: the kernel would let mc-proxy share it
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    port = holder.getsockname()[1]
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    try:
        with mctest.TempDir() as d:
            errors = refused_start(instance_config(d, "127.0.0.1:%d" % port, "127.0.0.1:9"))
            want = "port %d is already in use by pid %d (%s)" % (port, os.getpid(), comm)
            assert any(want in m for m in errors), "no error with %r: %r" % (want, errors)
    finally:
        holder.close()


@test
def check_snapshot_status_beside_a_running_instance():
    with mctest.TempDir() as d:
        config = instance_config(d, "127.0.0.1:%d" % mctest.free_port(), "127.0.0.1:9")
        with server(config) as srv:
            srv.sock = d.join("admin.sock")
            admintest.wait_admin(srv)
            out = d.join("copy.db")
            for args in (["check", "-c", config], ["snapshot", "-c", config, "-o", out],
                         ["status", "-c", config]):
                r = subprocess.run([mctest.mcproxy_bin()] + args, capture_output=True,
                                   timeout=30, stdin=subprocess.DEVNULL, cwd=d.path)
                assert r.returncode == 0, "mc-proxy %s: %d %r" % (args[0], r.returncode, r.stderr)
            assert os.path.getsize(out) > 0
            assert srv.running()


@test
def reload_with_more_workers_binds_more_sockets():
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_echo_handler) as be:
        port = mctest.free_port()
        config = instance_config(d, "127.0.0.1:%d" % port, be.addr, workers=1)
        with server(config) as srv:
            assert len(listening_inodes(port)) == 1
            instance_config(d, "127.0.0.1:%d" % port, be.addr, workers=3)
            srv.send_signal(signal.SIGHUP)
            srv.wait_log(lambda r: "reload complete" in r.get("msg", ""), 20)
            assert len(listening_inodes(port)) == 3, "expected 3 SO_REUSEPORT sockets"
            workers = set(srv.wait_workers(3, 20))
            pids = relay_pids(srv, port, 6)
            assert set(pids) <= workers, "relays served by %r, not by %r" % (pids, workers)


if __name__ == "__main__":
    mctest.main()
