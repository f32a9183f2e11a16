#!/bin/bash
# tests/integration/test_kv.sh — the replicated KV store on 5 real agents on
# 127.0.0.1: puts on different agents are read on all, deletes spread, a
# blocking query wakes on its key and not on another, restart keeps data,
# a late joiner receives the whole store, and kill -9 during a stream of
# acknowledged writes loses none of them.
# ports below the ephemeral range (32768-60999) so no outgoing connection holds them
PORT_BASE=${PORT_BASE:-$((21000 + ($$ % 110) * 100))}
. "$(dirname "$0")/lib.sh"

sport() { echo $((PORT_BASE + 30 + $1)); }
kv_agent() { # I NAME [flags]
	local i=$1 name=$2
	shift 2
	start_agent "$i" "$name" -server-port "$(sport "$i")" -kv-sync-interval 1s "$@"
}
raw() { curl -sf "http://$(haddr "$1")/v1/kv/$2?raw"; }
has_value() { [ "$(raw "$1" "$2")" = "$3" ]; }
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr "$1")/v1/kv/$2")" = 404 ]; }
put() { curl -sf -X PUT --data-binary "$3" "http://$(haddr "$1")/v1/kv/$2"; }

kv_agent 1 n1
wait_http 1 || fail "n1 HTTP up"
for i in 2 3 4; do kv_agent "$i" "n$i" -join "127.0.0.1:$(gport 1)"; done
for i in 2 3 4; do wait_http "$i" || fail "n$i HTTP up"; done
wait_until 10 has_alive 1 4 && pass "4 agents joined" || fail "4 agents joined"

# puts on different agents, read on all
for i in 1 2 3 4; do
	check_eq "put k$i on n$i" true "$(put "$i" "multi/k$i" "v$i")"
done
t0=$(now_ms)
ok=1
for i in 1 2 3 4; do for j in 1 2 3 4; do
	wait_until 5 has_value "$j" "multi/k$i" "v$i" || { ok=0; fail "n$j reads multi/k$i"; }
done; done
[ $ok = 1 ] && pass "every put is read on every agent ($(($(now_ms) - t0)) ms)"

# flags and headers
curl -sf -X PUT --data x "http://$(haddr 2)/v1/kv/flagged?flags=42" >/dev/null
wait_until 5 has_value 4 flagged x
check_contains "flags replicate" '"Flags":42' "$(curl -s "http://$(haddr 4)/v1/kv/flagged")"
hdrs=$(curl -s -D - -o /dev/null "http://$(haddr 3)/v1/kv/does/not/exist")
check_contains "404 carries X-Consul-Index" "X-Consul-Index: 1" "$hdrs"
check_contains "404 carries X-Consul-KnownLeader" "X-Consul-KnownLeader: true" "$hdrs"

# ModifyIndex equal on every replica
idx() { curl -s -D - -o /dev/null "http://$(haddr "$1")/v1/kv/$2" | tr -d '\r' | awk 'tolower($1)=="x-consul-index:" {print $2}'; }
i1=$(idx 1 multi/k3); i4=$(idx 4 multi/k3)
check_eq "ModifyIndex is the same on two replicas" "$i1" "$i4"

# delete spreads
check_eq "delete on n3" true "$(curl -sf -X DELETE "http://$(haddr 3)/v1/kv/multi/k1")"
ok=1
for j in 1 2 4; do wait_until 5 gone "$j" multi/k1 || { ok=0; fail "n$j sees the delete"; }; done
[ $ok = 1 ] && pass "delete spreads to every agent"
curl -sf -X DELETE "http://$(haddr 2)/v1/kv/multi?recurse" >/dev/null
wait_until 5 gone 4 multi/k2 && wait_until 5 gone 4 multi/k4 && pass "recursive delete spreads" ||
	fail "recursive delete spreads"

