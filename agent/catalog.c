/*
 * agent/catalog.c — see catalog.h.
 *
 * In memory: an array of node records sorted by lowercased name, each
 * holding its parsed document and its service instances, and one array of
 * pointers to every instance sorted by (lowercased service name, node), so
 * a lookup is a binary search followed by a short scan.  The index is
 * rebuilt whenever a record changes (rare next to queries); lookups never
 * allocate.
 *
 * Storage backend: this file is the only one that knows where documents
 * live (see "storage" at the end).
 */
#include "agent/catalog.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv/hlc.h"
#include "kv/kv.h"
#include "kv/limits.h"

/* Where node documents live in the replicated store (hidden from /v1/kv). */
#define CATALOG_PREFIX KV_RESERVED_PREFIX "catalog/"
#define CATALOG_PREFIX_LEN (sizeof(CATALOG_PREFIX) - 1)
#define WATCH_TIMEOUT_MS (10 * 60 * 1000)
/* Resyncs are at least this far apart per node held (see watch_cb). */
#define RESYNC_GAP_PER_NODE_S 0.001
#define RESYNC_GAP_MAX_S 2.0
/* Changed keys remembered for the next resync, beyond which it scans the
 * whole prefix instead: RESYNC_DIRTY_MIN + a quarter of the nodes held. */
#define RESYNC_DIRTY_MIN 64

#define NAME_MAX_LEN 255

struct inst_rec {
	struct catalog_inst pub;
	char *lname;
	char **tags;
};

struct node_rec {
	struct catalog_node pub;
	char *name, *lname, *address;
	struct catalog_meta *meta;
	json_t *doc;
	struct inst_rec *insts;
	size_t ninst;
	bool seen;    /* resync: its key still exists */
	bool derived; /* from gossip (catalog_derive_node), no key in the store */
};

struct live_rec {
	char *lname;
	bool alive;
	char *name;    /* as gossip spells it, with derived */
	char *derived; /* the document derived from its membership entry, or NULL */
};

struct catalog {
	char *self;
	struct node_rec **nodes; /* sorted by lname */
	size_t nnodes;
	struct inst_rec **idx; /* sorted by (lname, node lname) */
	size_t nidx;
	bool idx_stale;        /* nodes were added, replaced or removed since rebuild() */
	struct live_rec *live; /* sorted by lname (live_pos) */
	size_t nlive;
	uint64_t index;
	bool raft; /* index follows the store's Raft indexes (CP mode) */
	catalog_change_fn on_change;
	void *on_change_ud;
	struct kv *kv;          /* NULL: local only */
	struct kv_watch *watch; /* on CATALOG_PREFIX */
	char *self_doc;         /* what we published last (JSON text) */
	char *self_name;        /* as configured (the key uses it) */
	bool self_seen;
	bool self_bare;       /* self_doc is what peers derive from gossip */
	struct ev_loop *loop; /* NULL: every watch resyncs at once */
	ev_timer defer;       /* a resync put off (watch_cb) */
	ev_tstamp last_resync;
	/* keys under CATALOG_PREFIX that commits changed since the last
	 * resync (commit_cb); dirty_all: scan the whole prefix instead */
	struct dirty_key *dirty;
	size_t ndirty, capdirty;
	bool dirty_all;
	struct catalog_stats stats;
};

struct dirty_key {
	char *key;
	size_t len;
};

static void dirty_clear(struct catalog *c);

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

static char *lower_dup(const char *s)
{
	char *p = xstrdup(s);
	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return p;
}

bool catalog_parse_ip(const char *s, struct catalog_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (s == NULL || s[0] == '\0')
		return false;
	if (inet_pton(AF_INET, s, ip->b) == 1) {
		ip->len = 4;
		return true;
	}
	if (inet_pton(AF_INET6, s, ip->b) == 1) {
		ip->len = 16;
		return true;
	}
	return false;
}

/*
 * The agent's own node starts alive: gossip never reports a join event for
 * ourselves, and our services must answer in DNS from the first second.
 */
struct catalog *catalog_new(const char *self)
{
	struct catalog *c = xmalloc(sizeof(*c));
	c->self = lower_dup(self);
	c->self_name = xstrdup(self);
	c->index = 1;
	catalog_set_alive(c, self, true);
	return c;
}

static void inst_clear(struct inst_rec *in)
{
	free(in->lname);
	for (size_t i = 0; i < in->pub.ntags; i++)
		free(in->tags[i]);
	free(in->tags);
}

static void node_free(struct node_rec *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->ninst; i++)
		inst_clear(&n->insts[i]);
	free(n->insts);
	for (size_t i = 0; i < n->pub.nmeta; i++) {
		free((char *)n->meta[i].key);
		free((char *)n->meta[i].value);
	}
	free(n->meta);
	free(n->name);
	free(n->lname);
	free(n->address);
	json_decref(n->doc);
	free(n);
}

void catalog_free(struct catalog *c)
{
	if (c == NULL)
		return;
	if (c->watch != NULL)
		kv_watch_cancel(c->watch);
	if (c->kv != NULL)
		kv_set_commit_fn(c->kv, NULL, NULL);
	if (c->loop != NULL)
		ev_timer_stop(c->loop, &c->defer);
	dirty_clear(c);
	free(c->dirty);
	free(c->self_doc);
	free(c->self_name);
	for (size_t i = 0; i < c->nnodes; i++)
		node_free(c->nodes[i]);
	free(c->nodes);
	free(c->idx);
	for (size_t i = 0; i < c->nlive; i++) {
		free(c->live[i].lname);
		free(c->live[i].name);
		free(c->live[i].derived);
	}
	free(c->live);
	free(c->self);
	free(c);
}

