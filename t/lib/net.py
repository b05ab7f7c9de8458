"""
Network pieces for the mc-proxy integration tests: TLS and plain TCP
backends, a real ClientHello (and ways to reshape it), a TLS client that
drives its handshake over a raw socket, and raw-client helpers. Loopback
only; every blocking call has a timeout.
"""

import hashlib
import select
import socket
import ssl
import struct
import threading
import time

from mctest import _track, _untrack

__all__ = [
    "TLSBackend", "RawBackend", "echo_handler", "http_handler", "greet_handler",
    "client_hello_bytes", "split_records", "hello_message", "reframe_hello",
    "hello_set_sni", "hello_pad_to", "TLSPump", "connect", "recv_exact",
    "recv_until_close", "assert_closed_without_bytes", "send_may_fail", "send_slowly", "echo_roundtrip",
    "tls_client", "sha256_stream", "read_hello", "hello_echo_handler", "hello_greet_handler",
]


# ---------------------------------------------------------------- backends


class _Backend:
    """A threaded TCP server on loopback: one accept thread, one thread
    per connection running self._serve(conn)."""

    def __init__(self, host="127.0.0.1", port=0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self.accepted = 0
        self.errors = []
        self.conns = []
        self.results = []  # handlers append what they want the test to see
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()
        _track(self)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.sock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(30)
            with self._lock:
                self.accepted += 1
                self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            self._serve(conn)
        except Exception as e:  # noqa: B902 -- recorded for the test to inspect
            with self._lock:
                self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_accepted(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.accepted < n:
            if time.monotonic() >= deadline:
                raise AssertionError("backend %s accepted %d connections, expected %d"
                                     % (self.addr, self.accepted, n))
            time.sleep(0.01)

    def close(self):
        _untrack(self)
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._acceptor.join(2)
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawBackend(_Backend):
    """Plain TCP backend; handler(sock, backend) runs per connection.
    L4 relays raw bytes, so the backend need not speak TLS."""

    def __init__(self, handler, host="127.0.0.1", port=0):
        self.handler = handler
        super().__init__(host, port)

    def _serve(self, conn):
        self.handler(conn, self)


class TLSBackend(_Backend):
    """TLS server (Python ssl, i.e. the system OpenSSL) with the given
    cert/key; handler(tls_sock, backend) runs after the handshake. The
    SNI each handshake carried is appended to .snis."""

    def __init__(self, cert, key, handler, host="127.0.0.1", alpn=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if alpn:
            self.ctx.set_alpn_protocols(alpn)
        self.snis = []
        self.ctx.sni_callback = self._on_sni
        self.handler = handler
        super().__init__(host)

    def _on_sni(self, sslobj, name, ctx):
        self.snis.append(name)
        return None

    def _serve(self, conn):
        tls = self.ctx.wrap_socket(conn, server_side=True)
        try:
            self.handler(tls, self)
        finally:
            tls.close()


def echo_handler(sock, backend=None):
    """Echoes until EOF, then closes."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def greet_handler(name):
    """Sends name + b"\\n" first, then echoes."""
    def handler(sock, backend=None):
        sock.sendall(name + b"\n")
        echo_handler(sock, backend)
    return handler


def http_handler(body):
    """Answers one HTTP/1.x request with 200 and body, then closes."""
    def handler(sock, backend=None):
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = sock.recv(4096)
            if not chunk:
                return
            req += chunk
            if len(req) > 65536:
                return
        if backend is not None:
            backend.results.append(req)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
    return handler


def read_hello(sock, timeout=10.0):
    """Reads exactly the ClientHello records a client sent first (however
    they are framed) and returns them; nothing past them is consumed."""
    deadline = time.monotonic() + timeout
    raw = bytearray()
    msg = bytearray()
    while len(msg) < 4 or len(msg) < 4 + int.from_bytes(msg[1:4], "big"):
        left = max(0.01, deadline - time.monotonic())
        hdr = recv_exact(sock, 5, left)
        ln = int.from_bytes(hdr[3:5], "big")
        frag = recv_exact(sock, ln, max(0.01, deadline - time.monotonic())) if ln else b""
        raw += hdr + frag
        if hdr[0] != 22:
            raise AssertionError("read_hello: record type %d, not handshake" % hdr[0])
        msg += frag
    return bytes(raw)


def hello_echo_handler(sock, backend):
    """Raw backend: reads the ClientHello (kept in backend.results), then echoes."""
    backend.results.append(read_hello(sock))
    echo_handler(sock)


def hello_greet_handler(name):
    """Raw backend: reads the ClientHello (kept in backend.results), sends
    name + b"\\n", then echoes."""
    def handler(sock, backend):
        backend.results.append(read_hello(sock))
        sock.sendall(name + b"\n")
        echo_handler(sock)
    return handler


# ---------------------------------------------------------------- clients


def connect(port, host="127.0.0.1", timeout=5.0, nodelay=False):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((host, port))
    return s


def recv_exact(sock, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("recv_exact: got %d of %d bytes" % (len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError("recv_exact: EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_close(sock, timeout=5.0):
    """Reads until EOF or RST. Returns (data, how, seconds) with how
    "eof", "rst" or "timeout"."""
    start = time.monotonic()
    deadline = start + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), "timeout", time.monotonic() - start
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(data), "timeout", time.monotonic() - start
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data), "rst", time.monotonic() - start
        if not chunk:
            return bytes(data), "eof", time.monotonic() - start
        data += chunk


def assert_closed_without_bytes(sock, timeout=3.0, what="connection"):
    """The peer closes (EOF or RST) within timeout and sends nothing.
    Returns the seconds it took."""
    data, how, secs = recv_until_close(sock, timeout)
    assert how != "timeout", "%s still open after %.1f s" % (what, timeout)
    assert not data, "%s got %d bytes before close: %r" % (what, len(data), data[:64])
    return secs


def send_may_fail(sock, data):
    """sendall() to a peer that may already have closed (a refusal can
    come before our bytes do); a reset or broken pipe is not an error."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def send_slowly(sock, data, chunk=1, delay=0.002, timeout=20.0):
    """Writes data chunk bytes per send(), with a small pause between."""
    deadline = time.monotonic() + timeout
    for i in range(0, len(data), chunk):
        if time.monotonic() > deadline:
            raise AssertionError("send_slowly exceeded %.0f s" % timeout)
        sock.sendall(data[i:i + chunk])
        if delay:
            time.sleep(delay)


def echo_roundtrip(sock, payload, timeout=5.0):
    """Sends payload on an echoing connection and checks it comes back."""
    sock.sendall(payload)
    got = recv_exact(sock, len(payload), timeout)
    assert got == payload, "echo mismatch"


def tls_client(port, sni, cafile=None, host="127.0.0.1", timeout=5.0, alpn=None):
    """A verifying (when cafile is given) Python ssl client socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = connect(port, host, timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def sha256_stream(sock, n, timeout=60.0):
    """Reads exactly n bytes, returns their sha256 hex digest."""
    deadline = time.monotonic() + timeout
    h = hashlib.sha256()
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("sha256_stream: got %d of %d bytes" % (got, n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError("sha256_stream: EOF after %d of %d bytes" % (got, n))
        h.update(chunk)
        got += len(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- ClientHello


def _client_ctx(cafile=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_hello_bytes(sni, alpn=None):
    """A real ClientHello (the TLS records of OpenSSL's first flight) with
    SNI sni (None: no server_name extension) and optional ALPN list."""
    ctx = _client_ctx(alpn=alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def split_records(data):
    """[(content_type, version, fragment), ...] for complete records; the
    trailing partial record, if any, is ignored."""
    recs = []
    i = 0
    while i + 5 <= len(data):
        ctype, ver, ln = struct.unpack("!BHH", data[i:i + 5])
        if i + 5 + ln > len(data):
            break
        recs.append((ctype, ver, data[i + 5:i + 5 + ln]))
        i += 5 + ln
    return recs


def hello_message(records):
    """The handshake message (4-byte header included) carried by the
    ClientHello record(s)."""
    recs = split_records(records)
    msg = b"".join(frag for ctype, _, frag in recs if ctype == 22)
    ln = int.from_bytes(msg[1:4], "big")
    return msg[:4 + ln]


def reframe_hello(records, sizes, version=0x0301):
    """Re-frames the handshake message into TLS records whose fragments
    are sizes[0], sizes[1], ... bytes long (the last size repeats).
    Only record boundaries change, so the handshake still completes."""
    msg = hello_message(records)
    out = bytearray()
    i = 0
    k = 0
    while i < len(msg):
        n = sizes[min(k, len(sizes) - 1)]
        frag = msg[i:i + n]
        out += struct.pack("!BHH", 22, version, len(frag)) + frag
        i += n
        k += 1
    assert all(ctype == 22 for ctype, _, _ in split_records(records)), \
        "first flight holds more than the ClientHello"
    return bytes(out)


def _frame(msg, version=0x0301):
    out = bytearray()
    for i in range(0, len(msg), 16384):
        frag = msg[i:i + 16384]
        out += struct.pack("!BHH", 22, version, len(frag)) + frag
    return bytes(out)


def _parse_client_hello(msg):
    """Splits a ClientHello message into (head, [(ext_type, ext_data)])
    where head is everything between the handshake header and the
    extensions block."""
    assert msg[0] == 1, "not a ClientHello"
    body = msg[4:]
    i = 2 + 32
    i += 1 + body[i]                                   # session_id
    i += 2 + int.from_bytes(body[i:i + 2], "big")      # cipher_suites
    i += 1 + body[i]                                   # compression_methods
    head = body[:i]
    exts = []
    if i < len(body):
        end = i + 2 + int.from_bytes(body[i:i + 2], "big")
        j = i + 2
        while j < end:
            t, ln = struct.unpack("!HH", body[j:j + 4])
            exts.append((t, body[j + 4:j + 4 + ln]))
            j += 4 + ln
    return head, exts


def _build_client_hello(head, exts):
    ext_blob = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
    body = head + struct.pack("!H", len(ext_blob)) + ext_blob
    return b"\x01" + len(body).to_bytes(3, "big") + body


def hello_set_sni(records, sni):
    """The same ClientHello with its server_name replaced by the raw
    bytes sni (any bytes; None removes the extension). The handshake
    can no longer complete (the transcript changed): for routing tests."""
    head, exts = _parse_client_hello(hello_message(records))
    exts = [(t, d) for t, d in exts if t != 0]
    if sni is not None:
        entry = b"\x00" + struct.pack("!H", len(sni)) + sni
        exts.insert(0, (0, struct.pack("!H", len(entry)) + entry))
    return _frame(_build_client_hello(head, exts))


def hello_pad_to(records, total):
    """The same ClientHello grown with a padding extension (21) so the
    handshake message is about total bytes long (for routing tests)."""
    head, exts = _parse_client_hello(hello_message(records))
    exts = [(t, d) for t, d in exts if t != 21]
    cur = len(_build_client_hello(head, exts))
    pad = max(0, total - cur - 4)
    exts.insert(0, (21, b"\x00" * pad))
    return _frame(_build_client_hello(head, exts))


class TLSPump:
    """A TLS client (ssl.SSLObject over MemoryBIOs) driven over a plain
    socket, so the test controls how the first flight is written."""

    def __init__(self, sock, sni, cafile=None, alpn=None):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = _client_ctx(cafile, alpn).wrap_bio(self.inc, self.out, server_hostname=sni)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("TLS: timed out waiting for the server")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.inc.write_eof()
            return False
        self.inc.write(chunk)
        return True

    def handshake(self, timeout=10.0, send_first=None):
        """Completes the handshake. send_first(sock, data) writes the first
        flight (the ClientHello); later flights go out with sendall."""
        deadline = time.monotonic() + timeout
        first = True
        while True:
            try:
                self.obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = self.out.read()
            if data:
                if first and send_first:
                    send_first(self.sock, data)
                else:
                    self.sock.sendall(data)
                first = False
            if done:
                return self
            if not self._fill(deadline):
                raise AssertionError("TLS: connection closed during the handshake")

    def send(self, data):
        self.obj.write(data)
        self.sock.sendall(self.out.read())

    def recv_exact(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while len(buf) < n:
            try:
                buf += self.obj.read(n - len(buf))
                continue
            except ssl.SSLWantReadError:
                pass
            pending = self.out.read()
            if pending:
                self.sock.sendall(pending)
            if not self._fill(deadline):
                raise AssertionError("TLS: EOF after %d of %d bytes" % (len(buf), n))
        return bytes(buf)

    def peer_subject(self):
        cert = self.obj.getpeercert()
        return dict(x[0] for x in cert["subject"]) if cert else None
