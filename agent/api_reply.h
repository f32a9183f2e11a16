/*
 * agent/api_reply.h — what every HTTP API handler file uses: the route
 * types (a handler's signature, method bits) and the reply helpers (JSON,
 * compact or 4-space indented with ?pretty; plain text).
 *
 * The router (agent/api.c) and the handler files (agent/api_*.c) both sit
 * above this file; it depends on nothing of theirs.
 */
#ifndef RUMOR_AGENT_API_REPLY_H
#define RUMOR_AGENT_API_REPLY_H

#include <stddef.h>

struct agent;
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

/* Answer with JSON (takes a reference to j and releases it). */
void api_reply_json(struct http_conn *c, const struct http_request *req, int status,
                    struct json_t *j);
/* Answer with JSON already written as text (lib/jsonw.h): sent as it is,
 * or parsed and indented for ?pretty. */
void api_reply_json_text(struct http_conn *c, const struct http_request *req, int status,
                         const char *text, size_t len);
/* Answer with plain text. */
void api_reply_text(struct http_conn *c, int status, const char *text);

#endif
