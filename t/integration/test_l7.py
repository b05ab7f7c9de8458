#!/usr/bin/python3
"""L7 routes, HTTP/1.1 (SPEC section 6): mc-proxy terminates TLS with the
route's certificate and proxies HTTP/1.1 to a plaintext backend, as real
clients (curl, Python's ssl and http.client) see it.
Run: /usr/bin/python3 t/integration/test_l7.py [NAME...]"""

import hashlib
import http.client
import http.server
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


class Handler(http.server.BaseHTTPRequestHandler):
    """/echo-headers: the request's headers as text; /big/N: N bytes;
    /chunked: a chunked body; POST /sha: the body's sha256 and length."""
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.conns.add(self.client_address)
        if self.path.startswith("/big/"):
            n = int(self.path[5:])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(range(256)) * 256
            while n > 0:
                self.wfile.write(block[:min(n, len(block))])
                n -= min(n, len(block))
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            text = "".join("%s: %s\n" % (k, v) for k, v in self.headers.items())
            self._send(200, ("path=%s\n%s" % (self.path, text)).encode())

    def do_POST(self):
        self.server.conns.add(self.client_address)
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(size)
                h.update(data)
                n += len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 65536))
                h.update(data)
                n += len(data)
                left -= len(data)
        self._send(200, ("%d %s" % (n, h.hexdigest())).encode())

    def log_message(self, *args):
        pass


class Backend:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.conns = set()
        self.addr = "127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def l7_route(cs, backend, hostname="a.test", **extra):
    r = {"hostname": hostname, "backend": backend, "mode": "l7", "tls_cert": cs.cert,
         "tls_key": cs.key}
    r.update(extra)
    return r


def client_ctx(cs, **kw):
    ctx = ssl.create_default_context(cafile=cs.ca_cert)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https(srv, cs, name="a.test", ctx=None):
    """An http.client connection to srv for name, verifying cs's CA."""
    c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx or client_ctx(cs),
                                    timeout=10)
    c._tunnel_host = None
    c.host = name  # SNI and Host
    c._create_connection = lambda addr, timeout, source: socket.create_connection(
        ("127.0.0.1", srv.port), timeout)
    return c


def get(srv, cs, path, name="a.test", headers=None):
    c = https(srv, cs, name)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), r
    finally:
        c.close()


