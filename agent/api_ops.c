/*
 * agent/api_ops.c — see api_ops.h.
 */
#include "agent/api_ops.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/env.h"
#include "agent/api_reply.h"
#include "agent/http/http.h"
#include "lib/log.h"
#include "agent/metrics.h"
#include "gossip/keyring.h"
#include "kv/kv.h"
#include "gossip/transport.h"

#define LAG_INTERVAL_S 10.0 /* a wake-up of its own: rarely */

struct monitor {
	struct api_ops *ops;
	struct http_conn *c;
	struct monitor *prev, *next;
	bool json;
	uint64_t dropped;
};

struct api_ops {
	struct agent *a;
	ev_prepare prep;
	ev_check check;
	ev_timer lag;
	double check_at; /* ev_time() when the iteration's callbacks began; 0 none */
	double lag_last; /* ev_time() of the last lag timer run */
	struct monitor *monitors;
};

/* ------------------------------------------------------------ collector */

static double rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	unsigned long size = 0, res = 0;
	int n = fscanf(f, "%lu %lu", &size, &res);
	fclose(f);
	if (n != 2)
		return 0;
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static void collect(void *ud)
{
	struct api_ops *o = ud;
	struct agent *a = o->a;
	if (a->gossip == NULL)
		return;
	struct swim *s = gossip_transport_swim(a->gossip);
	double by_state[4] = {0};
	for (size_t i = 0; i < swim_member_count(s); i++) {
		const struct swim_member *m = swim_member_at(s, i);
		switch (m->state) {
		case ML_STATE_ALIVE:
			by_state[0]++;
			break;
		case ML_STATE_SUSPECT:
			by_state[1]++;
			break;
		case ML_STATE_DEAD:
			by_state[2]++;
			break;
		case ML_STATE_LEFT:
			by_state[3]++;
			break;
		}
	}
	metrics_set_gauge(METRIC_MEMBERS_ALIVE, by_state[0]);
	metrics_set_gauge(METRIC_MEMBERS_SUSPECT, by_state[1]);
	metrics_set_gauge(METRIC_MEMBERS_FAILED, by_state[2]);
	metrics_set_gauge(METRIC_MEMBERS_LEFT, by_state[3]);
	metrics_set_gauge(METRIC_HEALTH_SCORE, swim_health_score(s));

	const struct swim_stats *st = swim_stats(s);
#define COPY(id, field) metrics_set_counter(METRIC_##id, st->field, (double)st->field)
	COPY(PROBES, probes);
	COPY(PROBE_FAILURES, probe_failures);
	COPY(PROBES_INCONCLUSIVE, probes_inconclusive);
	COPY(LATE_WAKEUPS, late_wakeups);
	COPY(CPU_WAIT, cpu_wait_ms);
	COPY(DEATHS_DEFERRED, deaths_deferred);
	COPY(INDIRECT_PROBES, indirect_probes);
	COPY(TCP_PINGS, tcp_pings);
	COPY(SUSPICIONS, suspicions);
	COPY(REFUTATIONS, refutations);
	COPY(DEATHS, deaths_declared);
	COPY(PACKETS_SENT, packets_sent);
	COPY(PACKETS_COMPRESSED, packets_compressed);
	COPY(PACKETS_SPLIT, packets_split);
	COPY(PACKETS_RECV, packets_recv);
	COPY(BAD_PACKETS, bad_packets);
	COPY(PUSH_PULLS, push_pulls);
	COPY(BROADCASTS_CREDITED, broadcasts_credited);
	COPY(RUMORS_CREDITED, rumors_credited);
	COPY(MERGED_QUIETLY, merged_quietly);
	COPY(DIGESTS_SENT, digests_sent);
	COPY(DIGESTS_DIFFERED, digests_differed);
	COPY(REPAIRS, repairs);
	COPY(COORD_UPDATES, coord_updates);
	COPY(COORD_REJECTED, coord_rejected);
	COPY(COORD_BAD_PAYLOADS, coord_bad_payloads);
#undef COPY
	uint64_t dropped = swim_broadcast_queue_dropped(s);
	metrics_set_counter(METRIC_BCAST_DROPPED, dropped, (double)dropped);
	metrics_set_gauge(METRIC_BCAST_QUEUE, (double)swim_broadcast_queue_len(s));
	/* bytes: Count = packets, Sum = bytes, as go-metrics' IncrCounter(n) does */
	metrics_set_counter(METRIC_BYTES_SENT, st->packets_sent, (double)st->bytes_sent);
	metrics_set_counter(METRIC_BYTES_RECV, st->packets_recv, (double)st->bytes_recv);

	const struct gossip_transport_stats *ts = gossip_transport_stats(a->gossip);
	metrics_set_counter(METRIC_STREAMS_IN, ts->streams_in, (double)ts->streams_in);
	metrics_set_counter(METRIC_STREAMS_OUT, ts->streams_out, (double)ts->streams_out);
	metrics_set_counter(METRIC_STREAM_ERRORS, ts->stream_errors, (double)ts->stream_errors);
	metrics_set_counter(METRIC_STREAMS_REFUSED, ts->streams_refused,
	                    (double)ts->streams_refused);
	metrics_set_counter(METRIC_PUSH_PULLS_REFUSED, st->push_pulls_refused,
	                    (double)st->push_pulls_refused);
	metrics_set_counter(METRIC_PUSH_PULL_REPLIES_REUSED, st->replies_reused,
	                    (double)st->replies_reused);
	metrics_set_counter(METRIC_UDP_ERRORS, ts->udp_errors, (double)ts->udp_errors);
	metrics_set_counter(METRIC_UDP_HOLDS, ts->udp_holds, (double)ts->udp_holds);
	metrics_set_gauge(METRIC_UDP_HELD, (double)ts->udp_held);
	metrics_set_counter(METRIC_DECRYPT_FAILURES, ts->decrypt_failures,
	                    (double)ts->decrypt_failures);

	if (a->http != NULL) {
		struct http_server_stats hs;
		http_server_stats(a->http, &hs);
		metrics_set_counter(METRIC_HTTP_REFUSED_PER_CLIENT, hs.refused_per_client,
		                    (double)hs.refused_per_client);
		metrics_set_counter(METRIC_HTTP_REFUSED_MAX_CONNS, hs.refused_max_conns,
		                    (double)hs.refused_max_conns);
	}

	if (a->kv != NULL) {
		const struct kv_stats *ks = kv_stats(a->kv);
		metrics_set_gauge(METRIC_KV_KEYS, (double)ks->keys);
		metrics_set_gauge(METRIC_KV_TOMBSTONES, (double)ks->tombstones);
		metrics_set_gauge(METRIC_KV_WATCHES, (double)ks->watches);
#define KCOPY(id, field) metrics_set_counter(METRIC_##id, ks->field, (double)ks->field)
		KCOPY(KV_WRITES, writes);
		KCOPY(KV_COMMITS, commits);
		KCOPY(KV_COMMITS_UNSYNCED, commits_unsynced);
		KCOPY(KV_GOSSIP_OUT, gossip_out);
		KCOPY(KV_GOSSIP_IN, gossip_in);
		KCOPY(KV_GOSSIP_APPLIED, gossip_applied);
		KCOPY(KV_GOSSIP_ECHOES, gossip_echoes);
		KCOPY(KV_RELAYS_HELD, relays_held);
		KCOPY(KV_SYNCS_OK, syncs_ok);
		KCOPY(KV_SYNCS_FAILED, syncs_failed);
		KCOPY(KV_SYNC_IN, sync_records_in);
		KCOPY(KV_SYNC_OUT, sync_records_out);
		KCOPY(KV_SYNC_CHAINS, sync_chains);
		KCOPY(KV_SYNC_CHAINS_HELD, sync_chains_held);
		KCOPY(KV_SYNC_JOIN_ROUNDS_HELD, join_rounds_held);
		KCOPY(KV_SYNC_REFUSED_PLAIN, sync_refused_plain);
		KCOPY(KV_SYNC_REFUSED_DECRYPT, sync_refused_decrypt);
		KCOPY(KV_SYNC_REFUSED_SEALED, sync_refused_sealed);
		KCOPY(KV_SYNC_BUDGET_CLOSED, sync_budget_closed);
		KCOPY(KV_VERSIONS_AHEAD, versions_ahead);
		KCOPY(KV_STORE_BAD_READS, store_bad_reads);
		KCOPY(KV_COMMIT_FAILURES, commit_failures);
		KCOPY(KV_CHECKPOINT_FAILURES, checkpoint_failures);
		metrics_set_gauge(METRIC_KV_STORE_BAD_RECORDS, (double)ks->store_bad_records);
		metrics_set_gauge(METRIC_KV_WAL_DROPPED, (double)ks->wal_dropped_records);
		metrics_set_gauge(METRIC_KV_STORE_FAILING, ks->store_failing ? 1 : 0);
#undef KCOPY
	}
	metrics_set_gauge(METRIC_KEYRING_KEYS, a->keyring ? (double)keyring_count(a->keyring) : 0);
	metrics_set_gauge(METRIC_RSS, rss_bytes());
	metrics_set_gauge(METRIC_UPTIME, (double)(gossip_now_ms() - a->start_ms) / 1000.0);
}

