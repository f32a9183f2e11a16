/*
 * http.c — HTTP/1.1 server: sans-I/O request parser and libev driver.
 * The design is described in http.h.
 *
 * Parser memory: one text arena per parser holds the request target, the
 * header names and values (each NUL-terminated, recorded as offsets while the
 * arena may still grow), then a copy of the raw path, the decoded path and the
 * query split in place.  Pointers in the request view are computed once the
 * headers are complete, when the arena no longer moves.  The body has its own
 * buffer, preallocated when Content-Length is known.  Buffers are reused
 * across requests on a connection and dropped when they grew large.
 */
#define _GNU_SOURCE /* accept4 */
#include "agent/http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/net.h"

#define RBUF_CAP 8192u        /* per-connection read buffer */
#define KEEP_ARENA_MAX 16384u /* buffers larger than this are freed on reset */
#define KEEP_BODY_MAX 65536u
#define KEEP_WBUF_MAX 65536u
#define LINGER_SECONDS 2.0 /* drain time after an error or a close */
#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF 0.1 /* pause accepting on EMFILE and friends */

void http_limits_default(struct http_limits *l)
{
	l->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
	l->max_body_bytes = HTTP_DEFAULT_MAX_BODY_BYTES;
	l->max_buffered = HTTP_DEFAULT_MAX_BUFFERED;
	l->max_headers = HTTP_DEFAULT_MAX_HEADERS;
	l->max_conns = HTTP_DEFAULT_MAX_CONNS;
	l->max_conns_per_client = HTTP_DEFAULT_MAX_CONNS_PER_CLIENT;
	l->idle_timeout_ms = HTTP_DEFAULT_IDLE_TIMEOUT_MS;
}

static void limits_fill(struct http_limits *dst, const struct http_limits *src)
{
	http_limits_default(dst);
	if (src == NULL)
		return;
	if (src->max_header_bytes)
		dst->max_header_bytes = src->max_header_bytes;
	if (src->max_body_bytes)
		dst->max_body_bytes = src->max_body_bytes;
	if (src->max_buffered)
		dst->max_buffered = src->max_buffered;
	dst->upload_path = src->upload_path;
	dst->upload_max_bytes = src->upload_max_bytes;
	if (src->max_headers)
		dst->max_headers = src->max_headers;
	if (src->max_conns)
		dst->max_conns = src->max_conns;
	if (src->max_conns_per_client)
		dst->max_conns_per_client = src->max_conns_per_client;
	if (src->idle_timeout_ms)
		dst->idle_timeout_ms = src->idle_timeout_ms;
}

/* ------------------------------------------------------------------ */
/* percent decoding, lookups                                          */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

ssize_t http_percent_decode(char *dst, const char *src, size_t len, bool plus_is_space)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = src[i];
		if (ch == '%') {
			if (len - i < 3)
				return -1;
			int hi = hexval(src[i + 1]);
			int lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)((hi << 4) | lo);
			if (ch == '\0')
				return -1;
			i += 2;
		} else if (ch == '+' && plus_is_space) {
			ch = ' ';
		} else if (ch == '\0') {
			return -1;
		}
		dst[o++] = ch;
	}
	dst[o] = '\0';
	return (ssize_t)o;
}

