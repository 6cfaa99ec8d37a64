#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The hot-path audit: heap allocations and system calls made by shmbus
# during steady-state loan/publish/take/release cycles. Both must be 0.
#   tools/hotpath-audit.sh AUDIT_BINARY [CYCLES]
# Allocations are counted inside the program (malloc interposed); system
# calls are counted by strace between the program's two getppid() markers.
set -euo pipefail
bin=${1:?usage: hotpath-audit.sh AUDIT_BINARY [CYCLES]}
cycles=${2:-1000000}
if ! command -v strace >/dev/null; then
  echo "hotpath-audit: SKIPPED: strace is not installed (apt-get install strace)"
  exit 77
fi
trace=$(mktemp)
trap 'rm -f "$trace"' EXIT
status=0
strace -f -qq -o "$trace" "$bin" "$cycles" || status=$?
# Lines between the first and the last getppid() call are the hot loop's.
calls=$(awk '/getppid\(/ { n++; next } n == 1 { c++ } END { print c + 0 }' "$trace")
markers=$(grep -c 'getppid(' "$trace" || true)
if [ "$markers" -ne 2 ]; then
  echo "hotpath-audit: expected 2 markers in the trace, found $markers" >&2
  exit 1
fi
echo "hotpath-audit: $calls system calls during $cycles cycles"
if [ "$calls" -ne 0 ]; then
  awk '/getppid\(/ { n++; next } n == 1' "$trace" | head -n 20
  status=1
fi
exit "$status"