/* --------------------------------------------------------- loop latency */

static void check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct api_ops *o = w->data;
	o->check_at = ev_time();
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct api_ops *o = w->data;
	if (o->check_at > 0) {
		metrics_sample(METRIC_LOOP_BUSY, (ev_time() - o->check_at) * 1000.0);
		o->check_at = 0;
	}
}

static void lag_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct api_ops *o = w->data;
	double now = ev_time();
	if (o->lag_last > 0) {
		double late = (now - o->lag_last - LAG_INTERVAL_S) * 1000.0;
		metrics_sample(METRIC_LOOP_LAG, late > 0 ? late : 0);
	}
	o->lag_last = now;
}

static void on_response(void *ud, int status, double elapsed_ms)
{
	char code[8];
	snprintf(code, sizeof(code), "%d", status);
	metrics_inc_label(METRIC_HTTP_REQUESTS, code);
	metrics_sample(METRIC_HTTP_LATENCY, elapsed_ms);
}

/* -------------------------------------------------------------- monitor */

static void monitor_free(struct monitor *m)
{
	struct api_ops *o = m->ops;
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		o->monitors = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	free(m);
}

static void monitor_sink(void *ud, const struct log_record *r)
{
	struct monitor *m = ud;
	char line[4200];
	if (m->dropped > 0 && http_stream_pending(m->c) == 0) {
		int n = snprintf(line, sizeof(line),
		                 "%s [WARN]  monitor: dropped %llu log lines "
		                 "(the client read too slowly)\n",
		                 r->timestamp, (unsigned long long)m->dropped);
		if (http_stream_write(m->c, line, (size_t)n) == 0)
			m->dropped = 0;
	}
	size_t n = log_format(line, sizeof(line), r, m->json);
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	if (http_stream_write(m->c, line, n) < 0)
		m->dropped++;
}

