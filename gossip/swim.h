/*
 * gossip/swim.h — the SWIM failure detector and membership table, sans-I/O.
 *
 * Owns: the member table (one entry per node this node has heard of,
 * itself included), probing (direct ping, k indirect pings with nacks, TCP
 * fallback ping), suspicion with Lifeguard's dynamic timeouts, local health
 * awareness, refutation, dissemination through the transmit-limited
 * broadcast queue (gossip/bcast.h), push-pull state exchange, reconnection
 * attempts to failed nodes and reaping, as memberlist 0.2.2 and serf do.
 *
 * It never reads a clock, draws a random number or touches a socket: time is
 * the `now` argument (milliseconds, monotonic), randomness and output go
 * through struct swim_io. The agent (gossip/transport.c on libev) and the
 * simulator (tests/sim/) drive the same code: call swim_tick() at or after
 * the deadline it last returned, and feed every received datagram and TCP
 * stream to swim_recv_packet() / swim_stream_recv(). A driver that sets
 * merge_slice also calls swim_merge_step() while swim_merge_pending() says
 * so, one call per turn of its event loop: a remote push-pull state is
 * merged a slice at a time and never holds the loop (see "Push-pull
 * limits" below).
 *
 * Error convention: functions that can fail return -1 (or NULL) and write a
 * message into the caller's err buffer; everything else cannot fail except on
 * allocation failure, which aborts (the agent has nothing better to do).
 */
#ifndef RUMOR_GOSSIP_SWIM_H
#define RUMOR_GOSSIP_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/ident.h"
#include "gossip/wire.h"

struct swim;
struct coord;

/* Timing and fan-out knobs; swim_config_profile() fills memberlist's. */
struct swim_timing {
	int64_t probe_interval_ms;
	int64_t probe_timeout_ms;
	int indirect_checks;
	int suspicion_mult;
	int suspicion_max_timeout_mult;
	int retransmit_mult;
	int64_t gossip_interval_ms;
	int gossip_nodes;
	int64_t gossip_to_the_dead_ms;
	int64_t push_pull_interval_ms;
	int awareness_max_multiplier;
	int64_t reconnect_interval_ms; /* serf: retry a failed node */
	int64_t reconnect_timeout_ms;  /* serf: forget failed/left nodes */
	int64_t reap_interval_ms;
	size_t udp_budget; /* bytes a packet may carry (1400 minus encryption) */
	/* gossip packets go out as they are, never LZW-compressed (memberlist
	 * with EnableCompression off); default (false): compressed when that
	 * is smaller, and packed by compressed size (see swim.c gossip) */
	bool gossip_plain;
};

/* "lan", "wan" or "local" into *t; -1 for an unknown name. */
int swim_timing_profile(struct swim_timing *t, const char *name);

struct swim_config {
	const char *name;
	struct ml_addr addr; /* advertised address and gossip port */
	const uint8_t *meta; /* node meta (serf tags encoding); may be NULL */
	size_t meta_len;
	uint8_t vsn[6]; /* pmin pmax pcur dmin dmax dcur */
	struct swim_timing timing;
	/* Optional: an identity table shared with other views (the simulator
	 * passes one to all its nodes); it must outlive the swim. NULL: the
	 * swim keeps a private one. */
	struct swim_idents *idents;
	/* A push-pull whose header announces more members than this is refused
	 * before anything is read or allocated for them. 0: the default,
	 * SWIM_PUSH_PULL_MAX_NODES. */
	uint32_t push_pull_max_nodes;
	/* A push-pull state of more members than this is queued and merged by
	 * swim_merge_step(), by default this many at a time. 0: swim_stream_recv()
	 * merges every state before it returns (the simulator and the unit
	 * tests); the agent's transport uses GOSSIP_MERGE_SLICE. */
	uint32_t merge_slice;
	/* Optional: whether a member with this meta is a rumor agent, one that
	 * may be sent rumor-only messages (swim_broadcast_rumor); the agent
	 * passes tags_is_rumor. Asked once per identity a member takes, never
	 * per packet. NULL: every member is one, and rumor-only messages share
	 * the user queue (the simulator's all-rumor clusters). See "Mixed
	 * clusters" below. */
	bool (*is_rumor)(const uint8_t *meta, size_t len);
	/* Optional: whether a member with this meta is a rumor agent at all,
	 * KV store or not: one that takes table digests (swim.c, "Table
	 * repair"); the agent passes tags_is_rumor_build. NULL: every member
	 * is one. */
	bool (*is_rumor_agent)(const uint8_t *meta, size_t len);
	/* Serf's DisableCoordinates: no Vivaldi coordinate, no ack payload,
	 * no cache. Default (false): coordinates on, see "Coordinates". */
	bool disable_coordinates;
};

