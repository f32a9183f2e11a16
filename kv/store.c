/*
 * kv/store.c — see store.h.
 *
 * Faults are handled where they are met and never latched: a record that
 * fails its check is shown as absent by the one function every read goes
 * through (rec_load); a failed commit or checkpoint is counted, logged
 * through a rate limiter (struct ratelog) and simply tried again by the
 * next call; only a failed rebuild marks the store `broken`, and
 * kv_store_begin repairs it.
 */
#include "kv/store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "lib/cursor.h"
#include "lib/log.h"
#include "kv/hlc.h"
#include "kv/record.h"
#include "kv/wal.h"

/* A streak of failures of one kind: the first is logged, then at most one
 * line per KV_STORE_LOG_EVERY_MS with the count since the last line. */
struct ratelog {
	uint64_t count;    /* failures in the streak; 0: none */
	uint64_t unlogged; /* failures since the last line */
	int64_t first_ms, logged_ms;
};

/* A key written by the open batch, with the record it had before (what a
 * committed read must still see until the batch is durable). */
struct staged {
	uint64_t hash;
	size_t key_off, key_len; /* in the arena */
	size_t old_off, old_len; /* in the arena; old_len 0: the key was absent */
};

struct kv_store {
	char dir[4096];
	size_t map_size;
	MDB_env *env;
	MDB_dbi kv, bkt, meta;
	MDB_txn *wtxn;       /* everything acknowledged since the last checkpoint */
	bool batch;          /* a batch is open in wtxn */
	bool unlogged;       /* ... and replaces the store: not logged, checkpointed by commit */
	bool dirty;          /* wtxn holds changes LMDB has not committed */
	bool dirty_synced;   /* ... and one of them came in a synced batch */
	bool batch_unsynced; /* the open batch is logged without fdatasync */
	MDB_txn *rtxn;       /* reused read transaction (reset between reads) */
	bool rtxn_live;
	bool broken;           /* a rebuild failed: wtxn is gone; kv_store_begin repairs */
	bool env_dead;         /* LMDB returned MDB_PANIC: reopen its environment */
	int64_t retry_ms;      /* broken: next repair attempt (monotonic ms) */
	int64_t ckpt_retry_ms; /* a checkpoint failed: next attempt */
	struct ratelog wfail, cfail, bad;
	struct kv_store_stats stats;
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
	unsigned readers; /* kv_store_reader's open: env is not reopened under them */
};

/* A read transaction of its own on LMDB (MDB_NOTLS: any thread may use it),
 * with copies of what a scan needs, so it never reads struct kv_store. */
struct kv_store_reader {
	MDB_txn *txn;
	MDB_dbi kv;
	uint64_t bad;
};

/* ------------------------------------------------------------ hashes */

/*
 * FNV-1a then a splitmix finaliser (mix), so every bit of the result, the low
 * ones that pick a bucket included, depends on every byte of the key. Not keyed:
 * every replica must put a key in the same bucket, so the hash is part of the
 * protocol and must never change.
 */
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

/*
 * The digest bucket of a key, as every replica computes it: anti-entropy compares
 * buckets, so all agents of every version must agree on this function.
 */
unsigned kv_bucket_of(const char *key, size_t key_len)
{
	return (unsigned)(kv_key_hash(key, key_len) & (KV_BUCKETS - 1));
}

uint64_t kv_key_hash(const char *key, size_t key_len)
{
	return mix(fnv(0xcbf29ce484222325ull, key, key_len));
}

/*
 * What the digest sums per entry: the key, the version, the tombstone bit and the
 * writer; not the value, which the version already identifies. Two replicas that
 * hold the same versions of the same keys have the same digest.
 */
uint64_t kv_store_entry_hash(const char *key, size_t key_len, const struct kv_rec *r)
{
	uint8_t v[9];
	be64_put(v, r->hlc);
	v[8] = r->tomb;
	uint64_t h = fnv(0xcbf29ce484222325ull, key, key_len);
	h = fnv(h, v, sizeof(v));
	h = fnv(h, r->node, r->node_len);
	return mix(h);
}

/* ------------------------------------------------ stored records */

/* The checksum of a stored record: over the key too, so that a value
 * found under the wrong key (a misdirected page write) fails as well. */
static uint32_t stored_crc(const char *key, size_t key_len, const uint8_t *rec, size_t n)
{
	uint8_t kl[2];
	be16_put(kl, (uint16_t)key_len);
	uint32_t c = kv_wal_crc32c(0, kl, sizeof(kl));
	c = kv_wal_crc32c(c, key, key_len);
	return kv_wal_crc32c(c, rec, n);
}

static size_t stored_size(const struct kv_rec *r)
{
	return kv_rec_size(r) + KV_STORE_REC_TRAILER;
}

