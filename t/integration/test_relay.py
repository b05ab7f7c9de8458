#!/usr/bin/python3
"""L4 relay: byte-exact bulk transfer, half-close, IPv6 (SPEC section 4).
Run: /usr/bin/python3 t/integration/test_relay.py [NAME...]"""

import hashlib
import os
import random
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

MB = 1 << 20


def _send_in_thread(sock, data, errors):
    def run():
        try:
            sock.settimeout(60)
            sock.sendall(data)
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@test
def ten_megabytes_each_way_byte_exact():
    size = 10 * MB
    up = os.urandom(size)
    down = os.urandom(size)

    def handler(sock, be):
        be.results.append(mctest.read_hello(sock))
        errors = []
        t = _send_in_thread(sock, down, errors)
        be.results.append(mctest.sha256_stream(sock, size, 60))
        t.join(60)
        assert not t.is_alive() and not errors, errors
        sock.shutdown(socket.SHUT_WR)

    with mctest.RawBackend(handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "30s"}) as srv:
        hello = mctest.client_hello_bytes("a.test")
        s = mctest.connect(srv.port, timeout=60)
        s.sendall(hello)
        errors = []
        t = _send_in_thread(s, up, errors)
        got = mctest.sha256_stream(s, size, 60)
        t.join(60)
        assert not errors, errors
        assert got == hashlib.sha256(down).hexdigest(), "backend->client bytes differ"
        mctest.wait_until(lambda: len(ba.results) == 2, 30, what="backend hash")
        assert ba.results[0] == hello, "backend got a different ClientHello"
        assert ba.results[1] == hashlib.sha256(up).hexdigest(), "client->backend bytes differ"
        s.shutdown(socket.SHUT_WR)
        data, how, _ = mctest.recv_until_close(s, 5)
        assert how == "eof" and not data, (how, len(data))
        s.close()
        line = srv.wait_conn_log(result="ok")
        assert int(line["bytes_in"]) == len(hello) + size, line
        assert int(line["bytes_out"]) == size, line
        assert not ba.errors, ba.errors


@test
def slow_reader_gets_everything():
    # The backend writes until it is blocked (no progress for a while)
    # while the client is not reading: every buffer on the way is full,
    # the proxy's included, however much the kernel's autotuning gives.
    # Then it goes quiet. Once the client reads, the proxy must resume on
    # the client socket becoming writable; no other event will come.
    chunk = os.urandom(256 * 1024)

    def handler(sock, be):
        mctest.read_hello(sock)
        sock.setblocking(False)
        h, sent, last_progress = hashlib.sha256(), 0, time.monotonic()
        while time.monotonic() - last_progress < 2.0 and sent < 256 * MB:
            try:
                n = sock.send(chunk)
            except BlockingIOError:
                select.select([], [sock], [], 0.1)
                continue
            h.update(chunk[:n])
            sent += n
            last_progress = time.monotonic()
        be.results.append((sent, h.hexdigest()))
        sock.setblocking(True)
        mctest.recv_until_close(sock, 60)

    with mctest.RawBackend(handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "30s"}) as srv:
        s = mctest.connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.wait_until(lambda: ba.results, 60, what="the backend to be blocked")
        size, digest = ba.results[0]
        assert size < 256 * MB, "the backend never blocked: the proxy does not apply back-pressure"
        # a stalled relay sends nothing more until the idle timeout closes it
        got = mctest.sha256_stream(s, size, 25)
        assert got == digest, "bytes differ"
        s.close()