/*
 * Coordinates (Serf's ping delegate, gossip/coord.h). Every ack this node
 * sends to a ping carries its coordinate (version byte 1, then the msgpack
 * map), as Serf's AckPayload does, so a stock Serf agent learns it. When
 * the ack to one of our own *direct* probes arrives while the probe is
 * still in its direct stage (before probe_timeout, as memberlist's
 * probeNode calls NotifyPingComplete), the RTT (the ack's arrival minus
 * the ping's sending) and the peer's coordinate update ours, and the
 * peer's coordinate is cached until the member is reaped. Acks relayed by
 * indirect probes and TCP fallback acks carry no payload and count for
 * nothing, as in memberlist. The RTT is measured on the `now` given to
 * the core (whole milliseconds) unless the driver sets io.clock_us, a
 * finer monotonic clock read at the ping's sending and the ack's handling
 * (the agent does: loopback and LAN RTTs are well under a millisecond).
 * A payload that does not decode is counted (coord_bad_payloads) and
 * ignored; an RTT or coordinate Serf would reject is counted
 * (coord_rejected). The client's random seed is drawn from io.rand32 at
 * swim_new.
 */

/*
 * Push-pull limits. memberlist caps a push-pull only by its bytes
 * (maxPushStateBytes, 20 MiB = ML_PUSH_STATE_MAX); at about 70 bytes for a
 * member without tags that lets one stream name 300,000 members, and one
 * unauthenticated stream of 100,000 held an agent's loop for minutes. Real
 * pools are far smaller: rumor is benchmarked to 500-1,000 agents and its
 * simulator runs 10,000. 20,000 is twice the largest cluster we have run,
 * so no legitimate state is refused, and bounds what one stream can add to
 * the table. A larger pool raises it in swim_config.
 */
#define SWIM_PUSH_PULL_MAX_NODES 20000
/* A state of at most merge_slice members is merged at once (it is one
 * slice's work), even while others wait; a larger one is queued. At most
 * SWIM_MERGE_QUEUE_MAX states wait, holding at most SWIM_MERGE_QUEUE_BYTES
 * of their (decompressed) bytes; a push-pull that would go over either is
 * refused ("busy merging") and its sender tries again at its next
 * push-pull, as after any failed exchange. */
#define SWIM_MERGE_QUEUE_MAX 4
#define SWIM_MERGE_QUEUE_BYTES (2u * ML_PUSH_STATE_MAX)

enum swim_event_type {
	SWIM_EV_JOIN,    /* a node became alive (new, or back from dead/left) */
	SWIM_EV_UPDATE,  /* an alive node changed its meta */
	SWIM_EV_SUSPECT, /* a node became suspect */
	SWIM_EV_FAILED,  /* a node was declared dead */
	SWIM_EV_LEFT,    /* a node left gracefully */
	SWIM_EV_REAP,    /* a failed or left node was forgotten */
};

/*
 * One entry of this view's member table: 32 bytes, because a simulated
 * 10,000-node cluster holds 10^8 of them. What the node is (name, address,
 * protocol versions, meta) lives in a shared, immutable identity (m->id,
 * gossip/ident.h); the entry holds only this view's opinion of it. Entries
 * have stable addresses until the member is reaped; treat them as read-only.
 */
struct swim_member {
	const struct swim_ident *id; /* name, addr, vsn, meta */
	int64_t state_change;        /* ms, when state last changed */
	int64_t known_since;         /* ms, when it entered this node's table */
	uint32_t incarnation;
	uint32_t index; /* position in the probe order */
	uint32_t susp;  /* internal: 1 + slot of its active suspicion, or 0 */
	uint8_t state;  /* enum ml_state */
	uint8_t rumor;  /* 1: may be sent rumor-only messages (cfg.is_rumor) */
	uint8_t agent;  /* 1: a rumor agent, sent table digests (cfg.is_rumor_agent) */
};

