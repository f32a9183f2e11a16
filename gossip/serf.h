/*
 * gossip/serf.h — Serf's layer on top of memberlist, sans-I/O.
 *
 * Owns: the three lamport clocks (member status, user events, queries), the
 * serf status of every member (alive, leaving, left, failed) driven by the
 * SWIM core's events plus join/leave intents, the user-event and query
 * de-duplication buffers (serf's EventBuffer/QueryBuffer rings of 64 lamport
 * slots), the push-pull user state (messagePushPull), the queries this node
 * originated and their acks/responses, and the codecs of serf's messages
 * (serf/messages.go, Debian serf 0.8.2): msgpack as Go's old codec writes it
 * (structs as maps keyed by field name, strings and []byte as raw).
 *
 * Data flow: the agent feeds it every memberlist user message whose first
 * byte is a serf type (serf_handle_msg), every SWIM membership event
 * (serf_member_event, which answers with the serf event to report), the
 * remote push-pull user state (serf_merge_state) and asks it for ours
 * (serf_local_state_new). Output goes through struct serf_io: messages to
 * gossip (broadcast), messages to one address (send_to: query acks and
 * responses), and deliveries (user events, queries, query responses).
 *
 * Departures from serf: no coalescing here (the agent's event dispatcher
 * coalesces user events for handlers); query relaying (RelayFactor) is
 * honoured when receiving a relay message, but this node never asks others
 * to relay its responses; name-conflict queries are not sent.
 *
 * Error convention: encoders return bytes written or -1 (does not fit);
 * decoders return ML_OK/ML_BAD with serf_wire_error() naming the field
 * (gossip/wire.h's convention: the codes and the per-thread text are
 * lib/mp.h's, so serf_wire_error() == ml_wire_error() == mp_error());
 * API calls that can fail return -1 and write a message into err.
 */
#ifndef RUMOR_GOSSIP_SERF_H
#define RUMOR_GOSSIP_SERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/swim.h"
#include "gossip/tags.h"
#include "gossip/wire.h"

enum serf_msg_type {
	SERF_MSG_LEAVE = 0,
	SERF_MSG_JOIN = 1,
	SERF_MSG_PUSH_PULL = 2,
	SERF_MSG_USER_EVENT = 3,
	SERF_MSG_QUERY = 4,
	SERF_MSG_QUERY_RESPONSE = 5,
	SERF_MSG_CONFLICT_RESPONSE = 6,
	SERF_MSG_KEY_REQUEST = 7,
	SERF_MSG_KEY_RESPONSE = 8,
	SERF_MSG_RELAY = 9,
};

#define SERF_QUERY_FLAG_ACK 1u
#define SERF_QUERY_FLAG_NO_BROADCAST 2u

#define SERF_EVENT_BUFFER 64           /* serf EventBuffer */
#define SERF_QUERY_BUFFER 64           /* serf QueryBuffer */
#define SERF_USER_EVENT_SIZE_LIMIT 512 /* serf agent default */
#define SERF_QUERY_SIZE_LIMIT 1024     /* serf QuerySizeLimit */
#define SERF_QUERY_RESPONSE_SIZE_LIMIT 1024
#define SERF_FILTERS_MAX 16

enum serf_status {
	SERF_STATUS_NONE = 0,
	SERF_STATUS_ALIVE = 1,
	SERF_STATUS_LEAVING = 2,
	SERF_STATUS_LEFT = 3,
	SERF_STATUS_FAILED = 4,
};

/* Serf's event names, as SERF_EVENT carries them. */
enum serf_event {
	SERF_EV_NONE = 0,
	SERF_EV_MEMBER_JOIN,
	SERF_EV_MEMBER_LEAVE,
	SERF_EV_MEMBER_FAILED,
	SERF_EV_MEMBER_UPDATE,
	SERF_EV_MEMBER_REAP,
	SERF_EV_USER,
	SERF_EV_QUERY,
};

/* ---------------------------------------------------------- wire views */

struct serf_msg_join {
	uint64_t ltime;
	char node[ML_NAME_MAX + 1];
};

struct serf_msg_leave {
	uint64_t ltime;
	char node[ML_NAME_MAX + 1];
	bool prune;
};

