/*
 * gossip/serf.c — see serf.h.
 *
 * The msgpack here is Go's old codec dialect: maps keyed by field name,
 * strings and []byte written as raw (fixraw/raw16/raw32); the decoder also
 * accepts str8 and bin, nil for empty values, and any integer width. It is
 * read and written through lib/mp.h, the project's one MessagePack layer;
 * what is serf's own here is the policy on top (nil maps and arrays read as
 * empty, integers read as bools, keys longer than any serf field ignored).
 */
#define _GNU_SOURCE
#include "gossip/serf.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/bcast.h" /* bcast_name_hash */
#include "lib/mp.h"
#include "lib/xalloc.h"

/* ------------------------------------------------------------ msgpack */

/* Decode errors share lib/mp's per-thread text (one error convention for
 * every decoder: ML_OK / ML_BAD / ML_AGAIN and a message naming the field). */
const char *serf_wire_error(void)
{
	return mp_error();
}

static int bad(const char *what, const char *field, const char *why)
{
	mp_fail("%s: %s: %s", what, field, why);
	return ML_BAD;
}

/* serf's bools: true/false/nil, and also an integer (non-zero is true),
 * which serf's own decoder takes too. */
static int read_flag(struct cursor *c, bool *v)
{
	if (mp_read_bool(c, v) == MP_OK)
		return MP_OK;
	uint64_t x;
	int rc = mp_read_uint(c, &x);
	if (rc == MP_OK)
		*v = x != 0;
	return rc;
}

/* Go net.IP to ml_addr (4 or 16 bytes; a v4-mapped v6 becomes 4). */
static bool ip_from(const uint8_t *p, size_t n, struct ml_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (n == 0) {
		a->len = 0;
		return true;
	}
	if (n == 4) {
		memcpy(a->ip, p, 4);
		a->len = 4;
		return true;
	}
	if (n == 16) {
		if (memcmp(p, mapped, 12) == 0) {
			memcpy(a->ip, p + 12, 4);
			a->len = 4;
		} else {
			memcpy(a->ip, p, 16);
			a->len = 16;
		}
		return true;
	}
	return false;
}

/* ------------------------------------------------------------- codecs */

int serf_encode_join(uint8_t *buf, size_t cap, const struct serf_msg_join *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_JOIN);
	mp_write_map(&w, 2);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, m->ltime);
	mp_write_str(&w, "Node");
	mp_write_str(&w, m->node);
	return wcursor_done(&w);
}

int serf_encode_leave(uint8_t *buf, size_t cap, const struct serf_msg_leave *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_LEAVE);
	mp_write_map(&w, 3);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, m->ltime);
	mp_write_str(&w, "Node");
	mp_write_str(&w, m->node);
	mp_write_str(&w, "Prune");
	mp_write_bool(&w, m->prune);
	return wcursor_done(&w);
}

int serf_encode_user_event(uint8_t *buf, size_t cap, const struct serf_msg_user_event *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_USER_EVENT);
	mp_write_map(&w, 4);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, m->ltime);
	mp_write_str(&w, "Name");
	mp_write_raw(&w, m->name, m->name_len);
	mp_write_str(&w, "Payload");
	mp_write_bytes(&w, m->payload, m->payload_len);
	mp_write_str(&w, "CC");
	mp_write_bool(&w, m->cc);
	return wcursor_done(&w);
}

int serf_encode_query(uint8_t *buf, size_t cap, const struct serf_msg_query *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_QUERY);
	mp_write_map(&w, 11);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, m->ltime);
	mp_write_str(&w, "ID");
	mp_write_uint(&w, m->id);
	mp_write_str(&w, "Addr");
	mp_write_bytes(&w, m->addr.ip, m->addr.len);
	mp_write_str(&w, "Port");
	mp_write_uint(&w, m->addr.port);
	mp_write_str(&w, "SourceNode");
	mp_write_str(&w, m->source_node);
	mp_write_str(&w, "Filters");
	if (m->nfilters == 0) {
		mp_write_nil(&w);
	} else {
		mp_write_array(&w, (uint32_t)m->nfilters);
		for (int i = 0; i < m->nfilters; i++)
			mp_write_raw(&w, m->filters[i].p, m->filters[i].len);
	}
	mp_write_str(&w, "Flags");
	mp_write_uint(&w, m->flags);
	mp_write_str(&w, "RelayFactor");
	mp_write_uint(&w, m->relay_factor);
	mp_write_str(&w, "Timeout");
	mp_write_int(&w, m->timeout_ns);
	mp_write_str(&w, "Name");
	mp_write_raw(&w, m->name, m->name_len);
	mp_write_str(&w, "Payload");
	mp_write_bytes(&w, m->payload, m->payload_len);
	return wcursor_done(&w);
}

int serf_encode_query_response(uint8_t *buf, size_t cap, const struct serf_msg_query_response *m)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_QUERY_RESPONSE);
	mp_write_map(&w, 5);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, m->ltime);
	mp_write_str(&w, "ID");
	mp_write_uint(&w, m->id);
	mp_write_str(&w, "From");
	mp_write_str(&w, m->from);
	mp_write_str(&w, "Flags");
	mp_write_uint(&w, m->flags);
	mp_write_str(&w, "Payload");
	mp_write_bytes(&w, m->payload, m->payload_len);
	return wcursor_done(&w);
}

int serf_encode_filter_nodes(uint8_t *buf, size_t cap, const char *const *nodes, size_t n)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, 0);
	mp_write_array(&w, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		mp_write_str(&w, nodes[i]);
	return wcursor_done(&w);
}

int serf_encode_filter_tag(uint8_t *buf, size_t cap, const char *tag, const char *expr)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, 1);
	mp_write_map(&w, 2);
	mp_write_str(&w, "Tag");
	mp_write_str(&w, tag);
	mp_write_str(&w, "Expr");
	mp_write_str(&w, expr);
	return wcursor_done(&w);
}

int serf_encode_key_request(uint8_t *buf, size_t cap, const uint8_t *key, size_t len)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_KEY_REQUEST);
	mp_write_map(&w, 1);
	mp_write_str(&w, "Key");
	mp_write_bytes(&w, key, len);
	return wcursor_done(&w);
}

int serf_decode_key_request(const uint8_t *p, size_t len, const uint8_t **key, size_t *key_len)
{
	if (len < 1 || p[0] != SERF_MSG_KEY_REQUEST)
		return bad("key request", "type", "not a key request");
	struct cursor r = {p + 1, p + len};
	uint32_t n;
	char k[16];
	*key = NULL;
	*key_len = 0;
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("key request", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, k, sizeof(k)) != MP_OK)
			return bad("key request", "key", "not a string");
		if (strcmp(k, "Key") == 0) {
			if (mp_read_raw(&r, key, key_len) != MP_OK)
				return bad("key request", "Key", "not bytes");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("key request", k, "malformed value");
		}
	}
	return ML_OK;
}

