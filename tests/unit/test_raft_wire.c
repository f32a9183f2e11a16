/*
 * tests/unit/test_raft_wire.c — server/raft_wire.h: every Raft message
 * type and a configuration survive encode/decode field for field, and bad
 * bytes are refused with the field named, before anything is allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "server/raft_wire.h"
#include "tests/unit/check.h"

/* Encodes m, decodes the bytes into *out; the byte count, or 0. */
static size_t round_trip(const struct raft_message *m, struct raft_message *out, uint8_t **bytes)
{
	char err[256] = "";
	size_t n = raft_wire_size(m);
	if (!CHECK(n > 0, "type %u encodes", m->type))
		return 0;
	uint8_t *b = malloc(n);
	CHECK_INT(n, raft_wire_encode(m, b, n));
	CHECK_INT(0, raft_wire_encode(m, b, n - 1), "one byte short: refused");
	if (!CHECK(raft_wire_decode(b, n, out, err, sizeof(err)) == 0, "decode: %s", err)) {
		free(b);
		return 0;
	}
	CHECK_INT(m->type, out->type);
	*bytes = b;
	return n;
}

static void test_append_entries_round_trip(void)
{
	char a[] = "set x=1", c[] = "\x01\x02";
	struct raft_entry e[3] = {
	        {.term = 7, .type = RAFT_COMMAND, .buf = {a, sizeof(a) - 1}},
	        {.term = 7, .type = RAFT_BARRIER, .buf = {NULL, 0}},
	        {.term = 300, .type = RAFT_CHANGE, .buf = {c, 2}},
	};
	struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES};
	m.append_entries = (struct raft_append_entries){.term = 300,
	                                                .prev_log_index = 1ull << 40,
	                                                .prev_log_term = 299,
	                                                .leader_commit = 12345,
	                                                .entries = e,
	                                                .n_entries = 3};
	struct raft_message d;
	uint8_t *b = NULL;
	size_t n = round_trip(&m, &d, &b);
	REQUIRE(n > 0, "round trip");
	const struct raft_append_entries *x = &d.append_entries;
	CHECK_INT(300, x->term);
	CHECK_INT(1ull << 40, x->prev_log_index);
	CHECK_INT(299, x->prev_log_term);
	CHECK_INT(12345, x->leader_commit);
	REQUIRE_INT(3, x->n_entries);
	CHECK_INT(7, x->entries[0].term);
	CHECK_INT(RAFT_BARRIER, x->entries[1].type);
	CHECK_INT(0, x->entries[1].buf.len);
	CHECK_INT(300, x->entries[2].term);
	CHECK(x->entries[0].buf.len == 7 && memcmp(x->entries[0].buf.base, "set x=1", 7) == 0,
	      "payload 0");
	CHECK(memcmp(x->entries[2].buf.base, c, 2) == 0, "payload 2");
	CHECK(x->entries[0].batch == x->entries[2].batch && x->entries[0].batch != NULL,
	      "one batch for all entries, as libraft frees it");
	raft_wire_message_release(&d);
	free(b);

	struct raft_message hb = {.type = RAFT_IO_APPEND_ENTRIES};
	hb.append_entries.term = 1;
	n = round_trip(&hb, &d, &b);
	REQUIRE(n > 0, "round trip");
	CHECK(d.append_entries.entries == NULL && d.append_entries.n_entries == 0,
	      "a heartbeat carries no entries");
	CHECK_INT(7, n, "a heartbeat is 7 bytes");
	raft_wire_message_release(&d);
	free(b);
}

static void test_small_messages_round_trip(void)
{
	struct raft_message d;
	uint8_t *b = NULL;
	struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE};
	m.request_vote = (struct raft_request_vote){9, 3, 100, 8, true, true};
	REQUIRE(round_trip(&m, &d, &b) > 0, "round trip");
	CHECK_INT(9, d.request_vote.term);
	CHECK_INT(3, d.request_vote.candidate_id);
	CHECK_INT(100, d.request_vote.last_log_index);
	CHECK_INT(8, d.request_vote.last_log_term);
	CHECK_BOOL(true, d.request_vote.disrupt_leader);
	CHECK_BOOL(true, d.request_vote.pre_vote);
	free(b);

	m = (struct raft_message){.type = RAFT_IO_REQUEST_VOTE_RESULT};
	m.request_vote_result = (struct raft_request_vote_result){10, true, raft_tribool_false};
	REQUIRE(round_trip(&m, &d, &b) > 0, "round trip");
	CHECK_INT(10, d.request_vote_result.term);
	CHECK_BOOL(true, d.request_vote_result.vote_granted);
	CHECK_INT(raft_tribool_false, d.request_vote_result.pre_vote);
	free(b);

	m = (struct raft_message){.type = RAFT_IO_APPEND_ENTRIES_RESULT};
	m.append_entries_result = (struct raft_append_entries_result){11, 57, 60};
	REQUIRE(round_trip(&m, &d, &b) > 0, "round trip");
	CHECK_INT(11, d.append_entries_result.term);
	CHECK_INT(57, d.append_entries_result.rejected);
	CHECK_INT(60, d.append_entries_result.last_log_index);
	free(b);

	m = (struct raft_message){.type = RAFT_IO_TIMEOUT_NOW};
	m.timeout_now = (struct raft_timeout_now){12, 99, UINT64_MAX};
	REQUIRE(round_trip(&m, &d, &b) > 0, "round trip");
	CHECK_INT(12, d.timeout_now.term);
	CHECK_INT(99, d.timeout_now.last_log_index);
	CHECK(d.timeout_now.last_log_term == UINT64_MAX, "64-bit values survive");
	free(b);
}

