/*
 * tests/unit/test_kv_store.c — HLC and its 53-bit index form, record codec and merge order, LMDB
 * persistence, tombstone purge, the bucketed digest and the sync exchange
 * (two stores converge and only differing buckets travel). Stored-record
 * checksums: a byte flipped inside data.mdb is caught; a bad or
 * undecodable record is absent for reads, scans, merges and writes (never
 * poisons its key); records of the older format (no checksum) read as
 * before and gain one when written; `rumor kv verify` reports bad keys.
 * Records a Raft entry wrote carry its index (version 3).
 */
#define _GNU_SOURCE
#include <ev.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/cli/cli_kv.h"
#include "lib/cursor.h"
#include "lib/log.h"
#include "kv/hlc.h"
#include "kv/kv.h"
#include "kv/repl.h"
#include "kv/store.h"
#include "tests/unit/check.h"

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
	return remove(p);
}

static struct kv_store *open_store(const char *name)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	struct kv_store *s = kv_store_open(dir, 64u << 20, err, sizeof(err));
	if (s == NULL)
		printf("  open %s: %s\n", dir, err);
	return s;
}

static struct kv_rec mkrec(uint64_t hlc, const char *node, const char *val, bool tomb)
{
	struct kv_rec r;
	memset(&r, 0, sizeof(r));
	r.hlc = hlc;
	r.create = hlc;
	r.node = node;
	r.node_len = (uint8_t)strlen(node);
	r.tomb = tomb;
	r.value = (const uint8_t *)val;
	r.value_len = val ? (uint32_t)strlen(val) : 0;
	return r;
}

static int put(struct kv_store *s, const char *k, struct kv_rec r)
{
	if (kv_store_begin(s) < 0 || kv_store_put(s, k, strlen(k), &r) < 0)
		return -1;
	char err[128];
	return kv_store_commit(s, err, sizeof(err));
}

/* merge as the engine does: larger (hlc, node) wins */
static int merge(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_store *s = ctx;
	struct kv_rec old;
	if (kv_store_begin(s) < 0)
		return -1;
	int got = kv_store_get(s, false, key, key_len, &old);
	if (got == 1 && kv_rec_cmp(r, &old) <= 0)
		return 0;
	return kv_store_put(s, key, key_len, r) == 0 ? 1 : -1;
}

static void test_hlc_is_monotonic_when_wall_clock_steps_back(void)
{
	struct kv_hlc c = {0};
	uint64_t a = kv_hlc_next(&c, 1000);
	uint64_t b = kv_hlc_next(&c, 1000);
	uint64_t d = kv_hlc_next(&c, 500);
	REQUIRE(b == a + 1, "expected counter bump %" PRIu64 ", got %" PRIu64, a + 1, b);
	REQUIRE(d > b, "expected %" PRIu64 " > %" PRIu64, d, b);
	REQUIRE(KV_HLC_MS(a) == 1000, "expected ms 1000, got %" PRId64, KV_HLC_MS(a));
	uint64_t e = kv_hlc_next(&c, 2000);
	REQUIRE(e == kv_hlc_from_ms(2000), "expected a fresh ms with counter 0");
}

static void test_hlc_observe_moves_past_remote(void)
{
	struct kv_hlc c = {0};
	kv_hlc_observe(&c, kv_hlc_from_ms(5000) + 7);
	uint64_t n = kv_hlc_next(&c, 1000);
	REQUIRE(n == kv_hlc_from_ms(5000) + 8, "expected remote+1, got %" PRIu64, n);
}

/* 2026-12-04T00:00:00Z, well after the index epoch. */
#define NOW_2026_MS 1796342400000LL

static void test_hlc_counter_stops_at_4095_and_moves_to_next_ms(void)
{
	struct kv_hlc c = {0};
	uint64_t prev = kv_hlc_next(&c, NOW_2026_MS);
	for (int i = 1; i < 5000; i++) {
		uint64_t v = kv_hlc_next(&c, NOW_2026_MS);
		REQUIRE(v > prev, "version %d: expected > %" PRIu64 ", got %" PRIu64, i, prev, v);
		REQUIRE((v & 0xffff) <= KV_HLC_COUNTER_MAX, "version %d: counter %" PRIu64, i,
		        v & 0xffff);
		REQUIRE(kv_hlc_index(v) == kv_hlc_index(prev) + 1,
		        "version %d: expected index %" PRIu64 ", got %" PRIu64, i,
		        kv_hlc_index(prev) + 1, kv_hlc_index(v));
		prev = v;
	}
	CHECK_INT((long long)(NOW_2026_MS + 1), (long long)KV_HLC_MS(prev));
	CHECK_INT(5000LL - 4097, (long long)(prev & 0xffff));
	/* An observed version of an older release, counter past 4095. */
	struct kv_hlc o = {0};
	kv_hlc_observe(&o, kv_hlc_from_ms(NOW_2026_MS) + 60000);
	uint64_t n = kv_hlc_next(&o, NOW_2026_MS);
	CHECK_INT((long long)kv_hlc_from_ms(NOW_2026_MS + 1), (long long)n);
}

static void test_hlc_index_fits_a_double_and_keeps_order(void)
{
	uint64_t v = kv_hlc_from_ms(NOW_2026_MS) + 17;
	uint64_t want = ((uint64_t)(NOW_2026_MS - KV_INDEX_EPOCH_MS) << 12) | 17;
	CHECK_INT((long long)want, (long long)kv_hlc_index(v));
	CHECK_INT((long long)v, (long long)kv_hlc_from_index(kv_hlc_index(v)));
	double d = (double)kv_hlc_index(v);
	CHECK_INT((long long)kv_hlc_index(v), (long long)d);
	/* The last millisecond the 41 bits hold, and one past it. */
	int64_t last_ms = KV_INDEX_EPOCH_MS + (int64_t)(KV_INDEX_MAX >> 12);
	CHECK_INT((long long)KV_INDEX_MAX, (long long)kv_hlc_index(kv_hlc_from_ms(last_ms) + 4095));
	CHECK_INT((long long)KV_INDEX_MAX, (long long)kv_hlc_index(kv_hlc_from_ms(last_ms + 1)));
	/* Before the epoch: 1, never 0. */
	CHECK_INT(1LL, (long long)kv_hlc_index(kv_hlc_from_ms(1000) + 3));
	CHECK_INT(1LL, (long long)kv_hlc_index(0));
	/* An older release's counter past 4095 shows as 4095, still below the
	 * next millisecond. */
	uint64_t big = kv_hlc_from_ms(NOW_2026_MS) + 5000;
	CHECK_INT((long long)(want - 17 + 4095), (long long)kv_hlc_index(big));
	CHECK(kv_hlc_index(big) < kv_hlc_index(kv_hlc_from_ms(NOW_2026_MS + 1)), "order kept");
	/* Monotonic over a sweep of versions around a millisecond boundary. */
	uint64_t prev = 0;
	for (uint64_t x = kv_hlc_from_ms(NOW_2026_MS) - 70000;
	     x < kv_hlc_from_ms(NOW_2026_MS) + 70000; x += 7) {
		uint64_t i = kv_hlc_index(x);
		REQUIRE(i >= prev && i <= KV_INDEX_MAX,
		        "index of %" PRIu64 ": %" PRIu64 " after %" PRIu64, x, i, prev);
		prev = i;
	}
}

