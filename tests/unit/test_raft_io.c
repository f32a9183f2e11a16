/*
 * tests/unit/test_raft_io.c — server/raft_io.h with real parts: three
 * libraft instances, each on our raft_io and its LMDB store in a data
 * directory of its own, one libev loop, and an in-memory network that can
 * drop messages. The FSM is a sequence: every committed entry carries one
 * number, and each server's FSM is the list of numbers in the order it
 * applied them, so "the same state" means the same list.
 *
 * The story, one test function per chapter, on one cluster:
 *  1. three servers bootstrap one 3-voter configuration and elect a leader;
 *  2. 100 entries go through the leader with 2% of messages dropped, and
 *     every FSM applies 1..100 in order; with a snapshot every 32 entries
 *     (8 kept behind it) the logs were compacted on every server; the FSM
 *     is version 3, as agent/server.c's: each snapshot is encoded on
 *     raft_io's worker thread (checked) and its data written to a file
 *     there;
 *  3. the leader stops: the other two elect a new one and commit 80 more;
 *  4. the old leader comes back from its data directory, too far behind
 *     for the log its leader kept, and catches up from a snapshot;
 *  5. all three stop and start again from their directories: term, vote
 *     and log are as they were, and the FSMs replay to the same list;
 *  6. on an io of its own, without libraft: while a leader's snapshot
 *     installs, libraft's clock stands and its tick is held (libraft 0.15
 *     would otherwise stand for election mid-install).
 * Every wait is bounded (real time on the loop, a guard timer), the data
 * directories are removed at the end, and ASan checks for leaks.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/xalloc.h"
#include "server/raft_io.h"
#include "server/raft_store.h"
#include "tests/unit/check.h"

#define N 3
#define ELECTION_MS 300
#define HEARTBEAT_MS 50
#define SNAPSHOT_THRESHOLD 32
#define SNAPSHOT_TRAILING 8
#define SEED 0x5eed0016ull

/* ---- the FSM: the numbers applied, in order ---- */

struct seq {
	uint64_t *v;
	size_t n, cap;
	unsigned restores;
	/* a snapshot being taken (fsm version 3): the list copied in the loop */
	uint64_t *pend;
	size_t pend_n;
	bool async_off_loop; /* snapshot_async ran on another thread than the loop's */
	unsigned async_done, finalized;
};

static pthread_t loop_thread;

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct seq *s = fsm->data;
	if (buf->len != 8)
		return RAFT_MALFORMED;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	memcpy(&s->v[s->n++], buf->base, 8);
	*result = NULL;
	return 0;
}

/* Version 3, as agent/server.c: in the loop, only a copy of the list (the
 * loop goes on appending to s->v while the worker encodes). */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct seq *s = fsm->data;
	if (!pthread_equal(pthread_self(), loop_thread) || s->pend != NULL)
		return RAFT_IOERR;
	s->pend = xmalloc(8 * (s->n + 1));
	if (s->n > 0)
		memcpy(s->pend, s->v, 8 * s->n);
	s->pend_n = s->n;
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

/* On raft_io's worker: the whole list, count first. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct seq *s = fsm->data;
	s->async_off_loop = !pthread_equal(pthread_self(), loop_thread);
	*bufs = raft_malloc(sizeof(**bufs));
	(*bufs)[0].len = 8 * (s->pend_n + 1);
	(*bufs)[0].base = raft_malloc((*bufs)[0].len);
	uint64_t n = s->pend_n;
	memcpy((*bufs)[0].base, &n, 8);
	if (n > 0)
		memcpy((uint8_t *)(*bufs)[0].base + 8, s->pend, 8 * n);
	*n_bufs = 1;
	s->async_done++;
	return 0;
}

/* In the loop again: ours to free (version 2 and up). */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct seq *s = fsm->data;
	if (pthread_equal(pthread_self(), loop_thread))
		s->finalized++;
	for (unsigned i = 0; *bufs != NULL && i < *n_bufs; i++)
		raft_free((*bufs)[i].base);
	raft_free(*bufs);
	*bufs = NULL;
	*n_bufs = 0;
	free(s->pend);
	s->pend = NULL;
	return 0;
}

