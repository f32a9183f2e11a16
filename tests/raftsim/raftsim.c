/*
 * tests/raftsim/raftsim.c — rumor's CP store on libraft's own fixture, on
 * virtual time: a deterministic, seeded simulation whose history of client
 * operations goes to tests/integration/linearize.py (issue 16).
 *
 * What runs for real: libraft 0.15 (elections with pre-vote, replication,
 * snapshots and their installation, barriers) through raft/fixture.h's
 * in-memory raft_io and virtual clock; rumor's state machine
 * (agent/cp_fsm.c) applying entries in agent/cp_wire.h's format to a real
 * kv/engine.c with its LMDB store and log (in /dev/shm), CAS decided at
 * apply time; the leader's write path as agent/server.c's (stamp a base
 * version, raft_apply, answer when the entry's batch committed, "unknown"
 * when leadership is lost); its ?consistent read path (reads queued for the
 * next barrier, issued after they arrived, then a read of the local replica
 * once the batch committed), its default read path and the 200 ms tick on
 * which a new leader becomes ready; the engine's batch committed once per
 * step, as kv/kv.c commits once per loop turn. The fixture's raft_io is
 * wrapped twice: so that a restarted server reads back its log (the fixture
 * never restarts one itself), and with server/raft_io.c's workaround.
 *
 * What is modelled: the clients and their network to the servers. Each
 * client runs one operation at a time — put, CAS on the index it just
 * read, ?consistent read — against the server it believes leads; a server
 * that does not lead answers with the leader it knows (rumor would forward
 * the request; either way it was not applied), and the client tries again
 * until 5 s have passed, then gives up (rumor's "No cluster leader": left out
 * of the history). A request whose reply is lost (the server crashed or the
 * link was cut after it arrived) or that gets no reply in 7 s is recorded
 * with outcome unknown, as rumor answers "the leader was lost".
 *
 * Faults on a seeded schedule: the leader isolated, random two-way splits,
 * one-way cuts, clients cut from servers, a crash of the leader or of
 * another server and its restart (raft closed and started again from what
 * the fixture's raft_io persisted; the kv engine closed and reopened from
 * its directory, so restart recovery and the FSM's replay skip run), and
 * randomised election timeouts and latencies from the seed.
 *
 * Planted bugs (-bug, of this simulator, never of the agent):
 *   follower-read  ?consistent answered by any server from its replica
 *                  (the clients send reads to a random server);
 *   no-barrier     the leader answers ?consistent from its replica without
 *                  the barrier (stale when it was deposed and does not know,
 *                  or is new and has not applied its predecessor's entries).
 *
 * Variants (not bugs): -default-reads PCT sends that share of reads in the
 * default mode (the leader's replica once the leader is ready, else after a
 * barrier); -ready tick makes a new leader ready at its first tick, as
 * server.c did before 2026-12-05, instead of after a barrier of its term;
 * -clamp 0 leaves out server/raft_io.c's workaround of libraft 0.15's match
 * index bug (mirrored on the fixture's raft_io), to show the bug.
 *
 * Output: the history as JSON (-o FILE, default stdout). Exit 1 when the
 * replicas differ after the final heal, a server never catches up or its
 * Raft shuts itself down, or the FSM or the store logged an error; the
 * fixture aborts on two leaders in one term.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cp_fsm.h"
#include "agent/cp_wire.h"
#include "kv/engine.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define MAX_NODES 5
#define MAX_CLIENTS 8
#define MAX_KEYS 8
#define EPOCH_MS 1790000000000LL /* wall clock at virtual time 0 (after KV_INDEX_EPOCH_MS) */
#define NO_LEADER_WAIT_MS 5000   /* agent/server.c: a write waits this long for a leader */
#define FORWARD_TIMEOUT_MS 7000  /* agent/server.c: a forwarded request's deadline */
#define SNAPSHOT_THRESHOLD 48    /* small, so snapshots are taken and installed */
#define SNAPSHOT_TRAILING 16
#define RERANDOMISE_MS 50

enum bug { BUG_NONE, BUG_FOLLOWER_READ, BUG_NO_BARRIER };
enum kind { K_PUT, K_CAS, K_READ };
enum res { RES_NONE, RES_OK, RES_FAIL, RES_UNKNOWN, RES_REDIRECT, RES_READ_FAILED, RES_VALUE };

struct sim;

/* A request that reached a server: freed once answered and libraft is done
 * with it (its apply callback ran, or it never went to libraft). */
struct req {
	struct sim *sim;
	struct req *next; /* in the sim's list of live requests */
	struct req *bnext;
	int client, node, attempt;
	struct raft_apply apply;
	bool in_raft, answered, ready;
	uint64_t entry;
};

struct node {
	struct sim *sim;
	int i;
	struct kv_engine *kv;
	struct cp_fsm fsm;
	struct raft_fsm rfsm;
	char dir[300];
	bool down;
	int64_t down_at;
	uint64_t gen;       /* restarts: callbacks of an older incarnation are ignored */
	struct req *bqueue; /* reads waiting for the next barrier */
	bool barrier_busy;
	/* agent/server.c's leader_ready, updated on its 200 ms tick: default
	 * reads are answered from the replica once it is set */
	bool leader_ready, ready_busy;
	raft_term ready_term, barrier_term;
	int64_t tick_next;
	struct raft_barrier ready_req;
	uint64_t ready_gen;
	/* the fixture's raft_io, wrapped (see "the fixture's persisted log") */
	int (*io_truncate)(struct raft_io *io, raft_index index);
	int (*io_snapshot_put)(struct raft_io *io, unsigned trailing,
	                       struct raft_io_snapshot_put *req, const struct raft_snapshot *snap,
	                       raft_io_snapshot_put_cb cb);
	int (*io_load)(struct raft_io *io, raft_term *term, raft_id *voted_for,
	               struct raft_snapshot **snap, raft_index *start, struct raft_entry **entries,
	               size_t *n);
	raft_index first; /* the index of the fixture's first persisted entry */
	/* server/raft_io.c's workaround of libraft 0.15's match index bug */
	int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
	                raft_io_recv_cb recv);
	int (*io_append)(struct raft_io *io, struct raft_io_append *req,
	                 const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
	int (*io_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
	               raft_io_send_cb cb);
	raft_io_recv_cb io_recv;
	bool in_ae;        /* libraft is handling an AppendEntries (or its append) */
	raft_index ae_end; /* ... whose prev_log_index + n_entries is this */
	struct tagged {
		struct raft_io_append *req;
		raft_io_append_cb cb;
		raft_index end;
	} tags[64];
	struct raft_io_snapshot_put *put_req; /* a snapshot put with trailing 0 */
	raft_io_snapshot_put_cb put_cb;
	raft_index put_index;
};

struct client {
	int id;
	int target; /* the server it believes leads */
	bool busy;
	enum kind kind;
	int key;
	char value[48], old[48];
	bool old_absent, cas_next, resend;
	bool consistent; /* a read: ?consistent, else the default mode */
	uint64_t cas_index;
	int64_t call_ms, give_up_ms;
	int attempt; /* events of an older attempt are ignored */
	int64_t next_ms;
	uint32_t ops;
};

struct event {
	int64_t at;
	int type; /* EV_* */
	int client, node, attempt;
	enum res res;
	bool absent;
	char value[48];
	uint64_t index;
	int hint; /* RES_REDIRECT: the leader's index, or -1 */
};
enum { EV_ARRIVE = 1, EV_REPLY, EV_TIMEOUT };

