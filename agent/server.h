/*
 * agent/server.h — the server tier (issue 16): on a server, one libraft
 * group on the agent's own loop (server/raft_io.h) whose state machine is
 * the KV store; on every agent, the CP write path to it.
 *
 * Owns: the Raft instance and its store in <data_dir>/raft (servers), the
 * server RPC endpoint (agent/server_rpc.h) on the sync port, the view of
 * which members are servers (gossip tags role=consul, expect, port, raft),
 * bootstrap, membership changes (autopilot), the FSM (Raft entries applied
 * to kv/ with pinned versions, snapshots of the replica) and the hook that
 * sends kv_write() to the leader once the cluster has servers.
 *
 * The rules (bootstrap, voters, dead-server cleanup, what the switch from
 * AP to CP does) are written down in docs/SERVERS.md.
 */
#ifndef RUMOR_AGENT_SERVER_H
#define RUMOR_AGENT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/engine.h"

struct agent;
struct server;
struct tag;

/* Start the tier (a server when a->cfg.server; every agent forwards).
 * NULL with err. Needs a->kv and a->gossip. */
struct server *server_new(struct agent *a, char *err, size_t errlen);
struct kv_seal;
/* Seal server RPC with the keyring (as the KV sync port). */
void server_set_seal(struct server *s, const struct kv_seal *seal);
/* Stops Raft (synchronously enough for exit), closes connections. */
void server_free(struct server *s);

/* Rewrite the role tag and add the server tags (role=consul, expect,
 * port, raft_vsn, raft when it holds Raft state) to tags[0..n); returns
 * the new count (room for SERVER_TAGS_MAX more). */
#define SERVER_TAGS_MAX 4
size_t server_tags(const struct server *s, struct tag *tags, size_t n);

/* A member joined or changed its tags (agent.c's member events): a client
 * whose tick is parked (no server known, see server.c tick_cb) looks for
 * servers again when the member's tags may name one. */
struct swim_member;
void server_member_event(struct server *s, const struct swim_member *m);

/* Hand an accepted sync connection whose first frame is server RPC. */
void server_adopt(void *s, int fd, const char *peer, const uint8_t *buf, size_t len);

/* What the HTTP API and `rumor info` show. */
bool server_is_server(const struct server *s);
bool server_cp(const struct server *s); /* the store is CP (servers seen) */
/* The leader's server RPC address ("" when none is known), into buf. */
const char *server_leader(const struct server *s, char *buf, size_t cap);
/* A client asks a server who leads: fn(ud, addr) once, from the loop
 * ("" when nobody answered). -1 (fn not called) on a server or when no
 * server is known. */
int server_ask_leader(struct server *s, void (*fn)(void *ud, const char *addr), void *ud);
/* ms since the leader was last heard from (0 on the leader; -1 unknown). */
int64_t server_last_contact(const struct server *s);
struct server_peer {
	uint64_t id;
	char name[128];
	char addr[64];
	bool voter, leader;
};
/* The Raft configuration as this server knows it (servers), or the known
 * servers (clients): count written (at most cap). */
size_t server_peers(const struct server *s, struct server_peer *out, size_t cap);
/* Remove a server from the configuration (by its ID in hex or its address):
 * the leader at once; another server or a client asks the leader. fn(ud, 0,
 * "") done, or fn(ud, -1, why); called once, possibly before this returns.
 * -1 (fn not called) with err when the agent knows no servers. */
typedef void (*server_remove_fn)(void *ud, int rc, const char *err);
int server_remove_peer(struct server *s, const char *id_or_addr, server_remove_fn fn, void *ud,
                       char *err, size_t errlen);

/* ?consistent / default reads: call fn(ud, ok) once the local replica may
 * answer (servers: after a leader's read index is applied here; clients:
 * after the leader's records for key/prefix are merged); ok false when no
 * leader answered. Not in CP mode: at once (from the loop). */
typedef void (*server_read_fn)(void *ud, bool ok);
struct server_read;
struct server_read *server_read_barrier(struct server *s, bool consistent, const char *key,
                                        size_t key_len, bool recurse, server_read_fn fn, void *ud);
/* The HTTP client went away: fn will not be called. */
void server_read_cancel(struct server_read *r);

/* Renew a session (the leader restarts its TTL timer): fn(ud, 1) renewed,
 * fn(ud, 0) no such session, fn(ud, -1) no leader answered; called once,
 * possibly before this returns. -1 (fn not called): not in CP mode. */
typedef void (*server_renew_fn)(void *ud, int result);
int server_session_renew(struct server *s, const char *id, server_renew_fn fn, void *ud);
/* Sessions this server ended as leader. */
uint64_t server_sessions_invalidated(const struct server *s);

/* Snapshots (/v1/snapshot): every live record as the leader had them when
 * asked (a server reads its replica once the leader's applied index is
 * applied there; a client asks a server). fn(ud, 0, index, body, len) with
 * a RECORDS body (kv/repl.h), or fn(ud, -1 no leader / -2 too big, ...);
 * called once. -1 (fn not called): not in CP mode. */
#define SERVER_SNAPSHOT_MAX (48u << 20) /* one server RPC frame, with room */
typedef void (*server_snapshot_fn)(void *ud, int status, uint64_t index, const uint8_t *body,
                                   size_t len);
int server_snapshot(struct server *s, server_snapshot_fn fn, void *ud);
/* Restore: the store becomes the RECORDS body's records, through Raft (one
 * entry); done(ud, KV_OK, -1) once applied. 0, or -1 with err. */
int server_restore(struct server *s, const uint8_t *body, size_t len, kv_done_fn done, void *ud,
                   char *err, size_t errlen);

struct server_info {
	bool server, cp, bootstrapped;
	int state; /* libraft's RAFT_FOLLOWER...; 0 on a client */
	uint64_t term, last_index, commit_index, applied_index;
	uint64_t last_snapshot_index, last_snapshot_term; /* 0: none yet */
	size_t num_peers;
	uint64_t writes_forwarded, writes_applied;
};
void server_get_info(const struct server *s, struct server_info *out);

#endif
