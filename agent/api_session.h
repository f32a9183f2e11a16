/*
 * agent/api_session.h — Consul's /v1/session endpoints (issue 17):
 * create, destroy/:id, renew/:id, info/:id, node/:node, list.
 *
 * Owns: the HTTP side of sessions — decoding requests, choosing the read
 * mode, answering in Consul's shapes and words. What a session is and how
 * the leader ends one is agent/sessions.h; the write path to the leader is
 * agent/server.h. Without servers every endpoint answers 501.
 */
#ifndef RUMOR_AGENT_API_SESSION_H
#define RUMOR_AGENT_API_SESSION_H

#include <stdbool.h>

struct agent;
struct http_conn;
struct http_request;

void api_session_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest);
/* Without servers: answers 501 (sessions need servers) and returns true. */
bool api_session_need_servers(struct agent *a, struct http_conn *c);

#endif
