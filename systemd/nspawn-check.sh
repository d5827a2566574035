#!/bin/bash
# A check of the bridge under a real systemd, run by hand (never by CI): it builds a Debian 12
# root, boots it with systemd-nspawn, installs this checkout as README.md "Run as a service" says
# and checks what only a real systemd shows, printing PASS or FAIL for each.
#
# usage: sudo systemd/nspawn-check.sh [ROOT]      (as root; exit status 0 only if every check passed)
#   ROOT  the container's root folder, default /var/tmp/bridge-nspawn/root. Built with debootstrap
#         (Debian 12, a few minutes, needs Debian's mirror) when it holds no finished root yet,
#         reused as it is otherwise: `rm -rf ROOT` to build it anew.
# environment:
#   WATCHDOG_SEC=30   a drop-in sets the unit's WatchdogSec= to this for the check, so that
#                     "alive past 2x WatchdogSec" takes a minute; WATCHDOG_SEC=unit keeps the
#                     unit's own (120 s: the check then waits 4 minutes)
#   MIRROR=http://deb.debian.org/debian   debootstrap's mirror
#   SUITE=bookworm    the release; for Ubuntu 24.04: SUITE=noble MIRROR=http://archive.ubuntu.com/ubuntu
#                     KEYRING=/path/ubuntu-archive-keyring.gpg (from Ubuntu's ubuntu-keyring package;
#                     Debian's debootstrap has no script named noble, so gutsy's, which every Ubuntu
#                     release uses, is passed). Use another ROOT for each release.
#   KEYRING=FILE      the keyring debootstrap checks the release's signature with
#   KEEP=1            leave the container running at the end (it prints how to enter it)
#
# Host needs: apt-get install debootstrap systemd-container util-linux (nspawn, nsenter).
# It works on a host without systemd as PID 1 (a container, CI runner): the container is booted
# with `systemd-nspawn --boot --register=no --keep-unit` in the background and entered with
# `nsenter -t PID -a` on its PID 1 (the nspawn process's child).
# pip inside the container uses the host's pip configuration: /etc/pip.conf, /etc/xdg/pip and
# root's own pip.conf are copied in, PIP_* variables passed through, and the local folders they
# name (a file:// index, find-links) bound read-only at the same paths.
#
# The steps: the packages the README says to install first (python3 python3-venv git
# ca-certificates sqlite3) and curl; the checkout (tracked and untracked files, as in the work
# tree, without .git and ignored files such as .venv) in /opt/bridge/src; a settings.toml with
# one source on an unreachable URL, dry run; `systemd/install.sh`; then the checks:
#   ready     the unit active (running) after install.sh's start, READY within TimeoutStartSec
#   watchdog  still active with NRestarts=0 after 2x WatchdogSec
#   reload    `systemctl reload bridge` succeeds after a good edit, fails after a bad one (and the
#             unit keeps running the old settings)
#   stop      `systemctl stop bridge` takes under 10 s
#   security  `systemd-analyze security bridge` exposure <= 2.0
#   journal   `journalctl -u bridge -p warning` has the bridge's "poll failed" warning, no info line
#   badconfig a broken settings.toml: the unit fails with exit status 2 and is not restarted
#   post      live (dry_run = false) from a local feed to tests/fakes/x_api.py's fake X in the
#             container, the secrets in /etc/bridge/credentials/x/ handed over by LoadCredential=
#   reload-live  then `systemctl reload bridge` on that live service succeeds
set -uo pipefail

ROOT=${1:-/var/tmp/bridge-nspawn/root}
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
WATCHDOG_SEC=${WATCHDOG_SEC:-30}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
KEYRING=${KEYRING:-}
PACKAGES="python3 python3-venv git ca-certificates sqlite3 curl"
BOOT_PACKAGES="systemd systemd-sysv dbus"
LOG_DIR=$(dirname "$ROOT")
STARTED=$(date +%s)
FAILED=0
PASSED=0

say() { echo "nspawn-check: $*"; }
die() { echo "nspawn-check: $*" >&2; exit 1; }
pass() { echo "PASS $1: $2"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }

