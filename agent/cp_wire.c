/*
 * agent/cp_wire.c — see cp_wire.h.
 */
#include "agent/cp_wire.h"

#include <stdio.h>
#include <string.h>

#include "lib/cursor.h"

size_t cp_wire_ops_size(const struct kv_op *ops, size_t n)
{
	size_t s = 2;
	for (size_t i = 0; i < n; i++)
		s += 1 + 8 + 8 + 2 + ops[i].key_len + 4 + ops[i].value_len +
		     (cp_wire_lock_verb(ops[i].verb) ? 1 + ops[i].session_len : 0);
	return s;
}

bool cp_wire_lock_verb(int verb)
{
	return verb >= KV_OP_LOCK && verb <= KV_OP_SESSION_END;
}

static void put_ops(struct wcursor *w, const struct kv_op *ops, size_t n)
{
	wcursor_be16(w, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		wcursor_u8(w, (uint8_t)ops[i].verb);
		wcursor_be64(w, ops[i].flags);
		wcursor_be64(w, ops[i].index);
		wcursor_be16(w, (uint16_t)ops[i].key_len);
		wcursor_put(w, ops[i].key, ops[i].key_len);
		wcursor_be32(w, (uint32_t)ops[i].value_len);
		wcursor_put(w, ops[i].value, ops[i].value_len);
		if (cp_wire_lock_verb(ops[i].verb)) {
			wcursor_u8(w, (uint8_t)ops[i].session_len);
			wcursor_put(w, ops[i].session, ops[i].session_len);
		}
	}
}

size_t cp_wire_entry_size(const char *node, const struct kv_op *ops, size_t n)
{
	return 2 + 8 + 1 + strlen(node) + cp_wire_ops_size(ops, n);
}

size_t cp_wire_entry_encode(uint8_t *buf, uint64_t base, const char *node, const struct kv_op *ops,
                            size_t n)
{
	size_t cap = cp_wire_entry_size(node, ops, n);
	struct wcursor w = {buf, 0, cap, false, false};
	wcursor_u8(&w, CP_WIRE_VERSION);
	wcursor_u8(&w, CP_ENTRY_WRITE);
	wcursor_be64(&w, base);
	wcursor_u8(&w, (uint8_t)strlen(node));
	wcursor_put(&w, node, strlen(node));
	put_ops(&w, ops, n);
	return wcursor_done(&w) < 0 ? 0 : w.len;
}

size_t cp_wire_restore_entry_size(const char *node, size_t body_len)
{
	return 2 + 8 + 1 + strlen(node) + body_len;
}

size_t cp_wire_restore_entry_encode(uint8_t *buf, uint64_t base, const char *node,
                                    const uint8_t *body, size_t body_len)
{
	struct wcursor w = {buf, 0, cp_wire_restore_entry_size(node, body_len), false, false};
	wcursor_u8(&w, CP_WIRE_VERSION);
	wcursor_u8(&w, CP_ENTRY_RESTORE);
	wcursor_be64(&w, base);
	wcursor_u8(&w, (uint8_t)strlen(node));
	wcursor_put(&w, node, strlen(node));
	wcursor_put(&w, body, body_len);
	return wcursor_done(&w) < 0 ? 0 : w.len;
}

size_t cp_wire_restore_size(const char *node, size_t body_len)
{
	return 1 + strlen(node) + body_len;
}

size_t cp_wire_restore_encode(uint8_t *buf, const char *node, const uint8_t *body, size_t body_len)
{
	struct wcursor w = {buf, 0, cp_wire_restore_size(node, body_len), false, false};
	wcursor_u8(&w, (uint8_t)strlen(node));
	wcursor_put(&w, node, strlen(node));
	wcursor_put(&w, body, body_len);
	return wcursor_done(&w) < 0 ? 0 : w.len;
}

size_t cp_wire_write_size(const char *node, const struct kv_op *ops, size_t n)
{
	return 1 + strlen(node) + cp_wire_ops_size(ops, n);
}

size_t cp_wire_write_encode(uint8_t *buf, const char *node, const struct kv_op *ops, size_t n)
{
	size_t cap = cp_wire_write_size(node, ops, n);
	struct wcursor w = {buf, 0, cap, false, false};
	wcursor_u8(&w, (uint8_t)strlen(node));
	wcursor_put(&w, node, strlen(node));
	put_ops(&w, ops, n);
	return wcursor_done(&w) < 0 ? 0 : w.len;
}

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		snprintf(err, errlen, __VA_ARGS__);                                                \
		return -1;                                                                         \
	} while (0)

static int get_node(struct cursor *c, char *node, char *err, size_t errlen)
{
	uint8_t len;
	const uint8_t *p;
	if (!cursor_u8(c, &len))
		FAIL("node: missing length");
	if (len == 0 || len > KV_NODE_MAX)
		FAIL("node: length %u is not 1..%d", len, KV_NODE_MAX);
	if (!cursor_bytes(c, len, &p))
		FAIL("node: runs past the end");
	if (memchr(p, '\0', len) != NULL)
		FAIL("node: holds a NUL byte");
	memcpy(node, p, len);
	node[len] = '\0';
	return 0;
}