static void test_hlc_index_in_reads_an_old_release_index(void)
{
	uint64_t v = kv_hlc_from_ms(NOW_2026_MS) + 9;
	CHECK_INT((long long)kv_hlc_index(v), (long long)kv_hlc_index_in(v));
	CHECK_INT(12345LL, (long long)kv_hlc_index_in(12345));
	CHECK_INT(0LL, (long long)kv_hlc_index_in(0));
	CHECK_INT((long long)KV_INDEX_MAX, (long long)kv_hlc_index_in(KV_INDEX_MAX));
}

static void test_record_roundtrip_and_order(void)
{
	struct kv_rec r = mkrec(77, "node-a", "hello", false), d;
	r.flags = UINT64_MAX;
	uint8_t buf[128];
	uint8_t *end = kv_rec_encode(&r, buf);
	REQUIRE((size_t)(end - buf) == kv_rec_size(&r), "size mismatch");
	const uint8_t *p = buf;
	char err[128];
	REQUIRE(kv_rec_decode(&p, end, &d, err, sizeof(err)) == 0, "decode: %s", err);
	REQUIRE(d.hlc == 77 && d.flags == UINT64_MAX && d.value_len == 5 &&
	                memcmp(d.value, "hello", 5) == 0 && d.node_len == 6,
	        "fields differ after roundtrip");
	for (size_t cut = 0; cut < (size_t)(end - buf); cut++) {
		p = buf;
		REQUIRE(kv_rec_decode(&p, buf + cut, &d, err, sizeof(err)) < 0,
		        "truncated at %zu accepted", cut);
	}
	struct kv_rec a = mkrec(10, "b", "x", false), b = mkrec(10, "a", "y", false),
	              c = mkrec(11, "a", "z", false);
	REQUIRE(kv_rec_cmp(&a, &b) > 0, "same hlc: larger node must win");
	REQUIRE(kv_rec_cmp(&c, &a) > 0, "larger hlc must win");
	REQUIRE(kv_rec_cmp(&a, &a) == 0, "equal versions compare 0");
}

/*
 * Raft indexes in the record (CP mode): a record no Raft entry wrote is
 * encoded byte for byte as before (version 1, or 2 when locked), whatever
 * raft_create holds; one with a Raft index is version 3 (the lock fields
 * always present), round-trips field for field and to the same bytes, and
 * is refused when cut at any byte or when its indexes are 0 or out of
 * order. kv_rec_index shows the Raft index when there is one, else the
 * version's index form.
 */
static void test_record_raft_indexes(void)
{
	char err[128];
	uint64_t v = kv_hlc_from_ms(1767225600000LL) + 3; /* 2026-01-01 */
	struct kv_rec r = mkrec(v, "leader", "val", false), d;
	r.create = v - 1;
	uint8_t plain[128], buf[256];
	uint8_t *pend = kv_rec_encode(&r, plain);
	size_t plen = (size_t)(pend - plain);
	CHECK_INT(1, plain[0], "no Raft index: version 1");
	CHECK_INT(2 + 24 + 1 + 6 + 4 + 3, (long long)plen, "version 1 size");
	CHECK_INT((long long)kv_hlc_index(v), (long long)kv_rec_index(&r), "AP index");
	CHECK_INT((long long)kv_hlc_index(v - 1), (long long)kv_rec_create_index(&r),
	          "AP create index");
	r.raft_create = 5; /* ignored without raft_index */
	CHECK_INT((long long)plen, (long long)kv_rec_size(&r), "raft_create alone adds nothing");
	CHECK_INT((long long)plen, (long long)(kv_rec_encode(&r, buf) - buf), "same size");
	CHECK(memcmp(buf, plain, plen) == 0, "same bytes as without Raft fields");

	for (int locked = 0; locked < 2; locked++) {
		r.raft_index = 12;
		r.raft_create = 7;
		r.lock_index = locked ? 4 : 0;
		r.session = locked ? "sess" : NULL;
		r.session_len = locked ? 4 : 0;
		uint8_t *end = kv_rec_encode(&r, buf);
		size_t n = (size_t)(end - buf);
		CHECK_INT(3, buf[0], "with a Raft index: version 3 (locked %d)", locked);
		CHECK_INT((long long)(plen + 9 + r.session_len + 16), (long long)n,
		          "version 3 size (locked %d)", locked);
		CHECK_INT((long long)kv_rec_size(&r), (long long)n, "kv_rec_size (locked %d)",
		          locked);
		const uint8_t *p = buf;
		REQUIRE(kv_rec_decode(&p, end, &d, err, sizeof(err)) == 0, "decode: %s", err);
		CHECK(p == end, "decoded to the end");
		CHECK_INT(12, (long long)d.raft_index, "raft_index");
		CHECK_INT(7, (long long)d.raft_create, "raft_create");
		CHECK_INT((long long)v, (long long)d.hlc, "version kept");
		CHECK_INT((long long)(v - 1), (long long)d.create, "creating version kept");
		CHECK_INT(locked ? 4 : 0, (long long)d.lock_index, "lock index");
		CHECK(d.session_len == r.session_len &&
		              (!locked || memcmp(d.session, "sess", 4) == 0),
		      "session");
		CHECK(d.value_len == 3 && memcmp(d.value, "val", 3) == 0, "value");
		CHECK_INT(12, (long long)kv_rec_index(&d), "the index is the Raft index");
		CHECK_INT(7, (long long)kv_rec_create_index(&d), "the create index is Raft's");
		CHECK_BOOL(true, kv_rec_raft(&d));
		uint8_t again[256];
		CHECK_INT((long long)n, (long long)(kv_rec_encode(&d, again) - again), "re-encode");
		CHECK(memcmp(again, buf, n) == 0, "re-encodes to the same bytes");
		for (size_t cut = 0; cut < n; cut++) {
			p = buf;
			CHECK_INT(-1, kv_rec_decode(&p, buf + cut, &d, err, sizeof(err)),
			          "cut at %zu of %zu accepted (locked %d)", cut, n, locked);
		}
		/* the two Raft fields are the last 16 bytes */
		struct {
			uint64_t idx, create;
			bool ok;
		} cases[] = {{12, 7, true},  {12, 12, true},  {1, 1, true},  {0, 7, false},
		             {12, 0, false}, {12, 13, false}, {0, 0, false}, {UINT64_MAX, 1, true}};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			be64_put(buf + n - 16, cases[i].idx);
			be64_put(buf + n - 8, cases[i].create);
			p = buf;
			CHECK_INT(cases[i].ok ? 0 : -1,
			          kv_rec_decode(&p, end, &d, err, sizeof(err)),
			          "index %llu create %llu (locked %d)",
			          (unsigned long long)cases[i].idx,
			          (unsigned long long)cases[i].create, locked);
		}
	}
	/* a version 3 header on a version 1 body: the Raft fields are missing */
	memcpy(buf, plain, plen);
	buf[0] = 3;
	const uint8_t *p = buf;
	CHECK_INT(-1, kv_rec_decode(&p, buf + plen, &d, err, sizeof(err)), "v3 without its fields");
	buf[0] = 4;
	p = buf;
	CHECK_INT(-1, kv_rec_decode(&p, buf + plen, &d, err, sizeof(err)), "version 4 refused");
	CHECK_HAS(err, "unknown version");
}

