/*
 * tests/unit/test_serf.c — serf's messages against traffic captured from
 * serf 0.8.2 (tests/fixtures/serf-0.8.2), codec round trips, and the serf
 * layer's behaviour: user-event and query de-duplication, intents and
 * member status, push-pull state, queries with filters, acks and responses.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/serf.h"
#include "gossip/wire.h"
#include "tests/unit/check.h"

#ifndef RUMOR_FIXTURES
#define RUMOR_FIXTURES "tests/fixtures"
#endif
#define SERF_DIR RUMOR_FIXTURES "/serf-0.8.2"

/* CHECK_INT with the codec's last error after the (literal) description */
#define CHECK_SERF(exp, act, what) CHECK_INT(exp, act, what " (%s)", serf_wire_error())

/* ------------------------------------------------- fixture traversal */

struct found {
	int user_events, queries, query_acks, leaves, joins, bad;
	bool deploy;
	bool uptime;
	bool beta_leave;
};

static void serf_msg(struct found *f, const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	switch (p[0]) {
	case SERF_MSG_USER_EVENT: {
		struct serf_msg_user_event e;
		if (serf_decode_user_event(p + 1, len - 1, &e) != ML_OK) {
			f->bad++;
			return;
		}
		f->user_events++;
		if (e.name_len == 6 && memcmp(e.name, "deploy", 6) == 0 && e.payload_len == 6 &&
		    memcmp(e.payload, "v1.2.3", 6) == 0 && e.cc)
			f->deploy = true;
		uint8_t buf[1024];
		int n = serf_encode_user_event(buf, sizeof(buf), &e);
		CHECK(n == (int)len, "user event re-encodes to %d bytes, serf wrote %zu", n, len);
		break;
	}
	case SERF_MSG_QUERY: {
		struct serf_msg_query q;
		if (serf_decode_query(p + 1, len - 1, &q) != ML_OK) {
			f->bad++;
			return;
		}
		f->queries++;
		if (q.name_len == 6 && memcmp(q.name, "uptime", 6) == 0 && q.payload_len == 5 &&
		    memcmp(q.payload, "hello", 5) == 0 && q.timeout_ns == 2000000000LL &&
		    q.addr.len == 4 && q.addr.port == 27947)
			f->uptime = true;
		break;
	}
	case SERF_MSG_QUERY_RESPONSE: {
		struct serf_msg_query_response r;
		if (serf_decode_query_response(p + 1, len - 1, &r) != ML_OK) {
			f->bad++;
			return;
		}
		if (r.flags & SERF_QUERY_FLAG_ACK)
			f->query_acks++;
		break;
	}
	case SERF_MSG_LEAVE: {
		struct serf_msg_leave l;
		if (serf_decode_leave(p + 1, len - 1, &l) != ML_OK) {
			f->bad++;
			return;
		}
		f->leaves++;
		if (strcmp(l.node, "beta") == 0)
			f->beta_leave = true;
		break;
	}
	case SERF_MSG_JOIN: {
		struct serf_msg_join j;
		if (serf_decode_join(p + 1, len - 1, &j) != ML_OK) {
			f->bad++;
			return;
		}
		f->joins++;
		break;
	}
	default:
		break;
	}
}

/* Unwrap CRC, compress and compound; hand user messages to serf_msg. */
static void walk(struct found *f, const uint8_t *p, size_t len, int depth)
{
	if (len == 0 || depth > 4)
		return;
	switch (p[0]) {
	case ML_HAS_CRC: {
		struct ml_slice m;
		if (ml_crc_check(p, len, &m) == ML_OK)
			walk(f, m.p, m.len, depth + 1);
		break;
	}
	case ML_COMPRESS: {
		static uint8_t out[65536];
		int n = ml_compress_decode(p + 1, len - 1, out, sizeof(out));
		if (n > 0) {
			uint8_t *copy = malloc((size_t)n);
			memcpy(copy, out, (size_t)n);
			walk(f, copy, (size_t)n, depth + 1);
			free(copy);
		}
		break;
	}
	case ML_COMPOUND: {
		struct ml_slice parts[256];
		int trunc = 0;
		int n = ml_compound_decode(p + 1, len - 1, parts, 256, &trunc);
		for (int i = 0; i < n; i++)
			walk(f, parts[i].p, parts[i].len, depth + 1);
		break;
	}
	case ML_USER:
		serf_msg(f, p + 1, len - 1);
		break;
	default:
		break;
	}
}

