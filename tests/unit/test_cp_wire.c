/*
 * tests/unit/test_cp_wire.c — agent/cp_wire.h: Raft entries and forwarded
 * WRITE requests survive encode/decode field for field and re-encode to the
 * same bytes; READ requests decode; bad bytes (wrong version or kind, small
 * base, bad node, bad op count, unknown verb, oversized key or value,
 * truncation anywhere, trailing bytes) are refused with the field named.
 * Every decode reads from a heap copy of exactly the bytes given, so ASan
 * sees any read past them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cp_wire.h"
#include "tests/unit/check.h"

#define N_VERBS (KV_OP_SESSION_END + 1)

static char keys[KV_TXN_MAX_OPS + 1][KV_KEY_MAX + 2];

/* n ops cycling through every verb, with distinct keys, flags, indexes and
 * (for odd i) a short value holding a NUL; even ops carry no value. */
static void make_ops(struct kv_op *ops, size_t n)
{
	static const char val[] = "value\0with NUL";
	for (size_t i = 0; i < n; i++) {
		int kl = snprintf(keys[i], sizeof(keys[i]), "k/%zu", i);
		ops[i] = (struct kv_op){
		        .verb = (enum kv_op_verb)(i % N_VERBS),
		        .key = keys[i],
		        .key_len = (size_t)kl,
		        .value = i % 2 ? val : NULL,
		        .value_len = i % 2 ? sizeof(val) : 0,
		        .flags = i == 0 ? UINT64_MAX : i * 0x0101010101010101ull,
		        .index = i == 1 ? UINT64_MAX : (uint64_t)i << 40 | i,
		};
		if (cp_wire_lock_verb(ops[i].verb)) { /* 1..64 bytes of session */
			static const char sess[KV_SESSION_MAX + 1] =
			        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
			ops[i].session = sess;
			ops[i].session_len = 1 + i % KV_SESSION_MAX;
		}
	}
}

/* A heap copy of n bytes (ASan catches any read past them). */
static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);
	if (n)
		memcpy(c, p, n);
	return c;
}

static void check_ops(const struct kv_op *want, size_t n, const struct cp_ops *got)
{
	REQUIRE_INT(n, got->n);
	for (size_t i = 0; i < n; i++) {
		const struct kv_op *a = &want[i], *b = &got->op[i];
		CHECK_INT(a->verb, b->verb, "op %zu verb", i);
		CHECK(a->flags == b->flags, "op %zu flags", i);
		CHECK(a->index == b->index, "op %zu index", i);
		CHECK(a->key_len == b->key_len &&
		              (a->key_len == 0 || memcmp(a->key, b->key, a->key_len) == 0),
		      "op %zu key", i);
		CHECK(a->value_len == b->value_len &&
		              (a->value_len == 0 || memcmp(a->value, b->value, a->value_len) == 0),
		      "op %zu value", i);
		CHECK(a->session_len == b->session_len &&
		              (a->session_len == 0 ||
		               memcmp(a->session, b->session, a->session_len) == 0),
		      "op %zu session", i);
	}
}

/* Truncated encodings up to this size are decoded from a heap copy of
 * exactly the bytes kept (ASan sees any read past them); the half-megabyte
 * ones in place, so that checking every cut stays linear. */
#define COPY_MAX 65536

/* Encode an entry, decode it, compare, re-encode the decoded entry and
 * compare bytes; then every truncation and one trailing byte are refused. */
