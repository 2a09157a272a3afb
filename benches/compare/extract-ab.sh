#!/usr/bin/env bash
# A/B of extraction: extracts one archive with each binary in turn, ROUNDS times, each into a
# fresh directory under WORKDIR (deleted right after its run when WORKDIR is on tmpfs, kept until
# the end otherwise: deleting many files on ext4 slows the creations that follow for a minute),
# and prints wall time, user and system CPU and peak RSS per run.
#   benches/compare/extract-ab.sh ROUNDS REPO::ARCHIVE WORKDIR BIN...
# BIN is an rborg binary (run as `BIN borg extract`) or borg itself; the repository's
# passphrase and home come from the environment (BORG_PASSPHRASE, HOME or BORG_BASE_DIR).
# Use distinct file names for the binaries (copies of builds): the name labels the output.
set -euo pipefail
rounds=${1:?usage: extract-ab.sh ROUNDS REPO::ARCHIVE WORKDIR BIN...}
archive=${2:?archive}
work=${3:?workdir}
shift 3
tmpfs=0
[ "$(stat -f -c %T "$(dirname "$work")")" = tmpfs ] && tmpfs=1
rm -rf "$work"
mkdir -p "$work"
# let the file system settle after earlier deletions
sync
[ "$tmpfs" = 1 ] || sleep 40
for r in $(seq "$rounds"); do
  for bin in "$@"; do
    name=$(basename "$bin")
    dest="$work/$name-$r"
    mkdir -p "$dest"
    sub=(borg extract)
    [ "$name" = borg ] && sub=(extract)
    (cd "$dest" && sync &&
      /usr/bin/time -f "$name %e s wall %U s user %S s sys %M kB" "$bin" "${sub[@]}" "$archive" 2>&1 | tail -1)
    [ "$tmpfs" = 1 ] && rm -rf "$dest"
  done
done
rm -rf "$work"
