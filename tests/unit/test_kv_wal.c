/*
 * tests/unit/test_kv_wal.c — the KV write-ahead log (kv/wal.h) and the
 * store's use of it: append and replay, a torn tail at every byte offset,
 * checksum mismatch, checkpoint + new generation, replay idempotence, crash
 * images (LMDB without the last batches + the log), rollback, and that the
 * engine's acknowledgement comes after the batch is in the log.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv/kv.h"
#include "kv/store.h"
#include "kv/wal.h"
#include "tests/unit/check.h"

static char tmpdir[256];
static int seq;

static int rm_entry(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
	(void)sb;
	(void)f;
	(void)ftw;
	return remove(p);
}

static void fresh_path(char *out, size_t n, const char *what)
{
	snprintf(out, n, "%s/%s-%d", tmpdir, what, seq++);
}

static struct kv_rec mkrec(uint64_t hlc, const char *val)
{
	struct kv_rec r;
	memset(&r, 0, sizeof(r));
	r.hlc = hlc;
	r.create = hlc;
	r.node = "n1";
	r.node_len = 2;
	r.value = (const uint8_t *)val;
	r.value_len = (uint32_t)strlen(val);
	return r;
}

/* Replay collector: entries seen, in order. */
struct seen {
	int n;
	char keys[16][32];
	uint64_t hlc[16];
	char vals[16][32];
};

static int collect(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct seen *s = ud;
	if (s->n < 16) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%.*s", (int)key_len, key);
		snprintf(s->vals[s->n], sizeof(s->vals[0]), "%.*s", (int)r->value_len,
			 (const char *)r->value);
		s->hlc[s->n] = r->hlc;
	}
	s->n++;
	return 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int write_file(const char *path, const uint8_t *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t w = fwrite(b, 1, n, f);
	fclose(f);
	return w == n ? 0 : -1;
}

/* A log with two batches: {a=1, b=2} then {c=3}; *end1 and *end2 are the file
 * offsets where each record ends. */
static int make_two_batches(const char *path, uint64_t *end1, uint64_t *end2)
{
	char err[256];
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	if (w == NULL || kv_wal_replay(w, collect, &(struct seen){0}, NULL, err, sizeof(err)) != 0)
		return -1;
	struct kv_rec a = mkrec(10, "1"), b = mkrec(11, "2"), c = mkrec(12, "3");
	if (kv_wal_add(w, "a", 1, &a) < 0 || kv_wal_add(w, "b", 1, &b) < 0 ||
	    kv_wal_commit(w, 1000) < 0)
		return -1;
	*end1 = KV_WAL_HDR + kv_wal_size(w);
	if (kv_wal_add(w, "c", 1, &c) < 0 || kv_wal_commit(w, 2000) < 0)
		return -1;
	*end2 = KV_WAL_HDR + kv_wal_size(w);
	kv_wal_close(w);
	return 0;
}

static int replay_file(const char *path, struct seen *s, uint64_t *stamp)
{
	char err[256];
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	if (w == NULL)
		return -100;
	int n = kv_wal_replay(w, collect, s, stamp, err, sizeof(err));
	kv_wal_close(w);
	return n;
}

static void test_append_then_replay_gives_batches_in_order(void)
{
	char path[512];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2, stamp = 0;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	struct seen s = {0};
	int n = replay_file(path, &s, &stamp);
	REQUIRE(n == 2, "expected 2 batches, got %d", n);
	REQUIRE(s.n == 3, "expected 3 entries, got %d", s.n);
	REQUIRE(strcmp(s.keys[0], "a") == 0 && strcmp(s.keys[1], "b") == 0 &&
		        strcmp(s.keys[2], "c") == 0,
	        "expected a b c, got %s %s %s", s.keys[0], s.keys[1], s.keys[2]);
	REQUIRE(strcmp(s.vals[2], "3") == 0 && s.hlc[2] == 12, "expected c=3@12, got %s@%" PRIu64,
	        s.vals[2], s.hlc[2]);
	REQUIRE(stamp == 2000, "expected the last batch's stamp 2000, got %" PRIu64, stamp);
}

