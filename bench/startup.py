#!/usr/bin/python3
"""Start-up time and memory of mc-proxy against the number of routes.

For each route count, every run writes a fresh config (one listener on a
free 127.0.0.1 port, routes h0.test .. h<N-1>.test to 127.0.0.1 ports) and
a fresh database, then starts the server twice:

  first   the database is empty, so the master seeds it from the config;
  second  the same database again: the master loads it and compares it
          with the config.

Each start is timed from just before the process is created until READY=1
arrives on $NOTIFY_SOCKET (a unix datagram socket made here); then the
VmRSS of the master and of every process under it is summed, and the
server is stopped by PID with SIGTERM. `mc-proxy check` on the same file is
timed too. Medians are printed.

    /usr/bin/python3 bench/startup.py                  # 100 and 10000 routes, 5 runs
    /usr/bin/python3 bench/startup.py --routes 10000 --runs 3 --bin build-perf/mc-proxy

Linux only; stdlib only. Run as root, the config gets `user: nobody`.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def write_config(path, db, n_routes, port):
    lines = [
        "database:",
        f"  path: {db}",
        "workers: 2",
        "log: {level: warn}",
    ]
    if os.geteuid() == 0:
        lines.append("user: nobody")
    lines += [
        "listeners:",
        f'  - addr: "127.0.0.1:{port}"',
        "    routes:",
    ]
    for i in range(n_routes):
        lines.append(f"      - {{hostname: h{i}.test, backend: \"127.0.0.1:{10000 + i % 50000}\"}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def children_of(pid):
    """Every process under pid (any depth), from /proc/*/stat."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid):
    """(master, workers and other children) VmRSS in KiB."""
    return rss_kib(pid), sum(rss_kib(c) for c in children_of(pid))


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"mc-proxy {proc.pid} ignored SIGTERM for {STOP_TIMEOUT} s")


def start_once(binary, config, notify_path, log):
    """Seconds to READY=1, seconds of it after STATUS=starting (the master
    has its state and starts the workers), and the RSS at READY=1:
    (seconds, worker seconds, master KiB, children KiB)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen([binary, "server", "-c", config], env=env,
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            t_workers = None
            deadline = t0 + READY_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no READY=1 within {READY_TIMEOUT} s")
                if proc.poll() is not None:
                    raise RuntimeError(f"mc-proxy exited with {proc.returncode} before READY=1")
                sock.settimeout(min(left, 0.2))
                try:
                    msg = sock.recv(4096)
                except socket.timeout:
                    continue
                lines = msg.split(b"\n")
                if any(x.startswith(b"STATUS=starting") for x in lines) and t_workers is None:
                    t_workers = time.monotonic()
                if b"READY=1" in lines:
                    now = time.monotonic()
                    elapsed = now - t0
                    workers = now - (t_workers if t_workers is not None else t0)
                    break
            master, kids = tree_rss_kib(proc.pid)
        finally:
            stop(proc)
    finally:
        sock.close()
        os.unlink(notify_path)
    return elapsed, workers, master, kids


def time_check(binary, config):
    t0 = time.monotonic()
    r = subprocess.run([binary, "check", "-c", config], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"mc-proxy check failed: {r.stderr.decode(errors='replace')}")
    return elapsed


def measure(binary, n_routes, runs, keep_logs):
    rows = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="mcp-startup-")
        os.chmod(tmp, 0o755)
        try:
            config = os.path.join(tmp, "mc-proxy.yaml")
            write_config(config, os.path.join(tmp, "mc-proxy.db"), n_routes, free_port())
            row = {"check": time_check(binary, config)}
            with open(os.path.join(tmp, "server.log"), "ab") as log:
                for which in ("first", "second"):
                    t, tw, master, kids = start_once(binary, config, os.path.join(tmp, "notify"),
                                                     log)
                    row[which] = t
                    row[which + "_workers"] = tw
                    row[which + "_rss_master"] = master
                    row[which + "_rss_children"] = kids
            rows.append(row)
        finally:
            if keep_logs:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build-perf/mc-proxy")
    ap.add_argument("--routes", default="100,10000", help="comma-separated route counts")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the medians as JSON as well")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory and log")
    args = ap.parse_args()

    binary = os.path.abspath(args.bin)
    counts = [int(x) for x in args.routes.split(",")]
    results = {n: measure(binary, n, args.runs, args.keep) for n in counts}

    print(f"mc-proxy start-up, median of {args.runs} runs ({binary})")
    print(f"{'routes':>7} {'check ms':>9} {'1st ms':>8} {'2nd ms':>8} {'workers ms':>11}"
          f" {'1st RSS MiB':>17} {'2nd RSS MiB':>17}")
    for n, m in results.items():
        def rss(which):
            a, b = m[which + "_rss_master"] / 1024, m[which + "_rss_children"] / 1024
            return f"{a + b:5.1f} ({a:.1f}+{b:.1f})"
        print(f"{n:>7} {m['check'] * 1e3:9.1f} {m['first'] * 1e3:8.1f} {m['second'] * 1e3:8.1f}"
              f" {m['second_workers'] * 1e3:11.1f} {rss('first'):>17} {rss('second'):>17}")
    print("workers ms: of the 2nd run, from STATUS=starting (state loaded) to READY=1;"
          " RSS: master + children")
    if len(counts) >= 2:
        lo, hi = results[counts[0]], results[counts[-1]]
        for which in ("first", "second"):
            d = (hi[which + "_rss_master"] + hi[which + "_rss_children"]
                 - lo[which + "_rss_master"] - lo[which + "_rss_children"]) / 1024
            print(f"RSS {counts[-1]} vs {counts[0]} routes, {which} run: {d:+.1f} MiB")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
