#!/bin/bash
# tests/integration/test_serf_interop.sh — rumor agents and stock Serf agents
# (Debian's /usr/bin/serf 0.8.2) in one cluster, on 127.0.0.1.
#
# Cluster A: rumor r1 r2 r3, then serf s1 joins it (serf joins rumor).
# Cluster B: serf s2 s3, then rumor r4 joins it (rumor joins serf).
# Checked: both `serf members` and `rumor members` list every node alive with
# its tags; user events fired on either side run an event handler on the
# other; kill -9 of a rumor agent is seen failed by serf and of a serf agent
# by rumor; `rumor leave` is seen as left by serf and `serf leave` by rumor;
# a rumor agent killed and restarted without -join rejoins from its snapshot;
# six rumor agents joining at once reach the serf agents through rumor's
# compressed, packed gossip packets; in cluster C (3 rumor agents with the
# KV store + 3 serf) KV writes and service registrations reach every rumor
# agent and no serf agent logs "unknown type" or any other warning.
# With SERF_INTEROP_ENCRYPT=1 (test_serf_interop_encrypted.sh) every node
# runs with -encrypt and a rumor and a serf agent with a wrong key must
# never join.
#
# Every wait is bounded; every process is killed by PID at exit.
# Ports below the kernel's ephemeral range (32768+), so that no outgoing
# connection's source port can take one of ours.
PORT_BASE=${PORT_BASE:-$((20000 + ($$ % 120) * 100))}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERF=${SERF_BIN:-/usr/bin/serf}
if [ ! -x "$SERF" ]; then
	echo "serf not installed at $SERF (apt-get install serf): skipping"
	echo "0 passed, 0 failed"
	exit 0
fi
ENC=${SERF_INTEROP_ENCRYPT:-0}
KEY=hSaQNjSFS01hF4fSWL92xKJR8s+dG/4Y43Y6qmT/NnQ=
BADKEY=5P1jvjXvQ6OmzOlnHsfWrkDkSRt3A+4+dXQ5RwRM5Ds=
ENC_FLAGS=()
[ "$ENC" = 1 ] && ENC_FLAGS=(-encrypt "$KEY")
T0=$(now_ms)

# One handler script for both kinds of agents: one line per event.
cat >"$TMP/handler.sh" <<'EOF'
#!/bin/sh
echo "$SERF_EVENT ${SERF_USER_EVENT:-} $(cat | tr '\n' ' ')" >>"$1"
EOF
chmod +x "$TMP/handler.sh"

# start_rumor I NAME [flags]
start_rumor() {
	local i=$1 name=$2
	shift 2
	start_agent "$i" "$name" -server-port -1 "${ENC_FLAGS[@]}" \
		-node-meta "flavour:rumor" \
		-event-handler "$TMP/handler.sh $TMP/$name.events" "$@"
}

# start_serf I NAME [flags]: gossip on gport I, RPC on hport I
declare -A SERF_PID
start_serf() {
	local i=$1 name=$2
	shift 2
	"$SERF" agent -node "$name" -bind "127.0.0.1:$(gport "$i")" \
		-rpc-addr "127.0.0.1:$(hport "$i")" -tag flavour=serf \
		-event-handler "$TMP/handler.sh $TMP/$name.events" -log-level debug "$@" \
		>>"$TMP/$name.log" 2>&1 &
	SERF_PID[$i]=$!
	PIDS+=("$!")
}
rpc() { echo "127.0.0.1:$(hport "$1")"; }
gaddr() { echo "127.0.0.1:$(gport "$1")"; }

# serf_status I NODE: the status serf agent I reports for NODE
serf_status() {
	"$SERF" members -rpc-addr "$(rpc "$1")" 2>/dev/null | awk -v n="$2" '$1 == n { print $3 }'
}
serf_is() { [ "$(serf_status "$1" "$2")" = "$3" ]; }
serf_alive_count() {
	"$SERF" members -rpc-addr "$(rpc "$1")" -status alive 2>/dev/null | wc -l
}
serf_has_alive() { [ "$(serf_alive_count "$1")" = "$2" ]; }
handler_saw() { grep -q -- "$2" "$TMP/$1.events" 2>/dev/null; }

