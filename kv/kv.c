/*
 * kv/kv.c — see kv.h. The engine: group commit, watches, eager spread, and
 * the libev driver of the sync protocol (kv/repl.h).
 *
 * Per loop iteration: writes (local requests, gossip, sync) go into one
 * LMDB write transaction; an ev_prepare watcher (run before the loop blocks)
 * commits it, then acknowledges the requests, wakes the watches under the
 * changed keys and broadcasts the changes. Nothing is acknowledged or
 * broadcast before it is durable; a failed commit fails every request of the
 * batch and forgets their changes. "Committed" is one append + fdatasync of
 * the store's write-ahead log (kv/wal.h); LMDB itself is committed by a
 * checkpoint about once a second (or when the log passes 64 MiB), run from
 * the same prepare watcher right after a batch, never inside one.
 *
 * Watches (blocking queries) live in a list; a change wakes only the
 * watches whose key equals it (or whose prefix it starts with, for recurse)
 * and whose index it moved past. Their number is bounded (max_watches).
 *
 * Anti-entropy: a timer every sync_interval (+-10% jitter), and ~0.3 s after
 * a member with an "rpc_port" tag joins, opens one TCP session to a random
 * live rumor peer. One outgoing session at a time; incoming sessions are
 * bounded (SYNC_MAX_CONNS) and each has a deadline.
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
 * A node whose last commit is older than the tombstone TTL wipes its replica
 * at start and rebuilds it from peers, so it cannot resurrect deleted keys.
 */
#define _GNU_SOURCE
#include "kv/kv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "gossip/swim.h"
#include "gossip/tags.h"
#include "kv/hlc.h"
#include "kv/repl.h"
#include "kv/store.h"

#define SYNC_MAX_CONNS 64
#define SYNC_BUFFER_BUDGET (16u << 20) /* all sync connections' buffers together */
#define SYNC_WBUF_LOW (KV_CHUNK)       /* pump more output when less is pending */
#define SYNC_READ_MIN 65536u
#define SYNC_TIMEOUT_S 10.0
#define SYNC_CONNECT_TIMEOUT_S 1.0
#define PURGE_INTERVAL_S 60.0
#define INLINE_MSG_MAX 1000 /* gossip user message budget for inline values */
#define CHECKPOINT_INTERVAL_S 1.0         /* LMDB commit + new log generation */
#define CHECKPOINT_LOG_BYTES (64u << 20)  /* ... or sooner when the log is this big */

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
};

struct kv_watch {
	struct kv *kv;
	struct kv_watch *prev, *next;
	char *key;
	size_t key_len;
	bool recurse;
	uint64_t index;
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
	struct kv_sync sess;
	char peer[64];
	/* a pull: which key and version it fetches (NULL key: not a pull) */
	char *pull_key;
	size_t pull_key_len;
	uint64_t pull_hlc;
};

