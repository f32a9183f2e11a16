#!/bin/bash
# Evidence for issue 17: Patroni (Debian's patroni, unchanged) elects a
# PostgreSQL primary through rumor's Consul-compatible sessions and locks,
# and fails over when the primary's node dies.
#
# On 127.0.0.1, in a temp dir: 3 rumor servers (-bootstrap-expect=3) and
# one rumor client agent per Patroni node; NODES Patroni nodes (default 2),
# each with its own PostgreSQL 15 data dir and ports, each talking to its
# own client agent (consul: host: 127.0.0.1:<agent http port>). Patroni
# creates a session with a TTL (ttl/2), takes /v1/kv/service/<scope>/leader
# with ?acquire, keeps its member key with ?acquire, uses CAS, renews the
# session and watches the leader key with blocking reads (?index&wait).
#
# It prints:
#   election: Patroni started -> leader key held, -> primary takes writes
#   switchover: patronictl switchover (the failover key written with CAS, the
#             leader key deleted with ?cas) -> the candidate takes writes
#   failover: kill -9 of the primary's node (its Patroni, its PostgreSQL and
#             its rumor client agent) -> the session ends and the leader key
#             is deleted (Behavior delete) -> the replica holds the key ->
#             the replica, promoted, takes writes.
#
# Usage: tests/evidence/patroni.sh [path/to/rumor]
# Env: NODES=2|3, TTL=<Patroni ttl; Patroni asks for a session TTL of ttl/2,
# and below 20 it is refused and Patroni raises it to rumor's 10 s minimum
# (Config.SessionTTLMin)>, LOOP_WAIT, CHECKS=serfHealth (Patroni's
# consul.checks: the session also ends when gossip declares the node failed;
# Patroni's default is none, the TTL alone), MAX_SECONDS (240: every wait
# ends by then, so a hung run fails and cleans up), KILL=agent (kill only the
# primary's rumor agent: Patroni must demote it), KEEP=1 (keep the temp dir).
# Exit 0 on a failover with writes on the new primary, 1 on failure, 77
# when patroni, python3-consul or PostgreSQL 15 are missing.
set -u

RUMOR=${1:-${RUMOR_BIN:-$(dirname "$0")/../../build/rumor}}
NODES=${NODES:-2}
TTL=${TTL:-20}
LOOP_WAIT=${LOOP_WAIT:-2}
CHECKS=${CHECKS:-}
KILL=${KILL:-node}
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

skip() { echo "SKIP: $*"; exit 77; }
command -v patroni >/dev/null || skip "patroni not installed (apt-get install patroni)"
[ -x "$PGBIN/postgres" ] || skip "PostgreSQL 15 not installed"
$PY -c 'import consul' 2>/dev/null || skip "python3-consul not installed"
[ -x "$RUMOR" ] || { echo "no rumor binary at $RUMOR"; exit 1; }
RUMOR=$(readlink -f "$RUMOR")
# PostgreSQL refuses to run as root: run Patroni as the postgres user then.
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || skip "running as root and no postgres user"
	# setpriv execs (runuser forks): $! is Patroni's own PID
	AS="env HOME=/tmp setpriv --reuid=postgres --regid=postgres --init-groups --"
else
	AS=""
fi

DEADLINE=$(($(date +%s) + ${MAX_SECONDS:-240}))
T=$(mktemp -d /tmp/rumor-patroni.XXXXXX)
chmod 755 "$T"
BASE=$((10000 + (($$ * 7) % 220) * 100)) # below the ephemeral range
PIDS=()

