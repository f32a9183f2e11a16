/*
 * agent/cp_fsm.c — see cp_fsm.h.
 *
 * An entry (agent/cp_wire.h) is a request's ops, the version the leader
 * stamped (base) and the writer's node. Every server applies it with
 * kv_engine_write_pinned at base' = max(base, last version applied + 1), so
 * all servers write the same records; the same batch writes CP_APPLIED_KEY
 * ("<raft index>") whose version is the last one used. Every record an
 * entry writes carries the entry's Raft index (kv/record.h), which is what
 * clients see as its ModifyIndex (kv_rec_index). An entry at or below
 * the index stored there is already in the replica and is skipped (libraft
 * replays the log after a restart). The first entry a fresh group applies
 * empties the replica first, so every server starts from the same (empty)
 * state. A snapshot is the whole replica.
 */
#define _GNU_SOURCE
#include "agent/cp_fsm.h"

#include <inttypes.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cp_wire.h"
#include "kv/store.h"
#include "lib/cursor.h"
#include "lib/log.h"

void cp_fsm_init(struct cp_fsm *f, struct kv_engine *kv, cp_fsm_op_fn before_op, void *ctx)
{
	memset(f, 0, sizeof(*f));
	f->kv = kv;
	f->before_op = before_op;
	f->ctx = ctx;
}

/* The record itself, not an entry: last_version is a version (the HLC the
 * next base must pass), not the index clients see (a Raft index). */
static int load_applied_cb(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)key;
	(void)key_len;
	struct cp_fsm *f = ud;
	if (r->tomb)
		return 0;
	char buf[32];
	size_t n = r->value_len < sizeof(buf) - 1 ? r->value_len : sizeof(buf) - 1;
	memcpy(buf, r->value, n);
	buf[n] = '\0';
	f->applied = strtoull(buf, NULL, 10);
	f->last_version = r->hlc;
	return 0;
}

void cp_fsm_load(struct cp_fsm *f)
{
	if (f->loaded)
		return;
	f->applied = 0;
	f->last_version = 0;
	kv_engine_records(f->kv, CP_APPLIED_KEY, strlen(CP_APPLIED_KEY), false, load_applied_cb, f);
	f->loaded = true;
}

bool cp_fsm_fresh(struct cp_fsm *f)
{
	cp_fsm_load(f);
	return f->applied == 0 && f->last_version == 0;
}

uint64_t cp_fsm_base(struct cp_fsm *f, uint64_t next)
{
	return next > f->last_version ? next : f->last_version + 1;
}

/* The applied index, in the same batch as the entry's records (so it
 * commits with them), whether the entry's checks passed or not. */
static void mark_applied(struct cp_fsm *f, uint64_t index, uint64_t last, const char *node)
{
	char idx[32], err[200];
	snprintf(idx, sizeof(idx), "%" PRIu64, index);
	struct kv_op mark = {
	        KV_OP_SET, CP_APPLIED_KEY, strlen(CP_APPLIED_KEY), idx, strlen(idx), 0, 0, NULL, 0};
	uint64_t mlast = last;
	if (kv_engine_write_pinned(f->kv, &mark, 1, last + 1, index, node, strlen(node), NULL, NULL,
	                           &mlast, err, sizeof(err)) >= 0 &&
	    mlast > last) {
		f->applied = index;
		f->last_version = mlast;
	}
	f->n_applied++;
}

/* A snapshot restored through Raft (/v1/snapshot): the replica becomes its
 * records, written as new versions, Raft's own keys kept. */
static bool apply_restore(struct cp_fsm *f, uint64_t index, const uint8_t *buf, size_t len,
                          kv_done_fn done, void *ud)
{
	uint64_t base;
	char node[KV_NODE_MAX + 1], err[200];
	const uint8_t *body;
	size_t blen;
	if (cp_wire_restore_entry_decode(buf, len, &base, node, &body, &blen, err, sizeof(err)) <
	    0) {
		log_err("server: restore entry %" PRIu64 " does not decode (%s); skipped", index,
		        err);
		return false;
	}
	base = cp_fsm_base(f, base);
	uint64_t last = base - 1;
	bool called = true;
	if (kv_engine_replace_pinned(f->kv, body, blen, base, index, node, strlen(node),
	                             CP_RAFT_PREFIX, done, ud, &last, err, sizeof(err)) < 0) {
		log_err("server: restore entry %" PRIu64 " refused (%s)", index, err);
		called = false;
		last = base - 1;
	} else {
		log_info("server: snapshot restored at Raft index %" PRIu64, index);
	}
	mark_applied(f, index, last, node);
	return called;
}

