#!/usr/bin/env bash
# Install everything `make demo` and `make test` need, idempotently:
#   - Debian packages: zookeeper (a real server from its jars, for the demo and the tests; it starts
#     no service) and prometheus (promtool lints our metrics and alert rules; the server scrapes
#     live replicas in tests/deploy);
#   - a virtualenv in .venv with the project and its pinned test dependencies;
#   - helm, kubectl, checkov, prometheus-operator models in .tools/ (scripts/deploy-tools.sh).
# Needs root (or sudo) only the first time, for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
# The chaos suite: strace holds a leader inside its write; iptables cuts one replica's connection.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# libfaketime runs one replica with its wall clock behind the others' (audit under clock skew).
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || need_apt+=(faketime)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The exec benchmark's anchor: `etcdctl lock NAME -- COMMAND` on a local etcd (no service is started).
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "bootstrap: need root or sudo to apt-get install ${need_apt[*]}" >&2; exit 1; fi
  echo "bootstrap: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp="$VENV/.installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: pip install -e .[test]"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e '.[test]'
  touch "$stamp"
fi

# helm, kubectl, checkov and the prometheus-operator models for tests/deploy, into .tools/
# (silent when present). The container image tests build their own tools (scripts/image-tools.sh).
PYTHON="$VENV/bin/python" scripts/deploy-tools.sh
