/*
 * tests/sim/sim.c — see sim.h.
 *
 * Data flow. Everything that happens is an event in one binary heap keyed
 * by (virtual µs, sequence): a node's timer (one pending tick per node,
 * identified by a generation so stale ticks are skipped), a datagram
 * arriving, the two halves of a TCP push-pull, a TCP ping finishing, a
 * scenario action, a periodic check. Handling an event calls into exactly
 * one core and then re-arms that core's tick from swim_next_deadline().
 *
 * The network sits in the cores' io.send: it drops (partition, loss),
 * delays (base + per-link spread + exponential jitter + slowness), and may
 * duplicate each datagram; jitter makes reordering happen naturally. TCP is
 * reliable: a lost SYN or segment only costs a retransmission timeout.
 *
 * The truth (up, crashed, left; partitions; pauses) is kept beside the
 * cores; the event callbacks of every core are compared against it.
 *
 * KV (only when the scenario enables it): see "KV replication" below; its
 * events (operations, anti-entropy timers, session frames, checkpoints)
 * share the heap, and a node's store batch is committed after each event.
 */
#define _GNU_SOURCE
#include "tests/sim/sim.h"

#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gossip/coord.h"
#include "gossip/tags.h"
#include "gossip/wire.h"
#include "kv/engine.h"
#include "kv/hlc.h"
#include "kv/repl.h"
#include "kv/store.h"
#include "tests/sim/coordacc.h"

#define SIM_PORT 7946
#define TRACE_CAP 8192
#define MAX_GROUPS 8
#define UDP_QUEUE_MAX 512 /* datagrams a paused node's socket buffer holds */

/* ------------------------------------------------------------ PRNG */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* uniform in [0,1) */
static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------ events */

enum ev_type {
	EV_TICK,
	EV_PACKET,
	EV_PP_REQ,
	EV_PP_REPLY,
	EV_TCP_PING,
	EV_TCP_DONE,
	EV_ACTION,
	EV_CHECK,
	EV_UNPAUSE_END,
	EV_LEAVE_STOP,
	EV_COORD, /* sample the coordinates' error */
	EV_KV_OP, /* the KV events stay last: kv_handle() takes them */
	EV_KV_FRAME,
	EV_KV_FAIL,
	EV_KV_TIMER,
	EV_KV_CKPT,
};

struct ev {
	int64_t t; /* µs */
	uint64_t seq;
	uint8_t type;
	uint8_t flag;
	uint32_t node;
	uint32_t from;
	uint32_t gen;
	int64_t aux;
	uint8_t *data;
	uint32_t len;
};

enum truth { T_NONE, T_UP, T_CRASHED, T_LEFT };

struct node {
	struct swim *s;
	int id;
	char name[16];
	struct ml_addr addr;
	enum truth truth;
	bool leaving;
	int life; /* restarts */
	uint32_t tick_gen;
	int64_t tick_at; /* µs; INT64_MAX when none pending */
	int64_t pause_until;
	int64_t slow_until;
	double slow_us;
	int queued; /* datagrams waiting while paused */
	int group;
	int64_t excuse_until;
	struct rng rng;
	uint32_t last_self_inc;
	uint64_t last_sent;
	int64_t up_since;
	int64_t sees_all_at; /* join storm: first time it listed every node alive */
	/* accumulated traffic of previous lives */
	uint64_t pk_sent, by_sent;
};

struct track {
	int kind; /* 0 join, 1 fail, 2 leave */
	int subject;
	int64_t t0;
	int64_t first_suspect, first_dead, t50, t99, t100;
	int population, known;
	uint8_t *seen; /* 0 not an observer, 1 waiting, 2 knows */
	int64_t *times;
};

struct trace_rec {
	int64_t t;
	uint8_t what; /* enum swim_event_type, or 100+ for actions */
	int obs, subj;
	uint32_t inc;
};

struct simkv;

struct sim {
	struct sim_cfg cfg;
	struct simkv *kv;      /* NULL unless the scenario enables KV */
	struct sim_topo *topo; /* NULL: the flat latency model */
	struct coordacc *cacc; /* NULL unless coordinates are on */
	double *join_err;      /* scratch: errors of pairs (joined node, partner) */
	double join_median;    /* at the last sample; -1: no joined node judged */
	FILE *coord_curve;
	struct swim_timing timing;
	/* one identity table for every node's view: each node's name, address
	 * and meta are stored once, not once per view (gossip/ident.h) */
	struct swim_idents *idents;
	struct node *nodes;
	int n, cap; /* started so far, capacity */
	struct ev *heap;
	size_t hn, hcap;
	uint64_t seq;
	int64_t now; /* µs */
	struct rng net, scen;
	double loss;
	bool block[MAX_GROUPS][MAX_GROUPS];
	bool partitioned;
	int64_t global_excuse_until;
	int64_t grace_us;
	bool warming;

	struct track *tracks;
	int ntracks, tracks_cap;

	uint32_t *view_inc; /* [obs * cap + subj], N <= VIEW_CHECK_MAX */

	/* counters */
	uint64_t packets, bytes, dropped, dup, delivered, tcp_pp, tcp_ping, tcp_bytes;
	double wall_start, wall_started;
	uint64_t fp, fp_excused, fp_suspect, events;
	int first_fp_subj;
	int64_t load_max_seen;
	double load_sum;
	uint64_t load_samples;
	int violations;
	int64_t full_mesh_at;
	size_t mem_before, mem_after;
	long rss_after_kb;

	struct trace_rec trace[TRACE_CAP];
	uint64_t ntrace;
	FILE *out;
};

#define VIEW_CHECK_MAX 2000

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (p == NULL)
		abort();
	return p;
}

static bool ev_before(const struct ev *a, const struct ev *b)
{
	return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static void heap_push(struct sim *sim, struct ev e)
{
	if (sim->hn == sim->hcap) {
		sim->hcap = sim->hcap ? sim->hcap * 2 : 1024;
		sim->heap = realloc(sim->heap, sim->hcap * sizeof(*sim->heap));
		if (sim->heap == NULL)
			abort();
	}
	e.seq = sim->seq++;
	size_t i = sim->hn++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_before(&e, &sim->heap[p]))
			break;
		sim->heap[i] = sim->heap[p];
		i = p;
	}
	sim->heap[i] = e;
}

static struct ev heap_pop(struct sim *sim)
{
	struct ev top = sim->heap[0];
	struct ev last = sim->heap[--sim->hn];
	size_t i = 0, n = sim->hn;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct ev *best = &last;
		if (l < n && ev_before(&sim->heap[l], best)) {
			m = l;
			best = &sim->heap[l];
		}
		if (r < n && ev_before(&sim->heap[r], best))
			m = r;
		if (m == i)
			break;
		sim->heap[i] = sim->heap[m];
		i = m;
	}
	if (n > 0)
		sim->heap[i] = last;
	return top;
}

static int64_t now_ms(const struct sim *sim)
{
	return sim->now / 1000;
}

/* ------------------------------------------------------------ trace */

static void trace_add(struct sim *sim, int what, int obs, int subj, uint32_t inc)
{
	struct trace_rec *r = &sim->trace[sim->ntrace++ % TRACE_CAP];
	r->t = sim->now;
	r->what = (uint8_t)what;
	r->obs = obs;
	r->subj = subj;
	r->inc = inc;
}

static const char *what_name(int w)
{
	static const char *ev[] = {"join", "update", "suspect", "failed", "left", "reap"};
	static const char *act[] = {"CRASH", "RESTART",   "LEAVE",    "JOIN",
	                            "PAUSE", "PARTITION", "HEAL",     "LOSS",
	                            "SLOW",  "KV_WRITE",  "KV_DELETE"};
	if (w < 6)
		return ev[w];
	if (w >= 100 && w < 111)
		return act[w - 100];
	return "?";
}

/* Print the last records about subj (or all when subj < 0). */
static void trace_print(struct sim *sim, int subj, int max)
{
	FILE *o = sim->out;
	fprintf(o, "  seed %llu; trace%s (last %d):\n", (unsigned long long)sim->cfg.seed,
	        subj >= 0 ? " of the subject" : "", max);
	uint64_t start = sim->ntrace > TRACE_CAP ? sim->ntrace - TRACE_CAP : 0;
	uint64_t *pick = xcalloc((size_t)max, sizeof(*pick));
	int np = 0;
	for (uint64_t i = sim->ntrace; i > start && np < max; i--) {
		struct trace_rec *r = &sim->trace[(i - 1) % TRACE_CAP];
		if (subj < 0 || r->subj == subj || (r->what >= 100 && r->subj < 0))
			pick[np++] = i - 1;
	}
	for (int k = np - 1; k >= 0; k--) {
		struct trace_rec *r = &sim->trace[pick[k] % TRACE_CAP];
		if (r->what >= 100)
			fprintf(o, "    %10.3f s  %-9s n%d\n", r->t / 1e6, what_name(r->what),
			        r->subj);
		else
			fprintf(o, "    %10.3f s  n%d sees n%d %s (inc %u)\n", r->t / 1e6, r->obs,
			        r->subj, what_name(r->what), r->inc);
	}
	free(pick);
}

/* Counts a violation and prints the first 10; true when it printed (the
 * caller then prints its trace). */
static bool violation_vprint(struct sim *sim, const char *fmt, va_list ap)
{
	sim->violations++;
	if (sim->violations > 10)
		return false;
	fprintf(sim->out, "VIOLATION at %.3f s: ", sim->now / 1e6);
	vfprintf(sim->out, fmt, ap);
	fprintf(sim->out, "\n");
	return true;
}

static void violation(struct sim *sim, int subj, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void violation(struct sim *sim, int subj, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	bool printed = violation_vprint(sim, fmt, ap);
	va_end(ap);
	if (printed)
		trace_print(sim, subj, 24);
}

/* ------------------------------------------------------------ network */

static void node_addr(int id, struct ml_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->len = 4;
	a->ip[0] = 10;
	a->ip[1] = (uint8_t)(id >> 16);
	a->ip[2] = (uint8_t)(id >> 8);
	a->ip[3] = (uint8_t)id;
	a->port = SIM_PORT;
}

static int addr_node(const struct sim *sim, const struct ml_addr *a)
{
	if (a->len != 4 || a->ip[0] != 10 || a->port != SIM_PORT)
		return -1;
	int id = a->ip[1] << 16 | a->ip[2] << 8 | a->ip[3];
	return id < sim->n ? id : -1;
}

static int name_node(const struct sim *sim, const char *name)
{
	if (name[0] != 'n')
		return -1;
	int id = atoi(name + 1);
	return id >= 0 && id < sim->n ? id : -1;
}

static bool link_ok(const struct sim *sim, int a, int b)
{
	return !sim->block[sim->nodes[a].group][sim->nodes[b].group];
}

static bool node_paused(const struct sim *sim, const struct node *nd)
{
	return nd->pause_until > sim->now;
}

static double node_slow(const struct sim *sim, const struct node *nd)
{
	return nd->slow_until > sim->now ? nd->slow_us : 0.0;
}

static uint64_t mix2(int a, int b)
{
	uint64_t x = (uint64_t)a * 0x9e3779b97f4a7c15ull ^ (uint64_t)b * 0xc2b2ae3d27d4eb4full;
	return splitmix64(&x);
}

/* The fixed part of the one-way delay a -> b in µs: from the latency
 * matrix, or the flat model's base + per-link spread. Coordinates are
 * judged against twice this. */
static double base_oneway_us(const struct sim *sim, int a, int b)
{
	if (sim->topo != NULL)
		return sim_topo_oneway_us(sim->topo, a, b);
	double base = sim->cfg.latency_ms * 1000.0;
	int lo = a < b ? a : b, hi = a < b ? b : a;
	base += (double)(mix2(lo, hi) % 1000) / 1000.0 * sim->cfg.link_spread_ms * 1000.0;
	return base;
}

/* One-way latency a -> b in µs: the base, exponential jitter, slowness. */
static int64_t latency_us(struct sim *sim, int a, int b)
{
	double base = base_oneway_us(sim, a, b);
	double j = sim->cfg.jitter_ms * 1000.0;
	if (j > 0)
		base += -log(1.0 - rng_unit(&sim->net)) * j;
	base += node_slow(sim, &sim->nodes[a]) + node_slow(sim, &sim->nodes[b]);
	return (int64_t)base + 1;
}

/* A reliable TCP transfer a -> b: latency plus an RTO for each lost try. */
static int64_t tcp_latency_us(struct sim *sim, int a, int b, int segments)
{
	int64_t t = 0;
	for (int i = 0; i < segments; i++) {
		int64_t rto = i == 0 ? 1000000 : 200000; /* SYN: 1 s, data: 200 ms */
		while (sim->loss > 0 && rng_unit(&sim->net) < sim->loss) {
			t += rto;
			rto *= 2;
		}
		t += latency_us(sim, a, b);
	}
	return t;
}

static void sim_deliver_later(struct sim *sim, int type, int to, int from, int64_t at,
                              const uint8_t *p, size_t len, int64_t aux)
{
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.t = at;
	e.type = (uint8_t)type;
	e.node = (uint32_t)to;
	e.from = (uint32_t)from;
	e.aux = aux;
	if (len > 0) {
		e.data = malloc(len);
		if (e.data == NULL)
			abort();
		memcpy(e.data, p, len);
	}
	e.len = (uint32_t)len;
	heap_push(sim, e);
}

/* Every core's ctx is its struct node; the sim is found through this. */
static struct sim *g_sim;

static void net_send(void *ctx, const struct ml_addr *to, const uint8_t *pkt, size_t len)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	sim->packets++;
	sim->bytes += len;
	int b = addr_node(sim, to);
	if (b < 0 || !link_ok(sim, nd->id, b)) {
		sim->dropped++;
		return;
	}
	if (sim->loss > 0 && rng_unit(&sim->net) < sim->loss) {
		sim->dropped++;
		return;
	}
	sim_deliver_later(sim, EV_PACKET, b, nd->id, sim->now + latency_us(sim, nd->id, b), pkt,
	                  len, 0);
	if (sim->cfg.dup > 0 && rng_unit(&sim->net) < sim->cfg.dup) {
		sim->dup++;
		sim_deliver_later(sim, EV_PACKET, b, nd->id, sim->now + latency_us(sim, nd->id, b),
		                  pkt, len, 0);
	}
}

/* The virtual clock in µs: SWIM times its probes' round trips with it. */
static int64_t net_clock_us(void *ctx)
{
	(void)ctx;
	return g_sim->now;
}

static uint32_t net_rand32(void *ctx)
{
	struct node *nd = ctx;
	return (uint32_t)(rng_next(&nd->rng) >> 32);
}

static void start_push_pull(struct sim *sim, int a, int b, bool join)
{
	struct node *na = &sim->nodes[a];
	sim->tcp_pp++;
	if (b < 0 || !link_ok(sim, a, b) || !link_ok(sim, b, a))
		return; /* connect fails; memberlist logs and moves on */
	size_t len;
	uint8_t *req = swim_local_state_new(na->s, now_ms(sim), join, &len);
	sim->tcp_bytes += len;
	sim_deliver_later(sim, EV_PP_REQ, b, a, sim->now + tcp_latency_us(sim, a, b, 2), req, len,
	                  join);
	free(req);
}

static void net_push_pull(void *ctx, const struct ml_addr *to, const char *name, bool join)
{
	struct node *nd = ctx;
	start_push_pull(g_sim, nd->id, addr_node(g_sim, to), join);
}

