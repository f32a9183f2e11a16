/*
 * http — the agent's HTTP/1.1 server on libev.
 *
 * Owns: listening sockets (any number, IPv4 or IPv6), the accepted
 * connections, their buffers and timers, and the parsing of request bytes.
 * It knows nothing about Consul endpoints: the owner registers one handler
 * and routes on req->method / req->path itself.
 *
 * Two layers:
 *   - a sans-I/O request parser (http_reqparser_*): bytes in, one complete
 *     request (or an HTTP error status) out.  It wraps http-parser 2.9, copies
 *     what it needs (so the caller's bytes need not stay around), enforces the
 *     header/body limits, percent-decodes the path and splits the query.
 *     Where Debian's http-parser (built without HTTP_PARSER_STRICT) is
 *     lenient about framing, the wrapper is not: it decodes chunked bodies
 *     itself, strictly, and refuses header names that are not tokens,
 *     obs-fold lines and any Transfer-Encoding but one "chunked" (see
 *     check_framing and chunk_feed in http.c).  The fuzz target drives it
 *     directly.
 *   - the driver (http_server_*, http_conn): non-blocking sockets, libev
 *     watchers, keep-alive, pipelining, timeouts, response framing.
 *
 * Data flow per connection: read -> parser -> handler(conn, req) -> the
 * handler (now or later) calls http_respond -> the response is written from
 * the loop (never inside http_respond) -> the next pipelined request is parsed.
 * One request is in flight per connection; bytes of the next one are kept
 * but not parsed until the response has been written.  While a request is
 * with the handler the socket is still watched so that a client that goes
 * away is noticed (as Go's net/http does); read-ahead is bounded.
 *
 * Lifetime of a conn as seen by the handler: the conn pointer is valid from
 * the handler call until the handler calls http_respond, or until the close
 * callback registered with http_conn_on_close fires, whichever comes first.
 * The close callback fires only for a request still unanswered (it is
 * cleared by http_respond), also from http_server_free.  A handler that
 * answers inside its own call never needs it.
 *
 * Timeouts: a request must arrive complete with its headers within
 * idle_timeout of the start of the wait (slow-loris bound, not reset by
 * trickled bytes); a body and a response write must make progress at least
 * every idle_timeout.  An unanswered (deferred) request has no timeout here:
 * its owner bounds it.  Errors the parser detects are answered
 * 400/413/417/431/501/505 with a plain-text body, then the connection is closed
 * after a short lingering drain so the client sees the answer and not a RST.
 *
 * Error convention: I/O functions return 0 or -errno; constructors return
 * NULL and write a message into the caller's `err` buffer; the parser reports
 * an HTTP status and a message.
 */
#ifndef RUMOR_AGENT_HTTP_H
#define RUMOR_AGENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_loop;
struct http_server;
struct http_conn;
struct http_reqparser;

#define HTTP_DEFAULT_MAX_HEADER_BYTES (64u * 1024u)
#define HTTP_DEFAULT_MAX_BODY_BYTES (1024u * 1024u + 4096u)
#define HTTP_DEFAULT_MAX_BUFFERED (64u * 1024u * 1024u) /* all conns' request buffers */
#define HTTP_DEFAULT_MAX_HEADERS 256u
#define HTTP_DEFAULT_MAX_CONNS 4096u
#define HTTP_DEFAULT_MAX_CONNS_PER_CLIENT 200u /* Consul's http_max_conns_per_client */
#define HTTP_DEFAULT_IDLE_TIMEOUT_MS 60000u
#define HTTP_UNLIMITED (~0u) /* max_conns_per_client: no per-address cap */

/* Limits; a field left 0 takes its HTTP_DEFAULT_* value.
 *
 * Connection caps: a connection over max_conns, or from a remote IP address
 * that already holds max_conns_per_client, is accepted, answered with a
 * fixed "503 Service Unavailable" (global) or "429 Too Many Requests" (per
 * address) and closed at once; it never gets a parser or buffers.  The
 * per-address cap is clamped to max_conns / 2 (at least 1), so that one
 * address can never hold every slot; HTTP_UNLIMITED turns it off (Consul's
 * 0).  Addresses are exact (IPv4, or IPv6 with an IPv4-mapped address
 * counted as the IPv4 one); a listener without an IP address has no
 * per-address cap. */
struct http_limits {
	size_t max_header_bytes;       /* request line + headers; over -> 431 */
	size_t max_body_bytes;         /* decoded body; over -> 413 */
	size_t max_buffered;           /* header arenas + bodies of all connections
				   * together; a request that would pass it -> 503 */
	unsigned max_headers;          /* header count; over -> 431 */
	unsigned max_conns;            /* open connections; more get 503 and close */
	unsigned max_conns_per_client; /* per remote IP; more get 429 and close */
	unsigned idle_timeout_ms;      /* see "Timeouts" above */
	/* One path whose PUT body may be larger (a snapshot restore): up to
	 * upload_max_bytes, still within max_buffered. NULL: none. */
	const char *upload_path;
	size_t upload_max_bytes;
};

