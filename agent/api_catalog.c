/*
 * agent/api_catalog.c — see api_catalog.h.
 *
 * Blocking queries: a read with ?index=N waits while the catalog index is
 * <= N, up to ?wait (default 5 min, at most 10 min, plus up to wait/16 of
 * jitter as Consul adds).  Parked requests sit in a list; a catalog change
 * schedules one zero-delay timer that re-runs every parked handler (so a
 * change made inside a handler never re-enters another one), and each
 * request's own timer answers it with current data when its wait is over.
 */
#include "agent/api_catalog.h"
#include "agent/api_coord.h"

#include <arpa/inet.h>
#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/env.h"
#include "agent/server.h"
#include "kv/kv.h"
#include "agent/api_reply.h"
#include "agent/catalog.h"
#include "agent/checks.h"
#include "agent/http/http.h"
#include "agent/services.h"
#include "agent/metrics.h"
#include "gossip/swim.h"
#include "gossip/tags.h"

#define WAIT_DEFAULT_MS (5 * 60 * 1000)
#define WAIT_MAX_MS (10 * 60 * 1000)

struct waiter {
	struct agent_catalog *ac;
	struct agent *a;
	struct http_conn *c;
	const struct http_request *req;
	const char *rest;
	api_route_fn fn;
	ev_timer t;
	struct waiter *next, *prev;
};

struct agent_catalog {
	struct catalog *cat;
	struct services *svcs;
	struct waiter *waiters;
	ev_timer wake;
	bool rerun; /* a parked handler is being re-run: do not park again */
	struct ev_loop *loop;
};

static struct agent_catalog *AC(struct agent *a)
{
	return a->catalog;
}

/* ------------------------------------------------------------ blocking */

static void waiter_unlink(struct waiter *w)
{
	struct agent_catalog *ac = w->ac;
	ev_timer_stop(ac->loop, &w->t);
	if (w->prev)
		w->prev->next = w->next;
	else
		ac->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
}

/*
 * Answers a parked request by calling its handler again with the rerun flag set,
 * so maybe_block lets it through instead of parking it a second time. The close
 * hook is cleared first: once answered, the connection no longer owns the waiter.
 */
static void waiter_run(struct waiter *w)
{
	struct agent_catalog *ac = w->ac;
	waiter_unlink(w);
	http_conn_on_close(w->c, NULL, NULL);
	ac->rerun = true;
	w->fn(w->a, w->c, w->req, w->rest);
	ac->rerun = false;
	free(w);
}

static void waiter_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	waiter_run(t->data);
}

/*
 * The client went away while parked: the waiter goes without an answer, and its
 * timer is stopped with it, so nothing later writes to a closed connection.
 */
static void waiter_closed(struct http_conn *c, void *ud)
{
	struct waiter *w = ud;
	waiter_unlink(w);
	free(w);
}

/*
 * Every parked request is answered on any change, as Consul's table-wide index
 * does; a request whose own result did not change simply gets it again. The loop
 * ends because rerun keeps waiter_run from parking anything new.
 */
static void wake_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct agent_catalog *ac = t->data;
	while (ac->waiters != NULL)
		waiter_run(ac->waiters);
}

/*
 * Never answers from inside the change: the catalog may be in the middle of an
 * update from a handler. One zero-delay timer defers all the answers to the next
 * loop turn, and a burst of changes still schedules it only once.
 */
static void on_catalog_change(void *ud)
{
	struct agent_catalog *ac = ud;
	if (ac->waiters != NULL && !ev_is_active(&ac->wake)) {
		ev_timer_set(&ac->wake, 0., 0.);
		ev_timer_start(ac->loop, &ac->wake);
	}
}

/* Parks the request if it asked to block and the catalog index is still
 * the one it names (an index above ours is answered at once); true if
 * parked (the caller returns), false to answer now.  Bad parameters are
 * answered here (true). */
