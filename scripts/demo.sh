#!/usr/bin/env bash
# `make demo`: start the bundled simulator on a free loopback port, run pipelines/mail.yaml
# against it into ./data (or $ETL_OUT), and query the result with DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."
ETL_BIN=${ETL_BIN:-target/release/etl}
PYTHON=${PYTHON:-.venv/bin/python}
export ETL_OUT=${ETL_OUT:-./data}

sim_out=$(mktemp)
"$ETL_BIN" sim --seed 1 >"$sim_out" &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; rm -f "$sim_out"' EXIT
for _ in $(seq 1 100); do
  grep -q 'listening on' "$sim_out" && break
  sleep 0.1
done
base=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$sim_out")
[ -n "$base" ] || { echo "the simulator did not start" >&2; exit 1; }
echo "simulator: $base" >&2

export MAIL_DELIVERY_URL="$base/mail-delivery/" MAIL_DELIVERY_TOKEN=sim-mail-token
status=0
"$ETL_BIN" run pipelines/mail.yaml || status=$?

if [ -x "$PYTHON" ] && "$PYTHON" -c 'import duckdb' 2>/dev/null; then
  echo >&2
  echo "DuckDB: SELECT dt, result, count(*) FROM read_parquet('$ETL_OUT/mail_delivery/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY ALL" >&2
  "$PYTHON" - "$ETL_OUT" <<'PY'
import sys, duckdb
out = sys.argv[1]
duckdb.sql(f"""SELECT dt, result, count(*) AS n
FROM read_parquet('{out}/mail_delivery/**/*.parquet', hive_partitioning = true)
GROUP BY ALL ORDER BY ALL""").show(max_rows=40)
PY
fi
exit "$status"