int serf_encode_key_response(uint8_t *buf, size_t cap, const struct serf_key_response *r)
{
	struct wcursor w = {.p = buf, .cap = cap};
	wcursor_u8(&w, SERF_MSG_KEY_RESPONSE);
	mp_write_map(&w, 4);
	mp_write_str(&w, "Result");
	mp_write_bool(&w, r->result);
	mp_write_str(&w, "Message");
	mp_write_str(&w, r->message);
	mp_write_str(&w, "Keys");
	if (r->nkeys == 0) {
		mp_write_nil(&w);
	} else {
		mp_write_array(&w, (uint32_t)r->nkeys);
		for (int i = 0; i < r->nkeys; i++)
			mp_write_str(&w, r->keys[i]);
	}
	mp_write_str(&w, "PrimaryKey");
	mp_write_str(&w, r->primary);
	return wcursor_done(&w);
}

int serf_decode_key_response(const uint8_t *p, size_t len, struct serf_key_response *r)
{
	memset(r, 0, sizeof(*r));
	if (len < 1 || p[0] != SERF_MSG_KEY_RESPONSE)
		return bad("key response", "type", "not a key response");
	struct cursor rr = {p + 1, p + len};
	uint32_t n;
	char k[16];
	if (mp_read_map_or_nil(&rr, &n) != MP_OK)
		return bad("key response", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&rr, k, sizeof(k)) != MP_OK)
			return bad("key response", "key", "not a string");
		if (strcmp(k, "Result") == 0) {
			if (read_flag(&rr, &r->result) != MP_OK)
				return bad("key response", "Result", "not a bool");
		} else if (strcmp(k, "Message") == 0) {
			if (mp_read_str(&rr, r->message, sizeof(r->message)) != MP_OK)
				return bad("key response", "Message", "not a string or too long");
		} else if (strcmp(k, "PrimaryKey") == 0) {
			if (mp_read_str(&rr, r->primary, sizeof(r->primary)) != MP_OK)
				return bad("key response", "PrimaryKey",
				           "not a string or too long");
		} else if (strcmp(k, "Keys") == 0) {
			uint32_t nk;
			if (mp_read_array_or_nil(&rr, &nk) != MP_OK || nk > 16)
				return bad("key response", "Keys", "not an array or too many");
			for (uint32_t j = 0; j < nk; j++)
				if (mp_read_str(&rr, r->keys[j], sizeof(r->keys[j])) != MP_OK)
					return bad("key response", "Keys", "element not a string");
			r->nkeys = (int)nk;
		} else if (mp_skip(&rr) != MP_OK) {
			return bad("key response", k, "malformed value");
		}
	}
	return ML_OK;
}

int serf_decode_join(const uint8_t *p, size_t len, struct serf_msg_join *m)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	memset(m, 0, sizeof(*m));
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("join", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return bad("join", "key", "not a string");
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &m->ltime) != MP_OK)
				return bad("join", "LTime", "not an unsigned integer");
		} else if (strcmp(key, "Node") == 0) {
			if (mp_read_str(&r, m->node, sizeof(m->node)) != MP_OK)
				return bad("join", "Node", "not a string or too long");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("join", key, "malformed value");
		}
	}
	return ML_OK;
}

int serf_decode_leave(const uint8_t *p, size_t len, struct serf_msg_leave *m)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	memset(m, 0, sizeof(*m));
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("leave", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return bad("leave", "key", "not a string");
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &m->ltime) != MP_OK)
				return bad("leave", "LTime", "not an unsigned integer");
		} else if (strcmp(key, "Node") == 0) {
			if (mp_read_str(&r, m->node, sizeof(m->node)) != MP_OK)
				return bad("leave", "Node", "not a string or too long");
		} else if (strcmp(key, "Prune") == 0) {
			if (read_flag(&r, &m->prune) != MP_OK)
				return bad("leave", "Prune", "not a bool");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("leave", key, "malformed value");
		}
	}
	return ML_OK;
}

int serf_decode_user_event(const uint8_t *p, size_t len, struct serf_msg_user_event *m)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	memset(m, 0, sizeof(*m));
	m->name = "";
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("user event", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return bad("user event", "key", "not a string");
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &m->ltime) != MP_OK)
				return bad("user event", "LTime", "not an unsigned integer");
		} else if (strcmp(key, "Name") == 0) {
			const uint8_t *s;
			if (mp_read_raw(&r, &s, &m->name_len) != MP_OK)
				return bad("user event", "Name", "not a string");
			if (m->name_len > ML_NAME_MAX || memchr(s, 0, m->name_len) != NULL)
				return bad("user event", "Name", "too long or has NUL");
			m->name = (const char *)s;
		} else if (strcmp(key, "Payload") == 0) {
			if (mp_read_raw(&r, &m->payload, &m->payload_len) != MP_OK)
				return bad("user event", "Payload", "not bytes");
		} else if (strcmp(key, "CC") == 0) {
			if (read_flag(&r, &m->cc) != MP_OK)
				return bad("user event", "CC", "not a bool");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("user event", key, "malformed value");
		}
	}
	return ML_OK;
}

int serf_decode_query(const uint8_t *p, size_t len, struct serf_msg_query *m)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	uint64_t u;
	memset(m, 0, sizeof(*m));
	m->name = "";
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("query", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return bad("query", "key", "not a string");
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &m->ltime) != MP_OK)
				return bad("query", "LTime", "not an unsigned integer");
		} else if (strcmp(key, "ID") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > UINT32_MAX)
				return bad("query", "ID", "not a uint32");
			m->id = (uint32_t)u;
		} else if (strcmp(key, "Addr") == 0) {
			const uint8_t *ip;
			size_t iplen;
			if (mp_read_raw(&r, &ip, &iplen) != MP_OK || !ip_from(ip, iplen, &m->addr))
				return bad("query", "Addr", "not an IP");
		} else if (strcmp(key, "Port") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > 65535)
				return bad("query", "Port", "not a port");
			m->addr.port = (uint16_t)u;
		} else if (strcmp(key, "SourceNode") == 0) {
			if (mp_read_str(&r, m->source_node, sizeof(m->source_node)) != MP_OK)
				return bad("query", "SourceNode", "not a string or too long");
		} else if (strcmp(key, "Filters") == 0) {
			uint32_t nf;
			if (mp_read_array_or_nil(&r, &nf) != MP_OK || nf > SERF_FILTERS_MAX)
				return bad("query", "Filters", "not an array or too many");
			for (uint32_t j = 0; j < nf; j++)
				if (mp_read_raw(&r, &m->filters[j].p, &m->filters[j].len) != MP_OK)
					return bad("query", "Filters", "element not bytes");
			m->nfilters = (int)nf;
		} else if (strcmp(key, "Flags") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > UINT32_MAX)
				return bad("query", "Flags", "not a uint32");
			m->flags = (uint32_t)u;
		} else if (strcmp(key, "RelayFactor") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > 255)
				return bad("query", "RelayFactor", "not a uint8");
			m->relay_factor = (uint8_t)u;
		} else if (strcmp(key, "Timeout") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > INT64_MAX)
				return bad("query", "Timeout", "not a non-negative duration");
			m->timeout_ns = (int64_t)u;
		} else if (strcmp(key, "Name") == 0) {
			const uint8_t *s;
			if (mp_read_raw(&r, &s, &m->name_len) != MP_OK)
				return bad("query", "Name", "not a string");
			if (m->name_len > ML_NAME_MAX || memchr(s, 0, m->name_len) != NULL)
				return bad("query", "Name", "too long or has NUL");
			m->name = (const char *)s;
		} else if (strcmp(key, "Payload") == 0) {
			if (mp_read_raw(&r, &m->payload, &m->payload_len) != MP_OK)
				return bad("query", "Payload", "not bytes");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("query", key, "malformed value");
		}
	}
	return ML_OK;
}