static bool maybe_block(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest, api_route_fn fn)
{
	struct agent_catalog *ac = AC(a);
	const char *is = http_query_get(req, "index");
	if (ac->rerun || is == NULL || is[0] == '\0')
		return false;
	char *end;
	uint64_t idx = strtoull(is, &end, 10);
	if (*end != '\0') {
		api_reply_text(c, 400, "Invalid index");
		return true;
	}
	if (!kv_index_parks(catalog_index(ac->cat), idx))
		return false; /* moved on, or went backwards (kv/engine.h) */
	int64_t wait_ms = WAIT_DEFAULT_MS;
	const char *ws = http_query_get(req, "wait");
	if (ws != NULL && ws[0] != '\0' && rumor_parse_duration(ws, &wait_ms) < 0) {
		api_reply_text(c, 400, "Invalid wait time");
		return true;
	}
	if (wait_ms > WAIT_MAX_MS)
		wait_ms = WAIT_MAX_MS;
	if (wait_ms >= 16)
		wait_ms += randombytes_uniform((uint32_t)(wait_ms / 16));
	struct waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return false;
	w->ac = ac;
	w->a = a;
	w->c = c;
	w->req = req;
	w->rest = rest;
	w->fn = fn;
	ev_timer_init(&w->t, waiter_timeout_cb, (double)wait_ms / 1000.0, 0.);
	w->t.data = w;
	ev_timer_start(ac->loop, &w->t);
	w->next = ac->waiters;
	if (ac->waiters)
		ac->waiters->prev = w;
	ac->waiters = w;
	http_conn_on_close(c, waiter_closed, w);
	return true;
}

/*
 * The same three headers as the KV reads: every agent holds the whole catalog,
 * so there is always a "leader" and it is never behind.
 */
static void reply_read(struct agent *a, struct http_conn *c, const struct http_request *req,
                       int status, json_t *j)
{
	char idx[32];
	snprintf(idx, sizeof(idx), "%" PRIu64, catalog_index(AC(a)->cat));
	http_add_header(c, "X-Consul-Index", idx);
	http_add_header(c, "X-Consul-KnownLeader", "true");
	http_add_header(c, "X-Consul-LastContact", "0");
	api_reply_json(c, req, status, j);
}

/* -------------------------------------------------------------- agent endpoints */

/* A JSON definition in the body, handed to the local registry (service or check). */
static void register_from_body(struct agent *a, struct http_conn *c, const struct http_request *req,
                               int (*reg)(struct services *, const json_t *, char *, size_t))
{
	json_error_t je;
	json_t *def = json_loadb(req->body, req->body_len, 0, &je);
	if (def == NULL) {
		char msg[300];
		snprintf(msg, sizeof(msg), "Request decode failed: %s", je.text);
		api_reply_text(c, 400, msg);
		return;
	}
	char err[512];
	int rc = reg(AC(a)->svcs, def, err, sizeof(err));
	json_decref(def);
	if (rc < 0) {
		api_reply_text(c, 400, err);
		return;
	}
	http_respond(c, 200, NULL, "", 0);
}

void api_h_service_register(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest)
{
	register_from_body(a, c, req, services_register);
}

void api_h_service_deregister(struct agent *a, struct http_conn *c, const struct http_request *req,
                              const char *rest)
{
	char err[512];
	int rc = services_deregister(AC(a)->svcs, rest, err, sizeof(err));
	if (rc < 0) {
		api_reply_text(c, rc == -2 ? 404 : 400, err);
		return;
	}
	http_respond(c, 200, NULL, "", 0);
}

void api_h_agent_services(struct agent *a, struct http_conn *c, const struct http_request *req,
                          const char *rest)
{
	api_reply_json(c, req, 200, services_agent_services(AC(a)->svcs));
}

void api_h_agent_checks(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest)
{
	api_reply_json(c, req, 200, services_agent_checks(AC(a)->svcs));
}

void api_h_check_register(struct agent *a, struct http_conn *c, const struct http_request *req,
                          const char *rest)
{
	register_from_body(a, c, req, services_check_register);
}

void api_h_check_deregister(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest)
{
	char err[512];
	int rc = services_check_deregister(AC(a)->svcs, rest, err, sizeof(err));
	if (rc < 0) {
		api_reply_text(c, rc == -2 ? 404 : 400, err);
		return;
	}
	http_respond(c, 200, NULL, "", 0);
}