static void test_empty_batch_writes_nothing(void)
{
	char path[512], err[256];
	fresh_path(path, sizeof(path), "wal");
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	REQUIRE(w != NULL, "open: %s", err);
	REQUIRE(kv_wal_replay(w, collect, &(struct seen){0}, NULL, err, sizeof(err)) == 0,
	        "replay of a new log");
	REQUIRE(kv_wal_commit(w, 5) == 0, "empty commit failed");
	REQUIRE(kv_wal_size(w) == 0, "expected 0 bytes logged, got %" PRIu64, kv_wal_size(w));
	kv_wal_close(w);
}

/* Cut the second record at every byte offset, both as a short file and as
 * a file whose rest is zeros (preallocated) or 0xff garbage: replay gives
 * exactly the first batch, and a batch appended afterwards replays after
 * it (the torn bytes are gone). */
static void test_torn_tail_at_every_offset_ends_replay(void)
{
	char path[512], cut[512];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	size_t len;
	uint8_t *full = read_file(path, &len);
	REQUIRE(full != NULL && len >= e2, "could not read the log back");
	uint8_t *img = malloc(e2 + 64);
	REQUIRE(img != NULL, "out of memory");
	int bad = 0;
	for (int fill = 0; fill < 3 && !bad; fill++) {
		for (uint64_t l = e1; l < e2 && !bad; l++) {
			size_t n = (size_t)l;
			memcpy(img, full, n);
			if (fill > 0) {
				memset(img + n, fill == 1 ? 0 : 0xff, (size_t)(e2 + 64 - l));
				n = (size_t)(e2 + 64);
			}
			fresh_path(cut, sizeof(cut), "cut");
			if (write_file(cut, img, n) < 0) {
				bad = 1;
				break;
			}
			struct seen s = {0};
			int got = replay_file(cut, &s, NULL);
			if (got != 1 || s.n != 2) {
				printf("  cut at %" PRIu64 " (fill %d): expected 1 batch/2 entries, "
				       "got %d/%d\n",
				       l, fill, got, s.n);
				bad = 1;
				break;
			}
			/* append after the torn tail, then replay again */
			char err[256];
			struct kv_wal *w = kv_wal_open(cut, err, sizeof(err));
			struct kv_rec d = mkrec(20, "4");
			struct seen s2 = {0};
			if (w == NULL || kv_wal_replay(w, collect, &s2, NULL, err, sizeof(err)) != 1 ||
			    kv_wal_add(w, "d", 1, &d) < 0 || kv_wal_commit(w, 3) < 0) {
				printf("  cut at %" PRIu64 ": append after the tail failed\n", l);
				bad = 1;
			}
			kv_wal_close(w);
			struct seen s3 = {0};
			got = replay_file(cut, &s3, NULL);
			if (!bad && (got != 2 || s3.n != 3 || strcmp(s3.keys[2], "d") != 0)) {
				printf("  cut at %" PRIu64 " (fill %d): after append expected a b d, "
				       "got %d batches, %d entries\n",
				       l, fill, got, s3.n);
				bad = 1;
			}
			unlink(cut);
		}
	}
	/* a cut inside the first record loses both */
	for (uint64_t l = KV_WAL_HDR; l < e1 && !bad; l++) {
		fresh_path(cut, sizeof(cut), "cut");
		write_file(cut, full, (size_t)l);
		struct seen s = {0};
		int got = replay_file(cut, &s, NULL);
		if (got != 0 || s.n != 0) {
			printf("  cut at %" PRIu64 ": expected nothing, got %d\n", l, got);
			bad = 1;
		}
		unlink(cut);
	}
	free(img);
	free(full);
	REQUIRE(!bad, "a torn tail was replayed or broke the log");
}

static void test_checksum_mismatch_ends_replay(void)
{
	char path[512];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	size_t len;
	uint8_t *b = read_file(path, &len);
	REQUIRE(b != NULL, "read back");
	/* a flipped value byte in the second record: only the first replays */
	b[e2 - 1] ^= 0x40;
	write_file(path, b, len);
	struct seen s = {0};
	int n = replay_file(path, &s, NULL);
	REQUIRE(n == 1 && s.n == 2, "expected 1 batch/2 entries, got %d/%d", n, s.n);
	/* a flipped byte in the first record's payload: nothing replays */
	b[KV_WAL_HDR + KV_WAL_REC_HDR + 14] ^= 0x01;
	write_file(path, b, len);
	struct seen s2 = {0};
	n = replay_file(path, &s2, NULL);
	REQUIRE(n == 0 && s2.n == 0, "expected nothing, got %d/%d", n, s2.n);
	free(b);
}