# ----------------------------------------------------------- cluster A
start_rumor 1 r1
wait_http 1 || fail "r1 HTTP API up"
start_rumor 2 r2 -join "$(gaddr 1)"
start_rumor 3 r3 -join "$(gaddr 1)"
start_serf 4 s1 "${ENC_FLAGS[@]}" -join "$(gaddr 1)"

# ----------------------------------------------------------- cluster B
start_serf 11 s2 "${ENC_FLAGS[@]}"
wait_until 10 "$SERF" members -rpc-addr "$(rpc 11)" || fail "s2 RPC up"
start_serf 12 s3 "${ENC_FLAGS[@]}" -join "$(gaddr 11)"
start_rumor 13 r4 -join "$(gaddr 11)"

if wait_until 15 has_alive 1 4; then pass "rumor r1 lists 4 alive (3 rumor + serf s1)"
else fail "rumor r1 lists 4 alive: got $(count_alive 1)"; fi
if wait_until 15 serf_has_alive 4 4; then pass "serf s1 lists 4 alive after joining rumor"
else fail "serf s1 lists 4 alive: got $(serf_alive_count 4)"; fi
if wait_until 15 has_alive 13 3; then pass "rumor r4 joined serf cluster: 3 alive"
else fail "rumor r4 lists 3 alive: got $(count_alive 13)"; fi
if wait_until 15 serf_has_alive 11 3; then pass "serf s2 lists rumor r4 alive (3 alive)"
else fail "serf s2 lists 3 alive: got $(serf_alive_count 11)"; fi

# tags both ways
out=$("$SERF" members -rpc-addr "$(rpc 4)" 2>/dev/null | grep '^r2 ')
check_contains "serf shows rumor r2's tags" "flavour=rumor" "$out"
out=$("$RUMOR_BIN" members -http-addr "$(haddr 1)" -detailed 2>/dev/null | grep '^s1 ')
check_contains "rumor shows serf s1's tags" "flavour=serf" "$out"

# ----------------------------------------------------- wrong key (encrypted)
if [ "$ENC" = 1 ]; then
	start_agent 5 rbad -server-port -1 -encrypt "$BADKEY" -join "$(gaddr 1)"
	start_serf 6 sbad -encrypt "$BADKEY" -join "$(gaddr 1)"
	sleep 3
	st=$(member_status 1 rbad)
	check_eq "rumor with a wrong key never joins" "" "$st"
	st=$(member_status 1 sbad)
	check_eq "serf with a wrong key never joins" "" "$st"
	st=$(serf_status 4 rbad)$(serf_status 4 sbad)
	check_eq "serf s1 never sees the wrong-key nodes" "" "$st"
fi

# ------------------------------------------------------------- user events
"$SERF" event -rpc-addr "$(rpc 4)" fromserf hello-from-serf >/dev/null 2>&1
"$RUMOR_BIN" event -http-addr "$(haddr 1)" fromrumor hello-from-rumor >/dev/null 2>&1
if wait_until 15 handler_saw r2 "user fromserf hello-from-serf"; then
	pass "serf event runs rumor r2's handler"
else fail "serf event runs rumor r2's handler: $(cat "$TMP/r2.events" 2>/dev/null)"; fi
if wait_until 15 handler_saw s1 "user fromrumor hello-from-rumor"; then
	pass "rumor event runs serf s1's handler"
else fail "rumor event runs serf s1's handler: $(cat "$TMP/s1.events" 2>/dev/null)"; fi
if handler_saw r2 "member-join"; then pass "rumor handler saw member-join"
else fail "rumor handler saw member-join: $(cat "$TMP/r2.events" 2>/dev/null)"; fi