@test
def half_close_client_first():
    reply = os.urandom(MB)

    def handler(sock, be):
        mctest.read_hello(sock)
        req, how, _ = mctest.recv_until_close(sock, 10)
        be.results.append((req, how))
        sock.sendall(reply)
        # close() in _run ends the backend side

    with mctest.RawBackend(handler) as ba, mctest.proxy_server([("a.test", ba.addr)]) as srv:
        s = mctest.connect(srv.port)
        s.sendall(mctest.client_hello_bytes("a.test") + b"request body")
        s.shutdown(socket.SHUT_WR)
        data, how, _ = mctest.recv_until_close(s, 10)
        s.close()
        mctest.wait_until(lambda: ba.results, 5, what="backend to see EOF")
        assert ba.results[0] == (b"request body", "eof"), ba.results[0]
        assert how == "eof", "client saw %s after %d bytes" % (how, len(data))
        assert data == reply, "reply truncated or altered: %d of %d bytes" % (len(data), len(reply))
        srv.wait_conn_log(result="ok", bytes_out=len(reply))


@test
def half_close_backend_first():
    upload = os.urandom(2 * MB)
    backend_done = threading.Event()

    def handler(sock, be):
        mctest.read_hello(sock)
        sock.sendall(b"bye")
        sock.shutdown(socket.SHUT_WR)
        data, how, _ = mctest.recv_until_close(sock, 15)
        be.results.append((hashlib.sha256(data).hexdigest(), len(data), how))
        backend_done.set()

    with mctest.RawBackend(handler) as ba, mctest.proxy_server([("a.test", ba.addr)]) as srv:
        s = mctest.connect(srv.port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        first, how, _ = mctest.recv_until_close(s, 5)
        assert (first, how) == (b"bye", "eof"), (first, how)
        # The backend's EOF reached us; our direction must still flow.
        s.settimeout(15)
        s.sendall(upload)
        s.shutdown(socket.SHUT_WR)
        assert backend_done.wait(15), "backend never saw the client's EOF"
        assert ba.results[0] == (hashlib.sha256(upload).hexdigest(), len(upload), "eof"), \
            ba.results[0][1:]
        data, how, _ = mctest.recv_until_close(s, 5)
        assert how == "eof" and not data, (how, data)
        s.close()
        srv.wait_conn_log(result="ok", bytes_out=3)


@test
def ipv6_listener_and_backend():
    with mctest.RawBackend(mctest.hello_echo_handler, host="::1") as b6, \
            mctest.proxy_server([("a.test", b6.addr)],
                                addr="[::1]:%d" % mctest.free_port(socket.AF_INET6)) as srv:
        s = mctest.connect(srv.port, host="::1")
        cport = s.getsockname()[1]
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"over ipv6")
        s.close()
        line = srv.wait_conn_log(result="ok")
        assert line["client"] in ("[::1]:%d" % cport, "::1:%d" % cport), line["client"]
        assert line["backend"] == b6.addr, line


@test
def dual_stack_listener_logs_mapped_ipv4_plainly():
    port = mctest.free_port(dual=True)
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], addr=":%d" % port) as srv:
        for host in ("127.0.0.1", "::1"):
            s = mctest.connect(port, host=host)
            cport = s.getsockname()[1]
            s.sendall(mctest.client_hello_bytes("a.test"))
            mctest.echo_roundtrip(s, host.encode())
            s.close()
            if host == "127.0.0.1":
                line = srv.wait_conn_log(result="ok", client="127.0.0.1:%d" % cport)
                assert "ffff" not in str(line), line
            else:
                srv.wait_log(lambda r: r.get("msg") == "conn" and "::1" in r["client"]
                             and r["client"].endswith(":%d" % cport), 5, "IPv6 client line")


@test
def many_concurrent_relays():
    # 40 relays at once, each with its own payload, across both workers.
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        hello = mctest.client_hello_bytes("a.test")
        socks = []
        for i in range(40):
            s = mctest.connect(srv.port)
            s.sendall(hello)
            socks.append(s)
        deadline = time.monotonic() + 20
        for i, s in enumerate(socks):
            payload = (b"%03d" % i) * 3000
            mctest.echo_roundtrip(s, payload, timeout=max(1, deadline - time.monotonic()))
        for s in socks:
            s.close()
        mctest.wait_until(lambda: len([r for r in srv.conn_logs() if r["result"] == "ok"]) == 40,
                          10, what="40 access lines")


