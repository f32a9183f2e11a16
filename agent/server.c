/*
 * agent/server.c — see server.h.
 *
 * Servers. A server's Raft id is the first 64 bits of its node ID (the
 * "id" tag every agent gossips), its address the advertise address and the
 * sync port ("ip:port"); both are derived the same way by every member, so
 * a configuration can be written from membership alone.
 *
 * Bootstrap: a server with an empty Raft store waits. When it sees a
 * server that has been in a group with a leader (tag raft=1) it starts empty and
 * waits for the leader to add it. Otherwise, once it sees bootstrap_expect
 * live servers with the same expect tag (itself included), every one of
 * them bootstraps the same configuration (all of them, as voters, in id
 * order) and starts: libraft elects a leader. -bootstrap is expect 1.
 *
 * Autopilot (the leader, every tick, one change at a time): a live server
 * not in the configuration is added, as a voter while there are fewer than
 * SERVER_MAX_VOTERS voters, else as a standby; a server that left is
 * removed; one failed for longer than SERVER_DEAD_AFTER_MS is removed when
 * the voters that stay still hold a quorum.
 *
 * The FSM (agent/cp_fsm.c): every server applies each committed entry to
 * its replica with pinned versions, so all servers write the same records;
 * the first entry a fresh group applies empties the replica first, and the
 * leader's first entries re-import what its AP replica held
 * (docs/SERVERS.md). A snapshot is the whole replica, taken off the loop:
 * dumped on server/raft_io.c's worker thread from an LMDB read transaction
 * (struct snap_take below).
 *
 * Writes. With servers seen, kv_write() goes to cp_write(): on the leader
 * it is proposed at once; elsewhere it is sent (server RPC, CP_M_WRITE) to
 * the leader (a server) or to a server (a client), which proposes or
 * forwards it once more. The request is answered after the entry is
 * applied and the leader's replica committed it.
 */
#define _GNU_SOURCE
#include "agent/server.h"

#include <ev.h>
#include <inttypes.h>
#include <pthread.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "agent/cp_fsm.h"
#include "agent/cp_wire.h"
#include "agent/env.h"
#include "agent/server_rpc.h"
#include "gossip/swim.h"
#include "gossip/tags.h"
#include "gossip/transport.h"
#include "gossip/wire.h"
#include "kv/kv.h"
#include "kv/store.h"
#include "lib/cursor.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "agent/sessions.h"
#include "server/raft_io.h"
#include "server/raft_store.h"

#define SERVER_MAX_VOTERS 5
#define SERVER_DEAD_AFTER_MS 30000
#define SERVER_LEFT_AFTER_MS 10000
#define SERVER_TICK_S 0.2
/* a client that knows of no server (serverless) only looks for servers to
 * appear: once a second, not five times (a wakeup each, on every agent) */
#define SERVER_IDLE_TICK_S 1.0
#define ELECTION_MS 1000
#define HEARTBEAT_MS 100
#define RAFT_TICK_MS 10 /* libraft's timers checked this often (raft_io_config) */
/* a follower that finds its leader's port closed starts an election after
 * a random delay in [GONE_MIN_MS, GONE_MAX_MS) (rpc_peer_down) */
#define GONE_MIN_MS 10
#define GONE_MAX_MS 160
#define SNAPSHOT_THRESHOLD 8192
#define SNAPSHOT_TRAILING 2048
#define FORWARD_TIMEOUT_MS 7000 /* Consul's RPC hold timeout */
#define NO_LEADER_WAIT_MS 5000  /* a server holds a write this long for a leader */
#define MAX_KNOWN 64
#define CP_MAX_WAITING 8192 /* writes held or in flight on this agent */

struct known {
	char name[128];
	uint64_t id;
	char addr[64];
	int expect;
	bool has_raft;
	uint8_t state;
	int64_t state_change;
};

/* A write waiting for its answer: done(ud, r, failed_op), once. */
struct cp_req {
	struct server *s;
	struct cp_req *next;
	kv_done_fn done;
	void *ud;
	/* where the answer goes when it came over server RPC */
	uint64_t conn_id, req_id;
	bool remote;
	uint8_t *body; /* the WRITE request bytes (for forwarding) */
	size_t body_len;
	int64_t deadline_ms;
	struct raft_apply apply;
	raft_index entry; /* of its entry, once proposed */
	enum { R_HELD, R_PROPOSED, R_FORWARDED, R_SETTLED } phase;
	bool answered;
	/* a follower relaying the leader's reply as it came */
	uint8_t *relay;
	size_t relay_len;
	uint8_t relay_status;
	bool resend_ok; /* idempotent (the agent's own records): sent again on any loss */
	uint8_t method; /* CP_M_WRITE, or CP_M_RESTORE (body: a RESTORE request) */
};

/*
 * A Raft snapshot being taken (libraft takes one at a time). fsm_snapshot, in
 * the loop, only notes the index; take_prepare, in the loop after kv/kv.c has
 * committed the turn's batch, checkpoints LMDB and opens a reader on it;
 * fsm_snapshot_async, on server/raft_io.c's worker thread, waits for that
 * reader and dumps the store from it; fsm_snapshot_finalize, in the loop,
 * frees the dump and closes the reader. What the two threads share:
 *   mu guards phase, rd;
 *   cancel is atomic (set when the server closes: the worker gives up);
 *   index, and the worker's results (took_ms, bad, applied, err), are
 *   handed over by raft_io's own lock: index is written before the job is
 *   queued, the results read after its callback ran in the loop;
 *   the dump buffer is libraft's pending snapshot, the same way.
 * Nothing else of the server is read by the worker.
 */
struct snap_take {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum { TAKE_IDLE, TAKE_WAIT, TAKE_READY, TAKE_FAILED } phase; /* under mu */
	struct kv_store_reader *rd;                                   /* under mu */
	bool cancel;                                                  /* __atomic */
	uint64_t index; /* libraft's snapshot index (its last applied) */
	ev_prepare prep;
	double started;
	/* the worker's results */
	double took_ms;
	uint64_t bad, applied;
	const char *err;
};

struct server {
	struct agent *a;
	struct ev_loop *loop;
	bool is_server;
	uint64_t id;
	char addr[64];
	struct server_rpc *rpc;
	ev_timer tick;
	ev_timer quick; /* every 10 ms while writes are held or a new leader is not serving */
	/* Raft (servers) */
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	bool raft_started, raft_closing, raft_closed;
	bool change_busy;
	bool leader_ready; /* this leader has run leader_start() */
	/* a new leader is ready once a barrier of its term has committed */
	struct raft_barrier ready_req;
	bool ready_busy;
	raft_term ready_term, ready_asked;
	/* tag raft=1: this server has been in a group with a leader (sticky);
	 * not merely started, so servers bootstrapping together do not see
	 * each other's tag and skip their own bootstrap */
	bool raft_tagged;
	/* a client in a serverless cluster stops its tick (tick_cb) until a
	 * member event may bring a server (server_member_event) */
	bool tick_parked;
	/* the leader whose port refused a connection (rpc_peer_down), and when */
	raft_id gone_leader;
	raft_time gone_at;
	/* ?consistent reads: the queue for the next barrier, one in flight */
	struct server_read *bqueue;
	bool barrier_busy;
	/* ... and for the next leadership confirmation, one in flight */
	struct server_read *cqueue;
	bool confirm_busy;
	/* servers removed from the configuration, and when (gossip's clock):
	 * one is not added back until gossip shows it change state after that
	 * (it restarted), or a server killed and removed by hand would be added
	 * again while gossip still thinks it alive */
	struct removed {
		uint64_t id;
		int64_t at;
	} removed[16];
	size_t nremoved;
	struct cp_fsm fsm_state; /* the state machine (agent/cp_fsm.h) */
	struct snap_take take;   /* the Raft snapshot being taken, if any */
	/* pending writes */
	struct cp_req *waiting; /* held for a leader, or proposed */
	/* membership as gossip shows it */
	struct known known[MAX_KNOWN];
	size_t nknown;
	uint64_t known_gen; /* swim_members_gen at the last scan_members, plus one */
	int64_t known_ms;   /* when scan_members last ran */
	bool cp;
	int64_t leader_seen_ms;
	struct sessions *sessions; /* TTL timers, lock delays (servers) */
	struct server_info_counters {
		uint64_t forwarded;
	} c;
};

static int64_t now_ms(struct server *s)
{
	return (int64_t)(ev_now(s->loop) * 1000.0);
}

/* ---------------------------------------------------------- identity */

/* The Raft id of a node ID: its first 16 hex digits (never 0). */
static uint64_t raft_id_of(const char *node_id)
{
	uint64_t v = 0;
	int digits = 0;
	for (const char *p = node_id; *p && digits < 16; p++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			continue;
		v = (v << 4) | (uint64_t)d;
		digits++;
	}
	return v ? v : 1;
}

/* "ip:port" of a member's address with its server RPC port (gossip's own
 * formatter: IPv4, v4-mapped, or "[v6]:port"). */
static void format_addr(const struct ml_addr *ip, int port, char *buf, size_t cap)
{
	struct ml_addr a = *ip;
	a.port = (uint16_t)port;
	ml_addr_str(&a, buf, cap);
}

/* ------------------------------------------------------ membership */

static const char *tag_get(const struct tag *t, int n, const char *k)
{
	for (int i = 0; i < n; i++)
		if (strcmp(t[i].key, k) == 0)
			return t[i].value;
	return NULL;
}

/* Refresh s->known from the gossip members whose tags say role=consul,
 * only when the member list changed, and decoding only the tags of members
 * whose meta holds "consul": decoding every member's tags five times a second
 * was a quarter of the CPU of a 1,000-agent cluster forming on one machine,
 * and members change all through a join storm (docs/PERFORMANCE.md "Join
 * storms"). For the same reason a scan waits 2 ms per member after the
 * previous one (2 s at 1,000 or more, a tick at 3 servers): walking the
 * member table is cache misses even when no tags are decoded. */
/* A server's tags hold the bytes "consul" (role=consul): a member whose meta
 * does not is passed over without decoding its tags. */
static bool may_be_server(const struct swim_member *m)
{
	return m->id->meta_len != 0 && memmem(m->id->meta, m->id->meta_len, "consul", 6) != NULL;
}

static void scan_members(struct server *s)
{
	struct swim *sw = gossip_transport_swim(s->a->gossip);
	if (s->known_gen == swim_members_gen(sw) + 1)
		return;
	size_t n = swim_member_count(sw);
	int64_t now = now_ms(s), gap = n < 1000 ? 2 * (int64_t)n : 2000;
	if (s->known_gen != 0 && now - s->known_ms < gap)
		return;
	s->known_gen = swim_members_gen(sw) + 1;
	s->known_ms = now;
	static struct tag tags[TAGS_MAX];
	s->nknown = 0;
	for (size_t i = 0; i < n && s->nknown < MAX_KNOWN; i++) {
		const struct swim_member *m = swim_member_at(sw, i);
		if (!may_be_server(m))
			continue;
		int nt = tags_decode(m->id->meta, m->id->meta_len, tags, TAGS_MAX);
		const char *role = tag_get(tags, nt, "role");
		const char *id = tag_get(tags, nt, "id");
		const char *port = tag_get(tags, nt, "port");
		if (role == NULL || strcmp(role, "consul") != 0 || id == NULL || port == NULL)
			continue;
		struct known *k = &s->known[s->nknown++];
		snprintf(k->name, sizeof(k->name), "%s", m->id->name);
		k->id = raft_id_of(id);
		format_addr(&m->id->addr, atoi(port), k->addr, sizeof(k->addr));
		const char *ex = tag_get(tags, nt, "expect");
		k->expect = ex ? atoi(ex) : 0;
		const char *r = tag_get(tags, nt, "raft");
		k->has_raft = r != NULL && strcmp(r, "1") == 0;
		k->state = m->state;
		k->state_change = m->state_change;
	}
}

