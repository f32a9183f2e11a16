/*
 * agent/api.c — see api.h.
 */
#include "agent/api.h"
#include "agent/api_reply.h"
#include "agent/api_ops.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/acl.h"
#include "agent/env.h"
#include "agent/api_catalog.h"
#include "agent/api_coord.h"
#include "agent/api_catalog_ext.h"
#include "agent/api_missing.h"
#include "agent/api_kv.h"
#include "agent/api_server.h"
#include "agent/api_session.h"
#include "agent/sessions.h"
#include "agent/api_snapshot.h"
#include "agent/api_ui.h"
#include "agent/server.h"
#include "agent/api_event.h"
#include "agent/http/http.h"
#include "lib/log.h"
#include "gossip/serf.h"
#include "gossip/tags.h"
#include "lib/jsonw.h"
#include "gossip/transport.h"

#define M_GET API_M_GET
#define M_PUT API_M_PUT
#define M_POST API_M_POST
#define M_DELETE API_M_DELETE
#define M_HEAD 16

static int method_bit(const char *m)
{
	if (strcmp(m, "GET") == 0)
		return M_GET;
	if (strcmp(m, "PUT") == 0)
		return M_PUT;
	if (strcmp(m, "POST") == 0)
		return M_POST;
	if (strcmp(m, "DELETE") == 0)
		return M_DELETE;
	if (strcmp(m, "HEAD") == 0)
		return M_HEAD;
	return 0;
}

/* ------------------------------------------------------------- members */

/*
 * One member as Consul's /v1/agent/members lists it, written straight into
 * w: a cluster of 1,000 answered in one buffer instead of a jansson tree of
 * ~20,000 nodes (7 ms of CPU each request, which a loaded agent took
 * seconds to find; lib/jsonw.h).
 */
static void member_write(const struct agent *a, const struct swim_member *m, struct jsonw *w)
{
	char ip[64];
	struct ml_addr noport = m->id->addr;
	noport.port = 0;
	ml_addr_str(&noport, ip, sizeof(ip));
	/* ml_addr_str prints host:port; cut the port (and brackets) */
	char *colon = strrchr(ip, ':');
	if (colon != NULL)
		*colon = '\0';
	if (ip[0] == '[') {
		size_t l = strlen(ip);
		memmove(ip, ip + 1, l);
		char *rb = strchr(ip, ']');
		if (rb)
			*rb = '\0';
	}
	jsonw_lit(w, "{\"Name\":");
	jsonw_str(w, m->id->name, strlen(m->id->name));
	jsonw_lit(w, ",\"Addr\":");
	jsonw_str(w, ip, strlen(ip));
	jsonw_lit(w, ",\"Port\":");
	jsonw_int(w, m->id->addr.port);
	jsonw_lit(w, ",\"Tags\":{");
	struct tag t[TAGS_MAX];
	int nt = m->id->meta_len > 0 ? tags_decode(m->id->meta, m->id->meta_len, t, TAGS_MAX) : 0;
	for (int i = 0; i < nt; i++) {
		/* a key given twice: the last value, as a JSON object keeps it */
		bool later = false;
		for (int j = i + 1; j < nt && !later; j++)
			later = strcmp(t[i].key, t[j].key) == 0;
		if (later)
			continue;
		if (w->buf[w->len - 1] != '{')
			jsonw_raw(w, ",", 1);
		jsonw_str(w, t[i].key, strlen(t[i].key));
		jsonw_raw(w, ":", 1);
		jsonw_str(w, t[i].value, strlen(t[i].value));
	}
	static const char *const vsn[] = {"ProtocolMin", "ProtocolMax", "ProtocolCur",
	                                  "DelegateMin", "DelegateMax", "DelegateCur"};
	jsonw_lit(w, "},\"Status\":");
	jsonw_int(w, agent_member_status(a, m));
	for (int i = 0; i < 6; i++) {
		jsonw_lit(w, ",\"");
		jsonw_lit(w, vsn[i]);
		jsonw_lit(w, "\":");
		jsonw_int(w, m->id->vsn[i]);
	}
	jsonw_raw(w, "}", 1);
}

