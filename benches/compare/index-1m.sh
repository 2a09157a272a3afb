#!/usr/bin/env bash
# Repository index at 1 million entries, rborg beside borg 1.2.4 on this machine, alternating
# three rounds. Prints each side's insert/save/load times and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -q -p rborg-repository --test formats_big --no-run >/dev/null 2>&1
for round in 1 2 3; do
  echo "round $round"
  cargo test --release -q -p rborg-repository --test formats_big -- --nocapture 2>&1 | grep -i "entries\|rss\|load" | head -5
  /usr/bin/python3 benches/compare/borg_index_1m.py
done