/* Writes the stored form of r for key at buf (room for stored_size). */
static void stored_encode(const char *key, size_t key_len, const struct kv_rec *r, uint8_t *buf)
{
	size_t n = (size_t)(kv_rec_encode(r, buf) - buf);
	be32_put(buf + n, stored_crc(key, key_len, buf, n));
	buf[n + 4] = KV_STORE_REC_MARK;
}

enum rec_state { REC_BAD, REC_CHECKED, REC_LEGACY };

/* Decodes a stored value; *why says what is wrong with a bad one. The
 * checksummed form is tried first; a value that fails it is taken as a
 * legacy record only if it decodes to exactly its length (a legacy record
 * whose last value byte happens to be the mark). */
static enum rec_state rec_load(const char *key, size_t key_len, const uint8_t *v, size_t n,
                               struct kv_rec *r, const char **why)
{
	char err[96];
	const uint8_t *p = v;
	bool marked = n >= KV_STORE_REC_TRAILER && v[n - 1] == KV_STORE_REC_MARK;
	if (marked) {
		size_t body = n - KV_STORE_REC_TRAILER;
		if (be32_get(v + body) == stored_crc(key, key_len, v, body)) {
			if (kv_rec_decode(&p, v + body, r, err, sizeof(err)) == 0 && p == v + body)
				return REC_CHECKED;
			*why = "does not decode (checksum valid)";
			return REC_BAD;
		}
	}
	p = v;
	if (v != NULL && kv_rec_decode(&p, v + n, r, err, sizeof(err)) == 0 && p == v + n)
		return REC_LEGACY;
	*why = marked ? "fails its checksum" : "does not decode";
	return REC_BAD;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A key made printable for a log line: at most 96 bytes, anything outside
 * printable ASCII as '?' (keys are arbitrary bytes; log lines are not). */
static const char *key_for_log(const char *key, size_t key_len, char *buf, size_t cap)
{
	size_t n = key_len < cap - 4 ? key_len : cap - 4;
	if (n > 96)
		n = 96;
	for (size_t i = 0; i < n; i++)
		buf[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
	if (n < key_len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* Counts one failure; true when it must be logged now. */
static bool ratelog_hit(struct ratelog *rl)
{
	int64_t now = mono_ms();
	if (rl->count++ == 0) {
		rl->first_ms = rl->logged_ms = now;
		rl->unlogged = 0;
		return true;
	}
	rl->unlogged++;
	if (now - rl->logged_ms < KV_STORE_LOG_EVERY_MS)
		return false;
	rl->logged_ms = now;
	return true;
}

/* A failed commit, checkpoint or repair: counted, logged rate-limited. */
static void fail_note(struct kv_store *s, struct ratelog *rl, const char *what, const char *msg)
{
	s->stats.failing = true;
	uint64_t unlogged = rl->unlogged;
	if (!ratelog_hit(rl))
		return;
	if (rl->count == 1)
		log_warn("kv store: %s failed: %s; retried by the next one (nothing of a failed "
		         "write is kept; failures are logged at most every %d s)",
		         what, msg, KV_STORE_LOG_EVERY_MS / 1000);
	else
		log_warn("kv store: %s still failing: %llu more since the last line, %llu in "
		         "%lld s; last: %s",
		         what, (unsigned long long)unlogged + 1, (unsigned long long)rl->count,
		         (long long)((rl->logged_ms - rl->first_ms) / 1000), msg);
	rl->unlogged = 0;
}

/* The operation worked: end the streak (one line if there was one). */
static void fail_clear(struct kv_store *s, struct ratelog *rl, const char *what)
{
	if (rl->count > 0)
		log_info("kv store: %s succeeds again after %llu failures over %.1f s", what,
		         (unsigned long long)rl->count,
		         (double)(mono_ms() - rl->first_ms) / 1000.0);
	memset(rl, 0, sizeof(*rl));
	s->stats.failing = s->wfail.count > 0 || s->cfail.count > 0;
}

/* A read met a bad record: counted, logged rate-limited, shown absent. */
static void bad_note(struct kv_store *s, const char *key, size_t key_len, const char *why)
{
	char k[128];
	s->stats.bad_reads++;
	uint64_t unlogged = s->bad.unlogged;
	if (!ratelog_hit(&s->bad))
		return;
	if (s->bad.count == 1)
		log_warn("kv store: stored record of key \"%s\" %s; shown as absent until a write "
		         "or a peer replaces it",
		         key_for_log(key, key_len, k, sizeof(k)), why);
	else
		log_warn("kv store: %llu reads of bad stored records since the last line; the "
		         "last: key \"%s\" %s",
		         (unsigned long long)unlogged + 1, key_for_log(key, key_len, k, sizeof(k)),
		         why);
	s->bad.unlogged = 0;
}

/* ------------------------------------------------------------ store */

/* Internal reads (accounting, merges): a bad record is absent, quietly. */
static int rec_from_kv(const MDB_val *k, const MDB_val *v, struct kv_rec *r)
{
	const char *why;
	return rec_load(k->mv_data, k->mv_size, v->mv_data, v->mv_size, r, &why) == REC_BAD ? -1
	                                                                                    : 0;
}

/* Reads on behalf of a caller: a bad record is reported, then absent. */
static int rec_read(struct kv_store *s, const MDB_val *k, const MDB_val *v, struct kv_rec *r)
{
	const char *why = "";
	if (rec_load(k->mv_data, k->mv_size, v->mv_data, v->mv_size, r, &why) != REC_BAD)
		return 1;
	bad_note(s, k->mv_data, k->mv_size, why);
	return 0;
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
	if (s->rtxn == NULL || mdb_txn_renew(s->rtxn) != 0) /* NULL: LMDB being reopened */
		return NULL;
	s->rtxn_live = true;
	return s->rtxn;
}

/* The digest and the counts, by one scan. Bad records are left out of
 * the digest (so anti-entropy finds the bucket different and a peer sends
 * its version); with `report` (at open) each of the first few is logged. */
static int build_digest(struct kv_store *s, bool report)
{
	memset(s->digest, 0, sizeof(s->digest));
	s->live = s->tombs = 0;
	uint64_t bad = 0, legacy = 0;
	MDB_txn *t = read_txn(s);
	MDB_cursor *c;
	if (t == NULL || mdb_cursor_open(t, s->kv, &c) != 0)
		return -1;
	MDB_val k, v;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		struct kv_rec r;
		const char *why = "";
		enum rec_state st = rec_load(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &why);
		if (st != REC_BAD) {
			s->digest[kv_bucket_of(k.mv_data, k.mv_size)] +=
			        kv_store_entry_hash(k.mv_data, k.mv_size, &r);
			if (r.tomb)
				s->tombs++;
			else
				s->live++;
			legacy += st == REC_LEGACY;
		} else if (bad++ < 10 && report) {
			char kb[128];
			log_warn(
			        "kv store: stored record of key \"%s\" %s; shown as absent until a "
			        "write or a peer replaces it",
			        key_for_log(k.mv_data, k.mv_size, kb, sizeof(kb)), why);
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	s->stats.bad_records = bad;
	s->stats.legacy_records = legacy;
	if (report && bad > 0)
		log_warn("kv store: %llu of %llu stored records fail their check (data.mdb is "
		         "damaged; see `rumor kv verify`)",
		         (unsigned long long)bad, (unsigned long long)(bad + s->live + s->tombs));
	if (report && legacy > 0)
		log_info("kv store: %llu records have no checksum yet (written by an older "
		         "version); each gets one when next written",
		         (unsigned long long)legacy);
	return rc == MDB_NOTFOUND ? 0 : -1;
}

/* ------------------------------------------------ the open batch's keys */

static uint64_t key_hash(const char *key, size_t key_len)
{
	return mix(fnv(0xcbf29ce484222325ull, key, key_len));
}

/*
 * Open addressing over the batch's staged keys; stg_add keeps the table at most
 * half full, which is what lets the probe loop end only at a match or an empty
 * slot.
 */
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

/*
 * The staged keys and old records live in one growing arena, emptied in one go
 * at the end of the batch (its memory kept), not one allocation per write.
 */
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
	const char *why;
	return rec_load(key, key_len, s->arena + e->old_off, e->old_len, r, &why) == REC_BAD ? 0
	                                                                                     : 1;
}

/* ------------------------------------------------------- log replay */

/*
 * Digest and counts are kept incrementally (add the new entry, subtract the old)
 * so a merge costs O(1) instead of rehashing a bucket. Every change to the kv
 * table must pass through here exactly once, or anti-entropy sees phantom
 * differences.
 */
static void account(struct kv_store *s, const char *key, size_t key_len, const struct kv_rec *r,
                    int sign)
{
	uint64_t h = kv_store_entry_hash(key, key_len, r);
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

/*
 * The bucket index is a second table keyed by bucket byte + key, so anti-entropy
 * can stream one bucket without scanning the whole replica.
 */
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
	if (rc == 0 && rec_from_kv(&k, &v, &old) == 0)
		had = true; /* a bad old record is overwritten as if absent */
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return -1;
	if (batch && !s->unlogged) {
		uint64_t h = key_hash(key, key_len);
		if (stg_find(s, key, key_len, h) < 0 &&
		    stg_add(s, key, key_len, h, had ? &v : NULL) < 0)
			return -1;
		if (kv_wal_add(s->wal, key, key_len, r) < 0)
			return -1;
	}
	if (had)
		account(s, key, key_len, &old, -1);
	v.mv_size = stored_size(r);
	if (mdb_put(s->wtxn, s->kv, &k, &v, MDB_RESERVE) != 0)
		return -1;
	stored_encode(key, key_len, r, v.mv_data);
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
	if (rc == 0 && rec_from_kv(&k, &v, &old) == 0 && kv_rec_cmp(r, &old) <= 0)
		return 0;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return -1;
	return put_rec(s, key, key_len, r, false);
}

static int write_last_seen(struct kv_store *s, int64_t ms);

/* The log's dropped tail at open: loud, counted. A clean end says nothing. */
static void report_tail(struct kv_store *s, const struct kv_wal_tail *t)
{
	if (t->why == KV_WAL_TAIL_NONE)
		return;
	s->stats.wal_dropped_records += t->records;
	s->stats.wal_dropped_bytes += t->bytes;
	s->stats.wal_dropped_intact += t->intact;
	if (t->why == KV_WAL_TAIL_HEADER) {
		log_warn("kv store: %s/wal has no valid header (%llu bytes); its records are "
		         "dropped and a new log is started",
		         s->dir, (unsigned long long)t->bytes);
		return;
	}
	log_warn("kv store: %s/wal: dropped %u record%s (%llu bytes) at offset %llu: %s%s", s->dir,
	         t->records, t->records == 1 ? "" : "s", (unsigned long long)t->bytes,
	         (unsigned long long)t->offset, kv_wal_tail_why_name(t->why),
	         t->why == KV_WAL_TAIL_SHORT && t->records == 1
	                 ? " (a write cut short by a crash; it had not been acknowledged)"
	                 : "");
	if (t->intact > 0)
		log_warn("kv store: %u of the dropped records after offset %llu were whole: "
		         "acknowledged writes were lost here; anti-entropy fetches them back from "
		         "peers that have them",
		         t->intact, (unsigned long long)t->offset);
}

/* (Re)build wtxn from LMDB's last commit and the log. -1 with err, and
 * then no wtxn: reads show LMDB's last commit, never half a replay. */
static int rebuild(struct kv_store *s, struct kv_wal_tail *tail, char *err, size_t errlen)
{
	release_rtxn(s);
	if (s->wtxn != NULL)
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	s->dirty = false;
	int rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		if (rc == MDB_PANIC)
			s->env_dead = true;
		snprintf(err, errlen, "lmdb: %s", mdb_strerror(rc));
		return -1;
	}
	s->dirty = true;
	uint64_t stamp = 0;
	if (kv_wal_replay(s->wal, replay_entry, s, &stamp, tail, err, errlen) < 0)
		goto fail;
	/* the log carries last_seen too (the away-too-long check needs it) */
	if (stamp > 0 && (int64_t)stamp > kv_store_last_seen(s) &&
	    write_last_seen(s, (int64_t)stamp) < 0) {
		snprintf(err, errlen, "lmdb: cannot write last_seen");
		goto fail;
	}
	if (build_digest(s, tail != NULL) < 0) {
		snprintf(err, errlen, "lmdb: cannot read the store");
		goto fail;
	}
	return 0;
fail:
	mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	s->dirty = false;
	return -1;
}

/* A rebuild failed: no wtxn now (reads show LMDB's last commit, which
 * lacks the batches since then), and no writes until kv_store_begin has
 * rebuilt it. Never set while a batch is open. */
static void set_broken(struct kv_store *s, const char *what, const char *err)
{
	s->broken = true;
	s->retry_ms = mono_ms() + KV_STORE_RETRY_MS;
	char msg[400];
	snprintf(msg, sizeof(msg), "%s: %s (reads show the last checkpoint until it is rebuilt)",
	         what, err);
	fail_note(s, &s->wfail, "rebuilding the store", msg);
}

static int env_open(struct kv_store *s, char *err, size_t errlen);

/* Undo the broken state: reopen LMDB if it declared its environment dead
 * (after a failed meta-page write; its file still holds the last commit
 * that succeeded), then rebuild from LMDB and the log. */
static int repair(struct kv_store *s, char *err, size_t errlen)
{
	if (s->env_dead && s->readers > 0) {
		snprintf(err, errlen, "a reader is open; LMDB is reopened after it closes");
		return -1;
	}
	if (s->env_dead) {
		release_rtxn(s);
		if (s->rtxn != NULL)
			mdb_txn_abort(s->rtxn);
		s->rtxn = NULL;
		if (s->env != NULL)
			mdb_env_close(s->env);
		s->env = NULL;
		if (env_open(s, err, errlen) < 0)
			return -1;
		s->env_dead = false;
	}
	if (rebuild(s, NULL, err, errlen) < 0)
		return -1;
	s->broken = false;
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
	s->unlogged = false;
	s->batch_unsynced = false;
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
	if (rebuild(s, NULL, err, sizeof(err)) < 0)
		set_broken(s, "rolling back a batch", err);
}

/* ------------------------------------------------------------ open/close */

/* Create and open the LMDB environment in s->dir, its three databases
 * and the reusable read transaction. -1 with err (s->env may be set: the
 * caller closes it). */
static int env_open(struct kv_store *s, char *err, size_t errlen)
{
	int rc;
	MDB_txn *t = NULL;
	if ((rc = mdb_env_create(&s->env)) != 0) {
		s->env = NULL;
		goto fail;
	}
	mdb_env_set_maxdbs(s->env, 3);
	if ((rc = mdb_env_set_mapsize(s->env, s->map_size)) != 0)
		goto fail;
	/* LMDB's commits stay fully synced: they happen only at checkpoints */
	if ((rc = mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600)) != 0)
		goto fail;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &t)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(t, "kv", MDB_CREATE, &s->kv)) != 0 ||
	    (rc = mdb_dbi_open(t, "bkt", MDB_CREATE, &s->bkt)) != 0 ||
	    (rc = mdb_dbi_open(t, "meta", MDB_CREATE, &s->meta)) != 0) {
		mdb_txn_abort(t);
		goto fail;
	}
	if ((rc = mdb_txn_commit(t)) != 0)
		goto fail;
	if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn)) != 0) {
		s->rtxn = NULL;
		goto fail;
	}
	mdb_txn_reset(s->rtxn);
	return 0;
