#!/usr/bin/env bash
# Operating a real cluster on 127.0.0.1: /v1/agent/metrics parses as strict
# Prometheus text 0.0.4 and counts real traffic (packets grow, members alive
# equal the cluster size); the JSON form has Consul's shape; `rumor info`
# shows the member count; `rumor monitor` receives the log line of a join,
# and a monitor that connects later gets the recent lines replayed;
# promtool check metrics finds nothing to complain about.
source "$(dirname "$0")/lib.sh"

# A strict parser of the exposition format: every line is a HELP, a TYPE or
# a sample; names and label names are valid; a family has one TYPE, before
# its samples, and its samples are contiguous; counters end in _total;
# label values use only \\ \" \n escapes. Prints "name{labels} value" lines
# normalised as JSON {"name|k=v,...": value}, or exits 1 with the reason.
PROM_PARSER='
import json, re, sys
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}
text = sys.stdin.read()
def die(msg, line=""):
    print("INVALID: %s: %r" % (msg, line)); sys.exit(1)
if not text.endswith("\n"):
    die("no final newline")
types, seen_samples, order, out = {}, set(), [], {}
current = None
def family_of(name):
    if name in types: return name
    for sfx in ("_sum", "_count", "_bucket"):
        if name.endswith(sfx) and types.get(name[:-len(sfx)]) in ("summary", "histogram"):
            return name[:-len(sfx)]
    return None
for line in text[:-1].split("\n"):
    if line.startswith("#"):
        parts = line.split(" ", 3)
        if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
            die("bad comment", line)
        name = parts[2]
        if not NAME.match(name): die("bad name", line)
        if name in seen_samples: die("HELP/TYPE after samples", line)
        if current != name:
            if name in order: die("family reopened", line)
            order.append(name); current = name
        if parts[1] == "TYPE":
            if name in types: die("second TYPE", line)
            if len(parts) != 4 or parts[3] not in TYPES: die("bad type", line)
            if parts[3] == "counter" and not name.endswith("_total"): die("counter without _total", line)
            types[name] = parts[3]
        continue
    m = re.match(r"([^{ ]+)(\{(.*)\})? (\S+)$", line)
    if not m: die("bad sample", line)
    name, labels, value = m.group(1), m.group(3), m.group(4)
    if not NAME.match(name): die("bad sample name", line)
    fam = family_of(name)
    if fam is None: die("sample without TYPE", line)
    if fam != current: die("sample not contiguous with its family", line)
    seen_samples.add(fam)
    lab = []
    if labels is not None:
        i = 0
        while i < len(labels):
            lm = re.match(r"([^=]+)=\"", labels[i:])
            if not lm or not LNAME.match(lm.group(1)): die("bad label", line)
            i += lm.end(); v = ""
            while i < len(labels) and labels[i] != "\"":
                if labels[i] == "\\":
                    if i + 1 >= len(labels) or labels[i+1] not in "\\\"n": die("bad escape", line)
                    v += {"n": "\n"}.get(labels[i+1], labels[i+1]); i += 2
                else:
                    v += labels[i]; i += 1
            if i >= len(labels): die("unterminated label", line)
            i += 1
            lab.append("%s=%s" % (lm.group(1), v))
            if i < len(labels):
                if labels[i] != ",": die("bad label separator", line)
                i += 1
    if value not in ("NaN", "+Inf", "-Inf"):
        try: float(value)
        except ValueError: die("bad value", line)
    out[name + "|" + ",".join(lab)] = float(value)
print(json.dumps(out))
'

prom() { curl -sf "http://$(haddr "$1")/v1/agent/metrics?format=prometheus"; }
# prom_value I KEY: a value from agent I's parsed exposition (KEY as "name|k=v")
prom_value() {
	prom "$1" | /usr/bin/python3 -c "$PROM_PARSER" | /usr/bin/python3 -c \
		'import json,sys; d=json.load(sys.stdin); print(int(d.get(sys.argv[1], -1)))' "$2"
}
alive_is() { [ "$(prom_value "$1" 'rumor_serf_members|status=alive')" = "$2" ]; }

N=3
# n1 logs at info: the monitor's debug lines must come from below its level
start_agent 1 n1 -server-port "$((PORT_BASE + 81))" -log-level info
for i in $(seq 2 $N); do
	start_agent "$i" "n$i" -server-port "$((PORT_BASE + 80 + i))"
done
for i in $(seq 1 $N); do
	wait_http "$i" || fail "agent n$i answers HTTP"
done

