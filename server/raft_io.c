/*
 * server/raft_io.c — libraft's raft_io on the libev loop (design in
 * raft_io.h).
 *
 * Every asynchronous request libraft makes becomes a `struct req` at the
 * tail of one FIFO. The FIFO matters: libraft may ask for appends, then a
 * truncation, then more appends, before any has completed, and expects
 * them applied in that order (raft_uv queues them the same way). One
 * ev_check watcher drains the FIFO after each poll; an ev_idle watcher is
 * active while anything is queued, so that poll does not sleep. A drain
 * takes the whole FIFO, writes every disk request into one store batch,
 * commits it (one fdatasync for the lot), and only then runs the
 * callbacks, in order. Requests made by those callbacks go into a fresh
 * FIFO and wait for the next loop iteration, so one busy server cannot
 * hold the loop.
 *
 * Sends are encoded and handed to the transport at once (libraft's message
 * memory is only promised until the callback, and the transport copies
 * what it keeps); only their completion waits for the drain.
 *
 * Closing: io->close() stops the tick and refuses new messages; the next
 * drain completes what is queued (writes included: libraft asked for them)
 * and then calls libraft's close callback as its very last action, so the
 * owner may free everything, this io included, from inside it.
 */
#include "server/raft_io.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "server/raft_store.h"
#include "server/raft_wire.h"

enum req_type { REQ_APPEND, REQ_TRUNCATE, REQ_SNAP_PUT, REQ_SNAP_GET, REQ_SEND };

struct req {
	struct req *next;
	enum req_type type;
	int status; /* REQ_SEND: the transport's verdict */
	union {
		struct {
			struct raft_io_append *req;
			const struct raft_entry *entries;
			unsigned n;
			bool for_ae;       /* asked while libraft handled an AppendEntries */
			raft_index ae_end; /* ... whose checked end was this */
		} append;
		raft_index truncate;
		struct {
			struct raft_io_snapshot_put *req;
			const struct raft_snapshot *snapshot;
			unsigned trailing;
			bool written; /* its file is on disk (or failed: write_rc) */
			int write_rc;
		} put;
		struct raft_io_snapshot_get *get;
		struct raft_io_send *send;
	};
};

/* One job on its way through the worker thread: libraft's async work, or
 * the writing of a snapshot's file. */
struct job {
	struct job *next;
	struct raft_io_async_work *req;       /* async work, or NULL */
	struct req *put;                      /* a snapshot put whose file is written: */
	const struct raft_snapshot *snapshot; /* its snapshot (libraft's, alive until the put's
	                                         callback) */
	const char *dir;                      /* into this directory (the store's, immutable) */
	int rc;
	double ms; /* how long the worker took */
	char err[256];
};

struct inmsg {
	struct inmsg *next;
	struct raft_message m;
	char *address; /* m.server_address points here */
};

struct rio {
	struct raft_io *io;
	struct ev_loop *loop;
	struct raft_store *st;
	struct raft_transport tr;
	void *clock_ctx;
	uint64_t (*now_ms)(void *ctx);
	uint32_t (*rand32)(void *ctx);
	raft_time last_now;
	/* libraft 0.15 guard (see install_begin): installs of a leader's
	 * snapshot not yet completed, and the clock held while there are */
	unsigned installing;
	uint64_t held_at, held_ms;
	unsigned tick_ms;
	void *recv_ctx;
	void (*before_recv)(void *ctx, struct raft_message *m);

	raft_id id;
	raft_io_tick_cb tick_cb;
	raft_io_recv_cb recv_cb;
	ev_timer tick;
	ev_check drain;
	ev_idle awake; /* keeps the loop from sleeping while work is queued */

	struct req *head, **tail;
	struct inmsg *in_head, **in_tail;
	unsigned in_n;

	bool closing;
	raft_io_close_cb close_cb;
	struct raft_io_stats stats;

