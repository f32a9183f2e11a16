/*
 * gossip/wire.h — memberlist's wire format (protocol versions 2–5), no state.
 *
 * Owns: the message type numbers, the decoded views of every memberlist
 * message, their msgpack encoders and decoders (Go's codec layout: structs as
 * maps keyed by field name, keys sorted by name (go-msgpack sorts them; not
 * declaration order), `omitempty` fields left out, strings and []byte as old
 * msgpack raw: fixraw/raw16/raw32, never str8 or bin), the compound and
 * has-CRC framings, the compress wrapper (LZW as Go's
 * compress/lzw writes it, LSB order, 8-bit literals) and the push-pull stream
 * pieces.
 *
 * Decoded structs are plain values with fixed-size fields: decoding never
 * allocates, and a field longer than its limit is an error, not a truncation
 * (except ml_err_resp.error, a log text, which is cut at ML_ERRMSG_MAX).
 *
 * Error convention (every decoder in gossip/, and lib/mp.h's readers):
 * encoders return the number of bytes written, or -1 when the output does
 * not fit. Decoders take (const uint8_t **pos, const uint8_t *end), or
 * (p, len) for a whole message, advance *pos past what they consumed, and
 * return ML_OK, ML_BAD (the bytes are malformed; ml_wire_error() names the
 * field) or ML_AGAIN (the bytes end before the object does: read more from
 * the stream and retry from the same *pos, which is left untouched).
 * Decoders that return a count (ml_compound_decode, tags_decode) return it
 * or -1 (ML_BAD) with the same error text. ML_* are lib/mp.h's MP_* values,
 * and the text is lib/mp's one per-thread buffer (serf_wire_error() and
 * mp_error() return the same), so a decoder here may pass an mp_* result
 * straight up.
 */
#ifndef RUMOR_GOSSIP_WIRE_H
#define RUMOR_GOSSIP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/mp.h"

enum ml_type {
	ML_PING = 0,
	ML_INDIRECT_PING = 1,
	ML_ACK = 2,
	ML_SUSPECT = 3,
	ML_ALIVE = 4,
	ML_DEAD = 5,
	ML_PUSH_PULL = 6,
	ML_COMPOUND = 7,
	ML_USER = 8,
	ML_COMPRESS = 9,
	ML_ENCRYPT = 10,
	ML_NACK = 11,
	ML_HAS_CRC = 12,
	ML_ERR = 13,
	/* rumor's own, sent only to members whose tags say they are rumor
	 * agents (memberlist logs an unknown type and drops it) */
	ML_RUMOR_DIGEST = 64,
};

/* memberlist NodeStateType */
enum ml_state {
	ML_STATE_ALIVE = 0,
	ML_STATE_SUSPECT = 1,
	ML_STATE_DEAD = 2,
	ML_STATE_LEFT = 3,
};

/* decoder results: lib/mp.h's */
#define ML_OK MP_OK
#define ML_BAD MP_BAD
#define ML_AGAIN MP_AGAIN

#define ML_NAME_MAX 255     /* longest node name accepted */
#define ML_META_MAX 512     /* memberlist MetaMaxSize */
#define ML_PAYLOAD_MAX 1024 /* longest ack payload accepted */
#define ML_ERRMSG_MAX 256   /* longest err message kept */
#define ML_UDP_MAX 1400     /* memberlist UDPBufferSize: what we send */
#define ML_UDP_RECV_MAX 65536
#define ML_COMPOUND_MAX 255
#define ML_PUSH_STATE_MAX (20u * 1024 * 1024) /* maxPushStateBytes */

/* An IP address (4 or 16 bytes as Go's net.IP) and port. len == 0: absent. */
struct ml_addr {
	uint8_t ip[16];
	uint8_t len;
	uint16_t port;
};

struct ml_ping {
	uint32_t seq;
	char node[ML_NAME_MAX + 1];        /* "" = any */
	struct ml_addr source;             /* omitempty: source.len == 0 */
	char source_node[ML_NAME_MAX + 1]; /* omitempty */
};

struct ml_indirect_ping {
	uint32_t seq;
	struct ml_addr target; /* Target + Port */
	char node[ML_NAME_MAX + 1];
	bool nack;
	struct ml_addr source;
	char source_node[ML_NAME_MAX + 1];
};

