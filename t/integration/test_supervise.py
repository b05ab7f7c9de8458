"""
Supervision (SPEC section 10): every child the master wants (workers,
the admin process, the metrics exporter) is always running or about to
be, whatever reloads and deaths happen in between; a reload restarts the
admin and metrics processes only when their own settings changed, and
such a restart answers the calls in flight first.
"""

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


class Node:
    """A server with the admin API on a unix socket, the metrics exporter
    on a free port and one listener; reconfigure() rewrites its config
    file (the listener stays) for the next SIGHUP."""

    def __init__(self, routes, workers=2, **overrides):
        self.port = mctest.free_port()
        self.metrics_port = mctest.free_port()
        self.listen_addr = "127.0.0.1:%d" % self.port
        self.routes = routes
        self.overrides = dict(overrides)
        self.srv = mctest.Server(self.config(workers))
        self.sock = self.srv.dir.join("admin.sock")

    def config(self, workers, grpc=None, **overrides):
        kw = dict(self.overrides, **overrides)
        kw.setdefault("log", {"level": "info"})
        return mctest.base_config(
            [mctest.listener(self.listen_addr, self.routes)], workers=workers,
            grpc=grpc or {"addr": "unix:admin.sock", "socket_mode": "0660"},
            metrics={"addr": "127.0.0.1:%d" % self.metrics_port}, **kw)

    def reconfigure(self, workers, **kw):
        # written aside and renamed: a reload never reads half a file
        self.srv.dir.write("mc-proxy.yaml.new", mctest.to_yaml(self.config(workers, **kw)))
        os.rename(self.srv.dir.join("mc-proxy.yaml.new"), self.srv.config_path)

    def __enter__(self):
        self.srv.__enter__()
        return self

    def __exit__(self, *exc):
        self.srv.__exit__(*exc)

    def ctl(self, *args, **kw):
        return at.ctl("--socket", self.sock, *args, **kw)

    def children(self):
        """The master's live children by kind; "other" holds anything else."""
        out = {"worker": [], "admin": [], "metrics": [], "other": []}
        for pid in self.srv.child_pids(lambda argv: True):
            argv = mctest.proc_cmdline(pid)
            if b"__worker" in argv:
                out["worker"].append(pid)
            elif b"__metrics" in argv:
                out["metrics"].append(pid)
            elif argv and os.path.basename(argv[0]) == b"mc-proxy-admin":
                out["admin"].append(pid)
            else:
                out["other"].append(pid)
        return out

    def metrics_answers(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5)
        except OSError:
            return False
        try:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            return mctest.recv_until_close(s, 5)[0].startswith(b"HTTP/1.1 200 ")
        except OSError:
            return False
        finally:
            s.close()

    def wait_settled(self, n_workers, timeout=30.0):
        """Waits until the children are exactly n_workers workers, one admin
        and one exporter, and both APIs answer; returns the children."""
        last = {}

        def settled():
            c = self.children()
            last.update(c)
            if (len(c["worker"]), len(c["admin"]), len(c["metrics"]), len(c["other"])) != \
                    (n_workers, 1, 1, 0):
                return None
            r = self.ctl("status")
            last["ctl"] = r
            last["metrics_answers"] = self.metrics_answers()
            return c if r.rc == 0 and last["metrics_answers"] else None
        try:
            return mctest.wait_until(settled, timeout, interval=0.1,
                                     what="%d workers, admin and exporter, both answering"
                                     % n_workers)
        except AssertionError as e:
            raise AssertionError("%s; children %r\nlog tail:\n%s"
                                 % (e, last, self.srv.log_tail(20)))


def sighup_burst(node, n, interval):
    """n SIGHUPs interval apart, alternating workers 1 and 2 (ends on 2)."""
    for i in range(n):
        node.reconfigure(1 + i % 2)
        node.srv.send_signal(signal.SIGHUP)
        time.sleep(interval)  # the cadence under test, not a wait for a condition
    return 1 + (n - 1) % 2


