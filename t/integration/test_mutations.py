"""
Changes through the admin API end to end: written through to the
database before any worker sees them, kept across a restart, never
half-applied when the database refuses the write, and never disturbing
connections already established.
"""

import os
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def server(db, port):
    listeners = [mctest.listener("127.0.0.1:%d" % port, [("a.test", "127.0.0.1:9")])]
    srv = at.admin_server(listeners=listeners, database={"path": db})
    srv.port = port
    return srv


def route_reaches(port, sni, greet):
    s = mctest.connect(port)
    try:
        s.sendall(mctest.client_hello_bytes(sni))
        return mctest.recv_exact(s, len(greet), 5) == greet
    finally:
        s.close()


def route_refused(srv, sni):
    s = mctest.connect(srv.port)
    mctest.send_may_fail(s, mctest.client_hello_bytes(sni))
    mctest.assert_closed_without_bytes(s, what="a connection for %s" % sni)
    s.close()


def listed(srv):
    out = at.ctl_ok("--socket", srv.sock, "--json", "routes", "list", srv.listener).json()
    return sorted(r["hostname"] for r in out.get("routes", []))


@test
def api_route_survives_restart():
    port = mctest.free_port()
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_greet_handler(b"N")) as be:
        db = d.join("state.db")
        with server(db, port) as srv:
            at.wait_admin(srv)
            at.ctl_ok("--socket", srv.sock, "routes", "add", srv.listener, "New.Test.", be.addr)
            assert route_reaches(port, "new.test", b"N\n")
        with server(db, port) as srv:  # the config never mentions new.test
            at.wait_admin(srv)
            assert "new.test" in listed(srv), listed(srv)
            assert route_reaches(port, "new.test", b"N\n"), "the API's route is gone after restart"


@test
def removed_route_keeps_established_relays():
    port = mctest.free_port()
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_echo_handler) as be:
        with server(d.join("state.db"), port) as srv:
            at.wait_admin(srv)
            at.ctl_ok("--socket", srv.sock, "routes", "add", srv.listener, "x.test", be.addr)
            relays = []
            for _ in range(4):  # enough to land on both workers most of the time
                s = mctest.connect(port)
                s.sendall(mctest.client_hello_bytes("x.test"))
                mctest.echo_roundtrip(s, b"before")
                relays.append(s)
            at.ctl_ok("--socket", srv.sock, "routes", "remove", srv.listener, "x.test")
            route_refused(srv, "x.test")
            for s in relays:
                mctest.echo_roundtrip(s, os.urandom(70000))
                s.close()
            srv.wait_conn_log(sni="x.test", result="no_route")


@test
def refused_write_changes_nothing():
    port = mctest.free_port()
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_greet_handler(b"L")) as be:
        db = d.join("state.db")
        with server(db, port) as srv:
            at.wait_admin(srv)
            before = listed(srv)
            # another process holds the write lock: the master's busy_timeout runs out
            lock = sqlite3.connect(db, isolation_level=None, timeout=0)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                r = at.ctl_fails("INTERNAL", "--socket", srv.sock, "routes", "add",
                                 srv.listener, "locked.test", be.addr)
                assert "database" in r.err or "locked" in r.err or "busy" in r.err, r
                assert listed(srv) == before, "the API shows a change that was not committed"
                route_refused(srv, "locked.test")
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
            rows = con.execute("SELECT hostname FROM routes").fetchall()
            con.close()
            assert ("locked.test",) not in rows, rows
            # the same call succeeds once the database is free again
            at.ctl_ok("--socket", srv.sock, "routes", "add", srv.listener, "locked.test",
                      be.addr)
            assert route_reaches(port, "locked.test", b"L\n")


@test
def changes_travel_as_deltas_over_a_large_table():
    port = mctest.free_port()
    routes = [("h%d.test" % i, "127.0.0.1:9") for i in range(3000)]
    listeners = [mctest.listener("127.0.0.1:%d" % port, routes)]
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_greet_handler(b"D")) as be:
        srv = at.admin_server(listeners=listeners, database={"path": d.join("state.db")})
        srv.port = port
        with srv:
            at.wait_admin(srv)
            api = ["--socket", srv.sock]
            at.ctl_ok(*api, "routes", "add", srv.listener, "h17.test", be.addr)   # replace
            at.ctl_ok(*api, "routes", "add", srv.listener, "new.test", be.addr)   # add
            at.ctl_ok(*api, "routes", "remove", srv.listener, "h18.test")        # remove
            # every worker applied three deltas; a worker whose tables did not
            # add up to the master's count would have exited instead
            deltas = [r for r in srv.log_lines() if r.get("proc") == "worker" and
                      "applied (delta)" in r.get("msg", "")]
            assert len(deltas) == 3 * len(srv.worker_pids()), deltas
            seen = set()
            for _ in range(16):
                s = mctest.connect(port)
                s.sendall(mctest.client_hello_bytes("h17.test" if len(seen) % 2 else "new.test"))
                assert mctest.recv_exact(s, 2, 5) == b"D\n"
                seen.add(srv.worker_of(port, s.getsockname()[1]))
                s.close()
            assert seen == set(srv.worker_pids()), seen
            route_refused(srv, "h18.test")
            assert len(listed(srv)) == 3000


@test
def mc_proxy_status_reads_the_running_server():
    port = mctest.free_port()
    with mctest.TempDir() as d, server(d.join("state.db"), port) as srv:
        at.wait_admin(srv)
        r = subprocess.run([srv.bin, "status", "-c", srv.config_path], capture_output=True,
                           timeout=30)
        out = r.stdout.decode()
        assert r.returncode == 0, r
        assert re.match(r"mc-proxy \S+\nuptime: .+\nconnections: +\d+\n", out), out
        assert re.search(r"^  %s +routes=1 +active=0" % re.escape(srv.listener), out, re.M), out


if __name__ == "__main__":
    mctest.main()
