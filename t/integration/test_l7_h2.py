#!/usr/bin/python3
"""L7 routes, HTTP/2 (SPEC section 6): clients that choose h2 by ALPN get
their requests proxied to the HTTP/1.1 backend with the HTTP/1.1 rules
(headers, 421, 403, 431, 502, 504), flow control end to end, and the
known HTTP/2 attacks closed: curl and nghttp for the ordinary, python3-h2
raw frames for the rest.
Run: /usr/bin/python3 t/integration/test_l7_h2.py [NAME...]"""

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402
from test_l7 import Backend, l7_route  # noqa: E402


def curl(srv, cs, *args, name="a.test"):
    r = subprocess.run(["curl", "-sS", "--http2", "--max-time", "10", "--cacert", cs.ca_cert,
                        "--resolve", "%s:%d:127.0.0.1" % (name, srv.port)] + list(args),
                       capture_output=True, timeout=30)
    return r


def url(srv, path, name="a.test"):
    return "https://%s:%d%s" % (name, srv.port, path)


class H2:
    """A raw HTTP/2 client connection over TLS (ALPN h2), frame by frame."""

    def __init__(self, srv, cs, name="a.test", timeout=10):
        ctx = ssl.create_default_context(cafile=cs.ca_cert)
        ctx.set_alpn_protocols(["h2"])
        s = socket.create_connection(("127.0.0.1", srv.port), timeout)
        self.sock = ctx.wrap_socket(s, server_hostname=name)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.conn.initiate_connection()
        self.flush()
        self.name = name
        self.port = srv.port
        self.closed = False
        self.goaway = None
        self.responses = {}  # stream id -> [headers, body, ended, reset]

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def headers(self, path="/", method="GET", extra=(), end=True, authority=None):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"),
                (":authority", authority or "%s:%d" % (self.name, self.port)),
                (":path", path)] + list(extra)
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.responses[sid] = [None, b"", False, None]
        return sid

    def pump(self, until, timeout=10):
        """Reads and handles events until until() holds or the peer closes."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionResetError, socket.timeout, OSError):
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for ev in events:
                self.on_event(ev)
            self.flush()

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.responses[ev.stream_id][0] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self.responses[ev.stream_id][1] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.responses[ev.stream_id][2] = True
        elif isinstance(ev, h2.events.StreamReset):
            self.responses[ev.stream_id][3] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev.error_code

    def read_some(self, timeout):
        """One read within timeout, its events handled; nothing when none came."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        self.flush()

    def done(self, sid):
        r = self.responses[sid]
        return r[2] or r[3] is not None

    def request(self, path="/", **kw):
        sid = self.headers(path, **kw)
        self.flush()
        self.pump(lambda: self.done(sid))
        return self.responses[sid]

    def close(self):
        self.sock.close()


def server(cs, backend, **kw):
    return mctest.proxy_server([l7_route(cs, backend)], **kw)


def served(srv, cs):
    """Another client is served now: a new connection's request gets 200."""
    c = H2(srv, cs)
    try:
        h, body, ended, _ = c.request("/ok")
        return h is not None and h[":status"] == "200" and ended
    finally:
        c.close()


@test
def curl_h2_gets_alpn_h2_and_the_headers_are_set():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            r = curl(srv, cs, "-H", "X-Forwarded-For: 6.6.6.6", "-H", "Cookie: a=1",
                     "-H", "Cookie: b=2", "-w", "\n%{http_version}\n", url(srv, "/x?q=1"))
            assert r.returncode == 0, r.stderr
            out = r.stdout.decode()
            assert out.endswith("\n2\n"), out
            assert "path=/x?q=1\n" in out, out
            assert "X-Forwarded-For: 127.0.0.1\n" in out and "6.6.6.6" not in out, out
            assert "X-Real-IP: 127.0.0.1\n" in out, out
            assert "X-Forwarded-Proto: https\n" in out, out
            assert "Host: a.test:%d\n" % srv.port in out, out
            assert "cookie: a=1; b=2\n" in out, out
            rec = srv.wait_log(lambda r: r.get("msg") == "request", what="request line")
            assert (rec["proto"], rec["method"], rec["path"], str(rec["status"])) == \
                ("HTTP/2.0", "GET", "/x", "200"), rec
            # streams one after another share one pooled backend connection
            be.httpd.conns.clear()
            r = curl(srv, cs, url(srv, "/1"), url(srv, "/2"), url(srv, "/3"), "-o", "/dev/null",
                     "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n")
            assert r.stdout.split() == [b"1", b"0", b"0"], r
            assert len(be.httpd.conns) == 1, be.httpd.conns
            # an HTTP/1.1 client still gets HTTP/1.1
            r = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert",
                                cs.ca_cert, "--resolve", "a.test:%d:127.0.0.1" % srv.port,
                                "-o", "/dev/null", "-w", "%{http_version}", url(srv, "/")],
                               capture_output=True, timeout=30)
            assert r.stdout == b"1.1", r


