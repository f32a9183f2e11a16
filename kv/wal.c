/*
 * kv/wal.c — see wal.h.
 *
 * The one rule behind the failure handling: the bytes at and after `pos`
 * may be anything (zeros, older generations, a torn or a failed record),
 * and replay must never take them for an acknowledged batch. A commit
 * writes there; if it fails after the record's bytes may have reached
 * the file, its header is zeroed ("scrubbed") before anything else is
 * appended, so nothing answered with an error is replayed later. The
 * position only moves after a successful fdatasync, so the next commit
 * simply writes over whatever a failed one left.
 */
#define _GNU_SOURCE
#include "kv/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv/record.h"
#include "lib/cursor.h"

#define WAL_VERSION 1u
#define BATCH_HDR (KV_WAL_REC_HDR + 12u) /* record header, stamp, entry count */
#define MAX_RECORD ((uint64_t)1 << 30)

struct kv_wal {
	int fd;
	uint64_t gen;
	uint64_t pos;       /* where the next record goes */
	uint64_t file_size; /* bytes the file has (zero-filled past the log) */
	bool scrub;         /* a failed record may start at pos: zero its header first */
	bool hdr_pending;   /* a reset's header write failed: write pending_gen first */
	uint64_t pending_gen;
	bool replayed; /* later replays stop at pos (a rollback) */
	bool nosync;   /* commits write without fdatasync (kv_wal_set_sync) */
	uint8_t *buf;  /* the batch being built: BATCH_HDR, then entries */
	size_t len, cap;
	uint32_t count;
	char path[4096];
};

/* ------------------------------------------------------------ crc32c */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE4.2's crc32 instruction computes CRC-32C itself, 8 bytes at a time:
 * the table loop below was 12% of a leader's CPU under forwarded writes
 * (perf; every stored record is checked on each read and scan). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = (uint32_t)__builtin_ia32_crc32di(c, v);
	}
	for (; len > 0; p++, len--)
		c = __builtin_ia32_crc32qi(c, *p);
	return c;
}
#define CRC_HW 1
#endif

/*
 * CRC-32C (Castagnoli), the checksum LevelDB and RocksDB put on their log
 * records for the same job. The CPU's instruction where there is one (the
 * same function: tests/unit/test_kv_wal.c checks both against a bitwise
 * reference), else table-driven. Both are set up on first use; that is safe
 * because every caller runs on the one thread of the agent or the CLI, or
 * (a snapshot's reader, kv/store.c) after kv_store_reader_open has set them
 * up in that thread before the hand-over.
 */
uint32_t kv_wal_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
#ifdef CRC_HW
	static int hw = -1;
	if (hw < 0)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return ~crc_hw(~crc, p, len);
#endif
	if (crc_table[1] == 0)
		crc_init();
	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ------------------------------------------------------------ codec */

void kv_wal_header_encode(uint8_t *out, uint64_t gen)
{
	memcpy(out, "RWAL", 4);
	be32_put(out + 4, WAL_VERSION);
	be64_put(out + 8, gen);
	be32_put(out + 16, kv_wal_crc32c(0, out, 16));
}

/*
 * A header is trusted only if magic, version and its own checksum all match;
 * anything else is "no log", never a guess at a generation.
 */
int kv_wal_header_decode(const uint8_t *p, size_t len, uint64_t *gen)
{
	if (p == NULL || len < KV_WAL_HDR_LEN || memcmp(p, "RWAL", 4) != 0 ||
	    be32_get(p + 4) != WAL_VERSION || be32_get(p + 16) != kv_wal_crc32c(0, p, 16))
		return -1;
	*gen = be64_get(p + 8);
	return 0;
}

/* The checksum of a record: over gen, len and the payload. */
static uint32_t rec_crc(uint64_t gen, uint32_t len, const uint8_t *payload)
{
	uint8_t h[12];
	be64_put(h, gen);
	be32_put(h + 8, len);
	return kv_wal_crc32c(kv_wal_crc32c(0, h, sizeof(h)), payload, len);
}

