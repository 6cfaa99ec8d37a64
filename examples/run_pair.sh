#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Runs examples as an end-to-end test (ctest label "examples").
#
#   run_pair.sh SUB_BIN PUB_BIN COUNT
#       Starts SUB_BIN COUNT in the background, then PUB_BIN COUNT, waits for
#       both and fails if either fails.
#   run_pair.sh --alone PROGRAM [ARG...]
#       Runs one program that does both sides itself (the C++ driver).
#
# SHMBUS_EXAMPLE_RUN, when set, is a command that runs each program (the
# cross-compiling emulator: scripts/wine-run.sh for the Windows build).
#
# Either way the programs get a domain of their own (SHMBUS_DOMAIN), so
# parallel tests never meet, and afterwards nothing of that domain may be
# left in /dev/shm: a leftover fails the test (and is removed).
# Exit status: 0 pass, 1 fail, 2 bad usage.
set -u

usage() {
  echo "usage: $0 SUB_BIN PUB_BIN COUNT | $0 --alone PROGRAM [ARG...]" >&2
  exit 2
}

# Unique per run: the shell's pid, plus a nonce in case of pid reuse by a
# crashed earlier run. At most SHMBUS_DOMAIN_MAX (32) of [A-Za-z0-9_-].
SHMBUS_DOMAIN="example-$$-$(od -An -N3 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')"
export SHMBUS_DOMAIN

# Fails (and cleans up) if the domain left anything in /dev/shm. Systems
# without /dev/shm (macOS) keep POSIX shared memory out of sight: skip.
check_leftovers() {
  [ -d /dev/shm ] || return 0
  leftovers=$(ls /dev/shm 2>/dev/null | grep -F "shmbus.$SHMBUS_DOMAIN." || true)
  [ -z "$leftovers" ] && return 0
  echo "run_pair: left behind in /dev/shm:" >&2
  echo "$leftovers" | sed 's/^/  /' >&2
  rm -f /dev/shm/"shmbus.$SHMBUS_DOMAIN".*
  return 1
}

if [ "${1:-}" = "--alone" ]; then
  shift
  [ $# -ge 1 ] || usage
  echo "run_pair: domain $SHMBUS_DOMAIN: $*"
  ${SHMBUS_EXAMPLE_RUN:-} "$@"
  status=$?
  [ $status -eq 0 ] || echo "run_pair: $1 failed (exit $status)" >&2
  check_leftovers || status=1
  [ $status -eq 0 ] && echo "run_pair: pass"
  exit $([ $status -eq 0 ] && echo 0 || echo 1)
fi

[ $# -eq 3 ] || usage
sub_bin=$1
pub_bin=$2
count=$3
echo "run_pair: domain $SHMBUS_DOMAIN: $sub_bin $count & $pub_bin $count"

# The subscriber first, so that the publisher finds it; the publisher waits
# for it a few seconds in any case.
${SHMBUS_EXAMPLE_RUN:-} "$sub_bin" "$count" &
sub_pid=$!

${SHMBUS_EXAMPLE_RUN:-} "$pub_bin" "$count"
pub_status=$?
if [ $pub_status -ne 0 ]; then
  echo "run_pair: publisher failed (exit $pub_status)" >&2
  # The subscriber would only wait for its timeout now.
  kill "$sub_pid" 2>/dev/null
fi

wait "$sub_pid"
sub_status=$?
[ $sub_status -eq 0 ] || [ $pub_status -ne 0 ] ||
  echo "run_pair: subscriber failed (exit $sub_status)" >&2

status=0
[ $pub_status -eq 0 ] && [ $sub_status -eq 0 ] || status=1
check_leftovers || status=1
[ $status -eq 0 ] && echo "run_pair: pass"
exit $status
