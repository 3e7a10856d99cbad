#!/usr/bin/env bash
# Tests of the set-up's package detection (scripts/setup-lib.sh) against fake directory trees,
# so that a check which takes the wrong file for libclang or RocksDB cannot come back silently.
# Run by scripts/test.sh; needs nothing installed.
set -euo pipefail
. "$(dirname "$0")/setup-lib.sh"
unset LIBCLANG_PATH
arch=x86_64-linux-gnu
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
failed=0
expect() { # expect present|missing WHAT FUNCTION TREE
  local want=$1 what=$2 fn=$3 tree=$4 got=missing
  "$fn" "$tree" "$arch" && got=present
  if [ "$got" = "$want" ]; then echo "ok: $what -> $got"; else echo "FAILED: $what -> $got, want $want"; failed=1; fi
}
tree() { # tree NAME FILE...: a fake root holding the given (empty) files
  local t="$root/$1"; shift
  mkdir -p "$t"
  for f in "$@"; do mkdir -p "$t/$(dirname "$f")"; : >"$t/$f"; done
  echo "$t"
}

expect missing "only libclang-cpp.so.14 (Debian's libclang-cpp14)" libclang_present \
  "$(tree cpp-only usr/lib/$arch/libclang-cpp.so.14 usr/lib/llvm-14/lib/libclang-cpp.so.14)"
expect present "libclang.so.1 in the llvm dir (libclang1-14)" libclang_present \
  "$(tree so-1 usr/lib/llvm-14/lib/libclang.so.1)"
expect present "libclang-14.so.1 in the multiarch dir" libclang_present \
  "$(tree multiarch usr/lib/$arch/libclang-14.so.1)"
expect present "libclang.so (libclang-dev)" libclang_present \
  "$(tree dev usr/lib/llvm-14/lib/libclang.so usr/lib/$arch/libclang-cpp.so.14)"
expect missing "an empty machine" libclang_present "$(tree empty)"
expect missing "libclang's static libraries only" libclang_present \
  "$(tree static usr/lib/llvm-14/lib/libclangBasic.a usr/lib/llvm-14/lib/libclang.a)"
expect missing "libclang without clang's headers" clang_headers_present \
  "$(tree no-headers usr/lib/llvm-14/lib/libclang.so.1)"
expect present "clang's headers (libclang-common-14-dev)" clang_headers_present \
  "$(tree headers usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h)"

expect missing "RocksDB's runtime library only (librocksdb7.8)" rocksdb_present \
  "$(tree rocks-runtime usr/lib/$arch/librocksdb.so.7.8)"
expect missing "librocksdb.so without headers" rocksdb_present \
  "$(tree rocks-noheader usr/lib/$arch/librocksdb.so)"
expect present "librocksdb-dev" rocksdb_present \
  "$(tree rocks-dev usr/lib/$arch/librocksdb.so usr/lib/$arch/librocksdb.so.7.8 usr/include/rocksdb/c.h)"

# Without root and without sudo, the set-up names the packages and fails; it does not go on.
nosudo="$root/nosudo-bin"
mkdir -p "$nosudo"
ln -s "$(command -v bash)" "$nosudo/bash"
# A fake `id` answering a user's uid: a new file in the fake bin dir, never written through a link.
printf '#!%s\necho 1000\n' "$(command -v bash)" >"$nosudo/id.new"
chmod +x "$nosudo/id.new"
mv "$nosudo/id.new" "$nosudo/id"
if msg=$(PATH="$nosudo" bash -c '. "$1"; install_packages libclang-dev librocksdb-dev' _ \
  "$(cd "$(dirname "$0")" && pwd)/setup-lib.sh" 2>&1); then
  echo "FAILED: install without root or sudo succeeded"; failed=1
elif [[ $msg == *"libclang-dev librocksdb-dev"*"root or sudo"* ]]; then
  echo "ok: without root or sudo -> one message naming the packages"
else
  echo "FAILED: without root or sudo the message was: $msg"; failed=1
fi
exit $failed