struct kv {
	struct ev_loop *loop;
	struct kv_store *store;
	struct kv_hlc hlc;
	struct swim *swim;
	char node[KV_NODE_MAX + 1];
	size_t node_len;
	int64_t ttl_ms;
	int64_t sync_interval_ms;
	size_t max_watches;
	ev_prepare prepare;
	ev_timer sync_timer, purge_timer, checkpoint_timer;
	bool checkpoint_due;
	ev_io listen_io;
	int listen_fd;
	int sync_port;
	struct pending *pend;
	size_t npend, cappend;
	struct change *chg;
	size_t nchg, capchg;
	struct kv_watch *watches;
	size_t nwatches;
	struct sync_conn *conns;
	size_t nconns;
	bool outbound_busy;
	bool commit_failed;
	struct kv_buf msg;
	struct kv_stats stats;
	char bind_addr[64];
	int64_t max_ahead_ms;
	struct kv_seal seal;
	bool sealed;
	double refused_logged_at, ahead_logged_at; /* rate limits of the two warnings */
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --------------------------------------------------------- changes */

static int note_change(struct kv *kv, const char *key, size_t key_len, const struct kv_rec *r,
		       bool broadcast)
{
	if (kv->nchg == kv->capchg) {
		size_t cap = kv->capchg ? kv->capchg * 2 : 64;
		struct change *c = realloc(kv->chg, cap * sizeof(*c));
		if (c == NULL)
			return -1;
		kv->chg = c;
		kv->capchg = cap;
	}
	struct change *c = &kv->chg[kv->nchg];
	c->key = malloc(key_len);
	c->rec_len = kv_rec_size(r);
	c->rec = malloc(c->rec_len);
	if (c->key == NULL || c->rec == NULL) {
		free(c->key);
		free(c->rec);
		return -1;
	}
	memcpy(c->key, key, key_len);
	c->key_len = key_len;
	kv_rec_encode(r, c->rec);
	c->broadcast = broadcast;
	kv->nchg++;
	return 0;
}

static void drop_changes(struct kv *kv)
{
	for (size_t i = 0; i < kv->nchg; i++) {
		free(kv->chg[i].key);
		free(kv->chg[i].rec);
	}
	kv->nchg = 0;
}

/* Merge a received record into the open transaction (repl's apply). */
static int merge_rec(struct kv *kv, const char *key, size_t key_len, const struct kv_rec *r,
		     bool rebroadcast)
{
	int64_t now = wall_ms();
	enum kv_merge_result rc =
		kv_merge_rec(kv->store, &kv->hlc, now, kv->ttl_ms, kv->max_ahead_ms, key, key_len, r);
	if (rc == KV_MERGE_STORED)
		note_change(kv, key, key_len, r, rebroadcast);
	if (rc == KV_MERGE_AHEAD) {
		kv->stats.versions_ahead++;
		double t = ev_now(kv->loop);
		if (t - kv->ahead_logged_at >= 10.0) {
			kv->ahead_logged_at = t;
			log_warn("kv: refused a version of %.*s from %.*s that is %lld ms ahead of our "
				 "clock (max %lld ms; %llu refused so far)",
				 (int)(key_len > 64 ? 64 : key_len), key, (int)r->node_len, r->node,
				 (long long)(KV_HLC_MS(r->hlc) - now), (long long)kv->max_ahead_ms,
				 (unsigned long long)kv->stats.versions_ahead);
		}
		return 0;
	}
	return rc;
}

static int apply_from_sync(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv *kv = ctx;
	int rc = merge_rec(kv, key, key_len, r, false);
	if (rc == 1)
		kv->stats.sync_records_in++;
	return rc;
}

static int apply_from_pull(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	return merge_rec(ctx, key, key_len, r, true);
}

/* ---------------------------------------------------------- watches */

static void watch_unlink(struct kv_watch *w)
{
	struct kv *kv = w->kv;
	if (w->prev)
		w->prev->next = w->next;
	else
		kv->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	kv->nwatches--;
	ev_timer_stop(kv->loop, &w->timer);
}

static void watch_fire(struct kv_watch *w, bool changed)
{
	watch_unlink(w);
	kv_watch_fn fn = w->fn;
	void *ud = w->ud;
	free(w->key);
	free(w);
	fn(ud, changed);
}

static void watch_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	watch_fire(t->data, false);
}

struct kv_watch *kv_watch_add(struct kv *kv, const char *key, size_t key_len, bool recurse,
			      uint64_t index, int64_t timeout_ms, kv_watch_fn fn, void *ud)
{
	if (kv->nwatches >= kv->max_watches)
		return NULL;
	struct kv_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->key = malloc(key_len ? key_len : 1);
	if (w->key == NULL) {
		free(w);
		return NULL;
	}
	memcpy(w->key, key, key_len);
	w->kv = kv;
	w->key_len = key_len;
	w->recurse = recurse;
	w->index = index;
	w->fn = fn;
	w->ud = ud;
	ev_timer_init(&w->timer, watch_timeout_cb, (double)timeout_ms / 1000.0, 0.);
	w->timer.data = w;
	ev_timer_start(kv->loop, &w->timer);
	w->next = kv->watches;
	if (w->next)
		w->next->prev = w;
	kv->watches = w;
	kv->nwatches++;
	return w;
}

void kv_watch_cancel(struct kv_watch *w)
{
	if (w == NULL)
		return;
	watch_unlink(w);
	free(w->key);
	free(w);
}

static void wake_watches(struct kv *kv, const struct change *c, uint64_t hlc)
{
	struct kv_watch *w = kv->watches;
	while (w != NULL) {
		struct kv_watch *next = w->next;
		bool match = w->recurse ? (c->key_len >= w->key_len &&
					   memcmp(c->key, w->key, w->key_len) == 0)
					: (c->key_len == w->key_len &&
					   memcmp(c->key, w->key, w->key_len) == 0);
		if (match && hlc > w->index)
			watch_fire(w, true);
		w = next;
	}
}

/* ------------------------------------------------------ group commit */

static void broadcast_change(struct kv *kv, const struct change *c, const struct kv_rec *r)
{
	if (kv->swim == NULL)
		return;
	size_t inline_len = 3 + c->key_len + c->rec_len;
	int rc = inline_len <= INLINE_MSG_MAX && r->value_len <= KV_INLINE_MAX
			 ? kv_msg_encode_set(&kv->msg, c->key, c->key_len, r)
			 : kv_msg_encode_announce(&kv->msg, c->key, c->key_len, r);
	if (rc == 0) {
		swim_broadcast_user(kv->swim, kv->msg.p, kv->msg.len);
		kv->stats.gossip_out++;
	}
}