/* Views point into the decoded buffer. */
struct serf_msg_user_event {
	uint64_t ltime;
	const char *name; /* not NUL-terminated: name_len */
	size_t name_len;
	const uint8_t *payload;
	size_t payload_len;
	bool cc;
};

struct serf_msg_query {
	uint64_t ltime;
	uint32_t id;
	struct ml_addr addr; /* Addr + Port */
	char source_node[ML_NAME_MAX + 1];
	struct ml_slice filters[SERF_FILTERS_MAX];
	int nfilters;
	uint32_t flags;
	uint8_t relay_factor;
	int64_t timeout_ns;
	const char *name;
	size_t name_len;
	const uint8_t *payload;
	size_t payload_len;
};

struct serf_msg_query_response {
	uint64_t ltime;
	uint32_t id;
	char from[ML_NAME_MAX + 1];
	uint32_t flags;
	const uint8_t *payload;
	size_t payload_len;
};

/* Text of the last decode error ("query: Name: not a string"); the one
 * per-thread buffer of lib/mp.h, as ml_wire_error(). */
const char *serf_wire_error(void);

/* Encoders write the serf type byte then the msgpack body. */
int serf_encode_join(uint8_t *buf, size_t cap, const struct serf_msg_join *m);
int serf_encode_leave(uint8_t *buf, size_t cap, const struct serf_msg_leave *m);
int serf_encode_user_event(uint8_t *buf, size_t cap, const struct serf_msg_user_event *m);
int serf_encode_query(uint8_t *buf, size_t cap, const struct serf_msg_query *m);
int serf_encode_query_response(uint8_t *buf, size_t cap, const struct serf_msg_query_response *m);
/* A node filter (type 0 + msgpack array of names) or tag filter (type 1 +
 * {Tag, Expr}). */
int serf_encode_filter_nodes(uint8_t *buf, size_t cap, const char *const *nodes, size_t n);
int serf_encode_filter_tag(uint8_t *buf, size_t cap, const char *tag, const char *expr);

/* Serf's internal key queries (_serf_install-key etc.): the request payload
 * is [7]{Key: bytes}; the response payload [8]{Result, Message, Keys,
 * PrimaryKey}. Keys are base64 strings in the response. */
struct serf_key_response {
	bool result;
	char message[256];
	char keys[16][64];
	int nkeys;
	char primary[64];
};
int serf_encode_key_request(uint8_t *buf, size_t cap, const uint8_t *key, size_t len);
/* Whole payload (type byte included); *key points into p. */
int serf_decode_key_request(const uint8_t *p, size_t len, const uint8_t **key, size_t *key_len);
int serf_encode_key_response(uint8_t *buf, size_t cap, const struct serf_key_response *r);
int serf_decode_key_response(const uint8_t *p, size_t len, struct serf_key_response *r);

/* Decoders take the body after the serf type byte. */
int serf_decode_join(const uint8_t *p, size_t len, struct serf_msg_join *m);
int serf_decode_leave(const uint8_t *p, size_t len, struct serf_msg_leave *m);
int serf_decode_user_event(const uint8_t *p, size_t len, struct serf_msg_user_event *m);
int serf_decode_query(const uint8_t *p, size_t len, struct serf_msg_query *m);
int serf_decode_query_response(const uint8_t *p, size_t len, struct serf_msg_query_response *m);

/* -------------------------------------------------------------- the layer */

struct serf;

/* A query delivered to this node (views valid during the callback only). */
struct serf_query_in {
	uint64_t ltime;
	uint32_t id;
	struct ml_addr from; /* where responses go */
	const char *source_node;
	const char *name; /* NUL-terminated copy */
	const uint8_t *payload;
	size_t payload_len;
	int64_t deadline; /* ms on the caller's clock */
};

