#!/usr/bin/python3
"""Small stdlib clients and raw backends for the benchmark.

Run as a script, one role per process (the harness measures each process's
CPU on its own):

  rawcps       connect, send a ClientHello, read the reply to EOF, close; repeat
  rawbulk      send a ClientHello, read everything the backend sends to EOF
  latency      one TLS keep-alive connection, sequential GET /, per-request time
  idle         hold N connections open through the proxy until stdin closes
  bulk-backend after the first bytes of a connection, sendfile N bytes, close
  hold-backend accept, write one byte, keep the connection until the peer closes

Results are one JSON object on stdout.
"""

import argparse
import json
import os
import re
import select
import socket
import ssl
import sys
import threading
import time


def client_hello(sni):
    """A real ClientHello for sni, as OpenSSL's client would send it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, int(round(q / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def lat_summary(lat_ns):
    """p50/p99 in ms, and 201 quantiles (ms) so that several clients' runs can be merged."""
    lat_ns.sort()
    return {"p50_ms": (percentile(lat_ns, 50) or 0) / 1e6,
            "p99_ms": (percentile(lat_ns, 99) or 0) / 1e6,
            "q_ms": [(percentile(lat_ns, i / 2) or 0) / 1e6 for i in range(201)] if lat_ns else []}


def cmd_rawcps(a):
    """Closed loop of a.conns concurrent short connections for a.duration s."""
    hello = client_hello(a.sni)
    addr = (a.host, a.port)
    ep = select.epoll()
    conns = {}  # fd -> [sock, t0, bytes, connected]
    ok = err = 0
    lat = []
    deadline = time.monotonic() + a.duration

    def start():
        s = socket.socket()
        s.setblocking(False)
        rc = s.connect_ex(addr)
        if rc not in (0, 115):  # EINPROGRESS
            s.close()
            return False
        conns[s.fileno()] = [s, time.perf_counter_ns(), 0, False]
        ep.register(s.fileno(), select.EPOLLOUT)
        return True

    def finish(fd, good):
        nonlocal ok, err
        done_now.add(fd)  # a new connection may reuse fd within this batch
        c = conns.pop(fd)
        ep.unregister(fd)
        c[0].close()
        if good:
            ok += 1
            lat.append(time.perf_counter_ns() - c[1])
        else:
            err += 1
        if time.monotonic() < deadline and not start():
            err += 1

    for _ in range(a.conns):
        start()
    t0 = time.monotonic()
    while conns:
        done_now = set()
        for fd, ev in ep.poll(1.0):
            c = conns.get(fd)
            if c is None or fd in done_now:
                continue
            s = c[0]
            if not c[3]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    finish(fd, False)
                    continue
                c[3] = True
                try:
                    s.send(hello)
                except OSError:
                    finish(fd, False)
                    continue
                ep.modify(fd, select.EPOLLIN)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                finish(fd, False)
                continue
            if data:
                c[2] += len(data)
            else:
                finish(fd, c[2] >= a.expect)
        if time.monotonic() > deadline + 5:  # stuck connections: give up on them
            for fd in list(conns):
                finish(fd, False)
    secs = time.monotonic() - t0
    out = {"ok": ok, "errors": err, "secs": secs}
    out.update(lat_summary(lat))
    return out


def cmd_rawbulk(a):
    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    buf = bytearray(1 << 20)
    t0 = time.monotonic()
    s.sendall(client_hello(a.sni))
    n = 0
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        n += k
    secs = time.monotonic() - t0
    s.close()
    return {"bytes": n, "secs": secs, "errors": 0 if n >= a.expect else 1}


def cmd_latency(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((a.host, a.port), timeout=5)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname=a.sni)
    req = f"GET / HTTP/1.1\r\nHost: {a.sni}\r\n\r\n".encode()
    clen = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)
    lat, errors = [], 0
    warm_until = time.monotonic() + a.warmup
    deadline = warm_until + a.duration
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        t0 = time.perf_counter_ns()
        s.sendall(req)
        buf = b""
        need = None
        while need is None or len(buf) < need:
            chunk = s.recv(65536)
            if not chunk:
                errors += 1
                return {"ok": len(lat), "errors": errors, "secs": a.duration, **lat_summary(lat)}
            buf += chunk
            if need is None:
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    m = clen.search(buf, 0, end + 2)
                    need = end + 4 + (int(m.group(1)) if m else 0)
        if now >= warm_until:
            lat.append(time.perf_counter_ns() - t0)
    s.close()
    return {"ok": len(lat), "errors": errors, "secs": a.duration, **lat_summary(lat)}


