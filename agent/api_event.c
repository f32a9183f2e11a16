/*
 * agent/api_event.c — see api_event.h.
 *
 * A query started over HTTP keeps its connection deferred: the serf layer
 * reports acks and responses by query id, a libev timer ends it at its
 * timeout, and a close callback forgets it if the client goes away first.
 *
 * User events and their IDs. Every agent must report the same ID for one
 * event, so the ID is never drawn locally:
 *  - an event whose serf name is "consul:event:<name>" is Consul's: its
 *    payload is Consul's msgpack envelope (ID, n, p, nf, sf, tf, v) and the
 *    ID, name and payload listed are the envelope's;
 *  - any other event (`rumor event`, `serf event`, PUT /v1/event/fire) is a
 *    plain serf event: its ID is a hash of what serf itself takes as the
 *    event's identity (name, lamport time, payload; serf drops a second event
 *    equal in all three), written as an RFC 9562 version-8 UUID;
 *  - other "consul:" events (new-leader, ...) are Consul's own and not listed.
 * Why /v1/event/fire does not send the envelope as Consul does: rumor's
 * wire partner is serf, not Consul; an envelope would reach serf's (and our
 * own) event handlers as "consul:event:<name>" with a msgpack payload, and
 * `rumor event` (which fires through this endpoint) would stop running
 * serf's handlers. The derived ID gives the same guarantee: one event, one ID.
 *
 * Blocking list: the index is Consul's uuidToUint64 of the last listed
 * event's ID (the XOR of the UUID's two 64-bit halves), cut to 53 bits so a
 * JavaScript client holds it exactly, 1 for an empty list. It is not
 * monotonic, so a parked request wakes when the index differs from the one
 * it holds, as Consul's does. Parked requests sit in a list; each recorded
 * event re-checks them, a timer ends each at its wait.
 */
#define _GNU_SOURCE
#include "agent/api_event.h"

#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/env.h"
#include "agent/api_reply.h"
#include "agent/http/http.h"
#include "lib/cursor.h"
#include "lib/log.h"
#include "lib/mp.h"
#include "gossip/keyring.h"
#include "gossip/serf.h"
#include "gossip/transport.h"

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS (10 * 60 * 1000)
#define CONSUL_PREFIX "consul:"
#define CONSUL_EVENT_PREFIX "consul:event:"

struct rec {
	char id[37];
	char *name;
	uint8_t *payload;
	size_t len;
	uint64_t ltime;
	char *filter[3]; /* node, service, tag: Consul's envelope, "" otherwise */
	int version;
};

/* A GET /v1/event/list?index= waiting for the index to move. */
struct waiter {
	struct api_event *st;
	struct http_conn *c;
	const struct http_request *req;
	uint64_t want;
	ev_timer timer;
	struct waiter *next;
};

enum pq_kind { PQ_USER, PQ_KEY_LIST, PQ_KEY_OP };

struct pq {
	struct api_event *st;
	uint32_t id;
	enum pq_kind kind;
	struct http_conn *c;
	const struct http_request *req;
	ev_timer timer;
	json_t *acks, *responses;
	/* key queries */
	json_t *keys;     /* key -> count */
	json_t *messages; /* node -> message */
	json_t *primary;  /* key -> count */
	int nresp, nerr;
	size_t expect;
	struct pq *next;
};

struct api_event {
	struct agent *a;
	struct rec recs[API_EVENT_KEEP];
	size_t nrec, head;
	struct pq *pending;
	struct waiter *waiters;
};

static struct api_event *state(struct agent *a)
{
	if (a->api_event == NULL) {
		a->api_event = calloc(1, sizeof(struct api_event));
		if (a->api_event == NULL)
			abort();
		a->api_event->a = a;
	}
	return a->api_event;
}

