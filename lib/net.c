/*
 * lib/net.c — see net.h. The socket set-up that gossip, KV sync, DNS,
 * HTTP and the health checks each wrote out before; one copy, so a fix
 * (CLOEXEC, V6ONLY, the listen backlog) lands everywhere at once.
 */
#define _GNU_SOURCE
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/*
 * Numeric addresses only, never a name lookup: everything here runs on the event
 * loop, and a blocking resolver call would stall gossip, DNS and HTTP together.
 */
int net_addr_parse(const char *addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (addr == NULL)
		return -EINVAL;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*sl = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*sl = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

void net_addr_ip(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const void *src = ss->ss_family == AF_INET6
	                          ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
	                          : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
	if (cap == 0)
		return;
	if (inet_ntop(ss->ss_family == AF_INET6 ? AF_INET6 : AF_INET, src, buf, (socklen_t)cap) ==
	    NULL)
		snprintf(buf, cap, "?");
}

uint16_t net_addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/*
 * "ip:port", with the IPv6 address in brackets as Go's net.JoinHostPort writes
 * it, so log lines and X-Forwarded style strings read the same as Consul's.
 */
void net_addr_format(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	net_addr_ip(ss, ip, sizeof(ip));
	snprintf(buf, cap, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, net_addr_port(ss));
}

/*
 * Tells a caller that asked for port 0 which port the kernel chose (tests, the
 * simulator); the listeners report it so nothing has to guess.
 */
int net_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	return net_addr_port(&ss);
}

/* socket + SO_REUSEADDR (+ V6ONLY) + bind, the part TCP and UDP share. */
static int bound_socket(int type, const char *what, const char *addr, uint16_t port, char *err,
                        size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (net_addr_parse(addr, port, &ss, &sl) < 0) {
		snprintf(err, errlen, "%s %s:%u: invalid IP address", what, addr ? addr : "(null)",
		         port);
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s %s:%u: socket: %s", what, addr, port, strerror(e));
		return -e;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s %s:%u: %s", what, addr, port, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

/*
 * backlog 0 means the system's SOMAXCONN; callers that expect bursts (HTTP)
 * pass their own. The socket is non-blocking and close-on-exec from creation,
 * so no child (a health check, an event handler) inherits it.
 */
int net_tcp_listen(const char *addr, uint16_t port, int backlog, char *err, size_t errlen)
{
	int fd = bound_socket(SOCK_STREAM, "listen tcp", addr, port, err, errlen);
	if (fd < 0)
		return fd;
	if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
		int e = errno;
		snprintf(err, errlen, "listen tcp %s:%u: %s", addr, port, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int net_udp_bind(const char *addr, uint16_t port, char *err, size_t errlen)
{
	return bound_socket(SOCK_DGRAM, "listen udp", addr, port, err, errlen);
}

/*
 * Returns with the connect in progress; the caller waits for writability under
 * its own deadline, so no connect can block the loop. An IPv4 source address,
 * when given, is bound first: several agents on one host then reach peers from
 * their own addresses, and partition tests keyed on the source stay correct.
 * The bind takes the address only (IP_BIND_ADDRESS_NO_PORT): the port is
 * chosen by connect, per destination. A bind to port 0 picks a port free for
 * every destination and searches the host's bound sockets to do it; with
 * 1,000 agents on 127.0.0.1 the KV sync's binds were 15% of all CPU.
 */
int net_tcp_connect(const struct sockaddr_storage *ss, socklen_t sl, const char *src)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in from;
	memset(&from, 0, sizeof(from));
	if (ss->ss_family == AF_INET && src != NULL &&
	    inet_pton(AF_INET, src, &from.sin_addr) == 1 &&
	    from.sin_addr.s_addr != htonl(INADDR_ANY)) {
		from.sin_family = AF_INET;
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
		if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
	}
	if (connect(fd, (const struct sockaddr *)ss, sl) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int if_mtu(int fd, const char *name)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
		return -errno;
	return ifr.ifr_mtu;
}

/* Whether b is a's address (mask NULL) or in a's subnet (mask: a's netmask). */
static bool same_net(const struct sockaddr *a, const struct sockaddr *mask,
                     const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family || (mask != NULL && mask->sa_family != a->sa_family))
		return false;
	const uint8_t *x, *y, *m = NULL;
	size_t n;
	if (a->sa_family == AF_INET) {
		x = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
		y = (const uint8_t *)&((const struct sockaddr_in *)b)->sin_addr;
		if (mask != NULL)
			m = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
		n = 4;
	} else {
		x = (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
		y = (const uint8_t *)&((const struct sockaddr_in6 *)b)->sin6_addr;
		if (mask != NULL)
			m = (const uint8_t *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
		n = 16;
	}
	for (size_t i = 0; i < n; i++)
		if ((x[i] ^ y[i]) & (m != NULL ? m[i] : 0xff))
			return false;
	return true;
}

int net_addr_mtu(const char *addr)
{
	struct sockaddr_storage want;
	socklen_t wl;
	bool wildcard = addr == NULL || strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
	if (!wildcard && net_addr_parse(addr, 0, &want, &wl) < 0)
		return -EINVAL;
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) < 0)
		return -errno;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = -errno;
		freeifaddrs(ifs);
		return e;
	}
	/* an address of the interface wins; else one in its subnet (127.0.0.5
	 * is lo's, which lists 127.0.0.1/8 only) */
	int best = -ENOENT, in_subnet = -ENOENT;
	for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP))
			continue;
		if (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)
			continue;
		if (wildcard) {
			if (i->ifa_flags & IFF_LOOPBACK)
				continue;
			int mtu = if_mtu(fd, i->ifa_name);
			if (mtu > 0 && (best < 0 || mtu < best))
				best = mtu;
		} else if (same_net(i->ifa_addr, NULL, &want)) {
			best = if_mtu(fd, i->ifa_name);
			break;
		} else if (in_subnet < 0 && i->ifa_netmask != NULL &&
		           same_net(i->ifa_addr, i->ifa_netmask, &want)) {
			in_subnet = if_mtu(fd, i->ifa_name);
		}
	}
	if (best <= 0 && !wildcard)
		best = in_subnet;
	close(fd);
	freeifaddrs(ifs);
	return best;
}
