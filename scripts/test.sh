#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, API and black-box test of the
# workspace (the black-box tests start real node processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
# The set-up's own package detection, against fake trees (needs nothing installed).
bash scripts/test-setup.sh
. scripts/env.sh
# node/tests/auth.rs starts a local OpenID provider (npm oidc-provider, tests/idp) with node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
else
  echo "node/npm not found: the OpenID provider tests in node/tests/auth.rs will be skipped" >&2
fi
# tests/dialect.rs checks every federated answer against DuckDB too, tests/dsp.rs every DSP message
# against the specification's schemas (PyPI, tests/requirements.txt),
# from a virtualenv outside the clone that later runs reuse.
venv="${ALLMENDE_VENV:-$HOME/.cache/allmende-venv}"
# Debian's python3 without python3-venv leaves a venv without pip behind, so pip is what is
# checked (and the venv made anew, --clear, once python3-venv is there).
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  python3 -m venv --clear "$venv" 2>/dev/null ||
    { install_packages python3 python3-venv && python3 -m venv --clear "$venv"; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
export ALLMENDE_PYTHON="$venv/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The CI-sized federation scenario: 5 node processes on 127.0.0.2-6 form a federation,
# publish and converge, answer federated queries (one member stopped: `timeout`); the full set
# of cases: scenarios/run-all.sh and scenarios/README.md.
cargo run -q --locked -p allmende-scenarios --bin federation -- --case smoke --nodes 5
bash deploy/check.sh
# One closing line over every test binary (cargo prints one `test result` line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
