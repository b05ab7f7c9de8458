#!/usr/bin/python3
"""Command line: --version, check, environment overrides, refusing a bad
config (SPEC sections 3, 9). Run: /usr/bin/python3 t/integration/test_cli.py"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402


def run(args, env=None, timeout=20):
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run([mctest.require_binary()] + args, capture_output=True, timeout=timeout,
                       env=full_env, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def valid_config():
    return mctest.to_yaml(mctest.base_config(
        [mctest.listener("127.0.0.1:%d" % mctest.free_port(), [("a.test", "127.0.0.1:9")])]))


# Three errors, on lines 4, 9 and 11.
BAD_CONFIG = """\
database:
  path: mc-proxy.db
user: nobody
workers: 999
listeners:
  - addr: "127.0.0.1:8443"
    routes:
      - hostname: a.test
        backend: "no-port-here"
proxy:
  connect_timeout: 5parsecs
log:
  level: debug
  format: json
"""
BAD_ERRORS = [(4, "workers"), (9, "backend"), (11, "connect_timeout")]


@test
def version():
    rc, out, err = run(["--version"])
    assert rc == 0, (rc, out, err)
    text = out + err
    assert text.strip() and re.search(r"\d", text), "no version printed: %r" % text


@test
def check_valid_config():
    with mctest.TempDir() as tmp:
        path = tmp.write("ok.yaml", valid_config())
        rc, out, err = run(["check", "-c", path])
        assert rc == 0, "check exited %d: %s%s" % (rc, out, err)


@test
def check_reports_every_error_with_its_line():
    with mctest.TempDir() as tmp:
        path = tmp.write("bad.yaml", BAD_CONFIG)
        rc, out, err = run(["check", "-c", path])
        assert rc == 1, "check exited %d: %s%s" % (rc, out, err)
        lines = err.splitlines()
        for lineno, key in BAD_ERRORS:
            hits = [l for l in lines if key in l and re.search(r"(?<!\d)%d:|line %d\b" % (lineno, lineno), l)]
            assert hits, "no error naming %s at line %d in: %r" % (key, lineno, err)


@test
def env_override_error_names_variable():
    with mctest.TempDir() as tmp:
        path = tmp.write("ok.yaml", valid_config())
        rc, out, err = run(["check", "-c", path], env={"MCPROXY_PROXY_CONNECT_TIMEOUT": "bogus"})
        assert rc == 1, "check exited %d: %s%s" % (rc, out, err)
        assert "MCPROXY_PROXY_CONNECT_TIMEOUT" in err, err
        rc, out, err = run(["check", "-c", path], env={"MCPROXY_PROXY_CONNECT_TIMEOUT": "250ms"})
        assert rc == 0, "a valid override was refused: %s" % err


@test
def server_refuses_bad_config():
    srv = mctest.Server(BAD_CONFIG, wait_ready=False)
    srv.start()
    rc = srv.wait_exit(15)
    srv.notify.drain()
    assert rc not in (0, None) and rc > 0, "server exited %r on a bad config" % rc
    assert "READY=1" not in srv.notify.lines, srv.notify.lines
    assert "connect_timeout" in srv.log_text(), srv.log_tail()
    srv.close()


if __name__ == "__main__":
    mctest.main()
