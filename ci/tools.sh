#!/usr/bin/env bash
# Installs the pinned tools that the chart tests, the local autoscaling loop,
# the image build (ci/build_image.sh) and the benchmarks need, from the
# package registries only (Go module proxy, npm, Debian apt).
#
#   bash ci/tools.sh            # install everything, print the bin dir
#   bash ci/tools.sh helm       # only the named tools (TOOLS, or amtool)
#   eval "$(bash ci/tools.sh --env)"   # install, then export PATH/HELM/PROMTOOL
#
# Idempotent: a tool whose binary already reports the pinned version is not
# rebuilt. Binaries land in ${INFERSCALE_CACHE:-$HOME/.cache/inferscale}/bin
# (put it on PATH). Go keeps its usual module and build caches ($HOME/go,
# $HOME/.cache/go-build), shared by every Go-built tool here: helm and the
# Kubernetes binaries compile many of the same k8s.io packages.
# Measured cold (empty caches, 2 cores, other builds running): helm 125 s;
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the
# adapter 424 s together, the kubelet and kube-proxy 69 s more after them
# (ci/build_k8s.sh has their times alone); the node's Debian packages and
# the pause image 12 s (containerd and conntrack downloaded, the rest there);
# CoreDNS 100 s (empty build cache); Prometheus and promtool with the web UI
# 399 s (empty module and build caches; the UI 45 s of it); the operator and
# its config reloader, with the three monitoring images packed, 146 s (empty
# module cache); Alertmanager 59 s (its UI a placeholder page, build cache
# warm from the others); amtool alone 69 s and the linters (helm-docs,
# actionlint) 28 s, each with empty module and build caches; a warm no-op
# run 0.3 s.
#
# Adding a tool: write install_<name> (and a <name> entry in TOOLS), check the
# installed version first and return early when it matches.
set -euo pipefail

# ---- pins ------------------------------------------------------------------
# helm v3.22.0 needs go >= 1.26.0 (its go.mod "go" line); it has no replace
# directives, so `go install module@version` accepts it.
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The Prometheus kube-prometheus-stack 88.5.3 runs; its Go module version is
# v0.<major*100+minor>.<patch>. Built with its web UI, as its release is.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.14.0}"
PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.314.0}"
# Builds the Prometheus UI (its web/ui is a pnpm workspace with a lockfile).
PNPM_VERSION="${PNPM_VERSION:-10.34.9}"
# The operator version kube-prometheus-stack 88.5.3 (stack/Chart.yaml) ships;
# its Go module carries the ServiceMonitor and PrometheusRule CRDs.
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.93.1}"
# kube-state-metrics, for the chart's HPA alerts: the newest release the Go
# module proxy serves (kube-prometheus-stack 88.5.3's subchart runs a newer
# one, which the proxy refuses).
KUBE_STATE_METRICS_VERSION="${KUBE_STATE_METRICS_VERSION:-v2.15.0}"
# Alertmanager, for the Watchdog alert a dead man's switch watches (the one
# alert that says Prometheus itself is down): the newest release the Go module
# proxy serves. Its module has no built UI (ui/app/dist is generated, and the
# Elm compiler's npm package downloads its binary from GitHub), so the build
# embeds a page pointing at the API and amtool; the API v2 is the whole server.
ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-v0.35.0}"
# The HTTP load generator of bench/vs_kserve.py; Debian bookworm ships 4.1.0.
# Pinned on the upstream version only, as prometheus above.
WRK_DEB_UPSTREAM="${WRK_DEB_UPSTREAM:-4.1.0}"
# bench/wire_timing.py times scrapes on the wire from its captures.
TCPDUMP_DEB_UPSTREAM="${TCPDUMP_DEB_UPSTREAM:-4.99.3}"
# What ci/build_image.sh builds and tests/test_image.py runs the image with,
# all Debian bookworm's; pinned on the upstream version, as prometheus above.
OCI_DEBS=(
  "buildah=${BUILDAH_DEB_UPSTREAM:-1.28.2}"
  "mmdebstrap=${MMDEBSTRAP_DEB_UPSTREAM:-1.3.5}"
  "umoci=${UMOCI_DEB_UPSTREAM:-0.4.7}"
  "skopeo=${SKOPEO_DEB_UPSTREAM:-1.9.3}"
  "runc=${RUNC_DEB_UPSTREAM:-1.1.5}"
)

