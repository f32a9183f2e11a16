/*
 * agent/api_kv.c — see api_kv.h.
 *
 * Answers are built straight into a byte buffer (no JSON tree on the read
 * path; ?pretty re-indents through jansson). Every read carries
 * X-Consul-Index, X-Consul-KnownLeader: true and X-Consul-LastContact: 0,
 * 404s included. The index of a single key is its version (HLC) or that of
 * its tombstone, 1 if it never existed — so a blocking query on a key is not
 * woken by writes to other keys (Consul uses the table's index there). Every
 * index is the version's 53-bit index form (kv/hlc.h), which a JavaScript
 * number holds exactly; an index sent in the older 64-bit form (?index=,
 * ?cas=, a txn's Index) is read as its index form.
 */
#define _GNU_SOURCE
#include "agent/api_kv.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/api_server.h"
#include "agent/env.h"
#include "agent/server.h"
#include "agent/api_reply.h"
#include "agent/api_session.h"
#include "agent/config.h"
#include "agent/http/http.h"
#include "lib/log.h"
#include "kv/hlc.h"
#include "kv/kv.h"

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS (10 * 60 * 1000)
#define RESERVED_LEN (sizeof(KV_RESERVED_PREFIX) - 1)

/* ------------------------------------------------------------ buffer */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

/*
 * Grows the answer buffer, but never aborts: a failed realloc sets the sticky
 * oom flag, every later append becomes a no-op, and reply_buf turns the whole
 * answer into a 500. A large recursive read must not take the agent down.
 */
static void sb_need(struct sbuf *b, size_t n)
{
	if (b->oom || b->cap - b->len > n)
		return;
	size_t cap = b->cap ? b->cap : 512;
	while (cap - b->len <= n)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	sb_need(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof(t), "%" PRIu64, v);
	sb_add(b, t, (size_t)n);
}

/*
 * Escapes only what JSON requires, plus DEL. Bytes >= 0x80 pass through as they
 * are: keys were checked to be UTF-8 when written, so the output stays valid JSON.
 */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	sb_need(b, n + 2);
	sb_add(b, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f)
			continue;
		sb_add(b, s + run, i - run);
		run = i + 1;
		char e[7] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15], 0};
		if (ch == '"')
			sb_add(b, "\\\"", 2);
		else if (ch == '\\')
			sb_add(b, "\\\\", 2);
		else if (ch == '\n')
			sb_add(b, "\\n", 2);
		else
			sb_add(b, e, 6);
	}
	sb_add(b, s + run, n - run);
	sb_add(b, "\"", 1);
}

static void sb_b64(struct sbuf *b, const uint8_t *v, size_t n)
{
	size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	sb_need(b, need + 2);
	if (b->oom)
		return;
	b->p[b->len++] = '"';
	sodium_bin2base64(b->p + b->len, need, v, n, sodium_base64_VARIANT_ORIGINAL);
	b->len += need - 1;
	b->p[b->len++] = '"';
	b->p[b->len] = '\0';
}

/* ------------------------------------------------------------ helpers */

static bool reserved(const char *k, size_t n)
{
	return n >= RESERVED_LEN && memcmp(k, KV_RESERVED_PREFIX, RESERVED_LEN) == 0;
}

static bool has(const struct http_request *req, const char *name)
{
	return http_query_get(req, name) != NULL;
}

static int parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

/*
 * As strict as Go's utf8.Valid (no overlong forms, no surrogates, nothing above
 * U+10FFFF), so a key accepted here is one Consul would accept, and every key we
 * later print as a JSON string is valid UTF-8.
 */
static bool utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;
	while (p < e) {
		unsigned c = *p;
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if ((size_t)(e - p) < len)
			return false;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += len;
	}
	return true;
}

