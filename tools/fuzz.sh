#!/bin/bash
# `make fuzz`: runs every fuzz target of FUZZ_BUILD (sanitizers on) for
# FUZZ_SECONDS each (60) from its corpus in fuzz/corpus/, then replays the
# seeds and the new inputs through the same target of COV_BUILD (clang
# source-based coverage) and prints the line coverage of the parser the
# target exercises. FUZZ_KEEP=1 merges the new inputs that raise coverage
# into fuzz/corpus/ (libFuzzer -merge=1), to be committed. FUZZ_ONLY=NAME
# runs that target alone; FUZZ_FUNCTIONS=1 prints each function's figure.
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

# What each target is measured on: FILE (every function in it), FILE:F1,F2
# (those functions only) or FILE:-F1,F2 (all but those), where the file
# holds more than the parser: the builder beside a parser, the loader's
# file reading, entry points the API uses. A static function is named as
# in the source.
declare -A parser=(
    [hello]="worker/hello.c"
    [http1]="worker/http1.c"
    [h2]="worker/l7_h2_req.c"
    [proxy_proto]="worker/proxy_proto.c:proxy_proto_parse,bad,match_lit,scan_ip4,hex_value,scan_ip6,scan_port,parse_v1_unknown,parse_v1_tcp,parse_v1,v2_block_len,v2_check_tlvs,parse_v2"
    [proxy_proto_build]="worker/proxy_proto.c:proxy_proto_build_v2,ip4_of,ip6_of,port_of"
    [prefix]="common/prefix.c common/addr.c:addr_parse_cidr,parse_prefix,copy_ip"
    [chan]="common/chan.c"
    [config]="common/config.c:-config_load,listener_conf_find,config_worker_count
              common/config_tree.c:-read_text
              common/config_schema.c:-config_route_mode_name,config_route_mode_parse,config_policy_type_name,config_policy_type_parse,strval_parse
              common/config_check.c:-set_paths
              common/check.c:-check_route_mode,check_policy_type,check_key_pair"
    [metrics_http]="metrics/http.c"
    [admin_link]="admin/link.c"
)

# Lines and missed lines of what SPEC names (one entry of the table above),
# from llvm-cov's per-function report; the coverage mapping names the
# sources as the compiler saw them, relative to COV_BUILD.
measure() {
    local bin=$1 prof=$2 spec=$3 file funcs
    file=${spec%%:*}
    funcs=
    [ "$file" != "$spec" ] && funcs=${spec#*:}
    "$llvmcov" report -show-functions -path-equivalence="$cov_build/..,$root" \
        -instr-profile="$prof" "$bin" "$root/$file" 2>/dev/null |
        awk -v want="$funcs" -v each="${FUZZ_FUNCTIONS:-0}" '
        BEGIN {
            skip = sub(/^-/, "", want)
            n = split(want, w, ","); for (i = 1; i <= n; i++) keep[w[i]] = 1
        }
        # rows: name regions missed cover lines missed cover branches missed cover
        NF == 10 && $1 != "Name" && $1 != "TOTAL" {
            name = $1; sub(/^[^:]*:/, "", name); seen[name] = 1
            if (n == 0 || (name in keep) != skip) {
                lines += $5; missed += $6
                if (each == 1) printf "    %-32s %5d lines %5d missed\n", name, $5, $6 > "/dev/stderr"
            }
        }
        END {
            for (f in keep) if (!(f in seen)) print "missing function " f > "/dev/stderr"
            print lines + 0, missed + 0
        }'
}

failed=0
printf '%-24s %6s %8s  %s\n' target inputs lines "parser (line coverage)"
for f in "$fuzz_build"/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    n=$(basename "$f")
    n=${n#fuzz_}
    [ -n "${FUZZ_ONLY:-}" ] && [ "$n" != "$FUZZ_ONLY" ] && continue
    seeds=$root/fuzz/corpus/$n
    new=$tmp/new-$n
    mkdir -p "$new" "$seeds"
    dict=()
    [ -f "$root/fuzz/$n.dict" ] && dict=(-dict="$root/fuzz/$n.dict")
    # new inputs go to the scratch dir (first), the seeds are only read
    if ! "$f" "${dict[@]}" -max_total_time="$secs" "$new" "$seeds" >"$tmp/$n.log" 2>&1; then
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
        total=0 missed=0
        for spec in ${parser[$n]:-}; do
            read -r l m < <(measure "$cov_build/fuzz_$n" "$tmp/$n.profdata" "$spec")
            total=$((total + l)) missed=$((missed + m))
        done
        [ "$total" -gt 0 ] && cover=$(awk -v t="$total" -v m="$missed" \
            'BEGIN { printf "%.1f%%", 100 * (t - m) / t }')
    fi
    if [ "${FUZZ_KEEP:-0}" = 1 ]; then
        "$f" -merge=1 "$seeds" "$new" >"$tmp/$n.merge.log" 2>&1
    fi
    inputs=$(find "$new" "$seeds" -type f | wc -l)
    what=
    for spec in ${parser[$n]:-?}; do
        funcs=${spec#*:}
        [ "$funcs" = "$spec" ] && what+=" $spec" && continue
        k=$(tr -cd , <<<"$funcs" | wc -c | awk '{ print $1 + 1 }')
        case $funcs in
        -*) what+=" ${spec%%:*} (but $k functions)" ;;
        *) what+=" ${spec%%:*} ($k functions)" ;;
        esac
    done
    printf '%-24s %6d %8s  %s\n' "fuzz_$n" "$inputs" "${cover:-n/a}" "${what# }"
done
[ "$failed" -eq 0 ]
