"""
Helpers for the admin API tests (t/integration/test_admin.py,
test_ctl.py): running mcproxyctl, servers with a grpc section, Python
gRPC stubs generated from proto/ at test time, mTLS certificates, and a
fake master that drives mc-proxy-admin over its channel on fd 3.

Only Debian's python3 with python3-grpcio (and protoc +
grpc_python_plugin, or python3-grpc-tools) is used.
"""

import importlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

import mctest

PROTO_DIR = os.path.join(mctest.REPO_ROOT, "proto")
MSG_H = os.path.join(mctest.REPO_ROOT, "common", "msg.h")


def build_dir():
    return os.environ.get("MCPROXY_BUILD") or os.path.dirname(mctest.mcproxy_bin())


def require_program(name):
    path = os.path.join(build_dir(), name)
    if not os.access(path, os.X_OK):
        mctest.skip("no %s at %s (build it, or set MCPROXY_BUILD)" % (name, path))
    return path


# ---------------------------------------------------------------- mcproxyctl


class CtlResult:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def json(self):
        assert self.rc == 0, "mcproxyctl failed (%d): %s" % (self.rc, self.err)
        return json.loads(self.out)

    def __repr__(self):
        return "rc=%d out=%r err=%r" % (self.rc, self.out, self.err)


def ctl(*args, timeout=30, cwd=None):
    """Runs mcproxyctl with args; returns a CtlResult."""
    r = subprocess.run([require_program("mcproxyctl")] + [str(a) for a in args],
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    return CtlResult(r.returncode, r.stdout.decode(errors="replace"),
                     r.stderr.decode(errors="replace"))


def ctl_ok(*args, **kw):
    r = ctl(*args, **kw)
    assert r.rc == 0, "mcproxyctl %s: %r" % (" ".join(map(str, args)), r)
    return r


def ctl_fails(status, *args, **kw):
    """Runs mcproxyctl expecting gRPC status `status`: exit 1 and
    "mcproxyctl: STATUS: ..." on stderr. Returns the CtlResult."""
    r = ctl(*args, **kw)
    assert r.rc == 1, "expected exit 1 (%s) from %s: %r" % (status, args, r)
    assert r.err.startswith("mcproxyctl: %s: " % status), "expected %s: %r" % (status, r)
    return r


# ---------------------------------------------------------------- servers


def admin_server(listeners=None, grpc=None, **overrides):
    """A Server (use it in `with`) with the admin API on a unix socket
    (srv.sock) and one listener on a free loopback port (srv.listener)
    unless listeners are given. grpc= replaces the grpc section."""
    if listeners is None:
        addr = "127.0.0.1:%d" % mctest.free_port()
        listeners = [mctest.listener(addr, [("a.test", "127.0.0.1:9")])]
    grpc = grpc or {"addr": "unix:admin.sock", "socket_mode": "0660"}
    cfg = mctest.base_config(listeners, grpc=grpc, **overrides)
    srv = mctest.Server(cfg)
    srv.listener = listeners[0]["addr"]
    srv.sock = srv.dir.join("admin.sock")
    return srv


def admin_pids(srv):
    """PIDs of the live admin processes: children of the master running mc-proxy-admin."""
    return srv.child_pids(lambda argv: bool(argv) and
                          os.path.basename(argv[0]) == b"mc-proxy-admin")


def wait_admin(srv, timeout=10.0):
    """Waits until the admin process serves: its socket answers GetStatus."""
    def serving():
        return os.path.exists(srv.sock) and ctl("--socket", srv.sock, "status").rc == 0
    mctest.wait_until(serving, timeout, interval=0.1, what="the admin API to serve")
    return admin_pids(srv)[0]


def proc_status(pid, tid=None):
    """/proc/PID[/task/TID]/status as a dict."""
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


# ---------------------------------------------------------------- certificates


def _openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.decode(errors="replace")))


