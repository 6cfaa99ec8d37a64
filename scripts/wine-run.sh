#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/wine-run.sh <program.exe> [args...]
#        scripts/wine-run.sh --init    create the prefix, start the server, run nothing
#        scripts/wine-run.sh --stop    stop the persistent wineserver (wineserver -k)
#
# Runs a Windows program under wine64, headless, and exits with its exit
# code. This is CMAKE_CROSSCOMPILING_EMULATOR in
# cmake/toolchains/mingw-w64-x86_64.cmake, so ctest runs every test
# through it.
#
#   - WINEPREFIX is $SHMBUS_WINEPREFIX, default <repo>/build/wine-prefix (a
#     WINEPREFIX already in the environment is ignored, so that a user's
#     ~/.wine is never touched). The prefix is created on first use
#     (wineboot -i: about 5 s and 700 MB here), under a lock so that tests
#     started in parallel by ctest -j wait for one creation.
#   - A persistent wineserver (wineserver -p) is started once, so that each
#     program does not pay for server start-up (about 40 ms a run with it);
#     all programs run in the one server, which is where named objects
#     (Local\ sections, events) live. Stop it with --stop.
#   - WINEDEBUG=-all (override with SHMBUS_WINEDEBUG, e.g. =err+all),
#     WINEDLLOVERRIDES="mscoree,mshtml=" (no Mono/Gecko installer), no
#     DISPLAY: console programs need no X server.
#   - WINEPATH holds the MinGW runtime DLL directories (winpthread,
#     libgcc_s_seh, libstdc++) so that programs that are not linked with
#     -static still start.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

wine=/usr/lib/wine/wine64           # Debian's wine64 loader (dpkg -L wine64)
server=/usr/lib/wine/wineserver64   # not /usr/bin/wineserver: Debian's wrapper adds -p0
note() { echo "wine-run.sh: $*" >&2; }

for bin in "$wine" "$server"; do
  if [[ ! -x $bin ]]; then
    note "$bin not found: run scripts/win-deps.sh (Debian: wine wine64)"
    exit 127
  fi
done

export WINEPREFIX=${SHMBUS_WINEPREFIX:-$root/build/wine-prefix}
export WINELOADER=$wine
export WINESERVER=$server
export WINEDEBUG=${SHMBUS_WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml="
export WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY
mingw_dlls="/usr/lib/gcc/x86_64-w64-mingw32/12-posix;/usr/x86_64-w64-mingw32/lib"
export WINEPATH="${WINEPATH:+$WINEPATH;}$mingw_dlls"

ready=$WINEPREFIX/.shmbus-ready
lock=$WINEPREFIX.lock

# A persistent server: exits 0 when it starts one (it detaches), 2 when one
# already runs for this prefix. Either is fine.
# 9>&-: the server and wineboot's services outlive this script and must not
# inherit the lock.
start_server() {
  "$server" -p </dev/null >/dev/null 2>&1 9>&- || true
}

# Creates the prefix once (under the lock); returns at once when it exists.
init_prefix() {
  [[ -e $ready ]] && return 0
  mkdir -p "$(dirname "$WINEPREFIX")"
  exec 9>"$lock"
  flock 9
  if [[ ! -e $ready ]]; then
    local t0=$SECONDS log=$WINEPREFIX.boot.log
    note "creating the wine prefix $WINEPREFIX (once, ~5-15 s)"
    # wineboot runs in the persistent server, so nobody waits for a
    # short-lived one to save the registry and exit.
    mkdir -p "$WINEPREFIX"
    start_server
    if ! "$wine" wineboot -i >"$log" 2>&1 9>&-; then
      note "wineboot -i failed; see $log"
      exit 125
    fi
    : >"$ready"
    note "prefix created in $((SECONDS - t0)) s"
  fi
  exec 9>&-
}

case ${1:-} in
  --stop)
    # -k kills the server (and any program still running in it).
    if [[ -d $WINEPREFIX ]]; then "$server" -k 2>/dev/null || true; fi
    exit 0 ;;
  --init)
    init_prefix
    start_server
    exit 0 ;;
  -h|--help)
    sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0 ;;
  '')
    note "usage: scripts/wine-run.sh <program.exe> [args...] | --init | --stop"
    exit 2 ;;
esac

init_prefix
start_server
exec "$wine" "$@"
