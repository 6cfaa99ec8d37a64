#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/cli_stream.sh SHMBUS_CLI
#        SHMBUS_EMULATOR=scripts/wine-run.sh tests/cli_stream.sh shmbus.exe
# (helpers: tests/cli_support.sh)
#
# `shmbus echo`, `hz` and `pub` against each other, in a directory backend
# of their own: echo prints what pub sent (--json parsed with python3; the
# hex dump; --format fields), hz reports a 200 Hz publisher within 5%, pub
# reads stdin or a file and refuses what does not fit, and a peer that
# corrupts or truncates the service's object costs service, never a crash
# or a hang. Under an emulator (wine), the same, but for the truncation
# (Windows cannot shrink a mapped file). Exit 0 pass, 1 fail, 77 skipped
# (no python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cli_support.sh" cli_stream "$@"

# ---- echo --json of what pub sends (echo waits for the service) --------------------
printf 'hello, world' >"$work/hello.bin"
start echo echo --json --count 3 --timeout 20 s/text
run pub --type bytes:1 --elements 64 --wait-subscribers 1 --timeout 20 --count 3 \
  --file "$work/hello.bin" --json s/text >"$work/pub.out" 2>"$work/pub.err" || fail "pub --file"
finished "$last" 0 "echo --count 3"
python3 - "$work/echo.out" "$work/pub.out" <<'EOF' || fail "echo --json"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
pub = json.load(open(sys.argv[2]))
assert pub["published"] == 3 and pub["bytes"] == 12, pub
assert len(lines) == 3, lines
for i, s in enumerate(lines):
    assert s["sequence"] == i, s
    assert s["publisher"] == pub["publisher"], s
    assert bytes.fromhex(s["payload"]) == b"hello, world", s
    assert s["bytes"] == 12 and s["lost"] == 0, s
assert lines[0]["timestamp_ns"] <= lines[1]["timestamp_ns"] <= lines[2]["timestamp_ns"]
EOF

# ---- the hex dump, from stdin ----------------------------------------------------------
start dump echo --count 1 --timeout 20 s/dump
printf 'ABCDEFGHIJKLMNOPQ\001' | run pub --type bytes:1 --elements 32 --wait-subscribers 1 \
  --timeout 20 s/dump || fail "pub from stdin"
finished "$last" 0 "echo (hex dump)"
grep -q ' sequence 0 .* 18 bytes$' "$work/dump.out" || fail "echo's header line"
grep -qF '00000000  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|' \
  "$work/dump.out" || fail "echo's hex dump, first line"
grep -qF '00000010  51 01' "$work/dump.out" || fail "echo's hex dump, second line"
grep -qF '|Q.|' "$work/dump.out" || fail "echo's dump shows unprintable bytes as dots"

# ---- --format fields ----------------------------------------------------------------------
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<Qfff", 7, 1.5, -2.25, 1e6) + struct.pack("<Qf", 2**64-1, 0.5))' \
  >"$work/imu.bin"
start fmt echo --format 'u64 f32[3]' --count 1 --timeout 20 s/imu
start fmtj echo --format 'u64,f32[3]' --json --count 1 --timeout 20 s/imu
fmtj=$last
run pub --type imu:4:4 --elements 8 --wait-subscribers 2 --timeout 20 --file "$work/imu.bin" \
  s/imu || fail "pub imu"
finished "$fmtj" 0 "echo --format --json"
wait
grep -qxF '  7 [1.5 -2.25 1000000] 18446744073709551615 [0.5]' "$work/fmt.out" ||
  fail "echo --format: $(tail -1 "$work/fmt.out")"
python3 - "$work/fmtj.out" <<'EOF' || fail "echo --format --json"
import json, sys
s = json.loads(open(sys.argv[1]).readline())
assert s["fields"] == [7, 1.5, -2.25, 1e6, 2**64 - 1, 0.5], s["fields"]
EOF
run echo --format 'u64 q32' s/imu 2>"$work/badfmt.err" && fail "a bad --format was accepted"
grep -q "q32" "$work/badfmt.err" || fail "a bad --format is named"

# ---- hz: a publisher at 200 Hz ---------------------------------------------------------------
start hz hz --json --count 400 --timeout 20 s/rate
run pub --type bytes:1 --elements 16 --wait-subscribers 1 --timeout 20 --count 450 --rate 200 \
  --file "$work/hello.bin" -q s/rate || fail "pub --rate 200"
finished "$last" 0 "hz --count 400"
python3 - "$work/hz.out" <<'EOF' || fail "hz's rate"
import json, sys
reports = [json.loads(l) for l in open(sys.argv[1])]
last = reports[-1]
assert last["samples"] == 400 and last["window"] == 400, last
assert abs(last["rate_hz"] - 200) <= 10, last  # within 5%
assert abs(last["mean_interval_s"] - 0.005) <= 0.00025, last
assert last["min_interval_s"] <= last["mean_interval_s"] <= last["max_interval_s"], last
assert abs(last["bytes_per_s"] - 200 * 12) <= 120, last
assert last["lost"] == 0, last
EOF
run hz --window 1 s/rate 2>/dev/null && fail "hz --window 1 was accepted"

# A publisher that stops: hz's reports after it say so (rate null), they do
# not repeat the old rate.
start hzstop hz --json --duration 3.5 --timeout 20 s/stops
hzstop=$last
run pub --type bytes:1 --elements 16 --wait-subscribers 1 --timeout 20 --count 20 --rate 100 \
  --file "$work/hello.bin" -q s/stops || fail "pub --count 20 --rate 100"
