#!/bin/sh
# Installs mc-proxy on a Debian host (run as root), or into $DESTDIR for a
# dry run. Idempotent: running it again replaces the binaries, units and
# runbook; the data directory and the config are created when missing and
# otherwise left as they are (a layout a root master cannot use is
# reported, not changed).
#
#   deploy/install.sh [BUILD_DIR]      BUILD_DIR defaults to build-release
#                                      (meson setup build-release --buildtype=release)
#   DESTDIR=/tmp/stage deploy/install.sh   installs below /tmp/stage instead;
#                                      no user is created, no systemctl is run
#   MC_PROXY_USER=name                 the service user (default mc-proxy)
#   MC_PROXY_ADMIN_USER=name           the admin process's user (default mc-proxy-admin)
#   MC_PROXY_OPS_GROUP=name            the group that may use the admin socket
#                                      (default mc-proxy-ops)
#
# Layout (RUNBOOK.md, "Files"):
#   /usr/local/bin/{mc-proxy,mc-proxy-admin,mcproxyctl}  root:root 0755
#   /etc/systemd/system/mc-proxy{.service,-backup.service,-backup.timer}
#   /etc/logrotate.d/mc-proxy   rotates the access file (/var/log/mc-proxy)
#   /usr/local/share/doc/mc-proxy/RUNBOOK.md
#   /srv/mc-proxy            root:USER 0750  the master (root) owns it and
#                            everything it writes; USER may only traverse
#     mc-proxy.yaml          root:USER 0640  installed from the example if absent
#     mc-proxy.db            root:root 0600  created by the master on first start
#     mc-proxy.db.lock       root:root 0600  likewise; locked while a master runs
#     certs/                 root:USER 0750  keys root:USER 0640
#     backups/               root:root 0700  snapshots, root only
#     mc-proxy.sock          root:OPS_GROUP 0660  the admin socket (the admin process
#                            creates it); operators join OPS_GROUP
# The workers run as USER, the admin process as ADMIN_USER, with no
# capabilities: they can read what USER's group may read, cannot open the
# database or write anything in the directory, and the workers cannot
# connect to the admin socket or signal the admin process
# (ARCHITECTURE.md, "Privileges").
set -eu

die() {
    echo "install.sh: $*" >&2
    exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build-release}
