/*
 * agent/agent.c — see agent.h.
 *
 * Start-up order: config -> logging -> node ID -> gossip (UDP+TCP bound,
 * SWIM core created) -> HTTP -> pid file -> -join (all at once; the agent
 * exits if none succeeds, as Consul's start_join does, except that a node
 * that is there but busy is tried again for a while: see join_busy) -> -retry-join timer
 * -> loop. Shutdown: a signal or PUT /v1/agent/leave starts agent_leave();
 * the loop keeps running until the leave broadcast has been sent as often as
 * the queue sends it, or BROADCAST_TIMEOUT passes, then everything is freed.
 */
#define _GNU_SOURCE
#include "agent/agent.h"
#include "agent/env.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/acl.h"
#include "agent/agent_dns.h"
#include "agent/api.h"
#include "agent/api_ops.h"
#include "agent/api_catalog.h"
#include "agent/api_event.h"
#include "agent/events.h"
#include "agent/http/http.h"
#include "lib/log.h"
#include "agent/memtrim.h"
#include "gossip/keyring.h"
#include "gossip/serf.h"
#include "agent/server.h"
#include "gossip/tags.h"
#include "gossip/transport.h"
#include "kv/kv.h"
#include "kv/repl.h"
#include "kv/store.h"

#define BROADCAST_TIMEOUT_MS 5000 /* serf's BroadcastTimeout */
#define LEAVE_POLL_S 0.05
#define SNAPSHOT_DELAY_S 0.5   /* serf's snapshotter flushes every 500 ms */
#define SNAPSHOT_MEMBER_S 0.03 /* per member, for member changes alone */
#define SNAPSHOT_MEMBER_MAX_S 30.0
#define TRIM_FIRST_S 10.0     /* start-up over: joined, first HTTP served */
#define TRIM_INTERVAL_S 60.0  /* then once a minute (rare code paths, heap) */
#define TIMER_COLLECT_S 0.015 /* see ev_set_timeout_collect_interval below */

struct agent_priv {
	ev_signal sigint, sigterm, sighup;
	ev_timer retry_timer;
	ev_timer leave_timer;
	ev_timer trim_timer;
	ev_timer snap_timer; /* a pending snapshot write (see snapshot_mark) */
	int64_t leave_started;
	int start_joins_pending;
	int start_joins_ok;
	bool retry_in_flight;
	struct start_join *join_waits; /* -joins backing off (see join_busy) */
	uint64_t last_bcast_id;        /* swim queue id of the last serf broadcast */
	uint64_t leave_intent_id;      /* our leave intent, waited for before swim_leave */
	bool swim_leaving;             /* swim_leave() called */
	struct agent_dns *dns;         /* NULL: DNS off (agent/agent_dns.c) */
	bool pid_written;              /* -pid-file written: removed at exit */
	bool running;                  /* start_running() done: agent_stop() stops its watchers */
	int lock_fd;                   /* <data dir>/agent.lock, flock'd for our lifetime */
};

static struct agent_priv *priv(struct agent *a)
{
	return a->priv;
}

/* ------------------------------------------------------------- tags */

/* The tags a member advertises: Consul's reserved ones, then node meta. */
static size_t build_tags(const struct agent *a, struct tag *tags)
{
	char rpc_port[16];
	snprintf(rpc_port, sizeof(rpc_port), "%d", a->kv != NULL ? kv_sync_port(a->kv) : -1);
	size_t n = tags_consul(tags, a->cfg.datacenter, RUMOR_VERSION ":rumor", a->node_id,
	                       a->kv != NULL ? rpc_port : NULL);
	n = server_tags(a->server, tags, n);
	for (size_t i = 0; i < a->cfg.node_meta_n && n < TAGS_MAX; i++) {
		snprintf(tags[n].key, sizeof(tags[n].key), "%s", a->cfg.node_meta[i].key);
		snprintf(tags[n].value, sizeof(tags[n].value), "%s", a->cfg.node_meta[i].value);
		n++;
	}
	return n;
}

static int build_meta(const struct agent *a, uint8_t *buf, size_t cap)
{
	static struct tag tags[TAGS_MAX];
	size_t n = build_tags(a, tags);
	return tags_encode(buf, cap, tags, n);
}

/* Tell the serf layer (query tag filters) and the handlers our tags. */
static void refresh_self_tags(struct agent *a)
{
	static struct tag tags[TAGS_MAX];
	size_t n = build_tags(a, tags);
	if (a->serf != NULL)
		serf_set_tags(a->serf, tags, n);
	if (a->events != NULL)
		agent_events_set_self(a->events, a->cfg.node_name, tags, n);
}

static int set_tags(struct agent *a, const char *const *keys, const char *const *values, size_t n,
                    char *err, size_t errlen)
{
	struct rumor_config_meta *nm = calloc(n ? n : 1, sizeof(*nm));
	if (nm == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		nm[i].key = strdup(keys[i]);
		nm[i].value = strdup(values[i]);
		if (nm[i].key == NULL || nm[i].value == NULL)
			abort();
	}
	struct rumor_config_meta *old = a->cfg.node_meta;
	size_t oldn = a->cfg.node_meta_n;
	a->cfg.node_meta = nm;
	a->cfg.node_meta_n = n;
	uint8_t meta[ML_META_MAX];
	int mlen = build_meta(a, meta, sizeof(meta));
	struct rumor_config_meta *drop = nm;
	size_t dropn = n;
	if (mlen < 0) {
		a->cfg.node_meta = old;
		a->cfg.node_meta_n = oldn;
		snprintf(err, errlen, "tags do not fit in %d bytes of node meta", ML_META_MAX);
	} else {
		drop = old;
		dropn = oldn;
	}
	for (size_t i = 0; i < dropn; i++) {
		free(drop[i].key);
		free(drop[i].value);
	}
	free(drop);
	if (mlen < 0)
		return -1;
	struct swim *s = gossip_transport_swim(a->gossip);
	swim_set_meta(s, gossip_now_ms(), meta, (size_t)mlen);
	gossip_transport_kick(a->gossip);
	refresh_self_tags(a);
	return 0;
}

/* The server tier changed what its tags say (role, raft state). */
static void retag(struct agent *a)
{
	if (a->gossip == NULL) {
		refresh_self_tags(a);
		return;
	}
	uint8_t meta[ML_META_MAX];
	int mlen = build_meta(a, meta, sizeof(meta));
	if (mlen < 0) {
		log_warn("agent: tags do not fit in %d bytes of node meta", ML_META_MAX);
		return;
	}
	swim_set_meta(gossip_transport_swim(a->gossip), gossip_now_ms(), meta, (size_t)mlen);
	gossip_transport_kick(a->gossip);
	refresh_self_tags(a);
}

static const char *keyring_path(const struct agent *a, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/serf/local.keyring", a->cfg.data_dir);
	return buf;
}

/* ------------------------------------------------------- data dir */

/*
 * One agent per data directory: <data dir>/agent.lock is flock'd (exclusive,
 * not waited for) for the agent's lifetime and holds its pid. Two agents on
 * one directory would share the node ID, the Serf snapshot and the KV store,
 * whose LMDB writer lock the first holds between checkpoints (up to a
 * minute): the second is refused at once with the first one's pid. The lock
 * goes with the process, however it ends, so a stale file locks nothing.
 */