/* One member as a jansson value (/v1/agent/self's "Member"). */
static json_t *member_json(const struct agent *a, const struct swim_member *m)
{
	struct jsonw w;
	jsonw_init(&w, 512);
	member_write(a, m, &w);
	json_t *j = json_loadb(w.buf, w.len, 0, NULL);
	free(w.buf);
	return j != NULL ? j : json_object();
}

static int cmp_member(const void *x, const void *y)
{
	const struct swim_member *const *a = x, *const *b = y;
	return strcmp((*a)->id->name, (*b)->id->name);
}

static void h_members(struct agent *a, struct http_conn *c, const struct http_request *req,
                      const char *rest)
{
	if (http_query_get(req, "wan") != NULL) {
		api_reply_json(c, req, 200, json_array());
		return;
	}
	struct swim *s = gossip_transport_swim(a->gossip);
	size_t n = swim_member_count(s);
	const struct swim_member **v = malloc((n ? n : 1) * sizeof(*v));
	if (v == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = swim_member_at(s, i);
	qsort(v, n, sizeof(*v), cmp_member);
	struct jsonw w;
	jsonw_init(&w, 64 + n * 320);
	jsonw_raw(&w, "[", 1);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			jsonw_raw(&w, ",", 1);
		member_write(a, v[i], &w);
	}
	jsonw_raw(&w, "]", 1);
	free(v);
	api_reply_json_text(c, req, 200, w.buf, w.len);
	free(w.buf);
}

static void h_self(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest)
{
	struct swim *s = gossip_transport_swim(a->gossip);
	json_t *meta = json_object();
	for (size_t i = 0; i < a->cfg.node_meta_n; i++)
		json_object_set_new(meta, a->cfg.node_meta[i].key,
		                    json_string(a->cfg.node_meta[i].value));
	/* SessionTTLMin in nanoseconds, as Consul 0.x reported it: Patroni reads
	 * it when a session TTL is refused (docs/PATRONI.md). */
	json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:I}", "Datacenter",
	                        a->cfg.datacenter, "NodeName", a->cfg.node_name, "NodeID",
	                        a->node_id, "Server", server_is_server(a->server), "Revision",
	                        "rumor", "Version", RUMOR_VERSION, "Domain", a->cfg.domain,
	                        "SessionTTLMin", (json_int_t)(SESSION_TTL_MIN_MS * 1000000));
	json_t *debug = json_pack(
	        "{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:b, s:s}", "BindAddr", a->cfg.bind_addr,
	        "AdvertiseAddrLAN", a->cfg.advertise_addr, "ClientAddr", a->cfg.client_addr,
	        "SerfPortLAN", gossip_transport_port(a->gossip), "HTTPPort", a->cfg.http_port,
	        "DNSPort", a->cfg.dns_port, "DataDir", a->cfg.data_dir, "GossipProfile",
	        rumor_config_profile_name(a->cfg.profile), "DevMode", a->cfg.dev, "LogLevel",
	        rumor_config_log_level_name(a->cfg.log_level));
	const struct swim_stats *st = swim_stats(s);
	json_t *stats = json_pack(
	        "{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}}", "serf_lan", "members",
	        (json_int_t)swim_member_count(s), "alive", (json_int_t)swim_num_alive(s) + 1,
	        "packets_sent", (json_int_t)st->packets_sent, "packets_recv",
	        (json_int_t)st->packets_recv, "probes", (json_int_t)st->probes, "probe_failures",
	        (json_int_t)st->probe_failures, "suspicions", (json_int_t)st->suspicions,
	        "refutations", (json_int_t)st->refutations, "health_score", swim_health_score(s),
	        "bad_packets", (json_int_t)st->bad_packets);
	api_server_stats(a, stats);
	json_t *self = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "Config", cfg, "DebugConfig",
	                         debug, "Coord", api_coord_json(swim_coord_self(s)), "Member",
	                         member_json(a, swim_self(s)), "Meta", meta, "Stats", stats);
	api_reply_json(c, req, 200, self);
}

/* --------------------------------------------------------------- join */

struct join_req {
	struct http_conn *conn; /* NULL once the client went away */
	char addr[256];
};

