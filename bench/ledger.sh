#!/usr/bin/env bash
# What the ledger costs on the 10,000-tag no-op (issue 25): two plain-HTTP docker-registry
# processes on loopback, the destination a copy of the source (10 repositories x 1,000 tags
# of one small image, seeded by bench/regbench.py), then the unchanged run three ways:
# without --ledger, with --ledger in the destination registry (the run that first writes it,
# then the measured one), and with --ledger --prune. Prints wall time and the requests each
# registry's access log shows, the ledger repository's apart.
#
#   bash bench/ledger.sh                       # 10 x 1,000 tags, target/release/image-mirror
#   REPOS=2 TAGS=500 IMAGE_MIRROR=target/debug/image-mirror bash bench/ledger.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/lib.sh
source bench/lib.sh
REPOS="${REPOS:-10}" TAGS="${TAGS:-1000}"
IM="${IMAGE_MIRROR:-target/release/image-mirror}"
[ -x "$IM" ] || cargo build --locked --release
W=$(mktemp -d)
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
start() { # NAME PORT STORAGE
  registry_yml "$2" "$3" accesslog >"$W/$1.yml"
  docker-registry serve "$W/$1.yml" >>"$W/$1.access.log" 2>>"$W/$1.app.log" &
  PID[$1]=$!
  python3 bench/regbench.py ping "127.0.0.1:$2"
}
SRC_PORT=$(free_port) DST_PORT=$(free_port)
SRC=127.0.0.1:$SRC_PORT DST=127.0.0.1:$DST_PORT
start src "$SRC_PORT" "$W/src"
python3 bench/regbench.py scale "$SRC" --repos "$REPOS" --tags "$TAGS" --out "$W/tags.txt"
kill "${PID[src]}"; wait "${PID[src]}" 2>/dev/null || true
cp -a "$W/src" "$W/dst"
start src "$SRC_PORT" "$W/src"
start dst "$DST_PORT" "$W/dst"
cut -d: -f1 "$W/tags.txt" | uniq | while read -r r; do
  printf '%s/%s:* %s/%s\n' "$SRC" "$r" "$DST" "$r"
done >"$W/mapping"
measure() { # LABEL ARGS...
  local label=$1 s0 d0 t0 t1
  shift
  s0=$(wc -l <"$W/src.access.log") d0=$(wc -l <"$W/dst.access.log")
  t0=$(date +%s%N)
  "$IM" run --insecure "$@" "$W/mapping" >"$W/$label.out" 2>&1 || { cat "$W/$label.out"; exit 1; }
  t1=$(date +%s%N)
  sleep 0.2 # the access logs are written after the answers
  local src_req dst_req ledger_req
  src_req=$(($(wc -l <"$W/src.access.log") - s0))
  dst_req=$(($(wc -l <"$W/dst.access.log") - d0))
  ledger_req=$(tail -n +"$((d0 + 1))" "$W/dst.access.log" | grep -c '/v2/mirror/ledger/' || true)
  printf '%-22s %8.2f s %9d %9d %9d\n' "$label" "$(echo "($t1 - $t0) / 1000000000" | bc -l)" \
    "$src_req" "$dst_req" "$ledger_req"
}
printf '%-22s %10s %9s %9s %9s\n' case wall "src req" "dst req" "ledger"
measure no-ledger
measure ledger-first --ledger "$DST/mirror/ledger"
measure ledger --ledger "$DST/mirror/ledger"
measure ledger-prune --ledger "$DST/mirror/ledger" --prune
measure no-ledger-again
echo "$((REPOS * TAGS)) unchanged tags; ledger object: $(grep -o '"size":[0-9]*' <(curl -s "http://$DST/v2/mirror/ledger/manifests/ledger-all" -H 'Accept: application/vnd.oci.image.manifest.v1+json') | head -1)"
