#!/usr/bin/python3
"""One validator (SPEC section 12): the same routes, firewall rules, L7
policies and listener settings, good and bad, go through the config
loader (`mc-proxy check`) and through the admin API over real gRPC
(AddRoute, AddFirewallRule, AddL7Policy by mcproxyctl;
SetListenerMaxConnections by grpcio, since mcproxyctl refuses a negative
number itself), and each gets the same verdict from both, a refusal with
the same message.
Run: /usr/bin/python3 t/integration/test_validate.py"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import admintest as at  # noqa: E402
import mctest  # noqa: E402
from mctest import test  # noqa: E402

LONGEST = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 bytes: the longest valid name


def route_cases(certs):
    """(name, route as the config writes it); the API gets the same fields."""
    one, two = certs
    l7 = {"mode": "l7", "tls_cert": one.cert, "tls_key": one.key}
    return [
        ("l4 route", {"hostname": "x.test", "backend": "127.0.0.1:80"}),
        ("wildcard, upper case, trailing dot", {"hostname": "*.X.Test.", "backend": "[::1]:80"}),
        ("longest hostname", {"hostname": LONGEST, "backend": "127.0.0.1:80"}),
        ("hostname too long", {"hostname": LONGEST + "b", "backend": "127.0.0.1:80"}),
        ("hostname leading hyphen", {"hostname": "-bad.test", "backend": "127.0.0.1:80"}),
        ("hostname empty label", {"hostname": "a..test", "backend": "127.0.0.1:80"}),
        ("hostname two wildcards", {"hostname": "*.*.test", "backend": "127.0.0.1:80"}),
        ("hostname IP literal", {"hostname": "192.0.2.7", "backend": "127.0.0.1:80"}),
        ("backend port 0", {"hostname": "x.test", "backend": "127.0.0.1:0"}),
        ("backend port too big", {"hostname": "x.test", "backend": "127.0.0.1:65536"}),
        ("backend DNS name", {"hostname": "x.test", "backend": "localhost:80"}),
        ("backend without port", {"hostname": "x.test", "backend": "127.0.0.1"}),
        ("backend bad bracket", {"hostname": "x.test", "backend": "[::1:80"}),
        ("mode unknown", {"hostname": "x.test", "backend": "127.0.0.1:80", "mode": "l5"}),
        ("mode upper case", {"hostname": "x.test", "backend": "127.0.0.1:80", "mode": "L7"}),
        ("l7 with a matching pair", dict(l7, hostname="x.test", backend="127.0.0.1:80")),
        ("l7 with backend_tls", dict(l7, hostname="x.test", backend="127.0.0.1:80",
                                     backend_tls=True)),
        ("l7 without tls_cert", {"hostname": "x.test", "backend": "127.0.0.1:80", "mode": "l7",
                                 "tls_key": one.key}),
        ("l7 without tls_key", {"hostname": "x.test", "backend": "127.0.0.1:80", "mode": "l7",
                                "tls_cert": one.cert}),
        ("l7 key of another certificate", dict(l7, hostname="x.test", backend="127.0.0.1:80",
                                               tls_key=two.key)),
        ("l7 missing certificate", dict(l7, hostname="x.test", backend="127.0.0.1:80",
                                        tls_cert=one.cert + ".missing")),
        ("l7 key as certificate", dict(l7, hostname="x.test", backend="127.0.0.1:80",
                                       tls_cert=one.key)),
        ("l7 missing key", dict(l7, hostname="x.test", backend="127.0.0.1:80",
                                tls_key=one.key + ".missing")),
        ("l4 with tls files", {"hostname": "x.test", "backend": "127.0.0.1:80",
                               "tls_cert": one.cert, "tls_key": one.key}),
        ("l4 with backend_tls", {"hostname": "x.test", "backend": "127.0.0.1:80",
                                 "backend_tls": True}),
        ("l4 with proxy protocol", {"hostname": "x.test", "backend": "127.0.0.1:80",
                                    "send_proxy_protocol": True}),
    ]


RULE_CASES = [
    ("ip", "192.0.2.1"), ("ip", "2001:DB8::1"), ("ip", "::ffff:192.0.2.1"), ("ip", "1.2.3"),
    ("ip", "10.0.0.0/8"), ("ip", ""), ("cidr", "10.1.0.0/16"), ("cidr", "2001:db8::/32"),
    ("cidr", "10.1.0.1/16"), ("cidr", "10.0.0.0/33"), ("cidr", "2001:db8::1/32"),
    ("cidr", "10.0.0.0"), ("cidr", "x/8"), ("country", "US"), ("country", "de"),
    ("country", "USA"), ("country", "U1"), ("country", ""),
]

POLICY_CASES = [
    ("block_user_agent", "zgrab"), ("block_user_agent", "bad bot/1.0"),
    ("block_user_agent", "a\tb"), ("block_user_agent", ""), ("block_user_agent", "caf\u00e9"),
    ("require_header", "X-Api-Key"), ("require_header", "X Key"), ("require_header", "X:Key"),
    ("require_header", ""), ("block_referer", "x"),
]

MAX_CONNECTIONS_CASES = [0, 7, 4294967295, 4294967296, -1]

FW_LIST = {"ip": "blocked_ips", "cidr": "blocked_cidrs", "country": "blocked_countries"}


def geoip_db(directory):
    """A GeoIP database (country rules need one, in the config and for the API)."""
    return mctest.make_mmdb(os.path.join(directory, "geo.mmdb"), "127.0.0.8/29=DE")


class Verdict:
    """ok, or the message of the first error and the key it was about."""

    def __init__(self, ok, key=None, msg=None):
        self.ok, self.key, self.msg = ok, key, msg

    def __repr__(self):
        return "ok" if self.ok else "refused (%s: %s)" % (self.key, self.msg)


def config_verdict(directory, listener_extra=None, routes=(), firewall=None):
    """`mc-proxy check` on a config with one listener (plus listener_extra),
    these routes, and this firewall section."""
    lst = dict({"addr": "127.0.0.1:%d" % mctest.free_port()}, **(listener_extra or {}))
    lst["routes"] = list(routes)
    extra = {"firewall": firewall} if firewall else {}
    path = os.path.join(directory, "check.yaml")
    with open(path, "w") as f:
        f.write(mctest.to_yaml(mctest.base_config([lst], **extra)))
    r = subprocess.run([mctest.require_binary(), "check", "-c", path], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode == 0:
        return Verdict(True)
    assert r.returncode == 1, r
    # "mc-proxy: FILE:LINE: KEY.PATH: MESSAGE"
    first = r.stderr.splitlines()[0]
    assert first.startswith("mc-proxy: " + path + ":"), r.stderr
    _, key, msg = first[len("mc-proxy: "):].split(": ", 2)
    return Verdict(False, key, msg)


def api_verdict(r):
    """mcproxyctl's result: ok, or INVALID_ARGUMENT "KEY: MESSAGE"."""
    if r.rc == 0:
        return Verdict(True)
    prefix = "mcproxyctl: INVALID_ARGUMENT: "
    first = r.err.splitlines()[0] if r.err else ""
    assert r.rc == 1 and first.startswith(prefix), "not an INVALID_ARGUMENT: %r" % r
    key, _, msg = first[len(prefix):].partition(": ")
    return Verdict(False, key, msg)


