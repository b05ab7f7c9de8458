#!/bin/bash
# `make fuzz`: runs every fuzz target of FUZZ_BUILD (sanitizers on) for
# FUZZ_SECONDS each (60) from its corpus in fuzz/corpus/, then replays the
# seeds and the new inputs through the same target of COV_BUILD (clang
# source-based coverage) and prints the line coverage of the parser the
# target exercises. FUZZ_KEEP=1 merges the new inputs that raise coverage
# into fuzz/corpus/ (libFuzzer -merge=1), to be committed.
# Usage: tools/fuzz.sh FUZZ_BUILD COV_BUILD. Exits non-zero if a target
# found a crash.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_build=$root/$1
cov_build=$root/$2
secs=${FUZZ_SECONDS:-60}
profdata=$(command -v llvm-profdata-14 || command -v llvm-profdata)
llvmcov=$(command -v llvm-cov-14 || command -v llvm-cov)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The parser each target exercises: the files its coverage is measured on.
declare -A parser=(
    [hello]="worker/hello.c"
    [http1]="worker/http1.c"
    [h2]="worker/l7_h2_req.c"
    [proxy_proto]="worker/proxy_proto.c"
    [proxy_proto_build]="worker/proxy_proto.c"
    [prefix]="common/prefix.c"
    [chan]="common/chan.c"
    [config]="common/config.c common/config_tree.c common/config_schema.c common/config_check.c"
    [metrics_http]="metrics/http.c"
    [admin_link]="admin/link.c"
)

failed=0
printf '%-24s %6s %8s  %s\n' target inputs lines "parser (line coverage)"
for f in "$fuzz_build"/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    n=$(basename "$f")
    n=${n#fuzz_}
    seeds=$root/fuzz/corpus/$n
    new=$tmp/new-$n
    mkdir -p "$new" "$seeds"
    # new inputs go to the scratch dir (first), the seeds are only read
    if ! "$f" -max_total_time="$secs" "$new" "$seeds" >"$tmp/$n.log" 2>&1; then
        echo "FAIL fuzz_$n: see its output:"
        tail -n 40 "$tmp/$n.log" | sed 's/^/    /'
        failed=$((failed + 1))
        continue
    fi
    # -runs=0: execute every input once, no mutation
    LLVM_PROFILE_FILE=$tmp/$n-%p.profraw "$cov_build/fuzz_$n" -runs=0 "$new" "$seeds" \
        >"$tmp/$n.cov.log" 2>&1
    cover=n/a
    if "$profdata" merge -sparse "$tmp/$n"-*.profraw -o "$tmp/$n.profdata" 2>/dev/null; then
        # rows: file regions missed cover functions missed executed lines missed cover ...;
        # files are named as compiled (relative to the source root)
        cover=$("$llvmcov" report "$cov_build/fuzz_$n" -instr-profile="$tmp/$n.profdata" \
            2>/dev/null | awk -v want="${parser[$n]:-}" '
                BEGIN { split(want, w, " "); for (i in w) keep[w[i]] = 1 }
                ($1 in keep) && NF >= 10 { lines += $8; missed += $9 }
                END { if (lines > 0) printf "%.1f%%", 100 * (lines - missed) / lines }')
    fi
    if [ "${FUZZ_KEEP:-0}" = 1 ]; then
        "$f" -merge=1 "$seeds" "$new" >"$tmp/$n.merge.log" 2>&1
    fi
    inputs=$(find "$new" "$seeds" -type f | wc -l)
    printf '%-24s %6d %8s  %s\n' "fuzz_$n" "$inputs" "${cover:-n/a}" "${parser[$n]:-?}"
done
[ "$failed" -eq 0 ]
