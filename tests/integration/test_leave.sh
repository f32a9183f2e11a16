#!/bin/bash
# tests/integration/test_leave.sh — leaving, one agent or all at once, and
# force-leave of a live member.
#
# 1. A lone agent's SIGTERM in a live cluster: the others list it left.
# 2. force-leave of a live member: 200, each of the others lists it leaving
#    (serf's leave intent; left once the stopped member's suspicion runs
#    out), it refutes and is alive again everywhere.
# 3. force-leave -prune of a failed member removes it from the list.
# 4. The whole cluster gets SIGTERM at the same instant: every agent exits 0
#    within LEAVE_BOUND_S (serf's BroadcastTimeout, 5 s, plus slack).
. "$(dirname "$0")/lib.sh"

N=${N:-5}
LEAVE_BOUND_S=${LEAVE_BOUND_S:-7}

start_cluster() {
	start_agent 1 n1
	wait_http 1 || fail "n1 HTTP up"
	for i in $(seq 2 $N); do
		start_agent "$i" "n$i" -join "127.0.0.1:$(gport 1)"
	done
	for i in $(seq 2 $N); do wait_http "$i" || fail "n$i HTTP up"; done
	for i in $(seq 1 $N); do
		wait_until 15 has_alive "$i" "$N" || fail "n$i sees $N alive (sees $(count_alive "$i"))"
	done
}

# exit_time_ms PID START_MS: waits (at most 30 s) for the agent PID to exit;
# sets EXIT_MS (ms since START_MS, or "timeout") and EXIT_RC (its exit code).
exit_time_ms() {
	local pid=$1 start=$2 deadline=$(($(now_ms) + 30000))
	EXIT_MS=timeout
	EXIT_RC=-
	while kill -0 "$pid" 2>/dev/null; do
		[ "$(now_ms)" -gt "$deadline" ] && return
		sleep 0.02
	done
	EXIT_MS=$(($(now_ms) - start))
	wait "$pid"
	EXIT_RC=$?
}

# force_leave I NODE [QUERY]: PUT /v1/agent/force-leave/NODE on agent I; the HTTP code
force_leave() {
	curl -s -o "$TMP/fl.out" -w '%{http_code}' -X PUT "http://$(haddr "$1")/v1/agent/force-leave/$2${3:-}"
}

# all_see I.. NODE STATUS: every listed agent reports NODE as STATUS
all_see() {
	local node=${*: -2:1} st=${*: -1}
	for i in "${@:1:$#-2}"; do is_status "$i" "$node" "$st" || return 1; done
}

start_cluster

# 1. force-leave of a live member. n5 is paused so it cannot refute at once:
# the others list it leaving (Consul answers 200, serf gossips the intent);
# resumed, it hears the intent, refutes it and is alive everywhere again.
# took the leave intent: leaving, or left once its probes ran out (n5 is
# stopped, so its suspicion ends in a death, which the intent makes a leave);
# alive means the intent never came, failed that it was lost
took_intent() { case "$(member_status "$1" "$2")" in leaving | left) return 0 ;; esac; return 1; }
all_took_intent() { for i in 1 2 3 4; do took_intent "$i" n5 || return 1; done; }

# Gossip retires a message after 4 sends at this size (4 x ceil(log10 6)),
# so now and then one agent misses the intent, lists n5 failed once its
# suspicion runs out, and learns of the leave from its next push-pull
# (serf's state carries left members), 30-60 s after its start: a CI run
# saw two agents still list 'failed' after 10 s. The wait covers that.
INTENT_S=${INTENT_S:-70}
kill -STOP "${AGENT_PID[5]}"
check_eq "force-leave of a live node answers 200" 200 "$(force_leave 1 n5)"
wait_until "$INTENT_S" all_took_intent || true
for i in 1 2 3 4; do
	if took_intent "$i" n5; then
		pass "n$i lists the force-left live node leaving (or left)"
	else
		fail "n$i lists n5 leaving or left within ${INTENT_S} s (it lists '$(member_status "$i" n5)')"
	fi
done
kill -CONT "${AGENT_PID[5]}"
if wait_until 60 all_see 1 2 3 4 5 n5 alive; then
	pass "the live node refutes the leave intent: alive again on all"
else
	fail "n5 alive again (n1 '$(member_status 1 n5)', n4 '$(member_status 4 n5)')"
fi
kill -0 "${AGENT_PID[5]}" 2>/dev/null && pass "the force-left live agent keeps running" ||
	fail "n5 still running"
check_eq "force-leave of an unknown node is Consul's 500" 500 "$(force_leave 1 nosuchnode)"
check_contains "with Consul's text" "No node found with name 'nosuchnode'" "$(cat "$TMP/fl.out")"

# 2. a lone agent's SIGTERM in a live cluster: exit 0, left on the others
t0=$(now_ms)
kill -TERM "${AGENT_PID[3]}"
exit_time_ms "${AGENT_PID[3]}" "$t0"
echo "# lone leave: n3 exited after $EXIT_MS ms, code $EXIT_RC"
check_eq "a lone SIGTERM exits 0" 0 "$EXIT_RC"
if wait_until 10 all_see 1 2 4 5 n3 left; then pass "n3 listed left by the others"; else
	fail "n3 left everywhere (n1 '$(member_status 1 n3)', n5 '$(member_status 5 n3)')"
fi

# 3. force-leave -prune of a failed member: left on the others, gone on n1
kill -9 "${AGENT_PID[4]}"
wait "${AGENT_PID[4]}" 2>/dev/null
wait_until 30 is_status 1 n4 failed || fail "n4 seen failed (n1 '$(member_status 1 n4)')"
check_eq "force-leave -prune of a failed node answers 200" 200 "$(force_leave 1 n4 '?prune')"
check_eq "a pruned node is gone from n1's list" "" "$(member_status 1 n4)"
if wait_until 10 all_see 2 5 n4 left; then pass "the failed node is left on n2 and n5"; else
	fail "n4 left on n2, n5 (n2 '$(member_status 2 n4)', n5 '$(member_status 5 n4)')"
fi

# 4. the whole cluster (five live agents) gets SIGTERM at the same instant
for i in 6 7; do start_agent "$i" "n$i" -join "127.0.0.1:$(gport 1)"; done
for i in 1 2 5 6 7; do
	wait_until 15 has_alive "$i" 5 || fail "n$i sees 5 alive (sees $(count_alive "$i"))"
done
pids=()
for i in 1 2 5 6 7; do pids+=("${AGENT_PID[$i]}"); done
t0=$(now_ms)
kill -TERM "${pids[@]}"
for i in 1 2 5 6 7; do
	exit_time_ms "${AGENT_PID[$i]}" "$t0"
	echo "# all at once: n$i exited after $EXIT_MS ms, code $EXIT_RC"
	check_eq "n$i exits 0 when the whole cluster stops" 0 "$EXIT_RC"
	if [ "$EXIT_MS" != timeout ] && [ "$EXIT_MS" -le $((LEAVE_BOUND_S * 1000)) ]; then
		pass "n$i exits within ${LEAVE_BOUND_S} s"
	else
		fail "n$i exits within ${LEAVE_BOUND_S} s (took $EXIT_MS ms)"
	fi
done
finish