static uint8_t *load(const char *path, size_t *len)
{
	*len = 0;
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return NULL;
	uint8_t *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	return buf;
}

static void test_decodes_serf_messages_captured_from_serf(void)
{
	struct found f;
	memset(&f, 0, sizeof(f));
	DIR *d = opendir(SERF_DIR);
	CHECK(d != NULL, "cannot open %s", SERF_DIR);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "udp_", 4) != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", SERF_DIR, e->d_name);
		size_t len;
		uint8_t *buf = load(path, &len);
		if (buf != NULL)
			walk(&f, buf, len, 0);
		free(buf);
	}
	closedir(d);
	CHECK_SERF(0, f.bad, "undecodable serf messages");
	CHECK(f.deploy, "user event deploy/v1.2.3 (coalesce on) not found (%d events)",
	      f.user_events);
	CHECK(f.uptime, "query uptime/hello, 2 s, reply to :27947 not found (%d queries)",
	      f.queries);
	CHECK(f.query_acks >= 1, "no query acks found");
	CHECK(f.beta_leave, "beta's leave intent not found (%d leaves)", f.leaves);
}

/* serf's push-pull stream: [compress] -> [push-pull] header, nodes, user state */
static void test_merges_serf_push_pull_user_state(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tcp_0_27946_40584.bin", SERF_DIR);
	size_t len;
	uint8_t *buf = load(path, &len);
	CHECK(buf != NULL, "cannot read %s", path);
	if (buf == NULL)
		return;
	static uint8_t out[1 << 20];
	const uint8_t *pos = buf + 1;
	size_t olen = 0;
	int rc = buf[0] == ML_COMPRESS
	                 ? ml_compress_decode_stream(&pos, buf + len, out, sizeof(out), &olen)
	                 : ML_BAD;
	CHECK_SERF(ML_OK, rc, "decompress");
	if (rc == ML_OK && out[0] == ML_PUSH_PULL) {
		const uint8_t *p = out + 1, *end = out + olen;
		struct ml_push_pull_header h;
		CHECK_SERF(ML_OK, ml_decode_push_pull_header(&p, end, &h), "header");
		static struct ml_push_node n;
		for (uint32_t i = 0; i < h.nodes; i++)
			ml_decode_push_node(&p, end, &n);
		CHECK(h.user_state_len > 0 && (size_t)(end - p) >= h.user_state_len,
		      "user state %u bytes", h.user_state_len);
		struct serf_io io = {0};
		struct serf *s = serf_new("rumor", &io);
		serf_merge_state(s, p, h.user_state_len, h.join);
		CHECK_SERF(0, serf_stats(s)->bad_msgs, "state parsed");
		CHECK(serf_clock(s) > 0, "member clock witnessed: %llu",
		      (unsigned long long)serf_clock(s));
		serf_free(s);
	}
	free(buf);
}

/* ------------------------------------------------------ round trips */

