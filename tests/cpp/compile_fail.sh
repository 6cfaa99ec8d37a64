#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# usage: compile_fail.sh CXX SOURCE INCLUDE_DIR CASE REGEX [FLAG...]
#
# Compiles case CASE of SOURCE (-DSHMBUS_COMPILE_FAIL_CASE=CASE, syntax
# only) and passes when the compiler refuses it with a message matching
# REGEX (grep -E). Compiling, or failing with another message, fails.
set -u
[ $# -ge 5 ] || { echo "usage: $0 CXX SOURCE INCLUDE_DIR CASE REGEX [FLAG...]" >&2; exit 2; }
cxx=$1 src=$2 inc=$3 case=$4 regex=$5
shift 5
out=$("$cxx" -fsyntax-only -I"$inc" -DSHMBUS_COMPILE_FAIL_CASE="$case" "$@" "$src" 2>&1)
rc=$?
if [ $rc -eq 0 ]; then
  echo "compile_fail: case $case compiled, but must not" >&2
  exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$regex"; then
  echo "compile_fail: case $case failed without the expected message /$regex/:" >&2
  printf '%s\n' "$out" | head -n 30 >&2
  exit 1
fi
printf '%s\n' "$out" | grep -E -m 1 -- "$regex"
echo "compile_fail: case $case refused as expected"
exit 0
