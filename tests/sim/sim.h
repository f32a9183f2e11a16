/*
 * tests/sim/sim.h — deterministic simulator of the gossip layer.
 *
 * Owns: N instances of the unchanged SWIM core (gossip/swim.c) and
 * everything around them that the agent would provide — a virtual clock,
 * an event heap, an in-memory network (per-link latency, jitter, loss,
 * duplication, reordering, full and one-way partitions), TCP push-pull and
 * TCP fallback pings as reliable exchanges with latency, node crash,
 * restart, graceful leave, pause (a GC-like stall) and slowness. It checks
 * invariants while it runs and measures dissemination and detection.
 *
 * Time: the heap orders events by virtual microseconds (then by insertion
 * sequence, so ties are broken deterministically); the cores see
 * milliseconds. Randomness: one xoshiro256** stream per node (the core's
 * rand32) and one for the network, all derived from the seed with
 * splitmix64. A seed therefore reproduces a run bit for bit.
 *
 * With cfg.kv.enabled it also runs the agent's KV engine (kv/engine.c,
 * with kv/repl.c, kv/store.c, kv/hlc.c) on every node, driven as kv/kv.c
 * drives it: a replica in a per-run temporary directory, SET/ANNOUNCE riding the
 * node's SWIM user broadcasts, anti-entropy sessions and pulls over a
 * simulated TCP stream, HLC from the virtual clock; writes and deletes are
 * scenario actions, and convergence, durability across crashes and version
 * monotonicity are checked (see "KV replication in the simulator" in
 * docs/SIMULATION.md).
 *
 * Error convention: sim_new() returns NULL with a message in err; sim_run()
 * returns the number of invariant violations (0 = pass).
 */
#ifndef RUMOR_SIM_H
#define RUMOR_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gossip/swim.h"
#include "tests/sim/topo.h"

enum sim_act_type {
	SIM_CRASH,     /* nodes stop dead (process killed) */
	SIM_RESTART,   /* crashed nodes start again and join a live node */
	SIM_LEAVE,     /* nodes leave gracefully, then stop */
	SIM_JOIN,      /* `count` new nodes start and join */
	SIM_PAUSE,     /* nodes stall for dur_ms: no timers, input queued */
	SIM_PARTITION, /* split into groups of sizes[]; oneway: only 0 -> others */
	SIM_HEAL,      /* remove every partition */
	SIM_LOSS,      /* set the packet loss probability to value */
	SIM_SLOW,      /* value ms added to every packet to or from nodes, for dur_ms */
	SIM_KV_WRITE,  /* KV puts: count per listed node, or count at random live nodes */
	SIM_KV_DELETE, /* KV deletes, chosen like SIM_KV_WRITE */
};

struct sim_action {
	int64_t at_ms;
	enum sim_act_type type;
	int *nodes; /* node ids (resolved from count/fraction when loaded) */
	int nnodes;
	int count;
	double value;
	int64_t dur_ms;
	int sizes[8]; /* partition group sizes; the last group takes the rest */
	int nsizes;
	bool oneway;
	/* KV operations: spread evenly over dur_ms; the key is `key`, or one of
	 * "k0".."k<keys-1>" drawn per operation; value_size 0: the run's default */
	const char *key;
	int keys;
	int value_size;
};

struct sim_expect {
	int64_t fp_max;           /* false FAILED events at healthy nodes; -1: no bound */
	int64_t detect_ms;        /* every crash known dead everywhere within; 0: none */
	int64_t first_suspect_ms; /* first suspicion of a crash within; 0: none */
	int64_t join_ms;          /* every join known everywhere within; 0: none */
	double storm_tail;        /* join storm: last node to see all <= this x median; 0: none */
	bool converge;            /* views equal the truth at the end */
	double load_max;          /* packets sent per node per probe period (max); 0: none */
	int64_t fsusp_max;    /* suspicion events at healthy nodes about healthy ones; -1: none */
	bool kv_converge;     /* KV replicas identical and at the largest write at the end */
	int64_t kv_spread_ms; /* every write held by every live node within; 0: none */
	int64_t kv_heal_ms;   /* replicas identical within this after each heal; 0: none */
	/* network coordinates, judged at the end (coordacc.h); 0: no bound */
	double coord_median_max;   /* median relative error of the last sample */
	double coord_p90_max;      /* its 90th percentile */
	int64_t coord_converge_ms; /* converged (median <= threshold for good) within */
};

/* Network coordinates (issue 18): SWIM's Vivaldi, judged against the
 * latency model. Off by default, so that the runs from before coordinates
 * stay bit for bit what they were (on, every ack carries a coordinate and
 * each core draws its coordinate seed from its random stream). */
struct sim_coord_cfg {
	bool enabled;      /* swim_config.disable_coordinates = !enabled */
	double threshold;  /* convergence: median relative error at or under this */
	int64_t every_ms;  /* sampling period of the error (virtual) */
	size_t max_pairs;  /* all pairs up to this many, else a sample this big */
	const char *curve; /* append the error against time (TSV) to this file */
	const char *cdf;   /* append the last sample's error distribution (TSV) */
};

struct sim_kv_cfg {
	bool enabled;             /* a replica per node (implied by any KV action) */
	int64_t sync_interval_ms; /* anti-entropy period (+-10% jitter); the agent's 10 s */
	size_t map_size;          /* LMDB map per node */
	int value_size;           /* default bytes per written value */
	double skew_ms;           /* each node's wall clock offset, uniform in +-skew_ms */
	bool no_sync;             /* no anti-entropy (to see an invariant fire) */
};

struct sim_cfg {
	const char *name;
	int nodes;
	uint64_t seed;
	int64_t duration_ms;
	const char *profile; /* lan, wan, local */
	bool lifeguard;      /* false: suspicion_max_timeout_mult=1, awareness max 1 */
	bool warm;           /* start converged (true) or with a join storm */
	int64_t join_window_ms;
	double latency_ms, link_spread_ms, jitter_ms;
	double loss, dup;
	bool tcp_ping;     /* give the core a TCP fallback ping */
	bool join_seed;    /* join storm: every node joins node 0 (as bench/cluster) */
	bool consul_meta;  /* nodes carry a Consul agent's serf tags (about 140 bytes of
			   * meta, a random id each), as real agents do; off: no meta */
	bool gossip_plain; /* gossip packets uncompressed (swim_timing.gossip_plain) */
	/* the last serf_nodes of the first `nodes` are stock Serf agents: no KV,
	 * tags without rumor's build; every node then classifies members with
	 * tags_is_rumor, as the agent does, and a rumor-only message a Serf
	 * node receives ("unknown type" in its log) is a violation. 0: all
	 * rumor, no classifier (the runs before mixed clusters, bit for bit) */
	int serf_nodes;
	struct sim_action *actions;
	int nactions;
	struct sim_expect expect;
	struct sim_kv_cfg kv;
	/* regions > 0: one-way delays from a structured latency matrix
	 * (topo.h) instead of latency_ms + link spread; jitter, slowness and
	 * loss apply on top as before */
	struct sim_topo_cfg topo;
	struct sim_coord_cfg coord;
	int verbose;
	const char *curve_csv; /* write the dissemination curve of tracked events */
	const char *summary;   /* append one line of key figures (bench/) */
	bool quiet;
};

struct sim;

void sim_cfg_defaults(struct sim_cfg *cfg);
struct sim *sim_new(const struct sim_cfg *cfg, char *err, size_t errlen);
/* Run to the end; prints the report; returns the number of violations. */
int sim_run(struct sim *sim, FILE *out);
void sim_free(struct sim *sim);

#endif