static void net_tcp_ping(void *ctx, const struct ml_addr *to, uint32_t seq, const uint8_t *pkt,
                         size_t len, int64_t deadline)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	sim->tcp_ping++;
	int b = addr_node(sim, to);
	int64_t dl = deadline * 1000;
	if (b < 0 || !link_ok(sim, nd->id, b) || !link_ok(sim, b, nd->id)) {
		struct ev e = {.t = dl,
		               .type = EV_TCP_DONE,
		               .node = (uint32_t)nd->id,
		               .gen = (uint32_t)nd->life,
		               .aux = seq,
		               .flag = 0};
		heap_push(sim, e);
		return;
	}
	/* the ping travels to b; aux packs seq and deadline */
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.t = sim->now + tcp_latency_us(sim, nd->id, b, 2);
	e.type = EV_TCP_PING;
	e.node = (uint32_t)b;
	e.from = (uint32_t)nd->id;
	e.gen = seq;
	e.aux = dl;
	e.data = malloc(len);
	if (e.data == NULL)
		abort();
	memcpy(e.data, pkt, len);
	e.len = (uint32_t)len;
	heap_push(sim, e);
}

/* ------------------------------------------------------------ KV replication */

/*
 * The second driver of the KV engine (kv/engine.h), the one kv/kv.c is on
 * libev, here on the virtual clock. Per node: an engine with its store in
 * <tmpdir>/n<id>, whose now_ms is the node's virtual wall time and whose
 * kv_io draws from the node's PRNG, broadcasts through its SWIM core, arms
 * its anti-entropy timer as an EV_KV_TIMER event and opens its sessions on
 * the simulated network. Everything one event changes at a node is one
 * batch; kv_flush() commits it when the event is done (kv.c's prepare
 * watcher). A session's two ends are the two engines' kv_sessions; their
 * frames travel as EV_KV_FRAME events with the TCP latency model; an
 * unreachable peer fails after the connect timeout, a dead one at once, a
 * partition mid-session makes it time out. The sim keeps every
 * acknowledged write and, per node and key, the version the replica last
 * held, to check the invariants.
 */
#define KV_EPOCH_MS 1700000000000LL /* wall-clock ms at virtual time 0 */
#define KV_CONNECT_TIMEOUT_US (KV_SYNC_CONNECT_TIMEOUT_MS * 1000LL)
#define KV_SESSION_TIMEOUT_US (KV_SYNC_TIMEOUT_MS * 1000LL)
#define KV_CHECKPOINT_US (KV_CHECKPOINT_INTERVAL_MS * 1000LL)
#define KV_TRACE_CAP 8192

enum kv_trace_what {
	KT_WRITE,
	KT_DELETE,
	KT_GOSSIP,
	KT_SYNC,
	KT_PULL,
	KT_SYNC_START,
	KT_SYNC_OK,
	KT_SYNC_FAIL,
	KT_PULL_START,
	KT_CRASH,
	KT_RESTART,
	KT_PARTITION,
	KT_HEAL,
	KT_REFUSED,
};

struct kv_ver { /* a version; hlc 0: no record */
	uint64_t hlc;
	int32_t node;
	bool tomb;
};

struct kvnode {
	struct kv_engine *e; /* NULL while the node is down */
	struct rng rng;
	int64_t skew_ms;
	uint32_t sync_gen;
	int64_t sync_at; /* µs of the pending anti-entropy timer; INT64_MAX: none */
	bool ckpt_pending;
	int nconns;
	struct kv_ver *hw; /* per key: what the replica held last (kept across crashes) */
};

struct kv_key {
	char *name;
	size_t len;
	int *w; /* its acknowledged writes */
	int nw, capw;
};

struct kv_wr { /* an acknowledged write or delete */
	int key, node;
	uint64_t hlc;
	bool tomb;
	int64_t t0;
	int population, known;
	int64_t t50, t99, t100;
	uint8_t *seen; /* 0 not an observer, 1 waiting, 2 holds it (or a larger version) */
};

struct kv_conn {
	struct kv_conn *next;
	uint64_t id;
	int node[2], life[2]; /* 0: initiator or puller, 1: responder */
	bool open[2], closed[2];
	bool pull;
	struct kv_session *sess[2]; /* each end's, owned by its node's engine */
};

struct kv_trace_rec {
	int64_t t;
	uint8_t what;
	int node, peer, key;
	uint64_t hlc;
};

struct kv_heal {
	int64_t at;
	int64_t took; /* until every live replica has the same digest; -1: not yet */
	int64_t mesh; /* until every live node sees every other alive (at a check); -1 */
};

struct simkv {
	char dir[4096];
	struct kvnode *n; /* [sim->cap] */
	struct kv_key *keys;
	int nkeys;
	int *hidx; /* open addressing: key name -> index */
	size_t hcap;
	struct kv_wr *w;
	int nw, capw;
	struct kv_conn *conns;
	uint64_t conn_seq;
	struct rng rng;
	uint8_t *val;
	size_t valcap;
	struct kv_heal *heals;
	int nheals;
	bool conv_pending;
	size_t qmax; /* longest broadcast queue seen at a periodic check */
	/* counters */
	uint64_t acked, deletes, refused, noop, commits, checkpoints;
	uint64_t gossip_out, gossip_in, applied[4];
	uint64_t serf_unknown; /* rumor-only messages Serf nodes received */
	uint64_t syncs, syncs_ok, syncs_failed, pulls, pulls_failed;
	uint64_t records_out[2], bytes[2]; /* [0] sync sessions, [1] pulls */
	struct kv_trace_rec *trace;
	uint64_t ntrace;
};

static void schedule_tick(struct sim *sim, struct node *nd);
static int cmp_i64(const void *a, const void *b);
static void print_cell(FILE *o, double sec, double round_s);

static int64_t kv_wall_ms(const struct sim *sim, int id)
{
	return KV_EPOCH_MS + now_ms(sim) + sim->kv->n[id].skew_ms;
}

static void kv_trace_add(struct sim *sim, int what, int node, int peer, int key, uint64_t hlc)
{
	struct kv_trace_rec *r = &sim->kv->trace[sim->kv->ntrace++ % KV_TRACE_CAP];
	r->t = sim->now;
	r->what = (uint8_t)what;
	r->node = node;
	r->peer = peer;
	r->key = key;
	r->hlc = hlc;
}

/* "<ms since virtual 0>.<counter>@n<writer>" */
static const char *kv_ver_str(char *buf, size_t len, uint64_t hlc, int node)
{
	if (hlc == 0)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%lld.%u@n%d", (long long)(KV_HLC_MS(hlc) - KV_EPOCH_MS),
		         (unsigned)(hlc & 0xffff), node);
	return buf;
}

/* The last records about key (with crashes, restarts and partitions), or
 * all records when key < 0. */
static void kv_trace_print(struct sim *sim, int key, int max)
{
	static const char *what[] = {"write",      "delete",    "gossip",    "sync",       "pull",
	                             "sync-start", "sync-ok",   "sync-fail", "pull-start", "CRASH",
	                             "RESTART",    "PARTITION", "HEAL",      "refused"};
	struct simkv *kv = sim->kv;
	FILE *o = sim->out;
	fprintf(o, "  seed %llu; kv trace%s (last %d):\n", (unsigned long long)sim->cfg.seed,
	        key >= 0 ? " of the key" : "", max);
	uint64_t start = kv->ntrace > KV_TRACE_CAP ? kv->ntrace - KV_TRACE_CAP : 0;
	uint64_t *pick = xcalloc((size_t)max, sizeof(*pick));
	int np = 0;
	for (uint64_t i = kv->ntrace; i > start && np < max; i--) {
		struct kv_trace_rec *r = &kv->trace[(i - 1) % KV_TRACE_CAP];
		if (key < 0 || r->key == key || r->what >= KT_CRASH)
			pick[np++] = i - 1;
	}
	for (int k = np - 1; k >= 0; k--) {
		struct kv_trace_rec *r = &kv->trace[pick[k] % KV_TRACE_CAP];
		char v[48];
		char node[16] = "";
		if (r->node >= 0)
			snprintf(node, sizeof(node), "n%d", r->node);
		fprintf(o, "    %10.3f s  %-5s %-10s", r->t / 1e6, node, what[r->what]);
		if (r->key >= 0)
			fprintf(o, " %s = %s", kv->keys[r->key].name,
			        kv_ver_str(v, sizeof(v), r->hlc, r->peer));
		else if (r->peer >= 0)
			fprintf(o, " n%d", r->peer);
		fprintf(o, "\n");
	}
	free(pick);
}

static void kv_violation(struct sim *sim, int key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void kv_violation(struct sim *sim, int key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	bool printed = violation_vprint(sim, fmt, ap);
	va_end(ap);
	if (printed)
		kv_trace_print(sim, key, 24);
}

static int kv_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void kv_rmdir(struct simkv *kv)
{
	if (kv->dir[0] != '\0')
		nftw(kv->dir, kv_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	kv->dir[0] = '\0';
}

/* Storage failed under the simulator: nothing sensible can follow. */
static void kv_fatal(struct sim *sim, const char *what, const char *err)
{
	fprintf(stderr, "rumor-sim: kv: %s: %s\n", what, err);
	kv_rmdir(sim->kv);
	exit(2);
}

static uint64_t kv_fnv(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int kv_key_find(const struct simkv *kv, const char *name, size_t len)
{
	size_t m = kv->hcap - 1;
	for (size_t i = kv_fnv(name, len) & m;; i = (i + 1) & m) {
		int k = kv->hidx[i];
		if (k < 0)
			return -1;
		if (kv->keys[k].len == len && memcmp(kv->keys[k].name, name, len) == 0)
			return k;
	}
}

static void kv_key_add(struct simkv *kv, const char *name)
{
	size_t len = strlen(name);
	if (kv_key_find(kv, name, len) >= 0)
		return;
	struct kv_key *k = &kv->keys[kv->nkeys];
	k->name = strdup(name);
	if (k->name == NULL)
		abort();
	k->len = len;
	size_t m = kv->hcap - 1;
	size_t i = kv_fnv(name, len) & m;
	while (kv->hidx[i] >= 0)
		i = (i + 1) & m;
	kv->hidx[i] = kv->nkeys++;
}

/* The key table holds every key a scenario can write: k0..k<max keys - 1>
 * and the named ones. */
static void kv_keys_init(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	int maxk = 0, named = 0;
	for (int i = 0; i < sim->cfg.nactions; i++) {
		const struct sim_action *a = &sim->cfg.actions[i];
		if (a->type != SIM_KV_WRITE && a->type != SIM_KV_DELETE)
			continue;
		if (a->key != NULL)
			named++;
		else if (a->keys > maxk)
			maxk = a->keys;
	}
	int total = maxk + named;
	kv->keys = xcalloc((size_t)total, sizeof(*kv->keys));
	kv->hcap = 16;
	while (kv->hcap < (size_t)total * 2)
		kv->hcap *= 2;
	kv->hidx = xcalloc(kv->hcap, sizeof(*kv->hidx));
	for (size_t i = 0; i < kv->hcap; i++)
		kv->hidx[i] = -1;
	char name[32];
	for (int i = 0; i < maxk; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		kv_key_add(kv, name);
	}
	for (int i = 0; i < sim->cfg.nactions; i++) {
		const struct sim_action *a = &sim->cfg.actions[i];
		if ((a->type == SIM_KV_WRITE || a->type == SIM_KV_DELETE) && a->key != NULL)
			kv_key_add(kv, a->key);
	}
}

static struct kv_rec kv_rec_of(const struct sim *sim, const struct kv_ver *v)
{
	struct kv_rec r;
	memset(&r, 0, sizeof(r));
	r.hlc = v->hlc;
	if (v->hlc != 0 && v->node >= 0) {
		r.node = sim->nodes[v->node].name;
		r.node_len = (uint8_t)strlen(r.node);
	}
	return r;
}

/* (hlc, node) order through the store's own comparison; no record < any. */
static int kv_ver_cmp(const struct sim *sim, const struct kv_ver *a, const struct kv_ver *b)
{
	if (a->hlc == 0 || b->hlc == 0)
		return (a->hlc != 0) - (b->hlc != 0);
	struct kv_rec x = kv_rec_of(sim, a), y = kv_rec_of(sim, b);
	return kv_rec_cmp(&x, &y);
}

static struct kv_ver kv_ver_of(const struct sim *sim, const struct kv_rec *r)
{
	struct kv_ver v = {r->hlc, -1, r->tomb};
	char name[KV_NODE_MAX + 1];
	memcpy(name, r->node, r->node_len);
	name[r->node_len] = '\0';
	v.node = name_node(sim, name);
	return v;
}

/* Deterministic value bytes of a version, so replicas' values can be checked. */
static void kv_value_fill(uint8_t *p, size_t len, uint64_t hlc, int node)
{
	uint64_t x = hlc ^ ((uint64_t)node << 48), z = 0;
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			z = splitmix64(&x);
		p[i] = (uint8_t)(z >> (8 * (i % 8)));
	}
}

static uint8_t *kv_value_buf(struct simkv *kv, size_t len)
{
	if (kv->valcap < len || kv->val == NULL) {
		free(kv->val);
		kv->valcap = len > 64 ? len : 64;
		kv->val = malloc(kv->valcap);
		if (kv->val == NULL)
			abort();
	}
	return kv->val;
}

/* ---- spread of writes */

static void kv_wr_update(struct sim *sim, struct kv_wr *w)
{
	int p = w->population;
	int64_t dt = sim->now - w->t0;
	if (w->t50 < 0 && w->known * 2 >= p)
		w->t50 = dt;
	if (w->t99 < 0 && (double)w->known >= ceil(0.99 * p))
		w->t99 = dt;
	if (w->t100 < 0 && w->known >= p)
		w->t100 = dt;
}

static void kv_wr_mark(struct sim *sim, struct kv_wr *w, int obs)
{
	if (w->seen[obs] != 1)
		return;
	w->seen[obs] = 2;
	w->known++;
	kv_wr_update(sim, w);
}

/* Node id now holds version v of key: it holds every write of key up to v. */
static void kv_mark_key(struct sim *sim, int id, int key, const struct kv_ver *v)
{
	struct kv_key *k = &sim->kv->keys[key];
	for (int i = 0; i < k->nw; i++) {
		struct kv_wr *w = &sim->kv->w[k->w[i]];
		struct kv_ver wv = {w->hlc, w->node, w->tomb};
		if (w->seen[id] == 1 && kv_ver_cmp(sim, v, &wv) >= 0)
			kv_wr_mark(sim, w, id);
	}
}

static void kv_drop_observer(struct sim *sim, int id)
{
	for (int i = 0; i < sim->kv->nw; i++) {
		struct kv_wr *w = &sim->kv->w[i];
		if (w->seen[id] == 1) {
			w->seen[id] = 0;
			w->population--;
			kv_wr_update(sim, w);
		}
	}
}

/* One of the stock Serf agents of a mixed cluster (cfg.serf_nodes). */
static bool sim_is_serf(const struct sim *sim, int id)
{
	return id < sim->cfg.nodes && id >= sim->cfg.nodes - sim->cfg.serf_nodes;
}

static bool kv_live(const struct sim *sim, int id)
{
	const struct node *nd = &sim->nodes[id];
	return nd->truth == T_UP && !nd->leaving && sim->kv->n[id].e != NULL;
}

/* A local write of node id was committed: it is acknowledged. */
static void kv_ack(struct sim *sim, int id, int key, const struct kv_rec *r)
{
	struct simkv *kv = sim->kv;
	if (kv->nw == kv->capw) {
		kv->capw = kv->capw ? kv->capw * 2 : 256;
		kv->w = realloc(kv->w, (size_t)kv->capw * sizeof(*kv->w));
		if (kv->w == NULL)
			abort();
	}
	int wi = kv->nw++;
	struct kv_wr *w = &kv->w[wi];
	memset(w, 0, sizeof(*w));
	w->key = key;
	w->node = id;
	w->hlc = r->hlc;
	w->tomb = r->tomb;
	w->t0 = sim->now;
	w->t50 = w->t99 = w->t100 = -1;
	w->seen = xcalloc((size_t)sim->cap, 1);
	struct kv_key *k = &kv->keys[key];
	if (k->nw == k->capw) {
		k->capw = k->capw ? k->capw * 2 : 8;
		k->w = realloc(k->w, (size_t)k->capw * sizeof(*k->w));
		if (k->w == NULL)
			abort();
	}
	k->w[k->nw++] = wi;
	kv->acked++;
	kv->deletes += r->tomb;
	kv_trace_add(sim, r->tomb ? KT_DELETE : KT_WRITE, id, id, key, r->hlc);
	struct kv_ver wv = {w->hlc, id, w->tomb};
	for (int i = 0; i < sim->n; i++) {
		if (i == id || !kv_live(sim, i))
			continue;
		w->seen[i] = 1;
		w->population++;
	}
	kv_wr_update(sim, w);
	for (int i = 0; i < sim->n; i++) /* a concurrent larger version already there */
		if (w->seen[i] == 1 && kv_ver_cmp(sim, &kv->n[i].hw[key], &wv) >= 0)
			kv_wr_mark(sim, w, i);
}

/* The version of key in node id's replica (acknowledged data only). */
static struct kv_ver kv_read_ver(struct sim *sim, int id, int key)
{
	struct simkv *kv = sim->kv;
	struct kv_rec r;
	int got = kv_store_get(kv_engine_store(kv->n[id].e), true, kv->keys[key].name,
	                       kv->keys[key].len, &r);
	if (got < 0)
		kv_fatal(sim, "read", kv->keys[key].name);
	struct kv_ver v = {0, -1, false};
	if (got == 1)
		v = kv_ver_of(sim, &r);
	return v;
}

/* Read key back from node id's replica: it must not be older than what the
 * replica held before (invariant 3); then it counts for the spread. */
static void kv_observe(struct sim *sim, int id, int key, const char *when)
{
	struct simkv *kv = sim->kv;
	struct kvnode *kn = &kv->n[id];
	struct kv_ver v = kv_read_ver(sim, id, key);
	if (kv_ver_cmp(sim, &v, &kn->hw[key]) < 0) {
		char a[48], b[48];
		kv_violation(sim, key, "n%d's version of %s went backwards %s: %s -> %s", id,
		             kv->keys[key].name, when,
		             kv_ver_str(a, sizeof(a), kn->hw[key].hlc, kn->hw[key].node),
		             kv_ver_str(b, sizeof(b), v.hlc, v.node));
		return;
	}
	kn->hw[key] = v;
	if (v.hlc != 0)
		kv_mark_key(sim, id, key, &v);
}

static bool kv_converged(struct sim *sim)
{
	const uint64_t *first = NULL;
	for (int i = 0; i < sim->n; i++) {
		if (!kv_live(sim, i))
			continue;
		const uint64_t *d = kv_store_digest(kv_engine_store(sim->kv->n[i].e));
		if (first == NULL)
			first = d;
		else if (memcmp(first, d, KV_BUCKETS * sizeof(*d)) != 0)
			return false;
	}
	return true;
}

/* At the periodic check: has the membership healed too? */
static void kv_check_mesh(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	for (int i = 0; i < sim->n; i++) {
		if (sim->nodes[i].truth != T_UP)
			continue;
		size_t q = swim_broadcast_queue_len(sim->nodes[i].s);
		if (q > kv->qmax)
			kv->qmax = q;
	}
	int live = 0;
	for (int i = 0; i < sim->n; i++)
		live += sim->nodes[i].truth == T_UP && !sim->nodes[i].leaving;
	if (kv->nheals == 0 || kv->heals[kv->nheals - 1].mesh >= 0)
		return;
	for (int i = 0; i < sim->n; i++) {
		struct node *nd = &sim->nodes[i];
		if (nd->truth == T_UP && !nd->leaving && swim_num_alive(nd->s) + 1 < (size_t)live)
			return;
	}
	kv->heals[kv->nheals - 1].mesh = sim->now - kv->heals[kv->nheals - 1].at;
}

static void kv_check_converged(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	if (!kv->conv_pending || !kv_converged(sim))
		return;
	kv->conv_pending = false;
	kv->heals[kv->nheals - 1].took = sim->now - kv->heals[kv->nheals - 1].at;
}

/* ---- the engine's kv_io on the virtual clock and the simulated network */

/* A write's answer, at the commit: a storage error ends the run. */
static void kv_write_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	if (r == KV_ERROR)
		kv_fatal(ud, "write", "storage error");
}

/* Commit node id's open batch (kv.c's prepare watcher, once the event is
 * done): the engine acknowledges, checks (io.committed) and broadcasts its
 * changes; then arm the checkpoint as kv.c does. */
static void kv_flush(struct sim *sim, int id)
{
	struct simkv *kv = sim->kv;
	if (kv == NULL)
		return;
	struct kvnode *kn = &kv->n[id];
	if (kn->e == NULL)
		return;
	char err[256];
	int rc = kv_engine_commit(kn->e, kv_wall_ms(sim, id), err, sizeof(err));
	if (rc == 0)
		return;
	if (rc < 0)
		kv_fatal(sim, "commit", err);
	kv->commits++;
	if (kv_store_dirty(kv_engine_store(kn->e)) && !kn->ckpt_pending) {
		kn->ckpt_pending = true;
		struct ev e = {.t = sim->now + KV_CHECKPOINT_US,
		               .type = EV_KV_CKPT,
		               .node = (uint32_t)id,
		               .gen = (uint32_t)sim->nodes[id].life};
		heap_push(sim, e);
	}
	kv_check_converged(sim);
}

/* io.committed: a change is durable at node nd: acknowledge a local write,
 * trace a received one, and check the replica did not go backwards. */
static void kv_io_committed(void *ctx, const char *key, size_t key_len, const struct kv_rec *r,
                            enum kv_src src)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	int k = kv_key_find(sim->kv, key, key_len);
	if (k < 0)
		return;
	if (src == KV_SRC_LOCAL) {
		kv_ack(sim, nd->id, k, r);
	} else {
		sim->kv->applied[src]++;
		kv_trace_add(sim, KT_GOSSIP + src - KV_SRC_GOSSIP, nd->id, kv_ver_of(sim, r).node,
		             k, r->hlc);
	}
	kv_observe(sim, nd->id, k, "after a commit");
}