static void commit_now(struct kv *kv)
{
	if (!kv_store_in_txn(kv->store))
		return;
	char err[256];
	kv_store_set_last_seen(kv->store, wall_ms());
	int rc = kv_store_commit(kv->store, err, sizeof(err));
	if (rc < 0)
		log_debug("kv: %s", err); /* the store logs failures itself, rate-limited */
	kv->stats.commits++;
	size_t npend = kv->npend;
	struct pending *pend = NULL;
	if (npend > 0) {
		pend = malloc(npend * sizeof(*pend));
		if (pend == NULL)
			abort();
		memcpy(pend, kv->pend, npend * sizeof(*pend));
	}
	kv->npend = 0;
	size_t nchg = kv->nchg;
	struct change *chg = kv->chg;
	kv->chg = NULL;
	kv->nchg = kv->capchg = 0;
	for (size_t i = 0; i < npend; i++)
		if (pend[i].done)
			pend[i].done(pend[i].ud, rc == 0 ? KV_OK : KV_ERROR, -1);
	free(pend);
	for (size_t i = 0; i < nchg; i++) {
		struct change *c = &chg[i];
		if (rc == 0) {
			struct kv_rec r;
			const uint8_t *p = c->rec;
			char e[64];
			if (kv_rec_decode(&p, p + c->rec_len, &r, e, sizeof(e)) == 0) {
				wake_watches(kv, c, r.hlc);
				if (c->broadcast)
					broadcast_change(kv, c, &r);
			}
		}
		free(c->key);
		free(c->rec);
	}
	free(chg);
}

