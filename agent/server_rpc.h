/*
 * agent/server_rpc.h — server RPC: the connections servers (and clients
 * calling servers) keep with each other on the sync port (8300, Consul's
 * server RPC port), for Raft messages and requests forwarded to a server.
 *
 * One port, two protocols: the KV sync listener (kv/kv.c) accepts every
 * connection; when the first frame of an accepted connection is one of the
 * types below (>= SERVER_RPC_T_MIN, never a KV sync type) it hands the
 * socket and the bytes it has read over to server_rpc_adopt(). Frames are
 * KV sync frames (kv/repl.h: u32 length, u8 type, payload) and, with a
 * keyring, are sealed exactly as KV sync frames are (KV_F_SEALED, the
 * header and the direction as associated data, dialer = initiator): a
 * plaintext frame with a keyring, a sealed one without, or one no key
 * opens closes the connection unanswered.
 *
 * Frames (inner type, payload; integers big-endian):
 *   HELLO   0x40  u64 server_id (0: a client), u8 addr_len, addr (the
 *                 sender's server RPC address "ip:port", empty on a
 *                 client), u8 node_len, node. First frame of every
 *                 connection, from the dialer; nothing else is accepted
 *                 before it.
 *   RAFT    0x41  one server/raft_wire.h message (from a server only)
 *   REQUEST 0x42  u64 req_id, u8 method, payload (the method's)
 *   REPLY   0x43  u64 req_id, u8 status, payload
 *   PART    0x44  u32 total, bytes: a piece of one RAFT message too large
 *                 for a frame of its own (over SERVER_RPC_PART_SIZE: an
 *                 InstallSnapshot), from a server only. The pieces of a
 *                 message follow each other in order on the connection
 *                 (other frames may come between them); the message is
 *                 handed to the raft handler when `total` bytes are in.
 *                 One message at a time per connection.
 * A dialer sends HELLO, then RAFT and REQUEST frames; the acceptor sends
 * only REPLY frames back. Each side dials its own connections (one per
 * remote address, reused for RAFT and REQUEST).
 *
 * Memory bound (stated, tested): at most SERVER_RPC_MAX_CONNS accepted
 * connections; a frame is at most SERVER_RPC_FRAME_MAX bytes once HELLO is
 * in (KV_FRAME_MAX before: an unauthenticated peer cannot make us buffer
 * more than a sync peer can); all connections' buffers together stay under
 * SERVER_RPC_BUFFER_BUDGET (a connection that would pass it is closed, a
 * send that would pass it fails). At most SERVER_RPC_MAX_CALLS calls wait
 * for replies. A RAFT message sent in PARTs is at most
 * SERVER_RPC_MESSAGE_MAX; the messages being sent or received in parts hold
 * their whole length outside the buffers, all of them together under
 * SERVER_RPC_ASSEMBLY_BUDGET (a first PART that would pass it closes the
 * connection, a send that would fails). Only a peer that said HELLO with a
 * server id can send PARTs.
 *
 * Error convention: functions return 0 or -1 (with err where taken);
 * callbacks never run inside the call that caused them.
 */
#ifndef RUMOR_AGENT_SERVER_RPC_H
#define RUMOR_AGENT_SERVER_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct kv_seal;
struct server_rpc;

#define SERVER_RPC_T_HELLO 0x40
#define SERVER_RPC_T_RAFT 0x41
#define SERVER_RPC_T_REQUEST 0x42
#define SERVER_RPC_T_REPLY 0x43
#define SERVER_RPC_T_PART 0x44
#define SERVER_RPC_T_MIN SERVER_RPC_T_HELLO
#define SERVER_RPC_T_MAX SERVER_RPC_T_PART

#define SERVER_RPC_FRAME_MAX (64u << 20)        /* a REPLY carries a backup in one */
#define SERVER_RPC_PART_SIZE (4u << 20)         /* larger RAFT messages go in PARTs */
#define SERVER_RPC_MESSAGE_MAX (512u << 20)     /* the largest RAFT message */
#define SERVER_RPC_ASSEMBLY_BUDGET (512u << 20) /* messages in parts, all together */
#define SERVER_RPC_BUFFER_BUDGET (160u << 20)   /* all connections' buffers */
#define SERVER_RPC_MAX_CONNS 256
#define SERVER_RPC_MAX_CALLS 4096

struct server_rpc_config {
	struct ev_loop *loop;
	uint64_t self_id;      /* our Raft id; 0 on a client */
	const char *self_addr; /* our server RPC address "ip:port"; "" on a client */
	const char *node_name;
	const char *bind_addr;  /* source IPv4 of our dials (NULL, "", 0.0.0.0: any) */
	size_t buffer_budget;   /* 0: SERVER_RPC_BUFFER_BUDGET (tests set less) */
	size_t assembly_budget; /* 0: SERVER_RPC_ASSEMBLY_BUDGET (tests set less) */
};

