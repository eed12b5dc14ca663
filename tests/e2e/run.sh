#!/usr/bin/env bash
# The kind end-to-end test (`make e2e`): a throwaway Kubernetes cluster with Argo Workflows, the project's
# chart (MinIO, MLflow, RBAC) and CPU image; submits STUDY=tiny with the kind profile through `limit submit`,
# waits for the workflow, then checks MLflow and MinIO (tests/e2e/check_results.py).
#
# Needs docker, kind, kubectl and helm on PATH. KEEP_CLUSTER=1 keeps the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER="${KIND_CLUSTER:-limit-e2e}"
ARGO_VERSION="${ARGO_VERSION:-v4.0.15}"
NAMESPACE=limit
STUDY=tiny
PROFILE=kind
IMAGE=limit-cpu:e2e
TIMEOUT_S="${E2E_TIMEOUT_S:-2700}"
LOGS=runs/e2e
PORT_FORWARDS=()

say() { printf '\n== %s\n' "$*"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" > /dev/null || { echo "e2e: '$tool' is not on PATH" >&2; exit 2; }
done
mkdir -p "$LOGS"

diagnose() {
  say "diagnostics (also in $LOGS/)"
  kubectl get pods -A -o wide | tee "$LOGS/pods.txt" || true
  kubectl -n "$NAMESPACE" get workflows -o yaml > "$LOGS/workflows.yaml" 2>&1 || true
  kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -40 || true
  for pod in $(kubectl -n "$NAMESPACE" get pods -o name 2>/dev/null); do
    kubectl -n "$NAMESPACE" logs "$pod" --all-containers --tail=200 > "$LOGS/$(basename "$pod").log" 2>&1 || true
  done
  kubectl -n argo logs deploy/workflow-controller --tail=200 > "$LOGS/workflow-controller.log" 2>&1 || true
}

cleanup() {
  local code=$?
  for pid in "${PORT_FORWARDS[@]}"; do kill "$pid" 2> /dev/null || true; done
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
clusters="$(kind get clusters 2> /dev/null)"
grep -qx "$CLUSTER" <<< "$clusters" || kind create cluster --name "$CLUSTER" --wait 180s

say "Argo Workflows $ARGO_VERSION"
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side -n argo \
  -f "https://github.com/argoproj/argo-workflows/releases/download/${ARGO_VERSION}/install.yaml"
kubectl -n argo rollout status deploy/workflow-controller --timeout=300s
kubectl -n argo rollout status deploy/argo-server --timeout=300s

say "CPU image $IMAGE"
TAG=e2e bash images/build.sh cpu
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "chart charts/limit (MinIO, MLflow, RBAC) in namespace $NAMESPACE"
helm dependency build charts/limit  # Helm insists on the optional Argo subchart being present, even when off
helm upgrade --install limit charts/limit --namespace "$NAMESPACE" --create-namespace \
  -f tests/e2e/values-kind.yaml --wait --timeout 10m

forward argo argo-server 2746
forward "$NAMESPACE" limit-mlflow 5000
forward "$NAMESPACE" limit-minio 9000

say "submit $STUDY with profile $PROFILE"
export ARGO_SERVER=https://localhost:2746 ARGO_INSECURE_SKIP_VERIFY=true
token=""
for _ in $(seq 30); do  # Kubernetes fills a service-account-token Secret shortly after it is created
  token="$(kubectl -n "$NAMESPACE" get secret limit-submitter-token -o jsonpath='{.data.token}' | base64 -d)"
  [[ -n "$token" ]] && break
  sleep 2
done
[[ -n "$token" ]] || { echo "e2e: the submitter token Secret stayed empty" >&2; exit 1; }
export ARGO_TOKEN="Bearer $token"
.venv/bin/limit submit "$STUDY" --profile "$PROFILE" | tee "$LOGS/submit.txt"
WORKFLOW="$(awk '/^submitted workflow/ {print $3}' "$LOGS/submit.txt")"
[[ -n "$WORKFLOW" ]] || { echo "e2e: no workflow name in the submit output" >&2; exit 1; }

say "waiting for $WORKFLOW (at most ${TIMEOUT_S}s)"
deadline=$((SECONDS + TIMEOUT_S))
phase=""
while ((SECONDS < deadline)); do
  phase="$(kubectl -n "$NAMESPACE" get workflow "$WORKFLOW" -o jsonpath='{.status.phase}')"
  case "$phase" in
    Succeeded) break ;;
    Failed | Error) echo "e2e: workflow $WORKFLOW $phase" >&2; exit 1 ;;
  esac
  kubectl -n "$NAMESPACE" get workflow "$WORKFLOW" \
    -o jsonpath='{.status.phase} {.status.progress}{"\n"}' 2> /dev/null || true
  sleep 20
done
[[ "$phase" == Succeeded ]] || { echo "e2e: workflow $WORKFLOW still '$phase' after ${TIMEOUT_S}s" >&2; exit 1; }

say "checking MLflow and MinIO"
.venv/bin/python tests/e2e/check_results.py --study "$STUDY" --workflow "$WORKFLOW" \
  --mlflow http://localhost:5000 --s3-endpoint http://localhost:9000 --artifacts s3://limit/artifacts \
  --access-key limit-e2e --secret-key limit-e2e-secret
say "e2e passed: $WORKFLOW"