struct http_kv {
	const char *name;
	const char *value; /* "" when present without a value */
};

/* A parsed request.  Every pointer is owned by the parser (or conn) and is
 * valid until the response is sent (deferred: until http_respond). */
struct http_request {
	const char *method;           /* "GET", "PUT", ... */
	const char *url;              /* request target exactly as sent */
	const char *raw_path;         /* path, still percent-encoded */
	const char *path;             /* path, percent-decoded (never contains NUL) */
	const char *raw_query;        /* text after '?', "" if none */
	const struct http_kv *params; /* query, decoded ('+' is space), in order */
	size_t nparams;
	const struct http_kv *headers; /* as sent, in order */
	size_t nheaders;
	const char *body; /* NUL-terminated for convenience; "" if none */
	size_t body_len;
	const char *remote; /* "ip:port" / "[ip6]:port"; "" from the parser */
	unsigned short http_major, http_minor;
	bool keep_alive; /* the connection stays open after the response */
};

/* Called once per request.  Respond now or later with http_respond. */
typedef void (*http_handler_fn)(struct http_conn *c, const struct http_request *req, void *ud);
typedef void (*http_close_fn)(struct http_conn *c, void *ud);

/* Fills *l with the defaults. */
void http_limits_default(struct http_limits *l);

/* ---- server ---- */

/* New server on `loop` (not owned); lim NULL means defaults.  Returns NULL
 * with a message in err on failure. */
struct http_server *http_server_new(struct ev_loop *loop, const struct http_limits *lim,
                                    http_handler_fn handler, void *ud, char *err, size_t errlen);

/* Listens on addr (IPv4 or IPv6 literal, "[v6]" accepted) and port (0 picks
 * one; the bound port goes to *bound_port if non-NULL).  May be called more
 * than once.  Returns 0 or -errno with a message in err. */
int http_server_listen(struct http_server *s, const char *addr, uint16_t port, uint16_t *bound_port,
                       char *err, size_t errlen);

/* Number of open connections. */
size_t http_server_conn_count(const struct http_server *s);

/* Counters since the server started, for metrics. */
struct http_server_stats {
	uint64_t refused_max_conns;  /* over max_conns: 503 and closed */
	uint64_t refused_per_client; /* over max_conns_per_client: 429 and closed */
	size_t conns;                /* open connections */
	size_t clients;              /* distinct remote addresses holding them */
};
void http_server_stats(const struct http_server *s, struct http_server_stats *out);

enum http_refuse_reason { HTTP_REFUSED_MAX_CONNS, HTTP_REFUSED_PER_CLIENT };

/* Called when a connection is refused at accept, at most once every
 * HTTP_REFUSE_REPORT_S seconds (the first refusal is reported at once):
 * `remote` is the "ip:port" of the refused connection that triggered the
 * call, `held` what its address holds (per client) or the open count
 * (global), `refused` the refusals since the previous call, this one
 * included.  For a rate-limited log line.  NULL fn turns it off. */
#define HTTP_REFUSE_REPORT_S 10.0
typedef void (*http_refuse_fn)(void *ud, enum http_refuse_reason why, const char *remote,
                               unsigned held, uint64_t refused);
void http_server_on_refuse(struct http_server *s, http_refuse_fn fn, void *ud);

/* Closes listeners and connections (firing pending close callbacks), stops
 * every watcher and frees everything.  NULL is a no-op. */
void http_server_free(struct http_server *s);

/* ---- request helpers ---- */

/* First query parameter named `name`: NULL if absent, "" if present without
 * a value.  Pointer owned by the request. */
const char *http_query_get(const struct http_request *r, const char *name);

/* First header named `name` (case-insensitive), or NULL. */
const char *http_header_get(const struct http_request *r, const char *name);

/* Percent-decodes src[0..len) into dst (room for len+1 bytes; dst == src is
 * allowed) and NUL-terminates it.  '+' becomes ' ' if plus_is_space.
 * Returns the decoded length, or -1 on a malformed escape or a decoded NUL. */
ssize_t http_percent_decode(char *dst, const char *src, size_t len, bool plus_is_space);

/* ---- response ---- */

/* Queues an extra response header for the pending request (copied).
 * Returns 0, -EINVAL (CR/LF/NUL or ':' in name, CR/LF in value, or no
 * request pending) or -ENOMEM. */
int http_add_header(struct http_conn *c, const char *name, const char *value);

/* Answers the pending request: status line, Content-Type (if non-NULL),
 * Content-Length (except 1xx/204/304), Connection, extra headers, body
 * (copied; not sent for HEAD).  The write happens from the loop.  After this
 * call the handler must not use c again.  Returns 0, -EINVAL if no request
 * is pending, -ENOMEM. */
