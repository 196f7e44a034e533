#!/usr/bin/env bash
# Benchmark of `image-mirror check`, and of planning `run`, on a large mapping set.
#
# Builds the release binary, generates FILES mapping files of LINES lines each (default
# 1,000 x 100 = 100,000 lines) of realistic mappings -- `SRC DST`, `SRC DST1 DST2`,
# `SRC=DST` pairs, wildcards, digests, comments and blank lines, every destination unique so
# there are no conflicts -- then times `target/release/image-mirror check DIR` REPS times and
# prints the best and median wall time against the target (0.2 s), and its peak RSS (with
# GNU time, /usr/bin/time) against 64 MB. Then it plans the same set as `run` would, without
# a registry (bench/plan.rs: load, every wildcard source expanded against a fixed list of 12
# tags, copies batched per destination repository), and prints the planning time and the
# peak RSS after it.
#
# Usage: bench/parse.sh              (from anywhere inside the repository)
# Environment: FILES (1000), LINES (100), REPS (7), TARGET_SECONDS (0.2), TARGET_MB (64),
#              STRICT=1 to exit 1 when the median or the peak RSS misses its target,
#              KEEP_DIR=1 to keep the generated directory.
# Exit status: 0 when the benchmark ran (and, with STRICT=1, met the target); non-zero when
# the build, the generation or the check itself failed.
set -euo pipefail

FILES=${FILES:-1000}
LINES=${LINES:-100}
REPS=${REPS:-7}
TARGET_SECONDS=${TARGET_SECONDS:-0.2}
TARGET_MB=${TARGET_MB:-64}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

echo "==> cargo build --release --locked" >&2
cargo build --release --locked --bin image-mirror --example plan >&2
bin="$repo/target/release/image-mirror"
plan="$repo/target/release/examples/plan"

dir=$(mktemp -d "${TMPDIR:-/tmp}/image-mirror-bench.XXXXXX")
if [[ "${KEEP_DIR:-0}" == 1 ]]; then
    echo "==> keeping $dir" >&2
else
    trap 'rm -rf "$dir"' EXIT
fi

echo "==> generating $FILES files x $LINES lines in $dir" >&2
# One awk process writes every file: fast, and deterministic (fixed srand seed).
awk -v files="$FILES" -v lines="$LINES" -v dir="$dir" '
function hex(n,    s, i) {
    s = ""
    for (i = 0; i < n; i++) s = s substr("0123456789abcdef", int(rand() * 16) + 1, 1)
    return s
}
BEGIN {
    srand(42)
    split("ci-operator,cli,tools,tests,base,installer,must-gather,hyperkube,oauth-proxy,etcd,prometheus,alertmanager,node-exporter,kube-rbac-proxy,golang,python,ubi-minimal,nginx,redis,pause", images, ",")
    split("quay.io,registry.ci.openshift.org,docker.io,ghcr.io,registry.k8s.io,registry.access.redhat.com", hosts, ",")
    nimages = 20; nhosts = 6
    for (f = 0; f < files; f++) {
        team = sprintf("team%03d", f)
        path = sprintf("%s/mapping_%s_%s", dir, team, (f % 2 ? "ci_images" : "supplemental"))
        printf "# Images mirrored for %s.\n# Owner: %s (generated for the parse benchmark)\n", team, team > path
        for (l = 2; l < lines; l++) {
            img = images[(l % nimages) + 1]
            host = hosts[((f + l) % nhosts) + 1]
            src = sprintf("%s/%s/%s-%d", host, team, img, l)
            ver = sprintf("v%d.%d.%d", l % 5, (f + l) % 30, l % 11)
            uniq = sprintf("%s_%s-%d", team, img, l)
            kind = l % 10
            if (kind == 0) {
                printf "\n# %s images, stream %d\n", img, l > path
                l++
            } else if (kind == 1 || kind == 2) {
                printf "%s:%s quay.io/openshift/ci:%s_%s\n", src, ver, uniq, ver > path
            } else if (kind == 3) {
                printf "%s:%s quay.io/openshift/ci:%s_%s registry.ci.openshift.org/mirror/%s-%d:%s\n", src, ver, uniq, ver, team, l, ver > path
            } else if (kind == 4) {
                printf "%s:%s=quay.io/openshift/ci:%s_%s\n", src, ver, uniq, ver > path
            } else if (kind == 5) {
                printf "%s:%s=quay.io/okd/%s-%d:%s %s:latest=quay.io/okd/%s-%d:latest\n", src, ver, team, l, ver, src, team, l > path
            } else if (kind == 6) {
                printf "%s:v%d.* registry.ci.openshift.org/mirror-%s/%s-%d\n", src, l % 3 + 1, team, img, l > path
            } else if (kind == 7) {
                printf "%s@sha256:%s=quay.io/openshift/ci:%s_pinned\n", src, hex(64), uniq > path
            } else if (kind == 8) {
                printf "%s:4.1[0-9].*\tquay.io/openshift/mirror-%s-%d:*   # every 4.1x tag\n", src, team, l > path
            } else {
                printf "%s:%s-ubi9 quay.io/openshift/ci:%s_%s-ubi9 quay.io/openshift/ci-mirror/%s-%d:%s-ubi9 # two destinations\n", src, ver, uniq, ver, team, l, ver > path
            }
        }
        # Close each file: the default limit on open files is far below 1,000.
        close(path)
    }
}'
total_lines=$(cat "$dir"/mapping_* | wc -l)
total_bytes=$(cat "$dir"/mapping_* | wc -c)
echo "==> $(ls "$dir" | wc -l) files, $total_lines lines, $total_bytes bytes" >&2