/* 0, or an HTTP status with the message in *msg. */
static int check_write_key(const char *key, size_t n, bool allow_empty, const char **msg)
{
	if (n == 0 && !allow_empty) {
		*msg = "Missing key name";
		return 400;
	}
	if (n > 0 && key[0] == '/') {
		*msg = "Invalid key: keys must not begin with '/'";
		return 400;
	}
	if (n > KV_KEY_MAX) {
		*msg = "Invalid key: keys are limited to 480 bytes";
		return 400;
	}
	if (!utf8_ok(key, n)) {
		*msg = "Invalid key: keys must be valid UTF-8";
		return 400;
	}
	if (reserved(key, n)) {
		*msg = "Permission denied: keys under " KV_RESERVED_PREFIX
		       " are reserved for the agent's catalog";
		return 403;
	}
	return 0;
}

/*
 * Index 0 is never sent: Consul answers at least 1, because a client that blocks
 * on index 0 would return at once and spin. The other two headers come from
 * the server tier: constant without servers (every agent holds a full
 * replica and there is no leader to be behind), Raft's view with them.
 */
static void set_meta(struct agent *a, struct http_conn *c, uint64_t index)
{
	char t[24];
	snprintf(t, sizeof(t), "%" PRIu64, index ? index : 1);
	http_add_header(c, "X-Consul-Index", t);
	api_server_headers(a, c);
}

/*
 * ?pretty costs a parse and a re-dump through jansson; the common path sends the
 * bytes as built. If the buffer ran out of memory anywhere, the client gets a 500,
 * never a truncated document.
 */
static void reply_buf(struct http_conn *c, const struct http_request *req, int status,
                      struct sbuf *b)
{
	if (b->oom) {
		api_reply_text(c, 500, "out of memory\n");
		return;
	}
	if (has(req, "pretty")) {
		json_t *j = json_loadb(b->p ? b->p : "null", b->len ? b->len : 4, JSON_DECODE_ANY,
		                       NULL);
		if (j != NULL) {
			api_reply_json(c, req, status, j);
			return;
		}
	}
	http_respond(c, status, "application/json", b->p ? b->p : "", b->len);
}

/* ------------------------------------------------------------ reads */

struct read_ctx {
	struct sbuf b;
	int n;
	bool keys;
	const char *prefix;
	size_t prefix_len;
	const char *sep;
	size_t sep_len;
	char *last;
	size_t last_len;
};

static void entry_json(struct sbuf *b, const struct kv_entry *e)
{
	sb_str(b, "{\"LockIndex\":");
	sb_u64(b, e->lock_index);
	sb_str(b, ",\"Key\":");
	sb_json_str(b, e->key, e->key_len);
	if (e->session != NULL && e->session[0] != '\0') {
		sb_str(b, ",\"Session\":");
		sb_json_str(b, e->session, strlen(e->session));
	}
	sb_str(b, ",\"Flags\":");
	sb_u64(b, e->flags);
	sb_str(b, ",\"Value\":");
	if (e->value_len == 0)
		sb_str(b, "null");
	else
		sb_b64(b, e->value, e->value_len);
	sb_str(b, ",\"CreateIndex\":");
	sb_u64(b, e->create_index);
	sb_str(b, ",\"ModifyIndex\":");
	sb_u64(b, e->modify_index);
	sb_str(b, "}");
}

/*
 * Relies on the scan order: keys arrive sorted, so with ?separator the keys that
 * collapse to the same prefix are adjacent and one remembered "last" is enough
 * to drop the duplicates. Reserved catalog keys are never shown.
 */
static int read_entry(void *ud, const struct kv_entry *e)
{
	struct read_ctx *r = ud;
	if (reserved(e->key, e->key_len))
		return 0;
	if (r->keys) {
		size_t len = e->key_len;
		if (r->sep_len > 0 && e->key_len > r->prefix_len) {
			const char *rest = e->key + r->prefix_len;
			const char *hit =
			        memmem(rest, e->key_len - r->prefix_len, r->sep, r->sep_len);
			if (hit != NULL)
				len = (size_t)(hit - e->key) + r->sep_len;
		}
		if (r->last != NULL && r->last_len == len && memcmp(r->last, e->key, len) == 0)
			return 0;
		char *l = realloc(r->last, len ? len : 1);
		if (l == NULL) {
			r->b.oom = true;
			return 1;
		}
		memcpy(l, e->key, len);
		r->last = l;
		r->last_len = len;
		sb_str(&r->b, r->n ? "," : "[");
		sb_json_str(&r->b, e->key, len);
	} else {
		sb_str(&r->b, r->n ? "," : "[");
		entry_json(&r->b, e);
	}
	r->n++;
	return 0;
}

