#!/usr/bin/env bash
# Builds the image users build, from the repository's Dockerfile, with a real
# OCI builder and without a registry:
#   1. mmdebstrap assembles a Python 3.11 base from Debian packages, made to
#      behave as python:3.11-slim does for the Dockerfile (pip installs into
#      the system Python), and commits it into buildah's storage;
#   2. `buildah bud` builds the Dockerfile with PYTHON_IMAGE set to that base;
#   3. the image is written as a docker archive that `ctr images import` and
#      `skopeo` read, named docker.io/library/inferscale:<chart appVersion>:
#      what the chart's `image: inferscale:<appVersion>` resolves to.
#
#   bash ci/build_image.sh      # prints the archive's path on stdout
#
# Idempotent: the base is assembled again only when its recipe below changes
# (its tag carries a hash of the recipe), the image only when the base, the
# Dockerfile or its build context changes (a hash kept beside the archive).
# Everything lives under ${INFERSCALE_CACHE:-$HOME/.cache/inferscale}: the
# builder's storage in containers/, the archive in image/.
# Measured (2 cores shared with another build): see docs/server.md, "Build the image".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${INFERSCALE_CACHE:-$HOME/.cache/inferscale}"
STORAGE_DIR="$CACHE_DIR/containers"
IMAGE_DIR="$CACHE_DIR/image"

# ---- pins --------------------------------------------------------------------
# Bookworm's Python is the Dockerfile's default base version (python:3.11-slim).
# Upstream versions only, as ci/tools.sh explains.
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
PYTHON_DEB_UPSTREAM="${PYTHON_DEB_UPSTREAM:-3.11.2}"
PIP_DEB_UPSTREAM="${PIP_DEB_UPSTREAM:-23.0.1}"
# The host's apt sources: the only Debian mirror this machine reaches.
DEBIAN_SOURCES="${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf '[image] %s\n' "$*" >&2; }

APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ROOT/chart/Chart.yaml")"
[[ -n "$APP_VERSION" ]] || { log "cannot read appVersion from chart/Chart.yaml"; exit 1; }
# Fully qualified, as containerd and the kubelet name the chart's
# `inferscale:<appVersion>` (buildah would otherwise call it localhost/...).
IMAGE_NAME="docker.io/library/inferscale:$APP_VERSION"
ARCHIVE="$IMAGE_DIR/inferscale-$APP_VERSION.tar"

bash "$ROOT/ci/tools.sh" oci >/dev/null

# A private store: nothing here touches the machine's /var/lib/containers.
# nice: the machine's two cores are shared with tests and other builds.
bah() { nice -n 10 buildah --root "$STORAGE_DIR/storage" --runroot "$STORAGE_DIR/run" --storage-driver overlay "$@"; }

# ---- the base ------------------------------------------------------------------
# essential + what the Dockerfile uses (pip, groupadd/useradd from passwd) + what
# python:3.11-slim has and the wheels need (libstdc++ for greenlet and gevent,
# CA certificates for pip). No apt, no docs, man pages or translations.
# usr-is-merged is named so that init-system-helpers' dependency is met without
# usrmerge; apt still picks usrmerge while it installs the essential set, and
# the hook purges it with the full perl it brought (~50 MB); perl-base stays.
# Debian marks its Python externally managed (PEP 668); python:3.11-slim does
# not, and the Dockerfile pip-installs into the system Python as it may there.
# The .pyc files of the standard library stay: the root filesystem is
# read-only at run time, so without them every start would compile it again.
BASE_ARGS=(
  --variant=essential
  --include="usr-is-merged,python3=$PYTHON_DEB_UPSTREAM*,python3-pip=$PIP_DEB_UPSTREAM*,passwd,libstdc++6,ca-certificates"
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 >/dev/null'
  --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED'
  --customize-hook='rm -rf "$1"/var/log/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old'
  "$DEBIAN_SUITE"
)
# Config as python:3.11-slim sets it.
BASE_CONFIG=(--env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3)
BASE_HASH="$(printf '%s\n' "${BASE_ARGS[@]}" "${BASE_CONFIG[@]}" | sha256sum | cut -c1-12)"
BASE_IMAGE="localhost/inferscale-python:3.11-$DEBIAN_SUITE-$BASE_HASH"