finished "$hzstop" 0 "hz --duration 3.5"
python3 - "$work/hzstop.out" <<'EOF' || fail "hz after the publisher stopped"
import json, sys
reports = [json.loads(l) for l in open(sys.argv[1])]
assert len(reports) >= 3, reports
assert reports[0]["rate_hz"] is not None and reports[0]["samples"] == 20, reports
assert all(r["rate_hz"] is None for r in reports[1:-1]), reports
assert reports[-1]["samples"] == 20, reports
EOF

# --duration also bounds the wait for a service (a normal end: exit 0).
status=0
run echo --duration 0.3 s/never 2>/dev/null || status=$?
[[ $status == 0 ]] || fail "echo --duration without the service exited with $status"

# Output that cannot be written is a failure (1), and a closed pipe ends
# what would run forever.
status=0
run list >/dev/full 2>/dev/null || status=$?
[[ $status == 1 ]] || fail "list to a full device exited with $status"
if [[ -z $emulator ]]; then
  start keep echo --type bytes:1 --elements 16 --duration 20 s/pipe
  keep=$last
  for _ in $(seq 1 100); do run info s/pipe >/dev/null 2>&1 && break; sleep 0.05; done
  status=0
  run info --watch s/pipe 2>/dev/null | head -c 1 >/dev/null || status=$?
  [[ $status == 1 ]] || fail "info --watch into a closed pipe ended with $status"
  kill -TERM "$keep"
  wait "$keep" || true
fi


# ---- pub's errors ------------------------------------------------------------------------------
run pub --file "$work/hello.bin" s/none 2>"$work/none.err" && fail "pub to a missing service"
grep -q "no such service (give --type" "$work/none.err" || fail "pub says how to create it"
run pub --type bytes:1 --elements 4 --file "$work/hello.bin" s/small 2>"$work/big.err" &&
  fail "pub of 12 bytes into 4-byte samples"
grep -q "do not fit" "$work/big.err" || fail "pub says the input does not fit"
: >"$work/empty.bin"
run pub --type bytes:1 --file "$work/empty.bin" s/small 2>/dev/null && fail "pub of nothing"
run pub --type bytes:1 --file "$work/missing.bin" s/small 2>/dev/null && fail "pub of no file"
status=0
run pub --type 'x:3:3' s/small 2>/dev/null || status=$?
[[ $status == 2 ]] || fail "a bad --type is a usage error: $status"
status=0
run pub --type bytes:1 --wait-subscribers 1 --timeout 0.2 --file "$work/hello.bin" s/lonely \
  2>/dev/null || status=$?
[[ $status == 1 ]] || fail "pub --wait-subscribers without subscribers: $status"
status=0
run echo --timeout 0.2 s/never 2>/dev/null || status=$?
[[ $status == 1 ]] || fail "echo of a service that never comes: $status"

# ---- a peer corrupts and truncates the service's object -------------------------------------
start hold echo --type bytes:1 --elements 16 --duration 5 s/victim
hold=$last
for _ in $(seq 1 200); do
  run list --json >"$work/list.json" 2>/dev/null &&
    grep -q '"s/victim"' "$work/list.json" && break
  sleep 0.05
done
object=$(python3 -c 'import json,sys; print([s["object"] for s in json.load(open(sys.argv[1]))["services"] if s["name"] == "s/victim"][0])' "$work/list.json")
[[ -f $root/$object ]] || fail "no object $object"
# The configuration's element size (cfg at 64: name, type name, then the
# sizes) and every byte after it: garbage.
python3 - "$root/$object" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(64 + 256 + 128)
    f.write(b"\xff" * 64)
EOF
run list --json >"$work/list2.json" || fail "list with a corrupt service"
python3 - "$work/list2.json" "$object" <<'EOF' || fail "list shows the corrupt service"
import json, sys
entries = [s for s in json.load(open(sys.argv[1]))["services"] if s["object"] == sys.argv[2]]
assert len(entries) == 1 and entries[0]["error"] == "CORRUPT", entries
EOF
status=0
run echo --timeout 2 s/victim 2>"$work/corrupt.err" || status=$?
[[ $status == 1 ]] || fail "echo of a corrupt service exited with $status"
status=0
run pub --file "$work/hello.bin" s/victim 2>/dev/null || status=$?
[[ $status == 1 ]] || fail "pub to a corrupt service exited with $status"
# Cut to nothing under the echo that has it mapped: it may stop serving,
# never crash (SIGBUS is the library's). It ends by itself (--duration).
[[ -z $emulator ]] && truncate -s 0 "$root/$object"
run pub --type bytes:1 --elements 16 --file "$work/hello.bin" s/victim 2>/dev/null || true
status=0
wait "$hold" || status=$?
[[ $status == 0 || $status == 1 ]] || fail "echo on a truncated service ended with $status"

# ---- nothing left -------------------------------------------------------------------------------
rm -f "$root/$object"
run cleanup >/dev/null || fail "cleanup"
left=$(find "$root" -mindepth 1 | head -5)
[[ -z $left ]] || fail "left in the root: $left"
if [[ -d /dev/shm ]] && ls /dev/shm | grep -q "\.$domain\."; then
  fail "left in /dev/shm: $(ls /dev/shm | grep "\.$domain\.")"
fi
echo "cli_stream: passed"
