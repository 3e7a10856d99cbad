# Shared set-up for scripts/demo.sh and scripts/test.sh: installs the Debian packages the build
# needs (libclang-dev for bindgen, librocksdb-dev for the embedded store; see
# scripts/setup-lib.sh for how each is detected), then points cargo at them and at a target dir
# outside the clone, so that later clones reuse the compiled dependencies. Source it; it changes
# nothing when everything is there already, and stops the calling script with one message
# naming the packages when they are missing and cannot be installed (no root, no sudo).

. "$(dirname "${BASH_SOURCE[0]}")/setup-lib.sh"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# shellcheck disable=SC2207
need=($(missing_packages "$multiarch"))
install_packages "${need[@]}" || exit 1
need=($(missing_packages "$multiarch"))
if [ ${#need[@]} -gt 0 ]; then
  echo "allmende set-up: ${need[*]} still not found after installing; see scripts/setup-lib.sh" >&2
  exit 1
fi

export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/$multiarch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/allmende-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