# What a real node (cluster/localcluster/node.py) runs besides runc above:
# Debian bookworm's versions, pinned on the upstream version (conntrack's with
# its epoch) as above. kmod for modprobe: the node loads br_netfilter, a
# module in Debian's kernels.
NODE_DEBS=(
  "containerd=${CONTAINERD_DEB_UPSTREAM:-1.6.20}"
  "containernetworking-plugins=${CNI_PLUGINS_DEB_UPSTREAM:-1.1.1}"
  "iptables=${IPTABLES_DEB_UPSTREAM:-1.8.9}"
  "conntrack=${CONNTRACK_DEB_UPSTREAM:-1:1.4.7}"
  "kmod=${KMOD_DEB_UPSTREAM:-30+20221128}"
)

# The cluster DNS of the real node: the CoreDNS version kubeadm v1.33 installs.
# Its go.mod has no replace directives, so `go install module@version` takes it.
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.0}"
# helm-docs writes chart/README.md's values table from values.yaml's `# --`
# comments, as the prometheus-community charts do; actionlint checks the
# GitHub Actions workflow shipped for users' forks (.github/workflows).
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
TOOLS=(helm prometheus kubernetes crds wrk tcpdump oci node monitoring linters)

CACHE_DIR="${INFERSCALE_CACHE:-$HOME/.cache/inferscale}"
BIN_DIR="$CACHE_DIR/bin"
# -buildvcs=false: the pause image is built inside this clone, and stamping
# its git state fails outright in a clone another user owns ("dubious ownership").
export GOFLAGS="-modcacherw -buildvcs=false ${GOFLAGS:-}"
# A go.work in a parent directory (a user's $HOME) would take over every build
# here: each builds one module as it is, never a workspace.
export GOWORK=off
# Never let go fetch a newer toolchain: only the module proxy is reachable,
# and the pin above was chosen for the installed go.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }

# Debian packages go in with apt-get: as root, or through sudo.
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# ---- helm ------------------------------------------------------------------
install_helm() {
  local want="$HELM_VERSION" have=""
  if [[ -x "$BIN_DIR/helm" ]]; then
    have="$("$BIN_DIR/helm" version --template '{{.Version}}' 2>/dev/null || true)"
  fi
  if [[ "$have" == "$want" ]]; then
    log "helm $want already in $BIN_DIR"
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build helm"; return 1; }

  local mod="helm.sh/helm/v3"
  # The go.mod of the release tells which client-go it builds against; helm's
  # own Makefile turns that into the default Kubernetes version `helm template`
  # assumes (without it: v1.20, which hides every newer API from
  # .Capabilities). client-go v0.N => Kubernetes 1.N.
  local gomod
  gomod="$(go mod download -json "$mod@$want" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  local k8s_minor
  k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)"
  [[ -n "$k8s_minor" ]] || { log "cannot read client-go version from $gomod"; return 1; }

  local ldflags="-s -w"
  ldflags+=" -X $mod/internal/version.version=$want"
  ldflags+=" -X $mod/internal/version.gitTreeState=clean"
  ldflags+=" -X $mod/pkg/chartutil.k8sVersionMajor=1 -X $mod/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  ldflags+=" -X $mod/pkg/lint/rules.k8sVersionMajor=1 -X $mod/pkg/lint/rules.k8sVersionMinor=$k8s_minor"

  log "building helm $want with $(go version | awk '{print $3}') (default kube version 1.$k8s_minor)"
  local start=$SECONDS
  mkdir -p "$BIN_DIR"
  # nice: the machine's two cores are shared with tests and other builds.
  GOBIN="$BIN_DIR" nice -n 10 go install -trimpath -ldflags "$ldflags" "$mod/cmd/helm@$want"
  log "helm $want built in $((SECONDS - start)) s"
  have="$("$BIN_DIR/helm" version --template '{{.Version}}')"
  [[ "$have" == "$want" ]] || { log "helm reports $have, expected $want"; return 1; }
}

# ---- Debian packages -----------------------------------------------------------
# The installed version of Debian package $1, if any.
deb_installed_version() {
  dpkg-query -W -f '${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3 == "installed" {print $4}'
}

