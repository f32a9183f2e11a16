/*
 * agent/server_rpc.c — see server_rpc.h. The libev driver of the server
 * RPC; the bytes are agent/server_rpc_wire.c's, the framing and sealing
 * kv/repl.h's (the same frames, the same seal as a KV sync session).
 *
 * Connections. An outbound one is an entry per remote address, dialled
 * on the first send and kept open, idle or not; when it fails (connect
 * refused or over 1 s, EOF, error, a frame refused) its calls fail with
 * SERVER_RPC_E_TRANSPORT and the entry stays "down" with the time it
 * failed, so a send within RPC_REDIAL_S of that does not dial again (a
 * Raft leader sends to a dead peer many times a second). An inbound one
 * comes from the KV sync listener (server_rpc_adopt) and lives until the
 * peer closes it, it breaks the protocol, or the table is full and it is
 * the one idle longest (RPC_EVICT_IDLE_S at least).
 *
 * Deadlines, one ev_timer per connection set to the earliest that
 * applies: a connect within RPC_CONNECT_TIMEOUT_S, HELLO within
 * RPC_HELLO_TIMEOUT_S of the accept, and no RPC_STALL_S without progress
 * while a frame is half received or output is pending.
 *
 * Memory: every buffer grows through buf_need(), which keeps the sum of
 * all capacities (rpc->buffered) under the budget; a received frame's
 * length is checked (KV_FRAME_MAX before HELLO, SERVER_RPC_FRAME_MAX
 * after) before its buffer grows, and a connection's unsent output may
 * pass RPC_OUT_HIGH by one frame only. Large buffers are released once
 * empty.
 *
 * Large RAFT messages (an InstallSnapshot) go in PARTs: the sender keeps a
 * copy of the message on the connection (c->big) and queues the next part
 * each time its output drains (part_pump, from conn_write), so a 500 MiB
 * snapshot never sits whole in the write buffer; the receiver gathers the
 * parts in c->asm. Both count against rpc->assembling, under the assembly
 * budget. Other frames keep flowing between the parts: heartbeats are not
 * held up by a snapshot.
 *
 * Re-entrancy: handlers and reply functions run from conn_cb and
 * call_timer_cb only, and may call anything here, server_rpc_free and
 * server_rpc_set_seal included. The connection being processed is then
 * only marked dead (its receive buffer is still being walked) and
 * finished by conn_cb; the rpc itself is freed when the outermost
 * callback returns (rpc->depth).
 */
#define _GNU_SOURCE
#include "agent/server_rpc.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/server_rpc_wire.h"
#include "kv/repl.h"
#include "lib/cursor.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#define RPC_CONNECT_TIMEOUT_S 1.0
#define RPC_REDIAL_S 0.2
#define RPC_HELLO_TIMEOUT_S 5.0
#define RPC_STALL_S 10.0
#define RPC_EVICT_IDLE_S 10.0
#define RPC_READ_MIN 65536u
#define RPC_READS_PER_EVENT 32 /* then let the loop serve others */
#define RPC_KEEP (256u << 10)  /* empty buffers larger than this are released */
#define RPC_OUT_HIGH (8u << 20)
#define RPC_ADDR_MAX 64

struct rpc_call {
	struct server_rpc *rpc;
	struct rpc_call *prev, *next;
	struct rpc_conn *conn; /* NULL once its outcome is decided */
	uint64_t req_id;
	int status; /* decided outcome, delivered by the timer at 0 s */
	bool decided;
	server_rpc_reply_fn fn;
	void *ud;
	ev_timer timer;
};

struct rpc_conn {
	struct server_rpc *rpc;
	struct rpc_conn *prev, *next;
	uint64_t id;
	int fd; /* -1: an outbound entry that is down */
	ev_io io;
	ev_timer timer;
	bool outbound, connecting, hello; /* hello: the peer's HELLO is in (inbound) */
	bool dead;                        /* dropped while conn_cb processes it */
	int gone;    /* outbound: 1 the peer ended the connection, 2 it refused the connect */
	bool remove; /* ... and the entry goes too */
	struct kv_buf rbuf, wbuf, plain;
	size_t woff;
	double down_at;  /* outbound: when it last failed (0: never) */
	double born;     /* the accept or the dial: connect and HELLO deadlines */
	double progress; /* last byte moved, or the accept/dial */
	char addr[RPC_ADDR_MAX];
	uint64_t peer_id;
	char peer_addr[256], peer_node[256];
	/* a RAFT message going out in parts (outbound) or coming in (inbound) */
	uint8_t *big;
	size_t big_len, big_off;
};

struct server_rpc {
	struct ev_loop *loop;
	struct server_rpc_handlers h;
	char bind_addr[64];
	struct kv_seal seal;
	bool sealed;
	uint8_t hello[SERVER_RPC_HELLO_MAX];
	size_t hello_len;
	size_t budget, buffered;
	size_t asm_budget, assembling;
	struct rpc_conn *conns;
	size_t n_in, n_out;
	struct rpc_call *calls;
	size_t ncalls;
	uint64_t next_conn_id, next_req_id;
	struct kv_buf scratch; /* a plaintext frame on its way to the seal */
	struct rpc_conn *current;
	int depth;
	bool freeing;
	double refused_logged_at;
	struct server_rpc_stats st;
};

