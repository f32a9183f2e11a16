/*
 * server/raft_wire.c — encode and decode libraft's RPC messages (layout in
 * raft_wire.h).
 *
 * Sizes are computed before anything is written, so an encoder writes into
 * one buffer of exactly the right length and never grows it. Decoders read
 * through get_*() helpers that check the bytes that remain before every
 * read and name the field on failure; counts (entries, servers) are bounded
 * by the bytes left before any allocation, so a short hostile message can
 * never make the decoder allocate more than a few times its own length.
 */
#include "server/raft_wire.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Static_assert(RAFT_IO_APPEND_ENTRIES == 1 && RAFT_IO_TIMEOUT_NOW == 6,
               "the wire type byte is libraft's message code");

/* ---- varints ---- */

/*
 * LEB128 varints: terms and indexes are small for most of a cluster's life, so
 * most fields take one or two bytes instead of eight.
 */
static size_t uv_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_uv(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * One varint at *pos: at most 10 bytes, the 10th carrying only the top bit,
 * and minimal (no trailing 0x80 0x00 padding), so that every value has
 * exactly one encoding and decode-then-encode gives back the input.
 */
/* unsigned long long: raft_term, raft_index and raft_id are */
static int get_uv(const uint8_t **pos, const uint8_t *end, unsigned long long *v, const char *what,
                  const char *field, char *err, size_t errlen)
{
	const uint8_t *p = *pos;
	uint64_t x = 0;
	for (unsigned shift = 0;; shift += 7) {
		if (p >= end)
			return fail(err, errlen, "%s: %s: runs past the end", what, field);
		uint8_t b = *p++;
		if (shift == 63 && b > 1)
			return fail(err, errlen, "%s: %s: over 64 bits", what, field);
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			if (b == 0 && shift > 0)
				return fail(err, errlen, "%s: %s: padded varint", what, field);
			break;
		}
	}
	*v = x;
	*pos = p;
	return 0;
}

static int get_u8(const uint8_t **pos, const uint8_t *end, uint8_t *v, const char *what,
                  const char *field, char *err, size_t errlen)
{
	if (*pos >= end)
		return fail(err, errlen, "%s: %s: runs past the end", what, field);
	*v = *(*pos)++;
	return 0;
}

/* ---- configurations ---- */

/*
 * 0 means "cannot be encoded" (too many servers, an address too long): the
 * encoder refuses what a peer's decoder would refuse, rather than sending it.
 */
size_t raft_wire_conf_size(const struct raft_configuration *c)
{
	if (c->n > RAFT_WIRE_MAX_SERVERS)
		return 0;
	size_t n = uv_size(c->n);
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *s = &c->servers[i];
		size_t alen = s->address != NULL ? strlen(s->address) : 0;
		if (alen == 0 || alen > RAFT_WIRE_MAX_ADDRESS || s->id == 0 || s->role < 0 ||
		    s->role > RAFT_SPARE)
			return 0;
		n += uv_size(s->id) + 1 + uv_size(alen) + alen;
	}
	return n;
}

uint8_t *raft_wire_conf_put(uint8_t *p, const struct raft_configuration *c)
{
	p = put_uv(p, c->n);
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *s = &c->servers[i];
		size_t alen = strlen(s->address);
		p = put_uv(p, s->id);
		*p++ = (uint8_t)s->role;
		p = put_uv(p, alen);
		memcpy(p, s->address, alen);
		p += alen;
	}
	return p;
}

/*
 * Addresses with a NUL byte are refused: libraft stores them as C strings, and a
 * truncated address would send messages to a different server. On any failure
 * the configuration is emptied, so the caller never holds half of one.
 */