void api_event_derive_id(const char *name, uint64_t ltime, const uint8_t *payload, size_t len,
                         char out[37])
{
	/* length-prefixed fields so that ("ab", "c") and ("a", "bc") differ */
	crypto_generichash_state h;
	uint8_t num[8], r[16];
	crypto_generichash_init(&h, (const uint8_t *)"rumor-event-id", 14, sizeof(r));
	size_t nlen = strlen(name);
	be64_put(num, nlen);
	crypto_generichash_update(&h, num, sizeof(num));
	crypto_generichash_update(&h, (const uint8_t *)name, nlen);
	be64_put(num, ltime);
	crypto_generichash_update(&h, num, sizeof(num));
	be64_put(num, len);
	crypto_generichash_update(&h, num, sizeof(num));
	if (len > 0)
		crypto_generichash_update(&h, payload, len);
	crypto_generichash_final(&h, r, sizeof(r));
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x80); /* version 8: custom */
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80); /* RFC 9562 variant */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
	         r[13], r[14], r[15]);
}

/* Consul's uuidToUint64: the first 16 hex digits XOR the last 16 (dashes
 * skipped), here cut to 53 bits; anything that is not 32 hex digits is 1. */
uint64_t api_event_id_index(const char *id)
{
	uint64_t half[2] = {0, 0};
	int n = 0;
	for (const char *p = id; *p != '\0'; p++) {
		int v;
		if (*p == '-')
			continue;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return 1;
		if (n >= 32)
			return 1;
		half[n / 16] = half[n / 16] << 4 | (uint64_t)v;
		n++;
	}
	if (n != 32)
		return 1;
	uint64_t x = (half[0] ^ half[1]) & API_EVENT_INDEX_MASK;
	return x != 0 ? x : 1;
}

/* One string field of the envelope; Go writes strings and []byte as raw. */
static int env_str(struct cursor *c, const char *field, const uint8_t **p, size_t *len)
{
	if (mp_read_raw(c, p, len) != MP_OK) {
		mp_fail("consul event: %s: not a string", field);
		return MP_BAD;
	}
	return MP_OK;
}

int api_event_decode_envelope(const uint8_t *buf, size_t len, struct api_event_envelope *e)
{
	struct cursor c = {buf, buf + len};
	uint32_t n;
	memset(e, 0, sizeof(*e));
	if (mp_read_map(&c, &n) != MP_OK) {
		mp_fail("consul event: not a map");
		return MP_BAD;
	}
	for (uint32_t i = 0; i < n; i++) {
		char key[8];
		const uint8_t *p;
		size_t plen;
		if (mp_read_key(&c, key, sizeof(key)) != MP_OK) {
			mp_fail("consul event: bad key");
			return MP_BAD;
		}
		if (strcmp(key, "ID") == 0) {
			if (env_str(&c, "ID", &p, &plen) != MP_OK)
				return MP_BAD;
			if (plen != 36) {
				mp_fail("consul event: ID: %zu bytes, want a 36-byte UUID", plen);
				return MP_BAD;
			}
			memcpy(e->id, p, 36);
			e->id[36] = '\0';
		} else if (strcmp(key, "n") == 0) {
			if (env_str(&c, "n", &e->name, &e->name_len) != MP_OK)
				return MP_BAD;
		} else if (strcmp(key, "p") == 0) {
			if (env_str(&c, "p", &e->payload, &e->payload_len) != MP_OK)
				return MP_BAD;
		} else if (strcmp(key, "nf") == 0 || strcmp(key, "sf") == 0 ||
		           strcmp(key, "tf") == 0) {
			int k = key[0] == 'n' ? 0 : key[0] == 's' ? 1 : 2;
			if (env_str(&c, key, &e->filter[k], &e->filter_len[k]) != MP_OK)
				return MP_BAD;
		} else if (strcmp(key, "v") == 0) {
			uint64_t v;
			if (mp_read_uint(&c, &v) != MP_OK || v > 255) {
				mp_fail("consul event: v: not a small integer");
				return MP_BAD;
			}
			e->version = (int)v;
		} else if (mp_skip(&c) != MP_OK) {
			mp_fail("consul event: %s: malformed value", key);
			return MP_BAD;
		}
	}
	if (e->id[0] == '\0' || e->name_len == 0) {
		mp_fail("consul event: no %s", e->id[0] == '\0' ? "ID" : "name");
		return MP_BAD;
	}
	if (memchr(e->name, '\0', e->name_len) != NULL) {
		mp_fail("consul event: n: holds a NUL byte");
		return MP_BAD;
	}
	return MP_OK;
}

