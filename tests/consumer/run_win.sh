#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/consumer/run_win.sh BUILD_DIR
#
# The Windows packaging test (ctest: install_consumer_win), run.sh's twin
# for a MinGW-w64 cross-build. Installs the shmbus build in BUILD_DIR into a
# temporary prefix, checks what was installed (headers, libshmbus.dll and
# its import library, the static library, the CMake package, shmbus.pc, the
# DLL's exports), then builds the consumer project in this directory against
# it with the MinGW toolchain file and find_package(shmbus), and
# win_exchange.c with `x86_64-w64-mingw32-gcc $(pkg-config --cflags --libs
# shmbus)` (and statically with --static), and runs every program under wine
# (scripts/wine-run.sh):
#   - consumer_c, consumer_cpp, consumer_hpp (DLL and static);
#   - win_exchange: 10^6 samples between two processes, every sequence
#     number checked, and a subscriber killed with TerminateProcess
#     reclaimed; the DLL build on the default backend, the static build on
#     the directory backend (in a temporary directory), the pkg-config
#     build with the DLL found through WINEPATH;
#   - the xlang pair (C and C++ processes), both ways.
# After each program: no token or segment of its domain is left in the wine
# prefix's state directory (AppData/Local/shmbus) or in the directory
# backend's root. The temporary directory is removed at the end.
#
# Environment (ctest sets these): SHMBUS_CMAKE (cmake binary), SHMBUS_CONFIG
# (build configuration), SHMBUS_TOOLCHAIN (the toolchain file, default
# cmake/toolchains/mingw-w64-x86_64.cmake), SHMBUS_WIN_DEPS (passed on to
# it), SHMBUS_EMULATOR (runs a .exe, default scripts/wine-run.sh),
# SHMBUS_WINEPREFIX (the wine prefix, as for wine-run.sh), CC (the MinGW C
# compiler, for pkg-config), SHMBUS_OBJDUMP (MinGW objdump),
# SHMBUS_CONSUMER_NO_CXX=1 (skip C++), SHMBUS_API_SYMBOLS (file listing the
# public functions), WIN_EXCHANGE_SAMPLES (default 1000000), XLANG_SAMPLES
# (default 100000: these programs do not spin before they sleep, and under
# wine every sleep and wake-up is a wineserver round trip: about 16000
# samples/s here), SHMBUS_CONSUMER_KEEP=1 (keep the temporary
# directory).
# Exit 0 pass, 1 fail, 77 skip (no wine, no MinGW compiler).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build_dir=$(cd "$1" && pwd)

cmake_bin=${SHMBUS_CMAKE:-cmake}
config=${SHMBUS_CONFIG:-}
toolchain=${SHMBUS_TOOLCHAIN:-$root/cmake/toolchains/mingw-w64-x86_64.cmake}
emulator=${SHMBUS_EMULATOR:-$root/scripts/wine-run.sh}
cc=${CC:-x86_64-w64-mingw32-gcc-posix}
objdump=${SHMBUS_OBJDUMP:-x86_64-w64-mingw32-objdump}
api_symbols=${SHMBUS_API_SYMBOLS:-$build_dir/tests/shmbus_api_symbols.txt}
exchange_samples=${WIN_EXCHANGE_SAMPLES:-1000000}
xlang_samples=${XLANG_SAMPLES:-100000}
# The wine prefix wine-run.sh uses (the same default), for the leftovers.
wineprefix=${SHMBUS_WINEPREFIX:-$root/build/wine-prefix}

fail() { echo "run_win.sh: FAILED: $*" >&2; exit 1; }
step() { echo "run_win.sh: --- $*"; }
skip() { echo "run_win.sh: skipped: $*"; exit 77; }

