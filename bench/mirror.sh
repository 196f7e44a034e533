#!/usr/bin/env bash
# Issue 7 benchmark: image-mirror against `skopeo sync` and the transfer floor, over TLS.
#
# One command, on a Debian machine where README.md's instructions were followed:
#
#   bash bench/mirror.sh            # full: 16 repos x 8 tags, scale case 10 x 1,000 tags
#   bash bench/mirror.sh --quick    # smoke: 4 repos x 2 tags, scale case 2 x 500 tags
#
# What it does (everything under one temporary directory, removed at exit):
#  1. Generates a test CA and a server certificate for 127.0.0.1 (openssl) and starts Debian's
#     `docker-registry` over TLS on free 127.0.0.1 ports: one source, one destination that is
#     restarted on fresh storage before every cold run. Access logs (log.accesslog) are kept.
#  2. Seeds the source through the HTTP API (bench/regbench.py, stdlib Python): 16
#     repositories x 8 tags; two shared 8 MiB base layers per architecture (mounted, stored
#     once); a unique 2 MiB app layer per tag and architecture; every third repository
#     multi-arch (amd64+arm64 list/index); OCI and Docker v2s2 alternating by repository.
#     Layers are seeded pseudo-random bytes: the same digests on every run.
#  3. Runs, each on a new, empty destination, cold then warm (nothing changed), ROUNDS times
#     (default 3) in an order that rotates every round; the table gives each case's median:
#       skopeo sync --src yaml --dest docker --all --preserve-digests   (one process, all repos)
#       image-mirror run FILE   with `SRC/appNN:* DST/appNN` lines
#       floor: regbench.py floor (cold) / noop (warm), see below
#  4. Verifies after every run that each destination tag's digest (HEAD
#     Docker-Content-Digest) equals the source's, and that skopeo's and image-mirror's
#     destinations list identical digests.
#  5. Prints the table: wall time, MiB received by the destination, requests at the source
#     and at the destination (from the registries' access logs), peak RSS (GNU time %M),
#     and the ratios skopeo/image-mirror and image-mirror/floor.
#     Destinations are new directories, never a wiped one, and are removed only at exit: this
#     machine's ext4 has no journal, and there every inode created within minutes of a mass
#     delete pays for a scan of the recently deleted ones (ext4 recently_deleted(), 10-20% of
#     the destination registry's CPU in `perf`). Wiping the previous tool's storage before
#     each cold run charged that to whichever tool ran second and third, never to the first.
#  6. Scale case: one small image tagged N times in 10 repositories, already mirrored (the
#     destination's storage is a copy of the source's): time both tools on the no-op.
#
# Measurements:
#  - wall: from fork to exit of the tool's process, date +%s%N.
#  - dst MiB: growth of `rchar` in /proc/<destination registry pid>/io during the run: every
#    byte the destination registry read() — the TLS records the tool sent it, plus its own
#    small metadata reads (link files). Counted on the registry because tool-side counters
#    are not comparable: Go writes sockets with write(2) (counted in wchar), Rust with
#    send(2) (not counted).
#  - src/dst req: lines the run added to each registry's access log (one per HTTP request).
#  - RSS: GNU time's %M of the tool process (the floor is a Python process: its RSS is
#    Python's, shown for completeness).
#  - floor (cold): the unique blobs of the workload (known from the seed record), each
#    GET once from the source and streamed into one monolithic PUT at the destination
#    (POST + PUT), then one cross-repository mount POST for every other repository needing
#    it, then every manifest GET from the source and PUT (children by digest, then tags);
#    6 threads with one keep-alive TLS connection each per registry (6 = image-mirror's
#    default --max-per-registry). No existence checks, no hashing beyond the registry's.
#    floor (warm): one HEAD per tag at each registry, compared, 6 threads.
#
# Disk: about ROUNDS x 3 x 370 MiB under TMPDIR while it runs.
#
# Environment: ROUNDS (3) repetitions of the main workload; SKIP_SCALE=1 skips the scale case; JOBS (6) floor threads; IMAGE_MIRROR=PATH a prebuilt binary to measure (no
# build); SKIP_BUILD=1 measures target/release/image-mirror as it is; IMAGE_MIRROR_ARGS extra
# arguments for image-mirror (e.g. "--max-per-registry 12"); KEEP=1 keeps the work directory;
# BASELINE=PATH another image-mirror binary (say, the previous commit's release build)
# measured as the tool "baseline" in the same rounds and the scale case, side by side;
# SKIP_SKOPEO=1 leaves skopeo out (a quicker before/after comparison); SKOPEO_SCALE=0 leaves
# it out of the scale case only (at 20 ms RTT and more it takes most of an hour there);
# DELAY_MS=D puts both registries behind proxies adding D ms each way (2D round trip), an
# emulated WAN (DELAY_MS=0 puts the proxies there adding nothing: the base a delay's cost is
# measured against, the proxies' own CPU cost included; unset, the tools go direct); RESULTS=PATH keeps the per-run figures (a TSV) there (bench/wan.sh reads it);
# CONCURRENCY=PATH keeps, per image-mirror run, the transfers at once each registry reached
# and why no more (from the JSON report; a TSV); SKIP_FLOOR=1 leaves the floor out.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
quick_or_help "$@"