/* Replaces the list; the buffer is ours to free. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct seq *s = fsm->data;
	uint64_t n;
	if (buf->len < 8)
		return RAFT_MALFORMED;
	memcpy(&n, buf->base, 8);
	if (buf->len != 8 * (n + 1))
		return RAFT_MALFORMED;
	free(s->v);
	s->v = xmalloc(8 * (n + 1));

	memcpy(s->v, (uint8_t *)buf->base + 8, 8 * n);
	s->n = s->cap = n;
	s->restores++;
	raft_free(buf->base);
	return 0;
}

/* ---- servers and the in-memory network ---- */

struct cluster;

struct node {
	struct cluster *c;
	raft_id id;
	char addr[32], dir[96];
	bool open;   /* raft_init'ed and not yet closed */
	bool closed; /* libraft's close callback ran */
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	struct seq seq;
};

struct msg {
	struct msg *next;
	raft_id from, to;
	uint8_t *buf;
	size_t len;
};

struct cluster {
	struct ev_loop *loop;
	char root[64];
	struct node n[N];
	struct msg *head, **tail;
	ev_timer wire; /* delivers what was sent, 1 ms later */
	double drop;   /* share of messages lost */
	uint64_t rng;
	unsigned sent, dropped, refused, bad;
	unsigned applied_ok, apply_failed;
	int last_apply_status;
};

static struct cluster C;

static double rnd(struct cluster *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return (double)(c->rng >> 11) / 9007199254740992.0;
}

static int net_send(void *ctx, raft_id to, const char *address, const uint8_t *buf, size_t len)
{
	struct node *from = ctx;
	struct cluster *c = from->c;
	if (to < 1 || to > N || !c->n[to - 1].open)
		return -1; /* no connection: libraft hears RAFT_NOCONNECTION */
	if (c->drop > 0 && rnd(c) < c->drop) {
		c->dropped++;
		return 0; /* lost on the way */
	}
	struct msg *m = xcalloc(1, sizeof(*m));
	m->from = from->id;
	m->to = to;
	m->buf = xmalloc(len);
	memcpy(m->buf, buf, len);
	m->len = len;
	*c->tail = m;
	c->tail = &m->next;
	c->sent++;
	if (!ev_is_active(&c->wire))
		ev_timer_start(c->loop, &c->wire);
	return 0;
}

static void wire_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cluster *c = w->data;
	struct msg *m = c->head;
	c->head = NULL;
	c->tail = &c->head;
	while (m != NULL) {
		struct msg *next = m->next;
		struct node *dst = &c->n[m->to - 1];
		char err[256];
		if (dst->open && !dst->closed) {
			const char *from = c->n[m->from - 1].addr;
			if (raft_io_deliver(&dst->io, m->from, from, m->buf, m->len, err,
			                    sizeof(err)) != 0) {
				c->refused++;
				if (!strstr(err, "closing"))
					c->bad++;
			}
		}
		free(m->buf);
		free(m);
		m = next;
	}
}

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until pred holds or `secs` of loop time passed; pred's
 * final value. */
static bool run_until(bool (*pred)(void *), void *arg, double secs)
{
	ev_timer guard;
	ev_timer_init(&guard, guard_cb, secs, 0);
	ev_timer_start(C.loop, &guard);
	ev_now_update(C.loop);
	double deadline = ev_now(C.loop) + secs;
	while (!pred(arg) && ev_now(C.loop) < deadline)
		ev_run(C.loop, EVRUN_ONCE);
	ev_timer_stop(C.loop, &guard);
	return pred(arg);
}