static void entry_round_trip(uint64_t base, const char *node, const struct kv_op *ops, size_t n)
{
	static struct cp_entry e;
	char err[256] = "";
	size_t len = cp_wire_entry_size(node, ops, n);
	CHECK_INT(2 + 8 + 1 + strlen(node) + cp_wire_ops_size(ops, n), len);
	uint8_t *b = malloc(len + 1);
	REQUIRE_INT(len, cp_wire_entry_encode(b, base, node, ops, n));
	uint8_t *c = dup_bytes(b, len);
	if (!CHECK(cp_wire_entry_decode(c, len, &e, err, sizeof(err)) == 0, "decode: %s", err)) {
		free(c);
		free(b);
		return;
	}
	CHECK_INT(CP_ENTRY_WRITE, e.kind);
	CHECK(e.base == base, "base");
	CHECK_STR(node, e.node);
	check_ops(ops, n, &e.ops);
	for (size_t i = 0; i < e.ops.n; i++)
		CHECK(e.ops.op[i].key_len == 0 ||
		              ((const uint8_t *)e.ops.op[i].key >= c &&
		               (const uint8_t *)e.ops.op[i].key + e.ops.op[i].key_len <= c + len),
		      "op %zu key points into the input", i);
	uint8_t *again = malloc(len);
	CHECK_INT(len, cp_wire_entry_size(e.node, e.ops.op, e.ops.n));
	CHECK_INT(len, cp_wire_entry_encode(again, e.base, e.node, e.ops.op, e.ops.n));
	CHECK(memcmp(again, b, len) == 0, "re-encoded entry is byte for byte the same");
	free(again);
	free(c);

	for (size_t cut = 0; cut < len; cut++) {
		c = len <= COPY_MAX ? dup_bytes(b, cut) : b;
		err[0] = '\0';
		CHECK_INT(-1, cp_wire_entry_decode(c, cut, &e, err, sizeof(err)),
		          "entry cut at %zu of %zu bytes", cut, len);
		CHECK(strstr(err, "past the end") || strstr(err, "missing"),
		      "cut at %zu: \"%s\" says it ended early", cut, err);
		if (c != b)
			free(c);
	}
	b[len] = 0;
	c = dup_bytes(b, len + 1);
	CHECK_INT(-1, cp_wire_entry_decode(c, len + 1, &e, err, sizeof(err)), "trailing byte");
	CHECK_HAS(err, "1 trailing bytes");
	free(c);
	free(b);
}

/* The same for a forwarded WRITE request. */
static void write_round_trip(const char *node, const struct kv_op *ops, size_t n)
{
	static struct cp_ops d;
	char dnode[KV_NODE_MAX + 1], err[256] = "";
	size_t len = cp_wire_write_size(node, ops, n);
	CHECK_INT(1 + strlen(node) + cp_wire_ops_size(ops, n), len);
	uint8_t *b = malloc(len + 1);
	REQUIRE_INT(len, cp_wire_write_encode(b, node, ops, n));
	uint8_t *c = dup_bytes(b, len);
	if (!CHECK(cp_wire_write_decode(c, len, dnode, &d, err, sizeof(err)) == 0, "decode: %s",
	           err)) {
		free(c);
		free(b);
		return;
	}
	CHECK_STR(node, dnode);
	check_ops(ops, n, &d);
	uint8_t *again = malloc(len);
	CHECK_INT(len, cp_wire_write_size(dnode, d.op, d.n));
	CHECK_INT(len, cp_wire_write_encode(again, dnode, d.op, d.n));
	CHECK(memcmp(again, b, len) == 0, "re-encoded write is byte for byte the same");
	free(again);
	free(c);

	for (size_t cut = 0; cut < len; cut++) {
		c = len <= COPY_MAX ? dup_bytes(b, cut) : b;
		err[0] = '\0';
		CHECK_INT(-1, cp_wire_write_decode(c, cut, dnode, &d, err, sizeof(err)),
		          "write cut at %zu of %zu bytes", cut, len);
		CHECK(strstr(err, "past the end") || strstr(err, "missing"),
		      "cut at %zu: \"%s\" says it ended early", cut, err);
		if (c != b)
			free(c);
	}
	b[len] = 0xff;
	c = dup_bytes(b, len + 1);
	CHECK_INT(-1, cp_wire_write_decode(c, len + 1, dnode, &d, err, sizeof(err)),
	          "trailing byte");
	CHECK_HAS(err, "1 trailing bytes");
	free(c);
	free(b);
}

static void test_one_op_round_trip(void)
{
	struct kv_op op[1];
	make_ops(op, 1);
	entry_round_trip(2, "n", op, 1);
	write_round_trip("n", op, 1);
	entry_round_trip(UINT64_MAX, "node-1.dc1", op, 1);
	write_round_trip("node-1.dc1", op, 1);
}

