#!/bin/sh
# Installs the peers and load tools the benchmark needs, when missing.
# As root it runs apt-get; otherwise it prints the command to run.
# policy-rc.d is honoured, so nothing is started by the install.
set -eu

pkgs="haproxy nginx libnginx-mod-stream wrk nghttp2-client strace openssl procps util-linux python3"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing benchmark tools:$missing" >&2
    echo "install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
