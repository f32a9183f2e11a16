/*
 * lib/jsonw.h — a JSON text writer into one growing buffer, for the answers
 * large enough that building a jansson tree first costs more than the answer
 * is worth: /v1/agent/members at 1,000 members was 7 ms of CPU, most of it
 * malloc and free of ~20,000 tree nodes; written directly it is one buffer.
 *
 * It owns only the bytes: the caller writes the structure (brackets, commas)
 * with jsonw_raw and the values with jsonw_str / jsonw_int. Strings are
 * escaped as jansson escapes them (quote, backslash, control characters);
 * a byte that is not part of valid UTF-8 becomes U+FFFD, so the output is
 * always valid JSON whatever a member advertised. Allocation cannot fail
 * (lib/xalloc.h).
 */
#ifndef RUMOR_LIB_JSONW_H
#define RUMOR_LIB_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *buf; /* NUL-terminated after every call; owned, free() it */
	size_t len;
	size_t cap;
};

void jsonw_init(struct jsonw *w, size_t hint);
/* Appends n bytes as they are (structure: "[", ",", "{\"Key\":"). */
void jsonw_raw(struct jsonw *w, const char *s, size_t n);
/* Appends a C string as they are. */
void jsonw_lit(struct jsonw *w, const char *s);
/* Appends the n bytes of s as one quoted, escaped JSON string. */
void jsonw_str(struct jsonw *w, const char *s, size_t n);
/* Appends a decimal integer. */
void jsonw_int(struct jsonw *w, int64_t v);

#endif
