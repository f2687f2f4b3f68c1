#!/usr/bin/env bash
# librdkafka's own integration test suite against a Sluice broker (issue 18,
# must-show 4). See scripts/librdkafka-suite.md.
#
#   bash scripts/librdkafka-suite.sh                  # the tests in scripts/librdkafka-suite.expected
#   bash scripts/librdkafka-suite.sh --all            # every non-local test (only expected ones can fail the run)
#   bash scripts/librdkafka-suite.sh --tests "0001 0012"    # scripts/test.sh runs a subset this way
#   bash scripts/librdkafka-suite.sh --list-excluded  # tests not run, and why
#   bash scripts/librdkafka-suite.sh --build-only
#
# 1. fetches the librdkafka sources bundled in the rdkafka-sys crate (pinned
#    below) with `cargo fetch` in a throwaway project under
#    target/librdkafka-suite/, copies them to target/librdkafka-suite/librdkafka
# 2. installs the Debian build dependencies when missing (apt-get), configures
#    and builds librdkafka and its tests/test-runner (make -j2, nice); skipped
#    when the test-runner is already built
# 3. starts `sluice serve` (target/fast/sluice or $SLUICE_BIN; never built here)
#    on free ports, a fresh data dir and --num-partitions 4
# 4. runs each test number in its own `test-runner -p1 -L` (broker tests
#    only, full mode) with TEST_KAFKA_VERSION (default 2.8.0), a per-test
#    `timeout` and an overall one; prints a table (test, result, seconds)
#
# Exit status: 0 when every expected test passed (skips count as failures for
# expected tests), 1 otherwise; 2 on setup errors.
#
# Environment:
#   SLUICE_BIN                   broker binary (default target/fast/sluice)
#   LRK_SUITE_DIR                work dir (default target/librdkafka-suite)
#   LRK_RDKAFKA_SYS_VERSION      rdkafka-sys version (default 4.10.0, librdkafka 2.12.1)
#   LRK_KAFKA_VERSION            broker version told to the runner (default 2.8.0)
#   LRK_TEST_TIMEOUT             seconds per test number (default 300)
#   LRK_TIMEOUT_MULTIPLIER       the runner's own test.timeout.multiplier (default 2)
#   LRK_OVERALL_TIMEOUT          seconds for the whole script (default 5400)
#   LRK_RUNNER_ARGS              test-runner flags (default "-p1 -L": sequential, broker tests only;
#                                -Q (quick) would skip most sub-tests, so it is not used)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OVERALL_TIMEOUT="${LRK_OVERALL_TIMEOUT:-5400}"

# Bound the whole run: re-exec under timeout(1). SIGTERM reaches this bash,
# whose trap kills the broker (waits below are interruptible `wait`s).
if [ -z "${_LRK_SUITE_INNER:-}" ]; then
  export _LRK_SUITE_INNER=1
  exec timeout -k 30 "$OVERALL_TIMEOUT" bash "${BASH_SOURCE[0]}" "$@"
fi

EXPECTED_FILE="$ROOT/scripts/librdkafka-suite.expected"
EXCLUDED_FILE="$ROOT/scripts/librdkafka-suite.excluded"
SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/fast/sluice}"
WORK="${LRK_SUITE_DIR:-$ROOT/target/librdkafka-suite}"
RDKAFKA_SYS_VERSION="${LRK_RDKAFKA_SYS_VERSION:-4.10.0}"
KAFKA_VERSION="${LRK_KAFKA_VERSION:-2.8.0}"
TEST_TIMEOUT="${LRK_TEST_TIMEOUT:-300}"
TIMEOUT_MULTIPLIER="${LRK_TIMEOUT_MULTIPLIER:-2}"
RUNNER_ARGS="${LRK_RUNNER_ARGS:--p1 -L}"
SRC="$WORK/librdkafka"
TESTDIR="$SRC/tests"

log() { echo "[librdkafka-suite] $*" >&2; }
die() { echo "[librdkafka-suite] ERROR: $*" >&2; exit 2; }

mode=expected
build_only=0
explicit_tests=""
while (($#)); do
  case "$1" in
    --all) mode=all ;;
    --tests) shift; explicit_tests="${1:-}"; mode=explicit ;;
    --list-excluded) cat "$EXCLUDED_FILE"; exit 0 ;;
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

# Test numbers from a list file: first word of each non-comment line.
list_numbers() { grep -v '^\s*#' "$1" | awk 'NF { print $1 }'; }

