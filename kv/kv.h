/*
 * kv/kv.h — the replicated key-value engine, as the agent and the catalog
 * see it.
 *
 * Owns: the engine (kv/engine.h: the local replica in <data_dir>/kv, the
 * hybrid logical clock, batches, watches, what to spread and to pull) and
 * its libev driver: group commit once per loop iteration, the watches'
 * timeouts, the anti-entropy timer and the sync listener and connections
 * (kv/repl.h frames over TCP, sealed with the keyring). Membership comes
 * from the agent through struct kv_members.
 *
 * Writes: kv_write() checks and stages the operations of one request in the
 * loop iteration's LMDB write transaction (so a CAS sees earlier writes of
 * the same iteration); before the loop blocks again the transaction is
 * committed (one fsync for every write of the iteration) and only then is
 * `done` called, watches woken and the writes broadcast. A write is never
 * acknowledged before it is durable. A request whose check fails (CAS)
 * changes nothing; a request is applied entirely or not at all.
 *
 * Reads see committed data only (an LMDB read transaction).
 *
 * Keys are byte strings of 1..KV_KEY_MAX bytes. Keys starting with
 * KV_RESERVED_PREFIX belong to the agent itself (the catalog); /v1/kv neither
 * shows nor accepts them, but they replicate like any other key.
 *
 * Error convention: functions return 0 / a count, or -1 with a message in
 * the caller's err buffer (when one is taken). Callbacks receive a result
 * code, see enum kv_result.
 */
#ifndef RUMOR_KV_KV_H
#define RUMOR_KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/engine.h"
#include "kv/limits.h"

struct ev_loop;
struct kv;
struct kv_watch;

#define KV_RESERVED_PREFIX "_rumor/" /* hidden from /v1/kv */

struct kv_config {
	const char *data_dir; /* the store lives in <data_dir>/kv */
	const char *node_name;
	const char *bind_addr;    /* sync listener address */
	int sync_port;            /* 0: pick one; <0: no listener (tests) */
	int64_t tombstone_ttl_ms; /* 72h */
	int64_t sync_interval_ms; /* anti-entropy period, 10s */
	size_t max_watches;       /* parked blocking queries, 4096 */
	size_t map_size;          /* LMDB map size, bytes; 0: 1 GiB */
	int64_t max_ahead_ms;     /* refuse remote versions further ahead of our
				     * clock; 0: KV_MAX_AHEAD_DEFAULT_MS, <0: no check */
};

/* Open the replica and start the sync listener; NULL with err. Until
 * kv_set_members is called the replica is not replicated. */
struct kv *kv_new(struct ev_loop *loop, const struct kv_config *cfg, char *err, size_t errlen);
/* Commit what is pending, answer pending writes, cancel watches
 * (their callbacks fire with changed=false), close sockets, free. */
void kv_free(struct kv *kv);
/* A member that runs KV (its tags carry "rpc_port"), as the agent's
 * membership knows it. */
struct kv_peer {
	const char *name;
	uint8_t ip[16];
	uint8_t ip_len; /* 4 or 16 */
	uint16_t port;  /* its sync port, the "rpc_port" tag */
};
typedef void (*kv_member_fn)(void *ud, const struct kv_peer *p);

/* What the engine needs of the cluster; the agent fills it from its gossip
 * layer (kv/ never includes gossip/). Every callback is required. */
struct kv_members {
	void *ctx;
	/* Spread one user message, the replication message of key, through
	 * gossip's transmit-limited queue (superseding a queued one of key). */
	void (*broadcast)(void *ctx, const char *key, size_t key_len, const uint8_t *msg,
	                  size_t len);
	/* Optional: gossip brought back the version of key this replica
	 * stores (kv_io.echo). */
	void (*echo)(void *ctx, const char *key, size_t key_len);
	/* Call fn for every alive member that runs KV, this node excepted, in
	 * the same order each time. Only p->name need be filled: the one
	 * chosen is looked up (lookup) for its address. */
	void (*peers)(void *ctx, kv_member_fn fn, void *ud);
	/* The member called name, in any state, if it runs KV and is not this
	 * node: true with *p filled (p->name valid until gossip runs again). */
	bool (*lookup)(void *ctx, const char *name, struct kv_peer *p);
	/* Optional: one member as peers would list, drawn uniformly at random
	 * with rand (rand(rctx, n) is uniform in [0, n)): true with *p filled
	 * (p->name valid until gossip runs again), false when there is none. */
	bool (*pick)(void *ctx, uint32_t (*rand)(void *rctx, uint32_t n), void *rctx,
	             struct kv_peer *p);
	/* Optional: messages waiting in gossip's broadcast queue. */
	size_t (*backlog)(void *ctx);
	/* Optional: the wall-clock ms since which the member called name has
	 * been in the membership table; INT64_MAX when it is not. */
	int64_t (*known_since)(void *ctx, const char *name);
};
/* Replicate through m (copied; its ctx must outlive kv): eager spread,
 * peers for anti-entropy and pulls. NULL: stop replicating. */
