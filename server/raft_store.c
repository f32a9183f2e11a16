/*
 * server/raft_store.c — Raft's term, vote, log and snapshot in LMDB (see
 * raft_store.h for the layout and the durability contract).
 *
 * The store keeps in memory only what locates the log: the first and last
 * stored index, the index the next append goes to, the snapshot's index and
 * term, the term and the vote. A batch works on a copy of those (`pend`)
 * that becomes the committed copy (`cur`) only when LMDB's commit returned,
 * so an aborted or failed batch leaves the store exactly as it was on disk.
 *
 * libraft's append does not say at which index: entries go after the last
 * one, so the store tracks `next` itself: one past the last entry, or past
 * the snapshot when the log is empty, and a truncation moves it back.
 */
#include "server/raft_store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xalloc.h"
#include "server/raft_wire.h"

struct pos {
	raft_index first, last, next; /* first/last 0: no entries */
	raft_index snap_index;
	raft_term snap_term;
	raft_term term;
	raft_id vote;
};

struct raft_store {
	char dir[4096];
	MDB_env *env;
	MDB_dbi meta, log, snap;
	MDB_txn *txn; /* the open batch, or NULL */
	struct pos cur, pend;
	char errmsg[256];
};

#define SNAP_META_FIXED 24 /* index, term, configuration index: 8 bytes BE each */
#define ENTRY_HEADER 9     /* term (8 bytes BE), type */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int fail(struct raft_store *st, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(struct raft_store *st, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

/* An LMDB error as libraft's code, with the operation named. */
static int mdb_fail(struct raft_store *st, int rc, const char *op)
{
	int code = rc == MDB_MAP_FULL ? RAFT_NOSPACE : rc == ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
	return fail(st, code, "raft store: %s: %s", op, mdb_strerror(rc));
}

const char *raft_store_errmsg(const struct raft_store *st)
{
	return st->errmsg;
}

/*
 * Log keys are big-endian indexes, so LMDB's bytewise key order is index order
 * and a cursor walks the log in sequence without a custom comparator.
 */
static MDB_val idx_key(uint8_t buf[8], raft_index i)
{
	put_be64(buf, i);
	return (MDB_val){8, buf};
}

/* mkdir -p: the data dir may be new, and raft/ is below it. */
static int make_dirs(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	return rc;
}

/* Reads the locating positions from a (read or write) transaction. */
static int read_pos(struct raft_store *st, MDB_txn *txn, struct pos *pos)
{
	MDB_val k, v;
	int rc;
	memset(pos, 0, sizeof(*pos));
	k = (MDB_val){4, "term"};
	if ((rc = mdb_get(txn, st->meta, &k, &v)) == 0 && v.mv_size == 8)
		pos->term = get_be64(v.mv_data);
	else if (rc != MDB_NOTFOUND)
		return rc == 0 ? fail(st, RAFT_CORRUPT, "raft store: term: %zu bytes", v.mv_size)
		               : mdb_fail(st, rc, "read term");
	k = (MDB_val){4, "vote"};
	if ((rc = mdb_get(txn, st->meta, &k, &v)) == 0 && v.mv_size == 8)
		pos->vote = get_be64(v.mv_data);
	else if (rc != MDB_NOTFOUND)
		return rc == 0 ? fail(st, RAFT_CORRUPT, "raft store: vote: %zu bytes", v.mv_size)
		               : mdb_fail(st, rc, "read vote");
	k = (MDB_val){4, "meta"};
	if ((rc = mdb_get(txn, st->snap, &k, &v)) == 0) {
		if (v.mv_size < SNAP_META_FIXED)
			return fail(st, RAFT_CORRUPT, "raft store: snapshot meta: %zu bytes",
			            v.mv_size);
		pos->snap_index = get_be64(v.mv_data);
		pos->snap_term = get_be64((uint8_t *)v.mv_data + 8);
	} else if (rc != MDB_NOTFOUND) {
		return mdb_fail(st, rc, "read snapshot meta");
	}
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, st->log, &c)) != 0)
		return mdb_fail(st, rc, "open log cursor");
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	if (rc == 0 && k.mv_size == 8) {
		pos->first = get_be64(k.mv_data);
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
		if (rc == 0 && k.mv_size == 8)
			pos->last = get_be64(k.mv_data);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mdb_fail(st, rc, "read log bounds");
	if (rc == 0 && (k.mv_size != 8 || pos->first == 0 || pos->last < pos->first))
		return fail(st, RAFT_CORRUPT, "raft store: log: bad keys");
	if (pos->last > 0) {
		/* keys are unique and ordered: contiguous iff the count matches */
		MDB_stat ms;
		if ((rc = mdb_stat(txn, st->log, &ms)) != 0)
			return mdb_fail(st, rc, "stat log");
		if (ms.ms_entries != pos->last - pos->first + 1)
			return fail(st, RAFT_CORRUPT,
			            "raft store: log: %zu entries between %llu and %llu: a gap",
			            ms.ms_entries, pos->first, pos->last);
	}
	pos->next = pos->last ? pos->last + 1 : pos->snap_index + 1;
	return 0;
}

