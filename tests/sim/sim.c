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
 */
#define _GNU_SOURCE
#include "tests/sim/sim.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/wire.h"

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

struct sim {
	struct sim_cfg cfg;
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
	static const char *act[] = {"CRASH", "RESTART", "LEAVE", "JOIN", "PAUSE",
				    "PARTITION", "HEAL", "LOSS", "SLOW"};
	if (w < 6)
		return ev[w];
	if (w >= 100 && w < 109)
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
			fprintf(o, "    %10.3f s  %-9s n%d\n", r->t / 1e6, what_name(r->what), r->subj);
		else
			fprintf(o, "    %10.3f s  n%d sees n%d %s (inc %u)\n", r->t / 1e6, r->obs,
				r->subj, what_name(r->what), r->inc);
	}
	free(pick);
}

static void violation(struct sim *sim, int subj, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#include <stdarg.h>
static void violation(struct sim *sim, int subj, const char *fmt, ...)
{
	sim->violations++;
	if (sim->violations > 10)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(sim->out, "VIOLATION at %.3f s: ", sim->now / 1e6);
	vfprintf(sim->out, fmt, ap);
	fprintf(sim->out, "\n");
	va_end(ap);
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

/* One-way latency a -> b in µs. */
static int64_t latency_us(struct sim *sim, int a, int b)
{
	double base = sim->cfg.latency_ms * 1000.0;
	int lo = a < b ? a : b, hi = a < b ? b : a;
	base += (double)(mix2(lo, hi) % 1000) / 1000.0 * sim->cfg.link_spread_ms * 1000.0;
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
	sim_deliver_later(sim, EV_PACKET, b, nd->id, sim->now + latency_us(sim, nd->id, b), pkt, len,
			  0);
	if (sim->cfg.dup > 0 && rng_unit(&sim->net) < sim->cfg.dup) {
		sim->dup++;
		sim_deliver_later(sim, EV_PACKET, b, nd->id, sim->now + latency_us(sim, nd->id, b),
				  pkt, len, 0);
	}
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
		struct ev e = {.t = dl, .type = EV_TCP_DONE, .node = (uint32_t)nd->id,
			       .gen = (uint32_t)nd->life, .aux = seq, .flag = 0};
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
					fprintf(sim->out, "false positive at %.3f s: n%d declares n%d dead\n",
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
	};
	struct swim_config c;
	memset(&c, 0, sizeof(c));
	c.name = nd->name;
	c.addr = nd->addr;
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(c.vsn, vsn, 6);
	c.timing = sim->timing;
	c.idents = sim->idents;
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
	size_t cap = 64 + (size_t)sim->n * 96;
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
			struct ev e = {.t = sim->now + 1000, .type = EV_LEAVE_STOP,
				       .node = (uint32_t)nd->id, .gen = (uint32_t)nd->life, .aux = 0};
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
			nd->excuse_until = nd->slow_until == INT64_MAX ? INT64_MAX
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
		break;
	case SIM_LOSS:
		sim->loss = a->value;
		break;
	}
}

/* ------------------------------------------------------------ checks */

static void periodic_check(struct sim *sim)
{
	bool full = sim->full_mesh_at < 0;
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
				uint32_t *v = &sim->view_inc[(size_t)o * (size_t)sim->cap + (size_t)x];
				if (m->incarnation < *v && m->state != ML_STATE_ALIVE)
					violation(sim, x, "n%d holds n%d at incarnation %u < %u", o, x,
						  m->incarnation, *v);
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
					ok = m != NULL && (m->state == ML_STATE_ALIVE ||
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
							  "not converged: n%d sees n%d as %s, truth is %s",
							  o, x, m ? swim_state_name(m->state) : "absent",
							  nx->truth == T_UP ? "up" : nx->truth == T_CRASHED ? "crashed" : "left");
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
				violation(sim, tr->subject, "crash of n%d not detected by all (%d/%d)",
					  tr->subject, tr->known, tr->population);
			else if (ex->detect_ms > 0 && tr->t100 > ex->detect_ms * 1000)
				violation(sim, tr->subject, "crash of n%d known everywhere after %.3f s > %.3f s",
					  tr->subject, tr->t100 / 1e6, ex->detect_ms / 1e3);
			if (ex->first_suspect_ms > 0 &&
			    (tr->first_suspect < 0 || tr->first_suspect > ex->first_suspect_ms * 1000))
				violation(sim, tr->subject, "first suspicion of n%d after %.3f s > %.3f s",
					  tr->subject, tr->first_suspect / 1e6, ex->first_suspect_ms / 1e3);
		}
		if (tr->kind == 0 && ex->join_ms > 0 && sim->nodes[tr->subject].truth == T_UP &&
		    (tr->t100 < 0 || tr->t100 > ex->join_ms * 1000))
			violation(sim, tr->subject, "join of n%d known by %d/%d after %.3f s (bound %.3f s)",
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
	fprintf(o, "%-28s %17s %17s %17s %17s %17s\n", "event (median, time/rounds)", "first suspect",
		"first dead", "50% know", "99% know", "100% know");
	static const char *kinds[] = {"join", "failure", "leave"};
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
		snprintf(label, sizeof(label), "%s (%d/%d complete)", kinds[k], c, total);
		fprintf(o, "%-28s", label);
		print_cell(o, fs, round_s);
		print_cell(o, fd, round_s);
		print_cell(o, t50, round_s);
		print_cell(o, t99, round_s);
		print_cell(o, t100, round_s);
		fprintf(o, "\n");
	}
	if (sim->full_mesh_at >= 0)
		fprintf(o, "full mesh (every node sees all alive) at %.3f s\n", sim->full_mesh_at / 1e6);
	double node_hours = (double)sim->n * secs / 3600.0;
	fprintf(o, "false positives: %llu failed events at healthy nodes about healthy nodes "
		   "(%.2f per node-hour); %llu excused (partition/pause/slow); %llu false suspicions\n",
		(unsigned long long)sim->fp, node_hours > 0 ? (double)sim->fp / node_hours : 0.0,
		(unsigned long long)sim->fp_excused, (unsigned long long)sim->fp_suspect);
	fprintf(o, "load: %.2f packets/node/s, %.0f bytes/node/s sent; per probe period max %lld, "
		   "mean %.2f packets; network dropped %llu, duplicated %llu; push-pulls %llu, tcp pings %llu\n",
		(double)pk / sim->n / secs, (double)by / sim->n / secs, (long long)sim->load_max_seen,
		sim->load_samples ? sim->load_sum / (double)sim->load_samples : 0.0,
		(unsigned long long)sim->dropped, (unsigned long long)sim->dup,
		(unsigned long long)sim->tcp_pp, (unsigned long long)sim->tcp_ping);
	fprintf(o, "push-pull (TCP): %.0f bytes/node/s; wall time %.1f s (start %.1f s)\n",
		(double)sim->tcp_bytes / sim->n / secs, wall_now() - sim->wall_start,
		sim->wall_started - sim->wall_start);
	if (sim->mem_after > sim->mem_before)
		fprintf(o, "memory: %.1f KiB malloc'd per simulated node after start (RSS %.1f MiB total)\n",
			(double)(sim->mem_after - sim->mem_before) / 1024.0 / sim->n,
			sim->rss_after_kb / 1024.0);
	else
		fprintf(o, "memory: RSS %.1f MiB total after start\n", sim->rss_after_kb / 1024.0);
	if (sim->cfg.verbose) {
		for (int i = 0; i < sim->ntracks && i < 20; i++) {
			struct track *tr = &sim->tracks[i];
			fprintf(o, "  %s n%d at %.3f s: suspect %.3f dead %.3f 50%% %.3f 99%% %.3f 100%% %.3f (%d/%d)\n",
				kinds[tr->kind], tr->subject, tr->t0 / 1e6, tr->first_suspect / 1e6,
				tr->first_dead / 1e6, tr->t50 / 1e6, tr->t99 / 1e6, tr->t100 / 1e6,
				tr->known, tr->population);
		}
	}
	if (sim->cfg.summary != NULL) {
		FILE *f = fopen(sim->cfg.summary, "a");
		if (f != NULL) {
			int c;
			fprintf(f, "%s\t%d\t%llu\t%d\t%.3f", sim->cfg.name, sim->n,
				(unsigned long long)sim->cfg.seed, sim->cfg.lifeguard, sim->cfg.loss);
			static const size_t offs[] = {offsetof(struct track, first_suspect),
						      offsetof(struct track, first_dead),
						      offsetof(struct track, t50),
						      offsetof(struct track, t99),
						      offsetof(struct track, t100)};
			for (int k = 0; k < 3; k++)
				for (int q = 0; q < 5; q++)
					if (k == 1 || q >= 2)
						fprintf(f, "\t%.3f", track_median(sim, k, offs[q], &c));
			fprintf(f, "\t%llu\t%.3f\t%llu\t%.3f\t%.1f\t%.1f\t%.1f\t%.3f\t%d\n",
				(unsigned long long)sim->fp, node_hours > 0 ? (double)sim->fp / node_hours : 0.0,
				(unsigned long long)sim->fp_suspect, (double)pk / sim->n / secs,
				(double)by / sim->n / secs, (double)sim->tcp_bytes / sim->n / secs,
				sim->mem_after > sim->mem_before
				    ? (double)(sim->mem_after - sim->mem_before) / 1024.0 / sim->n
				    : (double)sim->rss_after_kb / sim->n,
				wall_now() - sim->wall_start, sim->violations);
			fclose(f);
		}
	}
	if (sim->cfg.curve_csv != NULL && sim->ntracks > 0) {
		FILE *f = fopen(sim->cfg.curve_csv, "w");
		if (f != NULL) {
			fprintf(f, "# kind subject seconds fraction_known\n");
			for (int i = 0; i < sim->ntracks; i++) {
				struct track *tr = &sim->tracks[i];
				int pop = tr->known > tr->population ? tr->known : tr->population;
				for (int k = 0; k < tr->known; k++)
					fprintf(f, "%s n%d %.4f %.5f\n", kinds[tr->kind], tr->subject,
						tr->times[k] / 1e6, (double)(k + 1) / pop);
			}
			fclose(f);
		}
	}
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
	}
	if (sim->cap <= VIEW_CHECK_MAX)
		sim->view_inc = xcalloc((size_t)sim->cap * (size_t)sim->cap, sizeof(uint32_t));
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
					  sim->now + tcp_latency_us(sim, nd->id, back, 1), res.reply,
					  res.reply_len, sim->nodes[back].life);
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
		struct ev d = {.t = ok ? at : e->aux, .type = EV_TCP_DONE, .node = (uint32_t)back,
			       .gen = (uint32_t)sim->nodes[back].life, .aux = e->gen,
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
	struct ev d = {.t = e->aux, .type = EV_TCP_DONE, .node = (uint32_t)back,
		       .gen = (uint32_t)sim->nodes[back].life, .aux = e->gen, .flag = 0};
	heap_push(sim, d);
}

