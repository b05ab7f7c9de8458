#!/usr/bin/python3
"""L4 passthrough: SNI routing as real clients see it (SPEC sections 1, 4, 11).
Run: /usr/bin/python3 t/integration/test_l4.py [NAME...]"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def two_tls_backends(tmp):
    """Backends for a.test and b.test, each with its own CA and an HTTP
    handler naming itself."""
    ca = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
    cb = mctest.gen_ca_and_cert("b.test", directory=tmp.path)
    ba = mctest.TLSBackend(ca.cert, ca.key, mctest.http_handler(b"backend A\n"))
    bb = mctest.TLSBackend(cb.cert, cb.key, mctest.http_handler(b"backend B\n"))
    return ca, cb, ba, bb


def curl(port, name, cafile):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", cafile,
                        "--resolve", "%s:%d:127.0.0.1" % (name, port),
                        "https://%s:%d/" % (name, port)],
                       capture_output=True, timeout=15)
    return r.returncode, r.stdout, r.stderr


def s_client(port, name, cafile):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", name, "-CAfile", cafile, "-verify_return_error"],
                       input=b"", capture_output=True, timeout=15)
    return r.stdout.decode(errors="replace")


@test
def openssl_s_client_sees_backend_certificate():
    with mctest.TempDir() as tmp:
        ca, cb, ba, bb = two_tls_backends(tmp)
        with ba, bb, mctest.proxy_server([("a.test", ba.addr), ("b.test", bb.addr)]) as srv:
            for name, cs in (("a.test", ca), ("b.test", cb)):
                out = s_client(srv.port, name, cs.ca_cert)
                assert "subject=CN = %s" % name in out, "s_client %s: %s" % (name, out[-600:])
                assert "Verify return code: 0 (ok)" in out, out[-600:]
            assert ba.snis == ["a.test"] and bb.snis == ["b.test"], (ba.snis, bb.snis)


@test
def curl_gets_backend_http_response():
    with mctest.TempDir() as tmp:
        ca, cb, ba, bb = two_tls_backends(tmp)
        with ba, bb, mctest.proxy_server([("a.test", ba.addr), ("b.test", bb.addr)]) as srv:
            rc, out, err = curl(srv.port, "a.test", ca.ca_cert)
            assert rc == 0 and out == b"backend A\n", (rc, out, err)
            rc, out, err = curl(srv.port, "b.test", cb.ca_cert)
            assert rc == 0 and out == b"backend B\n", (rc, out, err)
            # The proxy never terminates TLS: the wrong CA fails verification.
            rc, out, err = curl(srv.port, "a.test", cb.ca_cert)
            assert rc != 0 and not out, (rc, out, err)


@test
def python_ssl_client_two_routes():
    with mctest.TempDir() as tmp:
        ca = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        cb = mctest.gen_ca_and_cert("b.test", directory=tmp.path)
        with mctest.TLSBackend(ca.cert, ca.key, mctest.greet_handler(b"A")) as ba, \
                mctest.TLSBackend(cb.cert, cb.key, mctest.greet_handler(b"B")) as bb, \
                mctest.proxy_server([("a.test", ba.addr), ("b.test", bb.addr)]) as srv:
            for name, cs, greet in (("a.test", ca, b"A\n"), ("b.test", cb, b"B\n"),
                                    ("a.test", ca, b"A\n")):
                s = mctest.tls_client(srv.port, name, cafile=cs.ca_cert)
                assert s.getpeercert()["subject"][0][0] == ("commonName", name)
                assert mctest.recv_exact(s, 2) == greet
                mctest.echo_roundtrip(s, b"x" * 10000)
                s.close()
            assert (ba.accepted, bb.accepted) == (2, 1), (ba.accepted, bb.accepted)


def raw_route_check(srv, sni_bytes, expect_backend=None, hello=None):
    """Sends a ClientHello with SNI sni_bytes; with expect_backend, the
    greeting of that backend must come back and the backend must have
    received the hello byte for byte; otherwise the connection must be
    closed without a byte."""
    hello = hello or mctest.hello_set_sni(mctest.client_hello_bytes("x.invalid"), sni_bytes)
    n = len(expect_backend[0].results) if expect_backend else 0
    s = mctest.connect(srv.port)
    try:
        s.sendall(hello)
        if expect_backend is None:
            mctest.assert_closed_without_bytes(s, 3, what="SNI %r" % sni_bytes)
            return
        be, greet = expect_backend
        assert mctest.recv_exact(s, len(greet), 5) == greet, "SNI %r: wrong backend" % sni_bytes
        mctest.wait_until(lambda: len(be.results) > n, 2, what="backend hello")
        assert hello in be.results[n:], "backend got a different hello for %r" % sni_bytes
    finally:
        s.close()


@test
def wildcard_matches_one_label():
    with mctest.RawBackend(mctest.hello_greet_handler(b"W")) as bw, \
            mctest.RawBackend(mctest.hello_greet_handler(b"E")) as be, \
            mctest.proxy_server([("*.w.test", bw.addr), ("e.w.test", be.addr)]) as srv:
        raw_route_check(srv, b"x.w.test", (bw, b"W\n"))
        raw_route_check(srv, b"e.w.test", (be, b"E\n"))  # exact beats wildcard
        raw_route_check(srv, b"y.x.w.test")
        raw_route_check(srv, b"w.test")
        srv.wait_conn_log(sni="y.x.w.test", result="no_route")
        srv.wait_conn_log(sni="w.test", result="no_route")
        srv.wait_conn_log(sni="x.w.test", route="*.w.test", result="ok")


@test
def uppercase_and_trailing_dot_sni_route():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        for sni in (b"A.TEST", b"a.Test", b"a.test.", b"A.TEST."):
            raw_route_check(srv, sni, (ba, b"A\n"))
        raw_route_check(srv, b"a.test..")  # only one trailing dot is removed
        assert ba.accepted == 4, ba.accepted


@test
def refusals_close_without_a_byte():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        cases = [
            ("no_sni", mctest.client_hello_bytes(None)),
            ("no_route", mctest.client_hello_bytes("unknown.test")),
            ("not_tls", b"GET / HTTP/1.0\r\n\r\n"),
        ]
        for result, data in cases:
            s = mctest.connect(srv.port)
            s.sendall(data)
            mctest.assert_closed_without_bytes(s, 3, what=result)
            s.close()
            srv.wait_conn_log(result=result)
        assert ba.accepted == 0, "a refused connection reached the backend"


@test
def hello_one_byte_per_write():
    with mctest.TempDir() as tmp:
        ca = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with mctest.TLSBackend(ca.cert, ca.key, mctest.echo_handler) as ba, \
                mctest.proxy_server([("a.test", ba.addr)],
                                    proxy={"handshake_timeout": "10s"}) as srv:
            s = mctest.connect(srv.port, nodelay=True)
            p = mctest.TLSPump(s, "a.test", cafile=ca.ca_cert)
            p.handshake(timeout=20, send_first=lambda sock, d: mctest.send_slowly(
                sock, d, chunk=1, delay=0.001))
            assert p.peer_subject()["commonName"] == "a.test"
            p.send(b"ping")
            assert p.recv_exact(4) == b"ping"
            s.close()
            assert ba.snis == ["a.test"]


@test
def hello_split_over_many_records():
    with mctest.TempDir() as tmp:
        ca = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with mctest.TLSBackend(ca.cert, ca.key, mctest.echo_handler) as ba, \
                mctest.proxy_server([("a.test", ba.addr)],
                                    proxy={"handshake_timeout": "10s"}) as srv:
            # 1-byte records (the SNI itself is split), then mixed sizes
            # written in odd-sized TCP segments.
            for sizes, chunk in (([1], 4096), ([3, 1, 40, 7], 11)):
                s = mctest.connect(srv.port, nodelay=True)
                p = mctest.TLSPump(s, "a.test", cafile=ca.ca_cert)
                p.handshake(timeout=20, send_first=lambda sock, d: mctest.send_slowly(
                    sock, mctest.reframe_hello(d, sizes), chunk=chunk, delay=0.001))
                assert p.peer_subject()["commonName"] == "a.test"
                p.send(b"ping")
                assert p.recv_exact(4) == b"ping"
                s.close()
            assert ba.snis == ["a.test", "a.test"], ba.snis


@test
def large_hello_replayed_byte_exact():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        base = mctest.client_hello_bytes("a.test", alpn=["h2", "http/1.1"])
        big = mctest.hello_pad_to(base, 1800)
        raw_route_check(srv, None, (ba, b"A\n"), hello=big)
        raw_route_check(srv, None, (ba, b"A\n"), hello=mctest.reframe_hello(big, [100]))


@test
def access_log_fields():
    def handler(sock, be):
        be.results.append(mctest.read_hello(sock))
        mctest.recv_exact(sock, 100)
        sock.sendall(b"r" * 250)
    with mctest.RawBackend(handler) as ba, mctest.proxy_server([("a.test", ba.addr)]) as srv:
        hello = mctest.client_hello_bytes("a.test")
        s = mctest.connect(srv.port)
        cport = s.getsockname()[1]
        s.sendall(hello + b"q" * 100)
        data, how, _ = mctest.recv_until_close(s, 5)
        s.close()
        assert data == b"r" * 250 and how == "eof", (len(data), how)
        line = srv.wait_conn_log(result="ok")
        expect = {
            "level": "info", "proc": "worker", "listener": srv.listen_addr,
            "client": "127.0.0.1:%d" % cport, "sni": "a.test", "route": "a.test",
            "backend": ba.addr, "mode": "l4", "bytes_in": len(hello) + 100, "bytes_out": 250,
        }
        for k, v in expect.items():
            assert str(line.get(k)) == str(v), "field %s: %r, expected %r in %r" % (
                k, line.get(k), v, line)
        for k in ("time", "pid", "duration_ms"):
            assert k in line, "field %s missing in %r" % (k, line)
        assert int(line["duration_ms"]) >= 0
        assert int(line["pid"]) in srv.worker_pids(), line


@test
def odd_sni_is_escaped_in_log():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        raw_route_check(srv, b'ev"il\\\x01\x7f\n{.test')
        raw = mctest.wait_until(lambda: [l for l in srv.log_text().splitlines()
                                         if '"conn"' in l], 5, what="the access line")[0]
        assert "\x01" not in raw and "\x7f" not in raw, "raw control byte in %r" % raw
        line = mctest.parse_log_line(raw)
        assert line is not None, "access line is not valid JSON: %s" % raw
        want = "ev\\x22il\\x5c\\x01\\x7f\\x0a{.test"
        assert line.get("sni", "").lower() == want, "sni logged as %r, expected %r" % (
            line.get("sni"), want)
        assert line.get("result") == "no_route", line


@test
def text_log_format():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], log={"format": "text"}) as srv:
        hello = mctest.client_hello_bytes("a.test")
        s = mctest.connect(srv.port)
        cport = s.getsockname()[1]
        s.sendall(hello)
        mctest.echo_roundtrip(s, b"hello world")
        s.close()
        line = srv.wait_conn_log(result="ok")
        raw = [l for l in srv.log_text().splitlines() if " msg=conn " in l][0]
        assert re.match(r"^\S+ level=info proc=worker pid=\d+ msg=conn ", raw), raw
        assert line["client"] == "127.0.0.1:%d" % cport and line["sni"] == "a.test", line
        assert line["bytes_in"] == str(len(hello) + 11) and line["bytes_out"] == "11", line
        assert line["mode"] == "l4" and line["backend"] == ba.addr, line


if __name__ == "__main__":
    mctest.main()
