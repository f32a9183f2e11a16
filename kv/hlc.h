/*
 * kv/hlc.h — hybrid logical clock: 48 bits of wall-clock milliseconds and a
 * 16-bit counter in one uint64_t, so versions compare as integers.
 *
 * The clock never goes backwards: kv_hlc_next() returns a value larger than
 * every value it returned or observed before, even if the wall clock steps
 * back. When the counter would overflow within one millisecond the
 * millisecond part is advanced instead (the clock runs ahead briefly).
 * Pure functions over a struct: no clock is read here, time is an argument.
 */
#ifndef RUMOR_KV_HLC_H
#define RUMOR_KV_HLC_H

#include <stdint.h>

#define KV_HLC_COUNTER_BITS 16
#define KV_HLC_MS(h) ((int64_t)((h) >> KV_HLC_COUNTER_BITS))

struct kv_hlc {
	uint64_t last; /* the largest value issued or observed */
};

/* A new version for a local write at wall time now_ms. */
uint64_t kv_hlc_next(struct kv_hlc *c, int64_t now_ms);
/* Take a remote version into account (so our next one is larger). */
void kv_hlc_observe(struct kv_hlc *c, uint64_t remote);
/* The HLC value for wall time ms with counter 0. */
uint64_t kv_hlc_from_ms(int64_t ms);

#endif
