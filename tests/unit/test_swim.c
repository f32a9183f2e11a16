/*
 * tests/unit/test_swim.c — the SWIM core on a hand-driven clock and a tiny
 * in-memory network: memberlist's formulas, the broadcast queue, join by
 * push-pull, failure detection, refutation, leave. (Large clusters and
 * fault mixes are the simulator's job: tests/sim/.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/bcast.h"
#include "gossip/coord.h"
#include "gossip/swim.h"
#include "lib/mp.h"
#include "tests/unit/check.h"

/* ----------------------------------------------------------- formulas */

static void test_formulas_match_memberlist(void)
{
	/* ANCHORS.md A3, computed LAN values */
	static const struct {
		size_t n;
		int64_t min_ms;
		int retransmits;
	} rows[] = {{3, 4000, 4},    {10, 4000, 8},     {32, 6020, 8},
	            {100, 8000, 12}, {1000, 12000, 16}, {10000, 16000, 20}};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int64_t got = swim_suspicion_timeout_ms(4, rows[i].n, 1000);
		CHECK(llabs(got - rows[i].min_ms) <= 1,
		      "suspicion min n=%zu: expected %lld got %lld", rows[i].n,
		      (long long)rows[i].min_ms, (long long)got);
		int r = swim_retransmit_limit(4, rows[i].n);
		CHECK(r == rows[i].retransmits, "retransmit n=%zu: expected %d got %d", rows[i].n,
		      rows[i].retransmits, r);
	}
	CHECK(swim_push_pull_scale_ms(30000, 32) == 30000, "push-pull unscaled at 32");
	CHECK(swim_push_pull_scale_ms(30000, 33) == 60000, "push-pull x2 at 33, got %lld",
	      (long long)swim_push_pull_scale_ms(30000, 33));
	CHECK(swim_push_pull_scale_ms(30000, 1000) == 30000 * 6, "push-pull x6 at 1000, got %lld",
	      (long long)swim_push_pull_scale_ms(30000, 1000));
	struct swim_timing t;
	CHECK(swim_timing_profile(&t, "lan") == 0 && t.probe_interval_ms == 1000 &&
	              t.probe_timeout_ms == 500 && t.gossip_interval_ms == 200,
	      "lan profile");
	CHECK(swim_timing_profile(&t, "wan") == 0 && t.probe_interval_ms == 5000 &&
	              t.suspicion_mult == 6,
	      "wan profile");
	CHECK(swim_timing_profile(&t, "nope") == -1, "unknown profile refused");
}

/* ------------------------------------------------------- broadcasts */

static void test_bcast_fewest_sent_first_and_invalidation(void)
{
	struct bcast_queue q;
	bcast_queue_create(&q, 100);
	const uint8_t a[] = "aaaa", b[] = "bbbb", c[] = "cc";
	bcast_queue_push(&q, 1, "n1", a, 4);
	bcast_queue_push(&q, 1, "n2", b, 4);
	const uint8_t *out[8];
	size_t lens[8];
	size_t n = bcast_queue_fill(&q, 1, 2, 1000, out, lens, 8);
	CHECK(n == 2, "both fit: expected 2 got %zu", n);
	/* a newer message about n1 replaces the old one */
	bcast_queue_push(&q, 1, "n1", c, 2);
	CHECK(q.n == 2, "invalidated: expected 2 queued got %zu", q.n);
	n = bcast_queue_fill(&q, 1, 2, 1000, out, lens, 8);
	CHECK(n == 2 && lens[0] == 2, "never-sent message first: got n=%zu len0=%zu", n, lens[0]);
	bcast_queue_retire(&q, 3);
	CHECK(q.n == 2, "nothing reached 3 transmits yet: %zu queued", q.n);
	bcast_queue_fill(&q, 1, 2, 1000, out, lens, 8);
	bcast_queue_retire(&q, 3);
	CHECK(q.n == 1, "b retired after 3 sends: %zu queued", q.n);
	/* budget: 5 bytes fits one 2-byte message with overhead 2, not a 4-byte one */
	bcast_queue_push(&q, 1, "n3", a, 4);
	n = bcast_queue_fill(&q, 1, 2, 5, out, lens, 8);
	CHECK(n == 1 && lens[0] == 2, "budget respected: n=%zu", n);
	bcast_queue_destroy(&q);
}

/* One gossip packet built for k peers counts as k transmits of each
 * message in it: a limit of 3 is reached by one packet to 3 peers, and a
 * message sent once to 2 peers goes before one sent to 3. */
static void test_bcast_fill_for_several_peers(void)
{
	struct bcast_queue q;
	bcast_queue_create(&q, 100);
	const uint8_t a[] = "aaaa", b[] = "bbbbb";
	const uint8_t *out[8];
	size_t lens[8];
	bcast_queue_push(&q, 1, "n1", a, 4);
	size_t n = bcast_queue_fill(&q, 3, 2, 1000, out, lens, 8);
	CHECK(n == 1, "one message: got %zu", n);
	bcast_queue_retire(&q, 4);
	CHECK(q.n == 1, "3 of 4 transmits: still queued (%zu)", q.n);
	bcast_queue_retire(&q, 3);
	CHECK(q.n == 0, "3 of 3 transmits after one fill for 3 peers: retired (%zu)", q.n);
	bcast_queue_push(&q, 1, "n1", a, 4);
	bcast_queue_push(&q, 1, "n2", b, 5);
	n = bcast_queue_fill(&q, 3, 2, 7, out, lens, 1); /* newest first: n2 */
	CHECK(n == 1 && lens[0] == 5, "newest first: n=%zu len=%zu", n, n ? lens[0] : 0);
	n = bcast_queue_fill(&q, 2, 2, 7, out, lens, 1); /* n1, never sent */
	CHECK(n == 1 && lens[0] == 4, "never sent next: n=%zu len=%zu", n, n ? lens[0] : 0);
	n = bcast_queue_fill(&q, 1, 2, 7, out, lens, 1); /* n1 (2 sends) before n2 (3) */
	CHECK(n == 1 && lens[0] == 4, "fewer transmits first: n=%zu len=%zu", n, n ? lens[0] : 0);
	bcast_queue_destroy(&q);
}

/* ------------------------------------------------ in-memory cluster */

#define MAXN 8
#define MAXQ 4096

struct pkt {
	int to, from;
	int64_t at;
	size_t len;
	uint8_t data[1500];
};

struct net {
	struct swim *nodes[MAXN];
	int n;
	bool down[MAXN]; /* crashed: sends and receives nothing */
	struct pkt *q;
	int nq;
	int64_t now;
	uint64_t rng;
	int events_failed[MAXN], events_left[MAXN], events_join[MAXN];
	int ticks[MAXN]; /* times a node's deadline came due: its wake-ups */
	/* every packet node 0 sends, whoever it is for: the largest, how many
	 * went compressed, how many did not decode */
	size_t tap_max_len, tap_payload_max; /* on the wire; decompressed */
	int tap_compressed, tap_bad;
	/* mixed clusters (net_init_mix): nodes below nrumor are rumor agents;
	 * rumor-only parts (a user message whose payload starts 0x80) node 0
	 * sent to any other address; which of rumor message i (its second
	 * payload byte) and serf message i each node received */
	int nrumor;
	int tap_rumor_to_others;
	uint64_t got_rumor[MAXN], got_serf[MAXN];
	/* table digests node 0 sent to each node */
	int tap_digests_to[MAXN];
	/* 1 + a node that loses every alive message sent to it (the rest of
	 * each packet still arrives), 0: none; alive messages so lost */
	int strip_alive_to;
	int stripped;
};

/* The regular push-pull interval net_init_mix gives its nodes; 0: lan's. */
static int64_t net_push_pull_ms;

#include "gossip/tags.h"

/* the messages in one packet, under the CRC and compress wrappers: the bare
 * message or a compound's parts (pointing into p or a static buffer); -1 if
 * it does not decode */
static int packet_parts(const uint8_t *p, size_t len, struct ml_slice *parts, int max,
                        bool *compressed, size_t *payload)
{
	static uint8_t out[ML_UDP_RECV_MAX];
	struct ml_slice m = {.p = p, .len = len};
	if (m.len > 0 && m.p[0] == ML_HAS_CRC && ml_crc_check(p, len, &m) != ML_OK)
		return -1;
	if (m.len > 0 && m.p[0] == ML_COMPRESS) {
		int n = ml_compress_decode(m.p + 1, m.len - 1, out, sizeof(out));
		if (n <= 0)
			return -1;
		*compressed = true;
		m.p = out;
		m.len = (size_t)n;
	}
	*payload = m.len;
	if (m.len > 0 && m.p[0] == ML_COMPOUND) {
		int trunc = 0;
		return ml_compound_decode(m.p + 1, m.len - 1, parts, max, &trunc);
	}
	parts[0] = m;
	return 1;
}

static int count_parts(const uint8_t *p, size_t len, bool *compressed, size_t *payload)
{
	static struct ml_slice parts[256];
	return packet_parts(p, len, parts, 256, compressed, payload);
}

/* Parts of one packet of this message type. */
static int count_type(const uint8_t *p, size_t len, uint8_t type)
{
	static struct ml_slice parts[256];
	bool z = false;
	size_t pl;
	int np = packet_parts(p, len, parts, 256, &z, &pl);
	int k = 0;
	for (int i = 0; i < np; i++)
		k += parts[i].len >= 1 && parts[i].p[0] == type;
	return k;
}

/*
 * The packet p with its alive messages taken out, into out (cap bytes):
 * its length, 0 when nothing is left to send, or SIZE_MAX when it held
 * none (out untouched). A packet that does not decode is kept as it is.
 */
static size_t strip_alive(const uint8_t *p, size_t len, uint8_t *out, size_t cap, int *stripped)
{
	static struct ml_slice parts[256];
	struct ml_slice kept[256];
	bool z = false;
	size_t pl;
	int np = packet_parts(p, len, parts, 256, &z, &pl), nk = 0;
	for (int i = 0; i < np; i++)
		if (parts[i].len >= 1 && parts[i].p[0] != ML_ALIVE)
			kept[nk++] = parts[i];
	if (np <= 0 || nk == np)
		return SIZE_MAX;
	*stripped += np - nk;
	if (nk == 0)
		return 0;
	if (nk == 1 && kept[0].len <= cap) {
		memcpy(out, kept[0].p, kept[0].len);
		return kept[0].len;
	}
	int r = ml_compound_encode(out, cap, kept, nk);
	return r > 0 ? (size_t)r : 0;
}

/* User messages in one packet whose payload is rumor's own (0x80 and up). */
static int count_rumor_only(const uint8_t *p, size_t len)
{
	static struct ml_slice parts[256];
	bool z = false;
	size_t pl;
	int np = packet_parts(p, len, parts, 256, &z, &pl);
	int k = 0;
	for (int i = 0; i < np; i++)
		k += parts[i].len >= 2 && parts[i].p[0] == ML_USER && parts[i].p[1] >= 0x80;
	return k;
}

struct ctx {
	struct net *net;
	int id;
};

static struct ctx ctxs[MAXN];

static int node_of(struct net *net, const struct ml_addr *a)
{
	return a->port >= 1000 && a->port < 1000 + net->n ? a->port - 1000 : -1;
}

static void n_send(void *c, const struct ml_addr *to, const uint8_t *p, size_t len)
{
	struct ctx *x = c;
	struct net *net = x->net;
	if (x->id == 0) {
		bool z = false;
		size_t payload = 0;
		int parts = count_parts(p, len, &z, &payload);
		if (payload > net->tap_payload_max)
			net->tap_payload_max = payload;
		if (len > net->tap_max_len)
			net->tap_max_len = len;
		net->tap_compressed += z;
		net->tap_bad += parts < 0;
		int d = node_of(net, to);
		if (d < 0 || d >= net->nrumor)
			net->tap_rumor_to_others += count_rumor_only(p, len);
		if (d >= 0)
			net->tap_digests_to[d] += count_type(p, len, ML_RUMOR_DIGEST);
	}
	int dst = node_of(net, to);
	static uint8_t cut[1500];
	if (dst >= 0 && dst == net->strip_alive_to - 1) {
		size_t n = strip_alive(p, len, cut, sizeof(cut), &net->stripped);
		if (n == 0)
			return;
		if (n != SIZE_MAX) {
			p = cut;
			len = n;
		}
	}
	if (dst < 0 || net->nq >= MAXQ || len > 1500 || net->down[x->id])
		return;
	struct pkt *k = &net->q[net->nq++];
	k->to = dst;
	k->from = x->id;
	k->at = net->now + 1;
	k->len = len;
	memcpy(k->data, p, len);
}

static uint32_t n_rand(void *c)
{
	struct ctx *x = c;
	uint64_t v = x->net->rng += 0x9e3779b97f4a7c15ull;
	v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
	v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)(v ^ (v >> 31));
}

/* push-pull: synchronous exchange through the same stream API the agent uses */
static void n_push_pull(void *c, const struct ml_addr *to, const char *name, bool join)
{
	struct ctx *x = c;
	struct net *net = x->net;
	int dst = node_of(net, to);
	if (dst < 0 || net->down[dst] || net->down[x->id])
		return;
	size_t len;
	uint8_t *req = swim_local_state_new(net->nodes[x->id], net->now, join, &len);
	struct swim_stream_result res;
	int rc = swim_stream_recv(net->nodes[dst], net->now, req, len, false, &res);
	free(req);
	if (rc != ML_OK)
		return;
	struct swim_stream_result res2;
	swim_stream_recv(net->nodes[x->id], net->now, res.reply, res.reply_len, true, &res2);
	free(res.reply);
	free(res2.reply);
}

