#!/usr/bin/env bash
# Issue 23 benchmark: image-mirror against a rationed source registry, in one command.
#
#   bash bench/rationing.sh            # 16 repositories x 8 tags, a cold mirror
#   bash bench/rationing.sh --quick    # 4 repositories x 2 tags
#
# What it does (everything under one temporary directory, removed at exit):
#  1. Starts Debian's `docker-registry` (plain HTTP) as source and seeds it with
#     bench/regbench.py's workload (16 x 8 tags; every third repository multi-arch, so each of
#     its tags costs 3 manifest GETs: the index and its 2 children).
#  2. Builds the rationing proxy of the integration tests (tests/support/rationing.rs, through
#     bench/ration_proxy.rs, with a bare `rustc`: no dev-dependencies) and puts it in front of
#     the source. image-mirror reaches the source only through it.
#  3. Quota: a Docker Hub pull quota of QUOTA (60) manifest GETs per window, published in
#     `ratelimit-*` headers (QUOTA_HEADERS=docker-hub; `ietf` or `none` to change), 429 with
#     Docker Hub's body and no Retry-After beyond it. Runs `image-mirror run` into a fresh
#     destination, then again in a new window (the proxy's quota made whole, as the next
#     hourly run would find it), window after window until a run completes every tag or
#     MAX_WINDOWS (8) windows have passed. Prints per window: seconds, manifest GETs admitted,
#     429s, images by status, exit code; then windows needed against the floor
#     (ceil(manifest GETs the workload needs / QUOTA)).
#  4. Rate: a token bucket over every request, RATE (40) per second, BURST (20), 429 with
#     `Retry-After: 1`. One run into a fresh destination. Prints seconds against the floor
#     (requests the run needed, i.e. answered and not refused, / RATE) and the share of
#     requests refused, and per second of the run the requests answered and refused.
#  5. Verifies the destination after each part (HEAD every tag on both sides, digests equal)
#     and says whether it is complete.
#
# Environment: QUOTA (60), QUOTA_HEADERS (docker-hub), MAX_WINDOWS (8), RATE (40), BURST (20);
# QUOTA_ARGS extra image-mirror arguments for the quota runs ("--retries 0
# --request-attempts 2": today's image-mirror retries a spent quota for minutes otherwise);
# RATE_ARGS for the rate run (none); RUN_TIMEOUT (300) seconds, the most one run may take;
# IMAGE_MIRROR=PATH a prebuilt binary (no build); SKIP_BUILD=1 measures
# target/release/image-mirror as it is; SKIP_QUOTA=1 / SKIP_RATE=1 leave a part out; KEEP=1
# keeps the work directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
quick_or_help "$@"
if [ "$QUICK" = 1 ]; then REPOS=4 TAGS=2; else REPOS=16 TAGS=8; fi
QUOTA=${QUOTA:-60}
QUOTA_HEADERS=${QUOTA_HEADERS:-docker-hub}
MAX_WINDOWS=${MAX_WINDOWS:-8}
RATE=${RATE:-40}
BURST=${BURST:-20}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
read -r -a QUOTA_EXTRA <<<"${QUOTA_ARGS---retries 0 --request-attempts 2}"
read -r -a RATE_EXTRA <<<"${RATE_ARGS:-}"

cd "$root"
rb=(python3 "$root/bench/regbench.py")

for tool in docker-registry python3 rustc curl timeout; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

image_mirror_binary
work_directory rationing-bench

say "rustc -O bench/ration_proxy.rs"
rustc --edition 2024 -O "$root/bench/ration_proxy.rs" -o "$W/ration_proxy"

# ------------------------------------------------------------------ registries
# start_registry NAME: a registry on a free port storing in $W/NAME.storage; sets PORT_NAME.
start_registry() {
  local name=$1 port
  port=$(free_port)
  mkdir -p "$W/$name.storage"
  registry_yml "$port" "$W/$name.storage" cache >"$W/$name.yml"
  docker-registry serve "$W/$name.yml" >"$W/$name.log" 2>&1 &
  PID[$name]=$!
  "${rb[@]}" ping "127.0.0.1:$port" || { cat "$W/$name.log" >&2; exit 1; }
  printf -v "PORT_${name//-/_}" '%s' "$port"
}

