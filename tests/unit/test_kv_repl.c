/*
 * tests/unit/test_kv_repl.c — the sync protocol's bounds and trust (kv/repl.h):
 * a large difference travels in frames no larger than KV_CHUNK (+ one
 * record), a lazy sender's output grows with what the socket drains, not
 * with the store; sealed frames open only with an installed key, in their
 * own direction and untampered, across a key rotation; the merge rule
 * refuses versions far ahead of the clock and lets any write replace one
 * stored before the rule; a round between equal stores is one ROOT frame
 * and one END, and different roots go on to the digest exchange; a batch of
 * peers' records only is logged without fdatasync and survives a crash.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gossip/keyring.h"
#include "kv/engine.h"
#include "kv/hlc.h"
#include "kv/repl.h"
#include "kv/store.h"
#include "tests/unit/check.h"

#define NREC 3000
#define VALUE_LEN 1000

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

static int merge(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_hlc hlc = {0};
	return kv_merge_rec(ctx, &hlc, KV_HLC_MS(r->hlc), 1000000, 0, key, key_len, r) < 0 ? -1 : 1;
}

/* A store with NREC keys of VALUE_LEN bytes: ~3 MB, far over KV_CHUNK. */
static struct kv_store *filled_store(const char *name)
{
	struct kv_store *s = open_store(name);
	if (s == NULL)
		return NULL;
	static uint8_t val[VALUE_LEN];
	memset(val, 'v', sizeof(val));
	kv_store_begin(s);
	for (int i = 0; i < NREC; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "key/%05d", i);
		struct kv_rec r;
		memset(&r, 0, sizeof(r));
		r.hlc = r.create = kv_hlc_from_ms(1000000 + i);
		r.node = "a";
		r.node_len = 1;
		r.value = val;
		r.value_len = VALUE_LEN;
		kv_store_put(s, key, (size_t)kl, &r);
	}
	char err[128];
	kv_store_commit(s, err, sizeof(err));
	return s;
}

struct frames {
	int count, records_frames, ends;
	size_t largest;
};

/* Split buf into frames, checking each against the limits. */
static void walk(const struct kv_buf *b, struct frames *f)
{
	size_t off = 0;
	char err[128];
	while (off < b->len) {
		uint8_t t;
		const uint8_t *pl;
		size_t pn;
		long n = kv_frame_next(b->p + off, b->len - off, &t, &pl, &pn, err, sizeof(err));
		if (!CHECK(n > 0, "frame at %zu: %s", off, n < 0 ? err : "incomplete"))
			return;
		f->count++;
		f->records_frames += t == KV_F_RECORDS;
		f->ends += t == KV_F_END;
		if ((size_t)n > f->largest)
			f->largest = (size_t)n;
		off += (size_t)n;
	}
}

/* The responder of a 3 MB difference: eager output is many RECORDS frames
 * of at most KV_CHUNK + one record, then END; the initiator applies them. */
static void test_large_difference_travels_in_bounded_frames(void)
{
	struct kv_store *a = filled_store("big-a"), *b = open_store("big-b");
	REQUIRE(a != NULL && b != NULL, "open");
	struct kv_sync ib, ra;
	struct kv_buf b2a = {0}, a2b = {0};
	char err[256];
	REQUIRE(kv_sync_start_digest(&ib, b, merge, b, &b2a) == 0, "start");
	kv_sync_start(&ra, KV_SYNC_RESPONDER, a, merge, a, NULL, 0, &a2b);
	uint8_t t;
	const uint8_t *pl;
	size_t pn;
	long n = kv_frame_next(b2a.p, b2a.len, &t, &pl, &pn, err, sizeof(err));
	REQUIRE(n > 0 && t == KV_F_DIGEST, "digest frame");
	CHECK_INT(0, kv_sync_feed(&ra, t, pl, pn, &a2b, err, sizeof(err)), "responder: %s", err);
	struct frames f = {0};
	walk(&a2b, &f);
	CHECK(a2b.len > (size_t)NREC * VALUE_LEN, "all records sent: %zu bytes", a2b.len);
	CHECK(f.records_frames >= (int)(a2b.len / KV_CHUNK), "%d RECORDS frames for %zu bytes",
	      f.records_frames, a2b.len);
	CHECK(f.largest <= KV_CHUNK + 4 + VALUE_LEN + 64, "largest frame %zu bytes", f.largest);
	CHECK_INT(1, f.ends, "one END");
	/* the initiator takes them all, then answers with its (empty) stream */
	size_t off = 0;
	int rc = 0;
	b2a.len = 0;
	while (off < a2b.len && rc == 0) {
		n = kv_frame_next(a2b.p + off, a2b.len - off, &t, &pl, &pn, err, sizeof(err));
		REQUIRE(n > 0, "frame");
		off += (size_t)n;
		rc = kv_sync_feed(&ib, t, pl, pn, &b2a, err, sizeof(err));
	}
	CHECK_INT(1, rc, "initiator done after END: %s", err);
	CHECK_INT(NREC, (long long)ib.records_in);
	kv_store_commit(b, err, sizeof(err));
	uint64_t keys = 0, tombs = 0;
	kv_store_counts(b, &keys, &tombs);
	CHECK_INT(NREC, (long long)keys, "the initiator holds every key");
	kv_buf_free(&a2b);
	kv_buf_free(&b2a);
	kv_store_close(a);
	kv_store_close(b);
}

/* A lazy responder writes the DIFF and nothing more until pumped, and each
 * pump stops near `want`: its buffer follows the socket, not the store. */