static void test_max_ops_every_verb(void)
{
	static struct kv_op ops[KV_TXN_MAX_OPS];
	make_ops(ops, KV_TXN_MAX_OPS);
	bool seen[N_VERBS] = {false};
	for (size_t i = 0; i < KV_TXN_MAX_OPS; i++)
		seen[ops[i].verb] = true;
	for (int v = 0; v < N_VERBS; v++)
		CHECK(seen[v], "verb %d among the 64 ops", v);
	entry_round_trip(1234567, "server-2", ops, KV_TXN_MAX_OPS);
	write_round_trip("server-2", ops, KV_TXN_MAX_OPS);
	/* each verb alone */
	for (int v = 0; v < N_VERBS; v++) {
		struct kv_op op = ops[0];
		op.verb = (enum kv_op_verb)v;
		op.session = cp_wire_lock_verb(v) ? "s-1" : NULL;
		op.session_len = cp_wire_lock_verb(v) ? 3 : 0;
		entry_round_trip(2, "a", &op, 1);
		write_round_trip("a", &op, 1);
	}
}

static void test_empty_and_max_sizes(void)
{
	/* empty values, and an empty key (DELETE_TREE of everything) */
	struct kv_op ops[3] = {
	        {.verb = KV_OP_SET, .key = "empty", .key_len = 5, .value = NULL, .value_len = 0},
	        {.verb = KV_OP_SET, .key = "empty2", .key_len = 6, .value = "", .value_len = 0},
	        {.verb = KV_OP_DELETE_TREE, .key = "", .key_len = 0},
	};
	entry_round_trip(2, "n", ops, 3);
	write_round_trip("n", ops, 3);

	/* node name of KV_NODE_MAX bytes */
	char node[KV_NODE_MAX + 1];
	memset(node, 'x', KV_NODE_MAX);
	node[KV_NODE_MAX] = '\0';
	entry_round_trip(99, node, ops, 1);
	write_round_trip(node, ops, 1);

	/* key of KV_KEY_MAX, value of KV_VALUE_MAX (one truncation loop over
	 * half a megabyte per call: fast enough, and it checks every cut) */
	static char key[KV_KEY_MAX];
	memset(key, 'k', sizeof(key));
	uint8_t *val = malloc(KV_VALUE_MAX);
	for (size_t i = 0; i < KV_VALUE_MAX; i++)
		val[i] = (uint8_t)(i * 7);
	struct kv_op big = {.verb = KV_OP_CAS,
	                    .key = key,
	                    .key_len = KV_KEY_MAX,
	                    .value = val,
	                    .value_len = KV_VALUE_MAX,
	                    .flags = 42,
	                    .index = 7};
	entry_round_trip(3, "n", &big, 1);
	write_round_trip("n", &big, 1);
	free(val);
}

/* Decoding b as an entry (and, after its header, as a WRITE) fails naming
 * `field`. */
static void entry_refused(const uint8_t *b, size_t n, const char *field)
{
	static struct cp_entry e;
	char err[256] = "";
	uint8_t *c = dup_bytes(b, n);
	CHECK_INT(-1, cp_wire_entry_decode(c, n, &e, err, sizeof(err)), "expected a refusal: %s",
	          field);
	CHECK_HAS(err, field);
	free(c);
}

static void write_refused(const uint8_t *b, size_t n, const char *field)
{
	static struct cp_ops ops;
	char node[KV_NODE_MAX + 1], err[256] = "";
	uint8_t *c = dup_bytes(b, n);
	CHECK_INT(-1, cp_wire_write_decode(c, n, node, &ops, err, sizeof(err)),
	          "expected a refusal: %s", field);
	CHECK_HAS(err, field);
	free(c);
}

/* An entry of one op (node "ab", key "k", value "v"); offsets below. */
#define E_NODE_LEN 10
#define E_NODE 11
#define E_COUNT 13
#define E_VERB 15
#define E_KLEN (E_VERB + 17)
#define E_VLEN (E_KLEN + 2 + 1)
static size_t good_entry(uint8_t *b, size_t cap)
{
	struct kv_op op = {
	        .verb = KV_OP_SET, .key = "k", .key_len = 1, .value = "v", .value_len = 1};
	size_t n = cp_wire_entry_size("ab", &op, 1);
	if (n > cap)
		return 0;
	return cp_wire_entry_encode(b, 5, "ab", &op, 1);
}

