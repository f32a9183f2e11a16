/*
 * kv/engine.h — the replicated key-value engine, sans-I/O.
 *
 * Owns: the replica (kv/store.h) and its hybrid logical clock (kv/hlc.h);
 * the open batch: the changes staged in it and the writes waiting for its
 * commit; local writes (checks such as CAS, then stamping and staging);
 * merging of records received by gossip, anti-entropy and pulls; the
 * blocking-query watches and which of them a committed change wakes; what a
 * committed change broadcasts (the record inline in a SET when it is small,
 * else an ANNOUNCE); which pulls an ANNOUNCE starts (one per version, see
 * kv_pull_covers); which peer an anti-entropy round goes to and when the
 * next one is due; and the replication sessions (kv/repl.h state machines
 * bound to the store), from their start to their end.
 *
 * It never reads a clock, draws a random number or touches a socket or a
 * timer: the wall-clock time is the now_ms argument (it stamps local
 * versions and judges remote ones), and randomness, gossip, connections and
 * the anti-entropy timer go through struct kv_io. Two drivers run it: the
 * agent's (kv/kv.c: libev, TCP, the sealing of frames) and the simulator's
 * (tests/sim/sim.c: virtual time, an in-memory network, thousands of
 * engines in one process).
 *
 * Data flow:
 *   local write  kv_engine_write ─► checks ─► stamp ─► stage in the batch
 *   gossip       kv_engine_user_msg ─► SET: merge into the batch
 *                                   └► ANNOUNCE of a newer version: a pull,
 *                                      io->open_session(writer, session)
 *   anti-entropy io->sync_arm ... the driver's timer ─► kv_engine_sync_timer
 *                  ─► io->peers + io->rand (one peer, uniformly)
 *                  ─► io->open_session(peer, session)
 *   a session    the driver moves its frames: kv_session_feed (received
 *                records are merged into the batch), kv_session_pump (ours,
 *                lazily), and reports its end: kv_session_end
 *   commit       kv_engine_commit, once per turn of the driver's loop
 *                  ─► the writes' done callbacks
 *                  ─► per change: wake watches, io->committed, io->broadcast
 * Everything staged between two commits is one store batch (one log append
 * and fdatasync); nothing is acknowledged, woken or broadcast before it is
 * durable, and a failed commit answers every write of the batch KV_ERROR.
 * The one exception: a batch of peers' records only, with nobody waiting,
 * is appended without the fdatasync (the peers hold those records; see
 * kv_store_batch_unsynced).
 *
 * Error convention: functions that can fail return -1 (or NULL) with a
 * message in the caller's err buffer; storage errors reach a write's done
 * callback as KV_ERROR; allocation failure aborts (lib/xalloc.h).
 */
#ifndef RUMOR_KV_ENGINE_H
#define RUMOR_KV_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/limits.h"
#include "kv/record.h"
#include "kv/repl.h"

struct kv_engine;
struct kv_engine_watch;
struct kv_session;
struct kv_store;

#define KV_TOMBSTONE_TTL_DEFAULT_MS (72LL * 3600 * 1000)
#define KV_SYNC_INTERVAL_DEFAULT_MS 10000
#define KV_MAX_WATCHES_DEFAULT 4096
#define KV_MAX_AHEAD_DEFAULT_MS 30000
/* A SET carries the record inline when the whole message fits in this many
 * bytes (and the value in KV_INLINE_MAX): a gossip packet must still hold
 * it next to the membership messages. Anything larger is ANNOUNCEd. */
#define KV_INLINE_MSG_MAX 1000

/* What both drivers do with the engine's sessions and batches (the agent on
 * sockets and timers, the simulator in virtual time). */
#define KV_SYNC_MAX_CONNS 64            /* sync connections, both ways */
#define KV_SYNC_CONNECT_TIMEOUT_MS 1000 /* an outbound connect must succeed within */
#define KV_SYNC_TIMEOUT_MS 10000        /* a connected session must end within */
/* Joins bring a round forward at most this often: in a join storm every
 * agent sees a join every few milliseconds, and each brought its next round
 * forward to 0.2-0.5 s, so every agent ran two or three anti-entropy rounds
 * a second for as long as the storm lasted. */
