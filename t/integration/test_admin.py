#!/usr/bin/python3
"""The admin API process (SPEC sections 8, 12): the unix socket's mode and
owner, mTLS over TCP, privileges, an independent gRPC client (stubs built
from proto/ at test time) including grpc.health.v1, request limits, and
mc-proxy-admin's contract with its master (forwarding, timeouts, the
master going away), the last driven by a fake master on fd 3.
Run: /usr/bin/python3 t/integration/test_admin.py"""

import grp
import os
import pwd
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402

SERVICE = "mc_proxy.v1.ProxyAdminService"


def unix_channel(path):
    grpc = at.stubs()[0]
    return grpc.insecure_channel("unix:" + path)


def admin_stub(channel):
    return at.stubs()[2].ProxyAdminServiceStub(channel)


def method_index(name):
    return at.stubs()[1].DESCRIPTOR.services_by_name["ProxyAdminService"].methods_by_name[name].index


def expect_rpc_error(code_name, fn, *args, **kw):
    """Calls fn expecting a gRPC error with this status; returns it."""
    grpc = at.stubs()[0]
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        assert e.code().name == code_name, "expected %s, got %s: %s" % (
            code_name, e.code().name, e.details())
        return e
    raise AssertionError("expected %s, the call succeeded" % code_name)


def run(argv):
    return subprocess.run(argv, capture_output=True, timeout=30, text=True,
                          stdin=subprocess.DEVNULL)


def need_root():
    if os.geteuid() != 0:
        mctest.skip("needs root (the server switches to user nobody)")


# ---------------------------------------------------------------- against mc-proxy


@test
def unix_socket_has_configured_mode_and_owner():
    """root:root by default, root:socket_group when one is named; never
    the workers' account (nobody here)."""
    need_root()
    adm = grp.getgrnam("adm")
    for extra, gid in (({}, 0), ({"socket_group": "adm"}, adm.gr_gid)):
        grpc = dict({"addr": "unix:admin.sock", "socket_mode": "0640"}, **extra)
        with at.admin_server(grpc=grpc) as srv:
            at.wait_admin(srv)
            st = os.lstat(srv.sock)
            assert stat.S_ISSOCK(st.st_mode), "not a socket: %o" % st.st_mode
            assert stat.S_IMODE(st.st_mode) == 0o640, "mode %o, want 0640" % stat.S_IMODE(
                st.st_mode)
            assert (st.st_uid, st.st_gid) == (0, gid), \
                "%s: owner %d:%d, want 0:%d" % (extra, st.st_uid, st.st_gid, gid)


@test
def admin_runs_unprivileged_in_every_thread():
    need_root()
    with at.admin_server() as srv:
        pid = at.wait_admin(srv)
        nobody = pwd.getpwnam("nobody")
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        assert len(tids) > 1, "expected gRPC's threads, found %d thread(s)" % len(tids)
        for tid in tids:
            s = at.proc_status(pid, tid)
            assert s["Uid"].split() == [str(nobody.pw_uid)] * 4, "thread %d Uid %s" % (tid, s["Uid"])
            assert s["Gid"].split() == [str(nobody.pw_gid)] * 4, "thread %d Gid %s" % (tid, s["Gid"])
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(s[cap], 16) == 0, "thread %d %s=%s" % (tid, cap, s[cap])
            assert s["NoNewPrivs"] == "1", "thread %d NoNewPrivs=%s" % (tid, s["NoNewPrivs"])


