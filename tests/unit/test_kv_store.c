/*
 * tests/unit/test_kv_store.c — HLC, record codec and merge order, LMDB
 * persistence, tombstone purge, the bucketed digest and the sync exchange
 * (two stores converge and only differing buckets travel).
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv/hlc.h"
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
			long n = kv_frame_next(a2b.p + off, a2b.len - off, &t, &pl, &pn, err, sizeof(err));
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
			long n = kv_frame_next(b2a.p + off, b2a.len - off, &t, &pl, &pn, err, sizeof(err));
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

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kv_store.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_hlc_is_monotonic_when_wall_clock_steps_back);
	RUN(test_hlc_observe_moves_past_remote);
	RUN(test_record_roundtrip_and_order);
	RUN(test_store_persists_across_reopen);
	RUN(test_abort_restores_digest_and_data);
	RUN(test_purge_drops_only_old_tombstones);
	RUN(test_sync_converges_and_moves_only_differences);
	RUN(test_gossip_messages_roundtrip_and_reject_junk);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
