#!/usr/bin/env bash
# Many small files (issue 9's files-cache run): a first backup and an unchanged re-run (served by
# the files cache) of N small files, borg 1.2.4 beside rborg, each under /usr/bin/time. Prints wall
# time, CPU time and peak RSS per run, and the peak RSS per file beyond each tool's empty-repository
# baseline (a create of one file), which is what the files cache and the chunks cache cost per file.
#
#   benches/compare/files-cache.sh [RBORG] [N] [WORK]
#
# Defaults: target/release/rborg, 1000000 files, /var/tmp/rborg-files-cache (deleted at the end).
# The files are 0-255 bytes (a few share content), 1000 per directory; repokey-blake2 + lz4 for both
# tools. Disk: N inodes plus about 4 KiB per file. About 15 minutes for 1 million files on 2 cores,
# most of it borg's first backup.
set -euo pipefail
cd "$(dirname "$0")/../.."
rborg=$(readlink -f "${1:-target/release/rborg}")
n=${2:-1000000}
work=${3:-/var/tmp/rborg-files-cache}
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export BORG_PASSPHRASE=files-cache-bench
/usr/bin/python3 - "$work/src/data" "$n" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(n):
    d = os.path.join(root, 'd%04d' % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    size = rng.randrange(256)
    # one file in eight repeats an earlier content: chunks shared between files, as on servers
    seed = rng.randrange(i + 1) if i % 8 == 0 else i
    data = random.Random(seed).randbytes(size)
    with open(os.path.join(d, 'f%07d' % i), 'wb') as f:
        f.write(data)
EOF
mkdir -p "$work/one/data" && echo one > "$work/one/data/file"

# run NAME ARGS...: prints "NAME wall cpu rss_kb"
run() {
  local name=$1
  shift
  /usr/bin/time -f "$name %e %U %S %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" || {
    cat "$work/err.txt" >&2
    exit 2
  }
  awk '{ printf "%s %.2f %.2f %d\n", $1, $2, $3 + $4, $5 }' "$work/time.txt"
}

# warm: reads every source file, so that each tool's run finds them in the page cache (without
# it the second tool's first backup read part of a million files from disk: 143 s against 71 s)
warm() {
  tar -C "$work/src" -cf - data | cat >/dev/null
}

results=()
for tool in borg rborg; do
  if [ $tool = borg ]; then cmd=(/usr/bin/borg); else cmd=("$rborg" borg); fi
  export HOME="$work/home-$tool"
  mkdir -p "$HOME"
  "${cmd[@]}" init -e repokey-blake2 "$work/repo-$tool" 2>/dev/null
  (cd "$work/one" && run "$tool-baseline" "${cmd[@]}" create -C lz4 "$work/repo-$tool::one" data) >>"$work/results.txt"
  warm
  (cd "$work/src" && run "$tool-first" "${cmd[@]}" create -C lz4 "$work/repo-$tool::first" data) >>"$work/results.txt"
  warm
  (cd "$work/src" && run "$tool-unchanged" "${cmd[@]}" create -C lz4 "$work/repo-$tool::unchanged" data) >>"$work/results.txt"
done
echo "$n files; $("$rborg" --version) ($rborg) against $(/usr/bin/borg --version); $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| run | borg wall / cpu / peak RSS | rborg wall / cpu / peak RSS | rborg/borg wall | RSS per file beyond the baseline, borg / rborg |"
echo "|---|---|---|---|---|"
awk -v n="$n" '
  { split($1, p, "-"); wall[p[1], p[2]] = $2; cpu[p[1], p[2]] = $3; rss[p[1], p[2]] = $4 }
  END {
    for (i = 1; i <= 3; i++) {
      r = (i == 1 ? "baseline" : i == 2 ? "first" : "unchanged")
      line = sprintf("| %s | %.2f s / %.2f s / %.0f MiB | %.2f s / %.2f s / %.0f MiB | %.2f |", r,
        wall["borg", r], cpu["borg", r], rss["borg", r] / 1024,
        wall["rborg", r], cpu["rborg", r], rss["rborg", r] / 1024, wall["rborg", r] / wall["borg", r])
      if (r == "baseline") line = line " |"
      else line = line sprintf(" %.0f B / %.0f B |", (rss["borg", r] - rss["borg", "baseline"]) * 1024 / n,
        (rss["rborg", r] - rss["rborg", "baseline"]) * 1024 / n)
      print line
    }
  }' "$work/results.txt"
