#!/bin/bash
# tests/integration/test_dns.sh — services found with dig across 3 agents.
#
# A service registered on agent 1 answers A and SRV on agent 3 (through the
# replicated catalog); tags and RFC 2782 names; a large answer over TCP and
# TC over UDP; NXDOMAIN with the SOA; empty non-terminals (service.consul)
# NOERROR, and unbound with strict QNAME minimisation resolving through
# them; a failing TCP check removes the service within interval + gossip
# time; kill -9 of agent 1 removes its services.  Every wait is bounded.
# Ports below the kernel's ephemeral range (32768-60999 here), so that no
# client socket of this or another test can hold one of ours.
PORT_BASE=${PORT_BASE:-$((20000 + ($$ % 120) * 100))}
. "$(dirname "$0")/lib.sh"

dport() { echo $((PORT_BASE + 70 + $1)); }
sport() { echo $((PORT_BASE + 80 + $1)); }
q() { # q I NAME TYPE [dig options...]
	local i=$1 name=$2 type=$3
	shift 3
	dig @127.0.0.1 -p "$(dport "$i")" +time=1 +tries=1 "$name" "$type" "$@" 2>/dev/null
}
short() { q "$@" +short | sort | tr '\n' ' ' | sed 's/ $//'; }
status_of() { q "$@" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
# answers_are I NAME TYPE EXPECTED / status_is I NAME TYPE STATUS (for wait_until)
answers_are() { [ "$(short "$1" "$2" "$3")" = "$4" ]; }
status_is() { [ "$(status_of "$1" "$2" "$3")" = "$4" ]; }

# a fake upstream resolver for agent 2's -recursor: echoes the query as an
# answer with RA set
UPORT=$((PORT_BASE + 91))
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(4096)
    r = bytearray(d); r[2] |= 0x80; r[3] = 0x80
    s.sendto(bytes(r), a)
' "$UPORT" &
PIDS+=("$!")

for i in 1 2 3; do
	extra=()
	[ "$i" != 1 ] && extra=(-join "127.0.0.1:$(gport 1)")
	[ "$i" = 2 ] && extra+=(-recursor "127.0.0.1:$UPORT")
	start_agent "$i" "n$i" -dns-port "$(dport "$i")" -server-port "$(sport "$i")" "${extra[@]}"
	wait_http "$i" || fail "agent $i HTTP up"
done
wait_until 15 has_alive 3 3 && pass "3 agents see each other" || fail "3 agents alive"

# a TCP listener for the check: a Python server we can kill
LPORT=$((PORT_BASE + 90))
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
' "$LPORT" &
LPID=$!
PIDS+=("$LPID")

reg() { curl -sf -X PUT "http://$(haddr 1)/v1/agent/service/register" -d "$1"; }
reg '{"Name":"web","ID":"web1","Port":8080,"Tags":["v1","primary"],
      "Check":{"TCP":"127.0.0.1:'"$LPORT"'","Interval":"1s","Timeout":"500ms"}}' ||
	fail "register web"
reg '{"Name":"api","Port":9090}' || fail "register api"
for k in $(seq 1 40); do
	reg '{"Name":"big","ID":"big'"$k"'","Port":'"$((7000 + k))"',"Address":"10.9.0.'"$k"'"}' ||
		fail "register big$k"
done

wait_until 15 answers_are 3 web.service.consul A 127.0.0.1 &&
	pass "web A answered on agent 3" || fail "web A on agent 3: got '$(short 3 web.service.consul A)'"
check_eq "web SRV on agent 3" "1 1 8080 n1.node.dc1.consul." "$(short 3 web.service.consul SRV)"
check_contains "SRV additional has the target's A" "n1.node.dc1.consul. 0 IN A 127.0.0.1" \
	"$(q 3 web.service.consul SRV +noall +additional | tr -s ' \t' ' ')"