static int raw_entry(void *ud, const struct kv_entry *e)
{
	struct sbuf *b = ud;
	sb_add(b, (const char *)e->value, e->value_len);
	return 0;
}

struct parked {
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	const char *key;
	size_t key_len;
	struct kv_watch *w;
};

/*
 * Shared by the immediate path and a woken blocking query, so both answer with
 * the same headers. A missing key is a 404 that still carries X-Consul-Index:
 * clients block on a key that does not exist yet.
 */
static void answer_read(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *key, size_t key_len)
{
	bool keys = has(req, "keys");
	bool recurse = has(req, "recurse") || keys;
	uint64_t index = kv_index(a->kv, key, key_len, recurse);
	set_meta(a, c, index);
	if (!recurse) {
		if (reserved(key, key_len)) {
			http_respond(c, 404, NULL, "", 0);
			return;
		}
		if (has(req, "raw")) {
			struct sbuf b = {0};
			if (kv_get(a->kv, key, key_len, raw_entry, &b) != 1) {
				free(b.p);
				http_respond(c, 404, NULL, "", 0);
				return;
			}
			http_add_header(c, "X-Content-Type-Options", "nosniff");
			http_add_header(c, "Content-Security-Policy", "sandbox");
			http_respond(c, 200, "text/plain; charset=utf-8", b.p ? b.p : "", b.len);
			free(b.p);
			return;
		}
	}
	struct read_ctx r;
	memset(&r, 0, sizeof(r));
	r.keys = keys;
	r.prefix = key;
	r.prefix_len = key_len;
	const char *sep = http_query_get(req, "separator");
	if (sep == NULL)
		sep = http_query_get(req, "seperator");
	r.sep = sep;
	r.sep_len = sep ? strlen(sep) : 0;
	int n;
	if (recurse)
		n = kv_scan(a->kv, key, key_len, read_entry, &r);
	else
		n = kv_get(a->kv, key, key_len, read_entry, &r);
	free(r.last);
	if (n < 0) {
		free(r.b.p);
		api_reply_text(c, 500, "storage error\n");
		return;
	}
	if (r.n == 0) {
		free(r.b.p);
		if (keys && key_len == 0) {
			http_respond(c, 200, "application/json", "[]", 2);
			return;
		}
		http_respond(c, 404, NULL, "", 0);
		return;
	}
	sb_str(&r.b, "]");
	reply_buf(c, req, 200, &r.b);
	free(r.b.p);
}

/*
 * A parked blocking query ends exactly one way: the watch fires (here) or the
 * client goes (parked_closed). Each path frees the context and disarms the other.
 */
static void parked_fire(void *ud, bool changed)
{
	struct parked *p = ud;
	p->w = NULL;
	answer_read(p->a, p->c, p->req, p->key, p->key_len);
	free(p);
}

static void parked_closed(struct http_conn *c, void *ud)
{
	struct parked *p = ud;
	kv_watch_cancel(p->w);
	free(p);
}

/* With servers, a read that is not ?stale waits for the leader
 * (agent/server.h server_read_barrier): default mode, the leader's
 * records; ?consistent, the same after the leader's barrier. */
struct cread {
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	const char *key;
	size_t key_len;
	struct server_read *r;
};

static void cread_done(void *ud, bool ok)
{
	struct cread *r = ud;
	http_conn_on_close(r->c, NULL, NULL);
	if (ok)
		answer_read(r->a, r->c, r->req, r->key, r->key_len);
	else
		api_reply_text(r->c, 500, "No cluster leader");
	free(r);
}

static void cread_closed(struct http_conn *c, void *ud)
{
	(void)c;
	struct cread *r = ud;
	server_read_cancel(r->r);
	free(r);
}

