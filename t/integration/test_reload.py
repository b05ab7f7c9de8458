"""
SIGHUP reload (SPEC section 10): the config is re-read and applied by a
new generation of workers on the same listening sockets, without refusing
or dropping a connection; a broken config changes nothing; systemd hears
RELOADING=1 then READY=1 either way.
"""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

RELOADS = 20


def listening_inodes(pid, port):
    """Inodes of the LISTEN sockets on port that process pid holds."""
    held = mctest.proc_socket_inodes(pid)
    return {inode for lport, _, state, inode in mctest.tcp_table()
            if state == "0A" and lport == port and inode in held}


def notify_after(srv, start, line, timeout):
    """Waits for line among the notify lines that arrived after index start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = srv.notify.drain(0.05)
        if line in lines[start:]:
            return lines[start:].index(line) + start
    raise AssertionError("no %s within %.0f s after reload (got %r)"
                         % (line, timeout, srv.notify.lines[start:]))


class TLSLoad(threading.Thread):
    """New TLS connections one after another (handshake, one echo, close)
    until stopped; counts successes and records every failure."""

    def __init__(self, port, sni, cafile):
        super().__init__(daemon=True)
        self.port, self.sni, self.cafile = port, sni, cafile
        self.ok = 0
        self.failures = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                s = mctest.tls_client(self.port, self.sni, cafile=self.cafile, timeout=5)
                try:
                    s.sendall(b"ping")
                    assert mctest.recv_exact(s, 4, 5) == b"ping"
                finally:
                    s.close()
                self.ok += 1
            except Exception as e:  # every failure is a finding, whatever its kind
                self.failures.append(repr(e))


@test
def twenty_reloads_drop_nothing():
    with mctest.TempDir() as tmp:
        certs = mctest.gen_ca_and_cert("a.test", directory=tmp.path)
        with mctest.TLSBackend(certs.cert, certs.key, mctest.echo_handler) as tls_be, \
                mctest.RawBackend(mctest.hello_echo_handler) as raw_be:
            routes = [("a.test", tls_be.addr), ("r.test", raw_be.addr)]
            # shutdown_timeout beyond the test: no relay may be cut by a retiring worker
            srv = mctest.proxy_server(routes, proxy={"shutdown_timeout": "120s"}, workers=2)
            with srv:
                inodes = listening_inodes(srv.pid, srv.port)
                assert len(inodes) == 2, "expected 2 SO_REUSEPORT sockets, got %s" % inodes
                relays = []
                for _ in range(6):
                    s = mctest.connect(srv.port)
                    s.sendall(mctest.client_hello_bytes("r.test"))
                    mctest.echo_roundtrip(s, b"hello")
                    relays.append(s)
                load = TLSLoad(srv.port, "a.test", certs.ca_cert)
                load.start()
                mctest.wait_until(lambda: load.ok >= 1 or load.failures, 20, what="the TLS load")
                try:
                    for i in range(RELOADS):
                        cfg = mctest.base_config(
                            [mctest.listener(srv.listen_addr, routes)], workers=1 + i % 2,
                            proxy={"shutdown_timeout": "120s", "idle_timeout": "%ds" % (60 + i)})
                        srv.dir.write("mc-proxy.yaml", mctest.to_yaml(cfg))
                        start = len(srv.notify.drain())
                        srv.send_signal(signal.SIGHUP)
                        r = notify_after(srv, start, "RELOADING=1", 10)
                        notify_after(srv, r, "READY=1", 20)
                        for s in relays:
                            mctest.echo_roundtrip(s, os.urandom(64))
                        # new connections keep coming between every two reloads
                        seen = load.ok
                        mctest.wait_until(lambda: load.ok > seen or load.failures, 20,
                                          what="a TLS connection after reload %d" % (i + 1))
                    during = load.ok
                    # a few more connections on the final generation
                    base = load.ok
                    mctest.wait_until(lambda: load.ok >= base + 5, 20, what="TLS connections")
                finally:
                    load.stopping.set()
                    load.join(30)
                assert not load.failures, "%d of %d connections failed: %s" % (
                    len(load.failures), load.ok + len(load.failures), load.failures[:5])
                assert during >= RELOADS, "only %d TLS connections during the reloads" % during
                for s in relays:
                    mctest.echo_roundtrip(s, b"still here")
                    s.close()
                assert listening_inodes(srv.pid, srv.port) == inodes, \
                    "listening sockets changed across reloads"
                srv.wait_log(lambda r: "reload complete" in r.get("msg", ""))
                workers = mctest.wait_until(
                    lambda: len(srv.worker_pids()) == 2 and srv.worker_pids(), 20,
                    what="the retired workers to drain and exit")
                assert len(workers) == 2, workers


@test
def broken_config_keeps_serving():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as be, \
            mctest.proxy_server([("a.test", be.addr)]) as srv:
        workers = sorted(srv.worker_pids())
        srv.dir.write("mc-proxy.yaml", "database:\n  path: mc-proxy.db\nworkers: lots\nbogus: 1\n")
        start = len(srv.notify.drain())
        srv.send_signal(signal.SIGHUP)
        r = notify_after(srv, start, "RELOADING=1", 10)
        ready = notify_after(srv, r, "READY=1", 10)
        status = [l for l in srv.notify.lines[r:] if l.startswith("STATUS=")]
        assert any("reload failed" in l for l in status), status
        srv.wait_log(lambda rec: rec.get("level") == "error" and "workers" in rec.get("msg", ""),
                     what="the error naming the bad key")
        srv.wait_log(lambda rec: "bogus" in rec.get("msg", ""), what="every error, not the first")
        assert sorted(srv.worker_pids()) == workers, "a failed reload must not replace workers"
        s = mctest.connect(srv.port)
        s.sendall(mctest.client_hello_bytes("a.test"))
        assert mctest.recv_exact(s, 2, 5) == b"A\n"
        s.close()
        assert ready > r


@test
def watchdog_pings_when_asked():
    with mctest.RawBackend(mctest.hello_echo_handler) as be:
        srv = mctest.proxy_server([("a.test", be.addr)], env={"WATCHDOG_USEC": "200000"})
        with srv:
            # every WATCHDOG_USEC/2: several within a second
            mctest.wait_until(lambda: srv.notify.drain(0.05).count("WATCHDOG=1") >= 3, 5,
                              what="three WATCHDOG=1 pings")
        # and none for a watchdog meant for another process
        srv = mctest.proxy_server([("a.test", be.addr)],
                                  env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
        with srv:
            srv.notify.drain(1.0)
            assert "WATCHDOG=1" not in srv.notify.drain(0.3), srv.notify.lines


if __name__ == "__main__":
    mctest.main()
