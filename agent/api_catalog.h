/*
 * agent/api_catalog.h — services, checks, catalog and health on the agent:
 * their lifecycle and their HTTP endpoints.
 *
 * Owns: the catalog (agent/catalog.h), the local service registry
 * (agent/services.h), and the blocking queries parked on catalog/health
 * endpoints.  agent.c calls api_catalog_start() after the gossip layer is
 * up and api_catalog_stop() before it goes; member events go to
 * api_catalog_member_event().  DNS answers from the same catalog
 * (api_catalog_catalog(), agent/agent_dns.h), started and stopped by
 * agent.c next to it.  The handlers below are rows in api.c's route table.
 *
 * Endpoints (Consul's shapes; see docs/HTTP_API.md):
 *   PUT  /v1/agent/service/register          GET|PUT /v1/agent/service/deregister/<id>
 *   GET  /v1/agent/services, /v1/agent/checks
 *   PUT  /v1/agent/check/register            GET|PUT /v1/agent/check/deregister/<id>
 *   GET|PUT /v1/agent/check/{pass,warn,fail}/<id>[?note=]
 *   PUT  /v1/agent/check/update/<id>         body {"Status","Output"}
 *   GET  /v1/catalog/{services,nodes}, /v1/catalog/service/<name>[?tag=],
 *        /v1/catalog/node/<node>
 *   GET  /v1/health/service/<name>[?passing][&tag=], /v1/health/node/<node>,
 *        /v1/health/checks/<name>, /v1/health/state/<state>
 * Reads carry X-Consul-Index (the catalog index) and take ?index=&wait=.
 *
 * Error convention: api_catalog_start() returns 0 or -1 with err; handlers
 * answer 400 (bad input), 404 (unknown ID) or 500 themselves.
 */
#ifndef RUMOR_AGENT_API_CATALOG_H
#define RUMOR_AGENT_API_CATALOG_H

#include <stddef.h>

struct agent;
struct catalog;
struct services;
struct http_conn;
struct http_request;
struct swim_member;

/* Creates catalog and registry (with the config's service definitions).
 * 0 or -1 with err. */
int api_catalog_start(struct agent *a, char *err, size_t errlen);
/* Answers parked queries (with current data), frees. */
void api_catalog_stop(struct agent *a);
/* The catalog (owned here; valid until api_catalog_stop), or NULL before
 * start. */
const struct catalog *api_catalog_catalog(struct agent *a);
/* This agent's catalog document, written to the store again. */
void api_catalog_republish(struct agent *a);
/* The same catalog, writable (external nodes: agent/api_catalog_ext.c). */
struct catalog *api_catalog_store(struct agent *a);
/* The local service registry (maintenance: agent/api_catalog_ext.c), or
 * NULL before start. */
struct services *api_catalog_registry(struct agent *a);
/* A gossip member event (enum swim_event_type). */
void api_catalog_member_event(struct agent *a, int type, const struct swim_member *m);
/* A registry of the KV engine once it exists (struct kv *). */
void api_catalog_attach_store(struct agent *a, void *kv);

#define API_CATALOG_HANDLER(name)                                                                  \
	void name(struct agent *a, struct http_conn *c, const struct http_request *req,            \
	          const char *rest)
API_CATALOG_HANDLER(api_h_service_register);
API_CATALOG_HANDLER(api_h_service_deregister);
API_CATALOG_HANDLER(api_h_agent_services);
API_CATALOG_HANDLER(api_h_agent_checks);
API_CATALOG_HANDLER(api_h_check_register);
API_CATALOG_HANDLER(api_h_check_deregister);
API_CATALOG_HANDLER(api_h_check_pass);
API_CATALOG_HANDLER(api_h_check_warn);
API_CATALOG_HANDLER(api_h_check_fail);
API_CATALOG_HANDLER(api_h_check_update);
API_CATALOG_HANDLER(api_h_catalog_services);
API_CATALOG_HANDLER(api_h_catalog_service);
API_CATALOG_HANDLER(api_h_catalog_nodes);
API_CATALOG_HANDLER(api_h_catalog_node);
API_CATALOG_HANDLER(api_h_health_service);
API_CATALOG_HANDLER(api_h_health_node);
API_CATALOG_HANDLER(api_h_health_checks);
API_CATALOG_HANDLER(api_h_health_state);

#endif