# --- cleanup -------------------------------------------------------------
BROKER_PID=""
CHILD_PID=""
cleanup() {
  local rc=$?
  if [ -n "$CHILD_PID" ] && kill -0 "$CHILD_PID" 2>/dev/null; then
    kill -TERM "$CHILD_PID" 2>/dev/null || true
  fi
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted (signal or overall timeout ${OVERALL_TIMEOUT}s)"; exit 124' TERM INT HUP

# run_in DIR CMD...: run CMD in DIR in the background and wait for it (an
# interruptible wait, so a TERM from the overall timeout runs the traps at once).
run_in() {
  local dir="$1"; shift
  (cd "$dir" && exec "$@") &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# --- 1. sources ----------------------------------------------------------
fetch_sources() {
  if [ -f "$SRC/.sluice-suite-src" ] && [ "$(cat "$SRC/.sluice-suite-src")" = "$RDKAFKA_SYS_VERSION" ]; then
    return
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found"
  local proj="$WORK/fetch"
  mkdir -p "$proj/src"
  cat > "$proj/Cargo.toml" <<EOF
[package]
name = "librdkafka-suite-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = "=$RDKAFKA_SYS_VERSION"

[workspace]
EOF
  echo 'fn main() {}' > "$proj/src/main.rs"
  log "cargo fetch rdkafka-sys $RDKAFKA_SYS_VERSION"
  run_in "$proj" timeout 600 cargo fetch --quiet || die "cargo fetch failed"
  local cargo_home="${CARGO_HOME:-$HOME/.cargo}" found=""
  for d in "$cargo_home"/registry/src/*/rdkafka-sys-"$RDKAFKA_SYS_VERSION"*/librdkafka; do
    [ -f "$d/configure" ] && found="$d"
  done
  [ -n "$found" ] || die "rdkafka-sys-$RDKAFKA_SYS_VERSION/librdkafka not found under $cargo_home/registry/src"
  log "copying $found -> $SRC"
  rm -rf "$SRC"
  cp -a "$found" "$SRC"
  echo "$RDKAFKA_SYS_VERSION" > "$SRC/.sluice-suite-src"
}

# --- 2. build dependencies and build -------------------------------------
install_build_deps() {
  local pkgs=(build-essential pkg-config python3 libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing[*]}"
    SUDO="sudo"
  fi
  log "apt-get install ${missing[*]}"
  run_in / timeout 300 $SUDO apt-get update -qq || die "apt-get update failed"
  run_in / timeout 600 $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
}

build() {
  if [ -x "$TESTDIR/test-runner" ] && [ -f "$SRC/.sluice-suite-built" ]; then
    log "test-runner already built ($TESTDIR/test-runner)"
    return
  fi
  install_build_deps
  local t0=$SECONDS
  log "building librdkafka and its test-runner (make -j2, nice; logs in $WORK/build-*.log)"
  run_in "$SRC" timeout 600 nice ./configure --enable-ssl --enable-gssapi --enable-zstd \
      --enable-lz4-ext --disable-curl > "$WORK/build-configure.log" 2>&1 \
    || { tail -20 "$WORK/build-configure.log" >&2; die "configure failed"; }
  run_in "$SRC" timeout 2400 nice make -j2 libs > "$WORK/build-libs.log" 2>&1 \
    || { tail -20 "$WORK/build-libs.log" >&2; die "make libs failed"; }
  run_in "$TESTDIR" timeout 2400 nice make -j2 test-runner > "$WORK/build-tests.log" 2>&1 \
    || { tail -20 "$WORK/build-tests.log" >&2; die "make test-runner failed"; }
  touch "$SRC/.sluice-suite-built"
  log "build took $((SECONDS - t0)) s"
}

mkdir -p "$WORK"
fetch_sources
build
((build_only)) && exit 0

# --- which tests ---------------------------------------------------------
case "$mode" in
  expected) tests=$(list_numbers "$EXPECTED_FILE") ;;
  explicit) tests=$(echo "$explicit_tests" | tr ', ' '\n\n' | awk 'NF') ;;
  all)
    # Every test number the runner knows (local-only ones skip themselves
    # under -L), without the unit tests (0000) and the manual ones (8nnn).
    tests=$(grep -oE '^ *_TEST\([0-9]{4}_' "$TESTDIR/test.c" | grep -oE '[0-9]{4}' \
              | sort -u | grep -vE '^(0000|8[0-9]{3})$')
    ;;
esac
expected_set=" $(list_numbers "$EXPECTED_FILE" | tr '\n' ' ') "
[ -n "$tests" ] || die "no tests selected"