bool cp_fsm_apply(struct cp_fsm *f, uint64_t index, const uint8_t *buf, size_t len, kv_done_fn done,
                  void *ud)
{
	cp_fsm_load(f);
	if (index <= f->applied)
		return false; /* already in the replica */
	if (cp_wire_entry_kind(buf, len) == CP_ENTRY_RESTORE)
		return apply_restore(f, index, buf, len, done, ud);
	static struct cp_entry e;
	char err[200];
	if (cp_wire_entry_decode(buf, len, &e, err, sizeof(err)) < 0) {
		log_err("server: entry %" PRIu64 " does not decode (%s); skipped", index, err);
		return false;
	}
	if (f->applied == 0 && f->last_version == 0) {
		/* the group's first entry: every server starts from empty */
		kv_engine_restore_begin(f->kv);
	}
	uint64_t base = cp_fsm_base(f, e.base);
	if (f->before_op != NULL)
		for (size_t i = 0; i < e.ops.n; i++)
			f->before_op(f->ctx, &e.ops.op[i]);
	uint64_t last = base - 1;
	bool called = true;
	if (kv_engine_write_pinned(f->kv, e.ops.op, e.ops.n, base, index, e.node, strlen(e.node),
	                           done, ud, &last, err, sizeof(err)) < 0) {
		log_err("server: entry %" PRIu64 " refused by the store (%s)", index, err);
		called = false;
		last = base - 1;
	}
	mark_applied(f, index, last, e.node);
	return called;
}

int cp_dump_record(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct cp_dump *d = ud;
	size_t need = 2 + key_len + kv_rec_size(r);
	if (d->len + need > d->cap) {
		d->cap = (d->len + need) * 2;
		d->p = raft_realloc(d->p, d->cap);
		if (d->p == NULL)
			return -1;
	}
	be16_put(d->p + d->len, (uint16_t)key_len);
	memcpy(d->p + d->len + 2, key, key_len);
	uint8_t *end = kv_rec_encode(r, d->p + d->len + 2 + key_len);
	d->len = (size_t)(end - d->p);
	d->n++;
	return 0;
}

int cp_fsm_snapshot(struct cp_fsm *f, uint8_t **p, size_t *len)
{
	struct cp_dump d = {raft_malloc(4096), 4, 4096, 0};
	/* the staged view (committed = false): libraft asks right after the
	 * applies of this turn, whose batch has not committed yet */
	if (d.p == NULL ||
	    kv_store_scan(kv_engine_store(f->kv), false, "", 0, cp_dump_record, &d) < 0) {
		raft_free(d.p);
		return RAFT_NOMEM;
	}
	be32_put(d.p, d.n);
	*p = d.p;
	*len = d.len;
	return 0;
}

int cp_fsm_restore(struct cp_fsm *f, const uint8_t *p, size_t len)
{
	struct cursor c = {p, p + len};
	uint32_t n;
	if (!cursor_be32(&c, &n) || kv_engine_restore_begin(f->kv) < 0)
		goto bad;
	f->applied = 0;
	f->last_version = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t klen;
		const uint8_t *k;
		struct kv_rec r;
		char err[128];
		if (!cursor_be16(&c, &klen) || !cursor_bytes(&c, klen, &k))
			goto bad;
		const uint8_t *pos = c.p;
		if (kv_rec_decode(&pos, c.end, &r, err, sizeof(err)) < 0)
			goto bad;
		c.p = pos;
		if (kv_engine_restore_put(f->kv, (const char *)k, klen, &r) < 0)
			goto bad;
		if (klen == strlen(CP_APPLIED_KEY) && memcmp(k, CP_APPLIED_KEY, klen) == 0) {
			char v[32];
			size_t vl = r.value_len < sizeof(v) - 1 ? r.value_len : sizeof(v) - 1;
			memcpy(v, r.value, vl);
			v[vl] = '\0';
			f->applied = strtoull(v, NULL, 10);
			f->last_version = r.hlc;
		}
	}
	f->loaded = true;
	return 0;
bad:
	log_err("server: a snapshot did not restore");
	return RAFT_MALFORMED;
}
