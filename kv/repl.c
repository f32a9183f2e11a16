/*
 * kv/repl.c — see repl.h.
 */
#include "kv/repl.h"

#include "kv/kv.h" /* KV_KEY_MAX */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_START, ST_WAIT_DIFF, ST_WAIT_RECORDS, ST_WAIT_FIRST, ST_DONE };

void kv_buf_free(struct kv_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static int reserve(struct kv_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n) {
		if (cap > ((size_t)1 << 40))
			return -1;
		cap *= 2;
	}
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int append(struct kv_buf *b, const void *p, size_t n)
{
	if (reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t rd64(const uint8_t *p)
{
	return ((uint64_t)rd32(p) << 32) | rd32(p + 4);
}

/* ------------------------------------------------------------ gossip */

int kv_msg_encode_set(struct kv_buf *out, const char *key, size_t key_len, const struct kv_rec *r)
{
	out->len = 0;
	size_t n = 1 + 2 + key_len + kv_rec_size(r);
	if (key_len > 0xffff || reserve(out, n) < 0)
		return -1;
	uint8_t *p = out->p;
	*p++ = KV_MSG_SET;
	be16(p, (uint16_t)key_len);
	p += 2;
	memcpy(p, key, key_len);
	p += key_len;
	kv_rec_encode(r, p);
	out->len = n;
	return 0;
}

int kv_msg_encode_announce(struct kv_buf *out, const char *key, size_t key_len,
			   const struct kv_rec *r)
{
	out->len = 0;
	size_t n = 1 + 2 + key_len + 8 + 1 + r->node_len + 4;
	if (key_len > 0xffff || reserve(out, n) < 0)
		return -1;
	uint8_t *p = out->p;
	*p++ = KV_MSG_ANNOUNCE;
	be16(p, (uint16_t)key_len);
	p += 2;
	memcpy(p, key, key_len);
	p += key_len;
	be64(p, r->hlc);
	p += 8;
	*p++ = r->node_len;
	memcpy(p, r->node, r->node_len);
	p += r->node_len;
	be32(p, r->value_len);
	out->len = n;
	return 0;
}

#define NEED(n, what)                                                          \
	do {                                                                   \
		if ((size_t)(end - p) < (size_t)(n)) {                         \
			snprintf(err, errlen, "kv message: truncated %s", what); \
			return -1;                                             \
		}                                                              \
	} while (0)

static int read_key(const uint8_t **pp, const uint8_t *end, const char **key, size_t *key_len,
		    char *err, size_t errlen)
{
	const uint8_t *p = *pp;
	NEED(2, "key length");
	size_t kl = ((size_t)p[0] << 8) | p[1];
	p += 2;
	if (kl == 0 || kl > 510) {
		snprintf(err, errlen, "kv message: bad key length %zu", kl);
		return -1;
	}
	NEED(kl, "key");
	*key = (const char *)p;
	*key_len = kl;
	*pp = p + kl;
	return 0;
}

int kv_msg_decode(const uint8_t *p, size_t len, struct kv_msg *m, char *err, size_t errlen)
{
	const uint8_t *end = p + len;
	memset(m, 0, sizeof(*m));
	NEED(1, "type");
	m->type = *p++;
	if (read_key(&p, end, &m->key, &m->key_len, err, errlen) < 0)
		return -1;
	if (m->type == KV_MSG_SET) {
		if (kv_rec_decode(&p, end, &m->rec, err, errlen) < 0)
			return -1;
	} else if (m->type == KV_MSG_ANNOUNCE) {
		NEED(9, "announce version");
		m->hlc = rd64(p);
		p += 8;
		m->node_len = *p++;
		NEED(m->node_len, "announce node");
		m->node = (const char *)p;
		p += m->node_len;
		NEED(4, "announce size");
		m->size = rd32(p);
		p += 4;
		if (m->hlc == 0) {
			snprintf(err, errlen, "kv message: zero version");
			return -1;
		}
	} else {
		snprintf(err, errlen, "kv message: unknown type 0x%02x", m->type);
		return -1;
	}
	if (p != end) {
		snprintf(err, errlen, "kv message: %zu trailing bytes", (size_t)(end - p));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ frames */

long kv_frame_next(const uint8_t *p, size_t len, uint8_t *type, const uint8_t **payload,
		   size_t *plen, char *err, size_t errlen)
{
	if (len < 4)
		return 0;
	uint32_t n = rd32(p);
	if (n == 0 || n > KV_FRAME_MAX) {
		snprintf(err, errlen, "sync frame: bad length %u", n);
		return -1;
	}
	if (len - 4 < n)
		return 0;
	*type = p[4];
	*payload = p + 5;
	*plen = n - 1;
	return (long)n + 4;
}

static size_t frame_begin(struct kv_buf *out, uint8_t type)
{
	size_t at = out->len;
	uint8_t h[5] = {0, 0, 0, 0, type};
	if (append(out, h, 5) < 0)
		return (size_t)-1;
	return at;
}

static void frame_end(struct kv_buf *out, size_t at)
{
	be32(out->p + at, (uint32_t)(out->len - at - 4));
}

struct rec_writer {
	struct kv_buf *out;
	uint32_t count;
	int failed;
};

static int write_rec(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct rec_writer *w = ud;
	size_t n = 2 + key_len + kv_rec_size(r);
	if (reserve(w->out, n) < 0) {
		w->failed = 1;
		return 1;
	}
	uint8_t *p = w->out->p + w->out->len;
	be16(p, (uint16_t)key_len);
	memcpy(p + 2, key, key_len);
	kv_rec_encode(r, p + 2 + key_len);
	w->out->len += n;
	w->count++;
	return 0;
}

/* Appends "u32 count, records of every bucket set in bitmap". */
static int write_buckets(struct kv_sync *s, const uint8_t *bitmap, struct kv_buf *out)
{
	size_t at = out->len;
	uint8_t zero[4] = {0};
	if (append(out, zero, 4) < 0)
		return -1;
	struct rec_writer w = {out, 0, 0};
	for (unsigned b = 0; b < KV_BUCKETS; b++) {
		if (!(bitmap[b / 8] & (1u << (b % 8))))
			continue;
		if (kv_store_scan_bucket(s->store, true, b, write_rec, &w) < 0 || w.failed)
			return -1;
	}
	be32(out->p + at, w.count);
	s->records_out += w.count;
	return 0;
}

long kv_records_decode(const uint8_t *p, size_t len, kv_apply_fn apply, void *ctx, char *err,
		       size_t errlen)
{
	const uint8_t *end = p + len;
	NEED(4, "record count");
	uint32_t n = rd32(p);
	p += 4;
	/* each record takes at least 2+1+2+24+1+4 bytes: refuse absurd counts */
	if ((uint64_t)n * 34 > (uint64_t)(end - p)) {
		snprintf(err, errlen, "records: count %u does not fit in %zu bytes", n,
			 (size_t)(end - p));
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *key;
		size_t kl;
		struct kv_rec r;
		if (read_key(&p, end, &key, &kl, err, errlen) < 0)
			return -1;
		if (kv_rec_decode(&p, end, &r, err, errlen) < 0)
			return -1;
		if (apply != NULL && apply(ctx, key, kl, &r) < 0) {
			snprintf(err, errlen, "records: cannot apply record %u", i);
			return -1;
		}
	}
	if (p != end) {
		snprintf(err, errlen, "records: %zu trailing bytes", (size_t)(end - p));
		return -1;
	}
	return n;
}

/* ------------------------------------------------------------- sync */

int kv_sync_start(struct kv_sync *s, enum kv_sync_role role, struct kv_store *st,
		  kv_apply_fn apply, void *ctx, const char *pull_key, size_t pull_key_len,
		  struct kv_buf *out)
{
	memset(s, 0, sizeof(*s));
	s->role = role;
	s->store = st;
	s->apply = apply;
	s->ctx = ctx;
	if (role == KV_SYNC_RESPONDER) {
		s->state = ST_WAIT_FIRST;
		return 0;
	}
	if (role == KV_SYNC_PULLER) {
		if (pull_key_len == 0 || pull_key_len > 510)
			return -1;
		size_t at = frame_begin(out, KV_F_PULL);
		uint8_t kl[2];
		be16(kl, (uint16_t)pull_key_len);
		if (at == (size_t)-1 || append(out, kl, 2) < 0 ||
		    append(out, pull_key, pull_key_len) < 0)
			return -1;
		frame_end(out, at);
		s->state = ST_WAIT_RECORDS;
		return 0;
	}
	const uint64_t *d = kv_store_digest(st);
	size_t at = frame_begin(out, KV_F_DIGEST);
	if (at == (size_t)-1 || reserve(out, KV_BUCKETS * 8) < 0)
		return -1;
	for (unsigned i = 0; i < KV_BUCKETS; i++)
		be64(out->p + out->len + i * 8, d[i]);
	out->len += KV_BUCKETS * 8;
	frame_end(out, at);
	s->state = ST_WAIT_DIFF;
	return 0;
}

static int apply_records(struct kv_sync *s, const uint8_t *p, size_t len, char *err,
			 size_t errlen)
{
	long n = kv_records_decode(p, len, s->apply, s->ctx, err, errlen);
	if (n < 0)
		return -1;
	s->records_in += (uint64_t)n;
	return 0;
}

int kv_sync_feed(struct kv_sync *s, uint8_t type, const uint8_t *payload, size_t plen,
		 struct kv_buf *out, char *err, size_t errlen)
{
	switch (s->state) {
	case ST_WAIT_FIRST:
		if (type == KV_F_DIGEST) {
			if (plen != KV_BUCKETS * 8) {
				snprintf(err, errlen, "sync: digest of %zu bytes", plen);
				return -1;
			}
			const uint64_t *mine = kv_store_digest(s->store);
			for (unsigned b = 0; b < KV_BUCKETS; b++)
				if (rd64(payload + b * 8) != mine[b])
					s->diff[b / 8] |= (uint8_t)(1u << (b % 8));
			size_t at = frame_begin(out, KV_F_DIFF);
			if (at == (size_t)-1 || append(out, s->diff, sizeof(s->diff)) < 0 ||
			    write_buckets(s, s->diff, out) < 0) {
				snprintf(err, errlen, "sync: out of memory");
				return -1;
			}
			frame_end(out, at);
			s->state = ST_WAIT_RECORDS;
			return 0;
		}
		if (type == KV_F_PULL) {
			const uint8_t *p = payload, *end = payload + plen;
			const char *key;
			size_t kl;
			if (read_key(&p, end, &key, &kl, err, errlen) < 0)
				return -1;
			if (p != end) {
				snprintf(err, errlen, "sync: trailing bytes after pull key");
				return -1;
			}
			size_t at = frame_begin(out, KV_F_RECORDS);
			uint8_t zero[4] = {0};
			struct kv_rec r;
			int found = kv_store_get(s->store, true, key, kl, &r);
			if (at == (size_t)-1 || append(out, zero, 4) < 0) {
				snprintf(err, errlen, "sync: out of memory");
				return -1;
			}
			if (found == 1) {
				struct rec_writer w = {out, 0, 0};
				write_rec(&w, key, kl, &r);
				if (w.failed) {
					snprintf(err, errlen, "sync: out of memory");
					return -1;
				}
				be32(out->p + at + 5, 1);
				s->records_out++;
			}
			frame_end(out, at);
			s->state = ST_DONE;
			return 1;
		}
		snprintf(err, errlen, "sync: unexpected frame type %u at start", type);
		return -1;
	case ST_WAIT_DIFF:
		if (type != KV_F_DIFF || plen < sizeof(s->diff)) {
			snprintf(err, errlen, "sync: expected a diff, got type %u (%zu bytes)", type,
				 plen);
			return -1;
		}
		memcpy(s->diff, payload, sizeof(s->diff));
		if (apply_records(s, payload + sizeof(s->diff), plen - sizeof(s->diff), err,
				  errlen) < 0)
			return -1;
		{
			size_t at = frame_begin(out, KV_F_RECORDS);
			if (at == (size_t)-1 || write_buckets(s, s->diff, out) < 0) {
				snprintf(err, errlen, "sync: out of memory");
				return -1;
			}
			frame_end(out, at);
		}
		s->state = ST_DONE;
		return 1;
	case ST_WAIT_RECORDS:
		if (type != KV_F_RECORDS) {
			snprintf(err, errlen, "sync: expected records, got type %u", type);
			return -1;
		}
		if (apply_records(s, payload, plen, err, errlen) < 0)
			return -1;
		s->state = ST_DONE;
		return 1;
	default:
		snprintf(err, errlen, "sync: frame after the end of the exchange");
		return -1;
	}
}

/* ------------------------------------------------------- replica writes */

int kv_merge_rec(struct kv_store *st, struct kv_hlc *hlc, int64_t now_ms, int64_t ttl_ms,
		 const char *key, size_t key_len, const struct kv_rec *r)
{
	if (key_len == 0 || key_len > KV_KEY_MAX)
		return 0;
	if (r->tomb && KV_HLC_MS(r->hlc) < now_ms - ttl_ms)
		return 0;
	if (kv_store_begin(st) < 0)
		return -1;
	struct kv_rec old;
	int got = kv_store_get(st, false, key, key_len, &old);
	if (got < 0)
		return -1;
	if (got == 1 && kv_rec_cmp(r, &old) <= 0)
		return 0;
	kv_hlc_observe(hlc, r->hlc);
	return kv_store_put(st, key, key_len, r) < 0 ? -1 : 1;
}

int kv_announce_newer(struct kv_store *st, const struct kv_msg *m)
{
	struct kv_rec mine, theirs;
	memset(&theirs, 0, sizeof(theirs));
	theirs.hlc = m->hlc;
	theirs.node = m->node;
	theirs.node_len = m->node_len;
	int got = kv_store_get(st, false, m->key, m->key_len, &mine);
	if (got < 0)
		return -1;
	return got == 0 || kv_rec_cmp(&theirs, &mine) > 0;
}

bool kv_pull_covers(const char *pkey, size_t pkey_len, uint64_t phlc, const char *key,
		    size_t key_len, uint64_t hlc)
{
	return pkey != NULL && pkey_len == key_len && phlc >= hlc &&
	       memcmp(pkey, key, key_len) == 0;
}

int kv_local_stamp(struct kv_store *st, struct kv_hlc *hlc, int64_t now_ms, const char *node,
		   size_t node_len, const char *key, size_t key_len, bool tomb, uint64_t flags,
		   struct kv_rec *out)
{
	struct kv_rec old;
	int got = kv_store_get(st, false, key, key_len, &old);
	if (got < 0)
		return -1;
	if (tomb && (got == 0 || old.tomb))
		return 0; /* deleting an absent key changes nothing */
	memset(out, 0, sizeof(*out));
	out->hlc = kv_hlc_next(hlc, now_ms);
	out->create = (got == 1 && !old.tomb) ? old.create : out->hlc;
	out->flags = tomb ? 0 : flags;
	out->tomb = tomb;
	out->node = node;
	out->node_len = (uint8_t)node_len;
	return 1;
}