static void checkpoint(struct kv *kv)
{
	char err[256];
	kv->checkpoint_due = false;
	if (kv_store_checkpoint(kv->store, err, sizeof(err)) < 0)
		log_debug("kv: %s", err); /* logged by the store, rate-limited */
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct kv *kv = w->data;
	commit_now(kv);
	if (kv->checkpoint_due || kv_store_log_bytes(kv->store) >= CHECKPOINT_LOG_BYTES)
		checkpoint(kv);
	/* armed only while LMDB lags the log: an idle agent does not wake for it */
	if (kv_store_dirty(kv->store) && !ev_is_active(&kv->checkpoint_timer)) {
		/* a one-shot timer that fired keeps its old expiry: set it anew */
		ev_timer_set(&kv->checkpoint_timer, CHECKPOINT_INTERVAL_S, 0.);
		ev_timer_start(loop, &kv->checkpoint_timer);
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
	if (kv_store_dirty(kv->store))
		kv->checkpoint_due = true;
}

static int add_pending(struct kv *kv, kv_done_fn done, void *ud)
{
	if (kv->npend == kv->cappend) {
		size_t cap = kv->cappend ? kv->cappend * 2 : 64;
		struct pending *p = realloc(kv->pend, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		kv->pend = p;
		kv->cappend = cap;
	}
	kv->pend[kv->npend].done = done;
	kv->pend[kv->npend].ud = ud;
	kv->npend++;
	return 0;
}

/* --------------------------------------------------------- writes */

static bool key_ok(const char *key, size_t len)
{
	return key != NULL && len > 0 && len <= KV_KEY_MAX;
}

struct del_ctx {
	struct kv *kv;
	int rc;
	char **keys;
	size_t *lens;
	size_t n, cap;
};

static int collect_key(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct del_ctx *d = ud;
	if (r->tomb)
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		char **k = realloc(d->keys, cap * sizeof(*k));
		size_t *l = k ? realloc(d->lens, cap * sizeof(*l)) : NULL;
		if (k)
			d->keys = k;
		if (l == NULL) {
			d->rc = -1;
			return 1;
		}
		d->lens = l;
		d->cap = cap;
	}
	d->keys[d->n] = malloc(key_len);
	if (d->keys[d->n] == NULL) {
		d->rc = -1;
		return 1;
	}
	memcpy(d->keys[d->n], key, key_len);
	d->lens[d->n++] = key_len;
	return 0;
}

static int local_set(struct kv *kv, const char *key, size_t key_len, bool tomb, const void *val,
		     size_t len, uint64_t flags)
{
	struct kv_rec r;
	int rc = kv_local_stamp(kv->store, &kv->hlc, wall_ms(), kv->node, kv->node_len, key,
				key_len, tomb, flags, &r);
	if (rc != 1)
		return rc;
	r.value = tomb ? NULL : val;
	r.value_len = tomb ? 0 : (uint32_t)len;
	if (kv_store_put(kv->store, key, key_len, &r) < 0)
		return -1;
	kv->stats.writes++;
	return note_change(kv, key, key_len, &r, true);
}

/* Check one op's condition against the state staged so far: 1 ok, 0 fails, -1 error. */
static int check_op(struct kv *kv, const struct kv_op *op)
{
	uint64_t idx = 0;
	bool live = false;
	if (op->verb == KV_OP_CAS || op->verb == KV_OP_DELETE_CAS || op->verb == KV_OP_CHECK_INDEX ||
	    op->verb == KV_OP_CHECK_NOT_EXISTS) {
		struct kv_rec r;
		int got = kv_store_get(kv->store, false, op->key, op->key_len, &r);
		if (got < 0)
			return -1;
		live = got == 1 && !r.tomb;
		idx = live ? r.hlc : 0;
	}
	switch (op->verb) {
	case KV_OP_CAS:
		return op->index == 0 ? !live : (live && idx == op->index);
	case KV_OP_DELETE_CAS:
		return op->index != 0 && live && idx == op->index;
	case KV_OP_CHECK_INDEX:
		return live && idx == op->index;
	case KV_OP_CHECK_NOT_EXISTS:
		return !live;
	default:
		return 1;
	}
}

int kv_write(struct kv *kv, const struct kv_op *ops, size_t n, kv_done_fn done, void *ud,
	     char *err, size_t errlen)
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
		if (ops[i].value_len > KV_VALUE_MAX) {
			snprintf(err, errlen, "operation %zu: value of %zu bytes is over %u", i,
				 ops[i].value_len, KV_VALUE_MAX);
			return -1;
		}
	}
	if (kv_store_begin(kv->store) < 0) {
		if (done)
			done(ud, KV_ERROR, -1);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		int c = check_op(kv, &ops[i]);
		if (c <= 0) {
			if (done)
				done(ud, c == 0 ? KV_FAILED : KV_ERROR, c == 0 ? (int)i : -1);
			return 0;
		}
	}
	size_t chg_mark = kv->nchg;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct kv_op *op = &ops[i];
		switch (op->verb) {
		case KV_OP_SET:
		case KV_OP_CAS:
			rc = local_set(kv, op->key, op->key_len, false, op->value, op->value_len,
				       op->flags);
			break;
		case KV_OP_DELETE:
		case KV_OP_DELETE_CAS:
			rc = local_set(kv, op->key, op->key_len, true, NULL, 0, 0);
			break;
		case KV_OP_DELETE_TREE: {
			struct del_ctx d = {kv, 0, NULL, NULL, 0, 0};
			if (kv_store_scan(kv->store, false, op->key, op->key_len, collect_key, &d) <
			    0)
				d.rc = -1;
			for (size_t j = 0; j < d.n; j++) {
				if (d.rc == 0)
					d.rc = local_set(kv, d.keys[j], d.lens[j], true, NULL, 0, 0);
				free(d.keys[j]);
			}
			free(d.keys);
			free(d.lens);
			rc = d.rc;
			break;
		}
		default:
			break;
		}
	}
	if (rc < 0) {
		/* The batch can no longer be trusted: abort it all (the other
		 * requests of this iteration fail too; nothing is half-written). */
		log_err("kv: storage error while writing; aborting the batch");
		kv_store_abort(kv->store);
		(void)chg_mark;
		drop_changes(kv);
		size_t np = kv->npend;
		kv->npend = 0;
		for (size_t i = 0; i < np; i++)
			if (kv->pend[i].done)
				kv->pend[i].done(kv->pend[i].ud, KV_ERROR, -1);
		if (done)
			done(ud, KV_ERROR, -1);
		return 0;
	}
	if (add_pending(kv, done, ud) < 0)
		abort();
	return 0;
}

int kv_put(struct kv *kv, const char *key, const void *val, size_t len, uint64_t flags,
	   kv_done_fn done, void *ud)
{
	struct kv_op op = {KV_OP_SET, key, key ? strlen(key) : 0, val, len, flags, 0};
	char err[128];
	return kv_write(kv, &op, 1, done, ud, err, sizeof(err));
}

int kv_delete(struct kv *kv, const char *key, bool recurse, kv_done_fn done, void *ud)
{
	struct kv_op op = {recurse ? KV_OP_DELETE_TREE : KV_OP_DELETE, key, key ? strlen(key) : 0,
			   NULL, 0, 0, 0};
	char err[128];
	return kv_write(kv, &op, 1, done, ud, err, sizeof(err));
}

/* ---------------------------------------------------------- reads */

static void to_entry(const char *key, size_t key_len, const struct kv_rec *r, struct kv_entry *e,
		     char *node)
{
	memcpy(node, r->node, r->node_len);
	node[r->node_len] = '\0';
	e->key = key;
	e->key_len = key_len;
	e->value = r->value;
	e->value_len = r->value_len;
	e->flags = r->flags;
	e->create_index = r->create;
	e->modify_index = r->hlc;
	e->node = node;
	e->deleted = r->tomb;
}

