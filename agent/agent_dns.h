/*
 * agent/agent_dns.h — the agent's DNS interface, composed.
 *
 * Owns: the DNS responder (dns/dns.h), its UDP/TCP server
 * (dns/dns_server.h) and the catalog's source for it (agent/catalog_dns.h),
 * built from the configuration (-dns-port, -domain, -recursor, dns_config);
 * and the collector that copies the responder's counters into the metrics
 * registry (dns.queries by rcode, dns.truncated).  It is started once the
 * catalog exists and stopped before the catalog goes.
 *
 * Error convention: agent_dns_start() returns 0 or -1 with a message in
 * err; OOM aborts.
 */
#ifndef RUMOR_AGENT_AGENT_DNS_H
#define RUMOR_AGENT_AGENT_DNS_H

#include <stddef.h>

struct agent;
struct agent_dns;
struct catalog;

/* Starts DNS on cfg.client_addr:cfg.dns_port, answering from cat (borrowed:
 * it must outlive the DNS).  *out is the running DNS, for agent_dns_stop(),
 * or NULL when DNS is off (cfg.dns_port < 0).  0, or -1 with err. */
int agent_dns_start(const struct agent *a, const struct catalog *cat, struct agent_dns **out,
                    char *err, size_t errlen);
/* Closes the sockets and frees; NULL is a no-op. */
void agent_dns_stop(struct agent_dns *d);

#endif
