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


def kill_a_worker(node, n):
    """SIGKILLs a worker of the settled set; returns its pid. Right after a
    burst the set may still hold a draining worker of an earlier reload,
    which can exit between the look and the kill: then look again."""
    for _ in range(50):
        victim = node.wait_settled(n)["worker"][0]
        try:
            os.kill(victim, signal.SIGKILL)
            return victim
        except ProcessLookupError:
            continue
    raise AssertionError("no worker stayed alive long enough to be killed")


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
        victim = kill_a_worker(node, last)
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


def wait_reloads_done(node, start):
    """Waits until the reload of a SIGHUP sent when the log had `start`
    lines, and any queued behind it, completed."""
    def done():
        marks = [r["msg"] for r in node.srv.log_lines()[start:]
                 if r.get("proc") == "master" and
                 r.get("msg", "").startswith(("SIGHUP: ", "reload complete"))]
        return any(m.startswith("SIGHUP: ") for m in marks) and \
            marks[-1].startswith("reload complete")
    node.srv.wait_log(lambda r: True, timeout=1)
    mctest.wait_until(done, 30, interval=0.1, what="the last reload to complete")


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
        start = len(node.srv.log_lines())
        node.reconfigure(2)
        node.srv.send_signal(signal.SIGHUP)
        wait_reloads_done(node, start)
        workers = node.wait_settled(2)["worker"]
        kept = {n for t in mutators for n in t.kept} | {"a.test"}
        removed = {n for t in mutators for n in t.removed}
        assert db_hostnames(node) == kept
        listed = {r["hostname"] for r in node.ctl("--json", "routes", "list",
                                                  node.listen_addr).json()["routes"]}
        assert listed == kept, listed ^ kept
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
    # the watchdog off: the stopped worker stands for a slow one, not a stuck one
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)], proxy={"worker_watchdog": 0}) as node:
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
        # the old admin goes once it has been idle a moment; then the new one serves
        mctest.wait_until(lambda: node.children()["admin"] not in ([], first["admin"]), 20,
                          what="the new admin")
        node.wait_settled(2)
        assert stat.S_IMODE(os.stat(node.sock).st_mode) == 0o600
        assert {"f1.test", "f2.test"} <= db_hostnames(node)


# ---------------------------------------------------------------- watchdog

WATCHDOG = 2.0  # proxy.worker_watchdog in these tests, seconds
# an admin or exporter is pinged 250 ms after its last sign of life (on the
# master's 250 ms tick) and killed when a ping is WATCHDOG unanswered
AUX_KILL_WITHIN = WATCHDOG + 0.75 + 1.0


def watchdog_kills(srv):
    return [r for r in srv.log_lines() if r.get("level") == "error" and
            "(watchdog)" in r.get("msg", "")]


def scrape_restarts(node, reason):
    s = socket.create_connection(("127.0.0.1", node.metrics_port), timeout=5)
    try:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = mctest.recv_until_close(s, 5)[0].decode()
    finally:
        s.close()
    line = 'mcproxy_worker_restarts_total{reason="%s"} ' % reason
    return int(next(l for l in body.splitlines() if l.startswith(line)).split()[-1])


def greeted_by(node, sni, n):
    """Opens n connections for sni; returns the worker pid of each (from
    the access log), asserting every one reached the backend."""
    for i in range(n):
        assert routed(node.port, sni) == b"A\n", "connection %d for %s not routed" % (i, sni)
    lines = mctest.wait_until(
        lambda: (lambda ls: ls if len(ls) >= n else None)(
            [r for r in node.srv.conn_logs() if r.get("sni") == sni]), 10,
        what="%d access lines for %s" % (n, sni))
    assert all(r.get("result") == "ok" for r in lines), lines
    return {int(r["pid"]) for r in lines}


