/*
 * gossip/swim.c — SWIM + Lifeguard as memberlist 0.2.2 runs it; see swim.h.
 *
 * Data flow. Every protocol period (probe_interval scaled by the local
 * health score) the next member in a shuffled round-robin order is pinged;
 * a ping to a suspect member travels with a suspect message in one compound
 * packet (Lifeguard's buddy system). No ack within probe_timeout: k random
 * alive members are asked to ping it for us (with nacks for peers speaking
 * protocol >= 4) and, for peers speaking >= 3, the driver tries a TCP ping.
 * No ack by the end of the period: the member becomes suspect. A suspicion
 * starts at max = suspicion_max_timeout_mult * min and shrinks toward min
 * as independent suspect messages about the same member arrive (Lifeguard's
 * LHA-suspicion); when it expires the member is declared dead. Alive,
 * suspect and dead messages ride piggyback on every ping, ack and gossip
 * packet until each was sent retransmit_mult * ceil(log10(n+1)) times.
 *
 * Departures from memberlist, and why:
 *  - One table holds what memberlist and serf keep apart: memberlist forgets
 *    a dead node after gossip_to_the_dead, serf keeps it as failed or left
 *    until reconnect_timeout. Here a dead or left entry older than
 *    gossip_to_the_dead is "forgotten" for the protocol (any incarnation of
 *    it is accepted again, it is not pushed in push-pull) but still listed,
 *    retried for reconnection (serf's reconnect) and reaped at
 *    reconnect_timeout.
 *  - The probe is a little state machine advanced by swim_tick() instead of
 *    a goroutine blocked on channels; the order of its steps is the same.
 *  - Push-pull is bounded in members (push_pull_max_nodes, checked at the
 *    header), decoded one member at a time (no array sized by the header),
 *    resumable across reads (swim_stream_scan), and a state larger than
 *    merge_slice is queued and merged by swim_merge_step() a slice at a
 *    time; memberlist decodes and merges any state in one go, on its own
 *    goroutine (swim.h, "Push-pull limits").
 *  - Coordinates (swim.h, "Coordinates") are Serf's ping delegate folded
 *    into the core: the peer cache is one pointer per member slot, freed
 *    with the slot at reap, instead of Serf's map by name.
 */
#include "gossip/swim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/bcast.h"
#include "gossip/coord.h"
#include "lib/cursor.h"
#include "lib/xalloc.h"

#define SWIM_MAX_RELAYS 256 /* indirect pings we relay at once */
#define SWIM_MAX_PARTS 64   /* messages per compound packet */
#define SWIM_NESTING_MAX 4  /* compound/compress nesting accepted */
#define SWIM_BCAST_DEPTH 8192
#define SWIM_HOUSEKEEPING_SLACK_MS 1000 /* see swim_next_deadline */
#define SWIM_SETTLE_COUNT 2             /* settle push-pulls after start, see settle() */
#define SWIM_SETTLE_QUIET_MS 1000       /* ...once the table stopped growing this long */
#define SWIM_SETTLE_MAX_MS 5000         /* ...or this long after it first grew */
#define SWIM_QUIET_MS 5000              /* a table unchanged this long is settled: see repair */
#define SWIM_REPAIR_MIN_MS 10000        /* repair push-pulls at most this often, then doubling */
#define SWIM_MERGE_NEWS 8               /* alive entries a push-pull's merge rebroadcasts */
#define SWIM_BCAST_BUSY 64              /* a queue this deep is crowded: alive_node, swim_crowded */
#define SWIM_REPLY_REUSE_MS 1000 /* a squeezed node's push-pull reply is reused: reply_state */
#define SWIM_CROWD_STRETCH 2 /* a squeezed node's rounds come this much less often: crowd_stretch */
#define SWIM_SQUEEZE_HOLD_MS 10000 /* a node starved this recently may be squeezed: squeezed() */
#define SWIM_PACK_MAX (8 * ML_UDP_MAX) /* uncompressed bytes one gossip packet packs */
#define SWIM_COMPRESS_MIN 256          /* smaller packets go plain: LZW seldom shrinks them */
#define SWIM_CHUNK_SHIFT 6             /* members per storage chunk: 64 (2 KiB) */
#define SWIM_CHUNK (1u << SWIM_CHUNK_SHIFT)

enum bcast_kind { BK_MEMBER = 1, BK_USER = 2 };

/* An accepted push-pull state waiting for swim_merge_step(). */
struct swim_merge {
	uint8_t *buf;      /* owned: the members' msgpack, then the user state */
	size_t len, off;   /* the next member starts at buf + off */
	uint32_t left;     /* members not merged yet */
	uint32_t user_len; /* the user state: the last user_len bytes */
	bool join;
	uint32_t news; /* alive entries it may still rebroadcast (push_pull_accept) */
	bool fresh;    /* a fresh node's first state: nothing rebroadcast */
	struct swim_merge *next;
};

struct swim_suspicion {
	struct swim_member *m; /* whose; m->susp points back here */
	int k;                 /* confirmations that bring the timeout to min */
	int n;                 /* confirmations so far */
	int64_t start, min, max;
	int64_t deadline;
	uint64_t confirmers[8]; /* name hashes, first is the original accuser */
	int nconfirmers;
};

struct swim_relay {
	uint32_t local_seq;
	uint32_t origin_seq;
	struct ml_addr origin;
	int origin_pmax; /* origin's protocol max, or -1: unknown */
	bool nack;
	int64_t deadline;
};

enum probe_stage { PROBE_IDLE, PROBE_DIRECT, PROBE_INDIRECT };

struct swim_probe {
	enum probe_stage stage;
	uint32_t seq;
	char *target; /* name (owned copy) */
	int64_t sent, timeout_at, end_at;
	int64_t sent_us; /* the RTT's start: io.clock_us, or sent * 1000 */
	int expected_nacks, nacks;
	bool tcp_pending;
	/* stats.late_wakeups and stats.cpu_wait_ms when it started (probe_failed) */
	uint64_t late_mark, wait_mark;
};

struct swim {
	struct swim_io io;
	struct swim_timing t;
	struct swim_member *self;

	struct swim_idents *idents; /* shared (cfg->idents) or own */
	bool own_idents;

	/* members: chunked storage, probe order and open-addressed name
	 * index of slots (see "member table") */
	struct swim_member **chunks;
	size_t chunks_cap;
	uint32_t nslots;
	uint32_t *free_slots;
	size_t nfree, free_cap;
	uint32_t *nodes; /* probe order: n slots */
	size_t n, cap;
	uint32_t *index; /* index_cap entries: IDX_EMPTY, IDX_TOMB or slot+1 */
	size_t index_cap, index_used;
	size_t probe_index;

	/* broadcasts: membership messages (alive, suspect, dead) in bq, user
	 * messages (serf's) in uq, rumor-only user messages (the KV store's)
	 * in rq when is_rumor is set, else in uq; packets take from bq
	 * first, as memberlist's getBroadcasts does, and from rq only when
	 * they go to a rumor agent (see "Mixed clusters" in swim.h) */
	struct bcast_queue bq, uq, rq;
	bool (*is_rumor)(const uint8_t *meta, size_t len);       /* cfg->is_rumor */
	bool (*is_rumor_agent)(const uint8_t *meta, size_t len); /* cfg->is_rumor_agent */
	uint32_t seq;
	int awareness;
	bool starved;           /* the driver's notes before this tick said so (swim_note_late) */
	int64_t tick_now;       /* the last swim_tick's now */
	int64_t squeezed_until; /* starved within SWIM_SQUEEZE_HOLD_MS before this: squeezed() */
	uint64_t members_gen;   /* swim_members_gen */
	bool left;
	uint64_t leave_bcast_id;

	struct swim_probe probe;
	struct swim_relay relays[SWIM_MAX_RELAYS];
	int nrelays;

	struct swim_suspicion *susps; /* active suspicions, unordered */
	size_t nsusps, susps_cap;

	int64_t next_probe, next_gossip, next_push_pull, next_reconnect, next_reap;
	/* settle push-pulls: growth of the table seen since the last one */
	int settle_left;
	size_t settle_n;
	int64_t settle_first, settle_last; /* 0: no growth pending */
	/* table repair (see "Table repair"): the digest of the table at
	 * members_gen dg_gen (UINT64_MAX: none yet), when members_gen was
	 * last seen to move, and when the next repair push-pull may start */
	uint64_t dg_gen, dg_sum, seen_gen;
	uint32_t dg_n;
	int64_t changed_at, next_repair, repair_wait;
	struct swim_stats stats;

	/* push-pull: the member cap, the slice, and the states waiting to be
	 * merged (oldest first; see swim_merge_step) */
	uint32_t pp_max, merge_slice;
	struct swim_merge *mq, *mq_tail;
	size_t mq_n, mq_bytes;
	/* while merging a push-pull: how many more alive entries it teaches us
	 * are rebroadcast, and whether it is a fresh node's first state, whose
	 * suspicions stay quiet too (push_pull_accept). Outside merges
	 * UINT32_MAX and false: gossip is always passed on */
	uint32_t merge_news;
	bool merge_fresh;
	bool merging; /* inside merge_members: news from a push-pull, not gossip */
	/* the last push-pull reply, kept only while crowded (reply_state): its
	 * bytes, when it was made, its join flag, our incarnation then, and
	 * its stamp (reply_seq counts stamps) */
	uint8_t *reply_buf;
	size_t reply_len;
	int64_t reply_at;
	bool reply_join;
	uint32_t reply_inc;
	uint64_t reply_stamp, reply_seq;

	/* outgoing packet and one encoded message, bufcap bytes each (the
	 * UDP budget plus room for framing: not 64 KiB, which a simulator
	 * running thousands of nodes would pay per node) */
	uint8_t *pkt, *msgbuf;
	size_t bufcap;
	/* gossip packing: the last compressed packet's ratio, uncompressed to
	 * compressed size, in hundredths (100 until one was compressed) */
	uint32_t zratio;

	/* coordinates (NULL when disabled): this node's Vivaldi client, and
	 * the last coordinate each member answered a direct probe with,
	 * indexed by member slot (coords_cap slots, NULL: none yet) */
	struct coord_client *cc;
	struct coord **coords;
	size_t coords_cap;
};

#define IDX_EMPTY 0u
#define IDX_TOMB UINT32_MAX

/* ---------------------------------------------------------------- util */

static uint64_t name_hash(const char *s)
{
	return bcast_name_hash(s); /* FNV-1a, the broadcast queue's name hash */
}

/* snprintf(dst, cap, "%s", src) without the formatting machinery: names
 * are copied for every message and push-pull entry (7% of a large
 * simulation's time went to snprintf). Truncates like snprintf. */