def _session_bytes(sid, direction, n):
    """The bytes session sid sends one way: its own, so a byte that crossed
    into another session's stream changes that session's hash."""
    return random.Random(sid * 2 + direction).randbytes(n)


def _hash_stream(sock, n, pause):
    """sha256 of the next n bytes. With pause, the reader stops for a
    moment after the first MiB: the proxy's send buffer toward it fills,
    so the relay meets a full socket (partial splices, bytes left in a
    pipe, the source paused) and then drains it again."""
    if not pause:
        return mctest.sha256_stream(sock, n, 120)
    h = hashlib.sha256()
    h.update(mctest.recv_exact(sock, MB, 60))
    time.sleep(0.3)  # the back-pressure itself, not a wait for a condition
    sock.settimeout(120)
    got = MB
    while got < n:
        chunk = sock.recv(min(65536, n - got))
        assert chunk, "EOF after %d of %d bytes" % (got, n)
        h.update(chunk)
        got += len(chunk)
    return h.hexdigest()


def _bulk_backend(sock, be):
    """Reads the hello and a (session, up, down) header, then sends the
    session's download while it hashes the upload; answers EOF with EOF."""
    mctest.read_hello(sock)
    sid, up, down = struct.unpack("!III", mctest.recv_exact(sock, 12, 30))
    errors = []
    t = _send_in_thread(sock, _session_bytes(sid, 1, down), errors)
    digest = _hash_stream(sock, up, sid % 4 == 2)
    t.join(120)
    assert not t.is_alive() and not errors, errors
    with be._lock:
        be.results.append((sid, digest))
    sock.shutdown(socket.SHUT_WR)
    mctest.recv_until_close(sock, 30)


@test
def concurrent_bulk_both_ways_byte_exact():
    """Reliability battery G3, scaled to this machine: 2 waves of 32
    sessions moving 1-8 MiB each way at once, a quarter of the readers in
    each direction pausing (the proxy meets full sockets), the second wave
    on the pipes the first returned to the pools; every byte checked per
    session, and the access lines' byte counts."""
    n, waves = 32, 2
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(_bulk_backend) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "60s"},
                                workers=2) as srv:
        sizes = {}
        for wave in range(waves):
            results, threads = {}, []

            def session(sid):
                # a paused reader gets more than the kernel buffers between it
                # and the proxy hold (about 4 MiB toward it), the others 1-2 MiB
                up = 8 * MB if sid % 4 == 2 else MB + sid * 16411
                down = 8 * MB if sid % 4 == 1 else MB + sid * 15107
                s = mctest.connect(srv.port, timeout=60)
                errors = []
                t = _send_in_thread(s, hello + struct.pack("!III", sid, up, down)
                                    + _session_bytes(sid, 0, up), errors)
                got = _hash_stream(s, down, sid % 4 == 1)
                t.join(120)
                s.shutdown(socket.SHUT_WR)
                tail, how, _ = mctest.recv_until_close(s, 30)
                results[sid] = (got, errors, how, tail)
                s.close()
                sizes[sid] = (up, down)

            for i in range(n):
                sid = wave * n + i
                th = threading.Thread(target=lambda sid=sid: session(sid), daemon=True)
                th.start()
                threads.append(th)
            for th in threads:
                th.join(180)
            assert len(results) == n, "wave %d: %d of %d sessions finished" % (
                wave, len(results), n)
            for sid, (got, errors, how, tail) in results.items():
                want = hashlib.sha256(_session_bytes(sid, 1, sizes[sid][1])).hexdigest()
                assert got == want, "session %d: backend->client bytes differ" % sid
                assert not errors and how == "eof" and not tail, (sid, errors, how, len(tail))
        mctest.note("%.0f MiB relayed each way in %d sessions" % (
            sum(u for u, _ in sizes.values()) / MB, len(sizes)))
        mctest.wait_until(lambda: len(ba.results) == n * waves, 30, what="backend hashes")
        for sid, digest in ba.results:
            want = hashlib.sha256(_session_bytes(sid, 0, sizes[sid][0])).hexdigest()
            assert digest == want, "session %d: client->backend bytes differ" % sid
        assert not ba.errors, ba.errors

        def ok_lines():
            lines = [r for r in srv.conn_logs() if r["result"] == "ok"]
            return lines if len(lines) == n * waves else None

        logs = mctest.wait_until(ok_lines, 10, what="%d ok access lines" % (n * waves))
        total_in = sum(int(r["bytes_in"]) for r in logs)
        total_out = sum(int(r["bytes_out"]) for r in logs)
        assert total_in == sum(len(hello) + 12 + u for u, _ in sizes.values()), total_in
        assert total_out == sum(d for _, d in sizes.values()), total_out