	/* while libraft handles an AppendEntries, or completes the append it
	 * asked for one: the end of what that message checked (ae_clamp) */
	bool in_ae;
	raft_index ae_end;

	/* The worker thread for async_work (started by the first request).
	 * Fields under mu are shared with it; the rest is the loop's alone. */
	pthread_t thr;
	bool thr_started;   /* loop only */
	unsigned in_flight; /* loop only: jobs handed over, callback not yet run */
	ev_async jobs_done; /* active while in_flight > 0; the worker signals it */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo, **todo_tail; /* under mu: for the worker, in order */
	struct job *done, **done_tail; /* under mu: for the loop, in order */
	bool thr_stop;                 /* under mu: the worker exits when todo is empty */
};

static struct rio *rio_of(struct raft_io *io)
{
	return io->impl;
}

static int io_fail(struct raft_io *io, int code, const char *msg)
{
	snprintf(io->errmsg, sizeof(io->errmsg), "%s", msg);
	return code;
}

/* Makes sure a drain runs in this loop iteration or the next. */
static void kick(struct rio *x)
{
	if (!ev_is_active(&x->drain))
		ev_check_start(x->loop, &x->drain);
	if (!ev_is_active(&x->awake))
		ev_idle_start(x->loop, &x->awake);
}

/*
 * Every request goes to the tail of the one FIFO, whatever its kind: libraft
 * relies on appends, truncations and snapshot puts taking effect in the order it
 * issued them, and on their callbacks arriving in that order too.
 */
static struct req *enqueue(struct rio *x, enum req_type type)
{
	struct req *r = xcalloc(1, sizeof(*r));
	r->type = type;
	*x->tail = r;
	x->tail = &r->next;
	kick(x);
	return r;
}

static int start_worker(struct rio *x);
static void submit(struct rio *x, struct job *j);

/* ---- the drain ---- */

/* For the log lines that say how long the loop was held: info past this. */
#define SLOW_MS 20.0
static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static uint64_t raw_now(struct rio *x)
{
	return x->now_ms != NULL ? x->now_ms(x->clock_ctx) : (uint64_t)(ev_now(x->loop) * 1000.0);
}

/*
 * libraft 0.15 answers an installed snapshot from its completion callback by
 * sending to follower_state.current_leader, whatever the state is by then. A
 * follower whose election timer ran out during a long install has become a
 * candidate, that union now holds the candidate's fields, and the "address"
 * is a wild pointer (seen: 0x100, the pre-vote flag). libraft fixed it later
 * (a follower does not convert while a snapshot installs, its election timer
 * restarts instead); rumor, on Debian's 0.15, gets the same effect here:
 * while a leader's snapshot installs, libraft's clock stands still and its
 * tick is not called, so the election timer neither runs out nor counts the
 * install's time, and a TimeoutNow (a leadership transfer asking this server
 * to stand) is dropped. The leader's heartbeats resume once the install
 * answers.
 */
static void install_begin(struct rio *x)
{
	if (x->installing++ == 0)
		x->held_at = raw_now(x);
}

static void install_end(struct rio *x)
{
	if (x->installing > 0 && --x->installing == 0) {
		uint64_t now = raw_now(x);
		if (now > x->held_at)
			x->held_ms += now - x->held_at;
	}
}

/* Writes every disk request of the list into one batch and commits it.
 * Returns the status all of them complete with. */
