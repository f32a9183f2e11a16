/*
 * tests/sim/coord_model.c — the simulator's latency matrix (topo.c) and
 * its accuracy measurement (coordacc.c), without the SWIM core:
 *
 * - the matrix is deterministic from the seed, symmetric, has structure
 *   (pairs in one region are far closer than pairs across regions) and
 *   breaks the triangle inequality only when detours are on;
 * - the measurement finds zero error for exact coordinates of an
 *   embeddable matrix, exactly 25% for coordinates scaled by 1.25, and its
 *   quantiles, pair sampling and convergence time match hand-computed
 *   values;
 * - Vivaldi itself (gossip/coord.c, Serf's algorithm) fed the matrix's
 *   RTTs directly, one sample per node per cycle as Serf's Simulate()
 *   test helper does, converges on it: the baseline the SWIM-driven runs
 *   of rumor-sim are compared with.
 *
 * Prints "N passed, M failed"; exit 1 on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/coord.h"
#include "tests/sim/coordacc.h"
#include "tests/sim/topo.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			passed++;                                                                  \
		} else {                                                                           \
			failed++;                                                                  \
			printf("FAIL %s:%d: %s: ", __func__, __LINE__, #cond);                     \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
		}                                                                                  \
	} while (0)

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static struct sim_topo *topo(int regions, double detour, double noise, int n, uint64_t seed)
{
	struct sim_topo_cfg c;
	sim_topo_cfg_defaults(&c);
	c.regions = regions;
	c.detour = detour;
	c.pair_noise = noise;
	char err[200];
	struct sim_topo *t = sim_topo_new(&c, n, seed, err, sizeof(err));
	if (t == NULL) {
		printf("sim_topo_new: %s\n", err);
		abort();
	}
	return t;
}

static void test_topo_deterministic_and_symmetric(void)
{
	struct sim_topo *a = topo(5, 0.2, 0.05, 1000, 7), *b = topo(5, 0.2, 0.05, 1000, 7);
	struct sim_topo *c = topo(5, 0.2, 0.05, 1000, 8);
	/* a smaller matrix from the same seed: the first nodes sit where they did */
	struct sim_topo *d = topo(5, 0.2, 0.05, 10, 7);
	int same = 0, asym = 0, other = 0, nonpos = 0, prefix = 0;
	for (int k = 0; k < 2000; k++) {
		int x = (int)(rnd() % 1000), y = (int)(rnd() % 1000);
		if (x == y)
			continue;
		double v = sim_topo_oneway_us(a, x, y);
		same += v == sim_topo_oneway_us(b, x, y);
		asym += v != sim_topo_oneway_us(a, y, x);
		other += v != sim_topo_oneway_us(c, x, y);
		nonpos += !(v > 0);
	}
	for (int x = 0; x < 10; x++)
		for (int y = 0; y < 10; y++)
			prefix += sim_topo_oneway_us(a, x, y) != sim_topo_oneway_us(d, x, y);
	CHECK(same > 1900, "same seed gave the same delay for %d of ~2000 pairs", same);
	CHECK(asym == 0, "%d pairs asymmetric", asym);
	CHECK(other > 1900, "another seed changed only %d of ~2000 pairs", other);
	CHECK(nonpos == 0, "%d delays not positive", nonpos);
	CHECK(prefix == 0, "%d of the first 10 nodes' delays depend on N", prefix);
	CHECK(sim_topo_oneway_us(a, 3, 3) == 0.0, "self delay %f", sim_topo_oneway_us(a, 3, 3));
	sim_topo_free(a);
	sim_topo_free(b);
	sim_topo_free(c);
	sim_topo_free(d);
}

