#!/bin/bash
# bench/servers/run.sh — rumor's Raft server tier beside an etcd cluster, on
# this machine, in one run.
#
# Starts, on 127.0.0.1, each with its data directory on disk (writes are
# fsync'd before they are acknowledged by both):
#   - 3 rumor servers (`-server -bootstrap-expect=3`, as
#     tests/integration/test_servers.py starts them) and 1 rumor client agent;
#   - a 3-member etcd cluster (Debian's etcd-server, default heartbeat 100 ms
#     and election timeout 1 s; clients speak its v3 HTTP/JSON gateway).
# Then, with the same wrk settings (-t THREADS, or -t1 for one connection;
# DURATION seconds; the connections given per row; bench/servers/bench.lua
# for the requests), the two systems take turns (which one goes first
# alternates per row):
#   PUT on the leader, -c1 / -c16 / -c64: each request writes a new key with a
#     64-byte value (rumor PUT /v1/kv/<key>; etcd POST /v3/kv/put to its
#     leader, found by /v3/maintenance/status);
#   linearizable read on the leader, -c16 / -c64 (rumor GET ?consistent;
#     etcd POST /v3/kv/range, linearizable by default);
#   forwarded write, -c1 / -c16: rumor's client agent (the write goes to the
#     leader over the server RPC) against an etcd follower (which forwards the
#     proposal to its leader) — the two ways a write reaches a leader
#     through someone else;
#   failover: kill -9 of the leader, then a write to a surviving server every
#     10 ms (each its own request with a 10 s timeout, not waiting for the
#     earlier ones); reported is the time from the kill to the first
#     acknowledged write, FAILOVERS times each (median, and every sample).
# After the wrk rows it counts, per row, the keys each system holds against
# the writes wrk saw acknowledged (a 2xx answer).
# Prints a table with rumor/etcd ratios, and the load average before and after.
#
# Usage: RUMOR_BIN=build-bench/rumor bench/servers/run.sh
#   environment: DURATION (5), THREADS (2), FAILOVERS (5: kills of the leader
#   per system, taking turns, each killed member restarted on its data before
#   the next), LOAD_MAX (2.0) and LOAD_WAIT (60):
#   wait up to LOAD_WAIT s for the 1-minute load to fall to LOAD_MAX, then run
#   anyway; BASE: first of 50 ports (default below Linux's ephemeral range);
#   RUMOR_REV: printed beside the binary's version (e.g. the commit built).
#   Needs wrk, etcd (etcd-server), curl, python3.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RUMOR_BIN=${RUMOR_BIN:-$HERE/../../build-bench/rumor}
DURATION=${DURATION:-5}
THREADS=${THREADS:-2}
LOAD_MAX=${LOAD_MAX:-2.0}
LOAD_WAIT=${LOAD_WAIT:-60}
FAILOVERS=${FAILOVERS:-5}
BASE=${BASE:-$((13000 + $$ % 80 * 50))}
LUA=$HERE/bench.lua

for tool in wrk etcd curl python3; do
	command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y etcd-server wrk curl python3)" >&2; exit 2; }
done
[ -x "$RUMOR_BIN" ] || { echo "RUMOR_BIN=$RUMOR_BIN is not an executable" >&2; exit 2; }

