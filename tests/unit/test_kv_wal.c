/*
 * tests/unit/test_kv_wal.c — the KV write-ahead log (kv/wal.h) and the
 * store's use of it: append and replay, a torn tail at every byte offset,
 * checksum mismatch, checkpoint + new generation, replay idempotence, crash
 * images (LMDB without the last batches + the log), rollback, and that the
 * engine's acknowledgement comes after the batch is in the log. Faults: what
 * replay drops is reported (where, how much, why) and logged at open; a
 * write that fails because the file cannot grow (RLIMIT_FSIZE, the
 * unprivileged stand-in for a full disk; tests/integration/
 * test_kv_disk_full.sh uses a real full tmpfs) fails alone, and the next
 * one after the limit is raised succeeds without reopening.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
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
	if (w == NULL ||
	    kv_wal_replay(w, collect, &(struct seen){0}, NULL, NULL, err, sizeof(err)) != 0)
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

static int replay_tail(const char *path, struct seen *s, uint64_t *stamp, struct kv_wal_tail *t)
{
	char err[256];
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	if (w == NULL)
		return -100;
	int n = kv_wal_replay(w, collect, s, stamp, t, err, sizeof(err));
	kv_wal_close(w);
	return n;
}

static int replay_file(const char *path, struct seen *s, uint64_t *stamp)
{
	return replay_tail(path, s, stamp, NULL);
}

/* Log lines at info and above, captured while a test runs. */
struct logcap {
	int n;
	char text[8192];
};

static void logcap_fn(void *ud, const struct log_record *r)
{
	struct logcap *c = ud;
	c->n++;
	size_t used = strlen(c->text);
	snprintf(c->text + used, sizeof(c->text) - used, "%s\n", r->msg);
}

