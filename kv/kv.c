/*
 * kv/kv.c — see kv.h. The libev driver of the KV engine (kv/engine.h): it
 * owns the loop's watchers, the sync sockets and the wall clock, and
 * nothing that decides what the replica does.
 *
 * Per loop iteration: writes (local requests, gossip, sync) go into the
 * engine's open batch; an ev_prepare watcher (run before the loop blocks)
 * commits it through kv_engine_commit, which acknowledges the requests,
 * wakes the watches under the changed keys and broadcasts the changes.
 * "Committed" is one append + fdatasync of the store's write-ahead log
 * (kv/wal.h; a batch of peers' records only skips the fdatasync); LMDB
 * itself is committed by a checkpoint about a second after a synced batch,
 * KV_CHECKPOINT_PEER_INTERVAL_MS after peers' records alone (or when the
 * log passes 64 MiB), run from the same prepare watcher right after a
 * batch, never inside one.
 *
 * Watches (blocking queries) are parked in the engine, which knows which
 * change wakes which; their timeouts are ev_timers here. The anti-entropy
 * timer is one ev_timer the engine arms through kv_io.sync_arm.
 *
 * Sessions: the engine opens them (kv_io.open_session: a round with a
 * random peer, or a pull from a writer) and accepts them (kv_engine_accept);
 * this file dials and accepts their TCP connections, one kv_session each,
 * and reports their end. Incoming connections are bounded
 * (KV_SYNC_MAX_CONNS) and each has a deadline.
 *
 * Trust and memory on the sync listener: with a keyring (kv_set_seal) every
 * frame is sealed and a frame that is plaintext or that no key opens ends
 * the connection before anything is answered (counted in kv_stats). Memory
 * is bounded three ways: a frame is at most KV_FRAME_MAX (+ seal) and its
 * length is checked before the buffer grows for it; our own output is
 * pumped bucket by bucket as the socket drains (SYNC_WBUF_LOW), not built
 * whole; and the buffers of all connections together stay under
 * SYNC_BUFFER_BUDGET — a connection that would pass it is closed.
 *
 * Membership (who runs KV, where, broadcasting) is the agent's: it fills
 * struct kv_members (kv_set_members); nothing here includes gossip/.
 */
#define _GNU_SOURCE
#include "kv/kv.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/cursor.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"
#include "kv/engine.h"
#include "kv/repl.h"
#include "kv/store.h"

#define SYNC_BUFFER_BUDGET (16u << 20) /* all sync connections' buffers together */
#define SYNC_WBUF_LOW (KV_CHUNK)       /* pump more output when less is pending */
#define SYNC_READ_MIN 65536u
#define SYNC_TIMEOUT_S (KV_SYNC_TIMEOUT_MS / 1000.0)
#define SYNC_CONNECT_TIMEOUT_S (KV_SYNC_CONNECT_TIMEOUT_MS / 1000.0)
#define PURGE_INTERVAL_S 60.0
#define CHECKPOINT_INTERVAL_S (KV_CHECKPOINT_INTERVAL_MS / 1000.0) /* LMDB commit + new log */
#define CHECKPOINT_PEER_INTERVAL_S (KV_CHECKPOINT_PEER_INTERVAL_MS / 1000.0)
#define CHECKPOINT_LOG_BYTES (64u << 20) /* ... or sooner when the log is this big */
#define SLOW_COMMIT_S 0.05 /* a commit and checkpoint longer than this are logged (info) */

struct kv_watch {
	struct kv *kv;
	struct kv_engine_watch *ew;
	ev_timer timer;
	kv_watch_fn fn;
	void *ud;
};

struct sync_conn {
	struct kv *kv;
	struct sync_conn *prev, *next;
	int fd;
	ev_io io;
	ev_timer timer;
	bool outbound, connecting, finished;
	struct kv_buf rbuf, wbuf;
	struct kv_buf pbuf;  /* plaintext frames before sealing (keyring only) */
	struct kv_buf plain; /* the opened frame being fed */
	size_t woff;
	struct kv_session *sess; /* the engine's; ended in conn_free */
	bool framed;             /* a frame came in (the first decides a hand-off) */
	bool handed_off;         /* the socket went to the hand-off: not ours to close */
	char peer[64];
};

struct kv {
	struct ev_loop *loop;
	struct kv_engine *engine;
	struct kv_members members;
	bool has_members;
	kv_handoff_fn handoff; /* accepted connections of another protocol */
	void *handoff_ctx;
	kv_commit_fn commit_fn; /* kv_set_commit_fn */
	void *commit_ud;
	bool closing; /* kv_free: nothing more is broadcast */
	ev_prepare prepare;
	ev_timer sync_timer, purge_timer, checkpoint_timer;
	bool checkpoint_due;
	ev_io listen_io;
	int listen_fd;
	int sync_port;
	struct sync_conn *conns;
	size_t nconns;
	struct kv_stats stats;
	char bind_addr[64];
	struct kv_seal seal;
	bool sealed;
	double refused_logged_at; /* rate limit of the refusal warning */
	struct kv_cp cp;          /* CP mode: where writes go (cp.write NULL: here) */
	uint64_t rng;             /* io_rand's state */
};

/*
 * The wall clock, not the monotonic one: versions are hybrid logical clocks
 * that peers compare across machines, so their physical part must be real time.
 * The engine guards against a clock that jumps; this only reads it.
 */