static int lock_data_dir(struct agent *a, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/agent.lock", a->cfg.data_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %.900s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' '))
			n--;
		pid[n > 0 ? n : 0] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			snprintf(err, errlen,
			         "data directory %.900s is in use by another agent (pid %s): each "
			         "agent needs its own -data-dir",
			         a->cfg.data_dir, pid[0] ? pid : "unknown");
		else
			snprintf(err, errlen, "cannot lock %.900s: %s", path, strerror(e));
		return -1;
	}
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		log_warn("agent: cannot write the pid to %s: %s", path, strerror(errno));
	priv(a)->lock_fd = fd;
	return 0;
}

/* ---------------------------------------------------------- node id */

static int load_node_id(struct agent *a, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/node-id", a->cfg.data_dir);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		char buf[64] = {0};
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
			buf[--n] = '\0';
		if (n == 36) {
			memcpy(a->node_id, buf, 37);
			return 0;
		}
		log_warn("agent: ignoring malformed node ID in %s", path);
	}
	uint8_t r[16];
	randombytes_buf(r, sizeof(r));
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	snprintf(a->node_id, sizeof(a->node_id),
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
	         r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
	         r[15]);
	f = fopen(path, "w");
	if (f == NULL) {
		snprintf(err, errlen, "cannot write %.900s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "%s\n", a->node_id);
	fclose(f);
	return 0;
}

/* ------------------------------------------------------- membership */

static int member_status(const struct agent *a, const void *mp)
{
	const struct swim_member *m = mp;
	struct swim *s = gossip_transport_swim(a->gossip);
	if (m == swim_self(s) && a->leaving && !a->left)
		return 2; /* leaving */
	enum serf_status st =
	        a->serf != NULL ? serf_member_status(a->serf, m->id->name) : SERF_STATUS_NONE;
	if (st == SERF_STATUS_LEAVING && m->state == ML_STATE_DEAD)
		return 3; /* left (its leave intent came first) */
	if (st == SERF_STATUS_LEAVING &&
	    (m->state == ML_STATE_ALIVE || m->state == ML_STATE_SUSPECT))
		return 2;
	if (st == SERF_STATUS_LEFT && m->state == ML_STATE_DEAD)
		return 3;
	switch (m->state) {
	case ML_STATE_ALIVE:
	case ML_STATE_SUSPECT:
		return 1;
	case ML_STATE_LEFT:
		return 3;
	case ML_STATE_DEAD:
		return 4;
	}
	return 0;
}

/* ------------------------------------------------------------ snapshot */

/*
 * serf -snapshot, simplified: <data-dir>/serf/snapshot holds the lamport
 * clocks, whether we left, and the members alive when it was written
 * (rewritten on every membership change and user event). At start the
 * clocks are witnessed (so old user events are not replayed to handlers)
 * and, unless we left (and -rejoin-after-leave is off), every member in it
 * is joined again.
 */
static void snapshot_write(struct agent *a)
{
	if (a->serf == NULL || a->gossip == NULL || a->cfg.data_dir == NULL)
		return;
	struct swim *s = gossip_transport_swim(a->gossip);
	json_t *o = json_object(), *arr = json_array();
	json_object_set_new(o, "clock", json_integer((json_int_t)serf_clock(a->serf)));
	json_object_set_new(o, "event_clock", json_integer((json_int_t)serf_event_clock(a->serf)));
	json_object_set_new(o, "query_clock", json_integer((json_int_t)serf_query_clock(a->serf)));
	json_object_set_new(o, "left", json_boolean(a->leaving));
	for (size_t i = 0; i < swim_member_count(s); i++) {
		const struct swim_member *m = swim_member_at(s, i);
		if (m == swim_self(s) ||
		    (m->state != ML_STATE_ALIVE && m->state != ML_STATE_SUSPECT))
			continue;
		char addr[64];
		json_t *e = json_object();
		json_object_set_new(e, "name", json_string(m->id->name));
		json_object_set_new(e, "addr",
		                    json_string(ml_addr_str(&m->id->addr, addr, sizeof(addr))));
		json_array_append_new(arr, e);
	}
	json_object_set_new(o, "alive", arr);
	char dir[4200], path[4300], tmp[4400];
	snprintf(dir, sizeof(dir), "%s/serf", a->cfg.data_dir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/snapshot", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(o, tmp, JSON_COMPACT) != 0 || rename(tmp, path) != 0)
		log_warn("agent: cannot write the snapshot %s", path);
	json_decref(o);
}

static void snap_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	snapshot_write(w->data);
}

/*
 * Member and user events mark the snapshot; it is written at most every
 * SNAPSHOT_DELAY_S. Writing it on every event rewrote the whole member list
 * per join: O(N^2) per agent while a cluster forms (at 400 agents, JSON
 * dumping and fwrite were the top of a system-wide profile and joins timed
 * out at the seed). Member changes alone wait longer in a large cluster,
 * SNAPSHOT_MEMBER_S per member (30 s at 1,000, at most SNAPSHOT_MEMBER_MAX_S):
 * each write is O(N), and while 1,000 agents joined the half-second rewrites
 * still took a sixth of the machine's CPU (docs/PERFORMANCE.md "Join
 * storms"). A kill -9 loses at most that much of the member list, which only
 * seeds a rejoin (any one member still alive will do); a user event (whose
 * clock keeps old events from being replayed after a restart) still brings
 * the write to within SNAPSHOT_DELAY_S.
 */
static void snapshot_mark(struct agent *a, bool members_only)
{
	struct agent_priv *p = priv(a);
	if (p == NULL)
		return;
	double delay = SNAPSHOT_DELAY_S;
	if (members_only && a->gossip != NULL) {
		double d = (double)swim_member_count(gossip_transport_swim(a->gossip)) *
		           SNAPSHOT_MEMBER_S;
		if (d > delay)
			delay = d < SNAPSHOT_MEMBER_MAX_S ? d : SNAPSHOT_MEMBER_MAX_S;
	}
	if (ev_is_active(&p->snap_timer)) {
		if (ev_timer_remaining(a->loop, &p->snap_timer) <= delay)
			return;
		ev_timer_stop(a->loop, &p->snap_timer);
	}
	ev_timer_set(&p->snap_timer, delay, 0.);
	ev_timer_start(a->loop, &p->snap_timer);
}

static void rejoin_done(void *ud, bool ok, const char *error)
{
	char *addr = ud;
	if (ok)
		log_info("agent: Rejoined %s from the snapshot", addr);
	else
		log_warn("agent: Rejoin of %s from the snapshot failed: %s", addr,
		         error ? error : "unknown error");
	free(addr);
}

static void snapshot_restore(struct agent *a)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/serf/snapshot", a->cfg.data_dir);
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	if (o == NULL)
		return;
	serf_witness_clocks(a->serf, (uint64_t)json_integer_value(json_object_get(o, "clock")),
	                    (uint64_t)json_integer_value(json_object_get(o, "event_clock")),
	                    (uint64_t)json_integer_value(json_object_get(o, "query_clock")));
	if (json_is_true(json_object_get(o, "left")) && !a->cfg.rejoin_after_leave) {
		log_info("agent: previous run left the cluster: not rejoining its members "
		         "(-rejoin-after-leave to do so)");
		json_decref(o);
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(o, "alive"), i, e)
	{
		const char *addr = json_string_value(json_object_get(e, "addr"));
		if (addr == NULL)
			continue;
		char *ud = strdup(addr), err[256];
		if (ud == NULL)
			abort();
		log_info("agent: Rejoining %s (%s) from the snapshot", addr,
		         json_string_value(json_object_get(e, "name")));
		if (gossip_transport_join(a->gossip, addr, (uint16_t)a->cfg.serf_lan_port,
		                          rejoin_done, ud, err, sizeof(err)) < 0)
			rejoin_done(ud, false, err);
	}
	json_decref(o);
}

