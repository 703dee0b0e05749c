#!/usr/bin/env bash
# Build deploy/Dockerfile with buildah (no Docker engine, no registry) and
# smoke-test the image: SERVING, liveness, a call, and a clean SIGTERM drain.
#
# Needs root and Debian's buildah and mmdebstrap. With no registry to pull
# python:3.11-slim-bookworm from, the base image is made here from Debian
# bookworm with mmdebstrap (python3, python3-venv, python-is-python3). The
# build's pip reaches PyPI with this machine's pip.conf and CA certificates,
# mounted for the build only. Not part of CI: it downloads ~300 MB and takes
# a few minutes. Run from anywhere: deploy/check-image.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
BUILDAH=(buildah --storage-driver vfs)
BASE=localhost/flowservice-base:bookworm
IMAGE=localhost/flowservice:check
container=""
cleanup() {
  [ -n "$container" ] && "${BUILDAH[@]}" rm "$container" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  mmdebstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$WORK/rootfs.tar" http://deb.debian.org/debian
  base=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$base" "$WORK/rootfs.tar" /
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$base"
  "${BUILDAH[@]}" commit --rm "$base" "$BASE"
fi

# --format docker: the OCI format has no HEALTHCHECK (buildah drops it with a warning).
"${BUILDAH[@]}" bud --format docker --isolation chroot --pull-never \
  -v /etc/pip.conf:/etc/pip.conf:ro -v /etc/ssl/certs:/etc/ssl/certs:ro \
  --build-arg PYTHON_IMAGE="$BASE" -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
"${BUILDAH[@]}" inspect --type image "$IMAGE" | grep -q '"Healthcheck"'

# chroot isolation shares this machine's network: a free loopback port, not 0.0.0.0:50051.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
container=$("${BUILDAH[@]}" from "$IMAGE")
"${BUILDAH[@]}" run --isolation chroot --env FLOWSERVICE_ADDRESS="127.0.0.1:$port" \
  --env FLOWSERVICE_LOG_FORMAT=text "$container" -- sh -euc "
    test \"\$(id -u)\" = 10001
    flowservice serve & server=\$!
    for _ in \$(seq 120); do python -m flowservice_server.probe 127.0.0.1:$port >/dev/null && break; sleep 0.5; done
    python -m flowservice_server.probe 127.0.0.1:$port
    python -m flowservice_server.probe 127.0.0.1:$port --service liveness
    flowservice flows create from-the-image --target 127.0.0.1:$port
    kill -TERM \$server
    wait \$server
    echo 'image OK: non-root, SERVING, liveness, a call, drained on SIGTERM'
  "