int kv_get(struct kv *kv, const char *key, size_t key_len, kv_entry_fn fn, void *ud)
{
	struct kv_rec r;
	if (!key_ok(key, key_len))
		return 0;
	int got = kv_store_get(kv->store, true, key, key_len, &r);
	if (got <= 0)
		return got;
	if (r.tomb)
		return 0;
	struct kv_entry e;
	char node[256];
	to_entry(key, key_len, &r, &e, node);
	if (fn)
		fn(ud, &e);
	return 1;
}

struct scan_ctx {
	kv_entry_fn fn;
	void *ud;
	int n;
	uint64_t max;
};

static int scan_live(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct scan_ctx *s = ud;
	if (r->tomb)
		return 0;
	struct kv_entry e;
	char node[256];
	to_entry(key, key_len, r, &e, node);
	s->n++;
	return s->fn(s->ud, &e);
}

int kv_scan(struct kv *kv, const char *prefix, size_t prefix_len, kv_entry_fn fn, void *ud)
{
	struct scan_ctx s = {fn, ud, 0, 0};
	if (kv_store_scan(kv->store, true, prefix, prefix_len, scan_live, &s) < 0)
		return -1;
	return s.n;
}

static int scan_max(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct scan_ctx *s = ud;
	if (r->hlc > s->max)
		s->max = r->hlc;
	return 0;
}

uint64_t kv_index(struct kv *kv, const char *key, size_t key_len, bool recurse)
{
	if (!recurse) {
		struct kv_rec r;
		if (key_len > 0 && kv_store_get(kv->store, true, key, key_len, &r) == 1)
			return r.hlc;
		return 1;
	}
	struct scan_ctx s = {NULL, NULL, 0, 0};
	kv_store_scan(kv->store, true, key, key_len, scan_max, &s);
	return s.max ? s.max : 1;
}

/* ------------------------------------------------------- sync driver */

static void schedule_sync(struct kv *kv, double after);

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
	if (c->outbound && c->sess.role == KV_SYNC_INITIATOR) {
		kv->outbound_busy = false;
		if (ok) {
			kv->stats.syncs_ok++;
		} else {
			kv->stats.syncs_failed++;
			/* try another peer soon rather than a whole period later */
			if (ev_timer_remaining(kv->loop, &kv->sync_timer) > 0.5)
				schedule_sync(kv, 0.2 + (double)randombytes_uniform(300) / 1000.0);
		}
	}
	if (!ok)
		log_debug("kv: sync with %s failed", c->peer);
	kv->stats.sync_records_out += c->sess.records_out;
	kv_buf_free(&c->rbuf);
	kv_buf_free(&c->wbuf);
	kv_buf_free(&c->pbuf);
	kv_buf_free(&c->plain);
	free(c->pull_key);
	free(c);
	/* memory came free: wake the connections that wait to pump output */
	for (struct sync_conn *o = kv->conns; o != NULL; o = o->next)
		if (kv_sync_sending(&o->sess) && !o->connecting && o->woff >= o->wbuf.len)
			ev_feed_event(kv->loop, &o->io, EV_WRITE);
}

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
			if (kv_frames_seal(&kv->seal, from_initiator(c, true), c->pbuf.p, c->pbuf.len,
					   &c->wbuf) < 0)
				return false;
			c->pbuf.len = 0;
		}
		if (!kv_sync_sending(&c->sess) || c->wbuf.len - c->woff >= SYNC_WBUF_LOW)
			return true;
		if (buffered(kv) > SYNC_BUFFER_BUDGET) {
			kv->stats.sync_budget_waits++;
			return true; /* resume when the socket drains and memory is free */
		}
		if (kv_sync_pump(&c->sess, conn_out(c), c->wbuf.len - c->woff + SYNC_WBUF_LOW) < 0)
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
		if (kv->sealed && kv_frame_open(&kv->seal, from_initiator(c, false), hdr, pl, plen,
						&c->plain, &type, &pl, &plen, err, sizeof(err)) < 0) {
			refuse(c, &kv->stats.sync_refused_decrypt, err);
			return false;
		}
		int rc = kv_sync_feed(&c->sess, type, pl, plen, conn_out(c), err, sizeof(err));
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
		uint32_t n = ((uint32_t)c->rbuf.p[0] << 24) | ((uint32_t)c->rbuf.p[1] << 16) |
			     ((uint32_t)c->rbuf.p[2] << 8) | c->rbuf.p[3];
		need = 4 + (size_t)n;
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
			conn_free(c, ok && c->finished && !kv_sync_sending(&c->sess) &&
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
		if (c->connecting || c->woff < c->wbuf.len || !kv_sync_sending(&c->sess))
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
	if (c->finished && !kv_sync_sending(&c->sess) && c->woff >= c->wbuf.len) {
		conn_free(c, true);
		return;
	}
	conn_update_events(c);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sync_conn *c = t->data;
	log_warn("kv: sync with %s timed out", c->peer);
	conn_free(c, false);
}

