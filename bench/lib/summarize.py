"""Tables from the benchmark's JSON lines.

Cells are `median [min-max]` over the interleaved rounds. `x direct` is the
median [min-max] of the per-round paired ratio peer/direct (same round, same
pass). `spread` is (max-min)/median of the primary metric over the rounds.
A round in which any peer's step saw more than STEAL_MAX_PCT hypervisor
steal is left out of that scenario (and said so in the header), as long as
MIN_CLEAN_ROUNDS remain.

  /usr/bin/python3 -m lib.summarize results.jsonl [RESULTS.md]   (from bench/)
reprints the tables, or rewrites RESULTS.md from a run's rows.
"""

import json
import statistics
import sys


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e6):
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def signed(v):
    return fmt(v) if v < 0 else "+" + fmt(v)


def cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(vals))}-{fmt(max(vals))}]"


def spread(vals):
    vals = [v for v in vals if v is not None]
    if len(vals) < 2 or not statistics.median(vals):
        return "-"
    return f"{100 * (max(vals) - min(vals)) / statistics.median(vals):.1f}%"


# A round in which any peer's step lost more than this to the hypervisor is
# left out of that scenario's cells: the host's other guests, not the peer,
# set its numbers. Only while at least MIN_CLEAN_ROUNDS rounds remain.
STEAL_MAX_PCT = 5.0
MIN_CLEAN_ROUNDS = 2


class Data:
    def __init__(self, rows):
        self.rows = rows
        self.env = next((r for r in rows if r.get("scenario") == "env"), {})
        self.peers = []
        for r in rows:
            p = r.get("peer")
            if p and p not in self.peers:
                self.peers.append(p)
        self.dropped = self._stolen_rounds()

    def _stolen_rounds(self):
        """{(pass, scenario): rounds left out for steal}."""
        rounds, stolen = {}, {}
        for r in self.rows:
            key = (r.get("pass"), r.get("scenario"))
            if r.get("round") is None or key[0] in (None, "strace", "admin"):
                continue
            rounds.setdefault(key, set()).add(r["round"])
            if (r.get("steal_pct") or 0) > STEAL_MAX_PCT:
                stolen.setdefault(key, set()).add(r["round"])
        return {k: v for k, v in stolen.items() if len(rounds[k] - v) >= MIN_CLEAN_ROUNDS}

    def get(self, pas, scen, peer=None):
        out = self.dropped.get((pas, scen), ())
        return [r for r in self.rows if r.get("pass") == pas and r.get("scenario") == scen
                and (peer is None or r.get("peer") == peer) and "error" not in r
                and "skipped" not in r and r.get("round") not in out]

    def skipped(self, pas, scen, peer):
        """Why the step was not measured for peer (its first "skipped"
        row), or None."""
        return next((r["skipped"] for r in self.rows if r.get("pass") == pas
                     and r.get("scenario") == scen and r.get("peer") == peer
                     and "skipped" in r), None)

    def vals(self, pas, scen, peer, key):
        return [r.get(key) for r in self.get(pas, scen, peer)]

    def ratios(self, pas, scen, peer, key):
        """Per-round peer/direct of key."""
        direct = {r["round"]: r.get(key) for r in self.get(pas, scen, "direct")}
        out = []
        for r in self.get(pas, scen, peer):
            d = direct.get(r["round"])
            if d and r.get(key) is not None:
                out.append(r[key] / d)
        return out

    def diffs(self, pas, scen, peer, key, scale=1.0):
        direct = {r["round"]: r.get(key) for r in self.get(pas, scen, "direct")}
        return [(r[key] - direct[r["round"]]) * scale for r in self.get(pas, scen, peer)
                if direct.get(r["round"]) is not None and r.get(key) is not None]

    def passes(self):
        """The route-table passes (each with every peer)."""
        out = []
        for r in self.rows:
            p = r.get("pass")
            if p and p not in ("strace", "admin", "fw", "l7") and p not in out:
                out.append(p)
        return out


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _rate_table(d, pas, scen, rate_key, cols):
    """cols: [(header, key, scale)] besides the rate; adds x direct, spread,
    errors. A peer the step skipped gets the reason in its rate cell."""
    rows = []
    for p in d.peers:
        if not d.get(pas, scen, p):
            why = d.skipped(pas, scen, p)
            if why:
                rows.append([p, why] + ["-"] * (len(cols) + 3))
            continue
        row = [p, cell(d.vals(pas, scen, p, rate_key))]
        for _, key, scale in cols:
            row.append(cell([v * scale if v is not None else None
                             for v in d.vals(pas, scen, p, key)]))
        row.append("1" if p == "direct" else cell(d.ratios(pas, scen, p, rate_key)))
        row.append(spread(d.vals(pas, scen, p, rate_key)))
        row.append(fmt(sum(v or 0 for v in d.vals(pas, scen, p, "errors"))))
        rows.append(row)
    return rows


