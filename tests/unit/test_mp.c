/*
 * tests/unit/test_mp.c — lib/cursor.h and lib/mp.h: big-endian helpers,
 * cursors that never read or write out of bounds, and a MessagePack layer
 * that writes exactly the bytes msgpack-c's v4raw packer wrote (the packer
 * gossip used before; checked here against the library itself) and reads
 * every form go-msgpack may send, answering MP_AGAIN on a short input
 * without moving.
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cursor.h"
#include "lib/mp.h"
#include "tests/unit/check.h"

static void test_big_endian_round_trips(void)
{
	uint8_t b[8];
	be16_put(b, 0xa1b2);
	CHECK_INT(0xa1, b[0]);
	CHECK_INT(0xa1b2, be16_get(b));
	be32_put(b, 0xdeadbeef);
	CHECK_INT(0xde, b[0]);
	CHECK_INT(0xef, b[3]);
	CHECK_INT(0xdeadbeefLL, be32_get(b));
	be64_put(b, 0x0102030405060708ull);
	CHECK_INT(1, b[0]);
	CHECK_INT(8, b[7]);
	CHECK(be64_get(b) == 0x0102030405060708ull, "be64 round trip");
}

static void test_cursor_short_read_does_not_move(void)
{
	const uint8_t in[3] = {1, 2, 3};
	struct cursor c = {in, in + 3};
	uint32_t v32;
	uint16_t v16;
	CHECK_BOOL(false, cursor_be32(&c, &v32));
	CHECK(c.p == in, "position kept");
	CHECK_BOOL(true, cursor_be16(&c, &v16));
	CHECK_INT(0x0102, v16);
	CHECK_INT(1, (long long)cursor_avail(&c));
	const uint8_t *v;
	CHECK_BOOL(false, cursor_bytes(&c, SIZE_MAX, &v), "no overflow on a huge n");
}

static void test_wcursor_overflow_is_sticky(void)
{
	uint8_t buf[4];
	struct wcursor w = {.p = buf, .cap = sizeof(buf)};
	wcursor_be16(&w, 1);
	wcursor_be32(&w, 2); /* does not fit */
	CHECK_BOOL(true, w.over);
	wcursor_u8(&w, 3); /* would fit, but the cursor is spoiled */
	CHECK_INT(2, (long long)w.len);
	CHECK_INT(-1, wcursor_done(&w));
}

static void test_wcursor_grows_when_asked(void)
{
	struct wcursor w = {.grow = true};
	for (int i = 0; i < 1000; i++)
		wcursor_be32(&w, (uint32_t)i);
	CHECK_INT(4000, wcursor_done(&w));
	CHECK_INT(999, be32_get(w.p + 3996));
	free(w.p);
}

/* msgpack-c as the reference writer */
struct ref {
	uint8_t b[1 << 17];
	size_t len;
};

static int ref_write(void *data, const char *buf, size_t len)
{
	struct ref *r = data;
	memcpy(r->b + r->len, buf, len);
	r->len += len;
	return 0;
}

static bool same(const struct ref *r, const struct wcursor *w)
{
	return !w->over && r->len == w->len && memcmp(r->b, w->p, r->len) == 0;
}

static void test_writers_match_msgpack_c(void)
{
	static struct ref r;
	static uint8_t buf[1 << 17];
	static uint8_t body[70000];
	msgpack_packer pk;
	const uint64_t uints[] = {
	        0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffull, 0x100000000ull, UINT64_MAX};
	for (size_t i = 0; i < sizeof(uints) / sizeof(uints[0]); i++) {
		r.len = 0;
		msgpack_packer_init(&pk, &r, ref_write);
		msgpack_pack_uint64(&pk, uints[i]);
		struct wcursor w = {.p = buf, .cap = sizeof(buf)};
		mp_write_uint(&w, uints[i]);
		CHECK(same(&r, &w), "uint %llu", (unsigned long long)uints[i]);
	}
	const uint32_t counts[] = {0, 15, 16, 65535, 65536};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		r.len = 0;
		msgpack_packer_init(&pk, &r, ref_write);
		msgpack_pack_map(&pk, counts[i]);
		msgpack_pack_array(&pk, counts[i]);
		struct wcursor w = {.p = buf, .cap = sizeof(buf)};
		mp_write_map(&w, counts[i]);
		mp_write_array(&w, counts[i]);
		CHECK(same(&r, &w), "map/array %u", counts[i]);
	}
	memset(body, 'x', sizeof(body));
	const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, sizeof(body)};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		r.len = 0;
		msgpack_packer_init(&pk, &r, ref_write);
		msgpack_pack_v4raw(&pk, lens[i]);
		msgpack_pack_v4raw_body(&pk, body, lens[i]);
		msgpack_pack_nil(&pk);
		msgpack_pack_true(&pk);
		msgpack_pack_false(&pk);
		struct wcursor w = {.p = buf, .cap = sizeof(buf)};
		mp_write_raw(&w, body, lens[i]);
		mp_write_nil(&w);
		mp_write_bool(&w, true);
		mp_write_bool(&w, false);
		CHECK(same(&r, &w), "raw of %zu", lens[i]);
	}
}