static int write_batch(struct rio *x, struct req *list)
{
	bool any = false;
	for (struct req *r = list; r != NULL && !any; r = r->next)
		any = r->type == REQ_APPEND || r->type == REQ_TRUNCATE || r->type == REQ_SNAP_PUT;
	if (!any)
		return 0;
	double t0 = mono_ms();
	size_t snap_bytes = 0;
	int rc = raft_store_begin(x->st);
	for (struct req *r = list; r != NULL && rc == 0; r = r->next) {
		switch (r->type) {
		case REQ_APPEND:
			rc = raft_store_append(x->st, r->append.entries, r->append.n);
			x->stats.appends++;
			x->stats.entries += r->append.n;
			break;
		case REQ_TRUNCATE:
			rc = raft_store_truncate(x->st, r->truncate);
			break;
		case REQ_SNAP_PUT:
			if (r->put.write_rc != 0)
				break; /* its file failed: it alone fails (complete) */
			rc = raft_store_snapshot_put_file(x->st, r->put.snapshot, r->put.trailing);
			x->stats.snapshots_put++;
			for (unsigned i = 0; i < r->put.snapshot->n_bufs; i++)
				snap_bytes += r->put.snapshot->bufs[i].len;
			break;
		default:
			break;
		}
	}
	if (rc == 0) {
		rc = raft_store_commit(x->st);
		x->stats.commits++;
	} else {
		raft_store_abort(x->st);
	}
	if (rc != 0)
		log_err("raft: %s", raft_store_errmsg(x->st));
	else if (snap_bytes > 0)
		log_msg(mono_ms() - t0 > SLOW_MS ? LOG_INFO : LOG_DEBUG,
		        "raft: snapshot of %zu bytes recorded in the log store in %.1f ms (in the "
		        "loop)",
		        snap_bytes, mono_ms() - t0);
	return rc;
}

/*
 * libraft 0.15 trusts a follower's log past what an AppendEntries checked:
 * the follower answers with its own last stored index and commits up to
 * min(leader_commit, last stored); the leader takes that answer as the
 * follower's match index. A follower holding entries of an older term past
 * prev_log_index + n_entries (the message's end) is then counted as holding
 * the leader's entries there — the leader may commit an entry only it has,
 * and ignores that follower's later rejections, so it never catches up —
 * and the follower may apply its stale entries. Found by tests/raftsim
 * (docs/SIMULATION.md); upstream's last release has the same code. So, as
 * the Raft paper has it: leader_commit is cut to the message's end before
 * libraft sees it, and a successful result sent while libraft handles that
 * message (or completes the append it asked for it) claims at most that end.
 */
static void ae_begin(struct rio *x, struct raft_append_entries *ae)
{
	raft_index end = ae->prev_log_index + ae->n_entries;
	if (ae->leader_commit > end)
		ae->leader_commit = end;
	x->in_ae = true;
	x->ae_end = end;
}

static const struct raft_message *ae_clamp(struct rio *x, const struct raft_message *m,
                                           struct raft_message *copy)
{
	if (!x->in_ae || m->type != RAFT_IO_APPEND_ENTRIES_RESULT ||
	    m->append_entries_result.rejected != 0 ||
	    m->append_entries_result.last_log_index <= x->ae_end)
		return m;
	*copy = *m;
	copy->append_entries_result.last_log_index = x->ae_end;
	return copy;
}

/* Runs one request's callback (and frees it). */
static void complete(struct rio *x, struct req *r, int disk_status)
{
	switch (r->type) {
	case REQ_APPEND: {
		bool was = x->in_ae;
		raft_index was_end = x->ae_end;
		x->in_ae = r->append.for_ae;
		x->ae_end = r->append.ae_end;
		if (r->append.req->cb != NULL)
			r->append.req->cb(r->append.req, disk_status);
		x->in_ae = was;
		x->ae_end = was_end;
		break;
	}
	case REQ_TRUNCATE:
		break;
	case REQ_SNAP_PUT:
		if (r->put.req->cb != NULL)
			r->put.req->cb(r->put.req,
			               r->put.write_rc != 0 ? r->put.write_rc : disk_status);
		if (r->put.trailing == 0)
			install_end(x);
		break;
	case REQ_SNAP_GET: {
		struct raft_snapshot *s = NULL;
		double t0 = mono_ms();
		int rc = raft_store_snapshot_get(x->st, &s);
		if (rc == 0 && s != NULL)
			log_msg(mono_ms() - t0 > SLOW_MS ? LOG_INFO : LOG_DEBUG,
			        "raft: snapshot at index %llu read in %.1f ms (in the loop)",
			        (unsigned long long)s->index, mono_ms() - t0);
		if (rc == 0 && s == NULL)
			rc = RAFT_NOTFOUND;
		if (rc != 0)
			log_err("raft: snapshot get: %s",
			        rc == RAFT_NOTFOUND ? "no snapshot" : raft_store_errmsg(x->st));
		x->stats.snapshots_get++;
		r->get->cb(r->get, s, rc);
		break;
	}
	case REQ_SEND:
		if (r->send->cb != NULL)
			r->send->cb(r->send, r->status);
		break;
	}
	free(r);
}

