#!/usr/bin/python3
"""Timeouts: handshake, backend connect (refused, blackholed), idle relay
(SPEC sections 3, 4, 5). Run: /usr/bin/python3 t/integration/test_timeouts.py"""

import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

SLACK = 2.0  # how late a timeout may fire (ASan, 2 loaded cores)


def assert_in_window(secs, low, high, what):
    assert low <= secs <= high, "%s closed after %.2f s, expected %.1f..%.1f s" % (
        what, secs, low, high)


@test
def slow_hello_closed_at_handshake_timeout():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"handshake_timeout": "1s"}) as srv:
        hello = mctest.client_hello_bytes("a.test")
        half = mctest.connect(srv.port)
        t0 = time.monotonic()
        half.sendall(hello[:len(hello) // 2])
        silent = mctest.connect(srv.port)
        t1 = time.monotonic()
        mctest.assert_closed_without_bytes(half, 1 + SLACK + 1, "half hello")
        assert_in_window(time.monotonic() - t0, 0.9, 1 + SLACK, "half hello")
        mctest.assert_closed_without_bytes(silent, 1 + SLACK + 1, "silent client")
        assert_in_window(time.monotonic() - t1, 0.9, 1 + SLACK, "silent client")
        half.close()
        silent.close()
        mctest.wait_until(lambda: len([r for r in srv.conn_logs()
                                       if r["result"] == "hello_timeout"]) == 2,
                          3, what="two hello_timeout lines")
        assert ba.accepted == 0


def server_side_state(local_port, remote_port):
    """The TCP state (hex) of the proxy's end of a client connection."""
    for lport, rport, state, _ in mctest.tcp_table():
        if lport == local_port and rport == remote_port:
            return state
    return None


@test
def silent_client_is_not_accepted_until_it_speaks():
    # TCP_DEFER_ACCEPT: a client that only connects costs the worker no
    # wakeup, no descriptor and no timer; its first bytes hand it over
    SYN_RECV, ESTABLISHED = "03", "01"
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        s = mctest.connect(srv.port)
        cport = s.getsockname()[1]
        mctest.wait_until(lambda: server_side_state(srv.port, cport) is not None, 2,
                          what="the connection in /proc/net/tcp")
        assert server_side_state(srv.port, cport) == SYN_RECV, server_side_state(srv.port, cport)
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.echo_roundtrip(s, b"spoke at last")
        assert server_side_state(srv.port, cport) == ESTABLISHED
        s.close()
        srv.wait_conn_log(result="ok", client="127.0.0.1:%d" % cport)


@test
def backend_refused_closes_quickly():
    dead = "127.0.0.1:%d" % mctest.free_port()
    with mctest.proxy_server([("a.test", dead)], proxy={"connect_timeout": "5s"}) as srv:
        s = mctest.connect(srv.port)
        t0 = time.monotonic()
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.assert_closed_without_bytes(s, 6, "refused backend")
        assert_in_window(time.monotonic() - t0, 0, 1.5, "refused backend")
        s.close()
        line = srv.wait_conn_log(result="backend_connect_failed")
        assert line.get("backend") == dead, line


class Blackhole:
    """A loopback port whose SYNs go unanswered: a listener with backlog 0
    whose accept queue is filled by a connection never accepted (Linux
    then drops further SYNs)."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.fillers = []
        # Fill until a probe connect no longer completes.
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "could not fill the accept queue"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)
            _, w, _ = select.select([], [s], [], 0.3)
            if not w or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                break

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@test
def blackholed_backend_closed_at_connect_timeout():
    with Blackhole() as bh, \
            mctest.proxy_server([("a.test", bh.addr)], proxy={"connect_timeout": "1s"}) as srv:
        s = mctest.connect(srv.port)
        t0 = time.monotonic()
        s.sendall(mctest.client_hello_bytes("a.test"))
        mctest.assert_closed_without_bytes(s, 1 + SLACK + 1, "blackholed backend")
        assert_in_window(time.monotonic() - t0, 0.9, 1 + SLACK, "blackholed backend")
        s.close()
        srv.wait_conn_log(result="backend_connect_timeout")


@test
def idle_relay_closed_at_idle_timeout():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "2s"}) as srv:
        hello = mctest.client_hello_bytes("a.test")
        idle = mctest.connect(srv.port)
        idle.sendall(hello)
        mctest.echo_roundtrip(idle, b"once")
        t_idle = time.monotonic()
        busy = mctest.connect(srv.port)
        busy.sendall(hello)
        mctest.echo_roundtrip(busy, b"first")
        # Keep one relay busy past the idle timeout while the other sits.
        deadline = time.monotonic() + 3.5
        idle_closed_at = None
        while time.monotonic() < deadline:
            mctest.echo_roundtrip(busy, b"tick")
            if idle_closed_at is None:
                data, how, _ = mctest.recv_until_close(idle, 0.4)
                assert not data, data
                if how != "timeout":
                    idle_closed_at = time.monotonic()
            else:
                time.sleep(0.4)
        if idle_closed_at is None:
            mctest.assert_closed_without_bytes(idle, 2 + SLACK, "idle relay")
            idle_closed_at = time.monotonic()
        assert_in_window(idle_closed_at - t_idle, 1.8, 2 + SLACK, "idle relay")
        mctest.echo_roundtrip(busy, b"still here")
        busy.close()
        idle.close()
        # The idle relay's access line (its result is not a refusal code).
        srv.wait_conn_log(bytes_out=4)


if __name__ == "__main__":
    mctest.main()