static void test_topo_structure(void)
{
	enum { N = 500 };
	struct sim_topo *t = topo(5, 0.2, 0.05, N, 1);
	static double in[N * N / 2], out[N * N / 2];
	size_t ni = 0, no = 0;
	int count[5] = {0};
	for (int a = 0; a < N; a++) {
		count[sim_topo_region(t, a)]++;
		for (int b = a + 1; b < N; b++) {
			double v = 2.0 * sim_topo_oneway_us(t, a, b) / 1000.0;
			if (sim_topo_region(t, a) == sim_topo_region(t, b))
				in[ni++] = v;
			else
				out[no++] = v;
		}
	}
	double mi = coordacc_quantile(in, ni, 0.5), mo = coordacc_quantile(out, no, 0.5);
	double maxo = coordacc_quantile(out, no, 1.0);
	printf("matrix N=%d, 5 regions, defaults: RTT median within a region %.1f ms, across "
	       "%.1f ms (max %.1f ms); region sizes %d %d %d %d %d\n",
	       N, mi, mo, maxo, count[0], count[1], count[2], count[3], count[4]);
	CHECK(mi > 1.0 && mi < 20.0, "median RTT within a region %.2f ms", mi);
	CHECK(mo > 5.0 * mi, "across regions %.2f ms, within %.2f ms", mo, mi);
	/* a disc of 80 ms one way, stretched by < 1.2 and +-5%, plus access */
	CHECK(maxo < 2.0 * (80.0 * 1.2 * 1.05 + 10.0), "longest RTT %.1f ms", maxo);
	for (int r = 0; r < 5; r++)
		CHECK(count[r] > N / 10, "region %d has %d of %d nodes", r, count[r], N);
	sim_topo_free(t);
}

/* The fraction of sampled triples with d(a,c) > d(a,b) + d(b,c). */
static double triangle_violations(struct sim_topo *t, int n)
{
	int bad = 0, total = 20000;
	for (int k = 0; k < total; k++) {
		int a = (int)(rnd() % (uint64_t)n), b = (int)(rnd() % (uint64_t)n);
		int c = (int)(rnd() % (uint64_t)n);
		double ac = sim_topo_oneway_us(t, a, c);
		bad += ac > sim_topo_oneway_us(t, a, b) + sim_topo_oneway_us(t, b, c) + 1e-6;
	}
	return (double)bad / total;
}

static void test_topo_triangle(void)
{
	struct sim_topo *flat = topo(8, 0.0, 0.0, 400, 3), *bent = topo(8, 1.0, 0.05, 400, 3);
	double f = triangle_violations(flat, 400), b = triangle_violations(bent, 400);
	printf("triangle inequality broken by %.2f%% of triples (detour 1.0, noise 0.05), "
	       "%.2f%% without detours\n",
	       100 * b, 100 * f);
	CHECK(f == 0.0, "%.4f of triples violate it without detours or noise", f);
	CHECK(b > 0.0, "detours never broke the triangle inequality");
	sim_topo_free(flat);
	sim_topo_free(bent);
}

static void test_topo_rejects(void)
{
	struct sim_topo_cfg c;
	sim_topo_cfg_defaults(&c);
	char err[200] = "";
	CHECK(sim_topo_new(&c, 10, 1, err, sizeof(err)) == NULL, "0 regions accepted");
	c.regions = 3;
	c.pair_noise = 1.0;
	CHECK(sim_topo_new(&c, 10, 1, err, sizeof(err)) == NULL, "pair_noise 1 accepted");
	CHECK(strstr(err, "regions") != NULL, "message: %s", err);
}

static void test_quantile(void)
{
	double v[] = {4, 1, 3, 2};
	CHECK(fabs(coordacc_quantile(v, 4, 0.5) - 2.5) < 1e-12, "median %f",
	      coordacc_quantile(v, 4, 0.5));
	CHECK(fabs(coordacc_quantile(v, 4, 0.9) - 3.7) < 1e-12, "p90 %f",
	      coordacc_quantile(v, 4, 0.9));
	CHECK(coordacc_quantile(v, 4, 1.0) == 4.0, "max %f", coordacc_quantile(v, 4, 1.0));
	double one[] = {5};
	CHECK(coordacc_quantile(one, 1, 0.9) == 5.0, "one value");
	CHECK(coordacc_quantile(one, 0, 0.5) == -1.0, "empty");
}