static void n_event(void *c, enum swim_event_type type, const struct swim_member *m)
{
	struct ctx *x = c;
	if (type == SWIM_EV_FAILED)
		x->net->events_failed[x->id]++;
	if (type == SWIM_EV_LEFT)
		x->net->events_left[x->id]++;
	if (type == SWIM_EV_JOIN)
		x->net->events_join[x->id]++;
}

static void n_user(void *c, const uint8_t *p, size_t len)
{
	struct ctx *x = c;
	if (len < 2 || p[1] >= 64)
		return;
	/* each is gossiped on once when first heard, as serf and the KV store do */
	uint64_t *got = p[0] >= 0x80 ? &x->net->got_rumor[x->id] : &x->net->got_serf[x->id];
	if (*got & (1ull << p[1]))
		return;
	*got |= 1ull << p[1];
	if (p[0] >= 0x80)
		swim_broadcast_rumor(x->net->nodes[x->id], NULL, 0, p, len);
	else
		swim_broadcast_user(x->net->nodes[x->id], p, len);
}

/* The tags of a rumor agent with KV (nodes below nrumor) or of a Serf agent. */
static int mix_meta(uint8_t *buf, size_t cap, bool rumor, bool kv)
{
	struct tag tags[TAGS_CONSUL_MAX];
	size_t nt = rumor ? tags_consul(tags, "dc1", "0.1.0:rumor", "id", kv ? "8300" : NULL)
	                  : tags_consul(tags, "dc1", "0.8.2", "id", NULL);
	return tags_encode(buf, cap, tags, nt);
}

/* net_init_mix: the node with this index, if a rumor agent, runs no KV
 * store (no rpc_port tag); -1: every rumor agent runs one. */
static int net_kvless = -1;

/* n nodes; nrumor < 0: no classifier and no meta (every other test; all
 * count as rumor agents), else nodes below nrumor carry a rumor agent's
 * tags, the rest a Serf agent's, and every node classifies with
 * tags_is_rumor as the agent does. */
static void net_init_mix(struct net *net, int n, int nrumor)
{
	memset(net, 0, sizeof(*net));
	net->q = calloc(MAXQ, sizeof(*net->q));
	net->n = n;
	net->nrumor = nrumor < 0 ? n : nrumor;
	net->now = 1000000;
	net->rng = 42;
	for (int i = 0; i < n; i++) {
		ctxs[i].net = net;
		ctxs[i].id = i;
		struct swim_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		cfg.name = name;
		cfg.addr.len = 4;
		cfg.addr.ip[0] = 127;
		cfg.addr.ip[3] = 1;
		cfg.addr.port = (uint16_t)(1000 + i);
		static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
		memcpy(cfg.vsn, vsn, 6);
		swim_timing_profile(&cfg.timing, "lan");
		if (net_push_pull_ms > 0)
			cfg.timing.push_pull_interval_ms = net_push_pull_ms;
		uint8_t meta[256];
		if (nrumor >= 0) {
			int ml = mix_meta(meta, sizeof(meta), i < nrumor, i != net_kvless);
			cfg.meta = meta;
			cfg.meta_len = ml > 0 ? (size_t)ml : 0;
			cfg.is_rumor = tags_is_rumor;
			cfg.is_rumor_agent = tags_is_rumor_build;
		}
		struct swim_io io = {.ctx = &ctxs[i],
		                     .send = n_send,
		                     .rand32 = n_rand,
		                     .push_pull = n_push_pull,
		                     .event = n_event,
		                     .user_msg = n_user};
		char err[128];
		net->nodes[i] = swim_new(&cfg, &io, net->now, err, sizeof(err));
	}
}

static void net_init(struct net *net, int n)
{
	net_init_mix(net, n, -1);
}

static void net_free(struct net *net)
{
	for (int i = 0; i < net->n; i++)
		swim_free(net->nodes[i]);
	free(net->q);
}

/* advance virtual time to `until`, delivering packets and ticking nodes */
static void net_run(struct net *net, int64_t until)
{
	while (net->now < until) {
		net->now++;
		/* deliver due packets in order */
		int w = 0;
		for (int i = 0; i < net->nq; i++) {
			struct pkt *k = &net->q[i];
			if (k->at <= net->now) {
				if (!net->down[k->to]) {
					struct ml_addr from = {.len = 4,
					                       .ip = {127, 0, 0, 1},
					                       .port = (uint16_t)(1000 + k->from)};
					swim_recv_packet(net->nodes[k->to], net->now, &from,
					                 k->data, k->len);
				}
			} else {
				if (w != i)
					net->q[w] = *k;
				w++;
			}
		}
		/* packets sent during delivery were appended past the old end and
		 * compacted by the same loop (they are due next millisecond) */
		net->nq = w;
		for (int i = 0; i < net->n; i++)
			if (!net->down[i] && swim_next_deadline(net->nodes[i]) <= net->now) {
				net->ticks[i]++;
				swim_tick(net->nodes[i], net->now);
			}
	}
}

static const char *state_of(struct net *net, int viewer, int node)
{
	char name[16];
	snprintf(name, sizeof(name), "n%d", node);
	const struct swim_member *m = swim_member_find(net->nodes[viewer], name);
	return m ? swim_state_name(m->state) : "unknown";
}

static void join_all(struct net *net)
{
	for (int i = 1; i < net->n; i++) {
		struct ml_addr seed = {.len = 4, .ip = {127, 0, 0, 1}, .port = 1000};
		n_push_pull(&ctxs[i], &seed, "n0", true);
	}
}

static void test_join_converges(void)
{
	static struct net net;
	net_init(&net, 5);
	join_all(&net);
	net_run(&net, net.now + 5000);
	for (int v = 0; v < 5; v++)
		for (int m = 0; m < 5; m++)
			CHECK(strcmp(state_of(&net, v, m), "alive") == 0, "n%d sees n%d: %s", v, m,
			      state_of(&net, v, m));
	CHECK(net.events_join[4] == 4, "n4 got 4 join events, got %d", net.events_join[4]);
	net_free(&net);
}

/* Node 0 hears from n1 that node `i` (n<i>, port 1000+i) is alive at
 * incarnation inc with this meta; returns the alive message's size, 0 if
 * it did not encode. */
static size_t tell_alive_at(struct net *net, int i, uint32_t inc, const uint8_t *meta,
                            size_t meta_len)
{
	struct ml_alive a;
	memset(&a, 0, sizeof(a));
	a.incarnation = inc;
	snprintf(a.node, sizeof(a.node), "n%d", i);
	a.addr = (struct ml_addr){.len = 4, .ip = {127, 0, 0, 1}, .port = (uint16_t)(1000 + i)};
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(a.vsn, vsn, 6);
	a.has_vsn = true;
	if (meta_len > sizeof(a.meta))
		return 0;
	a.meta_len = (uint16_t)meta_len;
	if (meta_len > 0)
		memcpy(a.meta, meta, meta_len);
	static uint8_t buf[ML_UDP_MAX];
	int an = ml_encode_alive(buf, sizeof(buf), &a);
	if (an <= 0)
		return 0;
	struct ml_addr from = {.len = 4, .ip = {127, 0, 0, 1}, .port = 1001};
	swim_recv_packet(net->nodes[0], net->now, &from, buf, (size_t)an);
	return (size_t)an;
}

static size_t tell_alive(struct net *net, int i, const uint8_t *meta, size_t meta_len)
{
	return tell_alive_at(net, i, 1, meta, meta_len);
}

/* tell_alive with the tags a Consul agent of rumor's build carries (a
 * random-looking id per node; rpc_port NULL: no KV store). */
static size_t tell_consul_alive(struct net *net, int i, const char *rpc_port)
{
	char id[40];
	snprintf(id, sizeof(id), "%08x-1c2d-4e5f-8a9b-%012x", (unsigned)(i * 2654435761u),
	         (unsigned)(i * 40503u));
	struct tag tags[TAGS_CONSUL_MAX];
	size_t nt = tags_consul(tags, "dc1", "0.1.0:rumor", id, rpc_port);
	uint8_t meta[512];
	int ml = tags_encode(meta, sizeof(meta), tags, nt);
	return ml > 0 ? tell_alive(net, i, meta, (size_t)ml) : 0;
}

/*
 * memberlist fills a packet with its own broadcasts (alive, suspect, dead)
 * first and gives the delegate's (serf's) user messages the space left. With
 * a packet's worth of user messages queued after an alive, the next packet
 * must still carry the alive, and the user messages must go out too.
 */
static void test_membership_broadcasts_go_before_user_messages(void)
{
	static struct net net;
	net_init(&net, 3);
	join_all(&net);
	net_run(&net, net.now + 20000); /* converged, queues drained */
	CHECK_INT(0, (long long)swim_broadcast_queue_len(net.nodes[0]));

	/* n0 learns of n7 (it rebroadcasts the alive), then queues user messages */
	uint8_t meta[300]; /* too big for the space user messages would leave */
	memset(meta, 'm', sizeof(meta));
	REQUIRE(tell_alive(&net, 7, meta, sizeof(meta)) > 0, "alive for n7");
	REQUIRE(strcmp(state_of(&net, 0, 7), "alive") == 0, "n0 took the alive: %s",
	        state_of(&net, 0, 7));
	uint8_t user[200];
	memset(user, 'u', sizeof(user));
	for (int i = 0; i < 30; i++)
		swim_broadcast_user(net.nodes[0], user, sizeof(user));

	/* the packets n0 sends when its gossip comes due */
	net.nq = 0;
	net.now = swim_next_deadline(net.nodes[0]);
	swim_tick(net.nodes[0], net.now);
	int first_alive = -1, first_user = -1, npk = 0;
	for (int i = 0; i < net.nq; i++) {
		if (net.q[i].from != 0)
			continue;
		struct ml_slice parts[64];
		bool z = false;
		size_t pl;
		int np = packet_parts(net.q[i].data, net.q[i].len, parts, 64, &z, &pl);
		for (int j = 0; j < np; j++) {
			if (parts[j].len == 0)
				continue;
			if (parts[j].p[0] == ML_ALIVE && first_alive < 0)
				first_alive = npk;
			if (parts[j].p[0] == ML_USER && first_user < 0)
				first_user = npk;
		}
		npk++;
	}
	CHECK(npk > 0, "n0 sent nothing");
	CHECK_INT(0, first_alive);
	CHECK(first_user >= 0, "no user message went out (first_user %d of %d packets)", first_user,
	      npk);
	net_free(&net);
}

/*
 * An idle agent wakes for its probes; push-pull, reconnect and reap wait for
 * the next probe tick rather than waking it on their own, and still run.
 */
static void test_housekeeping_rides_the_probe_tick(void)
{
	static struct net net;
	net_init(&net, 3);
	join_all(&net);
	net_run(&net, net.now + 20000);
	memset(net.ticks, 0, sizeof(net.ticks));
	uint64_t pp0 = swim_stats(net.nodes[0])->push_pulls;
	net_run(&net, net.now + 120000);
	uint64_t pp = swim_stats(net.nodes[0])->push_pulls - pp0;
	/* 120 probes (1 s apart), push-pull every 30 s started here and
	 * answered for others, reap every 15 s, reconnect every 30 s */
	CHECK(pp >= 4, "push-pulls still run: %llu in 120 s", (unsigned long long)pp);
	CHECK(net.ticks[0] <= 122, "node 0 woke %d times in 120 s (probes: 120)", net.ticks[0]);
	for (int v = 0; v < 3; v++)
		for (int m = 0; m < 3; m++)
			CHECK(strcmp(state_of(&net, v, m), "alive") == 0, "n%d sees n%d: %s", v, m,
			      state_of(&net, v, m));
	net_free(&net);
}

/*
 * Gossip packs by compressed size: alive messages carrying Consul's tags go
 * out compressed, more of them per packet than fit uncompressed, and no
 * packet is over the budget on the wire (the CRC wrapper adds 5 bytes);
 * incompressible user messages queued after them (so the ratio learnt is
 * wrong for them) are split into packets within the budget. Every packet
 * decodes (the tap takes each apart as a receiver would).
 */