fail:
	snprintf(err, errlen, "lmdb %s: %s", s->dir, mdb_strerror(rc));
	return -1;
}

/*
 * Opening replays whatever the log holds past LMDB's last commit and then
 * checkpoints, so a replica starts with an empty log. A checkpoint that fails here
 * is not fatal: the data is in the log, and a full disk must not stop the agent.
 */
struct kv_store *kv_store_open(const char *dir, size_t map_size, char *err, size_t errlen)
{
	struct kv_store *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (strlen(dir) + 5 >= sizeof(s->dir)) {
		snprintf(err, errlen, "data directory path too long");
		free(s);
		return NULL;
	}
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	s->map_size = map_size ? map_size : (size_t)1 << 30;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (env_open(s, err, errlen) < 0)
		goto fail;
	char path[4200];
	snprintf(path, sizeof(path), "%s/wal", dir);
	s->wal = kv_wal_open(path, err, errlen);
	if (s->wal == NULL)
		goto fail;
	/* replay what was acknowledged after LMDB's last commit, then
	 * checkpoint: LMDB holds it all and the log starts a new generation
	 * (which also makes a torn tail unreadable for good) */
	struct kv_wal_tail tail;
	if (rebuild(s, &tail, err, errlen) < 0)
		goto fail;
	report_tail(s, &tail);
	/* a full disk must not keep the agent from starting: if LMDB cannot
	 * commit, the log still holds everything and the checkpoint is retried */
	char cerr[256];
	if (kv_store_checkpoint(s, cerr, sizeof(cerr)) < 0)
		log_warn("kv store: %s at open; running from the log until it succeeds", cerr);
	return s;
fail:
	if (s->wtxn != NULL) /* never checkpoint half a replay */
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	kv_store_close(s);
	return NULL;
}