struct op_rec {
	int client;
	int key;
	enum kind kind;
	char value[48], old[48];
	bool old_absent, absent, consistent;
	enum res res;
	int64_t call, ret;
	int node;
};

struct sim {
	uint64_t seed, rng;
	enum bug bug;
	int n, nclients, nkeys;
	int default_pct; /* reads in the default mode, percent */
	bool ready_tick; /* leader_ready set on the first tick (before 2026-12-05) */
	bool clamp;      /* server/raft_io.c's workaround of libraft's bug (-clamp 1) */
	int64_t run_ms;
	uint64_t max_steps, steps;
	char base[200];
	struct raft_fixture f;
	struct node nodes[MAX_NODES];
	struct client clients[MAX_CLIENTS];
	bool cut[MAX_NODES][MAX_NODES];    /* node i cannot send to node j */
	bool ccut[MAX_CLIENTS][MAX_NODES]; /* client and node cannot talk */
	struct event *ev;
	size_t nev, capev;
	struct op_rec *ops;
	size_t nops, capops;
	struct req *reqs;
	/* the fault schedule */
	int64_t fault_next, rerand_next;
	int fault_kind;
	char faults[4096];
	size_t faults_len;
	uint64_t stat_kills, stat_partitions, stat_leaders, stat_snapshots_restored;
	uint64_t last_leader;
	bool generating;
	const char *violation;
	char error[200]; /* the first error logged (the store, the FSM) */
};

/* ------------------------------------------------------------ helpers */

static uint64_t rnd(struct sim *s)
{
	/* xorshift64*: the only source of randomness, seeded */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 2685821657736338717ULL;
}

static int rndn(struct sim *s, int n)
{
	return (int)(rnd(s) % (uint64_t)n);
}

static int64_t now(struct sim *s)
{
	return (int64_t)s->f.time;
}

static struct raft *raft_of(struct sim *s, int i)
{
	return &s->f.servers[i].raft;
}

static void fault_log(struct sim *s, const char *fmt, int a, int b)
{
	char line[128];
	int k = snprintf(line, sizeof(line), "%s%.3f ", s->faults_len ? "; " : "",
	                 (double)now(s) / 1000.0);
	snprintf(line + k, sizeof(line) - (size_t)k, fmt, a, b);
	size_t l = strlen(line);
	if (s->faults_len + l + 1 < sizeof(s->faults)) {
		memcpy(s->faults + s->faults_len, line, l + 1);
		s->faults_len += l;
	}
}

static void push_event(struct sim *s, const struct event *e)
{
	if (s->nev == s->capev) {
		s->capev = s->capev ? s->capev * 2 : 64;
		s->ev = xrealloc(s->ev, s->capev * sizeof(*s->ev));
	}
	s->ev[s->nev++] = *e;
}

static int latency(struct sim *s)
{
	return 1 + rndn(s, 3); /* client <-> server, ms */
}

static void record(struct sim *s, struct client *c, enum res res, bool absent, const char *val,
                   int node)
{
	if (s->nops == s->capops) {
		s->capops = s->capops ? s->capops * 2 : 1024;
		s->ops = xrealloc(s->ops, s->capops * sizeof(*s->ops));
	}
	struct op_rec *o = &s->ops[s->nops++];
	memset(o, 0, sizeof(*o));
	o->client = c->id;
	o->key = c->key;
	o->kind = c->kind;
	o->res = res;
	o->call = c->call_ms;
	o->ret = now(s);
	o->node = node;
	o->absent = absent;
	o->consistent = c->consistent;
	snprintf(o->value, sizeof(o->value), "%s", c->kind == K_READ ? (val ? val : "") : c->value);
	snprintf(o->old, sizeof(o->old), "%s", c->old);
	o->old_absent = c->old_absent;
}

/* ------------------------------------------------- the servers' engines */

static uint32_t io_rand(void *ctx, uint32_t n)
{
	return (uint32_t)(rnd(ctx) % n);
}

static void io_sync_arm(void *ctx, int64_t after_us)
{
	(void)ctx, (void)after_us;
}

static int64_t io_sync_left(void *ctx)
{
	(void)ctx;
	return -1;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result);
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs);
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf);

/* Open (or reopen after a crash) a server's replica, as kv_new does. */
static void engine_open(struct sim *s, struct node *n)
{
	char err[256];
	char name[16];
	snprintf(name, sizeof(name), "s%d", n->i + 1);
	struct kv_engine_config c = {.dir = n->dir, .node_name = name, .map_size = 16u << 20};
	struct kv_io io = {
	        .ctx = s, .rand = io_rand, .sync_arm = io_sync_arm, .sync_left = io_sync_left};
	n->kv = kv_engine_new(&c, &io, EPOCH_MS + now(s), err, sizeof(err));
	if (n->kv == NULL) {
		fprintf(stderr, "raftsim: %s: %s\n", n->dir, err);
		exit(2);
	}
	kv_engine_refuse_merges(n->kv, true);
	cp_fsm_init(&n->fsm, n->kv, NULL, NULL);
}

/* The batch of this step: durable, its writes answered (kv/kv.c's prepare
 * watcher does this once per loop turn). */
static void commit_all(struct sim *s)
{
	char err[256];
	for (int i = 0; i < s->n; i++)
		if (s->nodes[i].kv != NULL &&
		    kv_engine_commit(s->nodes[i].kv, EPOCH_MS + now(s), err, sizeof(err)) < 0) {
			fprintf(stderr, "raftsim: s%d: commit: %s\n", i + 1, err);
			exit(2);
		}
}

static void configure_raft(struct raft *r)
{
	/* agent/server.c's settings, with a small snapshot threshold */
	raft_set_election_timeout(r, 1000);
	raft_set_heartbeat_timeout(r, 100);
	raft_set_snapshot_threshold(r, SNAPSHOT_THRESHOLD);
	raft_set_snapshot_trailing(r, SNAPSHOT_TRAILING);
	raft_set_pre_vote(r, true);
}

/* ------------------------------------------- the fixture's persisted log */

/*
 * libraft 0.15's fixture keeps a server's persisted entries as if the first
 * were always at index 1: a snapshot installed from the leader (trailing 0)
 * empties them, and the next ones start after the snapshot, yet a later
 * truncate(index) still counts from 1 (a heap overflow); a snapshot taken
 * locally trims nothing, yet load() says the entries start after it (a
 * restarted server reads its log shifted). The fixture's tests never
 * restart a server. These wrappers keep the index of the first persisted
 * entry and translate, so a crash and restart reads back what was written.
 */
static struct node *node_of_io(struct sim *s, struct raft_io *io)
{
	for (int i = 0; i < s->n; i++)
		if (&s->f.servers[i].io == io)
			return &s->nodes[i];
	abort();
}

static struct sim *the_sim;

static int wrap_truncate(struct raft_io *io, raft_index index)
{
	struct node *n = node_of_io(the_sim, io);
	if (index <= n->first)
		return n->io_truncate(io, 1); /* everything goes; next append at index */
	return n->io_truncate(io, index - n->first + 1);
}

static void wrap_put_cb(struct raft_io_snapshot_put *req, int status)
{
	struct sim *s = the_sim;
	for (int i = 0; i < s->n; i++) {
		struct node *n = &s->nodes[i];
		if (n->put_req != req)
			continue;
		raft_io_snapshot_put_cb cb = n->put_cb;
		if (status == 0)
			n->first = n->put_index + 1; /* it emptied the log (trailing 0) */
		n->put_req = NULL;
		cb(req, status);
		return;
	}
	abort();
}