static void test_pairs(void)
{
	struct coordacc a, b;
	CHECK(coordacc_init(&a, 100, 20000, 1) == 0, "init");
	CHECK(a.all_pairs && a.npairs == 4950, "all %d, %zu pairs", a.all_pairs, a.npairs);
	int bad = 0;
	for (size_t k = 0; k < a.npairs; k++)
		bad += !(a.pairs[k].a < a.pairs[k].b && a.pairs[k].b < 100);
	CHECK(bad == 0, "%d pairs out of order or range", bad);
	coordacc_free(&a);
	CHECK(coordacc_init(&a, 1000, 20000, 1) == 0 && coordacc_init(&b, 1000, 20000, 1) == 0,
	      "init");
	CHECK(!a.all_pairs && a.npairs == 20000, "all %d, %zu pairs", a.all_pairs, a.npairs);
	bad = 0;
	int differ = 0;
	for (size_t k = 0; k < a.npairs; k++) {
		bad += a.pairs[k].a == a.pairs[k].b || a.pairs[k].a >= 1000 || a.pairs[k].b >= 1000;
		differ += a.pairs[k].a != b.pairs[k].a || a.pairs[k].b != b.pairs[k].b;
	}
	CHECK(bad == 0, "%d sampled pairs bad", bad);
	CHECK(differ == 0, "%d sampled pairs differ between two runs of one seed", differ);
	coordacc_free(&a);
	coordacc_free(&b);
}

struct judge {
	struct sim_topo *t;
	struct coord *c;
};

static bool judge_pair(void *ud, uint32_t a, uint32_t b, double *est, double *truth, bool *near)
{
	struct judge *j = ud;
	*est = (double)coord_distance_ns(&j->c[a], &j->c[b]) / 1e9;
	*truth = 2.0 * sim_topo_oneway_us(j->t, (int)a, (int)b) / 1e6;
	*near = sim_topo_region(j->t, (int)a) == sim_topo_region(j->t, (int)b);
	return true;
}

/* Without detours or noise the matrix is a 2-D plane plus heights: RTT =
 * 2|pa - pb| + 2 access(a) + 2 access(b), which Serf's distance (vector
 * distance + both heights) represents exactly. */
static void test_measure_exact_and_scaled(void)
{
	enum { N = 100 };
	struct sim_topo *t = topo(4, 0.0, 0.0, N, 5);
	struct coord c[N];
	struct coord_config cfg;
	coord_config_default(&cfg);
	for (int scale = 0; scale < 2; scale++) {
		double k = scale ? 1.25 : 1.0;
		for (int i = 0; i < N; i++) {
			double x, y;
			coord_new(&cfg, &c[i]);
			sim_topo_place(t, i, &x, &y);
			c[i].vec[0] = k * 2.0 * x / 1e3;
			c[i].vec[1] = k * 2.0 * y / 1e3;
			c[i].height = k * 2.0 * sim_topo_access_us(t, i) / 1e6;
		}
		struct coordacc acc;
		CHECK(coordacc_init(&acc, N, 20000, 1) == 0, "init");
		struct judge j = {t, c};
		const struct coordacc_point *p = coordacc_sample(&acc, 10.0, judge_pair, &j);
		double want = k - 1.0;
		CHECK(p->judged == 4950 && p->near > 0, "judged %zu, near %zu", p->judged, p->near);
		CHECK(fabs(p->median - want) < 1e-4, "scale %.2f: median %.6f", k, p->median);
		CHECK(fabs(p->p90 - want) < 1e-4, "scale %.2f: p90 %.6f", k, p->p90);
		CHECK(fabs(p->near_median - want) < 1e-3, "scale %.2f: near median %.6f", k,
		      p->near_median);
		coordacc_free(&acc);
	}
	sim_topo_free(t);
}

