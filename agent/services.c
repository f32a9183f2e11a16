/*
 * agent/services.c — see services.h.
 *
 * Each service is kept as its canonical JSON object (the shape of
 * /v1/agent/services), each check as a struct with its runner.  A check
 * result that changes the status republishes the node document; a result
 * that only changes the output is kept locally (shown by /v1/agent/checks)
 * and travels with the next published change, as Consul's anti-entropy
 * defers output-only updates.
 */
#include "agent/services.h"

#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/checks.h"
#include "agent/config.h"
#include "lib/log.h"

struct chk {
	struct services *owner;
	char *id, *name, *service_id, *service_name, *notes, *type;
	char *output;
	enum catalog_health status;
	bool maint; /* a maintenance check: no runner, critical until removed */
	struct check_runner *run;
	int64_t dereg_ms;
	ev_timer dereg;
};

struct svc {
	char *id;
	json_t *obj; /* canonical: ID, Service, Tags, Meta, Port, Address, ... */
};

struct services {
	struct ev_loop *loop;
	struct catalog *cat;
	char *node, *node_id, *address, *dc;
	json_t *meta;
	bool scripts;
	char *maint_path; /* where maintenance is kept across restarts; NULL: not kept */
	struct svc **svcs;
	size_t nsvcs;
	struct chk **chks;
	size_t nchks;
};

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

/* ------------------------------------------------------------ JSON keys */

/*
 * Consul decodes definitions case-insensitively and accepts snake_case
 * (enable_tag_override for EnableTagOverride), so keys compare ignoring case and
 * underscores; a definition written for Consul must load unchanged.
 */
static bool key_eq(const char *have, const char *want)
{
	for (;;) {
		while (*have == '_')
			have++;
		while (*want == '_')
			want++;
		if (tolower((unsigned char)*have) != tolower((unsigned char)*want))
			return false;
		if (*have == '\0')
			return true;
		have++;
		want++;
	}
}

static json_t *jget(const json_t *o, const char *key)
{
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return NULL;
	json_object_foreach((json_t *)o, k, v)
	{
		if (key_eq(k, key))
			return v;
	}
	return NULL;
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(jget(o, key));
}

/*
 * Durations come as Go strings ("10s") or, from Go clients that marshal a
 * time.Duration, as integer nanoseconds; both are accepted, anything else is an
 * error naming the field.
 */
static int jdur(const json_t *o, const char *key, int64_t *ms, char *err, size_t errlen)
{
	json_t *v = jget(o, key);
	*ms = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v)) { /* Go's time.Duration: nanoseconds */
		*ms = json_integer_value(v) / 1000000;
		return 0;
	}
	if (!json_is_string(v) || rumor_parse_duration(json_string_value(v), ms) < 0) {
		snprintf(err, errlen, "invalid duration for %s", key);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- lists */

static struct svc *svc_find(const struct services *s, const char *id, size_t *pos)
{
	for (size_t i = 0; i < s->nsvcs; i++)
		if (strcmp(s->svcs[i]->id, id) == 0) {
			if (pos)
				*pos = i;
			return s->svcs[i];
		}
	return NULL;
}

static struct chk *chk_find(const struct services *s, const char *id, size_t *pos)
{
	for (size_t i = 0; i < s->nchks; i++)
		if (strcmp(s->chks[i]->id, id) == 0) {
			if (pos)
				*pos = i;
			return s->chks[i];
		}
	return NULL;
}

static void chk_free(struct chk *c)
{
	if (c == NULL)
		return;
	check_runner_free(c->run);
	ev_timer_stop(c->owner->loop, &c->dereg);
	free(c->id);
	free(c->name);
	free(c->service_id);
	free(c->service_name);
	free(c->notes);
	free(c->type);
	free(c->output);
	free(c);
}

static void maint_save(const struct services *s);

/* ------------------------------------------------------------ publishing */

static json_t *check_json(const struct services *s, const struct chk *c)
{
	json_t *tags = json_array();
	struct svc *sv = c->service_id[0] ? svc_find(s, c->service_id, NULL) : NULL;
	if (sv != NULL)
		json_array_extend(tags, json_object_get(sv->obj, "Tags"));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "Node", s->node,
	                 "CheckID", c->id, "Name", c->name, "Status", check_status_name(c->status),
	                 "Notes", c->notes, "Output", c->output, "ServiceID", c->service_id,
	                 "ServiceName", c->service_name, "ServiceTags", tags, "Type", c->type);
}