/* ---------------------------------------------------------- buffers */

/*
 * The only way a buffer grows: room for `extra` more bytes, doubling while
 * the budget allows and exactly what is needed when it is tight. false
 * when even that would pass the budget (nothing changed).
 */
static bool buf_need(struct server_rpc *rpc, struct kv_buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return true;
	size_t want = b->len + extra;
	size_t cap = b->cap ? 2 * b->cap : 4096;
	if (cap < want)
		cap = want; /* a large frame gets its size, not the next power of 2 */
	if (rpc->buffered - b->cap + cap > rpc->budget)
		cap = want;
	if (rpc->buffered - b->cap + cap > rpc->budget)
		return false;
	b->p = xrealloc(b->p, cap);
	rpc->buffered = rpc->buffered - b->cap + cap;
	b->cap = cap;
	return true;
}

static void buf_release(struct server_rpc *rpc, struct kv_buf *b)
{
	rpc->buffered -= b->cap;
	kv_buf_free(b);
	b->len = b->cap = 0;
}

/* An empty buffer past RPC_KEEP goes back: a snapshot must not pin 64 MiB. */
static void buf_trim(struct server_rpc *rpc, struct kv_buf *b)
{
	if (b->len == 0 && b->cap > RPC_KEEP)
		buf_release(rpc, b);
}

/* ------------------------------------------------------------ calls */

static void call_unlink(struct rpc_call *k)
{
	struct server_rpc *rpc = k->rpc;
	if (k->prev)
		k->prev->next = k->next;
	else
		rpc->calls = k->next;
	if (k->next)
		k->next->prev = k->prev;
	rpc->ncalls--;
	ev_timer_stop(rpc->loop, &k->timer);
}

static void call_finish(struct rpc_call *k, int status, const uint8_t *p, size_t n)
{
	call_unlink(k);
	if (status < 0)
		k->rpc->st.calls_failed++;
	server_rpc_reply_fn fn = k->fn;
	void *ud = k->ud;
	free(k);
	fn(ud, status, p, n);
}

/* The outcome is known now, but the caller hears it from the loop. */
static void call_decide(struct rpc_call *k, int status)
{
	k->conn = NULL;
	k->decided = true;
	k->status = status;
	ev_timer_stop(k->rpc->loop, &k->timer);
	ev_timer_set(&k->timer, 0., 0.);
	ev_timer_start(k->rpc->loop, &k->timer);
}

static void rpc_leave(struct server_rpc *rpc);

static void call_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct rpc_call *k = t->data;
	struct server_rpc *rpc = k->rpc;
	rpc->depth++;
	call_finish(k, k->decided ? k->status : SERVER_RPC_E_TIMEOUT, NULL, 0);
	rpc_leave(rpc);
}

/* ------------------------------------------------------ connections */

static void conn_link(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	c->next = rpc->conns;
	if (c->next)
		c->next->prev = c;
	rpc->conns = c;
	if (c->outbound)
		rpc->n_out++;
	else
		rpc->n_in++;
}

static void conn_unlink(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	if (c->prev)
		c->prev->next = c->next;
	else
		rpc->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	if (c->outbound)
		rpc->n_out--;
	else
		rpc->n_in--;
}

/* A message in parts is abandoned: Raft sends it again if it still needs to. */
static void big_drop(struct rpc_conn *c)
{
	if (c->big == NULL)
		return;
	c->rpc->assembling -= c->big_len;
	free(c->big);
	c->big = NULL;
	c->big_len = c->big_off = 0;
}

/* Buffers back, and the entry too unless it is an outbound one kept down
 * (its failure time rate-limits the next dial). */
static void conn_finish(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	buf_release(rpc, &c->rbuf);
	buf_release(rpc, &c->wbuf);
	buf_release(rpc, &c->plain);
	big_drop(c);
	c->woff = 0;
	c->dead = false;
	c->hello = false;
	if (c->remove || !c->outbound || rpc->freeing) {
		conn_unlink(c);
		free(c);
	}
}

/*
 * The one way a connection ends: socket closed, its calls decided (status),
 * then finished at once, or by conn_cb when it is the one being processed.
 */
static void conn_drop(struct rpc_conn *c, bool remove, int status)
{
	struct server_rpc *rpc = c->rpc;
	ev_io_stop(rpc->loop, &c->io);
	ev_timer_stop(rpc->loop, &c->timer);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
		if (c->outbound && !remove)
			c->down_at = ev_now(rpc->loop);
	}
	/* calls on a connection that never came up were never sent: say so, a
	 * caller may send a write again only then */
	int st = c->connecting && status == SERVER_RPC_E_TRANSPORT ? SERVER_RPC_E_UNSENT : status;
	c->connecting = false;
	c->remove = c->remove || remove;
	for (struct rpc_call *k = rpc->calls; k != NULL; k = k->next)
		if (k->conn == c)
			call_decide(k, st);
	if (rpc->current == c)
		c->dead = true;
	else
		conn_finish(c);
}

/* A frame or a peer this side will not take: counted, logged at most every
 * 10 s (a scan must not flood the log). */