static int wrap_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req, const struct raft_snapshot *snap,
                             raft_io_snapshot_put_cb cb)
{
	struct node *n = node_of_io(the_sim, io);
	if (trailing != 0)
		return n->io_snapshot_put(io, trailing, req, snap, cb);
	if (n->put_req != NULL)
		abort(); /* libraft puts one snapshot at a time */
	n->put_req = req;
	n->put_cb = cb;
	n->put_index = snap->index;
	int rv = n->io_snapshot_put(io, trailing, req, snap, wrap_put_cb);
	if (rv != 0)
		n->put_req = NULL;
	return rv;
}

static int wrap_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                     struct raft_snapshot **snap, raft_index *start, struct raft_entry **entries,
                     size_t *n_entries)
{
	struct node *n = node_of_io(the_sim, io);
	int rv = n->io_load(io, term, voted_for, snap, start, entries, n_entries);
	if (rv != 0 || *snap == NULL || n->first >= *start || *n_entries == 0)
		return rv;
	size_t drop = (size_t)(*start - n->first); /* entries the snapshot covers */
	if (drop >= *n_entries) {
		raft_free((*entries)[0].batch);
		raft_free(*entries);
		*entries = NULL;
		*n_entries = 0;
		return 0;
	}
	struct raft_entry *kept = raft_malloc((*n_entries - drop) * sizeof(*kept));
	memcpy(kept, *entries + drop, (*n_entries - drop) * sizeof(*kept));
	raft_free(*entries);
	*entries = kept;
	*n_entries -= drop;
	return 0;
}

/*
 * The workaround of libraft 0.15's bug (docs/SIMULATION.md) that rumor's
 * server/raft_io.c applies, here on the fixture's raft_io (-clamp 0: off,
 * to see the bug). What an
 * AppendEntries checked on a follower is its log up to prev_log_index +
 * n_entries (its end); entries past that may be stale ones of an older term.
 * So (1) the leader_commit libraft sees is at most that end (else a follower
 * commits stale entries), and (2) a successful result sent while libraft
 * handles that AppendEntries, or completes the append it started for it,
 * claims at most that end as its last_log_index (else the leader counts the
 * stale entries as matching its own).
 */
static void wrap_recv(struct raft_io *io, struct raft_message *m)
{
	struct node *n = node_of_io(the_sim, io);
	if (!the_sim->clamp || m->type != RAFT_IO_APPEND_ENTRIES) {
		n->io_recv(io, m);
		return;
	}
	struct raft_append_entries *ae = &m->append_entries;
	raft_index end = ae->prev_log_index + ae->n_entries;
	if (ae->leader_commit > end)
		ae->leader_commit = end;
	n->in_ae = true;
	n->ae_end = end;
	n->io_recv(io, m);
	n->in_ae = false;
}

static int wrap_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                      raft_io_recv_cb recv)
{
	struct node *n = node_of_io(the_sim, io);
	n->io_recv = recv;
	return n->io_start(io, msecs, tick, wrap_recv);
}

static void wrap_append_cb(struct raft_io_append *req, int status)
{
	struct sim *s = the_sim;
	for (int i = 0; i < s->n; i++) {
		struct node *n = &s->nodes[i];
		for (size_t k = 0; k < sizeof(n->tags) / sizeof(n->tags[0]); k++) {
			struct tagged *t = &n->tags[k];
			if (t->req != req)
				continue;
			raft_io_append_cb cb = t->cb;
			bool was = n->in_ae;
			raft_index was_end = n->ae_end;
			n->in_ae = true;
			n->ae_end = t->end;
			t->req = NULL;
			cb(req, status);
			n->in_ae = was;
			n->ae_end = was_end;
			return;
		}
	}
	abort();
}

static int wrap_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned cnt, raft_io_append_cb cb)
{
	struct node *n = node_of_io(the_sim, io);
	if (!n->in_ae)
		return n->io_append(io, req, entries, cnt, cb);
	for (size_t k = 0; k < sizeof(n->tags) / sizeof(n->tags[0]); k++)
		if (n->tags[k].req == NULL) {
			n->tags[k] = (struct tagged){req, cb, n->ae_end};
			int rv = n->io_append(io, req, entries, cnt, wrap_append_cb);
			if (rv != 0)
				n->tags[k].req = NULL;
			return rv;
		}
	abort(); /* more appends in flight than tags */
}

static int wrap_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                     raft_io_send_cb cb)
{
	struct node *n = node_of_io(the_sim, io);
	if (n->in_ae && m->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
	    m->append_entries_result.rejected == 0 &&
	    m->append_entries_result.last_log_index > n->ae_end) {
		struct raft_message c = *m;
		c.append_entries_result.last_log_index = n->ae_end;
		return n->io_send(io, req, &c, cb);
	}
	return n->io_send(io, req, m, cb);
}

static void wrap_io(struct sim *s, int i)
{
	struct node *n = &s->nodes[i];
	struct raft_io *io = &s->f.servers[i].io;
	n->first = 1;
	n->io_truncate = io->truncate;
	n->io_snapshot_put = io->snapshot_put;
	n->io_load = io->load;
	io->truncate = wrap_truncate;
	io->snapshot_put = wrap_snapshot_put;
	io->load = wrap_load;
	n->io_start = io->start;
	n->io_append = io->append;
	n->io_send = io->send;
	io->start = wrap_start;
	io->append = wrap_append;
	io->send = wrap_send;
}

/* ------------------------------------------------------ the requests */

static void reply(struct sim *s, struct req *q, enum res res, bool absent, const char *val,
                  uint64_t index, int hint)
{
	if (q->answered)
		return;
	q->answered = true;
	struct event e = {.at = now(s) + latency(s),
	                  .type = EV_REPLY,
	                  .client = q->client,
	                  .node = q->node,
	                  .attempt = q->attempt,
	                  .res = res,
	                  .absent = absent,
	                  .index = index,
	                  .hint = hint};
	if (val != NULL)
		snprintf(e.value, sizeof(e.value), "%s", val);
	push_event(s, &e);
}

static struct req *req_new(struct sim *s, int client, int node, int attempt)
{
	struct req *q = xcalloc(1, sizeof(*q));
	q->sim = s;
	q->client = client;
	q->node = node;
	q->attempt = attempt;
	q->next = s->reqs;
	s->reqs = q;
	return q;
}

/* Free what is answered and no longer held by libraft. */
static void reqs_sweep(struct sim *s)
{
	for (struct req **pp = &s->reqs; *pp;) {
		struct req *q = *pp;
		if (q->answered && !q->in_raft) {
			*pp = q->next;
			free(q);
		} else {
			pp = &q->next;
		}
	}
}

struct read_out {
	bool found;
	char value[48];
	uint64_t index;
};

static int read_cb(void *ud, const struct kv_entry *e)
{
	struct read_out *o = ud;
	o->found = true;
	size_t n = e->value_len < sizeof(o->value) - 1 ? e->value_len : sizeof(o->value) - 1;
	memcpy(o->value, e->value, n);
	o->value[n] = '\0';
	o->index = e->modify_index;
	return 0;
}

/* Answer a read from node's replica as committed (what a GET shows). */
static void serve_local_read(struct sim *s, struct req *q)
{
	struct client *c = &s->clients[q->client];
	char key[16];
	snprintf(key, sizeof(key), "k%d", c->key);
	struct read_out o = {0};
	kv_engine_get(s->nodes[q->node].kv, key, strlen(key), read_cb, &o);
	reply(s, q, RES_VALUE, !o.found, o.value, o.found ? o.index : 0, -1);
}

/* agent/server.c's applied_done: the entry's batch committed; the request
 * waiting for that index on that server gets its answer. */