static const struct known *known_by_id(const struct server *s, uint64_t id)
{
	for (size_t i = 0; i < s->nknown; i++)
		if (s->known[i].id == id)
			return &s->known[i];
	return NULL;
}

size_t server_tags(const struct server *s, struct tag *tags, size_t n)
{
	if (s == NULL || !s->is_server)
		return n;
	for (size_t i = 0; i < n; i++)
		if (strcmp(tags[i].key, "role") == 0)
			snprintf(tags[i].value, sizeof(tags[i].value), "consul");
	int expect = s->a->cfg.bootstrap ? 1 : s->a->cfg.bootstrap_expect;
	const char *kv[SERVER_TAGS_MAX][2];
	char port[16], ex[16];
	snprintf(port, sizeof(port), "%d", kv_sync_port(s->a->kv));
	snprintf(ex, sizeof(ex), "%d", expect);
	size_t k = 0;
	kv[k][0] = "port", kv[k++][1] = port;
	if (expect > 0)
		kv[k][0] = "expect", kv[k++][1] = ex;
	kv[k][0] = "raft_vsn", kv[k++][1] = "3";
	if (s->raft_tagged)
		kv[k][0] = "raft", kv[k++][1] = "1";
	for (size_t i = 0; i < k; i++) {
		snprintf(tags[n].key, sizeof(tags[n].key), "%s", kv[i][0]);
		snprintf(tags[n].value, sizeof(tags[n].value), "%s", kv[i][1]);
		n++;
	}
	return n;
}

/* -------------------------------------------------------- transport */

static int transport_send(void *ctx, raft_id to, const char *address, const uint8_t *buf,
                          size_t len)
{
	(void)to;
	struct server *s = ctx;
	return server_rpc_send_raft(s->rpc, address, buf, len);
}

static void rpc_raft(void *ctx, uint64_t from_id, const char *from_addr, const uint8_t *p, size_t n)
{
	struct server *s = ctx;
	char err[200];
	if (!s->raft_started || s->raft_closing)
		return;
	if (raft_io_deliver(&s->io, from_id, from_addr, p, n, err, sizeof(err)) < 0)
		log_debug("server: raft message from %s: %s", from_addr, err);
}

void server_adopt(void *ctx, int fd, const char *peer, const uint8_t *buf, size_t len)
{
	struct server *s = ctx;
	server_rpc_adopt(s->rpc, fd, peer, buf, len);
}

/* -------------------------------------------------------------- FSM */

/* The state machine itself is agent/cp_fsm.c; this is libraft's side of it
 * and the link from an applied entry back to the request waiting for it. */

struct fsm_done {
	struct server *s;
	raft_index index;
};

static struct cp_req *req_by_index(struct server *s, raft_index index)
{
	for (struct cp_req *r = s->waiting; r; r = r->next)
		if (r->entry == index && r->phase != R_HELD && !r->answered)
			return r;
	return NULL;
}

static void req_answer(struct cp_req *r, enum kv_result res, int failed_op);

static void applied_done(void *ud, enum kv_result res, int failed_op)
{
	struct fsm_done *d = ud;
	struct cp_req *r = req_by_index(d->s, d->index);
	if (r != NULL)
		req_answer(r, res, failed_op);
	free(d);
}

static void fsm_before_op(void *ctx, const struct kv_op *op)
{
	struct server *s = ctx;
	sessions_before_end(s->sessions, op);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct server *s = fsm->data;
	*result = NULL;
	struct fsm_done *d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->index = raft_last_applied(&s->raft) + 1;
	if (!cp_fsm_apply(&s->fsm_state, d->index, buf->base, buf->len, applied_done, d))
		free(d);
	return 0;
}

/* ---- snapshots, off the loop (struct snap_take) ---- */

/*
 * The snapshot of index N must hold the state after entry N (never less: a
 * follower installing it gets the entries after N only). LMDB's last
 * checkpoint holds it once the batch that applied N is committed and
 * checkpointed; that is done here. It may hold more: entries applied after
 * N in later turns of the loop, when libraft asked in one turn and this runs
 * in a later one. That is safe: the state after M > N is the state after N
 * with N+1..M applied, the dump carries M in CP_APPLIED_KEY, and a server
 * restoring it skips the entries up to M when libraft replays them
 * (cp_fsm_apply). Runs after kv/kv.c's prepare watcher (lower priority).
 */
static void take_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct server *s = w->data;
	struct snap_take *t = &s->take;
	struct kv_store *st = kv_engine_store(kv_engine_of(s->a->kv));
	char err[256];
	if (kv_store_in_txn(st))
		return; /* a batch opened after kv's commit: the next turn */
	ev_prepare_stop(loop, w);
	struct kv_store_reader *rd = NULL;
	double t0 = ev_time();
	/* failures: the store logs its own (rate-limited); libraft tries again
	 * at a later apply, so these stay at debug */
	if (kv_store_dirty(st) && kv_store_checkpoint(st, err, sizeof(err)) < 0)
		log_debug("server: snapshot: %s", err);
	else if (kv_store_dirty(st))
		log_debug("server: snapshot: the store's checkpoint is deferred after a failure");
	else if ((rd = kv_store_reader_open(st, err, sizeof(err))) == NULL)
		log_debug("server: snapshot: %s", err);
	double ms = (ev_time() - t0) * 1000.0;
	if (ms > 20)
		log_info("server: snapshot: checkpoint and reader in %.1f ms (in the loop)", ms);
	pthread_mutex_lock(&t->mu);
	t->rd = rd;
	t->phase = rd != NULL ? TAKE_READY : TAKE_FAILED;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

/* In the loop: only notes the index and asks take_prepare for a reader. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct server *s = fsm->data;
	struct snap_take *t = &s->take;
	*bufs = NULL;
	*n_bufs = 0;
	pthread_mutex_lock(&t->mu);
	bool idle = t->phase == TAKE_IDLE;
	if (idle)
		t->phase = TAKE_WAIT;
	pthread_mutex_unlock(&t->mu);
	if (!idle)
		return RAFT_BUSY; /* libraft tries again later */
	t->index = raft_last_applied(&s->raft);
	t->started = ev_time();
	t->took_ms = 0;
	t->bad = t->applied = 0;
	t->err = NULL;
	ev_prepare_start(s->loop, &t->prep);
	return 0;
}

struct take_dump {
	struct cp_dump d;
	struct snap_take *t;
	bool failed; /* the scan stopped early (closing, out of memory): no snapshot */
};

static int take_record(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct take_dump *td = ud;
	if (__atomic_load_n(&td->t->cancel, __ATOMIC_RELAXED)) {
		td->failed = true;
		return -1;
	}
	if (key_len == strlen(CP_APPLIED_KEY) && memcmp(key, CP_APPLIED_KEY, key_len) == 0) {
		char v[32];
		size_t vl = r->value_len < sizeof(v) - 1 ? r->value_len : sizeof(v) - 1;
		memcpy(v, r->value, vl);
		v[vl] = '\0';
		td->t->applied = strtoull(v, NULL, 10);
	}
	if (cp_dump_record(&td->d, key, key_len, r) < 0) {
		td->failed = true;
		return -1;
	}
	return 0;
}

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/*
 * On raft_io's worker thread. Waits (bounded) for take_prepare's reader, then
 * dumps every record as cp_fsm_snapshot lays them out (u32 count, then the
 * records). Reads only the reader and struct snap_take; logs nothing (the
 * loop logs the outcome in finalize).
 */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct server *s = fsm->data;
	struct snap_take *t = &s->take;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&t->mu);
	while (t->phase == TAKE_WAIT && !__atomic_load_n(&t->cancel, __ATOMIC_RELAXED))
		if (pthread_cond_timedwait(&t->cv, &t->mu, &until) != 0)
			break;
	struct kv_store_reader *rd = t->phase == TAKE_READY ? t->rd : NULL;
	pthread_mutex_unlock(&t->mu);
	if (rd == NULL) {
		t->err = "no reader (checkpoint failed, or closing)";
		return RAFT_IOERR;
	}
	double t0 = mono_ms();
	struct take_dump td = {{raft_malloc(1 << 20), 4, 1 << 20, 0}, t, false};
	/* a scan that stopped early is never a snapshot: it would lack records */
	if (td.d.p == NULL || kv_store_reader_scan(rd, take_record, &td) < 0 || td.failed) {
		raft_free(td.d.p);
		t->err = __atomic_load_n(&t->cancel, __ATOMIC_RELAXED) ? "closing"
		                                                       : "the dump failed";
		return RAFT_NOMEM;
	}
	t->bad = kv_store_reader_bad(rd);
	if (t->applied < t->index) {
		/* never less than N (see take_prepare) */
		raft_free(td.d.p);
		t->err = "the checkpoint is behind the snapshot's index";
		return RAFT_IOERR;
	}
	be32_put(td.d.p, td.d.n);
	*bufs = raft_malloc(sizeof(**bufs));
	if (*bufs == NULL) {
		raft_free(td.d.p);
		t->err = "out of memory";
		return RAFT_NOMEM;
	}
	/* give back what the doubling left unused: it stays until the put is done */
	uint8_t *shrunk = raft_realloc(td.d.p, td.d.len);
	(*bufs)[0].base = shrunk != NULL ? shrunk : td.d.p;
	(*bufs)[0].len = td.d.len;
	*n_bufs = 1;
	t->took_ms = mono_ms() - t0;
	return 0;
}

/* In the loop, always after a successful fsm_snapshot (libraft's contract):
 * frees the dump, closes the reader, logs what the worker did. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct server *s = fsm->data;
	struct snap_take *t = &s->take;
	size_t len = 0;
	if (*bufs != NULL) {
		for (unsigned i = 0; i < *n_bufs; i++) {
			len += (*bufs)[i].len;
			raft_free((*bufs)[i].base);
		}
		raft_free(*bufs);
		*bufs = NULL;
		*n_bufs = 0;
	}
	ev_prepare_stop(s->loop, &t->prep);
	pthread_mutex_lock(&t->mu);
	struct kv_store_reader *rd = t->rd;
	t->rd = NULL;
	t->phase = TAKE_IDLE;
	pthread_mutex_unlock(&t->mu);
	kv_store_reader_close(kv_engine_store(kv_engine_of(s->a->kv)), rd);
	if (t->err != NULL)
		log_debug("server: snapshot at index %" PRIu64 " not taken: %s", t->index, t->err);
	else
		log_info("server: snapshot at index %" PRIu64 " (state at %" PRIu64
		         "): %zu bytes, dumped in %.1f ms on the worker thread, %.1f ms in all",
		         t->index, t->applied, len, t->took_ms, (ev_time() - t->started) * 1000.0);
	if (t->bad > 0)
		log_warn("server: snapshot: %" PRIu64 " bad records left out", t->bad);
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct server *s = fsm->data;
	double t0 = ev_time();
	/* the records go straight to LMDB and kv/kv.c's commit this turn is a
	 * checkpoint (kv_store_begin_unlogged): written once, not twice */
	if (kv_store_begin_unlogged(kv_engine_store(kv_engine_of(s->a->kv))) < 0) {
		raft_free(buf->base);
		return RAFT_IOERR;
	}
	int rv = cp_fsm_restore(&s->fsm_state, buf->base, buf->len);
	log_info("server: snapshot of %zu bytes restored in %.1f ms", buf->len,
	         (ev_time() - t0) * 1000.0);
	raft_free(buf->base);
	return rv;
}

/* ----------------------------------------------------- the requests */

