#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/fuzz.sh [--seconds N] [--only HARNESS] [--coverage] [--regen-corpus]
#                        [--minimize HARNESS FILE] [-- LIBFUZZER_ARGS...]
#
# The libFuzzer harnesses of fuzz/ (fuzz/README.md), as CI runs them:
# configures and builds build/fuzz with clang-14 (SHMBUS_BUILD_FUZZ=ON), then
# runs every harness for N seconds (default 60), one after another, on its
# committed corpus fuzz/corpus/<harness>/. New inputs go to the scratch
# directory build/fuzz/new/<harness>/ (emptied first), never into the corpus.
# Prints per harness the executions, exec/s and coverage (cov/ft from
# libFuzzer's last line); fails if any harness crashes, hangs (-timeout=10),
# runs out of memory, leaks, or leaves objects in /dev/shm. Crashing inputs
# are kept in fuzz/crashes/<harness>/ (not committed) with the harness's log.
#
#   --seconds N     fuzzing time per harness (default 60; SHMBUS_FUZZ_SECONDS)
#   --only H        run only harness H (e.g. fuzz_take)
#   --coverage      also build build/fuzz-cov (-fprofile-instr-generate
#                   -fcoverage-mapping), run every harness once over its
#                   corpus and the new inputs, and print llvm-cov-14's line and
#                   branch coverage of src/segment.c, subscriber.c,
#                   publisher.c and service.c (HTML in build/fuzz-cov/html)
#   --regen-corpus  rebuild the committed corpora: each harness writes its
#                   seed inputs (SHMBUS_FUZZ_WRITE_SEEDS), fuzzes N seconds
#                   from them, and the result is minimised by edge coverage
#                   (-merge=1, which leaves crashing inputs out) into
#                   fuzz/corpus/<harness>/
#   --minimize H F  minimise crashing input F of harness H (-minimize_crash=1,
#                   30 s) into fuzz/crashes/H/, then exit
#   -- ARGS         passed to every libFuzzer run (e.g. -- -jobs=2 -workers=2)
#
# The long run (issue 9: at least 10^7 executions per harness), one harness
# after another, e.g.:
#   scripts/fuzz.sh --seconds 7200 -- -runs=10000000
# (-runs stops each harness after 10^7 executions, --seconds bounds it.)
#
# Environment of the harnesses (fuzz/fuzz.h): SHMBUS_FUZZ_TIMING=0,
# SHMBUS_FUZZ_ERRORS=0, SHMBUS_FUZZ_TRUNCATE=0, SHMBUS_FUZZ_TRACE=1.
# SHMBUS_JOBS (default 2) sets the build parallelism.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=${SHMBUS_FUZZ_SECONDS:-60}
only=
coverage=0
regen=0
minimize_h=
minimize_f=
extra=()
while (($#)); do
  case $1 in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --only) only=${2:?--only needs a harness}; shift 2 ;;
    --coverage) coverage=1; shift ;;
    --regen-corpus) regen=1; shift ;;
    --minimize) minimize_h=${2:?}; minimize_f=${3:?}; shift 3 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '4,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds needs a number" >&2; exit 2; }
jobs=${SHMBUS_JOBS:-2}

harnesses=(fuzz_attach fuzz_take fuzz_publish fuzz_double_fetch fuzz_record_file)
if [[ -n $only ]]; then
  [[ " ${harnesses[*]} " == *" $only "* ]] || { echo "fuzz.sh: no harness $only" >&2; exit 2; }
  harnesses=("$only")
fi

# Largest input per harness: fuzz_attach's raw segments are tens of KB.
max_len() { case $1 in fuzz_attach) echo 131072 ;; *) echo 4096 ;; esac; }

./scripts/deps.sh

cc=$(command -v clang-14 || command -v clang || true)
[[ -n $cc ]] || { echo "fuzz.sh: clang-14 not found (apt-get install clang-14 libfuzzer-14-dev libclang-rt-14-dev)" >&2; exit 1; }

# configure_build DIR EXTRA_CMAKE_ARGS...
configure_build() {
  local dir=$1
  shift
  nice -n 10 cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSHMBUS_BUILD_FUZZ=ON -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_EXAMPLES=OFF \
    -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_SANITIZE= "$@" >/dev/null
  nice -n 10 cmake --build "$dir" -j "$jobs" --target fuzz
}