struct serf_io {
	void *ctx;
	/* Queue a serf message for gossip (memberlist user broadcast). */
	void (*broadcast)(void *ctx, const uint8_t *msg, size_t len);
	/* Send a serf message to one address as a memberlist user packet. */
	void (*send_to)(void *ctx, const struct ml_addr *to, const uint8_t *msg, size_t len);
	/* Optional deliveries. name is NUL-terminated. */
	void (*user_event)(void *ctx, uint64_t ltime, const char *name, const uint8_t *payload,
	                   size_t len, bool coalesce);
	void (*query)(void *ctx, const struct serf_query_in *q);
	/* An ack (ack true) or response to a query this node started. */
	void (*query_response)(void *ctx, uint32_t query_id, const char *from, bool ack,
	                       const uint8_t *payload, size_t len);
};

/* Create the layer for the node `self`. Returns NULL only on a bad name. */
struct serf *serf_new(const char *self, const struct serf_io *io);
void serf_free(struct serf *s);

/* Our tags, used by query tag filters (copied). */
void serf_set_tags(struct serf *s, const struct tag *tags, size_t n);

/* A memberlist user message whose first byte is a serf type (0-31). */
void serf_handle_msg(struct serf *s, int64_t now, const uint8_t *p, size_t len);

/* A SWIM membership event about `name`; returns the serf event it means
 * (SERF_EV_NONE when serf would not report one, e.g. suspect). */
enum serf_event serf_member_event(struct serf *s, enum swim_event_type type, const char *name);

/* The serf status of a member (SERF_STATUS_NONE if unknown). */
enum serf_status serf_member_status(const struct serf *s, const char *name);

/* Push-pull user state: ours (malloc'd, *len set), and the remote one. */
uint8_t *serf_local_state_new(struct serf *s, size_t *len);
void serf_merge_state(struct serf *s, const uint8_t *p, size_t len, bool join);

/* Broadcast a join intent for ourselves (after start or a join). */
void serf_broadcast_join(struct serf *s);
/* Broadcast our leave intent (before the memberlist leave). */
void serf_broadcast_leave(struct serf *s);
/* Force-leave `node` (serf's RemoveFailedNode): apply and gossip a leave
 * intent for it; failed -> left, alive -> leaving until it refutes. */
void serf_force_leave(struct serf *s, const char *node, bool prune);
/* Mark that we are leaving (stops refuting our own leave intents). */
void serf_set_leaving(struct serf *s);

/* Fire a user event: 0, or -1 with err (size limit). */
int serf_user_event(struct serf *s, const char *name, const uint8_t *payload, size_t len,
                    bool coalesce, char *err, size_t errlen);

struct serf_query_params {
	const char *name;
	const uint8_t *payload;
	size_t payload_len;
	const char *const *filter_nodes;
	size_t n_filter_nodes;
	const char *filter_tag_key[SERF_FILTERS_MAX]; /* tag=regex pairs */
	const char *filter_tag_expr[SERF_FILTERS_MAX];
	size_t n_filter_tags;
	bool request_ack;
	int64_t timeout_ms;
	struct ml_addr self_addr; /* where responses come back */
};

/* Start a query; returns its id (> 0 as uint32 in *id), 0 on success, -1 with err. */
int serf_query(struct serf *s, int64_t now, const struct serf_query_params *p, uint32_t *id,
               char *err, size_t errlen);
/* Stop collecting responses for a query (its timeout passed). */
void serf_query_close(struct serf *s, uint32_t id);
/* Answer a delivered query: 0, or -1 with err (too large). */
int serf_query_respond(struct serf *s, const struct serf_query_in *q, const uint8_t *payload,
                       size_t len, char *err, size_t errlen);

/* serf's DefaultQueryTimeout: gossip_interval * 16 * ceil(log10(n+1)). */
int64_t serf_default_query_timeout_ms(int64_t gossip_interval_ms, size_t n);

uint64_t serf_clock(const struct serf *s);
uint64_t serf_event_clock(const struct serf *s);
uint64_t serf_query_clock(const struct serf *s);
/* Restore clocks from a snapshot (witness: never goes backwards). */
void serf_witness_clocks(struct serf *s, uint64_t clock, uint64_t event_clock,
                         uint64_t query_clock);

const char *serf_event_name(enum serf_event ev);
const char *serf_status_name(enum serf_status st);

struct serf_stats {
	uint64_t msgs_in, bad_msgs, events_delivered, events_dup, queries_delivered, queries_dup,
	        intents;
};
const struct serf_stats *serf_stats(const struct serf *s);

#endif