struct server_rpc_handlers {
	void *ctx;
	/* A RAFT frame from the server that said HELLO with from_id/from_addr
	 * on this connection. */
	void (*raft)(void *ctx, uint64_t from_id, const char *from_addr, const uint8_t *p,
	             size_t n);
	/* A REQUEST: answer it with server_rpc_reply(conn_id, req_id, ...),
	 * now or later (a reply to a closed connection is dropped). from_node
	 * is the node name the peer's HELLO gave. */
	void (*request)(void *ctx, uint64_t conn_id, uint64_t req_id, uint8_t method,
	                const char *from_node, const uint8_t *p, size_t n);
	/* Optional. Our connection to addr ended because the peer closed it
	 * (refused false: its process closed the socket or is gone) or a dial
	 * of addr was refused (refused true: nothing listens there). Not
	 * called for timeouts, protocol errors or our own closes. */
	void (*peer_down)(void *ctx, const char *addr, bool refused);
};

/* A call's outcome: status >= 0 is the REPLY's status byte with its
 * payload; status < 0 means no reply came (SERVER_RPC_E_*). */
#define SERVER_RPC_E_TRANSPORT (-1) /* connection lost: the request may have arrived */
#define SERVER_RPC_E_TIMEOUT (-2)
#define SERVER_RPC_E_SHUTDOWN (-3) /* server_rpc_free() ran first */
#define SERVER_RPC_E_UNSENT (-4)   /* no connection was up: the request never left */
typedef void (*server_rpc_reply_fn)(void *ud, int status, const uint8_t *p, size_t n);

struct server_rpc *server_rpc_new(const struct server_rpc_config *cfg,
                                  const struct server_rpc_handlers *h, char *err, size_t errlen);
/* Closes every connection; pending calls get SERVER_RPC_E_SHUTDOWN from
 * inside this call (the only exception to "never inside the call"). */
void server_rpc_free(struct server_rpc *rpc);
/* Seal every frame with seal (copied; its ctx must outlive rpc); NULL:
 * plaintext. Existing connections are closed. */
void server_rpc_set_seal(struct server_rpc *rpc, const struct kv_seal *seal);

/* Take over an accepted socket whose first bytes (buf, len: at least the
 * whole first frame) the KV sync listener has read. */
void server_rpc_adopt(struct server_rpc *rpc, int fd, const char *peer, const uint8_t *buf,
                      size_t len);

/* Queue one RAFT message for the server at addr (dialling it if needed):
 * one RAFT frame, or PARTs when it is over SERVER_RPC_PART_SIZE (p is
 * copied either way). 0 queued, -1 no way now (budget, bad address, over
 * SERVER_RPC_MESSAGE_MAX, a message already going in parts to addr). */
int server_rpc_send_raft(struct server_rpc *rpc, const char *addr, const uint8_t *p, size_t n);

/* Dial addr now if our connection to it is down, even within the redial
 * pause. 1: refused at once (loopback does that); 0: up, dialling (a
 * refusal comes to peer_down), or the dial failed otherwise; -1: a bad
 * address or a full table. */
int server_rpc_probe(struct server_rpc *rpc, const char *addr);

/* Send a REQUEST to addr; fn is called exactly once, from the loop, with
 * the reply or an error, within timeout_ms. 0, or -1 (fn not called). */
int server_rpc_call(struct server_rpc *rpc, const char *addr, uint8_t method, const uint8_t *p,
                    size_t n, int64_t timeout_ms, server_rpc_reply_fn fn, void *ud);

/* Answer request req_id that arrived on conn_id. */
void server_rpc_reply(struct server_rpc *rpc, uint64_t conn_id, uint64_t req_id, uint8_t status,
                      const uint8_t *p, size_t n);

struct server_rpc_stats {
	uint64_t conns_in, conns_out, conns_open;
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t refused_plain, refused_decrypt, refused_sealed, refused_proto;
	uint64_t budget_closed, calls, calls_failed;
	uint64_t refused_conns; /* accepted over SERVER_RPC_MAX_CONNS, closed at once */
	uint64_t sends_dropped; /* RAFT/REQUEST/REPLY not queued: budget, backlog, size */
	size_t buffered;        /* bytes held in buffers now */
	size_t assembling;      /* bytes of RAFT messages held for sending or receiving in parts */
	uint64_t parted_out, parted_in; /* RAFT messages sent / received whole in parts */
};
void server_rpc_get_stats(const struct server_rpc *rpc, struct server_rpc_stats *st);

#endif
