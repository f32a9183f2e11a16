/*
 * gossip/bcast.c — see bcast.h. Each item is one allocation (header and
 * message). Two indexed binary heaps order the items for sending and for
 * dropping; named items are chained in a hash index for invalidation. A
 * fill pops candidates off the send heap in order, skips those that do not
 * fit, and puts every examined item back (the chosen ones with one more
 * transmit), so it costs O((chosen + skipped) log n) instead of a scan.
 */
#include "gossip/bcast.h"

#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

/* Items a fill examines and skips (too big for the space left) before it
 * calls the packet full. */
#define BCAST_FILL_SKIP_MAX 32

uint64_t bcast_key_hash(const void *key, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	const unsigned char *p = key;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h == 0 ? 1 : h;
}

uint64_t bcast_name_hash(const char *name)
{
	return bcast_key_hash(name, strlen(name));
}

void bcast_queue_create(struct bcast_queue *q, size_t max_depth)
{
	memset(q, 0, sizeof(*q));
	q->max_depth = max_depth;
	q->next_id = 1;
}

/* ------------------------------------------------------------ heaps */

/* heap 0: fewest transmits first, newest first among equals (send order).
 * heap 1: most transmits first, oldest first among equals (drop order). */
static bool before(int h, const struct bcast_item *a, const struct bcast_item *b)
{
	if (a->transmits != b->transmits)
		return h == 0 ? a->transmits < b->transmits : a->transmits > b->transmits;
	return h == 0 ? a->id > b->id : a->id < b->id;
}

static void heap_set(struct bcast_queue *q, int h, size_t i, struct bcast_item *it)
{
	q->heap[h][i] = it;
	it->pos[h] = (uint32_t)i;
}

static void sift_up(struct bcast_queue *q, int h, size_t i)
{
	struct bcast_item *it = q->heap[h][i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(h, it, q->heap[h][p]))
			break;
		heap_set(q, h, i, q->heap[h][p]);
		i = p;
	}
	heap_set(q, h, i, it);
}

static void sift_down(struct bcast_queue *q, int h, size_t i)
{
	struct bcast_item *it = q->heap[h][i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct bcast_item *best = it;
		if (l < q->n && before(h, q->heap[h][l], best)) {
			m = l;
			best = q->heap[h][l];
		}
		if (r < q->n && before(h, q->heap[h][r], best))
			m = r;
		if (m == i)
			break;
		heap_set(q, h, i, q->heap[h][m]);
		i = m;
	}
	heap_set(q, h, i, it);
}

static void heap_insert(struct bcast_queue *q, struct bcast_item *it)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		for (int h = 0; h < 2; h++) {
			q->heap[h] = xrealloc(q->heap[h], q->cap * sizeof(*q->heap[h]));
		}
	}
	size_t i = q->n++;
	for (int h = 0; h < 2; h++) {
		heap_set(q, h, i, it);
		sift_up(q, h, i);
	}
}

static void heap_delete(struct bcast_queue *q, struct bcast_item *it)
{
	q->n--;
	for (int h = 0; h < 2; h++) {
		size_t i = it->pos[h];
		if (i == q->n)
			continue;
		struct bcast_item *moved = q->heap[h][q->n];
		heap_set(q, h, i, moved);
		sift_up(q, h, i);
		sift_down(q, h, moved->pos[h]);
	}
}

/* ------------------------------------------------------- name index */

static size_t bucket_of(const struct bcast_queue *q, uint64_t h, uint8_t kind)
{
	uint64_t x = h ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull);
	x ^= x >> 29;
	return (size_t)x & (q->names_cap - 1);
}

static void names_grow(struct bcast_queue *q)
{
	size_t old = q->names_cap;
	struct bcast_item **ob = q->names;
	q->names_cap = old ? old * 2 : 64;
	q->names = xcalloc(q->names_cap, sizeof(*q->names));
	for (size_t i = 0; i < old; i++) {
		struct bcast_item *it = ob[i];
		while (it != NULL) {
			struct bcast_item *next = it->hnext;
			size_t b = bucket_of(q, it->name_hash, it->kind);
			it->hnext = q->names[b];
			q->names[b] = it;
			it = next;
		}
	}
	free(ob);
}

static void names_unlink(struct bcast_queue *q, struct bcast_item *it)
{
	if (it->name_hash == 0)
		return;
	struct bcast_item **pp = &q->names[bucket_of(q, it->name_hash, it->kind)];
	while (*pp != NULL && *pp != it)
		pp = &(*pp)->hnext;
	if (*pp == it)
		*pp = it->hnext;
}

static void item_remove(struct bcast_queue *q, struct bcast_item *it)
{
	names_unlink(q, it);
	heap_delete(q, it);
	free(it);
}

/* ------------------------------------------------------------ API */

void bcast_queue_clear(struct bcast_queue *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->heap[0][i]);
	free(q->heap[0]);
	free(q->heap[1]);
	free(q->names);
	q->heap[0] = q->heap[1] = NULL;
	q->names = NULL;
	q->n = q->cap = q->names_cap = 0;
}