/*
 * The whole node document is rebuilt and published on every change rather than
 * patched: the catalog replaces a node's record whole, so a partial document
 * would drop services.
 */
static void publish(struct services *s)
{
	json_t *svcs = json_array(), *chks = json_array();
	for (size_t i = 0; i < s->nsvcs; i++)
		json_array_append(svcs, s->svcs[i]->obj);
	for (size_t i = 0; i < s->nchks; i++)
		json_array_append_new(chks, check_json(s, s->chks[i]));
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:O, s:o, s:o}", "Node",
	                        s->node, "ID", s->node_id, "Address", s->address, "Datacenter",
	                        s->dc, "TaggedAddresses", "lan", s->address, "wan", s->address,
	                        "Meta", s->meta, "Services", svcs, "Checks", chks);
	catalog_publish(s->cat, doc);
}

/* --------------------------------------------------------------- results */

/*
 * DeregisterCriticalServiceAfter: the check removes its service (or itself, if
 * node-level). The ID is copied first, because deregistering frees the check
 * this timer belongs to.
 */
static void dereg_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct chk *c = w->data;
	struct services *s = c->owner;
	char err[128];
	char *sid = xstrdup(c->service_id);
	log_info("agent: Check %s has been critical for too long; deregistered service %s", c->id,
	         sid);
	if (sid[0] != '\0')
		services_deregister(s, sid, err, sizeof(err));
	else
		services_check_deregister(s, c->id, err, sizeof(err));
	free(sid);
}

/* A check's identity and first status, its deregistration timer ready (not
 * armed); the caller adds the rest (a runner, or the maintenance flag). */
static struct chk *chk_alloc(struct services *s, const char *id, const char *name,
                             const char *svc_id, const char *svc_name, const char *notes,
                             const char *type, enum catalog_health status)
{
	struct chk *c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->owner = s;
	c->id = xstrdup(id);
	c->name = xstrdup(name);
	c->service_id = xstrdup(svc_id);
	c->service_name = xstrdup(svc_name);
	c->notes = xstrdup(notes);
	c->type = xstrdup(type);
	c->output = xstrdup("");
	c->status = status;
	ev_timer_init(&c->dereg, dereg_cb, 0., 0.);
	c->dereg.data = c;
	return c;
}

/*
 * Only a status change is published and logged; an output-only change stays
 * local until the next one, as Consul's anti-entropy defers it, so a check with
 * a changing output does not rewrite the node's record every interval.
 */
static void set_status(struct chk *c, enum catalog_health st, const char *output)
{
	struct services *s = c->owner;
	free(c->output);
	c->output = xstrdup(output);
	if (st == c->status)
		return;
	log_info("agent: Check %s is now %s", c->id, check_status_name(st));
	c->status = st;
	if (c->dereg_ms > 0) {
		if (st == CATALOG_CRITICAL) {
			ev_timer_set(&c->dereg, (double)c->dereg_ms / 1000.0, 0.);
			ev_timer_start(s->loop, &c->dereg);
		} else {
			ev_timer_stop(s->loop, &c->dereg);
		}
	}
	publish(s);
}

static void result_cb(void *ud, enum catalog_health st, const char *output)
{
	set_status(ud, st, output);
}

/* ---------------------------------------------------------------- checks */

