/*
 * tests/fuzz/fuzz_wire.c — every memberlist decoder over arbitrary bytes.
 *
 * Each input is read three ways:
 *  1. as a UDP packet: dispatch on the type byte through has-CRC, compress
 *     and compound (nested, depth-limited) down to each message decoder;
 *     every message that decodes is re-encoded, decoded again and re-encoded
 *     again, and the two encodings must be identical;
 *  2. as a TCP stream: an optional compress wrapper, then a push-pull
 *     header, its nodes and the user state, or a user message header, with
 *     ML_AGAIN checked to leave the position alone;
 *  3. as raw LZW (decompress) and as LZW input (compress, decompress, compare),
 *     and as an address string;
 *  4. as a stream fed to the SWIM core (gossip/swim.c), whole and then a
 *     chunk at a time with a swim_stream_scan: both must end the same way
 *     (the scan resumes; it must never accept what the whole refuses);
 *  5. as one msgpack object for lib/mp's mp_skip (every shorter prefix must
 *     answer MP_AGAIN without moving) and as node meta for tags_decode
 *     (what decodes re-encodes and decodes to the same tags).
 * Any crash, sanitizer report or broken invariant aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/swim.h"
#include "gossip/tags.h"
#include "gossip/wire.h"
#include "lib/mp.h"
#include "tests/fuzz/lzw_ref.h"

#define MAX_DEPTH 4

static uint8_t scratch[MAX_DEPTH][1 << 16];

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_wire: %s:%d: %s\n", __FILE__, __LINE__, #c);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* decode; on success encode, decode the encoding, encode again: same bytes */
#define STABLE(T, dec, enc, p, end)                                                                \
	do {                                                                                       \
		T a_, b_;                                                                          \
		static uint8_t e1_[4096], e2_[4096];                                               \
		const uint8_t *q_ = (p);                                                           \
		int rc_ = dec(&q_, (end), &a_);                                                    \
		ASSERT(rc_ == ML_OK || rc_ == ML_BAD || rc_ == ML_AGAIN);                          \
		if (rc_ != ML_OK) {                                                                \
			ASSERT(q_ == (p));                                                         \
			ASSERT(ml_wire_error()[0] != 0);                                           \
			break;                                                                     \
		}                                                                                  \
		ASSERT(q_ > (p) && q_ <= (end));                                                   \
		int n1_ = enc(e1_, sizeof(e1_), &a_);                                              \
		ASSERT(n1_ > 0);                                                                   \
		const uint8_t *r_ = e1_ + off_;                                                    \
		ASSERT(dec(&r_, e1_ + n1_, &b_) == ML_OK);                                         \
		ASSERT(r_ == e1_ + n1_);                                                           \
		int n2_ = enc(e2_, sizeof(e2_), &b_);                                              \
		ASSERT(n2_ == n1_ && memcmp(e1_, e2_, (size_t)n1_) == 0);                          \
	} while (0)

static void walk_packet(const uint8_t *p, size_t len, int depth)
{
	const uint8_t *end = p + len;
	size_t off_ = 1; /* message encoders write the type byte */
	if (len == 0 || depth >= MAX_DEPTH)
		return;
	switch (p[0]) {
	case ML_HAS_CRC: {
		struct ml_slice in;
		if (ml_crc_check(p, len, &in) == ML_OK) {
			ASSERT(in.p == p + 5 && in.len == len - 5);
			walk_packet(in.p, in.len, depth + 1);
		} else if (len >= 5) {
			/* walk the payload anyway, as if the CRC had matched */
			walk_packet(p + 5, len - 5, depth + 1);
		}
		break;
	}
	case ML_COMPRESS: {
		int n = ml_compress_decode(p + 1, len - 1, scratch[depth], sizeof(scratch[depth]));
		if (n > 0)
			walk_packet(scratch[depth], (size_t)n, depth + 1);
		break;
	}
	case ML_COMPOUND: {
		struct ml_slice parts[ML_COMPOUND_MAX];
		int trunc = -1;
		int n = ml_compound_decode(p + 1, len - 1, parts, ML_COMPOUND_MAX, &trunc);
		ASSERT(n >= -1 && n <= ML_COMPOUND_MAX);
		for (int i = 0; i < n; i++) {
			ASSERT(parts[i].p >= p && parts[i].p + parts[i].len <= end);
			walk_packet(parts[i].p, parts[i].len, depth + 1);
		}
		break;
	}
	case ML_PING:
		STABLE(struct ml_ping, ml_decode_ping, ml_encode_ping, p + 1, end);
		break;
	case ML_INDIRECT_PING:
		STABLE(struct ml_indirect_ping, ml_decode_indirect_ping, ml_encode_indirect_ping,
		       p + 1, end);
		break;
	case ML_ACK:
		STABLE(struct ml_ack, ml_decode_ack, ml_encode_ack, p + 1, end);
		break;
	case ML_NACK:
		STABLE(struct ml_nack, ml_decode_nack, ml_encode_nack, p + 1, end);
		break;
	case ML_SUSPECT:
		STABLE(struct ml_suspect, ml_decode_suspect, ml_encode_suspect, p + 1, end);
		break;
	case ML_DEAD:
		STABLE(struct ml_suspect, ml_decode_dead, ml_encode_dead, p + 1, end);
		break;
	case ML_ALIVE:
		STABLE(struct ml_alive, ml_decode_alive, ml_encode_alive, p + 1, end);
		break;
	case ML_ERR:
		STABLE(struct ml_err_resp, ml_decode_err, ml_encode_err, p + 1, end);
		break;
	case ML_RUMOR_DIGEST:
		STABLE(struct ml_digest, ml_decode_digest, ml_encode_digest, p + 1, end);
		break;
	default:
		break;
	}
}

