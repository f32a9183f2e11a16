/*
 * lib/cursor.h — big-endian integers and bounds-checked byte cursors (NSD's
 * buffer.h discipline: nothing is read before the bytes are known to be
 * there, nothing is written past the capacity).
 *
 * Owns: the one set of big-endian load/store helpers (be16_get ...
 * be64_put) and two cursors:
 *  - struct cursor, for reading: p <= end always; a read either takes all
 *    it asked for and advances p, or returns false and leaves p untouched
 *    (so a stream reader can retry from the same place with more bytes);
 *  - struct wcursor, for writing: len <= cap always; the first write that
 *    does not fit sets the sticky `over` error, later writes do nothing and
 *    wcursor_done() reports -1. A fixed cursor ({buf, 0, cap}) never
 *    allocates (packets are built in place); a growable one ({.grow = true},
 *    for push-pull state that has no bound known in advance) reallocates
 *    with xrealloc and is freed by its owner (free(w.p)).
 *
 * Error convention: cursor reads return true, or false when fewer bytes
 * are left than asked for; the write cursor keeps a sticky overflow flag.
 * Decoders built on top (lib/mp.h, gossip/wire.h) turn these into their
 * MP_OK / MP_BAD / MP_AGAIN codes.
 */
#ifndef RUMOR_LIB_CURSOR_H
#define RUMOR_LIB_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- big-endian integers on raw bytes (the caller checked the length) -- */

static inline uint16_t be16_get(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be64_get(const uint8_t *p)
{
	return (uint64_t)be32_get(p) << 32 | be32_get(p + 4);
}

static inline void be16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void be64_put(uint8_t *p, uint64_t v)
{
	be32_put(p, (uint32_t)(v >> 32));
	be32_put(p + 4, (uint32_t)v);
}

/* ---- reading ------------------------------------------------------------ */

struct cursor {
	const uint8_t *p;   /* next byte to read */
	const uint8_t *end; /* one past the last readable byte; p <= end */
};

/* Bytes left to read. */
static inline size_t cursor_avail(const struct cursor *c)
{
	return (size_t)(c->end - c->p);
}

/* At least n bytes are left (no overflow for any n). */
static inline bool cursor_has(const struct cursor *c, size_t n)
{
	return cursor_avail(c) >= n;
}

static inline bool cursor_u8(struct cursor *c, uint8_t *v)
{
	if (!cursor_has(c, 1))
		return false;
	*v = *c->p++;
	return true;
}

static inline bool cursor_be16(struct cursor *c, uint16_t *v)
{
	if (!cursor_has(c, 2))
		return false;
	*v = be16_get(c->p);
	c->p += 2;
	return true;
}

static inline bool cursor_be32(struct cursor *c, uint32_t *v)
{
	if (!cursor_has(c, 4))
		return false;
	*v = be32_get(c->p);
	c->p += 4;
	return true;
}

static inline bool cursor_be64(struct cursor *c, uint64_t *v)
{
	if (!cursor_has(c, 8))
		return false;
	*v = be64_get(c->p);
	c->p += 8;
	return true;
}

/* A view of the next n bytes (inside the input, not copied). */
static inline bool cursor_bytes(struct cursor *c, size_t n, const uint8_t **v)
{
	if (!cursor_has(c, n))
		return false;
	*v = c->p;
	c->p += n;
	return true;
}

/* ---- writing ------------------------------------------------------------ */

struct wcursor {
	uint8_t *p;
	size_t len; /* bytes written; len <= cap */
	size_t cap;
	bool over; /* a write did not fit: sticky */
	bool grow; /* reallocate instead of overflowing */
};

/* Make room for n more bytes in a growable cursor (lib/cursor.c). */
bool wcursor_grow(struct wcursor *w, size_t n);

/* Append n bytes; on overflow set w->over and write nothing. */
static inline void wcursor_put(struct wcursor *w, const void *p, size_t n)
{
	if (w->over)
		return;
	if (w->cap - w->len < n && !wcursor_grow(w, n))
		return;
	if (n > 0)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

static inline void wcursor_u8(struct wcursor *w, uint8_t v)
{
	if (!w->over && w->len < w->cap)
		w->p[w->len++] = v;
	else
		wcursor_put(w, &v, 1);
}

static inline void wcursor_be16(struct wcursor *w, uint16_t v)
{
	uint8_t b[2];
	be16_put(b, v);
	wcursor_put(w, b, 2);
}

static inline void wcursor_be32(struct wcursor *w, uint32_t v)
{
	uint8_t b[4];
	be32_put(b, v);
	wcursor_put(w, b, 4);
}

static inline void wcursor_be64(struct wcursor *w, uint64_t v)
{
	uint8_t b[8];
	be64_put(b, v);
	wcursor_put(w, b, 8);
}

/* The length written, or -1 after an overflow or beyond INT32_MAX. */
static inline int wcursor_done(const struct wcursor *w)
{
	return w->over || w->len > (size_t)INT32_MAX ? -1 : (int)w->len;
}

#endif
