/*
 * kv/engine.c — see engine.h.
 *
 * The batch. Writes, gossip, sync and pulls stage their records in the
 * store's open batch and note each one in the change list (key, encoded
 * record, where it came from, whether to broadcast it); local writes also
 * leave their done callback in the pending list. kv_engine_commit makes the
 * batch durable and only then answers, wakes and broadcasts. Both lists are
 * taken off the engine before any callback runs: a callback may write
 * again, which opens the next batch.
 *
 * What is broadcast: local writes and records that arrived by gossip or a
 * pull (so a write spreads even if its writer's own broadcasts were lost);
 * records from anti-entropy are not, since the round itself repairs.
 *
 * Sessions are engine objects (struct kv_session wraps the kv/repl.h state
 * machine) so that the engine knows which pulls are in flight and which
 * anti-entropy round is open, whichever driver moves their bytes.
 *
 * The time `now_ms` of the call being served is kept in e->now_ms for the
 * merge callbacks that kv_sync_feed makes; nothing else reads it.
 */
#include "kv/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "kv/hlc.h"
#include "kv/store.h"

#define SYNC_SOON_MIN_US 200000     /* a round brought forward: 0.2 s ... */
#define SYNC_SOON_SPREAD_MS 300     /* ... plus 0-0.3 s */
#define SYNC_SOON_IF_LEFT_US 500000 /* unless the timer fires within 0.5 s */
#define SYNC_BACKOFF_SHIFT 1        /* an idle store's period doubles, once (see below) */
#define SYNC_STALE_MS 3000          /* a record this old came late: gossip missed it */
#define SYNC_CHAIN_ROUNDS 3         /* quick rounds after a round brought stale records */
#define SYNC_BACKLOG_MAX 64         /* ... unless gossip has more than this queued */
#define AHEAD_LOG_EVERY_MS 10000

struct pending {
	kv_done_fn done;
	void *ud;
};

struct change {
	char *key;
	size_t key_len;
	uint8_t *rec; /* encoded record */
	size_t rec_len;
	bool broadcast;
	enum kv_src src;
	bool peer; /* merged from a peer's record (merge()) */
};

struct kv_engine_watch {
	struct kv_engine_watch *prev, *next;
	char *key;
	size_t key_len;
	bool recurse;
	uint64_t index;
	kv_engine_watch_fn fn;
	void *ud;
};

struct kv_session {
	struct kv_engine *e;
	struct kv_session *prev, *next;
	struct kv_sync sync;
	/* a pull: the key and the version it fetches (NULL key: not a pull) */
	char *pull_key;
	size_t pull_key_len;
	uint64_t pull_hlc;
	/* anti-entropy: records it stored that were older than SYNC_STALE_MS */
	uint64_t stale_in;
};

struct kv_engine {
	struct kv_io io;
	struct kv_store *store;
	struct kv_hlc hlc;
	char node[KV_NODE_MAX + 1];
	size_t node_len;
	int64_t ttl_ms;
	int64_t sync_interval_ms;
	size_t max_watches;
	int64_t max_ahead_ms; /* 0: no check */
	bool lazy;
	int64_t now_ms; /* of the call being served */
	struct pending *pend;
	size_t npend, cappend;
	struct change *chg;
	size_t nchg, capchg;
	struct kv_engine_watch *watches;
	size_t nwatches;
	struct kv_session *sessions;
	bool busy; /* an anti-entropy round of ours is open */
	/* back-off: the period is doubled once per round that found the store
	 * as the round before (sync_root) up to SYNC_BACKOFF_SHIFT times; a
	 * change, a peer joining, a round finding a difference or a failed
	 * round undo it */
	unsigned sync_idle;
	uint64_t sync_root;
	bool sync_digest_next; /* our last ROOT went unanswered (older peer?) */
	/* quick rounds (0.2-0.5 s apart) still to make because a round
	 * stored stale records */
	unsigned sync_chain;
	bool sync_failed; /* our last round failed: no back-off until one succeeds */
	struct kv_buf msg, first;
	int64_t ahead_logged_ms;
	struct kv_engine_stats stats;
	bool merge_refused;    /* a CP server: only Raft writes this replica */
	bool batch_own;        /* the open batch wrote more than peers' records */
	int64_t join_round_ms; /* when a join last brought a round forward */
	uint64_t raft_index;   /* during a pinned write: its entry's Raft index */
};

/* --------------------------------------------------------- changes */

/*
 * The record is copied in encoded form, not pointed to: the store's buffers are
 * only valid until the next store call, and the change list must outlive the
 * whole batch up to the commit.
 */
static void note_change(struct kv_engine *e, const char *key, size_t key_len,
                        const struct kv_rec *r, bool broadcast, enum kv_src src)
{
	if (e->nchg == e->capchg) {
		e->capchg = e->capchg ? e->capchg * 2 : 64;
		e->chg = xrealloc(e->chg, e->capchg * sizeof(*e->chg));
	}
	struct change *c = &e->chg[e->nchg++];
	c->key = xmalloc(key_len ? key_len : 1);
	memcpy(c->key, key, key_len);
	c->key_len = key_len;
	c->rec_len = kv_rec_size(r);
	c->rec = xmalloc(c->rec_len);
	kv_rec_encode(r, c->rec);
	c->broadcast = broadcast;
	c->src = src;
	c->peer = false;
}

static void drop_changes(struct kv_engine *e)
{
	for (size_t i = 0; i < e->nchg; i++) {
		free(e->chg[i].key);
		free(e->chg[i].rec);
	}
	e->nchg = 0;
}

/* Answer every write waiting in the pending list with r. The list is taken
 * first: a callback may write again and fill the next one. */
static void answer_pending(struct kv_engine *e, enum kv_result r)
{
	size_t n = e->npend;
	if (n == 0)
		return;
	struct pending *p = xmalloc(n * sizeof(*p));
	memcpy(p, e->pend, n * sizeof(*p));
	e->npend = 0;
	for (size_t i = 0; i < n; i++)
		if (p[i].done)
			p[i].done(p[i].ud, r, -1);
	free(p);
}

static bool gossip_behind(const struct kv_engine *e);

/*
 * Whether a record a peer sent (gossip, a pull) is passed on by gossip. Not
 * while this node's gossip is behind (more than SYNC_BACKLOG_MAX queued: a
 * join storm, where every new agent writes its catalog record): the writer's
 * own broadcast and anti-entropy carry it, and a relay would only lengthen
 * the queue that made it late. In a 1,000-agent storm each agent heard each
 * record it took in by gossip some twelve times. A record from anti-entropy
 * is never passed on (the rounds repair). Only merge_held asks, for peers'
 * records; local writes are always broadcast (local_set).
 */
static bool relay(struct kv_engine *e, enum kv_src src)
{
	if (src == KV_SRC_SYNC)
		return false;
	if (gossip_behind(e)) {
		e->stats.relays_held++;
		return false;
	}
	return true;
}

/*
 * Merge a record received from a peer into the open batch: the larger
 * (hlc, node) wins (kv_merge_rec). A version too far ahead of our clock is
 * refused, counted and logged at most every 10 s; it must never be taken
 * in, or every clock that sees it is dragged along. Returns 1 stored, 0
 * ignored, -1 store error (what kv/repl.h's apply functions return); *held
 * (when given) is set when the replica stores that very version.
 */
