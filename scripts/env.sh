# Shared set-up for scripts/demo.sh and scripts/test.sh: installs the two Debian packages the
# build needs (libclang for bindgen, librocksdb for the embedded store), then points cargo at
# them and at a target dir outside the clone, so that later clones reuse the compiled
# dependencies. Source it; it changes nothing when everything is there already.

need=()
[ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] || [ -e /usr/lib/aarch64-linux-gnu/librocksdb.so ] || need+=(librocksdb-dev)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang-*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (needed to build the embedded RocksDB binding)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/$multiarch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/allmende-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
