/*
 * tests/sim/coordacc.c — see coordacc.h.
 *
 * Sorting a sample's errors is O(P log P) for P pairs (20,000 by default
 * at 1,000 nodes and above: a few milliseconds), so sampling every few
 * virtual seconds costs nothing beside the simulation itself.
 */
#include "tests/sim/coordacc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t acc_mix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int coordacc_init(struct coordacc *acc, uint32_t n, size_t max_pairs, uint64_t seed)
{
	memset(acc, 0, sizeof(*acc));
	if (n < 2)
		return 0;
	uint64_t all = (uint64_t)n * (n - 1) / 2;
	acc->all_pairs = all <= max_pairs;
	acc->npairs = acc->all_pairs ? (size_t)all : max_pairs;
	acc->pairs = calloc(acc->npairs ? acc->npairs : 1, sizeof(*acc->pairs));
	acc->err = calloc(acc->npairs ? acc->npairs : 1, sizeof(double));
	acc->near_err = calloc(acc->npairs ? acc->npairs : 1, sizeof(double));
	if (acc->pairs == NULL || acc->err == NULL || acc->near_err == NULL) {
		coordacc_free(acc);
		return -1;
	}
	if (acc->all_pairs) {
		size_t k = 0;
		for (uint32_t a = 0; a < n; a++)
			for (uint32_t b = a + 1; b < n; b++)
				acc->pairs[k++] = (struct coordacc_pair){a, b};
		return 0;
	}
	uint64_t x = seed ^ 0x7061697273ull; /* "pairs" */
	for (size_t k = 0; k < acc->npairs; k++) {
		uint32_t a = (uint32_t)(acc_mix(&x) % n);
		/* b uniform over the n-1 others */
		uint32_t b = (uint32_t)(acc_mix(&x) % (n - 1));
		if (b >= a)
			b++;
		acc->pairs[k] = (struct coordacc_pair){a, b};
	}
	return 0;
}

void coordacc_free(struct coordacc *acc)
{
	free(acc->pairs);
	free(acc->err);
	free(acc->near_err);
	free(acc->pts);
	memset(acc, 0, sizeof(*acc));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double coordacc_quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return -1.0;
	qsort(v, n, sizeof(*v), cmp_double);
	double pos = q * (double)(n - 1);
	size_t i = (size_t)floor(pos);
	if (i >= n - 1)
		return v[n - 1];
	return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

const struct coordacc_point *coordacc_sample(struct coordacc *acc, double t_s, coordacc_fn fn,
                                             void *ud)
{
	if (acc->npts == acc->cap) {
		size_t cap = acc->cap ? acc->cap * 2 : 64;
		struct coordacc_point *p = realloc(acc->pts, cap * sizeof(*p));
		if (p == NULL)
			abort();
		acc->pts = p;
		acc->cap = cap;
	}
	size_t m = 0, nn = 0;
	for (size_t k = 0; k < acc->npairs; k++) {
		double est, truth;
		bool near = false;
		if (!fn(ud, acc->pairs[k].a, acc->pairs[k].b, &est, &truth, &near) ||
		    !(truth > 0) || !isfinite(est))
			continue;
		double e = fabs(est - truth) / truth;
		acc->err[m++] = e;
		if (near)
			acc->near_err[nn++] = e;
	}
	struct coordacc_point *pt = &acc->pts[acc->npts++];
	pt->t_s = t_s;
	pt->judged = m;
	pt->near = nn;
	/* the median first: the p90 call sorts the same (sorted) array again */
	pt->median = coordacc_quantile(acc->err, m, 0.5);
	pt->p90 = coordacc_quantile(acc->err, m, 0.9);
	pt->near_median = coordacc_quantile(acc->near_err, nn, 0.5);
	return pt;
}

double coordacc_converged_at(const struct coordacc *acc, double threshold)
{
	double at = -1.0;
	for (size_t i = acc->npts; i-- > 0;) {
		const struct coordacc_point *p = &acc->pts[i];
		if (p->judged == 0 || p->median > threshold)
			break;
		at = p->t_s;
	}
	return at;
}