[ "$(id -u)" -eq 0 ] || die "run as root"
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null || die "no $tool: apt-get install debootstrap systemd-container util-linux"
done
mkdir -p "$LOG_DIR"

# 1. The root, built once. A finished build is marked with .bridge-nspawn-built.
if [ ! -e "$ROOT/.bridge-nspawn-built" ]; then
    say "building a $SUITE root in $ROOT with debootstrap (log: $LOG_DIR/debootstrap.log)"
    rm -rf "$ROOT.tmp"
    mkdir -p "$ROOT.tmp"
    EXTRA=()
    [ -n "$KEYRING" ] && EXTRA+=("--keyring=$KEYRING")
    SCRIPT=()
    # An Ubuntu release debootstrap does not know: gutsy's script, and universe as a fresh Ubuntu
    # has it (python3-venv is there).
    [ -e "/usr/share/debootstrap/scripts/$SUITE" ] ||
        { SCRIPT=(/usr/share/debootstrap/scripts/gutsy); EXTRA+=(--components=main,universe); }
    debootstrap --variant=minbase --include="$(echo $BOOT_PACKAGES $PACKAGES | tr ' ' ,)" "${EXTRA[@]}" \
        "$SUITE" "$ROOT.tmp" "$MIRROR" "${SCRIPT[@]}" > "$LOG_DIR/debootstrap.log" 2>&1 ||
        die "debootstrap failed: see $LOG_DIR/debootstrap.log"
    rm -rf "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
    touch "$ROOT/.bridge-nspawn-built"
else
    say "reusing the root in $ROOT"
fi
# An earlier run's bridge is removed, so install.sh installs from scratch.
rm -rf "$ROOT/opt/bridge" "$ROOT/etc/bridge" "$ROOT/var/lib/bridge" "$ROOT/var/lib/private/bridge" \
    "$ROOT/etc/systemd/system/bridge.service" "$ROOT/etc/systemd/system/bridge.service.d" \
    "$ROOT/etc/systemd/system/multi-user.target.wants/bridge.service"
echo bridge-check > "$ROOT/etc/hostname"

# 2. The checkout, as in the work tree: tracked and untracked files, not .git or ignored ones.
mkdir -p "$ROOT/opt/bridge/src"
(cd "$SOURCE" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' | tar --null -T - -cf -) |
    tar -xf - -C "$ROOT/opt/bridge/src" || die "copying the checkout failed"

# The settings for the check: one source nothing answers (a warning each poll), dry run.
write_settings() {  # write_settings HASHTAG
    cat <<EOF
[bridge]
database = "sqlite:///bridge.db"
poll_interval = "1m"
first_run = "skip"
dry_run = true
timezone = "Asia/Jakarta"
log_level = "info"

[[sources]]
name = "unreachable"
url = "http://127.0.0.1:9/feed.xml"
kind = "feed"
targets = ["x"]
template = "{title} {url} {hashtags}"
hashtags = ["$1"]

[targets.x]
kind = "x"
EOF
}
install -d -m 0755 "$ROOT/etc/bridge"
write_settings First > "$ROOT/etc/bridge/settings.toml"
if [ "$WATCHDOG_SEC" != unit ]; then
    install -d "$ROOT/etc/systemd/system/bridge.service.d"
    printf '[Service]\nWatchdogSec=%s\n' "$WATCHDOG_SEC" > "$ROOT/etc/systemd/system/bridge.service.d/nspawn-check.conf"
fi

# The host's pip configuration, and the local folders it names, bound read-only.
BINDS=()
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[ -d /etc/xdg/pip ] && { mkdir -p "$ROOT/etc/xdg"; rm -rf "$ROOT/etc/xdg/pip"; cp -a /etc/xdg/pip "$ROOT/etc/xdg/pip"; }
for conf in "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    [ -f "$conf" ] && install -D -m 0644 "$conf" "$ROOT/root/${conf#"$HOME"/}"
done
PIP_VARS=()
while IFS= read -r var; do PIP_VARS+=("$var"); done < <(env | grep '^PIP_' || true)
PIP_SETTINGS=$( (command -v pip >/dev/null && pip config list 2>/dev/null; printf '%s\n' "${PIP_VARS[@]}") | cut -d= -f2- | tr -d "'\"")
# A path a setting names (cert, constraint, find-links, a file:// index) is bound at the same
# path; for an index's .../simple folder its parent, where the index's links lead (../files/...).
for value in $PIP_SETTINGS; do
    path=${value#file://}
    path=${path%/}
    case "$path" in /?*) ;; *) continue ;; esac
    [ -e "$path" ] || continue
    case "$path" in */simple) path=${path%/simple} ;; esac
    case " ${BINDS[*]} " in *" --bind-ro=$path "*) continue ;; esac
    BINDS+=("--bind-ro=$path")
