#!/usr/bin/python3
"""Logging never stops the traffic (SPEC section 11, issue 21): a stderr
nobody reads, or reads slowly, costs log lines (dropped, counted, and said
once writing works again), never a connection or a relay's latency; access
lines go to log.access_file when set, which SIGUSR1 and a reload reopen.
Run: /usr/bin/python3 t/integration/test_logging.py"""

import os
import re
import signal
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

CONNS = 5000
LATENCY_SLACK = 0.05  # s: what a loaded machine may add to a median


class StderrPipe:
    """A pipe (or a stream socket, like journald's) to give the server as
    stderr. Nobody reads it until start_reader(); what was read is in .data."""

    def __init__(self, kind="pipe"):
        if kind == "pipe":
            self.r, self.w = os.pipe()
        else:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.r, self.w = a.detach(), b.detach()
        self.data = bytearray()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = None

    def assert_blocking(self):
        """The server must not have changed the description we share with it."""
        assert os.get_blocking(self.w), "the server made the shared stderr non-blocking"

    def start_reader(self, chunk, every):
        """Reads chunk bytes every `every` seconds (chunk None: all there is, at once)."""
        def run():
            while not self.stop.is_set():
                try:
                    b = os.read(self.r, chunk or 1 << 20)
                except OSError:
                    return
                if not b:
                    return
                with self.lock:
                    self.data += b
                if every:
                    self.stop.wait(every)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def lines(self):
        with self.lock:
            text = bytes(self.data).decode("utf-8", "replace")
        return text.split("\n")[:-1]  # a last line without its newline is not complete yet

    def records(self):
        return [mctest.parse_log_line(l) for l in self.lines()]

    def close(self):
        """After the server is gone: reads to EOF, fails on a sanitizer report."""
        self.stop.set()
        os.close(self.w)  # the last writer: a blocked reader sees EOF
        if self.thread is not None:
            self.thread.join(10)
        os.set_blocking(self.r, False)
        while True:
            try:
                b = os.read(self.r, 1 << 20)
            except BlockingIOError:
                break
            if not b:
                break
            self.data += b
        os.close(self.r)
        report = mctest.sanitizer_report(bytes(self.data).decode("utf-8", "replace"))
        assert report is None, report


def metrics_value(port, series):
    """The value of one series (name with labels, as exposed) in a scrape."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    body, _, _ = mctest.recv_until_close(s, 5)
    s.close()
    m = re.search(rb"^" + re.escape(series.encode()) + rb" (\d+)$", body, re.M)
    assert m, "%s not in the scrape:\n%s" % (series, body.decode("utf-8", "replace")[-800:])
    return int(m.group(1))


def dropped(srv, process):
    return metrics_value(srv.metrics_port,
                         'mcproxy_log_lines_dropped_total{process="%s"}' % process)


def logging_server(be, pipe=None, **kw):
    port = mctest.free_port()
    srv = mctest.proxy_server([("a.test", be.addr)], metrics={"addr": "127.0.0.1:%d" % port},
                              stderr=pipe.w if pipe else None, **kw)
    srv.metrics_port = port
    return srv


def one_conn(srv, timeout=5.0):
    """A connection through the proxy: ClientHello, one echo, close. Returns its latency."""
    t0 = time.monotonic()
    s = mctest.connect(srv.port, timeout=timeout)
    try:
        s.sendall(mctest.client_hello_bytes("a.test") + b"ping")
        assert mctest.recv_exact(s, 4, timeout) == b"ping"
    finally:
        s.close()
    return time.monotonic() - t0


def wait_exporter(srv):
    mctest.wait_until(lambda: _answers(srv), 10, what="the exporter answering")


def _answers(srv):
    try:
        metrics_value(srv.metrics_port, "mcproxy_workers")
        return True
    except (ConnectionRefusedError, ConnectionResetError):
        return False


class Churn(threading.Thread):
    """New connections (hello, echo, close) back to back until stopped."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.ok = 0
        self.failures = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                one_conn(self.srv)
                self.ok += 1
            except Exception as e:  # every failure is a finding
                self.failures.append(repr(e))

    def finish(self):
        self.stopping.set()
        self.join(30)
        assert not self.failures, self.failures[:3]
        return self.ok