static double now(void)
{
	ev_now_update(C.loop);
	return ev_now(C.loop);
}

static void close_cb(struct raft *r)
{
	((struct node *)r->data)->closed = true;
}

static bool is_closed(void *arg)
{
	return ((struct node *)arg)->closed;
}

static int node_open(struct node *n, bool bootstrap)
{
	char err[256] = "";
	struct raft_io_config cfg = {
	        .loop = C.loop,
	        .data_dir = n->dir,
	        .map_size = 64u << 20,
	        .transport = {n, net_send},
	};
	if (!CHECK(raft_io_create(&n->io, &cfg, err, sizeof(err)) == 0, "raft_io_create: %s", err))
		return -1;
	memset(&n->seq, 0, sizeof(n->seq));
	n->fsm = (struct raft_fsm){.version = 3,
	                           .data = &n->seq,
	                           .apply = fsm_apply,
	                           .snapshot = fsm_snapshot,
	                           .restore = fsm_restore,
	                           .snapshot_finalize = fsm_snapshot_finalize,
	                           .snapshot_async = fsm_snapshot_async};
	int rv = raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr);
	if (!CHECK(rv == 0, "raft_init %s: %s", n->addr, raft_errmsg(&n->raft))) {
		raft_io_destroy(&n->io);
		return -1;
	}
	n->raft.data = n;
	n->open = true;
	n->closed = false;
	raft_set_election_timeout(&n->raft, ELECTION_MS);
	raft_set_heartbeat_timeout(&n->raft, HEARTBEAT_MS);
	raft_set_snapshot_threshold(&n->raft, SNAPSHOT_THRESHOLD);
	raft_set_snapshot_trailing(&n->raft, SNAPSHOT_TRAILING);
	if (bootstrap) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		for (int i = 0; i < N; i++)
			raft_configuration_add(&conf, C.n[i].id, C.n[i].addr, RAFT_VOTER);
		rv = raft_bootstrap(&n->raft, &conf);
		raft_configuration_close(&conf);
		if (!CHECK(rv == 0, "bootstrap: %s", raft_errmsg(&n->raft)))
			return -1;
	}
	rv = raft_start(&n->raft);
	return CHECK(rv == 0, "raft_start %s: %s", n->addr, raft_errmsg(&n->raft)) ? 0 : -1;
}

/* Stops a server as a crash would look from outside: its messages stop
 * (net_send refuses, wire_cb drops), then libraft closes. */
static void node_close(struct node *n)
{
	if (!n->open)
		return;
	n->open = false;
	raft_close(&n->raft, close_cb);
	CHECK(run_until(is_closed, n, 5.0), "%s closes within 5 s", n->addr);
	raft_io_destroy(&n->io);
	free(n->seq.v);
	free(n->seq.pend);
	memset(&n->seq, 0, sizeof(n->seq));
}

static struct node *leader(void)
{
	struct node *l = NULL;
	for (int i = 0; i < N; i++) {
		struct node *n = &C.n[i];
		if (n->open && raft_state(&n->raft) == RAFT_LEADER) {
			if (l != NULL)
				return NULL; /* two claim it (different terms): not settled */
			l = n;
		}
	}
	return l;
}

/* One leader, and every running server follows it. */
static bool settled(void *arg)
{
	struct node *l = leader();
	if (l == NULL)
		return false;
	for (int i = 0; i < N; i++) {
		raft_id id;
		const char *addr;
		if (!C.n[i].open)
			continue;
		raft_leader(&C.n[i].raft, &id, &addr);
		if (id != l->id)
			return false;
	}
	return true;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	if (status == 0) {
		C.applied_ok++;
	} else {
		C.apply_failed++;
		C.last_apply_status = status;
	}
	free(req);
}