TMP=$(mktemp -d /tmp/rumor-serverbench.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for _ in $(seq 50); do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "error: $*" >&2; echo "--- last log lines" >&2; tail -n 5 "$TMP"/*.log >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# --- wait (bounded) for a quieter machine
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$LOAD_WAIT"); do
	awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l > m) }' || break
	sleep 1
done
LOAD_RUN=$(cut -d' ' -f1-3 /proc/loadavg)

# --- ports: rumor agent i (1-3 servers, 4 client): serf BASE+i, HTTP BASE+10+i,
# server RPC BASE+20+i; etcd member i (1-3): client BASE+30+i, peer BASE+40+i
rhttp() { echo $((BASE + 10 + $1)); }
rsrv() { echo $((BASE + 20 + $1)); }
eclient() { echo $((BASE + 30 + $1)); }
epeer() { echo $((BASE + 40 + $1)); }
declare -A PID

rumor_start() { # i name extra...
	local i=$1 name=$2
	shift 2
	mkdir -p "$TMP/r$i"
	"$RUMOR_BIN" agent -node "$name" -bind 127.0.0.1 -advertise 127.0.0.1 \
		-serf-lan-port $((BASE + i)) -client 127.0.0.1 -http-port "$(rhttp "$i")" \
		-dns-port -1 -server-port "$(rsrv "$i")" -data-dir "$TMP/r$i" -log-level warn \
		-retry-join "127.0.0.1:$((BASE + 1))" -retry-interval 1s "$@" >>"$TMP/r$i.log" 2>&1 &
	PID[r$i]=$!
	PIDS+=("$!")
	disown "$!"
}
for i in 1 2 3; do rumor_start "$i" "s$i" -server -bootstrap-expect=3; done
rumor_start 4 c4

CLUSTER=""
for i in 1 2 3; do CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$(epeer "$i")"; done
etcd_start() { # i (a restart reuses its data directory, as a restarted member does)
	local i=$1
	etcd --name "e$i" --data-dir "$TMP/e$i" \
		--listen-client-urls "http://127.0.0.1:$(eclient "$i")" \
		--advertise-client-urls "http://127.0.0.1:$(eclient "$i")" \
		--listen-peer-urls "http://127.0.0.1:$(epeer "$i")" \
		--initial-advertise-peer-urls "http://127.0.0.1:$(epeer "$i")" \
		--initial-cluster "$CLUSTER" --initial-cluster-state new \
		--initial-cluster-token "rumor-bench-$$" --logger zap --log-level warn \
		>>"$TMP/e$i.log" 2>&1 &
	PID[e$i]=$!
	PIDS+=("$!")
	disown "$!"
}
for i in 1 2 3; do etcd_start "$i"; done

# --- who leads
rumor_leader_addr() { curl -s -m 2 "http://127.0.0.1:$(rhttp "$1")/v1/status/leader" | tr -d '"'; }
rumor_leader() { # index of the server every live server names as leader, or nothing
	local a b c i
	a=$(rumor_leader_addr 1) b=$(rumor_leader_addr 2) c=$(rumor_leader_addr 3)
	[ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ] || return 1
	for i in 1 2 3; do [ "$a" = "127.0.0.1:$(rsrv "$i")" ] && { echo "$i"; return 0; }; done
	return 1
}
etcd_leader() { # index of the member that says it leads
	local i
	for i in 1 2 3; do
		curl -s -m 2 -X POST -d '{}' "http://127.0.0.1:$(eclient "$i")/v3/maintenance/status" |
			python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["header"]["member_id"] != d["leader"])' \
			2>/dev/null && { echo "$i"; return 0; }
	done
	return 1
}
RL="" EL=""
for _ in $(seq 300); do RL=$(rumor_leader) && break; sleep 0.1; done
[ -n "$RL" ] || die "rumor servers elected no leader in 30 s"
for _ in $(seq 300); do EL=$(etcd_leader) && break; sleep 0.1; done
[ -n "$EL" ] || die "etcd elected no leader in 30 s"
RF=$((RL % 3 + 1)) # a rumor follower, an etcd follower
EF=$((EL % 3 + 1))
RLEAD="http://127.0.0.1:$(rhttp "$RL")"
RCLIENT="http://127.0.0.1:$(rhttp 4)"
ELEAD="http://127.0.0.1:$(eclient "$EL")"
EFOLL="http://127.0.0.1:$(eclient "$EF")"

# both answer a write through every path before the first measurement
ok=""
for _ in $(seq 100); do
	[ "$(curl -s -m 6 -X PUT --data-binary v "$RCLIENT/v1/kv/bench/read")" = true ] &&
		[ "$(curl -s -m 6 -X PUT --data-binary v "$RLEAD/v1/kv/bench/read")" = true ] &&
		[ "$(curl -s -m 6 -X PUT --data-binary v "http://127.0.0.1:$(rhttp "$RF")/v1/kv/bench/read")" = true ] &&
		{ ok=1; break; }
	sleep 0.1
done
[ -n "$ok" ] || die "rumor: a write through the client, the leader or a follower is not acknowledged"
ok=""
for _ in $(seq 100); do
	curl -sf -m 6 -X POST -d '{"key":"YmVuY2gvcmVhZA==","value":"dg=="}' "$EFOLL/v3/kv/put" >/dev/null &&
		curl -sf -m 6 -X POST -d '{"key":"YmVuY2gvcmVhZA==","value":"dg=="}' "$ELEAD/v3/kv/put" >/dev/null &&
		{ ok=1; break; }
	sleep 0.1
done
[ -n "$ok" ] || die "etcd: a write through the leader or a follower is not acknowledged"
echo "rumor leader s$RL, etcd leader e$EL; load $LOAD_RUN" >&2

# --- wrk rows: "row system requests duration_us p50_us p99_us non2xx sockerr"
: >"$TMP/results"
wrk_one() { # row system mode url conns
	local line
	local t=$THREADS
	[ "$5" -lt "$t" ] && t=$5
	line=$(BENCH_MODE=$3 BENCH_TAG=$1 timeout $((DURATION + 30)) wrk -t"$t" -c"$5" -d"${DURATION}s" \
		--timeout 10s -s "$LUA" "$4" 2>&1 | grep '^RESULT')
	[ -n "$line" ] || line="RESULT requests=0 duration_us=1 p50_us=0 p99_us=0 non2xx=0 sockerr=-1"
	line=$(echo "$line" | sed 's/[a-z0-9_]*=//g; s/^RESULT //')
	echo "$1 $2 $line" >>"$TMP/results"
	echo "$1 $2: $line" >&2
}
N=0
row() { # row conns rumor_mode rumor_url etcd_mode etcd_url
	N=$((N + 1))
	if [ $((N % 2)) = 1 ]; then
		wrk_one "$1" rumor "$3" "$4" "$2"; wrk_one "$1" etcd "$5" "$6" "$2"
	else
		wrk_one "$1" etcd "$5" "$6" "$2"; wrk_one "$1" rumor "$3" "$4" "$2"
	fi
}
row put1 1 rumor_put "$RLEAD" etcd_put "$ELEAD"
row put16 16 rumor_put "$RLEAD" etcd_put "$ELEAD"
row put64 64 rumor_put "$RLEAD" etcd_put "$ELEAD"
row read16 16 rumor_read "$RLEAD" etcd_range "$ELEAD"
row read64 64 rumor_read "$RLEAD" etcd_range "$ELEAD"
row fwd1 1 rumor_put "$RCLIENT" etcd_put "$EFOLL"
row fwd16 16 rumor_put "$RCLIENT" etcd_put "$EFOLL"

# --- failover: kill -9 of the leader, then a write every 10 ms to a survivor
failover() { # system pid survivor_url
	python3 - "$@" <<'PY'
import os, signal, sys, threading, time, urllib.error, urllib.request
kind, pid, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
first = []
fails = {}
slots = threading.BoundedSemaphore(1000)

def write(n):
    if kind == "rumor":
        req = urllib.request.Request("%s/v1/kv/failover/%d" % (url, n), data=b"x", method="PUT")
    else:
        import base64
        k = base64.b64encode(b"failover/%d" % n).decode()
        req = urllib.request.Request("%s/v3/kv/put" % url, method="POST",
                                     data=('{"key":"%s","value":"eA=="}' % k).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            ok = r.status == 200 and (body.strip() == b"true" if kind == "rumor" else b"header" in body)
            what = "200 %r" % body[:40]
    except urllib.error.HTTPError as e:
        ok, what = False, "%d %r" % (e.code, e.read()[:40])
    except Exception as e:
        ok, what = False, type(e).__name__
    with lock:
        if ok:
            if not first:
                first.append(time.monotonic())
        else:
            fails[what] = fails.get(what, 0) + 1
    slots.release()

t0 = time.monotonic()
os.kill(pid, signal.SIGKILL)
n = sent = skipped = 0
while not first and time.monotonic() - t0 < 30:
    if slots.acquire(blocking=False):
        threading.Thread(target=write, args=(n,), daemon=True).start()
        sent += 1
    else:
        skipped += 1
    n += 1
    time.sleep(0.01)
ms = (first[0] - t0) * 1000 if first else -1
print("%.0f %d %s" % (ms, sent, ";".join("%s x%d" % kv for kv in sorted(fails.items())).replace(" ", "_") or "-"))
PY
}
# --- every acknowledged write is there: keys per row on each leader
: >"$TMP/keys"
for r in put1 put16 put64 fwd1 fwd16; do
	rk=$(curl -s -m 30 "$RLEAD/v1/kv/bench/$r/?keys" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)
	ek=$(python3 -c 'import base64,sys; p=b"bench/%s/" % sys.argv[1].encode(); e=p[:-1]+bytes([p[-1]+1]); print("{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}" % (base64.b64encode(p).decode(), base64.b64encode(e).decode()))' "$r" |
		curl -s -m 30 -X POST -d @- "$ELEAD/v3/kv/range" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))' 2>/dev/null)
	echo "$r ${rk:--1} ${ek:--1}" >>"$TMP/keys"
done

# FAILOVERS samples each, taking turns: kill the leader, time the first
# acknowledged write on a survivor, restart the killed one on its data and
# wait until all three agree on a leader (and take a write) again.
rumor_ready() {
	local l
	for _ in $(seq 300); do
		l=$(rumor_leader) &&
			[ "$(curl -s -m 6 -X PUT --data-binary v "http://127.0.0.1:$(rhttp "$l")/v1/kv/bench/fo")" = true ] &&
			{ echo "$l"; return 0; }
		sleep 0.1
	done
	return 1
}
etcd_ready() {
	local l i ok
	for _ in $(seq 300); do
		ok=1
		for i in 1 2 3; do
			curl -sf -m 2 -X POST -d '{}' "http://127.0.0.1:$(eclient "$i")/v3/maintenance/status" >/dev/null || ok=""
		done
		[ -n "$ok" ] && l=$(etcd_leader) &&
			curl -sf -m 6 -X POST -d '{"key":"YmVuY2gvZm8=","value":"dg=="}' "http://127.0.0.1:$(eclient "$l")/v3/kv/put" >/dev/null &&
			{ echo "$l"; return 0; }
		sleep 0.1
	done
	return 1
}
FO_R="" FO_E="" FO_RS="" FO_ES=""
for k in $(seq "$FAILOVERS"); do
	RL=$(rumor_ready) || die "rumor: no leader before failover $k"
	RF=$((RL % 3 + 1))
	f=$(failover rumor "${PID[r$RL]}" "http://127.0.0.1:$(rhttp "$RF")")
	echo "failover rumor $k (killed s$RL): $f" >&2
	[ -z "$FO_R" ] && FO_R=$f
	FO_RS+="${FO_RS:+,}${f%% *}"
	rumor_start "$RL" "s$RL" -server -bootstrap-expect=3
	EL=$(etcd_ready) || die "etcd: no leader before failover $k"
	EF=$((EL % 3 + 1))
	f=$(failover etcd "${PID[e$EL]}" "http://127.0.0.1:$(eclient "$EF")")
	echo "failover etcd $k (killed e$EL): $f" >&2
	[ -z "$FO_E" ] && FO_E=$f
	FO_ES+="${FO_ES:+,}${f%% *}"
	etcd_start "$EL"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table
META1="rumor servers vs etcd, 3 members each on 127.0.0.1, data on disk; wrk -t$THREADS -d${DURATION}s"
META2="machine: $(nproc) CPUs; load average before / during / after: $LOAD_START / $LOAD_RUN / $LOAD_END"
META3="rumor: $RUMOR_BIN ($("$RUMOR_BIN" version 2>/dev/null | head -1)${RUMOR_REV:+, $RUMOR_REV});"
META3+=" etcd $(etcd --version 2>/dev/null | awk 'NR == 1 { print $3 }'); $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }')"
python3 - "$TMP/results" "$FO_R" "$FO_E" "$META1" "$META2" "$META3" "$TMP/keys" "$FO_RS" "$FO_ES" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, system, req, dur, p50, p99, non2xx, sockerr = line.split()
    rows[(name, system)] = dict(rps=int(req) / (int(dur) / 1e6), p50=int(p50) / 1000,
                                p99=int(p99) / 1000, err=int(non2xx) + max(0, int(sockerr)),
                                failed=int(sockerr) < 0, acked=int(req) - int(non2xx))
fo = {s: a.split(" ", 2) for s, a in (("rumor", sys.argv[2]), ("etcd", sys.argv[3]))}

def ratio(a, b):
    return "%.2fx" % (a / b) if b else "-"

for m in sys.argv[4:7]:
    print(m)
print()
print("| measurement | rumor | etcd | rumor/etcd |")
print("|---|---|---|---|")
labels = [("put1", "PUT on the leader, -c1"), ("put16", "PUT on the leader, -c16"),
          ("put64", "PUT on the leader, -c64"),
          ("read16", "linearizable read on the leader, -c16"),
          ("read64", "linearizable read on the leader, -c64"),
          ("fwd1", "forwarded write (rumor client agent / etcd follower), -c1"),
          ("fwd16", "forwarded write (rumor client agent / etcd follower), -c16")]
notes = []
for key, label in labels:
    r, e = rows.get((key, "rumor")), rows.get((key, "etcd"))
    if not r or not e:
        continue
    print("| %s: req/s | %.0f | %.0f | %s |" % (label, r["rps"], e["rps"], ratio(r["rps"], e["rps"])))
    print("| %s: p50 ms | %.2f | %.2f | %s |" % (label, r["p50"], e["p50"], ratio(r["p50"], e["p50"])))
    print("| %s: p99 ms | %.2f | %.2f | %s |" % (label, r["p99"], e["p99"], ratio(r["p99"], e["p99"])))
    for s, x in (("rumor", r), ("etcd", e)):
        if x["failed"]:
            notes.append("%s %s: wrk gave no result" % (s, key))
        elif x["err"]:
            notes.append("%s %s: %d errors (non-2xx or socket)" % (s, key, x["err"]))
samples = {s: [float(x) for x in a.split(",") if x] for s, a in (("rumor", sys.argv[8]), ("etcd", sys.argv[9]))}

def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

rf, ef = (median([x if x >= 0 else 1e9 for x in samples[s]]) for s in ("rumor", "etcd"))
show = lambda x: "%.0f" % x if x < 1e9 else "none in 30 s"
print("| failover: kill -9 of the leader to the first acknowledged write, median of %d, ms | %s | %s | %s |" % (
    len(samples["rumor"]), show(rf), show(ef), ratio(rf, ef) if rf < 1e9 and ef < 1e9 else "-"))
print()
print("ratios: rumor/etcd; above 1 is better for req/s, below 1 is better for latency and failover")
for s in ("rumor", "etcd"):
    print("failover %s, every sample (ms): %s" % (s, " ".join("%.0f" % x for x in samples[s])))
    print("failover %s, first sample: %s writes sent, failed before the first acknowledged one: %s" % (
        s, fo[s][1], fo[s][2].replace("_", " ")))
print("keys held after the run / writes acknowledged (2xx) by wrk, per row:")
for line in open(sys.argv[7]):
    name, rk, ek = line.split()
    out = []
    for s, k in (("rumor", int(rk)), ("etcd", int(ek))):
        x = rows.get((name, s))
        acked = x["acked"] if x else 0
        out.append("%s %s / %d%s" % (s, k if k >= 0 else "?", acked,
                                     "" if k >= acked else " (MISSING WRITES)"))
    print("  %-6s %s" % (name, ", ".join(out)))
for n in notes:
    print("note:", n)
PY
