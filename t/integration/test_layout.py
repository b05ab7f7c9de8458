#!/usr/bin/python3
"""The tree's layering (ARCHITECTURE.md "Layout"): every #include of a
project header names its folder, and a process's code reaches only into
its own folder and common/ (the master never into worker/ or metrics/:
what two processes share lives in common/).
Run: /usr/bin/python3 t/integration/test_layout.py"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mctest  # noqa: E402
from mctest import test  # noqa: E402

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# folder -> the folders its code may include from (besides itself and common/)
REACHES = {"common": set(), "master": {"proto"}, "worker": set(), "metrics": set(),
           "admin": {"proto"}, "ctl": {"proto"}}
# the test-only folders include anything, but their own helpers bare
LOCAL_OK = ("t/", "fuzz/")


def sources():
    out = subprocess.check_output(["git", "-C", mctest.REPO_ROOT, "ls-files", "*.c", "*.h"])
    return out.decode().split()


def includes(path):
    with open(os.path.join(mctest.REPO_ROOT, path)) as f:
        return INCLUDE.findall(f.read())


@test
def every_project_include_names_its_folder():
    bare = []
    for path in sources():
        here = os.path.dirname(path)
        for h in includes(path):
            if "/" in h:
                continue
            local = os.path.exists(os.path.join(mctest.REPO_ROOT, here, h))
            if not (path.startswith(LOCAL_OK) and local):
                bare.append("%s: %s" % (path, h))
    assert not bare, "bare includes:\n" + "\n".join(bare)


@test
def each_process_reaches_only_its_folder_and_common():
    wrong = []
    for path in sources():
        layer = path.split("/")[0]
        if layer not in REACHES:
            continue
        for h in includes(path):
            owner = h.split("/")[0] if "/" in h else layer
            if owner not in REACHES[layer] | {layer, "common"}:
                wrong.append("%s includes %s" % (path, h))
    assert not wrong, "\n".join(wrong)


if __name__ == "__main__":
    mctest.main()
