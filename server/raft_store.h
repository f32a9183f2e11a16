/*
 * server/raft_store.h — a Raft server's durable state, in an LMDB
 * environment of its own (<data_dir>/raft), sans-libev.
 *
 * Owns: the current term and vote, the log entries (keyed by index), and
 * the latest snapshot (its index, term, configuration and data). Nothing
 * else lives in this environment, so the CP store's data (a later step)
 * and the AP replica (kv/) never share a transaction or a map size with it.
 *
 * Durability: every function that changes state returns only after LMDB's
 * commit, which writes the pages and fdatasync()s them before it writes and
 * syncs the new meta page (the environment is never opened with MDB_NOSYNC
 * or MDB_NOMETASYNC). raft_store_set_term() and raft_store_set_vote() commit
 * at once, as libraft requires. Appends, truncations and snapshots are
 * batched: raft_store_begin(), any number of them in order, then
 * raft_store_commit() makes all of them durable with one sync (group
 * commit; server/raft_io.c commits once per loop iteration), or
 * raft_store_abort() forgets all of them.
 *
 * Layout: three named databases. "meta": "term" and "vote" (8-byte big
 * endian). "log": key the index (8-byte big endian, so LMDB's order is the
 * log's), value term (8 bytes BE), type (1 byte), payload. "snap": "meta"
 * (varints: index, term, configuration index, then the configuration in
 * server/raft_wire.h's form) and either "data" (the snapshot's bytes) or
 * "file" (8 bytes BE: the length of <dir>/snapshot-<term>-<index>, which
 * holds them; see raft_store_snapshot_write). Only the latest snapshot is
 * kept.
 *
 * Log invariants (checked at open): the stored indexes are contiguous;
 * with a snapshot, the first stored entry is at most snapshot index + 1.
 * A snapshot put with trailing T deletes the entries up to index - T (all
 * of them when T is 0, as when a follower installs its leader's snapshot).
 *
 * Error convention: functions return 0 or one of libraft's codes
 * (RAFT_IOERR, RAFT_CORRUPT, RAFT_NOSPACE when the map is full,
 * RAFT_CANTBOOTSTRAP, RAFT_NOMEM) and leave a message that names the
 * operation in raft_store_errmsg(). raft_store_open() writes its message
 * into the caller's buffer. Returned memory comes from raft_malloc(), laid
 * out as libraft's raft_io.load() and snapshot_get() hand it over.
 */
#ifndef RUMOR_SERVER_RAFT_STORE_H
#define RUMOR_SERVER_RAFT_STORE_H

#include <raft.h>
#include <stddef.h>

struct raft_store;

/* Opens (creating dir and the environment if needed) the store in dir;
 * map_size 0 means RAFT_STORE_MAP_SIZE. NULL with err on failure. */
#define RAFT_STORE_MAP_SIZE (1ull << 30)
struct raft_store *raft_store_open(const char *dir, size_t map_size, char *err, size_t errlen);
void raft_store_close(struct raft_store *st);
/* The message left by the last failed call. */
const char *raft_store_errmsg(const struct raft_store *st);

/*
 * Everything raft_io.load() returns: term and vote; the snapshot or NULL
 * (raft_malloc'd, one buffer); the index of the first entry returned, and
 * the entries (one raft_malloc'd array and one batch for all payloads; NULL
 * and 0 when there are none). Ownership passes to the caller.
 */
int raft_store_load(struct raft_store *st, raft_term *term, raft_id *vote,
                    struct raft_snapshot **snapshot, raft_index *start_index,
                    struct raft_entry **entries, size_t *n_entries);
/* Durably sets the term and clears the vote. */
int raft_store_set_term(struct raft_store *st, raft_term term);
/* Durably records the vote for the current term. */
int raft_store_set_vote(struct raft_store *st, raft_id id);
/* Durably makes conf the first entry (term 1) with term 1 and no vote;
 * RAFT_CANTBOOTSTRAP if the store holds any state. */
int raft_store_bootstrap(struct raft_store *st, const struct raft_configuration *conf);
/* Durably appends conf as a configuration entry after the last one. */
int raft_store_recover(struct raft_store *st, const struct raft_configuration *conf);

/* Opens the write batch (one LMDB write transaction). */
int raft_store_begin(struct raft_store *st);
/* In the batch: entries stored at the next index onwards. */
int raft_store_append(struct raft_store *st, const struct raft_entry *entries, unsigned n);
/* In the batch: entries from index onwards deleted. */
int raft_store_truncate(struct raft_store *st, raft_index index);
/* In the batch: s becomes the snapshot (its buffers concatenated), and the
 * entries up to s->index - trailing are deleted (all of them if 0). */
int raft_store_snapshot_put(struct raft_store *st, const struct raft_snapshot *s,
                            unsigned trailing);
/* A snapshot's data in a file of its own, <dir>/snapshot-<term>-<index>:
 * written (and synced, file and directory) by raft_store_snapshot_write,
 * which touches nothing else, so it may run on another thread, outside
 * any batch; then, in a batch, raft_store_snapshot_put_file does what
 * raft_store_snapshot_put does but records the file instead of copying the
 * data into LMDB. Files of older snapshots are deleted after the commit
 * that replaces them, and at open every snapshot file but the current
 * one. raft_store_dir: the dir given to raft_store_open. */
int raft_store_snapshot_write(const char *dir, const struct raft_snapshot *s, char *err,
                              size_t errlen);
int raft_store_snapshot_put_file(struct raft_store *st, const struct raft_snapshot *s,
                                 unsigned trailing);
const char *raft_store_dir(const struct raft_store *st);
/* Makes the batch durable (one fdatasync); on failure it is forgotten. */
int raft_store_commit(struct raft_store *st);
/* Forgets the batch. */
void raft_store_abort(struct raft_store *st);

/* The latest committed snapshot as raft_io.snapshot_get() hands it over
 * (raft_malloc'd, one buffer), or *out NULL when there is none. */
int raft_store_snapshot_get(struct raft_store *st, struct raft_snapshot **out);

/* What the store holds (in the open batch, if any): 0 for none. */
struct raft_store_info {
	raft_index first_index, last_index; /* stored entries */
	raft_index snapshot_index;
	raft_term snapshot_term;
	raft_term term;
	raft_id vote;
};
void raft_store_info(const struct raft_store *st, struct raft_store_info *info);

#endif
