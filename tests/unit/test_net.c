/*
 * tests/unit/test_net.c — lib/net.h and lib/xalloc.h: numeric addresses
 * parse and format both ways, a listener on port 0 gets a port a connect
 * reaches (from a chosen source address), errors name the address.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/net.h"
#include "lib/xalloc.h"
#include "tests/unit/check.h"

static void test_addresses_parse_and_format(void)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char buf[64];
	CHECK_INT(0, net_addr_parse("127.0.0.2", 8301, &ss, &sl));
	net_addr_format(&ss, buf, sizeof(buf));
	CHECK_STR("127.0.0.2:8301", buf);
	CHECK_INT(0, net_addr_parse("::1", 53, &ss, &sl));
	net_addr_format(&ss, buf, sizeof(buf));
	CHECK_STR("[::1]:53", buf);
	CHECK_INT(53, net_addr_port(&ss));
	CHECK_INT(-EINVAL, net_addr_parse("localhost", 1, &ss, &sl), "names are not resolved");
	CHECK_INT(-EINVAL, net_addr_parse("10.0.0.256", 1, &ss, &sl));
}

static void test_listen_connect_from_a_source(void)
{
	char err[128] = "";
	int l = net_tcp_listen("127.0.0.1", 0, 0, err, sizeof(err));
	REQUIRE(l >= 0, "listen: %s", err);
	int port = net_bound_port(l);
	CHECK(port > 0, "bound port %d", port);
	struct sockaddr_storage ss;
	socklen_t sl;
	net_addr_parse("127.0.0.1", (uint16_t)port, &ss, &sl);
	int c = net_tcp_connect(&ss, sl, "127.0.0.3");
	REQUIRE(c >= 0, "connect: %d", c);
	struct pollfd p = {l, POLLIN, 0};
	CHECK_INT(1, poll(&p, 1, 2000), "the listener sees the connection");
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	int a = accept(l, (struct sockaddr *)&peer, &pl);
	REQUIRE(a >= 0, "accept");
	char ip[64];
	net_addr_ip(&peer, ip, sizeof(ip));
	CHECK_STR("127.0.0.3", ip, "the connection leaves from the chosen source");
	/* the source bind leaves the port to connect (no search of every bound
	 * socket for a port free towards all destinations) */
	int noport = 0;
	socklen_t ol = sizeof(noport);
	CHECK(getsockopt(c, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &noport, &ol) == 0 && noport == 1,
	      "IP_BIND_ADDRESS_NO_PORT set: %d", noport);
	int busy = net_tcp_listen("127.0.0.1", (uint16_t)port, 0, err, sizeof(err));
	CHECK_INT(-EADDRINUSE, busy);
	CHECK_HAS(err, "listen tcp 127.0.0.1:");
	CHECK(net_udp_bind("not-an-ip", 1, err, sizeof(err)) == -EINVAL && strstr(err, "not-an-ip"),
	      "bad address named: %s", err);
	close(a);
	close(c);
	close(l);
}

static void test_xalloc_copies(void)
{
	char *s = xstrdup("rumor");
	CHECK_STR("rumor", s);
	free(s);
	CHECK(xstrdup(NULL) == NULL, "xstrdup(NULL)");
	s = xstrndup("gossip", 3);
	CHECK_STR("gos", s);
	free(s);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_addresses_parse_and_format);
	RUN(test_listen_connect_from_a_source);
	RUN(test_xalloc_copies);
	return check_exit_code();
}
