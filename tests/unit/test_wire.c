/*
 * tests/unit/test_wire.c — memberlist wire codec: round trips of every
 * message, compound/CRC/compress framings, LZW, and serf 0.8.2's own bytes
 * (tests/fixtures/serf-0.8.2, extracted from a capture by
 * tests/fixtures/extract_pcap.py): every datagram and push-pull stream is
 * unwrapped down to its messages, each is decoded, re-encoded and compared
 * byte for byte with what serf sent. RUMOR_WIRE_DUMP=1 prints what it saw.
 */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/wire.h"
#include "tests/fuzz/lzw_ref.h"
#include "tests/unit/check.h"

#ifndef RUMOR_FIXTURES
#define RUMOR_FIXTURES "tests/fixtures"
#endif
#define SERF_DIR RUMOR_FIXTURES "/serf-0.8.2"

static bool dump;

/* CHECK_INT with the decoder's last error after the (literal) description */
#define CHECK_WIRE(exp, act, what) CHECK_INT(exp, act, what " (%s)", ml_wire_error())

static void hexdump(const char *label, const uint8_t *p, size_t n)
{
	fprintf(stderr, "    %s (%zu):", label, n);
	for (size_t i = 0; i < n && i < 96; i++)
		fprintf(stderr, " %02x", p[i]);
	fprintf(stderr, n > 96 ? " ...\n" : "\n");
}

static void check_bytes(const char *what, const uint8_t *exp, size_t elen, const uint8_t *act,
                        long alen)
{
	bool same = alen >= 0 && (size_t)alen == elen && memcmp(exp, act, elen) == 0;
	CHECK(same, "%s: bytes differ", what);
	if (!same) {
		hexdump("expected", exp, elen);
		hexdump("actual", act, alen < 0 ? 0 : (size_t)alen);
	}
}

/* ---- round trips ---------------------------------------------------------- */

static struct ml_addr addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
	struct ml_addr x;
	memset(&x, 0, sizeof(x));
	x.ip[0] = a, x.ip[1] = b, x.ip[2] = c, x.ip[3] = d;
	x.len = 4;
	x.port = port;
	return x;
}

static void test_ping_round_trip_without_source(void)
{
	struct ml_ping m, d;
	uint8_t buf[256];
	memset(&m, 0, sizeof(m));
	m.seq = 7;
	strcpy(m.node, "beta");
	int n = ml_encode_ping(buf, sizeof(buf), &m);
	/* Go: 00 82 a4 Node a4 beta a5 SeqNo 07 */
	static const uint8_t want[] = {0x00, 0x82, 0xa4, 'N', 'o', 'd', 'e', 0xa4, 'b', 'e',
	                               't',  'a',  0xa5, 'S', 'e', 'q', 'N', 'o',  0x07};
	check_bytes("ping", want, sizeof(want), buf, n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_ping(&p, buf + n, &d), "decode");
	CHECK(p == buf + n, "decoder did not consume all");
	CHECK_WIRE(7, d.seq, "seq");
	CHECK(strcmp(d.node, "beta") == 0, "node %s", d.node);
	CHECK_WIRE(0, d.source.len, "source len");
}

static void test_ping_round_trip_with_source(void)
{
	struct ml_ping m, d;
	uint8_t buf[256], again[256];
	memset(&m, 0, sizeof(m));
	m.seq = 70000;
	strcpy(m.node, "beta");
	m.source = addr4(127, 0, 0, 1, 27946);
	strcpy(m.source_node, "alpha");
	int n = ml_encode_ping(buf, sizeof(buf), &m);
	CHECK(n > 0, "encode %d", n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_ping(&p, buf + n, &d), "decode");
	CHECK_WIRE(70000, d.seq, "seq");
	CHECK(ml_addr_equal(&d.source, &m.source), "source addr");
	CHECK(strcmp(d.source_node, "alpha") == 0, "source node %s", d.source_node);
	check_bytes("re-encode", buf, (size_t)n, again, ml_encode_ping(again, sizeof(again), &d));
	CHECK_WIRE(-1, ml_encode_ping(buf, (size_t)n - 1, &m), "encode into short buffer");
}

static void test_indirect_ping_round_trip_with_nack(void)
{
	struct ml_indirect_ping m, d;
	uint8_t buf[512], again[512];
	memset(&m, 0, sizeof(m));
	m.seq = 300;
	m.target = addr4(10, 0, 0, 3, 8301);
	strcpy(m.node, "gamma");
	m.nack = true;
	m.source = addr4(10, 0, 0, 1, 8301);
	strcpy(m.source_node, "alpha");
	int n = ml_encode_indirect_ping(buf, sizeof(buf), &m);
	CHECK(n > 0 && buf[0] == ML_INDIRECT_PING, "encode %d", n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_indirect_ping(&p, buf + n, &d), "decode");
	CHECK(d.nack, "nack lost");
	CHECK_WIRE(300, d.seq, "seq");
	CHECK(ml_addr_equal(&d.target, &m.target), "target");
	CHECK(ml_addr_equal(&d.source, &m.source), "source");
	CHECK(strcmp(d.node, "gamma") == 0 && strcmp(d.source_node, "alpha") == 0, "names");
	check_bytes("re-encode", buf, (size_t)n, again,
	            ml_encode_indirect_ping(again, sizeof(again), &d));
}

static void test_ack_round_trip_with_and_without_payload(void)
{
	struct ml_ack m, d;
	uint8_t buf[2048];
	memset(&m, 0, sizeof(m));
	m.seq = 5;
	int n = ml_encode_ack(buf, sizeof(buf), &m);
	static const uint8_t want[] = {0x02, 0x82, 0xa7, 'P', 'a', 'y', 'l', 'o', 'a',
	                               'd',  0xc0, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x05};
	check_bytes("ack without payload", want, sizeof(want), buf, n);
	m.payload_len = 300;
	for (int i = 0; i < 300; i++)
		m.payload[i] = (uint8_t)i;
	n = ml_encode_ack(buf, sizeof(buf), &m);
	CHECK(n > 0, "encode %d", n);
	CHECK(buf[10] == 0xda, "300-byte payload should be raw16, got %02x", buf[10]);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_ack(&p, buf + n, &d), "decode");
	CHECK_WIRE(300, d.payload_len, "payload len");
	CHECK(memcmp(d.payload, m.payload, 300) == 0, "payload bytes");
}

