/*
 * agent/api.h — the agent's Consul-compatible HTTP API:
 * routing and the /v1/agent and /v1/status endpoints.
 *
 * Owns: the HTTP server instance, the route table, the JSON helpers every
 * endpoint uses (compact, or 4-space indented with ?pretty), and deferred
 * requests (joins) until they are answered or their client goes away.
 *
 * A route is a (method set, path, prefix?) row and a handler; other
 * modules add rows to the table in api.c. Unknown paths answer 404, a known
 * path with a method it does not take answers 405, as Consul does.
 */
#ifndef RUMOR_AGENT_API_H
#define RUMOR_AGENT_API_H

#include <stddef.h>

struct agent;
struct http_server;
struct http_conn;
struct http_request;
struct json_t;

/*
 * A route: handlers live in their module's file (agent/api_<area>.c) and
 * get a row in the table in api.c. `rest` is what follows a prefix path
 * ("" for exact paths). Methods are a mask of API_M_*; HEAD counts as GET.
 */
enum { API_M_GET = 1, API_M_PUT = 2, API_M_POST = 4, API_M_DELETE = 8 };
typedef void (*api_route_fn)(struct agent *a, struct http_conn *c, const struct http_request *req,
			     const char *rest);
struct api_route {
	const char *path;
	int prefix;
	int methods;
	api_route_fn fn;
};

/* Listen on cfg.client_addr:cfg.http_port; NULL with err on failure. */
struct http_server *api_start(struct agent *a, char *err, size_t errlen);
void api_stop(struct agent *a);

/* Answer with JSON (takes a reference to j and releases it). */
void api_reply_json(struct http_conn *c, const struct http_request *req, int status,
		    struct json_t *j);
/* Answer with plain text. */
void api_reply_text(struct http_conn *c, int status, const char *text);

#endif
