/*
 * kv/store.h — the local replica in LMDB and the bucketed digest used by
 * anti-entropy (records and their codec: kv/record.h).
 *
 * Owns: the LMDB environment in <dir> with three databases:
 *   "kv"   key -> record (live entries and tombstones)
 *   "bkt"  (bucket byte, key) -> "" : the keys of each digest bucket, so a
 *          differing bucket is read without scanning the store
 *   "meta" "last_seen" -> wall ms of the last commit (away-too-long check)
 * and the in-memory digest: KV_BUCKETS sums of a 64-bit hash of
 * (key, version, writer). Sums, so a write updates its bucket in O(1):
 * subtract the old entry's hash, add the new one's. Built by one scan at open.
 *
 * Durability (see kv/wal.h): a batch is opened by kv_store_begin and ended
 * by kv_store_commit / kv_store_abort (abort restores the digest). Its
 * writes go into a long-lived LMDB write transaction and into the
 * write-ahead log <dir>/wal; kv_store_commit appends the batch to the log
 * with one fdatasync, and that is what makes it durable. LMDB itself is
 * committed (fully synced, LMDB's default) only by kv_store_checkpoint,
 * which then starts a new log generation; the engine calls it about once
 * a second, and open (after replaying the log) and close call it. LMDB is
 * never run with MDB_NOSYNC: its file is always a synced commit, and the
 * log holds every batch acknowledged after that commit.
 *
 * Reads take `committed`: true sees acknowledged data only (the open
 * batch's keys are shown as they were before it), false also sees the open
 * batch. Both read the long-lived transaction when there is one.
 *
 * A record's bytes (kv_rec_encode, kv/record.h) are the same in the log
 * and on the wire. LMDB has no checksums, so the value stored in "kv" is
 * that record plus a trailer:
 *   u32 crc32c(u16 key_len, key, record) u8 KV_STORE_REC_MARK.
 * Records written before the trailer existed (exactly kv_rec_size bytes)
 * are read as before ("legacy") and get the trailer when next written; an
 * older binary reads the new form too (it ignores bytes after the record).
 * A stored value that fails its checksum or does not decode is "bad": it
 * is logged and counted, and every read, scan, write and merge treats the
 * key as absent, so a write or anti-entropy (our digest leaves it out)
 * replaces it. A bad record never makes a key unwritable.
 *
 * Failures are not sticky. A failed commit answers its batch with an error
 * and leaves nothing of it; the next batch tries again (kv/wal.h says how
 * the log stays clean). A failed checkpoint keeps everything in the log
 * and is retried after KV_STORE_RETRY_MS (also at open: a store whose
 * checkpoint fails opens and runs from the log). If even the rollback fails (the
 * store cannot be rebuilt from LMDB and the log), reads show LMDB's last
 * checkpoint and kv_store_begin retries the rebuild (reopening LMDB if it
 * declared its environment dead) at most every KV_STORE_RETRY_MS. Failures
 * are logged rate-limited: the first at warn, then at most one line every
 * KV_STORE_LOG_EVERY_MS with a count, and one when writes succeed again.
 *
 * Logs through lib/log.h, below kv/ (as kv/kv.c does).
 *
 * Error convention: -1 with a message in err (or logged by the caller).
 */
#ifndef RUMOR_KV_STORE_H
#define RUMOR_KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/record.h"

#define KV_BUCKETS 256
#define KV_STORE_REC_MARK 0xc5u     /* last byte of a checksummed stored record */
#define KV_STORE_REC_TRAILER 5u     /* u32 crc32c, u8 mark */
#define KV_STORE_RETRY_MS 1000      /* a failed checkpoint / rebuild is retried after */
#define KV_STORE_LOG_EVERY_MS 10000 /* repeated failures: one log line per */

struct kv_store;

/* The digest bucket of a key. */
unsigned kv_bucket_of(const char *key, size_t key_len);
/* The key's hash whose low bits are its bucket (part of the protocol). */
uint64_t kv_key_hash(const char *key, size_t key_len);

/* Open (creating) the store in dir; map_size 0 = 1 GiB. NULL with err. */
struct kv_store *kv_store_open(const char *dir, size_t map_size, char *err, size_t errlen);
void kv_store_close(struct kv_store *s);

