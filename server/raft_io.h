/*
 * server/raft_io.h — libraft's struct raft_io on rumor's own libev loop.
 *
 * Decision (issue 16): rumor implements libraft's I/O interface itself, on
 * the agent's one libev loop, instead of running libraft's raft_uv backend
 * on a libuv loop in a thread of its own. One loop means no locks and no
 * hand-off between threads: the CP store, the HTTP handlers and gossip all
 * see Raft's state from the thread that changes it. The clock and the
 * randomness come in through raft_io_config (the loop's time and libsodium
 * by default), and the network through struct raft_transport, so the
 * simulator can later drive the same code on virtual time and an in-memory
 * network, as it drives gossip/swim.c.
 *
 * Owns: the raft_io methods libraft calls, a server/raft_store.h store in
 * <data_dir>/raft, the tick timer, the queue of requests libraft made
 * (appends, truncations, snapshot puts and gets, sends) and the queue of
 * received messages, and one worker thread (started by the first snapshot)
 * for what would hold the loop: libraft's async_work (the FSM's
 * snapshot_async: agent/server.c dumps the replica there) and the writing
 * of a snapshot's data to its file (raft_store_snapshot_write). The worker
 * never calls libraft; its results come back to the loop through a
 * mutex-guarded list and an ev_async, and their callbacks run there.
 *
 * Data flow:
 *   libraft ─► io->append/truncate/snapshot_put ─► queue ─┐
 *   libraft ─► io->send ─► raft_wire_encode ─► transport.send (copies the
 *              bytes) ─► queue (completion only)          │
 *   loop ev_check (+ ev_idle so the loop does not sleep) ◄┘
 *        ─► one store batch for every queued disk request, one commit
 *           (fdatasync) ─► the requests' callbacks, in order
 *        ─► received messages ─► libraft's recv callback
 *   transport ─► raft_io_deliver ─► raft_wire_decode ─► queue
 *   ev_timer every heartbeat ─► libraft's tick callback (held, with
 *        libraft's clock, while a leader's snapshot installs: libraft 0.15
 *        would otherwise stand for election mid-install and answer the
 *        install through a stale union; see raft_io.c install_begin)
 *   io->async_work ─► worker: work() ─► ev_async ─► the callback (loop)
 *   io->snapshot_put ─► worker: the data to its file ─► ev_async ─► the
 *        put joins the next store batch (the file's record, the entries it
 *        covers deleted). Meanwhile the requests after it pass when it is a
 *        snapshot this server took (trailing > 0: it deletes committed
 *        entries only), and wait when it is a leader's being installed
 *        (trailing 0: it replaces the log).
 * Nothing completes inside the call that asked for it: libraft's callbacks
 * run only from the loop watcher, never re-entrantly. set_term, set_vote,
 * bootstrap and recover are synchronous and durable before they return, as
 * libraft requires. Appends are durable before their callback reports
 * success: every request queued in one loop iteration shares one LMDB
 * commit (group commit).
 *
 * Error convention: raft_io_create() returns 0 or -1 with err; the raft_io
 * methods return libraft's codes with a message in io->errmsg;
 * raft_io_deliver() returns 0 or -1 with err (the message is dropped; the
 * transport may close the connection it came on).
 */
#ifndef RUMOR_SERVER_RAFT_IO_H
#define RUMOR_SERVER_RAFT_IO_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct raft_store;

/* How Raft messages reach other servers. The real one (server RPC on
 * 8300, sealed with the gossip keyring) and the tests' in-memory network
 * both fill it in. */
struct raft_transport {
	void *ctx;
	/* Queue len bytes for server `to` at `address`. The transport copies
	 * what it keeps (buf is freed when send returns) and never calls back
	 * into the raft_io from inside send. 0 when queued (delivery is still
	 * best effort: Raft retries), -1 when there is no way to `to` now. */
	int (*send)(void *ctx, raft_id to, const char *address, const uint8_t *buf, size_t len);
};

struct raft_io_config {
	struct ev_loop *loop;
	const char *data_dir; /* the store lives in <data_dir>/raft */
	size_t map_size;      /* LMDB map size; 0: RAFT_STORE_MAP_SIZE */
	struct raft_transport transport;
	/* Optional: the clock (ms, never going backwards) and a uniform 32-bit
	 * random number, for a simulator; NULL: the loop's ev_now() and
	 * libsodium's randombytes. */
	void *clock_ctx;
	uint64_t (*now_ms)(void *ctx);
	uint32_t (*rand32)(void *ctx);
	/* Optional: call libraft's tick every tick_ms at most (0: as often as
	 * libraft asks, its heartbeat timeout). libraft's timers compare
	 * timestamps, so a finer tick only makes them fire closer to their
	 * deadlines. */
	unsigned tick_ms;
	/* Optional: sees (and may amend) each received message just before
	 * libraft gets it, in the loop watcher (the owner's policy, e.g. which
	 * vote requests may disrupt a silent leader: agent/server.c). */
	void *recv_ctx;
	void (*before_recv)(void *ctx, struct raft_message *m);
};

/* At most this many received messages wait for the loop; more are dropped
 * (Raft retries), so a flooding peer cannot grow the queue without bound. */
#define RAFT_IO_INBOX_MAX 4096

struct raft_io_stats {
	uint64_t commits; /* store batches committed (one fdatasync each) */
	uint64_t appends; /* append requests written */
	uint64_t entries; /* entries written */
	uint64_t sent, send_failed;
	uint64_t received, bad_received, dropped;
	uint64_t snapshots_put, snapshots_get;
	/* while a leader's snapshot installed (raft_io.c install_begin): ticks
	 * not passed to libraft, TimeoutNow messages dropped */
	uint64_t ticks_held, dropped_installing;
};

/* Fills the caller's io (version 2, libraft's methods) and opens the store
 * in <data_dir>/raft. Then: raft_init(r, io, ...), raft_start(); after
 * raft_close()'s callback has run, raft_io_destroy(). 0, or -1 with err. */
int raft_io_create(struct raft_io *io, const struct raft_io_config *cfg, char *err, size_t errlen);
/* Frees what raft_io_create() set up; only before raft_init() or once
 * libraft's close callback ran (it may be called from that callback). */
void raft_io_destroy(struct raft_io *io);

/* A message from server `from` at `from_address` (as the transport
 * authenticated it) arrived. Decoded now, handed to libraft from the loop
 * watcher. 0, or -1 with err when it is malformed, when the io is not
 * started or closing, or when the inbox is full. */
int raft_io_deliver(struct raft_io *io, raft_id from, const char *from_address, const uint8_t *buf,
                    size_t len, char *err, size_t errlen);

/* The io's store (for its read-only info) and counters. */
struct raft_store *raft_io_store(struct raft_io *io);
void raft_io_get_stats(const struct raft_io *io, struct raft_io_stats *stats);

#endif