static void test_lazy_pump_follows_the_socket(void)
{
	struct kv_store *a = filled_store("lazy-a"), *b = open_store("lazy-b");
	REQUIRE(a != NULL && b != NULL, "open");
	struct kv_sync ib, ra;
	struct kv_buf b2a = {0}, a2b = {0};
	char err[256];
	kv_sync_start_digest(&ib, b, merge, b, &b2a);
	kv_sync_start(&ra, KV_SYNC_RESPONDER, a, merge, a, NULL, 0, &a2b);
	ra.lazy = true;
	uint8_t t;
	const uint8_t *pl;
	size_t pn;
	kv_frame_next(b2a.p, b2a.len, &t, &pl, &pn, err, sizeof(err));
	CHECK_INT(0, kv_sync_feed(&ra, t, pl, pn, &a2b, err, sizeof(err)));
	CHECK(a2b.len < 64, "lazy: only the DIFF before a pump (%zu bytes)", a2b.len);
	CHECK_BOOL(true, kv_sync_sending(&ra));
	size_t bucket_max = (size_t)NREC / KV_BUCKETS * 4 * (VALUE_LEN + 64); /* generous */
	size_t total = 0, most = 0;
	int pumps = 0;
	struct frames f = {0};
	while (kv_sync_sending(&ra) && pumps < 10000) {
		a2b.len = 0;
		REQUIRE(kv_sync_pump(&ra, &a2b, 65536) == 0, "pump");
		if (a2b.len > most)
			most = a2b.len;
		total += a2b.len;
		walk(&a2b, &f);
		pumps++;
	}
	CHECK(most < 65536 + bucket_max, "one pump wrote %zu bytes (want <= 64 KiB + a bucket)",
	      most);
	CHECK(pumps > 10, "%d pumps for %zu bytes", pumps, total);
	CHECK_INT(1, f.ends, "the stream ends once");
	CHECK_INT(NREC, (long long)ra.records_out);
	kv_buf_free(&a2b);
	kv_buf_free(&b2a);
	kv_store_close(a);
	kv_store_close(b);
}

static int ring_encrypt(void *ctx, const uint8_t *m, size_t l, const uint8_t *ad, size_t al,
                        uint8_t *out, size_t cap)
{
	return keyring_encrypt(ctx, m, l, ad, al, out, cap);
}

static int ring_decrypt(void *ctx, const uint8_t *in, size_t l, const uint8_t *ad, size_t al,
                        uint8_t *out, size_t cap)
{
	return keyring_decrypt(ctx, in, l, ad, al, out, cap);
}

static struct kv_seal seal_of(struct keyring *k)
{
	struct kv_seal s = {k, KEYRING_OVERHEAD, ring_encrypt, ring_decrypt};
	return s;
}

/* Open the first frame of b as the receiver of `from_initiator` frames. */
static int open_first(const struct kv_seal *s, bool from_initiator, const struct kv_buf *b,
                      uint8_t *type, size_t *plen)
{
	uint8_t t;
	const uint8_t *pl;
	size_t pn;
	char err[128];
	struct kv_buf plain = {0};
	if (kv_frame_next(b->p, b->len, &t, &pl, &pn, err, sizeof(err)) <= 0 || t != KV_F_SEALED)
		return -1;
	int rc = kv_frame_open(s, from_initiator, b->p, pl, pn, &plain, type, &pl, plen, err,
	                       sizeof(err));
	kv_buf_free(&plain);
	return rc;
}

static void test_sealed_frames_open_only_with_a_key_their_way_untouched(void)
{
	if (!keyring_available()) {
		printf("  skipped: no AES-NI on this CPU\n");
		return;
	}
	uint8_t k1[KEYRING_KEY_LEN], k2[KEYRING_KEY_LEN];
	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	char err[128];
	struct keyring *r1 = keyring_new(), *r2 = keyring_new(), *both = keyring_new();
	keyring_add(r1, k1, err, sizeof(err));
	keyring_add(r2, k2, err, sizeof(err));
	keyring_add(both, k2, err, sizeof(err)); /* rotation: new primary, old still there */
	keyring_add(both, k1, err, sizeof(err));
	struct kv_seal s1 = seal_of(r1), s2 = seal_of(r2), sb = seal_of(both);

	/* one plaintext DIGEST-like frame */
	struct kv_buf plain = {0}, sealed = {0};
	struct kv_sync s;
	struct kv_store *st = open_store("seal");
	REQUIRE(st != NULL, "open");
	kv_sync_start_digest(&s, st, merge, st, &plain);
	REQUIRE(kv_frames_seal(&s1, true, plain.p, plain.len, &sealed) == 0, "seal");
	CHECK_INT((long long)(plain.len + 1 + KEYRING_OVERHEAD), (long long)sealed.len,
	          "sealed size = plain + type + AES-GCM overhead");
	CHECK(memmem(sealed.p, sealed.len, plain.p + 5, 64) == NULL, "payload not in the clear");
	uint8_t t;
	size_t pn;
	CHECK_INT(0, open_first(&s1, true, &sealed, &t, &pn), "the same key opens it");
	CHECK(t == KV_F_DIGEST && pn == KV_BUCKETS * 8, "inner frame type %u, %zu bytes", t, pn);
	CHECK_INT(0, open_first(&sb, true, &sealed, &t, &pn),
	          "a ring holding the old key opens it");
	CHECK_INT(-1, open_first(&s2, true, &sealed, &t, &pn), "another key does not");
	CHECK_INT(-1, open_first(&s1, false, &sealed, &t, &pn),
	          "reflected to its sender (other direction) it does not open");
	sealed.p[sealed.len / 2] ^= 1;
	CHECK_INT(-1, open_first(&s1, true, &sealed, &t, &pn), "a flipped bit does not open");
	sealed.p[sealed.len / 2] ^= 1;
	sealed.p[4] = KV_F_DIGEST; /* claims to be plaintext: the receiver refuses by type */
	uint8_t tt;
	const uint8_t *pl;
	size_t ppn;
	long n = kv_frame_next(sealed.p, sealed.len, &tt, &pl, &ppn, err, sizeof(err));
	CHECK(n < 0 || tt != KV_F_SEALED, "a frame not typed sealed is not opened as one");
	/* the new primary seals; a receiver that only has the old key fails */
	struct kv_buf s_new = {0};
	kv_frames_seal(&sb, true, plain.p, plain.len, &s_new);
	CHECK_INT(0, open_first(&s2, true, &s_new, &t, &pn), "sealed with the new primary");
	CHECK_INT(-1, open_first(&s1, true, &s_new, &t, &pn), "the old key alone cannot open it");
	/* only whole frames are sealed */
	CHECK_INT(-1, kv_frames_seal(&s1, true, plain.p, plain.len - 1, &s_new), "partial frame");
	kv_buf_free(&plain);
	kv_buf_free(&sealed);
	kv_buf_free(&s_new);
	kv_store_close(st);
	keyring_free(r1);
	keyring_free(r2);
	keyring_free(both);
}

