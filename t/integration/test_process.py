#!/usr/bin/python3
"""Processes and signals: worker respawn, SIGTERM drain, SIGQUIT, systemd
notify, max_connections, EMFILE (SPEC sections 2, 4, 10).
Run: /usr/bin/python3 t/integration/test_process.py [NAME...]"""

import errno
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def open_relay(srv, hello=None, timeout=5.0):
    """A client connection through srv to a hello-then-echo backend,
    checked with one round trip."""
    s = mctest.connect(srv.port, host=srv.host, timeout=timeout)
    s.sendall(hello or mctest.client_hello_bytes("a.test"))
    mctest.echo_roundtrip(s, b"hi", timeout)
    return s


def connect_refused(port):
    """True if a connect to port is refused (nothing accepting)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()
    return False


@test
def killed_worker_replaced_others_untouched():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], proxy={"idle_timeout": "30s"}) as srv:
        workers = srv.wait_workers(2)
        for pid in workers:  # what ps, top and pgrep show, not "exe"
            with open("/proc/%d/comm" % pid) as f:
                assert f.read().strip() == "mc-proxy-worker", "worker %d comm" % pid
        hello = mctest.client_hello_bytes("a.test")
        relays = []  # (socket, owner pid)
        deadline = time.monotonic() + 20
        while len(relays) < 8 or len({w for _, w in relays}) < 2:
            assert time.monotonic() < deadline and len(relays) < 40, \
                "relays never spread over both workers: %r" % [w for _, w in relays]
            s = open_relay(srv, hello)
            cport = s.getsockname()[1]
            owner = mctest.wait_until(lambda: srv.worker_of(srv.port, cport), 3,
                                      what="owner of client port %d" % cport)
            assert owner in workers, (owner, workers)
            relays.append((s, owner))
        mctest.note("relays per worker: %r" % {w: sum(1 for _, o in relays if o == w)
                                                for w in workers})
        victim = workers[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        new = mctest.wait_until(
            lambda: [p for p in srv.worker_pids() if p not in workers]
            and len(srv.worker_pids()) == 2 and srv.worker_pids(), 5, interval=0.01,
            what="a replacement worker")
        took = time.monotonic() - t0
        mctest.note("replacement worker after %.3f s" % took)
        assert took <= 1.0, "replacement worker appeared after %.2f s" % took
        assert victim not in new
        for s, owner in relays:
            if owner == victim:
                data, how, _ = mctest.recv_until_close(s, 3)
                assert how != "timeout", "relay of the killed worker still open"
            else:
                mctest.echo_roundtrip(s, b"still flowing %d" % owner)
        for _ in range(8):
            s = open_relay(srv, hello)
            s.close()
        for s, _ in relays:
            s.close()
        assert srv.running(), "master died"


@test
def sigterm_drains_open_relay():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)],
                                proxy={"shutdown_timeout": "20s", "idle_timeout": "30s"}) as srv:
        relay = open_relay(srv)
        srv.send_signal(signal.SIGTERM)
        mctest.wait_until(lambda: connect_refused(srv.port), 3, what="new connects refused")
        mctest.echo_roundtrip(relay, b"draining")
        time.sleep(0.3)  # the relay keeps working for a while, not just at once
        mctest.echo_roundtrip(relay, b"still draining")
        assert srv.running(), "exited with a relay still open"
        relay.close()
        t0 = time.monotonic()
        rc = srv.wait_exit(10)
        assert rc == 0, "exit code %r" % rc
        assert time.monotonic() - t0 < 10
        srv.notify.wait_for("STOPPING=1", 1)


def force_closed_at_shutdown_timeout(srv, relay, t0):
    """The relay is closed by the proxy about 2 s (shutdown_timeout) after
    the SIGTERM sent at t0, and the server exits cleanly."""
    _, how, _ = mctest.recv_until_close(relay, 8)
    closed = time.monotonic() - t0
    assert how != "timeout", "relay not force-closed 8 s after SIGTERM"
    assert 1.8 <= closed <= 5, "relay force-closed after %.2f s (shutdown_timeout 2s)" % closed
    rc = srv.wait_exit(5)
    assert rc == 0, "exit code %r" % rc


@test
def sigterm_force_closes_after_shutdown_timeout():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)],
                                proxy={"shutdown_timeout": "2s", "idle_timeout": "30s"}) as srv:
        relay = open_relay(srv)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        mctest.echo_roundtrip(relay, b"draining")
        force_closed_at_shutdown_timeout(srv, relay, t0)
        relay.close()


@test
def sigterm_after_an_idle_spell_still_drains():
    """The drain deadline counts from the SIGTERM, not from when the
    processes last woke: idle for longer than shutdown_timeout, then
    SIGTERM to every process of the service (as systemd's default
    KillMode=control-group sends it), the open relay keeps working until
    shutdown_timeout has passed."""
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)],
                                proxy={"shutdown_timeout": "2s", "idle_timeout": "30s"}) as srv:
        relay = open_relay(srv)
        workers = srv.worker_pids()
        time.sleep(2.5)  # the scenario itself: nothing happens for longer than shutdown_timeout
        t0 = time.monotonic()
        for pid in [srv.proc.pid] + workers:
            os.kill(pid, signal.SIGTERM)
        mctest.echo_roundtrip(relay, b"draining")
        time.sleep(0.5)  # well inside shutdown_timeout
        mctest.echo_roundtrip(relay, b"still draining")
        force_closed_at_shutdown_timeout(srv, relay, t0)
        assert "still running at the deadline" not in srv.log_text(), \
            "the master killed workers that were within shutdown_timeout"
        relay.close()


@test
def sigquit_stops_at_once():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)],
                                proxy={"shutdown_timeout": "20s", "idle_timeout": "30s"}) as srv:
        relay = open_relay(srv)
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGQUIT, timeout=5)
        took = time.monotonic() - t0
        assert took < 2, "SIGQUIT took %.2f s" % took
        assert rc >= 0, "master killed by signal %d" % -rc
        data, how, _ = mctest.recv_until_close(relay, 3)
        assert how != "timeout", "relay still open after SIGQUIT"
        relay.close()
        mctest.wait_until(lambda: not srv.session_pids(), 3, what="workers to exit")


@test
def notify_ready_then_stopping():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)]) as srv:
        # READY=1 means accepting: the first connection works right away.
        s = open_relay(srv)
        s.close()
        assert srv.stop(signal.SIGINT) == 0
        srv.notify.wait_for("STOPPING=1", 2)
        lines = srv.notify.lines
        assert lines.index("READY=1") < lines.index("STOPPING=1"), lines


@test
def max_connections_across_workers():
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], listener_opts={"max_connections": 2},
                                proxy={"idle_timeout": "30s"}) as srv:
        srv.wait_workers(2)
        hello = mctest.client_hello_bytes("a.test")
        r1 = open_relay(srv, hello)
        r2 = open_relay(srv, hello)
        for _ in range(3):  # whichever worker takes it, the limit is global
            s = mctest.connect(srv.port)
            mctest.send_may_fail(s, hello)
            secs = mctest.assert_closed_without_bytes(s, 3, "third connection")
            assert secs < 1, "third connection closed only after %.2f s" % secs
            s.close()
        srv.wait_conn_log(result="max_connections")
        assert ba.accepted == 2
        cport = r1.getsockname()[1]
        r1.close()
        srv.wait_conn_log(result="ok", client="127.0.0.1:%d" % cport)
        r3 = open_relay(srv, hello)
        mctest.echo_roundtrip(r2, b"r2 alive")
        mctest.echo_roundtrip(r3, b"r3 alive")
        r2.close()
        r3.close()


@test
def emfile_does_not_spin():
    limit = 64
    with mctest.RawBackend(mctest.hello_echo_handler) as ba, \
            mctest.proxy_server([("a.test", ba.addr)], workers=1, rlimit_nofile=limit,
                                proxy={"handshake_timeout": "30s", "idle_timeout": "60s"}) as srv:
        (worker,) = srv.wait_workers(1)
        hello = mctest.client_hello_bytes("a.test")
        clients = []
        for _ in range(limit + 16):
            s = mctest.connect(srv.port)
            s.sendall(hello + b"x")
            clients.append(s)

        # Wait until the backend stops getting new connections: the worker
        # is out of descriptors.
        last = {"accepted": -1, "since": 0.0}

        def settled():
            if ba.accepted != last["accepted"]:
                last["accepted"], last["since"] = ba.accepted, time.monotonic()
                return False
            return time.monotonic() - last["since"] > 0.5
        mctest.wait_until(settled, 10, what="the worker to saturate")
        assert ba.accepted < len(clients), "every connection was relayed; limit not reached"
        log_before = len(srv.log_text().splitlines())
        cpu0 = mctest.proc_cpu_seconds(worker)
        t0 = time.monotonic()
        time.sleep(2)  # measuring a rate: the window itself is the point
        cpu = mctest.proc_cpu_seconds(worker) - cpu0
        window = time.monotonic() - t0
        mctest.note("emfile: %d of %d connections relayed; worker CPU %.3f s in %.1f s"
                    % (ba.accepted, len(clients), cpu, window))
        assert cpu < 0.2, "worker used %.2f s CPU in %.1f s while out of fds" % (cpu, window)
        new_lines = srv.log_text().splitlines()[log_before:]
        assert len(new_lines) <= 10, "%d log lines in %.1f s while out of fds: %r" % (
            len(new_lines), window, new_lines[:3])
        assert mctest.proc_alive(worker) and srv.running()

        for s in clients:
            s.close()
        # Accepting resumes once descriptors are free again.
        s = mctest.connect(srv.port)
        s.sendall(hello)
        mctest.echo_roundtrip(s, b"served again", timeout=5)
        s.close()
        assert srv.worker_pids() == [worker], "worker was replaced"


if __name__ == "__main__":
    mctest.main()
