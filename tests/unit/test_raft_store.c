/*
 * tests/unit/test_raft_store.c — server/raft_store.h: term, vote, entries
 * and snapshots survive a close and reopen; truncation and compaction
 * delete exactly what libraft asks; an aborted batch leaves nothing.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/raft_store.h"
#include "tests/unit/check.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct raft_store *reopen(struct raft_store *st, const char *dir)
{
	char err[256] = "";
	raft_store_close(st);
	st = raft_store_open(dir, 64u << 20, err, sizeof(err));
	CHECK(st != NULL, "reopen %s: %s", dir, err);
	return st;
}

static void free_loaded(struct raft_snapshot *s, struct raft_entry *e, size_t n)
{
	if (s != NULL) {
		raft_configuration_close(&s->configuration);
		for (unsigned i = 0; i < s->n_bufs; i++)
			raft_free(s->bufs[i].base);
		raft_free(s->bufs);
		raft_free(s);
	}
	if (n > 0)
		raft_free(e[0].batch);
	raft_free(e);
}

/* Appends entries [from, to] with payload "e<index>" in one batch. */
static void append_range(struct raft_store *st, raft_index from, raft_index to, raft_term term)
{
	char bufs[64][16];
	struct raft_entry e[64];
	unsigned n = 0;
	for (raft_index i = from; i <= to; i++, n++) {
		snprintf(bufs[n], sizeof(bufs[n]), "e%llu", i);
		e[n] = (struct raft_entry){
		        .term = term, .type = RAFT_COMMAND, .buf = {bufs[n], strlen(bufs[n])}};
	}
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_append(st, e, n), "%s", raft_store_errmsg(st));
	CHECK_INT(0, raft_store_commit(st), "%s", raft_store_errmsg(st));
}

static void test_term_vote_and_log_survive_a_reopen(void)
{
	char dir[] = "/tmp/test_raft_store.XXXXXX", err[256] = "";
	REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
	char sub[64];
	snprintf(sub, sizeof(sub), "%s/raft", dir);
	struct raft_store *st = raft_store_open(sub, 64u << 20, err, sizeof(err));
	REQUIRE(st != NULL, "%s", err);

	raft_term term = 9;
	raft_id vote = 9;
	struct raft_snapshot *s;
	struct raft_entry *e;
	raft_index start;
	size_t n;
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n));
	CHECK(term == 0 && vote == 0 && s == NULL && start == 1 && n == 0, "a new store is empty");

	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	raft_configuration_add(&conf, 2, "n2", RAFT_VOTER);
	CHECK_INT(0, raft_store_bootstrap(st, &conf), "%s", raft_store_errmsg(st));
	CHECK_INT(RAFT_CANTBOOTSTRAP, raft_store_bootstrap(st, &conf));
	CHECK_HAS(raft_store_errmsg(st), "bootstrap");
	CHECK_INT(0, raft_store_set_term(st, 3));
	CHECK_INT(0, raft_store_set_vote(st, 2));
	append_range(st, 2, 10, 3);

	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_truncate(st, 8));
	CHECK_INT(0, raft_store_commit(st));
	append_range(st, 8, 8, 3); /* the next append goes where the cut was */

	CHECK_INT(0, raft_store_begin(st));
	struct raft_entry lost = {.term = 3, .type = RAFT_COMMAND, .buf = {"x", 1}};
	CHECK_INT(0, raft_store_append(st, &lost, 1));
	raft_store_abort(st);

	st = reopen(st, sub);
	REQUIRE(st != NULL, "reopened");
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n), "%s",
	          raft_store_errmsg(st));
	CHECK_INT(3, term);
	CHECK_INT(2, vote);
	CHECK(s == NULL, "no snapshot");
	CHECK_INT(1, start);
	REQUIRE_INT(8, n, "entries 1..8: 9 and 10 truncated, the aborted one never written");
	CHECK_INT(RAFT_CHANGE, e[0].type);
	CHECK_INT(1, e[0].term);
	CHECK(e[7].buf.len == 2 && memcmp(e[7].buf.base, "e8", 2) == 0, "entry 8's payload");
	free_loaded(s, e, n);

	CHECK_INT(0, raft_store_set_term(st, 4));
	st = reopen(st, sub);
	REQUIRE(st != NULL, "reopened");
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n));
	CHECK(term == 4 && vote == 0, "a new term clears the vote (term %llu vote %llu)", term,
	      vote);
	free_loaded(s, e, n);
	raft_configuration_close(&conf);
	raft_store_close(st);
	rm_tree(dir);
}

