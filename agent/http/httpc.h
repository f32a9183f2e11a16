/*
 * httpc — a small blocking HTTP/1.1 client for the CLI.
 *
 * Owns: one TCP connection per request (IPv4 or IPv6, "host:port"), sent with
 * `Connection: close`, read until the response is complete.  Responses are
 * parsed by http-parser (Content-Length, chunked, or read-until-close bodies);
 * the whole request — resolve, connect, write, read — runs under one deadline
 * (HTTPC_DEFAULT_TIMEOUT_MS unless the caller says otherwise).  Nothing here
 * touches libev: the CLI is a short-lived process that waits for one answer.
 *
 * Error convention: functions return 0 on success or -1 on failure and write
 * a Go-style message into the caller's `err` buffer, e.g.
 * "dial tcp 127.0.0.1:8500: connection refused".  On failure the response's
 * `error` and `sys_errno` fields say what kind of failure it was, so a caller
 * can word its own message; every pointer in it is NULL.  A non-2xx status is
 * not a failure of httpc: it returns 0 and the caller looks at `status`.
 */
#ifndef RUMOR_AGENT_HTTPC_H
#define RUMOR_AGENT_HTTPC_H

#include <stddef.h>

#define HTTPC_DEFAULT_TIMEOUT_MS 10000
#define HTTPC_DEFAULT_MAX_BODY (64u * 1024u * 1024u)

enum httpc_error {
	HTTPC_OK = 0,
	HTTPC_E_ADDRESS,  /* the "host:port" string is malformed */
	HTTPC_E_RESOLVE,  /* getaddrinfo failed */
	HTTPC_E_CONNECT,  /* connect failed; sys_errno says why */
	HTTPC_E_TIMEOUT,  /* the deadline passed */
	HTTPC_E_IO,       /* send/recv failed or the peer closed early */
	HTTPC_E_PROTOCOL, /* the peer's bytes are not a valid HTTP response */
	HTTPC_E_TOO_BIG,  /* the body exceeds the configured maximum */
	HTTPC_E_REQUEST,  /* the request itself is invalid (CR/LF in a field) */
	HTTPC_E_NOMEM,
};

struct httpc_header {
	char *name;
	char *value;
};

struct httpc_response {
	int status;      /* e.g. 200 */
	char *reason;    /* reason phrase, NUL-terminated */
	char *body;      /* always NUL-terminated after success */
	size_t body_len; /* bytes in body, not counting the NUL */
	struct httpc_header *headers;
	size_t nheaders;
	enum httpc_error error; /* HTTPC_OK after success */
	int sys_errno;          /* errno behind a CONNECT/IO error, else 0 */
};

struct httpc_options {
	int timeout_ms;             /* whole request; <= 0 means the default */
	const char *const *headers; /* extra "Name: value" lines, NULL-ended */
	size_t max_body;            /* 0 means HTTPC_DEFAULT_MAX_BODY */
};

/* Sends one request to addr ("host:port", "[v6]:port"; port 80 if absent)
 * with default options.  Fills *resp (caller frees with httpc_response_free,
 * also after a failure); returns 0 or -1 with a message in err. */
int httpc_request(const char *addr, const char *method, const char *path_and_query,
                  const void *body, size_t body_len, struct httpc_response *resp, char *err,
                  size_t errlen);

/* As httpc_request, with options (NULL means all defaults). */
int httpc_request_opts(const char *addr, const char *method, const char *path_and_query,
                       const void *body, size_t body_len, const struct httpc_options *opts,
                       struct httpc_response *resp, char *err, size_t errlen);

/* Releases everything resp owns and zeroes it; safe on a zeroed struct. */
void httpc_response_free(struct httpc_response *resp);

/* Value of the first header named `name` (case-insensitive), or NULL.
 * The pointer is owned by resp. */
const char *httpc_response_header(const struct httpc_response *resp, const char *name);

/* Splits "host:port", "[v6]:port", "host" or a bare IPv6 literal into host
 * (brackets removed) and port ("80" if absent).  Returns 0, or -1 if the
 * string is malformed or a part does not fit its buffer. */
int httpc_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

/* Percent-encoding flags for httpc_escape. */
#define HTTPC_ESCAPE_KEEP_SLASH 0x1u /* leave '/' alone (KV key paths) */
#define HTTPC_ESCAPE_SEGMENT                                                                       \
	0x2u /* leave ':' and '@' alone (RFC 3986
                                      * pchar), for path segments */

/* Percent-encodes `in` into out (everything but A-Z a-z 0-9 - . _ ~ and what
 * flags keep).  Like snprintf: returns the length the full result needs,
 * writes at most outlen-1 bytes plus a NUL when outlen > 0. */
size_t httpc_escape(char *out, size_t outlen, const char *in, unsigned flags);

#endif
