/*
 * agent/sessions.c — see sessions.h.
 */
#include "agent/sessions.h"

#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/catalog.h"
#include "agent/config.h"
#include "agent/env.h"
#include "kv/kv.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define SWEEP_EVERY_MS 1000
/* The lock-delay table holds at most this many keys; past it the oldest
 * entries go first (a key then loses its delay early, never gains one). */
#define LOCK_DELAYS_MAX 65536
#define TIMERS_MAX 65536
#define ENDING_MAX 256

/* ------------------------------------------------------------- model */

static int parse_lock_delay(json_t *v, int64_t *ms, char *err, size_t errlen)
{
	if (json_is_string(v)) {
		if (rumor_parse_duration(json_string_value(v), ms) < 0) {
			snprintf(err, errlen, "Request decode failed: invalid LockDelay \"%.40s\"",
			         json_string_value(v));
			return -1;
		}
	} else if (json_is_number(v)) {
		/* Consul: a bare number under 1000 is seconds, else nanoseconds */
		double d = json_number_value(v);
		if (d < 0 || d > 1e15) {
			snprintf(err, errlen, "Request decode failed: invalid LockDelay");
			return -1;
		}
		*ms = d < 1000 ? (int64_t)(d * 1000) : (int64_t)(d / 1e6);
	} else {
		snprintf(err, errlen, "Request decode failed: LockDelay must be a duration");
		return -1;
	}
	if (*ms > SESSION_LOCK_DELAY_MAX_MS) {
		snprintf(err, errlen, "Lock delay must be at most 60s");
		return -1;
	}
	return 0;
}

static int parse_ttl(json_t *v, struct session *s, char *err, size_t errlen)
{
	const char *t = json_string_value(v);
	if (t == NULL) {
		snprintf(err, errlen,
		         "Request decode failed: TTL must be a string such as \"30s\"");
		return -1;
	}
	int64_t ms = 0;
	if (*t != '\0' && rumor_parse_duration(t, &ms) < 0) {
		snprintf(err, errlen, "Request decode failed: invalid TTL \"%.40s\"", t);
		return -1;
	}
	if (ms != 0 && (ms < SESSION_TTL_MIN_MS || ms > SESSION_TTL_MAX_MS)) {
		snprintf(err, errlen,
		         "Invalid Session TTL '%" PRId64 "', must be between [10s=24h0m0s]",
		         ms * 1000000);
		return -2;
	}
	s->ttl_ms = ms;
	return 0;
}

static int parse_strings(json_t *v, char (*out)[128], size_t *n, const char *what, char *err,
                         size_t errlen)
{
	if (json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > SESSION_CHECKS_MAX) {
		snprintf(err, errlen, "Request decode failed: %s must be a list of at most %d",
		         what, SESSION_CHECKS_MAX);
		return -1;
	}
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		const char *id = json_string_value(e);
		if (id == NULL && json_is_object(e)) { /* ServiceChecks: {"ID": ...} */
			const char *k;
			json_t *x;
			json_object_foreach(e, k, x) if (strcasecmp(k, "ID") == 0) id =
			        json_string_value(x);
		}
		if (id == NULL || *id == '\0' || strlen(id) >= 128) {
			snprintf(err, errlen, "Request decode failed: bad check ID in %s", what);
			return -1;
		}
		snprintf(out[*n], 128, "%s", id);
		(*n)++;
	}
	return 0;
}

static int parse_field(const char *k, json_t *v, struct session *s, bool *checks_given, char *err,
                       size_t errlen)
{
	if (strcasecmp(k, "Name") == 0 || strcasecmp(k, "Node") == 0) {
		const char *t = json_string_value(v);
		bool name = strcasecmp(k, "Name") == 0;
		size_t cap = name ? sizeof(s->name) : sizeof(s->node);
		if (json_is_null(v))
			return 0;
		if (t == NULL || strlen(t) >= cap) {
			snprintf(err, errlen,
			         "Request decode failed: %s must be a string under %zu bytes",
			         name ? "Name" : "Node", cap);
			return -1;
		}
		if (name || *t)
			snprintf(name ? s->name : s->node, cap, "%s", t);
		return 0;
	}
	if (strcasecmp(k, "LockDelay") == 0)
		return parse_lock_delay(v, &s->lock_delay_ms, err, errlen);
	if (strcasecmp(k, "TTL") == 0)
		return parse_ttl(v, s, err, errlen);
	if (strcasecmp(k, "Behavior") == 0) {
		const char *b = json_string_value(v);
		if (b == NULL || (*b && strcmp(b, "release") && strcmp(b, "delete"))) {
			snprintf(err, errlen, "Invalid Behavior setting '%.40s'", b ? b : "?");
			return b == NULL ? -1 : -2;
		}
		s->behavior = b && strcmp(b, "delete") == 0 ? SESSION_DELETE : SESSION_RELEASE;
		return 0;
	}
	if (strcasecmp(k, "Checks") == 0 || strcasecmp(k, "NodeChecks") == 0) {
		*checks_given = *checks_given || !json_is_null(v);
		return parse_strings(v, s->node_checks, &s->n_node_checks, k, err, errlen);
	}
	if (strcasecmp(k, "ServiceChecks") == 0) {
		*checks_given = *checks_given || !json_is_null(v);
		return parse_strings(v, s->service_checks, &s->n_service_checks, k, err, errlen);
	}
	return 0; /* Namespace, ID and the rest: ignored, as Consul's decoder */
}

