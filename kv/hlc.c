/*
 * kv/hlc.c — see hlc.h.
 */
#include "kv/hlc.h"

uint64_t kv_hlc_from_ms(int64_t ms)
{
	if (ms < 0)
		ms = 0;
	return ((uint64_t)ms & 0xffffffffffffull) << KV_HLC_COUNTER_BITS;
}

uint64_t kv_hlc_next(struct kv_hlc *c, int64_t now_ms)
{
	uint64_t wall = kv_hlc_from_ms(now_ms);
	if (wall > c->last)
		c->last = wall;
	else
		c->last++; /* same or earlier ms: bump the counter (carries into ms) */
	return c->last;
}

void kv_hlc_observe(struct kv_hlc *c, uint64_t remote)
{
	if (remote > c->last)
		c->last = remote;
}
