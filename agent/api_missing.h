/*
 * agent/api_missing.h — the router's last word: what a path that matched
 * no route is answered.
 *
 * Owns: the table of Consul's API prefixes that rumor does not implement
 * (ACLs, Connect, config entries, prepared queries, coordinates, ...). A
 * path under one of them answers 501 with a text naming the missing
 * feature; any other path answers Consul's 404 "404 page not found". Both
 * carry X-Consul-Index, X-Consul-KnownLeader and X-Consul-LastContact, as
 * every read does: python-consul reads X-Consul-Index from any answer it
 * does not turn into an exception (a 404 among them), and would fail with
 * a KeyError without it.
 *
 * The router (agent/api.c) calls api_missing_reply() only after every real
 * route was tried, so a route added to its table (for example a path
 * under /v1/session/) takes precedence over the row here without any
 * change to this file; the row can then be removed.
 */
#ifndef RUMOR_AGENT_API_MISSING_H
#define RUMOR_AGENT_API_MISSING_H

struct agent;
struct http_conn;
struct http_request;

/* The feature rumor lacks at path (NULL: not one of Consul's paths). */
const char *api_missing_feature(const char *path);

/* Answers a request no route took: 501 naming the feature, or 404. */
void api_missing_reply(struct agent *a, struct http_conn *c, const struct http_request *req);

#endif