def check_burst(interval):
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)]) as node:
        before = node.wait_settled(2)
        last = sighup_burst(node, 12, interval)
        after = node.wait_settled(last)
        # nothing in the admin's or the exporter's settings changed: never restarted
        assert after["admin"] == before["admin"], (before, after)
        assert after["metrics"] == before["metrics"], (before, after)
        s = mctest.connect(node.port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        assert mctest.recv_exact(s, 2, 5) == b"A\n"
        s.close()
        # a worker that dies now is replaced at once
        victim = after["worker"][0]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        mctest.wait_until(lambda: victim not in node.children()["worker"] and
                          len(node.children()["worker"]) == last, 1.0, interval=0.01,
                          what="the killed worker's replacement within 1 s")
        mctest.note("worker replaced in %.0f ms" % ((time.monotonic() - t0) * 1000))
        node.wait_settled(last)


@test
def sighup_burst_keeps_admin_and_metrics():
    check_burst(0.4)


@test
def fast_sighup_burst_keeps_admin_and_metrics():
    check_burst(0.05)


def respawn_delays(srv, name):
    """The delays, in ms, of every logged respawn of the named process."""
    out = []
    for r in srv.log_lines():
        msg = r.get("msg", "")
        if msg.startswith(name + " ") and ", respawning in " in msg:
            out.append(int(msg.rsplit("respawning in ", 1)[1].split()[0]))
    return out


@test
def admin_crash_loop_backs_off_and_a_reload_retries():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)]) as node:
        node.wait_settled(2)
        # a socket path that cannot be bound: the admin dies at every start
        node.reconfigure(2, grpc={"addr": "unix:missing/admin.sock"})
        node.srv.send_signal(signal.SIGHUP)
        node.srv.wait_log(lambda r: "respawning in 800 ms" in r.get("msg", ""), timeout=20,
                          what="the crash-loop brake reaching 800 ms")
        delays = respawn_delays(node.srv, "admin")
        assert delays == sorted(delays) and delays[-1] == 800, delays
        assert [d for d in delays if d] == [100, 200, 400, 800], delays
        assert any(r.get("level") == "error" and "soon after starting again" in r.get("msg", "")
                   for r in node.srv.log_lines()), "the crash loop is not logged as an error"
        # the operator fixes the config: the reload is the retry, the brake's wait is not
        node.reconfigure(2)
        node.srv.send_signal(signal.SIGHUP)
        t0 = time.monotonic()
        node.wait_settled(2, timeout=20)
        mctest.note("admin back %.1f s after the fixing reload" % (time.monotonic() - t0))


def db_hostnames(node):
    con = sqlite3.connect("file:%s?mode=ro" % node.srv.dir.join("mc-proxy.db"), uri=True)
    try:
        return {h for (h,) in con.execute("SELECT hostname FROM routes")}
    finally:
        con.close()


class Mutator(threading.Thread):
    """Adds routes c<i>-<j>.test and removes every third right after;
    records every call that fails."""

    def __init__(self, node, i, n, backend):
        super().__init__(daemon=True)
        self.node, self.i, self.n, self.backend = node, i, n, backend
        self.kept, self.removed, self.failures = set(), set(), []

    def call(self, *args):
        r = self.node.ctl(*args)
        if r.rc != 0:
            self.failures.append("%s: %s" % (" ".join(args), r.err.strip()))
        return r.rc == 0

    def run(self):
        for j in range(self.n):
            name = "c%d-%d.test" % (self.i, j)
            if not self.call("routes", "add", self.node.listen_addr, name, self.backend):
                continue
            if j % 3 == 0 and self.call("routes", "remove", self.node.listen_addr, name):
                self.removed.add(name)
            else:
                self.kept.add(name)


def routed(port, sni):
    """The backend's greeting (b"A\\n") when routed, b"" when refused."""
    s = mctest.connect(port)
    try:
        mctest.send_may_fail(s, mctest.client_hello_bytes(sni))
        data = b""
        s.settimeout(5)
        while len(data) < 2:
            try:
                chunk = s.recv(2 - len(data))
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


