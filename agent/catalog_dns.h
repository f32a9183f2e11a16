/*
 * agent/catalog_dns.h — the catalog as the DNS responder's source.
 *
 * Owns: a struct dns_source (dns/dns.h) whose callbacks answer from one
 * catalog (agent/catalog.h), and the pointer array a catalog lookup fills
 * before the instances are copied out.  dns/ defines the interface and
 * never sees the catalog; this adapter is the one file that knows both
 * (layers: dns/ below agent/, the arrow points down).
 *
 * Error convention: catalog_dns_new() aborts on OOM (lib/xalloc.h); the
 * callbacks cannot fail and allocate nothing.
 */
#ifndef RUMOR_AGENT_CATALOG_DNS_H
#define RUMOR_AGENT_CATALOG_DNS_H

#include <stdint.h>

struct catalog;
struct catalog_dns;
struct dns_source;

/* A source answering from cat (borrowed: it must outlive the adapter);
 * the caller frees it with catalog_dns_free(). */
struct catalog_dns *catalog_dns_new(const struct catalog *cat);
/* Frees cd; NULL is a no-op. */
void catalog_dns_free(struct catalog_dns *cd);
/* Give the source a distance (dns_source.distance): fn(ctx, node) is the
 * estimated round trip in ns from this agent to `node`, -1 when unknown.
 * Without it the source has no distance() and answers are only shuffled. */
void catalog_dns_set_distance(struct catalog_dns *cd, int64_t (*fn)(void *ctx, const char *node),
                              void *ctx);
/* The source for dns_process()/dns_server_new(), owned by cd. */
const struct dns_source *catalog_dns_source(const struct catalog_dns *cd);

#endif