static int merge_held(struct kv_engine *e, const char *key, size_t key_len, const struct kv_rec *r,
                      enum kv_src src, bool *held)
{
	if (e->merge_refused)
		return 0;
	enum kv_merge_result rc = kv_merge_rec(e->store, &e->hlc, e->now_ms, e->ttl_ms,
	                                       e->max_ahead_ms, key, key_len, r);
	if (rc == KV_MERGE_STORED) {
		note_change(e, key, key_len, r, relay(e, src), src);
		e->chg[e->nchg - 1].peer = true;
		return 1;
	}
	if (rc == KV_MERGE_HELD) {
		if (held != NULL)
			*held = true;
		return 0;
	}
	if (rc == KV_MERGE_AHEAD) {
		e->stats.versions_ahead++;
		if (e->now_ms - e->ahead_logged_ms >= AHEAD_LOG_EVERY_MS) {
			e->ahead_logged_ms = e->now_ms;
			log_warn("kv: refused a version of %.*s from %.*s that is %lld ms ahead of "
			         "our "
			         "clock (max %lld ms; %llu refused so far)",
			         (int)(key_len > 64 ? 64 : key_len), key, (int)r->node_len, r->node,
			         (long long)(KV_HLC_MS(r->hlc) - e->now_ms),
			         (long long)e->max_ahead_ms,
			         (unsigned long long)e->stats.versions_ahead);
		}
		return 0;
	}
	return rc;
}

/* merge_held for callers that need not know an echo from an old version. */
static int merge(struct kv_engine *e, const char *key, size_t key_len, const struct kv_rec *r,
                 enum kv_src src)
{
	return merge_held(e, key, key_len, r, src, NULL);
}

/*
 * A late record is news gossip missed only if its writer was in this node's
 * membership table when it wrote it: gossip then connected the two. A record
 * written before that (an agent's catalog record, written at its start before
 * it joined; an agent that was down and wrote at its restart) could reach
 * this node only by anti-entropy, and arriving late is what it does: in a
 * 1,000-agent join storm every agent's catalog record was such a record and
 * every round that brought one started a chain (sync_chain_start). Without
 * the driver's answer every late record counts.
 */
static bool writer_was_known(struct kv_engine *e, const struct kv_rec *r, int64_t at_ms)
{
	if (e->io.known_since == NULL)
		return true;
	char name[KV_NODE_MAX + 1];
	if (r->node_len > KV_NODE_MAX)
		return false; /* no member has such a name */
	memcpy(name, r->node, r->node_len);
	name[r->node_len] = '\0';
	return e->io.known_since(e->io.ctx, name) <= at_ms;
}

/* kv/repl.h's apply function of every session: the session says where the
 * record came from (a pull, or either side of an anti-entropy round). */
static int session_apply(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_session *s = ctx;
	struct kv_engine *e = s->e;
	if (s->sync.role == KV_SYNC_PULLER)
		return merge(e, key, key_len, r, KV_SRC_PULL);
	int rc = merge(e, key, key_len, r, KV_SRC_SYNC);
	if (rc == 1) {
		e->stats.sync_records_in++;
		int64_t at = (int64_t)KV_HLC_MS(r->hlc);
		if (at + SYNC_STALE_MS < e->now_ms && writer_was_known(e, r, at))
			s->stale_in++;
	}
	return rc;
}

/* ---------------------------------------------------------- watches */

/*
 * NULL when the table is full: the caller then answers at once instead of
 * parking. Watches are bounded because each one is a client holding a
 * connection open, and the bound must hold whatever clients do.
 */
struct kv_engine_watch *kv_engine_watch_add(struct kv_engine *e, const char *key, size_t key_len,
                                            bool recurse, uint64_t index, kv_engine_watch_fn fn,
                                            void *ud)
{
	if (e->nwatches >= e->max_watches)
		return NULL;
	struct kv_engine_watch *w = xcalloc(1, sizeof(*w));
	w->key = xmalloc(key_len ? key_len : 1);
	memcpy(w->key, key, key_len);
	w->key_len = key_len;
	w->recurse = recurse;
	w->index = kv_hlc_index_in(index);
	w->fn = fn;
	w->ud = ud;
	w->next = e->watches;
	if (w->next)
		w->next->prev = w;
	e->watches = w;
	e->nwatches++;
	return w;
}

void kv_engine_watch_cancel(struct kv_engine *e, struct kv_engine_watch *w)
{
	if (w == NULL)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		e->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	e->nwatches--;
	free(w->key);
	free(w);
}

size_t kv_engine_watch_count(const struct kv_engine *e)
{
	return e->nwatches;
}

/*
 * A watch fires once: it is unlinked and freed before its callback runs, so the
 * callback may add a new watch (a blocking query re-parking) without the list
 * changing under the caller.
 */
static void watch_fire(struct kv_engine *e, struct kv_engine_watch *w, bool changed)
{
	kv_engine_watch_fn fn = w->fn;
	void *ud = w->ud;
	kv_engine_watch_cancel(e, w);
	fn(ud, changed);
}

/* A change of key to record r wakes the watches on that key whose index
 * it passes (indexes, not versions: the client's ?index= is one, see
 * kv_rec_index), and every recursive one on a prefix of it: a record merged
 * late can be older than the newest under the prefix and still change what
 * the prefix holds (gossip delivers in any order), so a prefix watch that
 * waited for its index to move would miss it (the catalog did). */
static void wake_watches(struct kv_engine *e, const char *key, size_t key_len,
                         const struct kv_rec *r)
{
	uint64_t idx = kv_rec_index(r);
	struct kv_engine_watch *w = e->watches;
	while (w != NULL) {
		struct kv_engine_watch *next = w->next;
		bool match =
		        w->recurse
		                ? (key_len >= w->key_len && memcmp(key, w->key, w->key_len) == 0)
		                : (key_len == w->key_len && memcmp(key, w->key, w->key_len) == 0);
		if (match && (w->recurse || idx > w->index))
			watch_fire(e, w, true);
		w = next;
	}
}

/* ------------------------------------------------------ group commit */

/* A committed change goes out whole when it is small (SET), else as an
 * ANNOUNCE that peers holding an older version answer with a pull. */
static void broadcast_change(struct kv_engine *e, const char *key, size_t key_len,
                             const struct kv_rec *r)
{
	if (e->io.broadcast == NULL)
		return;
	size_t inline_len = 3 + key_len + kv_rec_size(r);
	int rc = inline_len <= KV_INLINE_MSG_MAX && r->value_len <= KV_INLINE_MAX
	                 ? kv_msg_encode_set(&e->msg, key, key_len, r)
	                 : kv_msg_encode_announce(&e->msg, key, key_len, r);
	if (rc == 0)
		e->io.broadcast(e->io.ctx, key, key_len, e->msg.p, e->msg.len);
}

static void sync_wake(struct kv_engine *e);

/*
 * A batch that only took in records peers sent (gossip, anti-entropy, a
 * pull), with nobody waiting on it, needs no fdatasync of its own: the peers
 * hold those records, and a crash that loses them is repaired by the next
 * anti-entropy round (kv_store_batch_unsynced). So does a batch that changed
 * nothing (a round that found every record current): synced, it would bring
 * the next checkpoint within a second. Anything else the batch wrote (a local
 * write, a restore, a Raft-pinned write) makes it synced.
 */
static bool peers_only(const struct kv_engine *e)
{
	if (e->npend > 0 || e->batch_own)
		return false;
	for (size_t i = 0; i < e->nchg; i++)
		if (!e->chg[i].peer)
			return false;
	return true;
}

/*
 * Durability first, then effects: writers are answered, watches woken and changes
 * broadcast only after the batch is on disk, so nothing is announced that a crash
 * could take back. On a failed commit the writers get KV_ERROR and nothing is
 * woken or broadcast. The change list is detached first, since callbacks may
 * start the next batch.
 */
