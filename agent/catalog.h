/*
 * agent/catalog.h — the cluster's service catalog as this agent sees it.
 *
 * Owns: one record per node (its address, node meta, services and checks, as
 * the node itself published them), an index of service instances by
 * lowercased service name for DNS and the HTTP catalog, and the liveness of
 * each node as gossip reports it.  Readers (DNS, through the adapter
 * agent/catalog_dns.c, and agent/api_catalog.c) ask one question —
 * "instances of service X with tag T that are passing (or warning), on
 * alive nodes" — and never see how records are stored.
 *
 * Storage: every node publishes one JSON document (catalog_node_doc shape,
 * below) describing itself; catalog_publish() hands it to the storage
 * backend, and the backend feeds every node's document back through
 * catalog_apply_node()/catalog_remove_node().  The backend is local to
 * catalog.c: the replicated KV store (kv/) under a reserved prefix when it
 * is attached, otherwise the local node only.
 *
 * Node document (JSON object, the value stored per node):
 *   {"Node":"n1","ID":"uuid","Address":"10.0.0.1","Datacenter":"dc1",
 *    "Meta":{"k":"v"},
 *    "Services":[{"ID","Service","Tags":[..],"Address","Port","Meta":{},
 *                 "Weights":{"Passing":1,"Warning":1},"EnableTagOverride"}],
 *    "Checks":[{"CheckID","Name","Status","Notes","Output","ServiceID",
 *               "ServiceName","ServiceTags":[..],"Type"}]}
 * Derived nodes (Consul's leader does the same when it reconciles Serf
 * members into its catalog): a member gossip reports as a Consul agent of
 * our datacenter is listed at once with the document catalog_derived_doc()
 * builds from its membership entry (name, the "id" and "dc" tags, its
 * address), until a record of it is stored; a stored record wins, and when
 * it goes the node falls back to the derived one. An agent whose own
 * document is bare (exactly that: no services, checks or node meta) does
 * not store it at all, unless the store holds an older record of it to
 * replace.
 * An instance's health is the worst of its own checks and the node's checks
 * (ServiceID ""), and critical when gossip says the node is not alive.  An
 * external node's document (catalog_put_external) also holds
 * "External":true: no agent runs there, gossip never reports it, and it
 * counts as alive; its checks' statuses are what the registration gave.
 *
 * Error convention: catalog_apply_node() returns 0 or -1 with a message
 * (bad document); lookups cannot fail.  Pointers returned by lookups are
 * valid until the next change (apply/remove/liveness), i.e. within one
 * event-loop callback.
 */
#ifndef RUMOR_AGENT_CATALOG_H
#define RUMOR_AGENT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
struct catalog;

enum catalog_health {
	CATALOG_PASSING = 0,
	CATALOG_WARNING = 1,
	CATALOG_CRITICAL = 2,
};

/* An IP address in network order; len 4, 16, or 0 when absent/unparsable. */
struct catalog_ip {
	uint8_t b[16];
	uint8_t len;
};

struct catalog_meta {
	const char *key, *value;
};

struct catalog_node {
	const char *name;  /* as published */
	const char *lname; /* lowercased */
	const char *address;
	struct catalog_ip ip;
	const struct catalog_meta *meta;
	size_t nmeta;
	bool alive;               /* gossip: alive or suspect; always, if external */
	bool external;            /* registered with /v1/catalog/register: no agent */
	uint64_t modify_index;    /* index of the last change of this record */
	const struct json_t *doc; /* the whole published document (borrowed) */
};

struct catalog_inst {
	const struct catalog_node *node;
	const char *id, *name;
	const char *const *tags;
	size_t ntags;
	const char *address;  /* service address, "" when it uses the node's */
	struct catalog_ip ip; /* service address if any, else the node's */
	bool own_ip;          /* ip is the service's own address */
	uint16_t port;
	enum catalog_health health;
	uint16_t weight_passing, weight_warning;
	const struct json_t *svc; /* this service's object in the node doc */
};

/* Why catalog_on_change callbacks fire: anything visible changed. */
typedef void (*catalog_change_fn)(void *ud);

/* New empty catalog; `self` is this agent's node name. */
struct catalog *catalog_new(const char *self);
void catalog_free(struct catalog *c);

/* ---- storage side ---- */

/* Replaces node's record by the JSON document json[0..len).  index is the
 * storage's version of it (0: the catalog picks the next local one).
 * Returns 0, or -1 with err set. */
int catalog_apply_node(struct catalog *c, const char *node, const char *json, size_t len,
                       uint64_t index, char *err, size_t errlen);
