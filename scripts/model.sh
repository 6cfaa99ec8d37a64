#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/model.sh [--deep] [--jobs N] [--list] [RUN...]
#
# Model-checks the protocol model model/shmbus.pml with Spin (model/README.md):
# spin -a, cc pan.c, ./pan (safety, exhaustive search). First the correct
# model in each of its configurations, which must show no error; then each
# mutant, which must give a counterexample: a violated assertion of the
# properties; then the known issues: runs that model the C where it is known
# to be wrong, whose counterexample is expected as well (model/README.md).
# One line per run: name, expectation, result, states stored, seconds.
# Exits 1 when any run does not do what it must.
#
#   RUN...     only these runs (names as --list prints them)
#   --deep     also the larger configurations (not in CI: minutes, and
#              some GB of memory each)
#   --jobs N   runs at a time (default: 2, or 1 on a single CPU)
#   --list     prints the runs and their flags
#
# Builds in a temporary directory, removed on exit; needs spin and a C
# compiler ($CC, default cc). About two minutes on two slow cores.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model=$root/model/shmbus.pml

# name | expect (ok, cex: a counterexample, known: a known issue's) | spin -D
# flags [| extra cc flags]
runs=(
  "two-subs-death|ok|-DNSUB=2 -DNPUB=3"
  "two-subs-forge|ok|-DNSUB=2 -DNPUB=3 -DFORGE -DNODEATH"
  "one-sub-long|ok|-DNSUB=1 -DNPUB=7 -DFORGE"
  "stale-release|ok|-DNSUB=1 -DNPUB=6 -DNODEATH -DSTALE"
  "MUTANT_ORDER|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_ORDER"
  "MUTANT_ORDER_POP|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_ORDER_POP"
  "MUTANT_ORDER_DONE|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_ORDER_DONE"
  "MUTANT_NO_RECLAIM|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_NO_RECLAIM"
  "MUTANT_RECLAIM_TWICE|cex|-DNSUB=2 -DNPUB=3 -DMUTANT_RECLAIM_TWICE"
  "MUTANT_EVICT_NO_CHECK|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_EVICT_NO_CHECK"
  "MUTANT_EVICT_NO_MARK|cex|-DNSUB=1 -DNPUB=7 -DFORGE -DMUTANT_EVICT_NO_MARK"
  "MUTANT_NO_MARK|cex|-DNSUB=2 -DNPUB=3 -DFORGE -DNODEATH -DMUTANT_NO_MARK"
  "MUTANT_NO_HIST_REF|cex|-DNSUB=2 -DNPUB=3 -DMUTANT_NO_HIST_REF"
  "MUTANT_HANDLE_NO_SEQ|cex|-DNSUB=1 -DNPUB=6 -DNODEATH -DSTALE -DMUTANT_HANDLE_NO_SEQ"
  # Known issues (expect "known"): runs that model the C where it is known
  # to be wrong, until it is fixed. None at present.
)
deep_runs=(
  "deep-two-subs-death|ok|-DNSUB=2 -DNPUB=4"
  "deep-two-subs-forge|ok|-DNSUB=2 -DNPUB=4 -DFORGE -DNODEATH"
)

jobs=
list=0
only=()
while (($#)); do
  case $1 in
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --list) list=1 ;;
    --deep) runs+=("${deep_runs[@]}") ;;
    -h|--help) sed -n '4,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "model.sh: unknown option $1" >&2; exit 2 ;;
    *) only+=("$1") ;;
  esac
  shift
done

if ((list)); then
  for r in "${runs[@]}"; do
    IFS='|' read -r name expect flags ccflags <<<"$r"
    printf '%-22s %-6s %s %s\n' "$name" "$expect" "$flags" "${ccflags:-}"
  done
  exit 0
fi

if ! command -v spin >/dev/null 2>&1; then
  echo "model.sh: spin not found (Debian: apt-get install spin; scripts/deps.sh installs it)" >&2
  exit 1
fi
cc=${CC:-cc}
if [[ -z $jobs ]]; then
  jobs=$(nproc 2>/dev/null || echo 1)
  ((jobs > 2)) && jobs=2
fi

