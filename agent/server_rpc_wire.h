/*
 * agent/server_rpc_wire.h — the server RPC's bytes (agent/server_rpc.h),
 * sans-I/O: splitting a stream into frames with a caller-chosen bound, and
 * the encoders and paranoid decoders of HELLO, REQUEST, REPLY and PART.
 *
 * Owns nothing and keeps no state; never touches a socket or a clock. The
 * driver (agent/server_rpc.c) and the fuzz target (tests/fuzz/
 * fuzz_server_rpc.c) call it.
 *
 * Error convention: decoders return 0, or -1 with a message naming the
 * field in err; what they fill points into the input.
 */
#ifndef RUMOR_AGENT_SERVER_RPC_WIRE_H
#define RUMOR_AGENT_SERVER_RPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define SERVER_RPC_HELLO_MAX (8 + 1 + 255 + 1 + 255)
#define SERVER_RPC_MSG_HEAD 9 /* u64 req_id, u8 method or status */

struct server_rpc_hello {
	uint64_t server_id;
	const char *addr; /* not NUL-terminated */
	size_t addr_len;
	const char *node;
	size_t node_len;
};

/* REQUEST (code: the method) or REPLY (code: the status). */
struct server_rpc_msg {
	uint64_t req_id;
	uint8_t code;
	const uint8_t *body;
	size_t body_len;
};

/* Split one frame (u32 length of type + payload, u8 type, payload) off
 * p[0..len): bytes consumed (> 0) with type/payload/plen set, 0 when more
 * bytes are needed, -1 with err when the length is 0 or above max. */
long server_rpc_frame_next(const uint8_t *p, size_t len, size_t max, uint8_t *type,
                           const uint8_t **payload, size_t *plen, char *err, size_t errlen);

/* HELLO's payload: server_id != 0 exactly when addr is not empty, both
 * strings of 0..255 bytes without control bytes or spaces (node at least 1), nothing
 * after. 0 or -1 with err. */
int server_rpc_decode_hello(const uint8_t *p, size_t n, struct server_rpc_hello *h, char *err,
                            size_t errlen);
/* HELLO's payload into out (cap >= SERVER_RPC_HELLO_MAX): its length, or
 * 0 when a string is too long or would not decode. */
size_t server_rpc_encode_hello(uint8_t *out, size_t cap, const struct server_rpc_hello *h);

/* REQUEST or REPLY payload: u64 req_id, u8 code, the body (any length,
 * even 0). 0 or -1 with err (what names the frame in the message). */
int server_rpc_decode_msg(const uint8_t *p, size_t n, const char *what, struct server_rpc_msg *m,
                          char *err, size_t errlen);
/* PART's payload: u32 total (SERVER_RPC_PART_SIZE < total <=
 * SERVER_RPC_MESSAGE_MAX), then a piece of 1..total bytes. 0 or -1 with
 * err. Whether the piece fits what is left of its message is the
 * receiver's check. */
int server_rpc_decode_part(const uint8_t *p, size_t n, uint32_t *total, const uint8_t **piece,
                           size_t *piece_len, char *err, size_t errlen);

/* The SERVER_RPC_MSG_HEAD bytes that precede a REQUEST/REPLY body. */
void server_rpc_encode_msg_head(uint8_t out[SERVER_RPC_MSG_HEAD], uint64_t req_id, uint8_t code);

#endif