static struct kv_rec rec_at(uint64_t hlc, const char *val)
{
	struct kv_rec r;
	memset(&r, 0, sizeof(r));
	r.hlc = r.create = hlc;
	r.node = "peer";
	r.node_len = 4;
	r.value = (const uint8_t *)val;
	r.value_len = (uint32_t)strlen(val);
	return r;
}

static void test_merge_refuses_versions_far_ahead_and_heals_poison(void)
{
	struct kv_store *st = open_store("ahead");
	REQUIRE(st != NULL, "open");
	struct kv_hlc hlc = {0};
	int64_t now = 1700000000000LL, max = 30000;
	char err[128];
	struct kv_rec r = rec_at(UINT64_MAX, "max");
	CHECK_INT(KV_MERGE_AHEAD, kv_merge_rec(st, &hlc, now, 1000000, max, "k", 1, &r));
	r = rec_at(kv_hlc_from_ms(now + 3600 * 1000), "hour");
	CHECK_INT(KV_MERGE_AHEAD, kv_merge_rec(st, &hlc, now, 1000000, max, "k", 1, &r));
	CHECK_INT(0, (long long)hlc.last, "the clock did not observe refused versions");
	r = rec_at(kv_hlc_from_ms(now + 1000), "second");
	CHECK_INT(KV_MERGE_STORED, kv_merge_rec(st, &hlc, now, 1000000, max, "k", 1, &r));
	CHECK_INT(KV_MERGE_HELD, kv_merge_rec(st, &hlc, now, 1000000, max, "k", 1, &r),
	          "the version stored, heard again: an echo");
	struct kv_rec older = rec_at(kv_hlc_from_ms(now), "second");
	CHECK_INT(KV_MERGE_IGNORED, kv_merge_rec(st, &hlc, now, 1000000, max, "k", 1, &older),
	          "an older version is no echo");
	CHECK_INT(KV_MERGE_STORED,
	          kv_merge_rec(
	                  st, &hlc, now, 1000000, 0, "p", 1,
	                  &(struct kv_rec){
	                          .hlc = UINT64_MAX - 5, .create = 1, .node = "x", .node_len = 1}),
	          "with the check off (0) anything is taken (a replica from before the rule)");
	struct kv_hlc fresh = {0};
	r = rec_at(kv_hlc_from_ms(now), "healed");
	CHECK_INT(KV_MERGE_STORED, kv_merge_rec(st, &fresh, now, 1000000, max, "p", 1, &r),
	          "a poisoned stored version loses to a normal one");
	kv_store_commit(st, err, sizeof(err));
	struct kv_rec got;
	REQUIRE(kv_store_get(st, true, "p", 1, &got) == 1, "get");
	CHECK_INT((long long)kv_hlc_from_ms(now), (long long)got.hlc);
	CHECK_BOOL(true, kv_version_ahead(UINT64_MAX, now, max));
	CHECK_BOOL(false, kv_version_ahead(kv_hlc_from_ms(now + max), now, max));
	CHECK_BOOL(false, kv_version_ahead(UINT64_MAX, now, 0), "0 disables the check");
	kv_store_close(st);
}

/* A frame's receiver: kv_sync_feed on a bare sync, or kv_session_feed on an
 * engine's session (at a time). */
struct receiver {
	struct kv_sync *sync;
	struct kv_session *session;
	int64_t now;
};

/* Feed every frame in *from to r (its answers go to *to); *from is emptied.
 * The last feed's result, or -1 on a bad frame. */
static int deliver_to(const struct receiver *r, struct kv_buf *from, struct kv_buf *to,
                      size_t *bytes)
{
	struct kv_buf in = *from;
	memset(from, 0, sizeof(*from));
	if (bytes != NULL)
		*bytes += in.len;
	size_t off = 0;
	int rc = 0;
	char err[256];
	while (off < in.len && rc == 0) {
		uint8_t t;
		const uint8_t *pl;
		size_t pn;
		long n = kv_frame_next(in.p + off, in.len - off, &t, &pl, &pn, err, sizeof(err));
		if (!CHECK(n > 0, "frame: %s", n < 0 ? err : "incomplete")) {
			rc = -1;
			break;
		}
		off += (size_t)n;
		rc = r->sync != NULL
		             ? kv_sync_feed(r->sync, t, pl, pn, to, err, sizeof(err))
		             : kv_session_feed(r->session, r->now, t, pl, pn, to, err, sizeof(err));
		CHECK(rc >= 0, "feed: %s", err);
	}
	kv_buf_free(&in);
	return rc;
}