int session_parse_create(const char *body, size_t len, const char *self_node, struct session *s,
                         char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->node, sizeof(s->node), "%s", self_node);
	s->lock_delay_ms = SESSION_LOCK_DELAY_DEFAULT_MS;
	bool checks_given = false;
	if (len > 0) {
		json_error_t je;
		json_t *doc = json_loadb(body, len, 0, &je);
		if (doc == NULL || !json_is_object(doc)) {
			json_decref(doc);
			snprintf(err, errlen, "Request decode failed: %s",
			         doc == NULL ? je.text : "expected a JSON object");
			return -1;
		}
		const char *k;
		json_t *v;
		json_object_foreach(doc, k, v)
		{
			int rc = parse_field(k, v, s, &checks_given, err, errlen);
			if (rc < 0) {
				json_decref(doc);
				return rc;
			}
		}
		json_decref(doc);
	}
	if (!checks_given) {
		snprintf(s->node_checks[0], 128, "serfHealth");
		s->n_node_checks = 1;
	}
	return 0;
}

void session_new_id(struct session *s)
{
	uint8_t r[16];
	randombytes_buf(r, sizeof(r));
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	snprintf(s->id, sizeof(s->id),
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
	         r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
	         r[15]);
}

static json_t *string_list(const char (*v)[128], size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

char *session_encode(const struct session *s)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:s}", "ID", s->id, "Name",
	                      s->name, "Node", s->node, "NodeChecks",
	                      string_list(s->node_checks, s->n_node_checks), "ServiceChecks",
	                      string_list(s->service_checks, s->n_service_checks), "LockDelayMs",
	                      (json_int_t)s->lock_delay_ms, "TTLMs", (json_int_t)s->ttl_ms,
	                      "Behavior", s->behavior == SESSION_DELETE ? "delete" : "release");
	char *out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (out == NULL)
		abort();
	return out;
}

static void copy_str(json_t *o, const char *k, char *dst, size_t cap)
{
	const char *v = json_string_value(json_object_get(o, k));
	snprintf(dst, cap, "%s", v ? v : "");
}

int session_decode(const uint8_t *p, size_t len, struct session *s)
{
	memset(s, 0, sizeof(*s));
	json_t *o = json_loadb((const char *)p, len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return -1;
	}
	copy_str(o, "ID", s->id, sizeof(s->id));
	copy_str(o, "Name", s->name, sizeof(s->name));
	copy_str(o, "Node", s->node, sizeof(s->node));
	char err[64];
	int rc = parse_strings(json_object_get(o, "NodeChecks"), s->node_checks, &s->n_node_checks,
	                       "NodeChecks", err, sizeof(err));
	if (rc == 0)
		rc = parse_strings(json_object_get(o, "ServiceChecks"), s->service_checks,
		                   &s->n_service_checks, "ServiceChecks", err, sizeof(err));
	s->lock_delay_ms = json_integer_value(json_object_get(o, "LockDelayMs"));
	s->ttl_ms = json_integer_value(json_object_get(o, "TTLMs"));
	const char *b = json_string_value(json_object_get(o, "Behavior"));
	s->behavior = b && strcmp(b, "delete") == 0 ? SESSION_DELETE : SESSION_RELEASE;
	json_decref(o);
	return rc < 0 || s->id[0] == '\0' ? -1 : 0;
}

