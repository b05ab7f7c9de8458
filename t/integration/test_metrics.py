#!/usr/bin/python3
"""Metrics exporter: /metrics parses as Prometheus text, its counters move
with traffic and refusals, and it is served by an unprivileged process
that survives bad clients (SPEC sections 3, 11, 12).
Run: /usr/bin/python3 t/integration/test_metrics.py [NAME...]"""

import http.client
import http.server
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

CONN_MAX = 64  # metrics/metrics.c
CONN_TIMEOUT = 5.0

FAMILIES = {
    "mcproxy_connections_total": "counter",
    "mcproxy_connections_active": "gauge",
    "mcproxy_refusals_total": "counter",
    "mcproxy_bytes_total": "counter",
    "mcproxy_backend_connect_seconds": "histogram",
    "mcproxy_reloads_total": "counter",
    "mcproxy_worker_restarts_total": "counter",
    "mcproxy_workers": "gauge",
    "mcproxy_worker_connections_total": "counter",
    "mcproxy_worker_connections_active": "gauge",
    "mcproxy_start_time_seconds": "gauge",
    "mcproxy_log_lines_dropped_total": "counter",
    "mcproxy_http_responses_total": "counter",
    "mcproxy_policy_blocks_total": "counter",
}


def reasons():
    """Every refusal code, from common/reason.h (the source of truth)."""
    with open(os.path.join(mctest.REPO_ROOT, "common", "reason.h")) as f:
        names = re.findall(r'\[REASON_\w+\] = "(\w+)"', f.read())
    assert len(names) > 5, names
    return [n for n in names if n != "ok"]


# ---------------------------------------------------------------- text format

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % _NAME)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _labels(text):
    out = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, "bad label set at %r" % text[pos:]
        value = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), m.group(2))
        assert m.group(1) not in out, "label %s twice" % m.group(1)
        out[m.group(1)] = value
        pos = m.end()
        if m.group(3) == "," and pos == len(text):
            raise AssertionError("trailing comma in %r" % text)
    return out


def _value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$", text), "bad value %r" % text
    return float(text)


def parse_exposition(body):
    """Strict parser of the Prometheus text format (0.0.4) as we emit it.
    Returns (types, samples): family -> type, and
    (name, frozenset(labels)) -> value. Asserts on anything malformed:
    a sample without a TYPE before it, HELP/TYPE twice, a duplicate
    series, a histogram whose buckets are not cumulative, do not end in
    +Inf or whose +Inf bucket differs from _count."""
    assert body.endswith("\n"), "exposition does not end with a newline"
    types, helps, samples = {}, set(), {}
    seen_samples = set()
    for n, line in enumerate(body[:-1].split("\n"), 1):
        where = "line %d: %r" % (n, line)
        assert line, "empty line (%s)" % where
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % _NAME, line)
            assert m, "bad comment line (%s)" % where
            kind, name, rest = m.groups()
            assert name not in seen_samples, "%s after its samples (%s)" % (kind, where)
            if kind == "HELP":
                assert name not in helps, "HELP twice (%s)" % where
                helps.add(name)
            else:
                assert name not in types, "TYPE twice (%s)" % where
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), where
                types[name] = rest
            continue
        m = _SAMPLE.match(line)
        assert m, "bad sample line (%s)" % where
        name, labels, value = m.group(1), _labels(m.group(2) or ""), _value(m.group(3))
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
                family = name[:-len(suffix)]
        assert family in types, "sample before its TYPE (%s)" % where
        assert family in helps, "sample without HELP (%s)" % where
        if types[family] == "histogram":
            assert family != name, "bare sample of histogram %s (%s)" % (family, where)
            assert ("le" in labels) == name.endswith("_bucket"), where
        if types[family] == "counter":
            assert value >= 0, "negative counter (%s)" % where
        seen_samples.add(family)
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate series (%s)" % where
        samples[key] = value
    for family, kind in types.items():
        if kind == "histogram":
            _check_histogram(family, samples)
    return types, samples


