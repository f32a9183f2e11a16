/*
 * agent/api_catalog_ext.h — the catalog's write endpoints and maintenance:
 *
 *   PUT /v1/catalog/register     Consul's body (Node, Address, ID,
 *                                TaggedAddresses, NodeMeta, Service,
 *                                Check/Checks with Status): a service of
 *                                an "external node", one no agent runs on
 *   PUT /v1/catalog/deregister   Node [+ ServiceID | CheckID]
 *   GET /v1/catalog/datacenters  ["<the agent's datacenter>"]
 *   PUT /v1/agent/maintenance?enable=true|false[&reason=]
 *   PUT /v1/agent/service/maintenance/<id>?enable=true|false[&reason=]
 *
 * Owns nothing: an external node's record goes to the replicated catalog
 * (agent/catalog.h, catalog_put_external), maintenance to the local
 * registry (agent/services.h). Rows in api.c's route table.
 *
 * An external node's record is read, changed and written whole by the
 * agent that takes the request (last writer wins between agents, as for
 * any KV key). A node that is a gossip member, or that an agent publishes,
 * is refused (400): its record belongs to its agent, which would replace it.
 *
 * Error convention: handlers answer 400 (bad body or parameters), 404
 * (unknown service) themselves, with Consul's texts where Consul has one.
 */
#ifndef RUMOR_AGENT_API_CATALOG_EXT_H
#define RUMOR_AGENT_API_CATALOG_EXT_H

#include "agent/api_catalog.h"

API_CATALOG_HANDLER(api_h_catalog_register);
API_CATALOG_HANDLER(api_h_catalog_deregister);
API_CATALOG_HANDLER(api_h_catalog_datacenters);
API_CATALOG_HANDLER(api_h_agent_maintenance);
API_CATALOG_HANDLER(api_h_service_maintenance);

#endif