/* Go's time.Duration String() for whole milliseconds. */
static void go_duration(int64_t ms, char *buf, size_t cap)
{
	int64_t h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60, frac = ms % 1000;
	char sbuf[32];
	if (frac)
		snprintf(sbuf, sizeof(sbuf), "%" PRId64 ".%03" PRId64 "s", sec, frac);
	else
		snprintf(sbuf, sizeof(sbuf), "%" PRId64 "s", sec);
	if (h)
		snprintf(buf, cap, "%" PRId64 "h%" PRId64 "m%s", h, m, sbuf);
	else if (m)
		snprintf(buf, cap, "%" PRId64 "m%s", m, sbuf);
	else
		snprintf(buf, cap, "%s", sbuf);
}

json_t *session_json(const struct session *s, uint64_t create_index, uint64_t modify_index)
{
	char ttl[48] = "";
	if (s->ttl_ms)
		go_duration(s->ttl_ms, ttl, sizeof(ttl));
	json_t *svc = json_null();
	if (s->n_service_checks) {
		svc = json_array();
		for (size_t i = 0; i < s->n_service_checks; i++)
			json_array_append_new(svc,
			                      json_pack("{s:s, s:s}", "ID", s->service_checks[i],
			                                "Namespace", ""));
	}
	/* Checks: Consul's field before 1.7, every check the session watches */
	json_t *all = string_list(s->node_checks, s->n_node_checks);
	for (size_t i = 0; i < s->n_service_checks; i++)
		json_array_append_new(all, json_string(s->service_checks[i]));
	return json_pack(
	        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:s, s:s, s:I, s:I}", "ID", s->id, "Name",
	        s->name, "Node", s->node, "Checks", all, "NodeChecks",
	        s->n_node_checks ? string_list(s->node_checks, s->n_node_checks) : json_null(),
	        "ServiceChecks", svc, "LockDelay", (json_int_t)s->lock_delay_ms * 1000000,
	        "Behavior", s->behavior == SESSION_DELETE ? "delete" : "release", "TTL", ttl,
	        "CreateIndex", (json_int_t)create_index, "ModifyIndex", (json_int_t)modify_index);
}

size_t session_key(const char *id, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s%s", KV_SESSION_PREFIX, id);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void session_end_op(const struct session *s, char *keybuf, struct kv_op *op)
{
	size_t kl = session_key(s->id, keybuf, 64);
	*op = (struct kv_op){KV_OP_SESSION_END,
	                     keybuf,
	                     kl,
	                     NULL,
	                     0,
	                     s->behavior == SESSION_DELETE ? 1 : 0,
	                     (uint64_t)s->lock_delay_ms,
	                     s->id,
	                     strlen(s->id)};
}

/* ------------------------------------------------------------ health */

/* The check's status in the node's document: 2 critical, 1 other, 0 absent. */
static int check_state(const struct catalog_node *n, const char *id, bool service)
{
	json_t *checks = json_object_get((json_t *)n->doc, "Checks");
	size_t i;
	json_t *c;
	json_array_foreach(checks, i, c)
	{
		const char *cid = json_string_value(json_object_get(c, "CheckID"));
		const char *sid = json_string_value(json_object_get(c, "ServiceID"));
		if (cid == NULL || strcmp(cid, id) != 0)
			continue;
		if (!service && sid != NULL && *sid != '\0')
			continue;
		const char *st = json_string_value(json_object_get(c, "Status"));
		return st != NULL && strcmp(st, "critical") == 0 ? 2 : 1;
	}
	return 0;
}

/* Why s cannot live now (a message), or NULL. */
static const char *health_problem(struct agent *a, const struct session *s, char *buf, size_t cap)
{
	const struct catalog *cat = agent_catalog(a);
	const struct catalog_node *n =
	        cat != NULL ? catalog_node_get(cat, s->node, strlen(s->node)) : NULL;
	if (n == NULL)
		return "Missing node registration";
	for (size_t i = 0; i < s->n_node_checks + s->n_service_checks; i++) {
		bool svc = i >= s->n_node_checks;
		const char *id = svc ? s->service_checks[i - s->n_node_checks] : s->node_checks[i];
		int st;
		if (strcmp(id, "serfHealth") == 0 && !svc && !n->external)
			st = n->alive ? 1 : 2;
		else
			st = check_state(n, id, svc);
		if (st == 0) {
			snprintf(buf, cap, "Missing check '%s' registration", id);
			return buf;
		}
		if (st == 2) {
			snprintf(buf, cap, "Check '%s' is in critical state", id);
			return buf;
		}
	}
	return NULL;
}

int session_check_health(struct agent *a, const struct session *s, char *err, size_t errlen)
{
	char buf[200];
	const char *why = health_problem(a, s, buf, sizeof(buf));
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "%s", why);
	return -1;
}

/* ----------------------------------------------------- server state */