static void monitor_closed(struct http_conn *c, void *ud)
{
	struct monitor *m = ud;
	log_unsubscribe(monitor_sink, m);
	monitor_free(m);
}

void api_ops_monitor(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest)
{
	struct api_ops *o = a->ops;
	const char *lv = http_query_get(req, "loglevel");
	int level = LOG_INFO;
	if (lv != NULL && lv[0] != '\0') {
		level = log_level_parse(lv);
		if (level < 0) {
			char msg[200];
			snprintf(msg, sizeof(msg),
			         "Unknown log level: %.60s (use trace, debug, info, warn or err)",
			         lv);
			api_reply_text(c, 400, msg);
			return;
		}
	}
	if (o == NULL) {
		api_reply_text(c, 503, "monitor is not available while the agent starts or stops");
		return;
	}
	struct monitor *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		api_reply_text(c, 500, "out of memory");
		return;
	}
	const char *js = http_query_get(req, "logjson");
	m->json = js != NULL && strcmp(js, "false") != 0 && strcmp(js, "0") != 0;
	m->ops = o;
	m->c = c;
	if (log_subscribe(monitor_sink, m, (enum log_level)level) < 0) {
		free(m);
		api_reply_text(c, 503, "too many monitors are open; close one and retry");
		return;
	}
	if (http_stream_start(c, 200, "text/plain; charset=utf-8") < 0) {
		log_unsubscribe(monitor_sink, m);
		free(m);
		api_reply_text(c, 500, "cannot start the stream");
		return;
	}
	/* the last 512 lines first, as Consul and Serf do, so an idle agent
	 * does not look dead; nothing can be logged between this and the live
	 * lines (one thread), so none is lost or shown twice */
	log_replay(monitor_sink, m, (enum log_level)level);
	m->next = o->monitors;
	if (o->monitors != NULL)
		o->monitors->prev = m;
	o->monitors = m;
	http_conn_on_close(c, monitor_closed, m);
}