static void test_store_persists_across_reopen(void)
{
	struct kv_store *s = open_store("persist");
	REQUIRE(s != NULL, "open");
	REQUIRE(put(s, "a/1", mkrec(100, "n1", "one", false)) == 0, "put");
	REQUIRE(put(s, "a/2", mkrec(101, "n1", "two", false)) == 0, "put");
	uint64_t d0 = 0;
	for (int i = 0; i < KV_BUCKETS; i++)
		d0 += kv_store_digest(s)[i] * (uint64_t)(i + 1);
	kv_store_close(s);
	s = open_store("persist");
	REQUIRE(s != NULL, "reopen");
	struct kv_rec r;
	REQUIRE(kv_store_get(s, true, "a/2", 3, &r) == 1, "a/2 missing after reopen");
	REQUIRE(r.value_len == 3 && memcmp(r.value, "two", 3) == 0, "wrong value after reopen");
	uint64_t d1 = 0;
	for (int i = 0; i < KV_BUCKETS; i++)
		d1 += kv_store_digest(s)[i] * (uint64_t)(i + 1);
	REQUIRE(d0 == d1, "digest rebuilt at open differs: %" PRIu64 " vs %" PRIu64, d0, d1);
	uint64_t live, tombs;
	kv_store_counts(s, &live, &tombs);
	REQUIRE(live == 2 && tombs == 0, "expected 2 live 0 tombs, got %" PRIu64 " %" PRIu64, live,
	        tombs);
	kv_store_close(s);
}

/* kv_store_trim drops the process's mapping of data.mdb; reads fault the
 * pages back, also inside an open batch, and writes go on. */
static void test_trim_drops_the_map_and_reads_still_work(void)
{
	struct kv_store *s = open_store("trim");
	REQUIRE(s != NULL, "open");
	char key[32], err[128];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "t/%03d", i);
		REQUIRE(put(s, key, mkrec(100 + (uint64_t)i, "n1", "value", false)) == 0, "put");
	}
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	struct kv_rec r;
	REQUIRE(kv_store_get(s, true, "t/150", 5, &r) == 1, "t/150 missing");
	REQUIRE(kv_store_trim(s) > 0, "nothing advised: the map was not found");
	REQUIRE(kv_store_get(s, true, "t/150", 5, &r) == 1 && r.hlc == 250, "t/150 after trim");
	REQUIRE(kv_store_begin(s) == 0, "begin");
	REQUIRE(kv_store_put(s, "t/000", 5,
	                     &(struct kv_rec){
	                             .hlc = 999, .create = 999, .node = "n2", .node_len = 2}) == 0,
	        "put in batch");
	REQUIRE(kv_store_trim(s) > 0, "trim inside a batch");
	REQUIRE(kv_store_get(s, true, "t/199", 5, &r) == 1 && r.hlc == 299, "t/199 in batch");
	REQUIRE(kv_store_commit(s, err, sizeof(err)) == 0, "commit: %s", err);
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	REQUIRE(kv_store_get(s, true, "t/000", 5, &r) == 1 && r.hlc == 999, "t/000 rewritten");
	kv_store_close(s);
}

static void test_abort_restores_digest_and_data(void)
{
	struct kv_store *s = open_store("abort");
	REQUIRE(s != NULL, "open");
	REQUIRE(put(s, "k", mkrec(5, "n", "v", false)) == 0, "put");
	uint64_t before[KV_BUCKETS];
	memcpy(before, kv_store_digest(s), sizeof(before));
	struct kv_rec r = mkrec(6, "n", "w", false);
	kv_store_begin(s);
	kv_store_put(s, "k", 1, &r);
	kv_store_put(s, "j", 1, &r);
	kv_store_abort(s);
	REQUIRE(memcmp(before, kv_store_digest(s), sizeof(before)) == 0, "digest not restored");
	struct kv_rec g;
	REQUIRE(kv_store_get(s, true, "j", 1, &g) == 0, "aborted key visible");
	REQUIRE(kv_store_get(s, true, "k", 1, &g) == 1 && g.hlc == 5, "aborted write visible");
	kv_store_close(s);
}

/* A replacing batch (a Raft snapshot installed): the wipe and its records
 * reach LMDB by the commit's checkpoint, nothing goes to the log, and
 * they survive a reopen; an aborted one leaves the store as it was. */
static void test_unlogged_batch_replaces_the_store_by_a_checkpoint(void)
{
	char err[128];
	struct kv_store *s = open_store("unlogged");
	REQUIRE(s != NULL, "open");
	REQUIRE(put(s, "old/1", mkrec(10, "n1", "x", false)) == 0, "put");
	REQUIRE(put(s, "old/2", mkrec(11, "n1", "y", false)) == 0, "put");
	REQUIRE(kv_store_log_bytes(s) > 0, "the plain puts are logged");

	REQUIRE(kv_store_begin_unlogged(s) == 0, "begin unlogged");
	REQUIRE(kv_store_wipe(s) == 0, "wipe");
	struct kv_rec r = mkrec(20, "n2", "new", false);
	REQUIRE(kv_store_put(s, "new/1", 5, &r) == 0, "put in the batch");
	kv_store_abort(s);
	struct kv_rec g;
	REQUIRE(kv_store_get(s, true, "old/1", 5, &g) == 1 && g.hlc == 10, "abort: old/1 kept");
	REQUIRE(kv_store_get(s, true, "new/1", 5, &g) == 0, "abort: new/1 absent");

	REQUIRE(kv_store_begin_unlogged(s) == 0, "begin unlogged");
	REQUIRE(kv_store_wipe(s) == 0, "wipe");
	REQUIRE(kv_store_put(s, "new/1", 5, &r) == 0, "put in the batch");
	REQUIRE(kv_store_commit(s, err, sizeof(err)) == 0, "commit: %s", err);
	CHECK(!kv_store_dirty(s), "the commit was a checkpoint");
	CHECK(kv_store_log_bytes(s) == 0, "nothing in the log (%llu bytes)",
	      (unsigned long long)kv_store_log_bytes(s));
	REQUIRE(put(s, "after", mkrec(30, "n2", "z", false)) == 0, "a logged batch after it");
	CHECK(kv_store_log_bytes(s) > 0, "which is logged again");
	kv_store_close(s);
	s = open_store("unlogged");
	REQUIRE(s != NULL, "reopen");
	CHECK(kv_store_get(s, true, "old/1", 5, &g) == 0, "the wipe survived the reopen");
	CHECK(kv_store_get(s, true, "new/1", 5, &g) == 1 && g.hlc == 20, "new/1 survived");
	CHECK(kv_store_get(s, true, "after", 5, &g) == 1, "the later batch too");
	uint64_t live, tombs;
	kv_store_counts(s, &live, &tombs);
	CHECK(live == 2 && tombs == 0, "2 live keys, got %llu", (unsigned long long)live);
	kv_store_close(s);
}

/* A reader sees LMDB's last checkpoint, not later batches, and keeps
 * seeing it while the store goes on writing and checkpointing. */