#define KV_SYNC_JOIN_GAP_MS 5000
#define KV_CHECKPOINT_INTERVAL_MS 1000 /* LMDB commit after the first batch since the last */
/* ... when every batch since the last was peers' records only (logged
 * without fdatasync, kv_store_batch_unsynced): these wait longer, so a join
 * storm does not cost every agent a synced LMDB commit (three fdatasyncs:
 * data, meta page, the log's new header) every few seconds. At 5 s, 1,000
 * agents on one disk still ran ~600 a second and sat in the block layer's
 * write throttling. LMDB's writer lock is held until the checkpoint; a
 * second agent on the same data directory is refused at start (agent.lock),
 * so nothing waits on it. */
#define KV_CHECKPOINT_PEER_INTERVAL_MS 60000

/* One entry as read. Pointers are valid only during the callback. */
struct kv_entry {
	const char *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	uint64_t flags;
	uint64_t create_index; /* the index of the write that created the key (below) */
	uint64_t modify_index; /* the index of the last write */
	bool raft;             /* both are Raft indexes (CP mode) */
	const char *node;      /* writer of the version */
	bool deleted;          /* a tombstone (only kv_scan_all shows them) */
	uint64_t lock_index;   /* times the key was acquired (Consul's LockIndex) */
	const char *session;   /* the session holding the lock, NUL-terminated; "" none */
};

/* A blocking query with ?index=want parks while the current index equals
 * want (want > 0). A smaller want has been passed: answer. A larger one
 * comes from a state that went backwards (the switch to servers, a replica
 * behind the agent the client read before): answer at once too, so the
 * client resets its index now rather than after its whole wait. */
static inline bool kv_index_parks(uint64_t current, uint64_t want)
{
	return want > 0 && current == want;
}

/* Called per entry; return non-zero to stop the scan. */
typedef int (*kv_entry_fn)(void *ud, const struct kv_entry *e);

enum kv_op_verb {
	KV_OP_SET,              /* write value/flags */
	KV_OP_CAS,              /* write if modify_index == index (0: if absent) */
	KV_OP_DELETE,           /* delete key (ok if absent) */
	KV_OP_DELETE_TREE,      /* delete every key with prefix `key` */
	KV_OP_DELETE_CAS,       /* delete if modify_index == index (0: never) */
	KV_OP_CHECK_INDEX,      /* fail unless modify_index == index */
	KV_OP_CHECK_NOT_EXISTS, /* fail if the key exists */
	/* Locks (docs/SESSIONS.md); `session` names the session, whose record
	 * KV_SESSION_PREFIX<session> must exist for KV_OP_LOCK. */
	KV_OP_LOCK,          /* acquire: fail if another session holds the key; write
	                      * value/flags, hold it; LockIndex + 1 unless already held */
	KV_OP_UNLOCK,        /* release: fail unless `session` holds the key; write
	                      * value/flags, hold it no more (LockIndex kept) */
	KV_OP_CHECK_SESSION, /* fail unless `session` holds the key */
	KV_OP_SESSION_END,   /* the session ends: every key it holds is released
	                      * (flags 0, value kept) or deleted (flags 1), then the
	                      * session's record `key` is deleted; never fails */
};

struct kv_op {
	enum kv_op_verb verb;
	const char *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	uint64_t flags;
	uint64_t index;      /* an index as clients see them (kv_rec_index); over 2^53 - 1:
	                      * a version (kv/hlc.h) */
	const char *session; /* lock verbs: the session ID (not NUL-terminated) */
	size_t session_len;
};

enum kv_result {
	KV_OK = 1,         /* applied and durable */
	KV_FAILED = 0,     /* a check (CAS) failed; nothing changed */
	KV_ERROR = -1,     /* storage error; nothing changed */
	KV_SHUTDOWN = -2,  /* the engine was freed before the commit */
	KV_NO_LEADER = -3, /* CP mode: no Raft leader took the write */
	KV_UNKNOWN = -4,   /* CP mode: the leader was lost after it had the write:
	                    * it may or may not have been applied */
};

/* `failed_op` is the index of the op whose check failed (KV_FAILED), else -1. */
typedef void (*kv_done_fn)(void *ud, enum kv_result r, int failed_op);

/* Where a staged change came from. */
enum kv_src {
	KV_SRC_LOCAL,  /* a write on this node */
	KV_SRC_GOSSIP, /* a SET heard by gossip */
	KV_SRC_SYNC,   /* an anti-entropy session (either side) */
	KV_SRC_PULL,   /* a pull after an ANNOUNCE */
};

/* Called once per live KV peer; name is valid during the call only. */
typedef void (*kv_peer_fn)(void *ud, const char *name);

/*
 * How the engine reaches the world. The driver fills it; every callback is
 * required unless noted. Timer durations are in microseconds, so that the
 * simulator's virtual clock keeps its resolution.
 */
