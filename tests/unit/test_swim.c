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
#include "gossip/swim.h"
#include "tests/unit/check.h"

/* ----------------------------------------------------------- formulas */

static void test_formulas_match_memberlist(void)
{
	/* ANCHORS.md A3, computed LAN values */
	static const struct {
		size_t n;
		int64_t min_ms;
		int retransmits;
	} rows[] = {{3, 4000, 4},    {10, 4000, 8},    {32, 6020, 8},
		    {100, 8000, 12}, {1000, 12000, 16}, {10000, 16000, 20}};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int64_t got = swim_suspicion_timeout_ms(4, rows[i].n, 1000);
		CHECK(llabs(got - rows[i].min_ms) <= 1, "suspicion min n=%zu: expected %lld got %lld",
		      rows[i].n, (long long)rows[i].min_ms, (long long)got);
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
	size_t n = bcast_queue_fill(&q, 3, 2, 1000, out, lens, 8);
	CHECK(n == 2, "both fit: expected 2 got %zu", n);
	/* a newer message about n1 replaces the old one */
	bcast_queue_push(&q, 1, "n1", c, 2);
	CHECK(q.n == 2, "invalidated: expected 2 queued got %zu", q.n);
	n = bcast_queue_fill(&q, 3, 2, 1000, out, lens, 8);
	CHECK(n == 2 && lens[0] == 2, "never-sent message first: got n=%zu len0=%zu", n, lens[0]);
	bcast_queue_retire(&q, 3);
	CHECK(q.n == 2, "nothing reached 3 transmits yet: %zu queued", q.n);
	bcast_queue_fill(&q, 3, 2, 1000, out, lens, 8);
	bcast_queue_retire(&q, 3);
	CHECK(q.n == 1, "b retired after 3 sends: %zu queued", q.n);
	/* budget: 5 bytes fits one 2-byte message with overhead 2, not a 4-byte one */
	bcast_queue_push(&q, 1, "n3", a, 4);
	n = bcast_queue_fill(&q, 10, 2, 5, out, lens, 8);
	CHECK(n == 1 && lens[0] == 2, "budget respected: n=%zu", n);
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
};

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
	int dst = node_of(net, to);
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

static void net_init(struct net *net, int n)
{
	memset(net, 0, sizeof(*net));
	net->q = calloc(MAXQ, sizeof(*net->q));
	net->n = n;
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
		struct swim_io io = {.ctx = &ctxs[i],
				     .send = n_send,
				     .rand32 = n_rand,
				     .push_pull = n_push_pull,
				     .event = n_event};
		char err[128];
		net->nodes[i] = swim_new(&cfg, &io, net->now, err, sizeof(err));
	}
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
					struct ml_addr from = {.len = 4, .ip = {127, 0, 0, 1},
							       .port = (uint16_t)(1000 + k->from)};
					swim_recv_packet(net->nodes[k->to], net->now, &from, k->data,
							 k->len);
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
			if (!net->down[i] && swim_next_deadline(net->nodes[i]) <= net->now)
				swim_tick(net->nodes[i], net->now);
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
		CHECK(net.events_failed[v] == 0, "n%d saw no failure (got %d)", v, net.events_failed[v]);
		CHECK(net.events_left[v] == 1, "n%d saw one leave (got %d)", v, net.events_left[v]);
	}
	net_free(&net);
}

static void test_malformed_packets_counted_not_fatal(void)
{
	static struct net net;
	net_init(&net, 1);
	struct ml_addr from = {.len = 4, .ip = {127, 0, 0, 1}, .port = 999};
	static const uint8_t junk[][8] = {{0xff}, {ML_PING, 0xc1}, {ML_COMPOUND, 5, 0, 9},
					  {ML_HAS_CRC, 0, 0, 0, 0, 1}, {ML_ALIVE, 0x81, 0xa1}};
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

int main(void)
{
	RUN(test_formulas_match_memberlist);
	RUN(test_bcast_fewest_sent_first_and_invalidation);
	RUN(test_join_converges);
	RUN(test_crash_detected_within_suspicion_bounds);
	RUN(test_false_suspicion_is_refuted);
	RUN(test_leave_is_left_not_failed);
	RUN(test_malformed_packets_counted_not_fatal);
	RUN(test_serf_push_pull_fixture_merges);
	return check_exit_code();
}