static struct sync_conn *conn_new(struct kv *kv, int fd, bool outbound, const char *peer)
{
	struct sync_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return NULL;
	}
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

/* Start the session of a new connection; its first frame (if any) is
 * sealed and queued. On failure the connection is closed. */
static void conn_start(struct sync_conn *c, enum kv_sync_role role, kv_apply_fn apply,
		       const char *key, size_t key_len)
{
	struct kv *kv = c->kv;
	if (kv_sync_start(&c->sess, role, kv->store, apply, kv, key, key_len, conn_out(c)) < 0) {
		conn_free(c, false);
		return;
	}
	c->sess.lazy = true;
	if (!conn_flush(c)) {
		conn_free(c, false);
		return;
	}
	conn_update_events(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct kv *kv = w->data;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(kv->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (kv->nconns >= SYNC_MAX_CONNS) {
			close(fd);
			continue;
		}
		char peer[64] = "?";
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;
			char ip[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
			snprintf(peer, sizeof(peer), "%s:%u", ip, ntohs(in->sin_port));
		}
		struct sync_conn *c = conn_new(kv, fd, false, peer);
		if (c == NULL)
			continue;
		conn_start(c, KV_SYNC_RESPONDER, apply_from_sync, NULL, 0);
	}
}

static int listen_on(struct kv *kv, const char *addr, int port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		sl = sizeof(*in);
	} else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*in6);
	} else {
		snprintf(err, errlen, "kv sync: bad bind address %s", addr);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "kv sync: socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "Error starting KV sync listener on %s:%d: %s", addr, port,
			 strerror(errno));
		close(fd);
		return -1;
	}
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	kv->sync_port = ss.ss_family == AF_INET ? ntohs(in->sin_port) : ntohs(in6->sin6_port);
	kv->listen_fd = fd;
	ev_io_init(&kv->listen_io, accept_cb, fd, EV_READ);
	kv->listen_io.data = kv;
	ev_io_start(kv->loop, &kv->listen_io);
	return 0;
}

/* The member's rpc_port tag, or -1. */
static int member_rpc_port(const struct swim_member *m)
{
	if (m->id->meta_len == 0)
		return -1;
	static struct tag tags[TAGS_MAX];
	int n = tags_decode(m->id->meta, m->id->meta_len, tags, TAGS_MAX);
	for (int i = 0; i < n; i++)
		if (strcmp(tags[i].key, "rpc_port") == 0) {
			int p = atoi(tags[i].value);
			return p > 0 && p < 65536 ? p : -1;
		}
	return -1;
}

static struct sync_conn *dial(struct kv *kv, const struct swim_member *m, int port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (m->id->addr.len == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, m->id->addr.ip, 4);
		in->sin_port = htons((uint16_t)port);
		sl = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, m->id->addr.ip, 16);
		in6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*in6);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* leave from our own address (several agents on one host, partitions) */
	struct sockaddr_in src;
	memset(&src, 0, sizeof(src));
	if (ss.ss_family == AF_INET && inet_pton(AF_INET, kv->bind_addr, &src.sin_addr) == 1 &&
	    src.sin_addr.s_addr != htonl(INADDR_ANY)) {
		src.sin_family = AF_INET;
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			close(fd);
			return NULL;
		}
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		close(fd);
		return NULL;
	}
	struct sync_conn *c = conn_new(kv, fd, true, m->id->name);
	if (c) {
		c->connecting = true; /* an unreachable peer must not hold the slot long */
		ev_timer_stop(kv->loop, &c->timer);
		ev_timer_set(&c->timer, SYNC_CONNECT_TIMEOUT_S, 0.);
		ev_timer_start(kv->loop, &c->timer);
	}
	return c;
}

static const struct swim_member *random_peer(struct kv *kv, int *port)
{
	if (kv->swim == NULL)
		return NULL;
	size_t n = swim_member_count(kv->swim);
	const struct swim_member *self = swim_self(kv->swim);
	const struct swim_member *pick = NULL;
	uint32_t seen = 0;
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(kv->swim, i);
		if (m == self || m->state != 0 /* ML_STATE_ALIVE */)
			continue;
		int p = member_rpc_port(m);
		if (p < 0)
			continue;
		seen++;
		if (randombytes_uniform(seen) == 0) { /* reservoir sampling */
			pick = m;
			*port = p;
		}
	}
	return pick;
}

void kv_sync_now(struct kv *kv)
{
	if (kv->outbound_busy)
		return;
	int port = 0;
	const struct swim_member *m = random_peer(kv, &port);
	if (m == NULL)
		return;
	struct sync_conn *c = dial(kv, m, port);
	if (c == NULL)
		return;
	kv->outbound_busy = true;
	conn_start(c, KV_SYNC_INITIATOR, apply_from_sync, NULL, 0);
}