/* ---- snapshot files ---- */

static void snap_file_name(char *buf, size_t cap, const char *dir, raft_term term, raft_index index)
{
	snprintf(buf, cap, "%s/snapshot-%llu-%llu", dir, (unsigned long long)term,
	         (unsigned long long)index);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Touches nothing but the files: server/raft_io.c runs it on its worker
 * thread. The file is complete and synced under a temporary name before the
 * rename, and the directory is synced after it, so the name exists only for
 * data that is on disk; LMDB refers to it only after that (snapshot_put_file).
 */
int raft_store_snapshot_write(const char *dir, const struct raft_snapshot *s, char *err,
                              size_t errlen)
{
	char path[4200], tmp[4220];
	snap_file_name(path, sizeof(path), dir, s->term, s->index);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "raft store: snapshot file %s: %s", tmp, strerror(errno));
		return RAFT_IOERR;
	}
	int rc = 0;
	for (unsigned i = 0; i < s->n_bufs && rc == 0; i++)
		rc = write_all(fd, s->bufs[i].base, s->bufs[i].len);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			rc = -errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (rc != 0) {
		snprintf(err, errlen, "raft store: snapshot file %s: %s", path, strerror(-rc));
		unlink(tmp);
		return rc == -ENOSPC ? RAFT_NOSPACE : RAFT_IOERR;
	}
	return 0;
}

/* Snapshot files other than the committed snapshot's go: at open every
 * other one (half-written ones too); after a commit only those of older
 * snapshots, since a newer one may be being written on raft_io's worker. */
static void remove_stale_files(struct raft_store *st, bool all)
{
	char keep[4200], path[4400];
	snap_file_name(keep, sizeof(keep), st->dir, st->cur.snap_term, st->cur.snap_index);
	DIR *d = opendir(st->dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		unsigned long long term, index;
		if (sscanf(e->d_name, "snapshot-%llu-%llu", &term, &index) != 2)
			continue;
		snprintf(path, sizeof(path), "%s/%s", st->dir, e->d_name);
		if (strcmp(path, keep) != 0 && (all || index < st->cur.snap_index))
			unlink(path);
	}
	closedir(d);
}

const char *raft_store_dir(const struct raft_store *st)
{
	return st->dir;
}

/*
 * Reads the locating positions once, at open, inside a transaction; everything
 * after works from them in memory. The files are 0600: the log holds every
 * command the cluster applies.
 */
