#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/cli_record.sh SHMBUS_CLI   (helpers: tests/cli_support.sh)
#
# `shmbus record` and `shmbus replay` against files written and parsed by
# python3 from docs/record-format.md alone (a second implementation of the
# format), in a directory backend and a domain of their own:
#   1. 10^5 samples of distinct payloads (8 to 200 bytes) on two services of
#      different types and limits (overflow BLOCK): replay --rate creates the
#      services, record takes them back; the same types, limits and payloads
#      in the same order, sequence numbers 0..n-1, timestamps in order,
#      nothing lost, and both --json summaries;
#   2. the original timing: 20 samples 50 ms apart take about 1 s and come
#      back about 50 ms apart (recorded to standard output, -o -);
#   3. damaged files (cut inside a record, bad magic, payload above its
#      limit, service index out of range, huge names and lengths, a wrong
#      footer, an empty file): exit 1, one line on stderr naming the file and
#      the offset; the part before the damage is replayed;
#   4. errors: a service of another type, an output that cannot be written,
#      missing -o, a service that never appears, no subscribers; Ctrl-C
#      (SIGINT) ends record and replay cleanly (a whole file with its footer);
#   5. a recorder killed with kill -9 while a BLOCK replay waits for it: the
#      replay goes on (PEER_DEAD), the recording is a valid prefix;
#   6. nothing is left: the backend's directory is empty (cleanup removes
#      what the killed recorder left), /dev/shm has no object of the domain.
# Exit 0 pass, 1 fail, 77 skipped (no python3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cli_support.sh" cli_record "$@"

# Commands in the background are started without a function (whose
# subshell would be $!), those the test signals also without timeout(1).
dom=(--domain "$domain" --dir "$root")
now() { python3 -c 'import time; print(time.monotonic())'; }

# ---- the format, from the document ---------------------------------------------
cat >"$work/rec.py" <<'EOF'
import json, struct, sys

MAGIC = b"SHMBREC\n"
BLOCK = 3

def frame(tag, body):
    return tag + struct.pack("<I", len(body)) + body

def header(nservices):
    return MAGIC + struct.pack("<HHIIIQQ", 1, 0, 40, nservices, 0, 0, 0)

def service(index, name, type_name, size, align, max_elements, limits):
    n, t = name.encode(), type_name.encode()
    return frame(b"SERV", struct.pack("<11I2H", index, size, align, max_elements, *limits,
                                      len(n), len(t)) + n + t)

def sample(svc, pub, seq, ts, payload):
    return frame(b"SAMP", struct.pack("<IIQQQ", svc, len(payload), pub, seq, ts) + payload)

# Two services, different types and limits; limits: max_publishers,
# max_subscribers, queue_depth, history, max_loans, max_held, overflow.
SERVICES = [
    ("rec/one", "rec/bytes", 1, 1, 256, (2, 4, 64, 0, 4, 4, BLOCK)),
    ("rec/two", "rec/words", 4, 4, 64, (1, 2, 32, 0, 2, 2, BLOCK)),
]

def parse(path):
    """Reads a recording per docs/record-format.md, checking as it goes."""
    data = open(path, "rb").read()
    assert data[:8] == MAGIC, "magic"
    major, minor, hbytes, nsvc, flags, unix_ns, start_ns = struct.unpack_from("<HHIIIQQ", data, 8)
    assert (major, hbytes) == (1, 40) and 1 <= nsvc <= 1024, "header"
    off, services, samples, footer = hbytes, [], [], None
    while off < len(data):
        assert footer is None, "data after the footer"
        tag = data[off:off + 4]
        (body,) = struct.unpack_from("<I", data, off + 4)
        b = data[off + 8:off + 8 + body]
        assert len(b) == body, "truncated at %d" % off
        if tag == b"SERV":
            f = struct.unpack_from("<11I2H", b)
            assert f[0] == len(services) and body == 48 + f[11] + f[12], "service record"
            name = b[48:48 + f[11]].decode()
            tname = b[48 + f[11]:48 + f[11] + f[12]].decode()
            services.append((name, tname, f[1], f[2], f[3], tuple(f[4:11])))
        elif tag == b"SAMP":
            assert len(services) == nsvc, "sample before the table"
            svc, n, pub, seq, ts = struct.unpack_from("<IIQQQ", b)
            assert svc < nsvc and body == 32 + n, "sample record"
            samples.append((svc, pub, seq, ts, b[32:]))
        elif tag == b"FOOT":
            dur, total, fn, _ = struct.unpack_from("<QQII", b)
            assert fn == nsvc and body == 24 + 24 * nsvc, "footer"
            per = [struct.unpack_from("<QQQ", b, 24 + 24 * i) for i in range(nsvc)]
            footer = {"duration_ns": dur, "samples": total, "per": per}
        else:
            raise AssertionError("tag %r at %d" % (tag, off))
        off += 8 + body
    return {"services": services, "samples": samples, "footer": footer, "start_ns": start_ns}

