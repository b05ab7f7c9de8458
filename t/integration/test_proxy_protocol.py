#!/usr/bin/python3
"""PROXY protocol: receiving v1/v2 from trusted upstreams, sending v2 to
backends, and the real peers on both sides (SPEC sections 3-5, issue 12):
HAProxy send-proxy / send-proxy-v2 in front of mc-proxy, an nginx stream
server with `listen ... proxy_protocol` behind it.
Run: /usr/bin/python3 t/integration/test_proxy_protocol.py [NAME...]"""

import ipaddress
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

# The access line's field for the TCP peer a connection came through,
# logged when it differs from the client address.
PEER_FIELD = "peer"

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


# ---------------------------------------------------------------- headers


def _ip(text):
    return ipaddress.ip_address(text)


def v1_header(src, dst):
    """A v1 line for src and dst, (ip, port) pairs of the same family."""
    proto = "TCP4" if _ip(src[0]).version == 4 else "TCP6"
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src[0], dst[0], src[1], dst[1])).encode()


def v2_header(src, dst, tlvs=b""):
    """A v2 PROXY header for src and dst, (ip, port) pairs of the same
    family, written from the specification (not from mc-proxy's code)."""
    v4 = _ip(src[0]).version == 4
    block = (_ip(src[0]).packed + _ip(dst[0]).packed + struct.pack("!HH", src[1], dst[1]) +
             tlvs)
    return V2_SIG + bytes([0x21, 0x11 if v4 else 0x21]) + struct.pack("!H", len(block)) + block


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def fmt_addr(ip, port):
    return ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)


# ---------------------------------------------------------------- harness


def pp_server(routes, trusted=("127.0.0.1/32",), addr=None, **overrides):
    """A Server whose one listener requires a PROXY header from trusted."""
    opts = {"proxy_protocol": True, "trusted_proxies": list(trusted)}
    overrides.setdefault("proxy", {"handshake_timeout": "10s"})
    return mctest.proxy_server(routes, addr=addr, listener_opts=opts, **overrides)


def connect_from(src_ip, port, host="127.0.0.1", timeout=5.0):
    """A client socket bound to src_ip (any 127/8 address is local on
    Linux), connected to host:port, Nagle off so one sendall is one
    segment."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((src_ip, 0))
    s.connect((host, port))
    return s


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def header_then_hello_handler(header_len, name=b"B"):
    """Raw backend: reads header_len bytes (the PROXY header mc-proxy must
    send first), then the ClientHello; keeps (header, hello) in
    backend.results, greets with name and echoes."""
    def handler(sock, backend):
        header = mctest.recv_exact(sock, header_len)
        backend.results.append((header, mctest.read_hello(sock)))
        sock.sendall(name + b"\n")
        mctest.echo_handler(sock)
    return handler


def routed(srv, backend, sock, data, greet=b"A\n"):
    """Sends data (PROXY header and ClientHello) on sock; the backend's
    greeting must come back and the backend must have got the hello
    alone, byte for byte."""
    n = len(backend.results)
    sock.sendall(data)
    assert mctest.recv_exact(sock, len(greet), 10) == greet, "not routed to the backend"
    mctest.wait_until(lambda: len(backend.results) > n, 5, what="the backend's hello")
    return backend.results[n]


def refused(sock, data, how, what):
    """Sends data (which the peer may refuse before it arrives) and expects
    the connection to end without a byte, by RST when how is "rst"."""
    mctest.send_may_fail(sock, data)
    got, ended, _ = mctest.recv_until_close(sock, 5)
    assert ended != "timeout", "%s: still open" % what
    assert not got, "%s: got %r" % (what, got[:64])
    if how == "rst":
        assert ended == "rst", "%s: closed by %s, expected an RST" % (what, ended)


def haproxy_front(tmp, port, target_port, option):
    """HAProxy listening on port, forwarding TCP to 127.0.0.1:target_port
    with the server option send-proxy or send-proxy-v2."""
    exe = mctest.require_tool("haproxy")
    conf = tmp.write("haproxy.cfg", "\n".join([
        "global", "    maxconn 64",
        "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 30s",
        "    timeout server 30s",
        "frontend fe", "    bind 127.0.0.1:%d" % port, "    default_backend be",
        "backend be", "    server mc 127.0.0.1:%d %s" % (target_port, option), ""]))
    return mctest.Daemon("haproxy", [exe, "-db", "-f", conf], port, tmp.path)


def nginx_behind(tmp, port):
    """An nginx stream server on port that reads a PROXY header and answers
    with the addresses in it: "src_ip:src_port dst_ip:dst_port\\n"."""
    exe = mctest.require_tool("nginx")
    if not os.path.exists(NGINX_STREAM_MODULE):
        mctest.skip("nginx has no stream module (tools/deps.sh installs libnginx-mod-stream)")
    d = tmp.path
    conf = tmp.write("nginx.conf", """daemon off;