static uint32_t kv_io_rand(void *ctx, uint32_t n)
{
	struct node *nd = ctx;
	return (uint32_t)(rng_next(&g_sim->kv->n[nd->id].rng) % n);
}

static void kv_io_broadcast(void *ctx, const char *key, size_t key_len, const uint8_t *msg,
                            size_t len)
{
	struct node *nd = ctx;
	if (nd->s != NULL) {
		/* as agent.c: for rumor agents only, named by its key */
		swim_broadcast_rumor(nd->s, key, key_len, msg, len);
		g_sim->kv->gossip_out++;
	}
}

/* io.echo: as agent.c's */
static void kv_io_echo(void *ctx, const char *key, size_t key_len)
{
	struct node *nd = ctx;
	if (nd->s != NULL)
		swim_rumor_echo(nd->s, key, key_len);
}

/* io.gossip_backlog: as agent.c's, the node's broadcast queue. */
static size_t kv_io_gossip_backlog(void *ctx)
{
	struct node *nd = ctx;
	return nd->s != NULL ? swim_broadcast_queue_len(nd->s) : 0;
}

/* io.known_since: as agent.c's, on this node's (skewed) wall clock. */
static int64_t kv_io_known_since(void *ctx, const char *name)
{
	struct node *nd = ctx;
	const struct swim_member *m = nd->s != NULL ? swim_member_find(nd->s, name) : NULL;
	if (m == NULL)
		return INT64_MAX;
	return kv_wall_ms(g_sim, nd->id) - (now_ms(g_sim) - m->known_since);
}

/* io.peers: the alive members of the node's view that run KV (all, unless
 * serf_nodes: then those tags_is_rumor accepted, as agent.c's rpc_port). */
static void kv_io_peers(void *ctx, kv_peer_fn fn, void *ud)
{
	struct node *nd = ctx;
	if (g_sim->cfg.kv.no_sync || nd->s == NULL)
		return;
	size_t n = swim_member_count(nd->s);
	const struct swim_member *self = swim_self(nd->s);
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(nd->s, i);
		if (m != self && m->state == ML_STATE_ALIVE && m->rumor)
			fn(ud, m->id->name);
	}
}

static void kv_schedule_sync(struct sim *sim, int id, int64_t after_us)
{
	struct kvnode *kn = &sim->kv->n[id];
	kn->sync_at = sim->now + after_us;
	struct ev e = {
	        .t = kn->sync_at, .type = EV_KV_TIMER, .node = (uint32_t)id, .gen = ++kn->sync_gen};
	heap_push(sim, e);
}

static void kv_io_sync_arm(void *ctx, int64_t after_us)
{
	struct node *nd = ctx;
	kv_schedule_sync(g_sim, nd->id, after_us);
}

static int64_t kv_io_sync_left(void *ctx)
{
	struct node *nd = ctx;
	const struct kvnode *kn = &g_sim->kv->n[nd->id];
	return kn->sync_at == INT64_MAX ? -1 : kn->sync_at - g_sim->now;
}

/* ---- sessions over the simulated TCP stream */

static struct kv_conn *kv_conn_find(struct sim *sim, uint64_t id)
{
	for (struct kv_conn *c = sim->kv->conns; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* One side of a session ends; ok: it did its part. A side whose process is
 * gone is left to its engine, which frees the session with itself. */
static void kv_side_close(struct sim *sim, struct kv_conn *c, int side, bool ok)
{
	if (!c->open[side] || c->closed[side])
		return;
	c->closed[side] = true;
	int id = c->node[side];
	struct simkv *kv = sim->kv;
	struct kvnode *kn = &kv->n[id];
	kv->records_out[c->pull] += kv_session_records_out(c->sess[side]);
	if (sim->nodes[id].truth != T_UP || sim->nodes[id].life != c->life[side])
		return; /* that process is gone; its successor starts afresh */
	kn->nconns--;
	kv_session_end(c->sess[side], ok); /* a failed round: the next one soon */
	if (side != 0)
		return;
	if (c->pull) {
		kv->pulls_failed += !ok;
		return;
	}
	kv_trace_add(sim, ok ? KT_SYNC_OK : KT_SYNC_FAIL, id, c->node[1], -1, 0);
	if (ok)
		kv->syncs_ok++;
	else
		kv->syncs_failed++;
}

static void kv_conn_free(struct sim *sim, struct kv_conn *c)
{
	for (struct kv_conn **pp = &sim->kv->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	free(c);
}

static void kv_conn_fail(struct sim *sim, struct kv_conn *c)
{
	kv_side_close(sim, c, 0, false);
	kv_side_close(sim, c, 1, false);
	kv_conn_free(sim, c);
}

/* Frames from one side to the other: they arrive after the TCP latency if
 * the link is up both ways; otherwise they never do and the session times
 * out (a partition that heals within the timeout is not retransmitted). */
static void kv_send(struct sim *sim, struct kv_conn *c, int from, const struct kv_buf *out,
                    int segments)
{
	if (out->len == 0)
		return;
	int a = c->node[from], b = c->node[1 - from];
	sim->kv->bytes[c->pull] += out->len;
	if (!link_ok(sim, a, b) || !link_ok(sim, b, a))
		return;
	segments += (int)(out->len / 65536);
	sim_deliver_later(sim, EV_KV_FRAME, b, a, sim->now + tcp_latency_us(sim, a, b, segments),
	                  out->p, out->len, (int64_t)c->id);
}

/* io.open_session, kv.c's dial: the engine at a opens session s (a round
 * or a pull) with the node called peer. Connection limits and the peer's
 * membership are checked as kv.c does for a pull. */
static bool kv_io_open_session(void *ctx, const char *peer, struct kv_session *s,
                               const uint8_t *first, size_t len)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	struct simkv *kv = sim->kv;
	int a = nd->id;
	struct kvnode *kn = &kv->n[a];
	bool pull = kv_session_role(s) == KV_SYNC_PULLER;
	if (pull) {
		if (kn->nconns >= KV_SYNC_MAX_CONNS)
			return false;
		const struct swim_member *m = swim_member_find(nd->s, peer);
		if (m == NULL || m == swim_self(nd->s))
			return false;
	}
	int b = name_node(sim, peer);
	if (b < 0)
		return false;
	struct kv_conn *c = xcalloc(1, sizeof(*c));
	c->id = ++kv->conn_seq;
	c->node[0] = a;
	c->node[1] = b;
	c->life[0] = sim->nodes[a].life;
	c->open[0] = true;
	c->pull = pull;
	c->sess[0] = s;
	c->next = kv->conns;
	kv->conns = c;
	kn->nconns++;
	if (pull) {
		kv->pulls++;
		kv_trace_add(sim, KT_PULL_START, a, b, -1, 0);
	} else {
		kv->syncs++;
		kv_trace_add(sim, KT_SYNC_START, a, b, -1, 0);
	}
	struct ev e = {.type = EV_KV_FAIL, .aux = (int64_t)c->id};
	if (!link_ok(sim, a, b) || !link_ok(sim, b, a)) {
		e.t = sim->now + KV_CONNECT_TIMEOUT_US; /* the SYN goes nowhere */
	} else if (sim->nodes[b].truth != T_UP) {
		e.t = sim->now + latency_us(sim, a, b) + latency_us(sim, b, a); /* refused */
	} else {
		struct kv_buf out = {(uint8_t *)first, len, len};
		kv_send(sim, c, 0, &out, 2); /* handshake + the first frame */
		e.t = sim->now + KV_CONNECT_TIMEOUT_US + KV_SESSION_TIMEOUT_US;
	}
	heap_push(sim, e);
	return true;
}

/* A frame (or several) of session e->aux arrived at e->node. */
static void kv_frame_arrived(struct sim *sim, struct ev *e)
{
	struct simkv *kv = sim->kv;
	struct kv_conn *c = kv_conn_find(sim, (uint64_t)e->aux);
	if (c == NULL) {
		free(e->data);
		return;
	}
	int side = (int)e->node == c->node[0] ? 0 : 1;
	int id = c->node[side];
	struct node *nd = &sim->nodes[id];
	if (nd->truth != T_UP || (c->open[side] && nd->life != c->life[side])) {
		free(e->data); /* the process is gone: reset */
		kv_conn_fail(sim, c);
		return;
	}
	if (node_paused(sim, nd)) {
		e->t = nd->pause_until;
		heap_push(sim, *e);
		return;
	}
	if (c->closed[side]) { /* that end is done: nothing more is read */
		free(e->data);
		return;
	}
	if (!c->open[side]) { /* accept */
		if (kv->n[id].nconns >= KV_SYNC_MAX_CONNS) {
			free(e->data);
			kv_conn_fail(sim, c);
			return;
		}
		c->sess[1] = kv_engine_accept(kv->n[id].e);
		c->open[1] = true;
		c->life[1] = nd->life;
		kv->n[id].nconns++;
	}
	struct kv_buf out = {0};
	char err[256];
	size_t off = 0;
	int rc = 0;
	bool done = false;
	while (!done) {
		uint8_t type;
		const uint8_t *pl;
		size_t plen;
		long n = kv_frame_next(e->data + off, e->len - off, &type, &pl, &plen, err,
		                       sizeof(err));
		if (n == 0)
			break;
		if (n < 0) {
			rc = -1;
			break;
		}
		rc = kv_session_feed(c->sess[side], kv_wall_ms(sim, id), type, pl, plen, &out, err,
		                     sizeof(err));
		off += (size_t)n;
		if (rc < 0)
			break;
		done = rc == 1;
	}
	free(e->data);
	kv_flush(sim, id);
	if (rc < 0) {
		kv_violation(sim, -1, "sync n%d <-> n%d: %s", c->node[0], c->node[1], err);
		kv_conn_fail(sim, c);
	} else {
		kv_send(sim, c, side, &out, 1);
		if (done)
			kv_side_close(sim, c, side, true);
		if (c->closed[0] && (c->closed[1] || !c->open[1] || c->pull))
			kv_conn_fail(sim, c); /* both ends done: closes what is left */
	}
	kv_buf_free(&out);
	schedule_tick(sim, nd);
}

/* ---- hooks from the gossip driver */

/* io.user_msg: the agent routes 0x80..0x8f to kv_on_user_msg. */
static void kv_user_msg(void *ctx, const uint8_t *p, size_t len)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	struct simkv *kv = sim->kv;
	if (len > 0 && p[0] >= 0x80 && sim_is_serf(sim, nd->id))
		kv->serf_unknown++; /* serf: "Received message of unknown type" */
	if (len == 0 || p[0] < 0x80 || p[0] >= 0x90 || kv->n[nd->id].e == NULL)
		return;
	kv->gossip_in++;
	char err[128];
	if (kv_engine_user_msg(kv->n[nd->id].e, kv_wall_ms(sim, nd->id), p, len, err, sizeof(err)) <
	    0)
		kv_violation(sim, -1, "n%d cannot take a gossip message: %s", nd->id, err);
}

/* kv_on_member: a member joined: sync soon. */
static void kv_on_join(struct sim *sim, struct node *nd, int x)
{
	if (sim->kv == NULL || x == nd->id || sim->kv->n[nd->id].e == NULL)
		return;
	kv_engine_peer_joined(sim->kv->n[nd->id].e, kv_wall_ms(sim, nd->id));
}

/* The process starts: open (recover) the replica, as kv_new does. */
static void kv_node_up(struct sim *sim, int id)
{
	struct simkv *kv = sim->kv;
	if (kv == NULL)
		return;
	struct kvnode *kn = &kv->n[id];
	if (sim_is_serf(sim, id))
		return; /* a stock Serf agent: no KV store */
	char dir[4200], err[256];
	snprintf(dir, sizeof(dir), "%s/n%d", kv->dir, id);
	struct kv_engine_config c = {
	        .dir = dir,
	        .node_name = sim->nodes[id].name,
	        .sync_interval_ms = sim->cfg.kv.sync_interval_ms,
	        .map_size = sim->cfg.kv.map_size,
	};
	struct kv_io io = {
	        .ctx = &sim->nodes[id],
	        .rand = kv_io_rand,
	        .broadcast = kv_io_broadcast,
	        .echo = kv_io_echo,
	        .peers = kv_io_peers,
	        .open_session = kv_io_open_session,
	        .sync_arm = kv_io_sync_arm,
	        .sync_left = kv_io_sync_left,
	        .committed = kv_io_committed,
	        .gossip_backlog = kv_io_gossip_backlog,
	        .known_since = kv_io_known_since,
	};
	kn->ckpt_pending = false;
	kn->nconns = 0;
	kn->e = kv_engine_new(&c, &io, kv_wall_ms(sim, id), err, sizeof(err)); /* arms the timer */
	if (kn->e == NULL)
		kv_fatal(sim, dir, err);
	if (sim->nodes[id].life == 0)
		return;
	kv_trace_add(sim, KT_RESTART, id, -1, -1, 0);
	/* invariants 2 and 3 across the crash: every key at least where it was,
	 * every write this node acknowledged still there or superseded */
	for (int i = 0; i < kv->nw; i++) {
		struct kv_wr *w = &kv->w[i];
		struct kv_ver wv = {w->hlc, w->node, w->tomb};
		if (w->node != id)
			continue;
		struct kv_ver v = kv_read_ver(sim, id, w->key);
		if (kv_ver_cmp(sim, &v, &wv) < 0) {
			char a[48];
			kv_violation(sim, w->key,
			             "n%d lost its acknowledged write %s = %s in a crash", id,
			             kv->keys[w->key].name, kv_ver_str(a, sizeof(a), w->hlc, id));
		}
	}
	for (int k = 0; k < kv->nkeys; k++)
		kv_observe(sim, id, k, "across a crash");
}

static uint8_t *kv_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	*len = 0;
	if (f == NULL)
		return NULL;
	size_t cap = 1 << 16;
	uint8_t *p = malloc(cap);
	if (p == NULL)
		abort();
	size_t n;
	while ((n = fread(p + *len, 1, cap - *len, f)) > 0) {
		*len += n;
		if (*len == cap) {
			cap *= 2;
			p = realloc(p, cap);
			if (p == NULL)
				abort();
		}
	}
	fclose(f);
	return p;
}

