/*
 * tests/unit/test_api_missing.c — the table of Consul endpoints rumor lacks
 * (agent/api_missing.c): which paths it names, and where a prefix ends.
 */
#include <stddef.h>
#include <string.h>

#include "agent/api_missing.h"
#include "tests/unit/check.h"

static void consul_paths_name_their_feature(void)
{
	static const char *const want[][2] = {
	        {"/v1/acl/tokens", "ACL"},
	        {"/v1/acl/token/self", "ACL"},
	        {"/v1/connect/intentions", "Connect"},
	        {"/v1/config/service-defaults/web", "config entries"},
	        {"/v1/config", "config entries"},
	        {"/v1/coordinate/update", "coordinates"},
	        {"/v1/query", "prepared queries"},
	        {"/v1/query/abc/execute", "prepared queries"},
	        {"/v1/operator/raft/configuration", "operator"},
	        {"/v1/internal/ui/nodes", "internal"},
	        {"/v1/discovery-chain/web", "discovery chains"},
	        {"/v1/namespaces", "namespaces"},
	        {"/v1/partition/p1", "partitions"},
	        {"/v1/peerings", "peering"},
	        {"/v1/agent/token/default", "ACL tokens"},
	        {"/v1/agent/service/web1", "one service"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *f = api_missing_feature(want[i][0]);
		CHECK(f != NULL && strstr(f, want[i][1]) != NULL,
		      "%s: expected a text naming %s, got %s", want[i][0], want[i][1],
		      f ? f : "(null)");
	}
}

/* A prefix without a trailing '/' ends at a path segment: /v1/queryx and
 * /v1/configure are not Consul's, so they stay 404s. */
static void other_paths_are_not_named(void)
{
	static const char *const paths[] = {
	        "/v1/queryx", "/v1/configure", "/v1/sessions", "/v1/nope",
	        "/",          "/v1/kvx",       "/v1/snapshots"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const char *f = api_missing_feature(paths[i]);
		CHECK(f == NULL, "%s named %s", paths[i], f ? f : "");
	}
}

int main(void)
{
	RUN(consul_paths_name_their_feature);
	RUN(other_paths_are_not_named);
	return check_exit_code();
}