static json_t *b64_json(const uint8_t *p, size_t len)
{
	if (len == 0)
		return json_null();
	size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(cap);
	if (s == NULL)
		abort();
	sodium_bin2base64(s, cap, p, len, sodium_base64_VARIANT_ORIGINAL);
	json_t *j = json_string(s);
	free(s);
	return j;
}

static json_t *event_json(const char *id, const char *name, const uint8_t *p, size_t len,
                          uint64_t ltime)
{
	json_t *o = json_object();
	json_object_set_new(o, "ID", json_string(id));
	json_object_set_new(o, "Name", json_string(name));
	json_object_set_new(o, "Payload", b64_json(p, len));
	json_object_set_new(o, "NodeFilter", json_string(""));
	json_object_set_new(o, "ServiceFilter", json_string(""));
	json_object_set_new(o, "TagFilter", json_string(""));
	json_object_set_new(o, "Version", json_integer(1));
	json_object_set_new(o, "LTime", json_integer((json_int_t)ltime));
	return o;
}

static char *xstrndup_or_empty(const uint8_t *p, size_t n)
{
	char *s = strndup(p != NULL ? (const char *)p : "", p != NULL ? n : 0);
	if (s == NULL)
		abort();
	return s;
}

static void rec_clear(struct rec *r)
{
	free(r->name);
	free(r->payload);
	for (int k = 0; k < 3; k++)
		free(r->filter[k]);
	memset(r, 0, sizeof(*r));
}

/* The next slot of the ring, the oldest event dropped when it is full. */
static struct rec *rec_slot(struct api_event *st)
{
	struct rec *r;
	if (st->nrec < API_EVENT_KEEP) {
		r = &st->recs[(st->head + st->nrec++) % API_EVENT_KEEP];
	} else {
		r = &st->recs[st->head];
		st->head = (st->head + 1) % API_EVENT_KEEP;
		rec_clear(r);
	}
	return r;
}

static void rec_fill(struct rec *r, const char *id, char *name, const uint8_t *payload, size_t len,
                     uint64_t ltime)
{
	memcpy(r->id, id, sizeof(r->id));
	r->name = name;
	r->payload = malloc(len ? len : 1);
	if (r->payload == NULL)
		abort();
	if (len)
		memcpy(r->payload, payload, len);
	r->len = len;
	r->ltime = ltime;
	r->version = 1;
	for (int k = 0; k < 3; k++)
		if (r->filter[k] == NULL)
			r->filter[k] = xstrndup_or_empty(NULL, 0);
}

static void waiters_check(struct api_event *st);
static void waiter_unlink(struct waiter *w);

void api_event_record(struct agent *a, uint64_t ltime, const char *name, const uint8_t *payload,
                      size_t len)
{
	struct api_event *st = state(a);
	if (strncmp(name, CONSUL_EVENT_PREFIX, strlen(CONSUL_EVENT_PREFIX)) == 0) {
		struct api_event_envelope e;
		if (api_event_decode_envelope(payload, len, &e) != MP_OK) {
			log_err("agent: Failed to decode event: %s", mp_error());
			return;
		}
		struct rec *r = rec_slot(st);
		for (int k = 0; k < 3; k++)
			r->filter[k] = xstrndup_or_empty(e.filter[k], e.filter_len[k]);
		rec_fill(r, e.id, xstrndup_or_empty(e.name, e.name_len), e.payload, e.payload_len,
		         ltime);
		r->version = e.version;
	} else if (strncmp(name, CONSUL_PREFIX, strlen(CONSUL_PREFIX)) == 0) {
		return; /* Consul's own (consul:new-leader, ...): never listed */
	} else {
		char id[37];
		api_event_derive_id(name, ltime, payload, len, id);
		rec_fill(rec_slot(st), id, xstrndup_or_empty((const uint8_t *)name, strlen(name)),
		         payload, len, ltime);
	}
	waiters_check(st);
}