selected=()
for r in "${runs[@]}"; do
  name=${r%%|*}
  if ((${#only[@]})); then
    for o in "${only[@]}"; do [[ $o == "$name" ]] && selected+=("$r"); done
  else
    selected+=("$r")
  fi
done
if ((${#only[@]} && ${#selected[@]} != ${#only[@]})); then
  echo "model.sh: unknown run in: ${only[*]} (see --list)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shmbus-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One run in $work/<name>: writes its result line to $work/<name>/line and
# 0 or 1 (as expected or not) to $work/<name>/status.
one_run() {
  local name=$1 expect=$2 flags=$3 ccflags=${4:-}
  local dir=$work/$name start end secs states result ok=0 errors assertion line depth opt=-O2
  mkdir -p "$dir"
  cp "$model" "$dir/shmbus.pml"
  # A search that stops at its first error gains nothing from -O2, which
  # costs seconds of compilation; a whole search keeps its states compressed
  # (-DCOLLAPSE: a quarter of the memory, a tenth more time).
  if [[ $expect == ok ]]; then
    ccflags="-DCOLLAPSE $ccflags"
  else
    opt=-O0
  fi
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # the flags are words
  if ! (cd "$dir" && spin -a $flags shmbus.pml >spin.log 2>&1 &&
        "$cc" $opt -w -DSAFETY $ccflags -o pan pan.c >cc.log 2>&1); then
    printf '%-22s %-6s %-36s\n' "$name" "$expect" "BUILD FAILED (see below)" >"$dir/line"
    cat "$dir/spin.log" "$dir/cc.log" 2>/dev/null | head -20 >>"$dir/line"
    echo 1 >"$dir/status"
    return
  fi
  # -m: the search depth bound (depth reached is a few thousand); -n: no
  # listing of unreached code.
  (cd "$dir" && ./pan -m200000 -n >pan.log 2>&1) || true
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  states=$(awk '/states, stored/ { print $1; exit }' "$dir/pan.log")
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$dir/pan.log" | head -1)
  assertion=$(grep -m1 -o 'assertion violated.*' "$dir/pan.log" || true)
  depth=$(grep -m1 -o 'at depth [0-9]*' "$dir/pan.log" | cut -c10- || true)
  if grep -q 'max search depth too small' "$dir/pan.log"; then
    result="INCOMPLETE (depth bound reached)"
  elif [[ $errors == 0 ]]; then
    result="no error"
    [[ $expect == ok ]] && ok=1
  elif [[ -n $errors ]]; then
    if [[ -n $assertion && $assertion != *"invalid array index"* ]]; then
      # The trail, replayed, names the assertion's line; its comment names
      # the property (model/README.md).
      # shellcheck disable=SC2086
      line=$(cd "$dir" && spin -t $flags shmbus.pml 2>&1 |
             sed -n 's/^spin: shmbus.pml:\([0-9]*\), Error: assertion violated.*/\1/p' | head -1)
      result="counterexample (trail of ${depth:-?} steps)"
      if [[ -n $line ]]; then
        result+=" at shmbus.pml:$line: $(sed -n "${line}p" "$dir/shmbus.pml" |
                                         sed -n 's|.*/\* *\(.*[^ ]\) *\*/.*|\1|p')"
      else
        result+=": ${assertion:19:70}"
      fi
      [[ $expect != ok ]] && ok=1
    else
      result="error: $(grep -m1 '^pan:' "$dir/pan.log" | cut -c1-80)"
    fi
  else
    result="pan failed: $(tail -1 "$dir/pan.log" | cut -c1-60)"
  fi
  printf '%-22s %-6s %-8s %10s states %6ss  %s\n' "$name" "$expect" \
    "$( ((ok)) && echo PASS || echo FAIL)" "${states:-?}" "$secs" "$result" >"$dir/line"
  if ((!ok)) && [[ $expect == known && $errors == 0 ]]; then
    echo "    the known issue no longer gives a counterexample: was the model changed? (model/README.md)" >>"$dir/line"
  fi
  echo $((!ok)) >"$dir/status"
}

echo "model.sh: $(spin -V | head -1), ${#selected[@]} runs, $jobs at a time (exhaustive: -DSAFETY -DCOLLAPSE)"
total_start=$(date +%s)
running=0
for r in "${selected[@]}"; do
  IFS='|' read -r name expect flags ccflags <<<"$r"
  one_run "$name" "$expect" "$flags" "$ccflags" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=0
for r in "${selected[@]}"; do
  name=${r%%|*}
  cat "$work/$name/line"
  [[ $(cat "$work/$name/status") == 0 ]] || failed=$((failed + 1))
done
echo "model.sh: $((${#selected[@]} - failed)) of ${#selected[@]} as expected in $(($(date +%s) - total_start)) s"
((failed == 0))
