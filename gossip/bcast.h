/*
 * gossip/bcast.h — the transmit-limited broadcast queue (memberlist's
 * TransmitLimitedQueue), no I/O.
 *
 * Owns: copies of queued messages. Each message is piggybacked on outgoing
 * packets until it has been sent `limit` times (the limit is passed at each
 * fill, since it grows with the cluster); messages sent fewer times go
 * first, newer first among equals (memberlist's order, without its
 * longer-first tie-break). A message with a
 * name (a node name for alive/suspect/dead) replaces any queued message with
 * the same name and kind. The queue is bounded: past max_depth the oldest
 * messages that were sent most often are dropped.
 */
#ifndef RUMOR_GOSSIP_BCAST_H
#define RUMOR_GOSSIP_BCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bcast_item {
	uint64_t name_hash;       /* 0: unnamed, never invalidated */
	uint64_t id;              /* insertion order */
	struct bcast_item *hnext; /* name index chain */
	uint32_t pos[2];          /* places in the two heaps */
	int transmits;
	uint32_t len;
	uint8_t kind;  /* names are unique per kind */
	uint8_t msg[]; /* the message, stored inline */
};

/*
 * Two indexed binary heaps over the same items: heap[0] puts first the item
 * to send next (fewest transmits, then newest), heap[1] the item to drop
 * first (most transmits, then oldest). Named items are also chained in a
 * hash index, so push, fill, retire and invalidation are O(log n) per item
 * touched, whatever the queue depth (a 10,000-node join queues thousands).
 */
struct bcast_queue {
	struct bcast_item **heap[2];
	size_t n, cap;             /* items queued, heap capacity */
	struct bcast_item **names; /* hash buckets, names_cap a power of two */
	size_t names_cap;
	size_t max_depth;
	uint64_t next_id;
	uint64_t dropped;
};

void bcast_queue_create(struct bcast_queue *q, size_t max_depth);
void bcast_queue_destroy(struct bcast_queue *q);
/* Queue a copy of msg; returns its id. */
uint64_t bcast_queue_push(struct bcast_queue *q, uint8_t kind, const char *name, const uint8_t *msg,
                          size_t len);
/* The same, named by a hash (bcast_name_hash, bcast_key_hash; 0: unnamed). */
uint64_t bcast_queue_push_hashed(struct bcast_queue *q, uint8_t kind, uint64_t name_hash,
                                 const uint8_t *msg, size_t len);
/*
 * Pick messages that fit: each costs len + overhead of `budget`. Pointers to
 * the chosen messages go into out[] (at most max); each has its transmit
 * count raised by `sends` (the peers the packet goes to: one packet built
 * for a round's k peers is k transmits). They stay valid until the next
 * push or retire. Returns the count.
 */
size_t bcast_queue_fill(struct bcast_queue *q, int sends, size_t overhead, size_t budget,
                        const uint8_t **out, size_t *out_len, size_t max);
/* Drop the messages sent `limit` times; call once the packet is sent. */
void bcast_queue_retire(struct bcast_queue *q, int limit);
/*
 * Count n more transmits for the queued message with this name hash
 * (bcast_name_hash, bcast_key_hash) and kind, as if it had been sent n more
 * times; it is dropped once that reaches limit. Returns whether one was
 * queued. (A node that hears its news back from others spends less of its
 * own retransmissions on it: see swim.c, "Crowded queue".)
 */
bool bcast_queue_credit(struct bcast_queue *q, uint8_t kind, uint64_t name_hash, int n, int limit);
/* True while the message with this id is still queued. */
bool bcast_queue_contains(const struct bcast_queue *q, uint64_t id);
/* Drop everything and release the storage (used at leave to let our dead
 * message go first, and by swim_reset_broadcasts). */
void bcast_queue_clear(struct bcast_queue *q);
/* The name hash of a NUL-terminated name, and of len bytes (a KV key, which
 * may hold any byte); never 0. */
uint64_t bcast_name_hash(const char *name);
uint64_t bcast_key_hash(const void *key, size_t len);

#endif