TITLES = {
    "ka": "a. keep-alive requests/s ({ka_conns} conns, 2 wrk threads, 64 B body; saturated)",
    "lat": "a'. unloaded latency (1 keep-alive TLS conn, sequential requests, python client)",
    "cps": "b. new TLS connections/s (full handshake, 1 req/conn, {cps_conns} conns, wrk)",
    "tlsbulk": "c. bulk TLS download through the proxy (1 conn, h2load, {bulk_reqs}x{bulk_file_mib} MiB)",
    "rawcps": "TCP-level connections/s (ClientHello -> fixed reply -> close, no crypto, {rawcps_conns} conns)",
    "rawbulk": "TCP-level bulk (backend sendfile, no crypto, 1 conn, {rawbulk_reps}x{rawbulk_mib} MiB)",
    "l7ka": "L7 keep-alive requests/s (TLS terminated by the proxy, HTTP/1.1 to a plain backend;"
            " {ka_conns} conns, 2 wrk threads, 64 B body; saturated)",
    "l7cps": "L7 new TLS connections/s (full handshake with the proxy, 1 req/conn,"
             " `Connection: close`, {cps_conns} conns, wrk)",
    "h2ka": "L7 h2 requests/s (TLS terminated by the proxy, h2 from the client, HTTP/1.1 to"
            " the plain backend; {h2_conns} conns x {h2_streams} streams, h2load, 64 B body;"
            " saturated)",
}


def _title(d, key):
    try:
        return TITLES[key].format(**d.env.get("durations", {}))
    except (KeyError, IndexError):
        return TITLES[key]


def scenario_tables(d, pas):
    out = []
    cps_cols = [("p50 ms", "p50_ms", 1), ("p99 ms", "p99_ms", 1),
                ("proxy CPU us/conn", "proxy_us", 1), ("all CPU us/conn", "all_us", 1)]
    tail = ["x direct", "spread", "errors"]
    specs = [
        ("ka", "req/s", "req_s", [("p50 ms", "p50_ms", 1), ("p99 ms", "p99_ms", 1),
                                  ("proxy CPU us/req", "proxy_us", 1),
                                  ("all CPU us/req", "all_us", 1)]),
        ("cps", "conn/s", "conn_s", cps_cols),
        ("tlsbulk", "MB/s", "mb_s", [("proxy CPU s/GB", "proxy_s_gb", 1),
                                     ("backend CPU s/GB", "backend_s_gb", 1),
                                     ("client CPU s/GB", "client_s_gb", 1)]),
        ("rawcps", "conn/s", "conn_s", cps_cols),
        ("rawbulk", "MB/s", "mb_s", [("proxy CPU s/GB", "proxy_s_gb", 1),
                                     ("client CPU s/GB", "client_s_gb", 1)]),
    ]
    for scen, rate_h, rate_k, cols in specs:
        rows = _rate_table(d, pas, scen, rate_k, cols)
        if rows:
            out.append(f"#### {_title(d, scen)}\n\n" +
                       table(["peer", rate_h] + [c[0] for c in cols] + tail, rows))
        if scen == "ka":
            lat = latency_table(d, pas)
            if lat:
                out.append(lat)
    return out