int serf_decode_query_response(const uint8_t *p, size_t len, struct serf_msg_query_response *m)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	uint64_t u;
	memset(m, 0, sizeof(*m));
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return bad("query response", "map", "not a map");
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return bad("query response", "key", "not a string");
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &m->ltime) != MP_OK)
				return bad("query response", "LTime", "not an unsigned integer");
		} else if (strcmp(key, "ID") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > UINT32_MAX)
				return bad("query response", "ID", "not a uint32");
			m->id = (uint32_t)u;
		} else if (strcmp(key, "From") == 0) {
			if (mp_read_str(&r, m->from, sizeof(m->from)) != MP_OK)
				return bad("query response", "From", "not a string or too long");
		} else if (strcmp(key, "Flags") == 0) {
			if (mp_read_uint(&r, &u) != MP_OK || u > UINT32_MAX)
				return bad("query response", "Flags", "not a uint32");
			m->flags = (uint32_t)u;
		} else if (strcmp(key, "Payload") == 0) {
			if (mp_read_raw(&r, &m->payload, &m->payload_len) != MP_OK)
				return bad("query response", "Payload", "not bytes");
		} else if (mp_skip(&r) != MP_OK) {
			return bad("query response", key, "malformed value");
		}
	}
	return ML_OK;
}

/* -------------------------------------------------------------- layer */

struct sm { /* serf's memberState, plus intents for unknown nodes */
	char *name;
	enum serf_status status;
	uint64_t status_ltime;
	bool known; /* the SWIM core reported it; false: only an intent */
	bool intent_leave;
};

struct ev_rec {
	char *name;
	uint8_t *payload;
	size_t len;
};

struct ev_slot {
	uint64_t ltime;
	bool used;
	struct ev_rec *evs;
	size_t n;
};

struct q_slot {
	uint64_t ltime;
	bool used;
	uint32_t ids[16];
	size_t n;
};

struct q_out { /* a query we started */
	uint32_t id;
	uint64_t ltime;
	char **acked, **responded;
	size_t nacked, nresponded;
};

struct serf {
	char *self;
	struct serf_io io;
	uint64_t clock, event_clock, query_clock;
	uint64_t event_min_time;
	bool leaving;
	struct sm *m;
	size_t n, cap;
	/* name index: open addressing, icap slots of position+1 (0 empty),
	 * load at most 1/2; rebuilt on growth and on drop (a reap: rare) */
	uint32_t *idx;
	size_t icap;
	struct ev_slot events[SERF_EVENT_BUFFER];
	struct q_slot queries[SERF_QUERY_BUFFER];
	struct q_out *out;
	size_t nout;
	struct tag *tags;
	size_t ntags;
	struct serf_stats stats;
};

static uint64_t witness(uint64_t *clk, uint64_t v)
{
	if (v >= *clk)
		*clk = v + 1;
	return *clk;
}

static size_t name_hash(const char *p)
{
	uint64_t h = bcast_name_hash(p); /* FNV-1a */
	return (size_t)(h ^ (h >> 29));
}

/* Was a strcmp scan of every member: 4-7% of the CPU of a 300-node start. */
static struct sm *find(const struct serf *s, const char *name)
{
	if (s->icap == 0)
		return NULL;
	for (size_t i = name_hash(name) & (s->icap - 1);; i = (i + 1) & (s->icap - 1)) {
		uint32_t e = s->idx[i];
		if (e == 0)
			return NULL;
		if (strcmp(s->m[e - 1].name, name) == 0)
			return &s->m[e - 1];
	}
}

static void idx_insert(struct serf *s, size_t pos)
{
	size_t i = name_hash(s->m[pos].name) & (s->icap - 1);
	while (s->idx[i] != 0)
		i = (i + 1) & (s->icap - 1);
	s->idx[i] = (uint32_t)pos + 1;
}

static void idx_rebuild(struct serf *s, size_t cap)
{
	free(s->idx);
	s->icap = cap;
	s->idx = calloc(cap, sizeof(*s->idx));
	if (s->idx == NULL)
		abort();
	for (size_t i = 0; i < s->n; i++)
		idx_insert(s, i);
}

static struct sm *get(struct serf *s, const char *name)
{
	struct sm *m = find(s, name);
	if (m != NULL)
		return m;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		struct sm *p = realloc(s->m, nc * sizeof(*p));
		if (p == NULL)
			abort();
		s->m = p;
		s->cap = nc;
	}
	m = &s->m[s->n++];
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	if (s->n * 2 > s->icap)
		idx_rebuild(s, s->icap ? s->icap * 2 : 32);
	else
		idx_insert(s, s->n - 1);
	return m;
}

static void drop(struct serf *s, struct sm *m)
{
	free(m->name);
	size_t i = (size_t)(m - s->m);
	s->m[i] = s->m[--s->n];
	idx_rebuild(s, s->icap);
}

struct serf *serf_new(const char *self, const struct serf_io *io)
{
	if (self == NULL || self[0] == '\0' || strlen(self) > ML_NAME_MAX)
		return NULL;
	struct serf *s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	s->self = xstrdup(self);
	s->io = *io;
	/* serf starts every clock at 1: 0 means "never" */
	s->clock = s->event_clock = s->query_clock = 1;
	struct sm *me = get(s, self);
	me->known = true;
	me->status = SERF_STATUS_ALIVE;
	return s;
}

static void ev_slot_clear(struct ev_slot *sl)
{
	for (size_t i = 0; i < sl->n; i++) {
		free(sl->evs[i].name);
		free(sl->evs[i].payload);
	}
	free(sl->evs);
	memset(sl, 0, sizeof(*sl));
}

static void q_out_clear(struct q_out *q)
{
	for (size_t i = 0; i < q->nacked; i++)
		free(q->acked[i]);
	for (size_t i = 0; i < q->nresponded; i++)
		free(q->responded[i]);
	free(q->acked);
	free(q->responded);
}

