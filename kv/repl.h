/*
 * kv/repl.h — KV replication protocol, sans-I/O: the gossip messages and
 * the anti-entropy exchange over a byte stream.
 *
 * Owns: the encoders and (paranoid) decoders of every byte rumor's KV sends
 * between agents, and the sync session state machine. It never touches a
 * socket, a clock or a random source: the driver (kv/kv.c on libev, or the
 * simulator) feeds it frames and writes out what it returns. Records it
 * receives are handed to the caller's apply function, which merges them
 * (larger (hlc, node) wins) into the store.
 *
 * Gossip user messages (memberlist user payload; first byte is the type):
 *   0x80 SET       u16 key_len, key, record (kv/store.h encoding)
 *                  - values up to KV_INLINE_MAX bytes travel inline
 *   0x81 ANNOUNCE  u16 key_len, key, u64 hlc, u8 node_len, node, u32 size
 *                  - a larger value: receivers that hold an older version
 *                    pull it from the writer over TCP (PULL below)
 *
 * Sync stream frames: u32 length (of type + payload, big-endian), u8 type,
 * payload; a frame is at most KV_FRAME_MAX bytes (one largest record with
 * room to spare), so a receiver's buffer is bounded whatever the store's
 * size. Exchange, initiator I and responder R:
 *   I -> R  ROOT     u64 (kv_store_root: one hash over the bucket sums)
 *   R -> I  END      roots equal: both sides done (an idle store's round
 *                    costs 13 bytes one way and 5 back), or
 *   R -> I  ROOT     u64 R's root: they differ, go on with the digest
 *   I -> R  DIGEST   KV_BUCKETS x u64 (sums of entry hashes per bucket)
 *   R -> I  DIFF     u8[KV_BUCKETS/8] bitmap of differing buckets,
 *           RECORDS* R's records of those buckets, END
 *   I -> R  RECORDS* I's records of the same buckets that R did not just
 *           send (same key and version: see KV_SYNC_SEEN_MAX), END; both
 *           sides done.
 *   Pull:  I -> R PULL u16 key_len key;  R -> I RECORDS (0 or 1 record), END.
 * RECORDS body: u32 count, then count x (u16 key_len, key, record); a
 * sender starts a new RECORDS frame when one passes KV_CHUNK bytes. END has
 * no payload. Only differing buckets travel, so the bytes grow with the
 * difference (in bucket granularity: a differing bucket costs its whole
 * contents), not with the store; equal replicas exchange the 2 KiB digest
 * one way and about 20 bytes (an empty DIFF, two ENDs) back; equal roots
 * spare even that.
 *
 * Compatibility: ROOT is new in this release. A responder still takes a
 * DIGEST as its first frame (an older initiator), so old -> new works as
 * before. An older responder refuses ROOT as an unknown frame and closes;
 * the initiator sees a failed round that never got an answer
 * (kv_sync_root_unanswered) and the engine makes its next round a DIGEST
 * one (kv_sync_start_digest), which every release understands.
 *
 * Output is produced eagerly (everything a frame triggers is appended at
 * once: tests, fuzzing, the simulator) or, with `lazy` set, bucket by
 * bucket through kv_sync_pump as the driver's socket drains, so a sender's
 * buffer stays near KV_CHUNK plus one bucket however much differs.
 *
 * Sealed frames: with a keyring, every frame travels as
 *   u32 length, u8 KV_F_SEALED, keyring packet of (u8 type, payload)
 * with the 5 header bytes and the direction (initiator or responder) as
 * associated data. A receiver with a keyring refuses plaintext frames and
 * frames no key opens; one without refuses sealed frames. The seal itself
 * is the caller's (struct kv_seal): repl only frames it.
 *
 * Error convention: decoders return -1 with a message naming the field;
 * kv_sync_feed returns -1 with a message when the peer breaks the protocol.
 */
#ifndef RUMOR_KV_REPL_H
#define RUMOR_KV_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/hlc.h"
#include "kv/store.h"

#define KV_MSG_SET 0x80
#define KV_MSG_ANNOUNCE 0x81
#define KV_INLINE_MAX 512
#define KV_FRAME_MAX (1u << 20) /* plaintext frame: one largest record fits */
#define KV_CHUNK (256u << 10)   /* a RECORDS frame is closed past this size */
#define KV_SEAL_OVERHEAD_MAX 64 /* bytes a seal may add (AES-GCM adds 29) */

enum kv_frame_type {
	KV_F_DIGEST = 1,
	KV_F_DIFF = 2,
	KV_F_RECORDS = 3,
	KV_F_PULL = 4,
	KV_F_END = 5,
	KV_F_ROOT = 6,
	KV_F_SEALED = 10, /* memberlist's encryptMsg number */
};
/* Inner frame types no sync session uses: another protocol sharing the
 * sync port (the server RPC, agent/server_rpc.h). An accepted connection
 * that starts with one is handed over (kv_set_handoff in kv/kv.h). */