/* A pull of key at version hlc or newer is already running (the simulator
 * counted 18% redundant pulls before this check). */
static bool pull_in_flight(const struct kv *kv, const char *key, size_t key_len, uint64_t hlc)
{
	for (const struct sync_conn *c = kv->conns; c != NULL; c = c->next)
		if (kv_pull_covers(c->pull_key, c->pull_key_len, c->pull_hlc, key, key_len, hlc))
			return true;
	return false;
}

static void pull_from(struct kv *kv, const char *node, size_t node_len, const char *key,
		      size_t key_len, uint64_t hlc)
{
	if (kv->swim == NULL || kv->nconns >= SYNC_MAX_CONNS || node_len > KV_NODE_MAX)
		return;
	char name[KV_NODE_MAX + 1];
	memcpy(name, node, node_len);
	name[node_len] = '\0';
	const struct swim_member *m = swim_member_find(kv->swim, name);
	if (m == NULL || m == swim_self(kv->swim))
		return;
	int port = member_rpc_port(m);
	if (port < 0)
		return;
	struct sync_conn *c = dial(kv, m, port);
	if (c == NULL)
		return;
	c->pull_key = malloc(key_len ? key_len : 1);
	if (c->pull_key != NULL) {
		memcpy(c->pull_key, key, key_len);
		c->pull_key_len = key_len;
		c->pull_hlc = hlc;
	}
	conn_start(c, KV_SYNC_PULLER, apply_from_pull, key, key_len);
}

static void schedule_sync(struct kv *kv, double after)
{
	ev_timer_stop(kv->loop, &kv->sync_timer);
	ev_timer_set(&kv->sync_timer, after, 0.);
	ev_timer_start(kv->loop, &kv->sync_timer);
}

static double sync_period(struct kv *kv)
{
	double base = (double)kv->sync_interval_ms / 1000.0;
	double j = ((double)randombytes_uniform(2001) - 1000.0) / 10000.0; /* +-10% */
	return base * (1.0 + j);
}

static void sync_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct kv *kv = t->data;
	kv_sync_now(kv);
	schedule_sync(kv, sync_period(kv));
}

void kv_on_member(struct kv *kv, bool joined, const struct swim_member *m)
{
	if (!joined || kv->swim == NULL || m == swim_self(kv->swim) || member_rpc_port(m) < 0)
		return;
	if (ev_timer_remaining(kv->loop, &kv->sync_timer) > 0.5)
		schedule_sync(kv, 0.2 + (double)randombytes_uniform(300) / 1000.0);
}

void kv_on_user_msg(struct kv *kv, const uint8_t *p, size_t len)
{
	struct kv_msg m;
	char err[128];
	kv->stats.gossip_in++;
	if (kv_msg_decode(p, len, &m, err, sizeof(err)) < 0) {
		log_debug("kv: dropping gossip message: %s", err);
		return;
	}
	if (m.type == KV_MSG_SET) {
		if (merge_rec(kv, m.key, m.key_len, &m.rec, true) == 1)
			kv->stats.gossip_applied++;
		return;
	}
	/* ANNOUNCE: pull if ours is older (or the store failed: try); a version
	 * too far ahead would be refused once pulled, so do not pull it */
	if (kv_version_ahead(m.hlc, wall_ms(), kv->max_ahead_ms)) {
		kv->stats.versions_ahead++;
		return;
	}
	if (kv_announce_newer(kv->store, &m) == 0)
		return;
	if (pull_in_flight(kv, m.key, m.key_len, m.hlc))
		return;
	pull_from(kv, m.node, m.node_len, m.key, m.key_len, m.hlc);
}

/* ------------------------------------------------------------ purge */

static void purge_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct kv *kv = t->data;
	if (kv_store_begin(kv->store) < 0)
		return;
	int n = kv_store_purge(kv->store, wall_ms() - kv->ttl_ms);
	if (n > 0)
		log_debug("kv: purged %d tombstones", n);
	/* commit (and last_seen) happen in prepare_cb */
}

/* ------------------------------------------------------------ life */

