#!/usr/bin/env bash
# A Debian bookworm base image made on this machine, for machines that reach no
# image registry but do reach Debian's packages: debootstrap (minbase) with Python
# and its venv module, and redis-server, so the one base serves both the
# PipelineJobs image and compose's Redis (deploy/compose.local.yml). Made once: the
# engine's image store keeps it, and debootstrap's downloads are cached in
# $CACHE_DIR for the next machine build. Needs root (debootstrap) and podman.
#   BASE_IMAGE  the tag (default localhost/pipelinejobs-base:bookworm)
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-localhost/pipelinejobs-base:bookworm}
CACHE_DIR=${CACHE_DIR:-/var/cache/pipelinejobs-debootstrap}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if podman image exists "$BASE_IMAGE"; then
    echo "$BASE_IMAGE is there already"
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$CACHE_DIR"
debootstrap --variant=minbase --include=python3,python3-venv,redis-server \
    --cache-dir="$CACHE_DIR" bookworm "$rootfs" "$MIRROR" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
echo "imported $BASE_IMAGE"
