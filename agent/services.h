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
 * Maintenance (Consul's): a critical check without a runner, node-level
 * (_node_maintenance) or of one service (_service_maintenance:<id>), kept in
 * a small JSON file in the data directory so that it survives a restart.
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
	const char *maint_path; /* file keeping maintenance across restarts; NULL: none */
};

/* Consul's maintenance checks: IDs, and Notes when no reason is given. */
#define SERVICES_NODE_MAINT "_node_maintenance"
#define SERVICES_MAINT_PREFIX "_service_maintenance:"
#define SERVICES_NODE_MAINT_DEFAULT                                                                \
	"Maintenance mode is enabled for this node, but no reason was provided. This is a "        \
	"default message."
#define SERVICES_SERVICE_MAINT_DEFAULT                                                             \
	"Maintenance mode is enabled for this service, but no reason was provided. This is a "     \
	"default message."

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

/* Node maintenance on or off: the critical check _node_maintenance ("Node
 * Maintenance Mode", Notes = reason or the default text); enabling twice
 * keeps the first reason.  Saved to maint_path. */
void services_node_maintenance(struct services *s, bool enable, const char *reason);
/* The same for one service (_service_maintenance:<id>, "Service Maintenance
 * Mode"); -2 if no service has that ID. */
int services_service_maintenance(struct services *s, const char *id, bool enable,
                                 const char *reason, char *err, size_t errlen);
/* Puts back what maint_path says was in maintenance (call once, after the
 * configured services are registered); a service that is gone is logged. */
void services_maintenance_restore(struct services *s);

/* GET /v1/agent/services and /v1/agent/checks bodies (new references). */
struct json_t *services_agent_services(const struct services *s);
struct json_t *services_agent_checks(const struct services *s);

/* Number of registered services / checks. */
size_t services_count(const struct services *s);
size_t services_check_count(const struct services *s);

#endif