const char *http_query_get(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

const char *http_header_get(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Request Entity Too Large";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* ------------------------------------------------------------------ */
/* sans-I/O request parser                                            */

enum last_cb { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };

/* Where chunk_feed is in a chunked body (RFC 9112 7.1).  CK_OFF: not in
 * one (http-parser has the bytes). */
enum chunk_state {
	CK_OFF,
	CK_SIZE,    /* hex digits of chunk-size */
	CK_SIZE_WS, /* whitespace after them */
	CK_EXT,     /* ";" chunk-ext, up to CR */
	CK_SIZE_LF, /* LF ending the chunk-size line */
	CK_DATA,    /* ck_left bytes of chunk data */
	CK_DATA_CR, /* CRLF after the data */
	CK_DATA_LF,
	CK_TRAILER, /* start of a trailer line, or CR of the empty last line */
	CK_TR_NAME,
	CK_TR_VALUE,
	CK_TR_LF,
	CK_END_LF, /* LF of the empty line ending the message */
	CK_DONE,
};

#define CHUNK_LINE_MAX 4096u /* chunk-size line, extensions included */

struct hdr_off {
	size_t name, value; /* offsets into the arena */
};

struct http_reqparser {
	http_parser hp;
	struct http_limits lim;
	char *arena;
	size_t alen, acap;
	size_t url_off, url_len;
	enum last_cb last;
	struct hdr_off *hoff;
	size_t nhdr, hcap;
	struct http_kv *hv;
	size_t hvcap;
	struct http_kv *params;
	size_t nparams, pcap;
	char *body;
	size_t blen, bcap;
	size_t header_bytes;
	bool started, headers_done, done, want_continue;
	bool keep_alive; /* decided when the headers end */
	/* obs-fold: a value callback that ended before the end of the bytes
	 * fed ended at its line's end, so a second one for the same header is
	 * a continuation line, not the same line split by a read */
	const char *feed_end;
	bool value_at_end;
	enum chunk_state ck;
	uint64_t ck_left; /* chunk-size, then data bytes still to come */
	unsigned ck_digits, ck_line;
	int err_status;
	char err_msg[160];
	size_t body_max; /* max_body_bytes, or upload_max_bytes on the upload path */
	struct http_request req;
	size_t *pool; /* the server's total of request buffers (NULL: unbounded) */
};

/*
 * The first error wins: later callbacks may fail as a consequence of the first,
 * and the client must be told the cause, not the symptom.
 */
static int perr(struct http_reqparser *p, int status, const char *fmt, ...)
{
	if (p->err_status == 0) {
		p->err_status = status;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Account a request buffer growing from old to new bytes against the
 * server's pool: one connection may hold 64 KiB of headers and 1 MiB of
 * body, so 4096 of them could hold 4 GiB; the pool keeps all of them
 * together under max_buffered, and a request that would pass it is
 * answered 503 (try again) rather than the agent growing without bound. */
static int pool_grow(struct http_reqparser *p, size_t old, size_t new)
{
	if (p->pool == NULL || new <= old)
		return 0;
	if (*p->pool + (new - old) > p->lim.max_buffered)
		return perr(p, 503,
		            "Service Unavailable: request buffers of all connections are "
		            "over %zu bytes; try again",
		            p->lim.max_buffered);
	*p->pool += new - old;
	return 0;
}

static void pool_release(struct http_reqparser *p, size_t n)
{
	if (p->pool != NULL)
		*p->pool -= n < *p->pool ? n : *p->pool;
}

/*
 * Grows by doubling and counts every byte against the server-wide pool before
 * it allocates, so one slow client with huge headers cannot take memory the
 * others need; offsets, never pointers, survive a move.
 */
static int arena_reserve(struct http_reqparser *p, size_t n)
{
	if (p->acap - p->alen >= n + 1)
		return 0;
	size_t ncap = p->acap ? p->acap : 1024;
	while (ncap - p->alen < n + 1)
		ncap *= 2;
	if (pool_grow(p, p->acap, ncap) < 0)
		return -1;
	char *na = realloc(p->arena, ncap);
	if (na == NULL) {
		pool_release(p, ncap - p->acap);
		return perr(p, 500, "out of memory");
	}
	p->arena = na;
	p->acap = ncap;
	return 0;
}

static int arena_append(struct http_reqparser *p, const char *at, size_t n)
{
	if (arena_reserve(p, n) < 0)
		return -1;
	if (n > 0)
		memcpy(p->arena + p->alen, at, n);
	p->alen += n;
	return 0;
}

/* Appends a copy of arena[off..off+n) (the source may move while growing). */
static int arena_dup(struct http_reqparser *p, size_t off, size_t n)
{
	if (arena_reserve(p, n) < 0)
		return -1;
	if (n > 0)
		memcpy(p->arena + p->alen, p->arena + off, n);
	p->alen += n;
	return 0;
}

static int arena_nul(struct http_reqparser *p)
{
	if (arena_reserve(p, 0) < 0)
		return -1;
	p->arena[p->alen++] = '\0';
	return 0;
}

static int count_header_bytes(struct http_reqparser *p, size_t n)
{
	p->header_bytes += n;
	if (p->header_bytes > p->lim.max_header_bytes)
		return perr(p, 431, "Request Header Fields Too Large: headers exceed %zu bytes",
		            p->lim.max_header_bytes);
	return 0;
}

/* Terminates whatever string the previous callback was building. */
static int finish_last(struct http_reqparser *p)
{
	switch (p->last) {
	case LAST_URL:
	case LAST_VALUE:
		return arena_nul(p);
	case LAST_FIELD:
		/* a field without a value callback: a line without ':'
		 * (http-parser 2.9.4 refuses those itself) */
		return perr(p, 400, "Bad Request: header line without a colon");
	default:
		return 0;
	}
}

static struct http_reqparser *from_hp(http_parser *hp)
{
	return hp->data;
}

static int cb_message_begin(http_parser *hp)
{
	struct http_reqparser *p = from_hp(hp);
	p->started = true;
	return 0;
}

static int cb_url(http_parser *hp, const char *at, size_t n)
{
	struct http_reqparser *p = from_hp(hp);
	if (count_header_bytes(p, n) < 0)
		return -1;
	if (p->last != LAST_URL) {
		if (p->last != LAST_NONE)
			return perr(p, 400, "Bad Request: malformed request line");
		p->last = LAST_URL;
		p->url_off = p->alen;
		p->url_len = 0;
	}
	p->url_len += n;
	return arena_append(p, at, n);
}

static int cb_header_field(http_parser *hp, const char *at, size_t n)
{
	struct http_reqparser *p = from_hp(hp);
	if (count_header_bytes(p, n) < 0)
		return -1;
	/* Trailers of a chunked body: the request view built at headers
	 * complete points into the arena, so never grow it now (fuzz_http
	 * found the use-after-free); trailers are ignored, as Consul does. */
	if (p->headers_done)
		return 0;
	if (p->last != LAST_FIELD) {
		if (p->last != LAST_NONE && arena_nul(p) < 0)
			return -1;
		if (p->nhdr >= p->lim.max_headers)
			return perr(p, 431, "Request Header Fields Too Large: more than %u headers",
			            p->lim.max_headers);
		/* a line costs at least ": \r\n" beyond its name and value */
		if (count_header_bytes(p, 4) < 0)
			return -1;
		if (p->nhdr == p->hcap) {
			size_t ncap = p->hcap ? p->hcap * 2 : 16;
			struct hdr_off *nh = realloc(p->hoff, ncap * sizeof(*nh));
			if (nh == NULL)
				return perr(p, 500, "out of memory");
			p->hoff = nh;
			p->hcap = ncap;
		}
		p->hoff[p->nhdr].name = p->alen;
		p->hoff[p->nhdr].value = 0;
		p->nhdr++;
		p->last = LAST_FIELD;
	}
	return arena_append(p, at, n);
}

static int cb_header_value(http_parser *hp, const char *at, size_t n)
{
	struct http_reqparser *p = from_hp(hp);
	if (count_header_bytes(p, n) < 0)
		return -1;
	if (p->headers_done)
		return 0; /* trailer: see cb_header_field */
	/* RFC 9112 5.2: a server must reject obs-fold or replace it */
	if (p->last == LAST_VALUE && !p->value_at_end)
		return perr(p, 400, "Bad Request: obsolete line folding in header");
	p->value_at_end = at + n == p->feed_end;
	if (p->last != LAST_VALUE) {
		if (p->last != LAST_FIELD)
			return perr(p, 400, "Bad Request: header value without a name");
		if (arena_nul(p) < 0)
			return -1;
		p->hoff[p->nhdr - 1].value = p->alen;
		p->last = LAST_VALUE;
	}
	return arena_append(p, at, n);
}

static int add_param(struct http_reqparser *p, const char *name, const char *value)
{
	if (p->nparams == p->pcap) {
		size_t ncap = p->pcap ? p->pcap * 2 : 8;
		struct http_kv *np = realloc(p->params, ncap * sizeof(*np));
		if (np == NULL)
			return perr(p, 500, "out of memory");
		p->params = np;
		p->pcap = ncap;
	}
	p->params[p->nparams].name = name;
	p->params[p->nparams].value = value;
	p->nparams++;
	return 0;
}

/* Splits q (NUL-terminated, qlen bytes) in place into decoded parameters.
 * Pairs with a malformed escape are dropped, as Go's url.ParseQuery does. */
static int split_query(struct http_reqparser *p, char *q, size_t qlen)
{
	char *s = q, *end = q + qlen;
	while (s < end) {
		char *amp = memchr(s, '&', (size_t)(end - s));
		char *segend = amp ? amp : end;
		if (segend > s) {
			char *eq = memchr(s, '=', (size_t)(segend - s));
			char *name = s;
			size_t nlen = eq ? (size_t)(eq - s) : (size_t)(segend - s);
			char *value = eq ? eq + 1 : NULL;
			size_t vlen = eq ? (size_t)(segend - value) : 0;
			/* decode the value first: decoding the name writes its NUL
			 * over the '=' */
			bool ok = true;
			if (value != NULL && http_percent_decode(value, value, vlen, true) < 0)
				ok = false;
			if (ok && http_percent_decode(name, name, nlen, true) < 0)
				ok = false;
			if (ok && add_param(p, name, value ? value : "") < 0)
				return -1;
		}
		s = segend + 1;
	}
	return 0;
}

/*
 * Runs once, when the headers are complete and the arena will not move again:
 * the raw path, decoded path and query are copied in after the headers, and only
 * then are pointers taken. Any pointer taken before this point would dangle.
 */
static int build_view(struct http_reqparser *p)
{
	struct http_parser_url u;
	const char *url = p->arena + p->url_off;
	http_parser_url_init(&u);
	if (p->hp.method == HTTP_CONNECT)
		return perr(p, 400, "Bad Request: CONNECT is not supported");
	if (p->url_len == 0 || http_parser_parse_url(url, p->url_len, 0, &u) != 0)
		return perr(p, 400, "Bad Request: malformed request target");

	size_t path_off = 0, path_len = 0, q_off = 0, q_len = 0;
	if (u.field_set & (1u << UF_PATH)) {
		path_off = u.field_data[UF_PATH].off;
		path_len = u.field_data[UF_PATH].len;
	}
	if (u.field_set & (1u << UF_QUERY)) {
		q_off = u.field_data[UF_QUERY].off;
		q_len = u.field_data[UF_QUERY].len;
	}

	/* raw path, decoded path, query: appended after the headers */
	size_t raw_at = p->alen;
	if (path_len == 0) {
		if (arena_append(p, "/", 1) < 0)
			return -1;
		path_len = 1;
	} else if (arena_dup(p, p->url_off + path_off, path_len) < 0) {
		return -1;
	}
	if (arena_nul(p) < 0)
		return -1;
	size_t dec_at = p->alen;
	if (arena_dup(p, raw_at, path_len) < 0 || arena_nul(p) < 0)
		return -1;
	size_t rq_at = p->alen;
	if (arena_dup(p, p->url_off + q_off, q_len) < 0 || arena_nul(p) < 0)
		return -1;
	size_t q_at = p->alen;
	if (arena_dup(p, rq_at, q_len) < 0 || arena_nul(p) < 0)
		return -1;

	/* the arena no longer moves: take pointers */
	char *a = p->arena;
	if (http_percent_decode(a + dec_at, a + dec_at, path_len, false) < 0)
		return perr(p, 400, "Bad Request: invalid escape in path");
	if (split_query(p, a + q_at, q_len) < 0)
		return -1;

	if (p->nhdr > p->hvcap) {
		struct http_kv *nv = realloc(p->hv, p->nhdr * sizeof(*nv));
		if (nv == NULL)
			return perr(p, 500, "out of memory");
		p->hv = nv;
		p->hvcap = p->nhdr;
	}
	for (size_t i = 0; i < p->nhdr; i++) {
		p->hv[i].name = a + p->hoff[i].name;
		p->hv[i].value = a + p->hoff[i].value;
	}

	struct http_request *r = &p->req;
	memset(r, 0, sizeof(*r));
	r->method = http_method_str((enum http_method)p->hp.method);
	r->url = a + p->url_off;
	r->raw_path = a + raw_at;
	r->path = a + dec_at;
	r->raw_query = a + rq_at;
	r->params = p->params;
	r->nparams = p->nparams;
	r->headers = p->hv;
	r->nheaders = p->nhdr;
	r->body = "";
	r->remote = "";
	r->http_major = p->hp.http_major;
	r->http_minor = p->hp.http_minor;
	return 0;
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The framing checks http-parser 2.9 leaves out (it is built without
 * HTTP_PARSER_STRICT): a header name must be a token (it lets "Name :"
 * through and matches "Transfer-Encoding :" as the real one), an HTTP/1.0
 * request must not use Transfer-Encoding (RFC 9112 6.1), and the only
 * coding is one "chunked" (as Go's net/http, which Consul uses).  Also
 * checks that what http-parser framed by agrees with the header view. */
static int check_framing(struct http_reqparser *p, bool chunked)
{
	const struct http_request *r = &p->req;
	const char *te = NULL;
	size_t nte = 0;
	for (size_t i = 0; i < r->nheaders; i++) {
		for (const char *c = r->headers[i].name; *c; c++)
			if (!is_tchar((unsigned char)*c))
				return perr(p, 400,
				            "Bad Request: invalid character in header name");
		if (strcasecmp(r->headers[i].name, "Transfer-Encoding") == 0) {
			te = r->headers[i].value;
			nte++;
		}
	}
	if (te == NULL)
		return chunked ? perr(p, 400, "Bad Request: malformed Transfer-Encoding") : 0;
	if (r->http_minor == 0)
		return perr(p, 400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request");
	if (nte > 1)
		return perr(p, 400, "Bad Request: more than one Transfer-Encoding header");
	size_t tl = strlen(te);
	while (tl > 0 && (te[tl - 1] == ' ' || te[tl - 1] == '\t'))
		tl--;
	if (tl != 7 || strncasecmp(te, "chunked", 7) != 0)
		return perr(p, 501, "Not Implemented: unsupported Transfer-Encoding: %.40s", te);
	if (!chunked)
		return perr(p, 400, "Bad Request: malformed Transfer-Encoding");
	return 0;
}

/* Returns 1 (no body for http-parser) for a chunked body, which chunk_feed
 * decodes instead. */
static int cb_headers_complete(http_parser *hp)
{
	struct http_reqparser *p = from_hp(hp);
	if (finish_last(p) < 0)
		return -1;
	p->last = LAST_NONE;
	if (hp->http_major != 1)
		return perr(p, 505, "HTTP Version Not Supported");
	if (build_view(p) < 0)
		return -1;
	p->body_max = p->lim.max_body_bytes;
	if (p->lim.upload_path != NULL && p->lim.upload_max_bytes > p->body_max &&
	    hp->method == HTTP_PUT && strcmp(p->req.path, p->lim.upload_path) == 0)
		p->body_max = p->lim.upload_max_bytes;

	bool chunked = (hp->flags & F_CHUNKED) != 0;
	if (check_framing(p, chunked) < 0)
		return -1;
	bool has_len = (hp->flags & F_CONTENTLENGTH) != 0;
	uint64_t clen = has_len ? hp->content_length : 0;
	if (has_len && clen > p->body_max)
		return perr(p, 413, "Request body(%llu bytes) too large, max size: %zu bytes",
		            (unsigned long long)clen, p->body_max);

	const char *expect = http_header_get(&p->req, "Expect");
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return perr(p, 417, "Expectation Failed: unsupported Expect: %.60s",
			            expect);
		p->want_continue = chunked || clen > 0;
	}
	if (has_len && clen > 0 && clen + 1 > p->bcap) {
		if (pool_grow(p, p->bcap, (size_t)clen + 1) < 0)
			return -1;
		char *nb = realloc(p->body, (size_t)clen + 1);
		if (nb == NULL) {
			pool_release(p, (size_t)clen + 1 - p->bcap);
			return perr(p, 500, "out of memory");
		}
		p->body = nb;
		p->bcap = (size_t)clen + 1;
	}
	p->headers_done = true;
	if (chunked && !hp->upgrade) {
		p->ck = CK_SIZE;
		return 1;
	}
	return 0;
}

/*
 * The limit is checked before anything is copied or allocated, and in a form that
 * cannot overflow (n against what is left), so a chunked body cannot outgrow
 * max_body_bytes one chunk at a time.
 */
static int body_append(struct http_reqparser *p, const char *at, size_t n)
{
	if (n > p->body_max - p->blen)
		return perr(p, 413, "Request body(%zu bytes) too large, max size: %zu bytes",
		            p->blen + n, p->body_max);
	if (p->bcap - p->blen < n + 1) {
		size_t ncap = p->bcap ? p->bcap : 4096;
		while (ncap - p->blen < n + 1)
			ncap *= 2;
		if (pool_grow(p, p->bcap, ncap) < 0)
			return -1;
		char *nb = realloc(p->body, ncap);
		if (nb == NULL) {
			pool_release(p, ncap - p->bcap);
			return perr(p, 500, "out of memory");
		}
		p->body = nb;
		p->bcap = ncap;
	}
	memcpy(p->body + p->blen, at, n);
	p->blen += n;
	return 0;
}

static int cb_body(http_parser *hp, const char *at, size_t n)
{
	return body_append(from_hp(hp), at, n);
}

static void finish_message(struct http_reqparser *p)
{
	if (p->body != NULL) {
		p->body[p->blen] = '\0';
		p->req.body = p->body;
	}
	p->req.body_len = p->blen;
	p->req.keep_alive = p->keep_alive;
	p->done = true;
}

/* For a chunked body http-parser was told there is none (see
 * cb_headers_complete): it ends the message after the headers, and the
 * pause makes http_parser_execute report where they ended. */
static int cb_message_complete(http_parser *hp)
{
	struct http_reqparser *p = from_hp(hp);
	if (!p->headers_done)
		return perr(p, 400, "Bad Request: message ended before its headers");
	p->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
	if (p->ck == CK_OFF)
		finish_message(p);
	http_parser_pause(hp, 1); /* one request (or its headers) at a time */
	return 0;
}

static int chunk_err(struct http_reqparser *p, const char *what)
{
	return perr(p, 400, "Bad Request: malformed chunked encoding: %s", what);
}

/* Decodes a chunked body from the bytes after the headers, strictly: hex
 * digits only (at most 16), optional whitespace, extensions without control
 * characters, CRLF (never a bare CR or LF) after the size line, after every
 * chunk's data and after each trailer line and the last one.  http-parser
 * 2.9 takes any two bytes after chunk data and any byte after a CR, which
 * is what request smuggling through a proxy that reads them otherwise
 * needs.  Trailers are checked and dropped (Consul ignores them); their
 * bytes count against max_header_bytes.  The state is per byte, so a body
 * split across reads anywhere decodes the same.  *used: bytes taken (fewer
 * than len only when the message ended).  Returns 0 or -1 (perr). */
static int chunk_feed(struct http_reqparser *p, const char *data, size_t len, size_t *used)
{
	size_t i = 0;
	while (i < len && p->ck != CK_DONE) {
		unsigned char ch = (unsigned char)data[i];
		if (p->ck == CK_DATA) {
			size_t n = len - i;
			if (n > p->ck_left)
				n = (size_t)p->ck_left;
			if (body_append(p, data + i, n) < 0)
				return -1;
			p->ck_left -= n;
			i += n;
			if (p->ck_left == 0)
				p->ck = CK_DATA_CR;
			continue;
		}
		if (p->ck <= CK_SIZE_LF && ++p->ck_line > CHUNK_LINE_MAX)
			return chunk_err(p, "chunk size line too long");
		if (p->ck >= CK_TRAILER && count_header_bytes(p, 1) < 0)
			return -1;
		switch (p->ck) {
		case CK_SIZE:
			if (hexval((char)ch) >= 0) {
				if (++p->ck_digits > 16)
					return chunk_err(p, "chunk size too large");
				p->ck_left = p->ck_left * 16 + (uint64_t)hexval((char)ch);
			} else if (p->ck_digits == 0) {
				return chunk_err(p, "chunk size is not a hex number");
			} else if (ch == ' ' || ch == '\t') {
				p->ck = CK_SIZE_WS;
			} else if (ch == ';') {
				p->ck = CK_EXT;
			} else if (ch == '\r') {
				p->ck = CK_SIZE_LF;
			} else {
				return chunk_err(p, "invalid character in chunk size");
			}
			break;
		case CK_SIZE_WS:
			if (ch == ';')
				p->ck = CK_EXT;
			else if (ch == '\r')
				p->ck = CK_SIZE_LF;
			else if (ch != ' ' && ch != '\t')
				return chunk_err(p, "invalid character after chunk size");
			break;
		case CK_EXT:
			if (ch == '\r')
				p->ck = CK_SIZE_LF;
			else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return chunk_err(p, "control character in chunk extension");
			break;
		case CK_SIZE_LF:
			if (ch != '\n')
				return chunk_err(p, "chunk size line not ended by CRLF");
			if (p->ck_left > p->body_max - p->blen)
				return perr(
				        p, 413,
				        "Request body(%llu bytes) too large, max size: %zu bytes",
				        (unsigned long long)(p->blen + p->ck_left), p->body_max);
			p->ck = p->ck_left == 0 ? CK_TRAILER : CK_DATA;
			p->ck_digits = p->ck_line = 0;
			break;
		case CK_DATA_CR:
			if (ch != '\r')
				return chunk_err(p, "chunk data not followed by CRLF");
			p->ck = CK_DATA_LF;
			break;
		case CK_DATA_LF:
			if (ch != '\n')
				return chunk_err(p, "chunk data not followed by CRLF");
			p->ck = CK_SIZE;
			break;
		case CK_TRAILER:
			if (ch == '\r')
				p->ck = CK_END_LF;
			else if (is_tchar(ch))
				p->ck = CK_TR_NAME;
			else if (ch == '\n')
				return chunk_err(p, "last chunk not ended by CRLF");
			else
				return chunk_err(p, "malformed trailer line");
			break;
		case CK_TR_NAME:
			if (ch == ':')
				p->ck = CK_TR_VALUE;
			else if (!is_tchar(ch))
				return chunk_err(p, "invalid character in trailer name");
			break;
		case CK_TR_VALUE:
			if (ch == '\r')
				p->ck = CK_TR_LF;
			else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return chunk_err(p, "control character in trailer");
			break;
		case CK_TR_LF:
			if (ch != '\n')
				return chunk_err(p, "trailer line not ended by CRLF");
			p->ck = CK_TRAILER;
			break;
		case CK_END_LF:
			if (ch != '\n')
				return chunk_err(p, "last chunk not ended by CRLF");
			p->ck = CK_DONE;
			break;
		default:
			return perr(p, 500, "chunk decoder in state %d", (int)p->ck);
		}
		i++;
	}
	*used = i;
	if (p->ck == CK_DONE)
		finish_message(p);
	return 0;
}

static const http_parser_settings parser_settings = {
        .on_message_begin = cb_message_begin,
        .on_url = cb_url,
        .on_header_field = cb_header_field,
        .on_header_value = cb_header_value,
        .on_headers_complete = cb_headers_complete,
        .on_body = cb_body,
        .on_message_complete = cb_message_complete,
};

struct http_reqparser *http_reqparser_new(const struct http_limits *lim)
{
	struct http_reqparser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	limits_fill(&p->lim, lim);
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	return p;
}

void http_reqparser_set_pool(struct http_reqparser *p, size_t *pool)
{
	p->pool = pool;
}

void http_reqparser_free(struct http_reqparser *p)
{
	if (p == NULL)
		return;
	pool_release(p, p->acap + p->bcap);
	free(p->arena);
	free(p->hoff);
	free(p->hv);
	free(p->params);
	free(p->body);
	free(p);
}

/*
 * Keeps small buffers across requests on a keep-alive connection, but frees any
 * that grew past their KEEP_ limits: one large request must not pin its memory
 * for the life of the connection.
 */
void http_reqparser_reset(struct http_reqparser *p)
{
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	if (p->acap > KEEP_ARENA_MAX) {
		pool_release(p, p->acap);
		free(p->arena);
		p->arena = NULL;
		p->acap = 0;
	}
	if (p->bcap > KEEP_BODY_MAX) {
		pool_release(p, p->bcap);
		free(p->body);
		p->body = NULL;
		p->bcap = 0;
	}
	if (p->hcap > 64) {
		free(p->hoff);
		free(p->hv);
		p->hoff = NULL;
		p->hv = NULL;
		p->hcap = p->hvcap = 0;
	}
	if (p->pcap > 64) {
		free(p->params);
		p->params = NULL;
		p->pcap = 0;
	}
	p->alen = p->url_off = p->url_len = 0;
	p->last = LAST_NONE;
	p->nhdr = p->nparams = p->blen = p->header_bytes = 0;
	p->started = p->headers_done = p->done = p->want_continue = false;
	p->keep_alive = p->value_at_end = false;
	p->feed_end = NULL;
	p->ck = CK_OFF;
	p->ck_left = 0;
	p->ck_digits = p->ck_line = 0;
	p->err_status = 0;
	p->err_msg[0] = '\0';
	memset(&p->req, 0, sizeof(p->req));
}

/*
 * Feeds at most one request: http-parser is paused at each message end, so the
 * bytes of a pipelined next request stay in the caller's buffer for the next
 * call. Past the headers of a chunked body the bytes go to chunk_feed instead.
 * Once an error is set, every later call returns it.
 */
enum http_parse_result http_reqparser_feed(struct http_reqparser *p, const char *data, size_t len,
                                           size_t *consumed)
{
	*consumed = 0;
	if (p->err_status != 0)
		return HTTP_PARSE_ERROR;
	if (p->done)
		return HTTP_PARSE_DONE;
	size_t off = 0;
	if (p->ck == CK_OFF) {
		p->feed_end = len ? data + len : NULL;
		size_t n = http_parser_execute(&p->hp, &parser_settings, len ? data : NULL, len);
		off = n > len ? len : n;
		*consumed = off;
		p->feed_end = NULL;
	}
	if (p->done)
		return HTTP_PARSE_DONE;
	if (p->err_status != 0)
		return HTTP_PARSE_ERROR;
	if (p->ck != CK_OFF) {
		/* a chunked body: past the headers, the bytes are ours */
		size_t used = 0;
		if (len == 0)
			perr(p, 400, "Bad Request: input ended inside a chunked body");
		else if (chunk_feed(p, data + off, len - off, &used) == 0)
			*consumed = off + used;
		if (p->err_status != 0)
			return HTTP_PARSE_ERROR;
		return p->done ? HTTP_PARSE_DONE : HTTP_PARSE_MORE;
	}
	enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
	if (e == HPE_HEADER_OVERFLOW) {
		perr(p, 431, "Request Header Fields Too Large");
		return HTTP_PARSE_ERROR;
	}
	if (e != HPE_OK) {
		perr(p, 400, "Bad Request: %s", http_errno_description(e));
		return HTTP_PARSE_ERROR;
	}
	if (!p->headers_done && p->hp.nread > p->lim.max_header_bytes) {
		perr(p, 431, "Request Header Fields Too Large: headers exceed %zu bytes",
		     p->lim.max_header_bytes);
		return HTTP_PARSE_ERROR;
	}
	if (off != len) {
		perr(p, 400, "Bad Request: unexpected bytes after the request");
		return HTTP_PARSE_ERROR;
	}
	return HTTP_PARSE_MORE;
}

const struct http_request *http_reqparser_request(const struct http_reqparser *p)
{
	return p->done ? &p->req : NULL;
}

bool http_reqparser_wants_continue(const struct http_reqparser *p)
{
	return p->want_continue && !p->done && p->err_status == 0;
}

bool http_reqparser_in_request(const struct http_reqparser *p)
{
	return p->started && !p->done;
}

bool http_reqparser_headers_done(const struct http_reqparser *p)
{
	return p->headers_done;
}

int http_reqparser_error(const struct http_reqparser *p, const char **msg)
{
	if (msg != NULL)
		*msg = p->err_msg;
	return p->err_status;
}

/* ------------------------------------------------------------------ */
/* driver                                                             */

/* CS_STREAMING: a streamed response (http_stream_start) is open; the handler
 * still owns the conn, as in CS_HANDLING, until http_stream_end. */
enum conn_state { CS_READING, CS_HANDLING, CS_STREAMING, CS_WRITING, CS_LINGER, CS_CLOSED };

struct http_conn {
	struct http_server *srv;
	struct http_conn *prev, *next;
	int fd;
	ev_io rio, wio;
	ev_timer tmr;
	struct http_reqparser *parser;
	char *rbuf;
	size_t rpos, rlen;
	char *wbuf;
	size_t wpos, wlen, wcap;
	char *xhdr;
	size_t xlen, xcap;
	enum conn_state state;
	bool keep_alive, is_head, http10, continue_sent, close_after_write, peer_eof;
	bool chunked;     /* the streamed response uses chunked encoding */
	double req_start; /* ev_time() when the request went to the handler */
	http_close_fn close_cb;
	void *close_ud;
	struct client *client; /* its address's count; NULL when not capped */
	char remote[64];
};

/* One remote address and the connections it holds: an entry exists only
 * while conns > 0, so there are never more entries than connections. */
#define CLIENT_KEY_LEN 17 /* address family byte + 16 address bytes */

struct client {
	struct client *next; /* hash chain */
	uint8_t key[CLIENT_KEY_LEN];
	unsigned conns;
};

struct listener {
	struct http_server *srv;
	struct listener *next;
	int fd;
	ev_io io;
	ev_timer backoff;
};

struct http_server {
	struct ev_loop *loop;
	struct http_limits lim;
	http_handler_fn handler;
	void *ud;
	struct listener *listeners;
	struct http_conn *conns;
	size_t nconns;
	http_response_fn resp_fn;
	void *resp_ud;
	/* per-address counts: a hash keyed with a random SipHash key, so that
	 * chains stay short whatever addresses a client picks */
	unsigned per_client;     /* effective cap; 0 = none */
	struct client **buckets; /* nbuckets, a power of two; NULL when no cap */
	size_t nbuckets, nclients;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct http_server_stats stats;
	http_refuse_fn refuse_fn;
	void *refuse_ud;
	double refuse_reported; /* ev_now of the last refuse_fn call */
	uint64_t refuse_unreported;
	size_t buffered; /* request buffers of all connections (lim.max_buffered) */
};

static void conn_process(struct http_conn *c);

/* ---- per-address connection counts ---- */

/* Fills key from a peer address; false for an address that is not IP (no
 * per-address cap).  An IPv4-mapped IPv6 address is its IPv4 address. */
static bool client_key(const struct sockaddr_storage *ss, uint8_t key[CLIENT_KEY_LEN])
{
	memset(key, 0, CLIENT_KEY_LEN);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		key[0] = 4;
		memcpy(key + 1, &sin->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			key[0] = 4;
			memcpy(key + 1, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, &sin6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

/* The chain link that holds key's entry, or the NULL link at the end of
 * its chain. */
static struct client **client_link(struct http_server *s, const uint8_t key[CLIENT_KEY_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, key, CLIENT_KEY_LEN, s->hash_key);
	uint64_t v;
	memcpy(&v, h, sizeof(v));
	struct client **link = &s->buckets[v & (s->nbuckets - 1)];
	while (*link != NULL && memcmp((*link)->key, key, CLIENT_KEY_LEN) != 0)
		link = &(*link)->next;
	return link;
}

/* Drops one connection from cl's count; frees the entry at zero. */
static void client_release(struct http_server *s, struct client *cl)
{
	if (--cl->conns > 0)
		return;
	struct client **link = client_link(s, cl->key);
	*link = cl->next;
	s->nclients--;
	free(cl);
}

static double idle_seconds(const struct http_server *s)
{
	return s->lim.idle_timeout_ms / 1000.0;
}

static void timer_arm(struct http_conn *c, double secs)
{
	ev_timer_stop(c->srv->loop, &c->tmr);
	ev_timer_set(&c->tmr, secs, 0.);
	ev_timer_start(c->srv->loop, &c->tmr);
}

/*
 * The one way a connection ends. A handler still holding it (parked, streaming)
 * is told first, through its close callback, so it never writes to a freed conn;
 * the callback is cleared before it runs, so it cannot fire twice.
 */
static void conn_close(struct http_conn *c)
{
	struct http_server *s = c->srv;
	if (c->state == CS_CLOSED)
		return;
	bool pending = c->state == CS_HANDLING || c->state == CS_STREAMING;
	c->state = CS_CLOSED;
	if (pending && c->close_cb != NULL) {
		http_close_fn cb = c->close_cb;
		c->close_cb = NULL;
		cb(c, c->close_ud);
	}
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	ev_timer_stop(s->loop, &c->tmr);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->nconns--;
	if (c->client != NULL)
		client_release(s, c->client);
	http_reqparser_free(c->parser);
	free(c->rbuf);
	free(c->wbuf);
	free(c->xhdr);
	free(c);
}

static int buf_reserve(char **buf, size_t *cap, size_t len, size_t more)
{
	if (*cap - len >= more)
		return 0;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap - len < more) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	char *nb = realloc(*buf, ncap);
	if (nb == NULL)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static int wbuf_append(struct http_conn *c, const void *data, size_t n)
{
	if (buf_reserve(&c->wbuf, &c->wcap, c->wlen, n) < 0)
		return -ENOMEM;
	if (n > 0)
		memcpy(c->wbuf + c->wlen, data, n);
	c->wlen += n;
	return 0;
}

static int wbuf_printf(struct http_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (buf_reserve(&c->wbuf, &c->wcap, c->wlen, (size_t)n + 1) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(c->wbuf + c->wlen, (size_t)n + 1, fmt, ap);
	va_end(ap);
	c->wlen += (size_t)n;
	return 0;
}

/*
 * After an error or "Connection: close" we shut down our side and keep reading
 * for a short while: closing with unread input would send a RST, and the client
 * could lose the response we just wrote.
 */
static void start_linger(struct http_conn *c)
{
	if (c->peer_eof) {
		conn_close(c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	c->state = CS_LINGER;
	ev_io_stop(c->srv->loop, &c->wio);
	ev_io_start(c->srv->loop, &c->rio);
	double idle = idle_seconds(c->srv);
	timer_arm(c, idle < LINGER_SECONDS ? idle : LINGER_SECONDS);
}

/*
 * Keep-alive: reset the parser and go straight on to what the client pipelined,
 * already in rbuf. A client that half-closed gets answers to what it sent, then
 * the connection closes.
 */
static void response_done(struct http_conn *c)
{
	if (c->close_after_write) {
		start_linger(c);
		return;
	}
	http_reqparser_reset(c->parser);
	c->state = CS_READING;
	c->continue_sent = false;
	if (c->peer_eof) {
		/* the client half-closed: answer what it already sent, if anything */
		if (c->rpos == c->rlen) {
			conn_close(c);
			return;
		}
	} else {
		ev_io_start(c->srv->loop, &c->rio);
	}
	timer_arm(c, idle_seconds(c->srv));
	conn_process(c);
}

/*
 * The idle timer is re-armed only on progress, so a client that stops reading
 * its response is closed after the idle timeout rather than held forever.
 */
static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	bool progress = false;
	while (c->wpos < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(c);
			return;
		}
		c->wpos += (size_t)n;
		progress = true;
	}
	if (c->wpos < c->wlen) {
		if (progress && (c->state == CS_WRITING || c->state == CS_STREAMING))
			timer_arm(c, idle_seconds(c->srv));
		return;
	}
	c->wpos = c->wlen = 0;
	if (c->wcap > KEEP_WBUF_MAX) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
	ev_io_stop(loop, &c->wio);
	if (c->state == CS_WRITING)
		response_done(c);
	else if (c->state == CS_STREAMING)
		ev_timer_stop(loop, &c->tmr); /* an idle stream may stay open */
}

static void start_write(struct http_conn *c)
{
	ev_io_start(c->srv->loop, &c->wio);
}

/*
 * Reading stops while the handler runs if the read-ahead buffer is full: a
 * pipelining client is held back by TCP, never by more memory.
 */
static void dispatch(struct http_conn *c)
{
	struct http_request *req = &c->parser->req;
	req->remote = c->remote;
	c->keep_alive = req->keep_alive;
	c->http10 = req->http_minor == 0;
	c->is_head = strcmp(req->method, "HEAD") == 0;
	c->state = CS_HANDLING;
	c->xlen = 0;
	c->close_cb = NULL;
	c->close_ud = NULL;
	c->req_start = ev_time();
	ev_timer_stop(c->srv->loop, &c->tmr);
	if (c->rlen == RBUF_CAP && c->rpos == 0)
		ev_io_stop(c->srv->loop, &c->rio);
	c->srv->handler(c, req, c->srv->ud);
}

/*
 * A parse error always ends the connection: after a malformed request we cannot
 * know where the next one starts.
 */
static void send_error(struct http_conn *c, int status, const char *msg)
{
	c->state = CS_HANDLING;
	c->req_start = ev_time();
	c->keep_alive = false;
	c->is_head = false;
	c->http10 = false;
	c->xlen = 0;
	c->close_cb = NULL;
	char body[200];
	snprintf(body, sizeof(body), "%s\n", msg);
	if (http_respond(c, status, "text/plain; charset=utf-8", body, strlen(body)) < 0)
		conn_close(c);
}

/*
 * Parses until one request is complete (then hands it over and stops: one
 * request in flight per connection, answers in order) or the buffer is used up.
 * Sends "100 Continue" once, only when the headers asked for it.
 */
static void conn_process(struct http_conn *c)
{
	while (c->state == CS_READING) {
		if (c->rpos == c->rlen) {
			c->rpos = c->rlen = 0;
			return;
		}
		size_t used = 0;
		enum http_parse_result r =
		        http_reqparser_feed(c->parser, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
		c->rpos += used;
		if (r == HTTP_PARSE_DONE) {
			dispatch(c);
			return;
		}
		if (r == HTTP_PARSE_ERROR) {
			const char *msg;
			int status = http_reqparser_error(c->parser, &msg);
			send_error(c, status, msg);
			return;
		}
		c->rpos = c->rlen = 0;
		if (http_reqparser_headers_done(c->parser))
			timer_arm(c, idle_seconds(c->srv)); /* body progress */
		if (http_reqparser_wants_continue(c->parser) && !c->continue_sent) {
			c->continue_sent = true;
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			if (wbuf_append(c, cont, sizeof(cont) - 1) < 0) {
				conn_close(c);
				return;
			}
			start_write(c);
		}
		if (c->peer_eof) {
			conn_close(c);
			return;
		}
	}
}

/*
 * Reads into a fixed per-connection buffer; a full buffer stops reading rather
 * than growing. EOF while a response is being written is a half-close, not an
 * abort: the answer is still delivered.
 */
static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->state == CS_LINGER) /* discard what the client still sends */
		c->rlen = 0;
	if (c->rlen == RBUF_CAP) {
		ev_io_stop(loop, &c->rio); /* read-ahead full: wait for the response */
		return;
	}
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		conn_close(c);
		return;
	}
	if (n == 0) {
		if (c->state == CS_WRITING) {
			/* half-close after the request: still deliver the answer */
			c->peer_eof = true;
			ev_io_stop(loop, &c->rio);
			return;
		}
		conn_close(c);
		return;
	}
	if (c->state == CS_LINGER)
		return;
	c->rlen += (size_t)n;
	if (c->state == CS_READING)
		conn_process(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	conn_close(w->data);
}

/*
 * TCP_NODELAY: responses are written whole, and Nagle would delay the last
 * segment of each one by an ACK round trip on keep-alive connections.
 */
static int conn_new(struct http_server *s, int fd, const struct sockaddr_storage *ss,
                    struct client *cl)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->parser = http_reqparser_new(&s->lim);
	c->rbuf = malloc(RBUF_CAP);
	if (c->parser == NULL || c->rbuf == NULL) {
		http_reqparser_free(c->parser);
		free(c->rbuf);
		free(c);
		return -ENOMEM;
	}
	http_reqparser_set_pool(c->parser, &s->buffered);
	c->srv = s;
	c->fd = fd;
	c->client = cl;
	net_addr_format(ss, c->remote, sizeof(c->remote));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_init(&c->rio, read_cb, fd, EV_READ);
	ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
	ev_init(&c->tmr, timer_cb);
	c->rio.data = c->wio.data = c->tmr.data = c;
	c->state = CS_READING;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	ev_io_start(s->loop, &c->rio);
	timer_arm(c, idle_seconds(s));
	return 0;
}

/* Answers a refused connection with a fixed response and closes it.  The
 * socket was just accepted, so its send buffer is empty and the one send
 * fits; what the client already sent is read first, so that the close
 * sends a FIN after the answer and not a RST that could discard it. */
static void refuse(struct http_server *s, int fd, const struct sockaddr_storage *ss,
                   enum http_refuse_reason why, unsigned held)
{
	int status = why == HTTP_REFUSED_PER_CLIENT ? 429 : 503;
	const char *body = why == HTTP_REFUSED_PER_CLIENT
	                           ? "too many connections from this address\n"
	                           : "too many connections to this agent\n";
	char text[256];
	int len = snprintf(text, sizeof(text),
	                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
	                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                   status, http_status_text(status), strlen(body), body);
	char sink[4096];
	for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	(void)!send(fd, text, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	close(fd);

	if (why == HTTP_REFUSED_PER_CLIENT)
		s->stats.refused_per_client++;
	else
		s->stats.refused_max_conns++;
	s->refuse_unreported++;
	double now = ev_now(s->loop);
	if (s->refuse_fn != NULL &&
	    (s->refuse_reported == 0 || now - s->refuse_reported >= HTTP_REFUSE_REPORT_S)) {
		char remote[64];
		net_addr_format(ss, remote, sizeof(remote));
		uint64_t n = s->refuse_unreported;
		s->refuse_reported = now;
		s->refuse_unreported = 0;
		s->refuse_fn(s->refuse_ud, why, remote, held, n);
	}
}

/* Decides whether an accepted socket becomes a connection: the global cap
 * first, then its address's count.  Never allocates for a refused one. */
static void admit(struct http_server *s, int fd, const struct sockaddr_storage *ss)
{
	if (s->nconns >= s->lim.max_conns) {
		refuse(s, fd, ss, HTTP_REFUSED_MAX_CONNS, (unsigned)s->nconns);
		return;
	}
	struct client *cl = NULL;
	uint8_t key[CLIENT_KEY_LEN];
	if (s->buckets != NULL && client_key(ss, key)) {
		struct client **link = client_link(s, key);
		cl = *link;
		if (cl != NULL && cl->conns >= s->per_client) {
			refuse(s, fd, ss, HTTP_REFUSED_PER_CLIENT, cl->conns);
			return;
		}
		if (cl == NULL) {
			cl = calloc(1, sizeof(*cl));
			if (cl == NULL) {
				close(fd);
				return;
			}
			memcpy(cl->key, key, CLIENT_KEY_LEN);
			*link = cl;
			s->nclients++;
		}
		cl->conns++;
	}
	if (conn_new(s, fd, ss, cl) < 0) {
		close(fd);
		if (cl != NULL)
			client_release(s, cl);
	}
}

/*
 * Accepts in batches so a burst does not wait a loop turn per connection. Out of
 * descriptors or memory, accepting pauses briefly instead of spinning on a
 * listening socket that stays readable.
 */
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct http_server *s = l->srv;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				ev_io_stop(loop, &l->io);
				ev_timer_set(&l->backoff, ACCEPT_BACKOFF, 0.);
				ev_timer_start(loop, &l->backoff);
			}
			return;
		}
		admit(s, fd, &ss);
	}
}

static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = w->data;
	ev_io_start(loop, &l->io);
}

/*
 * The per-address cap is at most half of max_conns, so one address can never
 * take every slot. The address table is keyed with a random SipHash key, so a
 * client cannot choose addresses that collide into one bucket.
 */
struct http_server *http_server_new(struct ev_loop *loop, const struct http_limits *lim,
                                    http_handler_fn handler, void *ud, char *err, size_t errlen)
{
	if (loop == NULL || handler == NULL) {
		snprintf(err, errlen, "http: loop and handler are required");
		return NULL;
	}
	struct http_server *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "http: out of memory");
		return NULL;
	}
	s->loop = loop;
	limits_fill(&s->lim, lim);
	s->handler = handler;
	s->ud = ud;
	if (s->lim.max_conns_per_client != HTTP_UNLIMITED) {
		unsigned half = s->lim.max_conns / 2 ? s->lim.max_conns / 2 : 1;
		s->per_client =
		        s->lim.max_conns_per_client < half ? s->lim.max_conns_per_client : half;
		/* at most max_conns entries: about two per bucket when full */
		s->nbuckets = 16;
		while (s->nbuckets < s->lim.max_conns / 2 && s->nbuckets < 65536)
			s->nbuckets *= 2;
		s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
		if (sodium_init() < 0 || s->buckets == NULL) {
			snprintf(err, errlen, "http: out of memory");
			free(s->buckets);
			free(s);
			return NULL;
		}
		randombytes_buf(s->hash_key, sizeof(s->hash_key));
	}
	return s;
}

/* A listener on addr:port, with "[v6]" accepted as well as a bare IPv6
 * literal.  The backlog is 511 (nginx's and Redis's), not SOMAXCONN: a
 * burst of CLI and consul-client connects queues in the kernel instead of
 * being refused, while the per-client cap still applies at accept. */
int http_server_listen(struct http_server *s, const char *addr, uint16_t port, uint16_t *bound_port,
                       char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	size_t n = addr != NULL ? strlen(addr) : 0;

	if (addr == NULL || n >= sizeof(host)) {
		snprintf(err, errlen, "listen tcp %s:%u: invalid IP address",
		         addr ? addr : "(null)", port);
		return -EINVAL;
	}
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		memcpy(host, addr + 1, n - 2);
		host[n - 2] = '\0';
	} else {
		memcpy(host, addr, n + 1);
	}
	int fd = net_tcp_listen(host, port, 511, err, errlen);
	if (fd < 0)
		return fd;
	int bp = net_bound_port(fd);
	int e;
	if (bp < 0) {
		e = -bp;
		goto fail;
	}
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		e = ENOMEM;
		goto fail;
	}
	l->srv = s;
	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	ev_init(&l->backoff, backoff_cb);
	l->io.data = l->backoff.data = l;
	l->next = s->listeners;
	s->listeners = l;
	ev_io_start(s->loop, &l->io);
	if (bound_port != NULL)
		*bound_port = (uint16_t)bp;
	return 0;
fail:
	snprintf(err, errlen, "listen tcp %s:%u: %s", addr, port, strerror(e));
	close(fd);
	return -e;
}

