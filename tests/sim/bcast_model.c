/*
 * tests/sim/bcast_model.c — differential test of gossip/bcast.c against a
 * naive model of memberlist's transmit-limited queue (a flat array scanned
 * in full for every operation: the obviously-right version of the order
 * "fewest transmits first, newest first", invalidation by (name, kind),
 * drop most-sent-then-oldest when full, retire at the limit).
 *
 * Random operations from a fixed seed; every fill must choose the same
 * messages in the same order. Prints "N passed, 0 failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/bcast.h"

struct mitem {
	uint8_t msg[64];
	size_t len;
	char name[16];
	uint8_t kind;
	int transmits;
	uint64_t id;
};

struct model {
	struct mitem items[4096];
	size_t n, max_depth;
	uint64_t next_id;
};

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void m_remove(struct model *m, size_t i)
{
	m->items[i] = m->items[--m->n];
}

static void m_push(struct model *m, uint8_t kind, const char *name, const uint8_t *msg, size_t len)
{
	if (name != NULL) {
		for (size_t i = 0; i < m->n; i++) {
			if (m->items[i].kind == kind && strcmp(m->items[i].name, name) == 0) {
				m_remove(m, i);
				break;
			}
		}
	}
	if (m->n >= m->max_depth) {
		size_t v = 0;
		for (size_t i = 1; i < m->n; i++) {
			struct mitem *a = &m->items[i], *b = &m->items[v];
			if (a->transmits > b->transmits ||
			    (a->transmits == b->transmits && a->id < b->id))
				v = i;
		}
		m_remove(m, v);
	}
	struct mitem *it = &m->items[m->n++];
	memcpy(it->msg, msg, len);
	it->len = len;
	snprintf(it->name, sizeof(it->name), "%s", name ? name : "");
	it->kind = kind;
	it->transmits = 0;
	it->id = m->next_id++;
}

static bool m_before(const struct mitem *a, const struct mitem *b)
{
	return a->transmits != b->transmits ? a->transmits < b->transmits : a->id > b->id;
}

#define MODEL_SKIP_MAX 32

static size_t m_fill(struct model *m, size_t overhead, size_t budget, uint64_t *ids, size_t max)
{
	char taken[4096] = {0};
	size_t used = 0, got = 0, skipped = 0;
	for (size_t step = 0; step < m->n && got < max; step++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < m->n; i++)
			if (!taken[i] &&
			    (best == SIZE_MAX || m_before(&m->items[i], &m->items[best])))
				best = i;
		taken[best] = 1;
		struct mitem *it = &m->items[best];
		if (used + it->len + overhead > budget) {
			/* the queue gives up after MODEL_SKIP_MAX items that did
			 * not fit (gossip/bcast.c, BCAST_FILL_SKIP_MAX) */
			if (budget - used <= overhead || ++skipped >= MODEL_SKIP_MAX)
				break;
			continue;
		}
		used += it->len + overhead;
		ids[got++] = it->id;
	}
	for (size_t k = 0; k < got; k++)
		for (size_t i = 0; i < m->n; i++)
			if (m->items[i].id == ids[k])
				m->items[i].transmits++;
	return got;
}

static void m_retire(struct model *m, int limit)
{
	for (size_t i = 0; i < m->n;) {
		if (m->items[i].transmits >= limit)
			m_remove(m, i);
		else
			i++;
	}
}

int main(void)
{
	int passed = 0, failed = 0;
	static struct model m;
	for (int round = 0; round < 40; round++) {
		size_t depth = 8 + rnd() % 300;
		memset(&m, 0, sizeof(m));
		m.max_depth = depth;
		m.next_id = 1;
		struct bcast_queue q;
		bcast_queue_create(&q, depth);
		int limit = 1 + (int)(rnd() % 8);
		int ok = 1;
		for (int op = 0; op < 3000 && ok; op++) {
			unsigned r = (unsigned)(rnd() % 100);
			if (r < 55) {
				uint8_t msg[64];
				size_t len = 1 + rnd() % 60;
				/* first byte: a unique tag so outputs can be matched */
				uint64_t tag = m.next_id;
				memset(msg, (int)(tag & 0xff), len);
				if (len >= 8)
					memcpy(msg, &tag, 8);
				char name[16];
				snprintf(name, sizeof(name), "n%u", (unsigned)(rnd() % 200));
				uint8_t kind = (uint8_t)(1 + rnd() % 2);
				bool named = rnd() % 10 != 0;
				m_push(&m, kind, named ? name : NULL, msg, len);
				bcast_queue_push(&q, kind, named ? name : NULL, msg, len);
			} else if (r < 95) {
				size_t budget = 10 + rnd() % 600, max = 1 + rnd() % 40;
				uint64_t ids[256];
				const uint8_t *out[256];
				size_t lens[256];
				size_t a = m_fill(&m, 2, budget, ids, max);
				size_t b = bcast_queue_fill(&q, 1, 2, budget, out, lens, max);
				if (a != b) {
					fprintf(stderr,
					        "round %d op %d: fill chose %zu, model %zu\n",
					        round, op, b, a);
					ok = 0;
					break;
				}
				for (size_t k = 0; k < a; k++) {
					const struct mitem *mi = NULL;
					for (size_t i = 0; i < m.n; i++)
						if (m.items[i].id == ids[k])
							mi = &m.items[i];
					if (mi == NULL || mi->len != lens[k] ||
					    memcmp(mi->msg, out[k], lens[k]) != 0) {
						fprintf(stderr,
						        "round %d op %d: fill item %zu differs\n",
						        round, op, k);
						ok = 0;
						break;
					}
				}
				m_retire(&m, limit);
				bcast_queue_retire(&q, limit);
			} else {
				m_retire(&m, limit);
				bcast_queue_retire(&q, limit);
			}
			if (ok && q.n != m.n) {
				fprintf(stderr, "round %d op %d: %zu queued, model %zu\n", round,
				        op, q.n, m.n);
				ok = 0;
			}
		}
		bcast_queue_destroy(&q);
		if (ok)
			passed++;
		else
			failed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