int kv_engine_commit(struct kv_engine *e, int64_t now_ms, char *err, size_t errlen)
{
	if (!kv_store_in_txn(e->store))
		return 0;
	e->now_ms = now_ms;
	kv_store_set_last_seen(e->store, now_ms);
	if (peers_only(e)) {
		kv_store_batch_unsynced(e->store);
		e->stats.commits_unsynced++;
	}
	e->batch_own = false;
	int rc = kv_store_commit(e->store, err, errlen);
	e->stats.commits++;
	size_t nchg = e->nchg;
	struct change *chg = e->chg;
	e->chg = NULL;
	e->nchg = e->capchg = 0;
	answer_pending(e, rc == 0 ? KV_OK : KV_ERROR);
	if (rc == 0 && nchg > 0)
		sync_wake(e);
	for (size_t i = 0; i < nchg; i++) {
		struct change *c = &chg[i];
		struct kv_rec r;
		const uint8_t *p = c->rec;
		char derr[64];
		if (rc == 0 && kv_rec_decode(&p, p + c->rec_len, &r, derr, sizeof(derr)) == 0) {
			wake_watches(e, c->key, c->key_len, &r);
			if (e->io.committed != NULL)
				e->io.committed(e->io.ctx, c->key, c->key_len, &r, c->src);
			if (c->broadcast)
				broadcast_change(e, c->key, c->key_len, &r);
		}
		free(c->key);
		free(c->rec);
	}
	free(chg);
	return rc == 0 ? 1 : -1;
}

/*
 * Drops the batch and answers its writers with an error: a staged write that was
 * never committed must not be reported as done.
 */
void kv_engine_abort(struct kv_engine *e)
{
	e->batch_own = false;
	kv_store_abort(e->store);
	drop_changes(e);
	answer_pending(e, KV_ERROR);
}

/*
 * Tombstones older than the TTL are removed inside the open batch, so they go
 * with the next commit; the TTL is what lets a replica that was away shorter
 * than it still learn about the delete before the tombstone disappears.
 */
int kv_engine_purge(struct kv_engine *e, int64_t now_ms)
{
	if (kv_store_begin(e->store) < 0)
		return -1;
	int n = kv_store_purge(e->store, now_ms - e->ttl_ms);
	if (n > 0)
		log_debug("kv: purged %d tombstones", n);
	return n;
}

/* --------------------------------------------------------- writes */

/*
 * Empty and oversized keys read as "absent" rather than as an error: they can
 * never have been written, so no lookup needs to reach the store.
 */
static bool key_ok(const char *key, size_t len)
{
	return key != NULL && len > 0 && len <= KV_KEY_MAX;
}

struct del_ctx {
	int rc;
	char **keys;
	size_t *lens;
	size_t n, cap;
};

/* The live keys under a prefix, copied: a delete-tree stages its tombstones
 * after the scan, never while the cursor walks the keys it changes. */
static int collect_key(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct del_ctx *d = ud;
	if (r->tomb)
		return 0;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->keys = xrealloc(d->keys, d->cap * sizeof(*d->keys));
		d->lens = xrealloc(d->lens, d->cap * sizeof(*d->lens));
	}
	d->keys[d->n] = xmalloc(key_len ? key_len : 1);
	memcpy(d->keys[d->n], key, key_len);
	d->lens[d->n++] = key_len;
	return 0;
}

/* What a local write does to a key's lock. */
struct lockset {
	bool set; /* false: a put keeps the key's lock as it is */
	uint64_t lock_index;
	const char *session;
	size_t session_len; /* 0: not held */
};

/* The lock of the key as staged so far (nothing when absent or deleted);
 * the session is copied into buf (KV_SESSION_MAX bytes). 0 or -1. */
static int lock_of(struct kv_engine *e, const char *key, size_t key_len, struct lockset *out,
                   char *buf)
{
	struct kv_rec old;
	memset(out, 0, sizeof(*out));
	out->set = true;
	out->session = buf;
	int got = kv_store_get(e->store, false, key, key_len, &old);
	if (got < 0)
		return -1;
	if (got == 1 && !old.tomb) {
		out->lock_index = old.lock_index;
		out->session_len = old.session_len;
		if (old.session_len)
			memcpy(buf, old.session, old.session_len);
	}
	return 0;
}

/* One local put or delete: stamped by our clock, staged, noted for the
 * commit. A put keeps the key's lock unless ls says otherwise; a delete
 * ends it. 1 staged, 0 nothing to do (deleting an absent key), -1 error. */
static int local_set(struct kv_engine *e, const char *key, size_t key_len, bool tomb,
                     const void *val, size_t len, uint64_t flags, const struct lockset *ls)
{
	struct lockset keep;
	char sbuf[KV_SESSION_MAX];
	if (!tomb && (ls == NULL || !ls->set)) {
		if (lock_of(e, key, key_len, &keep, sbuf) < 0)
			return -1;
		ls = &keep;
	}
	struct kv_rec r;
	int rc = kv_local_stamp(e->store, &e->hlc, e->now_ms, e->node, e->node_len, key, key_len,
	                        tomb, flags, &r);
	if (rc != 1)
		return rc;
	r.value = tomb ? NULL : val;
	r.value_len = tomb ? 0 : (uint32_t)len;
	/* a Raft entry's write carries its index; the key's creating entry is
	 * kept from the record it replaces, if that one had one */
	r.raft_index = e->raft_index;
	if (e->raft_index == 0)
		r.raft_create = 0;
	else if (r.raft_create == 0 || r.raft_create > e->raft_index)
		r.raft_create = e->raft_index;
	if (!tomb) {
		r.lock_index = ls->lock_index;
		r.session = ls->session;
		r.session_len = (uint8_t)ls->session_len;
	}
	if (kv_store_put(e->store, key, key_len, &r) < 0)
		return -1;
	e->stats.writes++;
	note_change(e, key, key_len, &r, true, KV_SRC_LOCAL);
	return 1;
}

static bool same_session(const struct lockset *l, const struct kv_op *op)
{
	return l->session_len == op->session_len &&
	       (op->session_len == 0 || memcmp(l->session, op->session, op->session_len) == 0);
}

/* The session's record exists (staged view): 1, 0, or -1. */
static int session_live(struct kv_engine *e, const struct kv_op *op)
{
	char key[sizeof(KV_SESSION_PREFIX) + KV_SESSION_MAX];
	size_t pl = sizeof(KV_SESSION_PREFIX) - 1;
	memcpy(key, KV_SESSION_PREFIX, pl);
	memcpy(key + pl, op->session, op->session_len);
	struct kv_rec r;
	int got = kv_store_get(e->store, false, key, pl + op->session_len, &r);
	return got < 0 ? -1 : got == 1 && !r.tomb;
}

/* The lock verbs' checks: 1 ok, 0 fails, -1 error. */
static int check_lock_op(struct kv_engine *e, const struct kv_op *op)
{
	struct lockset l;
	char sbuf[KV_SESSION_MAX];
	if (lock_of(e, op->key, op->key_len, &l, sbuf) < 0)
		return -1;
	switch (op->verb) {
	case KV_OP_LOCK:
		if (l.session_len != 0 && !same_session(&l, op))
			return 0;
		return session_live(e, op);
	case KV_OP_UNLOCK:
	case KV_OP_CHECK_SESSION:
		return l.session_len != 0 && same_session(&l, op);
	default:
		return 1;
	}
}

/* Check one op's condition against the state staged so far (so a CAS sees
 * the writes of the same batch): 1 ok, 0 fails, -1 error. The client's
 * index is compared with the record's index (kv_rec_index: the Raft index
 * in CP mode, else the index form of the version); one held from before an
 * upgrade (a version) is read as its index form. */
static int check_op(struct kv_engine *e, const struct kv_op *op)
{
	uint64_t idx = 0, want = kv_hlc_index_in(op->index);
	bool live = false;
	if (op->verb == KV_OP_CAS || op->verb == KV_OP_DELETE_CAS ||
	    op->verb == KV_OP_CHECK_INDEX || op->verb == KV_OP_CHECK_NOT_EXISTS) {
		struct kv_rec r;
		int got = kv_store_get(e->store, false, op->key, op->key_len, &r);
		if (got < 0)
			return -1;
		live = got == 1 && !r.tomb;
		idx = live ? kv_rec_index(&r) : 0;
	}
	switch (op->verb) {
	case KV_OP_CAS:
		return want == 0 ? !live : (live && idx == want);
	case KV_OP_DELETE_CAS:
		return want != 0 && live && idx == want;
	case KV_OP_CHECK_INDEX:
		return live && idx == want;
	case KV_OP_CHECK_NOT_EXISTS:
		return !live;
	case KV_OP_LOCK:
	case KV_OP_UNLOCK:
	case KV_OP_CHECK_SESSION:
		return check_lock_op(e, op);
	default:
		return 1;
	}
}

