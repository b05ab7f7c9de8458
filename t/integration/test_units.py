#!/usr/bin/python3
"""The systemd units in conf/ (SPEC section 10, RUNBOOK.md "systemd
units"): each passes `systemd-analyze security` (offline, on the file)
at the exposure RUNBOOK.md records, and the snapshot service holds no
capability at all, which a snapshot run with an empty bounding set shows
it does not need.
Run: /usr/bin/python3 t/integration/test_units.py"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

CONF = os.path.join(mctest.REPO_ROOT, "conf")
SETPRIV = "/usr/bin/setpriv"
# The highest overall exposure each unit may score (systemd-analyze prints
# it as a tenth of this); RUNBOOK.md lists what is left exposed and why.
MAX_EXPOSURE = {"mc-proxy.service": 23, "mc-proxy-backup.service": 9}


def analyze():
    path = shutil.which("systemd-analyze")
    if path is None:
        mctest.skip("no systemd-analyze (Debian package systemd)")
    return path


def unit_settings(name):
    """The [Service] section of conf/NAME as a dict of lists (a key may repeat)."""
    out, section = {}, None
    with open(os.path.join(CONF, name)) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                out.setdefault(k, []).append(v)
    return out


@test
def every_service_is_within_its_recorded_exposure():
    tool = analyze()
    units = sorted(f for f in os.listdir(CONF) if f.endswith(".service"))
    assert set(units) == set(MAX_EXPOSURE), "units %s, thresholds for %s" % (units, MAX_EXPOSURE)
    for unit in units:
        r = subprocess.run([tool, "security", "--offline=true", "--no-pager",
                            "--threshold=%d" % MAX_EXPOSURE[unit], os.path.join(CONF, unit)],
                           capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        if m is None and "offline" in r.stderr:
            mctest.skip("this systemd-analyze cannot analyze unit files offline: %s"
                        % r.stderr.strip())
        assert m is not None, "no exposure level for %s: %s %s" % (unit, r.stdout, r.stderr)
        assert r.returncode == 0, "%s: exposure %s, at most %.1f allowed" % (
            unit, m.group(1), MAX_EXPOSURE[unit] / 10)


@test
def backup_service_has_no_capabilities():
    s = unit_settings("mc-proxy-backup.service")
    assert s.get("CapabilityBoundingSet") == [""], s.get("CapabilityBoundingSet")
    assert s.get("AmbientCapabilities") in (None, [""]), s.get("AmbientCapabilities")
    assert s.get("NoNewPrivileges") == ["true"], s.get("NoNewPrivileges")
    assert s.get("PrivateNetwork") == ["true"], s.get("PrivateNetwork")
    assert s.get("ReadWritePaths") == ["/srv/mc-proxy"], s.get("ReadWritePaths")


@test
def snapshot_needs_no_capability():
    """What the backup unit runs, run as root with an empty bounding set
    and NO_NEW_PRIVS (so no capability at all) on a database a root master
    created (root:root 0600, backups/ 0700)."""
    if os.geteuid() != 0:
        mctest.skip("needs root")
    if not os.access(SETPRIV, os.X_OK):
        mctest.skip("needs %s (util-linux)" % SETPRIV)
    backend = mctest.RawBackend(mctest.hello_echo_handler)
    with mctest.proxy_server([("a.test", backend.addr)]) as srv:
        db = srv.dir.join("mc-proxy.db")
        assert os.stat(db).st_mode & 0o777 == 0o600, oct(os.stat(db).st_mode)
        no_caps = [SETPRIV, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
        r = subprocess.run(no_caps + ["grep", "^CapEff", "/proc/self/status"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.split() == ["CapEff:", "0000000000000000"], r
        r = subprocess.run(no_caps + [srv.bin, "snapshot", "-c", srv.config_path],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r
        written = r.stdout.strip().rsplit(" ", 1)[-1]
        st = os.stat(written)
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), (st.st_uid, oct(st.st_mode))

if __name__ == "__main__":
    mctest.main()