static void on_member_event(void *ud, enum swim_event_type type, const struct swim_member *m)
{
	struct agent *a = ud;
	char addr[64];
	ml_addr_str(&m->id->addr, addr, sizeof(addr));
	enum serf_event sev =
	        a->serf != NULL ? serf_member_event(a->serf, type, m->id->name) : SERF_EV_NONE;
	if (a->events != NULL && sev != SERF_EV_NONE)
		agent_events_member(a->events, sev, m->id->name, &m->id->addr, m->id->meta,
		                    m->id->meta_len);
	if (type == SWIM_EV_FAILED && sev == SERF_EV_MEMBER_LEAVE)
		type = SWIM_EV_LEFT; /* a leave intent came first: serf logs a leave */
	switch (type) {
	case SWIM_EV_JOIN:
		log_info("serf: EventMemberJoin: %s %s", m->id->name, addr);
		break;
	case SWIM_EV_UPDATE:
		log_info("serf: EventMemberUpdate: %s", m->id->name);
		break;
	case SWIM_EV_SUSPECT:
		log_info("memberlist: Suspect %s has failed, no acks received", m->id->name);
		break;
	case SWIM_EV_FAILED:
		log_info("serf: EventMemberFailed: %s %s", m->id->name, addr);
		break;
	case SWIM_EV_LEFT:
		log_info("serf: EventMemberLeave: %s %s", m->id->name, addr);
		break;
	case SWIM_EV_REAP:
		log_info("serf: EventMemberReap: %s", m->id->name);
		break;
	}
	if (type != SWIM_EV_SUSPECT && type != SWIM_EV_UPDATE)
		snapshot_mark(a, true);
	if (a->kv != NULL && type == SWIM_EV_JOIN)
		kv_on_member(a->kv, true, m->id->name);
	if (type == SWIM_EV_JOIN || type == SWIM_EV_UPDATE)
		server_member_event(a->server, m);
	api_catalog_member_event(ud, type, m);
}

/*
 * A memberlist user message (piggybacked or over TCP). The first byte says
 * whose it is: serf's message types are 0-31 (serf/messages.go); rumor's own
 * (KV replication, catalog) start at 0x80 and are sent only to rumor agents.
 * Each module plugs its handler in here.
 */
static void on_user_msg(void *ud, const uint8_t *p, size_t len)
{
	struct agent *a = ud;
	if (len == 0)
		return;
	log_trace("agent: user message type %u, %zu bytes", p[0], len);
	if (p[0] < 32 && a->serf != NULL)
		serf_handle_msg(a->serf, gossip_now_ms(), p, len);
	else if (p[0] >= 0x80 && p[0] < 0x90 && a->kv != NULL)
		kv_on_user_msg(a->kv, p, len);
}

/* ------------------------------------------------------------ serf glue */

static uint8_t *on_local_state(void *ud, bool join, size_t *len)
{
	struct agent *a = ud;
	(void)join;
	return a->serf != NULL ? serf_local_state_new(a->serf, len) : NULL;
}

static void on_merge_state(void *ud, const uint8_t *p, size_t len, bool join)
{
	struct agent *a = ud;
	if (a->serf != NULL)
		serf_merge_state(a->serf, p, len, join);
}

static void on_gossip_warn(void *ud, const char *msg)
{
	log_warn("%s", msg); /* rate-limited by the transport */
}

/* ------------------------------------------------------------ kv glue */

/* The member's rpc_port tag (the KV sync port it advertises), or -1. */
static int member_rpc_port(const struct swim_member *m)
{
	if (m->id->meta_len == 0)
		return -1;
	static struct tag tags[TAGS_MAX];
	int n = tags_decode(m->id->meta, m->id->meta_len, tags, TAGS_MAX);
	for (int i = 0; i < n; i++)
		if (strcmp(tags[i].key, "rpc_port") == 0) {
			int p = atoi(tags[i].value);
			return p > 0 && p < 65536 ? p : -1;
		}
	return -1;
}

/* A member is a KV peer when it advertises a sync port. */
static bool kv_peer_of(const struct swim_member *m, struct kv_peer *p)
{
	int port = member_rpc_port(m);
	if (port < 0)
		return false;
	p->name = m->id->name;
	p->ip_len = m->id->addr.len == 4 ? 4 : 16;
	memcpy(p->ip, m->id->addr.ip, p->ip_len);
	p->port = (uint16_t)port;
	return true;
}

static void kv_members_broadcast(void *ctx, const char *key, size_t key_len, const uint8_t *msg,
                                 size_t len)
{
	struct agent *a = ctx;
	if (a->gossip != NULL)
		swim_broadcast_rumor(gossip_transport_swim(a->gossip), key, key_len, msg, len);
}

static void kv_members_echo(void *ctx, const char *key, size_t key_len)
{
	struct agent *a = ctx;
	if (a->gossip != NULL)
		swim_rumor_echo(gossip_transport_swim(a->gossip), key, key_len);
}

static size_t kv_members_backlog(void *ctx)
{
	struct agent *a = ctx;
	return a->gossip != NULL ? swim_broadcast_queue_len(gossip_transport_swim(a->gossip)) : 0;
}

/* When name entered the membership table, on the wall clock the KV store's
 * versions use (swim's clock is monotonic). */
static int64_t kv_members_known_since(void *ctx, const char *name)
{
	struct agent *a = ctx;
	const struct swim_member *m =
	        a->gossip != NULL ? swim_member_find(gossip_transport_swim(a->gossip), name) : NULL;
	if (m == NULL)
		return INT64_MAX;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return wall - (gossip_now_ms() - m->known_since);
}

/* A member whose meta holds "rpc_port" runs KV; its tags are decoded by
 * kv_members_lookup once it is chosen, not every member's on every
 * anti-entropy round (tags_decode, memchr and strcmp were ~5% of a
 * 1,000-agent storm's profile). */
static bool kv_member_runs_kv(const struct swim_member *m)
{
	return m->state == ML_STATE_ALIVE && m->id->meta_len != 0 &&
	       memmem(m->id->meta, m->id->meta_len, "rpc_port", 8) != NULL;
}

/* Names only (kv/kv.h), every live KV member but this one. */

static void kv_members_peers(void *ctx, kv_member_fn fn, void *ud)
{
	struct agent *a = ctx;
	if (a->gossip == NULL)
		return;
	struct swim *s = gossip_transport_swim(a->gossip);
	const struct swim_member *self = swim_self(s);
	size_t n = swim_member_count(s);
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(s, i);
		if (m == self || !kv_member_runs_kv(m))
			continue;
		struct kv_peer p = {.name = m->id->name};
		fn(ud, &p);
	}
}

/*
 * A member other than this node for which ok() holds, uniformly: up to 64
 * uniform draws from the whole table, the first that qualifies taken
 * (rejection sampling: each qualifying member equally likely); when they
 * all miss (few qualify), the k-th of a count of them. NULL when none does.
 * Listing all 1,000 members (memmem on each one's meta) for every
 * anti-entropy round was 3% of a 1,000-agent storm's CPU.
 */