static void req_free_if_done(struct cp_req *r)
{
	if (!r->answered || r->phase == R_PROPOSED || r->phase == R_FORWARDED)
		return; /* libraft holds r->apply, or server RPC will call back */
	struct server *s = r->s;
	for (struct cp_req **pp = &s->waiting; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	free(r->body);
	free(r->relay);
	free(r);
}

/* u64 applied index, then the RECORDS body of the keys r wrote (committed,
 * tombstones included), so the asking agent can show its own write at
 * once; past CP_REPLY_RECORDS_MAX the body is left out (count 0). */
static void reply_records(struct server *s, struct cp_req *r, struct cp_dump *d)
{
	static struct cp_ops ops;
	char node[KV_NODE_MAX + 1], err[200];
	if (d->cap < d->len + 12) {
		d->cap = d->len + 4096;
		d->p = raft_realloc(d->p, d->cap);
	}
	be64_put(d->p + d->len, s->fsm_state.applied);
	d->len += 8;
	size_t count_at = d->len;
	d->len += 4;
	d->n = 0;
	if (cp_wire_write_decode(r->body, r->body_len, node, &ops, err, sizeof(err)) == 0)
		for (size_t i = 0; i < ops.n && d->len < CP_REPLY_RECORDS_MAX; i++) {
			const struct kv_op *op = &ops.op[i];
			if (op->verb == KV_OP_CHECK_INDEX || op->verb == KV_OP_CHECK_NOT_EXISTS)
				continue;
			kv_records(s->a->kv, op->key, op->key_len, op->verb == KV_OP_DELETE_TREE,
			           cp_dump_record, d);
		}
	if (d->len >= CP_REPLY_RECORDS_MAX) {
		d->len = count_at + 4;
		d->n = 0;
	}
	be32_put(d->p + count_at, d->n);
}

static uint8_t status_of(enum kv_result res)
{
	switch (res) {
	case KV_OK:
		return CP_S_OK;
	case KV_FAILED:
		return CP_S_FAILED;
	case KV_NO_LEADER:
		return CP_S_NO_LEADER;
	case KV_UNKNOWN:
		return CP_S_UNKNOWN;
	default:
		return CP_S_ERROR;
	}
}

static void req_answer(struct cp_req *r, enum kv_result res, int failed_op)
{
	if (r->answered)
		return;
	r->answered = true;
	if (r->remote && r->relay != NULL) {
		server_rpc_reply(r->s->rpc, r->conn_id, r->req_id, r->relay_status, r->relay,
		                 r->relay_len);
	} else if (r->remote) {
		struct cp_dump d = {raft_malloc(4096), 0, 4096, 0};
		be32_put(d.p, failed_op < 0 ? 0xffffffffu : (uint32_t)failed_op);
		d.len = 4;
		if (res == KV_OK)
			reply_records(r->s, r, &d);
		server_rpc_reply(r->s->rpc, r->conn_id, r->req_id, status_of(res), d.p, d.len);
		raft_free(d.p);
	} else if (r->done != NULL) {
		r->done(r->ud, res, failed_op);
	} else if (res != KV_OK) {
		log_warn("server: a write of this agent's own records (the catalog) was dropped: "
		         "%s",
		         res == KV_NO_LEADER ? "no cluster leader" : "not applied");
	}
	req_free_if_done(r);
}

static bool is_leader(struct server *s)
{
	return s->raft_started && !s->raft_closing && raft_state(&s->raft) == RAFT_LEADER;
}

/* A leader that may propose and serve reads: a barrier of its current term
 * has committed (leader_ready_check). The term is compared here, not only
 * at the tick, so a leader that lost and won again between two ticks never
 * counts the barrier of its earlier term. */
static bool leader_serving(struct server *s)
{
	return is_leader(s) && s->leader_ready && s->ready_term == s->raft.current_term;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	(void)result;
	struct cp_req *r = req->data;
	r->phase = R_SETTLED; /* libraft is done with r->apply */
	if (status != 0) {
		/* leadership lost: the entry may or may not commit */
		log_warn("server: a write's entry %" PRIu64 " was not confirmed: %s",
		         (uint64_t)r->entry, raft_strerror(status));
		req_answer(r, KV_UNKNOWN, -1);
		return;
	}
	req_free_if_done(r);
}

static void propose_buf(struct server *s, struct cp_req *r, struct raft_buffer *buf)
{
	r->apply.data = r;
	int rv = raft_apply(&s->raft, &r->apply, buf, 1, apply_cb);
	if (rv != 0) {
		raft_free(buf->base);
		r->phase = R_SETTLED;
		req_answer(r, rv == RAFT_NOTLEADER ? KV_NO_LEADER : KV_ERROR, -1);
		return;
	}
	r->phase = R_PROPOSED;
	r->entry = r->apply.index;
	s->c.forwarded += r->remote;
}

/* A RESTORE request becomes a restore entry (nothing to check first). */
static int restore_entry(struct server *s, struct cp_req *r, struct raft_buffer *buf)
{
	char node[KV_NODE_MAX + 1], err[200];
	const uint8_t *body;
	size_t len;
	if (cp_wire_restore_decode(r->body, r->body_len, node, &body, &len, err, sizeof(err)) < 0) {
		log_warn("server: a restore request does not decode: %s", err);
		return -1;
	}
	uint64_t base = cp_fsm_base(&s->fsm_state, kv_next_version(s->a->kv));
	buf->len = cp_wire_restore_entry_size(node, len);
	buf->base = raft_malloc(buf->len);
	cp_wire_restore_entry_encode(buf->base, base, node, body, len);
	return 0;
}

static void propose(struct server *s, struct cp_req *r)
{
	static struct cp_ops ops;
	char node[KV_NODE_MAX + 1], err[200];
	if (r->method == CP_M_RESTORE) {
		struct raft_buffer rb;
		if (restore_entry(s, r, &rb) < 0) {
			req_answer(r, KV_ERROR, -1);
			return;
		}
		propose_buf(s, r, &rb);
		return;
	}
	if (cp_wire_write_decode(r->body, r->body_len, node, &ops, err, sizeof(err)) < 0) {
		log_warn("server: a forwarded write does not decode: %s", err);
		req_answer(r, KV_ERROR, -1);
		return;
	}
	/* Consul checks the lock delay on the leader, before Raft */
	for (size_t i = 0; i < ops.n; i++)
		if (ops.op[i].verb == KV_OP_LOCK &&
		    sessions_lock_delay_left(s->sessions, ops.op[i].key, ops.op[i].key_len) > 0) {
			req_answer(r, KV_FAILED, (int)i);
			return;
		}
	struct raft_buffer buf;
	buf.len = cp_wire_entry_size(node, ops.op, ops.n);
	buf.base = raft_malloc(buf.len);
	uint64_t base = cp_fsm_base(&s->fsm_state, kv_next_version(s->a->kv));
	cp_wire_entry_encode(buf.base, base, node, ops.op, ops.n);
	propose_buf(s, r, &buf);
}

static void forward(struct server *s, struct cp_req *r, const char *addr);

static const char *pick_server(struct server *s);
static void quick_start(struct server *s);

/* Send r where it can be served now, or leave it held for the quick
 * timer and the tick: the leader proposes it; another server sends it to the leader; a client to
 * any live server, which passes it on. */
static void submit(struct server *s, struct cp_req *r)
{
	if (s->is_server && leader_serving(s)) {
		propose(s, r);
		return;
	}
	const char *to = pick_server(s);
	if (to != NULL) {
		forward(s, r, to);
		return;
	}
	if (now_ms(s) >= r->deadline_ms)
		req_answer(r, KV_NO_LEADER, -1);
	else
		quick_start(s); /* held: tried again in 10 ms */
}

static void merged_done(void *ud, enum kv_result res, int failed_op)
{
	(void)res, (void)failed_op;
	req_answer(ud, KV_OK, -1);
}

static void forward_reply(void *ud, int status, const uint8_t *p, size_t n)
{
	struct cp_req *r = ud;
	r->phase = R_HELD;
	if (status == CP_S_OK || status == CP_S_FAILED) {
		int failed = -1;
		if (n >= 4 && be32_get(p) != 0xffffffffu)
			failed = (int)be32_get(p);
		if (r->remote) { /* relay the leader's answer as it is */
			r->relay = xmalloc(n ? n : 1);
			memcpy(r->relay, p, n);
			r->relay_len = n;
			r->relay_status = (uint8_t)status;
		} else if (status == CP_S_OK && n > 12 && !r->s->is_server) {
			/* a client: show the write here before answering */
			char err[200];
			r->phase = R_SETTLED;
			if (kv_merge_body(r->s->a->kv, p + 12, n - 12, merged_done, r, err,
			                  sizeof(err)) == 0)
				return;
			log_debug("server: records of a write do not merge: %s", err);
		}
		req_answer(r, status == CP_S_OK ? KV_OK : KV_FAILED, failed);
		return;
	}
	/* Sent again only when it certainly was not applied: a server said
	 * there is no leader, or it never left this agent. A connection lost
	 * or a timeout after sending leaves the outcome unknown (a CAS sent
	 * twice would fail the second time after succeeding the first). */
	bool unsent = status == CP_S_NO_LEADER || status == SERVER_RPC_E_UNSENT ||
	              (r->resend_ok && status != CP_S_ERROR && status != CP_S_TOO_BIG);
	if (unsent && now_ms(r->s) < r->deadline_ms) {
		quick_start(r->s); /* held: sent again within 10 ms */
		return;
	}
	req_answer(r, unsent ? KV_NO_LEADER : status == CP_S_ERROR ? KV_ERROR : KV_UNKNOWN, -1);
}

static void forward(struct server *s, struct cp_req *r, const char *addr)
{
	if (r->remote && !s->is_server) {
		req_answer(r, KV_ERROR, -1);
		return;
	}
	r->phase = R_FORWARDED;
	if (server_rpc_call(s->rpc, addr, r->method == CP_M_RESTORE ? CP_M_RESTORE : CP_M_WRITE,
	                    r->body, r->body_len, FORWARD_TIMEOUT_MS, forward_reply, r) < 0) {
		r->phase = R_HELD;
		quick_start(s);
	}
}

static struct cp_req *req_new(struct server *s)
{
	struct cp_req *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->deadline_ms = now_ms(s) + NO_LEADER_WAIT_MS;
	r->next = s->waiting;
	s->waiting = r;
	return r;
}

/* kv_write() in CP mode (struct kv_cp). */
static int cp_write(void *ctx, const struct kv_op *ops, size_t n, kv_done_fn done, void *ud,
                    char *err, size_t errlen)
{
	struct server *s = ctx;
	const char *node = s->a->cfg.node_name;
	size_t len = cp_wire_write_size(node, ops, n);
	size_t held = 0;
	for (struct cp_req *w = s->waiting; w; w = w->next)
		held++;
	if (held >= CP_MAX_WAITING) {
		snprintf(err, errlen, "%zu writes wait for the leader already", held);
		return -1;
	}
	if (len > KV_FRAME_MAX) {
		snprintf(err, errlen, "the request is %zu bytes, over %u", len, KV_FRAME_MAX);
		return -1;
	}
	struct cp_req *r = req_new(s);
	r->done = done;
	r->ud = ud;
	if (done == NULL) {
		/* the agent's own records (the catalog): nobody waits for them,
		 * so they wait for a leader as long as it takes, and (each is a
		 * whole document, written again as it is) may be sent twice */
		r->deadline_ms = INT64_MAX;
		r->resend_ok = true;
	}
	r->body = xmalloc(len);
	r->body_len = cp_wire_write_encode(r->body, node, ops, n);
	submit(s, r);
	return 0;
}

/* Requests held for a leader: try again, or give up at their deadline. */
static void retry_held(struct server *s)
{
	struct cp_req *next;
	for (struct cp_req *r = s->waiting; r; r = next) {
		next = r->next;
		if (!r->answered && r->phase == R_HELD)
			submit(s, r);
	}
}

/* -------------------------------------------------- RPC: the server */

static void rpc_read(struct server *s, uint64_t conn_id, uint64_t req_id, uint8_t method,
                     const uint8_t *p, size_t n);

static void rpc_renew(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                      size_t n);
static void rpc_snapshot(struct server *s, uint64_t conn_id, uint64_t req_id);
static void rpc_remove_peer(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                            size_t n);
static void rpc_leads(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                      size_t n);

static void rpc_request(void *ctx, uint64_t conn_id, uint64_t req_id, uint8_t method,
                        const char *from_node, const uint8_t *p, size_t n)
{
	(void)from_node;
	struct server *s = ctx;
	if (!s->is_server) {
		server_rpc_reply(s->rpc, conn_id, req_id, CP_S_ERROR, NULL, 0);
		return;
	}
	if (method == CP_M_READ || method == CP_M_READ_CONSISTENT || method == CP_M_STATUS) {
		rpc_read(s, conn_id, req_id, method, p, n);
		return;
	}
	if (method == CP_M_RENEW) {
		rpc_renew(s, conn_id, req_id, p, n);
		return;
	}
	if (method == CP_M_SNAPSHOT) {
		rpc_snapshot(s, conn_id, req_id);
		return;
	}
	if (method == CP_M_REMOVE_PEER) {
		rpc_remove_peer(s, conn_id, req_id, p, n);
		return;
	}
	if (method == CP_M_LEADS) {
		rpc_leads(s, conn_id, req_id, p, n);
		return;
	}
	if (method != CP_M_WRITE && method != CP_M_RESTORE) {
		server_rpc_reply(s->rpc, conn_id, req_id, CP_S_ERROR, NULL, 0);
		return;
	}
	struct cp_req *r = req_new(s);
	r->remote = true;
	r->method = method;
	r->conn_id = conn_id;
	r->req_id = req_id;
	r->body = xmalloc(n ? n : 1);
	memcpy(r->body, p, n);
	r->body_len = n;
	submit(s, r);
}

/* ------------------------------------------------- the leader's work */

struct import {
	struct server *s;
	struct kv_op op[KV_TXN_MAX_OPS - 1];
	uint8_t *copy[KV_TXN_MAX_OPS - 1];
	size_t n, total;
};

static void import_flush(struct import *im)
{
	if (im->n == 0)
		return;
	struct cp_req *r = req_new(im->s);
	const char *node = im->s->a->cfg.node_name;
	size_t len = cp_wire_write_size(node, im->op, im->n);
	r->body = xmalloc(len);
	r->body_len = cp_wire_write_encode(r->body, node, im->op, im->n);
	propose(im->s, r);
	for (size_t i = 0; i < im->n; i++)
		free(im->copy[i]);
	im->total += im->n;
	im->n = 0;
}

static int import_cb(void *ud, const struct kv_entry *e)
{
	struct import *im = ud;
	if (e->key_len == strlen(CP_APPLIED_KEY) && memcmp(e->key, CP_APPLIED_KEY, e->key_len) == 0)
		return 0;
	uint8_t *c = xmalloc(e->key_len + e->value_len + 1);
	memcpy(c, e->key, e->key_len);
	if (e->value_len)
		memcpy(c + e->key_len, e->value, e->value_len);
	im->copy[im->n] = c;
	im->op[im->n++] = (struct kv_op){KV_OP_SET,
	                                 (const char *)c,
	                                 e->key_len,
	                                 c + e->key_len,
	                                 e->value_len,
	                                 e->flags,
	                                 0,
	                                 NULL,
	                                 0};
	if (im->n == KV_TXN_MAX_OPS - 1)
		import_flush(im);
	return 0;
}

/*
 * The first leader of a fresh group imports its AP replica: the group's
 * first entry empties every replica (fsm_apply), so what the cluster held
 * before servers is written again through Raft, as the leader saw it.
 */
static void leader_start(struct server *s)
{
	if (cp_fsm_fresh(&s->fsm_state)) {
		struct import im;
		memset(&im, 0, sizeof(im));
		im.s = s;
		kv_scan(s->a->kv, "", 0, import_cb, &im);
		import_flush(&im);
		log_info("server: new Raft group: imported %zu keys from this agent's replica",
		         im.total);
	}
}

static void change_cb(struct raft_change *req, int status)
{
	struct server *s = req->data;
	s->change_busy = false;
	if (status != 0)
		log_warn("server: configuration change failed: %s", raft_strerror(status));
	else
		log_info("server: configuration change committed");
	free(req);
}

static const struct raft_server *conf_find(const struct raft_configuration *c, raft_id id)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->servers[i].id == id)
			return &c->servers[i];
	return NULL;
}