static void test_converged_at(void)
{
	struct coordacc acc;
	memset(&acc, 0, sizeof(acc));
	struct coordacc_point pts[] = {
	        {0, 10, 0, 0.9, 1, -1},  {5, 10, 0, 0.15, 1, -1}, {10, 10, 0, 0.3, 1, -1},
	        {15, 10, 0, 0.2, 1, -1}, {20, 10, 0, 0.1, 1, -1}, {25, 10, 0, 0.05, 1, -1},
	};
	acc.pts = pts;
	acc.npts = 6;
	CHECK(coordacc_converged_at(&acc, 0.2) == 15.0, "got %f", coordacc_converged_at(&acc, 0.2));
	CHECK(coordacc_converged_at(&acc, 0.01) == -1.0, "got %f",
	      coordacc_converged_at(&acc, 0.01));
	CHECK(coordacc_converged_at(&acc, 1.0) == 0.0, "got %f", coordacc_converged_at(&acc, 1.0));
	pts[5].judged = 0; /* a point that judged nothing is not converged */
	CHECK(coordacc_converged_at(&acc, 1.0) == -1.0, "got %f", coordacc_converged_at(&acc, 1.0));
}

/* Serf's Simulate(): every cycle each node measures the RTT to one random
 * other node and updates its coordinate. Here the RTT is the matrix's
 * plus two exponential jitters of mean jitter_ms, as the simulator's
 * network adds. Returns the point measured after `cycles`. */
static struct coordacc_point vivaldi_offline(int n, int cycles, double jitter_ms,
                                             struct coordacc *acc, struct sim_topo *t)
{
	struct coord_client *cl = calloc((size_t)n, sizeof(*cl));
	struct coord *c = calloc((size_t)n, sizeof(*c));
	char(*name)[16] = calloc((size_t)n, sizeof(*name));
	if (cl == NULL || c == NULL || name == NULL)
		abort();
	for (int i = 0; i < n; i++) {
		coord_client_init(&cl[i], NULL, rnd());
		snprintf(name[i], sizeof(name[i]), "n%d", i);
	}
	for (int cy = 0; cy < cycles; cy++) {
		for (int i = 0; i < n; i++) {
			int j = (int)(rnd() % (uint64_t)n);
			if (j == i)
				continue;
			double us = 2.0 * sim_topo_oneway_us(t, i, j);
			for (int k = 0; k < 2; k++)
				us += -log(1.0 - (double)(rnd() >> 11) / 9007199254740992.0) *
				      jitter_ms * 1000.0;
			coord_client_update(&cl[i], name[j], &cl[j].c, (int64_t)(us * 1000.0));
		}
	}
	for (int i = 0; i < n; i++)
		c[i] = cl[i].c;
	struct judge j = {t, c};
	struct coordacc_point p = *coordacc_sample(acc, cycles, judge_pair, &j);
	for (int i = 0; i < n; i++)
		coord_client_free(&cl[i]);
	free(cl);
	free(c);
	free(name);
	return p;
}

static void test_vivaldi_offline(void)
{
	enum { N = 100 };
	struct sim_topo *t = topo(5, 0.2, 0.05, N, 1);
	struct coordacc acc;
	CHECK(coordacc_init(&acc, N, 20000, 1) == 0, "init");
	const int cycles[] = {0, 30, 100, 300};
	struct coordacc_point p[4];
	for (int k = 0; k < 4; k++) {
		rs = 0x2545f4914f6cdd1dull;
		p[k] = vivaldi_offline(N, cycles[k], 0.1, &acc, t);
		printf("Vivaldi fed the matrix directly, N=%d, %d samples/node: relative error "
		       "median %.3f, p90 %.3f, within a region %.3f\n",
		       N, cycles[k], p[k].median, p[k].p90, p[k].near_median);
	}
	/* at the origin every estimate is 2 x 10 us of height: error ~1 */
	CHECK(p[0].median > 0.9, "untrained median %.3f", p[0].median);
	CHECK(p[3].median < 0.10, "median after 300 samples/node %.3f", p[3].median);
	CHECK(p[3].p90 < 0.35, "p90 after 300 samples/node %.3f", p[3].p90);
	CHECK(p[3].median < p[1].median, "no progress from 30 to 300 samples: %.3f -> %.3f",
	      p[1].median, p[3].median);
	coordacc_free(&acc);
	sim_topo_free(t);
}

int main(void)
{
	test_topo_deterministic_and_symmetric();
	test_topo_structure();
	test_topo_triangle();
	test_topo_rejects();
	test_quantile();
	test_pairs();
	test_measure_exact_and_scaled();
	test_converged_at();
	test_vivaldi_offline();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