static void test_gossip_packs_by_compressed_size(void)
{
	static struct net net;
	net_init(&net, 2);
	join_all(&net);
	net_run(&net, net.now + 20000);
	size_t alive_len = 0;
	for (int i = 10; i < 50; i++) {
		alive_len = tell_consul_alive(&net, i, NULL);
		REQUIRE(alive_len > 0, "alive for n%d", i);
	}
	net.tap_max_len = 0;
	net.tap_compressed = net.tap_bad = 0;
	net.tap_payload_max = 0;
	net_run(&net, net.now + 5000);
	CHECK(net.tap_compressed > 0, "no packet went compressed");
	CHECK(net.tap_payload_max > ML_UDP_MAX + alive_len,
	      "packets carried at most %zu bytes of messages (%zu per alive)", net.tap_payload_max,
	      alive_len);
	CHECK(net.tap_max_len <= ML_UDP_MAX + 5, "largest packet %zu bytes", net.tap_max_len);
	CHECK_INT(0, net.tap_bad);

	/* incompressible user messages after the ratio was learnt on alives */
	uint8_t junk[300];
	uint32_t x = 7;
	for (int i = 0; i < 30; i++) {
		for (size_t j = 0; j < sizeof(junk); j++) {
			x = x * 1103515245u + 12345u;
			junk[j] = (uint8_t)(x >> 23);
		}
		swim_broadcast_user(net.nodes[0], junk, sizeof(junk));
	}
	net.tap_max_len = 0;
	net_run(&net, net.now + 3000);
	CHECK(net.tap_max_len > 600, "the user messages went out: largest packet %zu",
	      net.tap_max_len);
	CHECK(net.tap_max_len <= ML_UDP_MAX + 5, "largest packet %zu bytes", net.tap_max_len);
	CHECK_INT(0, net.tap_bad);
	net_free(&net);
}

/*
 * No packet goes over the budget, piggyback included: a ping or ack with
 * broadcasts riding on it counts the compound's type and count bytes and
 * the carried message's own length field (memberlist leaves that field out
 * and may send 2 bytes over; here, with 300 alives of Consul's tags queued,
 * packets of 1,406 bytes went out before).
 */
static void test_piggyback_stays_within_budget(void)
{
	static struct net net;
	net_init(&net, 3);
	join_all(&net);
	net_run(&net, net.now + 20000);
	for (int i = 10; i < 310; i++)
		REQUIRE(tell_consul_alive(&net, i, "8300") > 0, "alive for n%d", i);
	net.tap_max_len = 0;
	net.tap_bad = 0;
	net_run(&net, net.now + 15000);
	CHECK(net.tap_max_len > ML_UDP_MAX - 200, "packets were full: largest %zu",
	      net.tap_max_len);
	CHECK(net.tap_max_len <= ML_UDP_MAX + 5, "largest packet %zu bytes (budget 1400 + CRC 5)",
	      net.tap_max_len);
	CHECK_INT(0, net.tap_bad);
	net_free(&net);
}

static void test_crash_detected_within_suspicion_bounds(void)
{
	static struct net net;
	net_init(&net, 5);
	join_all(&net);
	net_run(&net, net.now + 3000);
	net.down[4] = true;
	int64_t crash = net.now;
	int64_t all_dead = -1;
	for (int step = 0; step < 60 && all_dead < 0; step++) {
		net_run(&net, net.now + 500);
		bool all = true;
		for (int v = 0; v < 4; v++)
			all = all && strcmp(state_of(&net, v, 4), "dead") == 0;
		if (all)
			all_dead = net.now - crash;
	}
	/* probe period + min suspicion (4 s) at best; max 24 s + a few periods */
	CHECK(all_dead >= 4000 && all_dead <= 30000,
	      "all survivors declare n4 dead in [4 s, 30 s]: took %lld ms", (long long)all_dead);
	for (int v = 0; v < 4; v++)
		for (int m = 0; m < 4; m++)
			CHECK(strcmp(state_of(&net, v, m), "alive") == 0,
			      "no false positive: n%d sees n%d %s", v, m, state_of(&net, v, m));
	net_free(&net);
}

static void test_false_suspicion_is_refuted(void)
{
	static struct net net;
	net_init(&net, 3);
	join_all(&net);
	net_run(&net, net.now + 3000);
	const struct swim_member *self = swim_self(net.nodes[2]);
	uint32_t inc = self->incarnation;
	/* n0 hears a suspicion of n2 and gossips it; n2 must refute */
	uint8_t buf[256];
	struct ml_suspect s;
	memset(&s, 0, sizeof(s));
	s.incarnation = inc;
	strcpy(s.node, "n2");
	strcpy(s.from, "n1");
	int len = ml_encode_suspect(buf, sizeof(buf), &s);
	struct ml_addr from = {.len = 4, .ip = {127, 0, 0, 1}, .port = 1001};
	swim_recv_packet(net.nodes[0], net.now, &from, buf, (size_t)len);
	CHECK(strcmp(state_of(&net, 0, 2), "suspect") == 0, "n0 suspects n2: %s",
	      state_of(&net, 0, 2));
	net_run(&net, net.now + 3000);
	CHECK(swim_self(net.nodes[2])->incarnation > inc, "n2 raised its incarnation: %u -> %u",
	      inc, swim_self(net.nodes[2])->incarnation);
	CHECK(strcmp(state_of(&net, 0, 2), "alive") == 0, "n0 sees n2 alive again: %s",
	      state_of(&net, 0, 2));
	net_free(&net);
}

static void test_leave_is_left_not_failed(void)
{
	static struct net net;
	net_init(&net, 4);
	join_all(&net);
	net_run(&net, net.now + 3000);
	swim_leave(net.nodes[3], net.now);
	int64_t t0 = net.now;
	while (!swim_leave_done(net.nodes[3]) && net.now - t0 < 5000)
		net_run(&net, net.now + 50);
	CHECK(swim_leave_done(net.nodes[3]), "leave broadcast finished in %lld ms",
	      (long long)(net.now - t0));
	net.down[3] = true;
	net_run(&net, net.now + 1000);
	for (int v = 0; v < 3; v++)
		CHECK(strcmp(state_of(&net, v, 3), "left") == 0, "n%d sees n3 left: %s", v,
		      state_of(&net, v, 3));
	net_run(&net, net.now + 30000);
	for (int v = 0; v < 3; v++) {
		CHECK(net.events_failed[v] == 0, "n%d saw no failure (got %d)", v,
		      net.events_failed[v]);
		CHECK(net.events_left[v] == 1, "n%d saw one leave (got %d)", v, net.events_left[v]);
	}
	net_free(&net);
}

static void test_malformed_packets_counted_not_fatal(void)
{
	static struct net net;
	net_init(&net, 1);
	struct ml_addr from = {.len = 4, .ip = {127, 0, 0, 1}, .port = 999};
	static const uint8_t junk[][8] = {{0xff},
	                                  {ML_PING, 0xc1},
	                                  {ML_COMPOUND, 5, 0, 9},
	                                  {ML_HAS_CRC, 0, 0, 0, 0, 1},
	                                  {ML_ALIVE, 0x81, 0xa1}};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		swim_recv_packet(net.nodes[0], net.now, &from, junk[i], sizeof(junk[i]));
	CHECK(swim_stats(net.nodes[0])->bad_packets >= 4, "bad packets counted: %llu",
	      (unsigned long long)swim_stats(net.nodes[0])->bad_packets);
	CHECK(swim_member_count(net.nodes[0]) == 1, "no member invented from junk");
	net_free(&net);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	uint8_t *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

/* A push-pull stream written by serf 0.8.2 (compressed, with serf's user
 * state) merges into our table: the members it names become alive. */
static void test_serf_push_pull_fixture_merges(void)
{
	static struct net net;
	net_init(&net, 1);
	size_t len;
	uint8_t *buf = read_file(RUMOR_FIXTURES "/serf-0.8.2/tcp_1_40600_27946.bin", &len);
	CHECK(buf != NULL, "fixture readable");
	if (buf == NULL) {
		net_free(&net);
		return;
	}
	struct swim_stream_result res;
	/* a stream cut short asks for more bytes */
	int rc = swim_stream_recv(net.nodes[0], net.now, buf, len / 2, false, &res);
	CHECK(rc == ML_AGAIN, "half a stream: expected ML_AGAIN got %d", rc);
	free(res.reply);
	rc = swim_stream_recv(net.nodes[0], net.now, buf, len, false, &res);
	CHECK(rc == ML_OK && res.type == ML_PUSH_PULL, "whole stream merged: rc=%d type=%u err=%s",
	      rc, res.type, res.error);
	CHECK(res.reply != NULL && res.reply_len > 0, "responder replies with its own state");
	size_t alive = 0;
	for (size_t i = 0; i < swim_member_count(net.nodes[0]); i++)
		if (swim_member_at(net.nodes[0], i)->state == ML_STATE_ALIVE)
			alive++;
	CHECK(alive >= 2, "serf's members now known alive: %zu (of %zu)", alive,
	      swim_member_count(net.nodes[0]));
	free(res.reply);
	free(buf);
	net_free(&net);
}

/* ------------------------------------------------- push-pull limits */

/*
 * The largest single allocation made while a hook is armed: ASan calls the
 * hook for every malloc, so a refusal that allocated for the members it
 * was told about shows. Without ASan (no hook) the checks that use it say
 * so and pass.
 */
#if defined(__SANITIZE_ADDRESS__)
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));
static size_t alloc_max;
static bool alloc_armed;
static void alloc_hook(const volatile void *p, size_t n)
{
	if (alloc_armed && n > alloc_max)
		alloc_max = n;
}
static void free_hook(const volatile void *p)
{
}
static bool alloc_watch(void)
{
	static bool installed;
	if (!installed)
		installed = __sanitizer_install_malloc_and_free_hooks(alloc_hook, free_hook) != 0;
	alloc_max = 0;
	alloc_armed = true;
	return installed;
}
#else
static size_t alloc_max;
static bool alloc_armed;
static bool alloc_watch(void)
{
	return false;
}
#endif

struct solo {
	struct swim *s;
	int joins;
	int merges; /* io->merge_state calls */
	size_t merge_len;
	uint8_t merged[64]; /* the user state it got */
	uint64_t rng;
};

static void solo_send(void *c, const struct ml_addr *to, const uint8_t *p, size_t len)
{
}

static uint32_t solo_rand(void *c)
{
	struct solo *o = c;
	o->rng = o->rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(o->rng >> 33);
}

static void solo_push_pull(void *c, const struct ml_addr *to, const char *name, bool join)
{
}

static void solo_event(void *c, enum swim_event_type type, const struct swim_member *m)
{
	struct solo *o = c;
	if (type == SWIM_EV_JOIN)
		o->joins++;
}

static void solo_merge_state(void *c, const uint8_t *p, size_t len, bool join)
{
	struct solo *o = c;
	o->merges++;
	o->merge_len = len;
	memcpy(o->merged, p, len < sizeof(o->merged) ? len : sizeof(o->merged));
}

/* A node "self" alone, with this member cap and merge slice (0: defaults). */
static void solo_new(struct solo *o, uint32_t max_nodes, uint32_t slice)
{
	memset(o, 0, sizeof(*o));
	o->rng = 7;
	struct swim_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "self";
	cfg.addr = (struct ml_addr){.len = 4, .ip = {127, 0, 0, 1}, .port = 999};
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(cfg.vsn, vsn, 6);
	swim_timing_profile(&cfg.timing, "lan");
	cfg.push_pull_max_nodes = max_nodes;
	cfg.merge_slice = slice;
	struct swim_io io = {.ctx = o,
	                     .send = solo_send,
	                     .rand32 = solo_rand,
	                     .push_pull = solo_push_pull,
	                     .event = solo_event,
	                     .merge_state = solo_merge_state};
	char err[128];
	o->s = swim_new(&cfg, &io, 1000000, err, sizeof(err));
}

/* The state state_stream gives member i. */
static uint8_t state_of_i(uint32_t i)
{
	return i % 11 == 3   ? ML_STATE_SUSPECT
	       : i % 13 == 4 ? ML_STATE_DEAD
	       : i % 17 == 5 ? ML_STATE_LEFT
	                     : ML_STATE_ALIVE;
}

/* Of state_stream's first n members, those a node that never heard of
 * them takes (memberlist ignores suspect, dead and left unknowns). */
static long long alive_in(uint32_t n)
{
	long long k = 0;
	for (uint32_t i = 0; i < n; i++)
		k += state_of_i(i) == ML_STATE_ALIVE;
	return k;
}

/*
 * A push-pull stream of n members named <prefix><i>, states and
 * incarnations varied by i (alive mostly, some suspect, dead and left),
 * then user_len bytes of user state; or only the header when header_only.
 * malloc'd, *len set.
 */
static uint8_t *state_stream_join(const char *prefix, uint32_t n, const char *user,
                                  bool header_only, bool join, size_t *len)
{
	size_t ulen = user ? strlen(user) : 0;
	size_t cap = 64 + (header_only ? 0 : (size_t)n * 128) + ulen;
	uint8_t *buf = malloc(cap);
	size_t off = 0;
	buf[off++] = ML_PUSH_PULL;
	struct ml_push_pull_header h = {.nodes = n, .user_state_len = (uint32_t)ulen, .join = join};
	off += (size_t)ml_encode_push_pull_header(buf + off, cap - off, &h);
	for (uint32_t i = 0; i < n && !header_only; i++) {
		static struct ml_push_node pn;
		memset(&pn, 0, sizeof(pn));
		snprintf(pn.name, sizeof(pn.name), "%s%u", prefix, i);
		pn.addr = (struct ml_addr){
		        .len = 4, .ip = {10, 1, (uint8_t)(i >> 8), (uint8_t)i}, .port = 8301};
		pn.incarnation = 1 + i % 5;
		pn.state = state_of_i(i);
		pn.meta_len = (uint16_t)(i % 3 == 0 ? 4 : 0);
		memcpy(pn.meta, "tags", pn.meta_len);
		static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
		memcpy(pn.vsn, vsn, 6);
		pn.has_vsn = true;
		int r = ml_encode_push_node(buf + off, cap - off, &pn);
		if (r < 0)
			abort();
		off += (size_t)r;
	}
	if (!header_only && ulen > 0)
		memcpy(buf + off, user, ulen);
	*len = off + (header_only ? 0 : ulen);
	return buf;
}