/* Open a batch. 0 (also if already open) or -1 (the store could not be
 * rebuilt after a failure; retried by a later call). */
int kv_store_begin(struct kv_store *s);
/* Open a batch (or mark the open one) that replaces the store: its records
 * skip the log, and kv_store_commit makes it durable by a checkpoint (one
 * synced LMDB commit) instead of a log append; a failed checkpoint rolls it
 * back as a failed commit does. For a Raft snapshot installed on a server
 * (agent/server.c). 0 or -1 as kv_store_begin. */
int kv_store_begin_unlogged(struct kv_store *s);
/* True while a batch is open. */
bool kv_store_in_txn(const struct kv_store *s);
/* Make the batch durable (log append + fdatasync). 0, or -1 with err: the
 * batch is then rolled back (nothing of it stays or is replayed later) and
 * the next batch is tried normally. */
int kv_store_commit(struct kv_store *s, char *err, size_t errlen);
/* Drop the open batch (nothing of it stays). */
void kv_store_abort(struct kv_store *s);
/* sync false: kv_store_commit writes the batch to the log without the
 * fdatasync; it becomes durable at the next checkpoint (about a second),
 * and a crash before that keeps a prefix of the batches (kv/wal.h). Only
 * for a replica that is a copy of a durable record kept elsewhere: a CP
 * server's replica, which libraft rebuilds from its log (agent/server.c
 * says why that is safe). Default true. */
void kv_store_set_log_sync(struct kv_store *s, bool sync);
/* The open batch holds only records learned from peers, which they keep
 * too: kv_store_commit logs it without the fdatasync. It becomes durable
 * with the next synced commit or checkpoint; a crash before that keeps a
 * prefix of the log's batches (kv/wal.h) and anti-entropy fetches the rest
 * again. One agent syncing every batch of a join storm is cheap; a
 * thousand on one disk held their loops in fdatasync for seconds. */
void kv_store_batch_unsynced(struct kv_store *s);
/* kv_store_dirty, and one of the batches LMDB lacks was synced (someone
 * was told it is durable): the checkpoint should not wait long. */
bool kv_store_dirty_synced(const struct kv_store *s);

/* Commit LMDB (synced) and start a new log generation. Not while a batch
 * is open. 0 (also when deferred: within KV_STORE_RETRY_MS of a failure it
 * does not try, and kv_store_dirty stays true), or -1 with err (nothing is
 * lost: the log still holds it; the store has logged it, rate-limited). */
int kv_store_checkpoint(struct kv_store *s, char *err, size_t errlen);
/* True when LMDB lacks batches committed since the last checkpoint. */
bool kv_store_dirty(const struct kv_store *s);
/* Bytes in the log since the last checkpoint. */
uint64_t kv_store_log_bytes(const struct kv_store *s);

/* Read one record: 1 found (*r valid until the next store call), 0 absent
 * (or bad: counted and logged), -1 error. */
int kv_store_get(struct kv_store *s, bool committed, const char *key, size_t key_len,
                 struct kv_rec *r);
/* Write (replace) a record inside the open write transaction. 0 or -1. */
int kv_store_put(struct kv_store *s, const char *key, size_t key_len, const struct kv_rec *r);

/* Visit records whose key starts with prefix, in key order; fn returns
 * non-zero to stop. Returns the number visited or -1. */
typedef int (*kv_store_fn)(void *ud, const char *key, size_t key_len, const struct kv_rec *r);
int kv_store_scan(struct kv_store *s, bool committed, const char *prefix, size_t prefix_len,
                  kv_store_fn fn, void *ud);
/* A read-only view of LMDB's last checkpoint (the open batch and batches
 * not yet checkpointed are not in it) that one other thread may scan while
 * the owner goes on writing: the Raft snapshot dump (agent/server.c).
 * kv_store_reader_open and _close are the owner's (they count open readers:
 * LMDB is not reopened under one, and the store must not be closed with
 * one open); kv_store_reader_scan and _bad may run in another thread (one
 * at a time) and read nothing of the store but LMDB. The view holds LMDB
 * pages from reuse while open: close it soon. NULL with err. */
struct kv_store_reader;
struct kv_store_reader *kv_store_reader_open(struct kv_store *s, char *err, size_t errlen);
/* Visit every record (tombstones included) in key order; bad ones are
 * skipped and counted (kv_store_reader_bad). The number visited or -1. */