static int deliver(struct kv_sync *s, struct kv_buf *from, struct kv_buf *to, size_t *bytes)
{
	struct receiver r = {.sync = s};
	return deliver_to(&r, from, to, bytes);
}

struct round {
	size_t i2r, r2i; /* bytes each way */
	int ri, rr;      /* last feed results */
	bool equal;
	uint64_t in_i, in_r; /* records each side took */
};

/* One anti-entropy round between an initiator on a and a responder on b. */
static struct round converse(struct kv_store *a, struct kv_store *b)
{
	struct kv_sync i, r;
	struct kv_buf i2r = {0}, r2i = {0};
	struct round o = {0};
	char err[128];
	CHECK_INT(0, kv_sync_start(&i, KV_SYNC_INITIATOR, a, merge, a, NULL, 0, &i2r), "start");
	CHECK(kv_sync_root_unanswered(&i), "no answer yet");
	kv_sync_start(&r, KV_SYNC_RESPONDER, b, merge, b, NULL, 0, &r2i);
	for (int k = 0; k < 8 && (i2r.len > 0 || r2i.len > 0); k++) {
		if (i2r.len > 0)
			o.rr = deliver(&r, &i2r, &r2i, &o.i2r);
		if (r2i.len > 0)
			o.ri = deliver(&i, &r2i, &i2r, &o.r2i);
	}
	CHECK(!kv_sync_root_unanswered(&i), "answered");
	o.equal = kv_sync_roots_equal(&i);
	o.in_i = i.records_in;
	o.in_r = r.records_in;
	kv_store_commit(a, err, sizeof(err));
	kv_store_commit(b, err, sizeof(err));
	kv_buf_free(&i2r);
	kv_buf_free(&r2i);
	return o;
}

static void put(struct kv_store *s, const char *key, int64_t ms)
{
	struct kv_rec r;
	memset(&r, 0, sizeof(r));
	r.hlc = r.create = kv_hlc_from_ms(ms);
	r.node = "n";
	r.node_len = 1;
	r.value = (const uint8_t *)"v";
	r.value_len = 1;
	char err[128];
	kv_store_begin(s);
	kv_store_put(s, key, strlen(key), &r);
	kv_store_commit(s, err, sizeof(err));
}

/* Equal stores: ROOT (13 bytes) and END (5) and nothing else; a store
 * differing in one key: roots, the digest, that key; then equal again. */
static void test_equal_roots_cost_one_frame_each_way(void)
{
	struct kv_store *a = open_store("root-a"), *b = open_store("root-b");
	REQUIRE(a != NULL && b != NULL, "open");
	CHECK(kv_store_root(a) == kv_store_root(b), "empty stores: equal roots");
	struct round o = converse(a, b);
	CHECK(o.equal && o.ri == 1 && o.rr == 1, "empty: equal, both done (%d %d)", o.ri, o.rr);
	CHECK_INT(13, (long long)o.i2r, "ROOT frame only");
	CHECK_INT(5, (long long)o.r2i, "END frame only");

	put(b, "k1", 2000000);
	CHECK(kv_store_root(a) != kv_store_root(b), "one key apart: roots differ");
	o = converse(a, b);
	CHECK(!o.equal && o.ri == 1, "different: a full round (%d)", o.ri);
	CHECK_INT(1, (long long)o.in_i, "the initiator took the key");
	CHECK(o.i2r > KV_BUCKETS * 8, "the digest travelled (%zu bytes)", o.i2r);
	CHECK(kv_store_root(a) == kv_store_root(b), "equal after the round");

	put(a, "k2", 2000001);
	o = converse(a, b);
	CHECK_INT(1, (long long)o.in_r, "the responder took the initiator's key");
	o = converse(b, a);
	CHECK(o.equal && o.i2r == 13 && o.r2i == 5, "then equal again, either way");
	kv_store_close(a);
	kv_store_close(b);
}

/*
 * In a round the initiator does not send back what the responder just sent:
 * 400 keys both hold at the same version fill every bucket; each side has 20
 * keys of its own and 10 newer versions of shared keys. The responder sends
 * its records of every differing bucket (all of them); the initiator sends
 * exactly its 20 keys and 10 newer versions, and the stores end equal. A
 * responder's records past KV_SYNC_SEEN_MAX are not remembered, and the
 * initiator then sends its own as before: still equal after.
 */
static void test_initiator_sends_only_what_the_responder_lacks(void)
{
	struct kv_store *a = open_store("seen-a"), *b = open_store("seen-b");
	REQUIRE(a != NULL && b != NULL, "open");
	char key[32];
	for (int i = 0; i < 400; i++) {
		snprintf(key, sizeof(key), "both/%d", i);
		int64_t ms = 3000000 + i;
		put(a, key, ms + (i < 10 ? 5000 : 0));            /* a newer on both/0..9 */
		put(b, key, ms + (i >= 10 && i < 20 ? 5000 : 0)); /* b newer on both/10..19 */
	}
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "a/%d", i);
		put(a, key, 3100000 + i);
		snprintf(key, sizeof(key), "b/%d", i);
		put(b, key, 3100000 + i);
	}
	struct round o = converse(a, b);
	CHECK(!o.equal && o.ri == 1, "a full round (%d)", o.ri);
	CHECK(o.in_i > 40, "the responder sent its differing buckets whole: %llu",
	      (unsigned long long)o.in_i);
	CHECK_INT(30, (long long)o.in_r,
	          "the initiator sent only its 20 keys and 10 newer versions");
	CHECK(kv_store_root(a) == kv_store_root(b), "equal after the round");

	/* more than the initiator remembers */
	for (int i = 0; i < KV_SYNC_SEEN_MAX + 200; i++) {
		snprintf(key, sizeof(key), "big/%d", i);
		put(b, key, 3200000 + i);
	}
	put(a, "a/last", 3300000);
	o = converse(a, b);
	CHECK(o.in_r >= 1, "the initiator's new key travelled (%llu)", (unsigned long long)o.in_r);
	CHECK(kv_store_root(a) == kv_store_root(b), "equal after a round past the set's size");
	kv_store_close(a);
	kv_store_close(b);
}