def l7_tables(d):
    """The L7 pass: each proxy terminates TLS itself; direct = the TLS backend."""
    pas = "l7"
    out = []
    tail = ["x direct", "spread", "errors"]
    pcts = [("p50 ms", "p50_ms", 1), ("p99 ms", "p99_ms", 1)]
    for scen, rate_h, rate_k, unit, lat in (
            ("l7ka", "req/s", "req_s", "req", pcts), ("l7cps", "conn/s", "conn_s", "conn", pcts),
            ("h2ka", "req/s", "req_s", "req", [("mean ms", "mean_ms", 1)])):  # h2load: no pcts
        cols = lat + [(f"proxy CPU us/{unit}", "proxy_us", 1),
                      (f"backend CPU us/{unit}", "backend_us", 1),
                      (f"all CPU us/{unit}", "all_us", 1)]
        rows = _rate_table(d, pas, scen, rate_k, cols)
        if rows:
            out.append(f"#### {_title(d, scen)}\n\n" +
                       table(["peer", rate_h] + [c[0] for c in cols] + tail, rows))
    t = memory_table(d, pas)
    if t:
        out.append(t)
    if not out:
        return []
    return ["### L7: TLS terminated by each proxy (same ECDSA P-256 certificate; ALPN h2,"
            " http/1.1), plain HTTP/1.1 to an nginx backend\n\n"
            "`direct` = the client against the TLS backend itself (no proxy, no second hop). "
            "HTTP/1.1 clients: wrk; h2 clients: h2load (n/a: the proxy did not select h2). "
            "Backend connections: all three share idle ones between client connections "
            "(nginx `keepalive` upstream pool, HAProxy `http-reuse always`, mc-proxy's "
            "per-worker pool)."] + out


def latency_table(d, pas):
    rows = []
    for p in d.peers:
        if not d.get(pas, "lat", p):
            continue
        added50 = "0" if p == "direct" else cell(d.diffs(pas, "lat", p, "p50_ms", 1000))
        added99 = "0" if p == "direct" else cell(d.diffs(pas, "lat", p, "p99_ms", 1000))
        rows.append([p, cell(d.vals(pas, "lat", p, "req_s")), cell(d.vals(pas, "lat", p, "p50_ms")),
                     cell(d.vals(pas, "lat", p, "p99_ms")), cell(d.vals(pas, "lat", p, "proxy_us")),
                     added50, added99,
                     fmt(sum(v or 0 for v in d.vals(pas, "lat", p, "errors")))])
    if not rows:
        return ""
    return (f"#### {_title(d, 'lat')}\n\n" +
            table(["peer", "req/s", "p50 ms", "p99 ms", "proxy CPU us/req", "p50 added us",
                   "p99 added us", "errors"], rows))


def idle_table(d, pas):
    rows = []
    for p in d.peers:
        if not d.get(pas, "idle", p):
            continue
        v = lambda k: cell(d.vals(pas, "idle", p, k))  # noqa: E731
        rows.append([p, v("established"), v("rss_kib"), v("pss_kib"), v("rss_per_conn"),
                     v("pss_per_conn"), fmt(sum(x or 0 for x in d.vals(pas, "idle", p, "errors")))])
    if not rows:
        return ""
    n = d.env.get("durations", {}).get("idle_conns", "N")
    return (f"#### d. memory with {n} idle relayed connections (whole proxy process tree)\n\n" +
            table(["peer", "established", "RSS held KiB", "PSS held KiB",
                   "RSS KiB/conn vs fresh start", "PSS KiB/conn vs fresh start", "errors"], rows))


