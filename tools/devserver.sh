#!/bin/sh
# Runs mc-proxy in the foreground for development. On first run creates
# srv/ from conf/mc-proxy.yaml, with the admin API on srv/mc-proxy.sock,
# a demo CA and a certificate for demo.localhost and *.demo.localhost;
# every run starts a demo TLS backend (openssl s_server) on
# 127.0.0.1:9443 behind the demo route.
set -eu
build=${1:-build}
cd "$(dirname "$0")/.."

if [ ! -d srv ]; then
    echo "devserver: creating srv/ from conf/"
    mkdir -p srv/certs
    cp conf/mc-proxy.yaml srv/mc-proxy.yaml
    if [ "$(id -u)" -eq 0 ]; then
        # workers must not run as root
        sed -i 's/^# *user:.*/user: nobody/' srv/mc-proxy.yaml
    fi
    # the admin API, so that mcproxyctl can be tried against the demo
    printf '\ngrpc:\n  addr: unix:mc-proxy.sock\n  socket_mode: "0660"\n' >>srv/mc-proxy.yaml
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=mc-proxy demo CA" -keyout srv/certs/demo-ca.key -out srv/certs/demo-ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=demo.localhost" -keyout srv/certs/demo.key -out srv/certs/demo.csr 2>/dev/null
    printf 'subjectAltName=DNS:demo.localhost,DNS:*.demo.localhost\n' >srv/certs/demo.ext
    openssl x509 -req -in srv/certs/demo.csr -CA srv/certs/demo-ca.pem -CAkey srv/certs/demo-ca.key \
        -CAcreateserial -days 3650 -extfile srv/certs/demo.ext -out srv/certs/demo.pem 2>/dev/null
fi

openssl s_server -quiet -www -accept 127.0.0.1:9443 -naccept 1000000 \
    -cert srv/certs/demo.pem -key srv/certs/demo.key >/dev/null 2>&1 &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT INT TERM

echo "devserver: demo backend on 127.0.0.1:9443; try:"
echo "  curl --cacert srv/certs/demo-ca.pem --resolve demo.localhost:8443:127.0.0.1 https://demo.localhost:8443/"
"$build/mc-proxy" server -c srv/mc-proxy.yaml