def gen_ca(directory, name):
    """A CA: (cert, key) paths."""
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".pem")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-x509", "-new", "-key", key, "-days", "30", "-sha256",
             "-subj", "/CN=%s" % name, "-out", cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def gen_leaf(directory, name, ca, usage, sans=()):
    """A leaf signed by ca=(cert, key) for usage "serverAuth" or
    "clientAuth": (cert, key) paths. sans are IPs or DNS names."""
    key, cert = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".pem")
    csr, ext = os.path.join(directory, name + ".csr"), os.path.join(directory, name + ".ext")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    os.chmod(key, 0o644)
    _openssl("req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-out", csr)
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        f.write("extendedKeyUsage=%s\n" % usage)
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(
                ("IP:" if re.match(r"^[0-9.:]+$", s) else "DNS:") + s for s in sans))
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "30", "-sha256", "-extfile", ext, "-out", cert)
    return cert, key


class MTLS:
    """Everything an mTLS admin test needs, in directory: the server's
    CA and certificate (IP 127.0.0.1), the client CA the server trusts,
    a client certificate it signed, and one from an unrelated CA."""

    def __init__(self, directory):
        self.server_ca = gen_ca(directory, "server-ca")
        self.server = gen_leaf(directory, "admin-server", self.server_ca, "serverAuth",
                               ["127.0.0.1", "localhost"])
        self.client_ca = gen_ca(directory, "client-ca")
        self.client = gen_leaf(directory, "operator", self.client_ca, "clientAuth")
        self.rogue_ca = gen_ca(directory, "rogue-ca")
        self.rogue = gen_leaf(directory, "intruder", self.rogue_ca, "clientAuth")

    def grpc_section(self, port):
        return {"addr": "127.0.0.1:%d" % port, "tls_cert": self.server[0],
                "tls_key": self.server[1], "client_ca": self.client_ca[0]}

    def ctl_args(self, port, client=None):
        client = client or self.client
        return ["--addr", "127.0.0.1:%d" % port, "--cert", client[0], "--key", client[1],
                "--ca", self.server_ca[0]]


# ---------------------------------------------------------------- Python gRPC stubs


_stubs = None


def stubs():
    """(grpc, admin_pb2, admin_pb2_grpc, health_pb2, health_pb2_grpc),
    generated from proto/ into a temp dir once per test process."""
    global _stubs
    if _stubs is not None:
        return _stubs
    try:
        import grpc
    except ImportError:
        mctest.skip("python3-grpcio is not installed")
    out = tempfile.mkdtemp(prefix="mctest-pb-")
    # Each file from its own directory: the modules come out top-level
    # (a "grpc" package directory would shadow grpcio itself).
    for rel in ("mc_proxy/v1/admin.proto", "grpc/health/v1/health.proto"):
        d, f = os.path.split(os.path.join(PROTO_DIR, rel))
        if os.access("/usr/bin/protoc", os.X_OK) and os.access("/usr/bin/grpc_python_plugin", os.X_OK):
            cmd = ["/usr/bin/protoc", "-I", d, "--python_out", out, "--grpc_out", out,
                   "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", f]
        else:
            cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", d, "--python_out", out,
                   "--grpc_python_out", out, f]
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        if r.returncode != 0:
            mctest.skip("cannot generate Python stubs (%s): %s"
                        % (cmd[0], r.stderr.decode(errors="replace").strip()))
    sys.path.insert(0, out)
    _stubs = (grpc,) + tuple(importlib.import_module(m) for m in
                             ("admin_pb2", "admin_pb2_grpc", "health_pb2", "health_pb2_grpc"))
    return _stubs


def raw_call(channel, path, payload, timeout=15):
    """A unary call with raw bytes both ways; returns the response bytes."""
    fn = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    return fn(payload, timeout=timeout)


# ---------------------------------------------------------------- fake master