struct held_ctx {
	const char *session;
	size_t session_len;
	kv_store_fn fn;
	void *ud;
	int n;
};

static int held_cb(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct held_ctx *h = ud;
	if (r->tomb || r->session_len != h->session_len || r->session_len == 0 ||
	    memcmp(r->session, h->session, h->session_len) != 0)
		return 0;
	h->n++;
	return h->fn(h->ud, key, key_len, r);
}

int kv_engine_held(struct kv_engine *e, const char *session, size_t session_len, kv_store_fn fn,
                   void *ud)
{
	if (session_len == 0)
		return 0;
	if (kv_store_begin(e->store) < 0)
		return -1;
	struct held_ctx h = {session, session_len, fn, ud, 0};
	if (kv_store_scan(e->store, false, "", 0, held_cb, &h) < 0)
		return -1;
	return h.n;
}

/* A copy of a held key's value and flags (released keys keep them). */
struct held_key {
	char *key;
	size_t key_len;
	uint8_t *val;
	size_t val_len;
	uint64_t flags, lock_index;
};

struct held_list {
	struct held_key *k;
	size_t n, cap;
};

static int collect_held(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct held_list *l = ud;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->k = xrealloc(l->k, l->cap * sizeof(*l->k));
	}
	struct held_key *h = &l->k[l->n++];
	h->key = xmalloc(key_len ? key_len : 1);
	memcpy(h->key, key, key_len);
	h->key_len = key_len;
	h->val = xmalloc(r->value_len ? r->value_len : 1);
	if (r->value_len)
		memcpy(h->val, r->value, r->value_len);
	h->val_len = r->value_len;
	h->flags = r->flags;
	h->lock_index = r->lock_index;
	return 0;
}

/* KV_OP_SESSION_END: release or delete what the session holds, then its
 * record. The number of records staged, or -1. */
static int stage_session_end(struct kv_engine *e, const struct kv_op *op)
{
	struct held_list l = {NULL, 0, 0};
	int staged = 0, rc = 0;
	if (kv_engine_held(e, op->session, op->session_len, collect_held, &l) < 0)
		rc = -1;
	for (size_t i = 0; i < l.n; i++) {
		struct held_key *h = &l.k[i];
		struct lockset free_ = {true, h->lock_index, NULL, 0};
		if (rc == 0) {
			int r = op->flags == 1
			                ? local_set(e, h->key, h->key_len, true, NULL, 0, 0, NULL)
			                : local_set(e, h->key, h->key_len, false, h->val,
			                            h->val_len, h->flags, &free_);
			if (r < 0)
				rc = -1;
			else
				staged += r;
		}
		free(h->key);
		free(h->val);
	}
	free(l.k);
	if (rc == 0) {
		int r = local_set(e, op->key, op->key_len, true, NULL, 0, 0, NULL);
		rc = r < 0 ? -1 : 0;
		staged += r > 0 ? r : 0;
	}
	return rc < 0 ? -1 : staged;
}

/* KV_OP_LOCK / KV_OP_UNLOCK, their checks passed. */
static int stage_lock(struct kv_engine *e, const struct kv_op *op)
{
	struct lockset l;
	char sbuf[KV_SESSION_MAX];
	if (lock_of(e, op->key, op->key_len, &l, sbuf) < 0)
		return -1;
	if (op->verb == KV_OP_LOCK) {
		if (!same_session(&l, op))
			l.lock_index++;
		l.session = op->session;
		l.session_len = op->session_len;
	} else {
		l.session_len = 0;
	}
	return local_set(e, op->key, op->key_len, false, op->value, op->value_len, op->flags, &l);
}

/* Stage one op whose check passed: the number of records staged, or -1. */
static int stage_op(struct kv_engine *e, const struct kv_op *op)
{
	switch (op->verb) {
	case KV_OP_SET:
	case KV_OP_CAS:
		return local_set(e, op->key, op->key_len, false, op->value, op->value_len,
		                 op->flags, NULL);
	case KV_OP_DELETE:
	case KV_OP_DELETE_CAS:
		return local_set(e, op->key, op->key_len, true, NULL, 0, 0, NULL);
	case KV_OP_LOCK:
	case KV_OP_UNLOCK:
		return stage_lock(e, op);
	case KV_OP_SESSION_END:
		return stage_session_end(e, op);
	case KV_OP_DELETE_TREE: {
		struct del_ctx d = {0, NULL, NULL, 0, 0};
		if (kv_store_scan(e->store, false, op->key, op->key_len, collect_key, &d) < 0)
			d.rc = -1;
		int staged = 0;
		for (size_t j = 0; j < d.n; j++) {
			if (d.rc == 0) {
				int rc = local_set(e, d.keys[j], d.lens[j], true, NULL, 0, 0, NULL);
				if (rc < 0)
					d.rc = -1;
				else
					staged += rc;
			}
			free(d.keys[j]);
		}
		free(d.keys);
		free(d.lens);
		return d.rc < 0 ? -1 : staged;
	}
	default:
		return 0;
	}
}

/* done(ud) waits for the open batch's commit. */
static void pend_push(struct kv_engine *e, kv_done_fn done, void *ud)
{
	if (e->npend == e->cappend) {
		e->cappend = e->cappend ? e->cappend * 2 : 64;
		e->pend = xrealloc(e->pend, e->cappend * sizeof(*e->pend));
	}
	e->pend[e->npend].done = done;
	e->pend[e->npend].ud = ud;
	e->npend++;
}

/*
 * A request is applied entirely or not at all: every check runs before
 * anything is staged, and a storage error while staging aborts the whole
 * batch (the other requests of the batch fail too: nothing is
 * half-written). Never acknowledges: done waits for kv_engine_commit.
 */