struct kv_io {
	void *ctx;
	/* A uniformly random number in [0, n), n >= 1. */
	uint32_t (*rand)(void *ctx, uint32_t n);
	/* Optional: spread a replication message (SET, ANNOUNCE) of key by
	 * gossip; a message of the same key still queued is superseded. */
	void (*broadcast)(void *ctx, const char *key, size_t key_len, const uint8_t *msg,
	                  size_t len);
	/* Optional: gossip brought a SET of a version this replica stores
	 * already (an echo of one it may be spreading itself). */
	void (*echo)(void *ctx, const char *key, size_t key_len);
	/* Optional (none: no anti-entropy): call fn for every live peer that
	 * runs KV, this node excepted, in the same order each time. */
	void (*peers)(void *ctx, kv_peer_fn fn, void *ud);
	/* Optional: one such peer drawn uniformly at random, its name copied
	 * into name (cap bytes): 1; 0 when there is none; -1 when the driver
	 * cannot draw one, and the engine draws from peers instead (it then
	 * visits the whole list). */
	int (*pick_peer)(void *ctx, char *name, size_t cap);
	/* Optional (none: no sessions): connect to `peer` and run s there:
	 * send `first` (len bytes of frames), feed what arrives to
	 * kv_session_feed, and call kv_session_end exactly once (possibly
	 * before returning). kv_session_role(s) says what it is: an
	 * anti-entropy round (KV_SYNC_INITIATOR) or a pull (KV_SYNC_PULLER,
	 * peer is the writer). false: nothing was started (an unknown peer,
	 * too many connections); the engine then drops s itself. */
	bool (*open_session)(void *ctx, const char *peer, struct kv_session *s,
	                     const uint8_t *first, size_t len);
	/* Arm the anti-entropy timer to fire after_us from now, replacing an
	 * armed one; when it fires, call kv_engine_sync_timer(). */
	void (*sync_arm)(void *ctx, int64_t after_us);
	/* Microseconds until the armed anti-entropy timer fires; -1: none. */
	int64_t (*sync_left)(void *ctx);
	/* Optional: a change became durable (called after the watches it
	 * wakes, before its broadcast). */
	void (*committed)(void *ctx, const char *key, size_t key_len, const struct kv_rec *r,
	                  enum kv_src src);
	/* Optional: messages waiting in gossip's broadcast queue (a backlog
	 * makes late records expected: see sync_chain_start). */
	size_t (*gossip_backlog)(void *ctx);
	/* Optional: the wall-clock ms since which the member called name has
	 * been in this node's membership table; INT64_MAX when it is not (see
	 * writer_was_known). */
	int64_t (*known_since)(void *ctx, const char *name);
};

struct kv_engine_config {
	const char *dir;          /* the store's directory (created) */
	const char *node_name;    /* this node, the writer named in its versions */
	int64_t tombstone_ttl_ms; /* 0: KV_TOMBSTONE_TTL_DEFAULT_MS */
	int64_t sync_interval_ms; /* anti-entropy period, +-10%; 0: the default */
	size_t max_watches;       /* parked watches; 0: the default */
	size_t map_size;          /* LMDB map size, bytes; 0: 1 GiB */
	int64_t max_ahead_ms;     /* refuse remote versions further ahead of now_ms;
				    * 0: KV_MAX_AHEAD_DEFAULT_MS, <0: no check */
	bool lazy;                /* sessions send records through kv_session_pump as
				    * the driver's socket drains (else all at once) */
};

/* Open the replica (wiping it if it was last written longer than the
 * tombstone TTL before now_ms, so it cannot resurrect deleted keys) and
 * arm the first anti-entropy round through io->sync_arm. `io` is copied.
 * NULL with err. */
struct kv_engine *kv_engine_new(const struct kv_engine_config *cfg, const struct kv_io *io,
                                int64_t now_ms, char *err, size_t errlen);
/* Writes still waiting for a commit are answered KV_SHUTDOWN (commit first
 * to have them acknowledged), parked watches fire with changed=false,
 * sessions not yet ended are freed (the driver must not use them after),
 * the store is checkpointed and closed. */
void kv_engine_free(struct kv_engine *e);
/* The replica, for reads, digests and checkpoints; owned by the engine. */
struct kv_store *kv_engine_store(struct kv_engine *e);

/* The request checks of kv_engine_write alone (counts, keys, sizes): 0, or
 * -1 with err. */
