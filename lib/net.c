/*
 * lib/net.c — see net.h. The socket set-up that gossip, KV sync, DNS,
 * HTTP and the health checks each wrote out before; one copy, so a fix
 * (CLOEXEC, V6ONLY, the listen backlog) lands everywhere at once.
 */
#define _GNU_SOURCE
#include "lib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
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
