#!/usr/bin/env bash
# Load test: 2,000 tags of small images across 200 repositories mirrored in one run with
# --max-per-registry 16, against real docker-registry processes (release build).
# Prints the wall time and peak RSS (GNU time %M, KiB) of the image-mirror run.
#
#   bash bench/load.sh            # 2000 tags / 200 repositories
#   LOAD_TAGS=500 LOAD_REPOS=50 bash bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LOAD_TAGS="${LOAD_TAGS:-2000}" LOAD_REPOS="${LOAD_REPOS:-200}"
cargo test --locked --release --test integration load:: -- --nocapture 2>&1 | grep -E '^(LOAD|seeded)|test result|panicked'