static void test_bad_header_starts_a_new_log(void)
{
	char path[512];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	size_t len;
	uint8_t *b = read_file(path, &len);
	REQUIRE(b != NULL, "read back");
	b[9] ^= 0xff; /* generation, so the header checksum fails */
	write_file(path, b, len);
	free(b);
	struct seen s = {0};
	int n = replay_file(path, &s, NULL);
	REQUIRE(n == 0 && s.n == 0, "expected nothing from a log without header, got %d", n);
	struct seen s2 = {0};
	n = replay_file(path, &s2, NULL);
	REQUIRE(n == 0 && s2.n == 0, "the rewritten log replays %d batches", n);
}

/* After a reset (a checkpoint) the old generation's records are not
 * replayed, not even those beyond a shorter new record. */
static void test_checkpoint_reset_drops_old_generation(void)
{
	char path[512], err[256];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	REQUIRE(w != NULL, "open");
	struct seen s = {0};
	REQUIRE(kv_wal_replay(w, collect, &s, NULL, err, sizeof(err)) == 2, "replay before reset");
	uint64_t g = kv_wal_gen(w);
	REQUIRE(kv_wal_reset(w) == 0, "reset failed");
	REQUIRE(kv_wal_gen(w) != g && kv_wal_size(w) == 0, "expected a new generation and size 0");
	kv_wal_close(w);
	struct seen s2 = {0};
	int n = replay_file(path, &s2, NULL);
	REQUIRE(n == 0, "expected no batch after reset, got %d", n);
	/* a short record of the new generation over the old ones */
	w = kv_wal_open(path, err, sizeof(err));
	REQUIRE(w != NULL && kv_wal_replay(w, collect, &(struct seen){0}, NULL, err, sizeof(err)) == 0,
	        "replay after reset");
	struct kv_rec z = mkrec(30, "");
	REQUIRE(kv_wal_add(w, "z", 1, &z) == 0 && kv_wal_commit(w, 9) == 0, "append");
	REQUIRE(kv_wal_size(w) < e2 - KV_WAL_HDR, "the new record should be shorter");
	kv_wal_close(w);
	struct seen s3 = {0};
	n = replay_file(path, &s3, NULL);
	REQUIRE(n == 1 && s3.n == 1 && strcmp(s3.keys[0], "z") == 0,
	        "expected only z, got %d batches, %d entries", n, s3.n);
}

/* ------------------------------------------------------ store level */

static struct kv_store *open_store(const char *dir)
{
	char err[256];
	struct kv_store *s = kv_store_open(dir, 64u << 20, err, sizeof(err));
	if (s == NULL)
		printf("  open %s: %s\n", dir, err);
	return s;
}

static int put1(struct kv_store *s, const char *k, uint64_t hlc, const char *v)
{
	char err[128];
	struct kv_rec r = mkrec(hlc, v);
	if (kv_store_begin(s) < 0 || kv_store_put(s, k, strlen(k), &r) < 0)
		return -1;
	return kv_store_commit(s, err, sizeof(err));
}

static int copy(const char *from, const char *to)
{
	size_t n;
	uint8_t *b = read_file(from, &n);
	if (b == NULL)
		return -1;
	int rc = write_file(to, b, n);
	free(b);
	return rc;
}

static int value_is(struct kv_store *s, const char *k, const char *v)
{
	struct kv_rec r;
	if (kv_store_get(s, true, k, strlen(k), &r) != 1)
		return 0;
	return r.value_len == strlen(v) && memcmp(r.value, v, r.value_len) == 0;
}

/* A crash image: LMDB as of its last checkpoint, the log as written. The
 * batches committed after the checkpoint come back from the log. */
