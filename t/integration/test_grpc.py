#!/usr/bin/python3
"""gRPC through an L7 route (SPEC section 6, issue 14): Debian's grpcio
as client and as backend, over TLS to the proxy (SNI and :authority =
the route's hostname), h2c or TLS (backend_tls) behind it. Every RPC
kind, trailers both ways, an error status, a 4 MB message each way, and
a backend that is down answered with a gRPC status in trailers-only
form.

The proxy under test is one fixture, front(): mc-proxy by default;
GRPC_TEST_PEER=nginx runs the same cases through Debian's nginx
(`listen ... ssl http2` + `grpc_pass`), the reference these cases were
checked against.

Run: /usr/bin/python3 t/integration/test_grpc.py [NAME...]"""

import hashlib
import os
import queue
import socket
import ssl
import sys
import time
from concurrent import futures

import grpc
import h2.config
import h2.connection
import h2.events

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

PEER = os.environ.get("GRPC_TEST_PEER", "mc-proxy")
HOST = "g.test"
SERVICE = "mctest.Echo"
BIG = 4 << 20
MSG_LIMIT = 16 << 20  # above BIG plus framing, on every gRPC end
CALL_TIMEOUT = 10.0  # every RPC's deadline: far above what a working call takes
N_STREAM = 500
N_PINGPONG = 100
GRPC_OPTIONS = [("grpc.max_send_message_length", MSG_LIMIT),
                ("grpc.max_receive_message_length", MSG_LIMIT)]


# ---------------------------------------------------------------- backend


def _unary(request, context):
    """Echoes the request; tells in its trailers what the backend saw."""
    seen = dict(context.invocation_metadata())
    context.send_initial_metadata((("x-initial", "hello"),))
    context.set_trailing_metadata((
        ("x-trailer", "done"), ("x-trailer-bin", b"\x00\xffbin"),
        ("x-seen-request", seen.get("x-request", "")),
        ("x-seen-xff", seen.get("x-forwarded-for", "")),
        ("x-seen-real-ip", seen.get("x-real-ip", "")),
        ("x-seen-proto", seen.get("x-forwarded-proto", "")),
        ("x-seen-tls", ",".join(v.decode() for v in
                                context.auth_context().get("transport_security_type", [])))))
    return b"echo:" + request


