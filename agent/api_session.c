/*
 * agent/api_session.c — see api_session.h.
 *
 * Every write (create, destroy) is a KV write of the session's record, so
 * in CP mode it goes to the Raft leader like any other (agent/server.h).
 * Reads are Consul's three modes: default and ?consistent read the record
 * through the leader first (server_read_barrier), ?stale reads this
 * agent's replica. Blocking queries park on the sessions' prefix.
 */
#include "agent/api_session.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/api_reply.h"
#include "agent/api_server.h"
#include "agent/config.h"
#include "agent/env.h"
#include "agent/http/http.h"
#include "agent/server.h"
#include "agent/sessions.h"
#include "kv/hlc.h"
#include "kv/kv.h"
#include "lib/xalloc.h"

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS (10 * 60 * 1000)

static const char NEED_SERVERS[] = "sessions need servers (-server): this cluster has none, "
                                   "see docs/SESSIONS.md";

/* Without servers: 501 with the usual headers. */
static bool no_servers(struct agent *a, struct http_conn *c)
{
	if (a->kv != NULL && server_cp(a->server))
		return false;
	char idx[24];
	snprintf(idx, sizeof(idx), "%" PRIu64,
	         a->kv ? kv_index(a->kv, KV_SESSION_PREFIX, strlen(KV_SESSION_PREFIX), true) : 1);
	http_add_header(c, "X-Consul-Index", idx);
	api_server_headers(a, c);
	api_reply_text(c, 501, NEED_SERVERS);
	return true;
}

bool api_session_need_servers(struct agent *a, struct http_conn *c)
{
	return no_servers(a, c);
}

static bool id_ok(const char *id)
{
	size_t n = strlen(id);
	return n > 0 && n <= SESSION_ID_LEN && strchr(id, '/') == NULL;
}

/* ------------------------------------------------------------ writes */

struct swrite {
	struct http_conn *c;
	char id[SESSION_ID_LEN + 1];
	bool create;
};

static void swrite_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct swrite *)ud)->c = NULL;
}

static void swrite_done(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct swrite *w = ud;
	struct http_conn *c = w->c;
	if (c != NULL) {
		http_conn_on_close(c, NULL, NULL);
		if (r == KV_OK && w->create) {
			char body[80];
			int n = snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", w->id);
			http_respond(c, 200, "application/json", body, (size_t)n);
		} else if (r == KV_OK) {
			http_respond(c, 200, "application/json", "true", 4);
		} else if (r == KV_FAILED) {
			api_reply_text(c, 500, "session ID collision: try again");
		} else if (r == KV_NO_LEADER) {
			api_reply_text(c, 500, "No cluster leader");
		} else if (r == KV_UNKNOWN) {
			api_reply_text(c, 500,
			               "rpc error: the leader was lost: the session may or may not "
			               "have been written");
		} else {
			api_reply_text(c, 500, "storage error: the session was not written");
		}
	}
	free(w);
}

static void swrite(struct agent *a, struct http_conn *c, const char *id, bool create,
                   const struct kv_op *ops, size_t n)
{
	struct swrite *w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->create = create;
	snprintf(w->id, sizeof(w->id), "%s", id);
	http_conn_on_close(c, swrite_closed, w);
	char err[200];
	if (kv_write(a->kv, ops, n, swrite_done, w, err, sizeof(err)) < 0) {
		http_conn_on_close(c, NULL, NULL);
		free(w);
		api_reply_text(c, 500, err);
	}
}

static void h_create(struct agent *a, struct http_conn *c, const struct http_request *req)
{
	struct session s;
	char err[300];
	int rc = session_parse_create(req->body, req->body_len, a->cfg.node_name, &s, err,
	                              sizeof(err));
	if (rc < 0) {
		api_reply_text(c, rc == -2 ? 500 : 400, err);
		return;
	}
	if (session_check_health(a, &s, err, sizeof(err)) < 0) {
		api_reply_text(c, 500, err);
		return;
	}
	session_new_id(&s);
	char key[64];
	size_t kl = session_key(s.id, key, sizeof(key));
	char *doc = session_encode(&s);
	struct kv_op ops[2] = {
	        {KV_OP_CHECK_NOT_EXISTS, key, kl, NULL, 0, 0, 0, NULL, 0},
	        {KV_OP_SET, key, kl, doc, strlen(doc), 0, 0, NULL, 0},
	};
	swrite(a, c, s.id, true, ops, 2);
	free(doc);
}

/* ------------------------------------------------------------- reads */