static void test_crash_image_recovers_from_log(void)
{
	char dir[512], crash[512], a[600], b[600];
	fresh_path(dir, sizeof(dir), "store");
	fresh_path(crash, sizeof(crash), "crash");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	REQUIRE(put1(s, "k1", 100, "one") == 0, "put k1");
	char err[256];
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	REQUIRE(put1(s, "k2", 101, "two") == 0 && put1(s, "k1", 102, "uno") == 0, "puts");
	REQUIRE(kv_store_dirty(s) && kv_store_log_bytes(s) > 0, "expected logged, unchecked data");
	/* "power off" now: copy the files as they are */
	mkdir(crash, 0700);
	snprintf(a, sizeof(a), "%s/data.mdb", dir);
	snprintf(b, sizeof(b), "%s/data.mdb", crash);
	REQUIRE(copy(a, b) == 0, "copy data.mdb");
	snprintf(a, sizeof(a), "%s/wal", dir);
	snprintf(b, sizeof(b), "%s/wal", crash);
	REQUIRE(copy(a, b) == 0, "copy wal");
	uint64_t d0[KV_BUCKETS];
	memcpy(d0, kv_store_digest(s), sizeof(d0));
	kv_store_close(s);
	struct kv_store *c = open_store(crash);
	REQUIRE(c != NULL, "open the crash image");
	REQUIRE(value_is(c, "k1", "uno") && value_is(c, "k2", "two"),
	        "expected k1=uno k2=two after recovery");
	REQUIRE(memcmp(d0, kv_store_digest(c), sizeof(d0)) == 0, "digest differs after recovery");
	REQUIRE(kv_store_log_bytes(c) == 0 && !kv_store_dirty(c), "expected a checkpoint at open");
	kv_store_close(c);
}

/* Replaying a log whose batches LMDB already holds changes nothing (a
 * crash between LMDB's commit and the log's reset), however often. */
static void test_replay_is_idempotent(void)
{
	char dir[512], img[512], walcopy[512], a[600], b[600];
	fresh_path(dir, sizeof(dir), "store");
	fresh_path(img, sizeof(img), "image");
	fresh_path(walcopy, sizeof(walcopy), "walcopy");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	REQUIRE(put1(s, "x", 200, "old") == 0 && put1(s, "x", 201, "new") == 0 &&
		        put1(s, "y", 202, "why") == 0,
	        "puts");
	snprintf(a, sizeof(a), "%s/wal", dir);
	REQUIRE(copy(a, walcopy) == 0, "copy wal before the checkpoint");
	char err[256];
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint");
	uint64_t live, tombs;
	kv_store_counts(s, &live, &tombs);
	uint64_t d0[KV_BUCKETS];
	memcpy(d0, kv_store_digest(s), sizeof(d0));
	kv_store_close(s);
	mkdir(img, 0700);
	for (int round = 0; round < 2; round++) {
		snprintf(a, sizeof(a), "%s/data.mdb", dir);
		snprintf(b, sizeof(b), "%s/data.mdb", img);
		REQUIRE(round > 0 || copy(a, b) == 0, "copy data.mdb after the checkpoint");
		snprintf(b, sizeof(b), "%s/wal", img);
		REQUIRE(copy(walcopy, b) == 0, "copy the stale log");
		struct kv_store *c = open_store(img);
		REQUIRE(c != NULL, "open image");
		uint64_t l2, t2;
		kv_store_counts(c, &l2, &t2);
		REQUIRE(l2 == live && t2 == tombs, "expected %" PRIu64 " live, got %" PRIu64, live, l2);
		REQUIRE(value_is(c, "x", "new") && value_is(c, "y", "why"), "values changed by replay");
		REQUIRE(memcmp(d0, kv_store_digest(c), sizeof(d0)) == 0, "digest changed by replay");
		kv_store_close(c);
	}
}

static int count_rec(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)key;
	(void)key_len;
	(void)r;
	(*(int *)ud)++;
	return 0;
}

/* While a batch is open, committed reads show what was acknowledged;
 * abort drops the batch and keeps every acknowledged write. */