static int count_cb(void *ud, const char *k, size_t kl, const struct kv_rec *r);

static void test_reader_sees_the_last_checkpoint(void)
{
	char err[128];
	struct kv_store *s = open_store("reader");
	REQUIRE(s != NULL, "open");
	REQUIRE(put(s, "a", mkrec(1, "n", "1", false)) == 0, "put");
	REQUIRE(put(s, "b", mkrec(2, "n", "2", false)) == 0, "put");
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	REQUIRE(put(s, "c", mkrec(3, "n", "3", false)) == 0, "put after the checkpoint");
	struct kv_store_reader *rd = kv_store_reader_open(s, err, sizeof(err));
	REQUIRE(rd != NULL, "reader: %s", err);
	REQUIRE(put(s, "d", mkrec(4, "n", "4", false)) == 0, "put with the reader open");
	REQUIRE(kv_store_checkpoint(s, err, sizeof(err)) == 0, "checkpoint: %s", err);
	int n = 0;
	CHECK(kv_store_reader_scan(rd, count_cb, &n) == 2 && n == 2,
	      "the reader sees a and b only (%d)", n);
	CHECK(kv_store_reader_bad(rd) == 0, "no bad records");
	kv_store_reader_close(s, rd);
	n = 0;
	CHECK(kv_store_scan(s, true, "", 0, count_cb, &n) == 4, "the store has all four");
	kv_store_close(s);
}

static void test_purge_drops_only_old_tombstones(void)
{
	struct kv_store *s = open_store("purge");
	REQUIRE(s != NULL, "open");
	put(s, "old", mkrec(kv_hlc_from_ms(1000), "n", NULL, true));
	put(s, "new", mkrec(kv_hlc_from_ms(900000), "n", NULL, true));
	put(s, "live", mkrec(kv_hlc_from_ms(1000), "n", "v", false));
	kv_store_begin(s);
	int n = kv_store_purge(s, 500000);
	char err[128];
	kv_store_commit(s, err, sizeof(err));
	REQUIRE(n == 1, "expected 1 purged, got %d", n);
	struct kv_rec r;
	REQUIRE(kv_store_get(s, true, "old", 3, &r) == 0, "old tombstone kept");
	REQUIRE(kv_store_get(s, true, "new", 3, &r) == 1, "recent tombstone purged");
	REQUIRE(kv_store_get(s, true, "live", 4, &r) == 1, "live key purged");
	kv_store_close(s);
}

static int count_cb(void *ud, const char *k, size_t kl, const struct kv_rec *r)
{
	(*(int *)ud)++;
	return 0;
}

/* Run one initiator/responder exchange in memory; returns bytes moved. */
static long exchange(struct kv_store *a, struct kv_store *b)
{
	struct kv_sync ia, rb;
	struct kv_buf a2b = {0}, b2a = {0};
	char err[256];
	long bytes = 0;
	kv_sync_start(&ia, KV_SYNC_INITIATOR, a, merge, a, NULL, 0, &a2b);
	kv_sync_start(&rb, KV_SYNC_RESPONDER, b, merge, b, NULL, 0, &b2a);
	int done_a = 0, done_b = 0;
	for (int round = 0; round < 4 && !(done_a && done_b); round++) {
		/* deliver a2b to b */
		size_t off = 0;
		bytes += (long)a2b.len;
		while (off < a2b.len) {
			uint8_t t;
			const uint8_t *pl;
			size_t pn;
			long n = kv_frame_next(a2b.p + off, a2b.len - off, &t, &pl, &pn, err,
			                       sizeof(err));
			if (n <= 0)
				return -1;
			off += (size_t)n;
			int rc = kv_sync_feed(&rb, t, pl, pn, &b2a, err, sizeof(err));
			if (rc < 0) {
				printf("  responder: %s\n", err);
				return -1;
			}
			done_b |= rc == 1;
		}
		a2b.len = 0;
		off = 0;
		bytes += (long)b2a.len;
		while (off < b2a.len) {
			uint8_t t;
			const uint8_t *pl;
			size_t pn;
			long n = kv_frame_next(b2a.p + off, b2a.len - off, &t, &pl, &pn, err,
			                       sizeof(err));
			if (n <= 0)
				return -1;
			off += (size_t)n;
			int rc = kv_sync_feed(&ia, t, pl, pn, &a2b, err, sizeof(err));
			if (rc < 0) {
				printf("  initiator: %s\n", err);
				return -1;
			}
			done_a |= rc == 1;
		}
		b2a.len = 0;
	}
	kv_store_commit(a, err, sizeof(err));
	kv_store_commit(b, err, sizeof(err));
	kv_buf_free(&a2b);
	kv_buf_free(&b2a);
	return bytes;
}

static void test_sync_converges_and_moves_only_differences(void)
{
	struct kv_store *a = open_store("sa"), *b = open_store("sb");
	REQUIRE(a && b, "open");
	char key[32], val[32];
	kv_store_begin(a);
	kv_store_begin(b);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "cfg/%05d", i);
		snprintf(val, sizeof(val), "value-%d", i);
		struct kv_rec r = mkrec(1000 + (uint64_t)i, "n1", val, false);
		kv_store_put(a, key, strlen(key), &r);
		kv_store_put(b, key, strlen(key), &r);
	}
	char err[128];
	kv_store_commit(a, err, sizeof(err));
	kv_store_commit(b, err, sizeof(err));
	long equal = exchange(a, b);
	REQUIRE(equal > 0 && equal < 4 * 1024 + 64,
	        "equal replicas should move ~2 KiB each way, moved %ld", equal);
	/* differences on both sides, and a concurrent write: larger node wins */
	put(a, "only-a", mkrec(5000, "n1", "A", false));
	put(b, "only-b", mkrec(5001, "n2", "B", false));
	put(a, "cfg/00007", mkrec(6000, "n1", "from-n1", false));
	put(b, "cfg/00007", mkrec(6000, "n2", "from-n2", false));
	put(b, "cfg/00008", mkrec(6001, "n2", NULL, true));
	long diff = exchange(a, b);
	REQUIRE(diff > 0, "exchange failed");
	REQUIRE(memcmp(kv_store_digest(a), kv_store_digest(b), KV_BUCKETS * 8) == 0,
	        "digests differ after one exchange");
	struct kv_rec r;
	REQUIRE(kv_store_get(a, true, "only-b", 6, &r) == 1, "a lacks only-b");
	REQUIRE(kv_store_get(b, true, "only-a", 6, &r) == 1, "b lacks only-a");
	REQUIRE(kv_store_get(a, true, "cfg/00007", 9, &r) == 1 && r.value_len == 7 &&
	                memcmp(r.value, "from-n2", 7) == 0,
	        "concurrent write: n2 (larger name) must win on a");
	REQUIRE(kv_store_get(a, true, "cfg/00008", 9, &r) == 1 && r.tomb, "tombstone not spread");
	/* 4 or 5 buckets of ~8 records differ: far less than the 2000-key store */
	REQUIRE(diff < 20000, "difference of 5 keys moved %ld bytes", diff);
	int n = 0;
	kv_store_scan(a, true, "", 0, count_cb, &n);
	REQUIRE(n == 2002, "expected 2002 records on a, got %d", n);
	kv_store_close(a);
	kv_store_close(b);
}