size_t http_server_conn_count(const struct http_server *s)
{
	return s->nconns;
}

void http_server_stats(const struct http_server *s, struct http_server_stats *out)
{
	*out = s->stats;
	out->conns = s->nconns;
	out->clients = s->nclients;
}

void http_server_on_refuse(struct http_server *s, http_refuse_fn fn, void *ud)
{
	s->refuse_fn = fn;
	s->refuse_ud = ud;
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	while (s->listeners != NULL) {
		struct listener *l = s->listeners;
		s->listeners = l->next;
		ev_io_stop(s->loop, &l->io);
		ev_timer_stop(s->loop, &l->backoff);
		close(l->fd);
		free(l);
	}
	while (s->conns != NULL)
		conn_close(s->conns);
	free(s->buckets); /* every entry went with its last connection */
	free(s);
}

/* ------------------------------------------------------------------ */
/* responses                                                          */

/*
 * Header names and values from handlers are checked for CR, LF and ':' here, so
 * no value that reached a handler (a key, a query parameter) can split the
 * response or inject a header.
 */
static bool token_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= ' ' || ch >= 0x7f || ch == ':')
			return false;
	}
	return true;
}

static bool value_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

int http_add_header(struct http_conn *c, const char *name, const char *value)
{
	if (c->state != CS_HANDLING || name == NULL || value == NULL)
		return -EINVAL;
	if (!token_ok(name) || !value_ok(value))
		return -EINVAL;
	size_t nl = strlen(name), vl = strlen(value);
	if (buf_reserve(&c->xhdr, &c->xcap, c->xlen, nl + vl + 4) < 0)
		return -ENOMEM;
	memcpy(c->xhdr + c->xlen, name, nl);
	c->xlen += nl;
	memcpy(c->xhdr + c->xlen, ": ", 2);
	c->xlen += 2;
	memcpy(c->xhdr + c->xlen, value, vl);
	c->xlen += vl;
	memcpy(c->xhdr + c->xlen, "\r\n", 2);
	c->xlen += 2;
	return 0;
}