static void pq_free(struct pq *q)
{
	struct api_event *st = q->st;
	for (struct pq **pp = &st->pending; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	ev_timer_stop(st->a->loop, &q->timer);
	if (st->a->serf != NULL)
		serf_query_close(st->a->serf, q->id);
	json_decref(q->acks);
	json_decref(q->responses);
	json_decref(q->keys);
	json_decref(q->messages);
	json_decref(q->primary);
	free(q);
}

void api_event_free(struct agent *a)
{
	struct api_event *st = a->api_event;
	if (st == NULL)
		return;
	while (st->pending != NULL) {
		struct pq *q = st->pending;
		if (q->c != NULL)
			http_conn_on_close(q->c, NULL, NULL);
		pq_free(q);
	}
	while (st->waiters != NULL) {
		struct waiter *w = st->waiters;
		http_conn_on_close(w->c, NULL, NULL);
		waiter_unlink(w);
		free(w);
	}
	for (size_t i = 0; i < st->nrec; i++)
		rec_clear(&st->recs[(st->head + i) % API_EVENT_KEEP]);
	free(st);
	a->api_event = NULL;
}

/* --------------------------------------------------------------- fire */

void api_event_fire(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest)
{
	if (rest[0] == '\0') {
		api_reply_text(c, 400, "Missing name");
		return;
	}
	if (strncmp(rest, CONSUL_PREFIX, strlen(CONSUL_PREFIX)) == 0) {
		api_reply_text(c, 400, "Event names starting with 'consul:' are reserved");
		return;
	}
	const char *co = http_query_get(req, "coalesce");
	bool coalesce = co == NULL || strcmp(co, "false") != 0;
	char err[256];
	uint64_t ltime = serf_event_clock(a->serf);
	if (serf_user_event(a->serf, rest, (const uint8_t *)req->body, req->body_len, coalesce, err,
	                    sizeof(err)) < 0) {
		api_reply_text(c, 400, err);
		return;
	}
	gossip_transport_kick(a->gossip);
	/* the same ID every agent derives when the event reaches it */
	char id[37];
	api_event_derive_id(rest, ltime, (const uint8_t *)req->body, req->body_len, id);
	api_reply_json(c, req, 200,
	               event_json(id, rest, (const uint8_t *)req->body, req->body_len, ltime));
}

/* --------------------------------------------------------------- list */

/* The index of the list a request with this name filter sees. */
static uint64_t list_index(const struct api_event *st, const char *name)
{
	for (size_t i = st->nrec; i-- > 0;) {
		const struct rec *r = &st->recs[(st->head + i) % API_EVENT_KEEP];
		if (name == NULL || name[0] == '\0' || strcmp(name, r->name) == 0)
			return api_event_id_index(r->id);
	}
	return 1;
}

static void list_answer(struct api_event *st, struct http_conn *c, const struct http_request *req)
{
	const char *name = http_query_get(req, "name");
	json_t *arr = json_array();
	for (size_t i = 0; i < st->nrec; i++) {
		const struct rec *r = &st->recs[(st->head + i) % API_EVENT_KEEP];
		if (name != NULL && name[0] != '\0' && strcmp(name, r->name) != 0)
			continue;
		json_t *o = event_json(r->id, r->name, r->payload, r->len, r->ltime);
		json_object_set_new(o, "NodeFilter", json_string(r->filter[0]));
		json_object_set_new(o, "ServiceFilter", json_string(r->filter[1]));
		json_object_set_new(o, "TagFilter", json_string(r->filter[2]));
		json_object_set_new(o, "Version", json_integer(r->version));
		json_array_append_new(arr, o);
	}
	char idx[32];
	snprintf(idx, sizeof(idx), "%" PRIu64, list_index(st, name));
	http_add_header(c, "X-Consul-Index", idx);
	http_add_header(c, "X-Consul-KnownLeader", "true");
	http_add_header(c, "X-Consul-LastContact", "0");
	api_reply_json(c, req, 200, arr);
}

static void waiter_unlink(struct waiter *w)
{
	for (struct waiter **pp = &w->st->waiters; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	ev_timer_stop(w->st->a->loop, &w->timer);
}

static void waiter_answer(struct waiter *w)
{
	waiter_unlink(w);
	http_conn_on_close(w->c, NULL, NULL);
	list_answer(w->st, w->c, w->req);
	free(w);
}

static void waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	waiter_answer(t->data);
}

static void waiter_closed(struct http_conn *c, void *ud)
{
	(void)c;
	struct waiter *w = ud;
	waiter_unlink(w);
	free(w);
}

/* After an event was recorded: answer every request whose index moved. */
static void waiters_check(struct api_event *st)
{
	struct waiter *w = st->waiters;
	while (w != NULL) {
		struct waiter *next = w->next;
		if (list_index(st, http_query_get(w->req, "name")) != w->want)
			waiter_answer(w);
		w = next;
	}
}

/* Parks the request when its index is the current one; false: answer now. */
static bool list_park(struct api_event *st, struct http_conn *c, const struct http_request *req,
                      uint64_t want, int64_t wait_ms)
{
	if (want == 0 || list_index(st, http_query_get(req, "name")) != want)
		return false;
	if (wait_ms <= 0)
		wait_ms = WAIT_DEFAULT_MS;
	if (wait_ms > WAIT_MAX_MS)
		wait_ms = WAIT_MAX_MS;
	if (wait_ms >= 16)
		wait_ms += (int64_t)randombytes_uniform((uint32_t)(wait_ms / 16));
	struct waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	w->st = st;
	w->c = c;
	w->req = req;
	w->want = want;
	ev_timer_init(&w->timer, waiter_timeout, (double)wait_ms / 1000.0, 0.);
	w->timer.data = w;
	ev_timer_start(st->a->loop, &w->timer);
	w->next = st->waiters;
	st->waiters = w;
	http_conn_on_close(c, waiter_closed, w);
	return true;
}

void api_event_list(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest)
{
	(void)rest;
	struct api_event *st = state(a);
	uint64_t want = 0;
	int64_t wait_ms = 0;
	const char *is = http_query_get(req, "index");
	if (is != NULL && is[0] != '\0') {
		char *end;
		want = strtoull(is, &end, 10);
		if (*end != '\0' || is[0] == '-') {
			api_reply_text(c, 400, "Invalid index");
			return;
		}
	}
	const char *ws = http_query_get(req, "wait");
	if (ws != NULL && ws[0] != '\0' &&
	    (rumor_parse_duration(ws, &wait_ms) < 0 || wait_ms < 0)) {
		api_reply_text(c, 400, "Invalid wait time");
		return;
	}
	if (!list_park(st, c, req, want, wait_ms))
		list_answer(st, c, req);
}

/* ------------------------------------------------------------- queries */

static void pq_answer(struct pq *q)
{
	json_t *o = json_object();
	if (q->kind == PQ_USER) {
		json_object_set(o, "Acks", q->acks);
		json_object_set(o, "Responses", q->responses);
	} else {
		json_object_set_new(o, "WAN", json_false());
		json_object_set_new(o, "Datacenter", json_string(q->st->a->cfg.datacenter));
		json_object_set_new(o, "Segment", json_string(""));
		json_object_set(o, "Keys", q->keys);
		json_object_set(o, "PrimaryKeys", q->primary);
		json_object_set(o, "Messages", q->messages);
		json_object_set_new(o, "NumNodes", json_integer((json_int_t)q->expect));
		json_object_set_new(o, "NumResp", json_integer(q->nresp));
		json_object_set_new(o, "NumErr", json_integer(q->nerr));
	}
	struct http_conn *c = q->c;
	const struct http_request *req = q->req;
	q->c = NULL;
	if (c != NULL) {
		http_conn_on_close(c, NULL, NULL);
		int status = 200;
		if (q->kind != PQ_USER && (q->nerr > 0 || (size_t)q->nresp < q->expect))
			status = 500;
		if (q->kind == PQ_USER) {
			api_reply_json(c, req, status, o);
		} else {
			json_t *arr = json_array();
			json_array_append_new(arr, o);
			api_reply_json(c, req, status, arr);
		}
	} else {
		json_decref(o);
	}
	pq_free(q);
}

static void pq_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	pq_answer(w->data);
}