static void free_inmsg(struct inmsg *m)
{
	raft_wire_message_release(&m->m);
	free(m->address);
	free(m);
}

/* A snapshot put whose file the worker is still writing. */
static bool parked(const struct req *r)
{
	return r->type == REQ_SNAP_PUT && !r->put.written;
}

/*
 * Takes from the FIFO, in order, every request that can be written now. A
 * parked put of a snapshot this server took (trailing > 0) stays queued and
 * lets the requests after it pass: it deletes only entries up to its index
 * minus the trailing ones, which are committed, and later appends and
 * truncations only touch entries past the commit index, so the order
 * between them does not matter (libraft's raft_uv lets appends pass such a
 * put the same way: a non-blocking barrier). A parked put of a snapshot
 * installed from the leader (trailing 0) replaces the whole log: it and
 * everything after it wait.
 */
static struct req *take_ready(struct rio *x)
{
	struct req *ready = NULL, **rt = &ready;
	struct req *r = x->head, **kt = &x->head;
	x->head = NULL;
	while (r != NULL && !(parked(r) && r->put.trailing == 0)) {
		struct req *next = r->next;
		r->next = NULL;
		if (parked(r)) {
			*kt = r;
			kt = &r->next;
		} else {
			*rt = r;
			rt = &r->next;
		}
		r = next;
	}
	/* r: NULL, or a blocking put that stays with everything after it (the
	 * tail still points into that unchanged chain) */
	*kt = r;
	if (r == NULL)
		x->tail = kt;
	return ready;
}

/*
 * Requests first, then received messages: a message is handed to libraft only
 * after the entries queued before it that could be written are durable (a
 * parked snapshot put and what waits behind it do not hold messages back:
 * libraft expects messages while its disk requests are in flight). Both lists
 * are detached before any callback runs, because callbacks queue new work for
 * the next drain.
 */
static void drain(struct rio *x)
{
	struct req *list = take_ready(x);
	struct inmsg *in = x->in_head;
	x->in_head = NULL;
	x->in_tail = &x->in_head;
	x->in_n = 0;

	int disk_status = write_batch(x, list);
	while (list != NULL) {
		struct req *next = list->next;
		complete(x, list, disk_status);
		list = next;
	}
	while (in != NULL) {
		struct inmsg *next = in->next;
		if (x->installing > 0 && in->m.type == RAFT_IO_TIMEOUT_NOW) {
			x->stats.dropped_installing++;
			free_inmsg(in);
		} else if (!x->closing && x->recv_cb != NULL) {
			/* libraft takes over the entries, snapshot data and
			 * configuration; the address is copied if kept */
			if (in->m.type == RAFT_IO_APPEND_ENTRIES)
				ae_begin(x, &in->m.append_entries);
			if (x->before_recv != NULL)
				x->before_recv(x->recv_ctx, &in->m);
			x->recv_cb(x->io, &in->m);
			x->in_ae = false;
			free(in->address);
			free(in);
		} else {
			free_inmsg(in);
		}
		in = next;
	}

	if (x->in_head != NULL)
		return; /* more came in: the idle watcher keeps us awake */
	for (struct req *r = x->head; r != NULL; r = r->next) {
		if (!parked(r))
			return; /* callbacks queued more */
		if (r->put.trailing == 0)
			break; /* the rest waits for that put's file (jobs_done_cb kicks) */
	}
	ev_idle_stop(x->loop, &x->awake);
	ev_check_stop(x->loop, &x->drain);
	/* closing waits for the worker's jobs too: jobs_done_cb kicks us */
	if (x->closing && x->close_cb != NULL && x->in_flight == 0 && x->head == NULL) {
		raft_io_close_cb cb = x->close_cb;
		x->close_cb = NULL;
		cb(x->io); /* last: the owner may free us in there */
	}
}