struct applied {
	struct node *n;
	uint64_t gen, index;
};

static void applied_done(void *ud, enum kv_result res, int failed_op)
{
	(void)failed_op;
	struct applied *d = ud;
	struct sim *s = d->n->sim;
	if (d->gen == d->n->gen)
		for (struct req *q = s->reqs; q; q = q->next)
			if (q->node == d->n->i && q->entry == d->index && !q->answered) {
				reply(s, q,
				      res == KV_OK       ? RES_OK
				      : res == KV_FAILED ? RES_FAIL
				                         : RES_UNKNOWN,
				      false, NULL, 0, -1);
				break;
			}
	free(d);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct node *n = fsm->data;
	*result = NULL;
	struct applied *d = xcalloc(1, sizeof(*d));
	d->n = n;
	d->gen = n->gen;
	d->index = raft_last_applied(raft_of(n->sim, n->i)) + 1;
	if (getenv("RAFTSIM_TRACE")) {
		static struct cp_entry e;
		char err[100];
		if (cp_wire_entry_decode(buf->base, buf->len, &e, err, sizeof(err)) == 0)
			fprintf(stderr,
			        "%.3f s%d apply %" PRIu64 " %s %.*s=%.*s idx %" PRIu64
			        " applied %" PRIu64 "\n",
			        (double)now(n->sim) / 1000, n->i + 1, d->index, e.node,
			        (int)e.ops.op[0].key_len, e.ops.op[0].key,
			        (int)e.ops.op[0].value_len, (const char *)e.ops.op[0].value,
			        e.ops.op[0].index, n->fsm.applied);
	}
	if (!cp_fsm_apply(&n->fsm, d->index, buf->base, buf->len, applied_done, d))
		free(d);
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	uint8_t *p;
	size_t len;
	int rv = cp_fsm_snapshot(&n->fsm, &p, &len);
	if (rv != 0)
		return rv;
	*bufs = raft_malloc(sizeof(**bufs));
	(*bufs)[0].base = p;
	(*bufs)[0].len = len;
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	int rv = cp_fsm_restore(&n->fsm, buf->base, buf->len);
	raft_free(buf->base);
	n->sim->stat_snapshots_restored++;
	return rv;
}

static void apply_cb(struct raft_apply *a, int status, void *result)
{
	(void)result;
	struct req *q = a->data;
	q->in_raft = false;
	if (status != 0) /* leadership lost: it may or may not commit */
		reply(q->sim, q, RES_UNKNOWN, false, NULL, 0, -1);
}

static int leader_hint(struct sim *s, int i)
{
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(raft_of(s, i), &id, &addr);
	return id == 0 ? -1 : (int)id - 1;
}

/* agent/server.c's propose(): stamp, encode, raft_apply. */
static void propose(struct sim *s, struct req *q)
{
	struct node *n = &s->nodes[q->node];
	struct client *c = &s->clients[q->client];
	char key[16], who[16];
	snprintf(key, sizeof(key), "k%d", c->key);
	snprintf(who, sizeof(who), "c%d", c->id);
	struct kv_op op = {c->kind == K_CAS ? KV_OP_CAS : KV_OP_SET,
	                   key,
	                   strlen(key),
	                   c->value,
	                   strlen(c->value),
	                   0,
	                   c->kind == K_CAS ? c->cas_index : 0,
	                   NULL,
	                   0};
	struct raft_buffer buf;
	buf.len = cp_wire_entry_size(who, &op, 1);
	buf.base = raft_malloc(buf.len);
	uint64_t base = cp_fsm_base(&n->fsm, kv_engine_next_version(n->kv, EPOCH_MS + now(s)));
	cp_wire_entry_encode(buf.base, base, who, &op, 1);
	q->apply.data = q;
	int rv = raft_apply(raft_of(s, q->node), &q->apply, &buf, 1, apply_cb);
	if (rv != 0) {
		raft_free(buf.base);
		reply(s, q, RES_REDIRECT, false, NULL, 0, leader_hint(s, q->node));
		return;
	}
	q->in_raft = true;
	q->entry = q->apply.index;
}

/* ?consistent reads share barriers as agent/server.c's do: a read waits for
 * the next barrier issued after it arrived. */
struct batch {
	struct raft_barrier req;
	struct node *n;
	uint64_t gen;
	struct req *reads;
};

static void barrier_issue(struct sim *s, struct node *n);

static void batch_cb(struct raft_barrier *b, int status)
{
	struct batch *bb = b->data;
	struct node *n = bb->n;
	struct sim *s = n->sim;
	struct req *next;
	for (struct req *q = bb->reads; q; q = next) {
		next = q->bnext;
		q->in_raft = false;
		if (status != 0)
			reply(s, q, RES_READ_FAILED, false, NULL, 0, -1);
		else
			q->ready = true; /* served after this step's commit */
	}
	bool same = bb->gen == n->gen;
	free(bb);
	if (!same)
		return;
	n->barrier_busy = false;
	if (status != 0) {
		/* as agent/server.c: no barrier from inside libraft's step-down
		 * (issuing one here crashed libraft: its progress is freed) */
		struct req *qs = n->bqueue;
		n->bqueue = NULL;
		for (struct req *q = qs; q; q = next) {
			next = q->bnext;
			q->in_raft = false;
			reply(s, q, RES_READ_FAILED, false, NULL, 0, -1);
		}
		return;
	}
	if (!n->down)
		barrier_issue(s, n);
}

static void barrier_issue(struct sim *s, struct node *n)
{
	if (n->bqueue == NULL || n->barrier_busy)
		return;
	struct batch *bb = xcalloc(1, sizeof(*bb));
	bb->n = n;
	bb->gen = n->gen;
	bb->reads = n->bqueue;
	n->bqueue = NULL;
	bb->req.data = bb;
	if (raft_barrier(raft_of(s, n->i), &bb->req, batch_cb) != 0) {
		struct req *next;
		for (struct req *q = bb->reads; q; q = next) {
			next = q->bnext;
			q->in_raft = false;
			reply(s, q, RES_REDIRECT, false, NULL, 0, leader_hint(s, n->i));
		}
		free(bb);
		return;
	}
	n->barrier_busy = true;
}

/* Reads whose barrier completed, once the step's batch committed. */
static void serve_ready(struct sim *s)
{
	for (struct req *q = s->reqs; q; q = q->next)
		if (q->ready && !q->answered) {
			q->ready = false;
			serve_local_read(s, q);
		}
}

/* A client's request arrives at server i. */
static void arrive(struct sim *s, const struct event *e)
{
	struct client *c = &s->clients[e->client];
	struct node *n = &s->nodes[e->node];
	struct req *q = req_new(s, e->client, e->node, e->attempt);
	if (c->kind == K_READ && s->bug == BUG_FOLLOWER_READ) {
		serve_local_read(s, q); /* PLANTED: any server, its replica, no barrier */
		return;
	}
	if (raft_state(raft_of(s, n->i)) != RAFT_LEADER) {
		reply(s, q, RES_REDIRECT, false, NULL, 0, leader_hint(s, n->i));
		return;
	}
	if (c->kind != K_READ) {
		if (!n->leader_ready) { /* server.c holds it until the leader is ready */
			reply(s, q, RES_REDIRECT, false, NULL, 0, n->i);
			return;
		}
		propose(s, q);
		return;
	}
	if (s->bug == BUG_NO_BARRIER) {
		serve_local_read(s, q); /* PLANTED: the leader's replica, no barrier */
		return;
	}
	if (!c->consistent && n->leader_ready) {
		q->ready = true; /* default mode: the replica, after this step's commit */
		return;
	}
	q->in_raft = true;
	q->bnext = n->bqueue;
	n->bqueue = q;
	barrier_issue(s, n);
}