static void refuse(struct rpc_conn *c, uint64_t *counter, const char *why)
{
	struct server_rpc *rpc = c->rpc;
	(*counter)++;
	double t = ev_now(rpc->loop);
	if (t - rpc->refused_logged_at >= 10.0) {
		rpc->refused_logged_at = t;
		log_warn("server rpc: %s %s refused: %s", c->outbound ? "connection to" : "peer",
		         c->addr, why);
	}
}

static bool from_initiator(const struct rpc_conn *c, bool sending)
{
	return sending ? c->outbound : !c->outbound;
}

/*
 * Queue one frame: type, head (REQUEST/REPLY's 9 bytes, or HELLO's
 * payload) and body, sealed with a keyring. false when it does not fit:
 * too large, the connection's backlog is over RPC_OUT_HIGH, or the budget.
 */
static bool conn_send(struct rpc_conn *c, uint8_t type, const uint8_t *head, size_t hn,
                      const uint8_t *body, size_t bn)
{
	struct server_rpc *rpc = c->rpc;
	size_t len = 1 + hn + bn;
	if (len > SERVER_RPC_FRAME_MAX || c->wbuf.len - c->woff > RPC_OUT_HIGH)
		return false;
	struct kv_buf *out = rpc->sealed ? &rpc->scratch : &c->wbuf;
	if (!buf_need(rpc, out, 4 + len))
		return false;
	if (c->woff >= c->wbuf.len && !c->connecting)
		c->progress = ev_now(rpc->loop); /* the stall clock starts with the output */
	uint8_t *h = out->p + out->len;
	h[0] = (uint8_t)(len >> 24);
	h[1] = (uint8_t)(len >> 16);
	h[2] = (uint8_t)(len >> 8);
	h[3] = (uint8_t)len;
	h[4] = type;
	if (hn)
		memcpy(h + 5, head, hn);
	if (bn)
		memcpy(h + 5 + hn, body, bn);
	out->len += 4 + len;
	if (rpc->sealed) {
		bool ok = buf_need(rpc, &c->wbuf, 5 + len + rpc->seal.overhead) &&
		          kv_frames_seal(&rpc->seal, from_initiator(c, true), out->p, out->len,
		                         &c->wbuf) == 0;
		out->len = 0;
		buf_trim(rpc, out);
		if (!ok)
			return false;
	}
	rpc->st.frames_out++;
	return true;
}

/* The earliest deadline that applies now, or 0 for none. */
static double conn_deadline(const struct rpc_conn *c)
{
	if (c->fd < 0)
		return 0;
	if (c->connecting)
		return c->born + RPC_CONNECT_TIMEOUT_S;
	double d = 0;
	if (!c->outbound && !c->hello)
		d = c->born + RPC_HELLO_TIMEOUT_S; /* trickling bytes does not extend it */
	if (c->rbuf.len > 0 || c->woff < c->wbuf.len) {
		double s = c->progress + RPC_STALL_S;
		if (d == 0 || s < d)
			d = s;
	}
	return d;
}

static void conn_arm(struct rpc_conn *c)
{
	struct ev_loop *loop = c->rpc->loop;
	ev_timer_stop(loop, &c->timer);
	double d = conn_deadline(c);
	if (d == 0)
		return;
	double left = d - ev_now(loop);
	ev_timer_set(&c->timer, left > 0 ? left : 0., 0.);
	ev_timer_start(loop, &c->timer);
}

static void conn_update_events(struct rpc_conn *c)
{
	struct ev_loop *loop = c->rpc->loop;
	int ev = EV_READ;
	if (c->connecting || c->woff < c->wbuf.len)
		ev |= EV_WRITE;
	if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == ev)
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	ev_io_start(loop, &c->io);
}

/* After a send queued output from outside the loop's callbacks. */
static void conn_kick(struct rpc_conn *c)
{
	if (c->fd < 0 || c->dead)
		return;
	conn_update_events(c);
	conn_arm(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)revents;
	struct rpc_conn *c = t->data;
	double d = conn_deadline(c);
	if (d != 0 && d > ev_now(loop) + 1e-3) {
		conn_arm(c); /* progress since it was armed */
		return;
	}
	log_debug("server rpc: %s %s: %s", c->outbound ? "connection to" : "peer", c->addr,
	          c->connecting ? "connect timed out" : "timed out");
	conn_drop(c, false, SERVER_RPC_E_TRANSPORT);
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents);

static struct rpc_conn *conn_new(struct server_rpc *rpc, int fd, bool outbound, const char *addr)
{
	struct rpc_conn *c = xcalloc(1, sizeof(*c));
	c->rpc = rpc;
	c->fd = fd;
	c->outbound = outbound;
	c->id = ++rpc->next_conn_id;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	ev_io_init(&c->io, conn_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
	c->timer.data = c;
	conn_link(c);
	return c;
}

/* ------------------------------------------------------- receiving */

static bool on_hello(struct rpc_conn *c, const uint8_t *p, size_t n)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	struct server_rpc_hello h;
	if (server_rpc_decode_hello(p, n, &h, err, sizeof(err)) < 0) {
		refuse(c, &rpc->st.refused_proto, err);
		return false;
	}
	c->hello = true;
	c->peer_id = h.server_id;
	memcpy(c->peer_addr, h.addr, h.addr_len);
	c->peer_addr[h.addr_len] = '\0';
	memcpy(c->peer_node, h.node, h.node_len);
	c->peer_node[h.node_len] = '\0';
	return true;
}