static uint8_t *state_stream(const char *prefix, uint32_t n, const char *user, bool header_only,
                             size_t *len)
{
	return state_stream_join(prefix, n, user, header_only, false, len);
}

/* Feed a whole stream as a responder; returns the rc, frees the reply. */
static int solo_recv(struct solo *o, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct swim_stream_result res;
	int rc = swim_stream_recv(o->s, 1000000, buf, len, false, &res);
	snprintf(err, errlen, "%s", res.error);
	free(res.reply);
	return rc;
}

/*
 * Issue 13: a push-pull whose header announces more members than the cap is
 * refused from the header alone (before a single member is read), and
 * nothing proportional to the announced count is allocated on the way:
 * rumor used to allocate a decoded entry (~800 bytes) per announced member
 * before reading any, up to a million of them.
 */
static void test_push_pull_over_the_cap_refused_at_the_header(void)
{
	struct solo o;
	char err[300];
	size_t len;

	solo_new(&o, 100, 0);
	uint8_t *h = state_stream("x", 101, NULL, true, &len);
	CHECK_INT(ML_BAD, solo_recv(&o, h, len, err, sizeof(err)), "101 members, cap 100");
	CHECK_HAS(err, "101 members, more than the limit of 100");
	CHECK_INT(1, (long long)swim_stats(o.s)->push_pulls_refused);
	CHECK_INT(1, (long long)swim_member_count(o.s));
	free(h);
	h = state_stream("x", 100, NULL, true, &len);
	CHECK_INT(ML_AGAIN, solo_recv(&o, h, len, err, sizeof(err)), "100 members: wait for them");
	free(h);
	h = state_stream("x", 100, NULL, false, &len);
	CHECK_INT(ML_OK, solo_recv(&o, h, len, err, sizeof(err)), "100 members taken: %s", err);
	CHECK_INT(1 + alive_in(100), (long long)swim_member_count(o.s));
	free(h);
	swim_free(o.s);

	/* the default cap, plain and compressed; a million announced */
	solo_new(&o, 0, 0);
	static const uint32_t counts[] = {SWIM_PUSH_PULL_MAX_NODES + 1, 1000000};
	for (size_t k = 0; k < 2; k++) {
		h = state_stream("x", counts[k], NULL, true, &len);
		bool watched = alloc_watch();
		int rc = solo_recv(&o, h, len, err, sizeof(err));
		alloc_armed = false;
		CHECK_INT(ML_BAD, rc, "%u members announced", counts[k]);
		CHECK_HAS(err, "more than the limit of 20000");
		if (watched)
			CHECK(alloc_max < 4096, "%u announced: largest allocation %zu bytes",
			      counts[k], alloc_max);
		uint8_t z[256];
		int zn = ml_compress_encode(z, sizeof(z), h, len);
		REQUIRE(zn > 0, "compress the header");
		CHECK_INT(ML_BAD, solo_recv(&o, z, (size_t)zn, err, sizeof(err)), "compressed, %u",
		          counts[k]);
		free(h);
	}
	h = state_stream("x", SWIM_PUSH_PULL_MAX_NODES, NULL, true, &len);
	bool watched = alloc_watch();
	int rc = solo_recv(&o, h, len, err, sizeof(err));
	alloc_armed = false;
	CHECK_INT(ML_AGAIN, rc, "exactly the cap: wait for the members");
	if (watched)
		CHECK(alloc_max < 4096, "cap announced: largest allocation %zu bytes", alloc_max);
	else
		printf("  (no ASan: allocation sizes not watched)\n");
	CHECK_INT(4, (long long)swim_stats(o.s)->push_pulls_refused, "plain and compressed, twice");
	free(h);
	swim_free(o.s);
}

/* Every member of a's table is in b's, the same in all that is compared. */
static void check_same_tables(struct swim *a, struct swim *b)
{
	CHECK_INT((long long)swim_member_count(a), (long long)swim_member_count(b));
	int diffs = 0;
	for (size_t i = 0; i < swim_member_count(a); i++) {
		const struct swim_member *ma = swim_member_at(a, i);
		const struct swim_member *mb = swim_member_find(b, ma->id->name);
		if (mb == NULL || mb->state != ma->state || mb->incarnation != ma->incarnation ||
		    !ml_addr_equal(&mb->id->addr, &ma->id->addr) ||
		    mb->id->meta_len != ma->id->meta_len ||
		    (ma->id->meta_len > 0 &&
		     memcmp(mb->id->meta, ma->id->meta, ma->id->meta_len) != 0)) {
			if (diffs++ < 3)
				CHECK(false, "%s: %s inc %u vs %s inc %u", ma->id->name,
				      swim_state_name(ma->state), ma->incarnation,
				      mb ? swim_state_name(mb->state) : "missing",
				      mb ? mb->incarnation : 0);
		}
	}
	CHECK_INT(0, diffs, "members that differ");
}

/*
 * Issue 13: a 5,000-member state is merged by swim_merge_step a slice at a
 * time (merge_slice 256: 20 steps), the reply is our state from before the
 * merge, and the table ends exactly as with a one-shot merge, user state
 * included. Both views knew some of the members already, at other
 * incarnations and states, so the merge rules do real work.
 */
static void test_large_state_merges_in_slices_like_at_once(void)
{
	struct solo a, b;
	char err[300];
	size_t len, plen;
	solo_new(&a, 0, 0);
	solo_new(&b, 0, 256);
	/* what both knew: 200 of the same names, another view of them */
	uint8_t *pre = state_stream("m", 200, NULL, false, &plen);
	CHECK_INT(ML_OK, solo_recv(&a, pre, plen, err, sizeof(err)), "%s", err);
	CHECK_INT(ML_OK, solo_recv(&b, pre, plen, err, sizeof(err)), "%s", err);
	free(pre);
	REQUIRE(!swim_merge_pending(b.s), "200 members (< slice): merged at once");
	size_t known = swim_member_count(b.s);
	int joins0 = b.joins;

	uint8_t *st = state_stream("m", 5000, "user-state", false, &len);
	CHECK_INT(ML_OK, solo_recv(&a, st, len, err, sizeof(err)), "one shot: %s", err);
	CHECK_INT(1, a.merges, "one shot: user state merged");

	struct swim_stream_result res;
	int rc = swim_stream_recv(b.s, 1000000, st, len, false, &res);
	CHECK_INT(ML_OK, rc, "sliced: %s", res.error);
	CHECK_INT((long long)known, (long long)swim_member_count(b.s), "nothing merged yet");
	CHECK_BOOL(true, swim_merge_pending(b.s));
	CHECK_INT(0, b.merges, "user state waits for the last member");
	/* the reply is our state before the merge */
	REQUIRE(res.reply != NULL && res.reply_len > 1, "a reply");
	const uint8_t *q = res.reply + 1;
	struct ml_push_pull_header rh;
	CHECK_INT(ML_OK, ml_decode_push_pull_header(&q, res.reply + res.reply_len, &rh));
	CHECK_INT((long long)known, (long long)rh.nodes, "reply: members before the merge");
	free(res.reply);

	int steps = 0;
	size_t before = swim_member_count(b.s);
	bool more = true;
	while (more && steps < 100) {
		more = swim_merge_step(b.s, 1000000, 0);
		steps++;
		size_t now = swim_member_count(b.s);
		CHECK(now - before <= 256, "step %d added %zu members", steps, now - before);
		before = now;
	}
	CHECK_INT(20, steps, "5,000 members in slices of 256");
	CHECK_INT(1, b.merges, "user state merged once, after the members");
	CHECK_INT((long long)strlen("user-state"), (long long)b.merge_len);
	CHECK(memcmp(b.merged, "user-state", b.merge_len) == 0, "user state bytes");
	CHECK_INT(a.joins, b.joins, "join events");
	CHECK(b.joins > joins0, "joins happened");
	check_same_tables(a.s, b.s);
	CHECK_INT((long long)swim_stats(a.s)->push_pulls, (long long)swim_stats(b.s)->push_pulls);
	free(st);
	swim_free(a.s);
	swim_free(b.s);
}

/* How many of the state's 300 members (state_of_i: alive and suspect ones
 * among them) the node queued for gossip when it merged the state (a join's
 * or not) as `initiator`, after first learning `pre` members as a responder
 * to a join; *quiet gets the alive entries it merged without queuing. */
static size_t queued_after_merge(uint32_t pre, bool initiator, bool join, uint32_t slice,
                                 uint64_t *quiet)
{
	struct solo o;
	char err[300];
	size_t len;
	solo_new(&o, 0, slice);
	if (pre > 0) {
		uint8_t *p = state_stream_join("old", pre, NULL, false, true, &len);
		CHECK_INT(ML_OK, solo_recv(&o, p, len, err, sizeof(err)), "%s", err);
		free(p);
	}
	size_t before = swim_broadcast_queue_len(o.s);
	uint64_t quiet0 = swim_stats(o.s)->merged_quietly;
	uint8_t *st = state_stream_join("m", 300, NULL, false, join, &len);
	struct swim_stream_result res;
	CHECK_INT(ML_OK, swim_stream_recv(o.s, 1000000, st, len, initiator, &res), "%s", res.error);
	free(res.reply);
	for (int i = 0; i < 100 && swim_merge_pending(o.s); i++)
		swim_merge_step(o.s, 1000000, 0);
	CHECK(swim_member_count(o.s) >= 1 + pre + 200, "merged: %zu members",
	      swim_member_count(o.s));
	size_t queued = swim_broadcast_queue_len(o.s) - before;
	if (quiet != NULL)
		*quiet = swim_stats(o.s)->merged_quietly - quiet0;
	free(st);
	swim_free(o.s);
	return queued;
}

/*
 * A fresh node (only itself in its table) does not rebroadcast what the
 * answer to its own push-pull (its -join) teaches it: the seed and the
 * cluster have it. A join's state merged any other way is rebroadcast, as
 * memberlist's: a node answering someone's join, a node with members that
 * joins another cluster (or reconnects after a partition). Merged in one go
 * and in slices alike.
 */
static void test_fresh_join_merge_is_quiet(void)
{
	for (uint32_t slice = 0; slice <= 64; slice += 64) {
		uint64_t quiet = 0;
		CHECK_INT(0, (long long)queued_after_merge(0, true, true, slice, &quiet),
		          "fresh node, its own join's answer (slice %u): nothing rebroadcast",
		          slice);
		CHECK(quiet >= 200, "fresh node: %llu merged quietly", (unsigned long long)quiet);
		size_t told = queued_after_merge(0, false, true, slice, NULL);
		CHECK(told >= 200, "fresh node answering a join (slice %u): %zu rebroadcast", slice,
		      told);
		size_t healed = queued_after_merge(5, true, true, slice, &quiet);
		CHECK(healed >= 200, "node with members, its own join (slice %u): %zu rebroadcast",
		      slice, healed);
		CHECK_INT(0, (long long)quiet, "node with members, its own join: none quiet");
	}
}

/*
 * Issue 21: a push-pull that is not a join (settle, periodic, repair)
 * rebroadcasts only the first SWIM_MERGE_NEWS (8) alive entries it teaches:
 * a state hundreds of members ahead is gossip still in flight, and passing
 * it all on was a third of a 1,000-node storm's alive gossip. A state that
 * teaches a few is passed on whole, as memberlist does. Either side, in one
 * go and in slices (the budget is the state's, not the slice's).
 */
static void test_merge_rebroadcasts_bounded_news(void)
{
	for (uint32_t slice = 0; slice <= 64; slice += 64) {
		for (int initiator = 0; initiator <= 1; initiator++) {
			uint64_t quiet = 0;
			size_t told = queued_after_merge(5, initiator, false, slice, &quiet);
			CHECK_INT(8, (long long)told,
			          "push-pull that is no join, initiator %d, slice %u: rebroadcast",
			          initiator, slice);
			CHECK(quiet >= 192, "initiator %d slice %u: %llu merged quietly", initiator,
			      slice, (unsigned long long)quiet);
		}
	}
	/* a state that teaches three members passes all three on */
	struct solo o;
	char err[300];
	size_t len;
	solo_new(&o, 0, 0);
	uint8_t *p = state_stream_join("old", 5, NULL, false, true, &len);
	CHECK_INT(ML_OK, solo_recv(&o, p, len, err, sizeof(err)), "%s", err);
	free(p);
	size_t before = swim_broadcast_queue_len(o.s);
	uint8_t *st = state_stream_join("few", 3, NULL, false, false, &len);
	struct swim_stream_result res;
	CHECK_INT(ML_OK, swim_stream_recv(o.s, 1000000, st, len, true, &res), "%s", res.error);
	free(res.reply);
	size_t alive3 = 0;
	for (uint32_t i = 0; i < 3; i++)
		alive3 += state_of_i(i) == ML_STATE_ALIVE;
	CHECK_INT((long long)alive3, (long long)(swim_broadcast_queue_len(o.s) - before),
	          "a state teaching %zu alive members: all rebroadcast", alive3);
	free(st);
	swim_free(o.s);
}