struct raft_store *raft_store_open(const char *dir, size_t map_size, char *err, size_t errlen)
{
	struct raft_store *st = xcalloc(1, sizeof(*st));
	MDB_txn *txn = NULL;
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	int rc = make_dirs(dir);
	if (rc < 0) {
		snprintf(err, errlen, "raft store: mkdir %s: %s", dir, strerror(-rc));
		goto err;
	}
	if ((rc = mdb_env_create(&st->env)) != 0 || (rc = mdb_env_set_maxdbs(st->env, 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, map_size ? map_size : RAFT_STORE_MAP_SIZE)) != 0 ||
	    (rc = mdb_env_open(st->env, dir, 0, 0600)) != 0) {
		snprintf(err, errlen, "raft store: open %s: %s", dir, mdb_strerror(rc));
		goto err;
	}
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "log", MDB_CREATE, &st->log)) != 0 ||
	    (rc = mdb_dbi_open(txn, "snap", MDB_CREATE, &st->snap)) != 0) {
		snprintf(err, errlen, "raft store: %s: %s", dir, mdb_strerror(rc));
		goto err;
	}
	if (read_pos(st, txn, &st->cur) != 0) {
		snprintf(err, errlen, "%s: %s", dir, st->errmsg);
		goto err;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		snprintf(err, errlen, "raft store: %s: %s", dir, mdb_strerror(rc));
		goto err;
	}
	st->pend = st->cur;
	remove_stale_files(st, true);
	return st;
err:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (st->env != NULL)
		mdb_env_close(st->env);
	free(st);
	return NULL;
}

void raft_store_close(struct raft_store *st)
{
	if (st == NULL)
		return;
	if (st->txn != NULL)
		mdb_txn_abort(st->txn);
	mdb_env_close(st->env);
	free(st);
}

/*
 * Answers from the open batch's positions when one is open, so a caller between
 * begin and commit sees what the batch has done so far.
 */
void raft_store_info(const struct raft_store *st, struct raft_store_info *info)
{
	const struct pos *p = st->txn != NULL ? &st->pend : &st->cur;
	info->first_index = p->first;
	info->last_index = p->last;
	info->snapshot_index = p->snap_index;
	info->snapshot_term = p->snap_term;
	info->term = p->term;
	info->vote = p->vote;
}

/* ---- the write batch ---- */

/*
 * One batch at a time; the pending positions start as a copy of the committed
 * ones, so abort and a failed commit can simply copy them back.
 */
int raft_store_begin(struct raft_store *st)
{
	if (st->txn != NULL)
		return fail(st, RAFT_IOERR, "raft store: begin: a batch is already open");
	int rc = mdb_txn_begin(st->env, NULL, 0, &st->txn);
	if (rc != 0) {
		st->txn = NULL;
		return mdb_fail(st, rc, "begin");
	}
	st->pend = st->cur;
	return 0;
}

/*
 * The committed positions change only after LMDB's commit returned: a failed
 * commit leaves memory agreeing with the disk, never ahead of it.
 */
int raft_store_commit(struct raft_store *st)
{
	if (st->txn == NULL)
		return fail(st, RAFT_IOERR, "raft store: commit: no batch is open");
	int rc = mdb_txn_commit(st->txn); /* writes, fdatasync, meta page, fdatasync */
	st->txn = NULL;
	if (rc != 0) {
		st->pend = st->cur;
		return mdb_fail(st, rc, "commit");
	}
	bool new_snap = st->pend.snap_index != st->cur.snap_index ||
	                st->pend.snap_term != st->cur.snap_term;
	st->cur = st->pend;
	if (new_snap)
		remove_stale_files(st, false);
	return 0;
}

void raft_store_abort(struct raft_store *st)
{
	if (st->txn != NULL)
		mdb_txn_abort(st->txn);
	st->txn = NULL;
	st->pend = st->cur;
}

static int put_u64(struct raft_store *st, const char *name, uint64_t v)
{
	uint8_t b[8];
	put_be64(b, v);
	MDB_val k = {strlen(name), (void *)name}, val = {8, b};
	int rc = mdb_put(st->txn, st->meta, &k, &val, 0);
	return rc == 0 ? 0 : mdb_fail(st, rc, name);
}