@test
def stuck_stderr_drops_lines_not_connections():
    pipe = StderrPipe()
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            logging_server(be, pipe, workers=1) as srv:
        wait_exporter(srv)
        early = [one_conn(srv) for _ in range(200)]
        late = []
        for i in range(CONNS - 200):
            late.append(one_conn(srv))
        n = dropped(srv, "worker")
        assert n > 0, "5000 access lines into a pipe nobody reads, none dropped"
        pipe.assert_blocking()
        late = late[-1000:]
        assert statistics.median(late) <= 3 * statistics.median(early) + LATENCY_SLACK, (
            "median latency %.4f s with the log stuck, %.4f s before"
            % (statistics.median(late), statistics.median(early)))
        assert max(late) < 2.0, "a connection took %.2f s with the log stuck" % max(late)

        pipe.start_reader(None, 0)  # the reader is back
        notice = mctest.wait_until(
            lambda: next((r for r in pipe.records() if r and r.get("proc") == "worker" and
                          re.match(r"dropped \d+ lines$", r.get("msg", ""))), None),
            10, what="the worker's \"dropped N lines\" notice")
        # every line dropped is counted (the last connection's may be among them)
        assert notice["dest"] == "stderr" and int(notice["dropped"]) == dropped(srv, "worker"), (
            notice, dropped(srv, "worker"))
        assert int(notice["dropped"]) >= n
        one_conn(srv)

        def conn_after_notice():
            rs = pipe.records()
            return any(r and r.get("msg") == "conn" for r in rs[rs.index(notice) + 1:])
        mctest.wait_until(conn_after_notice, 10, what="an access line after the notice")
        bad = [l for l in pipe.lines() if mctest.parse_log_line(l) is None]
        assert not bad, "lines split or garbled: %r" % bad[:3]
    pipe.close()


def fill_log(srv):
    """Connections until the workers drop lines: the log is stuck now."""
    mctest.wait_until(lambda: one_conn(srv) and dropped(srv, "worker") > 0, 60, interval=0,
                      what="the log stuck")


@test
def stuck_journal_socket_drops_lines_not_connections():
    sock = StderrPipe("socket")
    with mctest.RawBackend(mctest.hello_echo_handler) as be, logging_server(be, sock) as srv:
        wait_exporter(srv)
        fill_log(srv)
        worst = max(one_conn(srv) for _ in range(200))
        assert worst < 2.0, "a connection took %.2f s with the log stuck" % worst
        sock.assert_blocking()
        sock.start_reader(None, 0)
        mctest.wait_until(
            lambda: any(r and r.get("proc") == "worker" and r.get("dest") == "stderr" and
                        re.match(r"dropped \d+ lines$", r.get("msg", "")) for r in sock.records()),
            10, what="a worker's \"dropped N lines\" notice")
        bad = [l for l in sock.lines() if mctest.parse_log_line(l) is None]
        assert not bad, "lines split or garbled: %r" % bad[:3]
    sock.close()


@test
def master_loop_runs_with_stuck_stderr():
    pipe = StderrPipe()
    with mctest.RawBackend(mctest.hello_echo_handler) as be, logging_server(be, pipe) as srv:
        wait_exporter(srv)
        fill_log(srv)
        for _ in range(3):  # each reload logs a dozen lines from the master
            start = len(srv.notify.drain())
            srv.send_signal(signal.SIGHUP)
            mctest.wait_until(lambda: "READY=1" in srv.notify.drain(0.05)[start:], 20,
                              what="the reload done with stderr stuck")
        for _ in range(50):
            one_conn(srv)
        # what the master could not write waited (its buffer holds far more than this)
        pipe.start_reader(None, 0)
        mctest.wait_until(
            lambda: len([r for r in pipe.records() if r and r.get("proc") == "master" and
                         r["msg"].startswith("reload complete")]) == 3,
            10, what="the master's three \"reload complete\" lines")
        wait_exporter(srv)  # restarted by the reloads
        assert dropped(srv, "master") == 0
        for process in ("admin", "metrics"):  # the series names every kind of process
            assert dropped(srv, process) == 0
    pipe.close()