static void test_codecs_round_trip(void)
{
	uint8_t buf[2048];
	struct serf_msg_join j = {.ltime = 70000}, j2;
	strcpy(j.node, "node-a");
	int n = serf_encode_join(buf, sizeof(buf), &j);
	CHECK_SERF(ML_OK, serf_decode_join(buf + 1, (size_t)n - 1, &j2), "join");
	CHECK(j2.ltime == 70000 && strcmp(j2.node, "node-a") == 0, "join fields");

	struct serf_msg_leave l = {.ltime = 5, .prune = true}, l2;
	strcpy(l.node, "b");
	n = serf_encode_leave(buf, sizeof(buf), &l);
	CHECK_SERF(ML_OK, serf_decode_leave(buf + 1, (size_t)n - 1, &l2), "leave");
	CHECK(l2.ltime == 5 && l2.prune && strcmp(l2.node, "b") == 0, "leave fields");

	uint8_t big[300];
	memset(big, 'x', sizeof(big));
	struct serf_msg_query q = {.ltime = 9,
	                           .id = 0xdeadbeef,
	                           .flags = 1,
	                           .timeout_ns = 5e9,
	                           .name = "up",
	                           .name_len = 2,
	                           .payload = big,
	                           .payload_len = sizeof(big)},
	                      q2;
	q.addr.len = 4;
	q.addr.ip[0] = 10;
	q.addr.port = 7946;
	strcpy(q.source_node, "src");
	uint8_t f[64];
	const char *nodes[] = {"a", "b"};
	int fl = serf_encode_filter_nodes(f, sizeof(f), nodes, 2);
	q.filters[0].p = f;
	q.filters[0].len = (size_t)fl;
	q.nfilters = 1;
	n = serf_encode_query(buf, sizeof(buf), &q);
	CHECK_SERF(ML_OK, serf_decode_query(buf + 1, (size_t)n - 1, &q2), "query");
	CHECK(q2.id == 0xdeadbeef && q2.timeout_ns == 5000000000LL && q2.payload_len == 300 &&
	              q2.addr.port == 7946 && q2.addr.ip[0] == 10 && q2.nfilters == 1 &&
	              strcmp(q2.source_node, "src") == 0,
	      "query fields");

	struct serf_key_response kr = {.result = true, .nkeys = 2}, kr2;
	strcpy(kr.keys[0], "k1");
	strcpy(kr.keys[1], "k2");
	strcpy(kr.primary, "k1");
	n = serf_encode_key_response(buf, sizeof(buf), &kr);
	CHECK_SERF(ML_OK, serf_decode_key_response(buf, (size_t)n, &kr2), "key response");
	CHECK(kr2.result && kr2.nkeys == 2 && strcmp(kr2.primary, "k1") == 0, "key fields");

	/* every truncation is refused or handled, never read past the end */
	for (int cut = 0; cut < n; cut++) {
		uint8_t *c = malloc((size_t)cut + 1);
		memcpy(c, buf, (size_t)cut);
		serf_decode_key_response(c, (size_t)cut, &kr2);
		serf_decode_query(c, (size_t)cut, &q2);
		free(c);
	}
}

/* ----------------------------------------------------- the layer */

#define MAXQ 64
struct net { /* a tiny in-memory cluster: broadcasts reach every other node */
	struct serf *nodes[4];
	int n;
	uint8_t *q[MAXQ];
	size_t qlen[MAXQ];
	int qfrom[MAXQ];
	int nq;
	int delivered[4];
	char last_event[4][64];
	int queries[4];
	int acks, responses;
	int sent_to;
};

struct ctx {
	struct net *net;
	int idx;
};

static void io_bcast(void *c, const uint8_t *m, size_t len)
{
	struct ctx *x = c;
	struct net *net = x->net;
	if (net->nq == MAXQ)
		return;
	net->q[net->nq] = malloc(len);
	memcpy(net->q[net->nq], m, len);
	net->qlen[net->nq] = len;
	net->qfrom[net->nq++] = x->idx;
}

static void io_send_to(void *c, const struct ml_addr *to, const uint8_t *m, size_t len)
{
	struct ctx *x = c;
	/* the port says which node: 1000 + index */
	int dst = to->port - 1000;
	x->net->sent_to++;
	if (dst >= 0 && dst < x->net->n)
		serf_handle_msg(x->net->nodes[dst], 0, m, len);
}

static void io_user(void *c, uint64_t lt, const char *name, const uint8_t *p, size_t len, bool cc)
{
	struct ctx *x = c;
	x->net->delivered[x->idx]++;
	snprintf(x->net->last_event[x->idx], 64, "%s:%.*s", name, (int)len, (const char *)p);
}

static void io_query(void *c, const struct serf_query_in *q)
{
	struct ctx *x = c;
	x->net->queries[x->idx]++;
	char err[64];
	serf_query_respond(x->net->nodes[x->idx], q, (const uint8_t *)"pong", 4, err, sizeof(err));
}

