/*
 * agent/events.h — Serf-style event handlers (-event-handler [TYPE=]SCRIPT).
 *
 * Owns: the parsed handler specs, the coalescing buffers (member events and
 * coalescable user events, as the serf agent: flush after 1 s of quiet or
 * 3 s at most), the queue of pending invocations, and the one running child.
 *
 * Each invocation runs `/bin/sh -c SCRIPT` with serf's environment
 * (SERF_EVENT, SERF_SELF_NAME, SERF_SELF_ROLE, SERF_TAG_<KEY>,
 * SERF_USER_EVENT, SERF_USER_LTIME, SERF_QUERY_NAME, SERF_QUERY_LTIME) and
 * serf's stdin (member lines "name\taddr\trole\ttags" or the payload with a
 * trailing newline). Invocations run one at a time in arrival order, as the
 * serf agent runs them; everything is non-blocking on the agent's libev loop
 * (child watcher, non-blocking pipes); output is kept up to 8 KiB (the rest
 * is counted and dropped) and logged; a query handler's output is its
 * response. The queue is bounded (EVENTS_QUEUE_MAX): past it, events are
 * dropped with a warning.
 *
 * Error convention: agent_events_new returns NULL with a message in err.
 */
#ifndef RUMOR_AGENT_EVENTS_H
#define RUMOR_AGENT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "gossip/serf.h"
#include "gossip/tags.h"
#include "gossip/wire.h"

#define EVENTS_QUEUE_MAX 1024
#define EVENTS_OUTPUT_MAX 8192

struct ev_loop;
struct agent_events;

/* A query handler's output, to send back as the query's response. */
typedef void (*agent_events_respond_cb)(void *ud, const struct serf_query_in *q, const uint8_t *out,
                                        size_t len);

/* Parse the handler specs ("[TYPE[,TYPE...]=]SCRIPT"). NULL with err on a bad
 * type. With no specs, every call below is a cheap no-op. */
struct agent_events *agent_events_new(struct ev_loop *loop, const struct rumor_config_list *specs,
                                      agent_events_respond_cb respond, void *ud, char *err,
                                      size_t errlen);
/* Kills a running handler (SIGKILL) and drops what is queued. */
void agent_events_free(struct agent_events *e);

/* Our own name and tags, for SERF_SELF_* and SERF_TAG_* (copied). */
void agent_events_set_self(struct agent_events *e, const char *name, const struct tag *tags,
                           size_t n);

/* A member event (coalesced). meta is serf-encoded tags. */
void agent_events_member(struct agent_events *e, enum serf_event ev, const char *name,
                         const struct ml_addr *addr, const uint8_t *meta, size_t meta_len);
/* A user event; coalesce says whether it may be merged with later ones of
 * the same name. */
void agent_events_user(struct agent_events *e, uint64_t ltime, const char *name,
                       const uint8_t *payload, size_t len, bool coalesce);
/* A query: handlers matching it run; the output of the first non-empty one
 * is the response (deadline permitting). */
void agent_events_query(struct agent_events *e, const struct serf_query_in *q, int64_t now);

/* Invocations queued or running (tests). */
size_t agent_events_pending(const struct agent_events *e);
/* Handler runs that ended (tests and metrics). */
uint64_t agent_events_completed(const struct agent_events *e);

#endif
