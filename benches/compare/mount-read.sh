#!/usr/bin/env bash
# Reading a large file through `rborg borg mount` against `rborg borg extract --stdout` of the same
# file, with the mount process's peak RSS. Usage: mount-read.sh [RBORG_BINARY] [SIZE_MIB]
# (default target/release/rborg, 1024). Needs /dev/fuse and root (or fusermount3).
set -euo pipefail
cd "$(dirname "$0")/../.."
rborg=$(readlink -f "${1:-target/release/rborg}")
size_mib=${2:-1024}
work=$(mktemp -d /var/tmp/rborg-mount-read.XXXXXX)
cleanup() { fusermount3 -u "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export BORG_BASE_DIR=$work/home BORG_PASSPHRASE=mount-read BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$work/src" "$work/mnt"
head -c $((size_mib << 20)) /dev/urandom > "$work/src/big.bin"
"$rborg" borg init -e repokey-blake2 "$work/repo"
"$rborg" borg create -C lz4 "$work/repo::a" "$work/src"
path=${work#/}/src/big.bin
for round in 1 2 3; do
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(date +%s.%N)
  "$rborg" borg extract --stdout "$work/repo::a" "$path" > /dev/null
  t1=$(date +%s.%N)
  "$rborg" borg mount -f "$work/repo::a" "$work/mnt" & pid=$!
  until mountpoint -q "$work/mnt"; do sleep 0.05; done
  t2=$(date +%s.%N)
  cat "$work/mnt/$path" > /dev/null
  t3=$(date +%s.%N)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  fusermount3 -u "$work/mnt"; wait $pid
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v s="$size_mib" -v r="$rss" 'BEGIN {
    e = b - a; m = d - c;
    printf "round: extract --stdout %.2f s (%.0f MiB/s), read through mount %.2f s (%.0f MiB/s), mount/extract speed %.2f, mount peak RSS %.0f MiB\n", e, s / e, m, s / m, e / m, r / 1024 }'
done