static void copy_name(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static uint32_t rnd(struct swim *s, uint32_t n)
{
	return n == 0 ? 0 : s->io.rand32(s->io.ctx) % n;
}

const char *swim_state_name(uint8_t state)
{
	switch (state) {
	case ML_STATE_ALIVE:
		return "alive";
	case ML_STATE_SUSPECT:
		return "suspect";
	case ML_STATE_DEAD:
		return "dead";
	case ML_STATE_LEFT:
		return "left";
	}
	return "unknown";
}

int swim_timing_profile(struct swim_timing *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	t->indirect_checks = 3;
	t->suspicion_max_timeout_mult = 6;
	t->awareness_max_multiplier = 8;
	t->reconnect_interval_ms = 30000;
	t->reconnect_timeout_ms = 72LL * 3600 * 1000;
	t->reap_interval_ms = 15000;
	t->udp_budget = ML_UDP_MAX;
	if (strcmp(name, "lan") == 0) {
		t->probe_interval_ms = 1000;
		t->probe_timeout_ms = 500;
		t->suspicion_mult = 4;
		t->retransmit_mult = 4;
		t->gossip_interval_ms = 200;
		t->gossip_nodes = 3;
		t->gossip_to_the_dead_ms = 30000;
		t->push_pull_interval_ms = 30000;
	} else if (strcmp(name, "wan") == 0) {
		t->probe_interval_ms = 5000;
		t->probe_timeout_ms = 3000;
		t->suspicion_mult = 6;
		t->retransmit_mult = 4;
		t->gossip_interval_ms = 500;
		t->gossip_nodes = 4;
		t->gossip_to_the_dead_ms = 60000;
		t->push_pull_interval_ms = 60000;
	} else if (strcmp(name, "local") == 0) {
		t->probe_interval_ms = 1000;
		t->probe_timeout_ms = 200;
		t->indirect_checks = 1;
		t->suspicion_mult = 3;
		t->retransmit_mult = 2;
		t->gossip_interval_ms = 100;
		t->gossip_nodes = 3;
		t->gossip_to_the_dead_ms = 15000;
		t->push_pull_interval_ms = 15000;
	} else {
		return -1;
	}
	return 0;
}

int64_t swim_suspicion_timeout_ms(int mult, size_t n, int64_t interval_ms)
{
	double scale = log10((double)(n < 1 ? 1 : n));
	if (scale < 1)
		scale = 1;
	/* memberlist truncates to milliseconds the same way */
	return (int64_t)((double)mult * scale * 1000.0) * interval_ms / 1000;
}

int swim_retransmit_limit(int mult, size_t n)
{
	return mult * (int)ceil(log10((double)n + 1.0));
}

int64_t swim_push_pull_scale_ms(int64_t interval_ms, size_t n)
{
	if (n <= 32)
		return interval_ms;
	double mult = ceil(log2((double)n) - log2(32.0)) + 1.0;
	return (int64_t)(mult * (double)interval_ms);
}

/* ------------------------------------------------------- member table */

/*
 * Members live in chunks of SWIM_CHUNK entries (stable addresses, no
 * per-member malloc header) and are named by a 32-bit slot. The probe order
 * and the name index hold slots, not pointers: 4 bytes each instead of 8.
 * The slot of member m is s->nodes[m->index].
 */
static struct swim_member *at_slot(const struct swim *s, uint32_t slot)
{
	return &s->chunks[slot >> SWIM_CHUNK_SHIFT][slot & (SWIM_CHUNK - 1)];
}

static struct swim_member *node_at(const struct swim *s, size_t i)
{
	return at_slot(s, s->nodes[i]);
}

static size_t index_slot(const struct swim *s, const char *name)
{
	size_t mask = s->index_cap - 1;
	size_t i = name_hash(name) & mask;
	size_t tomb = (size_t)-1;
	for (;;) {
		uint32_t e = s->index[i];
		if (e == IDX_EMPTY)
			return tomb != (size_t)-1 ? tomb : i;
		if (e == IDX_TOMB) {
			if (tomb == (size_t)-1)
				tomb = i;
		} else if (strcmp(at_slot(s, e - 1)->id->name, name) == 0) {
			return i;
		}
		i = (i + 1) & mask;
	}
}

static struct swim_member *member_get(const struct swim *s, const char *name)
{
	size_t mask = s->index_cap - 1;
	size_t i = name_hash(name) & mask;
	for (;;) {
		uint32_t e = s->index[i];
		if (e == IDX_EMPTY)
			return NULL;
		if (e != IDX_TOMB) {
			struct swim_member *m = at_slot(s, e - 1);
			if (strcmp(m->id->name, name) == 0)
				return m;
		}
		i = (i + 1) & mask;
	}
}

/* Called when the index is 3/4 full of entries and tombstones: rehash
 * without the tombstones, doubling unless they were most of it. */
static void index_rebuild(struct swim *s)
{
	size_t cap = s->index_cap ? s->index_cap : 64;
	if ((s->n + 1) * 2 > cap)
		cap *= 2;
	free(s->index);
	s->index_cap = cap;
	s->index = xcalloc(cap, sizeof(*s->index));
	s->index_used = 0;
	for (size_t i = 0; i < s->n; i++) {
		s->index[index_slot(s, node_at(s, i)->id->name)] = s->nodes[i] + 1;
		s->index_used++;
	}
}

static uint32_t slot_alloc(struct swim *s)
{
	if (s->nfree > 0)
		return s->free_slots[--s->nfree];
	if ((s->nslots & (SWIM_CHUNK - 1)) == 0) {
		size_t c = s->nslots >> SWIM_CHUNK_SHIFT;
		if (c == s->chunks_cap) {
			s->chunks_cap = s->chunks_cap ? s->chunks_cap * 2 : 4;
			s->chunks = realloc(s->chunks, s->chunks_cap * sizeof(*s->chunks));
			if (s->chunks == NULL)
				abort();
		}
		s->chunks[c] = xcalloc(SWIM_CHUNK, sizeof(struct swim_member));
	}
	return s->nslots++;
}

static void slot_release(struct swim *s, uint32_t slot)
{
	if (s->nfree == s->free_cap) {
		s->free_cap = s->free_cap ? s->free_cap * 2 : 16;
		s->free_slots = realloc(s->free_slots, s->free_cap * sizeof(*s->free_slots));
		if (s->free_slots == NULL)
			abort();
	}
	s->free_slots[s->nfree++] = slot;
	memset(at_slot(s, slot), 0, sizeof(struct swim_member));
}

/*
 * Whether a member with this meta may be sent rumor-only messages
 * (cfg.is_rumor) and table digests (cfg.is_rumor_agent): asked of the
 * driver once per identity (at add and at a meta change), so that building a
 * packet reads one byte instead of decoding tags. No callback: all are (the
 * core without a driver's opinion changes nothing).
 */
static void classify(const struct swim *s, struct swim_member *m, const uint8_t *meta,
                     size_t meta_len)
{
	m->rumor = s->is_rumor == NULL || s->is_rumor(meta, meta_len);
	m->agent = s->is_rumor_agent == NULL || s->is_rumor_agent(meta, meta_len);
}

/* Insert at a random position of the probe order (SWIM §4.3), as dead. */
static struct swim_member *member_add(struct swim *s, const char *name, const struct ml_addr *addr,
                                      const uint8_t *vsn, const uint8_t *meta, size_t meta_len)
{
	if ((s->index_used + 1) * 4 > s->index_cap * 3)
		index_rebuild(s);
	uint32_t slot = slot_alloc(s);
	struct swim_member *m = at_slot(s, slot);
	s->members_gen++;
	m->id = swim_ident_get(s->idents, name, addr, vsn, meta, meta_len);
	m->state = ML_STATE_DEAD;
	classify(s, m, meta, meta_len);
	size_t pos = index_slot(s, name);
	if (s->index[pos] == IDX_EMPTY)
		s->index_used++;
	s->index[pos] = slot + 1;
	if (s->n == s->cap) {
		/* grow by half: at 10^8 entries the slack is memory */
		s->cap = s->cap ? s->cap + s->cap / 2 : 16;
		s->nodes = realloc(s->nodes, s->cap * sizeof(*s->nodes));
		if (s->nodes == NULL)
			abort();
	}
	size_t off = rnd(s, (uint32_t)s->n + 1);
	if (off < s->n) {
		s->nodes[s->n] = s->nodes[off];
		node_at(s, s->n)->index = (uint32_t)s->n;
	}
	s->nodes[off] = slot;
	m->index = (uint32_t)off;
	s->n++;
	return m;
}

static bool meta_equal(const struct swim_member *m, const uint8_t *meta, size_t len)
{
	return m->id->meta_len == len && (len == 0 || memcmp(m->id->meta, meta, len) == 0);
}

/* The member's identity becomes (its name, addr, vsn, meta). */
static void member_set_ident(struct swim *s, struct swim_member *m, const struct ml_addr *addr,
                             const uint8_t *vsn, const uint8_t *meta, size_t meta_len)
{
	const struct swim_ident *old = m->id;
	if (ml_addr_equal(&old->addr, addr) && memcmp(old->vsn, vsn, 6) == 0 &&
	    meta_equal(m, meta, meta_len))
		return; /* the usual case: nothing changed, no hashing */
	m->id = swim_ident_get(s->idents, old->name, addr, vsn, meta, meta_len);
	swim_ident_put(s->idents, old);
	classify(s, m, meta, meta_len);
	s->members_gen++;
}

static struct swim_suspicion *susp_of(const struct swim *s, const struct swim_member *m)
{
	return m->susp ? &s->susps[m->susp - 1] : NULL;
}

static void suspicion_clear(struct swim *s, struct swim_member *m)
{
	if (m->susp == 0)
		return;
	size_t i = m->susp - 1, last = --s->nsusps;
	if (i != last) {
		s->susps[i] = s->susps[last];
		s->susps[i].m->susp = (uint32_t)i + 1;
	}
	m->susp = 0;
}

/* Serf's eraseNode: a reaped member's cached coordinate and latency
 * filter go with it (a node coming back later starts afresh). */
static void coord_forget(struct swim *s, uint32_t slot, const char *name)
{
	if (s->cc == NULL)
		return;
	coord_client_forget(s->cc, name);
	if (slot < s->coords_cap) {
		free(s->coords[slot]);
		s->coords[slot] = NULL;
	}
}

static void member_remove(struct swim *s, struct swim_member *m)
{
	s->members_gen++;
	suspicion_clear(s, m);
	s->index[index_slot(s, m->id->name)] = IDX_TOMB;
	uint32_t i = m->index, slot = s->nodes[i];
	s->nodes[i] = s->nodes[s->n - 1];
	node_at(s, i)->index = i;
	s->n--;
	if (s->probe_index > s->n)
		s->probe_index = s->n;
	coord_forget(s, slot, m->id->name);
	swim_ident_put(s->idents, m->id);
	slot_release(s, slot);
}

static void emit(struct swim *s, enum swim_event_type type, const struct swim_member *m)
{
	if (s->io.event != NULL)
		s->io.event(s->io.ctx, type, m);
}

/* A dead/left entry past gossip_to_the_dead is forgotten by the protocol. */
static bool member_forgotten(const struct swim *s, const struct swim_member *m, int64_t now)
{
	return (m->state == ML_STATE_DEAD || m->state == ML_STATE_LEFT) &&
	       now - m->state_change > s->t.gossip_to_the_dead_ms;
}

/* ---------------------------------------------------------- sending */

static int retransmit_limit(const struct swim *s)
{
	return swim_retransmit_limit(s->t.retransmit_mult, s->n);
}

/*
 * "Crowded queue" (alive_node): a message heard back from others counts as
 * two more sends of the queued copy of that name (key, len bytes), while q
 * holds more than SWIM_BCAST_BUSY. Whether one was credited.
 */
static bool credit_echo(struct swim *s, struct bcast_queue *q, uint8_t kind, const void *key,
                        size_t len)
{
	return q->n > SWIM_BCAST_BUSY &&
	       bcast_queue_credit(q, kind, bcast_key_hash(key, len), 2, retransmit_limit(s));
}

static void raw_send(struct swim *s, const struct ml_addr *to, const uint8_t *msg, size_t len,
                     uint8_t pmax)
{
	const uint8_t *out = msg;
	size_t outlen = len;
	uint8_t crcbuf[ML_UDP_RECV_MAX];
	if (pmax >= 5) {
		int r = ml_crc_wrap(crcbuf, sizeof(crcbuf), msg, len);
		if (r > 0) {
			out = crcbuf;
			outlen = (size_t)r;
		}
	}
	s->stats.packets_sent++;
	s->stats.bytes_sent += outlen;
	s->io.send(s->io.ctx, to, out, outlen);
}

static uint8_t pmax_of(const struct swim *s, const struct ml_addr *to)
{
	for (size_t i = 0; i < s->n; i++)
		if (ml_addr_equal(&node_at(s, i)->id->addr, to))
			return node_at(s, i)->id->vsn[1];
	return 0;
}

/* The member `name` if it lives at `to`, else NULL: a hash lookup instead
 * of a scan of the table by address, which cost O(n) for every ack sent. */
static const struct swim_member *member_at(const struct swim *s, const char *name,
                                           const struct ml_addr *to)
{
	if (name == NULL || name[0] == '\0')
		return NULL;
	const struct swim_member *m = member_get(s, name);
	return m != NULL && ml_addr_equal(&m->id->addr, to) ? m : NULL;
}

/* The protocol max of the member `name` if it lives at `to`, else -1 (look
 * it up by address). */
static int pmax_named(const struct swim *s, const char *name, const struct ml_addr *to)
{
	const struct swim_member *m = member_at(s, name, to);
	return m != NULL ? m->id->vsn[1] : -1;
}

/* Take what fits of queue q into parts[k..max), each counted as sent
 * `sends` times; returns the new count. */
static size_t fill_from(struct bcast_queue *q, int sends, size_t budget, const uint8_t **parts,
                        size_t *lens, size_t k, size_t max)
{
	size_t used = 0;
	for (size_t i = 0; i < k; i++)
		used += lens[i] + 2;
	if (used >= budget || k >= max || q->n == 0)
		return k;
	return k + bcast_queue_fill(q, sends, 2, budget - used, parts + k, lens + k, max - k);
}

/*
 * Choose the broadcasts for one packet with `budget` bytes free: membership
 * messages first, then user messages in the space left (memberlist fills
 * from its own queue, then asks the delegate, serf, for the rest). Under
 * churn the membership news goes out first; user messages wait for room.
 * Rumor-only messages go last, and only when `rumor` says the packet is for
 * a rumor agent: they are never taken, so never counted as sent, for any
 * other destination. `sends`: the peers the packet goes to (see gossip).
 * Call retire_broadcasts once the packet is sent.
 */
static size_t fill_broadcasts(struct swim *s, size_t budget, const uint8_t **parts, size_t *lens,
                              size_t max, bool rumor, int sends)
{
	size_t k = fill_from(&s->bq, sends, budget, parts, lens, 0, max);
	k = fill_from(&s->uq, sends, budget, parts, lens, k, max);
	if (rumor)
		k = fill_from(&s->rq, sends, budget, parts, lens, k, max);
	return k;
}

static void retire_broadcasts(struct swim *s)
{
	bcast_queue_retire(&s->bq, retransmit_limit(s));
	bcast_queue_retire(&s->uq, retransmit_limit(s));
	bcast_queue_retire(&s->rq, retransmit_limit(s));
}

static size_t broadcasts_queued(const struct swim *s)
{
	return s->bq.n + s->uq.n + s->rq.n;
}

/*
 * Whether a packet to `to` may carry rumor-only messages: only to a member
 * of the table at that address that is a rumor agent. An address we do not
 * know (a ping from a node not merged yet) is not one, until its alive
 * message says otherwise. Scans the table, so only while rq holds messages.
 */
static bool rumor_at(const struct swim *s, const struct ml_addr *to)
{
	if (s->rq.n == 0)
		return false;
	for (size_t i = 0; i < s->n; i++) {
		const struct swim_member *m = node_at(s, i);
		if (m != s->self && ml_addr_equal(&m->id->addr, to))
			return m->rumor != 0;
	}
	return false;
}

/*
 * Send the nmsgs encoded messages in msgs (1 or 2) with as many broadcasts
 * as fit piggyback, as memberlist's sendMsg does. peer: the receiver's
 * member entry when the caller knows it (its protocol max and whether it
 * is a rumor agent), NULL to look both up by address (a scan of the
 * table); pmax: used when peer is NULL and pmax >= 0.
 */
static void send_parts_with_piggyback(struct swim *s, const struct ml_addr *to,
                                      const struct ml_slice *msgs, int nmsgs,
                                      const struct swim_member *peer, int pmax)
{
	uint8_t pm = peer != NULL ? peer->id->vsn[1] : pmax >= 0 ? (uint8_t)pmax : pmax_of(s, to);
	bool rumor = peer != NULL ? peer->rumor != 0 : rumor_at(s, to);
	/* the compound's type and count bytes and each message's own length
	 * field (memberlist leaves that last one out for its one message and
	 * may go 2 bytes over its budget) */
	size_t budget = s->t.udp_budget, used = 2;
	for (int i = 0; i < nmsgs; i++)
		used += msgs[i].len + 2;
	size_t avail = budget > used ? budget - used : 0;
	const uint8_t *parts[SWIM_MAX_PARTS];
	size_t lens[SWIM_MAX_PARTS];
	size_t k = fill_broadcasts(s, avail, parts, lens, SWIM_MAX_PARTS - (size_t)nmsgs, rumor, 1);
	if (k == 0 && nmsgs == 1) {
		raw_send(s, to, msgs[0].p, msgs[0].len, pm);
		return;
	}
	struct ml_slice sl[SWIM_MAX_PARTS];
	for (int i = 0; i < nmsgs; i++)
		sl[i] = msgs[i];
	for (size_t i = 0; i < k; i++) {
		sl[(size_t)nmsgs + i].p = parts[i];
		sl[(size_t)nmsgs + i].len = lens[i];
	}
	int r = ml_compound_encode(s->pkt, s->bufcap, sl, (int)k + nmsgs);
	if (r > 0)
		raw_send(s, to, s->pkt, (size_t)r, pm);
	else
		raw_send(s, to, msgs[0].p, msgs[0].len, pm);
	if (k > 0)
		retire_broadcasts(s);
}

/* One encoded message: see send_parts_with_piggyback. */
static void send_with_piggyback(struct swim *s, const struct ml_addr *to, const uint8_t *msg,
                                size_t len, const struct swim_member *peer, int pmax)
{
	struct ml_slice m = {msg, len};
	send_parts_with_piggyback(s, to, &m, 1, peer, pmax);
}

/*
 * Table repair. Gossip retires a message after a bounded number of sends,
 * so in a join storm a member now and then misses one (a late joiner's
 * alive, a refutation) and keeps a stale row until a push-pull, every 3
 * minutes at N = 1,000 (swim_push_pull_scale_ms). To find such a miss
 * sooner, a node whose table has not changed for SWIM_QUIET_MS ("settled")
 * sends, beside each direct ping to a rumor agent, a digest of its table:
 * how many members are alive or suspect, and the sum of a hash of each
 * one's (name, incarnation). A settled receiver with a different digest
 * holds a different table that gossip has stopped repairing, and opens a
 * push-pull with the sender, which fixes both sides. Cost in a settled
 * cluster: ~40 bytes per probe; a push-pull only where tables differ, at
 * most one per SWIM_REPAIR_MIN_MS per node, doubling (up to the regular
 * push-pull interval) while the table stays unchanged, so a difference a
 * push-pull cannot settle costs no more than the regular exchange. A node
 * still changing sends nothing and ignores digests: during a storm the
 * tables differ anyway, and gossip is still at work. Memberlist has no such
 * exchange; stock Serf agents are never sent one (the member's tags say
 * whether it is a rumor agent).
 */
static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Note when the table last moved (members_gen). */
static void note_gen(struct swim *s, int64_t now)
{
	if (s->members_gen == s->seen_gen)
		return;
	s->seen_gen = s->members_gen;
	s->changed_at = now;
	s->repair_wait = SWIM_REPAIR_MIN_MS;
}

static bool settled(struct swim *s, int64_t now)
{
	note_gen(s, now);
	return !s->left && now - s->changed_at >= SWIM_QUIET_MS;
}

static void table_digest(struct swim *s, uint64_t *sum, uint32_t *n)
{
	if (s->dg_gen != s->members_gen) {
		uint64_t acc = 0;
		uint32_t k = 0;
		for (size_t i = 0; i < s->n; i++) {
			const struct swim_member *m = node_at(s, i);
			if (m->state != ML_STATE_ALIVE && m->state != ML_STATE_SUSPECT)
				continue;
			acc += mix64(name_hash(m->id->name) ^ ((uint64_t)m->incarnation << 1));
			k++;
		}
		s->dg_sum = acc;
		s->dg_n = k;
		s->dg_gen = s->members_gen;
	}
	*sum = s->dg_sum;
	*n = s->dg_n;
}

/* Our digest message into buf; its length, or 0 when we send none now. */
static size_t encode_digest(struct swim *s, int64_t now, uint8_t *buf, size_t cap)
{
	if (!settled(s, now))
		return 0;
	struct ml_digest d;
	uint64_t sum;
	table_digest(s, &sum, &d.members);
	d.digest_len = 8;
	be64_put(d.digest, sum);
	copy_name(d.node, sizeof(d.node), s->self->id->name);
	int r = ml_encode_digest(buf, cap, &d);
	if (r <= 0)
		return 0;
	s->stats.digests_sent++;
	return (size_t)r;
}

static void handle_digest(struct swim *s, int64_t now, const struct ml_digest *d)
{
	s->stats.digests_recv++;
	if (!settled(s, now))
		return;
	uint64_t sum;
	uint32_t n;
	table_digest(s, &sum, &n);
	if (sum == be64_get(d->digest) && n == d->members)
		return;
	s->stats.digests_differed++;
	if (now < s->next_repair || s->io.push_pull == NULL)
		return;
	struct swim_member *m = member_get(s, d->node);
	if (m == NULL || m == s->self || m->state != ML_STATE_ALIVE || !m->agent)
		return;
	s->next_repair = now + s->repair_wait;
	int64_t cap = swim_push_pull_scale_ms(s->t.push_pull_interval_ms, s->n);
	s->repair_wait = s->repair_wait * 2 < cap ? s->repair_wait * 2 : cap;
	s->stats.repairs++;
	s->io.push_pull(s->io.ctx, &m->id->addr, m->id->name, false);
}

static void broadcast_msg(struct swim *s, const char *name, const uint8_t *msg, size_t len)
{
	bcast_queue_push(&s->bq, BK_MEMBER, name, msg, len);
}

static void encode_alive_of(const struct swim_member *m, struct ml_alive *a)
{
	memset(a, 0, sizeof(*a));
	a->incarnation = m->incarnation;
	copy_name(a->node, sizeof(a->node), m->id->name);
	a->addr = m->id->addr;
	a->meta_len = m->id->meta_len;
	if (m->id->meta_len)
		memcpy(a->meta, m->id->meta, m->id->meta_len);
	memcpy(a->vsn, m->id->vsn, 6);
	a->has_vsn = true;
}

static void broadcast_alive(struct swim *s, const struct swim_member *m)
{
	static struct ml_alive a; /* large; single-threaded */
	encode_alive_of(m, &a);
	int r = ml_encode_alive(s->msgbuf, s->bufcap, &a);
	if (r > 0)
		broadcast_msg(s, m->id->name, s->msgbuf, (size_t)r);
}

static void broadcast_suspect(struct swim *s, uint8_t type, uint32_t inc, const char *node,
                              const char *from)
{
	struct ml_suspect m;
	memset(&m, 0, sizeof(m));
	m.incarnation = inc;
	copy_name(m.node, sizeof(m.node), node);
	copy_name(m.from, sizeof(m.from), from);
	int r = type == ML_DEAD ? ml_encode_dead(s->msgbuf, s->bufcap, &m)
	                        : ml_encode_suspect(s->msgbuf, s->bufcap, &m);
	if (r > 0) {
		uint64_t id = bcast_queue_push(&s->bq, BK_MEMBER, node, s->msgbuf, (size_t)r);
		if (type == ML_DEAD && strcmp(node, s->self->id->name) == 0)
			s->leave_bcast_id = id;
	}
}

/* ------------------------------------------------- state transitions */

static void refute(struct swim *s, uint32_t accused)
{
	uint32_t inc = s->self->incarnation + 1;
	if (accused >= inc)
		inc = accused + 1;
	s->self->incarnation = inc;
	s->members_gen++;
	if (s->awareness < s->t.awareness_max_multiplier - 1)
		s->awareness++;
	s->stats.refutations++;
	broadcast_alive(s, s->self);
}

static void dead_node(struct swim *s, int64_t now, const struct ml_suspect *d);

static void alive_node(struct swim *s, int64_t now, const struct ml_alive *a, bool bootstrap)
{
	if (s->left && strcmp(a->node, s->self->id->name) == 0)
		return;
	if (a->node[0] == '\0')
		return;
	struct swim_member *m = member_get(s, a->node);
	bool updates_node = false;
	bool is_new = false;
	if (m == NULL) {
		static const uint8_t novsn[6];
		m = member_add(s, a->node, &a->addr, a->has_vsn ? a->vsn : novsn, a->meta,
		               a->meta_len);
		m->state_change = m->known_since = now;
		s->members_gen++;
		is_new = true;
	} else if (member_forgotten(s, m, now)) {
		/* memberlist would have dropped it: take it as new */
		updates_node = true;
		m->known_since = now;
	} else if (!ml_addr_equal(&m->id->addr, &a->addr)) {
		if (m->state == ML_STATE_LEFT ||
		    (m->state == ML_STATE_DEAD &&
		     now - m->state_change > s->t.gossip_to_the_dead_ms)) {
			updates_node = true;
		} else {
			if (m == s->self && s->io.conflict != NULL)
				s->io.conflict(s->io.ctx, m, &a->addr);
			return;
		}
	}
	bool is_local = m == s->self;
	if (!is_new && a->incarnation <= m->incarnation && !is_local && !updates_node) {
		/*
		 * Crowded queue: gossip brought back news we already have. With
		 * more than SWIM_BCAST_BUSY member messages waiting (a join
		 * storm: a thousand alives, each to be sent 4 x ceil(log10(N+1))
		 * times), our queued copy of it counts as sent twice more, so
		 * that news everyone is repeating to us goes out less and news
		 * still spreading goes first. A shorter queue sends everything
		 * its full count, as memberlist does.
		 */
		if (!s->merging && a->incarnation == m->incarnation && m->state == ML_STATE_ALIVE &&
		    credit_echo(s, &s->bq, BK_MEMBER, a->node, strlen(a->node)))
			s->stats.broadcasts_credited++;
		return;
	}
	if (is_local && a->incarnation < m->incarnation)
		return;
	if (!is_new || is_local)
		suspicion_clear(s, m);
	uint8_t old_state = is_new ? ML_STATE_DEAD : m->state;
	bool meta_changed = !meta_equal(m, a->meta, a->meta_len);
	if (!bootstrap && is_local) {
		if (a->incarnation == m->incarnation && !meta_changed &&
		    (!a->has_vsn || memcmp(a->vsn, m->id->vsn, 6) == 0))
			return;
		refute(s, a->incarnation);
		return;
	}
	/* rebroadcast what we learned, as it arrived (a push-pull's merge
	 * passes on only its first news: see push_pull_accept) */
	if (s->merge_news > 0 && !s->merge_fresh) {
		static struct ml_alive copy;
		copy = *a;
		int r = ml_encode_alive(s->msgbuf, s->bufcap, &copy);
		if (r > 0)
			broadcast_msg(s, a->node, s->msgbuf, (size_t)r);
		if (s->merge_news != UINT32_MAX)
			s->merge_news--;
	} else {
		s->stats.merged_quietly++;
	}
	if (m->incarnation != a->incarnation)
		s->members_gen++;
	m->incarnation = a->incarnation;
	member_set_ident(s, m, &a->addr, a->has_vsn ? a->vsn : m->id->vsn, a->meta, a->meta_len);
	if (m->state != ML_STATE_ALIVE) {
		m->state = ML_STATE_ALIVE;
		m->state_change = now;
		s->members_gen++;
	}
	if (old_state == ML_STATE_DEAD || old_state == ML_STATE_LEFT)
		emit(s, SWIM_EV_JOIN, m);
	else if (meta_changed)
		emit(s, SWIM_EV_UPDATE, m);
}

static int64_t suspicion_remaining(const struct swim_suspicion *sp)
{
	/* memberlist: timeout = max - (max-min)*log(n+1)/log(k+1), floored at min */
	if (sp->k < 1)
		return sp->min;
	double frac = log((double)sp->n + 1.0) / log((double)sp->k + 1.0);
	int64_t raw = sp->max - (int64_t)(frac * (double)(sp->max - sp->min));
	return raw < sp->min ? sp->min : raw;
}

static bool suspicion_confirm(struct swim_suspicion *sp, const char *from)
{
	if (sp->n >= sp->k)
		return false;
	uint64_t h = name_hash(from);
	for (int i = 0; i < sp->nconfirmers; i++)
		if (sp->confirmers[i] == h)
			return false;
	if (sp->nconfirmers < (int)(sizeof(sp->confirmers) / sizeof(sp->confirmers[0])))
		sp->confirmers[sp->nconfirmers++] = h;
	sp->n++;
	sp->deadline = sp->start + suspicion_remaining(sp);
	return true;
}

static void suspect_node(struct swim *s, int64_t now, const struct ml_suspect *sus)
{
	struct swim_member *m = member_get(s, sus->node);
	if (m == NULL || member_forgotten(s, m, now))
		return;
	if (sus->incarnation < m->incarnation)
		return;
	if (m->susp != 0) {
		if (suspicion_confirm(susp_of(s, m), sus->from))
			broadcast_suspect(s, ML_SUSPECT, sus->incarnation, sus->node, sus->from);
		return;
	}
	if (m->state != ML_STATE_ALIVE)
		return;
	if (m == s->self) {
		if (!s->left)
			refute(s, sus->incarnation);
		return;
	}
	if (!s->merge_fresh)
		broadcast_suspect(s, ML_SUSPECT, sus->incarnation, sus->node, sus->from);
	m->incarnation = sus->incarnation;
	m->state = ML_STATE_SUSPECT;
	m->state_change = now;
	s->members_gen++;
	s->stats.suspicions++;

	size_t n = s->n; /* memberlist's estNumNodes counts every known node */
	int k = s->t.suspicion_mult - 2;
	if ((int)n - 2 < k)
		k = 0;
	if (s->nsusps == s->susps_cap) {
		s->susps_cap = s->susps_cap ? s->susps_cap * 2 : 16;
		s->susps = realloc(s->susps, s->susps_cap * sizeof(*s->susps));
		if (s->susps == NULL)
			abort();
	}
	struct swim_suspicion *sp = &s->susps[s->nsusps++];
	memset(sp, 0, sizeof(*sp));
	sp->m = m;
	m->susp = (uint32_t)s->nsusps;
	sp->k = k;
	sp->start = now;
	sp->min = swim_suspicion_timeout_ms(s->t.suspicion_mult, n, s->t.probe_interval_ms);
	sp->max = (int64_t)s->t.suspicion_max_timeout_mult * sp->min;
	sp->confirmers[0] = name_hash(sus->from);
	sp->nconfirmers = 1;
	sp->deadline = now + (k < 1 ? sp->min : sp->max);
	emit(s, SWIM_EV_SUSPECT, m);
}

static void dead_node(struct swim *s, int64_t now, const struct ml_suspect *d)
{
	struct swim_member *m = member_get(s, d->node);
	if (m == NULL)
		return;
	if (d->incarnation < m->incarnation)
		return;
	suspicion_clear(s, m);
	if (m->state == ML_STATE_DEAD || m->state == ML_STATE_LEFT)
		return;
	if (m == s->self) {
		if (!s->left) {
			refute(s, d->incarnation);
			return;
		}
	}
	broadcast_suspect(s, ML_DEAD, d->incarnation, d->node, d->from);
	m->incarnation = d->incarnation;
	m->state = strcmp(d->node, d->from) == 0 ? ML_STATE_LEFT : ML_STATE_DEAD;
	m->state_change = now;
	s->members_gen++;
	if (m->state == ML_STATE_DEAD)
		s->stats.deaths_declared++;
	emit(s, m->state == ML_STATE_LEFT ? SWIM_EV_LEFT : SWIM_EV_FAILED, m);
}

/* ----------------------------------------------------------- probing */

static uint32_t next_seq(struct swim *s)
{
	return ++s->seq;
}

/*
 * Squeezed: crowded (more than SWIM_BCAST_BUSY messages queued: a join
 * storm) and starved of the CPU within the last SWIM_SQUEEZE_HOLD_MS (the
 * driver's notes: a tick that waited 100 ms for a CPU, or came a probe
 * timeout late). A squeezed node's gossip rounds come SWIM_CROWD_STRETCH
 * times less often and each reaches that many times the peers: as many
 * packets and message sends a second, in half the rounds (one fill and one
 * LZW pass each). Its probes come as much less often, with timeouts as much
 * longer, as Lifeguard's awareness stretches them for a node that doubts
 * its own health. It wakes only at its rounds (swim_next_deadline; its
 * socket is read then, gossip/transport.c), so an ack waits up to one round
 * at each hop: the probe's stages are stretched to hold as many hops.
 *
 * Why: at N = 1,000 on 2 cores an agent woke 5-8 times a second mid-storm,
 * each wake-up of a process among 1,000 costing ~100-170 us before any
 * work: about half of all the CPU the agents used. Why only when starved:
 * in the simulator, where CPU is free, the same stretch for every crowded
 * node made a 2,000-node storm 10-18% slower (longer hops). Nothing on the
 * wire changes; a node that is not squeezed keeps memberlist's timing.
 */
static bool squeezed(const struct swim *s)
{
	return s->tick_now < s->squeezed_until && swim_crowded(s);
}

static int64_t crowd_stretch(const struct swim *s)
{
	return squeezed(s) ? SWIM_CROWD_STRETCH : 1;
}

/* A probe's direct stage, and a relay's wait for the target's ack. */
static int64_t stretched_probe_timeout(const struct swim *s)
{
	return s->t.probe_timeout_ms * crowd_stretch(s);
}

static int64_t scaled_probe_interval(const struct swim *s)
{
	return s->t.probe_interval_ms * (s->awareness + 1) * crowd_stretch(s);
}

static void awareness_apply(struct swim *s, int delta)
{
	int v = s->awareness + delta;
	if (v < 0)
		v = 0;
	if (v > s->t.awareness_max_multiplier - 1)
		v = s->t.awareness_max_multiplier - 1;
	s->awareness = v;
}

static void fill_ping(struct swim *s, struct ml_ping *p, uint32_t seq, const char *target)
{
	memset(p, 0, sizeof(*p));
	p->seq = seq;
	copy_name(p->node, sizeof(p->node), target);
	p->source = s->self->id->addr;
	copy_name(p->source_node, sizeof(p->source_node), s->self->id->name);
}

/* The RTT clock: the driver's finer one if it gave one, else `now`. */
static int64_t clock_us(struct swim *s, int64_t now)
{
	return s->io.clock_us != NULL ? s->io.clock_us(s->io.ctx) : now * 1000;
}

static void probe_end(struct swim *s)
{
	free(s->probe.target);
	memset(&s->probe, 0, sizeof(s->probe));
	s->probe.stage = PROBE_IDLE;
}

static void probe_start(struct swim *s, int64_t now)
{
	/* advance the round-robin; reshuffle after a full pass */
	struct swim_member *target = NULL;
	for (size_t checked = 0; checked < s->n; checked++) {
		if (s->probe_index >= s->n) {
			/* Fisher-Yates reshuffle of the probe order */
			for (size_t i = s->n; i > 1; i--) {
				size_t j = rnd(s, (uint32_t)i);
				uint32_t tmp = s->nodes[i - 1];
				s->nodes[i - 1] = s->nodes[j];
				s->nodes[j] = tmp;
				node_at(s, i - 1)->index = (uint32_t)(i - 1);
				node_at(s, j)->index = (uint32_t)j;
			}
			s->probe_index = 0;
		}
		struct swim_member *m = node_at(s, s->probe_index++);
		if (m == s->self || m->state == ML_STATE_DEAD || m->state == ML_STATE_LEFT)
			continue;
		target = m;
		break;
	}
	if (target == NULL)
		return;
	s->stats.probes++;
	struct ml_ping ping;
	uint32_t seq = next_seq(s);
	fill_ping(s, &ping, seq, target->id->name);
	int64_t interval = scaled_probe_interval(s);
	s->probe.stage = PROBE_DIRECT;
	s->probe.seq = seq;
	s->probe.target = xstrdup(target->id->name);
	s->probe.sent = now;
	s->probe.sent_us = clock_us(s, now);
	s->probe.late_mark = s->stats.late_wakeups;
	s->probe.wait_mark = s->stats.cpu_wait_ms;
	s->probe.timeout_at = now + stretched_probe_timeout(s);
	s->probe.end_at = now + interval;
	if (target->state == ML_STATE_ALIVE) {
		int r = ml_encode_ping(s->msgbuf, s->bufcap, &ping);
		if (r > 0) {
			uint8_t dg[ML_NAME_MAX + 64];
			size_t dlen = target->agent ? encode_digest(s, now, dg, sizeof(dg)) : 0;
			struct ml_slice sl[2] = {{s->msgbuf, (size_t)r}, {dg, dlen}};
			send_parts_with_piggyback(s, &target->id->addr, sl, dlen > 0 ? 2 : 1,
			                          target, -1);
		}
	} else {
		/* buddy system: tell the suspect it is suspected */
		uint8_t a[2048], b[1024];
		struct ml_suspect sus;
		memset(&sus, 0, sizeof(sus));
		sus.incarnation = target->incarnation;
		copy_name(sus.node, sizeof(sus.node), target->id->name);
		copy_name(sus.from, sizeof(sus.from), s->self->id->name);
		int ra = ml_encode_ping(a, sizeof(a), &ping);
		int rb = ml_encode_suspect(b, sizeof(b), &sus);
		if (ra > 0 && rb > 0) {
			struct ml_slice sl[2] = {{a, (size_t)ra}, {b, (size_t)rb}};
			int r = ml_compound_encode(s->pkt, s->bufcap, sl, 2);
			if (r > 0)
				raw_send(s, &target->id->addr, s->pkt, (size_t)r,
				         target->id->vsn[1]);
		}
	}
}

static bool is_live_peer(const struct swim *s, const struct swim_member *m)
{
	return m != s->self && m->state == ML_STATE_ALIVE;
}

/* Pick up to k distinct random members passing `ok` (memberlist kRandomNodes). */
static size_t random_members(struct swim *s, size_t k, struct swim_member **out,
                             bool (*ok)(const struct swim *, const struct swim_member *,
                                        const void *),
                             const void *arg)
{
	size_t got = 0;
	size_t n = s->n;
	for (size_t i = 0; i < 3 * n && got < k; i++) {
		struct swim_member *m = node_at(s, rnd(s, (uint32_t)n));
		if (!ok(s, m, arg))
			continue;
		bool dup = false;
		for (size_t j = 0; j < got; j++)
			if (out[j] == m)
				dup = true;
		if (!dup)
			out[got++] = m;
	}
	return got;
}

static bool ok_relay(const struct swim *s, const struct swim_member *m, const void *arg)
{
	const char *target = arg;
	return is_live_peer(s, m) && strcmp(m->id->name, target) != 0;
}

static void probe_indirect(struct swim *s, int64_t now)
{
	struct swim_member *target = member_get(s, s->probe.target);
	if (target == NULL) {
		probe_end(s);
		return;
	}
	s->probe.stage = PROBE_INDIRECT;
	struct swim_member *peers[16];
	size_t k = (size_t)s->t.indirect_checks;
	if (k > 16)
		k = 16;
	k = random_members(s, k, peers, ok_relay, target->id->name);
	struct ml_indirect_ping ind;
	memset(&ind, 0, sizeof(ind));
	ind.seq = s->probe.seq;
	ind.target = target->id->addr;
	copy_name(ind.node, sizeof(ind.node), target->id->name);
	ind.source = s->self->id->addr;
	copy_name(ind.source_node, sizeof(ind.source_node), s->self->id->name);
	for (size_t i = 0; i < k; i++) {
		ind.nack = peers[i]->id->vsn[1] >= 4;
		if (ind.nack)
			s->probe.expected_nacks++;
		int r = ml_encode_indirect_ping(s->msgbuf, s->bufcap, &ind);
		if (r > 0)
			send_with_piggyback(s, &peers[i]->id->addr, s->msgbuf, (size_t)r, peers[i],
			                    -1);
		s->stats.indirect_probes++;
	}
	if (s->io.tcp_ping != NULL && target->id->vsn[1] >= 3) {
		struct ml_ping ping;
		fill_ping(s, &ping, s->probe.seq, target->id->name);
		uint8_t buf[1024];
		int r = ml_encode_ping(buf, sizeof(buf), &ping);
		if (r > 0) {
			s->probe.tcp_pending = true;
			s->stats.tcp_pings++;
			s->io.tcp_ping(s->io.ctx, &target->id->addr, s->probe.seq, buf, (size_t)r,
			               s->probe.end_at);
		}
	}
}

static void probe_succeeded(struct swim *s)
{
	awareness_apply(s, -1);
	probe_end(s);
}

/* Waiting this long for a CPU during a probe, or since the last tick, is
 * starvation (swim_note_run_delay): a fifth of the probe timeout, 100 ms by
 * default. A healthy machine's run-queue delay is microseconds a second. */
static int64_t starved_wait_ms(const struct swim *s)
{
	return s->t.probe_timeout_ms / 5;
}

static void probe_failed(struct swim *s, int64_t now)
{
	s->stats.probe_failures++;
	int delta = 0;
	if (s->probe.expected_nacks > 0) {
		if (s->probe.nacks < s->probe.expected_nacks)
			delta += s->probe.expected_nacks - s->probe.nacks;
	} else {
		delta += 1;
	}
	awareness_apply(s, delta);
	struct swim_member *target = member_get(s, s->probe.target);
	if (s->stats.late_wakeups != s->probe.late_mark ||
	    s->stats.cpu_wait_ms - s->probe.wait_mark >= (uint64_t)starved_wait_ms(s)) {
		/* this node itself ran a probe timeout late, or waited that long
		 * for a CPU, while the probe ran (swim_note_late,
		 * swim_note_run_delay): it would have failed its own probe, so
		 * the target's silence is no evidence against the target */
		s->stats.probes_inconclusive++;
		target = NULL;
	}
	if (target != NULL) {
		struct ml_suspect sus;
		memset(&sus, 0, sizeof(sus));
		sus.incarnation = target->incarnation;
		copy_name(sus.node, sizeof(sus.node), target->id->name);
		copy_name(sus.from, sizeof(sus.from), s->self->id->name);
		suspect_node(s, now, &sus);
	}
	probe_end(s);
}

void swim_tcp_ping_done(struct swim *s, int64_t now, uint32_t seq, bool acked)
{
	if (s->probe.stage == PROBE_IDLE || s->probe.seq != seq)
		return;
	s->probe.tcp_pending = false;
	if (acked)
		probe_succeeded(s);
}

/* --------------------------------------------------------- receiving */

static void handle_ping(struct swim *s, const struct ml_addr *from, const uint8_t *p, size_t len)
{
	struct ml_ping ping;
	const uint8_t *pos = p;
	if (ml_decode_ping(&pos, p + len, &ping) != ML_OK) {
		s->stats.bad_packets++;
		return;
	}
	if (ping.node[0] != '\0' && strcmp(ping.node, s->self->id->name) != 0)
		return;
	struct ml_ack ack;
	memset(&ack, 0, sizeof(ack));
	ack.seq = ping.seq;
	if (s->cc != NULL) {
		/* Serf's AckPayload: our coordinate rides every ack to a ping */
		int n = coord_payload_encode(&s->cc->c, ack.payload, sizeof(ack.payload));
		if (n > 0)
			ack.payload_len = (uint16_t)n;
	}
	const struct ml_addr *to =
	        ping.source.len > 0 && ping.source.port > 0 ? &ping.source : from;
	int r = ml_encode_ack(s->msgbuf, s->bufcap, &ack);
	if (r > 0)
		send_with_piggyback(s, to, s->msgbuf, (size_t)r, member_at(s, ping.source_node, to),
		                    -1);
}

static void handle_indirect_ping(struct swim *s, int64_t now, const struct ml_addr *from,
                                 const uint8_t *p, size_t len)
{
	struct ml_indirect_ping ind;
	const uint8_t *pos = p;
	if (ml_decode_indirect_ping(&pos, p + len, &ind) != ML_OK) {
		s->stats.bad_packets++;
		return;
	}
	if (s->nrelays >= SWIM_MAX_RELAYS)
		return;
	struct swim_relay *r = &s->relays[s->nrelays++];
	r->local_seq = next_seq(s);
	r->origin_seq = ind.seq;
	r->origin = ind.source.len > 0 && ind.source.port > 0 ? ind.source : *from;
	r->origin_pmax = pmax_named(s, ind.source_node, &r->origin);
	r->nack = ind.nack;
	r->deadline = now + stretched_probe_timeout(s);
	struct ml_ping ping;
	fill_ping(s, &ping, r->local_seq, ind.node);
	int n = ml_encode_ping(s->msgbuf, s->bufcap, &ping);
	if (n > 0)
		send_with_piggyback(s, &ind.target, s->msgbuf, (size_t)n,
		                    member_at(s, ind.node, &ind.target), -1);
}

static void relay_remove(struct swim *s, int i)
{
	s->relays[i] = s->relays[--s->nrelays];
}

/* The slot's cache entry, growing the slot index as needed. */
static struct coord **coord_cell(struct swim *s, uint32_t slot)
{
	if (slot >= s->coords_cap) {
		size_t cap = s->coords_cap ? s->coords_cap : 16;
		while (cap <= slot)
			cap *= 2;
		s->coords = xrealloc(s->coords, cap * sizeof(*s->coords));
		memset(s->coords + s->coords_cap, 0, (cap - s->coords_cap) * sizeof(*s->coords));
		s->coords_cap = cap;
	}
	return &s->coords[slot];
}

/*
 * Serf's NotifyPingComplete: the ack to our direct probe, in its direct
 * stage, times the round trip and brings the peer's coordinate. No payload
 * (a peer with coordinates off) is no sample; a payload that does not
 * decode, or a sample the client refuses, is counted and changes nothing.
 * Only an accepted sample caches the peer's coordinate, as in Serf.
 */
static void probe_rtt(struct swim *s, int64_t now, const struct ml_ack *ack)
{
	/* a crowded node reads its socket at its ticks (gossip/transport.c):
	 * the time it took to read the ack is not the network's */
	if (s->cc == NULL || ack->payload_len == 0 || swim_crowded(s))
		return;
	struct coord peer;
	if (coord_payload_decode(ack->payload, ack->payload_len, &peer) != 0) {
		s->stats.coord_bad_payloads++;
		return;
	}
	struct swim_member *m = member_get(s, s->probe.target);
	if (m == NULL || m == s->self)
		return;
	int64_t rtt_us = clock_us(s, now) - s->probe.sent_us;
	if (coord_client_update(s->cc, m->id->name, &peer, rtt_us * 1000) != 0) {
		s->stats.coord_rejected++;
		return;
	}
	s->stats.coord_updates++;
	struct coord **cell = coord_cell(s, s->nodes[m->index]);
	if (*cell == NULL)
		*cell = xmalloc(sizeof(**cell));
	**cell = peer;
}

static void handle_ack(struct swim *s, int64_t now, const uint8_t *p, size_t len)
{
	struct ml_ack ack;
	const uint8_t *pos = p;
	if (ml_decode_ack(&pos, p + len, &ack) != ML_OK) {
		s->stats.bad_packets++;
		return;
	}
	if (s->probe.stage != PROBE_IDLE && ack.seq == s->probe.seq) {
		/* memberlist samples only an ack that beats probe_timeout, even
		 * when the tick that starts the indirect stage runs late */
		if (s->probe.stage == PROBE_DIRECT && now < s->probe.timeout_at)
			probe_rtt(s, now, &ack);
		probe_succeeded(s);
		return;
	}
	for (int i = 0; i < s->nrelays; i++) {
		if (s->relays[i].local_seq == ack.seq) {
			struct ml_ack fwd;
			memset(&fwd, 0, sizeof(fwd));
			fwd.seq = s->relays[i].origin_seq;
			struct ml_addr to = s->relays[i].origin;
			int pm = s->relays[i].origin_pmax;
			relay_remove(s, i);
			int r = ml_encode_ack(s->msgbuf, s->bufcap, &fwd);
			if (r > 0)
				send_with_piggyback(s, &to, s->msgbuf, (size_t)r, NULL, pm);
			return;
		}
	}
}

static void handle_nack(struct swim *s, const uint8_t *p, size_t len)
{
	struct ml_nack nack;
	const uint8_t *pos = p;
	if (ml_decode_nack(&pos, p + len, &nack) != ML_OK) {
		s->stats.bad_packets++;
		return;
	}
	if (s->probe.stage != PROBE_IDLE && nack.seq == s->probe.seq)
		s->probe.nacks++;
}

static void handle_message(struct swim *s, int64_t now, const struct ml_addr *from,
                           const uint8_t *buf, size_t len, int depth);

static void handle_compound(struct swim *s, int64_t now, const struct ml_addr *from,
                            const uint8_t *p, size_t len, int depth)
{
	struct ml_slice parts[ML_COMPOUND_MAX];
	int trunc = 0;
	int n = ml_compound_decode(p, len, parts, ML_COMPOUND_MAX, &trunc);
	if (n < 0) {
		s->stats.bad_packets++;
		return;
	}
	for (int i = 0; i < n; i++)
		handle_message(s, now, from, parts[i].p, parts[i].len, depth + 1);
}

static void handle_message(struct swim *s, int64_t now, const struct ml_addr *from,
                           const uint8_t *buf, size_t len, int depth)
{
	if (len < 1 || depth > SWIM_NESTING_MAX) {
		s->stats.bad_packets++;
		return;
	}
	uint8_t type = buf[0];
	const uint8_t *p = buf + 1;
	size_t plen = len - 1;
	const uint8_t *pos = p;
	switch (type) {
	case ML_COMPOUND:
		handle_compound(s, now, from, p, plen, depth);
		break;
	case ML_COMPRESS: {
		uint8_t *out = malloc(ML_UDP_RECV_MAX);
		if (out == NULL)
			abort();
		int n = ml_compress_decode(p, plen, out, ML_UDP_RECV_MAX);
		if (n > 0)
			handle_message(s, now, from, out, (size_t)n, depth + 1);
		else
			s->stats.bad_packets++;
		free(out);
		break;
	}
	case ML_PING:
		handle_ping(s, from, p, plen);
		break;
	case ML_INDIRECT_PING:
		handle_indirect_ping(s, now, from, p, plen);
		break;
	case ML_ACK:
		handle_ack(s, now, p, plen);
		break;
	case ML_NACK:
		handle_nack(s, p, plen);
		break;
	case ML_SUSPECT: {
		struct ml_suspect m;
		if (ml_decode_suspect(&pos, p + plen, &m) == ML_OK)
			suspect_node(s, now, &m);
		else
			s->stats.bad_packets++;
		break;
	}
	case ML_DEAD: {
		struct ml_suspect m;
		if (ml_decode_dead(&pos, p + plen, &m) == ML_OK)
			dead_node(s, now, &m);
		else
			s->stats.bad_packets++;
		break;
	}
	case ML_ALIVE: {
		static struct ml_alive a;
		if (ml_decode_alive(&pos, p + plen, &a) != ML_OK) {
			s->stats.bad_packets++;
			break;
		}
		if (a.addr.port == 0)
			a.addr.port = s->self->id->addr.port;
		alive_node(s, now, &a, false);
		break;
	}
	case ML_USER:
		if (s->io.user_msg != NULL)
			s->io.user_msg(s->io.ctx, p, plen);
		break;
	case ML_RUMOR_DIGEST: {
		struct ml_digest d;
		if (ml_decode_digest(&pos, p + plen, &d) == ML_OK)
			handle_digest(s, now, &d);
		else
			s->stats.bad_packets++;
		break;
	}
	default:
		s->stats.bad_packets++;
		break;
	}
}

void swim_recv_packet(struct swim *s, int64_t now, const struct ml_addr *from, const uint8_t *buf,
                      size_t len)
{
	s->stats.packets_recv++;
	s->stats.bytes_recv += len;
	if (len >= 5 && buf[0] == ML_HAS_CRC) {
		uint32_t want = be32_get(buf + 1);
		if (ml_crc32(buf + 5, len - 5) != want) {
			s->stats.bad_packets++;
			return;
		}
		buf += 5;
		len -= 5;
	}
	handle_message(s, now, from, buf, len, 0);
}

/* ------------------------------------------------------- push / pull */

static void fill_push_node(const struct swim_member *m, struct ml_push_node *pn)
{
	memset(pn, 0, sizeof(*pn));
	copy_name(pn->name, sizeof(pn->name), m->id->name);
	pn->addr = m->id->addr;
	pn->meta_len = m->id->meta_len;
	if (m->id->meta_len)
		memcpy(pn->meta, m->id->meta, m->id->meta_len);
	pn->incarnation = m->incarnation;
	pn->state = m->state;
	memcpy(pn->vsn, m->id->vsn, 6);
	pn->has_vsn = true;
}

uint8_t *swim_local_state_new(struct swim *s, int64_t now, bool join, size_t *len)
{
	size_t count = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!member_forgotten(s, node_at(s, i), now))
			count++;
	size_t cap = 64 + count * (ML_NAME_MAX + ML_META_MAX + 128);
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		abort();
	size_t off = 0;
	buf[off++] = ML_PUSH_PULL;
	size_t ulen = 0;
	uint8_t *ustate =
	        s->io.local_state != NULL ? s->io.local_state(s->io.ctx, join, &ulen) : NULL;
	if (ustate == NULL)
		ulen = 0;
	cap += ulen;
	uint8_t *nbuf = realloc(buf, cap);
	if (nbuf == NULL)
		abort();
	buf = nbuf;
	struct ml_push_pull_header h = {
	        .nodes = (uint32_t)count, .user_state_len = (uint32_t)ulen, .join = join};
	int r = ml_encode_push_pull_header(buf + off, cap - off, &h);
	if (r < 0)
		abort();
	off += (size_t)r;
	static struct ml_push_node pn;
	for (size_t i = 0; i < s->n; i++) {
		if (member_forgotten(s, node_at(s, i), now))
			continue;
		fill_push_node(node_at(s, i), &pn);
		r = ml_encode_push_node(buf + off, cap - off, &pn);
		if (r < 0)
			abort();
		off += (size_t)r;
	}
	if (ulen > 0)
		memcpy(buf + off, ustate, ulen);
	off += ulen;
	free(ustate);
	*len = off;
	return buf;
}

