/*
 * lib/mp.c — see mp.h. The out-of-line half of the MessagePack layer: the
 * error text, the copying readers, mp_skip, and the writers.
 *
 * The writers write byte for byte what msgpack-c's packer (v4raw, uint,
 * map, array, nil, bool) wrote for wire.c and tags.c before, and what
 * serf.c's hand-written packer wrote; tests/unit/test_mp.c checks them
 * against msgpack-c itself.
 */
#include "lib/mp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- errors -------------------------------------------------------------- */

static _Thread_local char mp_err[192];

const char *mp_error(void)
{
	return mp_err;
}

void mp_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(mp_err, sizeof(mp_err), fmt, ap);
	va_end(ap);
}

/* ---- reading ------------------------------------------------------------- */

int mp_read_map_or_nil(struct cursor *c, uint32_t *n)
{
	if (mp_read_nil(c) == MP_OK) {
		*n = 0;
		return MP_OK;
	}
	return mp_read_map(c, n);
}

int mp_read_array_or_nil(struct cursor *c, uint32_t *n)
{
	if (mp_read_nil(c) == MP_OK) {
		*n = 0;
		return MP_OK;
	}
	return mp_read_array(c, n);
}

int mp_read_str(struct cursor *c, char *out, size_t cap)
{
	struct cursor t = *c;
	const uint8_t *p;
	size_t n;
	int rc = mp_read_raw(&t, &p, &n);
	if (rc != MP_OK)
		return rc;
	if (n >= cap || memchr(p, '\0', n) != NULL)
		return MP_BAD;
	memcpy(out, p, n);
	out[n] = '\0';
	*c = t;
	return MP_OK;
}

int mp_read_key(struct cursor *c, char *buf, size_t cap)
{
	const uint8_t *p;
	size_t n;
	int rc = mp_read_raw(c, &p, &n);
	if (rc != MP_OK)
		return rc;
	if (n >= cap)
		n = 0;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return MP_OK;
}

bool mp_key_is(const char *name, const uint8_t *k, size_t klen)
{
	for (size_t j = 0; j < klen; j++)
		if (name[j] == '\0' || (uint8_t)name[j] != k[j])
			return false;
	return name[klen] == '\0';
}

/* The shape of a tag mp_skip does not handle inline: the width of its
 * length field (w) and what follows it (kind: 0 a fixed payload of *fixed
 * bytes, 1 bytes, 2 an array, 3 a map, 4 an ext with its type byte). */
static int tag_shape(uint8_t b, unsigned *w, uint64_t *fixed, int *kind)
{
	*w = 0;
	*fixed = 0;
	*kind = 0;
	switch (b) {
	case 0xc4:
	case 0xd9:
		*w = 1;
		*kind = 1;
		break;
	case 0xc5:
	case 0xda:
		*w = 2;
		*kind = 1;
		break;
	case 0xc6:
	case 0xdb:
		*w = 4;
		*kind = 1;
		break;
	case 0xc7:
		*w = 1;
		*kind = 4;
		break;
	case 0xc8:
		*w = 2;
		*kind = 4;
		break;
	case 0xc9:
		*w = 4;
		*kind = 4;
		break;
	case 0xca:
		*fixed = 4;
		break;
	case 0xcb:
		*fixed = 8;
		break;
	case 0xcc:
	case 0xd0:
		*fixed = 1;
		break;
	case 0xcd:
	case 0xd1:
		*fixed = 2;
		break;
	case 0xce:
	case 0xd2:
		*fixed = 4;
		break;
	case 0xcf:
	case 0xd3:
		*fixed = 8;
		break;
	case 0xd4:
		*fixed = 2;
		break;
	case 0xd5:
		*fixed = 3;
		break;
	case 0xd6:
		*fixed = 5;
		break;
	case 0xd7:
		*fixed = 9;
		break;
	case 0xd8:
		*fixed = 17;
		break;
	case 0xdc:
		*w = 2;
		*kind = 2;
		break;
	case 0xdd:
		*w = 4;
		*kind = 2;
		break;
	case 0xde:
		*w = 2;
		*kind = 3;
		break;
	case 0xdf:
		*w = 4;
		*kind = 3;
		break;
	default:
		return MP_BAD; /* not reached: every tag is covered */
	}
	return MP_OK;
}

/*
 * Skip one object. Iterative: a count of objects still to pass over
 * replaces the recursion a nested container would need, so a datagram of
 * 0x91 0x91 0x91 ... cannot run the stack out, and each byte is looked at
 * once. A container's count is trusted only as far as bytes arrive: every
 * element takes at least one byte, so a huge count ends in MP_AGAIN at the
 * end of the input, not in work proportional to the count.
 */