struct kv *kv_new(struct ev_loop *loop, const struct kv_config *cfg, char *err, size_t errlen)
{
	struct kv *kv = calloc(1, sizeof(*kv));
	if (kv == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	kv->loop = loop;
	kv->listen_fd = -1;
	kv->sync_port = -1;
	snprintf(kv->node, sizeof(kv->node), "%s", cfg->node_name ? cfg->node_name : "");
	kv->node_len = strlen(kv->node);
	kv->ttl_ms = cfg->tombstone_ttl_ms > 0 ? cfg->tombstone_ttl_ms : 72LL * 3600 * 1000;
	kv->sync_interval_ms = cfg->sync_interval_ms > 0 ? cfg->sync_interval_ms : 10000;
	kv->max_watches = cfg->max_watches ? cfg->max_watches : 4096;
	kv->max_ahead_ms = cfg->max_ahead_ms == 0 ? KV_MAX_AHEAD_DEFAULT_MS
			   : cfg->max_ahead_ms < 0 ? 0
						   : cfg->max_ahead_ms;
	snprintf(kv->bind_addr, sizeof(kv->bind_addr), "%s", cfg->bind_addr ? cfg->bind_addr : "");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/kv", cfg->data_dir);
	kv->store = kv_store_open(dir, cfg->map_size, err, errlen);
	if (kv->store == NULL) {
		free(kv);
		return NULL;
	}
	int64_t now = wall_ms();
	int64_t last = kv_store_last_seen(kv->store);
	if (last > 0 && now - last > kv->ttl_ms) {
		log_warn("kv: replica last written %lld s ago, longer than the tombstone TTL: "
			 "discarding it and resynchronising from peers",
			 (long long)((now - last) / 1000));
		if (kv_store_begin(kv->store) < 0 || kv_store_wipe(kv->store) < 0 ||
		    kv_store_set_last_seen(kv->store, now) < 0 ||
		    kv_store_commit(kv->store, err, errlen) < 0 ||
		    kv_store_checkpoint(kv->store, err, errlen) < 0) {
			kv_store_close(kv->store);
			free(kv);
			return NULL;
		}
	}
	/* The clock continues after the largest version we hold, unless that
	 * version is far ahead of the wall clock (taken in before versions were
	 * checked): then it would make every later write a poisoned one too. */
	uint64_t top = kv_index(kv, "", 0, true);
	if (kv_version_ahead(top, now, kv->max_ahead_ms))
		log_warn("kv: the replica holds a version %lld s ahead of the clock; it is not "
			 "taken into the clock and loses to any write of its key",
			 (long long)((KV_HLC_MS(top) - now) / 1000));
	else
		kv_hlc_observe(&kv->hlc, top);
	if (cfg->sync_port >= 0) {
		if (listen_on(kv, cfg->bind_addr ? cfg->bind_addr : "0.0.0.0", cfg->sync_port, err,
			      errlen) < 0) {
			kv_store_close(kv->store);
			free(kv);
			return NULL;
		}
	}
	ev_prepare_init(&kv->prepare, prepare_cb);
	kv->prepare.data = kv;
	ev_prepare_start(loop, &kv->prepare);
	ev_timer_init(&kv->sync_timer, sync_timer_cb, 0., 0.);
	kv->sync_timer.data = kv;
	schedule_sync(kv, sync_period(kv));
	/* also refreshes last_seen: at least 4 times per TTL */
	double purge_every = (double)kv->ttl_ms / 4000.0;
	if (purge_every > PURGE_INTERVAL_S)
		purge_every = PURGE_INTERVAL_S;
	ev_timer_init(&kv->purge_timer, purge_cb, purge_every, purge_every);
	kv->purge_timer.data = kv;
	ev_timer_start(loop, &kv->purge_timer);
	ev_timer_init(&kv->checkpoint_timer, checkpoint_cb, CHECKPOINT_INTERVAL_S, 0.);
	kv->checkpoint_timer.data = kv;
	return kv;
}

void kv_free(struct kv *kv)
{
	if (kv == NULL)
		return;
	kv->swim = NULL; /* nothing more to broadcast */
	commit_now(kv);
	while (kv->watches != NULL)
		watch_fire(kv->watches, false);
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
	kv_store_close(kv->store); /* checkpoints */
	free(kv->pend);
	free(kv->chg);
	kv_buf_free(&kv->msg);
	free(kv);
}

void kv_set_swim(struct kv *kv, struct swim *swim)
{
	kv->swim = swim;
}

void kv_set_seal(struct kv *kv, const struct kv_seal *seal)
{
	kv->sealed = seal != NULL;
	if (seal != NULL)
		kv->seal = *seal;
}

int kv_sync_port(const struct kv *kv)
{
	return kv->sync_port;
}

const struct kv_stats *kv_stats(struct kv *kv)
{
	kv_store_counts(kv->store, &kv->stats.keys, &kv->stats.tombstones);
	const struct kv_store_stats *ss = kv_store_stats(kv->store);
	kv->stats.store_bad_reads = ss->bad_reads;
	kv->stats.store_bad_records = ss->bad_records;
	kv->stats.store_legacy_records = ss->legacy_records;
	kv->stats.wal_dropped_records = ss->wal_dropped_records;
	kv->stats.commit_failures = ss->commit_failures;
	kv->stats.checkpoint_failures = ss->checkpoint_failures;
	kv->stats.store_failing = ss->failing;
	kv->stats.watches = kv->nwatches;
	return &kv->stats;
}
