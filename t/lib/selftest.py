#!/usr/bin/python3
"""Self-test of the harness pieces that do not need mc-proxy:
/usr/bin/python3 t/lib/selftest.py"""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mctest  # noqa: E402
from mctest import test  # noqa: E402
from certs import cert_subject  # noqa: E402

# A stand-in for mc-proxy: enough of the process contract (notify socket,
# __worker children, JSON logs, signals) to exercise Server.
FAKE = r'''#!/usr/bin/python3
import json, os, signal, socket, sys, time
def log(msg, **kw):
    rec = {"time": "t", "level": "info", "proc": "master", "pid": os.getpid(), "msg": msg}
    rec.update(kw)
    sys.stderr.write(json.dumps(rec) + "\n"); sys.stderr.flush()
def notify(s):
    so = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    so.sendto(s.encode(), os.environ["NOTIFY_SOCKET"]); so.close()
if sys.argv[1] == "__worker":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(1)
kids = [os.spawnv(os.P_NOWAIT, sys.argv[0], [sys.argv[0], "__worker", str(i)]) for i in range(2)]
def stop(*a):
    notify("STOPPING=1")
    for k in kids:
        os.kill(k, signal.SIGTERM)
    if os.environ.get("FAKE_UBSAN"):
        sys.stderr.write("x.c:1:2: runtime error: signed integer overflow\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
log("conn", client="127.0.0.1:1", sni="a\\x22b", result="ok")
notify("STATUS=starting\nREADY=1")
while True:
    time.sleep(1)
'''


def _fake_bin(tmp):
    path = tmp.write("fake-mc-proxy", FAKE, mode=0o755)
    os.environ["MCPROXY_BIN"] = path
    return path


@test
def certs_and_tls_backend():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        assert "CN = a.test" in cert_subject(cs.cert), cert_subject(cs.cert)
        with mctest.TLSBackend(cs.cert, cs.key, mctest.echo_handler) as be:
            s = mctest.tls_client(be.port, "a.test", cafile=cs.ca_cert)
            mctest.echo_roundtrip(s, b"hello")
            assert s.getpeercert()["subject"][0][0] == ("commonName", "a.test")
            s.close()
            assert be.snis == ["a.test"], be.snis


@test
def openssl_and_curl_against_tls_backend():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with mctest.TLSBackend(cs.cert, cs.key, mctest.http_handler(b"hi from a\n")) as be:
            r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", cs.ca_cert,
                                "--resolve", "a.test:%d:127.0.0.1" % be.port,
                                "https://a.test:%d/" % be.port],
                               capture_output=True, timeout=10)
            assert r.returncode == 0 and r.stdout == b"hi from a\n", r
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % be.port,
                                "-servername", "a.test", "-CAfile", cs.ca_cert],
                               input=b"", capture_output=True, timeout=10)
            assert b"subject=CN = a.test" in r.stdout, r.stdout[-500:]


@test
def client_hello_tools():
    h = mctest.client_hello_bytes("a.test", alpn=["h2", "http/1.1"])
    recs = mctest.split_records(h)
    assert len(recs) == 1 and recs[0][0] == 22
    msg = mctest.hello_message(h)
    assert msg[0] == 1 and b"a.test" in msg and b"h2" in msg
    assert b"a.test" not in mctest.client_hello_bytes(None)
    odd = mctest.hello_set_sni(h, b'x"y\\z\x01.test')
    assert b'x"y\\z\x01.test' in mctest.hello_message(odd) and b"a.test" not in odd
    big = mctest.hello_pad_to(h, 1800)
    assert abs(len(mctest.hello_message(big)) - 1800) <= 4, len(mctest.hello_message(big))
    ref = mctest.reframe_hello(h, [1])
    assert len(mctest.split_records(ref)) == len(msg)
    assert mctest.hello_message(ref) == msg


@test
def fragmented_hello_completes_handshake():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with mctest.TLSBackend(cs.cert, cs.key, mctest.echo_handler) as be:
            for sizes in ([1], [7, 100, 3]):
                s = mctest.connect(be.port, nodelay=True)
                p = mctest.TLSPump(s, "a.test", cafile=cs.ca_cert)
                p.handshake(send_first=lambda sock, d: mctest.send_slowly(
                    sock, mctest.reframe_hello(d, sizes), chunk=5, delay=0))
                p.send(b"ping")
                assert p.recv_exact(4) == b"ping"
                assert p.peer_subject()["commonName"] == "a.test"
                s.close()


@test
def raw_backend_and_close_helpers():
    def hold_then_close(sock, be):
        be.results.append(mctest.recv_exact(sock, 3))
    with mctest.RawBackend(hold_then_close) as be:
        s = mctest.connect(be.port)
        s.sendall(b"abc")
        secs = mctest.assert_closed_without_bytes(s, 3)
        assert secs < 3 and be.results == [b"abc"]


@test
def notify_and_log_parsing():
    with mctest.TempDir() as tmp:
        n = mctest.NotifyReceiver(tmp.join("n.sock"))
        so = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        so.sendto(b"STATUS=x\nREADY=1", n.path)
        n.wait_for("READY=1", 2)
        assert n.messages == ["STATUS=x\nREADY=1"]
        n.close()
    r = mctest.parse_text_line('2024-01-01T00:00:00Z level=info proc=worker pid=7 msg=conn '
                               'sni="a b\\x22" bytes_in=5 empty=')
    assert r == {"time": "2024-01-01T00:00:00Z", "level": "info", "proc": "worker", "pid": "7",
                 "msg": "conn", "sni": "a b\\x22", "bytes_in": "5", "empty": ""}, r
    y = mctest.to_yaml(mctest.base_config([mctest.listener("127.0.0.1:1", [("a.test", "b:2")])]))
    assert '  - addr: "127.0.0.1:1"\n    routes:\n      - hostname: "a.test"\n' in y, y


@test
def server_harness_with_fake_binary():
    old = os.environ.get("MCPROXY_BIN")
    with mctest.TempDir() as tmp:
        try:
            _fake_bin(tmp)
            with mctest.Server("{}\n") as srv:
                workers = srv.wait_workers(2)
                assert all(mctest.proc_ppid(w) == srv.pid for w in workers)
                line = srv.wait_conn_log(result="ok")
                assert line["sni"] == "a\\x22b"
                t0 = time.monotonic()
                assert srv.stop(signal.SIGTERM) == 0
                assert time.monotonic() - t0 < 5
                srv.notify.wait_for("STOPPING=1", 2)
            srv = mctest.Server("{}\n", env={"FAKE_UBSAN": "1"})
            srv.start()
            srv.stop()
            try:
                srv.close()
            except AssertionError as e:
                assert "runtime error" in str(e)
            else:
                raise AssertionError("sanitizer output not detected")
        finally:
            if old is None:
                os.environ.pop("MCPROXY_BIN", None)
            else:
                os.environ["MCPROXY_BIN"] = old


if __name__ == "__main__":
    mctest.main()
