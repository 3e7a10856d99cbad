#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, API and black-box test of the
# workspace (the black-box tests start real node processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