[[ -x /usr/lib/wine/wine64 ]] || skip "no wine64 (/usr/lib/wine/wine64): scripts/win-deps.sh installs it"
command -v "$cc" >/dev/null 2>&1 || skip "no MinGW C compiler ($cc)"
[[ -f $toolchain ]] || fail "no toolchain file $toolchain"
command -v "$objdump" >/dev/null 2>&1 || objdump=

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbus-consumer-win.XXXXXX")
cleanup() {
  if [[ ${SHMBUS_CONSUMER_KEEP:-0} == 1 ]]; then
    echo "run_win.sh: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# A Unix path as wine sees it (drive Z: is /).
winpath() { local p; p=$(cd "$1" && pwd -P); printf 'Z:%s' "${p//\//\\}"; }
# The DLLs a program or DLL imports, one a line.
imports() { "$objdump" -p "$1" | sed -n 's/^[[:space:]]*DLL Name: //p'; }
# The imports that are not part of Windows.
foreign_imports() {
  imports "$1" | grep -Eiv '^(kernel32|advapi32|bcrypt|msvcrt|ucrtbase|ntdll|user32|ws2_32)\.dll$|^api-ms-win-' || true
}

# Tokens of the domains the programs here use, in the default backend's
# per-session state directories (%LOCALAPPDATA%\shmbus\s<session>; its
# sections cannot be listed, and go with their last handle anyway).
leftovers() {
  find "$wineprefix/drive_c/users" -path '*/AppData/Local/shmbus/*' -type f \
    \( -name 'shmbus.winx-*' -o -name 'shmbus.consumer-c*' -o -name "shmbus.consumer-x$$-*" \) \
    2>/dev/null || true
}
stale=$(leftovers)
if [[ -n $stale ]]; then
  echo "run_win.sh: removing leftovers of an earlier run:"
  echo "$stale"
  # shellcheck disable=SC2086
  rm -f $stale
fi

# Runs a program under wine (name, then the command) and checks that it
# exited 0 and that its domain left nothing behind.
run_program() {
  local name=$1 rc=0 t0=$SECONDS left
  shift
  step "run $name"
  "$emulator" "$@" || rc=$?
  [[ $rc -eq 0 ]] || fail "$name exited with $rc"
  left=$(leftovers)
  if [[ -n $left ]]; then
    # shellcheck disable=SC2086
    rm -f $left
    fail "$name left tokens or objects in the state directory (now removed): $left"
  fi
  echo "run_win.sh: $name: ok in $((SECONDS - t0)) s"
}

prefix=$tmp/prefix

# --------------------------------------------------------------------------
step "install $build_dir into $prefix"
config_args=()
[[ -n $config ]] && config_args=(--config "$config")
"$cmake_bin" --install "$build_dir" --prefix "$prefix" "${config_args[@]}" >"$tmp/install.log" \
  || { cat "$tmp/install.log"; fail "cmake --install"; }

libdir=$prefix/lib
for f in "$prefix/include/shmbus.h" "$prefix/include/shmbus.hpp" "$prefix/include/shmbus/version.h" \
         "$prefix/bin/libshmbus.dll" "$libdir/libshmbus.dll.a" "$libdir/libshmbus.a" \
         "$libdir/pkgconfig/shmbus.pc" \
         "$libdir/cmake/shmbus/shmbusConfig.cmake" \
         "$libdir/cmake/shmbus/shmbusConfigVersion.cmake" \
         "$libdir/cmake/shmbus/shmbusTargets.cmake"; do
  [[ -e $f ]] || fail "not installed: ${f#"$prefix"/}"
done
dll=$prefix/bin/libshmbus.dll

if [[ -n $objdump ]]; then
  # Exactly the functions the header declares are exported; nothing internal.
  if [[ -r $api_symbols ]]; then
    "$objdump" -p "$dll" | sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' \
      | sed -n 's/^[[:space:]]*\[ *[0-9]*\] //p' | sort -u >"$tmp/exported.txt"
    sort -u "$api_symbols" | grep . >"$tmp/declared.txt"
    if ! diff -u "$tmp/declared.txt" "$tmp/exported.txt" >"$tmp/symbols.diff"; then
      echo "run_win.sh: exported symbols differ from the header's declarations" >&2
      echo "        (- declared but not exported, + exported but not declared):" >&2
      sed -n '3,$p' "$tmp/symbols.diff" | grep '^[-+]' >&2 || true
      fail "exported symbols"
    fi
    echo "run_win.sh: libshmbus.dll exports exactly the $(wc -l <"$tmp/declared.txt") declared functions"
  fi
  # What a user must ship along with the DLL (the package installs none).
  runtime=$(foreign_imports "$dll" | tr '\n' ' ')
  if [[ -n $runtime ]]; then
    echo "run_win.sh: note: libshmbus.dll imports ${runtime}which the package does not install" \
         "(MinGW's runtime: a user ships it too, or has MinGW's bin on PATH)"
  fi
fi

# --------------------------------------------------------------------------
step "find_package(shmbus) with the toolchain file"
with_cxx=ON
[[ ${SHMBUS_CONSUMER_NO_CXX:-0} == 1 ]] && with_cxx=OFF
# shmbus_DIR, not CMAKE_PREFIX_PATH: the toolchain file searches packages
# in its find root only (CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY, the MinGW
# sysroot and SHMBUS_WIN_DEPS), so a prefix elsewhere is named directly.
cmake_args=(-S "$here" -B "$tmp/build"
  --toolchain "$toolchain"
  -Dshmbus_DIR="$libdir/cmake/shmbus"
  -DCMAKE_BUILD_TYPE="${config:-RelWithDebInfo}"
  -DCONSUMER_CXX="$with_cxx")
[[ -n ${SHMBUS_WIN_DEPS:-} ]] && cmake_args+=(-DSHMBUS_WIN_DEPS="$SHMBUS_WIN_DEPS")
"$cmake_bin" "${cmake_args[@]}" >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "configuring the consumer project"; }
grep -q "found shmbus .* in $prefix/" "$tmp/configure.log" \
  || { cat "$tmp/configure.log"; fail "the consumer did not find shmbus in $prefix"; }
