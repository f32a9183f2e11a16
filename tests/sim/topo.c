/*
 * tests/sim/topo.c — see topo.h.
 *
 * Everything is drawn once, at sim_topo_new(), from one splitmix64 stream
 * of the seed, in a fixed order (region centres, detours, then node by
 * node: region, offset, access), so node i's place does not depend on how
 * many nodes come after it. Pair noise is a hash, not a draw, so asking
 * for a pair twice, or in another order, gives the same delay.
 */
#include "tests/sim/topo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TOPO_MIN_US 50.0 /* no two distinct nodes closer than a switch hop */
#define TOPO_MAX_REGIONS 64

struct topo_node {
	float x, y;   /* one-way ms on the plane */
	float access; /* one-way ms */
	int region;
};

struct sim_topo {
	struct sim_topo_cfg cfg;
	uint64_t seed;
	int n;
	struct topo_node *node;
	double detour[TOPO_MAX_REGIONS][TOPO_MAX_REGIONS];
};

static uint64_t topo_mix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [0,1) */
static double topo_unit(uint64_t *x)
{
	return (double)(topo_mix(x) >> 11) * (1.0 / 9007199254740992.0);
}

/* standard normal (Box-Muller; the second value is thrown away so that
 * every node takes the same number of draws) */
static double topo_normal(uint64_t *x)
{
	double u = 1.0 - topo_unit(x); /* (0,1]: log is finite */
	double v = topo_unit(x);
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void sim_topo_cfg_defaults(struct sim_topo_cfg *cfg)
{
	cfg->regions = 0;
	cfg->world_ms = 80.0;
	cfg->region_ms = 2.0;
	cfg->access_ms = 0.5;
	cfg->detour = 0.2;
	cfg->pair_noise = 0.05;
}

struct sim_topo *sim_topo_new(const struct sim_topo_cfg *cfg, int n, uint64_t seed, char *err,
                              size_t errlen)
{
	if (cfg->regions < 1 || cfg->regions > TOPO_MAX_REGIONS || n < 1 ||
	    !(cfg->world_ms >= 0 && cfg->world_ms <= 10000) ||
	    !(cfg->region_ms >= 0 && cfg->region_ms <= 10000) ||
	    !(cfg->access_ms >= 0 && cfg->access_ms <= 10000) ||
	    !(cfg->detour >= 0 && cfg->detour <= 10) ||
	    !(cfg->pair_noise >= 0 && cfg->pair_noise < 1)) {
		snprintf(err, errlen,
		         "topology: regions 1..%d, world/region/access 0..10000 ms, "
		         "detour 0..10, pair_noise 0..<1",
		         TOPO_MAX_REGIONS);
		return NULL;
	}
	struct sim_topo *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->node = calloc((size_t)n, sizeof(*t->node))) == NULL) {
		free(t);
		snprintf(err, errlen, "topology: out of memory");
		return NULL;
	}
	t->cfg = *cfg;
	t->seed = seed;
	t->n = n;
	uint64_t x = seed ^ 0x746f706f6c6f6779ull; /* "topology" */
	double cx[TOPO_MAX_REGIONS], cy[TOPO_MAX_REGIONS];
	for (int r = 0; r < cfg->regions; r++) {
		double rad = cfg->world_ms / 2.0 * sqrt(topo_unit(&x));
		double th = 2.0 * M_PI * topo_unit(&x);
		cx[r] = rad * cos(th);
		cy[r] = rad * sin(th);
	}
	for (int r = 0; r < cfg->regions; r++) {
		t->detour[r][r] = 1.0;
		for (int q = r + 1; q < cfg->regions; q++)
			t->detour[r][q] = t->detour[q][r] = 1.0 + cfg->detour * topo_unit(&x);
	}
	for (int i = 0; i < n; i++) {
		struct topo_node *nd = &t->node[i];
		nd->region = (int)(topo_mix(&x) % (uint64_t)cfg->regions);
		nd->x = (float)(cx[nd->region] + cfg->region_ms * topo_normal(&x));
		nd->y = (float)(cy[nd->region] + cfg->region_ms * topo_normal(&x));
		double acc = -log(1.0 - topo_unit(&x)) * cfg->access_ms;
		nd->access = (float)(acc < 10.0 * cfg->access_ms ? acc : 10.0 * cfg->access_ms);
	}
	return t;
}

void sim_topo_free(struct sim_topo *t)
{
	if (t == NULL)
		return;
	free(t->node);
	free(t);
}

double sim_topo_oneway_us(const struct sim_topo *t, int a, int b)
{
	if (a == b)
		return 0.0;
	const struct topo_node *na = &t->node[a], *nb = &t->node[b];
	double dx = (double)na->x - nb->x, dy = (double)na->y - nb->y;
	double core = sqrt(dx * dx + dy * dy) * t->detour[na->region][nb->region];
	uint64_t h = t->seed ^ ((uint64_t)(a < b ? a : b) << 32 | (uint32_t)(a < b ? b : a));
	core *= 1.0 + t->cfg.pair_noise * (2.0 * topo_unit(&h) - 1.0);
	double us = (core + na->access + nb->access) * 1000.0;
	return us > TOPO_MIN_US ? us : TOPO_MIN_US;
}

int sim_topo_region(const struct sim_topo *t, int a)
{
	return t->node[a].region;
}

double sim_topo_access_us(const struct sim_topo *t, int a)
{
	return t->node[a].access * 1000.0;
}

void sim_topo_place(const struct sim_topo *t, int a, double *x_ms, double *y_ms)
{
	*x_ms = t->node[a].x;
	*y_ms = t->node[a].y;
}