/* A responder answers a DIGEST first frame (an older initiator) as before,
 * and refuses a malformed ROOT or a second ROOT. */
static void test_root_frames_are_checked(void)
{
	struct kv_store *a = open_store("rootchk");
	REQUIRE(a != NULL, "open");
	struct kv_sync r;
	struct kv_buf out = {0};
	char err[128];
	uint8_t root[9] = {0};
	kv_sync_start(&r, KV_SYNC_RESPONDER, a, merge, a, NULL, 0, &out);
	CHECK_INT(-1, kv_sync_feed(&r, KV_F_ROOT, root, 9, &out, err, sizeof(err)), "9-byte root");
	kv_sync_start(&r, KV_SYNC_RESPONDER, a, merge, a, NULL, 0, &out);
	root[0] = 1; /* not our root */
	CHECK_INT(0, kv_sync_feed(&r, KV_F_ROOT, root, 8, &out, err, sizeof(err)), "%s", err);
	CHECK_INT(-1, kv_sync_feed(&r, KV_F_ROOT, root, 8, &out, err, sizeof(err)),
	          "a second root is refused");
	kv_sync_start(&r, KV_SYNC_RESPONDER, a, merge, a, NULL, 0, &out);
	uint8_t dig[KV_BUCKETS * 8] = {0};
	CHECK_INT(0, kv_sync_feed(&r, KV_F_DIGEST, dig, sizeof(dig), &out, err, sizeof(err)),
	          "an older initiator's digest: %s", err);
	struct kv_sync i;
	out.len = 0;
	kv_sync_start(&i, KV_SYNC_INITIATOR, a, merge, a, NULL, 0, &out);
	CHECK_INT(-1, kv_sync_feed(&i, KV_F_DIFF, dig, 32, &out, err, sizeof(err)),
	          "an initiator waiting for a root refuses a diff");
	kv_buf_free(&out);
	kv_store_close(a);
}

/* A fake driver for the engine's anti-entropy timer: it records the
 * period armed and opens a round only when asked to (the test ends it). */
struct pace {
	int64_t armed;
	bool open_ok;
	struct kv_session *open;
	struct kv_buf first; /* the opened round's first frames */
	size_t backlog;      /* what gossip_backlog answers */
	int64_t known_since; /* what known_since answers for every writer */
	int echoes;          /* io.echo calls */
	char echo_key[64];   /* the last one's key */
	int sent;            /* io.broadcast calls */
	char sent_key[64];   /* the last one's key */
};

static uint32_t pace_rand(void *ctx, uint32_t n)
{
	(void)ctx;
	return n / 2; /* no jitter (1000 of 2001), the first peer, 0.35 s soon */
}

static void pace_peers(void *ctx, kv_peer_fn fn, void *ud)
{
	(void)ctx;
	fn(ud, "p1");
}

static bool pace_open(void *ctx, const char *peer, struct kv_session *s, const uint8_t *first,
                      size_t len)
{
	struct pace *p = ctx;
	(void)peer;
	(void)first;
	(void)len;
	if (!p->open_ok)
		return false;
	p->open = s;
	free(p->first.p);
	p->first.p = malloc(len ? len : 1);
	if (p->first.p == NULL)
		abort();
	memcpy(p->first.p, first, len);
	p->first.len = p->first.cap = len;
	return true;
}

static size_t pace_backlog(void *ctx)
{
	return ((struct pace *)ctx)->backlog;
}

static int64_t pace_known_since(void *ctx, const char *name)
{
	(void)name;
	return ((struct pace *)ctx)->known_since;
}

static void pace_arm(void *ctx, int64_t after_us)
{
	((struct pace *)ctx)->armed = after_us;
}

static int64_t pace_left(void *ctx)
{
	return ((struct pace *)ctx)->armed;
}

/* The engine's io with p as its driver. */
static void pace_echo(void *ctx, const char *key, size_t key_len)
{
	struct pace *p = ctx;
	p->echoes++;
	snprintf(p->echo_key, sizeof(p->echo_key), "%.*s", (int)key_len, key);
}

static void pace_broadcast(void *ctx, const char *key, size_t key_len, const uint8_t *msg,
                           size_t len)
{
	struct pace *p = ctx;
	(void)msg, (void)len;
	p->sent++;
	snprintf(p->sent_key, sizeof(p->sent_key), "%.*s", (int)key_len, key);
}

static struct kv_io pace_io(struct pace *p)
{
	return (struct kv_io){.ctx = p,
	                      .rand = pace_rand,
	                      .peers = pace_peers,
	                      .open_session = pace_open,
	                      .sync_arm = pace_arm,
	                      .sync_left = pace_left,
	                      .gossip_backlog = pace_backlog,
	                      .known_since = pace_known_since};
}