enum sread_kind { SR_INFO, SR_NODE, SR_LIST, SR_RENEW, SR_DESTROY };

struct sread {
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	enum sread_kind kind;
	char arg[KV_NODE_MAX + 1];
	struct server_read *r;
	struct kv_watch *w;
};

struct collect {
	struct sread *q;
	json_t *out;
	struct session found;
	bool have;
};

static int collect_cb(void *ud, const struct kv_entry *e)
{
	struct collect *k = ud;
	struct session s;
	if (session_decode(e->value, e->value_len, &s) < 0)
		return 0;
	if (k->q->kind == SR_NODE && strcmp(s.node, k->q->arg) != 0)
		return 0;
	if ((k->q->kind == SR_INFO || k->q->kind == SR_RENEW || k->q->kind == SR_DESTROY) &&
	    strcmp(s.id, k->q->arg) != 0)
		return 0;
	k->found = s;
	k->have = true;
	json_array_append_new(k->out, session_json(&s, e->create_index, e->modify_index));
	return 0;
}

static void sread_free(struct sread *q)
{
	free(q);
}

static void destroy_now(struct sread *q, const struct session *s)
{
	char key[64];
	struct kv_op op;
	session_end_op(s, key, &op);
	swrite(q->a, q->c, s->id, false, &op, 1);
}

static void sread_answer(struct sread *q)
{
	struct agent *a = q->a;
	struct collect k;
	memset(&k, 0, sizeof(k));
	k.q = q;
	k.out = json_array();
	char key[256];
	size_t kl = q->kind == SR_LIST || q->kind == SR_NODE
	                    ? (size_t)snprintf(key, sizeof(key), "%s", KV_SESSION_PREFIX)
	                    : session_key(q->arg, key, sizeof(key));
	kv_scan(a->kv, key, kl, collect_cb, &k);
	if (q->kind == SR_DESTROY) {
		json_decref(k.out);
		if (k.have)
			destroy_now(q, &k.found);
		else /* Consul: destroying an unknown session succeeds */
			http_respond(q->c, 200, "application/json", "true", 4);
		return;
	}
	char idx[24];
	snprintf(idx, sizeof(idx), "%" PRIu64,
	         kv_index(a->kv, KV_SESSION_PREFIX, strlen(KV_SESSION_PREFIX), true));
	http_add_header(q->c, "X-Consul-Index", idx);
	api_server_headers(a, q->c);
	if (q->kind == SR_RENEW && !k.have) {
		json_decref(k.out);
		char msg[200];
		snprintf(msg, sizeof(msg), "Session id '%s' not found", q->arg);
		api_reply_text(q->c, 404, msg);
		return;
	}
	api_reply_json(q->c, q->req, 200, k.out);
}

static void sread_closed(struct http_conn *c, void *ud)
{
	(void)c;
	struct sread *q = ud;
	if (q->r != NULL)
		server_read_cancel(q->r);
	if (q->w != NULL)
		kv_watch_cancel(q->w);
	sread_free(q);
}

static void barrier_done(void *ud, bool ok)
{
	struct sread *q = ud;
	q->r = NULL;
	http_conn_on_close(q->c, NULL, NULL);
	if (ok)
		sread_answer(q);
	else
		api_reply_text(q->c, 500, "No cluster leader");
	sread_free(q);
}

static void watch_fired(void *ud, bool changed)
{
	(void)changed;
	struct sread *q = ud;
	q->w = NULL;
	http_conn_on_close(q->c, NULL, NULL);
	sread_answer(q);
	sread_free(q);
}

/* Read through the leader (default, ?consistent) or here (?stale), at once
 * or, with ?index, once the sessions change. */
