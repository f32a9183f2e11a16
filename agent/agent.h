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
struct serf;
struct keyring;
struct agent_events;
struct api_event;

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
	struct serf *serf;	     /* serf layer: intents, clocks, events, queries */
	struct keyring *keyring;     /* gossip encryption keys (empty: plain text) */
	struct agent_events *events; /* -event-handler runner */
	struct api_event *api_event; /* /v1/event state (agent/api_event.c) */
	struct agent_catalog *catalog; /* services, checks, catalog, DNS (agent/api_catalog.c) */
	struct kv *kv;		       /* replicated key-value engine (kv/kv.h) */
	struct api_ops *ops;	       /* metrics collection, monitors (agent/api_ops.c) */
	void *priv; /* agent.c's watchers */
};

/* `rumor agent ...`: returns the process exit code. */
int agent_main(int argc, char **argv);

/* Start a graceful leave; the agent exits once it has spread (or after the
 * broadcast timeout). Safe to call twice. */
void agent_leave(struct agent *a);

/* Serf member status for a SWIM state of the member (Consul's integers). */
int agent_member_status(const struct agent *a, const void *swim_member);

/* Replace the node meta pairs (tags) and re-announce them; 0, or -1 with
 * err when they do not fit in memberlist's meta limit. */
int agent_set_tags(struct agent *a, const char *const *keys, const char *const *values, size_t n,
		   char *err, size_t errlen);
/* Path of the keyring file in the data directory (into buf). */
const char *agent_keyring_path(const struct agent *a, char *buf, size_t cap);

#endif