/* Gossip (not a push-pull) brings the solo node member m<i>'s alive. */
static void solo_alive(struct solo *o, int i, uint32_t inc)
{
	static struct ml_alive a;
	memset(&a, 0, sizeof(a));
	a.incarnation = inc;
	snprintf(a.node, sizeof(a.node), "m%d", i);
	a.addr = (struct ml_addr){
	        .len = 4, .ip = {10, 2, (uint8_t)(i >> 8), (uint8_t)i}, .port = 8301};
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(a.vsn, vsn, 6);
	a.has_vsn = true;
	static uint8_t buf[ML_UDP_MAX];
	int n = ml_encode_alive(buf, sizeof(buf), &a);
	struct ml_addr from = {.len = 4, .ip = {10, 9, 9, 9}, .port = 8301};
	if (n > 0)
		swim_recv_packet(o->s, 1000000, &from, buf, (size_t)n);
}

/*
 * Issue 21, crowded queue: with more than SWIM_BCAST_BUSY (64) member
 * messages queued, an alive heard again at the incarnation we hold counts
 * as two sends of our queued copy: at N = 101 (limit 4 x 3 = 12) the sixth
 * echo retires it, and news still spreading keeps its place. A short queue
 * sends everything its full count, as memberlist does; a newer incarnation
 * is news, not an echo.
 */
static void test_crowded_queue_counts_echoes(void)
{
	struct solo o;
	solo_new(&o, 0, 0);
	long long base = (long long)swim_broadcast_queue_len(o.s); /* our own alive */
	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	CHECK_INT(base + 100, (long long)swim_broadcast_queue_len(o.s),
	          "one alive queued per member");
	for (int k = 1; k <= 5; k++)
		solo_alive(&o, 5, 1);
	CHECK_INT(base + 100, (long long)swim_broadcast_queue_len(o.s),
	          "five echoes: still queued");
	CHECK_INT(5, (long long)swim_stats(o.s)->broadcasts_credited, "five echoes counted");
	solo_alive(&o, 5, 1);
	CHECK_INT(base + 99, (long long)swim_broadcast_queue_len(o.s), "the sixth echo retires it");
	solo_alive(&o, 5, 1);
	CHECK_INT(6, (long long)swim_stats(o.s)->broadcasts_credited,
	          "an echo of what is no longer queued counts nothing");
	solo_alive(&o, 7, 2); /* a newer incarnation: news, queued again at 0 sends */
	CHECK_INT(base + 99, (long long)swim_broadcast_queue_len(o.s),
	          "m7's new alive replaced its old");
	CHECK_INT(6, (long long)swim_stats(o.s)->broadcasts_credited, "news is no echo");
	swim_free(o.s);

	solo_new(&o, 0, 0);
	base = (long long)swim_broadcast_queue_len(o.s);
	for (int i = 0; i < 10; i++)
		solo_alive(&o, i, 1);
	for (int k = 0; k < 20; k++)
		solo_alive(&o, 3, 1);
	CHECK_INT(base + 10, (long long)swim_broadcast_queue_len(o.s),
	          "short queue: echoes retire nothing");
	CHECK_INT(0, (long long)swim_stats(o.s)->broadcasts_credited, "short queue: none counted");
	swim_free(o.s);
}

/* One push-pull request (a join from "j0") answered by o at now. */
static struct swim_stream_result ask_state(struct solo *o, int64_t now, bool join)
{
	size_t len;
	uint8_t *req = state_stream_join("j", 1, NULL, false, join, &len);
	struct swim_stream_result res;
	CHECK_INT(ML_OK, swim_stream_recv(o->s, now, req, len, false, &res), "%s", res.error);
	free(req);
	CHECK(res.reply != NULL, "a reply");
	if (res.reply == NULL)
		abort(); /* the checks after this one read it */
	return res;
}

/*
 * Issue 21, the seed of a join storm: while more than 64 member messages
 * are queued and the node is starved of the CPU (squeezed), push-pull
 * replies within 1 s of the state made for an earlier
 * one, with the same join flag and our incarnation unchanged, reuse it:
 * the same bytes and stamp, though the table grew meanwhile. Made anew (a
 * new stamp, the new member in it) after the second, for the other join
 * flag, and after a tag change raised our incarnation. A short queue, or a
 * crowded node with the CPU, makes every reply afresh, unstamped.
 */
static void test_crowded_reply_reused(void)
{
	struct solo o;
	solo_new(&o, 0, 0);
	struct swim_stream_result a = ask_state(&o, 1000000, true);
	struct swim_stream_result b = ask_state(&o, 1000100, true);
	CHECK_INT(0, (long long)(a.reply_stamp | b.reply_stamp), "a quiet node stamps nothing");
	CHECK_INT(0, (long long)swim_stats(o.s)->replies_reused, "quiet: nothing reused");
	free(a.reply);
	free(b.reply);

	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	REQUIRE(swim_crowded(o.s), "100 alives queued: crowded");
	a = ask_state(&o, 1000000, true);
	b = ask_state(&o, 1000100, true);
	CHECK_INT(0, (long long)(a.reply_stamp | b.reply_stamp), "crowded, not starved: made anew");
	free(a.reply);
	free(b.reply);
	swim_note_run_delay(o.s, 150); /* waited for a CPU: squeezed */
	swim_tick(o.s, 1000000);
	a = ask_state(&o, 1000000, true);
	CHECK(a.reply_stamp != 0, "squeezed: stamped");
	solo_alive(&o, 500, 1); /* the table grows */
	b = ask_state(&o, 1000500, true);
	CHECK_INT((long long)a.reply_stamp, (long long)b.reply_stamp, "0.5 s later: reused");
	CHECK(a.reply_len == b.reply_len && memcmp(a.reply, b.reply, a.reply_len) == 0,
	      "the same bytes (%zu, %zu)", a.reply_len, b.reply_len);
	CHECK_INT(1, (long long)swim_stats(o.s)->replies_reused, "one reused");
	struct swim_stream_result c = ask_state(&o, 1001000, true);
	CHECK(c.reply_stamp != 0 && c.reply_stamp != a.reply_stamp, "1 s later: made anew");
	CHECK(c.reply_len > a.reply_len, "with m500 in it: %zu > %zu bytes", c.reply_len,
	      a.reply_len);
	struct swim_stream_result d = ask_state(&o, 1001100, false);
	CHECK(d.reply_stamp != c.reply_stamp, "not a join: made anew");
	uint32_t inc = swim_self(o.s)->incarnation;
	swim_set_meta(o.s, 1001200, (const uint8_t *)"new", 3);
	REQUIRE(swim_self(o.s)->incarnation > inc, "a tag change raises our incarnation");
	struct swim_stream_result e = ask_state(&o, 1001300, false);
	CHECK(e.reply_stamp != d.reply_stamp, "a new incarnation: made anew");
	CHECK_INT(1, (long long)swim_stats(o.s)->replies_reused, "still one reused");
	free(a.reply);
	free(b.reply);
	free(c.reply);
	free(d.reply);
	free(e.reply);
	swim_free(o.s);
}

/*
 * Issue 21: a squeezed node (crowded by a join storm, and starved of the
 * CPU) wakes only at its gossip rounds, which come twice as far apart; the
 * probes, their timeouts and ends that fall between wait for the next round
 * and still run (a probe to a member that never answers fails, its indirect
 * stage included). A node crowded but not starved (the simulator's, a real
 * cluster's on free CPUs) keeps memberlist's timing: rounds every gossip
 * interval, and probe deadlines between them, as does a quiet one.
 */
enum { DRIVE_MORE = 1, DRIVE_STARVE = 2 };

/* Ticks o from `from` to `until` as a driver would, at each deadline; with
 * DRIVE_MORE, 40 more alives come after each tick (the storm goes on); with
 * DRIVE_STARVE, each tick waited 150 ms for a CPU. */
static void solo_drive(struct solo *o, int64_t from, int64_t until, int *ticks, int64_t *min_gap,
                       int mode)
{
	int64_t now = from, last = from;
	*ticks = 0;
	*min_gap = INT64_MAX;
	for (int guard = 0; guard < 10000; guard++) {
		int64_t next = swim_next_deadline(o->s);
		if (next > until)
			break;
		now = next > now ? next : now;
		if (mode & DRIVE_STARVE)
			swim_note_run_delay(o->s, 150);
		swim_tick(o->s, now);
		if (*ticks > 0 && now - last < *min_gap)
			*min_gap = now - last;
		last = now;
		(*ticks)++;
		if (mode & DRIVE_MORE)
			for (int i = 0; i < 40; i++)
				solo_alive(o, 1000 + (int)(now / 10) % 100000 * 40 + i, 1);
	}
}

static void test_squeezed_node_wakes_at_gossip_rounds(void)
{
	struct solo o;
	int ticks;
	int64_t gap;
	/* quiet, for comparison: the same members, a short queue */
	solo_new(&o, 0, 0);
	for (int i = 0; i < 30; i++)
		solo_alive(&o, i, 1);
	REQUIRE(!swim_crowded(o.s), "30 alives queued: not crowded");
	int64_t gi = swim_timing(o.s)->gossip_interval_ms;
	swim_tick(o.s, 1000000);
	solo_drive(&o, 1000000, 1010000, &ticks, &gap, 0);
	CHECK(gap < gi, "quiet: a probe deadline between gossip ticks (smallest gap %lld ms)",
	      (long long)gap);
	uint64_t qprobes = swim_stats(o.s)->probes, qfailed = swim_stats(o.s)->probe_failures;
	swim_free(o.s);

	/* crowded, never starved: memberlist's timing */
	solo_new(&o, 0, 0);
	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	REQUIRE(swim_crowded(o.s), "100 alives queued: crowded");
	swim_tick(o.s, 1000000);
	solo_drive(&o, 1000000, 1010000, &ticks, &gap, DRIVE_MORE);
	CHECK(swim_crowded(o.s), "still crowded after 10 s");
	CHECK_INT(gi, swim_gossip_every_ms(o.s), "crowded, not starved: rounds as usual");
	CHECK(gap < gi,
	      "crowded, not starved: probe deadlines between rounds (smallest gap %lld ms)",
	      (long long)gap);
	swim_free(o.s);

	/* crowded and starved: squeezed */
	solo_new(&o, 0, 0);
	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	swim_note_run_delay(o.s, 150);
	swim_tick(o.s, 1000000);
	solo_drive(&o, 1000000, 1010000, &ticks, &gap, DRIVE_MORE | DRIVE_STARVE);
	CHECK(swim_crowded(o.s), "still crowded after 10 s");
	CHECK_INT(2 * gi, swim_gossip_every_ms(o.s), "squeezed: rounds twice as far apart");
	CHECK_INT(2 * gi, gap, "squeezed: ticks one round apart (%d ticks)", ticks);
	CHECK(ticks <= 10000 / (2 * gi) + 1, "squeezed: %d ticks in 10 s", ticks);
	/* members that never answer: each probe fails (no nack either, so
	 * Lifeguard's awareness stretches the probe interval alike in both) */
	uint64_t probes = swim_stats(o.s)->probes, failed = swim_stats(o.s)->probe_failures;
	CHECK(qfailed >= 2 && probes + 1 >= qprobes && failed + 1 >= qfailed,
	      "squeezed: %llu probes, %llu failed; quiet: %llu, %llu", (unsigned long long)probes,
	      (unsigned long long)failed, (unsigned long long)qprobes, (unsigned long long)qfailed);
	/* the starvation ends, the storm goes on: after 10 s more the node
	 * keeps memberlist's timing again */
	solo_drive(&o, 1010000, 1025000, &ticks, &gap, DRIVE_MORE);
	CHECK(swim_crowded(o.s), "still crowded");
	CHECK_INT(gi, swim_gossip_every_ms(o.s), "fed again: rounds as usual");
	CHECK(gap < gi, "fed again: probe deadlines between rounds (smallest gap %lld ms)",
	      (long long)gap);
	swim_free(o.s);
}

/*
 * Rumor-only messages (the KV store's) named by key: a newer message of a key
 * replaces the queued one, unnamed ones never do; while more than 64 wait, an
 * echo (swim_rumor_echo) counts as two sends of the queued one, and the
 * sixth retires it (limit 12 at 101 members); a short queue is never
 * credited.
 */
