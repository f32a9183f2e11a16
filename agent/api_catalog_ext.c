/*
 * agent/api_catalog_ext.c — see api_catalog_ext.h.
 *
 * Register builds the node's next document from its current one (an
 * external node's, or an empty one), in the shape agent/catalog.h
 * describes, so that readers (catalog, health, DNS) treat an external
 * service like any other; only liveness differs (no serfHealth, always
 * alive). Consul decodes request bodies without regard to the case of
 * keys, so the body's keys are matched the same way.
 */
#include "agent/api_catalog_ext.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/api_reply.h"
#include "agent/catalog.h"
#include "agent/checks.h"
#include "agent/env.h"
#include "agent/http/http.h"
#include "agent/services.h"
#include "gossip/swim.h"
#include "gossip/transport.h"

#define ERR_LEN 512

/* The member of object o whose key is k, ignoring case (as Go's JSON). */
static json_t *iget(const json_t *o, const char *k)
{
	const char *key;
	json_t *v;
	if (!json_is_object(o))
		return NULL;
	json_object_foreach((json_t *)o, key, v)
	{
		if (strcasecmp(key, k) == 0)
			return v;
	}
	return NULL;
}

static const char *istr(const json_t *o, const char *k)
{
	const char *s = json_string_value(iget(o, k));
	return s ? s : "";
}

/* A copy of o[k] when it is an object of strings, else an empty object. */
static json_t *string_map(const json_t *o, const char *k)
{
	json_t *out = json_object(), *v;
	const char *key;
	json_object_foreach(iget(o, k), key, v)
	{
		if (json_is_string(v))
			json_object_set(out, key, v);
	}
	return out;
}

/* Index of the element of arr whose field k equals val, or -1. */
static ssize_t find_by(const json_t *arr, const char *k, const char *val)
{
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		const char *s = json_string_value(json_object_get(e, k));
		if (s != NULL && strcmp(s, val) == 0)
			return (ssize_t)i;
	}
	return -1;
}

/* Replaces the element with the same field k as e, or appends e (stolen). */
static void upsert(json_t *arr, const char *k, json_t *e)
{
	ssize_t i = find_by(arr, k, json_string_value(json_object_get(e, k)));
	if (i >= 0)
		json_array_set_new(arr, (size_t)i, e);
	else
		json_array_append_new(arr, e);
}

/*
 * The node belongs to an agent when gossip knows a member of that name or an
 * agent publishes its record: such a record is rewritten by its agent at its
 * next change, so a write here would be lost or would overwrite the agent's.
 */
static bool agent_node(struct agent *a, const char *node)
{
	const struct catalog_node *n = catalog_node_get(api_catalog_store(a), node, strlen(node));
	if (n != NULL && !n->external)
		return true;
	return swim_member_find(gossip_transport_swim(a->gossip), node) != NULL;
}

static bool refuse_agent_node(struct agent *a, struct http_conn *c, const char *node)
{
	if (!agent_node(a, node))
		return false;
	char msg[700];
	snprintf(msg, sizeof(msg),
	         "Node %s is a rumor agent's node: register and deregister its services "
	         "through /v1/agent/service/* on that agent (its agent keeps its catalog "
	         "record, as Consul's anti-entropy does)",
	         node);
	api_reply_text(c, 400, msg);
	return true;
}

/* Consul's service object (catalog.h's node document shape) from the body's
 * Service; NULL with err when it has no name or a bad port. */
static json_t *service_from(const json_t *sv, char *err, size_t errlen)
{
	const char *name = istr(sv, "Service");
	if (name[0] == '\0') {
		snprintf(err, errlen, "Must provide service name");
		return NULL;
	}
	const char *id = istr(sv, "ID");
	json_int_t port = json_integer_value(iget(sv, "Port"));
	if (port < 0 || port > 65535) {
		snprintf(err, errlen, "Invalid service port %lld", (long long)port);
		return NULL;
	}
	json_t *tags = json_array(), *t;
	size_t i;
	json_array_foreach(iget(sv, "Tags"), i, t)
	{
		if (json_is_string(t))
			json_array_append(tags, t);
	}
	const json_t *w = iget(sv, "Weights");
	json_int_t wp =
	        json_is_integer(iget(w, "Passing")) ? json_integer_value(iget(w, "Passing")) : 1;
	json_int_t ww =
	        json_is_integer(iget(w, "Warning")) ? json_integer_value(iget(w, "Warning")) : 1;
	json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:s, s:b, s:{s:I, s:I}}", "ID",
	                      id[0] ? id : name, "Service", name, "Tags", tags, "Meta",
	                      string_map(sv, "Meta"), "Port", port, "Address", istr(sv, "Address"),
	                      "EnableTagOverride", json_is_true(iget(sv, "EnableTagOverride")),
	                      "Weights", "Passing", wp, "Warning", ww);
	if (json_is_object(iget(sv, "TaggedAddresses")))
		json_object_set_new(o, "TaggedAddresses",
		                    json_deep_copy(iget(sv, "TaggedAddresses")));
	return o;
}

