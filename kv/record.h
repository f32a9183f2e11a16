/*
 * kv/record.h — one version of one key, and its bytes.
 *
 * Owns: struct kv_rec and its codec, the one encoding every KV module
 * shares: the write-ahead log (kv/wal.c) and LMDB (kv/store.c) keep it on
 * disk, and the replication messages (kv/repl.c) carry it between agents:
 *   u8 version(1) u8 tombstone u64 hlc u64 create_hlc u64 flags
 *   u8 node_len node[node_len] u32 value_len value[value_len]   (big-endian)
 * and, for a key that has been locked (version byte 2 instead of 1),
 *   u64 lock_index u8 session_len session[session_len]
 * (a record never locked is written as version 1, byte for byte as before
 * locks existed); and, for a record a Raft entry wrote (version byte 3:
 * the lock fields are then always present, empty or not),
 *   u64 lock_index u8 session_len session[session_len]
 *   u64 raft_index u64 raft_create
 * (a record no Raft entry wrote is version 1 or 2, byte for byte as before
 * servers existed: AP stores, logs and the wire are unchanged); and the
 * order of versions: the larger (hlc, node) wins.
 *
 * The Raft fields are what CP mode shows as indexes (kv/engine.h): the
 * index of the entry that wrote this version and of the one that created
 * the key. They never take part in the order, the digest or any time
 * judgement: those read the HLC version alone.
 *
 * Pure functions over buffers: no state, no I/O, no allocation. Here, below
 * the store and the log, so that each can use it without the other (the
 * log used to include the store's header for it, and the store the log's).
 *
 * Error convention: kv_rec_decode returns -1 with a message naming the
 * field; nothing else can fail.
 */
#ifndef RUMOR_KV_RECORD_H
#define RUMOR_KV_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_rec {
	uint64_t hlc;
	uint64_t create;
	uint64_t flags;
	bool tomb;
	uint8_t node_len;
	const char *node; /* not NUL-terminated */
	uint32_t value_len;
	const uint8_t *value;
	/* locks (servers only, docs/SESSIONS.md): how many times the key was
	 * acquired, and the session holding it (session_len 0: none) */
	uint64_t lock_index;
	uint8_t session_len;
	const char *session; /* not NUL-terminated */
	/* CP mode (servers): the Raft index of the entry that wrote this
	 * version, and of the entry that created the key (0, 0: no Raft entry
	 * wrote it; when raft_index is set, 1 <= raft_create <= raft_index) */
	uint64_t raft_index;
	uint64_t raft_create;
};

/* The record carries lock fields (it is written as version 2, or 3). */
bool kv_rec_locked(const struct kv_rec *r);
/* A Raft entry wrote it: it carries Raft indexes (written as version 3). */
bool kv_rec_raft(const struct kv_rec *r);
/* Bytes kv_rec_encode writes. */
size_t kv_rec_size(const struct kv_rec *r);
/* Writes the record at buf (room for kv_rec_size); returns the end. */
uint8_t *kv_rec_encode(const struct kv_rec *r, uint8_t *buf);
/* Reads one record from [*pos, end); pointers in r point into the input.
 * 0 and *pos advanced, or -1 with err naming the field. */
int kv_rec_decode(const uint8_t **pos, const uint8_t *end, struct kv_rec *r, char *err,
                  size_t errlen);
/* The index of a record, what every index clients see is made of: the
 * Raft index of the entry that wrote it when one did (kv_rec_raft), else
 * the index form of its version (kv/hlc.h). CAS, blocking queries and
 * X-Consul-Index all compare these. Never 0. */
uint64_t kv_rec_index(const struct kv_rec *r);
/* The index of the write that created the key, by the same rule (0: a
 * record without a creating version). */
uint64_t kv_rec_create_index(const struct kv_rec *r);
/* >0 if a's version (hlc, node) is larger than b's, 0 equal, <0 smaller. */
int kv_rec_cmp(const struct kv_rec *a, const struct kv_rec *b);

#endif