static void test_rumor_messages_named_and_echoed(void)
{
	struct solo o;
	solo_new(&o, 0, 0);
	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	long long base = (long long)swim_broadcast_queue_len(o.s);
	uint8_t msg[40] = {0x80};
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		msg[1] = (uint8_t)i;
		REQUIRE(swim_broadcast_rumor(o.s, key, strlen(key), msg, sizeof(msg)) != 0,
		        "rumor %d queued", i);
	}
	CHECK_INT(base + 100, (long long)swim_broadcast_queue_len(o.s), "one per key");
	REQUIRE(swim_broadcast_rumor(o.s, "k5", 2, msg, sizeof(msg)) != 0, "k5 again");
	CHECK_INT(base + 100, (long long)swim_broadcast_queue_len(o.s),
	          "k5's new message replaced its old");
	for (int k = 1; k <= 5; k++)
		CHECK_BOOL(true, swim_rumor_echo(o.s, "k5", 2), "echo %d credited", k);
	CHECK_INT(base + 100, (long long)swim_broadcast_queue_len(o.s),
	          "five echoes: still queued");
	CHECK_BOOL(true, swim_rumor_echo(o.s, "k5", 2), "sixth echo");
	CHECK_INT(base + 99, (long long)swim_broadcast_queue_len(o.s), "the sixth echo retires it");
	CHECK_BOOL(false, swim_rumor_echo(o.s, "k5", 2), "nothing queued: nothing credited");
	CHECK_BOOL(false, swim_rumor_echo(o.s, "k", 1), "an unknown key: nothing credited");
	CHECK_INT(6, (long long)swim_stats(o.s)->rumors_credited, "six credited");
	CHECK_INT(0, (long long)swim_stats(o.s)->broadcasts_credited, "no alive credited");
	swim_broadcast_rumor(o.s, NULL, 0, msg, sizeof(msg));
	swim_broadcast_rumor(o.s, NULL, 0, msg, sizeof(msg));
	CHECK_INT(base + 101, (long long)swim_broadcast_queue_len(o.s), "unnamed ones all stay");
	swim_free(o.s);

	solo_new(&o, 0, 0);
	for (int i = 0; i < 100; i++)
		solo_alive(&o, i, 1);
	base = (long long)swim_broadcast_queue_len(o.s);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		swim_broadcast_rumor(o.s, key, strlen(key), msg, sizeof(msg));
	}
	for (int k = 0; k < 20; k++)
		CHECK_BOOL(false, swim_rumor_echo(o.s, "k3", 2),
		           "short queue: echo %d not credited", k);
	CHECK_INT(base + 10, (long long)swim_broadcast_queue_len(o.s),
	          "short queue: echoes retire nothing");
	swim_free(o.s);
}

/*
 * Issue 13: while large states wait, at most SWIM_MERGE_QUEUE_MAX are held;
 * one more is refused ("busy merging"), a state of one slice or less is
 * still merged at once, and after the queue drains large states are taken
 * again. Freeing a swim with states queued leaks nothing (ASan).
 */
static void test_merge_queue_is_bounded(void)
{
	struct solo o;
	char err[300], prefix[16];
	size_t len;
	solo_new(&o, 0, 256);
	for (int k = 0; k < SWIM_MERGE_QUEUE_MAX; k++) {
		snprintf(prefix, sizeof(prefix), "q%d-", k);
		uint8_t *st = state_stream(prefix, 1000, NULL, false, &len);
		CHECK_INT(ML_OK, solo_recv(&o, st, len, err, sizeof(err)), "state %d: %s", k, err);
		free(st);
	}
	uint8_t *st = state_stream("extra-", 1000, NULL, false, &len);
	CHECK_INT(ML_BAD, solo_recv(&o, st, len, err, sizeof(err)), "one more than the queue");
	CHECK_HAS(err, "busy merging");
	CHECK_INT(1, (long long)swim_stats(o.s)->push_pulls_refused);
	uint8_t *small = state_stream("small-", 200, NULL, false, &len);
	CHECK_INT(ML_OK, solo_recv(&o, small, len, err, sizeof(err)), "small: %s", err);
	CHECK(swim_member_find(o.s, "small-7") != NULL, "small state merged at once");
	free(small);
	free(st);
	int steps = 0;
	while (swim_merge_step(o.s, 1000000, 0) && steps < 1000)
		steps++;
	CHECK_INT(16, steps + 1, "4 x 1,000 members in slices of 256 (a slice may span two)");
	CHECK(swim_member_find(o.s, "q3-999") != NULL, "the last queued member merged");
	st = state_stream("extra-", 1000, NULL, false, &len);
	CHECK_INT(ML_OK, solo_recv(&o, st, len, err, sizeof(err)), "after draining: %s", err);
	free(st);
	swim_free(o.s); /* one state still queued */
}

/*
 * A plain push-pull arriving a chunk at a time: with a swim_stream_scan the
 * core resumes where the previous call stopped (rumor used to decode from
 * byte 0 on every readable event, O(n^2) for a large state), and the end
 * result is the one-shot result.
 */
static void test_stream_scan_resumes(void)
{
	struct solo a, b;
	char err[300];
	size_t len;
	solo_new(&a, 0, 0);
	solo_new(&b, 0, 0);
	uint8_t *st = state_stream("r", 3000, "u", false, &len);
	CHECK_INT(ML_OK, solo_recv(&a, st, len, err, sizeof(err)), "%s", err);
	struct swim_stream_scan scan;
	memset(&scan, 0, sizeof(scan));
	struct swim_stream_result res;
	int rc = ML_AGAIN, calls = 0;
	uint32_t last_nodes = 0;
	bool monotonic = true;
	for (size_t have = 4096; rc == ML_AGAIN && calls < 10000; have += 4096) {
		size_t n = have < len ? have : len;
		rc = swim_stream_recv_scan(b.s, 1000000, st, n, false, &scan, &res);
		free(res.reply);
		calls++;
		if (rc == ML_AGAIN) {
			monotonic &= scan.nodes >= last_nodes && scan.off <= n;
			last_nodes = scan.nodes;
		}
	}
	CHECK_INT(ML_OK, rc, "whole at last");
	CHECK(calls > 10, "fed in %d chunks", calls);
	CHECK(monotonic, "the scan only moves forward");
	CHECK(last_nodes > 2900, "members decoded before the last chunk: %u", last_nodes);
	check_same_tables(a.s, b.s);
	free(st);
	swim_free(a.s);
	swim_free(b.s);
}

/* ------------------------------------------------------ mixed clusters */

static void test_tags_is_rumor_wants_rumor_build_and_kv_port(void)
{
	uint8_t m[512];
	struct tag t[TAGS_CONSUL_MAX];
	int n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "0.1.0:rumor", "id", "8300"));
	CHECK(tags_is_rumor(m, (size_t)n), "rumor with KV: want true");
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "0.1.0:rumor", "id", NULL));
	CHECK(!tags_is_rumor(m, (size_t)n), "rumor without KV (no rpc_port): want false");
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "1.16.0:f3fd2d9e", "id", "8300"));
	CHECK(!tags_is_rumor(m, (size_t)n), "a Consul agent: want false");
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "0.1.0:rumor", "id", "99999"));
	CHECK(!tags_is_rumor(m, (size_t)n), "rpc_port not a port: want false");
	CHECK(!tags_is_rumor((const uint8_t *)"web", 3), "a bare role: want false");
	CHECK(!tags_is_rumor(NULL, 0), "no meta (tags not known): want false");
	uint8_t bad[] = {TAGS_MAGIC, 0x82, 0xa5, 'b', 'u'};
	CHECK(!tags_is_rumor(bad, sizeof(bad)), "truncated map: want false");
	/* a rumor agent at all (table digests): the build tag alone */
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "0.1.0:rumor", "id", NULL));
	CHECK(tags_is_rumor_build(m, (size_t)n), "rumor without KV is a rumor agent: want true");
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "0.1.0:rumor", "id", "8300"));
	CHECK(tags_is_rumor_build(m, (size_t)n), "rumor with KV: want true");
	n = tags_encode(m, sizeof(m), t, tags_consul(t, "dc1", "1.16.0:f3fd2d9e", "id", "8300"));
	CHECK(!tags_is_rumor_build(m, (size_t)n), "a Consul agent: want false");
	CHECK(!tags_is_rumor_build((const uint8_t *)"web", 3), "a bare role: want false");
	CHECK(!tags_is_rumor_build(bad, sizeof(bad)), "truncated map: want false");
}

/* Queue rumor-only message i (0x80, i) and serf message i (3, i) at node 0. */
static void queue_mixed(struct net *net, int nmsg)
{
	for (int i = 0; i < nmsg; i++) {
		uint8_t r[40] = {0x80, (uint8_t)i}, u[40] = {3, (uint8_t)i};
		REQUIRE(swim_broadcast_rumor(net->nodes[0], NULL, 0, r, sizeof(r)) != 0,
		        "rumor %d queued", i);
		REQUIRE(swim_broadcast_user(net->nodes[0], u, sizeof(u)) != 0, "serf %d queued", i);
	}
}

/*
 * In a cluster of 3 rumor and 3 Serf agents, node 0's rumor-only messages
 * reach both other rumor agents and never a Serf agent, in no packet (gossip
 * or piggyback), while serf messages reach everyone; and they leave the
 * queue (their transmit count grew on sends to rumor agents alone).
 */
static void test_rumor_only_messages_skip_serf_members(void)
{
	static struct net net;
	net_init_mix(&net, 6, 3);
	join_all(&net);
	net_run(&net, net.now + 20000);
	for (int m = 0; m < 6; m++)
		REQUIRE(strcmp(state_of(&net, 0, m), "alive") == 0, "n0 sees n%d alive", m);
	net.tap_rumor_to_others = 0;
	queue_mixed(&net, 16);
	net_run(&net, net.now + 20000);
	uint64_t all = (1ull << 16) - 1;
	for (int i = 1; i < 6; i++) {
		if (i < 3)
			CHECK(net.got_rumor[i] == all,
			      "rumor agent n%d got rumor-only %#llx, want %#llx", i,
			      (unsigned long long)net.got_rumor[i], (unsigned long long)all);
		else
			CHECK(net.got_rumor[i] == 0,
			      "Serf agent n%d got rumor-only %#llx, want none", i,
			      (unsigned long long)net.got_rumor[i]);
		CHECK(net.got_serf[i] == all, "n%d got serf %#llx, want %#llx", i,
		      (unsigned long long)net.got_serf[i], (unsigned long long)all);
	}
	CHECK_INT(0, net.tap_rumor_to_others);
	for (int i = 0; i < 6; i++)
		CHECK(swim_broadcast_queue_len(net.nodes[i]) == 0, "n%d still queues %zu", i,
		      swim_broadcast_queue_len(net.nodes[i]));
	net_free(&net);
}

/*
 * Before a member's tags are known it is not a rumor agent: an ack to an
 * address not in the table carries serf messages piggyback, never a
 * rumor-only one, and the rumor-only messages stay queued.
 */
static void test_unknown_destination_gets_no_rumor_only(void)
{
	static struct net net;
	net_init_mix(&net, 2, 2);
	join_all(&net);
	net_run(&net, net.now + 5000);
	net.tap_rumor_to_others = 0;
	queue_mixed(&net, 4);
	struct ml_ping ping;
	memset(&ping, 0, sizeof(ping));
	ping.seq = 77;
	snprintf(ping.node, sizeof(ping.node), "n0");
	uint8_t buf[256];
	int r = ml_encode_ping(buf, sizeof(buf), &ping);
	REQUIRE(r > 0, "ping encodes");
	struct ml_addr stranger = {.len = 4, .ip = {127, 0, 0, 1}, .port = 1009};
	size_t before = swim_broadcast_queue_len(net.nodes[0]);
	swim_recv_packet(net.nodes[0], net.now, &stranger, buf, (size_t)r);
	CHECK_INT(0, net.tap_rumor_to_others);
	CHECK(swim_broadcast_queue_len(net.nodes[0]) == before, "queue %zu, was %zu",
	      swim_broadcast_queue_len(net.nodes[0]), before);
	net_run(&net, net.now + 10000);
	CHECK(net.got_rumor[1] == 0xf, "n1 (rumor) got %#llx, want 0xf",
	      (unsigned long long)net.got_rumor[1]);
	CHECK_INT(0, net.tap_rumor_to_others);
	net_free(&net);
}

/* ------------------------------------------------------ coordinates */

/* Two nodes, packets delivered 1 ms after they are sent: a probe's ack
 * comes back 2 ms after the ping (measured on `now`, no clock_us). Both
 * learn a coordinate for the other, and the estimated distance settles
 * near the 2 ms round trip. */
static void test_coord_learned_from_direct_probes(void)
{
	static struct net net;
	net_init(&net, 2);
	join_all(&net);
	net_run(&net, net.now + 120000);
	for (int i = 0; i < 2; i++) {
		const struct coord *self = swim_coord_self(net.nodes[i]);
		const struct coord *peer = swim_coord_of(net.nodes[i], i ? "n0" : "n1");
		REQUIRE(self != NULL && peer != NULL, "n%d has both coordinates", i);
		CHECK(swim_coord_of(net.nodes[i], i ? "n1" : "n0") == self,
		      "our own name gives our own coordinate");
		const struct swim_stats *st = swim_stats(net.nodes[i]);
		CHECK(st->coord_updates >= 60, "n%d: one update per probe: %llu", i,
		      (unsigned long long)st->coord_updates);
		CHECK_INT(0, st->coord_bad_payloads);
		CHECK_INT(0, st->coord_rejected);
		int64_t d = coord_distance_ns(self, peer);
		CHECK(d > 1500000 && d < 2500000, "n%d: estimate %lld ns for a 2 ms RTT", i,
		      (long long)d);
	}
	CHECK(swim_coord_of(net.nodes[0], "nobody") == NULL, "unknown member: NULL");
	net_free(&net);
}

/* One node and one member "peer" (127.0.0.1:998) it probes; every packet
 * it sends is kept so the test can answer it by hand. */
struct cnode {
	struct swim *s;
	uint64_t rng;
	uint8_t sent[8][1500];
	size_t sent_len[8];
	int nsent;
	int64_t clock; /* clock_us, when set */
	int pp_calls;  /* push-pulls it opened, and with whom last */
	struct ml_addr pp_to;
};