echo "==== [fuzz] building build/fuzz ($cc)"
configure_build build/fuzz -DSHMBUS_FUZZ_COVERAGE=OFF
bin=build/fuzz/fuzz

# Each harness works in domain fz-<tag>-<pid>: what a killed one leaves goes
# with its pid.
leftovers() { find /dev/shm -maxdepth 1 -name "shmbus.fz-*-$1.*" -printf '%f\n' 2>/dev/null || true; }
remove_leftovers() { find /dev/shm -maxdepth 1 -name "shmbus.fz-*-$1.*" -exec rm -rf {} + 2>/dev/null || true; }

# run_fuzzer LOG ARGS...: runs a harness in the background with a watchdog;
# sets $pid and $rc. Cleans its objects; $left says whether it left any.
run_fuzzer() {
  local log=$1 limit=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pid=$!
  # The watchdog kills its own sleep when told to stop, so that it never
  # outlives the run (nor fires at a pid reused later), and keeps no pipe.
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "$limit" &
    nap=$!
    wait "$nap"
    kill -9 "$pid" 2>/dev/null
  ) </dev/null >/dev/null 2>&1 &
  local watchdog=$!
  rc=0
  wait "$pid" || rc=$?
  kill -TERM "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  left=$(leftovers "$pid")
  remove_leftovers "$pid"
}

if [[ -n $minimize_h ]]; then
  mkdir -p "fuzz/crashes/$minimize_h"
  out="fuzz/crashes/$minimize_h/minimized-$(basename "$minimize_f")"
  run_fuzzer "build/fuzz/minimize.log" 600 "$bin/$minimize_h" -minimize_crash=1 \
    -max_total_time=30 -timeout=10 -exact_artifact_path="$out" "$minimize_f"
  tail -n 5 build/fuzz/minimize.log
  echo "minimised input: $out ($(wc -c <"$out" 2>/dev/null || echo '?') bytes)"
  exit 0
fi

if ((regen)); then
  for h in "${harnesses[@]}"; do
    scratch=build/fuzz/regen/$h
    rm -rf "$scratch" && mkdir -p "$scratch/seeds" "$scratch/run" "$scratch/merged"
    SHMBUS_FUZZ_WRITE_SEEDS=$scratch/seeds "$bin/$h" >/dev/null 2>&1
    echo "==== [regen] $h: $(ls "$scratch/seeds" | wc -l) seeds, fuzzing ${seconds} s"
    # Fork mode goes on past crashes (the code may have known bugs).
    run_fuzzer "$scratch/fuzz.log" $((seconds + 300)) "$bin/$h" -max_total_time="$seconds" \
      -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -timeout=10 -max_len="$(max_len "$h")" -artifact_prefix="$scratch/" "$scratch/run" \
      "$scratch/seeds"
    # A crash ends the run early; the merge leaves crashing inputs out, so
    # the corpus passes on the code it was made with.
    ((rc == 0)) || echo "==== [regen] $h crashed (kept in $scratch/, log $scratch/fuzz.log): merging what it found"
    # Edge coverage only: a small corpus (the counters would keep hundreds).
    run_fuzzer "$scratch/merge.log" 900 "$bin/$h" -merge=1 -use_counters=0 -timeout=10 \
      -max_len="$(max_len "$h")" -artifact_prefix="$scratch/" "$scratch/merged" \
      "$scratch/seeds" "$scratch/run"
    grep -q 'MERGE-OUTER: [0-9]* new files' "$scratch/merge.log" ||
      { echo "fuzz.sh: merge of $h failed (see $scratch/merge.log)"; exit 1; }
    rm -rf "fuzz/corpus/$h" && mkdir -p "fuzz/corpus/$h"
    # The regression seeds stay whatever the merge thinks of them.
    cp "$scratch/merged/"* "fuzz/corpus/$h/"
    cp "$scratch/seeds/"regress-* "fuzz/corpus/$h/" 2>/dev/null || true
    echo "==== [regen] $h: $(ls "fuzz/corpus/$h" | wc -l) inputs in fuzz/corpus/$h"
  done
  exit 0
fi

