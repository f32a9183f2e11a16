/*
 * tests/unit/test_raft_io_clamp.c — server/raft_io.c's workaround of
 * libraft 0.15 trusting a follower's log past what an AppendEntries checked
 * (found by tests/raftsim, docs/SIMULATION.md). One raft_io, no libraft:
 * this test plays libraft's part, receives AppendEntries through
 * raft_io_deliver and answers as libraft 0.15 does (its own last stored
 * index), and reads what the transport is given.
 *  - the leader_commit handed to libraft is at most prev_log_index + n_entries;
 *  - a successful result sent while handling that message, or from the
 *    callback of the append asked for it, claims at most that index;
 *  - a rejected result, and one sent outside those moments, go unchanged.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/raft_io.h"
#include "server/raft_wire.h"
#include "tests/unit/check.h"

static struct ev_loop *loop;
static struct raft_io io;
static struct raft_message sent[8]; /* decoded, in order */
static unsigned n_sent, n_recv, n_appended;
static raft_index seen_commit;
static struct raft_message kept; /* an AppendEntries whose entries are being appended */
static bool closed;

static int net_send(void *ctx, raft_id to, const char *address, const uint8_t *buf, size_t len)
{
	(void)ctx, (void)to, (void)address;
	char err[128];
	struct raft_message *m = &sent[n_sent % 8];
	raft_wire_message_release(m);
	if (!CHECK(raft_wire_decode(buf, len, m, err, sizeof(err)) == 0, "decode: %s", err))
		memset(m, 0, sizeof(*m));
	n_sent++;
	return 0;
}

static void send_cb(struct raft_io_send *req, int status)
{
	(void)status;
	free(req);
}

/* Sends an AppendEntries result as libraft 0.15 would: its last stored index. */
static void answer(raft_index rejected, raft_index last_stored)
{
	struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES_RESULT,
	                         .server_id = 1,
	                         .server_address = "127.0.0.1:8300"};
	m.append_entries_result.term = 5;
	m.append_entries_result.rejected = rejected;
	m.append_entries_result.last_log_index = last_stored;
	struct raft_io_send *req = calloc(1, sizeof(*req));
	CHECK(io.send(&io, req, &m, send_cb) == 0, "send");
}

static void append_cb(struct raft_io_append *req, int status)
{
	CHECK_INT(0, status, "the append is durable");
	n_appended++;
	answer(0, 20); /* libraft 0.15 after appending: its last stored */
	raft_wire_message_release(&kept);
	free(req);
}

static void recv_cb(struct raft_io *rio, struct raft_message *m)
{
	(void)rio;
	n_recv++;
	seen_commit = m->append_entries.leader_commit;
	if (m->append_entries.n_entries == 0) {
		answer(0, 13);  /* success: claims its stale entries 12, 13 too */
		answer(12, 13); /* a rejection: the hint is left alone */
		raft_wire_message_release(m);
		return;
	}
	kept = *m; /* the entries stay alive until the append's callback */
	struct raft_io_append *req = calloc(1, sizeof(*req));
	CHECK(io.append(&io, req, kept.append_entries.entries, kept.append_entries.n_entries,
	                append_cb) == 0,
	      "append");
}

static void tick_cb(struct raft_io *rio)
{
	(void)rio;
}

static void deliver(raft_index prev, unsigned n, raft_index commit)
{
	static uint8_t payload[2][8] = {{1}, {2}};
	struct raft_entry entries[2];
	for (unsigned i = 0; i < 2; i++)
		entries[i] = (struct raft_entry){
		        .term = 5, .type = RAFT_COMMAND, .buf = {payload[i], sizeof(payload[i])}};
	struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES};
	m.append_entries.term = 5;
	m.append_entries.prev_log_index = prev;
	m.append_entries.prev_log_term = 2;
	m.append_entries.leader_commit = commit;
	m.append_entries.entries = n ? entries : NULL;
	m.append_entries.n_entries = n;
	uint8_t buf[512];
	size_t len = raft_wire_encode(&m, buf, sizeof(buf));
	char err[128] = "";
	CHECK(len > 0 && raft_io_deliver(&io, 1, "127.0.0.1:8300", buf, len, err, sizeof(err)) == 0,
	      "deliver: %s", err);
}

static void run_until_sent(unsigned want)
{
	for (int i = 0; i < 1000 && n_sent < want; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

#define RESULT(i) (sent[(i) % 8].append_entries_result)

static void test_a_heartbeat_success_claims_only_prev_log_index(void)
{
	deliver(11, 0, 13);
	run_until_sent(2);
	CHECK_INT(1, n_recv, "the heartbeat reached libraft");
	CHECK_INT(11, seen_commit, "leader_commit cut to prev_log_index + 0");
	CHECK_INT(2, n_sent, "both answers went out");
	CHECK_INT(0, RESULT(0).rejected, "the first is a success");
	CHECK_INT(11, RESULT(0).last_log_index, "claiming prev_log_index, not its last stored 13");
	CHECK_INT(12, RESULT(1).rejected, "the rejection as it was");
	CHECK_INT(13, RESULT(1).last_log_index, "with its hint as it was");
}

static void test_outside_an_append_entries_nothing_changes(void)
{
	answer(0, 13);
	run_until_sent(3);
	CHECK_INT(3, n_sent, "sent");
	CHECK_INT(13, RESULT(2).last_log_index, "unchanged");
}

static void test_after_an_append_it_claims_prev_plus_entries(void)
{
	deliver(11, 2, 30);
	for (int i = 0; i < 1000 && n_appended < 1; i++)
		ev_run(loop, EVRUN_NOWAIT);
	CHECK_INT(13, seen_commit, "leader_commit cut to 11 + 2");
	CHECK_INT(1, n_appended, "the append completed");
	CHECK_INT(4, n_sent, "its answer went out");
	CHECK_INT(0, RESULT(3).rejected, "a success");
	CHECK_INT(13, RESULT(3).last_log_index,
	          "from the append's callback: 11 + 2, not its last stored 20");
}

static void close_cb(struct raft_io *rio)
{
	(void)rio;
	closed = true;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	loop = ev_loop_new(EVFLAG_AUTO);
	char dir[64] = "/tmp/test_raft_io_clamp.XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	char err[256] = "";
	struct raft_io_config cfg = {.loop = loop,
	                             .data_dir = dir,
	                             .map_size = 16u << 20,
	                             .transport = {NULL, net_send}};
	if (!CHECK(raft_io_create(&io, &cfg, err, sizeof(err)) == 0, "raft_io_create: %s", err))
		return check_exit_code();
	CHECK(io.init(&io, 2, "127.0.0.2:8300") == 0, "init");
	CHECK(io.start(&io, 100, tick_cb, recv_cb) == 0, "start");

	RUN(test_a_heartbeat_success_claims_only_prev_log_index);
	RUN(test_outside_an_append_entries_nothing_changes);
	RUN(test_after_an_append_it_claims_prev_plus_entries);

	io.close(&io, close_cb);
	for (int i = 0; i < 1000 && !closed; i++)
		ev_run(loop, EVRUN_NOWAIT);
	CHECK(closed, "the io closes");
	raft_io_destroy(&io);
	for (int i = 0; i < 8; i++)
		raft_wire_message_release(&sent[i]);
	ev_loop_destroy(loop);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
