#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (kcat, Python Kafka clients), builds the broker, runs the Rust unit tests,
# then the end-to-end tests that drive a real `sluice serve` with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "==> cargo build (profile fast)"
cargo build --profile fast --workspace --locked

echo "==> cargo test (unit tests)"
cargo test --profile fast --workspace --locked

echo "==> end-to-end tests against target/fast/sluice"
export SLUICE_BIN="$PWD/target/fast/sluice"
python3 -m pytest tests/e2e -q -p no:cacheprovider "$@"
