#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# usage: tests/cli_introspect.sh SHMBUS_CLI TEST_INTROSPECT  (helpers: tests/cli_support.sh)
#
# The `shmbus` command against services that another program keeps open
# (test_introspect --serve, in a directory backend of its own): `list
# --json` and `info --json` are parsed with python3 and checked against
# what the program did (3 published, 1 taken and held, 5 more into a queue
# of 4 with drop-oldest: 3 lost; 1 loan out), a killed subscriber's node
# shows as dead, the text output, --help and the errors (stderr, exit
# status 1 or 2).
# Exit 0 pass, 1 fail, 77 skipped (no python3).
set -euo pipefail
helper=${2:?usage: cli_introspect.sh SHMBUS_CLI TEST_INTROSPECT}
source "$(dirname "${BASH_SOURCE[0]}")/cli_support.sh" cli_introspect "$@"
service='cli/"q"\s'
server=

# Waits for a helper's ready file (its node id).
await() {
  for _ in $(seq 1 500); do
    [[ -s $1 ]] && return 0
    sleep 0.01
  done
  fail "no $1 after 5 s"
}

"$helper" --serve "$root" "$domain" "$work/server.ready" "$work/stop" &
server=$!
await "$work/server.ready"
"$helper" --serve-victim "$root" "$domain" "$work/victim.ready" &
victim=$!
await "$work/victim.ready"
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
read -r server_node align <"$work/server.ready"
read -r victim_node _ <"$work/victim.ready"


run list --json >"$work/list.json" || fail "shmbus list --json"
run info "$service" --json >"$work/info.json" || fail "shmbus info --json"

python3 - "$work/list.json" "$work/info.json" "$service" "$server_node" "$victim_node" "$align" <<'EOF'
import json, sys
list_path, info_path, service, server_node, victim_node, align = sys.argv[1:]
lst = json.load(open(list_path))
info = json.load(open(info_path))

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

services = [s for s in lst["services"] if s["name"] == service]
check(len(services) == 1, "list shows the service once: %r" % lst["services"])
s = services[0]
check(s["error"] is None, "no error")
want_type = {"name": "shmbus-test/Sample", "size": 32, "align": int(align)}
check(s["type"] == want_type, "type %r" % s["type"])
for key, want in [("queue_depth", 4), ("max_held", 2), ("max_publishers", 4),
                  ("max_subscribers", 8), ("history", 0), ("max_loans", 4),
                  ("max_elements", 1), ("overflow", "drop_oldest"),
                  ("publishers", 1), ("subscribers", 2), ("users", 3)]:
    check(s[key] == want, "%s: %r, not %r" % (key, s[key], want))
check(s["memory"]["data_bytes"] > 0 and s["memory"]["control_bytes"] > 0, "memory")
nodes = {n["id"]: n for n in lst["nodes"]}
check(nodes.get(server_node, {}).get("alive") is True, "server node alive: %r" % nodes)
check(nodes.get(victim_node, {}).get("alive") is False, "victim node dead: %r" % nodes)
check(sum(1 for n in lst["nodes"] if n["self"]) == 1, "the command's own node")

check(info["service"]["name"] == service, "info's service")
pubs, subs, conns = info["publishers"], info["subscribers"], info["connections"]
check(len(pubs) == 1 and len(subs) == 2, "ports %r %r" % (pubs, subs))
p = pubs[0]
check(p["node"] == server_node and p["alive"] and p["state"] == "ready", "publisher %r" % p)
check(p["published"] == 8 and p["loans"] == 1 and p["error"] is None and p["last_timestamp_ns"] > 0, "published %r" % p)
by_node = {x["node"]: x for x in subs}
check(by_node[server_node]["alive"] is True, "server's subscriber alive")
check(by_node[victim_node]["alive"] is False, "victim's subscriber dead")
live = [c for c in conns if c["subscriber"] == by_node[server_node]["id"]]
check(len(live) == 1, "one connection to the live subscriber: %r" % conns)
c = live[0]
want = {"state": "bound", "published": 8, "delivered": 1, "lost": 3, "queued": 4, "held": 1,
        "released": 0, "publisher": p["id"], "publisher_slot": p["slot"],
        "subscriber_slot": by_node[server_node]["slot"], "publisher_waiting": False}
for key, value in want.items():
    check(c[key] == value, "connection %s: %r, not %r" % (key, c[key], value))
EOF

# The text forms, --watch once (stopped by timeout), help and errors.
text=$(run list) || fail "shmbus list"
grep -qF "$service" <<<"$text" || fail "shmbus list shows the service"
grep -q "$victim_node dead" <<<"$text" || fail "shmbus list shows the dead node"
text=$(run info "$service") || fail "shmbus info"
grep -q "bound" <<<"$text" || fail "shmbus info shows the connection"
run nodes --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["nodes"]) == 3' ||
  fail "shmbus nodes --json"
if command -v timeout >/dev/null; then
  status=0
  timeout 1.5 "$cli" info "$service" --watch --json --domain "$domain" --dir "$root" \
    >"$work/watch.json" || status=$?
  [[ $status == 124 ]] || fail "info --watch ended by itself ($status)"
  python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$work/watch.json" ||
    fail "info --watch --json prints one document per line"
fi
for cmd in list info echo hz pub record replay nodes cleanup; do
  text=$("$cli" "$cmd" --help) || fail "$cmd --help exited with an error"
  grep -q "^usage: shmbus $cmd" <<<"$text" || fail "$cmd --help"
done
text=$("$cli" --help) || fail "shmbus --help exited with an error"
grep -q "^usage: shmbus COMMAND" <<<"$text" || fail "shmbus --help"

expect_status() {
  local want=$1 status=0
  shift
  "$@" >"$work/out" 2>"$work/err" || status=$?
  [[ $status == "$want" ]] || fail "$* exited $status, not $want"
  [[ -s $work/err && ! -s $work/out ]] || fail "$*: no message on stderr, or output on stdout"
}
expect_status 1 run info no-such-service --json
expect_status 1 run info 'bad name'
expect_status 2 run info
expect_status 2 run list --frobnicate
expect_status 2 "$cli" frobnicate
expect_status 1 "$cli" list --dir "$work/missing"

# The server closes; cleanup removes the victim's token; nothing is left.
touch "$work/stop"
wait "$server" || fail "the server failed"
server=
run cleanup --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["removed"] >= 1' ||
  fail "cleanup --json"
left=$(ls -A "$root")
[[ -z $left ]] || fail "left behind: $left"
echo "cli_introspect: ok"
