"""The benchmark scenarios. Each runs one bounded load step against one peer
and returns a dict of metrics (the driver adds round, peer and pass).

CPU: the proxy's and the backends' process trees from schedstat (Meter),
the client's from its rusage. "all CPU" = proxy + backend + client.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

from . import peers
from .peers import CLIENTS, PY, host
from .proc import Meter, Proc, mem_kib, run, run_many, tids

T_LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "t", "lib")


class Ctx:
    """What every scenario needs: where to write, how long, which backends."""

    def __init__(self, workdir, backends, dur, hosts_file):
        self.workdir = workdir
        self.backends = backends
        self.dur = dur  # knob -> value, see bench.py DURATIONS
        self.hosts_file = hosts_file
        self.n = 0

    def log(self, name):
        self.n += 1
        return os.path.join(self.workdir, f"{self.n:04d}-{name}.log")


def with_hosts(ctx, argv):
    """argv run in a private mount namespace whose /etc/hosts names the
    benchmark hosts, so wrk and h2load send the SNI we route on."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', ctx.hosts_file] + argv


def measure(ctx, peer):
    return Meter({"proxy": peer.pids(), "backend": ctx.backends.pids()})


def _ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(out):
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rate"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["count"] = int(m.group(1)) if m else 0
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        r[key] = _ms(*m.groups()) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    r["errors"] = errors
    return r


def _wrk(ctx, peer, name, conns, secs, close, target="tls"):
    port = peer.addr(target)[1]
    secs = max(1, int(round(secs)))  # wrk takes whole seconds
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "2s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"https://{host(target)}:{port}/")
    with measure(ctx, peer) as m:
        rc, out, client_cpu, _ = run(name, with_hosts(ctx, argv), ctx.log(f"{name}-{peer.name}"),
                                     timeout=secs + 15)
    r = parse_wrk(out)
    if rc is None:
        raise RuntimeError(f"wrk did not finish within {secs + 15} s (killed)")
    if rc != 0 or r["count"] == 0:
        raise RuntimeError(f"wrk failed (rc={rc}): {out[-300:]}")
    return r, m, client_cpu


def keepalive(ctx, peer):
    """a. keep-alive small requests through the TLS backend, saturated."""
    r, m, ccpu = _wrk(ctx, peer, "ka", ctx.dur["ka_conns"], ctx.dur["ka"], close=False)
    n = r["count"]
    return {"req_s": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "proxy_cpu_s": m.cpu_s["proxy"], "errors": r["errors"], "steal_pct": m.steal_pct}