/* How the core reaches the world. Every callback is required unless noted. */
struct swim_io {
	void *ctx;
	/* Send one datagram (already framed: compound/CRC; not encrypted). */
	void (*send)(void *ctx, const struct ml_addr *to, const uint8_t *pkt, size_t len);
	/* A uniformly random 32-bit number. */
	uint32_t (*rand32)(void *ctx);
	/* Open a TCP push-pull with `to`; the driver reports back through
	 * swim_stream_recv() on the reply. join: serf reconnect uses true. */
	void (*push_pull)(void *ctx, const struct ml_addr *to, const char *name, bool join);
	/* Optional: TCP fallback ping. Send `pkt` on a new stream to `to`,
	 * wait for an ack until `deadline`, then call swim_tcp_ping_done(). */
	void (*tcp_ping)(void *ctx, const struct ml_addr *to, uint32_t seq, const uint8_t *pkt,
	                 size_t len, int64_t deadline);
	/* Optional: membership events. */
	void (*event)(void *ctx, enum swim_event_type type, const struct swim_member *m);
	/* Optional: a user message (memberlist userMsg) arrived. */
	void (*user_msg)(void *ctx, const uint8_t *p, size_t len);
	/* Optional: the node name we use is claimed by another live address. */
	void (*conflict)(void *ctx, const struct swim_member *ours, const struct ml_addr *other);
	/* Optional: push-pull user state (serf's delegate LocalState): malloc'd
	 * bytes appended to our push-pull message, *len set; NULL for none. */
	uint8_t *(*local_state)(void *ctx, bool join, size_t *len);
	/* Optional: the remote push-pull user state (serf's MergeRemoteState),
	 * called after the remote nodes were merged. */
	void (*merge_state)(void *ctx, const uint8_t *p, size_t len, bool join);
	/* Optional: a monotonic clock in microseconds, used only to time a
	 * probe's round trip (see "Coordinates"); NULL: `now` * 1000. */
	int64_t (*clock_us)(void *ctx);
};

/*
 * Mixed clusters. A rumor-only message (swim_broadcast_rumor: the KV
 * store's replication) means nothing to a stock Serf agent, which logs
 * "unknown type" for each one. With cfg.is_rumor set, such messages wait in
 * their own queue and ride only packets to members it called rumor agents:
 * gossip, and the piggyback of pings, acks and nacks. A destination not in
 * the table, or whose meta said no, never gets one; its packet carries the
 * membership and serf messages only, and the rumor-only ones stay queued.
 * Their transmit count grows only with sends to rumor agents, and each
 * gossip round sends them to gossip_nodes rumor agents (topping up the
 * random picks with rumor agents), so they spread among rumor agents as
 * fast as in a cluster of rumor agents alone. Push-pull user state
 * (io.local_state) and swim_send_user carry serf's messages only.
 */

/* Counters for metrics and the simulator's load invariant. */
struct swim_stats {
	uint64_t packets_sent, bytes_sent;
	uint64_t packets_compressed; /* of packets_sent: gossip sent LZW-compressed */
	uint64_t packets_split;      /* gossip packets over the budget compressed, split in two */
	uint64_t packets_recv, bytes_recv;
	uint64_t bad_packets;
	uint64_t probes, probe_failures, indirect_probes, tcp_pings;
	uint64_t suspicions, refutations, deaths_declared;
	uint64_t late_wakeups;        /* swim_note_late calls that counted against health */
	uint64_t probes_inconclusive; /* of probe_failures: this node was starved, nobody accused */
	uint64_t cpu_wait_ms;         /* swim_note_run_delay's sum */
	uint64_t deaths_deferred;     /* suspicions run out while starved: waited longer */
	uint64_t broadcasts_dropped;  /* see swim_broadcast_queue_dropped() */
	uint64_t broadcasts_credited; /* queued alives heard back while crowded (swim.c) */
	uint64_t rumors_credited;     /* queued rumor-only messages heard back while crowded */
	uint64_t push_pulls;          /* push-pull states merged (either side, joins included) */
	uint64_t push_pulls_refused;  /* over push_pull_max_nodes, or the merge queue full */
	uint64_t replies_reused;      /* push-pull replies that reused a state (reply_state) */
	/* alive entries a push-pull taught us that were not rebroadcast: a
	 * fresh node's first state, and a state's news beyond the first
	 * SWIM_MERGE_NEWS (swim.c, push_pull_accept) */
	uint64_t merged_quietly;
	/* table repair (swim.c, "Table repair"): digests sent beside pings and
	 * received; received ones that differed from ours while both tables
	 * were settled; the push-pulls that started */
	uint64_t digests_sent, digests_recv, digests_differed, repairs;
	/* coordinates: updates applied; samples refused by the client (bad
	 * RTT or coordinate); ack payloads that did not decode */
	uint64_t coord_updates, coord_rejected, coord_bad_payloads;
};

/* Create a node; copies everything it keeps from cfg. Returns NULL with err. */
struct swim *swim_new(const struct swim_config *cfg, const struct swim_io *io, int64_t now,
                      char *err, size_t errlen);
void swim_free(struct swim *s);