static void c_send(void *c, const struct ml_addr *to, const uint8_t *p, size_t len)
{
	struct cnode *o = c;
	if (o->nsent < 8 && len <= sizeof(o->sent[0])) {
		memcpy(o->sent[o->nsent], p, len);
		o->sent_len[o->nsent++] = len;
	}
}

static uint32_t c_rand(void *c)
{
	struct cnode *o = c;
	o->rng = o->rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(o->rng >> 33);
}

static void c_push_pull(void *c, const struct ml_addr *to, const char *name, bool join)
{
	struct cnode *o = c;
	o->pp_calls++;
	o->pp_to = *to;
}

static int64_t c_clock(void *c)
{
	return ((struct cnode *)c)->clock;
}

static const struct ml_addr peer_addr = {.len = 4, .ip = {127, 0, 0, 1}, .port = 998};

static void cnode_new(struct cnode *o, bool disable, bool with_clock)
{
	memset(o, 0, sizeof(*o));
	o->rng = 11;
	struct swim_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "self";
	cfg.addr = (struct ml_addr){.len = 4, .ip = {127, 0, 0, 1}, .port = 999};
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 4};
	memcpy(cfg.vsn, vsn, 6);
	swim_timing_profile(&cfg.timing, "lan");
	cfg.disable_coordinates = disable;
	struct swim_io io = {.ctx = o, .send = c_send, .rand32 = c_rand, .push_pull = c_push_pull};
	if (with_clock)
		io.clock_us = c_clock;
	char err[128];
	o->s = swim_new(&cfg, &io, 1000000, err, sizeof(err));
	struct ml_alive a;
	memset(&a, 0, sizeof(a));
	a.incarnation = 1;
	snprintf(a.node, sizeof(a.node), "peer");
	a.addr = peer_addr;
	memcpy(a.vsn, vsn, 6);
	a.has_vsn = true;
	uint8_t buf[512];
	int n = ml_encode_alive(buf, sizeof(buf), &a);
	if (n > 0)
		swim_recv_packet(o->s, 1000000, &peer_addr, buf, (size_t)n);
}

/* The first message of type `type` among the packets sent so far, decoded
 * into *out by `dec`; true if found. */
static bool cnode_find(struct cnode *o, uint8_t type,
                       int (*dec)(const uint8_t **, const uint8_t *, void *), void *out)
{
	for (int i = 0; i < o->nsent; i++) {
		struct ml_slice parts[64];
		bool z = false;
		size_t pl;
		int np = packet_parts(o->sent[i], o->sent_len[i], parts, 64, &z, &pl);
		for (int j = 0; j < np; j++) {
			if (parts[j].len < 1 || parts[j].p[0] != type)
				continue;
			const uint8_t *pos = parts[j].p + 1;
			if (dec(&pos, parts[j].p + parts[j].len, out) == ML_OK)
				return true;
		}
	}
	return false;
}

static int dec_ping(const uint8_t **pos, const uint8_t *end, void *out)
{
	return ml_decode_ping(pos, end, out);
}

static int dec_ack(const uint8_t **pos, const uint8_t *end, void *out)
{
	return ml_decode_ack(pos, end, out);
}

/* Run the node until it pings "peer"; returns the ping's seq, or 0. */
static uint32_t cnode_probe(struct cnode *o, int64_t *now)
{
	o->nsent = 0;
	for (int i = 0; i < 5000; i++) {
		*now += 1;
		if (swim_next_deadline(o->s) <= *now)
			swim_tick(o->s, *now);
		struct ml_ping ping;
		if (cnode_find(o, ML_PING, dec_ping, &ping))
			return ping.seq;
	}
	return 0;
}

/* Answer the probe `seq` with an ack carrying `payload`. */
static void cnode_ack(struct cnode *o, int64_t now, uint32_t seq, const uint8_t *payload,
                      size_t len)
{
	struct ml_ack ack;
	memset(&ack, 0, sizeof(ack));
	ack.seq = seq;
	memcpy(ack.payload, payload, len);
	ack.payload_len = (uint16_t)len;
	uint8_t buf[2048];
	int n = ml_encode_ack(buf, sizeof(buf), &ack);
	if (n > 0)
		swim_recv_packet(o->s, now, &peer_addr, buf, (size_t)n);
}

/* A real Serf 0.8.2 ack (captured on loopback, beta to alpha) carries a coordinate
 * payload; answered with it, our probe caches exactly that coordinate. A
 * payload that does not decode is counted, the probe still succeeds, and
 * nothing is cached. */
static void test_coord_serf_ack_payload_and_bad_payloads(void)
{
	size_t flen;
	uint8_t *fix = read_file(RUMOR_FIXTURES "/serf-0.8.2/udp_024_27947_27946.bin", &flen);
	REQUIRE(fix != NULL, "fixture readable");
	struct ml_ack serf_ack;
	const uint8_t *pos = fix + 1;
	int rc = ml_decode_ack(&pos, fix + flen, &serf_ack);
	struct coord want;
	REQUIRE(fix[0] == ML_ACK && rc == ML_OK, "Serf's ack decodes");
	REQUIRE(coord_payload_decode(serf_ack.payload, serf_ack.payload_len, &want) == 0,
	        "Serf's ack payload is a coordinate: %s", mp_error());
	free(fix);

	struct cnode o;
	cnode_new(&o, false, false);
	int64_t now = 1000000;
	/* bad payloads: another version, a truncated map, junk */
	const uint8_t bad[][6] = {{2, 0x80}, {1, 0x84, 0xaa, 'A'}, {1, 0xc1}};
	for (int i = 0; i < 3; i++) {
		uint32_t seq = cnode_probe(&o, &now);
		REQUIRE(seq != 0, "probe %d sent", i);
		cnode_ack(&o, now + 1, seq, bad[i], i == 1 ? 4 : 2);
		now += 1000;
	}
	const struct swim_stats *st = swim_stats(o.s);
	CHECK_INT(3, st->coord_bad_payloads);
	CHECK_INT(0, st->coord_updates);
	CHECK_INT(0, st->suspicions, "the probes succeeded");
	CHECK(swim_coord_of(o.s, "peer") == NULL, "nothing cached from bad payloads");

	uint32_t seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "probe sent");
	cnode_ack(&o, now + 3, seq, serf_ack.payload, serf_ack.payload_len);
	CHECK_INT(1, st->coord_updates);
	const struct coord *got = swim_coord_of(o.s, "peer");
	REQUIRE(got != NULL, "Serf's coordinate cached");
	CHECK(memcmp(got, &want, sizeof(want)) == 0, "cached coordinate equals Serf's");
	swim_free(o.s);
}

/* An ack that comes after the direct stage (the indirect probes are out)
 * is no RTT sample, as in memberlist's probeNode; with clock_us the RTT
 * is timed on it: 300 us, not the 0 ms `now` says. */
static void test_coord_only_direct_acks_count_and_clock_us(void)
{
	uint8_t payload[COORD_WIRE_MAX];
	struct coord_config cfg;
	coord_config_default(&cfg);
	struct coord c;
	coord_new(&cfg, &c);
	c.vec[0] = 0.001;
	int plen = coord_payload_encode(&c, payload, sizeof(payload));
	REQUIRE(plen > 0, "payload encodes");

	struct cnode o;
	cnode_new(&o, false, false);
	int64_t now = 1000000;
	uint32_t seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "probe sent");
	now += 600; /* past probe_timeout (500 ms): indirect stage */
	swim_tick(o.s, now);
	cnode_ack(&o, now, seq, payload, (size_t)plen);
	CHECK_INT(0, swim_stats(o.s)->coord_updates, "late ack: no sample");
	CHECK(swim_coord_of(o.s, "peer") == NULL, "late ack: nothing cached");
	/* the next probe's ack at exactly probe_timeout, before any tick
	 * moved the probe on: too late all the same */
	now += 1000;
	seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "second probe sent");
	cnode_ack(&o, now + 500, seq, payload, (size_t)plen);
	CHECK_INT(0, swim_stats(o.s)->coord_updates, "ack at probe_timeout: no sample");
	swim_free(o.s);

	cnode_new(&o, false, true);
	now = 1000000;
	o.clock = 5000000000;
	seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "probe sent");
	o.clock += 300;
	cnode_ack(&o, now, seq, payload, (size_t)plen);
	CHECK_INT(1, swim_stats(o.s)->coord_updates);
	const struct coord *self = swim_coord_self(o.s);
	REQUIRE(self != NULL, "self coordinate");
	/* the same sample given to a client of our own: from the origin, not
	 * coincident with the peer, so the seed plays no part */
	struct coord_client ref;
	coord_client_init(&ref, NULL, 1);
	coord_client_update(&ref, "peer", &c, 300000);
	CHECK(memcmp(self, &ref.c, sizeof(ref.c)) == 0,
	      "coordinate as from a 300 us sample: x=%g want %g", self->vec[0], ref.c.vec[0]);
	CHECK(self->vec[0] > 0, "moved toward a peer farther than the RTT: x=%g", self->vec[0]);
	coord_client_free(&ref);
	swim_free(o.s);
}

/* Our acks carry our coordinate (Serf's AckPayload); with coordinates
 * disabled they carry nothing and both lookups say NULL. */
static void test_coord_acks_carry_ours_unless_disabled(void)
{
	for (int disable = 0; disable < 2; disable++) {
		struct cnode o;
		cnode_new(&o, disable, false);
		o.nsent = 0;
		struct ml_ping ping;
		memset(&ping, 0, sizeof(ping));
		ping.seq = 77;
		snprintf(ping.node, sizeof(ping.node), "self");
		uint8_t buf[512];
		int n = ml_encode_ping(buf, sizeof(buf), &ping);
		REQUIRE(n > 0, "ping encodes");
		swim_recv_packet(o.s, 1000001, &peer_addr, buf, (size_t)n);
		struct ml_ack ack;
		REQUIRE(cnode_find(&o, ML_ACK, dec_ack, &ack), "an ack was sent");
		CHECK_INT(77, ack.seq);
		if (disable) {
			CHECK_INT(0, ack.payload_len, "no payload when disabled");
			CHECK(swim_coord_self(o.s) == NULL, "no self coordinate when disabled");
			CHECK(swim_coord_of(o.s, "self") == NULL, "no cache when disabled");
		} else {
			struct coord got;
			REQUIRE(coord_payload_decode(ack.payload, ack.payload_len, &got) == 0,
			        "payload decodes: %s", mp_error());
			CHECK(memcmp(&got, swim_coord_self(o.s), sizeof(got)) == 0,
			      "the payload is our coordinate");
			CHECK_INT(1, ack.payload[0], "Serf's ping version");
		}
		swim_free(o.s);
	}
}

/* A reaped member's cached coordinate goes with it (Serf's eraseNode): a
 * node taking the freed slot, even under the same name, starts with none. */
static void test_coord_forgotten_when_reaped(void)
{
	static struct net net;
	net_init(&net, 2);
	join_all(&net);
	net_run(&net, net.now + 10000);
	REQUIRE(swim_coord_of(net.nodes[0], "n1") != NULL, "n0 measured n1");
	net.down[1] = true;
	net_run(&net, net.now + 30000);
	REQUIRE(strcmp(state_of(&net, 0, 1), "dead") == 0, "n1 failed: %s", state_of(&net, 0, 1));
	REQUIRE(swim_force_leave(net.nodes[0], net.now, "n1", true) == 0, "prune n1");
	CHECK(swim_member_find(net.nodes[0], "n1") == NULL, "n1 reaped");
	CHECK(swim_coord_of(net.nodes[0], "n1") == NULL, "and its coordinate");
	uint8_t nometa[1];
	tell_alive(&net, 1, nometa, 0);
	REQUIRE(swim_member_find(net.nodes[0], "n1") != NULL, "n1 back");
	CHECK(swim_coord_of(net.nodes[0], "n1") == NULL, "back without the old coordinate");
	net_free(&net);
}

/* A driver that ran a whole probe timeout late counts it against local
 * health (one step, as a missed nack); less late does not; a successful
 * probe steps it down again. swim_members_gen moves on a member's change
 * and stays put while nothing changes. */
/* ----------------------------------------------------- table repair */

static int dec_digest(const uint8_t **pos, const uint8_t *end, void *out)
{
	return ml_decode_digest(pos, end, out);
}

/* Run o until `until`, answering each of its pings with an ack. */
static void cnode_run_acking(struct cnode *o, int64_t *now, int64_t until)
{
	static const uint8_t none[1];
	while (*now < until) {
		uint32_t seq = cnode_probe(o, now);
		if (seq != 0)
			cnode_ack(o, *now, seq, none, 0);
	}
}

static void cnode_digest(struct cnode *o, int64_t now, const struct ml_digest *d)
{
	uint8_t buf[512];
	int n = ml_encode_digest(buf, sizeof(buf), d);
	if (n > 0)
		swim_recv_packet(o->s, now, &peer_addr, buf, (size_t)n);
}

/*
 * A node whose table has not changed for 5 s sends a digest of it beside
 * each ping to a rumor agent; before that, none. A digest equal to ours
 * asks for nothing; a different one, while settled, opens a push-pull with
 * its sender, at most once per 10 s; a table that just changed ignores
 * digests (gossip is still at work).
 */
