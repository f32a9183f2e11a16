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
#include <fcntl.h>
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

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* strerror with a lower-case first letter, as Go prints syscall errors. */
static void errno_text(int e, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(e));
	if (len > 0 && buf[0] >= 'A' && buf[0] <= 'Z' &&
	    !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)tolower((unsigned char)buf[0]);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
		struct pollfd p = { .fd = fd, .events = events };
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

int httpc_split_hostport(const char *addr, char *host, size_t hostlen,
                         char *port, size_t portlen)
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

size_t httpc_escape(char *out, size_t outlen, const char *in,
                    unsigned flags)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	const unsigned char *s;

	for (s = (const unsigned char *)in; *s; s++) {
		unsigned char c = *s;
		int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		           c == '_' || c == '~' ||
		           (c == '/' && (flags & HTTPC_ESCAPE_KEEP_SLASH)) ||
		           ((c == ':' || c == '@') &&
		            (flags & HTTPC_ESCAPE_SEGMENT));
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

const char *httpc_response_header(const struct httpc_response *resp,
                                  const char *name)
{
	size_t i;

	if (resp == NULL || name == NULL)
		return NULL;
	for (i = 0; i < resp->nheaders; i++)
		if (resp->headers[i].name != NULL &&
		    strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value ? resp->headers[i].value
			                              : "";
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
static char *build_head(const char *host, const char *port,
                        const char *method, const char *path,
                        size_t body_len, int send_length,
                        const char *const *extra)
{
	size_t cap = 512 + strlen(host) + strlen(method) + strlen(path);
	const char *const *h;
	char *buf;
	size_t n;
	int bracket = strchr(host, ':') != NULL;
	int w;

	for (h = extra; h && *h; h++)
		cap += strlen(*h) + 2;
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	w = snprintf(buf, cap,
	             "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n"
	             "User-Agent: rumor/%s\r\nAccept: */*\r\n"
	             "Connection: close\r\n",
	             method, path, bracket ? "[" : "", host,
	             bracket ? "]" : "", strcmp(port, "80") ? ":" : "",
	             strcmp(port, "80") ? port : "", RUMOR_VERSION);
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
		w = snprintf(buf + n, cap - n, "Content-Length: %zu\r\n\r\n",
		             body_len);
	else
		w = snprintf(buf + n, cap - n, "\r\n");
	if (w < 0 || (size_t)w >= cap - n) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Connects to one resolved address; returns fd or -1 with *why set. */
static int dial_one(const struct addrinfo *ai, int64_t deadline, int *why,
                    int *timed_out)
{
	int fd, r, soerr = 0;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0) {
		*why = errno;
		return -1;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		goto fail;
	do {
		r = connect(fd, ai->ai_addr, ai->ai_addrlen);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	r = wait_fd(fd, POLLOUT, deadline);
	if (r == 0) {
		*timed_out = 1;
		*why = ETIMEDOUT;
		close(fd);
		return -1;
	}
	if (r < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		goto fail;
	if (soerr != 0) {
		*why = soerr;
		close(fd);
		return -1;
	}
	return fd;
fail:
	*why = errno;
	close(fd);
	return -1;
}

/* Sends all of buf; 0 ok, 1 peer closed (EPIPE/ECONNRESET), -1 error,
 * -2 timeout.  *why gets errno on error. */
static int send_all(int fd, const char *buf, size_t len, int64_t deadline,
                    int *why)
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

int httpc_request_opts(const char *addr, const char *method,
                       const char *path_and_query, const void *body,
                       size_t body_len, const struct httpc_options *opts,
                       struct httpc_response *resp, char *err, size_t errlen)
{
	char host[256], port[8], etext[128];
	struct addrinfo hints, *res = NULL, *ai;
	const char *const *extra = opts ? opts->headers : NULL;
	int timeout = (opts && opts->timeout_ms > 0) ? opts->timeout_ms
	                                             : HTTPC_DEFAULT_TIMEOUT_MS;
	int64_t deadline = now_ms() + timeout;
	struct httpc_call call;
	http_parser_settings settings;
	http_parser parser;
	const char *const *h;
	char *head = NULL;
	int fd = -1, why = 0, timed_out = 0, gai, r, send_length;
	int peer_closed = 0;

	if (resp == NULL)
		return -1;
	memset(resp, 0, sizeof(*resp));
	if (err && errlen)
		err[0] = '\0';
	if (addr == NULL ||
	    httpc_split_hostport(addr, host, sizeof(host), port,
	                         sizeof(port)) != 0) {
		resp->error = HTTPC_E_ADDRESS;
		set_err(err, errlen, "invalid address \"%s\": want host:port",
		        addr ? addr : "");
		return -1;
	}
	if (method == NULL || *method == '\0' || strpbrk(method, " \r\n") ||
	    path_and_query == NULL || path_and_query[0] != '/' ||
	    strpbrk(path_and_query, " \r\n")) {
		resp->error = HTTPC_E_REQUEST;
		set_err(err, errlen, "invalid request line for %s", addr);
		return -1;
	}
	for (h = extra; h && *h; h++) {
		if (has_crlf(*h) || strchr(*h, ':') == NULL) {
			resp->error = HTTPC_E_REQUEST;
			set_err(err, errlen, "invalid request header \"%s\"",
			        *h);
			return -1;
		}
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* No AI_ADDRCONFIG: it hides ::1 on hosts whose only IPv6 is
	 * loopback; unreachable families just fail over to the next. */
	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		resp->error = HTTPC_E_RESOLVE;
		set_err(err, errlen, "dial tcp %s: lookup %s: %s", addr, host,
		        gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		if (remaining_ms(deadline) == 0) {
			timed_out = 1;
			break;
		}
		fd = dial_one(ai, deadline, &why, &timed_out);
	}
	freeaddrinfo(res);
	if (fd < 0) {
		if (timed_out) {
			resp->error = HTTPC_E_TIMEOUT;
			resp->sys_errno = ETIMEDOUT;
			set_err(err, errlen, "dial tcp %s: i/o timeout", addr);
		} else {
			resp->error = HTTPC_E_CONNECT;
			resp->sys_errno = why;
			errno_text(why, etext, sizeof(etext));
			set_err(err, errlen, "dial tcp %s: %s", addr, etext);
		}
		return -1;
	}
	{
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}

	send_length = body_len > 0 || strcmp(method, "PUT") == 0 ||
	              strcmp(method, "POST") == 0 ||
	              strcmp(method, "PATCH") == 0;
	head = build_head(host, port, method, path_and_query, body_len,
	                  send_length, extra);
	if (head == NULL) {
		resp->error = HTTPC_E_NOMEM;
		set_err(err, errlen, "out of memory building request");
		goto fail;
	}
	r = send_all(fd, head, strlen(head), deadline, &why);
	if (r == 0 && body_len > 0)
		r = send_all(fd, body, body_len, deadline, &why);
	free(head);
	head = NULL;
	if (r == -2) {
		resp->error = HTTPC_E_TIMEOUT;
		resp->sys_errno = ETIMEDOUT;
		set_err(err, errlen, "write to %s: i/o timeout", addr);
		goto fail;
	}
	if (r < 0) {
		resp->error = HTTPC_E_IO;
		resp->sys_errno = why;
		errno_text(why, etext, sizeof(etext));
		set_err(err, errlen, "write to %s: %s", addr, etext);
		goto fail;
	}
	peer_closed = r == 1;

	memset(&call, 0, sizeof(call));
	call.addr = addr;
	call.resp = resp;
	call.max_body = (opts && opts->max_body) ? opts->max_body
	                                         : HTTPC_DEFAULT_MAX_BODY;
	call.head_only = strcmp(method, "HEAD") == 0;
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
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		size_t used;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wait_fd(fd, POLLIN, deadline);
			if (r == 0) {
				resp->error = HTTPC_E_TIMEOUT;
				resp->sys_errno = ETIMEDOUT;
				set_err(err, errlen, "read from %s: i/o timeout",
				        addr);
				goto fail;
			}
			if (r < 0) {
				why = errno;
				goto io_fail;
			}
			continue;
		}
		if (n < 0) {
			why = errno;
			goto io_fail;
		}
		used = http_parser_execute(&parser, &settings, buf, (size_t)n);
		if (call.too_big) {
			resp->error = HTTPC_E_TOO_BIG;
			set_err(err, errlen,
			        "response from %s: body larger than %zu bytes",
			        addr, call.max_body);
			goto fail;
		}
		if (call.nomem) {
			resp->error = HTTPC_E_NOMEM;
			set_err(err, errlen, "out of memory reading response");
			goto fail;
		}
		if (call.complete)
			break;
		if (n > 0 && (HTTP_PARSER_ERRNO(&parser) != HPE_OK ||
		              used != (size_t)n)) {
			resp->error = HTTPC_E_PROTOCOL;
			set_err(err, errlen, "malformed HTTP response from %s: %s",
			        addr,
			        http_errno_description(HTTP_PARSER_ERRNO(&parser)));
			goto fail;
		}
		if (n == 0) {
			/* EOF fed above with length 0; not complete means cut */
			resp->error = HTTPC_E_IO;
			set_err(err, errlen,
			        "read from %s: %s", addr,
			        (peer_closed && resp->status == 0)
			                ? "connection closed before the response"
			                : "unexpected EOF before the response was "
			                  "complete");
			goto fail;
		}
	}
	close(fd);
	if (resp->body == NULL) {
		resp->body = calloc(1, 1);
		if (resp->body == NULL) {
			httpc_response_free(resp);
			resp->error = HTTPC_E_NOMEM;
			set_err(err, errlen, "out of memory");
			return -1;
		}
	}
	if (resp->reason == NULL)
		resp->reason = calloc(1, 1);
	resp->status = (int)parser.status_code;
	resp->error = HTTPC_OK;
	return 0;

io_fail:
	resp->error = HTTPC_E_IO;
	resp->sys_errno = why;
	errno_text(why, etext, sizeof(etext));
	set_err(err, errlen, "read from %s: %s", addr, etext);
fail:
	free(head);
	if (fd >= 0)
		close(fd);
	{
		enum httpc_error e = resp->error;
		int se = resp->sys_errno;

		httpc_response_free(resp);
		resp->error = e;
		resp->sys_errno = se;
	}
	return -1;
}

int httpc_request(const char *addr, const char *method,
                  const char *path_and_query, const void *body,
                  size_t body_len, struct httpc_response *resp, char *err,
                  size_t errlen)
{
	return httpc_request_opts(addr, method, path_and_query, body, body_len,
	                          NULL, resp, err, errlen);
}