@test
def slow_reader_never_slows_a_relay():
    pipe = StderrPipe()
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            logging_server(be, pipe, workers=1) as srv:
        pipe.start_reader(1024, 1.0)  # 1 KiB/s
        relay = mctest.connect(srv.port, timeout=10)
        relay.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(relay, b"x" * 64)
        churn = [Churn(srv) for _ in range(4)]
        for c in churn:
            c.start()
        worst = 0.0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            mctest.echo_roundtrip(relay, b"y" * 64, timeout=15)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.01)
        made = sum(c.finish() for c in churn)
        relay.close()
        assert worst < 1.0, "a relay echo took %.2f s while the log reader was slow" % worst
        assert dropped(srv, "worker") > 0, "%d connections in 6 s, none dropped" % made
    pipe.close()


def file_records(path):
    """Access-file lines as records; a line without its newline fails (split)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    return [mctest.parse_log_line(l) for l in data.split("\n")[:-1]]


def wait_lines(path, n, what):
    return mctest.wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(file_records(path)),
                             10, what="%d lines in %s (%s)" % (n, os.path.basename(path), what))


@test
def access_file_reopened_on_sigusr1_loses_nothing():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            logging_server(be, log={"access_file": "access.log", "format": "json"}) as srv:
        path = srv.dir.join("access.log")
        for _ in range(20):
            one_conn(srv)
        recs = wait_lines(path, 20, "one per connection")
        assert len(recs) == 20 and all(r and r["msg"] == "conn" and r["result"] == "ok"
                                       for r in recs), recs
        assert not srv.conn_logs(), "access lines went to stderr too"
        workers = srv.worker_pids()

        churn = Churn(srv)
        churn.start()
        mctest.wait_until(lambda: churn.ok >= 50 or churn.failures, 20, what="50 connections")
        os.rename(path, path + ".1")
        os.killpg(srv.pid, signal.SIGUSR1)  # as `systemctl kill` would: every process
        wait_lines(path, 20, "after SIGUSR1")
        total = 20 + churn.finish()
        mctest.wait_until(lambda: len(file_records(path + ".1")) + len(file_records(path)) >=
                          total, 10, what="%d lines in the two files" % total)
        old, new = file_records(path + ".1"), file_records(path)
        assert len(old) + len(new) == total, (len(old), len(new), total)
        for r in old + new:
            assert r is not None and r["msg"] == "conn" and r["result"] == "ok", r
        assert srv.worker_pids() == workers, "SIGUSR1 killed a worker"
        srv.wait_log(lambda r: r["msg"] == "SIGUSR1: access lines go to %s" % path)


@test
def reload_keeps_the_access_file_and_follows_its_path():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            logging_server(be, log={"access_file": "a.log", "format": "text"}) as srv:
        def reload_to(log):
            cfg = mctest.base_config([mctest.listener(srv.listen_addr, [("a.test", be.addr)])],
                                     metrics={"addr": "127.0.0.1:%d" % srv.metrics_port}, log=log)
            srv.dir.write("mc-proxy.yaml", mctest.to_yaml(cfg))
            start = len(srv.notify.drain())
            srv.send_signal(signal.SIGHUP)
            mctest.wait_until(lambda: "READY=1" in srv.notify.drain(0.05)[start:], 20,
                              what="the reload done")

        a, b = srv.dir.join("a.log"), srv.dir.join("b.log")
        one_conn(srv)
        wait_lines(a, 1, "before the reload")
        reload_to({"access_file": "a.log", "format": "text"})
        for _ in range(5):
            one_conn(srv)
        recs = wait_lines(a, 6, "the new workers, same file")
        assert all(r and r["msg"] == "conn" and "level" in r for r in recs), recs
        reload_to({"access_file": "b.log"})
        for _ in range(3):
            one_conn(srv)
        wait_lines(b, 3, "the path changed")
        reload_to({})
        one_conn(srv)
        srv.wait_conn_log(result="ok")
        assert len(file_records(a)) == 6 and len(file_records(b)) == 3


if __name__ == "__main__":
    mctest.main()
