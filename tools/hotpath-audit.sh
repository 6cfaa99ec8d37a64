#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The hot-path audit: heap allocations and system calls made by shmbus
# during steady-state cycles (tools/hotpath_audit.c).
#   tools/hotpath-audit.sh AUDIT_BINARY [CYCLES]
# Allocations are counted inside the program (malloc interposed); system
# calls are counted by strace between the program's getppid() markers, for
# the marking process only:
#   phase 1 (busy loan/publish/take/release): must be 0;
#   phase 2 (publishes to a subscriber sleeping in another process): at
#            most 1 per publish.
set -euo pipefail
bin=${1:?usage: hotpath-audit.sh AUDIT_BINARY [CYCLES]}
cycles=${2:-1000000}
sleep_cycles=1000 # SLEEP_CYCLES in hotpath_audit.c
if ! command -v strace >/dev/null; then
  echo "hotpath-audit: SKIPPED: strace is not installed (apt-get install strace)"
  exit 77
fi
trace=$(mktemp)
trap 'rm -f "$trace"' EXIT
status=0
strace -f -qq -o "$trace" "$bin" "$cycles" || status=$?
markers=$(grep -c 'getppid(' "$trace" || true)
if [ "$markers" -ne 4 ]; then
  echo "hotpath-audit: expected 4 markers in the trace, found $markers" >&2
  exit 1
fi
pid=$(awk '/getppid\(/ { print $1; exit }' "$trace")
# The marking process's calls inside phase <n>, one per line. Not counted:
# the "<... resumed>" half of a call that strace split in two, and the
# lines strace writes for signals ("--- SIGCHLD ...", the sleeping child
# exiting) and exits ("+++"), which are not calls.
phase() {
  awk -v pid="$pid" -v want="$1" '
    $1 == pid && /getppid\(/ { n++; next }
    $1 == pid && n == 2 * want - 1 && !/resumed>/ && $2 != "---" && $2 != "+++" { print }' "$trace"
}
busy=$(phase 1 | wc -l)
asleep=$(phase 2 | wc -l)
futex=$(phase 2 | grep -c 'futex(' || true)
echo "hotpath-audit: phase 1: $busy system calls during $cycles busy cycles"
echo "hotpath-audit: phase 2: $asleep system calls ($futex futex) during $sleep_cycles publishes to a sleeping subscriber"
if [ "$busy" -ne 0 ]; then
  phase 1 | head -n 20
  status=1
fi
if [ "$asleep" -gt "$sleep_cycles" ]; then
  phase 2 | sort | uniq -c | sort -rn | head -n 20
  status=1
fi
exit "$status"