static const struct swim_member *pick_member(struct agent *a,
                                             bool (*ok)(const struct swim_member *m),
                                             uint32_t (*rand)(void *rctx, uint32_t n), void *rctx)
{
	if (a->gossip == NULL)
		return NULL;
	struct swim *s = gossip_transport_swim(a->gossip);
	const struct swim_member *self = swim_self(s);
	size_t n = swim_member_count(s);
	if (n == 0 || n > UINT32_MAX)
		return NULL;
	for (int tries = 0; tries < 64; tries++) {
		const struct swim_member *m = swim_member_at(s, rand(rctx, (uint32_t)n));
		if (m != self && ok(m))
			return m;
	}
	uint32_t count = 0;
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(s, i);
		count += m != self && ok(m);
	}
	if (count == 0)
		return NULL;
	uint32_t k = rand(rctx, count);
	for (size_t i = 0; i < n; i++) {
		const struct swim_member *m = swim_member_at(s, i);
		if (m != self && ok(m) && k-- == 0)
			return m;
	}
	return NULL;
}

/* One of the members kv_members_peers lists, uniformly (pick_member). */
static bool kv_members_pick(void *ctx, uint32_t (*rand)(void *rctx, uint32_t n), void *rctx,
                            struct kv_peer *p)
{
	const struct swim_member *m = pick_member(ctx, kv_member_runs_kv, rand, rctx);
	if (m == NULL)
		return false;
	p->name = m->id->name;
	return true;
}

static bool kv_members_lookup(void *ctx, const char *name, struct kv_peer *p)
{
	struct agent *a = ctx;
	if (a->gossip == NULL)
		return false;
	struct swim *s = gossip_transport_swim(a->gossip);
	const struct swim_member *m = swim_member_find(s, name);
	return m != NULL && m != swim_self(s) && kv_peer_of(m, p);
}

static void serf_io_broadcast(void *ctx, const uint8_t *msg, size_t len)
{
	struct agent *a = ctx;
	if (a->gossip == NULL)
		return;
	priv(a)->last_bcast_id = swim_broadcast_user(gossip_transport_swim(a->gossip), msg, len);
}

static void serf_io_send_to(void *ctx, const struct ml_addr *to, const uint8_t *msg, size_t len)
{
	struct agent *a = ctx;
	if (a->gossip != NULL)
		swim_send_user(gossip_transport_swim(a->gossip), to, msg, len);
}

static void serf_io_user_event(void *ctx, uint64_t ltime, const char *name, const uint8_t *payload,
                               size_t len, bool coalesce)
{
	struct agent *a = ctx;
	log_info("agent: Received event: user-event: %s", name);
	api_event_record(a, ltime, name, payload, len);
	snapshot_mark(a, false);
	if (a->events != NULL)
		agent_events_user(a->events, ltime, name, payload, len, coalesce);
}

static void serf_io_query(void *ctx, const struct serf_query_in *q)
{
	struct agent *a = ctx;
	if (strncmp(q->name, "_serf_", 6) == 0) {
		api_event_internal_query(a, q);
		return;
	}
	log_info("agent: Received event: query: %s", q->name);
	if (a->events != NULL)
		agent_events_query(a->events, q, gossip_now_ms());
}

static void serf_io_query_response(void *ctx, uint32_t id, const char *from, bool ack,
                                   const uint8_t *payload, size_t len)
{
	api_event_query_response(ctx, id, from, ack, payload, len);
}

static void on_handler_response(void *ud, const struct serf_query_in *q, const uint8_t *out,
                                size_t len)
{
	struct agent *a = ud;
	char err[128];
	if (gossip_now_ms() > q->deadline) {
		log_warn("agent: Failed to respond to query: response is past the deadline");
		return;
	}
	if (serf_query_respond(a->serf, q, out, len, err, sizeof(err)) < 0)
		log_warn("agent: Failed to respond to query: %s", err);
}

/* Gossip encryption from the keyring file or -encrypt; 0 or -1 with err. */
/* The KV sync seal: the gossip keyring's packet encryption (the keyring
 * object stays the same across install/use/remove, so rotation carries). */
static int kv_seal_encrypt(void *ctx, const uint8_t *msg, size_t len, const uint8_t *ad,
                           size_t adlen, uint8_t *out, size_t cap)
{
	return keyring_encrypt(ctx, msg, len, ad, adlen, out, cap);
}

static int kv_seal_decrypt(void *ctx, const uint8_t *in, size_t len, const uint8_t *ad,
                           size_t adlen, uint8_t *out, size_t cap)
{
	return keyring_decrypt(ctx, in, len, ad, adlen, out, cap);
}

static int setup_keyring(struct agent *a, char *err, size_t errlen)
{
	char path[4200];
	keyring_path(a, path, sizeof(path));
	struct stat sb;
	bool have_file = stat(path, &sb) == 0;
	if (a->cfg.encrypt_key_len == 0 && !have_file)
		return 0;
	if (!keyring_available()) {
		snprintf(err, errlen,
		         "gossip encryption was asked for, but this CPU lacks AES-NI: libsodium's "
		         "AES-256-GCM needs it, so encryption cannot start");
		return -1;
	}
	if (a->cfg.encrypt_key_len != 0 && a->cfg.encrypt_key_len != KEYRING_KEY_LEN) {
		snprintf(err, errlen,
		         "-encrypt: %zu-byte keys (AES-%zu) are not supported: rumor uses "
		         "libsodium's AES-256-GCM, which needs a 32-byte key (`rumor keygen`)",
		         a->cfg.encrypt_key_len, a->cfg.encrypt_key_len * 8);
		return -1;
	}
	a->keyring = keyring_new();
	if (have_file) {
		if (keyring_load(a->keyring, path, err, errlen) < 0)
			return -1;
		if (a->cfg.encrypt_key_len != 0)
			log_warn("agent: keyring file %s exists: using it and ignoring -encrypt",
			         path);
		return 0;
	}
	if (keyring_add(a->keyring, a->cfg.encrypt_key, err, errlen) < 0)
		return -1;
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/serf", a->cfg.data_dir);
	mkdir(dir, 0700);
	char e2[256];
	if (keyring_save(a->keyring, path, e2, sizeof(e2)) < 0)
		log_warn("agent: cannot persist the keyring: %s", e2);
	return 0;
}

/* ------------------------------------------------------------ joins */

/*
 * A -join that failed on a node that is there but busy (the exchange timed
 * out, or the connection was taken and closed, as a seed over its stream
 * limit does in a join storm) is tried again after a jittered, doubling
 * back-off, for up to JOIN_PATIENCE_S; an unreachable address (refused,
 * unresolvable) fails at once, as in Consul. Consul gives -join one attempt
 * (memberlist's 10 s TCP timeout) and exits: on a machine starting 1,000
 * agents that killed 61 agents whose seed was answering, only slowly. 150 s
 * of patience still let 255 of 1,000 exit in a storm that had not settled
 * by then; 10 minutes is the bound (a stopped seed, which takes the
 * connection in the kernel and never answers, looks the same).
 */
#define JOIN_PATIENCE_S 600.0
#define JOIN_BACKOFF_MIN_S 1.0
#define JOIN_BACKOFF_MAX_S 16.0

struct start_join {
	struct agent *a;
	char addr[256];
	bool retry;
	bool counted; /* joined by gossip and counted so; now only syncing */
	int attempts;
	ev_tstamp first_at;
	ev_timer wait;
	struct start_join *next; /* in join_waits */
};

static void start_join_attempt(struct start_join *sj);

/* The node is there but did not answer in time, or took the connection and
 * closed it (over its stream limit); anything else (refused, unresolvable,
 * an answer saying no) is final. */
static bool join_busy_error(const char *error)
{
	static const char *const busy[] = {"i/o timeout", "closed by peer", "reset by peer",
	                                   "broken pipe"};
	for (size_t i = 0; error != NULL && i < sizeof(busy) / sizeof(busy[0]); i++)
		if (strcasestr(error, busy[i]) != NULL)
			return true;
	return false;
}

