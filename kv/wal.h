/*
 * kv/wal.h — the write-ahead log of the KV replica.
 *
 * Owns: one file, <data_dir>/kv/wal, and the buffer of the batch being
 * built. Each group-commit batch (the writes of one loop iteration) is one
 * log record, written with one pwrite and made durable with one fdatasync;
 * a write is acknowledged only after that. The store (kv/store.c) applies
 * the batch to LMDB too, but commits LMDB (with LMDB's own two syncs) only
 * at a checkpoint, about once a second; the log covers everything since.
 *
 * File layout (integers big-endian):
 *   [0, 4096)   header: "RWAL" u32 version(1) u64 gen u32 crc32c(bytes 0..15)
 *   [4096, ...) records, back to back:
 *       u32 len  u32 crc32c(gen, len, payload)  u64 gen  payload[len]
 *     payload: u64 stamp (the caller's: the store puts its wall-clock ms,
 *     its "last seen" time), u32 count, then count entries of
 *       u16 key_len  key[key_len]  record (kv_rec_encode: the bytes the
 *       store keeps on disk and sends on the wire)
 *
 * Checkpoint: once LMDB holds everything logged (its commit is durable),
 * kv_wal_reset bumps the generation in the header (fdatasync) and writes
 * again from offset 4096. The file is recycled, not truncated: overwriting
 * blocks that already exist needs no metadata update, so the fdatasync of a
 * batch writes data only. Old records left behind carry an older
 * generation (inside their checksum), so replay stops at them. The file
 * grows (zero-filled, in steps doubling from KV_WAL_GROW_MIN up to
 * KV_WAL_GROW) only when a generation writes past its end.
 *
 * Replay reads records of the header's generation from 4096 until the first
 * short, torn, stale or mis-checksummed record; that tail is dropped (the
 * next checkpoint's generation makes it unreadable for good). Replay is a
 * merge (keep the larger version), so replaying a record LMDB already holds
 * changes nothing: a crash between LMDB's commit and the reset is harmless.
 * What was dropped is described by a struct kv_wal_tail (kv_wal_tail_examine):
 * where, how many bytes and records of the generation, and why. A log that
 * simply ends (zeros, or a record of an older generation) drops nothing.
 *
 * Failures are not sticky. A failed commit leaves the position where it
 * was; if any byte of the record may have reached the file, the record's
 * header is zeroed and synced ("scrubbed") so that a restart does not
 * replay a batch that was answered with an error. If the scrub fails too,
 * the next commit (or replay) retries it first. A failed reset (header
 * write) leaves the header unknown; the new generation is kept pending and
 * written again before anything else is appended. Once the disk takes
 * writes again, the next commit succeeds.
 *
 * Sans-I/O: kv_wal_header_*, kv_wal_parse, kv_wal_tail_examine and the batch
 * buffer do no I/O (the fuzz target drives them); kv_wal_open/replay/
 * commit/reset/inspect do.
 *
 * Error convention: I/O functions return 0 (or a count) or -errno.
 * kv_wal_parse returns the length of the valid prefix.
 */
#ifndef RUMOR_KV_WAL_H
#define RUMOR_KV_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_rec;
struct kv_wal;

#define KV_WAL_HDR 4096u                   /* records start here */
#define KV_WAL_HDR_LEN 20u                 /* bytes of the header that are used */
#define KV_WAL_REC_HDR 16u                 /* len, crc, gen */
#define KV_WAL_GROW ((size_t)1 << 20)      /* the file grows at most this much at a time */
#define KV_WAL_GROW_MIN ((size_t)64 << 10) /* ... and first this much (kv_wal_grow_target) */

/* One entry of a replayed batch; non-zero stops the replay (an error). */
typedef int (*kv_wal_fn)(void *ud, const char *key, size_t key_len, const struct kv_rec *r);

/* CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t kv_wal_crc32c(uint32_t crc, const void *buf, size_t len);

/* Writes the header for gen into out[KV_WAL_HDR_LEN]. */
void kv_wal_header_encode(uint8_t *out, uint64_t gen);
/* 0 and *gen from a valid header in [p, p+len), or -1. */
int kv_wal_header_decode(const uint8_t *p, size_t len, uint64_t *gen);

/* Reads the records of generation gen from [buf, buf+len) (buf is the
 * file from offset KV_WAL_HDR on). Each whole, checksummed record of gen is
 * decoded entirely first, then fn is called for its entries. Stops at the
 * first record that is short, stale, fails its checksum or does not decode.
 * Returns the length of the valid prefix (>= 0), or -1 if fn failed;
 * *batches counts the records replayed and *stamp is set to the stamp of
 * the last one (both may be NULL; *stamp is left alone when none). */
long long kv_wal_parse(const uint8_t *buf, size_t len, uint64_t gen, kv_wal_fn fn, void *ud,
                       size_t *batches, uint64_t *stamp);

