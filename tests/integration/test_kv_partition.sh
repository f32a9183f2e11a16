#!/bin/bash
# tests/integration/test_kv_partition.sh — 5 agents on 127.0.0.1-5 inside a
# network namespace this test creates; nftables splits them 2|3, both sides
# write (also the same key, the later write on the majority side), the
# partition heals, and every replica must end equal with the last writer's
# values. The namespace is deleted on exit, also on failure. Needs root
# (ip netns, nft); skipped otherwise.
set -u
RUMOR_BIN=${RUMOR_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/rumor}
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1"; }
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! ip netns add "rkvprobe$$" 2>/dev/null; then
	echo "skipped: needs root, ip netns and nft"
	echo "0 passed, 0 failed"
	exit 0
fi
ip netns del "rkvprobe$$"
NS=rumorkv$$
TMP=$(mktemp -d /tmp/rumor-kvpart.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	if [ "$FAILED" -gt 0 ]; then
		for f in "$TMP"/*.log; do echo "----- $f"; tail -n 25 "$f"; done
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap "exit 1" TERM INT HUP
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up

start() { # I
	local i=$1
	mkdir -p "$TMP/d$i"
	local join=()
	[ "$i" -gt 1 ] && join=(-join 127.0.0.1:8301)
	# not through nsx: $! must be the agent (ip netns exec execs it)
	ip netns exec "$NS" "$RUMOR_BIN" agent -node "n$i" -bind "127.0.0.$i" -advertise "127.0.0.$i" \
		-client "127.0.0.$i" -serf-lan-port 8301 -http-port 8500 -dns-port -1 \
		-server-port 8300 -kv-sync-interval 1s -data-dir "$TMP/d$i" \
		"${join[@]}" >>"$TMP/n$i.log" 2>&1 &
	PIDS+=("$!")
}
url() { echo "http://127.0.0.$1:8500/v1/kv/$2"; }
put() { nsx curl -sf -m 5 --interface "127.0.0.$1" -X PUT --data-binary "$3" "$(url "$1" "$2")"; }
raw() { nsx curl -s -m 3 --interface "127.0.0.$1" "$(url "$1" "$2")?raw"; }
wait_until() {
	local end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done
	return 1
}
up() { nsx curl -sf -m 2 --interface "127.0.0.$1" "http://127.0.0.$1:8500/v1/agent/self" >/dev/null; }
alive_count() {
	nsx curl -s -m 3 --interface "127.0.0.$1" "http://127.0.0.$1:8500/v1/agent/members" |
		/usr/bin/python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin) if m["Status"]==1))' 2>/dev/null
}
all_alive() { for i in 1 2 3 4 5; do [ "$(alive_count "$i")" = 5 ] || return 1; done; }

start 1
wait_until 10 up 1 || fail "n1 up"
for i in 2 3 4 5; do start "$i"; done
wait_until 20 all_alive && pass "5 agents joined in the namespace" ||
	fail "5 agents joined: alive counts $(for i in 1 2 3 4 5; do echo -n "$(alive_count "$i") "; done)"
put 1 before b0 >/dev/null

# split 2|3: {1,2} | {3,4,5}
nsx nft -f - <<'NFT'
table inet rkvpart {
	chain out {
		type filter hook output priority 0;
		ip saddr { 127.0.0.1, 127.0.0.2 } ip daddr { 127.0.0.3, 127.0.0.4, 127.0.0.5 } drop
		ip saddr { 127.0.0.3, 127.0.0.4, 127.0.0.5 } ip daddr { 127.0.0.1, 127.0.0.2 } drop
	}
}
NFT
pass "partition 2|3 installed"
sleep 0.5
put 1 side/a A1 >/dev/null
put 3 side/b B1 >/dev/null
put 2 both from-minority >/dev/null
sleep 0.2
put 4 both from-majority >/dev/null
put 5 before b1 >/dev/null
sleep 1.5
[ "$(raw 1 side/b)" = "" ] && [ "$(raw 4 side/a)" = "" ] && pass "writes do not cross the partition" ||
	fail "writes crossed the partition: n1 side/b='$(raw 1 side/b)' n4 side/a='$(raw 4 side/a)'"
check_side() { [ "$(raw 2 side/a)" = A1 ] && [ "$(raw 5 side/b)" = B1 ]; }
t1=$(date +%s%N)
wait_until 20 check_side && pass "each side replicates within itself ($((($(date +%s%N) - t1) / 1000000)) ms after the checks began)" || fail "replication within a side"

nsx nft delete table inet rkvpart
t0=$(date +%s%N)
converged() {
	for i in 1 2 3 4 5; do
		[ "$(raw "$i" side/a)" = A1 ] || return 1
		[ "$(raw "$i" side/b)" = B1 ] || return 1
		[ "$(raw "$i" both)" = from-majority ] || return 1
		[ "$(raw "$i" before)" = b1 ] || return 1
	done
}
if wait_until 40 converged; then
	pass "healed: all 5 replicas equal with the last writer's values ($((($(date +%s%N) - t0) / 1000000)) ms)"
else
	fail "not converged: $(for i in 1 2 3 4 5; do echo -n "n$i:$(raw "$i" both)/$(raw "$i" side/a)/$(raw "$i" side/b) "; done)"
fi
same_index() {
	local ref
	ref=$(nsx curl -s -m 3 --interface 127.0.0.1 "$(url 1 "?recurse")" | md5sum)
	for i in 2 3 4 5; do [ "$(nsx curl -s -m 3 --interface "127.0.0.$i" "$(url "$i" "?recurse")" | md5sum)" = "$ref" ] || return 1; done
}
wait_until 10 same_index && pass "full listings (values and ModifyIndex) identical on all 5" ||
	fail "listings differ"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