static unsigned conf_voters(const struct raft_configuration *c)
{
	unsigned v = 0;
	for (unsigned i = 0; i < c->n; i++)
		v += c->servers[i].role == RAFT_VOTER;
	return v;
}

static void note_removed(struct server *s, raft_id id)
{
	size_t i = 0;
	while (i < s->nremoved && s->removed[i].id != id)
		i++;
	if (i == s->nremoved) {
		if (s->nremoved < sizeof(s->removed) / sizeof(s->removed[0]))
			s->nremoved++;
		else
			i = 0; /* full: forget the oldest slot */
	}
	s->removed[i] = (struct removed){id, gossip_now_ms()};
}

static bool removed_recently(const struct server *s, const struct known *k)
{
	for (size_t i = 0; i < s->nremoved; i++)
		if (s->removed[i].id == k->id)
			return k->state_change <= s->removed[i].at;
	return false;
}

static bool try_change(struct server *s, int what, raft_id id, const char *addr, int role)
{
	struct raft_change *req = xcalloc(1, sizeof(*req));
	req->data = s;
	int rv = what == 0   ? raft_add(&s->raft, req, id, addr, change_cb)
	         : what == 1 ? raft_assign(&s->raft, req, id, role, change_cb)
	                     : raft_remove(&s->raft, req, id, change_cb);
	if (rv != 0) {
		free(req);
		return false;
	}
	if (what == 2)
		note_removed(s, id);
	s->change_busy = true;
	return true;
}

/* Autopilot: one change per tick at most (libraft takes one at a time). */
static void autopilot(struct server *s)
{
	if (s->change_busy)
		return;
	const struct raft_configuration *c = &s->raft.configuration;
	unsigned voters = conf_voters(c);
	for (size_t i = 0; i < s->nknown; i++) {
		const struct known *k = &s->known[i];
		const struct raft_server *rs = conf_find(c, k->id);
		if (k->state == ML_STATE_ALIVE && rs == NULL && !removed_recently(s, k)) {
			log_info("server: adding server %s (%s) to the Raft configuration", k->name,
			         k->addr);
			try_change(s, 0, k->id, k->addr, 0);
			return;
		}
		if (k->state == ML_STATE_ALIVE && rs != NULL && rs->role == RAFT_SPARE) {
			int role = voters < SERVER_MAX_VOTERS ? RAFT_VOTER : RAFT_STANDBY;
			try_change(s, 1, k->id, NULL, role);
			return;
		}
	}
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *rs = &c->servers[i];
		if (rs->id == s->id)
			continue;
		const struct known *k = known_by_id(s, rs->id);
		/* a server that left and comes back at once (a restart) is often
		 * still "left" in gossip for a moment: wait before removing it */
		int64_t gnow = gossip_now_ms(); /* state_change is on gossip's clock */
		bool left = k != NULL && k->state == ML_STATE_LEFT &&
		            gnow - k->state_change > SERVER_LEFT_AFTER_MS;
		bool dead = k != NULL && k->state == ML_STATE_DEAD &&
		            gnow - k->state_change > SERVER_DEAD_AFTER_MS;
		if (!(left || dead))
			continue;
		/* the live voters must stay a majority of the voters that remain */
		unsigned remain = voters - (rs->role == RAFT_VOTER), healthy = 0;
		for (unsigned j = 0; j < c->n; j++) {
			const struct known *kj = known_by_id(s, c->servers[j].id);
			healthy += c->servers[j].role == RAFT_VOTER &&
			           (c->servers[j].id == s->id ||
			            (kj != NULL && kj->state == ML_STATE_ALIVE));
		}
		if (rs->role != RAFT_VOTER || healthy >= remain / 2 + 1) {
			log_info("server: removing %s server %s from the Raft configuration",
			         left ? "departed" : "failed", k->name);
			try_change(s, 2, rs->id, NULL, 0);
			return;
		}
	}
}

/* ------------------------------------------------------------ Raft */

/*
 * Failover: a vote request counts as allowed to disrupt the leader when
 * this follower has not heard from its leader for a whole (base) election
 * timeout. libraft refuses every vote and pre-vote while a follower still
 * knows a leader, and a follower forgets it only when its own randomized
 * timer (1 to 2 election timeouts) fires; after the leader died, the
 * election therefore waited for the later of the two followers' timers
 * (libraft's election.c says it means the thesis' rule, 4.2.3 and 9.6:
 * refuse "within the minimum election timeout of hearing from a current
 * leader"). With the rule as the thesis states it (and as etcd applies it,
 * its check-quorum lease) the election follows the earlier timer. Only
 * liveness is at stake: a vote still goes only to a candidate whose log is
 * as up to date, one per term, and a follower that hears its leader keeps
 * refusing, so a server cut off and back cannot depose a leader its peers
 * still hear.
 */
static void before_recv(void *ctx, struct raft_message *m)
{
	struct server *s = ctx;
	struct raft *r = &s->raft;
	if (m->type != RAFT_IO_REQUEST_VOTE || r->state != RAFT_FOLLOWER ||
	    r->follower_state.current_leader.id == 0)
		return;
	raft_time now = r->io->time(r->io);
	bool gone = s->gone_leader == r->follower_state.current_leader.id &&
	            now - s->gone_at < 2 * ELECTION_MS;
	if (gone || now - r->election_timer_start >= r->election_timeout)
		m->request_vote.disrupt_leader = true;
}

/*
 * Failover when the leader's process died (crashed, killed, restarted):
 * its kernel closes its sockets, so a follower's connection to it ends
 * (the peer closed it), and a dial of its server RPC port is refused —
 * nothing listens there. Waiting for the election timer (1 to 2 election
 * timeouts after the last heartbeat) would then only wait for what is
 * already known. The follower brings its timer forward to fire after a
 * random 10-160 ms (the delay keeps two followers that saw the same close
 * from splitting the vote), and counts the leader as gone for
 * before_recv's rule, so its peer grants the (pre-)vote it would refuse
 * while it still knows a leader. A machine that dies without closing its
 * sockets (power, network) is found by the timer as before. Only liveness
 * is at stake: a vote still needs an up-to-date log, one per term, and a
 * leader that is in fact alive (its port refusing for another reason)
 * steps down at the higher term like any deposed leader.
 */
static void rpc_peer_down(void *ctx, const char *addr, bool refused)
{
	struct server *s = ctx;
	struct raft *r = &s->raft;
	if (!s->raft_started || s->raft_closing || r->state != RAFT_FOLLOWER)
		return;
	const char *la = r->follower_state.current_leader.address;
	if (r->follower_state.current_leader.id == 0 || la == NULL || strcmp(la, addr) != 0)
		return;
	if (!refused && server_rpc_probe(s->rpc, addr) != 1)
		return; /* dialling again: a refusal comes back here */
	raft_time now = r->io->time(r->io);
	unsigned delay = (unsigned)r->io->random(r->io, GONE_MIN_MS, GONE_MAX_MS);
	unsigned timeout = r->follower_state.randomized_election_timeout;
	if (now - r->election_timer_start + delay < timeout)
		r->election_timer_start = now + delay - timeout; /* fires in `delay` ms */
	if (s->gone_leader != r->follower_state.current_leader.id ||
	    now - s->gone_at >= 2 * ELECTION_MS)
		log_info("server: the leader %s refuses connections; an election in %u ms", addr,
		         delay);
	s->gone_leader = r->follower_state.current_leader.id;
	s->gone_at = now;
}