now() { date +%s.%N; }
since() { echo "$1 $2" | awk '{printf "%.2f", $2 - $1}'; }
log() { echo "[$(date +%T.%N | cut -c1-12)] $*"; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	# PostgreSQL postmasters Patroni started (they outlive a killed Patroni)
	for p in "$T"/pg*/postmaster.pid; do
		[ -f "$p" ] && kill -9 "$(head -1 "$p")" 2>/dev/null
	done
	sleep 1
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*"
	for f in "$T"/*.log; do echo "--- tail $f"; tail -15 "$f"; done
	exit 1
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; no wait
# goes past the script's own deadline (MAX_SECONDS after its start)
wait_for() {
	local end=$(($(date +%s) + $1))
	[ "$end" -gt "$DEADLINE" ] && end=$DEADLINE
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.1
	done
}

gport() { echo $((BASE + $1)); }
hport() { echo $((BASE + 50 + $1)); }
sport() { echo $((BASE + 80 + $1)); }
pgport() { echo $((BASE + 30 + $1)); }
rport() { echo $((BASE + 40 + $1)); }

# agent I NAME EXTRA...: a rumor agent on 127.0.0.1 with ports from I
agent() {
	local i=$1 name=$2
	shift 2
	mkdir -p "$T/data-$name"
	"$RUMOR" agent -node "$name" -bind 127.0.0.1 -advertise 127.0.0.1 \
		-serf-lan-port "$(gport "$i")" -client 127.0.0.1 -http-port "$(hport "$i")" \
		-dns-port -1 -server-port "$(sport "$i")" -data-dir "$T/data-$name" \
		-retry-join "127.0.0.1:$(gport 1)" -retry-interval 1s "$@" \
		>"$T/$name.log" 2>&1 &
	PIDS+=($!)
	eval "AGENT_PID_$i=$!"
}

http() { curl -sf --max-time 5 "http://127.0.0.1:$(hport "$1")$2"; }
has_leader() { [ -n "$(http "$1" /v1/status/leader | tr -d '"')" ]; }

log "rumor: 3 servers + $NODES client agents in $T"
for i in 1 2 3; do agent "$i" "s$i" -server -bootstrap-expect=3; done
for n in $(seq 1 "$NODES"); do agent $((10 + n)) "pg$n"; done
for i in 1 2 3; do wait_for 30 has_leader "$i" || fail "no Raft leader"; done
for n in $(seq 1 "$NODES"); do wait_for 30 has_leader $((10 + n)) || fail "pg$n agent sees no leader"; done

# patroni_conf N: the YAML for Patroni node N (its agent is agent 10+N)
patroni_conf() {
	local n=$1
	cat <<EOF
scope: rumor-demo
name: node$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(rport "$n")
  connect_address: 127.0.0.1:$(rport "$n")
consul:
  host: 127.0.0.1:$(hport $((10 + n)))
  checks: [$CHECKS]
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
  initdb:
  - encoding: UTF8
  - auth: trust
  pg_hba:
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
  - local all all trust
postgresql:
  listen: 127.0.0.1:$(pgport "$n")
  connect_address: 127.0.0.1:$(pgport "$n")
  data_dir: $T/pg$n
  bin_dir: $PGBIN
  pgpass: $T/pgpass$n
  authentication:
    replication: {username: replicator, password: rep}
    superuser: {username: postgres, password: pg}
  parameters:
    unix_socket_directories: $T
    shared_buffers: 16MB
    max_connections: 20
    wal_level: replica
    hot_standby: "on"
EOF
}

for n in $(seq 1 "$NODES"); do
	patroni_conf "$n" >"$T/node$n.yml"
done
chown -R postgres "$T" 2>/dev/null

leader_key() { http 1 "/v1/kv/service/rumor-demo/leader?raw"; }
writable() { # writable N: node N's PostgreSQL accepts a write
	$AS "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$(pgport "$1")" -U postgres -d postgres \
		-c "CREATE TABLE IF NOT EXISTS evidence (at timestamptz DEFAULT now(), who text);
		    INSERT INTO evidence (who) VALUES ('$2')" 2>/dev/null
}
has_key() { [ -n "$(leader_key)" ]; }
key_gone() { [ -z "$(leader_key)" ] || [ "$(leader_key)" != "$1" ]; }
key_is() { [ "$(leader_key)" = "$1" ]; }

t0=$(now)
for n in $(seq 1 "$NODES"); do
	(cd "$T" && exec $AS patroni "$T/node$n.yml" >"$T/patroni$n.log" 2>&1) &
	PIDS+=($!)
	eval "PATRONI_PID_$n=$!"
done
wait_for 60 has_key || fail "no Patroni node took the leader key"
t_key=$(now)
LEADER=$(leader_key)
L=${LEADER#node}
log "leader key service/rumor-demo/leader = $LEADER ($(since "$t0" "$t_key") s after start)"
wait_for 60 writable "$L" "$LEADER" || fail "the primary $LEADER takes no writes"
t_w=$(now)
log "primary $LEADER takes writes ($(since "$t0" "$t_w") s after start)"
curl -s --max-time 3 -o /dev/null -w "REST GET /primary on $LEADER: %{http_code}\n" \
	"http://127.0.0.1:$(rport "$L")/primary"
log "session: $(http 1 "/v1/kv/service/rumor-demo/leader" | $PY -c \
	'import json,sys; e=json.load(sys.stdin)[0]; print("Session", e["Session"], "LockIndex", e["LockIndex"])')"

# every replica streams from the primary before the failover
replicas() {
	local n c=0
	for n in $(seq 1 "$NODES"); do
		[ "$n" = "$L" ] && continue
		$AS "$PGBIN/psql" -X -tA -h 127.0.0.1 -p "$(pgport "$n")" -U postgres -d postgres \
			-c "SELECT pg_is_in_recovery() AND count(*) > 0 FROM evidence" 2>/dev/null |
			grep -q t || return 1
		c=$((c + 1))
	done
	[ "$c" = $((NODES - 1)) ]
}
wait_for 90 replicas || fail "the replicas do not stream from $LEADER"
log "replicas stream from $LEADER"

# a planned switchover: Patroni writes the failover key (CAS), the leader
# demotes and deletes its leader key (?cas=<its ModifyIndex>), the blocking
# reads of the others wake and the candidate acquires
C=$((L % NODES + 1))
log "patronictl switchover $LEADER -> node$C"
t_sw=$(now)
$AS patronictl -c "$T/node$L.yml" switchover --leader "$LEADER" --candidate "node$C" --force \
	>"$T/switchover.log" 2>&1 || fail "patronictl switchover: $(cat "$T/switchover.log")"
wait_for 60 key_is "node$C" || fail "node$C did not take the leader key"
wait_for 60 writable "$C" "node$C" || fail "node$C takes no writes after the switchover"
t_sw_w=$(now)
log "switchover: node$C takes writes $(since "$t_sw" "$t_sw_w") s after patronictl switchover"
LEADER=node$C
L=$C
wait_for 90 replicas || fail "the replicas do not stream from $LEADER after the switchover"
log "replicas stream from $LEADER"
$AS patronictl -c "$T/node1.yml" list 2>/dev/null

# the primary's node dies: its Patroni, its PostgreSQL and its rumor agent
PGPID=$(head -1 "$T/pg$L/postmaster.pid")
eval "PP=\$PATRONI_PID_$L; AP=\$AGENT_PID_$((10 + L))"
t_kill=$(now)
if [ "$KILL" = agent ]; then
	log "kill -9 of $LEADER's rumor agent $AP (its Patroni and PostgreSQL live on)"
	kill -9 "$AP"
else
	log "kill -9 of $LEADER: patroni $PP, postgres $PGPID, rumor agent $AP"
	kill -9 "$PP" "$PGPID" "$AP" 2>/dev/null
fi

wait_for $((3 * TTL)) key_gone "$LEADER" || fail "the leader key outlived the dead leader"
t_gone=$(now)
log "leader key released (session ended): $(since "$t_kill" "$t_gone") s after the kill"
wait_for 60 has_key || fail "no new leader"
t_new=$(now)
NEW=$(leader_key)
N=${NEW#node}
[ "$NEW" != "$LEADER" ] || fail "the dead node holds the key again"
log "new leader key = $NEW: $(since "$t_kill" "$t_new") s after the kill"
wait_for 60 writable "$N" "$NEW" || fail "the new primary $NEW takes no writes"
t_nw=$(now)
log "new primary $NEW takes writes: $(since "$t_kill" "$t_nw") s after the kill"
if [ "$KILL" = agent ]; then
	# cut off from its agent, the old primary's Patroni demotes it
	not_primary() { ! writable "$L" "$LEADER"; }
	wait_for 60 not_primary || fail "$LEADER still takes writes without its agent"
	log "old primary $LEADER no longer takes writes: $(since "$t_kill" "$(now)") s after the kill"
fi
rows=$($AS "$PGBIN/psql" -X -tA -h 127.0.0.1 -p "$(pgport "$N")" -U postgres -d postgres \
	-c "SELECT string_agg(who, ',' ORDER BY at) FROM evidence")
log "rows on $NEW: $rows"
$AS patronictl -c "$T/node$N.yml" list 2>/dev/null

echo
echo "RESULT election: leader key $(since "$t0" "$t_key") s, primary writable $(since "$t0" "$t_w") s after Patroni start (includes initdb)"
echo "RESULT switchover: new primary writable $(since "$t_sw" "$t_sw_w") s after patronictl switchover"
echo "RESULT failover (ttl $TTL, session TTL $((TTL / 2)) s): key released $(since "$t_kill" "$t_gone") s," \
	"new leader $(since "$t_kill" "$t_new") s, new primary writable $(since "$t_kill" "$t_nw") s after kill -9"
exit 0