# start_proxy NAME ARGS...: the rationing proxy in front of the source; sets PROXY.
start_proxy() {
  local name=$1
  shift
  "$W/ration_proxy" "127.0.0.1:$PORT_src" "$@" >"$W/$name.out" 2>&1 &
  PID[$name]=$!
  for _ in $(seq 50); do
    grep -q '^listening on ' "$W/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  PROXY=$(awk '/^listening on / {print $3}' "$W/$name.out")
  [ -n "$PROXY" ] || { cat "$W/$name.out" >&2; exit 1; }
}

counts() { curl -fsS "http://$PROXY/_ration/counts"; }
new_window() { curl -fsS -X POST "http://$PROXY/_ration/new-window" >/dev/null; }

start_registry src
SRC="127.0.0.1:$PORT_src"
say "seeding $REPOS repositories x $TAGS tags into $SRC"
"${rb[@]}" seed "$SRC" --out "$W/workload.json" --repos "$REPOS" --tags "$TAGS"
"${rb[@]}" tags --workload "$W/workload.json" >"$W/tags.txt"
NTAGS=$(wc -l <"$W/tags.txt")
mapfile -t REPO_LIST < <(cut -d: -f1 "$W/tags.txt" | uniq)
# What a cold mirror needs at the least: a manifest GET per tag and per child of an index,
# a GET per unique blob, a tag listing per repository and one /v2/ probe.
read -r NEED_MANIFESTS NEED_REQUESTS < <(python3 - "$W/workload.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
manifests = sum(1 + len(t["children"]) for r in w["repos"].values() for t in r["tags"])
print(manifests, manifests + len(w["blobs"]) + len(w["repos"]) + 1)
PY
)
say "the workload needs $NEED_MANIFESTS manifest GETs, $NEED_REQUESTS source requests at the least"

# mapping PROXY DST: every repository through the proxy into DST.
mapping() {
  local file=$W/$2.mapping r
  : >"$file"
  for r in "${REPO_LIST[@]}"; do printf '%s/%s:* %s/%s\n' "$1" "$r" "$2" "$r" >>"$file"; done
  echo "$file"
}

# run LABEL MAPPING ARGS...: one image-mirror run; writes $W/LABEL.{out,err,json,rc,secs}.
run() {
  local label=$1 file=$2 t0 t1 rc=0
  shift 2
  t0=$(date +%s%N)
  timeout "$RUN_TIMEOUT" "$IM" run --insecure --report "$W/$label.json" "$@" "$file" \
    >"$W/$label.out" 2>"$W/$label.err" || rc=$?
  t1=$(date +%s%N)
  echo "$rc" >"$W/$label.rc"
  python3 -c "print(f'{($t1 - $t0) / 1e9:.1f}')" >"$W/$label.secs"
}

# statuses LABEL: "copied 12, failed 2" from the run's JSON report (the images' statuses,
# whatever they are called, and the repositories whose listing failed).
statuses() {
  python3 - "$W/$1.json" <<'PY'
import collections, json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("no report"); sys.exit(0)
c = collections.Counter(str(i.get("status")) for i in r.get("images", []))
out = [f"{k} {v}" for k, v in sorted(c.items())]
if r.get("listing_failures"):
    out.append(f"listings failed {len(r['listing_failures'])}")
print(", ".join(out) or "nothing")
PY
}

# complete DST: 0 when every tag of the workload is in DST with the source's digest.
complete() {
  "${rb[@]}" verify "$SRC" "$1" --list "$W/tags.txt" --out "$W/$1.digests" >"$W/verify.log" 2>&1
}