/* An idle store's period doubles once and no more; a failed round brings
 * the next one forward and cancels the back-off until a round succeeds. */
static void test_idle_back_off_is_2x_and_a_failed_round_cancels_it(void)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/pace", tmpdir);
	struct pace p = {0};
	struct kv_io io = pace_io(&p);
	struct kv_engine_config cfg = {.dir = dir, .node_name = "n1", .sync_interval_ms = 10000};
	struct kv_engine *e = kv_engine_new(&cfg, &io, 1700000000000, err, sizeof(err));
	REQUIRE(e != NULL, "engine: %s", err);
	kv_engine_sync_timer(e); /* the first look at the root: base period */
	CHECK_NUM(10000000, p.armed, "first period");
	kv_engine_sync_timer(e); /* the root did not move: doubled */
	CHECK_NUM(20000000, p.armed, "idle period");
	kv_engine_sync_timer(e);
	kv_engine_sync_timer(e);
	CHECK_NUM(20000000, p.armed, "still idle: 2x is the most");
	p.open_ok = true;
	kv_engine_sync_timer(e);
	REQUIRE(p.open != NULL, "a round was opened");
	p.open_ok = false;
	kv_session_end(p.open, false);
	CHECK_NUM(350000, p.armed, "after a failed round: 0.2 s + 0-0.3 s");
	kv_engine_sync_timer(e);
	CHECK_NUM(10000000, p.armed, "after a failed round: the base period, not 2x");
	free(p.first.p);
	kv_engine_free(e);
}

static void count_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	if (r == KV_OK)
		(*(int *)ud)++;
}

/* Feed the frames in *from to engine session s at now; its answer goes to
 * *to. kv_session_feed's last result. */
static int engine_deliver(struct kv_session *s, int64_t now, struct kv_buf *from, struct kv_buf *to)
{
	struct receiver r = {.session = s, .now = now};
	return deliver_to(&r, from, to, NULL);
}

/*
 * A round that stores records older than gossip takes to spread starts a
 * chain (the next round within 0.2-0.5 s) unless this node's gossip has more
 * than 64 messages queued: then gossip is behind rather than missing
 * records, and the chain is held (the period stands). 64 queued chain; 65
 * hold. Records written before their writer entered this node's membership
 * table were never gossip's to miss: they start nothing.
 */
static void test_late_records_chain_unless_gossip_is_behind(void)
{
	for (int c = 0; c < 3; c++) {
		int behind = c == 1, unknown = c == 2;
		char da[512], db[512], err[256];
		snprintf(da, sizeof(da), "%s/chain-a%d", tmpdir, c);
		snprintf(db, sizeof(db), "%s/chain-b%d", tmpdir, c);
		struct pace pa = {0}, pb = {0};
		int64_t now = 1700000000000;
		pa.backlog = behind ? 65 : 64;
		pa.known_since = unknown ? now - 30000 : now - 3600000; /* b joined a's view */
		struct kv_io ia = pace_io(&pa), ib = pace_io(&pb);
		struct kv_engine_config ca = {
		        .dir = da, .node_name = "a", .sync_interval_ms = 10000};
		struct kv_engine_config cb = {
		        .dir = db, .node_name = "b", .sync_interval_ms = 10000};
		struct kv_engine *a = kv_engine_new(&ca, &ia, now, err, sizeof(err));
		struct kv_engine *b = kv_engine_new(&cb, &ib, now, err, sizeof(err));
		REQUIRE(a != NULL && b != NULL, "engines: %s", err);
		/* b wrote 5 keys a minute ago that gossip never brought to a */
		int ok = 0;
		for (int i = 0; i < 5; i++) {
			char key[16];
			snprintf(key, sizeof(key), "old/%d", i);
			struct kv_op op = {.verb = KV_OP_SET,
			                   .key = key,
			                   .key_len = strlen(key),
			                   .value = "v",
			                   .value_len = 1};
			kv_engine_write(b, now - 60000, &op, 1, count_done, &ok, err, sizeof(err));
		}
		REQUIRE(kv_engine_commit(b, now - 60000, err, sizeof(err)) >= 0 && ok == 5, "b: %s",
		        err);
		kv_engine_sync_timer(a); /* the period armed: 10 s */
		REQUIRE(pa.open == NULL, "no round opened while the driver refuses");
		pa.open_ok = true;
		kv_engine_sync_now(a);
		REQUIRE(pa.open != NULL, "a opened a round");
		struct kv_session *sa = pa.open, *sb = kv_engine_accept(b);
		REQUIRE(sb != NULL, "b accepted");
		struct kv_buf a2b = pa.first, b2a = {0};
		memset(&pa.first, 0, sizeof(pa.first));
		int ra = 0, rb = 0;
		for (int k = 0; k < 8 && (a2b.len > 0 || b2a.len > 0); k++) {
			if (a2b.len > 0)
				rb = engine_deliver(sb, now, &a2b, &b2a);
			if (b2a.len > 0)
				ra = engine_deliver(sa, now, &b2a, &a2b);
		}
		CHECK(ra == 1 && rb == 1, "the round ended on both sides (%d %d)", ra, rb);
		CHECK(kv_engine_commit(a, now, err, sizeof(err)) >= 0, "a commits: %s", err);
		int64_t before = pa.armed;
		pa.open_ok = false;
		kv_session_end(sb, true);
		kv_session_end(sa, true);
		CHECK_NUM(5, kv_engine_stats(a)->sync_records_in, "a took b's 5 keys");
		if (behind) {
			CHECK_NUM(0, kv_engine_stats(a)->sync_chains,
			          "no chain while gossip is behind");
			CHECK_NUM(1, kv_engine_stats(a)->sync_chains_held, "a held one");
			CHECK_NUM(before, pa.armed, "the period stands");
		} else if (unknown) {
			CHECK_NUM(0, kv_engine_stats(a)->sync_chains,
			          "no chain for records written before their writer was a member");
			CHECK_NUM(0, kv_engine_stats(a)->sync_chains_held, "none held either");
			CHECK_NUM(before, pa.armed, "the period stands");
		} else {
			CHECK_NUM(1, kv_engine_stats(a)->sync_chains, "a chain started");
			CHECK_NUM(0, kv_engine_stats(a)->sync_chains_held, "none held");
			CHECK_NUM(350000, pa.armed,
			          "the next round brought forward: 0.2 s + 0-0.3 s");
		}
		kv_buf_free(&a2b);
		kv_buf_free(&b2a);
		free(pa.first.p);
		kv_engine_free(a);
		kv_engine_free(b);
	}
}