static void test_settled_table_sends_digest_and_a_difference_repairs(void)
{
	static struct cnode o;
	cnode_new(&o, true, false);
	int64_t now = 1000000, start = now;
	static const uint8_t none[1];
	struct ml_digest d;
	uint32_t seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "the node probes its peer");
	CHECK(!cnode_find(&o, ML_RUMOR_DIGEST, dec_digest, &d),
	      "no digest %lld ms after the table changed", (long long)(now - start));
	cnode_ack(&o, now, seq, none, 0);
	cnode_run_acking(&o, &now, start + 6000);
	seq = cnode_probe(&o, &now);
	REQUIRE(seq != 0, "the node probes its peer");
	REQUIRE(cnode_find(&o, ML_RUMOR_DIGEST, dec_digest, &d), "a settled node sends its digest");
	cnode_ack(&o, now, seq, none, 0);
	CHECK_INT(2, d.members);
	CHECK_STR("self", d.node);
	const struct swim_stats *st = swim_stats(o.s);
	CHECK(st->digests_sent >= 1, "digests_sent %llu", (unsigned long long)st->digests_sent);

	/* the peer's table is the same (push-pulls counted from here: the
	 * node's start made one of its own) */
	int pp0 = o.pp_calls;
	snprintf(d.node, sizeof(d.node), "peer");
	cnode_digest(&o, now, &d);
	CHECK_INT(0, o.pp_calls - pp0);
	CHECK_INT(0, (long long)st->digests_differed);
	/* one bit off: a push-pull with the sender */
	d.digest[7] ^= 1;
	cnode_digest(&o, now, &d);
	CHECK_INT(1, o.pp_calls - pp0);
	CHECK(ml_addr_equal(&o.pp_to, &peer_addr), "the push-pull goes to the digest's sender");
	CHECK_INT(1, (long long)st->repairs);
	/* ... and not again within 10 s */
	cnode_digest(&o, now + 9000, &d);
	CHECK_INT(1, o.pp_calls - pp0);
	CHECK_INT(1, (long long)st->repairs);
	CHECK_INT(2, (long long)st->digests_differed);
	/* a table that just changed ignores them */
	cnode_run_acking(&o, &now, now + 11000);
	uint8_t buf[512];
	struct ml_alive a;
	memset(&a, 0, sizeof(a));
	a.incarnation = 1;
	snprintf(a.node, sizeof(a.node), "other");
	a.addr = (struct ml_addr){.len = 4, .ip = {127, 0, 0, 3}, .port = 997};
	int n = ml_encode_alive(buf, sizeof(buf), &a);
	REQUIRE(n > 0, "alive encodes");
	swim_recv_packet(o.s, now, &peer_addr, buf, (size_t)n);
	cnode_digest(&o, now, &d);
	CHECK_INT(1, (long long)st->repairs);
	CHECK_INT(2, (long long)st->digests_differed);
	/* settled again 5 s later */
	cnode_run_acking(&o, &now, now + 6000);
	pp0 = o.pp_calls;
	cnode_digest(&o, now, &d);
	CHECK_INT(2, (long long)st->repairs);
	CHECK_INT(1, o.pp_calls - pp0);
	swim_free(o.s);
}

/*
 * The storm's tail (issue 21): a member misses a refutation that gossip
 * then stops carrying. n2 loses every alive message for 5 s while n0
 * hears n1 is alive at incarnation 7 and n1 refutes with 8; afterwards
 * n2 still lists n1 at its old incarnation, and with the regular
 * push-pull 10 minutes away only the settled tables' digests can show
 * the difference: n2 catches up within 15 s.
 */
static void test_missed_refutation_repaired_by_digest(void)
{
	static struct net net;
	net_push_pull_ms = 600000;
	net_init(&net, 3);
	net_push_pull_ms = 0;
	join_all(&net);
	net_run(&net, net.now + 20000);
	for (int v = 0; v < 3; v++)
		for (int m = 0; m < 3; m++)
			REQUIRE(strcmp(state_of(&net, v, m), "alive") == 0, "n%d sees n%d alive", v,
			        m);
	net.strip_alive_to = 1 + 2;
	REQUIRE(tell_alive_at(&net, 1, 7, NULL, 0) > 0, "alive encodes");
	net_run(&net, net.now + 5000);
	net.strip_alive_to = 0;
	uint32_t inc = swim_self(net.nodes[1])->incarnation;
	CHECK(inc >= 8, "n1 refuted: incarnation %u", inc);
	CHECK(net.stripped > 0, "n2 lost %d alive messages", net.stripped);
	CHECK(swim_member_find(net.nodes[0], "n1")->incarnation == inc, "n0 has n1 at %u",
	      swim_member_find(net.nodes[0], "n1")->incarnation);
	REQUIRE(swim_member_find(net.nodes[2], "n1")->incarnation < inc,
	        "n2 missed the refutation");
	int64_t t0 = net.now;
	while (net.now - t0 < 15000 && swim_member_find(net.nodes[2], "n1")->incarnation != inc)
		net_run(&net, net.now + 100);
	CHECK(swim_member_find(net.nodes[2], "n1")->incarnation == inc,
	      "n2 has n1 at %u after %lld ms, want %u",
	      swim_member_find(net.nodes[2], "n1")->incarnation, (long long)(net.now - t0), inc);
	uint64_t repairs = 0;
	for (int i = 0; i < 3; i++)
		repairs += swim_stats(net.nodes[i])->repairs;
	CHECK(repairs >= 1, "repairs: %llu", (unsigned long long)repairs);
	net_free(&net);
}

/* Digests go to rumor agents only, KV store or not (n2 runs none): a stock
 * Serf agent never gets one. */
static void test_digests_skip_serf_members(void)
{
	static struct net net;
	net_kvless = 2; /* n2: a rumor agent without the KV store still takes them */
	net_init_mix(&net, 5, 3);
	net_kvless = -1;
	join_all(&net);
	net_run(&net, net.now + 40000);
	for (int i = 1; i < 5; i++)
		if (i < 3)
			CHECK(net.tap_digests_to[i] > 0, "rumor agent n%d got %d digests", i,
			      net.tap_digests_to[i]);
		else
			CHECK_INT(0, net.tap_digests_to[i]);
	net_free(&net);
}

static void test_late_driver_raises_health_score_and_members_gen_moves(void)
{
	static struct net net;
	net_init(&net, 3);
	join_all(&net);
	net_run(&net, net.now + 5000);
	struct swim *s = net.nodes[0];
	CHECK_INT(0, swim_health_score(s), "healthy after the join");
	uint64_t g0 = swim_members_gen(s);
	net_run(&net, net.now + 3000);
	CHECK(swim_members_gen(s) == g0, "members_gen moved with nothing changing");
	swim_note_late(s, 499);
	CHECK_INT(0, swim_health_score(s), "499 ms late (under the 500 ms probe timeout)");
	swim_note_late(s, 500);
	CHECK_INT(1, swim_health_score(s), "500 ms late");
	for (int i = 0; i < 20; i++)
		swim_note_late(s, 5000);
	CHECK_INT(7, swim_health_score(s), "bounded by the awareness multiplier");
	CHECK(swim_stats(s)->late_wakeups == 21, "late wake-ups counted: %llu",
	      (unsigned long long)swim_stats(s)->late_wakeups);
	net_run(&net, net.now + 60000);
	CHECK(swim_health_score(s) < 7, "successful probes step it down: %d", swim_health_score(s));
	tell_alive(&net, 3, (const uint8_t *)"x", 1);
	CHECK(swim_members_gen(s) != g0, "members_gen did not move on a new member");
	net_free(&net);
}

/* Run the net until `until` in steps of step ms, node s's driver reporting
 * after each step a tick late_ms late and wait_ms spent waiting for a CPU. */
static void run_starved(struct net *net, struct swim *s, int64_t until, int64_t step,
                        int64_t late_ms, int64_t wait_ms)
{
	while (net->now < until) {
		net_run(net, net->now + step);
		if (late_ms > 0)
			swim_note_late(s, late_ms);
		if (wait_ms > 0)
			swim_note_run_delay(s, wait_ms);
	}
}

/* A node that was itself a probe timeout late, or waited for a CPU, while a
 * probe ran does not suspect the silent target (the probe is inconclusive);
 * once it runs on time again, its own probes suspect the dead peer, and a
 * suspicion that runs out while it is starved waits, up to the longest
 * suspicion timeout. */
static void test_starved_prober_does_not_accuse(void)
{
	static struct net net;
	net_init(&net, 2);
	join_all(&net);
	net_run(&net, net.now + 5000);
	struct swim *s = net.nodes[0];
	REQUIRE(strcmp(state_of(&net, 0, 1), "alive") == 0, "n1 alive after the join");
	net.down[1] = true;
	uint64_t f0 = swim_stats(s)->probe_failures;
	run_starved(&net, s, net.now + 20000, 50, 600, 0); /* every tick 600 ms late */
	CHECK(swim_stats(s)->probe_failures > f0, "n0 probed the dead n1 and failed");
	CHECK(swim_stats(s)->probes_inconclusive == swim_stats(s)->probe_failures - f0,
	      "every failure while starved inconclusive: %llu of %llu",
	      (unsigned long long)swim_stats(s)->probes_inconclusive,
	      (unsigned long long)(swim_stats(s)->probe_failures - f0));
	CHECK(strcmp(state_of(&net, 0, 1), "alive") == 0, "a starved n0 accused n1: %s",
	      state_of(&net, 0, 1));
	/* waiting for a CPU (schedstat) counts the same */
	uint64_t i1 = swim_stats(s)->probes_inconclusive;
	run_starved(&net, s, net.now + 20000, 50, 0, 20); /* 400 ms of every 1 s in the run queue */
	/* the one in flight started while late; at least one more since */
	CHECK(swim_stats(s)->probes_inconclusive >= i1 + 2,
	      "the run queue's delay made probes inconclusive: %llu",
	      (unsigned long long)(swim_stats(s)->probes_inconclusive - i1));
	CHECK(strcmp(state_of(&net, 0, 1), "alive") == 0, "n0 waiting for a CPU accused n1: %s",
	      state_of(&net, 0, 1));
	/* on time again: n0 suspects n1 */
	for (int i = 0; i < 600 && strcmp(state_of(&net, 0, 1), "alive") == 0; i++)
		net_run(&net, net.now + 100);
	REQUIRE(strcmp(state_of(&net, 0, 1), "suspect") == 0, "on time again, n0 suspects n1: %s",
	        state_of(&net, 0, 1));
	/* starved while the suspicion runs (4 s at N = 2, at most 6x that):
	 * no death before the longest timeout, death by then */
	int64_t t_susp = net.now;
	run_starved(&net, s, t_susp + 10000, 100, 0, 150);
	CHECK(strcmp(state_of(&net, 0, 1), "suspect") == 0,
	      "a starved n0 declared n1 dead before the longest timeout: %s", state_of(&net, 0, 1));
	CHECK(swim_stats(s)->deaths_deferred > 0, "deferrals counted");
	run_starved(&net, s, t_susp + 26000, 100, 0, 150);
	CHECK(strcmp(state_of(&net, 0, 1), "dead") == 0,
	      "starved or not, n1 dead by the longest suspicion timeout: %s", state_of(&net, 0, 1));

	net_free(&net);
}

int main(void)
{
	RUN(test_formulas_match_memberlist);
	RUN(test_bcast_fewest_sent_first_and_invalidation);
	RUN(test_bcast_fill_for_several_peers);
	RUN(test_join_converges);
	RUN(test_late_driver_raises_health_score_and_members_gen_moves);
	RUN(test_starved_prober_does_not_accuse);
	RUN(test_membership_broadcasts_go_before_user_messages);
	RUN(test_housekeeping_rides_the_probe_tick);
	RUN(test_gossip_packs_by_compressed_size);
	RUN(test_piggyback_stays_within_budget);
	RUN(test_crash_detected_within_suspicion_bounds);
	RUN(test_false_suspicion_is_refuted);
	RUN(test_leave_is_left_not_failed);
	RUN(test_malformed_packets_counted_not_fatal);
	RUN(test_serf_push_pull_fixture_merges);
	RUN(test_push_pull_over_the_cap_refused_at_the_header);
	RUN(test_settled_table_sends_digest_and_a_difference_repairs);
	RUN(test_missed_refutation_repaired_by_digest);
	RUN(test_digests_skip_serf_members);
	RUN(test_large_state_merges_in_slices_like_at_once);
	RUN(test_fresh_join_merge_is_quiet);
	RUN(test_merge_rebroadcasts_bounded_news);
	RUN(test_crowded_queue_counts_echoes);
	RUN(test_crowded_reply_reused);
	RUN(test_squeezed_node_wakes_at_gossip_rounds);
	RUN(test_rumor_messages_named_and_echoed);
	RUN(test_merge_queue_is_bounded);
	RUN(test_stream_scan_resumes);
	RUN(test_tags_is_rumor_wants_rumor_build_and_kv_port);
	RUN(test_rumor_only_messages_skip_serf_members);
	RUN(test_unknown_destination_gets_no_rumor_only);
	RUN(test_coord_learned_from_direct_probes);
	RUN(test_coord_serf_ack_payload_and_bad_payloads);
	RUN(test_coord_only_direct_acks_count_and_clock_us);
	RUN(test_coord_acks_carry_ours_unless_disabled);
	RUN(test_coord_forgotten_when_reaped);
	return check_exit_code();
}
