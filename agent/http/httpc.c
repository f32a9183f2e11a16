/*
 * httpc — blocking HTTP/1.1 client; see httpc.h for the contract.
 *
 * Flow: split "host:port" -> getaddrinfo -> for each address a non-blocking
 * connect waited on with poll() -> write the request (head built in one
 * buffer, body sent after it) -> recv() into a stack buffer fed to
 * http-parser until on_message_complete or EOF.  One absolute deadline on
 * CLOCK_MONOTONIC bounds every wait, so a silent peer costs at most
 * timeout_ms in total.  The response body grows geometrically up to
 * max_body; headers are kept as malloc'd name/value pairs.
 *
 * If the peer closes while we are still writing (a server that answers 413
 * before reading the body), we stop writing and still read whatever answer
 * it sent.
 */
#include "agent/http/httpc.h"

#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/net.h"
#include "lib/xalloc.h"
#include "lib/err.h"

#ifndef RUMOR_VERSION
#define RUMOR_VERSION "0.0.0"
#endif

#define HTTPC_MAX_HEADERS 256

struct httpc_call {
	const char *addr;
	struct httpc_response *resp;
	size_t max_body;
	size_t body_cap;
	int complete;
	int head_only;
	int too_big;
	int nomem;
	int last_was_value; /* header callback state */
};

/* strerror with a lower-case first letter, as Go prints syscall errors. */
static void errno_text(int e, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(e));
	if (len > 0 && buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)tolower((unsigned char)buf[0]);
}

/*
 * CLOCK_MONOTONIC, never the wall clock: the deadline must not jump when the
 * system time is set (NTP steps, a VM resumed) in the middle of a request.
 */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Never negative and clamped to what poll() takes, so every wait is bounded by
 * the one deadline and a deadline already passed waits zero, never forever.
 */
static int remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits until fd is ready for `events`; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int ms = remaining_ms(deadline);
		int n;

		if (ms == 0)
			return 0;
		n = poll(&p, 1, ms);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/*
 * The forms an -http-addr may take: "[v6]:port", "host:port", a bare host (port
 * 80), and a bare IPv6 literal, whose several colons make it all host rather
 * than being misread as host:port. The port must be 1-65535, digits only.
 */
int httpc_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *h, *p = NULL, *colon;
	size_t hl;

	if (addr == NULL || *addr == '\0' || hostlen == 0 || portlen == 0)
		return -1;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (close == NULL)
			return -1;
		h = addr + 1;
		hl = (size_t)(close - h);
		if (close[1] == ':')
			p = close + 2;
		else if (close[1] != '\0')
			return -1;
	} else {
		colon = strchr(addr, ':');
		h = addr;
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			hl = (size_t)(colon - addr);
			p = colon + 1;
		} else {
			/* no colon, or a bare IPv6 literal: all host */
			hl = strlen(addr);
		}
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (memchr(host, '[', hl) != NULL || memchr(host, ']', hl) != NULL)
		return -1;
	if (p == NULL) {
		p = "80";
	} else {
		unsigned long v = 0;
		const char *q;

		if (*p == '\0' || strlen(p) > 5)
			return -1;
		for (q = p; *q; q++) {
			if (*q < '0' || *q > '9')
				return -1;
			v = v * 10 + (unsigned long)(*q - '0');
		}
		if (v == 0 || v > 65535)
			return -1;
	}
	if (strlen(p) >= portlen)
		return -1;
	strcpy(port, p);
	return 0;
}

/*
 * RFC 3986 unreserved bytes pass, everything else is %XX; '/' is kept only when
 * asked (a KV key is a path), so a key cannot smuggle '?' or '#' into the URL.
 * Returns the full length even when out is too small, as snprintf does.
 */
size_t httpc_escape(char *out, size_t outlen, const char *in, unsigned flags)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	const unsigned char *s;

	for (s = (const unsigned char *)in; *s; s++) {
		unsigned char c = *s;
		int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~' ||
		           (c == '/' && (flags & HTTPC_ESCAPE_KEEP_SLASH)) ||
		           ((c == ':' || c == '@') && (flags & HTTPC_ESCAPE_SEGMENT));
		char enc[3];
		size_t k, m;

		if (keep) {
			enc[0] = (char)c;
			m = 1;
		} else {
			enc[0] = '%';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			m = 3;
		}
		for (k = 0; k < m; k++, n++)
			if (outlen > 0 && n < outlen - 1)
				out[n] = enc[k];
	}
	if (outlen > 0)
		out[n < outlen - 1 ? n : outlen - 1] = '\0';
	return n;
}