def _check_histogram(family, samples):
    buckets = sorted(((_value(dict(k[1])["le"]), v) for k, v in samples.items()
                      if k[0] == family + "_bucket"), key=lambda b: b[0])
    assert buckets, "histogram %s has no buckets" % family
    assert buckets[-1][0] == math.inf, "histogram %s does not end in +Inf" % family
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram %s buckets not cumulative: %r" % (family, buckets)
    count = samples.get((family + "_count", frozenset()))
    assert count is not None and (family + "_sum", frozenset()) in samples, family
    assert counts[-1] == count, "+Inf bucket %r != _count %r" % (counts[-1], count)


class Scrape:
    """One parsed /metrics. value(name, **labels) of a missing series is a
    KeyError, never 0."""

    def __init__(self, types, samples):
        self.types = types
        self.samples = samples

    def value(self, name, **labels):
        return self.samples[(name, frozenset((k, str(v)) for k, v in labels.items()))]

    def series(self, name):
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


# ---------------------------------------------------------------- HTTP


def http_exchange(port, request, timeout=5.0):
    """Sends raw request bytes; returns (status, headers, body, how) where
    how is how the server ended it ("eof" or "rst"); status None when the
    server closed without answering."""
    s = mctest.connect(port, timeout=timeout)
    try:
        mctest.send_may_fail(s, request)
        data, how, _ = mctest.recv_until_close(s, timeout)
    finally:
        s.close()
    assert how != "timeout", "no end of answer within %.1f s" % timeout
    if not data:
        return None, {}, b"", how
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "answer without a blank line: %r" % data[:200]
    lines = head.decode("ascii").split("\r\n")
    m = re.match(r"^HTTP/1\.1 (\d{3}) [A-Za-z ]+$", lines[0])
    assert m, "bad status line %r" % lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(": ")
        headers[k.lower()] = v
    return int(m.group(1)), headers, body, how


class NoAnswer(AssertionError):
    """The exporter closed the connection without a response."""


