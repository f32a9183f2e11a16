/*
 * gossip/ident.h — interned member identities, shared by membership views.
 *
 * Owns: the (name, address, protocol versions, meta) tuple every member
 * entry carries, interned by content and reference-counted. A membership
 * view (struct swim) keeps per-member only what is its own opinion (state,
 * incarnation, when the state changed) and a pointer to an identity here;
 * views that agree on a node share one identity. The agent runs one view,
 * so it gains nothing but pays little; the simulator runs thousands of views
 * of the same nodes from one table, so each node's name and meta are stored
 * once per process instead of once per view (10^8 entries at 10,000 nodes).
 *
 * An identity is immutable: a member whose address or meta changes gets the
 * identity of the new tuple (swim_ident_get) and releases the old one
 * (swim_ident_put). Not thread-safe: one table per thread of views.
 * Allocation failure aborts, as everywhere in the gossip core.
 */
#ifndef RUMOR_GOSSIP_IDENT_H
#define RUMOR_GOSSIP_IDENT_H

#include <stddef.h>
#include <stdint.h>

#include "gossip/wire.h"

struct swim_ident {
	uint32_t refs;
	uint32_t hash;
	struct ml_addr addr;
	uint16_t meta_len;
	uint8_t vsn[6];      /* pmin pmax pcur dmin dmax dcur */
	const uint8_t *meta; /* meta_len bytes in this allocation, or NULL */
	char name[];
};

struct swim_idents;

/* A new, empty table. Free with swim_idents_free once no view uses it. */
struct swim_idents *swim_idents_new(void);

/* Frees the table and every identity still in it. */
void swim_idents_free(struct swim_idents *t);

/* The identity with exactly this content, created if new; the caller holds
 * one more reference. name: NUL-terminated; vsn: 6 bytes. */
const struct swim_ident *swim_ident_get(struct swim_idents *t, const char *name,
                                        const struct ml_addr *addr, const uint8_t *vsn,
                                        const uint8_t *meta, size_t meta_len);

/* Drops one reference; the last one frees the identity. NULL is ignored. */
void swim_ident_put(struct swim_idents *t, const struct swim_ident *id);

/* Number of distinct identities held (for tests and memory accounting). */
size_t swim_idents_count(const struct swim_idents *t);

#endif