static void drain_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	drain(w->data);
}

static void awake_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	/* nothing: being active is what keeps the next poll from sleeping */
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rio *x = w->data;
	if (x->installing > 0) {
		x->stats.ticks_held++; /* see install_begin */
		return;
	}
	if (!x->closing && x->tick_cb != NULL)
		x->tick_cb(x->io);
}

/* ---- raft_io methods ---- */

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
	rio_of(io)->id = id;
	return 0;
}

/*
 * Closing is asynchronous as libraft requires: queued requests still complete
 * (from the drain), and the close callback runs last, after them.
 */
static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct rio *x = rio_of(io);
	x->closing = true;
	x->close_cb = cb;
	ev_timer_stop(x->loop, &x->tick);
	kick(x); /* the close callback runs from the drain, never from here */
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries)
{
	struct rio *x = rio_of(io);
	int rc = raft_store_load(x->st, term, voted_for, snapshot, start_index, entries, n_entries);
	return rc == 0 ? 0 : io_fail(io, rc, raft_store_errmsg(x->st));
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct rio *x = rio_of(io);
	x->tick_cb = tick;
	x->recv_cb = recv;
	if (x->tick_ms > 0 && x->tick_ms < msecs)
		msecs = x->tick_ms;
	ev_timer_set(&x->tick, msecs / 1000.0, msecs / 1000.0);
	ev_timer_start(x->loop, &x->tick);
	return 0;
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct rio *x = rio_of(io);
	int rc = raft_store_bootstrap(x->st, conf);
	return rc == 0 ? 0 : io_fail(io, rc, raft_store_errmsg(x->st));
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	struct rio *x = rio_of(io);
	int rc = raft_store_recover(x->st, conf);
	return rc == 0 ? 0 : io_fail(io, rc, raft_store_errmsg(x->st));
}

static int io_set_term(struct raft_io *io, raft_term term)
{
	struct rio *x = rio_of(io);
	int rc = raft_store_set_term(x->st, term);
	return rc == 0 ? 0 : io_fail(io, rc, raft_store_errmsg(x->st));
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
	struct rio *x = rio_of(io);
	int rc = raft_store_set_vote(x->st, server_id);
	return rc == 0 ? 0 : io_fail(io, rc, raft_store_errmsg(x->st));
}

/*
 * The message is encoded and handed to the transport at once, but its callback
 * waits for the drain, like every other request. A transport refusal is reported
 * as RAFT_NOCONNECTION, which libraft treats as a retryable send failure.
 */
static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb)
{
	struct rio *x = rio_of(io);
	struct raft_message copy;
	m = ae_clamp(x, m, &copy);
	size_t n = raft_wire_size(m);
	if (n == 0)
		return io_fail(io, RAFT_MALFORMED, "raft io: send: message cannot be encoded");
	uint8_t *buf = xmalloc(n);
	raft_wire_encode(m, buf, n);
	int status = 0;
	if (x->closing || x->tr.send(x->tr.ctx, m->server_id, m->server_address, buf, n) != 0) {
		status = RAFT_NOCONNECTION;
		x->stats.send_failed++;
	} else {
		x->stats.sent++;
	}
	free(buf);
	req->cb = cb;
	struct req *r = enqueue(x, REQ_SEND);
	r->send = req;
	r->status = status;
	return 0;
}

/*
 * The entries are not copied: libraft keeps them alive until the callback, and
 * they are written into the store batch at the next drain.
 */