static void test_nack_round_trip(void)
{
	struct ml_nack m = {.seq = 0xffffffffu}, d;
	uint8_t buf[64];
	int n = ml_encode_nack(buf, sizeof(buf), &m);
	static const uint8_t want[] = {0x0b, 0x81, 0xa5, 'S',  'e',  'q', 'N',
	                               'o',  0xce, 0xff, 0xff, 0xff, 0xff};
	check_bytes("nack", want, sizeof(want), buf, n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_nack(&p, buf + n, &d), "decode");
	CHECK(d.seq == 0xffffffffu, "seq %u", d.seq);
}

/* rumor's own digest message: type 64, a map of Digest (8 bytes),
 * Members and Node, keys sorted as go-msgpack would write them; a Digest
 * of any other length is refused. */
static void test_digest_round_trip_and_wrong_length(void)
{
	struct ml_digest m, d;
	memset(&m, 0, sizeof(m));
	m.digest_len = 8;
	for (int i = 0; i < 8; i++)
		m.digest[i] = (uint8_t)(0xf0 + i);
	m.members = 1000;
	snprintf(m.node, sizeof(m.node), "n1");
	uint8_t buf[128];
	int n = ml_encode_digest(buf, sizeof(buf), &m);
	static const uint8_t want[] = {0x40, 0x83, 0xa6, 'D',  'i',  'g',  'e',  's',  't',  0xa8,
	                               0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xa7, 'M',
	                               'e',  'm',  'b',  'e',  'r',  's',  0xcd, 0x03, 0xe8, 0xa4,
	                               'N',  'o',  'd',  'e',  0xa2, 'n',  '1'};
	check_bytes("digest", want, sizeof(want), buf, n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_digest(&p, buf + n, &d), "decode");
	CHECK(memcmp(d.digest, m.digest, 8) == 0 && d.members == 1000 && strcmp(d.node, "n1") == 0,
	      "fields");
	m.digest_len = 7;
	n = ml_encode_digest(buf, sizeof(buf), &m);
	p = buf + 1;
	CHECK_WIRE(ML_BAD, ml_decode_digest(&p, buf + n, &d), "7-byte digest");
	CHECK_STR("digest: Digest: want 8 bytes", ml_wire_error());
}

static void test_suspect_and_dead_round_trip(void)
{
	struct ml_suspect m, d;
	uint8_t buf[256], again[256];
	memset(&m, 0, sizeof(m));
	m.incarnation = 200;
	strcpy(m.node, "gamma");
	strcpy(m.from, "alpha");
	int n = ml_encode_suspect(buf, sizeof(buf), &m);
	CHECK(n > 0 && buf[0] == ML_SUSPECT, "suspect %d", n);
	/* 200 does not fit a positive fixint: uint8 form */
	CHECK(memmem(buf, (size_t)n, "\xabIncarnation\xcc\xc8", 14) != NULL,
	      "Incarnation as cc c8");
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_suspect(&p, buf + n, &d), "decode suspect");
	CHECK(d.incarnation == 200 && !strcmp(d.node, "gamma") && !strcmp(d.from, "alpha"),
	      "fields");
	n = ml_encode_dead(buf, sizeof(buf), &m);
	CHECK(n > 0 && buf[0] == ML_DEAD, "dead %d", n);
	p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_dead(&p, buf + n, &d), "decode dead");
	check_bytes("dead re-encode", buf, (size_t)n, again,
	            ml_encode_dead(again, sizeof(again), &d));
}

static void test_alive_round_trip_with_meta_and_vsn(void)
{
	struct ml_alive m, d;
	uint8_t buf[1024], again[1024];
	memset(&m, 0, sizeof(m));
	m.incarnation = 2;
	strcpy(m.node, "gamma");
	m.addr = addr4(127, 0, 0, 1, 27948);
	m.meta_len = 40;
	memset(m.meta, 'm', 40);
	static const uint8_t vsn[6] = {1, 5, 5, 2, 5, 4};
	memcpy(m.vsn, vsn, 6);
	m.has_vsn = true;
	int n = ml_encode_alive(buf, sizeof(buf), &m);
	CHECK(n > 0 && buf[0] == ML_ALIVE && buf[1] == 0x86, "alive %d", n);
	CHECK(memmem(buf, (size_t)n, "\xa3Vsn\xa6\x01\x05\x05\x02\x05\x04", 11) != NULL,
	      "Vsn as 6-byte raw");
	CHECK(memmem(buf, (size_t)n, "\xa4Meta\xda\x00\x28", 8) != NULL, "40-byte Meta as raw16");
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_alive(&p, buf + n, &d), "decode");
	CHECK(d.has_vsn && memcmp(d.vsn, vsn, 6) == 0, "vsn");
	CHECK(d.meta_len == 40 && d.meta[39] == 'm', "meta");
	CHECK(ml_addr_equal(&d.addr, &m.addr), "addr");
	check_bytes("re-encode", buf, (size_t)n, again, ml_encode_alive(again, sizeof(again), &d));
	/* no vsn, no meta: both nil */
	m.has_vsn = false;
	m.meta_len = 0;
	n = ml_encode_alive(buf, sizeof(buf), &m);
	CHECK(memmem(buf, (size_t)n, "\xa3Vsn\xc0", 5) != NULL, "nil Vsn");
	CHECK(memmem(buf, (size_t)n, "\xa4Meta\xc0", 6) != NULL, "nil Meta");
	p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_alive(&p, buf + n, &d), "decode no vsn");
	CHECK(!d.has_vsn && d.meta_len == 0, "vsn/meta absent");
}