@test
def stopped_worker_is_replaced_and_a_change_answers_ok():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)], proxy={"worker_watchdog": "%ds" % WATCHDOG}) as node:
        first = node.wait_settled(2)
        ctl = at.require_program("mcproxyctl")
        stuck = first["worker"][0]
        os.kill(stuck, signal.SIGSTOP)
        t0 = time.monotonic()
        call = subprocess.Popen([ctl, "--socket", node.sock, "routes", "add", node.listen_addr,
                                 "new.test", be.addr], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = call.communicate(timeout=WATCHDOG + 10)
        finally:
            if mctest.proc_alive(stuck):
                os.kill(stuck, signal.SIGCONT)
        took = time.monotonic() - t0
        assert call.returncode == 0, "AddRoute during a stuck worker: %r" % err
        mctest.note("AddRoute answered OK after %.2f s" % took)
        assert took <= WATCHDOG + 1.0, "AddRoute took %.2f s" % took
        workers = mctest.wait_until(
            lambda: (lambda w: w if len(w) == 2 and stuck not in w else None)(
                node.children()["worker"]), WATCHDOG + 1.0 - min(took, WATCHDOG),
            what="the stuck worker's replacement")
        assert not mctest.proc_alive(stuck), "the stuck worker is still there"
        kills = watchdog_kills(node.srv)
        assert len(kills) == 1 and ("pid %d" % stuck) in kills[0]["msg"] and \
            kills[0]["msg"].startswith("worker "), kills
        # every worker now serves the change, and every new connection succeeds
        served = greeted_by(node, "new.test", 20)
        assert served == set(workers), (served, workers)
        assert scrape_restarts(node, "watchdog") == 1
        assert scrape_restarts(node, "exit") == 0


@test
def stopped_admin_is_replaced():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)], proxy={"worker_watchdog": "%ds" % WATCHDOG}) as node:
        first = node.wait_settled(2)
        admin = first["admin"][0]
        os.kill(admin, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            mctest.wait_until(lambda: not mctest.proc_alive(admin), AUX_KILL_WITHIN,
                              what="the stuck admin to be killed")
        finally:
            if mctest.proc_alive(admin):
                os.kill(admin, signal.SIGCONT)
        mctest.note("stuck admin killed after %.2f s" % (time.monotonic() - t0))
        after = node.wait_settled(2, timeout=20)
        assert after["admin"] != first["admin"] and after["worker"] == first["worker"]
        assert any(("admin (pid %d)" % admin) in r["msg"] for r in watchdog_kills(node.srv))


@test
def stopped_exporter_is_replaced():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)], proxy={"worker_watchdog": "%ds" % WATCHDOG}) as node:
        first = node.wait_settled(2)
        exporter = first["metrics"][0]
        os.kill(exporter, signal.SIGSTOP)
        try:
            mctest.wait_until(lambda: not mctest.proc_alive(exporter), AUX_KILL_WITHIN,
                              what="the stuck exporter to be killed")
        finally:
            if mctest.proc_alive(exporter):
                os.kill(exporter, signal.SIGCONT)
        after = node.wait_settled(2, timeout=20)
        assert after["metrics"] != first["metrics"] and after["admin"] == first["admin"]
        assert any(("metrics exporter (pid %d)" % exporter) in r["msg"]
                   for r in watchdog_kills(node.srv))


@test
def watchdog_off_keeps_a_stuck_worker_and_says_the_change_is_committed():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)], proxy={"worker_watchdog": 0}) as node:
        first = node.wait_settled(2)
        stuck = first["worker"][0]
        os.kill(stuck, signal.SIGSTOP)
        try:
            r = at.ctl_fails("DEADLINE_EXCEEDED", "--socket", node.sock, "routes", "add",
                             node.listen_addr, "late.test", be.addr)
            assert "committed" in r.err, r
            assert mctest.proc_alive(stuck) and stuck in node.children()["worker"]
            assert "late.test" in db_hostnames(node)
        finally:
            os.kill(stuck, signal.SIGCONT)
        assert not watchdog_kills(node.srv)
        assert greeted_by(node, "late.test", 20) == set(first["worker"])


