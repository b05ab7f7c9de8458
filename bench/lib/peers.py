"""Configuration and life cycle of the backends and of each peer proxy.

Every proxy gets the same route table: filler hostnames first (pointing at
a closed port), the live targets last, so a linear lookup pays in full.

Live targets (hostname -> backend):
  tls   nginx, TLS 1.3, ECDSA P-256, no tickets, no session cache (HTTP)
  raw   nginx stream: ssl_preread, then a fixed reply and close
  bulk  python: sendfile a fixed number of bytes, then close
  idle  python: write one byte, hold the connection

The L7 pass (each proxy terminates TLS with the same certificate, offers
ALPN h2 and http/1.1, and speaks HTTP/1.1 to a plain-HTTP backend) has one
route, L7_TARGET, served by the backend nginx's plain-HTTP server on the
"http" port.
"""

import ipaddress
import os
import random
import signal
import socket
import ssl
import subprocess
import time

from . import clients
from .proc import Notify, Proc, comm, cpu_ns

DOMAIN = "bench.test"
LIVE = ("tls", "raw", "bulk", "idle")
L7_TARGET = "l7"  # the L7 pass's one route; its backend is the plain-HTTP port "http"
RAW_REPLY = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
BODY = "x" * 63 + "\n"  # 64 B response body for the keep-alive scenarios
DEAD_BACKEND = "127.0.0.1:9"  # nothing listens there; filler routes only
CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients.py")
PY = "/usr/bin/python3"


def host(target):
    return f"{target}.{DOMAIN}"


def route_table(n, backends):
    """[(hostname, backend)] of n routes, the live targets last."""
    fill = n - len(backends)
    routes = [(f"r{i:05d}.{DOMAIN}", DEAD_BACKEND) for i in range(fill)]
    routes += [(host(t), backends[t]) for t in LIVE]
    return routes


# The benchmark's clients all connect from this address (the kernel's choice
# for a connection to 127.0.0.1); FW_PROBE is blocked by the rule table.
CLIENT_IP = "127.0.0.1"
FW_PROBE = "127.0.0.2"
FW_SEED = 11
FW_PATH_RULES = 24  # /9../32 along CLIENT_IP's path, see firewall_cidrs()


def firewall_cidrs(n, seed=FW_SEED):
    """n distinct canonical CIDRs, the same for a given (n, seed): the 24
    IPv4 siblings of CLIENT_IP's path (/9../32: each shares all but its last
    bit with CLIENT_IP, so a lookup for it walks the trie to full depth and
    still misses; FW_PROBE falls in the /31), then half random IPv4 /8../32
    outside 127.0.0.0/8 and half random IPv6 /16../128 outside ::/16 (so
    neither ::1 nor an IPv4-mapped address is covered)."""
    client = int(ipaddress.IPv4Address(CLIENT_IP))
    out = [str(ipaddress.IPv4Network(((client >> (32 - plen) ^ 1) << (32 - plen), plen)))
           for plen in range(33 - FW_PATH_RULES, 33)][:n]
    seen = set(out)
    rng = random.Random(seed)
    while len(out) < n:
        if len(out) % 2:
            plen = rng.randint(8, 32)
            net = rng.getrandbits(32) >> (32 - plen) << (32 - plen)
            if net >> 24 == 127:
                continue
            text = str(ipaddress.IPv4Network((net, plen)))
        else:
            plen = rng.randint(16, 128)
            net = rng.getrandbits(128) >> (128 - plen) << (128 - plen)
            if net >> 112 == 0:
                continue
            text = ipaddress.IPv6Network((net, plen)).compressed
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def sh(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False).stdout.strip()