done
[ ${#BINDS[@]} -gt 0 ] && say "pip folders bound into the container: ${BINDS[*]#--bind-ro=}"

# 3. Boot it, and find its PID 1 (the nspawn process's child).
NSPAWN_LOG=$LOG_DIR/nspawn.log
systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --console=passive \
    --machine=bridge-check "${BINDS[@]}" > "$NSPAWN_LOG" 2>&1 < /dev/null &
NSPAWN=$!
PID1=
cleanup() {
    if [ -n "${KEEP:-}" ] && [ -n "$PID1" ]; then
        say "left running: enter with  nsenter -t $PID1 -a bash ; stop with  kill $NSPAWN"
        return
    fi
    if kill -0 "$NSPAWN" 2>/dev/null; then
        [ -n "$PID1" ] && in_root systemctl poweroff >/dev/null 2>&1
        for _ in $(seq 30); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 1; done
        kill "$NSPAWN" 2>/dev/null; sleep 2; kill -9 "$NSPAWN" 2>/dev/null
    fi
    wait "$NSPAWN" 2>/dev/null
}
trap cleanup EXIT
in_root() {
    nsenter -t "$PID1" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "${PIP_VARS[@]}" "$@"
}
for _ in $(seq 100); do
    PID1=$(pgrep -P "$NSPAWN" | head -1)
    [ -n "$PID1" ] && [ "$(cat "/proc/$PID1/comm" 2>/dev/null)" = systemd ] && break
    PID1=
    kill -0 "$NSPAWN" 2>/dev/null || die "systemd-nspawn ended: see $NSPAWN_LOG"
    sleep 0.2
done
[ -n "$PID1" ] || die "found no systemd in the container: see $NSPAWN_LOG"
say "booted: container PID 1 is host PID $PID1"
STATE=
for _ in $(seq 120); do
    STATE=$(in_root systemctl is-system-running 2>/dev/null)
    case "$STATE" in running|degraded) break ;; esac
    sleep 0.5
done
case "$STATE" in
    running|degraded) say "system $STATE${STATE:+ }$( [ "$STATE" = degraded ] && in_root systemctl --failed --plain --no-legend | awk '{printf "(failed: %s) ", $1}')" ;;
    *) die "the container's systemd did not come up (is-system-running: ${STATE:-no answer})" ;;
esac

show() { in_root systemctl show -p "$1" --value bridge; }
seconds() {  # seconds TIMESPAN: "2min 30s" -> 150 (systemd-analyze timespan's microseconds)
    local us
    us=$(in_root systemd-analyze timespan "$1" 2>/dev/null | sed -n 's/^ *[μu]s: *//p' | head -1)
    echo $(( ${us:-0} / 1000000 ))
}

# 4. The install, as the README says.
say "running systemd/install.sh in the container (log: $LOG_DIR/install.log)"
T0=$(date +%s%N)
if ! in_root sh -c 'cd /opt/bridge/src && systemd/install.sh' > "$LOG_DIR/install.log" 2>&1; then
    cat "$LOG_DIR/install.log"
    fail ready "systemd/install.sh failed"
    in_root systemctl status --no-pager bridge 2>&1 | tail -20
    exit 1