void kv_set_members(struct kv *kv, const struct kv_members *m);
/* The bound sync port (advertise it in the "rpc_port" tag). */
int kv_sync_port(const struct kv *kv);
struct kv_seal;
/* Seal every sync frame with `seal` (copied; its ctx must outlive kv) and
 * refuse plaintext ones; NULL: plaintext (no keyring). */
void kv_set_seal(struct kv *kv, const struct kv_seal *seal);
/* Another protocol on the sync port (the server RPC): an accepted
 * connection whose first frame (opened, with a keyring) has an inner type
 * in KV_F_FOREIGN_MIN..KV_F_FOREIGN_MAX (kv/repl.h) is given to fn with
 * its socket (fn owns it from then on) and every byte read so far from
 * that frame on (buf, len: at least the whole first frame; valid during
 * the call), and forgotten here. The sealing checks run first: with a
 * keyring a plaintext frame is refused, never handed off. NULL (the
 * default): such a frame is a protocol error, the connection is closed. */
typedef void (*kv_handoff_fn)(void *ctx, int fd, const char *peer, const uint8_t *buf, size_t len);
void kv_set_handoff(struct kv *kv, kv_handoff_fn fn, void *ctx);

/* Optional: fn(ud, key, key_len) for every change a commit made durable
 * (local writes, gossip, anti-entropy, Raft entries; deletions included),
 * after the watches it woke; key NULL: any key may have changed (a restore
 * emptied the store). It lets a reader that mirrors a prefix (the catalog)
 * re-read only what changed instead of scanning the prefix. One listener;
 * NULL removes it. fn must not write to the store. */
typedef void (*kv_commit_fn)(void *ud, const char *key, size_t key_len);
void kv_set_commit_fn(struct kv *kv, kv_commit_fn fn, void *ud);

/* Stage ops atomically; done (may be NULL) is called once after the commit,
 * or with KV_FAILED/KV_ERROR before returning when a check fails. Returns 0,
 * or -1 with err when the request is malformed (bad key, too big, too many
 * ops) — then done is not called. */
int kv_write(struct kv *kv, const struct kv_op *ops, size_t n, kv_done_fn done, void *ud, char *err,
             size_t errlen);
/* Shorthands for one op. */
int kv_put(struct kv *kv, const char *key, const void *val, size_t len, uint64_t flags,
           kv_done_fn done, void *ud);
int kv_delete(struct kv *kv, const char *key, bool recurse, kv_done_fn done, void *ud);

/* Read one live key: 1 found (fn called), 0 absent, -1 error. */
int kv_get(struct kv *kv, const char *key, size_t key_len, kv_entry_fn fn, void *ud);
/* Live keys starting with prefix (all if ""), in byte order. Returns the
 * number visited or -1. */
int kv_scan(struct kv *kv, const char *prefix, size_t prefix_len, kv_entry_fn fn, void *ud);
/* The blocking index of a key (recurse false) or prefix: the index form
 * (kv/hlc.h, at most 2^53 - 1) of the largest version under it, tombstones
 * included; 1 when there is none. */
uint64_t kv_index(struct kv *kv, const char *key, size_t key_len, bool recurse);

/* Park until the index of key moves past `index` (recurse false), or until
 * any change under the prefix (recurse true: `index` is not compared, since
 * a record merged late may be older than the newest and still change what
 * the prefix holds), or timeout_ms passes; fn(ud, changed) is called exactly
 * once, from the loop, unless kv_watch_cancel is called first. NULL when
 * too many are parked. */
typedef void (*kv_watch_fn)(void *ud, bool changed);
struct kv_watch *kv_watch_add(struct kv *kv, const char *key, size_t key_len, bool recurse,
                              uint64_t index, int64_t timeout_ms, kv_watch_fn fn, void *ud);
void kv_watch_cancel(struct kv_watch *w);