static void test_err_round_trip_and_long_message_is_cut(void)
{
	struct ml_err_resp m, d;
	uint8_t buf[1024];
	memset(&m, 0, sizeof(m));
	strcpy(m.error, "Failed to read remote state");
	int n = ml_encode_err(buf, sizeof(buf), &m);
	CHECK(n > 0 && buf[0] == ML_ERR, "err %d", n);
	const uint8_t *p = buf + 1;
	CHECK_WIRE(ML_OK, ml_decode_err(&p, buf + n, &d), "decode");
	CHECK(strcmp(d.error, m.error) == 0, "error %s", d.error);
	/* a 400-byte message from a peer is kept cut at ML_ERRMSG_MAX */
	uint8_t big[500] = {0x81, 0xa5, 'E', 'r', 'r', 'o', 'r', 0xda, 0x01, 0x90};
	memset(big + 10, 'x', 400);
	p = big;
	CHECK_WIRE(ML_OK, ml_decode_err(&p, big + 410, &d), "decode long");
	CHECK_WIRE(ML_ERRMSG_MAX, strlen(d.error), "cut length");
}

static void test_push_pull_header_node_and_user_header_round_trip(void)
{
	uint8_t buf[1024], again[1024];
	struct ml_push_pull_header h = {.nodes = 3, .user_state_len = 1000, .join = true}, hd;
	int n = ml_encode_push_pull_header(buf, sizeof(buf), &h);
	static const uint8_t want[] = {0x83, 0xa4, 'J', 'o',  'i',  'n', 0xc3, 0xa5, 'N',  'o',
	                               'd',  'e',  's', 0x03, 0xac, 'U', 's',  'e',  'r',  'S',
	                               't',  'a',  't', 'e',  'L',  'e', 'n',  0xcd, 0x03, 0xe8};
	check_bytes("push-pull header", want, sizeof(want), buf, n);
	const uint8_t *p = buf;
	CHECK_WIRE(ML_OK, ml_decode_push_pull_header(&p, buf + n, &hd), "decode header");
	CHECK(hd.nodes == 3 && hd.user_state_len == 1000 && hd.join, "header fields");

	struct ml_push_node pn, pd;
	memset(&pn, 0, sizeof(pn));
	strcpy(pn.name, "beta");
	pn.addr = addr4(127, 0, 0, 1, 27947);
	pn.incarnation = 9;
	pn.state = ML_STATE_LEFT;
	pn.meta_len = 3;
	memcpy(pn.meta, "abc", 3);
	pn.has_vsn = true;
	memcpy(pn.vsn, "\x01\x05\x05\x02\x05\x04", 6);
	n = ml_encode_push_node(buf, sizeof(buf), &pn);
	CHECK(n > 0 && buf[0] == 0x87, "push node %d", n);
	p = buf;
	CHECK_WIRE(ML_OK, ml_decode_push_node(&p, buf + n, &pd), "decode node");
	CHECK(pd.state == ML_STATE_LEFT && pd.incarnation == 9 && !strcmp(pd.name, "beta"), "node");
	check_bytes("node re-encode", buf, (size_t)n, again,
	            ml_encode_push_node(again, sizeof(again), &pd));

	struct ml_user_msg_header u = {.len = 70000}, ud;
	n = ml_encode_user_msg_header(buf, sizeof(buf), &u);
	p = buf;
	CHECK_WIRE(ML_OK, ml_decode_user_msg_header(&p, buf + n, &ud), "decode user header");
	CHECK_WIRE(70000, ud.len, "user msg len");
	n = ml_encode_user(buf, sizeof(buf), (const uint8_t *)"hi", 2);
	CHECK(n == 3 && buf[0] == ML_USER && buf[1] == 'h', "user packet %d", n);
}

static void test_decoders_accept_every_int_width_str8_bin_and_skip_unknown_keys(void)
{
	/* {"Extra": [1, {"x": -3}], "SeqNo": uint64 9, "Node": str8 "ab",
	 *  "SourceAddr": bin8 4 bytes, "SourcePort": int16 80} */
	static const uint8_t in[] = {
	        0x85, 0xa5, 'E', 'x', 't', 'r',  'a',  0x92, 0x01, 0x81, 0xa1, 'x',  0xfd, 0xa5,
	        'S',  'e',  'q', 'N', 'o', 0xcf, 0,    0,    0,    0,    0,    0,    0,    9,
	        0xa4, 'N',  'o', 'd', 'e', 0xd9, 0x02, 'a',  'b',  0xaa, 'S',  'o',  'u',  'r',
	        'c',  'e',  'A', 'd', 'd', 'r',  0xc4, 4,    10,   0,    0,    1,    0xaa, 'S',
	        'o',  'u',  'r', 'c', 'e', 'P',  'o',  'r',  't',  0xd1, 0x00, 0x50,
	};
	struct ml_ping d;
	const uint8_t *p = in;
	CHECK_WIRE(ML_OK, ml_decode_ping(&p, in + sizeof(in), &d), "decode");
	CHECK(p == in + sizeof(in), "consumed %td of %zu", p - in, sizeof(in));
	CHECK(d.seq == 9 && !strcmp(d.node, "ab") && d.source.port == 80 && d.source.len == 4,
	      "fields seq=%u node=%s port=%u", d.seq, d.node, d.source.port);
}