struct ml_ack {
	uint32_t seq;
	uint16_t payload_len; /* 0 encodes as nil */
	uint8_t payload[ML_PAYLOAD_MAX];
};

struct ml_nack {
	uint32_t seq;
};

/* suspect and dead share a layout */
struct ml_suspect {
	uint32_t incarnation;
	char node[ML_NAME_MAX + 1];
	char from[ML_NAME_MAX + 1];
};

struct ml_alive {
	uint32_t incarnation;
	char node[ML_NAME_MAX + 1];
	struct ml_addr addr; /* Addr + Port */
	uint16_t meta_len;   /* 0 encodes as nil */
	uint8_t meta[ML_META_MAX];
	uint8_t vsn[6]; /* pmin pmax pcur dmin dmax dcur */
	bool has_vsn;   /* false: Vsn was nil/absent (encodes nil) */
};

struct ml_err_resp {
	char error[ML_ERRMSG_MAX + 1];
};

/*
 * ML_RUMOR_DIGEST: a digest of the sender's member table (gossip/swim.c,
 * "Table repair"), carried beside a ping to a rumor agent. Members: how
 * many members it counts; Digest: 8 bytes, big-endian, their sum of hashes.
 */
struct ml_digest {
	uint16_t digest_len; /* 8 in a valid message */
	uint8_t digest[8];
	uint32_t members;
	char node[ML_NAME_MAX + 1]; /* the sender */
};

struct ml_push_pull_header {
	uint32_t nodes;
	uint32_t user_state_len;
	bool join;
};

struct ml_push_node {
	char name[ML_NAME_MAX + 1];
	struct ml_addr addr;
	uint16_t meta_len;
	uint8_t meta[ML_META_MAX];
	uint32_t incarnation;
	uint8_t state; /* enum ml_state */
	uint8_t vsn[6];
	bool has_vsn;
};

struct ml_user_msg_header {
	uint32_t len;
};

/* A view of a part of a buffer (compound parts). */
struct ml_slice {
	const uint8_t *p;
	size_t len;
};

/* Text of the last decode error on this thread ("alive: Node: too long"). */
const char *ml_wire_error(void);

/*
 * Encoders: write the type byte then the msgpack body into buf[0..cap).
 * Return bytes written, or -1 when it does not fit.
 */
int ml_encode_ping(uint8_t *buf, size_t cap, const struct ml_ping *m);
int ml_encode_indirect_ping(uint8_t *buf, size_t cap, const struct ml_indirect_ping *m);
int ml_encode_ack(uint8_t *buf, size_t cap, const struct ml_ack *m);
int ml_encode_nack(uint8_t *buf, size_t cap, const struct ml_nack *m);
int ml_encode_suspect(uint8_t *buf, size_t cap, const struct ml_suspect *m);
int ml_encode_dead(uint8_t *buf, size_t cap, const struct ml_suspect *m);
int ml_encode_alive(uint8_t *buf, size_t cap, const struct ml_alive *m);
int ml_encode_err(uint8_t *buf, size_t cap, const struct ml_err_resp *m);
int ml_encode_digest(uint8_t *buf, size_t cap, const struct ml_digest *m);
/* ML_USER type byte followed by the raw bytes (packet form). */
int ml_encode_user(uint8_t *buf, size_t cap, const uint8_t *data, size_t len);

/*
 * Decoders for the msgpack body that follows the type byte. Unknown map keys
 * are skipped (newer memberlist adds fields); missing keys keep zero values.
 */
int ml_decode_ping(const uint8_t **pos, const uint8_t *end, struct ml_ping *m);
int ml_decode_indirect_ping(const uint8_t **pos, const uint8_t *end, struct ml_indirect_ping *m);
int ml_decode_ack(const uint8_t **pos, const uint8_t *end, struct ml_ack *m);
int ml_decode_nack(const uint8_t **pos, const uint8_t *end, struct ml_nack *m);
int ml_decode_suspect(const uint8_t **pos, const uint8_t *end, struct ml_suspect *m);
int ml_decode_dead(const uint8_t **pos, const uint8_t *end, struct ml_suspect *m);
int ml_decode_alive(const uint8_t **pos, const uint8_t *end, struct ml_alive *m);
int ml_decode_err(const uint8_t **pos, const uint8_t *end, struct ml_err_resp *m);
/* A Digest of other than 8 bytes is an error. */
int ml_decode_digest(const uint8_t **pos, const uint8_t *end, struct ml_digest *m);