static void pq_closed(struct http_conn *c, void *ud)
{
	(void)c;
	struct pq *q = ud;
	q->c = NULL;
	pq_free(q);
}

void api_event_query_response(struct agent *a, uint32_t id, const char *from, bool ack,
                              const uint8_t *payload, size_t len)
{
	struct api_event *st = state(a);
	struct pq *q = st->pending;
	while (q != NULL && q->id != id)
		q = q->next;
	if (q == NULL)
		return;
	if (ack) {
		json_array_append_new(q->acks, json_string(from));
		return;
	}
	if (q->kind == PQ_USER) {
		json_object_set_new(q->responses, from,
		                    json_stringn_nocheck((const char *)payload, len));
		return;
	}
	struct serf_key_response kr;
	q->nresp++;
	if (serf_decode_key_response(payload, len, &kr) != ML_OK) {
		q->nerr++;
		json_object_set_new(q->messages, from, json_string("malformed key response"));
	} else {
		if (!kr.result)
			q->nerr++;
		if (kr.message[0] != '\0')
			json_object_set_new(q->messages, from, json_string(kr.message));
		for (int i = 0; i < kr.nkeys; i++) {
			json_t *n = json_object_get(q->keys, kr.keys[i]);
			json_object_set_new(q->keys, kr.keys[i],
			                    json_integer(n ? json_integer_value(n) + 1 : 1));
		}
		if (kr.primary[0] != '\0') {
			json_t *n = json_object_get(q->primary, kr.primary);
			json_object_set_new(q->primary, kr.primary,
			                    json_integer(n ? json_integer_value(n) + 1 : 1));
		}
	}
	if ((size_t)q->nresp >= q->expect)
		pq_answer(q);
}