static void test_decoders_reject_wrong_types_oversize_and_giant_lengths(void)
{
	struct ml_alive a;
	struct ml_ping pg;
	const uint8_t *p;
	/* SeqNo as a string */
	static const uint8_t wrong[] = {0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xa1, '1'};
	p = wrong;
	CHECK_WIRE(ML_BAD, ml_decode_ping(&p, wrong + sizeof(wrong), &pg), "string seq");
	CHECK(strstr(ml_wire_error(), "SeqNo") != NULL, "error names field: %s", ml_wire_error());
	CHECK(p == wrong, "pos moved on error");
	/* SeqNo too big for uint32, and negative */
	static const uint8_t big[] = {0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xcf,
	                              0,    0,    0,   1,   0,   0,   0,   0};
	p = big;
	CHECK_WIRE(ML_BAD, ml_decode_ping(&p, big + sizeof(big), &pg), "uint64 seq");
	static const uint8_t neg[] = {0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0xff};
	p = neg;
	CHECK_WIRE(ML_BAD, ml_decode_ping(&p, neg + sizeof(neg), &pg), "negative seq");
	/* top level not a map */
	static const uint8_t arr[] = {0x91, 0x01};
	p = arr;
	CHECK_WIRE(ML_BAD, ml_decode_ping(&p, arr + 2, &pg), "array");
	/* oversize node name: 300 bytes */
	uint8_t name[320] = {0x81, 0xa4, 'N', 'o', 'd', 'e', 0xda, 0x01, 0x2c};
	memset(name + 9, 'n', 300);
	p = name;
	CHECK_WIRE(ML_BAD, ml_decode_alive(&p, name + 309, &a), "long name");
	CHECK(strcmp(ml_wire_error(), "alive: Node: too long") == 0, "error text: %s",
	      ml_wire_error());
	/* oversize meta */
	uint8_t meta[600] = {0x81, 0xa4, 'M', 'e', 't', 'a', 0xda, 0x02, 0x01};
	p = meta;
	CHECK_WIRE(ML_BAD, ml_decode_alive(&p, meta + 9 + 513, &a), "long meta");
	/* giant lengths in a short buffer: need more bytes, never a read past end */
	static const uint8_t giant_str[] = {0x81, 0xa4, 'N',  'o',  'd',  'e',
	                                    0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
	p = giant_str;
	CHECK_WIRE(ML_AGAIN, ml_decode_alive(&p, giant_str + sizeof(giant_str), &a), "giant raw32");
	static const uint8_t giant_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1,
	                                    'x',  0xdd, 0xff, 0xff, 0xff, 0xff};
	p = giant_map;
	CHECK_WIRE(ML_AGAIN, ml_decode_alive(&p, giant_map + sizeof(giant_map), &a),
	           "giant map/array");
	/* bad IP length, bad Vsn length, unknown state */
	static const uint8_t ip3[] = {0x81, 0xa4, 'A', 'd', 'd', 'r', 0xa3, 1, 2, 3};
	p = ip3;
	CHECK_WIRE(ML_BAD, ml_decode_alive(&p, ip3 + sizeof(ip3), &a), "3-byte ip");
	static const uint8_t vsn5[] = {0x81, 0xa3, 'V', 's', 'n', 0xa5, 1, 2, 3, 4, 5};
	p = vsn5;
	CHECK_WIRE(ML_BAD, ml_decode_alive(&p, vsn5 + sizeof(vsn5), &a), "5-byte vsn");
	struct ml_push_node pn;
	static const uint8_t st[] = {0x81, 0xa5, 'S', 't', 'a', 't', 'e', 0x04};
	p = st;
	CHECK_WIRE(ML_BAD, ml_decode_push_node(&p, st + sizeof(st), &pn), "state 4");
	struct ml_push_pull_header h;
	static const uint8_t usl[] = {0x81, 0xac, 'U', 's', 'e',  'r',  'S', 't', 'a', 't',
	                              'e',  'L',  'e', 'n', 0xce, 0x7f, 0,   0,   0};
	p = usl;
	CHECK_WIRE(ML_BAD, ml_decode_push_pull_header(&p, usl + sizeof(usl), &h),
	           "huge user state");
}

static void test_truncation_at_every_byte_is_again_and_leaves_pos(void)
{
	struct ml_alive m, d;
	uint8_t buf[1024];
	memset(&m, 0, sizeof(m));
	m.incarnation = 123456;
	strcpy(m.node, "a-node-name");
	m.addr = addr4(192, 168, 1, 2, 8301);
	m.meta_len = 50;
	m.has_vsn = true;
	int n = ml_encode_alive(buf, sizeof(buf), &m);
	for (int cut = 1; cut < n; cut++) {
		const uint8_t *p = buf + 1;
		int rc = ml_decode_alive(&p, buf + cut, &d);
		CHECK(rc == ML_AGAIN, "cut at %d of %d: rc %d", cut, n, rc);
		CHECK(p == buf + 1, "cut at %d: pos moved", cut);
	}
}

/* ---- framings ---------------------------------------------------------------- */

static void test_compound_encode_decode_and_truncation(void)
{
	uint8_t buf[256];
	struct ml_slice in[3] = {{(const uint8_t *)"abc", 3},
	                         {(const uint8_t *)"", 0},
	                         {(const uint8_t *)"hello", 5}};
	int n = ml_compound_encode(buf, sizeof(buf), in, 3);
	static const uint8_t want[] = {7,   3,   0,   3,   0,   0,   0,   5,
	                               'a', 'b', 'c', 'h', 'e', 'l', 'l', 'o'};
	check_bytes("compound", want, sizeof(want), buf, n);
	struct ml_slice out[ML_COMPOUND_MAX];
	int trunc = -1;
	CHECK_WIRE(3, ml_compound_decode(buf + 1, (size_t)n - 1, out, ML_COMPOUND_MAX, &trunc),
	           "parts");
	CHECK_WIRE(0, trunc, "trunc");
	CHECK(out[2].len == 5 && memcmp(out[2].p, "hello", 5) == 0, "part 2");
	/* cut inside the last part: two parts kept, one truncated */
	CHECK_WIRE(2, ml_compound_decode(buf + 1, (size_t)n - 3, out, ML_COMPOUND_MAX, &trunc),
	           "cut");
	CHECK_WIRE(1, trunc, "trunc after cut");
	/* cut inside the length table */
	CHECK_WIRE(-1, ml_compound_decode(buf + 1, 4, out, ML_COMPOUND_MAX, &trunc), "cut table");
	CHECK_WIRE(-1, ml_compound_decode(buf + 1, 0, out, ML_COMPOUND_MAX, &trunc), "empty");
	CHECK_WIRE(-1, ml_compound_encode(buf, 10, in, 3), "encode short");
}

/* ml_crc32 works 8 bytes at a time: it equals the bit-at-a-time CRC-32 for
 * every length 0..300 at every alignment 0..7 (the tail and the word loop). */
static uint32_t crc32_bitwise(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return c ^ 0xffffffffu;
}

static void test_crc_matches_a_bitwise_reference(void)
{
	uint8_t buf[320];
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
	int bad = 0;
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 300; len++)
			bad += ml_crc32(buf + off, len) != crc32_bitwise(buf + off, len);
	CHECK(bad == 0, "%d of 2408 lengths/alignments differ from the bitwise CRC", bad);
}