@test
def request_rules_answer_421_403_400_431_per_stream_and_are_counted():
    import test_metrics as tm
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        pol = [{"type": "require_header", "value": "X-Api-Key"}]
        routes = [l7_route(cs, be.addr, l7_policies=pol), l7_route(cs, be.addr, hostname="b.test")]
        with tm.metrics_server(routes) as srv:
            c = H2(srv, cs)
            key = [("x-api-key", "k")]
            # the same field 70 times: small on the wire (HPACK indexes it), 70 KB decoded
            big = [("x-big", "a" * 1000)] * 70
            try:
                # one connection, a stream each: the coalescing case (another route's
                # :authority) is per stream, and so is every refusal
                statuses = [c.request("/", extra=key)[0][":status"],
                            c.request("/", authority="b.test", extra=key)[0][":status"],
                            c.request("/")[0][":status"],
                            c.request("/", authority="a.test",
                                      extra=[("host", "b.test")] + key)[0][":status"],
                            c.request("/", extra=key + big)[0][":status"],
                            c.request("/", extra=key + big[:40])[0][":status"]]
                assert statuses == ["200", "421", "403", "400", "431", "200"], statuses
            finally:
                c.close()
            lst = srv.listen_addr
            want = {"2xx": 2, "4xx": 4}
            tm.wait_scrape(srv, lambda m: m.series("mcproxy_http_responses_total") and all(
                m.value("mcproxy_http_responses_total", listener=lst, route="a.test",
                        code=k) == n for k, n in want.items()) and m.value(
                "mcproxy_policy_blocks_total", listener=lst, route="a.test") == 1,
                "the h2 responses counted")


@test
def backend_down_is_502_and_silent_backend_is_504():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, "127.0.0.1:%d" % mctest.free_port()) as srv:
            r = curl(srv, cs, "-o", "/dev/null", "-w", "%{http_code}", url(srv, "/"))
            assert r.stdout == b"502", r
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            with server(cs, "127.0.0.1:%d" % silent.getsockname()[1],
                        proxy={"response_timeout": "500ms"}) as srv:
                t0 = time.monotonic()
                r = curl(srv, cs, "-o", "/dev/null", "-w", "%{http_code}", url(srv, "/"))
                assert r.stdout == b"504", r
                assert time.monotonic() - t0 >= 0.45
        finally:
            silent.close()


@test
def bodies_both_ways_byte_exact_with_and_without_length():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        data = os.urandom(3 * 1024 * 1024 + 17)
        path = tmp.write("up.bin", data)
        import hashlib
        want = ("%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()
        with server(cs, be.addr) as srv:
            # with a content-length
            r = curl(srv, cs, "--data-binary", "@" + path, url(srv, "/sha"))
            assert r.returncode == 0 and r.stdout == want, (r.stdout, r.stderr)
            # without one: chunked to the backend
            r = subprocess.run(["curl", "-sS", "--http2", "--max-time", "20", "--cacert",
                                cs.ca_cert, "--resolve", "a.test:%d:127.0.0.1" % srv.port,
                                "-X", "POST", "-T", "-", url(srv, "/sha")],
                               input=data, capture_output=True, timeout=30)
            assert r.returncode == 0 and r.stdout == want, (r.stdout, r.stderr)
            # downloads: content-length, chunked
            r = curl(srv, cs, url(srv, "/big/5000000"))
            block = bytes(range(256)) * 256
            assert r.stdout == (block * 77)[:5000000], len(r.stdout)
            r = curl(srv, cs, url(srv, "/chunked"))
            assert r.stdout == b"hello chunked world\n", r.stdout


@test
def many_streams_on_one_connection():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        # a backend connection per stream in flight: more than http.server's backlog of 5
        be.httpd.socket.listen(128)
        with server(cs, be.addr) as srv:
            r = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "50",
                                "--connect-to=127.0.0.1:%d" % srv.port, url(srv, "/ok")],
                               capture_output=True, timeout=60)
            out = r.stdout.decode()
            assert "400 succeeded" in out and "0 failed" in out, out


def silent_backend(n=256):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(n)
    return s