@test
def route_changes_while_reloading_never_fail():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)]) as node:
        node.wait_settled(2)
        mutators = [Mutator(node, i, 8, be.addr) for i in range(4)]
        stop = threading.Event()
        reloads = [0]

        def reloader():
            while not stop.is_set():
                reloads[0] += 1
                node.reconfigure(1 + reloads[0] % 2)
                node.srv.send_signal(signal.SIGHUP)
                stop.wait(0.3)  # the cadence under test
        hup = threading.Thread(target=reloader, daemon=True)
        hup.start()
        for t in mutators:
            t.start()
        for t in mutators:
            t.join(240)
        stop.set()
        hup.join(10)
        failures = [f for t in mutators for f in t.failures]
        assert not failures, "%d call(s) failed during %d reloads: %s" % (
            len(failures), reloads[0], failures[:5])
        mctest.note("%d route changes during %d reloads" % (
            sum(len(t.kept) + 2 * len(t.removed) for t in mutators), reloads[0]))
        node.reconfigure(2)
        node.srv.send_signal(signal.SIGHUP)
        workers = node.wait_settled(2)["worker"]
        kept = {n for t in mutators for n in t.kept} | {"a.test"}
        removed = {n for t in mutators for n in t.removed}
        assert db_hostnames(node) == kept
        listed = {r["hostname"] for r in node.ctl("--json", "routes", "list",
                                                  node.listen_addr).json()["routes"]}
        assert listed == kept, listed ^ kept
        # wait until the last reload's old generation has drained, so that
        # every connection below is served by one of the final workers
        node.srv.wait_log(lambda r: "reload complete" in r.get("msg", ""), timeout=20)
        for name in sorted(kept | removed):
            for _ in range(3):
                got = routed(node.port, name)
                assert got == (b"A\n" if name in kept else b""), (name, got)
        # each final worker routes exactly what the database holds
        by_worker = {pid: {} for pid in workers}

        def logged():
            n = 0
            for r in node.srv.conn_logs():
                pid = int(r.get("pid", 0))
                if pid in by_worker and r.get("sni") in kept | removed:
                    by_worker[pid].setdefault(r["sni"], set()).add(r.get("result"))
                    n += 1
            return n >= 3 * len(kept | removed)
        mctest.wait_until(logged, 10, what="the access lines of every connection")
        for pid, seen in by_worker.items():
            assert seen, "worker %d served none of the connections" % pid
            for name, results in seen.items():
                want = {"ok"} if name in kept else {"no_route"}
                assert results == want, (pid, name, results)


def admin_conns(sock_path):
    """Connected (not listening) unix sockets on the admin's socket path."""
    n = 0
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            # Num RefCount Protocol Flags Type St Inode Path; St 02 = connecting
            # (not accepted yet), 03 = connected
            if len(parts) >= 8 and parts[7] == sock_path and parts[5] in ("02", "03"):
                n += 1
    return n


@test
def needed_admin_restart_answers_calls_in_flight():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)]) as node:
        first = node.wait_settled(2)
        ctl = at.require_program("mcproxyctl")
        stopped = first["worker"][0]
        # a stopped worker holds every change's publish: the calls stay in flight
        os.kill(stopped, signal.SIGSTOP)
        try:
            calls = []
            for name in ("f1.test", "f2.test"):
                calls.append(subprocess.Popen(
                    [ctl, "--socket", node.sock, "routes", "add", node.listen_addr, name,
                     be.addr], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL))
                if name == "f1.test":
                    mctest.wait_until(lambda: "f1.test" in db_hostnames(node), 10,
                                      what="the first call to be committed")
            mctest.wait_until(lambda: admin_conns(node.sock) >= 2, 10,
                              what="the second client to connect")
            # the admin's own settings change: it must restart, after these calls
            node.reconfigure(2, grpc={"addr": "unix:admin.sock", "socket_mode": "0600"})
            node.srv.send_signal(signal.SIGHUP)
            node.srv.wait_log(lambda r: "settings changed, restarting" in r.get("msg", ""),
                              timeout=20, what="the admin restart")
            assert mctest.proc_alive(first["admin"][0]), "the old admin exited with calls open"
        finally:
            os.kill(stopped, signal.SIGCONT)
        for p in calls:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, "a call in flight failed: %r" % err
        settled = node.wait_settled(2)
        assert settled["admin"] != first["admin"], "the admin was not restarted"
        assert stat.S_IMODE(os.stat(node.sock).st_mode) == 0o600
        assert {"f1.test", "f2.test"} <= db_hostnames(node)


if __name__ == "__main__":
    mctest.main()
