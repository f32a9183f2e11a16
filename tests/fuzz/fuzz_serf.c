/*
 * tests/fuzz/fuzz_serf.c — serf's message decoders, the serf layer and the
 * gossip decryption over arbitrary bytes.
 *
 * Each input is: (1) decoded as every serf message type (the first byte
 * picks the type as serf_handle_msg does), and whatever decodes is encoded
 * and decoded again to the same fields; (2) fed to a serf layer as a user
 * message and as push-pull state; (3) offered to the keyring as an
 * encrypted packet and stream (it must fail cleanly: nobody knows the key).
 * Any crash, sanitizer report or broken invariant aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/keyring.h"
#include "gossip/serf.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_serf: %s:%d: %s\n", __FILE__, __LINE__, #c);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void bcast(void *ctx, const uint8_t *m, size_t len)
{
	(void)ctx;
	ASSERT(len > 0);
	(void)m;
}

static void send_to(void *ctx, const struct ml_addr *to, const uint8_t *m, size_t len)
{
	(void)ctx;
	(void)to;
	(void)m;
	ASSERT(len > 0);
}

static void round_trips(const uint8_t *d, size_t n)
{
	static uint8_t buf[1 << 17];
	struct serf_msg_user_event e, e2;
	if (serf_decode_user_event(d, n, &e) == ML_OK) {
		int k = serf_encode_user_event(buf, sizeof(buf), &e);
		ASSERT(k > 0);
		ASSERT(serf_decode_user_event(buf + 1, (size_t)k - 1, &e2) == ML_OK);
		ASSERT(e2.ltime == e.ltime && e2.name_len == e.name_len &&
		       e2.payload_len == e.payload_len && e2.cc == e.cc);
	}
	static struct serf_msg_query q, q2;
	if (serf_decode_query(d, n, &q) == ML_OK) {
		int k = serf_encode_query(buf, sizeof(buf), &q);
		ASSERT(k > 0);
		ASSERT(serf_decode_query(buf + 1, (size_t)k - 1, &q2) == ML_OK);
		ASSERT(q2.id == q.id && q2.ltime == q.ltime && q2.nfilters == q.nfilters &&
		       q2.payload_len == q.payload_len && q2.timeout_ns == q.timeout_ns);
	}
	struct serf_msg_join j, j2;
	if (serf_decode_join(d, n, &j) == ML_OK) {
		int k = serf_encode_join(buf, sizeof(buf), &j);
		ASSERT(k > 0 && serf_decode_join(buf + 1, (size_t)k - 1, &j2) == ML_OK);
		ASSERT(j2.ltime == j.ltime && strcmp(j2.node, j.node) == 0);
	}
	struct serf_msg_leave l, l2;
	if (serf_decode_leave(d, n, &l) == ML_OK) {
		int k = serf_encode_leave(buf, sizeof(buf), &l);
		ASSERT(k > 0 && serf_decode_leave(buf + 1, (size_t)k - 1, &l2) == ML_OK);
		ASSERT(l2.ltime == l.ltime && l2.prune == l.prune);
	}
	static struct serf_msg_query_response r;
	serf_decode_query_response(d, n, &r);
	static struct serf_key_response kr;
	serf_decode_key_response(d, n, &kr);
	const uint8_t *key;
	size_t klen;
	serf_decode_key_request(d, n, &key, &klen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	round_trips(data + 1, size - 1);

	struct serf_io io = {.broadcast = bcast, .send_to = send_to};
	struct serf *s = serf_new("fuzz", &io);
	ASSERT(s != NULL);
	serf_member_event(s, SWIM_EV_JOIN, "a");
	uint8_t *m = malloc(size);
	memcpy(m, data, size);
	m[0] %= 10; /* a serf type */
	serf_handle_msg(s, 0, m, size);
	m[0] = SERF_MSG_PUSH_PULL;
	serf_merge_state(s, m, size, data[0] & 1);
	size_t len;
	uint8_t *st = serf_local_state_new(s, &len);
	ASSERT(st != NULL && len > 0);
	serf_merge_state(s, st, len, false);
	free(st);
	free(m);
	serf_free(s);

	if (keyring_available()) {
		static struct keyring *k;
		if (k == NULL) {
			uint8_t key32[KEYRING_KEY_LEN];
			char err[128];
			memset(key32, 0x5a, sizeof(key32));
			k = keyring_new();
			keyring_add(k, key32, err, sizeof(err));
		}
		static uint8_t out[1 << 17];
		ASSERT(keyring_decrypt(k, data, size, NULL, 0, out, sizeof(out)) < 0);
		uint8_t *plain = NULL;
		size_t plen, used;
		int rc = keyring_decrypt_stream(k, data, size, &plain, &plen, &used);
		ASSERT(rc != ML_OK);
		free(plain);
	}
	return 0;
}
