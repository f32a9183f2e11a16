/*
 * agent/api.h — the agent's Consul-compatible HTTP API:
 * routing and the /v1/agent and /v1/status endpoints.
 *
 * Owns: the HTTP server instance, the route table and dispatch, and
 * deferred requests (joins) until they are answered or their client goes
 * away. The handlers' toolbox (replies, route types) is agent/api_reply.h,
 * below both this router and the handler files, so they do not depend on
 * each other in a circle.
 *
 * A route is a (method set, path, prefix?) row and a handler; other
 * modules add rows to the table in api.c. A path no row takes is answered
 * by agent/api_missing.h (501 naming the feature for Consul's endpoints
 * rumor lacks, 404 otherwise, both with the X-Consul-* headers); a known
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

/* Listen on cfg.client_addr:cfg.http_port; NULL with err on failure. */
struct http_server *api_start(struct agent *a, char *err, size_t errlen);
void api_stop(struct agent *a);

#endif
