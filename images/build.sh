#!/usr/bin/env bash
# Build the project's images (`make image`).
#
#   bash images/build.sh [cpu|gpu|all|lock]     (default: all)
#
#   TAG       image tag (default: the project version in pyproject.toml)
#   REGISTRY  prefix such as ghcr.io/you/ (default: none, local images)
#   PUSH=1    push after building
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
  fi
}

case "$what" in
  cpu | gpu) build "$what" ;;
  all) build cpu && build gpu ;;
  lock) lock ;;
  *) echo "usage: $0 [cpu|gpu|all|lock]" >&2; exit 2 ;;
esac
