/*
 * tests/fuzz/fuzz_cp_wire.c — the CP store's decoders (agent/cp_wire.h):
 * the Raft entries every server applies and the WRITE and READ requests
 * agents forward over server RPC.
 *
 * Each input is read, whole, as:
 *  1. an entry (cp_wire_entry_decode); one that decodes must encode to
 *     exactly the input again (the encoding has one form: no trailing
 *     bytes, every length exact), within the limits of kv/limits.h;
 *  2. a WRITE request (cp_wire_write_decode), the same;
 *  3. a READ request (cp_wire_read_decode): the key lies inside the input
 *     and is all of it after the 3-byte head;
 *  4. a restore entry and a RESTORE request: the body is the rest of the
 *     input, and re-encoding gives the input back.
 * A refusal must say why. Any crash, sanitizer report or broken invariant
 * aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cp_wire.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_cp_wire: %s:%d: %s\n", __FILE__, __LINE__, #c);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Decoded ops are within the limits and point into the input. */
static void check_ops(const struct cp_ops *ops, const uint8_t *data, size_t size)
{
	ASSERT(ops->n >= 1 && ops->n <= KV_TXN_MAX_OPS);
	for (size_t i = 0; i < ops->n; i++) {
		const struct kv_op *op = &ops->op[i];
		ASSERT(op->verb <= KV_OP_SESSION_END);
		ASSERT(cp_wire_lock_verb(op->verb)
		               ? op->session_len >= 1 && op->session_len <= KV_SESSION_MAX &&
		                         (const uint8_t *)op->session >= data &&
		                         (const uint8_t *)op->session + op->session_len <=
		                                 data + size
		               : op->session_len == 0);
		ASSERT(op->key_len <= KV_KEY_MAX && op->value_len <= KV_VALUE_MAX);
		ASSERT((const uint8_t *)op->key >= data &&
		       (const uint8_t *)op->key + op->key_len <= data + size);
		ASSERT((const uint8_t *)op->value >= data &&
		       (const uint8_t *)op->value + op->value_len <= data + size);
	}
}

static void check_node(const char *node)
{
	size_t len = strnlen(node, KV_NODE_MAX + 1);
	ASSERT(len >= 1 && len <= KV_NODE_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cp_entry e;
	static struct cp_ops ops;
	char err[256], node[KV_NODE_MAX + 1];

	err[0] = '\0';
	if (cp_wire_entry_decode(data, size, &e, err, sizeof(err)) == 0) {
		ASSERT(e.kind == CP_ENTRY_WRITE && e.base >= 2);
		check_node(e.node);
		check_ops(&e.ops, data, size);
		size_t n = cp_wire_entry_size(e.node, e.ops.op, e.ops.n);
		ASSERT(n == size);
		uint8_t *out = malloc(n);
		ASSERT(out != NULL);
		ASSERT(cp_wire_entry_encode(out, e.base, e.node, e.ops.op, e.ops.n) == n);
		ASSERT(memcmp(out, data, n) == 0);
		free(out);
	} else {
		ASSERT(err[0] != '\0');
	}

	err[0] = '\0';
	if (cp_wire_write_decode(data, size, node, &ops, err, sizeof(err)) == 0) {
		check_node(node);
		check_ops(&ops, data, size);
		size_t n = cp_wire_write_size(node, ops.op, ops.n);
		ASSERT(n == size);
		uint8_t *out = malloc(n);
		ASSERT(out != NULL);
		ASSERT(cp_wire_write_encode(out, node, ops.op, ops.n) == n);
		ASSERT(memcmp(out, data, n) == 0);
		free(out);
	} else {
		ASSERT(err[0] != '\0');
	}

	err[0] = '\0';
	bool recurse;
	const char *key;
	size_t key_len;
	if (cp_wire_read_decode(data, size, &recurse, &key, &key_len, err, sizeof(err)) == 0) {
		ASSERT(size >= 3 && data[0] <= 1 && recurse == (data[0] == 1));
		ASSERT(key_len <= KV_KEY_MAX && key_len == size - 3);
		ASSERT((const uint8_t *)key == data + 3);
	} else {
		ASSERT(err[0] != '\0');
	}

	uint64_t base;
	const uint8_t *body;
	size_t blen;
	err[0] = '\0';
	if (cp_wire_restore_entry_decode(data, size, &base, node, &body, &blen, err, sizeof(err)) ==
	    0) {
		check_node(node);
		ASSERT(base >= 2 && body + blen == data + size);
		ASSERT(cp_wire_entry_kind(data, size) == CP_ENTRY_RESTORE);
		size_t n = cp_wire_restore_entry_size(node, blen);
		uint8_t *out = malloc(n ? n : 1);
		ASSERT(out != NULL && n == size);
		ASSERT(cp_wire_restore_entry_encode(out, base, node, body, blen) == n);
		ASSERT(memcmp(out, data, n) == 0);
		free(out);
	} else {
		ASSERT(err[0] != '\0');
	}
	err[0] = '\0';
	if (cp_wire_restore_decode(data, size, node, &body, &blen, err, sizeof(err)) == 0) {
		check_node(node);
		ASSERT(body + blen == data + size);
		ASSERT(cp_wire_restore_size(node, blen) == size);
	} else {
		ASSERT(err[0] != '\0');
	}
	return 0;
}