static void kv_spill(struct sim *sim, const char *path, const uint8_t *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0)
		kv_fatal(sim, path, "cannot restore the crash image");
}

/* The process stops. A crash is kill -9: the files are left as they were at
 * that instant (LMDB's last checkpoint and the write-ahead log), so the
 * restart recovers through the real replay. kv_store_close would
 * checkpoint, so the image is taken first and put back after it. */
static void kv_node_down(struct sim *sim, int id, bool crash)
{
	struct simkv *kv = sim->kv;
	if (kv == NULL || kv->n[id].e == NULL)
		return;
	struct kvnode *kn = &kv->n[id];
	for (struct kv_conn *c = kv->conns, *next; c != NULL; c = next) {
		next = c->next;
		if ((c->node[0] == id && c->life[0] == sim->nodes[id].life) ||
		    (c->node[1] == id && c->open[1] && c->life[1] == sim->nodes[id].life))
			kv_conn_fail(sim, c);
	}
	kv_engine_abort(kn->e); /* nothing is open between events; never acknowledged */
	kn->sync_gen++;
	kn->sync_at = INT64_MAX;
	kn->nconns = 0;
	kv_drop_observer(sim, id);
	if (!crash) {
		kv_engine_free(kn->e);
		kn->e = NULL;
		return;
	}
	kv_trace_add(sim, KT_CRASH, id, -1, -1, 0);
	char dir[4200], p1[4300], p2[4300];
	snprintf(dir, sizeof(dir), "%s/n%d", kv->dir, id);
	snprintf(p1, sizeof(p1), "%s/data.mdb", dir);
	snprintf(p2, sizeof(p2), "%s/wal", dir);
	size_t l1, l2;
	uint8_t *i1 = kv_slurp(p1, &l1), *i2 = kv_slurp(p2, &l2);
	if (i1 == NULL || i2 == NULL)
		kv_fatal(sim, dir, "cannot read the replica's files");
	kv_engine_free(kn->e); /* checkpoints: the image goes back below */
	kn->e = NULL;
	kv_spill(sim, p1, i1, l1);
	kv_spill(sim, p2, i2, l2);
	free(i1);
	free(i2);
}

/* ---- scenario operations */

static int kv_pick_writer(struct sim *sim)
{
	for (int tries = 0; tries < 10000; tries++) {
		int i = (int)(rng_next(&sim->kv->rng) % (uint64_t)sim->n);
		if (kv_live(sim, i) && !node_paused(sim, &sim->nodes[i]))
			return i;
	}
	return -1;
}

/* Operation i of a kv_write / kv_delete action. */
static void kv_op(struct sim *sim, const struct sim_action *a, int i)
{
	struct simkv *kv = sim->kv;
	int id = a->nnodes > 0 ? a->nodes[i % a->nnodes] : kv_pick_writer(sim);
	int key = a->key != NULL ? kv_key_find(kv, a->key, strlen(a->key))
	                         : (int)(rng_next(&kv->rng) % (uint64_t)a->keys);
	bool tomb = a->type == SIM_KV_DELETE;
	if (id < 0 || id >= sim->n || !kv_live(sim, id) || node_paused(sim, &sim->nodes[id])) {
		kv->refused++; /* the node is down: the client gets no answer */
		kv_trace_add(sim, KT_REFUSED, id, -1, key, 0);
		return;
	}
	size_t vlen = (size_t)(a->value_size > 0 ? a->value_size : sim->cfg.kv.value_size);
	int64_t now = kv_wall_ms(sim, id);
	struct kv_op op = {
	        KV_OP_DELETE, kv->keys[key].name, kv->keys[key].len, NULL, 0, 0, 0, NULL, 0};
	if (!tomb) { /* the value is made from the version the write will get */
		op.verb = KV_OP_SET;
		op.value = kv_value_buf(kv, vlen);
		op.value_len = vlen;
		kv_value_fill(kv->val, vlen, kv_engine_next_version(kv->n[id].e, now), id);
	}
	char err[128];
	int rc = kv_engine_write(kv->n[id].e, now, &op, 1, kv_write_done, sim, err, sizeof(err));
	if (rc < 0)
		kv_fatal(sim, "write", err);
	kv->noop += rc == 0; /* deleting an absent key */
	kv_flush(sim, id);
	schedule_tick(sim, &sim->nodes[id]);
}

static void kv_action(struct sim *sim, const struct sim_action *a)
{
	int nops = (a->count > 0 ? a->count : 1) * (a->nnodes > 0 ? a->nnodes : 1);
	int idx = (int)(a - sim->cfg.actions);
	for (int i = 0; i < nops; i++) {
		struct ev e = {.t = sim->now + a->dur_ms * 1000 * i / nops,
		               .type = EV_KV_OP,
		               .node = (uint32_t)idx,
		               .aux = i};
		heap_push(sim, e);
	}
}

/* The KV events: operations, timers, frames, session failures. */
static void kv_handle(struct sim *sim, struct ev *e)
{
	struct simkv *kv = sim->kv;
	if (e->type == EV_KV_OP) {
		kv_op(sim, &sim->cfg.actions[e->node], (int)e->aux);
		return;
	}
	if (e->type == EV_KV_FRAME) {
		kv_frame_arrived(sim, e);
		return;
	}
	if (e->type == EV_KV_FAIL) {
		struct kv_conn *c = kv_conn_find(sim, (uint64_t)e->aux);
		if (c != NULL)
			kv_conn_fail(sim, c);
		return;
	}
	struct node *nd = &sim->nodes[e->node];
	struct kvnode *kn = &kv->n[e->node];
	if (nd->truth != T_UP || kn->e == NULL)
		return;
	if (e->type == EV_KV_TIMER && e->gen != kn->sync_gen)
		return;
	if (e->type == EV_KV_CKPT && e->gen != (uint32_t)nd->life)
		return;
	if (node_paused(sim, nd)) {
		e->t = nd->pause_until;
		heap_push(sim, *e);
		return;
	}
	if (e->type == EV_KV_TIMER) {
		kv_engine_sync_timer(kn->e);
	} else if (e->type == EV_KV_CKPT) {
		char err[256];
		struct kv_store *st = kv_engine_store(kn->e);
		kn->ckpt_pending = false;
		if (kv_store_dirty(st)) {
			if (kv_store_checkpoint(st, err, sizeof(err)) < 0)
				kv_fatal(sim, "checkpoint", err);
			kv->checkpoints++;
		}
	}
}