static void reply_forget(struct swim *s)
{
	free(s->reply_buf);
	s->reply_buf = NULL;
	s->reply_len = 0;
	s->reply_stamp = 0;
}

/*
 * Our state as a push-pull reply. Issue 21: a seed that 1,000 agents join
 * at once answers each with its whole table, and encoding it (and the
 * driver compressing it) was ~70% of the seed's CPU in the storm, on a CPU
 * share no bigger than any other agent's. So while gossip is crowded (more
 * than SWIM_BCAST_BUSY messages queued: a storm), a state made less than
 * SWIM_REPLY_REUSE_MS ago for a reply with the same join flag, while our
 * incarnation was the same (a refutation is never held back), is sent
 * again: a reply up to that much older, as if the request had come that
 * much sooner; what changed since is in the queue, gossiped to the asker
 * as to everyone. A quiet node makes every reply afresh and keeps none.
 * Memory: one state (the last reply's bytes) while crowded.
 */
static void reply_state(struct swim *s, int64_t now, bool join, struct swim_stream_result *res)
{
	/* only while squeezed: a seed with the CPU to spare answers each
	 * joiner with its table as it is (in the simulator, reuse by every
	 * crowded seed took a 2,000-node storm from median 5.9 s, last 32.0 s
	 * to 10.3 s and 49.3 s: early joiners got a small, stale table) */
	if (!squeezed(s)) {
		reply_forget(s);
		res->reply = swim_local_state_new(s, now, join, &res->reply_len);
		return;
	}
	if (s->reply_buf != NULL && s->reply_join == join && s->reply_inc == s->self->incarnation &&
	    now >= s->reply_at && now - s->reply_at < SWIM_REPLY_REUSE_MS) {
		res->reply = xmalloc(s->reply_len);
		memcpy(res->reply, s->reply_buf, s->reply_len);
		res->reply_len = s->reply_len;
		res->reply_stamp = s->reply_stamp;
		s->stats.replies_reused++;
		return;
	}
	reply_forget(s);
	res->reply = swim_local_state_new(s, now, join, &res->reply_len);
	s->reply_buf = xmalloc(res->reply_len);
	memcpy(s->reply_buf, res->reply, res->reply_len);
	s->reply_len = res->reply_len;
	s->reply_at = now;
	s->reply_join = join;
	s->reply_inc = s->self->incarnation;
	s->reply_stamp = ++s->reply_seq;
	res->reply_stamp = s->reply_stamp;
}