def bulk_backend(size):
    def handler(sock, backend):
        mctest.read_hello(sock)
        pump_both_ways(sock, size)
    return handler


def pump_both_ways(sock, size):
    """Sends size bytes while reading size bytes; returns the bytes read."""
    chunk = bytes(1 << 20)
    got = [0]

    def reader():
        sock.settimeout(120)
        while got[0] < size:
            n = len(sock.recv(1 << 20))
            if n == 0:
                break
            got[0] += n
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    left = size
    while left > 0:
        sock.sendall(chunk[:min(left, len(chunk))])
        left -= min(left, len(chunk))
    t.join(120)
    return got[0]


BULK = 1 << 30  # each way
FLOOD = 10000


@test
def busy_workers_are_not_killed():
    with mctest.RawBackend(bulk_backend(BULK)) as bulk, \
            Node([("bulk.test", bulk.addr)],
                 proxy={"worker_watchdog": "%ds" % WATCHDOG, "idle_timeout": "60s",
                        "handshake_timeout": "30s"}) as node:
        first = node.wait_settled(2)
        t0 = time.monotonic()
        s = mctest.connect(node.port)
        s.sendall(mctest.client_hello_bytes("bulk.test"))
        got = pump_both_ways(s, BULK)
        s.close()
        assert got == BULK, got
        mctest.note("%d MiB each way in %.1f s" % (BULK >> 20, time.monotonic() - t0))
        # a burst of connections, all open before the first is looked at;
        # each is refused (no route) once its hello is read
        t0 = time.monotonic()
        hello = mctest.client_hello_bytes("nowhere.test")
        conns = []
        try:
            for _ in range(FLOOD):
                c = mctest.connect(node.port, timeout=30)
                c.sendall(hello)
                conns.append(c)
            for c in conns:
                data, how, _ = mctest.recv_until_close(c, 30)
                assert how != "timeout" and not data, (how, data)
        finally:
            for c in conns:
                c.close()
        mctest.note("%d connections in %.1f s" % (FLOOD, time.monotonic() - t0))
        assert not watchdog_kills(node.srv), watchdog_kills(node.srv)
        assert node.children()["worker"] == first["worker"]


@test
def reload_with_ten_thousand_routes_is_not_killed():
    routes = [("h%05d.test" % i, "127.0.0.1:9") for i in range(10000)]
    with Node(routes, proxy={"worker_watchdog": "%ds" % WATCHDOG}) as node:
        node.wait_settled(2, timeout=60)
        for workers in (1, 2):
            node.reconfigure(workers)
            node.srv.send_signal(signal.SIGHUP)
            node.wait_settled(workers, timeout=60)
        assert not watchdog_kills(node.srv), watchdog_kills(node.srv)


@test
def a_change_the_master_does_not_answer_is_not_called_unavailable():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            Node([("a.test", be.addr)]) as node:
        node.wait_settled(2)
        node.srv.send_signal(signal.SIGSTOP)
        try:
            read = node.ctl("status")
            r = node.ctl("routes", "add", node.listen_addr, "maybe.test", be.addr)
        finally:
            node.srv.send_signal(signal.SIGCONT)
        # a read that got no answer changed nothing: UNAVAILABLE
        assert read.rc == 1 and read.err.startswith("mcproxyctl: UNAVAILABLE: "), read
        # a change may have been made: never UNAVAILABLE, and it says so
        assert r.rc == 1 and r.err.startswith("mcproxyctl: DEADLINE_EXCEEDED: ") and \
            "may have been applied" in r.err, r
        # and it was: the master took it once it ran again
        mctest.wait_until(lambda: "maybe.test" in db_hostnames(node), 10,
                          what="the change the master received while stopped")


if __name__ == "__main__":
    mctest.main()