/*
 * services_check_update returns -2 for an unknown check, which Consul answers
 * with 404; any other refusal (not a TTL check, a bad status) is a 400.
 */
static void ttl_update(struct agent *a, struct http_conn *c, const char *id, enum catalog_health st,
                       const char *note)
{
	char err[512];
	int rc = services_check_update(AC(a)->svcs, id, st, note ? note : "", err, sizeof(err));
	if (rc < 0) {
		api_reply_text(c, rc == -2 ? 404 : 400, err);
		return;
	}
	http_respond(c, 200, NULL, "", 0);
}

void api_h_check_pass(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	ttl_update(a, c, rest, CATALOG_PASSING, http_query_get(req, "note"));
}

void api_h_check_warn(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	ttl_update(a, c, rest, CATALOG_WARNING, http_query_get(req, "note"));
}

void api_h_check_fail(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	ttl_update(a, c, rest, CATALOG_CRITICAL, http_query_get(req, "note"));
}

/*
 * Consul matches the body's "Status" and "Output" without regard to case, so
 * this does too; a missing or unknown status is a 400, not a silent "critical".
 */
void api_h_check_update(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest)
{
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, 0, &je);
	const char *sts = NULL, *out = "";
	const char *k;
	json_t *v;
	json_object_foreach(body, k, v)
	{
		if (strcasecmp(k, "status") == 0)
			sts = json_string_value(v);
		else if (strcasecmp(k, "output") == 0 && json_is_string(v))
			out = json_string_value(v);
	}
	int st = check_status_parse(sts);
	if (st < 0) {
		api_reply_text(c, 400, "Invalid check status");
		json_decref(body);
		return;
	}
	ttl_update(a, c, rest, (enum catalog_health)st, out);
	json_decref(body);
}

/* ------------------------------------------------------------ JSON shapes */

static json_t *jget(const json_t *o, const char *k)
{
	return json_object_get(o, k);
}

static json_t *jcopy(const json_t *o, const char *k, json_t *dflt)
{
	json_t *v = json_object_get(o, k);
	if (v != NULL) {
		json_decref(dflt);
		return json_deep_copy(v);
	}
	return dflt;
}

static json_t *node_json(const struct catalog_node *n)
{
	const json_t *d = n->doc;
	return json_pack("{s:o, s:s, s:s, s:o, s:o, s:o, s:I, s:I}", "ID",
	                 jcopy(d, "ID", json_string("")), "Node", n->name, "Address", n->address,
	                 "Datacenter", jcopy(d, "Datacenter", json_string("dc1")),
	                 "TaggedAddresses", jcopy(d, "TaggedAddresses", json_object()), "Meta",
	                 jcopy(d, "Meta", json_object()), "CreateIndex",
	                 (json_int_t)n->modify_index, "ModifyIndex", (json_int_t)n->modify_index);
}

/*
 * A service's tagged addresses as Consul's agent fills them: the registered
 * ones, plus lan_ipv4/wan_ipv4 (lan_ipv6/wan_ipv6) {Address, Port} when the
 * service has an IP address of its own. A service on its node's address
 * gets {} (Consul leaves the key out, which clients read as empty).
 */
static json_t *svc_tagged_addresses(const struct catalog_inst *in)
{
	json_t *ta = jcopy(in->svc, "TaggedAddresses", json_object());
	if (!json_is_object(ta)) {
		json_decref(ta);
		ta = json_object();
	}
	if (!in->own_ip)
		return ta;
	bool v4 = in->ip.len == 4;
	const char *keys[2] = {v4 ? "lan_ipv4" : "lan_ipv6", v4 ? "wan_ipv4" : "wan_ipv6"};
	for (size_t i = 0; i < 2; i++) {
		if (json_object_get(ta, keys[i]) == NULL)
			json_object_set_new(ta, keys[i],
			                    json_pack("{s:s, s:i}", "Address", in->address, "Port",
			                              (int)in->port));
	}
	return ta;
}

/* The `Service` object of a health entry: the stored service plus Kind and
 * TaggedAddresses as Consul shows them. */
