"""Process control and measurement for the benchmark harness.

Every process the harness starts goes through Proc, which remembers it by
PID (and start time, so a recycled PID is never signalled) and stops it by
PID: never by name. stop_all() runs at exit and on SIGINT/SIGTERM.

CPU time comes from /proc/<pid>/task/*/schedstat (on-CPU nanoseconds of
every thread) summed over a process tree; memory from smaps_rollup.
"""

import atexit
import os
import signal
import socket
import subprocess
import threading
import time

_live = {}  # pid -> Proc, for stop_all()


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def start_time(pid):
    """The kernel's start time of PID (clock ticks since boot), or None."""
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(name)
        if f:
            kids.setdefault(int(f[1]), []).append(int(name))
    return kids


def tree_pids(root):
    """root and all its descendants that exist now."""
    if start_time(root) is None:
        return []
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tids(pids):
    out = []
    for pid in pids:
        try:
            out.extend(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return out


def cpu_ns(pids):
    """On-CPU nanoseconds of every thread of pids (threads that exited are lost)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def comm(pid):
    """The process's name (/proc/PID/comm), None once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def mem_kib(pids):
    """(RSS, PSS) in KiB summed over pids."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def cpu_times():
    """(total, steal) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7]


class Meter:
    """CPU of some process trees, and steal, between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> list of pids (a snapshot)

    def __enter__(self):
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_ns(p) for k, p in self.groups.items()}
        self.s0 = cpu_times()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t0
        self.cpu_s = {k: (cpu_ns(p) - self.c0[k]) / 1e9 for k, p in self.groups.items()}
        s1 = cpu_times()
        dt = s1[0] - self.s0[0]
        self.steal_pct = 100.0 * (s1[1] - self.s0[1]) / dt if dt else 0.0
        return False


class Proc:
    """A process the harness started, in its own session, logged to a file."""

    def __init__(self, name, argv, log, env=None, cwd=None, stdin=None, stdout=None):
        self.name = name
        self.argv = argv
        self.rusage = None
        self.returncode = None
        self._log = open(log, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                  stdout=self._log if stdout is None else stdout,
                                  stderr=self._log, env=env, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid
        self.started = start_time(self.pid)
        _live[self.pid] = self
        # reaped at once by a thread, so returncode tells whether it runs
        self._waiter = threading.Thread(target=self._reap, daemon=True)
        self._waiter.start()

    def _reap(self):
        _, status, ru = os.wait4(self.pid, 0)
        self.rusage = ru
        self.returncode = os.waitstatus_to_exitcode(status)
        self.p.returncode = self.returncode  # keep Popen from waiting again

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        self._waiter.join(timeout)
        if self._waiter.is_alive():
            return None
        _live.pop(self.pid, None)
        if not self._log.closed:
            self._log.close()
        return self.returncode

    def alive(self):
        return self.returncode is None

    def tree(self):
        return tree_pids(self.pid) if self.alive() else []

    def cpu_s(self):
        """User+system CPU of the exited process and its reaped children."""
        return self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else 0.0

    def stop(self, sig=signal.SIGTERM, grace=10.0):
        """Signal the process, wait, SIGKILL it and any leftover descendant."""
        if self.returncode is not None:
            return self.returncode
        family = [(p, start_time(p)) for p in tree_pids(self.pid)]
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        rc = self.wait(grace)
        if rc is None:
            os.kill(self.pid, signal.SIGKILL)
            rc = self.wait(5)
        for pid, st in family:  # children orphaned by a dead parent
            if pid != self.pid and st is not None and start_time(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return rc


def run(name, argv, log, timeout, env=None, cwd=None):
    """Run a client to completion, bounded in time. Returns (rc, stdout, cpu_s, wall).
    On timeout the client is killed and rc is None."""
    t0 = time.monotonic()
    (rc, out, cpu), = run_many([(name, argv, log)], timeout, env=env, cwd=cwd)
    return rc, out, cpu, time.monotonic() - t0


def run_many(specs, timeout, env=None, cwd=None):
    """Run clients [(name, argv, log)] side by side, all bounded by one
    timeout. Returns [(rc, stdout, cpu_s)], rc None for a client killed at
    the timeout. stdout goes to a file next to
    the log, so a big output cannot block a client."""
    started = []
    deadline = time.monotonic() + timeout
    for name, argv, log in specs:
        out = open(log + ".out", "wb")
        started.append((Proc(name, argv, log, env=env, cwd=cwd, stdout=out), out))
    results = []
    for p, out in started:
        rc = p.wait(max(0.0, deadline - time.monotonic()))
        if rc is None:
            p.stop(signal.SIGKILL, grace=5)
        out.close()
        with open(out.name, "r", errors="replace") as f:
            results.append((rc, f.read(), p.cpu_s()))
    return results


def stop_all():
    for p in list(_live.values()):
        try:
            p.stop(signal.SIGKILL, grace=5)
        except OSError:
            pass


def _on_signal(signum, frame):
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup():
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


class Notify:
    """A $NOTIFY_SOCKET for a process that speaks the sd_notify protocol."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, word, timeout, proc=None):
        """Wait for a datagram holding word (e.g. b"READY=1"); False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                return False
            self.sock.settimeout(min(0.1, max(0.001, deadline - time.monotonic())))
            try:
                msg = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append(msg)
            if word in msg.split(b"\n"):
                return True
        return False

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