static void test_gossip_messages_roundtrip_and_reject_junk(void)
{
	struct kv_buf b = {0};
	struct kv_rec r = mkrec(99, "nodeX", "val", false);
	struct kv_msg m;
	char err[128];
	REQUIRE(kv_msg_encode_set(&b, "a/b", 3, &r) == 0, "encode");
	REQUIRE(kv_msg_decode(b.p, b.len, &m, err, sizeof(err)) == 0, "decode: %s", err);
	REQUIRE(m.type == KV_MSG_SET && m.key_len == 3 && m.rec.hlc == 99, "fields");
	for (size_t cut = 0; cut < b.len; cut++)
		REQUIRE(kv_msg_decode(b.p, cut, &m, err, sizeof(err)) < 0, "cut %zu accepted", cut);
	REQUIRE(kv_msg_encode_announce(&b, "big", 3, &r) == 0, "encode announce");
	REQUIRE(kv_msg_decode(b.p, b.len, &m, err, sizeof(err)) == 0, "announce: %s", err);
	REQUIRE(m.type == KV_MSG_ANNOUNCE && m.hlc == 99 && m.size == 3, "announce fields");
	uint8_t junk[] = {0x80, 0xff, 0xff, 1, 2};
	REQUIRE(kv_msg_decode(junk, sizeof(junk), &m, err, sizeof(err)) < 0, "junk accepted");
	kv_buf_free(&b);
}

/* ------------------------------------------------ stored-record faults */

/* Writes val under key straight into LMDB's "kv" database of dir, as a
 * damaged or an older store would hold it. 0 or -1. */
static int raw_put(const char *dir, const char *key, const void *val, size_t n)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	if (mdb_env_create(&env) != 0)
		return -1;
	mdb_env_set_maxdbs(env, 3);
	mdb_env_set_mapsize(env, 64u << 20);
	int rc = mdb_env_open(env, dir, MDB_NOTLS, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, 0, &t);
	if (rc == 0) {
		MDB_val k = {strlen(key), (void *)key}, v = {n, (void *)val};
		rc = mdb_dbi_open(t, "kv", MDB_CREATE, &dbi);
		if (rc == 0)
			rc = mdb_put(t, dbi, &k, &v, 0);
		rc = rc == 0 ? mdb_txn_commit(t) : (mdb_txn_abort(t), rc);
	}
	mdb_env_close(env);
	return rc == 0 ? 0 : -1;
}

/* The stored bytes of key (*n of them copied into buf). 0 or -1. */
static int raw_get(const char *dir, const char *key, uint8_t *buf, size_t cap, size_t *n)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	if (mdb_env_create(&env) != 0)
		return -1;
	mdb_env_set_maxdbs(env, 3);
	int rc = mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
	if (rc == 0) {
		MDB_val k = {strlen(key), (void *)key}, v;
		rc = mdb_dbi_open(t, "kv", 0, &dbi);
		if (rc == 0)
			rc = mdb_get(t, dbi, &k, &v);
		if (rc == 0 && v.mv_size <= cap) {
			memcpy(buf, v.mv_data, v.mv_size);
			*n = v.mv_size;
		} else if (rc == 0) {
			rc = -1;
		}
		mdb_txn_abort(t);
	}
	mdb_env_close(env);
	return rc == 0 ? 0 : -1;
}

struct logcap {
	char text[8192];
};

static void logcap_fn(void *ud, const struct log_record *r)
{
	struct logcap *c = ud;
	size_t used = strlen(c->text);
	snprintf(c->text + used, sizeof(c->text) - used, "%s\n", r->msg);
}

static void test_stored_records_carry_a_checksum(void)
{
	char dir[512];
	struct kv_store *s = open_store("sum");
	REQUIRE(s != NULL, "open");
	struct kv_rec r = mkrec(700, "n1", "value", false);
	REQUIRE(put(s, "k", r) == 0, "put");
	kv_store_close(s);
	snprintf(dir, sizeof(dir), "%s/sum", tmpdir);
	uint8_t b[256];
	size_t n = 0;
	REQUIRE(raw_get(dir, "k", b, sizeof(b), &n) == 0, "raw get");
	CHECK_INT((long long)(kv_rec_size(&r) + KV_STORE_REC_TRAILER), (long long)n, "stored size");
	CHECK_INT(KV_STORE_REC_MARK, b[n - 1], "last byte");
}

/* LMDB has no checksums: a byte flipped inside data.mdb used to be served
 * as the value. Now the record is found bad at open (logged, counted), is
 * absent for reads and scans while the others are intact, and a write
 * replaces it. */
static void test_flipped_byte_in_data_mdb_is_caught(void)
{
	char dir[512], path[600];
	struct kv_store *s = open_store("flip");
	REQUIRE(s != NULL, "open");
	const char *secret = "VICTIM-0123456789abcdef-value";
	REQUIRE(put(s, "ok1", mkrec(710, "n1", "one", false)) == 0 &&
	                put(s, "victim", mkrec(711, "n1", secret, false)) == 0 &&
	                put(s, "ok2", mkrec(712, "n1", "two", false)) == 0,
	        "puts");
	kv_store_close(s);
	snprintf(dir, sizeof(dir), "%s/flip", tmpdir);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	FILE *f = fopen(path, "r+b");
	REQUIRE(f != NULL, "open data.mdb");
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	uint8_t *img = malloc((size_t)len);
	fseek(f, 0, SEEK_SET);
	REQUIRE(img != NULL && fread(img, 1, (size_t)len, f) == (size_t)len, "read data.mdb");
	int flipped = 0;
	for (uint8_t *p = img; (p = memmem(p, (size_t)(img + len - p), secret, strlen(secret)));
	     p++) {
		p[8] ^= 0x01; /* '0' -> '1': still a valid-looking value */
		flipped++;
	}
	fseek(f, 0, SEEK_SET);
	fwrite(img, 1, (size_t)len, f);
	fclose(f);
	free(img);
	REQUIRE(flipped > 0, "the value was not found in data.mdb");
	struct logcap cap = {{0}};
	log_subscribe(logcap_fn, &cap, LOG_INFO);
	s = open_store("flip");
	REQUIRE(s != NULL, "reopen");
	CHECK_INT(1, (long long)kv_store_stats(s)->bad_records, "bad records found at open");
	CHECK_HAS(cap.text, "\"victim\" fails its checksum");
	struct kv_rec g;
	CHECK_INT(0, kv_store_get(s, true, "victim", 6, &g), "the damaged value was served");
	CHECK(kv_store_stats(s)->bad_reads >= 1, "the bad read was not counted");
	int n = 0, nb = 0;
	kv_store_scan(s, true, "", 0, count_cb, &n);
	for (unsigned b = 0; b < KV_BUCKETS; b++)
		kv_store_scan_bucket(s, true, b, count_cb, &nb);
	CHECK_INT(2, n, "records a scan shows");
	CHECK_INT(2, nb, "records the bucket scans (anti-entropy) show");
	uint64_t live, tombs;
	kv_store_counts(s, &live, &tombs);
	CHECK_INT(2, (long long)live, "live keys counted");
	CHECK_INT(0, put(s, "victim", mkrec(713, "n2", "fresh", false)),
	          "overwrite the bad record");
	CHECK_INT(1, kv_store_get(s, true, "victim", 6, &g), "the rewritten key");
	CHECK(g.value_len == 5 && memcmp(g.value, "fresh", 5) == 0, "rewritten value");
	kv_store_close(s);
	log_unsubscribe(logcap_fn, &cap);
	s = open_store("flip");
	REQUIRE(s != NULL, "reopen after the rewrite");
	CHECK_INT(0, (long long)kv_store_stats(s)->bad_records, "bad records after the rewrite");
	kv_store_close(s);
}

