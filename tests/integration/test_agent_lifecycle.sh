#!/usr/bin/env bash
# The agent's life: bad flags, ports in use, retry-join, SIGHUP reload,
# SIGTERM/SIGINT leaving gracefully, -dev cleaning up its directory.
source "$(dirname "$0")/lib.sh"

# bad input: clear message, exit 1
out=$("$RUMOR_BIN" agent -dev -http-port abc 2>&1)
check_eq "bad -http-port exits 1" 1 $?
check_contains "bad -http-port names the flag" "-http-port" "$out"
out=$("$RUMOR_BIN" agent -dev -nosuchflag 2>&1)
check_eq "unknown flag exits 1" 1 $?
check_contains "unknown flag is named" "nosuchflag" "$out"
out=$("$RUMOR_BIN" agent -h 2>&1)
check_eq "agent -h exits 0" 0 $?
check_contains "agent -h lists -retry-join" "-retry-join" "$out"

# retry-join: the agent starts before its seed exists and joins when it appears
start_agent 2 r2 -retry-join "127.0.0.1:$(gport 1)" -retry-interval 1s
wait_http 2 || fail "r2 answers HTTP"
sleep 1.5
cfg="$TMP/r1.json"
echo '{"node_meta": {"rack": "r1"}}' >"$cfg"
start_agent 1 r1 -config-file "$cfg"
if wait_until 20 has_alive 2 2; then pass "retry-join joined once the seed came up"; else fail "retry-join joined"; fi

# a second agent on a gossip port in use: clear error
out=$("$RUMOR_BIN" agent -node clash -bind 127.0.0.1 -serf-lan-port "$(gport 1)" -http-port -1 -dns-port -1 -server-port "$(sport 9)" -data-dir "$TMP/clash" 2>&1)
check_eq "gossip port in use exits 1" 1 $?
check_contains "gossip port in use is explained" "Address already in use" "$out"

# SIGHUP reloads node meta: the other agent sees the new tag
tag_of() {
	curl -s "http://$(haddr "$1")/v1/agent/members" | /usr/bin/python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["Name"] == sys.argv[1]:
        print(m["Tags"].get(sys.argv[2], ""))' "$2" "$3"
}
has_tag() { [ "$(tag_of "$1" "$2" "$3")" = "$4" ]; }
if wait_until 10 has_tag 2 r1 rack r1; then pass "r2 sees r1's node meta from its config file"; else fail "r2 sees rack=r1 (got '$(tag_of 2 r1 rack)')"; fi
echo '{"node_meta": {"rack": "r9"}}' >"$cfg"
kill -HUP "${AGENT_PID[1]}"
if wait_until 10 has_tag 2 r1 rack r9; then pass "after SIGHUP r2 sees rack=r9"; else fail "after SIGHUP r2 sees rack=r9 (got '$(tag_of 2 r1 rack)')"; fi

# SIGTERM leaves gracefully
start_agent 3 r3 -join "127.0.0.1:$(gport 1)"
wait_until 10 is_status 1 r3 alive || fail "r3 joined"
kill -TERM "${AGENT_PID[3]}"
if wait_until 10 is_status 1 r3 left; then pass "SIGTERM: r1 sees r3 left"; else fail "SIGTERM: r1 sees r3 left (sees '$(member_status 1 r3)')"; fi
wait "${AGENT_PID[3]}"
check_eq "SIGTERM exit code" 0 $?

# SIGINT leaves gracefully too (skip_leave_on_interrupt defaults to false)
kill -INT "${AGENT_PID[2]}"
if wait_until 10 is_status 1 r2 left; then pass "SIGINT: r1 sees r2 left"; else fail "SIGINT: r1 sees r2 left (sees '$(member_status 1 r2)')"; fi

# -leave-on-terminate=false: SIGTERM stops without leaving, seen as failed
start_agent 4 r4 -join "127.0.0.1:$(gport 1)" -leave-on-terminate=false
wait_until 10 is_status 1 r4 alive || fail "r4 joined"
kill -TERM "${AGENT_PID[4]}"
if wait_until 60 is_status 1 r4 failed; then pass "no leave on terminate: r4 seen failed"; else fail "r4 seen failed (sees '$(member_status 1 r4)')"; fi

# -dev removes its temporary data directory at exit
export TMPDIR="$TMP/devtmp"
mkdir -p "$TMPDIR"
"$RUMOR_BIN" agent -dev -serf-lan-port "$(gport 5)" -http-port "$(hport 5)" -dns-port -1 -server-port "$(sport 5)" >"$TMP/dev.log" 2>&1 &
devpid=$!
PIDS+=("$devpid")
wait_http 5 || fail "dev agent answers"
n=$(ls "$TMPDIR" | grep -c rumor-dev)
check_eq "dev agent made one temporary directory" 1 "$n"
kill -TERM $devpid
wait $devpid
n=$(ls "$TMPDIR" | grep -c rumor-dev)
check_eq "dev agent removed its directory at exit" 0 "$n"
unset TMPDIR

finish
