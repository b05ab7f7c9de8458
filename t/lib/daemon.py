"""
Debian's peer servers (haproxy, nginx) run by tests: in the foreground,
in a session of their own, stopped at the end of the test.
"""

import os
import shutil
import signal
import socket
import subprocess

from mctest import READY_TIMEOUT, _track, _untrack, skip, wait_until

__all__ = ["Daemon", "require_tool"]


def require_tool(tool):
    """The path of an installed program, or skips the test."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        skip("%s is not installed (tools/deps.sh installs it)" % tool)
    return path


class Daemon:
    """A peer server (haproxy, nginx) in the foreground in its own session,
    stopped at the end of the test; ready once port (.port) accepts
    connections. Its output goes to .log_path."""

    def __init__(self, name, argv, port, workdir):
        self.name = name
        self.port = port
        self.log_path = os.path.join(workdir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _track(self)
        try:
            wait_until(lambda: self._accepts(port), READY_TIMEOUT,
                              what="%s listening on %d" % (name, port))
        except AssertionError as e:
            self.close()
            raise AssertionError("%s\n%s" % (e, self.log_text()[-2000:]))

    def _accepts(self, port):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s: %s" % (self.name, self.proc.returncode,
                                                            self.log_text()[-2000:]))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        _untrack(self)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