static json_t *service_json(const struct catalog_inst *in)
{
	json_t *s = json_deep_copy(in->svc);
	if (!json_is_object(s)) {
		json_decref(s);
		s = json_object();
	}
	if (json_object_get(s, "Kind") == NULL)
		json_object_set_new(s, "Kind", json_string(""));
	json_object_set_new(s, "TaggedAddresses", svc_tagged_addresses(in));
	return s;
}

static json_t *catalog_service_entry(const struct catalog_inst *in)
{
	const struct catalog_node *n = in->node;
	const json_t *d = n->doc, *s = in->svc;
	return json_pack("{s:o, s:s, s:s, s:o, s:o, s:o, s:o, s:s, s:s, s:o, s:s, s:o, s:i, s:o, "
	                 "s:o, s:o, s:I, s:I}",
	                 "ID", jcopy(d, "ID", json_string("")), "Node", n->name, "Address",
	                 n->address, "Datacenter", jcopy(d, "Datacenter", json_string("dc1")),
	                 "TaggedAddresses", jcopy(d, "TaggedAddresses", json_object()), "NodeMeta",
	                 jcopy(d, "Meta", json_object()), "ServiceKind",
	                 jcopy(s, "Kind", json_string("")), "ServiceID", in->id, "ServiceName",
	                 in->name, "ServiceTags", jcopy(s, "Tags", json_array()), "ServiceAddress",
	                 in->address, "ServiceTaggedAddresses", svc_tagged_addresses(in),
	                 "ServicePort", (int)in->port, "ServiceMeta",
	                 jcopy(s, "Meta", json_object()), "ServiceWeights",
	                 jcopy(s, "Weights", json_object()), "ServiceEnableTagOverride",
	                 jcopy(s, "EnableTagOverride", json_false()), "CreateIndex",
	                 (json_int_t)n->modify_index, "ModifyIndex", (json_int_t)n->modify_index);
}

/*
 * Every node carries Consul's synthetic serfHealth check, made here from gossip
 * liveness rather than stored: it must follow the member's state at once, not
 * wait for a replicated record that a dead node can no longer write.
 */
static json_t *serf_check(const struct catalog_node *n)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:s, s:I, s:I}", "Node",
	                 n->name, "CheckID", "serfHealth", "Name", "Serf Health Status", "Status",
	                 n->alive ? "passing" : "critical", "Notes", "", "Output",
	                 n->alive ? "Agent alive and reachable" : "Agent not live or unreachable",
	                 "ServiceID", "", "ServiceName", "", "ServiceTags", "Type", "",
	                 "CreateIndex", (json_int_t)n->modify_index, "ModifyIndex",
	                 (json_int_t)n->modify_index);
}

/* The node's checks (serfHealth first) that concern service `sid` (NULL:
 * all of them; "" node-level only is included always). */
static json_t *node_checks(const struct catalog_node *n, const char *sid)
{
	json_t *arr = json_array();
	if (!n->external) /* no agent, no gossip: no serfHealth, as in Consul */
		json_array_append_new(arr, serf_check(n));
	size_t i;
	json_t *ch;
	json_array_foreach(jget(n->doc, "Checks"), i, ch)
	{
		const char *csid = json_string_value(jget(ch, "ServiceID"));
		if (csid == NULL)
			csid = "";
		if (sid != NULL && csid[0] != '\0' && strcmp(csid, sid) != 0)
			continue;
		json_t *cp = json_deep_copy(ch);
		json_object_set_new(cp, "CreateIndex", json_integer((json_int_t)n->modify_index));
		json_object_set_new(cp, "ModifyIndex", json_integer((json_int_t)n->modify_index));
		json_array_append_new(arr, cp);
	}
	return arr;
}

static bool all_passing(const json_t *checks)
{
	size_t i;
	json_t *ch;
	json_array_foreach(checks, i, ch)
	{
		const char *st = json_string_value(jget(ch, "Status"));
		if (st == NULL || strcmp(st, "passing") != 0)
			return false;
	}
	return true;
}

static bool inst_has_tag(const struct catalog_inst *in, const char *tag)
{
	for (size_t i = 0; i < in->ntags; i++)
		if (strcasecmp(in->tags[i], tag) == 0)
			return true;
	return false;
}

