/*
 * lib/mp.h — the one MessagePack layer: reads through a struct cursor,
 * writes through a struct wcursor (lib/cursor.h). Used by memberlist's
 * wire format (gossip/wire.c), serf's messages (gossip/serf.c) and serf's
 * tags (gossip/tags.c).
 *
 * Dialect: what HashiCorp's go-msgpack (MsgpackHandle, as memberlist and
 * serf configure it) writes and reads.
 *  - Writing: strings and []byte as the *old* spec's raw (fixraw 0xa0|n,
 *    raw16 0xda, raw32 0xdb; never str8 or bin), an empty []byte as nil,
 *    integers in their smallest form, signed ones as Go writes them
 *    (mp_write_int). The bytes are those msgpack-c's v4raw packer wrote.
 *  - Reading is liberal where Go is: raw/str8/bin all read as bytes, nil
 *    reads as empty bytes, every integer width is taken (signed ones when
 *    they are >= 0), and mp_skip passes over any well-formed object
 *    (floats, ext, nested containers) without recursion.
 * Readers never allocate: strings and bytes come back as views into the
 * input (mp_read_raw) or are copied into the caller's array (mp_read_str).
 * Why not msgpack-c's unpacker: it allocates a zone per object and sizes
 * arrays from an attacker's header before the elements arrive.
 *
 * Error convention (every decoder in lib/ and gossip/): return MP_OK (0)
 * and advance the cursor; MP_BAD (-1): the bytes are not that type or are
 * malformed, the cursor is left where it was; MP_AGAIN (-2): the input ends
 * before the object does (a stream should read more and retry from the
 * same position, which is untouched). Message-level decoders record a text
 * naming the field with mp_fail(); mp_error() returns it (one buffer per
 * thread). gossip/wire.h's ML_OK/ML_BAD/ML_AGAIN are these same values.
 *
 * The writers never fail one by one: an overflow is sticky in the wcursor
 * and wcursor_done() returns -1.
 *
 * The small readers are inline: they are the gossip hot path (every packet
 * of every simulated node goes through them).
 */
#ifndef RUMOR_LIB_MP_H
#define RUMOR_LIB_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/cursor.h"

enum { MP_OK = 0, MP_BAD = -1, MP_AGAIN = -2 };

/* Text of the last decode error on this thread ("alive: Node: too long"). */
const char *mp_error(void);
/* Record a decode error for mp_error(). */
void mp_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- reading ------------------------------------------------------------ */

/* nil. */
static inline int mp_read_nil(struct cursor *c);
/* true/false; nil reads as false (Go's zero value). */
static inline int mp_read_bool(struct cursor *c, bool *v);
/* Any integer >= 0 (positive fixint, uint8..64, int8..64 holding >= 0). */
static inline int mp_read_uint(struct cursor *c, uint64_t *v);
/* A map header: *n pairs follow. */
static inline int mp_read_map(struct cursor *c, uint32_t *n);
/* An array header: *n elements follow. */
static inline int mp_read_array(struct cursor *c, uint32_t *n);
/* mp_read_map / mp_read_array, nil reading as empty (Go: a nil map/slice). */
int mp_read_map_or_nil(struct cursor *c, uint32_t *n);
int mp_read_array_or_nil(struct cursor *c, uint32_t *n);
/* raw/str/bin: *p views the bytes inside the input; nil is empty, with *p
 * pointing past it (never NULL, so memcpy(dst, *p, 0) is fine). */
static inline int mp_read_raw(struct cursor *c, const uint8_t **p, size_t *len);
/* A raw/str/bin (or nil: "") copied into out[cap] with a NUL; MP_BAD when
 * it holds a NUL byte or does not fit (out's contents are then undefined). */
int mp_read_str(struct cursor *c, char *out, size_t cap);
/* A map key copied into buf[cap] for comparison; a key that does not fit
 * reads as "" (an unknown key), so the caller skips its value. */
int mp_read_key(struct cursor *c, char *buf, size_t cap);
/* Skip one whole object of any type, iteratively. */
int mp_skip(struct cursor *c);
/* The NUL-terminated name equals the counted key k[0..klen) (any bytes). */
bool mp_key_is(const char *name, const uint8_t *k, size_t klen);

/* ---- writing ------------------------------------------------------------ */

void mp_write_nil(struct wcursor *w);
void mp_write_bool(struct wcursor *w, bool v);
/* Smallest unsigned form: fixint, 0xcc, 0xcd, 0xce, 0xcf. */
void mp_write_uint(struct wcursor *w, uint64_t v);
/* Go's codec for a signed int: fixint or negative fixint, else the
 * smallest of 0xd0..0xd3 that holds it. */
