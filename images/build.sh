#!/usr/bin/env bash
# Build the project's images (`make image`).
#
#   bash images/build.sh [cpu|gpu|all|lock]     (default: all)
#
#   TAG       image tag (default: the project version in pyproject.toml)
#   REGISTRY  prefix such as ghcr.io/you/ (default: none, local images)
#   PUSH=1    push after building, then print the digest the registry serves (`pushed REPO@sha256:...`):
#             profiles name images by that digest, since a tag can be pushed again under a running study
#   VENV      the environment `lock` reads (default: .venv, the one `make test` runs in)
#   lock      rewrite images/constraints.txt from that environment (the versions `make test` passed with)
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
tag="${TAG:-$version}"
registry="${REGISTRY:-}"

lock() {
  # The same code `make test` checks the lock with (images/lock.py), run by the tested interpreter.
  "${VENV:-.venv}/bin/python" images/lock.py write
}

build() {
  local flavour="$1" image="${registry}limit-$1:${tag}"
  # BuildKit reads images/<flavour>.Dockerfile.dockerignore: only the project's sources enter the context.
  DOCKER_BUILDKIT=1 docker build -f "images/${flavour}.Dockerfile" -t "$image" .
  echo "built $image"
  if [[ "${PUSH:-0}" == 1 ]]; then
    docker push "$image"
    pushed_digest "${registry}limit-$1" "$image"
  fi
}

# Asks the registry (not the local store, which may hold several repositories' digests) what the tag now names.
pushed_digest() {
  local repository="$1" image="$2" digest
  digest="$(docker buildx imagetools inspect --format '{{.Manifest.Digest}}' "$image")"
  if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "build.sh: the registry gave no digest for $image (got '$digest')" >&2
    exit 1
  fi
  echo "pushed ${repository}@${digest}"
}

case "$what" in
  cpu | gpu) build "$what" ;;
  all) build cpu && build gpu ;;
  lock) lock ;;
  *) echo "usage: $0 [cpu|gpu|all|lock]" >&2; exit 2 ;;
esac