static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------- watches */

/* The engine unparked w (changed) or the timeout did (not): stop its
 * timer before the callback, which may park a new watch. */
static void watch_done(void *ud, bool changed)
{
	struct kv_watch *w = ud;
	ev_timer_stop(w->kv->loop, &w->timer);
	kv_watch_fn fn = w->fn;
	void *fud = w->ud;
	free(w);
	fn(fud, changed);
}

static void watch_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct kv_watch *w = t->data;
	kv_engine_watch_cancel(w->kv->engine, w->ew);
	watch_done(w, false);
}

/*
 * Two owners for one watch: the engine decides when a change wakes it, this
 * driver owns its timeout. NULL when the engine's table is full, and then
 * nothing is left armed.
 */
struct kv_watch *kv_watch_add(struct kv *kv, const char *key, size_t key_len, bool recurse,
                              uint64_t index, int64_t timeout_ms, kv_watch_fn fn, void *ud)
{
	struct kv_watch *w = xcalloc(1, sizeof(*w));
	w->ew = kv_engine_watch_add(kv->engine, key, key_len, recurse, index, watch_done, w);
	if (w->ew == NULL) {
		free(w);
		return NULL;
	}
	w->kv = kv;
	w->fn = fn;
	w->ud = ud;
	ev_timer_init(&w->timer, watch_timeout_cb, (double)timeout_ms / 1000.0, 0.);
	w->timer.data = w;
	ev_timer_start(kv->loop, &w->timer);
	return w;
}

void kv_watch_cancel(struct kv_watch *w)
{
	if (w == NULL)
		return;
	kv_engine_watch_cancel(w->kv->engine, w->ew);
	ev_timer_stop(w->kv->loop, &w->timer);
	free(w);
}

/* ------------------------------------------------------ group commit */

/*
 * A failed checkpoint is not fatal: the log still holds every batch since the
 * last good one, and the next checkpoint tries again.
 */
static void checkpoint(struct kv *kv)
{
	char err[256];
	kv->checkpoint_due = false;
	if (kv_store_checkpoint(kv_engine_store(kv->engine), err, sizeof(err)) < 0)
		log_debug("kv: %s", err); /* logged by the store, rate-limited */
}

/* Before the loop blocks: this iteration's batch becomes durable and is
 * answered; a checkpoint, when due, follows it (never inside a batch). */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)revents;
	struct kv *kv = w->data;
	char err[256];
	double t0 = ev_time();
	if (kv_engine_commit(kv->engine, wall_ms(), err, sizeof(err)) < 0)
		log_debug("kv: %s", err); /* the store logs failures itself, rate-limited */
	double t1 = ev_time();
	struct kv_store *st = kv_engine_store(kv->engine);
	if (kv->checkpoint_due || kv_store_log_bytes(st) >= CHECKPOINT_LOG_BYTES)
		checkpoint(kv);
	double t2 = ev_time();
	if (t2 - t0 > SLOW_COMMIT_S) /* what held the loop (e.g. a restored Raft snapshot) */
		log_info("kv: commit %.1f ms, checkpoint %.1f ms", (t1 - t0) * 1000.0,
		         (t2 - t1) * 1000.0);
	/* armed only while LMDB lags the log: an idle agent does not wake for
	 * it. A synced batch brings a checkpoint within CHECKPOINT_INTERVAL_S;
	 * peers' records alone wait CHECKPOINT_PEER_INTERVAL_S. */
	if (kv_store_dirty(st)) {
		double want = kv_store_dirty_synced(st) ? CHECKPOINT_INTERVAL_S
		                                        : CHECKPOINT_PEER_INTERVAL_S;
		if (ev_is_active(&kv->checkpoint_timer) &&
		    ev_timer_remaining(loop, &kv->checkpoint_timer) > want)
			ev_timer_stop(loop, &kv->checkpoint_timer);
		if (!ev_is_active(&kv->checkpoint_timer)) {
			/* a one-shot timer that fired keeps its old expiry: set it anew */
			ev_timer_set(&kv->checkpoint_timer, want, 0.);
			ev_timer_start(loop, &kv->checkpoint_timer);
		}
	}
}

/* One-shot, CHECKPOINT_INTERVAL_S after the first batch since the last
 * checkpoint; the checkpoint itself runs from prepare_cb, after the
 * iteration's batch is durable. */
static void checkpoint_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct kv *kv = t->data;
	if (kv_store_dirty(kv_engine_store(kv->engine)))
		kv->checkpoint_due = true;
}

/* --------------------------------------------------------- requests */

int kv_write(struct kv *kv, const struct kv_op *ops, size_t n, kv_done_fn done, void *ud, char *err,
             size_t errlen)
{
	if (kv->cp.write != NULL) {
		if (kv_engine_check_ops(ops, n, err, errlen) < 0)
			return -1;
		return kv->cp.write(kv->cp.ctx, ops, n, done, ud, err, errlen);
	}
	return kv_engine_write(kv->engine, wall_ms(), ops, n, done, ud, err, errlen) < 0 ? -1 : 0;
}

/*
 * Fire-and-forget form for the agent's own records (the catalog): a validation
 * error has nowhere to go, so it is only the return value.
 */