/* One entry at `index` inside the open batch. */
static int put_entry(struct raft_store *st, raft_index index, raft_term term, unsigned short type,
                     const void *data, size_t len)
{
	uint8_t kb[8];
	MDB_val k = idx_key(kb, index), v = {ENTRY_HEADER + len, NULL};
	/* MDB_APPEND: the key must sort after every stored one, so a broken
	 * `next` shows up as an error instead of an overwritten entry */
	int rc = mdb_put(st->txn, st->log, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc != 0)
		return mdb_fail(st, rc, "append entry");
	uint8_t *p = v.mv_data;
	put_be64(p, term);
	p[8] = (uint8_t)type;
	if (len > 0)
		memcpy(p + ENTRY_HEADER, data, len);
	if (st->pend.first == 0)
		st->pend.first = index;
	st->pend.last = index;
	st->pend.next = index + 1;
	return 0;
}

/*
 * libraft does not pass indexes; entries go at pend.next, which append,
 * truncate and snapshot installs keep exact.
 */
int raft_store_append(struct raft_store *st, const struct raft_entry *entries, unsigned n)
{
	if (st->txn == NULL)
		return fail(st, RAFT_IOERR, "raft store: append: no batch is open");
	for (unsigned i = 0; i < n; i++) {
		int rc = put_entry(st, st->pend.next, entries[i].term, entries[i].type,
		                   entries[i].buf.base, entries[i].buf.len);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Deletes the entries with index in [from, to] (to inclusive). Each step
 * seeks again rather than trusting the cursor's position after a delete,
 * which LMDB leaves loosely specified at the end of the database. */
static int delete_range(struct raft_store *st, raft_index from, raft_index to)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t kb[8];
	int rc = mdb_cursor_open(st->txn, st->log, &c);
	if (rc != 0)
		return mdb_fail(st, rc, "open log cursor");
	for (;;) {
		k = idx_key(kb, from);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc != 0 || get_be64(k.mv_data) > to)
			break;
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mdb_fail(st, rc, "delete entries");
	return 0;
}

/*
 * Deletes from index to the end, as Raft's log repair needs, and moves next back
 * so the leader's entries overwrite from there. A truncation past the end is a
 * no-op, not an error.
 */
int raft_store_truncate(struct raft_store *st, raft_index index)
{
	if (st->txn == NULL)
		return fail(st, RAFT_IOERR, "raft store: truncate: no batch is open");
	if (index == 0)
		return fail(st, RAFT_INVALID, "raft store: truncate: index 0");
	if (index >= st->pend.next)
		return 0;
	int rc = delete_range(st, index, UINT64_MAX);
	if (rc != 0)
		return rc;
	st->pend.next = index;
	if (st->pend.first != 0 && st->pend.first >= index)
		st->pend.first = st->pend.last = 0;
	else if (st->pend.last >= index)
		st->pend.last = index - 1;
	return 0;
}

/*
 * The snapshot data is written with MDB_RESERVE, straight from libraft's buffers
 * into LMDB's page, with no intermediate copy. "trailing" entries before the
 * snapshot are kept so slow followers can still be sent them; 0 means the
 * snapshot replaces the log.
 */
/* The snapshot's meta, and its entries cut (the rest of a put). */
static int put_meta_and_cut(struct raft_store *st, const struct raft_snapshot *s, unsigned trailing)
{
	size_t conf = raft_wire_conf_size(&s->configuration);
	if (conf == 0)
		return fail(st, RAFT_INVALID,
		            "raft store: snapshot put: configuration cannot be encoded");
	uint8_t *meta = xmalloc(SNAP_META_FIXED + conf);
	put_be64(meta, s->index);
	put_be64(meta + 8, s->term);
	put_be64(meta + 16, s->configuration_index);
	raft_wire_conf_put(meta + SNAP_META_FIXED, &s->configuration);
	MDB_val k = {4, "meta"}, v = {SNAP_META_FIXED + conf, meta};
	int rc = mdb_put(st->txn, st->snap, &k, &v, 0);
	free(meta);
	if (rc != 0)
		return mdb_fail(st, rc, "snapshot meta");
	st->pend.snap_index = s->index;
	st->pend.snap_term = s->term;
	if (trailing == 0) {
		/* the snapshot replaces the whole log (a follower installing
		 * its leader's): entries resume right after it */
		if ((rc = mdb_drop(st->txn, st->log, 0)) != 0)
			return mdb_fail(st, rc, "drop log");
		st->pend.first = st->pend.last = 0;
		st->pend.next = s->index + 1;
		return 0;
	}
	if (s->index <= trailing || st->pend.first == 0 || st->pend.first > s->index - trailing)
		return 0;
	raft_index cut = s->index - trailing;
	if ((rc = delete_range(st, st->pend.first, cut)) != 0)
		return rc;
	if (st->pend.last <= cut)
		st->pend.first = st->pend.last = 0;
	else
		st->pend.first = cut + 1;
	return 0;
}

int raft_store_snapshot_put(struct raft_store *st, const struct raft_snapshot *s, unsigned trailing)
{
	if (st->txn == NULL)
		return fail(st, RAFT_IOERR, "raft store: snapshot put: no batch is open");
	size_t len = 0;
	for (unsigned i = 0; i < s->n_bufs; i++)
		len += s->bufs[i].len;
	MDB_val k = {4, "data"}, v = {len, NULL};
	int rc = mdb_put(st->txn, st->snap, &k, &v, MDB_RESERVE);
	if (rc != 0)
		return mdb_fail(st, rc, "snapshot data");
	uint8_t *p = v.mv_data;
	for (unsigned i = 0; i < s->n_bufs; i++) {
		if (s->bufs[i].len > 0)
			memcpy(p, s->bufs[i].base, s->bufs[i].len);
		p += s->bufs[i].len;
	}
	k = (MDB_val){4, "file"};
	if ((rc = mdb_del(st->txn, st->snap, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
		return mdb_fail(st, rc, "snapshot file");
	return put_meta_and_cut(st, s, trailing);
}

/*
 * The data is already in its file (raft_store_snapshot_write); LMDB gets the
 * meta and the file's length under "file", and loses the "data" an older
 * snapshot may have left there.
 */
int raft_store_snapshot_put_file(struct raft_store *st, const struct raft_snapshot *s,
                                 unsigned trailing)
{
	if (st->txn == NULL)
		return fail(st, RAFT_IOERR, "raft store: snapshot put: no batch is open");
	uint64_t len = 0;
	for (unsigned i = 0; i < s->n_bufs; i++)
		len += s->bufs[i].len;
	uint8_t b[8];
	put_be64(b, len);
	MDB_val k = {4, "file"}, v = {8, b};
	int rc = mdb_put(st->txn, st->snap, &k, &v, 0);
	if (rc != 0)
		return mdb_fail(st, rc, "snapshot file");
	k = (MDB_val){4, "data"};
	if ((rc = mdb_del(st->txn, st->snap, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
		return mdb_fail(st, rc, "snapshot data");
	return put_meta_and_cut(st, s, trailing);
}

/* ---- synchronous, durable updates ---- */

/* Runs fn in a batch of its own and commits it. */
static int one_shot(struct raft_store *st, int (*fn)(struct raft_store *, const void *),
                    const void *arg)
{
	if (st->txn != NULL)
		return fail(st, RAFT_IOERR, "raft store: a batch is open");
	int rc = raft_store_begin(st);
	if (rc != 0)
		return rc;
	if ((rc = fn(st, arg)) != 0) {
		raft_store_abort(st);
		return rc;
	}
	return raft_store_commit(st);
}

/*
 * A new term clears the vote in the same commit: a vote belongs to one term, and
 * a crash between the two writes must not leave a vote carried into a new term.
 */
static int do_set_term(struct raft_store *st, const void *arg)
{
	raft_term term = *(const raft_term *)arg;
	int rc = put_u64(st, "term", term);
	if (rc == 0)
		rc = put_u64(st, "vote", 0);
	st->pend.term = term;
	st->pend.vote = 0;
	return rc;
}

int raft_store_set_term(struct raft_store *st, raft_term term)
{
	return one_shot(st, do_set_term, &term);
}

static int do_set_vote(struct raft_store *st, const void *arg)
{
	raft_id id = *(const raft_id *)arg;
	st->pend.vote = id;
	return put_u64(st, "vote", id);
}

/*
 * Synchronous and durable before it returns, as Raft requires: a node that
 * votes, crashes and forgets could vote twice in one term.
 */
int raft_store_set_vote(struct raft_store *st, raft_id id)
{
	return one_shot(st, do_set_vote, &id);
}

/* A configuration entry at the next index, in term `term`. */
static int put_conf_entry(struct raft_store *st, raft_term term,
                          const struct raft_configuration *conf)
{
	struct raft_buffer buf;
	int rc = raft_configuration_encode(conf, &buf);
	if (rc != 0)
		return fail(st, rc, "raft store: encode configuration: %s", raft_strerror(rc));
	rc = put_entry(st, st->pend.next, term, RAFT_CHANGE, buf.base, buf.len);
	raft_free(buf.base);
	return rc;
}

/*
 * Refuses unless the store is empty: bootstrapping a node that already has
 * state would fork its history from the cluster's.
 */
static int do_bootstrap(struct raft_store *st, const void *arg)
{
	const struct pos *p = &st->pend;
	if (p->term != 0 || p->vote != 0 || p->last != 0 || p->snap_index != 0)
		return fail(st, RAFT_CANTBOOTSTRAP,
		            "raft store: bootstrap: state exists (term %llu, last index %llu)",
		            p->term, p->last);
	int rc = do_set_term(st, &(raft_term){1});
	return rc != 0 ? rc : put_conf_entry(st, 1, arg);
}

int raft_store_bootstrap(struct raft_store *st, const struct raft_configuration *conf)
{
	return one_shot(st, do_bootstrap, conf);
}

static int do_recover(struct raft_store *st, const void *arg)
{
	return put_conf_entry(st, st->pend.term ? st->pend.term : 1, arg);
}

int raft_store_recover(struct raft_store *st, const struct raft_configuration *conf)
{
	return one_shot(st, do_recover, conf);
}

/* ---- reading ---- */

/* The snapshot's data from its file into buf (len bytes). */
static int read_file(struct raft_store *st, raft_term term, raft_index index, uint8_t *buf,
                     size_t len)
{
	char path[4200];
	snap_file_name(path, sizeof(path), st->dir, term, index);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(st, RAFT_CORRUPT, "raft store: snapshot file %s: %s", path,
		            strerror(errno));
	struct stat sb;
	int rc = 0;
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != len)
		rc = fail(st, RAFT_CORRUPT, "raft store: snapshot file %s: %lld bytes, not %zu",
		          path, (long long)sb.st_size, len);
	size_t got = 0;
	while (rc == 0 && got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = fail(st, RAFT_IOERR, "raft store: snapshot file %s: %s", path,
			          n < 0 ? strerror(errno) : "short");
		else
			got += (size_t)n;
	}
	close(fd);
	return rc;
}

/* The snapshot stored in txn as libraft takes it, or *out NULL. Its data is
 * under "data" in LMDB (older stores, and raft_store_snapshot_put) or in its
 * file ("file" holds the length). */
static int read_snapshot(struct raft_store *st, MDB_txn *txn, struct raft_snapshot **out)
{
	MDB_val k = {4, "meta"}, meta, data = {0, NULL}, file;
	*out = NULL;
	int rc = mdb_get(txn, st->snap, &k, &meta);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mdb_fail(st, rc, "read snapshot meta");
	k = (MDB_val){4, "file"};
	bool in_file = false;
	if ((rc = mdb_get(txn, st->snap, &k, &file)) == 0) {
		if (file.mv_size != 8)
			return fail(st, RAFT_CORRUPT, "raft store: snapshot file: %zu bytes",
			            file.mv_size);
		in_file = true;
		data.mv_size = get_be64(file.mv_data);
	} else if (rc != MDB_NOTFOUND) {
		return mdb_fail(st, rc, "read snapshot file");
	}
	k = (MDB_val){4, "data"};
	if (!in_file && (rc = mdb_get(txn, st->snap, &k, &data)) != 0)
		return rc == MDB_NOTFOUND
		               ? fail(st, RAFT_CORRUPT, "raft store: snapshot data missing")
		               : mdb_fail(st, rc, "read snapshot data");
	if (meta.mv_size < SNAP_META_FIXED)
		return fail(st, RAFT_CORRUPT, "raft store: snapshot meta: %zu bytes", meta.mv_size);
	struct raft_snapshot *s = raft_calloc(1, sizeof(*s));
	if (s == NULL)
		return fail(st, RAFT_NOMEM, "raft store: snapshot: out of memory");
	const uint8_t *p = meta.mv_data, *end = p + meta.mv_size;
	s->index = get_be64(p);
	s->term = get_be64(p + 8);
	s->configuration_index = get_be64(p + 16);
	p += SNAP_META_FIXED;
	raft_configuration_init(&s->configuration);
	char err[200];
	if (raft_wire_conf_get(&p, end, &s->configuration, err, sizeof(err)) != 0 || p != end) {
		raft_configuration_close(&s->configuration);
		raft_free(s);
		return fail(st, RAFT_CORRUPT, "raft store: snapshot configuration: %s",
		            p != end ? "trailing bytes" : err);
	}
	s->bufs = raft_malloc(sizeof(*s->bufs));
	s->n_bufs = 1;
	if (s->bufs != NULL)
		s->bufs[0].base = raft_malloc(data.mv_size ? data.mv_size : 1);
	if (s->bufs == NULL || s->bufs[0].base == NULL) {
		raft_free(s->bufs);
		raft_configuration_close(&s->configuration);
		raft_free(s);
		return fail(st, RAFT_NOMEM, "raft store: snapshot: out of memory");
	}
	s->bufs[0].len = data.mv_size;
	if (in_file)
		rc = read_file(st, s->term, s->index, s->bufs[0].base, data.mv_size);
	else if (data.mv_size > 0)
		memcpy(s->bufs[0].base, data.mv_data, data.mv_size);
	if (rc != 0) {
		raft_free(s->bufs[0].base);
		raft_free(s->bufs);
		raft_configuration_close(&s->configuration);
		raft_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void free_snapshot(struct raft_snapshot *s)
{
	if (s == NULL)
		return;
	raft_configuration_close(&s->configuration);
	for (unsigned i = 0; i < s->n_bufs; i++)
		raft_free(s->bufs[i].base);
	raft_free(s->bufs);
	raft_free(s);
}

/*
 * Its own read transaction, of what is committed: raft_io calls it from the
 * drain after the batch commit, so it sees every snapshot put queued before it.
 */
int raft_store_snapshot_get(struct raft_store *st, struct raft_snapshot **out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return mdb_fail(st, rc, "begin read");
	rc = read_snapshot(st, txn, out);
	mdb_txn_abort(txn);
	return rc;
}

/*
 * The entries [from, to] as one array and one batch: a first pass adds up
 * the payloads, a second copies them, so each load makes two allocations
 * whatever the log's length.
 */
static int read_entries(struct raft_store *st, MDB_txn *txn, raft_index from, raft_index to,
                        struct raft_entry **entries, size_t *n_entries)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint8_t kb[8];
	size_t n = (size_t)(to - from + 1), total = 0, i = 0;
	int rc = mdb_cursor_open(txn, st->log, &c);
	if (rc != 0)
		return mdb_fail(st, rc, "open log cursor");
	k = idx_key(kb, from);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && i < n;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
		if (get_be64(k.mv_data) != from + i || v.mv_size < ENTRY_HEADER) {
			mdb_cursor_close(c);
			return fail(st, RAFT_CORRUPT, "raft store: entry %llu: missing or short",
			            from + i);
		}
		total += v.mv_size - ENTRY_HEADER;
	}
	if (i != n) {
		mdb_cursor_close(c);
		return fail(st, RAFT_CORRUPT, "raft store: entries %llu..%llu: %zu found", from, to,
		            i);
	}
	struct raft_entry *e = raft_calloc(n, sizeof(*e));
	uint8_t *batch = raft_malloc(total ? total : 1);
	if (e == NULL || batch == NULL) {
		raft_free(e);
		raft_free(batch);
		mdb_cursor_close(c);
		return fail(st, RAFT_NOMEM, "raft store: load: out of memory");
	}
	size_t off = 0;
	k = idx_key(kb, from);
	i = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && i < n;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
		const uint8_t *p = v.mv_data;
		size_t len = v.mv_size - ENTRY_HEADER;
		e[i].term = get_be64(p);
		e[i].type = p[8];
		e[i].buf.base = batch + off;
		e[i].buf.len = len;
		e[i].batch = batch;
		if (len > 0)
			memcpy(batch + off, p + ENTRY_HEADER, len);
		off += len;
	}
	mdb_cursor_close(c);
	*entries = e;
	*n_entries = n;
	return 0;
}

/*
 * Checks the shape libraft relies on before handing anything over: the log
 * starts at 1 or just after the snapshot, without gaps, and a log without a
 * snapshot begins with a configuration entry. A store that breaks these is
 * reported corrupt, not loaded.
 */
int raft_store_load(struct raft_store *st, raft_term *term, raft_id *vote,
                    struct raft_snapshot **snapshot, raft_index *start_index,
                    struct raft_entry **entries, size_t *n_entries)
{
	MDB_txn *txn;
	struct raft_snapshot *s = NULL;
	const struct pos *p = &st->cur;
	*snapshot = NULL;
	*entries = NULL;
	*n_entries = 0;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return mdb_fail(st, rc, "begin read");
	if ((rc = read_snapshot(st, txn, &s)) != 0)
		goto out;
	raft_index from = p->first, to = p->last;
	if (s != NULL && (to == 0 || to < s->index)) {
		/* nothing stored beyond the snapshot: it is the whole log */
		from = to = 0;
	}
	if (s != NULL && from != 0 && from > s->index + 1) {
		rc = fail(st, RAFT_CORRUPT, "raft store: log starts at %llu, after snapshot %llu",
		          from, s->index);
		goto out;
	}
	if (s == NULL && from != 0 && from != 1) {
		rc = fail(st, RAFT_CORRUPT, "raft store: log starts at %llu without a snapshot",
		          from);
		goto out;
	}
	if (from != 0 && (rc = read_entries(st, txn, from, to, entries, n_entries)) != 0)
		goto out;
	if (s == NULL && *n_entries > 0 && (*entries)[0].type != RAFT_CHANGE) {
		rc = fail(st, RAFT_CORRUPT, "raft store: entry 1 is not a configuration");
		raft_free((*entries)[0].batch);
		raft_free(*entries);
		*entries = NULL;
		*n_entries = 0;
		goto out;
	}
	*term = p->term;
	*vote = p->vote;
	*start_index = from != 0 ? from : s != NULL ? s->index + 1 : 1;
	*snapshot = s;
	s = NULL;
out:
	mdb_txn_abort(txn);
	free_snapshot(s);
	return rc;
}