def make_cert(workdir):
    """ECDSA P-256 self-signed certificate for the TLS backend."""
    key, crt = os.path.join(workdir, "backend.key"), os.path.join(workdir, "backend.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "3", "-subj", f"/CN={host('tls')}",
                    "-addext", f"subjectAltName=DNS:*.{DOMAIN}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt, key


def make_file(path, size):
    """A file of size bytes (not all zeros, though content does not matter)."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
        f.write(block[:size & ((1 << 20) - 1)])
    return path


def can_route(addr, sni, timeout=1.0, source=None):
    """True if a ClientHello for sni at addr (from source, an address) gets
    the raw backend's reply."""
    try:
        with socket.create_connection(addr, timeout=timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(clients.client_hello(sni))
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.endswith(RAW_REPLY.encode()[-8:])
    except OSError:
        return False


def is_reset(addr, sni, source, timeout=1.0):
    """True if a connection from source to addr is reset with no byte
    received after it sends a ClientHello for sni (a firewall block)."""
    try:
        with socket.create_connection(addr, timeout=timeout, source_address=(source, 0)) as s:
            s.sendall(clients.client_hello(sni))
            s.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError:
        return False
    return False  # a byte or an orderly close: not a block


def _tls_ctx(alpn=None):
    """A client context that does not check the certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def alpn_selected(addr, sni, alpn, timeout=2.0):
    """The protocol addr selects from the list alpn in a TLS handshake for
    sni (None: it selected none)."""
    with socket.create_connection(addr, timeout=timeout) as raw, \
            _tls_ctx(alpn).wrap_socket(raw, server_hostname=sni) as s:
        return s.selected_alpn_protocol()


def can_get(addr, sni, timeout=1.0):
    """True if GET / over TLS (SNI sni, certificate not checked) at addr
    answers 200 with the benchmark's body: an L7 route works end to end."""
    try:
        with socket.create_connection(addr, timeout=timeout) as raw, \
                _tls_ctx().wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200") and data.endswith(BODY.encode())
    except (OSError, ssl.SSLError):
        return False


def wait_ready(peer, proc, timeout):
    """Poll until peer serves (raw.<domain> routed; in L7 mode, GET / over
    TLS through its L7 route). Returns seconds waited or None."""
    if not peer.l7:
        return wait_routed(peer.addr("raw"), proc, timeout)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and not proc.alive():
            return None
        if can_get(peer.addr(L7_TARGET), host(L7_TARGET), timeout=0.5):
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


def wait_routed(addr, proc, timeout):
    """Poll until raw.<domain> is routed through addr. Returns seconds waited or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and not proc.alive():
            return None
        if can_route(addr, host("raw"), timeout=0.5):
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


def nginx_version():
    return sh(["nginx", "-v"]).splitlines()[0]


class Backends:
    """nginx (TLS HTTP + raw stream) and the two python raw backends."""

    def __init__(self, workdir, ports, bulk_bytes):
        self.workdir = workdir
        self.ports = ports  # target -> port
        self.bulk_bytes = bulk_bytes
        self.procs = []

    def addr(self, target):
        return ("127.0.0.1", self.ports[target])

    def backend_map(self):
        return {t: f"127.0.0.1:{self.ports[t]}" for t in LIVE}

    def http_backend(self):
        """The plain-HTTP backend of the L7 pass, host:port."""
        return f"127.0.0.1:{self.ports['http']}"

    def start(self, big_file):
        w = self.workdir
        crt, key = make_cert(w)
        # the L7 proxies terminate TLS with this same certificate (SAN *.bench.test)
        self.cert, self.key = crt, key
        conf = os.path.join(w, "backend-nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""# TLS backend and raw-reply backend for the benchmark.
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {w}/backend-nginx.pid;
error_log {w}/backend-nginx.err warn;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events {{ worker_connections 12000; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {w}/tmp-body;
    proxy_temp_path {w}/tmp-proxy;
    fastcgi_temp_path {w}/tmp-fastcgi;
    uwsgi_temp_path {w}/tmp-uwsgi;
    scgi_temp_path {w}/tmp-scgi;
    server {{
        listen 127.0.0.1:{self.ports['tls']} ssl http2 reuseport;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_session_tickets off;
        ssl_session_cache off;
        default_type text/plain;
        location = / {{ return 200 "{BODY[:-1]}\\n"; }}
        location = /big {{ alias {big_file}; }}
    }}
    server {{
        listen 127.0.0.1:{self.ports['http']} reuseport;
        default_type text/plain;
        location = / {{ return 200 "{BODY[:-1]}\\n"; }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{self.ports['raw']} reuseport;
        ssl_preread on;
        return "{RAW_REPLY.encode('unicode_escape').decode()}";
    }}
}}
""")
        self.nginx = Proc("backend-nginx", ["nginx", "-e", f"{w}/backend-nginx.err",
                                            "-p", w, "-c", conf], f"{w}/backend-nginx.log")
        self.bulk = Proc("backend-bulk", [PY, CLIENTS, "bulk-backend", "--port",
                                          str(self.ports["bulk"]), "--file", big_file,
                                          "--bytes", str(self.bulk_bytes)],
                         f"{w}/backend-bulk.log")
        self.hold = Proc("backend-hold", [PY, CLIENTS, "hold-backend", "--port",
                                          str(self.ports["idle"])], f"{w}/backend-hold.log")
        self.procs = [self.nginx, self.bulk, self.hold]
        if wait_routed(self.addr("raw"), self.nginx, 10) is None:
            raise RuntimeError(f"backend nginx did not start, see {w}/backend-nginx.err")
        for t in ("bulk", "idle", "tls", "http"):
            _wait_port(self.addr(t), 10)

    def pids(self):
        return [p for proc in self.procs for p in proc.tree()]

    def stop(self):
        for p in self.procs:
            p.stop(signal.SIGTERM, grace=5)


def _wait_port(addr, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(addr, timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {addr}")


class Peer:
    """A proxy under test. start() returns the start-up time in seconds."""

    name = "?"
    stop_signal = signal.SIGTERM
    worker_comm = None  # /proc/PID/comm of its worker processes, where it has them
    l7_capable = True  # has an L7 (TLS-terminating HTTP/1.1) configuration

    def __init__(self, workdir, port):
        self.workdir = workdir
        self.port = port
        self.proc = None
        self.l7 = False  # the next start terminates TLS and proxies HTTP/1.1 (L7 pass)
        self.backends = None  # set by make_peer: the L7 configs need the cert and backend

    def addr(self, target):
        return ("127.0.0.1", self.port)

    def pids(self):
        return self.proc.tree() if self.proc else []

    def worker_pids(self):
        return [p for p in self.pids() if self.worker_comm and comm(p) == self.worker_comm]

    def write_config(self, routes, tag):
        raise NotImplementedError

    def argv(self, conf):
        raise NotImplementedError

    def start(self, routes, tag):
        conf = self.write_config(routes, tag)
        t0 = time.monotonic()
        self.proc = Proc(self.name, self.argv(conf), f"{self.workdir}/{self.name}-{tag}.log")
        waited = wait_ready(self, self.proc, 60)
        if waited is None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start routing ({self.workdir}/{self.name}-{tag}.log)")
        return {"startup_s": time.monotonic() - t0}

    def stop(self):
        rc = self.proc.stop(self.stop_signal, grace=10) if self.proc else None
        self.proc = None
        return rc

    def version(self):
        return ""


class Direct(Peer):
    """No proxy: the client talks to the backend itself."""

    name = "direct"

    def __init__(self, workdir, backends):
        super().__init__(workdir, None)
        self.backends = backends

    def addr(self, target):
        # L7 pass: the TLS backend serves the same body itself
        return self.backends.addr("tls" if target == L7_TARGET else target)

    def start(self, routes, tag):
        return {}

    def stop(self):
        return 0

    def version(self):
        return "none (client -> backend directly)"


class HAProxy(Peer):
    name = "haproxy"
    splice = False

    def write_config(self, routes, tag):
        w = self.workdir
        mapf = f"{w}/{self.name}-{tag}.map"
        conf = f"{w}/{self.name}-{tag}.cfg"
        lines = ["global", "    nbthread 2", "    maxconn 9000",
                 "    user nobody", "    group nogroup"]
        if self.l7:
            return self._write_l7(conf, lines)
        with open(mapf, "w") as f:
            for i, (h, _) in enumerate(routes):
                f.write(f"{h} b{i}\n")
        if self.splice:
            lines.append("    maxpipes 500")
        lines += ["defaults", "    mode tcp", "    timeout connect 5s",
                  "    timeout client 300s", "    timeout server 300s"]
        if self.splice:
            lines += ["    option splice-request", "    option splice-response"]
        lines += ["frontend fe", f"    bind 127.0.0.1:{self.port}",
                  "    tcp-request inspect-delay 5s",
                  "    tcp-request content accept if { req.ssl_hello_type 1 }",
                  f"    use_backend %[req.ssl_sni,lower,map({mapf})]"]
        for i, (_, backend) in enumerate(routes):
            lines += [f"backend b{i}", f"    server s {backend}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def _write_l7(self, conf, lines):
        """mode http: TLS terminated on the bind line (ALPN h2, then
        http/1.1), the same forwarding headers as mc-proxy sets, idle
        backend connections shared by every client connection (http-reuse
        always: the first request of a client connection may reuse one too)."""
        pem = f"{self.workdir}/{self.name}-l7.pem"  # haproxy wants chain and key in one file
        with open(pem, "w") as f:
            for part in (self.backends.cert, self.backends.key):
                with open(part) as src:
                    f.write(src.read())
        os.chmod(pem, 0o600)
        lines += ["defaults", "    mode http", "    option http-keep-alive",
                  "    http-reuse always", "    timeout connect 5s", "    timeout client 300s",
                  "    timeout server 300s", "    timeout http-keep-alive 300s",
                  "frontend fe", f"    bind 127.0.0.1:{self.port} ssl crt {pem} alpn h2,http/1.1",
                  "    option forwardfor",
                  "    http-request set-header X-Real-IP %[src]",
                  "    http-request set-header X-Forwarded-Proto https",
                  "    default_backend be",
                  "backend be", f"    server s {self.backends.http_backend()}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def argv(self, conf):
        return ["haproxy", "-db", "-f", conf]

    def version(self):
        return sh(["haproxy", "-v"]).splitlines()[0]


class HAProxySplice(HAProxy):
    name = "haproxy-splice"
    splice = True
    l7_capable = False  # the same as haproxy once TLS is terminated


class Nginx(Peer):
    name = "nginx"
    stop_signal = signal.SIGTERM

    def write_config(self, routes, tag):
        w = self.workdir
        conf = f"{w}/{self.name}-{tag}.conf"
        with open(conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
user nobody nogroup;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {w}/{self.name}.pid;
error_log {w}/{self.name}-{tag}.err warn;
""")
            if self.l7:
                self._write_l7(f)
                return conf
            f.write("""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections 12000; }
stream {
    map_hash_max_size 65536;
    map_hash_bucket_size 128;
    map $ssl_preread_server_name $backend {
        hostnames;
""")
            for h, b in routes:
                f.write(f"        {h} {b};\n")
            f.write(f"""    }}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        ssl_preread on;
        preread_timeout 10s;
        proxy_connect_timeout 5s;
        proxy_timeout 300s;
        proxy_pass $backend;
    }}
}}
""")
        return conf

    def _write_l7(self, f):
        """http + proxy_pass: TLS terminated by the server (ALPN h2, then
        http/1.1), the same forwarding headers as mc-proxy sets, an
        upstream keepalive pool shared by every client connection."""
        w = self.workdir
        f.write(f"""events {{ worker_connections 12000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {w}/tmp-body;
    proxy_temp_path {w}/tmp-proxy;
    fastcgi_temp_path {w}/tmp-fastcgi;
    uwsgi_temp_path {w}/tmp-uwsgi;
    scgi_temp_path {w}/tmp-scgi;
    upstream be {{
        server {self.backends.http_backend()};
        keepalive 128;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{self.port} ssl http2 reuseport;
        server_name {host(L7_TARGET)};
        ssl_certificate {self.backends.cert};
        ssl_certificate_key {self.backends.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_connect_timeout 5s;
        }}
    }}
}}
""")

    def argv(self, conf):
        return ["nginx", "-e", f"{self.workdir}/{self.name}.err", "-p", self.workdir, "-c", conf]

    def version(self):
        return nginx_version()


class McProxy(Peer):
    """mc-proxy; ready when it says READY=1 on $NOTIFY_SOCKET."""

    name = "mc-proxy"
    worker_comm = "mc-proxy-worker"

    def __init__(self, workdir, port, binary, ctl=None, workers=2, name=None):
        super().__init__(workdir, port)
        if name:
            self.name = name
        self.binary = binary
        self.ctl = ctl if ctl and os.access(ctl, os.X_OK) else None
        self.workers = workers
        self.socket = None
        self.admin = False  # configure the admin API (grpc:) on the next start
        self.fw_cidrs = ()  # firewall.blocked_cidrs of the next start
        # also time a restart whose config has no rules (they come from the
        # database alone, as after `mcproxyctl firewall add`)
        self.restart_without_rules = False
        self.notify = None
        self.runs = 0

    def write_config(self, routes, tag):
        self.runs += 1
        w = self.workdir
        conf = f"{w}/{self.name}-{tag}.yaml"
        db = f"{w}/{self.name}-{tag}-{self.runs}.db"  # seeds only on first run: fresh each time
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
        self.socket = None
        if self.admin and self.ctl:
            # the admin binds as root (its master keeps no CAP_DAC_OVERRIDE, so the
            # directory must be root's); the socket is root's, which mcproxyctl (as root) uses
            sockdir = f"{w}/admin"
            os.makedirs(sockdir, exist_ok=True)
            self.socket = f"{sockdir}/mc-proxy.sock"
        self._write_yaml(conf, db, routes, self.fw_cidrs)
        if self.restart_without_rules:
            self._write_yaml(self._norules(conf), db, routes, ())
        return conf

    @staticmethod
    def _norules(conf):
        return conf[:-len(".yaml")] + "-norules.yaml"

    def _write_yaml(self, conf, db, routes, cidrs):
        lines = [f"database: {{path: {db}}}", "user: nobody", f"workers: {self.workers}",
                 "log: {level: warn}",
                 "proxy: {connect_timeout: 5s, handshake_timeout: 10s, idle_timeout: 300s,"
                 " shutdown_timeout: 2s}"]
        if self.socket:
            lines.append(f'grpc: {{addr: "unix:{self.socket}"}}')
        if cidrs:
            lines += ["firewall:", "  blocked_cidrs:"] + [f'    - "{c}"' for c in cidrs]
        lines += ["listeners:", f'  - addr: "127.0.0.1:{self.port}"', "    routes:"]
        if self.l7:
            # its one route; idle backend connections go to each worker's pool,
            # shared by the client connections, as nginx's and haproxy's are
            lines.append(f'      - {{hostname: {host(L7_TARGET)}, backend:'
                         f' "{self.backends.http_backend()}", mode: l7,'
                         f' tls_cert: {self.backends.cert}, tls_key: {self.backends.key}}}')
            routes = ()
        for h, b in routes:
            lines.append(f'      - {{hostname: {h}, backend: "{b}"}}')
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self, conf):
        return [self.binary, "server", "-c", conf]

    def start(self, routes, tag):
        """Starts twice: the first start seeds a fresh database from the config
        (once in a deployment's life), is timed and stopped; the second, the
        one measured as start-up and kept running, loads that database, as
        every restart does. With restart_without_rules, a restart from the
        config without its firewall rules is timed in between."""
        conf = self.write_config(routes, tag)
        first = self._start_once(conf, f"{tag}-first")
        self.stop()
        extra = {}
        if self.restart_without_rules:
            extra["db_rules_start_s"] = self._start_once(self._norules(conf),
                                                         f"{tag}-norules")["startup_s"]
            self.stop()
        return dict(self._start_once(conf, tag), first_start_s=first["startup_s"], **extra)

    def _start_once(self, conf, tag):
        notify = Notify(f"{self.workdir}/notify.sock")
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        log = f"{self.workdir}/{self.name}-{tag}.log"
        t0 = time.monotonic()
        self.proc = Proc(self.name, self.argv(conf), log, env=env)
        self.notify = notify  # kept open until stop(): mc-proxy also sends STOPPING=1
        if not notify.wait_for(b"READY=1", 30, self.proc):
            self.stop()
            raise RuntimeError(f"mc-proxy sent no READY=1 (see {log})")
        ready = time.monotonic() - t0
        cpu = self._ready_cpu()
        # READY=1 promises every worker accepts; check that a route works
        if wait_ready(self, self.proc, 10) is None:
            self.stop()
            raise RuntimeError(f"mc-proxy is READY but does not route (see {log})")
        return dict({"startup_s": time.monotonic() - t0, "ready_s": ready}, **cpu)

    def _ready_cpu(self):
        """CPU seconds spent until READY=1 by the master and by one worker
        (their mean): unlike the wall time, not stretched by a busy machine."""
        workers = self.worker_pids()
        r = {"ready_cpu_master_s": cpu_ns([self.proc.pid]) / 1e9}
        if workers:
            r["ready_cpu_worker_s"] = cpu_ns(workers) / 1e9 / len(workers)
        return r

    def stop(self):
        rc = super().stop()
        if self.notify:
            self.notify.close()
            self.notify = None
        return rc

    def version(self):
        return f"{sh([self.binary, '--version']).splitlines()[0]} ({self.binary})"


# mc-proxy-b: a second mc-proxy build (--mc-proxy-b), for an interleaved A/B of a change
PEERS = ("direct", "haproxy", "haproxy-splice", "nginx", "mc-proxy", "mc-proxy-b")
DEFAULT_PEERS = ("direct", "haproxy", "nginx", "mc-proxy")


def make_peer(name, workdir, port, backends, mcproxy, mcproxyctl, mcproxy_b=None):
    p = _new_peer(name, workdir, port, backends, mcproxy, mcproxyctl, mcproxy_b)
    p.backends = backends
    return p


def _new_peer(name, workdir, port, backends, mcproxy, mcproxyctl, mcproxy_b):
    if name == "direct":
        return Direct(workdir, backends)
    if name == "haproxy":
        return HAProxy(workdir, port)
    if name == "haproxy-splice":
        return HAProxySplice(workdir, port)
    if name == "nginx":
        return Nginx(workdir, port)
    if name == "mc-proxy":
        return McProxy(workdir, port, mcproxy, mcproxyctl)
    if name == "mc-proxy-b":
        return McProxy(workdir, port, mcproxy_b, name=name)
    raise ValueError(f"unknown peer {name}")
