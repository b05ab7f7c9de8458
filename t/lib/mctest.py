"""
mctest: a tiny test runner and harness for mc-proxy integration tests.

A test file defines functions decorated with @test (or named test_*) and
ends with

    if __name__ == "__main__":
        mctest.main()

main() runs them in definition order and prints one line per test on
stdout: "ok - NAME", "not ok - NAME: reason" or "skip - NAME: reason".
Tracebacks go to stderr. Exit status 1 if any test failed. Arguments on
the command line select tests whose name contains one of them.

Only Debian's /usr/bin/python3 standard library is used. Everything talks
over loopback, and every wait is bounded by a deadline.
"""

import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(LIB_DIR))

# Per-test wall-clock cap: a test that hangs despite its own deadlines
# is failed, not left to hang the suite.
TEST_TIMEOUT = float(os.environ.get("MCTEST_TIMEOUT", "90"))

# Startup under ASan on a loaded machine is slow.
READY_TIMEOUT = float(os.environ.get("MCTEST_READY_TIMEOUT", "20"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


# ---------------------------------------------------------------- runner


class Skip(Exception):
    """Raise (or call skip()) to skip the running test."""


class TestTimeout(Exception):
    pass


def test(fn):
    """Marks fn as a test; tests run in the order they are defined."""
    fn._mctest = True
    return fn


def skip(reason):
    raise Skip(reason)


def note(msg):
    """A diagnostic line on stderr (stdout holds only the result lines)."""
    sys.stderr.write("# %s\n" % msg)
    sys.stderr.flush()


def _collect(module):
    seen = set()
    tests = []
    for name, obj in list(vars(module).items()):
        if callable(obj) and (getattr(obj, "_mctest", False) or name.startswith("test_")):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            tests.append(obj)
    return tests


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded %.0f s" % TEST_TIMEOUT)


def _one_line(exc):
    """The reason printed after "not ok": the first line of the message
    (details and tracebacks go to stderr)."""
    text = (str(exc) or exc.__class__.__name__).strip().split("\n")[0]
    if not isinstance(exc, (AssertionError, Skip)):
        text = "%s: %s" % (exc.__class__.__name__, text)
    return " ".join(text.split())[:400]


def main():
    module = sys.modules["__main__"]
    tests = _collect(module)
    wanted = sys.argv[1:]
    if wanted:
        tests = [t for t in tests if any(w in t.__name__ for w in wanted)]
    signal.signal(signal.SIGALRM, _on_alarm)
    failed = 0
    for t in tests:
        name = t.__name__
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
        try:
            t()
            status = "ok - %s" % name
        except Skip as e:
            status = "skip - %s: %s" % (name, _one_line(e))
        except BaseException as e:  # noqa: B902 -- a test's failure of any kind is reported
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
            status = "not ok - %s: %s" % (name, _one_line(e))
            sys.stderr.write("# %s failed after %.1f s\n" % (name, time.monotonic() - start))
            for line in traceback.format_exc().splitlines():
                sys.stderr.write("#   %s\n" % line)
            sys.stderr.flush()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _cleanup_all()
        print(status, flush=True)
        if os.environ.get("MCTEST_TIMING"):
            print("#   %.2f s" % (time.monotonic() - start), flush=True)
    sys.exit(1 if failed else 0)


# Things a failed test may have left running: closed after every test.
_live = []


def _track(obj):
    _live.append(obj)
    return obj


def _untrack(obj):
    try:
        _live.remove(obj)
    except ValueError:
        pass


def _cleanup_all():
    while _live:
        obj = _live.pop()
        try:
            obj.close()
        except Exception:  # noqa: B902 -- best effort after a failure
            pass


# ---------------------------------------------------------------- helpers


def mcproxy_bin():
    path = os.environ.get("MCPROXY_BIN") or os.path.join(REPO_ROOT, "build", "mc-proxy")
    return os.path.abspath(path)


def require_binary():
    path = mcproxy_bin()
    if not os.access(path, os.X_OK):
        skip("no mc-proxy binary at %s (set MCPROXY_BIN)" % path)
    return path


def wait_until(pred, timeout, interval=0.02, what=None):
    """Polls pred() until it returns a true value (returned) or timeout
    seconds pass (AssertionError naming what)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what or getattr(pred, "__name__", "condition")))
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def free_port(family=socket.AF_INET, dual=False):
    """A TCP port free right now on loopback (on both families if dual)."""
    if dual:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
    else:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TempDir:
    """A temporary directory removed on close (or at the end of the test)."""

    def __init__(self, prefix="mctest-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        # Workers run as nobody; let them traverse, in case they need to.
        os.chmod(self.path, 0o755)
        _track(self)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def write(self, name, data, mode=0o644):
        p = self.join(name)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(p, mode)
        return p

    def close(self):
        _untrack(self)
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- YAML


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v is None:
        return "null"
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(v))


def to_yaml(obj, indent=0):
    """Emits a dict/list/scalar tree as block YAML (enough for configs)."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                out.append("%s- %s" % (pad, body[indent + 2:]))
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(item)))
    else:
        out.append(pad + _yaml_scalar(obj) + "\n")
    return "".join(out)


