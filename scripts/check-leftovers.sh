#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: scripts/check-leftovers.sh [--save-baseline FILE] [--baseline FILE] [--clean]
#
# Hygiene check run after the tests: every shmbus object lives in /dev/shm
# under a name that contains "shmbus", and a clean run leaves none behind.
# Lists the leftovers and exits 1 if there are any, else exits 0.
#
#   --save-baseline FILE  record what exists now (before the tests) and exit 0
#   --baseline FILE       ignore the names recorded in FILE (they predate the
#                         run; they are listed as a warning)
#   --clean               remove the leftovers found (after listing them)
#
# SHMBUS_SHM_DIR overrides /dev/shm.
set -euo pipefail

shm_dir=${SHMBUS_SHM_DIR:-/dev/shm}
baseline=
save=
clean=0
while (($#)); do
  case $1 in
    --baseline) baseline=${2:?--baseline needs a file}; shift 2 ;;
    --save-baseline) save=${2:?--save-baseline needs a file}; shift 2 ;;
    --clean) clean=1; shift ;;
    -h|--help) sed -n '4,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-leftovers.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [[ ! -d $shm_dir ]]; then
  echo "check-leftovers.sh: no $shm_dir on this system: nothing to check"
  [[ -z $save ]] || : >"$save"
  exit 0
fi

current() { find "$shm_dir" -mindepth 1 -maxdepth 1 -iname '*shmbus*' -printf '%f\n' | LC_ALL=C sort; }

if [[ -n $save ]]; then
  mkdir -p "$(dirname "$save")"
  current >"$save"
  if [[ -s $save ]]; then
    echo "check-leftovers.sh: WARNING: $(wc -l <"$save") shmbus object(s) exist in $shm_dir" \
         "before the run; they are not counted against it:"
    sed 's/^/    /' "$save"
  fi
  exit 0
fi

mapfile -t found < <(current)
old=()
new=()
for name in "${found[@]}"; do
  if [[ -n $baseline && -r $baseline ]] && grep -qxF -- "$name" "$baseline"; then
    old+=("$name")
  else
    new+=("$name")
  fi
done

if ((${#old[@]})); then
  echo "check-leftovers.sh: WARNING: ${#old[@]} shmbus object(s) in $shm_dir predate this run:"
  printf '    %s\n' "${old[@]}"
fi
if ((${#new[@]} == 0)); then
  echo "check-leftovers.sh: ok, nothing left in $shm_dir"
  exit 0
fi
echo "check-leftovers.sh: FAILED: ${#new[@]} shmbus object(s) left in $shm_dir:"
for name in "${new[@]}"; do
  find "$shm_dir/$name" -maxdepth 0 -printf '    %M %u %8s %TY-%Tm-%Td %TH:%TM  %p\n'
done
if ((clean)); then
  for name in "${new[@]}"; do rm -rf -- "${shm_dir:?}/$name"; done
  echo "check-leftovers.sh: removed them"
fi
exit 1
