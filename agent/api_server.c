/*
 * agent/api_server.c — see api_server.h. Without servers in the cluster the
 * status endpoints keep their serverless answers (every agent is its own
 * leader: its gossip address); with servers they answer Raft's view, as
 * Consul's do: server RPC addresses, "" when no leader is known.
 */
#include "agent/api_server.h"

#include <inttypes.h>
#include <jansson.h>
#include <raft.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/api_reply.h"
#include "agent/env.h"
#include "agent/http/http.h"
#include "agent/server.h"
#include "lib/xalloc.h"
#include "gossip/swim.h"
#include "gossip/transport.h"
#include "gossip/wire.h"

#define MAX_PEERS 64

void api_server_headers(struct agent *a, struct http_conn *c)
{
	if (!server_cp(a->server)) {
		http_add_header(c, "X-Consul-KnownLeader", "true");
		http_add_header(c, "X-Consul-LastContact", "0");
		return;
	}
	char leader[64], lc[32];
	int64_t last = server_last_contact(a->server);
	/* a client forwards to any server: it always knows a way to the leader */
	bool known = !server_is_server(a->server) ||
	             server_leader(a->server, leader, sizeof(leader))[0] != '\0';
	snprintf(lc, sizeof(lc), "%" PRId64, last < 0 ? 0 : last);
	http_add_header(c, "X-Consul-KnownLeader", known ? "true" : "false");
	http_add_header(c, "X-Consul-LastContact", lc);
}

/* A client's /v1/status/leader waits for a server's answer; the HTTP
 * client may go first (then only the answer is dropped). */
struct asked {
	struct http_conn *c;
	const struct http_request *req;
};

static void asked_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct asked *)ud)->c = NULL;
}

static void asked_cb(void *ud, const char *addr)
{
	struct asked *q = ud;
	if (q->c != NULL) {
		http_conn_on_close(q->c, NULL, NULL);
		api_reply_json(q->c, q->req, 200, json_string(addr));
	}
	free(q);
}

void api_status_leader(struct agent *a, struct http_conn *c, const struct http_request *req,
                       const char *rest)
{
	(void)rest;
	char addr[80];
	if (!server_cp(a->server)) {
		/* No servers: every agent answers for itself. */
		snprintf(addr, sizeof(addr), "%s:%u", a->cfg.advertise_addr,
		         gossip_transport_port(a->gossip));
	} else if (server_is_server(a->server)) {
		server_leader(a->server, addr, sizeof(addr));
	} else {
		struct asked *q = calloc(1, sizeof(*q));
		if (q == NULL)
			abort();
		q->c = c;
		q->req = req;
		http_conn_on_close(c, asked_closed, q);
		if (server_ask_leader(a->server, asked_cb, q) == 0)
			return;
		http_conn_on_close(c, NULL, NULL);
		free(q);
		addr[0] = '\0';
	}
	api_reply_json(c, req, 200, json_string(addr));
}

void api_status_peers(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	(void)rest;
	json_t *arr = json_array();
	if (!server_cp(a->server)) {
		struct swim *s = gossip_transport_swim(a->gossip);
		for (size_t i = 0; i < swim_member_count(s); i++) {
			const struct swim_member *m = swim_member_at(s, i);
			if (m->state != ML_STATE_ALIVE && m->state != ML_STATE_SUSPECT)
				continue;
			char buf[80];
			json_array_append_new(
			        arr, json_string(ml_addr_str(&m->id->addr, buf, sizeof(buf))));
		}
	} else {
		struct server_peer p[MAX_PEERS];
		size_t n = server_peers(a->server, p, MAX_PEERS);
		for (size_t i = 0; i < n; i++)
			if (p[i].voter)
				json_array_append_new(arr, json_string(p[i].addr));
	}
	api_reply_json(c, req, 200, arr);
}

void api_raft_configuration(struct agent *a, struct http_conn *c, const struct http_request *req,
                            const char *rest)
{
	(void)rest;
	if (!server_is_server(a->server) && !server_cp(a->server)) {
		api_reply_text(c, 500, "No cluster leader");
		return;
	}
	struct server_peer p[MAX_PEERS];
	size_t n = server_peers(a->server, p, MAX_PEERS);
	json_t *servers = json_array();
	for (size_t i = 0; i < n; i++) {
		char id[24];
		snprintf(id, sizeof(id), "%016" PRIx64, p[i].id);
		json_array_append_new(servers, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "ID", id,
		                                         "Node", p[i].name, "Address", p[i].addr,
		                                         "Leader", p[i].leader, "Voter", p[i].voter,
		                                         "ProtocolVersion", "3"));
	}
	struct server_info in;
	server_get_info(a->server, &in);
	api_reply_json(
	        c, req, 200,
	        json_pack("{s:o, s:I}", "Servers", servers, "Index", (json_int_t)in.last_index));
}