def memory_table(d, pas):
    rows = []
    for p in d.peers:
        st = d.get(pas, "start", p)
        if not st:
            continue
        after = d.get(pas, "after", p)
        stop = d.get(pas, "stop", p)
        ready = [r.get("ready_s") for r in st if r.get("ready_s") is not None]
        first = [r.get("first_start_s") for r in st if r.get("first_start_s") is not None]
        rows.append([p, cell([r["procs"] for r in st]), cell([r["startup_s"] for r in st]),
                     cell(ready) if ready else "-", cell(first) if first else "-",
                     cell([r["rss_kib"] for r in st]), cell([r["pss_kib"] for r in st]),
                     cell([r["rss_kib"] for r in after]) if after else "-",
                     cell([r["pss_kib"] for r in after]) if after else "-",
                     " ".join(str(r.get("exit")) for r in stop) or "-",
                     cell([r["stop_s"] for r in stop]) if stop else "-"])
    if not rows:
        return ""
    what = ("with the admin process" if pas == "admin" else "L7 pass, 1 route" if pas == "l7"
            else f"{pas} routes")
    return (f"#### Proxy start-up, memory and stop ({what})\n\n"
            "start-up = from exec until a ClientHello for the last route is relayed; "
            "READY = mc-proxy's READY=1 on $NOTIFY_SOCKET; mc-proxy's start-up and READY "
            "are of a restart (its database exists), first start = the one start that seeds "
            "a fresh database from the config; stop = SIGTERM until exit.\n\n" +
            table(["peer", "processes", "start-up s", "READY s", "first start s",
                   "idle RSS KiB (fresh)",
                   "idle PSS KiB (fresh)", "idle RSS KiB (after load)", "idle PSS KiB (after load)",
                   "exit codes (-N: signal N)", "stop s"], rows))


def addroute_table(d, pas):
    rows = []
    for p in d.peers:
        got = d.get(pas, "addroute", p)
        skipped = d.skipped(pas, "addroute", p)
        if got:
            api = [r for r in got if "api_ms" in r]
            rows.append([p, cell([r.get("admin_wait_ms") for r in got]),
                         cell([r["cli_ms"] for r in got]), cell([r["first_ok_ms"] for r in got]),
                         cell([r["all_ok_ms"] for r in got]),
                         fmt(sum(r["failures_after_return"] for r in got)),
                         cell([r["api_ms"] for r in api]) if api else
                         got[0].get("api_skipped", "-"),
                         fmt(sum(r["api_misses"] for r in api)) if api else "-"])
        elif skipped:
            rows.append([p, f"skipped: {skipped}", "-", "-", "-", "-", "-", "-"])
    if not rows:
        return ""
    return ("#### AddRoute until every worker routes the new name\n\n"
            "ms from starting `mcproxyctl routes add`; \"every worker\" = start of the final "
            "run of 32 consecutive routed probes (SO_REUSEPORT spreads them over the workers). "
            "Admin socket = how long after READY=1 (and a first routed connection) the admin "
            "socket started accepting; the timing starts after that. API = AddRoute through "
            "an already connected gRPC channel (as a controller keeps one): it returns once "
            "every worker applied the route, then 32 probes must all route (misses).\n\n" +
            table(["peer", "admin socket up after READY ms", "CLI returned ms", "first routed ms",
                   "every worker ms", "failed probes after return", "API AddRoute ms",
                   "API misses"], rows))


def size_effect(d, small, big):
    rows = []
    for p in d.peers:
        if p == "direct":
            continue
        for scen in ("cps", "rawcps"):
            r_small = d.ratios(small, scen, p, "conn_s")
            r_big = d.ratios(big, scen, p, "conn_s")
            if not r_small or not r_big:
                continue
            ms, mb = statistics.median(r_small), statistics.median(r_big)
            rows.append([p, scen, fmt(ms), fmt(mb), fmt(mb / ms),
                         cell(d.vals(small, scen, p, "proxy_us")),
                         cell(d.vals(big, scen, p, "proxy_us"))])
    if not rows:
        return ""
    return (f"### Table-size effect ({big} vs {small} routes)\n\n"
            "Compared through the paired ratio to `direct` of each pass.\n\n" +
            table(["peer", "scenario", f"x direct @{small}", f"x direct @{big}", "big/small",
                   f"proxy CPU us/conn @{small}", f"@{big}"], rows))