/* ------------------------------------------------------------ catalog endpoints */

/* Consul's shape: service name -> the union of its instances' tags, each tag once. */
void api_h_catalog_services(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_catalog_services))
		return;
	const struct catalog *cat = AC(a)->cat;
	json_t *o = json_object();
	for (size_t i = 0; i < catalog_inst_count(cat); i++) {
		const struct catalog_inst *in = catalog_inst_at(cat, i);
		json_t *tags = json_object_get(o, in->name);
		if (tags == NULL) {
			tags = json_array();
			json_object_set_new(o, in->name, tags);
		}
		for (size_t t = 0; t < in->ntags; t++) {
			bool dup = false;
			size_t k;
			json_t *v;
			json_array_foreach(tags, k, v)
			{
				if (strcmp(json_string_value(v), in->tags[t]) == 0)
					dup = true;
			}
			if (!dup)
				json_array_append_new(tags, json_string(in->tags[t]));
		}
	}
	reply_read(a, c, req, 200, o);
}

/*
 * Two passes over the index, count then fill, so the array is sized exactly; an
 * allocation failure aborts (lib/xalloc's policy: nothing useful to answer).
 */
static const struct catalog_inst **all_of(const struct catalog *cat, const char *name, size_t *n)
{
	*n = catalog_lookup_all(cat, name, strlen(name), NULL, 0);
	const struct catalog_inst **v = calloc(*n ? *n : 1, sizeof(*v));
	if (v == NULL)
		abort();
	catalog_lookup_all(cat, name, strlen(name), v, *n);
	return v;
}

void api_h_catalog_service(struct agent *a, struct http_conn *c, const struct http_request *req,
                           const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_catalog_service))
		return;
	const char *tag = http_query_get(req, "tag");
	size_t n;
	const struct catalog_inst **v = all_of(AC(a)->cat, rest, &n);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (tag != NULL && !inst_has_tag(v[i], tag))
			continue;
		json_array_append_new(arr, catalog_service_entry(v[i]));
	}
	free(v);
	api_coord_sort_near(a, req, arr);
	reply_read(a, c, req, 200, arr);
}

void api_h_catalog_nodes(struct agent *a, struct http_conn *c, const struct http_request *req,
                         const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_catalog_nodes))
		return;
	const struct catalog *cat = AC(a)->cat;
	json_t *arr = json_array();
	for (size_t i = 0; i < catalog_node_count(cat); i++)
		json_array_append_new(arr, node_json(catalog_node_at(cat, i)));
	api_coord_sort_near(a, req, arr);
	reply_read(a, c, req, 200, arr);
}

/*
 * The Services map of /v1/catalog/node/<node>: each instance as health's
 * `Service` object (Kind and TaggedAddresses included), found through the
 * index so that the tagged addresses are computed as for the other
 * endpoints; a service the index skipped (a bad name) is copied as stored.
 */
static json_t *node_services_json(const struct catalog *cat, const struct catalog_node *n)
{
	json_t *svcs = json_object();
	size_t i;
	json_t *s;
	json_array_foreach(jget(n->doc, "Services"), i, s)
	{
		const char *id = json_string_value(jget(s, "ID"));
		const char *name = json_string_value(jget(s, "Service"));
		if (id == NULL)
			continue;
		const struct catalog_inst *in = NULL;
		size_t nv = 0;
		const struct catalog_inst **v = all_of(cat, name ? name : "", &nv);
		for (size_t k = 0; k < nv && in == NULL; k++)
			if (v[k]->node == n && strcmp(v[k]->id, id) == 0)
				in = v[k];
		free(v);
		json_object_set_new(svcs, id, in != NULL ? service_json(in) : json_deep_copy(s));
	}
	return svcs;
}

void api_h_catalog_node(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_catalog_node))
		return;
	const struct catalog_node *n = catalog_node_get(AC(a)->cat, rest, strlen(rest));
	if (n == NULL) {
		reply_read(a, c, req, 200, json_null());
		return;
	}
	reply_read(a, c, req, 200,
	           json_pack("{s:o, s:o}", "Node", node_json(n), "Services",
	                     node_services_json(AC(a)->cat, n)));
}

