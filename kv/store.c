/*
 * kv/store.c — see store.h.
 */
#include "kv/store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kv/hlc.h"
#include "kv/wal.h"

/* A key written by the open batch, with the record it had before (what a
 * committed read must still see until the batch is durable). */
struct staged {
	uint64_t hash;
	size_t key_off, key_len; /* in the arena */
	size_t old_off, old_len; /* in the arena; old_len 0: the key was absent */
};

struct kv_store {
	MDB_env *env;
	MDB_dbi kv, bkt, meta;
	MDB_txn *wtxn; /* everything acknowledged since the last checkpoint */
	bool batch;    /* a batch is open in wtxn */
	bool dirty;    /* wtxn holds changes LMDB has not committed */
	MDB_txn *rtxn; /* reused read transaction (reset between reads) */
	bool rtxn_live;
	bool broken; /* a rollback failed: no more writes until reopened */
	int64_t batch_seen; /* last_seen written by the open batch */
	struct kv_wal *wal;
	struct staged *stg;
	size_t nstg, capstg;
	uint32_t *stg_index; /* open addressing: index+1, 0 empty */
	size_t stg_slots;
	uint8_t *arena;
	size_t arena_len, arena_cap;
	uint64_t digest[KV_BUCKETS];
	uint64_t saved_digest[KV_BUCKETS];
	uint64_t live, tombs, saved_live, saved_tombs;
};

/* ------------------------------------------------------------ codec */

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

size_t kv_rec_size(const struct kv_rec *r)
{
	return 2 + 24 + 1 + r->node_len + 4 + r->value_len;
}

uint8_t *kv_rec_encode(const struct kv_rec *r, uint8_t *p)
{
	*p++ = 1;
	*p++ = r->tomb ? 1 : 0;
	put64(p, r->hlc);
	put64(p + 8, r->create);
	put64(p + 16, r->flags);
	p += 24;
	*p++ = r->node_len;
	if (r->node_len)
		memcpy(p, r->node, r->node_len);
	p += r->node_len;
	p[0] = (uint8_t)(r->value_len >> 24);
	p[1] = (uint8_t)(r->value_len >> 16);
	p[2] = (uint8_t)(r->value_len >> 8);
	p[3] = (uint8_t)r->value_len;
	p += 4;
	if (r->value_len)
		memcpy(p, r->value, r->value_len);
	return p + r->value_len;
}

#define NEED(n, what)                                                                    \
	do {                                                                             \
		if ((size_t)(end - p) < (size_t)(n)) {                                   \
			snprintf(err, errlen, "record: truncated at %s", what);          \
			return -1;                                                       \
		}                                                                        \
	} while (0)