#define KV_F_FOREIGN_MIN 0x40
#define KV_F_FOREIGN_MAX 0x7f

/* Authenticated encryption of frames; the agent fills it from the gossip
 * keyring. encrypt writes a sealed form of msg into out and returns its
 * length or -1; decrypt tries every installed key and returns the
 * plaintext length or -1. overhead is what a seal adds. */
struct kv_seal {
	void *ctx;
	size_t overhead;
	int (*encrypt)(void *ctx, const uint8_t *msg, size_t len, const uint8_t *ad, size_t adlen,
	               uint8_t *out, size_t cap);
	int (*decrypt)(void *ctx, const uint8_t *in, size_t len, const uint8_t *ad, size_t adlen,
	               uint8_t *out, size_t cap);
};

/* A growable output buffer (owned by the caller; kv_buf_free releases). */
struct kv_buf {
	uint8_t *p;
	size_t len, cap;
};
void kv_buf_free(struct kv_buf *b);

struct kv_msg {
	uint8_t type;
	const char *key; /* points into the message */
	size_t key_len;
	struct kv_rec rec; /* SET */
	uint64_t hlc;      /* ANNOUNCE */
	const char *node;
	uint8_t node_len;
	uint32_t size;
};

/* Decode a gossip user message (type 0x80/0x81). 0 or -1 with err. */
int kv_msg_decode(const uint8_t *p, size_t len, struct kv_msg *m, char *err, size_t errlen);
/* Encode SET into out (replaces its contents); 0 or -1 (no memory). */
int kv_msg_encode_set(struct kv_buf *out, const char *key, size_t key_len, const struct kv_rec *r);
/* Encode ANNOUNCE for a record whose value is too large to inline. */
int kv_msg_encode_announce(struct kv_buf *out, const char *key, size_t key_len,
                           const struct kv_rec *r);

/* Split one frame off a stream buffer: returns bytes consumed (>0) with
 * type, payload and plen set, 0 if more bytes are needed, -1 if malformed. */
long kv_frame_next(const uint8_t *p, size_t len, uint8_t *type, const uint8_t **payload,
                   size_t *plen, char *err, size_t errlen);

/* Merge one received record; returns 1 applied (newer), 0 ignored, -1 error. */
typedef int (*kv_apply_fn)(void *ctx, const char *key, size_t key_len, const struct kv_rec *r);

enum kv_sync_role { KV_SYNC_INITIATOR, KV_SYNC_RESPONDER, KV_SYNC_PULLER };

/* The initiator remembers up to KV_SYNC_SEEN_MAX of the records the
 * responder sent (key hash, version, entry hash: an open-addressing table in
 * the session, no allocation, 24 KiB) and does not send back its own record
 * of such a key when the responder's version is newer or the very same:
 * after merging, most of a differing bucket is what both hold. */
#define KV_SYNC_SEEN_SLOTS 1024
#define KV_SYNC_SEEN_MAX (KV_SYNC_SEEN_SLOTS * 3 / 4)

struct kv_sync_seen {
	uint64_t key;   /* hash of the key; 0: empty slot */
	uint64_t hlc;   /* the responder's version */
	uint64_t entry; /* kv_store_entry_hash of the responder's record */
};

struct kv_sync {
	enum kv_sync_role role;
	int state;
	struct kv_store *store;
	kv_apply_fn apply;
	void *ctx;
	uint8_t diff[KV_BUCKETS / 8];
	uint64_t records_in, records_out;
	struct kv_sync_seen seen[KV_SYNC_SEEN_SLOTS];
	unsigned nseen;
	bool lazy;       /* set after kv_sync_start: output through kv_sync_pump */
	bool sending;    /* our RECORDS stream is not finished (lazy) */
	unsigned cursor; /* next bucket to send */
};

/* Start a session; the initiator/puller's first frame is appended to out. */
int kv_sync_start(struct kv_sync *s, enum kv_sync_role role, struct kv_store *st, kv_apply_fn apply,
                  void *ctx, const char *pull_key, size_t pull_key_len, struct kv_buf *out);
/* An initiator that opens with the whole DIGEST (no ROOT first): the
 * exchange of releases before ROOT, for a peer that refused ROOT. */
int kv_sync_start_digest(struct kv_sync *s, struct kv_store *st, kv_apply_fn apply, void *ctx,
                         struct kv_buf *out);
/* An initiator whose ROOT got no answer at all: the peer may be an older
 * release (or was gone); the next round should open with a DIGEST. */