apt_candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" {print $2}'
}

# Succeeds once apt offers package $1 at upstream version $2; runs apt-get
# update only when the lists are missing or do not know the pin. (Captured,
# not piped into grep -q: with pipefail, grep -q closing the pipe early makes
# apt-cache die of SIGPIPE and the test read as false.)
apt_offers() {
  local candidate
  candidate="$(apt_candidate "$1")"
  if [[ "$candidate" != "$2"* ]]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    candidate="$(apt_candidate "$1")"
  fi
  [[ "$candidate" == "$2"* ]] || { log "apt offers $1 '${candidate:-none}', expected $2"; return 1; }
}

# apt-get install "$@" (name=version* specs) without starting any daemon.
# Maintainer scripts start services through invoke-rc.d or deb-systemd-invoke;
# we want the binaries only, and the tests start their own processes. A
# policy-rc.d that answers 101 ("action forbidden") keeps every service down.
# Ours is temporary and removed after; one that was already there is left
# untouched.
apt_install_without_starting() {
  local policy=/usr/sbin/policy-rc.d created_policy=""
  local ours='#!/bin/sh\n# ci/tools.sh of inferscale, for one apt-get: remove me if that is not running\nexit 101\n'
  # One with our exact words (their second line names us: a bare `exit 101`
  # is what many chroot setups write) is ours, left by a run that was killed
  # (SIGKILL runs no trap): it is replaced and removed like a new one.
  if [[ ! -e "$policy" || "$(cat "$policy")" == "$(printf "$ours")" ]]; then
    # Removed however the script ends, Ctrl-C mid-apt included: left behind,
    # it would keep every service on the machine from starting, and the next
    # run would take it for the administrator's and leave it. INT and TERM
    # exit (with the shell's status for them) so that the EXIT trap runs.
    trap "$SUDO rm -f $policy" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf "$ours" | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
  fi
  log "apt-get install $*"
  local rc=0
  if ! $SUDO apt-get install -y -qq --no-install-recommends "$@" >&2; then
    # Debian replaces a point release's packages in place: lists older than it
    # name files the mirror no longer has (404). Fresh lists, then once more.
    log "apt-get install failed: apt-get update, and once more"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
  fi
  if [[ -n "$created_policy" ]]; then
    $SUDO rm -f "$policy"
    trap - EXIT INT TERM
  fi
  return "$rc"
}

# ---- prometheus / promtool (Go module, web UI by pnpm) ------------------------
# As Prometheus's own release builds them (.promu.yml: the netgo and
# builtinassets tags, the version stamped by ldflags), from a writable copy of
# the module: the UI is built there with pnpm from its lockfile, compressed
# into web/ui/static by its own scripts/compress_assets.sh and embedded. Inside
# the module its go.mod's replace directives hold, which `go install
# module@version` would refuse.
install_prometheus() {
  if prometheus_is_pinned prometheus && prometheus_is_pinned promtool; then
    log "prometheus and promtool $PROMETHEUS_VERSION already built"
    return 0
  fi
  local start=$SECONDS src="$CACHE_DIR/build/prometheus-$PROMETHEUS_VERSION" pnpm_dir="$CACHE_DIR/pnpm"
  copy_module "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" "$src"
  if [[ "$("$pnpm_dir/bin/pnpm" --version 2>/dev/null)" != "$PNPM_VERSION" ]]; then
    npm install --silent --global --prefix "$pnpm_dir" "pnpm@$PNPM_VERSION" >&2
  fi
  log "building the Prometheus $PROMETHEUS_VERSION UI (pnpm $PNPM_VERSION)"
  # The mantine UI only: the old React app is opt-in (--enable-feature=old-ui)
  # and has a separate install of its own.
  local ui_log="$CACHE_DIR/build/prometheus-$PROMETHEUS_VERSION-ui.log"
  if ! (
    cd "$src/web/ui"
    export PATH="$pnpm_dir/bin:$PATH" CI=""
    pnpm install --frozen-lockfile
    bash build_ui.sh --mantine-ui
    cd "$src" && bash scripts/compress_assets.sh
  ) >"$ui_log" 2>&1; then
    tail -n 40 "$ui_log" >&2
    log "the Prometheus UI build failed; its whole log: $ui_log"
    return 1
  fi
  log "building prometheus and promtool $PROMETHEUS_VERSION"
  local ldflags
  ldflags="$(version_ldflags "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION")"
  mkdir -p "$BIN_DIR"
  # Not through the links to Debian's 2.42 that earlier versions of this script made.
  rm -f "$BIN_DIR/prometheus" "$BIN_DIR/promtool"
  # Its go.work names modules the two commands do not need.
  (cd "$src" && GOWORK=off go build -trimpath -tags netgo,builtinassets -ldflags "$ldflags" \
    -o "$BIN_DIR/" ./cmd/prometheus ./cmd/promtool)
  rm -rf "$src"
  # Each on its own: set -e does not stop at a failure left of `&&`.
  prometheus_is_pinned prometheus || { log "the prometheus built does not report $PROMETHEUS_VERSION"; return 1; }
  prometheus_is_pinned promtool || { log "the promtool built does not report $PROMETHEUS_VERSION"; return 1; }
  log "prometheus and promtool $PROMETHEUS_VERSION built in $((SECONDS - start)) s"
}