# Warm-up run (page cache), and the correctness gate: the generated set must be valid.
if ! summary=$("$bin" check "$dir" 2>"$dir.stderr"); then
    echo "error: image-mirror check failed on the generated set:" >&2
    head -20 "$dir.stderr" >&2
    rm -f "$dir.stderr"
    exit 2
fi
warnings=$(wc -l <"$dir.stderr")
rm -f "$dir.stderr"
echo "==> $summary" >&2
if [[ "$warnings" -ne 0 ]]; then
    echo "warning: the generated set produced $warnings warning line(s)" >&2
fi

times=()
for ((i = 1; i <= REPS; i++)); do
    start=$(date +%s.%N)
    "$bin" check "$dir" >/dev/null 2>&1
    end=$(date +%s.%N)
    t=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
    times+=("$t")
    echo "    run $i: ${t}s" >&2
done

read -r best median < <(printf '%s\n' "${times[@]}" | sort -g | awk '
    { v[NR] = $1 }
    END {
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.3f %.3f\n", v[1], m
    }')

verdict=$(awk -v m="$median" -v t="$TARGET_SECONDS" 'BEGIN { print (m < t) ? "under" : "OVER" }')
echo "image-mirror check: $FILES files, $total_lines lines, $REPS runs ($(nproc) CPUs):" \
    "best ${best}s, median ${median}s -- $verdict the ${TARGET_SECONDS}s target"

memory=under
if [[ -x /usr/bin/time ]]; then
    peak_kb=$(/usr/bin/time -f '%M' "$bin" check "$dir" 2>&1 >/dev/null | tail -1)
    memory=$(awk -v k="$peak_kb" -v t="$TARGET_MB" 'BEGIN { print (k < t * 1024) ? "under" : "OVER" }')
    echo "image-mirror check: peak RSS $((peak_kb / 1024)) MB ($peak_kb KB) -- $memory the ${TARGET_MB} MB target"
else
    echo "(no /usr/bin/time: peak RSS not measured)"
fi

# Planning for `run`: the best of 3 (its own figures: time of the plan step alone, peak RSS
# of the whole process after loading and after planning).
best_plan=""
for ((i = 1; i <= 3; i++)); do
    out=$("$plan" "$dir")
    echo "$out" | sed 's/^/    /' >&2
    t=$(echo "$out" | sed -n 's/^plan: .* in \([0-9.]*\) s, .*/\1/p')
    if [[ -z "$best_plan" ]] || awk -v a="$t" -v b="$best_plan" 'BEGIN { exit !(a < b) }'; then
        best_plan=$t
        best_out=$out
    fi
done
echo "planning for run (best of 3): $(echo "$best_out" | sed -n 's/^plan: //p')"

if [[ ( "$verdict" == OVER || "$memory" == OVER ) && "${STRICT:-0}" == 1 ]]; then
    exit 1
fi
exit 0
