/*
 * agent/cli/cli_ops.c — see cli_ops.h.
 */
#define _GNU_SOURCE
#include "agent/cli/cli_ops.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "lib/net.h"

/* ------------------------------------------------------------ streaming */

/*
 * The deadline clock is monotonic, so setting the system time while waiting for
 * the agent neither cuts the wait short nor makes it endless.
 */
static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects to the agent's HTTP address, a host name or an IP: the name is
 * resolved here (getaddrinfo; lib/net.h parses numeric addresses only),
 * each address is tried through net_tcp_connect, and the handshake is
 * waited on for timeout_ms. The fd, or -1 with the message in err. */
static int dial(const char *addr, int timeout_ms, char *err, size_t errlen)
{
	char host[256], port[16];
	if (httpc_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "Error: invalid HTTP address \"%s\" (want host:port)", addr);
		return -1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "Error connecting to agent at %s: %s", addr,
		         gai_strerror(gai));
		return -1;
	}
	int fd = -1, e = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		if (ai->ai_addrlen > sizeof(ss)) {
			e = EAFNOSUPPORT;
			continue;
		}
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		fd = net_tcp_connect(&ss, ai->ai_addrlen, NULL);
		if (fd < 0) {
			e = -fd;
			fd = -1;
			continue;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (poll(&p, 1, timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
			e = soerr ? soerr : ETIMEDOUT;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		char why[128];
		snprintf(why, sizeof(why), "%s", strerror(e));
		if (why[0] >= 'A' && why[0] <= 'Z')
			why[0] = (char)(why[0] - 'A' + 'a'); /* Go's wording, as api_call */
		snprintf(err, errlen, "Error connecting to agent at %s: %s", addr, why);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n, long long deadline)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			long long left = deadline - mono_ms();
			if (left <= 0 || poll(&pf, 1, (int)left) < 0)
				return -1;
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * A stream (monitor) has no end we can wait for, so httpc's whole-response
 * model does not fit: only the connect and the headers are under the deadline,
 * the body is copied out as it comes until the agent closes. HTTP/1.0 keeps the
 * body unchunked. A non-200 answer is read whole and returned as the error.
 */
int cli_ops_stream(const char *addr, const char *path_and_query, const char *token, int timeout_ms,
                   FILE *out, char *err, size_t errlen)
{
	if (timeout_ms <= 0)
		timeout_ms = HTTPC_DEFAULT_TIMEOUT_MS;
	if (token != NULL && strpbrk(token, "\r\n") != NULL) {
		snprintf(err, errlen, "Error: invalid -token value");
		return -1;
	}
	if (strpbrk(path_and_query, "\r\n ") != NULL) {
		snprintf(err, errlen, "Error: invalid request path");
		return -1;
	}
	long long deadline = mono_ms() + timeout_ms;
	int fd = dial(addr, timeout_ms, err, errlen);
	if (fd < 0)
		return -1;
	char req[2048];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n",
	                 path_and_query, addr, token && *token ? "X-Consul-Token: " : "",
	                 token && *token ? token : "", token && *token ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(req) || send_all(fd, req, (size_t)n, deadline) < 0) {
		snprintf(err, errlen, "Error connecting to agent at %s: cannot send the request",
		         addr);
		close(fd);
		return -1;
	}
	/* headers: bounded by the deadline; then the body, unbounded */
	char hbuf[8192];
	size_t hlen = 0;
	char *body = NULL;
	int status = 0;
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int to = -1;
		if (body == NULL) {
			long long left = deadline - mono_ms();
			if (left <= 0) {
				snprintf(err, errlen, "Error: agent at %s did not answer in %d ms",
				         addr, timeout_ms);
				close(fd);
				return -1;
			}
			to = (int)left;
		}
		int pr = poll(&pf, 1, to);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		char buf[4096];
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			close(fd);
			if (body == NULL) {
				snprintf(err, errlen,
				         "Error: agent at %s closed the connection before "
				         "answering",
				         addr);
				return -1;
			}
			if (status != 200) {
				size_t bl = strlen(body);
				while (bl > 0 && (body[bl - 1] == '\n' || body[bl - 1] == '\r'))
					body[--bl] = '\0';
				snprintf(err, errlen, "Unexpected response code: %d (%s)", status,
				         body);
				return -1;
			}
			return 0;
		}
		if (body != NULL && status == 200) {
			fwrite(buf, 1, (size_t)r, out);
			fflush(out);
			continue;
		}
		/* keep headers (and an error body) in hbuf, bounded */
		size_t take =
		        (size_t)r < sizeof(hbuf) - 1 - hlen ? (size_t)r : sizeof(hbuf) - 1 - hlen;
		memcpy(hbuf + hlen, buf, take);
		hlen += take;
		hbuf[hlen] = '\0';
		if (body != NULL)
			continue;
		char *eoh = strstr(hbuf, "\r\n\r\n");
		if (eoh == NULL) {
			if (hlen == sizeof(hbuf) - 1) {
				snprintf(err, errlen, "Error: agent at %s sent oversized headers",
				         addr);
				close(fd);
				return -1;
			}
			continue;
		}
		if (sscanf(hbuf, "HTTP/%*d.%*d %d", &status) != 1) {
			snprintf(err, errlen, "Error: agent at %s sent a malformed status line",
			         addr);
			close(fd);
			return -1;
		}
		body = eoh + 4;
		if (status == 200) {
			fwrite(body, 1, strlen(body), out);
			fflush(out);
		}
	}
}