static void walk_stream(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	size_t off_ = 0; /* stream pieces have no type byte */
	if (len == 0)
		return;
	if (p[0] == ML_COMPRESS) {
		const uint8_t *q = p + 1, *fq = p + 1;
		size_t n = 0;
		struct ml_slice lzw;
		int frc = ml_compress_frame(&fq, end, &lzw);
		int rc = ml_compress_decode_stream(&q, end, scratch[0], sizeof(scratch[0]), &n);
		ASSERT(rc == ML_OK || rc == ML_BAD || rc == ML_AGAIN);
		/* the frame answers as the decoder does, short of decompressing */
		ASSERT(frc == rc || (frc == ML_OK && rc == ML_BAD));
		ASSERT(frc == ML_OK ? fq > p + 1 && (lzw.len == 0 ||
		                                     (lzw.p >= p && lzw.p + lzw.len <= end))
		                    : fq == p + 1);
		if (rc != ML_OK) {
			ASSERT(q == p + 1);
			return;
		}
		ASSERT(n <= sizeof(scratch[0]));
		p = scratch[0];
		end = p + n;
		if (n == 0)
			return;
	}
	if (p[0] == ML_PUSH_PULL) {
		const uint8_t *q = p + 1;
		struct ml_push_pull_header h;
		STABLE(struct ml_push_pull_header, ml_decode_push_pull_header,
		       ml_encode_push_pull_header, q, end);
		if (ml_decode_push_pull_header(&q, end, &h) != ML_OK)
			return;
		ASSERT(h.user_state_len <= ML_PUSH_STATE_MAX && h.nodes <= ML_PUSH_STATE_MAX);
		for (uint32_t i = 0; i < h.nodes; i++) {
			struct ml_push_node nd;
			STABLE(struct ml_push_node, ml_decode_push_node, ml_encode_push_node, q,
			       end);
			if (ml_decode_push_node(&q, end, &nd) != ML_OK)
				return;
			ASSERT(nd.state <= ML_STATE_LEFT && nd.meta_len <= ML_META_MAX);
		}
	} else if (p[0] == ML_USER) {
		const uint8_t *q = p + 1;
		STABLE(struct ml_user_msg_header, ml_decode_user_msg_header,
		       ml_encode_user_msg_header, q, end);
	}
}

static void no_send(void *c, const struct ml_addr *to, const uint8_t *p, size_t len)
{
}

static uint32_t no_rand(void *c)
{
	return 4; /* chosen by a fair die roll: the runs must be repeatable */
}

static void no_push_pull(void *c, const struct ml_addr *to, const char *name, bool join)
{
}

static struct swim *fuzz_swim(void)
{
	struct swim_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "fuzz";
	cfg.addr = (struct ml_addr){.len = 4, .ip = {127, 0, 0, 1}, .port = 8301};
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(cfg.vsn, vsn, 6);
	swim_timing_profile(&cfg.timing, "lan");
	cfg.push_pull_max_nodes = 64; /* reached by small inputs too */
	struct swim_io io = {.send = no_send, .rand32 = no_rand, .push_pull = no_push_pull};
	char err[128];
	struct swim *s = swim_new(&cfg, &io, 1000, err, sizeof(err));
	ASSERT(s != NULL);
	return s;
}