int kv_engine_check_ops(const struct kv_op *ops, size_t n, char *err, size_t errlen);
/* Check and stage ops atomically at now_ms; done (may be NULL) is called
 * once after the commit, or with KV_FAILED/KV_ERROR before returning when
 * a check fails or the store fails. Returns the number of records staged
 * (0 for deleting absent keys, or when done was already called), or -1
 * with err when the request is malformed (bad key, too big, too many ops)
 * — then done is not called. */
int kv_engine_write(struct kv_engine *e, int64_t now_ms, const struct kv_op *ops, size_t n,
                    kv_done_fn done, void *ud, char *err, size_t errlen);
/* The version a local write at now_ms gets if nothing is staged before it
 * (the simulator makes each value from its version, to check replicas'
 * values against their versions). */
uint64_t kv_engine_next_version(const struct kv_engine *e, int64_t now_ms);
/* Make the open batch durable and deliver its effects (see Data flow).
 * 1 committed, 0 no batch was open, -1 the commit failed (err; its writes
 * were answered KV_ERROR, its changes forgotten). */
int kv_engine_commit(struct kv_engine *e, int64_t now_ms, char *err, size_t errlen);
/* Drop the open batch: its writes are answered KV_ERROR, its changes
 * forgotten. */
void kv_engine_abort(struct kv_engine *e);
/* Stage the removal of tombstones older than the TTL before now_ms (also
 * refreshes "last seen" at the next commit). The number purged, or -1. */
int kv_engine_purge(struct kv_engine *e, int64_t now_ms);

/* Read one live key: 1 found (fn called), 0 absent, -1 error. */
int kv_engine_get(struct kv_engine *e, const char *key, size_t key_len, kv_entry_fn fn, void *ud);
/* Live keys starting with prefix, in byte order: the number visited or -1. */
int kv_engine_scan(struct kv_engine *e, const char *prefix, size_t prefix_len, kv_entry_fn fn,
                   void *ud);
/* The index (kv_rec_index) of the record with the largest version under a
 * key (recurse false) or prefix, tombstones included; 1 when there is none. */
uint64_t kv_engine_index(struct kv_engine *e, const char *key, size_t key_len, bool recurse);

/* Park a watch: fn(ud, true) from a commit that moves the index of the key
 * past `index` (read as kv_hlc_index_in does), or (recurse) that changes any
 * key under the prefix, fn(ud, false) from
 * kv_engine_free. The timeout is the driver's (kv_engine_watch_cancel).
 * NULL when max_watches are parked. */
typedef void (*kv_engine_watch_fn)(void *ud, bool changed);
struct kv_engine_watch *kv_engine_watch_add(struct kv_engine *e, const char *key, size_t key_len,
                                            bool recurse, uint64_t index, kv_engine_watch_fn fn,
                                            void *ud);
/* Unpark without calling fn. */
void kv_engine_watch_cancel(struct kv_engine *e, struct kv_engine_watch *w);
/* Watches parked now. */
size_t kv_engine_watch_count(const struct kv_engine *e);

/* A gossip user message of ours (first byte 0x80..0x8f) at now_ms: a SET is
 * merged, an ANNOUNCE of a newer version starts a pull of it. 1 merged or
 * pulled, 0 nothing to do, -1 with err (undecodable, or the store failed). */
int kv_engine_user_msg(struct kv_engine *e, int64_t now_ms, const uint8_t *p, size_t len, char *err,
                       size_t errlen);
/* Start an anti-entropy round with a random peer now, unless one is open. */
void kv_engine_sync_now(struct kv_engine *e);
/* The anti-entropy timer fired: a round now, the next one armed. */
void kv_engine_sync_timer(struct kv_engine *e);
/* A peer that runs KV joined (at now_ms): a round within 0.2-0.5 s (unless
 * the timer fires within 0.5 s anyway), at most once per KV_SYNC_JOIN_GAP_MS
 * of joins, and not while gossip_backlog says gossip is behind. */
void kv_engine_peer_joined(struct kv_engine *e, int64_t now_ms);

/* A peer connected to us: the responder's session, or NULL. */
struct kv_session *kv_engine_accept(struct kv_engine *e);
enum kv_sync_role kv_session_role(const struct kv_session *s);
/* One received frame (kv_frame_next; opened, when sealed) at now_ms;
 * records it brings are merged into the open batch. As kv_sync_feed: 0
 * continue, 1 nothing more to receive, -1 with err. */
int kv_session_feed(struct kv_session *s, int64_t now_ms, uint8_t type, const uint8_t *payload,
                    size_t plen, struct kv_buf *out, char *err, size_t errlen);