static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	req->cb = cb;
	struct rio *x = rio_of(io);
	struct req *r = enqueue(x, REQ_APPEND);
	r->append.req = req;
	r->append.entries = entries;
	r->append.n = n;
	r->append.for_ae = x->in_ae;
	r->append.ae_end = x->ae_end;
	return 0;
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	enqueue(rio_of(io), REQ_TRUNCATE)->truncate = index;
	return 0;
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct rio *x = rio_of(io);
	if (start_worker(x) < 0)
		return io_fail(io, RAFT_NOMEM, "raft io: cannot start the worker thread");
	req->cb = cb;
	struct req *r = enqueue(x, REQ_SNAP_PUT);
	r->put.req = req;
	r->put.snapshot = snapshot;
	r->put.trailing = trailing;
	if (trailing == 0)
		install_begin(x);
	struct job *j = xcalloc(1, sizeof(*j));
	j->put = r;
	j->snapshot = snapshot;
	j->dir = raft_store_dir(x->st);
	submit(x, j);
	return 0;
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
	req->cb = cb;
	enqueue(rio_of(io), REQ_SNAP_GET)->get = req;
	return 0;
}

/* ---- the worker thread ---- */

#define WORKER_NICE 10 /* the worker's nice value above the loop's */

/*
 * The worker runs libraft's async work (a snapshot's dump, agent/server.c)
 * one job at a time, in the order asked, and never touches libraft, the loop
 * or anything of this io but the fields under mu: a finished job goes to the
 * done list and ev_async_send (thread-safe) wakes the loop, which runs the
 * callback (jobs_done_cb). What the work function itself reads is its
 * owner's business (agent/server.c says what the snapshot dump shares).
 */
static void *worker_main(void *arg)
{
	struct rio *x = arg;
	/* background work: on a busy machine the loop (and the other agents'
	 * loops) get the CPU first. Linux's nice is per thread; a failure
	 * leaves the thread at the process's priority. */
	errno = 0;
	int prio = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid),
		                  prio + WORKER_NICE > 19 ? 19 : prio + WORKER_NICE);
	pthread_mutex_lock(&x->mu);
	for (;;) {
		while (x->todo == NULL && !x->thr_stop)
			pthread_cond_wait(&x->cv, &x->mu);
		if (x->todo == NULL)
			break; /* stopping, and nothing left */
		struct job *j = x->todo;
		x->todo = j->next;
		if (x->todo == NULL)
			x->todo_tail = &x->todo;
		pthread_mutex_unlock(&x->mu);
		double t0 = mono_ms();
		if (j->req != NULL)
			j->rc = j->req->work(j->req);
		else
			j->rc = raft_store_snapshot_write(j->dir, j->snapshot, j->err,
			                                  sizeof(j->err));
		j->ms = mono_ms() - t0;
		pthread_mutex_lock(&x->mu);
		j->next = NULL;
		*x->done_tail = j;
		x->done_tail = &j->next;
		ev_async_send(x->loop, &x->jobs_done);
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* In the loop: the callbacks of finished jobs, in order. */
static void jobs_done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct rio *x = w->data;
	pthread_mutex_lock(&x->mu);
	struct job *list = x->done;
	x->done = NULL;
	x->done_tail = &x->done;
	pthread_mutex_unlock(&x->mu);
	while (list != NULL) {
		struct job *next = list->next;
		x->in_flight--;
		if (list->req != NULL) {
			list->req->cb(list->req, list->rc);
		} else {
			/* the put takes its place in the FIFO's next drain */
			if (list->rc != 0)
				log_err("raft: %s", list->err);
			else
				log_info("raft: snapshot at index %llu written to its file in %.1f "
				         "ms "
				         "on the worker thread",
				         (unsigned long long)list->snapshot->index, list->ms);
			list->put->put.written = true;
			list->put->put.write_rc = list->rc;
			kick(x);
		}
		free(list);
		list = next;
	}
	if (x->in_flight == 0) {
		ev_async_stop(x->loop, &x->jobs_done);
		if (x->closing)
			kick(x); /* the drain calls libraft's close callback */
	}
}

