#!/usr/bin/env bash
# Installs everything shopflow needs on a fresh machine of this kind (Debian, Python 3.11, Java 17):
# the PostgreSQL JDBC driver from Debian, then a virtualenv with the pinned Python dependencies.
set -euo pipefail
venv="${1:-.venv}"

# Debian packages: the PostgreSQL JDBC driver (Spark reads the shop DB with it) and Chromium
# (the dashboard test renders the real page in it).
missing=()
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v java >/dev/null || { echo "setup: Java 17 is required for Spark (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
fi

# The BigQuery emulator (tests only) pins protobuf<7, which clashes with the pipeline's own
# google-cloud clients, so it lives in a virtualenv of its own and talks to the tests over HTTP.
# It installs in the background: setup's time is downloads (pyspark alone is ~450 MB), and two
# downloads at once take little longer than one here.
bq_venv="$venv/bqemulator"
bq_pid=""
if [ ! -x "$bq_venv/bin/python" ] || ! "$bq_venv/bin/python" -c "import bqemulator" 2>/dev/null; then
  (
    python3.11 -m venv "$bq_venv" 2>/dev/null || python3 -m venv "$bq_venv"
    "$bq_venv/bin/python" -m pip install -q --upgrade pip
    "$bq_venv/bin/python" -m pip install -q -r scripts/bqemulator-requirements.txt
  ) &
  bq_pid=$!
fi

"$venv/bin/python" -m pip install -q --upgrade pip
# Every extra: the tests exercise all of them (the local services, Spark, both buses, GCP clients,
# the dashboard and Airflow).
"$venv/bin/python" -m pip install -q -c constraints.txt -e '.[local,dashboard,airflow,dev]'
if [ -n "$bq_pid" ] && ! wait "$bq_pid"; then
  echo "setup: installing the BigQuery emulator into $bq_venv failed" >&2
  exit 1
fi
echo "setup: ready in $venv"
