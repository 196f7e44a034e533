#!/usr/bin/env bash
# Issue 15's WAN benchmark in one command: bench/mirror.sh (cold, warm and the 10,000-tag
# no-op; image-mirror, skopeo sync and the floor side by side, digests verified) at each
# emulated round trip, then one table of wall times with each case's ratio to its own time at
# D = 0 — the figure that says whether latency is hidden (near 1x) or paid — and the
# transfers at once each registry reached (issue 29: the limit follows the round trip).
# D = 0 goes through the same proxies as every other D, adding nothing (as issue 29 measured
# it): the proxies, Python on the same 2 cores as the registries, cost CPU of their own, and
# the ratio is to measure the delay alone. `direct` (no proxies) is shown beside it.
#
#   bash bench/wan.sh              # direct, then D = 0, 10, 20, 40 ms each way (0-80 ms RTT)
#   bash bench/wan.sh --quick      # the smoke workload (4 x 2 tags, 2 x 500-tag no-op)
#
# Each D is one bench/mirror.sh run (its own registries, proxies and seed), so the machine's
# noise between them shows; ROUNDS (default 1 here) repeats the main workload within each.
# Environment: DELAYS ("direct 0 10 20 40"; ratios need 0); ROUNDS (1); SKOPEO_SCALE (0: skopeo is left out of the
# no-op at D > 0, where it takes most of an hour; set 1 to include it); every variable
# bench/mirror.sh reads (IMAGE_MIRROR, BASELINE, SKIP_SKOPEO, IMAGE_MIRROR_ARGS, ...).
# Targets (issue 15), at D = 10 (20 ms RTT): warm within 1.5x and cold within 1.3x of their
# D = 0 times, the no-op within 1.3x; (issue 29) cold at D = 40 (80 ms RTT) within 1.5x.
# A before/after comparison of the adaptive limit, as README's table was measured:
#   BASELINE=/path/to/old/image-mirror SKIP_SKOPEO=1 SKIP_FLOOR=1 SKIP_SCALE=1 ROUNDS=3 \
#     bash bench/wan.sh
# Takes about 40 minutes in full on a 2-core machine (skopeo at 80 ms RTT is most of it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/wan-bench.XXXXXX")
export ROUNDS=${ROUNDS:-1}
DELAYS=${DELAYS:-direct 0 10 20 40}
if [ -z "${IMAGE_MIRROR:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$root" && cargo build --release --locked --bin image-mirror >&2)
fi
export SKIP_BUILD=1
for d in $DELAYS; do
  skopeo_scale=${SKOPEO_SCALE:-0}
  if [ "$d" = direct ]; then
    echo "==> direct (no proxies)" >&2
    delay=
    skopeo_scale=1
  else
    echo "==> D = $d ms each way (through proxies)" >&2
    delay=$d
    [ "$d" = 0 ] && [ "$DELAYS" = "${DELAYS#*direct}" ] && skopeo_scale=1
  fi
  DELAY_MS=$delay SKOPEO_SCALE=$skopeo_scale RESULTS="$out/$d.tsv" CONCURRENCY="$out/$d.concurrency.tsv" \
    bash "$root/bench/mirror.sh" "$@" >"$out/$d.log" 2>&1 || {
    echo "bench/mirror.sh failed at D = $d:" >&2
    tail -20 "$out/$d.log" >&2
    exit 1
  }
  sed -n '/^Workload:/,/^ratio/p' "$out/$d.log" | head -n -1 >&2
done
python3 - "$out" $DELAYS <<'PY'
import collections, csv, statistics, sys
out, delays = sys.argv[1], sys.argv[2:]
wall = collections.defaultdict(dict)
reqs = collections.defaultdict(dict)
for d in delays:
    runs = collections.defaultdict(list)
    for r in csv.DictReader(open(f"{out}/{d}.tsv"), delimiter="\t"):
        runs[r["case"]].append(r)
    for case, rs in runs.items():
        wall[case][d] = statistics.median(float(r["wall_s"]) for r in rs)
        reqs[case][d] = int(rs[0]["src_req"]) + int(rs[0]["dst_req"])
print()
print("Wall time by round trip (D ms each way = 2D ms RTT, through proxies; direct: none);")
print("in brackets the ratio to D = 0 (the same proxies adding nothing)")
hdr = f"{'case':<22}" + "".join(f"{d if d == 'direct' else 'D=' + d:>22}" for d in delays)
print(hdr)
print("-" * len(hdr))
for case in wall:
    cells = []
    for d in delays:
        if d not in wall[case]:
            cells.append(f"{'-':>22}")
            continue
        base = wall[case].get("0")
        ratio = f" ({wall[case][d] / base:.2f}x)" if base and d != "0" else ""
        cells.append(f"{wall[case][d]:>10.2f} s{ratio:>10}")
    print(f"{case:<22}" + "".join(cells))
print()
print("Requests (source + destination access logs):")
for case in reqs:
    print(f"  {case:<20} " + ", ".join(f"D={d}: {n}" for d, n in reqs[case].items()))
print()
print("Transfers at once reached (median of the runs' highest limits; source reads, destination writes):")
for case in ("image-mirror-cold", "baseline-cold"):
    cells = []
    for d in delays:
        rows = [r for r in csv.DictReader(open(f"{out}/{d}.concurrency.tsv"), delimiter="\t")
                if r["case"] == case]
        picked = [r for r in rows if (r["registry"], r["direction"]) in (("src", "reads"), ("dst", "writes"))]
        if not picked:
            cells.append(f"D={d}: -")
            continue
        parts = []
        for side in (("src", "reads"), ("dst", "writes")):
            rs = [r for r in picked if (r["registry"], r["direction"]) == side]
            if rs:
                lim = statistics.median(int(r["limit"]) for r in rs)
                why = collections.Counter(r["stopped"] for r in rs).most_common(1)[0][0]
                parts.append(f"{side[0]} {lim:g} ({why})")
        cells.append(f"D={d}: " + ", ".join(parts))
    print(f"  {case:<20} " + "; ".join(cells))
print()
for d, case, target in [("10", "image-mirror-warm", 1.5), ("10", "image-mirror-cold", 1.3),
                        ("10", "scale-image-mirror", 1.3), ("40", "image-mirror-cold", 1.5)]:
    if d in wall.get(case, {}) and "0" in wall.get(case, {}):
        r = wall[case][d] / wall[case]["0"]
        print(f"Target {case} at {2 * int(d)} ms RTT within {target}x of D = 0: {r:.2f}x {'met' if r <= target else 'MISSED'}")
PY
echo "logs: $out" >&2