static struct pq *pq_start(struct agent *a, struct http_conn *c, const struct http_request *req,
                           enum pq_kind kind, struct serf_query_params *p, char *err, size_t errlen)
{
	struct swim *s = gossip_transport_swim(a->gossip);
	p->self_addr = swim_self(s)->id->addr;
	if (p->timeout_ms <= 0)
		p->timeout_ms = serf_default_query_timeout_ms(swim_timing(s)->gossip_interval_ms,
		                                              swim_member_count(s));
	struct pq *q = calloc(1, sizeof(*q));
	if (q == NULL)
		abort();
	struct api_event *st = state(a);
	q->st = st;
	q->kind = kind;
	q->c = c;
	q->req = req;
	q->acks = json_array();
	q->responses = json_object();
	q->keys = json_object();
	q->messages = json_object();
	q->primary = json_object();
	q->expect = swim_num_alive(s) + 1; /* the others and ourselves */
	/* register before starting: our own answer arrives synchronously */
	q->next = st->pending;
	st->pending = q;
	ev_timer_init(&q->timer, pq_timeout, (double)p->timeout_ms / 1000.0, 0.);
	q->timer.data = q;
	http_conn_on_close(c, pq_closed, q);
	uint32_t id;
	/* the id is needed before the local delivery: serf_query() reports it
	 * after; local responses go through UDP to ourselves, so they come
	 * back later through the loop */
	if (serf_query(a->serf, gossip_now_ms(), p, &id, err, errlen) < 0) {
		http_conn_on_close(c, NULL, NULL);
		q->c = NULL;
		pq_free(q);
		return NULL;
	}
	q->id = id;
	ev_timer_start(a->loop, &q->timer);
	gossip_transport_kick(a->gossip);
	return q;
}