fi
T1=$(date +%s%N)
grep '^install.sh:' "$LOG_DIR/install.log" | sed 's/^/  /'

# ready: active and running; READY=1 came (Type=notify: "active" only after it) within the timeout.
STATE="$(show ActiveState)/$(show SubState)"
START_TIMEOUT=$(seconds "$(show TimeoutStartUSec)")
ENTER=$(show ActiveEnterTimestampMonotonic)
BEGIN=$(show ExecMainStartTimestampMonotonic)
if [ "$STATE" = active/running ] && [ "$(show Type)" = notify ] && [ "$ENTER" -gt 0 ] 2>/dev/null; then
    READY_MS=$(( (ENTER - BEGIN) / 1000 ))
    if [ "$READY_MS" -lt $(( START_TIMEOUT * 1000 )) ]; then
        pass ready "active/running, READY ${READY_MS} ms after start (TimeoutStartSec ${START_TIMEOUT} s); install.sh took $(( (T1 - T0) / 1000000000 )) s"
    else
        fail ready "READY after ${READY_MS} ms, over TimeoutStartSec ${START_TIMEOUT} s"
    fi
else
    fail ready "state $STATE after install.sh"
    in_root systemctl status --no-pager bridge 2>&1 | tail -20
fi

# watchdog: still active, never restarted, past twice WatchdogSec.
WD_USEC=$(show WatchdogUSec)
WD_SECONDS=$(seconds "$WD_USEC")
if [ "${WD_SECONDS:-0}" -le 0 ]; then
    fail watchdog "the unit has no WatchdogSec ($WD_USEC)"
else
    say "waiting $(( 2 * WD_SECONDS + 5 )) s: 2x WatchdogSec ($WD_SECONDS s) and a little"
    sleep $(( 2 * WD_SECONDS + 5 ))
    STATE="$(show ActiveState)/$(show SubState)"
    RESTARTS=$(show NRestarts)
    PID_NOW=$(show MainPID)
    if [ "$STATE" = active/running ] && [ "$RESTARTS" = 0 ] && [ "$(show WatchdogTimestampMonotonic)" != 0 ]; then
        pass watchdog "active/running after $(( 2 * WD_SECONDS + 5 )) s with WatchdogSec=${WD_SECONDS}s, NRestarts=0, pings seen (main PID $PID_NOW)"
    else
        fail watchdog "state $STATE, NRestarts=$RESTARTS after $(( 2 * WD_SECONDS + 5 )) s"
        in_root journalctl -u bridge --no-pager -n 20
    fi
fi

# reload: a good edit applies, a bad one makes `systemctl reload` fail and keeps the daemon.
PID_BEFORE=$(show MainPID)
write_settings Second > "$ROOT/etc/bridge/settings.toml"
if OUT=$(in_root systemctl reload bridge 2>&1); then
    pass reload-good "systemctl reload succeeded after a good edit (hashtags changed)"
else
    fail reload-good "systemctl reload failed after a good edit: $OUT"
    in_root journalctl -u bridge --no-pager -n 15
fi
{ write_settings Third | sed 's/^poll_interval = "1m"$/poll_interval = "soon"/'; } > "$ROOT/etc/bridge/settings.toml"
if OUT=$(in_root systemctl reload bridge 2>&1); then
    fail reload-bad "systemctl reload succeeded after a bad edit (poll_interval = \"soon\")"
else
    STATE="$(show ActiveState)/$(show SubState)"
    if [ "$STATE" = active/running ] && [ "$(show MainPID)" = "$PID_BEFORE" ]; then
        pass reload-bad "systemctl reload failed after a bad edit, the daemon ran on (PID $PID_BEFORE): $(echo "$OUT" | head -1)"
    else
        fail reload-bad "reload failed, but the unit is now $STATE (PID $(show MainPID), was $PID_BEFORE)"
    fi
fi
write_settings Second > "$ROOT/etc/bridge/settings.toml"