int kv_engine_check_ops(const struct kv_op *ops, size_t n, char *err, size_t errlen)
{
	if (n == 0 || n > KV_TXN_MAX_OPS) {
		snprintf(err, errlen, "transaction has %zu operations; the limit is %d", n,
		         KV_TXN_MAX_OPS);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		bool tree = ops[i].verb == KV_OP_DELETE_TREE;
		if (!(tree ? ops[i].key_len <= KV_KEY_MAX : key_ok(ops[i].key, ops[i].key_len))) {
			snprintf(err, errlen, "operation %zu: key must be 1 to %d bytes", i,
			         KV_KEY_MAX);
			return -1;
		}
		bool lockv = ops[i].verb >= KV_OP_LOCK && ops[i].verb <= KV_OP_SESSION_END;
		if (lockv && (ops[i].session_len == 0 || ops[i].session_len > KV_SESSION_MAX ||
		              ops[i].session == NULL)) {
			snprintf(err, errlen, "operation %zu: session must be 1 to %d bytes", i,
			         KV_SESSION_MAX);
			return -1;
		}
		if (ops[i].verb > KV_OP_SESSION_END) {
			snprintf(err, errlen, "operation %zu: unknown verb", i);
			return -1;
		}
		if (ops[i].value_len > KV_VALUE_MAX) {
			snprintf(err, errlen, "operation %zu: value of %zu bytes is over %u", i,
			         ops[i].value_len, KV_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

int kv_engine_write(struct kv_engine *e, int64_t now_ms, const struct kv_op *ops, size_t n,
                    kv_done_fn done, void *ud, char *err, size_t errlen)
{
	if (kv_engine_check_ops(ops, n, err, errlen) < 0)
		return -1;
	e->now_ms = now_ms;
	if (kv_store_begin(e->store) < 0) {
		if (done)
			done(ud, KV_ERROR, -1);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		int c = check_op(e, &ops[i]);
		if (c <= 0) {
			if (done)
				done(ud, c == 0 ? KV_FAILED : KV_ERROR, c == 0 ? (int)i : -1);
			return 0;
		}
	}
	int staged = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = stage_op(e, &ops[i]);
		if (rc < 0) {
			log_err("kv: storage error while writing; aborting the batch");
			kv_engine_abort(e);
			if (done)
				done(ud, KV_ERROR, -1);
			return 0;
		}
		staged += rc;
	}
	pend_push(e, done, ud);
	return staged;
}

/*
 * Works on a copy of the clock: it tells the caller what the next version would
 * be without consuming it.
 */
uint64_t kv_engine_next_version(const struct kv_engine *e, int64_t now_ms)
{
	struct kv_hlc c = e->hlc;
	return kv_hlc_next(&c, now_ms);
}

/* ---------------------------------------------------------- reads */

static void to_entry(const char *key, size_t key_len, const struct kv_rec *r, struct kv_entry *e,
                     char *node)
{
	/* node has room for the writer's name, NUL, and the session, NUL */
	memcpy(node, r->node, r->node_len);
	node[r->node_len] = '\0';
	char *sess = node + r->node_len + 1;
	if (r->session_len)
		memcpy(sess, r->session, r->session_len);
	sess[r->session_len] = '\0';
	e->lock_index = r->lock_index;
	e->session = sess;
	e->key = key;
	e->key_len = key_len;
	e->value = r->value;
	e->value_len = r->value_len;
	e->flags = r->flags;
	e->create_index = kv_rec_create_index(r);
	e->modify_index = kv_rec_index(r);
	e->raft = kv_rec_raft(r);
	e->node = node;
	e->deleted = r->tomb;
}

/*
 * Tombstones are never shown: a deleted key reads as absent, though the store
 * still holds its tombstone for replication.
 */
int kv_engine_get(struct kv_engine *e, const char *key, size_t key_len, kv_entry_fn fn, void *ud)
{
	struct kv_rec r;
	if (!key_ok(key, key_len))
		return 0;
	int got = kv_store_get(e->store, true, key, key_len, &r);
	if (got <= 0)
		return got;
	if (r.tomb)
		return 0;
	struct kv_entry ent;
	char node[256];
	to_entry(key, key_len, &r, &ent, node);
	if (fn)
		fn(ud, &ent);
	return 1;
}

struct scan_ctx {
	kv_entry_fn fn;
	void *ud;
	int n;
	uint64_t max;       /* the largest version seen */
	uint64_t max_index; /* its record's index */
};

static int scan_live(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct scan_ctx *s = ud;
	if (r->tomb)
		return 0;
	struct kv_entry ent;
	char node[256];
	to_entry(key, key_len, r, &ent, node);
	s->n++;
	return s->fn(s->ud, &ent);
}

int kv_engine_scan(struct kv_engine *e, const char *prefix, size_t prefix_len, kv_entry_fn fn,
                   void *ud)
{
	struct scan_ctx s = {fn, ud, 0, 0, 0};
	if (kv_store_scan(e->store, true, prefix, prefix_len, scan_live, &s) < 0)
		return -1;
	return s.n;
}

static int scan_max(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)key;
	(void)key_len;
	struct scan_ctx *s = ud;
	if (r->hlc > s->max) {
		s->max = r->hlc;
		s->max_index = kv_rec_index(r);
	}
	return 0;
}

/* The largest version under a key or prefix, tombstones included, and its
 * record's index in *index; 0 (and 0) if none. */
static uint64_t top_version(struct kv_engine *e, const char *key, size_t key_len, bool recurse,
                            uint64_t *index)
{
	*index = 0;
	if (!recurse) {
		struct kv_rec r;
		if (key_len > 0 && kv_store_get(e->store, true, key, key_len, &r) == 1) {
			*index = kv_rec_index(&r);
			return r.hlc;
		}
		return 0;
	}
	struct scan_ctx s = {NULL, NULL, 0, 0, 0};
	kv_store_scan(e->store, true, key, key_len, scan_max, &s);
	*index = s.max_index;
	return s.max;
}

/*
 * The index of a key is its record's (or its tombstone's, kv_rec_index), 1 if
 * never written; of a prefix, that of the record with the highest version
 * under it. Versions and indexes keep one order: the index form follows the
 * version (kv/hlc.h), and a CP store's versions grow entry by entry as its
 * Raft indexes do (agent/cp_fsm.c), so the newest version carries the
 * largest index. (A client replica may still hold records of its AP days
 * next to CP ones: the CP ones are newer, so the prefix shows a Raft index.)
 * Never 0, which blocking clients would treat as "no index" and spin on.
 */
uint64_t kv_engine_index(struct kv_engine *e, const char *key, size_t key_len, bool recurse)
{
	uint64_t idx;
	top_version(e, key, key_len, recurse, &idx);
	return idx ? idx : 1;
}

/* ------------------------------------------------------- sessions */

static struct kv_session *session_new(struct kv_engine *e)
{
	struct kv_session *s = xcalloc(1, sizeof(*s));
	s->e = e;
	s->next = e->sessions;
	if (s->next)
		s->next->prev = s;
	e->sessions = s;
	return s;
}

/* Unlink and free, without the bookkeeping of an end (a session that never
 * started, or one that outlives its driver). */
static void session_drop(struct kv_session *s)
{
	struct kv_engine *e = s->e;
	if (s->prev)
		s->prev->next = s->next;
	else
		e->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s->pull_key);
	free(s);
}

/* Start the protocol of s; an initiator's or puller's first frame goes to
 * e->first. 0 or -1. */
static int session_start(struct kv_session *s, enum kv_sync_role role, const char *key,
                         size_t key_len)
{
	struct kv_engine *e = s->e;
	e->first.len = 0;
	if (role == KV_SYNC_INITIATOR && e->sync_digest_next) {
		e->sync_digest_next = false;
		if (kv_sync_start_digest(&s->sync, e->store, session_apply, s, &e->first) < 0)
			return -1;
	} else if (kv_sync_start(&s->sync, role, e->store, session_apply, s, key, key_len,
	                         &e->first) < 0) {
		return -1;
	}
	s->sync.lazy = e->lazy;
	return 0;
}

enum kv_sync_role kv_session_role(const struct kv_session *s)
{
	return s->sync.role;
}

int kv_session_feed(struct kv_session *s, int64_t now_ms, uint8_t type, const uint8_t *payload,
                    size_t plen, struct kv_buf *out, char *err, size_t errlen)
{
	s->e->now_ms = now_ms;
	return kv_sync_feed(&s->sync, type, payload, plen, out, err, errlen);
}

int kv_session_pump(struct kv_session *s, struct kv_buf *out, size_t want)
{
	return kv_sync_pump(&s->sync, out, want);
}

bool kv_session_sending(const struct kv_session *s)
{
	return kv_sync_sending(&s->sync);
}

uint64_t kv_session_records_out(const struct kv_session *s)
{
	return s->sync.records_out;
}

struct kv_session *kv_engine_accept(struct kv_engine *e)
{
	struct kv_session *s = session_new(e);
	if (session_start(s, KV_SYNC_RESPONDER, NULL, 0) < 0) {
		session_drop(s);
		return NULL;
	}
	return s;
}

/* ----------------------------------------------------- anti-entropy */

/*
 * Each round is drawn +-10% around the interval so that agents started together
 * do not all open their rounds at the same moment, every period, forever.
 */
static int64_t sync_period_us(struct kv_engine *e)
{
	double j = ((double)e->io.rand(e->io.ctx, 2001) - 1000.0) / 10000.0; /* +-10% */
	return (int64_t)((double)(e->sync_interval_ms << e->sync_idle) * 1000.0 * (1.0 + j));
}

/* Back to the base period: the store changed, a peer joined or a round
 * found a difference. A timer armed further out is brought in. */
static void sync_wake(struct kv_engine *e)
{
	if (e->sync_idle == 0)
		return;
	e->sync_idle = 0;
	int64_t p = sync_period_us(e);
	if (e->io.sync_left(e->io.ctx) > p)
		e->io.sync_arm(e->io.ctx, p);
}

/* Bring the next round forward to 0.2-0.5 s from now: after a failed round
 * (try another peer rather than a whole period later) and when a peer
 * joins. Never postpones a timer that fires within 0.5 s anyway. */
static void sync_soon(struct kv_engine *e)
{
	if (e->io.sync_left(e->io.ctx) > SYNC_SOON_IF_LEFT_US)
		e->io.sync_arm(e->io.ctx,
		               SYNC_SOON_MIN_US +
		                       (int64_t)e->io.rand(e->io.ctx, SYNC_SOON_SPREAD_MS) * 1000);
}

struct pick {
	struct kv_engine *e;
	char *name;
	uint32_t seen;
};

/* Reservoir sampling over io->peers: one draw per peer, each peer chosen
 * with probability 1/n without knowing n first. */
static void pick_peer(void *ud, const char *name)
{
	struct pick *p = ud;
	p->seen++;
	if (p->e->io.rand(p->e->io.ctx, p->seen) == 0) {
		free(p->name);
		p->name = xstrdup(name);
	}
}

/* One round at a time: a second would compare the same buckets again. */
void kv_engine_sync_now(struct kv_engine *e)
{
	if (e->busy || e->io.peers == NULL || e->io.open_session == NULL)
		return;
	struct pick p = {e, NULL, 0};
	char picked[KV_NODE_MAX + 1];
	int got = e->io.pick_peer != NULL ? e->io.pick_peer(e->io.ctx, picked, sizeof(picked)) : -1;
	if (got > 0)
		p.name = xstrdup(picked);
	else if (got < 0)
		e->io.peers(e->io.ctx, pick_peer, &p);
	if (p.name == NULL)
		return;
	struct kv_session *s = session_new(e);
	if (session_start(s, KV_SYNC_INITIATOR, NULL, 0) < 0) {
		session_drop(s);
		free(p.name);
		return;
	}
	e->busy = true; /* set first: the driver may end s before it returns */
	if (!e->io.open_session(e->io.ctx, p.name, s, e->first.p, e->first.len)) {
		e->busy = false;
		session_drop(s);
	}
	free(p.name);
}

/*
 * The back-off stops at 2x on purpose. A replica that gossip missed (a short
 * partition, lost packets) is repaired by its own next round (it pulls) or by a
 * peer that happens to pick it (a push). A backed-off replica does not know it
 * is behind, so its own rounds are its bound: with 16x (160 s at the default
 * period) the simulator's heal of a one-sided write after an idle spell took a
 * median of 63 s and sometimes over 96 s, against 21 s with no back-off; with
 * 2x plus the chain below (sync_chain_start), 10 s, at most 24 s (20 seeds,
 * 20 nodes). An idle round costs about 550 bytes (a TCP connection, ROOT, END),
 * so 2x still halves what an idle store sends.
 */
void kv_engine_sync_timer(struct kv_engine *e)
{
	uint64_t root = kv_store_root(e->store);
	if (root != e->sync_root || e->sync_failed)
		e->sync_idle = 0;
	else if (e->sync_idle < SYNC_BACKOFF_SHIFT)
		e->sync_idle++;
	e->sync_root = root;
	kv_engine_sync_now(e);
	e->io.sync_arm(e->io.ctx, sync_period_us(e));
}

/* This node's gossip has more queued than it sends within SYNC_STALE_MS
 * (see sync_chain_start): membership is churning, and anti-entropy keeps to
 * its period instead of adding rounds. */
static bool gossip_behind(const struct kv_engine *e)
{
	return e->io.gossip_backlog != NULL && e->io.gossip_backlog(e->io.ctx) > SYNC_BACKLOG_MAX;
}

/*
 * A join brings a round forward, so a new peer's records and ours meet at
 * once, at most once per KV_SYNC_JOIN_GAP_MS; not while gossip is behind:
 * in a join storm every agent sees a join every few milliseconds, and a round
 * every 5 s each (57 of an agent's 66 rounds in 310 s at N = 1,000) competed
 * with membership for the CPU. The period's rounds go on.
 */
void kv_engine_peer_joined(struct kv_engine *e, int64_t now_ms)
{
	sync_wake(e);
	if (e->join_round_ms != 0 && now_ms >= e->join_round_ms &&
	    now_ms - e->join_round_ms < KV_SYNC_JOIN_GAP_MS)
		return;
	if (gossip_behind(e)) {
		e->stats.join_rounds_held++;
		return;
	}
	e->join_round_ms = now_ms;
	sync_soon(e);
}

/*
 * A round (either side) stored records older than gossip takes to spread: gossip
 * missed them (a partition healed, packets were lost, a node was down), and
 * peers that are backed off will not ask for them for up to 2 periods. So the
 * node that learned them passes them on at once, as in rumor mongering: its next
 * SYNC_CHAIN_ROUNDS rounds come 0.2-0.5 s apart, each with a random peer, and
 * every peer that learns from one of them does the same, so the news spreads
 * in O(log N) short rounds instead of one period per hop. Records merely in
 * flight by gossip while writes go on are younger and start nothing; a record
 * that is refused (too far ahead) is not stored, so a difference that never
 * goes away cannot keep a chain going: each chain is paid for by progress.
 *
 * Not while this node's gossip has more than SYNC_BACKLOG_MAX messages
 * queued: gossip then is not missing records but behind, and every record
 * arrives late (a round sends a packet of some 10-20 messages to 3 peers, 5
 * rounds a second, and each message goes out 4 x ceil(log10(N + 1)) times: at
 * N = 1,000, ~15 messages leave the queue a second, so 64 wait longer than
 * SYNC_STALE_MS). In a join storm, where each new agent's catalog record
 * waits behind a thousand alive messages, every round restarted a chain: 91
 * rounds per agent in 310 s at N = 1,000. A partition's heal queues a few
 * messages per node that came back, and chains. (Records whose writer was not
 * yet a member when it wrote them do not count as late: writer_was_known.)
 */
static void sync_chain_start(struct kv_engine *e, const struct kv_session *s)
{
	if (s->stale_in == 0)
		return;
	if (gossip_behind(e)) {
		e->stats.sync_chains_held++;
		return;
	}
	e->stats.sync_chains++;
	sync_wake(e);
	e->sync_chain = SYNC_CHAIN_ROUNDS - 1; /* after the one brought forward now */
	if (!e->busy) /* else the open round's end brings the next one forward */
		sync_soon(e);
}

/*
 * Only the initiator's end closes the round (busy) and counts it; a failed round
 * brings the next one forward so a dead peer does not cost a whole period, and
 * undoes the back-off (a peer that cannot be reached may be across a partition:
 * stay at the base period until rounds succeed again).
 */
void kv_session_end(struct kv_session *s, bool ok)
{
	struct kv_engine *e = s->e;
	e->stats.sync_records_out += s->sync.records_out;
	if (s->sync.role == KV_SYNC_INITIATOR) {
		e->busy = false;
		if (ok) {
			e->stats.syncs_ok++;
			e->sync_failed = false;
			if (!kv_sync_roots_equal(&s->sync))
				sync_wake(e);
		} else {
			e->stats.syncs_failed++;
			/* no answer to ROOT: perhaps an older release; DIGEST next */
			if (kv_sync_root_unanswered(&s->sync))
				e->sync_digest_next = true;
			e->sync_failed = true;
			sync_wake(e);
			sync_soon(e);
		}
	}
	if (s->sync.role == KV_SYNC_INITIATOR && e->sync_chain > 0) {
		e->sync_chain--;
		sync_soon(e);
	}
	if (ok && s->sync.role != KV_SYNC_PULLER)
		sync_chain_start(e, s);
	session_drop(s);
}

/* ------------------------------------------------------------ gossip */

/* A pull of key at version hlc or newer is already running (the simulator
 * counted 18% redundant pulls before this check: every node that relays an
 * ANNOUNCE makes its receivers try again). */
static bool pull_in_flight(const struct kv_engine *e, const char *key, size_t key_len, uint64_t hlc)
{
	for (const struct kv_session *s = e->sessions; s != NULL; s = s->next)
		if (kv_pull_covers(s->pull_key, s->pull_key_len, s->pull_hlc, key, key_len, hlc))
			return true;
	return false;
}

/* An ANNOUNCE: pull the version from its writer if ours is older (or the
 * store failed: try), unless it is too far ahead to be taken once pulled,
 * or a pull of it is running. 1 started, 0 not. */
static int pull_start(struct kv_engine *e, const struct kv_msg *m)
{
	if (kv_version_ahead(m->hlc, e->now_ms, e->max_ahead_ms)) {
		e->stats.versions_ahead++;
		return 0;
	}
	if (kv_announce_newer(e->store, m) == 0)
		return 0;
	if (pull_in_flight(e, m->key, m->key_len, m->hlc))
		return 0;
	if (m->node_len > KV_NODE_MAX || e->io.open_session == NULL)
		return 0;
	char node[KV_NODE_MAX + 1];
	memcpy(node, m->node, m->node_len);
	node[m->node_len] = '\0';
	struct kv_session *s = session_new(e);
	if (session_start(s, KV_SYNC_PULLER, m->key, m->key_len) < 0) {
		session_drop(s);
		return 0;
	}
	s->pull_key = xmalloc(m->key_len ? m->key_len : 1);
	memcpy(s->pull_key, m->key, m->key_len);
	s->pull_key_len = m->key_len;
	s->pull_hlc = m->hlc;
	if (!e->io.open_session(e->io.ctx, node, s, e->first.p, e->first.len)) {
		session_drop(s);
		return 0;
	}
	return 1;
}

/*
 * A SET carries its record and is merged at once; anything else is an ANNOUNCE,
 * which at most starts one pull. Malformed bytes from gossip are an error for
 * the caller to count, never a reason to stop.
 */
int kv_engine_user_msg(struct kv_engine *e, int64_t now_ms, const uint8_t *p, size_t len, char *err,
                       size_t errlen)
{
	struct kv_msg m;
	e->now_ms = now_ms;
	e->stats.gossip_in++;
	if (kv_msg_decode(p, len, &m, err, errlen) < 0)
		return -1;
	if (m.type != KV_MSG_SET)
		return pull_start(e, &m);
	bool held = false;
	int rc = merge_held(e, m.key, m.key_len, &m.rec, KV_SRC_GOSSIP, &held);
	if (rc == 1)
		e->stats.gossip_applied++;
	if (held) { /* the version we store: an echo */
		e->stats.gossip_echoes++;
		if (e->io.echo != NULL)
			e->io.echo(e->io.ctx, m.key, m.key_len);
	}
	if (rc < 0)
		snprintf(err, errlen, "store error merging a SET of %.*s",
		         (int)(m.key_len > 64 ? 64 : m.key_len), m.key);
	return rc;
}

/* ------------------------------------------------------------ life */

/* A replica last written longer than the tombstone TTL ago may hold keys
 * whose deletes everyone else has purged: anti-entropy would bring them
 * back. It is emptied and rebuilt from peers instead. */
static int wipe_if_stale(struct kv_engine *e, int64_t now_ms, char *err, size_t errlen)
{
	int64_t last = kv_store_last_seen(e->store);
	if (last <= 0 || now_ms - last <= e->ttl_ms)
		return 0;
	log_warn("kv: replica last written %lld s ago, longer than the tombstone TTL: "
	         "discarding it and resynchronising from peers",
	         (long long)((now_ms - last) / 1000));
	if (kv_store_begin(e->store) < 0 || kv_store_wipe(e->store) < 0 ||
	    kv_store_set_last_seen(e->store, now_ms) < 0 ||
	    kv_store_commit(e->store, err, errlen) < 0 ||
	    kv_store_checkpoint(e->store, err, errlen) < 0)
		return -1;
	return 0;
}

/*
 * Refuses to start on a replica it cannot open, and discards one that was away
 * longer than the tombstone TTL before anything reads it: serving stale keys
 * even once would resurrect deletes.
 */
struct kv_engine *kv_engine_new(const struct kv_engine_config *cfg, const struct kv_io *io,
                                int64_t now_ms, char *err, size_t errlen)
{
	struct kv_engine *e = xcalloc(1, sizeof(*e));
	e->io = *io;
	snprintf(e->node, sizeof(e->node), "%s", cfg->node_name ? cfg->node_name : "");
	e->node_len = strlen(e->node);
	e->ttl_ms = cfg->tombstone_ttl_ms > 0 ? cfg->tombstone_ttl_ms : KV_TOMBSTONE_TTL_DEFAULT_MS;
	e->sync_interval_ms =
	        cfg->sync_interval_ms > 0 ? cfg->sync_interval_ms : KV_SYNC_INTERVAL_DEFAULT_MS;
	e->max_watches = cfg->max_watches ? cfg->max_watches : KV_MAX_WATCHES_DEFAULT;
	e->max_ahead_ms = cfg->max_ahead_ms == 0  ? KV_MAX_AHEAD_DEFAULT_MS
	                  : cfg->max_ahead_ms < 0 ? 0
	                                          : cfg->max_ahead_ms;
	e->lazy = cfg->lazy;
	e->now_ms = now_ms;
	e->ahead_logged_ms = INT64_MIN / 2;
	e->store = kv_store_open(cfg->dir, cfg->map_size, err, errlen);
	if (e->store == NULL) {
		free(e);
		return NULL;
	}
	if (wipe_if_stale(e, now_ms, err, errlen) < 0) {
		kv_store_close(e->store);
		free(e);
		return NULL;
	}
	/* The clock continues after the largest version we hold, unless that
	 * version is far ahead of the wall clock (taken in before versions were
	 * checked): then it would make every later write a poisoned one too. */
	uint64_t top_index;
	uint64_t top = top_version(e, "", 0, true, &top_index);
	if (kv_version_ahead(top, now_ms, e->max_ahead_ms))
		log_warn("kv: the replica holds a version %lld s ahead of the clock; it is not "
		         "taken into the clock and loses to any write of its key",
		         (long long)((KV_HLC_MS(top) - now_ms) / 1000));
	else
		kv_hlc_observe(&e->hlc, top);
	e->io.sync_arm(e->io.ctx, sync_period_us(e));
	return e;
}

/*
 * Writers still waiting are answered KV_SHUTDOWN and watches fired with "not
 * changed", so no HTTP request is left hanging when the agent stops.
 */
void kv_engine_free(struct kv_engine *e)
{
	if (e == NULL)
		return;
	if (e->npend > 0 || kv_store_in_txn(e->store)) {
		kv_store_abort(e->store);
		drop_changes(e);
		answer_pending(e, KV_SHUTDOWN);
	}
	while (e->watches != NULL)
		watch_fire(e, e->watches, false);
	while (e->sessions != NULL)
		session_drop(e->sessions);
	kv_store_close(e->store); /* checkpoints */
	free(e->pend);
	free(e->chg);
	kv_buf_free(&e->msg);
	kv_buf_free(&e->first);
	free(e);
}

struct kv_store *kv_engine_store(struct kv_engine *e)
{
	return e->store;
}

const struct kv_engine_stats *kv_engine_stats(const struct kv_engine *e)
{
	return &e->stats;
}

/* ---------------------------------------------------------- CP mode */

/*
 * The versions of a pinned write are base, base + 1, ... whatever the wall
 * clock says: the clock is swapped for one whose last value is base - 1 and
 * the write is served at a time no later than base's millisecond, so
 * kv_hlc_next() counts up from base. Every server applying the same entry
 * to the same state therefore writes the same records.
 */
int kv_engine_write_pinned(struct kv_engine *e, const struct kv_op *ops, size_t n, uint64_t base,
                           uint64_t raft_index, const char *node, size_t node_len, kv_done_fn done,
                           void *ud, uint64_t *last, char *err, size_t errlen)
{
	if (base < 2 || raft_index == 0 || node_len == 0 || node_len > KV_NODE_MAX) {
		snprintf(err, errlen, "pinned write: bad base version, Raft index or node");
		return -1;
	}
	struct kv_hlc saved = e->hlc;
	char saved_node[KV_NODE_MAX + 1];
	size_t saved_len = e->node_len;
	memcpy(saved_node, e->node, e->node_len);
	memcpy(e->node, node, node_len);
	e->node_len = node_len;
	e->hlc.last = base - 1;
	e->raft_index = raft_index;
	int64_t at = KV_HLC_MS(base) - 1;
	int rc = kv_engine_write(e, at, ops, n, done, ud, err, errlen);
	e->raft_index = 0;
	*last = e->hlc.last;
	memcpy(e->node, saved_node, saved_len);
	e->node_len = saved_len;
	if (saved.last > e->hlc.last)
		e->hlc = saved;
	return rc;
}

void kv_engine_refuse_merges(struct kv_engine *e, bool refuse)
{
	e->merge_refused = refuse;
}

int kv_engine_dump(struct kv_engine *e, kv_store_fn fn, void *ud)
{
	return kv_store_scan(e->store, true, "", 0, fn, ud);
}

int kv_engine_restore_begin(struct kv_engine *e)
{
	if (kv_store_begin(e->store) < 0)
		return -1;
	e->batch_own = true;
	return kv_store_wipe(e->store);
}

int kv_engine_restore_put(struct kv_engine *e, const char *key, size_t key_len,
                          const struct kv_rec *r)
{
	if (kv_store_put(e->store, key, key_len, r) < 0)
		return -1;
	kv_hlc_observe(&e->hlc, r->hlc);
	note_change(e, key, key_len, r, false, KV_SRC_SYNC);
	return 0;
}

static int body_apply(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	return merge(ctx, key, key_len, r, KV_SRC_SYNC);
}

/*
 * Records a server sent with its answer (a forwarded write's, a forwarded
 * read's) are merged as anti-entropy merges them; done waits for the commit
 * like a local write, so the caller answers only once its own replica shows
 * them (read-your-writes on a client).
 */
int kv_engine_merge_body(struct kv_engine *e, int64_t now_ms, const uint8_t *p, size_t len,
                         kv_done_fn done, void *ud, char *err, size_t errlen)
{
	e->now_ms = now_ms;
	if (kv_store_begin(e->store) < 0) {
		snprintf(err, errlen, "the store cannot start a batch");
		return -1;
	}
	if (kv_records_decode(p, len, body_apply, e, err, errlen) < 0)
		return -1;
	pend_push(e, done, ud);
	return 0;
}

int kv_engine_records(struct kv_engine *e, const char *key, size_t key_len, bool recurse,
                      kv_store_fn fn, void *ud)
{
	if (recurse)
		return kv_store_scan(e->store, true, key, key_len, fn, ud);
	struct kv_rec r;
	int got = kv_store_get(e->store, true, key, key_len, &r);
	if (got <= 0)
		return got;
	return fn(ud, key, key_len, &r) < 0 ? -1 : 1;
}

/* ------------------------------------------------------------ restore */

struct snap_rec {
	const char *key;
	size_t key_len;
	struct kv_rec r;
};

struct snap_list {
	struct snap_rec *v;
	size_t n, cap;
	const char *keep;
	size_t keep_len;
};

static bool kept(const struct snap_list *l, const char *key, size_t key_len)
{
	return key_len >= l->keep_len && memcmp(key, l->keep, l->keep_len) == 0;
}

static int snap_add(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct snap_list *l = ctx;
	if (r->tomb || kept(l, key, key_len) || !key_ok(key, key_len))
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = (struct snap_rec){key, key_len, *r};
	return 0;
}

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c != 0 ? c : (al > bl) - (al < bl);
}

