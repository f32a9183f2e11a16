/*
 * agent/services.h — the services and checks registered on this agent.
 *
 * Owns: the local service definitions (from config files and
 * /v1/agent/service/register), their checks and the runners that execute
 * them (agent/checks.h), the current status and output of each check, and
 * deregister_critical_service_after timers.  Whenever something other
 * agents should see changes (a service, a check's status), this agent's
 * node document is rebuilt and published through the catalog
 * (agent/catalog.h), which replicates it.
 *
 * Definitions are Consul's JSON (service definition / check definition);
 * keys are matched ignoring case and underscores, so "Name", "name",
 * "DeregisterCriticalServiceAfter" and "deregister_critical_service_after"
 * are the same key (python-consul sends lowercase keys).
 *
 * Error convention: functions return 0, or -1 with a message in err that an
 * HTTP handler can return as a 400 body (-2: unknown ID, for a 404).
 */
#ifndef RUMOR_AGENT_SERVICES_H
#define RUMOR_AGENT_SERVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/catalog.h"

struct ev_loop;
struct json_t;
struct services;

struct services_config {
	const char *node; /* node name */
	const char *node_id;
	const char *address; /* advertised address */
	const char *datacenter;
	const char *const *meta_keys, *const *meta_values; /* node meta */
	size_t nmeta;
	bool enable_script_checks;
};

/* New registry; publishes the (empty) node document at once.  Copies cfg. */
struct services *services_new(struct ev_loop *loop, struct catalog *cat,
                              const struct services_config *cfg);
/* Stops every check and frees; NULL is a no-op. */
void services_free(struct services *s);

/* Registers (or replaces) a service from its definition (object). */
int services_register(struct services *s, const struct json_t *def, char *err, size_t errlen);
/* Removes a service and its checks; -2 if unknown. */
int services_deregister(struct services *s, const char *id, char *err, size_t errlen);
/* Registers a check (/v1/agent/check/register), optionally of a service. */
int services_check_register(struct services *s, const struct json_t *def, char *err, size_t errlen);
/* Removes a check; -2 if unknown. */
int services_check_deregister(struct services *s, const char *id, char *err, size_t errlen);
/* TTL update (pass/warn/fail/update): -2 if unknown, -1 if not a TTL check. */
int services_check_update(struct services *s, const char *id, enum catalog_health st,
                          const char *output, char *err, size_t errlen);

/* GET /v1/agent/services and /v1/agent/checks bodies (new references). */
struct json_t *services_agent_services(const struct services *s);
struct json_t *services_agent_checks(const struct services *s);

/* Number of registered services / checks. */
size_t services_count(const struct services *s);
size_t services_check_count(const struct services *s);

#endif
