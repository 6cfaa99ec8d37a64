#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/deps.sh [--check] [--no-optional]
#
# Makes sure the build dependencies are installed (Debian/Ubuntu packages).
# Quick and silent when everything is present. As root, installs what is
# missing (apt-get update once, then apt-get install); otherwise prints what
# to install and exits 1.
#
#   required  cmake gcc g++ make pkg-config libcmocka-dev libatomic-ops-dev strace valgrind
#             doctest-dev (the C++ API's tests, tests/cpp)
#             clang-format-14 (scripts/format.sh --check in scripts/test.sh)
#             doxygen (the API reference, scripts/docs.sh, checked by
#             scripts/test.sh) groff-base (tests/cli_manpage.sh renders the
#             man page, docs/shmbus.1) spin (the protocol model, scripts/model.sh)
#             clang-14 libfuzzer-14-dev libclang-rt-14-dev (the fuzz step,
#             scripts/fuzz.sh, and the clang suite of scripts/test.sh)
#             on amd64 hosts, the 32-bit and aarch64 suites of scripts/test.sh:
#             gcc-12-multilib g++-12-multilib (not gcc-multilib, which conflicts
#             with the cross compilers) libcmocka-dev:i386 linux-libc-dev:i386
#             gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user
#             libcmocka-dev:arm64 (the i386 and arm64 architectures are added
#             to dpkg for them)
#   optional  libzmq3-dev libiceoryx-binding-c-dev iceoryx gnuplot-nox
#             (peers and plots for the benchmarks), llvm-14 (llvm-cov for
#             scripts/fuzz.sh --coverage); a failure to install them is only
#             a note, and is not retried on every run: remove
#             build/.deps-optional-failed to retry
#
#   --check        report only, install nothing (exit 1 if required are missing)
#   --no-optional  ignore the optional packages (also SHMBUS_DEPS_OPTIONAL=0)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

required=(cmake gcc g++ make pkg-config libcmocka-dev libatomic-ops-dev strace valgrind
          doctest-dev clang-14 libfuzzer-14-dev libclang-rt-14-dev clang-format-14
          doxygen groff-base spin)
# The cross suites (scripts/test.sh: m32, aarch64), from an amd64 host.
# libatomic-ops-dev is not multiarch: only the host's is installed, and the
# 32-bit and aarch64 suites use C11 atomics.
foreign_archs=()
if command -v dpkg >/dev/null 2>&1 && [[ $(dpkg --print-architecture) == amd64 ]]; then
  foreign_archs=(i386 arm64)
  required+=(gcc-12-multilib g++-12-multilib libcmocka-dev:i386 linux-libc-dev:i386
             gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user libcmocka-dev:arm64)
fi
optional=(libzmq3-dev libiceoryx-binding-c-dev iceoryx gnuplot-nox llvm-14)

check_only=0
want_optional=${SHMBUS_DEPS_OPTIONAL:-1}
for arg in "$@"; do
  case $arg in
    --check) check_only=1 ;;
    --no-optional) want_optional=0 ;;
    -h|--help) sed -n '4,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

note() { echo "deps.sh: $*" >&2; }

# Without dpkg (not Debian): check the tools and pkg-config modules instead.
if ! command -v dpkg >/dev/null 2>&1; then
  missing=()
  for tool in cmake cc c++ make pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if command -v pkg-config >/dev/null 2>&1; then
    for module in cmocka atomic_ops; do
      pkg-config --exists "$module" || missing+=("$module (pkg-config module)")
    done
  fi
  if ((${#missing[@]})); then
    note "not a Debian system; please install: ${missing[*]}"
    exit 1
  fi
  exit 0
fi

# A name without an architecture is the host's instance (dpkg finds the
# name ambiguous once another architecture's instance is installed too), or
# the only one of an Architecture: all package.
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

mapfile -t missing_required < <(missing_of "${required[@]}")
missing_optional=()
optional_stamp=$root/build/.deps-optional-failed
if [[ $want_optional == 1 ]]; then
  mapfile -t missing_optional < <(missing_of "${optional[@]}")
  # Tried and failed before: do not try again on every run unless something
  # required has to be installed anyway.
  if ((!check_only && ${#missing_optional[@]} && ${#missing_required[@]} == 0)) \
     && [[ -e $optional_stamp ]]; then
    missing_optional=()
  fi
fi

((${#missing_required[@]} + ${#missing_optional[@]})) || exit 0

if ((check_only)) || [[ $(id -u) -ne 0 ]]; then
  if ((${#missing_required[@]})); then
    note "missing required packages: ${missing_required[*]}"
    note "install them with: sudo apt-get install ${missing_required[*]}"
  fi
  if ((${#missing_optional[@]})); then
    note "missing optional packages (benchmark peers): ${missing_optional[*]}"
  fi
  ((${#missing_required[@]} == 0))
  exit $?
fi

export DEBIAN_FRONTEND=noninteractive
mark_optional_failed() {
  note "NOTE: the optional packages could not be installed; the benchmarks"
  note "      run without the peers that need them (not retried until $optional_stamp is removed)"
  mkdir -p "$(dirname "$optional_stamp")"
  : >"$optional_stamp"
}

# Packages of another architecture need it known to dpkg before the update.
for arch in "${foreign_archs[@]}"; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    note "dpkg --add-architecture $arch"
    dpkg --add-architecture "$arch"
  fi
done

note "apt-get update"
if ! apt-get update -qq; then
  note "apt-get update failed"
  if ((${#missing_required[@]})); then
    exit 1
  fi
  mark_optional_failed
  exit 0
fi

if ((${#missing_required[@]})); then
  note "installing ${missing_required[*]}"
  apt-get install -y -qq --no-install-recommends "${missing_required[@]}"
fi

if ((${#missing_optional[@]})); then
  note "installing optional ${missing_optional[*]}"
  if apt-get install -y -qq --no-install-recommends "${missing_optional[@]}"; then
    rm -f "$optional_stamp"
  else
    mark_optional_failed
  fi
fi

mapfile -t still_missing < <(missing_of "${required[@]}")
if ((${#still_missing[@]})); then
  note "still missing after apt-get: ${still_missing[*]}"
  exit 1
fi
exit 0
