#!/bin/sh
# Installs the peers and load tools the benchmark needs, when missing
# (policy-rc.d is honoured, so nothing is started by the install).
exec "$(dirname "$0")/../tools/deps.sh" haproxy nginx libnginx-mod-stream wrk nghttp2-client \
    strace openssl procps util-linux python3