static void test_crc_wrap_and_mismatch(void)
{
	uint8_t buf[64];
	/* crc32("123456789") = cbf43926 */
	CHECK(ml_crc32((const uint8_t *)"123456789", 9) == 0xcbf43926u, "crc check value");
	int n = ml_crc_wrap(buf, sizeof(buf), (const uint8_t *)"123456789", 9);
	static const uint8_t want[] = {12,  0xcb, 0xf4, 0x39, 0x26, '1', '2',
	                               '3', '4',  '5',  '6',  '7',  '8', '9'};
	check_bytes("crc wrap", want, sizeof(want), buf, n);
	struct ml_slice s;
	CHECK_WIRE(ML_OK, ml_crc_check(buf, (size_t)n, &s), "check");
	CHECK(s.p == buf + 5 && s.len == 9, "inner");
	buf[7] ^= 1;
	CHECK_WIRE(ML_BAD, ml_crc_check(buf, (size_t)n, &s), "mismatch");
	CHECK_WIRE(ML_BAD, ml_crc_check(buf, 4, &s), "short");
	CHECK_WIRE(-1, ml_crc_wrap(buf, 13, (const uint8_t *)"123456789", 9), "wrap short");
}

static void test_lzw_round_trips(void)
{
	static uint8_t in[70000], z[140000], out[70000];
	uint32_t x = 12345;
	/* empty, tiny, repetitive, random and long enough to reset the table */
	size_t sizes[] = {0, 1, 2, 3, 100, 1000, 5000, 20000, 70000};
	for (int mode = 0; mode < 2; mode++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t len = sizes[k];
			for (size_t i = 0; i < len; i++) {
				x = x * 1103515245u + 12345u;
				in[i] = mode == 0 ? (uint8_t)(x >> 24)
				                  : (uint8_t)("abcab"[(x >> 16) % 5]);
			}
			int zn = ml_lzw_compress(in, len, z, sizeof(z));
			CHECK(zn > 0, "compress %zu: %d", len, zn);
			if (zn <= 0)
				continue;
			int on = ml_lzw_decompress(z, (size_t)zn, out, sizeof(out));
			CHECK(on == (int)len && memcmp(in, out, len) == 0,
			      "mode %d len %zu: got %d", mode, len, on);
			if (len > 10) {
				CHECK_WIRE(-1, ml_lzw_decompress(z, (size_t)zn, out, len - 1),
				           "out too small");
				CHECK_WIRE(-1,
				           ml_lzw_decompress(z, (size_t)zn - 1 - (zn > 3), out,
				                             sizeof(out)),
				           "missing eof");
			}
		}
	}
	/* the decoder against the reference decoder, on compressed streams that
	 * reach the 12-bit limit and reset, with single bits flipped (so codes
	 * go out of range, KwKwK turns up where it cannot, EOF goes missing) */
	for (int mode = 0; mode < 3; mode++) {
		size_t len = 30000;
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = mode == 0 ? (uint8_t)(x >> 24)
			                  : (uint8_t)((mode == 1 ? "abcab"
			                                         : "aaaaaaab")[(x >> 16) % 5]);
		}
		int zn = ml_lzw_compress(in, len, z, sizeof(z));
		REQUIRE(zn > 0, "compress %d", mode);
		int agree = 0, decoded = 0;
		for (int trial = 0; trial < 400; trial++) {
			size_t bit = trial == 0 ? 0
			                        : (x = x * 1103515245u + 12345u,
			                           x % ((uint32_t)zn * 8u));
			if (trial > 0)
				z[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			static uint8_t ref[70000];
			int a = ml_lzw_decompress(z, (size_t)zn, out, sizeof(out));
			int b = lzw_ref_decompress(z, (size_t)zn, ref, sizeof(ref));
			if (a == b && (a <= 0 || memcmp(out, ref, (size_t)a) == 0))
				agree++;
			if (a > 0)
				decoded++;
			if (trial == 0)
				CHECK(a == (int)len && memcmp(out, in, len) == 0, "mode %d intact",
				      mode);
			if (trial > 0)
				z[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		CHECK_INT(400, agree);
		CHECK(decoded > 1, "mode %d: only %d flipped streams decoded", mode, decoded);
	}
	/* Go writes clear (9 bits) + eof (9 bits) for empty input: 00 03 02 */
	int zn = ml_lzw_compress(in, 0, z, sizeof(z));
	static const uint8_t empty[] = {0x00, 0x03, 0x02};
	check_bytes("empty lzw", empty, 3, z, zn);
	/* compress wrapper round trip */
	uint8_t wrapped[2000], back[2000];
	int wn = ml_compress_encode(wrapped, sizeof(wrapped), in, 1000);
	CHECK(wn > 0 && wrapped[0] == ML_COMPRESS, "compress wrap %d", wn);
	CHECK_WIRE(1000, ml_compress_decode(wrapped + 1, (size_t)wn - 1, back, sizeof(back)),
	           "unwrap");
	CHECK(memcmp(back, in, 1000) == 0, "unwrap bytes");
}

/* ---- serf fixtures -------------------------------------------------------- */

struct seen {
	int crc, compress, compound, user, push_pull, push_nodes;
	int msgs[16];
	int reencoded;
	char names[16][ML_NAME_MAX + 1];
	int nnames;
	bool meta_role_web, meta_version_2, vsn_ok, ack_payload, ping_source, nack_req;
};

static void note_name(struct seen *s, const char *name)
{
	for (int i = 0; i < s->nnames; i++)
		if (strcmp(s->names[i], name) == 0)
			return;
	if (s->nnames < 16)
		strcpy(s->names[s->nnames++], name);
}

static void note_meta(struct seen *s, const uint8_t *meta, size_t len)
{
	/* serf tags: 0xff then a msgpack map of strings */
	if (memmem(meta, len, "\xa4role\xa3web", 9) != NULL)
		s->meta_role_web = true;
	if (memmem(meta, len, "\xa7version\xa1\x32", 10) != NULL)
		s->meta_version_2 = true;
}

/* Decode a message of a known type, re-encode it, compare with serf's bytes. */
#define ROUND(T, dec, enc, what)                                                                   \
	do {                                                                                       \
		T m_;                                                                              \
		uint8_t re_[2048];                                                                 \
		const uint8_t *q_ = p + 1;                                                         \
		int rc_ = dec(&q_, p + len, &m_);                                                  \
		CHECK(rc_ == ML_OK, "%s: %s: rc %d (%s)", file, what, rc_, ml_wire_error());       \
		if (rc_ != ML_OK)                                                                  \
			return;                                                                    \
		CHECK(q_ == p + len, "%s: %s: %td trailing bytes", file, what, p + len - q_);      \
		check_bytes(what, p, len, re_, enc(re_, sizeof(re_), &m_));                        \
		s->reencoded++;                                                                    \
		last = &m_;                                                                        \
		inspect(s, p[0], last);                                                            \
	} while (0)

static void inspect(struct seen *s, int type, const void *m)
{
	switch (type) {
	case ML_PING: {
		const struct ml_ping *x = m;
		if (x->source.len == 4 && x->source_node[0])
			s->ping_source = true;
		if (dump)
			fprintf(stderr, "      ping seq=%u node=%s src=%s\n", x->seq, x->node,
			        x->source_node);
		break;
	}
	case ML_INDIRECT_PING: {
		const struct ml_indirect_ping *x = m;
		s->nack_req |= x->nack;
		if (dump)
			fprintf(stderr, "      indirect ping seq=%u node=%s nack=%d\n", x->seq,
			        x->node, x->nack);
		break;
	}
	case ML_ACK: {
		const struct ml_ack *x = m;
		s->ack_payload |= x->payload_len > 0;
		if (dump)
			fprintf(stderr, "      ack seq=%u payload=%u\n", x->seq, x->payload_len);
		break;
	}
	case ML_SUSPECT:
	case ML_DEAD: {
		const struct ml_suspect *x = m;
		if (dump)
			fprintf(stderr, "      %s inc=%u node=%s from=%s\n",
			        type == ML_DEAD ? "dead" : "suspect", x->incarnation, x->node,
			        x->from);
		break;
	}
	case ML_ALIVE: {
		const struct ml_alive *x = m;
		note_name(s, x->node);
		note_meta(s, x->meta, x->meta_len);
		s->vsn_ok |= x->has_vsn && x->vsn[0] == 1 && x->vsn[1] == 5;
		if (dump)
			fprintf(stderr,
			        "      alive inc=%u node=%s ip len %u port %u meta %u vsn "
			        "%u.%u.%u.%u.%u.%u\n",
			        x->incarnation, x->node, x->addr.len, x->addr.port, x->meta_len,
			        x->vsn[0], x->vsn[1], x->vsn[2], x->vsn[3], x->vsn[4], x->vsn[5]);
		break;
	}
	default:
		break;
	}
}

static void walk_message(struct seen *s, const char *file, const uint8_t *p, size_t len, int depth);

static void walk_push_pull(struct seen *s, const char *file, const uint8_t *p, size_t len)
{
	const uint8_t *q = p + 1, *end = p + len;
	struct ml_push_pull_header h;
	uint8_t re[2048];
	const uint8_t *start = q;
	int rc = ml_decode_push_pull_header(&q, end, &h);
	CHECK(rc == ML_OK, "%s: push-pull header: %s", file, ml_wire_error());
	if (rc != ML_OK)
		return;
	check_bytes("push-pull header", start, (size_t)(q - start), re,
	            ml_encode_push_pull_header(re, sizeof(re), &h));
	s->push_pull++;
	if (dump)
		fprintf(stderr, "      push-pull nodes=%u user=%u join=%d\n", h.nodes,
		        h.user_state_len, h.join);
	for (uint32_t i = 0; i < h.nodes; i++) {
		struct ml_push_node n;
		start = q;
		rc = ml_decode_push_node(&q, end, &n);
		CHECK(rc == ML_OK, "%s: push node %u: %s", file, i, ml_wire_error());
		if (rc != ML_OK)
			return;
		check_bytes("push node", start, (size_t)(q - start), re,
		            ml_encode_push_node(re, sizeof(re), &n));
		s->push_nodes++;
		note_name(s, n.name);
		note_meta(s, n.meta, n.meta_len);
		if (dump)
			fprintf(stderr, "        node %s state=%u inc=%u meta=%u\n", n.name,
			        n.state, n.incarnation, n.meta_len);
	}
	CHECK((size_t)(end - q) == h.user_state_len,
	      "%s: user state: %td bytes left, header says %u", file, end - q, h.user_state_len);
}

static void walk_message(struct seen *s, const char *file, const uint8_t *p, size_t len, int depth)
{
	const void *last;
	(void)last;
	CHECK(len > 0 && depth < 4, "%s: empty or too deep", file);
	if (len == 0 || depth >= 4)
		return;
	if (p[0] < 16)
		s->msgs[p[0]]++;
	if (dump)
		fprintf(stderr, "%*s    type %u (%zu bytes)\n", depth * 2, "", p[0], len);
	switch (p[0]) {
	case ML_HAS_CRC: {
		struct ml_slice in;
		CHECK(ml_crc_check(p, len, &in) == ML_OK, "%s: %s", file, ml_wire_error());
		s->crc++;
		walk_message(s, file, in.p, in.len, depth + 1);
		break;
	}
	case ML_COMPRESS: {
		static uint8_t out[1 << 16], again[1 << 16];
		int n = ml_compress_decode(p + 1, len - 1, out, sizeof(out));
		CHECK(n > 0, "%s: compress: %s", file, ml_wire_error());
		if (n <= 0)
			return;
		s->compress++;
		/* our LZW must write exactly what Go's wrote */
		check_bytes("re-compress", p, len, again,
		            ml_compress_encode(again, sizeof(again), out, (size_t)n));
		uint8_t *copy = malloc((size_t)n);
		memcpy(copy, out, (size_t)n);
		walk_message(s, file, copy, (size_t)n, depth + 1);
		free(copy);
		break;
	}
	case ML_COMPOUND: {
		struct ml_slice parts[ML_COMPOUND_MAX];
		int trunc = -1;
		int n = ml_compound_decode(p + 1, len - 1, parts, ML_COMPOUND_MAX, &trunc);
		CHECK(n > 0 && trunc == 0, "%s: compound n=%d trunc=%d", file, n, trunc);
		s->compound++;
		for (int i = 0; i < n; i++)
			walk_message(s, file, parts[i].p, parts[i].len, depth + 1);
		break;
	}
	case ML_PING:
		ROUND(struct ml_ping, ml_decode_ping, ml_encode_ping, "ping");
		break;
	case ML_INDIRECT_PING:
		ROUND(struct ml_indirect_ping, ml_decode_indirect_ping, ml_encode_indirect_ping,
		      "indirect ping");
		break;
	case ML_ACK:
		ROUND(struct ml_ack, ml_decode_ack, ml_encode_ack, "ack");
		break;
	case ML_NACK:
		ROUND(struct ml_nack, ml_decode_nack, ml_encode_nack, "nack");
		break;
	case ML_SUSPECT:
		ROUND(struct ml_suspect, ml_decode_suspect, ml_encode_suspect, "suspect");
		break;
	case ML_DEAD:
		ROUND(struct ml_suspect, ml_decode_dead, ml_encode_dead, "dead");
		break;
	case ML_ALIVE:
		ROUND(struct ml_alive, ml_decode_alive, ml_encode_alive, "alive");
		break;
	case ML_ERR:
		ROUND(struct ml_err_resp, ml_decode_err, ml_encode_err, "err");
		break;
	case ML_USER:
		s->user++;
		if (dump)
			fprintf(stderr, "%*s      user: serf type %u, %zu bytes\n", depth * 2, "",
			        len > 1 ? p[1] : 0, len - 1);
		break;
	case ML_PUSH_PULL:
		walk_push_pull(s, file, p, len);
		break;
	default:
		CHECK(0, "%s: unexpected message type %u", file, p[0]);
	}
}

static size_t load(const char *path, uint8_t *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static int walk_dir(struct seen *s, const char *prefix)
{
	DIR *d = opendir(SERF_DIR);
	CHECK(d != NULL, "cannot open %s", SERF_DIR);
	if (d == NULL)
		return 0;
	int files = 0;
	struct dirent *e;
	static uint8_t buf[1 << 16];
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", SERF_DIR, e->d_name);
		size_t n = load(path, buf, sizeof(buf));
		if (n == 0)
			continue; /* an empty TCP direction */
		if (dump)
			fprintf(stderr, "  %s\n", e->d_name);
		files++;
		walk_message(s, e->d_name, buf, n, 0);
	}
	closedir(d);
	return files;
}

static void test_serf_udp_fixtures_unwrap_decode_and_reencode(void)
{
	struct seen s;
	memset(&s, 0, sizeof(s));
	int files = walk_dir(&s, "udp_");
	if (dump)
		fprintf(stderr,
		        "  udp files %d crc %d compress %d compound %d user %d reencoded %d\n",
		        files, s.crc, s.compress, s.compound, s.user, s.reencoded);
	CHECK(files >= 40, "udp fixtures: %d", files);
	CHECK(s.crc > 0 && s.compress > 0 && s.compound > 0 && s.user > 0, "framings seen");
	/* exact counts over the distinct datagrams of plain.pcap */
	CHECK_WIRE(111, files, "distinct datagrams");
	CHECK_WIRE(19, s.crc, "has-crc wrappers");
	CHECK_WIRE(7, s.compress, "compress wrappers");
	CHECK_WIRE(20, s.compound, "compounds");
	CHECK_WIRE(15, s.user, "user (serf) messages");
	CHECK_WIRE(48, s.msgs[ML_PING], "pings");
	CHECK_WIRE(6, s.msgs[ML_INDIRECT_PING], "indirect pings");
	CHECK_WIRE(34, s.msgs[ML_ACK], "acks");
	CHECK_WIRE(6, s.msgs[ML_NACK], "nacks");
	CHECK_WIRE(7, s.msgs[ML_SUSPECT], "suspects");
	CHECK_WIRE(7, s.msgs[ML_DEAD], "deads");
	CHECK_WIRE(18, s.msgs[ML_ALIVE], "alives");
	CHECK_WIRE(126, s.reencoded, "messages re-encoded byte for byte");
	CHECK(s.ack_payload, "an ack with serf's coordinate payload");
	CHECK(s.ping_source, "a ping with SourceAddr/SourceNode");
	CHECK(s.nack_req, "an indirect ping asking for a nack");
	CHECK(s.vsn_ok, "alive with Vsn 1,5,...");
	CHECK(s.meta_role_web, "alpha's role=web tag in alive meta");
	CHECK(s.meta_version_2, "gamma's version=2 tag in alive meta");
	for (int i = 0; i < 16; i++)
		if (dump && s.msgs[i])
			fprintf(stderr, "  type %d: %d\n", i, s.msgs[i]);
	bool a = false, b = false, g = false;
	for (int i = 0; i < s.nnames; i++) {
		a |= !strcmp(s.names[i], "alpha");
		b |= !strcmp(s.names[i], "beta");
		g |= !strcmp(s.names[i], "gamma");
	}
	CHECK(a && b && g, "alive names alpha/beta/gamma (%d names)", s.nnames);
}

static void test_serf_push_pull_streams(void)
{
	struct seen s;
	memset(&s, 0, sizeof(s));
	int files = walk_dir(&s, "tcp_");
	CHECK(files == 4, "tcp stream directions: %d", files);
	CHECK_WIRE(4, s.push_pull, "push-pull exchanges");
	CHECK_WIRE(4, s.compress, "all compressed");
	if (dump)
		fprintf(stderr, "  push nodes %d names %d\n", s.push_nodes, s.nnames);
	bool a = false, b = false, g = false;
	for (int i = 0; i < s.nnames; i++) {
		a |= !strcmp(s.names[i], "alpha");
		b |= !strcmp(s.names[i], "beta");
		g |= !strcmp(s.names[i], "gamma");
	}
	/* beta<->alpha join: one node each way; gamma joins alpha: gets 2, sends 1 */
	CHECK_WIRE(5, s.push_nodes, "pushed node states");
	CHECK(a && b && g, "push nodes alpha, beta and gamma");
	CHECK(s.meta_role_web, "role=web in pushed meta");
}

static void test_every_prefix_of_every_fixture_is_handled(void)
{
	/* truncate each udp fixture at every byte: decoders must not crash */
	DIR *d = opendir(SERF_DIR);
	if (d == NULL)
		return;
	struct dirent *e;
	static uint8_t buf[1 << 16], out[1 << 16];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "encrypted") == 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", SERF_DIR, e->d_name);
		size_t n = load(path, buf, sizeof(buf));
		for (size_t cut = 0; cut < n; cut++) {
			struct ml_slice in;
			const uint8_t *p = buf;
			size_t len = cut;
			if (len >= 5 && p[0] == ML_HAS_CRC) {
				CHECK(ml_crc_check(p, len, &in) == ML_BAD, "%s cut %zu: crc passed",
				      e->d_name, cut);
				p += 5, len -= 5;
			}
			if (len >= 1 && p[0] == ML_COMPRESS) {
				const uint8_t *q = p + 1;
				size_t on;
				int rc = ml_compress_decode_stream(&q, p + len, out, sizeof(out),
				                                   &on);
				CHECK(rc == ML_AGAIN || rc == ML_BAD, "%s cut %zu: compress rc %d",
				      e->d_name, cut, rc);
			}
		}
	}
	closedir(d);
}