struct peer_req {
	struct http_conn *c;
};

static void peer_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct peer_req *)ud)->c = NULL;
}

static void peer_removed(void *ud, int rc, const char *err)
{
	struct peer_req *q = ud;
	if (q->c != NULL) {
		http_conn_on_close(q->c, NULL, NULL);
		if (rc == 0)
			http_respond(q->c, 200, "application/json", "", 0);
		else
			api_reply_text(q->c, 500, err);
	}
	free(q);
}

/* Any agent: the leader removes the server (servers and clients forward). */
void api_raft_peer(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest)
{
	(void)rest;
	const char *id = http_query_get(req, "id");
	if (id == NULL || *id == '\0')
		id = http_query_get(req, "address");
	if (id == NULL || *id == '\0') {
		api_reply_text(c, 400,
		               "Must specify either ?id with the server's ID or ?address "
		               "with IP:port of peer to remove");
		return;
	}
	struct peer_req *q = xcalloc(1, sizeof(*q));
	q->c = c;
	http_conn_on_close(c, peer_closed, q);
	char err[200];
	if (server_remove_peer(a->server, id, peer_removed, q, err, sizeof(err)) < 0) {
		http_conn_on_close(c, NULL, NULL);
		free(q);
		api_reply_text(c, 500, err);
	}
}

/* ---------------------------------------------------- /v1/agent/self */

static void set_str(json_t *o, const char *k, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_str(json_t *o, const char *k, const char *fmt, ...)
{
	char v[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	json_object_set_new(o, k, json_string(v));
}

/* As hashicorp/raft's Stats: "0" on the leader, "never" when no leader was
 * heard from, else the time since as Go prints a duration ("12ms", "1.5s",
 * "2m3s"). */
static void last_contact_text(int64_t ms, bool leader, char *out, size_t cap)
{
	if (leader)
		snprintf(out, cap, "0");
	else if (ms < 0)
		snprintf(out, cap, "never");
	else if (ms < 1000)
		snprintf(out, cap, "%" PRId64 "ms", ms);
	else if (ms < 60000)
		snprintf(out, cap, "%gs", (double)ms / 1000.0);
	else
		snprintf(out, cap, "%" PRId64 "m%gs", ms / 60000, (double)(ms % 60000) / 1000.0);
}

static const char *raft_state_name(int state)
{
	switch (state) {
	case RAFT_LEADER:
		return "Leader";
	case RAFT_CANDIDATE:
		return "Candidate";
	default:
		return "Follower"; /* also before bootstrap, as Consul's idle Raft */
	}
}

void api_server_stats(struct agent *a, json_t *stats)
{
	struct server_info in;
	struct server_peer p[MAX_PEERS];
	char leader[80], lc[32];
	size_t n = server_peers(a->server, p, MAX_PEERS), peers = 0;
	json_t *consul = json_object();

	server_get_info(a->server, &in);
	set_str(consul, "server", "%s", in.server ? "true" : "false");
	json_object_set_new(stats, "consul", consul);
	if (!in.server) {
		set_str(consul, "known_servers", "%zu", n);
		return;
	}
	server_leader(a->server, leader, sizeof(leader));
	set_str(consul, "bootstrap", "%s", a->cfg.bootstrap ? "true" : "false");
	set_str(consul, "known_datacenters", "1");
	set_str(consul, "leader", "%s", in.state == RAFT_LEADER ? "true" : "false");
	set_str(consul, "leader_addr", "%s", leader);
	for (size_t i = 0; i < n; i++)
		if (p[i].voter && strcmp(p[i].name, a->cfg.node_name) != 0)
			peers++;
	last_contact_text(server_last_contact(a->server), in.state == RAFT_LEADER, lc, sizeof(lc));
	json_t *raft = json_object();
	set_str(raft, "state", "%s", raft_state_name(in.state));
	set_str(raft, "term", "%" PRIu64, in.term);
	set_str(raft, "last_log_index", "%" PRIu64, in.last_index);
	set_str(raft, "commit_index", "%" PRIu64, in.commit_index);
	set_str(raft, "applied_index", "%" PRIu64, in.applied_index);
	set_str(raft, "last_snapshot_index", "%" PRIu64, in.last_snapshot_index);
	set_str(raft, "last_snapshot_term", "%" PRIu64, in.last_snapshot_term);
	set_str(raft, "num_peers", "%zu", peers);
	set_str(raft, "last_contact", "%s", lc);
	set_str(raft, "protocol_version", "3");
	json_object_set_new(stats, "raft", raft);
}