master_process off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.err info;
load_module %(mod)s;
events { worker_connections 64; }
stream {
    server {
        listen 127.0.0.1:%(port)d proxy_protocol;
        return "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:%(sp)s\\n";
    }
}
""" % {"d": d, "mod": NGINX_STREAM_MODULE, "port": port, "sp": "$proxy_protocol_server_port"})
    return mctest.Daemon("nginx", [exe, "-e", d + "/nginx.err", "-p", d, "-c", conf], port, d)


# ---------------------------------------------------------------- receive


@test
def v1_and_v2_with_hello_in_one_segment():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        cases = [
            ("v1 TCP4", v1_header(("203.0.113.7", 40000), ("198.51.100.1", 443)),
             "203.0.113.7:40000"),
            ("v1 TCP6", v1_header(("2001:db8::7", 40001), ("2001:db8::1", 443)),
             "[2001:db8::7]:40001"),
            ("v2 TCP4", v2_header(("203.0.113.8", 40002), ("198.51.100.1", 443)),
             "203.0.113.8:40002"),
            ("v2 TCP6", v2_header(("2001:db8::8", 40003), ("2001:db8::1", 443)),
             "[2001:db8::8]:40003"),
            # TLVs are skipped, even when the ClientHello shares the buffer
            ("v2 TCP4 with TLVs", v2_header(("203.0.113.9", 40004), ("198.51.100.1", 443),
                                            tlv(0x02, b"a.test") + tlv(0x04, b"\0" * 40)),
             "203.0.113.9:40004"),
        ]
        for what, header, client in cases:
            s = mctest.connect(srv.port, nodelay=True)
            cport = s.getsockname()[1]
            got = routed(srv, ba, s, header + hello)
            s.close()
            assert got == hello, "%s: the backend got %d bytes, not the hello alone" % (
                what, len(got))
            line = srv.wait_conn_log(client=client, result="ok")
            assert line.get(PEER_FIELD) == "127.0.0.1:%d" % cport, (what, line)


@test
def header_and_hello_one_byte_at_a_time():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        for header, client in ((v1_header(("203.0.113.7", 1), ("198.51.100.1", 443)),
                                "203.0.113.7:1"),
                               (v2_header(("2001:db8::7", 65535), ("2001:db8::1", 443)),
                                "[2001:db8::7]:65535")):
            s = mctest.connect(srv.port, nodelay=True)
            mctest.send_slowly(s, header + hello, chunk=1, delay=0.001)
            assert mctest.recv_exact(s, 2, 10) == b"A\n"
            s.close()
            mctest.wait_until(lambda: ba.results, 5, what="the backend's hello")
            assert ba.results.pop() == hello, "the backend got more or less than the hello"
            srv.wait_conn_log(client=client, result="ok")


@test
def local_and_unknown_keep_the_peer_address():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        for what, header in (("v2 LOCAL", v2_local()),
                             ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n"),
                             ("v1 UNKNOWN with addresses", b"PROXY UNKNOWN ::1 ::2 1 2\r\n")):
            s = mctest.connect(srv.port, nodelay=True)
            cport = s.getsockname()[1]
            assert routed(srv, ba, s, header + hello) == hello, what
            s.close()
            line = srv.wait_conn_log(client="127.0.0.1:%d" % cport, result="ok")
            assert PEER_FIELD not in line, "%s: peer logged though it is the client: %r" % (
                what, line)


@test
def untrusted_peer_is_reset():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)], trusted=["192.0.2.0/24", "2001:db8::/32"]) as srv:
        s = mctest.connect(srv.port, nodelay=True)
        refused(s, v1_header(("203.0.113.7", 1), ("198.51.100.1", 443)) + hello, "rst",
                "a valid header from an untrusted peer")
        s.close()
        srv.wait_conn_log(result="untrusted_proxy")
        assert ba.accepted == 0, "an untrusted peer reached the backend"


@test
def trusted_peer_without_header_is_closed():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        s = mctest.connect(srv.port, nodelay=True)
        refused(s, mctest.client_hello_bytes("a.test"), "close", "a ClientHello without header")
        s.close()
        srv.wait_conn_log(result="bad_proxy_header")
        assert ba.accepted == 0


@test
def malformed_headers_are_reset():
    hello = mctest.client_hello_bytes("a.test")
    bad = [
        b"PROXY TCP4  203.0.113.7 198.51.100.1 1 443\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.7 198.51.100.1 1 443\n",  # lone LF
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 443\r\n",  # family mismatch
        b"PROXY TCP4 203.0.113.07 198.51.100.1 1 443\r\n",  # leading zero
        b"PROXY TCP4 203.0.113.7 198.51.100.1 65536 443\r\n",  # port range
        b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",  # over 107 bytes
        V2_SIG + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1
        V2_SIG + b"\x22\x11\x00\x0c" + b"\0" * 12,  # command 2
        V2_SIG + b"\x21\x31\x00\xd8" + b"\0" * 216,  # PROXY over a UNIX socket
        V2_SIG + b"\x21\x11\x00\x0b" + b"\0" * 11,  # shorter than the address block
        V2_SIG + b"\x21\x11\x00\x11" + b"\0" * 12 + b"\x04\x00\x03\0\0",  # TLV overruns
        V2_SIG + b"\x21\x11\xff\xff",  # over mc-proxy's cap
    ]
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        for i, header in enumerate(bad):
            s = mctest.connect(srv.port, nodelay=True)
            refused(s, header + hello, "rst", "bad header %d %r" % (i, header[:48]))
            s.close()
        mctest.wait_until(lambda: len([r for r in srv.conn_logs()
                                       if r.get("result") == "bad_proxy_header"]) == len(bad),
                          5, what="%d bad_proxy_header lines" % len(bad))
        assert ba.accepted == 0


@test
def partial_header_times_out():
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)], proxy={"handshake_timeout": "1s"}) as srv:
        s = mctest.connect(srv.port, nodelay=True)
        s.sendall(b"PROXY TCP4 203.0.113.7 ")
        secs = mctest.assert_closed_without_bytes(s, 8, what="a header that stays partial")
        s.close()
        assert secs >= 0.9, "closed after %.2f s, before handshake_timeout" % secs
        srv.wait_conn_log(result="hello_timeout")
        assert ba.accepted == 0


@test
def firewall_sees_the_header_address():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)],
                      firewall={"blocked_ips": ["203.0.113.66"],
                                "blocked_cidrs": ["2001:db8:66::/48"]}) as srv:
        for header, result in (
                (v1_header(("203.0.113.66", 1), ("198.51.100.1", 443)), "firewall_ip"),
                (v2_header(("2001:db8:66::1", 1), ("2001:db8::1", 443)), "firewall_cidr"),
                # IPv4-mapped in TCP6 is the IPv4 address to the firewall
                (v1_header(("::ffff:203.0.113.66", 1), ("::ffff:198.51.100.1", 443)),
                 "firewall_ip")):
            s = mctest.connect(srv.port, nodelay=True)
            refused(s, header + hello, "rst", result)
            s.close()
            srv.wait_conn_log(result=result)
        assert ba.accepted == 0, "a blocked client reached the backend"
        s = mctest.connect(srv.port, nodelay=True)
        routed(srv, ba, s, v1_header(("203.0.113.7", 1), ("198.51.100.1", 443)) + hello)
        s.close()


# ---------------------------------------------------------------- send


def expect_sent_header(listen, client_host, client_ip, expect_ip, expect_dst_ip):
    """A route with send_proxy_protocol on a listener at listen; a client
    from client_ip connecting to client_host. The backend must receive a
    v2 header with expect_ip/expect_dst_ip and the two ports, exactly,
    then the hello."""
    hello = mctest.client_hello_bytes("a.test")
    size = 28 if _ip(expect_ip).version == 4 else 52
    with mctest.RawBackend(header_then_hello_handler(size, b"A")) as ba, \
            mctest.proxy_server([{"hostname": "a.test", "backend": ba.addr,
                                  "send_proxy_protocol": True}], addr=listen) as srv:
        s = connect_from(client_ip, srv.port, host=client_host)
        cport = s.getsockname()[1]
        header, got_hello = routed(srv, ba, s, hello)
        s.close()
        want = v2_header((expect_ip, cport), (expect_dst_ip, srv.port))
        assert header == want, "header %s, expected %s" % (header.hex(), want.hex())
        assert got_hello == hello, "the hello after the header differs"


@test
def sends_v2_for_ipv4_client():
    port = mctest.free_port()
    expect_sent_header("127.0.0.1:%d" % port, "127.0.0.1", "127.0.0.9", "127.0.0.9",
                       "127.0.0.1")


@test
def sends_v2_for_ipv6_client():
    if not have_ipv6_loopback():
        mctest.skip("no IPv6 loopback")
    port = mctest.free_port(socket.AF_INET6)
    expect_sent_header("[::1]:%d" % port, "::1", "::1", "::1", "::1")


@test
def sends_v2_tcp4_for_ipv4_mapped_client():
    if not have_ipv6_loopback():
        mctest.skip("no IPv6 loopback")
    port = mctest.free_port(dual=True)
    # a dual-stack listener sees ::ffff:127.0.0.9; the header says TCP4
    expect_sent_header(":%d" % port, "127.0.0.1", "127.0.0.9", "127.0.0.9", "127.0.0.1")


@test
def received_address_is_sent_on():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.RawBackend(header_then_hello_handler(28, b"A")) as b4, \
            mctest.RawBackend(header_then_hello_handler(52, b"A")) as b6, \
            pp_server([{"hostname": "a.test", "backend": b4.addr, "send_proxy_protocol": True},
                       {"hostname": "b.test", "backend": b6.addr,
                        "send_proxy_protocol": True}]) as srv:
        src, dst = ("203.0.113.7", 40000), ("198.51.100.1", 443)
        s = mctest.connect(srv.port, nodelay=True)
        header, _ = routed(srv, b4, s, v2_header(src, dst) + hello)
        s.close()
        assert header == v2_header(src, dst), header.hex()

        # an IPv4-mapped client in a TCP6 v1 line goes on as TCP4
        s = mctest.connect(srv.port, nodelay=True)
        header, _ = routed(srv, b4, s, v1_header(("::ffff:203.0.113.8", 1),
                                                 ("::ffff:198.51.100.1", 443)) + hello)
        s.close()
        assert header == v2_header(("203.0.113.8", 1), dst), header.hex()

        hello_b = mctest.client_hello_bytes("b.test")
        src6, dst6 = ("2001:db8::7", 40001), ("2001:db8::1", 443)
        s = mctest.connect(srv.port, nodelay=True)
        header, _ = routed(srv, b6, s, v1_header(src6, dst6) + hello_b)
        s.close()
        assert header == v2_header(src6, dst6), header.hex()

        # after LOCAL the TCP peer's own addresses go out
        s = mctest.connect(srv.port, nodelay=True)
        cport = s.getsockname()[1]
        header, _ = routed(srv, b4, s, v2_local() + hello)
        s.close()
        assert header == v2_header(("127.0.0.1", cport), ("127.0.0.1", srv.port)), header.hex()


@test
def edge_to_origin_chain_with_firewall_on_origin():
    hello = mctest.client_hello_bytes("a.test")
    origin_port, edge_port = mctest.free_port(), mctest.free_port()
    origin_addr, edge_addr = "127.0.0.1:%d" % origin_port, "127.0.0.1:%d" % edge_port
    with mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)], addr=origin_addr,
                      firewall={"blocked_ips": ["127.0.0.3"]}) as origin, \
            mctest.proxy_server([{"hostname": "a.test", "backend": origin_addr,
                                  "send_proxy_protocol": True}], addr=edge_addr) as edge:
        s = connect_from("127.0.0.3", edge.port)
        blocked_port = s.getsockname()[1]
        refused(s, hello, "close", "the blocked client through the edge")
        s.close()
        origin.wait_conn_log(client="127.0.0.3:%d" % blocked_port, result="firewall_ip")
        assert ba.accepted == 0, "the blocked client reached the backend"

        s = connect_from("127.0.0.2", edge.port)
        cport = s.getsockname()[1]
        assert routed(origin, ba, s, hello) == hello
        mctest.echo_roundtrip(s, b"through two proxies")
        s.close()
        line = origin.wait_conn_log(client="127.0.0.2:%d" % cport, result="ok")
        assert line.get(PEER_FIELD, "").startswith("127.0.0.1:"), line
        edge.wait_conn_log(client="127.0.0.2:%d" % cport, result="ok")

        # the origin trusts only the edge's address, not its clients'
        s = connect_from("127.0.0.2", origin.port)
        refused(s, v1_header(("203.0.113.7", 1), ("198.51.100.1", 443)) + hello, "rst",
                "a client straight to the origin")
        s.close()
        origin.wait_conn_log(result="untrusted_proxy")


# ---------------------------------------------------------------- real peers


def through_haproxy(option):
    hello = mctest.client_hello_bytes("a.test")
    with mctest.TempDir() as tmp, \
            mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            pp_server([("a.test", ba.addr)]) as srv:
        front = mctest.free_port()
        with haproxy_front(tmp, front, srv.port, option):
            s = connect_from("127.0.0.5", front)
            cport = s.getsockname()[1]
            assert routed(srv, ba, s, hello) == hello
            mctest.echo_roundtrip(s, b"via haproxy " + option.encode())
            s.close()
            line = srv.wait_conn_log(client="127.0.0.5:%d" % cport, result="ok")
            assert line.get(PEER_FIELD, "").startswith("127.0.0.1:"), line


@test
def haproxy_send_proxy_v2_in_front():
    through_haproxy("send-proxy-v2")


@test
def haproxy_send_proxy_v1_in_front():
    through_haproxy("send-proxy")


@test
def nginx_behind_reads_the_address_sent():
    hello = mctest.client_hello_bytes("a.test")
    with mctest.TempDir() as tmp:
        nport = mctest.free_port()
        with nginx_behind(tmp, nport), \
                mctest.proxy_server([{"hostname": "a.test", "backend": "127.0.0.1:%d" % nport,
                                      "send_proxy_protocol": True}]) as srv:
            s = connect_from("127.0.0.5", srv.port)
            cport = s.getsockname()[1]
            s.sendall(hello)
            data, how, _ = mctest.recv_until_close(s, 10)
            s.close()
            want = "127.0.0.5:%d 127.0.0.1:%d\n" % (cport, srv.port)
            assert data.decode(errors="replace") == want, "nginx read %r, expected %r (%s)" % (
                data, want, how)


if __name__ == "__main__":
    mctest.main()