/* Why replay stopped before the end of the file. */
enum kv_wal_tail_why {
	KV_WAL_TAIL_NONE,     /* the log ends cleanly (zeros or an older generation) */
	KV_WAL_TAIL_SHORT,    /* a record of the generation runs past the end of the file */
	KV_WAL_TAIL_LENGTH,   /* a record of the generation has an impossible length */
	KV_WAL_TAIL_CHECKSUM, /* a whole record of the generation fails its CRC */
	KV_WAL_TAIL_DECODE,   /* its CRC holds but its entries do not decode */
	KV_WAL_TAIL_HEADER,   /* the file has no valid header: all of it is dropped */
};

/* What replay dropped. offset is a file offset (KV_WAL_HDR + valid prefix).
 * records counts the bad record and the records of the generation found
 * after it by following lengths; intact how many of those had a valid
 * checksum (batches that had been acknowledged). bytes runs from offset to
 * the end of the last of them (SHORT: to the end of the file). */
struct kv_wal_tail {
	enum kv_wal_tail_why why;
	uint64_t offset;
	uint64_t bytes;
	uint32_t records;
	uint32_t intact;
};

/* "clean end", "truncated", "bad length", "checksum mismatch", "undecodable",
 * "no valid header". */
const char *kv_wal_tail_why_name(enum kv_wal_tail_why why);

/* Classifies the bytes of [buf, buf+len) after the valid prefix `valid`
 * (what kv_wal_parse returned for gen) into *t. No I/O. */
void kv_wal_tail_examine(const uint8_t *buf, size_t len, uint64_t gen, size_t valid,
                         struct kv_wal_tail *t);

/* Open (creating) the log at path. Call kv_wal_replay before appending. */
struct kv_wal *kv_wal_open(const char *path, char *err, size_t errlen);
void kv_wal_close(struct kv_wal *w);

/* Replay the current generation (see kv_wal_parse; stamp as there) and
 * position appends after its last valid record. The first replay reads the
 * whole file; a later one (a rollback) stops where the last successful
 * commit ended. tail (may be NULL) says what was dropped after the valid
 * records. Returns the batches replayed or -errno. */
int kv_wal_replay(struct kv_wal *w, kv_wal_fn fn, void *ud, uint64_t *stamp,
                  struct kv_wal_tail *tail, char *err, size_t errlen);

/* Read-only look at the log file at path (the agent may be running: a
 * batch being appended then shows as a dropped tail): *batches replayable
 * and *tail. 0, or -errno (-ENOENT: no log) with err. */
int kv_wal_inspect(const char *path, size_t *batches, struct kv_wal_tail *tail, char *err,
                   size_t errlen);

/* Add one entry to the batch being built (no I/O). 0 or -ENOMEM/-EINVAL. */
int kv_wal_add(struct kv_wal *w, const char *key, size_t key_len, const struct kv_rec *r);
/* Entries in the batch being built. */
size_t kv_wal_pending(const struct kv_wal *w);
/* Forget the batch being built. */
void kv_wal_discard(struct kv_wal *w);
/* Append the batch as one record carrying stamp, and fdatasync; 0 (also
 * for an empty batch, without I/O) or -errno. The batch is emptied either
 * way; after a failure nothing of it is replayed (see "Failures" above,
 * for the one case where the scrub could not be written) and the next
 * commit may succeed. */
int kv_wal_commit(struct kv_wal *w, uint64_t stamp);
/* kv_wal_commit, with the fdatasync only when sync is true (and the log is
 * not kv_wal_set_sync(false)): a batch whose records are kept elsewhere too
 * (learned from peers) is written, and made durable by the next synced
 * commit or checkpoint. */
int kv_wal_append(struct kv_wal *w, uint64_t stamp, bool sync);
/* sync false: kv_wal_commit writes its record without the fdatasync (the
 * caller has another durable record of what the batch holds; see
 * kv_store_set_log_sync). Replay still takes a prefix of the batches. */
void kv_wal_set_sync(struct kv_wal *w, bool sync);

/* Checkpoint done: next generation (header written and synced), appends
 * start again at KV_WAL_HDR. 0 or -errno (the generation stays pending and
 * is written before the next append). */
int kv_wal_reset(struct kv_wal *w);

/* Bytes of records in the current generation. */
uint64_t kv_wal_size(const struct kv_wal *w);
/* The current generation. */
uint64_t kv_wal_gen(const struct kv_wal *w);
/* True while a failed commit's scrub or a failed reset's header is still
 * to be written (the next commit or replay tries first). */
bool kv_wal_broken(const struct kv_wal *w);

/* The size the file grows to from `size` bytes so that it holds `end`
 * (sans-I/O; see kv_wal_commit). */
uint64_t kv_wal_grow_target(uint64_t size, uint64_t end);

#endif
