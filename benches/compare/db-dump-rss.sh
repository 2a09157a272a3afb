#!/usr/bin/env bash
# Peak memory of `rborg create` while a PostgreSQL dump larger than memory would comfortably buffer
# streams into the archive through a named pipe (issue 7; docs/databases.md, docs/performance.md).
#
#   benches/compare/db-dump-rss.sh [RBORG_BINARY] [SIZE_MIB]
#
# Starts a throwaway PostgreSQL 15 cluster in a temporary directory (as the postgres user, on a
# free port of 127.0.0.1), fills a table with SIZE_MIB (default 1024) rows of 1 MiB random bytea,
# runs `rborg -c CFG create` under /usr/bin/time -v with pg_dump --format custom --compress 0 (bytea
# is dumped as hex text, so the dump is about twice SIZE_MIB: 2.1 GB by default), and prints the
# dump size and rborg's maximum RSS. Needs root,
# postgresql-15 (with its contrib pgcrypto) and about 3 x SIZE of free disk. Cleans up after itself.
set -euo pipefail
RBORG=${1:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/rborg}
SIZE_MIB=${2:-1024}
PG_BIN=/usr/lib/postgresql/15/bin
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
[ -x "$RBORG" ] || { echo "no rborg binary at $RBORG" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/rborg-db-rss.XXXXXX)
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  if [ -n "${PG_PID:-}" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m fast >/dev/null 2>&1 || true
    wait "$PG_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

chown postgres: "$WORK"
runuser -u postgres -- "$PG_BIN/initdb" -A trust -U postgres -D "$WORK/data" >/dev/null
runuser -u postgres -- "$PG_BIN/postgres" -D "$WORK/data" -p "$PORT" -k "$WORK" \
  -c listen_addresses=127.0.0.1 -c fsync=off >/dev/null 2>&1 &
PG_PID=$!
for _ in $(seq 100); do psql -h "$WORK" -p "$PORT" -U postgres -Xqc 'select 1' postgres >/dev/null 2>&1 && break; sleep 0.2; done

echo "filling $SIZE_MIB MiB of random bytea..."
psql -h "$WORK" -p "$PORT" -U postgres -Xq postgres <<SQL
CREATE DATABASE big;
\c big
CREATE EXTENSION pgcrypto;
CREATE TABLE blobs (id int, data bytea);
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
SQL
# gen_random_bytes returns at most 1024 bytes: each 1 MiB row joins 1024 of them (the subquery
# refers to i so that every row gets new bytes)
for ((start = 1; start <= SIZE_MIB; start += 64)); do
  end=$((start + 63)); [ $end -gt "$SIZE_MIB" ] && end=$SIZE_MIB
  psql -h "$WORK" -p "$PORT" -U postgres -Xq big -c "INSERT INTO blobs SELECT i, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 1024) WHERE i > 0) FROM generate_series($start, $end) i"
done
psql -h "$WORK" -p "$PORT" -U postgres -XAt big -c "SELECT 'table size: ' || pg_size_pretty(sum(length(data))) FROM blobs"

mkdir -p "$WORK/src" "$WORK/home"
echo x > "$WORK/src/f"
cat > "$WORK/cfg.yaml" <<YAML
source_directories: [$WORK/src]
repositories:
  - path: $WORK/repo
encryption_passphrase: bench
compression: lz4
postgresql_databases:
  - name: big
    hostname: 127.0.0.1
    port: $PORT
    username: postgres
    options: "--compress=0"
YAML
export HOME=$WORK/home BORG_BASE_DIR=$WORK/home
"$RBORG" -c "$WORK/cfg.yaml" repo-create --encryption repokey >/dev/null 2>&1
echo "rborg create (streaming the dump)..."
/usr/bin/time -v "$RBORG" -c "$WORK/cfg.yaml" create --stats 2> "$WORK/time.txt" || { cat "$WORK/time.txt"; exit 1; }
grep -E "Original size|This archive" "$WORK/time.txt" | head -3 || true
"$RBORG" -c "$WORK/cfg.yaml" list --archive latest 2>/dev/null | grep postgresql_databases/127.0.0.1/big
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$WORK/time.txt"