int http_respond(struct http_conn *c, int status, const char *content_type, const void *body,
                 size_t len);

/* ---- streamed responses (GET /v1/agent/monitor) ----
 *
 * A handler that cannot know its body up front starts a stream instead of
 * calling http_respond: headers go out at once, then each http_stream_write
 * is sent as it comes.  HTTP/1.1 clients get Transfer-Encoding: chunked (and
 * keep-alive survives http_stream_end); HTTP/1.0 clients get a body ended by
 * closing the connection.  While the stream is open the conn stays valid
 * and owned by the handler, as a deferred request is: until http_stream_end,
 * or until the close callback (http_conn_on_close) reports that the client
 * went away or the server was freed.  An open stream has no idle timeout;
 * only a write that makes no progress for idle_timeout closes it. */

#define HTTP_STREAM_MAX_PENDING (1024u * 1024u) /* unsent bytes per stream */

/* Starts a streamed response with this status (200..999, not 204/304).
 * Queued extra headers (http_add_header) are sent.  Returns 0, -EINVAL (no
 * request pending, bad status) or -ENOMEM. */
int http_stream_start(struct http_conn *c, int status, const char *content_type);

/* Queues len bytes of body (copied).  Returns 0, -EINVAL (no open stream),
 * -ENOBUFS when more than HTTP_STREAM_MAX_PENDING bytes would be unsent (the
 * client is slow; the caller drops or counts), or -ENOMEM. */
int http_stream_write(struct http_conn *c, const void *data, size_t len);

/* Bytes queued on the connection and not yet written. */
size_t http_stream_pending(const struct http_conn *c);

/* Ends the body; afterwards c must not be used (as after http_respond).
 * Returns 0, or -EINVAL if no stream is open. */
int http_stream_end(struct http_conn *c);

/* Calls fn(ud, status, elapsed_ms) for every response the server starts
 * (handlers' http_respond / http_stream_start and its own 4xx errors), with
 * the time since the request reached the handler; for metrics.  NULL fn
 * turns it off. */
typedef void (*http_response_fn)(void *ud, int status, double elapsed_ms);
void http_server_on_response(struct http_server *s, http_response_fn fn, void *ud);

/* Registers cb to learn that the connection closed before http_respond (or
 * http_stream_end) was called (client went away, timeout, server freed).
 * After cb returns c is freed.  One callback per conn; a later call replaces
 * it; cleared by http_respond and http_stream_end. */
void http_conn_on_close(struct http_conn *c, http_close_fn cb, void *ud);

/* Remote address of the connection, "ip:port". */
const char *http_conn_remote(const struct http_conn *c);

/* Standard reason phrase for a status ("OK", "Not Found"), or "Unknown". */
const char *http_status_text(int status);

/* ---- sans-I/O request parser ---- */

enum http_parse_result {
	HTTP_PARSE_MORE = 0, /* all bytes consumed; need more */
	HTTP_PARSE_DONE,     /* one request complete; see http_reqparser_request */
	HTTP_PARSE_ERROR,    /* see http_reqparser_error; connection must close */
};

/* New parser with the given limits (NULL = defaults); NULL on ENOMEM. */
struct http_reqparser *http_reqparser_new(const struct http_limits *lim);

/* Frees p; NULL is a no-op. */
void http_reqparser_free(struct http_reqparser *p);
/* Count this parser's header and body buffers in *pool (the server's total,
 * bounded by lim.max_buffered: a request that would pass it gets 503). */
void http_reqparser_set_pool(struct http_reqparser *p, size_t *pool);

/* Feeds len bytes; *consumed says how many were used (fewer than len only
 * after DONE, when the rest belong to the next request, or after ERROR).
 * len == 0 signals end of input.  After DONE call http_reqparser_reset before
 * feeding more; after ERROR the parser stays in error. */
enum http_parse_result http_reqparser_feed(struct http_reqparser *p, const char *data, size_t len,
                                           size_t *consumed);

/* The complete request after DONE (NULL otherwise); owned by p, valid until
 * the next reset. */
const struct http_request *http_reqparser_request(const struct http_reqparser *p);

/* True once headers of the current request announced "Expect: 100-continue"
 * and a body is still to come (the driver answers "100 Continue" once). */
bool http_reqparser_wants_continue(const struct http_reqparser *p);

/* True while a request has started but is not complete. */
bool http_reqparser_in_request(const struct http_reqparser *p);

/* True once the current request's headers are complete. */
bool http_reqparser_headers_done(const struct http_reqparser *p);

/* After ERROR: the HTTP status to answer (400, 413, 417, 431, 501, 505) and a
 * plain-text message (owned by p). */
int http_reqparser_error(const struct http_reqparser *p, const char **msg);

/* Forgets the current request (keeps buffers when small) for the next one. */
void http_reqparser_reset(struct http_reqparser *p);

#endif
