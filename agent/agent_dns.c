/*
 * agent/agent_dns.c — see agent_dns.h.
 *
 * The composition only: which catalog the responder reads, which socket it
 * answers on, what the configuration means for it.  The DNS logic is in
 * dns/ and never sees the agent; the catalog never sees DNS beyond the
 * adapter (agent/catalog_dns.c).
 */
#include "agent/agent_dns.h"

#include <stdint.h>
#include <stdlib.h>

#include "agent/env.h"
#include "agent/api_coord.h"
#include "agent/catalog_dns.h"
#include "agent/metrics.h"
#include "dns/dns.h"
#include "dns/dns_server.h"
#include "lib/log.h"
#include "lib/xalloc.h"

struct agent_dns {
	struct catalog_dns *source;
	struct dns_responder *resp;
	struct dns_server *server;
};

/* Metrics: the responder counts what it dropped and each negative rcode;
 * NOERROR is what is left, so the rcode series add up to the queries. */
static void dns_collect(void *ud)
{
	struct agent_dns *d = ud;
	const struct dns_stats *st = dns_responder_stats(d->resp);
	uint64_t answered_err = st->formerr + st->nxdomain + st->refused;
	uint64_t noerror = st->queries > answered_err + st->dropped
	                           ? st->queries - answered_err - st->dropped
	                           : 0;
#define SETC(id, v) metrics_set_counter(METRIC_##id, (v), (double)(v))
	SETC(DNS_NOERROR, noerror);
	SETC(DNS_NXDOMAIN, st->nxdomain);
	SETC(DNS_REFUSED, st->refused);
	SETC(DNS_FORMERR, st->formerr);
	SETC(DNS_DROPPED, st->dropped);
	SETC(DNS_TRUNCATED, st->truncated);
#undef SETC
}

/* Nearest first: the round trip from this agent to `node` by the network
 * coordinates gossip keeps (agent/api_coord.h). */
static int64_t dns_distance(void *ctx, const char *node)
{
	return api_coord_rtt_ns(ctx, NULL, node);
}

/*
 * A negative -dns-port means no DNS at all (as Consul's -1): *out stays NULL and
 * that is success. Any failure unwinds through agent_dns_stop, which accepts a
 * half-built struct, so there is one cleanup path.
 */
int agent_dns_start(const struct agent *a, const struct catalog *cat, struct agent_dns **out,
                    char *err, size_t errlen)
{
	const struct rumor_config *cfg = &a->cfg;
	*out = NULL;
	if (cfg->dns_port < 0)
		return 0;
	struct agent_dns *d = xcalloc(1, sizeof(*d));
	struct dns_responder_config dc = {
	        .domain = cfg->domain,
	        .alt_domain = cfg->alt_domain,
	        .datacenter = cfg->datacenter,
	        .node_name = cfg->node_name,
	        .truncate = cfg->dns_truncate,
	        .recursor = cfg->recursors.n > 0,
	        .only_passing = cfg->dns_only_passing,
	        .node_ttl = (uint32_t)(cfg->dns_node_ttl_ms / 1000),
	        .service_ttl = (uint32_t)(cfg->dns_service_ttl_ms / 1000),
	        .udp_max_size = (unsigned)cfg->dns_udp_max_size,
	        .nearest_first = cfg->dns_nearest_first,
	};
	d->resp = dns_responder_new(&dc, err, errlen);
	if (d->resp == NULL)
		goto fail;
	d->source = catalog_dns_new(cat);
	catalog_dns_set_distance(d->source, dns_distance, (void *)a);
	d->server = dns_server_new(a->loop, d->resp, catalog_dns_source(d->source),
	                           cfg->client_addr, (uint16_t)cfg->dns_port, err, errlen);
	if (d->server == NULL)
		goto fail;
	log_info("agent: DNS server listening on %s:%u (udp+tcp), domain %s", cfg->client_addr,
	         dns_server_port(d->server), cfg->domain);
	if (cfg->recursors.n > 0 &&
	    dns_server_set_recursors(d->server, (const char *const *)cfg->recursors.items,
	                             cfg->recursors.n, err, errlen) < 0)
		goto fail;
	if (metrics_collector_add(dns_collect, d) < 0)
		log_warn("agent: DNS counters are not in the metrics: too many collectors");
	*out = d;
	return 0;
fail:
	agent_dns_stop(d);
	return -1;
}

/*
 * Tears down in reverse order of start: the server (which reads the source and
 * the responder) goes before either of them.
 */
void agent_dns_stop(struct agent_dns *d)
{
	if (d == NULL)
		return;
	metrics_collector_remove(dns_collect, d); /* unknown pairs are ignored */
	dns_server_free(d->server);
	catalog_dns_free(d->source);
	dns_responder_free(d->resp);
	free(d);
}