def base_config(listeners, **overrides):
    """The harness's default config around the given listeners list.
    Keyword arguments replace top-level sections; proxy= and log= are
    merged into the defaults."""
    cfg = {
        "database": {"path": "mc-proxy.db"},
        "user": "nobody",
        "workers": 2,
        "listeners": listeners,
        "proxy": {
            "connect_timeout": "1s",
            "handshake_timeout": "1s",
            "idle_timeout": "5s",
            "shutdown_timeout": "3s",
        },
        "log": {"level": "debug", "format": "json"},
    }
    for k, v in overrides.items():
        if k in ("proxy", "log") and isinstance(v, dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    return cfg


def listener(addr, routes, **extra):
    d = {"addr": addr}
    d.update(extra)
    d["routes"] = [r if isinstance(r, dict) else {"hostname": r[0], "backend": r[1]} for r in routes]
    return d


# ---------------------------------------------------------------- logs


_TEXT_PAIR = re.compile(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_text_line(line):
    """Parses 'TIME key=value key="v w" ...' into a dict (time under
    "time"); None when the line is not of that shape."""
    line = line.rstrip("\n")
    head, sep, rest = line.partition(" ")
    if not sep or "=" in head:
        return None
    rec = {"time": head}
    pos = 0
    while pos < len(rest):
        if rest[pos] == " ":
            pos += 1
            continue
        m = _TEXT_PAIR.match(rest, pos)
        if not m:
            return None
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1]
        rec[m.group(1)] = v
        pos = m.end()
    return rec if "msg" in rec else None


def parse_log_line(line):
    line = line.strip()
    if line.startswith("{"):
        try:
            v = json.loads(line)
        except ValueError:
            return None
        return v if isinstance(v, dict) else None
    return parse_text_line(line)


def sanitizer_report(text):
    """The first sanitizer finding in text with some context, or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start:i + 3000]
    return None


# ---------------------------------------------------------------- notify


class NotifyReceiver:
    """A systemd notify socket: an AF_UNIX datagram socket at path.
    Every datagram received is kept in .messages (raw text), and every
    KEY=VALUE line in .lines, in arrival order."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.setblocking(False)
        self.messages = []
        self.lines = []

    def drain(self, wait=0.0):
        """Reads what has arrived, waiting at most wait seconds for the first."""
        r, _, _ = select.select([self.sock], [], [], wait)
        while r:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            text = data.decode("utf-8", "replace")
            self.messages.append(text)
            self.lines.extend(l for l in text.split("\n") if l)
            r, _, _ = select.select([self.sock], [], [], 0)
        return self.lines

    def wait_for(self, line, timeout, alive=None):
        """Waits until a datagram holding exactly this line arrived.
        alive(): optional check called while waiting; if it returns a
        string, waiting stops with that as the failure."""
        deadline = time.monotonic() + timeout
        while True:
            if line in self.lines:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s on NOTIFY_SOCKET within %.0f s (got %r)"
                                     % (line, timeout, self.lines))
            if alive:
                why = alive()
                if why:
                    raise AssertionError("%s while waiting for %s" % (why, line))
            self.drain(min(left, 0.05))

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- server


def _proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    # comm may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def proc_ppid(pid):
    return int(_proc_stat(pid)[1])