static int start_raft(struct server *s, const struct raft_configuration *boot)
{
	char err[256];
	struct raft_io_config ic;
	memset(&ic, 0, sizeof(ic));
	ic.loop = s->loop;
	ic.data_dir = s->a->cfg.data_dir;
	ic.transport = (struct raft_transport){s, transport_send};
	ic.tick_ms = RAFT_TICK_MS;
	ic.recv_ctx = s;
	ic.before_recv = before_recv;
	if (raft_io_create(&s->io, &ic, err, sizeof(err)) < 0) {
		log_err("server: %s", err);
		return -1;
	}
	s->fsm = (struct raft_fsm){.version = 3,
	                           .data = s,
	                           .apply = fsm_apply,
	                           .snapshot = fsm_snapshot,
	                           .restore = fsm_restore,
	                           .snapshot_finalize = fsm_snapshot_finalize,
	                           .snapshot_async = fsm_snapshot_async};
	if (raft_init(&s->raft, &s->io, &s->fsm, s->id, s->addr) != 0) {
		log_err("server: raft_init: %s", raft_errmsg(&s->raft));
		raft_io_destroy(&s->io);
		return -1;
	}
	s->raft.data = s;
	raft_set_election_timeout(&s->raft, ELECTION_MS);
	raft_set_heartbeat_timeout(&s->raft, HEARTBEAT_MS);
	const struct rumor_config *cfg = &s->a->cfg;
	raft_set_snapshot_threshold(&s->raft, cfg->raft_snapshot_threshold > 0
	                                              ? (unsigned)cfg->raft_snapshot_threshold
	                                              : SNAPSHOT_THRESHOLD);
	raft_set_snapshot_trailing(&s->raft, cfg->raft_trailing_logs > 0
	                                             ? (unsigned)cfg->raft_trailing_logs
	                                             : SNAPSHOT_TRAILING);
	raft_set_pre_vote(&s->raft, true);
	if (boot != NULL && raft_bootstrap(&s->raft, boot) != 0)
		log_warn("server: bootstrap: %s", raft_errmsg(&s->raft));
	if (raft_start(&s->raft) != 0) {
		log_err("server: raft_start: %s", raft_errmsg(&s->raft));
		return -1; /* raft_close() in server_free */
	}
	s->raft_started = true;
	return 0;
}

static bool raft_state_on_disk(struct server *s)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/raft", s->a->cfg.data_dir);
	char err[256];
	struct raft_store *st = raft_store_open(dir, 0, err, sizeof(err));
	if (st == NULL)
		return false;
	struct raft_store_info in;
	raft_store_info(st, &in);
	raft_store_close(st);
	return in.last_index > 0 || in.snapshot_index > 0;
}

static int cmp_known(const void *x, const void *y)
{
	const struct known *a = x, *b = y;
	return a->id < b->id ? -1 : a->id > b->id;
}

/* An empty server: join a group that exists, or bootstrap one with the
 * expected servers once they are all in sight. */
static void maybe_bootstrap(struct server *s)
{
	int expect = s->a->cfg.bootstrap ? 1 : s->a->cfg.bootstrap_expect;
	struct known ready[MAX_KNOWN];
	size_t n = 0;
	bool self_seen = false;
	for (size_t i = 0; i < s->nknown; i++) {
		const struct known *k = &s->known[i];
		if (k->state != ML_STATE_ALIVE)
			continue;
		if (k->has_raft && k->id != s->id) {
			log_info("server: %s holds Raft state: starting empty, to be added",
			         k->name);
			start_raft(s, NULL);
			return;
		}
		if (k->expect == expect)
			ready[n++] = *k;
		self_seen |= k->id == s->id;
	}
	if (expect <= 0 || !self_seen || (int)n < expect)
		return;
	qsort(ready, n, sizeof(ready[0]), cmp_known);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (size_t i = 0; i < n; i++)
		raft_configuration_add(&conf, ready[i].id, ready[i].addr, RAFT_VOTER);
	log_info("server: %zu servers in sight (expect %d): bootstrapping the Raft group", n,
	         expect);
	start_raft(s, &conf);
	raft_configuration_close(&conf);
}

/*
 * In CP mode the replica's log commits skip their fdatasync (synced at the
 * checkpoint, about once a second; kv_store_set_log_sync). Safe because no
 * record in a CP replica originates there: on a server every record comes
 * from a Raft entry that was durable on a quorum's Raft logs before it was
 * applied, and the applied index (CP_APPLIED_KEY) is written in the same
 * log record as the entry's writes, so a crash that drops the log's tail
 * takes the applied index back with it (replay keeps a prefix of the
 * batches) and libraft applies those entries again from its log, which
 * holds every entry after its snapshot (at start it restores the snapshot
 * into the replica first). Servers only: a client keeps syncing, since a
 * restarted client tells it is in CP mode from the applied index its
 * replica holds (server_new). A write is still answered only after
 * the leader applied it; what makes the answer durable is the Raft commit
 * before that, not the replica's sync. Measured: one fdatasync fewer per
 * loop turn on every server (docs/SERVERS.md, "Durability").
 */
static void cp_on(struct server *s)
{
	struct kv_cp cp = {s, cp_write};
	kv_set_cp(s->a->kv, &cp);
	if (s->is_server)
		kv_store_set_log_sync(kv_engine_store(kv_engine_of(s->a->kv)), false);
	s->cp = true;
	/* what this agent wrote of itself before it knew of servers stayed in
	 * its own replica (servers take no merges): write it through Raft */
	agent_republish(s->a);
	log_info("server: servers in the cluster: the KV store is CP (writes and reads go "
	         "through the Raft leader)");
}

static int seen_cb(void *ud, const struct kv_entry *e)
{
	(void)ud, (void)e;
	return 0;
}

/*
 * A new leader is ready — it proposes writes and answers default reads from
 * its replica — once a barrier of its own term has committed: everything
 * earlier terms committed is then applied here. libraft appends no entry on
 * election, so until then the replica may lack writes that were already
 * acknowledged (tests/raftsim found such stale default reads when readiness
 * came with the first tick). The callback only records the term: it may run
 * inside libraft's step-down, where nothing may be asked of it.
 */
static void ready_cb(struct raft_barrier *req, int status)
{
	struct server *s = req->data;
	s->ready_busy = false;
	if (status == 0) {
		s->ready_term = s->ready_asked;
		quick_start(s); /* a timer only: nothing is asked of libraft here */
	}
}

static void leader_ready_check(struct server *s)
{
	raft_term term = s->raft.current_term;
	if (s->ready_term == term) {
		s->leader_ready = true;
		leader_start(s);
		return;
	}
	if (s->ready_busy)
		return;
	s->ready_req.data = s;
	s->ready_asked = term;
	s->ready_busy = raft_barrier(&s->raft, &s->ready_req, ready_cb) == 0;
}

static bool any_held(struct server *s)
{
	for (struct cp_req *r = s->waiting; r; r = r->next)
		if (!r->answered && r->phase == R_HELD)
			return true;
	return false;
}

/*
 * Failover. Between the 200 ms ticks, every 10 ms while writes are held or
 * this new leader does not serve yet: a held write goes out as soon as a
 * leader is known (a follower forwards it) or ready (the leader proposes
 * it), and a new leader asks for its barrier at once and serves as soon as
 * it committed — not up to two ticks later (the barrier asked at one tick,
 * seen at the next). Stops itself when neither is the case.
 */
static void quick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)revents;
	struct server *s = t->data;
	if (is_leader(s) && !leader_serving(s)) {
		s->leader_ready = false;
		leader_ready_check(s);
	}
	retry_held(s);
	if (!any_held(s) && !(is_leader(s) && !leader_serving(s)))
		ev_timer_stop(loop, t);
}

/* First at the next loop iteration (a barrier that just committed, a
 * leader just learned), then every 10 ms. */
static void quick_start(struct server *s)
{
	if (ev_is_active(&s->quick))
		return;
	ev_timer_set(&s->quick, 0.0, 0.01);
	ev_timer_start(s->loop, &s->quick);
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)revents;
	struct server *s = t->data;
	scan_members(s);
	if (!s->cp && s->nknown > 0)
		cp_on(s);
	if (s->is_server && !s->raft_started && !s->raft_closing)
		maybe_bootstrap(s);
	char lb[64];
	if (server_leader(s, lb, sizeof(lb))[0] != '\0') {
		s->leader_seen_ms = now_ms(s);
		if (!s->raft_tagged) {
			s->raft_tagged = true;
			agent_retag(s->a);
		}
	}
	if (is_leader(s)) {
		if (s->leader_ready && s->ready_term != s->raft.current_term)
			s->leader_ready = false; /* lost and won again between two ticks */
		if (!s->leader_ready)
			leader_ready_check(s);
		if (!leader_serving(s))
			quick_start(s);
		autopilot(s);
	} else {
		s->leader_ready = false;
	}
	sessions_leader_tick(s->sessions, is_leader(s) && s->leader_ready);
	retry_held(s);
	/* a client that knows no server and holds nothing has nothing to do
	 * until a member's tags name a server: it stops waking once a second
	 * (a quarter of an idle client's wake-ups) and server_member_event
	 * starts the tick again. Only after a scan of the current table. */
	struct swim *sw = gossip_transport_swim(s->a->gossip);
	if (!s->is_server && !s->cp && s->nknown == 0 && s->waiting == NULL &&
	    s->known_gen == swim_members_gen(sw) + 1) {
		ev_timer_stop(loop, t);
		s->tick_parked = true;
		log_debug("server: no server known: the tick waits for a member that may be one");
		return;
	}
	double every = !s->is_server && !s->cp ? SERVER_IDLE_TICK_S : SERVER_TICK_S;
	if (t->repeat != every) {
		t->repeat = every;
		ev_timer_again(loop, t);
	}
}

/* ------------------------------------------------------- lifecycle */

struct server *server_new(struct agent *a, char *err, size_t errlen)
{
	struct server *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->take.mu, NULL);
	pthread_cond_init(&s->take.cv, NULL);
	ev_prepare_init(&s->take.prep, take_prepare);
	ev_set_priority(&s->take.prep, EV_MINPRI); /* after kv/kv.c's commit */
	s->take.prep.data = s;
	s->a = a;
	s->loop = a->loop;
	ev_timer_init(&s->quick, quick_cb, 0.01, 0.01); /* started by a held write */
	s->quick.data = s;
	s->is_server = a->cfg.server;
	s->id = raft_id_of(a->node_id);
	snprintf(s->addr, sizeof(s->addr), "%s:%d", a->cfg.advertise_addr, kv_sync_port(a->kv));
	struct server_rpc_config rc = {.loop = a->loop,
	                               .self_id = s->is_server ? s->id : 0,
	                               .self_addr = s->is_server ? s->addr : "",
	                               .node_name = a->cfg.node_name,
	                               .bind_addr = a->cfg.bind_addr,
	                               .buffer_budget = 0};
	struct server_rpc_handlers h = {s, rpc_raft, rpc_request, rpc_peer_down};
	s->rpc = server_rpc_new(&rc, &h, err, errlen);
	if (s->rpc == NULL) {
		free(s);
		return NULL;
	}
	kv_set_handoff(a->kv, server_adopt, s);
	if (s->is_server) {
		s->sessions = sessions_new(a);
		cp_fsm_init(&s->fsm_state, kv_engine_of(a->kv), fsm_before_op, s);
		kv_refuse_merges(a->kv, true);
		if (raft_state_on_disk(s) && start_raft(s, NULL) < 0) {
			snprintf(err, errlen, "the Raft state in %s/raft does not start",
			         a->cfg.data_dir);
			server_free(s);
			return NULL;
		}
		log_info("server: this agent is a server (Raft id %016" PRIx64 ", %s)", s->id,
		         s->addr);
	}
	/* CP from the first request, not from the first tick that sees a server
	 * in gossip: a server always; a client whose replica shows that the
	 * cluster has a Raft group (the applied index replicates to it). A
	 * restarted agent must never take a write or answer a read as if the
	 * cluster were serverless (found by test_linearizable). */
	if (s->is_server ||
	    kv_get(a->kv, CP_APPLIED_KEY, strlen(CP_APPLIED_KEY), seen_cb, NULL) == 1)
		cp_on(s);
	ev_timer_init(&s->tick, tick_cb, SERVER_TICK_S, SERVER_TICK_S);
	s->tick.data = s;
	ev_timer_start(s->loop, &s->tick);
	return s;
}