static void join_conn_closed(struct http_conn *c, void *ud)
{
	struct join_req *jr = ud;
	jr->conn = NULL;
}

static void join_done(void *ud, bool ok, const char *error)
{
	struct join_req *jr = ud;
	if (ok)
		log_info("agent: (LAN) joined: number of nodes joined: 1 (%s)", jr->addr);
	else
		log_warn("agent: (LAN) join %s failed: %s", jr->addr, error);
	if (jr->conn != NULL) {
		if (ok) {
			http_respond(jr->conn, 200, NULL, "", 0);
		} else {
			char msg[600];
			snprintf(msg, sizeof(msg), "Failed to join %s: %s", jr->addr,
			         error ? error : "unknown error");
			api_reply_text(jr->conn, 500, msg);
		}
	}
	free(jr);
}

static void h_join(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest)
{
	if (rest[0] == '\0') {
		api_reply_text(c, 400, "Missing address to join");
		return;
	}
	if (http_query_get(req, "wan") != NULL) {
		api_reply_text(c, 400,
		               "WAN join is not supported: rumor has one gossip pool (LAN)");
		return;
	}
	if (a->leaving) {
		api_reply_text(c, 503, "Agent is leaving");
		return;
	}
	struct join_req *jr = calloc(1, sizeof(*jr));
	if (jr == NULL)
		abort();
	jr->conn = c;
	snprintf(jr->addr, sizeof(jr->addr), "%s", rest);
	http_conn_on_close(c, join_conn_closed, jr);
	char err[300];
	if (gossip_transport_join(a->gossip, rest, (uint16_t)a->cfg.serf_lan_port, join_done, jr,
	                          err, sizeof(err)) < 0) {
		jr->conn = NULL;
		http_conn_on_close(c, NULL, NULL);
		char msg[600];
		snprintf(msg, sizeof(msg), "Failed to join %s: %s", rest, err);
		api_reply_text(c, 400, msg);
		free(jr);
	}
}

static void h_leave(struct agent *a, struct http_conn *c, const struct http_request *req,
                    const char *rest)
{
	http_respond(c, 200, NULL, "", 0);
	agent_leave(a);
}

static void h_force_leave(struct agent *a, struct http_conn *c, const struct http_request *req,
                          const char *rest)
{
	if (rest[0] == '\0') {
		api_reply_text(c, 400, "Missing node name");
		return;
	}
	struct swim *s = gossip_transport_swim(a->gossip);
	bool prune = http_query_get(req, "prune") != NULL;
	const struct swim_member *m = swim_member_find(s, rest);
	if (m == NULL) {
		char msg[400];
		snprintf(msg, sizeof(msg), "agent: No node found with name '%s'", rest);
		api_reply_text(c, 500, msg);
		return;
	}
	log_info("agent: Force leaving node: %s", rest);
	/* Serf's leave intent tells the cluster: failed -> left everywhere, a
	 * live node is shown leaving until it refutes (Consul answers 200 too). */
	if (a->serf != NULL)
		serf_force_leave(a->serf, rest, prune);
	if (m != swim_self(s))
		swim_force_leave(s, gossip_now_ms(), rest, prune);
	gossip_transport_kick(a->gossip);
	http_respond(c, 200, NULL, "", 0);
}

/* ------------------------------------------------------------- status */

/* -------------------------------------------------------------- routes */

/*
 * Every endpoint. Modules add their rows here; handlers stay in their own
 * files (declared in their headers).
 */