def latency(ctx, peer):
    """a'. one keep-alive TLS connection, sequential requests (unloaded latency)."""
    h, port = peer.addr("tls")
    argv = [PY, CLIENTS, "latency", "--host", h, "--port", str(port), "--sni", host("tls"),
            "--duration", str(ctx.dur["lat"])]
    log = ctx.log(f"lat-{peer.name}")
    with measure(ctx, peer) as m:
        rc, out, _, _ = run("lat", argv, log, timeout=ctx.dur["lat"] + 15)
    r = _json(rc, out, "latency client", log)
    n = max(1, r["ok"])
    return {"req_s": r["ok"] / r["secs"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6, "errors": r["errors"],
            "steal_pct": m.steal_pct}


def tls_cps(ctx, peer):
    """b. new TLS connections per second: full handshake, one request each."""
    r, m, ccpu = _wrk(ctx, peer, "cps", ctx.dur["cps_conns"], ctx.dur["cps"], close=True)
    n = r["count"]
    return {"conn_s": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "errors": r["errors"], "steal_pct": m.steal_pct}


def l7_keepalive(ctx, peer):
    """L7: keep-alive small requests, TLS terminated by the proxy, HTTP/1.1
    to the plain-HTTP backend (direct: the TLS backend serves them itself)."""
    r, m, ccpu = _wrk(ctx, peer, "l7ka", ctx.dur["ka_conns"], ctx.dur["ka"], close=False,
                      target=peers.L7_TARGET)
    n = r["count"]
    return {"req_s": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "backend_us": m.cpu_s["backend"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "errors": r["errors"], "steal_pct": m.steal_pct}


def l7_cps(ctx, peer):
    """L7: a new TLS connection per request (`Connection: close`), full
    handshake with the proxy; the backend side as each proxy keeps it."""
    r, m, ccpu = _wrk(ctx, peer, "l7cps", ctx.dur["cps_conns"], ctx.dur["cps"], close=True,
                      target=peers.L7_TARGET)
    n = r["count"]
    return {"conn_s": r["rate"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "backend_us": m.cpu_s["backend"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "errors": r["errors"], "steal_pct": m.steal_pct}


def parse_h2load(out):
    """rate, count (requests that succeeded with a 2xx), errors, mean_ms
    and the protocol negotiated, from h2load's summary."""
    r = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    r["rate"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed,"
                  r" \d+ errored, (\d+) timeout", out)
    ok, failed, timeout = (int(x) for x in m.groups()) if m else (0, 0, 0)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    other = sum(int(x) for x in m.groups()[1:]) if m else 0
    r["count"] = ok - other
    r["errors"] = failed + timeout + other
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", out, re.M)
    r["mean_ms"] = _ms(*m.groups()) if m else None
    m = re.search(r"^Application protocol: (\S+)", out, re.M)
    r["proto"] = m.group(1) if m else None
    return r


H2_NA = "n/a (no h2)"  # the row of a proxy that does not select h2


def h2_negotiated(peer):
    """True if the peer's L7 route selects h2 when offered h2 and http/1.1.
    h2load would fall back to HTTP/1.1 where it does not: such a proxy is
    recorded as n/a in the h2 steps, not measured over HTTP/1.1."""
    target = peers.L7_TARGET
    return peers.alpn_selected(peer.addr(target), host(target), ["h2", "http/1.1"]) == "h2"


def _h2load(ctx, peer, name, secs):
    """h2load over h2 to the L7 route for secs, h2_conns connections of
    h2_streams concurrent streams; returns (parsed output, Meter, client CPU s)."""
    port = peer.addr(peers.L7_TARGET)[1]
    secs = max(1, int(round(secs)))  # h2load -D takes whole seconds
    argv = ["h2load", "-t2", f"-c{ctx.dur['h2_conns']}", f"-m{ctx.dur['h2_streams']}",
            f"-D{secs}", f"https://{host(peers.L7_TARGET)}:{port}/"]
    with measure(ctx, peer) as m:
        rc, out, ccpu, _ = run(name, with_hosts(ctx, argv), ctx.log(f"{name}-{peer.name}"),
                               timeout=secs + 15)
    r = parse_h2load(out)
    if rc is None:
        raise RuntimeError(f"h2load did not finish within {secs + 15} s (killed)")
    if r["proto"] != "h2":
        raise RuntimeError(f"h2load negotiated {r['proto']} where the ALPN probe got h2")
    if rc != 0 or r["count"] <= 0:
        raise RuntimeError(f"h2load failed (rc={rc}): {out[-300:]}")
    return r, m, ccpu


def h2_keepalive(ctx, peer):
    """L7 h2: many streams on few connections (h2load), small responses,
    TLS terminated by the proxy, HTTP/1.1 to the plain-HTTP backend
    (direct: the TLS backend serves h2 itself)."""
    if not h2_negotiated(peer):
        return {"skipped": H2_NA}
    r, m, ccpu = _h2load(ctx, peer, "h2ka", ctx.dur["h2"])
    n = r["count"]
    return {"req_s": r["rate"], "mean_ms": r["mean_ms"],
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "backend_us": m.cpu_s["backend"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "errors": r["errors"], "steal_pct": m.steal_pct}


def tls_bulk(ctx, peer):
    """c. bulk TLS download over one connection (h2load, HTTP/1.1)."""
    port = peer.addr("tls")[1]
    n = ctx.dur["bulk_reqs"]
    argv = ["h2load", "--h1", "-c1", f"-n{n}", f"https://{host('tls')}:{port}/big"]
    with measure(ctx, peer) as m:
        rc, out, ccpu, _ = run("h2load", with_hosts(ctx, argv), ctx.log(f"tlsbulk-{peer.name}"),
                               timeout=120)
    t = re.search(r"finished in ([\d.]+)(ms|s)", out)
    b = re.search(r"traffic: \S+ \((\d+)\) total", out)
    ok = re.search(r"(\d+) succeeded", out)
    if rc is None:
        raise RuntimeError("h2load did not finish within 120 s (killed): the transfer stalled")
    if rc != 0 or not t or not b:
        raise RuntimeError(f"h2load failed (rc={rc}): {out[-300:]}")
    secs = float(t.group(1)) / (1000 if t.group(2) == "ms" else 1)
    gb = int(b.group(1)) / 1e9
    return {"mb_s": gb * 1e3 / secs, "proxy_s_gb": m.cpu_s["proxy"] / gb,
            "backend_s_gb": m.cpu_s["backend"] / gb, "client_s_gb": ccpu / gb,
            "errors": n - (int(ok.group(1)) if ok else 0), "steal_pct": m.steal_pct}


def raw_cps(ctx, peer):
    """TCP-level connections/s: ClientHello -> fixed reply -> close, no crypto."""
    h, port = peer.addr("raw")
    nproc = ctx.dur["rawcps_procs"]
    per = ctx.dur["rawcps_conns"] // nproc
    argv = [PY, CLIENTS, "rawcps", "--host", h, "--port", str(port), "--sni", host("raw"),
            "--conns", str(per), "--duration", str(ctx.dur["rawcps"]),
            "--expect", str(len(peers.RAW_REPLY))]
    specs = [(f"rawcps{i}", argv, ctx.log(f"rawcps-{peer.name}")) for i in range(nproc)]
    with measure(ctx, peer) as m:
        done = run_many(specs, timeout=ctx.dur["rawcps"] + 15)
    rs = [_json(rc, out, "rawcps client", spec[2]) for (rc, out, _), spec in zip(done, specs)]
    ok = sum(r["ok"] for r in rs)
    secs = max(r["secs"] for r in rs)
    ccpu = sum(cpu for _, _, cpu in done)
    q = sorted(v for r in rs for v in r["q_ms"])
    n = max(1, ok)
    return {"conn_s": ok / secs, "p50_ms": _pct(q, 50), "p99_ms": _pct(q, 99),
            "proxy_us": m.cpu_s["proxy"] / n * 1e6,
            "all_us": (m.cpu_s["proxy"] + m.cpu_s["backend"] + ccpu) / n * 1e6,
            "errors": sum(r["errors"] for r in rs), "steal_pct": m.steal_pct}


def raw_bulk(ctx, peer):
    """TCP-level bulk: the backend sendfile()s, no crypto, one connection."""
    h, port = peer.addr("bulk")
    argv = [PY, CLIENTS, "rawbulk", "--host", h, "--port", str(port), "--sni", host("bulk"),
            "--expect", str(ctx.backends.bulk_bytes)]
    runs = []
    with measure(ctx, peer) as m:
        for _ in range(ctx.dur["rawbulk_reps"]):
            log = ctx.log(f"rawbulk-{peer.name}")
            rc, out, ccpu, _ = run("rawbulk", argv, log, timeout=120)
            runs.append((_json(rc, out, "rawbulk client", log), ccpu))
    nbytes = sum(r["bytes"] for r, _ in runs)
    secs = sum(r["secs"] for r, _ in runs)
    gb = max(1, nbytes) / 1e9
    return {"mb_s": nbytes / 1e6 / secs, "proxy_s_gb": m.cpu_s["proxy"] / gb,
            "client_s_gb": sum(c for _, c in runs) / gb,
            "errors": sum(r["errors"] for r, _ in runs), "steal_pct": m.steal_pct}


def memory(peer):
    """RSS/PSS of the proxy tree; where the peer names its workers, also
    their number and the mean RSS/PSS of one worker."""
    pids = peer.pids()
    rss, pss = mem_kib(pids)
    r = {"procs": len(pids), "rss_kib": rss, "pss_kib": pss}
    workers = peer.worker_pids()
    if workers:
        wrss, wpss = mem_kib(workers)
        r.update(workers=len(workers), worker_rss_kib=wrss / len(workers),
                 worker_pss_kib=wpss / len(workers))
    return r


def fw_check(ctx, peer):
    """The rule table is in force on every worker: FW_PROBE (in a blocked
    /31) is reset, with no byte sent, while the peer has rules, and routed
    while it has none; the benchmark's own client address routes.
    SO_REUSEPORT spreads the probes' source ports over the workers."""
    addr = peer.addr("raw")
    probes = 32
    if peer.fw_cidrs:
        ok = sum(peers.is_reset(addr, host("raw"), peers.FW_PROBE) for _ in range(probes))
        what = "reset"
    else:
        ok = sum(peers.can_route(addr, host("raw"), source=peers.FW_PROBE)
                 for _ in range(probes))
        what = "routed"
    if ok != probes:
        raise RuntimeError(f"{ok} of {probes} connections from {peers.FW_PROBE} {what}"
                           f" with {len(peer.fw_cidrs)} rules")
    if not peers.can_route(addr, host("raw")):
        raise RuntimeError(f"{peers.CLIENT_IP} does not route with {len(peer.fw_cidrs)} rules")
    return {"probes": probes, "refused": ok if peer.fw_cidrs else 0}


def idle(ctx, peer, fresh):
    """d. RSS/PSS of the proxy tree holding N idle relayed connections."""
    h, port = peer.addr("idle")
    n = ctx.dur["idle_conns"]
    argv = [PY, CLIENTS, "idle", "--host", h, "--port", str(port), "--sni", host("idle"),
            "--conns", str(n), "--timeout", "30"]
    p = Proc("idle", argv, ctx.log(f"idle-{peer.name}"), stdin=subprocess.PIPE,
             stdout=subprocess.PIPE)
    try:
        ready, _, _ = select.select([p.p.stdout], [], [], 90)
        line = p.p.stdout.readline().decode() if ready else ""
        r = _json(0 if line else None, line, "idle client")
        time.sleep(0.5)  # let the workers settle (allocator, lazy buffers)
        rss, pss = mem_kib(peer.pids())
    finally:
        p.p.stdin.close()
        if p.wait(15) is None:
            p.stop(signal.SIGKILL)
    est = r["established"]
    time.sleep(0.5)  # the proxy closes its backend side
    return {"established": est, "errors": r["errors"], "rss_kib": rss, "pss_kib": pss,
            "rss_per_conn": (rss - fresh["rss_kib"]) / max(1, est),
            "pss_per_conn": (pss - fresh["pss_kib"]) / max(1, est)}


def addroute(ctx, peer, rnd):
    """Time from an AddRoute call until the new name routes on every worker.

    The CLI's return is the acknowledgement (SPEC 2: after every worker
    applied it). Connections are probed throughout; "all workers" is taken
    as the start of the final streak of `streak` consecutive successes
    (SO_REUSEPORT spreads the probes' source ports over the workers), and
    any failure after the call returned is counted: there should be none."""
    if peer.name != "mc-proxy" or not peer.ctl:
        return None
    # READY=1 covers the workers, not the admin process: wait for its socket
    t_wait = time.monotonic()
    while not _unix_connectable(peer.socket):
        if time.monotonic() - t_wait > 10:
            raise RuntimeError(f"admin socket {peer.socket} not accepting 10 s after start")
        time.sleep(0.005)
    admin_wait_ms = (time.monotonic() - t_wait) * 1e3
    name = f"new{rnd}.{peers.DOMAIN}"
    addr = peer.addr("raw")
    if peers.can_route(addr, name):
        raise RuntimeError(f"{name} routes before AddRoute")
    argv = [peer.ctl, "--socket", peer.socket, "routes", "add", f"127.0.0.1:{peer.port}", name,
            ctx.backends.backend_map()["raw"]]
    streak_need = 32
    t0 = time.monotonic()
    log = ctx.log("addroute")
    cli = Proc("mcproxyctl", argv, log)
    first_ok = streak_start = returned = None
    streak = late_failures = 0
    while time.monotonic() - t0 < 10:
        if returned is None and not cli.alive():
            returned = time.monotonic() - t0
        ok = peers.can_route(addr, name, timeout=1.0)
        now = time.monotonic() - t0
        if ok:
            first_ok = first_ok if first_ok is not None else now
            streak_start = streak_start if streak else now
            streak += 1
            if streak >= streak_need and returned is not None:
                break
        else:
            streak = 0
            late_failures += returned is not None
    rc = cli.wait(5)
    if rc is None:
        cli.stop(signal.SIGKILL)
    if rc != 0:
        with open(log, errors="replace") as f:
            raise RuntimeError(f"mcproxyctl routes add failed (rc={rc}): {f.read().strip()[-200:]}")
    r = {"admin_wait_ms": admin_wait_ms, "cli_ms": (returned or 0) * 1e3,
         "first_ok_ms": first_ok * 1e3 if first_ok is not None else None,
         "all_ok_ms": streak_start * 1e3 if streak >= streak_need else None,
         "failures_after_return": late_failures}
    r.update(_addroute_api(peer, f"api{rnd}.{peers.DOMAIN}", ctx.backends.backend_map()["raw"],
                           addr, streak_need))
    return r


def _addroute_api(peer, name, backend, addr, probes):
    """AddRoute through an already connected gRPC channel, as a controller
    keeps one: the call returns once every worker has applied the route
    (SPEC 2), so its latency is the time until every worker routes the
    name; then `probes` connections must all route, or it is a failure."""
    sys.path.insert(0, T_LIB)
    try:
        import admintest  # stubs generated from proto/, as the tests use them
        grpc, pb, pb_grpc = admintest.stubs()[:3]
    except Exception as e:  # noqa: BLE001 -- no grpcio: the CLI figures stand alone
        return {"api_skipped": str(e) or type(e).__name__}
    finally:
        sys.path.remove(T_LIB)
    with grpc.insecure_channel(f"unix:{peer.socket}") as ch:
        stub = pb_grpc.ProxyAdminServiceStub(ch)
        stub.ListRoutes(pb.ListRoutesRequest(listener=f"127.0.0.1:{peer.port}"), timeout=10)
        req = pb.AddRouteRequest(listener=f"127.0.0.1:{peer.port}",
                                 route=pb.Route(hostname=name, backend=backend))
        t0 = time.monotonic()
        stub.AddRoute(req, timeout=10)
        api_ms = (time.monotonic() - t0) * 1e3
    misses = sum(not peers.can_route(addr, name, timeout=1.0) for _ in range(probes))
    return {"api_ms": api_ms, "api_misses": misses}


# -- syscalls -------------------------------------------------------------------

def parse_strace_c(path):
    """{syscall: [calls, errors]} from an `strace -c -U calls,errors,name` summary
    (the errors column is blank when there were none)."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) in (2, 3) and all(p.isdigit() for p in parts[:-1]) \
                    and parts[-1] != "total":
                c = calls.setdefault(parts[-1], [0, 0])
                c[0] += int(parts[0])
                c[1] += int(parts[1]) if len(parts) == 3 else 0
    return calls


def strace_phase(ctx, peer, phase):
    """Count the proxy tree's syscalls during one short phase. Returns
    {"unit": ..., "units": n, "calls": {...}}, {"skipped": why} (h2ka where
    the peer has no h2), or raises."""
    if phase == "h2ka" and not h2_negotiated(peer):
        return {"phase": phase, "skipped": H2_NA}
    out = os.path.join(ctx.workdir, f"strace-{peer.name}-{phase}.txt")
    argv = ["strace", "-c", "-f", "-q", "-U", "calls,errors,name", "-o", out]
    for t in tids(peer.pids()):
        argv += ["-p", str(t)]
    st = Proc("strace", argv, ctx.log(f"strace-{peer.name}-{phase}"))
    time.sleep(0.5)  # attaching to every thread
    try:
        if phase == "ka":
            r, _, _ = _wrk(ctx, peer, "ka-strace", 10, ctx.dur["strace"], close=False)
            unit, n = "req", r["count"]
        elif phase == "cps":
            r, _, _ = _wrk(ctx, peer, "cps-strace", 10, ctx.dur["strace"], close=True)
            unit, n = "conn", r["count"]
        elif phase in ("l7ka", "l7cps"):  # the peer runs in L7 mode
            r, _, _ = _wrk(ctx, peer, f"{phase}-strace", 10, ctx.dur["strace"],
                           close=phase == "l7cps", target=peers.L7_TARGET)
            unit, n = "req" if phase == "l7ka" else "conn", r["count"]
        elif phase == "h2ka":  # the peer runs in L7 mode
            r, _, _ = _h2load(ctx, peer, "h2ka-strace", ctx.dur["strace"])
            unit, n = "req", r["count"]
        elif phase == "rawcps":
            h, port = peer.addr("raw")
            rc, o, _, _ = run("rawcps", [PY, CLIENTS, "rawcps", "--host", h, "--port", str(port),
                                         "--sni", host("raw"), "--conns", "10",
                                         "--duration", str(ctx.dur["strace"])],
                              ctx.log("rawcps-strace"), timeout=ctx.dur["strace"] + 20)
            unit, n = "conn", _json(rc, o, "rawcps client")["ok"]
        elif phase == "tlsbulk":
            port = peer.addr("tls")[1]
            argv = ["h2load", "--h1", "-c1", "-n1", f"https://{host('tls')}:{port}/big"]
            rc, o, _, _ = run("h2load", with_hosts(ctx, argv), ctx.log("tlsbulk-strace"),
                              timeout=120)
            b = re.search(r"traffic: \S+ \((\d+)\) total", o)
            if rc != 0 or not b:
                raise RuntimeError(f"h2load failed (rc={rc}): {o[-300:]}")
            unit, n = "MB", int(b.group(1)) / 1e6
        else:  # rawbulk
            h, port = peer.addr("bulk")
            rc, o, _, _ = run("rawbulk", [PY, CLIENTS, "rawbulk", "--host", h, "--port",
                                          str(port), "--sni", host("bulk"), "--timeout", "60"],
                              ctx.log("rawbulk-strace"), timeout=120)
            unit, n = "MB", _json(rc, o, "rawbulk client")["bytes"] / 1e6
    finally:
        st.stop(signal.SIGINT, grace=10)
    return {"phase": phase, "unit": unit, "units": n, "calls": parse_strace_c(out)}


# -- helpers ---------------------------------------------------------------------

def _json(rc, out, what, log=None):
    line = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0 or not line.startswith("{"):
        detail = out[-200:]
        if log and os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read().strip().splitlines()
            detail += " " + (tail[-1] if tail else "")
        raise RuntimeError(f"{what} failed (rc={rc}): {detail.strip()}")
    return json.loads(line)


def _unix_connectable(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _pct(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(round(q / 100 * (len(sorted_vals) - 1))))]
