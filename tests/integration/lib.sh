# tests/integration/lib.sh — shared helpers for the shell integration tests.
#
# Every agent a test starts is recorded by PID and killed on exit; every wait
# is bounded in time; every check prints what it expected and what it got.
# A test ends with `finish`, which prints "N passed, M failed" and exits
# non-zero on any failure.

set -u
RUMOR_BIN=${RUMOR_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/rumor}
[ -x "$RUMOR_BIN" ] || { echo "rumor binary not found at $RUMOR_BIN (set RUMOR_BIN)"; exit 1; }
PASSED=0
FAILED=0
PIDS=()
TMP=$(mktemp -d /tmp/rumor-test.XXXXXX)
# A port base per run so that a left-over agent of another run cannot answer.
PORT_BASE=${PORT_BASE:-$((10000 + ($$ % 200) * 100))} # below the ephemeral range (32768+)

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$FAILED" -gt 0 ] || [ -n "${KEEP_LOGS:-}" ]; then
		for f in "$TMP"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 40 lines)"
			tail -n 40 "$f"
		done
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1"; }

# check DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# check_contains DESCRIPTION NEEDLE HAYSTACK
check_contains() {
	case "$3" in
	*"$2"*) pass "$1" ;;
	*) fail "$1: expected to find '$2' in: $3" ;;
	esac
}

finish() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	exit $?
}

# gossip port and http port of agent number i
gport() { echo $((PORT_BASE + $1)); }
hport() { echo $((PORT_BASE + 50 + $1)); }
sport() { echo $((PORT_BASE + 80 + $1)); } # KV sync (-server-port)
haddr() { echo "127.0.0.1:$(hport "$1")"; }

# start_agent I NAME [extra flags...]: agent I in the background; sets AGENT_PID[I]
declare -A AGENT_PID
start_agent() {
	local i=$1 name=$2
	shift 2
	mkdir -p "$TMP/data-$name"
	"$RUMOR_BIN" agent -node "$name" -bind 127.0.0.1 -advertise 127.0.0.1 \
		-serf-lan-port "$(gport "$i")" -client 127.0.0.1 -http-port "$(hport "$i")" \
		-dns-port -1 -server-port "$(sport "$i")" -data-dir "$TMP/data-$name" -log-level debug "$@" \
		>>"$TMP/$name.log" 2>&1 &
	AGENT_PID[$i]=$!
	PIDS+=("$!")
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds; 0 or 1
wait_until() {
	local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
	shift
	while [ $(($(date +%s%N) / 1000000)) -lt $deadline ]; do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait for the agent's HTTP API to answer
wait_http() { wait_until 10 curl -sf "http://$(haddr "$1")/v1/agent/self"; }

# member_status I NODE: the status agent I reports for NODE (alive/left/failed/...)
member_status() {
	"$RUMOR_BIN" members -http-addr "$(haddr "$1")" -format=json 2>/dev/null |
		/usr/bin/python3 -c '
import json, sys
st = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
for m in json.load(sys.stdin):
    if m["Name"] == sys.argv[1]:
        print(st.get(m["Status"], m["Status"]))
' "$2"
}

# is_status I NODE STATUS
is_status() { [ "$(member_status "$1" "$2")" = "$3" ]; }

# count_alive I: members agent I lists as alive
count_alive() {
	"$RUMOR_BIN" members -http-addr "$(haddr "$1")" -status '^alive$' -format=json 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}
has_alive() { [ "$(count_alive "$1")" = "$2" ]; }
