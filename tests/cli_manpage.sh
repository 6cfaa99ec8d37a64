#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/cli_manpage.sh SHMBUS_CLI MANPAGE
#
# Keeps the man page (docs/shmbus.1) honest against the command it
# describes: the page renders without a warning (groff -man -ww), every
# command that `shmbus --help` lists has its subsection under COMMANDS,
# every option in `shmbus COMMAND --help` is in that subsection or under
# COMMON OPTIONS, and no subsection names an option its command does not
# take (a removed option leaves no trace). The page is read as roff
# source, with its escapes (\-, \fB, ...) taken out.
# Exit 0 pass, 1 fail, 77 skipped (no groff: Debian's groff-base).
set -euo pipefail
cli=${1:?usage: cli_manpage.sh SHMBUS_CLI MANPAGE}
page=${2:?usage: cli_manpage.sh SHMBUS_CLI MANPAGE}
if ! command -v groff >/dev/null; then
  echo "cli_manpage: SKIPPED: groff is not installed (Debian: groff-base)"
  exit 77
fi

failures=0
fail() {
  echo "cli_manpage: FAILED: $*" >&2
  failures=$((failures + 1))
}

# 1. It renders as man renders it, without a warning (groff exits 0 even
# when it warns: what it prints is the verdict).
warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff exited with $?"
[[ -z $warnings ]] || fail "groff -man -ww warns:"$'\n'"$warnings"

# The page as lines "SECTION<TAB>SUBSECTION<TAB>text", escapes removed.
sections=$(awk '
  { gsub(/\\-/, "-"); gsub(/\\f[BIRP]/, ""); gsub(/\\[%&]/, ""); gsub(/\\\(aq/, "\047") }
  /^\.\\"/ { next }
  /^\.SH / { sh = substr($0, 5); gsub(/"/, "", sh); ss = ""; next }
  /^\.SS / { ss = substr($0, 5); gsub(/"/, "", ss); next }
  { print sh "\t" ss "\t" $0 }
' "$page")
section_text() {  # SECTION [SUBSECTION]
  awk -F'\t' -v sh="$1" -v ss="${2-}" '$1 == sh && (ss == "" || $2 == ss) { print $3 }' \
    <<<"$sections"
}
common=$(section_text "COMMON OPTIONS")
[[ -n $common ]] || fail "no COMMON OPTIONS section"

# The options a help text names: --long and -x words (not the '-' that
# stands for standard input or output).
options_of() {
  grep -oE '(^|[[:space:]([])--?[a-z][a-z-]*' | sed 's/^[[:space:](\[]//' | sort -u
}
has_option() {  # TEXT OPTION: OPTION as a whole word of TEXT
  grep -qwF -e "$2" <<<"$1"
}

top_help=$("$cli" --help)
mapfile -t commands < <(sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' <<<"$top_help")
((${#commands[@]} > 0)) || fail "no commands in 'shmbus --help':"$'\n'"$top_help"

# 2. The options of the usage line are common to every command.
while read -r opt; do
  [[ -z $opt ]] || has_option "$common" "$opt" ||
    fail "'shmbus --help' names $opt, which COMMON OPTIONS does not"
done < <(head -n 1 <<<"$top_help" | options_of)

# 3. Every command, and every option of its help.
checked=0
for c in "${commands[@]}"; do
  text=$(section_text COMMANDS "$c")
  if [[ -z $text ]]; then
    fail "command $c has no subsection (.SS $c) under COMMANDS"
    continue
  fi
  help=$("$cli" "$c" --help) || { fail "shmbus $c --help exited with $?"; continue; }
  mapfile -t accepted < <(options_of <<<"$help")
  for opt in "${accepted[@]}"; do
    checked=$((checked + 1))
    has_option "$text" "$opt" || has_option "$common" "$opt" ||
      fail "shmbus $c takes $opt, which neither its subsection nor COMMON OPTIONS names"
  done
  # ... and no option the command does not take. One its help does not
  # name may still be taken (-n is --count's alias in every command): the
  # command says. "--help" after it stops a command that takes it before
  # it runs (or is the value of one that wants a value, and a usage error
  # follows: no positional argument).
  while read -r opt; do
    [[ -z $opt ]] && continue
    printf '%s\n' "${accepted[@]}" | grep -qxF -e "$opt" && continue
    said=$(timeout 10 "$cli" "$c" "$opt" --help 2>&1 >/dev/null) || true
    [[ $said != *"unknown option"* ]] ||
      fail "the subsection of $c names $opt, which shmbus $c does not take"
  done < <(options_of <<<"$text")
done

# 4. Every subsection under COMMANDS is a command.
while read -r ss; do
  [[ -z $ss ]] && continue
  printf '%s\n' "${commands[@]}" | grep -qxF -e "$ss" ||
    fail "subsection $ss under COMMANDS is not a command of 'shmbus --help'"
done < <(awk -F'\t' '$1 == "COMMANDS" && $2 != "" { print $2 }' <<<"$sections" | sort -u)

if ((failures)); then
  echo "cli_manpage: $failures failures" >&2
  exit 1
fi
echo "cli_manpage: OK: ${#commands[@]} commands, $checked options of their help texts, no groff warning"