/* ------------------------------------------------------------- health endpoints */

void api_h_health_service(struct agent *a, struct http_conn *c, const struct http_request *req,
                          const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_health_service))
		return;
	const char *tag = http_query_get(req, "tag");
	const char *p = http_query_get(req, "passing");
	bool passing = p != NULL && strcmp(p, "0") != 0 && strcasecmp(p, "false") != 0;
	size_t n;
	const struct catalog_inst **v = all_of(AC(a)->cat, rest, &n);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (tag != NULL && !inst_has_tag(v[i], tag))
			continue;
		json_t *checks = node_checks(v[i]->node, v[i]->id);
		if (passing && !all_passing(checks)) {
			json_decref(checks);
			continue;
		}
		json_array_append_new(arr,
		                      json_pack("{s:o, s:o, s:o}", "Node", node_json(v[i]->node),
		                                "Service", service_json(v[i]), "Checks", checks));
	}
	free(v);
	api_coord_sort_near(a, req, arr);
	reply_read(a, c, req, 200, arr);
}

void api_h_health_node(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_health_node))
		return;
	const struct catalog_node *n = catalog_node_get(AC(a)->cat, rest, strlen(rest));
	reply_read(a, c, req, 200, n ? node_checks(n, NULL) : json_array());
}

void api_h_health_checks(struct agent *a, struct http_conn *c, const struct http_request *req,
                         const char *rest)
{
	if (maybe_block(a, c, req, rest, api_h_health_checks))
		return;
	size_t n;
	const struct catalog_inst **v = all_of(AC(a)->cat, rest, &n);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		size_t k;
		json_t *ch;
		json_array_foreach(jget(v[i]->node->doc, "Checks"), k, ch)
		{
			const char *sid = json_string_value(jget(ch, "ServiceID"));
			if (sid == NULL || strcmp(sid, v[i]->id) != 0)
				continue;
			json_t *o = json_deep_copy(ch);
			json_int_t idx = (json_int_t)v[i]->node->modify_index;
			if (json_object_get(o, "CreateIndex") == NULL)
				json_object_set_new(o, "CreateIndex", json_integer(idx));
			if (json_object_get(o, "ModifyIndex") == NULL)
				json_object_set_new(o, "ModifyIndex", json_integer(idx));
			json_array_append_new(arr, o);
		}
	}
	free(v);
	reply_read(a, c, req, 200, arr);
}

void api_h_health_state(struct agent *a, struct http_conn *c, const struct http_request *req,
                        const char *rest)
{
	if (strcmp(rest, "any") != 0 && check_status_parse(rest) < 0) {
		api_reply_text(c, 400, "Invalid state");
		return;
	}
	if (maybe_block(a, c, req, rest, api_h_health_state))
		return;
	const struct catalog *cat = AC(a)->cat;
	json_t *arr = json_array();
	for (size_t i = 0; i < catalog_node_count(cat); i++) {
		json_t *checks = node_checks(catalog_node_at(cat, i), NULL);
		size_t k;
		json_t *ch;
		json_array_foreach(checks, k, ch)
		{
			const char *st = json_string_value(jget(ch, "Status"));
			if (strcmp(rest, "any") == 0 || (st && strcmp(st, rest) == 0))
				json_array_append(arr, ch);
		}
		json_decref(checks);
	}
	reply_read(a, c, req, 200, arr);
}

/* ------------------------------------------------------------ lifecycle */

/*
 * What the catalog lists for member m until a record of it is stored
 * (catalog_derive_node): only a Consul agent (role "node" or "consul") of
 * our datacenter, as Consul's leader reconciles Serf members into its
 * catalog; a plain Serf agent in the cluster is not listed.
 */
