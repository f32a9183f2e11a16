/*
 * agent/env.h — the agent as its parts see it: the modules the composition
 * root (agent/agent.c) wired together, and the few things they may ask of
 * it. The HTTP API, the catalog and the event code include this, never
 * agent/agent.h, so no arrow runs from them back up to agent.c: agent.c
 * builds the struct, installs its calls, and hands a pointer down.
 *
 * Owns nothing: every pointer is owned by agent.c, which creates the
 * modules at start-up (in the order of agent_main) and frees them at exit.
 */
#ifndef RUMOR_AGENT_ENV_H
#define RUMOR_AGENT_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"

struct ev_loop;
struct gossip_transport;
struct http_server;
struct serf;
struct keyring;
struct agent_events;
struct api_event;
struct agent_catalog;
struct kv;
struct api_ops;
struct server;
struct catalog;
struct agent;

/* What the parts may ask of the composition root (agent.c fills these). */
struct agent_calls {
	/* Start a graceful leave; the agent exits once it has spread (or after
	 * the broadcast timeout). Safe to call twice. */
	void (*leave)(struct agent *a);
	/* Serf member status for a SWIM member (Consul's integers). */
	int (*member_status)(const struct agent *a, const void *swim_member);
	/* Replace the node meta pairs (tags) and re-announce them; 0, or -1
	 * with err when they do not fit in memberlist's meta limit. */
	int (*set_tags)(struct agent *a, const char *const *keys, const char *const *values,
	                size_t n, char *err, size_t errlen);
	/* Path of the keyring file in the data directory (into buf). */
	const char *(*keyring_path)(const struct agent *a, char *buf, size_t cap);
	/* Build our tags again (the server tier's changed) and announce them. */
	void (*retag)(struct agent *a);
	/* The catalog this agent keeps (agent/catalog.h), NULL before it
	 * started: what the server tier's sessions check a node's health in. */
	const struct catalog *(*catalog)(struct agent *a);
	/* Write this agent's own catalog document again (whole: idempotent),
	 * as the server tier does when the store turns CP. */
	void (*republish)(struct agent *a);
};

struct agent {
	struct ev_loop *loop;
	struct rumor_config cfg;
	struct gossip_transport *gossip;
	struct http_server *http;
	char node_id[37];
	int64_t start_ms;
	bool leaving;       /* a graceful leave is under way */
	bool left;          /* leave finished */
	bool shutting_down; /* the loop is being stopped */
	int exit_code;
	int retry_attempts;
	bool joined_once;
	struct serf *serf;               /* serf layer: intents, clocks, events, queries */
	struct keyring *keyring;         /* gossip encryption keys (empty: plain text) */
	struct agent_events *events;     /* -event-handler runner */
	struct api_event *api_event;     /* /v1/event state (agent/api_event.c) */
	struct agent_catalog *catalog;   /* services, checks, catalog, DNS (agent/api_catalog.c) */
	struct kv *kv;                   /* replicated key-value engine (kv/kv.h) */
	struct api_ops *ops;             /* metrics collection, monitors (agent/api_ops.c) */
	struct server *server;           /* Raft tier and CP writes (agent/server.h) */
	const struct agent_calls *calls; /* installed by agent.c */
	void *priv;                      /* agent.c's watchers */
};

static inline void agent_leave(struct agent *a)
{
	a->calls->leave(a);
}

static inline int agent_member_status(const struct agent *a, const void *swim_member)
{
	return a->calls->member_status(a, swim_member);
}

static inline int agent_set_tags(struct agent *a, const char *const *keys,
                                 const char *const *values, size_t n, char *err, size_t errlen)
{
	return a->calls->set_tags(a, keys, values, n, err, errlen);
}

static inline const char *agent_keyring_path(const struct agent *a, char *buf, size_t cap)
{
	return a->calls->keyring_path(a, buf, cap);
}

static inline void agent_retag(struct agent *a)
{
	a->calls->retag(a);
}

static inline const struct catalog *agent_catalog(struct agent *a)
{
	return a->calls->catalog(a);
}

static inline void agent_republish(struct agent *a)
{
	a->calls->republish(a);
}

#endif