/* -------------------------------------------------------- the clients */

static void client_send(struct sim *s, struct client *c)
{
	c->attempt++;
	int to = c->target;
	if (c->kind == K_READ && s->bug == BUG_FOLLOWER_READ)
		to = rndn(s, s->n);
	struct event e = {.at = now(s) + latency(s),
	                  .type = EV_ARRIVE,
	                  .client = c->id,
	                  .node = to,
	                  .attempt = c->attempt};
	push_event(s, &e);
	struct event t = {.at = now(s) + FORWARD_TIMEOUT_MS,
	                  .type = EV_TIMEOUT,
	                  .client = c->id,
	                  .node = to,
	                  .attempt = c->attempt};
	push_event(s, &t);
}

static void client_start(struct sim *s, struct client *c)
{
	c->busy = true;
	c->call_ms = now(s);
	c->give_up_ms = now(s) + NO_LEADER_WAIT_MS;
	c->ops++;
	if (c->cas_next) {
		c->cas_next = false;
		c->kind = K_CAS;
	} else {
		c->key = rndn(s, s->nkeys);
		int x = rndn(s, 100);
		c->kind = x < 30 ? K_PUT : x < 55 ? K_CAS : K_READ;
		if (c->kind == K_CAS) { /* read the value and its index first */
			c->kind = K_READ;
			c->cas_next = true;
		}
	}
	c->consistent = rndn(s, 100) >= s->default_pct;
	snprintf(c->value, sizeof(c->value), "k%d-c%d-%u", c->key, c->id, c->ops);
	client_send(s, c);
}

static void client_idle(struct sim *s, struct client *c, int64_t think)
{
	c->busy = false;
	c->resend = false;
	c->next_ms = now(s) + think;
}

/* Not applied (refused, redirected, no leader): again, or give up at the
 * deadline (a write left out of the history, as "No cluster leader"). */
static void client_retry(struct sim *s, struct client *c, int hint)
{
	if (now(s) >= c->give_up_ms) {
		c->cas_next = false;
		client_idle(s, c, 50);
		return;
	}
	bool same = hint == c->target; /* a leader not ready yet: again soon */
	c->target = hint >= 0 ? hint : rndn(s, s->n);
	c->next_ms = now(s) + (hint < 0 ? 100 : same ? 50 : 0);
	c->attempt++;     /* the old attempt's events are ignored from now */
	c->resend = true; /* by client_tick */
}

static void client_done(struct sim *s, struct client *c, const struct event *e)
{
	if (c->kind == K_READ) {
		if (e->res == RES_VALUE) {
			record(s, c, RES_VALUE, e->absent, e->value, e->node);
			if (c->cas_next) { /* CAS on what was read */
				c->cas_index = e->absent ? 0 : e->index;
				c->old_absent = e->absent;
				snprintf(c->old, sizeof(c->old), "%s", e->value);
				client_idle(s, c, 0);
				return;
			}
		} else {
			c->cas_next = false;
		}
		client_idle(s, c, rndn(s, 20));
		return;
	}
	record(s, c, e->res, false, NULL, e->node);
	client_idle(s, c, rndn(s, 20));
}

static void client_event(struct sim *s, const struct event *e)
{
	struct client *c = &s->clients[e->client];
	if (!c->busy || e->attempt != c->attempt)
		return; /* an older attempt's */
	bool cut = s->ccut[c->id][e->node] || s->nodes[e->node].down;
	if (e->type == EV_ARRIVE) {
		if (cut) { /* never arrived: certainly not applied */
			client_retry(s, c, -1);
			return;
		}
		arrive(s, e);
		return;
	}
	if (e->type == EV_TIMEOUT || (e->type == EV_REPLY && s->ccut[c->id][e->node])) {
		/* the request arrived, its answer did not */
		if (c->kind == K_READ) {
			c->cas_next = false;
		} else {
			record(s, c, RES_UNKNOWN, false, NULL, e->node);
		}
		client_idle(s, c, 20);
		return;
	}
	if (e->res == RES_REDIRECT || (e->res == RES_READ_FAILED && now(s) < c->give_up_ms)) {
		client_retry(s, c, e->res == RES_REDIRECT ? e->hint : -1);
		return;
	}
	if (e->res == RES_READ_FAILED) {
		c->cas_next = false;
		client_idle(s, c, 20);
		return;
	}
	client_done(s, c, e);
}

/* Client timers: start an operation, or send a retry. */
static void client_tick(struct sim *s)
{
	for (int i = 0; i < s->nclients; i++) {
		struct client *c = &s->clients[i];
		if (c->next_ms > now(s))
			continue;
		if (c->busy && c->resend) {
			c->resend = false;
			client_send(s, c);
		} else if (!c->busy && s->generating) {
			client_start(s, c);
		} else {
			continue;
		}
		c->next_ms = INT64_MAX;
	}
}

/* Events due by now, in time order. */
static void run_events(struct sim *s)
{
	for (;;) {
		size_t best = s->nev;
		for (size_t i = 0; i < s->nev; i++)
			if (s->ev[i].at <= now(s) &&
			    (best == s->nev || s->ev[i].at < s->ev[best].at))
				best = i;
		if (best == s->nev)
			return;
		struct event e = s->ev[best];
		s->ev[best] = s->ev[--s->nev];
		client_event(s, &e);
	}
}

/* When a server crashes, the requests it holds lose their connection. */
static void drop_requests_at(struct sim *s, int i)
{
	for (struct req *q = s->reqs; q; q = q->next)
		if (q->node == i && !q->answered) {
			q->answered = true;
			q->ready = false;
			struct event e = {.at = now(s) + latency(s),
			                  .type = EV_TIMEOUT,
			                  .client = q->client,
			                  .node = i,
			                  .attempt = q->attempt};
			push_event(s, &e);
		}
	for (struct req *q = s->nodes[i].bqueue; q; q = q->bnext)
		q->in_raft = false; /* queued, not yet in a barrier */
	s->nodes[i].bqueue = NULL;
}

/* ------------------------------------------------------------- faults */

enum { F_NONE, F_ISOLATE_LEADER, F_SPLIT, F_ONEWAY, F_CLIENTS, F_KILL_LEADER, F_KILL_ANY, F_N };

/* The links as s->cut says, between servers that are up (the fixture
 * saturates every link of a killed server itself, and revive undoes that
 * for every live peer). */
static void reconcile(struct sim *s)
{
	for (int i = 0; i < s->n; i++)
		for (int j = 0; j < s->n; j++) {
			if (i == j || s->nodes[i].down || s->nodes[j].down)
				continue;
			bool have = raft_fixture_saturated(&s->f, (unsigned)i, (unsigned)j);
			if (s->cut[i][j] && !have)
				raft_fixture_saturate(&s->f, (unsigned)i, (unsigned)j);
			else if (!s->cut[i][j] && have)
				raft_fixture_desaturate(&s->f, (unsigned)i, (unsigned)j);
		}
}

/* The server in RAFT_LEADER state with the highest term, or a random one. */
static int some_leader(struct sim *s, bool *found)
{
	int best = -1;
	raft_term term = 0;
	for (int i = 0; i < s->n; i++) {
		struct raft *r = raft_of(s, i);
		if (!s->nodes[i].down && raft_state(r) == RAFT_LEADER && r->current_term >= term) {
			best = i;
			term = r->current_term;
		}
	}
	*found = best >= 0;
	return best >= 0 ? best : rndn(s, s->n);
}