# ------------------------------------------------------------- failures
kill -9 "${AGENT_PID[3]}"    # rumor r3 in cluster A
kill -9 "${SERF_PID[12]}"    # serf s3 in cluster B
if wait_until 30 serf_is 4 r3 failed; then pass "serf s1 sees killed rumor r3 failed"
else fail "serf s1 sees r3 failed: got '$(serf_status 4 r3)'"; fi
if wait_until 30 is_status 13 s3 failed; then pass "rumor r4 sees killed serf s3 failed"
else fail "rumor r4 sees s3 failed: got '$(member_status 13 s3)'"; fi

# --------------------------------------------------------------- leaves
"$RUMOR_BIN" leave -http-addr "$(haddr 2)" >/dev/null 2>&1
if wait_until 10 serf_is 4 r2 left; then pass "serf s1 sees rumor leave as left"
else fail "serf s1 sees r2 left: got '$(serf_status 4 r2)'"; fi
"$SERF" leave -rpc-addr "$(rpc 4)" >/dev/null 2>&1
if wait_until 10 is_status 1 s1 left; then pass "rumor r1 sees serf leave as left"
else fail "rumor r1 sees s1 left: got '$(member_status 1 s1)'"; fi

# -------------------------------------------------------- packed gossip
# Six rumor agents join rumor r4 (in serf s2's cluster; s3 was killed
# above) at once. Serf s2 learns them from rumor's gossip, which packs alive
# messages by their compressed size and sends them LZW-compressed (the
# rumor agents count those packets): memberlist must unpack them.
for i in 21 22 23 24 25 26; do start_rumor "$i" "rj$i" -join "$(gaddr 13)"; done
# 40 s: gossip leaves a member unlearned now and then (each update is sent
# 4 x log10(N) times by each node; at 8 nodes a miss is ~1% per update)
# and the push-pull, every 30 s, repairs it, in Serf as in rumor
if wait_until 40 serf_has_alive 11 8; then pass "serf s2 lists the 6 rumor agents that joined r4 (8 alive)"
else fail "serf s2 lists 8 alive: got $(serf_alive_count 11): $("$SERF" members -rpc-addr "$(rpc 11)" 2>&1 | tr "\n" " ")"; fi
zsum=0
for i in 13 21 22 23 24 25 26; do
	z=$(curl -sf "http://$(haddr "$i")/v1/agent/metrics?format=prometheus" |
		awk '$1 == "rumor_memberlist_packets_compressed_total" { print $2 }')
	zsum=$((zsum + ${z:-0}))
done
if [ "$zsum" -gt 0 ]; then pass "rumor sent $zsum compressed gossip packets meanwhile"
else fail "rumor sent no compressed gossip packet"; fi
bad=$(grep -cE "memberlist: (Failed to decompress|Failed to handle|Failed to decode)" "$TMP/s2.log")
check_eq "serf s2 decoded every packet (no memberlist decode errors)" 0 "$bad"

# ------------------------------------------------------------- snapshot
# rumor r4 (joined to serf s2) is killed and restarted without -join: its
# snapshot in the data dir brings it back into s2's cluster.
kill -9 "${AGENT_PID[13]}"
wait "${AGENT_PID[13]}" 2>/dev/null
start_rumor 13 r4
if wait_until 15 is_status 13 s2 alive; then pass "restarted rumor r4 rejoins serf s2 from its snapshot"
else fail "r4 rejoins s2 from its snapshot: got '$(member_status 13 s2)'"; fi
if wait_until 15 serf_is 11 r4 alive; then pass "serf s2 sees r4 alive again"
else fail "serf s2 sees r4 alive again: got '$(serf_status 11 r4)'"; fi