def same(what, cfg, api, cfg_key_ends=None):
    """Both verdicts agree; a refusal has the same message, and the
    config's key path ends with the API's key (or cfg_key_ends)."""
    assert cfg.ok == api.ok, "%s: config %r, API %r" % (what, cfg, api)
    if cfg.ok:
        return
    assert cfg.msg == api.msg, "%s: config says %r, API says %r" % (what, cfg.msg, api.msg)
    want = cfg_key_ends or api.key
    assert cfg.key == want or cfg.key.endswith("." + want), \
        "%s: config key %s, API key %s" % (what, cfg.key, api.key)


def route_opts(rt):
    """mcproxyctl's options for rt's optional fields (before "--": a
    hostname may start with "-")."""
    opts = []
    for opt, key in (("--mode", "mode"), ("--tls-cert", "tls_cert"), ("--tls-key", "tls_key")):
        if key in rt:
            opts += [opt, rt[key]]
    if rt.get("backend_tls"):
        opts.append("--backend-tls")
    if rt.get("send_proxy_protocol"):
        opts.append("--send-proxy-protocol")
    return opts


@test
def routes_rules_policies_and_settings_get_one_verdict():
    with mctest.TempDir() as tmp:
        certs = (mctest.gen_ca_and_cert("p.test", directory=tmp.path, name="one"),
                 mctest.gen_ca_and_cert("p.test", directory=tmp.path, name="two"))
        p_route = {"hostname": "p.test", "backend": "127.0.0.1:9", "mode": "l7",
                   "tls_cert": certs[0].cert, "tls_key": certs[0].key}
        addr = "127.0.0.1:%d" % mctest.free_port()
        listeners = [mctest.listener(addr, [p_route])]
        geoip = geoip_db(tmp.path)
        with at.admin_server(listeners=listeners, firewall={"geoip_db": geoip}) as srv:
            at.wait_admin(srv)
            api = ["--socket", srv.sock]
            verdicts = {"ok": 0, "refused": 0}

            def count(v):
                verdicts["ok" if v.ok else "refused"] += 1

            for name, rt in route_cases(certs):
                cfg = config_verdict(tmp.path, routes=[rt])
                res = api_verdict(at.ctl(*api, *route_opts(rt), "--", "routes", "add",
                                         srv.listener, rt["hostname"], rt["backend"]))
                same("route " + name, cfg, res)
                count(cfg)
                if res.ok:
                    at.ctl_ok(*api, "routes", "remove", srv.listener, rt["hostname"])

            for typ, value in RULE_CASES:
                cfg = config_verdict(tmp.path, firewall={FW_LIST[typ]: [value], "geoip_db": geoip})
                res = api_verdict(at.ctl(*api, "--", "firewall", "add", typ, value))
                same("%s rule %r" % (typ, value), cfg, res,
                     cfg_key_ends="%s[0]" % FW_LIST[typ])
                count(cfg)
                if res.ok:
                    at.ctl_ok(*api, "--", "firewall", "remove", typ, value)

            for typ, value in POLICY_CASES:
                rt = dict(p_route, l7_policies=[{"type": typ, "value": value}])
                cfg = config_verdict(tmp.path, routes=[rt])
                res = api_verdict(at.ctl(*api, "--", "policies", "add", srv.listener, "p.test",
                                         typ, value))
                # the config's key is l7_policies[0].type/value, the request's policy.type/value
                same("policy %s %r" % (typ, value), cfg, res)
                count(cfg)
                if res.ok:
                    at.ctl_ok(*api, "--", "policies", "remove", srv.listener, "p.test", typ,
                              value)

            grpc, pb, stubs_grpc = at.stubs()[:3]
            with grpc.insecure_channel("unix:" + srv.sock) as ch:
                stub = stubs_grpc.ProxyAdminServiceStub(ch)
                for n in MAX_CONNECTIONS_CASES:
                    cfg = config_verdict(tmp.path, listener_extra={"max_connections": n})
                    try:
                        stub.SetListenerMaxConnections(pb.SetListenerMaxConnectionsRequest(
                            listener=srv.listener, max_connections=n), timeout=15)
                        res = Verdict(True)
                    except grpc.RpcError as e:
                        assert e.code().name == "INVALID_ARGUMENT", (n, e.code(), e.details())
                        key, _, msg = e.details().partition(": ")
                        res = Verdict(False, key, msg)
                    same("max_connections %d" % n, cfg, res)
                    count(cfg)
            # the table holds both kinds
            assert verdicts["ok"] >= 10 and verdicts["refused"] >= 20, verdicts


if __name__ == "__main__":
    mctest.main()