# a value over 512 bytes is announced and pulled, not inlined in gossip
head -c 200000 /dev/urandom >"$TMP/large"
want=$(sha256sum <"$TMP/large" | cut -c1-64)
large_ok() { [ "$(curl -sf "http://$(haddr "$1")/v1/kv/large?raw" | sha256sum | cut -c1-64)" = "$want" ]; }
check_eq "put a 200 KB value on n2" true "$(curl -sf -X PUT --data-binary @"$TMP/large" "http://$(haddr 2)/v1/kv/large")"
ok=1
for j in 1 3 4; do wait_until 5 large_ok "$j" || { ok=0; fail "n$j reads the 200 KB value byte for byte"; }; done
[ $ok = 1 ] && pass "a 200 KB value reaches every agent byte for byte"

# blocking query: not woken by another key, woken by its own
put 1 watched v0 >/dev/null
wait_until 5 has_value 2 watched v0
wi=$(idx 2 watched)
curl -s -o "$TMP/block1" -w '%{time_total}' "http://$(haddr 2)/v1/kv/watched?index=$wi&wait=2s" >"$TMP/t1" &
bp=$!
sleep 0.3
put 1 unrelated u >/dev/null
wait $bp
t=$(cat "$TMP/t1")
awk -v t="$t" 'BEGIN{exit !(t >= 1.9)}' && pass "blocking query not woken by another key (returned after ${t}s)" ||
	fail "blocking query woken early by another key after ${t}s"
curl -s -o "$TMP/block2" -w '%{time_total}' "http://$(haddr 2)/v1/kv/watched?index=$wi&wait=10s" >"$TMP/t2" &
bp=$!
sleep 0.3
put 3 watched v1 >/dev/null
wait $bp
t=$(cat "$TMP/t2")
awk -v t="$t" 'BEGIN{exit !(t < 3)}' && pass "blocking query woken by a change on another agent (${t}s)" ||
	fail "blocking query not woken: ${t}s"
check_contains "woken query returns the new value" "$(printf v1 | base64)" "$(cat "$TMP/block2")"
# recurse watch on a prefix
pi=$(curl -s -D - -o /dev/null "http://$(haddr 4)/v1/kv/pfx/?recurse" | tr -d '\r' | awk 'tolower($1)=="x-consul-index:" {print $2}')
curl -s -o /dev/null -w '%{time_total}' "http://$(haddr 4)/v1/kv/pfx/?recurse&index=$pi&wait=10s" >"$TMP/t3" &
bp=$!
sleep 0.3
put 1 pfx/child c >/dev/null
wait $bp
t=$(cat "$TMP/t3")
awk -v t="$t" 'BEGIN{exit !(t < 3)}' && pass "prefix watch woken by a child key (${t}s)" || fail "prefix watch: ${t}s"

# restart keeps data
kill -TERM "${AGENT_PID[3]}"
wait "${AGENT_PID[3]}" 2>/dev/null
kv_agent 3 n3 -join "127.0.0.1:$(gport 1)"
wait_http 3
check_eq "restart keeps data" v1 "$(raw 3 watched)"

# late joiner receives the whole store (including writes it never saw gossiped)
for k in $(seq 1 50); do put $((k % 4 + 1)) "bulk/$k" "b$k" >/dev/null; done
sleep 1
kv_agent 5 n5 -join "127.0.0.1:$(gport 2)"
wait_http 5
cnt() { curl -s "http://$(haddr "$1")/v1/kv/bulk/?keys" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null; }
has50() { [ "$(cnt 5)" = 50 ]; }
wait_until 10 has50 && pass "late joiner receives all 50 keys" ||
	fail "late joiner has $(cnt 5) of 50 keys"
check_eq "late joiner has the latest value" v1 "$(raw 5 watched)"

# kill -9 during a stream of writes: every acknowledged write survives
/usr/bin/python3 - "$(hport 4)" "$TMP/acked" <<'PY' &
import http.client, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
f = open(out, "w")
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
i = 0
while True:
    try:
        c.request("PUT", "/v1/kv/stream/%06d" % i, body=b"s%d" % i)
        r = c.getresponse()
        body = r.read()
        if r.status == 200 and body == b"true":
            f.write("%06d\n" % i)
            f.flush()
        i += 1
    except Exception:
        break
PY
wp=$!
sleep 1.5
kill -9 "${AGENT_PID[4]}"
wait "$wp" 2>/dev/null
acked=$(wc -l <"$TMP/acked")
kv_agent 4 n4 -join "127.0.0.1:$(gport 1)"
wait_http 4
missing=$(/usr/bin/python3 - "$(hport 4)" "$TMP/acked" <<'PY'
import json, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
keys = set(json.load(urllib.request.urlopen("http://127.0.0.1:%s/v1/kv/stream/?keys" % port)))
acked = ["stream/" + l.strip() for l in open(path) if l.strip()]
print(sum(1 for k in acked if k not in keys))
PY
)
[ "$acked" -gt 10 ] && pass "write stream acknowledged $acked writes before kill -9" || fail "only $acked writes acknowledged"
check_eq "no acknowledged write missing after kill -9 and restart" 0 "$missing"

# API edges: 413 with Consul's text, 501 for sessions, 400s, txn atomicity
head -c 600000 /dev/zero >"$TMP/big"
r=$(curl -s -w ' %{http_code}' -X PUT --data-binary @"$TMP/big" "http://$(haddr 1)/v1/kv/toobig")
check_contains "value over 512 KiB: 413 with Consul's text" "max size: 524288 bytes" "$r"
check_contains "?acquire answers 501" "501" "$(curl -s -w ' %{http_code}' -X PUT -d x "http://$(haddr 1)/v1/kv/l?acquire=s")"
check_contains "leading slash refused" "400" "$(curl -s -w ' %{http_code}' -X PUT -d x "http://$(haddr 1)/v1/kv/%2Fabs")"
txn='[{"KV":{"Verb":"set","Key":"tx/a","Value":"YQ=="}},{"KV":{"Verb":"check-not-exists","Key":"watched"}}]'
check_contains "failing txn answers 409" "409" "$(curl -s -w ' %{http_code}' -X PUT -d "$txn" "http://$(haddr 1)/v1/txn")"
check_eq "failed txn wrote nothing" 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 1)/v1/kv/tx/a")"
txn='[{"KV":{"Verb":"set","Key":"tx/a","Value":"YQ=="}},{"KV":{"Verb":"set","Key":"tx/b","Value":"Yg=="}}]'
check_contains "txn applies" '"Errors":null' "$(curl -s -X PUT -d "$txn" "http://$(haddr 1)/v1/txn")"
wait_until 5 has_value 5 tx/b b && pass "txn writes replicate" || fail "txn writes replicate"

# an agent away longer than the tombstone TTL rebuilds its replica instead
# of resurrecting a key deleted meanwhile
start_agent 7 t7 -server-port "$(sport 7)" -kv-sync-interval 1s -kv-tombstone-ttl 2s
wait_http 7
start_agent 8 t8 -server-port "$(sport 8)" -kv-sync-interval 1s -kv-tombstone-ttl 2s \
	-join "127.0.0.1:$(gport 7)"
wait_http 8
put 7 zombie alive >/dev/null
wait_until 5 has_value 8 zombie alive || fail "t8 got zombie"
kill -9 "${AGENT_PID[8]}"
wait "${AGENT_PID[8]}" 2>/dev/null
curl -sf -X DELETE "http://$(haddr 7)/v1/kv/zombie" >/dev/null
sleep 3
start_agent 8 t8 -server-port "$(sport 8)" -kv-sync-interval 1s -kv-tombstone-ttl 2s \
	-join "127.0.0.1:$(gport 7)"
wait_http 8
sleep 2.5
check_eq "returning agent does not serve the deleted key" 404 \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 8)/v1/kv/zombie")"
check_eq "deleted key not resurrected on its peer" 404 \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 7)/v1/kv/zombie")"
check_contains "returning agent logged the rebuild" "discarding it" "$(cat "$TMP/t8.log")"

finish