/* Run everything due at `now`; returns the next deadline (ms). */
int64_t swim_tick(struct swim *s, int64_t now);
/* The deadline swim_tick() would return now, without running anything. */
int64_t swim_next_deadline(const struct swim *s);

/* A datagram arrived (decrypted by the driver). Bad bytes are counted and dropped. */
void swim_recv_packet(struct swim *s, int64_t now, const struct ml_addr *from, const uint8_t *buf,
                      size_t len);

/* Result of feeding a TCP stream to swim_stream_recv(). */
struct swim_stream_result {
	uint8_t type;   /* enum ml_type of the (inner) message */
	bool join;      /* push-pull: the remote side set Join */
	uint8_t *reply; /* bytes to write back (malloc'd, caller frees), or NULL */
	size_t reply_len;
	/* nonzero: a push-pull reply equal, byte for byte, to every other reply
	 * with this stamp (a state reused while crowded, see swim.c
	 * reply_state), so a driver may reuse what it made of the first one
	 * (gossip/transport.c keeps its compressed form); 0: made afresh */
	uint64_t reply_stamp;
	char error[300]; /* set when the call returns ML_BAD, or remote errMsg */
};

/*
 * Feed the bytes read so far on a TCP stream (decrypted, starting at the
 * message type byte). Returns ML_AGAIN when more bytes are needed, ML_BAD
 * when the stream is malformed or refused (res->error says why), or ML_OK
 * when a whole message was handled:
 *   push-pull: a state of at most merge_slice members (any state when
 *              merge_slice is 0) is merged and, if `initiator` is false,
 *              res->reply holds our state after the merge (join flag
 *              mirrored); a larger one is queued for swim_merge_step() and
 *              res->reply holds our state as it is before the merge
 *              (memberlist's order: sendLocalState, then mergeRemoteState);
 *   ping:      res->reply holds the ack;
 *   user:      delivered to io->user_msg;
 *   ack:       res->type = ML_ACK (a TCP ping answer);
 *   err:       res->error holds the remote error text, returns ML_BAD.
 * `initiator` says whether this node opened the stream (its reply is the
 * remote state to merge, not a request). With initiator and join, a remote
 * live node using our name fails the call ("node name ... in use").
 */
int swim_stream_recv(struct swim *s, int64_t now, const uint8_t *buf, size_t len, bool initiator,
                     struct swim_stream_result *res);

/*
 * Where a plain (not compressed) push-pull stream stopped being whole: a
 * driver reading a stream a chunk at a time keeps one per stream, zeroed
 * before the first call, and passes it with each longer prefix of the same
 * bytes, so that every member is decoded once however the stream arrives
 * (without it each call decodes from byte 0). Internal fields.
 */
struct swim_stream_scan {
	size_t start;   /* where the members begin (after the header) */
	size_t off;     /* bytes known well-formed: header and `nodes` members */
	uint32_t nodes; /* members decoded so far */
	uint32_t want;  /* members the header announced */
	uint32_t user_len;
	bool join;
};
/* swim_stream_recv() resuming from *scan (see above); scan may be NULL. */
int swim_stream_recv_scan(struct swim *s, int64_t now, const uint8_t *buf, size_t len,
                          bool initiator, struct swim_stream_scan *scan,
                          struct swim_stream_result *res);

/* True while accepted push-pull states wait in the merge queue. */
bool swim_merge_pending(const struct swim *s);
/* Merge up to `max` more members from the queue (0: merge_slice), oldest
 * state first; a state's user state goes to io->merge_state after its last
 * member. Returns swim_merge_pending() afterwards. */
bool swim_merge_step(struct swim *s, int64_t now, uint32_t max);

/* Our state as a push-pull stream message (malloc'd; *len set). */
uint8_t *swim_local_state_new(struct swim *s, int64_t now, bool join, size_t *len);

/* The TCP fallback ping for `seq` ended; acked says whether it reached the node. */
void swim_tcp_ping_done(struct swim *s, int64_t now, uint32_t seq, bool acked);

/* Change our meta (tags): bumps our incarnation and broadcasts it. */
void swim_set_meta(struct swim *s, int64_t now, const uint8_t *meta, size_t len);

/* Leave gracefully: broadcast our own dead message; stop probing. */
void swim_leave(struct swim *s, int64_t now);
/* True once the leave broadcast has been sent as often as it will be
 * (or nobody is left to tell). */
bool swim_leave_done(const struct swim *s);

/* Force a failed node into the left state (serf force-leave). 0, or -1 if unknown. */
int swim_force_leave(struct swim *s, int64_t now, const char *name, bool prune);