# The harnesses print, at exit, how often each operation returned each
# result: the validation branches they reached, by error code.
export SHMBUS_FUZZ_STATS=1
status=0
rows=()
for h in "${harnesses[@]}"; do
  corpus=fuzz/corpus/$h
  new=build/fuzz/new/$h
  crashes=fuzz/crashes/$h
  log=build/fuzz/$h.log
  rm -rf "$new" && mkdir -p "$new" "$corpus" "$crashes"
  echo
  echo "==== [fuzz] $h: ${seconds} s on $corpus ($(ls "$corpus" | wc -l) inputs)"
  # Corpus first: libFuzzer writes new inputs into the first directory.
  run_fuzzer "$log" $((seconds + 300)) "$bin/$h" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len="$(max_len "$h")" -print_final_stats=1 \
    -artifact_prefix="$crashes/" "${extra[@]}" "$new" "$corpus"
  # libFuzzer's last status line: "#1234<TAB>DONE   cov: 700 ft: 2900 corp: ..."
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED|RELOAD)' "$log" |
              tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' <<<"$done_line" | awk '{print $2}' || true)
  ft=$(grep -Eo 'ft: [0-9]+' <<<"$done_line" | awk '{print $2}' || true)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -n 1 || true)
  sed -n '/^==shmbus-fuzz== results by operation/,/^[^ ]/p' "$log" | grep '^  ' || true
  verdict=ok
  if ((rc != 0)); then
    verdict="FAILED (exit $rc)"
    status=1
    artifact=$(grep -Eo "Test unit written to [^ ]+" "$log" | tail -n 1 |
               sed 's/Test unit written to //' || true)
    echo "---- $h failed; the end of its log ($log):"
    grep -Ev '^(#[0-9]+|INFO:|	NEW_FUNC)' "$log" | tail -n 40
    cp "$log" "$crashes/" 2>/dev/null || true
    [[ -n $artifact ]] && echo "---- crashing input: $artifact (minimise: scripts/fuzz.sh --minimize $h $artifact)"
  elif [[ -n $left ]]; then
    verdict="FAILED (left objects in /dev/shm)"
    status=1
    echo "---- $h left behind in /dev/shm:"
    printf '  %s\n' $left
  fi
  rows+=("$(printf '%-18s %10s %8s %6s %7s %6s  %s' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${added:-?}" "$verdict")")
done

echo
echo "==== [fuzz] summary (${seconds} s per harness)"
printf '%-18s %10s %8s %6s %7s %6s  %s\n' harness executions exec/s cov ft new result
printf '%s\n' "${rows[@]}"

if ((coverage)); then
  echo
  echo "==== [coverage] building build/fuzz-cov"
  configure_build build/fuzz-cov -DSHMBUS_FUZZ_COVERAGE=ON
  profiles=build/fuzz-cov/profiles
  rm -rf "$profiles" && mkdir -p "$profiles"
  objects=()
  for h in "${harnesses[@]}"; do
    # Each input once: the corpus and what this run found.
    export LLVM_PROFILE_FILE="$profiles/$h.%p.profraw"
    run_fuzzer "build/fuzz-cov/$h.log" 1800 "build/fuzz-cov/fuzz/$h" -runs=0 -timeout=10 \
      -max_len="$(max_len "$h")" -artifact_prefix="$profiles/" "fuzz/corpus/$h" \
      "build/fuzz/new/$h"
    unset LLVM_PROFILE_FILE
    ((rc == 0)) || echo "fuzz.sh: $h failed over its corpus (build/fuzz-cov/$h.log)"
    llvm-profdata-14 merge -sparse "$profiles/$h".*.profraw -o "$profiles/$h.profdata"
    objects+=(-object "build/fuzz-cov/fuzz/$h")
    echo "---- $h alone:"
    llvm-cov-14 report "build/fuzz-cov/fuzz/$h" -instr-profile="$profiles/$h.profdata" \
      src/segment.c src/subscriber.c src/publisher.c src/service.c | tail -n 1
  done
  llvm-profdata-14 merge -sparse "$profiles"/*.profraw -o "$profiles/all.profdata"
  echo "---- all harnesses together (regions, functions, lines, branches):"
  llvm-cov-14 report "${objects[@]:1}" -instr-profile="$profiles/all.profdata" \
    src/segment.c src/subscriber.c src/publisher.c src/service.c src/ring.h src/liveness.c
  llvm-cov-14 show "${objects[@]:1}" -instr-profile="$profiles/all.profdata" -format=html \
    -show-branches=count -output-dir=build/fuzz-cov/html src/ >/dev/null
  echo "line by line: build/fuzz-cov/html/index.html"
fi

exit "$status"