static void io_qresp(void *c, uint32_t id, const char *from, bool ack, const uint8_t *p, size_t len)
{
	struct ctx *x = c;
	if (ack)
		x->net->acks++;
	else
		x->net->responses++;
}

static struct ctx ctxs[4];

static void net_init(struct net *net, int n)
{
	memset(net, 0, sizeof(*net));
	net->n = n;
	for (int i = 0; i < n; i++) {
		ctxs[i].net = net;
		ctxs[i].idx = i;
		struct serf_io io = {.ctx = &ctxs[i],
		                     .broadcast = io_bcast,
		                     .send_to = io_send_to,
		                     .user_event = io_user,
		                     .query = io_query,
		                     .query_response = io_qresp};
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		net->nodes[i] = serf_new(name, &io);
		for (int j = 0; j < n; j++) {
			snprintf(name, sizeof(name), "n%d", j);
			serf_member_event(net->nodes[i], SWIM_EV_JOIN, name);
		}
	}
}

/* deliver queued broadcasts (and re-broadcasts) until quiet */
static int net_run(struct net *net)
{
	int delivered = 0;
	for (int k = 0; k < net->nq && k < MAXQ; k++) {
		for (int i = 0; i < net->n; i++)
			if (i != net->qfrom[k]) {
				serf_handle_msg(net->nodes[i], 0, net->q[k], net->qlen[k]);
				delivered++;
			}
	}
	return delivered;
}

static void net_free(struct net *net)
{
	for (int i = 0; i < net->n; i++)
		serf_free(net->nodes[i]);
	for (int k = 0; k < net->nq; k++)
		free(net->q[k]);
}

static void test_user_event_reaches_every_member_once(void)
{
	struct net net;
	net_init(&net, 3);
	char err[128];
	CHECK_SERF(0,
	           serf_user_event(net.nodes[0], "deploy", (const uint8_t *)"v1", 2, true, err,
	                           sizeof(err)),
	           "fire");
	net_run(&net);
	for (int i = 0; i < 3; i++)
		CHECK_SERF(1, net.delivered[i], "delivered once");
	CHECK(strcmp(net.last_event[2], "deploy:v1") == 0, "got %s", net.last_event[2]);
	CHECK(serf_stats(net.nodes[1])->events_dup >= 1, "re-broadcast copies were deduplicated");
	uint8_t big[600] = {0};
	CHECK_SERF(-1, serf_user_event(net.nodes[0], "x", big, sizeof(big), true, err, sizeof(err)),
	           "size limit");
	net_free(&net);
}

static void test_leave_intent_then_dead_is_left_otherwise_failed(void)
{
	struct net net;
	net_init(&net, 3);
	serf_broadcast_leave(net.nodes[1]);
	net_run(&net);
	CHECK_SERF(SERF_STATUS_LEAVING, serf_member_status(net.nodes[0], "n1"), "leaving");
	CHECK_SERF(SERF_EV_MEMBER_LEAVE, serf_member_event(net.nodes[0], SWIM_EV_FAILED, "n1"),
	           "dead after intent is a leave");
	CHECK_SERF(SERF_STATUS_LEFT, serf_member_status(net.nodes[0], "n1"), "left");
	CHECK_SERF(SERF_EV_MEMBER_FAILED, serf_member_event(net.nodes[0], SWIM_EV_FAILED, "n2"),
	           "dead without intent is a failure");
	CHECK_SERF(SERF_STATUS_FAILED, serf_member_status(net.nodes[0], "n2"), "failed");
	CHECK_SERF(SERF_EV_MEMBER_JOIN, serf_member_event(net.nodes[0], SWIM_EV_JOIN, "n2"),
	           "back");
	CHECK_SERF(SERF_STATUS_ALIVE, serf_member_status(net.nodes[0], "n2"), "alive again");
	net_free(&net);
}