static void consistent_read(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *key, size_t key_len, bool recurse)
{
	struct cread *r = calloc(1, sizeof(*r));
	if (r == NULL)
		abort();
	*r = (struct cread){a, c, req, key, key_len, NULL};
	http_conn_on_close(c, cread_closed, r);
	r->r = server_read_barrier(a->server, has(req, "consistent"), key, key_len, recurse,
	                           cread_done, r);
}

/*
 * A blocking query parks only while the index equals ?index (kv_index_parks:
 * an index above the current one went backwards, and is answered at once so
 * the client resets it). As Consul,
 * the wait is capped at 10 minutes and stretched by up to wait/16 of jitter, so
 * clients that started together do not all come back together. When the watch
 * table is full the read is answered at once: late beats never.
 */
static void h_get(struct agent *a, struct http_conn *c, const struct http_request *req,
                  const char *key, size_t key_len)
{
	if (has(req, "stale") && has(req, "consistent")) {
		api_reply_text(c, 400,
		               "Cannot specify ?stale with ?consistent, conflicting semantics.");
		return;
	}
	bool keys = has(req, "keys");
	bool recurse = has(req, "recurse") || keys;
	if (key_len == 0 && !recurse) {
		api_reply_text(c, 400, "Missing key name");
		return;
	}
	const char *is = http_query_get(req, "index");
	if (is != NULL && *is != '\0') {
		uint64_t want;
		if (parse_u64(is, &want) < 0) {
			api_reply_text(c, 400, "Invalid index");
			return;
		}
		int64_t wait = WAIT_DEFAULT_MS;
		const char *ws = http_query_get(req, "wait");
		if (ws != NULL && *ws != '\0') {
			if (rumor_parse_duration(ws, &wait) < 0 || wait < 0) {
				api_reply_text(c, 400, "Invalid wait time");
				return;
			}
			if (wait > WAIT_MAX_MS)
				wait = WAIT_MAX_MS;
		}
		want = kv_hlc_index_in(want);
		if (kv_index_parks(kv_index(a->kv, key, key_len, recurse), want)) {
			if (wait >= 16)
				wait += (int64_t)randombytes_uniform((uint32_t)(wait / 16));
			struct parked *p = calloc(1, sizeof(*p));
			if (p != NULL) {
				p->a = a;
				p->c = c;
				p->req = req;
				p->key = key;
				p->key_len = key_len;
				p->w = kv_watch_add(a->kv, key, key_len, recurse, want, wait,
				                    parked_fire, p);
				if (p->w != NULL) {
					http_conn_on_close(c, parked_closed, p);
					return;
				}
				free(p); /* too many parked: answer now */
			}
		}
	}
	if (server_cp(a->server) && !has(req, "stale")) {
		consistent_read(a, c, req, key, key_len, recurse);
		return;
	}
	answer_read(a, c, req, key, key_len);
}

/* ------------------------------------------------------------ writes */

/* A write waiting for its commit; the client may go away meanwhile. */
struct wreq {
	struct http_conn *c;
	struct agent *a;
	char session[KV_SESSION_MAX + 1]; /* ?acquire: to explain a refusal */
};

/*
 * The client may hang up while its write waits for the group commit. The write
 * still happens; only the answer is dropped, and write_done must never touch a
 * connection that is gone.
 */
static void wreq_closed(struct http_conn *c, void *ud)
{
	struct wreq *w = ud;
	w->c = NULL;
}

static struct wreq *wreq_new(struct http_conn *c)
{
	struct wreq *w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	w->c = c;
	http_conn_on_close(c, wreq_closed, w);
	return w;
}

static int session_seen(void *ud, const struct kv_entry *e)
{
	(void)ud, (void)e;
	return 0;
}

/* An acquire refused: Consul answers 500 when the session does not exist
 * (as far as this agent's replica knows), false when the key is held. */
static bool invalid_session(struct wreq *w)
{
	if (w->session[0] == '\0' || w->a == NULL)
		return false;
	char key[128];
	int n = snprintf(key, sizeof(key), "%s%s", KV_SESSION_PREFIX, w->session);
	return kv_get(w->a->kv, key, (size_t)n, session_seen, NULL) != 1;
}