case $build in
/*) ;;
*) build=$(pwd)/$build ;;
esac
dest=${DESTDIR:-}
user=${MC_PROXY_USER:-mc-proxy}
admin_user=${MC_PROXY_ADMIN_USER:-mc-proxy-admin}
ops_group=${MC_PROXY_OPS_GROUP:-mc-proxy-ops}
bindir=/usr/local/bin
unitdir=/etc/systemd/system
docdir=/usr/local/share/doc/mc-proxy
data=/srv/mc-proxy

[ "$(id -u)" -eq 0 ] || die "run as root (DESTDIR=... for a dry run still needs root for chown)"
for f in mc-proxy mc-proxy-admin mcproxyctl; do
    [ -x "$build/$f" ] || die "no $build/$f: build first (meson setup build-release --buildtype=release && ninja -C build-release)"
done

# The service user and the admin process's user: system accounts without
# a shell or home of their own, each with its own group. The admin's
# user is not in the service user's group: the config and certificates
# stay the workers' to read, the TLS files of a TCP admin API are read
# before the switch.
for u in "$user" "$admin_user"; do
    getent passwd "$u" >/dev/null && continue
    if [ -n "$dest" ]; then
        echo "install.sh: would create the system user $u (not in a DESTDIR run)"
    else
        useradd --system --shell /usr/sbin/nologin --home-dir "$data" --no-create-home \
            --user-group "$u"
        echo "install.sh: created the system user $u"
    fi
done
# The operators' group: access to the admin socket (root:GROUP 0660).
if ! getent group "$ops_group" >/dev/null; then
    if [ -n "$dest" ]; then
        echo "install.sh: would create the system group $ops_group (not in a DESTDIR run)"
    else
        groupadd --system "$ops_group"
        echo "install.sh: created the system group $ops_group; add operators with usermod -aG $ops_group NAME"
    fi
fi
group=
if getent passwd "$user" >/dev/null; then
    group=$(id -gn "$user")
fi

# newdir MODE OWNER PATH: creates PATH below $dest with that owner and mode;
# an existing directory is left as it is. OWNER root:group stands for the
# service user's group, or root while that user does not exist yet.
newdir() {
    [ -d "$dest$3" ] && return 0
    mkdir -p "$dest$3"
    owner=$2
    [ "$owner" = root:group ] && owner=root:${group:-root}
    chown "$owner" "$dest$3"
    chmod "$1" "$dest$3"
}

# warn_owner PATH OWNER MODE: the layout a root master needs (it has no
# CAP_DAC_OVERRIDE), checked on what an earlier install or a service-user
# setup left; changed only by the operator.
warn_owner() {
    [ -e "$dest$1" ] || return 0
    have=$(stat -c '%U %a' "$dest$1")
    [ "$have" = "$2 $3" ] && return 0
    echo "install.sh: warning: $1 is '$have', a root master expects '$2 $3'" \
        "(fine if the master runs as the service user: RUNBOOK.md, \"Privileges\")" >&2
}

mkdir -p "$dest$bindir" "$dest$unitdir" "$dest$docdir"
for f in mc-proxy mc-proxy-admin mcproxyctl; do
    # a new inode: a running master keeps its old image until restarted
    install -m 0755 -o root -g root "$build/$f" "$dest$bindir/$f"
done
for f in mc-proxy.service mc-proxy-backup.service mc-proxy-backup.timer; do
    install -m 0644 -o root -g root "$repo/conf/$f" "$dest$unitdir/$f"
done
install -m 0644 -o root -g root "$repo/RUNBOOK.md" "$dest$docdir/RUNBOOK.md"
mkdir -p "$dest/etc/logrotate.d"
install -m 0644 -o root -g root "$repo/conf/mc-proxy.logrotate" "$dest/etc/logrotate.d/mc-proxy"

newdir 0750 root:group $data
newdir 0750 root:group $data/certs
newdir 0700 root:root $data/backups
warn_owner $data root 750
warn_owner $data/mc-proxy.db root 600
warn_owner $data/mc-proxy.db.lock root 600
warn_owner $data/backups root 700

# The example config, made to run as installed: the service user set and
# the admin API on the data directory's socket. Never overwritten.
cfg=$dest$data/mc-proxy.yaml
if [ -e "$cfg" ]; then
    echo "install.sh: keeping the existing $data/mc-proxy.yaml"
else
    sed -e "s|^#user: mc-proxy\$|user: $user|" \
        -e 's|^#grpc:$|grpc:|' \
        -e 's|^#  addr: unix:mc-proxy.sock |  addr: unix:mc-proxy.sock |' \
        -e 's|^#  socket_mode: "0660" |  socket_mode: "0660" |' \
        -e "s|^#  socket_group: mc-proxy-ops |  socket_group: $ops_group |" \
        -e "s|^#  user: mc-proxy-admin |  user: $admin_user |" \
        "$repo/conf/mc-proxy.yaml" >"$cfg.new"
    # the sed relies on the example's layout: fail rather than install it half-edited
    if ! { grep -q "^user: $user\$" "$cfg.new" && grep -q '^grpc:$' "$cfg.new" &&
        grep -q '^  addr: unix:mc-proxy.sock ' "$cfg.new" &&
        grep -q '^  socket_mode: "0660" ' "$cfg.new" &&
        grep -q "^  socket_group: $ops_group " "$cfg.new" &&
        grep -q "^  user: $admin_user " "$cfg.new"; }; then
        rm -f "$cfg.new"
        die "conf/mc-proxy.yaml changed shape; update the edits in $0"
    fi
    chown "root:${group:-root}" "$cfg.new"
    chmod 0640 "$cfg.new"
    mv "$cfg.new" "$cfg"
    echo "install.sh: installed the example config as $data/mc-proxy.yaml; edit its listeners and routes"
fi

if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
cat <<EOF
install.sh: done. Next:
  $bindir/mc-proxy check -c $data/mc-proxy.yaml
  systemctl enable --now mc-proxy.service mc-proxy-backup.timer
  (an upgrade: systemctl restart mc-proxy.service)
EOF