def _msg_types():
    """enum msg_type from common/msg.h: name -> value."""
    with open(MSG_H) as f:
        text = f.read()
    body = re.search(r"enum msg_type \{(.*?)\};", text, re.S).group(1)
    types, value = {}, 0
    for m in re.finditer(r"^\s*(MSG_\w+)\s*(?:=\s*(\d+))?\s*,", body, re.M):
        value = int(m.group(2)) if m.group(2) else value + 1
        types[m.group(1)] = value
    return types


MSG = _msg_types()
HDR = struct.Struct("<HHIII")                   # struct chan_hdr
ADMIN_SETTINGS = struct.Struct("<B3xIIiiIIHHHH")  # struct msg_admin_settings
ADMIN_REQ = struct.Struct("<II")                 # struct msg_admin_req
ADMIN_RESP = struct.Struct("<IiI")               # struct msg_admin_resp


def settings_payload(addr, tls_cert=b"", tls_key=b"", client_ca=b"", socket_mode=0o600,
                     setuid=0, uid=0, gid=0, log_level=0, log_format=1, socket_gid=0xffffffff):
    strs = [s.encode() if isinstance(s, str) else s for s in (addr, tls_cert, tls_key, client_ca)]
    return ADMIN_SETTINGS.pack(setuid, uid, gid, log_level, log_format, socket_mode, socket_gid,
                               *[len(s) for s in strs]) + b"".join(strs)


class FakeMaster:
    """Runs mc-proxy-admin with a socketpair on fd 3 and plays the
    master's side of the channel. The admin's stderr goes to .log_path."""

    def __init__(self, directory):
        self.dir = directory
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log_path = os.path.join(directory, "admin.log")
        self._log = open(self.log_path, "wb")
        fd = child.fileno()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        # the shell puts the channel on fd 3 (subprocess would close a
        # descriptor set up in preexec_fn) and execs the admin
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'exec "$0" 3<&%d %d<&-' % (fd, fd), require_program("mc-proxy-admin")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(fd,),
            env=env)
        child.close()
        self.seq = 0
        self.buf = b""
        self.listening = False
        mctest._track(self)

    def send(self, mtype, payload=b""):
        self.sock.sendall(HDR.pack(MSG[mtype], 0, len(payload), self.seq, 0) + payload)
        self.seq += 1

    def recv(self, timeout=5.0):
        """The next message as (type name, payload), or None at EOF.
        MSG_LISTENING (once the API serves) is not returned: it sets
        .listening."""
        deadline = time.monotonic() + timeout
        names = {v: k for k, v in MSG.items()}
        while True:
            if len(self.buf) >= HDR.size:
                t, _, n, _, _ = HDR.unpack_from(self.buf)
                if len(self.buf) >= HDR.size + n:
                    payload = self.buf[HDR.size:HDR.size + n]
                    self.buf = self.buf[HDR.size + n:]
                    if names.get(t) == "MSG_LISTENING" and not payload:
                        self.listening = True
                        continue
                    return names.get(t, t), payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no message from mc-proxy-admin within %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None
            self.buf += data

    def recv_request(self, timeout=5.0):
        """The next MSG_ADMIN_REQ as (id, method index, request bytes)."""
        m = self.recv(timeout)
        assert m is not None and m[0] == "MSG_ADMIN_REQ", "expected a request, got %r" % (m,)
        rid, method = ADMIN_REQ.unpack_from(m[1])
        return rid, method, m[1][ADMIN_REQ.size:]

    def reply(self, rid, status, message=b"", body=b""):
        self.send("MSG_ADMIN_RESP", ADMIN_RESP.pack(rid, status, len(message)) + message + body)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("mc-proxy-admin did not exit within %.1f s" % timeout)

    def close(self, check=True):
        """Kills the admin if still running; fails on a sanitizer report."""
        mctest._untrack(self)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.sock.close()
        self._log.close()
        report = mctest.sanitizer_report(self.log_text())
        if report and check:
            raise AssertionError("sanitizer report in mc-proxy-admin output:\n" + report)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)