/*
 * Builds the whole response into the write buffer, or nothing: on failure the
 * buffer is rolled back to where it was and the handler may still answer. The
 * body is never sent for HEAD, 1xx, 204 or 304, as RFC 9110 requires.
 */
int http_respond(struct http_conn *c, int status, const char *content_type, const void *body,
                 size_t len)
{
	if (c->state != CS_HANDLING || status < 100 || status > 999)
		return -EINVAL;
	if (content_type != NULL && !value_ok(content_type))
		content_type = NULL;
	bool no_body = status < 200 || status == 204 || status == 304;
	char date[64];
	time_t now = (time_t)ev_now(c->srv->loop);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);

	size_t mark = c->wlen;
	int rc = wbuf_printf(c, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status),
	                     date);
	if (rc == 0 && content_type != NULL)
		rc = wbuf_printf(c, "Content-Type: %s\r\n", content_type);
	if (rc == 0 && !no_body)
		rc = wbuf_printf(c, "Content-Length: %zu\r\n", len);
	if (rc == 0 && !c->keep_alive)
		rc = wbuf_printf(c, "Connection: close\r\n");
	else if (rc == 0 && c->http10)
		rc = wbuf_printf(c, "Connection: keep-alive\r\n");
	if (rc == 0)
		rc = wbuf_append(c, c->xhdr, c->xlen);
	if (rc == 0)
		rc = wbuf_append(c, "\r\n", 2);
	if (rc == 0 && !no_body && !c->is_head)
		rc = wbuf_append(c, body, len);
	if (rc < 0) {
		c->wlen = mark;
		return rc;
	}
	c->xlen = 0;
	c->close_cb = NULL;
	c->close_ud = NULL;
	c->close_after_write = !c->keep_alive;
	c->state = CS_WRITING;
	start_write(c);
	timer_arm(c, idle_seconds(c->srv));
	if (c->srv->resp_fn != NULL)
		c->srv->resp_fn(c->srv->resp_ud, status, (ev_time() - c->req_start) * 1000.0);
	return 0;
}