int mp_skip(struct cursor *c)
{
	struct cursor t = *c;
	uint64_t pending = 1;
	int rc;
	while (pending > 0) {
		pending--;
		if (!cursor_has(&t, 1))
			return MP_AGAIN;
		uint8_t b = t.p[0];
		uint64_t n = 0;
		if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3)) {
			/* 0xc1 (never used) too: wire.c's skip always passed it as
			 * one byte, and gossip's acceptance stays as it was */
			t.p++;
		} else if ((b & 0xf0) == 0x80) { /* fixmap */
			pending += 2u * (b & 0x0f);
			t.p++;
		} else if ((b & 0xf0) == 0x90) { /* fixarray */
			pending += b & 0x0f;
			t.p++;
		} else if ((b & 0xe0) == 0xa0) { /* fixraw */
			n = b & 0x1f;
			if (!cursor_has(&t, 1 + n))
				return MP_AGAIN;
			t.p += 1 + n;
		} else {
			unsigned w;     /* width of the length field */
			uint64_t fixed; /* payload without length field */
			int kind;       /* 0 fixed, 1 bytes, 2 array, 3 map, 4 ext */
			if ((rc = tag_shape(b, &w, &fixed, &kind)) != MP_OK)
				return rc;
			if (kind == 0) {
				if (!cursor_has(&t, 1 + fixed))
					return MP_AGAIN;
				t.p += 1 + fixed;
				continue;
			}
			if ((rc = mp__tagged(&t, w, &n)) != MP_OK)
				return rc;
			if (kind == 2) {
				pending += n;
			} else if (kind == 3) {
				pending += 2 * n;
			} else {
				if (kind == 4)
					n += 1; /* ext type byte */
				if (!cursor_has(&t, n))
					return MP_AGAIN;
				t.p += n;
			}
		}
	}
	*c = t;
	return MP_OK;
}

/* ---- writing ------------------------------------------------------------- */

/* tag byte then v in w big-endian bytes */
static void put_tagged(struct wcursor *w, uint8_t tag, uint64_t v, unsigned n)
{
	uint8_t b[9];
	b[0] = tag;
	for (unsigned i = 0; i < n; i++)
		b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	wcursor_put(w, b, 1 + (size_t)n);
}

void mp_write_nil(struct wcursor *w)
{
	wcursor_u8(w, 0xc0);
}

void mp_write_bool(struct wcursor *w, bool v)
{
	wcursor_u8(w, v ? 0xc3 : 0xc2);
}

void mp_write_uint(struct wcursor *w, uint64_t v)
{
	if (v <= 0x7f)
		wcursor_u8(w, (uint8_t)v);
	else if (v <= 0xff)
		put_tagged(w, 0xcc, v, 1);
	else if (v <= 0xffff)
		put_tagged(w, 0xcd, v, 2);
	else if (v <= 0xffffffffu)
		put_tagged(w, 0xce, v, 4);
	else
		put_tagged(w, 0xcf, v, 8);
}

void mp_write_int(struct wcursor *w, int64_t v)
{
	if (v >= 0 && v <= 0x7f)
		wcursor_u8(w, (uint8_t)v);
	else if (v >= -32 && v < 0)
		wcursor_u8(w, (uint8_t)(int8_t)v);
	else if (v >= INT8_MIN && v <= INT8_MAX)
		put_tagged(w, 0xd0, (uint64_t)v & 0xff, 1);
	else if (v >= INT16_MIN && v <= INT16_MAX)
		put_tagged(w, 0xd1, (uint64_t)v & 0xffff, 2);
	else if (v >= INT32_MIN && v <= INT32_MAX)
		put_tagged(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
	else
		put_tagged(w, 0xd3, (uint64_t)v, 8);
}

void mp_write_map(struct wcursor *w, uint32_t n)
{
	if (n <= 15)
		wcursor_u8(w, (uint8_t)(0x80 | n));
	else if (n <= 0xffff)
		put_tagged(w, 0xde, n, 2);
	else
		put_tagged(w, 0xdf, n, 4);
}

void mp_write_array(struct wcursor *w, uint32_t n)
{
	if (n <= 15)
		wcursor_u8(w, (uint8_t)(0x90 | n));
	else if (n <= 0xffff)
		put_tagged(w, 0xdc, n, 2);
	else
		put_tagged(w, 0xdd, n, 4);
}

void mp_write_raw_header(struct wcursor *w, size_t n)
{
	if (n > UINT32_MAX)
		w->over = true; /* no msgpack form holds it */
	else if (n <= 31)
		wcursor_u8(w, (uint8_t)(0xa0 | n));
	else if (n <= 0xffff)
		put_tagged(w, 0xda, n, 2);
	else
		put_tagged(w, 0xdb, n, 4);
}

void mp_write_raw(struct wcursor *w, const void *p, size_t n)
{
	mp_write_raw_header(w, n);
	wcursor_put(w, p, n);
}

void mp_write_str(struct wcursor *w, const char *s)
{
	mp_write_raw(w, s, strlen(s));
}

void mp_write_bytes(struct wcursor *w, const void *p, size_t n)
{
	if (n == 0)
		mp_write_nil(w);
	else
		mp_write_raw(w, p, n);
}
