/*
 * tests/sim/coordacc.h — how well network coordinates predict a latency
 * matrix: relative error over a fixed set of node pairs, sampled over
 * time, and when it converged.
 *
 * Owns: the pairs (every pair when there are at most max_pairs of them,
 * else max_pairs pairs drawn from the seed, a != b, fixed for the whole
 * run so that successive samples compare like with like), a scratch array
 * of errors, and the time series of samples.
 *
 * Data flow: the caller passes a function that, for a pair, gives the
 * estimated RTT (from the two coordinates) and the true one (from the
 * matrix), or says the pair cannot be judged now (a node down, no
 * coordinate yet). Relative error = |estimated - true| / true. Each sample
 * keeps the median and 90th percentile over the pairs judged, and the
 * median over the pairs the function marks "near" (same region).
 * Quantiles interpolate linearly between the closest ranks (q of n sorted
 * values: x[floor(q(n-1))] plus the fraction of the step to the next).
 *
 * Convergence: the time of the first sample from which every later sample
 * has a median at or under the threshold.
 *
 * Knows nothing of the simulator or of coordinates: tests feed it
 * synthetic estimates. Error convention: coordacc_init() returns -1 when
 * out of memory.
 */
#ifndef RUMOR_SIM_COORDACC_H
#define RUMOR_SIM_COORDACC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coordacc_pair {
	uint32_t a, b;
};

struct coordacc_point {
	double t_s;         /* when (the caller's seconds) */
	size_t judged;      /* pairs with both an estimate and a truth */
	size_t near;        /* of which marked near */
	double median, p90; /* relative error; -1 when nothing was judged */
	double near_median; /* -1 when no near pair was judged */
};

struct coordacc {
	struct coordacc_pair *pairs;
	size_t npairs;
	bool all_pairs; /* every pair of the n nodes, not a sample */
	double *err, *near_err;
	struct coordacc_point *pts;
	size_t npts, cap;
};

/* For pair (a, b): *est_s and *true_s in seconds, *near; false: skip it. */
typedef bool (*coordacc_fn)(void *ud, uint32_t a, uint32_t b, double *est_s, double *true_s,
                            bool *near);

/* Pairs of nodes 0..n-1: all of them if n(n-1)/2 <= max_pairs, else
 * max_pairs drawn from seed. 0, or -1 when out of memory. */
int coordacc_init(struct coordacc *acc, uint32_t n, size_t max_pairs, uint64_t seed);
void coordacc_free(struct coordacc *acc);
/* Judge every pair now, append the point to the series and return it
 * (owned by acc, valid until the next sample). */
const struct coordacc_point *coordacc_sample(struct coordacc *acc, double t_s, coordacc_fn fn,
                                             void *ud);
/* The q-quantile (0..1) of v[0..n) (sorted in place); -1 when n == 0. */
double coordacc_quantile(double *v, size_t n, double q);
/* The time of the first point from which every median is <= threshold
 * (and judged something); -1 when the last point is above it or there is
 * none. */
double coordacc_converged_at(const struct coordacc *acc, double threshold);

#endif
