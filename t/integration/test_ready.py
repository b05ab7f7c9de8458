#!/usr/bin/python3
"""
READY=1 means everything is up (SPEC section 10): when it arrives, the
admin API and the metrics listener (when configured) answer at once, as
every worker does, at start-up and after a reload that restarts them. A
child that cannot start does not hold READY=1 back: it goes out with a
STATUS= naming what is not up.

Run: /usr/bin/python3 t/integration/test_ready.py [NAME...]
"""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def config(listen_addr, metrics_port, grpc_addr="unix:admin.sock", **overrides):
    return mctest.base_config(
        [mctest.listener(listen_addr, [("a.test", "127.0.0.1:9")])],
        grpc={"addr": grpc_addr, "socket_mode": "0660"},
        metrics={"addr": "127.0.0.1:%d" % metrics_port}, **overrides)


def ready_server(**overrides):
    """A Server with the admin API and metrics; .listen_addr, .metrics_port."""
    listen_addr, metrics_port = "127.0.0.1:%d" % mctest.free_port(), mctest.free_port()
    srv = mctest.Server(config(listen_addr, metrics_port, **overrides))
    srv.listen_addr, srv.metrics_port = listen_addr, metrics_port
    return srv


def scrape_once(port):
    """One GET /metrics, no retry: the status line and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return status, data


def assert_everything_answers(srv, when):
    """Right after READY=1, once each, no retry."""
    r = at.ctl("--socket", srv.dir.join("admin.sock"), "status")
    assert r.rc == 0, "%s: mcproxyctl status does not answer at once: %r" % (when, r)
    try:
        status, body = scrape_once(srv.metrics_port)
    except OSError as e:
        raise AssertionError("%s: /metrics does not answer at once: %r" % (when, e))
    assert " 200 " in status + " ", "%s: /metrics answered %r" % (when, status)
    assert b"mcproxy_" in body, "%s: /metrics body: %r" % (when, body[:200])


def status_lines(srv, start=0):
    return [l for l in srv.notify.drain()[start:] if l.startswith("STATUS=")]


@test
def ready_waits_for_admin_and_metrics():
    with ready_server() as srv:
        assert_everything_answers(srv, "at start-up")
        last = status_lines(srv)[-1]
        assert "NOT UP" not in last, last


@test
def ready_after_reload_waits_for_the_restarted_admin_and_metrics():
    with ready_server() as srv:
        old_admin = at.admin_pids(srv)
        old_metrics = srv.child_pids(lambda argv: b"__metrics" in argv)
        assert old_admin and old_metrics, (old_admin, old_metrics)
        # a new log level is a new setting of both: the reload restarts them
        cfg = config(srv.listen_addr, srv.metrics_port, log={"level": "info", "format": "json"})
        srv.dir.write("mc-proxy.yaml.new", mctest.to_yaml(cfg))
        os.rename(srv.dir.join("mc-proxy.yaml.new"), srv.config_path)
        start = len(srv.notify.drain())
        srv.send_signal(signal.SIGHUP)

        def reloaded():
            lines = srv.notify.drain()[start:]
            return "RELOADING=1" in lines and "READY=1" in lines[lines.index("RELOADING=1"):]
        mctest.wait_until(reloaded, 30, what="RELOADING=1 then READY=1")
        assert_everything_answers(srv, "after the reload")
        # the ones answering are the restarted ones: the old are gone by READY=1
        for pid in old_admin + old_metrics:
            assert not mctest.proc_alive(pid), "pid %d of before the reload still runs" % pid
        last = status_lines(srv, start)[-1]
        assert "reloaded" in last and "NOT UP" not in last, last


@test
def broken_admin_does_not_hold_ready_back():
    # a socket in a directory that does not exist: the admin process fails to bind
    with ready_server(grpc_addr="unix:no-such-dir/admin.sock") as srv:
        last = status_lines(srv)[-1]
        # "it failed to start" once it exited; "not listening yet" if the
        # machine is so busy that it took longer than the 10 s bound
        assert "admin API NOT UP (" in last, last
        assert "metrics listener NOT UP" not in last, last
        status, _ = scrape_once(srv.metrics_port)
        assert " 200 " in status + " ", status
        srv.wait_log(lambda r: "admin API NOT UP" in r.get("msg", ""),
                     what="the error saying the admin API is not up")


@test
def busy_metrics_port_does_not_hold_ready_back():
    port = mctest.free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        srv = mctest.Server(config("127.0.0.1:%d" % mctest.free_port(), port))
        with srv:
            last = status_lines(srv)[-1]
            assert "metrics listener NOT UP (" in last, last
            assert "admin API NOT UP" not in last, last
            r = at.ctl("--socket", srv.dir.join("admin.sock"), "status")
            assert r.rc == 0, r


if __name__ == "__main__":
    mctest.main()