static int snap_cmp(const void *x, const void *y)
{
	const struct snap_rec *a = x, *b = y;
	return key_cmp(a->key, a->key_len, b->key, b->key_len);
}

static bool snap_has(const struct snap_list *l, const char *key, size_t key_len)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = key_cmp(l->v[mid].key, l->v[mid].key_len, key, key_len);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Stage the replacement: deletions of live keys the snapshot lacks, then
 * the snapshot's records as local writes. The number staged, or -1. */
static int stage_replace(struct kv_engine *e, struct snap_list *l)
{
	struct del_ctx d = {0, NULL, NULL, 0, 0};
	if (kv_store_scan(e->store, false, "", 0, collect_key, &d) < 0)
		d.rc = -1;
	int staged = 0;
	for (size_t j = 0; j < d.n; j++) {
		if (d.rc == 0 && !kept(l, d.keys[j], d.lens[j]) &&
		    !snap_has(l, d.keys[j], d.lens[j])) {
			int rc = local_set(e, d.keys[j], d.lens[j], true, NULL, 0, 0, NULL);
			d.rc = rc < 0 ? -1 : 0;
			staged += rc > 0 ? rc : 0;
		}
		free(d.keys[j]);
	}
	free(d.keys);
	free(d.lens);
	for (size_t i = 0; d.rc == 0 && i < l->n; i++) {
		const struct kv_rec *r = &l->v[i].r;
		struct lockset ls = {true, r->lock_index, r->session, r->session_len};
		int rc = local_set(e, l->v[i].key, l->v[i].key_len, false, r->value, r->value_len,
		                   r->flags, &ls);
		d.rc = rc < 0 ? -1 : 0;
		staged += rc > 0 ? rc : 0;
	}
	return d.rc < 0 ? -1 : staged;
}