struct delay {
	char *key;
	size_t key_len;
	int64_t until;
};

struct timer {
	char id[SESSION_ID_LEN + 1];
	int64_t deadline;
	bool seen; /* in the last sweep */
};

struct sessions {
	struct agent *a;
	struct delay *delays;
	size_t ndelays, capdelays;
	struct timer *timers;
	size_t ntimers, captimers;
	bool leading;
	int64_t next_sweep;
	char ending[ENDING_MAX][SESSION_ID_LEN + 1];
	size_t nending;
	uint64_t invalidated;
};

static int64_t now_ms(const struct sessions *ss)
{
	return (int64_t)(ev_now(ss->a->loop) * 1000.0);
}

struct sessions *sessions_new(struct agent *a)
{
	struct sessions *ss = xcalloc(1, sizeof(*ss));
	ss->a = a;
	return ss;
}

void sessions_free(struct sessions *ss)
{
	if (ss == NULL)
		return;
	for (size_t i = 0; i < ss->ndelays; i++)
		free(ss->delays[i].key);
	free(ss->delays);
	free(ss->timers);
	free(ss);
}

static void delay_purge(struct sessions *ss, int64_t now)
{
	size_t j = 0;
	for (size_t i = 0; i < ss->ndelays; i++) {
		if (ss->delays[i].until > now && (ss->ndelays - i) <= LOCK_DELAYS_MAX - 1)
			ss->delays[j++] = ss->delays[i];
		else
			free(ss->delays[i].key);
	}
	ss->ndelays = j;
}

struct before_end {
	struct sessions *ss;
	int64_t until;
};

static int note_delay(void *ud, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)r;
	struct before_end *b = ud;
	struct sessions *ss = b->ss;
	for (size_t i = 0; i < ss->ndelays; i++)
		if (ss->delays[i].key_len == key_len &&
		    memcmp(ss->delays[i].key, key, key_len) == 0) {
			ss->delays[i].until = b->until;
			return 0;
		}
	if (ss->ndelays == ss->capdelays) {
		ss->capdelays = ss->capdelays ? ss->capdelays * 2 : 16;
		ss->delays = xrealloc(ss->delays, ss->capdelays * sizeof(*ss->delays));
	}
	struct delay *d = &ss->delays[ss->ndelays++];
	d->key = xmalloc(key_len ? key_len : 1);
	memcpy(d->key, key, key_len);
	d->key_len = key_len;
	d->until = b->until;
	return 0;
}

void sessions_before_end(struct sessions *ss, const struct kv_op *op)
{
	if (ss == NULL || op->verb != KV_OP_SESSION_END || op->index == 0)
		return;
	int64_t now = now_ms(ss);
	delay_purge(ss, now);
	struct before_end b = {ss, now + (int64_t)op->index};
	kv_held(ss->a->kv, op->session, op->session_len, note_delay, &b);
}

int64_t sessions_lock_delay_left(const struct sessions *ss, const char *key, size_t key_len)
{
	if (ss == NULL)
		return 0;
	int64_t now = now_ms(ss);
	for (size_t i = 0; i < ss->ndelays; i++)
		if (ss->delays[i].key_len == key_len &&
		    memcmp(ss->delays[i].key, key, key_len) == 0)
			return ss->delays[i].until > now ? ss->delays[i].until - now : 0;
	return 0;
}

static struct timer *timer_find(struct sessions *ss, const char *id, size_t len)
{
	for (size_t i = 0; i < ss->ntimers; i++)
		if (strlen(ss->timers[i].id) == len && memcmp(ss->timers[i].id, id, len) == 0)
			return &ss->timers[i];
	return NULL;
}

static struct timer *timer_add(struct sessions *ss, const char *id, int64_t deadline)
{
	if (ss->ntimers == TIMERS_MAX)
		return NULL;
	if (ss->ntimers == ss->captimers) {
		ss->captimers = ss->captimers ? ss->captimers * 2 : 16;
		ss->timers = xrealloc(ss->timers, ss->captimers * sizeof(*ss->timers));
	}
	struct timer *t = &ss->timers[ss->ntimers++];
	snprintf(t->id, sizeof(t->id), "%s", id);
	t->deadline = deadline;
	t->seen = true;
	return t;
}

struct renew_ctx {
	struct sessions *ss;
	int found;
};