def fw_paired(d, scen, key, n):
    """{round: (value at 0 rules, value at n rules)} of the firewall pass."""
    by = {}
    for r in d.get("fw", scen, "mc-proxy"):
        if r.get(key) is not None and r.get("fw_rules") in (0, n):
            by.setdefault(r["round"], {})[r["fw_rules"]] = r[key]
    return {rnd: (v[0], v[n]) for rnd, v in by.items() if len(v) == 2}


def fw_rule_count(d):
    return max((r.get("fw_rules", 0) for r in d.get("fw", "start", "mc-proxy")), default=0)


def fw_table(d):
    """mc-proxy at 0 and at n CIDR rules, same rounds: each side's median
    [min-max], the per-round ratio and difference n vs 0."""
    n = fw_rule_count(d)
    if not n:
        return ""
    metrics = [
        ("raw conn/s", "rawcps", "conn_s"),
        ("raw: p50 ms", "rawcps", "p50_ms"),
        ("raw: p99 ms", "rawcps", "p99_ms"),
        ("raw: proxy CPU us/conn", "rawcps", "proxy_us"),
        ("raw: all CPU us/conn", "rawcps", "all_us"),
        ("raw: errors", "rawcps", "errors"),
        ("start-up s (restart)", "start", "startup_s"),
        ("READY s (restart)", "start", "ready_s"),
        ("CPU s until READY, master (restart)", "start", "ready_cpu_master_s"),
        ("CPU s until READY, per worker (restart)", "start", "ready_cpu_worker_s"),
        ("first start s (seeds the database)", "start", "first_start_s"),
        ("restart s, rules in the database only", "start", "db_rules_start_s"),
        ("RSS KiB, whole tree (fresh)", "start", "rss_kib"),
        ("PSS KiB, whole tree (fresh)", "start", "pss_kib"),
        ("RSS KiB per worker (fresh)", "start", "worker_rss_kib"),
        ("PSS KiB per worker (fresh)", "start", "worker_pss_kib"),
    ]
    rows = []
    for label, scen, key in metrics:
        pairs = fw_paired(d, scen, key, n)
        if not pairs:
            continue
        zero, many = [a for a, _ in pairs.values()], [b for _, b in pairs.values()]
        ratios = [b / a for a, b in pairs.values() if a]
        rows.append([label, cell(zero), cell(many), cell(ratios) if ratios else "-",
                     cell([b - a for a, b in pairs.values()])])
    if not rows:
        return ""
    workers = d.vals("fw", "start", "mc-proxy", "workers")
    refused = [r for r in d.get("fw", "fwcheck", "mc-proxy") if r.get("fw_rules") == n]
    check = (f" Rules in force: {sum(r['refused'] for r in refused)} of "
             f"{sum(r['probes'] for r in refused)} probes from a blocked loopback address "
             "were reset, spread over the workers, while the benchmark's client address "
             "routed." if refused else "")
    return (f"### Firewall: {n:,} CIDR rules against none (mc-proxy only)\n\n"
            f"The same mc-proxy ({d.env.get('routes')} routes, "
            f"{fmt(max(workers)) if workers else '?'} workers) without rules and with {n:,} "
            "random CIDR rules in `firewall.blocked_cidrs` (fixed seed), interleaved in each "
            "round; ratio and difference are per round (with rules vs without). The other "
            "peers are not configured with rules." + check + "\n\n" +
            table(["metric", "0 rules", f"{n:,} rules", "ratio", "difference"], rows))


