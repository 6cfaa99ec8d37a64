#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/docs.sh [--out DIR]
#
# The API reference: doxygen (docs/Doxyfile) over include/shmbus.h and
# include/shmbus.hpp, as HTML into build/docs/html (open index.html).
# Fails on any doxygen warning (a public function, type, member,
# enumerator or macro without a doc comment, a broken command or
# reference) and when an internal name (shmbus__*, SHMBUS__*) is among the
# documented symbols. scripts/test.sh runs it before the suites; it takes
# about a second.
#
#   --out DIR  write into DIR instead of build/docs
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"  # the Doxyfile's paths are relative to the root

out=$root/build/docs
while (($#)); do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) sed -n '4,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v doxygen >/dev/null 2>&1; then
  echo "docs.sh: doxygen not found (scripts/deps.sh installs it)" >&2
  exit 1
fi

# The version on the pages, from the header that defines it.
version=$(sed -n 's/^#define SHMBUS_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
  include/shmbus/version.h | paste -sd.)

# Pages of a removed symbol must not survive from an earlier run.
rm -rf "$out/html" "$out/xml" "$out/shmbus.tag"
log=$out/doxygen.log
rc=0
SHMBUS_DOCS_OUT=$out SHMBUS_VERSION=$version doxygen docs/Doxyfile >"$log" 2>&1 || rc=$?
# QUIET: everything doxygen prints is a warning. FAIL_ON_WARNINGS makes the
# exit status say so too; a non-empty log fails either way.
if ((rc != 0)) || [[ -s $log ]]; then
  cat "$log" >&2
  echo "docs.sh: FAILED: doxygen $(doxygen --version) reported the above (exit $rc);" \
    "document what it names (see the comments in docs/Doxyfile)" >&2
  exit 1
fi

# Every documented symbol is in the tag file: none may be internal.
if internal=$(grep -Eo '<name>[^<]*(shmbus__|SHMBUS__)[^<]*</name>' "$out/shmbus.tag"); then
  echo "docs.sh: FAILED: internal names are documented (hide them with @cond internal):" >&2
  sed 's/<[^>]*>//g; s/^/  /' <<<"$internal" | sort -u >&2
  exit 1
fi

# Doxygen does not warn about an undocumented enumerator of a documented
# enum: in the XML, each has a <para> in its description or none.
mapfile -t undocumented < <(awk '
  /<enumvalue / { in_value = 1; name = ""; documented = 0; next }
  in_value && /<name>/ { name = $0; gsub(/ *<\/?name> */, "", name) }
  in_value && /<para>/ { documented = 1 }
  in_value && /<\/enumvalue>/ { if (!documented) print name; in_value = 0 }
' "$out"/xml/*.xml | sort -u)
if ((${#undocumented[@]})); then
  echo "docs.sh: FAILED: enumerators without a doc comment (/**< ... */ after each):" >&2
  printf '  %s\n' "${undocumented[@]}" >&2
  exit 1
fi

echo "docs.sh: $out/html/index.html (doxygen $(doxygen --version), no warnings)"