int kv_put(struct kv *kv, const char *key, const void *val, size_t len, uint64_t flags,
           kv_done_fn done, void *ud)
{
	struct kv_op op = {KV_OP_SET, key, key ? strlen(key) : 0, val, len, flags, 0, NULL, 0};
	char err[128];
	return kv_write(kv, &op, 1, done, ud, err, sizeof(err));
}

int kv_delete(struct kv *kv, const char *key, bool recurse, kv_done_fn done, void *ud)
{
	struct kv_op op = {recurse ? KV_OP_DELETE_TREE : KV_OP_DELETE,
	                   key,
	                   key ? strlen(key) : 0,
	                   NULL,
	                   0,
	                   0,
	                   0,
	                   NULL,
	                   0};
	char err[128];
	return kv_write(kv, &op, 1, done, ud, err, sizeof(err));
}

int kv_get(struct kv *kv, const char *key, size_t key_len, kv_entry_fn fn, void *ud)
{
	return kv_engine_get(kv->engine, key, key_len, fn, ud);
}

int kv_scan(struct kv *kv, const char *prefix, size_t prefix_len, kv_entry_fn fn, void *ud)
{
	return kv_engine_scan(kv->engine, prefix, prefix_len, fn, ud);
}

uint64_t kv_index(struct kv *kv, const char *key, size_t key_len, bool recurse)
{
	return kv_engine_index(kv->engine, key, key_len, recurse);
}

/* ------------------------------------------------------- sync driver */

/*
 * The one way a sync connection ends. The engine hears the outcome first, so a
 * failed round brings the next forward and a pull stops counting as in flight.
 * Freeing buffers may let a connection that waits for the memory budget go on,
 * so those are woken here.
 */
