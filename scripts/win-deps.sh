#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/win-deps.sh [--dir DIR] [--check] [--rebuild]
#
# Makes sure the Windows cross-build dependencies are present, and prints the
# prefix to pass as -DSHMBUS_WIN_DEPS=... (see
# cmake/toolchains/mingw-w64-x86_64.cmake). Quick and silent (but for the
# prefix on stdout) when everything is present.
#
#   packages  gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix (these
#             pull in mingw-w64-x86-64-dev and binutils-mingw-w64-x86-64;
#             the mingw-w64 meta package would add the i686 and win32-thread
#             compilers too, ~600 MB more for nothing), wine wine64 (the
#             tests run under /usr/lib/wine/wine64, scripts/wine-run.sh),
#             dpkg-dev (dpkg-source, for apt-get source). As root, missing
#             ones are installed (apt-get update, then apt-get install);
#             otherwise the script prints what to install and exits 1.
#   cmocka    Debian's own cmocka source package (apt-get source cmocka;
#             bookworm: 1.1.5), cross-built with the toolchain file as a
#             static library (libcmocka.a, no DLL, so that test programs
#             need no extra DLL at run time) and installed into DIR/prefix
#             with its headers, cmocka.pc and CMake package files. It needs
#             a deb-src entry: as root, the script adds
#             /etc/apt/sources.list.d/shmbus-src.sources, a copy of
#             debian.sources with "Types: deb-src" (the same mirrors).
#
#   --dir DIR  build directory (default build/win-deps); the prefix is DIR/prefix
#   --check    report only, install and build nothing (exit 1 if something is missing)
#   --rebuild  build cmocka again even if DIR/prefix is complete
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
toolchain=$root/cmake/toolchains/mingw-w64-x86_64.cmake

dir=$root/build/win-deps
check_only=0
rebuild=0
while (($#)); do
  case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift ;;
    --dir=*) dir=${1#--dir=} ;;
    --check) check_only=1 ;;
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '4,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "win-deps.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$dir" 2>/dev/null || true
dir=$(cd "$dir" 2>/dev/null && pwd || echo "$dir")
prefix=$dir/prefix
stamp=$prefix/.shmbus-cmocka

note() { echo "win-deps.sh: $*" >&2; }
# Steps that do work report how long they took (a CI machine runs this on
# every fresh start).
t_start=0
step() { t_start=$(date +%s%N); note "$*"; }
done_step() { note "  done in $(( ($(date +%s%N) - t_start) / 1000000 )) ms"; }
# Runs a command with its output in a log file, shown only if it fails.
logged() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    note "failed: $*"
    tail -n 40 "$log" >&2
    note "(full log: $log)"
    exit 1
  fi
}

required=(gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix wine wine64 dpkg-dev)

if ! command -v dpkg >/dev/null 2>&1; then
  note "not a Debian system: install MinGW-w64 (posix threads), wine64 and a cmocka"
  note "built for x86_64-w64-mingw32 by hand, and pass its prefix as -DSHMBUS_WIN_DEPS"
  exit 1
fi

native_arch=$(dpkg --print-architecture)
installed() {
  local st
  if [[ $1 != *:* ]] && st=$(dpkg-query -W -f='${Status}' "$1:$native_arch" 2>/dev/null); then
    [[ $st == "install ok installed" ]]
    return
  fi
  st=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) && [[ $st == "install ok installed" ]]
}
missing_of() {
  local p
  for p in "$@"; do installed "$p" || echo "$p"; done
}

# The cmocka build is complete when the stamp names the source version and
# the library is there.
cmocka_ok() {
  ((!rebuild)) && [[ -s $stamp && -f $prefix/lib/libcmocka.a && -f $prefix/include/cmocka.h \
                     && -f $prefix/lib/pkgconfig/cmocka.pc ]]
}

