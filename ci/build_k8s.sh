#!/usr/bin/env bash
# Build, with Go from the module proxy, the Kubernetes binaries the end-to-end
# tests run: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the
# node's kubelet and kube-proxy, prometheus-adapter (binary name: adapter), and
# the kubectl that the harness and the demo drive the cluster with.
#
#   ci/build_k8s.sh                 build whatever is missing or at another version
#   ci/build_k8s.sh etcd adapter    only these (names: etcd kube-apiserver
#                                   kube-controller-manager kube-scheduler kubelet
#                                   kube-proxy adapter kubectl)
#   FORCE=1 ci/build_k8s.sh         run go build even when the version already matches
#
# Output: ${INFERSCALE_CACHE:-$HOME/.cache/inferscale}/bin. Go caches stay in the
# user's GOMODCACHE/GOCACHE, so a second run (or a later version bump) is warm.
# The wrapper modules and their go.sum live in ci/k8s/ (go.sum = checksums).
# kubectl is built too, at the cluster's version: a machine's own kubectl may be
# missing or years apart from the API server (+25 s when warm).
#
# Measured on 2 shared cores at nice 19: cold ~7 min wall (apiserver ~4 min),
# GOCACHE +3.9 GiB, GOMODCACHE +0.7 GiB; second run <1 s (version check only);
# warm GOCACHE into an empty bin dir ~20 s (links only).
# The node's binaries, each alone from an empty GOCACHE (modules already
# downloaded, tests running alongside): kubelet 638 s, kube-proxy 545 s; after
# the control plane, whose packages they mostly share: kubelet 50 s,
# kube-proxy 19 s.
set -euo pipefail

# ---- pinned versions --------------------------------------------------------
K8S_VERSION=v1.33.13      # k8s.io/kubernetes; its go.mod says go 1.24.0 (no toolchain line)
ETCD_VERSION=v3.5.21      # the etcd that Kubernetes v1.33 requires and tests against
ADAPTER_VERSION=v0.12.0   # sigs.k8s.io/prometheus-adapter, newest release on the proxy
# -----------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_MOD="$ROOT/ci/k8s"              # wrapper module for k8s.io/kubernetes
ETCD_MOD="$ROOT/ci/k8s/etcd"        # wrapper module for go.etcd.io/etcd/server/v3
ADAPTER_MOD="$ROOT/ci/k8s/adapter"  # wrapper module for sigs.k8s.io/prometheus-adapter
CACHE_DIR="${INFERSCALE_CACHE:-$HOME/.cache/inferscale}"
BIN_DIR="$CACHE_DIR/bin"
NICE=(nice -n "${NICE_LEVEL:-19}")
if command -v ionice >/dev/null 2>&1; then NICE=(ionice -c3 "${NICE[@]}"); fi

export GOTOOLCHAIN=local        # never download a toolchain
export CGO_ENABLED=0            # static binaries, as upstream releases them
export GOFLAGS="-buildvcs=false"
export GOWORK=off               # a go.work above this clone must not take over the wrappers

K8S_STAGING_VERSION="v0.${K8S_VERSION#v1.}"      # v1.33.13 -> v0.33.13
K8S_MINOR=$(cut -d. -f2 <<<"$K8S_VERSION")
# Same tags and version stamps as kubernetes' hack/lib/golang.sh; without the
# stamps /version says v0.0.0 and helm's kubeVersion checks fail.
K8S_TAGS=selinux,notest,grpcnotrace
K8S_LDFLAGS="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitTreeState=clean"
done

ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy adapter kubectl)
if (($#)); then WANT=("$@"); else WANT=("${ALL[@]}"); fi

log() { printf '[build_k8s] %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }
gorun() { "${NICE[@]}" go "$@"; }

# Does the binary report the pinned version? The output is captured before it
# is searched: `cmd | grep -q` under pipefail fails whenever grep exits at the
# first match while cmd is still writing (SIGPIPE), which made a fresh build
# report "does not report the pinned version" at random.
have_version() {
  local f="$BIN_DIR/$1" out
  [[ -x $f ]] || return 1
  case $1 in
    kube-*|kubelet) out="$("$f" --version 2>/dev/null)" ; [[ $out == "Kubernetes $K8S_VERSION" ]] ;;
    kubectl) out="$("$f" version --client 2>/dev/null)"
             grep -qx "Client Version: $K8S_VERSION" <<<"$out" ;;
    etcd) out="$("$f" --version 2>/dev/null)" ; grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out" ;;
    # adapter has no --version: read the module version Go stamped into it.
    adapter) out="$(go version -m "$f" 2>/dev/null)"
             grep -Eq "^\s+(mod|dep)\s+sigs\.k8s\.io/prometheus-adapter\s+$ADAPTER_VERSION(\s|$)" <<<"$out" ;;
    *) return 1 ;;
  esac
}

# True when wrapper dir $1's go.mod requires module $2 at version $3.
# A go.sum too: a run cut off between writing go.mod and tidying it leaves
# the new go.mod alone, and the next run must tidy again.
requires() {
  [[ -s "$1/go.sum" ]] && grep -Eq "^\s*(require\s+)?${2//./\\.}\s+$3(\s|$)" "$1/go.mod" 2>/dev/null
}