# The ldflags with which the Prometheus projects stamp a build's version
# (github.com/prometheus/common/version, what --version prints): $1 the
# version, $2 the revision (here the module version: the module has no commit).
version_ldflags() {
  local pkg=github.com/prometheus/common/version
  echo "-X $pkg.Version=$1 -X $pkg.Revision=$2 -X $pkg.Branch=HEAD -X $pkg.BuildUser=inferscale-ci-tools" \
    "-X $pkg.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
}

# The module cache's (read-only) directory of Go module $1 (path@version), downloaded if need be.
module_dir() {
  go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'
}

# A writable copy of Go module $1 (path@version) at $2, for builds that write into it.
copy_module() {
  local module
  module="$(module_dir "$1")"
  rm -rf "$2"
  mkdir -p "$(dirname "$2")"
  cp -r "$module" "$2"
  chmod -R u+w "$2"
}

# Does $BIN_DIR/$1 (prometheus or promtool) report the pinned version?
prometheus_is_pinned() {
  local out
  out="$("$BIN_DIR/$1" --version 2>&1 || true)"
  [[ "$out" == "$1, version $PROMETHEUS_VERSION "* ]]
}

# Links $BIN_DIR/$2 to the program Debian package $1 installed, so that one
# PATH entry finds every tool. The path comes from dpkg, not from PATH: the
# PATH this script is told to advise may already hold $BIN_DIR, and the link
# would then point at itself.
link_packaged() {
  local package="$1" name="$2" path
  # awk reads to the end: leaving early would kill dpkg with SIGPIPE (pipefail).
  path="$(dpkg -L "$package" | awk -v name="$name" '!found && $0 ~ "/s?bin/" name "$" { print; found = 1 }')"
  [[ -n "$path" && -x "$path" && ! -L "$path" ]] || { log "$package installs no program $name"; return 1; }
  mkdir -p "$BIN_DIR"
  ln -sfn "$path" "$BIN_DIR/$name"
}

# Installs Debian package $1 at upstream version $2 unless it is installed.
install_deb() {
  if [[ "$(deb_installed_version "$1" || true)" != "$2"* ]]; then
    apt_offers "$1" "$2"
    apt_install_without_starting "$1=$2*"
  fi
}

# ---- wrk (Debian) -------------------------------------------------------------
install_wrk() {
  install_deb wrk "$WRK_DEB_UPSTREAM"
  link_packaged wrk wrk
  log "wrk $(deb_installed_version wrk) (Debian package)"
}

# ---- tcpdump (Debian) ---------------------------------------------------------
install_tcpdump() {
  install_deb tcpdump "$TCPDUMP_DEB_UPSTREAM"
  link_packaged tcpdump tcpdump
  log "tcpdump $(deb_installed_version tcpdump) (Debian package)"
}

# ---- OCI image builder and runtime (Debian) ----------------------------------
install_oci() {
  local pin
  for pin in "${OCI_DEBS[@]}"; do
    install_deb "${pin%%=*}" "${pin#*=}"
  done
  log "$(buildah --version), mmdebstrap $(deb_installed_version mmdebstrap), umoci $(deb_installed_version umoci), skopeo $(deb_installed_version skopeo), runc $(deb_installed_version runc) (Debian packages)"
}