@test
def independent_client_status_routes_and_health():
    grpc, pb, _, hpb, hgrpc = at.stubs()
    with at.admin_server() as srv:
        at.wait_admin(srv)
        with unix_channel(srv.sock) as ch:
            stub = admin_stub(ch)
            st = stub.GetStatus(pb.GetStatusRequest(), timeout=15)
            assert st.version, "empty version"
            assert abs(st.started_at - time.time()) < 120, "started_at %d" % st.started_at
            assert 0 <= st.uptime_seconds < 120, st.uptime_seconds
            assert [(l.addr, l.route_count) for l in st.listeners] == [(srv.listener, 1)], st
            assert sorted(w.pid for w in st.workers) == srv.worker_pids(), st

            routes = stub.ListRoutes(pb.ListRoutesRequest(listener=srv.listener), timeout=15)
            assert [(r.hostname, r.backend, r.mode) for r in routes.routes] == \
                [("a.test", "127.0.0.1:9", "l4")], routes
            e = expect_rpc_error("NOT_FOUND", stub.ListRoutes, pb.ListRoutesRequest(listener=":9"))
            assert e.details() == 'listener ":9" not found', e.details()

            health = hgrpc.HealthStub(ch)
            serving = hpb.HealthCheckResponse.SERVING
            for name in ("", SERVICE):
                r = health.Check(hpb.HealthCheckRequest(service=name), timeout=15)
                assert r.status == serving, "Check(%r) = %r" % (name, r)
            expect_rpc_error("NOT_FOUND", health.Check, hpb.HealthCheckRequest(service="nope"))
            watch = health.Watch(hpb.HealthCheckRequest(), timeout=15)
            expect_rpc_error("UNIMPLEMENTED", lambda: next(watch))
            expect_rpc_error("UNIMPLEMENTED", at.raw_call, ch, "/%s/Shutdown" % SERVICE, b"")


@test
def malformed_and_oversized_requests_change_nothing():
    grpc, pb = at.stubs()[:2]
    with at.admin_server() as srv:
        at.wait_admin(srv)
        with unix_channel(srv.sock) as ch:
            stub = admin_stub(ch)
            path = "/%s/AddRoute" % SERVICE
            e = expect_rpc_error("INVALID_ARGUMENT", at.raw_call, ch, path, b"\x12\xff\x01")
            assert "malformed" in e.details(), e.details()
            big = pb.AddRouteRequest(listener=srv.listener, route=pb.Route(
                hostname="big.test", backend="127.0.0.1:9",
                l7_policies=[pb.L7Policy(type="block_user_agent", value="x" * 1000)] * 300))
            expect_rpc_error("RESOURCE_EXHAUSTED", stub.AddRoute, big, timeout=15)
            routes = stub.ListRoutes(pb.ListRoutesRequest(listener=srv.listener), timeout=15)
            assert [r.hostname for r in routes.routes] == ["a.test"], routes


@test
def empty_mode_is_stored_as_l4():
    grpc, pb = at.stubs()[:2]
    with at.admin_server() as srv:
        at.wait_admin(srv)
        with unix_channel(srv.sock) as ch:
            stub = admin_stub(ch)
            r = stub.AddRoute(pb.AddRouteRequest(listener=srv.listener, route=pb.Route(
                hostname="E.Test.", backend="127.0.0.1:9001", mode="")), timeout=15)
            assert (r.route.hostname, r.route.mode) == ("e.test", "l4"), r
            routes = stub.ListRoutes(pb.ListRoutesRequest(listener=srv.listener), timeout=15)
            got = {x.hostname: x.mode for x in routes.routes}
            assert got == {"a.test": "l4", "e.test": "l4"}, got