void bcast_queue_destroy(struct bcast_queue *q)
{
	bcast_queue_clear(q);
	memset(q, 0, sizeof(*q));
}

uint64_t bcast_queue_push(struct bcast_queue *q, uint8_t kind, const char *name, const uint8_t *msg,
                          size_t len)
{
	return bcast_queue_push_hashed(q, kind, name != NULL ? bcast_name_hash(name) : 0, msg, len);
}

uint64_t bcast_queue_push_hashed(struct bcast_queue *q, uint8_t kind, uint64_t h,
                                 const uint8_t *msg, size_t len)
{
	if (h != 0 && q->names_cap > 0) {
		for (struct bcast_item *it = q->names[bucket_of(q, h, kind)]; it != NULL;
		     it = it->hnext) {
			if (it->name_hash == h && it->kind == kind) {
				item_remove(q, it);
				break;
			}
		}
	}
	if (q->max_depth > 0 && q->n >= q->max_depth) {
		item_remove(q, q->heap[1][0]);
		q->dropped++;
	}
	struct bcast_item *it = xmalloc(sizeof(*it) + (len ? len : 1));
	memcpy(it->msg, msg, len);
	it->len = (uint32_t)len;
	it->name_hash = h;
	it->kind = kind;
	it->transmits = 0;
	it->id = q->next_id++;
	it->hnext = NULL;
	heap_insert(q, it);
	if (h != 0) {
		if (q->n * 2 > q->names_cap)
			names_grow(q);
		size_t b = bucket_of(q, h, kind);
		it->hnext = q->names[b];
		q->names[b] = it;
	}
	return it->id;
}

/* Pop the send-heap top (the item stays allocated and indexed by name). */
static struct bcast_item *pop_send(struct bcast_queue *q)
{
	struct bcast_item *it = q->heap[0][0];
	heap_delete(q, it);
	return it;
}

size_t bcast_queue_fill(struct bcast_queue *q, int sends, size_t overhead, size_t budget,
                        const uint8_t **out, size_t *out_len, size_t max)
{
	if (q->n == 0 || max == 0)
		return 0;
	struct bcast_item *chosen[256], *skipped[256];
	size_t nchosen = 0, nskipped = 0, used = 0;
	struct bcast_item **spill = NULL; /* skipped items past 256 */
	size_t nspill = 0, spill_cap = 0;
	while (q->n > 0 && nchosen < max && nchosen < 256) {
		struct bcast_item *it = pop_send(q);
		if (used + it->len + overhead > budget) {
			if (nskipped < 256) {
				skipped[nskipped++] = it;
			} else {
				if (nspill == spill_cap) {
					spill_cap = spill_cap ? spill_cap * 2 : 256;
					spill = xrealloc(spill, spill_cap * sizeof(*spill));
				}
				spill[nspill++] = it;
			}
			/* Nearly full: stop looking. Without this bound a queue of
			 * thousands (a 500-node join) was popped whole for every
			 * packet once ~150 bytes were left (18% of all CPU). */
			if (budget - used <= overhead || nskipped + nspill >= BCAST_FILL_SKIP_MAX)
				break;
			continue;
		}
		used += it->len + overhead;
		chosen[nchosen++] = it;
	}
	for (size_t i = 0; i < nskipped; i++)
		heap_insert(q, skipped[i]);
	for (size_t i = 0; i < nspill; i++)
		heap_insert(q, spill[i]);
	free(spill);
	for (size_t i = 0; i < nchosen; i++) {
		struct bcast_item *it = chosen[i];
		it->transmits += sends > 0 ? sends : 1;
		heap_insert(q, it);
		out[i] = it->msg;
		out_len[i] = it->len;
	}
	return nchosen;
}

void bcast_queue_retire(struct bcast_queue *q, int limit)
{
	while (q->n > 0 && q->heap[1][0]->transmits >= limit)
		item_remove(q, q->heap[1][0]);
}

bool bcast_queue_credit(struct bcast_queue *q, uint8_t kind, uint64_t h, int n, int limit)
{
	if (h == 0 || q->names_cap == 0 || n <= 0)
		return false;
	for (struct bcast_item *it = q->names[bucket_of(q, h, kind)]; it != NULL; it = it->hnext) {
		if (it->name_hash != h || it->kind != kind)
			continue;
		it->transmits += n;
		if (it->transmits >= limit) {
			item_remove(q, it);
		} else {
			sift_down(q, 0, it->pos[0]); /* later in the send order */
			sift_up(q, 1, it->pos[1]);   /* sooner in the drop order */
		}
		return true;
	}
	return false;
}

bool bcast_queue_contains(const struct bcast_queue *q, uint64_t id)
{
	for (size_t i = 0; i < q->n; i++)
		if (q->heap[0][i]->id == id)
			return true;
	return false;
}