static const struct api_route routes[] = {
        {"/v1/agent/self", 0, M_GET, h_self},
        {"/v1/agent/members", 0, M_GET, h_members},
        {"/v1/agent/join/", 1, M_PUT | M_GET | M_POST, h_join},
        {"/v1/agent/leave", 0, M_PUT | M_POST, h_leave},
        {"/v1/agent/force-leave/", 1, M_PUT | M_GET | M_POST, h_force_leave},
        /* the server tier: agent/api_server.c */
        {"/v1/status/leader", 0, M_GET, api_status_leader},
        {"/v1/status/peers", 0, M_GET, api_status_peers},
        {"/v1/operator/raft/configuration", 0, M_GET, api_raft_configuration},
        {"/v1/operator/raft/peer", 0, M_DELETE, api_raft_peer},
        /* operating: agent/api_ops.c */
        {"/v1/agent/metrics", 0, M_GET, api_ops_metrics},
        {"/v1/agent/monitor", 0, M_GET, api_ops_monitor},
        /* key-value store: agent/api_kv.c */
        {"/v1/kv/", 1, M_GET | M_PUT | M_DELETE, api_kv_handle},
        {"/v1/txn", 0, M_PUT | M_POST, api_kv_txn},
        /* snapshots (servers only): agent/api_snapshot.c */
        {"/v1/snapshot", 0, M_GET | M_PUT, api_snapshot_handle},
        /* sessions (servers only): agent/api_session.c */
        {"/v1/session/", 1, M_GET | M_PUT | M_POST, api_session_handle},
        /* serf layer: agent/api_event.c */
        {"/v1/event/fire/", 1, M_PUT | M_POST, api_event_fire},
        {"/v1/event/list", 0, M_GET, api_event_list},
        {"/v1/event/query/", 1, M_PUT | M_POST, api_event_query},
        {"/v1/agent/tags", 0, M_PUT | M_POST, api_event_tags},
        {"/v1/operator/keyring", 0, M_GET | M_PUT | M_POST | M_DELETE, api_event_keyring},
        /* services, checks, catalog, health: agent/api_catalog.c (python-consul
	 * 0.7.1 sends GET for deregister and TTL updates) */
        {"/v1/agent/service/register", 0, M_PUT | M_POST, api_h_service_register},
        {"/v1/agent/service/deregister/", 1, M_PUT | M_GET | M_POST, api_h_service_deregister},
        {"/v1/agent/services", 0, M_GET, api_h_agent_services},
        {"/v1/agent/checks", 0, M_GET, api_h_agent_checks},
        {"/v1/agent/check/register", 0, M_PUT | M_POST, api_h_check_register},
        {"/v1/agent/check/deregister/", 1, M_PUT | M_GET | M_POST, api_h_check_deregister},
        {"/v1/agent/check/pass/", 1, M_PUT | M_GET | M_POST, api_h_check_pass},
        {"/v1/agent/check/warn/", 1, M_PUT | M_GET | M_POST, api_h_check_warn},
        {"/v1/agent/check/fail/", 1, M_PUT | M_GET | M_POST, api_h_check_fail},
        {"/v1/agent/check/update/", 1, M_PUT | M_POST, api_h_check_update},
        {"/v1/catalog/services", 0, M_GET, api_h_catalog_services},
        {"/v1/catalog/service/", 1, M_GET, api_h_catalog_service},
        {"/v1/catalog/nodes", 0, M_GET, api_h_catalog_nodes},
        {"/v1/catalog/node/", 1, M_GET, api_h_catalog_node},
        {"/v1/health/service/", 1, M_GET, api_h_health_service},
        {"/v1/health/node/", 1, M_GET, api_h_health_node},
        {"/v1/health/checks/", 1, M_GET, api_h_health_checks},
        {"/v1/health/state/", 1, M_GET, api_h_health_state},
        /* catalog writes and maintenance: agent/api_catalog_ext.c */
        {"/v1/catalog/register", 0, M_PUT, api_h_catalog_register},
        {"/v1/catalog/deregister", 0, M_PUT, api_h_catalog_deregister},
        {"/v1/catalog/datacenters", 0, M_GET, api_h_catalog_datacenters},
        {"/v1/agent/maintenance", 0, M_PUT, api_h_agent_maintenance},
        {"/v1/agent/service/maintenance/", 1, M_PUT, api_h_service_maintenance},
        /* network coordinates: agent/api_coord.c */
        {"/v1/coordinate/datacenters", 0, M_GET, api_h_coord_datacenters},
        {"/v1/coordinate/nodes", 0, M_GET, api_h_coord_nodes},
        {"/v1/coordinate/node/", 1, M_GET, api_h_coord_node},
};