static void conn_free(struct sync_conn *c, bool ok)
{
	struct kv *kv = c->kv;
	ev_io_stop(kv->loop, &c->io);
	ev_timer_stop(kv->loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		kv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	kv->nconns--;
	/* the engine's bookkeeping: an anti-entropy round that failed brings
	 * the next one forward, a pull stops covering its version */
	if (c->sess != NULL)
		kv_session_end(c->sess, ok);
	if (!ok && !c->handed_off)
		log_debug("kv: sync with %s failed", c->peer);
	kv_buf_free(&c->rbuf);
	kv_buf_free(&c->wbuf);
	kv_buf_free(&c->pbuf);
	kv_buf_free(&c->plain);
	free(c);
	/* memory came free: wake the connections that wait to pump output */
	for (struct sync_conn *o = kv->conns; o != NULL; o = o->next)
		if (o->sess != NULL && kv_session_sending(o->sess) && !o->connecting &&
		    o->woff >= o->wbuf.len)
			ev_feed_event(kv->loop, &o->io, EV_WRITE);
}

/*
 * Write interest only while there is something to write or a connect pending;
 * a finished connection with nothing left to send waits for no event at all.
 */
static void conn_update_events(struct sync_conn *c)
{
	int ev = EV_READ;
	if (c->connecting || c->woff < c->wbuf.len)
		ev |= EV_WRITE;
	if (c->finished && c->woff >= c->wbuf.len)
		ev = 0;
	ev_io_stop(c->kv->loop, &c->io);
	if (ev) {
		ev_io_set(&c->io, c->fd, ev);
		ev_io_start(c->kv->loop, &c->io);
	}
}

/* Bytes held by every sync connection's buffers (at most SYNC_MAX_CONNS). */
static size_t buffered(const struct kv *kv)
{
	size_t n = 0;
	for (const struct sync_conn *c = kv->conns; c != NULL; c = c->next)
		n += c->rbuf.cap + c->wbuf.cap + c->pbuf.cap + c->plain.cap;
	return n;
}

/* Where the session writes its frames: straight to the socket buffer, or
 * to pbuf to be sealed first. */
static struct kv_buf *conn_out(struct sync_conn *c)
{
	return c->kv->sealed ? &c->pbuf : &c->wbuf;
}

static bool from_initiator(const struct sync_conn *c, bool sending)
{
	/* we initiated (or pull) exactly when the connection is outbound */
	return sending ? c->outbound : !c->outbound;
}

/* Move what the session wrote into the socket buffer (sealing it with a
 * keyring), after dropping what was already written; then pump more of
 * our RECORDS stream while less than SYNC_WBUF_LOW is pending and the
 * budget allows. false on failure. */
static bool conn_flush(struct sync_conn *c)
{
	struct kv *kv = c->kv;
	if (c->woff > 0 && c->woff >= c->wbuf.len) {
		c->wbuf.len = 0;
		c->woff = 0;
	}
	for (;;) {
		if (kv->sealed && c->pbuf.len > 0) {
			if (kv_frames_seal(&kv->seal, from_initiator(c, true), c->pbuf.p,
			                   c->pbuf.len, &c->wbuf) < 0)
				return false;
			c->pbuf.len = 0;
		}
		if (!kv_session_sending(c->sess) || c->wbuf.len - c->woff >= SYNC_WBUF_LOW)
			return true;
		if (buffered(kv) > SYNC_BUFFER_BUDGET) {
			kv->stats.sync_budget_waits++;
			return true; /* resume when the socket drains and memory is free */
		}
		if (kv_session_pump(c->sess, conn_out(c), c->wbuf.len - c->woff + SYNC_WBUF_LOW) <
		    0)
			return false;
	}
}

/* A frame this agent must not take: plaintext with a keyring, sealed
 * without one, or one no installed key opens. Counted, logged at most
 * every 10 s, and the connection is closed unanswered. */
static void refuse(struct sync_conn *c, uint64_t *counter, const char *why)
{
	struct kv *kv = c->kv;
	(*counter)++;
	double t = ev_now(kv->loop);
	if (t - kv->refused_logged_at >= 10.0) {
		kv->refused_logged_at = t;
		log_warn("kv: sync from %s refused: %s (refused so far: %llu plaintext, %llu "
		         "undecryptable, %llu sealed without a keyring)",
		         c->peer, why, (unsigned long long)kv->stats.sync_refused_plain,
		         (unsigned long long)kv->stats.sync_refused_decrypt,
		         (unsigned long long)kv->stats.sync_refused_sealed);
	}
}

/*
 * The first frame of an accepted connection belongs to another protocol on the
 * same port (the server RPC): its owner gets the socket and every byte read so
 * far from that frame on, and this connection is forgotten without closing the
 * socket. The sealing checks ran first, so nothing unsealed passes a keyring.
 */
static void hand_off(struct sync_conn *c, size_t at)
{
	struct kv *kv = c->kv;
	ev_io_stop(kv->loop, &c->io);
	int fd = c->fd;
	c->fd = -1;
	c->handed_off = true;
	kv->stats.sync_handed_off++;
	kv->handoff(kv->handoff_ctx, fd, c->peer, c->rbuf.p + at, c->rbuf.len - at);
}

/*
 * With a keyring, only sealed frames are accepted, and without one only plain
 * ones: a mismatch is refused, never downgraded, since a sealed cluster must not
 * take plaintext records and must not send its own in clear.
 */
static bool conn_process(struct sync_conn *c)
{
	struct kv *kv = c->kv;
	char err[256];
	size_t off = 0;
	while (!c->finished && c->rbuf.len - off >= 4) {
		uint8_t type;
		const uint8_t *pl;
		size_t plen;
		const uint8_t *hdr = c->rbuf.p + off;
		long n = kv_frame_next(hdr, c->rbuf.len - off, &type, &pl, &plen, err, sizeof(err));
		if (n == 0)
			break;
		if (n < 0)
			goto bad;
		off += (size_t)n;
		if (kv->sealed && type != KV_F_SEALED) {
			refuse(c, &kv->stats.sync_refused_plain,
			       "a plaintext frame, and this agent has a keyring");
			return false;
		}
		if (!kv->sealed && type == KV_F_SEALED) {
			refuse(c, &kv->stats.sync_refused_sealed,
			       "the peer encrypts (a keyring), this agent has none");
			return false;
		}
		if (kv->sealed &&
		    kv_frame_open(&kv->seal, from_initiator(c, false), hdr, pl, plen, &c->plain,
		                  &type, &pl, &plen, err, sizeof(err)) < 0) {
			refuse(c, &kv->stats.sync_refused_decrypt, err);
			return false;
		}
		bool first = !c->framed;
		c->framed = true;
		if (first && !c->outbound && kv->handoff != NULL && type >= KV_F_FOREIGN_MIN &&
		    type <= KV_F_FOREIGN_MAX) {
			hand_off(c, (size_t)(hdr - c->rbuf.p));
			return false;
		}
		int rc = kv_session_feed(c->sess, wall_ms(), type, pl, plen, conn_out(c), err,
		                         sizeof(err));
		if (rc < 0)
			goto bad;
		if (rc == 1)
			c->finished = true;
	}
	if (off > 0) {
		memmove(c->rbuf.p, c->rbuf.p + off, c->rbuf.len - off);
		c->rbuf.len -= off;
	}
	return conn_flush(c);
bad:
	log_warn("kv: sync with %s: %s", c->peer, err);
	return false;
}

/* Make room to read: the frame being received decides how much (its
 * length is checked before any memory is given to it), and all
 * connections together stay under SYNC_BUFFER_BUDGET. false: close. */
static bool rbuf_room(struct sync_conn *c)
{
	size_t need = c->rbuf.len + SYNC_READ_MIN;
	if (c->rbuf.len >= 4) {
		uint8_t t;
		const uint8_t *pl;
		size_t pn;
		char err[128];
		if (kv_frame_next(c->rbuf.p, c->rbuf.len, &t, &pl, &pn, err, sizeof(err)) < 0) {
			log_warn("kv: sync with %s: %s", c->peer, err);
			return false;
		}
		need = 4 + (size_t)be32_get(c->rbuf.p);
		if (need < c->rbuf.len + 4096)
			need = c->rbuf.len + 4096;
	}
	if (c->rbuf.cap >= need)
		return true;
	size_t cap = need < SYNC_READ_MIN ? SYNC_READ_MIN : need;
	if (buffered(c->kv) + (cap - c->rbuf.cap) > SYNC_BUFFER_BUDGET) {
		c->kv->stats.sync_budget_closed++;
		log_debug("kv: sync with %s closed: buffers over the %u-byte budget", c->peer,
		          SYNC_BUFFER_BUDGET);
		return false;
	}
	uint8_t *p = realloc(c->rbuf.p, cap);
	if (p == NULL)
		return false;
	c->rbuf.p = p;
	c->rbuf.cap = cap;
	return true;
}

/*
 * Reads until EAGAIN, processing whenever less than 4 KiB of room is left, and
 * writes until the kernel pushes back. EOF counts as success only if the
 * exchange finished and everything we had to send was written.
 */
static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sync_conn *c = w->data;
	if (c->connecting && (revents & EV_WRITE)) {
		int e = 0;
		socklen_t l = sizeof(e);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
		if (e != 0) {
			conn_free(c, false);
			return;
		}
		c->connecting = false;
		ev_timer_stop(loop, &c->timer); /* connected: the exchange gets the full deadline */
		ev_timer_set(&c->timer, SYNC_TIMEOUT_S, 0.);
		ev_timer_start(loop, &c->timer);
	}
	if ((revents & EV_READ) && !c->finished) {
		for (;;) {
			if (c->rbuf.cap - c->rbuf.len < 4096) {
				if (!conn_process(c) || (!c->finished && !rbuf_room(c))) {
					conn_free(c, false);
					return;
				}
				if (c->finished)
					break;
			}
			ssize_t n = read(c->fd, c->rbuf.p + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
			if (n > 0) {
				c->rbuf.len += (size_t)n;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0 && errno == EINTR)
				continue;
			/* EOF or error */
			bool ok = conn_process(c);
			conn_free(c, ok && c->finished && !kv_session_sending(c->sess) &&
			                     c->woff >= c->wbuf.len);
			return;
		}
		if (!conn_process(c)) {
			conn_free(c, false);
			return;
		}
	}
	for (;;) {
		while (!c->connecting && c->woff < c->wbuf.len) {
			ssize_t n = write(c->fd, c->wbuf.p + c->woff, c->wbuf.len - c->woff);
			if (n > 0) {
				c->woff += (size_t)n;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0 && errno == EINTR)
				continue;
			conn_free(c, false);
			return;
		}
		if (c->connecting || c->woff < c->wbuf.len || !kv_session_sending(c->sess))
			break;
		/* drained: pump the next buckets (or wait for the budget) */
		size_t before = c->wbuf.len;
		if (!conn_flush(c)) {
			conn_free(c, false);
			return;
		}
		if (c->wbuf.len == before)
			break;
	}
	if (c->finished && !kv_session_sending(c->sess) && c->woff >= c->wbuf.len) {
		conn_free(c, true);
		return;
	}
	conn_update_events(c);
}

/*
 * One deadline per connection, for the whole exchange: a peer that stalls
 * cannot hold a sync slot (there are at most KV_SYNC_MAX_CONNS) forever.
 */
static void conn_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sync_conn *c = t->data;
	log_warn("kv: sync with %s timed out", c->peer);
	conn_free(c, false);
}

