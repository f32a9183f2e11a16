/*
 * agent/catalog_dns.c — see catalog_dns.h.
 *
 * A DNS query asks the catalog at most twice (binary search, no
 * allocation).  An instance reference is the catalog's own struct
 * catalog_inst pointer; the catalog's lookup writes them into a typed
 * array, so the adapter keeps one of DNS_INSTANCES_MAX (allocated once,
 * with the adapter) and copies the pointers out: 8 bytes each, where
 * describing every instance up front would read every catalog record.
 */
#include "agent/catalog_dns.h"

#include <stdlib.h>
#include <string.h>

#include "agent/catalog.h"
#include "dns/dns.h"
#include "lib/xalloc.h"

struct catalog_dns {
	struct dns_source src;
	const struct catalog *cat;
	const struct catalog_inst *found[DNS_INSTANCES_MAX];
	int64_t (*distance)(void *ctx, const char *node); /* NULL: none */
	void *distance_ctx;
};

_Static_assert(sizeof(((struct catalog_ip *)0)->b) == sizeof(((struct dns_ip *)0)->b),
               "catalog_ip and dns_ip hold the same addresses");

static void copy_ip(struct dns_ip *to, const struct catalog_ip *from)
{
	memcpy(to->b, from->b, sizeof(to->b));
	to->len = from->len;
}

/* The catalog decides which instances DNS may see (alive node, health,
 * tag). */
static size_t src_instances(void *ctx, const char *svc, size_t svclen, const char *tag,
                            size_t taglen, bool only_passing, const void **out, size_t max)
{
	struct catalog_dns *cd = ctx;
	if (max > DNS_INSTANCES_MAX)
		max = DNS_INSTANCES_MAX;
	size_t n = catalog_lookup(cd->cat, svc, svclen, tag, taglen, only_passing, cd->found, max);
	size_t k = n < max ? n : max;
	for (size_t i = 0; i < k; i++)
		out[i] = cd->found[i];
	return n;
}

/* The SRV weight is picked here, from the instance's health, so the
 * responder never learns about check states. */
static void src_instance(void *ctx, const void *ref, struct dns_instance *out)
{
	const struct catalog_inst *in = ref;
	out->node = in->node->name;
	copy_ip(&out->ip, &in->ip);
	out->own_ip = in->own_ip;
	out->port = in->port;
	out->weight = in->health == CATALOG_WARNING ? in->weight_warning : in->weight_passing;
}

/*
 * A node the catalog knows but gossip calls dead is still returned, with alive
 * false: the responder, not the catalog, decides what a dead node answers.
 */
static bool src_node(void *ctx, const char *name, size_t len, struct dns_node *out)
{
	struct catalog_dns *cd = ctx;
	const struct catalog_node *n = catalog_node_get(cd->cat, name, len);
	if (n == NULL)
		return false;
	out->alive = n->alive;
	copy_ip(&out->ip, &n->ip);
	out->nmeta = n->nmeta;
	out->ref = n;
	return true;
}

/*
 * Meta is read by index on demand, so a TXT answer for a node costs no copy of
 * its meta; dn->ref is the catalog's own node, valid for the query's duration.
 */
static void src_node_meta(void *ctx, const struct dns_node *dn, size_t i, const char **key,
                          const char **value)
{
	const struct catalog_node *n = dn->ref;
	*key = n->meta[i].key;
	*value = n->meta[i].value;
}

/* The instance's node's distance, as the agent estimates it. */
static int64_t src_distance(void *ctx, const void *ref)
{
	struct catalog_dns *cd = ctx;
	const struct catalog_inst *in = ref;
	return cd->distance(cd->distance_ctx, in->node->name);
}

void catalog_dns_set_distance(struct catalog_dns *cd, int64_t (*fn)(void *ctx, const char *node),
                              void *ctx)
{
	cd->distance = fn;
	cd->distance_ctx = ctx;
	cd->src.distance = fn != NULL ? src_distance : NULL;
}

struct catalog_dns *catalog_dns_new(const struct catalog *cat)
{
	struct catalog_dns *cd = xmalloc(sizeof(*cd));
	cd->cat = cat;
	cd->distance = NULL;
	cd->distance_ctx = NULL;
	cd->src = (struct dns_source){
	        .ctx = cd,
	        .instances = src_instances,
	        .instance = src_instance,
	        .node = src_node,
	        .node_meta = src_node_meta,
	};
	return cd;
}

void catalog_dns_free(struct catalog_dns *cd)
{
	free(cd);
}

const struct dns_source *catalog_dns_source(const struct catalog_dns *cd)
{
	return &cd->src;
}
