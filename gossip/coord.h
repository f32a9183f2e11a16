/*
 * gossip/coord.h — Vivaldi network coordinates, as Serf computes them, and
 * their wire form, sans-I/O.
 *
 * Owns: one node's coordinate client (its coordinate, the per-peer latency
 * filter, the adjustment window, gravity toward the origin) and the
 * distance estimate between two coordinates; the msgpack form of a
 * coordinate (go-msgpack's encoding of serf/coordinate.Coordinate: a map of
 * Adjustment, Error, Height, Vec, floats as float64) and the ack payload
 * Serf's ping delegate sends (the version byte 1, then that map).
 *
 * Same model and defaults as Serf's coordinate package (DefaultConfig): 8
 * dimensions, error max 1.5, ce = cc = 0.25, adjustment window 20, height
 * min 10 us, latency filter 3 (median of the last three RTTs per peer),
 * gravity rho 150. Distances go through whole nanoseconds where Serf's go
 * through a time.Duration, so an update gives Serf's result to the bit.
 *
 * It never reads a clock or a socket; the one random draw (a direction for
 * two coincident coordinates) comes from a generator seeded by the caller.
 */
#ifndef RUMOR_GOSSIP_COORD_H
#define RUMOR_GOSSIP_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COORD_DIM 8
#define COORD_PING_VERSION 1 /* serf.PingVersion: the ack payload's first byte */
#define COORD_LATENCY_FILTER 3
#define COORD_ADJ_WINDOW 20
#define COORD_MAX_RTT_NS 10000000000LL /* Serf refuses a sample above 10 s */
/* A coordinate's encoded size is 130 bytes; the payload adds a byte. */
#define COORD_WIRE_MAX 160

struct coord {
	double vec[COORD_DIM];
	double error;
	double adjustment; /* seconds */
	double height;     /* seconds */
};

struct coord_config {
	double error_max; /* VivaldiErrorMax */
	double ce, cc;    /* VivaldiCE, VivaldiCC */
	double height_min;
	double gravity_rho;
	unsigned adj_window; /* 0..COORD_ADJ_WINDOW; 0 turns adjustment off */
};

/* The per-peer RTT samples of the latency filter. */
struct coord_peer {
	char *name;
	double s[COORD_LATENCY_FILTER]; /* oldest first */
	unsigned n;
};

struct coord_client {
	struct coord_config cfg;
	struct coord c;      /* this node's coordinate */
	struct coord origin; /* a new coordinate: gravity pulls toward it */
	double adj[COORD_ADJ_WINDOW];
	unsigned adj_i;
	struct coord_peer *peers; /* the latency filters, unordered */
	size_t npeers, cap;
	uint64_t rng;    /* xorshift64 state, never 0 */
	uint64_t resets; /* updates that made the coordinate invalid */
	uint64_t updates, rejected;
};

void coord_config_default(struct coord_config *cfg);
/* A new coordinate: at the origin, error error_max, height height_min. */
void coord_new(const struct coord_config *cfg, struct coord *c);
/* Every component finite. */
bool coord_valid(const struct coord *c);
/* Serf's DistanceTo, in nanoseconds: the Euclidean distance plus both
 * heights, plus both adjustments when that stays positive. */
int64_t coord_distance_ns(const struct coord *a, const struct coord *b);

/* cfg NULL: the defaults. seed: the generator (any value). */
void coord_client_init(struct coord_client *cl, const struct coord_config *cfg, uint64_t seed);
void coord_client_free(struct coord_client *cl);
/* Serf's Client.Update: fold one RTT sample (ns) to `node` whose
 * coordinate is `other` into ours. -1 (nothing changed but the rejected
 * count) for an invalid coordinate or an RTT outside 0..10 s. */
int coord_client_update(struct coord_client *cl, const char *node, const struct coord *other,
                        int64_t rtt_ns);
/* Drop a peer's latency filter (it left). */
void coord_client_forget(struct coord_client *cl, const char *node);

/* The msgpack map alone, into buf[cap]: its length, or -1 when it does
 * not fit. */
int coord_encode(const struct coord *c, uint8_t *buf, size_t cap);
/* Decode the map at buf[0..len): 0, or -1 (mp_error() says why) when it is
 * not a coordinate of COORD_DIM finite components. Unknown keys are
 * skipped; a missing one keeps zero. *used (optional): bytes read. */
int coord_decode(const uint8_t *buf, size_t len, struct coord *c, size_t *used);
/* The ack payload: COORD_PING_VERSION then coord_encode's map. */
int coord_payload_encode(const struct coord *c, uint8_t *buf, size_t cap);
/* 0 and *c from a payload; -1 for another version or a bad coordinate. */
int coord_payload_decode(const uint8_t *buf, size_t len, struct coord *c);

#endif