static struct sync_conn *conn_new(struct kv *kv, int fd, bool outbound, const char *peer)
{
	struct sync_conn *c = xcalloc(1, sizeof(*c));
	c->kv = kv;
	c->fd = fd;
	c->outbound = outbound;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	ev_io_init(&c->io, conn_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, conn_timeout_cb, SYNC_TIMEOUT_S, 0.);
	c->timer.data = c;
	ev_timer_start(kv->loop, &c->timer);
	c->next = kv->conns;
	if (c->next)
		c->next->prev = c;
	kv->conns = c;
	kv->nconns++;
	return c;
}

/* The session's first frames (if any) are sealed and queued, the rest is
 * pumped as the socket drains. On failure the connection is closed. */
static void conn_start(struct sync_conn *c, const uint8_t *first, size_t len)
{
	struct kv_buf *out = conn_out(c);
	if (len > 0) {
		if (out->cap - out->len < len) {
			out->p = xrealloc(out->p, out->len + len);
			out->cap = out->len + len;
		}
		memcpy(out->p + out->len, first, len);
		out->len += len;
	}
	if (!conn_flush(c)) {
		conn_free(c, false);
		return;
	}
	conn_update_events(c);
}

/*
 * Over KV_SYNC_MAX_CONNS an accepted socket is closed at once: a sync can be
 * retried, while letting connections pile up would exhaust descriptors and memory.
 */
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct kv *kv = w->data;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(kv->listen_fd, (struct sockaddr *)&ss, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (kv->nconns >= KV_SYNC_MAX_CONNS) {
			close(fd);
			continue;
		}
		char peer[64];
		net_addr_format(&ss, peer, sizeof(peer));
		struct sync_conn *c = conn_new(kv, fd, false, peer);
		c->sess = kv_engine_accept(kv->engine);
		if (c->sess == NULL) {
			conn_free(c, false);
			continue;
		}
		conn_start(c, NULL, 0);
	}
}

static int listen_on(struct kv *kv, const char *addr, int port, char *err, size_t errlen)
{
	char nerr[200];
	int fd = net_tcp_listen(addr, (uint16_t)port, 0, nerr, sizeof(nerr));
	if (fd < 0) {
		snprintf(err, errlen, "Error starting KV sync listener: %s", nerr);
		return -1;
	}
	kv->sync_port = net_bound_port(fd);
	kv->listen_fd = fd;
	ev_io_init(&kv->listen_io, accept_cb, fd, EV_READ);
	kv->listen_io.data = kv;
	ev_io_start(kv->loop, &kv->listen_io);
	return 0;
}

/* A non-blocking connect to the peer's sync port, from our own address
 * (several agents on one host, partitions keyed on the source). NULL when
 * it failed at once. */