@test
def mtls_is_required_over_tcp():
    grpc, pb = at.stubs()[:2]
    with mctest.TempDir() as tmp:
        certs = at.MTLS(tmp.path)
        port = mctest.free_port()
        with at.admin_server(grpc=certs.grpc_section(port)) as srv:
            def serving():
                return at.ctl(*certs.ctl_args(port), "status").rc == 0
            mctest.wait_until(serving, 10, interval=0.1, what="the mTLS admin API")
            out = at.ctl_ok(*certs.ctl_args(port), "routes", "list", srv.listener).out
            assert out == "a.test -> 127.0.0.1:9 l4\n", out

            rogue = at.ctl_fails("UNAVAILABLE", *certs.ctl_args(port, certs.rogue), "status")
            assert "hint:" in rogue.err and "client_ca" in rogue.err, rogue
            # the server's CA as "client CA": the client refuses the server instead
            wrong_ca = certs.ctl_args(port)
            wrong_ca[-1] = certs.client_ca[0]
            at.ctl_fails("UNAVAILABLE", *wrong_ca, "status")

            with open(certs.server_ca[0], "rb") as f:
                ca = f.read()
            with open(certs.client[0], "rb") as f:
                cert = f.read()
            with open(certs.client[1], "rb") as f:
                key = f.read()
            target = "127.0.0.1:%d" % port
            anon = grpc.ssl_channel_credentials(root_certificates=ca)
            with grpc.secure_channel(target, anon) as ch:
                expect_rpc_error("UNAVAILABLE", admin_stub(ch).GetStatus, pb.GetStatusRequest(),
                                 timeout=10)
            good = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                certificate_chain=cert)
            with grpc.secure_channel(target, good) as ch:
                st = admin_stub(ch).GetStatus(pb.GetStatusRequest(), timeout=15)
                assert st.listeners[0].addr == srv.listener, st
            # the audit line names the certificate's subject
            srv.wait_log(lambda r: r.get("msg") == "rpc" and r.get("peer") == "x509:operator",
                         what="an rpc log line with peer x509:operator")

            # -c with a TCP admin address needs the client's own certificate
            r = at.ctl("-c", srv.config_path, "status")
            assert r.rc == 2 and "--cert" in r.err, r
            at.ctl_ok("-c", srv.config_path, "--cert", certs.client[0], "--key",
                      certs.client[1], "--ca", certs.server_ca[0], "status")

            # and so does `mc-proxy status -c FILE` (SPEC section 9)
            status = [mctest.require_binary(), "status", "-c", srv.config_path]
            r = run(status)
            assert r.returncode == 2 and "--cert" in r.stderr, r
            r = run(status + ["--cert", certs.client[0], "--key", certs.client[1],
                              "--ca", certs.server_ca[0]])
            assert r.returncode == 0 and srv.listener in r.stdout, r
            r = run([mctest.require_binary(), "check", "-c", srv.config_path, "--cert",
                     certs.client[0]])
            assert r.returncode == 2, "check takes no --cert: %r" % (r,)


@test
def admin_exits_when_the_master_dies():
    with at.admin_server() as srv:
        pid = at.wait_admin(srv)
        os.kill(srv.pid, signal.SIGKILL)
        mctest.wait_until(lambda: not mctest.proc_alive(pid), 5, what="the admin to exit")


@test
def admin_is_replaced_when_it_dies():
    with at.admin_server() as srv:
        pid = at.wait_admin(srv)
        os.kill(pid, signal.SIGKILL)
        mctest.wait_until(lambda: admin_pids(srv) and admin_pids(srv) != [pid], 10,
                          what="a new admin process")
        at.wait_admin(srv)


def admin_pids(srv):
    return at.admin_pids(srv)


# ---------------------------------------------------------------- against a fake master


def fake_admin(tmp):
    """A FakeMaster whose admin serves tmp/admin.sock; returns (fm, socket path)."""
    fm = at.FakeMaster(tmp.path)
    path = tmp.join("admin.sock")
    fm.send("MSG_ADMIN_SETTINGS", at.settings_payload("unix:" + path))
    mctest.wait_until(lambda: os.path.exists(path) or fm.proc.poll() is not None, 10,
                      what="the admin socket")
    assert fm.proc.poll() is None, "mc-proxy-admin exited: %s" % fm.log_text()
    return fm, path


@test
def forwards_calls_and_relays_the_masters_answer():
    grpc, pb = at.stubs()[:2]
    with mctest.TempDir() as tmp:
        fm, path = fake_admin(tmp)
        with fm, unix_channel(path) as ch:
            stub = admin_stub(ch)
            req = pb.ListRoutesRequest(listener=":443")
            fut = stub.ListRoutes.future(req, timeout=15)
            rid, method, body = fm.recv_request()
            assert method == method_index("ListRoutes"), method
            assert pb.ListRoutesRequest.FromString(body) == req, body
            canned = pb.ListRoutesResponse(routes=[pb.Route(hostname="x.test", mode="l4")])
            fm.reply(rid, 0, body=canned.SerializeToString())
            assert fut.result() == canned, fut.result()

            fut = stub.RemoveRoute.future(pb.RemoveRouteRequest(listener=":1"), timeout=15)
            rid2, method, _ = fm.recv_request()
            assert rid2 != rid and method == method_index("RemoveRoute"), (rid, rid2, method)
            fm.reply(rid2, 5, message=b'listener ":1" not found')
            e = expect_rpc_error("NOT_FOUND", fut.result)
            assert e.details() == 'listener ":1" not found', e.details()

            # a malformed request is refused here and never reaches the master
            expect_rpc_error("INVALID_ARGUMENT", at.raw_call, ch, "/%s/RemoveRoute" % SERVICE,
                             b"\x0a\x05ab")
            fm.sock.settimeout(0.5)
            try:
                data = fm.sock.recv(1)
            except OSError:
                data = None
            assert data is None, "the master was sent %r" % data
            fm.proc.send_signal(signal.SIGTERM)
            assert fm.wait_exit() == 0, fm.log_text()