void serf_free(struct serf *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->m[i].name);
	free(s->m);
	free(s->idx);
	for (int i = 0; i < SERF_EVENT_BUFFER; i++)
		ev_slot_clear(&s->events[i]);
	for (size_t i = 0; i < s->nout; i++)
		q_out_clear(&s->out[i]);
	free(s->out);
	free(s->tags);
	free(s->self);
	free(s);
}

void serf_set_tags(struct serf *s, const struct tag *tags, size_t n)
{
	free(s->tags);
	s->tags = NULL;
	s->ntags = 0;
	if (n == 0)
		return;
	s->tags = malloc(n * sizeof(*tags));
	if (s->tags == NULL)
		abort();
	memcpy(s->tags, tags, n * sizeof(*tags));
	s->ntags = n;
}

uint64_t serf_clock(const struct serf *s)
{
	return s->clock;
}
uint64_t serf_event_clock(const struct serf *s)
{
	return s->event_clock;
}
uint64_t serf_query_clock(const struct serf *s)
{
	return s->query_clock;
}

void serf_witness_clocks(struct serf *s, uint64_t clock, uint64_t event_clock, uint64_t query_clock)
{
	if (clock > 0)
		witness(&s->clock, clock - 1);
	if (event_clock > 0) {
		witness(&s->event_clock, event_clock - 1);
		/* do not replay events from before the snapshot */
		if (event_clock > s->event_min_time)
			s->event_min_time = event_clock;
	}
	if (query_clock > 0)
		witness(&s->query_clock, query_clock - 1);
}

const struct serf_stats *serf_stats(const struct serf *s)
{
	return &s->stats;
}

const char *serf_event_name(enum serf_event ev)
{
	switch (ev) {
	case SERF_EV_MEMBER_JOIN:
		return "member-join";
	case SERF_EV_MEMBER_LEAVE:
		return "member-leave";
	case SERF_EV_MEMBER_FAILED:
		return "member-failed";
	case SERF_EV_MEMBER_UPDATE:
		return "member-update";
	case SERF_EV_MEMBER_REAP:
		return "member-reap";
	case SERF_EV_USER:
		return "user";
	case SERF_EV_QUERY:
		return "query";
	case SERF_EV_NONE:
		break;
	}
	return "none";
}

const char *serf_status_name(enum serf_status st)
{
	switch (st) {
	case SERF_STATUS_ALIVE:
		return "alive";
	case SERF_STATUS_LEAVING:
		return "leaving";
	case SERF_STATUS_LEFT:
		return "left";
	case SERF_STATUS_FAILED:
		return "failed";
	case SERF_STATUS_NONE:
		break;
	}
	return "none";
}

enum serf_status serf_member_status(const struct serf *s, const char *name)
{
	const struct sm *m = find(s, name);
	return m != NULL && m->known ? m->status : SERF_STATUS_NONE;
}

/* ------------------------------------------------------------ intents */

static void broadcast_msg(struct serf *s, const uint8_t *p, size_t len)
{
	if (s->io.broadcast != NULL)
		s->io.broadcast(s->io.ctx, p, len);
}

void serf_broadcast_join(struct serf *s)
{
	struct serf_msg_join j = {.ltime = s->clock};
	snprintf(j.node, sizeof(j.node), "%s", s->self);
	uint8_t buf[ML_NAME_MAX + 64];
	/* serf's Join increments after reading Time() */
	s->clock++;
	struct sm *me = get(s, s->self);
	if (j.ltime > me->status_ltime)
		me->status_ltime = j.ltime;
	int n = serf_encode_join(buf, sizeof(buf), &j);
	if (n > 0)
		broadcast_msg(s, buf, (size_t)n);
}

void serf_set_leaving(struct serf *s)
{
	s->leaving = true;
}

void serf_broadcast_leave(struct serf *s)
{
	s->leaving = true;
	struct serf_msg_leave l = {.ltime = s->clock};
	snprintf(l.node, sizeof(l.node), "%s", s->self);
	s->clock++;
	struct sm *me = get(s, s->self);
	if (l.ltime > me->status_ltime || me->status_ltime == 0)
		me->status_ltime = l.ltime;
	me->status = SERF_STATUS_LEAVING;
	uint8_t buf[ML_NAME_MAX + 64];
	int n = serf_encode_leave(buf, sizeof(buf), &l);
	if (n > 0)
		broadcast_msg(s, buf, (size_t)n);
}

/* serf's handleNodeLeaveIntent; true when it should be re-gossiped. */
static bool leave_intent(struct serf *s, const struct serf_msg_leave *l)
{
	witness(&s->clock, l->ltime);
	s->stats.intents++;
	struct sm *m = find(s, l->node);
	if (m == NULL || !m->known) {
		if (m == NULL) {
			m = get(s, l->node);
			m->intent_leave = true;
			m->status_ltime = l->ltime;
			return true;
		}
		if (l->ltime > m->status_ltime) {
			m->intent_leave = true;
			m->status_ltime = l->ltime;
			return true;
		}
		return false;
	}
	if (l->ltime <= m->status_ltime)
		return false;
	if (strcmp(l->node, s->self) == 0 && !s->leaving) {
		serf_broadcast_join(s); /* refute an old leave intent */
		return false;
	}
	m->status_ltime = l->ltime;
	switch (m->status) {
	case SERF_STATUS_ALIVE:
		m->status = SERF_STATUS_LEAVING;
		return true;
	case SERF_STATUS_FAILED:
		m->status = SERF_STATUS_LEFT; /* forced leave */
		return true;
	case SERF_STATUS_LEAVING:
	case SERF_STATUS_LEFT:
		return true;
	default:
		return false;
	}
}

/*
 * serf's forceLeave: a leave intent for another member, stamped with our
 * clock, applied here first and then gossiped. A failed member becomes left;
 * an alive one becomes leaving until it hears the intent and refutes it with
 * a join intent (what Consul and Serf do for a live node). Prune is carried
 * on the wire; this layer does not erase the member itself (the caller
 * prunes through swim_force_leave).
 */
void serf_force_leave(struct serf *s, const char *node, bool prune)
{
	struct serf_msg_leave l = {.ltime = s->clock, .prune = prune};
	snprintf(l.node, sizeof(l.node), "%s", node);
	s->clock++;
	leave_intent(s, &l);
	uint8_t buf[ML_NAME_MAX + 64];
	int n = serf_encode_leave(buf, sizeof(buf), &l);
	if (n > 0)
		broadcast_msg(s, buf, (size_t)n);
}

static bool join_intent(struct serf *s, const struct serf_msg_join *j)
{
	witness(&s->clock, j->ltime);
	s->stats.intents++;
	struct sm *m = find(s, j->node);
	if (m == NULL || !m->known) {
		if (m == NULL) {
			m = get(s, j->node);
			m->status_ltime = j->ltime;
			return true;
		}
		if (j->ltime > m->status_ltime) {
			m->intent_leave = false;
			m->status_ltime = j->ltime;
			return true;
		}
		return false;
	}
	if (j->ltime <= m->status_ltime)
		return false;
	m->status_ltime = j->ltime;
	if (m->status == SERF_STATUS_LEAVING)
		m->status = SERF_STATUS_ALIVE;
	return true;
}