/* A check of the body, with its status as given (critical when absent, as
 * Consul's state store defaults it); its service must be on the node. */
static json_t *check_from(const json_t *ck, const char *node, const json_t *svcs, char *err,
                          size_t errlen)
{
	const char *id = istr(ck, "CheckID");
	const char *name = istr(ck, "Name");
	if (id[0] == '\0')
		id = name;
	if (id[0] == '\0') {
		snprintf(err, errlen, "Missing check ID");
		return NULL;
	}
	const char *st = istr(ck, "Status");
	if (st[0] == '\0')
		st = "critical";
	if (check_status_parse(st) < 0) {
		snprintf(err, errlen, "Invalid check status: \"%s\"", st);
		return NULL;
	}
	const char *sid = istr(ck, "ServiceID");
	const json_t *sv = NULL;
	if (sid[0] != '\0') {
		ssize_t k = find_by(svcs, "ID", sid);
		if (k < 0) {
			snprintf(err, errlen, "Missing service registration for check \"%s\"", id);
			return NULL;
		}
		sv = json_array_get(svcs, (size_t)k);
	}
	json_t *tags = sv ? json_deep_copy(json_object_get(sv, "Tags")) : json_array();
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "Node", node,
	                 "CheckID", id, "Name", name[0] ? name : id, "Status", st, "Notes",
	                 istr(ck, "Notes"), "Output", istr(ck, "Output"), "ServiceID", sid,
	                 "ServiceName", sv ? json_string_value(json_object_get(sv, "Service")) : "",
	                 "ServiceTags", tags, "Type", "");
}

/* The node's current document (a copy) or a new empty one. */
static json_t *current_doc(struct agent *a, const char *node)
{
	const struct catalog_node *n = catalog_node_get(api_catalog_store(a), node, strlen(node));
	if (n != NULL && n->external)
		return json_deep_copy(n->doc);
	return json_pack("{s:s, s:s, s:s, s:s, s:{}, s:{}, s:[], s:[]}", "Node", node, "ID", "",
	                 "Address", "", "Datacenter", a->cfg.datacenter, "TaggedAddresses", "Meta",
	                 "Services", "Checks");
}

/* Applies the body to doc: node fields, the service, the checks. */
static int apply_register(json_t *doc, const json_t *body, const char *node, char *err,
                          size_t errlen)
{
	json_object_set_new(doc, "Address", json_string(istr(body, "Address")));
	if (istr(body, "ID")[0] != '\0')
		json_object_set_new(doc, "ID", json_string(istr(body, "ID")));
	if (json_is_object(iget(body, "TaggedAddresses")))
		json_object_set_new(doc, "TaggedAddresses", string_map(body, "TaggedAddresses"));
	if (json_is_object(iget(body, "NodeMeta")))
		json_object_set_new(doc, "Meta", string_map(body, "NodeMeta"));
	json_t *svcs = json_object_get(doc, "Services"), *chks = json_object_get(doc, "Checks");
	const json_t *sv = iget(body, "Service");
	if (json_is_object(sv)) {
		json_t *o = service_from(sv, err, errlen);
		if (o == NULL)
			return -1;
		upsert(svcs, "ID", o);
	}
	json_t *all = json_array();
	if (json_is_object(iget(body, "Check")))
		json_array_append(all, iget(body, "Check"));
	if (json_is_array(iget(body, "Checks")))
		json_array_extend(all, iget(body, "Checks"));
	size_t i;
	json_t *ck;
	json_array_foreach(all, i, ck)
	{
		json_t *o = check_from(ck, node, svcs, err, errlen);
		if (o == NULL) {
			json_decref(all);
			return -1;
		}
		upsert(chks, "CheckID", o);
	}
	json_decref(all);
	return 0;
}

static json_t *body_json(struct http_conn *c, const struct http_request *req)
{
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, 0, &je);
	if (!json_is_object(body)) {
		char msg[300];
		snprintf(msg, sizeof(msg), "Request decode failed: %s",
		         body == NULL ? je.text : "not a JSON object");
		api_reply_text(c, 400, msg);
		json_decref(body);
		return NULL;
	}
	return body;
}

