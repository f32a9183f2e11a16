#!/usr/bin/env bash
# HTTP ACL tokens with real agents on 127.0.0.1: reads need the read (or
# write) token, writes and join/leave need the write token, tokens come from
# the X-Consul-Token header, a Bearer header or ?token=, the CLI sends -token
# and RUMOR_HTTP_TOKEN, and a bad token setting is refused without echoing
# it. (A non-loopback listener without a token: tests/faults, scenario
# acl_remote, which needs an address other than loopback.)
source "$(dirname "$0")/lib.sh"

code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# agents with the KV store listen on a server port too (default 8300): give
# each its own, when this build has the flag
kvport() { "$RUMOR_BIN" agent -h 2>&1 | grep -q -- '-server-port' && echo "-server-port $((PORT_BASE + 80 + $1))"; }

start_agent 1 n1 $(kvport 1) -acl-token "w-secret" -acl-read-token "r-secret"
wait_until 10 curl -sf -H "X-Consul-Token: w-secret" "http://$(haddr 1)/v1/agent/self" ||
	fail "n1 answers HTTP with the write token"
U="http://$(haddr 1)"

check_eq "read without a token is 403" 403 "$(code "$U/v1/agent/members")"
check_eq "403 body says Permission denied" "Permission denied" "$(curl -s "$U/v1/agent/members")"
check_eq "read with a wrong token is 403" 403 "$(code -H 'X-Consul-Token: nope' "$U/v1/agent/members")"
check_eq "read with the read token (header) is 200" 200 "$(code -H 'X-Consul-Token: r-secret' "$U/v1/agent/members")"
check_eq "read with the read token (?token=) is 200" 200 "$(code "$U/v1/agent/members?token=r-secret")"
check_eq "read with the write token (Bearer) is 200" 200 "$(code -H 'Authorization: Bearer w-secret' "$U/v1/agent/self")"
check_eq "token prefix is not enough" 403 "$(code -H 'X-Consul-Token: r-secre' "$U/v1/agent/members")"
check_eq "unknown path is still 404 (routing first)" 404 "$(code "$U/v1/agent/nosuch")"

# a second agent to join
start_agent 2 n2 $(kvport 2) -acl-token "w-secret"
wait_until 10 curl -sf "http://$(haddr 2)/v1/agent/self" || fail "n2 answers HTTP (no read token: reads open)"
J="$U/v1/agent/join/127.0.0.1:$(gport 2)"
check_eq "join without a token is 403" 403 "$(code -X PUT "$J")"
check_eq "join with the read token is 403" 403 "$(code -X PUT -H 'X-Consul-Token: r-secret' "$J")"
check_eq "join by GET with the read token is 403" 403 "$(code "$J?token=r-secret")"
check_eq "force-leave without a token is 403" 403 "$(code -X PUT "$U/v1/agent/force-leave/n2")"
check_eq "leave with the read token is 403" 403 "$(code -X PUT "$U/v1/agent/leave?token=r-secret")"
check_eq "join with the write token is 200" 200 "$(code -X PUT -H 'X-Consul-Token: w-secret' "$J")"

# the CLI
out=$("$RUMOR_BIN" members -http-addr "$(haddr 1)" 2>&1)
check_contains "CLI without a token reports the refusal" "Permission denied" "$out"
out=$("$RUMOR_BIN" members -http-addr "$(haddr 1)" -token r-secret 2>&1)
check_contains "CLI -token r-secret lists members" "n2" "$out"
out=$(RUMOR_HTTP_TOKEN=w-secret "$RUMOR_BIN" join -http-addr "$(haddr 1)" "127.0.0.1:$(gport 2)" 2>&1)
check_contains "CLI with RUMOR_HTTP_TOKEN joins" "Successfully joined" "$out"
out=$(RUMOR_HTTP_TOKEN=r-secret "$RUMOR_BIN" leave -http-addr "$(haddr 1)" 2>&1)
check_contains "CLI leave with the read token is refused" "Permission denied" "$out"
kill -0 "${AGENT_PID[1]}" 2>/dev/null && pass "n1 still running after the refused leave" ||
	fail "n1 still running after the refused leave"

# tokens from a config file; a bad token is refused and not echoed
cat >"$TMP/acl.json" <<JSON
{"acl_token": "file-w", "acl_read_token": "file-r"}
JSON
start_agent 3 n3 $(kvport 3) -config-file "$TMP/acl.json"
wait_until 10 curl -sf "http://$(haddr 3)/v1/agent/self?token=file-r" ||
	fail "n3 answers with the read token from its config file"
check_eq "config-file read token works" 200 "$(code "http://$(haddr 3)/v1/agent/self?token=file-r")"
check_eq "config-file tokens: read without token is 403" 403 "$(code "http://$(haddr 3)/v1/agent/self")"

out=$("$RUMOR_BIN" agent -dev -http-port "$(hport 9)" -serf-lan-port "$(gport 9)" -dns-port -1 $(kvport 9) \
	-acl-token "has space-topsecret" 2>&1)
rc=$?
check_eq "a token with a space is refused at start" 1 "$rc"
check_contains "the error names the flag" "-acl-token" "$out"
case "$out" in
*topsecret*) fail "the error does not echo the token: $out" ;;
*) pass "the error does not echo the token" ;;
esac

finish
