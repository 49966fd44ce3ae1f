#!/usr/bin/env bash
# The autoscaling loop on a kind cluster, as .github/workflows/ci.yml runs it
# on a GitHub runner (Docker, kind, helm and kubectl installed): the image
# built from the Dockerfile, kube-prometheus-stack and prometheus-adapter from
# prometheus-community at stack/Chart.yaml's versions with this repository's
# values, the chart, then locust until the HPA adds a pod, and
# `inferscale doctor` on the release. This project's own machines have no
# Docker: their CI runs the same loop on a local control plane and a real
# node (tests/test_e2e_autoscaling.py).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-inferscale}"
IMAGE="inferscale:ci"
NAMESPACE=inferscale
# Five users at 0.2 requests/s: five pods' worth at the chart's defaults.
USERS=5
PYTHON="${PYTHON:-.venv/bin/python}"

dependency_version() {
  awk -v name="$1" '$2 == "name:" && $3 == name { found = 1 } found && $1 == "version:" { print $2; exit }' stack/Chart.yaml
}

# A failed run leaves its cluster to look into; the next run starts afresh.
# Listed first: some kind releases fail to delete a cluster that is not there.
# (Captured, not piped into grep -q: with pipefail, grep closing the pipe early
# can kill kind with SIGPIPE and the test read as false.)
clusters="$(kind get clusters)"
if grep -qx "$CLUSTER" <<<"$clusters"; then
  kind delete cluster --name "$CLUSTER"
fi
kind create cluster --name "$CLUSTER" --config ci/kind.yaml --wait 120s
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm repo add prometheus-community https://prometheus-community.github.io/helm-charts
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$(dependency_version kube-prometheus-stack)" -n monitoring --create-namespace \
  -f prometheus-values.yaml --wait --timeout 10m
helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \
  --version "$(dependency_version prometheus-adapter)" -n monitoring -f adapter-values.yaml --wait --timeout 5m

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted --overwrite
helm upgrade --install inferscale ./chart -n "$NAMESPACE" --wait --timeout 5m \
  --set image.repository=inferscale --set image.tag=ci --set image.pullPolicy=Never \
  --set service.type=NodePort --set service.nodePort=30080

"$PYTHON" -m locust -f locustfile.py --host http://127.0.0.1:30080 --headless \
  -u "$USERS" -r "$USERS" -t 15m --only-summary &
load=$!
trap 'kill "$load" 2>/dev/null || true' EXIT

# The HPA's first pod beyond minReplicas (which it reaches without load): 15 s
# after the load started at the chart's timing here (bench/README.md,
# bench-autoscale); 10 minutes is room for a slow runner.
min_replicas="$(kubectl get hpa inferscale -n "$NAMESPACE" -o jsonpath='{.spec.minReplicas}')"
for _ in $(seq 120); do
  replicas="$(kubectl get hpa inferscale -n "$NAMESPACE" -o jsonpath='{.status.currentReplicas}')"
  if [[ "${replicas:-0}" -gt "${min_replicas:?the HPA has no minReplicas}" ]]; then
    echo "the HPA scaled to $replicas pods"
    kubectl get hpa -n "$NAMESPACE"
    "$PYTHON" -m inferscale.cli doctor -n "$NAMESPACE" --release inferscale
    exit 0
  fi
  sleep 5
done
kubectl describe hpa inferscale -n "$NAMESPACE"
"$PYTHON" -m inferscale.cli doctor -n "$NAMESPACE" --release inferscale || true
echo "the HPA never scaled out" >&2
exit 1