static void handle(struct sim *sim, struct ev *e)
{
	struct node *nd = e->type == EV_ACTION || e->type == EV_CHECK ? NULL : &sim->nodes[e->node];
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
			int64_t at = (int64_t)(rng_unit(&sim->scen) * (double)cfg->join_window_ms * 1000);
			struct ev e = {.t = at, .type = EV_ACTION, .node = UINT32_MAX, .gen = (uint32_t)i};
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
		struct ev e = {.t = cfg->actions[i].at_ms * 1000, .type = EV_ACTION, .node = (uint32_t)i};
		heap_push(sim, e);
	}
	struct ev chk = {.t = sim->timing.probe_interval_ms * 1000, .type = EV_CHECK};
	heap_push(sim, chk);
	int64_t end = cfg->duration_ms * 1000;
	while (sim->hn > 0 && sim->heap[0].t <= end) {
		struct ev e = heap_pop(sim);
		sim->now = e.t;
		if (e.type == EV_ACTION && e.node == UINT32_MAX) {
			/* a join-storm node starts and joins node 0 or any live node */
			int id = (int)e.gen;
			node_start(sim, id);
			track_new(sim, 0, id);
			int seedn = random_up_node(sim, id);
			start_push_pull(sim, id, seedn, true);
			continue;
		}
		handle(sim, &e);
	}
	sim->now = end;
	while (sim->hn > 0) {
		struct ev e = heap_pop(sim);
		if (e.type == EV_PACKET || e.type == EV_PP_REQ || e.type == EV_PP_REPLY ||
		    e.type == EV_TCP_PING)
			free(e.data);
	}
	final_checks(sim);
	report(sim);
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
