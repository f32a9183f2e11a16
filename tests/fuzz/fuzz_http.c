/*
 * fuzz_http.c — drives the sans-I/O HTTP request parser with arbitrary bytes.
 *
 * Input layout: byte 0 picks the limits (small ones reach the 413/431 paths)
 * and byte 1 the split size, so requests arrive in fragments as from a
 * socket; the rest is the byte stream of one connection, possibly holding
 * several pipelined requests.  Each complete request is checked (strings are
 * NUL-terminated, lookups work, lengths agree) before the parser is reset for
 * the next.  The raw bytes also go through http_percent_decode both ways.
 * The stream is parsed twice, in fragments and whole: the requests both
 * runs complete must have the same bodies (the chunked decoder must not
 * depend on where reads split a body).
 */
#include "agent/http/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_request(const struct http_request *r)
{
	volatile size_t sink = 0;
	sink += strlen(r->method) + strlen(r->url) + strlen(r->raw_path) + strlen(r->path) +
	        strlen(r->raw_query) + strlen(r->remote);
	if (strlen(r->path) > strlen(r->raw_path) || r->path[0] == '\0')
		abort();
	for (size_t i = 0; i < r->nparams; i++) {
		sink += strlen(r->params[i].name) + strlen(r->params[i].value);
		if (http_query_get(r, r->params[i].name) == NULL)
			abort();
	}
	for (size_t i = 0; i < r->nheaders; i++) {
		sink += strlen(r->headers[i].name) + strlen(r->headers[i].value);
		if (http_header_get(r, r->headers[i].name) == NULL)
			abort();
	}
	if (r->body[r->body_len] != '\0')
		abort();
	sink += (http_query_get(r, "recurse") != NULL) + (http_header_get(r, "host") != NULL);
	(void)sink;
}

#define MAX_REQUESTS 64

/* What a completed request's body was, to compare two runs. */
struct body_sum {
	size_t len;
	uint64_t hash;
};

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

/* Parses in[0..len) in pieces of `step` bytes; returns the number of
 * requests completed, their bodies summed into sums. */
static int parse_stream(const struct http_limits *lim, const char *in, size_t len, size_t step,
                        struct body_sum *sums)
{
	struct http_reqparser *p = http_reqparser_new(lim);
	if (p == NULL)
		return 0;
	size_t off = 0;
	int requests = 0;
	while (off < len && requests < MAX_REQUESTS) {
		size_t n = len - off < step ? len - off : step;
		size_t used = 0;
		enum http_parse_result r = http_reqparser_feed(p, in + off, n, &used);
		if (used > n)
			abort();
		off += used;
		if (r == HTTP_PARSE_ERROR) {
			const char *msg = NULL;
			int st = http_reqparser_error(p, &msg);
			if (st < 400 || st > 599 || msg == NULL || msg[0] == '\0')
				abort();
			break;
		}
		if (r == HTTP_PARSE_DONE) {
			const struct http_request *req = http_reqparser_request(p);
			if (req == NULL)
				abort();
			check_request(req);
			sums[requests].len = req->body_len;
			sums[requests].hash = fnv1a(req->body, req->body_len);
			http_reqparser_reset(p);
			requests++;
			continue;
		}
		(void)http_reqparser_wants_continue(p);
		if (used != n)
			abort();
	}
	if (off == len) {
		size_t used;
		(void)http_reqparser_feed(p, NULL, 0, &used); /* end of input */
	}
	http_reqparser_free(p);
	return requests;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct http_limits lim = {0};
	if (data[0] & 1) {
		lim.max_header_bytes = 64 + (data[0] & 0x7e) * 8u;
		lim.max_body_bytes = 1 + (data[0] >> 4) * 16u;
		lim.max_headers = 1 + (data[0] >> 5);
	}
	size_t step = data[1] ? data[1] : size;
	const char *in = (const char *)data + 2;
	size_t len = size - 2;

	/* percent decoding over the raw bytes, with and without '+' */
	char *tmp = malloc(len + 1);
	if (tmp == NULL)
		return 0;
	ssize_t d = http_percent_decode(tmp, in, len, (data[0] & 2) != 0);
	if (d > (ssize_t)len || (d >= 0 && tmp[d] != '\0'))
		abort();
	free(tmp);

	static struct body_sum split[MAX_REQUESTS], whole[MAX_REQUESTS];
	int ns = parse_stream(&lim, in, len, step, split);
	int nw = parse_stream(&lim, in, len, len ? len : 1, whole);
	/* a request may complete in one run only (the header limit is checked
	 * between reads too), but those both complete must agree */
	for (int i = 0; i < ns && i < nw; i++)
		if (split[i].len != whole[i].len || split[i].hash != whole[i].hash)
			abort();
	return 0;
}