static void merge_remote(struct swim *s, int64_t now, const struct ml_push_node *rn)
{
	switch (rn->state) {
	case ML_STATE_ALIVE: {
		static struct ml_alive a;
		memset(&a, 0, sizeof(a));
		a.incarnation = rn->incarnation;
		copy_name(a.node, sizeof(a.node), rn->name);
		a.addr = rn->addr;
		if (a.addr.port == 0)
			a.addr.port = s->self->id->addr.port;
		a.meta_len = rn->meta_len;
		memcpy(a.meta, rn->meta, rn->meta_len);
		memcpy(a.vsn, rn->vsn, 6);
		a.has_vsn = rn->has_vsn;
		alive_node(s, now, &a, false);
		break;
	}
	case ML_STATE_LEFT: {
		struct ml_suspect d;
		memset(&d, 0, sizeof(d));
		d.incarnation = rn->incarnation;
		copy_name(d.node, sizeof(d.node), rn->name);
		copy_name(d.from, sizeof(d.from), rn->name);
		dead_node(s, now, &d);
		break;
	}
	case ML_STATE_DEAD:
	case ML_STATE_SUSPECT: {
		struct ml_suspect d;
		memset(&d, 0, sizeof(d));
		d.incarnation = rn->incarnation;
		copy_name(d.node, sizeof(d.node), rn->name);
		copy_name(d.from, sizeof(d.from), s->self->id->name);
		suspect_node(s, now, &d);
		break;
	}
	default:
		break;
	}
}

