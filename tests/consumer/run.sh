#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/consumer/run.sh BUILD_DIR
#
# The packaging test (ctest: install_consumer). Installs the shmbus build in
# BUILD_DIR into a temporary prefix, checks what was installed (files,
# SONAME, exported symbols), then builds the consumer project in this
# directory against it with find_package(shmbus) via CMAKE_PREFIX_PATH, and
# consumer.c with `cc $(pkg-config --cflags --libs shmbus)` via
# PKG_CONFIG_PATH (plus a static link from `pkg-config --static`), and the
# C++ API's consumer_hpp.cpp both ways too (by pkg-config also with
# -fno-exceptions), runs every program and checks that none left a
# shared-memory object behind.
#
# Environment (ctest sets these): SHMBUS_CMAKE (cmake binary), SHMBUS_CONFIG
# (build configuration), CC, CXX, SHMBUS_CONSUMER_FLAGS (extra compile and
# link flags, e.g. sanitizers), SHMBUS_CONSUMER_NO_CXX=1 (skip C++),
# SHMBUS_API_SYMBOLS (file listing the public functions),
# SHMBUS_CONSUMER_KEEP=1 (keep the temporary directory).
# Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build_dir=$(cd "$1" && pwd)

cmake_bin=${SHMBUS_CMAKE:-cmake}
config=${SHMBUS_CONFIG:-}
cc=${CC:-cc}
flags=${SHMBUS_CONSUMER_FLAGS:-}
api_symbols=${SHMBUS_API_SYMBOLS:-$build_dir/tests/shmbus_api_symbols.txt}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbus-consumer.XXXXXX")
cleanup() {
  if [[ ${SHMBUS_CONSUMER_KEEP:-0} == 1 ]]; then
    echo "run.sh: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

fail() { echo "run.sh: FAILED: $*" >&2; exit 1; }
step() { echo "run.sh: --- $*"; }

prefix=$tmp/prefix

# --------------------------------------------------------------------------
step "install $build_dir into $prefix"
config_args=()
[[ -n $config ]] && config_args=(--config "$config")
"$cmake_bin" --install "$build_dir" --prefix "$prefix" "${config_args[@]}" >"$tmp/install.log" \
  || { cat "$tmp/install.log"; fail "cmake --install"; }

pc_file=$(find "$prefix" -name shmbus.pc -print -quit)
[[ -n $pc_file ]] || fail "no shmbus.pc installed"
libdir=$(dirname "$(dirname "$pc_file")")

for f in "$prefix/include/shmbus.h" "$prefix/include/shmbus.hpp" "$prefix/include/shmbus/version.h" \
         "$libdir/libshmbus.a" "$libdir/libshmbus.so" "$libdir/libshmbus.so.0" \
         "$libdir/cmake/shmbus/shmbusConfig.cmake" \
         "$libdir/cmake/shmbus/shmbusConfigVersion.cmake" \
         "$libdir/cmake/shmbus/shmbusTargets.cmake"; do
  [[ -e $f ]] || fail "not installed: ${f#"$prefix"/}"
done
shlib=$(readlink -f "$libdir/libshmbus.so")
echo "run.sh: libdir ${libdir#"$prefix"/}, shared library $(basename "$shlib")"

if command -v readelf >/dev/null 2>&1; then
  soname=$(readelf -d "$shlib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  [[ $soname == libshmbus.so.0 ]] || fail "SONAME is '$soname', expected libshmbus.so.0"
fi

# Exactly the functions the header declares are exported; nothing internal.
if command -v nm >/dev/null 2>&1 && [[ -r $api_symbols ]]; then
  nm -D --defined-only "$shlib" | awk '$2 ~ /^[TtDdBbRrVvWwi]$/ { print $3 }' \
    | sed 's/@.*//' | grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' \
    | grep -Ev '^__(asan|ubsan|tsan|lsan|sanitizer)' | sort -u >"$tmp/exported.txt"
  sort -u "$api_symbols" | grep . >"$tmp/declared.txt"
  if ! diff -u "$tmp/declared.txt" "$tmp/exported.txt" >"$tmp/symbols.diff"; then
    echo "run.sh: exported symbols differ from the header's declarations" >&2
    echo "        (- declared but not exported, + exported but not declared):" >&2
    sed -n '3,$p' "$tmp/symbols.diff" | grep '^[-+]' >&2 || true
    fail "exported symbols"
  fi
  echo "run.sh: exports exactly the $(wc -l <"$tmp/declared.txt") declared functions"
fi

# Runs a consumer program and checks that its domain left nothing in /dev/shm.
run_program() {
  local name=$1 prog=$2 pid rc=0
  step "run $name"
  "$prog" &
  pid=$!
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || fail "$name exited with $rc"
  if [[ -d /dev/shm ]]; then
    local left
    left=$(find /dev/shm -maxdepth 1 -name "*shmbus*" \( -name "*consumer-c*-$pid" -o -name "*consumer-c*-${pid}[!0-9]*" \) 2>/dev/null || true)
    if [[ -n $left ]]; then
      # shellcheck disable=SC2086
      rm -f $left
      fail "$name left shared memory behind (now removed): $left"
    fi
  fi
}

# --------------------------------------------------------------------------
step "find_package(shmbus) via CMAKE_PREFIX_PATH"
with_cxx=ON
[[ ${SHMBUS_CONSUMER_NO_CXX:-0} == 1 ]] && with_cxx=OFF
cmake_args=(-S "$here" -B "$tmp/build"
  -DCMAKE_PREFIX_PATH="$prefix"
  -DCMAKE_BUILD_TYPE="${config:-RelWithDebInfo}"
  -DCMAKE_C_COMPILER="$cc"
  -DCONSUMER_CXX="$with_cxx"
  -DCMAKE_C_FLAGS="$flags"
  -DCMAKE_EXE_LINKER_FLAGS="$flags")
if [[ $with_cxx == ON ]]; then
  cmake_args+=(-DCMAKE_CXX_FLAGS="$flags")
  [[ -n ${CXX:-} ]] && cmake_args+=(-DCMAKE_CXX_COMPILER="$CXX")
fi
"$cmake_bin" "${cmake_args[@]}" >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "configuring the consumer project"; }
grep -q "found shmbus .* in $prefix/" "$tmp/configure.log" \
  || { cat "$tmp/configure.log"; fail "the consumer did not find shmbus in $prefix"; }
"$cmake_bin" --build "$tmp/build" "${config_args[@]}" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log"; fail "building the consumer project"; }

find_exe() { find "$tmp/build" -type f -name "$1" -perm -u+x -print -quit; }
run_program consumer_c "$(find_exe consumer_c)"
run_program consumer_c_static "$(find_exe consumer_c_static)"
if [[ $with_cxx == ON ]]; then
  run_program consumer_cpp "$(find_exe consumer_cpp)"
  run_program consumer_hpp "$(find_exe consumer_hpp)"
  run_program consumer_hpp_static "$(find_exe consumer_hpp_static)"
fi

# A C++ program (<shmbus.hpp>) and a C program exchange XLANG_SAMPLES
# (default 10^6) typed samples between two processes, both ways: every
# sequence number and field checked, none lost (BLOCK), the subscriber
# asleep in its wait between bursts; nothing left in /dev/shm.
run_pair() {
  local name=$1 pub=$2 sub=$3 n=${XLANG_SAMPLES:-1000000} domain sub_pid rc=0 t0=$SECONDS
  domain="consumer-x$$-$name"
  step "run $name: $(basename "$pub") publishes $n, $(basename "$sub") subscribes"
  "$sub" sub "$domain" "$n" &
  sub_pid=$!
  "$pub" pub "$domain" "$n" || rc=$?
  if ((rc != 0)); then
    kill "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true
    fail "$name: the publisher exited with $rc"
  fi
  wait "$sub_pid" || rc=$?
  ((rc == 0)) || fail "$name: the subscriber exited with $rc"
  echo "run.sh: $name: $n samples in $((SECONDS - t0)) s"
  if [[ -d /dev/shm ]]; then
    local left
    left=$(find /dev/shm -maxdepth 1 -name "shmbus.$domain.*" 2>/dev/null || true)
    if [[ -n $left ]]; then
      # shellcheck disable=SC2086
      rm -f $left
      fail "$name left shared memory behind (now removed): $left"
    fi
  fi
}
if [[ $with_cxx == ON ]]; then
  run_pair cpp-to-c "$(find_exe xlang_cpp)" "$(find_exe xlang_c)"
  run_pair c-to-cpp "$(find_exe xlang_c)" "$(find_exe xlang_cpp)"
  # Another ABI's build of the same two programs (scripts/test.sh: the
  # 32-bit suite exports its own, the 64-bit suite runs them against its
  # own): every pair across, both directions.
  if [[ -n ${SHMBUS_CONSUMER_EXPORT:-} ]]; then
    mkdir -p "$SHMBUS_CONSUMER_EXPORT"
    cp "$(find_exe xlang_c)" "$(find_exe xlang_cpp)" "$SHMBUS_CONSUMER_EXPORT/"
    echo "run.sh: exported xlang_c and xlang_cpp to $SHMBUS_CONSUMER_EXPORT"
  fi
  if [[ -n ${SHMBUS_CONSUMER_PEER_DIR:-} ]]; then
    peer=$SHMBUS_CONSUMER_PEER_DIR
    [[ -x $peer/xlang_c && -x $peer/xlang_cpp ]] \
      || fail "SHMBUS_CONSUMER_PEER_DIR=$peer has no xlang_c and xlang_cpp"
    command -v file >/dev/null 2>&1 && echo "run.sh: peer: $(file -b "$peer/xlang_c" | cut -d, -f1-2)"
    run_pair peer-cpp-to-c "$peer/xlang_cpp" "$(find_exe xlang_c)"
    run_pair c-to-peer-cpp "$(find_exe xlang_c)" "$peer/xlang_cpp"
    run_pair cpp-to-peer-c "$(find_exe xlang_cpp)" "$peer/xlang_c"
    run_pair peer-c-to-cpp "$peer/xlang_c" "$(find_exe xlang_cpp)"
  fi
fi

# --------------------------------------------------------------------------
step "pkg-config via PKG_CONFIG_PATH"
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "run.sh: pkg-config not found: skipping the pkg-config part"
else
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  version=$(pkg-config --modversion shmbus) || fail "pkg-config does not find shmbus.pc"
  pc_includedir=$(pkg-config --variable=includedir shmbus)
  pc_libdir=$(pkg-config --variable=libdir shmbus)
  [[ -f $pc_includedir/shmbus.h ]] || fail "shmbus.pc: includedir $pc_includedir has no shmbus.h"
  [[ $(readlink -f "$pc_libdir") == $(readlink -f "$libdir") ]] \
    || fail "shmbus.pc: libdir $pc_libdir is not $libdir"
  echo "run.sh: pkg-config: shmbus $version, $(pkg-config --cflags --libs shmbus)"

  # shellcheck disable=SC2046,SC2086
  "$cc" $flags "$here/consumer.c" -o "$tmp/consumer_pc" \
    $(pkg-config --cflags --libs shmbus) -Wl,-rpath,"$pc_libdir" \
    || fail "cc \$(pkg-config --cflags --libs shmbus)"
  run_program consumer_pc "$tmp/consumer_pc"

  # The static library with Libs.private (GNU ld: -l:libshmbus.a).
  if [[ $(uname -s) == Linux ]]; then
    static_libs=$(pkg-config --static --libs shmbus | sed 's/-lshmbus\b/-l:libshmbus.a/')
    # shellcheck disable=SC2046,SC2086
    "$cc" $flags "$here/consumer.c" -o "$tmp/consumer_pc_static" \
      $(pkg-config --cflags shmbus) $static_libs \
      || fail "cc with \$(pkg-config --static --libs shmbus)"
    if command -v readelf >/dev/null 2>&1 \
       && readelf -d "$tmp/consumer_pc_static" | grep -q 'NEEDED.*libshmbus'; then
      fail "consumer_pc_static links libshmbus.so, expected the static library"
    fi
    run_program consumer_pc_static "$tmp/consumer_pc_static"
  fi

  # The C++ API through pkg-config: with exceptions, and without (only the
  # try_ forms), strict warnings.
  if [[ $with_cxx == ON ]]; then
    cxx=${CXX:-c++}
    for variant in exceptions no-exceptions; do
      extra=()
      [[ $variant == no-exceptions ]] && extra=(-fno-exceptions)
      # shellcheck disable=SC2046,SC2086
      "$cxx" -std=c++17 -Wall -Wextra -Werror -pedantic "${extra[@]}" $flags \
        "$here/consumer_hpp.cpp" -o "$tmp/consumer_hpp_pc_$variant" \
        $(pkg-config --cflags --libs shmbus) -Wl,-rpath,"$pc_libdir" \
        || fail "c++ ${extra[*]} consumer_hpp.cpp \$(pkg-config --cflags --libs shmbus)"
      run_program "consumer_hpp_pc ($variant)" "$tmp/consumer_hpp_pc_$variant"
    done
  fi
fi

echo "run.sh: ok"
