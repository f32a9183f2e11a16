/*
 * agent/api_coord.c — see api_coord.h.
 *
 * Every estimate is Serf's DistanceTo (gossip/coord.h) between two
 * coordinates this agent holds, except that a node is at 0 from itself:
 * Serf's formula gives a coordinate twice its height plus adjustment from
 * itself, which on a LAN can exceed the estimate to a close neighbour, and
 * would put another node before the agent in its own ?near=_agent and DNS
 * answers (Consul sorts by the bare formula; rumor rtt prints it). The
 * coordinates are its own, updated from each direct probe,
 * and the last coordinate each probed peer sent in its ack. A peer is
 * probed once per round of the shuffled probe order, so on an N-node
 * cluster the cache holds every live member after about N probe intervals
 * and each entry is at most that old (docs/COORDINATES.md).
 */
#include "agent/api_coord.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/api_reply.h"
#include "agent/env.h"
#include "agent/http/http.h"
#include "gossip/coord.h"
#include "gossip/swim.h"
#include "gossip/transport.h"
#include "lib/xalloc.h"

static struct swim *swim_of(const struct agent *a)
{
	return a->gossip != NULL ? gossip_transport_swim(a->gossip) : NULL;
}

const struct coord *api_coord_of(const struct agent *a, const char *node)
{
	struct swim *s = swim_of(a);
	if (s == NULL || node == NULL)
		return NULL;
	return swim_coord_of(s, node);
}

int64_t api_coord_rtt_ns(const struct agent *a, const char *from, const char *to)
{
	struct swim *s = swim_of(a);
	if (s == NULL)
		return -1;
	if (from == NULL)
		from = a->cfg.node_name;
	const struct coord *x = swim_coord_of(s, from);
	const struct coord *y = to != NULL ? swim_coord_of(s, to) : NULL;
	if (x == NULL || y == NULL)
		return -1;
	return strcmp(from, to) == 0 ? 0 : coord_distance_ns(x, y);
}

json_t *api_coord_json(const struct coord *c)
{
	if (c == NULL)
		return json_null();
	json_t *vec = json_array();
	for (int i = 0; i < COORD_DIM; i++)
		json_array_append_new(vec, json_real(c->vec[i]));
	return json_pack("{s:f, s:f, s:f, s:o}", "Adjustment", c->adjustment, "Error", c->error,
	                 "Height", c->height, "Vec", vec);
}

/* ------------------------------------------------------------ ?near= */

struct near_item {
	int64_t d; /* INT64_MAX: no coordinate */
	size_t i;  /* the original place: ties keep it */
	json_t *v;
};

static int cmp_near(const void *x, const void *y)
{
	const struct near_item *a = x, *b = y;
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* The node an element names: "Node": "<name>" (catalog) or "Node":
 * {"Node": "<name>"} (health). */
static const char *element_node(const json_t *v)
{
	const json_t *n = json_object_get(v, "Node");
	if (json_is_object(n))
		n = json_object_get(n, "Node");
	return json_string_value(n);
}

void api_coord_sort_near(const struct agent *a, const struct http_request *req, json_t *arr)
{
	const char *near = http_query_get(req, "near");
	if (near == NULL || near[0] == '\0' || !json_is_array(arr))
		return;
	if (strcmp(near, "_agent") == 0)
		near = a->cfg.node_name;
	const struct coord *from = api_coord_of(a, near);
	size_t n = json_array_size(arr);
	if (from == NULL || n < 2)
		return; /* Consul: an unknown source leaves the order alone */
	struct near_item *v = xmalloc(n * sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		int64_t d = api_coord_rtt_ns(a, near, element_node(e));
		v[i] = (struct near_item){
		        .d = d >= 0 ? d : INT64_MAX,
		        .i = i,
		        .v = json_incref(e),
		};
	}
	qsort(v, n, sizeof(*v), cmp_near);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, v[i].v);
	free(v);
}

/* ---------------------------------------------------------- endpoints */

/* Consul answers 401 when coordinates are off; true when it did. */
static bool refuse_disabled(struct agent *a, struct http_conn *c)
{
	struct swim *s = swim_of(a);
	if (s != NULL && swim_coord_self(s) != NULL)
		return false;
	api_reply_text(c, 401, "Coordinate support disabled");
	return true;
}

/* Reads carry Consul's query headers. The index is the count of
 * coordinate updates so far: it moves whenever a coordinate may have (no
 * blocking: ?index= answers at once). */
static void reply_read(struct agent *a, struct http_conn *c, const struct http_request *req,
                       int status, json_t *j)
{
	/* j NULL: an empty body (Consul's 404 for a node without one) */
	const struct swim_stats *st = swim_stats(swim_of(a));
	char idx[32];
	snprintf(idx, sizeof(idx), "%" PRIu64, st->coord_updates + 1);
	http_add_header(c, "X-Consul-Index", idx);
	http_add_header(c, "X-Consul-KnownLeader", "true");
	http_add_header(c, "X-Consul-LastContact", "0");
	if (j == NULL)
		http_respond(c, status, NULL, "", 0);
	else
		api_reply_json(c, req, status, j);
}

static json_t *entry_json(const char *node, const struct coord *co)
{
	return json_pack("{s:s, s:s, s:o}", "Node", node, "Segment", "", "Coord",
	                 api_coord_json(co));
}

static int cmp_name(const void *x, const void *y)
{
	const char *const *a = x, *const *b = y;
	return strcmp(*a, *b);
}

void api_h_coord_datacenters(struct agent *a, struct http_conn *c, const struct http_request *req,
                             const char *rest)
{
	(void)rest;
	if (refuse_disabled(a, c))
		return;
	/* no WAN pool: this datacenter, without server coordinates */
	api_reply_json(c, req, 200,
	               json_pack("[{s:s, s:s, s:[]}]", "Datacenter", a->cfg.datacenter, "AreaID",
	                         "WAN", "Coordinates"));
}

void api_h_coord_nodes(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest)
{
	(void)rest;
	if (refuse_disabled(a, c))
		return;
	struct swim *s = swim_of(a);
	size_t n = swim_member_count(s);
	const char **names = xmalloc((n ? n : 1) * sizeof(*names));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(s, i);
		if (swim_coord_of(s, m->id->name) != NULL)
			names[k++] = m->id->name;
	}
	qsort(names, k, sizeof(*names), cmp_name);
	json_t *arr = json_array();
	for (size_t i = 0; i < k; i++)
		json_array_append_new(arr, entry_json(names[i], swim_coord_of(s, names[i])));
	free(names);
	reply_read(a, c, req, 200, arr);
}

void api_h_coord_node(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	if (refuse_disabled(a, c))
		return;
	const struct coord *co = api_coord_of(a, rest);
	if (co == NULL) {
		reply_read(a, c, req, 404, NULL);
		return;
	}
	json_t *arr = json_array();
	json_array_append_new(arr, entry_json(rest, co));
	reply_read(a, c, req, 200, arr);
}