/* Walks the entries of a payload; with fn NULL only checks that they all
 * decode. 0, -1 malformed, -2 fn failed. */
static int walk_payload(const uint8_t *p, const uint8_t *end, kv_wal_fn fn, void *ud)
{
	char err[96];
	struct cursor c = {p, end};
	const uint8_t *stamp, *key;
	uint32_t count;
	if (!cursor_bytes(&c, 8, &stamp) || !cursor_be32(&c, &count))
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		uint16_t klen;
		if (!cursor_be16(&c, &klen) || klen == 0 || !cursor_bytes(&c, klen, &key))
			return -1;
		struct kv_rec r;
		if (kv_rec_decode(&c.p, c.end, &r, err, sizeof(err)) < 0)
			return -1;
		if (fn != NULL && fn(ud, (const char *)key, klen, &r) != 0)
			return -2;
	}
	return c.p == c.end ? 0 : -1;
}

const char *kv_wal_tail_why_name(enum kv_wal_tail_why why)
{
	switch (why) {
	case KV_WAL_TAIL_NONE:
		return "clean end";
	case KV_WAL_TAIL_SHORT:
		return "truncated";
	case KV_WAL_TAIL_LENGTH:
		return "bad length";
	case KV_WAL_TAIL_CHECKSUM:
		return "checksum mismatch";
	case KV_WAL_TAIL_DECODE:
		return "undecodable";
	case KV_WAL_TAIL_HEADER:
		return "no valid header";
	}
	return "?";
}

/* Why a record of generation gen at h (rest >= KV_WAL_REC_HDR bytes
 * available) would stop replay; KV_WAL_TAIL_NONE if it would not. *n is
 * its whole length when that is known and within rest, else 0. */
static enum kv_wal_tail_why classify(const uint8_t *h, size_t rest, uint64_t gen, size_t *n)
{
	uint32_t plen = be32_get(h);
	*n = 0;
	if (plen < 12 || plen > MAX_RECORD)
		return KV_WAL_TAIL_LENGTH;
	if (plen > rest - KV_WAL_REC_HDR)
		return KV_WAL_TAIL_SHORT;
	*n = KV_WAL_REC_HDR + plen;
	const uint8_t *payload = h + KV_WAL_REC_HDR;
	if (rec_crc(gen, plen, payload) != be32_get(h + 4))
		return KV_WAL_TAIL_CHECKSUM;
	if (walk_payload(payload, payload + plen, NULL, NULL) != 0)
		return KV_WAL_TAIL_DECODE;
	return KV_WAL_TAIL_NONE;
}

/* Only records that carry the generation count: zeros and older
 * generations are where a log normally ends. A bad record's length is
 * followed as long as it leads to further records of the generation, so
 * that batches acknowledged after a corrupted one are counted (intact),
 * not silently lost with it. */
void kv_wal_tail_examine(const uint8_t *buf, size_t len, uint64_t gen, size_t valid,
                         struct kv_wal_tail *t)
{
	memset(t, 0, sizeof(*t));
	t->offset = KV_WAL_HDR + (uint64_t)valid;
	if (buf == NULL || valid >= len)
		return;
	size_t off = valid;
	if (len - off < KV_WAL_REC_HDR) {
		/* a header cut short; zeros are a clean end */
		for (size_t i = off; i < len; i++)
			if (buf[i] != 0) {
				t->why = KV_WAL_TAIL_SHORT;
				t->records = 1;
				t->bytes = len - off;
				break;
			}
		return;
	}
	size_t n;
	while (len - off >= KV_WAL_REC_HDR && be64_get(buf + off + 8) == gen) {
		enum kv_wal_tail_why why = classify(buf + off, len - off, gen, &n);
		if (t->records == 0) {
			if (why == KV_WAL_TAIL_NONE)
				return; /* not where parsing stopped: nothing to say */
			t->why = why;
		}
		if (t->records < UINT32_MAX)
			t->records++;
		if (why == KV_WAL_TAIL_NONE && t->intact < UINT32_MAX)
			t->intact++;
		if (n == 0) { /* length unusable: the rest is unreachable */
			t->bytes += why == KV_WAL_TAIL_SHORT ? len - off : KV_WAL_REC_HDR;
			return;
		}
		t->bytes += n;
		off += n;
	}
}

