#!/bin/sh
# bitmail-ctl: runs BitMail's services on this host. Written by `cargo xtask deploy`
# into every release (bin/bitmail-ctl); operators may use it too:
#
#   bitmail-ctl status | start [SERVICE...] | stop [SERVICE...] | restart [SERVICE...]
#   bitmail-ctl logs SERVICE | probe
#
# Layout under the root: releases/NAME/{bin,config,systemd,SERVICES}, current -> the
# release in use, run/SERVICE.pid and logs/SERVICE.log (script supervisor), data/ (the
# services' working folder, shared by every release), env (optional VAR=value lines,
# for secrets written as { env = "VAR" }).
set -u
ROOT=@ROOT@
SUPERVISOR=@SUPERVISOR@
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi
cd "$ROOT" || { echo "cannot enter $ROOT" >&2; exit 90; }
HERE=$(pwd -P)
mkdir -p run logs data

say() { echo "  $*"; }

load_env() {
    if [ -f "$ROOT/env" ]; then set -a; . "$ROOT/env"; set +a; fi
}

# The services of a release folder, in start order.
services_of() { [ -f "$1/SERVICES" ] && cat "$1/SERVICES"; }
reversed() { printf '%s\n' "$@" | sed -n '1!G;h;$p'; }
current_name() { readlink current 2>/dev/null | sed 's#^releases/##'; }

pid_of() { cat "run/$1.pid" 2>/dev/null; }

# Whether process $1 is alive and is service $2's binary: a reused pid is another
# program, and an exited one waiting to be reaped (a zombie) has no executable.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -d "/proc/$1" ] || return 0
    case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
    */bin/"$2" | */bin/"$2"" (deleted)") return 0 ;;
    *) return 1 ;;
    esac
}

# Whether process $1 has ended: gone, or only zombies left. A service's files (and the
# locks on its data) are released with its last thread, which may outlive the main one:
# every thread of the process is looked at, not only the first.
ended() {
    if [ -d "/proc/$1/task" ]; then
        for t in /proc/"$1"/task/*; do
            state=$(sed 's/.*) //; s/ .*//' "$t/stat" 2>/dev/null)
            case "$state" in Z | X | "") ;; *) return 1 ;; esac
        done
        return 0
    fi
    ! kill -0 "$1" 2>/dev/null
}

# Every live process of service $1 started from this root, whatever the pid file says
# (a pid file overwritten by a start that failed must not hide a running service).
pids_in_root() {
    for d in /proc/[0-9]*; do
        [ "$(readlink "$d/cwd" 2>/dev/null)" = "$HERE" ] || continue
        case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
        "current/bin/$1 "*) alive "${d#/proc/}" "$1" && echo "${d#/proc/}" ;;
        esac
    done
}

running() {
    if [ "$SUPERVISOR" = systemd ]; then
        systemctl is-active --quiet "bitmail-$1.service"
        return
    fi
    pid=$(pid_of "$1") && [ -n "$pid" ] && alive "$pid" "$1"
}