/*
 * The compress frame is found without decompressing, in O(1) whatever the
 * payload: a stream reader asks on every chunk and decompresses (and
 * allocates the output) once, when whole. Every cut of a compressed message
 * is ML_AGAIN with the position untouched; the whole one gives the LZW
 * bytes that ml_compress_decode_stream decompresses; a wrong Algo is BAD.
 */
static void test_compress_frame_only_when_whole(void)
{
	static uint8_t msg[4000], z[8000], out[8000];
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)("push-pull state "[i % 16] + i / 1000);
	int zn = ml_compress_encode(z, sizeof(z), msg, sizeof(msg));
	REQUIRE(zn > 10, "compress");
	int again = 0;
	for (int cut = 1; cut < zn; cut++) {
		const uint8_t *q = z + 1;
		struct ml_slice lzw;
		int rc = ml_compress_frame(&q, z + cut, &lzw);
		again += rc == ML_AGAIN && q == z + 1;
	}
	CHECK_INT(zn - 1, again, "every cut: ML_AGAIN, position kept");
	const uint8_t *q = z + 1;
	struct ml_slice lzw;
	CHECK_INT(ML_OK, ml_compress_frame(&q, z + zn, &lzw));
	CHECK(q == z + zn && lzw.p > z && lzw.p + lzw.len == z + zn, "frame covers the LZW bytes");
	CHECK_INT((long long)sizeof(msg), ml_lzw_decompress(lzw.p, lzw.len, out, sizeof(out)));
	CHECK(memcmp(out, msg, sizeof(msg)) == 0, "decompressed");
	/* Algo 1 (only LZW, 0, exists): fixmap, "Algo", 1 */
	static uint8_t bad[8000];
	memcpy(bad, z, (size_t)zn);
	CHECK(bad[1] == 0x82 && bad[2] == 0xa4 && bad[7] == 0, "layout: %02x %02x %02x", bad[1],
	      bad[2], bad[7]);
	bad[7] = 1;
	q = bad + 1;
	CHECK_INT(ML_BAD, ml_compress_frame(&q, bad + zn, &lzw));
	CHECK_HAS(ml_wire_error(), "Algo");
}

