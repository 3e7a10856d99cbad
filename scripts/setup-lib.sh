# Detection and installation of the Debian packages the build needs, as functions so that
# scripts/test-setup.sh can run the detection against fake directory trees. Sourced by
# scripts/env.sh; defines functions only and changes nothing by itself.
#
# The build needs:
#   libclang-dev     bindgen (in librocksdb-sys' build script) loads libclang at build time
#   librocksdb-dev   the embedded store links Debian's RocksDB 7.8 (rocksdb crate =0.20.1)

# libclang_present ROOT MULTIARCH: succeeds when a library that bindgen (clang-sys) loads is under
# ROOT: a file named exactly libclang.so, libclang-<N>.so, libclang.so.<N> or libclang-<N>.so.<N>
# in an llvm lib dir or a multiarch lib dir. libclang-cpp.so.<N> (the C++ library, which
# Debian installs with other LLVM tools) is not libclang and does not count. LIBCLANG_PATH,
# when set, is searched first, as clang-sys does.
libclang_present() {
  local root=$1 multiarch=$2 dir f name
  local dirs=()
  [ -n "${LIBCLANG_PATH:-}" ] && [ "$root" = "/" ] && dirs+=("$LIBCLANG_PATH")
  for dir in "$root"/usr/lib/llvm-*/lib "$root"/usr/local/llvm*/lib "$root/usr/lib/$multiarch" \
    "$root/usr/lib" "$root/usr/lib64" "$root/usr/local/lib"; do
    dirs+=("$dir")
  done
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/libclang*; do
      [ -e "$f" ] || continue
      name=${f##*/}
      if [[ $name =~ ^libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?$ ]]; then
        return 0
      fi
    done
  done
  return 1
}

# clang_headers_present ROOT: succeeds when clang's own headers (stddef.h, stdarg.h: what the
# compiler provides, not the C library) are under ROOT, in the resource dir of an LLVM
# install. libclang parses the RocksDB C header with them; libclang1-<N> alone does not bring
# them (libclang-dev does, through libclang-common-<N>-dev).
clang_headers_present() {
  local root=$1 f
  for f in "$root"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$root"/usr/local/llvm*/lib/clang/*/include/stddef.h; do
    [ -e "$f" ] && return 0
  done
  return 1
}

# rocksdb_present ROOT MULTIARCH: succeeds when Debian's RocksDB development files are under ROOT:
# the link-time name librocksdb.so (the runtime library alone, librocksdb.so.<N>, cannot be
# linked with -lrocksdb) and the C API header the binding is built against.
rocksdb_present() {
  local root=$1 multiarch=$2
  [ -e "$root/usr/lib/$multiarch/librocksdb.so" ] && [ -e "$root/usr/include/rocksdb/c.h" ]
}

# missing_packages MULTIARCH: prints the Debian packages the build needs that are missing here.
missing_packages() {
  local multiarch=$1 need=()
  { libclang_present / "$multiarch" && clang_headers_present /; } || need+=(libclang-dev)
  rocksdb_present / "$multiarch" || need+=(librocksdb-dev)
  echo "${need[@]}"
}

# install_packages PACKAGE...: installs Debian packages with apt-get, as root or through sudo.
# Without either it fails with one message naming the packages (and builds nothing).
install_packages() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "allmende set-up: the build needs the Debian packages $*, which are not installed," >&2
      echo "and installing them needs root or sudo. Install them as root:" >&2
      echo "    apt-get install --no-install-recommends $*" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "allmende set-up: the build needs the Debian packages $* (or your system's equivalent);" >&2
    echo "apt-get was not found, so install them with your package manager." >&2
    return 1
  fi
  echo "allmende set-up: installing $* (needed to build the embedded RocksDB binding)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }; then
    echo "allmende set-up: installing $* failed (see apt-get's message above)" >&2
    return 1
  fi
}