static void test_old_leave_intent_about_us_is_refuted(void)
{
	struct net net;
	net_init(&net, 2);
	struct serf_msg_leave l = {.ltime = 10};
	strcpy(l.node, "n0");
	uint8_t buf[128];
	int n = serf_encode_leave(buf, sizeof(buf), &l);
	serf_handle_msg(net.nodes[0], 0, buf, (size_t)n);
	CHECK_SERF(1, net.nq, "a join intent was broadcast");
	CHECK(net.nq == 1 && net.q[0][0] == SERF_MSG_JOIN, "refutation is a join");
	CHECK_SERF(SERF_STATUS_ALIVE, serf_member_status(net.nodes[0], "n0"), "still alive");
	net_free(&net);
}

static void test_push_pull_state_carries_events_and_left_members(void)
{
	struct net net;
	net_init(&net, 2);
	char err[64];
	serf_user_event(net.nodes[0], "e1", (const uint8_t *)"p", 1, false, err, sizeof(err));
	serf_broadcast_leave(net.nodes[0]); /* pretend n0's view: itself leaving */
	serf_member_event(net.nodes[0], SWIM_EV_LEFT, "n0");
	size_t len;
	uint8_t *st = serf_local_state_new(net.nodes[0], &len);
	serf_merge_state(net.nodes[1], st, len, false);
	CHECK_SERF(0, serf_stats(net.nodes[1])->bad_msgs, "parsed");
	CHECK_SERF(1, net.delivered[1], "event learned through push-pull");
	CHECK_SERF(SERF_STATUS_LEAVING, serf_member_status(net.nodes[1], "n0"),
	           "left member becomes leaving, then left at its dead message");
	CHECK(serf_event_clock(net.nodes[1]) >= serf_event_clock(net.nodes[0]) - 1,
	      "event clock witnessed");
	for (size_t cut = 0; cut < len; cut++)
		serf_merge_state(net.nodes[1], st, cut, false);
	free(st);
	net_free(&net);
}

static void test_query_acks_responses_and_filters(void)
{
	struct net net;
	net_init(&net, 3);
	struct serf_query_params p = {.name = "ping", .request_ack = true, .timeout_ms = 1000};
	p.self_addr.len = 4;
	p.self_addr.port = 1000; /* node 0 */
	uint32_t id;
	char err[128];
	CHECK_SERF(0, serf_query(net.nodes[0], 0, &p, &id, err, sizeof(err)), "query");
	net_run(&net);
	CHECK_SERF(3, net.acks, "acks from every node, ourselves included");
	CHECK_SERF(3, net.responses, "responses");
	/* node filter: only n2 answers */
	memset(net.queries, 0, sizeof(net.queries));
	net.acks = net.responses = 0;
	const char *only[] = {"n2"};
	p.filter_nodes = only;
	p.n_filter_nodes = 1;
	serf_query(net.nodes[0], 0, &p, &id, err, sizeof(err));
	net_run(&net);
	CHECK_SERF(1, net.acks, "one ack with a node filter");
	CHECK(net.queries[2] == 1 && net.queries[1] == 0, "only n2 ran it");
	/* tag filter */
	struct tag t = {.key = "role", .value = "web"};
	serf_set_tags(net.nodes[1], &t, 1);
	net.acks = 0;
	p.n_filter_nodes = 0;
	p.filter_tag_key[0] = "role";
	p.filter_tag_expr[0] = "^w.b$";
	p.n_filter_tags = 1;
	serf_query(net.nodes[0], 0, &p, &id, err, sizeof(err));
	net_run(&net);
	CHECK_SERF(1, net.acks, "one ack with a tag filter");
	serf_query_close(net.nodes[0], id);
	net_free(&net);
}

int main(void)
{
	RUN(test_decodes_serf_messages_captured_from_serf);
	RUN(test_merges_serf_push_pull_user_state);
	RUN(test_codecs_round_trip);
	RUN(test_user_event_reaches_every_member_once);
	RUN(test_leave_intent_then_dead_is_left_otherwise_failed);
	RUN(test_old_leave_intent_about_us_is_refuted);
	RUN(test_push_pull_state_carries_events_and_left_members);
	RUN(test_query_acks_responses_and_filters);
	return check_exit_code();
}