/* Queue a user message for piggybacking (serf-layer broadcasts); returns its
 * queue id (0 if it does not fit in a packet). */
uint64_t swim_broadcast_user(struct swim *s, const uint8_t *msg, size_t len);
/* Queue a rumor-only user message: like swim_broadcast_user, but only for
 * members cfg.is_rumor accepts (see "Mixed clusters"); returns its id. A
 * message named by key (key_len bytes; NULL: unnamed) replaces the queued
 * one of the same name: the KV store names each record's message by its
 * key, and only a key's newest version is worth sending. */
uint64_t swim_broadcast_rumor(struct swim *s, const void *key, size_t key_len, const uint8_t *msg,
                              size_t len);
/* A node heard back the rumor-only message named key that it holds already
 * (the KV store: a record whose version it stores). While more than 64
 * rumor-only messages wait, the queued one of that name counts as sent twice
 * more, as an alive heard back does (swim.c, "Crowded queue"). Returns
 * whether one was credited. */
bool swim_rumor_echo(struct swim *s, const void *key, size_t key_len);
/* True while the broadcast with this id (either kind) is still queued (not
 * yet sent as often as the retransmit limit says). */
bool swim_broadcast_pending(const struct swim *s, uint64_t id);
/* Send a user message straight to one address in its own packet (serf's
 * SendToAddress: query acks and responses); never a rumor-only one. */
void swim_send_user(struct swim *s, const struct ml_addr *to, const uint8_t *msg, size_t len);

/* Drop every queued broadcast (nothing is sent). For a driver that preloads
 * an already converged member table, e.g. the simulator's warm start, so
 * that the preload is not gossiped again. */
void swim_reset_broadcasts(struct swim *s);

size_t swim_member_count(const struct swim *s);
const struct swim_member *swim_member_at(const struct swim *s, size_t i);
const struct swim_member *swim_member_find(const struct swim *s, const char *name);
const struct swim_member *swim_self(const struct swim *s);
/* Members alive or suspect (memberlist's estNumNodes counts all known). */
size_t swim_num_alive(const struct swim *s);
int swim_health_score(const struct swim *s);
/* The driver ran late_ms after it meant to: a probe timeout or more counts
 * against local health (Lifeguard's awareness) and makes the probe in flight
 * inconclusive (see swim.c). */
void swim_note_late(struct swim *s, int64_t late_ms);
/* The process waited ms for a CPU since the last call (Linux's schedstat
 * run_delay; call it before swim_tick): a fifth of a probe timeout's worth
 * during a probe makes it inconclusive, since the last tick defers a
 * suspicion's end (see swim.c). */
void swim_note_run_delay(struct swim *s, int64_t ms);
/* Moves whenever a member is added or removed or changes state,
 * incarnation, address, version or meta: a caller that derives something
 * from all members (e.g. the servers among them) redoes it only when this
 * moved, not O(N) on every tick. */
uint64_t swim_members_gen(const struct swim *s);
const struct swim_stats *swim_stats(const struct swim *s);
/* Messages waiting in the broadcast queue; messages it dropped when full. */
size_t swim_broadcast_queue_len(const struct swim *s);
/* Whether more than SWIM_BCAST_BUSY (64) messages (member, Serf and rumor
 * ones: a storm of joins, or of the KV records new agents write) wait to be
 * sent; the transport then reads its socket at its own ticks (see
 * gossip/transport.c, udp_cb). */
bool swim_crowded(const struct swim *s);
/* The time between gossip rounds now: the profile's gossip interval, twice
 * that while squeezed, crowded and starved of the CPU within the last 10 s
 * (its rounds then reach twice the peers, and it wakes only at them: swim.c,
 * squeezed and crowd_stretch). */
int64_t swim_gossip_every_ms(const struct swim *s);
uint64_t swim_broadcast_queue_dropped(const struct swim *s);
const struct swim_timing *swim_timing(const struct swim *s);

/* This node's coordinate (owned by s, valid until the next call into s);
 * NULL when coordinates are disabled. */
const struct coord *swim_coord_self(const struct swim *s);
/* The cached coordinate of member `name` (this node's own for our name),
 * owned by s; NULL when disabled, unknown or not measured yet. */
const struct coord *swim_coord_of(const struct swim *s, const char *name);

/* memberlist's formulas (util.go), exposed for tests and the simulator. */
int64_t swim_suspicion_timeout_ms(int mult, size_t n, int64_t interval_ms);
int swim_retransmit_limit(int mult, size_t n);
int64_t swim_push_pull_scale_ms(int64_t interval_ms, size_t n);

const char *swim_state_name(uint8_t state);

#endif
