/*
 * agent/api_server.h — the HTTP endpoints of the server tier:
 * /v1/status/leader, /v1/status/peers, /v1/operator/raft/configuration,
 * DELETE /v1/operator/raft/peer, and the X-Consul-KnownLeader /
 * X-Consul-LastContact headers as the tier knows them.
 */
#ifndef RUMOR_AGENT_API_SERVER_H
#define RUMOR_AGENT_API_SERVER_H

struct agent;
struct http_conn;
struct http_request;
struct json_t;

void api_status_leader(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest);
void api_status_peers(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest);
void api_raft_configuration(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest);
void api_raft_peer(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest);
/* X-Consul-KnownLeader and X-Consul-LastContact: true/0 without servers
 * (every agent answers for itself); with servers, what this agent knows. */
void api_server_headers(struct agent *a, struct http_conn *c);
/* Adds /v1/agent/self's Stats "consul" (every agent) and "raft" (servers)
 * objects to stats, string values as Consul's: what `rumor info` prints. */
void api_server_stats(struct agent *a, struct json_t *stats);

#endif