/* Merge up to `count` members decoded from *pos; returns how many. The
 * bytes were decoded once already (push_pull_scan), so a failure here means
 * they changed under us: stop rather than guess. */
static uint32_t merge_members(struct swim *s, int64_t now, const uint8_t **pos, const uint8_t *end,
                              uint32_t count)
{
	static struct ml_push_node pn;
	uint32_t i = 0;
	s->merging = true;
	for (; i < count; i++) {
		if (ml_decode_push_node(pos, end, &pn) != ML_OK)
			break;
		merge_remote(s, now, &pn);
	}
	s->merging = false;
	return i;
}

/*
 * Read a push-pull (buf[0] is its type byte) as far as the bytes go,
 * resuming where *sc stopped: first the header, whose member count is
 * checked against the cap before anything is read or allocated for the
 * members; then each member in turn, decoded into one static entry (memberlist
 * and rumor before it decoded all of them into an array sized by the
 * header). Refuses, for our own join, a live node using our name. ML_OK
 * when the members and the user state are all there, ML_AGAIN when more
 * bytes are needed, ML_BAD with res->error set (or ml_wire_error()).
 */
static int push_pull_scan(struct swim *s, const uint8_t *buf, size_t len, bool initiator,
                          struct swim_stream_scan *sc, struct swim_stream_result *res)
{
	const uint8_t *pos = buf + sc->off, *end = buf + len;
	if (sc->off == 0) {
		struct ml_push_pull_header h;
		pos = buf + 1;
		int rc = ml_decode_push_pull_header(&pos, end, &h);
		if (rc != ML_OK)
			return rc;
		if (h.nodes > s->pp_max) {
			s->stats.push_pulls_refused++;
			snprintf(res->error, sizeof(res->error),
			         "push-pull announces %u members, more than the limit of %u",
			         h.nodes, s->pp_max);
			return ML_BAD;
		}
		sc->want = h.nodes;
		sc->user_len = h.user_state_len;
		sc->join = h.join;
		sc->nodes = 0;
		sc->start = sc->off = (size_t)(pos - buf);
	}
	static struct ml_push_node pn;
	while (sc->nodes < sc->want) {
		int rc = ml_decode_push_node(&pos, end, &pn);
		if (rc != ML_OK)
			return rc;
		if (initiator && sc->join && pn.state == ML_STATE_ALIVE &&
		    strcmp(pn.name, s->self->id->name) == 0 &&
		    !ml_addr_equal(&pn.addr, &s->self->id->addr)) {
			char a[64];
			snprintf(res->error, sizeof(res->error),
			         "node name %s is already in use by a live node at %s",
			         s->self->id->name, ml_addr_str(&pn.addr, a, sizeof(a)));
			return ML_BAD;
		}
		sc->nodes++;
		sc->off = (size_t)(pos - buf);
	}
	if ((size_t)(end - pos) < sc->user_len)
		return ML_AGAIN;
	return ML_OK;
}