static void join_wait_unlink(struct agent *a, struct start_join *sj)
{
	for (struct start_join **pp = &priv(a)->join_waits; *pp != NULL; pp = &(*pp)->next)
		if (*pp == sj) {
			*pp = sj->next;
			return;
		}
}

static bool member_alive(const struct swim_member *m)
{
	return m->state == ML_STATE_ALIVE;
}

static uint32_t sodium_rand(void *rctx, uint32_t n)
{
	(void)rctx;
	return randombytes_uniform(n);
}

/* A random alive member other than this node, as "ip:port" into buf; false
 * when there is none. */
static bool random_alive_member(struct agent *a, char *buf, size_t cap)
{
	const struct swim_member *m = pick_member(a, member_alive, sodium_rand, NULL);
	if (m == NULL)
		return false;
	ml_addr_str(&m->id->addr, buf, cap);
	return true;
}

/*
 * Joined meanwhile: the seed merged our state and others gossip to us. That
 * counts as joined (the agent will not exit), but gossip brings only the
 * members that changed since: the table lacks the rest until a periodic
 * push-pull (minutes at 1,000) or a digest repair. So the join's push-pull
 * is done once more, with a random member that gossip taught us rather than
 * the busy seed; a busy one backs off and the next try draws another.
 */
static void join_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct start_join *sj = w->data;
	struct agent *a = sj->a;
	join_wait_unlink(a, sj);
	if (swim_num_alive(gossip_transport_swim(a->gossip)) > 0) {
		if (!sj->counted) {
			sj->counted = true;
			priv(a)->start_joins_pending--;
			priv(a)->start_joins_ok++;
			a->joined_once = true;
			log_info("agent: Join via %s: members known by gossip, joined", sj->addr);
		}
		char to[sizeof(sj->addr)];
		if (a->shutting_down || a->leaving || !random_alive_member(a, to, sizeof(to))) {
			free(sj);
			return;
		}
		log_info("agent: syncing the member list with %s", to);
		memcpy(sj->addr, to, sizeof(sj->addr));
		start_join_attempt(sj);
		return;
	}
	/* several -join addresses: the next try may go to another one */
	size_t n = sj->a->cfg.start_join.n;
	if (n > 1)
		snprintf(sj->addr, sizeof(sj->addr), "%s",
		         sj->a->cfg.start_join.items[randombytes_uniform((uint32_t)n)]);
	start_join_attempt(sj);
}

/* Back off a -join that met a busy node; false when patience ran out. */
static bool join_busy(struct start_join *sj, const char *error)
{
	struct agent *a = sj->a;
	ev_tstamp now = ev_now(a->loop);
	if (sj->retry || a->shutting_down || !join_busy_error(error) ||
	    now - sj->first_at > JOIN_PATIENCE_S)
		return false;
	double d = JOIN_BACKOFF_MIN_S * (double)(1u << (sj->attempts < 5 ? sj->attempts : 4));
	d = d > JOIN_BACKOFF_MAX_S ? JOIN_BACKOFF_MAX_S : d;
	d *= 0.5 + (double)randombytes_uniform(1000) / 1000.0; /* jitter: 0.5-1.5x */
	log_warn("agent: Join %s failed (%s); the node is there but busy: retrying in %.1f s",
	         sj->addr, error, d);
	ev_timer_init(&sj->wait, join_wait_cb, d, 0.);
	sj->wait.data = sj;
	ev_timer_start(a->loop, &sj->wait);
	sj->next = priv(a)->join_waits;
	priv(a)->join_waits = sj;
	return true;
}

static void retry_join_schedule(struct agent *a);

static void start_join_done(void *ud, bool ok, const char *error)
{
	struct start_join *sj = ud;
	struct agent *a = sj->a;
	struct agent_priv *p = priv(a);
	if (ok) {
		log_info("agent: Join completed. Synced with %s", sj->addr);
		if (a->serf != NULL && !sj->counted) /* a sync: the join was gossiped */
			serf_broadcast_join(a->serf);
		a->joined_once = true;
	} else {
		if (join_busy(sj, error))
			return;
		log_warn("agent: Join %s failed: %s", sj->addr, error ? error : "unknown error");
	}
	if (sj->counted) { /* a sync after joining by gossip: counted already */
		free(sj);
		return;
	}
	if (sj->retry) {
		p->retry_in_flight = false;
		if (ok)
			p->start_joins_ok++;
	} else {
		p->start_joins_pending--;
		if (ok)
			p->start_joins_ok++;
		if (p->start_joins_pending == 0 && p->start_joins_ok == 0 && !a->shutting_down) {
			log_err("agent: Error starting agent: Failed to join any nodes given with "
			        "-join");
			a->exit_code = 1;
			a->shutting_down = true;
			ev_break(a->loop, EVBREAK_ALL);
		}
	}
	free(sj);
}

static void start_join(struct agent *a, const char *addr, bool retry)
{
	struct start_join *sj = calloc(1, sizeof(*sj));
	if (sj == NULL)
		abort();
	sj->a = a;
	sj->retry = retry;
	sj->first_at = ev_now(a->loop);
	snprintf(sj->addr, sizeof(sj->addr), "%s", addr);
	if (!retry)
		priv(a)->start_joins_pending++;
	else
		priv(a)->retry_in_flight = true;
	start_join_attempt(sj);
}

static void start_join_attempt(struct start_join *sj)
{
	struct agent *a = sj->a;
	const char *addr = sj->addr;
	char err[256];
	sj->attempts++;
	if (gossip_transport_join(a->gossip, addr, (uint16_t)a->cfg.serf_lan_port, start_join_done,
	                          sj, err, sizeof(err)) < 0)
		start_join_done(sj, false, err);
}

static void retry_join_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = w->data;
	struct agent_priv *p = priv(a);
	if (a->joined_once || a->leaving || a->cfg.retry_join.n == 0)
		return;
	if (p->retry_in_flight) {
		retry_join_schedule(a);
		return;
	}
	if (a->cfg.retry_max > 0 && a->retry_attempts >= a->cfg.retry_max) {
		log_err("agent: max join retry exhausted, exiting");
		a->exit_code = 1;
		a->shutting_down = true;
		ev_break(a->loop, EVBREAK_ALL);
		return;
	}
	const char *addr = a->cfg.retry_join.items[a->retry_attempts % a->cfg.retry_join.n];
	a->retry_attempts++;
	log_info("agent: Joining cluster (retry-join attempt %d) via %s", a->retry_attempts, addr);
	start_join(a, addr, true);
	retry_join_schedule(a);
}

static void retry_join_schedule(struct agent *a)
{
	struct agent_priv *p = priv(a);
	if (a->joined_once)
		return;
	ev_timer_stop(a->loop, &p->retry_timer);
	ev_timer_set(&p->retry_timer, (double)a->cfg.retry_interval_ms / 1000.0, 0.);
	ev_timer_start(a->loop, &p->retry_timer);
}

/* ------------------------------------------------------------ leave */