def proc_cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    rest = _proc_stat(pid)
    ticks = int(rest[11]) + int(rest[12])  # fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_alive(pid):
    try:
        return _proc_stat(pid)[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def proc_socket_inodes(pid):
    """Inodes of the sockets pid holds open."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_table():
    """Every TCP socket (IPv4 and IPv6) in /proc/net/tcp{,6}, as
    (local port, remote port, state in hex, inode)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    rows.append((int(cols[1].rsplit(":", 1)[1], 16),
                                 int(cols[2].rsplit(":", 1)[1], 16), cols[3], int(cols[9])))
        except OSError:
            continue
    return rows


def tcp_socket_inodes(local_port, remote_port):
    """Inodes of the TCP sockets (IPv4 and IPv6) whose local port is
    local_port and remote port remote_port."""
    return {inode for lport, rport, _, inode in tcp_table()
            if lport == local_port and rport == remote_port and inode}


class Server:
    """Runs `mc-proxy server -c FILE` in the foreground, as a context manager.

    config: a dict (emitted as YAML) or YAML text. The config file, the
    database and the notify socket live in a fresh temp dir (relative
    paths in the config resolve against it). Startup waits for READY=1 on
    NOTIFY_SOCKET. stderr and stdout go to .log_path (or to the fd
    stderr, which the caller then reads and checks). On exit everything
    the server started is killed and the log is checked for sanitizer
    reports, which fail the test.
    """

    def __init__(self, config, env=None, rlimit_nofile=None, ready_timeout=None,
                 args=None, wait_ready=True, stderr=None):
        self.bin = require_binary()
        self.dir = TempDir(prefix="mcproxy-")
        self.config_path = self.dir.write(
            "mc-proxy.yaml", config if isinstance(config, str) else to_yaml(config))
        self.log_path = self.dir.join("stderr.log")
        self.notify = NotifyReceiver(self.dir.join("notify.sock"))
        self.env = dict(os.environ)
        self.env["NOTIFY_SOCKET"] = self.notify.path
        self.env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            self.env.update(env)
        self.rlimit_nofile = rlimit_nofile
        self.ready_timeout = ready_timeout or READY_TIMEOUT
        self.args = args or ["server", "-c", self.config_path]
        self.wait_ready = wait_ready
        self.stderr = stderr
        self.proc = None
        self.returncode = None
        self._closed = False

    # -- lifecycle

    def _preexec(self):
        if self.rlimit_nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.rlimit_nofile, self.rlimit_nofile))

    def start(self):
        _track(self)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin] + self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file if self.stderr is None else self.stderr,
            stderr=subprocess.STDOUT,
            env=self.env, cwd=self.dir.path, start_new_session=True,
            preexec_fn=self._preexec if self.rlimit_nofile else None)
        self.pid = self.proc.pid
        if self.wait_ready:
            try:
                self.notify.wait_for("READY=1", self.ready_timeout, alive=self._died)
            except AssertionError as e:
                raise AssertionError("%s; last log line: %s\nlog:\n%s"
                                     % (e, self.log_tail(1), self.log_tail()))
        return self

    def _died(self):
        rc = self.proc.poll()
        return None if rc is None else "mc-proxy exited with %s" % rc

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the master to exit; returns its exit code (negative:
        killed by that signal). AssertionError on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("mc-proxy did not exit within %.1f s" % timeout)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and returns the exit code once the master exited."""
        self.send_signal(sig)
        return self.wait_exit(timeout)

    def close(self, check=True):
        """Kills whatever is left (master, workers: the whole session),
        then fails if the log holds a sanitizer report."""
        if self._closed:
            return
        self._closed = True
        _untrack(self)
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=5)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            # Workers reparented away still belong to the session: wait for
            # them, bounded, so their sanitizer output is in the log.
            deadline = time.monotonic() + 5
            while self.session_pids() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._log_file.close()
        self.notify.drain()
        self.notify.close()
        report = None
        if self.proc is not None:
            report = sanitizer_report(self.log_text()) or self.bad_json_report()
        if os.environ.get("MCTEST_KEEP_LOGS") and self.proc is not None:
            keep = os.path.join(os.environ["MCTEST_KEEP_LOGS"], "mcproxy-%d.log" % self.proc.pid)
            os.makedirs(os.path.dirname(keep), exist_ok=True)
            shutil.copy(self.log_path, keep)
        self.dir.close()
        if report and check:
            first = next((l for l in report.splitlines() if any(m in l for m in SANITIZER_MARKERS)),
                         report.splitlines()[0])
            raise AssertionError("%s\n%s" % (first, report))
        if report:
            sys.stderr.write("# " + report + "\n")

    def bad_json_report(self):
        """With log format json every line that looks like a log record
        must be a JSON object; returns a description of the first that is
        not, or None."""
        for line in self.log_text().splitlines():
            if line.startswith("{") and parse_log_line(line) is None:
                return "invalid JSON log line: %s" % line
        return None

    def session_pids(self):
        """PIDs still alive in the server's session (master, workers, ...)."""
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.getsid(int(name)) == self.proc.pid and proc_alive(int(name)):
                    pids.append(int(name))
            except (ProcessLookupError, PermissionError, OSError):
                continue
        return pids

    # -- processes

    def child_pids(self, match):
        """PIDs of the master's live children whose argv (a list of bytes)
        satisfies match(argv), sorted."""
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                if proc_ppid(pid) != self.pid or not proc_alive(pid):
                    continue
                if match(proc_cmdline(pid)):
                    pids.append(pid)
            except (OSError, ValueError, IndexError):
                continue
        return sorted(pids)

    def worker_pids(self):
        """PIDs of the live workers: children of the master run as __worker."""
        return self.child_pids(lambda argv: b"__worker" in argv)

    def wait_workers(self, n, timeout=10.0):
        return wait_until(lambda: len(self.worker_pids()) == n and self.worker_pids(),
                          timeout, what="%d workers" % n)

    def worker_of(self, listen_port, client_port):
        """The worker pid holding the proxy side of the connection from
        client_port to listen_port, or None."""
        inodes = tcp_socket_inodes(listen_port, client_port)
        if not inodes:
            return None
        for pid in self.worker_pids():
            if proc_socket_inodes(pid) & inodes:
                return pid
        return None

    # -- logs

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_lines(self):
        """Every parseable log line (JSON or key=value text) as a dict."""
        out = []
        for line in self.log_text().splitlines():
            rec = parse_log_line(line)
            if rec is not None:
                out.append(rec)
        return out

    def conn_logs(self):
        return [r for r in self.log_lines() if r.get("msg") == "conn"]

    def wait_log(self, pred, timeout=5.0, what="a matching log line"):
        """Waits for a log line (dict) with pred(line) true; returns it."""
        def find():
            for rec in self.log_lines():
                try:
                    if pred(rec):
                        return rec
                except (KeyError, TypeError, ValueError):
                    continue
            return None
        try:
            return wait_until(find, timeout, interval=0.03, what=what)
        except AssertionError as e:
            raise AssertionError("%s\nlog tail:\n%s" % (e, self.log_tail(15)))

    def wait_conn_log(self, timeout=5.0, **fields):
        """Waits for an access line ("conn") whose fields equal the given
        ones (compared as strings, so text and JSON logs both work)."""
        def pred(r):
            return r.get("msg") == "conn" and all(
                str(r.get(k)) == str(v) for k, v in fields.items())
        return self.wait_log(pred, timeout, what="conn log with %r" % (fields,))