static bool on_reply(struct rpc_conn *c, const uint8_t *p, size_t n)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	struct server_rpc_msg m;
	if (server_rpc_decode_msg(p, n, "reply", &m, err, sizeof(err)) < 0) {
		refuse(c, &rpc->st.refused_proto, err);
		return false;
	}
	for (struct rpc_call *k = rpc->calls; k != NULL; k = k->next)
		if (k->req_id == m.req_id && k->conn == c) {
			call_finish(k, m.code, m.body, m.body_len);
			break;
		}
	return true; /* a late reply (the call timed out) is dropped */
}

/*
 * A PART of a RAFT message (decoded by server_rpc_decode_part: a total in
 * range, a piece not empty): the first one sets the total, checked against
 * the assembly budget before anything is allocated; the next ones must say
 * the same total and fit in what is left; the last hands the whole message
 * to the raft handler. false: close.
 */
static bool on_part(struct rpc_conn *c, const uint8_t *p, size_t n)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	uint32_t total;
	const uint8_t *pp;
	size_t piece;
	if (server_rpc_decode_part(p, n, &total, &pp, &piece, err, sizeof(err)) < 0) {
		refuse(c, &rpc->st.refused_proto, err);
		return false;
	}
	if (c->big == NULL) {
		if (rpc->assembling + total > rpc->asm_budget) {
			rpc->st.budget_closed++;
			log_debug("server rpc: %s closed: a %u-byte message in parts is over the "
			          "assembly budget",
			          c->addr, total);
			return false;
		}
		c->big = xmalloc(total);
		c->big_len = total;
		c->big_off = 0;
		rpc->assembling += total;
	}
	if (total != c->big_len || piece > c->big_len - c->big_off) {
		snprintf(err, sizeof(err), "PART of %zu bytes for a %u-byte message at %zu of %zu",
		         piece, total, c->big_off, c->big_len);
		refuse(c, &rpc->st.refused_proto, err);
		return false;
	}
	memcpy(c->big + c->big_off, pp, piece);
	c->big_off += piece;
	if (c->big_off < c->big_len)
		return true;
	uint8_t *m = c->big;
	size_t len = c->big_len;
	c->big = NULL; /* handed over: the handler may drop this connection */
	c->big_len = c->big_off = 0;
	rpc->st.parted_in++;
	if (rpc->h.raft != NULL)
		rpc->h.raft(rpc->h.ctx, c->peer_id, c->peer_addr, m, len);
	rpc->assembling -= len;
	free(m);
	return !c->dead;
}

/*
 * One opened frame. An inbound connection takes HELLO first and then RAFT
 * (from a server) and REQUEST; an outbound one only REPLY. Anything else
 * closes the connection. false: close (or it died in a handler).
 */
static bool conn_frame(struct rpc_conn *c, uint8_t type, const uint8_t *p, size_t n)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	rpc->st.frames_in++;
	if (c->outbound) {
		if (type == SERVER_RPC_T_REPLY)
			return on_reply(c, p, n) && !c->dead;
		snprintf(err, sizeof(err), "frame type 0x%02x from the acceptor", type);
	} else if (!c->hello) {
		if (type == SERVER_RPC_T_HELLO)
			return on_hello(c, p, n);
		snprintf(err, sizeof(err), "frame type 0x%02x before HELLO", type);
	} else if (type == SERVER_RPC_T_RAFT && c->peer_id != 0) {
		if (rpc->h.raft != NULL)
			rpc->h.raft(rpc->h.ctx, c->peer_id, c->peer_addr, p, n);
		return !c->dead;
	} else if (type == SERVER_RPC_T_PART && c->peer_id != 0) {
		return on_part(c, p, n);
	} else if (type == SERVER_RPC_T_REQUEST) {
		struct server_rpc_msg m;
		if (server_rpc_decode_msg(p, n, "request", &m, err, sizeof(err)) == 0) {
			if (rpc->h.request != NULL)
				rpc->h.request(rpc->h.ctx, c->id, m.req_id, m.code, c->peer_node,
				               m.body, m.body_len);
			return !c->dead;
		}
	} else {
		snprintf(err, sizeof(err), "frame type 0x%02x %s", type,
		         type == SERVER_RPC_T_RAFT || type == SERVER_RPC_T_PART ? "from a client"
		                                                                : "after HELLO");
	}
	refuse(c, &rpc->st.refused_proto, err);
	return false;
}

/* The largest frame length this connection takes now: a sync frame's
 * before HELLO (an unauthenticated peer gets no more than a sync peer). */
static size_t conn_frame_max(const struct rpc_conn *c)
{
	size_t max = (c->outbound || c->hello) ? SERVER_RPC_FRAME_MAX : KV_FRAME_MAX;
	return c->rpc->sealed ? max + KV_SEAL_OVERHEAD_MAX : max;
}

/* Open a sealed frame into c->plain (whose growth the budget covers). */
static bool conn_open(struct rpc_conn *c, const uint8_t *hdr, uint8_t *type, const uint8_t **pl,
                      size_t *pn)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	c->plain.len = 0;
	if (!buf_need(rpc, &c->plain, *pn)) {
		rpc->st.budget_closed++;
		return false;
	}
	if (kv_frame_open(&rpc->seal, from_initiator(c, false), hdr, *pl, *pn, &c->plain, type, pl,
	                  pn, err, sizeof(err)) < 0) {
		refuse(c, &rpc->st.refused_decrypt, err);
		return false;
	}
	return true;
}