# An interrupted assembly leaves neither its rootfs nor its working container.
WORK="" BASE_CTR=""
cleanup() {
  [[ -z "$BASE_CTR" ]] || bah rm "$BASE_CTR" >/dev/null 2>&1 || true
  [[ -z "$WORK" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

build_base() {
  if [[ -n "$(bah images --quiet --noheading "$BASE_IMAGE" 2>/dev/null)" ]]; then
    log "base $BASE_IMAGE already built"
    return 0
  fi
  [[ -r "$DEBIAN_SOURCES" ]] || { log "no apt sources at $DEBIAN_SOURCES (set DEBIAN_SOURCES)"; return 1; }
  local start=$SECONDS
  WORK="$(mktemp -d)"
  log "assembling $BASE_IMAGE with mmdebstrap"
  nice -n 10 mmdebstrap --quiet "${BASE_ARGS[@]}" "$WORK/rootfs.tar" "$DEBIAN_SOURCES" >&2
  BASE_CTR="$(bah from --pull-never scratch)"
  bah add --quiet "$BASE_CTR" "$WORK/rootfs.tar" / >/dev/null
  bah config "${BASE_CONFIG[@]}" "$BASE_CTR"
  bah commit --quiet --rm "$BASE_CTR" "$BASE_IMAGE" >/dev/null
  BASE_CTR=""
  # Bases of older recipes are of no further use.
  bah images --noheading --format '{{.Name}}:{{.Tag}}' \
    | { grep "^${BASE_IMAGE%:*}:" | grep -vxF "$BASE_IMAGE" || true; } \
    | while read -r old; do bah rmi "$old" >/dev/null; done
  log "base $BASE_IMAGE assembled in $((SECONDS - start)) s ($(bah images --noheading --format '{{.Size}}' "$BASE_IMAGE"))"
}

# ---- the image -----------------------------------------------------------------
# What the build reads: the Dockerfile, .dockerignore and the paths that
# .dockerignore lets in (bytecode and egg-info left out, as it leaves them out),
# plus the base and the builder.
image_inputs() {
  local included
  mapfile -t included < <(sed -n 's:^!\(.*[^/]\)/*$:\1:p' "$ROOT/.dockerignore")
  {
    echo "$BASE_IMAGE $IMAGE_NAME $(buildah --version)"
    cd "$ROOT"
    find Dockerfile .dockerignore "${included[@]}" -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-64
}

build_image() {
  local inputs
  inputs="$(image_inputs)"
  if [[ -s "$ARCHIVE" && "$(cat "$ARCHIVE.inputs" 2>/dev/null)" == "$inputs" ]]; then
    log "$IMAGE_NAME already built from these inputs: $ARCHIVE"
    return 0
  fi
  local start=$SECONDS
  log "building $IMAGE_NAME from the Dockerfile on $BASE_IMAGE"
  # chroot isolation: no user or network namespace to set up in the builder;
  # the RUN steps share the host's network, which pip needs for PyPI. They
  # also see the host's CA bundle, mounted and so in no layer: a network whose
  # TLS goes through a CA only the host trusts (as this machine's) works too.
  bah bud --quiet --isolation chroot --network host --pull-never \
    --volume "$HOST_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --tag "$IMAGE_NAME" --file "$ROOT/Dockerfile" "$ROOT" >/dev/null
  mkdir -p "$IMAGE_DIR"
  rm -f "$ARCHIVE.inputs" "$ARCHIVE.tmp"
  bah push --quiet "$IMAGE_NAME" "docker-archive:$ARCHIVE.tmp:$IMAGE_NAME"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
  echo "$inputs" >"$ARCHIVE.inputs"
  # The image this one replaced, now untagged.
  bah rmi --prune >/dev/null 2>&1 || true
  log "$IMAGE_NAME built in $((SECONDS - start)) s"
}

build_base
build_image
log "$IMAGE_NAME: $(bah images --noheading --format '{{.Size}}' "$IMAGE_NAME") in the builder's storage, archive $(du -m "$ARCHIVE" | cut -f1) MB"
echo "$ARCHIVE"