def write_big(path, n):
    """n samples, distinct payloads of 8..200 bytes, 2/3 on service 0."""
    pat = bytes(range(256)) * 2
    seq = [0, 0]
    with open(path, "wb") as f:
        f.write(header(len(SERVICES)))
        for i, s in enumerate(SERVICES):
            f.write(service(i, *s))
        for k in range(n):
            svc = 0 if k % 3 else 1
            length = 8 + (k * 37) % 193
            payload = (b"%06d|" % k + pat[k % 256:k % 256 + length])[:length]
            f.write(sample(svc, 100 + svc, seq[svc], 10**9 + 1000 * k, payload))
            seq[svc] += 1

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def check_big(inp, out, rec_json, replay_json):
    a, b = parse(inp), parse(out)
    check(a["services"] == b["services"], "services %r vs %r" % (a["services"], b["services"]))
    n = len(a["samples"])
    check(len(b["samples"]) == n, "%d samples recorded, not %d" % (len(b["samples"]), n))
    for svc in range(len(SERVICES)):
        want = [s[4] for s in a["samples"] if s[0] == svc]
        got = [s for s in b["samples"] if s[0] == svc]
        check([s[4] for s in got] == want, "payloads of service %d differ" % svc)
        pubs = sorted(set(s[1] for s in got))
        check(len(pubs) == 1, "one replay publisher per service: %r" % pubs)
        check([s[2] for s in got] == list(range(len(got))), "sequences 0..n-1 on service %d" % svc)
        ts = [s[3] for s in got]
        check(all(x <= y for x, y in zip(ts, ts[1:])), "timestamps in order on service %d" % svc)
        check(ts[0] >= b["start_ns"], "timestamps on the recording's clock")
    f = b["footer"]
    check(f is not None and f["samples"] == n, "footer %r" % f)
    check(all(p[2] == 0 for p in f["per"]), "lost %r" % f["per"])
    rec, rep = json.load(open(rec_json)), json.load(open(replay_json))
    check(rec["samples"] == n and rec["lost"] == 0 and rec["error"] is None, "record json %r" % rec)
    check(rec["stopped"] == "count" and len(rec["services"]) == 2, "record json %r" % rec)
    check(rec["bytes"] == sum(len(s[4]) for s in a["samples"]), "record json bytes")
    check(rec["services"][1]["type"] == {"name": "rec/words", "size": 4, "align": 4}, "type")
    check(rep["samples"] == n and rep["stopped"] == "end" and rep["error"] is None,
          "replay json %r" % rep)
    check(rep["footer"] is False and rep["truncated"] is False, "replay json %r" % rep)
    check([s["limits"] for s in rep["services"]] == ["recorded"] * 2, "replay limits")
    print("cli_record: 10^5 samples: replay %.2f s, record %.2f s" %
          (rep["duration_s"], rec["duration_s"]))

def write_timed(path, n, gap_ns):
    with open(path, "wb") as f:
        f.write(header(1))
        f.write(service(0, "rec/timed", "rec/bytes", 1, 1, 64, (2, 2, 64, 0, 4, 4, BLOCK)))
        for k in range(n):
            f.write(sample(0, 5, k, 7 * 10**9 + k * gap_ns, b"t%03d" % k))