def strace_table(d):
    rows = []
    for r in d.rows:
        if r.get("scenario") != "strace":
            continue
        if "error" in r:
            rows.append([r["peer"], r.get("phase", "?"), "-", "-", "error: " + r["error"][:80]])
            continue
        if "skipped" in r:
            rows.append([r["peer"], r.get("phase", "?"), "-", "-", r["skipped"]])
            continue
        n = r["units"] or 1
        calls = sorted(r["calls"].items(), key=lambda kv: -kv[1][0])
        total = sum(c for _, (c, _) in calls)
        top = ", ".join(f"{k} {c / n:.2f}" + (f" ({e / n:.2f} failed)" if e / n >= 0.01 else "")
                        for k, (c, e) in calls[:9])
        rows.append([r["peer"], r["phase"], r["unit"], fmt(total / n), top])
    if not rows:
        return ""
    return ("### Syscalls per unit (strace -c -f on the proxy tree; counts only, short runs)\n\n" +
            table(["peer", "phase", "unit", "syscalls/unit",
                   "top syscalls per unit (failed: mostly EAGAIN)"], rows))


def errors_list(d):
    errs = [r for r in d.rows if "error" in r]
    if not errs:
        return ""
    lines = [f"- pass {r.get('pass')} round {r.get('round')} {r.get('peer')} "
             f"{r.get('scenario')}{' ' + r['phase'] if r.get('phase') else ''}: "
             + " / ".join(x.strip() for x in r["error"].splitlines() if x.strip())[:300]
             for r in errs]
    return "### Failed steps\n\n" + "\n".join(lines)