/* Feed a gossip user message whose first byte is >= 0x80 and < 0x90. */
void kv_on_user_msg(struct kv *kv, const uint8_t *p, size_t len);
/* A member event: a peer that runs KV joining brings the next anti-entropy
 * round forward (0.2-0.5 s). */
void kv_on_member(struct kv *kv, bool joined, const char *name);
/* Start an anti-entropy round with a random live peer now (tests, join). */
void kv_sync_now(struct kv *kv);

struct kv_stats {
	uint64_t keys, tombstones;
	uint64_t commits, writes;
	uint64_t commits_unsynced;
	uint64_t gossip_in, gossip_applied, gossip_out;
	uint64_t gossip_echoes; /* of gossip_in: a version the replica stores */
	uint64_t relays_held;   /* peers' records not passed on (engine.h) */
	uint64_t syncs_ok, syncs_failed, sync_records_in, sync_records_out;
	uint64_t sync_chains, sync_chains_held, join_rounds_held;
	uint64_t watches;
	/* sync connections closed unanswered: a plaintext frame with a keyring,
	 * a frame no key opens, a sealed frame without a keyring */
	uint64_t sync_refused_plain, sync_refused_decrypt, sync_refused_sealed;
	/* closed for passing the buffer budget; output pumps that waited for it */
	uint64_t sync_budget_closed, sync_budget_waits;
	/* accepted connections given to kv_set_handoff's fn */
	uint64_t sync_handed_off;
	uint64_t versions_ahead; /* remote versions refused: too far ahead of our clock */
	/* storage health (kv/store.h kv_store_stats) */
	uint64_t store_bad_reads, store_bad_records, store_legacy_records;
	uint64_t wal_dropped_records, commit_failures, checkpoint_failures;
	bool store_failing;
};
const struct kv_stats *kv_stats(struct kv *kv);

/*
 * CP mode (servers on Raft, agent/cp.c). With a hook installed, kv_write
 * (and kv_put, kv_delete) checks the request, then hands it to cp.write
 * instead of applying it here: the hook forwards it to the Raft leader and
 * calls done once it is committed and applied (KV_OK, KV_FAILED), or with
 * KV_NO_LEADER. It returns 0, or -1 with err (done not called). NULL: AP.
 */
struct kv_cp {
	void *ctx;
	int (*write)(void *ctx, const struct kv_op *ops, size_t n, kv_done_fn done, void *ud,
	             char *err, size_t errlen);
};
void kv_set_cp(struct kv *kv, const struct kv_cp *cp);
/* A CP server ignores records from gossip, anti-entropy and pulls. */
void kv_refuse_merges(struct kv *kv, bool refuse);
/* Apply one committed Raft entry: kv_engine_write_pinned() in the open
 * batch, bypassing the hook. 0, or -1 with err (done not called). */
int kv_write_pinned(struct kv *kv, const struct kv_op *ops, size_t n, uint64_t base,
                    uint64_t raft_index, const char *node, kv_done_fn done, void *ud,
                    uint64_t *last, char *err, size_t errlen);
/* The version a local write would get now (a leader stamps entries). */
uint64_t kv_next_version(struct kv *kv);
/* The engine this driver runs (the CP state machine, agent/cp_fsm.h,
 * applies Raft entries to it directly; the driver still commits). */
struct kv_engine *kv_engine_of(struct kv *kv);
/* Snapshots: every committed record; replace the replica (see engine.h). */
int kv_dump(struct kv *kv, kv_store_fn fn, void *ud);
/* Replace the replica by a snapshot's records (kv_engine_replace_pinned),
 * in the open batch. */
int kv_replace_pinned(struct kv *kv, const uint8_t *p, size_t len, uint64_t base,
                      uint64_t raft_index, const char *node, const char *keep, kv_done_fn done,
                      void *ud, uint64_t *last, char *err, size_t errlen);
/* The keys a session holds, as staged (kv_engine_held). */
int kv_held(struct kv *kv, const char *session, size_t session_len, kv_store_fn fn, void *ud);
int kv_restore_begin(struct kv *kv);
int kv_restore_put(struct kv *kv, const char *key, size_t key_len, const struct kv_rec *r);

/* A server's answer carries records (a RECORDS body): merge them, done
 * after the commit; 0, or -1 with err (done not called). */
int kv_merge_body(struct kv *kv, const uint8_t *p, size_t len, kv_done_fn done, void *ud, char *err,
                  size_t errlen);
/* Committed records of key or prefix, tombstones included (engine.h). */
int kv_records(struct kv *kv, const char *key, size_t key_len, bool recurse, kv_store_fn fn,
               void *ud);

#endif