/* ---- addresses ------------------------------------------------------------- */

static void test_addr_parse_format_equal(void)
{
	struct ml_addr a, b;
	char s[64];
	CHECK_WIRE(0, ml_addr_parse("127.0.0.1:27946", 8301, &a), "v4 port");
	CHECK(strcmp(ml_addr_str(&a, s, sizeof(s)), "127.0.0.1:27946") == 0, "str %s", s);
	CHECK_WIRE(0, ml_addr_parse("10.1.2.3", 8301, &b), "v4 default port");
	CHECK(b.port == 8301 && b.len == 4, "default port");
	CHECK_WIRE(0, ml_addr_parse("[::1]:5", 8301, &a), "v6 port");
	CHECK(strcmp(ml_addr_str(&a, s, sizeof(s)), "[::1]:5") == 0, "str %s", s);
	CHECK_WIRE(0, ml_addr_parse("fe80::1", 7, &a), "bare v6");
	CHECK(a.len == 16 && a.port == 7, "bare v6 fields");
	CHECK_WIRE(-1, ml_addr_parse("1.2.3.4:99999", 1, &a), "port range");
	CHECK_WIRE(-1, ml_addr_parse("host.example:1", 1, &a), "not an IP");
	CHECK_WIRE(-1, ml_addr_parse("[::1", 1, &a), "unclosed bracket");
	/* IPv4-mapped IPv6 equals plain IPv4 */
	ml_addr_parse("127.0.0.1:80", 0, &a);
	ml_addr_parse("[::ffff:127.0.0.1]:80", 0, &b);
	CHECK(ml_addr_equal(&a, &b), "mapped equal");
	CHECK(strcmp(ml_addr_str(&b, s, sizeof(s)), "127.0.0.1:80") == 0, "mapped str %s", s);
	b.port = 81;
	CHECK(!ml_addr_equal(&a, &b), "port differs");
}