/* Parses one check definition into a new (not yet started) chk. */
static struct chk *parse_check(struct services *s, const json_t *def, const char *svc_id,
                               const char *svc_name, const char *default_id, char *err,
                               size_t errlen)
{
	if (!json_is_object(def)) {
		snprintf(err, errlen, "check definition must be an object");
		return NULL;
	}
	struct check_def d;
	memset(&d, 0, sizeof(d));
	char *argv_store[65];
	char *script_argv[4] = {"/bin/sh", "-c", NULL, NULL};
	const char *type;
	if (jdur(def, "TTL", &d.ttl_ms, err, errlen) < 0 ||
	    jdur(def, "Interval", &d.interval_ms, err, errlen) < 0 ||
	    jdur(def, "Timeout", &d.timeout_ms, err, errlen) < 0)
		return NULL;
	int64_t dereg = 0;
	if (jdur(def, "DeregisterCriticalServiceAfter", &dereg, err, errlen) < 0)
		return NULL;
	json_t *args = jget(def, "Args");
	if (args == NULL)
		args = jget(def, "ScriptArgs");
	if (d.ttl_ms > 0) {
		d.kind = CHECK_TTL;
		type = "ttl";
	} else if (jstr(def, "TCP") != NULL) {
		d.kind = CHECK_TCP;
		d.target = jstr(def, "TCP");
		type = "tcp";
	} else if (jstr(def, "HTTP") != NULL) {
		d.kind = CHECK_HTTP;
		d.target = jstr(def, "HTTP");
		type = "http";
	} else if (json_is_array(args) || jstr(def, "Script") != NULL) {
		if (!s->scripts) {
			snprintf(err, errlen,
			         "Scripts are disabled on this agent; to enable, configure "
			         "'enable_script_checks' to true");
			return NULL;
		}
		d.kind = CHECK_SCRIPT;
		type = "script";
		if (json_is_array(args)) {
			size_t n = 0, i;
			json_t *a;
			json_array_foreach(args, i, a)
			{
				if (!json_is_string(a) || n >= 64) {
					snprintf(err, errlen, "Args must be at most 64 strings");
					return NULL;
				}
				argv_store[n++] = (char *)json_string_value(a);
			}
			argv_store[n] = NULL;
			d.args = argv_store;
		} else {
			script_argv[2] = (char *)jstr(def, "Script");
			d.args = script_argv;
		}
	} else {
		snprintf(err, errlen,
		         "Check types that are not supported: need one of TTL, TCP, "
		         "HTTP, Args");
		return NULL;
	}
	const char *id = jstr(def, "CheckID");
	if (id == NULL)
		id = jstr(def, "ID");
	if (id == NULL || id[0] == '\0')
		id = default_id;
	if (id == NULL || id[0] == '\0') {
		snprintf(err, errlen, "Missing check ID or name");
		return NULL;
	}
	const char *name = jstr(def, "Name");
	char namebuf[300];
	if (name == NULL || name[0] == '\0') {
		if (svc_name != NULL) {
			snprintf(namebuf, sizeof(namebuf), "Service '%s' check", svc_name);
			name = namebuf;
		} else {
			name = id;
		}
	}
	int st = CATALOG_CRITICAL;
	const char *sts = jstr(def, "Status");
	if (sts != NULL && sts[0] != '\0') {
		st = check_status_parse(sts);
		if (st < 0) {
			snprintf(err, errlen, "Invalid check status \"%s\"", sts);
			return NULL;
		}
	}
	struct chk *c = chk_alloc(s, id, name, svc_id, svc_name, jstr(def, "Notes"), type,
	                          (enum catalog_health)st);
	c->dereg_ms = dereg;
	c->run = check_runner_new(s->loop, &d, result_cb, c, err, errlen);
	if (c->run == NULL) {
		chk_free(c);
		return NULL;
	}
	if (c->status == CATALOG_CRITICAL && c->dereg_ms > 0) {
		ev_timer_set(&c->dereg, (double)c->dereg_ms / 1000.0, 0.);
		ev_timer_start(s->loop, &c->dereg);
	}
	return c;
}

/*
 * A check registered again under the same ID replaces the old one in place (its
 * runner stopped), keeping the list order stable for the published document.
 */
