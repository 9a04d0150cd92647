#!/usr/bin/env bash
# Build the PipelineJobs image (`make image`): a wheelhouse on the host, then the
# image from it with podman or docker, whichever is installed.
#   IMAGE       the tag to build (default localhost/pipelinejobs:latest)
#   BASE_IMAGE  the base (default python:3.11-slim; on a machine without a registry,
#               localhost/pipelinejobs-base:bookworm from deploy/local-base.sh)
#   ENGINE      podman or docker (default: podman if installed, else docker)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-localhost/pipelinejobs:latest}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
if [ -z "$ENGINE" ]; then
    echo "build-image: neither podman nor docker is installed" >&2
    exit 1
fi
rm -rf build/wheels
# The host resolves for its own Python: name what the image's Python needs besides
# (redis-py wants async-timeout before 3.11.3, and Debian bookworm's is 3.11.2).
# A fixed timestamp makes the project's wheel the same bytes when its files are, so
# the build's cache holds until the code changes.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} \
    "$PYTHON" -m pip wheel --quiet --wheel-dir build/wheels . 'async-timeout>=4.0.3'
extra=()
if [ "$(basename "$ENGINE")" = podman ]; then
    extra=(--format docker)  # the OCI format has no HEALTHCHECK: podman would drop it
fi
before=$("$ENGINE" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
"$ENGINE" build --quiet "${extra[@]}" --build-arg "BASE=$BASE_IMAGE" \
    -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
after=$("$ENGINE" image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$before" ] && [ "$before" != "$after" ]; then
    # The image the tag moved from: left untagged, every rebuild would cost ~370 MB.
    "$ENGINE" image rm "$before" >/dev/null 2>&1 || true  # kept if a container uses it
fi
echo "built $IMAGE on $BASE_IMAGE"