enum serf_event serf_member_event(struct serf *s, enum swim_event_type type, const char *name)
{
	struct sm *m;
	switch (type) {
	case SWIM_EV_JOIN:
		m = find(s, name);
		if (m == NULL || !m->known) {
			m = get(s, name);
			m->status = m->intent_leave ? SERF_STATUS_LEAVING : SERF_STATUS_ALIVE;
			m->known = true;
			m->intent_leave = false;
		} else {
			m->status = SERF_STATUS_ALIVE;
		}
		if (strcmp(name, s->self) == 0 && s->leaving)
			m->status = SERF_STATUS_LEAVING;
		return SERF_EV_MEMBER_JOIN;
	case SWIM_EV_UPDATE:
		return SERF_EV_MEMBER_UPDATE;
	case SWIM_EV_SUSPECT:
		return SERF_EV_NONE;
	case SWIM_EV_FAILED:
	case SWIM_EV_LEFT:
		m = find(s, name);
		if (m == NULL || !m->known)
			return SERF_EV_NONE;
		if (m->status == SERF_STATUS_LEAVING || type == SWIM_EV_LEFT) {
			m->status = SERF_STATUS_LEFT;
			return SERF_EV_MEMBER_LEAVE;
		}
		if (m->status == SERF_STATUS_ALIVE) {
			m->status = SERF_STATUS_FAILED;
			return SERF_EV_MEMBER_FAILED;
		}
		return SERF_EV_NONE;
	case SWIM_EV_REAP:
		m = find(s, name);
		if (m != NULL && strcmp(name, s->self) != 0)
			drop(s, m);
		return SERF_EV_MEMBER_REAP;
	}
	return SERF_EV_NONE;
}

/* --------------------------------------------------------- user events */

/* serf's handleUserEvent; true when it is new (deliver and re-gossip). */
static bool user_event_in(struct serf *s, const struct serf_msg_user_event *e)
{
	witness(&s->event_clock, e->ltime);
	if (e->ltime < s->event_min_time)
		return false;
	uint64_t cur = s->event_clock;
	if (cur > SERF_EVENT_BUFFER && e->ltime < cur - SERF_EVENT_BUFFER)
		return false;
	struct ev_slot *sl = &s->events[e->ltime % SERF_EVENT_BUFFER];
	if (sl->used && sl->ltime == e->ltime) {
		for (size_t i = 0; i < sl->n; i++)
			if (strlen(sl->evs[i].name) == e->name_len &&
			    memcmp(sl->evs[i].name, e->name, e->name_len) == 0 &&
			    sl->evs[i].len == e->payload_len &&
			    (e->payload_len == 0 ||
			     memcmp(sl->evs[i].payload, e->payload, e->payload_len) == 0)) {
				s->stats.events_dup++;
				return false;
			}
	} else {
		ev_slot_clear(sl);
		sl->used = true;
		sl->ltime = e->ltime;
	}
	if (sl->n >= 64) /* bounded: a flood at one ltime is not remembered */
		return false;
	struct ev_rec *p = realloc(sl->evs, (sl->n + 1) * sizeof(*p));
	if (p == NULL)
		abort();
	sl->evs = p;
	struct ev_rec *r = &sl->evs[sl->n++];
	r->name = xstrndup(e->name, e->name_len);
	r->len = e->payload_len;
	r->payload = NULL;
	if (e->payload_len > 0) {
		r->payload = malloc(e->payload_len);
		if (r->payload == NULL)
			abort();
		memcpy(r->payload, e->payload, e->payload_len);
	}
	s->stats.events_delivered++;
	if (s->io.user_event != NULL)
		s->io.user_event(s->io.ctx, e->ltime, r->name, r->payload, r->len, e->cc);
	return true;
}

int serf_user_event(struct serf *s, const char *name, const uint8_t *payload, size_t len,
                    bool coalesce, char *err, size_t errlen)
{
	size_t nlen = strlen(name);
	if (nlen == 0) {
		snprintf(err, errlen, "user event needs a name");
		return -1;
	}
	if (nlen + len > SERF_USER_EVENT_SIZE_LIMIT) {
		snprintf(err, errlen,
		         "user event exceeds configured limit of %d bytes before encoding",
		         SERF_USER_EVENT_SIZE_LIMIT);
		return -1;
	}
	struct serf_msg_user_event e = {.ltime = s->event_clock,
	                                .name = name,
	                                .name_len = nlen,
	                                .payload = payload,
	                                .payload_len = len,
	                                .cc = coalesce};
	uint8_t buf[SERF_USER_EVENT_SIZE_LIMIT + 128];
	int n = serf_encode_user_event(buf, sizeof(buf), &e);
	if (n < 0 || n > SERF_USER_EVENT_SIZE_LIMIT) {
		snprintf(err, errlen,
		         "encoded user event exceeds configured limit of %d bytes after "
		         "encoding",
		         SERF_USER_EVENT_SIZE_LIMIT);
		return -1;
	}
	s->event_clock++;
	user_event_in(s, &e);
	broadcast_msg(s, buf, (size_t)n);
	return 0;
}

/* ------------------------------------------------------------ queries */

static const char *tag_value(const struct serf *s, const char *key)
{
	for (size_t i = 0; i < s->ntags; i++)
		if (strcmp(s->tags[i].key, key) == 0)
			return s->tags[i].value;
	return "";
}

/*
 * serf's query filters, each a type byte and msgpack: 0 a list of node
 * names, 1 {Tag, Expr} with a regular expression matched against our tag.
 * A filter that does not decode matches nothing (serf drops the query), so
 * a malformed query is never answered by everyone.
 */
static bool filter_matches(const struct serf *s, const struct ml_slice *f)
{
	if (f->len == 0)
		return false;
	struct cursor r = {f->p + 1, f->p + f->len};
	if (f->p[0] == 0) {
		uint32_t n;
		if (mp_read_array_or_nil(&r, &n) != MP_OK)
			return false;
		for (uint32_t i = 0; i < n; i++) {
			char name[ML_NAME_MAX + 1];
			if (mp_read_str(&r, name, sizeof(name)) != MP_OK)
				return false;
			if (strcmp(name, s->self) == 0)
				return true;
		}
		return false;
	}
	if (f->p[0] == 1) {
		uint32_t n;
		char key[16], tag[TAG_KEY_MAX + 1] = "", expr[512] = "";
		if (mp_read_map_or_nil(&r, &n) != MP_OK)
			return false;
		for (uint32_t i = 0; i < n; i++) {
			if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
				return false;
			if (strcmp(key, "Tag") == 0) {
				if (mp_read_str(&r, tag, sizeof(tag)) != MP_OK)
					return false;
			} else if (strcmp(key, "Expr") == 0) {
				if (mp_read_str(&r, expr, sizeof(expr)) != MP_OK)
					return false;
			} else if (mp_skip(&r) != MP_OK) {
				return false;
			}
		}
		/* Go regexp vs POSIX ERE: close enough for the usual anchors,
		 * classes and alternations. */
		regex_t re;
		if (regcomp(&re, expr, REG_EXTENDED | REG_NOSUB) != 0)
			return false;
		bool ok = regexec(&re, tag_value(s, tag), 0, NULL, 0) == 0;
		regfree(&re);
		return ok;
	}
	return false;
}