def check_timed(out, replay_json, n, gap_ns):
    b = parse(out)
    s = b["samples"]
    check([x[4] for x in s] == [b"t%03d" % k for k in range(n)], "timed payloads")
    gaps = [y[3] - x[3] for x, y in zip(s, s[1:])]
    mean = sum(gaps) / len(gaps)
    check(abs(mean - gap_ns) <= 0.2 * gap_ns, "mean gap %.1f ms, not %.1f" % (mean / 1e6, gap_ns / 1e6))
    rep = json.load(open(replay_json))
    check(0.8 <= rep["duration_s"] <= 3.0, "replay took %.2f s" % rep["duration_s"])
    print("cli_record: timing: %d samples in %.2f s, mean gap %.1f ms (min %.1f, max %.1f)" %
          (n, rep["duration_s"], mean / 1e6, min(gaps) / 1e6, max(gaps) / 1e6))

def write_damaged(src, kind, dst):
    """src: a good file of 1 service and 10 samples (write_timed)."""
    data = bytearray(open(src, "rb").read())
    first = 40 + 8 + struct.unpack_from("<I", data, 44)[0]  # the first SAMP record
    if kind == "cut":          # inside the last sample's payload
        data = data[:-2]
    elif kind == "cut-frame":  # inside the last sample's frame
        data = data[:-(8 + 32 + 4) + 3]
    elif kind == "magic":
        data[0] ^= 0x20
    elif kind == "version":
        struct.pack_into("<H", data, 8, 2)
    elif kind == "payload":    # above the service's 64 bytes, framed consistently
        n = 1000
        body = struct.pack("<IIQQQ", 0, n, 5, 0, 1) + bytes(n)
        data = data[:first] + frame(b"SAMP", body)
    elif kind == "payload-huge":
        struct.pack_into("<II", data, first + 4, 0xFFFFFFFF, 0)
        struct.pack_into("<I", data, first + 12, 0xFFFFFFDF)
    elif kind == "index":
        struct.pack_into("<I", data, first + 8, 7)
    elif kind == "name":       # a huge name length in the service record
        struct.pack_into("<H", data, 40 + 8 + 44, 0xFFFF)
    elif kind == "service-body":
        struct.pack_into("<I", data, 44, 0xFFFFFFFF)
    elif kind == "services":
        struct.pack_into("<I", data, 16, 0xFFFFFFFF)
    elif kind == "tag":
        data[first:first + 4] = b"JUNK"
    elif kind == "footer":     # counts that are not the file's
        body = struct.pack("<QQII", 1, 11, 1, 0) + struct.pack("<QQQ", 11, 44, 0)
        data += frame(b"FOOT", body)
    elif kind == "empty":
        data = b""
    open(dst, "wb").write(bytes(data))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "write-big":
        write_big(args[0], int(args[1]))
    elif cmd == "check-big":
        check_big(*args)
    elif cmd == "write-timed":
        write_timed(args[0], int(args[1]), int(args[2]))
    elif cmd == "check-timed":
        check_timed(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "damage":
        write_damaged(*args)
    elif cmd == "footer":  # a recording's footer, as JSON
        f = parse(args[0])
        print(json.dumps({"footer": f["footer"], "samples": len(f["samples"]),
                          "services": f["services"]}))
EOF
rec() { python3 "$work/rec.py" "$@"; }

# ---- 1. 10^5 samples there and back -----------------------------------------------
rec write-big "$work/big.rec" 100000
"${cli_limit[@]}" "$cli" record -o "$work/big.out" --count 100000 rec/one rec/two --timeout 10 \
  --json "${dom[@]}" >"$work/record.json" 2>"$work/record.err" &
recorder=$!
t0=$(now)
run replay --rate 200000 --wait-subscribers 1 --timeout 10 "$work/big.rec" --json \
  >"$work/replay.json" 2>"$work/replay.err" || fail "replay of 10^5 samples"
wait "$recorder" || fail "record of 10^5 samples"
t1=$(now)
rec check-big "$work/big.rec" "$work/big.out" "$work/record.json" "$work/replay.json" ||
  fail "10^5 samples"
python3 -c "import sys; t = float(sys.argv[2]) - float(sys.argv[1]); print('cli_record: 10^5 samples: %.2f s in all' % t); sys.exit(t > 60)" "$t0" "$t1" ||
  fail "10^5 samples took more than a minute"

# The recording replays as it was recorded: its own footer checked by the reader.
run replay --rate 1000000 --count 1000 -q "$work/big.out" --json >"$work/again.json" ||
  fail "replay of record's own file"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["samples"] == 1000 and d["stopped"] == "count", d' \
  "$work/again.json" || fail "replay --count"
run replay --rate 1000000 -q "$work/big.out" --json >"$work/again.json" ||
  fail "replay of record's own file, with its footer"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["samples"] == 100000 and d["footer"] is True, d' \
  "$work/again.json" || fail "replay reads the footer"

# ---- 2. the original timing (to standard output) -------------------------------------
rec write-timed "$work/timed.rec" 20 50000000
"${cli_limit[@]}" "$cli" record -o - --count 20 rec/timed --timeout 10 -q "${dom[@]}" \
  >"$work/timed.out" 2>"$work/timed.err" &
recorder=$!
run replay --wait-subscribers 1 --timeout 10 "$work/timed.rec" --json -q \
  >"$work/timed.json" 2>"$work/timed-replay.err" || fail "replay with the original timing"
wait "$recorder" || fail "record -o -"
rec check-timed "$work/timed.out" "$work/timed.json" 20 50000000 || fail "original timing"

# ---- 3. damaged files ------------------------------------------------------------------
rec write-timed "$work/small.rec" 10 1000
limit20=()
command -v timeout >/dev/null && limit20=(timeout 20)
expect_file_error() { # KIND SAMPLES_REPLAYED ('-': none, no summary) WORDS
  local kind=$1 want=$2 words=$3 file=$work/bad-$1.rec status=0
  rec damage "$work/small.rec" "$kind" "$file"
  "${limit20[@]}" "$cli" replay --rate 100000 -q --json "$file" --domain "$domain" \
    --dir "$root" >"$work/bad.json" 2>"$work/bad.err" || status=$?
  [[ $status == 1 ]] || fail "damaged file ($kind): exit status $status, not 1"
  [[ $(wc -l <"$work/bad.err") == 1 ]] || fail "damaged file ($kind): not one line: $(cat "$work/bad.err")"
  grep -qF "$file: offset " "$work/bad.err" || fail "damaged file ($kind): no file and offset"
  grep -q "$words" "$work/bad.err" || fail "damaged file ($kind): no '$words' in the message"
  if [[ $want == - ]]; then
    [[ ! -s $work/bad.json ]] || fail "damaged file ($kind): a summary, though nothing was replayed"
  else
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["samples"] == int(sys.argv[2]) and d["error"].startswith("FILE_"), d' \
      "$work/bad.json" "$want" || fail "damaged file ($kind): not $want samples replayed"
  fi
  echo "cli_record: $kind: $(cat "$work/bad.err")"
}
expect_file_error cut 9 "ends inside a sample"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["truncated"] is True' "$work/bad.json" ||
  fail "a cut file is reported as truncated"
expect_file_error cut-frame 9 "ends inside a record"
expect_file_error magic - "bad magic"
expect_file_error version - "version 2"
expect_file_error payload 0 "above service"
expect_file_error payload-huge 0 "above service"
expect_file_error index 0 "sample of service 7"
expect_file_error name - "name of 65535 bytes"
expect_file_error service-body - "service record of"
expect_file_error services - "services (1 to"
expect_file_error tag 0 "unknown record tag"
expect_file_error footer 10 "footer"
expect_file_error empty - "bad magic"

# ---- 4. errors and signals --------------------------------------------------------------
expect_status() {
  local want=$1 status=0
  shift
  "$@" >"$work/out" 2>"$work/err" || status=$?
  [[ $status == "$want" ]] || fail "$* exited $status, not $want"
  [[ -s $work/err ]] || fail "$*: no message on stderr"
}
# A service of another type, held by a slow replay of its own.
rec write-timed "$work/slow.rec" 2 20000000000
python3 - "$work/rec.py" "$work" <<'EOF'
import sys
exec(open(sys.argv[1]).read().split('if __name__')[0])
with open(sys.argv[2] + "/other.rec", "wb") as f:  # rec/timed with type rec/other (8 bytes)
    f.write(header(1))
    f.write(service(0, "rec/timed", "rec/other", 8, 8, 4, (1, 2, 8, 0, 4, 4, 1)))
    f.write(sample(0, 1, 0, 1, bytes(8)))
with open(sys.argv[2] + "/limits.rec", "wb") as f:  # rec/timed, a deeper queue
    f.write(header(1))
    f.write(service(0, "rec/timed", "rec/bytes", 1, 1, 64, (2, 2, 128, 0, 4, 4, BLOCK)))
    f.write(sample(0, 1, 0, 1, bytes(8)))
EOF
"$cli" replay "$work/slow.rec" -q --json "${dom[@]}" >"$work/slow.json" 2>"$work/slow.err" &
holder=$!
for _ in $(seq 1 500); do
  run list --json 2>/dev/null | grep -q '"rec/timed"' && break
  sleep 0.01
done
expect_status 1 run replay "$work/other.rec" -q
grep -q "rec/timed" "$work/err" && grep -qi "type" "$work/err" ||
  fail "another type: the message says neither service nor type: $(cat "$work/err")"
# The same type with other limits: the service's own are used.
run replay "$work/limits.rec" --json >"$work/limits.json" 2>"$work/limits.err" ||
  fail "replay onto a service with other limits"
grep -q "other limits" "$work/limits.err" || fail "replay does not say the limits differ"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["services"][0]["limits"] == "service" and d["samples"] == 1, d' \
  "$work/limits.json" || fail "replay's summary with the service's limits"
# Ctrl-C ends the slow replay after its first sample, cleanly.
kill -INT "$holder"
wait "$holder" || fail "replay after SIGINT"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["stopped"] == "signal" and d["samples"] == 1, d' \
  "$work/slow.json" || fail "replay's summary after SIGINT"

# Ctrl-C ends a record that is waiting for samples: a whole file, with its footer.
rec write-timed "$work/hold.rec" 2 20000000000
"$cli" replay "$work/hold.rec" -q "${dom[@]}" >/dev/null 2>&1 &
holder=$!
"$cli" record -o "$work/int.out" rec/timed -q --json "${dom[@]}" >"$work/int.json" 2>"$work/int.err" &
recorder=$!
for _ in $(seq 1 500); do
  [[ -s $work/int.out ]] && break
  sleep 0.01
done
sleep 0.3
kill -INT "$recorder"
wait "$recorder" || fail "record after SIGINT"
kill -INT "$holder"
wait "$holder" || fail "the second slow replay after SIGINT"
rec footer "$work/int.out" >"$work/int.footer" || fail "record's file after SIGINT does not parse"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["footer"] is not None and d["footer"]["samples"] == d["samples"] <= 1, d' \
  "$work/int.footer" || fail "record's footer after SIGINT"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["stopped"] == "signal", d' \
  "$work/int.json" || fail "record's summary after SIGINT"

expect_status 1 run record -o "$work/missing/dir/out.rec" rec/none --timeout 0.2
grep -qF "$work/missing/dir/out.rec" "$work/err" || fail "the unwritable output is not named"
expect_status 2 run record rec/none --timeout 0.2
expect_status 2 run record -o - --json rec/none
expect_status 2 run record -o "$work/x.rec" rec/a rec/a
expect_status 1 run record -o "$work/never.rec" rec/none --timeout 0.2
[[ ! -e $work/never.rec ]] || fail "record left a file though it recorded nothing"
expect_status 1 run replay "$work/no-such-file.rec"
expect_status 1 run replay "$work/small.rec" --wait-subscribers 1 --timeout 0.2 -q
expect_status 2 run replay
for cmd in record replay; do
  text=$("$cli" "$cmd" --help) || fail "$cmd --help exited with an error"
  grep -q "^usage: shmbus $cmd" <<<"$text" || fail "$cmd --help"
done

# Every command so far closed what it opened: nothing is left.
left=$(ls -A "$root")
[[ -z $left ]] || fail "left behind in the backend's directory: $left"

# ---- 5. a recorder killed (kill -9) while a BLOCK replay waits for it -----------------
# The replay goes on without it (PEER_DEAD: nothing was sent, publish again);
# the recording is a valid prefix: whole records of the first samples, then
# at most one cut off.
rec write-big "$work/crash.rec" 20000
"$cli" record -o "$work/crash.out" rec/one rec/two -q "${dom[@]}" 2>"$work/crash.err" &
recorder=$!
"${cli_limit[@]}" "$cli" replay --rate 8000 --wait-subscribers 1 --timeout 10 "$work/crash.rec" \
  --json -q "${dom[@]}" >"$work/crash.json" 2>"$work/crash-replay.err" &
replayer=$!
sleep 2
kill -9 "$recorder"
wait "$replayer" || fail "replay after its subscriber was killed"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["samples"] == 20000 and d["stopped"] == "end", d' \
  "$work/crash.json" || fail "replay did not publish everything after its subscriber died"
python3 - "$work/rec.py" "$work/crash.rec" "$work/crash.out" <<'EOF'
import struct, sys
exec(open(sys.argv[1]).read().split('if __name__')[0])
data = open(sys.argv[3], "rb").read()
off = 40
services, whole = [], []
while off + 8 <= len(data):
    (body,) = struct.unpack_from("<I", data, off + 4)
    if off + 8 + body > len(data):
        break
    whole.append((data[off:off + 4], data[off + 8:off + 8 + body]))
    off += 8 + body
check(len(data) - off < 8 + 32 + 200, "more than one record cut off")
check([t for t, _ in whole[:2]] == [b"SERV", b"SERV"], "the service table")
got = [(struct.unpack_from("<I", b)[0], b[32:]) for t, b in whole[2:]]
check(all(t == b"SAMP" for t, _ in whole[2:]), "only samples after the table")
want = [(s[0], s[4]) for s in parse(sys.argv[2])["samples"]]
for svc in (0, 1):
    g = [p for s, p in got if s == svc]
    w = [p for s, p in want if s == svc]
    check(g == w[:len(g)], "the killed recording is not a prefix of service %d" % svc)
check(len(got) > 0, "the killed recorder wrote nothing in 2 s")
print("cli_record: killed recorder: %d whole samples, %d bytes cut off" % (len(got), len(data) - off))
EOF
# Its node's leftovers (token, subscriber slots) are cleanup's.
run cleanup >/dev/null || fail "cleanup after the killed recorder"

# ---- 5b. what a recording that never starts leaves, a publish stuck on a
# stopped subscriber --------------------------------------------------------------------
printf 'keep me' >"$work/precious.rec"
status=0
run record -o "$work/precious.rec" rec/never --timeout 0.3 -q 2>/dev/null || status=$?
[[ $status == 1 ]] || fail "record of a service that never comes exited with $status"
[[ $(cat "$work/precious.rec") == 'keep me' ]] ||
  fail "record truncated a file it never recorded into"
status=0
run record -o "$work/fresh.rec" rec/never --timeout 0.3 -q 2>/dev/null || status=$?
[[ $status == 1 && ! -e $work/fresh.rec ]] || fail "record left the file it created ($status)"

# A BLOCK service (made by replay) whose subscriber is stopped (SIGSTOP):
# pub fills its queue, then waits for room; Ctrl-C ends it all the same.
rec write-timed "$work/stuck.rec" 1 1000
start stuckecho echo rec/timed --timeout 10
stuckecho=$last
run replay --wait-subscribers 1 --timeout 10 -q "$work/stuck.rec" || fail "replay of stuck.rec"
# $last is timeout(1)'s pid; the command is its child.
echo_pid=$(pgrep -P "$stuckecho" || echo "$stuckecho")
kill -STOP "$echo_pid"
printf 'x' >"$work/x.bin"
start stuckpub pub --file "$work/x.bin" --count 1000 -q rec/timed
stuckpub=$last
sleep 1
kill -INT "$stuckpub"
t0=$(now)
finished "$stuckpub" 0 "pub waiting for room on a stopped subscriber, then Ctrl-C"
python3 -c "import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) > 2)" "$t0" "$(now)" ||
  fail "pub took more than 2 s to stop"
kill -CONT "$echo_pid"
kill -TERM "$stuckecho"
wait "$stuckecho" || true

# ---- 6. nothing left -----------------------------------------------------------------

left=$(ls -A "$root")
[[ -z $left ]] || fail "left behind in the backend's directory: $left"
if [[ -d /dev/shm ]]; then
  shm=$(ls -A /dev/shm | grep -F "shmbus.$domain." || true)
  [[ -z $shm ]] || fail "left behind in /dev/shm: $shm"
fi
rm -rf "$root"
echo "cli_record: ok"
