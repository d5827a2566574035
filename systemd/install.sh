#!/bin/sh
# Install or upgrade the bridge as a systemd service. Idempotent: run it again after updating the
# source to upgrade. It never overwrites /etc/bridge/settings.toml or a credential file.
#
# usage: sudo systemd/install.sh [--root DIR] [--no-python] [--no-systemctl]
#   --root DIR      install into DIR instead of / (packaging, tests); implies --no-systemctl
#   --no-python     leave /opt/bridge/venv alone (e.g. the bridge was installed with pipx)
#   --no-systemctl  do not call systemctl (daemon-reload, enable, start or restart)
#
# What it does (README.md, "Run as a service", explains each step):
#   1. the system user "bridge" (systemd-sysusers with systemd/bridge.sysusers)
#   2. /opt/bridge/venv with the bridge installed from this source tree, and /opt/bridge/README.md
#   3. /etc/bridge/settings.toml (only if absent), /etc/bridge/credentials/x/ (root only, 0700)
#   4. /etc/systemd/system/bridge.service, and /usr/local/bin/bridge for the operator
#   5. systemctl daemon-reload, enable, and start (or restart, to run the upgraded code)
set -eu

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
PYTHON=yes
SYSTEMCTL=yes
PYTHON3=${PYTHON3:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; SYSTEMCTL=no; shift 2 ;;
        --root=*) ROOT=${1#--root=}; SYSTEMCTL=no; shift ;;
        --no-python) PYTHON=no; shift ;;
        --no-systemctl) SYSTEMCTL=no; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}   # prefix for every path: "" for /

say() { echo "install.sh: $*"; }

# Copy a file only when it differs, so a second run changes nothing (not even a timestamp).
put() {  # put MODE SOURCE DEST
    if [ -f "$3" ] && cmp -s "$2" "$3"; then
        chmod "$1" "$3"
    else
        install -D -m "$1" "$2" "$3"
        say "installed $3"
    fi
}

# 1. The user. systemd-sysusers is idempotent and understands --root.
put 0644 "$SOURCE/systemd/bridge.sysusers" "$R/etc/sysusers.d/bridge.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --root="$ROOT" "$R/etc/sysusers.d/bridge.conf"
elif [ "$ROOT" = / ] && ! getent passwd bridge >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/bridge --no-create-home \
        --shell /usr/sbin/nologin bridge
fi

# 2. The program, in its own venv.
install -d -m 0755 "$R/opt/bridge"
put 0644 "$SOURCE/README.md" "$R/opt/bridge/README.md"
if [ "$PYTHON" = yes ]; then
    [ -x "$R/opt/bridge/venv/bin/python" ] || "$PYTHON3" -m venv "$R/opt/bridge/venv"
    "$R/opt/bridge/venv/bin/pip" install --quiet --upgrade "$SOURCE"
    say "bridge $("$R/opt/bridge/venv/bin/bridge" --version) in $R/opt/bridge/venv"
fi

# 3. Settings (the operator's once installed) and the credentials folder. The folder must exist
# even while empty: the unit's LoadCredential= names it, and a missing path stops the unit.
install -d -m 0755 "$R/etc/bridge"
if [ -e "$R/etc/bridge/settings.toml" ]; then
    if ! cmp -s "$SOURCE/settings.toml" "$R/etc/bridge/settings.toml"; then
        say "kept your $R/etc/bridge/settings.toml (the shipped one is $SOURCE/settings.toml)"
    fi
else
    put 0644 "$SOURCE/settings.toml" "$R/etc/bridge/settings.toml"
fi
install -d -m 0700 "$R/etc/bridge/credentials" "$R/etc/bridge/credentials/x"

# 4. The unit (ours: local changes belong in `systemctl edit bridge`) and the operator's command.
put 0644 "$SOURCE/systemd/bridge.service" "$R/etc/systemd/system/bridge.service"
put 0755 "$SOURCE/systemd/bridge-admin" "$R/usr/local/bin/bridge"

# 5. Start it, or restart it so an upgrade takes effect.
if [ "$SYSTEMCTL" = yes ]; then
    systemctl daemon-reload
    systemctl enable --quiet bridge
    if systemctl is-active --quiet bridge; then
        systemctl restart bridge && say "restarted bridge"
    else
        systemctl start bridge && say "started bridge"
    fi
    say "follow it with: journalctl -u bridge -f -o cat"
else
    say "systemctl not called; next: systemctl daemon-reload && systemctl enable --now bridge"
fi