static void send_response(struct serf *s, const struct ml_addr *to, uint64_t ltime, uint32_t id,
                          uint32_t flags, const uint8_t *payload, size_t len)
{
	struct serf_msg_query_response r = {
	        .ltime = ltime, .id = id, .flags = flags, .payload = payload, .payload_len = len};
	snprintf(r.from, sizeof(r.from), "%s", s->self);
	uint8_t buf[SERF_QUERY_RESPONSE_SIZE_LIMIT + ML_NAME_MAX + 128];
	int n = serf_encode_query_response(buf, sizeof(buf), &r);
	if (n > 0 && s->io.send_to != NULL)
		s->io.send_to(s->io.ctx, to, buf, (size_t)n);
}

/* serf's handleQuery; true when it should be re-gossiped. */
static bool query_in(struct serf *s, int64_t now, const struct serf_msg_query *q)
{
	witness(&s->query_clock, q->ltime);
	uint64_t cur = s->query_clock;
	if (cur > SERF_QUERY_BUFFER && q->ltime < cur - SERF_QUERY_BUFFER)
		return false;
	struct q_slot *sl = &s->queries[q->ltime % SERF_QUERY_BUFFER];
	if (sl->used && sl->ltime == q->ltime) {
		for (size_t i = 0; i < sl->n; i++)
			if (sl->ids[i] == q->id) {
				s->stats.queries_dup++;
				return false;
			}
	} else {
		memset(sl, 0, sizeof(*sl));
		sl->used = true;
		sl->ltime = q->ltime;
	}
	if (sl->n < sizeof(sl->ids) / sizeof(sl->ids[0]))
		sl->ids[sl->n++] = q->id;
	bool rebroadcast = !(q->flags & SERF_QUERY_FLAG_NO_BROADCAST);
	for (int i = 0; i < q->nfilters; i++)
		if (!filter_matches(s, &q->filters[i]))
			return rebroadcast;
	if (q->flags & SERF_QUERY_FLAG_ACK)
		send_response(s, &q->addr, q->ltime, q->id, SERF_QUERY_FLAG_ACK, NULL, 0);
	s->stats.queries_delivered++;
	if (s->io.query != NULL) {
		char name[ML_NAME_MAX + 1];
		memcpy(name, q->name, q->name_len);
		name[q->name_len] = '\0';
		struct serf_query_in in = {
		        .ltime = q->ltime,
		        .id = q->id,
		        .from = q->addr,
		        .source_node = q->source_node,
		        .name = name,
		        .payload = q->payload,
		        .payload_len = q->payload_len,
		        .deadline = now + q->timeout_ns / 1000000,
		};
		s->io.query(s->io.ctx, &in);
	}
	return rebroadcast;
}

int serf_query_respond(struct serf *s, const struct serf_query_in *q, const uint8_t *payload,
                       size_t len, char *err, size_t errlen)
{
	if (len > SERF_QUERY_RESPONSE_SIZE_LIMIT) {
		snprintf(err, errlen, "response exceeds limit of %d bytes",
		         SERF_QUERY_RESPONSE_SIZE_LIMIT);
		return -1;
	}
	send_response(s, &q->from, q->ltime, q->id, 0, payload, len);
	return 0;
}

int64_t serf_default_query_timeout_ms(int64_t gossip_interval_ms, size_t n)
{
	int64_t mult = 1;
	for (size_t x = n + 1; x > 10; x = (x + 9) / 10)
		mult++;
	return gossip_interval_ms * 16 * mult;
}

static struct q_out *find_out(struct serf *s, uint32_t id)
{
	for (size_t i = 0; i < s->nout; i++)
		if (s->out[i].id == id)
			return &s->out[i];
	return NULL;
}

static bool add_name(char ***list, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i], name) == 0)
			return false;
	char **p = realloc(*list, (*n + 1) * sizeof(*p));
	if (p == NULL)
		abort();
	*list = p;
	p[(*n)++] = xstrdup(name);
	return true;
}

int serf_query(struct serf *s, int64_t now, const struct serf_query_params *p, uint32_t *id,
               char *err, size_t errlen)
{
	uint8_t fbuf[SERF_FILTERS_MAX][SERF_QUERY_SIZE_LIMIT];
	struct serf_msg_query q;
	memset(&q, 0, sizeof(q));
	if (p->name == NULL || p->name[0] == '\0' || strlen(p->name) > ML_NAME_MAX) {
		snprintf(err, errlen, "query needs a name of at most %d bytes", ML_NAME_MAX);
		return -1;
	}
	if (p->n_filter_nodes > 0) {
		int n = serf_encode_filter_nodes(fbuf[0], sizeof(fbuf[0]), p->filter_nodes,
		                                 p->n_filter_nodes);
		if (n < 0) {
			snprintf(err, errlen, "query exceeds limit of %d bytes",
			         SERF_QUERY_SIZE_LIMIT);
			return -1;
		}
		q.filters[q.nfilters].p = fbuf[q.nfilters];
		q.filters[q.nfilters++].len = (size_t)n;
	}
	for (size_t i = 0; i < p->n_filter_tags && q.nfilters < SERF_FILTERS_MAX; i++) {
		int n = serf_encode_filter_tag(fbuf[q.nfilters], sizeof(fbuf[0]),
		                               p->filter_tag_key[i], p->filter_tag_expr[i]);
		if (n < 0) {
			snprintf(err, errlen, "query exceeds limit of %d bytes",
			         SERF_QUERY_SIZE_LIMIT);
			return -1;
		}
		q.filters[q.nfilters].p = fbuf[q.nfilters];
		q.filters[q.nfilters++].len = (size_t)n;
	}
	uint32_t qid;
	do {
		qid = (uint32_t)((uint64_t)now * 2654435761u + s->query_clock * 40503u + s->nout) &
		      0x7fffffffu;
	} while (find_out(s, qid) != NULL || qid == 0);
	q.ltime = s->query_clock;
	q.id = qid;
	q.addr = p->self_addr;
	snprintf(q.source_node, sizeof(q.source_node), "%s", s->self);
	q.flags = p->request_ack ? SERF_QUERY_FLAG_ACK : 0;
	q.timeout_ns = p->timeout_ms * 1000000;
	q.name = p->name;
	q.name_len = strlen(p->name);
	q.payload = p->payload;
	q.payload_len = p->payload_len;
	uint8_t buf[SERF_QUERY_SIZE_LIMIT];
	int n = serf_encode_query(buf, sizeof(buf), &q);
	if (n < 0) {
		snprintf(err, errlen, "query exceeds limit of %d bytes", SERF_QUERY_SIZE_LIMIT);
		return -1;
	}
	struct q_out *o = realloc(s->out, (s->nout + 1) * sizeof(*o));
	if (o == NULL)
		abort();
	s->out = o;
	o = &s->out[s->nout++];
	memset(o, 0, sizeof(*o));
	o->id = qid;
	o->ltime = q.ltime;
	s->query_clock++;
	query_in(s, now, &q);
	broadcast_msg(s, buf, (size_t)n);
	*id = qid;
	return 0;
}