# journal: the "poll failed" warning at priority warning, and no info line there.
# The bridge's own lines are those of _SYSTEMD_UNIT=bridge.service (systemd's are PID 1's).
WARN=$(in_root journalctl -u bridge -p warning --no-pager -o cat 2>&1)
INFO=$(in_root journalctl _SYSTEMD_UNIT=bridge.service -p info..info --no-pager -o cat 2>&1)
if echo "$WARN" | grep -q "poll failed"; then
    if [ -n "$INFO" ] && ! echo "$INFO" | grep -q "poll failed" && ! echo "$WARN" | grep -qFxf <(echo "$INFO"); then
        pass journal "-p warning shows \"poll failed\" ($(echo "$WARN" | grep -c 'poll failed') lines), $(echo "$INFO" | wc -l) info lines are at info only"
    else
        fail journal "the info lines: $(echo "$INFO" | head -3)"
    fi
else
    fail journal "journalctl -u bridge -p warning: $(echo "$WARN" | head -5)"
fi

# security: the exposure systemd-analyze gives the running unit.
SEC=$(in_root systemd-analyze security --no-pager bridge 2>&1 | sed -n 's/.*Overall exposure level for bridge.service: *\([0-9.]*\).*/\1/p')
if [ -n "$SEC" ] && awk "BEGIN { exit !($SEC <= 2.0) }"; then
    pass security "systemd-analyze security bridge: exposure $SEC"
else
    fail security "exposure ${SEC:-not read}: $(in_root systemd-analyze security --no-pager bridge 2>&1 | tail -2)"
fi

# stop: under 10 s.
S0=$(date +%s%N)
in_root systemctl stop bridge
S1=$(date +%s%N)
STOP_MS=$(( (S1 - S0) / 1000000 ))
STATE="$(show ActiveState)/$(show Result)"
if [ "$STOP_MS" -lt 10000 ] && [ "$STATE" = inactive/success ]; then
    pass stop "systemctl stop took $STOP_MS ms, $STATE"
else
    fail stop "systemctl stop took $STOP_MS ms, $STATE"
fi

# badconfig: exit 2 from a broken settings.toml, failed at once, no restart scheduled.
printf '[bridge\nthis is not toml\n' > "$ROOT/etc/bridge/settings.toml"
in_root systemctl reset-failed bridge 2>/dev/null
in_root systemctl start bridge > /dev/null 2>&1
sleep 3
STATE="$(show ActiveState)/$(show SubState)"
STATUS=$(show ExecMainStatus)
RESTARTS=$(show NRestarts)
if [ "$STATE" = failed/failed ] && [ "$STATUS" = 2 ] && [ "$RESTARTS" = 0 ]; then
    pass badconfig "a broken settings.toml: $STATE, exit status 2, NRestarts=0 (no auto-restart): $(in_root journalctl _SYSTEMD_UNIT=bridge.service -p err --no-pager -o cat -n 1)"
else
    fail badconfig "state $STATE, exit status $STATUS, NRestarts=$RESTARTS"
    in_root systemctl status --no-pager bridge 2>&1 | tail -10
fi
write_settings Second > "$ROOT/etc/bridge/settings.toml"

# post: a live post to tests/fakes/x_api.py's fake X, started in the container with the venv's
# python (pytest, which the module imports for its fixture only, is stubbed), the four secrets in
# /etc/bridge/credentials/x/ reaching the daemon through LoadCredential=, from a local feed (a
# new source: the failing one is in backoff).
mkdir -p "$ROOT/opt/bridge-check"
cat > "$ROOT/opt/bridge-check/fake_x.py" <<'EOF'
import json, sys, threading, time, types
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.modules["pytest"] = types.SimpleNamespace(fixture=lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f)))
sys.path.insert(0, "/opt/bridge/src")
from tests.fakes.x_api import CREDENTIALS, FakeXApi

