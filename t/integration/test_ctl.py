#!/usr/bin/python3
"""mcproxyctl against a running mc-proxy (SPEC sections 8, 9): every
command, human and --json output, the admin API's validation (nothing
changes on a rejected request), error reporting and exit codes.
Run: /usr/bin/python3 t/integration/test_ctl.py"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def api(srv):
    """The arguments that point mcproxyctl at srv."""
    return ["--socket", srv.sock]


def snapshot(srv):
    """Routes of srv.listener and firewall rules, as the API reports them."""
    return (at.ctl_ok(*api(srv), "--json", "routes", "list", srv.listener).json(),
            at.ctl_ok(*api(srv), "--json", "firewall", "list").json())


def started(srv):
    at.wait_admin(srv)
    return srv


@test
def l7_route_round_trips_every_field():
    with mctest.TempDir() as tmp, at.admin_server() as srv:
        started(srv)
        cs = mctest.gen_ca_and_cert("b.test", directory=tmp.path)
        # relative paths are made absolute against mcproxyctl's directory
        add = at.ctl_ok(*api(srv), "routes", "add", srv.listener, "B.Test.", "127.0.0.1:9000",
                        "--mode", "l7", "--tls-cert", os.path.basename(cs.cert), "--tls-key",
                        os.path.basename(cs.key), "--backend-tls", "--send-proxy-protocol",
                        cwd=tmp.path)
        assert add.out == "b.test -> 127.0.0.1:9000 l7 [tls backend-tls proxy-v2]\n", add
        for ptype, value in (("block_user_agent", "zgrab"), ("require_header", "X-Api-Key")):
            r = at.ctl_ok(*api(srv), "policies", "add", srv.listener, "b.test", ptype, value)
            assert r.out == "%s %s\n" % (ptype, value), r

        routes = at.ctl_ok(*api(srv), "--json", "routes", "list", srv.listener).json()["routes"]
        b = [r for r in routes if r["hostname"] == "b.test"]
        assert b == [{
            "hostname": "b.test", "backend": "127.0.0.1:9000", "mode": "l7",
            "tls_cert": cs.cert, "tls_key": cs.key, "backend_tls": True,
            "send_proxy_protocol": True,
            "l7_policies": [{"type": "block_user_agent", "value": "zgrab"},
                            {"type": "require_header", "value": "X-Api-Key"}],
        }], routes
        out = at.ctl_ok(*api(srv), "routes", "list", srv.listener).out
        assert out == ("a.test -> 127.0.0.1:9 l4\n"
                       "b.test -> 127.0.0.1:9000 l7 [tls backend-tls proxy-v2 policies=2]\n"), out

        # the same hostname again replaces the route (upsert), policies included
        r = at.ctl_ok(*api(srv), "routes", "add", srv.listener, "b.test", "127.0.0.1:9001",
                      "--send-proxy-protocol")
        assert r.out == "b.test -> 127.0.0.1:9001 l4 [proxy-v2]\n", r
        out = at.ctl_ok(*api(srv), "routes", "list", srv.listener).out
        assert out == "a.test -> 127.0.0.1:9 l4\nb.test -> 127.0.0.1:9001 l4 [proxy-v2]\n", out

        at.ctl_ok(*api(srv), "routes", "remove", srv.listener, "B.TEST")
        at.ctl_fails("NOT_FOUND", *api(srv), "routes", "remove", srv.listener, "b.test")
        out = at.ctl_ok(*api(srv), "routes", "list", srv.listener).out
        assert out == "a.test -> 127.0.0.1:9 l4\n", out


@test
def l7_needs_a_matching_certificate_and_key():
    with mctest.TempDir() as tmp, at.admin_server() as srv:
        started(srv)
        one = mctest.gen_ca_and_cert("c.test", directory=tmp.path, name="one")
        two = mctest.gen_ca_and_cert("c.test", directory=tmp.path, name="two")
        before = snapshot(srv)
        add = [*api(srv), "routes", "add", srv.listener, "c.test", "127.0.0.1:9000"]
        cases = [
            (["--mode", "l7"], "tls_cert: required when mode is l7"),
            (["--mode", "l7", "--tls-cert", one.cert], "tls_key: required when mode is l7"),
            (["--mode", "l7", "--tls-cert", one.cert, "--tls-key", two.key],
             "tls_key: does not match"),
            (["--mode", "l7", "--tls-cert", tmp.join("missing.pem"), "--tls-key", one.key],
             "tls_cert"),
            (["--mode", "l7", "--tls-cert", one.cert, "--tls-key", tmp.join("missing.key")],
             "tls_key"),
            (["--mode", "l7", "--tls-cert", one.key, "--tls-key", one.key], "tls_cert"),
            (["--mode", "L7"], 'mode: expected one of l4, l7, got "L7"'),
            (["--mode", "l5"], 'mode: expected one of l4, l7, got "l5"'),
            (["--tls-cert", one.cert, "--tls-key", one.key],
             "tls_cert: only allowed when mode is l7"),
            (["--backend-tls"], "backend_tls: only allowed when mode is l7"),
        ]
        for extra, why in cases:
            r = at.ctl_fails("INVALID_ARGUMENT", *add, *extra)
            assert why in r.err, "%s: %r" % (extra, r)
        assert snapshot(srv) == before, "a rejected AddRoute changed something"
        r = at.ctl_ok(*add, "--mode", "l7", "--tls-cert", one.cert, "--tls-key", one.key)
        assert r.out == "c.test -> 127.0.0.1:9000 l7 [tls]\n", r


@test
def bad_inputs_are_rejected_and_change_nothing():
    with at.admin_server() as srv:
        started(srv)
        at.ctl_ok(*api(srv), "firewall", "add", "ip", "192.0.2.1")
        before = snapshot(srv)
        long_name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 bytes: the longest valid
        assert len(long_name) == 253
        L = srv.listener
        cases = [
            ("routes", "add", L, long_name + "b", "127.0.0.1:80"),
            ("routes", "add", L, "-bad.test", "127.0.0.1:80"),
            ("routes", "add", L, "a..test", "127.0.0.1:80"),
            ("routes", "add", L, "*.*.test", "127.0.0.1:80"),
            ("routes", "add", L, "192.0.2.7", "127.0.0.1:80"),
            ("routes", "add", L, "x.test", "127.0.0.1:0"),
            ("routes", "add", L, "x.test", "127.0.0.1:65536"),
            ("routes", "add", L, "x.test", "localhost:80"),
            ("routes", "add", L, "x.test", "127.0.0.1"),
            ("routes", "add", L, "x.test", "[::1:80"),
            ("firewall", "add", "cidr", "10.1.0.1/16"),
            ("firewall", "add", "cidr", "10.0.0.0/33"),
            ("firewall", "add", "cidr", "2001:db8::1/32"),
            ("firewall", "add", "ip", "1.2.3"),
            ("firewall", "add", "ip", "10.0.0.0/8"),
            ("firewall", "add", "country", "USA"),
            ("firewall", "add", "country", "U1"),
            ("firewall", "add", "port", "80"),
            ("policies", "add", L, "a.test", "block_user_agent", "zgrab"),  # an l4 route
        ]
        for args in cases:
            # "--": a hostname may start with "-" and still be an argument
            at.ctl_fails("INVALID_ARGUMENT", *api(srv), "--", *args)
        r = at.ctl_ok(*api(srv), "routes", "add", L, long_name, "127.0.0.1:80")
        assert r.out.startswith(long_name + " -> "), r
        at.ctl_ok(*api(srv), "routes", "remove", L, long_name)
        assert snapshot(srv) == before, "a rejected request changed something"


@test
def firewall_rules_round_trip_in_canonical_form():
    with at.admin_server() as srv:
        started(srv)
        for args, line in ((("ip", "2001:DB8::0:1"), "ip 2001:db8::1"),
                           (("ip", "192.0.2.1"), "ip 192.0.2.1"),
                           (("cidr", "10.1.0.0/16"), "cidr 10.1.0.0/16"),
                           (("cidr", "2001:DB8::/32"), "cidr 2001:db8::/32")):
            r = at.ctl_ok(*api(srv), "firewall", "add", *args)
            assert r.out == line + "\n", r
        again = at.ctl_ok(*api(srv), "--json", "firewall", "add", "ip", "192.0.2.1").json()
        assert again == {"rule": {"type": "ip", "value": "192.0.2.1"}}, again
        rules = at.ctl_ok(*api(srv), "--json", "firewall", "list").json()["rules"]
        got = sorted((r["type"], r["value"]) for r in rules)
        assert got == [("cidr", "10.1.0.0/16"), ("cidr", "2001:db8::/32"),
                       ("ip", "192.0.2.1"), ("ip", "2001:db8::1")], rules
        # removal takes any spelling of the same rule
        r = at.ctl_ok(*api(srv), "--json", "firewall", "remove", "ip", "2001:db8:0::1")
        assert r.json() == {}, r
        at.ctl_fails("NOT_FOUND", *api(srv), "firewall", "remove", "ip", "2001:db8::1")
        out = at.ctl_ok(*api(srv), "firewall", "list").out
        assert sorted(out.splitlines()) == ["cidr 10.1.0.0/16", "cidr 2001:db8::/32",
                                            "ip 192.0.2.1"], out


@test
def country_rules_need_a_geoip_database():
    with at.admin_server() as srv:
        started(srv)
        r = at.ctl_fails("INVALID_ARGUMENT", *api(srv), "firewall", "add", "country", "US")
        assert "geoip_db" in r.err, r
    # the master loads the database at start: a real one (t/lib/mkmmdb.pl)
    with mctest.TempDir() as tmp:
        geoip = tmp.join("geo.mmdb")
        r = subprocess.run(["perl", os.path.join(mctest.REPO_ROOT, "t", "lib", "mkmmdb.pl"),
                            geoip, "127.0.0.8/29=DE"], capture_output=True, timeout=60)
        if r.returncode != 0 and b"MaxMind/DB/Writer" in r.stderr:
            mctest.skip("libmaxmind-db-writer-perl is not installed")
        assert r.returncode == 0, r.stderr.decode()
        with at.admin_server(firewall={"geoip_db": geoip}) as srv:
            started(srv)
            r = at.ctl_ok(*api(srv), "firewall", "add", "country", "us")
            assert r.out == "country US\n", r
            at.ctl_ok(*api(srv), "firewall", "remove", "country", "Us")
            assert at.ctl_ok(*api(srv), "firewall", "list").out == ""


@test
def policies_round_trip():
    with mctest.TempDir() as tmp, at.admin_server() as srv:
        started(srv)
        cs = mctest.gen_ca_and_cert("p.test", directory=tmp.path)
        L = srv.listener
        at.ctl_ok(*api(srv), "routes", "add", L, "p.test", "127.0.0.1:9000", "--mode", "l7",
                  "--tls-cert", cs.cert, "--tls-key", cs.key)
        at.ctl_ok(*api(srv), "policies", "add", L, "p.test", "require_header", "X-Key")
        at.ctl_ok(*api(srv), "policies", "add", L, "P.Test", "block_user_agent", "bad bot/1.0")
        # adding one it has already changes nothing
        at.ctl_ok(*api(srv), "policies", "add", L, "p.test", "require_header", "X-Key")
        out = at.ctl_ok(*api(srv), "policies", "list", L, "p.test").out
        assert out == "require_header X-Key\nblock_user_agent bad bot/1.0\n", out
        listed = at.ctl_ok(*api(srv), "--json", "policies", "list", L, "p.test").json()
        assert listed == {"policies": [{"type": "require_header", "value": "X-Key"},
                                       {"type": "block_user_agent", "value": "bad bot/1.0"}]}

        for args in (("p.test", "block_referer", "x"), ("p.test", "require_header", "X Key"),
                     ("p.test", "require_header", ""), ("p.test", "block_user_agent", "a\tb")):
            at.ctl_fails("INVALID_ARGUMENT", *api(srv), "policies", "add", L, *args)
        at.ctl_fails("NOT_FOUND", *api(srv), "policies", "add", L, "q.test", "require_header", "X")
        at.ctl_fails("NOT_FOUND", *api(srv), "policies", "list", ":1", "p.test")

        r = at.ctl_ok(*api(srv), "--json", "policies", "remove", L, "p.test", "require_header",
                      "X-Key")
        assert r.json() == {}, r
        at.ctl_fails("NOT_FOUND", *api(srv), "policies", "remove", L, "p.test", "require_header",
                     "X-Key")
        out = at.ctl_ok(*api(srv), "routes", "list", L).out
        assert "p.test -> 127.0.0.1:9000 l7 [tls policies=1]\n" in out, out


@test
def listener_status_and_max_connections():
    port = mctest.free_port()
    addr = "127.0.0.1:%d" % port
    listeners = [mctest.listener(addr, [("a.test", "127.0.0.1:9")], proxy_protocol=True,
                                 trusted_proxies=["127.0.0.1/32"], max_connections=7)]
    with at.admin_server(listeners=listeners) as srv:
        started(srv)
        st = at.ctl_ok(*api(srv), "--json", "status").json()
        assert st["listeners"] == [{
            "addr": addr, "route_count": 1, "active_connections": 0, "total_connections": 0,
            "proxy_protocol": True, "max_connections": 7}], st

        r = at.ctl_ok(*api(srv), "listeners", "set-max-connections", addr, "100")
        assert r.out == "%s routes=1 active=0 total=0 max=100 proxy-protocol\n" % addr, r
        r = at.ctl_ok(*api(srv), "--json", "listeners", "set-max-connections", addr, "0")
        assert r.json()["listener"]["max_connections"] == 0, r
        out = at.ctl_ok(*api(srv), "status").out
        assert "  %s routes=1 active=0 total=0 max=unlimited proxy-protocol\n" % addr in out, out

        r = at.ctl_fails("NOT_FOUND", *api(srv), "listeners", "set-max-connections", ":9", "5")
        assert r.err == 'mcproxyctl: NOT_FOUND: listener ":9" not found\n', r
        r = at.ctl(*api(srv), "listeners", "set-max-connections", addr, "-1")
        assert r.rc == 2, r
        r = at.ctl(*api(srv), "listeners", "set-max-connections", addr, "many")
        assert r.rc == 2, r
        r = at.ctl_fails("INVALID_ARGUMENT", *api(srv), "listeners", "set-max-connections", addr,
                         str(2 ** 32))
        assert "max_connections" in r.err, r


@test
def status_human_and_json():
    with at.admin_server() as srv:
        started(srv)
        workers = srv.worker_pids()
        out = at.ctl_ok("-c", srv.config_path, "status").out
        lines = out.splitlines()
        assert re.fullmatch(r"mc-proxy \S+", lines[0]), out
        assert re.fullmatch(r"uptime: (\d+d)?(\d+h)?(\d+m)?\d+s \(since \d{4}-\d\d-\d\d "
                            r"\d\d:\d\d:\d\d UTC\)", lines[1]), out
        assert lines[2] == "connections: 0", out
        assert lines[3] == "  %s routes=1 active=0 total=0 max=unlimited" % srv.listener, out
        assert lines[4] == "workers: 2", out
        pids = sorted(int(re.fullmatch(r"  pid=(\d+) active=0 total=0", l).group(1))
                      for l in lines[5:])
        assert pids == workers, (pids, workers, out)

        st = at.ctl_ok(*api(srv), "--json", "status").json()
        assert set(st) == {"version", "started_at", "uptime_seconds", "total_connections",
                           "listeners", "workers"}, st
        assert lines[0] == "mc-proxy " + st["version"], (lines[0], st)
        assert sorted(w["pid"] for w in st["workers"]) == workers, st
        assert all(set(w) == {"pid", "active_connections", "total_connections"}
                   for w in st["workers"]), st


@test
def api_route_changes_reach_every_worker_before_the_reply():
    with mctest.RawBackend(mctest.hello_greet_handler(b"N")) as backend, \
            at.admin_server() as srv:
        started(srv)
        port = int(srv.listener.rsplit(":", 1)[1])
        workers = srv.worker_pids()
        assert len(workers) == 2, workers
        # no wait after the reply: it means every worker has the route
        at.ctl_ok(*api(srv), "routes", "add", srv.listener, "new.test", backend.addr)
        seen, socks = set(), []
        for _ in range(24):
            s = mctest.connect(port)
            socks.append(s)
            s.sendall(mctest.client_hello_bytes("new.test"))
            assert mctest.recv_exact(s, 2) == b"N\n"
            seen.add(srv.worker_of(port, s.getsockname()[1]))
        for s in socks:
            s.close()
        assert seen == set(workers), "served by %s, workers %s" % (seen, workers)

        at.ctl_ok(*api(srv), "routes", "remove", srv.listener, "new.test")
        for _ in range(8):
            s = mctest.connect(port)
            mctest.send_may_fail(s, mctest.client_hello_bytes("new.test"))
            mctest.assert_closed_without_bytes(s, what="a connection for a removed route")
            s.close()


@test
def errors_and_usage():
    with at.admin_server() as srv:
        started(srv)
        r = at.ctl_fails("NOT_FOUND", *api(srv), "routes", "list", ":9")
        assert r.err == 'mcproxyctl: NOT_FOUND: listener ":9" not found\n' and r.out == "", r
        for args in ([], ["bogus"], ["routes"], ["routes", "list"],
                     ["routes", "list", srv.listener, "extra"],
                     ["--mode", "l7", "routes", "list", srv.listener],
                     ["--backend-tls", "status"], ["--no-such-option", "status"]):
            r = at.ctl(*api(srv), *args)
            assert r.rc == 2 and "usage:" in r.err, (args, r)
    for args in (["status"], ["-c", "x.yaml", "--socket", "/x", "status"],
                 ["--addr", "127.0.0.1:1", "status"],
                 ["--socket", "/x", "--cert", "a", "status"]):
        r = at.ctl(*args)
        assert r.rc == 2, (args, r)
    r = at.ctl("--socket", "/nonexistent/admin.sock", "status")
    assert r.rc == 1 and r.err.startswith("mcproxyctl: UNAVAILABLE: "), r
    with mctest.TempDir() as tmp:
        path = tmp.write("no-grpc.yaml", mctest.to_yaml(mctest.base_config(
            [mctest.listener("127.0.0.1:%d" % mctest.free_port(), [])])))
        r = at.ctl("-c", path, "status")
        assert r.rc == 1 and "no grpc section" in r.err, r


if __name__ == "__main__":
    mctest.main()
