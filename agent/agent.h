/*
 * agent/agent.h — `rumor agent`: wires the modules onto one libev loop.
 *
 * Owns: the loop, the configuration, the gossip transport (and through it
 * the SWIM core), the HTTP server and its API routes (agent/api.c), signal
 * handling (SIGINT/SIGTERM: leave as configured, then exit; SIGHUP: reload
 * log level and node meta), joins at start and retry-join, the node ID in
 * the data directory, the pid file, and the dev-mode temporary directory.
 */
#ifndef RUMOR_AGENT_AGENT_H
#define RUMOR_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/config.h"

struct ev_loop;
struct gossip_transport;
struct http_server;

struct agent {
	struct ev_loop *loop;
	struct rumor_config cfg;
	struct gossip_transport *gossip;
	struct http_server *http;
	char node_id[37];
	int64_t start_ms;
	bool leaving;	    /* a graceful leave is under way */
	bool left;	    /* leave finished */
	bool shutting_down; /* the loop is being stopped */
	int exit_code;
	int retry_attempts;
	bool joined_once;
	struct agent_catalog *catalog; /* services, checks, catalog, DNS (agent/api_catalog.c) */
	void *priv; /* agent.c's watchers */
};

/* `rumor agent ...`: returns the process exit code. */
int agent_main(int argc, char **argv);

/* Start a graceful leave; the agent exits once it has spread (or after the
 * broadcast timeout). Safe to call twice. */
void agent_leave(struct agent *a);

/* Serf member status for a SWIM state of the member (Consul's integers). */
int agent_member_status(const struct agent *a, const void *swim_member);

#endif
