#!/usr/bin/python3
"""The global firewall as clients see it (SPEC sections 4, 5): blocked
IPs, CIDRs (IPv4 and IPv6), countries (GeoIP) and the per-source rate
limit answer with an RST before any byte, and no backend connection is
made; rules added and removed through mcproxyctl apply on every worker
before the call returns. Loopback is a whole /8: clients bind to
127.0.0.2, 127.0.0.3 ... to be different sources.
Run: /usr/bin/python3 t/integration/test_firewall.py [NAME...]"""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402

MKMMDB = os.path.join(mctest.REPO_ROOT, "t", "lib", "mkmmdb.pl")
HELLO = mctest.client_hello_bytes("a.test")


def attempt(port, source, host="127.0.0.1"):
    """Connects from source, sends a ClientHello and reads what comes back:
    "ok" when the backend's greeting arrives, else "rst", "eof" or
    "timeout" (with no byte received)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect((host, port))
        mctest.send_may_fail(s, HELLO)
        deadline = time.monotonic() + 5
        data = b""
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(64)
            except socket.timeout:
                break
            except ConnectionResetError:
                how = "rst"
                break
            if not chunk:
                how = "eof"
                break
            data += chunk
            if data.startswith(b"hi\n"):
                return "ok"
        else:
            how = "timeout"
        assert not data, "refused connection from %s got bytes %r" % (source, data[:32])
        return locals().get("how", "timeout")
    finally:
        s.close()


def greeter():
    return mctest.RawBackend(mctest.hello_greet_handler(b"hi"))


def firewall_server(backend, fw, workers=2, addr=None, **kw):
    return mctest.proxy_server([("a.test", backend.addr)], addr=addr, firewall=fw,
                               workers=workers, **kw)


def refusals(srv, reason):
    return [r for r in srv.conn_logs() if r.get("result") == reason]


@test
def blocked_ip_is_reset_and_its_neighbour_served():
    with greeter() as be, firewall_server(be, {"blocked_ips": ["127.0.0.2"]}) as srv:
        assert attempt(srv.port, "127.0.0.2") == "rst"
        assert be.accepted == 0, "the backend saw a blocked client"
        assert attempt(srv.port, "127.0.0.3") == "ok"
        srv.wait_log(lambda r: r.get("result") == "firewall_ip" and
                     r.get("client", "").startswith("127.0.0.2:"), what="firewall_ip line")
        be.wait_accepted(1)
        assert be.accepted == 1
        assert "NOT enforced" not in srv.log_text(), srv.log_tail()


@test
def blocked_cidr_v4_resets_every_address_inside():
    with greeter() as be, firewall_server(be, {"blocked_cidrs": ["127.0.0.16/28"]}) as srv:
        for src in ("127.0.0.16", "127.0.0.17", "127.0.0.31"):
            assert attempt(srv.port, src) == "rst", src
        assert be.accepted == 0
        for src in ("127.0.0.15", "127.0.0.32"):
            assert attempt(srv.port, src) == "ok", src
        srv.wait_log(lambda r: r.get("result") == "firewall_cidr", what="firewall_cidr line")
        assert len(refusals(srv, "firewall_cidr")) == 3, srv.log_tail()


@test
def ip_rule_wins_over_a_cidr_around_it():
    fw = {"blocked_ips": ["127.0.0.18"], "blocked_cidrs": ["127.0.0.16/28"]}
    with greeter() as be, firewall_server(be, fw) as srv:
        assert attempt(srv.port, "127.0.0.18") == "rst"
        assert attempt(srv.port, "127.0.0.19") == "rst"
        srv.wait_log(lambda r: r.get("result") == "firewall_cidr", what="firewall_cidr line")
        assert [r["client"].split(":")[0] for r in refusals(srv, "firewall_ip")] == \
            ["127.0.0.18"], srv.log_tail()


@test
def blocked_cidr_v6_on_loopback():
    addr = "[::1]:%d" % mctest.free_port(socket.AF_INET6)
    with greeter() as be, firewall_server(be, {"blocked_cidrs": ["::1/128"]}, addr=addr) as srv:
        assert attempt(srv.port, "::1", host="::1") == "rst"
        assert be.accepted == 0
        srv.wait_log(lambda r: r.get("result") == "firewall_cidr" and
                     r.get("client", "").startswith("[::1]"), what="v6 firewall_cidr line")
    with greeter() as be, firewall_server(be, {"blocked_cidrs": ["::2/128"]}, addr=addr) as srv:
        assert attempt(srv.port, "::1", host="::1") == "ok"


@test
def mapped_ipv4_client_matches_ipv4_rules():
    """A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d."""
    port = mctest.free_port(socket.AF_INET6, dual=True)
    with greeter() as be, firewall_server(be, {"blocked_ips": ["127.0.0.2"]},
                                          addr=":%d" % port) as srv:
        assert attempt(port, "127.0.0.2") == "rst"
        assert attempt(port, "127.0.0.3") == "ok"
        assert be.accepted == 1


def rate(limit, window):
    return {"rate_limit": limit, "rate_window": window}


@test
def rate_limit_admits_exactly_the_limit_per_window():
    window = 1.5
    with greeter() as be, firewall_server(be, rate(3, "1500ms")) as srv:
        t0 = time.monotonic()
        got = [attempt(srv.port, "127.0.0.5") for _ in range(3)]
        assert got == ["ok"] * 3, got
        assert attempt(srv.port, "127.0.0.5") == "rst"
        # another source is not affected
        assert attempt(srv.port, "127.0.0.6") == "ok"
        refused_at = time.monotonic()
        # a new window admits again, and not before the first one ended
        again = None
        deadline = t0 + window + 10
        while time.monotonic() < deadline:
            if attempt(srv.port, "127.0.0.5") == "ok":
                again = time.monotonic()
                break
            time.sleep(0.1)
        assert again is not None, "no new window within %.1f s" % (deadline - t0)
        assert again - t0 >= window - 0.05, "admitted again after %.2f s" % (again - t0)
        assert refused_at - t0 < window, "the check ran past the window; result is moot"
        srv.wait_log(lambda r: r.get("result") == "rate_limit", what="rate_limit line")


@test
def rate_limit_holds_across_two_workers_under_a_burst():
    """Concurrent connections from one source land on both workers: the
    shared table must let exactly rate_limit through."""
    limit, n = 5, 40
    with greeter() as be, firewall_server(be, rate(limit, "60s"), workers=2) as srv:
        srv.wait_workers(2)
        results = []
        lock = threading.Lock()
        start = threading.Barrier(n)

        def one():
            start.wait()
            r = attempt(srv.port, "127.0.0.7")
            with lock:
                results.append(r)
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == n, results
        assert results.count("ok") == limit, sorted(results)
        assert results.count("rst") == n - limit, sorted(results)
        pids = {r.get("pid") for r in srv.conn_logs() if r.get("result") == "rate_limit"}
        mctest.note("refusals came from %d worker(s)" % len(pids))


@test
def rate_limit_groups_an_ipv6_64():
    """An IPv6 source is its /64: ::1 and ::2 would share a bucket; only ::1 is
    on loopback, so this checks the v6 path counts at all."""
    addr = "[::1]:%d" % mctest.free_port(socket.AF_INET6)
    with greeter() as be, firewall_server(be, rate(2, "60s"), addr=addr) as srv:
        got = [attempt(srv.port, "::1", host="::1") for _ in range(3)]
        assert got == ["ok", "ok", "rst"], got


@test
def rate_limit_zero_is_off():
    with greeter() as be, firewall_server(be, rate(0, "60s")) as srv:
        got = [attempt(srv.port, "127.0.0.8") for _ in range(6)]
        assert got == ["ok"] * 6, got


def mmdb(tmp, name, *nets):
    path = tmp.join(name)
    r = subprocess.run(["perl", MKMMDB, path] + list(nets), capture_output=True, timeout=60)
    if r.returncode != 0 and b"MaxMind/DB/Writer" in r.stderr:
        mctest.skip("libmaxmind-db-writer-perl is not installed")
    assert r.returncode == 0, r.stderr.decode()
    return path


@test
def country_rule_resets_clients_the_database_places_there():
    with mctest.TempDir() as tmp, greeter() as be:
        db = mmdb(tmp, "geo.mmdb", "127.0.0.8/29=DE", "127.0.0.16/29=US")
        fw = {"geoip_db": db, "blocked_countries": ["DE"]}
        with firewall_server(be, fw) as srv:
            assert attempt(srv.port, "127.0.0.9") == "rst"
            assert attempt(srv.port, "127.0.0.17") == "ok"
            # not in the database at all: allowed
            assert attempt(srv.port, "127.0.0.40") == "ok"
            srv.wait_log(lambda r: r.get("result") == "firewall_country", what="country line")
            assert be.accepted == 2


@test
def sighup_reopens_geoip_and_keeps_the_old_copy_when_the_new_is_corrupt():
    with mctest.TempDir() as tmp, greeter() as be:
        db = mmdb(tmp, "geo.mmdb", "127.0.0.8/29=DE")
        fw = {"geoip_db": db, "blocked_countries": ["DE"]}
        with firewall_server(be, fw) as srv:
            assert attempt(srv.port, "127.0.0.9") == "rst"
            old = set(srv.worker_pids())
            with open(db, "wb") as f:
                f.write(b"this is not a MaxMind database" * 10)
            srv.send_signal(1)
            srv.wait_log(lambda r: "GeoIP" in r.get("msg", "") and
                         "previous copy" in r.get("msg", ""), timeout=10,
                         what="the corrupt-database error")
            mctest.wait_until(lambda: not (set(srv.worker_pids()) & old), 15,
                              what="the reload's new workers")
            assert attempt(srv.port, "127.0.0.9") == "rst", "old copy no longer blocks"
            assert attempt(srv.port, "127.0.0.17") == "ok"
            # a good new file on the next SIGHUP is used
            mmdb(tmp, "geo.mmdb", "127.0.0.16/29=DE")
            old = set(srv.worker_pids())
            srv.send_signal(1)
            mctest.wait_until(lambda: not (set(srv.worker_pids()) & old), 15,
                              what="the second reload's new workers")
            srv.wait_log(lambda r: r.get("msg", "").startswith("GeoIP database") and
                         "loaded" in r.get("msg", ""), what="load line")
            mctest.wait_until(lambda: attempt(srv.port, "127.0.0.17") == "rst", 10,
                              interval=0.2, what="the new database to block 127.0.0.17")
            assert attempt(srv.port, "127.0.0.9") == "ok"


@test
def countries_without_a_database_are_a_config_error():
    with mctest.TempDir():
        cfg = mctest.base_config([mctest.listener("127.0.0.1:%d" % mctest.free_port(),
                                                  [("a.test", "127.0.0.1:9")])],
                                 firewall={"blocked_countries": ["DE"]})
        srv = mctest.Server(cfg, args=None, wait_ready=False)
        r = subprocess.run([srv.bin, "check", "-c", srv.config_path], capture_output=True,
                           timeout=30)
        srv.close(check=False)
        assert r.returncode != 0 and b"geoip_db" in r.stderr, r


@test
def rules_change_at_runtime_on_every_worker():
    with greeter() as be:
        addr = "127.0.0.1:%d" % mctest.free_port()
        listeners = [mctest.listener(addr, [("a.test", be.addr)])]
        with at.admin_server(listeners=listeners, workers=2) as srv:
            at.wait_admin(srv)
            port = int(addr.rsplit(":", 1)[1])
            api = ["--socket", srv.sock]
            assert attempt(port, "127.0.0.4") == "ok"
            at.ctl_ok(*api, "firewall", "add", "ip", "127.0.0.4")
            # at once, on whichever worker the connection lands (different source ports)
            assert [attempt(port, "127.0.0.4") for _ in range(8)] == ["rst"] * 8
            at.ctl_ok(*api, "firewall", "add", "cidr", "127.0.1.0/24")
            assert attempt(port, "127.0.1.77") == "rst"
            at.ctl_ok(*api, "firewall", "remove", "ip", "127.0.0.4")
            assert [attempt(port, "127.0.0.4") for _ in range(4)] == ["ok"] * 4
            # a route change leaves the rules as they are
            at.ctl_ok(*api, "routes", "add", addr, "b.test", be.addr)
            assert attempt(port, "127.0.1.78") == "rst"
            assert attempt(port, "127.0.0.4") == "ok"


if __name__ == "__main__":
    mctest.main()