@test
def client_reset_is_logged_as_reset():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        s = mctest.connect(srv.port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"x" * 1000)
        # close with SO_LINGER 0: the peer gets a RST, not a FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        line = srv.wait_conn_log(sni="a.test")
        assert line["result"] == "reset", line


def _rst_close(sock):
    """close() with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# How a session of abrupt_closes_leave_nothing_behind ends (the first
# byte after the hello tells the backend which one).
ENDINGS = ("backend_fin", "backend_rst_midstream", "client_rst_midstream",
           "client_closes_unread", "client_fin_first")


def _ending_backend(sock, be):
    mctest.read_hello(sock)
    ending = ENDINGS[mctest.recv_exact(sock, 1, 10)[0]]
    try:
        if ending == "backend_fin":
            sock.sendall(b"b" * 300000)
            sock.shutdown(socket.SHUT_WR)
            mctest.recv_until_close(sock, 10)
        elif ending == "backend_rst_midstream":
            sock.sendall(b"b" * 300000)
            _rst_close(sock)
        elif ending == "client_fin_first":
            data, _, _ = mctest.recv_until_close(sock, 10)
            sock.sendall(b"%d" % len(data))
            sock.shutdown(socket.SHUT_WR)
        else:  # the client ends it: keep sending until it is gone
            sock.settimeout(10)
            while True:
                sock.sendall(b"b" * 65536)
    except OSError:
        pass  # the client's reset reaching us is the point


def _ending_client(port, i):
    ending = i % len(ENDINGS)
    s = mctest.connect(port, timeout=10)
    s.sendall(mctest.client_hello_bytes("a.test") + bytes([ending]))
    name = ENDINGS[ending]
    if name in ("backend_fin", "backend_rst_midstream"):
        mctest.recv_until_close(s, 10)
        s.close()
    elif name == "client_fin_first":
        s.sendall(b"c" * 200000)
        s.shutdown(socket.SHUT_WR)
        data, how, _ = mctest.recv_until_close(s, 10)
        assert (data, how) == (b"200000", "eof"), (data[:20], how)
        s.close()
    elif name == "client_rst_midstream":
        mctest.recv_exact(s, 100000, 10)
        s.sendall(b"c" * 100000)
        _rst_close(s)
    else:  # closes with unread bytes queued: the kernel answers with a RST
        mctest.recv_exact(s, 100000, 10)
        s.close()


def _sockets_on(ports):
    """States (hex) of the sockets with a local or remote port in ports,
    without LISTEN (0A) and TIME_WAIT (06): those hold no fd."""
    return [state for lport, rport, state, _ in mctest.tcp_table()
            if (lport in ports or rport in ports) and state not in ("0A", "06")]


@test
def abrupt_closes_leave_nothing_behind():
    """Reliability battery G2, scaled: 500 sessions, 20 at a time, ending in
    every way (either side's FIN or RST, mid-stream with bytes in flight
    and in the relay's pipes, a client closing with unread data). Then no
    socket of the proxy is left in CLOSE_WAIT or any other state holding
    an fd, every session has its access line, and the worker's fd count is
    back where it was."""
    total, batch = 500, 20
    with mctest.RawBackend(_ending_backend) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "30s"},
                                workers=1) as srv:
        worker = srv.worker_pids()[0]
        fds_before = len(os.listdir("/proc/%d/fd" % worker))
        errors = []

        def run(i):
            try:
                _ending_client(srv.port, i)
            except Exception as e:  # noqa: B902 -- collected for the assertion
                errors.append((ENDINGS[i % len(ENDINGS)], repr(e)))

        for start in range(0, total, batch):
            threads = [threading.Thread(target=run, args=(i,), daemon=True)
                       for i in range(start, start + batch)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert not errors, errors[:5]
        ports = {srv.port, ba.addr[1]}
        mctest.wait_until(lambda: not _sockets_on(ports), 10,
                          what="no proxy socket left open (states %s)" % _sockets_on(ports))
        mctest.wait_until(lambda: len(srv.conn_logs()) == total, 10,
                          what="%d access lines" % total)
        results = {}
        for r in srv.conn_logs():
            results[r["result"]] = results.get(r["result"], 0) + 1
        mctest.note("results: %r" % results)
        fds_after = len(os.listdir("/proc/%d/fd" % worker))
        # pooled pipes may stay open: at most the pools' size more (worker.c
        # PIPE_POOL_CAP 64 small, relay.h RELAY_BIG_POOL 2 enlarged; 2 fds each),
        # far less than one fd per session
        assert fds_after <= fds_before + 2 * (64 + 2), (fds_before, fds_after)
        mctest.note("worker fds %d -> %d" % (fds_before, fds_after))


def _push_until_held(sock, cap, quiet=1.0):
    """Sends until the socket stays unwritable for `quiet` seconds (held
    back) or cap bytes went; returns the bytes the kernel took."""
    sock.setblocking(False)
    chunk, sent = b"p" * 65536, 0
    while sent < cap:
        try:
            sent += sock.send(chunk)
            continue
        except BlockingIOError:
            pass
        _, w, _ = select.select([], [sock], [], quiet)
        if not w:
            break
    sock.setblocking(True)
    return sent


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@test
def sender_is_held_back_when_the_other_side_stops_reading():
    """Reliability battery C5: a backend that never reads while the client
    pushes, and a client that never reads while the backend pushes. The
    proxy stops reading the sender (it is held back well before 128 MiB,
    the kernel buffers on the way being what holds the rest) and its
    worker's memory does not grow with what was pushed."""
    cap = 128 * MB
    pushed, done = [], threading.Event()

    def handler(sock, be):
        mctest.read_hello(sock)
        if mctest.recv_exact(sock, 1, 10) == b"d":  # this one pushes to the client
            pushed.append(_push_until_held(sock, cap))
        done.wait(60)  # reads nothing more until the test is over

    with mctest.RawBackend(handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "60s"},
                                workers=1) as srv:
        worker = srv.worker_pids()[0]
        rss0 = _rss_kib(worker)
        hello = mctest.client_hello_bytes("a.test")

        up = mctest.connect(srv.port, timeout=30)
        up.sendall(hello + b"u")
        took = _push_until_held(up, cap)
        mctest.note("client -> non-reading backend: held back after %.1f MiB" % (took / MB))
        assert took < cap, "the client pushed all %d MiB: nothing held it back" % (cap // MB)

        down = mctest.connect(srv.port, timeout=30)
        down.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        down.sendall(hello + b"d")
        mctest.wait_until(lambda: pushed, 60, what="the backend to be held back")
        mctest.note("backend -> non-reading client: held back after %.1f MiB"
                    % (pushed[0] / MB))
        assert pushed[0] < cap, "the backend pushed all %d MiB" % (cap // MB)

        grew = _rss_kib(worker) - rss0
        mctest.note("worker RSS grew %d KiB" % grew)
        assert grew < 4096, "worker RSS grew %d KiB while holding senders back" % grew
        # and the held bytes still arrive once the reader reads
        got, how, _ = mctest.recv_until_close(down, 0.5)
        assert len(got) > 0, "nothing came once the client read"
        done.set()
        up.close()
        down.close()


if __name__ == "__main__":
    mctest.main()
