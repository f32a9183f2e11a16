/*
 * tests/fuzz/fuzz_kv.c — every decoder of KV replication bytes.
 *
 * Each input is read as:
 *  1. a gossip user message (kv_msg_decode); a SET that decodes is
 *     re-encoded and must give back the same bytes;
 *  2. a sync stream: frames split by kv_frame_next and fed to a responder
 *     session and to an initiator session over a scratch LMDB store (the
 *     write transaction is aborted after each input, so runs are independent);
 *  3. a RECORDS body and a run of bare records (each must re-encode to
 *     the bytes it was decoded from: versions 1, 2 and 3, Raft indexes
 *     included);
 *  4. a sealed sync frame (kv_frame_open with a fixed key: anything but a
 *     frame that key sealed is refused), and a seal/open round trip of the
 *     input taken as one frame's payload.
 * Any crash, sanitizer report or broken invariant aborts.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gossip/keyring.h"
#include "kv/repl.h"
#include "kv/store.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_kv: %s:%d: %s\n", __FILE__, __LINE__, #c);           \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct kv_store *store;

static int merge(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_rec old;
	if (kv_store_begin(store) < 0)
		return -1;
	int got = kv_store_get(store, false, key, key_len, &old);
	if (got == 1 && kv_rec_cmp(r, &old) <= 0)
		return 0;
	return kv_store_put(store, key, key_len, r) == 0 ? 1 : -1;
}

static void open_store(void)
{
	if (store != NULL)
		return;
	char dir[] = "/tmp/fuzz_kv.XXXXXX", err[256];
	if (mkdtemp(dir) == NULL)
		abort();
	store = kv_store_open(dir, 64u << 20, err, sizeof(err));
	ASSERT(store != NULL);
}

static void feed_session(enum kv_sync_role role, bool digest_first, const uint8_t *p, size_t len)
{
	struct kv_sync s;
	struct kv_buf out = {0};
	char err[256];
	if (digest_first)
		kv_sync_start_digest(&s, store, merge, NULL, &out);
	else
		kv_sync_start(&s, role, store, merge, NULL, "k", 1, &out);
	size_t off = 0;
	while (off < len) {
		uint8_t t;
		const uint8_t *pl;
		size_t pn;
		long n = kv_frame_next(p + off, len - off, &t, &pl, &pn, err, sizeof(err));
		if (n <= 0)
			break;
		ASSERT((size_t)n <= len - off);
		off += (size_t)n;
		if (kv_sync_feed(&s, t, pl, pn, &out, err, sizeof(err)) != 0)
			break;
	}
	kv_store_abort(store);
	kv_buf_free(&out);
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

/* Sealed frames: the input as a frame to open, and as a payload to seal
 * and open again unchanged. */
static void sealed(const uint8_t *data, size_t size)
{
	static struct keyring *ring;
	if (!keyring_available())
		return;
	if (ring == NULL) {
		uint8_t k[KEYRING_KEY_LEN];
		char err[64];
		memset(k, 7, sizeof(k));
		ring = keyring_new();
		ASSERT(keyring_add(ring, k, err, sizeof(err)) == 0);
	}
	struct kv_seal s = {ring, KEYRING_OVERHEAD, ring_encrypt, ring_decrypt};
	struct kv_buf plain = {0}, frame = {0}, out = {0};
	char err[128];
	uint8_t t;
	const uint8_t *pl;
	size_t pn;
	long n = kv_frame_next(data, size, &t, &pl, &pn, err, sizeof(err));
	if (n > 0 && t == KV_F_SEALED)
		ASSERT(kv_frame_open(&s, true, data, pl, pn, &plain, &t, &pl, &pn, err,
		                     sizeof(err)) < 0); /* nobody without the key seals */
	if (size > 0 && size < KV_FRAME_MAX) {
		uint8_t h[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
		                (uint8_t)size};
		frame.p = malloc(size + 4);
		ASSERT(frame.p != NULL);
		memcpy(frame.p, h, 4);
		memcpy(frame.p + 4, data, size);
		frame.len = frame.cap = size + 4;
		ASSERT(kv_frames_seal(&s, false, frame.p, frame.len, &out) == 0);
		ASSERT(kv_frame_next(out.p, out.len, &t, &pl, &pn, err, sizeof(err)) ==
		       (long)out.len);
		ASSERT(kv_frame_open(&s, false, out.p, pl, pn, &plain, &t, &pl, &pn, err,
		                     sizeof(err)) == 0 ||
		       data[0] == KV_F_SEALED);
		if (data[0] != KV_F_SEALED)
			ASSERT(t == data[0] && pn == size - 1 && memcmp(pl, data + 1, pn) == 0);
	}
	kv_buf_free(&plain);
	kv_buf_free(&frame);
	kv_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	open_store();

	struct kv_msg m;
	if (kv_msg_decode(data, size, &m, err, sizeof(err)) == 0 && m.type == KV_MSG_SET) {
		struct kv_buf b = {0};
		ASSERT(kv_msg_encode_set(&b, m.key, m.key_len, &m.rec) == 0);
		ASSERT(b.len == size && memcmp(b.p, data, size) == 0);
		kv_buf_free(&b);
	}

	feed_session(KV_SYNC_RESPONDER, false, data, size);
	feed_session(KV_SYNC_INITIATOR, false, data, size); /* ROOT first */
	feed_session(KV_SYNC_INITIATOR, true, data, size);  /* DIGEST first */
	feed_session(KV_SYNC_PULLER, false, data, size);

	sealed(data, size);
	kv_records_decode(data, size, NULL, NULL, err, sizeof(err));
	const uint8_t *p = data, *end = data + size;
	struct kv_rec r;
	const uint8_t *start = p;
	while (p < end && kv_rec_decode(&p, end, &r, err, sizeof(err)) == 0) {
		ASSERT(p <= end);
		/* one encoding per record (versions 1, 2, 3): the same bytes back */
		uint8_t *again = malloc(kv_rec_size(&r));
		ASSERT(again != NULL && (size_t)(p - start) == kv_rec_size(&r));
		ASSERT(kv_rec_encode(&r, again) == again + kv_rec_size(&r));
		ASSERT(memcmp(again, start, kv_rec_size(&r)) == 0);
		ASSERT(!kv_rec_raft(&r) || (r.raft_create >= 1 && r.raft_create <= r.raft_index));
		free(again);
		start = p;
	}
	return 0;
}
