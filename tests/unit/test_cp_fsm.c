/*
 * tests/unit/test_cp_fsm.c — the CP state machine (agent/cp_fsm.c) applying
 * Raft entries to a real replica (kv/kv.h on LMDB), and the indexes clients
 * then see: every record an entry writes carries the entry's Raft index, so
 * ModifyIndex, CreateIndex, CAS, the key and prefix indexes and the watches
 * of blocking queries are Raft indexes; the first entry empties an AP
 * replica (whose indexes were the versions' index form); a Raft snapshot
 * restored on another server, a client replica merging the records, and a
 * reopened replica show the same indexes; a restore entry (/v1/snapshot)
 * gives what it writes its own index; the last version a pinned write used
 * is read back as a version, not as an index.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <ftw.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cp_fsm.h"
#include "agent/cp_wire.h"
#include "kv/hlc.h"
#include "kv/kv.h"
#include "kv/store.h"
#include "tests/unit/check.h"

static char tmpdir[256];
static struct ev_loop *loop;

static int rm_entry(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
	(void)sb;
	(void)f;
	(void)ftw;
	return remove(p);
}

static struct kv *open_kv(const char *name, const char *node)
{
	char dir[512], err[256];
	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	mkdir(dir, 0700);
	struct kv_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = dir;
	cfg.node_name = node;
	cfg.sync_port = -1;
	cfg.map_size = 64u << 20;
	struct kv *kv = kv_new(loop, &cfg, err, sizeof(err));
	if (kv == NULL)
		printf("  kv_new %s: %s\n", dir, err);
	return kv;
}

struct wr {
	int done, result;
};

static void wr_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct wr *w = ud;
	w->done = 1;
	w->result = r;
}

/* Let the driver commit the open batch (once per loop turn). */
static void settle(void)
{
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
}

/* Apply one write entry at Raft index `index` as a follower would (the
 * leader's base from this replica's clock), committed: the kv_result, or
 * -100 when the FSM skipped it. */
static int apply(struct cp_fsm *f, struct kv *kv, uint64_t index, const struct kv_op *ops, size_t n)
{
	uint64_t base = cp_fsm_base(f, kv_next_version(kv));
	size_t len = cp_wire_entry_size("leader", ops, n);
	uint8_t *buf = malloc(len);
	cp_wire_entry_encode(buf, base, "leader", ops, n);
	struct wr w = {0, 0};
	bool called = cp_fsm_apply(f, index, buf, len, wr_done, &w);
	for (int i = 0; i < 100 && !(w.done && i > 0); i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	free(buf);
	return called ? (w.done ? w.result : -101) : -100;
}

static struct kv_op op(enum kv_op_verb v, const char *key, const char *val, uint64_t index)
{
	return (struct kv_op){v, key, strlen(key), val, val ? strlen(val) : 0, 0, index, NULL, 0};
}

static int keep_entry(void *ud, const struct kv_entry *e)
{
	*(struct kv_entry *)ud = *e;
	return 0;
}

/* ModifyIndex and CreateIndex of key, -1/-1 when absent. */
static void indexes(struct kv *kv, const char *key, long long *mod, long long *create)
{
	struct kv_entry e;
	*mod = *create = -1;
	if (kv_get(kv, key, strlen(key), keep_entry, &e) == 1) {
		*mod = (long long)e.modify_index;
		*create = (long long)e.create_index;
	}
}

#define CHECK_IDX(kv, key, m, c)                                                                   \
	do {                                                                                       \
		long long m_, c_;                                                                  \
		indexes(kv, key, &m_, &c_);                                                        \
		CHECK_INT((long long)(m), m_, "ModifyIndex of %s", key);                           \
		CHECK_INT((long long)(c), c_, "CreateIndex of %s", key);                           \
	} while (0)

struct fired {
	int n;
	bool changed;
};

static void watch_cb(void *ud, bool changed)
{
	struct fired *f = ud;
	f->n++;
	f->changed = changed;
}

/* Encoded records of a replica as a RECORDS body (u32 n, then u16 key_len,
 * key, record each), for byte comparisons and for merging. */
static int dump_cb(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	return cp_dump_record(ud, key, key_len, r);
}

static struct cp_dump dump_of(struct kv *kv)
{
	struct cp_dump d = {raft_malloc(4), 4, 4, 0};
	kv_dump(kv, dump_cb, &d);
	d.p[0] = (uint8_t)(d.n >> 24);
	d.p[1] = (uint8_t)(d.n >> 16);
	d.p[2] = (uint8_t)(d.n >> 8);
	d.p[3] = (uint8_t)d.n;
	return d;
}

static int max_hlc_cb(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)key;
	(void)key_len;
	uint64_t *m = ud;
	if (r->hlc > *m)
		*m = r->hlc;
	return 0;
}