static struct sync_conn *dial(struct kv *kv, const struct kv_peer *p)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (p->ip_len == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, p->ip, 4);
		in->sin_port = htons(p->port);
		sl = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, p->ip, 16);
		in6->sin6_port = htons(p->port);
		sl = sizeof(*in6);
	}
	int fd = net_tcp_connect(&ss, sl, kv->bind_addr);
	if (fd < 0)
		return NULL;
	struct sync_conn *c = conn_new(kv, fd, true, p->name);
	c->connecting = true; /* an unreachable peer must not hold the slot long */
	ev_timer_stop(kv->loop, &c->timer);
	ev_timer_set(&c->timer, SYNC_CONNECT_TIMEOUT_S, 0.);
	ev_timer_start(kv->loop, &c->timer);
	return c;
}

/* ------------------------------------------------ the engine's kv_io */

/* Peer picks, jitter: not secrets. A splitmix64 stream seeded once from
 * libsodium, since randombytes_uniform is a getrandom system call per draw
 * and a round's reservoir sampling draws once per peer (1,000 calls a round
 * at 1,000 agents). n <= 2^32: the multiply-shift reduction's bias is below
 * n / 2^64. */
static uint32_t io_rand(void *ctx, uint32_t n)
{
	struct kv *kv = ctx;
	uint64_t z = (kv->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (uint32_t)(((unsigned __int128)z * n) >> 64);
}

/*
 * Nothing is broadcast before the agent has wired in membership or once it is
 * closing: the engine may commit at those times, and there is no gossip to use.
 */
static void io_broadcast(void *ctx, const char *key, size_t key_len, const uint8_t *msg, size_t len)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->closing)
		return;
	kv->members.broadcast(kv->members.ctx, key, key_len, msg, len);
	kv->stats.gossip_out++;
}

static void io_echo(void *ctx, const char *key, size_t key_len)
{
	struct kv *kv = ctx;
	if (kv->has_members && !kv->closing && kv->members.echo != NULL)
		kv->members.echo(kv->members.ctx, key, key_len);
}

static size_t io_gossip_backlog(void *ctx)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->members.backlog == NULL)
		return 0;
	return kv->members.backlog(kv->members.ctx);
}

static int64_t io_known_since(void *ctx, const char *name)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->members.known_since == NULL)
		return INT64_MIN; /* no answer: every late record counts */
	return kv->members.known_since(kv->members.ctx, name);
}

/* The agent's members.pick (no list visited); without one, the engine
 * draws from io_peers. */
static int io_pick_peer(void *ctx, char *name, size_t cap)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->closing)
		return 0;
	if (kv->members.pick == NULL)
		return -1;
	struct kv_peer p;
	if (!kv->members.pick(kv->members.ctx, io_rand, kv, &p))
		return 0;
	size_t n = strlen(p.name);
	if (n >= cap)
		return 0;
	memcpy(name, p.name, n + 1);
	return 1;
}

struct peers_ctx {
	kv_peer_fn fn;
	void *ud;
};

static void peer_name(void *ud, const struct kv_peer *p)
{
	struct peers_ctx *pc = ud;
	pc->fn(pc->ud, p->name);
}

static void io_peers(void *ctx, kv_peer_fn fn, void *ud)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->closing)
		return;
	struct peers_ctx pc = {fn, ud};
	kv->members.peers(kv->members.ctx, peer_name, &pc);
}

/* Dial the peer the engine chose and run its session there. A pull is one
 * connection more; past KV_SYNC_MAX_CONNS it is not made (the next
 * ANNOUNCE or anti-entropy brings the version). */
static bool io_open_session(void *ctx, const char *peer, struct kv_session *s, const uint8_t *first,
                            size_t len)
{
	struct kv *kv = ctx;
	if (!kv->has_members || kv->closing)
		return false;
	if (kv_session_role(s) == KV_SYNC_PULLER && kv->nconns >= KV_SYNC_MAX_CONNS)
		return false;
	struct kv_peer p;
	if (!kv->members.lookup(kv->members.ctx, peer, &p))
		return false;
	struct sync_conn *c = dial(kv, &p);
	if (c == NULL)
		return false;
	c->sess = s;
	conn_start(c, first, len);
	return true;
}

static void io_sync_arm(void *ctx, int64_t after_us)
{
	struct kv *kv = ctx;
	ev_timer_stop(kv->loop, &kv->sync_timer);
	ev_timer_set(&kv->sync_timer, (double)after_us / 1e6, 0.);
	ev_timer_start(kv->loop, &kv->sync_timer);
}

/*
 * -1 when no round is scheduled, so the engine never mistakes "not armed" for
 * "due now".
 */
static int64_t io_sync_left(void *ctx)
{
	struct kv *kv = ctx;
	if (!ev_is_active(&kv->sync_timer))
		return -1;
	return (int64_t)(ev_timer_remaining(kv->loop, &kv->sync_timer) * 1e6);
}

static void io_committed(void *ctx, const char *key, size_t key_len, const struct kv_rec *r,
                         enum kv_src src)
{
	struct kv *kv = ctx;
	(void)r, (void)src;
	if (kv->commit_fn != NULL)
		kv->commit_fn(kv->commit_ud, key, key_len);
}

static void sync_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct kv *kv = t->data;
	kv_engine_sync_timer(kv->engine);
}

void kv_sync_now(struct kv *kv)
{
	kv_engine_sync_now(kv->engine);
}

/*
 * Only a member the agent can actually reach for sync counts as a new peer, and
 * it just brings the next round forward: the engine chooses who to sync with.
 */
