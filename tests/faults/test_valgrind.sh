#!/usr/bin/env bash
# An agent under valgrind --leak-check=full through a whole membership
# scenario: start, two others join it, HTTP requests (good, bad, refused),
# a join that fails, a node killed and detected, force-leave, then SIGTERM
# (graceful leave and exit). Passes when valgrind reports no error and no
# definitely lost block.
#
# valgrind cannot run an ASan binary. The binary under test is, in order:
# $RUMOR_VALGRIND_BIN; $RUMOR_BIN when it is not built with ASan; else a
# plain (-O1 -g, no sanitizer) build of the `rumor` target that this test
# makes in $RUMOR_VALGRIND_BUILD (default /tmp/rumor-valgrind-build) from
# $RUMOR_SRC — about a minute the first time, incremental after. Skips
# (77) when valgrind is not installed or no plain binary can be had.
source "$(dirname "$0")/../integration/lib.sh"

command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 77; }
is_asan() { ldd "$1" 2>/dev/null | grep -q 'libasan\|libclang_rt.asan' || nm "$1" 2>/dev/null | grep -q ' __asan_init'; }

VBIN=${RUMOR_VALGRIND_BIN:-}
if [ -z "$VBIN" ] && ! is_asan "$RUMOR_BIN"; then
	VBIN=$RUMOR_BIN
fi
if [ -z "$VBIN" ]; then
	src=${RUMOR_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
	vb=${RUMOR_VALGRIND_BUILD:-/tmp/rumor-valgrind-build}
	echo "# $RUMOR_BIN is an ASan build: building a plain one in $vb"
	if cmake -S "$src" -B "$vb" -DRUMOR_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Vg \
		-DCMAKE_C_FLAGS_VG="-O1 -g" >"$TMP/vg-build.log" 2>&1 &&
		cmake --build "$vb" -j"$(nproc)" --target rumor >>"$TMP/vg-build.log" 2>&1; then
		VBIN=$vb/rumor
	else
		tail -20 "$TMP/vg-build.log"
		echo "SKIP: could not build a non-ASan rumor for valgrind"
		exit 77
	fi
fi
is_asan "$VBIN" && { echo "SKIP: $VBIN is built with ASan; valgrind cannot run it"; exit 77; }
echo "# valgrind runs $VBIN"

# agents with the KV store also listen on a server port (default 8300)
kvport() { "$VBIN" agent -h 2>&1 | grep -q -- '-server-port' && echo "-server-port $((PORT_BASE + 80 + $1))"; }

mkdir -p "$TMP/data-n1"
valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--error-exitcode=99 --track-fds=no --log-file="$TMP/valgrind.txt" \
	"$VBIN" agent -node n1 -bind 127.0.0.1 -advertise 127.0.0.1 -serf-lan-port "$(gport 1)" \
	-client 127.0.0.1 -http-port "$(hport 1)" -dns-port -1 $(kvport 1) -data-dir "$TMP/data-n1" \
	-log-level debug >>"$TMP/n1.log" 2>&1 &
VPID=$!
PIDS+=("$VPID")
AGENT_PID[1]=$VPID
wait_until 60 curl -sf "http://$(haddr 1)/v1/agent/self" && pass "n1 under valgrind answers HTTP" ||
	fail "n1 under valgrind answers HTTP"

RUMOR_BIN=$VBIN
start_agent 2 n2 $(kvport 2) -join "127.0.0.1:$(gport 1)"
start_agent 3 n3 $(kvport 3) -join "127.0.0.1:$(gport 1)"
wait_until 60 has_alive 1 3 && pass "n1 (valgrind) sees 3 alive" || fail "n1 (valgrind) sees 3 alive (has $(count_alive 1))"

U="http://$(haddr 1)"
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
check_eq "members" 200 "$(code "$U/v1/agent/members?pretty")"
check_eq "self" 200 "$(code "$U/v1/agent/self")"
check_eq "unknown path" 404 "$(code "$U/v1/nosuch")"
check_eq "wrong method" 405 "$(code -X DELETE "$U/v1/agent/members")"
check_eq "join to a closed port" 500 "$(code -X PUT "$U/v1/agent/join/127.0.0.1:$(gport 40)")"
check_eq "oversized header" 431 "$(code -H "X-Big: $(head -c 70000 /dev/zero | tr '\0' a)" "$U/v1/agent/self")"
printf 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n' >"$TMP/bad.txt"
curl -s --max-time 5 --data-binary @"$TMP/bad.txt" "telnet://127.0.0.1:$(hport 1)" >/dev/null 2>&1
# a client that goes away in the middle of a request
(exec 3<>"/dev/tcp/127.0.0.1/$(hport 1)" && printf 'GET /v1/agent/self HTTP/1.1\r\nHo' >&3 && exec 3>&-) 2>/dev/null

kill -9 "${AGENT_PID[3]}"
wait_until 60 is_status 1 n3 failed && pass "n1 (valgrind) sees killed n3 failed" ||
	fail "n1 (valgrind) sees killed n3 failed (sees '$(member_status 1 n3)')"
check_eq "force-leave n3" 200 "$(code -X PUT "$U/v1/agent/force-leave/n3")"

kill -TERM "$VPID"
if wait_until 60 bash -c "! kill -0 $VPID 2>/dev/null"; then
	wait "$VPID"
	rc=$?
	check_eq "valgrind exit status (99 = errors or definite leaks)" 0 "$rc"
else
	fail "n1 under valgrind exits within 60 s of SIGTERM"
fi
summary=$(grep -E "definitely lost|ERROR SUMMARY|All heap blocks" "$TMP/valgrind.txt" | sed 's/^==[0-9]*== //')
echo "$summary" | sed 's/^/# /'
check_contains "valgrind: no errors" "ERROR SUMMARY: 0 errors" "$summary"
if grep -q "definitely lost: [1-9]" "$TMP/valgrind.txt"; then
	fail "valgrind: no definitely lost bytes"
	sed -n '/definitely lost in/,/^==[0-9]*== $/p' "$TMP/valgrind.txt" | head -60
else
	pass "valgrind: no definitely lost bytes"
fi
[ "$FAILED" -gt 0 ] && head -100 "$TMP/valgrind.txt"
finish