@test
def the_101st_concurrent_stream_is_refused():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        silent = silent_backend()
        routes = [l7_route(cs, "127.0.0.1:%d" % silent.getsockname()[1])]
        try:
            with mctest.proxy_server(routes, proxy={"response_timeout": "20s"}) as srv:
                c = H2(srv, cs)
                try:
                    # sent before the server's SETTINGS is read: the client does not hold back
                    sids = [c.headers("/") for _ in range(101)]
                    c.flush()
                    c.pump(lambda: c.responses[sids[-1]][3] is not None, timeout=10)
                    assert c.responses[sids[-1]][3] == 7, c.responses[sids[-1]]  # REFUSED
                    assert all(c.responses[s][3] is None for s in sids[:100])
                    assert c.conn.remote_settings.max_concurrent_streams == 100
                    assert not c.closed
                finally:
                    c.close()
        finally:
            silent.close()


def raw_frames(sock, timeout):
    """The frames that come until the peer closes (or timeout), parsed by
    hyperframe, and whether it closed."""
    buf = b""
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            closed = True
            break
        buf += data
    frames = []
    while len(buf) >= 9:
        f, length = hyperframe.frame.Frame.parse_frame_header(memoryview(buf[:9]))
        f.type = type(f).__name__.replace("Frame", "").upper()
        if isinstance(f, hyperframe.frame.GoAwayFrame):
            f.parse_body(memoryview(buf[9:9 + length]))
        frames.append(f)
        buf = buf[9 + length:]
    return frames, closed


def frame(ftype, flags, sid, payload):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big")
            + payload)


@test
def floods_end_the_connection_with_goaway_and_others_are_served():
    import hpack
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            # rapid reset: streams opened and reset in bulk
            c = H2(srv, cs)
            try:
                for _ in range(150):
                    sid = c.headers("/")
                    c.conn.reset_stream(sid)
                c.flush()
                c.pump(lambda: c.goaway is not None, timeout=10)
                assert c.goaway == 11, c.goaway  # ENHANCE_YOUR_CALM
                c.pump(lambda: False, timeout=5)
                assert c.closed
            finally:
                c.close()
            assert served(srv, cs)
            srv.wait_log(lambda r: r.get("msg") == "conn" and r.get("result") == "h2_calm",
                         what="the connection's line")

            # CONTINUATION flood: a header block that never ends, closed at 64 KiB
            c = H2(srv, cs)
            try:
                enc = hpack.Encoder()
                first = enc.encode([(":method", "GET"), (":scheme", "https"),
                                    (":path", "/"), (":authority", "a.test")], huffman=False)
                # fields of ~16 KB, one per frame, never END_HEADERS
                part = lambda i: enc.encode([("x-%d" % i, "a" * 16000)], huffman=False)
                data = frame(1, 0x1, 1, first + part(0))  # HEADERS, END_STREAM only
                for i in range(1, 4):
                    data += frame(9, 0, 1, part(i))  # CONTINUATION
                # 64 KB so far; one more frame header takes it over (nghttp2's own cap
                # of 8 CONTINUATIONs would answer PROTOCOL_ERROR, later)
                data += frame(9, 0, 1, part(4))[:109]
                c.send_raw(data)
                c.pump(lambda: c.goaway is not None, timeout=10)
                assert c.goaway == 11, c.goaway
            finally:
                c.close()
            assert served(srv, cs)

            # empty DATA frames
            c = H2(srv, cs)
            try:
                sid = c.headers("/", end=False)
                c.flush()
                c.send_raw(b"".join(frame(0, 0, sid, b"") for _ in range(100)))
                c.pump(lambda: c.goaway is not None, timeout=10)
                assert c.goaway == 11, c.goaway
            finally:
                c.close()
            assert served(srv, cs)


@test
def a_window_stall_holds_the_backend_back():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        total = 64 * 1024 * 1024
        sent = [0]
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)

        def writer(s):
            head = s.recv(65536)
            if head.startswith(b"GET /ok "):
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                s.close()
                return
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            s.setblocking(False)
            block = b"x" * 65536
            deadline = time.monotonic() + 20
            while sent[0] < total and time.monotonic() < deadline:
                try:
                    sent[0] += s.send(block)
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    break  # the proxy closed it: the test is over
            s.close()

        def backend():
            while True:
                try:
                    s, _ = lsock.accept()
                except OSError:
                    return
                threading.Thread(target=writer, args=(s,), daemon=True).start()

        threading.Thread(target=backend, daemon=True).start()
        routes = [l7_route(cs, "127.0.0.1:%d" % lsock.getsockname()[1])]
        try:
            with mctest.proxy_server(routes) as srv:
                c = H2(srv, cs)
                try:
                    c.on_event = lambda ev: stalling_client(c, ev)
                    sid = c.headers("/")
                    c.flush()
                    c.pump(lambda: len(c.responses[sid][1]) >= 65535, timeout=10)
                    # the backend's writes stop: what it could send is bounded
                    mctest.wait_until(lambda: stalled(sent), 10, what="the backend to stall")
                    assert sent[0] < total / 2, sent[0]
                    assert len(c.responses[sid][1]) == 65535
                    assert served(srv, cs)
                finally:
                    c.close()
        finally:
            lsock.close()


