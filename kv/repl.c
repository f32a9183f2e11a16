/*
 * kv/repl.c — see repl.h.
 */
#include "kv/repl.h"

#include "kv/limits.h"
#include "lib/cursor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	ST_START,
	ST_WAIT_DIFF,
	ST_WAIT_DIFF_RECORDS,
	ST_WAIT_RECORDS,
	ST_WAIT_FIRST,
	ST_DONE,
	ST_WAIT_ROOT,   /* initiator: sent ROOT, expects END or ROOT */
	ST_WAIT_DIGEST, /* responder: answered ROOT with ROOT, expects DIGEST */
	ST_DONE_EQUAL,  /* initiator: roots were equal */
};

void kv_buf_free(struct kv_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/*
 * A buffer that would pass 1 TiB is refused before doubling can overflow size_t;
 * real bounds are far lower (frames, the sync budget), this only keeps the
 * arithmetic honest.
 */
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

/* ------------------------------------------------------------ gossip */

int kv_msg_encode_set(struct kv_buf *out, const char *key, size_t key_len, const struct kv_rec *r)
{
	out->len = 0;
	size_t n = 1 + 2 + key_len + kv_rec_size(r);
	if (key_len > 0xffff || reserve(out, n) < 0)
		return -1;
	uint8_t *p = out->p;
	*p++ = KV_MSG_SET;
	be16_put(p, (uint16_t)key_len);
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
	be16_put(p, (uint16_t)key_len);
	p += 2;
	memcpy(p, key, key_len);
	p += key_len;
	be64_put(p, r->hlc);
	p += 8;
	*p++ = r->node_len;
	memcpy(p, r->node, r->node_len);
	p += r->node_len;
	be32_put(p, r->value_len);
	out->len = n;
	return 0;
}

#define NEED(n, what)                                                                              \
	do {                                                                                       \
		if ((size_t)(end - p) < (size_t)(n)) {                                             \
			snprintf(err, errlen, "kv message: truncated %s", what);                   \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/*
 * Keys on the wire are 1..510 bytes, inside LMDB's 511-byte key limit, so a key
 * that decodes can always be stored; anything else is a malformed message.
 */
static int read_key(const uint8_t **pp, const uint8_t *end, const char **key, size_t *key_len,
                    char *err, size_t errlen)
{
	const uint8_t *p = *pp;
	NEED(2, "key length");
	size_t kl = be16_get(p);
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

/*
 * Every byte must be accounted for: trailing bytes are an error, not ignored, so
 * two encoders that disagree are caught instead of silently mixing formats. A
 * zero version is refused because 0 means "absent" everywhere else.
 */
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
		m->hlc = be64_get(p);
		p += 8;
		m->node_len = *p++;
		NEED(m->node_len, "announce node");
		m->node = (const char *)p;
		p += m->node_len;
		NEED(4, "announce size");
		m->size = be32_get(p);
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

/*
 * The length is checked against the bound before anything is buffered for the
 * frame, so a peer cannot make us allocate for a frame we would refuse; a sealed
 * frame may exceed KV_FRAME_MAX only by the seal's overhead.
 */
long kv_frame_next(const uint8_t *p, size_t len, uint8_t *type, const uint8_t **payload,
                   size_t *plen, char *err, size_t errlen)
{
	if (len < 4)
		return 0;
	uint32_t n = be32_get(p);
	/* a sealed frame carries a whole plaintext frame plus the seal */
	if (n == 0 || n > KV_FRAME_MAX + KV_SEAL_OVERHEAD_MAX) {
		snprintf(err, errlen, "sync frame: bad length %u (at most %u)", n,
		         KV_FRAME_MAX + KV_SEAL_OVERHEAD_MAX);
		return -1;
	}
	if (len - 4 < n)
		return 0;
	*type = p[4];
	*payload = p + 5;
	*plen = n - 1;
	if (*type != KV_F_SEALED && n > KV_FRAME_MAX) {
		snprintf(err, errlen, "sync frame: bad length %u (at most %u)", n, KV_FRAME_MAX);
		return -1;
	}
	return (long)n + 4;
}

/*
 * The length is written last (frame_end), once the payload is in place, so a
 * frame is built in one pass without knowing its size ahead.
 */
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
	be32_put(out->p + at, (uint32_t)(out->len - at - 4));
}

static int frame_empty(struct kv_buf *out, uint8_t type)
{
	size_t at = frame_begin(out, type);
	if (at == (size_t)-1)
		return -1;
	frame_end(out, at);
	return 0;
}

/* Writes records into RECORDS frames, opening a frame on the first record
 * and closing it once it passes KV_CHUNK, so no frame outgrows KV_FRAME_MAX
 * (a record is at most ~513 KiB) and a receiver never buffers more. */
struct rec_writer {
	struct kv_buf *out;
	size_t at; /* start of the open frame, or SIZE_MAX */
	uint32_t count, total;
	int failed;
	const struct kv_sync *skip; /* records seen_covers says the peer has are not written */
};

/* ------------------------------------------- what the responder sent */

/* A slot's key: the store's key hash, 0 kept for an empty slot. */
static uint64_t seen_key(const char *key, size_t key_len)
{
	uint64_t h = kv_key_hash(key, key_len);
	return h ? h : 1;
}

static void seen_add(struct kv_sync *s, const char *key, size_t key_len, const struct kv_rec *r)
{
	if (s->nseen >= KV_SYNC_SEEN_MAX)
		return; /* not remembered: ours is sent, as without the table */
	uint64_t k = seen_key(key, key_len);
	for (size_t i = k & (KV_SYNC_SEEN_SLOTS - 1);; i = (i + 1) & (KV_SYNC_SEEN_SLOTS - 1)) {
		struct kv_sync_seen *e = &s->seen[i];
		if (e->key == 0 || e->key == k) {
			s->nseen += e->key == 0;
			e->key = k;
			e->hlc = r->hlc;
			e->entry = kv_store_entry_hash(key, key_len, r);
			return;
		}
	}
}

/* Whether the responder sent this key at a newer version than r, or at
 * r's very version (it has r, or better: r need not go back). */
static bool seen_covers(const struct kv_sync *s, const char *key, size_t key_len,
                        const struct kv_rec *r)
{
	uint64_t k = seen_key(key, key_len);
	for (size_t i = k & (KV_SYNC_SEEN_SLOTS - 1); s->seen[i].key != 0;
	     i = (i + 1) & (KV_SYNC_SEEN_SLOTS - 1)) {
		const struct kv_sync_seen *e = &s->seen[i];
		if (e->key == k)
			return e->hlc > r->hlc ||
			       (e->hlc == r->hlc &&
			        e->entry == kv_store_entry_hash(key, key_len, r));
	}
	return false;
}

/* The initiator's apply of the responder's records: remember each, then
 * merge it as the caller does. */
static int apply_seen(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct kv_sync *s = ctx;
	seen_add(s, key, key_len, r);
	return s->apply != NULL ? s->apply(s->ctx, key, key_len, r) : 0;
}

static void writer_close(struct rec_writer *w)
{
	if (w->at == SIZE_MAX)
		return;
	be32_put(w->out->p + w->at + 5, w->count);
	frame_end(w->out, w->at);
	w->at = SIZE_MAX;
	w->count = 0;
}

static int write_rec(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	struct rec_writer *w = ud;
	if (w->skip != NULL && w->skip->nseen > 0 && seen_covers(w->skip, key, key_len, r))
		return 0;
	size_t n = 2 + key_len + kv_rec_size(r);
	if (w->at != SIZE_MAX && w->out->len - w->at + n > KV_CHUNK)
		writer_close(w);
	if (w->at == SIZE_MAX) {
		uint8_t zero[4] = {0};
		w->at = frame_begin(w->out, KV_F_RECORDS);
		if (w->at == (size_t)-1 || append(w->out, zero, 4) < 0) {
			w->at = SIZE_MAX;
			w->failed = 1;
			return 1;
		}
	}
	if (reserve(w->out, n) < 0) {
		w->failed = 1;
		return 1;
	}
	uint8_t *p = w->out->p + w->out->len;
	be16_put(p, (uint16_t)key_len);
	memcpy(p + 2, key, key_len);
	kv_rec_encode(r, p + 2 + key_len);
	w->out->len += n;
	w->count++;
	w->total++;
	return 0;
}

/*
 * A count that cannot fit in the bytes is refused before anything is applied,
 * so a lying header costs nothing. A record that fails to decode ends the
 * exchange; the ones applied before it stay, since each merge stands alone.
 */
long kv_records_decode(const uint8_t *p, size_t len, kv_apply_fn apply, void *ctx, char *err,
                       size_t errlen)
{
	const uint8_t *end = p + len;
	NEED(4, "record count");
	uint32_t n = be32_get(p);
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

/*
 * Streams one differing bucket at a time, only while the output is below what
 * the driver wants, so a large replica is sent without being buffered whole.
 * END goes out only after the last bucket.
 */
int kv_sync_pump(struct kv_sync *s, struct kv_buf *out, size_t want)
{
	while (s->sending && out->len < want) {
		if (s->cursor >= KV_BUCKETS) {
			if (frame_empty(out, KV_F_END) < 0)
				return -1;
			s->sending = false;
			break;
		}
		unsigned b = s->cursor++;
		if (!(s->diff[b / 8] & (1u << (b % 8))))
			continue;
		struct rec_writer w = {.out = out,
		                       .at = SIZE_MAX,
		                       .skip = s->role == KV_SYNC_INITIATOR ? s : NULL};
		if (kv_store_scan_bucket(s->store, true, b, write_rec, &w) < 0 || w.failed)
			return -1;
		writer_close(&w);
		s->records_out += w.total;
	}
	return 0;
}

bool kv_sync_sending(const struct kv_sync *s)
{
	return s->sending;
}

/* Start our RECORDS stream of the differing buckets: all of it now unless
 * the driver pumps it lazily. */
static int start_sending(struct kv_sync *s, struct kv_buf *out, char *err, size_t errlen)
{
	s->sending = true;
	s->cursor = 0;
	if (!s->lazy && kv_sync_pump(s, out, SIZE_MAX) < 0) {
		snprintf(err, errlen, "sync: out of memory");
		return -1;
	}
	return 0;
}

int kv_sync_start(struct kv_sync *s, enum kv_sync_role role, struct kv_store *st, kv_apply_fn apply,
                  void *ctx, const char *pull_key, size_t pull_key_len, struct kv_buf *out)
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
		be16_put(kl, (uint16_t)pull_key_len);
		if (at == (size_t)-1 || append(out, kl, 2) < 0 ||
		    append(out, pull_key, pull_key_len) < 0)
			return -1;
		frame_end(out, at);
		s->state = ST_WAIT_RECORDS;
		return 0;
	}
	uint8_t root[8];
	be64_put(root, kv_store_root(st));
	size_t at = frame_begin(out, KV_F_ROOT);
	if (at == (size_t)-1 || append(out, root, 8) < 0)
		return -1;
	frame_end(out, at);
	s->state = ST_WAIT_ROOT;
	return 0;
}

static int send_digest(struct kv_sync *s, struct kv_buf *out)
{
	const uint64_t *d = kv_store_digest(s->store);
	size_t at = frame_begin(out, KV_F_DIGEST);
	if (at == (size_t)-1 || reserve(out, KV_BUCKETS * 8) < 0)
		return -1;
	for (unsigned i = 0; i < KV_BUCKETS; i++)
		be64_put(out->p + out->len + i * 8, d[i]);
	out->len += KV_BUCKETS * 8;
	frame_end(out, at);
	s->state = ST_WAIT_DIFF;
	return 0;
}

int kv_sync_start_digest(struct kv_sync *s, struct kv_store *st, kv_apply_fn apply, void *ctx,
                         struct kv_buf *out)
{
	memset(s, 0, sizeof(*s));
	s->role = KV_SYNC_INITIATOR;
	s->store = st;
	s->apply = apply;
	s->ctx = ctx;
	return send_digest(s, out);
}

bool kv_sync_root_unanswered(const struct kv_sync *s)
{
	return s->role == KV_SYNC_INITIATOR && s->state == ST_WAIT_ROOT;
}

bool kv_sync_roots_equal(const struct kv_sync *s)
{
	return s->state == ST_DONE_EQUAL;
}

static int apply_records(struct kv_sync *s, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	long n = s->state == ST_WAIT_DIFF_RECORDS
	                 ? kv_records_decode(p, len, apply_seen, s, err, errlen)
	                 : kv_records_decode(p, len, s->apply, s->ctx, err, errlen);
	if (n < 0)
		return -1;
	s->records_in += (uint64_t)n;
	return 0;
}

/* The responder's answer to a pull: the key's record (if any), then END. */
static int answer_pull(struct kv_sync *s, const uint8_t *payload, size_t plen, struct kv_buf *out,
                       char *err, size_t errlen)
{
	const uint8_t *p = payload, *end = payload + plen;
	const char *key;
	size_t kl;
	if (read_key(&p, end, &key, &kl, err, errlen) < 0)
		return -1;
	if (p != end) {
		snprintf(err, errlen, "sync: trailing bytes after pull key");
		return -1;
	}
	struct kv_rec r;
	struct rec_writer w = {out, SIZE_MAX, 0, 0, 0, NULL};
	if (kv_store_get(s->store, true, key, kl, &r) == 1)
		write_rec(&w, key, kl, &r);
	writer_close(&w);
	if (w.failed || frame_empty(out, KV_F_END) < 0) {
		snprintf(err, errlen, "sync: out of memory");
		return -1;
	}
	s->records_out += w.total;
	s->state = ST_DONE;
	return 1;
}

/* Responder: the bitmap of buckets whose sums differ from the initiator's
 * digest, then our records of those buckets. */
static int answer_digest(struct kv_sync *s, const uint8_t *payload, size_t plen, struct kv_buf *out,
                         char *err, size_t errlen)
{
	if (plen != KV_BUCKETS * 8) {
		snprintf(err, errlen, "sync: digest of %zu bytes", plen);
		return -1;
	}
	const uint64_t *mine = kv_store_digest(s->store);
	for (unsigned b = 0; b < KV_BUCKETS; b++)
		if (be64_get(payload + b * 8) != mine[b])
			s->diff[b / 8] |= (uint8_t)(1u << (b % 8));
	size_t at = frame_begin(out, KV_F_DIFF);
	if (at == (size_t)-1 || append(out, s->diff, sizeof(s->diff)) < 0) {
		snprintf(err, errlen, "sync: out of memory");
		return -1;
	}
	frame_end(out, at);
	s->state = ST_WAIT_RECORDS;
	return start_sending(s, out, err, errlen);
}

/* Responder: equal roots end the round with END; different ones are
 * answered with our root, and the initiator's DIGEST comes next. */
static int answer_root(struct kv_sync *s, const uint8_t *payload, size_t plen, struct kv_buf *out,
                       char *err, size_t errlen)
{
	if (plen != 8) {
		snprintf(err, errlen, "sync: root of %zu bytes", plen);
		return -1;
	}
	uint64_t mine = kv_store_root(s->store);
	if (be64_get(payload) == mine) {
		if (frame_empty(out, KV_F_END) < 0) {
			snprintf(err, errlen, "sync: out of memory");
			return -1;
		}
		s->state = ST_DONE;
		return 1;
	}
	uint8_t root[8];
	be64_put(root, mine);
	size_t at = frame_begin(out, KV_F_ROOT);
	if (at == (size_t)-1 || append(out, root, 8) < 0) {
		snprintf(err, errlen, "sync: out of memory");
		return -1;
	}
	frame_end(out, at);
	s->state = ST_WAIT_DIGEST;
	return 0;
}

/* Initiator: END (roots equal, done) or the responder's ROOT (they
 * differ: send the digest and go on as a DIGEST round). */
static int root_answered(struct kv_sync *s, uint8_t type, const uint8_t *payload, size_t plen,
                         struct kv_buf *out, char *err, size_t errlen)
{
	if (type == KV_F_END && plen == 0) {
		s->state = ST_DONE_EQUAL;
		return 1;
	}
	if (type != KV_F_ROOT || plen != 8) {
		snprintf(err, errlen, "sync: expected a root or end, got type %u (%zu bytes)", type,
		         plen);
		return -1;
	}
	if (send_digest(s, out) < 0) {
		snprintf(err, errlen, "sync: out of memory");
		return -1;
	}
	return 0;
}

/*
 * The exchange is a fixed sequence (digest, diff, records, end; or pull, answer)
 * and any frame out of order fails the session: a confused peer must not get
 * records merged from a half-understood conversation.
 */
int kv_sync_feed(struct kv_sync *s, uint8_t type, const uint8_t *payload, size_t plen,
                 struct kv_buf *out, char *err, size_t errlen)
{
	switch (s->state) {
	case ST_WAIT_FIRST:
		if (type == KV_F_DIGEST)
			return answer_digest(s, payload, plen, out, err, errlen);
		if (type == KV_F_ROOT)
			return answer_root(s, payload, plen, out, err, errlen);
		if (type == KV_F_PULL)
			return answer_pull(s, payload, plen, out, err, errlen);
		snprintf(err, errlen, "sync: unexpected frame type %u at start", type);
		return -1;
	case ST_WAIT_DIGEST:
		if (type != KV_F_DIGEST) {
			snprintf(err, errlen, "sync: expected a digest, got type %u", type);
			return -1;
		}
		return answer_digest(s, payload, plen, out, err, errlen);
	case ST_WAIT_ROOT:
		return root_answered(s, type, payload, plen, out, err, errlen);
	case ST_WAIT_DIFF:
		if (type != KV_F_DIFF || plen != sizeof(s->diff)) {
			snprintf(err, errlen, "sync: expected a diff, got type %u (%zu bytes)",
			         type, plen);
			return -1;
		}
		memcpy(s->diff, payload, sizeof(s->diff));
		s->state = ST_WAIT_DIFF_RECORDS;
		return 0;
	case ST_WAIT_DIFF_RECORDS:
	case ST_WAIT_RECORDS:
		if (type == KV_F_RECORDS)
			return apply_records(s, payload, plen, err, errlen);
		if (type != KV_F_END || plen != 0) {
			snprintf(err, errlen, "sync: expected records or end, got type %u", type);
			return -1;
		}
		if (s->sending) {
			/* the peer may answer only after our END */
			snprintf(err, errlen, "sync: peer ended before our records were sent");
			return -1;
		}
		if (s->state == ST_WAIT_DIFF_RECORDS) {
			/* the initiator answers with its own records of those buckets */
			s->state = ST_DONE;
			if (start_sending(s, out, err, errlen) < 0)
				return -1;
			return 1;
		}
		s->state = ST_DONE;
		return 1;
	default:
		snprintf(err, errlen, "sync: frame after the end of the exchange");
		return -1;
	}
}

/* --------------------------------------------------------------- seal */

/* Associated data of a sealed frame: its header and who sends it, so a
 * frame cannot be reflected back to its sender or have its length cut. */
static void seal_ad(uint8_t ad[6], const uint8_t hdr[5], bool from_initiator)
{
	memcpy(ad, hdr, 5);
	ad[5] = from_initiator ? 'I' : 'R';
}

int kv_frames_seal(const struct kv_seal *k, bool from_initiator, const uint8_t *in, size_t len,
                   struct kv_buf *out)
{
	size_t off = 0;
	while (len - off >= 5) {
		uint32_t n = be32_get(in + off);
		if (n == 0 || n > len - off - 4)
			return -1; /* only whole frames are sealed */
		size_t sealed = n + k->overhead;
		if (reserve(out, 5 + sealed) < 0)
			return -1;
		uint8_t *h = out->p + out->len;
		be32_put(h, (uint32_t)(1 + sealed));
		h[4] = KV_F_SEALED;
		uint8_t ad[6];
		seal_ad(ad, h, from_initiator);
		int m = k->encrypt(k->ctx, in + off + 4, n, ad, sizeof(ad), h + 5, sealed);
		if (m < 0 || (size_t)m != sealed)
			return -1;
		out->len += 5 + sealed;
		off += 4 + n;
	}
	return off == len ? 0 : -1;
}

int kv_frame_open(const struct kv_seal *k, bool from_initiator, const uint8_t *hdr,
                  const uint8_t *payload, size_t plen, struct kv_buf *plain, uint8_t *type,
                  const uint8_t **pl, size_t *pn, char *err, size_t errlen)
{
	plain->len = 0;
	if (plen <= k->overhead || reserve(plain, plen) < 0) {
		snprintf(err, errlen, "sealed frame: %zu bytes, too short", plen);
		return -1;
	}
	uint8_t ad[6];
	seal_ad(ad, hdr, from_initiator);
	int m = k->decrypt(k->ctx, payload, plen, ad, sizeof(ad), plain->p, plain->cap);
	if (m < 1) {
		snprintf(err, errlen, "sealed frame: no installed key opens it");
		return -1;
	}
	plain->len = (size_t)m;
	*type = plain->p[0];
	*pl = plain->p + 1;
	*pn = (size_t)m - 1;
	if (*type == KV_F_SEALED) {
		snprintf(err, errlen, "sealed frame: sealed twice");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------- replica writes */

/*
 * A version whose clock part is far ahead of ours is "poisoned": if merged, it
 * would win against every later write of its key until our clock caught up.
 */
bool kv_version_ahead(uint64_t hlc, int64_t now_ms, int64_t max_ahead_ms)
{
	return max_ahead_ms > 0 && KV_HLC_MS(hlc) > now_ms + max_ahead_ms;
}

/*
 * Last writer wins by (version, writer), the same order on every replica, so all
 * converge whatever order records arrive in. Tombstones older than the TTL are
 * ignored: peers have purged theirs, and taking one back would only be purged
 * again. The clock observes every stored version, so our next write sorts after.
 */
enum kv_merge_result kv_merge_rec(struct kv_store *st, struct kv_hlc *hlc, int64_t now_ms,
                                  int64_t ttl_ms, int64_t max_ahead_ms, const char *key,
                                  size_t key_len, const struct kv_rec *r)
{
	if (key_len == 0 || key_len > KV_KEY_MAX)
		return KV_MERGE_IGNORED;
	if (kv_version_ahead(r->hlc, now_ms, max_ahead_ms))
		return KV_MERGE_AHEAD;
	if (r->tomb && KV_HLC_MS(r->hlc) < now_ms - ttl_ms)
		return KV_MERGE_IGNORED;
	if (kv_store_begin(st) < 0)
		return KV_MERGE_ERROR;
	struct kv_rec old;
	int got = kv_store_get(st, false, key, key_len, &old);
	if (got < 0)
		return KV_MERGE_ERROR;
	/* a poisoned version already stored (before this rule) wins nothing */
	int cmp = got == 1 ? kv_rec_cmp(r, &old) : 1;
	if (cmp <= 0 && !kv_version_ahead(old.hlc, now_ms, max_ahead_ms))
		return cmp == 0 ? KV_MERGE_HELD : KV_MERGE_IGNORED;
	kv_hlc_observe(hlc, r->hlc);
	return kv_store_put(st, key, key_len, r) < 0 ? KV_MERGE_ERROR : KV_MERGE_STORED;
}

/*
 * Compares as kv_merge_rec would, so an ANNOUNCE starts a pull exactly when the
 * record it announces would be stored.
 */
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

/*
 * Deleting a key that is absent or already deleted stamps nothing: a new
 * tombstone would only make every replica store and gossip a no-op. CreateIndex
 * survives updates and restarts with the key's next life after a delete.
 */
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
	/* the same rule in Raft terms: the caller sets raft_index (CP mode), and
	 * a raft_create of 0 says this write creates the key */
	out->raft_create = (got == 1 && !old.tomb) ? old.raft_create : 0;
	out->flags = tomb ? 0 : flags;
	out->tomb = tomb;
	out->node = node;
	out->node_len = (uint8_t)node_len;
	return 1;
}