/* A SET from "peer" at ms, as gossip carries it, merged into e. */
static int peer_set(struct kv_engine *e, const char *key, int64_t ms, const char *val)
{
	struct kv_buf b = {0};
	struct kv_rec r = rec_at(kv_hlc_from_ms(ms), val);
	char err[128];
	int rc = kv_msg_encode_set(&b, key, strlen(key), &r);
	if (rc == 0)
		rc = kv_engine_user_msg(e, ms, b.p, b.len, err, sizeof(err));
	free(b.p);
	return rc;
}

/*
 * Durability by origin: a batch of peers' records only is logged without its
 * own fdatasync and waits for the longer checkpoint; a batch with a local
 * write (or a restore) is synced. A process that dies (kill -9: _exit without
 * a checkpoint) keeps what it logged, unsynced batches included: the page
 * cache holds them and the log replays them.
 */
static void test_peers_records_are_logged_unsynced_and_survive_a_crash(void)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/unsynced", tmpdir);
	struct pace p = {0};
	struct kv_io io = pace_io(&p);
	struct kv_engine_config cfg = {.dir = dir, .node_name = "n1", .sync_interval_ms = 10000};
	int64_t now = 1700000000000LL;
	fflush(stdout);
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		/* the child writes and dies without closing (no checkpoint) */
		struct kv_engine *e = kv_engine_new(&cfg, &io, now, err, sizeof(err));
		if (e == NULL)
			_exit(10);
		struct kv_store *st = kv_engine_store(e);
		if (peer_set(e, "catalog/a", now, "A") != 1 ||
		    kv_engine_commit(e, now, err, sizeof(err)) != 1)
			_exit(11);
		if (kv_engine_stats(e)->commits_unsynced != 1 || !kv_store_dirty(st) ||
		    kv_store_dirty_synced(st))
			_exit(12); /* peers' records only: unsynced, no quick checkpoint */
		int ok = 0;
		struct kv_op op = {.verb = KV_OP_SET,
		                   .key = "mine",
		                   .key_len = 4,
		                   .value = "M",
		                   .value_len = 1};
		if (kv_engine_write(e, now + 1, &op, 1, count_done, &ok, err, sizeof(err)) != 1 ||
		    peer_set(e, "catalog/b", now + 1, "B") != 1 ||
		    kv_engine_commit(e, now + 1, err, sizeof(err)) != 1 || ok != 1)
			_exit(13);
		if (kv_engine_stats(e)->commits_unsynced != 1 || !kv_store_dirty_synced(st))
			_exit(14); /* a local write in the batch: synced, checkpoint soon */
		if (kv_store_checkpoint(st, err, sizeof(err)) < 0 || kv_store_dirty_synced(st))
			_exit(15);
		if (peer_set(e, "catalog/c", now + 2, "C") != 1 ||
		    kv_engine_commit(e, now + 2, err, sizeof(err)) != 1 ||
		    kv_engine_stats(e)->commits_unsynced != 2 || kv_store_dirty_synced(st))
			_exit(16);
		_exit(0);
	}
	int status = 0;
	REQUIRE(waitpid(pid, &status, 0) == pid, "wait");
	CHECK_INT(0, WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status),
	          "the child's step that failed (11-16)");
	struct kv_engine *e = kv_engine_new(&cfg, &io, now + 3, err, sizeof(err));
	REQUIRE(e != NULL, "reopen: %s", err);
	const char *keys[] = {"catalog/a", "mine", "catalog/b", "catalog/c"};
	for (size_t i = 0; i < 4; i++) {
		struct kv_rec got;
		int rc = kv_store_get(kv_engine_store(e), true, keys[i], strlen(keys[i]), &got);
		CHECK_INT(1, rc, "%s is there after the crash", keys[i]);
	}
	kv_engine_free(e);
}

/*
 * Gossip's record messages are named by key (io.broadcast gets it), and a SET
 * of the very version the replica stores is an echo (io.echo, counted); an
 * older version is not, nor is the first copy, which is applied and passed
 * on, unless gossip is behind (relay).
 */