def stalling_client(c, ev):
    """A client that never opens its window: the 64 KiB it allows, then nothing."""
    if isinstance(ev, h2.events.DataReceived):
        c.responses[ev.stream_id][1] += ev.data
    elif isinstance(ev, h2.events.ResponseReceived):
        c.responses[ev.stream_id][0] = dict(ev.headers)


def stalled(sent, last=[None, 0.0]):
    now = time.monotonic()
    if last[0] != sent[0]:
        last[0], last[1] = sent[0], now
        return False
    return now - last[1] > 1.0


@test
def a_backend_that_reads_nothing_holds_the_upload_back():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        total = 64 * 1024 * 1024
        lsock = socket.socket()
        # small, so that the kernel holds little of what nobody reads: only speed depends on it
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        routes = [l7_route(cs, "127.0.0.1:%d" % lsock.getsockname()[1])]
        try:
            with mctest.proxy_server(routes, proxy={"response_timeout": "30s"}) as srv:
                c = H2(srv, cs)
                try:
                    sid = c.headers("/sha", method="POST", end=False)
                    c.flush()
                    sent, last, t_last = 0, -1, time.monotonic()
                    block = b"u" * 16384
                    # send what the windows allow; the proxy gives credit back only
                    # for what the backend took, and this backend takes nothing
                    while sent < total and time.monotonic() - t_last < 0.5:
                        n = min(c.conn.local_flow_control_window(sid), len(block))
                        if n > 0:
                            c.conn.send_data(sid, block[:n])
                            c.flush()
                            sent += n
                        else:
                            c.read_some(0.05)  # WINDOW_UPDATE, if any comes
                        if sent != last:
                            last, t_last = sent, time.monotonic()
                    mctest.note("upload held back after %d bytes" % sent)
                    assert sent < total / 2, sent
                finally:
                    c.close()
        finally:
            lsock.close()


@test
def an_idle_connection_gets_goaway_after_idle_timeout():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, proxy={"idle_timeout": "500ms"}) as srv:
            c = H2(srv, cs)
            try:
                h, _, _, _ = c.request("/")
                assert h[":status"] == "200"
                t0 = time.monotonic()
                c.pump(lambda: c.goaway is not None, timeout=5)
                assert c.goaway == 0 and time.monotonic() - t0 >= 0.4, c.goaway
            finally:
                c.close()


@test
def drain_sends_goaway_and_the_stream_in_flight_ends():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        lsock = silent_backend()
        held = []  # the backend accepts and never answers

        def accept():
            try:
                while True:
                    held.append(lsock.accept()[0])
            except OSError:
                pass

        threading.Thread(target=accept, daemon=True).start()
        routes = [l7_route(cs, "127.0.0.1:%d" % lsock.getsockname()[1])]
        try:
            with mctest.proxy_server(routes, workers=1,
                                     proxy={"shutdown_timeout": "20s", "idle_timeout": "30s",
                                            "response_timeout": "1s"}) as srv:
                c = H2(srv, cs)
                try:
                    sid = c.headers("/")
                    c.flush()
                    c.read_some(0.2)
                    # the stream is the proxy's once its backend connection came
                    mctest.wait_until(lambda: held, 5, what="the backend connection")
                    srv.send_signal(signal.SIGTERM)
                    # GOAWAY; the stream in flight still gets its answer (504 here), then
                    # the connection ends (python3-h2 takes no frame after a GOAWAY: raw)
                    frames, closed = raw_frames(c.sock, 10)
                    kinds = [(f.type, f.stream_id) for f in frames]
                    assert ("HEADERS", sid) in kinds and closed, (kinds, closed)
                    assert [(f.error_code, f.last_stream_id) for f in frames
                            if f.type == "GOAWAY"] == [(0, sid)], kinds
                finally:
                    c.close()
                assert srv.wait_exit(10) == 0
        finally:
            lsock.close()
            for s in held:
                s.close()

if __name__ == "__main__":
    mctest.main()