void api_event_query(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest)
{
	if (rest[0] == '\0') {
		api_reply_text(c, 400, "Missing name");
		return;
	}
	struct serf_query_params p;
	memset(&p, 0, sizeof(p));
	p.name = rest;
	p.payload = (const uint8_t *)req->body;
	p.payload_len = req->body_len;
	const char *t = http_query_get(req, "timeout");
	if (t != NULL && t[0] != '\0' &&
	    (rumor_parse_duration(t, &p.timeout_ms) < 0 || p.timeout_ms < 0)) {
		api_reply_text(c, 400, "Invalid timeout");
		return;
	}
	p.request_ack = http_query_get(req, "ack") != NULL;
	const char *nodes[64];
	char tagbuf[SERF_FILTERS_MAX][600];
	for (size_t i = 0; i < req->nparams; i++) {
		const char *k = req->params[i].name, *v = req->params[i].value;
		if (strcmp(k, "node") == 0 && p.n_filter_nodes < 64) {
			nodes[p.n_filter_nodes++] = v;
		} else if (strcmp(k, "tag") == 0 && p.n_filter_tags < SERF_FILTERS_MAX - 1) {
			snprintf(tagbuf[p.n_filter_tags], sizeof(tagbuf[0]), "%s", v);
			char *eq = strchr(tagbuf[p.n_filter_tags], '=');
			if (eq == NULL) {
				api_reply_text(c, 400, "tag filter must be key=regexp");
				return;
			}
			*eq = '\0';
			p.filter_tag_key[p.n_filter_tags] = tagbuf[p.n_filter_tags];
			p.filter_tag_expr[p.n_filter_tags] = eq + 1;
			p.n_filter_tags++;
		}
	}
	p.filter_nodes = nodes;
	char err[256];
	if (pq_start(a, c, req, PQ_USER, &p, err, sizeof(err)) == NULL)
		api_reply_text(c, 400, err);
}

/* ----------------------------------------------------------------- tags */

void api_event_tags(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest)
{
	(void)rest;
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, 0, &je);
	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		api_reply_text(c, 400, "body must be {\"Set\": {...}, \"Delete\": [...]}");
		return;
	}
	json_t *set = json_object_get(body, "Set"), *del = json_object_get(body, "Delete");
	size_t cap = a->cfg.node_meta_n + (json_is_object(set) ? json_object_size(set) : 0) + 1;
	const char **keys = calloc(cap, sizeof(*keys)), **vals = calloc(cap, sizeof(*vals));
	if (keys == NULL || vals == NULL)
		abort();
	size_t n = 0;
	for (size_t i = 0; i < a->cfg.node_meta_n; i++) {
		const char *k = a->cfg.node_meta[i].key;
		bool gone = json_is_object(set) && json_object_get(set, k) != NULL;
		if (json_is_array(del)) {
			size_t j;
			json_t *v;
			json_array_foreach(del, j, v) if (json_is_string(v) &&
			                                  strcmp(json_string_value(v), k) == 0)
			        gone = true;
		}
		if (!gone) {
			keys[n] = k;
			vals[n++] = a->cfg.node_meta[i].value;
		}
	}
	const char *k;
	json_t *v;
	bool badval = false;
	if (json_is_object(set))
		json_object_foreach(set, k, v)
		{
			if (!json_is_string(v)) {
				badval = true;
				break;
			}
			keys[n] = k;
			vals[n++] = json_string_value(v);
		}
	char err[256];
	int rc = badval ? -1 : agent_set_tags(a, keys, vals, n, err, sizeof(err));
	free(keys);
	free(vals);
	json_decref(body);
	if (rc < 0) {
		api_reply_text(c, 400, badval ? "tag values must be strings" : err);
		return;
	}
	json_t *out = json_object();
	for (size_t i = 0; i < a->cfg.node_meta_n; i++)
		json_object_set_new(out, a->cfg.node_meta[i].key,
		                    json_string(a->cfg.node_meta[i].value));
	api_reply_json(c, req, 200, out);
}

/* -------------------------------------------------------------- keyring */