/* Lazy sessions: more of our records into out, up to `want` bytes (as
 * kv_sync_pump). 0 or -1. */
int kv_session_pump(struct kv_session *s, struct kv_buf *out, size_t want);
/* Our records are not all sent yet (lazy sessions). */
bool kv_session_sending(const struct kv_session *s);
/* Records this session has sent. */
uint64_t kv_session_records_out(const struct kv_session *s);
/* The session is over (ok: it did its part); frees s. After a failed
 * anti-entropy round the next one is brought forward (0.2-0.5 s). */
void kv_session_end(struct kv_session *s, bool ok);

struct kv_engine_stats {
	uint64_t commits, writes;
	uint64_t commits_unsynced; /* of peers' records only: no fdatasync */
	uint64_t gossip_in, gossip_applied;
	uint64_t gossip_echoes; /* SETs of a version held already (io.echo) */
	uint64_t relays_held;   /* peers' records not passed on: gossip behind */
	uint64_t syncs_ok, syncs_failed, sync_records_in, sync_records_out;
	uint64_t sync_chains, sync_chains_held; /* see sync_chain_start */
	uint64_t join_rounds_held;              /* see kv_engine_peer_joined */
	uint64_t versions_ahead; /* remote versions refused: too far ahead of now_ms */
};
const struct kv_engine_stats *kv_engine_stats(const struct kv_engine *e);

/*
 * CP mode (agent/cp_fsm.c, servers on Raft). A pinned write is
 * kv_engine_write with versions base, base + 1, ... (one per record
 * staged) and the writer node given, instead of this node's clock and
 * name, so every server that applies one Raft entry to the same state
 * writes the same records; each record carries raft_index, the entry's
 * Raft index (> 0), and raft_create, the entry that created the key (this
 * one when the key was absent, deleted or had none). *last is the last
 * version used (base - 1 when nothing was staged). Returns as
 * kv_engine_write.
 */
int kv_engine_write_pinned(struct kv_engine *e, const struct kv_op *ops, size_t n, uint64_t base,
                           uint64_t raft_index, const char *node, size_t node_len, kv_done_fn done,
                           void *ud, uint64_t *last, char *err, size_t errlen);
/* A CP server's replica is written by Raft alone: records from gossip,
 * anti-entropy and pulls are ignored (it still serves them to others). */
void kv_engine_refuse_merges(struct kv_engine *e, bool refuse);
/* Every committed record, tombstones and reserved keys included, in key
 * order (a Raft snapshot): the number visited, or -1. */
int kv_engine_dump(struct kv_engine *e, kv_store_fn fn, void *ud);
/* Replace the replica by a snapshot: begin (empties the open batch's view
 * of the store), put each record, then commit as any batch. 0 or -1. */
int kv_engine_restore_begin(struct kv_engine *e);
int kv_engine_restore_put(struct kv_engine *e, const char *key, size_t key_len,
                          const struct kv_rec *r);

/* CP restore (a snapshot, /v1/snapshot): the replica becomes the live
 * records of the RECORDS body p, written as new versions base, base + 1,
 * ... (so every replica, clients too, takes them by the usual rule: the
 * larger version wins) at Raft index raft_index (as a pinned write), lock
 * fields included; every live key the body lacks is deleted; keys under
 * the prefix `keep` are left alone. done after the commit. Returns the
 * records staged, or -1 with err (nothing staged). */
int kv_engine_replace_pinned(struct kv_engine *e, const uint8_t *p, size_t len, uint64_t base,
                             uint64_t raft_index, const char *node, size_t node_len,
                             const char *keep, kv_done_fn done, void *ud, uint64_t *last, char *err,
                             size_t errlen);

/* The keys `session` holds, as staged so far (what a KV_OP_SESSION_END
 * staged now would release): fn per key; the number visited, or -1. */
int kv_engine_held(struct kv_engine *e, const char *session, size_t session_len, kv_store_fn fn,
                   void *ud);

/* Merge a RECORDS body (kv/repl.h) into the open batch; done is called
 * after its commit (KV_OK) unless -1 is returned (err). */
int kv_engine_merge_body(struct kv_engine *e, int64_t now_ms, const uint8_t *p, size_t len,
                         kv_done_fn done, void *ud, char *err, size_t errlen);
/* The committed record of key (recurse false) or of every key under the
 * prefix, tombstones included: the number visited, or -1. */
int kv_engine_records(struct kv_engine *e, const char *key, size_t key_len, bool recurse,
                      kv_store_fn fn, void *ud);

#endif
