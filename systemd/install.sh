#!/bin/sh
# Install or upgrade the bridge as a systemd service. Idempotent: run it again after updating the
# source to upgrade. It never overwrites /etc/bridge/settings.toml or a credential file.
#
# usage: sudo systemd/install.sh [--root DIR] [--extras LIST] [--no-python] [--no-systemctl]
#   --root DIR      install into DIR instead of / (packaging, tests; created if absent);
#                   implies --no-systemctl
#   --extras LIST   also install these extras, comma-separated: mastodon, bluesky, postgresql, all;
#                   remembered in /opt/bridge/extras, so a later run without it keeps them
#   --no-python     leave /opt/bridge/venv alone (e.g. the bridge was installed with pipx)
#   --no-systemctl  do not call systemctl (daemon-reload, enable, start or restart)
#
# Needs python3 (3.11 or newer) with venv and ensurepip: on Debian and Ubuntu
# `apt install python3 python3-venv`. It checks for them before it changes anything.
#
# What it does (README.md, "Run as a service", explains each step):
#   1. the system user "bridge" (systemd-sysusers with systemd/bridge.sysusers)
#   2. /opt/bridge/venv with the bridge (and its extras) installed from this source tree, and
#      /opt/bridge/README.md; a venv without a working python and pip is built again
#   3. /etc/bridge/settings.toml (only if absent), /etc/bridge/credentials/x/ (root only, 0700),
#      and /etc/bridge/credentials/NAME/ for each other [targets.NAME] in the settings
#   4. /etc/systemd/system/bridge.service, and /usr/local/bin/bridge for the operator
#   5. systemctl daemon-reload, enable, and start (or restart, to run the upgraded code)
set -eu

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
PYTHON=yes
SYSTEMCTL=yes
PYTHON3=${PYTHON3:-python3}
EXTRAS=
KNOWN_EXTRAS="mastodon bluesky postgresql all"   # pyproject.toml's, less "test"

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; SYSTEMCTL=no; shift 2 ;;
        --root=*) ROOT=${1#--root=}; SYSTEMCTL=no; shift ;;
        --extras) EXTRAS=${2?--extras needs a list, e.g. mastodon,bluesky}; shift 2 ;;
        --extras=*) EXTRAS=${1#--extras=}; shift ;;
        --no-python) PYTHON=no; shift ;;
        --no-systemctl) SYSTEMCTL=no; shift ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for extra in $(echo "$EXTRAS" | tr ',' ' '); do
    case " $KNOWN_EXTRAS " in
        *" $extra "*) ;;
        *) echo "install.sh: unknown extra $extra (known: $KNOWN_EXTRAS)" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

# 0. What a bare Debian 12 or Ubuntu 24.04 lacks, checked before anything is changed.
if [ "$PYTHON" = yes ]; then
    command -v "$PYTHON3" >/dev/null 2>&1 ||
        die "no $PYTHON3 found; first run: sudo apt install python3 python3-venv"
    "$PYTHON3" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die "$PYTHON3 is $("$PYTHON3" -V 2>&1); the bridge needs Python 3.11 or newer (Debian 12, Ubuntu 24.04)"
    "$PYTHON3" -c 'import venv, ensurepip' 2>/dev/null ||
        die "$PYTHON3 cannot create a venv (no venv or ensurepip module); first run: sudo apt install python3-venv"
fi

[ -d "$ROOT" ] || mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}   # prefix for every path: "" for /

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
    VENV=$R/opt/bridge/venv
    # A venv whose python or pip does not run (an earlier `python3 -m venv` failed half-way, the
    # system's Python was upgraded under it) is built again; a working one is kept.
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        [ -e "$VENV" ] && say "rebuilding $VENV: it has no working python and pip"
        "$PYTHON3" -m venv --clear "$VENV" ||
            die "$PYTHON3 -m venv $VENV failed; on Debian or Ubuntu: sudo apt install python3-venv, then run this again"
    fi
    if [ -n "$EXTRAS" ]; then
        printf '%s\n' "$EXTRAS" > "$R/opt/bridge/extras.new"
        put 0644 "$R/opt/bridge/extras.new" "$R/opt/bridge/extras"
        rm -f "$R/opt/bridge/extras.new"
    elif [ -f "$R/opt/bridge/extras" ]; then
        EXTRAS=$(cat "$R/opt/bridge/extras")
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade "$SOURCE${EXTRAS:+[$EXTRAS]}"
    say "$("$VENV/bin/bridge" --version)${EXTRAS:+ with $EXTRAS} in $VENV"
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
# A folder for each other [targets.NAME] table of the settings, and a word if the unit loads none.
for target in $(sed -n 's/^[[:space:]]*\[targets\.\("\{0,1\}\)\([A-Za-z0-9_-]*\)\1\][[:space:]]*\(#.*\)\{0,1\}$/\2/p' \
        "$R/etc/bridge/settings.toml"); do
    [ "$target" = x ] && continue
    if [ ! -d "$R/etc/bridge/credentials/$target" ]; then
        install -d -m 0700 "$R/etc/bridge/credentials/$target"
        say "created $R/etc/bridge/credentials/$target/ for [targets.$target]'s secrets"
    fi
    if ! cat "$R"/etc/systemd/system/bridge.service.d/*.conf 2>/dev/null |
            grep -q "^LoadCredential\(Encrypted\)\{0,1\}=$target[:_]"; then
        say "[targets.$target]: the service loads no credentials for it yet; add with \`systemctl edit bridge\`:"
        say "  [Service]"
        say "  LoadCredential=$target:/etc/bridge/credentials/$target"
    fi
done

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
