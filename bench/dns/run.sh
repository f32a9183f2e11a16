#!/bin/bash
# bench/dns/run.sh — dnsperf against rumor's DNS responder and against NSD
# serving the same names, on this machine, in one run.
#
# Both servers get one process (NSD: server-count 1) on 127.0.0.1.  rumor
# runs `agent -dev` with 3 instances of "web" (own addresses, so SRV targets
# are <hex>.addr.dc1.consul.) plus its node; NSD loads a zone with the same
# records.  The query mix (queries.txt): web A, web SRV, n1.node A, a
# missing name (NXDOMAIN), in equal parts.  Each round runs dnsperf for
# DURATION seconds against each server (order alternating); the report is
# the median over ROUNDS of queries/s, and median/p99 latency from dnsperf
# -v's per-query lines, plus each server's RSS at the end.  NSD's response
# rate limiting (on by default in Debian's build) is switched off.
#
# Usage: bench/dns/run.sh [ROUNDS=5] [DURATION=5]   (needs dnsperf, nsd)
set -u
ROUNDS=${1:-5}
DURATION=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
RUMOR_BIN=${RUMOR_BIN:-$HERE/../../build/rumor}
TMP=$(mktemp -d /tmp/rumor-dnsbench.XXXXXX)
RPORT=${RPORT:-28600}
NPORT=${NPORT:-28653}
HPORT=${HPORT:-28500}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

"$RUMOR_BIN" agent -dev -node n1 -serf-lan-port 28301 -server-port 28300 -http-port "$HPORT" \
	-dns-port "$RPORT" -log-level warn >"$TMP/rumor.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HPORT/v1/agent/self" >/dev/null && break; sleep 0.1; done
for k in 1 2 3; do
	curl -sf -X PUT "http://127.0.0.1:$HPORT/v1/agent/service/register" \
		-d '{"Name":"web","ID":"web'$k'","Port":80,"Address":"10.0.0.'$k'"}' || exit 1
done

cat >"$TMP/consul.zone" <<ZONE
\$TTL 0
consul.              IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0
consul.              IN NS  n1.node.dc1.consul.
n1.node.dc1.consul.  IN A   127.0.0.1
n1.node.consul.      IN A   127.0.0.1
web.service.consul.  IN A   10.0.0.1
web.service.consul.  IN A   10.0.0.2
web.service.consul.  IN A   10.0.0.3
web.service.consul.  IN SRV 1 1 80 0a000001.addr.dc1.consul.
web.service.consul.  IN SRV 1 1 80 0a000002.addr.dc1.consul.
web.service.consul.  IN SRV 1 1 80 0a000003.addr.dc1.consul.
0a000001.addr.dc1.consul. IN A 10.0.0.1
0a000002.addr.dc1.consul. IN A 10.0.0.2
0a000003.addr.dc1.consul. IN A 10.0.0.3
ZONE
cat >"$TMP/nsd.conf" <<CONF
server:
	ip-address: 127.0.0.1@$NPORT
	server-count: 1
	username: ""
	chroot: ""
	database: ""
	zonelistfile: "$TMP/zone.list"
	xfrdfile: "$TMP/xfrd.state"
	pidfile: "$TMP/nsd.pid"
	zonesdir: "$TMP"
	verbosity: 0
	hide-version: yes
	rrl-ratelimit: 0
	rrl-whitelist-ratelimit: 0
remote-control:
	control-enable: no
zone:
	name: consul.
	zonefile: consul.zone
CONF
/usr/sbin/nsd -d -c "$TMP/nsd.conf" >"$TMP/nsd.log" 2>&1 &
NPID=$!
PIDS+=("$NPID")
for _ in $(seq 50); do dig @127.0.0.1 -p "$NPORT" +short +time=1 +tries=1 web.service.consul A | grep -q 10.0.0 && break; sleep 0.1; done

printf 'web.service.consul A\nweb.service.consul SRV\nn1.node.consul A\nnope.service.consul A\n' >"$TMP/queries.txt"
for s in $RPORT $NPORT; do
	a=$(dig @127.0.0.1 -p "$s" +short web.service.consul A | sort | tr '\n' ' ')
	echo "port $s: web A -> $a" >&2
done

# one run: prints "qps p50_us p99_us"
run() {
	dnsperf -s 127.0.0.1 -p "$1" -d "$TMP/queries.txt" -l "$DURATION" -c 4 -q 64 -v 2>/dev/null |
		/usr/bin/python3 -c '
import sys
lat = []; qps = 0.0
for line in sys.stdin:
    p = line.split()
    if line.startswith(">") and len(p) >= 5:
        try: lat.append(float(p[-1]))
        except ValueError: pass
    elif "Queries per second:" in line:
        qps = float(p[-1])
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else 0
print("%.0f %.0f %.0f" % (qps, pct(0.5), pct(0.99)))'
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
: >"$TMP/r.txt"
: >"$TMP/n.txt"
for i in $(seq "$ROUNDS"); do
	if [ $((i % 2)) = 1 ]; then
		run "$RPORT" >>"$TMP/r.txt"; run "$NPORT" >>"$TMP/n.txt"
	else
		run "$NPORT" >>"$TMP/n.txt"; run "$RPORT" >>"$TMP/r.txt"
	fi
	echo "round $i: rumor $(tail -1 "$TMP/r.txt") | nsd $(tail -1 "$TMP/n.txt")" >&2
done
/usr/bin/python3 - "$TMP/r.txt" "$TMP/n.txt" "$(rss "$RPID")" "$(rss "$NPID")" <<'PY'
import statistics, sys
def load(p):
    rows = [list(map(float, l.split())) for l in open(p) if l.strip()]
    return [statistics.median(c) for c in zip(*rows)]
r, n = load(sys.argv[1]), load(sys.argv[2])
print("| server | queries/s (median) | p50 latency µs | p99 latency µs | RSS KiB |")
print("|---|---|---|---|---|")
print("| rumor | %.0f | %.0f | %.0f | %s |" % (r[0], r[1], r[2], sys.argv[3]))
print("| nsd   | %.0f | %.0f | %.0f | %s |" % (n[0], n[1], n[2], sys.argv[4]))
print()
print("rumor/nsd: qps %.2fx, p99 %.2fx, RSS %.2fx" % (r[0] / n[0], r[2] / n[2] if n[2] else 0,
      float(sys.argv[3]) / float(sys.argv[4])))
PY