# ---- a real node: containerd, CNI plugins, iptables, conntrack (Debian) ------
# runc, and umoci for the pause image, come with the oci tool; the pod sandbox
# image is built here: no registry is reachable to pull one.
CONTAINERD_OURS="$CACHE_DIR/containerd-installed-by-tools.sh"
install_node() {
  install_oci
  local pin name
  for pin in "${NODE_DEBS[@]}"; do
    name="${pin%%=*}"
    # The package enables containerd.service (policy-rc.d only keeps it from
    # starting now): from the next boot on, it would hold the socket the
    # node's own containerd needs. Only one this script installed: a
    # containerd that was already there (even at another version, which the
    # pin then upgrades) may be serving something else, Docker for one. The
    # mark goes down before the install, so that a run cut off between the
    # install and the disable still disables it on the next run.
    if [[ "$name" == containerd && -z "$(deb_installed_version containerd || true)" ]]; then
      mkdir -p "$CACHE_DIR" && : >"$CONTAINERD_OURS"
    fi
    install_deb "$name" "${pin#*=}"
    log "$name $(deb_installed_version "$name") (Debian package)"
  done
  if [[ -e "$CONTAINERD_OURS" ]]; then
    if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet containerd 2>/dev/null; then
      log "disabling containerd.service: the node runs a containerd of its own on the same socket"
      $SUDO systemctl disable --now containerd >&2
    fi
    # Once: a containerd enabled after this (for Docker, say) is the user's.
    rm -f "$CONTAINERD_OURS"
  fi
  build_pause_image
  build_coredns_image
}

# One static binary as a one-file OCI image archive. umoci writes an OCI
# layout without any image store, so nothing is left in /var/lib/containers;
# the node imports the tar.
#   pack_image BINARY PATH_IN_IMAGE TAG USER ARCHIVE
pack_image() {
  local binary="$1" path="$2" tag="$3" user="$4" archive="$5" work
  work="$(mktemp -d)"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  # --rootless: the layer records the file as uid 0 without needing root to unpack.
  umoci insert --rootless --image "$work/layout:$tag" "$binary" "$path"
  umoci config --image "$work/layout:$tag" --config.entrypoint "$path" --config.user "$user"
  mkdir -p "$(dirname "$archive")"
  tar -C "$work/layout" -cf "$archive.tmp" .
  mv "$archive.tmp" "$archive"
  rm -rf "$work"
}

# A one-binary image archive: BUILD (a command, given the directory to write
# the binary into) then pack_image, unless ARCHIVE was last built from STAMP
# (its source's hash, or its version).
#   build_binary_image ARCHIVE STAMP PATH_IN_IMAGE TAG USER BUILD...
build_binary_image() {
  local archive="$1" path="$3" tag="$4" user="$5" name="${3#/}"
  # What the image is made of, not only its source: a new tag or user is a new image.
  local want="$2 $path $tag $user"
  shift 5
  if [[ -s "$archive" && "$(cat "$archive.stamp" 2>/dev/null)" == "$want" ]]; then
    log "$name image already in $archive"
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build the $name image"; return 1; }
  log "building the $name image ($want) with $(go version | awk '{print $3}')"
  local work start=$SECONDS
  work="$(mktemp -d)"
  "$@" "$work"
  pack_image "$work/$name" "$path" "$tag" "$user" "$archive"
  echo "$want" >"$archive.stamp"
  rm -rf "$work"
  log "$name image built in $((SECONDS - start)) s: $archive ($(du -h "$archive" | cut -f1))"
}