/* Every whole frame in rbuf, through the sealing checks into conn_frame.
 * false: close. */
static bool conn_process(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	char err[200];
	size_t off = 0;
	bool ok = true;
	while (ok && !c->dead) {
		uint8_t type;
		const uint8_t *pl, *hdr = c->rbuf.p + off;
		size_t pn;
		long n = server_rpc_frame_next(hdr, c->rbuf.len - off, conn_frame_max(c), &type,
		                               &pl, &pn, err, sizeof(err));
		if (n == 0)
			break;
		if (n < 0) {
			refuse(c, &rpc->st.refused_proto, err);
			return false;
		}
		off += (size_t)n;
		if (rpc->sealed && type != KV_F_SEALED) {
			refuse(c, &rpc->st.refused_plain,
			       "a plaintext frame, and we have a keyring");
			return false;
		}
		if (!rpc->sealed && type == KV_F_SEALED) {
			refuse(c, &rpc->st.refused_sealed,
			       "a sealed frame, and we have no keyring");
			return false;
		}
		if (rpc->sealed && !conn_open(c, hdr, &type, &pl, &pn))
			return false;
		ok = conn_frame(c, type, pl, pn);
		c->plain.len = 0;
	}
	if (!ok || c->dead)
		return false;
	if (off > 0) {
		memmove(c->rbuf.p, c->rbuf.p + off, c->rbuf.len - off);
		c->rbuf.len -= off;
	}
	buf_trim(rpc, &c->rbuf);
	buf_trim(rpc, &c->plain);
	return true;
}

/* Room to read: the frame in progress decides how much (its length was
 * checked by conn_process), at least RPC_READ_MIN. false: over budget. */
static bool rbuf_room(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	size_t need = 4096;
	if (c->rbuf.len >= 4) {
		const uint8_t *p = c->rbuf.p;
		size_t flen =
		        4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
		if (flen > c->rbuf.len + need)
			need = flen - c->rbuf.len;
	}
	if (c->rbuf.cap - c->rbuf.len >= need)
		return true;
	if (c->rbuf.cap < RPC_READ_MIN && need < RPC_READ_MIN - c->rbuf.len)
		need = RPC_READ_MIN - c->rbuf.len;
	if (!buf_need(rpc, &c->rbuf, need)) {
		rpc->st.budget_closed++;
		log_debug("server rpc: %s closed: buffers over the %zu-byte budget", c->addr,
		          rpc->budget);
		return false;
	}
	return true;
}

