/*
 * agent/cp_wire.h — the bytes of the CP store, sans-I/O: the Raft entries
 * servers apply (agent/cp.c's FSM) and the requests agents forward to the
 * servers over server RPC (agent/server_rpc.h REQUEST/REPLY).
 *
 * Owns: encoders and paranoid decoders (every length checked against what
 * is left before it is used, trailing bytes refused, every field named in
 * the error) for
 *   ops    := u16 n (1..KV_TXN_MAX_OPS), n x (u8 verb, u64 flags, u64 index,
 *             u16 key_len (<= KV_KEY_MAX), key, u32 value_len
 *             (<= KV_VALUE_MAX), value, and for the lock verbs
 *             (KV_OP_LOCK..KV_OP_SESSION_END) u8 session_len
 *             (1..KV_SESSION_MAX), session)
 *   entry  := u8 CP_WIRE_VERSION, u8 kind (CP_ENTRY_WRITE), u64 base
 *             version, u8 node_len (1..KV_NODE_MAX), node, ops
 *   WRITE request (method CP_M_WRITE) := u8 node_len, node, ops
 *   READ_INDEX request (CP_M_READ_INDEX) := empty; reply := u64 index
 *   READ request (CP_M_READ, CP_M_READ_CONSISTENT) := u8 recurse (0/1),
 *             u16 key_len, key; reply := u64 applied index, RECORDS body
 *             (kv/repl.h: u32 n, n x (u16 key_len, key, record)) of the key
 *             or prefix, tombstones included
 *   STATUS request (CP_M_STATUS) := empty; reply := the leader's address
 *   restore entry := u8 CP_WIRE_VERSION, u8 CP_ENTRY_RESTORE, u64 base,
 *             u8 node_len, node, then a RECORDS body (kv/repl.h) to the end:
 *             the replica becomes those records (kv_engine_replace_pinned)
 *   RESTORE request (CP_M_RESTORE) := u8 node_len, node, RECORDS body
 *   SNAPSHOT request (CP_M_SNAPSHOT) := empty; reply := u64 applied index,
 *             RECORDS body of every record (the server's replica, read
 *             after the leader's applied index reached it)
 *   REMOVE_PEER request (CP_M_REMOVE_PEER) := a server's ID (hex) or address;
 *             the leader removes it: reply CP_S_OK, or CP_S_FAILED with the
 *             reason as text
 *   RENEW request (CP_M_RENEW) := the session ID; served by the leader
 *             (it resets the session's TTL timer): reply CP_S_OK, or
 *             CP_S_FAILED when no such session exists
 * Replies carry a status byte (enum cp_status) in the server RPC REPLY;
 * a WRITE reply's payload is u32 failed_op (0xffffffff: none), then, when
 * it succeeded, u64 applied index and the RECORDS body of the keys it wrote
 * (omitted past CP_REPLY_RECORDS_MAX bytes: gossip brings them).
 * Decoded ops point into the input buffer (nothing is copied).
 */
#ifndef RUMOR_AGENT_CP_WIRE_H
#define RUMOR_AGENT_CP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/engine.h"
#include "kv/limits.h"

#define CP_WIRE_VERSION 1
#define CP_ENTRY_WRITE 1
#define CP_ENTRY_RESTORE 2

enum cp_method {
	CP_M_WRITE = 1,
	CP_M_READ_INDEX = 2,
	CP_M_READ = 3,            /* default mode: the leader's records */
	CP_M_READ_CONSISTENT = 4, /* the same after a barrier */
	CP_M_STATUS = 5,          /* empty; reply: the leader's address */
	CP_M_RENEW = 6,           /* a session's ID; the leader restarts its TTL */
	CP_M_RESTORE = 7,         /* replace the store by a snapshot's records */
	CP_M_SNAPSHOT = 8,        /* empty; reply: applied index, every record */
	CP_M_REMOVE_PEER = 9,     /* a server's ID or address; reply: the error text */
	CP_M_LEADS = 10,          /* u64 term, u64 leader id: CP_S_OK if this server
	                           * follows that leader in that term, else FAILED */
};

enum cp_status {
	CP_S_OK = 0,
	CP_S_FAILED = 1,    /* a check (CAS) failed; nothing changed */
	CP_S_NO_LEADER = 2, /* no leader took it: nothing changed */
	CP_S_ERROR = 3,     /* storage or protocol error */
	CP_S_UNKNOWN = 4,   /* leadership lost after the entry was proposed */
	CP_S_TOO_BIG = 5,   /* the answer would not fit in one frame */
};

#define CP_REPLY_RECORDS_MAX (4u << 20)

struct cp_ops {
	struct kv_op op[KV_TXN_MAX_OPS];
	size_t n;
};

struct cp_entry {
	uint8_t kind;
	uint64_t base;
	char node[KV_NODE_MAX + 1];
	struct cp_ops ops;
};

/* The verb carries a session on the wire. */
bool cp_wire_lock_verb(int verb);
/* Bytes the encodings take. */
size_t cp_wire_ops_size(const struct kv_op *ops, size_t n);
/* Encoders write into buf (room for the size above plus the header: use
 * the *_size functions); they return the bytes written. */
size_t cp_wire_entry_size(const char *node, const struct kv_op *ops, size_t n);
size_t cp_wire_entry_encode(uint8_t *buf, uint64_t base, const char *node, const struct kv_op *ops,
                            size_t n);
size_t cp_wire_write_size(const char *node, const struct kv_op *ops, size_t n);
size_t cp_wire_write_encode(uint8_t *buf, const char *node, const struct kv_op *ops, size_t n);

size_t cp_wire_restore_entry_size(const char *node, size_t body_len);
size_t cp_wire_restore_entry_encode(uint8_t *buf, uint64_t base, const char *node,
                                    const uint8_t *body, size_t body_len);
size_t cp_wire_restore_size(const char *node, size_t body_len);
size_t cp_wire_restore_encode(uint8_t *buf, const char *node, const uint8_t *body, size_t body_len);

/* The kind of an entry (CP_ENTRY_*), or -1 (short, or another version). */
int cp_wire_entry_kind(const uint8_t *p, size_t n);
/* Decoders: 0, or -1 with err naming the field. */
int cp_wire_restore_entry_decode(const uint8_t *p, size_t n, uint64_t *base, char *node,
                                 const uint8_t **body, size_t *body_len, char *err, size_t errlen);
int cp_wire_restore_decode(const uint8_t *p, size_t n, char *node, const uint8_t **body,
                           size_t *body_len, char *err, size_t errlen);
int cp_wire_entry_decode(const uint8_t *p, size_t n, struct cp_entry *e, char *err, size_t errlen);
int cp_wire_write_decode(const uint8_t *p, size_t n, char *node, struct cp_ops *ops, char *err,
                         size_t errlen);
int cp_wire_read_decode(const uint8_t *p, size_t n, bool *recurse, const char **key,
                        size_t *key_len, char *err, size_t errlen);

#endif