tidy() { (cd "$1" && rm -f go.sum && GOFLAGS=-mod=mod gorun mod tidy); }

# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with ./staging paths, which are not in the module zip: the wrapper replaces
# each with its published v0.Y.Z. Regenerated only when the pin moves.
gen_k8s_wrapper() {
  requires "$K8S_MOD" k8s.io/kubernetes "$K8S_VERSION" && return 0
  log "regenerating $K8S_MOD/go.mod for k8s.io/kubernetes $K8S_VERSION"
  local upstream gover
  upstream=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
             sed -n 's/^\s*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  gover=$(awk '$1 == "go" {print $2; exit}' "$upstream")
  {
    echo "// Wrapper module: builds the Kubernetes control plane from k8s.io/kubernetes $K8S_VERSION"
    echo "// with its staging modules replaced by their published $K8S_STAGING_VERSION versions."
    echo "// Generated by ci/build_k8s.sh; edit the pins there, not here."
    echo "module inferscale.local/ci/k8s"
    echo
    echo "go $gover"
    echo
    echo "godebug default=go${gover%.*}"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # staging modules: required at v0.0.0 upstream (only those: the sample-*
    # ones are replaced but never required, and not all are published)
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$upstream" |
      awk -v v="$K8S_STAGING_VERSION" '{printf "\t%s => %s %s\n", $1, $1, v}'
    echo ")"
  } >"$K8S_MOD/go.mod"
  tidy "$K8S_MOD"
}

# Wrapper holding one `require`: the released module's own go.mod then picks
# every dependency version, as in its upstream build.
gen_simple_wrapper() {  # dir module version go-line why
  requires "$1" "$2" "$3" && return 0
  log "regenerating $1/go.mod for $2 $3"
  printf '%s\n' \
    "// Wrapper module: builds $2 $3." \
    "// $5" \
    "// Generated by ci/build_k8s.sh; edit the pins there, not here." \
    "module inferscale.local/ci/k8s/$(basename "$1")" \
    "" "go $4" "" "require $2 $3" >"$1/go.mod"
  tidy "$1"
}

build_one() {
  local name=$1
  case $name in
    kube-*|kubelet|kubectl)
      gen_k8s_wrapper
      (cd "$K8S_MOD" && gorun build -mod=readonly -trimpath -tags "$K8S_TAGS" \
        -ldflags "$K8S_LDFLAGS" -o "$BIN_DIR/$name" "k8s.io/kubernetes/cmd/$name") ;;
    etcd)
      gen_simple_wrapper "$ETCD_MOD" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" 1.23.0 \
        'Its go.mod has replace directives, so `go install ...@version` refuses it.'
      (cd "$ETCD_MOD" && gorun build -mod=readonly -trimpath -ldflags "-s -w" \
        -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3) ;;
    adapter)
      gen_simple_wrapper "$ADAPTER_MOD" sigs.k8s.io/prometheus-adapter "$ADAPTER_VERSION" 1.22.1 \
        '`go install ...@version` also reads the version list (deprecation check): the proxy answers 403.'
      (cd "$ADAPTER_MOD" && gorun build -mod=readonly -trimpath -ldflags "-s -w" \
        -o "$BIN_DIR/adapter" sigs.k8s.io/prometheus-adapter/cmd/adapter) ;;
    *) log "unknown binary: $name (known: ${ALL[*]})"; return 2 ;;
  esac
}

mkdir -p "$BIN_DIR"
# One run at a time per cache: ci/tools.sh's lock, which it already holds when it runs this script.
if [[ -z ${INFERSCALE_TOOLS_LOCKED:-} ]]; then
  exec 9>"$CACHE_DIR/.lock"
  flock -n 9 || { log "waiting for another run of ci/tools.sh or ci/build_k8s.sh on $CACHE_DIR"; flock 9; }
fi
log "go: $(go version | cut -d' ' -f3-)  out: $BIN_DIR"
log "pins: kubernetes $K8S_VERSION (staging $K8S_STAGING_VERSION), etcd $ETCD_VERSION, prometheus-adapter $ADAPTER_VERSION"

summary=()
t_all=$(now)
for name in "${WANT[@]}"; do
  if [[ -z ${FORCE:-} ]] && have_version "$name"; then
    summary+=("$(printf '%-24s up to date (skipped)' "$name")")
    continue
  fi
  log "building $name ..."
  t0=$(now)
  build_one "$name"
  t1=$(now)
  have_version "$name" || { log "$name built but does not report the pinned version"; exit 1; }
  summary+=("$(printf '%-24s built in %6ss  %s' "$name" "$(secs "$t0" "$t1")" \
    "$(du -h "$BIN_DIR/$name" | cut -f1)")")
  log "${summary[-1]}"
done

log "done in $(secs "$t_all" "$(now)")s:"
printf '  %s\n' "${summary[@]}" >&2