static void test_snapshots_compact_the_log(void)
{
	char dir[] = "/tmp/test_raft_store.XXXXXX", err[256] = "";
	REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
	struct raft_store *st = raft_store_open(dir, 64u << 20, err, sizeof(err));
	REQUIRE(st != NULL, "%s", err);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	CHECK_INT(0, raft_store_bootstrap(st, &conf));
	append_range(st, 2, 40, 2);

	/* a snapshot at 30 keeping 8 trailing entries: 1..22 go */
	char part1[] = "state-", part2[] = "at-30";
	struct raft_buffer bufs[2] = {{part1, 6}, {part2, 5}};
	struct raft_snapshot snap = {.index = 30,
	                             .term = 2,
	                             .configuration = conf,
	                             .configuration_index = 1,
	                             .bufs = bufs,
	                             .n_bufs = 2};
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_snapshot_put(st, &snap, 8), "%s", raft_store_errmsg(st));
	CHECK_INT(0, raft_store_commit(st));
	struct raft_store_info info;
	raft_store_info(st, &info);
	CHECK_INT(23, info.first_index);
	CHECK_INT(40, info.last_index);
	CHECK_INT(30, info.snapshot_index);

	st = reopen(st, dir);
	REQUIRE(st != NULL, "reopened");
	raft_term term;
	raft_id vote;
	struct raft_snapshot *s;
	struct raft_entry *e;
	raft_index start;
	size_t n;
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n));
	REQUIRE(s != NULL, "the snapshot is loaded");
	CHECK_INT(30, s->index);
	CHECK_INT(2, s->term);
	CHECK_INT(1, s->configuration.n);
	CHECK_STR("n1", s->configuration.servers[0].address);
	CHECK(s->n_bufs == 1 && s->bufs[0].len == 11 &&
	              memcmp(s->bufs[0].base, "state-at-30", 11) == 0,
	      "its buffers are stored as one");
	CHECK_INT(23, start);
	CHECK_INT(18, n, "entries 23..40");
	free_loaded(s, e, n);

	/* installing a leader's snapshot (trailing 0) replaces the whole log */
	snap.index = 100;
	snap.term = 5;
	snap.n_bufs = 1;
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_snapshot_put(st, &snap, 0));
	CHECK_INT(0, raft_store_commit(st));
	append_range(st, 101, 102, 5);
	st = reopen(st, dir);
	REQUIRE(st != NULL, "reopened");
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n));
	CHECK(s != NULL && s->index == 100, "the installed snapshot");
	CHECK_INT(101, start, "appends resume right after it");
	CHECK_INT(2, n);
	free_loaded(s, e, n);
	raft_configuration_close(&conf);
	raft_store_close(st);
	rm_tree(dir);
}