start_one() {
    if running "$1"; then say "$1 already running"; return 0; fi
    if [ "$SUPERVISOR" = systemd ]; then
        $SUDO systemctl start "bitmail-$1.service" || return 1
    else
        # The new session detaches it from this shell; the pid written is the one that
        # becomes the service (exec keeps it).
        rm -f "run/$1.pid"
        NO_COLOR=1 setsid sh -c 'echo $$ > "run/$0.pid"; if [ -f env ]; then set -a; . ./env; set +a; fi
            exec "current/bin/$0" --config "current/config/$0.toml"' "$1" \
            >>"logs/$1.log" 2>&1 </dev/null &
        i=0
        while [ ! -s "run/$1.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    say "started $1"
}

stop_one() {
    if [ "$SUPERVISOR" = systemd ]; then
        if running "$1"; then $SUDO systemctl stop "bitmail-$1.service" && say "stopped $1"; fi
        return 0
    fi
    pids=$( (pid_of "$1"; pids_in_root "$1") | sort -u)
    live=
    for pid in $pids; do alive "$pid" "$1" && live="$live $pid"; done
    if [ -n "$live" ]; then
        for pid in $live; do kill -TERM "$pid" 2>/dev/null; done
        # The services drain for their shutdown grace (10 s by default), then exit.
        i=0
        while [ $i -lt 200 ]; do
            left=
            for pid in $live; do ended "$pid" || left="$left $pid"; done
            [ -z "$left" ] && break
            sleep 0.1; i=$((i + 1))
        done
        if [ -n "$left" ]; then
            for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
            say "killed $1 (it did not stop in 20 s)"
        else
            say "stopped $1"
        fi
    fi
    rm -f "run/$1.pid"
}

log_tail() {
    echo "  --- last lines of $1's log ---"
    if [ "$SUPERVISOR" = systemd ]; then
        $SUDO journalctl -u "bitmail-$1.service" -n 20 --no-pager 2>&1 | sed 's/^/  | /'
    else
        tail -n 20 "logs/$1.log" 2>/dev/null | sed 's/^/  | /'
    fi
}

install_units() {
    changed=
    for svc in $(services_of "$1"); do
        unit="bitmail-$svc.service"
        if ! cmp -s "$1/systemd/$unit" "/etc/systemd/system/$unit"; then
            $SUDO cp "$1/systemd/$unit" "/etc/systemd/system/$unit" || return 1
            changed=1
        fi
    done
    if [ -n "$changed" ]; then $SUDO systemctl daemon-reload || return 1; fi
    for svc in $(services_of "$1"); do $SUDO systemctl enable --quiet "bitmail-$svc.service" || return 1; done
}

# Switches `current` to releases/NAME in one rename: a reader sees the old or the new
# link, never none.
switch_to() {
    ln -sfn "releases/$1" current.tmp && mv -T current.tmp current
}

probe() {
    load_env
    "current/bin/$1" --config "current/config/$1.toml" --probe 2>&1
}

wait_healthy() {
    deadline=$(($(date +%s) + $1))
    for svc in $(services_of current); do
        while :; do
            if ! running "$svc"; then
                say "$svc is not running"
                log_tail "$svc"
                return 1
            fi
            if out=$(probe "$svc"); then say "$svc healthy"; break; fi
            if [ "$(date +%s)" -ge "$deadline" ]; then
                say "$svc not healthy after $1 s: $out"
                log_tail "$svc"
                return 1
            fi
            sleep 0.3
        done
    done
}

cmd=${1:-status}
[ $# -gt 0 ] && shift
case "$cmd" in
state)
    echo "current=$(current_name)"
    for d in releases/*/; do [ -d "$d" ] && echo "release=$(basename "$d")"; done
    for svc in backend-server mta-server client-api; do running "$svc" && echo "running=$svc"; done
    ;;
check)
    # Each service checks its configuration in the uploaded folder, on this host.
    load_env
    for svc in $(services_of "$1"); do
        "$1/bin/$svc" --config "$1/config/$svc.toml" --check-config >/dev/null 2>"run/check.err" || {
            echo "$svc: $(cat run/check.err)"; rm -f run/check.err; exit 1; }
    done
    rm -f run/check.err
    ;;
activate)
    [ -d "releases/$1" ] || { echo "no release $1" >&2; exit 1; }
    if [ "$SUPERVISOR" = systemd ]; then install_units "releases/$1" || exit 1; fi
    if [ -e current ]; then
        for svc in $(reversed $(services_of current)); do stop_one "$svc"; done
    fi
    switch_to "$1" || exit 1
    say "current -> releases/$1"
    for svc in $(services_of current); do start_one "$svc" || exit 1; done
    ;;
deactivate)
    if [ -e current ]; then
        for svc in $(reversed $(services_of current)); do stop_one "$svc"; done
        rm -f current
    fi
    ;;
wait-healthy) wait_healthy "$1" ;;
remove)
    for name in "$@"; do
        [ "$name" = "$(current_name)" ] && { echo "refusing to remove the current release $name" >&2; exit 1; }
        rm -rf "releases/$name"
    done
    ;;
start | stop | restart)
    if [ $# -gt 0 ]; then list="$*"; else list=$(services_of current); fi
    if [ "$cmd" != start ]; then for svc in $(reversed $list); do stop_one "$svc"; done; fi
    if [ "$cmd" != stop ]; then for svc in $list; do start_one "$svc"; done; fi
    ;;
status)
    echo "current: $(current_name)"
    for svc in $(services_of current); do
        if running "$svc"; then echo "$svc: running"; else echo "$svc: stopped"; fi
    done
    ;;
probe) for svc in $(services_of current); do echo "$svc: $(probe "$svc")"; done ;;
logs) log_tail "$1" ;;
*) echo "usage: bitmail-ctl status|start|stop|restart [SERVICE...]|logs SERVICE|probe" >&2; exit 64 ;;
esac
