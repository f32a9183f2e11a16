/*
 * tests/fuzz/lzw_ref.h — a second LZW decoder, the plain textbook form
 * (walk each code's prefix chain backwards), kept as the model that
 * gossip/lzw.c's decoder is checked against: fuzz_wire and test_wire feed
 * both the same bytes and require the same result, errors included.
 * Same dialect as gossip/lzw.c: Go's compress/lzw, LSB order, 8-bit literals.
 */
#ifndef RUMOR_TESTS_LZW_REF_H
#define RUMOR_TESTS_LZW_REF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static int lzw_ref_decompress(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	enum { CLEAR = 256, EOFC = 257, MAXW = 12 };
	static uint16_t prefix[1u << MAXW];
	static uint8_t suffix[1u << MAXW];
	static uint8_t tmp[1u << MAXW];
	const uint32_t invalid = 0xffffffffu;
	uint32_t bits = 0, nbits = 0, width = 9;
	uint32_t hi = EOFC, next_widen = 1u << width, last = invalid;
	size_t ip = 0, o = 0;

	memset(prefix, 0, sizeof(prefix));
	memset(suffix, 0, sizeof(suffix));
	for (;;) {
		while (nbits < width) {
			if (ip >= len)
				return -1;
			bits |= (uint32_t)in[ip++] << nbits;
			nbits += 8;
		}
		uint32_t code = bits & ((1u << width) - 1);
		bits >>= width;
		nbits -= width;
		if (code < CLEAR) {
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)code;
			if (last != invalid) {
				suffix[hi] = (uint8_t)code;
				prefix[hi] = (uint16_t)last;
			}
		} else if (code == CLEAR) {
			width = 9;
			hi = EOFC;
			next_widen = 1u << width;
			last = invalid;
			continue;
		} else if (code == EOFC) {
			break;
		} else if (code <= hi) {
			/* expand backwards into tmp[i..end) */
			size_t i = sizeof(tmp);
			uint32_t c = code;
			if (code == hi && last != invalid) {
				/* KwKwK: last expansion plus its own first byte */
				c = last;
				while (c >= CLEAR)
					c = prefix[c];
				tmp[--i] = (uint8_t)c;
				c = last;
			}
			while (c >= CLEAR) {
				if (i == 0)
					return -1; /* cannot happen: chains shrink */
				tmp[--i] = suffix[c];
				c = prefix[c];
			}
			if (i == 0)
				return -1;
			tmp[--i] = (uint8_t)c;
			size_t n = sizeof(tmp) - i;
			if (n > cap - o)
				return -1;
			memcpy(out + o, tmp + i, n);
			o += n;
			if (last != invalid) {
				suffix[hi] = (uint8_t)c;
				prefix[hi] = (uint16_t)last;
			}
		} else {
			return -1; /* invalid code */
		}
		last = code;
		hi++;
		if (hi >= next_widen) {
			if (width == MAXW) {
				last = invalid;
				hi--;
			} else {
				width++;
				next_widen = 1u << width;
			}
		}
	}
	if (o > (size_t)INT32_MAX)
		return -1;
	return (int)o;
}

#endif
