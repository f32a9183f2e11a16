#!/usr/bin/env bash
# Membership with real agents on 127.0.0.1: join through one seed, kill -9
# detection, graceful leave, restart and rejoin, failed joins, name conflicts.
source "$(dirname "$0")/lib.sh"

N=5
start_agent 1 n1
wait_http 1 || fail "agent n1 answers HTTP"
for i in $(seq 2 $N); do
	start_agent "$i" "n$i" -join "127.0.0.1:$(gport 1)"
done
for i in $(seq 1 $N); do
	wait_http "$i" || fail "agent n$i answers HTTP"
done

# 1. every agent lists all five alive
for i in $(seq 1 $N); do
	if wait_until 20 has_alive "$i" $N; then
		pass "n$i lists $N alive members"
	else
		fail "n$i lists $N alive members (has $(count_alive "$i"))"
	fi
done

# the members table and the JSON the CLI reads
table=$("$RUMOR_BIN" members -http-addr "$(haddr 1)")
check_contains "members table has a header" "Node" "$(echo "$table" | head -1)"
check_contains "members table lists n3 with its address" "127.0.0.1:$(gport 3)" "$table"
json=$(curl -s "http://$(haddr 2)/v1/agent/members")
status=$(echo "$json" | /usr/bin/python3 -c '
import json, sys
ms = json.load(sys.stdin)
print(sorted((m["Name"], m["Status"], m["Port"], m["Tags"]["dc"]) for m in ms)[0])')
check_eq "members JSON: n1 alive (1) on its port in dc1" "('n1', 1, $(gport 1), 'dc1')" "$status"

# 2. kill -9 of n5 is seen as failed by all others
t0=$(now_ms)
kill -9 "${AGENT_PID[5]}"
ok=1
for i in 1 2 3 4; do
	wait_until 60 is_status "$i" n5 failed || { ok=0; fail "n$i sees n5 failed (sees '$(member_status "$i" n5)')"; }
done
t1=$(now_ms)
[ $ok = 1 ] && pass "all 4 survivors see n5 failed"
echo "# kill -9 to failed on all 4 survivors: $((t1 - t0)) ms"

# 3. graceful leave of n4 is seen as left by all others
t0=$(now_ms)
out=$("$RUMOR_BIN" leave -http-addr "$(haddr 4)" 2>&1)
check_contains "rumor leave reports success" "Graceful leave complete" "$out"
ok=1
for i in 1 2 3; do
	wait_until 30 is_status "$i" n4 left || { ok=0; fail "n$i sees n4 left (sees '$(member_status "$i" n4)')"; }
done
t1=$(now_ms)
[ $ok = 1 ] && pass "all 3 remaining see n4 left"
echo "# leave to left on all 3 remaining: $((t1 - t0)) ms"
if wait_until 10 bash -c "! kill -0 ${AGENT_PID[4]} 2>/dev/null"; then
	pass "n4 exits after leaving"
else
	fail "n4 exits after leaving"
fi

# 4. a restarted agent (same name, port and data dir) rejoins
start_agent 5 n5 -join "127.0.0.1:$(gport 2)"
ok=1
for i in 1 2 3; do
	wait_until 30 is_status "$i" n5 alive || { ok=0; fail "n$i sees restarted n5 alive (sees '$(member_status "$i" n5)')"; }
done
[ $ok = 1 ] && pass "restarted n5 is alive again everywhere"

# 5. joining a closed port fails with a clear error and exit code 1
out=$("$RUMOR_BIN" join -http-addr "$(haddr 1)" "127.0.0.1:$(gport 40)" 2>&1)
rc=$?
check_eq "rumor join to a closed port exits 1" 1 "$rc"
check_contains "rumor join to a closed port names the error" "connection refused" "$out"
out=$("$RUMOR_BIN" join -http-addr "$(haddr 1)" "127.0.0.1:$(gport 3)" 2>&1)
check_contains "rumor join to a live agent succeeds" "Successfully joined cluster by contacting 1 nodes" "$out"

# 6. the CLI against an agent that is not there
out=$("$RUMOR_BIN" members -http-addr "127.0.0.1:$(gport 45)" 2>&1)
rc=$?
check_eq "rumor members without an agent exits 1" 1 "$rc"
check_contains "rumor members without an agent names the address" "127.0.0.1:$(gport 45)" "$out"

# 7. a second agent with a name already taken by a live node is refused
# (its own data dir: the name, not the directory, is what is refused here)
mkdir -p "$TMP/data-n1-dup"
start_agent 6 n1 -join "127.0.0.1:$(gport 2)" -data-dir "$TMP/data-n1-dup"
pid6=${AGENT_PID[6]}
if wait_until 15 bash -c "! kill -0 $pid6 2>/dev/null"; then
	wait "$pid6" 2>/dev/null
	rc=$?
	check_eq "duplicate name agent exits with 1" 1 "$rc"
else
	fail "duplicate name agent exits"
fi
check_contains "duplicate name error is clear" "already in use" "$(cat "$TMP/n1.log")"
check_eq "the original n1 is still alive on n2" alive "$(member_status 2 n1)"

# 7b. a second agent on a live agent's data dir is refused at once, naming
# the holder's pid (they would share node ID, snapshot and KV store)
: >"$TMP/n1.log.dup"
"$RUMOR_BIN" agent -node n1b -bind 127.0.0.1 -serf-lan-port "$(gport 7)" -http-port -1 \
	-dns-port -1 -server-port "$(sport 7)" -data-dir "$TMP/data-n1" >"$TMP/n1.log.dup" 2>&1 &
pid7=$!
if wait_until 10 bash -c "! kill -0 $pid7 2>/dev/null"; then
	wait "$pid7" 2>/dev/null
	rc=$?
	check_eq "agent on a data dir in use exits with 1" 1 "$rc"
else
	kill -9 "$pid7" 2>/dev/null
	fail "agent on a data dir in use exits"
fi
check_contains "data dir in use: the error names the holder" \
	"is in use by another agent (pid ${AGENT_PID[1]})" "$(cat "$TMP/n1.log.dup")"
check_eq "the original n1 is still alive on n2 (data dir)" alive "$(member_status 2 n1)"

# 8. force-leave of the failed node, HTTP errors
kill -9 "${AGENT_PID[5]}"
wait_until 60 is_status 1 n5 failed || fail "n1 sees n5 failed again"
out=$("$RUMOR_BIN" force-leave -http-addr "$(haddr 1)" n5 2>&1)
check_eq "force-leave of a failed node succeeds" 0 $?
check_eq "force-left node shows as left" left "$(member_status 1 n5)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$(haddr 1)/v1/agent/force-leave/nosuchnode")
check_eq "force-leave of an unknown node is an error" 500 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 1)/v1/agent/nosuch")
check_eq "unknown endpoint is 404" 404 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$(haddr 1)/v1/agent/members")
check_eq "wrong method is 405" 405 "$code"

finish
