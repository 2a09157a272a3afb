#!/usr/bin/env bash
# create, extract and check --verify-data through `borg serve` over a local pipe (the spawned
# transport, with a stand-in for ssh that runs the command here) against the same operations on
# a local path, on the same generated dataset, in one run. Issue 5's target: remote/local speed
# >= 0.8 for create and extract.
# Usage: remote-throughput.sh [RBORG_BINARY] [SIZE_MIB] [ROUNDS]
# (defaults target/release/rborg, 512, 3). Prints one line per round and operation.
# SERVE=/usr/bin/borg makes the server side real borg 1.2's `borg serve` instead of rborg's.
# LATENCY_MS=N delays each direction of the pipe by N ms (latency-relay.py), as a network would.
set -euo pipefail
cd "$(dirname "$0")/../.."
rborg=$(readlink -f "${1:-target/release/rborg}")
size_mib=${2:-512}
rounds=${3:-3}
work=$(mktemp -d /var/tmp/rborg-remote-tp.XXXXXX)
trap 'rm -rf "$work"' EXIT
export BORG_BASE_DIR=$work/home BORG_PASSPHRASE=remote-tp BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$work/bin"
ln -s "$rborg" "$work/bin/borg"
cat > "$work/bin/fake-ssh" <<'SH'
#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-i|-l|-F|-J) shift 2 ;;
    -*) shift ;;
    *) shift; break ;;
  esac
done
if [ -n "${LATENCY_MS:-}" ]; then exec /usr/bin/python3 "$LATENCY_RELAY" "$LATENCY_MS" sh -c "$*"; fi
exec sh -c "$*"
SH
chmod +x "$work/bin/fake-ssh"
export LATENCY_RELAY=$PWD/benches/compare/latency-relay.py
export BORG_RSH=$work/bin/fake-ssh BORG_REMOTE_PATH=${SERVE:-$work/bin/borg}
/usr/bin/python3 testdata/gen/gen-dataset.py --size-mib "$size_mib" --seed 1 "$work/data" > /dev/null
now() { date +%s.%N; }
for round in $(seq "$rounds"); do
  for kind in local remote; do
    if [ $kind = local ]; then repo=$work/repo-$kind-$round; else repo=ssh://localhost$work/repo-$kind-$round; fi
    "$rborg" borg init -e repokey-blake2 "$repo" > /dev/null 2>&1
    sync
    t0=$(now); "$rborg" borg create -C zstd,3 "$repo::a" "$work/data"; t1=$(now)
    # a directory per extraction, all deleted at the end: on ext4 without a journal a file
    # creation scans past inodes deleted in the last ~30 s (see pipeline.py)
    out=$work/out-$kind-$round; mkdir "$out"
    t2=$(now); (cd "$out" && "$rborg" borg extract "$repo::a"); t3=$(now)
    "$rborg" borg check --verify-data "$repo"; t4=$(now)
    echo "$round $kind $(echo "$t1 - $t0" | bc) $(echo "$t3 - $t2" | bc) $(echo "$t4 - $t3" | bc)"
  done
done | awk -v s="$size_mib" '
  { create[$1, $2] = $3; extract[$1, $2] = $4; check[$1, $2] = $5; n = $1 }
  END {
    for (r = 1; r <= n; r++) {
      printf "round %d: create local %.2f s, remote %.2f s (remote/local speed %.2f); extract local %.2f s, remote %.2f s (%.2f); check --verify-data local %.2f s, remote %.2f s (%.2f)\n",
        r, create[r, "local"], create[r, "remote"], create[r, "local"] / create[r, "remote"],
        extract[r, "local"], extract[r, "remote"], extract[r, "local"] / extract[r, "remote"],
        check[r, "local"], check[r, "remote"], check[r, "local"] / check[r, "remote"]
    }
  }'