static struct simkv *simkv_new(struct sim *sim, char *err, size_t errlen)
{
	struct simkv *kv = xcalloc(1, sizeof(*kv));
	const char *base = getenv("TMPDIR");
	if (access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	else if (base == NULL || base[0] == '\0')
		base = "/tmp";
	snprintf(kv->dir, sizeof(kv->dir), "%s/rumor-sim-kv-XXXXXX", base);
	if (mkdtemp(kv->dir) == NULL) {
		snprintf(err, errlen, "kv: mkdtemp %s: %s", kv->dir, strerror(errno));
		free(kv);
		return NULL;
	}
	sim->kv = kv;
	kv_keys_init(sim);
	kv->n = xcalloc((size_t)sim->cap, sizeof(*kv->n));
	rng_seed(&kv->rng, sim->cfg.seed, 0xfffffff3);
	for (int i = 0; i < sim->cap; i++) {
		struct kvnode *kn = &kv->n[i];
		rng_seed(&kn->rng, sim->cfg.seed, 0x4b5600000000ull + (uint64_t)i);
		kn->skew_ms = (int64_t)((rng_unit(&kn->rng) * 2.0 - 1.0) * sim->cfg.kv.skew_ms);
		kn->sync_at = INT64_MAX;
		kn->hw = xcalloc((size_t)kv->nkeys, sizeof(*kn->hw));
		for (int k = 0; k < kv->nkeys; k++)
			kn->hw[k].node = -1;
	}
	kv->trace = xcalloc(KV_TRACE_CAP, sizeof(*kv->trace));
	return kv;
}

static void simkv_free(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	if (kv == NULL)
		return;
	while (kv->conns != NULL)
		kv_conn_free(sim, kv->conns);
	for (int i = 0; i < sim->cap; i++) {
		struct kvnode *kn = &kv->n[i];
		if (kn->e != NULL) {
			kv_engine_abort(kn->e);
			kv_engine_free(kn->e);
		}
		free(kn->hw);
	}
	kv_rmdir(kv);
	for (int i = 0; i < kv->nw; i++)
		free(kv->w[i].seen);
	for (int i = 0; i < kv->nkeys; i++) {
		free(kv->keys[i].name);
		free(kv->keys[i].w);
	}
	free(kv->keys);
	free(kv->hidx);
	free(kv->w);
	free(kv->n);
	free(kv->heals);
	free(kv->val);
	free(kv->trace);
	free(kv);
	sim->kv = NULL;
}

/* ---- invariants at the end, and the report */

static void kv_final_checks(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	const struct sim_expect *ex = &sim->cfg.expect;
	char a[48], b[48];
	/* 2: every write acknowledged at a node that is up is there or superseded */
	for (int i = 0; i < kv->nw; i++) {
		struct kv_wr *w = &kv->w[i];
		struct kv_ver wv = {w->hlc, w->node, w->tomb};
		if (kv_live(sim, w->node)) {
			struct kv_ver v = kv_read_ver(sim, w->node, w->key);
			if (kv_ver_cmp(sim, &v, &wv) < 0)
				kv_violation(sim, w->key, "n%d lost its acknowledged write %s = %s",
				             w->node, kv->keys[w->key].name,
				             kv_ver_str(a, sizeof(a), w->hlc, w->node));
		}
		if (ex->kv_spread_ms > 0 && w->population > 0 &&
		    (w->t100 < 0 || w->t100 > ex->kv_spread_ms * 1000))
			kv_violation(sim, w->key,
			             "write %s = %s held by all %d live nodes %s "
			             "(bound %.3f s; %d hold it at the end)",
			             kv->keys[w->key].name,
			             kv_ver_str(a, sizeof(a), w->hlc, w->node), w->population,
			             w->t100 < 0 ? "never" : "too late", ex->kv_spread_ms / 1e3,
			             w->known);
	}
	for (int h = 0; h < kv->nheals && ex->kv_heal_ms > 0; h++)
		if (kv->heals[h].took < 0 || kv->heals[h].took > ex->kv_heal_ms * 1000)
			kv_violation(sim, -1,
			             "replicas not identical within %.3f s of the heal at "
			             "%.3f s (took %.3f s)",
			             ex->kv_heal_ms / 1e3, kv->heals[h].at / 1e6,
			             kv->heals[h].took < 0 ? -1.0 : kv->heals[h].took / 1e6);
	if (!ex->kv_converge)
		return;
	/* 1: every live replica holds, for every key, the largest acknowledged
	 * version that survives (its writer is up, or some live node has it) */
	int bad = 0, nkeys_live = 0;
	for (int k = 0; k < kv->nkeys && bad < 3; k++) {
		struct kv_key *key = &kv->keys[k];
		struct kv_ver want = {0, -1, false};
		for (int i = 0; i < sim->n; i++) {
			if (!kv_live(sim, i))
				continue;
			kv_observe(sim, i, k, "at the end");
			if (kv_ver_cmp(sim, &kv->n[i].hw[k], &want) > 0)
				want = kv->n[i].hw[k];
		}
		bool known = want.hlc == 0;
		for (int j = 0; j < key->nw; j++) {
			struct kv_wr *w = &kv->w[key->w[j]];
			struct kv_ver wv = {w->hlc, w->node, w->tomb};
			if (kv_ver_cmp(sim, &wv, &want) == 0)
				known = true;
			if (kv_live(sim, w->node) && kv_ver_cmp(sim, &wv, &want) > 0)
				want = wv, known = true;
		}
		if (!known) {
			bad++;
			kv_violation(sim, k, "%s = %s at a live replica was never written",
			             key->name, kv_ver_str(a, sizeof(a), want.hlc, want.node));
			continue;
		}
		nkeys_live += want.hlc != 0;
		for (int i = 0; i < sim->n && bad < 3; i++) {
			if (!kv_live(sim, i))
				continue;
			struct kv_ver *v = &kv->n[i].hw[k];
			struct kv_rec r;
			bool value_ok = true;
			if (v->hlc != 0 && !v->tomb &&
			    kv_store_get(kv_engine_store(kv->n[i].e), true, key->name, key->len,
			                 &r) == 1) {
				uint8_t *x = kv_value_buf(kv, r.value_len);
				kv_value_fill(x, r.value_len, r.hlc, v->node);
				value_ok = r.value_len == 0 || memcmp(x, r.value, r.value_len) == 0;
			}
			if (kv_ver_cmp(sim, v, &want) != 0 || v->tomb != want.tomb || !value_ok) {
				bad++;
				const char *what = v->tomb    ? " (deleted)"
				                   : value_ok ? ""
				                              : " (bad value)";
				kv_violation(sim, k,
				             "not converged: n%d holds %s = %s%s, the "
				             "largest acknowledged write is %s%s",
				             i, key->name,
				             kv_ver_str(a, sizeof(a), v->hlc, v->node), what,
				             kv_ver_str(b, sizeof(b), want.hlc, want.node),
				             want.tomb ? " (deleted)" : "");
			}
		}
	}
	for (int i = 0; i < sim->n && bad == 0; i++) {
		if (!kv_live(sim, i))
			continue;
		uint64_t live, tombs;
		kv_store_counts(kv_engine_store(kv->n[i].e), &live, &tombs);
		if (live + tombs != (uint64_t)nkeys_live) {
			bad++;
			kv_violation(sim, -1, "n%d holds %llu records, the writes leave %d", i,
			             (unsigned long long)(live + tombs), nkeys_live);
		}
	}
	if (bad == 0 && !kv_converged(sim))
		kv_violation(sim, -1, "live replicas' digests differ though every key agrees");
}

static double kv_median(struct sim *sim, size_t off, int *count)
{
	struct simkv *kv = sim->kv;
	int64_t *v = xcalloc((size_t)kv->nw, sizeof(*v));
	int n = 0;
	for (int i = 0; i < kv->nw; i++) {
		int64_t x = *(int64_t *)((char *)&kv->w[i] + off);
		if (x >= 0 && kv->w[i].population > 0)
			v[n++] = x;
	}
	*count = n;
	double r = -1;
	if (n > 0) {
		qsort(v, (size_t)n, sizeof(*v), cmp_i64);
		r = (double)v[n / 2] / 1e6;
	}
	free(v);
	return r;
}

static void kv_report_row(struct sim *sim, double round_s)
{
	struct simkv *kv = sim->kv;
	int c, total = 0;
	for (int i = 0; i < kv->nw; i++)
		total += kv->w[i].population > 0;
	if (total == 0)
		return;
	double t50 = kv_median(sim, offsetof(struct kv_wr, t50), &c);
	double t99 = kv_median(sim, offsetof(struct kv_wr, t99), &c);
	double t100 = kv_median(sim, offsetof(struct kv_wr, t100), &c);
	char label[40];
	snprintf(label, sizeof(label), "kv write (%d/%d complete)", c, total);
	fprintf(sim->out, "%-28s", label);
	print_cell(sim->out, -1, round_s);
	print_cell(sim->out, -1, round_s);
	print_cell(sim->out, t50, round_s);
	print_cell(sim->out, t99, round_s);
	print_cell(sim->out, t100, round_s);
	fprintf(sim->out, "\n");
}

static void kv_report_lines(struct sim *sim)
{
	struct simkv *kv = sim->kv;
	FILE *o = sim->out;
	double secs = sim->cfg.duration_ms / 1000.0;
	int64_t slowest = -1;
	for (int i = 0; i < kv->nw; i++)
		if (kv->w[i].population > 0 && kv->w[i].t100 > slowest)
			slowest = kv->w[i].t100;
	fprintf(o,
	        "kv: %llu writes acknowledged (%llu deletes), %llu refused (node down), "
	        "%llu deletes of absent keys; slowest write held by every live node after "
	        "%.3f s\n",
	        (unsigned long long)kv->acked, (unsigned long long)kv->deletes,
	        (unsigned long long)kv->refused, (unsigned long long)kv->noop,
	        slowest < 0 ? -1.0 : slowest / 1e6);
	if (sim->cfg.serf_nodes > 0) {
		fprintf(o,
		        "mixed: %d Serf nodes (no KV); rumor-only messages they received: %llu\n",
		        sim->cfg.serf_nodes, (unsigned long long)kv->serf_unknown);
		if (kv->serf_unknown > 0)
			kv_violation(sim, -1, "Serf nodes received %llu rumor-only messages",
			             (unsigned long long)kv->serf_unknown);
	}
	uint64_t dropped = 0;
	for (int i = 0; i < sim->n; i++)
		if (sim->nodes[i].s != NULL)
			dropped += swim_broadcast_queue_dropped(sim->nodes[i].s);
	fprintf(o,
	        "kv gossip: %llu SET/ANNOUNCE broadcast, %llu received; broadcast queues: "
	        "longest %zu, %llu dropped (live nodes); applied %llu from gossip, %llu from "
	        "anti-entropy, %llu from pulls\n",
	        (unsigned long long)kv->gossip_out, (unsigned long long)kv->gossip_in, kv->qmax,
	        (unsigned long long)dropped, (unsigned long long)kv->applied[KV_SRC_GOSSIP],
	        (unsigned long long)kv->applied[KV_SRC_SYNC],
	        (unsigned long long)kv->applied[KV_SRC_PULL]);
	fprintf(o,
	        "kv anti-entropy: %llu sessions (%llu ok, %llu failed), %llu records and %llu "
	        "bytes sent (%.0f bytes/node/s); pulls %llu (%llu failed), %llu records, "
	        "%llu bytes; %llu commits, %llu checkpoints\n",
	        (unsigned long long)kv->syncs, (unsigned long long)kv->syncs_ok,
	        (unsigned long long)kv->syncs_failed, (unsigned long long)kv->records_out[0],
	        (unsigned long long)kv->bytes[0], (double)kv->bytes[0] / sim->n / secs,
	        (unsigned long long)kv->pulls, (unsigned long long)kv->pulls_failed,
	        (unsigned long long)kv->records_out[1], (unsigned long long)kv->bytes[1],
	        (unsigned long long)kv->commits, (unsigned long long)kv->checkpoints);
	for (int h = 0; h < kv->nheals; h++) {
		struct kv_heal *x = &kv->heals[h];
		char mesh[64] = "membership not whole again";
		if (x->mesh >= 0)
			snprintf(mesh, sizeof(mesh), "membership whole again after %.0f s",
			         x->mesh / 1e6);
		if (x->took >= 0)
			fprintf(o, "kv heal at %.3f s: replicas identical %.3f s later (%s)\n",
			        x->at / 1e6, x->took / 1e6, mesh);
		else
			fprintf(o, "kv heal at %.3f s: replicas never identical afterwards (%s)\n",
			        x->at / 1e6, mesh);
	}
	for (int i = 0; i < kv->nw && sim->cfg.verbose; i++) { /* the slow ones */
		struct kv_wr *w = &kv->w[i];
		char v[48];
		if (w->population > 0 && (w->t100 < 0 || w->t100 > 2 * w->t99 + 1000000))
			fprintf(o,
			        "  kv write %s = %s at %.3f s: 50%% %.3f s, 99%% %.3f s, 100%% "
			        "%.3f s (%d/%d)\n",
			        kv->keys[w->key].name, kv_ver_str(v, sizeof(v), w->hlc, w->node),
			        w->t0 / 1e6, w->t50 / 1e6, w->t99 / 1e6, w->t100 / 1e6, w->known,
			        w->population);
	}
	int live = 0;
	uint64_t keys = 0, tombs = 0;
	for (int i = 0; i < sim->n; i++) {
		if (!kv_live(sim, i))
			continue;
		if (live++ == 0)
			kv_store_counts(kv_engine_store(kv->n[i].e), &keys, &tombs);
	}
	fprintf(o,
	        "kv end: %d live replicas, digests %s; %llu keys and %llu tombstones at the "
	        "first\n",
	        live, kv_converged(sim) ? "identical" : "DIFFER", (unsigned long long)keys,
	        (unsigned long long)tombs);
}

/* ------------------------------------------------------------ tracking */

static void track_mark(struct sim *sim, struct track *tr, int obs)
{
	if (tr->seen[obs] != 1)
		return;
	tr->seen[obs] = 2;
	tr->times[tr->known++] = sim->now - tr->t0;
	int p = tr->population;
	if (tr->t50 < 0 && tr->known * 2 >= p)
		tr->t50 = sim->now - tr->t0;
	if (tr->t99 < 0 && (double)tr->known >= ceil(0.99 * p))
		tr->t99 = sim->now - tr->t0;
	if (tr->t100 < 0 && tr->known >= p)
		tr->t100 = sim->now - tr->t0;
}

/* An observer stops (crash/leave): it no longer counts. */
static void track_drop_observer(struct sim *sim, int obs)
{
	for (int i = 0; i < sim->ntracks; i++) {
		struct track *tr = &sim->tracks[i];
		if (tr->seen[obs] == 1) {
			tr->seen[obs] = 0;
			tr->population--;
			if (tr->t100 < 0 && tr->known >= tr->population && tr->population > 0)
				tr->t100 = sim->now - tr->t0;
		}
	}
}

static void track_new(struct sim *sim, int kind, int subject)
{
	if (sim->ntracks == sim->tracks_cap) {
		sim->tracks_cap = sim->tracks_cap ? sim->tracks_cap * 2 : 16;
		sim->tracks = realloc(sim->tracks, (size_t)sim->tracks_cap * sizeof(*sim->tracks));
		if (sim->tracks == NULL)
			abort();
	}
	struct track *tr = &sim->tracks[sim->ntracks++];
	memset(tr, 0, sizeof(*tr));
	tr->kind = kind;
	tr->subject = subject;
	tr->t0 = sim->now;
	tr->first_suspect = tr->first_dead = tr->t50 = tr->t99 = tr->t100 = -1;
	tr->seen = xcalloc((size_t)sim->cap, 1);
	tr->times = xcalloc((size_t)sim->cap, sizeof(*tr->times));
	for (int i = 0; i < sim->n; i++) {
		if (i != subject && sim->nodes[i].truth == T_UP && !sim->nodes[i].leaving) {
			tr->seen[i] = 1;
			tr->population++;
		}
	}
}

static bool excused(const struct sim *sim, int obs, int subj)
{
	return sim->global_excuse_until > sim->now || sim->nodes[obs].excuse_until > sim->now ||
	       sim->nodes[subj].excuse_until > sim->now;
}

static void net_event(void *ctx, enum swim_event_type type, const struct swim_member *m)
{
	struct node *nd = ctx;
	struct sim *sim = g_sim;
	if (sim->warming)
		return;
	int x = name_node(sim, m->id->name);
	if (x < 0)
		return;
	if (type == SWIM_EV_JOIN)
		kv_on_join(sim, nd, x);
	sim->events++;
	trace_add(sim, type, nd->id, x, m->incarnation);
	if (sim->view_inc != NULL && type != SWIM_EV_REAP) {
		uint32_t *v = &sim->view_inc[(size_t)nd->id * (size_t)sim->cap + (size_t)x];
		/* a restarted node may come back with a fresh incarnation once
		 * the old entry is forgotten (memberlist semantics): only the
		 * "goes down while the same life" case is a violation */
		if (m->incarnation < *v && type != SWIM_EV_JOIN)
			violation(sim, x, "n%d's view of n%d went from incarnation %u to %u (%s)",
			          nd->id, x, *v, m->incarnation, what_name(type));
		*v = m->incarnation;
	}
	for (int i = 0; i < sim->ntracks; i++) {
		struct track *tr = &sim->tracks[i];
		if (tr->subject != x)
			continue;
		if (type == SWIM_EV_SUSPECT && tr->kind == 1 && tr->first_suspect < 0)
			tr->first_suspect = sim->now - tr->t0;
		if ((type == SWIM_EV_FAILED || type == SWIM_EV_LEFT) && tr->kind == 1 &&
		    tr->first_dead < 0)
			tr->first_dead = sim->now - tr->t0;
		if ((tr->kind == 0 && type == SWIM_EV_JOIN) ||
		    (tr->kind == 1 && (type == SWIM_EV_FAILED || type == SWIM_EV_LEFT)) ||
		    (tr->kind == 2 && type == SWIM_EV_LEFT))
			track_mark(sim, tr, nd->id);
	}
	struct node *sx = &sim->nodes[x];
	if (x != nd->id && sx->truth == T_UP && !sx->leaving) {
		if (type == SWIM_EV_FAILED) {
			if (excused(sim, nd->id, x)) {
				sim->fp_excused++;
			} else {
				if (sim->fp++ == 0)
					sim->first_fp_subj = x;
				if (sim->cfg.verbose)
					fprintf(sim->out,
					        "false positive at %.3f s: n%d declares n%d dead\n",
					        sim->now / 1e6, nd->id, x);
			}
		} else if (type == SWIM_EV_SUSPECT && !excused(sim, nd->id, x)) {
			sim->fp_suspect++;
		}
	}
}

/* ------------------------------------------------------------ nodes */

static void schedule_tick(struct sim *sim, struct node *nd)
{
	if (nd->truth != T_UP || nd->s == NULL)
		return;
	int64_t d = swim_next_deadline(nd->s);
	int64_t at = d * 1000;
	if (d <= now_ms(sim))
		at = (now_ms(sim) + 1) * 1000;
	if (nd->tick_at <= at && nd->tick_at >= sim->now)
		return; /* an earlier or equal tick is pending: it re-arms */
	nd->tick_at = at;
	struct ev e = {.t = at, .type = EV_TICK, .node = (uint32_t)nd->id, .gen = ++nd->tick_gen};
	heap_push(sim, e);
}

static void node_start(struct sim *sim, int id)
{
	struct node *nd = &sim->nodes[id];
	struct swim_io io = {
	        .ctx = nd,
	        .send = net_send,
	        .rand32 = net_rand32,
	        .push_pull = net_push_pull,
	        .tcp_ping = sim->cfg.tcp_ping ? net_tcp_ping : NULL,
	        .event = net_event,
	        .user_msg = sim->kv != NULL ? kv_user_msg : NULL,
	};
	struct swim_config c;
	memset(&c, 0, sizeof(c));
	c.name = nd->name;
	c.addr = nd->addr;
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(c.vsn, vsn, 6);
	c.timing = sim->timing;
	c.idents = sim->idents;
	uint8_t meta[512];
	if (sim->cfg.consul_meta || sim->cfg.serf_nodes > 0) {
		/* the tags rumor and a Consul agent's serf carry, a random id each;
		 * in a mixed cluster rumor's KV port, and a Serf agent's build */
		char uuid[40];
		if (sim->cfg.consul_meta) {
			uint32_t r[4];
			for (int k = 0; k < 4; k++)
				r[k] = net_rand32(nd);
			snprintf(uuid, sizeof(uuid), "%08x-%04x-%04x-%04x-%04x%08x", r[0],
			         r[1] >> 16, r[1] & 0xffff, r[2] >> 16, r[2] & 0xffff, r[3]);
		} else {
			snprintf(uuid, sizeof(uuid), "%s", nd->name);
		}
		bool serf = sim_is_serf(sim, id);
		const char *rpc_port = sim->cfg.serf_nodes > 0 && !serf ? "8300" : NULL;
		struct tag tags[TAGS_CONSUL_MAX];
		size_t nt =
		        tags_consul(tags, "dc1", serf ? "0.8.2" : "0.1.0:rumor", uuid, rpc_port);
		int ml = tags_encode(meta, sizeof(meta), tags, nt);
		if (ml > 0) {
			c.meta = meta;
			c.meta_len = (size_t)ml;
		}
	}
	if (sim->cfg.serf_nodes > 0) {
		c.is_rumor = tags_is_rumor;
		c.is_rumor_agent = tags_is_rumor_build;
	}
	c.disable_coordinates = !sim->cfg.coord.enabled;
	if (sim->cfg.coord.enabled)
		io.clock_us = net_clock_us; /* RTTs to the µs, as the agent's */
	char err[200];
	nd->s = swim_new(&c, &io, now_ms(sim), err, sizeof(err));
	if (nd->s == NULL) {
		fprintf(stderr, "swim_new: %s\n", err);
		abort();
	}
	nd->truth = T_UP;
	nd->leaving = false;
	nd->tick_at = INT64_MAX;
	nd->up_since = sim->now;
	nd->last_self_inc = swim_self(nd->s)->incarnation;
	nd->last_sent = 0;
	kv_node_up(sim, id);
	schedule_tick(sim, nd);
}

static void node_stop(struct sim *sim, struct node *nd, enum truth t)
{
	if (nd->s != NULL) {
		const struct swim_stats *st = swim_stats(nd->s);
		nd->pk_sent += st->packets_sent;
		nd->by_sent += st->bytes_sent;
		swim_free(nd->s);
		nd->s = NULL;
	}
	nd->truth = t;
	nd->tick_gen++;
	nd->tick_at = INT64_MAX;
	track_drop_observer(sim, nd->id);
	kv_node_down(sim, nd->id, t == T_CRASHED);
}

static int random_up_node(struct sim *sim, int except)
{
	int tries = 0;
	while (tries++ < 10000) {
		int i = (int)(rng_next(&sim->scen) % (uint64_t)sim->n);
		if (i != except && sim->nodes[i].truth == T_UP && !sim->nodes[i].leaving)
			return i;
	}
	return -1;
}

/* ------------------------------------------------------------ warm start */

static void warm_start(struct sim *sim)
{
	/* a mixed cluster needs the tags (who is a rumor agent) from the start */
	bool meta = sim->cfg.serf_nodes > 0;
	size_t cap = 64 + (size_t)sim->n * (96 + (meta ? ML_META_MAX : 0));
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		abort();
	size_t off = 0;
	buf[off++] = ML_PUSH_PULL;
	struct ml_push_pull_header h = {.nodes = (uint32_t)sim->n, .join = false};
	off += (size_t)ml_encode_push_pull_header(buf + off, cap - off, &h);
	static struct ml_push_node pn;
	for (int i = 0; i < sim->n; i++) {
		const struct swim_member *self = swim_self(sim->nodes[i].s);
		memset(&pn, 0, sizeof(pn));
		snprintf(pn.name, sizeof(pn.name), "%s", self->id->name);
		pn.addr = self->id->addr;
		pn.incarnation = self->incarnation;
		pn.state = ML_STATE_ALIVE;
		memcpy(pn.vsn, self->id->vsn, 6);
		pn.has_vsn = true;
		if (meta && self->id->meta_len <= sizeof(pn.meta)) {
			memcpy(pn.meta, self->id->meta, self->id->meta_len);
			pn.meta_len = self->id->meta_len;
		}
		int r = ml_encode_push_node(buf + off, cap - off, &pn);
		if (r < 0)
			abort();
		off += (size_t)r;
	}
	sim->warming = true;
	for (int i = 0; i < sim->n; i++) {
		struct swim_stream_result res;
		int rc = swim_stream_recv(sim->nodes[i].s, now_ms(sim), buf, off, true, &res);
		if (rc != ML_OK) {
			fprintf(stderr, "warm start: %s\n", res.error);
			abort();
		}
		free(res.reply);
		swim_reset_broadcasts(sim->nodes[i].s);
		schedule_tick(sim, &sim->nodes[i]);
	}
	sim->warming = false;
	free(buf);
}

/* ------------------------------------------------------------ actions */

static void apply_action(struct sim *sim, const struct sim_action *a)
{
	int64_t t = now_ms(sim);
	trace_add(sim, 100 + (int)a->type, -1, a->nnodes > 0 ? a->nodes[0] : -1, 0);
	switch (a->type) {
	case SIM_CRASH:
		for (int i = 0; i < a->nnodes; i++)
			if (sim->nodes[a->nodes[i]].truth == T_UP)
				node_stop(sim, &sim->nodes[a->nodes[i]], T_CRASHED);
		for (int i = 0; i < a->nnodes; i++)
			track_new(sim, 1, a->nodes[i]);
		break;
	case SIM_RESTART:
		/* no nodes named: every crashed node */
		for (int i = 0; i < (a->nnodes > 0 ? a->nnodes : sim->n); i++) {
			struct node *nd = &sim->nodes[a->nnodes > 0 ? a->nodes[i] : i];
			if (nd->truth != T_CRASHED)
				continue;
			nd->life++;
			node_start(sim, nd->id);
			track_new(sim, 0, nd->id);
			start_push_pull(sim, nd->id, random_up_node(sim, nd->id), true);
		}
		break;
	case SIM_LEAVE:
		for (int i = 0; i < a->nnodes; i++) {
			struct node *nd = &sim->nodes[a->nodes[i]];
			if (nd->truth != T_UP)
				continue;
			swim_leave(nd->s, t);
			nd->leaving = true;
			track_drop_observer(sim, nd->id);
			schedule_tick(sim, nd);
			struct ev e = {.t = sim->now + 1000,
			               .type = EV_LEAVE_STOP,
			               .node = (uint32_t)nd->id,
			               .gen = (uint32_t)nd->life,
			               .aux = 0};
			heap_push(sim, e);
		}
		for (int i = 0; i < a->nnodes; i++)
			track_new(sim, 2, a->nodes[i]);
		break;
	case SIM_JOIN:
		for (int i = 0; i < a->count && sim->n < sim->cap; i++) {
			int id = sim->n++;
			node_start(sim, id);
			track_new(sim, 0, id);
			start_push_pull(sim, id, random_up_node(sim, id), true);
		}
		break;
	case SIM_PAUSE:
		for (int i = 0; i < a->nnodes; i++) {
			struct node *nd = &sim->nodes[a->nodes[i]];
			nd->pause_until = sim->now + a->dur_ms * 1000;
			nd->excuse_until = nd->pause_until + sim->grace_us;
		}
		break;
	case SIM_SLOW:
		for (int i = 0; i < a->nnodes; i++) {
			struct node *nd = &sim->nodes[a->nodes[i]];
			nd->slow_us = a->value * 1000.0;
			nd->slow_until = a->dur_ms > 0 ? sim->now + a->dur_ms * 1000 : INT64_MAX;
			nd->excuse_until = nd->slow_until == INT64_MAX
			                           ? INT64_MAX
			                           : nd->slow_until + sim->grace_us;
		}
		break;
	case SIM_PARTITION: {
		int g = 0, left = a->nsizes > 0 ? a->sizes[0] : sim->n / 2;
		for (int i = 0; i < sim->cap; i++) {
			while (left <= 0 && g < a->nsizes && g < MAX_GROUPS - 1) {
				g++;
				left = g < a->nsizes ? a->sizes[g] : sim->cap;
			}
			sim->nodes[i].group = g;
			left--;
		}
		memset(sim->block, 0, sizeof(sim->block));
		for (int i = 0; i <= g; i++)
			for (int j = 0; j <= g; j++)
				if (i != j && (!a->oneway || i == 0))
					sim->block[i][j] = true;
		sim->partitioned = true;
		sim->global_excuse_until = INT64_MAX;
		break;
	}
	case SIM_HEAL:
		memset(sim->block, 0, sizeof(sim->block));
		sim->partitioned = false;
		sim->global_excuse_until = sim->now + sim->grace_us;
		if (sim->kv != NULL) {
			struct simkv *kv = sim->kv;
			kv->heals =
			        realloc(kv->heals, (size_t)(kv->nheals + 1) * sizeof(*kv->heals));
			if (kv->heals == NULL)
				abort();
			kv->heals[kv->nheals++] = (struct kv_heal){sim->now, -1, -1};
			kv->conv_pending = true;
			kv_trace_add(sim, KT_HEAL, -1, -1, -1, 0);
			kv_check_converged(sim);
		}
		break;
	case SIM_LOSS:
		sim->loss = a->value;
		break;
	case SIM_KV_WRITE:
	case SIM_KV_DELETE:
		if (sim->kv != NULL)
			kv_action(sim, a);
		break;
	}
	if (a->type == SIM_PARTITION && sim->kv != NULL)
		kv_trace_add(sim, KT_PARTITION, -1, -1, -1, 0);
}

/* ------------------------------------------------------------ checks */

static void periodic_check(struct sim *sim)
{
	bool full = sim->full_mesh_at < 0;
	if (sim->kv != NULL) {
		kv_check_converged(sim);
		kv_check_mesh(sim);
	}
	for (int i = 0; i < sim->n; i++) {
		struct node *nd = &sim->nodes[i];
		if (nd->truth != T_UP)
			continue;
		const struct swim_stats *st = swim_stats(nd->s);
		uint32_t inc = swim_self(nd->s)->incarnation;
		if (inc < nd->last_self_inc)
			violation(sim, i, "n%d's own incarnation went down %u -> %u", i,
			          nd->last_self_inc, inc);
		nd->last_self_inc = inc;
		int64_t d = (int64_t)(st->packets_sent - nd->last_sent);
		nd->last_sent = st->packets_sent;
		if (sim->now - nd->up_since > 2 * sim->timing.probe_interval_ms * 1000) {
			if (d > sim->load_max_seen)
				sim->load_max_seen = d;
			sim->load_sum += (double)d;
			sim->load_samples++;
		}
		if (full && (swim_num_alive(nd->s) + 1 < (size_t)sim->n || nd->leaving))
			full = false;
	}
	if (full) {
		for (int i = 0; i < sim->n; i++)
			if (sim->nodes[i].truth != T_UP)
				full = false;
		if (full)
			sim->full_mesh_at = sim->now;
	}
	if (sim->view_inc != NULL && sim->n <= 500) {
		/* incarnations in every view only grow within one life */
		for (int o = 0; o < sim->n; o++) {
			struct node *no = &sim->nodes[o];
			if (no->truth != T_UP)
				continue;
			size_t cnt = swim_member_count(no->s);
			for (size_t k = 0; k < cnt; k++) {
				const struct swim_member *m = swim_member_at(no->s, k);
				int x = name_node(sim, m->id->name);
				if (x < 0)
					continue;
				uint32_t *v =
				        &sim->view_inc[(size_t)o * (size_t)sim->cap + (size_t)x];
				if (m->incarnation < *v && m->state != ML_STATE_ALIVE)
					violation(sim, x, "n%d holds n%d at incarnation %u < %u", o,
					          x, m->incarnation, *v);
				if (m->incarnation > *v)
					*v = m->incarnation;
			}
		}
	}
}

static int final_checks(struct sim *sim)
{
	int bad = 0;
	const struct sim_expect *ex = &sim->cfg.expect;
	if (ex->converge) {
		for (int o = 0; o < sim->n; o++) {
			struct node *no = &sim->nodes[o];
			if (no->truth != T_UP || no->leaving)
				continue;
			for (int x = 0; x < sim->n; x++) {
				if (x == o)
					continue;
				struct node *nx = &sim->nodes[x];
				const struct swim_member *m = swim_member_find(no->s, nx->name);
				if (sim->partitioned && !link_ok(sim, o, x))
					continue;
				bool ok;
				if (nx->truth == T_UP && !nx->leaving)
					/* under loss a suspicion may be open at any
					 * instant (it will be refuted); never dead */
					ok = m != NULL &&
					     (m->state == ML_STATE_ALIVE ||
					      (m->state == ML_STATE_SUSPECT && sim->loss > 0));
				else if (nx->truth == T_CRASHED)
					ok = m == NULL || m->state == ML_STATE_DEAD ||
					     m->state == ML_STATE_LEFT;
				else
					ok = m == NULL || m->state == ML_STATE_LEFT ||
					     m->state == ML_STATE_DEAD;
				if (!ok) {
					bad++;
					if (bad <= 3)
						violation(sim, x,
						          "not converged: n%d sees n%d as %s, "
						          "truth is %s",
						          o, x,
						          m ? swim_state_name(m->state) : "absent",
						          nx->truth == T_UP        ? "up"
						          : nx->truth == T_CRASHED ? "crashed"
						                                   : "left");
					else
						sim->violations++;
				}
			}
		}
	}
	for (int i = 0; i < sim->ntracks; i++) {
		struct track *tr = &sim->tracks[i];
		if (tr->kind == 1 && sim->nodes[tr->subject].truth == T_CRASHED) {
			if (tr->t100 < 0 && ex->converge)
				violation(sim, tr->subject,
				          "crash of n%d not detected by all (%d/%d)", tr->subject,
				          tr->known, tr->population);
			else if (ex->detect_ms > 0 && tr->t100 > ex->detect_ms * 1000)
				violation(sim, tr->subject,
				          "crash of n%d known everywhere after %.3f s > %.3f s",
				          tr->subject, tr->t100 / 1e6, ex->detect_ms / 1e3);
			if (ex->first_suspect_ms > 0 &&
			    (tr->first_suspect < 0 ||
			     tr->first_suspect > ex->first_suspect_ms * 1000))
				violation(sim, tr->subject,
				          "first suspicion of n%d after %.3f s > %.3f s",
				          tr->subject, tr->first_suspect / 1e6,
				          ex->first_suspect_ms / 1e3);
		}
		if (tr->kind == 0 && ex->join_ms > 0 && sim->nodes[tr->subject].truth == T_UP &&
		    (tr->t100 < 0 || tr->t100 > ex->join_ms * 1000))
			violation(sim, tr->subject,
			          "join of n%d known by %d/%d after %.3f s (bound %.3f s)",
			          tr->subject, tr->known, tr->population,
			          tr->t100 < 0 ? -1.0 : tr->t100 / 1e6, ex->join_ms / 1e3);
	}
	if (ex->fp_max >= 0 && (int64_t)sim->fp > ex->fp_max)
		violation(sim, sim->first_fp_subj,
		          "%llu false positives (healthy node declared dead), bound %lld",
		          (unsigned long long)sim->fp, (long long)ex->fp_max);
	if (ex->fsusp_max >= 0 && (int64_t)sim->fp_suspect > ex->fsusp_max)
		violation(sim, -1, "%llu false suspicions, bound %lld",
		          (unsigned long long)sim->fp_suspect, (long long)ex->fsusp_max);
	if (ex->load_max > 0 && (double)sim->load_max_seen > ex->load_max)
		violation(sim, -1, "a node sent %lld packets in one probe period, bound %.0f",
		          (long long)sim->load_max_seen, ex->load_max);
	if (sim->kv != NULL)
		kv_final_checks(sim);
	return sim->violations;
}

/* ------------------------------------------------------------ report */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Median over tracks of one kind of a field; -1 if none. */
static double track_median(struct sim *sim, int kind, size_t off, int *count)
{
	int64_t *v = xcalloc((size_t)sim->ntracks, sizeof(*v));
	int n = 0;
	for (int i = 0; i < sim->ntracks; i++) {
		if (sim->tracks[i].kind != kind)
			continue;
		int64_t x = *(int64_t *)((char *)&sim->tracks[i] + off);
		if (x >= 0)
			v[n++] = x;
	}
	*count = n;
	double r = -1;
	if (n > 0) {
		qsort(v, (size_t)n, sizeof(*v), cmp_i64);
		r = (double)v[n / 2] / 1e6;
	}
	free(v);
	return r;
}

static void print_cell(FILE *o, double sec, double round_s)
{
	if (sec < 0)
		fprintf(o, " %17s", "-");
	else
		fprintf(o, " %7.3f s %5.1f r", sec, sec / round_s);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * 4;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *const track_kinds[] = {"join", "failure", "leave"};

/* The table of event medians: first suspect, first dead, 50/99/100% know. */
static void report_events(struct sim *sim, double round_s)
{
	FILE *o = sim->out;
	for (int k = 0; k < 3; k++) {
		int c;
		double fs = track_median(sim, k, offsetof(struct track, first_suspect), &c);
		double fd = track_median(sim, k, offsetof(struct track, first_dead), &c);
		double t50 = track_median(sim, k, offsetof(struct track, t50), &c);
		double t99 = track_median(sim, k, offsetof(struct track, t99), &c);
		double t100 = track_median(sim, k, offsetof(struct track, t100), &c);
		int total = 0;
		for (int i = 0; i < sim->ntracks; i++)
			total += sim->tracks[i].kind == k;
		if (total == 0)
			continue;
		char label[40];
		snprintf(label, sizeof(label), "%s (%d/%d complete)", track_kinds[k], c, total);
		fprintf(o, "%-28s", label);
		print_cell(o, fs, round_s);
		print_cell(o, fd, round_s);
		print_cell(o, t50, round_s);
		print_cell(o, t99, round_s);
		print_cell(o, t100, round_s);
		fprintf(o, "\n");
	}
}

/* One tab-separated line per run appended to --summary FILE. */
static void report_summary(struct sim *sim, uint64_t pk, uint64_t by, double secs,
                           double node_hours)
{
	if (sim->cfg.summary != NULL) {
		FILE *f = fopen(sim->cfg.summary, "a");
		if (f != NULL) {
			int c;
			fprintf(f, "%s\t%d\t%llu\t%d\t%.3f", sim->cfg.name, sim->n,
			        (unsigned long long)sim->cfg.seed, sim->cfg.lifeguard,
			        sim->cfg.loss);
			static const size_t offs[] = {
			        offsetof(struct track, first_suspect),
			        offsetof(struct track, first_dead), offsetof(struct track, t50),
			        offsetof(struct track, t99), offsetof(struct track, t100)};
			for (int k = 0; k < 3; k++)
				for (int q = 0; q < 5; q++)
					if (k == 1 || q >= 2)
						fprintf(f, "\t%.3f",
						        track_median(sim, k, offs[q], &c));
			fprintf(f, "\t%llu\t%.3f\t%llu\t%.3f\t%.1f\t%.1f\t%.1f\t%.3f\t%d\n",
			        (unsigned long long)sim->fp,
			        node_hours > 0 ? (double)sim->fp / node_hours : 0.0,
			        (unsigned long long)sim->fp_suspect, (double)pk / sim->n / secs,
			        (double)by / sim->n / secs, (double)sim->tcp_bytes / sim->n / secs,
			        sim->mem_after > sim->mem_before
			                ? (double)(sim->mem_after - sim->mem_before) / 1024.0 /
			                          sim->n
			                : (double)sim->rss_after_kb / sim->n,
			        wall_now() - sim->wall_start, sim->violations);
			fclose(f);
		}
	}
}

/* Every track's knowledge curve into --curve FILE. */
static void report_curve(struct sim *sim)
{
	if (sim->cfg.curve_csv != NULL && sim->ntracks > 0) {
		FILE *f = fopen(sim->cfg.curve_csv, "w");
		if (f != NULL) {
			fprintf(f, "# kind subject seconds fraction_known\n");
			for (int i = 0; i < sim->ntracks; i++) {
				struct track *tr = &sim->tracks[i];
				int pop = tr->known > tr->population ? tr->known : tr->population;
				for (int k = 0; k < tr->known; k++)
					fprintf(f, "%s n%d %.4f %.5f\n", track_kinds[tr->kind],
					        tr->subject, tr->times[k] / 1e6,
					        (double)(k + 1) / pop);
			}
			fclose(f);
		}
	}
}

/* join storm: when each node first lists all N alive (the straggler is the
 * last of these, see report_sees_all) */
static void note_sees_all(struct sim *sim, struct node *nd)
{
	if (!sim->cfg.warm && nd->sees_all_at < 0 && swim_num_alive(nd->s) + 1 >= (size_t)sim->n)
		nd->sees_all_at = sim->now;
}

static void report_sees_all(struct sim *sim)
{
	if (sim->cfg.warm)
		return;
	int64_t *t = calloc((size_t)sim->n, sizeof(*t));
	if (t == NULL)
		abort();
	int k = 0, never = 0;
	for (int i = 0; i < sim->n; i++) {
		if (sim->nodes[i].sees_all_at < 0)
			never++;
		else
			t[k++] = sim->nodes[i].sees_all_at;
	}
	if (k > 0) {
		qsort(t, (size_t)k, sizeof(*t), cmp_i64);
		double med = t[k / 2] / 1e6,
		       p99 = t[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1] / 1e6;
		double last = t[k - 1] / 1e6;
		fprintf(sim->out,
		        "storm: node sees all %d alive (from the storm's start): median %.3f s, "
		        "p99 %.3f s, last %.3f s (last/median %.1f); %d never\n",
		        sim->n, med, p99, last, med > 0 ? last / med : 0.0, never);
		double bound = sim->cfg.expect.storm_tail;
		if (bound > 0 && last > bound * med)
			violation(sim, -1,
			          "the last node saw all after %.3f s > %.1f x median %.3f s", last,
			          bound, med);
	}
	if (never > 0 && sim->cfg.expect.storm_tail > 0)
		violation(sim, -1, "%d nodes never saw all %d alive", never, sim->n);
	free(t);
}

/* ------------------------------------------------------------ coordinates */

/*
 * How well each node's Vivaldi coordinate (swim_coord_self, the one the
 * core learns from its own probes' RTTs and the coordinates in the acks)
 * predicts the latency model: for a fixed set of pairs (coordacc.h),
 * estimated = coord_distance_ns of the two coordinates, true = twice the
 * base one-way delay (no jitter, no slowness). Read-only: sampling calls
 * nothing that changes a core, so it cannot change a run.
 */
static bool coord_judge(void *ud, uint32_t a, uint32_t b, double *est, double *truth, bool *near)
{
	struct sim *sim = ud;
	struct node *na = &sim->nodes[a], *nb = &sim->nodes[b];
	if (na->truth != T_UP || nb->truth != T_UP || na->s == NULL || nb->s == NULL)
		return false;
	const struct coord *ca = swim_coord_self(na->s), *cb = swim_coord_self(nb->s);
	if (ca == NULL || cb == NULL)
		return false;
	*est = (double)coord_distance_ns(ca, cb) / 1e9;
	*truth = 2.0 * base_oneway_us(sim, (int)a, (int)b) / 1e6;
	*near = sim->topo != NULL &&
	        sim_topo_region(sim->topo, (int)a) == sim_topo_region(sim->topo, (int)b);
	return true;
}

/* Nodes that joined during the run are not in the pair set: the median
 * error of their pairs with the first JOIN_PARTNERS initial nodes tells
 * how fast a newcomer's coordinate settles in a converged cluster (the
 * Vivaldi paper's "a new host needs few samples"). -1: none up. */
#define JOIN_PARTNERS 200
static double coord_join_median(struct sim *sim)
{
	int partners = sim->cfg.nodes < JOIN_PARTNERS ? sim->cfg.nodes : JOIN_PARTNERS;
	size_t m = 0;
	for (int j = sim->cfg.nodes; j < sim->n; j++) {
		for (int k = 0; k < partners; k++) {
			double est, truth;
			bool near;
			if (!coord_judge(sim, (uint32_t)j, (uint32_t)k, &est, &truth, &near) ||
			    !(truth > 0))
				continue;
			if (sim->join_err == NULL)
				sim->join_err = xcalloc((size_t)(sim->cap - sim->cfg.nodes) *
				                                (size_t)partners,
				                        sizeof(double));
			sim->join_err[m++] = fabs(est - truth) / truth;
		}
	}
	return coordacc_quantile(sim->join_err, m, 0.5);
}

static void coord_sample(struct sim *sim)
{
	const struct coordacc_point *p =
	        coordacc_sample(sim->cacc, (double)sim->now / 1e6, coord_judge, sim);
	sim->join_median = coord_join_median(sim);
	if (sim->coord_curve != NULL)
		fprintf(sim->coord_curve, "%d\t%llu\t%.1f\t%.5f\t%.5f\t%.5f\t%zu\t%.5f\n",
		        sim->cfg.nodes, (unsigned long long)sim->cfg.seed, p->t_s, p->median,
		        p->p90, p->near_median, p->judged, sim->join_median);
	if (sim->cfg.verbose)
		fprintf(sim->out,
		        "coordinates at %.1f s: median %.4f p90 %.4f near %.4f (%zu pairs); "
		        "joined nodes %.4f\n",
		        p->t_s, p->median, p->p90, p->near_median, p->judged, sim->join_median);
}

static const struct coordacc_point *coord_last(const struct sim *sim)
{
	if (sim->cacc == NULL || sim->cacc->npts == 0)
		return NULL;
	return &sim->cacc->pts[sim->cacc->npts - 1];
}

static void coord_violation(struct sim *sim, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void coord_violation(struct sim *sim, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	violation_vprint(sim, fmt, ap);
	va_end(ap);
}

/* The scenario's bounds on the last sample and on the convergence time. */
static void coord_checks(struct sim *sim)
{
	const struct sim_expect *ex = &sim->cfg.expect;
	if (ex->coord_median_max <= 0 && ex->coord_p90_max <= 0 && ex->coord_converge_ms <= 0)
		return;
	const struct coordacc_point *p = coord_last(sim);
	if (p == NULL || p->judged == 0) {
		coord_violation(sim, "no coordinates to judge (disabled, or no node has one)");
		return;
	}
	if (ex->coord_median_max > 0 && p->median > ex->coord_median_max)
		coord_violation(sim, "coordinates: median relative error %.4f > %.4f at %.1f s",
		                p->median, ex->coord_median_max, p->t_s);
	if (ex->coord_p90_max > 0 && p->p90 > ex->coord_p90_max)
		coord_violation(sim, "coordinates: p90 relative error %.4f > %.4f at %.1f s",
		                p->p90, ex->coord_p90_max, p->t_s);
	double conv = coordacc_converged_at(sim->cacc, sim->cfg.coord.threshold);
	if (ex->coord_converge_ms > 0 && (conv < 0 || conv * 1000.0 > ex->coord_converge_ms))
		coord_violation(sim,
		                "coordinates: median error not at or under %.2f for good within "
		                "%.0f s (converged at %.1f s; -1: never)",
		                sim->cfg.coord.threshold, ex->coord_converge_ms / 1000.0, conv);
}

/* The last sample's distribution of relative error, 201 quantiles, as
 * "N seed q error" lines appended to cfg.coord.cdf. */
static void coord_write_cdf(struct sim *sim)
{
	const struct coordacc_point *p = coord_last(sim);
	if (sim->cfg.coord.cdf == NULL || p == NULL || p->judged == 0)
		return;
	FILE *f = fopen(sim->cfg.coord.cdf, "a");
	if (f == NULL) {
		fprintf(sim->out, "rumor-sim: cannot write %s\n", sim->cfg.coord.cdf);
		return;
	}
	/* acc->err still holds the last sample's errors (sorted by its quantiles) */
	for (int k = 0; k <= 200; k++)
		fprintf(f, "%d\t%llu\t%.3f\t%.5f\n", sim->cfg.nodes,
		        (unsigned long long)sim->cfg.seed, k / 200.0,
		        coordacc_quantile(sim->cacc->err, p->judged, k / 200.0));
	fclose(f);
}

/* One line, stable and greppable ("coord-accuracy"), keys fixed. */
static void coord_report(struct sim *sim)
{
	const struct coordacc_point *p = coord_last(sim);
	if (sim->cacc == NULL)
		return;
	struct coordacc_point none = {.median = -1, .p90 = -1, .near_median = -1};
	if (p == NULL)
		p = &none;
	/* RTT samples folded in per live node, and those refused */
	uint64_t upd = 0, rej = 0;
	int up = 0;
	for (int i = 0; i < sim->n; i++) {
		if (sim->nodes[i].truth != T_UP || sim->nodes[i].s == NULL)
			continue;
		up++;
		upd += swim_stats(sim->nodes[i].s)->coord_updates;
		rej += swim_stats(sim->nodes[i].s)->coord_rejected;
	}
	fprintf(sim->out,
	        "coord-accuracy: N=%d seed=%llu t=%.0f pairs=%zu judged=%zu all_pairs=%d "
	        "median=%.4f p90=%.4f near_median=%.4f near_pairs=%zu threshold=%.2f "
	        "converged_s=%.0f joined_median=%.4f updates_per_node=%.1f rejected=%llu\n",
	        sim->cfg.nodes, (unsigned long long)sim->cfg.seed, p->t_s, sim->cacc->npairs,
	        p->judged, sim->cacc->all_pairs, p->median, p->p90, p->near_median, p->near,
	        sim->cfg.coord.threshold,
	        coordacc_converged_at(sim->cacc, sim->cfg.coord.threshold), sim->join_median,
	        up > 0 ? (double)upd / up : 0.0, (unsigned long long)rej);
}

static void report(struct sim *sim)
{
	FILE *o = sim->out;
	double secs = sim->cfg.duration_ms / 1000.0;
	double round_s = sim->timing.gossip_interval_ms / 1000.0;
	uint64_t pk = 0, by = 0;
	for (int i = 0; i < sim->n; i++) {
		struct node *nd = &sim->nodes[i];
		pk += nd->pk_sent;
		by += nd->by_sent;
		if (nd->s != NULL) {
			pk += swim_stats(nd->s)->packets_sent;
			by += swim_stats(nd->s)->bytes_sent;
		}
	}
	fprintf(o, "\n== %s: N=%d seed=%llu duration=%.0f s profile=%s lifeguard=%s loss=%.2f\n",
	        sim->cfg.name, sim->n, (unsigned long long)sim->cfg.seed, secs, sim->cfg.profile,
	        sim->cfg.lifeguard ? "on" : "off", sim->cfg.loss);
	fprintf(o, "%-28s %17s %17s %17s %17s %17s\n", "event (median, time/rounds)",
	        "first suspect", "first dead", "50% know", "99% know", "100% know");
	report_events(sim, round_s);
	if (sim->kv != NULL)
		kv_report_row(sim, round_s);
	if (sim->full_mesh_at >= 0)
		fprintf(o, "full mesh (every node sees all alive) at %.3f s\n",
		        sim->full_mesh_at / 1e6);
	report_sees_all(sim);
	double node_hours = (double)sim->n * secs / 3600.0;
	fprintf(o,
	        "false positives: %llu failed events at healthy nodes about healthy nodes "
	        "(%.2f per node-hour); %llu excused (partition/pause/slow); %llu false "
	        "suspicions\n",
	        (unsigned long long)sim->fp, node_hours > 0 ? (double)sim->fp / node_hours : 0.0,
	        (unsigned long long)sim->fp_excused, (unsigned long long)sim->fp_suspect);
	fprintf(o,
	        "load: %.2f packets/node/s, %.0f bytes/node/s sent; per probe period max %lld, "
	        "mean %.2f packets; network dropped %llu, duplicated %llu; push-pulls %llu, tcp "
	        "pings %llu\n",
	        (double)pk / sim->n / secs, (double)by / sim->n / secs,
	        (long long)sim->load_max_seen,
	        sim->load_samples ? sim->load_sum / (double)sim->load_samples : 0.0,
	        (unsigned long long)sim->dropped, (unsigned long long)sim->dup,
	        (unsigned long long)sim->tcp_pp, (unsigned long long)sim->tcp_ping);
	uint64_t dsent = 0, ddiff = 0, repairs = 0;
	for (int i = 0; i < sim->n; i++) {
		if (sim->nodes[i].s == NULL)
			continue;
		const struct swim_stats *st = swim_stats(sim->nodes[i].s);
		dsent += st->digests_sent;
		ddiff += st->digests_differed;
		repairs += st->repairs;
	}
	fprintf(o, "table repair: %llu digests sent, %llu differed, %llu repair push-pulls\n",
	        (unsigned long long)dsent, (unsigned long long)ddiff, (unsigned long long)repairs);
	fprintf(o, "push-pull (TCP): %.0f bytes/node/s; wall time %.1f s (start %.1f s)\n",
	        (double)sim->tcp_bytes / sim->n / secs, wall_now() - sim->wall_start,
	        sim->wall_started - sim->wall_start);
	if (sim->kv != NULL)
		kv_report_lines(sim);
	if (sim->mem_after > sim->mem_before)
		fprintf(o,
		        "memory: %.1f KiB malloc'd per simulated node after start (RSS %.1f MiB "
		        "total)\n",
		        (double)(sim->mem_after - sim->mem_before) / 1024.0 / sim->n,
		        sim->rss_after_kb / 1024.0);
	else
		fprintf(o, "memory: RSS %.1f MiB total after start\n", sim->rss_after_kb / 1024.0);
	if (sim->cfg.verbose) {
		for (int i = 0; i < sim->ntracks && i < 20; i++) {
			struct track *tr = &sim->tracks[i];
			fprintf(o,
			        "  %s n%d at %.3f s: suspect %.3f dead %.3f 50%% %.3f 99%% %.3f "
			        "100%% %.3f (%d/%d)\n",
			        track_kinds[tr->kind], tr->subject, tr->t0 / 1e6,
			        tr->first_suspect / 1e6, tr->first_dead / 1e6, tr->t50 / 1e6,
			        tr->t99 / 1e6, tr->t100 / 1e6, tr->known, tr->population);
		}
	}
	coord_report(sim);
	report_summary(sim, pk, by, secs, node_hours);
	report_curve(sim);
}

/* ------------------------------------------------------------ main loop */

void sim_cfg_defaults(struct sim_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = "custom";
	cfg->nodes = 50;
	cfg->seed = 1;
	cfg->duration_ms = 60000;
	cfg->profile = "lan";
	cfg->lifeguard = true;
	cfg->warm = true;
	cfg->join_window_ms = 5000;
	cfg->latency_ms = 0.25;
	cfg->link_spread_ms = 0.25;
	cfg->jitter_ms = 0.1;
	cfg->tcp_ping = true;
	cfg->expect.fp_max = -1;
	cfg->expect.fsusp_max = -1;
	cfg->kv.sync_interval_ms = 10000; /* the agent's -kv-sync-interval default */
	cfg->kv.map_size = (size_t)16 << 20;
	cfg->kv.value_size = 16;
	sim_topo_cfg_defaults(&cfg->topo);
	cfg->coord.threshold = 0.10;
	cfg->coord.every_ms = 5000;
	cfg->coord.max_pairs = 20000;
}

static size_t malloc_used(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#else
	return 0;
#endif
}

struct sim *sim_new(const struct sim_cfg *cfg, char *err, size_t errlen)
{
	if (cfg->nodes < 1 || cfg->nodes > 1000000) {
		snprintf(err, errlen, "nodes must be 1..1000000");
		return NULL;
	}
	struct sim *sim = xcalloc(1, sizeof(*sim));
	sim->cfg = *cfg;
	if (swim_timing_profile(&sim->timing, cfg->profile) < 0) {
		snprintf(err, errlen, "unknown profile %s", cfg->profile);
		free(sim);
		return NULL;
	}
	sim->idents = swim_idents_new();
	sim->timing.gossip_plain = cfg->gossip_plain;
	if (!cfg->lifeguard) {
		sim->timing.suspicion_max_timeout_mult = 1;
		sim->timing.awareness_max_multiplier = 1;
	}
	int extra = 0;
	for (int i = 0; i < cfg->nactions; i++)
		if (cfg->actions[i].type == SIM_JOIN)
			extra += cfg->actions[i].count;
	sim->cap = cfg->nodes + extra;
	sim->n = cfg->nodes;
	sim->nodes = xcalloc((size_t)sim->cap, sizeof(*sim->nodes));
	rng_seed(&sim->net, cfg->seed, 0xfffffff1);
	rng_seed(&sim->scen, cfg->seed, 0xfffffff2);
	sim->loss = cfg->loss;
	sim->full_mesh_at = -1;
	sim->join_median = -1;
	int64_t smin = swim_suspicion_timeout_ms(sim->timing.suspicion_mult, (size_t)sim->cap,
	                                         sim->timing.probe_interval_ms);
	sim->grace_us = (smin * sim->timing.suspicion_max_timeout_mult + 10000) * 1000;
	for (int i = 0; i < sim->cap; i++) {
		struct node *nd = &sim->nodes[i];
		nd->id = i;
		snprintf(nd->name, sizeof(nd->name), "n%d", i);
		node_addr(i, &nd->addr);
		rng_seed(&nd->rng, cfg->seed, (uint64_t)i);
		nd->tick_at = INT64_MAX;
		nd->sees_all_at = -1;
	}
	if (sim->cap <= VIEW_CHECK_MAX)
		sim->view_inc = xcalloc((size_t)sim->cap * (size_t)sim->cap, sizeof(uint32_t));
	if (cfg->kv.enabled && simkv_new(sim, err, errlen) == NULL) {
		sim_free(sim);
		return NULL;
	}
	if (cfg->topo.regions > 0 &&
	    (sim->topo = sim_topo_new(&cfg->topo, sim->cap, cfg->seed, err, errlen)) == NULL) {
		sim_free(sim);
		return NULL;
	}
	if (cfg->coord.enabled) {
		sim->cacc = xcalloc(1, sizeof(*sim->cacc));
		if (cfg->coord.every_ms < 100 || cfg->coord.max_pairs < 1 ||
		    coordacc_init(sim->cacc, (uint32_t)sim->n, cfg->coord.max_pairs, cfg->seed) <
		            0) {
			snprintf(err, errlen, "coordinates: every >= 0.1 s, pairs >= 1");
			sim_free(sim);
			return NULL;
		}
	}
	return sim;
}

static void deliver(struct sim *sim, struct ev *e)
{
	struct node *nd = &sim->nodes[e->node];
	switch (e->type) {
	case EV_PACKET:
		sim->delivered++;
		swim_recv_packet(nd->s, now_ms(sim), &sim->nodes[e->from].addr, e->data, e->len);
		break;
	case EV_PP_REQ: {
		struct swim_stream_result res;
		int rc = swim_stream_recv(nd->s, now_ms(sim), e->data, e->len, false, &res);
		if (rc == ML_OK && res.reply != NULL) {
			int back = (int)e->from;
			sim->tcp_bytes += res.reply_len;
			sim_deliver_later(sim, EV_PP_REPLY, back, nd->id,
			                  sim->now + tcp_latency_us(sim, nd->id, back, 1),
			                  res.reply, res.reply_len, sim->nodes[back].life);
		} else if (rc != ML_OK && sim->cfg.verbose) {
			fprintf(sim->out, "push-pull at n%d refused: %s\n", nd->id, res.error);
		}
		free(res.reply);
		break;
	}
	case EV_PP_REPLY: {
		if (e->aux != nd->life)
			break; /* the connection died with the process that opened it */
		struct swim_stream_result res;
		int rc = swim_stream_recv(nd->s, now_ms(sim), e->data, e->len, true, &res);
		if (rc != ML_OK && sim->cfg.verbose)
			fprintf(sim->out, "push-pull reply at n%d: %s\n", nd->id, res.error);
		free(res.reply);
		break;
	}
	case EV_TCP_PING: {
		struct swim_stream_result res;
		int rc = swim_stream_recv(nd->s, now_ms(sim), e->data, e->len, false, &res);
		int back = (int)e->from;
		int64_t at = sim->now + tcp_latency_us(sim, nd->id, back, 1);
		bool ok = rc == ML_OK && res.reply != NULL && at <= e->aux;
		struct ev d = {.t = ok ? at : e->aux,
		               .type = EV_TCP_DONE,
		               .node = (uint32_t)back,
		               .gen = (uint32_t)sim->nodes[back].life,
		               .aux = e->gen,
		               .flag = ok};
		heap_push(sim, d);
		free(res.reply);
		break;
	}
	default:
		break;
	}
}

/* The target of a TCP ping is down: the ping times out at its deadline. */
static void tcp_ping_lost(struct sim *sim, struct ev *e)
{
	int back = (int)e->from;
	struct ev d = {.t = e->aux,
	               .type = EV_TCP_DONE,
	               .node = (uint32_t)back,
	               .gen = (uint32_t)sim->nodes[back].life,
	               .aux = e->gen,
	               .flag = 0};
	heap_push(sim, d);
}

static void handle(struct sim *sim, struct ev *e)
{
	if (e->type >= EV_KV_OP) {
		kv_handle(sim, e);
		return;
	}
	struct node *nd = e->type == EV_ACTION || e->type == EV_CHECK || e->type == EV_COORD
	                          ? NULL
	                          : &sim->nodes[e->node];
	switch (e->type) {
	case EV_TICK:
		if (e->gen != nd->tick_gen || nd->truth != T_UP)
			return;
		if (node_paused(sim, nd)) {
			e->t = nd->pause_until;
			nd->tick_at = e->t;
			heap_push(sim, *e);
			return;
		}
		nd->tick_at = INT64_MAX;
		swim_tick(nd->s, now_ms(sim));
		note_sees_all(sim, nd);
		schedule_tick(sim, nd);
		return;
	case EV_PACKET:
	case EV_PP_REQ:
	case EV_PP_REPLY:
	case EV_TCP_PING:
		if (nd->truth != T_UP) {
			if (e->type == EV_TCP_PING)
				tcp_ping_lost(sim, e);
			free(e->data);
			return;
		}
		if (node_paused(sim, nd)) {
			if (e->type == EV_PACKET && e->flag == 0 && nd->queued >= UDP_QUEUE_MAX) {
				sim->dropped++; /* socket buffer full */
				free(e->data);
				return;
			}
			if (e->type == EV_PACKET && e->flag == 0)
				nd->queued++;
			e->flag = 1; /* counted in the queue */
			e->t = nd->pause_until;
			heap_push(sim, *e);
			return;
		}
		if (e->type == EV_PACKET && e->flag)
			nd->queued--;
		deliver(sim, e);
		free(e->data);
		note_sees_all(sim, nd);
		kv_flush(sim, nd->id);
		schedule_tick(sim, nd);
		return;
	case EV_TCP_DONE:
		if (nd->truth != T_UP || e->gen != (uint32_t)nd->life)
			return;
		if (node_paused(sim, nd)) {
			e->t = nd->pause_until;
			heap_push(sim, *e);
			return;
		}
		swim_tcp_ping_done(nd->s, now_ms(sim), (uint32_t)e->aux, e->flag);
		schedule_tick(sim, nd);
		return;
	case EV_LEAVE_STOP:
		if (nd->truth != T_UP || !nd->leaving || e->gen != (uint32_t)nd->life)
			return;
		/* the agent waits for the leave broadcast to go out, at most 10 s */
		if (swim_leave_done(nd->s) || e->aux >= 100) {
			node_stop(sim, nd, T_LEFT);
		} else {
			e->aux++;
			e->t = sim->now + 100000;
			heap_push(sim, *e);
		}
		return;
	case EV_ACTION:
		apply_action(sim, &sim->cfg.actions[e->node]);
		return;
	case EV_CHECK:
		periodic_check(sim);
		e->t += sim->timing.probe_interval_ms * 1000;
		heap_push(sim, *e);
		return;
	case EV_COORD:
		coord_sample(sim);
		e->t += sim->cfg.coord.every_ms * 1000;
		heap_push(sim, *e);
		return;
	default:
		return;
	}
}

int sim_run(struct sim *sim, FILE *out)
{
	sim->out = out;
	g_sim = sim;
	const struct sim_cfg *cfg = &sim->cfg;
	if (!cfg->quiet)
		fprintf(out, "rumor-sim %s: N=%d seed=%llu (replay with --seed %llu)\n", cfg->name,
		        cfg->nodes, (unsigned long long)cfg->seed, (unsigned long long)cfg->seed);
	sim->wall_start = wall_now();
	sim->mem_before = malloc_used();
	if (cfg->warm) {
		for (int i = 0; i < sim->n; i++)
			node_start(sim, i);
		warm_start(sim);
	} else {
		/* join storm: node 0 first, the others within join_window */
		node_start(sim, 0);
		int started = sim->n;
		sim->n = 1;
		for (int i = 1; i < started; i++) {
			int64_t at = (int64_t)(rng_unit(&sim->scen) * (double)cfg->join_window_ms *
			                       1000);
			struct ev e = {
			        .t = at, .type = EV_ACTION, .node = UINT32_MAX, .gen = (uint32_t)i};
			heap_push(sim, e);
		}
		sim->n = started;
		for (int i = 1; i < started; i++)
			sim->nodes[i].truth = T_NONE;
	}
	sim->mem_after = malloc_used();
	sim->wall_started = wall_now();
	sim->rss_after_kb = rss_kb();
	for (int i = 0; i < cfg->nactions; i++) {
		struct ev e = {
		        .t = cfg->actions[i].at_ms * 1000, .type = EV_ACTION, .node = (uint32_t)i};
		heap_push(sim, e);
	}
	struct ev chk = {.t = sim->timing.probe_interval_ms * 1000, .type = EV_CHECK};
	heap_push(sim, chk);
	if (sim->cacc != NULL) {
		struct ev ce = {.t = 0, .type = EV_COORD};
		heap_push(sim, ce);
		if (cfg->coord.curve != NULL &&
		    (sim->coord_curve = fopen(cfg->coord.curve, "a")) == NULL)
			fprintf(out, "rumor-sim: cannot write %s\n", cfg->coord.curve);
	}
	int64_t end = cfg->duration_ms * 1000;
	while (sim->hn > 0 && sim->heap[0].t <= end) {
		struct ev e = heap_pop(sim);
		sim->now = e.t;
		if (e.type == EV_ACTION && e.node == UINT32_MAX) {
			/* a join-storm node starts and joins node 0 or any live node */
			int id = (int)e.gen;
			node_start(sim, id);
			track_new(sim, 0, id);
			int seedn = sim->cfg.join_seed ? 0 : random_up_node(sim, id);
			start_push_pull(sim, id, seedn, true);
			continue;
		}
		handle(sim, &e);
	}
	sim->now = end;
	while (sim->hn > 0) {
		struct ev e = heap_pop(sim);
		if (e.type == EV_PACKET || e.type == EV_PP_REQ || e.type == EV_PP_REPLY ||
		    e.type == EV_TCP_PING || e.type == EV_KV_FRAME)
			free(e.data);
	}
	final_checks(sim);
	coord_checks(sim);
	coord_write_cdf(sim);
	report(sim);
	if (sim->coord_curve != NULL)
		fclose(sim->coord_curve);
	if (sim->violations > 0)
		fprintf(out, "FAIL: %d violation(s); replay with --seed %llu\n", sim->violations,
		        (unsigned long long)cfg->seed);
	else if (!cfg->quiet)
		fprintf(out, "PASS: invariants held (seed %llu)\n", (unsigned long long)cfg->seed);
	return sim->violations;
}

void sim_free(struct sim *sim)
{
	if (sim == NULL)
		return;
	simkv_free(sim);
	sim_topo_free(sim->topo);
	if (sim->cacc != NULL)
		coordacc_free(sim->cacc);
	free(sim->cacc);
	free(sim->join_err);
	for (int i = 0; i < sim->cap; i++)
		if (sim->nodes[i].s != NULL)
			swim_free(sim->nodes[i].s);
	for (int i = 0; i < sim->ntracks; i++) {
		free(sim->tracks[i].seen);
		free(sim->tracks[i].times);
	}
	free(sim->tracks);
	swim_idents_free(sim->idents); /* after every view that used it */
	free(sim->nodes);
	free(sim->heap);
	free(sim->view_inc);
	free(sim);
}
