# SPDX-License-Identifier: Apache-2.0
#
# What the shell tests of the `shmbus` command share (sourced, not run):
#   source "$(dirname "$0")/cli_support.sh" NAME SHMBUS_CLI
# sets cli (the command), work (a temporary directory, removed at exit
# unless KEEP is set), root ($work/root, a directory backend of the test's
# own), domain (NAME and the shell's pid) and emulator ($SHMBUS_EMULATOR,
# e.g. scripts/wine-run.sh for a Windows build: wine maps the host's / to a
# drive, so host paths work as they are); skips (exit 77) without python3;
# at exit, sends SIGTERM to the test's background jobs that still run
# (which the command takes as Ctrl-C: it closes its ports) and waits.
#   fail MESSAGE    says the test failed, shows the end of every
#                   $work/*.err, exits 1
#   run ARGS...     the command with --domain and --dir, bounded by
#                   timeout(1) (60 s): a hang fails instead of stalling
#   start NAME ARGS...  run in the background, output in $work/NAME.out
#                   and .err; $last is its pid
#   finished PID STATUS WHAT  waits for PID, fails unless it exits STATUS
cli_test=${1:?usage: source cli_support.sh NAME SHMBUS_CLI}
cli=${2:?usage: $cli_test.sh SHMBUS_CLI}
if ! command -v python3 >/dev/null; then
  echo "$cli_test: SKIPPED: python3 is not installed"
  exit 77
fi

work=$(mktemp -d)
root=$work/root
mkdir "$root"
domain=$cli_test$$
domain=${domain//_/}
emulator=${SHMBUS_EMULATOR:-}

cli_finish() {
  # Only jobs that still run (jobs -pr): never a pid that ended and may
  # have been reused.
  local p
  for p in $(jobs -pr); do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cli_finish EXIT

fail() {
  echo "$cli_test: FAILED: $*" >&2
  local f
  for f in "$work"/*.err; do
    [[ -s $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
  done
  exit 1
}

cli_limit=()
command -v timeout >/dev/null && cli_limit=(timeout 60)
run() { "${cli_limit[@]}" ${emulator:+"$emulator"} "$cli" "$@" --domain "$domain" --dir "$root"; }

start() {
  local name=$1
  shift
  # exec: $last is timeout(1) (or the command) itself, not a subshell, so
  # that a signal sent to it reaches the command (timeout passes it on).
  (exec "${cli_limit[@]}" ${emulator:+"$emulator"} "$cli" "$@" --domain "$domain" \
    --dir "$root") >"$work/$name.out" 2>"$work/$name.err" &
  last=$!
}

finished() {
  local status=0
  wait "$1" || status=$?
  [[ $status == "$2" ]] || fail "$3 exited with $status, not $2"
}
