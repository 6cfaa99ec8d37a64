#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/bench.sh [--no-build] [--strict] [BENCH_ARGS...]
#
# Builds Release in build/release and runs the quick benchmark:
#   - build/release/bench/shmbus-bench --quick BENCH_ARGS... if it was built;
#   - otherwise the two-process example: shmbus-example-subscriber N in the
#     background, then shmbus-example-publisher N (N = SHMBUS_EXAMPLE_COUNT,
#     default 1000), on a domain of its own, timed.
# It prints which one it runs.
#
# Failures: a build failure, a crash (killed by a signal), a hang (timeout:
# SHMBUS_BENCH_TIMEOUT, default 900 s; SHMBUS_EXAMPLE_TIMEOUT, default
# 120 s), a failing example, or shared memory left in /dev/shm. A benchmark
# that exits with another non-zero code (e.g. a figure off its target, which
# is noise on a shared machine) is only a warning, unless --strict.
#
#   --no-build  use build/release as it is (no deps.sh, no cmake)
#   --strict    any non-zero exit of the benchmark fails
# SHMBUS_RELEASE_DIR overrides build/release.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=1
strict=0
while (($#)); do
  case $1 in
    --no-build) build=0; shift ;;
    --strict) strict=1; shift ;;
    -h|--help) sed -n '4,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done

dir=${SHMBUS_RELEASE_DIR:-build/release}
jobs=${SHMBUS_JOBS:-2}

if ((build)); then
  ./scripts/deps.sh
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
    -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_EXAMPLES=ON -DSHMBUS_BUILD_BENCH=ON \
    -DSHMBUS_ATOMICS=c11 -DSHMBUS_SANITIZE=
  cmake --build "$dir" -j "$jobs"
fi

baseline=$dir/.shm-baseline
./scripts/check-leftovers.sh --save-baseline "$baseline"

# describe NAME RC: prints what an exit code means; returns 0 for success,
# 1 for a crash or hang, 2 for any other failure.
describe() {
  local name=$1 rc=$2
  if ((rc == 0)); then
    return 0
  elif ((rc == 124 || rc == 137)); then
    echo "bench.sh: $name hung (stopped by the timeout) or was killed" >&2
    return 1
  elif ((rc > 128)); then
    echo "bench.sh: $name crashed (signal $((rc - 128)))" >&2
    return 1
  fi
  echo "bench.sh: $name exited with $rc" >&2
  return 2
}

status=0
bench=$dir/bench/shmbus-bench
if [[ -x $bench ]]; then
  echo "==== running the benchmark: $bench --quick $*"
  rc=0
  timeout --kill-after=10 "${SHMBUS_BENCH_TIMEOUT:-900}" "$bench" --quick "$@" || rc=$?
  describe shmbus-bench "$rc" || case $? in
    1) status=1 ;;
    *) if ((strict)); then
         status=1
       else
         echo "bench.sh: WARNING: not counted as a failure (benchmark figures are noisy;" \
              "use --strict to fail)" >&2
       fi ;;
  esac
else
  sub=$dir/examples/shmbus-example-subscriber
  pub=$dir/examples/shmbus-example-publisher
  count=${SHMBUS_EXAMPLE_COUNT:-1000}
  limit=${SHMBUS_EXAMPLE_TIMEOUT:-120}
  echo "==== no $bench: running the two-process example instead:"
  echo "====   $sub $count &  then  $pub $count"
  for exe in "$sub" "$pub"; do
    [[ -x $exe ]] || { echo "bench.sh: FAILED: $exe was not built" >&2; exit 1; }
  done
  export SHMBUS_DOMAIN=bench-$$
  start_ns=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$sub" "$count" &
  sub_pid=$!
  # Let the subscriber announce itself before anything is published (its
  # objects carry the domain in their names), at most 5 s.
  for _ in $(seq 50); do
    if find /dev/shm -maxdepth 1 -name "*$SHMBUS_DOMAIN*" 2>/dev/null | grep -q .; then break; fi
    kill -0 "$sub_pid" 2>/dev/null || break
    sleep 0.1
  done
  pub_rc=0
  timeout --kill-after=10 "$limit" "$pub" "$count" || pub_rc=$?
  sub_rc=0
  wait "$sub_pid" || sub_rc=$?
  elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
  describe shmbus-example-publisher "$pub_rc" || status=1
  describe shmbus-example-subscriber "$sub_rc" || status=1
  if ((status == 0)); then
    echo "==== $count samples from publisher to subscriber in $elapsed_ms ms" \
         "(includes process start-up)"
  fi
fi

./scripts/check-leftovers.sh --baseline "$baseline" || status=1
if ((status)); then
  echo "bench.sh: FAILED" >&2
fi
exit "$status"