int kv_store_reader_scan(struct kv_store_reader *rd, kv_store_fn fn, void *ud);
uint64_t kv_store_reader_bad(const struct kv_store_reader *rd);
void kv_store_reader_close(struct kv_store *s, struct kv_store_reader *rd);

/* Visit the records of one digest bucket. */
int kv_store_scan_bucket(struct kv_store *s, bool committed, unsigned bucket, kv_store_fn fn,
                         void *ud);

/* The digest (KV_BUCKETS sums), including the open transaction's writes. */
const uint64_t *kv_store_digest(const struct kv_store *s);
/* One 64-bit hash over the whole digest (the root of a one-level Merkle
 * tree over the buckets): equal stores have equal roots, so anti-entropy
 * compares it before it sends the 256 bucket sums. */
uint64_t kv_store_root(const struct kv_store *s);
/* What the digest sums for one entry: a hash of the key, the version, the
 * tombstone bit and the writer (not the value, which the version names). */
uint64_t kv_store_entry_hash(const char *key, size_t key_len, const struct kv_rec *r);

/* Drop this process's mapping of the store file's pages (MADV_DONTNEED on
 * LMDB's read-only shared map): they stay in the page cache and fault back
 * in when read, so nothing changes but the resident set. Returns the bytes
 * advised (0: no open environment). Safe at any time, also inside a
 * transaction: the map stays valid. */
size_t kv_store_trim(struct kv_store *s);

/* Delete tombstones whose version is older than before_ms (in the open
 * write transaction). Returns the number purged or -1. */
int kv_store_purge(struct kv_store *s, int64_t before_ms);
/* Delete everything (a node that was away too long). In the open txn. */
int kv_store_wipe(struct kv_store *s);

/* meta "last_seen" (wall ms): read committed; write in the open txn. */
int64_t kv_store_last_seen(struct kv_store *s);
int kv_store_set_last_seen(struct kv_store *s, int64_t ms);

/* Live keys and tombstones (counted at open, kept up to date). */
void kv_store_counts(const struct kv_store *s, uint64_t *live, uint64_t *tombs);

/* Storage faults seen by this store (for the agent's stats and metrics). */
struct kv_store_stats {
	uint64_t wal_dropped_records; /* at open: records of the log's tail dropped */
	uint64_t wal_dropped_bytes;   /*   and their bytes */
	uint64_t wal_dropped_intact;  /*   of which had a valid checksum (acked batches lost) */
	uint64_t bad_records;         /* stored records failing their check, at the last full
					 scan (open, rebuild) */
	uint64_t legacy_records;      /* records without a checksum, at the last full scan */
	uint64_t bad_reads;           /* reads and scans that met a bad record (shown absent) */
	uint64_t commit_failures;     /* batches whose append failed (answered with an error) */
	uint64_t checkpoint_failures; /* LMDB commits or log resets that failed */
	bool failing;                 /* the last commit or checkpoint failed */
};
const struct kv_store_stats *kv_store_stats(const struct kv_store *s);

/* What kv_store_verify found. */
struct kv_store_verify_result {
	uint64_t records, checked, legacy, bad;
	size_t wal_batches; /* replayable batches in the log */
	int wal_error;      /* 0, or -errno reading the log (-ENOENT: none) */
	uint64_t wal_tail_offset, wal_tail_bytes;
	uint32_t wal_tail_records, wal_tail_intact;
	const char *wal_tail_why; /* kv_wal_tail_why_name; "clean end" if nothing */
	bool wal_tail_dropped;
};
/* Called for each bad record: key (not NUL-terminated) and why. */
typedef void (*kv_store_bad_fn)(void *ud, const char *key, size_t key_len, const char *why);
/* Read-only check of the store in dir (LMDB opened read-only, so the agent
 * may be running; the log is only read): every record decodes and, when it
 * has one, matches its checksum; the log's tail. 0 with *res filled (bad
 * may be > 0), or -1 with err when the store cannot be read at all. */
int kv_store_verify(const char *dir, kv_store_bad_fn bad, void *ud,
                    struct kv_store_verify_result *res, char *err, size_t errlen);

#endif