def _fail(request, context):
    context.set_trailing_metadata((("x-why", "missing"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def _big(request, context):
    return request[::-1]


def _count(request, context):
    """Server streaming: as many messages as the request says."""
    for i in range(int(request)):
        yield b"%06d" % i


def _sum(request_iterator, context):
    """Client streaming: the sum of the numbers sent, and how many."""
    total = n = 0
    for m in request_iterator:
        total += int(m)
        n += 1
    return b"%d %d" % (n, total)


def _pong(request_iterator, context):
    for m in request_iterator:
        yield b"pong " + m


HANDLERS = grpc.method_handlers_generic_handler(SERVICE, {
    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
    "Big": grpc.unary_unary_rpc_method_handler(_big),
    "Count": grpc.unary_stream_rpc_method_handler(_count),
    "Sum": grpc.stream_unary_rpc_method_handler(_sum),
    "Pong": grpc.stream_stream_rpc_method_handler(_pong),
})


class Backend:
    """A grpcio server on loopback, plaintext (h2c) or TLS with bcs's
    certificate and key; .addr is host:port."""

    def __init__(self, bcs=None, options=()):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[HANDLERS],
                                  options=GRPC_OPTIONS + list(options))
        if bcs is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            with open(bcs.key, "rb") as k, open(bcs.cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = self.server.add_secure_port("127.0.0.1:0", creds)
        assert port, "the gRPC backend could not bind"
        self.addr = "127.0.0.1:%d" % port
        self.server.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None).wait(5)


# ---------------------------------------------------------------- proxy


def front(tmp, cs, backend, backend_tls=False):
    """The proxy under test (PEER), not started: use it in `with`. It
    terminates TLS for HOST with cs's certificate and passes gRPC to
    backend (host:port), over TLS if backend_tls. .port is where it
    listens on 127.0.0.1."""
    if PEER == "mc-proxy":
        route = {"hostname": HOST, "backend": backend, "mode": "l7", "tls_cert": cs.cert,
                 "tls_key": cs.key}
        if backend_tls:
            route["backend_tls"] = True
        return mctest.proxy_server([route])
    if PEER == "nginx":
        return NginxFront(tmp, cs, backend, backend_tls)
    raise AssertionError("GRPC_TEST_PEER=%s: expected mc-proxy or nginx" % PEER)


class NginxFront:
    """nginx doing what the route does: `grpc_pass`, the forwarding
    headers replaced, and an unreachable backend answered with
    grpc-status 14 (UNAVAILABLE) in a HEADERS-only reply, nginx's way of
    giving gRPC clients a status rather than an HTML 502."""

    def __init__(self, tmp, cs, backend, backend_tls):
        exe = mctest.require_tool("nginx")
        self.port = mctest.free_port()
        d = tmp.path
        tls = ("grpc_ssl_server_name on;\n            grpc_ssl_name %s;" % HOST
               if backend_tls else "")
        conf = tmp.write("nginx-grpc.conf", """daemon off;
master_process off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.err info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        server_name %(host)s;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        location / {
            grpc_pass %(scheme)s://%(backend)s;
            grpc_set_header X-Forwarded-For $remote_addr;
            grpc_set_header X-Real-IP $remote_addr;
            grpc_set_header X-Forwarded-Proto https;
            %(tls)s
            error_page 502 503 504 = /grpc-unavailable;
        }
        location = /grpc-unavailable {
            internal;
            add_header content-type application/grpc;
            add_header grpc-status 14;
            add_header grpc-message "backend unavailable";
            return 204;
        }
    }
}
""" % {"d": d, "port": self.port, "host": HOST, "cert": cs.cert, "key": cs.key,
       "scheme": "grpcs" if backend_tls else "grpc", "backend": backend, "tls": tls})
        self.argv = [exe, "-e", d + "/nginx.err", "-p", d, "-c", conf]
        self.dir = d
        self.daemon = None

    def __enter__(self):
        self.daemon = mctest.Daemon("nginx", self.argv, self.port, self.dir)
        return self

    def __exit__(self, *exc):
        self.daemon.close()


# ---------------------------------------------------------------- client


def channel(cs, port):
    """A grpcio channel over TLS to the proxy: SNI, certificate name and
    :authority are HOST, cs's CA is trusted."""
    with open(cs.ca_cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel("127.0.0.1:%d" % port, creds, options=GRPC_OPTIONS + [
        ("grpc.ssl_target_name_override", HOST), ("grpc.default_authority", HOST),
        ("grpc.enable_http_proxy", 0)])


def method(ch, kind, name):
    return getattr(ch, kind)("/%s/%s" % (SERVICE, name))


def routed(backend_tls=False):
    """A test running fn(channel) with a channel through the proxy to a
    gRPC backend (TLS if backend_tls), all of it stopped afterwards."""
    def wrap(fn):
        def run():
            with mctest.TempDir() as tmp:
                cs = mctest.gen_ca_and_cert(HOST, directory=tmp.path)
                # HOST among its names too: grpcio logs an error for an SNI it lacks
                bcs = (mctest.gen_ca_and_cert("backend.internal", ["backend.internal", HOST],
                                              directory=tmp.path) if backend_tls else None)
                with Backend(bcs) as be, front(tmp, cs, be.addr, backend_tls) as px, \
                        channel(cs, px.port) as ch:
                    try:
                        fn(ch)
                    except grpc.RpcError as e:  # its text is many lines: the status says it
                        raise AssertionError("RPC failed: %s: %s" % (e.code(), e.details()))
        run.__name__ = fn.__name__
        return test(run)
    return wrap


# ---------------------------------------------------------------- cases


def check_unary_with_trailers(ch, tls="insecure"):
    resp, call = method(ch, "unary_unary", "Unary").with_call(
        b"hi", timeout=CALL_TIMEOUT,
        metadata=(("x-request", "r1"), ("x-forwarded-for", "6.6.6.6"),
                  ("x-real-ip", "6.6.6.6"), ("x-forwarded-proto", "http")))
    assert resp == b"echo:hi", resp
    assert call.code() == grpc.StatusCode.OK, call.code()
    assert ("x-initial", "hello") in call.initial_metadata(), call.initial_metadata()
    trailers = dict(call.trailing_metadata())
    want = {"x-trailer": "done", "x-trailer-bin": b"\x00\xffbin", "x-seen-request": "r1",
            "x-seen-xff": "127.0.0.1", "x-seen-real-ip": "127.0.0.1", "x-seen-proto": "https",
            "x-seen-tls": tls}
    got = {k: trailers.get(k) for k in want}
    assert got == want, got


def check_error_status_and_message(ch):
    try:
        method(ch, "unary_unary", "Fail")(b"x", timeout=CALL_TIMEOUT)
    except grpc.RpcError as e:
        assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing"), \
            (e.code(), e.details())
        assert ("x-why", "missing") in e.trailing_metadata(), e.trailing_metadata()
        return
    raise AssertionError("the failing call succeeded")


def check_server_streaming(ch):
    got = list(method(ch, "unary_stream", "Count")(b"%d" % N_STREAM, timeout=CALL_TIMEOUT))
    assert got == [b"%06d" % i for i in range(N_STREAM)], (len(got), got[:3], got[-3:])


def check_client_streaming(ch):
    resp = method(ch, "stream_unary", "Sum")((b"%d" % i for i in range(N_STREAM)),
                                             timeout=CALL_TIMEOUT)
    assert resp == b"%d %d" % (N_STREAM, N_STREAM * (N_STREAM - 1) // 2), resp


def check_bidi_ping_pong(ch):
    """Each message is sent only after the answer to the previous one
    came back: the proxy must pass every message on as it comes, both
    ways, without waiting for more."""
    outbox = queue.Queue()

    def requests():
        while True:
            m = outbox.get(timeout=CALL_TIMEOUT)
            if m is None:
                return
            yield m

    call = method(ch, "stream_stream", "Pong")(requests(), timeout=CALL_TIMEOUT)
    try:
        for i in range(N_PINGPONG):
            outbox.put(b"%d" % i)
            got = next(call)
            assert got == b"pong %d" % i, (i, got)
    finally:
        outbox.put(None)
    assert list(call) == [] and call.code() == grpc.StatusCode.OK, call.code()


def check_concurrent_calls(ch):
    """60 calls in flight at once on the channel's one connection, 10 of
    them streams: each gets its own answers, whole and in order."""
    streams = [method(ch, "unary_stream", "Count")(b"%d" % (50 + i), timeout=CALL_TIMEOUT)
               for i in range(10)]
    calls = [method(ch, "unary_unary", "Unary").future(b"c%d" % i, timeout=CALL_TIMEOUT)
             for i in range(50)]
    for i, c in enumerate(calls):
        assert c.result() == b"echo:c%d" % i, (i, c.result())
    for i, st in enumerate(streams):
        got = list(st)
        assert got == [b"%06d" % j for j in range(50 + i)], (i, len(got))


def check_big_message_each_way(ch):
    payload = hashlib.sha256(b"seed").digest() * (BIG // 32)
    payload = bytes(b ^ (i & 0xff) for i, b in enumerate(payload))
    resp = method(ch, "unary_unary", "Big")(payload, timeout=2 * CALL_TIMEOUT)
    assert len(resp) == BIG and resp == payload[::-1], len(resp)


@routed()
def unary_with_trailers_and_forwarding_headers(ch):
    check_unary_with_trailers(ch)


@routed()
def error_status_and_message_reach_the_client(ch):
    check_error_status_and_message(ch)


@routed()
def server_streaming_500_messages(ch):
    check_server_streaming(ch)


@routed()
def client_streaming_sum_of_500_messages(ch):
    check_client_streaming(ch)


@routed()
def bidi_streaming_100_round_trips(ch):
    check_bidi_ping_pong(ch)


@routed()
def concurrent_calls_on_one_connection_keep_their_own_answers(ch):
    check_concurrent_calls(ch)


@routed()
def a_4mb_message_each_way(ch):
    check_big_message_each_way(ch)


@routed(backend_tls=True)
def every_rpc_kind_through_a_tls_backend(ch):
    check_unary_with_trailers(ch, tls="ssl")
    check_error_status_and_message(ch)
    check_server_streaming(ch)
    check_client_streaming(ch)
    check_bidi_ping_pong(ch)
    check_concurrent_calls(ch)


def raw_grpc_call(cs, port, path, timeout=CALL_TIMEOUT):
    """One gRPC request over TLS with python3-h2 (ALPN h2 only); returns
    the events of its stream, in order, until it ended or was reset."""
    ctx = ssl.create_default_context(cafile=cs.ca_cert)
    ctx.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=HOST) as s:
        assert s.selected_alpn_protocol() == "h2", \
            "ALPN selected %r, expected h2" % s.selected_alpn_protocol()
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                (":authority", HOST), (":path", path),
                                ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=True)
        s.sendall(conn.data_to_send())
        events = []
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65536)
            assert data, "the proxy closed the connection; stream events: %r" % events
            for ev in conn.receive_data(data):
                if getattr(ev, "stream_id", None) == sid:
                    events.append(ev)
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) \
                        and ev.stream_id == sid:
                    return events
            s.sendall(conn.data_to_send())
        raise AssertionError("stream not ended within %.0f s: %r" % (timeout, events))


@test
def backend_down_is_unavailable_in_trailers_only_form():
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert(HOST, directory=tmp.path)
        with front(tmp, cs, "127.0.0.1:%d" % mctest.free_port()) as px:
            events = raw_grpc_call(cs, px.port, "/%s/Unary" % SERVICE)
            kinds = [type(ev).__name__ for ev in events]
            assert kinds == ["ResponseReceived", "StreamEnded"], kinds
            assert events[0].stream_ended is not None, "HEADERS without END_STREAM"
            headers = {k.decode(): v.decode() for k, v in events[0].headers}
            assert headers.get("grpc-status") == "14", headers
            assert headers.get("content-type", "").startswith("application/grpc"), headers
            with channel(cs, px.port) as ch:
                try:
                    method(ch, "unary_unary", "Unary")(b"x", timeout=CALL_TIMEOUT)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                    # a status the proxy sent, not one grpcio made of an HTTP error
                    assert "http2 header with status" not in e.details(), e.details()
                    return
            raise AssertionError("a call to a backend that is down succeeded")


@test
def calls_go_on_after_the_backend_sends_goaway():
    """A backend that ends its connections by age (GOAWAY, as grpc-go's
    MaxConnectionAge does): calls in flight finish on the old session,
    new ones go on a new one; none fails."""
    with mctest.TempDir() as tmp:
        cs = mctest.gen_ca_and_cert(HOST, directory=tmp.path)
        age = [("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 5000)]
        with Backend(options=age) as be, front(tmp, cs, be.addr) as px, \
                channel(cs, px.port) as ch:
            # a call held open keeps the first session past its GOAWAY
            hold = method(ch, "unary_stream", "Count")(b"1000000", timeout=CALL_TIMEOUT)
            next(hold)
            deadline = time.monotonic() + 1.5
            n = 0
            while time.monotonic() < deadline:
                assert method(ch, "unary_unary", "Unary")(b"%d" % n, timeout=CALL_TIMEOUT) == \
                    b"echo:%d" % n
                n += 1
                next(hold)
                time.sleep(0.01)
            hold.cancel()
            assert n > 10, n


if __name__ == "__main__":
    mctest.main()
