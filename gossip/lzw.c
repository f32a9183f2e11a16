/*
 * gossip/lzw.c — LZW exactly as Go's compress/lzw writes and reads it, with
 * LSB bit order and 8-bit literals (what memberlist's compressPayload uses).
 *
 * Code space: 0..255 literals, 256 clear, 257 end of stream, 258.. table
 * entries; codes start 9 bits wide and grow to at most 12. Go's particular
 * rules, which the output must follow bit for bit:
 *  - the writer always starts with a clear code, even for empty input;
 *  - after emitting a code it bumps `hi`; when hi reaches 1<<width the width
 *    grows, and when hi reaches 4095 it emits a clear code (at the current
 *    width) and starts over with an empty table;
 *  - Close emits the pending code, bumps hi once more (which may widen or
 *    clear), then the EOF code, then any partial byte.
 *  - the reader requires the EOF code (a stream that just stops is an error,
 *    io.ErrUnexpectedEOF in Go) and ignores bytes after it; at the 12-bit
 *    limit it stops adding entries until the next clear.
 * Greedy LZW output does not depend on how the dictionary is stored, so the
 * encoder uses its own open-addressing table (one per thread, kept empty
 * between calls by clearing only the slots a call filled). The decoder works
 * in fixed arrays on the stack. Nothing is allocated.
 */
#include <string.h>

#include "gossip/wire.h"

#define LIT_WIDTH 8
#define CLEAR_CODE (1u << LIT_WIDTH)
#define EOF_CODE (CLEAR_CODE + 1)
#define MAX_WIDTH 12
#define MAX_CODE ((1u << MAX_WIDTH) - 1)
#define TABLE_SIZE (4u << MAX_WIDTH)
#define TABLE_MASK (TABLE_SIZE - 1)

struct lzw_out {
	uint8_t *p;
	size_t cap;
	size_t len;
	uint32_t bits;
	unsigned nbits;
	unsigned width;
	bool overflow;
};

static void lzw_put(struct lzw_out *o, uint32_t code)
{
	o->bits |= code << o->nbits;
	o->nbits += o->width;
	while (o->nbits >= 8) {
		if (o->len < o->cap)
			o->p[o->len++] = (uint8_t)o->bits;
		else
			o->overflow = true;
		o->bits >>= 8;
		o->nbits -= 8;
	}
}

struct lzw_enc {
	struct lzw_out out;
	uint32_t hi;
	uint32_t next_widen;
	/* entry = (prefix code << 8 | byte) << 12 | code; 0 = empty. All
	 * empty between calls: the slots filled are listed in slots[] and only
	 * those are cleared (a 200-byte packet fills ~150 of 16384) */
	uint32_t table[TABLE_SIZE];
	uint16_t slots[1u << MAX_WIDTH];
	uint32_t nslots;
};

static void lzw_enc_clear(struct lzw_enc *e)
{
	for (uint32_t i = 0; i < e->nslots; i++)
		e->table[e->slots[i]] = 0;
	e->nslots = 0;
}

/* Go's incHi: returns true when the table ran out and was reset. */
static bool lzw_enc_bump(struct lzw_enc *e)
{
	e->hi++;
	if (e->hi == e->next_widen) {
		e->out.width++;
		e->next_widen <<= 1;
	}
	if (e->hi == MAX_CODE) {
		lzw_put(&e->out, CLEAR_CODE);
		e->out.width = LIT_WIDTH + 1;
		e->hi = EOF_CODE;
		e->next_widen = CLEAR_CODE << 1;
		lzw_enc_clear(e);
		return true;
	}
	return false;
}