/* Lines of c containing needle. */
static int logcap_count(const struct logcap *c, const char *needle)
{
	int n = 0;
	for (const char *p = c->text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
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
	REQUIRE(kv_wal_replay(w, collect, &(struct seen){0}, NULL, NULL, err, sizeof(err)) == 0,
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
			struct kv_wal_tail t;
			int got = replay_tail(cut, &s, NULL, &t);
			if (got != 1 || s.n != 2) {
				printf("  cut at %" PRIu64
				       " (fill %d): expected 1 batch/2 entries, "
				       "got %d/%d\n",
				       l, fill, got, s.n);
				bad = 1;
				break;
			}
			/* the report: with the whole record header there, a short file
			 * is "truncated" from e1 to the cut, a filled one is a checksum
			 * mismatch over the record's length; a cut inside the header
			 * is at most one truncated record at e1 */
			enum kv_wal_tail_why want =
			        fill == 0 ? KV_WAL_TAIL_SHORT : KV_WAL_TAIL_CHECKSUM;
			uint64_t want_bytes = fill == 0 ? l - e1 : e2 - e1;
			bool whole_hdr = l >= e1 + KV_WAL_REC_HDR;
			if (whole_hdr ? (t.why != want || t.offset != e1 || t.records != 1 ||
			                 t.intact != 0 || t.bytes != want_bytes)
			              : (t.why != KV_WAL_TAIL_NONE &&
			                 (t.offset != e1 || t.records != 1))) {
				printf("  cut at %" PRIu64 " (fill %d): expected %s at %" PRIu64
				       ", 1 record, %" PRIu64 " bytes; got %s at %" PRIu64
				       ", %u records (%u intact), %" PRIu64 " bytes\n",
				       l, fill, kv_wal_tail_why_name(want), e1, want_bytes,
				       kv_wal_tail_why_name(t.why), t.offset, t.records, t.intact,
				       t.bytes);
				bad = 1;
				break;
			}
			/* append after the torn tail, then replay again */
			char err[256];
			struct kv_wal *w = kv_wal_open(cut, err, sizeof(err));
			struct kv_rec d = mkrec(20, "4");
			struct seen s2 = {0};
			if (w == NULL ||
			    kv_wal_replay(w, collect, &s2, NULL, NULL, err, sizeof(err)) != 1 ||
			    kv_wal_add(w, "d", 1, &d) < 0 || kv_wal_commit(w, 3) < 0) {
				printf("  cut at %" PRIu64 ": append after the tail failed\n", l);
				bad = 1;
			}
			kv_wal_close(w);
			struct seen s3 = {0};
			got = replay_file(cut, &s3, NULL);
			if (!bad && (got != 2 || s3.n != 3 || strcmp(s3.keys[2], "d") != 0)) {
				printf("  cut at %" PRIu64
				       " (fill %d): after append expected a b d, "
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
	struct kv_wal_tail t;
	int n = replay_tail(path, &s, NULL, &t);
	REQUIRE(n == 1 && s.n == 2, "expected 1 batch/2 entries, got %d/%d", n, s.n);
	CHECK_STR("checksum mismatch", kv_wal_tail_why_name(t.why));
	CHECK_INT((long long)e1, (long long)t.offset, "offset of the dropped record");
	CHECK_INT(1, t.records, "records dropped");
	CHECK_INT(0, t.intact, "whole records dropped");
	CHECK_INT((long long)(e2 - e1), (long long)t.bytes, "bytes dropped");
	/* a flipped byte in the first record's payload: nothing replays, and
	 * the report says the second record, whole, was lost behind it */
	b[e2 - 1] ^= 0x40;
	b[KV_WAL_HDR + KV_WAL_REC_HDR + 14] ^= 0x01;
	write_file(path, b, len);
	struct seen s2 = {0};
	n = replay_tail(path, &s2, NULL, &t);
	REQUIRE(n == 0 && s2.n == 0, "expected nothing, got %d/%d", n, s2.n);
	CHECK_STR("checksum mismatch", kv_wal_tail_why_name(t.why));
	CHECK_INT(KV_WAL_HDR, (long long)t.offset, "offset of the dropped record");
	CHECK_INT(2, t.records, "records dropped");
	CHECK_INT(1, t.intact, "whole (acknowledged) records dropped behind the bad one");
	CHECK_INT((long long)(e2 - KV_WAL_HDR), (long long)t.bytes, "bytes dropped");
	free(b);
}

/* A log that simply ends (zero fill, or the records of an older
 * generation after a checkpoint) drops nothing and says so. */
static void test_clean_end_reports_nothing(void)
{
	char path[512], err[256];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	struct kv_wal_tail t;
	struct seen s = {0};
	REQUIRE(replay_tail(path, &s, NULL, &t) == 2, "replay");
	CHECK_STR("clean end", kv_wal_tail_why_name(t.why), "zero-filled rest of the file");
	CHECK_INT(0, t.records);
	struct kv_wal *w = kv_wal_open(path, err, sizeof(err));
	REQUIRE(w != NULL && kv_wal_replay(w, collect, &(struct seen){0}, NULL, NULL, err,
	                                   sizeof(err)) == 2,
	        "reopen");
	struct kv_rec z = mkrec(40, "");
	REQUIRE(kv_wal_reset(w) == 0 && kv_wal_add(w, "z", 1, &z) == 0 && kv_wal_commit(w, 1) == 0,
	        "reset and append");
	kv_wal_close(w);
	struct seen s2 = {0};
	REQUIRE(replay_tail(path, &s2, NULL, &t) == 1, "replay after reset");
	CHECK_STR("clean end", kv_wal_tail_why_name(t.why), "older generation after the record");
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
	struct kv_wal_tail t;
	int n = replay_tail(path, &s, NULL, &t);
	REQUIRE(n == 0 && s.n == 0, "expected nothing from a log without header, got %d", n);
	CHECK_STR("no valid header", kv_wal_tail_why_name(t.why));
	CHECK_INT((long long)len, (long long)t.bytes, "the whole file is dropped");
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
	REQUIRE(kv_wal_replay(w, collect, &s, NULL, NULL, err, sizeof(err)) == 2,
	        "replay before reset");
	uint64_t g = kv_wal_gen(w);
	REQUIRE(kv_wal_reset(w) == 0, "reset failed");
	REQUIRE(kv_wal_gen(w) != g && kv_wal_size(w) == 0, "expected a new generation and size 0");
	kv_wal_close(w);
	struct seen s2 = {0};
	int n = replay_file(path, &s2, NULL);
	REQUIRE(n == 0, "expected no batch after reset, got %d", n);
	/* a short record of the new generation over the old ones */
	w = kv_wal_open(path, err, sizeof(err));
	REQUIRE(w != NULL && kv_wal_replay(w, collect, &(struct seen){0}, NULL, NULL, err,
	                                   sizeof(err)) == 0,
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

/* kv_wal_crc32c (the CPU's instruction where there is one) equals a
 * bitwise CRC-32C on every length and alignment, in one call or two. */
static void test_crc32c_matches_a_bitwise_reference(void)
{
	REQUIRE(kv_wal_crc32c(0, "123456789", 9) == 0xe3069283u, "check value: %08x",
	        kv_wal_crc32c(0, "123456789", 9));
	uint8_t buf[300];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; off + len <= sizeof(buf); len += 7) {
			uint32_t ref = ~0u;
			for (size_t i = 0; i < len; i++) {
				ref ^= buf[off + i];
				for (int k = 0; k < 8; k++)
					ref = (ref & 1) ? (ref >> 1) ^ 0x82f63b78u : ref >> 1;
			}
			ref = ~ref;
			uint32_t one = kv_wal_crc32c(0, buf + off, len);
			uint32_t two = kv_wal_crc32c(kv_wal_crc32c(0, buf + off, len / 3),
			                             buf + off + len / 3, len - len / 3);
			REQUIRE(one == ref && two == ref, "off %zu len %zu: %08x %08x, want %08x",
			        off, len, one, two, ref);
		}
}

/* kv_store_set_log_sync(false) (a CP server's replica, agent/server.c
 * cp_on): commits skip the fdatasync, so a crash may keep any prefix of the
 * log's bytes. Whatever prefix it keeps, the store recovers a prefix of the
 * batches: never a later batch without an earlier one. */
static void test_unsynced_log_recovers_a_prefix_of_batches(void)
{
	static const char *keys[] = {"b1", "b2", "b3", "b4"};
	char dir[512], crash[512], a[600], b[600];
	fresh_path(dir, sizeof(dir), "nosync");
	fresh_path(crash, sizeof(crash), "nosync-crash");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	kv_store_set_log_sync(s, false);
	for (int i = 0; i < 4; i++)
		REQUIRE(put1(s, keys[i], 300 + (uint64_t)i, "v") == 0, "put %s", keys[i]);
	size_t end = 4096 + (size_t)kv_store_log_bytes(s), wn, mn;
	snprintf(a, sizeof(a), "%s/wal", dir);
	uint8_t *wal = read_file(a, &wn);
	snprintf(a, sizeof(a), "%s/data.mdb", dir);
	uint8_t *mdb = read_file(a, &mn);
	kv_store_close(s);
	REQUIRE(wal != NULL && mdb != NULL && wn >= end, "read the files");
	mkdir(crash, 0700);
	int last = 0;
	for (size_t cut = 4096; cut <= end && wal != NULL && mdb != NULL; cut++) {
		snprintf(a, sizeof(a), "%s/data.mdb", crash);
		snprintf(b, sizeof(b), "%s/wal", crash);
		REQUIRE(write_file(a, mdb, mn) == 0 && write_file(b, wal, cut) == 0, "write image");
		struct kv_store *c = open_store(crash);
		REQUIRE(c != NULL, "open the image cut at %zu", cut);
		if (c == NULL)
			break;
		int have = 0, gap = 0;
		for (int i = 0; i < 4; i++) {
			if (!value_is(c, keys[i], "v"))
				gap = 1;
			else
				have += gap ? 100 : 1; /* a later batch without an earlier one */
		}
		kv_store_close(c);
		REQUIRE(have <= 4 && have >= last, "cut at %zu: %d batches, %d before", cut, have,
		        last);
		last = have;
	}
	REQUIRE(last == 4, "the whole log: expected 4 batches, got %d", last);
	free(wal);
	free(mdb);
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
		REQUIRE(l2 == live && t2 == tombs, "expected %" PRIu64 " live, got %" PRIu64, live,
		        l2);
		REQUIRE(value_is(c, "x", "new") && value_is(c, "y", "why"),
		        "values changed by replay");
		REQUIRE(memcmp(d0, kv_store_digest(c), sizeof(d0)) == 0,
		        "digest changed by replay");
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
	REQUIRE(seen == 1 && staged == 2, "expected scans of 1 committed / 2 staged, got %d / %d",
	        seen, staged);
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

/* Opening a store whose log has a corrupted record logs a warning with
 * the offset, count, bytes and reason, and counts it in the stats; the
 * batch before it is recovered. */
static void test_open_reports_dropped_tail(void)
{
	char dir[512], wal[600];
	fresh_path(dir, sizeof(dir), "store");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	REQUIRE(put1(s, "t1", 500, "kept") == 0 && put1(s, "t2", 501, "lost") == 0, "puts");
	uint64_t end = KV_WAL_HDR + kv_store_log_bytes(s);
	snprintf(wal, sizeof(wal), "%s/wal", dir);
	size_t len;
	uint8_t *img = read_file(wal, &len); /* the log before close checkpoints it */
	REQUIRE(img != NULL && len >= end, "read the log");
	char a[600];
	snprintf(a, sizeof(a), "%s/data.mdb", dir);
	uint8_t *mdb;
	size_t mlen;
	mdb = read_file(a, &mlen); /* LMDB before the puts were checkpointed */
	REQUIRE(mdb != NULL, "read data.mdb");
	kv_store_close(s);
	img[end - 1] ^= 0x10; /* the last byte of t2's batch */
	REQUIRE(write_file(wal, img, len) == 0 && write_file(a, mdb, mlen) == 0, "write image");
	free(img);
	free(mdb);
	struct logcap cap = {0};
	log_subscribe(logcap_fn, &cap, LOG_INFO);
	s = open_store(dir);
	log_unsubscribe(logcap_fn, &cap);
	REQUIRE(s != NULL, "reopen");
	CHECK(value_is(s, "t1", "kept"), "the batch before the bad one was lost");
	struct kv_rec g;
	CHECK_INT(0, kv_store_get(s, true, "t2", 2, &g), "the bad batch was replayed");
	const struct kv_store_stats *st = kv_store_stats(s);
	CHECK_INT(1, (long long)st->wal_dropped_records);
	CHECK(st->wal_dropped_bytes > 0, "no dropped bytes counted");
	CHECK_HAS(cap.text, "dropped 1 record");
	CHECK_HAS(cap.text, "checksum mismatch");
	char off[64];
	snprintf(off, sizeof(off), "at offset %" PRIu64, end - st->wal_dropped_bytes);
	CHECK_HAS(cap.text, off);
	kv_store_close(s);
}

/* RLIMIT_FSIZE makes a write that would grow a file fail (EFBIG; SIGXFSZ
 * ignored), which is what a full disk does to the log's growth. */
static void limit_file_size(rlim_t bytes)
{
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = bytes;
	setrlimit(RLIMIT_FSIZE, &rl);
}

/* Writes fail while the log cannot grow, each alone and with nothing of it
 * kept; once it can, the next write succeeds without a reopen. One warning
 * for the whole streak, one line when it ends. Without the fix the first
 * failure broke the log for good (every later commit: EIO). */
static void test_writes_recover_after_the_disk_fills(void)
{
	char dir[512], err[256];
	fresh_path(dir, sizeof(dir), "store");
	struct kv_store *s = open_store(dir);
	REQUIRE(s != NULL, "open");
	REQUIRE(put1(s, "before", 600, "acked") == 0, "put before");
	/* fill the log's first MiB so that the next batch must grow the file */
	char big[60000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	uint64_t hlc = 601;
	while (kv_store_log_bytes(s) + sizeof(big) < KV_WAL_GROW - 4096)
		REQUIRE(put1(s, "filler", hlc++, big) == 0, "filler");
	signal(SIGXFSZ, SIG_IGN);
	struct logcap cap = {0};
	log_subscribe(logcap_fn, &cap, LOG_INFO);
	/* exactly the log's size: not one more byte (a limit above it lets a
	 * failed grow leave zeros that the next batch may use, as a disk with a
	 * few blocks left would) */
	limit_file_size(KV_WAL_GROW);
	int failed = 0;
	for (int i = 0; i < 20; i++)
		failed += put1(s, "during", hlc++, big) < 0;
	struct kv_rec g;
	int during = kv_store_get(s, true, "during", 6, &g);
	bool failing = kv_store_stats(s)->failing;
	limit_file_size(RLIM_INFINITY);
	int after = put1(s, "after", hlc++, "written");
	log_unsubscribe(logcap_fn, &cap);
	CHECK_INT(20, failed, "writes that failed while the file could not grow");
	CHECK_INT(0, during, "a failed write is visible");
	CHECK(failing, "stats do not say writes are failing");
	CHECK_INT(0, after, "the first write after space returned failed");
	CHECK(!kv_store_stats(s)->failing, "stats still say failing");
	CHECK_INT(20, (long long)kv_store_stats(s)->commit_failures);
	CHECK(value_is(s, "before", "acked") && value_is(s, "after", "written"),
	      "acknowledged writes lost");
	CHECK_INT(1, logcap_count(&cap, "writing failed"), "first failure lines\n%s", cap.text);
	CHECK_INT(0, logcap_count(&cap, "still failing"), "rate-limited lines within 10 s");
	CHECK_INT(1, logcap_count(&cap, "succeeds again after 20 failures"), "recovery line\n%s",
	          cap.text);
	CHECK(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	kv_store_close(s);
	s = open_store(dir);
	REQUIRE(s != NULL, "reopen");
	CHECK(value_is(s, "before", "acked") && value_is(s, "after", "written"),
	      "acknowledged writes lost across a restart");
	CHECK_INT(0, kv_store_get(s, true, "during", 6, &g), "a failed write came back at restart");
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

struct put_ctx {
	int done, result;
};

static void put_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct put_ctx *p = ud;
	p->done = 1;
	p->result = r;
}

static int engine_put(struct ev_loop *loop, struct kv *kv, const char *key, const char *val)
{
	struct put_ctx p = {0, 0};
	if (kv_put(kv, key, val, strlen(val), 0, put_done, &p) < 0)
		return -100;
	for (int i = 0; i < 100 && !p.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	return p.done ? p.result : -101;
}

/* What the agent's HTTP API measured (500 for every write after space
 * returned, until a restart): through the engine, the first write after
 * the limit is raised is acknowledged. */
static void test_engine_writes_recover_after_the_disk_fills(void)
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
	static char big[200000];
	memset(big, 'y', sizeof(big) - 1);
	signal(SIGXFSZ, SIG_IGN);
	/* the log holds batches until a checkpoint (about a second): a few big
	 * writes in a row must grow it past its first MiB */
	limit_file_size(KV_WAL_GROW);
	int r = KV_OK;
	char key[32];
	for (int i = 0; i < 40 && r == KV_OK; i++) {
		snprintf(key, sizeof(key), "big/%d", i);
		r = engine_put(loop, kv, key, big);
	}
	int failed = r;
	int again = engine_put(loop, kv, "small/while-full", big);
	limit_file_size(RLIM_INFINITY);
	int after = engine_put(loop, kv, "small/after", "ok");
	int get = kv_get(kv, "small/after", 11, NULL, NULL);
	kv_free(kv);
	ev_loop_destroy(loop);
	CHECK_INT(KV_ERROR, failed, "a write while the log could not grow");
	CHECK_INT(KV_ERROR, again, "the next write while the log could not grow");
	CHECK_INT(KV_OK, after, "the first write after space returned");
	CHECK_INT(1, get, "the acknowledged write is readable");
}

/* The file grows in steps doubling from 64 KiB to 1 MiB, then 1 MiB at a
 * time: a log of two small batches takes 64 KiB of disk, not a MiB of
 * zeros (1,000 agents starting at once wrote and synced 1 GB of them). */
static void test_log_grows_in_doubling_steps(void)
{
	char path[512];
	fresh_path(path, sizeof(path), "wal");
	uint64_t e1, e2;
	REQUIRE(make_two_batches(path, &e1, &e2) == 0, "could not write the log");
	struct stat st;
	REQUIRE(stat(path, &st) == 0, "stat");
	CHECK_INT(64 * 1024, (long long)st.st_size, "file size after two small batches");
	CHECK_INT(64 * 1024, (long long)kv_wal_grow_target(20, KV_WAL_HDR + 100), "first step");
	CHECK_INT(128 * 1024, (long long)kv_wal_grow_target(64 * 1024, 64 * 1024 + 1), "second");
	CHECK_INT(1024 * 1024, (long long)kv_wal_grow_target(512 * 1024, 600 * 1024), "to 1 MiB");
	CHECK_INT(2 * 1024 * 1024, (long long)kv_wal_grow_target(1024 * 1024, 1024 * 1024 + 1),
	          "then 1 MiB at a time");
	CHECK_INT(3 * 1024 * 1024, (long long)kv_wal_grow_target(2 * 1024 * 1024, 3 * 1024 * 1024),
	          "an exact end");
	CHECK_INT(4 * 1024 * 1024, (long long)kv_wal_grow_target(64 * 1024, 3 * 1024 * 1024 + 5),
	          "a big batch: several steps at once");
	CHECK_INT(70000, (long long)kv_wal_grow_target(70000, 70000), "no growth when it fits");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kv_wal.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_crc32c_matches_a_bitwise_reference);
	RUN(test_append_then_replay_gives_batches_in_order);
	RUN(test_log_grows_in_doubling_steps);
	RUN(test_empty_batch_writes_nothing);
	RUN(test_torn_tail_at_every_offset_ends_replay);
	RUN(test_checksum_mismatch_ends_replay);
	RUN(test_clean_end_reports_nothing);
	RUN(test_bad_header_starts_a_new_log);
	RUN(test_checkpoint_reset_drops_old_generation);
	RUN(test_crash_image_recovers_from_log);
	RUN(test_replay_is_idempotent);
	RUN(test_unsynced_log_recovers_a_prefix_of_batches);
	RUN(test_open_batch_is_invisible_and_abort_keeps_acked);
	RUN(test_ack_comes_after_the_batch_is_logged);
	RUN(test_open_reports_dropped_tail);
	RUN(test_writes_recover_after_the_disk_fills);
	RUN(test_engine_writes_recover_after_the_disk_fills);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