/* Proposes the numbers [from, to] through the leader, all at once. */
static int propose(struct node *l, uint64_t from, uint64_t to)
{
	for (uint64_t v = from; v <= to; v++) {
		struct raft_buffer buf = {raft_malloc(8), 8};
		memcpy(buf.base, &v, 8);
		struct raft_apply *req = xcalloc(1, sizeof(*req));
		int rv = raft_apply(&l->raft, req, &buf, 1, apply_cb);
		if (rv != 0) {
			raft_free(buf.base);
			free(req);
			return rv;
		}
	}
	return 0;
}

/* Every running server applied `*want` numbers. */
static bool all_applied(void *arg)
{
	size_t want = *(size_t *)arg;
	for (int i = 0; i < N; i++)
		if (C.n[i].open && C.n[i].seq.n < want)
			return false;
	return true;
}

static bool one_applied(void *arg)
{
	struct node *n = arg;
	return n->seq.n >= (size_t)n->c->applied_ok;
}

/* n's FSM holds exactly 1..want, in order. */
static bool holds_sequence(const struct node *n, size_t want)
{
	if (!CHECK(n->seq.n == want, "%s applied %zu, expected %zu", n->addr, n->seq.n, want))
		return false;
	for (size_t i = 0; i < want; i++)
		if (!CHECK(n->seq.v[i] == i + 1, "%s: position %zu holds %llu, expected %zu",
		           n->addr, i, (unsigned long long)n->seq.v[i], i + 1))
			return false;
	return true;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* ---- the chapters ---- */

static void test_three_servers_elect_a_leader(void)
{
	double t0 = now();
	for (int i = 0; i < N; i++)
		REQUIRE_INT(0, node_open(&C.n[i], true));
	REQUIRE(run_until(settled, NULL, 10.0), "a leader all three follow within 10 s");
	printf("     leader %s (term %llu) after %.2f s\n", leader()->addr,
	       leader()->raft.current_term, now() - t0);
}

static bool leader_applied(void *arg)
{
	return C.applied_ok + C.apply_failed >= *(unsigned *)arg;
}

/* Every running server has a snapshot and dropped the entries it covers:
 * all but the trailing ones when it took the snapshot itself, all of them
 * when it installed its leader's (a follower the lossy network left
 * behind). Snapshot puts complete a loop turn after the apply that
 * triggered them, hence a wait. */
static bool compacted(void *arg)
{
	for (int i = 0; i < N; i++) {
		struct raft_store_info info;
		if (!C.n[i].open)
			continue;
		raft_store_info(raft_io_store(&C.n[i].io), &info);
		if (info.snapshot_index < SNAPSHOT_THRESHOLD ||
		    info.first_index + SNAPSHOT_TRAILING <= info.snapshot_index ||
		    info.first_index > info.snapshot_index + 1)
			return false;
	}
	return true;
}

static void test_entries_commit_in_order_on_all_three(void)
{
	struct node *l = leader();
	REQUIRE(l != NULL, "a leader");
	C.drop = 0.05;
	unsigned dropped0 = C.dropped;
	double t0 = now();
	/* ten rounds of ten, so that many messages cross the lossy network */
	for (unsigned round = 0; round < 10; round++) {
		unsigned want_acks = 10 * (round + 1);
		REQUIRE_INT(0, propose(l, 10 * round + 1, 10 * round + 10), "proposals accepted");
		REQUIRE(run_until(leader_applied, &want_acks, 10.0),
		        "round %u answered within 10 s", round);
	}
	size_t want = 100;
	bool ok = run_until(all_applied, &want, 20.0);
	C.drop = 0;
	REQUIRE(ok, "all three apply 100 entries within 20 s (applied %zu/%zu/%zu)", C.n[0].seq.n,
	        C.n[1].seq.n, C.n[2].seq.n);
	CHECK_INT(100, C.applied_ok, "every proposal answered success on the leader");
	CHECK_INT(0, C.apply_failed, "last failure %d", C.last_apply_status);
	CHECK(C.dropped > dropped0, "the network lost messages on the way");
	for (int i = 0; i < N; i++)
		holds_sequence(&C.n[i], 100);
	struct raft_io_stats st;
	raft_io_get_stats(&l->io, &st);
	printf("     100 entries on all three in %.2f s, %u messages dropped; leader wrote %llu "
	       "entries in %llu commits\n",
	       now() - t0, C.dropped - dropped0, (unsigned long long)st.entries,
	       (unsigned long long)st.commits);
	CHECK(run_until(compacted, NULL, 5.0), "every server snapshots and compacts within 5 s");
	for (int i = 0; i < N; i++) {
		struct raft_store_info info;
		raft_store_info(raft_io_store(&C.n[i].io), &info);
		printf("     %s: snapshot at %llu, log %llu..%llu; %u taken on the worker\n",
		       C.n[i].addr, info.snapshot_index, info.first_index, info.last_index,
		       C.n[i].seq.async_done);
		/* fsm version 3 through raft_io's async_work: the dump ran on the
		 * worker thread, the finalize in the loop, once per snapshot */
		CHECK(C.n[i].seq.async_done >= 1 && C.n[i].seq.async_off_loop,
		      "%s: snapshot_async ran on a thread other than the loop's", C.n[i].addr);
		CHECK(C.n[i].seq.finalized >= C.n[i].seq.async_done &&
		              C.n[i].seq.finalized <= C.n[i].seq.async_done + 1,
		      "%s: finalized in the loop after each (%u, %u)", C.n[i].addr,
		      C.n[i].seq.finalized, C.n[i].seq.async_done);
	}
}

static struct node *stopped;

static void test_leader_stops_and_a_new_one_commits(void)
{
	stopped = leader();
	REQUIRE(stopped != NULL, "a leader");
	raft_term old_term = stopped->raft.current_term;
	double t0 = now();
	node_close(stopped);
	REQUIRE(run_until(settled, NULL, 10.0), "the two others elect a leader within 10 s");
	struct node *l = leader();
	printf("     %s stopped; %s leads (term %llu) after %.2f s\n", stopped->addr, l->addr,
	       l->raft.current_term, now() - t0);
	CHECK(l->raft.current_term > old_term, "a new term");
	REQUIRE_INT(0, propose(l, 101, 180));
	size_t want = 180;
	REQUIRE(run_until(all_applied, &want, 20.0), "both apply 180 entries within 20 s");
	CHECK_INT(180, C.applied_ok);
	for (int i = 0; i < N; i++)
		if (C.n[i].open)
			holds_sequence(&C.n[i], 180);
}

static void test_lagging_server_catches_up_from_a_snapshot(void)
{
	REQUIRE(stopped != NULL, "a stopped server");
	struct node *l = leader();
	REQUIRE(l != NULL, "a leader");
	struct raft_store_info info;
	raft_store_info(raft_io_store(&l->io), &info);
	REQUIRE_INT(0, node_open(stopped, false));
	unsigned own = stopped->seq.restores;
	raft_index had = raft_last_index(&stopped->raft);
	CHECK(had + 1 < info.first_index, "%s has up to %llu, the leader keeps %llu.. only",
	      stopped->addr, had, info.first_index);
	double t0 = now();
	REQUIRE(run_until(one_applied, stopped, 10.0), "%s catches up within 10 s (%zu applied)",
	        stopped->addr, stopped->seq.n);
	CHECK_INT(own + 1, stopped->seq.restores, "it installed the leader's snapshot");
	struct raft_io_stats st;
	raft_io_get_stats(&l->io, &st);
	CHECK(st.snapshots_get >= 1, "the leader read its snapshot to send it");
	holds_sequence(stopped, 180);
	printf("     %s (log up to %llu) caught up from a snapshot in %.2f s\n", stopped->addr, had,
	       now() - t0);
}

static void test_all_restart_from_their_directories(void)
{
	raft_term term[N];
	raft_id vote[N];
	raft_index last[N];
	for (int i = 0; i < N; i++) {
		REQUIRE(C.n[i].open, "%s running", C.n[i].addr);
		term[i] = C.n[i].raft.current_term;
		vote[i] = C.n[i].raft.voted_for;
		last[i] = raft_last_index(&C.n[i].raft);
	}
	for (int i = 0; i < N; i++)
		node_close(&C.n[i]);
	for (int i = 0; i < N; i++) {
		REQUIRE_INT(0, node_open(&C.n[i], false));
		CHECK_INT(term[i], C.n[i].raft.current_term, "%s: term survives", C.n[i].addr);
		CHECK_INT(vote[i], C.n[i].raft.voted_for, "%s: vote survives", C.n[i].addr);
		CHECK_INT(last[i], raft_last_index(&C.n[i].raft), "%s: log survives", C.n[i].addr);
	}
	REQUIRE(run_until(settled, NULL, 10.0), "a leader after the restart within 10 s");
	REQUIRE_INT(0, propose(leader(), 181, 181));
	size_t want = 181;
	REQUIRE(run_until(all_applied, &want, 10.0), "all three replay and apply 181 within 10 s");
	for (int i = 0; i < N; i++)
		holds_sequence(&C.n[i], 181);
	printf("     restarted: terms %llu/%llu/%llu, last index %llu/%llu/%llu\n", term[0],
	       term[1], term[2], last[0], last[1], last[2]);
}

/* ---- chapter 6: libraft's clock stands while a leader's snapshot installs ---- */

struct held {
	uint64_t clock; /* what the io's clock hook reads */
	unsigned ticks, put_done, closed;
	unsigned ticks_at_put; /* ticks counted when the put's callback ran */
	int put_status;
};

static uint64_t held_clock(void *ctx)
{
	return ((struct held *)ctx)->clock;
}

static void held_tick(struct raft_io *io)
{
	((struct held *)io->data)->ticks++;
}

static void held_recv(struct raft_io *io, struct raft_message *m)
{
}

static void held_put_cb(struct raft_io_snapshot_put *req, int status)
{
	struct held *h = req->data;
	h->put_done++;
	h->put_status = status;
	h->ticks_at_put = h->ticks;
}

static void held_close_cb(struct raft_io *io)
{
	((struct held *)io->data)->closed++;
}

static bool held_put_done(void *arg)
{
	return ((struct held *)arg)->put_done > 0;
}

static bool held_closed(void *arg)
{
	return ((struct held *)arg)->closed > 0;
}

/*
 * libraft 0.15 answers an installed snapshot through its follower state
 * even when its election timer ran out mid-install and it became a
 * candidate (the answer then went to a wild address: the agent crashed).
 * The io holds libraft's clock and tick while such a put (trailing 0) is in
 * flight: the clock does not move however long the install takes, and
 * resumes afterwards without counting it, so no election timer can run out
 * during an install. Driven without libraft, on a clock the test sets.
 */
static void test_clock_stands_while_a_leader_snapshot_installs(void)
{
	struct held h = {.clock = 1000};
	char dir[128], err[256] = "";
	snprintf(dir, sizeof(dir), "%s/held", C.root);
	struct raft_io io;
	struct raft_io_config cfg = {.loop = C.loop,
	                             .data_dir = dir,
	                             .map_size = 16u << 20,
	                             .transport = {NULL, net_send},
	                             .clock_ctx = &h,
	                             .now_ms = held_clock,
	                             .tick_ms = 1};
	REQUIRE(raft_io_create(&io, &cfg, err, sizeof(err)) == 0, "raft_io_create: %s", err);
	io.data = &h;
	REQUIRE_INT(0, io.init(&io, 9, "127.0.0.9:8300"));
	REQUIRE_INT(0, io.start(&io, 1, held_tick, held_recv));
	h.ticks = 0;
	ev_run(C.loop, EVRUN_ONCE);
	usleep(5000);
	ev_run(C.loop, EVRUN_ONCE);
	CHECK(h.ticks > 0, "the tick runs before the install (%u)", h.ticks);
	CHECK_INT(1000, io.time(&io), "the clock reads the hook");

	/* the leader's snapshot: index 50, one voter, 1 MiB of data */
	struct raft_snapshot snap = {.index = 50, .term = 3, .configuration_index = 1};
	raft_configuration_init(&snap.configuration);
	raft_configuration_add(&snap.configuration, 1, "127.0.0.1:8300", RAFT_VOTER);
	struct raft_buffer buf = {.base = xcalloc(1, 1u << 20), .len = 1u << 20};
	snap.bufs = &buf;
	snap.n_bufs = 1;
	struct raft_io_snapshot_put put = {.data = &h};
	REQUIRE_INT(0, io.snapshot_put(&io, 0, &put, &snap, held_put_cb));
	h.clock = 61000; /* a minute passes while the file is written */
	CHECK_INT(1000, io.time(&io), "the clock stands during the install");
	h.ticks = 0;
	REQUIRE(run_until(held_put_done, &h, 10.0), "the put completes within 10 s");
	CHECK_INT(0, h.put_status, "... and succeeds");
	CHECK_INT(0, h.ticks_at_put, "no tick reached libraft while it installed");
	struct raft_io_stats st;
	raft_io_get_stats(&io, &st);
	printf("     %llu ticks held during the install\n", (unsigned long long)st.ticks_held);
	CHECK_INT(1000, io.time(&io), "the install's minute is not counted");
	h.clock = 61250;
	CHECK_INT(1250, io.time(&io), "the clock runs again afterwards");
	usleep(5000);
	ev_run(C.loop, EVRUN_ONCE);
	usleep(5000);
	ev_run(C.loop, EVRUN_ONCE);
	CHECK(h.ticks > 0, "the tick runs again afterwards (%u)", h.ticks);

	raft_configuration_close(&snap.configuration);
	free(buf.base);
	io.close(&io, held_close_cb);
	CHECK(run_until(held_closed, &h, 5.0), "the io closes within 5 s");
	raft_io_destroy(&io);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	C.loop = ev_loop_new(EVFLAG_AUTO);
	loop_thread = pthread_self();
	C.rng = SEED;
	C.tail = &C.head;
	ev_timer_init(&C.wire, wire_cb, 0.001, 0);
	C.wire.data = &C;
	snprintf(C.root, sizeof(C.root), "/tmp/test_raft_io.XXXXXX");
	if (mkdtemp(C.root) == NULL)
		return 1;
	for (int i = 0; i < N; i++) {
		struct node *n = &C.n[i];
		n->c = &C;
		n->id = (raft_id)(i + 1);
		snprintf(n->addr, sizeof(n->addr), "127.0.0.%d:8300", i + 1);
		snprintf(n->dir, sizeof(n->dir), "%s/n%d", C.root, i + 1);
	}
	printf("     seed %#llx, data in %s\n", SEED, C.root);

	RUN(test_three_servers_elect_a_leader);
	RUN(test_entries_commit_in_order_on_all_three);
	RUN(test_leader_stops_and_a_new_one_commits);
	RUN(test_lagging_server_catches_up_from_a_snapshot);
	RUN(test_all_restart_from_their_directories);
	RUN(test_clock_stands_while_a_leader_snapshot_installs);

	for (int i = 0; i < N; i++)
		node_close(&C.n[i]);
	ev_timer_stop(C.loop, &C.wire);
	wire_cb(C.loop, &C.wire, 0); /* frees what is still on the wire */
	ev_loop_destroy(C.loop);
	nftw(C.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK(access(C.root, F_OK) != 0, "%s removed", C.root);
	return check_exit_code();
}