void server_member_event(struct server *s, const struct swim_member *m)
{
	if (s == NULL || !s->tick_parked || !may_be_server(m))
		return;
	s->tick_parked = false;
	log_debug("server: %s may be a server: the tick goes on", m->id->name);
	ev_timer_set(&s->tick, 0., SERVER_IDLE_TICK_S);
	ev_timer_start(s->loop, &s->tick);
}

void server_set_seal(struct server *s, const struct kv_seal *seal)
{
	if (s != NULL)
		server_rpc_set_seal(s->rpc, seal);
}

static void close_cb(struct raft *r)
{
	struct server *s = r->data;
	s->raft_closed = true;
}

void server_free(struct server *s)
{
	if (s == NULL)
		return;
	s->tick_parked = false; /* a member event while closing restarts nothing */
	ev_timer_stop(s->loop, &s->tick);
	ev_timer_stop(s->loop, &s->quick);
	kv_set_cp(s->a->kv, NULL);
	kv_store_set_log_sync(kv_engine_store(kv_engine_of(s->a->kv)), true);
	if (s->raft_started) {
		s->raft_closing = true;
		/* a snapshot's dump on the worker stops at its next record */
		__atomic_store_n(&s->take.cancel, true, __ATOMIC_RELAXED);
		pthread_mutex_lock(&s->take.mu);
		pthread_cond_signal(&s->take.cv);
		pthread_mutex_unlock(&s->take.mu);
		raft_close(&s->raft, close_cb);
		/* the close waits for the worker's job: bounded, 1 ms naps */
		for (int i = 0; i < 5000 && !s->raft_closed; i++) {
			ev_run(s->loop, EVRUN_ONCE | EVRUN_NOWAIT);
			if (!s->raft_closed && i >= 200)
				usleep(1000);
		}
		if (s->raft_closed)
			raft_io_destroy(&s->io);
		else
			log_err("server: Raft did not close");
	}
	ev_prepare_stop(s->loop, &s->take.prep);
	pthread_mutex_destroy(&s->take.mu);
	pthread_cond_destroy(&s->take.cv);
	server_rpc_free(s->rpc);
	struct cp_req *next;
	for (struct cp_req *r = s->waiting; r; r = next) {
		next = r->next;
		if (!r->answered && !r->remote && r->done)
			r->done(r->ud, KV_SHUTDOWN, -1);
		free(r->body);
		free(r);
	}
	kv_set_handoff(s->a->kv, NULL, NULL);
	kv_refuse_merges(s->a->kv, false);
	sessions_free(s->sessions);
	free(s);
}

/* ---------------------------------------------------------- status */

bool server_is_server(const struct server *s)
{
	return s != NULL && s->is_server;
}

bool server_cp(const struct server *s)
{
	return s != NULL && s->cp;
}

const char *server_leader(const struct server *s, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (s == NULL || !s->raft_started || s->raft_closing)
		return buf;
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader((struct raft *)&s->raft, &id, &addr);
	if (id != 0 && addr != NULL)
		snprintf(buf, cap, "%s", addr);
	return buf;
}

int64_t server_last_contact(const struct server *s)
{
	if (s == NULL || !s->raft_started)
		return -1;
	if (raft_state((struct raft *)&s->raft) == RAFT_LEADER)
		return 0;
	if (s->leader_seen_ms == 0)
		return -1;
	return (int64_t)(ev_now(s->loop) * 1000.0) - s->leader_seen_ms;
}

size_t server_peers(const struct server *s, struct server_peer *out, size_t cap)
{
	size_t n = 0;
	if (s == NULL)
		return 0;
	if (s->raft_started) {
		const struct raft_configuration *c = &s->raft.configuration;
		raft_id lid = 0;
		const char *laddr = NULL;
		raft_leader((struct raft *)&s->raft, &lid, &laddr);
		for (unsigned i = 0; i < c->n && n < cap; i++) {
			struct server_peer *p = &out[n++];
			memset(p, 0, sizeof(*p));
			p->id = c->servers[i].id;
			snprintf(p->addr, sizeof(p->addr), "%s", c->servers[i].address);
			const struct known *k = known_by_id(s, p->id);
			snprintf(p->name, sizeof(p->name), "%s", k ? k->name : "");
			p->voter = c->servers[i].role == RAFT_VOTER;
			p->leader = p->id == lid;
		}
		return n;
	}
	for (size_t i = 0; i < s->nknown && n < cap; i++) {
		if (s->known[i].state != ML_STATE_ALIVE)
			continue;
		struct server_peer *p = &out[n++];
		memset(p, 0, sizeof(*p));
		p->id = s->known[i].id;
		snprintf(p->addr, sizeof(p->addr), "%s", s->known[i].addr);
		snprintf(p->name, sizeof(p->name), "%s", s->known[i].name);
		p->voter = true;
	}
	return n;
}

void server_get_info(const struct server *s, struct server_info *o)
{
	memset(o, 0, sizeof(*o));
	if (s == NULL)
		return;
	o->server = s->is_server;
	o->cp = s->cp;
	o->bootstrapped = s->raft_started && s->raft.configuration.n > 0;
	o->writes_forwarded = s->c.forwarded;
	o->writes_applied = s->fsm_state.n_applied;
	if (!s->raft_started)
		return;
	struct raft *r = (struct raft *)&s->raft;
	o->state = raft_state(r);
	o->term = r->current_term;
	o->last_index = raft_last_index(r);
	o->commit_index = r->commit_index;
	o->applied_index = raft_last_applied(r);
	o->last_snapshot_index = r->log.snapshot.last_index;
	o->last_snapshot_term = r->log.snapshot.last_term;
	o->num_peers = r->configuration.n;
}

/* ------------------------------------------------------------ reads */

/*
 * Default and ?consistent reads. On the leader: at once (default) or after
 * a barrier (?consistent: an entry of this term committed by a quorum shows
 * it still leads, and applies everything before). Elsewhere the read is
 * sent to the leader (a client sends it to any server, which passes it on),
 * which answers with its applied index and the records of the key or
 * prefix: a client merges them and then answers from its replica; a
 * follower server, whose replica only Raft writes, waits until it has
 * applied that index.
 */
struct server_read {
	struct server *s;
	server_read_fn fn;
	void *ud;
	struct server_read *bnext; /* in the queue for the next barrier */
	ev_timer timer;
	bool in_raft, in_call, cancelled, done;
	bool retry; /* the timer starts it again (no leader yet) */
	raft_index wait_index;
	int64_t deadline_ms;
	/* a read asked of this server over server RPC */
	bool remote;
	uint64_t conn_id, req_id;
	uint8_t method;
	char *key;
	size_t key_len;
	bool recurse;
};

static void read_start(struct server_read *r);

static void read_free_maybe(struct server_read *r)
{
	if (r->done && !r->in_raft && !r->in_call && !ev_is_active(&r->timer)) {
		free(r->key);
		free(r);
	}
}

static void read_finish(struct server_read *r, bool ok)
{
	if (r->done)
		return;
	r->done = true;
	if (!r->cancelled)
		r->fn(r->ud, ok);
	read_free_maybe(r);
}

/* The leader answers a forwarded read: applied index + records. */
static void read_reply(struct server_read *r, bool ok)
{
	struct server *s = r->s;
	if (!ok) {
		server_rpc_reply(s->rpc, r->conn_id, r->req_id, CP_S_NO_LEADER, NULL, 0);
		return;
	}
	struct cp_dump d = {raft_malloc(4096), 12, 4096, 0};
	be64_put(d.p, (uint64_t)raft_last_applied(&s->raft));
	int rc = kv_records(s->a->kv, r->key, r->key_len, r->recurse, cp_dump_record, &d);
	be32_put(d.p + 8, d.n);
	if (rc < 0 || d.len > SERVER_RPC_FRAME_MAX - 64)
		server_rpc_reply(s->rpc, r->conn_id, r->req_id, rc < 0 ? CP_S_ERROR : CP_S_TOO_BIG,
		                 NULL, 0);
	else
		server_rpc_reply(s->rpc, r->conn_id, r->req_id, CP_S_OK, d.p, d.len);
	raft_free(d.p);
}

static void read_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop, (void)revents;
	struct server_read *r = t->data;
	struct server *s = r->s;
	if (r->retry) {
		r->retry = false;
		ev_timer_stop(s->loop, t);
		read_start(r);
		return;
	}
	if (r->wait_index > 0 && !r->done) {
		/* a follower waiting to apply the leader's index */
		if (s->raft_started && raft_last_applied(&s->raft) >= r->wait_index) {
			r->wait_index = 0;
			ev_timer_stop(s->loop, t);
			ev_timer_set(t, 0.0, 0.0); /* once more: the batch commits first */
			ev_timer_start(s->loop, t);
			return;
		}
		if (now_ms(s) < r->deadline_ms)
			return;
		ev_timer_stop(s->loop, t);
		read_finish(r, false);
		return;
	}
	ev_timer_stop(s->loop, t);
	if (r->remote) {
		r->done = true;
		read_reply(r, true);
		read_free_maybe(r);
		return;
	}
	read_finish(r, true);
}

static void read_soon(struct server_read *r)
{
	ev_timer_set(&r->timer, 0.0, 0.0);
	ev_timer_start(r->s->loop, &r->timer);
}

static void barrier_done(struct server_read *r, int status)
{
	r->in_raft = false;
	if (status != 0) {
		if (r->remote) {
			r->done = true;
			read_reply(r, false);
			read_free_maybe(r);
		} else {
			read_finish(r, false);
		}
		return;
	}
	/* applied here; the replica commits before the loop blocks */
	read_soon(r);
}

/*
 * Reads share barriers: every read that arrives while one is in flight
 * waits for the next one, which is issued after they arrived, so each still
 * sees a quorum confirm this leader after its own start (etcd's ReadIndex
 * batching, with a barrier entry in place of a heartbeat round).
 */
struct barrier_batch {
	struct raft_barrier req;
	struct server *s;
	struct server_read *reads;
};

static void barrier_issue(struct server *s);

static void batch_cb(struct raft_barrier *req, int status)
{
	struct barrier_batch *bb = req->data;
	struct server *s = bb->s;
	s->barrier_busy = false;
	struct server_read *next;
	for (struct server_read *r = bb->reads; r; r = next) {
		next = r->bnext;
		barrier_done(r, status);
	}
	free(bb);
	if (status != 0) {
		/* Leadership lost: libraft fails the barrier while it takes the
		 * leader's state apart (still RAFT_LEADER, its progress already
		 * freed), so no barrier may be issued from here: the reads queued
		 * behind this one fail too (found by tests/raftsim, a crash). */
		struct server_read *q = s->bqueue;
		s->bqueue = NULL;
		for (struct server_read *r = q; r; r = next) {
			next = r->bnext;
			barrier_done(r, status);
		}
		return;
	}
	if (!s->raft_closing)
		barrier_issue(s);
}

static void barrier_issue(struct server *s)
{
	if (s->bqueue == NULL || s->barrier_busy)
		return;
	struct barrier_batch *bb = xcalloc(1, sizeof(*bb));
	bb->s = s;
	bb->reads = s->bqueue;
	s->bqueue = NULL;
	bb->req.data = bb;
	if (raft_barrier(&s->raft, &bb->req, batch_cb) != 0) {
		struct server_read *next;
		for (struct server_read *r = bb->reads; r; r = next) {
			next = r->bnext;
			barrier_done(r, RAFT_NOTLEADER);
		}
		free(bb);
		return;
	}
	s->barrier_busy = true;
}