/* ------------------------------------------------------------- indexing */

/*
 * The instance order every lookup depends on: service name, then node, then ID,
 * all lowercased, so a name's instances are one contiguous run and the output
 * of a query is the same on every agent.
 */
static int cmp_idx(const void *x, const void *y)
{
	const struct inst_rec *a = *(struct inst_rec *const *)x, *b = *(struct inst_rec *const *)y;
	int r = strcmp(a->lname, b->lname);
	if (r != 0)
		return r;
	r = strcmp(a->pub.node->lname, b->pub.node->lname);
	if (r != 0)
		return r;
	return strcmp(a->pub.id, b->pub.id);
}

/*
 * Rebuilt whole rather than patched, and only when a lookup needs it after
 * nodes were added, replaced or removed (idx_stale): a fresh sort keeps the
 * one invariant lookups need without incremental bookkeeping that could
 * drift, and a resync that takes in 1,000 nodes, or a join storm's stream of
 * liveness flips, sorts once (or never) instead of once per change. A
 * liveness flip leaves the index as it is: its order does not depend on
 * liveness, and entries reach the node's flag through their node.
 */
static void rebuild(struct catalog *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nnodes; i++)
		n += c->nodes[i]->ninst;
	free(c->idx);
	c->idx = xmalloc(n * sizeof(*c->idx));
	c->nidx = 0;
	for (size_t i = 0; i < c->nnodes; i++)
		for (size_t j = 0; j < c->nodes[i]->ninst; j++)
			c->idx[c->nidx++] = &c->nodes[i]->insts[j];
	qsort(c->idx, c->nidx, sizeof(*c->idx), cmp_idx);
	c->idx_stale = false;
}

/* Lookups are const to their callers; the index is a cache of nodes[]. */
static const struct catalog *fresh_idx(const struct catalog *c)
{
	if (c->idx_stale)
		rebuild((struct catalog *)c);
	return c;
}

/*
 * The catalog index only moves forward: a store index above it is adopted,
 * anything else (a liveness flip, a removal) bumps it by one. Blocking queries
 * compare against it, so it must never go back or stand still on a change
 * (the one exception: when the store's records become Raft-indexed, scan_cb).
 */
static void changed_ex(struct catalog *c, uint64_t index, bool reindex)
{
	if (index > c->index)
		c->index = index;
	else
		c->index++;
	c->idx_stale |= reindex;
	if (c->on_change)
		c->on_change(c->on_change_ud);
}

/* Nodes were added, replaced or removed. */
static void changed(struct catalog *c, uint64_t index)
{
	changed_ex(c, index, true);
}

/* Position of lname (or where it would go) among n names kept sorted,
 * name(c, i) the i-th: binary search for both sorted arrays below. */
typedef const char *(*name_at_fn)(const struct catalog *c, size_t i);

