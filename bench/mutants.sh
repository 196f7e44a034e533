#!/usr/bin/env bash
# Mutation testing of the pure modules with cargo-mutants (https://mutants.rs): every
# mutant of `reference`, `mapping` and `plan` (found by globs, wherever they live under
# src/) is built and tested; the mutants that no test caught ("missed") are printed.
#
# Not part of CI: a full pass builds and tests hundreds of mutants (tens of minutes on two
# cores). Needs cargo-mutants: cargo install --locked cargo-mutants
#
# Usage: bench/mutants.sh [GLOB...]     (default: the three pure modules)
# Environment: MUTANTS_TESTS  test targets cargo-mutants runs for each mutant (default:
#                             the library's unit tests and cli_check, which cover the pure
#                             modules without starting registries; "all" for the whole suite)
#              JOBS           mutants built and tested at once (default 1)
#              OUT            output directory (default target/mutants)
# Exit status: 0 when every mutant was caught (or unviable), 2 when some were missed, other
# values when cargo-mutants itself failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
shopt -s globstar nullglob

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
    exit 1
fi

patterns=("$@")
if [ ${#patterns[@]} -eq 0 ]; then
    patterns=('src/**/reference.rs' 'src/**/reference/**/*.rs'
              'src/**/mapping*.rs' 'src/**/mapping*/**/*.rs'
              'src/**/plan*.rs' 'src/**/plan*/**/*.rs')
fi
files=()
for pattern in "${patterns[@]}"; do
    # shellcheck disable=SC2206 # the pattern is meant to expand
    matches=($pattern)
    for f in "${matches[@]}"; do
        [ -f "$f" ] && files+=("$f")
    done
done
if [ ${#files[@]} -eq 0 ]; then
    echo "no file matches: ${patterns[*]}" >&2
    exit 1
fi
mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u)
echo "==> mutating: ${files[*]}" >&2

args=(--jobs "${JOBS:-1}" --output "${OUT:-target/mutants}")
for f in "${files[@]}"; do
    args+=(--file "$f")
done
if [ "${MUTANTS_TESTS:-}" != all ]; then
    # The library's unit tests (all named `...::tests...`) and the integration binary's
    # cli_check area: test-name filters, which libtest ORs.
    args+=(-- --lib --test integration -- ::tests cli_check::)
fi

status=0
cargo mutants "${args[@]}" || status=$?
missed="${OUT:-target/mutants}/mutants.out/missed.txt"
if [ -s "$missed" ]; then
    echo "==> survivors (mutants no test caught):"
    cat "$missed"
else
    echo "==> no survivors"
fi
# cargo-mutants exits 2 when mutants were missed, 3 on timeouts, 4 when the tree fails
# its tests unmutated.
exit "$status"
