/*
 * agent/sessions.h — Consul's sessions on the server tier (issue 17).
 *
 * Owns: what a session is (the JSON document stored, through Raft, as the
 * record KV_SESSION_PREFIX<ID>, and its rendering for the /v1/session endpoints), the
 * checks a new session must pass, and on the servers the state that is
 * not replicated: the TTL timers the leader keeps (Consul's: a session
 * dies 2 x TTL after its last renewal; a new leader starts every timer
 * afresh) and the lock-delay table every server keeps (a key released by
 * an ending session cannot be acquired again for the session's LockDelay;
 * Consul's table is also per server and in memory).
 *
 * The leader's sweep (sessions_leader_tick, once a second) ends a session
 * when its node is gone from the catalog or has failed (serfHealth), when
 * one of its checks is critical or no longer registered, or when its TTL
 * ran out: it writes one KV_OP_SESSION_END through Raft (kv/engine.h),
 * which releases or deletes the session's locks as its Behavior says and
 * deletes its record. A destroy from the API is the same write.
 *
 * The rules, and what each failure does, are in docs/SESSIONS.md.
 */
#ifndef RUMOR_AGENT_SESSIONS_H
#define RUMOR_AGENT_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/engine.h"

struct agent;
struct sessions;
struct json_t;

#define SESSION_ID_LEN 36
#define SESSION_TTL_MIN_MS 10000LL
#define SESSION_TTL_MAX_MS (24LL * 3600 * 1000)
#define SESSION_TTL_MULTIPLIER 2
#define SESSION_LOCK_DELAY_DEFAULT_MS 15000LL
#define SESSION_LOCK_DELAY_MAX_MS 60000LL
#define SESSION_CHECKS_MAX 32

enum session_behavior { SESSION_RELEASE = 0, SESSION_DELETE = 1 };

/* One session, as stored. Strings are NUL-terminated copies. */
struct session {
	char id[SESSION_ID_LEN + 1];
	char name[256];
	char node[KV_NODE_MAX + 1];
	char node_checks[SESSION_CHECKS_MAX][128];
	size_t n_node_checks;
	char service_checks[SESSION_CHECKS_MAX][128];
	size_t n_service_checks;
	int64_t lock_delay_ms;
	int64_t ttl_ms; /* 0: none */
	enum session_behavior behavior;
};

/* A create request's body (Consul's fields, matched case-insensitively as
 * Go does; python-consul sends them in lower case) into s, with Consul's
 * defaults (node: self_node; no checks given: serfHealth; LockDelay 15 s;
 * release). 0; -1 with a message for a 400 in err (the body does not
 * decode); -2 with one for a 500 (a TTL out of range, an unknown Behavior:
 * Consul's decoder takes them, its Session.Apply refuses them, and clients
 * go by that status: Patroni handles only a 500 "Invalid Session TTL" as a
 * TTL under the servers' minimum). */
int session_parse_create(const char *body, size_t len, const char *self_node, struct session *s,
                         char *err, size_t errlen);
/* A fresh random (v4) ID into s->id. */
void session_new_id(struct session *s);
/* The stored document (a new string: free it) / back from it (0 or -1). */
char *session_encode(const struct session *s);
int session_decode(const uint8_t *p, size_t len, struct session *s);
/* Consul's JSON object for s with its indexes (new reference). */
struct json_t *session_json(const struct session *s, uint64_t create_index, uint64_t modify_index);
/* The record's key, KV_SESSION_PREFIX<id>, into buf (room for 64). */
size_t session_key(const char *id, char *buf, size_t cap);
/* Can this session be created now, as this agent's catalog sees it (the
 * node registered; each check registered and not critical)? 0, or -1
 * with Consul's message for a 500 in err. The leader's sweep judges it
 * again once the session exists. */
int session_check_health(struct agent *a, const struct session *s, char *err, size_t errlen);
/* The op that ends a session (its locks released or deleted as Behavior
 * says, its record deleted; index carries the lock delay in ms). keybuf
 * holds the key (room for 64) for as long as op is used. */
void session_end_op(const struct session *s, char *keybuf, struct kv_op *op);

/* ----------------------------------------------------- server state */

struct sessions *sessions_new(struct agent *a);
void sessions_free(struct sessions *ss);
/* Raft applies an entry: call for each KV_OP_SESSION_END op before it is
 * staged, so the keys it releases get their lock delay (every server). */
void sessions_before_end(struct sessions *ss, const struct kv_op *op);
/* ms before key may be acquired again (0: now). */
int64_t sessions_lock_delay_left(const struct sessions *ss, const char *key, size_t key_len);
/* Called every server tick; leader: this server leads and may write. */
void sessions_leader_tick(struct sessions *ss, bool leader);
/* The leader renews a session: 1 (its TTL timer restarted), 0 no such
 * session. */
int sessions_renew(struct sessions *ss, const char *id, size_t id_len);
/* Sessions the leader ended so far (for `rumor info`). */
uint64_t sessions_invalidated(const struct sessions *ss);

#endif