static void derive(struct agent *a, struct catalog *cat, const struct swim_member *m)
{
	if (m->id->meta_len == 0)
		return; /* no tags: not a Consul agent */
	static struct tag tags[TAGS_MAX];
	int n = tags_decode(m->id->meta, m->id->meta_len, tags, TAGS_MAX);
	const char *role = "", *dc = "", *id = "";
	for (int i = 0; i < n; i++) {
		if (strcmp(tags[i].key, "role") == 0)
			role = tags[i].value;
		else if (strcmp(tags[i].key, "dc") == 0)
			dc = tags[i].value;
		else if (strcmp(tags[i].key, "id") == 0)
			id = tags[i].value;
	}
	char ip[INET6_ADDRSTRLEN];
	if ((strcmp(role, "node") != 0 && strcmp(role, "consul") != 0) ||
	    strcmp(dc, a->cfg.datacenter) != 0 ||
	    inet_ntop(m->id->addr.len == 4 ? AF_INET : AF_INET6, m->id->addr.ip, ip, sizeof(ip)) ==
	            NULL)
		return;
	char *doc = catalog_derived_doc(m->id->name, id, ip, dc);
	if (doc != NULL)
		catalog_derive_node(cat, m->id->name, doc, strlen(doc));
	free(doc);
}

/*
 * Gossip decides liveness, the catalog only records it. Suspect still counts as
 * alive, as in Consul, so a slow node does not flap out of DNS. A node that left
 * or was reaped loses its catalog entry too; a failed one keeps it, critical.
 */
void api_catalog_member_event(struct agent *a, int type, const struct swim_member *m)
{
	struct agent_catalog *ac = AC(a);
	if (ac == NULL)
		return;
	switch (type) {
	case SWIM_EV_JOIN:
	case SWIM_EV_UPDATE:
		catalog_set_alive(ac->cat, m->id->name, true);
		derive(a, ac->cat, m);
		break;
	case SWIM_EV_SUSPECT:
		catalog_set_alive(ac->cat, m->id->name, true);
		break;
	case SWIM_EV_FAILED:
		catalog_set_alive(ac->cat, m->id->name, false);
		break;
	case SWIM_EV_LEFT:
	case SWIM_EV_REAP:
		catalog_set_alive(ac->cat, m->id->name, false);
		catalog_underive_node(ac->cat, m->id->name);
		catalog_node_gone(ac->cat, m->id->name);
		break;
	}
}

void api_catalog_republish(struct agent *a)
{
	struct agent_catalog *ac = AC(a);
	if (ac != NULL)
		catalog_republish(ac->cat);
}

const struct catalog *api_catalog_catalog(struct agent *a)
{
	return AC(a) != NULL ? AC(a)->cat : NULL;
}

struct catalog *api_catalog_store(struct agent *a)
{
	return AC(a) != NULL ? AC(a)->cat : NULL;
}

struct services *api_catalog_registry(struct agent *a)
{
	return AC(a) != NULL ? AC(a)->svcs : NULL;
}

void api_catalog_attach_store(struct agent *a, void *kv)
{
	if (AC(a) != NULL)
		catalog_attach_store(AC(a)->cat, kv);
}

/*
 * Services from config files are registered before the agent serves anything; a
 * bad definition fails start-up with its position, rather than running without it.
 */
static int load_service_defs(struct agent_catalog *ac, const struct rumor_config *cfg, char *err,
                             size_t errlen)
{
	for (size_t i = 0; i < cfg->service_defs.n; i++) {
		json_error_t je;
		json_t *def = json_loads(cfg->service_defs.items[i], 0, &je);
		char e[400];
		if (def == NULL || services_register(ac->svcs, def, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "service definition %zu: %s", i + 1,
			         def == NULL ? je.text : e);
			json_decref(def);
			return -1;
		}
		json_decref(def);
	}
	return 0;
}