static bool conn_read(struct rpc_conn *c)
{
	for (int i = 0; i < RPC_READS_PER_EVENT; i++) {
		if (!conn_process(c) || !rbuf_room(c))
			return false;
		ssize_t n = read(c->fd, c->rbuf.p + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
		if (n > 0) {
			c->rbuf.len += (size_t)n;
			c->rpc->st.bytes_in += (uint64_t)n;
			c->progress = ev_now(c->rpc->loop);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno == ECONNRESET)
			c->gone = 1; /* the peer's process closed it (or is gone) */
		if (n == 0)
			log_debug("server rpc: %s closed the connection", c->addr);
		else
			log_debug("server rpc: %s: %s", c->addr, strerror(errno));
		return false;
	}
	return conn_process(c); /* more may be waiting: the loop calls again */
}

/*
 * The output drained: queue the next parts of the message going out in
 * parts, up to RPC_OUT_HIGH. true when it queued something. A part that
 * does not fit in an empty output (the budget) abandons the message.
 */
static bool part_pump(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	bool queued = false;
	if (!c->outbound)
		return false; /* an inbound connection's c->big is a message coming in */
	while (c->big != NULL && c->big_off < c->big_len && c->wbuf.len - c->woff < RPC_OUT_HIGH) {
		size_t piece = c->big_len - c->big_off;
		if (piece > SERVER_RPC_PART_SIZE)
			piece = SERVER_RPC_PART_SIZE;
		uint8_t head[4];
		be32_put(head, (uint32_t)c->big_len);
		if (!conn_send(c, SERVER_RPC_T_PART, head, 4, c->big + c->big_off, piece)) {
			if (c->woff >= c->wbuf.len) {
				rpc->st.sends_dropped++;
				big_drop(c);
			}
			return queued;
		}
		c->big_off += piece;
		queued = true;
	}
	if (c->big != NULL && c->big_off == c->big_len) {
		rpc->st.parted_out++;
		big_drop(c);
	}
	return queued;
}

static bool conn_drain(struct rpc_conn *c);

static bool conn_write(struct rpc_conn *c)
{
	for (;;) {
		if (!conn_drain(c))
			return false;
		if (c->woff < c->wbuf.len || !part_pump(c))
			return true;
	}
}

/* Write what the socket takes. false: the connection failed. */
static bool conn_drain(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	while (c->woff < c->wbuf.len) {
		ssize_t n = send(c->fd, c->wbuf.p + c->woff, c->wbuf.len - c->woff, MSG_NOSIGNAL);
		if (n > 0) {
			c->woff += (size_t)n;
			rpc->st.bytes_out += (uint64_t)n;
			c->progress = ev_now(rpc->loop);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		log_debug("server rpc: %s: %s", c->addr, strerror(errno));
		return false;
	}
	c->wbuf.len = c->woff = 0;
	buf_trim(rpc, &c->wbuf);
	return true;
}

static bool conn_connected(struct rpc_conn *c)
{
	int e = 0;
	socklen_t l = sizeof(e);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		e = errno;
	if (e != 0) {
		log_debug("server rpc: connect to %s: %s", c->addr, strerror(e));
		if (e == ECONNREFUSED)
			c->gone = 2; /* nothing listens there */
		return false;
	}
	c->connecting = false;
	c->progress = ev_now(c->rpc->loop);
	return true;
}

/* Frees the rpc once the outermost callback returns after server_rpc_free. */
static void rpc_destroy(struct server_rpc *rpc);

static void rpc_leave(struct server_rpc *rpc)
{
	if (--rpc->depth == 0 && rpc->freeing)
		rpc_destroy(rpc);
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct rpc_conn *c = w->data;
	struct server_rpc *rpc = c->rpc;
	rpc->depth++;
	rpc->current = c;
	bool ok = true;
	if (c->connecting && (revents & EV_WRITE))
		ok = conn_connected(c);
	if (ok && !c->connecting && (revents & EV_READ))
		ok = conn_read(c);
	if (ok && !c->dead && !c->connecting)
		ok = conn_write(c);
	rpc->current = NULL;
	int gone = c->outbound && !ok && !c->dead ? c->gone : 0;
	char addr[RPC_ADDR_MAX];
	if (gone)
		memcpy(addr, c->addr, sizeof(addr));
	c->gone = 0;
	if (c->dead)
		conn_finish(c);
	else if (!ok)
		conn_drop(c, false, SERVER_RPC_E_TRANSPORT);
	else {
		conn_update_events(c);
		conn_arm(c);
	}
	if (gone && rpc->h.peer_down != NULL && !rpc->freeing)
		rpc->h.peer_down(rpc->h.ctx, addr, gone == 2);
	rpc_leave(rpc);
}

/* ---------------------------------------------------------- dialling */

/*
 * Data the peer does not acknowledge for RPC_STALL_S ends the connection in
 * the kernel (TCP_USER_TIMEOUT): a peer that vanished without a reset would
 * otherwise keep swallowing RAFT frames into the socket buffer for the
 * many minutes of TCP's own retransmission limit.
 */
static void no_silent_peers(int fd)
{
	int ms = (int)(RPC_STALL_S * 1000);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

/* "ip:port" or "[ip6]:port" into ss; false when it is not one. */
static bool parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[RPC_ADDR_MAX];
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host))
		return false;
	const char *h = addr;
	size_t hl = (size_t)(colon - addr);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return false;
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535)
		return false;
	return net_addr_parse(host, (uint16_t)port, ss, sl) == 0;
}

/* A non-blocking connect with HELLO queued behind it; false (the entry
 * marked down) when it failed at once or HELLO does not fit. */
static bool conn_dial(struct rpc_conn *c)
{
	struct server_rpc *rpc = c->rpc;
	struct sockaddr_storage ss;
	socklen_t sl;
	c->remove = false;
	c->gone = 0;
	/* the loop's time can be stale here (a send after long work in the
	 * same callback, as a snapshot of a large store): the connect deadline
	 * counts from now */
	ev_now_update(rpc->loop);
	c->progress = c->born = ev_now(rpc->loop);
	if (!parse_addr(c->addr, &ss, &sl)) {
		c->down_at = c->progress;
		return false;
	}
	int fd = net_tcp_connect(&ss, sl, rpc->bind_addr);
	if (fd < 0) {
		log_debug("server rpc: connect to %s: %s", c->addr, strerror(-fd));
		c->down_at = c->progress;
		c->gone = -fd == ECONNREFUSED ? 2 : 0; /* loopback refuses at once */
		return false;
	}
	c->fd = fd;
	c->connecting = true;
	rpc->st.conns_out++;
	no_silent_peers(fd);
	ev_io_set(&c->io, fd, EV_READ | EV_WRITE);
	if (!conn_send(c, SERVER_RPC_T_HELLO, rpc->hello, rpc->hello_len, NULL, 0)) {
		conn_drop(c, false, SERVER_RPC_E_TRANSPORT);
		return false;
	}
	conn_kick(c);
	return true;
}

/*
 * The outbound entry for addr, made if needed (NULL: a bad address, or the
 * table is full of live ones). A down entry past RPC_REDIAL_S (at once with
 * now) is dialled; *up says whether it has a socket now.
 */