static int get_op(struct cursor *c, size_t i, struct kv_op *op, char *err, size_t errlen)
{
	uint8_t verb;
	uint16_t klen;
	uint32_t vlen;
	const uint8_t *k, *v;
	if (!cursor_u8(c, &verb) || !cursor_be64(c, &op->flags) || !cursor_be64(c, &op->index) ||
	    !cursor_be16(c, &klen))
		FAIL("op %zu: header runs past the end", i);
	if (verb > KV_OP_SESSION_END)
		FAIL("op %zu: unknown verb %u", i, verb);
	if (klen > KV_KEY_MAX)
		FAIL("op %zu: key of %u bytes is over %d", i, klen, KV_KEY_MAX);
	if (!cursor_bytes(c, klen, &k))
		FAIL("op %zu: key runs past the end", i);
	if (!cursor_be32(c, &vlen))
		FAIL("op %zu: value length runs past the end", i);
	if (vlen > KV_VALUE_MAX)
		FAIL("op %zu: value of %u bytes is over %u", i, vlen, KV_VALUE_MAX);
	if (!cursor_bytes(c, vlen, &v))
		FAIL("op %zu: value runs past the end", i);
	op->verb = (enum kv_op_verb)verb;
	op->key = (const char *)k;
	op->key_len = klen;
	op->value = v;
	op->value_len = vlen;
	op->session = NULL;
	op->session_len = 0;
	if (cp_wire_lock_verb(verb)) {
		uint8_t slen;
		const uint8_t *sp;
		if (!cursor_u8(c, &slen) || !cursor_bytes(c, slen, &sp))
			FAIL("op %zu: session runs past the end", i);
		if (slen == 0 || slen > KV_SESSION_MAX)
			FAIL("op %zu: session of %u bytes is not 1..%d", i, slen, KV_SESSION_MAX);
		op->session = (const char *)sp;
		op->session_len = slen;
	}
	return 0;
}

static int get_ops(struct cursor *c, struct cp_ops *ops, char *err, size_t errlen)
{
	uint16_t n;
	if (!cursor_be16(c, &n))
		FAIL("ops: missing count");
	if (n == 0 || n > KV_TXN_MAX_OPS)
		FAIL("ops: count %u is not 1..%d", n, KV_TXN_MAX_OPS);
	for (size_t i = 0; i < n; i++)
		if (get_op(c, i, &ops->op[i], err, errlen) < 0)
			return -1;
	ops->n = n;
	if (cursor_avail(c) != 0)
		FAIL("%zu trailing bytes", cursor_avail(c));
	return 0;
}

int cp_wire_entry_decode(const uint8_t *p, size_t n, struct cp_entry *e, char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	uint8_t ver;
	if (!cursor_u8(&c, &ver) || !cursor_u8(&c, &e->kind) || !cursor_be64(&c, &e->base))
		FAIL("entry: header runs past the end");
	if (ver != CP_WIRE_VERSION)
		FAIL("entry: version %u, this agent reads %d", ver, CP_WIRE_VERSION);
	if (e->kind != CP_ENTRY_WRITE)
		FAIL("entry: unknown kind %u", e->kind);
	if (e->base < 2)
		FAIL("entry: base version %llu is too small", (unsigned long long)e->base);
	if (get_node(&c, e->node, err, errlen) < 0)
		return -1;
	return get_ops(&c, &e->ops, err, errlen);
}

int cp_wire_entry_kind(const uint8_t *p, size_t n)
{
	return n >= 2 && p[0] == CP_WIRE_VERSION ? p[1] : -1;
}

int cp_wire_restore_entry_decode(const uint8_t *p, size_t n, uint64_t *base, char *node,
                                 const uint8_t **body, size_t *body_len, char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	uint8_t ver, kind;
	if (!cursor_u8(&c, &ver) || !cursor_u8(&c, &kind) || !cursor_be64(&c, base))
		FAIL("restore entry: header runs past the end");
	if (ver != CP_WIRE_VERSION || kind != CP_ENTRY_RESTORE)
		FAIL("restore entry: version %u kind %u", ver, kind);
	if (*base < 2)
		FAIL("restore entry: base version %llu is too small", (unsigned long long)*base);
	if (get_node(&c, node, err, errlen) < 0)
		return -1;
	*body = c.p;
	*body_len = (size_t)(c.end - c.p);
	return 0;
}

int cp_wire_restore_decode(const uint8_t *p, size_t n, char *node, const uint8_t **body,
                           size_t *body_len, char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	if (get_node(&c, node, err, errlen) < 0)
		return -1;
	*body = c.p;
	*body_len = (size_t)(c.end - c.p);
	return 0;
}

int cp_wire_write_decode(const uint8_t *p, size_t n, char *node, struct cp_ops *ops, char *err,
                         size_t errlen)
{
	struct cursor c = {p, p + n};
	if (get_node(&c, node, err, errlen) < 0)
		return -1;
	return get_ops(&c, ops, err, errlen);
}

int cp_wire_read_decode(const uint8_t *p, size_t n, bool *recurse, const char **key,
                        size_t *key_len, char *err, size_t errlen)
{
	struct cursor c = {p, p + n};
	uint8_t r;
	uint16_t klen;
	const uint8_t *k;
	if (!cursor_u8(&c, &r) || !cursor_be16(&c, &klen))
		FAIL("read: header runs past the end");
	if (r > 1)
		FAIL("read: recurse flag %u is not 0 or 1", r);
	if (klen > KV_KEY_MAX)
		FAIL("read: key of %u bytes is over %d", klen, KV_KEY_MAX);
	if (!cursor_bytes(&c, klen, &k))
		FAIL("read: key runs past the end");
	if (cursor_avail(&c) != 0)
		FAIL("read: %zu trailing bytes", cursor_avail(&c));
	*recurse = r == 1;
	*key = (const char *)k;
	*key_len = klen;
	return 0;
}