static void leave_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = w->data;
	struct agent_priv *p = priv(a);
	struct swim *s = gossip_transport_swim(a->gossip);
	if (!p->swim_leaving) {
		/* first our serf leave intent, so that others record "left" */
		if (swim_broadcast_pending(s, p->leave_intent_id) && swim_num_alive(s) > 0 &&
		    gossip_now_ms() - p->leave_started < BROADCAST_TIMEOUT_MS)
			return;
		p->swim_leaving = true;
		swim_leave(s, gossip_now_ms());
		gossip_transport_kick(a->gossip);
		return;
	}
	bool done = swim_leave_done(s);
	if (!done && gossip_now_ms() - p->leave_started < BROADCAST_TIMEOUT_MS)
		return;
	if (!done)
		log_warn("agent: timeout while waiting for graceful leave");
	else
		log_info("agent: Graceful leave complete");
	a->left = true;
	a->shutting_down = true;
	ev_timer_stop(loop, w);
	ev_break(loop, EVBREAK_ALL);
}

static void start_leave(struct agent *a)
{
	struct agent_priv *p = priv(a);
	if (a->leaving)
		return;
	a->leaving = true;
	log_info("agent: Gracefully shutting down agent...");
	p->leave_started = gossip_now_ms();
	if (a->serf != NULL) {
		p->last_bcast_id = 0;
		serf_broadcast_leave(a->serf);
		p->leave_intent_id = p->last_bcast_id;
	}
	snapshot_write(a);
	gossip_transport_kick(a->gossip);
	ev_timer_init(&p->leave_timer, leave_poll_cb, LEAVE_POLL_S, LEAVE_POLL_S);
	p->leave_timer.data = a;
	ev_timer_start(a->loop, &p->leave_timer);
}

static void shutdown_now(struct agent *a)
{
	log_info("agent: shutting down without leaving");
	a->shutting_down = true;
	ev_break(a->loop, EVBREAK_ALL);
}

/*
 * Only while gossip has nothing queued: news in flight means the cluster is
 * churning (a join storm), and the pages a trim drops would fault back at
 * once. In a 1,000-agent storm the trims (the first comes 10 s after start,
 * mid-storm) and their faults were 4-5% of the machine's CPU in a profile,
 * and skipping only while over 64 messages waited still left most of them.
 * The next minute's turn trims. An agent alone trims anyway: with nobody to
 * send to, its queue never drains.
 */
static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = w->data;
	const struct swim *s = a->gossip != NULL ? gossip_transport_swim(a->gossip) : NULL;
	if (s != NULL && swim_member_count(s) > 1 && swim_broadcast_queue_len(s) > 0) {
		log_debug("agent: resident set not trimmed: gossip has news queued");
		return;
	}
	size_t n = memtrim_run();
	size_t m = a->kv != NULL ? kv_store_trim(kv_engine_store(kv_engine_of(a->kv))) : 0;
	log_debug("agent: trimmed the resident set (%zu KiB of program and stack pages, %zu KiB "
	          "of the KV store's map advised)",
	          n / 1024, m / 1024);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct agent *a = w->data;
	if (w->signum == SIGHUP) {
		struct rumor_config fresh;
		char err[512];
		if (rumor_config_reload(&a->cfg, &fresh, err, sizeof(err)) < 0) {
			log_err("agent: reload failed: %s", err);
			rumor_config_free(&fresh);
			return;
		}
		log_set_level((enum log_level)fresh.log_level);
		/* reopen the log file: an external logrotate may have moved it */
		if (a->cfg.log_file != NULL && log_set_file(a->cfg.log_file) < 0)
			fprintf(stderr, "==> cannot reopen log file %s: %s\n", a->cfg.log_file,
			        strerror(errno));
		a->cfg.log_level = fresh.log_level;
		/* swap node meta */
		struct rumor_config_meta *old = a->cfg.node_meta;
		size_t oldn = a->cfg.node_meta_n;
		a->cfg.node_meta = fresh.node_meta;
		a->cfg.node_meta_n = fresh.node_meta_n;
		fresh.node_meta = old;
		fresh.node_meta_n = oldn;
		rumor_config_free(&fresh);
		uint8_t meta[ML_META_MAX];
		int mlen = build_meta(a, meta, sizeof(meta));
		if (mlen < 0) {
			log_err("agent: reload: node meta does not fit in %d bytes", ML_META_MAX);
			return;
		}
		struct swim *s = gossip_transport_swim(a->gossip);
		const struct swim_member *self = swim_self(s);
		if (self->id->meta_len != (size_t)mlen ||
		    memcmp(self->id->meta, meta, (size_t)mlen) != 0) {
			swim_set_meta(s, gossip_now_ms(), meta, (size_t)mlen);
			gossip_transport_kick(a->gossip);
		}
		refresh_self_tags(a);
		log_info("agent: Reloaded configuration (log level %s)",
		         rumor_config_log_level_name(a->cfg.log_level));
		return;
	}
	if (a->leaving) {
		/* second signal: stop at once */
		shutdown_now(a);
		return;
	}
	bool leave =
	        w->signum == SIGINT ? !a->cfg.skip_leave_on_interrupt : a->cfg.leave_on_terminate;
	log_info("agent: Caught signal: %s", w->signum == SIGINT ? "interrupt" : "terminated");
	if (leave)
		start_leave(a);
	else
		shutdown_now(a);
}

/* ----------------------------------------------------------- helpers */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int parse_ip(const char *s, struct ml_addr *out)
{
	return ml_addr_parse(s, 0, out);
}

/* Consul's start-up block, on stdout (the journal under systemd). */
static void print_banner(const struct agent *a)
{
	char dns[16];
	snprintf(dns, sizeof(dns), "%d", a->cfg.dns_port);
	size_t nkeys = a->keyring != NULL ? keyring_count(a->keyring) : 0;
	printf("==> rumor agent running!\n"
	       "           Version: '%s'\n"
	       "           Node ID: '%s'\n"
	       "         Node name: '%s'\n"
	       "        Datacenter: '%s'\n"
	       "            Server: %s (Bootstrap: %s)\n"
	       "       Client Addr: [%s] (HTTP: %d, DNS: %s)\n"
	       "      Cluster Addr: %s (LAN: %u, bound to %s)\n"
	       "           Encrypt: Gossip: %s (%zu key(s) in the keyring)\n"
	       "          Data Dir: '%s'%s\n"
	       "    Gossip Profile: %s\n"
	       "\n==> Log data will now stream in as it occurs:\n\n",
	       RUMOR_VERSION, a->node_id, a->cfg.node_name, a->cfg.datacenter,
	       a->cfg.server ? "true" : "false", a->cfg.bootstrap ? "true" : "false",
	       a->cfg.client_addr, a->cfg.http_port, a->cfg.dns_port < 0 ? "off" : dns,
	       a->cfg.advertise_addr, gossip_transport_port(a->gossip), a->cfg.bind_addr,
	       nkeys > 0 ? "true" : "false", nkeys, a->cfg.data_dir,
	       a->cfg.dev ? " (dev mode: removed at exit)" : "",
	       rumor_config_profile_name(a->cfg.profile));
	fflush(stdout);
}

/* -------------------------------------------------------------- main */

/*
 * Start-up, in order. Each step prints its own "==> ..." line and returns
 * -1 when the agent cannot start; whatever the steps before it started is
 * undone by agent_stop(), the one unwinding path, which is safe for every
 * module that never started (each stop takes NULL, or checks a flag).
 */

/* Log level, format, rotation, syslog and the optional log file. */
static int start_logging(struct agent *a)
{
	log_set_level((enum log_level)a->cfg.log_level);
	log_set_json(a->cfg.log_json);
	log_set_rotation((unsigned long long)a->cfg.log_rotate_bytes, a->cfg.log_rotate_duration_ms,
	                 a->cfg.log_rotate_max_files);
	log_set_syslog(a->cfg.syslog);
	if (a->cfg.log_file != NULL && log_set_file(a->cfg.log_file) < 0) {
		fprintf(stderr, "==> cannot open log file %s: %s\n", a->cfg.log_file,
		        strerror(errno));
		return -1;
	}
	/* the Consul-only settings' notices go to the configured log */
	rumor_config_log_notices(&a->cfg);
	return 0;
}

