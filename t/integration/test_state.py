"""
The database owns the state (SPEC section 7): seeded from the config on
first run only, the database wins on later runs, a corrupt file is
refused, snapshots are consistent while traffic flows, and only the
master ever holds the database open.
"""

import os
import sqlite3
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def config(db, routes, port, **extra):
    cfg = mctest.base_config([mctest.listener("127.0.0.1:%d" % port, routes)], **extra)
    cfg["database"] = {"path": db}
    return cfg


def routed_to(port, sni, greet):
    """True when a ClientHello for sni reaches the backend greeting with greet."""
    s = mctest.connect(port)
    try:
        s.sendall(mctest.client_hello_bytes(sni))
        return mctest.recv_exact(s, len(greet), 5) == greet
    finally:
        s.close()


def db_rows(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return {
            "routes": sorted(con.execute("SELECT hostname, backend, mode FROM routes").fetchall()),
            "rules": sorted(con.execute("SELECT type, value FROM firewall_rules").fetchall()),
        }
    finally:
        con.close()


@test
def first_run_seeds_then_the_database_wins():
    port = mctest.free_port()
    with mctest.TempDir() as d, \
            mctest.RawBackend(mctest.hello_greet_handler(b"A")) as ba, \
            mctest.RawBackend(mctest.hello_greet_handler(b"B")) as bb:
        db = d.join("state.db")
        with mctest.Server(config(db, [("a.test", ba.addr)], port)) as srv:
            srv.wait_log(lambda r: "seeded" in r.get("msg", ""), what="the seed message")
            assert routed_to(port, "a.test", b"A\n")
        mode = stat.S_IMODE(os.stat(db).st_mode)
        assert mode == 0o600, "database mode %o, expected 600" % mode

        # second run: the config now points a.test elsewhere and adds b.test
        changed = [("a.test", bb.addr), ("b.test", bb.addr)]
        with mctest.Server(config(db, changed, port)) as srv:
            srv.wait_log(lambda r: "database wins" in r.get("msg", "")
                         and "2 entries" in r.get("msg", ""),
                         what="the 'database wins' message counting 2 differences")
            assert not any("seeded" in r.get("msg", "") for r in srv.log_lines())
            assert routed_to(port, "a.test", b"A\n"), "a.test must keep the database's backend"
            s = mctest.connect(port)
            s.sendall(mctest.client_hello_bytes("b.test"))
            mctest.assert_closed_without_bytes(s, 3, what="b.test (only in the config)")
            s.close()
            srv.wait_conn_log(sni="b.test", result="no_route")


@test
def corrupt_database_is_refused():
    with mctest.TempDir() as d:
        db = d.join("state.db")
        # a valid database whose second page (a b-tree page: its header is
        # structure, not payload) is overwritten with garbage
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, "row %d" % i) for i in range(2000)])
        con.commit()
        page = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
        with open(db, "r+b") as f:
            f.seek(page)
            f.write(b"\xff" * 64)
        srv = mctest.Server(config(db, [("a.test", "127.0.0.1:9")], mctest.free_port()),
                            wait_ready=False)
        with srv:
            rc = srv.wait_exit(15)
            assert rc not in (None, 0), "mc-proxy started on a corrupt database (rc %s)" % rc
            assert "corrupt" in srv.log_text(), srv.log_tail()
            assert "READY=1" not in srv.notify.drain(), "READY=1 sent for a corrupt database"

        with open(db, "wb") as f:
            f.write(b"this is not a database at all" * 200)
        srv = mctest.Server(config(db, [("a.test", "127.0.0.1:9")], mctest.free_port()),
                            wait_ready=False)
        with srv:
            rc = srv.wait_exit(15)
            assert rc not in (None, 0), "mc-proxy started on a non-database (rc %s)" % rc
            assert "not a database" in srv.log_text() or "corrupt" in srv.log_text(), \
                srv.log_tail()


@test
def snapshot_while_traffic_flows():
    port = mctest.free_port()
    routes = [("h%d.test" % i, "127.0.0.1:%d" % (20000 + i)) for i in range(50)]
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_echo_handler) as be:
        db = d.join("state.db")
        cfg = config(db, routes + [("a.test", be.addr)], port,
                     firewall={"blocked_ips": ["192.0.2.7"], "blocked_cidrs": ["10.9.0.0/16"]})
        cfg["database"]["backups_keep"] = 2
        with mctest.Server(cfg) as srv:
            relays = []
            for _ in range(4):
                s = mctest.connect(port)
                s.sendall(mctest.client_hello_bytes("a.test"))
                relays.append(s)
            out = d.join("snap.db")
            for s in relays:
                mctest.echo_roundtrip(s, os.urandom(100000))
            r = subprocess.run([srv.bin, "snapshot", "-c", srv.config_path, "-o", out],
                               capture_output=True, timeout=30)
            assert r.returncode == 0, r.stderr.decode()
            for s in relays:  # the relays kept flowing during the snapshot
                mctest.echo_roundtrip(s, os.urandom(100000))
                s.close()
            con = sqlite3.connect("file:%s?mode=ro" % out, uri=True)
            assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            con.close()
            assert db_rows(out) == db_rows(db), "snapshot differs from the live database"
            assert len(db_rows(out)["routes"]) == 51 and len(db_rows(out)["rules"]) == 2

            # default destination: <db dir>/backups, newest backups_keep kept
            written = []
            for _ in range(3):
                r = subprocess.run([srv.bin, "snapshot", "-c", srv.config_path],
                                   capture_output=True, timeout=30)
                assert r.returncode == 0, r.stderr.decode()
                written.append(r.stdout.decode().strip().rsplit(" ", 1)[-1])
            left = sorted(os.listdir(d.join("backups")))
            assert len(left) == 2, "backups kept: %s" % left
            assert os.path.basename(written[-1]) in left, (written, left)


@test
def only_the_master_holds_the_database():
    with mctest.TempDir() as d, mctest.RawBackend(mctest.hello_echo_handler) as be:
        db = d.join("state.db")
        with mctest.Server(config(db, [("a.test", be.addr)], mctest.free_port())) as srv:
            db_files = {os.path.realpath(db + sfx) for sfx in ("", "-wal", "-shm")}

            def open_db_files(pid):
                fds = os.path.join("/proc", str(pid), "fd")
                found = set()
                for fd in os.listdir(fds):
                    try:
                        target = os.readlink(os.path.join(fds, fd))
                    except OSError:
                        continue
                    if target in db_files:
                        found.add(target)
                return found

            assert open_db_files(srv.pid), "the master should hold the database open"
            workers = srv.worker_pids()
            assert len(workers) == 2, workers
            for pid in workers:
                assert not open_db_files(pid), "worker %d holds the database open" % pid
                with open("/proc/%d/status" % pid) as f:
                    uid = [l for l in f if l.startswith("Uid:")][0].split()[1:]
                assert all(u != "0" for u in uid), "worker %d runs as root: %s" % (pid, uid)
            st = os.stat(db)
            assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, \
                "database must be root-only so workers cannot open it"


if __name__ == "__main__":
    mctest.main()
