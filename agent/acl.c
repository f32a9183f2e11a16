/*
 * agent/acl.c — see acl.h.
 *
 * Deliberately small: two static tokens, no policies. What it must never do
 * is leak a token through timing (every comparison runs in constant time and
 * both tokens are always compared) or let an unknown request count as a read.
 */
#include "agent/acl.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "agent/http/http.h"

static bool path_has_prefix(const char *path, const char *prefix)
{
	return strncmp(path, prefix, strlen(prefix)) == 0;
}

/*
 * Anything we do not recognise as a read is a write: an unknown method or a new
 * endpoint fails closed. GET is not enough, because some Consul endpoints change
 * state on a GET (join, leave, keyring, check updates), so they are listed here.
 */
enum acl_class acl_classify(const char *method, const char *path)
{
	if (method == NULL || path == NULL)
		return ACL_WRITE;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return ACL_WRITE;
	/* state-changing endpoints that also answer GET */
	if (path_has_prefix(path, "/v1/agent/join/") || strcmp(path, "/v1/agent/leave") == 0 ||
	    path_has_prefix(path, "/v1/agent/force-leave/") ||
	    path_has_prefix(path, "/v1/operator/keyring") ||
	    path_has_prefix(path, "/v1/agent/service/deregister/") ||
	    path_has_prefix(path, "/v1/agent/check/"))
		return ACL_WRITE;
	return ACL_READ;
}

/*
 * Consul's three places for a token, tried here as the X-Consul-Token header,
 * then "Authorization: Bearer", then ?token=. An empty value counts as absent,
 * so it can never match an unset token.
 */
const char *acl_request_token(const struct http_request *req)
{
	const char *t = http_header_get(req, "X-Consul-Token");
	if (t != NULL && t[0] != '\0')
		return t;
	t = http_header_get(req, "Authorization");
	if (t != NULL && strncasecmp(t, "Bearer ", 7) == 0) {
		t += 7;
		while (*t == ' ')
			t++;
		if (*t != '\0')
			return t;
	}
	t = http_query_get(req, "token");
	if (t != NULL && t[0] != '\0')
		return t;
	return NULL;
}

bool acl_token_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
		return false;
	/* Copy both into fixed, zero-padded buffers and compare all of them, so
	 * the time taken depends on neither the contents nor the lengths. */
	unsigned char x[ACL_TOKEN_MAX + 1], y[ACL_TOKEN_MAX + 1];
	memset(x, 0, sizeof(x));
	memset(y, 0, sizeof(y));
	size_t la = strnlen(a, ACL_TOKEN_MAX + 1), lb = strnlen(b, ACL_TOKEN_MAX + 1);
	if (la > ACL_TOKEN_MAX || lb > ACL_TOKEN_MAX) {
		/* still spend the comparison, then refuse */
		volatile int sink = sodium_memcmp(x, y, sizeof(x));
		(void)sink;
		return false;
	}
	memcpy(x, a, la);
	memcpy(y, b, lb);
	int diff = sodium_memcmp(x, y, sizeof(x));
	unsigned char lx[sizeof(size_t)], ly[sizeof(size_t)];
	memcpy(lx, &la, sizeof(la));
	memcpy(ly, &lb, sizeof(lb));
	int dlen = sodium_memcmp(lx, ly, sizeof(lx));
	sodium_memzero(x, sizeof(x));
	sodium_memzero(y, sizeof(y));
	return (diff | dlen) == 0;
}

/*
 * Takes the peer address as the HTTP layer prints it ("a.b.c.d:port", "[v6]:port")
 * and answers no to anything it cannot parse. All of 127/8, ::1 and v4-mapped
 * 127/8 count, as the kernel routes them all locally.
 */
bool acl_addr_is_loopback(const char *addr)
{
	if (addr == NULL || addr[0] == '\0')
		return false;
	char buf[64];
	size_t n = strlen(addr);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, addr, n + 1);
	char *host = buf;
	if (host[0] == '[') {
		char *rb = strchr(host, ']');
		if (rb == NULL)
			return false;
		*rb = '\0';
		host++;
	} else {
		/* "a.b.c.d:port": one colon means a port; more means bare IPv6 */
		char *c = strchr(host, ':');
		if (c != NULL && strchr(c + 1, ':') == NULL)
			*c = '\0';
	}
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			return a6.s6_addr[12] == 127;
	}
	return false;
}

/*
 * Without a write token, writes are allowed only from this host (a loopback
 * listener or a loopback peer), never from the network; a read token never
 * grants writes, and a write token always grants reads.
 */
bool acl_allow(enum acl_class cls, const char *write_token, const char *read_token,
               bool listen_loopback, const char *remote, const char *presented)
{
	bool have_write = write_token != NULL && write_token[0] != '\0';
	bool have_read = read_token != NULL && read_token[0] != '\0';
	/* evaluate both comparisons always: no early exit on the secret */
	bool is_write = acl_token_equal(presented, write_token);
	bool is_read = acl_token_equal(presented, read_token);
	if (cls == ACL_WRITE) {
		if (have_write)
			return is_write;
		return listen_loopback || acl_addr_is_loopback(remote);
	}
	if (have_read)
		return is_read || is_write;
	return true;
}