def headline(d, pas):
    """One row per scenario, one column per peer."""
    peers = d.peers

    def col(scen, key, ratio=True, scale=1.0, pas=pas):
        out = []
        for p in peers:
            v = [x * scale for x in d.vals(pas, scen, p, key) if x is not None]
            if not v or (p == "direct" and key.startswith("proxy")):
                out.append(d.skipped(pas, scen, p) or "-")
                continue
            s = fmt(statistics.median(v))
            if ratio and p != "direct":
                rs = d.ratios(pas, scen, p, key)
                if rs:
                    s += f" (x d {statistics.median(rs):.2f})"
            out.append(s)
        return out

    def pair(scen, k1, k2, scale=1.0):
        out = []
        for p in peers:
            a = [x for x in d.vals(pas, scen, p, k1) if x is not None]
            b = [x for x in d.vals(pas, scen, p, k2) if x is not None]
            out.append(f"{fmt(statistics.median(a) * scale)} / {fmt(statistics.median(b) * scale)}"
                       if a and b else "-")
        return out

    def added(scen, key):
        out = []
        for p in peers:
            if p == "direct":
                v = [x * 1000 for x in d.vals(pas, scen, p, key) if x is not None]
                out.append(f"{fmt(statistics.median(v))} us (absolute)" if v else "-")
            else:
                v = d.diffs(pas, scen, p, key, 1000)
                out.append(f"{signed(statistics.median(v))} us" if v else "-")
        return out

    rows = [
        ["a keep-alive req/s"] + col("ka", "req_s"),
        ["a: p50 / p99 ms, saturated"] + pair("ka", "p50_ms", "p99_ms"),
        ["a: proxy CPU us per request"] + col("ka", "proxy_us", False),
        ["a': unloaded p50 added"] + added("lat", "p50_ms"),
        ["a': unloaded p99 added"] + added("lat", "p99_ms"),
        ["b new TLS conn/s"] + col("cps", "conn_s"),
        ["b: proxy CPU us per TLS connection"] + col("cps", "proxy_us", False),
        ["c TLS bulk MB/s (1 conn)"] + col("tlsbulk", "mb_s"),
        ["c: proxy CPU s per GB (TLS)"] + col("tlsbulk", "proxy_s_gb", False),
        ["raw TCP bulk MB/s"] + col("rawbulk", "mb_s"),
        ["raw: proxy CPU s per GB"] + col("rawbulk", "proxy_s_gb", False),
        ["raw TCP conn/s"] + col("rawcps", "conn_s"),
        ["raw: proxy CPU us per connection"] + col("rawcps", "proxy_us", False),
        ["L7 keep-alive req/s"] + col("l7ka", "req_s", pas="l7"),
        ["L7: proxy CPU us per request"] + col("l7ka", "proxy_us", False, pas="l7"),
        ["L7 new TLS conn/s (1 req each)"] + col("l7cps", "conn_s", pas="l7"),
        ["L7: proxy CPU us per TLS connection"] + col("l7cps", "proxy_us", False, pas="l7"),
        ["L7 h2 req/s (few conns, many streams)"] + col("h2ka", "req_s", pas="l7"),
        ["L7 h2: proxy CPU us per request"] + col("h2ka", "proxy_us", False, pas="l7"),
        ["d idle RSS / PSS KiB, fresh"] + pair("start", "rss_kib", "pss_kib"),
        ["d: RSS / PSS KiB with idle conns"] + pair("idle", "rss_kib", "pss_kib"),
        ["d: PSS KiB per idle conn (vs fresh)"] + col("idle", "pss_per_conn", False),
    ]
    for big in [p for p in d.passes() if p != pas]:
        rows += [
            [f"{big} routes: start-up s / idle RSS KiB"] + [
                f"{fmt(statistics.median(s))} / {fmt(statistics.median(m))}"
                if (s := d.vals(big, "start", p, "startup_s")) and (m := d.vals(big, "start", p, "rss_kib"))
                else "-" for p in peers],
            [f"{big} routes: first start s (seeds the database)"] + [
                fmt(statistics.median(f))
                if (f := [v for v in d.vals(big, "start", p, "first_start_s") if v is not None])
                else "-" for p in peers],
            [f"{big} routes: TLS conn/s x d (proxy us/conn)"] + _ratio_cpu(d, big, "cps", peers),
            [f"{big} routes: raw conn/s x d (proxy us/conn)"] + _ratio_cpu(d, big, "rawcps", peers),
        ]
    n = fw_rule_count(d)
    if n:
        r = [b / a for a, b in fw_paired(d, "rawcps", "conn_s", n).values() if a]
        c = [b for _, b in fw_paired(d, "rawcps", "proxy_us", n).values()]
        fw = [f"{statistics.median(r):.2f} ({fmt(statistics.median(c))})"
              if p == "mc-proxy" and r and c else "-" for p in peers]
        rows.append([f"{n:,} CIDR rules: raw conn/s x 0 rules (proxy us/conn)"] + fw)
    add = []
    for p in peers:
        v = [x for x in d.vals("admin", "addroute", p, "all_ok_ms") if x is not None]
        a = [x for x in d.vals("admin", "addroute", p, "api_ms") if x is not None]
        add.append(f"{fmt(statistics.median(a))} ms (API); {fmt(statistics.median(v))} ms from"
                   " starting the CLI" if v and a else f"{fmt(statistics.median(v))} ms" if v else "-")
    rows.append(["AddRoute until every worker routes it"] + add)
    rows = [r for r in rows if any(c != "-" for c in r[1:])]
    return table(["scenario"] + peers, rows)


def _ratio_cpu(d, pas, scen, peers):
    out = []
    for p in peers:
        r = d.ratios(pas, scen, p, "conn_s")
        c = [x for x in d.vals(pas, scen, p, "proxy_us") if x is not None]
        if p == "direct" or not r or not c:
            out.append("-")
        else:
            out.append(f"{statistics.median(r):.2f} ({fmt(statistics.median(c))})")
    return out


