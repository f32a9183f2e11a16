/*
 * lib/cursor.c — see cursor.h. Only the slow path of the write cursor lives
 * here; everything else is inline in the header.
 */
#include "lib/cursor.h"

#include "lib/xalloc.h"

/*
 * Called when n bytes do not fit. A fixed cursor (a packet) overflows:
 * that is a handled case for its caller (the message is dropped or split),
 * never a reason to allocate. A growable one doubles from 256 bytes and
 * aborts on OOM like every xrealloc.
 */
bool wcursor_grow(struct wcursor *w, size_t n)
{
	if (!w->grow || n > SIZE_MAX / 2 - w->len) {
		w->over = true;
		return false;
	}
	size_t nc = w->cap ? w->cap : 256;
	while (nc - w->len < n)
		nc *= 2;
	w->p = xrealloc(w->p, nc);
	w->cap = nc;
	return true;
}