int main(void)
{
	dump = getenv("RUMOR_WIRE_DUMP") != NULL;
	RUN(test_crc_matches_a_bitwise_reference);
	RUN(test_ping_round_trip_without_source);
	RUN(test_ping_round_trip_with_source);
	RUN(test_indirect_ping_round_trip_with_nack);
	RUN(test_ack_round_trip_with_and_without_payload);
	RUN(test_nack_round_trip);
	RUN(test_suspect_and_dead_round_trip);
	RUN(test_digest_round_trip_and_wrong_length);
	RUN(test_alive_round_trip_with_meta_and_vsn);
	RUN(test_err_round_trip_and_long_message_is_cut);
	RUN(test_push_pull_header_node_and_user_header_round_trip);
	RUN(test_decoders_accept_every_int_width_str8_bin_and_skip_unknown_keys);
	RUN(test_decoders_reject_wrong_types_oversize_and_giant_lengths);
	RUN(test_truncation_at_every_byte_is_again_and_leaves_pos);
	RUN(test_compound_encode_decode_and_truncation);
	RUN(test_crc_wrap_and_mismatch);
	RUN(test_lzw_round_trips);
	RUN(test_serf_udp_fixtures_unwrap_decode_and_reencode);
	RUN(test_serf_push_pull_streams);
	RUN(test_every_prefix_of_every_fixture_is_handled);
	RUN(test_compress_frame_only_when_whole);
	RUN(test_addr_parse_format_equal);
	return check_exit_code();
}