static int renew_cb(void *ud, const struct kv_entry *e)
{
	struct renew_ctx *r = ud;
	struct session s;
	if (session_decode(e->value, e->value_len, &s) < 0)
		return 0;
	r->found = 1;
	if (s.ttl_ms == 0)
		return 0;
	int64_t deadline = now_ms(r->ss) + s.ttl_ms * SESSION_TTL_MULTIPLIER;
	struct timer *t = timer_find(r->ss, s.id, strlen(s.id));
	if (t != NULL)
		t->deadline = deadline;
	else
		timer_add(r->ss, s.id, deadline);
	return 0;
}

int sessions_renew(struct sessions *ss, const char *id, size_t id_len)
{
	char key[128];
	if (id_len == 0 || id_len > SESSION_ID_LEN)
		return 0;
	int kl = snprintf(key, sizeof(key), "%s%.*s", KV_SESSION_PREFIX, (int)id_len, id);
	struct renew_ctx r = {ss, 0};
	kv_get(ss->a->kv, key, (size_t)kl, renew_cb, &r);
	return r.found;
}

uint64_t sessions_invalidated(const struct sessions *ss)
{
	return ss != NULL ? ss->invalidated : 0;
}

struct end_ctx {
	struct sessions *ss;
	char id[SESSION_ID_LEN + 1];
};

static void ending_drop(struct sessions *ss, const char *id)
{
	for (size_t i = 0; i < ss->nending; i++)
		if (strcmp(ss->ending[i], id) == 0) {
			memmove(ss->ending[i], ss->ending[ss->nending - 1], sizeof(ss->ending[0]));
			ss->nending--;
			return;
		}
}

static void end_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct end_ctx *c = ud;
	if (r != KV_OK)
		log_warn("sessions: ending session %s failed (%d); the next sweep tries again",
		         c->id, (int)r);
	ending_drop(c->ss, c->id);
	free(c);
}

static void session_end(struct sessions *ss, const struct session *s, const char *why)
{
	for (size_t i = 0; i < ss->nending; i++)
		if (strcmp(ss->ending[i], s->id) == 0)
			return; /* already on its way */
	if (ss->nending == ENDING_MAX)
		return; /* the next sweep */
	log_info("sessions: invalidating session %s (node %s): %s", s->id, s->node, why);
	char key[64], err[200];
	struct kv_op op;
	session_end_op(s, key, &op);
	struct end_ctx *c = xcalloc(1, sizeof(*c));
	c->ss = ss;
	snprintf(c->id, sizeof(c->id), "%s", s->id);
	snprintf(ss->ending[ss->nending++], sizeof(ss->ending[0]), "%s", s->id);
	if (kv_write(ss->a->kv, &op, 1, end_done, c, err, sizeof(err)) < 0) {
		log_warn("sessions: cannot end session %s: %s", s->id, err);
		ending_drop(ss, s->id);
		free(c);
		return;
	}
	ss->invalidated++;
}

static int sweep_cb(void *ud, const struct kv_entry *e)
{
	struct sessions *ss = ud;
	struct session s;
	if (session_decode(e->value, e->value_len, &s) < 0)
		return 0;
	char buf[200];
	const char *why = health_problem(ss->a, &s, buf, sizeof(buf));
	struct timer *t = timer_find(ss, s.id, strlen(s.id));
	int64_t now = now_ms(ss);
	if (s.ttl_ms > 0 && t == NULL)
		t = timer_add(ss, s.id, now + s.ttl_ms * SESSION_TTL_MULTIPLIER);
	if (t != NULL)
		t->seen = true;
	if (why == NULL && t != NULL && s.ttl_ms > 0 && now >= t->deadline)
		why = "its TTL ran out";
	if (why != NULL)
		session_end(ss, &s, why);
	return 0;
}

void sessions_leader_tick(struct sessions *ss, bool leader)
{
	if (ss == NULL)
		return;
	if (!leader) {
		ss->leading = false;
		ss->ntimers = 0; /* a new leader starts every timer afresh */
		return;
	}
	int64_t now = now_ms(ss);
	if (!ss->leading) {
		ss->leading = true;
		ss->ntimers = 0;
		ss->next_sweep = now;
	}
	if (now < ss->next_sweep)
		return;
	ss->next_sweep = now + SWEEP_EVERY_MS;
	for (size_t i = 0; i < ss->ntimers; i++)
		ss->timers[i].seen = false;
	kv_scan(ss->a->kv, KV_SESSION_PREFIX, strlen(KV_SESSION_PREFIX), sweep_cb, ss);
	size_t j = 0; /* forget the timers of sessions that are gone */
	for (size_t i = 0; i < ss->ntimers; i++)
		if (ss->timers[i].seen)
			ss->timers[j++] = ss->timers[i];
	ss->ntimers = j;
}