/*
 * The work runs on the worker thread, its callback later in the loop (as
 * libraft's own libuv backend does with uv_queue_work). The thread starts with
 * the first request; a server that never snapshots never starts one.
 */
static int start_worker(struct rio *x)
{
	if (x->thr_started)
		return 0;
	if (pthread_create(&x->thr, NULL, worker_main, x) != 0)
		return -1;
	x->thr_started = true;
	return 0;
}

static void submit(struct rio *x, struct job *j)
{
	if (x->in_flight++ == 0)
		ev_async_start(x->loop, &x->jobs_done);
	pthread_mutex_lock(&x->mu);
	*x->todo_tail = j;
	x->todo_tail = &j->next;
	pthread_cond_signal(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
                         raft_io_async_work_cb cb)
{
	struct rio *x = rio_of(io);
	if (x->closing)
		return io_fail(io, RAFT_CANCELED, "raft io: closing");
	if (start_worker(x) < 0)
		return io_fail(io, RAFT_NOMEM, "raft io: cannot start the worker thread");
	req->cb = cb;
	struct job *j = xcalloc(1, sizeof(*j));
	j->req = req;
	submit(x, j);
	return 0;
}

/* The loop's time, never going backwards: ev_now() follows the wall clock,
 * and libraft subtracts timestamps as unsigned numbers. */
static raft_time io_time(struct raft_io *io)
{
	struct rio *x = rio_of(io);
	uint64_t now = (x->installing > 0 ? x->held_at : raw_now(x)) - x->held_ms;
	if (now < x->last_now)
		now = x->last_now;
	x->last_now = now;
	return now;
}

/* Uniform in [min, max), as libraft's own backends give. */
static int io_random(struct raft_io *io, int min, int max)
{
	struct rio *x = rio_of(io);
	if (max <= min)
		return min;
	uint32_t range = (uint32_t)(max - min);
	uint32_t r =
	        x->rand32 != NULL ? x->rand32(x->clock_ctx) % range : randombytes_uniform(range);
	return min + (int)r;
}

/* ---- public ---- */

int raft_io_create(struct raft_io *io, const struct raft_io_config *cfg, char *err, size_t errlen)
{
	if (cfg->loop == NULL || cfg->data_dir == NULL || cfg->transport.send == NULL) {
		snprintf(err, errlen, "raft io: loop, data_dir and transport.send are required");
		return -1;
	}
	if (cfg->rand32 == NULL && sodium_init() < 0) {
		snprintf(err, errlen, "raft io: libsodium failed to initialize");
		return -1;
	}
	size_t dl = strlen(cfg->data_dir) + sizeof("/raft");
	char *dir = xmalloc(dl);
	snprintf(dir, dl, "%s/raft", cfg->data_dir);
	struct raft_store *st = raft_store_open(dir, cfg->map_size, err, errlen);
	free(dir);
	if (st == NULL)
		return -1;

	struct rio *x = xcalloc(1, sizeof(*x));
	x->io = io;
	x->loop = cfg->loop;
	x->st = st;
	x->tr = cfg->transport;
	x->clock_ctx = cfg->clock_ctx;
	x->now_ms = cfg->now_ms;
	x->rand32 = cfg->rand32;
	x->tick_ms = cfg->tick_ms;
	x->recv_ctx = cfg->recv_ctx;
	x->before_recv = cfg->before_recv;
	x->tail = &x->head;
	x->in_tail = &x->in_head;
	ev_timer_init(&x->tick, tick_cb, 0.1, 0.1);
	x->tick.data = x;
	ev_check_init(&x->drain, drain_cb);
	x->drain.data = x;
	ev_idle_init(&x->awake, awake_cb);
	x->awake.data = x;
	ev_async_init(&x->jobs_done, jobs_done_cb);
	x->jobs_done.data = x;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	x->todo_tail = &x->todo;
	x->done_tail = &x->done;

	memset(io, 0, sizeof(*io));
	io->version = 2;
	io->impl = x;
	io->init = io_init;
	io->close = io_close;
	io->load = io_load;
	io->start = io_start;
	io->bootstrap = io_bootstrap;
	io->recover = io_recover;
	io->set_term = io_set_term;
	io->set_vote = io_set_vote;
	io->send = io_send;
	io->append = io_append;
	io->truncate = io_truncate;
	io->snapshot_put = io_snapshot_put;
	io->snapshot_get = io_snapshot_get;
	io->time = io_time;
	io->random = io_random;
	io->async_work = io_async_work;
	return 0;
}

void raft_io_destroy(struct raft_io *io)
{
	struct rio *x = rio_of(io);
	if (x == NULL)
		return;
	ev_timer_stop(x->loop, &x->tick);
	ev_check_stop(x->loop, &x->drain);
	ev_idle_stop(x->loop, &x->awake);
	ev_async_stop(x->loop, &x->jobs_done);
	if (x->thr_started) {
		/* after libraft's close callback no job is left (the close waits
		 * for them); the worker ends at once */
		pthread_mutex_lock(&x->mu);
		x->thr_stop = true;
		pthread_cond_signal(&x->cv);
		pthread_mutex_unlock(&x->mu);
		pthread_join(x->thr, NULL);
	}
	for (struct job *l = x->done, *next; l != NULL; l = next) {
		next = l->next;
		free(l);
	}
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	/* after libraft's close callback nothing is queued; before raft_init
	 * nothing ever was. Free what a misuse left rather than leak it. */
	while (x->head != NULL) {
		struct req *next = x->head->next;
		free(x->head);
		x->head = next;
	}
	while (x->in_head != NULL) {
		struct inmsg *next = x->in_head->next;
		free_inmsg(x->in_head);
		x->in_head = next;
	}
	raft_store_close(x->st);
	free(x);
	io->impl = NULL;
}

/*
 * Messages are queued, not handed to libraft from inside the caller's network
 * callback: libraft must not be re-entered while it may be running. The inbox is
 * bounded, and a message without a sender id or address is refused before it is
 * decoded.
 */
int raft_io_deliver(struct raft_io *io, raft_id from, const char *from_address, const uint8_t *buf,
                    size_t len, char *err, size_t errlen)
{
	struct rio *x = rio_of(io);
	if (x->closing || x->recv_cb == NULL) {
		x->stats.dropped++;
		snprintf(err, errlen, "raft io: %s", x->closing ? "closing" : "not started");
		return -1;
	}
	if (x->in_n >= RAFT_IO_INBOX_MAX) {
		x->stats.dropped++;
		snprintf(err, errlen, "raft io: inbox full (%d messages)", RAFT_IO_INBOX_MAX);
		return -1;
	}
	if (from == 0 || from_address == NULL || from_address[0] == '\0') {
		x->stats.bad_received++;
		snprintf(err, errlen, "raft io: sender without an id or address");
		return -1;
	}
	struct inmsg *m = xcalloc(1, sizeof(*m));
	if (raft_wire_decode(buf, len, &m->m, err, errlen) != 0) {
		free(m);
		x->stats.bad_received++;
		return -1;
	}
	m->address = xstrdup(from_address);
	m->m.server_id = from;
	m->m.server_address = m->address;
	*x->in_tail = m;
	x->in_tail = &m->next;
	x->in_n++;
	x->stats.received++;
	kick(x);
	return 0;
}

struct raft_store *raft_io_store(struct raft_io *io)
{
	return rio_of(io)->st;
}

void raft_io_get_stats(const struct raft_io *io, struct raft_io_stats *stats)
{
	*stats = ((const struct rio *)io->impl)->stats;
}
