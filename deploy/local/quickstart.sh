#!/usr/bin/env bash
# A real mirror run on one machine: two local registries (Debian's docker-registry), a few
# example images seeded into the first, a mapping file in the style of mappings/, then
#   1. a dry run (what would be pushed),
#   2. the mirror itself,
#   3. the same run again (nothing to do: every tag unchanged),
#   4. `image-mirror verify` on the destination repositories, then against the mapping
#      files (each image compared with its source, signatures and all).
#
#   bash deploy/local/quickstart.sh
#   IMAGE_MIRROR=~/bin/image-mirror bash deploy/local/quickstart.sh   # a binary you have
#
# Needs python3 and a Rust toolchain (unless IMAGE_MIRROR names a binary); installs Debian's docker-registry if it is missing.
# Everything runs on 127.0.0.1 with temporary storage and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v docker-registry >/dev/null 2>&1; then
  echo "installing Debian's docker-registry (a real registry to mirror between)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry
fi
# IMAGE_MIRROR=PATH runs a binary already built (or installed) instead of building one; a
# relative PATH is taken from where the script was started.
if [ -n "${IMAGE_MIRROR:-}" ]; then
  BIN=$(cd "$OLDPWD" && realpath "$(command -v "$IMAGE_MIRROR")")
else
  echo "building image-mirror (a few minutes the first time)"
  cargo build --release --locked -q
  BIN=$PWD/target/release/image-mirror
fi
# Warnings and errors only: each step's output is its plan and summary, not interleaved with
# INFO log lines on stderr (set RUST_LOG=info to see them).
export RUST_LOG="${RUST_LOG:-warn}"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/local-registry.sh
source bench/local-registry.sh

start_registry source SRC
start_registry mirror DST
echo "source registry: $SRC    mirror registry: $DST"

# Three repositories (app00..app02) with three tags each (v1.0..v1.2); app02 is multi-arch;
# OCI and Docker formats mixed; shared base layers.
python3 bench/regbench.py seed "$SRC" --out "$WORK/workload.json" --repos 3 --tags 3 \
  --base-mib 1 --app-mib 0.25 >/dev/null
echo "seeded: $(python3 bench/regbench.py tags --workload "$WORK/workload.json" | tr '\n' ' ')"

mkdir -p "$WORK/mappings"
cat >"$WORK/mappings/mapping_quickstart" <<EOF
# Mirrored every hour by the image-mirror periodic job (see deploy/).
# SRC DST [DST ...]
$SRC/app00:v1.0 $DST/ci/app00:v1.0 $DST/ci/app00:stable

# Every v1.x tag of app01, each keeping its name.
$SRC/app01:v1.* $DST/ci/app01

# A multi-arch image, copied whole (digest preserved), into two repositories.
$SRC/app02:v1.2=$DST/ci/app02:v1.2 $SRC/app02:v1.2=$DST/release/app02:latest
EOF
echo
echo "== mapping file =="
cat "$WORK/mappings/mapping_quickstart"

echo
echo "== 1. dry run: nothing is written =="
"$BIN" check "$WORK/mappings"
dry_run=true "$BIN" run --insecure "$WORK/mappings"

echo
echo "== 2. mirror =="
"$BIN" run --insecure --report "$WORK/report.json" "$WORK/mappings"

echo
echo "== 3. again: nothing to do =="
"$BIN" run --insecure "$WORK/mappings"

echo
echo "== 4. verify the mirror =="
"$BIN" verify --insecure "$DST/ci/app00" "$DST/ci/app01" "$DST/ci/app02" "$DST/release/app02"
"$BIN" verify --insecure -f "$WORK/mappings"
