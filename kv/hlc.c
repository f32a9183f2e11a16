/*
 * kv/hlc.c — see hlc.h.
 */
#include "kv/hlc.h"

#define COUNTER_FIELD ((UINT64_C(1) << KV_HLC_COUNTER_BITS) - 1)

uint64_t kv_hlc_from_ms(int64_t ms)
{
	if (ms < 0)
		ms = 0;
	return ((uint64_t)ms & 0xffffffffffffull) << KV_HLC_COUNTER_BITS;
}

/*
 * The counter stops at KV_HLC_COUNTER_MAX, not at the field's 65535: past it
 * the next version is the next millisecond with counter 0, so every version
 * issued here maps to an index of its own (hlc.h). A remote version observed
 * with a larger counter (an older release wrote it) is left the same way.
 */
uint64_t kv_hlc_next(struct kv_hlc *c, int64_t now_ms)
{
	uint64_t wall = kv_hlc_from_ms(now_ms);
	if (wall > c->last) {
		c->last = wall;
		return c->last;
	}
	uint64_t n = c->last + 1; /* same or earlier ms: bump the counter */
	if ((n & COUNTER_FIELD) > KV_HLC_COUNTER_MAX)
		n = (n | COUNTER_FIELD) + 1; /* next ms, counter 0 */
	c->last = n;
	return c->last;
}

void kv_hlc_observe(struct kv_hlc *c, uint64_t remote)
{
	if (remote > c->last)
		c->last = remote;
}

/*
 * Monotonic (v <= w gives index(v) <= index(w)) and one-to-one on versions
 * with counters up to 4095, which is every version kv_hlc_next issues. The
 * same function on every agent, so converged replicas show equal indexes.
 */
uint64_t kv_hlc_index(uint64_t v)
{
	int64_t ms = KV_HLC_MS(v);
	uint64_t counter = v & COUNTER_FIELD;
	if (ms < KV_INDEX_EPOCH_MS)
		return 1;
	uint64_t rel = (uint64_t)(ms - KV_INDEX_EPOCH_MS);
	if (rel > (KV_INDEX_MAX >> KV_INDEX_COUNTER_BITS))
		return KV_INDEX_MAX;
	if (counter > KV_HLC_COUNTER_MAX)
		counter = KV_HLC_COUNTER_MAX;
	uint64_t idx = rel << KV_INDEX_COUNTER_BITS | counter;
	return idx ? idx : 1;
}

uint64_t kv_hlc_index_in(uint64_t client)
{
	return client > KV_INDEX_MAX ? kv_hlc_index(client) : client;
}

uint64_t kv_hlc_from_index(uint64_t idx)
{
	uint64_t ms = (idx >> KV_INDEX_COUNTER_BITS) + (uint64_t)KV_INDEX_EPOCH_MS;
	return ms << KV_HLC_COUNTER_BITS | (idx & KV_HLC_COUNTER_MAX);
}