static void test_entry_refusals(void)
{
	uint8_t g[64], b[64];
	size_t n = good_entry(g, sizeof(g));
	REQUIRE_INT(E_VLEN + 4 + 1, n);
	REQUIRE(g[E_KLEN + 2] == 'k' && g[E_VLEN + 4] == 'v', "layout as the offsets say");

	entry_refused(g, 0, "entry: header");
	entry_refused(g, 9, "entry: header");
	memcpy(b, g, n);
	b[0] = 2;
	entry_refused(b, n, "entry: version 2");
	b[0] = 0;
	entry_refused(b, n, "entry: version 0");
	memcpy(b, g, n);
	b[1] = 2;
	entry_refused(b, n, "entry: unknown kind 2");
	b[1] = 0;
	entry_refused(b, n, "entry: unknown kind 0");
	memcpy(b, g, n);
	memset(b + 2, 0, 8);
	entry_refused(b, n, "entry: base version 0");
	b[9] = 1;
	entry_refused(b, n, "entry: base version 1");
	b[9] = 2; /* base 2 is the first accepted */
	{
		static struct cp_entry e;
		char err[256] = "";
		CHECK_INT(0, cp_wire_entry_decode(b, n, &e, err, sizeof(err)), "base 2: %s", err);
		CHECK(e.base == 2, "base 2");
	}

	/* node: length 0, over KV_NODE_MAX, a NUL inside, missing */
	memcpy(b, g, n);
	b[E_NODE_LEN] = 0;
	entry_refused(b, n, "node: length 0");
	b[E_NODE_LEN] = KV_NODE_MAX + 1;
	entry_refused(b, n, "node: length 129");
	b[E_NODE_LEN] = 255;
	entry_refused(b, n, "node: length 255");
	memcpy(b, g, n);
	b[E_NODE + 1] = '\0';
	entry_refused(b, n, "node: holds a NUL");
	b[E_NODE] = '\0';
	entry_refused(b, n, "node: holds a NUL");
	entry_refused(g, E_NODE_LEN, "node: missing length");
	entry_refused(g, E_NODE + 1, "node: runs past the end");

	/* op count 0 and over KV_TXN_MAX_OPS */
	memcpy(b, g, n);
	b[E_COUNT] = 0;
	b[E_COUNT + 1] = 0;
	entry_refused(b, n, "ops: count 0");
	b[E_COUNT + 1] = KV_TXN_MAX_OPS + 1;
	entry_refused(b, n, "ops: count 65");
	b[E_COUNT] = 0xff;
	b[E_COUNT + 1] = 0xff;
	entry_refused(b, n, "ops: count 65535");
	entry_refused(g, E_COUNT + 1, "ops: missing count");

	/* unknown verbs */
	memcpy(b, g, n);
	b[E_VERB] = N_VERBS;
	entry_refused(b, n, "op 0: unknown verb 11");
	b[E_VERB] = 255;
	entry_refused(b, n, "op 0: unknown verb 255");

	/* key and value lengths over the limits, with or without the bytes */
	memcpy(b, g, n);
	b[E_KLEN] = (KV_KEY_MAX + 1) >> 8;
	b[E_KLEN + 1] = (KV_KEY_MAX + 1) & 0xff;
	entry_refused(b, n, "op 0: key of 481 bytes is over 480");
	b[E_KLEN] = b[E_KLEN + 1] = 0xff;
	entry_refused(b, n, "op 0: key of 65535 bytes");
	b[E_KLEN] = 0;
	b[E_KLEN + 1] = 7; /* within the limit, past the end */
	entry_refused(b, n, "op 0: key runs past the end");
	memcpy(b, g, n);
	b[E_VLEN] = 0;
	b[E_VLEN + 1] = (uint8_t)((KV_VALUE_MAX + 1) >> 16);
	b[E_VLEN + 2] = 0;
	b[E_VLEN + 3] = 1;
	entry_refused(b, n, "op 0: value of 524289 bytes is over 524288");
	memset(b + E_VLEN, 0xff, 4);
	entry_refused(b, n, "op 0: value of 4294967295 bytes");
	memset(b + E_VLEN, 0, 4);
	b[E_VLEN + 3] = 2;
	entry_refused(b, n, "op 0: value runs past the end");

	/* trailing bytes */
	memcpy(b, g, n);
	b[n] = 0;
	b[n + 1] = 0;
	entry_refused(b, n + 2, "2 trailing bytes");
}