# ------------------------------------------------------------------ quota
QUOTA_SUMMARY=""
if [ "${SKIP_QUOTA:-0}" != 1 ]; then
  start_registry dst-quota
  DST="127.0.0.1:$PORT_dst_quota"
  start_proxy proxy-quota --quota "$QUOTA" --headers "$QUOTA_HEADERS"
  file=$(mapping "$PROXY" "$DST")
  say "quota: $QUOTA manifest GETs per window ($QUOTA_HEADERS headers) at $PROXY; image-mirror ${QUOTA_EXTRA[*]}"
  printf '%-8s%8s%14s%7s%6s  %s\n' window seconds "manifest GETs" 429s exit "images" >"$W/quota.table"
  before=$(counts)
  windows=0
  done_at=""
  total_secs=0
  while [ "$windows" -lt "$MAX_WINDOWS" ]; do
    windows=$((windows + 1))
    [ "$windows" = 1 ] || new_window
    run "quota-$windows" "$file" "${QUOTA_EXTRA[@]}"
    after=$(counts)
    python3 - "$before" "$after" "$windows" "$(cat "$W/quota-$windows.secs")" \
      "$(cat "$W/quota-$windows.rc")" "$(statuses "quota-$windows")" >>"$W/quota.table" <<'PY'
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n, secs, rc, st = sys.argv[3:]
d = {k: a[k] - b[k] for k in ("manifest_gets_admitted", "too_many")}
print(f"{n:<8}{secs:>8}{d['manifest_gets_admitted']:>14}{d['too_many']:>7}{rc:>6}  {st}")
PY
    tail -1 "$W/quota.table" >&2
    total_secs=$(python3 -c "print(round($total_secs + $(cat "$W/quota-$windows.secs"), 1))")
    before=$after
    if [ "$(cat "$W/quota-$windows.rc")" = 0 ] && complete "$DST"; then
      done_at=$windows
      break
    fi
  done
  floor=$(((NEED_MANIFESTS + QUOTA - 1) / QUOTA))
  QUOTA_SUMMARY=$(python3 - "$(counts)" "$floor" "$windows" "$done_at" "$total_secs" "$NEED_MANIFESTS" "$QUOTA" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
floor, windows, done_at, secs, need, quota = sys.argv[2:]
state = f"complete after {done_at} windows" if done_at else f"NOT complete after {windows} windows"
print(f"quota {quota}/window: {state}; floor {floor} windows (ceil({need} manifest GETs / {quota})); "
      f"{c['too_many']} answers 429 in all; {c['manifest_gets_admitted']} manifest GETs admitted "
      f"(the workload needs {need}); {c['requests']} requests; {secs} s of runs")
PY
)
  kill "${PID[proxy-quota]}" 2>/dev/null || true
fi

# ------------------------------------------------------------------ rate
RATE_SUMMARY=""
if [ "${SKIP_RATE:-0}" != 1 ]; then
  start_registry dst-rate
  DST="127.0.0.1:$PORT_dst_rate"
  start_proxy proxy-rate --rate "$RATE" --burst "$BURST" --retry-after 1
  file=$(mapping "$PROXY" "$DST")
  say "rate: $RATE requests/s, burst $BURST, Retry-After: 1 at $PROXY; image-mirror ${RATE_EXTRA[*]}"
  run rate "$file" "${RATE_EXTRA[@]}"
  curl -fsS "http://$PROXY/_ration/seen" >"$W/rate.seen"
  state=complete
  complete "$DST" || state="NOT complete"
  RATE_SUMMARY=$(python3 - "$(counts)" "$(cat "$W/rate.secs")" "$(cat "$W/rate.rc")" "$(statuses rate)" \
    "$RATE" "$BURST" "$state" "$NEED_REQUESTS" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
secs, rc, st, rate, burst, state, need = sys.argv[2:]
secs, rate = float(secs), float(rate)
answered = c["requests"] - c["too_many"]
floor = answered / rate
share = c["too_many"] / c["requests"] if c["requests"] else 0
print(f"rate {rate:g}/s burst {burst}: {state}, exit {rc}, {st}; {secs:.1f} s against a floor of "
      f"{floor:.1f} s ({answered} requests answered / {rate:g} per second; the workload needs "
      f"{need} at the least, {int(need) / rate:.1f} s), {secs / floor:.2f}x; "
      f"{c['too_many']} of {c['requests']} requests refused ({share:.0%}); "
      f"most in flight {c['max_in_flight']}")
PY
)
  # When the refusals came: per second of the run, requests answered and refused.
  RATE_TIMELINE=$(python3 - "$W/rate.seen" <<'PY'
import collections, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
if lines:
    t0 = int(lines[0][0])
    per = collections.defaultdict(lambda: [0, 0])
    for at, _method, _status, refused, _path in lines:
        s = (int(at) - t0) // 1000
        per[s][0] += 1
        per[s][1] += refused == "refused"
    print("refused per second of the run: " + ", ".join(
        f"{s}s {per[s][1]}/{per[s][0]}" for s in sorted(per)))
PY
)
  kill "${PID[proxy-rate]}" 2>/dev/null || true
fi

# ------------------------------------------------------------------ report
echo
echo "Workload: $REPOS repositories x $TAGS tags = $NTAGS tags, a cold mirror; $NEED_MANIFESTS manifest GETs needed"
if [ -n "$QUOTA_SUMMARY" ]; then
  echo
  cat "$W/quota.table"
  echo "$QUOTA_SUMMARY"
fi
if [ -n "$RATE_SUMMARY" ]; then
  echo
  echo "$RATE_SUMMARY"
  echo "$RATE_TIMELINE"
fi
echo
echo "image-mirror: $IM"