static struct rpc_conn *out_get(struct server_rpc *rpc, const char *addr, bool now, bool *up)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	*up = false;
	struct rpc_conn *c = NULL, *spare = NULL;
	for (struct rpc_conn *o = rpc->conns; o != NULL; o = o->next) {
		if (!o->outbound)
			continue;
		if (strcmp(o->addr, addr) == 0) {
			c = o;
			break;
		}
		if (o->fd < 0 && !o->dead && (spare == NULL || o->down_at < spare->down_at))
			spare = o;
	}
	if (c == NULL) {
		if (strlen(addr) >= RPC_ADDR_MAX || !parse_addr(addr, &ss, &sl))
			return NULL;
		if (rpc->n_out >= SERVER_RPC_MAX_CONNS) {
			if (spare == NULL)
				return NULL;
			conn_unlink(spare); /* the entry down the longest makes room */
			free(spare);
		}
		c = conn_new(rpc, -1, true, addr);
	}
	if (c->fd >= 0) {
		*up = !c->dead;
		return c;
	}
	if (c->dead || (!now && c->down_at != 0 && ev_now(rpc->loop) - c->down_at < RPC_REDIAL_S))
		return c;
	*up = conn_dial(c);
	return c;
}

/* -------------------------------------------------------------- API */

int server_rpc_probe(struct server_rpc *rpc, const char *addr)
{
	bool up;
	struct rpc_conn *c = out_get(rpc, addr, true, &up);
	if (c == NULL)
		return -1;
	int refused = !up && c->gone == 2;
	c->gone = 0;
	return refused ? 1 : 0;
}

struct server_rpc *server_rpc_new(const struct server_rpc_config *cfg,
                                  const struct server_rpc_handlers *h, char *err, size_t errlen)
{
	const char *addr = cfg->self_addr ? cfg->self_addr : "";
	const char *node = cfg->node_name ? cfg->node_name : "";
	struct server_rpc_hello hello = {cfg->self_id, addr, strlen(addr), node, strlen(node)};
	struct server_rpc *rpc = xcalloc(1, sizeof(*rpc));
	rpc->hello_len = server_rpc_encode_hello(rpc->hello, sizeof(rpc->hello), &hello);
	if (rpc->hello_len == 0) {
		snprintf(err, errlen,
		         "server rpc: node name \"%s\" or address \"%s\" cannot be sent (1-255 "
		         "bytes, no spaces or control bytes; an address exactly on a server)",
		         node, addr);
		free(rpc);
		return NULL;
	}
	rpc->loop = cfg->loop;
	if (h != NULL)
		rpc->h = *h;
	snprintf(rpc->bind_addr, sizeof(rpc->bind_addr), "%s",
	         cfg->bind_addr ? cfg->bind_addr : "");
	rpc->budget = cfg->buffer_budget ? cfg->buffer_budget : SERVER_RPC_BUFFER_BUDGET;
	rpc->asm_budget = cfg->assembly_budget ? cfg->assembly_budget : SERVER_RPC_ASSEMBLY_BUDGET;
	return rpc;
}

static void rpc_destroy(struct server_rpc *rpc)
{
	while (rpc->conns != NULL) {
		struct rpc_conn *c = rpc->conns;
		conn_unlink(c);
		free(c);
	}
	buf_release(rpc, &rpc->scratch);
	free(rpc);
}

void server_rpc_free(struct server_rpc *rpc)
{
	if (rpc == NULL || rpc->freeing)
		return;
	rpc->freeing = true;
	for (struct rpc_conn *c = rpc->conns, *next; c != NULL; c = next) {
		next = c->next;
		conn_drop(c, true, SERVER_RPC_E_SHUTDOWN);
	}
	while (rpc->calls != NULL)
		call_finish(rpc->calls, SERVER_RPC_E_SHUTDOWN, NULL, 0);
	if (rpc->depth == 0)
		rpc_destroy(rpc);
}

void server_rpc_set_seal(struct server_rpc *rpc, const struct kv_seal *seal)
{
	rpc->sealed = seal != NULL;
	if (seal != NULL)
		rpc->seal = *seal;
	for (struct rpc_conn *c = rpc->conns, *next; c != NULL; c = next) {
		next = c->next;
		conn_drop(c, true, SERVER_RPC_E_TRANSPORT);
	}
}

/* Room for one more accepted connection: the table has a slot, or the
 * connection idle longest (RPC_EVICT_IDLE_S at least) gives its own. */
static bool in_slot(struct server_rpc *rpc)
{
	if (rpc->n_in < SERVER_RPC_MAX_CONNS)
		return true;
	struct rpc_conn *idle = NULL;
	for (struct rpc_conn *c = rpc->conns; c != NULL; c = c->next)
		if (!c->outbound && !c->dead && (idle == NULL || c->progress < idle->progress))
			idle = c;
	if (idle == NULL || ev_now(rpc->loop) - idle->progress < RPC_EVICT_IDLE_S)
		return false;
	log_debug("server rpc: %s closed: idle, and the table is full", idle->addr);
	conn_drop(idle, true, SERVER_RPC_E_TRANSPORT);
	return rpc->n_in < SERVER_RPC_MAX_CONNS;
}

void server_rpc_adopt(struct server_rpc *rpc, int fd, const char *peer, const uint8_t *buf,
                      size_t len)
{
	if (rpc->freeing || !in_slot(rpc)) {
		rpc->st.refused_conns++;
		close(fd);
		return;
	}
	struct rpc_conn *c = conn_new(rpc, fd, false, peer ? peer : "?");
	c->progress = c->born = ev_now(rpc->loop);
	rpc->st.conns_in++;
	no_silent_peers(fd);
	if (!buf_need(rpc, &c->rbuf, len > RPC_READ_MIN ? len : RPC_READ_MIN)) {
		rpc->st.budget_closed++;
		conn_drop(c, true, SERVER_RPC_E_TRANSPORT);
		return;
	}
	if (len > 0)
		memcpy(c->rbuf.p, buf, len);
	c->rbuf.len = len;
	rpc->st.bytes_in += len;
	conn_update_events(c);
	conn_arm(c);
	/* the bytes already read are processed from the loop, not in this call */
	ev_feed_event(rpc->loop, &c->io, EV_READ);
}