/*
 * A whole, well-formed push-pull. One slice's work or less (every state of
 * a cluster up to merge_slice members, and all of them without slicing) is
 * merged now and answered with our state after the merge, as rumor always
 * did: the simulator's runs stay the same bit for bit. A larger state is
 * answered with our state before the merge (memberlist's order everywhere:
 * sendLocalState, then mergeRemoteState) and its bytes are queued for
 * swim_merge_step(). Queued states are bounded in number and bytes; one
 * more is refused rather than let memory grow with what peers send.
 *
 * Quiet merge: the answer to a push-pull we started while our table held
 * only ourselves (a fresh agent's -join) is merged without rebroadcasting
 * its alive and suspect entries. memberlist rebroadcasts every member a
 * merge teaches it, so each joiner of a storm queued the whole cluster's
 * alives, each sent 4 x ceil(log10(N+1)) times, to members that had them
 * from the same gossip the seed did: about a third of a 1,000-node storm's
 * gossip. The joiner's own alive is still broadcast by the seed that merged
 * it, and a member the seed knows but others do not is still the seed's
 * news to spread.
 *
 * Bounded news: any other push-pull that is not a join (settle, regular,
 * repair) rebroadcasts only the first SWIM_MERGE_NEWS alive entries it
 * teaches us; the rest are merged quietly. A state that far ahead of ours
 * is a table the sender built from gossip still in flight, not news the
 * cluster lacks: in a 1,000-node storm the settle push-pulls taught each
 * node hundreds of members, and passing them all on was another third of
 * the storm's alive gossip (rumor-sim -n 1000 --cold, issue 21). A steady
 * cluster's push-pull teaches a member or two, which are passed on as
 * memberlist does. Joins (a `rumor join` between clusters, serf's
 * reconnect after a partition) merge as memberlist does.
 */
static int push_pull_accept(struct swim *s, int64_t now, const uint8_t *buf, bool initiator,
                            const struct swim_stream_scan *sc, struct swim_stream_result *res)
{
	bool at_once = s->merge_slice == 0 || sc->want <= s->merge_slice;
	size_t bytes = sc->off - sc->start + sc->user_len;
	if (!at_once &&
	    (s->mq_n >= SWIM_MERGE_QUEUE_MAX || s->mq_bytes + bytes > SWIM_MERGE_QUEUE_BYTES)) {
		s->stats.push_pulls_refused++;
		snprintf(res->error, sizeof(res->error),
		         "push-pull of %u members refused: busy merging %zu earlier states",
		         sc->want, s->mq_n);
		return ML_BAD;
	}
	s->stats.push_pulls++;
	res->join = sc->join;
	bool fresh = initiator && s->n <= 1;
	uint32_t news = sc->join ? UINT32_MAX : SWIM_MERGE_NEWS;
	if (at_once) {
		const uint8_t *p = buf + sc->start;
		s->merge_news = news;
		s->merge_fresh = fresh;
		merge_members(s, now, &p, buf + sc->off, sc->want);
		s->merge_news = UINT32_MAX;
		s->merge_fresh = false;
		if (sc->user_len > 0 && s->io.merge_state != NULL)
			s->io.merge_state(s->io.ctx, buf + sc->off, sc->user_len, sc->join);
		if (!initiator)
			reply_state(s, now, sc->join, res);
		return ML_OK;
	}
	if (!initiator)
		reply_state(s, now, sc->join, res);
	struct swim_merge *mj = xcalloc(1, sizeof(*mj));
	mj->buf = xmalloc(bytes ? bytes : 1);
	memcpy(mj->buf, buf + sc->start, bytes);
	mj->len = bytes;
	mj->left = sc->want;
	mj->user_len = sc->user_len;
	mj->join = sc->join;
	mj->news = news;
	mj->fresh = fresh;
	if (s->mq_tail != NULL)
		s->mq_tail->next = mj;
	else
		s->mq = mj;
	s->mq_tail = mj;
	s->mq_n++;
	s->mq_bytes += bytes;
	return ML_OK;
}

bool swim_merge_pending(const struct swim *s)
{
	return s->mq != NULL;
}

bool swim_merge_step(struct swim *s, int64_t now, uint32_t max)
{
	uint32_t budget = max ? max : s->merge_slice ? s->merge_slice : UINT32_MAX;
	while (s->mq != NULL && budget > 0) {
		struct swim_merge *mj = s->mq;
		uint32_t k = mj->left < budget ? mj->left : budget;
		const uint8_t *p = mj->buf + mj->off;
		s->merge_news = mj->news;
		s->merge_fresh = mj->fresh;
		uint32_t done = merge_members(s, now, &p, mj->buf + mj->len - mj->user_len, k);
		mj->news = s->merge_news;
		s->merge_news = UINT32_MAX;
		s->merge_fresh = false;
		mj->off = (size_t)(p - mj->buf);
		mj->left = done == k ? mj->left - k : 0;
		budget -= k;
		if (mj->left > 0)
			break;
		if (mj->user_len > 0 && s->io.merge_state != NULL)
			s->io.merge_state(s->io.ctx, mj->buf + mj->len - mj->user_len, mj->user_len,
			                  mj->join);
		s->mq = mj->next;
		if (s->mq == NULL)
			s->mq_tail = NULL;
		s->mq_n--;
		s->mq_bytes -= mj->len;
		free(mj->buf);
		free(mj);
	}
	return s->mq != NULL;
}

int swim_stream_recv(struct swim *s, int64_t now, const uint8_t *buf, size_t len, bool initiator,
                     struct swim_stream_result *res)
{
	return swim_stream_recv_scan(s, now, buf, len, initiator, NULL, res);
}

int swim_stream_recv_scan(struct swim *s, int64_t now, const uint8_t *buf, size_t len,
                          bool initiator, struct swim_stream_scan *scan,
                          struct swim_stream_result *res)
{
	memset(res, 0, sizeof(*res));
	if (len < 1)
		return ML_AGAIN;
	uint8_t *decomp = NULL;
	int rc = ML_OK;
	if (buf[0] == ML_COMPRESS) {
		/* only a whole compress object is decompressed, once: the
		 * output buffer is not allocated while bytes are still coming */
		const uint8_t *cpos = buf + 1;
		struct ml_slice lzw;
		int crc = ml_compress_frame(&cpos, buf + len, &lzw);
		if (crc == ML_AGAIN)
			return ML_AGAIN;
		int n = -1;
		if (crc == ML_OK) {
			decomp = xmalloc(ML_PUSH_STATE_MAX);
			n = ml_lzw_decompress(lzw.p, lzw.len, decomp, ML_PUSH_STATE_MAX);
		}
		if (n < 0) {
			free(decomp);
			if (crc == ML_OK)
				snprintf(res->error, sizeof(res->error),
				         "compressed stream: bad LZW data or output too large");
			else
				snprintf(res->error, sizeof(res->error), "compressed stream: %s",
				         ml_wire_error());
			return ML_BAD;
		}
		buf = decomp;
		len = (size_t)n;
		if (len < 1) {
			free(decomp);
			snprintf(res->error, sizeof(res->error), "empty compressed stream");
			return ML_BAD;
		}
	}
	res->type = buf[0];
	const uint8_t *pos = buf + 1, *end = buf + len;
	switch (buf[0]) {
	case ML_PUSH_PULL: {
		/* a decompressed message is whole: the caller's scan is for
		 * the plain stream's bytes */
		struct swim_stream_scan local;
		struct swim_stream_scan *sc = scan != NULL && decomp == NULL ? scan : &local;
		if (sc == &local || sc->off > len)
			memset(sc, 0, sizeof(*sc));
		rc = push_pull_scan(s, buf, len, initiator, sc, res);
		if (rc == ML_OK)
			rc = push_pull_accept(s, now, buf, initiator, sc, res);
		break;
	}
	case ML_PING: {
		struct ml_ping ping;
		rc = ml_decode_ping(&pos, end, &ping);
		if (rc != ML_OK)
			break;
		if (ping.node[0] != '\0' && strcmp(ping.node, s->self->id->name) != 0) {
			snprintf(res->error, sizeof(res->error), "ping for unexpected node %s",
			         ping.node);
			rc = ML_BAD;
			break;
		}
		struct ml_ack ack;
		memset(&ack, 0, sizeof(ack));
		ack.seq = ping.seq;
		res->reply = malloc(64);
		if (res->reply == NULL)
			abort();
		int n = ml_encode_ack(res->reply, 64, &ack);
		res->reply_len = n > 0 ? (size_t)n : 0;
		break;
	}
	case ML_ACK: {
		struct ml_ack ack;
		rc = ml_decode_ack(&pos, end, &ack);
		break;
	}
	case ML_USER: {
		struct ml_user_msg_header h;
		rc = ml_decode_user_msg_header(&pos, end, &h);
		if (rc != ML_OK)
			break;
		if (h.len > ML_PUSH_STATE_MAX) {
			snprintf(res->error, sizeof(res->error), "user message too large");
			rc = ML_BAD;
			break;
		}
		if ((size_t)(end - pos) < h.len) {
			rc = ML_AGAIN;
			break;
		}
		if (s->io.user_msg != NULL)
			s->io.user_msg(s->io.ctx, pos, h.len);
		break;
	}
	case ML_ERR: {
		struct ml_err_resp e;
		rc = ml_decode_err(&pos, end, &e);
		if (rc == ML_OK) {
			snprintf(res->error, sizeof(res->error), "remote error: %s", e.error);
			rc = ML_BAD;
		}
		break;
	}
	default:
		snprintf(res->error, sizeof(res->error), "unexpected stream message type %u",
		         buf[0]);
		rc = ML_BAD;
		break;
	}
	if (rc == ML_BAD && res->error[0] == '\0')
		snprintf(res->error, sizeof(res->error), "malformed stream: %s", ml_wire_error());
	if (decomp != NULL && rc == ML_AGAIN) {
		/* a complete compressed object decoded to a truncated message */
		snprintf(res->error, sizeof(res->error), "truncated compressed stream");
		rc = ML_BAD;
	}
	free(decomp);
	return rc;
}

/* ------------------------------------------------------------ timers */

static bool ok_gossip(const struct swim *s, const struct swim_member *m, const void *arg)
{
	const int64_t *now = arg;
	if (m == s->self)
		return false;
	if (m->state == ML_STATE_ALIVE || m->state == ML_STATE_SUSPECT)
		return true;
	if (m->state == ML_STATE_DEAD)
		return *now - m->state_change <= s->t.gossip_to_the_dead_ms;
	return false;
}

/* The peers of one gossip packet: it is built (and compressed) once and
 * sent to each. */
struct gossip_dest {
	struct swim_member *const *to;
	size_t n;
};

static void send_to_all(struct swim *s, const struct gossip_dest *d, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < d->n; i++)
		raw_send(s, &d->to[i]->id->addr, p, len, d->to[i]->id->vsn[1]);
}

/*
 * Send parts[0..n) to the peers of d in as few packets as fit. memberlist
 * compresses each packet it sends when that makes it smaller
 * (EnableCompression, on by default) and takes a compressed packet of any
 * size apart on receipt; so a compound goes out compressed when that is
 * smaller, and one whose compressed form is still over the budget is split
 * in two (and each half compressed again: stats.packets_split counts them,
 * since gossip packs by the last ratio to keep it rare). pkt/zbuf: scratch
 * buffers of pcap and zcap bytes.
 */