/* libsodium, the node ID in the data directory, and the event loop. */
static int start_runtime(struct agent *a)
{
	char err[1024];
	if (sodium_init() < 0) {
		fprintf(stderr, "==> libsodium failed to initialise\n");
		return -1;
	}
	if (lock_data_dir(a, err, sizeof(err)) < 0 || load_node_id(a, err, sizeof(err)) < 0) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	a->loop = ev_default_loop(EVFLAG_AUTO);
	/* timers due within TIMER_COLLECT_S of each other run in one wake-up
	 * (housekeeping timers started together fall due a few ms apart); none
	 * needs finer timing, and I/O is never delayed by it */
	ev_set_timeout_collect_interval(a->loop, TIMER_COLLECT_S);
	a->start_ms = gossip_now_ms();
	return 0;
}

/* The replicated KV store and its sync listener (off with -server-port -1,
 * except in dev mode, which picks a free port). */
static int start_kv(struct agent *a)
{
	if (a->cfg.server_port < 0 && !a->cfg.dev)
		return 0;
	char err[1024];
	struct kv_config kc = {
	        .data_dir = a->cfg.data_dir,
	        .node_name = a->cfg.node_name,
	        .bind_addr = a->cfg.bind_addr,
	        .sync_port = a->cfg.server_port < 0 ? 0 : a->cfg.server_port,
	        .tombstone_ttl_ms = a->cfg.kv_tombstone_ttl_ms,
	        .sync_interval_ms = a->cfg.kv_sync_interval_ms,
	        .max_ahead_ms = a->cfg.kv_max_clock_offset_ms,
	};
	a->kv = kv_new(a->loop, &kc, err, sizeof(err));
	if (a->kv == NULL) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	a->server = server_new(a, err, sizeof(err));
	if (a->server == NULL) {
		fprintf(stderr, "==> Error starting the server tier: %s\n", err);
		return -1;
	}
	return 0;
}

/* The gossip transport's configuration from ours: addresses, protocol
 * versions, timing profile, node meta (into meta) and the callbacks. */
static int gossip_config(struct agent *a, struct gossip_transport_config *gc, uint8_t *meta,
                         size_t metacap)
{
	memset(gc, 0, sizeof(*gc));
	gc->bind_addr = a->cfg.bind_addr;
	gc->port = (uint16_t)a->cfg.serf_lan_port;
	if (parse_ip(a->cfg.advertise_addr, &gc->advertise) < 0) {
		fprintf(stderr, "==> invalid advertise address %s\n", a->cfg.advertise_addr);
		return -1;
	}
	gc->advertise.port = (uint16_t)a->cfg.serf_lan_port;
	gc->swim.name = a->cfg.node_name;
	/* memberlist 1..5 speaking 2; serf delegate protocol 2..5 speaking 5, as
	 * serf 0.8.2 advertises */
	static const uint8_t vsn[6] = {1, 5, 2, 2, 5, 5};
	memcpy(gc->swim.vsn, vsn, 6);
	swim_timing_profile(&gc->swim.timing, rumor_config_profile_name(a->cfg.profile));
	gc->swim.timing.reconnect_timeout_ms = a->cfg.reconnect_timeout_ms;
	gc->tcp_timeout_ms = a->cfg.profile == RUMOR_CONFIG_PROFILE_WAN     ? 30000
	                     : a->cfg.profile == RUMOR_CONFIG_PROFILE_LOCAL ? 1000
	                                                                    : 10000;
	int mlen = build_meta(a, meta, metacap);
	if (mlen < 0) {
		fprintf(stderr,
		        "==> node meta does not fit in %d bytes: use fewer or shorter -node-meta\n",
		        ML_META_MAX);
		return -1;
	}
	gc->swim.meta = meta;
	gc->swim.meta_len = (size_t)mlen;
	gc->swim.is_rumor = tags_is_rumor;             /* KV gossip only to rumor agents */
	gc->swim.is_rumor_agent = tags_is_rumor_build; /* table digests, KV or not */
	gc->swim.disable_coordinates = a->cfg.disable_coordinates;
	gc->on_event = on_member_event;
	gc->on_user_msg = on_user_msg;
	gc->local_state = on_local_state;
	gc->merge_state = on_merge_state;
	gc->on_warn = on_gossip_warn;
	gc->ud = a;
	return 0;
}

/* The keyring: gossip and KV sync encrypted with it, or a warning when
 * both are plaintext on an address others can reach. */
static int start_security(struct agent *a, struct gossip_transport_config *gc)
{
	char err[1024];
	if (setup_keyring(a, err, sizeof(err)) < 0) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	if (a->keyring == NULL) {
		if (a->cfg.bind_addr == NULL || !acl_addr_is_loopback(a->cfg.bind_addr))
			log_warn("==> WARNING: no gossip key (-encrypt): gossip and KV sync on %s "
			         "are "
			         "plaintext and unauthenticated; whoever reaches ports %d and %d "
			         "can "
			         "read and write every key and service%s",
			         a->cfg.bind_addr ? a->cfg.bind_addr : "0.0.0.0",
			         a->cfg.serf_lan_port, a->cfg.server_port,
			         a->cfg.acl_token != NULL ? " (ACL tokens guard only the HTTP API)"
			                                  : "");
		return 0;
	}
	gc->keyring = a->keyring;
	gc->swim.timing.udp_budget -= KEYRING_OVERHEAD;
	log_info("agent: gossip encryption enabled: AES-256-GCM (libsodium), %zu key(s) "
	         "in the keyring",
	         keyring_count(a->keyring));
	if (a->kv != NULL) {
		struct kv_seal seal = {.ctx = a->keyring,
		                       .overhead = KEYRING_OVERHEAD,
		                       .encrypt = kv_seal_encrypt,
		                       .decrypt = kv_seal_decrypt};
		kv_set_seal(a->kv, &seal);
		server_set_seal(a->server, &seal);
	}
	return 0;
}

/* Serf's layer, the event handlers, the gossip transport (with the SWIM
 * core in it), and the KV store's view of membership. */
static int start_gossip(struct agent *a)
{
	char err[1024];
	uint8_t meta[ML_META_MAX];
	struct gossip_transport_config gc;
	if (gossip_config(a, &gc, meta, sizeof(meta)) < 0 || start_security(a, &gc) < 0)
		return -1;
	struct serf_io sio = {
	        .ctx = a,
	        .broadcast = serf_io_broadcast,
	        .send_to = serf_io_send_to,
	        .user_event = serf_io_user_event,
	        .query = serf_io_query,
	        .query_response = serf_io_query_response,
	};
	a->serf = serf_new(a->cfg.node_name, &sio);
	if (a->serf == NULL) {
		fprintf(stderr, "==> Error starting agent: invalid node name\n");
		return -1;
	}
	a->events = agent_events_new(a->loop, &a->cfg.event_handlers, on_handler_response, a, err,
	                             sizeof(err));
	if (a->events == NULL) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	refresh_self_tags(a);
	a->gossip = gossip_transport_new(a->loop, &gc, err, sizeof(err));
	if (a->gossip == NULL) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	if (a->kv != NULL) {
		struct kv_members km = {.ctx = a,
		                        .broadcast = kv_members_broadcast,
		                        .echo = kv_members_echo,
		                        .peers = kv_members_peers,
		                        .lookup = kv_members_lookup,
		                        .pick = kv_members_pick,
		                        .backlog = kv_members_backlog,
		                        .known_since = kv_members_known_since};
		kv_set_members(a->kv, &km);
	}
	return 0;
}

