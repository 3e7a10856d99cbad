#!/usr/bin/env bash
# The full set of federation cases with their documented sizes (scenarios/README.md), one after
# the other, each on its own; prints `uptime` before each (the load goes with every figure) and
# keeps every case's output in $RESULTS (default $TMPDIR/allmende-federation/all-<unix time>).
# Needs root or unprivileged user namespaces (partition, query and churn run under unshare -n)
# and nft (installed with apt-get if missing). About 10 minutes on 2 cores, after the build.
# scan needs a Python with duckdb (ALLMENDE_PYTHON, default the virtualenv scripts/test.sh makes).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/allmende-target}
cargo build --release --locked -p allmende -p allmende-scenarios || exit 1
bin=$CARGO_TARGET_DIR/release/federation
results=${RESULTS:-${TMPDIR:-/tmp}/allmende-federation/all-$(date +%s)}
mkdir -p "$results"
work=/dev/shm
[ -d "$work" ] || work=${TMPDIR:-/tmp}
failed=()
run() { # run NAME ARGS...
  local name=$1; shift
  printf '\n== %s: federation %s\n' "$name" "$*"
  uptime
  if "$bin" "$@" --work "$work" --results "$results/$name" 2>&1 | tee "$results/$name.txt"; then :; else
    failed+=("$name")
  fi
}
run smoke --case smoke --nodes 5
run propagation --case propagation --nodes 20 --updates 60
run partition --case partition --nodes 20 --repeats 3
run idle --case idle --nodes 20 --idle-secs 30
run query --case query --nodes 20
run churn --case churn --nodes 50 --churn-secs 60
run join --case join --nodes 50 --initial 3
run scan --case scan --nodes 3 --rows 10000000
printf '\n== transfer: 1 GB between two nodes vs HTTP\n'
uptime
"$CARGO_TARGET_DIR/release/transfer" --size-mb 1024 --runs 3 2>&1 | tee "$results/transfer.txt" || failed+=(transfer)
printf '\nresults in %s\n' "$results"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
