/*
 * gossip/ident.c — interned member identities; see ident.h.
 *
 * An open-addressed table (linear probing, load at most 1/2, deletion by
 * backward shift so no tombstones accumulate) of pointers to identities.
 * Each identity is one allocation: the struct, the name, then the meta.
 */
#include "gossip/ident.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cursor.h"
#include "lib/xalloc.h"

struct swim_idents {
	struct swim_ident **slot; /* cap entries, NULL = empty */
	size_t cap, used;
};

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint32_t content_hash(const char *name, size_t nl, const struct ml_addr *addr,
                             const uint8_t *vsn, const uint8_t *meta, size_t meta_len)
{
	uint64_t h = fnv(1469598103934665603ull, name, nl);
	h = fnv(h, addr->ip, addr->len <= sizeof(addr->ip) ? addr->len : sizeof(addr->ip));
	uint8_t tail[3] = {addr->len};
	be16_put(tail + 1, addr->port);
	h = fnv(h, tail, sizeof(tail));
	h = fnv(h, vsn, 6);
	h = fnv(h, meta, meta_len);
	return (uint32_t)(h ^ (h >> 32));
}

static bool same(const struct swim_ident *id, uint32_t hash, const char *name, size_t nl,
                 const struct ml_addr *addr, const uint8_t *vsn, const uint8_t *meta,
                 size_t meta_len)
{
	return id->hash == hash && id->meta_len == meta_len && ml_addr_equal(&id->addr, addr) &&
	       memcmp(id->vsn, vsn, 6) == 0 && strncmp(id->name, name, nl) == 0 &&
	       id->name[nl] == '\0' && (meta_len == 0 || memcmp(id->meta, meta, meta_len) == 0);
}

struct swim_idents *swim_idents_new(void)
{
	struct swim_idents *t = xcalloc(1, sizeof(*t));
	t->cap = 16;
	t->slot = xcalloc(t->cap, sizeof(*t->slot));
	return t;
}

void swim_idents_free(struct swim_idents *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->cap; i++)
		free(t->slot[i]);
	free(t->slot);
	free(t);
}

size_t swim_idents_count(const struct swim_idents *t)
{
	return t->used;
}

static void grow(struct swim_idents *t)
{
	struct swim_ident **old = t->slot;
	size_t oldcap = t->cap;
	t->cap *= 2;
	t->slot = xcalloc(t->cap, sizeof(*t->slot));
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i] == NULL)
			continue;
		size_t j = old[i]->hash & (t->cap - 1);
		while (t->slot[j] != NULL)
			j = (j + 1) & (t->cap - 1);
		t->slot[j] = old[i];
	}
	free(old);
}

const struct swim_ident *swim_ident_get(struct swim_idents *t, const char *name,
                                        const struct ml_addr *addr, const uint8_t *vsn,
                                        const uint8_t *meta, size_t meta_len)
{
	size_t nl = strlen(name);
	uint32_t h = content_hash(name, nl, addr, vsn, meta, meta_len);
	size_t mask = t->cap - 1;
	size_t i = h & mask;
	for (; t->slot[i] != NULL; i = (i + 1) & mask) {
		struct swim_ident *id = t->slot[i];
		if (same(id, h, name, nl, addr, vsn, meta, meta_len)) {
			id->refs++;
			return id;
		}
	}
	struct swim_ident *id = xcalloc(1, sizeof(*id) + nl + 1 + meta_len);
	id->refs = 1;
	id->hash = h;
	id->addr = *addr;
	memcpy(id->vsn, vsn, 6);
	memcpy(id->name, name, nl + 1);
	if (meta_len > 0) {
		uint8_t *m = (uint8_t *)id->name + nl + 1;
		memcpy(m, meta, meta_len);
		id->meta = m;
		id->meta_len = (uint16_t)meta_len;
	}
	t->slot[i] = id;
	t->used++;
	if (t->used * 2 > t->cap)
		grow(t);
	return id;
}

void swim_ident_put(struct swim_idents *t, const struct swim_ident *cid)
{
	if (cid == NULL)
		return;
	size_t mask = t->cap - 1;
	size_t i = cid->hash & mask;
	while (t->slot[i] != cid) {
		if (t->slot[i] == NULL)
			abort(); /* not ours: a bug in the caller */
		i = (i + 1) & mask;
	}
	struct swim_ident *id = t->slot[i];
	if (--id->refs > 0)
		return;
	free(id);
	t->used--;
	/* backward-shift deletion: move later entries of the run into the hole */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; t->slot[j] != NULL; j = (j + 1) & mask) {
		size_t home = t->slot[j]->hash & mask;
		/* j may move to hole when home is not cyclically in (hole, j] */
		bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
		if (!stays) {
			t->slot[hole] = t->slot[j];
			hole = j;
		}
	}
	t->slot[hole] = NULL;
}
