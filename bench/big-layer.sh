#!/usr/bin/env bash
# Peak memory of image-mirror while it copies one image with a big layer, for several layer
# sizes: streaming means the peak must not grow with the layer.
#
#   bash bench/big-layer.sh            # 64 MiB, 256 MiB and 1 GiB layers
#   SIZES_MIB="64 1024" bash bench/big-layer.sh
#   # the source far away: 20 ms each way, 80 Mbit/s per TCP connection (a CDN edge, a long
#   # thin path); each size copied as one stream (--ranges-per-blob=1) and in ranges
#   SIZES_MIB=256 DELAY_MS=20 RATE=80Mbit bash bench/big-layer.sh
#
# Starts two plain-HTTP docker-registry processes on loopback with temporary storage, seeds
# a single-layer Docker v2s2 image of each size into the first (the layer generated on the fly
# and streamed, never written to disk by the seeder), mirrors it with `image-mirror run
# --insecure` under GNU time, verifies the digest at the destination, and prints a table.
# With DELAY_MS (and RATE), the source is reached through bench/delay_proxy.py, and each size
# is copied twice, as one stream and in ranges (MODES), into two repositories; `floor_s` is
# the layer's time at RATE over one connection. BIN=PATH uses another binary (no build);
# ARGS adds flags to every run; LOGS=DIR keeps each run's log there (big-SIZE-MODE.log:
# the progress lines of the big blob, with ARGS=--progress-interval=N).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES_MIB=${SIZES_MIB:-"64 256 1024"}
DELAY_MS=${DELAY_MS:-0}
RATE=${RATE:-}
MODES=${MODES:-$([ "$DELAY_MS" != 0 ] || [ -n "$RATE" ] && echo "one-stream ranged" || echo default)}
ARGS=${ARGS:-}
LOGS=${LOGS:-}
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install -y docker-registry)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install -y time)" >&2; exit 2; }

if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN=$PWD/target/release/image-mirror
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# shellcheck source=bench/local-registry.sh
source bench/local-registry.sh

start_registry src SRC
start_registry dst DST
FAR=$SRC
if [ "$DELAY_MS" != 0 ] || [ -n "$RATE" ]; then
  port=$(free_port)
  python3 bench/delay_proxy.py "$port" "$SRC" "$DELAY_MS" ${RATE:+--rate-per-conn "$RATE"} &
  PIDS+=($!)
  FAR=127.0.0.1:$port
  for _ in $(seq 50); do python3 bench/regbench.py ping "$FAR" >/dev/null 2>&1 && break; sleep 0.1; done
fi

seed() { # SIZE_MIB -> prints the manifest digest of big:SIZE
  python3 - "$SRC" "$1" <<'PY'
import hashlib, http.client, json, sys
host, size_mib = sys.argv[1], int(sys.argv[2])
size = size_mib * 1024 * 1024
CHUNK = 1024 * 1024

def chunks():
    # Deterministic, incompressible-looking bytes: a sha256 counter stream.
    block = b""
    n = 0
    while len(block) < CHUNK:
        block += hashlib.sha256(n.to_bytes(8, "big")).digest()
        n += 1
    block = block[:CHUNK]
    for i in range(size // CHUNK):
        yield bytes([i % 251]) + block[1:]

h = hashlib.sha256()
for c in chunks():
    h.update(c)
layer_digest = "sha256:" + h.hexdigest()

def conn():
    return http.client.HTTPConnection(host, timeout=600)

def upload(data_iter, length, digest, repo="big"):
    c = conn()
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse(); r.read()
    loc = r.getheader("Location")
    path = loc.split(host, 1)[1] if host in loc else loc
    sep = "&" if "?" in path else "?"
    c.putrequest("PUT", f"{path}{sep}digest={digest}")
    c.putheader("Content-Length", str(length))
    c.putheader("Content-Type", "application/octet-stream")
    c.endheaders()
    for part in data_iter:
        c.send(part)
    r = c.getresponse(); body = r.read()
    assert r.status == 201, (r.status, body)

upload(chunks(), size, layer_digest)
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
upload([config], len(config), config_digest)
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": config_digest},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size, "digest": layer_digest}],
}).encode()
c = conn()
c.request("PUT", f"/v2/big/manifests/{size_mib}", body=manifest,
          headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
r = c.getresponse(); r.read()
assert r.status == 201, r.status
print(r.getheader("Docker-Content-Digest"))
PY
}

digest_of() { # HOST REPO TAG
  curl -fsI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$1/v2/$2/manifests/$3" \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'
}

floor() { # SIZE_MIB -> seconds at RATE over one connection, or -
  [ -n "$RATE" ] || { echo -; return; }
  python3 - "$1" "$RATE" <<'PY'
import sys
sys.path.insert(0, "bench")
from delay_proxy import parse_rate
print(f"{int(sys.argv[1]) * 1024 * 1024 * 8 / parse_rate(sys.argv[2]):.1f}")
PY
}

printf '%-10s %-11s %9s %8s %14s %10s\n' layer mode wall_s floor_s peak_rss_MiB digest
for mib in $SIZES_MIB; do
  want=$(seed "$mib")
  for mode in $MODES; do
    case $mode in
      one-stream) flags=--ranges-per-blob=1 ;;
      *) flags= ;;
    esac
    echo "$FAR/big:$mib $DST/big-$mode:$mib" >"$WORK/mapping"
    # shellcheck disable=SC2086
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$BIN" run --insecure $flags $ARGS "$WORK/mapping" >"$WORK/out" 2>"$WORK/err" \
      || { cat "$WORK/out" "$WORK/err" >&2; exit 1; }
    read -r wall rss_kib <"$WORK/time"
    [ -z "$LOGS" ] || { mkdir -p "$LOGS"; cp "$WORK/err" "$LOGS/big-$mib-$mode.log"; }
    got=$(digest_of "$DST" "big-$mode" "$mib")
    ok=$([ "$got" = "$want" ] && echo same || echo DIFFERENT)
    printf '%-10s %-11s %9s %8s %14s %10s\n' "${mib}MiB" "$mode" "$wall" "$(floor "$mib")" "$((rss_kib / 1024))" "$ok"
    [ "$ok" = same ] || exit 1
  done
done
