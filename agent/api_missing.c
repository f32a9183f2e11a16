/*
 * agent/api_missing.c — see api_missing.h.
 *
 * The table lists Consul's endpoints (agent/http_register.go) by prefix.
 * A row ending in '/' matches everything under it; a row without one
 * matches the path itself and anything under it ("/v1/query" takes
 * "/v1/query" and "/v1/query/<id>/execute", not "/v1/queryx"). Real
 * routes are tried first by the router, so a row here never hides one:
 * /v1/operator/keyring is served although /v1/operator/ is listed.
 */
#include "agent/api_missing.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent/api_catalog.h"
#include "agent/api_reply.h"
#include "agent/catalog.h"
#include "agent/http/http.h"

struct missing {
	const char *prefix;
	const char *feature;
};

static const struct missing missing[] = {
        {"/v1/acl", "the ACL system (tokens, policies, roles, auth methods)"},
        {"/v1/agent/token/", "ACL tokens on the agent"},
        {"/v1/agent/host", "host information (/v1/agent/host)"},
        {"/v1/agent/version", "the agent version endpoint (see /v1/agent/self)"},
        {"/v1/agent/reload", "reload over HTTP (send the agent SIGHUP)"},
        {"/v1/agent/metrics/stream", "streamed metrics"},
        {"/v1/agent/connect/", "Connect (service mesh)"},
        {"/v1/agent/health/service/", "agent-local service health (use /v1/health/service)"},
        {"/v1/agent/service/", "reading one service (use /v1/agent/services)"},
        {"/v1/catalog/connect/", "Connect (service mesh)"},
        {"/v1/catalog/node-services/", "the node-services list (use /v1/catalog/node)"},
        {"/v1/catalog/gateway-services/", "gateways (service mesh)"},
        {"/v1/health/connect/", "Connect (service mesh)"},
        {"/v1/health/ingress/", "ingress gateways (service mesh)"},
        {"/v1/config", "config entries"},
        {"/v1/connect", "Connect (service mesh: CA, intentions)"},
        {"/v1/coordinate/update", "writing coordinates (agents learn them by gossip)"},
        {"/v1/discovery-chain", "discovery chains (service mesh)"},
        {"/v1/exported-services", "exported services (cluster peering)"},
        {"/v1/internal", "Consul's internal endpoints (UI, federation states)"},
        {"/v1/namespace", "namespaces (Consul Enterprise)"},
        {"/v1/namespaces", "namespaces (Consul Enterprise)"},
        {"/v1/partition", "admin partitions (Consul Enterprise)"},
        {"/v1/partitions", "admin partitions (Consul Enterprise)"},
        {"/v1/peering", "cluster peering"},
        {"/v1/peerings", "cluster peering"},
        {"/v1/operator", "this operator endpoint (Raft, autopilot, usage; only "
                         "/v1/operator/keyring is served)"},
        {"/v1/query", "prepared queries"},
};

static bool prefix_match(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return false;
	return prefix[n - 1] == '/' || path[n] == '\0' || path[n] == '/';
}

const char *api_missing_feature(const char *path)
{
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
		if (prefix_match(path, missing[i].prefix))
			return missing[i].feature;
	return NULL;
}

/*
 * The index is the catalog's (1 before the catalog exists): a client that
 * loops on X-Consul-Index gets a valid, non-zero one.
 */
void api_missing_reply(struct agent *a, struct http_conn *c, const struct http_request *req)
{
	const struct catalog *cat = api_catalog_catalog(a);
	char idx[32], msg[400];
	snprintf(idx, sizeof(idx), "%" PRIu64, cat != NULL ? catalog_index(cat) : (uint64_t)1);
	http_add_header(c, "X-Consul-Index", idx);
	http_add_header(c, "X-Consul-KnownLeader", "true");
	http_add_header(c, "X-Consul-LastContact", "0");
	const char *feature = api_missing_feature(req->path);
	if (feature == NULL) {
		api_reply_text(c, 404, "404 page not found");
		return;
	}
	snprintf(msg, sizeof(msg),
	         "rumor does not implement %s: %s %s is a Consul endpoint rumor lacks (see "
	         "docs/COMPARISON.md)",
	         feature, req->method, req->path);
	api_reply_text(c, 501, msg);
}
