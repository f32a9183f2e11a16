/*
 * gossip/bcast.c — see bcast.h. Items live in one array; a fill sorts
 * candidates by (transmits asc, id desc) with a small insertion pass, which
 * is cheap for the queue depths gossip sees (tens to a few thousand).
 */
#include "gossip/bcast.h"

#include <stdlib.h>
#include <string.h>

uint64_t bcast_name_hash(const char *name)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;
	}
	return h == 0 ? 1 : h;
}

void bcast_queue_create(struct bcast_queue *q, size_t max_depth)
{
	memset(q, 0, sizeof(*q));
	q->max_depth = max_depth;
	q->next_id = 1;
}

void bcast_queue_destroy(struct bcast_queue *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->items[i].msg);
	free(q->items);
	memset(q, 0, sizeof(*q));
}

static void bcast_remove_at(struct bcast_queue *q, size_t i)
{
	free(q->items[i].msg);
	q->items[i] = q->items[q->n - 1];
	q->n--;
}

void bcast_queue_clear(struct bcast_queue *q)
{
	while (q->n > 0)
		bcast_remove_at(q, q->n - 1);
}

/* The item to drop when full: most transmitted, then oldest. */
static size_t bcast_victim(const struct bcast_queue *q)
{
	size_t v = 0;
	for (size_t i = 1; i < q->n; i++) {
		const struct bcast_item *a = &q->items[i], *b = &q->items[v];
		if (a->transmits > b->transmits || (a->transmits == b->transmits && a->id < b->id))
			v = i;
	}
	return v;
}

uint64_t bcast_queue_push(struct bcast_queue *q, uint8_t kind, const char *name, const uint8_t *msg,
			  size_t len)
{
	uint64_t h = name != NULL ? bcast_name_hash(name) : 0;
	if (h != 0) {
		for (size_t i = 0; i < q->n; i++) {
			if (q->items[i].name_hash == h && q->items[i].kind == kind) {
				bcast_remove_at(q, i);
				break;
			}
		}
	}
	if (q->max_depth > 0 && q->n >= q->max_depth) {
		bcast_remove_at(q, bcast_victim(q));
		q->dropped++;
	}
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->items = realloc(q->items, q->cap * sizeof(*q->items));
		if (q->items == NULL)
			abort();
	}
	struct bcast_item *it = &q->items[q->n++];
	it->msg = malloc(len ? len : 1);
	if (it->msg == NULL)
		abort();
	memcpy(it->msg, msg, len);
	it->len = len;
	it->name_hash = h;
	it->kind = kind;
	it->transmits = 0;
	it->id = q->next_id++;
	return it->id;
}

static bool bcast_before(const struct bcast_item *a, const struct bcast_item *b)
{
	if (a->transmits != b->transmits)
		return a->transmits < b->transmits;
	return a->id > b->id;
}

size_t bcast_queue_fill(struct bcast_queue *q, int limit, size_t overhead, size_t budget,
			const uint8_t **out, size_t *out_len, size_t max)
{
	if (q->n == 0 || max == 0)
		return 0;
	/* Order indexes by priority; a partial selection sort stops as soon
	 * as the budget or max is exhausted. */
	size_t n = q->n;
	size_t *order = malloc(n * sizeof(*order));
	if (order == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	size_t picked = 0, used = 0;
	size_t chosen[256];
	size_t nchosen = 0;
	for (size_t pos = 0; pos < n && picked < max && nchosen < 256; pos++) {
		size_t best = pos;
		for (size_t j = pos + 1; j < n; j++)
			if (bcast_before(&q->items[order[j]], &q->items[order[best]]))
				best = j;
		size_t t = order[pos];
		order[pos] = order[best];
		order[best] = t;
		struct bcast_item *it = &q->items[order[pos]];
		if (used + it->len + overhead > budget) {
			if (budget - used <= overhead)
				break;
			continue;
		}
		used += it->len + overhead;
		chosen[nchosen++] = order[pos];
		picked++;
	}
	free(order);
	for (size_t i = 0; i < nchosen; i++) {
		struct bcast_item *it = &q->items[chosen[i]];
		out[i] = it->msg;
		out_len[i] = it->len;
		it->transmits++;
	}
	return nchosen;
}

void bcast_queue_retire(struct bcast_queue *q, int limit)
{
	for (size_t i = 0; i < q->n;) {
		if (q->items[i].transmits >= limit)
			bcast_remove_at(q, i);
		else
			i++;
	}
}

bool bcast_queue_contains(const struct bcast_queue *q, uint64_t id)
{
	for (size_t i = 0; i < q->n; i++)
		if (q->items[i].id == id)
			return true;
	return false;
}