int kv_rec_decode(const uint8_t **pos, const uint8_t *end, struct kv_rec *r, char *err,
		  size_t errlen)
{
	const uint8_t *p = *pos;
	if (p == NULL || end < p) {
		snprintf(err, errlen, "record: no input");
		return -1;
	}
	NEED(2, "header");
	if (p[0] != 1) {
		snprintf(err, errlen, "record: unknown version %u", p[0]);
		return -1;
	}
	if (p[1] > 1) {
		snprintf(err, errlen, "record: bad tombstone flag %u", p[1]);
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->tomb = p[1] == 1;
	p += 2;
	NEED(24, "versions");
	r->hlc = get64(p);
	r->create = get64(p + 8);
	r->flags = get64(p + 16);
	p += 24;
	NEED(1, "node length");
	r->node_len = *p++;
	NEED(r->node_len, "node");
	r->node = (const char *)p;
	p += r->node_len;
	NEED(4, "value length");
	r->value_len = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
	p += 4;
	if (r->value_len > 512u * 1024u) {
		snprintf(err, errlen, "record: value length %u over the limit", r->value_len);
		return -1;
	}
	NEED(r->value_len, "value");
	r->value = p;
	p += r->value_len;
	if (r->tomb && r->value_len != 0) {
		snprintf(err, errlen, "record: tombstone with a value");
		return -1;
	}
	if (r->hlc == 0) {
		snprintf(err, errlen, "record: zero version");
		return -1;
	}
	*pos = p;
	return 0;
}

int kv_rec_cmp(const struct kv_rec *a, const struct kv_rec *b)
{
	if (a->hlc != b->hlc)
		return a->hlc > b->hlc ? 1 : -1;
	size_t n = a->node_len < b->node_len ? a->node_len : b->node_len;
	int c = n ? memcmp(a->node, b->node, n) : 0;
	if (c != 0)
		return c > 0 ? 1 : -1;
	if (a->node_len != b->node_len)
		return a->node_len > b->node_len ? 1 : -1;
	return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

unsigned kv_bucket_of(const char *key, size_t key_len)
{
	return (unsigned)(mix(fnv(0xcbf29ce484222325ull, key, key_len)) & (KV_BUCKETS - 1));
}

static uint64_t entry_hash(const char *key, size_t key_len, const struct kv_rec *r)
{
	uint8_t v[9];
	put64(v, r->hlc);
	v[8] = r->tomb;
	uint64_t h = fnv(0xcbf29ce484222325ull, key, key_len);
	h = fnv(h, v, sizeof(v));
	h = fnv(h, r->node, r->node_len);
	return mix(h);
}

/* ------------------------------------------------------------ store */

static int rec_from_val(const MDB_val *v, struct kv_rec *r)
{
	char err[64];
	const uint8_t *p = v->mv_data;
	return kv_rec_decode(&p, p + v->mv_size, r, err, sizeof(err));
}

static void release_rtxn(struct kv_store *s)
{
	if (s->rtxn_live) {
		mdb_txn_reset(s->rtxn);
		s->rtxn_live = false;
	}
}

/* The long-lived write transaction holds everything acknowledged; reads go
 * through it (committed reads then look past the open batch, see
 * committed_view). Without one, a read transaction on LMDB. */
static MDB_txn *read_txn(struct kv_store *s)
{
	if (s->wtxn != NULL)
		return s->wtxn;
	release_rtxn(s);
	if (mdb_txn_renew(s->rtxn) != 0)
		return NULL;
	s->rtxn_live = true;
	return s->rtxn;
}

static int build_digest(struct kv_store *s)
{
	memset(s->digest, 0, sizeof(s->digest));
	s->live = s->tombs = 0;
	MDB_txn *t = read_txn(s);
	MDB_cursor *c;
	if (t == NULL || mdb_cursor_open(t, s->kv, &c) != 0)
		return -1;
	MDB_val k, v;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		struct kv_rec r;
		if (rec_from_val(&v, &r) == 0) {
			s->digest[kv_bucket_of(k.mv_data, k.mv_size)] +=
				entry_hash(k.mv_data, k.mv_size, &r);
			if (r.tomb)
				s->tombs++;
			else
				s->live++;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : -1;
}

/* ------------------------------------------------ the open batch's keys */

static uint64_t key_hash(const char *key, size_t key_len)
{
	return mix(fnv(0xcbf29ce484222325ull, key, key_len));
}

static long stg_find(const struct kv_store *s, const char *key, size_t key_len, uint64_t h)
{
	if (s->nstg == 0)
		return -1;
	size_t mask = s->stg_slots - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		uint32_t x = s->stg_index[i];
		if (x == 0)
			return -1;
		const struct staged *e = &s->stg[x - 1];
		if (e->hash == h && e->key_len == key_len &&
		    memcmp(s->arena + e->key_off, key, key_len) == 0)
			return (long)(x - 1);
	}
}

static int arena_add(struct kv_store *s, const void *p, size_t n, size_t *off)
{
	if (s->arena_len + n > s->arena_cap) {
		size_t cap = s->arena_cap ? s->arena_cap : 64 * 1024;
		while (cap < s->arena_len + n)
			cap *= 2;
		uint8_t *a = realloc(s->arena, cap);
		if (a == NULL)
			return -1;
		s->arena = a;
		s->arena_cap = cap;
	}
	*off = s->arena_len;
	if (n)
		memcpy(s->arena + s->arena_len, p, n);
	s->arena_len += n;
	return 0;
}

static void stg_link(struct kv_store *s, size_t idx)
{
	size_t mask = s->stg_slots - 1;
	size_t i = (size_t)s->stg[idx].hash & mask;
	while (s->stg_index[i] != 0)
		i = (i + 1) & mask;
	s->stg_index[i] = (uint32_t)(idx + 1);
}

/* Remember that the batch writes key, and what it held before (old NULL:
 * absent). 0 or -1. */
static int stg_add(struct kv_store *s, const char *key, size_t key_len, uint64_t h,
		   const MDB_val *old)
{
	if (s->nstg == s->capstg) {
		size_t cap = s->capstg ? s->capstg * 2 : 64;
		struct staged *e = realloc(s->stg, cap * sizeof(*e));
		if (e == NULL)
			return -1;
		s->stg = e;
		s->capstg = cap;
	}
	if ((s->nstg + 1) * 2 > s->stg_slots) {
		size_t slots = s->stg_slots ? s->stg_slots * 2 : 128;
		uint32_t *ix = calloc(slots, sizeof(*ix));
		if (ix == NULL)
			return -1;
		free(s->stg_index);
		s->stg_index = ix;
		s->stg_slots = slots;
		for (size_t i = 0; i < s->nstg; i++)
			stg_link(s, i);
	}
	struct staged *e = &s->stg[s->nstg];
	e->hash = h;
	e->key_len = key_len;
	e->old_len = old ? old->mv_size : 0;
	if (arena_add(s, key, key_len, &e->key_off) < 0 ||
	    arena_add(s, old ? old->mv_data : NULL, e->old_len, &e->old_off) < 0)
		return -1;
	stg_link(s, s->nstg);
	s->nstg++;
	return 0;
}

static void stg_clear(struct kv_store *s)
{
	if (s->nstg > 0)
		memset(s->stg_index, 0, s->stg_slots * sizeof(*s->stg_index));
	s->nstg = 0;
	s->arena_len = 0;
	if (s->stg_slots > 4096) { /* a big batch (a sync): do not keep clearing it */
		free(s->stg_index);
		s->stg_index = NULL;
		s->stg_slots = 0;
	}
}

/* A committed read of key while a batch is open: 1 with *r as it was
 * before the batch, 0 it was absent, -1 the batch did not write it. */
static int committed_view(struct kv_store *s, const char *key, size_t key_len, struct kv_rec *r)
{
	long i = stg_find(s, key, key_len, key_hash(key, key_len));
	if (i < 0)
		return -1;
	const struct staged *e = &s->stg[i];
	if (e->old_len == 0)
		return 0;
	char err[64];
	const uint8_t *p = s->arena + e->old_off;
	return kv_rec_decode(&p, p + e->old_len, r, err, sizeof(err)) == 0 ? 1 : 0;
}

/* ------------------------------------------------------- log replay */

static void account(struct kv_store *s, const char *key, size_t key_len, const struct kv_rec *r,
		    int sign)
{
	uint64_t h = entry_hash(key, key_len, r);
	unsigned b = kv_bucket_of(key, key_len);
	if (sign > 0) {
		s->digest[b] += h;
		if (r->tomb)
			s->tombs++;
		else
			s->live++;
	} else {
		s->digest[b] -= h;
		if (r->tomb)
			s->tombs--;
		else
			s->live--;
	}
}

static int bkt_key(uint8_t *buf, const char *key, size_t key_len)
{
	buf[0] = (uint8_t)kv_bucket_of(key, key_len);
	memcpy(buf + 1, key, key_len);
	return (int)key_len + 1;
}

/* Write r for key in wtxn; with `batch`, also stage it and log it. */
static int put_rec(struct kv_store *s, const char *key, size_t key_len, const struct kv_rec *r,
		   bool batch)
{
	if (s->wtxn == NULL || key_len == 0 || key_len > 510)
		return -1;
	MDB_val k = {key_len, (void *)key}, v;
	struct kv_rec old;
	int rc = mdb_get(s->wtxn, s->kv, &k, &v);
	bool had = false;
	if (rc == 0 && rec_from_val(&v, &old) == 0)
		had = true;
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return -1;
	if (batch) {
		uint64_t h = key_hash(key, key_len);
		if (stg_find(s, key, key_len, h) < 0 && stg_add(s, key, key_len, h, had ? &v : NULL) < 0)
			return -1;
		if (kv_wal_add(s->wal, key, key_len, r) < 0)
			return -1;
	}
	if (had)
		account(s, key, key_len, &old, -1);
	v.mv_size = kv_rec_size(r);
	if (mdb_put(s->wtxn, s->kv, &k, &v, MDB_RESERVE) != 0)
		return -1;
	kv_rec_encode(r, v.mv_data);
	if (!had) {
		uint8_t bk[512];
		MDB_val bkv = {(size_t)bkt_key(bk, key, key_len), bk}, empty = {0, ""};
		if (mdb_put(s->wtxn, s->bkt, &bkv, &empty, 0) != 0)
			return -1;
	}
	account(s, key, key_len, r, +1);
	return 0;
}

/* Replay: merge a logged entry (keep the larger version). */
static int replay_entry(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_store *s = ud;
	MDB_val k = {key_len, (void *)key}, v;
	if (key_len == 0 || key_len > 510)
		return -1;
	int rc = mdb_get(s->wtxn, s->kv, &k, &v);
	struct kv_rec old;
	if (rc == 0 && rec_from_val(&v, &old) == 0 && kv_rec_cmp(r, &old) <= 0)
		return 0;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return -1;
	return put_rec(s, key, key_len, r, false);
}

static int write_last_seen(struct kv_store *s, int64_t ms);

/* (Re)build wtxn from LMDB's last commit and the log. -1 with err. */
static int rebuild(struct kv_store *s, char *err, size_t errlen)
{
	release_rtxn(s);
	if (s->wtxn != NULL)
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	s->dirty = false;
	int rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		snprintf(err, errlen, "lmdb: %s", mdb_strerror(rc));
		return -1;
	}
	s->dirty = true;
	uint64_t stamp = 0;
	if (kv_wal_replay(s->wal, replay_entry, s, &stamp, err, errlen) < 0)
		return -1;
	/* the log carries last_seen too (the away-too-long check needs it) */
	if (stamp > 0 && (int64_t)stamp > kv_store_last_seen(s) &&
	    write_last_seen(s, (int64_t)stamp) < 0) {
		snprintf(err, errlen, "lmdb: cannot write last_seen");
		return -1;
	}
	if (build_digest(s) < 0) {
		snprintf(err, errlen, "lmdb: cannot read the store");
		return -1;
	}
	return 0;
}

/* Undo the open batch: drop wtxn and rebuild it from LMDB and the log (a
 * failed LMDB operation leaves the transaction unusable, so undoing write
 * by write is not an option). */
static void rollback(struct kv_store *s)
{
	bool had_acked = s->dirty || kv_wal_size(s->wal) > 0;
	kv_wal_discard(s->wal);
	stg_clear(s);
	s->batch = false;
	if (!had_acked) {
		/* wtxn held only this batch: LMDB's last commit is the state */
		release_rtxn(s);
		mdb_txn_abort(s->wtxn);
		s->wtxn = NULL;
		memcpy(s->digest, s->saved_digest, sizeof(s->digest));
		s->live = s->saved_live;
		s->tombs = s->saved_tombs;
		return;
	}
	char err[256];
	if (rebuild(s, err, sizeof(err)) < 0) {
		fprintf(stderr, "kv store: cannot roll back a batch: %s\n", err);
		s->broken = true;
	}
}

/* ------------------------------------------------------------ open/close */

struct kv_store *kv_store_open(const char *dir, size_t map_size, char *err, size_t errlen)
{
	struct kv_store *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int rc;
	MDB_txn *t = NULL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((rc = mdb_env_create(&s->env)) != 0)
		goto lmdb_fail;
	mdb_env_set_maxdbs(s->env, 3);
	if ((rc = mdb_env_set_mapsize(s->env, map_size ? map_size : (size_t)1 << 30)) != 0)
		goto lmdb_fail;
	/* LMDB's commits stay fully synced: they happen only at checkpoints */
	if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0)
		goto lmdb_fail;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &t)) != 0)
		goto lmdb_fail;
	if ((rc = mdb_dbi_open(t, "kv", MDB_CREATE, &s->kv)) != 0 ||
	    (rc = mdb_dbi_open(t, "bkt", MDB_CREATE, &s->bkt)) != 0 ||
	    (rc = mdb_dbi_open(t, "meta", MDB_CREATE, &s->meta)) != 0) {
		mdb_txn_abort(t);
		goto lmdb_fail;
	}
	if ((rc = mdb_txn_commit(t)) != 0)
		goto lmdb_fail;
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn)) != 0)
		goto lmdb_fail;
	mdb_txn_reset(s->rtxn);
	char path[4096];
	snprintf(path, sizeof(path), "%s/wal", dir);
	s->wal = kv_wal_open(path, err, errlen);
	if (s->wal == NULL)
		goto fail;
	/* replay what was acknowledged after LMDB's last commit, then
	 * checkpoint: LMDB holds it all and the log starts a new generation
	 * (which also makes a torn tail unreadable for good) */
	if (rebuild(s, err, errlen) < 0 || kv_store_checkpoint(s, err, errlen) < 0)
		goto fail;
	return s;