static size_t sorted_pos(const struct catalog *c, size_t n, name_at_fn name, const char *lname,
                         bool *found)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name(c, mid), lname);
		if (r == 0) {
			*found = true;
			return mid;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static const char *live_name(const struct catalog *c, size_t i)
{
	return c->live[i].lname;
}

static const char *node_name(const struct catalog *c, size_t i)
{
	return c->nodes[i]->lname;
}

/*
 * Liveness is kept by name apart from the documents, because gossip may report
 * a member before its catalog record arrives (or after it is deleted). A node
 * gossip has never mentioned is not alive.
 */
/* Position of the name (or where it would go) in live, sorted by name: a
 * linear search made a join storm O(N^2) strcmp per agent. */
static size_t live_pos(const struct catalog *c, const char *lname, bool *found)
{
	return sorted_pos(c, c->nlive, live_name, lname, found);
}

static bool is_alive(const struct catalog *c, const char *lname)
{
	bool found;
	size_t i = live_pos(c, lname, &found);
	return found && c->live[i].alive;
}

/* Position of the node (or where it would go) in the sorted array. */
static size_t node_pos(const struct catalog *c, const char *lname, bool *found)
{
	return sorted_pos(c, c->nnodes, node_name, lname, found);
}

/* ----------------------------------------------------------- documents */

static enum catalog_health parse_status(const char *s)
{
	if (s == NULL)
		return CATALOG_CRITICAL;
	if (strcmp(s, "passing") == 0)
		return CATALOG_PASSING;
	if (strcmp(s, "warning") == 0)
		return CATALOG_WARNING;
	return CATALOG_CRITICAL;
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

/*
 * Consul's SRV weights: 1 when absent, clamped into 0..65535 rather than refused,
 * since the document came from another agent and may not be fixed here.
 */
static uint16_t weight(const json_t *svc, const char *k)
{
	json_t *w = json_object_get(json_object_get(svc, "Weights"), k);
	if (!json_is_integer(w))
		return 1;
	json_int_t v = json_integer_value(w);
	return v < 0 ? 0 : v > 65535 ? 65535 : (uint16_t)v;
}

/*
 * Parses one node's document once, at apply time, so queries never touch JSON.
 * An instance's health is the worst of its own checks and the node-level ones,
 * as Consul computes it; malformed services are skipped, not fatal to the node.
 */
static int node_from_doc(struct node_rec *n, const char *node, json_t *doc, char *err,
                         size_t errlen)
{
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "catalog document of %s is not an object", node);
		return -1;
	}
	n->name = xstrdup(node);
	n->lname = lower_dup(node);
	n->address = xstrdup(jstr(doc, "Address"));
	n->doc = doc;
	json_t *meta = json_object_get(doc, "Meta");
	size_t nm = json_is_object(meta) ? json_object_size(meta) : 0;
	n->meta = xmalloc(nm * sizeof(*n->meta));
	const char *k;
	json_t *v;
	size_t i = 0;
	if (nm > 0) {
		json_object_foreach(meta, k, v)
		{
			if (!json_is_string(v) || i >= nm)
				continue;
			n->meta[i].key = xstrdup(k);
			n->meta[i].value = xstrdup(json_string_value(v));
			i++;
		}
	}
	n->pub.nmeta = i;
	n->pub.meta = n->meta;
	n->pub.name = n->name;
	n->pub.lname = n->lname;
	n->pub.address = n->address;
	n->pub.doc = doc;
	n->pub.external = json_is_true(json_object_get(doc, "External"));
	catalog_parse_ip(n->address, &n->pub.ip);

	json_t *svcs = json_object_get(doc, "Services");
	json_t *checks = json_object_get(doc, "Checks");
	size_t ns = json_is_array(svcs) ? json_array_size(svcs) : 0;
	n->insts = xmalloc(ns * sizeof(*n->insts));
	/* node-level checks apply to every service */
	enum catalog_health node_h = CATALOG_PASSING;
	size_t ci;
	json_t *ch;
	json_array_foreach(checks, ci, ch)
	{
		if (jstr(ch, "ServiceID")[0] == '\0') {
			enum catalog_health h = parse_status(jstr(ch, "Status"));
			if (h > node_h)
				node_h = h;
		}
	}
	for (size_t s = 0; s < ns; s++) {
		json_t *svc = json_array_get(svcs, s);
		const char *name = jstr(svc, "Service");
		if (!json_is_object(svc) || name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
			continue;
		struct inst_rec *in = &n->insts[n->ninst++];
		in->pub.node = &n->pub;
		in->pub.svc = svc;
		in->pub.id = jstr(svc, "ID");
		in->pub.name = name;
		in->lname = lower_dup(name);
		json_t *tags = json_object_get(svc, "Tags");
		size_t nt = json_is_array(tags) ? json_array_size(tags) : 0;
		in->tags = xmalloc(nt * sizeof(char *));
		size_t t;
		json_t *tv;
		json_array_foreach(tags, t, tv)
		{
			if (json_is_string(tv))
				in->tags[in->pub.ntags++] = xstrdup(json_string_value(tv));
		}
		in->pub.tags = (const char *const *)in->tags;
		in->pub.address = jstr(svc, "Address");
		in->pub.own_ip = catalog_parse_ip(in->pub.address, &in->pub.ip);
		if (!in->pub.own_ip)
			in->pub.ip = n->pub.ip;
		json_int_t port = json_integer_value(json_object_get(svc, "Port"));
		in->pub.port = port < 0 || port > 65535 ? 0 : (uint16_t)port;
		in->pub.weight_passing = weight(svc, "Passing");
		in->pub.weight_warning = weight(svc, "Warning");
		enum catalog_health h = node_h;
		json_array_foreach(checks, ci, ch)
		{
			if (strcmp(jstr(ch, "ServiceID"), in->pub.id) == 0) {
				enum catalog_health x = parse_status(jstr(ch, "Status"));
				if (x > h)
					h = x;
			}
		}
		in->pub.health = h;
	}
	return 0;
}

/*
 * Replaces the node's record whole (never merges), so a service removed from the
 * document disappears here. Index 0 means "published locally, not yet stored":
 * it gets the next catalog index so blocking queries still wake.
 */
static int apply_doc(struct catalog *c, const char *node, const char *json, size_t len,
                     uint64_t index, bool derived, char *err, size_t errlen)
{
	json_error_t je;
	json_t *doc = json_loadb(json, len, 0, &je);
	if (doc == NULL) {
		snprintf(err, errlen, "catalog document of %s: %s", node, je.text);
		return -1;
	}
	struct node_rec *n = xmalloc(sizeof(*n));
	if (node_from_doc(n, node, doc, err, errlen) < 0) {
		json_decref(doc);
		n->doc = NULL;
		node_free(n);
		return -1;
	}
	n->pub.alive = n->pub.external || is_alive(c, n->lname);
	n->pub.modify_index = index ? index : c->index + 1;
	n->derived = derived;
	bool found;
	size_t pos = node_pos(c, n->lname, &found);
	if (found) {
		node_free(c->nodes[pos]);
		c->nodes[pos] = n;
	} else {
		c->nodes = realloc(c->nodes, (c->nnodes + 1) * sizeof(*c->nodes));
		if (c->nodes == NULL)
			abort();
		memmove(c->nodes + pos + 1, c->nodes + pos, (c->nnodes - pos) * sizeof(*c->nodes));
		c->nodes[pos] = n;
		c->nnodes++;
	}
	changed(c, n->pub.modify_index);
	return 0;
}

int catalog_apply_node(struct catalog *c, const char *node, const char *json, size_t len,
                       uint64_t index, char *err, size_t errlen)
{
	return apply_doc(c, node, json, len, index, false, err, errlen);
}

static void drop_node(struct catalog *c, size_t pos, uint64_t index)
{
	node_free(c->nodes[pos]);
	memmove(c->nodes + pos, c->nodes + pos + 1, (c->nnodes - pos - 1) * sizeof(*c->nodes));
	c->nnodes--;
	changed(c, index);
}

/* The live entry of lname with a derived document, or NULL. */
static struct live_rec *derived_of(const struct catalog *c, const char *lname)
{
	bool found;
	size_t i = live_pos(c, lname, &found);
	return found && c->live[i].derived != NULL ? &c->live[i] : NULL;
}

/* A stored record is gone: the node falls back to what gossip says of it. */
static void fall_back(struct catalog *c, const char *lname)
{
	const struct live_rec *d = derived_of(c, lname);
	char err[256];
	if (d != NULL) /* it applied when derived: it applies again */
		(void)apply_doc(c, d->name, d->derived, strlen(d->derived), 0, true, err,
		                sizeof(err));
}

/* A stored record goes (its key is gone): a derived node stays as it is. */
void catalog_remove_node(struct catalog *c, const char *node, uint64_t index)
{
	char *l = lower_dup(node);
	bool found;
	size_t pos = node_pos(c, l, &found);
	if (found && !c->nodes[pos]->derived) {
		drop_node(c, pos, index);
		fall_back(c, l);
	}
	free(l);
}

void catalog_derive_node(struct catalog *c, const char *node, const char *json, size_t len)
{
	char *l = lower_dup(node);
	if (strcmp(l, c->self) == 0) {
		free(l);
		return;
	}
	catalog_set_alive(c, node, is_alive(c, l)); /* makes the live entry */
	bool found;
	struct live_rec *d = &c->live[live_pos(c, l, &found)];
	if (d->derived != NULL && strlen(d->derived) == len && memcmp(d->derived, json, len) == 0) {
		free(l);
		return; /* gossip repeats itself */
	}
	free(d->derived);
	free(d->name);
	d->derived = xmalloc(len + 1);
	memcpy(d->derived, json, len);
	d->name = xstrdup(node);
	size_t pos = node_pos(c, l, &found);
	char err[256];
	if ((!found || c->nodes[pos]->derived) &&
	    apply_doc(c, node, json, len, 0, true, err, sizeof(err)) < 0) {
		free(d->derived); /* not a document: nothing derived */
		d->derived = NULL;
	}
	free(l);
}

void catalog_underive_node(struct catalog *c, const char *node)
{
	char *l = lower_dup(node);
	bool found;
	size_t i = live_pos(c, l, &found);
	if (found && c->live[i].derived != NULL) {
		free(c->live[i].derived);
		c->live[i].derived = NULL;
		size_t pos = node_pos(c, l, &found);
		if (found && c->nodes[pos]->derived)
			drop_node(c, pos, 0);
	}
	free(l);
}

/*
 * Records a liveness change even for a node without a document yet, so its record
 * arrives already marked. Only a real flip counts as a change: gossip repeats
 * itself, and every repeat must not wake every blocking query.
 */
void catalog_set_alive(struct catalog *c, const char *node, bool alive)
{
	char *l = lower_dup(node);
	bool have;
	size_t i = live_pos(c, l, &have);
	if (!have) {
		c->live = realloc(c->live, (c->nlive + 1) * sizeof(*c->live));
		if (c->live == NULL)
			abort();
		memmove(c->live + i + 1, c->live + i, (c->nlive - i) * sizeof(*c->live));
		c->live[i] =
		        (struct live_rec){.lname = l, .alive = !alive}; /* !: "changed" below */
		c->nlive++;
	} else {
		free(l);
		l = c->live[i].lname;
	}
	if (c->live[i].alive == alive)
		return;
	c->live[i].alive = alive;
	bool found;
	size_t pos = node_pos(c, l, &found);
	if (found && !c->nodes[pos]->pub.external) {
		c->nodes[pos]->pub.alive = alive;
		changed_ex(c, 0, false);
	}
}

void catalog_on_change(struct catalog *c, catalog_change_fn fn, void *ud)
{
	c->on_change = fn;
	c->on_change_ud = ud;
}

/* --------------------------------------------------------------- queries */

uint64_t catalog_index(const struct catalog *c)
{
	return c->index ? c->index : 1;
}

/* Compare a NUL-terminated index name with the counted name l[0..len).
 * Length-aware: a query name may carry NUL bytes (a DNS label can), and
 * strncmp would stop at them and report a prefix as equal. */
static int name_cmp(const char *m, const char *l, size_t len)
{
	size_t mlen = strlen(m);
	int r = memcmp(m, l, mlen < len ? mlen : len);
	if (r != 0)
		return r;
	return mlen < len ? -1 : mlen > len ? 1 : 0;
}

/* First index entry with lname >= name[0..len) (lowercased compare). */
static size_t idx_lower_bound(const struct catalog *c, const char *l, size_t len)
{
	fresh_idx(c);
	size_t lo = 0, hi = c->nidx;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (name_cmp(c->idx[mid]->lname, l, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool idx_match(const struct catalog *c, size_t i, const char *l, size_t len)
{
	return name_cmp(c->idx[i]->lname, l, len) == 0;
}

/*
 * Query names come off the wire: too long, or holding a NUL byte, they cannot
 * match any stored name, so the answer is "no match" without a search.
 */
static size_t lower_into(char *out, const char *s, size_t len)
{
	if (len > NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			return 0; /* stored names never hold NUL: no match */
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[len] = '\0';
	return len;
}

/*
 * Tags compare without regard to case, as Consul's DNS does, and the query's
 * length must match exactly: a tag is not matched by its prefix.
 */
static bool has_tag(const struct catalog_inst *in, const char *tag, size_t taglen)
{
	for (size_t i = 0; i < in->ntags; i++)
		if (strlen(in->tags[i]) == taglen && strncasecmp(in->tags[i], tag, taglen) == 0 &&
		    memchr(tag, '\0', taglen) == NULL)
			return true;
	return false;
}

/*
 * What DNS may hand out: instances of live nodes that are not critical (warning
 * counts unless only_passing). Counts every match even past max, so a caller
 * can size its array and ask again.
 */
size_t catalog_lookup(const struct catalog *c, const char *name, size_t namelen, const char *tag,
                      size_t taglen, bool only_passing, const struct catalog_inst **out, size_t max)
{
	char l[NAME_MAX_LEN + 1];
	if (namelen == 0 || lower_into(l, name, namelen) == 0)
		return 0;
	size_t n = 0;
	for (size_t i = idx_lower_bound(c, l, namelen); i < c->nidx && idx_match(c, i, l, namelen);
	     i++) {
		const struct catalog_inst *in = &c->idx[i]->pub;
		if (!in->node->alive || in->health == CATALOG_CRITICAL)
			continue;
		if (only_passing && in->health != CATALOG_PASSING)
			continue;
		if (tag != NULL && !has_tag(in, tag, taglen))
			continue;
		if (n < max)
			out[n] = in;
		n++;
	}
	return n;
}

size_t catalog_lookup_all(const struct catalog *c, const char *name, size_t namelen,
                          const struct catalog_inst **out, size_t max)
{
	char l[NAME_MAX_LEN + 1];
	if (namelen == 0 || lower_into(l, name, namelen) == 0)
		return 0;
	size_t n = 0;
	for (size_t i = idx_lower_bound(c, l, namelen); i < c->nidx && idx_match(c, i, l, namelen);
	     i++) {
		if (n < max)
			out[n] = &c->idx[i]->pub;
		n++;
	}
	return n;
}

bool catalog_service_exists(const struct catalog *c, const char *name, size_t namelen)
{
	return catalog_lookup_all(c, name, namelen, NULL, 0) > 0;
}

const struct catalog_node *catalog_node_get(const struct catalog *c, const char *name, size_t len)
{
	char l[NAME_MAX_LEN + 1];
	if (len == 0 || lower_into(l, name, len) == 0)
		return NULL;
	bool found;
	size_t pos = node_pos(c, l, &found);
	return found ? &c->nodes[pos]->pub : NULL;
}

size_t catalog_node_count(const struct catalog *c)
{
	return c->nnodes;
}

const struct catalog_node *catalog_node_at(const struct catalog *c, size_t i)
{
	return i < c->nnodes ? &c->nodes[i]->pub : NULL;
}

size_t catalog_inst_count(const struct catalog *c)
{
	return fresh_idx(c)->nidx;
}

const struct catalog_inst *catalog_inst_at(const struct catalog *c, size_t i)
{
	fresh_idx(c);
	return i < c->nidx ? &c->idx[i]->pub : NULL;
}

/* --------------------------------------------------------------- storage */

/*
 * Backend: the replicated KV store when attached (kv/kv.h), one key per
 * node, CATALOG_PREFIX<node> -> the node's JSON document.  A watch on the
 * prefix wakes resync(), which re-reads the keys commits changed since the
 * last one (the store names each, kv_set_commit_fn) and applies every
 * document whose version (modify index) differs from the one held, and
 * forgets nodes whose key is gone.  A whole scan of the prefix (mark and
 * sweep) replaces that when the catalog attaches, when more keys changed
 * than RESYNC_DIRTY_MIN plus a quarter of the nodes, when the store says
 * any key may have changed (a restore), and when the watch times out (every
 * WATCH_TIMEOUT_MS with no change: a check that costs one scan).  Before,
 * every resync scanned: at 1,000 nodes one scan a second per agent, with
 * each record's checksum, lookup and name comparisons, was a tenth of a
 * join storm's CPU.  Our own document is also applied at once when
 * published, so this agent answers for its services before the commit; if
 * our key disappears (another agent saw us leave and deleted it before we
 * came back), it is written again.  Without a store, a published document
 * is applied directly (single-node view).
 */
static void rearm(struct catalog *c);

/*
 * Applies only documents whose version differs from the one held, so a resync
 * after a single change costs one parse, not one per node. Keys that could not
 * be a node's name are ignored rather than trusted. Returns the node held for
 * the key afterwards, NULL when none (a bad key, a document that does not
 * apply).
 */
static struct node_rec *take_entry(struct catalog *c, const struct kv_entry *e)
{
	if (e->key_len <= CATALOG_PREFIX_LEN || e->key_len - CATALOG_PREFIX_LEN > NAME_MAX_LEN)
		return NULL;
	char node[NAME_MAX_LEN + 1], l[NAME_MAX_LEN + 1];
	size_t nl = e->key_len - CATALOG_PREFIX_LEN;
	memcpy(node, e->key + CATALOG_PREFIX_LEN, nl);
	node[nl] = '\0';
	if (lower_into(l, node, nl) == 0)
		return NULL; /* a node name with a NUL byte: not one an agent publishes */
	if (strcmp(l, c->self) == 0)
		c->self_seen = true;
	if (e->raft && !c->raft) {
		/* the first record a Raft entry wrote (the switch to servers, or
		 * a restart in CP mode): from here the index follows Raft's,
		 * small, not the versions' index form it held (~3.8e14); it goes
		 * back this once, and parked queries are answered (changed) */
		c->raft = true;
		c->index = 0;
	}
	bool found;
	size_t pos = node_pos(c, l, &found);
	/* a derived node's index is the catalog's own: never taken for the
	 * record's, which always replaces it */
	if (!found || c->nodes[pos]->derived ||
	    c->nodes[pos]->pub.modify_index != e->modify_index) {
		char err[256];
		if (catalog_apply_node(c, node, (const char *)e->value, e->value_len,
		                       e->modify_index, err, sizeof(err)) < 0)
			return NULL;
		pos = node_pos(c, l, &found);
	}
	return found ? c->nodes[pos] : NULL;
}

static int scan_cb(void *ud, const struct kv_entry *e)
{
	struct node_rec *n = take_entry(ud, e);
	if (n != NULL)
		n->seen = true;
	return 0;
}

static int found_cb(void *ud, const struct kv_entry *e)
{
	(void)e;
	*(bool *)ud = true;
	return 0;
}

/*
 * Our record is written under the name as configured, not lowercased: the key
 * spells the node as it calls itself, and readers lowercase on their side.
 * It goes to the store unless it is bare (what every agent derives from our
 * membership entry, catalog_derive_node) and the store holds no record of
 * ours to replace: an agent with no services, checks or node meta writes
 * nothing, and a join storm of such agents spreads no records (docs/DNS.md,
 * "Nodes without a record"). A record of ours that the store still holds
 * (services we had before a restart, or deregistered since) is replaced,
 * bare or not.
 */
static void put_self(struct catalog *c)
{
	char key[CATALOG_PREFIX_LEN + NAME_MAX_LEN + 1];
	snprintf(key, sizeof(key), "%s%s", CATALOG_PREFIX, c->self_name);
	if (c->self_bare) {
		bool held = false;
		if (kv_get(c->kv, key, strlen(key), found_cb, &held) != 1 || !held)
			return; /* absent (or the store failed: the next resync asks again) */
	}
	kv_put(c->kv, key, c->self_doc, strlen(c->self_doc), 0, NULL, NULL);
}

void catalog_republish(struct catalog *c)
{
	if (c->kv != NULL && c->self_doc != NULL)
		put_self(c);
}

/*
 * Mark and sweep: every held node is unmarked, the scan marks what still has a
 * key, the rest are forgotten. We are never forgotten; if our own key is gone
 * (a peer saw us leave and deleted it), it is written again.
 */
static void resync_all(struct catalog *c)
{
	for (size_t i = 0; i < c->nnodes; i++)
		c->nodes[i]->seen = false;
	c->self_seen = false;
	kv_scan(c->kv, CATALOG_PREFIX, CATALOG_PREFIX_LEN, scan_cb, c);
	/* forget nodes whose key is gone (never ourselves: see above), down to
	 * what gossip says of them; derived nodes never had a key */
	for (size_t i = c->nnodes; i-- > 0;) {
		struct node_rec *n = c->nodes[i];
		if (n->seen || n->derived || strcmp(n->lname, c->self) == 0)
			continue;
		char *l = xstrdup(n->lname);
		drop_node(c, i, 0);
		fall_back(c, l); /* back at position i, which the loop has passed */
		free(l);
	}
	if (!c->self_seen && c->self_doc != NULL)
		put_self(c);
}

static void dirty_clear(struct catalog *c)
{
	for (size_t i = 0; i < c->ndirty; i++)
		free(c->dirty[i].key);
	c->ndirty = 0;
}

/* kv_set_commit_fn: note a changed key under the prefix for the next
 * resync, or fall back to a whole scan (see "Backend"). */
static void commit_cb(void *ud, const char *key, size_t key_len)
{
	struct catalog *c = ud;
	if (key == NULL) {
		dirty_clear(c);
		c->dirty_all = true;
		return;
	}
	if (c->dirty_all || key_len <= CATALOG_PREFIX_LEN ||
	    memcmp(key, CATALOG_PREFIX, CATALOG_PREFIX_LEN) != 0)
		return;
	if (c->ndirty >= RESYNC_DIRTY_MIN + c->nnodes / 4) {
		dirty_clear(c);
		c->dirty_all = true;
		return;
	}
	if (c->ndirty == c->capdirty) {
		c->capdirty = c->capdirty ? c->capdirty * 2 : 16;
		struct dirty_key *d = realloc(c->dirty, c->capdirty * sizeof(*d));
		if (d == NULL)
			abort();
		c->dirty = d;
	}
	struct dirty_key *d = &c->dirty[c->ndirty++];
	d->key = xmalloc(key_len);
	memcpy(d->key, key, key_len);
	d->len = key_len;
}

struct one_key {
	struct catalog *c;
	bool held;
};

static int get_cb(void *ud, const struct kv_entry *e)
{
	struct one_key *o = ud;
	o->held = take_entry(o->c, e) != NULL;
	return 0;
}

/*
 * Re-read each changed key: apply its document, or forget the node when the
 * key is gone (or its document no longer applies), as resync_all would. Our
 * own key gone is written again. A store error falls back to a whole scan at
 * the next resync.
 */
static void resync_dirty(struct catalog *c)
{
	for (size_t i = 0; i < c->ndirty && !c->dirty_all; i++) {
		const struct dirty_key *d = &c->dirty[i];
		struct one_key o = {c, false};
		c->stats.reread++;
		if (kv_get(c->kv, d->key, d->len, get_cb, &o) < 0) {
			c->dirty_all = true;
			break;
		}
		if (o.held)
			continue;
		char l[NAME_MAX_LEN + 1];
		size_t nl = d->len - CATALOG_PREFIX_LEN;
		if (nl > NAME_MAX_LEN || lower_into(l, d->key + CATALOG_PREFIX_LEN, nl) == 0)
			continue;
		if (strcmp(l, c->self) == 0) {
			if (c->self_doc != NULL)
				put_self(c);
			continue;
		}
		catalog_remove_node(c, l, 0);
	}
	dirty_clear(c);
}

static void resync(struct catalog *c)
{
	if (c->dirty_all) {
		dirty_clear(c);
		c->dirty_all = false;
		c->stats.resync_scans++;
		resync_all(c);
		return;
	}
	c->stats.resync_changed++;
	resync_dirty(c);
}

const struct catalog_stats *catalog_stats(const struct catalog *c)
{
	return &c->stats;
}

/*
 * A fired watch is spent: the catalog catches up with the store, then arms a
 * new one; commits in between are noted by commit_cb all the same, so no
 * change is missed.
 */
static void resync_now(struct catalog *c)
{
	if (c->loop != NULL)
		c->last_resync = ev_now(c->loop);
	resync(c);
	rearm(c);
}

static void defer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop, (void)revents;
	struct catalog *c = t->data;
	if (c->kv != NULL && c->watch == NULL)
		resync_now(c);
}

/*
 * A resync scans every document of the prefix, so one per commit costs
 * O(nodes) per commit: in a join storm of 1,000 agents each agent commits
 * the others' documents in hundreds of small batches (one per turn of the
 * loop), and the scans took a third of the machine's CPU (docs/PERFORMANCE.md
 * "Join storms"). So resyncs are at least RESYNC_GAP_PER_NODE_S per node held
 * apart (10 ms at 10 nodes, 1 s at 1,000, at most RESYNC_GAP_MAX_S): a
 * watch that fires sooner is answered by one resync at the end of the gap,
 * which takes in everything committed meanwhile. The scan work is then
 * bounded per second whatever the rate of commits. Our own document is
 * applied at once when published (catalog_publish), not through this.
 */
static void watch_cb(void *ud, bool changed_)
{
	struct catalog *c = ud;
	c->watch = NULL;
	if (c->kv == NULL)
		return;
	if (!changed_) { /* the watch timed out: check everything */
		dirty_clear(c);
		c->dirty_all = true;
	}
	if (c->loop != NULL) {
		/* Always from the timer, even with no wait: the store names the
		 * changed keys (commit_cb) after it wakes the watches, so a
		 * resync run from here would miss the keys of this commit. */
		double gap = (double)c->nnodes * RESYNC_GAP_PER_NODE_S;
		if (gap > RESYNC_GAP_MAX_S)
			gap = RESYNC_GAP_MAX_S;
		double wait = c->last_resync + gap - ev_now(c->loop);
		ev_timer_stop(c->loop, &c->defer);
		ev_timer_set(&c->defer, wait > 0 ? wait : 0., 0.);
		ev_timer_start(c->loop, &c->defer);
		return;
	}
	c->dirty_all = true; /* for the same reason, without a timer: scan */
	resync_now(c);
}

void catalog_set_loop(struct catalog *c, struct ev_loop *loop)
{
	if (c->loop != NULL)
		ev_timer_stop(c->loop, &c->defer);
	c->loop = loop;
	ev_timer_init(&c->defer, defer_cb, 0., 0.);
	c->defer.data = c;
}

/*
 * A recursive watch fires on any change under its prefix, whatever its index
 * (kv/engine.c, wake_watches: a record merged late may be older than the
 * newest), so none is computed: kv_index of a prefix scans it, and at 1,000
 * nodes that scan, once per resync, was 4% of a join storm's CPU.
 */
static void rearm(struct catalog *c)
{
	c->watch = kv_watch_add(c->kv, CATALOG_PREFIX, CATALOG_PREFIX_LEN, true, 1,
	                        WATCH_TIMEOUT_MS, watch_cb, c);
}

void catalog_attach_store(struct catalog *c, void *store)
{
	if (c->watch != NULL) {
		kv_watch_cancel(c->watch);
		c->watch = NULL;
	}
	if (c->loop != NULL)
		ev_timer_stop(c->loop, &c->defer);
	if (c->kv != NULL)
		kv_set_commit_fn(c->kv, NULL, NULL);
	c->kv = store;
	dirty_clear(c);
	c->dirty_all = true; /* the first resync scans */
	if (c->kv == NULL)
		return;
	kv_set_commit_fn(c->kv, commit_cb, c);
	/* changes of our own (derived nodes, our document) count up from the
	 * store's clock, so the index is in the records' index form whether
	 * or not any record is stored, and never goes back across a restart */
	uint64_t now = kv_hlc_index(kv_next_version(c->kv));
	if (!c->raft && now > c->index)
		c->index = now;
	if (c->self_doc != NULL)
		put_self(c);
	resync_now(c);
}

char *catalog_derived_doc(const char *node, const char *id, const char *address, const char *dc)
{
	json_t *doc =
	        json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{}, s:[], s:[]}", "Node", node,
	                  "ID", id, "Address", address, "Datacenter", dc, "TaggedAddresses", "lan",
	                  address, "wan", address, "Meta", "Services", "Checks");
	char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return s;
}

/* An IP literal as inet_ntop writes it: the form peers derive from gossip. */
static bool canonical_ip(const char *a)
{
	unsigned char b[16];
	char out[INET6_ADDRSTRLEN];
	int af = strchr(a, ':') != NULL ? AF_INET6 : AF_INET;
	return inet_pton(af, a, b) == 1 && inet_ntop(af, b, out, sizeof(out)) != NULL &&
	       strcmp(out, a) == 0;
}

/* Whether doc says nothing peers do not derive (catalog_derived_doc): no
 * services, checks or node meta, one address that gossip carries too. */
static bool doc_bare(json_t *doc)
{
	const char *addr = jstr(doc, "Address");
	json_t *ta = json_object_get(doc, "TaggedAddresses"), *meta = json_object_get(doc, "Meta"),
	       *svcs = json_object_get(doc, "Services"), *chks = json_object_get(doc, "Checks");
	if (json_object_size(doc) != 8 || !json_is_string(json_object_get(doc, "Node")) ||
	    !json_is_string(json_object_get(doc, "ID")) ||
	    !json_is_string(json_object_get(doc, "Datacenter")) || !canonical_ip(addr) ||
	    json_object_size(ta) != 2 || strcmp(jstr(ta, "lan"), addr) != 0 ||
	    strcmp(jstr(ta, "wan"), addr) != 0 || !json_is_object(meta) ||
	    json_object_size(meta) != 0 || !json_is_array(svcs) || json_array_size(svcs) != 0 ||
	    !json_is_array(chks) || json_array_size(chks) != 0)
		return false;
	return true;
}

/*
 * Our document is applied locally at once, before the store commits it, so this
 * agent answers for its own services without waiting for a round trip.
 */
void catalog_publish(struct catalog *c, json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT);
	const char *node = json_string_value(json_object_get(doc, "Node"));
	c->self_bare = doc_bare(doc);
	if (s != NULL && node != NULL) {
		char err[256];
		catalog_apply_node(c, node, s, strlen(s), 0, err, sizeof(err));
		free(c->self_doc);
		c->self_doc = s;
		s = NULL;
		if (c->kv != NULL)
			put_self(c);
	}
	free(s);
	json_decref(doc);
}

/*
 * A node that left (or was reaped) is deleted from the replicated store by every
 * agent that sees it go, so the catalog empties even if the node never returns.
 * We never delete ourselves.
 */
void catalog_node_gone(struct catalog *c, const char *node)
{
	char l[NAME_MAX_LEN + 1];
	size_t n = strlen(node);
	if (n == 0 || lower_into(l, node, n) == 0 || strcmp(l, c->self) == 0)
		return;
	if (c->kv != NULL) {
		char key[CATALOG_PREFIX_LEN + NAME_MAX_LEN + 1];
		snprintf(key, sizeof(key), "%s%s", CATALOG_PREFIX, node);
		kv_delete(c->kv, key, false, NULL, NULL);
	}
	catalog_remove_node(c, node, 0);
}

/*
 * An external node is written like our own record, applied here at once and
 * replicated under the same prefix, so every agent's resync picks it up; no
 * agent republishes it, and none deletes it when gossip reports a member of
 * that name leaving (catalog_node_gone is only called for gossip members).
 */
int catalog_put_external(struct catalog *c, const char *node, json_t *doc, char *err, size_t errlen)
{
	char l[NAME_MAX_LEN + 1];
	size_t n = strlen(node);
	if (n == 0 || lower_into(l, node, n) == 0 || strcmp(l, c->self) == 0) {
		snprintf(err, errlen, "invalid node name");
		json_decref(doc);
		return -1;
	}
	json_object_set_new(doc, "Node", json_string(node));
	json_object_set_new(doc, "External", json_true());
	char *s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (s == NULL || strlen(s) > KV_VALUE_MAX) {
		snprintf(err, errlen, "the catalog record of node %s would be over %u bytes", node,
		         (unsigned)KV_VALUE_MAX);
		free(s);
		return -1;
	}
	if (catalog_apply_node(c, node, s, strlen(s), 0, err, errlen) < 0) {
		free(s);
		return -1;
	}
	if (c->kv != NULL) {
		char key[CATALOG_PREFIX_LEN + NAME_MAX_LEN + 1];
		snprintf(key, sizeof(key), "%s%s", CATALOG_PREFIX, node);
		kv_put(c->kv, key, s, strlen(s), 0, NULL, NULL);
	}
	free(s);
	return 0;
}

void catalog_delete_external(struct catalog *c, const char *node)
{
	char l[NAME_MAX_LEN + 1];
	size_t n = strlen(node);
	if (n == 0 || lower_into(l, node, n) == 0 || strcmp(l, c->self) == 0)
		return;
	const struct catalog_node *cn = catalog_node_get(c, node, n);
	if (cn == NULL || !cn->external)
		return;
	if (c->kv != NULL) {
		char key[CATALOG_PREFIX_LEN + NAME_MAX_LEN + 1];
		snprintf(key, sizeof(key), "%s%s", CATALOG_PREFIX, cn->name);
		kv_delete(c->kv, key, false, NULL, NULL);
	}
	catalog_remove_node(c, node, 0);
}