void http_server_on_response(struct http_server *s, http_response_fn fn, void *ud)
{
	s->resp_fn = fn;
	s->resp_ud = ud;
}

/* ------------------------------------------------------------------ */
/* streamed responses                                                 */

int http_stream_start(struct http_conn *c, int status, const char *content_type)
{
	if (c->state != CS_HANDLING || status < 200 || status > 999 || status == 204 ||
	    status == 304)
		return -EINVAL;
	if (content_type != NULL && !value_ok(content_type))
		content_type = NULL;
	char date[64];
	time_t now = (time_t)ev_now(c->srv->loop);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	/* HTTP/1.0 has no chunked encoding: the body ends when the conn closes */
	bool chunked = !c->http10;
	size_t mark = c->wlen;
	int rc = wbuf_printf(c, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status),
	                     date);
	if (rc == 0 && content_type != NULL)
		rc = wbuf_printf(c, "Content-Type: %s\r\n", content_type);
	if (rc == 0 && chunked)
		rc = wbuf_printf(c, "Transfer-Encoding: chunked\r\n");
	if (rc == 0 && (!c->keep_alive || !chunked))
		rc = wbuf_printf(c, "Connection: close\r\n");
	if (rc == 0)
		rc = wbuf_printf(c, "X-Content-Type-Options: nosniff\r\n");
	if (rc == 0)
		rc = wbuf_append(c, c->xhdr, c->xlen);
	if (rc == 0)
		rc = wbuf_append(c, "\r\n", 2);
	if (rc < 0) {
		c->wlen = mark;
		return rc;
	}
	c->xlen = 0;
	c->chunked = chunked;
	c->close_after_write = !c->keep_alive || !chunked;
	c->state = CS_STREAMING;
	start_write(c);
	timer_arm(c, idle_seconds(c->srv));
	if (c->srv->resp_fn != NULL)
		c->srv->resp_fn(c->srv->resp_ud, status, (ev_time() - c->req_start) * 1000.0);
	return 0;
}

