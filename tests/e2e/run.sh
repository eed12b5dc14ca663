#!/usr/bin/env bash
# The kind end-to-end test (`make e2e`): a throwaway Kubernetes cluster with Argo Workflows, the project's
# chart (MinIO, MLflow, RBAC) and CPU image; submits STUDY=tiny with the kind profile through `limit submit`,
# waits for the workflow, then checks MLflow and MinIO (tests/e2e/check_results.py).
#
# Needs docker, kind, kubectl, helm and curl on PATH. KEEP_CLUSTER=1 keeps the cluster afterwards;
# ARGO_VERSION overrides the Argo Workflows release (tests/e2e/cluster.py pins a confirmed one).
# The waits live in tests/e2e/cluster.py: they fail fast on pods that can never run (CrashLoopBackOff,
# ErrImageNeverPull, unschedulable) and ride out a failed kubectl call instead of ending the script.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER="${KIND_CLUSTER:-limit-e2e}"
NAMESPACE=limit
STUDY=tiny
PROFILE=kind
IMAGE=limit-cpu:e2e
TIMEOUT_S="${E2E_TIMEOUT_S:-2700}"
LOGS=runs/e2e
PY=.venv/bin/python
PORT_FORWARDS=()

say() { printf '\n== %s\n' "$*"; }

for tool in docker kind kubectl helm curl; do
  command -v "$tool" > /dev/null || { echo "e2e: '$tool' is not on PATH" >&2; exit 2; }
done
mkdir -p "$LOGS"

diagnose() {
  say "diagnostics (also in $LOGS/)"
  kubectl get pods -A -o wide | tee "$LOGS/pods.txt" || true
  kubectl -n "$NAMESPACE" get workflows -o yaml > "$LOGS/workflows.yaml" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp > "$LOGS/events.txt" 2>&1 || true
  tail -40 "$LOGS/events.txt" || true
  for pod in $(kubectl -n "$NAMESPACE" get pods -o name 2> /dev/null || true); do
    kubectl -n "$NAMESPACE" describe "$pod" > "$LOGS/$(basename "$pod").describe.txt" 2>&1 || true
    kubectl -n "$NAMESPACE" logs "$pod" --all-containers --tail=200 > "$LOGS/$(basename "$pod").log" 2>&1 || true
  done
  kubectl -n argo logs deploy/workflow-controller --tail=200 > "$LOGS/workflow-controller.log" 2>&1 || true
}

stop_forwards() {
  for pid in "${PORT_FORWARDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  PORT_FORWARDS=()
}

cleanup() {
  local code=$?
  stop_forwards
  if [[ $code -ne 0 ]]; then diagnose; fi
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then kind delete cluster --name "$CLUSTER" > /dev/null 2>&1 || true; fi
  exit $code
}
trap cleanup EXIT

forward() {  # forward <namespace> <service> <port>: in the background, until the port answers
  kubectl -n "$1" port-forward "svc/$2" "$3:$3" > "$LOGS/port-forward-$2.log" 2>&1 &
  PORT_FORWARDS+=($!)
  for _ in $(seq 60); do
    if (echo > "/dev/tcp/127.0.0.1/$3") 2> /dev/null; then return 0; fi
    sleep 1
  done
  echo "e2e: port-forward to $2:$3 did not come up" >&2
  return 1
}

say "project environment (.venv)"
make install

say "kind cluster $CLUSTER"
if ! kind get clusters 2> /dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 180s
fi

say "Argo Workflows"
"$PY" tests/e2e/cluster.py argo-manifest --out "$LOGS/argo-install.yaml"  # HEAD-checks the release first
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side -n argo -f "$LOGS/argo-install.yaml"
"$PY" tests/e2e/cluster.py rollout argo workflow-controller argo-server --timeout 300

say "CPU image $IMAGE"
TAG=e2e bash images/build.sh cpu
# Docker 29 keeps images in containerd's image store, from which `kind load docker-image` can fail
# ("content digest ... not found"): save this platform's image to an archive, load that, then make sure
# the node's containerd really has it (a missing image would only show as ErrImageNeverPull much later).
archive="$(mktemp -d)/limit-cpu.tar"
platform="linux/$(docker version -f '{{.Server.Arch}}')"
docker image save --platform "$platform" -o "$archive" "$IMAGE" 2> /dev/null || docker image save -o "$archive" "$IMAGE"
kind load image-archive "$archive" --name "$CLUSTER"
rm -rf "$(dirname "$archive")"
docker exec "$CLUSTER-control-plane" crictl inspecti "docker.io/library/$IMAGE" > /dev/null \
  || { echo "e2e: $IMAGE is not in the kind node's containerd after kind load" >&2; exit 1; }

say "chart charts/limit (MinIO, MLflow, RBAC) in namespace $NAMESPACE"
helm upgrade --install limit charts/limit --namespace "$NAMESPACE" --create-namespace \
  -f tests/e2e/values-kind.yaml --timeout 10m
"$PY" tests/e2e/cluster.py rollout "$NAMESPACE" limit-minio limit-mlflow --timeout 600

say "submit $STUDY with profile $PROFILE"
export ARGO_SERVER=https://localhost:2746 ARGO_INSECURE_SKIP_VERIFY=true
token=""
for _ in $(seq 30); do  # Kubernetes fills a service-account-token Secret shortly after it is created
  token="$(kubectl -n "$NAMESPACE" get secret limit-submitter-token -o jsonpath='{.data.token}' || true)"
  [[ -n "$token" ]] && break
  sleep 2
done
[[ -n "$token" ]] || { echo "e2e: the submitter token Secret stayed empty" >&2; exit 1; }
ARGO_TOKEN="Bearer $(base64 -d <<< "$token")"
export ARGO_TOKEN
forward argo argo-server 2746
.venv/bin/limit submit "$STUDY" --profile "$PROFILE" | tee "$LOGS/submit.txt"
stop_forwards
WORKFLOW="$(awk '/^submitted workflow/ {print $3}' "$LOGS/submit.txt")"
[[ -n "$WORKFLOW" ]] || { echo "e2e: no workflow name in the submit output" >&2; exit 1; }

say "waiting for $WORKFLOW (at most ${TIMEOUT_S}s)"
"$PY" tests/e2e/cluster.py workflow "$NAMESPACE" "$WORKFLOW" --timeout "$TIMEOUT_S" --poll 20

say "checking MLflow and MinIO"
# Opened now, not before the wait: a port-forward idle for the whole run can die without a word.
forward "$NAMESPACE" limit-mlflow 5000
forward "$NAMESPACE" limit-minio 9000
"$PY" tests/e2e/check_results.py --study "$STUDY" --workflow "$WORKFLOW" \
  --mlflow http://localhost:5000 --s3-endpoint http://localhost:9000 --artifacts s3://limit/artifacts \
  --access-key limit-e2e --secret-key limit-e2e-secret
say "e2e passed: $WORKFLOW"