void kv_on_member(struct kv *kv, bool joined, const char *name)
{
	struct kv_peer p;
	if (!joined || !kv->has_members || kv->closing ||
	    !kv->members.lookup(kv->members.ctx, name, &p))
		return;
	kv_engine_peer_joined(kv->engine, wall_ms());
}

void kv_on_user_msg(struct kv *kv, const uint8_t *p, size_t len)
{
	char err[128];
	if (kv_engine_user_msg(kv->engine, wall_ms(), p, len, err, sizeof(err)) < 0)
		log_debug("kv: dropping gossip message: %s", err);
}

/* Also refreshes last_seen (the commit writes it): at least 4 times per
 * TTL, so a running agent never looks away too long at its next start. */
static void purge_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct kv *kv = t->data;
	kv_engine_purge(kv->engine, wall_ms()); /* committed by prepare_cb */
}

/* ------------------------------------------------------------ life */

/*
 * The purge runs at least four times per tombstone TTL, so a tombstone lives at
 * most a quarter of the TTL longer than it must. Nothing is started until the
 * engine opened the replica, and a failed listener undoes everything.
 */
struct kv *kv_new(struct ev_loop *loop, const struct kv_config *cfg, char *err, size_t errlen)
{
	struct kv *kv = xcalloc(1, sizeof(*kv));
	kv->loop = loop;
	randombytes_buf(&kv->rng, sizeof(kv->rng));
	kv->listen_fd = -1;
	kv->sync_port = -1;
	snprintf(kv->bind_addr, sizeof(kv->bind_addr), "%s", cfg->bind_addr ? cfg->bind_addr : "");
	ev_prepare_init(&kv->prepare, prepare_cb);
	kv->prepare.data = kv;
	ev_timer_init(&kv->sync_timer, sync_timer_cb, 0., 0.);
	kv->sync_timer.data = kv;
	ev_timer_init(&kv->checkpoint_timer, checkpoint_cb, CHECKPOINT_INTERVAL_S, 0.);
	kv->checkpoint_timer.data = kv;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/kv", cfg->data_dir);
	struct kv_engine_config ec = {
	        .dir = dir,
	        .node_name = cfg->node_name,
	        .tombstone_ttl_ms = cfg->tombstone_ttl_ms,
	        .sync_interval_ms = cfg->sync_interval_ms,
	        .max_watches = cfg->max_watches,
	        .map_size = cfg->map_size,
	        .max_ahead_ms = cfg->max_ahead_ms,
	        .lazy = true,
	};
	struct kv_io io = {
	        .ctx = kv,
	        .rand = io_rand,
	        .broadcast = io_broadcast,
	        .echo = io_echo,
	        .peers = io_peers,
	        .pick_peer = io_pick_peer,
	        .open_session = io_open_session,
	        .sync_arm = io_sync_arm,
	        .sync_left = io_sync_left,
	        .gossip_backlog = io_gossip_backlog,
	        .known_since = io_known_since,
	        .committed = io_committed,
	};
	kv->engine = kv_engine_new(&ec, &io, wall_ms(), err, errlen); /* arms sync_timer */
	if (kv->engine == NULL) {
		free(kv);
		return NULL;
	}
	if (cfg->sync_port >= 0 && listen_on(kv, cfg->bind_addr ? cfg->bind_addr : "0.0.0.0",
	                                     cfg->sync_port, err, errlen) < 0) {
		ev_timer_stop(loop, &kv->sync_timer);
		kv_engine_free(kv->engine);
		free(kv);
		return NULL;
	}
	ev_prepare_start(loop, &kv->prepare);
	int64_t ttl =
	        cfg->tombstone_ttl_ms > 0 ? cfg->tombstone_ttl_ms : KV_TOMBSTONE_TTL_DEFAULT_MS;
	double purge_every = (double)ttl / 4000.0;
	if (purge_every > PURGE_INTERVAL_S)
		purge_every = PURGE_INTERVAL_S;
	ev_timer_init(&kv->purge_timer, purge_cb, purge_every, purge_every);
	kv->purge_timer.data = kv;
	ev_timer_start(loop, &kv->purge_timer);
	return kv;
}

/*
 * Commits what the last loop turn staged before anything closes, so writes
 * already accepted are not lost at shutdown; sync connections then end as
 * failures, and watches fire unchanged in kv_engine_free.
 */
void kv_free(struct kv *kv)
{
	if (kv == NULL)
		return;
	kv->closing = true; /* nothing more to broadcast */
	char err[256];
	if (kv_engine_commit(kv->engine, wall_ms(), err, sizeof(err)) < 0)
		log_debug("kv: %s", err);
	while (kv->conns != NULL)
		conn_free(kv->conns, false);
	if (kv->listen_fd >= 0) {
		ev_io_stop(kv->loop, &kv->listen_io);
		close(kv->listen_fd);
	}
	ev_prepare_stop(kv->loop, &kv->prepare);
	ev_timer_stop(kv->loop, &kv->sync_timer);
	ev_timer_stop(kv->loop, &kv->purge_timer);
	ev_timer_stop(kv->loop, &kv->checkpoint_timer);
	kv_engine_free(kv->engine); /* parked watches fire unchanged; checkpoints */
	free(kv);
}

void kv_set_members(struct kv *kv, const struct kv_members *m)
{
	kv->has_members = m != NULL;
	if (m != NULL)
		kv->members = *m;
}