void api_event_keyring(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest)
{
	(void)rest;
	struct serf_query_params p;
	memset(&p, 0, sizeof(p));
	uint8_t payload[128];
	enum pq_kind kind = PQ_KEY_OP;
	if (strcmp(req->method, "GET") == 0) {
		p.name = "_serf_list-keys";
		kind = PQ_KEY_LIST;
	} else {
		json_error_t je;
		json_t *body = json_loadb(req->body, req->body_len, 0, &je);
		const char *b64 = body ? json_string_value(json_object_get(body, "Key")) : NULL;
		uint8_t key[KEYRING_KEY_LEN];
		char err[256];
		if (b64 == NULL) {
			json_decref(body);
			api_reply_text(c, 400, "body must be {\"Key\": \"<base64>\"}");
			return;
		}
		if (keyring_parse_key(b64, key, err, sizeof(err)) < 0) {
			json_decref(body);
			api_reply_text(c, 400, err);
			return;
		}
		json_decref(body);
		int n = serf_encode_key_request(payload, sizeof(payload), key, sizeof(key));
		sodium_memzero(key, sizeof(key));
		if (n < 0) {
			api_reply_text(c, 500, "cannot encode key request");
			return;
		}
		p.payload = payload;
		p.payload_len = (size_t)n;
		p.name = strcmp(req->method, "POST") == 0  ? "_serf_install-key"
		         : strcmp(req->method, "PUT") == 0 ? "_serf_use-key"
		                                           : "_serf_remove-key";
	}
	char err[256];
	struct pq *q = pq_start(a, c, req, kind, &p, err, sizeof(err));
	sodium_memzero(payload, sizeof(payload));
	if (q == NULL)
		api_reply_text(c, 400, err);
}

/* -------------------------------------------- serf's internal queries */

static void key_respond(struct agent *a, const struct serf_query_in *q,
                        const struct serf_key_response *r)
{
	uint8_t buf[SERF_QUERY_RESPONSE_SIZE_LIMIT];
	int n = serf_encode_key_response(buf, sizeof(buf), r);
	char err[128];
	if (n < 0 || serf_query_respond(a->serf, q, buf, (size_t)n, err, sizeof(err)) < 0)
		log_err("serf: Failed to respond to key query");
}

void api_event_internal_query(struct agent *a, const struct serf_query_in *q)
{
	const char *name = q->name + 6;
	struct serf_key_response r;
	memset(&r, 0, sizeof(r));
	if (strcmp(name, "ping") == 0 || strcmp(name, "conflict") == 0)
		return; /* ping: the ack is the answer; conflict: we never claim a name */
	bool list = strcmp(name, "list-keys") == 0;
	bool install = strcmp(name, "install-key") == 0;
	bool use = strcmp(name, "use-key") == 0;
	bool remove = strcmp(name, "remove-key") == 0;
	if (!list && !install && !use && !remove) {
		log_warn("serf: Unhandled internal query '%s'", name);
		return;
	}
	log_info("serf: Received %s query", name);
	if (a->keyring == NULL) {
		snprintf(r.message, sizeof(r.message), "%s",
		         list ? "Keyring is empty (encryption not enabled)"
		              : "No keyring to modify (encryption not enabled)");
		key_respond(a, q, &r);
		return;
	}
	if (list) {
		for (size_t i = 0; i < keyring_count(a->keyring) && i < 16; i++)
			keyring_format_key(keyring_key(a->keyring, i), r.keys[r.nkeys++],
			                   sizeof(r.keys[0]));
		keyring_format_key(keyring_key(a->keyring, 0), r.primary, sizeof(r.primary));
		r.result = true;
		key_respond(a, q, &r);
		return;
	}
	const uint8_t *key;
	size_t klen;
	if (serf_decode_key_request(q->payload, q->payload_len, &key, &klen) != ML_OK) {
		snprintf(r.message, sizeof(r.message), "malformed key request");
		key_respond(a, q, &r);
		return;
	}
	if (klen != KEYRING_KEY_LEN) {
		snprintf(r.message, sizeof(r.message),
		         "%zu-byte keys are not supported by rumor (libsodium AES-256-GCM needs "
		         "32 bytes)",
		         klen);
		key_respond(a, q, &r);
		return;
	}
	int rc = install ? keyring_add(a->keyring, key, r.message, sizeof(r.message))
	         : use   ? keyring_use(a->keyring, key, r.message, sizeof(r.message))
	                 : keyring_remove(a->keyring, key, r.message, sizeof(r.message));
	if (rc == 0) {
		char path[4200];
		agent_keyring_path(a, path, sizeof(path));
		if (keyring_save(a->keyring, path, r.message, sizeof(r.message)) == 0)
			r.result = true;
	}
	key_respond(a, q, &r);
}