/* ---------------------------------------------------------------- info */

struct kv {
	char key[64];
	char val[256];
};

struct section {
	const char *name;
	struct kv rows[40];
	int n;
};

static void put(struct section *s, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void put(struct section *s, const char *key, const char *fmt, ...)
{
	if (s->n == (int)(sizeof(s->rows) / sizeof(s->rows[0])))
		return;
	struct kv *r = &s->rows[s->n++];
	snprintf(r->key, sizeof(r->key), "%s", key);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->val, sizeof(r->val), fmt, ap);
	va_end(ap);
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

static const char *jstr(const json_t *o, const char *k1, const char *k2)
{
	const json_t *v = json_object_get(o, k1);
	if (k2 != NULL)
		v = json_object_get(v, k2);
	const char *s = json_string_value(v);
	return s ? s : "";
}

/* The metric `name` (Consul dotted, with "rumor." prefix) in array `kind`
 * of the metrics JSON, optionally with label k=v; field "Value" or "Sum". */
static int metric(const json_t *m, const char *kind, const char *name, const char *lk,
                  const char *lv, const char *field, double *out)
{
	const json_t *arr = json_object_get(m, kind);
	size_t i;
	const json_t *e;
	json_array_foreach(arr, i, e)
	{
		if (strcmp(jstr(e, "Name", NULL), name) != 0)
			continue;
		if (lk != NULL && strcmp(jstr(e, "Labels", lk), lv) != 0)
			continue;
		const json_t *v = json_object_get(e, field);
		if (!json_is_number(v))
			return -1;
		*out = json_number_value(v);
		return 0;
	}
	return -1;
}

static void put_metric(struct section *s, const char *key, const json_t *m, const char *kind,
                       const char *name, const char *lk, const char *lv, const char *field)
{
	double v;
	if (metric(m, kind, name, lk, lv, field, &v) == 0) {
		if (v == (double)(long long)v)
			put(s, key, "%lld", (long long)v);
		else
			put(s, key, "%.3f", v);
	}
}

/* Every entry of the agent's Stats.<name> object (the server tier's
 * "consul" and "raft": strings, as Consul's) as rows of s. */
static void put_stats(struct section *s, const json_t *self, const char *name)
{
	const json_t *o = json_object_get(json_object_get(self, "Stats"), name), *v;
	const char *k;
	json_object_foreach((json_t *)o, k, v)
	{
		if (json_is_string(v))
			put(s, k, "%s", json_string_value(v));
		else if (json_is_integer(v))
			put(s, k, "%lld", (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			put(s, k, "%s", json_is_true(v) ? "true" : "false");
	}
}

#define INFO_SECTIONS 6

char *cli_ops_info_text(const json_t *self, const json_t *metrics, long long services,
                        long long checks)
{
	struct section *secs = calloc(INFO_SECTIONS, sizeof(*secs));
	if (secs == NULL)
		return NULL;
	/* sorted by name, as `consul info` prints them */
	struct section *agent = &secs[0], *build = &secs[1], *consul = &secs[2], *raft = &secs[3],
	               *runtime = &secs[4], *lan = &secs[5];
	agent->name = "agent";
	build->name = "build";
	consul->name = "consul";
	raft->name = "raft";
	runtime->name = "runtime";
	lan->name = "serf_lan";

	put(agent, "node_name", "%s", jstr(self, "Config", "NodeName"));
	put(agent, "node_id", "%s", jstr(self, "Config", "NodeID"));
	put(agent, "datacenter", "%s", jstr(self, "Config", "Datacenter"));
	put(agent, "server", "%s",
	    json_is_true(json_object_get(json_object_get(self, "Config"), "Server")) ? "true"
	                                                                             : "false");
	put_stats(consul, self, "consul");
	put_stats(raft, self, "raft");
	if (services >= 0)
		put(agent, "services", "%lld", services);
	if (checks >= 0)
		put(agent, "checks", "%lld", checks);
	const json_t *dbg = json_object_get(self, "DebugConfig");
	if (dbg != NULL) {
		put(agent, "data_dir", "%s", jstr(dbg, "DataDir", NULL));
		put(agent, "gossip_profile", "%s", jstr(dbg, "GossipProfile", NULL));
		put(agent, "log_level", "%s", jstr(dbg, "LogLevel", NULL));
	}

	put(build, "prerelease", "%s", "");
	put(build, "revision", "%s", jstr(self, "Config", "Revision"));
	put(build, "version", "%s", jstr(self, "Config", "Version"));

	put(runtime, "os", "linux");
	put_metric(runtime, "resident_memory_bytes", metrics, "Gauges",
	           "rumor.runtime.resident_memory_bytes", NULL, NULL, "Value");
	put_metric(runtime, "uptime_seconds", metrics, "Gauges", "rumor.runtime.uptime_seconds",
	           NULL, NULL, "Value");
	put_metric(runtime, "loop_lag_ms_max", metrics, "Samples", "rumor.runtime.loop.lag_ms",
	           NULL, NULL, "Max");
	put_metric(runtime, "loop_busy_ms_mean", metrics, "Samples", "rumor.runtime.loop.busy_ms",
	           NULL, NULL, "Mean");

	double alive = 0, suspect = 0, failed = 0, left = 0, keys = -1;
	metric(metrics, "Gauges", "rumor.serf.members", "status", "alive", "Value", &alive);
	metric(metrics, "Gauges", "rumor.serf.members", "status", "suspect", "Value", &suspect);
	metric(metrics, "Gauges", "rumor.serf.members", "status", "failed", "Value", &failed);
	metric(metrics, "Gauges", "rumor.serf.members", "status", "left", "Value", &left);
	put(lan, "members", "%.0f", alive + suspect + failed + left);
	put(lan, "alive", "%.0f", alive);
	put(lan, "suspect", "%.0f", suspect);
	put(lan, "failed", "%.0f", failed);
	put(lan, "left", "%.0f", left);
	if (metric(metrics, "Gauges", "rumor.memberlist.keyring.keys", NULL, NULL, "Value",
	           &keys) == 0)
		put(lan, "encrypted", "%s", keys > 0 ? "true" : "false");
	put_metric(lan, "health_score", metrics, "Gauges", "rumor.memberlist.health.score", NULL,
	           NULL, "Value");
	put_metric(lan, "event_queue", metrics, "Gauges", "rumor.memberlist.queue.broadcasts", NULL,
	           NULL, "Value");
	static const struct {
		const char *key, *name;
	} counters[] = {
	        {"probes", "rumor.memberlist.probe"},
	        {"probe_failures", "rumor.memberlist.probe.failed"},
	        {"suspicions", "rumor.memberlist.msg.suspect"},
	        {"refutations", "rumor.memberlist.msg.refute"},
	        {"deaths_declared", "rumor.memberlist.msg.dead"},
	        {"packets_sent", "rumor.memberlist.packets.sent"},
	        {"packets_received", "rumor.memberlist.packets.received"},
	        {"bytes_sent", "rumor.memberlist.bytes.sent"},
	        {"bytes_received", "rumor.memberlist.bytes.received"},
	        {"push_pulls", "rumor.memberlist.push_pull"},
	        {"decrypt_failures", "rumor.memberlist.decrypt_failures"},
	};
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		put_metric(lan, counters[i].key, metrics, "Counters", counters[i].name, NULL, NULL,
		           "Sum");

	size_t cap = 1, len = 0;
	for (int s = 0; s < INFO_SECTIONS; s++)
		cap += strlen(secs[s].name) + 3 + (size_t)secs[s].n * (64 + 256 + 6);
	char *out = malloc(cap);
	if (out == NULL) {
		free(secs);
		return NULL;
	}
	out[0] = '\0';
	for (int s = 0; s < INFO_SECTIONS; s++) {
		if (secs[s].n == 0 && (&secs[s] == consul || &secs[s] == raft))
			continue; /* an agent without them (older, or no raft on a client) */
		qsort(secs[s].rows, (size_t)secs[s].n, sizeof(struct kv), cmp_kv);
		len += (size_t)snprintf(out + len, cap - len, "%s:\n", secs[s].name);
		for (int i = 0; i < secs[s].n; i++)
			len += (size_t)snprintf(out + len, cap - len, "\t%s = %s\n",
			                        secs[s].rows[i].key, secs[s].rows[i].val);
	}
	free(secs);
	return out;
}

/* ------------------------------------------------------------- commands */

int cli_cmd_monitor(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r, json = 0;
	const char *level = "info";
	struct cli_flag flags[] = {
	        {"log-level", CLI_FLAG_STRING, &level, "<level>",
	         "Lowest level of the lines to stream: trace, debug, info, warn "
	         "or err. Independent of the agent's own -log-level. Default: "
	         "info."},
	        {"log-json", CLI_FLAG_BOOL, &json, NULL, "Stream the lines as JSON objects."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char msg[CLI_ERRLEN], path[256], *lv;
	char **args = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0) {
		r = cli_usage_error(ctx, "The monitor command takes no arguments.");
		goto out;
	}
	lv = cli_escape_segment(level);
	if (lv == NULL) {
		r = 1;
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/agent/monitor?loglevel=%s%s", lv, json ? "&logjson" : "");
	free(lv);
	if (cli_ops_stream(ctx->addr, path, ctx->token, 0, ctx->out, msg, sizeof(msg)) != 0) {
		fprintf(ctx->err, "%s\n", msg);
		r = 1;
		goto out;
	}
	fprintf(ctx->err, "==> Remote side ended the monitor! This usually "
	                  "means that the\n    remote side has exited or "
	                  "crashed.\n");
	r = 0;
out:
	free(args);
	return r;
}

/* Number of entries in the JSON object at path, or -1 if unavailable. */
static long long count_entries(struct cli_ctx *ctx, const char *path)
{
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	long long n = -1;
	json_t *j;

	if (cli_api_call(ctx, "GET", path, NULL, 0, 0, &resp, msg, sizeof(msg)) == CLI_API_OK) {
		j = json_loadb(resp.body, resp.body_len, 0, NULL);
		if (json_is_object(j))
			n = (long long)json_object_size(j);
		json_decref(j);
	}
	httpc_response_free(&resp);
	return n;
}

int cli_cmd_info(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	struct cli_flag flags[] = {CLI_HTTP_FLAGS(ctx)};
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char **args = NULL;
	json_t *self = NULL, *metrics = NULL;
	char *text = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0) {
		r = cli_usage_error(ctx, "The info command takes no arguments.");
		goto out;
	}
	if (cli_api_call(ctx, "GET", "/v1/agent/self", NULL, 0, 0, &resp, msg, sizeof(msg)) !=
	    CLI_API_OK) {
		fprintf(ctx->err, "Error querying agent: %s\n", msg);
		httpc_response_free(&resp);
		goto out;
	}
	self = json_loadb(resp.body, resp.body_len, 0, NULL);
	httpc_response_free(&resp);
	if (cli_api_call(ctx, "GET", "/v1/agent/metrics", NULL, 0, 0, &resp, msg, sizeof(msg)) !=
	    CLI_API_OK) {
		fprintf(ctx->err, "Error querying agent metrics: %s\n", msg);
		httpc_response_free(&resp);
		goto out;
	}
	metrics = json_loadb(resp.body, resp.body_len, 0, NULL);
	httpc_response_free(&resp);
	if (!json_is_object(self) || !json_is_object(metrics)) {
		fprintf(ctx->err,
		        "Error: the agent at %s sent JSON that is not "
		        "an object; is it a rumor agent?\n",
		        ctx->addr);
		goto out;
	}
	text = cli_ops_info_text(self, metrics, count_entries(ctx, "/v1/agent/services"),
	                         count_entries(ctx, "/v1/agent/checks"));
	if (text == NULL)
		goto out;
	fputs(text, ctx->out);
	r = 0;
out:
	free(text);
	json_decref(self);
	json_decref(metrics);
	free(args);
	return r;
}