# rumor monitor on n1, at debug level, before the joins
"$RUMOR_BIN" monitor -http-addr "$(haddr 1)" -log-level=debug >"$TMP/monitor.out" 2>"$TMP/monitor.err" &
MON=$!
PIDS+=("$MON")
# connected once a request's debug line comes through
monitor_sees_self() {
	curl -s "http://$(haddr 1)/v1/agent/self" >/dev/null
	grep -q "GET /v1/agent/self" "$TMP/monitor.out"
}
wait_until 10 monitor_sees_self || fail "rumor monitor connects: $(cat "$TMP/monitor.err")"

for i in $(seq 2 $N); do
	"$RUMOR_BIN" join -http-addr "$(haddr "$i")" "127.0.0.1:$(gport 1)" >/dev/null ||
		fail "n$i joins n1"
done

# 1. headers and strict parse
hdr=$(curl -s -D - -o /dev/null "http://$(haddr 1)/v1/agent/metrics?format=prometheus" | tr -d '\r')
check_contains "Prometheus content type" "Content-Type: text/plain; version=0.0.4; charset=utf-8" "$hdr"
parsed=$(prom 1 | /usr/bin/python3 -c "$PROM_PARSER")
case "$parsed" in
INVALID*) fail "Prometheus text is well-formed: $parsed" ;;
*) pass "Prometheus text is well-formed" ;;
esac

# promtool (Debian's prometheus package), Prometheus' own linter: no
# abbreviated units, counters end in _total, HELP on every family. Skipped
# (not failed) where it is not installed.
if command -v promtool >/dev/null; then
	prom 1 >"$TMP/prom.txt"
	lint=$(promtool check metrics <"$TMP/prom.txt" 2>&1)
	rc=$?
	check_eq "promtool check metrics is clean (exit 0, no output)" "0 ''" "$rc '$lint'"
	check_contains "HTTP latency in seconds" "# TYPE rumor_http_request_seconds summary" \
		"$(cat "$TMP/prom.txt")"
else
	echo "skip - promtool is not installed (scripts/deps.sh test)"
fi

# 2. members alive equals the cluster size on every agent
for i in $(seq 1 $N); do
	if wait_until 20 alive_is "$i" $N; then
		pass "n$i: rumor_serf_members{status=alive} = $N"
	else
		fail "n$i: rumor_serf_members{status=alive} = $N (got $(prom_value "$i" 'rumor_serf_members|status=alive'))"
	fi
done

# 3. real traffic is counted and grows
p1=$(prom_value 1 'rumor_memberlist_packets_sent_total|')
b1=$(prom_value 1 'rumor_memberlist_bytes_received_total|')
sleep 3
p2=$(prom_value 1 'rumor_memberlist_packets_sent_total|')
b2=$(prom_value 1 'rumor_memberlist_bytes_received_total|')
if [ "$p1" -gt 0 ] && [ "$p2" -gt "$p1" ]; then
	pass "packets_sent grows with gossip ($p1 -> $p2)"
else
	fail "packets_sent grows with gossip ($p1 -> $p2)"
fi
if [ "$b2" -gt "$b1" ]; then pass "bytes_received grows ($b1 -> $b2)"; else fail "bytes_received grows ($b1 -> $b2)"; fi
probes=$(prom_value 1 'rumor_memberlist_probe_total|')
if [ "$probes" -gt 0 ]; then pass "probes are counted ($probes)"; else fail "probes are counted ($probes)"; fi
pp=$(prom_value 1 'rumor_memberlist_push_pull_total|')
if [ "$pp" -ge 2 ]; then pass "push-pulls of the two joins counted ($pp)"; else fail "push-pulls of the two joins counted ($pp)"; fi
ok200=$(prom_value 1 'rumor_http_requests_total|code=200')
if [ "$ok200" -gt 0 ]; then pass "HTTP 200s counted ($ok200)"; else fail "HTTP 200s counted ($ok200)"; fi
curl -s "http://$(haddr 1)/v1/no/such/path" >/dev/null
nf=$(prom_value 1 'rumor_http_requests_total|code=404')
check_eq "HTTP 404 counted" "1" "$nf"

# KV replication is counted on the receiving side
curl -s -X PUT -d blue "http://$(haddr 1)/v1/kv/app/color" >/dev/null
kv_applied() { [ "$(prom_value 3 'rumor_kv_gossip_applied_total|')" -ge 1 ]; }
if wait_until 10 kv_applied; then
	pass "n3 counts the KV write of n1 it applied"
else
	fail "n3 counts the KV write of n1 it applied (got $(prom_value 3 'rumor_kv_gossip_applied_total|'))"
fi
w=$(prom_value 1 'rumor_kv_writes_total|')
if [ "$w" -ge 1 ]; then pass "n1 counts its KV write ($w)"; else fail "n1 counts its KV write ($w)"; fi

