/*
 * kv/record.c — see record.h.
 *
 * The decoder is the one place a stored or received record is read, so it
 * refuses whatever the rest of kv/ must never meet: an unknown version, a
 * tombstone with a value, a version of 0, a value over KV_VALUE_MAX, Raft
 * indexes that are 0 or out of order. Each record has one encoding (a
 * version 2 record holds a lock, a version 3 one a Raft index), so a record
 * decoded and encoded again gives back the same bytes.
 */
#include "kv/record.h"

#include <stdio.h>
#include <string.h>

#include "kv/hlc.h"
#include "kv/limits.h"
#include "lib/cursor.h"

size_t kv_rec_size(const struct kv_rec *r)
{
	size_t n = 2 + 24 + 1 + r->node_len + 4 + r->value_len;
	if (kv_rec_raft(r))
		return n + 8 + 1 + r->session_len + 16;
	return kv_rec_locked(r) ? n + 8 + 1 + r->session_len : n;
}

bool kv_rec_locked(const struct kv_rec *r)
{
	return r->lock_index != 0 || r->session_len != 0;
}

bool kv_rec_raft(const struct kv_rec *r)
{
	return r->raft_index != 0;
}

/*
 * Version byte first, so the format can change without guessing; the writer's
 * name travels with every record because it breaks ties between equal versions.
 * The caller sizes the buffer with kv_rec_size: this never checks.
 */
uint8_t *kv_rec_encode(const struct kv_rec *r, uint8_t *p)
{
	bool raft = kv_rec_raft(r);
	bool locked = raft || kv_rec_locked(r);
	*p++ = raft ? 3 : locked ? 2 : 1;
	*p++ = r->tomb ? 1 : 0;
	be64_put(p, r->hlc);
	be64_put(p + 8, r->create);
	be64_put(p + 16, r->flags);
	p += 24;
	*p++ = r->node_len;
	if (r->node_len)
		memcpy(p, r->node, r->node_len);
	p += r->node_len;
	be32_put(p, r->value_len);
	p += 4;
	if (r->value_len)
		memcpy(p, r->value, r->value_len);
	p += r->value_len;
	if (locked) {
		be64_put(p, r->lock_index);
		p[8] = r->session_len;
		if (r->session_len)
			memcpy(p + 9, r->session, r->session_len);
		p += 9 + r->session_len;
	}
	if (raft) {
		be64_put(p, r->raft_index);
		be64_put(p + 8, r->raft_create);
		p += 16;
	}
	return p;
}

#define NEED(n, what)                                                                              \
	do {                                                                                       \
		if ((size_t)(end - p) < (size_t)(n)) {                                             \
			snprintf(err, errlen, "record: truncated at %s", what);                    \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

int kv_rec_decode(const uint8_t **pos, const uint8_t *end, struct kv_rec *r, char *err,
                  size_t errlen)
{
	const uint8_t *p = *pos;
	if (p == NULL || end < p) {
		snprintf(err, errlen, "record: no input");
		return -1;
	}
	NEED(2, "header");
	if (p[0] < 1 || p[0] > 3) {
		snprintf(err, errlen, "record: unknown version %u", p[0]);
		return -1;
	}
	if (p[1] > 1) {
		snprintf(err, errlen, "record: bad tombstone flag %u", p[1]);
		return -1;
	}
	bool raft = p[0] == 3;
	bool locked = p[0] >= 2; /* version 3 carries the lock fields too */
	memset(r, 0, sizeof(*r));
	r->tomb = p[1] == 1;
	p += 2;
	NEED(24, "versions");
	r->hlc = be64_get(p);
	r->create = be64_get(p + 8);
	r->flags = be64_get(p + 16);
	p += 24;
	NEED(1, "node length");
	r->node_len = *p++;
	NEED(r->node_len, "node");
	r->node = (const char *)p;
	p += r->node_len;
	NEED(4, "value length");
	r->value_len = be32_get(p);
	p += 4;
	if (r->value_len > KV_VALUE_MAX) {
		snprintf(err, errlen, "record: value length %u over the limit", r->value_len);
		return -1;
	}
	NEED(r->value_len, "value");
	r->value = p;
	p += r->value_len;
	if (locked) {
		NEED(9, "lock index");
		r->lock_index = be64_get(p);
		r->session_len = p[8];
		p += 9;
		if (r->session_len > KV_SESSION_MAX) {
			snprintf(err, errlen, "record: session length %u over the limit",
			         r->session_len);
			return -1;
		}
		NEED(r->session_len, "session");
		r->session = (const char *)p;
		p += r->session_len;
		if (!raft && !kv_rec_locked(r)) {
			snprintf(err, errlen, "record: lock fields without a lock");
			return -1;
		}
	}
	if (raft) {
		NEED(16, "raft indexes");
		r->raft_index = be64_get(p);
		r->raft_create = be64_get(p + 8);
		p += 16;
		if (r->raft_index == 0 || r->raft_create == 0 || r->raft_create > r->raft_index) {
			snprintf(err, errlen, "record: raft create index %llu with index %llu",
			         (unsigned long long)r->raft_create,
			         (unsigned long long)r->raft_index);
			return -1;
		}
	}
	if (r->tomb && r->value_len != 0) {
		snprintf(err, errlen, "record: tombstone with a value");
		return -1;
	}
	if (r->hlc == 0) {
		snprintf(err, errlen, "record: zero version");
		return -1;
	}
	*pos = p;
	return 0;
}

/*
 * The total order of versions every replica uses: the HLC, then the writer's
 * name bytewise. Two writes are never equal unless they are the same write, so
 * every replica picks the same winner.
 */
int kv_rec_cmp(const struct kv_rec *a, const struct kv_rec *b)
{
	if (a->hlc != b->hlc)
		return a->hlc > b->hlc ? 1 : -1;
	size_t n = a->node_len < b->node_len ? a->node_len : b->node_len;
	int c = n ? memcmp(a->node, b->node, n) : 0;
	if (c != 0)
		return c > 0 ? 1 : -1;
	if (a->node_len != b->node_len)
		return a->node_len > b->node_len ? 1 : -1;
	return 0;
}

uint64_t kv_rec_index(const struct kv_rec *r)
{
	return r->raft_index ? r->raft_index : kv_hlc_index(r->hlc);
}

uint64_t kv_rec_create_index(const struct kv_rec *r)
{
	if (r->raft_index)
		return r->raft_create;
	return r->create ? kv_hlc_index(r->create) : 0;
}