/*
 * Stops at the first record that is not whole and valid and returns where: that
 * is the end of the log, and nothing after it is ever replayed. Each payload is
 * checked completely before fn sees any of its entries, so a batch is replayed
 * whole or not at all.
 */
long long kv_wal_parse(const uint8_t *buf, size_t len, uint64_t gen, kv_wal_fn fn, void *ud,
                       size_t *batches, uint64_t *stamp)
{
	size_t off = 0, n = 0;
	while (buf != NULL && len - off >= KV_WAL_REC_HDR) {
		const uint8_t *h = buf + off;
		uint32_t plen = be32_get(h);
		uint32_t crc = be32_get(h + 4);
		if (be64_get(h + 8) != gen || plen < 12 || plen > len - off - KV_WAL_REC_HDR)
			break;
		const uint8_t *payload = h + KV_WAL_REC_HDR;
		if (rec_crc(gen, plen, payload) != crc)
			break;
		if (walk_payload(payload, payload + plen, NULL, NULL) != 0)
			break;
		if (walk_payload(payload, payload + plen, fn, ud) != 0)
			return -1;
		if (stamp != NULL)
			*stamp = be64_get(payload);
		off += KV_WAL_REC_HDR + plen;
		n++;
	}
	if (batches != NULL)
		*batches = n;
	return (long long)off;
}

/* ------------------------------------------------------------ file */

/*
 * pwrite at an explicit offset, never the file position: a failed commit must
 * leave nothing (such as a moved offset) that changes where the next one writes.
 */
static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Reads [off, off+n) of fd into a new buffer (*out, the caller frees). */
static int read_range(int fd, uint64_t off, size_t n, uint8_t **out)
{
	uint8_t *data = malloc(n ? n : 1);
	if (data == NULL)
		return -ENOMEM;
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, data + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(data);
			return -e;
		}
		got += (size_t)r;
	}
	*out = data;
	return 0;
}

static int write_header(struct kv_wal *w, uint64_t gen)
{
	uint8_t h[KV_WAL_HDR_LEN];
	kv_wal_header_encode(h, gen);
	int rc = write_all(w->fd, h, sizeof(h), 0);
	if (rc == 0 && fdatasync(w->fd) < 0)
		rc = -errno;
	return rc;
}

/* A fresh generation: random, so that no earlier one (left in the file)
 * and no bytes inside a value can be taken for a record of it. */
static uint64_t next_gen(uint64_t old)
{
	uint64_t g = 0;
	if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
		g = old * 0x9e3779b97f4a7c15ull + 1;
	return g == old || g == 0 ? old + 1 : g;
}

/* A reset whose header write failed: write the pending generation's
 * header now. LMDB held everything logged before that reset, so the log
 * starts empty under the new generation. */
static int settle_header(struct kv_wal *w)
{
	if (!w->hdr_pending)
		return 0;
	int rc = write_header(w, w->pending_gen);
	if (rc < 0)
		return rc;
	w->gen = w->pending_gen;
	w->pos = KV_WAL_HDR;
	w->hdr_pending = false;
	w->scrub = false; /* what a failed record left carries the old generation */
	return 0;
}

/* A commit failed after writing (some of) its record at pos: zero the
 * record's header and sync, so that a restart stops there. */