static void write_done(void *ud, enum kv_result r, int failed_op)
{
	struct wreq *w = ud;
	struct http_conn *c = w->c;
	bool invalid = c != NULL && r == KV_FAILED && invalid_session(w);
	char sess[KV_SESSION_MAX + 1];
	snprintf(sess, sizeof(sess), "%s", w->session);
	free(w);
	if (c == NULL)
		return;
	if (invalid) {
		char msg[160];
		snprintf(msg, sizeof(msg), "invalid session \"%s\"", sess);
		api_reply_text(c, 500, msg);
	} else if (r == KV_OK)
		http_respond(c, 200, "application/json", "true", 4);
	else if (r == KV_FAILED)
		http_respond(c, 200, "application/json", "false", 5);
	else if (r == KV_NO_LEADER)
		api_reply_text(c, 500, "No cluster leader");
	else if (r == KV_UNKNOWN)
		api_reply_text(c, 500,
		               "rpc error: the leader was lost: the write may or may not "
		               "have been applied");
	else
		api_reply_text(c, 500, "storage error: the write was not applied");
}

/* ?acquire / ?release: the lock verbs (servers only). 0, or an answer sent. */
static int lock_args(struct agent *a, struct http_conn *c, const struct http_request *req,
                     struct kv_op *op)
{
	const char *acq = http_query_get(req, "acquire"), *rel = http_query_get(req, "release");
	if (acq == NULL && rel == NULL)
		return 0;
	if ((acq != NULL) + (rel != NULL) + has(req, "cas") > 1) {
		api_reply_text(c, 400, "Conflicting flags: cas=&acquire=&release=");
		return -1;
	}
	if (api_session_need_servers(a, c))
		return -1;
	const char *sess = acq != NULL ? acq : rel;
	if (*sess == '\0' || strlen(sess) > KV_SESSION_MAX) {
		api_reply_text(c, 400, "Invalid session ID");
		return -1;
	}
	op->verb = acq != NULL ? KV_OP_LOCK : KV_OP_UNLOCK;
	op->session = sess;
	op->session_len = strlen(sess);
	return 0;
}

/*
 * ?acquire and ?release take and give back a session's lock (servers
 * only: without them they answer 501, never a silent plain write).
 */
static void h_put(struct agent *a, struct http_conn *c, const struct http_request *req,
                  const char *key, size_t key_len)
{
	const char *msg;
	int st = check_write_key(key, key_len, false, &msg);
	if (st) {
		api_reply_text(c, st, msg);
		return;
	}
	if (req->body_len > KV_VALUE_MAX) {
		char t[256];
		snprintf(t, sizeof(t),
		         "Request body(%zu bytes) too large, max size: %u bytes. See "
		         "https://www.consul.io/docs/agent/options.html#kv_max_value_size.",
		         req->body_len, KV_VALUE_MAX);
		api_reply_text(c, 413, t);
		return;
	}
	struct kv_op op = {KV_OP_SET, key, key_len, req->body, req->body_len, 0, 0, NULL, 0};
	const char *fs = http_query_get(req, "flags");
	if (fs != NULL && parse_u64(fs, &op.flags) < 0) {
		api_reply_text(c, 400, "Invalid flags");
		return;
	}
	const char *cs = http_query_get(req, "cas");
	if (cs != NULL) {
		if (parse_u64(cs, &op.index) < 0) {
			api_reply_text(c, 400, "Invalid cas index");
			return;
		}
		op.verb = KV_OP_CAS;
	}
	if (lock_args(a, c, req, &op) < 0)
		return;
	char err[256];
	struct wreq *w = wreq_new(c);
	w->a = a;
	if (op.verb == KV_OP_LOCK)
		snprintf(w->session, sizeof(w->session), "%.*s", (int)op.session_len, op.session);
	if (kv_write(a->kv, &op, 1, write_done, w, err, sizeof(err)) < 0) {
		free(w);
		http_conn_on_close(c, NULL, NULL);
		api_reply_text(c, 400, err);
	}
}