if [ "$QUICK" = 1 ]; then
  REPOS=4 TAGS=2 SCALE_REPOS=2 SCALE_TAGS=500
else
  REPOS=16 TAGS=8 SCALE_REPOS=10 SCALE_TAGS=1000
fi
JOBS=${JOBS:-6}
ROUNDS=${ROUNDS:-3}
read -r -a IM_EXTRA <<<"${IMAGE_MIRROR_ARGS:-}"

cd "$root"
rb=(python3 "$root/bench/regbench.py")

# ------------------------------------------------------------------ prerequisites
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

image_mirror_binary
work_directory mirror-sh-bench

# ------------------------------------------------------------------ TLS
mkdir -p "$W/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=image-mirror bench CA" \
  -keyout "$W/ca.key" -out "$W/certs/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$W/ext.cnf"
openssl x509 -req -in "$W/server.csr" -CA "$W/certs/ca.crt" -CAkey "$W/ca.key" \
  -CAcreateserial -days 2 -extfile "$W/ext.cnf" -out "$W/server.crt" 2>/dev/null
CA="$W/certs/ca.crt"

# ------------------------------------------------------------------ registries
# start_registry NAME PORT STORAGE: the registry NAME on PORT, storing in the directory STORAGE
# (created if missing; never wiped, see 5. above).
start_registry() {
  local name=$1 port=$2 storage=$3
  mkdir -p "$storage"
  registry_yml "$port" "$storage" accesslog cache tls "$W/server.crt" "$W/server.key" >"$W/$name.yml"
  docker-registry serve "$W/$name.yml" >"$W/$name.access.log" 2>"$W/$name.app.log" &
  PID[$name]=$!
  "${rb[@]}" ping "127.0.0.1:$port" --ca "$CA" || { cat "$W/$name.app.log" >&2; exit 1; }
}
stop_registry() {
  local name=$1
  kill "${PID[$name]}" 2>/dev/null || true
  wait "${PID[$name]}" 2>/dev/null || true
  unset "PID[$name]"
}

SRC_PORT=$(free_port)
DST_PORT=$(free_port)
SRC="127.0.0.1:$SRC_PORT"
DST="127.0.0.1:$DST_PORT"
start_registry src "$SRC_PORT" "$W/src.storage"
# The tools (and the floor) reach the registries as TSRC and TSDST: the registries
# themselves, or with DELAY_MS (0 included), TCP proxies that delay each direction by that
# much (bench/delay_proxy.py: latency without a bandwidth limit, as a WAN link). Seeding and
# verification go direct.
TSRC=$SRC
TDST=$DST
if [ -n "${DELAY_MS:-}" ]; then
  for side in src dst; do
    port=$(free_port)
    upstream=$([ $side = src ] && echo "$SRC" || echo "$DST")
    python3 "$root/bench/delay_proxy.py" "$port" "$upstream" "$DELAY_MS" &
    PID[delay-$side]=$!
    if [ $side = src ]; then TSRC="127.0.0.1:$port"; else TDST="127.0.0.1:$port"; fi
  done
  say "registries behind proxies adding ${DELAY_MS} ms each way: $TSRC, $TDST"
fi