/*
 * The whole life of a CP replica's indexes, on one server, then on a second
 * server restored from its Raft snapshot, on a client fed its records, and
 * after a reopen.
 */
static void test_entries_write_raft_indexes(void)
{
	struct kv *kv = open_kv("s1", "s1");
	REQUIRE(kv != NULL, "kv != NULL");
	struct cp_fsm f;
	cp_fsm_init(&f, kv_engine_of(kv), NULL, NULL);
	CHECK_BOOL(true, cp_fsm_fresh(&f), "a new replica is fresh");

	/* an AP write first: the versions' index form (ms since 2024 << 12) */
	struct kv_op ap = op(KV_OP_SET, "ap/x", "1", 0);
	char err[200];
	struct wr w = {0, 0};
	REQUIRE(kv_write(kv, &ap, 1, wr_done, &w, err, sizeof(err)) >= 0, "%s", err);
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	long long m, c;
	indexes(kv, "ap/x", &m, &c);
	CHECK(m > (1LL << 40), "an AP write shows the index form (%lld)", m);

	/* a client replica with AP records of its own (written before the
	 * servers' entries: a client that switched to CP writes no more) */
	struct kv *cl = open_kv("client", "client");
	REQUIRE(cl != NULL, "cl != NULL");
	struct kv_op cap = op(KV_OP_SET, "a", "client's AP value", 0);
	w = (struct wr){0, 0};
	REQUIRE(kv_write(cl, &cap, 1, wr_done, &w, err, sizeof(err)) >= 0, "%s", err);
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	indexes(cl, "a", &m, &c);
	CHECK(m > (1LL << 40), "the client's AP write shows the index form (%lld)", m);

	/* the first entry empties the replica, then writes at its index */
	struct kv_op a1 = op(KV_OP_SET, "a", "1", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 5, &a1, 1), "entry 5");
	CHECK_INT(0, kv_get(kv, "ap/x", 4, NULL, NULL), "the first entry emptied the replica");
	CHECK_IDX(kv, "a", 5, 5);
	struct kv_entry e;
	REQUIRE(kv_get(kv, "a", 1, keep_entry, &e) == 1, "get a");
	CHECK_BOOL(true, e.raft, "the entry says its indexes are Raft's");
	CHECK_INT(5, (long long)kv_index(kv, "a", 1, false), "X-Consul-Index of a");
	CHECK_INT(5, (long long)kv_index(kv, "", 0, true), "the store's index");

	struct kv_op a2 = op(KV_OP_SET, "a", "2", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 6, &a2, 1), "entry 6");
	CHECK_IDX(kv, "a", 6, 5);

	struct kv_op cas_old = op(KV_OP_CAS, "a", "x", 5);
	CHECK_INT(KV_FAILED, apply(&f, kv, 7, &cas_old, 1), "CAS with the old index");
	CHECK_IDX(kv, "a", 6, 5);
	CHECK_INT(7, (long long)kv_index(kv, "", 0, true),
	          "a failed entry still moves the store's index (its applied mark)");
	struct kv_op cas_ok = op(KV_OP_CAS, "a", "3", 6);
	CHECK_INT(KV_OK, apply(&f, kv, 8, &cas_ok, 1), "CAS with the current index");
	CHECK_IDX(kv, "a", 8, 5);
	struct kv_op cas_new = op(KV_OP_CAS, "new", "n", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 9, &cas_new, 1), "CAS 0 creates");
	CHECK_IDX(kv, "new", 9, 9);

	struct kv_op txn[3] = {op(KV_OP_CHECK_INDEX, "a", NULL, 8), op(KV_OP_SET, "b/1", "b", 0),
	                       op(KV_OP_SET, "b/2", "c", 0)};
	CHECK_INT(KV_OK, apply(&f, kv, 10, txn, 3), "txn with check-index");
	CHECK_IDX(kv, "b/1", 10, 10);
	CHECK_IDX(kv, "b/2", 10, 10);
	CHECK_INT(10, (long long)kv_index(kv, "b/", 2, true), "prefix index");
	struct kv_op dcas = op(KV_OP_DELETE_CAS, "b/1", NULL, 9);
	CHECK_INT(KV_FAILED, apply(&f, kv, 11, &dcas, 1), "delete-cas with a wrong index");
	dcas.index = 10;
	CHECK_INT(KV_OK, apply(&f, kv, 12, &dcas, 1), "delete-cas with the index");
	CHECK_INT(0, kv_get(kv, "b/1", 3, NULL, NULL), "b/1 deleted");
	CHECK_INT(12, (long long)kv_index(kv, "b/1", 3, false), "a tombstone's index");
	CHECK_INT(12, (long long)kv_index(kv, "b/", 2, true), "prefix index after the delete");
	struct kv_op again = op(KV_OP_SET, "b/1", "again", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 13, &again, 1), "entry 13");
	CHECK_IDX(kv, "b/1", 13, 13);

	/* blocking: a watch at a's index wakes on a's next write only */
	struct fired fw = {0, false};
	struct kv_watch *wa = kv_watch_add(kv, "a", 1, false, 8, 60000, watch_cb, &fw);
	REQUIRE(wa != NULL, "wa != NULL");
	struct kv_op other = op(KV_OP_SET, "c", "c", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 14, &other, 1), "entry 14");
	CHECK_INT(0, fw.n, "another key's write does not wake a's watch");
	struct kv_op a4 = op(KV_OP_SET, "a", "4", 0);
	CHECK_INT(KV_OK, apply(&f, kv, 15, &a4, 1), "entry 15");
	CHECK_INT(1, fw.n, "a's write wakes it");
	CHECK_BOOL(true, fw.changed);
	CHECK_INT(15, (long long)kv_index(kv, "a", 1, false), "and a's index is the entry's");
	CHECK_IDX(kv, CP_APPLIED_KEY, 15, 5);
	CHECK_INT(15, (long long)f.applied, "applied");

	/* a replayed entry is skipped and changes nothing */
	CHECK_INT(-100, apply(&f, kv, 15, &a1, 1), "entry 15 again");
	CHECK_IDX(kv, "a", 15, 5);

	/* a Raft snapshot restored on another server: the same bytes */
	uint8_t *snap;
	size_t snap_len;
	REQUIRE(cp_fsm_snapshot(&f, &snap, &snap_len) == 0,
	        "cp_fsm_snapshot(&f, &snap, &snap_len) == 0");
	struct kv *kv2 = open_kv("s2", "s2");
	REQUIRE(kv2 != NULL, "kv2 != NULL");
	struct cp_fsm f2;
	cp_fsm_init(&f2, kv_engine_of(kv2), NULL, NULL);
	CHECK_INT(0, cp_fsm_restore(&f2, snap, snap_len), "restore");
	settle();
	CHECK_INT(15, (long long)f2.applied, "applied index restored");
	CHECK_IDX(kv2, "a", 15, 5);
	CHECK_IDX(kv2, "b/1", 13, 13);
	CHECK_INT(15, (long long)kv_index(kv2, "", 0, true), "the store's index restored");
	struct cp_dump d1 = dump_of(kv), d2 = dump_of(kv2);
	CHECK(d1.len == d2.len && memcmp(d1.p, d2.p, d1.len) == 0,
	      "the restored replica is byte for byte the same (%zu, %zu bytes)", d1.len, d2.len);
	struct kv_op a5 = op(KV_OP_SET, "a", "5", 0);
	CHECK_INT(KV_OK, apply(&f2, kv2, 16, &a5, 1), "the restored server applies entry 16");
	CHECK_IDX(kv2, "a", 16, 5);

	/* the client: the servers' records replace its AP ones */
	w = (struct wr){0, 0};
	REQUIRE(kv_merge_body(cl, d1.p, d1.len, wr_done, &w, err, sizeof(err)) == 0, "%s", err);
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	CHECK_IDX(cl, "a", 15, 5);
	CHECK_IDX(cl, "b/1", 13, 13);
	CHECK_INT(15, (long long)kv_index(cl, "", 0, true), "the client's store index");
	CHECK_INT(13, (long long)kv_index(cl, "b/", 2, true), "the client's prefix index");
	kv_free(cl);

	/* a restore entry (/v1/snapshot): what it writes gets its index; keys
	 * it lacks are deleted at that index; CreateIndex kept for keys that
	 * lived on */
	struct kv *bk = open_kv("backup", "bk");
	REQUIRE(bk != NULL, "bk != NULL");
	struct kv_op bops[2] = {op(KV_OP_SET, "a", "from backup", 0),
	                        op(KV_OP_SET, "z", "only in backup", 0)};
	w = (struct wr){0, 0};
	REQUIRE(kv_write(bk, bops, 2, wr_done, &w, err, sizeof(err)) >= 0, "%s", err);
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	struct cp_dump bd = dump_of(bk);
	kv_free(bk);
	size_t rlen = cp_wire_restore_entry_size("leader", bd.len);
	uint8_t *rent = malloc(rlen);
	cp_wire_restore_entry_encode(rent, cp_fsm_base(&f, kv_next_version(kv)), "leader", bd.p,
	                             bd.len);
	w = (struct wr){0, 0};
	CHECK_BOOL(true, cp_fsm_apply(&f, 20, rent, rlen, wr_done, &w), "restore entry 20");
	for (int i = 0; i < 100 && !w.done; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
	CHECK_INT(KV_OK, w.result, "restore applied");
	CHECK_IDX(kv, "a", 20, 5);
	CHECK_IDX(kv, "z", 20, 20);
	CHECK_INT(0, kv_get(kv, "c", 1, NULL, NULL), "c (not in the backup) deleted");
	CHECK_INT(20, (long long)kv_index(kv, "c", 1, false), "at the restore's index");
	free(rent);
	raft_free(bd.p);

	/* reopened: the same indexes; the last pinned version is a version */
	kv_free(kv);
	kv = open_kv("s1", "s1");
	REQUIRE(kv != NULL, "kv != NULL");
	CHECK_IDX(kv, "a", 20, 5);
	CHECK_IDX(kv, "z", 20, 20);
	cp_fsm_init(&f, kv_engine_of(kv), NULL, NULL);
	cp_fsm_load(&f);
	CHECK_INT(20, (long long)f.applied, "applied after a reopen");
	uint64_t top = 0;
	kv_dump(kv, max_hlc_cb, &top);
	CHECK_INT((long long)top, (long long)f.last_version,
	          "last_version is the applied mark's version, not its index");
	CHECK(cp_fsm_base(&f, 2) > top, "a base proposed from a slow clock passes every version");
	CHECK_BOOL(false, cp_fsm_fresh(&f));

	raft_free(snap);
	raft_free(d1.p);
	raft_free(d2.p);
	kv_free(kv);
	kv_free(kv2);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_cp_fsm.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	loop = ev_loop_new(EVFLAG_AUTO);
	RUN(test_entries_write_raft_indexes);
	ev_loop_destroy(loop);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit_code();
}