static int settle_scrub(struct kv_wal *w)
{
	static const uint8_t zero[KV_WAL_REC_HDR];
	if (!w->scrub)
		return 0;
	int rc = write_all(w->fd, zero, sizeof(zero), w->pos);
	if (rc == 0 && fdatasync(w->fd) < 0)
		rc = -errno;
	if (rc == 0)
		w->scrub = false;
	return rc;
}

/*
 * Opening only creates the file (0600: it holds every value); reading it is
 * kv_wal_replay's job, so the store decides when replay happens.
 */
struct kv_wal *kv_wal_open(const char *path, char *err, size_t errlen)
{
	struct kv_wal *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		snprintf(err, errlen, "wal: out of memory");
		return NULL;
	}
	snprintf(w->path, sizeof(w->path), "%s", path);
	w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		snprintf(err, errlen, "wal %s: %s", path, strerror(errno));
		free(w);
		return NULL;
	}
	w->len = BATCH_HDR;
	w->pos = KV_WAL_HDR;
	return w;
}

void kv_wal_close(struct kv_wal *w)
{
	if (w == NULL)
		return;
	close(w->fd);
	free(w->buf);
	free(w);
}

int kv_wal_replay(struct kv_wal *w, kv_wal_fn fn, void *ud, uint64_t *stamp,
                  struct kv_wal_tail *tail, char *err, size_t errlen)
{
	struct kv_wal_tail none;
	if (tail == NULL)
		tail = &none;
	memset(tail, 0, sizeof(*tail));
	int rc = settle_header(w);
	if (rc < 0) {
		snprintf(err, errlen, "wal %s: header: %s", w->path, strerror(-rc));
		return rc;
	}
	struct stat st;
	if (fstat(w->fd, &st) < 0) {
		snprintf(err, errlen, "wal %s: %s", w->path, strerror(errno));
		return -errno;
	}
	uint64_t size = (uint64_t)st.st_size;
	uint8_t hdr[KV_WAL_HDR_LEN];
	uint64_t gen = 0;
	bool have = size >= KV_WAL_HDR_LEN &&
	            pread(w->fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
	            kv_wal_header_decode(hdr, sizeof(hdr), &gen) == 0;
	uint64_t limit = w->replayed ? w->pos : size;
	w->file_size = size;
	w->pos = KV_WAL_HDR;
	if (!have && w->replayed) {
		snprintf(err, errlen, "wal %s: header unreadable", w->path);
		return -EIO;
	}
	if (!have) {
		/* a new log, or a header torn while a checkpoint wrote it (LMDB
		 * then already held everything): start a generation past any
		 * the old bytes could carry. The caller reports a non-empty
		 * file through tail. */
		if (size > 0) {
			tail->why = KV_WAL_TAIL_HEADER;
			tail->offset = 0;
			tail->bytes = size;
		}
		w->gen = next_gen(0);
		w->replayed = true;
		if (size > 0) {
			/* make the old records unreadable as generation 1 */
			if (ftruncate(w->fd, 0) < 0 || fdatasync(w->fd) < 0) {
				int e = errno;
				snprintf(err, errlen, "wal %s: %s", w->path, strerror(e));
				return -e;
			}
			w->file_size = 0;
		}
		rc = write_header(w, w->gen);
		if (rc < 0) {
			snprintf(err, errlen, "wal %s: header: %s", w->path, strerror(-rc));
			return rc;
		}
		if (w->file_size < KV_WAL_HDR_LEN)
			w->file_size = KV_WAL_HDR_LEN;
		return 0;
	}
	w->gen = gen;
	w->replayed = true;
	if (limit > size)
		limit = size;
	if (limit <= KV_WAL_HDR)
		return 0;
	size = limit;
	if (size - KV_WAL_HDR > MAX_RECORD * 4) {
		snprintf(err, errlen, "wal %s: %llu bytes, too large", w->path,
		         (unsigned long long)size);
		return -EFBIG;
	}
	size_t n = (size_t)(size - KV_WAL_HDR);
	uint8_t *data;
	rc = read_range(w->fd, KV_WAL_HDR, n, &data);
	if (rc < 0) {
		snprintf(err, errlen, "wal %s: read: %s", w->path, strerror(-rc));
		return rc;
	}
	size_t batches = 0;
	long long good = kv_wal_parse(data, n, gen, fn, ud, &batches, stamp);
	if (good >= 0)
		kv_wal_tail_examine(data, n, gen, (size_t)good, tail);
	free(data);
	if (good < 0) {
		snprintf(err, errlen, "wal %s: applying a logged batch failed", w->path);
		return -EIO;
	}
	w->pos = KV_WAL_HDR + (uint64_t)good;
	return (int)batches;
}

int kv_wal_inspect(const char *path, size_t *batches, struct kv_wal_tail *tail, char *err,
                   size_t errlen)
{
	memset(tail, 0, sizeof(*tail));
	*batches = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "wal %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	uint8_t hdr[KV_WAL_HDR_LEN];
	uint64_t gen = 0;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "wal %s: %s", path, strerror(-rc));
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size < KV_WAL_HDR_LEN || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    kv_wal_header_decode(hdr, sizeof(hdr), &gen) < 0) {
		if (size > 0) {
			tail->why = KV_WAL_TAIL_HEADER;
			tail->bytes = size;
		}
		goto out;
	}
	if (size <= KV_WAL_HDR)
		goto out;
	if (size - KV_WAL_HDR > MAX_RECORD * 4) {
		rc = -EFBIG;
		snprintf(err, errlen, "wal %s: %llu bytes, too large", path,
		         (unsigned long long)size);
		goto out;
	}
	size_t n = (size_t)(size - KV_WAL_HDR);
	uint8_t *data;
	rc = read_range(fd, KV_WAL_HDR, n, &data);
	if (rc < 0) {
		snprintf(err, errlen, "wal %s: read: %s", path, strerror(-rc));
		goto out;
	}
	long long good = kv_wal_parse(data, n, gen, NULL, NULL, batches, NULL);
	kv_wal_tail_examine(data, n, gen, good > 0 ? (size_t)good : 0, tail);
	free(data);