RSS = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>check</title><link>http://127.0.0.1/</link>
<description>nspawn-check</description><item><title>Berita uji nspawn</title>
<link>http://127.0.0.1/berita/1</link><guid>http://127.0.0.1/berita/1</guid>
<pubDate>{formatdate(usegmt=True)}</pubDate><description>Satu berita.</description></item></channel></rss>"""

class Feed(BaseHTTPRequestHandler):
    def do_GET(self):
        body = RSS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

x = FakeXApi().start()
feed = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
threading.Thread(target=feed.serve_forever, daemon=True).start()
for field, value in CREDENTIALS.items():
    open(f"/run/fake-x/{field}", "w").write(value)
open("/run/fake-x/ports", "w").write(f"{x.base_url} http://127.0.0.1:{feed.server_address[1]}/feed.xml\n")
while True:
    with open("/run/fake-x/tweets.json.new", "w") as out:
        json.dump({"tweets": x.tweets, "requests": [[r.method, r.path, r.auth_problem] for r in x.requests]}, out)
    import os; os.replace("/run/fake-x/tweets.json.new", "/run/fake-x/tweets.json")
    time.sleep(0.5)
EOF
in_root systemctl stop bridge-fake-x >/dev/null 2>&1
in_root systemctl reset-failed bridge-fake-x >/dev/null 2>&1
in_root sh -c 'rm -rf /run/fake-x; mkdir -p /run/fake-x'
in_root systemd-run --quiet --unit=bridge-fake-x /opt/bridge/venv/bin/python /opt/bridge-check/fake_x.py
# (The container's /run is its own tmpfs, not $ROOT/run: it is read through in_root.)
PORTS=
for _ in $(seq 100); do PORTS=$(in_root cat /run/fake-x/ports 2>/dev/null) && [ -n "$PORTS" ] && break; sleep 0.2; done
if [ -n "$PORTS" ]; then
    read -r X_URL FEED_URL <<< "$PORTS"
    in_root sh -c 'install -d -m 0700 /etc/bridge/credentials/x &&
        for field in consumer_key consumer_secret access_token access_token_secret; do
            install -m 0600 /run/fake-x/$field /etc/bridge/credentials/x/$field; done'

    write_settings Nspawn | sed "s|^dry_run = true|dry_run = false|; s|^first_run = \"skip\"|first_run = \"latest:1\"|;
        s|^name = .*|name = \"local-feed\"|; s|^url = .*|url = \"$FEED_URL\"|; s|^kind = \"x\"|kind = \"x\"\napi_base = \"$X_URL\"\nmin_interval = \"0s\"|" \
        > "$ROOT/etc/bridge/settings.toml"
    in_root systemctl reset-failed bridge 2>/dev/null
    in_root systemctl start bridge
    TWEET=
    for _ in $(seq 90); do
        TWEET=$(in_root /opt/bridge/venv/bin/python -c 'import json; d = json.load(open("/run/fake-x/tweets.json")); print(d["tweets"][0]["text"] if d["tweets"] else "")' 2>/dev/null)
        [ -n "$TWEET" ] && break
        sleep 1
    done
    if [ -n "$TWEET" ]; then
        pass post "the fake X got a post signed with the LoadCredential secrets: \"$TWEET\""
        # A live reload: ExecReload= runs `bridge reload`, which must not need the credentials the
        # unit gives the daemon (under systemd 252 it could not read them: PermissionError).
        if out=$(in_root systemctl reload bridge 2>&1); then
            pass reload-live "systemctl reload succeeded with live credentials (LoadCredential=)"
        else
            fail reload-live "systemctl reload failed with live credentials: $out $(in_root journalctl -u bridge --no-pager -o cat -n 4)"
        fi
    else
        fail post "no post reached the fake X in 90 s; its requests: $(in_root cat /run/fake-x/tweets.json 2>/dev/null | head -c 400)"
        in_root journalctl -u bridge --no-pager -o cat -n 15
    fi
    in_root systemctl stop bridge bridge-fake-x
else
    fail post "the fake X did not start: $(in_root journalctl -u bridge-fake-x --no-pager -o cat -n 10)"
    in_root systemctl stop bridge-fake-x
fi
write_settings Second > "$ROOT/etc/bridge/settings.toml"

echo "nspawn-check: $PASSED passed, $FAILED failed in $(( $(date +%s) - STARTED )) s"
[ "$FAILED" -eq 0 ]