def proxy_server(routes, addr=None, listener_opts=None, **overrides):
    """A Server (not started: use it in `with`) with one listener routing
    routes, a list of (hostname, backend_addr) or route dicts. addr
    defaults to a free port on 127.0.0.1. The listener's port is .port,
    the address to connect to .host. Keyword arguments go to base_config
    (proxy=..., log=..., workers=...), except env, rlimit_nofile and
    stderr which go to Server."""
    server_kw = {k: overrides.pop(k) for k in ("env", "rlimit_nofile", "stderr")
                 if k in overrides}
    if addr is None:
        addr = "127.0.0.1:%d" % free_port()
    cfg = base_config([listener(addr, routes, **(listener_opts or {}))], **overrides)
    srv = Server(cfg, **server_kw)
    host, _, port = addr.rpartition(":")
    srv.port = int(port)
    srv.host = host.strip("[]") or "127.0.0.1"
    srv.listen_addr = addr
    return srv


def make_mmdb(path, *nets):
    """Writes a GeoIP2-Country database mapping each "CIDR=CC" of nets
    (t/lib/mkmmdb.pl, Debian's libmaxmind-db-writer-perl); returns path."""
    r = subprocess.run(["perl", os.path.join(REPO_ROOT, "t", "lib", "mkmmdb.pl"), path] +
                       list(nets), capture_output=True, timeout=60)
    if r.returncode != 0 and b"MaxMind/DB/Writer" in r.stderr:
        skip("libmaxmind-db-writer-perl is not installed")
    assert r.returncode == 0, r.stderr.decode()
    return path


# Re-exports so test files need one import.
from certs import gen_ca_and_cert  # noqa: E402
from daemon import *  # noqa: E402,F401,F403
from net import *  # noqa: E402,F401,F403