/*
 * ?consistent reads on a ready leader confirm its leadership without a log
 * entry: the Raft thesis' ReadIndex (section 6.4), as etcd serves its
 * linearizable reads. A round takes every read queued so far, records
 * the commit index (the read index) and asks every other voter, over the
 * server RPC (CP_M_LEADS: term, leader id), whether it follows this leader
 * in this term. Once a majority of the voters (this leader counted) said
 * yes and this server still leads in that term, the reads are answered
 * from the replica as soon as it has applied the read index. Reads that
 * arrive during a round wait for the next one, so each read's round was
 * asked after the read arrived.
 *
 * Why it is linearizable. A write acknowledged before the read arrived was
 * committed in some term T'. If T' <= T, this leader's commit index covers
 * it: its own term's entries it committed itself, and earlier terms' are
 * below the barrier of its term that made it ready (leader_ready_check).
 * If T' > T, a majority had stored the write, hence had a term >= T', before
 * the read arrived; a majority answered "term T" after it arrived; the two
 * majorities share a server, whose term (persisted, never lowered) would
 * have gone down. So no such write exists. What the round does not prove
 * (a slow or missing answer, a refusal, lost leadership, a replica behind
 * the read index) sends the reads to the barrier path, which is what every
 * ?consistent read used before (an entry of this term committed by a
 * majority) and fails them when this server no longer leads.
 *
 * Why: a barrier is a log entry, synced on the leader and a majority before
 * the reads are answered (two fdatasyncs per server: LMDB's data and meta
 * page), while a round is one message each way and touches no disk.
 */
struct confirm {
	struct server *s;
	struct server_read *reads;
	raft_term term;
	raft_index read_index;
	unsigned yes, need, pending;
	bool finished;
};

static void confirm_issue(struct server *s);

/* Reads a round could not serve go to the barrier, which answers them if
 * this server still leads and fails them if not. */
static void reads_to_barrier(struct server *s, struct server_read *reads)
{
	struct server_read *next;
	for (struct server_read *r = reads; r; r = next) {
		next = r->bnext;
		r->bnext = s->bqueue;
		s->bqueue = r;
	}
	barrier_issue(s);
}

static void confirm_finish(struct confirm *c, bool confirmed)
{
	struct server *s = c->s;
	c->finished = true;
	s->confirm_busy = false;
	bool ok = confirmed && leader_serving(s) && s->raft.current_term == c->term &&
	          raft_last_applied(&s->raft) >= c->read_index;
	struct server_read *reads = c->reads, *next;
	c->reads = NULL;
	if (s->raft_closing) {
		/* closing: the reads waiting for the next round end too */
		for (struct server_read *r = s->cqueue; r; r = next) {
			next = r->bnext;
			barrier_done(r, RAFT_SHUTDOWN);
		}
		s->cqueue = NULL;
	}
	if (ok || s->raft_closing) {
		for (struct server_read *r = reads; r; r = next) {
			next = r->bnext;
			barrier_done(r, ok ? 0 : RAFT_SHUTDOWN);
		}
	} else {
		reads_to_barrier(s, reads);
	}
	if (!s->raft_closing)
		confirm_issue(s);
}

static void confirm_cb(void *ud, int status, const uint8_t *p, size_t n)
{
	(void)p, (void)n;
	struct confirm *c = ud;
	c->pending--;
	if (status == CP_S_OK)
		c->yes++;
	if (!c->finished && (c->yes >= c->need || c->yes + c->pending < c->need))
		confirm_finish(c, c->yes >= c->need);
	if (c->finished && c->pending == 0)
		free(c);
}

static void confirm_issue(struct server *s)
{
	if (s->cqueue == NULL || s->confirm_busy)
		return;
	if (!leader_serving(s)) { /* lost the lead meanwhile: the barrier fails them */
		struct server_read *q = s->cqueue;
		s->cqueue = NULL;
		reads_to_barrier(s, q);
		return;
	}
	struct confirm *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->reads = s->cqueue;
	s->cqueue = NULL;
	c->term = s->raft.current_term;
	c->read_index = s->raft.commit_index;
	const struct raft_configuration *conf = &s->raft.configuration;
	unsigned voters = 0;
	for (unsigned i = 0; i < conf->n; i++)
		voters += conf->servers[i].role == RAFT_VOTER;
	c->need = voters / 2 + 1;
	uint8_t q[16];
	be64_put(q, c->term);
	be64_put(q + 8, s->id);
	s->confirm_busy = true;
	c->pending = 1; /* held while the calls go out */
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *rs = &conf->servers[i];
		if (rs->role != RAFT_VOTER)
			continue;
		if (rs->id == s->id) {
			c->yes++;
			continue;
		}
		c->pending++;
		if (server_rpc_call(s->rpc, rs->address, CP_M_LEADS, q, sizeof(q), ELECTION_MS,
		                    confirm_cb, c) != 0)
			c->pending--;
	}
	confirm_cb(c, -1, NULL, 0); /* drops the hold: finishes a round of one voter */
}

/* A follower says whether it follows leader `id` in `term` (CP_M_LEADS). */
static void rpc_leads(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                      size_t n)
{
	raft_id lid = 0;
	const char *laddr = NULL;
	bool yes = false;
	if (n == 16 && s->raft_started && !s->raft_closing &&
	    raft_state(&s->raft) == RAFT_FOLLOWER) {
		raft_leader(&s->raft, &lid, &laddr);
		yes = s->raft.current_term == be64_get(p) && lid != 0 && lid == be64_get(p + 8);
	}
	server_rpc_reply(s->rpc, conn_id, req_id, yes ? CP_S_OK : CP_S_FAILED, NULL, 0);
}

static void read_call_cb(void *ud, int status, const uint8_t *p, size_t n);

/* No leader reachable yet: try again in 100 ms until the read's deadline
 * (a leader election takes about a second). false: give up now. */
static bool read_retry(struct server_read *r)
{
	if (r->cancelled || now_ms(r->s) >= r->deadline_ms)
		return false;
	r->retry = true;
	ev_timer_set(&r->timer, 0.1, 0.0);
	ev_timer_start(r->s->loop, &r->timer);
	return true;
}

static const char *pick_server(struct server *s)
{
	if (s->is_server) {
		raft_id lid = 0;
		const char *laddr = NULL;
		if (s->raft_started)
			raft_leader(&s->raft, &lid, &laddr);
		return lid != 0 && lid != s->id ? laddr : NULL;
	}
	size_t live = 0;
	for (size_t i = 0; i < s->nknown; i++)
		live += s->known[i].state == ML_STATE_ALIVE;
	if (live == 0)
		return NULL;
	size_t pick = (size_t)randombytes_uniform((uint32_t)live);
	for (size_t i = 0; i < s->nknown; i++)
		if (s->known[i].state == ML_STATE_ALIVE && pick-- == 0)
			return s->known[i].addr;
	return NULL;
}

static void read_start(struct server_read *r)
{
	struct server *s = r->s;
	bool consistent = r->method == CP_M_READ_CONSISTENT;
	if (is_leader(s)) {
		if (consistent && leader_serving(s)) {
			r->in_raft = true;
			r->bnext = s->cqueue;
			s->cqueue = r;
			confirm_issue(s);
			return;
		}
		/* a new leader first applies what earlier terms committed */
		if (consistent || !leader_serving(s)) {
			r->in_raft = true;
			r->bnext = s->bqueue;
			s->bqueue = r;
			barrier_issue(s);
			return;
		}
		read_soon(r);
		return;
	}
	const char *to = pick_server(s);
	uint8_t buf[3 + KV_KEY_MAX];
	buf[0] = r->recurse;
	be16_put(buf + 1, (uint16_t)r->key_len);
	memcpy(buf + 3, r->key, r->key_len);
	if (to != NULL && server_rpc_call(s->rpc, to, r->method, buf, 3 + r->key_len,
	                                  FORWARD_TIMEOUT_MS, read_call_cb, r) == 0) {
		r->in_call = true;
		return;
	}
	if (r->remote) {
		r->done = true;
		server_rpc_reply(s->rpc, r->conn_id, r->req_id, CP_S_NO_LEADER, NULL, 0);
		read_free_maybe(r);
	} else if (!read_retry(r)) {
		read_finish(r, false);
	}
}

static void read_merged(void *ud, enum kv_result res, int failed_op)
{
	(void)failed_op;
	struct server_read *r = ud;
	r->in_call = false;
	read_finish(r, res == KV_OK);
}

static void read_call_cb(void *ud, int status, const uint8_t *p, size_t n)
{
	struct server_read *r = ud;
	struct server *s = r->s;
	r->in_call = false;
	if (r->remote) { /* a follower passing the leader's answer back */
		r->done = true;
		server_rpc_reply(s->rpc, r->conn_id, r->req_id,
		                 status < 0 ? CP_S_NO_LEADER : (uint8_t)status, p, n);
		read_free_maybe(r);
		return;
	}
	if (status != CP_S_OK || n < 12) {
		if (status != CP_S_ERROR && status != CP_S_TOO_BIG && read_retry(r))
			return;
		read_finish(r, false);
		return;
	}
	if (r->cancelled) {
		read_finish(r, false);
		return;
	}
	if (s->is_server) {
		r->wait_index = (raft_index)be64_get(p);
		r->deadline_ms = now_ms(s) + FORWARD_TIMEOUT_MS;
		ev_timer_set(&r->timer, 0.005, 0.005);
		ev_timer_start(s->loop, &r->timer);
		return;
	}
	char err[200];
	r->in_call = true; /* until the merge commits */
	if (kv_merge_body(s->a->kv, p + 8, n - 8, read_merged, r, err, sizeof(err)) < 0) {
		r->in_call = false;
		log_debug("server: a read's records do not merge: %s", err);
		read_finish(r, false);
	}
}

static struct server_read *read_new(struct server *s, uint8_t method, const char *key,
                                    size_t key_len, bool recurse)
{
	struct server_read *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->method = method;
	r->key = xmalloc(key_len + 1);
	memcpy(r->key, key, key_len);
	r->key_len = key_len;
	r->recurse = recurse;
	ev_timer_init(&r->timer, read_timer_cb, 0.0, 0.0);
	r->timer.data = r;
	r->deadline_ms = now_ms(s) + NO_LEADER_WAIT_MS;
	return r;
}

struct server_read *server_read_barrier(struct server *s, bool consistent, const char *key,
                                        size_t key_len, bool recurse, server_read_fn fn, void *ud)
{
	struct server_read *r = read_new(s, consistent ? CP_M_READ_CONSISTENT : CP_M_READ, key,
	                                 key_len > KV_KEY_MAX ? KV_KEY_MAX : key_len, recurse);
	r->fn = fn;
	r->ud = ud;
	if (!s->cp)
		read_soon(r);
	else
		read_start(r);
	return r;
}

void server_read_cancel(struct server_read *r)
{
	if (r == NULL)
		return;
	r->cancelled = true;
	if (ev_is_active(&r->timer)) {
		ev_timer_stop(r->s->loop, &r->timer);
		r->done = true;
	}
	if (!r->in_raft && !r->in_call && r->wait_index == 0)
		r->done = true;
	read_free_maybe(r);
}