static void h_delete(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *key, size_t key_len)
{
	bool recurse = has(req, "recurse");
	const char *cs = http_query_get(req, "cas");
	if (recurse && cs != NULL) {
		api_reply_text(c, 400,
		               "Conflicting flags: cas="
		               "&recurse");
		return;
	}
	const char *msg;
	int st = check_write_key(key, key_len, recurse, &msg);
	if (st) {
		api_reply_text(c, st, msg);
		return;
	}
	struct kv_op op = {
	        recurse ? KV_OP_DELETE_TREE : KV_OP_DELETE, key, key_len, NULL, 0, 0, 0, NULL, 0};
	if (cs != NULL) {
		if (parse_u64(cs, &op.index) < 0) {
			api_reply_text(c, 400, "Invalid cas index");
			return;
		}
		op.verb = KV_OP_DELETE_CAS;
	}
	char err[256];
	struct wreq *w = wreq_new(c);
	if (kv_write(a->kv, &op, 1, write_done, w, err, sizeof(err)) < 0) {
		free(w);
		http_conn_on_close(c, NULL, NULL);
		api_reply_text(c, 400, err);
	}
}

/* With the store switched off (-server-port -1) the KV endpoints answer a
 * clear 500 instead of reaching for a store that does not exist. */
static bool kv_disabled(struct agent *a, struct http_conn *c)
{
	if (a->kv != NULL)
		return false;
	api_reply_text(c, 500, "KV store is disabled on this agent (started with -server-port -1)");
	return true;
}

void api_kv_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest)
{
	if (kv_disabled(a, c))
		return;
	size_t n = strlen(rest);
	if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
		h_get(a, c, req, rest, n);
	else if (strcmp(req->method, "PUT") == 0)
		h_put(a, c, req, rest, n);
	else if (strcmp(req->method, "DELETE") == 0)
		h_delete(a, c, req, rest, n);
	else
		api_reply_text(c, 405, "method not allowed");
}

/* ------------------------------------------------------------ txn */

struct txn_ctx {
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	json_t *doc;
	struct kv_op ops[KV_TXN_MAX_OPS];
	uint8_t *vals[KV_TXN_MAX_OPS];
	char verbs[KV_TXN_MAX_OPS][20];
	size_t wmap[KV_TXN_MAX_OPS]; /* engine op -> request op */
	size_t n;
};

static void txn_free(struct txn_ctx *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->vals[i]);
	json_decref(t->doc);
	free(t);
}

static int txn_result_entry(void *ud, const struct kv_entry *e)
{
	struct sbuf *b = ud;
	entry_json(b, e);
	return 0;
}

static int txn_tree_entry(void *ud, const struct kv_entry *e)
{
	struct sbuf *b = ud;
	if (reserved(e->key, e->key_len))
		return 0;
	if (b->len > 0 && b->p[b->len - 1] == '}')
		sb_str(b, ",");
	sb_str(b, "{\"KV\":");
	entry_json(b, e);
	sb_str(b, "}");
	return 0;
}

static void txn_closed(struct http_conn *c, void *ud)
{
	struct txn_ctx *t = ud;
	t->c = NULL;
}

/*
 * Answers a transaction as Consul does: on a failed check, a 409 naming the
 * request's op index (mapped back from the engine's list, which holds only the
 * writes); on success, the writes echo their entry without the value. Reads are
 * served from the store after the commit.
 */
