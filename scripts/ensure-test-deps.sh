#!/usr/bin/env bash
# Make sure the real peers and servers the tests talk to are present. Fails loudly.
#   SIPp (Debian: sip-tester), baresip, openssl, ffmpeg, rtpengine (Debian: rtpengine-daemon,
#   userspace only); PostgreSQL on 127.0.0.1:5432; Redis on 127.0.0.1:6379.
#   --bench also installs Kamailio (the reference proxy for `make bench`).
set -euo pipefail

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need_pkgs+=(baresip)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v ffmpeg >/dev/null 2>&1 || need_pkgs+=(ffmpeg)  # M4A/AAC prompt uploads
if [[ "${1:-}" == "--bench" ]]; then
  command -v kamailio >/dev/null 2>&1 || need_pkgs+=(kamailio)
fi

# The second relay of the recording tests. --no-install-recommends: its recommended
# rtpengine-recording-daemon needs the kernel module (not loadable here) and pulls in NFS.
need_rtpengine=0
command -v rtpengine >/dev/null 2>&1 || need_rtpengine=1

SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
if ((${#need_pkgs[@]} + need_rtpengine)); then
  $SUDO apt-get update -qq || { echo "error: apt-get update failed" >&2; exit 1; }
fi
if ((${#need_pkgs[@]})); then
  echo "installing Debian packages: ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || { echo "error: cannot install ${need_pkgs[*]}" >&2; exit 1; }
fi
if ((need_rtpengine)); then
  echo "installing Debian package: rtpengine-daemon (without recommends)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    rtpengine-daemon >/dev/null || { echo "error: cannot install rtpengine-daemon" >&2; exit 1; }
fi

# SIPVicious (svcrack) for tests/integration/test_attack_bruteforce.py: a Python tool, so it
# goes into the project's venv (make creates it first), not the system.
VENV_PY="$(dirname "$0")/../.venv/bin/python"
if [[ -x "$VENV_PY" ]] && ! [[ -x "$(dirname "$0")/../.venv/bin/sipvicious_svcrack" ]]; then
  echo "installing sipvicious into .venv"
  "$VENV_PY" -m pip install -q sipvicious || { echo "error: cannot install sipvicious" >&2; exit 1; }
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 5432 || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! port_open 6379; then
  echo "starting Redis"
  command -v redis-server >/dev/null 2>&1 || { echo "error: redis-server is not installed" >&2; exit 1; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { echo "error: Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
fi