static void send_parts(struct swim *s, const struct gossip_dest *d, const uint8_t *const *parts,
                       const size_t *lens, size_t n, uint8_t *pkt, size_t pcap, uint8_t *zbuf,
                       size_t zcap)
{
	const uint8_t *msg = parts[0];
	size_t len = lens[0];
	if (n > 1) {
		struct ml_slice sl[SWIM_MAX_PARTS];
		for (size_t j = 0; j < n; j++) {
			sl[j].p = parts[j];
			sl[j].len = lens[j];
		}
		int r = ml_compound_encode(pkt, pcap, sl, (int)n);
		if (r <= 0)
			return;
		msg = pkt;
		len = (size_t)r;
	}
	if (!s->t.gossip_plain && zbuf != NULL && len >= SWIM_COMPRESS_MIN) {
		int z = ml_compress_encode(zbuf, zcap, msg, len);
		if (z > 0 && (size_t)z < len) {
			uint64_t ratio = (uint64_t)len * 100 / (uint64_t)z;
			s->zratio = ratio > 800 ? 800 : (uint32_t)ratio;
			if ((size_t)z <= s->t.udp_budget) {
				s->stats.packets_compressed += d->n;
				send_to_all(s, d, zbuf, (size_t)z);
				return;
			}
		}
	}
	if (len <= s->t.udp_budget || n == 1) {
		send_to_all(s, d, msg, len);
		return;
	}
	s->stats.packets_split++;
	size_t h = n / 2;
	send_parts(s, d, parts, lens, h, pkt, pcap, zbuf, zcap);
	send_parts(s, d, parts + h, lens + h, n - h, pkt, pcap, zbuf, zcap);
}

/* A rumor agent gossip may pick that is not among the round's picks. */
struct gossip_pick {
	int64_t now;
	struct swim_member *const *taken;
	size_t ntaken;
};

static bool ok_gossip_rumor(const struct swim *s, const struct swim_member *m, const void *arg)
{
	const struct gossip_pick *g = arg;
	if (!m->rumor || !ok_gossip(s, m, &g->now))
		return false;
	for (size_t i = 0; i < g->ntaken; i++)
		if (g->taken[i] == m)
			return false;
	return true;
}

/* One gossip packet (or two, see send_parts) to each peer of d; rumor: it
 * may carry rumor-only messages (every peer of d is a rumor agent). Each
 * message in it counts as sent d->n times. Nothing is sent when nothing is
 * queued for it. */
static void gossip_to(struct swim *s, const struct gossip_dest *d, size_t budget, bool rumor,
                      uint8_t *pkt, size_t pcap, uint8_t *zbuf, size_t zcap)
{
	const uint8_t *parts[SWIM_MAX_PARTS];
	size_t lens[SWIM_MAX_PARTS];
	if (d->n == 0)
		return;
	size_t n = fill_broadcasts(s, budget, parts, lens, SWIM_MAX_PARTS, rumor, (int)d->n);
	if (n == 0)
		return;
	send_parts(s, d, parts, lens, n, pkt, pcap, zbuf, zcap);
	retire_broadcasts(s);
}

/*
 * Gossip: every gossip interval, while broadcasts are queued, one packet to
 * each of gossip_nodes random members. Packed by compressed size: with the
 * last compressed packet's ratio r, a packet takes about r times the budget
 * of messages (at most SWIM_PACK_MAX) and goes out compressed within the
 * budget. Alive messages carrying Consul's tags shrink about 1.9x, so a join
 * storm spreads about that much faster in as many packets, none larger on
 * the wire.
 *
 * memberlist fills a packet for each of the k peers apart, each message's
 * transmit count raised by one per packet. Here one packet is filled,
 * compressed and sent to all the round's rumor peers (another to its Serf
 * peers, which take no rumor-only messages), each message counted as sent
 * once per peer: as many transmits per message, as many bytes on the wire,
 * but one fill, one compound and one LZW pass per round instead of k (in a
 * 500-agent join storm gossip_to, mostly fills and compression, was 16% of
 * all CPU).
 * A message's first round reaches k peers at once, as in the epidemic
 * model; it may be sent up to k-1 times past the limit in its last round.
 */
static void gossip(struct swim *s, int64_t now)
{
	struct swim_member *peers[32];
	size_t k = (size_t)(s->t.gossip_nodes * crowd_stretch(s));
	if (k > 32)
		k = 32;
	if (broadcasts_queued(s) == 0)
		return; /* nothing to send: skip the random picks */
	k = random_members(s, k, peers, ok_gossip, &now);
	if (k == 0)
		return;
	size_t budget = s->t.udp_budget > 2 ? s->t.udp_budget - 2 : 0;
	uint8_t *pkt = s->pkt, *zbuf = NULL;
	size_t pcap = s->bufcap, zcap = 0;
	if (!s->t.gossip_plain) {
		/* scratch for this round only: an idle agent keeps none of it */
		zcap = SWIM_PACK_MAX + SWIM_PACK_MAX / 2 + 1024;
		pcap = SWIM_PACK_MAX + 1024;
		pkt = xmalloc(pcap);
		zbuf = xmalloc(zcap);
		uint64_t packed = (uint64_t)budget * s->zratio * 95 / 10000;
		if (packed > budget)
			budget = packed > SWIM_PACK_MAX ? SWIM_PACK_MAX : (size_t)packed;
	}
	/* rumor agents first in peers[], then the rest */
	size_t nrumor = 0;
	for (size_t i = 0; i < k; i++)
		if (peers[i]->rumor) {
			struct swim_member *t = peers[nrumor];
			peers[nrumor++] = peers[i];
			peers[i] = t;
		}
	struct gossip_dest rd = {.to = peers, .n = nrumor};
	struct gossip_dest sd = {.to = peers + nrumor, .n = k - nrumor};
	gossip_to(s, &rd, budget, true, pkt, pcap, zbuf, zcap);
	gossip_to(s, &sd, budget, false, pkt, pcap, zbuf, zcap);
	/* rumor-only messages: as many rumor agents as a round of rumor agents
	 * alone would reach (the picks above that were not rumor agents are
	 * made up here), so that the Serf members of a mixed cluster do not
	 * slow them down */
	if (s->rq.n > 0 && nrumor < k) {
		struct gossip_pick pick = {.now = now, .taken = peers, .ntaken = k};
		struct swim_member *more[32];
		struct gossip_dest md = {.to = more};
		md.n = random_members(s, k - nrumor, more, ok_gossip_rumor, &pick);
		gossip_to(s, &md, budget, true, pkt, pcap, zbuf, zcap);
	}
	if (pkt != s->pkt)
		free(pkt);
	free(zbuf);
}

static bool ok_push_pull(const struct swim *s, const struct swim_member *m, const void *arg)
{
	return is_live_peer(s, m);
}

static void push_pull(struct swim *s)
{
	struct swim_member *peer;
	if (random_members(s, 1, &peer, ok_push_pull, NULL) == 1)
		s->io.push_pull(s->io.ctx, &peer->id->addr, peer->id->name, false);
}

/*
 * A node that just started settles its table with up to SWIM_SETTLE_COUNT
 * push-pulls to random members, each once the table has stopped growing for
 * SWIM_SETTLE_QUIET_MS (or SWIM_SETTLE_MAX_MS after it began to grow). In a
 * join storm gossip leaves each (node, member) pair unlearned with
 * probability about e^-(retransmit limit), 8 at N = 50: an early joiner
 * missed a late joiner's alive and waited for the regular push-pull, 30-60 s
 * later (issue 20: the last of 50 saw all after 38-54 s, the median after
 * 1.4 s). Memberlist has no such exchange; it costs one or two push-pulls per
 * start.
 */
static int64_t settle_deadline(const struct swim *s)
{
	if (s->settle_left <= 0 || s->settle_first == 0)
		return INT64_MAX;
	return min64(s->settle_last + SWIM_SETTLE_QUIET_MS, s->settle_first + SWIM_SETTLE_MAX_MS);
}

static void settle(struct swim *s, int64_t now)
{
	if (s->settle_left <= 0 || s->left)
		return;
	if (s->n != s->settle_n) {
		s->settle_n = s->n;
		if (s->settle_first == 0)
			s->settle_first = now;
		s->settle_last = now;
	}
	if (now < settle_deadline(s))
		return;
	s->settle_left--;
	s->settle_first = s->settle_last = 0;
	push_pull(s);
}

static bool ok_failed(const struct swim *s, const struct swim_member *m, const void *arg)
{
	return m->state == ML_STATE_DEAD;
}

/* serf's reconnect: try a random failed node with probability failed/alive. */
static void reconnect(struct swim *s, int64_t now)
{
	size_t failed = 0, alive = swim_num_alive(s);
	for (size_t i = 0; i < s->n; i++)
		if (node_at(s, i)->state == ML_STATE_DEAD)
			failed++;
	if (failed == 0)
		return;
	double prob = alive == 0 ? 1.0 : (double)failed / (double)alive;
	if ((double)rnd(s, 1000000) / 1000000.0 > prob)
		return;
	struct swim_member *m;
	if (random_members(s, 1, &m, ok_failed, NULL) == 1)
		s->io.push_pull(s->io.ctx, &m->id->addr, m->id->name, true);
}

static void reap(struct swim *s, int64_t now)
{
	for (size_t i = 0; i < s->n;) {
		struct swim_member *m = node_at(s, i);
		if (m != s->self && (m->state == ML_STATE_DEAD || m->state == ML_STATE_LEFT) &&
		    now - m->state_change > s->t.reconnect_timeout_ms) {
			emit(s, SWIM_EV_REAP, m);
			member_remove(s, m);
			continue;
		}
		i++;
	}
}

int64_t swim_next_deadline(const struct swim *s)
{
	/*
	 * The gossip tick only matters while the broadcast queue holds
	 * something: an idle agent does not wake 5 times a second for nothing
	 * (in a steady cluster that halved its wakeups and CPU). A broadcast
	 * queued while idle goes out at the next swim_tick() the driver runs
	 * after the call that queued it (next_gossip is then in the past).
	 */
	int64_t d = broadcasts_queued(s) > 0 ? s->next_gossip : INT64_MAX;
	/*
	 * Push-pull, reconnect and reap are housekeeping: when the probe tick
	 * comes within SWIM_HOUSEKEEPING_SLACK_MS after one falls due, it runs
	 * in that tick instead of waking the agent on its own.
	 */
	int64_t house = min64(s->next_push_pull, min64(s->next_reconnect, s->next_reap));
	if (s->left || s->next_probe - house > SWIM_HOUSEKEEPING_SLACK_MS)
		d = min64(d, house);
	if (!s->left)
		d = min64(d, min64(s->next_probe, settle_deadline(s)));
	if (s->probe.stage == PROBE_DIRECT)
		d = min64(d, s->probe.timeout_at);
	if (s->probe.stage != PROBE_IDLE)
		d = min64(d, s->probe.end_at);
	for (int i = 0; i < s->nrelays; i++)
		d = min64(d, s->relays[i].deadline);
	for (size_t i = 0; i < s->nsusps; i++)
		d = min64(d, s->susps[i].deadline);
	/*
	 * Squeezed (crowded and starved: a join storm on a busy machine), the
	 * gossip round comes every swim_gossip_every_ms anyway, and whatever
	 * else falls due before it (a probe's start, its timeout or end, a
	 * relay's nack, a suspicion's end) waits for it, up to one round (see
	 * crowd_stretch). Each of those
	 * deadlines used to wake the agent on its own: mid-storm at N = 1,000
	 * an agent woke 5-8 times a second where its rounds alone were 5. The
	 * prober reads its socket at the tick that ends a probe stage
	 * (gossip/transport.c), so an ack that came meanwhile counts.
	 */
	if (squeezed(s) && d < s->next_gossip)
		d = s->next_gossip;
	return d;
}

int64_t swim_tick(struct swim *s, int64_t now)
{
	s->tick_now = now;
	if (s->starved)
		s->squeezed_until = now + SWIM_SQUEEZE_HOLD_MS;
	note_gen(s, now);
	/* suspicions that ran out; a starved node waits for the refutation
	 * that may be queued behind its own lateness, up to the suspicion's
	 * longest timeout (see swim_note_late) */
	for (size_t i = 0; i < s->nsusps;) {
		struct swim_member *m = s->susps[i].m;
		struct swim_suspicion *sp = &s->susps[i];
		if (sp->deadline <= now && s->starved && now < sp->start + sp->max) {
			int64_t later = now + s->t.probe_interval_ms;
			sp->deadline = later < sp->start + sp->max ? later : sp->start + sp->max;
			s->stats.deaths_deferred++;
		}
		if (sp->deadline <= now) {
			struct ml_suspect d;
			memset(&d, 0, sizeof(d));
			d.incarnation = m->incarnation;
			copy_name(d.node, sizeof(d.node), m->id->name);
			copy_name(d.from, sizeof(d.from), s->self->id->name);
			dead_node(s, now, &d); /* removes it from suspects */
			continue;
		}
		i++;
	}
	/* relays whose target did not answer: nack the origin */
	for (int i = 0; i < s->nrelays;) {
		if (s->relays[i].deadline <= now) {
			if (s->relays[i].nack) {
				struct ml_nack nack = {.seq = s->relays[i].origin_seq};
				int r = ml_encode_nack(s->msgbuf, s->bufcap, &nack);
				struct ml_addr to = s->relays[i].origin;
				if (r > 0)
					send_with_piggyback(s, &to, s->msgbuf, (size_t)r, NULL,
					                    s->relays[i].origin_pmax);
			}
			relay_remove(s, i);
			continue;
		}
		i++;
	}
	/* the probe in flight */
	if (s->probe.stage == PROBE_DIRECT && now >= s->probe.timeout_at)
		probe_indirect(s, now);
	if (s->probe.stage != PROBE_IDLE && now >= s->probe.end_at)
		probe_failed(s, now);
	if (!s->left && now >= s->next_probe) {
		if (s->probe.stage != PROBE_IDLE)
			probe_failed(s, now);
		probe_start(s, now);
		s->next_probe = now + scaled_probe_interval(s);
	}
	if (now >= s->next_gossip) {
		gossip(s, now);
		s->next_gossip = now + swim_gossip_every_ms(s);
	}
	settle(s, now);
	if (now >= s->next_push_pull) {
		if (!s->left)
			push_pull(s);
		s->next_push_pull = now + swim_push_pull_scale_ms(s->t.push_pull_interval_ms, s->n);
	}
	if (now >= s->next_reconnect) {
		if (!s->left)
			reconnect(s, now);
		s->next_reconnect = now + s->t.reconnect_interval_ms;
	}
	if (now >= s->next_reap) {
		reap(s, now);
		s->next_reap = now + s->t.reap_interval_ms;
	}
	s->starved = false; /* each tick's notes speak for that tick */
	return swim_next_deadline(s);
}