static void test_install_snapshot_round_trip(void)
{
	struct raft_message m = {.type = RAFT_IO_INSTALL_SNAPSHOT}, d;
	struct raft_install_snapshot *s = &m.install_snapshot;
	char data[] = "the state machine";
	raft_configuration_init(&s->conf);
	raft_configuration_add(&s->conf, 1, "127.0.0.1:8300", RAFT_VOTER);
	raft_configuration_add(&s->conf, 2, "127.0.0.2:8300", RAFT_VOTER);
	raft_configuration_add(&s->conf, 900, "[::1]:8300", RAFT_SPARE);
	s->term = 4;
	s->last_index = 640;
	s->last_term = 3;
	s->conf_index = 1;
	s->data = (struct raft_buffer){data, sizeof(data)};
	uint8_t *b = NULL;
	size_t n = round_trip(&m, &d, &b);
	raft_configuration_close(&s->conf);
	REQUIRE(n > 0, "round trip");
	const struct raft_install_snapshot *x = &d.install_snapshot;
	CHECK_INT(640, x->last_index);
	CHECK_INT(3, x->last_term);
	CHECK_INT(1, x->conf_index);
	REQUIRE_INT(3, x->conf.n);
	CHECK_STR("[::1]:8300", x->conf.servers[2].address);
	CHECK_INT(900, x->conf.servers[2].id);
	CHECK_INT(RAFT_SPARE, x->conf.servers[2].role);
	CHECK(x->data.len == sizeof(data) && memcmp(x->data.base, data, sizeof(data)) == 0, "data");
	raft_wire_message_release(&d);
	free(b);
}

/* Decoding bytes fails, err naming `field`, and leaves nothing allocated. */
static void refused(const uint8_t *b, size_t n, const char *field)
{
	struct raft_message d;
	char err[256] = "";
	CHECK_INT(-1, raft_wire_decode(b, n, &d, err, sizeof(err)), "expected a refusal for %s",
	          field);
	CHECK_HAS(err, field);
}

static void test_bad_bytes_name_the_field(void)
{
	/* version 1, AppendEntries, term 5, prev 1, prev term 1, commit 1, one
	 * entry (term 5, command, 3 bytes) "abc" */
	const uint8_t good[] = {1, 1, 5, 1, 1, 1, 1, 5, 1, 3, 'a', 'b', 'c'};
	struct raft_message d;
	char err[256] = "";
	REQUIRE(raft_wire_decode(good, sizeof(good), &d, err, sizeof(err)) == 0, "%s", err);
	raft_wire_message_release(&d);
	for (size_t cut = 0; cut < sizeof(good); cut++)
		CHECK_INT(-1, raft_wire_decode(good, cut, &d, err, sizeof(err)),
		          "a message cut at %zu bytes", cut);

	refused((const uint8_t[]){2, 1}, 2, "version");
	refused((const uint8_t[]){1, 9}, 2, "type");
	refused((const uint8_t[]){1, 6, 0x85, 0x00, 1, 1}, 6, "term: padded varint");
	refused((const uint8_t[]){1, 6, 1, 1, 1, 0}, 6, "timeout_now: 1 trailing bytes");
	refused((const uint8_t[]){1, 1, 5, 1, 1, 1, 1, 5, 9, 3, 'a', 'b', 'c'}, 13,
	        "entry 0: type");
	refused((const uint8_t[]){1, 1, 5, 1, 1, 1, 1, 5, 1, 4, 'a', 'b', 'c'}, 13, "entry 0: len");
	/* a count of 2^60 entries in a 12-byte message: refused before any
	 * allocation */
	refused((const uint8_t[]){1, 1, 5, 1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	                          0x10},
	        15, "n_entries");
	refused((const uint8_t[]){1, 3, 1, 1, 1, 1, 4}, 7, "request_vote: flags");
	refused((const uint8_t[]){1, 4, 1, 2, 0}, 5, "vote_granted");
	/* InstallSnapshot whose configuration names server id 0 */
	refused((const uint8_t[]){1, 5, 1, 1, 1, 1, 1, 0, 1, 1, 'a', 0}, 12, "id: zero");
	/* ... and one naming id 1 twice */
	refused((const uint8_t[]){1, 5, 1, 1, 1, 1, 2, 1, 1, 1, 'a', 1, 1, 1, 'b', 0}, 16,
	        "server 1");
	/* ... and an address with a NUL in it */
	refused((const uint8_t[]){1, 5, 1, 1, 1, 1, 1, 1, 1, 2, 'a', 0, 0}, 13, "NUL");
	/* ... and a data length that disagrees with what follows */
	refused((const uint8_t[]){1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 'a', 3, 'x'}, 13, "data");
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_append_entries_round_trip);
	RUN(test_small_messages_round_trip);
	RUN(test_install_snapshot_round_trip);
	RUN(test_bad_bytes_name_the_field);
	return check_exit_code();
}