static void kill_node(struct sim *s, int i)
{
	raft_fixture_kill(&s->f, (unsigned)i);
	s->nodes[i].down = true;
	s->nodes[i].down_at = now(s);
	drop_requests_at(s, i);
	s->stat_kills++;
}

/* A crash and a restart: libraft closed and started again from what the
 * fixture's raft_io persisted (term, vote, log, snapshot); the replica
 * closed and reopened from its directory. The node has been down for at
 * least a second, so every I/O request it had queued has completed. */
static void restart_node(struct sim *s, int i)
{
	struct node *n = &s->nodes[i];
	struct raft_fixture_server *fs = &s->f.servers[i];
	raft_close(&fs->raft, NULL); /* fails its pending applies and barriers */
	n->gen++;
	n->barrier_busy = false;
	n->leader_ready = n->ready_busy = false;
	n->barrier_term = 0;
	kv_engine_free(n->kv);
	n->kv = NULL;
	engine_open(s, n);
	if (raft_init(&fs->raft, &fs->io, &n->rfsm, fs->id, fs->address) != 0) {
		fprintf(stderr, "raftsim: s%d: raft_init: %s\n", i + 1, raft_errmsg(&fs->raft));
		exit(2);
	}
	configure_raft(&fs->raft);
	if (raft_start(&fs->raft) != 0) {
		fprintf(stderr, "raftsim: s%d: raft_start: %s\n", i + 1, raft_errmsg(&fs->raft));
		exit(2);
	}
	n->down = false;
	raft_fixture_revive(&s->f, (unsigned)i);
	reconcile(s);
}

static void heal(struct sim *s)
{
	memset(s->cut, 0, sizeof(s->cut));
	memset(s->ccut, 0, sizeof(s->ccut));
	for (int i = 0; i < s->n; i++)
		if (s->nodes[i].down)
			restart_node(s, i);
	reconcile(s);
}

static void fault_start(struct sim *s)
{
	bool leading;
	int kind = 1 + rndn(s, F_N - 1);
	int l = some_leader(s, &leading);
	switch (kind) {
	case F_ISOLATE_LEADER:
		for (int j = 0; j < s->n; j++)
			s->cut[l][j] = s->cut[j][l] = j != l;
		fault_log(s, "isolate s%d%s", l + 1, 0);
		if (!leading)
			fault_log(s, "(no leader: s%d picked)", l + 1, 0);
		break;
	case F_SPLIT: {
		unsigned mask = 1u + (unsigned)rndn(s, (1 << s->n) - 2);
		for (int i = 0; i < s->n; i++)
			for (int j = 0; j < s->n; j++)
				s->cut[i][j] = ((mask >> i) & 1) != ((mask >> j) & 1);
		fault_log(s, "split %#x", (int)mask, 0);
		break;
	}
	case F_ONEWAY: {
		bool out = rndn(s, 2);
		for (int j = 0; j < s->n; j++) {
			if (out)
				s->cut[l][j] = j != l;
			else
				s->cut[j][l] = j != l;
		}
		fault_log(s, out ? "s%d cannot send" : "s%d cannot receive", l + 1, 0);
		break;
	}
	case F_CLIENTS:
		for (int c = 0; c < s->nclients; c++)
			for (int j = 0; j < s->n; j++)
				s->ccut[c][j] = rndn(s, 2);
		fault_log(s, "clients cut from some servers", 0, 0);
		break;
	case F_KILL_LEADER:
	case F_KILL_ANY:
		if (kind == F_KILL_ANY)
			l = rndn(s, s->n);
		kill_node(s, l);
		fault_log(s, "crash s%d", l + 1, 0);
		break;
	}
	if (kind != F_KILL_LEADER && kind != F_KILL_ANY && kind != F_CLIENTS)
		s->stat_partitions++;
	reconcile(s);
	s->fault_kind = kind;
	for (int i = 0; i < s->n; i++) {
		raft_fixture_set_network_latency(&s->f, (unsigned)i, 5 + (unsigned)rndn(s, 25));
		raft_fixture_set_disk_latency(&s->f, (unsigned)i, 2 + (unsigned)rndn(s, 12));
	}
}

/* Alternate: a fault for 1-4 s, then everything healed for 0.5-2 s. */
static void faults_tick(struct sim *s)
{
	if (now(s) >= s->rerand_next) {
		/* libraft draws its election timeout from io->random; the fixture
		 * answers a set value, so it is drawn again here */
		for (int i = 0; i < s->n; i++)
			raft_fixture_set_randomized_election_timeout(
			        &s->f, (unsigned)i, 1000 + (unsigned)rndn(s, 1000));
		s->rerand_next = now(s) + RERANDOMISE_MS;
	}
	if (now(s) < s->fault_next || !s->generating)
		return;
	if (s->fault_kind != F_NONE) {
		heal(s);
		fault_log(s, "heal", 0, 0);
		s->fault_kind = F_NONE;
		s->fault_next = now(s) + 500 + rndn(s, 1500);
		return;
	}
	fault_start(s);
	s->fault_next = now(s) + 1000 + rndn(s, 3000);
}

/* agent/server.c's tick (every 200 ms on each server): a leader becomes
 * "ready" — default reads answered from its replica — once a barrier of its
 * term has committed (everything earlier terms committed is then applied
 * here); with -ready tick, at its first tick as leader, as server.c did
 * before 2026-12-05 (stale default reads). Writes wait for it too. */
static void ready_cb(struct raft_barrier *b, int status)
{
	struct node *n = b->data;
	if (n->ready_gen != n->gen)
		return;
	n->ready_busy = false;
	if (status == 0)
		n->barrier_term = n->ready_term;
}

static void ready_tick(struct sim *s)
{
	for (int i = 0; i < s->n; i++) {
		struct node *n = &s->nodes[i];
		struct raft *r = raft_of(s, i);
		if (n->down || now(s) < n->tick_next)
			continue;
		n->tick_next = now(s) + 200;
		if (raft_state(r) != RAFT_LEADER) {
			n->leader_ready = false;
			continue;
		}
		if (n->leader_ready && !s->ready_tick && n->barrier_term != r->current_term)
			n->leader_ready = false; /* lost and won again between two ticks */
		if (n->leader_ready)
			continue;
		if (s->ready_tick || n->barrier_term == r->current_term) {
			n->leader_ready = true;
		} else if (!n->ready_busy) {
			n->ready_req.data = n;
			n->ready_gen = n->gen;
			n->ready_term = r->current_term;
			n->ready_busy = raft_barrier(r, &n->ready_req, ready_cb) == 0;
		}
	}
}

/* ---------------------------------------------------------- the run */

static void step_once(struct sim *s)
{
	raft_fixture_step(&s->f);
	s->steps++;
	if (s->f.leader_id != 0 && s->f.leader_id != s->last_leader) {
		s->last_leader = s->f.leader_id;
		s->stat_leaders++;
	}
	commit_all(s);
	serve_ready(s);
	run_events(s);
	client_tick(s);
	ready_tick(s);
	faults_tick(s);
	for (int i = 0; i < s->n && s->violation == NULL; i++)
		if (!s->nodes[i].down && raft_state(raft_of(s, i)) == RAFT_UNAVAILABLE) {
			/* libraft shuts itself down when a leader sends an entry that
			 * conflicts with one it counted as committed */
			fprintf(stderr, "raftsim: seed %" PRIu64 ": s%d shut down at %.3f s\n",
			        s->seed, i + 1, (double)now(s) / 1000.0);
			s->violation =
			        "a server's Raft shut down (a committed entry was overwritten)";
		}
	if (s->steps % 64 == 0)
		reqs_sweep(s);
}