out:
	close(fd);
	return rc;
}

/*
 * Only appends to the batch in memory; nothing reaches the file until
 * kv_wal_commit, so a batch rolled back costs no I/O.
 */
int kv_wal_add(struct kv_wal *w, const char *key, size_t key_len, const struct kv_rec *r)
{
	if (key_len == 0 || key_len > 0xffff)
		return -EINVAL;
	size_t need = 2 + key_len + kv_rec_size(r);
	if (w->len + need > w->cap) {
		size_t cap = w->cap ? w->cap : 64 * 1024;
		while (cap < w->len + need)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (b == NULL)
			return -ENOMEM;
		w->buf = b;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	be16_put(p, (uint16_t)key_len);
	memcpy(p + 2, key, key_len);
	kv_rec_encode(r, p + 2 + key_len);
	w->len += need;
	w->count++;
	return 0;
}

size_t kv_wal_pending(const struct kv_wal *w)
{
	return w->count;
}

void kv_wal_discard(struct kv_wal *w)
{
	w->len = BATCH_HDR;
	w->count = 0;
}

/* The size a file of `size` bytes grows to so that it holds `end`: the
 * step doubles from KV_WAL_GROW_MIN up to KV_WAL_GROW (64, 128, 256, 512
 * KiB, 1 MiB, then 2, 3, ... MiB), so that an agent whose log holds a few
 * small batches between checkpoints never writes and syncs a whole MiB of
 * zeros: 1,000 agents starting at once wrote 1 GB of them (docs/PERFORMANCE.md
 * "Join storms"). */
uint64_t kv_wal_grow_target(uint64_t size, uint64_t end)
{
	uint64_t t = size;
	while (t < end) {
		uint64_t step = t < KV_WAL_GROW_MIN ? KV_WAL_GROW_MIN
		                : t < KV_WAL_GROW   ? t
		                                    : KV_WAL_GROW;
		t = (t / step + 1) * step;
	}
	return t;
}

/* Zero-fill the file up to at least `end` (kv_wal_grow_target), so that
 * the records written there later overwrite existing blocks. */
static int grow(struct kv_wal *w, uint64_t end)
{
	static const uint8_t zeros[64 * 1024];
	uint64_t target = kv_wal_grow_target(w->file_size, end);
	uint64_t off = w->file_size;
	while (off < target) {
		size_t n = target - off < sizeof(zeros) ? (size_t)(target - off) : sizeof(zeros);
		int rc = write_all(w->fd, zeros, n, off);
		if (rc < 0)
			return rc;
		off += n;
	}
	w->file_size = target;
	return 0;
}

/*
 * One pwrite and one fdatasync per batch; the position moves only after the
 * sync. If the write may have reached the file and the commit still failed, the
 * record is scrubbed so a restart cannot replay a batch whose writers were told
 * it failed.
 */
/*
 * Unsynced commits keep replay's prefix rule: records are appended in order
 * and replay stops at the first one that is missing, torn or of an older
 * generation, so whatever part of the unsynced tail a crash keeps, replay
 * takes a prefix of the batches, never a later batch without an earlier one.
 */
void kv_wal_set_sync(struct kv_wal *w, bool sync)
{
	w->nosync = !sync;
}

int kv_wal_commit(struct kv_wal *w, uint64_t stamp)
{
	return kv_wal_append(w, stamp, true);
}

int kv_wal_append(struct kv_wal *w, uint64_t stamp, bool sync)
{
	if (w->count == 0)
		return 0;
	int rc = settle_header(w);
	if (rc == 0)
		rc = settle_scrub(w);
	if (rc < 0) {
		kv_wal_discard(w);
		return rc;
	}
	uint32_t plen = (uint32_t)(w->len - KV_WAL_REC_HDR);
	uint8_t *h = w->buf;
	be64_put(h + KV_WAL_REC_HDR, stamp);
	be32_put(h + KV_WAL_REC_HDR + 8, w->count);
	be32_put(h, plen);
	be32_put(h + 4, rec_crc(w->gen, plen, h + KV_WAL_REC_HDR));
	be64_put(h + 8, w->gen);
	uint64_t end = w->pos + w->len;
	bool wrote = false;
	if (end > w->file_size)
		rc = grow(w, end); /* writes zeros past file_size only: nothing to undo */
	if (rc == 0) {
		wrote = true;
		rc = write_all(w->fd, w->buf, w->len, w->pos);
	}
	if (rc == 0 && sync && !w->nosync && fdatasync(w->fd) < 0)
		rc = -errno;
	if (rc == 0) {
		w->pos = end;
	} else if (wrote) {
		/* the record may be on disk, whole or torn: never replay it */
		w->scrub = true;
		(void)settle_scrub(w); /* if this fails too, the next commit retries */
	}
	kv_wal_discard(w);
	return rc;
}

/*
 * Called after a checkpoint: a new generation makes every older record
 * unreadable at once, so the log is emptied without truncating or rewriting it.
 * A failed header write keeps the same pending generation for the retry.
 */
int kv_wal_reset(struct kv_wal *w)
{
	if (!w->hdr_pending) { /* else retry the generation no record carries yet */
		w->pending_gen = next_gen(w->gen);
		w->hdr_pending = true;
	}
	return settle_header(w);
}

uint64_t kv_wal_size(const struct kv_wal *w)
{
	return w->pos - KV_WAL_HDR;
}

uint64_t kv_wal_gen(const struct kv_wal *w)
{
	return w->gen;
}

bool kv_wal_broken(const struct kv_wal *w)
{
	return w->scrub || w->hdr_pending;
}