@test
def silent_master_means_unavailable_not_a_hang():
    grpc, pb = at.stubs()[:2]
    with mctest.TempDir() as tmp:
        fm, path = fake_admin(tmp)
        with fm, unix_channel(path) as ch:
            stub = admin_stub(ch)
            start = time.monotonic()
            fut = stub.GetStatus.future(pb.GetStatusRequest(), timeout=30)
            old_id, _, _ = fm.recv_request()
            e = expect_rpc_error("UNAVAILABLE", fut.result)
            took = time.monotonic() - start
            assert 8 < took < 15, "UNAVAILABLE after %.1f s, want about 10 s" % took
            assert "in time" in e.details(), e.details()
            # the late answer is dropped; the next call gets its own
            fm.reply(old_id, 0, body=pb.GetStatusResponse(version="stale").SerializeToString())
            fut = stub.GetStatus.future(pb.GetStatusRequest(), timeout=15)
            rid, _, _ = fm.recv_request()
            fm.reply(rid, 0, body=pb.GetStatusResponse(version="fresh").SerializeToString())
            assert fut.result().version == "fresh", fut.result()


@test
def master_gone_mid_call_means_unavailable_and_exit():
    grpc, pb = at.stubs()[:2]
    with mctest.TempDir() as tmp:
        fm, path = fake_admin(tmp)
        with fm, unix_channel(path) as ch:
            fut = admin_stub(ch).GetStatus.future(pb.GetStatusRequest(), timeout=15)
            fm.recv_request()
            start = time.monotonic()
            fm.sock.shutdown(2)
            expect_rpc_error("UNAVAILABLE", fut.result)
            # at the channel's EOF, not at the end of the 10 s a call waits
            # for the master (MSG_ADMIN_TIMEOUT_MS): margin for a busy machine
            took = time.monotonic() - start
            assert took < 8, "UNAVAILABLE only after %.1f s" % took
            assert fm.wait_exit(15) == 0, fm.log_text()


@test
def bad_settings_are_fatal():
    with mctest.TempDir() as tmp:
        cases = [
            ("wrong type", "MSG_ADMIN_RESP", at.ADMIN_RESP.pack(1, 0, 0)),
            ("size mismatch", "MSG_ADMIN_SETTINGS", at.settings_payload("unix:/x")[:-1]),
            ("NUL in addr", "MSG_ADMIN_SETTINGS", at.settings_payload(b"unix:/a\0b")),
            ("TCP without TLS", "MSG_ADMIN_SETTINGS", at.settings_payload("127.0.0.1:1")),
            ("unreadable TLS files", "MSG_ADMIN_SETTINGS",
             at.settings_payload("127.0.0.1:1", "/nonexistent", "/nonexistent", "/nonexistent")),
        ]
        for name, mtype, payload in cases:
            with at.FakeMaster(tmp.path) as fm:
                fm.send(mtype, payload)
                rc = fm.wait_exit()
                assert rc == 2, "%s: exit %s, want 2; log: %s" % (name, rc, fm.log_text())
        with at.FakeMaster(tmp.path) as fm:
            fm.sock.shutdown(2)
            assert fm.wait_exit() == 2, "no settings: %s" % fm.log_text()


if __name__ == "__main__":
    mctest.main()