# ------------------------------------------------ mixed cluster, KV traffic
# Cluster C: rumor r7 r8 r9 with the KV store on (its SET and ANNOUNCE ride
# gossip as user messages of type 0x80 and up) and serf s14 s15 s16 joined to
# them. KV writes and service registrations on the rumor side while the serf
# agents run: every rumor agent has them all in the usual time, and no serf
# agent is sent one rumor-only message (memberlist hands each to serf, which
# logs "Received message of unknown type"), nor logs any other warning.
# start_rumor_kv I NAME [flags]: a rumor agent with KV (sync port sport I)
start_rumor_kv() {
	local i=$1 name=$2
	shift 2
	start_agent "$i" "$name" "${ENC_FLAGS[@]}" -node-meta "flavour:rumor" "$@"
}
kv_keys() { curl -sf "http://$(haddr "$1")/v1/kv/mix/?keys" | grep -o '"mix/k[0-9]*"' | wc -l; }
catalog_has() { curl -sf "http://$(haddr "$1")/v1/catalog/service/mixweb" | grep -q "\"$2\""; }
start_rumor_kv 7 r7
wait_http 7 || fail "r7 HTTP API up"
start_rumor_kv 8 r8 -join "$(gaddr 7)"
start_rumor_kv 9 r9 -join "$(gaddr 7)"
wait_http 8 && wait_http 9 || fail "r8 r9 HTTP API up" # a serf -join that fails exits
start_serf 14 s14 "${ENC_FLAGS[@]}" -join "$(gaddr 7)"
start_serf 15 s15 "${ENC_FLAGS[@]}" -join "$(gaddr 8)"
start_serf 16 s16 "${ENC_FLAGS[@]}" -join "$(gaddr 9)"
if wait_until 15 has_alive 7 6 && wait_until 40 serf_has_alive 14 6; then # see "packed gossip"
	pass "mixed cluster C: r7 and serf s14 list 6 alive"
else fail "mixed cluster C: r7 lists $(count_alive 7), s14 $(serf_alive_count 14) alive"; fi
NKV=60
tw=$(now_ms)
for k in $(seq 1 $NKV); do
	i=$((7 + k % 3))
	curl -sf -X PUT "http://$(haddr "$i")/v1/kv/mix/k$k" -d "value-$k-from-$i" >/dev/null ||
		fail "PUT mix/k$k on agent $i"
done
all_kv() { for i in 7 8 9; do [ "$(kv_keys "$i")" -eq "$NKV" ] || return 1; done; }
if wait_until 15 all_kv; then pass "all $NKV keys on r7 r8 r9 within $(($(now_ms) - tw)) ms"
else fail "all $NKV keys on every rumor agent: r7 $(kv_keys 7) r8 $(kv_keys 8) r9 $(kv_keys 9)"; fi
# one registration at a time, each awaited in every rumor agent's catalog
everywhere() { for i in 7 8 9; do catalog_has "$i" "$1" || return 1; done; }
for j in 7 8 9; do
	tr0=$(now_ms)
	curl -sf -X PUT "http://$(haddr "$j")/v1/agent/service/register" \
		-d "{\"Name\":\"mixweb\",\"ID\":\"mixweb-r$j\",\"Port\":$((8000 + j))}" >/dev/null ||
		fail "register mixweb on r$j"
	if wait_until 15 everywhere "r$j"; then pass "mixweb of r$j in every rumor agent's catalog within $(($(now_ms) - tr0)) ms"
	else fail "mixweb of r$j in every catalog: r7 r8 r9 see $(for i in 7 8 9; do catalog_has "$i" "r$j" && echo -n y || echo -n n; done)"; fi
done
sleep 3 # the last gossip rounds and a push-pull or two
unknown=$(cat "$TMP"/s*.log | grep -c "unknown type")
check_eq "no serf agent logged 'unknown type'" 0 "$unknown"
warns=$(cat "$TMP"/s14.log "$TMP"/s15.log "$TMP"/s16.log | grep -E "\[(WARN|ERR)\]")
check_eq "serf s14 s15 s16 logged no WARN or ERR" "" "$warns"

echo "wall time: $(($(now_ms) - T0)) ms"
finish