static void txn_done(void *ud, enum kv_result r, int failed_op)
{
	struct txn_ctx *t = ud;
	struct sbuf b = {0};
	if (t->c == NULL) {
		txn_free(t);
		return;
	}
	http_conn_on_close(t->c, NULL, NULL);
	if (r == KV_FAILED && failed_op >= 0 && (size_t)failed_op < t->n)
		failed_op = (int)t->wmap[failed_op];
	if (r == KV_FAILED) {
		sb_str(&b, "{\"Results\":null,\"Errors\":[{\"OpIndex\":");
		sb_u64(&b, (uint64_t)failed_op);
		sb_str(&b, ",\"What\":");
		char what[600];
		const struct kv_op *op = &t->ops[failed_op];
		snprintf(what, sizeof(what), "failed to %s key \"%.*s\": check failed",
		         t->verbs[failed_op], (int)(op->key_len > 480 ? 480 : op->key_len),
		         op->key);
		sb_json_str(&b, what, strlen(what));
		sb_str(&b, "}]}");
		reply_buf(t->c, t->req, 409, &b);
	} else if (r == KV_NO_LEADER) {
		api_reply_text(t->c, 500, "No cluster leader");
	} else if (r == KV_UNKNOWN) {
		api_reply_text(t->c, 500,
		               "rpc error: the leader was lost: the transaction may "
		               "or may not have been applied");
	} else if (r != KV_OK) {
		api_reply_text(t->c, 500, "storage error: the transaction was not applied");
	} else {
		sb_str(&b, "{\"Results\":[");
		bool first = true;
		for (size_t i = 0; i < t->n; i++) {
			const char *v = t->verbs[i];
			const struct kv_op *op = &t->ops[i];
			if (strncmp(v, "delete", 6) == 0 || strncmp(v, "check", 5) == 0)
				continue;
			if (strcmp(v, "get-tree") == 0) {
				size_t before = b.len;
				if (!first)
					sb_str(&b, ",");
				size_t mark = b.len;
				kv_scan(t->a->kv, op->key, op->key_len, txn_tree_entry, &b);
				if (b.len == mark)
					b.len = before;
				else
					first = false;
				continue;
			}
			if (!first)
				sb_str(&b, ",");
			first = false;
			sb_str(&b, "{\"KV\":");
			size_t mark = b.len;
			kv_get(t->a->kv, op->key, op->key_len, txn_result_entry, &b);
			if (b.len == mark)
				sb_str(&b, "null");
			else if (strncmp(v, "get", 3) != 0) {
				/* writes answer without the value, as Consul does */
				char *vp = strstr(b.p + mark, "\"Value\":");
				if (vp != NULL) {
					char *ve = strchr(vp + 8, ',');
					if (ve != NULL) {
						size_t tail = b.len - (size_t)(ve - b.p);
						memmove(vp + 12, ve, tail + 1);
						memcpy(vp + 8, "null", 4);
						b.len = (size_t)(vp - b.p) + 12 + tail;
					}
				}
			}
			sb_str(&b, "}");
		}
		sb_str(&b, "],\"Errors\":null}");
		reply_buf(t->c, t->req, 200, &b);
	}
	free(b.p);
	txn_free(t);
}

/* Consul's txn KV verbs that write or check: false for any other. */
static bool txn_verb(const char *verb, enum kv_op_verb *out)
{
	static const struct {
		const char *name;
		enum kv_op_verb verb;
	} verbs[] = {
	        {"set", KV_OP_SET},
	        {"cas", KV_OP_CAS},
	        {"delete", KV_OP_DELETE},
	        {"delete-tree", KV_OP_DELETE_TREE},
	        {"delete-cas", KV_OP_DELETE_CAS},
	        {"check-index", KV_OP_CHECK_INDEX},
	        {"check-not-exists", KV_OP_CHECK_NOT_EXISTS},
	        {"lock", KV_OP_LOCK},
	        {"unlock", KV_OP_UNLOCK},
	        {"check-session", KV_OP_CHECK_SESSION},
	};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verb, verbs[i].name) == 0) {
			*out = verbs[i].verb;
			return true;
		}
	return false;
}

/*
 * Only writes and checks go to the engine, as one atomic batch; reads are kept
 * aside and answered in txn_done. Every op is validated before anything is
 * staged, so a bad op anywhere rejects the whole transaction with a 400.
 */