check_eq "tag lookup" "127.0.0.1" "$(short 3 primary.web.service.consul A)"
check_eq "tag lookup is case-insensitive" "127.0.0.1" "$(short 3 PRIMARY.Web.Service.Consul A)"
check_eq "unknown tag is NXDOMAIN" "NXDOMAIN" "$(status_of 3 v9.web.service.consul A)"
check_eq "RFC 2782 _web._tcp" "1 1 8080 n1.node.dc1.consul." "$(short 3 _web._tcp.service.consul SRV)"
check_eq "RFC 2782 _web._v1" "1 1 8080 n1.node.dc1.consul." "$(short 3 _web._v1.service.consul SRV)"
check_eq "node lookup" "127.0.0.1" "$(short 3 n1.node.consul A)"
check_eq "unknown name is NXDOMAIN" "NXDOMAIN" "$(status_of 3 nope.service.consul A)"
check_contains "NXDOMAIN carries the SOA" "SOA ns.consul. hostmaster.consul." \
	"$(q 3 nope.service.consul A +noall +authority | tr -s ' \t' ' ')"
# empty non-terminals (RFC 8020): names with names below them are NOERROR
# with no records and the SOA, so QNAME-minimising resolvers walk down
for name in service.consul node.consul addr.consul dc1.consul service.dc1.consul \
	node.dc1.consul _tcp.service.consul; do
	check_eq "$name is NOERROR (empty non-terminal)" "NOERROR 0" \
		"$(status_of 3 "$name" A) $(q 3 "$name" A +noall +answer | grep -vc '^;')"
done
check_contains "empty non-terminal carries the SOA" "SOA ns.consul. hostmaster.consul." \
	"$(q 3 service.consul A +noall +authority | tr -s ' \t' ' ')"
check_eq "another datacenter stays NXDOMAIN" "NXDOMAIN" "$(status_of 3 dc2.consul A)"
check_eq "an unknown label stays NXDOMAIN" "NXDOMAIN" "$(status_of 3 nope.consul A)"

# unbound with strict QNAME minimisation, pointed at agent 3 for consul.:
# it asks consul., service.consul., web.service.consul. in turn and gives up
# at the first NXDOMAIN. Skipped (not failed) where unbound is not installed.
if command -v unbound >/dev/null; then
	UBPORT=$((PORT_BASE + 92))
	mkdir -p "$TMP/unbound"
	cat >"$TMP/unbound/unbound.conf" <<-EOC
		server:
		  interface: 127.0.0.1@$UBPORT
		  do-ip6: no
		  do-daemonize: no
		  chroot: ""
		  username: ""
		  directory: "$TMP/unbound"
		  pidfile: ""
		  use-syslog: no
		  logfile: "$TMP/unbound.log"
		  verbosity: 1
		  module-config: "iterator"
		  do-not-query-localhost: no
		  domain-insecure: "consul"
		  qname-minimisation: yes
		  qname-minimisation-strict: yes
		  access-control: 127.0.0.0/8 allow
		stub-zone:
		  name: "consul"
		  stub-addr: 127.0.0.1@$(dport 3)
	EOC
	unbound -d -c "$TMP/unbound/unbound.conf" >>"$TMP/unbound.log" 2>&1 &
	UBPID=$!
	PIDS+=("$UBPID")
	ub() { dig @127.0.0.1 -p "$UBPORT" +time=2 +tries=1 "$@" 2>/dev/null; }
	ub_web() { [ "$(ub web.service.consul A +short)" = "127.0.0.1" ]; }
	if wait_until 10 ub_web; then
		pass "unbound (qname-minimisation-strict) resolves web.service.consul"
	else
		fail "unbound (qname-minimisation-strict): web.service.consul got '$(ub web.service.consul A | grep -E 'status|IN')'"
	fi
	check_eq "unbound resolves _web._tcp.service.consul SRV" "1 1 8080 n1.node.dc1.consul." \
		"$(ub _web._tcp.service.consul SRV +short)"
	check_eq "unbound resolves n2.node.dc1.consul" "127.0.0.1" "$(ub n2.node.dc1.consul A +short)"
	check_eq "unbound: unknown service is NXDOMAIN" "NXDOMAIN" \
		"$(ub nope.service.consul A | sed -n 's/.*status: \([A-Z]*\).*/\1/p')"
	kill "$UBPID" 2>/dev/null