# cluster/pause (our own program) as an image, rebuilt only when its source changes.
PAUSE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/cluster/pause"
PAUSE_ARCHIVE="$CACHE_DIR/images/pause.oci.tar"
PAUSE_TAG=v1
go_build_pause() {
  (cd "$PAUSE_SRC" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$1/pause" .)
}
build_pause_image() {
  local source
  source="$(cat "$PAUSE_SRC"/go.mod "$PAUSE_SRC"/*.go | sha256sum | cut -d' ' -f1)"
  # 65535: the nobody uid; the sandbox needs no privilege.
  build_binary_image "$PAUSE_ARCHIVE" "$source" /pause "$PAUSE_TAG" 65535:65535 go_build_pause
}

# CoreDNS from the Go module proxy as an image, for the cluster DNS
# (cluster/localcluster/dns.py names the same version).
COREDNS_ARCHIVE="$CACHE_DIR/images/coredns.oci.tar"
go_install_coredns() {
  GOBIN="$1" nice -n 10 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}
build_coredns_image() {
  # Root inside its container, with NET_BIND_SERVICE alone (for port 53), as kubeadm runs it.
  build_binary_image "$COREDNS_ARCHIVE" "$COREDNS_VERSION" /coredns "$COREDNS_VERSION" 0:0 go_install_coredns
}

# ---- the monitoring stack's images (Go module proxy) ---------------------------
# The Prometheus Operator, its config reloader, Prometheus, prometheus-adapter
# and kube-state-metrics, each as a one-binary OCI archive tagged with the
# version its chart (kube-prometheus-stack 88.5.3, prometheus-adapter) renders
# (kube-state-metrics: see its pin); the node imports
# them under the repositories those charts render (cluster/localcluster's
# monitoring.py and adapter.py name them), so nothing is pulled.
MONITORING_IMAGES_DIR="$CACHE_DIR/images/monitoring"
MONITORING_ARCHIVES=(prometheus-operator prometheus-config-reloader prometheus prometheus-adapter kube-state-metrics
  alertmanager)
install_monitoring() {
  install_oci  # umoci packs the images
  install_prometheus
  install_crds
  install_kubernetes
  local adapter_version
  adapter_version="$(built_module_version "$BIN_DIR/adapter" sigs.k8s.io/prometheus-adapter)"
  local stamp="$MONITORING_IMAGES_DIR/versions"
  local want="$PROMETHEUS_OPERATOR_VERSION $PROMETHEUS_VERSION $adapter_version $KUBE_STATE_METRICS_VERSION"
  want+=" $ALERTMANAGER_VERSION"
  if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && monitoring_is_complete; then
    log "monitoring images ($want) already in $MONITORING_IMAGES_DIR"
    return 0
  fi
  local start=$SECONDS work
  work="$(mktemp -d)"
  build_operator "$work"
  # The uids of the upstream images: nobody for the operator's, distroless's nonroot for Prometheus's.
  pack_image "$work/operator" /bin/operator "$PROMETHEUS_OPERATOR_VERSION" 65534:65534 \
    "$MONITORING_IMAGES_DIR/prometheus-operator.oci.tar"
  pack_image "$work/prometheus-config-reloader" /bin/prometheus-config-reloader "$PROMETHEUS_OPERATOR_VERSION" \
    65534:65534 "$MONITORING_IMAGES_DIR/prometheus-config-reloader.oci.tar"
  pack_image "$BIN_DIR/prometheus" /bin/prometheus "v$PROMETHEUS_VERSION-distroless" 65532:65532 \
    "$MONITORING_IMAGES_DIR/prometheus.oci.tar"
  # The adapter ci/build_k8s.sh pins, as the prometheus-adapter chart runs it.
  pack_image "$BIN_DIR/adapter" /adapter "$adapter_version" 65534:65534 \
    "$MONITORING_IMAGES_DIR/prometheus-adapter.oci.tar"
  build_kube_state_metrics "$work"
  pack_image "$work/kube-state-metrics" /kube-state-metrics "$KUBE_STATE_METRICS_VERSION" 65534:65534 \
    "$MONITORING_IMAGES_DIR/kube-state-metrics.oci.tar"
  build_alertmanager "$work" alertmanager amtool
  mv "$work/amtool" "$BIN_DIR/"
  pack_image "$work/alertmanager" /bin/alertmanager "$ALERTMANAGER_VERSION" 65534:65534 \
    "$MONITORING_IMAGES_DIR/alertmanager.oci.tar"
  echo "$want" >"$stamp"
  rm -rf "$work"
  log "monitoring images built in $((SECONDS - start)) s: $MONITORING_IMAGES_DIR ($(du -sh "$MONITORING_IMAGES_DIR" | cut -f1))"
}

# Whether every file install_monitoring makes is there: the stamp says which
# versions were built, not that nothing was removed since.
monitoring_is_complete() {
  local archive
  for archive in "${MONITORING_ARCHIVES[@]}"; do
    [[ -s "$MONITORING_IMAGES_DIR/$archive.oci.tar" ]] || return 1
  done
  [[ -x "$BIN_DIR/amtool" && -n "$(ls -A "$KUBE_STATE_METRICS_MANIFESTS" 2>/dev/null)" ]]
}

# The version of module $2 that Go stamped into binary $1 (the adapter has no --version).
built_module_version() {
  go version -m "$1" | awk -v module="$2" '$1 ~ /^(mod|dep)$/ && $2 == module { print $3; exit }'
}

# The operator and its config reloader into directory $1, as its Makefile
# builds them (version ldflags, stripped). Its go.mod points two of its own
# nested modules at directories the module's zip leaves out; the copy points
# them at their releases of the same version instead.
build_operator() {
  local out="$1" src="$CACHE_DIR/build/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  copy_module "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" "$src"
  local nested base=github.com/prometheus-operator/prometheus-operator
  for nested in pkg/apis/monitoring pkg/client; do
    (cd "$src" && go mod edit -replace "$base/$nested=$base/$nested@$PROMETHEUS_OPERATOR_VERSION")
  done
  log "building prometheus-operator and prometheus-config-reloader $PROMETHEUS_OPERATOR_VERSION"
  local ldflags
  ldflags="-s $(version_ldflags "${PROMETHEUS_OPERATOR_VERSION#v}" "$PROMETHEUS_OPERATOR_VERSION")"
  (cd "$src" && nice -n 10 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" \
    ./cmd/operator ./cmd/prometheus-config-reloader)
  rm -rf "$src"
}

# kube-state-metrics into directory $1, with its Makefile's version ldflags,
# and its own install manifests (examples/standard) into the cache, from which
# cluster/localcluster/monitoring.py takes its objects. `go install
# module@version` is refused here (the proxy will not list the module's
# versions), so it is built in a copy of the module.
KUBE_STATE_METRICS_MANIFESTS="$CACHE_DIR/kube-state-metrics/$KUBE_STATE_METRICS_VERSION"
build_kube_state_metrics() {
  local out="$1" src="$CACHE_DIR/build/kube-state-metrics-$KUBE_STATE_METRICS_VERSION"
  copy_module "k8s.io/kube-state-metrics/v2@$KUBE_STATE_METRICS_VERSION" "$src"
  log "building kube-state-metrics $KUBE_STATE_METRICS_VERSION"
  local ldflags
  ldflags="-s -w $(version_ldflags "$KUBE_STATE_METRICS_VERSION" "$KUBE_STATE_METRICS_VERSION")"
  (cd "$src" && nice -n 10 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/kube-state-metrics" .)
  mkdir -p "$KUBE_STATE_METRICS_MANIFESTS"
  find "$src/examples/standard" -name '*.yaml' ! -name kustomization.yaml -exec cp {} "$KUBE_STATE_METRICS_MANIFESTS/" \;
  rm -rf "$src"
}

# Programs of the Alertmanager module (alertmanager, amtool) into directory
# $1, with the Makefile's version ldflags; callers put amtool in $BIN_DIR (the
# placeholder page sends users to it; the tests check configurations with
# it). The UI is embedded from ui/app/dist, which only its release tarballs
# carry: the copy gets one page in its place (see ALERTMANAGER_VERSION).
#   build_alertmanager OUT_DIR PROGRAM...
build_alertmanager() {
  local out="$1" src="$CACHE_DIR/build/alertmanager-$ALERTMANAGER_VERSION" ui
  shift
  copy_module "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" "$src"
  for ui in elm mantine; do
    mkdir -p "$src/ui/app/dist/$ui"
    printf '%s\n' '<!doctype html><title>Alertmanager</title>' \
      '<p>This build has no web UI. Read and silence alerts with amtool or the API: <a href="api/v2/alerts">api/v2/alerts</a>.</p>' \
      >"$src/ui/app/dist/$ui/index.html"
  done
  log "building $* $ALERTMANAGER_VERSION"
  local ldflags
  ldflags="-s $(version_ldflags "${ALERTMANAGER_VERSION#v}" "$ALERTMANAGER_VERSION")"
  (cd "$src" && nice -n 10 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/" "${@/#/./cmd/}")
  rm -rf "$src"
}

# amtool alone, for `make test-fast` (the tests check Alertmanager
# configurations with it) on a machine without the Kubernetes build that
# install_monitoring needs; not in TOOLS, since install_monitoring builds it.
install_amtool() {
  if "$BIN_DIR/amtool" --version 2>/dev/null | grep -qF "version ${ALERTMANAGER_VERSION#v} "; then
    log "amtool $ALERTMANAGER_VERSION already in $BIN_DIR"
    return 0
  fi
  mkdir -p "$BIN_DIR"
  build_alertmanager "$BIN_DIR" amtool
}

# ---- linters of the chart's docs and the users' workflow (Go) ---------------
# `go install package@version` of a pinned release into $BIN_DIR, unless the
# binary there was built from that version of its module.
go_install_pinned() {
  local name="$1" package="$2" want="$3" module="${2%/cmd/*}"
  if [[ -x "$BIN_DIR/$name" && "$(built_module_version "$BIN_DIR/$name" "$module")" == "$want" ]]; then
    log "$name $want already in $BIN_DIR"
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build $name"; return 1; }
  log "building $name $want"
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR" nice -n 10 go install -trimpath -ldflags "-s -w" "$package@$want"
}

install_linters() {
  go_install_pinned helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION"
  go_install_pinned actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
}

# ---- Kubernetes control plane, etcd, prometheus-adapter (Go) ---------------
# ci/build_k8s.sh pins their versions and skips binaries already built.
install_kubernetes() {
  bash "$(dirname "${BASH_SOURCE[0]}")/build_k8s.sh"
}

# ---- monitoring.coreos.com CRDs and the operator's manifests (its Go module) ----
OPERATOR_BUNDLE_DIR="$CACHE_DIR/operator"
install_crds() {
  local dest="$CACHE_DIR/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  if [[ -s "$OPERATOR_BUNDLE_DIR/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION.yaml" ]]; then
    log "CRDs $PROMETHEUS_OPERATOR_VERSION already in $dest"
    return 0
  fi
  local dir
  dir="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
  mkdir -p "$dest"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$dest/"
  # The operator's own install manifests (CRDs, RBAC, Deployment), from which
  # cluster/localcluster/monitoring.py takes the operator's objects.
  mkdir -p "$OPERATOR_BUNDLE_DIR"
  # The bundle is the mark that the CRDs are in: it is written last, and whole.
  local bundle="$OPERATOR_BUNDLE_DIR/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION.yaml"
  cp "$dir/bundle.yaml" "$bundle.tmp"
  mv "$bundle.tmp" "$bundle"
  log "CRDs $PROMETHEUS_OPERATOR_VERSION copied to $dest"
}

# ---- main ------------------------------------------------------------------
# One run at a time per cache: two (CI and a user's make) would delete each
# other's build directories and half-written archives. build_k8s.sh, run from
# here, inherits the lock (INFERSCALE_TOOLS_LOCKED) and takes it when run alone.
lock_cache() {
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.lock"
  if ! flock -n 9; then
    log "waiting for another run of ci/tools.sh or ci/build_k8s.sh on $CACHE_DIR"
    flock 9
  fi
  export INFERSCALE_TOOLS_LOCKED=1
}

main() {
  local print_env="" selected=()
  for arg in "$@"; do
    case "$arg" in
      --env) print_env=1 ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; return 0 ;;
      *) selected+=("$arg") ;;
    esac
  done
  [[ ${#selected[@]} -gt 0 ]] || selected=("${TOOLS[@]}")
  lock_cache
  for tool in "${selected[@]}"; do
    declare -F "install_$tool" >/dev/null || { log "unknown tool: $tool (known: ${TOOLS[*]})"; return 2; }
    "install_$tool"
  done
  if [[ -n "$print_env" ]]; then
    printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
    printf 'export HELM=%q\n' "$BIN_DIR/helm"
    printf 'export PROMTOOL=%q\n' "$BIN_DIR/promtool"
  else
    log "tools are in $BIN_DIR; add it to PATH:"
    echo "export PATH=\"$BIN_DIR:\$PATH\""
  fi
}

main "$@"