/* Records that do not decode and records of the older format (no
 * checksum), put into LMDB directly. The bad ones are absent for get,
 * scan, merge and local writes (so a peer's version or a new write takes
 * the key); the legacy one reads as before and gains a checksum when
 * written. Before: get returned -1, so every write and merge of the key
 * failed (KV_ERROR) for good. */
static void test_bad_and_legacy_records_never_poison_a_key(void)
{
	char dir[512];
	struct kv_store *s = open_store("poison");
	REQUIRE(s != NULL, "open");
	kv_store_close(s);
	snprintf(dir, sizeof(dir), "%s/poison", tmpdir);
	struct kv_rec old = mkrec(720, "n1", "legacy", false);
	uint8_t ob[128];
	size_t on = (size_t)(kv_rec_encode(&old, ob) - ob);
	REQUIRE(raw_put(dir, "p/old", ob, on) == 0, "raw legacy record");
	REQUIRE(raw_put(dir, "p/bad", "\x07garbage", 8) == 0, "raw undecodable record");
	ob[1] = 7; /* tombstone flag out of range */
	REQUIRE(raw_put(dir, "p/bad2", ob, on) == 0, "raw bad record");
	s = open_store("poison");
	REQUIRE(s != NULL, "reopen");
	const struct kv_store_stats *st = kv_store_stats(s);
	CHECK_INT(2, (long long)st->bad_records, "bad records");
	CHECK_INT(1, (long long)st->legacy_records, "records without checksum");
	struct kv_rec g;
	CHECK_INT(1, kv_store_get(s, true, "p/old", 5, &g), "legacy record read");
	CHECK(g.value_len == 6 && memcmp(g.value, "legacy", 6) == 0, "legacy value");
	CHECK_INT(0, kv_store_get(s, true, "p/bad", 5, &g), "undecodable record");
	int n = 0;
	CHECK_INT(1, kv_store_scan(s, true, "p/", 2, count_cb, &n), "scan of p/ before");
	/* a peer's version of p/bad, a local write of p/bad2, a rewrite of p/old */
	struct kv_hlc hlc = {0};
	struct kv_rec peer = mkrec(730, "n2", "from-peer", false);
	CHECK_INT(KV_MERGE_STORED,
	          kv_merge_rec(s, &hlc, 1000, 1000000, 1000000000, "p/bad", 5, &peer),
	          "merge over a bad record");
	struct kv_rec mine;
	CHECK_INT(1, kv_local_stamp(s, &hlc, 1000, "n1", 2, "p/bad2", 6, false, 0, &mine),
	          "stamp a write over a bad record");
	mine.value = (const uint8_t *)"local";
	mine.value_len = 5;
	CHECK_INT(0, kv_store_put(s, "p/bad2", 6, &mine), "write over a bad record");
	struct kv_rec again = mkrec(740, "n1", "rewritten", false);
	CHECK_INT(0, kv_store_put(s, "p/old", 5, &again), "rewrite the legacy record");
	char err[128];
	REQUIRE(kv_store_commit(s, err, sizeof(err)) == 0, "commit: %s", err);
	n = 0;
	CHECK_INT(3, kv_store_scan(s, true, "p/", 2, count_cb, &n), "scan of p/ after");
	kv_store_close(s);
	uint8_t b[256];
	size_t bn = 0;
	REQUIRE(raw_get(dir, "p/old", b, sizeof(b), &bn) == 0, "raw get");
	CHECK_INT(KV_STORE_REC_MARK, b[bn - 1], "the rewritten legacy record has a checksum");
	s = open_store("poison");
	REQUIRE(s != NULL, "reopen after");
	CHECK_INT(0, (long long)kv_store_stats(s)->bad_records, "bad records after");
	CHECK_INT(0, (long long)kv_store_stats(s)->legacy_records, "legacy records after");
	kv_store_close(s);
}

/* `rumor kv verify DIR` (the agent's data dir or its kv/): counts, each bad
 * key, exit 1; a sound store: OK, exit 0. */
static void test_kv_verify_reports_bad_keys(void)
{
	char data[512], kvdir[600];
	snprintf(data, sizeof(data), "%s/verify", tmpdir);
	snprintf(kvdir, sizeof(kvdir), "%s/kv", data);
	mkdir(data, 0700);
	char err[256];
	struct kv_store *s = kv_store_open(kvdir, 64u << 20, err, sizeof(err));
	REQUIRE(s != NULL, "open: %s", err);
	REQUIRE(put(s, "a", mkrec(750, "n1", "x", false)) == 0, "put");
	kv_store_close(s);
	char *out = NULL;
	size_t outlen = 0;
	FILE *o = open_memstream(&out, &outlen);
	char *argv1[] = {"verify", data, NULL};
	int rc = cli_kv_run(2, argv1, "127.0.0.1:8500", NULL, o, o);
	fclose(o);
	CHECK_INT(0, rc, "exit code on a sound store\n%s", out);
	CHECK_HAS(out, "records: 1 (1 with checksum, 0 without (older format), 0 bad)");
	CHECK_HAS(out, "OK");
	free(out);
	REQUIRE(raw_put(kvdir,
	                "b\x01"
	                "ad",
	                "\x01\x05", 2) == 0,
	        "raw bad record");
	struct kv_store_verify_result res;
	REQUIRE(kv_store_verify(kvdir, NULL, NULL, &res, err, sizeof(err)) == 0, "verify: %s", err);
	CHECK_INT(2, (long long)res.records);
	CHECK_INT(1, (long long)res.bad);
	o = open_memstream(&out, &outlen);
	char *argv2[] = {"verify", "-data-dir", kvdir, NULL};
	rc = cli_kv_run(3, argv2, "127.0.0.1:8500", NULL, o, o);
	fclose(o);
	CHECK_INT(1, rc, "exit code with a bad record\n%s", out);
	CHECK_HAS(out, "bad record: \"b\\x01ad\" does not decode");
	CHECK_HAS(out, "FAILED: 1 bad record");
	free(out);
}

/* Through the engine: ?recurse (kv_scan) lists the good keys around a bad
 * one, and a CAS create (index 0) of the bad key is acknowledged. */
struct wr {
	int done, result;
};

static void wr_done(void *ud, enum kv_result r, int failed_op)
{
	struct wr *w = ud;
	w->done = 1;
	w->result = r;
}

static int scan_count(void *ud, const struct kv_entry *e)
{
	(*(int *)ud)++;
	return 0;
}