int ml_lzw_compress(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	static _Thread_local struct lzw_enc e;

	memset(&e.out, 0, sizeof(e.out));
	e.out.p = out;
	e.out.cap = cap;
	e.out.width = LIT_WIDTH + 1;
	e.hi = EOF_CODE;
	e.next_widen = CLEAR_CODE << 1;

	lzw_put(&e.out, CLEAR_CODE);
	if (len > 0) {
		uint32_t code = in[0];
		for (size_t i = 1; i < len; i++) {
			uint32_t key = code << 8 | in[i];
			uint32_t h = (key >> 12 ^ key) & TABLE_MASK;
			bool hit = false;
			for (uint32_t t = e.table[h]; t != 0; t = e.table[h]) {
				if (t >> 12 == key) {
					code = t & MAX_CODE;
					hit = true;
					break;
				}
				h = (h + 1) & TABLE_MASK;
			}
			if (hit)
				continue;
			lzw_put(&e.out, code);
			code = in[i];
			if (lzw_enc_bump(&e))
				continue;
			/* h is the first empty slot of key's probe chain */
			e.table[h] = key << 12 | e.hi;
			e.slots[e.nslots++] = (uint16_t)h;
		}
		lzw_put(&e.out, code);
		lzw_enc_bump(&e);
	}
	lzw_enc_clear(&e);
	lzw_put(&e.out, EOF_CODE);
	if (e.out.nbits > 0) {
		if (e.out.len < e.out.cap)
			e.out.p[e.out.len++] = (uint8_t)e.out.bits;
		else
			e.out.overflow = true;
	}
	if (e.out.overflow || e.out.len > (size_t)INT32_MAX)
		return -1;
	return (int)e.out.len;
}

/*
 * Every table entry is the previous code's string plus the first byte of the
 * next one, and those bytes sit next to each other in the output already
 * written. So an entry is stored as a run of the output (start, length) and
 * expanding a code is one memcpy from earlier output, instead of walking the
 * entry's prefix chain byte by byte.
 */
int ml_lzw_decompress(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t start[1u << MAX_WIDTH];
	uint16_t span[1u << MAX_WIDTH]; /* 0: no entry */
	const uint32_t invalid = 0xffffffffu;
	uint32_t bits = 0, nbits = 0, width = LIT_WIDTH + 1;
	uint32_t hi = EOF_CODE, next_widen = 1u << width, last = invalid;
	size_t ip = 0, o = 0, last_pos = 0, last_len = 0;

	if (cap > (size_t)INT32_MAX)
		cap = (size_t)INT32_MAX;
	memset(span, 0, sizeof(span));
	for (;;) {
		while (nbits < width) {
			if (ip >= len)
				return -1; /* no EOF code: truncated */
			bits |= (uint32_t)in[ip++] << nbits;
			nbits += 8;
		}
		uint32_t code = bits & ((1u << width) - 1);
		bits >>= width;
		nbits -= width;

		size_t pos = o, n;
		if (code < CLEAR_CODE) {
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)code;
			n = 1;
		} else if (code == CLEAR_CODE) {
			width = LIT_WIDTH + 1;
			hi = EOF_CODE;
			next_widen = 1u << width;
			last = invalid;
			continue;
		} else if (code == EOF_CODE) {
			break;
		} else if (code == hi && last != invalid) {
			/* KwKwK: the last string plus its own first byte; the last
			 * string ends where this one starts, so no overlap */
			n = last_len + 1;
			if (n > cap - o)
				return -1;
			memcpy(out + o, out + last_pos, last_len);
			out[o + last_len] = out[last_pos];
			o += n;
		} else if (code <= hi && span[code] != 0) {
			/* an entry's run ends one byte into the string whose
			 * decoding created it, so it lies wholly before o */
			n = span[code];
			if (n > cap - o)
				return -1;
			memcpy(out + o, out + start[code], n);
			o += n;
		} else {
			return -1; /* invalid code */
		}
		if (last != invalid) {
			start[hi] = (uint32_t)last_pos;
			span[hi] = (uint16_t)(last_len + 1);
		}
		last = code;
		last_pos = pos;
		last_len = n;
		hi++;
		if (hi >= next_widen) {
			if (width == MAX_WIDTH) {
				last = invalid;
				hi--;
			} else {
				width++;
				next_widen = 1u << width;
			}
		}
	}
	return (int)o;
}