void api_h_catalog_register(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest)
{
	json_t *body = body_json(c, req);
	if (body == NULL)
		return;
	const char *node = istr(body, "Node");
	char err[ERR_LEN];
	if (node[0] == '\0' || istr(body, "Address")[0] == '\0') {
		api_reply_text(c, 400,
		               node[0] == '\0' ? "Must provide node" : "Must provide address");
		json_decref(body);
		return;
	}
	if (refuse_agent_node(a, c, node)) {
		json_decref(body);
		return;
	}
	json_t *doc = current_doc(a, node);
	const char *name = json_string_value(json_object_get(doc, "Node"));
	char *keep = strdup(name ? name : node); /* an existing node keeps its spelling */
	if (keep == NULL)
		abort();
	if (apply_register(doc, body, keep, err, sizeof(err)) < 0 ||
	    catalog_put_external(api_catalog_store(a), keep, json_incref(doc), err, sizeof(err)) <
	            0) {
		api_reply_text(c, 400, err);
	} else {
		api_reply_json(c, req, 200, json_true());
	}
	free(keep);
	json_decref(doc);
	json_decref(body);
}

/* Removes the service (and its checks) or the check from an external node's
 * document; without either, the whole node. Unknown ones answer true, as
 * Consul's deregistration of something absent. */
void api_h_catalog_deregister(struct agent *a, struct http_conn *c, const struct http_request *req,
                              const char *rest)
{
	json_t *body = body_json(c, req);
	if (body == NULL)
		return;
	const char *node = istr(body, "Node"), *sid = istr(body, "ServiceID"),
	           *cid = istr(body, "CheckID");
	struct catalog *cat = api_catalog_store(a);
	const struct catalog_node *n = catalog_node_get(cat, node, strlen(node));
	char err[ERR_LEN] = "";
	if (node[0] == '\0') {
		api_reply_text(c, 400, "Must provide node");
	} else if (refuse_agent_node(a, c, node)) {
		/* answered */
	} else if (n == NULL) {
		api_reply_json(c, req, 200, json_true());
	} else if (sid[0] == '\0' && cid[0] == '\0') {
		catalog_delete_external(cat, n->name);
		api_reply_json(c, req, 200, json_true());
	} else {
		json_t *doc = json_deep_copy(n->doc);
		char *name = strdup(n->name);
		if (name == NULL)
			abort();
		json_t *svcs = json_object_get(doc, "Services"),
		       *chks = json_object_get(doc, "Checks");
		ssize_t i;
		if (sid[0] != '\0' && (i = find_by(svcs, "ID", sid)) >= 0)
			json_array_remove(svcs, (size_t)i);
		while (sid[0] != '\0' && (i = find_by(chks, "ServiceID", sid)) >= 0)
			json_array_remove(chks, (size_t)i);
		if (cid[0] != '\0' && (i = find_by(chks, "CheckID", cid)) >= 0)
			json_array_remove(chks, (size_t)i);
		if (catalog_put_external(cat, name, doc, err, sizeof(err)) < 0)
			api_reply_text(c, 400, err);
		else
			api_reply_json(c, req, 200, json_true());
		free(name);
	}
	json_decref(body);
}

/* One datacenter: the agent's (rumor has no WAN federation). */
void api_h_catalog_datacenters(struct agent *a, struct http_conn *c, const struct http_request *req,
                               const char *rest)
{
	api_reply_json(c, req, 200, json_pack("[s]", a->cfg.datacenter));
}

/* ?enable as Go's strconv.ParseBool; -1 (answered 400) when missing or bad. */
static int enable_param(struct http_conn *c, const struct http_request *req)
{
	const char *v = http_query_get(req, "enable");
	static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
	if (v == NULL) {
		api_reply_text(c, 400, "Missing value for enable");
		return -1;
	}
	for (size_t i = 0; i < 6; i++) {
		if (strcmp(v, yes[i]) == 0)
			return 1;
		if (strcmp(v, no[i]) == 0)
			return 0;
	}
	char msg[300];
	snprintf(msg, sizeof(msg), "Invalid value for enable: \"%.200s\"", v);
	api_reply_text(c, 400, msg);
	return -1;
}

void api_h_agent_maintenance(struct agent *a, struct http_conn *c, const struct http_request *req,
                             const char *rest)
{
	int en = enable_param(c, req);
	if (en < 0)
		return;
	services_node_maintenance(api_catalog_registry(a), en == 1, http_query_get(req, "reason"));
	http_respond(c, 200, NULL, "", 0);
}

void api_h_service_maintenance(struct agent *a, struct http_conn *c, const struct http_request *req,
                               const char *rest)
{
	if (rest[0] == '\0') {
		api_reply_text(c, 400, "Missing service ID");
		return;
	}
	int en = enable_param(c, req);
	if (en < 0)
		return;
	char err[ERR_LEN];
	int rc = services_service_maintenance(api_catalog_registry(a), rest, en == 1,
	                                      http_query_get(req, "reason"), err, sizeof(err));
	if (rc < 0) {
		api_reply_text(c, rc == -2 ? 404 : 400, err);
		return;
	}
	http_respond(c, 200, NULL, "", 0);
}