void mp_write_int(struct wcursor *w, int64_t v);
void mp_write_map(struct wcursor *w, uint32_t n);
void mp_write_array(struct wcursor *w, uint32_t n);
/* Old-spec raw: fixraw, raw16, raw32 header then the bytes. */
void mp_write_raw(struct wcursor *w, const void *p, size_t n);
/* The header alone, for n bytes the caller puts after it (or already has
 * in place, as the compress wrapper does with its LZW output). */
void mp_write_raw_header(struct wcursor *w, size_t n);
/* A C string as raw. */
void mp_write_str(struct wcursor *w, const char *s);
/* A []byte: nil when empty (Go writes a nil slice so), else raw. */
void mp_write_bytes(struct wcursor *w, const void *p, size_t n);

/* ---- inline readers ------------------------------------------------------ */

/* The big-endian value of the w bytes after the tag byte at c->p. */
static inline int mp__tagged(struct cursor *c, unsigned w, uint64_t *v)
{
	if (!cursor_has(c, 1 + (size_t)w))
		return MP_AGAIN;
	uint64_t x = 0;
	for (unsigned i = 1; i <= w; i++)
		x = x << 8 | c->p[i];
	*v = x;
	c->p += 1 + w;
	return MP_OK;
}

static inline int mp_read_nil(struct cursor *c)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	if (c->p[0] != 0xc0)
		return MP_BAD;
	c->p++;
	return MP_OK;
}

static inline int mp_read_bool(struct cursor *c, bool *v)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	uint8_t b = c->p[0];
	if (b != 0xc2 && b != 0xc3 && b != 0xc0)
		return MP_BAD;
	*v = b == 0xc3;
	c->p++;
	return MP_OK;
}

static inline int mp_read_uint(struct cursor *c, uint64_t *v)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	uint8_t b = c->p[0];
	if (b <= 0x7f) {
		*v = b;
		c->p++;
		return MP_OK;
	}
	unsigned w;
	bool sign = false;
	switch (b) {
	case 0xcc:
		w = 1;
		break;
	case 0xcd:
		w = 2;
		break;
	case 0xce:
		w = 4;
		break;
	case 0xcf:
		w = 8;
		break;
	case 0xd0:
		w = 1;
		sign = true;
		break;
	case 0xd1:
		w = 2;
		sign = true;
		break;
	case 0xd2:
		w = 4;
		sign = true;
		break;
	case 0xd3:
		w = 8;
		sign = true;
		break;
	default:
		return MP_BAD; /* not an integer, or a negative fixint */
	}
	struct cursor t = *c;
	uint64_t x;
	int rc = mp__tagged(&t, w, &x);
	if (rc != MP_OK)
		return rc;
	if (sign && (x >> (w * 8 - 1)) & 1)
		return MP_BAD; /* negative */
	*v = x;
	*c = t;
	return MP_OK;
}

/* fix: the fixmap/fixarray nibble tag; b16/b32: the 16/32-bit forms */
static inline int mp__container(struct cursor *c, uint32_t *n, uint8_t fix, uint8_t b16,
                                uint8_t b32)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	uint8_t b = c->p[0];
	if ((b & 0xf0) == fix) {
		*n = b & 0x0f;
		c->p++;
		return MP_OK;
	}
	uint64_t v;
	int rc;
	if (b == b16)
		rc = mp__tagged(c, 2, &v);
	else if (b == b32)
		rc = mp__tagged(c, 4, &v);
	else
		return MP_BAD;
	if (rc == MP_OK)
		*n = (uint32_t)v;
	return rc;
}

static inline int mp_read_map(struct cursor *c, uint32_t *n)
{
	return mp__container(c, n, 0x80, 0xde, 0xdf);
}

static inline int mp_read_array(struct cursor *c, uint32_t *n)
{
	return mp__container(c, n, 0x90, 0xdc, 0xdd);
}

static inline int mp_read_raw(struct cursor *c, const uint8_t **p, size_t *len)
{
	if (!cursor_has(c, 1))
		return MP_AGAIN;
	struct cursor t = *c;
	uint8_t b = t.p[0];
	uint64_t n;
	if ((b & 0xe0) == 0xa0) {
		n = b & 0x1f;
		t.p++;
	} else if (b == 0xc0) {
		c->p++;
		*p = c->p;
		*len = 0;
		return MP_OK;
	} else {
		unsigned w;
		switch (b) {
		case 0xd9: /* str8 */
		case 0xc4: /* bin8 */
			w = 1;
			break;
		case 0xda: /* raw16 / str16 */
		case 0xc5:
			w = 2;
			break;
		case 0xdb: /* raw32 / str32 */
		case 0xc6:
			w = 4;
			break;
		default:
			return MP_BAD;
		}
		int rc = mp__tagged(&t, w, &n);
		if (rc != MP_OK)
			return rc;
	}
	if (!cursor_has(&t, n))
		return MP_AGAIN;
	*p = t.p;
	*len = (size_t)n;
	c->p = t.p + n;
	return MP_OK;
}

#endif