else
	echo "skip - unbound is not installed (scripts/deps.sh test)"
fi
check_eq "outside the domain is REFUSED" "REFUSED" "$(status_of 3 example.com A)"
check_eq "outside the domain is forwarded with -recursor" "NOERROR" "$(status_of 2 example.com A)"
check_contains "forwarded answer has RA" " ra" "$(q 2 example.com A | grep flags:)"

# 40 instances: UDP without EDNS does not fit -> TC; TCP carries all
udp_flags=$(q 3 big.service.consul A +noedns +ignore | sed -n 's/.*flags: \([a-z ]*\);.*/\1/p')
check_contains "UDP answer too large sets TC" "tc" "$udp_flags"
# a client (or a spoofer) advertising EDNS 65535 still gets at most 1232
# bytes over UDP (DNS Flag Day 2020), with TC: no 87x amplification
big=$(q 3 big.service.consul SRV +bufsize=65535 +ignore)
big_size=$(echo "$big" | sed -n 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p')
check_eq "EDNS 65535 answer capped at 1232 bytes" "yes" \
	"$([ -n "$big_size" ] && [ "$big_size" -le 1232 ] && [ "$big_size" -gt 512 ] && echo yes || echo "no ($big_size)")"
check_contains "capped EDNS answer sets TC" "tc" "$(echo "$big" | grep 'flags:')"
check_eq "TCP answer holds all 40" "40" "$(q 3 big.service.consul A +tcp +short | wc -l | tr -d ' ')"
check_eq "SRV over TCP holds all 40" "40" "$(q 3 big.service.consul SRV +tcp +short | wc -l | tr -d ' ')"

# python3-style client checks over HTTP on agent 3
check_contains "catalog/services on agent 3 lists web" '"web"' \
	"$(curl -sf "http://$(haddr 3)/v1/catalog/services")"
check_contains "health/service on agent 3 shows the check passing" '"Status":"passing"' \
	"$(curl -sf "http://$(haddr 3)/v1/health/service/web?passing")"

# a failing TCP check removes the service: interval 1s + gossip
kill -9 "$LPID" 2>/dev/null
t0=$(now_ms)
if wait_until 15 status_is 3 web.service.consul A NXDOMAIN; then
	pass "failing TCP check removed web on agent 3 in $(($(now_ms) - t0)) ms"
else
	fail "web still answered on agent 3 after its check failed: $(short 3 web.service.consul A)"
fi
check_eq "api (no check) still answered" "127.0.0.1" "$(short 3 api.service.consul A)"

# kill -9 of agent 1 removes its services everywhere
kill -9 "${AGENT_PID[1]}"
t0=$(now_ms)
if wait_until 30 status_is 3 api.service.consul A NXDOMAIN; then
	pass "kill -9 of agent 1 removed its services on agent 3 in $(($(now_ms) - t0)) ms"
else
	fail "api still answered on agent 3 after agent 1 died"
fi
check_eq "dead node's name is NXDOMAIN" "NXDOMAIN" "$(status_of 2 n1.node.consul A)"
# metrics count the DNS traffic above, by rcode, and the local checks
prom=$(curl -sf "http://$(haddr 3)/v1/agent/metrics?format=prometheus")
metric() { echo "$prom" | awk -v m="$1" '$1 == m {print $2}' | head -1; }
nx=$(metric 'rumor_dns_queries_total{rcode="nxdomain"}')
ok=$(metric 'rumor_dns_queries_total{rcode="noerror"}')
if [ -n "$nx" ] && awk "BEGIN{exit !($nx >= 3)}"; then pass "metrics count NXDOMAIN answers ($nx)"; else fail "metrics count NXDOMAIN answers: got '$nx'"; fi
if [ -n "$ok" ] && awk "BEGIN{exit !($ok >= 10)}"; then pass "metrics count NOERROR answers ($ok)"; else fail "metrics count NOERROR answers: got '$ok'"; fi
finish