bool kv_sync_root_unanswered(const struct kv_sync *s);
/* An initiator's round ended on equal roots (nothing was compared). */
bool kv_sync_roots_equal(const struct kv_sync *s);
/* Feed one frame: 0 continue (frames appended to out), 1 nothing more to
 * receive (the session is over once kv_sync_sending is false and out is
 * written), -1 error. */
int kv_sync_feed(struct kv_sync *s, uint8_t type, const uint8_t *payload, size_t plen,
                 struct kv_buf *out, char *err, size_t errlen);
/* Lazy sessions: append more of our RECORDS stream until out holds `want`
 * bytes or the stream (with its END) is complete. 0, or -1 (no memory). */
int kv_sync_pump(struct kv_sync *s, struct kv_buf *out, size_t want);
/* Our RECORDS stream still has buckets to send. */
bool kv_sync_sending(const struct kv_sync *s);

/* Seal whole plaintext frames in[0..len) into sealed frames appended to
 * out; from_initiator says which side sends them. 0, or -1 (no memory, or
 * the seal failed). */
int kv_frames_seal(const struct kv_seal *k, bool from_initiator, const uint8_t *in, size_t len,
                   struct kv_buf *out);
/* Open one sealed frame (hdr: its 5 header bytes; payload: what follows)
 * into plain (its contents replaced); *type, *pl, *pn describe the inner
 * frame. 0, or -1 with err (no key opens it, or the inner frame is empty). */
int kv_frame_open(const struct kv_seal *k, bool from_initiator, const uint8_t *hdr,
                  const uint8_t *payload, size_t plen, struct kv_buf *plain, uint8_t *type,
                  const uint8_t **pl, size_t *pn, char *err, size_t errlen);

/*
 * The two writes every replica makes, shared by the agent (kv/kv.c) and the
 * simulator so both run one rule. Both write into the store's open batch.
 */

/* What kv_merge_rec did with a record. */
enum kv_merge_result {
	KV_MERGE_ERROR = -1,  /* store error */
	KV_MERGE_IGNORED = 0, /* not newer, a key of bad size, or an expired tombstone */
	KV_MERGE_STORED = 1,  /* newer: stored, and the clock has observed it */
	KV_MERGE_AHEAD = 2,   /* refused: its version is more than max_ahead_ms past now */
	KV_MERGE_HELD = 3,    /* not stored: that very version is (an echo) */
};

/* Merge a record received from a peer (gossip, sync or pull); opens the
 * batch if none is open. A tombstone older than ttl_ms before now_ms is
 * ignored (we purged ours, do not take it back). A version more than
 * max_ahead_ms ahead of now_ms is refused (CockroachDB's max-offset): taken
 * in, it would drag every clock that sees it into the future and make the
 * key unwritable once its millisecond field overflows. A stored version
 * that far ahead (written before this rule) loses to any record. */
enum kv_merge_result kv_merge_rec(struct kv_store *st, struct kv_hlc *hlc, int64_t now_ms,
                                  int64_t ttl_ms, int64_t max_ahead_ms, const char *key,
                                  size_t key_len, const struct kv_rec *r);
/* A version more than max_ahead_ms past now_ms (a clock far off, or forged). */
bool kv_version_ahead(uint64_t hlc, int64_t now_ms, int64_t max_ahead_ms);

/* Stamp a local put (tomb false) or delete (tomb true) for writer node:
 * *out gets its version from hlc at now_ms, its create index (kept from a
 * live old version) and its flags (0 for a delete); no value, and nothing
 * is written: the caller sets out->value / value_len and calls
 * kv_store_put in the open batch. 1 stamped, 0 nothing to do (deleting an
 * absent key), -1 store error. */
int kv_local_stamp(struct kv_store *st, struct kv_hlc *hlc, int64_t now_ms, const char *node,
                   size_t node_len, const char *key, size_t key_len, bool tomb, uint64_t flags,
                   struct kv_rec *out);

/* An ANNOUNCE (m) names a version newer than the one st holds: 1 (pull
 * it), 0 (ours is as new or newer), -1 store error. The caller refuses an
 * announce that kv_version_ahead flags before asking. */
int kv_announce_newer(struct kv_store *st, const struct kv_msg *m);

/* A pull of (pkey, phlc) in flight makes a pull of (key, hlc) redundant:
 * the same key, at that version or newer. Every node that relays an
 * ANNOUNCE would otherwise start one more pull of the same write. */
bool kv_pull_covers(const char *pkey, size_t pkey_len, uint64_t phlc, const char *key,
                    size_t key_len, uint64_t hlc);

/* Decode a RECORDS body calling apply per record; count or -1 (fuzzing). */
long kv_records_decode(const uint8_t *p, size_t len, kv_apply_fn apply, void *ctx, char *err,
                       size_t errlen);

#endif