/* -------------------------------------------------------- public API */

struct swim *swim_new(const struct swim_config *cfg, const struct swim_io *io, int64_t now,
                      char *err, size_t errlen)
{
	if (cfg->name == NULL || cfg->name[0] == '\0' || strlen(cfg->name) > ML_NAME_MAX) {
		snprintf(err, errlen, "node name must be 1 to %d bytes", ML_NAME_MAX);
		return NULL;
	}
	if (cfg->meta_len > ML_META_MAX) {
		snprintf(err, errlen, "node meta is %zu bytes, the limit is %d", cfg->meta_len,
		         ML_META_MAX);
		return NULL;
	}
	if (io->send == NULL || io->rand32 == NULL || io->push_pull == NULL) {
		snprintf(err, errlen, "swim_io: send, rand32 and push_pull are required");
		return NULL;
	}
	struct swim *s = xcalloc(1, sizeof(*s));
	s->merge_news = UINT32_MAX;
	s->io = *io;
	s->is_rumor = cfg->is_rumor;
	s->is_rumor_agent = cfg->is_rumor_agent;
	s->t = cfg->timing;
	if (s->t.udp_budget == 0 || s->t.udp_budget > ML_UDP_RECV_MAX)
		s->t.udp_budget = ML_UDP_MAX;
	s->bufcap = (s->t.udp_budget > ML_UDP_MAX ? s->t.udp_budget : ML_UDP_MAX) + 1024;
	s->zratio = 100;
	s->pp_max = cfg->push_pull_max_nodes ? cfg->push_pull_max_nodes : SWIM_PUSH_PULL_MAX_NODES;
	s->merge_slice = cfg->merge_slice;
	s->pkt = xcalloc(1, s->bufcap);
	s->msgbuf = xcalloc(1, s->bufcap);
	bcast_queue_create(&s->bq, SWIM_BCAST_DEPTH);
	bcast_queue_create(&s->uq, SWIM_BCAST_DEPTH);
	bcast_queue_create(&s->rq, SWIM_BCAST_DEPTH);
	s->rq.next_id = (uint64_t)1 << 62; /* ids of both user queues never meet */
	s->idents = cfg->idents;
	if (s->idents == NULL) {
		s->idents = swim_idents_new();
		s->own_idents = true;
	}
	s->self = member_add(s, cfg->name, &cfg->addr, cfg->vsn, cfg->meta, cfg->meta_len);
	s->self->state = ML_STATE_ALIVE;
	s->self->state_change = s->self->known_since = now;
	s->members_gen++;
	s->self->incarnation = 1; /* memberlist's setAlive: nextIncarnation() */
	/* announce ourselves */
	broadcast_alive(s, s->self);
	/* stagger the periodic work like memberlist's randomized tickers */
	s->next_probe = now + rnd(s, (uint32_t)s->t.probe_interval_ms + 1);
	s->next_gossip = now + rnd(s, (uint32_t)s->t.gossip_interval_ms + 1);
	/* The first push-pull 30-60 s after start whatever the size (memberlist
	 * waits a stagger plus a scaled interval, up to 180 s at 500 nodes):
	 * gossip leaves each (node, member) pair unlearned with probability
	 * about e^-(retransmit limit), so a few pairs in a fresh 300-node
	 * cluster wait for this exchange. */
	s->next_push_pull =
	        now + s->t.push_pull_interval_ms + rnd(s, (uint32_t)s->t.push_pull_interval_ms + 1);
	s->next_reconnect = now + s->t.reconnect_interval_ms;
	s->next_reap = now + s->t.reap_interval_ms;
	s->changed_at = now;
	s->repair_wait = SWIM_REPAIR_MIN_MS;
	s->dg_gen = UINT64_MAX;
	s->settle_left = SWIM_SETTLE_COUNT;
	s->settle_n = s->n;
	if (!cfg->disable_coordinates) {
		uint64_t seed = (uint64_t)s->io.rand32(s->io.ctx) << 32;
		seed |= s->io.rand32(s->io.ctx);
		s->cc = xmalloc(sizeof(*s->cc));
		coord_client_init(s->cc, NULL, seed);
	}
	return s;
}

void swim_free(struct swim *s)
{
	if (s == NULL)
		return;
	probe_end(s);
	for (size_t i = 0; i < s->n; i++)
		swim_ident_put(s->idents, node_at(s, i)->id);
	if (s->own_idents)
		swim_idents_free(s->idents);
	for (size_t c = 0; c < s->chunks_cap && c * SWIM_CHUNK < s->nslots; c++)
		free(s->chunks[c]);
	free(s->chunks);
	free(s->free_slots);
	free(s->nodes);
	free(s->index);
	free(s->susps);
	free(s->pkt);
	free(s->msgbuf);
	reply_forget(s);
	if (s->cc != NULL) {
		coord_client_free(s->cc);
		free(s->cc);
	}
	for (size_t i = 0; i < s->coords_cap; i++)
		free(s->coords[i]);
	free(s->coords);
	bcast_queue_destroy(&s->bq);
	bcast_queue_destroy(&s->uq);
	bcast_queue_destroy(&s->rq);
	while (s->mq != NULL) {
		struct swim_merge *mj = s->mq;
		s->mq = mj->next;
		free(mj->buf);
		free(mj);
	}
	free(s);
}

void swim_set_meta(struct swim *s, int64_t now, const uint8_t *meta, size_t len)
{
	if (len > ML_META_MAX)
		return;
	member_set_ident(s, s->self, &s->self->id->addr, s->self->id->vsn, meta, len);
	s->self->incarnation++;
	broadcast_alive(s, s->self);
	emit(s, SWIM_EV_UPDATE, s->self);
}

void swim_leave(struct swim *s, int64_t now)
{
	if (s->left)
		return;
	s->left = true;
	probe_end(s);
	struct ml_suspect d;
	memset(&d, 0, sizeof(d));
	d.incarnation = s->self->incarnation;
	copy_name(d.node, sizeof(d.node), s->self->id->name);
	copy_name(d.from, sizeof(d.from), s->self->id->name);
	dead_node(s, now, &d);
	if (swim_num_alive(s) == 0)
		s->leave_bcast_id = 0;
	/* spread it now rather than at the next gossip tick */
	s->next_gossip = now;
}

bool swim_leave_done(const struct swim *s)
{
	if (!s->left)
		return false;
	if (s->leave_bcast_id == 0)
		return true;
	return !bcast_queue_contains(&s->bq, s->leave_bcast_id);
}

int swim_force_leave(struct swim *s, int64_t now, const char *name, bool prune)
{
	struct swim_member *m = member_get(s, name);
	if (m == NULL || m == s->self)
		return -1;
	if (m->state == ML_STATE_DEAD || m->state == ML_STATE_SUSPECT) {
		suspicion_clear(s, m);
		m->state = ML_STATE_LEFT;
		m->state_change = now;
		s->members_gen++;
		emit(s, SWIM_EV_LEFT, m);
	}
	if (prune && (m->state == ML_STATE_LEFT)) {
		emit(s, SWIM_EV_REAP, m);
		member_remove(s, m);
	}
	return 0;
}

uint64_t swim_broadcast_user(struct swim *s, const uint8_t *msg, size_t len)
{
	uint8_t buf[ML_UDP_MAX];
	int r = ml_encode_user(buf, sizeof(buf), msg, len);
	if (r > 0)
		return bcast_queue_push(&s->uq, BK_USER, NULL, buf, (size_t)r);
	return 0;
}

/* Where rumor-only messages wait: their own queue, or the user queue when
 * every member is a rumor agent. Serf's user messages there are unnamed, so
 * a name never matches one of them. */
static struct bcast_queue *rumor_queue(struct swim *s)
{
	return s->is_rumor != NULL ? &s->rq : &s->uq;
}

uint64_t swim_broadcast_rumor(struct swim *s, const void *key, size_t key_len, const uint8_t *msg,
                              size_t len)
{
	uint8_t buf[ML_UDP_MAX];
	int r = ml_encode_user(buf, sizeof(buf), msg, len);
	if (r <= 0)
		return 0;
	uint64_t h = key != NULL ? bcast_key_hash(key, key_len) : 0;
	return bcast_queue_push_hashed(rumor_queue(s), BK_USER, h, buf, (size_t)r);
}

/*
 * The rule of "Crowded queue" (alive_node) for rumor-only messages: in a
 * join storm every new agent writes its catalog record, and each agent
 * heard each record back some twelve times for every time it took one in
 * (a 1,000-agent storm: 4,800 KV messages received per agent, 395
 * applied). Only while the queue is crowded; a short one sends each
 * message its full count.
 */
bool swim_rumor_echo(struct swim *s, const void *key, size_t key_len)
{
	if (key == NULL || !credit_echo(s, rumor_queue(s), BK_USER, key, key_len))
		return false;
	s->stats.rumors_credited++;
	return true;
}

bool swim_broadcast_pending(const struct swim *s, uint64_t id)
{
	return id != 0 && (bcast_queue_contains(&s->uq, id) || bcast_queue_contains(&s->rq, id));
}

void swim_send_user(struct swim *s, const struct ml_addr *to, const uint8_t *msg, size_t len)
{
	uint8_t buf[ML_UDP_MAX];
	int r = ml_encode_user(buf, sizeof(buf), msg, len);
	if (r <= 0)
		return;
	s->stats.packets_sent++;
	s->stats.bytes_sent += (uint64_t)r;
	s->io.send(s->io.ctx, to, buf, (size_t)r);
}

void swim_reset_broadcasts(struct swim *s)
{
	bcast_queue_clear(&s->bq);
	bcast_queue_clear(&s->uq);
	bcast_queue_clear(&s->rq);
	s->leave_bcast_id = 0;
	s->settle_left = 0; /* a converged start has nothing to settle */
}

size_t swim_member_count(const struct swim *s)
{
	return s->n;
}

const struct swim_member *swim_member_at(const struct swim *s, size_t i)
{
	return i < s->n ? node_at(s, i) : NULL;
}

const struct swim_member *swim_member_find(const struct swim *s, const char *name)
{
	return member_get(s, name);
}

const struct swim_member *swim_self(const struct swim *s)
{
	return s->self;
}

size_t swim_num_alive(const struct swim *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (node_at(s, i) != s->self && (node_at(s, i)->state == ML_STATE_ALIVE ||
		                                 node_at(s, i)->state == ML_STATE_SUSPECT))
			n++;
	return n;
}

uint64_t swim_members_gen(const struct swim *s)
{
	return s->members_gen;
}

/*
 * Lifeguard's local health awareness takes a missed nack or a refutation as a
 * sign that this node, not its peers, is slow. A driver that finds itself
 * scheduled a whole probe timeout late (the process did not get the CPU: a
 * thousand agents on two cores) has the same evidence first hand, and says so
 * here: one step up, as a missed nack, so probing slows and waits longer
 * while the node is starved, and each successful probe steps it down again.
 *
 * It also makes the probe in flight inconclusive (probe_failed), as does a
 * fifth of a probe timeout spent waiting for a CPU while the probe ran (the
 * kernel's run-queue delay, swim_note_run_delay; a process woken by packets
 * rather than its timer shows starvation there, not as a late tick): a
 * starved node does not suspect a peer for failing a test it would have
 * failed itself. And a suspicion that runs out on a tick that found the node
 * starved waits another probe interval, up to the suspicion's longest
 * timeout, before the member is declared dead: the refutation may be sitting
 * behind the node's own lateness. On a machine shared by many agents the
 * silent peer was most likely starved too (at N = 1,000 on two cores such
 * probes started over a thousand suspicions, each costing a suspect, its
 * confirmations and a refuting alive gossiped to every node). A dead peer is
 * still found by this node's next probe made on time, or by any other
 * prober. Timing only: nothing on the wire changes.
 */
void swim_note_late(struct swim *s, int64_t late_ms)
{
	if (late_ms >= s->t.probe_timeout_ms) {
		s->stats.late_wakeups++;
		s->starved = true;
		awareness_apply(s, 1);
	}
}

void swim_note_run_delay(struct swim *s, int64_t ms)
{
	if (ms > 0)
		s->stats.cpu_wait_ms += (uint64_t)ms;
	if (ms >= starved_wait_ms(s))
		s->starved = true;
}

int swim_health_score(const struct swim *s)
{
	return s->awareness;
}

const struct swim_stats *swim_stats(const struct swim *s)
{
	return &s->stats;
}

bool swim_crowded(const struct swim *s)
{
	return broadcasts_queued(s) > SWIM_BCAST_BUSY;
}

int64_t swim_gossip_every_ms(const struct swim *s)
{
	return s->t.gossip_interval_ms * crowd_stretch(s);
}

size_t swim_broadcast_queue_len(const struct swim *s)
{
	return broadcasts_queued(s);
}

uint64_t swim_broadcast_queue_dropped(const struct swim *s)
{
	return s->bq.dropped + s->uq.dropped + s->rq.dropped;
}

const struct swim_timing *swim_timing(const struct swim *s)
{
	return &s->t;
}

const struct coord *swim_coord_self(const struct swim *s)
{
	return s->cc != NULL ? &s->cc->c : NULL;
}

const struct coord *swim_coord_of(const struct swim *s, const char *name)
{
	if (s->cc == NULL)
		return NULL;
	const struct swim_member *m = member_get(s, name);
	if (m == NULL)
		return NULL;
	if (m == s->self)
		return &s->cc->c;
	uint32_t slot = s->nodes[m->index];
	return slot < s->coords_cap ? s->coords[slot] : NULL;
}