static void test_open_batch_is_invisible_and_abort_keeps_acked(void)
{
	char dir[512];
	fresh_path(dir, sizeof(dir), "store");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	REQUIRE(put1(s, "a", 300, "acked") == 0, "put a");
	uint64_t d0[KV_BUCKETS];
	memcpy(d0, kv_store_digest(s), sizeof(d0));
	struct kv_rec r1 = mkrec(301, "staged"), r2 = mkrec(302, "new");
	REQUIRE(kv_store_begin(s) == 0 && kv_store_put(s, "a", 1, &r1) == 0 &&
		        kv_store_put(s, "b", 1, &r2) == 0,
	        "stage");
	struct kv_rec g;
	REQUIRE(value_is(s, "a", "acked"), "committed read saw the staged a");
	REQUIRE(kv_store_get(s, true, "b", 1, &g) == 0, "committed read saw the staged b");
	REQUIRE(kv_store_get(s, false, "a", 1, &g) == 1 && g.hlc == 301, "staged read missed a");
	int seen = 0, staged = 0;
	kv_store_scan(s, true, "", 0, count_rec, &seen);
	kv_store_scan(s, false, "", 0, count_rec, &staged);
	REQUIRE(seen == 1 && staged == 2, "expected scans of 1 committed / 2 staged, got %d / %d", seen,
	        staged);
	int bseen = 0;
	for (unsigned k = 0; k < KV_BUCKETS; k++)
		kv_store_scan_bucket(s, true, k, count_rec, &bseen);
	REQUIRE(bseen == 1, "expected 1 committed record over the buckets, got %d", bseen);
	kv_store_abort(s);
	REQUIRE(value_is(s, "a", "acked"), "abort lost the acknowledged a");
	REQUIRE(kv_store_get(s, true, "b", 1, &g) == 0, "aborted b visible");
	REQUIRE(memcmp(d0, kv_store_digest(s), sizeof(d0)) == 0, "digest not restored");
	REQUIRE(put1(s, "c", 303, "after") == 0 && value_is(s, "c", "after"), "write after abort");
	kv_store_close(s);
	s = open_store(dir);
	REQUIRE(s != NULL && value_is(s, "a", "acked") && value_is(s, "c", "after") &&
		        kv_store_get(s, true, "b", 1, &g) == 0,
	        "reopened store differs");
	kv_store_close(s);
}

/* ---------------------------------------------------- engine level */

struct ack_ctx {
	char wal[600];
	int done;
	int result;
	int in_log;
};

static int find_key(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct ack_ctx *a = ud;
	if (key_len == 8 && memcmp(key, "ack/test", 8) == 0 && r->value_len == 5 &&
	    memcmp(r->value, "value", 5) == 0)
		a->in_log = 1;
	return 0;
}

static void on_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct ack_ctx *a = ud;
	a->done = 1;
	a->result = r;
	/* at the moment of the ack, the log file must already hold the write */
	size_t n;
	uint8_t *b = read_file(a->wal, &n);
	uint64_t gen;
	if (b != NULL && n > KV_WAL_HDR && kv_wal_header_decode(b, n, &gen) == 0)
		kv_wal_parse(b + KV_WAL_HDR, n - KV_WAL_HDR, gen, find_key, a, NULL, NULL);
	free(b);
}

static void test_ack_comes_after_the_batch_is_logged(void)
{
	char dir[512], err[256];
	fresh_path(dir, sizeof(dir), "agent");
	mkdir(dir, 0700);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	REQUIRE(loop != NULL, "ev_loop_new");
	struct kv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = dir;
	cfg.node_name = "n1";
	cfg.sync_port = -1;
	cfg.map_size = 64u << 20;
	struct kv *kv = kv_new(loop, &cfg, err, sizeof(err));
	REQUIRE(kv != NULL, "kv_new: %s", err);
	struct ack_ctx a;
	memset(&a, 0, sizeof(a));
	snprintf(a.wal, sizeof(a.wal), "%s/kv/wal", dir);
	REQUIRE(kv_put(kv, "ack/test", "value", 5, 0, on_done, &a) == 0, "kv_put");
	REQUIRE(!a.done, "acknowledged before the loop ran (before the commit)");
	for (int i = 0; i < 100 && !a.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	kv_free(kv);
	ev_loop_destroy(loop);
	REQUIRE(a.done && a.result == KV_OK, "expected KV_OK, got done=%d result=%d", a.done,
	        a.result);
	REQUIRE(a.in_log, "the acknowledged write was not in the log at the ack");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kv_wal.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_append_then_replay_gives_batches_in_order);
	RUN(test_empty_batch_writes_nothing);
	RUN(test_torn_tail_at_every_offset_ends_replay);
	RUN(test_checksum_mismatch_ends_replay);
	RUN(test_bad_header_starts_a_new_log);
	RUN(test_checkpoint_reset_drops_old_generation);
	RUN(test_crash_image_recovers_from_log);
	RUN(test_replay_is_idempotent);
	RUN(test_open_batch_is_invisible_and_abort_keeps_acked);
	RUN(test_ack_comes_after_the_batch_is_logged);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
