#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/format.sh [--check]
#
# Formats the C and C++ sources the project owns (src, include, tests,
# examples, bench, fuzz, tools) with clang-format-14 and .clang-format.
#   --check  change nothing; list the files that are not formatted and exit
#            1 if there are any (scripts/test.sh runs this)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

check=0
case ${1:-} in
  --check) check=1 ;;
  "") ;;
  -h|--help) sed -n '4,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "format.sh: unknown option $1" >&2; exit 2 ;;
esac

cf=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z $cf ]]; then
  echo "format.sh: clang-format-14 not found (scripts/deps.sh installs it)" >&2
  exit 1
fi

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- 'src/*.[ch]' 'include/*.h' 'include/*.hpp' \
  'tests/*.[ch]' 'tests/*.cpp' 'tests/*.hpp' 'examples/*.[ch]' 'examples/*.cpp' \
  'examples/*.hpp' 'bench/*.[ch]' 'bench/*.cpp' 'fuzz/*.[ch]' 'tools/*.[ch]' 'tools/*.cpp')

if ((check)); then
  bad=()
  for f in "${files[@]}"; do
    "$cf" --style=file "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if ((${#bad[@]})); then
    echo "format.sh: not formatted (run scripts/format.sh):" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
  exit 0
fi
"$cf" --style=file -i "${files[@]}"