size_t http_stream_pending(const struct http_conn *c)
{
	return c->wlen - c->wpos;
}

/*
 * Refuses with -ENOBUFS once too much is unsent: a reader that stops reading must
 * cost us at most HTTP_STREAM_MAX_PENDING, and the caller decides what to drop.
 */
int http_stream_write(struct http_conn *c, const void *data, size_t len)
{
	if (c->state != CS_STREAMING)
		return -EINVAL;
	if (len == 0 || c->is_head)
		return 0;
	if (c->wlen - c->wpos + len > HTTP_STREAM_MAX_PENDING)
		return -ENOBUFS;
	if (c->wpos > 0 && c->wpos >= c->wlen / 2) { /* keep the buffer from creeping */
		memmove(c->wbuf, c->wbuf + c->wpos, c->wlen - c->wpos);
		c->wlen -= c->wpos;
		c->wpos = 0;
	}
	size_t mark = c->wlen;
	int rc = 0;
	if (c->chunked)
		rc = wbuf_printf(c, "%zx\r\n", len);
	if (rc == 0)
		rc = wbuf_append(c, data, len);
	if (rc == 0 && c->chunked)
		rc = wbuf_append(c, "\r\n", 2);
	if (rc < 0) {
		c->wlen = mark;
		return rc;
	}
	if (!ev_is_active(&c->wio)) {
		start_write(c);
		timer_arm(c, idle_seconds(c->srv));
	}
	return 0;
}

/*
 * If the last chunk cannot be queued, the connection closes after what is queued:
 * the client then sees a truncated body, never one that looks complete.
 */
int http_stream_end(struct http_conn *c)
{
	if (c->state != CS_STREAMING)
		return -EINVAL;
	if (c->chunked && !c->is_head && wbuf_append(c, "0\r\n\r\n", 5) < 0)
		c->close_after_write = true; /* cannot end the body: close instead */
	c->close_cb = NULL;
	c->close_ud = NULL;
	c->state = CS_WRITING;
	start_write(c);
	timer_arm(c, idle_seconds(c->srv));
	return 0;
}

/*
 * Ignored unless a handler owns the connection: once answered, the conn may be
 * reused for the next request, and an old callback must not fire for it.
 */
void http_conn_on_close(struct http_conn *c, http_close_fn cb, void *ud)
{
	if (c->state != CS_HANDLING && c->state != CS_STREAMING)
		return;
	c->close_cb = cb;
	c->close_ud = ud;
}

const char *http_conn_remote(const struct http_conn *c)
{
	return c->remote;
}
