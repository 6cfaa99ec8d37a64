#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/test.sh [--quick] [--no-sanitize] [--no-tsan] [--no-valgrind]
#                        [--no-cross] [--no-clang] [-- CTEST_ARGS...]
#
# The whole test matrix, as CI runs it (each suite configures, builds with
# -j2 and runs `ctest --output-on-failure -j2`):
#   1. build/test-m32    Debug, 32-bit x86 (cmake/toolchains/i386.cmake)
#   2. build/test        Debug, C11 atomics (also builds the benchmarks); its
#                        test_abi runs the 32-bit build's shmbus_abi_peer
#                        against its own (mixed 32/64-bit processes; also in
#                        suites 3, 4 and 5), and its
#                        install_consumer the 32-bit install's C and C++
#                        programs against its own (tests/consumer/run.sh)
#   3. build/test-aops   Release (-O3, NDEBUG: what users ship; -O3 warns
#                        where -O2 does not), SHMBUS_ATOMICS=libatomic_ops
#   4. build/test-clang  Debug, clang-14 (warnings as errors, as with gcc)
#   5. build/test-asan   Debug, ASan+UBSan, ASAN_OPTIONS=detect_leaks=1
#   6. build/test-tsan   RelWithDebInfo, TSan, the threaded tests (-L threads)
#   7. build/test-aarch64 Debug, aarch64 cross-build (cmake/toolchains/
#                        aarch64.cmake); the unit and single-process tests
#                        (-L 'unit|api|pubsub|header') under qemu-user: code
#                        generation, alignment and the ABI, not weak memory
#                        ordering (qemu runs the guest on the host's memory
#                        model); without threads (SHMBUS_TEST_NO_THREADS:
#                        Debian 12's qemu-user hangs in a guest's first
#                        pthread_create on some hosts)
#   8. build/test-win    Debug, Windows x86-64 cross-build with MinGW-w64
#                        (cmake/toolchains/mingw-w64-x86_64.cmake; cmocka
#                        cross-built by scripts/win-deps.sh, which installs
#                        mingw-w64 and wine); the suites built for Windows
#                        (header, unit, pubsub, multiprocess, wait, threads,
#                        examples; api, hostile and packaging as they land)
#                        under wine64 (scripts/wine-run.sh), then a check
#                        that the wine prefix holds no token (its state
#                        directory) and no directory of the tests
#   9. valgrind memcheck over test_units and test_pubsub of suite 2
# first scripts/format.sh --check (the tree is formatted) and scripts/docs.sh
# (the API reference builds without a doxygen warning: everything public is
# documented), and at the end scripts/check-leftovers.sh: no shmbus object
# may remain in /dev/shm.
#
#   --quick        only suite 2
#   --no-sanitize  skip the sanitizer suites (5 and 6)
#   --no-tsan      skip suite 6
#   --no-valgrind  skip step 9
#   --no-windows   skip suite 8
#   --no-cross     skip suites 1 and 7 (test_abi in suite 2 then skips)
#   --no-clang     skip suite 4
#   -- ARGS        passed to every ctest run (e.g. -- -L unit)
#
# Runs scripts/deps.sh first. Exits non-zero on any failure; the last line is
# "N passed, N failed", summed over the ctest runs (tests that exit 77 are
# skipped: listed per suite, counted in neither). SHMBUS_JOBS (default 2)
# sets the parallelism.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=0
sanitize=1
tsan=1
valgrind=1
cross=1
clang=1
windows=1
ctest_args=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --no-sanitize) sanitize=0 ;;
    --tsan) tsan=1 ;;
    --no-tsan) tsan=0 ;;
    --no-valgrind) valgrind=0 ;;
    --no-cross) cross=0 ;;
    --no-clang) clang=0 ;;
    --no-windows) windows=0 ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '4,55p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
jobs=${SHMBUS_JOBS:-2}

./scripts/deps.sh

total_passed=0
total_failed=0
status=0
summary=()