static bool exists(const char *dir, const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* A snapshot in a file of its own (written first, then recorded in a
 * batch), as server/raft_io.c stores them: loaded from the file after a
 * reopen, replacing one kept in LMDB; the older file goes after the commit
 * that replaces it; a file gone or cut short is a corrupt store. */
static void test_snapshot_files(void)
{
	char dir[] = "/tmp/test_raft_store.XXXXXX", err[256] = "";
	REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
	struct raft_store *st = raft_store_open(dir, 64u << 20, err, sizeof(err));
	REQUIRE(st != NULL, "%s", err);
	CHECK_STR(dir, raft_store_dir(st));
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	CHECK_INT(0, raft_store_bootstrap(st, &conf));
	append_range(st, 2, 40, 2);

	/* first one in LMDB (an older store's form) */
	char a[] = "in-lmdb";
	struct raft_buffer ba = {a, 7};
	struct raft_snapshot snap = {.index = 10,
	                             .term = 2,
	                             .configuration = conf,
	                             .configuration_index = 1,
	                             .bufs = &ba,
	                             .n_bufs = 1};
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_snapshot_put(st, &snap, 8));
	CHECK_INT(0, raft_store_commit(st));

	/* then one in a file */
	char p1[] = "from-", p2[] = "a-file";
	struct raft_buffer bb[2] = {{p1, 5}, {p2, 6}};
	snap.index = 30;
	snap.bufs = bb;
	snap.n_bufs = 2;
	CHECK_INT(0, raft_store_snapshot_write(dir, &snap, err, sizeof(err)), "%s", err);
	CHECK(exists(dir, "snapshot-2-30") && !exists(dir, "snapshot-2-30.tmp"),
	      "written under its name, no temporary left");
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_snapshot_put_file(st, &snap, 8), "%s", raft_store_errmsg(st));
	CHECK_INT(0, raft_store_commit(st));
	struct raft_store_info info;
	raft_store_info(st, &info);
	CHECK_INT(30, info.snapshot_index);
	CHECK_INT(23, info.first_index, "entries up to 30 - 8 deleted");

	st = reopen(st, dir);
	REQUIRE(st != NULL, "reopened");
	raft_term term;
	raft_id vote;
	struct raft_snapshot *s;
	struct raft_entry *e;
	raft_index start;
	size_t n;
	CHECK_INT(0, raft_store_load(st, &term, &vote, &s, &start, &e, &n), "%s",
	          raft_store_errmsg(st));
	REQUIRE(s != NULL, "the snapshot is loaded");
	CHECK(s->index == 30 && s->n_bufs == 1 && s->bufs[0].len == 11 &&
	              memcmp(s->bufs[0].base, "from-a-file", 11) == 0,
	      "its data comes from the file");
	free_loaded(s, e, n);
	struct raft_snapshot *g = NULL;
	CHECK_INT(0, raft_store_snapshot_get(st, &g));
	CHECK(g != NULL && g->bufs[0].len == 11, "snapshot_get reads the file too");
	free_loaded(g, NULL, 0);

	/* a newer one: the file of the older goes after the commit; a file
	 * written for a later snapshot (being written) stays */
	snap.index = 35;
	CHECK_INT(0, raft_store_snapshot_write(dir, &snap, err, sizeof(err)), "%s", err);
	snap.index = 38;
	CHECK_INT(0, raft_store_snapshot_write(dir, &snap, err, sizeof(err)), "%s", err);
	snap.index = 35;
	CHECK_INT(0, raft_store_begin(st));
	CHECK_INT(0, raft_store_snapshot_put_file(st, &snap, 2));
	CHECK_INT(0, raft_store_commit(st));
	CHECK(!exists(dir, "snapshot-2-30"), "the replaced snapshot's file is deleted");
	CHECK(exists(dir, "snapshot-2-35"), "the current one is kept");
	CHECK(exists(dir, "snapshot-2-38"), "a later one (being written) is kept");
	st = reopen(st, dir);
	REQUIRE(st != NULL, "reopened");
	CHECK(!exists(dir, "snapshot-2-38"), "at open, every file but the current one goes");

	/* the file cut short: the store says corrupt rather than load it */
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshot-2-35", dir);
	CHECK_INT(0, truncate(path, 4));
	CHECK_INT(RAFT_CORRUPT, raft_store_load(st, &term, &vote, &s, &start, &e, &n));
	CHECK(strstr(raft_store_errmsg(st), "snapshot-2-35") != NULL, "names the file: %s",
	      raft_store_errmsg(st));
	unlink(path);
	CHECK_INT(RAFT_CORRUPT, raft_store_load(st, &term, &vote, &s, &start, &e, &n),
	          "a missing file too");
	raft_configuration_close(&conf);
	raft_store_close(st);
	rm_tree(dir);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(test_term_vote_and_log_survive_a_reopen);
	RUN(test_snapshots_compact_the_log);
	RUN(test_snapshot_files);
	return check_exit_code();
}
