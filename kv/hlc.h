/*
 * kv/hlc.h — hybrid logical clock, and the index clients see.
 *
 * Owns: the version of a write (an HLC) and its 53-bit index form.
 *
 * A version is one uint64_t, so versions compare as integers: 48 bits of
 * wall-clock milliseconds since 1970 and a 16-bit counter field. That layout
 * is what the store, the log and the wire have always carried; it is kept so
 * that no data directory needs rewriting and agents of every release read
 * one another's versions with their order intact (see docs/KV.md, "Indexes").
 *
 * Clients never see a version. Every index rumor emits (ModifyIndex,
 * CreateIndex, X-Consul-Index) is its index form, at most 2^53 - 1 so that a
 * JavaScript number or jq holds it exactly:
 *   index = (ms - KV_INDEX_EPOCH_MS) << 12 | min(counter, 4095)
 * 41 bits of milliseconds since 2024-01-01T00:00:00Z (until 2093-09) and 12
 * bits of counter. This clock issues counters up to 4095 only (on the 4096th
 * version within one millisecond it moves to the next millisecond, running
 * ahead of the wall clock briefly), so every version it issues has its own
 * index and the index order is the version order. Versions written by older
 * releases may carry larger counters: those are shown as 4095, so two of
 * them within one millisecond can share an index (never two of ours).
 *
 * The clock never goes backwards: kv_hlc_next() returns a value larger than
 * every value it returned or observed before, even if the wall clock steps
 * back. Pure functions over a struct: no clock is read here, time is an
 * argument. Nothing here can fail.
 */
#ifndef RUMOR_KV_HLC_H
#define RUMOR_KV_HLC_H

#include <stdint.h>

#define KV_HLC_COUNTER_BITS 16  /* the counter field of a version */
#define KV_HLC_COUNTER_MAX 4095 /* the largest counter this clock issues */
#define KV_HLC_MS(h) ((int64_t)((h) >> KV_HLC_COUNTER_BITS))

#define KV_INDEX_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z */
#define KV_INDEX_COUNTER_BITS 12
#define KV_INDEX_MAX ((UINT64_C(1) << 53) - 1) /* 2^53 - 1: a double holds it exactly */

struct kv_hlc {
	uint64_t last; /* the largest value issued or observed */
};

/* A new version for a local write at wall time now_ms. */
uint64_t kv_hlc_next(struct kv_hlc *c, int64_t now_ms);
/* Take a remote version into account (so our next one is larger). */
void kv_hlc_observe(struct kv_hlc *c, uint64_t remote);
/* The HLC value for wall time ms with counter 0. */
uint64_t kv_hlc_from_ms(int64_t ms);

/* The index clients see for version v: 1..KV_INDEX_MAX, never 0 (a version
 * before the epoch is 1; after 2093 it stays at KV_INDEX_MAX). */
uint64_t kv_hlc_index(uint64_t v);
/* An index a client sent (?index=, ?cas=, a txn's Index): a value over
 * KV_INDEX_MAX is a version as earlier releases showed it and is read as
 * kv_hlc_index of it, so indexes held across an upgrade keep working; others
 * are returned as they are. */
uint64_t kv_hlc_index_in(uint64_t client);
/* The version whose index is idx (counter at most 4095); for tests. */
uint64_t kv_hlc_from_index(uint64_t idx);

#endif