static void test_engine_skips_and_overwrites_a_bad_record(void)
{
	char data[512], kvdir[600], err[256];
	snprintf(data, sizeof(data), "%s/engine", tmpdir);
	snprintf(kvdir, sizeof(kvdir), "%s/kv", data);
	mkdir(data, 0700);
	struct kv_store *s = kv_store_open(kvdir, 64u << 20, err, sizeof(err));
	REQUIRE(s != NULL, "open: %s", err);
	uint64_t now = (uint64_t)time(NULL) * 1000;
	REQUIRE(put(s, "p/a", mkrec(kv_hlc_from_ms((int64_t)now), "n1", "a", false)) == 0 &&
	                put(s, "p/c", mkrec(kv_hlc_from_ms((int64_t)now) + 1, "n1", "c", false)) ==
	                        0,
	        "puts");
	kv_store_close(s);
	REQUIRE(raw_put(kvdir, "p/b", "\xff\xff", 2) == 0, "raw bad record");
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct kv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = data;
	cfg.node_name = "n1";
	cfg.sync_port = -1;
	cfg.map_size = 64u << 20;
	struct kv *kv = kv_new(loop, &cfg, err, sizeof(err));
	REQUIRE(kv != NULL, "kv_new: %s", err);
	int n = 0;
	CHECK_INT(2, kv_scan(kv, "p/", 2, scan_count, &n), "keys listed under p/");
	CHECK_INT(0, kv_get(kv, "p/b", 3, NULL, NULL), "the bad key");
	struct kv_op op = {KV_OP_CAS, "p/b", 3, "new", 3, 0, 0, NULL, 0};
	struct wr w = {0, 0};
	CHECK_INT(0, kv_write(kv, &op, 1, wr_done, &w, err, sizeof(err)), "kv_write");
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	CHECK_INT(KV_OK, w.result, "CAS create over the bad record");
	CHECK_INT(1, kv_get(kv, "p/b", 3, NULL, NULL), "the key after the write");
	n = 0;
	CHECK_INT(3, kv_scan(kv, "p/", 2, scan_count, &n), "keys listed after the write");
	kv_free(kv);
	ev_loop_destroy(loop);
}

static int keep_entry(void *ud, const struct kv_entry *e)
{
	*(struct kv_entry *)ud = *e;
	return 0;
}

/* One op on kv, run until answered; the kv_result. */
static int write_one(struct ev_loop *loop, struct kv *kv, struct kv_op op)
{
	char err[128];
	struct wr w = {0, 0};
	if (kv_write(kv, &op, 1, wr_done, &w, err, sizeof(err)) < 0)
		return -100;
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	return w.done ? w.result : -101;
}

/*
 * A replica an earlier release wrote (64-bit versions, one with a counter past
 * 4095) opens as it is: reads show index forms, CAS takes the index form and
 * the old 64-bit number alike, and the next write gets a larger index of its
 * own although the clock continues from a counter past 4095.
 */
static void test_engine_shows_index_forms_of_an_earlier_replica(void)
{
	char data[512], kvdir[600], err[256];
	snprintf(data, sizeof(data), "%s/indexes", tmpdir);
	snprintf(kvdir, sizeof(kvdir), "%s/kv", data);
	mkdir(data, 0700);
	struct kv_store *s = kv_store_open(kvdir, 64u << 20, err, sizeof(err));
	REQUIRE(s != NULL, "open: %s", err);
	int64_t now = (int64_t)time(NULL) * 1000;
	uint64_t va = kv_hlc_from_ms(now - 5000) + 3, vb = kv_hlc_from_ms(now - 1000) + 5000;
	REQUIRE(put(s, "i/a", mkrec(va, "old", "a", false)) == 0 &&
	                put(s, "i/b", mkrec(vb, "old", "b", false)) == 0,
	        "puts");
	kv_store_close(s);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct kv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = data;
	cfg.node_name = "n1";
	cfg.sync_port = -1;
	cfg.map_size = 64u << 20;
	struct kv *kv = kv_new(loop, &cfg, err, sizeof(err));
	REQUIRE(kv != NULL, "kv_new: %s", err);
	struct kv_entry e;
	memset(&e, 0, sizeof(e));
	CHECK_INT(1, kv_get(kv, "i/a", 3, keep_entry, &e), "get i/a");
	CHECK_INT((long long)kv_hlc_index(va), (long long)e.modify_index, "ModifyIndex of i/a");
	CHECK_INT((long long)kv_hlc_index(va), (long long)e.create_index, "CreateIndex of i/a");
	CHECK_INT(1, kv_get(kv, "i/b", 3, keep_entry, &e), "get i/b");
	uint64_t ib = e.modify_index;
	CHECK_INT((long long)(kv_hlc_index(kv_hlc_from_ms(now - 1000)) + 4095), (long long)ib,
	          "ModifyIndex of i/b (counter 5000 shows as 4095)");
	CHECK_INT((long long)ib, (long long)kv_index(kv, "i/", 2, true), "index of the prefix");
	CHECK(ib <= KV_INDEX_MAX && kv_index(kv, "i/a", 3, false) <= KV_INDEX_MAX, "indexes fit");

	CHECK_INT(KV_FAILED,
	          write_one(loop, kv,
	                    (struct kv_op){KV_OP_CAS, "i/a", 3, "x", 1, 0, va - 1, NULL, 0}),
	          "CAS with a wrong old version");
	CHECK_INT(KV_OK,
	          write_one(loop, kv, (struct kv_op){KV_OP_CAS, "i/a", 3, "y", 1, 0, va, NULL, 0}),
	          "CAS with the 64-bit version an earlier release showed");
	CHECK_INT(KV_OK,
	          write_one(loop, kv, (struct kv_op){KV_OP_CAS, "i/b", 3, "z", 1, 0, ib, NULL, 0}),
	          "CAS with the index form");
	CHECK_INT(1, kv_get(kv, "i/b", 3, keep_entry, &e), "get i/b after the CAS");
	CHECK(e.modify_index > ib && e.modify_index <= KV_INDEX_MAX,
	      "a new write's index %" PRIu64 " passes %" PRIu64, e.modify_index, ib);
	CHECK_INT((long long)kv_hlc_index(vb), (long long)e.create_index,
	          "CreateIndex kept across the write");
	kv_free(kv);
	ev_loop_destroy(loop);
}

static struct kv_op lk(enum kv_op_verb v, const char *key, const char *val, const char *sess)
{
	return (struct kv_op){v,
	                      key,
	                      strlen(key),
	                      val,
	                      val ? strlen(val) : 0,
	                      0,
	                      0,
	                      sess,
	                      sess ? strlen(sess) : 0};
}

/*
 * Locks (issue 17): an acquire needs the session's record; another session's
 * acquire fails while the key is held; the holder's own acquire keeps
 * LockIndex; a release by a non-holder fails; a plain put keeps the lock; a
 * session's end releases (value kept) or deletes what it holds and its record;
 * lock fields survive a reopen (record version 2), and a record never locked
 * is still written as version 1.
 */
