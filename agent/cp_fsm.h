/*
 * agent/cp_fsm.h — the CP store's state machine, sans-I/O: what a server
 * does with a committed Raft entry, and its snapshots.
 *
 * Owns: the applied index and the last version a pinned write used (both
 * kept in the replica itself, in the reserved key CP_APPLIED_KEY, written in
 * the same batch as each entry's records so they commit together), the
 * decoding of entries (agent/cp_wire.h) and their application to a kv/
 * engine with pinned versions (kv_engine_write_pinned: CAS and the other
 * checks are decided here, at apply time, identically on every server), the
 * restore entries (/v1/snapshot), and Raft snapshots of the whole replica.
 *
 * Data flow: the driver hands it each committed entry with its Raft index
 * (cp_fsm_apply); the entry's records are staged in the engine's open batch
 * and its done callback runs after the driver commits that batch. Two
 * drivers: agent/server.c (libraft on the agent's libev loop, the batch
 * committed once per loop turn by kv/kv.c) and tests/raftsim/ (libraft's
 * fixture on virtual time, the batch committed after each step).
 *
 * It never reads a clock, draws a random number or touches a socket; the
 * base version a leader proposes comes from the caller (cp_fsm_base).
 *
 * Error convention: an entry that does not decode, or that the store
 * refuses, is logged and skipped (every server skips it alike); snapshot
 * and restore answer libraft's codes (0, RAFT_NOMEM, RAFT_MALFORMED).
 */
#ifndef RUMOR_AGENT_CP_FSM_H
#define RUMOR_AGENT_CP_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/engine.h"

#define CP_RAFT_PREFIX "_rumor/raft/"
#define CP_APPLIED_KEY CP_RAFT_PREFIX "applied"

/* Called for each op of an entry before it is staged (the server's
 * sessions end a SESSION_END's TTL timer); optional. */
typedef void (*cp_fsm_op_fn)(void *ctx, const struct kv_op *op);

/* The caller owns it (embed it); cp_fsm_init fills it. */
struct cp_fsm {
	struct kv_engine *kv;
	cp_fsm_op_fn before_op;
	void *ctx;
	uint64_t applied;      /* the Raft index stored in CP_APPLIED_KEY */
	uint64_t last_version; /* the last version a pinned write used */
	bool loaded;
	uint64_t n_applied; /* entries applied (skipped ones not counted) */
};

/* Bind to an engine (not owned); nothing is read until cp_fsm_load. */
void cp_fsm_init(struct cp_fsm *f, struct kv_engine *kv, cp_fsm_op_fn before_op, void *ctx);
/* Read the applied index and last version from the replica, once. */
void cp_fsm_load(struct cp_fsm *f);
/* A fresh group: nothing applied or written yet. */
bool cp_fsm_fresh(struct cp_fsm *f);
/* The base version of an entry proposed now: next (the engine's next
 * version at the leader's clock), raised past every version applied. */
uint64_t cp_fsm_base(struct cp_fsm *f, uint64_t next);

/* Apply the committed entry buf[0..len) at Raft index `index`: true when
 * done(ud, result, failed_op) was or will be called (after the engine's
 * batch commits, or at once when a check failed); false when it will not
 * (already in the replica, undecodable, refused). */
bool cp_fsm_apply(struct cp_fsm *f, uint64_t index, const uint8_t *buf, size_t len, kv_done_fn done,
                  void *ud);

/* A snapshot of every record, tombstones and CP_APPLIED_KEY included:
 * u32 count, then (u16 key_len, key, record) each, into *p (raft_malloc'd,
 * the caller or libraft frees it). It includes what the open batch staged:
 * libraft takes a snapshot right after applying, in the same loop turn,
 * before the batch commits. 0 or RAFT_NOMEM. (agent/server.c takes its
 * snapshots off the loop from an LMDB reader instead, in this format;
 * tests/raftsim uses this one.) */
int cp_fsm_snapshot(struct cp_fsm *f, uint8_t **p, size_t *len);
/* The replica becomes a snapshot's records (staged; the driver commits).
 * 0 or RAFT_MALFORMED. p is not freed. */
int cp_fsm_restore(struct cp_fsm *f, const uint8_t *p, size_t len);

/* A growable buffer of records as kv/repl.h's RECORDS body lays them out
 * (u16 key_len, key, record), raft_malloc'd: cp_dump_record is a
 * kv_store_fn that appends one (-1 when out of memory). */
struct cp_dump {
	uint8_t *p;
	size_t len, cap;
	uint32_t n;
};
int cp_dump_record(void *ud, const char *key, size_t key_len, const struct kv_rec *r);

#endif