say "seeding $REPOS repositories x $TAGS tags into $SRC"
"${rb[@]}" seed "$SRC" --ca "$CA" --out "$W/workload.json" --repos "$REPOS" --tags "$TAGS"
"${rb[@]}" tags --workload "$W/workload.json" >"$W/tags.txt"
NTAGS=$(wc -l <"$W/tags.txt")
mapfile -t REPO_LIST < <(cut -d: -f1 "$W/tags.txt" | uniq)

# image-mirror mapping and skopeo sync YAML for a list of repositories on SRC -> DST.
write_inputs() { # PREFIX SRC DST REPO...
  local prefix=$1 src=$2 dst=$3 r
  shift 3
  : >"$prefix.mapping"
  printf '%s:\n  tls-verify: true\n  cert-dir: %s\n  images:\n' "$src" "$W/certs" >"$prefix.yaml"
  for r in "$@"; do
    printf '%s/%s:* %s/%s\n' "$src" "$r" "$dst" "$r" >>"$prefix.mapping"
    printf '    %s: []\n' "$r" >>"$prefix.yaml"
  done
}
write_inputs "$W/main" "$TSRC" "$TDST" "${REPO_LIST[@]}"

# ------------------------------------------------------------------ measuring
# How image-mirror trusts the test CA: SSL_CERT_FILE if its TLS stack honours it (then
# certificates are verified, as skopeo's are), else --insecure.
IM_ENV=()
IM_TLS=()
start_registry dst "$DST_PORT" "$W/dst-probe.storage"
printf '%s/%s:v1.0 %s/tlsprobe:v1.0\n' "$TSRC" "${REPO_LIST[0]}" "$TDST" >"$W/probe.mapping"
if SSL_CERT_FILE="$CA" "$IM" run --dry-run "$W/probe.mapping" >"$W/probe.log" 2>&1; then
  IM_ENV=(SSL_CERT_FILE="$CA")
  TLS_NOTE="image-mirror TLS: certificates verified against the test CA via SSL_CERT_FILE"
else
  IM_TLS=(--insecure)
  TLS_NOTE="image-mirror TLS: --insecure (SSL_CERT_FILE was not honoured: $(tail -1 "$W/probe.log"))"
fi
say "$TLS_NOTE"