static void chk_add(struct services *s, struct chk *c)
{
	size_t pos;
	struct chk *old = chk_find(s, c->id, &pos);
	if (old != NULL) {
		chk_free(old);
		s->chks[pos] = c;
		return;
	}
	s->chks = realloc(s->chks, (s->nchks + 1) * sizeof(*s->chks));
	if (s->chks == NULL)
		abort();
	s->chks[s->nchks++] = c;
}

/* Removes the checks of a service; its maintenance check too unless keep_maint
 * (a re-registration keeps the service in maintenance, as Consul does). */
static void remove_checks_of(struct services *s, const char *svc_id, bool keep_maint)
{
	size_t o = 0;
	for (size_t i = 0; i < s->nchks; i++) {
		if (strcmp(s->chks[i]->service_id, svc_id) == 0 &&
		    !(keep_maint && s->chks[i]->maint))
			chk_free(s->chks[i]);
		else
			s->chks[o++] = s->chks[i];
	}
	s->nchks = o;
}

/* -------------------------------------------------------------- services */

/*
 * All-or-nothing: the service and every one of its checks are parsed before
 * anything changes, so a bad check leaves the previous registration intact.
 * Re-registering an ID replaces the service and drops its old checks, as Consul.
 */
int services_register(struct services *s, const json_t *def, char *err, size_t errlen)
{
	if (!json_is_object(def)) {
		snprintf(err, errlen,
		         "Request decode failed: service definition must be an object");
		return -1;
	}
	const char *name = jstr(def, "Name");
	if (name == NULL || name[0] == '\0') {
		snprintf(err, errlen, "Missing service name");
		return -1;
	}
	const char *id = jstr(def, "ID");
	if (id == NULL || id[0] == '\0')
		id = name;
	json_t *tags = json_array(), *meta = json_object();
	json_t *t = jget(def, "Tags"), *v;
	size_t i;
	const char *k;
	if (t != NULL && !json_is_null(t)) {
		if (!json_is_array(t))
			goto bad_tags;
		json_array_foreach(t, i, v)
		{
			if (!json_is_string(v))
				goto bad_tags;
			json_array_append(tags, v);
		}
	}
	json_t *m = jget(def, "Meta");
	if (json_is_object(m)) {
		json_object_foreach(m, k, v)
		{
			if (json_is_string(v))
				json_object_set(meta, k, v);
		}
	}
	json_t *portj = jget(def, "Port");
	json_int_t port = json_is_integer(portj) ? json_integer_value(portj) : 0;
	if (port < 0 || port > 65535) {
		snprintf(err, errlen, "Invalid service port %lld", (long long)port);
		json_decref(tags);
		json_decref(meta);
		return -1;
	}
	json_t *w = jget(def, "Weights");
	json_int_t wp =
	        json_is_integer(jget(w, "Passing")) ? json_integer_value(jget(w, "Passing")) : 1;
	json_int_t ww =
	        json_is_integer(jget(w, "Warning")) ? json_integer_value(jget(w, "Warning")) : 1;
	const char *addr = jstr(def, "Address");
	json_t *obj = json_pack("{s:s, s:s, s:o, s:o, s:I, s:s, s:b, s:{s:I, s:I}}", "ID", id,
	                        "Service", name, "Tags", tags, "Meta", meta, "Port",
	                        (json_int_t)port, "Address", addr ? addr : "", "EnableTagOverride",
	                        json_is_true(jget(def, "EnableTagOverride")), "Weights", "Passing",
	                        wp, "Warning", ww);

	/* checks: parse them all before changing anything */
	json_t *defs = json_array();
	json_t *one = jget(def, "Check");
	if (json_is_object(one) && json_object_size(one) > 0)
		json_array_append(defs, one);
	json_t *many = jget(def, "Checks");
	if (json_is_array(many))
		json_array_extend(defs, many);
	size_t nc = json_array_size(defs);
	struct chk **newc = calloc(nc ? nc : 1, sizeof(*newc));
	if (newc == NULL)
		abort();
	for (i = 0; i < nc; i++) {
		char defid[600];
		if (nc == 1)
			snprintf(defid, sizeof(defid), "service:%s", id);
		else
			snprintf(defid, sizeof(defid), "service:%s:%zu", id, i + 1);
		newc[i] = parse_check(s, json_array_get(defs, i), id, name, defid, err, errlen);
		if (newc[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				chk_free(newc[j]);
			free(newc);
			json_decref(defs);
			json_decref(obj);
			return -1;
		}
	}
	json_decref(defs);
	size_t pos;
	struct svc *old = svc_find(s, id, &pos);
	if (old != NULL) {
		remove_checks_of(s, id, true);
		json_decref(old->obj);
		old->obj = obj;
	} else {
		struct svc *sv = calloc(1, sizeof(*sv));
		if (sv == NULL)
			abort();
		sv->id = xstrdup(id);
		sv->obj = obj;
		s->svcs = realloc(s->svcs, (s->nsvcs + 1) * sizeof(*s->svcs));
		if (s->svcs == NULL)
			abort();
		s->svcs[s->nsvcs++] = sv;
	}
	for (i = 0; i < nc; i++)
		chk_add(s, newc[i]);
	free(newc);
	log_info("agent: Synced service \"%s\"", id);
	publish(s);
	return 0;
bad_tags:
	json_decref(tags);
	json_decref(meta);
	snprintf(err, errlen, "Tags must be an array of strings");
	return -1;
}

/*
 * -2 (unknown ID) lets the API answer 404, as Consul does; the message points at
 * the usual mistake of passing the service's name instead of its ID.
 */
int services_deregister(struct services *s, const char *id, char *err, size_t errlen)
{
	size_t pos;
	struct svc *sv = svc_find(s, id, &pos);
	if (sv == NULL) {
		snprintf(err, errlen,
		         "Unknown service ID \"%s\". Ensure that the service ID is passed, "
		         "not the service name.",
		         id);
		return -2;
	}
	char mid[600];
	snprintf(mid, sizeof(mid), "%s%s", SERVICES_MAINT_PREFIX, id);
	bool was_maint = chk_find(s, mid, NULL) != NULL;
	remove_checks_of(s, id, false);
	json_decref(sv->obj);
	free(sv->id);
	free(sv);
	memmove(s->svcs + pos, s->svcs + pos + 1, (s->nsvcs - pos - 1) * sizeof(*s->svcs));
	s->nsvcs--;
	log_info("agent: Deregistered service \"%s\"", id);
	publish(s);
	if (was_maint)
		maint_save(s);
	return 0;
}

int services_check_register(struct services *s, const json_t *def, char *err, size_t errlen)
{
	const char *sid = jstr(def, "ServiceID");
	const char *sname = NULL;
	if (sid != NULL && sid[0] != '\0') {
		struct svc *sv = svc_find(s, sid, NULL);
		if (sv == NULL) {
			snprintf(err, errlen, "ServiceID \"%s\" does not exist", sid);
			return -1;
		}
		sname = json_string_value(json_object_get(sv->obj, "Service"));
	} else {
		sid = "";
	}
	const char *nm = jstr(def, "Name");
	struct chk *c = parse_check(s, def, sid, sname, nm, err, errlen);
	if (c == NULL)
		return -1;
	chk_add(s, c);
	publish(s);
	return 0;
}

int services_check_deregister(struct services *s, const char *id, char *err, size_t errlen)
{
	size_t pos;
	struct chk *c = chk_find(s, id, &pos);
	if (c == NULL) {
		snprintf(err, errlen, "Unknown check ID \"%s\"", id);
		return -2;
	}
	bool was_maint = c->maint;
	chk_free(c);
	memmove(s->chks + pos, s->chks + pos + 1, (s->nchks - pos - 1) * sizeof(*s->chks));
	s->nchks--;
	publish(s);
	if (was_maint)
		maint_save(s);
	return 0;
}

/*
 * Only TTL checks take a status from outside; the TTL is re-armed before the
 * status is set, so the update cannot be overtaken by its own expiry.
 */
int services_check_update(struct services *s, const char *id, enum catalog_health st,
                          const char *output, char *err, size_t errlen)
{
	struct chk *c = chk_find(s, id, NULL);
	if (c == NULL) {
		snprintf(err, errlen, "Unknown check ID \"%s\"", id);
		return -2;
	}
	if (strcmp(c->type, "ttl") != 0) {
		snprintf(err, errlen, "Check \"%s\" is not a TTL check", id);
		return -1;
	}
	check_runner_ttl_reset(c->run);
	set_status(c, st, output ? output : "");
	return 0;
}

/* ----------------------------------------------------------- maintenance */

/*
 * A maintenance check is Consul's: critical, no runner, Notes = the reason.
 * It is a check like the others in the published document, so every agent's
 * health, DNS and ?passing filters drop the node (node-level check) or the
 * service without knowing maintenance exists.
 */
static struct chk *maint_new(struct services *s, const char *id, const char *name,
                             const char *svc_id, const char *svc_name, const char *reason)
{
	struct chk *c = chk_alloc(s, id, name, svc_id, svc_name, reason, "", CATALOG_CRITICAL);
	c->maint = true;
	return c;
}

/*
 * What is in maintenance, as {"Node":{"Reason"},"Services":{"<id>":{"Reason"}}},
 * written whole to a temporary file and renamed over the old one, so a crash
 * leaves either the old state or the new, never half of one. Consul keeps its
 * maintenance checks in data_dir/checks for the same reason: maintenance must
 * outlive a restart, or a node being worked on would rejoin the pool.
 */
static void maint_save(const struct services *s)
{
	if (s->maint_path == NULL)
		return;
	json_t *svcs = json_object(), *root = json_object();
	for (size_t i = 0; i < s->nchks; i++) {
		const struct chk *c = s->chks[i];
		if (!c->maint)
			continue;
		json_t *r = json_pack("{s:s}", "Reason", c->notes);
		if (c->service_id[0] == '\0')
			json_object_set_new(root, "Node", r);
		else
			json_object_set_new(svcs, c->service_id, r);
	}
	json_object_set_new(root, "Services", svcs);
	size_t n = strlen(s->maint_path) + 8;
	char *tmp = malloc(n);
	if (tmp == NULL)
		abort();
	snprintf(tmp, n, "%s.tmp", s->maint_path);
	if (json_dump_file(root, tmp, JSON_COMPACT) != 0 || rename(tmp, s->maint_path) != 0) {
		log_warn("agent: cannot save the maintenance state to %s: %s", s->maint_path,
		         strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	json_decref(root);
}

/* Enabling twice keeps the first reason, as Consul's EnableNodeMaintenance. */
void services_node_maintenance(struct services *s, bool enable, const char *reason)
{
	size_t pos;
	struct chk *c = chk_find(s, SERVICES_NODE_MAINT, &pos);
	if (enable == (c != NULL))
		return;
	if (enable) {
		chk_add(s, maint_new(s, SERVICES_NODE_MAINT, "Node Maintenance Mode", "", "",
		                     reason != NULL && reason[0] != '\0'
		                             ? reason
		                             : SERVICES_NODE_MAINT_DEFAULT));
		log_info("agent: Node entered maintenance mode");
	} else {
		chk_free(c);
		memmove(s->chks + pos, s->chks + pos + 1, (s->nchks - pos - 1) * sizeof(*s->chks));
		s->nchks--;
		log_info("agent: Node left maintenance mode");
	}
	publish(s);
	maint_save(s);
}

int services_service_maintenance(struct services *s, const char *id, bool enable,
                                 const char *reason, char *err, size_t errlen)
{
	struct svc *sv = svc_find(s, id, NULL);
	if (sv == NULL) {
		snprintf(err, errlen, "No service registered with ID \"%s\"", id);
		return -2;
	}
	char mid[600];
	snprintf(mid, sizeof(mid), "%s%s", SERVICES_MAINT_PREFIX, id);
	size_t pos;
	struct chk *c = chk_find(s, mid, &pos);
	if (enable == (c != NULL))
		return 0;
	if (enable) {
		const char *name = json_string_value(json_object_get(sv->obj, "Service"));
		chk_add(s, maint_new(s, mid, "Service Maintenance Mode", id, name,
		                     reason != NULL && reason[0] != '\0'
		                             ? reason
		                             : SERVICES_SERVICE_MAINT_DEFAULT));
		log_info("agent: Service \"%s\" entered maintenance mode", id);
	} else {
		chk_free(c);
		memmove(s->chks + pos, s->chks + pos + 1, (s->nchks - pos - 1) * sizeof(*s->chks));
		s->nchks--;
		log_info("agent: Service \"%s\" left maintenance mode", id);
	}
	publish(s);
	maint_save(s);
	return 0;
}

/*
 * Read once at start, after the services of the config files are registered.
 * A service in maintenance that no longer exists (services registered over
 * HTTP are not kept across restarts) is logged and forgotten.
 */
void services_maintenance_restore(struct services *s)
{
	if (s->maint_path == NULL)
		return;
	json_error_t je;
	json_t *root = json_load_file(s->maint_path, 0, &je);
	if (root == NULL) {
		if (errno != ENOENT)
			log_warn("agent: cannot read the maintenance state %s: %s", s->maint_path,
			         je.text);
		return;
	}
	json_t *node = json_object_get(root, "Node");
	if (json_is_object(node))
		services_node_maintenance(s, true,
		                          json_string_value(json_object_get(node, "Reason")));
	const char *id;
	json_t *v;
	json_object_foreach(json_object_get(root, "Services"), id, v)
	{
		char err[700];
		if (services_service_maintenance(s, id, true,
		                                 json_string_value(json_object_get(v, "Reason")),
		                                 err, sizeof(err)) < 0)
			log_warn("agent: maintenance of service \"%s\" not restored: %s", id, err);
	}
	json_decref(root);
	maint_save(s);
}

json_t *services_agent_services(const struct services *s)
{
	json_t *o = json_object();
	for (size_t i = 0; i < s->nsvcs; i++)
		json_object_set(o, s->svcs[i]->id, s->svcs[i]->obj);
	return o;
}

json_t *services_agent_checks(const struct services *s)
{
	json_t *o = json_object();
	for (size_t i = 0; i < s->nchks; i++)
		json_object_set_new(o, s->chks[i]->id, check_json(s, s->chks[i]));
	return o;
}

size_t services_count(const struct services *s)
{
	return s->nsvcs;
}

size_t services_check_count(const struct services *s)
{
	return s->nchks;
}

/*
 * Publishes the node document at once, with no services: the node must appear
 * in the catalog as soon as the agent runs.
 */
struct services *services_new(struct ev_loop *loop, struct catalog *cat,
                              const struct services_config *cfg)
{
	struct services *s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	s->loop = loop;
	s->cat = cat;
	s->node = xstrdup(cfg->node);
	s->node_id = xstrdup(cfg->node_id);
	s->address = xstrdup(cfg->address);
	s->dc = xstrdup(cfg->datacenter);
	s->scripts = cfg->enable_script_checks;
	s->maint_path = cfg->maint_path != NULL ? xstrdup(cfg->maint_path) : NULL;
	s->meta = json_object();
	for (size_t i = 0; i < cfg->nmeta; i++)
		json_object_set_new(s->meta, cfg->meta_keys[i], json_string(cfg->meta_values[i]));
	publish(s);
	return s;
}

void services_free(struct services *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nchks; i++)
		chk_free(s->chks[i]);
	free(s->chks);
	for (size_t i = 0; i < s->nsvcs; i++) {
		json_decref(s->svcs[i]->obj);
		free(s->svcs[i]->id);
		free(s->svcs[i]);
	}
	free(s->svcs);
	json_decref(s->meta);
	free(s->node);
	free(s->node_id);
	free(s->address);
	free(s->dc);
	free(s->maint_path);
	free(s);
}
