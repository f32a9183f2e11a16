/*
 * agent/api_coord.h — network coordinates on the agent: the /v1/coordinate
 * endpoints, ?near= sorting, and the round-trip estimates DNS and
 * /v1/agent/self use.
 *
 * Owns nothing: the coordinates live in the SWIM core (gossip/swim.h,
 * "Coordinates": this agent's own and the cache of the peers it probed, as
 * Serf keeps them). rumor has no servers to collect coordinates by
 * default, so every answer here is this agent's gossip view; see
 * docs/COORDINATES.md for why no agent publishes its coordinate.
 *
 * Endpoints (Consul's shapes; docs/HTTP_API.md):
 *   GET /v1/coordinate/datacenters  [{"Datacenter","AreaID":"WAN","Coordinates":[]}]
 *                                   (rumor has no WAN pool)
 *   GET /v1/coordinate/nodes        [{"Node","Segment":"","Coord":{...}}], by name
 *   GET /v1/coordinate/node/<node>  the same for one node; 404 when none
 * With coordinates disabled they answer 401 "Coordinate support disabled",
 * as Consul does.
 *
 * Error convention: nothing here fails; an unknown coordinate is NULL or -1.
 */
#ifndef RUMOR_AGENT_API_COORD_H
#define RUMOR_AGENT_API_COORD_H

#include <stdint.h>

struct agent;
struct coord;
struct http_conn;
struct http_request;
struct json_t;

/* The coordinate of `node` as this agent knows it (its own, or the cache
 * of probed peers); NULL when unknown or coordinates are off. Borrowed:
 * valid until the gossip core runs again. */
const struct coord *api_coord_of(const struct agent *a, const char *node);
/* The estimated round trip in ns between `from` (NULL: this agent) and
 * `to`: Serf's DistanceTo, but 0 between a node and itself; -1 when
 * either coordinate is unknown. */
int64_t api_coord_rtt_ns(const struct agent *a, const char *from, const char *to);
/* Consul's JSON for a coordinate ({"Adjustment","Error","Height","Vec"});
 * JSON null for NULL. A new reference. */
struct json_t *api_coord_json(const struct coord *c);
/*
 * ?near=<node> (or _agent: this agent) on a JSON array whose elements name
 * their node as "Node": "<name>" or "Node": {"Node": "<name>"}: sorted in
 * place by api_coord_rtt_ns from that node, stable, elements whose
 * node has no coordinate last. Without ?near, or when the near node has no
 * coordinate, the array is left as it is (Consul's sortByDistanceFrom).
 */
void api_coord_sort_near(const struct agent *a, const struct http_request *req, struct json_t *arr);

void api_h_coord_datacenters(struct agent *a, struct http_conn *c, const struct http_request *req,
                             const char *rest);
void api_h_coord_nodes(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest);
void api_h_coord_node(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest);

#endif