void api_kv_txn(struct agent *a, struct http_conn *c, const struct http_request *req,
                const char *rest)
{
	if (kv_disabled(a, c))
		return;
	json_error_t je;
	json_t *doc = json_loadb(req->body, req->body_len, 0, &je);
	if (doc == NULL || !json_is_array(doc)) {
		json_decref(doc);
		api_reply_text(c, 400, "Failed to parse body: expected a JSON array of operations");
		return;
	}
	size_t n = json_array_size(doc);
	if (n > KV_TXN_MAX_OPS) {
		char t[128];
		snprintf(t, sizeof(t), "Transaction contains too many operations (%zu > %d)", n,
		         KV_TXN_MAX_OPS);
		json_decref(doc);
		api_reply_text(c, 413, t);
		return;
	}
	struct txn_ctx *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		json_decref(doc);
		api_reply_text(c, 500, "out of memory");
		return;
	}
	t->a = a;
	t->c = c;
	t->req = req;
	t->doc = doc;
	size_t nw = 0; /* write/check ops go to the engine */
	struct kv_op wops[KV_TXN_MAX_OPS];
	char err[300];
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(doc, i);
		json_t *kvo = json_object_get(o, "KV");
		if (!json_is_object(kvo)) {
			snprintf(err, sizeof(err),
			         "operation %zu: only KV operations are supported", i);
			goto bad;
		}
		const char *verb = json_string_value(json_object_get(kvo, "Verb"));
		const char *key = json_string_value(json_object_get(kvo, "Key"));
		const char *val = json_string_value(json_object_get(kvo, "Value"));
		json_t *fl = json_object_get(kvo, "Flags"), *ix = json_object_get(kvo, "Index");
		if (verb == NULL || key == NULL) {
			snprintf(err, sizeof(err), "operation %zu: missing Verb or Key", i);
			goto bad;
		}
		struct kv_op *op = &t->ops[t->n];
		snprintf(t->verbs[t->n], sizeof(t->verbs[0]), "%s", verb);
		op->key = key;
		op->key_len = strlen(key);
		op->flags = json_is_integer(fl) ? (uint64_t)json_integer_value(fl) : 0;
		op->index = json_is_integer(ix) ? (uint64_t)json_integer_value(ix) : 0;
		if (val != NULL && *val) {
			size_t vl = strlen(val);
			uint8_t *bin = malloc(vl);
			size_t bl = 0;
			if (bin == NULL || sodium_base642bin(bin, vl, val, vl, NULL, &bl, NULL,
			                                     sodium_base64_VARIANT_ORIGINAL) != 0) {
				free(bin);
				snprintf(err, sizeof(err), "operation %zu: Value is not base64", i);
				goto bad;
			}
			t->vals[t->n] = bin;
			op->value = bin;
			op->value_len = bl;
		}
		t->n++;
		bool is_read = strcmp(verb, "get") == 0 || strcmp(verb, "get-tree") == 0;
		if (!txn_verb(verb, &op->verb) && !is_read) {
			snprintf(err, sizeof(err), "operation %zu: verb \"%.40s\" is not supported",
			         i, verb);
			goto bad;
		}
		if (op->verb >= KV_OP_LOCK && !is_read) {
			const char *sess = json_string_value(json_object_get(kvo, "Session"));
			if (sess == NULL || *sess == '\0' || strlen(sess) > KV_SESSION_MAX) {
				snprintf(err, sizeof(err), "operation %zu: %s needs a Session", i,
				         verb);
				goto bad;
			}
			if (!server_cp(a->server)) {
				txn_free(t);
				api_session_need_servers(a, c);
				return;
			}
			op->session = sess;
			op->session_len = strlen(sess);
		}
		const char *msg;
		int st = check_write_key(key, op->key_len, op->verb == KV_OP_DELETE_TREE || is_read,
		                         &msg);
		if (st && !(is_read && st == 403)) {
			snprintf(err, sizeof(err), "operation %zu: %s", i, msg);
			goto bad;
		}
		if (!is_read) {
			t->wmap[nw] = t->n - 1;
			wops[nw++] = *op;
		}
	}
	if (nw == 0) {
		txn_done(t, KV_OK, -1);
		return;
	}
	http_conn_on_close(c, txn_closed, t);
	if (kv_write(a->kv, wops, nw, txn_done, t, err, sizeof(err)) < 0) {
		http_conn_on_close(c, NULL, NULL);
		goto bad;
	}
	return;
bad:
	txn_free(t);
	api_reply_text(c, 400, err);
}