"$cmake_bin" --build "$tmp/build" "${config_args[@]}" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log"; fail "building the consumer project"; }

find_exe() {
  local f
  f=$(find "$tmp/build" -type f -name "$1.exe" -print -quit)
  [[ -n $f ]] || fail "$1.exe was not built"
  echo "$f"
}
# The DLL programs find libshmbus.dll beside them (CMakeLists.txt copies
# it there; wine-run.sh's WINEPATH has only MinGW's runtime); the static
# win_exchange needs no DLL at all.
win_exchange=$(find_exe win_exchange)
[[ -f $(dirname "$win_exchange")/libshmbus.dll ]] || fail "libshmbus.dll was not copied beside win_exchange.exe"
win_exchange_static=$(find_exe win_exchange_static)
if [[ -n $objdump ]]; then
  imp=$(imports "$win_exchange")
  grep -qix libshmbus.dll <<<"$imp" || fail "win_exchange.exe does not import libshmbus.dll"
  foreign=$(foreign_imports "$win_exchange_static" | tr '\n' ' ')
  [[ -z $foreign ]] || fail "win_exchange_static.exe imports DLLs: $foreign"
  echo "run_win.sh: win_exchange.exe imports libshmbus.dll (copied beside it);" \
       "win_exchange_static.exe imports only Windows DLLs"
fi

run_program consumer_c "$(find_exe consumer_c)"
run_program consumer_c_static "$(find_exe consumer_c_static)"
if [[ $with_cxx == ON ]]; then
  run_program consumer_cpp "$(find_exe consumer_cpp)"
  run_program consumer_hpp "$(find_exe consumer_hpp)"
  run_program consumer_hpp_static "$(find_exe consumer_hpp_static)"
fi

run_program "win_exchange (DLL, default backend)" "$win_exchange" -n "$exchange_samples"

# The directory backend: everything lives in the root, which must be empty
# afterwards.
mkdir -p "$tmp/root"
run_program "win_exchange_static (static, directory backend)" \
  "$win_exchange_static" -n "$exchange_samples" "$(winpath "$tmp/root")"
left=$(find "$tmp/root" -mindepth 1 | head -n 20)
[[ -z $left ]] || fail "win_exchange_static left files in the directory backend's root: $left"

