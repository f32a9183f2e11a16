/*
 * tests/fuzz/fuzz_kv_wal.c — replay of arbitrary bytes as a KV write-ahead
 * log (kv_wal_parse, the code kv_wal_replay runs over the file) and the
 * header decoder.
 *
 * Input: u8 mode, u64 gen (big-endian), then the bytes after the log's
 * header. With mode's low bit set, the checksum of every record is fixed
 * up before parsing (len and gen as found), so that mutations reach the
 * payload decoder instead of dying at the checksum. The first
 * KV_WAL_HDR_LEN bytes are also fed to the header decoder.
 *
 * Invariants: the valid prefix is within the input; parsing the valid
 * prefix alone gives the same length and batch count; every entry has a key
 * of 1..65535 bytes and a record that re-encodes to kv_rec_size bytes; the
 * tail report (kv_wal_tail_examine) starts at the valid prefix, stays
 * within the input and names a reason exactly when it counts records.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/store.h"
#include "kv/wal.h"
#include "lib/cursor.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_kv_wal: %s:%d: %s\n", __FILE__, __LINE__, #c);       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static uint8_t scratch[600 * 1024];

static int check_entry(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	size_t *n = ud;
	ASSERT(key != NULL && key_len >= 1 && key_len <= 0xffff);
	ASSERT(r->value_len <= 512u * 1024u);
	size_t sz = kv_rec_size(r);
	if (sz <= sizeof(scratch))
		ASSERT((size_t)(kv_rec_encode(r, scratch) - scratch) == sz);
	(*n)++;
	return 0;
}

/* Give every record (as its length fields lay them out) a correct checksum. */
static void fix_crcs(uint8_t *b, size_t len)
{
	size_t off = 0;
	while (len - off >= KV_WAL_REC_HDR) {
		uint8_t *h = b + off;
		uint32_t plen = be32_get(h);
		if (plen > len - off - KV_WAL_REC_HDR)
			break;
		uint8_t pre[12];
		memcpy(pre, h + 8, 8); /* gen */
		be32_put(pre + 8, plen);
		uint32_t crc =
		        kv_wal_crc32c(kv_wal_crc32c(0, pre, sizeof(pre)), h + KV_WAL_REC_HDR, plen);
		be32_put(h + 4, crc);
		off += KV_WAL_REC_HDR + plen;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t hg;
	if (kv_wal_header_decode(data, size, &hg) == 0) {
		uint8_t h[KV_WAL_HDR_LEN];
		kv_wal_header_encode(h, hg);
		ASSERT(memcmp(h, data, sizeof(h)) == 0);
	}
	if (size < 9)
		return 0;
	uint8_t mode = data[0];
	uint64_t gen = be64_get(data + 1);
	size_t len = size - 9;
	uint8_t *b = malloc(len ? len : 1);
	ASSERT(b != NULL);
	memcpy(b, data + 9, len);
	if (mode & 1)
		fix_crcs(b, len);
	size_t entries = 0, batches = 0, entries2 = 0, batches2 = 0;
	uint64_t stamp = 0;
	long long good = kv_wal_parse(b, len, gen, check_entry, &entries, &batches, &stamp);
	ASSERT(good >= 0 && (size_t)good <= len);
	ASSERT(batches == 0 || (size_t)good >= batches * (KV_WAL_REC_HDR + 12));
	long long again =
	        kv_wal_parse(b, (size_t)good, gen, check_entry, &entries2, &batches2, NULL);
	ASSERT(again == good && batches2 == batches && entries2 == entries);
	/* the dropped tail: starts where parsing stopped, stays within the
	 * input, and counts records exactly when it names a reason */
	struct kv_wal_tail t;
	kv_wal_tail_examine(b, len, gen, (size_t)good, &t);
	ASSERT(t.offset == KV_WAL_HDR + (uint64_t)good);
	ASSERT(t.bytes <= len - (size_t)good);
	ASSERT((t.why == KV_WAL_TAIL_NONE) == (t.records == 0));
	ASSERT(t.why != KV_WAL_TAIL_HEADER && t.intact < t.records + (t.records == 0));
	ASSERT(t.why == KV_WAL_TAIL_NONE || t.bytes > 0);
	ASSERT(kv_wal_tail_why_name(t.why)[0] != '?');
	free(b);
	return 0;
}