static void test_engine_locks(void)
{
	char data[512], err[256];
	snprintf(data, sizeof(data), "%s/locks", tmpdir);
	mkdir(data, 0700);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct kv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = data;
	cfg.node_name = "n1";
	cfg.sync_port = -1;
	cfg.map_size = 64u << 20;
	struct kv *kv = kv_new(loop, &cfg, err, sizeof(err));
	REQUIRE(kv != NULL, "kv_new: %s", err);
	CHECK_INT(KV_FAILED, write_one(loop, kv, lk(KV_OP_LOCK, "l/a", "v", "s1")),
	          "acquire with a session that has no record");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_SET, KV_SESSION_PREFIX "s1", "{}", NULL)),
	          "session s1");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_SET, KV_SESSION_PREFIX "s2", "{}", NULL)),
	          "session s2");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/a", "v1", "s1")), "s1 acquires");
	CHECK_INT(KV_FAILED, write_one(loop, kv, lk(KV_OP_LOCK, "l/a", "v2", "s2")),
	          "s2 cannot acquire what s1 holds");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/a", "v3", "s1")),
	          "s1 acquires again");
	struct kv_entry e;
	memset(&e, 0, sizeof(e));
	CHECK_INT(1, kv_get(kv, "l/a", 3, keep_entry, &e), "get l/a");
	CHECK_INT(1, (long long)e.lock_index, "LockIndex stays 1 for the same holder");
	CHECK_STR("s1", e.session, "holder");
	CHECK_INT(KV_FAILED, write_one(loop, kv, lk(KV_OP_UNLOCK, "l/a", "x", "s2")),
	          "s2 cannot release s1's lock");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_SET, "l/a", "plain", NULL)), "plain put");
	CHECK_INT(1, kv_get(kv, "l/a", 3, keep_entry, &e), "get l/a");
	CHECK_STR("s1", e.session, "a plain put keeps the lock");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_CHECK_SESSION, "l/a", NULL, "s1")),
	          "check-session of the holder");
	CHECK_INT(KV_FAILED, write_one(loop, kv, lk(KV_OP_CHECK_SESSION, "l/a", NULL, "s2")),
	          "check-session of another");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_UNLOCK, "l/a", "free", "s1")), "s1 releases");
	CHECK_INT(1, kv_get(kv, "l/a", 3, keep_entry, &e), "get l/a");
	CHECK_STR("", e.session, "released");
	CHECK_INT(1, (long long)e.lock_index, "LockIndex kept on release");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/a", "s2v", "s2")), "s2 acquires");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/b", "b", "s2")), "s2 takes l/b");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/c", "c", "s1")), "s1 takes l/c");
	struct kv_op end = lk(KV_OP_SESSION_END, KV_SESSION_PREFIX "s2", NULL, "s2");
	CHECK_INT(KV_OK, write_one(loop, kv, end), "s2 ends (release)");
	CHECK_INT(1, kv_get(kv, "l/a", 3, keep_entry, &e), "l/a after s2 ended");
	CHECK_STR("", e.session, "l/a released");
	CHECK_INT(2, (long long)e.lock_index, "l/a LockIndex 2");
	CHECK(e.value_len == 3 && memcmp(e.value, "s2v", 3) == 0, "l/a keeps its value");
	CHECK_INT(1, kv_get(kv, "l/b", 3, NULL, NULL), "l/b kept (release)");
	CHECK_INT(0, kv_get(kv, KV_SESSION_PREFIX "s2", strlen(KV_SESSION_PREFIX "s2"), NULL, NULL),
	          "s2's record deleted");
	end = lk(KV_OP_SESSION_END, KV_SESSION_PREFIX "s1", NULL, "s1");
	end.flags = 1;
	CHECK_INT(KV_OK, write_one(loop, kv, end), "s1 ends (delete)");
	CHECK_INT(0, kv_get(kv, "l/c", 3, NULL, NULL), "l/c deleted with s1");
	CHECK_INT(1, kv_get(kv, "l/a", 3, NULL, NULL), "l/a (not held by s1) stays");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_SET, KV_SESSION_PREFIX "s3", "{}", NULL)),
	          "session s3");
	CHECK_INT(KV_OK, write_one(loop, kv, lk(KV_OP_LOCK, "l/d", "d", "s3")), "s3 takes l/d");
	kv_free(kv);
	kv = kv_new(loop, &cfg, err, sizeof(err));
	REQUIRE(kv != NULL, "reopen: %s", err);
	CHECK_INT(1, kv_get(kv, "l/d", 3, keep_entry, &e), "l/d after a reopen");
	CHECK_STR("s3", e.session, "holder after a reopen");
	CHECK_INT(1, (long long)e.lock_index, "LockIndex after a reopen");
	kv_free(kv);
	ev_loop_destroy(loop);

	struct kv_rec r = mkrec(5, "n", "v", false);
	CHECK_INT(0, kv_rec_locked(&r), "a plain record is not locked");
	uint8_t buf[256];
	kv_rec_encode(&r, buf);
	CHECK_INT(1, buf[0], "a record never locked is written as version 1");
	r.lock_index = 9;
	r.session = "abc";
	r.session_len = 3;
	const uint8_t *end2 = kv_rec_encode(&r, buf), *pos = buf;
	CHECK_INT(2, buf[0], "a locked record is version 2");
	CHECK_INT((long long)kv_rec_size(&r), (long long)(end2 - buf), "size of a locked record");
	struct kv_rec d;
	CHECK_INT(0, kv_rec_decode(&pos, end2, &d, err, sizeof(err)), "decode: %s", err);
	CHECK(d.lock_index == 9 && d.session_len == 3 && memcmp(d.session, "abc", 3) == 0,
	      "lock fields round-trip");
	for (const uint8_t *cut = buf; cut < end2; cut++) {
		pos = buf;
		CHECK_INT(-1, kv_rec_decode(&pos, cut, &d, err, sizeof(err)), "truncated at %d",
		          (int)(cut - buf));
	}
	buf[end2 - buf - 4] = KV_SESSION_MAX + 1; /* session length byte */
	pos = buf;
	CHECK_INT(-1, kv_rec_decode(&pos, end2, &d, err, sizeof(err)), "session length refused");
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kv_store.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_hlc_is_monotonic_when_wall_clock_steps_back);
	RUN(test_hlc_observe_moves_past_remote);
	RUN(test_hlc_counter_stops_at_4095_and_moves_to_next_ms);
	RUN(test_hlc_index_fits_a_double_and_keeps_order);
	RUN(test_hlc_index_in_reads_an_old_release_index);
	RUN(test_record_roundtrip_and_order);
	RUN(test_record_raft_indexes);
	RUN(test_store_persists_across_reopen);
	RUN(test_trim_drops_the_map_and_reads_still_work);
	RUN(test_abort_restores_digest_and_data);
	RUN(test_unlogged_batch_replaces_the_store_by_a_checkpoint);
	RUN(test_reader_sees_the_last_checkpoint);
	RUN(test_purge_drops_only_old_tombstones);
	RUN(test_sync_converges_and_moves_only_differences);
	RUN(test_gossip_messages_roundtrip_and_reject_junk);
	RUN(test_stored_records_carry_a_checksum);
	RUN(test_flipped_byte_in_data_mdb_is_caught);
	RUN(test_bad_and_legacy_records_never_poison_a_key);
	RUN(test_kv_verify_reports_bad_keys);
	RUN(test_engine_skips_and_overwrites_a_bad_record);
	RUN(test_engine_shows_index_forms_of_an_earlier_replica);
	RUN(test_engine_locks);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