/* Forgets a node's record (it left or was reaped, or its key was deleted). */
void catalog_remove_node(struct catalog *c, const char *node, uint64_t index);
/* Gossip says node is alive (true) or failed/left (false). */
void catalog_set_alive(struct catalog *c, const char *node, bool alive);

/* Gossip reports node (not us) as a Consul agent of our datacenter: json
 * (catalog_derived_doc) lists it until, and unless, a record of it is
 * stored. The same document again changes nothing. */
void catalog_derive_node(struct catalog *c, const char *node, const char *json, size_t len);
/* Gossip says node left or was reaped: its derived document goes. */
void catalog_underive_node(struct catalog *c, const char *node);
/* The document of a node that published nothing but itself (malloc'd JSON
 * text, NULL on allocation failure): what catalog_derive_node takes, and
 * what a bare agent publishes. */
char *catalog_derived_doc(const char *node, const char *id, const char *address, const char *dc);

/* Gossip says node left or was reaped: its record is deleted from storage
 * (every agent does this; deleting twice is harmless). */
void catalog_node_gone(struct catalog *c, const char *node);

/* Publishes this agent's own document (takes a reference to doc) through
 * the storage backend. */
void catalog_publish(struct catalog *c, struct json_t *doc);

/* Writes this agent's own document to the store again (the store's write
 * path changed: a client's first document, written before it knew of
 * servers, never reached them). */
void catalog_republish(struct catalog *c);

/* External nodes (Consul's /v1/catalog/register: no agent, no gossip):
 * stores node's whole document (takes a reference to doc; catalog.c marks
 * it "External", which makes it alive whatever gossip says) in the
 * replicated store, and applies it here at once.  0, or -1 with err (a bad
 * node name, a document over the store's value limit). */
int catalog_put_external(struct catalog *c, const char *node, struct json_t *doc, char *err,
                         size_t errlen);
/* Deletes an external node's document everywhere. */
void catalog_delete_external(struct catalog *c, const char *node);

/* Attaches the replicated store as the backend (see catalog.c); NULL
 * detaches.  `store` is a kv store handle from kv/. */
void catalog_attach_store(struct catalog *c, void *store);

/* The loop that paces resyncs of a large catalog (see catalog.c, watch_cb);
 * without one every change resyncs at once. Call before attaching a store. */
struct ev_loop;
void catalog_set_loop(struct catalog *c, struct ev_loop *loop);

/* How the catalog has caught up with the store (metrics): resyncs by a scan
 * of the whole prefix, resyncs of the changed keys only, keys re-read. */
struct catalog_stats {
	uint64_t resync_scans, resync_changed, reread;
};
const struct catalog_stats *catalog_stats(const struct catalog *c);

/* Registers the (single) change callback, e.g. to wake blocking queries. */
void catalog_on_change(struct catalog *c, catalog_change_fn fn, void *ud);

/* ---- query side ---- */

/* Highest index of any change (X-Consul-Index); at least 1. */
uint64_t catalog_index(const struct catalog *c);

/*
 * Instances of the service named name[0..namelen) (case-insensitive), with
 * tag tag[0..taglen) if tag != NULL (case-insensitive), on alive nodes,
 * whose health is passing, or passing-or-warning unless only_passing.
 * Writes up to max pointers into out and returns how many matched in all
 * (may exceed max).  Allocates nothing.
 */
size_t catalog_lookup(const struct catalog *c, const char *name, size_t namelen, const char *tag,
                      size_t taglen, bool only_passing, const struct catalog_inst **out,
                      size_t max);
/* Like catalog_lookup without health/liveness filtering (for the HTTP
 * catalog, which shows every registered instance). */
size_t catalog_lookup_all(const struct catalog *c, const char *name, size_t namelen,
                          const struct catalog_inst **out, size_t max);
/* True if any instance of the service exists (any health, any node). */
bool catalog_service_exists(const struct catalog *c, const char *name, size_t namelen);

/* The node named name[0..len) (case-insensitive), or NULL; alive or not. */
const struct catalog_node *catalog_node_get(const struct catalog *c, const char *name, size_t len);
/* Nodes in name order; i < catalog_node_count(). */
size_t catalog_node_count(const struct catalog *c);
const struct catalog_node *catalog_node_at(const struct catalog *c, size_t i);
/* All instances, sorted by lowercased service name then node. */
size_t catalog_inst_count(const struct catalog *c);
const struct catalog_inst *catalog_inst_at(const struct catalog *c, size_t i);

/* Parses an IPv4/IPv6 literal into *ip; false if it is not one. */
bool catalog_parse_ip(const char *s, struct catalog_ip *ip);

#endif