/*
 * Compound: [ML_COMPOUND][count u8][count x u16 BE lengths][parts...].
 * ml_compound_encode writes it from n parts (n <= 255); returns bytes or -1.
 * ml_compound_decode parses the body after the type byte into parts[] (at
 * most max); *trunc is set to the number of parts cut off by a short buffer,
 * as memberlist does. Returns the number of parts or -1.
 */
int ml_compound_encode(uint8_t *buf, size_t cap, const struct ml_slice *parts, int n);
int ml_compound_decode(const uint8_t *p, size_t len, struct ml_slice *parts, int max, int *trunc);

/* IEEE CRC-32 (Go's crc32.ChecksumIEEE). */
uint32_t ml_crc32(const uint8_t *p, size_t len);
/* Prefix [ML_HAS_CRC][crc32 BE of msg] to msg; returns bytes or -1. */
int ml_crc_wrap(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len);
/*
 * Check a whole [ML_HAS_CRC][crc32 BE][msg] packet (p[0] is the type byte):
 * ML_OK with *msg pointing at the inner message inside p, or ML_BAD when it
 * is shorter than 5 bytes or the checksum does not match.
 */
int ml_crc_check(const uint8_t *p, size_t len, struct ml_slice *msg);

/*
 * Compress wrapper: [ML_COMPRESS] then msgpack {Algo: 0, Buf: <lzw bytes>}.
 * ml_compress_encode LZW-compresses msg into buf; returns bytes or -1.
 * ml_compress_decode takes the body after the type byte and writes the
 * decompressed message (which starts with its own type byte) into out;
 * returns its length or -1.
 */
int ml_compress_encode(uint8_t *buf, size_t cap, const uint8_t *msg, size_t len);
int ml_compress_decode(const uint8_t *p, size_t len, uint8_t *out, size_t cap);
/*
 * Stream form of ml_compress_decode (a TCP push-pull stream is one compress
 * message): decodes the {Algo, Buf} map at *pos, decompresses into out and
 * sets *out_len. ML_OK (advancing *pos), ML_BAD, or ML_AGAIN when the map is
 * not complete yet.
 */
int ml_compress_decode_stream(const uint8_t **pos, const uint8_t *end, uint8_t *out, size_t cap,
                              size_t *out_len);
/*
 * The {Algo, Buf} map at *pos without decompressing: *lzw views the LZW
 * bytes inside the input. ML_OK (advancing *pos), ML_BAD, or ML_AGAIN when
 * the map is not complete yet. Costs O(1) whatever Buf's length, so a
 * stream reader can ask on every chunk and allocate only once it is whole.
 */
int ml_compress_frame(const uint8_t **pos, const uint8_t *end, struct ml_slice *lzw);

/* Raw LZW (Go compress/lzw, LSB, litWidth 8). Return bytes or -1. */
int ml_lzw_compress(const uint8_t *in, size_t len, uint8_t *out, size_t cap);
int ml_lzw_decompress(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/*
 * Push-pull stream: [ML_PUSH_PULL] header node*N user_state_bytes.
 * Encoders write msgpack objects without the type byte; the caller writes the
 * type byte once and then the header, the nodes and the user state.
 */
int ml_encode_push_pull_header(uint8_t *buf, size_t cap, const struct ml_push_pull_header *h);
int ml_encode_push_node(uint8_t *buf, size_t cap, const struct ml_push_node *n);
int ml_decode_push_pull_header(const uint8_t **pos, const uint8_t *end,
                               struct ml_push_pull_header *h);
int ml_decode_push_node(const uint8_t **pos, const uint8_t *end, struct ml_push_node *n);
int ml_encode_user_msg_header(uint8_t *buf, size_t cap, const struct ml_user_msg_header *h);
int ml_decode_user_msg_header(const uint8_t **pos, const uint8_t *end,
                              struct ml_user_msg_header *h);

/* "1.2.3.4:5" or "[::1]:5" into buf; returns buf. */
const char *ml_addr_str(const struct ml_addr *a, char *buf, size_t cap);
/* Parse "host:port" / "[v6]:port" / "host" (port = default_port). 0 or -1. */
int ml_addr_parse(const char *s, uint16_t default_port, struct ml_addr *out);
bool ml_addr_equal(const struct ml_addr *a, const struct ml_addr *b);

#endif