static void dispatch(struct http_conn *c, const struct http_request *req, void *ud)
{
	struct agent *a = ud;
	int mb = method_bit(req->method);
	if (mb == M_HEAD)
		mb = M_GET;
	/* never log a ?token= */
	log_debug("http: Request %s %s%s (from %s)", req->method,
	          http_query_get(req, "token") != NULL ? req->path : req->url,
	          http_query_get(req, "token") != NULL ? "?(query hidden: has a token)" : "",
	          req->remote);
	if (api_ui_handle(a, c, req)) /* static files, before the ACL: see api_ui.h */
		return;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct api_route *r = &routes[i];
		size_t plen = strlen(r->path);
		const char *rest;
		if (r->prefix) {
			if (strncmp(req->path, r->path, plen) != 0)
				continue;
			rest = req->path + plen;
		} else {
			if (strcmp(req->path, r->path) != 0)
				continue;
			rest = "";
		}
		if ((r->methods & mb) == 0) {
			char msg[128];
			snprintf(msg, sizeof(msg), "method %s not allowed", req->method);
			api_reply_text(c, 405, msg);
			return;
		}
		if (!acl_allow(acl_classify(req->method, req->path), a->cfg.acl_token,
		               a->cfg.acl_read_token, acl_addr_is_loopback(a->cfg.client_addr),
		               req->remote, acl_request_token(req))) {
			log_warn("http: Request %s %s (from %s): Permission denied", req->method,
			         req->path, req->remote);
			api_reply_text(c, 403, "Permission denied");
			return;
		}
		r->fn(a, c, req, rest);
		return;
	}
	api_missing_reply(a, c, req); /* 501 for Consul's paths rumor lacks, else 404 */
}

/* Rate-limited by the server (one call per HTTP_REFUSE_REPORT_S at most). */
static void on_refuse(void *ud, enum http_refuse_reason why, const char *remote, unsigned held,
                      uint64_t refused)
{
	if (why == HTTP_REFUSED_PER_CLIENT)
		log_warn("http: refused connection from %s: its address holds %u connections "
		         "(limits.http_max_conns_per_client); %llu refused since the last report",
		         remote, held, (unsigned long long)refused);
	else
		log_warn("http: refused connection from %s: %u connections open, the most the "
		         "agent takes; %llu refused since the last report",
		         remote, held, (unsigned long long)refused);
}

struct http_server *api_start(struct agent *a, char *err, size_t errlen)
{
	struct http_limits lim = {0};
	lim.max_conns_per_client = a->cfg.http_max_conns_per_client > 0
	                                   ? (unsigned)a->cfg.http_max_conns_per_client
	                                   : HTTP_UNLIMITED;
	/* a snapshot restore is the one large body (agent/api_snapshot.h) */
	lim.upload_path = "/v1/snapshot";
	lim.upload_max_bytes = API_SNAPSHOT_MAX_BYTES;
	struct http_server *s = http_server_new(a->loop, &lim, dispatch, a, err, errlen);
	if (s == NULL)
		return NULL;
	http_server_on_refuse(s, on_refuse, a);
	uint16_t bound = 0;
	if (http_server_listen(s, a->cfg.client_addr, (uint16_t)a->cfg.http_port, &bound, err,
	                       errlen) < 0) {
		http_server_free(s);
		return NULL;
	}
	bool open = a->cfg.acl_token == NULL || a->cfg.acl_token[0] == '\0';
	if (open && !acl_addr_is_loopback(a->cfg.client_addr)) {
		log_warn("==> WARNING: the HTTP API listens on %s, which is not loopback, and no "
		         "-acl-token is set: writes, join, leave and keyring from other hosts are "
		         "refused and reads are open to anyone who can reach port %d. Set "
		         "-acl-token (and -acl-read-token) to open the API to other hosts safely.",
		         a->cfg.client_addr, (int)bound);
	}
	if (a->cfg.acl_read_token != NULL && open)
		log_warn("==> WARNING: -acl-read-token is set but -acl-token is not: reads need "
		         "a token while writes are governed by the listener address alone.");
	return s;
}

void api_stop(struct agent *a)
{
	http_server_free(a->http);
	a->http = NULL;
}