int server_rpc_send_raft(struct server_rpc *rpc, const char *addr, const uint8_t *p, size_t n)
{
	if (rpc->freeing || addr == NULL)
		return -1;
	bool up;
	struct rpc_conn *c = out_get(rpc, addr, false, &up);
	if (c == NULL || !up)
		goto drop;
	if (n > SERVER_RPC_PART_SIZE) {
		if (n > SERVER_RPC_MESSAGE_MAX || c->big != NULL ||
		    rpc->assembling + n > rpc->asm_budget)
			goto drop;
		c->big = xmalloc(n);
		memcpy(c->big, p, n);
		c->big_len = n;
		c->big_off = 0;
		rpc->assembling += n;
		/* the first parts now if the output is empty, else conn_write
		 * queues them as it drains */
		if (!c->connecting && c->woff >= c->wbuf.len && !part_pump(c) && c->big == NULL)
			return -1; /* not even one part fits: counted by part_pump */
	} else {
		if (!conn_send(c, SERVER_RPC_T_RAFT, NULL, 0, p, n))
			goto drop;
		/* Out at once, not at the next poll: the loop's drain syncs
		 * this server's Raft log before it polls, and a leader's
		 * AppendEntries should reach the followers while it does, so
		 * that their syncs overlap its own (Raft lets a leader send
		 * entries before they are durable on its disk; the thesis,
		 * 10.2.1). Not while a message goes in parts: conn_write pumps
		 * those, and only when the output is empty. A failed send is
		 * left to the io watcher, which drops the connection from the
		 * loop as always, never from inside libraft's call. */
		if (c->big == NULL && !c->connecting && !c->dead && c->fd >= 0)
			(void)conn_drain(c);
	}
	conn_kick(c);
	return 0;
drop:
	rpc->st.sends_dropped++;
	return -1;
}

int server_rpc_call(struct server_rpc *rpc, const char *addr, uint8_t method, const uint8_t *p,
                    size_t n, int64_t timeout_ms, server_rpc_reply_fn fn, void *ud)
{
	if (rpc->freeing || addr == NULL || fn == NULL || rpc->ncalls >= SERVER_RPC_MAX_CALLS ||
	    1 + SERVER_RPC_MSG_HEAD + n > SERVER_RPC_FRAME_MAX) {
		rpc->st.sends_dropped++;
		return -1;
	}
	bool up;
	struct rpc_conn *c = out_get(rpc, addr, false, &up);
	if (c == NULL) {
		rpc->st.sends_dropped++;
		return -1;
	}
	uint64_t id = ++rpc->next_req_id;
	if (up) {
		uint8_t head[SERVER_RPC_MSG_HEAD];
		server_rpc_encode_msg_head(head, id, method);
		if (!conn_send(c, SERVER_RPC_T_REQUEST, head, sizeof(head), p, n)) {
			rpc->st.sends_dropped++;
			return -1;
		}
		conn_kick(c);
	}
	struct rpc_call *k = xcalloc(1, sizeof(*k));
	k->rpc = rpc;
	k->req_id = id;
	k->fn = fn;
	k->ud = ud;
	k->conn = c;
	k->next = rpc->calls;
	if (k->next)
		k->next->prev = k;
	rpc->calls = k;
	rpc->ncalls++;
	rpc->st.calls++;
	ev_timer_init(&k->timer, call_timer_cb, timeout_ms > 0 ? (double)timeout_ms / 1000.0 : 0.,
	              0.);
	k->timer.data = k;
	ev_timer_start(rpc->loop, &k->timer);
	if (!up)
		call_decide(k, SERVER_RPC_E_UNSENT); /* down: redialled on a later send */
	return 0;
}

void server_rpc_reply(struct server_rpc *rpc, uint64_t conn_id, uint64_t req_id, uint8_t status,
                      const uint8_t *p, size_t n)
{
	if (rpc->freeing)
		return;
	for (struct rpc_conn *c = rpc->conns; c != NULL; c = c->next) {
		if (c->outbound || c->id != conn_id)
			continue;
		uint8_t head[SERVER_RPC_MSG_HEAD];
		server_rpc_encode_msg_head(head, req_id, status);
		if (c->fd < 0 || c->dead || !c->hello ||
		    !conn_send(c, SERVER_RPC_T_REPLY, head, sizeof(head), p, n))
			rpc->st.sends_dropped++;
		else
			conn_kick(c);
		return;
	}
}

void server_rpc_get_stats(const struct server_rpc *rpc, struct server_rpc_stats *st)
{
	*st = rpc->st;
	st->conns_open = 0;
	for (const struct rpc_conn *c = rpc->conns; c != NULL; c = c->next)
		if (c->fd >= 0)
			st->conns_open++;
	st->buffered = rpc->buffered;
	st->assembling = rpc->assembling;
}
