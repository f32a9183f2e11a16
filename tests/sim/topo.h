/*
 * tests/sim/topo.h — a latency matrix with structure for the simulator.
 *
 * Owns: where each simulated node sits: a region (a "data centre" or a
 * metro area), a place on a plane measured in one-way milliseconds, and
 * an access delay (its own link to the rest of the network). From those,
 * the one-way delay between any two nodes, deterministic from the seed
 * and symmetric, computed on demand (no N x N table: 5,000 nodes would
 * need 200 MB for it).
 *
 * The model, in the spirit of the Vivaldi paper's synthetic networks and
 * of the truth matrices Serf's coordinate tests build (a split of two
 * sites, a grid, a circle with one node "above" the rest):
 *
 *   oneway(a, b) = access[a] + access[b]
 *                + |pos[a] - pos[b]| * detour(region a, region b)
 *                  * (1 + pair_noise * (2u(a,b) - 1)),   at least 50 us
 *
 * - region centres are drawn uniformly in a disc whose diameter is
 *   world_ms of one-way delay; each node is in one region (uniform);
 * - a node's place is its region's centre plus a Gaussian offset of
 *   region_ms in each axis (the spread of buildings in a metro);
 * - its access delay is exponential with mean access_ms (capped at ten
 *   times that): what Vivaldi's height models;
 * - paths between two regions are stretched by 1 + U[0, detour), one
 *   draw per region pair (routing that does not follow the straight
 *   line), so the matrix breaks the triangle inequality as the Internet
 *   does and no coordinate system embeds it exactly;
 * - every pair's core delay is scaled by a fixed 1 +- pair_noise, from a
 *   hash of the seed and the pair.
 * The per-packet jitter is not here: the simulator adds its exponential
 * jitter (jitter_ms) to each datagram. The "true" RTT of a pair, against
 * which coordinates are judged, is 2 * oneway: the round trip without
 * jitter.
 *
 * Error convention: sim_topo_new() returns NULL for a bad configuration
 * (the message in err).
 */
#ifndef RUMOR_SIM_TOPO_H
#define RUMOR_SIM_TOPO_H

#include <stddef.h>
#include <stdint.h>

struct sim_topo_cfg {
	int regions;       /* 0: no matrix (the simulator's flat default model) */
	double world_ms;   /* diameter of the disc region centres are drawn in */
	double region_ms;  /* standard deviation of a node's offset, each axis */
	double access_ms;  /* mean of a node's access delay (exponential) */
	double detour;     /* inter-region paths stretched by 1 + U[0, detour) */
	double pair_noise; /* each pair's core delay scaled by 1 +- this */
};

struct sim_topo;

/* The defaults (regions stays 0: off): world 80 ms, region 2 ms,
 * access 0.5 ms, detour 0.2, pair noise 0.05. */
void sim_topo_cfg_defaults(struct sim_topo_cfg *cfg);
/* A matrix for n nodes (ids 0..n-1), drawn from seed; caller frees. */
struct sim_topo *sim_topo_new(const struct sim_topo_cfg *cfg, int n, uint64_t seed, char *err,
                              size_t errlen);
void sim_topo_free(struct sim_topo *t);
/* One-way delay a -> b in microseconds (= b -> a); 0 when a == b. */
double sim_topo_oneway_us(const struct sim_topo *t, int a, int b);
/* The region of node a. */
int sim_topo_region(const struct sim_topo *t, int a);
/* Node a's access delay in microseconds. */
double sim_topo_access_us(const struct sim_topo *t, int a);
/* Node a's place on the plane, one-way ms (tests build exact coordinates). */
void sim_topo_place(const struct sim_topo *t, int a, double *x_ms, double *y_ms);

#endif