static void test_refusals_by_encoder(void)
{
	/* KV_TXN_MAX_OPS + 1 real ops, unknown verbs in a later op, oversized
	 * key and value: the encoders do not check, the decoders must */
	static struct kv_op ops[KV_TXN_MAX_OPS + 1];
	make_ops(ops, KV_TXN_MAX_OPS + 1);
	size_t len = cp_wire_entry_size("n", ops, KV_TXN_MAX_OPS + 1);
	uint8_t *b = malloc(len);
	REQUIRE_INT(len, cp_wire_entry_encode(b, 2, "n", ops, KV_TXN_MAX_OPS + 1));
	entry_refused(b, len, "ops: count 65 is not 1..64");
	free(b);
	len = cp_wire_write_size("n", ops, KV_TXN_MAX_OPS + 1);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_write_encode(b, "n", ops, KV_TXN_MAX_OPS + 1));
	write_refused(b, len, "ops: count 65 is not 1..64");
	free(b);

	make_ops(ops, 3);
	ops[2].verb = (enum kv_op_verb)N_VERBS;
	len = cp_wire_entry_size("n", ops, 3);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_entry_encode(b, 2, "n", ops, 3));
	entry_refused(b, len, "op 2: unknown verb 11");
	free(b);
	len = cp_wire_write_size("n", ops, 3);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_write_encode(b, "n", ops, 3));
	write_refused(b, len, "op 2: unknown verb 11");
	free(b);

	static char key[KV_KEY_MAX + 1];
	memset(key, 'k', sizeof(key));
	make_ops(ops, 2);
	ops[1].key = key;
	ops[1].key_len = KV_KEY_MAX + 1;
	len = cp_wire_write_size("n", ops, 2);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_write_encode(b, "n", ops, 2));
	write_refused(b, len, "op 1: key of 481 bytes is over 480");
	free(b);
	len = cp_wire_entry_size("n", ops, 2);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_entry_encode(b, 2, "n", ops, 2));
	entry_refused(b, len, "op 1: key of 481 bytes is over 480");
	free(b);

	uint8_t *val = calloc(1, KV_VALUE_MAX + 1);
	make_ops(ops, 1);
	ops[0].value = val;
	ops[0].value_len = KV_VALUE_MAX + 1;
	len = cp_wire_write_size("n", ops, 1);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_write_encode(b, "n", ops, 1));
	write_refused(b, len, "op 0: value of 524289 bytes is over 524288");
	free(b);
	len = cp_wire_entry_size("n", ops, 1);
	b = malloc(len);
	REQUIRE_INT(len, cp_wire_entry_encode(b, 2, "n", ops, 1));
	entry_refused(b, len, "op 0: value of 524289 bytes is over 524288");
	free(b);
	free(val);
}