int raft_wire_conf_get(const uint8_t **pos, const uint8_t *end, struct raft_configuration *c,
                       char *err, size_t errlen)
{
	const uint8_t *p = *pos;
	unsigned long long n;
	if (get_uv(&p, end, &n, "conf", "n", err, errlen) < 0)
		return -1;
	/* each server takes at least 4 bytes: id, role, addr_len, one byte */
	if (n > RAFT_WIRE_MAX_SERVERS || n > (uint64_t)(end - p) / 4)
		return fail(err, errlen, "conf: n: %llu servers cannot fit", (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++) {
		unsigned long long id, alen;
		uint8_t role;
		char addr[RAFT_WIRE_MAX_ADDRESS + 1], field[40];
		snprintf(field, sizeof(field), "server %llu", (unsigned long long)i);
		if (get_uv(&p, end, &id, "conf", field, err, errlen) < 0 ||
		    get_u8(&p, end, &role, "conf", field, err, errlen) < 0 ||
		    get_uv(&p, end, &alen, "conf", field, err, errlen) < 0)
			goto err;
		if (id == 0) {
			fail(err, errlen, "conf: %s: id: zero", field);
			goto err;
		}
		if (role > RAFT_SPARE) {
			fail(err, errlen, "conf: %s: role: %u unknown", field, role);
			goto err;
		}
		if (alen == 0 || alen > RAFT_WIRE_MAX_ADDRESS || alen > (uint64_t)(end - p)) {
			fail(err, errlen, "conf: %s: address: bad length %llu", field,
			     (unsigned long long)alen);
			goto err;
		}
		if (memchr(p, 0, alen) != NULL) {
			fail(err, errlen, "conf: %s: address: holds a NUL byte", field);
			goto err;
		}
		memcpy(addr, p, alen);
		addr[alen] = '\0';
		p += alen;
		int rv = raft_configuration_add(c, id, addr, role);
		if (rv != 0) {
			fail(err, errlen, "conf: %s: %s", field, raft_strerror(rv));
			goto err;
		}
	}
	*pos = p;
	return 0;
err:
	raft_configuration_close(c);
	raft_configuration_init(c);
	return -1;
}

/* ---- messages ---- */

/*
 * An entry type libraft does not define makes the whole message unencodable:
 * sending it would only be refused by every peer.
 */
static size_t entries_size(const struct raft_append_entries *a)
{
	size_t n = uv_size(a->term) + uv_size(a->prev_log_index) + uv_size(a->prev_log_term) +
	           uv_size(a->leader_commit) + uv_size(a->n_entries);
	for (unsigned i = 0; i < a->n_entries; i++) {
		const struct raft_entry *e = &a->entries[i];
		if (e->type < RAFT_COMMAND || e->type > RAFT_CHANGE)
			return 0;
		n += uv_size(e->term) + 1 + uv_size(e->buf.len) + e->buf.len;
	}
	return n;
}

size_t raft_wire_size(const struct raft_message *m)
{
	size_t n = 2, body;
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		body = entries_size(&m->append_entries);
		return body == 0 ? 0 : n + body;
	case RAFT_IO_APPEND_ENTRIES_RESULT: {
		const struct raft_append_entries_result *r = &m->append_entries_result;
		return n + uv_size(r->term) + uv_size(r->rejected) + uv_size(r->last_log_index);
	}
	case RAFT_IO_REQUEST_VOTE: {
		const struct raft_request_vote *r = &m->request_vote;
		return n + uv_size(r->term) + uv_size(r->candidate_id) +
		       uv_size(r->last_log_index) + uv_size(r->last_log_term) + 1;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT:
		return n + uv_size(m->request_vote_result.term) + 2;
	case RAFT_IO_INSTALL_SNAPSHOT: {
		const struct raft_install_snapshot *s = &m->install_snapshot;
		size_t conf = raft_wire_conf_size(&s->conf);
		if (conf == 0)
			return 0;
		return n + uv_size(s->term) + uv_size(s->last_index) + uv_size(s->last_term) +
		       uv_size(s->conf_index) + conf + uv_size(s->data.len) + s->data.len;
	}
	case RAFT_IO_TIMEOUT_NOW: {
		const struct raft_timeout_now *t = &m->timeout_now;
		return n + uv_size(t->term) + uv_size(t->last_log_index) +
		       uv_size(t->last_log_term);
	}
	default:
		return 0;
	}
}

/*
 * Writes exactly raft_wire_size bytes or nothing; the caller sizes the buffer
 * from that function, so encoding never allocates or grows.
 */
size_t raft_wire_encode(const struct raft_message *m, uint8_t *buf, size_t cap)
{
	size_t need = raft_wire_size(m);
	if (need == 0 || need > cap)
		return 0;
	uint8_t *p = buf;
	*p++ = RAFT_WIRE_VERSION;
	*p++ = (uint8_t)m->type;
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES: {
		const struct raft_append_entries *a = &m->append_entries;
		p = put_uv(p, a->term);
		p = put_uv(p, a->prev_log_index);
		p = put_uv(p, a->prev_log_term);
		p = put_uv(p, a->leader_commit);
		p = put_uv(p, a->n_entries);
		for (unsigned i = 0; i < a->n_entries; i++) {
			p = put_uv(p, a->entries[i].term);
			*p++ = (uint8_t)a->entries[i].type;
			p = put_uv(p, a->entries[i].buf.len);
		}
		for (unsigned i = 0; i < a->n_entries; i++) {
			if (a->entries[i].buf.len > 0)
				memcpy(p, a->entries[i].buf.base, a->entries[i].buf.len);
			p += a->entries[i].buf.len;
		}
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		p = put_uv(p, m->append_entries_result.term);
		p = put_uv(p, m->append_entries_result.rejected);
		p = put_uv(p, m->append_entries_result.last_log_index);
		break;
	case RAFT_IO_REQUEST_VOTE: {
		const struct raft_request_vote *r = &m->request_vote;
		p = put_uv(p, r->term);
		p = put_uv(p, r->candidate_id);
		p = put_uv(p, r->last_log_index);
		p = put_uv(p, r->last_log_term);
		*p++ = (uint8_t)((r->disrupt_leader ? 1 : 0) | (r->pre_vote ? 2 : 0));
		break;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT:
		p = put_uv(p, m->request_vote_result.term);
		*p++ = m->request_vote_result.vote_granted ? 1 : 0;
		*p++ = (uint8_t)m->request_vote_result.pre_vote;
		break;
	case RAFT_IO_INSTALL_SNAPSHOT: {
		const struct raft_install_snapshot *s = &m->install_snapshot;
		p = put_uv(p, s->term);
		p = put_uv(p, s->last_index);
		p = put_uv(p, s->last_term);
		p = put_uv(p, s->conf_index);
		p = raft_wire_conf_put(p, &s->conf);
		p = put_uv(p, s->data.len);
		if (s->data.len > 0)
			memcpy(p, s->data.base, s->data.len);
		p += s->data.len;
		break;
	}
	case RAFT_IO_TIMEOUT_NOW:
		p = put_uv(p, m->timeout_now.term);
		p = put_uv(p, m->timeout_now.last_log_index);
		p = put_uv(p, m->timeout_now.last_log_term);
		break;
	}
	return (size_t)(p - buf);
}

/*
 * AppendEntries: the n entry headers first, then the payloads back to back.
 * n is bounded by the bytes left (a header is at least 3 bytes) before the
 * entries array is allocated, and the payload lengths must add up to
 * exactly what follows the headers, so the batch is never larger than the
 * message. libraft frees a received batch per distinct entry->batch, so all
 * entries share one, and it is allocated even when every payload is empty.
 */
static int get_entries(const uint8_t *p, const uint8_t *end, struct raft_append_entries *a,
                       char *err, size_t errlen)
{
	static const char *what = "append_entries";
	unsigned long long n;
	if (get_uv(&p, end, &a->term, what, "term", err, errlen) < 0 ||
	    get_uv(&p, end, &a->prev_log_index, what, "prev_log_index", err, errlen) < 0 ||
	    get_uv(&p, end, &a->prev_log_term, what, "prev_log_term", err, errlen) < 0 ||
	    get_uv(&p, end, &a->leader_commit, what, "leader_commit", err, errlen) < 0 ||
	    get_uv(&p, end, &n, what, "n_entries", err, errlen) < 0)
		return -1;
	if (n > (uint64_t)(end - p) / 3 || n > 0xffffffffu)
		return fail(err, errlen, "append_entries: n_entries: %llu entries cannot fit",
		            (unsigned long long)n);
	a->n_entries = (unsigned)n;
	a->entries = NULL;
	if (n == 0)
		return p == end ? 0
		                : fail(err, errlen, "append_entries: %zu trailing bytes",
		                       (size_t)(end - p));
	struct raft_entry *e = raft_calloc((size_t)n, sizeof(*e));
	if (e == NULL)
		return fail(err, errlen, "append_entries: out of memory");
	uint64_t total = 0;
	for (uint64_t i = 0; i < n; i++) {
		char field[48];
		unsigned long long len;
		uint8_t type;
		snprintf(field, sizeof(field), "entry %llu", (unsigned long long)i);
		if (get_uv(&p, end, &e[i].term, what, field, err, errlen) < 0 ||
		    get_u8(&p, end, &type, what, field, err, errlen) < 0 ||
		    get_uv(&p, end, &len, what, field, err, errlen) < 0)
			goto err;
		if (type < RAFT_COMMAND || type > RAFT_CHANGE) {
			fail(err, errlen, "append_entries: %s: type: %u unknown", field, type);
			goto err;
		}
		/* p has moved past more headers since total was last checked */
		if (total > (uint64_t)(end - p) || len > (uint64_t)(end - p) - total) {
			fail(err, errlen, "append_entries: %s: len: runs past the end", field);
			goto err;
		}
		e[i].type = type;
		e[i].buf.len = (size_t)len;
		total += len;
	}
	if (total != (uint64_t)(end - p)) {
		fail(err, errlen, "append_entries: %llu trailing bytes",
		     (unsigned long long)((uint64_t)(end - p) - total));
		goto err;
	}
	uint8_t *batch = raft_malloc(total > 0 ? (size_t)total : 1);
	if (batch == NULL) {
		fail(err, errlen, "append_entries: out of memory");
		goto err;
	}
	if (total > 0)
		memcpy(batch, p, (size_t)total);
	size_t off = 0;
	for (uint64_t i = 0; i < n; i++) {
		e[i].buf.base = batch + off;
		e[i].batch = batch;
		off += e[i].buf.len;
	}
	a->entries = e;
	return 0;
err:
	raft_free(e);
	return -1;
}

static int get_snapshot(const uint8_t *p, const uint8_t *end, struct raft_install_snapshot *s,
                        char *err, size_t errlen)
{
	static const char *what = "install_snapshot";
	unsigned long long len;
	if (get_uv(&p, end, &s->term, what, "term", err, errlen) < 0 ||
	    get_uv(&p, end, &s->last_index, what, "last_index", err, errlen) < 0 ||
	    get_uv(&p, end, &s->last_term, what, "last_term", err, errlen) < 0 ||
	    get_uv(&p, end, &s->conf_index, what, "conf_index", err, errlen) < 0)
		return -1;
	raft_configuration_init(&s->conf);
	char cerr[200];
	if (raft_wire_conf_get(&p, end, &s->conf, cerr, sizeof(cerr)) < 0)
		return fail(err, errlen, "install_snapshot: %s", cerr);
	if (get_uv(&p, end, &len, what, "data len", err, errlen) < 0)
		goto err;
	if (len != (uint64_t)(end - p)) {
		fail(err, errlen, "install_snapshot: data: length %llu, %zu bytes follow",
		     (unsigned long long)len, (size_t)(end - p));
		goto err;
	}
	s->data.len = (size_t)len;
	s->data.base = raft_malloc(len > 0 ? (size_t)len : 1);
	if (s->data.base == NULL) {
		fail(err, errlen, "install_snapshot: out of memory");
		goto err;
	}
	if (len > 0)
		memcpy(s->data.base, p, (size_t)len);
	return 0;
err:
	raft_configuration_close(&s->conf);
	raft_configuration_init(&s->conf);
	return -1;
}

static int no_trailing(const uint8_t *p, const uint8_t *end, const char *what, char *err,
                       size_t errlen)
{
	return p == end ? 0 : fail(err, errlen, "%s: %zu trailing bytes", what, (size_t)(end - p));
}

/*
 * Strict: a wrong version, an unknown type or flag bit, a non-boolean byte, or
 * any trailing bytes is an error naming the field. Two nodes that disagree about
 * the format then fail loudly instead of acting on misread terms and indexes.
 */
int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_message *m, char *err,
                     size_t errlen)
{
	const uint8_t *p = buf, *end = buf + len;
	uint8_t version, type;
	memset(m, 0, sizeof(*m));
	if (get_u8(&p, end, &version, "message", "version", err, errlen) < 0 ||
	    get_u8(&p, end, &type, "message", "type", err, errlen) < 0)
		return -1;
	if (version != RAFT_WIRE_VERSION)
		return fail(err, errlen, "message: version: %u, want %u", version,
		            RAFT_WIRE_VERSION);
	switch (type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (get_entries(p, end, &m->append_entries, err, errlen) < 0)
			return -1;
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT: {
		struct raft_append_entries_result *r = &m->append_entries_result;
		static const char *what = "append_entries_result";
		if (get_uv(&p, end, &r->term, what, "term", err, errlen) < 0 ||
		    get_uv(&p, end, &r->rejected, what, "rejected", err, errlen) < 0 ||
		    get_uv(&p, end, &r->last_log_index, what, "last_log_index", err, errlen) < 0 ||
		    no_trailing(p, end, what, err, errlen) < 0)
			return -1;
		break;
	}
	case RAFT_IO_REQUEST_VOTE: {
		struct raft_request_vote *r = &m->request_vote;
		static const char *what = "request_vote";
		unsigned long long last_term;
		uint8_t flags;
		if (get_uv(&p, end, &r->term, what, "term", err, errlen) < 0 ||
		    get_uv(&p, end, &r->candidate_id, what, "candidate_id", err, errlen) < 0 ||
		    get_uv(&p, end, &r->last_log_index, what, "last_log_index", err, errlen) < 0 ||
		    get_uv(&p, end, &last_term, what, "last_log_term", err, errlen) < 0 ||
		    get_u8(&p, end, &flags, what, "flags", err, errlen) < 0)
			return -1;
		if (flags & ~3u)
			return fail(err, errlen, "request_vote: flags: unknown bits 0x%02x", flags);
		r->last_log_term = last_term;
		r->disrupt_leader = flags & 1;
		r->pre_vote = (flags & 2) != 0;
		if (no_trailing(p, end, what, err, errlen) < 0)
			return -1;
		break;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT: {
		struct raft_request_vote_result *r = &m->request_vote_result;
		static const char *what = "request_vote_result";
		uint8_t granted, pre;
		if (get_uv(&p, end, &r->term, what, "term", err, errlen) < 0 ||
		    get_u8(&p, end, &granted, what, "vote_granted", err, errlen) < 0 ||
		    get_u8(&p, end, &pre, what, "pre_vote", err, errlen) < 0)
			return -1;
		if (granted > 1)
			return fail(err, errlen, "request_vote_result: vote_granted: %u", granted);
		if (pre > raft_tribool_false)
			return fail(err, errlen, "request_vote_result: pre_vote: %u", pre);
		r->vote_granted = granted == 1;
		r->pre_vote = (raft_tribool)pre;
		if (no_trailing(p, end, what, err, errlen) < 0)
			return -1;
		break;
	}
	case RAFT_IO_INSTALL_SNAPSHOT:
		if (get_snapshot(p, end, &m->install_snapshot, err, errlen) < 0)
			return -1;
		break;
	case RAFT_IO_TIMEOUT_NOW: {
		struct raft_timeout_now *t = &m->timeout_now;
		static const char *what = "timeout_now";
		unsigned long long last_term;
		if (get_uv(&p, end, &t->term, what, "term", err, errlen) < 0 ||
		    get_uv(&p, end, &t->last_log_index, what, "last_log_index", err, errlen) < 0 ||
		    get_uv(&p, end, &last_term, what, "last_log_term", err, errlen) < 0 ||
		    no_trailing(p, end, what, err, errlen) < 0)
			return -1;
		t->last_log_term = last_term;
		break;
	}
	default:
		return fail(err, errlen, "message: type: %u unknown", type);
	}
	m->type = type;
	return 0;
}

/*
 * Frees exactly what the decoder allocated: one batch shared by all entries,
 * the configuration and snapshot data. Safe to call twice.
 */
void raft_wire_message_release(struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (m->append_entries.entries != NULL) {
			raft_free(m->append_entries.entries[0].batch);
			raft_free(m->append_entries.entries);
		}
		m->append_entries.entries = NULL;
		m->append_entries.n_entries = 0;
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		raft_configuration_close(&m->install_snapshot.conf);
		raft_configuration_init(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
		m->install_snapshot.data.base = NULL;
		break;
	}
}
