#!/usr/bin/python3
"""The build stage of deploy/Containerfile and tools/deps.sh install every
library the build asks pkg-config for (meson.build's dependency() calls)
and the protobuf-c compiler, as Debian packages: a dependency added to the
build and not to these lists breaks a container build, which no other
test runs here (there is no container engine on the test machines).
Run: /usr/bin/python3 t/integration/test_deploy.py"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

ROOT = mctest.REPO_ROOT


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def meson_dependencies():
    """Every pkg-config name dependency() asks for, in every meson.build."""
    names = set()
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith((".", "build"))]
        if "meson.build" in files:
            text = open(os.path.join(d, "meson.build")).read()
            names.update(re.findall(r"\bdependency\('([^']+)'", text))
    return names


def debian_package_of(pattern):
    r = subprocess.run(["dpkg-query", "-S", pattern], capture_output=True, text=True, timeout=30)
    pkgs = {line.split(":")[0] for line in r.stdout.splitlines() if ":" in line}
    return pkgs


def build_needs():
    """The Debian package of each library's .pc file and of protoc-c."""
    if shutil.which("dpkg-query") is None:
        mctest.skip("no dpkg-query (not a Debian system)")
    needs = {}
    for name in sorted(meson_dependencies()):
        pkgs = debian_package_of("*/pkgconfig/%s.pc" % name)
        assert pkgs, "no Debian package holds %s.pc (is it installed?)" % name
        needs[name] = pkgs
    protoc = shutil.which("protoc-c")
    assert protoc, "no protoc-c"
    needs["protoc-c"] = debian_package_of(os.path.realpath(protoc))
    return needs


def containerfile_build_packages():
    text = read("deploy/Containerfile")
    stage = text.split("FROM ", 2)[1]  # the first (build) stage
    m = re.search(r"apt-get install[^\n]*\\\n((?:[^\n]*\\\n)*[^\n]*)", stage)
    assert m, "no apt-get install in the Containerfile's build stage"
    return set(re.findall(r"\b[a-z0-9][a-z0-9.+-]+\b", m.group(1).replace("\\", " ")))


@test
def containerfile_build_stage_installs_every_build_dependency():
    have = containerfile_build_packages()
    missing = {n: p for n, p in build_needs().items() if not p & have}
    assert not missing, "deploy/Containerfile's build stage lacks %s" % missing


@test
def deps_script_installs_every_build_dependency():
    have = set(read("tools/deps.sh").split())
    missing = {n: p for n, p in build_needs().items() if not p & have}
    assert not missing, "tools/deps.sh lacks %s" % missing


if __name__ == "__main__":
    mctest.main()