int kv_engine_replace_pinned(struct kv_engine *e, const uint8_t *p, size_t len, uint64_t base,
                             uint64_t raft_index, const char *node, size_t node_len,
                             const char *keep, kv_done_fn done, void *ud, uint64_t *last, char *err,
                             size_t errlen)
{
	if (base < 2 || raft_index == 0 || node_len == 0 || node_len > KV_NODE_MAX) {
		snprintf(err, errlen, "restore: bad base version or node");
		return -1;
	}
	struct snap_list l = {NULL, 0, 0, keep, strlen(keep)};
	if (kv_records_decode(p, len, snap_add, &l, err, errlen) < 0) {
		free(l.v);
		return -1;
	}
	qsort(l.v, l.n, sizeof(*l.v), snap_cmp);
	struct kv_hlc saved = e->hlc;
	char saved_node[KV_NODE_MAX + 1];
	size_t saved_len = e->node_len;
	memcpy(saved_node, e->node, e->node_len);
	memcpy(e->node, node, node_len);
	e->node_len = node_len;
	e->hlc.last = base - 1;
	e->now_ms = KV_HLC_MS(base) - 1;
	e->raft_index = raft_index;
	int rc = kv_store_begin(e->store) < 0 ? -1 : stage_replace(e, &l);
	e->raft_index = 0;
	*last = e->hlc.last;
	memcpy(e->node, saved_node, saved_len);
	e->node_len = saved_len;
	if (saved.last > e->hlc.last)
		e->hlc = saved;
	free(l.v);
	if (rc < 0) {
		log_err("kv: storage error while restoring; aborting the batch");
		kv_engine_abort(e);
		snprintf(err, errlen, "restore: the store failed");
		return -1;
	}
	pend_push(e, done, ud);
	return rc;
}