void serf_query_close(struct serf *s, uint32_t id)
{
	struct q_out *o = find_out(s, id);
	if (o == NULL)
		return;
	q_out_clear(o);
	*o = s->out[--s->nout];
}

static void query_response_in(struct serf *s, const struct serf_msg_query_response *r)
{
	struct q_out *o = find_out(s, r->id);
	if (o == NULL || o->ltime != r->ltime)
		return;
	bool ack = (r->flags & SERF_QUERY_FLAG_ACK) != 0;
	if (!add_name(ack ? &o->acked : &o->responded, ack ? &o->nacked : &o->nresponded, r->from))
		return;
	if (s->io.query_response != NULL)
		s->io.query_response(s->io.ctx, r->id, r->from, ack, r->payload, r->payload_len);
}

/* messageRelayType: [9] {DestAddr: {IP, Port, Zone}, DestName} then a message. */
static void relay_in(struct serf *s, const uint8_t *p, size_t len)
{
	struct cursor r = {p, p + len};
	uint32_t n;
	char key[32];
	struct ml_addr to;
	memset(&to, 0, sizeof(to));
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			return;
		if (strcmp(key, "DestAddr") == 0) {
			uint32_t m;
			if (mp_read_map_or_nil(&r, &m) != MP_OK)
				return;
			for (uint32_t j = 0; j < m; j++) {
				char k2[16];
				uint64_t u;
				if (mp_read_key(&r, k2, sizeof(k2)) != MP_OK)
					return;
				if (strcmp(k2, "IP") == 0) {
					const uint8_t *ip;
					size_t iplen;
					if (mp_read_raw(&r, &ip, &iplen) != MP_OK ||
					    !ip_from(ip, iplen, &to))
						return;
				} else if (strcmp(k2, "Port") == 0) {
					if (mp_read_uint(&r, &u) != MP_OK || u > 65535)
						return;
					to.port = (uint16_t)u;
				} else if (mp_skip(&r) != MP_OK) {
					return;
				}
			}
		} else if (mp_skip(&r) != MP_OK) {
			return;
		}
	}
	if (to.len == 0 || to.port == 0 || r.p >= r.end || s->io.send_to == NULL)
		return;
	s->io.send_to(s->io.ctx, &to, r.p, (size_t)(r.end - r.p));
}

void serf_handle_msg(struct serf *s, int64_t now, const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	s->stats.msgs_in++;
	bool rebroadcast = false;
	const uint8_t *body = p + 1;
	size_t blen = len - 1;
	switch (p[0]) {
	case SERF_MSG_LEAVE: {
		struct serf_msg_leave l;
		if (serf_decode_leave(body, blen, &l) != ML_OK)
			goto bad;
		rebroadcast = leave_intent(s, &l);
		break;
	}
	case SERF_MSG_JOIN: {
		struct serf_msg_join j;
		if (serf_decode_join(body, blen, &j) != ML_OK)
			goto bad;
		rebroadcast = join_intent(s, &j);
		break;
	}
	case SERF_MSG_USER_EVENT: {
		struct serf_msg_user_event e;
		if (serf_decode_user_event(body, blen, &e) != ML_OK)
			goto bad;
		rebroadcast = user_event_in(s, &e);
		break;
	}
	case SERF_MSG_QUERY: {
		static struct serf_msg_query q;
		if (serf_decode_query(body, blen, &q) != ML_OK)
			goto bad;
		rebroadcast = query_in(s, now, &q);
		break;
	}
	case SERF_MSG_QUERY_RESPONSE: {
		static struct serf_msg_query_response r;
		if (serf_decode_query_response(body, blen, &r) != ML_OK)
			goto bad;
		query_response_in(s, &r);
		break;
	}
	case SERF_MSG_RELAY:
		relay_in(s, body, blen);
		break;
	default:
		break; /* push-pull arrives through serf_merge_state; others unused */
	}
	if (rebroadcast && len <= ML_UDP_MAX)
		broadcast_msg(s, p, len);
	return;
bad:
	s->stats.bad_msgs++;
}

/* ---------------------------------------------------------- push-pull */

uint8_t *serf_local_state_new(struct serf *s, size_t *len)
{
	struct wcursor w = {.grow = true};
	size_t nknown = 0, nleft = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i].known) {
			nknown++;
			if (s->m[i].status == SERF_STATUS_LEFT)
				nleft++;
		}
	wcursor_u8(&w, SERF_MSG_PUSH_PULL);
	mp_write_map(&w, 6);
	mp_write_str(&w, "LTime");
	mp_write_uint(&w, s->clock);
	mp_write_str(&w, "StatusLTimes");
	mp_write_map(&w, (uint32_t)nknown);
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i].known) {
			mp_write_str(&w, s->m[i].name);
			mp_write_uint(&w, s->m[i].status_ltime);
		}
	mp_write_str(&w, "LeftMembers");
	mp_write_array(&w, (uint32_t)nleft);
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i].known && s->m[i].status == SERF_STATUS_LEFT)
			mp_write_str(&w, s->m[i].name);
	mp_write_str(&w, "EventLTime");
	mp_write_uint(&w, s->event_clock);
	mp_write_str(&w, "Events");
	uint32_t nev = 0;
	for (int i = 0; i < SERF_EVENT_BUFFER; i++)
		if (s->events[i].used)
			nev++;
	mp_write_array(&w, nev);
	for (int i = 0; i < SERF_EVENT_BUFFER; i++) {
		const struct ev_slot *sl = &s->events[i];
		if (!sl->used)
			continue;
		mp_write_map(&w, 2);
		mp_write_str(&w, "LTime");
		mp_write_uint(&w, sl->ltime);
		mp_write_str(&w, "Events");
		mp_write_array(&w, (uint32_t)sl->n);
		for (size_t j = 0; j < sl->n; j++) {
			mp_write_map(&w, 2);
			mp_write_str(&w, "Name");
			mp_write_str(&w, sl->evs[j].name);
			mp_write_str(&w, "Payload");
			mp_write_bytes(&w, sl->evs[j].payload, sl->evs[j].len);
		}
	}
	mp_write_str(&w, "QueryLTime");
	mp_write_uint(&w, s->query_clock);
	*len = w.len;
	return w.p;
}