static void test_write_refusals(void)
{
	struct kv_op op = {.verb = KV_OP_DELETE, .key = "k", .key_len = 1};
	uint8_t g[64], b[64];
	size_t n = cp_wire_write_size("ab", &op, 1);
	REQUIRE(n <= sizeof(g), "fits");
	REQUIRE_INT(n, cp_wire_write_encode(g, "ab", &op, 1));
	/* u8 node_len, "ab", u16 count, op (verb at 5) */
	write_refused(g, 0, "node: missing length");
	memcpy(b, g, n);
	b[0] = 0;
	write_refused(b, n, "node: length 0");
	b[0] = KV_NODE_MAX + 1;
	write_refused(b, n, "node: length 129");
	memcpy(b, g, n);
	b[2] = '\0';
	write_refused(b, n, "node: holds a NUL");
	memcpy(b, g, n);
	b[3] = b[4] = 0;
	write_refused(b, n, "ops: count 0");
	b[4] = KV_TXN_MAX_OPS + 1;
	write_refused(b, n, "ops: count 65");
	memcpy(b, g, n);
	b[5] = N_VERBS;
	write_refused(b, n, "op 0: unknown verb 11");
	memcpy(b, g, n);
	b[n] = 1;
	write_refused(b, n + 1, "1 trailing bytes");
	/* an entry is not a WRITE request: its version byte is a node length
	 * of 1, its kind byte the node, then the base's high zeros a count of 0 */
	uint8_t e[64];
	size_t en = good_entry(e, sizeof(e));
	REQUIRE(en > 0, "entry");
	write_refused(e, en, "ops: count 0");
}

static void read_ok(const uint8_t *b, size_t n, bool recurse, const char *key, size_t key_len)
{
	bool r = !recurse;
	const char *k = NULL;
	size_t kl = 12345;
	char err[256] = "";
	uint8_t *c = dup_bytes(b, n);
	REQUIRE_INT(0, cp_wire_read_decode(c, n, &r, &k, &kl, err, sizeof(err)), "read: %s", err);
	CHECK_BOOL(recurse, r);
	CHECK_INT(key_len, kl);
	CHECK(k == (const char *)c + 3, "the key points into the input");
	CHECK(kl == 0 || memcmp(k, key, kl) == 0, "key bytes");
	free(c);
}

static void read_refused(const uint8_t *b, size_t n, const char *field)
{
	bool r;
	const char *k;
	size_t kl;
	char err[256] = "";
	uint8_t *c = dup_bytes(b, n);
	CHECK_INT(-1, cp_wire_read_decode(c, n, &r, &k, &kl, err, sizeof(err)),
	          "expected a refusal: %s", field);
	CHECK_HAS(err, field);
	free(c);
}

static void test_read_decode(void)
{
	read_ok((const uint8_t[]){0, 0, 3, 'a', '/', 'b'}, 6, false, "a/b", 3);
	read_ok((const uint8_t[]){1, 0, 3, 'a', '/', 'b'}, 6, true, "a/b", 3);
	read_ok((const uint8_t[]){1, 0, 0}, 3, true, "", 0);
	read_refused((const uint8_t[]){2, 0, 3, 'a', '/', 'b'}, 6, "read: recurse flag 2");
	read_refused((const uint8_t[]){255, 0, 0}, 3, "read: recurse flag 255");

	static uint8_t b[3 + KV_KEY_MAX + 2];
	memset(b, 'k', sizeof(b));
	b[0] = 0;
	b[1] = KV_KEY_MAX >> 8;
	b[2] = KV_KEY_MAX & 0xff;
	read_ok(b, 3 + KV_KEY_MAX, false, (const char *)b + 3, KV_KEY_MAX);
	for (size_t cut = 0; cut < 3 + KV_KEY_MAX; cut++)
		read_refused(b, cut, cut < 3 ? "read: header runs past" : "read: key runs past");
	read_refused(b, 3 + KV_KEY_MAX + 1, "read: 1 trailing bytes");
	read_refused(b, 3 + KV_KEY_MAX + 2, "read: 2 trailing bytes");
	b[1] = (KV_KEY_MAX + 1) >> 8;
	b[2] = (KV_KEY_MAX + 1) & 0xff;
	read_refused(b, 3 + KV_KEY_MAX + 1, "read: key of 481 bytes is over 480");
	b[1] = b[2] = 0xff;
	read_refused(b, 3, "read: key of 65535 bytes");
	read_refused(NULL, 0, "read: header");
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_one_op_round_trip);
	RUN(test_max_ops_every_verb);
	RUN(test_empty_and_max_sizes);
	RUN(test_entry_refusals);
	RUN(test_refusals_by_encoder);
	RUN(test_write_refusals);
	RUN(test_read_decode);
	return check_exit_code();
}
