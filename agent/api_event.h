/*
 * agent/api_event.h — the HTTP side of the serf layer: user events,
 * queries, tags and the keyring, plus the agent's answers to serf's
 * internal queries (_serf_ping, _serf_list-keys, _serf_install-key,
 * _serf_use-key, _serf_remove-key).
 *
 * Owns: the list of recent user events (/v1/event/list, the last
 * API_EVENT_KEEP), the queries started through the API and the HTTP
 * requests waiting for them (answered when the query times out, or earlier
 * for key operations once every alive member answered), and their state
 * (struct api_event, hung on struct agent).
 *
 * Endpoints (rows in agent/api.c):
 *   PUT  /v1/event/fire/<name>[?coalesce=false]   body = payload
 *   GET  /v1/event/list[?name=<name>]
 *   PUT  /v1/event/query/<name>[?timeout=5s&node=N&tag=K=REGEX&ack]
 *        -> {"Acks": [...], "Responses": {"node": "output"}}
 *   PUT  /v1/agent/tags   body {"Set": {"k": "v"}, "Delete": ["k"]}
 *   GET|POST|PUT|DELETE /v1/operator/keyring   (list|install|use|remove,
 *        body {"Key": "<base64>"}), cluster-wide through serf's key queries.
 */
#ifndef RUMOR_AGENT_API_EVENT_H
#define RUMOR_AGENT_API_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent;
struct http_conn;
struct http_request;
struct serf_query_in;

#define API_EVENT_KEEP 256

/* A user event reached this agent (for /v1/event/list). */
void api_event_record(struct agent *a, uint64_t ltime, const char *name, const uint8_t *payload,
                      size_t len);
/* A query whose name starts with "_serf_": answer it as serf does. */
void api_event_internal_query(struct agent *a, const struct serf_query_in *q);
/* An ack or a response to a query this agent started. */
void api_event_query_response(struct agent *a, uint32_t id, const char *from, bool ack,
                              const uint8_t *payload, size_t len);
/* Frees the state (pending requests are dropped with the HTTP server). */
void api_event_free(struct agent *a);

void api_event_fire(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest);
void api_event_list(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest);
void api_event_query(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest);
void api_event_tags(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest);
void api_event_keyring(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest);

#endif
