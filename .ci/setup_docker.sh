#!/usr/bin/env bash
# Make a Docker daemon answer on this machine (Debian or Ubuntu).
#
#   .ci/setup_docker.sh
#
# Installs docker.io, debootstrap and slirp4netns (the subprocess backend's
# network for network=True sessions) with apt-get when they are missing, starts
# dockerd in the background when no daemon answers (through systemd where it
# runs, otherwise directly, logging to $LCI_DOCKERD_LOG), and waits until
# `docker info` succeeds. Safe to run again: an answering daemon is left alone.
# Exits non-zero, with the end of the daemon log, if the daemon never answers.
#
# Environment:
#   LCI_DOCKERD_LOG      daemon log when started here (/tmp/dockerd.log)
#   LCI_DOCKERD_TIMEOUT  seconds to wait for the daemon (60)
#   LCI_DOCKERD_ARGS     extra dockerd arguments, split on spaces (none); given
#                        these, a daemon is started even if another dockerd
#                        runs (say with its own --host, --data-root, --exec-root
#                        and --pidfile). Note that --bridge none deletes the
#                        host's docker0, which breaks any other daemon's
#                        bridge network.
#   DOCKER_HOST          honoured by the docker client as usual
set -euo pipefail

LOG="${LCI_DOCKERD_LOG:-/tmp/dockerd.log}"
TIMEOUT="${LCI_DOCKERD_TIMEOUT:-60}"
read -r -a EXTRA_ARGS <<<"${LCI_DOCKERD_ARGS:-}"

say() { printf '[setup_docker] %s\n' "$*"; }
fail() {
    printf '[setup_docker] error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        fail "need root (or sudo) for: $*"
    fi
}

daemon_answers() {
    timeout 10 docker info >/dev/null 2>&1
}

show_log_tail() {
    if [[ -s "$LOG" ]]; then
        echo "---- last lines of $LOG ----" >&2
        tail -n 40 "$LOG" >&2
    elif command -v journalctl >/dev/null && [[ -d /run/systemd/system ]]; then
        journalctl -u docker --no-pager -n 40 >&2 || true
    fi
}

# 1. Packages.
missing=()
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    missing+=(docker.io)
fi
command -v debootstrap >/dev/null || missing+=(debootstrap)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
command -v slirp4netns >/dev/null || [[ -x /usr/bin/slirp4netns ]] || missing+=(slirp4netns)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "docker.io, debootstrap and slirp4netns are installed"
fi

# 2. Daemon.
if daemon_answers; then
    say "Docker daemon already answers (server $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

dockerd_running() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

STARTED_PID=""
if ((${#EXTRA_ARGS[@]} == 0)) && dockerd_running; then
    say "dockerd is running but not answering yet; waiting"
elif ((${#EXTRA_ARGS[@]} == 0)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    say "starting docker with systemctl"
    as_root systemctl start docker || say "systemctl start docker failed"
else
    say "starting dockerd ${EXTRA_ARGS[*]} in the background (log: $LOG)"
    : >"$LOG"
    # A session of its own, so the daemon outlives this script and its job.
    as_root setsid dockerd "${EXTRA_ARGS[@]}" >>"$LOG" 2>&1 </dev/null &
    STARTED_PID=$!
fi

say "waiting up to ${TIMEOUT}s for the daemon"
start=$SECONDS
until daemon_answers; do
    if [[ -n "$STARTED_PID" ]] && ! kill -0 "$STARTED_PID" 2>/dev/null; then
        show_log_tail
        fail "dockerd exited before answering"
    fi
    if ((SECONDS - start >= TIMEOUT)); then
        show_log_tail
        fail "no answer from the Docker daemon after ${TIMEOUT}s"
    fi
    sleep 1
done
say "Docker daemon answers after $((SECONDS - start))s (server $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'), storage $(docker info -f '{{.Driver}}' 2>/dev/null || echo '?'))"