/* -------------------------------------------------------------- metrics */

void api_ops_metrics(struct agent *a, struct http_conn *c, const struct http_request *req,
                     const char *rest)
{
	metrics_collect();
	const char *fmt = http_query_get(req, "format");
	if (fmt != NULL && strcmp(fmt, "prometheus") == 0) {
		char *t = metrics_render_prometheus();
		if (t == NULL) {
			api_reply_text(c, 500, "out of memory");
			return;
		}
		http_respond(c, 200, METRICS_PROMETHEUS_TYPE, t, strlen(t));
		free(t);
		return;
	}
	if (fmt != NULL && fmt[0] != '\0') {
		api_reply_text(c, 400,
		               "Unknown metrics format: use ?format=prometheus, or none for JSON");
		return;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	int pretty = http_query_get(req, "pretty") != NULL;
	char *s = metrics_render_json((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, pretty);
	if (s == NULL) {
		api_reply_text(c, 500, "out of memory");
		return;
	}
	size_t len = strlen(s);
	http_respond(c, 200, "application/json", s, len);
	free(s);
}

/* ------------------------------------------------------------ lifecycle */

/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram to the unix socket in $NOTIFY_SOCKET ('@' = abstract). Quietly
 * does nothing outside a Type=notify service. */
static void sd_notify_text(const char *text)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || (path[0] != '/' && path[0] != '@') || path[1] == '\0')
		return;
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sun, sl) < 0)
		log_debug("agent: sd_notify %s failed: %s", text, strerror(errno));
	close(fd);
}

int api_ops_start(struct agent *a, char *err, size_t errlen)
{
	struct api_ops *o = calloc(1, sizeof(*o));
	if (o == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	o->a = a;
	if (metrics_collector_add(collect, o) < 0) {
		snprintf(err, errlen, "metrics: too many collectors");
		free(o);
		return -1;
	}
	ev_check_init(&o->check, check_cb);
	ev_set_priority(&o->check, EV_MAXPRI);
	ev_prepare_init(&o->prep, prepare_cb);
	ev_set_priority(&o->prep, EV_MINPRI);
	ev_timer_init(&o->lag, lag_cb, LAG_INTERVAL_S, LAG_INTERVAL_S);
	o->check.data = o->prep.data = o->lag.data = o;
	ev_check_start(a->loop, &o->check);
	ev_prepare_start(a->loop, &o->prep);
	ev_timer_start(a->loop, &o->lag);
	ev_unref(a->loop); /* none of these keeps the loop alive */
	ev_unref(a->loop);
	ev_unref(a->loop);
	if (a->http != NULL)
		http_server_on_response(a->http, on_response, o);
	a->ops = o;
	/* listeners are up: systemd may order dependent units after us now */
	sd_notify_text("READY=1\nSTATUS=rumor agent running");
	return 0;
}

void api_ops_stop(struct agent *a)
{
	struct api_ops *o = a->ops;
	if (o == NULL)
		return;
	sd_notify_text("STOPPING=1");
	while (o->monitors != NULL) {
		struct monitor *m = o->monitors;
		log_unsubscribe(monitor_sink, m);
		http_conn_on_close(m->c, NULL, NULL);
		http_stream_end(m->c);
		monitor_free(m);
	}
	if (a->http != NULL)
		http_server_on_response(a->http, NULL, NULL);
	metrics_collector_remove(collect, o);
	ev_ref(a->loop);
	ev_ref(a->loop);
	ev_ref(a->loop);
	ev_check_stop(a->loop, &o->check);
	ev_prepare_stop(a->loop, &o->prep);
	ev_timer_stop(a->loop, &o->lag);
	a->ops = NULL;
	free(o);
}