static void test_gossip_echoes_and_named_broadcasts(void)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/echo", tmpdir);
	struct pace p = {0};
	struct kv_io io = pace_io(&p);
	io.echo = pace_echo;
	io.broadcast = pace_broadcast;
	struct kv_engine_config cfg = {.dir = dir, .node_name = "n1", .sync_interval_ms = 10000};
	int64_t now = 1700000000000LL;
	struct kv_engine *e = kv_engine_new(&cfg, &io, now, err, sizeof(err));
	REQUIRE(e != NULL, "engine: %s", err);
	CHECK_INT(1, peer_set(e, "catalog/a", now, "A"), "first copy applied");
	CHECK_INT(0, p.echoes, "the first copy is no echo");
	REQUIRE(kv_engine_commit(e, now, err, sizeof(err)) == 1, "commit: %s", err);
	CHECK_INT(1, p.sent, "the applied record passed on");
	CHECK_STR("catalog/a", p.sent_key, "named by its key");
	CHECK_INT(0, peer_set(e, "catalog/a", now, "A"), "second copy not applied");
	CHECK_INT(1, p.echoes, "the second copy is an echo");
	CHECK_STR("catalog/a", p.echo_key);
	CHECK_INT(0, peer_set(e, "catalog/a", now - 1000, "old"), "an older version not applied");
	CHECK_INT(1, p.echoes, "an older version is no echo");
	CHECK_NUM(1, kv_engine_stats(e)->gossip_echoes, "one echo counted");
	CHECK_NUM(1, kv_engine_stats(e)->gossip_applied, "one applied");

	/* gossip behind (over 64 queued): a peer's record is applied, not
	 * passed on; a local write still is; then relays resume */
	p.backlog = 100;
	CHECK_INT(1, peer_set(e, "catalog/b", now, "B"), "b applied");
	REQUIRE(kv_engine_commit(e, now, err, sizeof(err)) == 1, "commit: %s", err);
	CHECK_INT(1, p.sent, "b not passed on while gossip is behind");
	CHECK_NUM(1, kv_engine_stats(e)->relays_held, "one relay held");
	int ok = 0;
	struct kv_op op = {
	        .verb = KV_OP_SET, .key = "mine", .key_len = 4, .value = "M", .value_len = 1};
	REQUIRE(kv_engine_write(e, now + 1, &op, 1, count_done, &ok, err, sizeof(err)) == 1,
	        "write: %s", err);
	REQUIRE(kv_engine_commit(e, now + 1, err, sizeof(err)) == 1 && ok == 1, "commit: %s", err);
	CHECK_INT(2, p.sent, "a local write is broadcast whatever the backlog");
	CHECK_STR("mine", p.sent_key);
	p.backlog = 10;
	CHECK_INT(1, peer_set(e, "catalog/c", now + 2, "C"), "c applied");
	REQUIRE(kv_engine_commit(e, now + 2, err, sizeof(err)) == 1, "commit: %s", err);
	CHECK_INT(3, p.sent, "c passed on once the queue is short");
	CHECK_NUM(1, kv_engine_stats(e)->relays_held, "still one held");
	kv_engine_free(e);
}

/* Joins bring a round forward (0.35 s with pace_rand), but at most once per
 * KV_SYNC_JOIN_GAP_MS and not while gossip has over 64 messages queued: a
 * join storm must not keep every agent in rounds. */
static void test_joins_bring_a_round_forward_once_per_gap(void)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/joingap", tmpdir);
	struct pace p = {0};
	struct kv_io io = pace_io(&p);
	struct kv_engine_config cfg = {.dir = dir, .node_name = "n1", .sync_interval_ms = 10000};
	int64_t now = 1700000000000LL;
	struct kv_engine *e = kv_engine_new(&cfg, &io, now, err, sizeof(err));
	REQUIRE(e != NULL, "engine: %s", err);
	kv_engine_sync_timer(e);
	CHECK_NUM(10000000, p.armed, "base period");
	kv_engine_peer_joined(e, now);
	CHECK_NUM(350000, p.armed, "the first join: a round in 0.2 + 0.15 s");
	p.armed = 10000000; /* that round ran; the period is armed again */
	kv_engine_peer_joined(e, now + 100);
	kv_engine_peer_joined(e, now + KV_SYNC_JOIN_GAP_MS - 1);
	CHECK_NUM(10000000, p.armed, "joins within the gap leave the timer alone");
	kv_engine_peer_joined(e, now + KV_SYNC_JOIN_GAP_MS);
	CHECK_NUM(350000, p.armed, "a join after the gap brings a round forward again");
	/* gossip behind (over 64 queued): joins leave the period alone */
	p.armed = 10000000;
	p.backlog = 65;
	kv_engine_peer_joined(e, now + 3 * KV_SYNC_JOIN_GAP_MS);
	CHECK_NUM(10000000, p.armed, "a join while gossip is behind leaves the timer alone");
	CHECK_NUM(1, kv_engine_stats(e)->join_rounds_held, "held, counted");
	p.backlog = 64;
	kv_engine_peer_joined(e, now + 3 * KV_SYNC_JOIN_GAP_MS + 1);
	CHECK_NUM(350000, p.armed, "64 queued: the join brings a round forward");
	kv_engine_free(e);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kv_repl.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_large_difference_travels_in_bounded_frames);
	RUN(test_initiator_sends_only_what_the_responder_lacks);
	RUN(test_equal_roots_cost_one_frame_each_way);
	RUN(test_root_frames_are_checked);
	RUN(test_idle_back_off_is_2x_and_a_failed_round_cancels_it);
	RUN(test_late_records_chain_unless_gossip_is_behind);
	RUN(test_lazy_pump_follows_the_socket);
	RUN(test_sealed_frames_open_only_with_a_key_their_way_untouched);
	RUN(test_merge_refuses_versions_far_ahead_and_heals_poison);
	RUN(test_peers_records_are_logged_unsynced_and_survive_a_crash);
	RUN(test_gossip_echoes_and_named_broadcasts);
	RUN(test_joins_bring_a_round_forward_once_per_gap);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