# suite NAME BUILD_DIR BUILD_TYPE ENV -- CMAKE_ARGS...
# ENV is a space separated list of VAR=value for the ctest run ("" for none).
suite() {
  local name=$1 dir=$2 type=$3 env_list=$4
  shift 5
  local start=$SECONDS rc=0 log line passed failed skipped total
  echo
  echo "==== [$name] $dir ($type${*:+, $*})"
  if ! cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@"; then
    echo "==== [$name] configure FAILED"
    summary+=("[$name] configure FAILED")
    status=1
    return 0
  fi
  if ! cmake --build "$dir" -j "$jobs"; then
    echo "==== [$name] build FAILED"
    summary+=("[$name] build FAILED")
    status=1
    return 0
  fi
  log=$dir/ctest.log
  # shellcheck disable=SC2086
  (cd "$dir" && env $env_list ctest --output-on-failure -j "$jobs" --no-tests=error \
     --timeout 300 "${ctest_args[@]}" "${suite_ctest_args[@]}") 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  # "100% tests passed, 0 tests failed out of 12"; skipped tests (exit 77)
  # count as passed there, so they are taken out and reported apart.
  line=$(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  skipped=$(grep -Ec '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" || true)
  if [[ -n $line ]]; then
    failed=$(awk '{print $1}' <<<"$line")
    total=$(awk '{print $NF}' <<<"$line")
    passed=$((total - failed - skipped))
  else
    passed=0
    failed=0
    skipped=0
    [[ $rc -ne 0 ]] || rc=1  # no summary: ctest itself went wrong
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  if [[ $rc -ne 0 ]]; then
    status=1
  fi
  summary+=("[$name] $passed passed, $failed failed, $skipped skipped (ctest exit $rc, $((SECONDS - start)) s)")
}

# The tree stays formatted (.clang-format; scripts/format.sh fixes it).
if ! ./scripts/format.sh --check; then
  summary+=("[format] FAILED: run scripts/format.sh")
  status=1
fi

# The headers stay documented (doxygen, about a second; build/docs/html).
if ! ./scripts/docs.sh; then
  summary+=("[docs] FAILED: see scripts/docs.sh's output above")
  status=1
fi

suite_ctest_args=()
baseline=$root/build/.shm-baseline
mkdir -p "$root/build"
./scripts/check-leftovers.sh --save-baseline "$baseline"

# The 32-bit suite first: the default suite's test_abi runs its peer.
abi_args=()
if ((!quick && cross)); then
  suite m32 build/test-m32 Debug "SHMBUS_CONSUMER_EXPORT=$root/build/consumer-m32" -- \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/i386.cmake" \
    -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE= -DSHMBUS_WERROR=ON -DSHMBUS_BUILD_BENCH=OFF
  abi_args=(-DSHMBUS_ABI_PEER="$root/build/test-m32/tests/shmbus_abi_peer")
  default_env="SHMBUS_CONSUMER_PEER_DIR=$root/build/consumer-m32"
fi

suite default build/test Debug "${default_env:-}" -- \
  -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE= -DSHMBUS_WERROR=ON "${abi_args[@]}"

if ((!quick)); then
  suite libatomic_ops build/test-aops Release "" -- \
    -DSHMBUS_ATOMICS=libatomic_ops -DSHMBUS_SANITIZE= -DSHMBUS_WERROR=ON \
    -DSHMBUS_BUILD_BENCH=OFF "${abi_args[@]}"
  if ((clang)); then
    suite clang build/test-clang Debug "" -- \
      -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
      -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE= -DSHMBUS_WERROR=ON "${abi_args[@]}"
  fi
  if ((sanitize)); then
    suite asan build/test-asan Debug \
      "ASAN_OPTIONS=detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS} UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" -- \
      -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE=address -DSHMBUS_WERROR=ON \
      -DSHMBUS_BUILD_BENCH=OFF "${abi_args[@]}"
    # TSan sees only what one address space does: it runs the threaded
    # variants of the concurrency tests (label "threads").
    if ((tsan)); then
      suite_ctest_args=(-L threads)
      suite tsan build/test-tsan RelWithDebInfo \
        "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1" -- \
        -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE=thread -DSHMBUS_WERROR=ON \
        -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_BUILD_EXAMPLES=OFF
      suite_ctest_args=()
    fi
  fi
  if ((cross)); then
    suite_ctest_args=(-L 'unit|api|pubsub|header')
    suite aarch64 build/test-aarch64 Debug "SHMBUS_TEST_NO_THREADS=1" -- \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64.cmake" \
      -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE= -DSHMBUS_WERROR=ON -DSHMBUS_BUILD_BENCH=OFF
    suite_ctest_args=()
  fi
  if ((windows)); then
    if win_deps=$(./scripts/win-deps.sh); then
      win_prefix=$root/build/wine-prefix-test
      suite windows build/test-win Debug "SHMBUS_WINEPREFIX=$win_prefix" -- \
        -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/mingw-w64-x86_64.cmake" \
        -DSHMBUS_WIN_DEPS="$win_deps" -DSHMBUS_WERROR=ON
      # Tokens the tests left in the state directory (the Windows analogue
      # of /dev/shm leftovers).
      left=$({ find "$win_prefix/drive_c/users" -path '*/AppData/Local/shmbus/*' -type f \
                 -name 'shmbus.*'; find "$win_prefix/drive_c/users" -maxdepth 3 -path '*/Temp/*' \
                 -name 'shmbus-test-*'; } 2>/dev/null | head -n 20 || true)
      if [[ -n $left ]]; then
        echo "==== [windows] tokens or test directories left in the wine prefix:"
        echo "$left"
        summary+=("[windows] tokens or test directories left behind in the wine prefix")
        status=1
      fi
      SHMBUS_WINEPREFIX=$win_prefix ./scripts/wine-run.sh --stop || true
    else
      summary+=("[windows] FAILED: scripts/win-deps.sh could not provide MinGW, wine and cmocka")
      status=1
    fi
  fi
  # valgrind memcheck over the in-process unit tests of the default suite.
  if ((valgrind)) && command -v valgrind >/dev/null; then
    echo
    echo "==== [valgrind] memcheck: test_units test_pubsub"
    vg_failed=0
    for t in test_units test_pubsub; do
      if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
           --child-silent-after-fork=yes "build/test/tests/$t" >"build/test/valgrind-$t.log" 2>&1; then
        total_passed=$((total_passed + 1))
      else
        total_failed=$((total_failed + 1))
        vg_failed=1
        tail -n 40 "build/test/valgrind-$t.log"
      fi
    done
    if ((vg_failed)); then
      status=1
      summary+=("[valgrind] FAILED (logs in build/test/valgrind-*.log)")
    else
      summary+=("[valgrind] test_units, test_pubsub clean")
    fi
  fi
fi

echo
if ! ./scripts/check-leftovers.sh --baseline "$baseline"; then
  summary+=("[hygiene] shared memory left behind in /dev/shm")
  status=1
fi

echo
echo "==== summary"
printf '  %s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
exit "$status"
