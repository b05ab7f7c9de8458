#!/usr/bin/python3
"""The tree's layering (ARCHITECTURE.md "Files"): every #include of a
project header names its folder, and a process's code reaches only into
its own folder and common/ (the master never into worker/ or metrics/:
what two processes share lives in common/). And names that cannot
collide: a function whose name starts with another file's name (route_
is route.c's) lives in that file or one of its family (store_load.c is
store.c's), unless it carries its own file's name first (l7_h2.c may
define l7_h2_req_end beside l7_h2_req.c, as nginx's ngx_stream_ sits
beside ngx_stream_ssl_).
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
# A function definition as clang-format lays it out: the name and its
# parameters, then the opening brace alone on the next line.
DEFINITION = re.compile(r"^[A-Za-z_][\w \t*]*?\b([a-z_]\w*)\([^;{]*\)[ \t]*\n\{", re.M)


def sources(*patterns):
    out = subprocess.check_output(["git", "-C", mctest.REPO_ROOT, "ls-files"] +
                                  list(patterns or ("*.c", "*.h")))
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


@test
def no_function_prefix_in_two_files():
    files = [p for p in sources("*.c") if not p.startswith(LOCAL_OK + ("bench/",))]
    names = {os.path.basename(p)[:-2] for p in files}
    wrong = []
    for path in files:
        base = os.path.basename(path)[:-2]
        with open(os.path.join(mctest.REPO_ROOT, path)) as f:
            defined = DEFINITION.findall(f.read())
        for fn in defined:
            for other in names:
                prefix = other + "_"
                if fn.startswith(prefix) and base != other and not base.startswith(prefix) \
                        and not fn.startswith(base + "_"):
                    wrong.append("%s defines %s, a name of %s.c's" % (path, fn, other))
    assert not wrong, "\n".join(sorted(wrong))


if __name__ == "__main__":
    mctest.main()