static void test_write_int_as_go_does(void)
{
	/* Go's codec: the smallest *signed* form (msgpack-c writes positive
	 * values unsigned, so this one is pinned by hand) */
	const struct {
		int64_t v;
		const char *hex;
	} cases[] = {
	        {0, "00"},        {127, "7f"},           {-1, "ff"},
	        {-32, "e0"},      {-33, "d0df"},         {128, "d10080"},
	        {-129, "d1ff7f"}, {32768, "d200008000"}, {10000000000, "d300000002540be400"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[16];
		char hex[40] = "";
		struct wcursor w = {.p = buf, .cap = sizeof(buf)};
		mp_write_int(&w, cases[i].v);
		for (size_t j = 0; j < w.len; j++)
			snprintf(hex + 2 * j, sizeof(hex) - 2 * j, "%02x", buf[j]);
		CHECK_STR(cases[i].hex, hex, "int %lld", (long long)cases[i].v);
	}
}

static void test_read_uint_every_width_and_sign(void)
{
	const struct {
		const char *in;
		size_t len;
		int rc;
		uint64_t v;
	} cases[] = {
	        {"\x05", 1, MP_OK, 5},
	        {"\xcc\xff", 2, MP_OK, 255},
	        {"\xcd\x01\x00", 3, MP_OK, 256},
	        {"\xce\x00\x01\x00\x00", 5, MP_OK, 65536},
	        {"\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9, MP_OK, 1ull << 32},
	        {"\xd0\x7f", 2, MP_OK, 127},
	        {"\xd1\x7f\xff", 3, MP_OK, 32767},
	        {"\xd0\x80", 2, MP_BAD, 0}, /* -128 */
	        {"\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9, MP_BAD, 0},
	        {"\xe0", 1, MP_BAD, 0}, /* negative fixint */
	        {"\xc0", 1, MP_BAD, 0}, /* nil: the caller decides */
	        {"\xa1x", 2, MP_BAD, 0},
	        {"\xcd\x01", 2, MP_AGAIN, 0},
	        {"", 0, MP_AGAIN, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const uint8_t *in = (const uint8_t *)cases[i].in;
		struct cursor c = {in, in + cases[i].len};
		uint64_t v = 0;
		CHECK_INT(cases[i].rc, mp_read_uint(&c, &v), "case %zu", i);
		if (cases[i].rc == MP_OK) {
			CHECK(v == cases[i].v, "case %zu: value %llu", i, (unsigned long long)v);
			CHECK(c.p == in + cases[i].len, "case %zu: consumed", i);
		} else {
			CHECK(c.p == in, "case %zu: cursor kept on failure", i);
		}
	}
}

static void test_read_raw_forms_and_nil(void)
{
	const char *forms[] = {
	        "\xa2hi",     "\xd9\x02hi",     "\xda\x00\x02hi",        "\xdb\x00\x00\x00\x02hi",
	        "\xc4\x02hi", "\xc5\x00\x02hi", "\xc6\x00\x00\x00\x02hi"};
	const size_t lens[] = {3, 4, 5, 7, 4, 5, 7};
	for (size_t i = 0; i < 7; i++) {
		const uint8_t *in = (const uint8_t *)forms[i];
		struct cursor c = {in, in + lens[i]};
		const uint8_t *p;
		size_t n;
		CHECK_INT(MP_OK, mp_read_raw(&c, &p, &n), "form %zu", i);
		CHECK_INT(2, (long long)n, "form %zu", i);
		CHECK(memcmp(p, "hi", 2) == 0 && c.p == c.end, "form %zu", i);
		struct cursor s = {in, in + lens[i] - 1};
		CHECK_INT(MP_AGAIN, mp_read_raw(&s, &p, &n), "form %zu cut short", i);
		CHECK(s.p == in, "form %zu: kept", i);
	}
	const uint8_t nil[] = {0xc0};
	struct cursor c = {nil, nil + 1};
	const uint8_t *p = NULL;
	size_t n = 9;
	CHECK_INT(MP_OK, mp_read_raw(&c, &p, &n));
	CHECK(p != NULL && n == 0, "nil is empty, not NULL");
}

static void test_read_str_and_key_limits(void)
{
	const uint8_t in[] = {0xa3, 'a', 0, 'b', 0xa3, 'a', 'b', 'c', 0xa3, 'x', 'y', 'z'};
	struct cursor c = {in, in + sizeof(in)};
	char s[4], small[3];
	CHECK_INT(MP_BAD, mp_read_str(&c, s, sizeof(s)), "a NUL inside");
	CHECK(c.p == in, "kept");
	c.p = in + 4;
	CHECK_INT(MP_BAD, mp_read_str(&c, small, sizeof(small)), "does not fit");
	CHECK_INT(MP_OK, mp_read_str(&c, s, sizeof(s)));
	CHECK_STR("abc", s);
	CHECK_INT(MP_OK, mp_read_key(&c, small, sizeof(small)));
	CHECK_STR("", small, "a long key reads as unknown");
	CHECK_BOOL(true, mp_key_is("Node", (const uint8_t *)"Node", 4));
	CHECK_BOOL(false, mp_key_is("Node", (const uint8_t *)"Nod", 3));
	CHECK_BOOL(false, mp_key_is("Nod", (const uint8_t *)"Node", 4));
}

static void test_map_array_and_nil_forms(void)
{
	const uint8_t in[] = {0x83, 0xde, 0x01, 0x00, 0xdd, 0x00, 0x01, 0x00, 0x00, 0xc0, 0xc0};
	struct cursor c = {in, in + sizeof(in)};
	uint32_t n;
	CHECK_INT(MP_OK, mp_read_map(&c, &n));
	CHECK_INT(3, n);
	CHECK_INT(MP_OK, mp_read_map(&c, &n));
	CHECK_INT(256, n);
	CHECK_INT(MP_BAD, mp_read_map(&c, &n), "an array is not a map");
	CHECK_INT(MP_OK, mp_read_array(&c, &n));
	CHECK_INT(65536, n);
	CHECK_INT(MP_BAD, mp_read_map(&c, &n), "nil is not a map");
	CHECK_INT(MP_OK, mp_read_map_or_nil(&c, &n));
	CHECK_INT(0, n);
	CHECK_INT(MP_OK, mp_read_array_or_nil(&c, &n));
	CHECK_INT(MP_AGAIN, mp_read_array_or_nil(&c, &n));
	bool b = true;
	const uint8_t bools[] = {0xc3, 0xc0, 0x01};
	struct cursor bc = {bools, bools + 3};
	CHECK_INT(MP_OK, mp_read_bool(&bc, &b));
	CHECK_BOOL(true, b);
	CHECK_INT(MP_OK, mp_read_bool(&bc, &b));
	CHECK_BOOL(false, b, "nil is false");
	CHECK_INT(MP_BAD, mp_read_bool(&bc, &b), "an int is not a bool here");
}

static void test_skip_any_object_without_recursion(void)
{
	/* {"a": [1, -1, 1.5f, ext8, fixext1, "s"], "b": nil} then a sentinel */
	const uint8_t in[] = {0x82, 0xa1, 'a',  0x96, 0x01, 0xff, 0xca, 0,    0,
	                      0xc0, 0x3f, 0xc7, 0x02, 0x05, 'x',  'y',  0xd4, 0x01,
	                      0x02, 0xa1, 's',  0xa1, 'b',  0xc0, 0x2a};
	struct cursor c = {in, in + sizeof(in)};
	CHECK_INT(MP_OK, mp_skip(&c));
	CHECK_INT(0x2a, *c.p, "stopped right after the map");
	for (size_t cut = 0; cut < sizeof(in) - 1; cut++) {
		struct cursor s = {in, in + cut};
		CHECK_INT(MP_AGAIN, mp_skip(&s), "cut at %zu", cut);
		CHECK(s.p == in, "cut at %zu: kept", cut);
	}
	/* 100,000 nested arrays: a recursive skip would exhaust the stack */
	size_t deep = 100000;
	uint8_t *d = malloc(deep + 1);
	memset(d, 0x91, deep);
	d[deep] = 0x00;
	struct cursor dc = {d, d + deep + 1};
	CHECK_INT(MP_OK, mp_skip(&dc));
	free(d);
	/* a map that claims 2^32-1 pairs ends at the input, not after 2^33 steps */
	const uint8_t huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
	struct cursor hc = {huge, huge + sizeof(huge)};
	CHECK_INT(MP_AGAIN, mp_skip(&hc));
	/* 0xc1 is never used; it is passed over as one byte, as gossip always did */
	const uint8_t never[] = {0xc1, 0x00};
	struct cursor nc = {never, never + 2};
	CHECK_INT(MP_OK, mp_skip(&nc));
	CHECK(nc.p == never + 1, "one byte");
}

static void test_error_text_is_per_call(void)
{
	mp_fail("%s: %s: %s", "alive", "Node", "too long");
	CHECK_STR("alive: Node: too long", mp_error());
}

int main(void)
{
	RUN(test_big_endian_round_trips);
	RUN(test_cursor_short_read_does_not_move);
	RUN(test_wcursor_overflow_is_sticky);
	RUN(test_wcursor_grows_when_asked);
	RUN(test_writers_match_msgpack_c);
	RUN(test_write_int_as_go_does);
	RUN(test_read_uint_every_width_and_sign);
	RUN(test_read_raw_forms_and_nil);
	RUN(test_read_str_and_key_limits);
	RUN(test_map_array_and_nil_forms);
	RUN(test_skip_any_object_without_recursion);
	RUN(test_error_text_is_per_call);
	return check_exit_code();
}
