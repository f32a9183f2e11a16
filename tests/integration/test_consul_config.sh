#!/usr/bin/env bash
# A Consul-style agent configuration starts rumor (issue 14, item 5): a JSON
# file full of Consul keys rumor does not act on gives a running agent that
# answers /v1/agent/self; each ignored setting is logged once at info, to
# the configured log (-log-file too, not only stderr before the log is set
# up) (-server and -bootstrap-expect now start a server: test_servers.py); Consul's ACL block (deny + initial_management) becomes
# rumor's tokens. A key in neither Consul nor rumor still stops the agent.
source "$(dirname "$0")/lib.sh"

cat >"$TMP/consul.json" <<'JSON'
{
  "datacenter": "dc1",
  "primary_datacenter": "dc1",
  "ui_config": { "enabled": true },
  "telemetry": { "prometheus_retention_time": "24h", "disable_hostname": true },
  "performance": { "raft_multiplier": 1 },
  "ports": { "grpc": 8502, "https": -1, "serf_wan": 8302 },
  "addresses": { "https": "0.0.0.0" },
  "disable_update_check": true,
  "leave_on_terminate": true,
  "acl": {
    "enabled": true,
    "default_policy": "deny",
    "down_policy": "extend-cache",
    "enable_token_persistence": true,
    "tokens": { "initial_management": "s3cr3t-mgmt", "agent": "agent-tok", "default": "anon-tok" }
  }
}
JSON

start_agent 1 n1 -config-file "$TMP/consul.json" -ui -grpc-port 8502 \
	-log-file "$TMP/n1-file.log"
H="http://$(haddr 1)"
wait_until 10 curl -sf -H "X-Consul-Token: s3cr3t-mgmt" "$H/v1/agent/self" ||
	fail "agent with a Consul config answers /v1/agent/self"
SELF=$(curl -s -H "X-Consul-Token: s3cr3t-mgmt" "$H/v1/agent/self")
check_contains "/v1/agent/self answers with the node's config" '"NodeName":"n1"' "$SELF"
check_contains "the agent reports it is not a server" '"Server":false' "$SELF"
kill -0 "${AGENT_PID[1]}" 2>/dev/null && pass "agent still running" || fail "agent still running"
check_eq "default_policy deny: a read without the management token is refused" 403 \
	"$(curl -s -o /dev/null -w '%{http_code}' "$H/v1/agent/self")"
check_eq "the management token writes (acl_token)" true \
	"$(curl -s -X PUT -H "X-Consul-Token: s3cr3t-mgmt" --data v "$H/v1/kv/k")"

# a reload (SIGHUP) re-reads the file but does not log the notices again
kill -HUP "${AGENT_PID[1]}"
wait_until 5 grep -q 'Reloaded configuration' "$TMP/n1.log" || fail "the agent reloads"
sleep 0.5
LOG=$(cat "$TMP/n1.log")
for k in primary_datacenter telemetry performance ports.grpc ports.https \
	ports.serf_wan addresses.https disable_update_check acl.tokens.agent acl.tokens.default \
	acl.down_policy -grpc-port; do
	check_eq "$k logged once at info" 1 "$(grep -c "\[INFO\].*config: $k: accepted for Consul compatibility" <<<"$LOG")"
done
check_eq "the token is never logged" 0 "$(grep -c 's3cr3t-mgmt' <<<"$LOG")"
# the notices are written once the log sinks exist: they are in -log-file
FILELOG=$(cat "$TMP"/n1-file*.log 2>/dev/null)
check_eq "telemetry logged once at info in the log file" 1 \
	"$(grep -c '\[INFO\].*config: telemetry: accepted for Consul compatibility' <<<"$FILELOG")"
check_eq "the token is never in the log file" 0 "$(grep -c 's3cr3t-mgmt' <<<"$FILELOG")"

# a typo is still caught: the agent exits with the key named
echo '{"primary_datacentre": "dc1"}' >"$TMP/typo.json"
OUT=$("$RUMOR_BIN" agent -dev -http-port -1 -dns-port -1 -server-port -1 \
	-serf-lan-port "$(gport 2)" -config-file "$TMP/typo.json" 2>&1)
RC=$?
check_eq "an unknown key stops the agent" 1 "$RC"
check_contains "the unknown key is named" 'unknown key "primary_datacentre"' "$OUT"

finish