def raw(srv, cs, data, name="a.test", timeout=10):
    """Sends data over TLS and returns everything until the proxy closes."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout)
    t = client_ctx(cs).wrap_socket(s, server_hostname=name)
    try:
        t.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = t.recv(65536)
            except (ssl.SSLError, ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        t.close()


def server(cs, backend, **kw):
    return mctest.proxy_server([l7_route(cs, backend)], **kw)


@test
def the_route_certificate_is_served_and_headers_are_set():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            c = https(srv, cs)
            c.connect()
            assert c.sock.getpeercert()["subject"] == ((("commonName", "a.test"),),)
            assert c.sock.version() in ("TLSv1.3", "TLSv1.2")
            c.request("GET", "/x?q=1", headers={"X-Forwarded-For": "6.6.6.6",
                                               "X-Real-IP": "6.6.6.6",
                                               "X-Forwarded-Proto": "http"})
            r = c.getresponse()
            body = r.read().decode()
            assert r.status == 200, body
            assert "path=/x?q=1\n" in body, body
            assert "X-Forwarded-For: 127.0.0.1\n" in body and "6.6.6.6" not in body, body
            assert "X-Real-IP: 127.0.0.1\n" in body, body
            assert "X-Forwarded-Proto: https\n" in body and "Proto: http\n" not in body, body
            assert "Host: a.test:%d\n" % srv.port in body, body
            c.close()
            rec = srv.wait_log(lambda r: r.get("msg") == "request", what="request line")
            assert (rec["method"], rec["path"], str(rec["status"])) == ("GET", "/x", "200"), rec


@test
def absolute_form_target_reaches_the_backend_in_origin_form():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            out = raw(srv, cs, b"GET https://a.test/abs?x=1 HTTP/1.1\r\nHost: a.test\r\n"
                               b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 200 "), out[:200]
            body = out.split(b"\r\n\r\n", 1)[1].decode()
            assert "path=/abs?x=1\n" in body and body.count("Host: ") == 1, body


@test
def curl_http11_keep_alive_reuses_one_client_connection():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            url = "https://a.test:%d/" % srv.port
            r = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert",
                                cs.ca_cert, "--resolve", "a.test:%d:127.0.0.1" % srv.port,
                                url + "1", url + "2", url + "3", "-o", "/dev/null",
                                "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n"],
                               capture_output=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == [b"1", b"0", b"0"], r.stdout
            srv.wait_log(lambda r: r.get("msg") == "conn" and r.get("mode") == "l7",
                         what="the connection's line")
            reqs = [r for r in srv.log_lines() if r.get("msg") == "request"]
            assert len(reqs) == 3, reqs
            assert len(be.httpd.conns) == 1, "backend connections: %s" % be.httpd.conns


@test
def a_host_of_another_name_is_misdirected():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        routes = [l7_route(cs, be.addr), l7_route(cs, be.addr, hostname="b.test")]
        with mctest.proxy_server(routes) as srv:
            status, _, _ = get(srv, cs, "/", headers={"Host": "b.test"})
            assert status == 421, status
            status, _, _ = get(srv, cs, "/", headers={"Host": "a.test:443"})
            assert status == 200, status


@test
def backend_down_is_502_and_silent_backend_is_504():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, "127.0.0.1:%d" % mctest.free_port()) as srv:
            status, body, _ = get(srv, cs, "/")
            assert status == 502, (status, body)
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            with server(cs, "127.0.0.1:%d" % silent.getsockname()[1],
                        proxy={"response_timeout": "500ms"}) as srv:
                t0 = time.monotonic()
                status, body, _ = get(srv, cs, "/")
                assert status == 504, (status, body)
                assert time.monotonic() - t0 >= 0.45
        finally:
            silent.close()


@test
def policies_answer_403():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        pol = [{"type": "block_user_agent", "value": "zgrab"},
               {"type": "require_header", "value": "X-Api-Key"}]
        with mctest.proxy_server([l7_route(cs, be.addr, l7_policies=pol)]) as srv:
            assert get(srv, cs, "/", headers={"X-Api-Key": "k"})[0] == 200
            assert get(srv, cs, "/")[0] == 403
            assert get(srv, cs, "/", headers={"X-Api-Key": "k",
                                             "User-Agent": "Mozilla zgrab/0.x"})[0] == 403


@test
def header_limits_and_smuggling():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            assert get(srv, cs, "/", headers={"X-Big": "a" * 40000})[0] == 200
            assert get(srv, cs, "/", headers={"X-Big": "a" * 66000})[0] == 431
            for req in (b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n"
                        b"Content-Length: 4\r\n\r\nabcd",
                        b"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\r\n b\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\rb\r\n\r\n"):
                out = raw(srv, cs, req)
                assert out.startswith(b"HTTP/1.1 400 "), (req, out[:80])
                assert b"Connection: close" in out


@test
def big_bodies_both_ways_byte_exact_and_chunked():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            n = 20 * 1024 * 1024
            status, body, _ = get(srv, cs, "/big/%d" % n)
            block = bytes(range(256)) * 256
            assert status == 200 and len(body) == n, (status, len(body))
            assert hashlib.sha256(body).digest() == hashlib.sha256(
                (block * (n // len(block) + 1))[:n]).digest()
            up = os.urandom(8 * 1024 * 1024)
            c = https(srv, cs)
            c.request("POST", "/sha", body=up)
            r = c.getresponse()
            assert r.read() == ("%d %s" % (len(up), hashlib.sha256(up).hexdigest())).encode()
            # chunked up, on the same connection
            c.request("POST", "/sha", body=iter([up[:1000], up[1000:70000]]),
                      encode_chunked=True)
            r = c.getresponse()
            assert r.read() == ("70000 %s" % hashlib.sha256(up[:70000]).hexdigest()).encode()
            c.close()
            status, body, r = get(srv, cs, "/chunked")
            assert status == 200 and body == b"hello chunked world\n", body
            assert r.getheader("Transfer-Encoding") == "chunked"


def ws_backend():
    """A raw backend answering a WebSocket upgrade with 101, then echoing."""
    def handler(sock, backend):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        backend.results.append(data)
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
        mctest.echo_handler(sock)
    return mctest.RawBackend(handler)


@test
def websocket_upgrade_is_relayed_both_ways():
    with mctest.TempDir() as tmp, ws_backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            s = socket.create_connection(("127.0.0.1", srv.port), 10)
            t = client_ctx(cs).wrap_socket(s, server_hostname="a.test")
            t.sendall(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: x\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += t.recv(4096)
            assert head.startswith(b"HTTP/1.1 101 "), head
            rest = head.split(b"\r\n\r\n", 1)[1]
            for msg in (b"ping", b"x" * 100000):
                t.sendall(msg)
                got = rest
                while len(got) < len(msg):
                    got += t.recv(65536)
                rest = b""
                assert got == msg, len(got)
            t.close()
            assert b"Upgrade: websocket" in be.results[0], be.results


@test
def tls_1_1_is_refused():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
                                "-servername", "a.test", "-tls1_1", "-cipher",
                                "DEFAULT:@SECLEVEL=0"],
                               input=b"", capture_output=True, timeout=15)
            out = (r.stdout + r.stderr).decode(errors="replace")
            assert "alert protocol version" in out, out[-500:]


@test
def sessions_resume_on_either_worker():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=2) as srv:
            srv.wait_workers(2)
            ctx = client_ctx(cs)
            c = https(srv, cs, ctx=ctx)
            c.request("GET", "/")
            c.getresponse().read()  # TLS 1.3 tickets come after the handshake
            session = c.sock.session
            c.close()
            resumed_on = set()
            for _ in range(60):
                s = socket.create_connection(("127.0.0.1", srv.port), 10)
                t = ctx.wrap_socket(s, server_hostname="a.test", session=session)
                pid = srv.worker_of(srv.port, t.getsockname()[1])
                t.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                while t.recv(65536):
                    pass
                assert t.session_reused, "no resumption on worker %s" % pid
                resumed_on.add(pid)
                t.close()
                if len(resumed_on) == 2:
                    break
            assert len(resumed_on) == 2, resumed_on


@test
def sessions_resume_on_a_respawned_worker():
    # the ticket keys reach a worker that starts later (MSG_TICKET_KEYS at spawn)
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1) as srv:
            (old,) = srv.wait_workers(1)
            ctx = client_ctx(cs)
            c = https(srv, cs, ctx=ctx)
            c.request("GET", "/")
            c.getresponse().read()  # TLS 1.3 tickets come after the handshake
            session = c.sock.session
            c.close()
            os.kill(old, signal.SIGKILL)
            mctest.wait_until(lambda: srv.worker_pids() and old not in srv.worker_pids(), 10,
                              what="a new worker")
            s = socket.create_connection(("127.0.0.1", srv.port), 10)
            t = ctx.wrap_socket(s, server_hostname="a.test", session=session)
            t.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            while t.recv(65536):
                pass
            assert t.session_reused, "the new worker did not resume the session"
            t.close()


def fingerprint(srv, cs):
    s = socket.create_connection(("127.0.0.1", srv.port), 10)
    t = client_ctx(cs).wrap_socket(s, server_hostname="a.test")
    der = t.getpeercert(binary_form=True)
    t.close()
    return hashlib.sha256(der).hexdigest()


@test
def sighup_rereads_certificates_and_a_broken_one_keeps_the_old():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr) as srv:
            first = fingerprint(srv, cs)
            # a new certificate (of another CA) at the same paths
            os.makedirs(tmp.join("two"), exist_ok=True)
            cs2 = mctest.gen_ca_and_cert("a.test", directory=tmp.join("two"))
            for src, dst in ((cs2.cert, cs.cert), (cs2.key, cs.key)):
                with open(src, "rb") as f, open(dst, "wb") as g:
                    g.write(f.read())
            old = set(srv.worker_pids())
            srv.send_signal(1)
            mctest.wait_until(lambda: not (set(srv.worker_pids()) & old), 15,
                              what="the reload's workers")
            second = fingerprint(srv, cs2)
            assert second != first
            with open(cs.cert, "wb") as f:
                f.write(b"broken")
            # the config seeds the database only: without the route it reloads, and the
            # route (in the database) has its files read again
            cfg = mctest.base_config([mctest.listener(srv.listen_addr, [])])
            with open(srv.config_path, "w") as f:
                f.write(mctest.to_yaml(cfg))
            old = set(srv.worker_pids())
            srv.send_signal(1)
            mctest.wait_until(lambda: not (set(srv.worker_pids()) & old), 15,
                              what="the second reload's workers")
            srv.wait_log(lambda r: "copy read before stays in use" in r.get("msg", ""),
                         what="the broken-file error")
            assert fingerprint(srv, cs2) == second


@test
def addroute_with_new_certificate_files_rotates_on_every_worker():
    with mctest.TempDir() as tmp, Backend() as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        addr = "127.0.0.1:%d" % mctest.free_port()
        listeners = [mctest.listener(addr, [l7_route(cs, be.addr)])]
        with at.admin_server(listeners=listeners, workers=2) as srv:
            at.wait_admin(srv)
            srv.port = int(addr.rsplit(":", 1)[1])
            first = fingerprint(srv, cs)
            os.makedirs(tmp.join("new"))
            cs2 = mctest.gen_ca_and_cert("a.test", directory=tmp.join("new"))
            at.ctl_ok("--socket", srv.sock, "routes", "add", addr, "a.test", be.addr, "--mode",
                      "l7", "--tls-cert", cs2.cert, "--tls-key", cs2.key)
            # at once, whichever worker a connection reaches
            prints = {fingerprint(srv, cs2) for _ in range(8)}
            assert len(prints) == 1 and first not in prints, prints
            status, _, _ = get(srv, cs2, "/")
            assert status == 200


@test
def backend_tls_reencrypts_with_the_route_name_as_sni():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        bcs = mctest.gen_ca_and_cert("backend.internal", directory=tmp.path)
        be = mctest.TLSBackend(bcs.cert, bcs.key, mctest.http_handler(b"over tls\n"),
                               alpn=["http/1.1"])
        with be, mctest.proxy_server([l7_route(cs, be.addr, backend_tls=True)]) as srv:
            status, body, _ = get(srv, cs, "/")
            assert (status, body) == (200, b"over tls\n"), (status, body)
            assert be.snis == ["a.test"], be.snis
            notices = [r for r in srv.log_lines() if "not verified" in r.get("msg", "")]
            assert [r.get("proc") for r in notices] == ["master"], notices


def keepalive_handler(on_request=None, proxy_header=False):
    """Answers HTTP/1.1 requests (bodies by Content-Length) with 200 and
    "conn=N" (N: this backend connection's number, from 0), keeping the
    connection, until EOF, which it records in backend.results as
    ("eof", N). on_request(n, i, head, backend) runs before the i-th
    answer on connection n: False closes without answering, an Event
    closes once it is set, after answering. proxy_header: a PROXY v2 header comes first, its
    source port recorded as ("proxy", N, port)."""
    numbers = itertools.count()

    def recv_exact(sock, buf, n):
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return buf

    def handler(sock, backend):
        n = next(numbers)
        buf = b""
        if proxy_header:
            buf = recv_exact(sock, buf, 16)
            buf = buf and recv_exact(sock, buf, 16 + int.from_bytes(buf[14:16], "big"))
            assert buf and buf[13] == 0x11, buf  # TCP over IPv4
            backend.results.append(("proxy", n, int.from_bytes(buf[24:26], "big")))
            buf = buf[16 + int.from_bytes(buf[14:16], "big"):]
        for i in itertools.count():
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    backend.results.append(("eof", n))
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            cl = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    cl = int(v)
            buf = recv_exact(sock, buf, cl)
            if buf is None:
                return
            buf = buf[cl:]
            what = on_request(n, i, head, backend) if on_request else None
            if what is False:
                return
            body = b"conn=%d\n" % n
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if isinstance(what, threading.Event):
                what.wait(30)
                return
    return handler


def eofs(be):
    return [r for r in list(be.results) if r[0] == "eof"]


def worker_backend_sockets(srv, be_port):
    """The workers' TCP sockets to the backend's port."""
    inodes = set()
    for pid in srv.worker_pids():
        inodes |= mctest.proc_socket_inodes(pid)
    return {i for _, rport, _, i in mctest.tcp_table() if rport == be_port and i in inodes}


@test
def sequential_client_connections_share_one_pooled_backend_connection():
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler()) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1) as srv:
            for _ in range(5):
                c = https(srv, cs)
                c.request("GET", "/")
                r = c.getresponse()
                assert (r.status, r.read()) == (200, b"conn=0\n")
                c.close()
            c = https(srv, cs)  # a POST's connection is pooled too
            c.request("POST", "/", body=b"x" * 1000)
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"conn=0\n")
            c.close()
            assert be.accepted == 1, be.accepted


@test
def the_pool_keeps_at_most_16_idle_connections_per_backend():
    def all_at_once(n, i, head, be):
        be.barrier.wait(30)  # every connection of the round is the backend's at once

    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler(all_at_once)) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1) as srv:
            # every client is connected first: the rounds are then only requests
            clients = [https(srv, cs) for _ in range(40)]
            for c in clients:
                c.connect()

            def round_of(cs_):
                be.barrier = threading.Barrier(20)
                out = []

                def one(c):
                    c.request("GET", "/")
                    r = c.getresponse()
                    out.append((r.status, r.read()))
                    c.close()
                threads = [threading.Thread(target=one, args=(c,)) for c in cs_]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert len(out) == 20 and all(st == 200 for st, _ in out), out

            round_of(clients[:20])  # 20 backend connections at once, then all idle
            assert be.accepted == 20, be.accepted
            mctest.wait_until(lambda: len(eofs(be)) >= 4, 10, what="4 closed")
            assert len(eofs(be)) == 4, eofs(be)
            round_of(clients[20:])  # 16 from the pool, 4 new
            assert be.accepted == 24, be.accepted
            mctest.wait_until(lambda: len(eofs(be)) >= 8, 10, what="4 more closed")


@test
def a_backend_closing_idle_pooled_connections_fails_no_request():
    closes = [threading.Event() for _ in range(3)]
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler(
            lambda n, i, head, be: closes[n])) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        port = int(be.addr.rsplit(":", 1)[1])
        with server(cs, be.addr, workers=1) as srv:
            for k in range(3):
                status, body, _ = get(srv, cs, "/")
                assert (status, body) == (200, b"conn=%d\n" % k), (status, body)
                # answered, so pooled: the backend closes it now, and the worker
                # sees that well before the pool's idle timeout
                assert worker_backend_sockets(srv, port)
                closes[k].set()
                mctest.wait_until(lambda: not worker_backend_sockets(srv, port), 3,
                                  what="the pooled connection closed")
            assert be.accepted == 3, be.accepted


@test
def a_pooled_connection_found_dead_retries_idempotent_requests_only():
    # each backend connection answers one request and closes on reading the next
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler(
            lambda n, i, head, be: i == 0)) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1) as srv:
            assert get(srv, cs, "/")[:2] == (200, b"conn=0\n")
            status, body, _ = get(srv, cs, "/")  # conn 0 is dead: sent again on conn 1
            assert (status, body) == (200, b"conn=1\n"), (status, body)
            c = https(srv, cs)
            c.request("POST", "/", body=b"once")  # conn 1 is dead: not sent twice
            r = c.getresponse()
            assert r.status == 502, r.status
            c.close()
            c = https(srv, cs)
            c.request("POST", "/", body=b"once")
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"conn=2\n")
            c.close()
            assert be.accepted == 3, be.accepted


@test
def idle_pooled_connections_are_closed_after_a_few_seconds():
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler()) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1) as srv:
            assert get(srv, cs, "/")[:2] == (200, b"conn=0\n")
            t0 = time.monotonic()
            mctest.wait_until(lambda: eofs(be), 20, what="the idle connection closed")
            assert time.monotonic() - t0 >= 3.0, time.monotonic() - t0
            assert srv.running()


@test
def drain_closes_pooled_connections_at_once():
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler()) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with server(cs, be.addr, workers=1,
                    proxy={"shutdown_timeout": "20s", "idle_timeout": "30s"}) as srv:
            assert get(srv, cs, "/")[:2] == (200, b"conn=0\n")
            held = https(srv, cs)  # an idle client keeps the worker draining
            held.connect()
            srv.send_signal(signal.SIGTERM)
            # not the pool's idle timeout: the drain closed it
            mctest.wait_until(lambda: eofs(be), 3, what="the pooled connection closed")
            assert srv.running(), "exited with a client connection open"
            held.close()
            assert srv.wait_exit(10) == 0


@test
def send_proxy_protocol_routes_never_share_backend_connections():
    with mctest.TempDir() as tmp, mctest.RawBackend(keepalive_handler(
            proxy_header=True)) as be:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        route = l7_route(cs, be.addr, send_proxy_protocol=True)
        with mctest.proxy_server([route], workers=1) as srv:
            ports = []
            for k in range(3):
                c = https(srv, cs)
                for _ in range(2):  # kept for this client's next request
                    c.request("GET", "/")
                    r = c.getresponse()
                    assert (r.status, r.read()) == (200, b"conn=%d\n" % k)
                ports.append(c.sock.getsockname()[1])
                c.close()
            assert be.accepted == 3, be.accepted
            got = sorted((r[1], r[2]) for r in list(be.results) if r[0] == "proxy")
            assert got == list(enumerate(ports)), (got, ports)


@test
def backend_tls_connections_are_pooled_per_sni():
    with mctest.TempDir() as tmp:
        csa = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        csb = mctest.gen_ca_and_cert("b.test", directory=tmp.path)
        bcs = mctest.gen_ca_and_cert("backend.internal", directory=tmp.path)
        be = mctest.TLSBackend(bcs.cert, bcs.key, keepalive_handler(), alpn=["http/1.1"])
        routes = [l7_route(csa, be.addr, backend_tls=True),
                  l7_route(csb, be.addr, hostname="b.test", backend_tls=True)]
        with be, mctest.proxy_server(routes, workers=1) as srv:
            for name, cs, want in (("a.test", csa, 0), ("b.test", csb, 1),
                                   ("a.test", csa, 0), ("b.test", csb, 1)):
                c = https(srv, cs, name)
                c.request("GET", "/")
                r = c.getresponse()
                assert (r.status, r.read()) == (200, b"conn=%d\n" % want), name
                c.close()
            assert be.accepted == 2, be.accepted
            assert be.snis == ["a.test", "b.test"], be.snis


if __name__ == "__main__":
    mctest.main()