static bool clients_busy(struct sim *s)
{
	for (int i = 0; i < s->nclients; i++)
		if (s->clients[i].busy)
			return true;
	return false;
}

static void final_barrier_cb(struct raft_barrier *b, int status)
{
	*(int *)b->data = status == 0 ? 1 : -1;
}

/* After the final heal: a leader, a barrier, every server applied as much
 * as the leader; then every replica must hold the same records. */
static void converge(struct sim *s)
{
	for (int round = 0; round < 20 && s->steps < s->max_steps; round++) {
		int64_t until = now(s) + 5000;
		while (s->f.leader_id == 0 && now(s) < until && s->steps < s->max_steps)
			step_once(s);
		if (s->f.leader_id == 0)
			continue;
		int li = (int)s->f.leader_id - 1;
		struct raft_barrier b;
		int done = 0;
		b.data = &done;
		if (raft_barrier(raft_of(s, li), &b, final_barrier_cb) != 0)
			continue;
		while (done == 0 && s->steps < s->max_steps)
			step_once(s);
		if (done < 0)
			continue;
		raft_index want = raft_last_applied(raft_of(s, li));
		/* a lagging server may need a snapshot whose first send was lost:
		 * libraft sends it again after install_snapshot_timeout (30 s) */
		until = now(s) + 65000;
		for (;;) {
			bool all = true;
			for (int i = 0; i < s->n; i++)
				all = all && raft_last_applied(raft_of(s, i)) >= want;
			if (all || now(s) >= until || s->steps >= s->max_steps)
				break;
			step_once(s);
		}
		commit_all(s);
		for (int i = 0; i < s->n && s->violation == NULL; i++)
			if (raft_last_applied(raft_of(s, i)) < want) {
				/* libraft 0.15: a follower that answered a heartbeat with
				 * its own longer log (entries of an older term) is counted
				 * as matching them, and its rejections are then ignored */
				fprintf(stderr,
				        "raftsim: seed %" PRIu64 ": s%d applied %" PRIu64
				        " of %" PRIu64 " after a minute\n",
				        s->seed, i + 1, (uint64_t)raft_last_applied(raft_of(s, i)),
				        (uint64_t)want);
				s->violation = "a server never caught up with the leader";
			}
		return;
	}
	if (s->violation != NULL)
		return;
	fprintf(stderr, "raftsim: leader %d; states", (int)s->f.leader_id);
	for (int i = 0; i < s->n; i++)
		fprintf(stderr, " s%d %d term %llu", i + 1, raft_state(raft_of(s, i)),
		        (unsigned long long)raft_of(s, i)->current_term);
	fprintf(stderr, "\n");
	s->violation = "no leader applied a final barrier after healing";
}

static int print_rec(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	fprintf(stderr, "  s%d %.*s = %.*s version %" PRIu64 " by %.*s%s\n", *(int *)ud,
	        (int)key_len, key, (int)r->value_len, (const char *)r->value, r->hlc,
	        (int)r->node_len, r->node, r->tomb ? " (tombstone)" : "");
	return 0;
}

/* What each replica holds, and how far Raft got there (on a difference). */
static void print_replicas(struct sim *s)
{
	for (int i = 0; i < s->n; i++) {
		struct raft *r = raft_of(s, i);
		int id = i + 1;
		fprintf(stderr, "  s%d: last applied %" PRIu64 ", snapshot %" PRIu64 "\n", id,
		        (uint64_t)raft_last_applied(r), (uint64_t)r->log.snapshot.last_index);
		kv_engine_dump(s->nodes[i].kv, print_rec, &id);
	}
}

static void compare_replicas(struct sim *s)
{
	uint8_t *p0 = NULL;
	size_t l0 = 0;
	for (int i = 0; i < s->n && s->violation == NULL; i++) {
		uint8_t *p;
		size_t l;
		if (cp_fsm_snapshot(&s->nodes[i].fsm, &p, &l) != 0) {
			s->violation = "a replica could not be dumped";
			break;
		}
		if (i == 0) {
			p0 = p, l0 = l;
			continue;
		}
		if (l != l0 || memcmp(p, p0, l) != 0) {
			fprintf(stderr,
			        "raftsim: seed %" PRIu64 ": s1 and s%d differ (%zu / %zu bytes)\n",
			        s->seed, i + 1, l0, l);
			s->violation = "the replicas differ after healing";
			print_replicas(s);
		}
		raft_free(p);
	}
	raft_free(p0);
}

/* ------------------------------------------------------------- output */

static void json_str(FILE *o, const char *v, bool null)
{
	if (null)
		fputs("null", o);
	else
		fprintf(o, "\"%s\"", v); /* values are [a-z0-9-] */
}

static const char *bug_name(enum bug b)
{
	return b == BUG_FOLLOWER_READ ? "follower-read"
	       : b == BUG_NO_BARRIER  ? "no-barrier"
	                              : "none";
}

/* The history in the form tests/raftsim/check.py hands to linearize.py:
 * times in seconds of virtual time, "ret": null when the outcome is
 * unknown, a CAS's "arg" [old (null: absent), new], a read's "res" the
 * value (null: absent). */
static void write_json(struct sim *s, FILE *o)
{
	fprintf(o,
	        "{\"seed\": %" PRIu64 ", \"bug\": \"%s\", \"servers\": %d, \"clients\": %d, "
	        "\"keys\": %d, \"virtual_seconds\": %.3f, \"steps\": %" PRIu64
	        ", \"leader_changes\": %" PRIu64 ", \"crashes\": %" PRIu64
	        ", \"partitions\": %" PRIu64 ", \"snapshots_restored\": %" PRIu64 ",\n",
	        s->seed, bug_name(s->bug), s->n, s->nclients, s->nkeys, (double)now(s) / 1000.0,
	        s->steps, s->stat_leaders, s->stat_kills, s->stat_partitions,
	        s->stat_snapshots_restored);
	fprintf(o, " \"violation\": ");
	json_str(o, s->violation ? s->violation : "", s->violation == NULL);
	fprintf(o, ",\n \"faults\": \"%s\",\n \"ops\": [", s->faults);
	for (size_t i = 0; i < s->nops; i++) {
		const struct op_rec *r = &s->ops[i];
		static const char *kinds[] = {"put", "cas", "read"};
		fprintf(o, "%s\n  {\"p\": %d, \"key\": \"k%d\", \"kind\": \"%s\", \"arg\": ",
		        i ? "," : "", r->client, r->key, kinds[r->kind]);
		if (r->kind == K_PUT) {
			json_str(o, r->value, false);
		} else if (r->kind == K_CAS) {
			fputc('[', o);
			json_str(o, r->old, r->old_absent);
			fputs(", ", o);
			json_str(o, r->value, false);
			fputc(']', o);
		} else {
			fputs("null", o);
		}
		fputs(", \"res\": ", o);
		if (r->kind == K_READ)
			json_str(o, r->value, r->absent);
		else if (r->res == RES_OK)
			fputs("\"ok\"", o);
		else if (r->res == RES_FAIL && r->kind == K_CAS)
			fputs("\"fail\"", o);
		else
			fputs("\"unknown\"", o);
		bool unknown = r->kind != K_READ && r->res != RES_OK && r->res != RES_FAIL;
		fprintf(o, ", \"call\": %.3f, \"ret\": ", (double)r->call / 1000.0);
		if (unknown)
			fputs("null", o);
		else
			fprintf(o, "%.3f", (double)r->ret / 1000.0);
		fprintf(o, ", \"node\": \"s%d%s\"}", r->node + 1,
		        r->kind == K_READ && !r->consistent ? " default" : "");
	}
	fprintf(o, "\n]}\n");
}