void kv_set_seal(struct kv *kv, const struct kv_seal *seal)
{
	kv->sealed = seal != NULL;
	if (seal != NULL)
		kv->seal = *seal;
}

void kv_set_handoff(struct kv *kv, kv_handoff_fn fn, void *ctx)
{
	kv->handoff = fn;
	kv->handoff_ctx = fn != NULL ? ctx : NULL;
}

void kv_set_commit_fn(struct kv *kv, kv_commit_fn fn, void *ud)
{
	kv->commit_fn = fn;
	kv->commit_ud = fn != NULL ? ud : NULL;
}

int kv_sync_port(const struct kv *kv)
{
	return kv->sync_port;
}

const struct kv_stats *kv_stats(struct kv *kv)
{
	const struct kv_engine_stats *es = kv_engine_stats(kv->engine);
	kv->stats.commits = es->commits;
	kv->stats.commits_unsynced = es->commits_unsynced;
	kv->stats.writes = es->writes;
	kv->stats.gossip_in = es->gossip_in;
	kv->stats.gossip_applied = es->gossip_applied;
	kv->stats.gossip_echoes = es->gossip_echoes;
	kv->stats.relays_held = es->relays_held;
	kv->stats.syncs_ok = es->syncs_ok;
	kv->stats.syncs_failed = es->syncs_failed;
	kv->stats.sync_records_in = es->sync_records_in;
	kv->stats.sync_records_out = es->sync_records_out;
	kv->stats.sync_chains = es->sync_chains;
	kv->stats.sync_chains_held = es->sync_chains_held;
	kv->stats.join_rounds_held = es->join_rounds_held;
	kv->stats.versions_ahead = es->versions_ahead;
	struct kv_store *st = kv_engine_store(kv->engine);
	kv_store_counts(st, &kv->stats.keys, &kv->stats.tombstones);
	const struct kv_store_stats *ss = kv_store_stats(st);
	kv->stats.store_bad_reads = ss->bad_reads;
	kv->stats.store_bad_records = ss->bad_records;
	kv->stats.store_legacy_records = ss->legacy_records;
	kv->stats.wal_dropped_records = ss->wal_dropped_records;
	kv->stats.commit_failures = ss->commit_failures;
	kv->stats.checkpoint_failures = ss->checkpoint_failures;
	kv->stats.store_failing = ss->failing;
	kv->stats.watches = kv_engine_watch_count(kv->engine);
	return &kv->stats;
}

/* ---------------------------------------------------------- CP mode */

void kv_set_cp(struct kv *kv, const struct kv_cp *cp)
{
	if (cp != NULL)
		kv->cp = *cp;
	else
		memset(&kv->cp, 0, sizeof(kv->cp));
}

void kv_refuse_merges(struct kv *kv, bool refuse)
{
	kv_engine_refuse_merges(kv->engine, refuse);
}

int kv_write_pinned(struct kv *kv, const struct kv_op *ops, size_t n, uint64_t base,
                    uint64_t raft_index, const char *node, kv_done_fn done, void *ud,
                    uint64_t *last, char *err, size_t errlen)
{
	return kv_engine_write_pinned(kv->engine, ops, n, base, raft_index, node, strlen(node),
	                              done, ud, last, err, errlen) < 0
	               ? -1
	               : 0;
}

int kv_replace_pinned(struct kv *kv, const uint8_t *p, size_t len, uint64_t base,
                      uint64_t raft_index, const char *node, const char *keep, kv_done_fn done,
                      void *ud, uint64_t *last, char *err, size_t errlen)
{
	return kv_engine_replace_pinned(kv->engine, p, len, base, raft_index, node, strlen(node),
	                                keep, done, ud, last, err, errlen) < 0
	               ? -1
	               : 0;
}

uint64_t kv_next_version(struct kv *kv)
{
	return kv_engine_next_version(kv->engine, wall_ms());
}

struct kv_engine *kv_engine_of(struct kv *kv)
{
	return kv->engine;
}

int kv_dump(struct kv *kv, kv_store_fn fn, void *ud)
{
	return kv_engine_dump(kv->engine, fn, ud);
}

int kv_held(struct kv *kv, const char *session, size_t session_len, kv_store_fn fn, void *ud)
{
	return kv_engine_held(kv->engine, session, session_len, fn, ud);
}

/* The wipe deletes keys without a change each: the listener is told that
 * any key may have changed. */
int kv_restore_begin(struct kv *kv)
{
	int rc = kv_engine_restore_begin(kv->engine);
	if (rc == 0 && kv->commit_fn != NULL)
		kv->commit_fn(kv->commit_ud, NULL, 0);
	return rc;
}

int kv_restore_put(struct kv *kv, const char *key, size_t key_len, const struct kv_rec *r)
{
	return kv_engine_restore_put(kv->engine, key, key_len, r);
}

int kv_merge_body(struct kv *kv, const uint8_t *p, size_t len, kv_done_fn done, void *ud, char *err,
                  size_t errlen)
{
	return kv_engine_merge_body(kv->engine, wall_ms(), p, len, done, ud, err, errlen);
}

int kv_records(struct kv *kv, const char *key, size_t key_len, bool recurse, kv_store_fn fn,
               void *ud)
{
	return kv_engine_records(kv->engine, key, key_len, recurse, fn, ud);
}
