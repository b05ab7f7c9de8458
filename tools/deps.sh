#!/bin/sh
# Installs Debian packages when missing: those the build and the tests
# need (haproxy and nginx are the PROXY protocol interop tests' peers,
# nginx also the gRPC tests' reference proxy; python3-grpcio, python3-h2
# (with python3-hyperframe) and nghttp2-client the HTTP/2 and gRPC tests'
# clients and backends,
# stress-ng the load of `make test-under-load`, llvm-14 the coverage
# tools of `make fuzz`), or the ones named as arguments (bench/deps.sh
# passes its own).
# As root it runs apt-get; otherwise it prints the command to run.
set -eu

pkgs="${*:-gcc clang libclang-rt-14-dev meson ninja-build pkg-config git
libssl-dev libsqlite3-dev libcyaml-dev libyaml-dev libmaxminddb-dev libcap-dev
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler protobuf-compiler-grpc python3-grpcio libnghttp2-dev nghttp2-client python3-h2 python3-hyperframe
openssl curl sqlite3 python3 procps iproute2 util-linux systemd libmaxmind-db-writer-perl haproxy nginx stress-ng llvm-14
libnginx-mod-stream}"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages:$missing" >&2
    echo "install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