/* One userEvents' Events array: [{Name, Payload}...] at ltime. */
static bool merge_event_list(struct serf *s, struct cursor *r, uint64_t ltime)
{
	uint32_t ne;
	char key[16];
	if (mp_read_array_or_nil(r, &ne) != MP_OK)
		return false;
	for (uint32_t k = 0; k < ne; k++) {
		struct serf_msg_user_event e = {.ltime = ltime, .name = ""};
		uint32_t fm;
		if (mp_read_map_or_nil(r, &fm) != MP_OK)
			return false;
		for (uint32_t f = 0; f < fm; f++) {
			if (mp_read_key(r, key, sizeof(key)) != MP_OK)
				return false;
			if (strcmp(key, "Name") == 0) {
				const uint8_t *np;
				if (mp_read_raw(r, &np, &e.name_len) != MP_OK ||
				    e.name_len > ML_NAME_MAX || memchr(np, 0, e.name_len) != NULL)
					return false;
				e.name = (const char *)np;
			} else if (strcmp(key, "Payload") == 0) {
				if (mp_read_raw(r, &e.payload, &e.payload_len) != MP_OK)
					return false;
			} else if (mp_skip(r) != MP_OK) {
				return false;
			}
		}
		if (e.name_len > 0)
			user_event_in(s, &e);
	}
	return true;
}

/* Events: [ {LTime, Events: [{Name, Payload}]} | nil ... ] (keys in any order) */
static bool merge_events(struct serf *s, struct cursor *r)
{
	uint32_t n;
	if (mp_read_array_or_nil(r, &n) != MP_OK)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_nil(r) == MP_OK)
			continue;
		uint32_t m;
		char key[16];
		uint64_t ltime = 0;
		const uint8_t *list = NULL;
		if (mp_read_map_or_nil(r, &m) != MP_OK)
			return false;
		for (uint32_t j = 0; j < m; j++) {
			if (mp_read_key(r, key, sizeof(key)) != MP_OK)
				return false;
			if (strcmp(key, "LTime") == 0) {
				if (mp_read_uint(r, &ltime) != MP_OK)
					return false;
			} else {
				if (strcmp(key, "Events") == 0)
					list = r->p;
				if (mp_skip(r) != MP_OK)
					return false;
			}
		}
		if (list != NULL) {
			struct cursor lr = {list, r->end};
			if (!merge_event_list(s, &lr, ltime))
				return false;
		}
	}
	return true;
}

/*
 * serf's messagePushPull. Keys may come in any order, so the first pass
 * reads the clocks and notes where StatusLTimes, LeftMembers and Events
 * start; the second walks them with fresh cursors. Nothing is copied out
 * of p. A malformed state bumps bad_msgs; intents merged before the fault
 * in the second pass stay merged (serf decodes the whole state first and
 * then merges none of it).
 */
void serf_merge_state(struct serf *s, const uint8_t *p, size_t len, bool join)
{
	if (len == 0 || p[0] != SERF_MSG_PUSH_PULL) {
		if (len > 0)
			s->stats.bad_msgs++;
		return;
	}
	/* Two passes: clocks and left members first, as serf does. */
	struct cursor r = {p + 1, p + len};
	uint32_t n;
	char key[32];
	uint64_t ltime = 0, eltime = 0, qltime = 0;
	const uint8_t *status_at = NULL, *left_at = NULL, *events_at = NULL;
	if (mp_read_map_or_nil(&r, &n) != MP_OK)
		goto bad;
	for (uint32_t i = 0; i < n; i++) {
		if (mp_read_key(&r, key, sizeof(key)) != MP_OK)
			goto bad;
		if (strcmp(key, "LTime") == 0) {
			if (mp_read_uint(&r, &ltime) != MP_OK)
				goto bad;
		} else if (strcmp(key, "EventLTime") == 0) {
			if (mp_read_uint(&r, &eltime) != MP_OK)
				goto bad;
		} else if (strcmp(key, "QueryLTime") == 0) {
			if (mp_read_uint(&r, &qltime) != MP_OK)
				goto bad;
		} else {
			if (strcmp(key, "StatusLTimes") == 0)
				status_at = r.p;
			else if (strcmp(key, "LeftMembers") == 0)
				left_at = r.p;
			else if (strcmp(key, "Events") == 0)
				events_at = r.p;
			if (mp_skip(&r) != MP_OK)
				goto bad;
		}
	}
	if (ltime > 0)
		witness(&s->clock, ltime - 1);
	if (eltime > 0)
		witness(&s->event_clock, eltime - 1);
	if (qltime > 0)
		witness(&s->query_clock, qltime - 1);
	/* left members: a leave intent at their status time + 1 */
	if (left_at != NULL) {
		struct cursor lr = {left_at, p + len};
		uint32_t nl;
		if (mp_read_array_or_nil(&lr, &nl) != MP_OK)
			goto bad;
		for (uint32_t i = 0; i < nl; i++) {
			struct serf_msg_leave l = {0};
			if (mp_read_str(&lr, l.node, sizeof(l.node)) != MP_OK)
				goto bad;
			if (status_at != NULL) {
				struct cursor sr = {status_at, p + len};
				uint32_t ns;
				if (mp_read_map_or_nil(&sr, &ns) == MP_OK)
					for (uint32_t j = 0; j < ns; j++) {
						char name[ML_NAME_MAX + 1];
						uint64_t t;
						if (mp_read_str(&sr, name, sizeof(name)) != MP_OK ||
						    mp_read_uint(&sr, &t) != MP_OK)
							break;
						if (strcmp(name, l.node) == 0) {
							l.ltime = t;
							break;
						}
					}
			}
			l.ltime++;
			leave_intent(s, &l);
		}
	}
	if (status_at != NULL) {
		struct cursor sr = {status_at, p + len};
		uint32_t ns;
		if (mp_read_map_or_nil(&sr, &ns) != MP_OK)
			goto bad;
		for (uint32_t j = 0; j < ns; j++) {
			struct serf_msg_join jn = {0};
			if (mp_read_str(&sr, jn.node, sizeof(jn.node)) != MP_OK ||
			    mp_read_uint(&sr, &jn.ltime) != MP_OK)
				goto bad;
			/* skip the left ones */
			bool left = false;
			if (left_at != NULL) {
				struct cursor lr = {left_at, p + len};
				uint32_t nl;
				if (mp_read_array_or_nil(&lr, &nl) == MP_OK)
					for (uint32_t i = 0; i < nl; i++) {
						char name[ML_NAME_MAX + 1];
						if (mp_read_str(&lr, name, sizeof(name)) != MP_OK)
							break;
						if (strcmp(name, jn.node) == 0) {
							left = true;
							break;
						}
					}
			}
			if (!left)
				join_intent(s, &jn);
		}
	}
	(void)join; /* serf's eventJoinIgnore is off in the agent by default */
	if (events_at != NULL) {
		struct cursor er = {events_at, p + len};
		if (!merge_events(s, &er))
			goto bad;
	}
	return;
bad:
	s->stats.bad_msgs++;
}