/*
 * The last checkpoint is tried without back-off; if it fails the log still
 * holds the data and the next start replays it, so closing never loses a write
 * that was acknowledged.
 */
void kv_store_close(struct kv_store *s)
{
	if (s == NULL)
		return;
	if (s->readers > 0)
		log_err("kv store: closed with %u reader(s) open", s->readers);
	if (s->batch)
		kv_store_abort(s);
	if (s->wtxn != NULL) {
		char err[256];
		s->ckpt_retry_ms = 0; /* the last chance: no back-off */
		if (kv_store_checkpoint(s, err, sizeof(err)) < 0)
			log_warn("kv store: checkpoint at close: %s (the log keeps the data; it is "
			         "replayed at the next start)",
			         err);
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

/*
 * Commits LMDB (synced) first and resets the log only after: at no moment is a
 * batch held by neither. On a failed commit the write transaction is rebuilt
 * from LMDB and the log, and retries are spaced by KV_STORE_RETRY_MS.
 */
int kv_store_checkpoint(struct kv_store *s, char *err, size_t errlen)
{
	if (s->batch) {
		snprintf(err, errlen, "checkpoint: a batch is open");
		return -1;
	}
	if (s->wtxn == NULL) {
		/* LMDB holds everything (unless broken): a reset that failed
		 * after its LMDB commit can be retried here */
		if (s->broken || !kv_wal_broken(s->wal))
			return 0;
		int rc = kv_wal_reset(s->wal);
		if (rc < 0) {
			snprintf(err, errlen, "checkpoint: wal: %s", strerror(-rc));
			return -1;
		}
		return 0;
	}
	if (s->ckpt_retry_ms != 0 && mono_ms() < s->ckpt_retry_ms)
		return 0; /* deferred: still dirty, so the caller comes back */
	release_rtxn(s);
	int rc = mdb_txn_commit(s->wtxn); /* synced: data pages, then the meta page */
	s->wtxn = NULL;
	if (rc != 0) {
		/* nothing is lost: the log holds every batch since the last
		 * checkpoint; rebuild wtxn from LMDB and it */
		snprintf(err, errlen, "checkpoint: lmdb commit: %s", mdb_strerror(rc));
		s->stats.checkpoint_failures++;
		s->ckpt_retry_ms = mono_ms() + KV_STORE_RETRY_MS;
		fail_note(s, &s->cfail, "checkpoint (LMDB commit)", err);
		char e2[256];
		if (rebuild(s, NULL, e2, sizeof(e2)) < 0)
			set_broken(s, "after a failed checkpoint", e2);
		return -1;
	}
	s->dirty = false;
	s->dirty_synced = false;
	rc = kv_wal_reset(s->wal);
	if (rc < 0) {
		snprintf(err, errlen, "checkpoint: wal: %s", strerror(-rc));
		s->stats.checkpoint_failures++;
		fail_note(s, &s->cfail, "checkpoint (log reset)", err);
		return -1;
	}
	s->ckpt_retry_ms = 0;
	fail_clear(s, &s->cfail, "checkpoint");
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

/*
 * A broken store is repaired here, at the start of the next batch, rather than
 * where it broke: a failure must not be latched, and repair needs no batch open.
 * The digest and counts are saved so a rollback can restore them exactly.
 */
int kv_store_begin(struct kv_store *s)
{
	if (s->batch)
		return 0;
	if (s->broken) {
		char err[256];
		if (mono_ms() < s->retry_ms)
			return -1;
		if (repair(s, err, sizeof(err)) < 0) {
			set_broken(s, "repairing the store", err);
			return -1;
		}
		fail_clear(s, &s->wfail, "writing");
	}
	if (s->wtxn == NULL) {
		release_rtxn(s);
		if (mdb_txn_begin(s->env, NULL, 0, &s->wtxn) != 0) {
			s->wtxn = NULL;
			return -1;
		}
	}
	s->batch = true;
	s->batch_unsynced = false;
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

/*
 * A store replaced whole (a Raft snapshot installed) writes every record once
 * more: through the log that would be written twice (log, then checkpoint)
 * and copied twice in memory, for no gain, since the batch's wipe is not in
 * the log anyway. So its records go to LMDB only, and its commit is a
 * checkpoint. Committed reads during the batch see the open batch's writes
 * (nothing is staged), which the wipe makes moot.
 */
int kv_store_begin_unlogged(struct kv_store *s)
{
	if (kv_store_begin(s) < 0)
		return -1;
	s->unlogged = true;
	return 0;
}

/*
 * The durability point: one log append and one fdatasync for the whole batch.
 * LMDB is not committed here (that is the checkpoint's job), so a failure here
 * rolls the batch back and nothing of it may be acknowledged.
 */
int kv_store_commit(struct kv_store *s, char *err, size_t errlen)
{
	if (!s->batch)
		return 0;
	if (s->unlogged) {
		/* durable by LMDB's own commit (the wipe included, which the log
		 * could not replay); what the log holds of it is dropped */
		kv_wal_discard(s->wal);
		s->batch = false;
		s->unlogged = false;
		s->dirty = true;
		stg_clear(s);
		s->ckpt_retry_ms = 0; /* no back-off: the batch waits for it */
		if (kv_store_checkpoint(s, err, errlen) < 0) {
			/* the checkpoint rebuilt wtxn from LMDB and the log: the
			 * batch is gone, as a failed commit's is */
			s->stats.commit_failures++;
			return -1;
		}
		fail_clear(s, &s->wfail, "writing");
		return 0;
	}
	/* one write, and one fdatasync unless the batch holds peers' records only */
	bool sync = !s->batch_unsynced;
	s->batch_unsynced = false;
	int rc = kv_wal_append(s->wal, (uint64_t)s->batch_seen, sync);
	if (rc < 0) {
		snprintf(err, errlen, "wal commit: %s", strerror(-rc));
		s->stats.commit_failures++;
		fail_note(s, &s->wfail, "writing", err);
		rollback(s);
		return -1;
	}
	s->batch = false;
	s->dirty = true;
	s->dirty_synced |= sync;
	stg_clear(s);
	fail_clear(s, &s->wfail, "writing");
	return 0;
}

void kv_store_batch_unsynced(struct kv_store *s)
{
	if (s->batch && !s->unlogged)
		s->batch_unsynced = true;
}

bool kv_store_dirty_synced(const struct kv_store *s)
{
	return s->dirty && s->dirty_synced;
}

void kv_store_set_log_sync(struct kv_store *s, bool sync)
{
	kv_wal_set_sync(s->wal, sync);
}

void kv_store_abort(struct kv_store *s)
{
	if (s->batch)
		rollback(s);
}

/*
 * Key lengths past LMDB's limit are refused before reaching it. "committed"
 * reads show what was there before the open batch, so a read never returns a
 * write that might still be rolled back.
 */
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
	return rec_read(s, &k, &v, r);
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
	return rec_read(s, k, v, r);
}

/*
 * The reader's transaction is begun here, in the owner's thread, and then only
 * used by the one other thread the caller hands it to: LMDB allows that for
 * read transactions of an MDB_NOTLS environment. Its snapshot is LMDB's last
 * commit, i.e. the last checkpoint: the caller checkpoints first when it
 * needs the latest batches.
 */
struct kv_store_reader *kv_store_reader_open(struct kv_store *s, char *err, size_t errlen)
{
	if (s->env == NULL || s->env_dead) {
		snprintf(err, errlen, "reader: the store's LMDB is not open");
		return NULL;
	}
	struct kv_store_reader *rd = calloc(1, sizeof(*rd));
	if (rd == NULL) {
		snprintf(err, errlen, "reader: out of memory");
		return NULL;
	}
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &rd->txn);
	if (rc != 0) {
		snprintf(err, errlen, "reader: lmdb: %s", mdb_strerror(rc));
		free(rd);
		return NULL;
	}
	rd->kv = s->kv;
	(void)kv_wal_crc32c(0, "",
	                    0); /* its lazy set-up happens here, not in the reader's thread */
	s->readers++;
	return rd;
}

int kv_store_reader_scan(struct kv_store_reader *rd, kv_store_fn fn, void *ud)
{
	MDB_cursor *c;
	if (mdb_cursor_open(rd->txn, rd->kv, &c) != 0)
		return -1;
	MDB_val k, v;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	int n = 0;
	while (rc == 0) {
		struct kv_rec r;
		const char *why;
		if (rec_load(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &why) == REC_BAD) {
			rd->bad++;
		} else {
			n++;
			if (fn(ud, k.mv_data, k.mv_size, &r) != 0)
				break;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? n : -1;
}

uint64_t kv_store_reader_bad(const struct kv_store_reader *rd)
{
	return rd->bad;
}

void kv_store_reader_close(struct kv_store *s, struct kv_store_reader *rd)
{
	if (rd == NULL)
		return;
	mdb_txn_abort(rd->txn);
	free(rd);
	s->readers--;
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

/*
 * Walks the bucket index and looks each key up in the main table; an index entry
 * whose record is gone or bad is skipped, never trusted on its own.
 */
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
		if (mdb_get(t, s->kv, &kk, &vv) == 0 &&
		    scan_view(s, committed, &kk, &vv, &r) == 1) {
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

/* Each bucket's sum is mixed with its index (a sum moved to another bucket
 * changes the root) and folded in order, with a final avalanche. */
uint64_t kv_store_root(const struct kv_store *s)
{
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (unsigned b = 0; b < KV_BUCKETS; b++) {
		h ^= s->digest[b] + b * 0xbf58476d1ce4e5b9ull;
		h *= 0x94d049bb133111ebull;
		h ^= h >> 31;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/*
 * LMDB (without MDB_WRITEMAP) maps data.mdb MAP_SHARED and read-only and
 * writes through pwrite, so the map always shows the page cache: dropping
 * our page table entries loses nothing, and a read faults the page back.
 * LMDB does not say where its map is (mdb_env_info's me_mapaddr is only set
 * with MDB_FIXEDMAP), so it is found in /proc/self/maps by the file's device
 * and inode. Only the used part of the 1 GiB map (up to the last page).
 */
size_t kv_store_trim(struct kv_store *s)
{
	MDB_envinfo info;
	MDB_stat st;
	mdb_filehandle_t fd;
	struct stat fs;
	if (s->env == NULL || s->env_dead || mdb_env_info(s->env, &info) != 0 ||
	    mdb_env_stat(s->env, &st) != 0 || mdb_env_get_fd(s->env, &fd) != 0 ||
	    fstat(fd, &fs) != 0)
		return 0;
	size_t used = ((size_t)info.me_last_pgno + 1) * st.ms_psize;
	FILE *f = fopen("/proc/self/maps", "re");
	if (f == NULL)
		return 0;
	char line[512];
	size_t done = 0;
	while (done == 0 && fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi, off, ino;
		unsigned maj, mnr;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj, &mnr,
		           &ino) != 7 ||
		    ino != (unsigned long)fs.st_ino || makedev(maj, mnr) != fs.st_dev || off != 0 ||
		    perms[3] != 's')
			continue;
		size_t len = used < hi - lo ? used : hi - lo;
		if (madvise((void *)lo, len, MADV_DONTNEED) == 0)
			done = len;
	}
	fclose(f);
	return done;
}

/*
 * Not logged: a purge lost to a crash only leaves tombstones that the next purge
 * removes again, so it goes to LMDB with the next checkpoint and costs the log
 * nothing.
 */
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
		if (rec_from_kv(&k, &v, &r) == 0 && r.tomb && KV_HLC_MS(r.hlc) < before_ms) {
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

/*
 * Empties the replica inside the open batch, digest and counts included, so the
 * next anti-entropy round refills it from peers as if it were new.
 */
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
	return (int64_t)be64_get(v.mv_data);
}

static int write_last_seen(struct kv_store *s, int64_t ms)
{
	uint8_t b[8];
	be64_put(b, (uint64_t)ms);
	MDB_val k = {9, "last_seen"}, v = {8, b};
	return mdb_put(s->wtxn, s->meta, &k, &v, 0) == 0 ? 0 : -1;
}

/*
 * Stored with every batch, so after a long absence the engine can tell that the
 * replica is older than the tombstone TTL and must not be served.
 */
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

const struct kv_store_stats *kv_store_stats(const struct kv_store *s)
{
	return &s->stats;
}

/* ------------------------------------------------------------ verify */

int kv_store_verify(const char *dir, kv_store_bad_fn bad, void *ud,
                    struct kv_store_verify_result *res, char *err, size_t errlen)
{
	memset(res, 0, sizeof(*res));
	res->wal_tail_why = kv_wal_tail_why_name(KV_WAL_TAIL_NONE);
	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	struct stat st;
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	MDB_env *env = NULL;
	MDB_txn *t = NULL;
	MDB_cursor *c = NULL;
	MDB_dbi dbi;
	int rc;
	if ((rc = mdb_env_create(&env)) != 0) {
		env = NULL;
		goto lmdb_fail;
	}
	mdb_env_set_maxdbs(env, 3);
	/* read-only: no write lock, so a running agent is not disturbed */
	if ((rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t)) != 0)
		goto lmdb_fail;
	rc = mdb_dbi_open(t, "kv", 0, &dbi);
	if (rc == MDB_NOTFOUND)
		goto wal; /* never written */
	if (rc != 0 || (rc = mdb_cursor_open(t, dbi, &c)) != 0)
		goto lmdb_fail;
	MDB_val k, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		struct kv_rec r;
		const char *why = "";
		res->records++;
		switch (rec_load(k.mv_data, k.mv_size, v.mv_data, v.mv_size, &r, &why)) {
		case REC_CHECKED:
			res->checked++;
			break;
		case REC_LEGACY:
			res->legacy++;
			break;
		case REC_BAD:
			res->bad++;
			if (bad != NULL)
				bad(ud, k.mv_data, k.mv_size, why);
			break;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		goto lmdb_fail;
wal:
	mdb_txn_abort(t);
	mdb_env_close(env);
	snprintf(path, sizeof(path), "%s/wal", dir);
	struct kv_wal_tail tail;
	char werr[256];
	res->wal_error = kv_wal_inspect(path, &res->wal_batches, &tail, werr, sizeof(werr));
	if (res->wal_error == 0 && tail.why != KV_WAL_TAIL_NONE) {
		res->wal_tail_dropped = true;
		res->wal_tail_why = kv_wal_tail_why_name(tail.why);
		res->wal_tail_offset = tail.offset;
		res->wal_tail_bytes = tail.bytes;
		res->wal_tail_records = tail.records;
		res->wal_tail_intact = tail.intact;
	}
	return 0;
lmdb_fail:
	snprintf(err, errlen, "lmdb %s: %s", dir, mdb_strerror(rc));
	if (t != NULL)
		mdb_txn_abort(t);
	if (env != NULL)
		mdb_env_close(env);
	return -1;
}