def cmd_idle(a):
    """Open a.conns connections, wait for the backend's byte on each, report,
    then hold them until stdin reaches EOF."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hello = client_hello(a.sni)
    socks, pending = [], {}
    ep = select.epoll()
    errors = 0
    for _ in range(a.conns):
        s = socket.socket()
        s.setblocking(False)
        if s.connect_ex((a.host, a.port)) not in (0, 115):
            errors += 1
            s.close()
            continue
        socks.append(s)
        pending[s.fileno()] = [s, False]
        ep.register(s.fileno(), select.EPOLLOUT)
        # keep the listen queues short: let the proxy catch up every so often
        while len(pending) >= 256:
            errors += _idle_step(ep, pending, hello, 1.0)
    deadline = time.monotonic() + a.timeout
    while pending and time.monotonic() < deadline:
        errors += _idle_step(ep, pending, hello, 0.5)
    established = len(socks) - errors - len(pending)
    print(json.dumps({"established": established, "errors": errors + len(pending)}), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()
    return None


def _idle_step(ep, pending, hello, timeout):
    """One epoll round of cmd_idle: send the hello when connected, wait for
    the backend's byte. Returns the number of connections that failed."""
    failed = 0
    for fd, ev in ep.poll(timeout):
        s, sent = pending[fd]
        try:
            if not sent:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise OSError("connect failed")
                s.send(hello)
                pending[fd][1] = True
                ep.modify(fd, select.EPOLLIN)
                continue
            if not s.recv(16):
                raise OSError("closed")
        except BlockingIOError:
            continue
        except OSError:
            failed += 1
        ep.unregister(fd)
        del pending[fd]
    return failed


def _listen(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    return ls


def cmd_bulk_backend(a):
    ls = _listen(a.port)
    fd = os.open(a.file, os.O_RDONLY)
    size = os.fstat(fd).st_size

    def serve(c):
        try:
            c.settimeout(30)
            c.recv(65536)  # the replayed ClientHello; content is not checked
            c.settimeout(None)  # os.sendfile needs a blocking socket
            left = a.bytes
            while left > 0:
                off = 0
                while off < size and left > 0:
                    n = os.sendfile(c.fileno(), fd, off, min(size - off, left))
                    if n == 0:
                        return
                    off += n
                    left -= n
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def cmd_hold_backend(a):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ls = _listen(a.port)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}
    while True:
        for fd, ev in ep.poll():
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    try:
                        c.send(b"!")
                    except OSError:
                        c.close()
                        continue
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns[fd]
            try:
                if c.recv(65536):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            ep.unregister(fd)
            del conns[fd]
            c.close()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def target(p):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sni", required=True)

    p = sub.add_parser("rawcps")
    target(p)
    p.add_argument("--conns", type=int, default=25)
    p.add_argument("--duration", type=float, default=3)
    p.add_argument("--expect", type=int, default=1, help="reply bytes that make a success")
    p = sub.add_parser("rawbulk")
    target(p)
    p.add_argument("--expect", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("latency")
    target(p)
    p.add_argument("--duration", type=float, default=2)
    p.add_argument("--warmup", type=float, default=0.2)
    p = sub.add_parser("idle")
    target(p)
    p.add_argument("--conns", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("bulk-backend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--bytes", type=int, required=True)
    p = sub.add_parser("hold-backend")
    p.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    fn = {"rawcps": cmd_rawcps, "rawbulk": cmd_rawbulk, "latency": cmd_latency,
          "idle": cmd_idle, "bulk-backend": cmd_bulk_backend,
          "hold-backend": cmd_hold_backend}[a.cmd]
    out = fn(a)
    if out is not None:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