# --- 3. broker -----------------------------------------------------------
[ -x "$SLUICE_BIN" ] || die "$SLUICE_BIN missing: build it with cargo build --profile fast -p sluice"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
HPORT=$(free_port)
RUN_DIR="$WORK/run-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUN_DIR/logs"
log "starting $SLUICE_BIN on 127.0.0.1:$PORT (http $HPORT), data in $RUN_DIR/data"
"$SLUICE_BIN" serve --data-dir "$RUN_DIR/data" --listen "127.0.0.1:$PORT" --otlp-http-listen off --otlp-grpc-listen off \
  --http-listen "127.0.0.1:$HPORT" --num-partitions 4 > "$RUN_DIR/broker.log" 2>&1 &
BROKER_PID=$!
ready=0
for _ in $(seq 1 150); do
  kill -0 "$BROKER_PID" 2>/dev/null || { tail -20 "$RUN_DIR/broker.log" >&2; die "broker exited at start-up"; }
  if curl -fsS -m 1 "http://127.0.0.1:$HPORT/healthz" >/dev/null 2>&1 \
     && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
((ready)) || { tail -20 "$RUN_DIR/broker.log" >&2; die "broker not ready within 30 s"; }

cat > "$RUN_DIR/test.conf" <<EOF
bootstrap.servers=127.0.0.1:$PORT
test.timeout.multiplier=$TIMEOUT_MULTIPLIER
EOF

# --- 4. tests ------------------------------------------------------------
export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RDKAFKA_TEST_CONF="$RUN_DIR/test.conf"
export TEST_KAFKA_VERSION="$KAFKA_VERSION"
export RDKAFKA_GITVER="rdkafka-sys-$RDKAFKA_SYS_VERSION"
unset TESTS_SKIP TESTS_SKIP_BEFORE SUBTESTS 2>/dev/null || true

declare -a rows=()
failed_expected=()
n_pass=0; n_fail=0; n_skip=0
t_all=$SECONDS
for t in $tests; do
  remaining=$((OVERALL_TIMEOUT - SECONDS - 30))
  ((remaining > 10)) || { log "overall timeout near: not running $t and later"; rows+=("$t NOT-RUN 0")
    [[ "$expected_set" != *" $t "* ]] || failed_expected+=("$t"); continue; }
  tmo=$TEST_TIMEOUT; ((tmo < remaining)) || tmo=$remaining
  tlog="$RUN_DIR/logs/$t.log"
  t0=$SECONDS
  rc=0
  # shellcheck disable=SC2086
  run_in "$TESTDIR" env TESTS="$t" timeout -k 10 "$tmo" ./test-runner $RUNNER_ARGS > "$tlog" 2>&1 || rc=$?
  dt=$((SECONDS - t0))
  if ((rc == 124 || rc == 137)); then
    res=TIMEOUT
  elif ((rc != 0)); then
    res=FAIL
  elif sed 's/\x1b\[[0-9;]*m//g' "$tlog" | grep -E '^\| +[0-9]{4}_[^ ]+ +\| +PASSED' >/dev/null; then
    res=PASS
  else
    res=SKIP
  fi
  case "$res" in PASS) n_pass=$((n_pass+1));; SKIP) n_skip=$((n_skip+1));; *) n_fail=$((n_fail+1));; esac
  if [[ "$expected_set" == *" $t "* ]] && [ "$res" != PASS ]; then
    failed_expected+=("$t")
  fi
  rows+=("$t $res $dt")
  log "$t $res ${dt}s (log: $tlog)"
done

echo
printf '%-6s %-8s %8s  %s\n' test result seconds expected
printf '%-6s %-8s %8s  %s\n' ------ -------- -------- --------
for r in "${rows[@]}"; do
  read -r t res dt <<<"$r"
  exp=no; [[ "$expected_set" == *" $t "* ]] && exp=yes
  printf '%-6s %-8s %8s  %s\n' "$t" "$res" "$dt" "$exp"
done
echo
echo "passed $n_pass, failed $n_fail, skipped $n_skip of $(echo "$tests" | wc -w) in $((SECONDS - t_all)) s" \
     "(librdkafka from rdkafka-sys $RDKAFKA_SYS_VERSION, TEST_KAFKA_VERSION=$KAFKA_VERSION); logs in $RUN_DIR"
if ((${#failed_expected[@]})); then
  echo "EXPECTED TESTS NOT PASSING: ${failed_expected[*]}"
  exit 1
fi
echo "all expected tests passed"
