#!/usr/bin/python3
"""L7 routes, HTTP/2 (SPEC section 6): clients that choose h2 by ALPN get
their requests proxied to the HTTP/1.1 backend with the HTTP/1.1 rules
(headers, 421, 403, 431, 502, 504), flow control end to end, and the
known HTTP/2 attacks closed: curl and nghttp for the ordinary, python3-h2
raw frames for the rest.
Run: /usr/bin/python3 t/integration/test_l7_h2.py [NAME...]"""

import os
import resource
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
            # an HTTP/1.1 client still gets HTTP/1.1
            r = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert",
                                cs.ca_cert, "--resolve", "a.test:%d:127.0.0.1" % srv.port,
                                "-o", "/dev/null", "-w", "%{http_version}", url(srv, "/")],
                               capture_output=True, timeout=30)
            assert r.stdout == b"1.1", r


if __name__ == "__main__":
    mctest.main()