void httpc_response_free(struct httpc_response *resp)
{
	size_t i;

	if (resp == NULL)
		return;
	for (i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	free(resp->body);
	free(resp->reason);
	memset(resp, 0, sizeof(*resp));
}

const char *httpc_response_header(const struct httpc_response *resp, const char *name)
{
	size_t i;

	if (resp == NULL || name == NULL)
		return NULL;
	for (i = 0; i < resp->nheaders; i++)
		if (resp->headers[i].name != NULL && strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value ? resp->headers[i].value : "";
	return NULL;
}

/* Appends bytes to a malloc'd NUL-terminated string. */
static int append_str(char **dst, const char *at, size_t len)
{
	size_t old = *dst ? strlen(*dst) : 0;
	char *p;

	if (len > 64 * 1024 || old > 64 * 1024)
		return -1;
	p = realloc(*dst, old + len + 1);
	if (p == NULL)
		return -1;
	memcpy(p + old, at, len);
	p[old + len] = '\0';
	*dst = p;
	return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
	struct httpc_call *c = p->data;

	if (append_str(&c->resp->reason, at, len) != 0) {
		c->nomem = 1;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct httpc_call *c = p->data;
	struct httpc_response *r = c->resp;

	if (r->nheaders == 0 || c->last_was_value) {
		struct httpc_header *h;

		if (r->nheaders >= HTTPC_MAX_HEADERS)
			return -1;
		h = realloc(r->headers, (r->nheaders + 1) * sizeof(*h));
		if (h == NULL) {
			c->nomem = 1;
			return -1;
		}
		r->headers = h;
		r->headers[r->nheaders].name = NULL;
		r->headers[r->nheaders].value = NULL;
		r->nheaders++;
		c->last_was_value = 0;
	}
	if (append_str(&r->headers[r->nheaders - 1].name, at, len) != 0) {
		c->nomem = 1;
		return -1;
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct httpc_call *c = p->data;
	struct httpc_response *r = c->resp;

	if (r->nheaders == 0)
		return -1;
	c->last_was_value = 1;
	if (append_str(&r->headers[r->nheaders - 1].value, at, len) != 0) {
		c->nomem = 1;
		return -1;
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct httpc_call *c = p->data;

	c->resp->status = (int)p->status_code;
	/* A HEAD response has headers only; 1 tells the parser to skip body. */
	return c->head_only ? 1 : 0;
}

/*
 * The body cap is checked before growing, with a subtraction that cannot wrap: a
 * misbehaving agent cannot make the CLI allocate more than max_body.
 */
static int on_body(http_parser *p, const char *at, size_t len)
{
	struct httpc_call *c = p->data;
	struct httpc_response *r = c->resp;

	if (len > c->max_body - r->body_len) {
		c->too_big = 1;
		return -1;
	}
	if (r->body_len + len + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 4096;
		char *nb;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		nb = realloc(r->body, cap);
		if (nb == NULL) {
			c->nomem = 1;
			return -1;
		}
		r->body = nb;
		c->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct httpc_call *c = p->data;

	c->complete = 1;
	return 0;
}

static int has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* Builds the request head into a malloc'd string. */
static char *build_head(const char *host, const char *port, const char *method, const char *path,
                        size_t body_len, int send_length, const char *const *extra)
{
	size_t cap = 512 + strlen(host) + strlen(method) + strlen(path);
	const char *const *h;
	char *buf;
	size_t n;
	int bracket = strchr(host, ':') != NULL;
	int w;

	for (h = extra; h && *h; h++)
		cap += strlen(*h) + 2;
	buf = xmalloc(cap);
	w = snprintf(buf, cap,
	             "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n"
	             "User-Agent: rumor/%s\r\nAccept: */*\r\n"
	             "Connection: close\r\n",
	             method, path, bracket ? "[" : "", host, bracket ? "]" : "",
	             strcmp(port, "80") ? ":" : "", strcmp(port, "80") ? port : "", RUMOR_VERSION);
	if (w < 0 || (size_t)w >= cap) {
		free(buf);
		return NULL;
	}
	n = (size_t)w;
	for (h = extra; h && *h; h++) {
		w = snprintf(buf + n, cap - n, "%s\r\n", *h);
		if (w < 0 || (size_t)w >= cap - n) {
			free(buf);
			return NULL;
		}
		n += (size_t)w;
	}
	if (send_length)
		w = snprintf(buf + n, cap - n, "Content-Length: %zu\r\n\r\n", body_len);
	else
		w = snprintf(buf + n, cap - n, "\r\n");
	if (w < 0 || (size_t)w >= cap - n) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Connects to one resolved address; returns fd or -1 with *why set.  The
 * socket comes from net_tcp_connect (non-blocking, close-on-exec,
 * TCP_NODELAY); the wait for the handshake is ours, under the deadline. */
static int dial_one(const struct addrinfo *ai, int64_t deadline, int *why, int *timed_out)
{
	struct sockaddr_storage ss;
	int fd, r, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (ai->ai_addrlen > sizeof(ss)) {
		*why = EAFNOSUPPORT;
		return -1;
	}
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	fd = net_tcp_connect(&ss, ai->ai_addrlen, NULL);
	if (fd < 0) {
		*why = -fd;
		return -1;
	}
	r = wait_fd(fd, POLLOUT, deadline);
	if (r == 0) {
		*timed_out = 1;
		*why = ETIMEDOUT;
		close(fd);
		return -1;
	}
	if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
		*why = errno;
		close(fd);
		return -1;
	}
	if (soerr != 0) {
		*why = soerr;
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends all of buf; 0 ok, 1 peer closed (EPIPE/ECONNRESET), -1 error,
 * -2 timeout.  *why gets errno on error. */
static int send_all(int fd, const char *buf, size_t len, int64_t deadline, int *why)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_fd(fd, POLLOUT, deadline);

			if (r == 0)
				return -2;
			if (r < 0) {
				*why = errno;
				return -1;
			}
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return 1;
		*why = n < 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

/* One request in flight: what the steps of httpc_request_opts share. */
struct httpc_req {
	const char *addr, *method, *path;
	const void *body;
	size_t body_len;
	const char *const *extra; /* "Name: value" lines, NULL-ended */
	size_t max_body;
	int64_t deadline;
	char host[256], port[8];
	int fd;
	int peer_closed; /* the peer closed while we were writing */
	struct httpc_response *resp;
	char *err;
	size_t errlen;
};

/* Refuses what would put bytes on the wire we did not mean: a malformed
 * address, a request line or header with CR, LF or (in the line) a space.
 * Nothing is sent or resolved before this passes. */
static int req_check(struct httpc_req *q)
{
	const char *const *h;

	if (q->addr == NULL || httpc_split_hostport(q->addr, q->host, sizeof(q->host), q->port,
	                                            sizeof(q->port)) != 0) {
		q->resp->error = HTTPC_E_ADDRESS;
		err_set(q->err, q->errlen, "invalid address \"%s\": want host:port",
		        q->addr ? q->addr : "");
		return -1;
	}
	if (q->method == NULL || *q->method == '\0' || strpbrk(q->method, " \r\n") ||
	    q->path == NULL || q->path[0] != '/' || strpbrk(q->path, " \r\n")) {
		q->resp->error = HTTPC_E_REQUEST;
		err_set(q->err, q->errlen, "invalid request line for %s", q->addr);
		return -1;
	}
	for (h = q->extra; h && *h; h++) {
		if (has_crlf(*h) || strchr(*h, ':') == NULL) {
			q->resp->error = HTTPC_E_REQUEST;
			err_set(q->err, q->errlen, "invalid request header \"%s\"", *h);
			return -1;
		}
	}
	return 0;
}

/* Resolves the host and tries each address in turn until one connects
 * or the deadline passes; q->fd is the connected socket. */
static int req_dial(struct httpc_req *q)
{
	struct addrinfo hints, *res = NULL, *ai;
	char etext[128];
	int why = 0, timed_out = 0, gai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* No AI_ADDRCONFIG: it hides ::1 on hosts whose only IPv6 is
	 * loopback; unreachable families just fail over to the next. */
	gai = getaddrinfo(q->host, q->port, &hints, &res);
	if (gai != 0) {
		q->resp->error = HTTPC_E_RESOLVE;
		err_set(q->err, q->errlen, "dial tcp %s: lookup %s: %s", q->addr, q->host,
		        gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai != NULL && q->fd < 0; ai = ai->ai_next) {
		if (remaining_ms(q->deadline) == 0) {
			timed_out = 1;
			break;
		}
		q->fd = dial_one(ai, q->deadline, &why, &timed_out);
	}
	freeaddrinfo(res);
	if (q->fd >= 0)
		return 0;
	if (timed_out) {
		q->resp->error = HTTPC_E_TIMEOUT;
		q->resp->sys_errno = ETIMEDOUT;
		err_set(q->err, q->errlen, "dial tcp %s: i/o timeout", q->addr);
	} else {
		q->resp->error = HTTPC_E_CONNECT;
		q->resp->sys_errno = why;
		errno_text(why, etext, sizeof(etext));
		err_set(q->err, q->errlen, "dial tcp %s: %s", q->addr, etext);
	}
	return -1;
}

/* Writes the head and the body.  A peer that closes mid-write is not an
 * error here (a server may answer 413 before reading the body): it is
 * noted in q->peer_closed and the answer is still read. */
static int req_send(struct httpc_req *q)
{
	char etext[128], *head;
	int why = 0, r;
	int send_length = q->body_len > 0 || strcmp(q->method, "PUT") == 0 ||
	                  strcmp(q->method, "POST") == 0 || strcmp(q->method, "PATCH") == 0;

	head = build_head(q->host, q->port, q->method, q->path, q->body_len, send_length, q->extra);
	if (head == NULL) {
		q->resp->error = HTTPC_E_NOMEM;
		err_set(q->err, q->errlen, "out of memory building request");
		return -1;
	}
	r = send_all(q->fd, head, strlen(head), q->deadline, &why);
	if (r == 0 && q->body_len > 0)
		r = send_all(q->fd, q->body, q->body_len, q->deadline, &why);
	free(head);
	if (r == -2) {
		q->resp->error = HTTPC_E_TIMEOUT;
		q->resp->sys_errno = ETIMEDOUT;
		err_set(q->err, q->errlen, "write to %s: i/o timeout", q->addr);
		return -1;
	}
	if (r < 0) {
		q->resp->error = HTTPC_E_IO;
		q->resp->sys_errno = why;
		errno_text(why, etext, sizeof(etext));
		err_set(q->err, q->errlen, "write to %s: %s", q->addr, etext);
		return -1;
	}
	q->peer_closed = r == 1;
	return 0;
}

/* Records a failed read (errno why) in the response. */
static int req_read_failed(struct httpc_req *q, int why)
{
	char etext[128];

	q->resp->error = HTTPC_E_IO;
	q->resp->sys_errno = why;
	errno_text(why, etext, sizeof(etext));
	err_set(q->err, q->errlen, "read from %s: %s", q->addr, etext);
	return -1;
}

/* After feeding n bytes (0: EOF) to the parser: 1 the response is whole,
 * 0 read on, -1 failed (recorded in the response). */
static int req_parsed(struct httpc_req *q, const struct httpc_call *call, const http_parser *parser,
                      ssize_t n, size_t used)
{
	if (call->too_big) {
		q->resp->error = HTTPC_E_TOO_BIG;
		err_set(q->err, q->errlen, "response from %s: body larger than %zu bytes", q->addr,
		        call->max_body);
		return -1;
	}
	if (call->nomem) {
		q->resp->error = HTTPC_E_NOMEM;
		err_set(q->err, q->errlen, "out of memory reading response");
		return -1;
	}
	if (call->complete)
		return 1;
	if (n > 0 && (HTTP_PARSER_ERRNO(parser) != HPE_OK || used != (size_t)n)) {
		q->resp->error = HTTPC_E_PROTOCOL;
		err_set(q->err, q->errlen, "malformed HTTP response from %s: %s", q->addr,
		        http_errno_description(HTTP_PARSER_ERRNO(parser)));
		return -1;
	}
	if (n == 0) {
		/* EOF fed above with length 0; not complete means cut */
		q->resp->error = HTTPC_E_IO;
		err_set(q->err, q->errlen, "read from %s: %s", q->addr,
		        (q->peer_closed && q->resp->status == 0)
		                ? "connection closed before the response"
		                : "unexpected EOF before the response was "
		                  "complete");
		return -1;
	}
	return 0;
}

/* Reads into a stack buffer fed to http-parser until the message is
 * complete, EOF, an error or the deadline; the callbacks fill q->resp. */
static int req_read(struct httpc_req *q)
{
	struct httpc_call call;
	http_parser_settings settings;
	http_parser parser;

	memset(&call, 0, sizeof(call));
	call.addr = q->addr;
	call.resp = q->resp;
	call.max_body = q->max_body;
	call.head_only = strcmp(q->method, "HEAD") == 0;
	memset(&settings, 0, sizeof(settings));
	settings.on_status = on_status;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_message_complete;
	http_parser_init(&parser, HTTP_RESPONSE);
	parser.data = &call;

	while (!call.complete) {
		char buf[16384];
		ssize_t n = recv(q->fd, buf, sizeof(buf), 0);
		size_t used;
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wait_fd(q->fd, POLLIN, q->deadline);
			if (r == 0) {
				q->resp->error = HTTPC_E_TIMEOUT;
				q->resp->sys_errno = ETIMEDOUT;
				err_set(q->err, q->errlen, "read from %s: i/o timeout", q->addr);
				return -1;
			}
			if (r < 0)
				return req_read_failed(q, errno);
			continue;
		}
		if (n < 0)
			return req_read_failed(q, errno);
		used = http_parser_execute(&parser, &settings, buf, (size_t)n);
		r = req_parsed(q, &call, &parser, n, used);
		if (r < 0)
			return -1;
		if (r > 0)
			break;
	}
	q->resp->status = (int)parser.status_code;
	return 0;
}

/* The steps in order: check, dial, send, read.  On failure everything the
 * response holds is freed but the error kind and errno, so the caller can
 * word its own message. */
int httpc_request_opts(const char *addr, const char *method, const char *path_and_query,
                       const void *body, size_t body_len, const struct httpc_options *opts,
                       struct httpc_response *resp, char *err, size_t errlen)
{
	int timeout = (opts && opts->timeout_ms > 0) ? opts->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS;
	struct httpc_req q = {
	        .addr = addr,
	        .method = method,
	        .path = path_and_query,
	        .body = body,
	        .body_len = body_len,
	        .extra = opts ? opts->headers : NULL,
	        .max_body = (opts && opts->max_body) ? opts->max_body : HTTPC_DEFAULT_MAX_BODY,
	        .deadline = now_ms() + timeout,
	        .fd = -1,
	        .resp = resp,
	        .err = err,
	        .errlen = errlen,
	};

	if (resp == NULL)
		return -1;
	memset(resp, 0, sizeof(*resp));
	if (err && errlen)
		err[0] = '\0';
	if (req_check(&q) != 0 || req_dial(&q) != 0 || req_send(&q) != 0 || req_read(&q) != 0)
		goto fail;
	close(q.fd);
	if (resp->body == NULL)
		resp->body = xcalloc(1, 1);
	if (resp->reason == NULL)
		resp->reason = xcalloc(1, 1);
	resp->error = HTTPC_OK;
	return 0;
fail:
	if (q.fd >= 0)
		close(q.fd);
	{
		enum httpc_error e = resp->error;
		int se = resp->sys_errno;

		httpc_response_free(resp);
		resp->error = e;
		resp->sys_errno = se;
	}
	return -1;
}

int httpc_request(const char *addr, const char *method, const char *path_and_query,
                  const void *body, size_t body_len, struct httpc_response *resp, char *err,
                  size_t errlen)
{
	return httpc_request_opts(addr, method, path_and_query, body, body_len, NULL, resp, err,
	                          errlen);
}
