#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, API and black-box test of the
# workspace (the black-box tests start real node processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# node/tests/auth.rs starts a local OpenID provider (npm oidc-provider, tests/idp) with node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
else
  echo "node/npm not found: the OpenID provider tests in node/tests/auth.rs will be skipped" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash deploy/check.sh
