#!/usr/bin/python3
"""mc-proxy benchmark: direct / HAProxy / nginx / mc-proxy in interleaved rounds.

  bench/bench.py [--smoke] [--rounds N] [--peers direct,haproxy,nginx,mc-proxy]
                 [--mc-proxy build-release/mc-proxy] [--out DIR] [--no-big]
                 [--no-fw] [--fw-rules N] [--no-l7] [--only STEPS]

Loopback only; every process it starts is stopped by PID. Methodology and
the meaning of each column: bench/README.md. A full run writes
bench/RESULTS.md; --smoke (a quick check of the harness itself) prints
its tables only.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import peers, proc, scenarios, summarize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Load-step lengths and sizes. Durations in seconds (wrk takes whole seconds).
FULL = {"rounds": 3, "routes": 100, "big_routes": 10000,
        "ka": 3, "ka_conns": 100, "lat": 2, "cps": 4, "cps_conns": 50,
        "bulk_file_mib": 512, "bulk_reqs": 2,
        "rawcps": 3, "rawcps_conns": 50, "rawcps_procs": 2,
        "rawbulk_mib": 1024, "rawbulk_reps": 2,
        "idle_conns": 5000, "strace": 1, "settle": 0.3, "fw_rules": 100000,
        "strace_phases": ("ka", "cps", "rawcps", "tlsbulk", "rawbulk"),
        "l7_strace_phases": ("l7ka", "l7cps", "h2ka"), "h2": 3, "h2_conns": 4, "h2_streams": 32}
SMOKE = {"rounds": 1, "routes": 100, "big_routes": 1000,
         "ka": 1, "ka_conns": 20, "lat": 0.3, "cps": 1, "cps_conns": 10,
         "bulk_file_mib": 16, "bulk_reqs": 1,
         "rawcps": 0.3, "rawcps_conns": 10, "rawcps_procs": 2,
         "rawbulk_mib": 32, "rawbulk_reps": 1,
         "idle_conns": 200, "strace": 0.3, "settle": 0, "fw_rules": 10000,
         "strace_phases": ("rawcps",), "l7_strace_phases": ("l7cps",),
         "h2": 1, "h2_conns": 4, "h2_streams": 32}


class Results:
    """Append-only JSON lines, one per measurement (or failure)."""

    def __init__(self, path):
        self.path = path
        self.rows = []

    def add(self, **row):
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if "error" in row:
            say(f"  {row.get('peer')} {row.get('scenario')}: ERROR {row['error']}")


def say(msg):
    print(msg, flush=True)


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / (1 << 20)
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (f"Linux {platform.release()} {platform.machine()}, {os.cpu_count()} cpus, {cpu}, "
            f"{mem_gib:.0f} GiB, nofile {nofile[0]}/{nofile[1]}")


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def package_versions():
    pkgs = ["haproxy", "nginx", "libnginx-mod-stream", "wrk", "nghttp2-client", "openssl",
            "libssl3", "strace"]
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version} "] + pkgs,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return out.strip()


def run_peer_round(ctx, res, peer, routes, pass_name, rnd, plan, dur, tags=None):
    """Start peer, run the plan's scenarios, stop it; record everything
    (each row also carries tags)."""
    base = dict({"pass": pass_name, "round": rnd, "peer": peer.name}, **(tags or {}))
    tag = "-".join([pass_name, f"r{rnd}"] + [f"{k}{v}" for k, v in (tags or {}).items()])
    try:
        info = peer.start(routes, tag)
    except Exception as e:  # noqa: BLE001 -- one peer failing must not end the run
        res.add(**base, scenario="start", error=str(e))
        return
    fresh = scenarios.memory(peer)
    if peer.name != "direct":
        res.add(**base, scenario="start", **info, **fresh)
    for name in plan:
        if peer.proc is not None and not peer.proc.alive():
            res.add(**base, scenario=name, error=f"{peer.name} exited ({peer.proc.returncode})")
            break
        if name == "idle" and peer.name == "direct":
            continue
        time.sleep(dur["settle"])
        try:
            if name == "idle":
                r = scenarios.idle(ctx, peer, fresh)
            elif name == "after":
                time.sleep(0.5)
                r = scenarios.memory(peer) if peer.name != "direct" else None
            elif name == "addroute":
                r = scenarios.addroute(ctx, peer, rnd)
            else:
                r = SCENARIOS[name](ctx, peer)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            res.add(**base, scenario=name, error=str(e))
            continue
        if r is not None:
            res.add(**base, scenario=name, **r)
    if peer.name != "direct":
        alive = peer.proc.alive()
        t0 = time.monotonic()
        rc = peer.stop()
        res.add(**base, scenario="stop", was_alive=alive, exit=rc,
                stop_s=time.monotonic() - t0)


SCENARIOS = {"ka": scenarios.keepalive, "lat": scenarios.latency, "cps": scenarios.tls_cps,
             "tlsbulk": scenarios.tls_bulk, "rawcps": scenarios.raw_cps,
             "rawbulk": scenarios.raw_bulk, "fwcheck": scenarios.fw_check,
             "l7ka": scenarios.l7_keepalive, "l7cps": scenarios.l7_cps,
             "h2ka": scenarios.h2_keepalive}
PLAN_SMALL = ("idle", "ka", "lat", "cps", "tlsbulk", "rawcps", "rawbulk", "after")
# each proxy terminates TLS and proxies to HTTP/1.1; h2ka: the clients speak h2
PLAN_L7 = ("l7ka", "l7cps", "h2ka")
PLAN_BIG = ("cps", "rawcps")
PLAN_FW = ("rawcps",)  # after fwcheck, which is not optional: it proves the rules are in force


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds per peer, 1 round")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--peers", default=",".join(peers.DEFAULT_PEERS),
                    help=f"comma list from {','.join(peers.PEERS)}")
    ap.add_argument("--mc-proxy", default=os.path.join(ROOT, "build-release", "mc-proxy"))
    ap.add_argument("--mc-proxy-b", help="a second build, run as peer mc-proxy-b (A/B a change)")
    ap.add_argument("--mcproxyctl", help="default: build-release/mcproxyctl, else"
                    " build/mcproxyctl; 'none' skips the admin API and the AddRoute step")
    ap.add_argument("--port-base", type=int, default=24100)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--strace", help="peers whose syscalls to count (default: every proxy;"
                    " --smoke: mc-proxy); 'none' to skip")
    ap.add_argument("--no-big", action="store_true", help="skip the 10,000-route pass")
    ap.add_argument("--no-fw", action="store_true",
                    help="skip the firewall pass (mc-proxy with and without CIDR rules)")
    ap.add_argument("--fw-rules", type=int,
                    help="CIDR rules in the firewall pass (default 100,000; --smoke: 10,000)")
    ap.add_argument("--no-l7", action="store_true",
                    help="skip the L7 pass (TLS terminated by each proxy, HTTP/1.1 or h2 from"
                    " the clients, HTTP/1.1 to the backend)")
    ap.add_argument("--only", help="comma list of steps to run, from "
                    + ",".join(("start",) + PLAN_SMALL + PLAN_L7 + ("addroute", "strace"))
                    + " (start: start-up and fresh memory only)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()

    only = set(a.only.split(",")) if a.only else None
    steps = set(("start",) + PLAN_SMALL + PLAN_L7 + ("addroute", "strace"))
    if only and not only <= steps:
        ap.error(f"unknown step in --only: {','.join(sorted(only - steps))}")
    plan_small = [s for s in PLAN_SMALL if only is None or s in only]
    plan_big = [s for s in PLAN_BIG if only is None or s in only]
    plan_fw = ["fwcheck"] + [s for s in PLAN_FW if only is None or s in only]
    plan_l7 = [s for s in PLAN_L7 if not a.no_l7 and (only is None or s in only)]
    # a pass runs when it has a selected step; every pass measures start-up
    run_start = only is None or "start" in only
    dur = dict(SMOKE if a.smoke else FULL)
    if a.rounds:
        dur["rounds"] = a.rounds
    if a.fw_rules is not None:
        if a.fw_rules < peers.FW_PATH_RULES:
            ap.error(f"--fw-rules must be at least {peers.FW_PATH_RULES} (the rules on the"
                     " clients' path, which the check that the rules are in force relies on)")
        dur["fw_rules"] = a.fw_rules
    names = [n.strip() for n in a.peers.split(",") if n.strip()]
    for n in names:
        if n not in peers.PEERS:
            ap.error(f"unknown peer {n}")
    if "direct" not in names:
        names.insert(0, "direct")  # the paired ratios need it
    ctl = None if a.mcproxyctl == "none" else a.mcproxyctl
    if a.mcproxyctl is None:
        for c in (os.path.join(ROOT, "build-release", "mcproxyctl"),
                  os.path.join(ROOT, "build", "mcproxyctl")):
            if os.access(c, os.X_OK):
                ctl = c
                break
    if "mc-proxy" in names and not os.access(a.mc_proxy, os.X_OK):
        sys.exit(f"bench: {a.mc_proxy} not found (make bench builds it)")
    if "mc-proxy-b" in names and not (a.mc_proxy_b and os.access(a.mc_proxy_b, os.X_OK)):
        sys.exit("bench: peer mc-proxy-b needs --mc-proxy-b BINARY")
    for tool in ("nginx", "haproxy", "wrk", "h2load", "strace", "unshare", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} missing (bench/deps.sh installs it)")

    proc.install_cleanup()
    ports = {t: a.port_base + i for i, t in enumerate(peers.LIVE + ("http",))}
    peer_ports = {n: a.port_base + 10 + i for i, n in enumerate(peers.PEERS)}
    busy = [p for p in list(ports.values()) + list(peer_ports.values()) if not proc.port_free(p)]
    if busy:
        sys.exit(f"bench: ports in use: {busy} (use --port-base)")

    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    mode = "smoke" if a.smoke else "full"
    res = Results(os.path.join(a.out, f"results-{mode}-{stamp}.jsonl"))
    workdir = tempfile.mkdtemp(prefix="mcbench-")
    os.chmod(workdir, 0o755)  # workers run as nobody
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost\n")
        f.write("".join(f"127.0.0.1 {peers.host(t)}\n" for t in peers.LIVE + (peers.L7_TARGET,)))

    t_start = time.monotonic()
    load_before = load_avg()
    say(f"bench: {mode}, peers {','.join(names)}, {dur['rounds']} round(s), work dir {workdir}")
    say(f"bench: load average {load_before}")
    backends = None
    try:
        big = peers.make_file(os.path.join(workdir, "big.bin"), dur["bulk_file_mib"] << 20)
        backends = peers.Backends(workdir, ports, dur["rawbulk_mib"] << 20)
        backends.start(big)
        ctx = scenarios.Ctx(workdir, backends, dur, hosts)
        plist = [peers.make_peer(n, workdir, peer_ports[n], backends, a.mc_proxy, ctl,
                                 a.mc_proxy_b) for n in names]
        env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "host": machine_info(), "mode": mode, "rounds": dur["rounds"],
               "routes": dur["routes"], "big_routes": dur["big_routes"],
               "durations": {k: v for k, v in dur.items() if not k.endswith("strace_phases")},
               "load_before": load_before, "packages": package_versions(),
               "python": platform.python_version(),
               "versions": {p.name: p.version() for p in plist},
               "backend": peers.nginx_version() + " (TLS 1.3, ECDSA P-256, tickets and"
                          " session cache off)",
               "mcproxyctl": ctl or "absent"}
        for tool, argv in (("wrk", ["wrk", "-v"]), ("h2load", ["h2load", "--version"]),
                           ("openssl", ["openssl", "version"])):
            env["versions"][tool] = peers.sh(argv).splitlines()[0]
        res.add(scenario="env", **env)

        small = peers.route_table(dur["routes"], backends.backend_map())
        for rnd in range(1, dur["rounds"] + 1):
            if not plan_small and not run_start:
                break  # e.g. --only l7ka: this pass has nothing to measure
            for p in plist:
                say(f"[{time.monotonic() - t_start:6.1f}s] {dur['routes']} routes, round {rnd}: {p.name}")
                run_peer_round(ctx, res, p, small, str(dur["routes"]), rnd, plan_small, dur)
        l7peers = [p for p in plist if p.l7_capable]
        if not a.no_l7 and (plan_l7 or run_start):
            for rnd in range(1, dur["rounds"] + 1):
                for p in l7peers:
                    say(f"[{time.monotonic() - t_start:6.1f}s] L7, round {rnd}: {p.name}")
                    p.l7 = True
                    try:
                        run_peer_round(ctx, res, p, (), "l7", rnd, plan_l7, dur)
                    finally:
                        p.l7 = False
        if not a.no_big and (plan_big or run_start):
            bigt = peers.route_table(dur["big_routes"], backends.backend_map())
            for rnd in range(1, dur["rounds"] + 1):
                for p in plist:
                    say(f"[{time.monotonic() - t_start:6.1f}s] {dur['big_routes']} routes, round {rnd}: {p.name}")
                    run_peer_round(ctx, res, p, bigt, str(dur["big_routes"]), rnd, plan_big, dur)
        mc = next((p for p in plist if p.name == "mc-proxy"), None)
        if mc is not None and not a.no_fw and (len(plan_fw) > 1 or run_start):
            run_fw_pass(ctx, res, mc, small, plan_fw, dur, t_start)
        if mc is not None and (only is None or "addroute" in only):
            # its own instances, with the admin API: the data-plane rounds run
            # every proxy without an admin or stats interface
            for rnd in range(1, dur["rounds"] + 1):
                say(f"[{time.monotonic() - t_start:6.1f}s] admin API, round {rnd}: mc-proxy")
                if not mc.ctl:
                    res.add(**{"pass": "admin", "round": rnd, "peer": mc.name,
                               "scenario": "addroute",
                               "skipped": "no mcproxyctl (not built, or --mcproxyctl none)"})
                    continue
                mc.admin = True
                run_peer_round(ctx, res, mc, small, "admin", rnd, ("addroute",), dur)
                mc.admin = False
        wanted = (a.strace.split(",") if a.strace else
                  ["mc-proxy"] if a.smoke else [p.name for p in plist if p.name != "direct"])
        targets = [p for p in plist if p.name in wanted and p.name != "direct"
                   and (only is None or "strace" in only)]
        # with --only naming load steps, strace counts those steps alone
        named = only and only & set(dur["strace_phases"] + dur["l7_strace_phases"])
        l4_phases = [s for s in dur["strace_phases"] if not named or s in only]
        l7_phases = [s for s in dur["l7_strace_phases"]
                     if not a.no_l7 and (not named or s in only)]
        for p in targets:
            if l4_phases:
                say(f"[{time.monotonic() - t_start:6.1f}s] strace: {p.name}")
                run_strace(ctx, res, p, small, l4_phases)
            if l7_phases and p.l7_capable:
                say(f"[{time.monotonic() - t_start:6.1f}s] strace, L7: {p.name}")
                p.l7 = True
                try:
                    run_strace(ctx, res, p, (), l7_phases)
                finally:
                    p.l7 = False
        res.add(scenario="end", load_after=load_avg(), wall_s=time.monotonic() - t_start)
    finally:
        if backends:
            backends.stop()
        proc.stop_all()
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    text = summarize.render(res.rows)
    say(text)
    full = not a.smoke and only is None and set(peers.DEFAULT_PEERS) <= set(names)
    if full:  # RESULTS.md records complete runs only
        summarize.write_results(os.path.join(HERE, "RESULTS.md"), res.rows, text, res.path)
        say(f"bench: wrote {os.path.join(HERE, 'RESULTS.md')}")
    say(f"bench: raw rows in {res.path}")
    errors = [r for r in res.rows if "error" in r]
    say(f"bench: {len(errors)} failed step(s), {time.monotonic() - t_start:.0f} s")
    return 1 if errors else 0


def run_fw_pass(ctx, res, mc, routes, plan, dur, t_start):
    """mc-proxy with no rules and with dur["fw_rules"] CIDR rules, the two
    interleaved in each round (in alternating order, so a drift of the
    machine's speed within a round does not favour either); rows carry
    fw_rules. The other peers have equivalents (haproxy's src ACLs, nginx's
    geo) that the benchmark does not configure."""
    cidrs = peers.firewall_cidrs(dur["fw_rules"])
    for rnd in range(1, dur["rounds"] + 1):
        order = (0, len(cidrs)) if rnd % 2 else (len(cidrs), 0)
        for n in order:
            say(f"[{time.monotonic() - t_start:6.1f}s] firewall, {n} CIDR rules, round {rnd}: {mc.name}")
            mc.fw_cidrs, mc.restart_without_rules = (cidrs if n else ()), True
            try:
                run_peer_round(ctx, res, mc, routes, "fw", rnd, plan, dur, tags={"fw_rules": n})
            finally:
                mc.fw_cidrs, mc.restart_without_rules = (), False


def run_strace(ctx, res, peer, routes, phases):
    base = {"pass": "strace", "round": 1, "peer": peer.name}
    try:
        peer.start(routes, "strace")
    except Exception as e:  # noqa: BLE001
        res.add(**base, scenario="strace", error=str(e))
        return
    try:
        for phase in phases:
            try:
                r = scenarios.strace_phase(ctx, peer, phase)
                res.add(**base, scenario="strace", **r)
            except Exception as e:  # noqa: BLE001
                res.add(**base, scenario="strace", phase=phase, error=str(e))
    finally:
        peer.stop()


if __name__ == "__main__":
    sys.exit(main())