/* The stream whole, then in chunks with a scan: the same ending. */
static void walk_swim_stream(const uint8_t *p, size_t len)
{
	if (len == 0 || (p[0] != ML_PUSH_PULL && p[0] != ML_COMPRESS))
		return;
	struct swim *a = fuzz_swim(), *b = fuzz_swim();
	struct swim_stream_result ra, rb;
	int whole = swim_stream_recv(a, 1000, p, len, false, &ra);
	free(ra.reply);
	struct swim_stream_scan scan;
	memset(&scan, 0, sizeof(scan));
	size_t step = 1 + p[len - 1] % 97;
	int rc = ML_AGAIN;
	for (size_t have = step; rc == ML_AGAIN; have += step) {
		size_t n = have < len ? have : len;
		rc = swim_stream_recv_scan(b, 1000, p, n, false, &scan, &rb);
		free(rb.reply);
		ASSERT(scan.off <= n);
		if (n == len)
			break;
	}
	ASSERT(rc == whole);
	ASSERT(swim_member_count(a) == swim_member_count(b));
	swim_free(a);
	swim_free(b);
}

/* lib/mp's skip and serf's tags in node meta (gossip/tags.c). */
static void walk_mp(const uint8_t *p, size_t len)
{
	struct cursor c = {p, p + len};
	int rc = mp_skip(&c);
	ASSERT(rc == MP_OK || rc == MP_BAD || rc == MP_AGAIN);
	ASSERT(rc == MP_OK ? c.p > p && c.p <= p + len : c.p == p);
	if (rc == MP_OK && len <= 4096) {
		size_t used = (size_t)(c.p - p);
		for (size_t cut = 0; cut < used; cut += 1 + cut / 8) {
			struct cursor s = {p, p + cut};
			ASSERT(mp_skip(&s) == MP_AGAIN && s.p == p);
		}
	}
	static struct tag t[TAGS_MAX], t2[TAGS_MAX];
	static uint8_t meta[TAGS_MAX * (TAG_KEY_MAX + TAG_VALUE_MAX + 12)];
	int n = tags_decode(p, len, t, TAGS_MAX);
	ASSERT(n >= -1 && n <= TAGS_MAX);
	if (n > 0 && p[0] == TAGS_MAGIC) {
		int k = tags_encode(meta, sizeof(meta), t, (size_t)n);
		ASSERT(k > 0);
		ASSERT(tags_decode(meta, (size_t)k, t2, TAGS_MAX) == n);
		for (int i = 0; i < n; i++)
			ASSERT(strcmp(t[i].key, t2[i].key) == 0 &&
			       strcmp(t[i].value, t2[i].value) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t z[3 * (1 << 16)], back[1 << 16];
	if (size > (1 << 16))
		return 0;

	walk_packet(data, size, 0);
	walk_stream(data, size);
	walk_swim_stream(data, size);
	walk_mp(data, size);

	/* raw LZW: decompress anything, with the same result as the reference
	 * decoder (errors included); compress/decompress must round trip */
	static uint8_t ref[1 << 16];
	int n = ml_lzw_decompress(data, size, back, sizeof(back));
	ASSERT(n >= -1 && n <= (int)sizeof(back));
	int rn = lzw_ref_decompress(data, size, ref, sizeof(ref));
	ASSERT(n == rn && (n <= 0 || memcmp(back, ref, (size_t)n) == 0));
	/* and with the output cut short where the reference succeeded */
	if (rn > 0) {
		ASSERT(ml_lzw_decompress(data, size, back, (size_t)rn - 1) == -1);
		ASSERT(ml_lzw_decompress(data, size, back, (size_t)rn) == rn);
	}
	int zn = ml_lzw_compress(data, size, z, sizeof(z));
	ASSERT(zn > 0);
	n = ml_lzw_decompress(z, (size_t)zn, back, sizeof(back));
	ASSERT(n == (int)size && memcmp(back, data, size) == 0);

	/* the bytes as an address string */
	char s[64];
	size_t sl = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
	memcpy(s, data, sl);
	s[sl] = 0;
	struct ml_addr a;
	if (ml_addr_parse(s, 8301, &a) == 0) {
		char buf[64];
		ml_addr_str(&a, buf, sizeof(buf));
		struct ml_addr b;
		ASSERT(ml_addr_parse(buf, 0, &b) == 0 && ml_addr_equal(&a, &b));
	}
	return 0;
}