def scrape(port):
    status, headers, body, _ = http_exchange(
        port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
    if status is None and not body:
        raise NoAnswer("GET /metrics: closed without an answer")
    assert status == 200, "GET /metrics: %s %r" % (status, body[:200])
    assert headers.get("content-type") == "text/plain; version=0.0.4", headers
    assert headers.get("connection") == "close", headers
    assert int(headers["content-length"]) == len(body), (headers, len(body))
    return Scrape(*parse_exposition(body.decode("utf-8")))


def metrics_server(routes, **kw):
    """proxy_server with metrics on a free loopback port (.metrics_port)."""
    port = mctest.free_port()
    srv = mctest.proxy_server(routes, metrics={"addr": "127.0.0.1:%d" % port}, **kw)
    srv.metrics_port = port
    return srv


def exporter_pid(srv):
    """PID of the metrics exporter: the master's child run as __metrics."""
    pids = srv.child_pids(lambda argv: b"__metrics" in argv)
    return pids[0] if pids else None


def wait_scrape(srv, pred, what, timeout=5.0):
    """Scrapes until pred(scrape) holds; returns that scrape."""
    last = []

    def ok():
        try:
            s = scrape(srv.metrics_port)
        except ConnectionRefusedError:
            return None  # the exporter is starting: READY=1 does not wait for it
        except NoAnswer:
            return None  # at its connection cap until it has seen earlier ones close
        last[:] = [s]
        return s if pred(s) else None
    try:
        return mctest.wait_until(ok, timeout, interval=0.05, what=what)
    except AssertionError as e:
        raise AssertionError("%s; last scrape: %r" % (e, sorted(last[0].samples.items())
                                                       if last else None))


def up(srv):
    """The first scrape, once the exporter listens."""
    return wait_scrape(srv, lambda m: True, "the exporter answering")


def relay_once(srv, payload):
    """One connection through srv to a hello-then-echo backend: sends a
    ClientHello and payload, reads payload back, closes. Returns the
    number of bytes sent."""
    hello = mctest.client_hello_bytes("a.test")
    s = mctest.connect(srv.port)
    s.sendall(hello + payload)
    got = mctest.recv_exact(s, len(payload))
    assert got == payload
    s.close()
    return len(hello) + len(payload)


# ---------------------------------------------------------------- tests


@test
def exposition_parses_and_names_every_family():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        t0 = time.time()
        s = up(srv)
        for family, kind in FAMILIES.items():
            assert s.types.get(family) == kind, "%s: %r" % (family, s.types.get(family))
        unexpected = set(s.types) - set(FAMILIES)
        assert not unexpected, "families not in the test's list: %s" % sorted(unexpected)
        assert s.value("mcproxy_connections_total", listener=srv.listen_addr) == 0
        assert s.value("mcproxy_connections_active", listener=srv.listen_addr) == 0
        # every refusal code, zeros included, and nothing else
        refusals = s.series("mcproxy_refusals_total")
        assert sorted(dict(k)["reason"] for k in refusals) == sorted(reasons()), refusals
        assert all(v == 0 for v in refusals.values()), refusals
        assert s.value("mcproxy_bytes_total", direction="in") == 0
        assert s.value("mcproxy_bytes_total", direction="out") == 0
        assert s.value("mcproxy_backend_connect_seconds_count") == 0
        buckets = s.series("mcproxy_backend_connect_seconds_bucket")
        les = sorted(float(dict(k)["le"]) for k in buckets)
        assert les[0] <= 0.001 and les[-2] >= 1 and les[-1] == math.inf, les
        assert s.value("mcproxy_workers") == 2
        workers = s.series("mcproxy_worker_connections_total")
        assert len(workers) == 2, workers
        assert s.value("mcproxy_reloads_total") == 0
        assert s.value("mcproxy_worker_restarts_total", reason="exit") == 0
        start = s.value("mcproxy_start_time_seconds")
        assert t0 - 60 <= start <= time.time(), (start, t0)

        # HEAD: the same headers, no body (nothing moves on an idle server)
        _, _, body, _ = http_exchange(srv.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n")
        status, headers, head_body, _ = http_exchange(srv.metrics_port,
                                                      b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert status == 200 and head_body == b"", (status, head_body[:100])
        assert int(headers["content-length"]) == len(body), (headers, len(body))


@test
def counters_move_with_traffic():
    n, payload = 5, b"p" * 3000
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        before = up(srv)
        sent = sum(relay_once(srv, payload) for _ in range(n))
        lst = srv.listen_addr

        def settled(s):
            return (s.value("mcproxy_connections_active", listener=lst) == 0 and
                    s.value("mcproxy_bytes_total", direction="out") -
                    before.value("mcproxy_bytes_total", direction="out") == n * len(payload) and
                    s.value("mcproxy_bytes_total", direction="in") -
                    before.value("mcproxy_bytes_total", direction="in") == sent)
        after = wait_scrape(srv, settled, "bytes counted and connections closed")

        def delta(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)
        assert delta("mcproxy_connections_total", listener=lst) == n
        assert delta("mcproxy_backend_connect_seconds_count") == n
        assert delta("mcproxy_backend_connect_seconds_sum") > 0
        assert delta("mcproxy_backend_connect_seconds_bucket", le="+Inf") == n
        worker_total = sum(after.series("mcproxy_worker_connections_total").values()) - \
            sum(before.series("mcproxy_worker_connections_total").values())
        assert worker_total == n, worker_total
        assert all(v == 0 for v in after.series("mcproxy_refusals_total").values())

        # while a connection is open, it is active on its listener and its worker
        s = mctest.connect(srv.port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"x")
        open_ = scrape(srv.metrics_port)
        assert open_.value("mcproxy_connections_active", listener=lst) == 1
        assert sum(open_.series("mcproxy_worker_connections_active").values()) == 1
        s.close()
        wait_scrape(srv, lambda m: m.value("mcproxy_connections_active", listener=lst) == 0,
                    "the connection no longer active")


class StatusHandler(http.server.BaseHTTPRequestHandler):
    """GET /N answers status N."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(int(self.path[1:]))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def l7_get(srv, cs, name, path, headers):
    """One request on its own TLS connection to srv, SNI name; the status."""
    ctx = ssl.create_default_context(cafile=cs.ca_cert)
    ctx.check_hostname = False  # one certificate (a.test's) for both routes
    c = http.client.HTTPSConnection(name, srv.port, context=ctx, timeout=10)
    c._create_connection = lambda addr, timeout, source: socket.create_connection(
        ("127.0.0.1", srv.port), timeout)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


@test
def l7_responses_counted_by_route_and_class():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with mctest.TempDir() as tmp:
            cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
            route = {"mode": "l7", "tls_cert": cs.cert, "tls_key": cs.key}
            routes = [dict(route, hostname="a.test",
                           backend="127.0.0.1:%d" % httpd.server_address[1],
                           l7_policies=[{"type": "require_header", "value": "X-Key"}]),
                      dict(route, hostname="b.test",
                           backend="127.0.0.1:%d" % mctest.free_port())]
            with metrics_server(routes) as srv:
                before = up(srv)
                key = {"X-Key": "k"}
                # ours count too: 403 (a policy), 421 (a Host of another route), 502 (no backend)
                answers = [l7_get(srv, cs, "a.test", "/200", key),
                           l7_get(srv, cs, "a.test", "/204", key),
                           l7_get(srv, cs, "a.test", "/404", key),
                           l7_get(srv, cs, "a.test", "/200", {}),
                           l7_get(srv, cs, "a.test", "/200", dict(key, Host="b.test")),
                           l7_get(srv, cs, "b.test", "/200", key)]
                assert answers == [200, 204, 404, 403, 421, 502], answers
                lst = srv.listen_addr
                want = {("a.test", "2xx"): 2, ("a.test", "4xx"): 3, ("b.test", "5xx"): 1}

                def counted(m):
                    if not m.series("mcproxy_http_responses_total"):
                        return False  # a route's series appear with its first response
                    return all(m.value("mcproxy_http_responses_total", listener=lst, route=r,
                                       code=k) == n for (r, k), n in want.items())
                after = wait_scrape(srv, counted, "the responses counted")
                for r in ("a.test", "b.test"):
                    for k in ("1xx", "2xx", "3xx", "4xx", "5xx"):
                        assert after.value("mcproxy_http_responses_total", listener=lst, route=r,
                                           code=k) == want.get((r, k), 0), (r, k)
                assert after.value("mcproxy_policy_blocks_total", listener=lst,
                                   route="a.test") == 1
                assert after.value("mcproxy_policy_blocks_total", listener=lst,
                                   route="b.test") == 0
                routes_seen = {dict(k)["route"] for k in
                               after.series("mcproxy_http_responses_total")}
                assert routes_seen == {"a.test", "b.test"}, routes_seen
                # the L7 backend connects are timed like L4's
                assert after.value("mcproxy_backend_connect_seconds_count") > \
                    before.value("mcproxy_backend_connect_seconds_count")
    finally:
        httpd.shutdown()
        httpd.server_close()


@test
def refusals_counted_by_reason():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        before = up(srv)
        s = mctest.connect(srv.port)
        mctest.send_may_fail(s, mctest.client_hello_bytes("nowhere.test"))
        mctest.assert_closed_without_bytes(s, what="no_route connection")
        s.close()
        s = mctest.connect(srv.port)
        mctest.send_may_fail(s, b"GET / HTTP/1.0\r\n\r\n")
        mctest.assert_closed_without_bytes(s, what="not_tls connection")
        s.close()
        want = {"no_route": 1, "not_tls": 1}

        def counted(m):
            return all(m.value("mcproxy_refusals_total", reason=r) -
                       before.value("mcproxy_refusals_total", reason=r) == want.get(r, 0)
                       for r in reasons())
        after = wait_scrape(srv, counted, "one no_route and one not_tls refusal, nothing else")
        lst = srv.listen_addr
        assert after.value("mcproxy_connections_total", listener=lst) - \
            before.value("mcproxy_connections_total", listener=lst) == 2
        assert after.value("mcproxy_backend_connect_seconds_count") == \
            before.value("mcproxy_backend_connect_seconds_count")
        assert be.accepted == 0


@test
def worker_restart_is_counted():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        relay_once(srv, b"before")
        before = up(srv)
        pids = srv.wait_workers(2)
        os.kill(pids[0], signal.SIGKILL)
        after = wait_scrape(srv, lambda m: m.value("mcproxy_worker_restarts_total",
                                                   reason="exit") == 1 and
                            m.value("mcproxy_workers") == 2 and
                            len(srv.worker_pids()) == 2 and pids[0] not in srv.worker_pids(),
                            "worker_restarts_total 1 and two workers again")
        # totals survive the worker that counted them
        lst = srv.listen_addr
        assert after.value("mcproxy_connections_total", listener=lst) == \
            before.value("mcproxy_connections_total", listener=lst)
        assert after.value("mcproxy_bytes_total", direction="in") == \
            before.value("mcproxy_bytes_total", direction="in")
        relay_once(srv, b"after")


@test
def exporter_is_unprivileged():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        up(srv)
        pid = exporter_pid(srv)
        assert pid, "no __metrics child of the master"
        status = {}
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        assert status["Name"] == ["mc-proxy-metric"], status["Name"]  # not "exe" to ps and top
        if os.geteuid() == 0:
            nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True,
                                        text=True).stdout)
            assert status["Uid"] == [str(nobody)] * 4, status["Uid"]
            assert status["Groups"] == [], status["Groups"]
        assert int(status["CapEff"][0], 16) == 0, status["CapEff"]
        assert int(status["CapPrm"][0], 16) == 0, status["CapPrm"]
        assert status["NoNewPrivs"] == ["1"], status["NoNewPrivs"]
        # the counters are mapped read-only, and no proxy listener reached it
        with open("/proc/%d/maps" % pid) as f:
            maps = [l.split() for l in f if "mc-proxy-shm" in l]
        assert maps and all(m[1].startswith("r-") for m in maps), maps
        assert not (mctest.proc_socket_inodes(pid) &
                    mctest.tcp_socket_inodes(srv.port, 0)), "exporter holds a proxy listener"


@test
def exporter_respawns_after_kill():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        relay_once(srv, b"x")
        up(srv)
        pid = exporter_pid(srv)
        os.kill(pid, signal.SIGKILL)
        mctest.wait_until(lambda: exporter_pid(srv) not in (None, pid), 5, what="a new exporter")
        # the counters live in shared memory, not in the exporter
        s = up(srv)
        assert s.value("mcproxy_connections_total", listener=srv.listen_addr) == 1


@test
def exporter_follows_reload():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        relay_once(srv, b"x")
        up(srv)
        pid = exporter_pid(srv)

        def reload():
            start = len(srv.notify.drain())
            srv.send_signal(signal.SIGHUP)
            mctest.wait_until(lambda: "READY=1" in srv.notify.drain(0.05)[start:], 20,
                              what="READY=1 after the reload")
            srv.wait_log(lambda r: "reload complete" in r.get("msg", ""), timeout=20)

        # its own settings did not change: it keeps running
        reload()
        assert exporter_pid(srv) == pid, "the exporter was restarted for nothing"
        # they did (the log level): restarted on them; the counters were never its own
        cfg = mctest.base_config([mctest.listener(srv.listen_addr, [("a.test", be.addr)])],
                                 metrics={"addr": "127.0.0.1:%d" % srv.metrics_port},
                                 log={"level": "info"})
        srv.dir.write("mc-proxy.yaml", mctest.to_yaml(cfg))
        reload()
        mctest.wait_until(lambda: exporter_pid(srv) not in (None, pid), 5,
                          what="a new exporter after the reload")
        s = wait_scrape(srv, lambda m: m.value("mcproxy_workers") == 2,
                        "two workers after the reload")
        assert s.value("mcproxy_connections_total", listener=srv.listen_addr) == 1
        # retired workers are not restarts
        assert s.value("mcproxy_worker_restarts_total", reason="exit") == 0
        assert s.value("mcproxy_reloads_total") == 2


@test
def bad_requests_are_refused_and_serving_continues():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        port = srv.metrics_port
        up(srv)
        status, headers, _, _ = http_exchange(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status == 405 and headers.get("allow") == "GET, HEAD", (status, headers)
        status, _, _, _ = http_exchange(port, b"GET /other HTTP/1.1\r\n\r\n")
        assert status == 404, status
        status, _, _, _ = http_exchange(port, b"GET /metrics/ HTTP/1.1\r\n\r\n")
        assert status == 404, status
        for garbage in (mctest.client_hello_bytes("a.test"), b"\x00" * 100,
                        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                        b"GET /metrics HTTP/9.9\r\n\r\n"):
            status, _, body, _ = http_exchange(port, garbage)
            assert status in (None, 400), (garbage[:20], status, body)
        # headers that never end: cut off at the buffer, not read forever
        big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 8000 + b"\r\n"
        status, _, _, _ = http_exchange(port, big)
        assert status in (None, 400, 431), status

        # a client that sends nothing is dropped at the deadline
        s = mctest.connect(port)
        secs = mctest.assert_closed_without_bytes(s, timeout=CONN_TIMEOUT + 5,
                                                  what="silent metrics client")
        s.close()
        assert secs >= CONN_TIMEOUT - 1, secs

        # a byte at a time still works
        s = mctest.connect(port)
        mctest.send_slowly(s, b"GET /metrics HTTP/1.0\r\n\r\n", delay=0.01)
        data, how, _ = mctest.recv_until_close(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and how == "eof", (data[:80], how)
        scrape(port)
        assert mctest.proc_alive(exporter_pid(srv))


@test
def connection_cap_holds():
    with mctest.RawBackend(mctest.hello_echo_handler) as be, \
            metrics_server([("a.test", be.addr)]) as srv:
        port = srv.metrics_port
        up(srv)
        pid = exporter_pid(srv)
        idle = [mctest.connect(port) for _ in range(CONN_MAX)]
        mine = {(port, s.getsockname()[1]) for s in idle}

        def accepted():
            # the exporter holds the server side of each of ours
            inodes = {inode for lport, rport, _, inode in mctest.tcp_table()
                      if (lport, rport) in mine}
            return len(inodes & mctest.proc_socket_inodes(pid)) == CONN_MAX
        try:
            mctest.wait_until(accepted, 10, what="the exporter to accept %d connections" % CONN_MAX)
            extra = mctest.connect(port)
            mctest.send_may_fail(extra, b"GET /metrics HTTP/1.0\r\n\r\n")
            mctest.assert_closed_without_bytes(extra, timeout=3, what="connection over the cap")
            extra.close()
        finally:
            for s in idle:
                s.close()
        up(srv)


@test
def non_loopback_metrics_addr_is_refused():
    with mctest.TempDir() as tmp:
        cfg = mctest.base_config([mctest.listener("127.0.0.1:%d" % mctest.free_port(),
                                                  [("a.test", "127.0.0.1:9")])],
                                 metrics={"addr": "10.0.0.1:9091"})
        path = tmp.write("mc-proxy.yaml", mctest.to_yaml(cfg))
        r = subprocess.run([mctest.require_binary(), "check", "-c", path], capture_output=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        err = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode != 0, "check accepted a non-loopback metrics.addr: %s" % err
        assert "metrics" in err and "loopback" in err, err


if __name__ == "__main__":
    mctest.main()
