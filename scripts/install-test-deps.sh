#!/usr/bin/env bash
# Install what the end-to-end tests (tests/e2e) need, if it is missing.
#
#   - Debian's kcat (librdkafka 2.0.2), prometheus (for promtool), postgresql
#     (initdb, postgres, psql under /usr/lib/postgresql/<ver>/bin, for the
#     PostgreSQL catalog tests: tests/e2e/pg_server.py) and chromium (the
#     console's browser tests: tests/e2e/test_console.py) via apt-get
#   - Python packages via pip: pytest, confluent-kafka, kafka-python, pyflakes,
#     prometheus-client, PyYAML, moto[server] (the S3-compatible test server), boto3
#
# Fast when everything is already present (no apt-get update, no pip run).
# Fails loudly if any install fails.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

# Pinned Python packages: "dist-name==version|import-name".
PY_PKGS=(
  "pytest==9.2.0|pytest"
  "confluent-kafka==2.16.1|confluent_kafka"
  "kafka-python==3.0.12|kafka"
  "pyflakes==4.1.0|pyflakes"
  "prometheus-client==0.26.0|prometheus_client"
  "PyYAML==6.0.3|yaml"
  "moto[server]==5.2.1|moto.server"
  "boto3==1.43.11|boto3"
  # confluent-kafka's schema_registry extra, by name (the extra pins a certifi
  # the registry mirror lacks).
  "httpx==0.28.1|httpx"
  "authlib==1.9.9|authlib"
  "cachetools==8.0.1|cachetools"
  "attrs==26.1.0|attrs"
  "fastavro==1.13.1|fastavro"
  "jsonschema==4.26.0|jsonschema"
  "protobuf==7.36.2|google.protobuf"
  "googleapis-common-protos==1.76.0|google.type"
  # OTLP ingest tests: the OpenTelemetry SDK with its HTTP and gRPC exporters.
  "opentelemetry-sdk==1.45.2|opentelemetry.sdk"
  "opentelemetry-proto==1.45.2|opentelemetry.proto"
  "opentelemetry-exporter-otlp-proto-http==1.45.2|opentelemetry.exporter.otlp.proto.http"
  "opentelemetry-exporter-otlp-proto-grpc==1.45.2|opentelemetry.exporter.otlp.proto.grpc"
  "grpcio==1.85.4|grpc"
  # The console's browser tests drive Debian's /usr/bin/chromium with
  # Playwright (its wheel carries its driver; it never downloads a browser).
  "playwright==1.65.3|playwright.sync_api"
)

log() { echo "[install-test-deps] $*"; }
die() { echo "[install-test-deps] ERROR: $*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------
apt_missing=()
if ! command -v kcat >/dev/null 2>&1; then
  apt_missing+=(kcat)
fi
# openssl makes the security tests' CA and certificates (tests/e2e/tls_certs.py).
if ! command -v openssl >/dev/null 2>&1; then
  apt_missing+=(openssl)
fi
# The build: librdkafka (in `sluice loadgen` / `sluice scorecard`) links
# OpenSSL for SSL and SCRAM, found through pkg-config.
if ! pkg-config --exists openssl 2>/dev/null; then
  apt_missing+=(libssl-dev pkg-config)
fi
# promtool (checks deploy/prometheus/alerts.yml) comes with Debian's prometheus.
if ! command -v promtool >/dev/null 2>&1; then
  apt_missing+=(prometheus)
fi

# PostgreSQL server + client (tests/e2e/pg_server.py). Debian keeps initdb,
# pg_ctl and postgres in /usr/lib/postgresql/<ver>/bin, not on PATH.
pg_bindir() {
  # The newest version with all three programs; sort -V puts 9.6 before 16.
  local d best=""
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ]; then
      best="$d"
    fi
  done
  printf '%s' "$best"
}
if [ -z "$(pg_bindir)" ]; then
  apt_missing+=(postgresql)
fi
# Headless Chromium for tests/e2e/test_console.py.
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  apt_missing+=(chromium)
fi

if ((${#apt_missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${apt_missing[*]}"
    SUDO="sudo"
  fi
  log "apt-get update (needed for: ${apt_missing[*]})"
  $SUDO apt-get update -qq || die "apt-get update failed"
  log "apt-get install ${apt_missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" \
    || die "apt-get install ${apt_missing[*]} failed"
else
  log "kcat, promtool, postgresql and chromium already installed"
fi
command -v kcat >/dev/null 2>&1 || die "kcat still not on PATH after install"
log "kcat version: $(kcat -V 2>&1 | grep -m1 -o 'Version.*' || true)"
PG_BINDIR="$(pg_bindir)"
[ -n "$PG_BINDIR" ] || die "initdb/postgres/psql still not found under /usr/lib/postgresql/*/bin after install"
log "postgresql: $("$PG_BINDIR/postgres" --version) in $PG_BINDIR"
[ -x "$CHROMIUM" ] || die "$CHROMIUM still missing after installing Debian's chromium"
log "chromium: $("$CHROMIUM" --version 2>/dev/null || echo '?')"

# --- Python packages -------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"

pip_needed=()
for entry in "${PY_PKGS[@]}"; do
  spec="${entry%%|*}"
  dist="${spec%%==*}"
  dist="${dist%%\[*}"
  want="${spec##*==}"
  have="$("$PYTHON" - "$dist" <<'EOF' 2>/dev/null || true
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
)"
  if [ "$have" = "$want" ]; then
    log "python: $dist $have already installed"
  else
    log "python: $dist ${have:-<missing>} -> $want"
    pip_needed+=("$spec")
  fi
done

if ((${#pip_needed[@]})); then
  log "pip install ${pip_needed[*]}"
  "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore -q "${pip_needed[@]}" \
    || die "pip install ${pip_needed[*]} failed"
else
  log "all Python packages already at the pinned versions"
fi

# Verify the imports really work (a broken wheel must fail here, not in tests).
for entry in "${PY_PKGS[@]}"; do
  mod="${entry##*|}"
  "$PYTHON" -c "import $mod" || die "python cannot import $mod after install"
done
"$PYTHON" -c 'import confluent_kafka, kafka; print("[install-test-deps] confluent-kafka", confluent_kafka.version()[0] if isinstance(confluent_kafka.version(), tuple) else confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0], "| kafka-python", kafka.__version__)'
log "done"