/* A READ or STATUS asked of this server over server RPC. */
static void rpc_read(struct server *s, uint64_t conn_id, uint64_t req_id, uint8_t method,
                     const uint8_t *p, size_t n)
{
	if (method == CP_M_STATUS) {
		char addr[64];
		server_leader(s, addr, sizeof(addr));
		server_rpc_reply(s->rpc, conn_id, req_id, addr[0] ? CP_S_OK : CP_S_NO_LEADER,
		                 (const uint8_t *)addr, strlen(addr));
		return;
	}
	bool recurse;
	const char *key;
	size_t key_len;
	char err[200];
	if (cp_wire_read_decode(p, n, &recurse, &key, &key_len, err, sizeof(err)) < 0) {
		log_debug("server: a read request does not decode: %s", err);
		server_rpc_reply(s->rpc, conn_id, req_id, CP_S_ERROR, NULL, 0);
		return;
	}
	struct server_read *r = read_new(s, method, key, key_len, recurse);
	r->remote = true;
	r->conn_id = conn_id;
	r->req_id = req_id;
	read_start(r);
}

/* The leader removes a server now: 0, or -1 with err. */
static int remove_here(struct server *s, const char *id_or_addr, char *err, size_t errlen)
{
	const struct raft_configuration *c = &s->raft.configuration;
	for (unsigned i = 0; i < c->n; i++) {
		char idhex[32];
		snprintf(idhex, sizeof(idhex), "%016" PRIx64, (uint64_t)c->servers[i].id);
		if (strcmp(c->servers[i].address, id_or_addr) == 0 ||
		    strcmp(idhex, id_or_addr) == 0) {
			if (s->change_busy || !try_change(s, 2, c->servers[i].id, NULL, 0)) {
				snprintf(err, errlen,
				         "a configuration change is under way; try again");
				return -1;
			}
			return 0;
		}
	}
	snprintf(err, errlen, "address \"%s\" was not found in the Raft configuration", id_or_addr);
	return -1;
}

struct remove_req {
	struct server *s;
	bool remote;
	uint64_t conn_id, req_id;
	server_remove_fn fn;
	void *ud;
};

static void remove_finish(struct remove_req *q, int status, const char *err)
{
	if (q->remote)
		server_rpc_reply(q->s->rpc, q->conn_id, q->req_id, (uint8_t)status,
		                 (const uint8_t *)err, strlen(err));
	else
		q->fn(q->ud, status == CP_S_OK ? 0 : -1, err);
	free(q);
}

static void remove_reply(void *ud, int status, const uint8_t *p, size_t n)
{
	char err[200] = "";
	if (status == CP_S_OK || status == CP_S_FAILED)
		snprintf(err, sizeof(err), "%.*s", (int)(n < 199 ? n : 199), (const char *)p);
	else
		snprintf(err, sizeof(err), "No cluster leader");
	remove_finish(ud, status == CP_S_OK ? CP_S_OK : CP_S_FAILED, err);
}

/* The leader removes; a server or client asks the leader (a client through
 * any live server, which passes it on). */
static void remove_start(struct remove_req *q, const char *id)
{
	struct server *s = q->s;
	char err[200] = "";
	if (is_leader(s)) {
		int rc = remove_here(s, id, err, sizeof(err));
		remove_finish(q, rc == 0 ? CP_S_OK : CP_S_FAILED, err);
		return;
	}
	const char *to = pick_server(s);
	if (to == NULL || (q->remote && !s->is_server) ||
	    server_rpc_call(s->rpc, to, CP_M_REMOVE_PEER, (const uint8_t *)id, strlen(id),
	                    FORWARD_TIMEOUT_MS, remove_reply, q) < 0)
		remove_finish(q, CP_S_FAILED, "No cluster leader");
}

static void rpc_remove_peer(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                            size_t n)
{
	char id[200];
	snprintf(id, sizeof(id), "%.*s", (int)(n < sizeof(id) - 1 ? n : sizeof(id) - 1),
	         (const char *)p);
	struct remove_req *q = xcalloc(1, sizeof(*q));
	*q = (struct remove_req){s, true, conn_id, req_id, NULL, NULL};
	remove_start(q, id);
}

int server_remove_peer(struct server *s, const char *id_or_addr, server_remove_fn fn, void *ud,
                       char *err, size_t errlen)
{
	if (s == NULL || !s->cp) {
		snprintf(err, errlen, "this agent knows no Raft servers");
		return -1;
	}
	struct remove_req *q = xcalloc(1, sizeof(*q));
	*q = (struct remove_req){s, false, 0, 0, fn, ud};
	remove_start(q, id_or_addr);
	return 0;
}

struct ask_leader {
	void (*fn)(void *ud, const char *addr);
	void *ud;
};

static void ask_leader_cb(void *ud, int status, const uint8_t *p, size_t n)
{
	struct ask_leader *q = ud;
	char addr[64] = "";
	if (status == CP_S_OK && n > 0 && n < sizeof(addr)) {
		memcpy(addr, p, n);
		addr[n] = '\0';
	}
	q->fn(q->ud, addr);
	free(q);
}

int server_ask_leader(struct server *s, void (*fn)(void *ud, const char *addr), void *ud)
{
	const char *to = s != NULL ? pick_server(s) : NULL;
	if (to == NULL || s->is_server)
		return -1;
	struct ask_leader *q = xcalloc(1, sizeof(*q));
	q->fn = fn;
	q->ud = ud;
	if (server_rpc_call(s->rpc, to, CP_M_STATUS, NULL, 0, 2000, ask_leader_cb, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------ session renew */

struct renew {
	struct server *s;
	bool remote;
	uint64_t conn_id, req_id;
	server_renew_fn fn;
	void *ud;
};

static void renew_finish(struct renew *q, int status)
{
	if (q->remote)
		server_rpc_reply(q->s->rpc, q->conn_id, q->req_id, (uint8_t)status, NULL, 0);
	else
		q->fn(q->ud, status == CP_S_OK ? 1 : status == CP_S_FAILED ? 0 : -1);
	free(q);
}

static void renew_reply(void *ud, int status, const uint8_t *p, size_t n)
{
	(void)p, (void)n;
	renew_finish(ud, status == CP_S_OK || status == CP_S_FAILED ? status : CP_S_NO_LEADER);
}

/* The leader renews at once; another server asks the leader; a client asks
 * any live server (which asks the leader). */
static void renew_start(struct renew *q, const char *id, size_t id_len)
{
	struct server *s = q->s;
	if (leader_serving(s)) {
		renew_finish(q, sessions_renew(s->sessions, id, id_len) ? CP_S_OK : CP_S_FAILED);
		return;
	}
	const char *to = pick_server(s);
	if (to == NULL || (q->remote && !s->is_server) ||
	    server_rpc_call(s->rpc, to, CP_M_RENEW, (const uint8_t *)id, id_len, FORWARD_TIMEOUT_MS,
	                    renew_reply, q) < 0)
		renew_finish(q, CP_S_NO_LEADER);
}

static void rpc_renew(struct server *s, uint64_t conn_id, uint64_t req_id, const uint8_t *p,
                      size_t n)
{
	struct renew *q = xcalloc(1, sizeof(*q));
	*q = (struct renew){s, true, conn_id, req_id, NULL, NULL};
	renew_start(q, (const char *)p, n);
}

int server_session_renew(struct server *s, const char *id, server_renew_fn fn, void *ud)
{
	if (s == NULL || !s->cp)
		return -1;
	struct renew *q = xcalloc(1, sizeof(*q));
	*q = (struct renew){s, false, 0, 0, fn, ud};
	renew_start(q, id, strlen(id));
	return 0;
}

uint64_t server_sessions_invalidated(const struct server *s)
{
	return s != NULL ? sessions_invalidated(s->sessions) : 0;
}

/* --------------------------------------------------------- snapshots */

static int snap_cb(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	size_t pl = strlen(CP_RAFT_PREFIX);
	if (r->tomb || (key_len >= pl && memcmp(key, CP_RAFT_PREFIX, pl) == 0))
		return 0; /* deleted keys and Raft's bookkeeping stay out */
	return cp_dump_record(ud, key, key_len, r);
}

/* u64 applied index, then a RECORDS body of every live record (raft_malloc'd
 * into *d). 0 or -1. */
static int snapshot_dump(struct server *s, struct cp_dump *d)
{
	*d = (struct cp_dump){raft_malloc(65536), 12, 65536, 0};
	if (d->p == NULL || kv_dump(s->a->kv, snap_cb, d) < 0) {
		raft_free(d->p);
		d->p = NULL;
		return -1;
	}
	be64_put(d->p, s->fsm_state.applied);
	be32_put(d->p + 8, d->n);
	return 0;
}

struct snap_req {
	struct server *s;
	bool remote;
	uint64_t conn_id, req_id;
	server_snapshot_fn fn;
	void *ud;
	struct server_read *rd;
};

static void snap_finish(struct snap_req *q, int status, const uint8_t *p, size_t n)
{
	if (q->remote)
		server_rpc_reply(q->s->rpc, q->conn_id, q->req_id, (uint8_t)status, p, n);
	else if (status == CP_S_OK && n >= 8)
		q->fn(q->ud, 0, be64_get(p), p + 8, n - 8);
	else
		q->fn(q->ud, status == CP_S_TOO_BIG ? -2 : -1, 0, NULL, 0);
	free(q);
}

/* The barrier passed: this server's replica holds what the leader had. */
static void snap_read(void *ud, bool ok)
{
	struct snap_req *q = ud;
	struct cp_dump d;
	if (!ok || snapshot_dump(q->s, &d) < 0) {
		snap_finish(q, ok ? CP_S_ERROR : CP_S_NO_LEADER, NULL, 0);
		return;
	}
	if (d.len > SERVER_SNAPSHOT_MAX)
		snap_finish(q, CP_S_TOO_BIG, NULL, 0);
	else
		snap_finish(q, CP_S_OK, d.p, d.len);
	raft_free(d.p);
}

static void snap_reply(void *ud, int status, const uint8_t *p, size_t n)
{
	snap_finish(ud,
	            status == CP_S_OK        ? CP_S_OK
	            : status == CP_S_TOO_BIG ? CP_S_TOO_BIG
	                                     : CP_S_NO_LEADER,
	            p, n);
}

static void snap_start(struct snap_req *q)
{
	struct server *s = q->s;
	if (s->is_server) {
		/* default consistency: the leader's applied index reached here */
		q->rd = server_read_barrier(s, false, CP_APPLIED_KEY, strlen(CP_APPLIED_KEY), false,
		                            snap_read, q);
		return;
	}
	const char *to = pick_server(s);
	if (to == NULL || server_rpc_call(s->rpc, to, CP_M_SNAPSHOT, NULL, 0,
	                                  FORWARD_TIMEOUT_MS * 4, snap_reply, q) < 0)
		snap_finish(q, CP_S_NO_LEADER, NULL, 0);
}

static void rpc_snapshot(struct server *s, uint64_t conn_id, uint64_t req_id)
{
	struct snap_req *q = xcalloc(1, sizeof(*q));
	*q = (struct snap_req){s, true, conn_id, req_id, NULL, NULL, NULL};
	snap_start(q);
}

int server_snapshot(struct server *s, server_snapshot_fn fn, void *ud)
{
	if (s == NULL || !s->cp)
		return -1;
	struct snap_req *q = xcalloc(1, sizeof(*q));
	*q = (struct snap_req){s, false, 0, 0, fn, ud, NULL};
	snap_start(q);
	return 0;
}

int server_restore(struct server *s, const uint8_t *body, size_t len, kv_done_fn done, void *ud,
                   char *err, size_t errlen)
{
	if (s == NULL || !s->cp) {
		snprintf(err, errlen, "snapshots need servers (-server)");
		return -1;
	}
	const char *node = s->a->cfg.node_name;
	size_t n = cp_wire_restore_size(node, len);
	if (n > SERVER_SNAPSHOT_MAX) {
		snprintf(err, errlen, "the snapshot is %zu bytes; restores are limited to %u", n,
		         SERVER_SNAPSHOT_MAX);
		return -1;
	}
	struct cp_req *r = req_new(s);
	r->method = CP_M_RESTORE;
	r->done = done;
	r->ud = ud;
	r->body = xmalloc(n);
	r->body_len = cp_wire_restore_encode(r->body, node, body, len);
	submit(s, r);
	return 0;
}