static void sread_start(struct sread *q)
{
	const struct http_request *req = q->req;
	struct agent *a = q->a;
	const char *is = http_query_get(req, "index");
	if (is != NULL && q->kind != SR_RENEW && q->kind != SR_DESTROY) {
		uint64_t want = strtoull(is, NULL, 10);
		int64_t wait = WAIT_DEFAULT_MS;
		const char *ws = http_query_get(req, "wait");
		if (ws != NULL && (rumor_parse_duration(ws, &wait) < 0 || wait < 0)) {
			api_reply_text(q->c, 400, "Invalid wait time");
			sread_free(q);
			return;
		}
		if (wait > WAIT_MAX_MS)
			wait = WAIT_MAX_MS;
		if (wait >= 16)
			wait += (int64_t)randombytes_uniform((uint32_t)(wait / 16));
		uint64_t now = kv_index(a->kv, KV_SESSION_PREFIX, strlen(KV_SESSION_PREFIX), true);
		if (kv_index_parks(now, kv_hlc_index_in(want))) {
			q->w = kv_watch_add(a->kv, KV_SESSION_PREFIX, strlen(KV_SESSION_PREFIX),
			                    true, want, wait, watch_fired, q);
			if (q->w != NULL) {
				http_conn_on_close(q->c, sread_closed, q);
				return;
			}
		}
	}
	if (http_query_get(req, "stale") != NULL) {
		sread_answer(q);
		sread_free(q);
		return;
	}
	bool consistent = http_query_get(req, "consistent") != NULL;
	http_conn_on_close(q->c, sread_closed, q);
	q->r = server_read_barrier(a->server, consistent, KV_SESSION_PREFIX,
	                           strlen(KV_SESSION_PREFIX), true, barrier_done, q);
}

static void sread(struct agent *a, struct http_conn *c, const struct http_request *req,
                  enum sread_kind kind, const char *arg)
{
	if (http_query_get(req, "stale") != NULL && http_query_get(req, "consistent") != NULL) {
		api_reply_text(c, 400,
		               "Cannot specify ?stale with ?consistent, conflicting semantics.");
		return;
	}
	if (kind != SR_LIST &&
	    (*arg == '\0' || strlen(arg) > KV_NODE_MAX || (kind != SR_NODE && !id_ok(arg)))) {
		api_reply_text(c, 400,
		               kind == SR_NODE ? "Missing node name" : "Missing session ID");
		return;
	}
	struct sread *q = xcalloc(1, sizeof(*q));
	*q = (struct sread){a, c, req, kind, "", NULL, NULL};
	snprintf(q->arg, sizeof(q->arg), "%s", arg);
	sread_start(q);
}

/* ------------------------------------------------------------ renew */

struct srenew {
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	char id[SESSION_ID_LEN + 1];
	bool gone;
};

static void srenew_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct srenew *)ud)->gone = true;
}

static void renewed(void *ud, int result)
{
	struct srenew *q = ud;
	if (!q->gone) {
		http_conn_on_close(q->c, NULL, NULL);
		if (result < 0) {
			api_reply_text(q->c, 500, "No cluster leader");
		} else if (result == 0) {
			char msg[200];
			snprintf(msg, sizeof(msg), "Session id '%s' not found", q->id);
			api_reply_text(q->c, 404, msg);
		} else {
			/* the leader has it: read it through the leader, answer */
			sread(q->a, q->c, q->req, SR_RENEW, q->id);
		}
	}
	free(q);
}

static void h_renew(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *id)
{
	if (!id_ok(id)) {
		api_reply_text(c, 400, "Missing session ID");
		return;
	}
	struct srenew *q = xcalloc(1, sizeof(*q));
	q->a = a;
	q->c = c;
	q->req = req;
	snprintf(q->id, sizeof(q->id), "%s", id);
	http_conn_on_close(c, srenew_closed, q);
	if (server_session_renew(a->server, id, renewed, q) < 0) {
		http_conn_on_close(c, NULL, NULL);
		free(q);
		api_reply_text(c, 500, "No cluster leader");
	}
}

/* ------------------------------------------------------------ route */

void api_session_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest)
{
	if (no_servers(a, c))
		return;
	bool put = strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0;
	bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	if (strcmp(rest, "create") == 0 && put)
		h_create(a, c, req);
	else if (strncmp(rest, "destroy/", 8) == 0 && put)
		sread(a, c, req, SR_DESTROY, rest + 8);
	else if (strncmp(rest, "renew/", 6) == 0 && put)
		h_renew(a, c, req, rest + 6);
	else if (strncmp(rest, "info/", 5) == 0 && get)
		sread(a, c, req, SR_INFO, rest + 5);
	else if (strncmp(rest, "node/", 5) == 0 && get)
		sread(a, c, req, SR_NODE, rest + 5);
	else if (strcmp(rest, "list") == 0 && get)
		sread(a, c, req, SR_LIST, "");
	else if (strcmp(rest, "create") == 0 || strncmp(rest, "destroy/", 8) == 0 ||
	         strncmp(rest, "renew/", 6) == 0 || strncmp(rest, "info/", 5) == 0 ||
	         strncmp(rest, "node/", 5) == 0 || strcmp(rest, "list") == 0)
		api_reply_text(c, 405, "method not allowed");
	else
		api_reply_text(c, 404, "404 page not found");
}