/* The catalog (services, checks; stored in the KV store), DNS, the HTTP
 * API and the pid file. */
static int start_services(struct agent *a)
{
	char err[1024];
	if (api_catalog_start(a, err, sizeof(err)) < 0) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	if (a->kv != NULL)
		api_catalog_attach_store(a, a->kv); /* the catalog lives in the KV store */
	if (agent_dns_start(a, api_catalog_catalog(a), &priv(a)->dns, err, sizeof(err)) < 0) {
		fprintf(stderr, "==> Error starting agent: %s\n", err);
		return -1;
	}
	if (a->cfg.http_port >= 0) {
		a->http = api_start(a, err, sizeof(err));
		if (a->http == NULL) {
			fprintf(stderr, "==> Error starting agent: %s\n", err);
			return -1;
		}
	}
	if (a->cfg.pid_file != NULL) {
		FILE *f = fopen(a->cfg.pid_file, "w");
		if (f == NULL) {
			fprintf(stderr, "==> cannot write pid file %s: %s\n", a->cfg.pid_file,
			        strerror(errno));
			return -1;
		}
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
		priv(a)->pid_written = true;
	}
	return 0;
}

/* Everything is up: signals, metrics, the start-up lines, the snapshot's
 * members, -join and -retry-join, and the memory trim. */
static void start_running(struct agent *a)
{
	struct agent_priv *p = priv(a);
	char err[1024];
	ev_signal_start(a->loop, &p->sigint);
	ev_signal_start(a->loop, &p->sigterm);
	ev_signal_start(a->loop, &p->sighup);
	if (api_ops_start(a, err, sizeof(err)) < 0)
		log_warn("agent: metrics and monitor are off: %s", err);

	char advert[64];
	ml_addr_str(&swim_self(gossip_transport_swim(a->gossip))->id->addr, advert, sizeof(advert));
	log_info("agent: rumor agent running: node '%s' (%s), datacenter %s, gossip %s:%u "
	         "advertised as %s, http %s:%d, data dir %s%s",
	         a->cfg.node_name, a->node_id, a->cfg.datacenter, a->cfg.bind_addr,
	         gossip_transport_port(a->gossip), advert, a->cfg.client_addr, a->cfg.http_port,
	         a->cfg.data_dir, a->cfg.dev ? " (dev mode, temporary)" : "");
	print_banner(a);

	snapshot_restore(a);
	for (size_t i = 0; i < a->cfg.start_join.n; i++)
		start_join(a, a->cfg.start_join.items[i], false);
	if (a->cfg.retry_join.n > 0) {
		ev_timer_set(&p->retry_timer, 0.001, 0.);
		ev_timer_start(a->loop, &p->retry_timer);
	}
	ev_timer_start(a->loop, &p->trim_timer);
	ev_unref(a->loop); /* never what keeps the loop running */
	p->running = true;
}

/* The one unwinding path, in the reverse order of start-up. Queries parked
 * on the catalog and committed KV writes are answered while HTTP is still
 * up; the serf snapshot gets what its last half second changed. */
static void agent_stop(struct agent *a)
{
	struct agent_priv *p = priv(a);
	if (p->running) {
		ev_signal_stop(a->loop, &p->sigint);
		ev_signal_stop(a->loop, &p->sigterm);
		ev_signal_stop(a->loop, &p->sighup);
		ev_timer_stop(a->loop, &p->retry_timer);
		while (p->join_waits != NULL) {
			struct start_join *sj = p->join_waits;
			p->join_waits = sj->next;
			ev_timer_stop(a->loop, &sj->wait);
			free(sj);
		}
		ev_timer_stop(a->loop, &p->leave_timer);
		ev_ref(a->loop);
		ev_timer_stop(a->loop, &p->trim_timer);
		if (ev_is_active(&p->snap_timer)) {
			ev_timer_stop(a->loop, &p->snap_timer);
			snapshot_write(a);
		}
		p->running = false;
	}
	if (p->pid_written)
		unlink(a->cfg.pid_file);
	api_ops_stop(a);
	agent_dns_stop(p->dns);
	p->dns = NULL;
	api_catalog_stop(a);
	server_free(a->server);
	a->server = NULL;
	kv_free(a->kv);
	a->kv = NULL;
	api_stop(a);
	gossip_transport_free(a->gossip);
	a->gossip = NULL;
	api_event_free(a);
	agent_events_free(a->events);
	a->events = NULL;
	serf_free(a->serf);
	a->serf = NULL;
	keyring_free(a->keyring);
	a->keyring = NULL;
	if (a->cfg.data_dir_is_temp && a->cfg.data_dir != NULL)
		nftw(a->cfg.data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (priv(a)->lock_fd >= 0) { /* last: everything in the directory is closed */
		close(priv(a)->lock_fd);
		priv(a)->lock_fd = -1;
	}
	rumor_config_free(&a->cfg);
	log_set_file(NULL);
	log_set_syslog(false);
	if (a->loop != NULL)
		ev_loop_destroy(a->loop);
}

/* The agent's watchers, initialised before anything can start them, so
 * that agent_stop may stop any of them. */
static void init_watchers(struct agent *a, struct agent_priv *p)
{
	ev_timer_init(&p->snap_timer, snap_timer_cb, SNAPSHOT_DELAY_S, 0.);
	p->snap_timer.data = a;
	ev_signal_init(&p->sigint, signal_cb, SIGINT);
	ev_signal_init(&p->sigterm, signal_cb, SIGTERM);
	ev_signal_init(&p->sighup, signal_cb, SIGHUP);
	p->sigint.data = p->sigterm.data = p->sighup.data = a;
	ev_timer_init(&p->retry_timer, retry_join_cb, 0., 0.);
	p->retry_timer.data = a;
	ev_timer_init(&p->trim_timer, trim_cb, TRIM_FIRST_S, TRIM_INTERVAL_S);
	p->trim_timer.data = a;
}

int agent_main(int argc, char **argv)
{
	static const struct agent_calls calls = {
	        .leave = start_leave,
	        .member_status = member_status,
	        .set_tags = set_tags,
	        .keyring_path = keyring_path,
	        .retag = retag,
	        .catalog = api_catalog_catalog,
	        .republish = api_catalog_republish,
	};
	struct agent agent, *a = &agent;
	struct agent_priv p;
	memset(a, 0, sizeof(*a));
	memset(&p, 0, sizeof(p));
	p.lock_fd = -1;
	a->calls = &calls;
	a->priv = &p;
	init_watchers(a, &p);

	char err[1024];
	rumor_config_init(&a->cfg);
	int prc = rumor_config_parse(&a->cfg, argc, argv, err, sizeof(err));
	if (prc != 0) { /* 1: -help or -version answered; <0: bad flags */
		if (prc < 0)
			fprintf(stderr, "==> %s\n", err);
		rumor_config_free(&a->cfg);
		return prc < 0 ? 1 : 0;
	}
	int rc = 1;
	if (start_logging(a) == 0 && start_runtime(a) == 0 && start_kv(a) == 0 &&
	    start_gossip(a) == 0 && start_services(a) == 0) {
		start_running(a);
		a->exit_code = 0;
		ev_run(a->loop, 0);
		rc = a->exit_code;
	}
	agent_stop(a);
	return rc;
}
