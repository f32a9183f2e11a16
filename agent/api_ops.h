/*
 * agent/api_ops.h — operating the agent: GET /v1/agent/metrics and
 * GET /v1/agent/monitor, and the agent-side metric collection.
 *
 * Owns (struct api_ops, hung on struct agent): the metrics collector that
 * copies the SWIM core's and the transport's totals into agent/metrics.h
 * before each rendering; the loop-latency watchers (an ev_check at maximum
 * priority and an ev_prepare measure how long each loop iteration spends in
 * callbacks; a 1 s ev_timer measures how late it fires); the HTTP response
 * hook that counts responses by status; the open monitor streams; and
 * systemd readiness (READY=1 / STOPPING=1 to $NOTIFY_SOCKET, if set).
 *
 * Endpoints (rows in agent/api.c):
 *   GET /v1/agent/metrics[?format=prometheus][&pretty]
 *       Consul's JSON shape, or Prometheus text 0.0.4.
 *   GET /v1/agent/monitor[?loglevel=debug][&logjson]
 *       Streams the agent's log lines as they are written (chunked HTTP/1.1
 *       response, or close-delimited for HTTP/1.0) until the client goes
 *       away. Lines at `loglevel` and above are sent even when the agent's
 *       own -log-level is higher. A client that reads too slowly loses lines
 *       (more than HTTP_STREAM_MAX_PENDING bytes unsent); it is then told
 *       "[WARN]  monitor: dropped N log lines" once it catches up.
 *
 * Error convention: api_ops_start returns 0 or -1 with a message in err;
 * handlers answer 4xx with a message that names the bad parameter.
 */
#ifndef RUMOR_AGENT_API_OPS_H
#define RUMOR_AGENT_API_OPS_H

#include <stddef.h>

struct agent;
struct http_conn;
struct http_request;

/* After the gossip transport and the HTTP server exist (a->http may be
 * NULL): registers the collector, starts the loop watchers, hooks the
 * response counter. */
int api_ops_start(struct agent *a, char *err, size_t errlen);
/* Ends every monitor stream and undoes api_ops_start; before api_stop. */
void api_ops_stop(struct agent *a);

void api_ops_metrics(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest);
void api_ops_monitor(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest);

#endif