def render(rows):
    d = Data(rows)
    env = d.env
    parts = []
    if env:
        info = [f"date: {env.get('date')}", f"host: {env.get('host')}",
                f"mode: {env.get('mode')} rounds={env.get('rounds')} routes={env.get('routes')} "
                f"big_routes={env.get('big_routes')}",
                f"load average before: {env.get('load_before')}"]
        end = next((r for r in rows if r.get("scenario") == "end"), None)
        if end:
            info.append(f"load average after: {end.get('load_after')}; wall {end.get('wall_s', 0):.0f} s")
        steal = [r["steal_pct"] for r in rows if r.get("steal_pct") is not None]
        if steal:
            info.append(f"hypervisor steal per step: median {statistics.median(steal):.2f}%, "
                        f"max {max(steal):.2f}%")
        if d.dropped:
            info.append(f"rounds left out (a step with over {STEAL_MAX_PCT:g}% steal): " + ", ".join(
                f"{pas}/{scen} {','.join(map(str, sorted(rs)))}"
                for (pas, scen), rs in sorted(d.dropped.items())))
        info.append("durations: " + " ".join(f"{k}={v}" for k, v in env.get("durations", {}).items()))
        for k, v in env.get("versions", {}).items():
            info.append(f"{k}: {v}")
        info += [f"backend: {env.get('backend')}", f"python: {env.get('python')}",
                 f"mcproxyctl: {env.get('mcproxyctl')}", f"debian packages: {env.get('packages')}"]
        parts.append("```\n" + "\n".join(info) + "\n```")
    passes = d.passes()
    if passes:
        parts.append(f"### Headline ({passes[0]} routes; median of rounds, `x d` = median "
                     "paired ratio to direct)\n\n" + headline(d, passes[0]))
    for pas in passes:
        parts.append(f"### Route table: {pas} hosts (live targets are the LAST entries)")
        parts += scenario_tables(d, pas)
        for t in (idle_table(d, pas), memory_table(d, pas)):
            if t:
                parts.append(t)
    parts += l7_tables(d)
    if len(passes) > 1:
        t = size_effect(d, passes[0], passes[1])
        if t:
            parts.append(t)
    t = fw_table(d)
    if t:
        parts.append(t)
    admin = [t for t in (addroute_table(d, "admin"), memory_table(d, "admin")) if t]
    if admin:
        parts.append(f"### mc-proxy with the admin API ({d.env.get('routes')} routes, "
                     "own instances)")
        parts += admin
    for t in (strace_table(d), errors_list(d)):
        if t:
            parts.append(t)
    return "\n\n".join(parts) + "\n"


def write_results(path, rows, text, raw_path):
    """RESULTS.md: the latest full run (the tables are generated; the notes
    section between the markers is kept from the previous file)."""
    notes = ""
    try:
        with open(path) as f:
            old = f.read()
        a, b = old.find("<!-- notes -->"), old.find("<!-- /notes -->")
        if a >= 0 and b > a:
            notes = old[a:b + len("<!-- /notes -->")]
    except OSError:
        pass
    if not notes:
        notes = "<!-- notes -->\n<!-- /notes -->"
    env = Data(rows).env
    load = env.get("load_before", "?")
    shared = ""
    try:
        if float(load.split()[0]) > 1.0:
            shared = (f"\n**Taken while the machine was shared**: load average {load} at the "
                      "start (other builds and test suites were running), so absolute numbers "
                      "are noisy; the paired ratios and the CPU per unit hold up better.\n")
    except (ValueError, IndexError):
        pass
    with open(path, "w") as f:
        f.write("# Benchmark results (latest full run of `make bench`)\n\n"
                f"Generated by bench/bench.py; raw rows: `{raw_path.split('/bench/')[-1]}` "
                "(not committed). Methodology: bench/README.md.\n" + shared + "\n" +
                notes + "\n\n" + text)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python3 -m lib.summarize RESULTS.jsonl [RESULTS.md]")
    with open(sys.argv[1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if len(sys.argv) == 3:
        write_results(sys.argv[2], rows, render(rows), sys.argv[1])
    else:
        print(render(rows))