# 4. the JSON form has Consul's shape
shape=$(curl -sf "http://$(haddr 1)/v1/agent/metrics" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert set(d) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}, sorted(d)
assert d["Points"] == []
for g in d["Gauges"]:
    assert set(g) == {"Name", "Value", "Labels"}, g
for c in d["Counters"] + d["Samples"]:
    assert set(c) == {"Name", "Count", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}, c
alive = [g["Value"] for g in d["Gauges"] if g["Name"] == "rumor.serf.members" and g["Labels"] == {"status": "alive"}]
print("ok", int(alive[0]))
' 2>&1)
check_eq "JSON metrics have Consul's shape and 3 alive" "ok $N" "$shape"
check_eq "unknown format is a 400" "400" \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 1)/v1/agent/metrics?format=xml")"

# 5. rumor info shows the member count
info=$("$RUMOR_BIN" info -http-addr "$(haddr 2)")
check_contains "rumor info has the serf_lan section" "serf_lan:" "$info"
check_contains "rumor info shows 3 members" "$(printf '\tmembers = 3')" "$info"
check_contains "rumor info shows the node name" "$(printf '\tnode_name = n2')" "$info"

# 6. rumor monitor received the join, and debug lines
if wait_until 5 grep -q "EventMemberJoin: n3" "$TMP/monitor.out"; then
	pass "rumor monitor streamed the join of n3"
else
	fail "rumor monitor streamed the join of n3: $(head -c 600 "$TMP/monitor.out")"
fi
"$RUMOR_BIN" members -http-addr "$(haddr 1)" >/dev/null
if wait_until 5 grep -q "\[DEBUG\] http: Request GET /v1/agent/members" "$TMP/monitor.out"; then
	pass "rumor monitor -log-level=debug gets debug lines from an agent at info"
else
	fail "rumor monitor -log-level=debug gets debug lines"
fi
# JSON lines
curl -sN --max-time 15 "http://$(haddr 1)/v1/agent/monitor?loglevel=debug&logjson" >"$TMP/mon.json" &
CURL=$!
PIDS+=("$CURL")
json_sees_self() {
	curl -s "http://$(haddr 1)/v1/agent/self" >/dev/null
	grep -q '/v1/agent/self' "$TMP/mon.json"
}
wait_until 10 json_sees_self
kill "$CURL" 2>/dev/null
wait "$CURL" 2>/dev/null
line=$(grep -m1 '/v1/agent/self' "$TMP/mon.json" | /usr/bin/python3 -c '
import json, sys; d = json.loads(sys.stdin.readline()); print(d["@level"], d["@module"])' 2>&1)
check_eq "monitor ?logjson streams hclog-style JSON lines" "debug http" "$line"
# an idle agent's monitor still shows how it got there: the last 512
# lines it logged (at the agent's level) come first, at the monitor's level
curl -sN --max-time 2 "http://$(haddr 1)/v1/agent/monitor" >"$TMP/mon.replay"
check_contains "monitor replays the start line on connect" "agent: rumor agent running: node 'n1'" \
	"$(cat "$TMP/mon.replay")"
check_contains "monitor replays the join of n3 on connect" "EventMemberJoin: n3" \
	"$(cat "$TMP/mon.replay")"
first=$(grep -n "rumor agent running" "$TMP/mon.replay" | head -1 | cut -d: -f1)
join=$(grep -n "EventMemberJoin: n3" "$TMP/mon.replay" | head -1 | cut -d: -f1)
check_eq "replayed lines are oldest first" "yes" \
	"$([ -n "$first" ] && [ -n "$join" ] && [ "$first" -lt "$join" ] && echo yes || echo "no ($first, $join)")"
check_eq "replay holds at most 512 lines" "yes" \
	"$([ "$(grep -c '' "$TMP/mon.replay")" -le 512 ] && echo yes || echo no)"
curl -sN --max-time 2 "http://$(haddr 1)/v1/agent/monitor?loglevel=err" >"$TMP/mon.err.replay"
check_eq "an error-level monitor replays no info lines" "0" \
	"$(grep -c '\[INFO\]' "$TMP/mon.err.replay")"
check_eq "monitor rejects an unknown level" "400" \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://$(haddr 1)/v1/agent/monitor?loglevel=loud")"

# 7. the monitor ends cleanly when the agent leaves
"$RUMOR_BIN" leave -http-addr "$(haddr 1)" >/dev/null
if wait_until 10 bash -c "! kill -0 $MON 2>/dev/null"; then
	wait "$MON"
	check_eq "rumor monitor exits 0 when the agent stops" "0" "$?"
	check_contains "rumor monitor says the remote side ended" "Remote side ended" "$(cat "$TMP/monitor.err")"
else
	fail "rumor monitor exits when the agent stops"
fi

finish