lines() { wc -l <"$W/$1.access.log"; }
rchar() { awk '/^rchar/ {print $2}' "/proc/${PID[$1]}/io"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/${PID[$1]}/stat"; }

# measure CASE ROUND -- COMMAND...: one row of results.tsv; the run's access-log lines are
# kept in $W/CASE.rROUND.src.log and $W/CASE.rROUND.dst.log.
printf 'case\tround\twall_s\tdst_mib\tsrc_req\tdst_req\trss_mib\tcpu_s\treg_cpu_s\n' >"$W/results.tsv"
measure() {
  local case=$1 round=$2 label="$1.r$2"
  shift 3
  local s0 d0 io0 c0 t0 t1 rc=0
  # The previous run's dirty pages go to disk now, not during this run.
  sync
  sleep 0.2
  s0=$(lines src) d0=$(lines dst) io0=$(rchar dst) c0=$(($(cpu_ticks src) + $(cpu_ticks dst)))
  t0=$(date +%s%N)
  /usr/bin/time -f '%M %U %S' -o "$W/$label.time" "$@" >"$W/$label.out" 2>"$W/$label.err" || rc=$?
  t1=$(date +%s%N)
  sleep 0.3 # the registries' access logs are written after each response
  if [ "$rc" != 0 ]; then
    echo "FAILED ($rc): $label: $*" >&2
    tail -20 "$W/$label.err" >&2
    exit 1
  fi
  local s1 d1 io1 c1
  s1=$(lines src) d1=$(lines dst) io1=$(rchar dst) c1=$(($(cpu_ticks src) + $(cpu_ticks dst)))
  tail -n +$((s0 + 1)) "$W/src.access.log" | head -n $((s1 - s0)) >"$W/$label.src.log"
  tail -n +$((d0 + 1)) "$W/dst.access.log" | head -n $((d1 - d0)) >"$W/$label.dst.log"
  python3 - "$case" "$round" "$t0" "$t1" "$io0" "$io1" $((s1 - s0)) $((d1 - d0)) $((c1 - c0)) \
    "$(getconf CLK_TCK)" $(tail -1 "$W/$label.time") >>"$W/results.tsv" <<'PY'
import sys
case, rnd, t0, t1, io0, io1, sreq, dreq, ticks, hz, rss, user, sys_ = sys.argv[1:]
print(f"{case}\t{rnd}\t{(int(t1) - int(t0)) / 1e9:.2f}\t{(int(io1) - int(io0)) / 1048576:.1f}\t{sreq}\t{dreq}"
      f"\t{int(rss) / 1024:.1f}\t{float(user) + float(sys_):.2f}\t{int(ticks) / int(hz):.2f}")
PY
  say "$(tail -1 "$W/results.tsv" | tr '\t' ' ')"
}

# (arrays, not functions: GNU time runs them)
SKOPEO=(skopeo sync --src yaml --dest docker --all --preserve-digests --retry-times 0
  --dest-cert-dir "$W/certs")
IMAGE_MIRROR=(env "${IM_ENV[@]}" "$IM" run "${IM_TLS[@]}" --report "$W/report.json" "${IM_EXTRA[@]}")
verify() { # LABEL LIST
  "${rb[@]}" verify "$SRC" "$DST" --ca "$CA" --list "$2" --out "$W/$1.digests" ||
    { echo "verification failed after $1" >&2; exit 1; }
}

if [ -n "${BASELINE:-}" ]; then
  BL=$(realpath "$BASELINE")
  IMAGE_MIRROR_BASELINE=(env "${IM_ENV[@]}" "$BL" run "${IM_TLS[@]}" --report "$W/report.json" "${IM_EXTRA[@]}")
fi

# concurrency CASE ROUND: what the last run's JSON report says each registry's transfers
# reached (a binary from before the adaptive limit says nothing: six, or its flag).
printf 'case\tround\tregistry\tdirection\tlimit\tin_flight\tstopped\n' >"$W/concurrency.tsv"
concurrency() {
  python3 - "$1" "$2" "$TSRC" "$TDST" "$W/report.json" >>"$W/concurrency.tsv" <<'PY'
import json, sys
case, rnd, src, dst, path = sys.argv[1:]
report = json.load(open(path))
for host, c in sorted(report.get("concurrency", {}).items()):
    role = {src: "src", dst: "dst"}.get(host, host)
    for direction, r in sorted(c.items()):
        print(f"{case}\t{rnd}\t{role}\t{direction}\t{r['limit']}\t{r['in_flight']}\t{r['stopped']}")
PY
  rm -f "$W/report.json"
}

# ------------------------------------------------------------------ main workload
TOOLS=(image-mirror)
[ "${SKIP_FLOOR:-0}" = 1 ] || TOOLS+=(floor)
[ "${SKIP_SKOPEO:-0}" = 1 ] || TOOLS=(skopeo "${TOOLS[@]}")
[ -z "${BASELINE:-}" ] || TOOLS+=(baseline)
run=0
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((${#TOOLS[@]} - 1))); do
    # The order rotates every round, so no tool always follows the same one.
    tool=${TOOLS[$(((k + round - 1) % ${#TOOLS[@]}))]}
    run=$((run + 1))
    stop_registry dst
    start_registry dst "$DST_PORT" "$W/dst-$run.storage"
    for phase in cold warm; do
      say "round $round/$ROUNDS: $tool $phase"
      case $tool in
        skopeo) measure "$tool-$phase" "$round" -- "${SKOPEO[@]}" "$W/main.yaml" "$DST" ;;
        image-mirror)
          measure "$tool-$phase" "$round" -- "${IMAGE_MIRROR[@]}" "$W/main.mapping"
          concurrency "$tool-$phase" "$round"
          ;;
        baseline)
          measure "$tool-$phase" "$round" -- "${IMAGE_MIRROR_BASELINE[@]}" "$W/main.mapping"
          concurrency "$tool-$phase" "$round"
          ;;
        floor)
          if [ $phase = cold ]; then
            measure "$tool-$phase" "$round" -- "${rb[@]}" floor "$TSRC" "$TDST" --ca "$CA" --jobs "$JOBS" --workload "$W/workload.json"
          else
            measure "$tool-$phase" "$round" -- "${rb[@]}" noop "$TSRC" "$TDST" --ca "$CA" --jobs "$JOBS" --list "$W/tags.txt"
          fi
          ;;
      esac
      verify "$tool-$phase.r$round" "$W/tags.txt"
    done
  done
  if [ "${SKIP_SKOPEO:-0}" != 1 ] && ! cmp -s "$W/skopeo-cold.r$round.digests" "$W/image-mirror-cold.r$round.digests"; then
    echo "skopeo and image-mirror destinations differ:" >&2
    diff "$W/skopeo-cold.r$round.digests" "$W/image-mirror-cold.r$round.digests" | head >&2
    exit 1
  fi
done
say "${TOOLS[*]} produced identical digests for all $NTAGS tags"

# ------------------------------------------------------------------ scale case
SCALE_N=0
if [ "${SKIP_SCALE:-0}" != 1 ]; then
  stop_registry dst
  stop_registry src
  SCALE_N=$((SCALE_REPOS * SCALE_TAGS))
  say "scale case: seeding $SCALE_N tags ($SCALE_REPOS repositories x $SCALE_TAGS)"
  start_registry src "$SRC_PORT" "$W/scale-src.storage"
  "${rb[@]}" scale "$SRC" --ca "$CA" --out "$W/scale.txt" --repos "$SCALE_REPOS" --tags "$SCALE_TAGS"
  stop_registry src # copy a quiescent storage: the destination already holds every tag
  cp -a "$W/scale-src.storage" "$W/scale-dst.storage"
  start_registry src "$SRC_PORT" "$W/scale-src.storage"
  start_registry dst "$DST_PORT" "$W/scale-dst.storage"
  mapfile -t SCALE_LIST < <(cut -d: -f1 "$W/scale.txt" | uniq)
  write_inputs "$W/scale" "$TSRC" "$TDST" "${SCALE_LIST[@]}"
  "${rb[@]}" noop "$SRC" "$DST" --ca "$CA" --list "$W/scale.txt" ||
    { echo "scale destination is not a mirror of the source" >&2; exit 1; }
  measure scale-image-mirror 1 -- "${IMAGE_MIRROR[@]}" "$W/scale.mapping"
  [ -z "${BASELINE:-}" ] || measure scale-baseline 1 -- "${IMAGE_MIRROR_BASELINE[@]}" "$W/scale.mapping"
  [ "${SKIP_SKOPEO:-0}" = 1 ] || [ "${SKOPEO_SCALE:-1}" = 0 ] ||
    measure scale-skopeo 1 -- "${SKOPEO[@]}" "$W/scale.yaml" "$DST"
  measure scale-floor 1 -- "${rb[@]}" noop "$TSRC" "$TDST" --ca "$CA" --jobs "$JOBS" --list "$W/scale.txt"
  verify scale.r1 "$W/scale.txt"
fi

# ------------------------------------------------------------------ report
[ -z "${RESULTS:-}" ] || cp "$W/results.tsv" "$RESULTS"
[ -z "${CONCURRENCY:-}" ] || cp "$W/concurrency.tsv" "$CONCURRENCY"
python3 - "$W/results.tsv" "$W/workload.json" "$NTAGS" "$SCALE_N" "$REPOS" "$TAGS" "$W" <<'EOF'
import collections, csv, json, re, statistics, sys
runs = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    runs[r["case"]].append(r)
# Each case is shown by its median wall time, with the fastest and slowest beside it; the
# other columns are the median run's (the lower middle one of an even count).
rows = {}
for case, rs in runs.items():
    rs.sort(key=lambda r: float(r["wall_s"]))
    rows[case] = dict(rs[(len(rs) - 1) // 2], lo=rs[0]["wall_s"], hi=rs[-1]["wall_s"], n=len(rs),
                      wall_s=statistics.median(float(r["wall_s"]) for r in rs))
w = json.load(open(sys.argv[2]))
ntags, scale_n, repos, tags = (int(x) for x in sys.argv[3:7])
uniq = sum(b["size"] for b in w["blobs"].values()) / 1048576
f = lambda k, c: float(rows[k][c])
print()
print(f"Workload: {repos} repositories x {tags} tags = {ntags} tags, {len(w['blobs'])} unique blobs, "
      f"{uniq:.1f} MiB unique" + (f"; scale case {scale_n} unchanged tags" if scale_n else ""))
hdr = (f"{'case':<20}{'wall s':>8}{'(runs: min-max)':>18}{'dst MiB':>9}{'src req':>9}{'dst req':>9}{'req/tag':>9}"
       f"{'RSS MiB':>9}{'CPU s':>8}{'reg CPU s':>10}")
print(hdr)
print("-" * len(hdr))
for label, r in rows.items():
    n = scale_n if label.startswith("scale") else ntags
    req = (int(r["src_req"]) + int(r["dst_req"])) / n
    spread = f"({r['n']}: {f(label,'lo'):.2f}-{f(label,'hi'):.2f})" if r["n"] > 1 else ""
    print(f"{label:<20}{f(label,'wall_s'):>8.2f}{spread:>18}{f(label,'dst_mib'):>9.1f}{int(r['src_req']):>9}"
          f"{int(r['dst_req']):>9}{req:>9.2f}{f(label,'rss_mib'):>9.1f}{f(label,'cpu_s'):>8.2f}"
          f"{f(label,'reg_cpu_s'):>10.2f}")
print()
def ratio(a, b, c="wall_s"):
    return f(a, c) / f(b, c) if f(b, c) else float("inf")
print(f"{'ratio (medians)':<26}{'wall':>9}{'requests':>10}")
for name, a, b in [
    ("cold skopeo/image-mirror", "skopeo-cold", "image-mirror-cold"),
    ("warm skopeo/image-mirror", "skopeo-warm", "image-mirror-warm"),
    ("scale skopeo/image-mirror", "scale-skopeo", "scale-image-mirror"),
    ("cold image-mirror/floor", "image-mirror-cold", "floor-cold"),
    ("warm image-mirror/floor", "image-mirror-warm", "floor-warm"),
    ("scale image-mirror/floor", "scale-image-mirror", "scale-floor"),
    ("cold image-mirror/baseline", "image-mirror-cold", "baseline-cold"),
    ("warm image-mirror/baseline", "image-mirror-warm", "baseline-warm"),
    ("scale image-mirror/baseline", "scale-image-mirror", "scale-baseline"),
]:
    if a not in rows or b not in rows:
        continue
    reqs = lambda k: int(rows[k]["src_req"]) + int(rows[k]["dst_req"])
    print(f"{name:<26}{ratio(a, b):>8.2f}x{reqs(a) / max(1, reqs(b)):>9.2f}x")
print()

# What each run asked of the registries (from the access logs), per kind of request.
def kind(line):
    m = re.search(r'"(\w+) (\S+) HTTP', line)
    if not m:
        return "?"
    method, uri = m.groups()
    path = uri.split("?")[0]
    if path == "/v2/":
        return f"{method} /v2/ (auth probe)"
    if "/tags/list" in path:
        return "GET tags/list"
    if "/manifests/" in path:
        return f"{method} manifest"
    if "/blobs/uploads/" in path:
        if method == "POST" and "mount=" in uri:
            return "POST mount"
        return f"{method} upload"
    if "/blobs/" in path:
        return f"{method} blob"
    return f"{method} other"
print()
print("Requests by kind (source + destination access logs):")
kinds = {}
for label in rows:
    c = collections.Counter()
    for side in ("src", "dst"):
        for line in open(f"{sys.argv[7]}/{label}.r{rows[label]['round']}.{side}.log"):
            c[f"{side} {kind(line)}"] += 1
    kinds[label] = c
for label, c in kinds.items():
    print(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
print()
im_peak = max(float(r["rss_mib"]) for k, rs in runs.items() if "image-mirror" in k for r in rs)
if "skopeo-cold" not in rows:
    print(f"image-mirror peak RSS: {im_peak:.1f} MiB")
    sys.exit(0)
print("Targets: cold skopeo/image-mirror >= 5x: {:.2f}x {}; warm >= 12x: {:.2f}x {}; "
      "image-mirror peak RSS < 100 MB: {:.1f} MiB {}".format(
    ratio("skopeo-cold", "image-mirror-cold"), "met" if ratio("skopeo-cold", "image-mirror-cold") >= 5 else "MISSED",
    ratio("skopeo-warm", "image-mirror-warm"), "met" if ratio("skopeo-warm", "image-mirror-warm") >= 12 else "MISSED",
    im_peak, "met" if im_peak * 1048576 < 100e6 else "MISSED"))
EOF
echo "$TLS_NOTE"
echo "skopeo: skopeo sync --src yaml --dest docker --all --preserve-digests (certificates verified via --dest-cert-dir / cert-dir)"
