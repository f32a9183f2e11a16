#!/usr/bin/env bash
# The per-address HTTP connection cap (limits.http_max_conns_per_client,
# default 200) with a real agent: one local process holding 250 idle
# connections from 127.0.0.1 gets 200 of them, the other 50 are answered
# 429 and closed; curl from 127.0.0.2 is still served meanwhile, curl from
# 127.0.0.1 gets 429 until the holder lets go, and the refusals show in the
# metrics and, rate-limited, in the log.
source "$(dirname "$0")/lib.sh"

start_agent 1 n1
wait_http 1 || fail "n1 answers HTTP"
HOST=127.0.0.1
PORT=$(hport 1)
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# holder: opens N connections, waits a second, writes "held refused" (a
# refused one is answered 429 and closed; a held one stays silent), then
# keeps them open until killed
cat >"$TMP/holder.py" <<'PY'
import os, select, socket, sys, time
host, port, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    conns.append(s)
time.sleep(1.0)
readable, _, _ = select.select(conns, [], [], 0)
refused = sum(1 for s in readable if s.recv(4096).startswith(b"HTTP/1.1 429"))
held = n - len(readable)
with open(out + ".tmp", "w") as f:
    f.write("%d %d\n" % (held, refused))
os.rename(out + ".tmp", out)
time.sleep(120)
PY
python3 "$TMP/holder.py" "$HOST" "$PORT" 250 "$TMP/holder.out" &
HOLDER=$!
PIDS+=("$HOLDER")
wait_until 15 test -f "$TMP/holder.out" || fail "holder opened its connections"
check_eq "250 connections from 127.0.0.1: 200 held, 50 refused with 429" "200 50" \
	"$(cat "$TMP/holder.out" 2>/dev/null)"

check_eq "curl from 127.0.0.2 is served while 127.0.0.1 holds its cap" 200 \
	"$(code --interface 127.0.0.2 "http://$(haddr 1)/v1/agent/self")"
check_eq "curl from 127.0.0.1 gets 429 meanwhile" 429 "$(code "http://$(haddr 1)/v1/agent/self")"

prom=$(curl -s --interface 127.0.0.2 "http://$(haddr 1)/v1/agent/metrics?format=prometheus")
refused=$(echo "$prom" | sed -n 's/^rumor_http_connections_refused_total{reason="per_client"} \([0-9.e+]*\).*/\1/p')
check_eq "metric counts the 51 refusals" 51 "${refused%.*}"
check_contains "metric for the global cap is there too" \
	'rumor_http_connections_refused_total{reason="max_conns"} 0' "$prom"

# all 51 came within HTTP_REFUSE_REPORT_S (10 s) of the first
lines=$(grep -c "http: refused connection from 127.0.0.1" "$TMP/n1.log")
check_eq "51 refusals make one log line (rate-limited)" 1 "$lines"

kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
wait_until 5 test "$(code "http://$(haddr 1)/v1/agent/self")" = 200 ||
	fail "127.0.0.1 served again once the holder closed its connections"
check_eq "curl from 127.0.0.1 is 200 after the holder closed" 200 \
	"$(code "http://$(haddr 1)/v1/agent/self")"

# the flag: 0 turns the cap off
start_agent 2 n2 -http-max-conns-per-client 0
wait_http 2 || fail "n2 answers HTTP"
python3 "$TMP/holder.py" "$HOST" "$(hport 2)" 250 "$TMP/holder2.out" &
HOLDER=$!
PIDS+=("$HOLDER")
wait_until 15 test -f "$TMP/holder2.out" || fail "holder opened its connections to n2"
check_eq "-http-max-conns-per-client 0: all 250 held" "250 0" "$(cat "$TMP/holder2.out" 2>/dev/null)"
kill "$HOLDER" 2>/dev/null

# the config-file key
echo '{"limits": {"http_max_conns_per_client": 5}}' >"$TMP/limits.json"
start_agent 3 n3 -config-file "$TMP/limits.json"
wait_http 3 || fail "n3 answers HTTP"
python3 "$TMP/holder.py" "$HOST" "$(hport 3)" 6 "$TMP/holder3.out" &
HOLDER=$!
PIDS+=("$HOLDER")
wait_until 15 test -f "$TMP/holder3.out" || fail "holder opened its connections to n3"
check_eq "limits.http_max_conns_per_client 5: 5 held, 1 refused" "5 1" \
	"$(cat "$TMP/holder3.out" 2>/dev/null)"
kill "$HOLDER" 2>/dev/null

finish