lmdb_fail:
	snprintf(err, errlen, "lmdb %s: %s", dir, mdb_strerror(rc));
fail:
	if (s->wtxn != NULL) /* never checkpoint half a replay */
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	kv_store_close(s);
	return NULL;
}

void kv_store_close(struct kv_store *s)
{
	if (s == NULL)
		return;
	if (s->batch)
		kv_store_abort(s);
	if (s->wtxn != NULL) {
		char err[256];
		if (kv_store_checkpoint(s, err, sizeof(err)) < 0)
			fprintf(stderr, "kv store: checkpoint at close: %s\n", err);
	}
	if (s->wtxn != NULL)
		mdb_txn_abort(s->wtxn);
	if (s->rtxn != NULL)
		mdb_txn_abort(s->rtxn);
	if (s->env != NULL)
		mdb_env_close(s->env);
	kv_wal_close(s->wal);
	free(s->stg);
	free(s->stg_index);
	free(s->arena);
	free(s);
}

int kv_store_checkpoint(struct kv_store *s, char *err, size_t errlen)
{
	if (s->batch) {
		snprintf(err, errlen, "checkpoint: a batch is open");
		return -1;
	}
	if (s->wtxn == NULL)
		return 0;
	release_rtxn(s);
	int rc = mdb_txn_commit(s->wtxn); /* synced: data pages, then the meta page */
	s->wtxn = NULL;
	if (rc != 0) {
		snprintf(err, errlen, "checkpoint: lmdb commit: %s", mdb_strerror(rc));
		char e2[256];
		if (rebuild(s, e2, sizeof(e2)) < 0) {
			fprintf(stderr, "kv store: %s\n", e2);
			s->broken = true;
		}
		return -1;
	}
	s->dirty = false;
	rc = kv_wal_reset(s->wal);
	if (rc < 0) {
		snprintf(err, errlen, "checkpoint: wal: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

bool kv_store_dirty(const struct kv_store *s)
{
	return s->dirty;
}

uint64_t kv_store_log_bytes(const struct kv_store *s)
{
	return kv_wal_size(s->wal);
}

/* ------------------------------------------------------------ batches */

int kv_store_begin(struct kv_store *s)
{
	if (s->batch)
		return 0;
	if (s->broken)
		return -1;
	if (s->wtxn == NULL) {
		release_rtxn(s);
		if (mdb_txn_begin(s->env, NULL, 0, &s->wtxn) != 0) {
			s->wtxn = NULL;
			return -1;
		}
	}
	s->batch = true;
	s->batch_seen = 0;
	memcpy(s->saved_digest, s->digest, sizeof(s->digest));
	s->saved_live = s->live;
	s->saved_tombs = s->tombs;
	return 0;
}

bool kv_store_in_txn(const struct kv_store *s)
{
	return s->batch;
}

int kv_store_commit(struct kv_store *s, char *err, size_t errlen)
{
	if (!s->batch)
		return 0;
	int rc = kv_wal_commit(s->wal, (uint64_t)s->batch_seen); /* one write, one fdatasync */
	if (rc < 0) {
		snprintf(err, errlen, "wal commit: %s", strerror(-rc));
		rollback(s);
		return -1;
	}
	s->batch = false;
	s->dirty = true;
	stg_clear(s);
	return 0;
}

void kv_store_abort(struct kv_store *s)
{
	if (s->batch)
		rollback(s);
}

int kv_store_get(struct kv_store *s, bool committed, const char *key, size_t key_len,
		 struct kv_rec *r)
{
	if (key_len == 0 || key_len > 511)
		return -1;
	if (committed && s->nstg > 0) {
		int c = committed_view(s, key, key_len, r);
		if (c >= 0)
			return c;
	}
	MDB_txn *t = read_txn(s);
	if (t == NULL)
		return -1;
	MDB_val k = {key_len, (void *)key}, v;
	int rc = mdb_get(t, s->kv, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return -1;
	return rec_from_val(&v, r) == 0 ? 1 : -1;
}

int kv_store_put(struct kv_store *s, const char *key, size_t key_len, const struct kv_rec *r)
{
	if (!s->batch)
		return -1;
	return put_rec(s, key, key_len, r, true);
}

/* The record a scan shows for (k, v): 1 shown in *r, 0 skipped. */
static int scan_view(struct kv_store *s, bool committed, const MDB_val *k, const MDB_val *v,
		     struct kv_rec *r)
{
	if (committed && s->nstg > 0) {
		int c = committed_view(s, k->mv_data, k->mv_size, r);
		if (c >= 0)
			return c;
	}
	return rec_from_val(v, r) == 0;
}

int kv_store_scan(struct kv_store *s, bool committed, const char *prefix, size_t prefix_len,
		  kv_store_fn fn, void *ud)
{
	MDB_txn *t = read_txn(s);
	MDB_cursor *c;
	if (t == NULL || mdb_cursor_open(t, s->kv, &c) != 0)
		return -1;
	MDB_val k = {prefix_len, (void *)prefix}, v;
	int rc = prefix_len ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
			    : mdb_cursor_get(c, &k, &v, MDB_FIRST);
	int n = 0;
	while (rc == 0) {
		if (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0)
			break;
		struct kv_rec r;
		if (scan_view(s, committed, &k, &v, &r) == 1) {
			n++;
			if (fn(ud, k.mv_data, k.mv_size, &r) != 0)
				break;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return n;
}

int kv_store_scan_bucket(struct kv_store *s, bool committed, unsigned bucket, kv_store_fn fn,
			 void *ud)
{
	MDB_txn *t = read_txn(s);
	MDB_cursor *c;
	if (t == NULL || bucket >= KV_BUCKETS || mdb_cursor_open(t, s->bkt, &c) != 0)
		return -1;
	uint8_t b = (uint8_t)bucket;
	MDB_val k = {1, &b}, v;
	int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	int n = 0;
	while (rc == 0) {
		const uint8_t *kb = k.mv_data;
		if (k.mv_size < 2 || kb[0] != b)
			break;
		MDB_val kk = {k.mv_size - 1, (void *)(kb + 1)}, vv;
		struct kv_rec r;
		if (mdb_get(t, s->kv, &kk, &vv) == 0 && scan_view(s, committed, &kk, &vv, &r) == 1) {
			n++;
			if (fn(ud, kk.mv_data, kk.mv_size, &r) != 0)
				break;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return n;
}

const uint64_t *kv_store_digest(const struct kv_store *s)
{
	return s->digest;
}

int kv_store_purge(struct kv_store *s, int64_t before_ms)
{
	if (!s->batch)
		return -1;
	MDB_cursor *c;
	if (mdb_cursor_open(s->wtxn, s->kv, &c) != 0)
		return -1;
	MDB_val k, v;
	int n = 0;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		struct kv_rec r;
		if (rec_from_val(&v, &r) == 0 && r.tomb && KV_HLC_MS(r.hlc) < before_ms) {
			uint8_t bk[512];
			MDB_val bkv = {(size_t)bkt_key(bk, k.mv_data, k.mv_size), bk};
			account(s, k.mv_data, k.mv_size, &r, -1);
			mdb_del(s->wtxn, s->bkt, &bkv, NULL);
			if (mdb_cursor_del(c, 0) != 0) {
				mdb_cursor_close(c);
				return -1;
			}
			n++;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return n;
}

int kv_store_wipe(struct kv_store *s)
{
	if (!s->batch)
		return -1;
	if (mdb_drop(s->wtxn, s->kv, 0) != 0 || mdb_drop(s->wtxn, s->bkt, 0) != 0)
		return -1;
	memset(s->digest, 0, sizeof(s->digest));
	s->live = s->tombs = 0;
	return 0;
}

int64_t kv_store_last_seen(struct kv_store *s)
{
	MDB_txn *t = read_txn(s);
	if (t == NULL)
		return 0;
	MDB_val k = {9, "last_seen"}, v;
	if (mdb_get(t, s->meta, &k, &v) != 0 || v.mv_size != 8)
		return 0;
	return (int64_t)get64(v.mv_data);
}

static int write_last_seen(struct kv_store *s, int64_t ms)
{
	uint8_t b[8];
	put64(b, (uint64_t)ms);
	MDB_val k = {9, "last_seen"}, v = {8, b};
	return mdb_put(s->wtxn, s->meta, &k, &v, 0) == 0 ? 0 : -1;
}

int kv_store_set_last_seen(struct kv_store *s, int64_t ms)
{
	if (!s->batch)
		return -1;
	s->batch_seen = ms;
	return write_last_seen(s, ms);
}

void kv_store_counts(const struct kv_store *s, uint64_t *live, uint64_t *tombs)
{
	*live = s->live;
	*tombs = s->tombs;
}