/* ------------------------------------------------------------- set-up */

static void usage(void)
{
	fprintf(stderr, "usage: raftsim [-seed N] [-bug none|follower-read|no-barrier] "
	                "[-servers 3..5] [-clients N] [-keys N] [-seconds S] "
	                "[-max-steps N] [-default-reads PCT] [-ready barrier|tick] [-clamp 0|1] "
	                "[-o FILE]\n");
	exit(2);
}

static void parse_args(struct sim *s, int argc, char **argv, const char **out)
{
	s->seed = 1;
	s->n = 3;
	s->nclients = 4;
	s->nkeys = 3;
	s->run_ms = 20000;
	s->max_steps = 2000000;
	s->clamp = true; /* as server/raft_io.c does */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "-seed") == 0)
			s->seed = strtoull(v, NULL, 10);
		else if (strcmp(a, "-servers") == 0)
			s->n = atoi(v);
		else if (strcmp(a, "-clients") == 0)
			s->nclients = atoi(v);
		else if (strcmp(a, "-keys") == 0)
			s->nkeys = atoi(v);
		else if (strcmp(a, "-seconds") == 0)
			s->run_ms = (int64_t)(atof(v) * 1000.0);
		else if (strcmp(a, "-max-steps") == 0)
			s->max_steps = strtoull(v, NULL, 10);
		else if (strcmp(a, "-o") == 0)
			*out = v;
		else if (strcmp(a, "-default-reads") == 0)
			s->default_pct = atoi(v);
		else if (strcmp(a, "-clamp") == 0)
			s->clamp = atoi(v) != 0;
		else if (strcmp(a, "-ready") == 0)
			s->ready_tick = strcmp(v, "tick") == 0;
		else if (strcmp(a, "-bug") == 0)
			s->bug = strcmp(v, "follower-read") == 0 ? BUG_FOLLOWER_READ
			         : strcmp(v, "no-barrier") == 0  ? BUG_NO_BARRIER
			         : strcmp(v, "none") == 0        ? BUG_NONE
			                                         : (usage(), BUG_NONE);
		else
			usage();
	}
	if (s->n < 3 || s->n > MAX_NODES || s->nclients < 1 || s->nclients > MAX_CLIENTS ||
	    s->nkeys < 1 || s->nkeys > MAX_KEYS || s->run_ms <= 0)
		usage();
	s->rng = s->seed * 0x9e3779b97f4a7c15ULL + 1;
}

static void setup(struct sim *s)
{
	const char *shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(s->base, sizeof(s->base), "%s/rumor-raftsim-XXXXXX", shm);
	if (mkdtemp(s->base) == NULL) {
		fprintf(stderr, "raftsim: mkdtemp %s: %s\n", s->base, strerror(errno));
		exit(2);
	}
	if (raft_fixture_initialize(&s->f) != 0)
		exit(2);
	for (int i = 0; i < s->n; i++) {
		struct node *n = &s->nodes[i];
		n->sim = s;
		n->i = i;
		snprintf(n->dir, sizeof(n->dir), "%s/s%d", s->base, i + 1);
		engine_open(s, n);
		n->rfsm = (struct raft_fsm){.version = 1,
		                            .data = n,
		                            .apply = fsm_apply,
		                            .snapshot = fsm_snapshot,
		                            .restore = fsm_restore};
		if (raft_fixture_grow(&s->f, &n->rfsm) != 0)
			exit(2);
		wrap_io(s, i);
		configure_raft(raft_of(s, i));
		raft_fixture_set_randomized_election_timeout(&s->f, (unsigned)i,
		                                             1000 + (unsigned)rndn(s, 1000));
	}
	struct raft_configuration conf;
	if (raft_fixture_configuration(&s->f, (unsigned)s->n, &conf) != 0 ||
	    raft_fixture_bootstrap(&s->f, &conf) != 0 || raft_fixture_start(&s->f) != 0)
		exit(2);
	raft_configuration_close(&conf);
	for (int i = 0; i < s->n; i++)
		s->nodes[i].tick_next = rndn(s, 200);
	for (int c = 0; c < s->nclients; c++) {
		s->clients[c].id = c;
		s->clients[c].target = rndn(s, s->n);
		s->clients[c].next_ms = rndn(s, 200);
	}
	s->fault_next = 1500 + rndn(s, 1000);
}

static void teardown(struct sim *s)
{
	raft_fixture_close(&s->f); /* fails whatever libraft still holds */
	for (int i = 0; i < s->n; i++)
		kv_engine_free(s->nodes[i].kv);
	for (struct req *q = s->reqs, *next; q; q = next) {
		next = q->next;
		free(q);
	}
	free(s->ev);
	free(s->ops);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->base);
	if (system(cmd) != 0)
		fprintf(stderr, "raftsim: could not remove %s\n", s->base);
}

/* An error logged by the FSM or the store (an entry refused, a snapshot
 * that does not restore) fails the run: every replica must apply every
 * entry alike, and a store error here is the environment's, not a pass. */
static void on_log(void *ud, const struct log_record *r)
{
	struct sim *s = ud;
	if (s->error[0] == '\0')
		snprintf(s->error, sizeof(s->error), "%s", r->msg);
}

int main(int argc, char **argv)
{
	static struct sim sim;
	struct sim *s = &sim;
	const char *out = NULL;
	the_sim = s;
	parse_args(s, argc, argv, &out);
	log_set_level(LOG_WARN);
	log_subscribe(on_log, s, LOG_ERR);
	setup(s);
	s->generating = true;
	while (now(s) < s->run_ms && s->steps < s->max_steps)
		step_once(s);
	s->generating = false;
	/* the operations in flight finish (or time out) */
	int64_t until = now(s) + FORWARD_TIMEOUT_MS + 1000;
	while (clients_busy(s) && now(s) < until && s->steps < s->max_steps)
		step_once(s);
	/* a crashed server stays down a second at least (restart_node) */
	for (int i = 0; i < s->n; i++)
		while (s->nodes[i].down && now(s) < s->nodes[i].down_at + 1000 &&
		       s->steps < s->max_steps)
			step_once(s);
	heal(s);
	fault_log(s, "final heal", 0, 0);
	converge(s);
	if (s->violation == NULL)
		compare_replicas(s);
	if (s->violation == NULL && s->error[0] != '\0')
		s->violation = s->error;
	FILE *o = out ? fopen(out, "w") : stdout;
	if (o == NULL) {
		fprintf(stderr, "raftsim: %s: %s\n", out, strerror(errno));
		return 2;
	}
	write_json(s, o);
	if (o != stdout)
		fclose(o);
	fprintf(stderr,
	        "raftsim: seed %" PRIu64 " bug %s: %zu ops, %.1f virtual s, %" PRIu64
	        " steps, %" PRIu64 " leader changes, %" PRIu64 " crashes, %" PRIu64
	        " partitions, %" PRIu64 " snapshots restored%s%s\n",
	        s->seed, bug_name(s->bug), s->nops, (double)now(s) / 1000.0, s->steps,
	        s->stat_leaders, s->stat_kills, s->stat_partitions, s->stat_snapshots_restored,
	        s->violation ? ": " : "", s->violation ? s->violation : "");
	bool bad = s->violation != NULL;
	teardown(s);
	log_unsubscribe(on_log, s);
	log_ring_clear();
	return bad ? 1 : 0;
}
