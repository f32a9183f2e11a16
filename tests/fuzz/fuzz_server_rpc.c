/*
 * tests/fuzz/fuzz_server_rpc.c — the server RPC's decoders
 * (agent/server_rpc_wire.h).
 *
 * Each input is read as:
 *  1. a stream of frames (server_rpc_frame_next with a small bound): every
 *     frame consumed lies inside the input and within the bound, and each
 *     payload goes through the decoder its type names;
 *  2. one HELLO payload: one that decodes encodes to exactly the input
 *     again (the encoding has one form);
 *  3. one REQUEST/REPLY payload: the body is the input after the 9-byte head;
 *  4. one PART payload: the piece is the input after the 4-byte total.
 * Any crash, sanitizer report or broken invariant aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/server_rpc.h"
#include "agent/server_rpc_wire.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_server_rpc: %s:%d: %s\n", __FILE__, __LINE__, #c);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void payload(uint8_t type, const uint8_t *p, size_t n)
{
	char err[256];
	err[0] = '\0';
	if (type == SERVER_RPC_T_HELLO) {
		struct server_rpc_hello h;
		if (server_rpc_decode_hello(p, n, &h, err, sizeof(err)) == 0) {
			uint8_t out[SERVER_RPC_HELLO_MAX];
			size_t m = server_rpc_encode_hello(out, sizeof(out), &h);
			ASSERT(m == n && memcmp(out, p, n) == 0);
			ASSERT((h.server_id != 0) == (h.addr_len != 0) && h.node_len > 0);
		} else {
			ASSERT(err[0] != '\0');
		}
	} else if (type == SERVER_RPC_T_PART) {
		uint32_t total;
		const uint8_t *piece;
		size_t len;
		if (server_rpc_decode_part(p, n, &total, &piece, &len, err, sizeof(err)) == 0) {
			ASSERT(piece == p + 4 && len == n - 4 && len >= 1 && len <= total);
			ASSERT(total > SERVER_RPC_PART_SIZE && total <= SERVER_RPC_MESSAGE_MAX);
		} else {
			ASSERT(err[0] != '\0');
		}
	} else if (type == SERVER_RPC_T_REQUEST || type == SERVER_RPC_T_REPLY) {
		struct server_rpc_msg m;
		if (server_rpc_decode_msg(p, n, "request", &m, err, sizeof(err)) == 0) {
			ASSERT(n >= SERVER_RPC_MSG_HEAD && m.body == p + SERVER_RPC_MSG_HEAD &&
			       m.body_len == n - SERVER_RPC_MSG_HEAD);
			uint8_t head[SERVER_RPC_MSG_HEAD];
			server_rpc_encode_msg_head(head, m.req_id, m.code);
			ASSERT(memcmp(head, p, SERVER_RPC_MSG_HEAD) == 0);
		} else {
			ASSERT(n < SERVER_RPC_MSG_HEAD && err[0] != '\0');
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	size_t off = 0;
	for (;;) {
		uint8_t type;
		const uint8_t *pl;
		size_t pn;
		long n = server_rpc_frame_next(data + off, size - off, 4096, &type, &pl, &pn, err,
		                               sizeof(err));
		if (n <= 0)
			break;
		ASSERT((size_t)n <= size - off && (size_t)n == 5 + pn && pn < 4096);
		ASSERT(pl == data + off + 5);
		payload(type, pl, pn);
		off += (size_t)n;
	}
	payload(SERVER_RPC_T_HELLO, data, size);
	payload(SERVER_RPC_T_REQUEST, data, size);
	payload(SERVER_RPC_T_PART, data, size);
	return 0;
}
