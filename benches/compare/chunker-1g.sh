#!/usr/bin/env bash
# rborg's chunkers beside borg 1.2.4's C buzhash on one file (default: a fresh 1 GiB random file),
# alternating, three rounds. Usage: chunker-1g.sh [RBORG_BINARY] [FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
rborg=${1:-target/release/rborg}
file=${2:-}
if [ -z "$file" ]; then
  file=$(mktemp /tmp/chunker-1g.XXXXXX); trap 'rm -f "$file"' EXIT
  head -c 1073741824 /dev/urandom > "$file"
fi
seed=-1982372
for round in 1 2 3; do
  echo "== round $round"
  echo -n "borg 1.2.4 buzhash 19,23,21,4095: "; /usr/bin/python3 testdata/gen/chunker.py bench buzhash,19,23,21,4095 $seed "$file"
  for spec in buzhash,19,23,21,4095 fastcdc,19,21,23; do
    for mode in "" --mmap; do
      "$rborg" benchmark chunker --chunker-params $spec --seed=$seed $mode "$file"
    done
  done
done