# The C and the C++ half of the cross-language exchange, each way: every
# sequence number and field checked, none lost (BLOCK).
run_pair() {
  local name=$1 pub=$2 sub=$3 n=$xlang_samples domain sub_pid rc=0 t0=$SECONDS left
  domain="consumer-x$$-$name"
  step "run $name: $(basename "$pub") publishes $n, $(basename "$sub") subscribes"
  "$emulator" "$sub" sub "$domain" "$n" &
  sub_pid=$!
  "$emulator" "$pub" pub "$domain" "$n" || rc=$?
  if ((rc != 0)); then
    kill "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true
    fail "$name: the publisher exited with $rc"
  fi
  wait "$sub_pid" || rc=$?
  ((rc == 0)) || fail "$name: the subscriber exited with $rc"
  left=$(leftovers)
  if [[ -n $left ]]; then
    # shellcheck disable=SC2086
    rm -f $left
    fail "$name left tokens or objects in the state directory (now removed): $left"
  fi
  echo "run_win.sh: $name: $n samples in $((SECONDS - t0)) s"
}
if [[ $with_cxx == ON ]]; then
  run_pair cpp-to-c "$(find_exe xlang_cpp)" "$(find_exe xlang_c)"
  run_pair c-to-cpp "$(find_exe xlang_c)" "$(find_exe xlang_cpp)"
fi

# --------------------------------------------------------------------------
step "pkg-config via PKG_CONFIG_LIBDIR"
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "run_win.sh: pkg-config not found: skipping the pkg-config part"
else
  # LIBDIR, not PATH: only this prefix, never the host's .pc files.
  export PKG_CONFIG_LIBDIR=$libdir/pkgconfig
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
  version=$(pkg-config --modversion shmbus) || fail "pkg-config does not find shmbus.pc"
  pc_includedir=$(pkg-config --variable=includedir shmbus)
  pc_libdir=$(pkg-config --variable=libdir shmbus)
  [[ -f $pc_includedir/shmbus.h ]] || fail "shmbus.pc: includedir $pc_includedir has no shmbus.h"
  [[ $(readlink -f "$pc_libdir") == $(readlink -f "$libdir") ]] \
    || fail "shmbus.pc: libdir $pc_libdir is not $libdir"
  echo "run_win.sh: pkg-config: shmbus $version, $(pkg-config --cflags --libs shmbus)"

  mkdir -p "$tmp/pc"
  pc_exe=$tmp/pc/win_exchange_pc.exe
  # shellcheck disable=SC2046
  "$cc" -std=c11 -Wall -Wextra -Werror -pedantic "$here/win_exchange.c" -o "$pc_exe" \
    $(pkg-config --cflags --libs shmbus) \
    || fail "$cc \$(pkg-config --cflags --libs shmbus)"
  # Nothing puts libshmbus.dll beside this one: it does not start ...
  step "run win_exchange_pc without libshmbus.dll on its path (must not start)"
  rc=0
  "$emulator" "$pc_exe" -n 1 >"$tmp/pc/nodll.log" 2>&1 || rc=$?
  ((rc != 0)) || fail "win_exchange_pc ran without libshmbus.dll beside it or on WINEPATH"
  echo "run_win.sh: win_exchange_pc: exit $rc without the DLL, as expected"
  # ... until the prefix's bin is on WINEPATH (PATH on Windows).
  WINEPATH="$(winpath "$prefix/bin")" \
    run_program "win_exchange_pc (DLL through WINEPATH)" "$pc_exe" -n "$exchange_samples"

  # The static library: shmbus.pc has no Cflags.private, so -DSHMBUS_STATIC
  # (no __declspec(dllimport)) is the user's; -static links libshmbus.a and
  # MinGW's runtime.
  pc_static=$tmp/pc/win_exchange_pc_static.exe
  # shellcheck disable=SC2046
  "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -DSHMBUS_STATIC "$here/win_exchange.c" \
    -o "$pc_static" $(pkg-config --cflags shmbus) -static $(pkg-config --static --libs shmbus) \
    || fail "$cc -DSHMBUS_STATIC -static \$(pkg-config --static --libs shmbus)"
  if [[ -n $objdump ]]; then
    foreign=$(foreign_imports "$pc_static" | tr '\n' ' ')
    [[ -z $foreign ]] || fail "win_exchange_pc_static.exe imports DLLs: $foreign"
  fi
  run_program "win_exchange_pc_static (static)" "$pc_static" -n 10000
fi

echo "run_win.sh: ok"
