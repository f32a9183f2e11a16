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
 * Event IDs: one event has one ID on every agent: a Consul envelope's
 * (serf name "consul:event:<name>"), else derived from (name, lamport time,
 * payload) — see api_event.c's opening comment.
 *
 * Endpoints (rows in agent/api.c):
 *   PUT  /v1/event/fire/<name>[?coalesce=false]   body = payload
 *   GET  /v1/event/list[?name=<name>&index=N&wait=D]   blocking as Consul's:
 *        parked while the index (from the last listed event's ID) is N
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
/* Indexes stay within 53 bits: a JavaScript number holds them exactly. */
#define API_EVENT_INDEX_MASK ((UINT64_C(1) << 53) - 1)

/* Consul's user-event envelope (agent/user_event.go UserEvent, msgpack);
 * the views point into the decoded buffer. */
struct api_event_envelope {
	char id[37];
	const uint8_t *name, *payload, *filter[3]; /* filter: node, service, tag */
	size_t name_len, payload_len, filter_len[3];
	int version;
};

/* Decodes an envelope: MP_OK, or MP_BAD with mp_error() naming the field. */
int api_event_decode_envelope(const uint8_t *buf, size_t len, struct api_event_envelope *e);
/* The ID every agent gives a plain serf event: a UUID (version 8) hashed
 * from name, lamport time and payload, written into out (NUL-terminated). */
void api_event_derive_id(const char *name, uint64_t ltime, const uint8_t *payload, size_t len,
                         char out[37]);
/* Consul's uuidToUint64 (XOR of the UUID's two 64-bit halves) within
 * API_EVENT_INDEX_MASK; 1 when that is 0 or id is not a UUID. */
uint64_t api_event_id_index(const char *id);

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
