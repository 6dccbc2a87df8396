#!/usr/bin/env bash
# Installs everything kapistrano needs on a fresh Debian 12 machine (as root), then runs a job:
#   bash scripts/setup.sh demo   -> the demo: local SSH test hosts and a rolling release across them
#   bash scripts/setup.sh test   -> lint, types and the whole test suite
#   bash scripts/setup.sh        -> install only
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # test hosts: real sshd in network/mount namespaces
  openssh-server openssh-client iproute2 util-linux procps psmisc
  # sources fetched by hosts
  git curl ca-certificates tar gzip rsync
  # python
  python3 python3-venv python3-pip
  # real workloads and the tools kapistrano is compared with
  redis-server rabbitmq-server ruby ruby-sidekiq ruby-bunny unicorn capistrano
  # promtool checks the shipped PrometheusRule (manifests/monitoring/)
  prometheus
)

need_apt=0
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { need_apt=1; break; }
done
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start system services: tests start their own daemons on free ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.kapistrano-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

# The Kubernetes API server the e2e tests and `kapistrano demo --operator` run against: built from
# tests/kube (pinned Go modules) and cached in /var/cache/kapistrano under a hash of its sources, so
# only the first run on a machine builds it (about 6 minutes on 2 cores). For the test job a cold
# build runs in the background at the lowest CPU priority while the tests that need no API server
# run; scripts/test.sh waits for it (the build's lock) before the rest.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || { echo "Go (1.26 or later) is needed to build the test API server (tests/kube)" >&2; exit 1; }
if [ "${1:-}" = test ] && [ ! -x "$(python -m kapistrano.lab.kubeserver path)" ]; then
  build_log=$(mktemp /tmp/kapistrano-kube-build.XXXXXX)
  echo "building the test API server in the background (log: $build_log)"
  nice -n 19 python -m kapistrano.lab.kubeserver build >"$build_log" 2>&1 &
  export KAPISTRANO_KUBE_BUILDING=1
else
  python -m kapistrano.lab.kubeserver build >/dev/null
fi

case "${1:-}" in
  demo) shift; exec kapistrano demo "$@" ;;
  test) shift; exec bash scripts/test.sh "$@" ;;
  "") echo "installed; run: . .venv/bin/activate" ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac
