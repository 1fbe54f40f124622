# Container image of the `election` service.
#
#   docker build -t election .                     # normal build: dependencies come from PyPI
#   podman build -t election .                     # the same with podman
#
# Offline (no package index reachable inside the build), give pre-downloaded wheels of the runtime
# dependencies and of the build backend (setuptools, wheel) as the named build context `wheels`;
# scripts/image-tools.sh does all of it, including a stand-in base image where no registry answers:
#
#   podman build --build-context wheels=DIR --build-arg PIP_FIND_LINKS=/wheels -t election .
#
# Two stages on the same base: `build` makes a wheel of the project and installs it with its
# dependencies into the virtualenv /opt/venv; the final stage copies only that virtualenv (no
# compilers, no pip, no pip cache, no sources). The virtualenv's interpreter is a link to the base
# image's python, wherever the base keeps it, so both stages must use the same base.
#
# Kubernetes checks the pod with liveness/readiness probes on /healthz and /readyz (see the chart),
# and ignores a Dockerfile HEALTHCHECK (the OCI image format, podman's default, cannot even store one).
# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the chart's probes on /healthz and /readyz check the pod

# Empty unless a build supplies `--build-context wheels=DIR`; mounted at /wheels in the build stage.
FROM scratch AS wheels

FROM docker.io/library/python:3.11-slim-bookworm AS build

# Set to /wheels (with `--build-context wheels=DIR`) to install only from those wheels, offline.
ARG PIP_FIND_LINKS=""

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app

# Bytecode is compiled at install time: the final image runs as a non-root user on a read-only
# root file system, so Python could not write it later.
RUN --mount=type=bind,from=wheels,target=/wheels \
    set -eu; \
    if [ -n "${PIP_FIND_LINKS}" ]; then export PIP_NO_INDEX=1; fi; \
    python -m venv /opt/venv; \
    /opt/venv/bin/python -m pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist .; \
    /opt/venv/bin/python -m pip install --no-cache-dir /tmp/dist/election-*.whl; \
    /opt/venv/bin/python -m pip uninstall --yes pip setuptools; \
    /opt/venv/bin/election --version

FROM docker.io/library/python:3.11-slim-bookworm

# A fixed uid/gid, so that volumes (the shared file-dir) and the pod's securityContext can name it.
RUN groupadd --gid 10001 election \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin election \
    && mkdir /data \
    && chown 10001:10001 /data

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ELECTION_HTTP_ADDRESS=0.0.0.0:8080 \
    ELECTION_FILE_DIR=/data

ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="election" \
      org.opencontainers.image.description="Leader election over a ZooKeeper ephemeral node; the leader writes files on a schedule or runs your command (--exec)." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

USER 10001:10001
WORKDIR /data
EXPOSE 8080
# The app's Stopping state runs on SIGTERM: it releases the leader node and exits 0 within
# --shutdown-timeout, which must stay below the orchestrator's grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["election", "run"]
