/*
 * lib/jsonw.c — see jsonw.h.
 */
#include "lib/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

static void reserve(struct jsonw *w, size_t more)
{
	if (w->len + more + 1 <= w->cap)
		return;
	size_t cap = w->cap ? w->cap : 64;
	while (cap < w->len + more + 1)
		cap *= 2;
	w->buf = xrealloc(w->buf, cap);
	w->cap = cap;
}

void jsonw_init(struct jsonw *w, size_t hint)
{
	w->buf = NULL;
	w->len = w->cap = 0;
	reserve(w, hint);
	w->buf[0] = '\0';
}

void jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
	reserve(w, n);
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

void jsonw_lit(struct jsonw *w, const char *s)
{
	jsonw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t k;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		k = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		k = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		k = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

void jsonw_str(struct jsonw *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	reserve(w, n + 2);
	w->buf[w->len++] = '"';
	size_t i = 0;
	while (i < n) {
		/* the run of bytes that need no escape goes in one copy */
		size_t run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
		       p[run] != '\\')
			run++;
		if (run > i) {
			jsonw_raw(w, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jsonw_raw(w, esc, 2);
			i++;
		} else if (c < 0x20) {
			static const char named[] = "btn\0fr"; /* \b \t \n - \f \r */
			if (c >= 8 && c <= 13 && named[c - 8] != '\0') {
				esc[0] = '\\';
				esc[1] = named[c - 8];
				jsonw_raw(w, esc, 2);
			} else {
				snprintf(esc, sizeof(esc), "\\u%04X", c);
				jsonw_raw(w, esc, 6);
			}
			i++;
		} else {
			size_t k = utf8_len(p + i, n - i);
			if (k == 0) {
				jsonw_raw(w, "\xef\xbf\xbd", 3); /* U+FFFD */
				i++;
			} else {
				jsonw_raw(w, s + i, k);
				i += k;
			}
		}
	}
	jsonw_raw(w, "\"", 1);
}

void jsonw_int(struct jsonw *w, int64_t v)
{
	char tmp[24];
	int k = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	jsonw_raw(w, tmp, (size_t)k);
}