/* Metrics: local services and check states (DNS: agent/agent_dns.c). */
static void catalog_collect(void *ud)
{
	struct agent_catalog *ac = ud;
	metrics_set_gauge(METRIC_SERVICES, (double)services_count(ac->svcs));
	const struct catalog_stats *cs = catalog_stats(ac->cat);
	metrics_set_counter(METRIC_CATALOG_RESYNC_SCAN, cs->resync_scans, (double)cs->resync_scans);
	metrics_set_counter(METRIC_CATALOG_RESYNC_CHANGED, cs->resync_changed,
	                    (double)cs->resync_changed);
	metrics_set_counter(METRIC_CATALOG_REREAD, cs->reread, (double)cs->reread);
	double by[3] = {0, 0, 0};
	json_t *checks = services_agent_checks(ac->svcs);
	const char *id;
	json_t *c;
	json_object_foreach(checks, id, c)
	{
		const char *st = json_string_value(json_object_get(c, "Status"));
		if (st == NULL)
			continue;
		if (strcmp(st, "passing") == 0)
			by[0]++;
		else if (strcmp(st, "warning") == 0)
			by[1]++;
		else
			by[2]++;
	}
	json_decref(checks);
	metrics_set_gauge(METRIC_CHECKS_PASSING, by[0]);
	metrics_set_gauge(METRIC_CHECKS_WARNING, by[1]);
	metrics_set_gauge(METRIC_CHECKS_CRITICAL, by[2]);
}

/* A server registers the `consul` service on its server RPC port, as
 * Consul's servers do, so consul.service.consul finds the servers. */
static int register_consul_service(struct agent_catalog *ac, struct agent *a, char *err,
                                   size_t errlen)
{
	json_t *def = json_pack("{s:s, s:s, s:i}", "ID", "consul", "Name", "consul", "Port",
	                        a->kv != NULL ? kv_sync_port(a->kv) : a->cfg.server_port);
	int rc = services_register(ac->svcs, def, err, errlen);
	json_decref(def);
	return rc;
}

int api_catalog_start(struct agent *a, char *err, size_t errlen)
{
	struct agent_catalog *ac = calloc(1, sizeof(*ac));
	if (ac == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->catalog = ac;
	ac->loop = a->loop;
	ev_timer_init(&ac->wake, wake_cb, 0., 0.);
	ac->wake.data = ac;
	ac->cat = catalog_new(a->cfg.node_name);
	catalog_set_loop(ac->cat, a->loop);
	catalog_on_change(ac->cat, on_catalog_change, ac);
	const char **mk = calloc(a->cfg.node_meta_n + 1, sizeof(char *));
	const char **mv = calloc(a->cfg.node_meta_n + 1, sizeof(char *));
	if (mk == NULL || mv == NULL)
		abort();
	for (size_t i = 0; i < a->cfg.node_meta_n; i++) {
		mk[i] = a->cfg.node_meta[i].key;
		mv[i] = a->cfg.node_meta[i].value;
	}
	struct services_config sc = {
	        .node = a->cfg.node_name,
	        .node_id = a->node_id,
	        .address = a->cfg.advertise_addr,
	        .datacenter = a->cfg.datacenter,
	        .meta_keys = mk,
	        .meta_values = mv,
	        .nmeta = a->cfg.node_meta_n,
	        .enable_script_checks = a->cfg.enable_script_checks,
	};
	char mpath[4096];
	if (a->cfg.data_dir != NULL && a->cfg.data_dir[0] != '\0') {
		snprintf(mpath, sizeof(mpath), "%s/maintenance.json", a->cfg.data_dir);
		sc.maint_path = mpath;
	}
	ac->svcs = services_new(a->loop, ac->cat, &sc);
	free(mk);
	free(mv);
	if (load_service_defs(ac, &a->cfg, err, errlen) < 0)
		goto fail;
	if (server_is_server(a->server) && register_consul_service(ac, a, err, errlen) < 0)
		goto fail;
	services_maintenance_restore(ac->svcs);
	metrics_collector_add(catalog_collect, ac);
	return 0;
fail:
	api_catalog_stop(a);
	return -1;
}

/*
 * Parked requests are answered (with current data) before anything is freed, so
 * no waiter outlives the catalog it would read.
 */
void api_catalog_stop(struct agent *a)
{
	struct agent_catalog *ac = AC(a);
	if (ac == NULL)
		return;
	metrics_collector_remove(catalog_collect, ac);
	while (ac->waiters != NULL)
		waiter_run(ac->waiters);
	ev_timer_stop(ac->loop, &ac->wake);
	services_free(ac->svcs);
	catalog_free(ac->cat);
	free(ac);
	a->catalog = NULL;
}