mapfile -t missing < <(missing_of "${required[@]}")
if ((${#missing[@]} == 0)) && cmocka_ok; then
  echo "$prefix"
  exit 0
fi

if ((check_only)); then
  ((${#missing[@]})) && note "missing packages: ${missing[*]}"
  cmocka_ok || note "cmocka for MinGW is not built in $prefix"
  exit 1
fi

is_root=0
[[ $(id -u) -eq 0 ]] && is_root=1
export DEBIAN_FRONTEND=noninteractive

src_parent=$dir/src
src=
find_src() { src=$(find "$src_parent" -mindepth 1 -maxdepth 1 -type d -name 'cmocka-*' 2>/dev/null | sort | tail -n 1 || true); }
find_src
need_source=0
[[ -n $src && -f $src/CMakeLists.txt ]] || need_source=1
cmocka_ok && need_source=0

# apt-get source needs a deb-src entry for the suites of debian.sources. It
# is added before the one apt-get update, so that a fresh machine updates once.
need_update=0
((${#missing[@]})) && need_update=1
if ((need_source)) && ! apt-get source --print-uris cmocka >/dev/null 2>&1; then
  if ((!is_root)); then
    note "apt-get source cmocka needs deb-src entries; as root, run this script again"
    note "(it adds /etc/apt/sources.list.d/shmbus-src.sources)"
    exit 1
  fi
  list=/etc/apt/sources.list.d/debian.sources
  if [[ ! -f $list ]] || ! grep -q '^Types: *deb$' "$list"; then
    note "no deb822 $list to copy: add a deb-src line for Debian by hand"
    exit 1
  fi
  note "adding deb-src entries: /etc/apt/sources.list.d/shmbus-src.sources"
  {
    echo "# Added by shmbus scripts/win-deps.sh (apt-get source cmocka): a copy of"
    echo "# $list with deb-src instead of deb."
    sed 's/^Types: *deb$/Types: deb-src/' "$list"
  } >/etc/apt/sources.list.d/shmbus-src.sources
  need_update=1
fi

# --- 1. packages ------------------------------------------------------------
if ((${#missing[@]})) && ((!is_root)); then
  note "missing packages: ${missing[*]}"
  note "install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
  exit 1
fi
if ((need_update)); then
  step "apt-get update"
  logged "$dir/apt-update.log" apt-get update
  done_step
fi
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  logged "$dir/apt-install.log" apt-get install -y --no-install-recommends "${missing[@]}"
  done_step
  mapfile -t still < <(missing_of "${required[@]}")
  if ((${#still[@]})); then
    note "still missing after apt-get: ${still[*]}"
    exit 1
  fi
fi

cmocka_ok && { echo "$prefix"; exit 0; }

# --- 2. the cmocka source ---------------------------------------------------
if ((need_source)); then
  step "apt-get source cmocka"
  rm -rf "$src_parent"
  mkdir -p "$src_parent"
  # --download-only + dpkg-source: no dpkg-buildpackage, no build-deps. apt
  # has checked the files' hashes against the signed Sources index;
  # --no-check skips the .dsc signature (no debian-keyring needed).
  (cd "$src_parent" && logged "$dir/apt-source.log" apt-get source --download-only cmocka)
  dsc=$(find "$src_parent" -maxdepth 1 -name 'cmocka_*.dsc' | sort | tail -n 1)
  (cd "$src_parent" && logged "$dir/dpkg-source.log" dpkg-source --no-check -x "$dsc")
  find_src
  if [[ -z $src || ! -f $src/CMakeLists.txt ]]; then
    note "no cmocka source tree in $src_parent"
    exit 1
  fi
  done_step
fi
if ! version=$(cd "$src" && dpkg-parsechangelog -S Version 2>/dev/null); then
  version=$(basename "$src")
fi

# --- 3. cross-build and install ---------------------------------------------
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
bld=$dir/cmocka-build
step "building cmocka $version for x86_64-w64-mingw32"
rm -rf "$bld" "$prefix"
logged "$dir/cmocka-configure.log" cmake -S "$src" -B "$bld" "${generator[@]}" \
  --toolchain "$toolchain" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DBUILD_SHARED_LIBS=OFF \
  -DWITH_STATIC_LIB=ON \
  -DWITH_EXAMPLES=OFF \
  -DUNIT_TESTING=OFF \
  -DPICKY_DEVELOPER=OFF
logged "$dir/cmocka-build.log" cmake --build "$bld" -j "$(nproc)"
logged "$dir/cmocka-install.log" cmake --install "$bld"
# cmocka 1.1.5 always builds a DLL and names its static library
# libcmocka-static.a. Keep the static one only, as libcmocka.a: then -lcmocka
# (cmocka.pc), find_library(cmocka) and find_package(cmocka) all link it
# statically and the tests need no cmocka.dll. cmocka.h has no dllimport, so
# nothing else is needed. Its cmocka-config.cmake names lib/cmocka.dll.a
# (a file that does not exist with MinGW's lib prefix): point it at libcmocka.a.
mv "$prefix/lib/libcmocka-static.a" "$prefix/lib/libcmocka.a"
rm -f "$prefix/lib/libcmocka.dll.a" "$prefix/bin/cmocka.dll" "$prefix/bin/libcmocka.dll"
rmdir "$prefix/bin" 2>/dev/null || true
sed -i 's|/lib/[^/)]*cmocka[^/)]*\.dll\.a|/lib/libcmocka.a|g' "$prefix/lib/cmake/cmocka/cmocka-config.cmake"
done_step
echo "cmocka $version" >"$stamp"
echo "$prefix"
