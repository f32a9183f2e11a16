/*
 * agent/cli/cli_lock.c — see cli_lock.h.
 *
 * One process, one loop, no threads: the HTTP calls are synchronous and
 * the monitoring read blocks at most MONITOR_WAIT, so the loop turns at
 * least that often to reap the child, renew the session and notice a
 * signal. The keys are Consul's: a lock is PREFIX/.lock held by the
 * session; a semaphore (-n > 1) is one contender key PREFIX/<session> per
 * process plus PREFIX/.lock holding {"Limit":N,"Holders":{...}}, changed
 * only with CAS, so `consul lock` and `rumor lock` on one prefix agree.
 */
#define _GNU_SOURCE
#include "agent/cli/cli_lock.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/cli/cmd.h"
#include "agent/cli/flags.h"
#include "agent/config.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

#define SESSION_TTL "15s"
#define RENEW_EVERY_MS 7500 /* half the TTL, as Consul's renewer */
#define MONITOR_WAIT "1s"
#define ACQUIRE_WAIT "2s"
#define RETRY_PAUSE_MS 500
#define CALL_TIMEOUT_MS 15000
#define KILL_GRACE_MS 5000
/* Consul's flags on the lock and semaphore keys, so tools tell them apart */
#define LOCK_FLAG "3304740253564472344"
#define SEM_FLAG "16210313421097356768"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

struct lk {
	struct cli_ctx *ctx;
	int limit;
	int monitor_retry;
	bool verbose;
	char sid[64];
	char *prefix_esc;     /* PREFIX, escaped for the path */
	char lock_path[4200]; /* /v1/kv/PREFIX/.lock */
	char sem_path[4200];  /* /v1/kv/PREFIX/<session> */
	uint64_t index;       /* X-Consul-Index of the last read */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* One call; 0 with *resp (free it), or -1 after printing why. status_ok:
 * a non-2xx answer is returned too (resp->status tells). */
static int call(struct lk *l, const char *method, const char *path, const char *body,
                struct httpc_response *resp, bool status_ok)
{
	char msg[CLI_ERRLEN];
	enum cli_api_result r = cli_api_call(l->ctx, method, path, body, body ? strlen(body) : 0,
	                                     CALL_TIMEOUT_MS, resp, msg, sizeof(msg));
	if (r == CLI_API_OK || (r == CLI_API_STATUS && status_ok))
		return 0;
	fprintf(l->ctx->err, "Error: %s %s: %s\n", method, path, msg);
	httpc_response_free(resp);
	return -1;
}

static bool body_true(const struct httpc_response *r)
{
	return r->status == 200 && r->body != NULL && strncmp(r->body, "true", 4) == 0;
}

static int session_create(struct lk *l, const char *name)
{
	json_t *b = json_pack("{s:s, s:s, s:s}", "Name", name, "TTL", SESSION_TTL, "Behavior",
	                      "release");
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	struct httpc_response r;
	int rc = call(l, "PUT", "/v1/session/create", body, &r, false);
	free(body);
	if (rc < 0)
		return -1;
	json_t *doc = json_loads(r.body, 0, NULL);
	const char *id = json_string_value(json_object_get(doc, "ID"));
	if (id != NULL)
		snprintf(l->sid, sizeof(l->sid), "%s", id);
	json_decref(doc);
	httpc_response_free(&r);
	if (l->sid[0] == '\0') {
		fprintf(l->ctx->err, "Error: the agent answered no session ID\n");
		return -1;
	}
	return 0;
}

/* 1 renewed, 0 the session is gone, -1 no answer. */
static int session_renew(struct lk *l)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/session/renew/%s", l->sid);
	struct httpc_response r;
	if (call(l, "PUT", path, NULL, &r, true) < 0)
		return -1;
	int st = r.status;
	httpc_response_free(&r);
	return st == 200 ? 1 : st == 404 ? 0 : -1;
}

static void session_destroy(struct lk *l)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/session/destroy/%s", l->sid);
	struct httpc_response r;
	if (call(l, "PUT", path, NULL, &r, true) == 0)
		httpc_response_free(&r);
}

/* GET path (blocking on l->index when wait != NULL): the JSON array, or
 * NULL for 404 (*gone set) or an error. */
static json_t *get_entries(struct lk *l, const char *path, const char *query, const char *wait,
                           bool *gone)
{
	char full[4400];
	if (wait != NULL && l->index > 0)
		snprintf(full, sizeof(full), "%s?index=%" PRIu64 "&wait=%s%s%s", path, l->index,
		         wait, query ? "&" : "", query ? query : "");
	else
		snprintf(full, sizeof(full), "%s%s%s", path, query ? "?" : "", query ? query : "");
	struct httpc_response r;
	*gone = false;
	if (call(l, "GET", full, NULL, &r, true) < 0)
		return NULL;
	const char *ix = httpc_response_header(&r, "X-Consul-Index");
	if (ix != NULL) /* the index of what this GET read: the next one blocks on it */
		l->index = strtoull(ix, NULL, 10);
	json_t *doc = NULL;
	if (r.status == 404)
		*gone = true;
	else if (r.status == 200) /* Flags may pass INT64_MAX: numbers as doubles (indexes
	                           * stay below 2^53) */
		doc = json_loads(r.body, JSON_DECODE_INT_AS_REAL, NULL);
	httpc_response_free(&r);
	return doc;
}

static const char *entry_session(json_t *e)
{
	const char *s = json_string_value(json_object_get(e, "Session"));
	return s ? s : "";
}

/* ---------------------------------------------------------- the lock */

/* 1 acquired, 0 not (someone holds it, or the lock delay), -1 error. */
static int lock_try(struct lk *l)
{
	char path[4400];
	snprintf(path, sizeof(path), "%s?acquire=%s&flags=%s", l->lock_path, l->sid, LOCK_FLAG);
	struct httpc_response r;
	if (call(l, "PUT", path, "", &r, false) < 0)
		return -1;
	int got = body_true(&r);
	httpc_response_free(&r);
	return got;
}

/* Still ours? 1 yes, 0 no, -1 no answer. */
static int lock_held(struct lk *l)
{
	bool gone;
	json_t *doc = get_entries(l, l->lock_path, NULL, MONITOR_WAIT, &gone);
	if (doc == NULL)
		return gone ? 0 : -1;
	int held = strcmp(entry_session(json_array_get(doc, 0)), l->sid) == 0;
	json_decref(doc);
	return held;
}

static void lock_release(struct lk *l)
{
	char path[4400];
	snprintf(path, sizeof(path), "%s?release=%s&flags=%s", l->lock_path, l->sid, LOCK_FLAG);
	struct httpc_response r;
	if (call(l, "PUT", path, "", &r, false) == 0)
		httpc_response_free(&r);
}

/* ----------------------------------------------------- the semaphore */

struct sem_view {
	json_t *holders; /* session -> true, live ones only */
	uint64_t lock_index;
	int limit;
};

/* Read PREFIX/ (blocking when wait) into v; 0 or -1. */
static int sem_read(struct lk *l, const char *wait, struct sem_view *v)
{
	char path[4400];
	snprintf(path, sizeof(path), "/v1/kv/%s/", l->prefix_esc);
	bool gone;
	json_t *doc = get_entries(l, path, "recurse", wait, &gone);
	if (doc == NULL && !gone)
		return -1;
	json_t *live = json_object(), *lock = NULL;
	size_t i;
	json_t *e;
	json_array_foreach(doc, i, e)
	{
		const char *key = json_string_value(json_object_get(e, "Key"));
		const char *slash = key ? strrchr(key, '/') : NULL;
		if (slash != NULL && strcmp(slash + 1, ".lock") == 0)
			lock = e;
		else if (*entry_session(e) != '\0')
			json_object_set_new(live, entry_session(e), json_true());
	}
	v->holders = json_object();
	v->lock_index = 0;
	v->limit = 0;
	if (lock != NULL) {
		v->lock_index = (uint64_t)json_number_value(json_object_get(lock, "ModifyIndex"));
		const char *b64 = json_string_value(json_object_get(lock, "Value"));
		size_t bl = 0;
		uint8_t buf[8192];
		json_t *sem = NULL;
		if (b64 != NULL &&
		    sodium_base642bin(buf, sizeof(buf) - 1, b64, strlen(b64), NULL, &bl, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) == 0)
			sem = json_loadb((const char *)buf, bl, 0, NULL);
		v->limit = (int)json_integer_value(json_object_get(sem, "Limit"));
		const char *sid;
		json_t *x;
		json_object_foreach(json_object_get(sem, "Holders"), sid, x)
		{
			if (json_object_get(live, sid) != NULL) /* a dead holder's slot is free */
				json_object_set_new(v->holders, sid, json_true());
		}
		json_decref(sem);
	}
	json_decref(live);
	json_decref(doc);
	return 0;
}

/* Write the holders with CAS on the lock key: 1 written, 0 lost the race. */
static int sem_write(struct lk *l, struct sem_view *v)
{
	json_t *sem = json_pack("{s:i, s:O}", "Limit", l->limit, "Holders", v->holders);
	char *body = json_dumps(sem, JSON_COMPACT);
	json_decref(sem);
	char path[4400];
	snprintf(path, sizeof(path), "%s?cas=%" PRIu64 "&flags=%s", l->lock_path, v->lock_index,
	         SEM_FLAG);
	struct httpc_response r;
	int rc = call(l, "PUT", path, body, &r, false);
	free(body);
	if (rc < 0)
		return -1;
	rc = body_true(&r);
	httpc_response_free(&r);
	return rc;
}

/* 1 a slot is ours, 0 not yet, -1 error (a limit conflict included). */
static int sem_try(struct lk *l, bool block)
{
	struct sem_view v;
	if (sem_read(l, block ? ACQUIRE_WAIT : NULL, &v) < 0)
		return -1;
	int rc = 0;
	if (v.limit != 0 && v.limit != l->limit) {
		fprintf(l->ctx->err, "Error: semaphore limit conflict (lock: %d, local: %d)\n",
		        v.limit, l->limit);
		rc = -1;
	} else if ((int)json_object_size(v.holders) < l->limit) {
		json_object_set_new(v.holders, l->sid, json_true());
		rc = sem_write(l, &v);
	}
	json_decref(v.holders);
	return rc;
}

static int sem_held(struct lk *l)
{
	struct sem_view v;
	if (sem_read(l, MONITOR_WAIT, &v) < 0)
		return -1;
	int held = json_object_get(v.holders, l->sid) != NULL;
	json_decref(v.holders);
	return held;
}

static void sem_release(struct lk *l)
{
	for (int i = 0; i < 10; i++) {
		struct sem_view v;
		if (sem_read(l, NULL, &v) < 0)
			break;
		int rc = 1;
		if (json_object_get(v.holders, l->sid) != NULL) {
			json_object_del(v.holders, l->sid);
			rc = sem_write(l, &v);
		}
		json_decref(v.holders);
		if (rc != 0)
			break;
	}
	struct httpc_response r;
	if (call(l, "DELETE", l->sem_path, NULL, &r, true) == 0)
		httpc_response_free(&r);
}

/* ---------------------------------------------------------- the child */

static pid_t child_start(char **argv, int argc, bool shell)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (shell) {
		size_t n = 1;
		for (int i = 0; i < argc; i++)
			n += strlen(argv[i]) + 1;
		char *cmd = xcalloc(1, n);
		for (int i = 0; i < argc; i++) {
			strcat(cmd, argv[i]);
			if (i + 1 < argc)
				strcat(cmd, " ");
		}
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	} else {
		execvp(argv[0], argv);
	}
	fprintf(stderr, "Error: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Stop the child: SIGTERM, then SIGKILL after the grace. Its status. */
static int child_stop(pid_t pid)
{
	int st = 0;
	kill(pid, SIGTERM);
	int64_t until = mono_ms() + KILL_GRACE_MS;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (mono_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		pause_ms(50);
	}
	return st;
}

/* ------------------------------------------------------------ the run */

struct opts {
	const char *n, *timeout, *retry, *name;
	int shell, child_exit, verbose;
};

/* Wait for the lock or a slot: 1 ours, 0 timed out or stopped, -1 error. */
static int acquire(struct lk *l, int64_t timeout_ms)
{
	int64_t until = timeout_ms > 0 ? mono_ms() + timeout_ms : INT64_MAX;
	if (l->limit > 1) {
		char path[4400];
		snprintf(path, sizeof(path), "%s?acquire=%s&flags=%s", l->sem_path, l->sid,
		         SEM_FLAG);
		struct httpc_response r;
		if (call(l, "PUT", path, "", &r, false) < 0)
			return -1;
		int ok = body_true(&r);
		httpc_response_free(&r);
		if (!ok) {
			fprintf(l->ctx->err, "Error: cannot create the contender key\n");
			return -1;
		}
	}
	int64_t next_renew = mono_ms() + RENEW_EVERY_MS;
	for (bool block = false; !stop_signal && mono_ms() < until; block = true) {
		int got = l->limit > 1 ? sem_try(l, block) : lock_try(l);
		if (got != 0)
			return got;
		if (l->limit == 1) { /* wait for a change, then a short pause (lock delay) */
			bool gone;
			json_decref(get_entries(l, l->lock_path, NULL, ACQUIRE_WAIT, &gone));
			pause_ms(RETRY_PAUSE_MS);
		}
		if (mono_ms() >= next_renew) {
			if (session_renew(l) == 0) {
				fprintf(l->ctx->err,
				        "Error: the session was invalidated while waiting\n");
				return -1;
			}
			next_renew = mono_ms() + RENEW_EVERY_MS;
		}
	}
	return 0;
}

/* Run the child while the lock holds; its wait status, or -1 if the lock
 * was lost (the child was stopped). */
static int hold(struct lk *l, pid_t pid)
{
	int64_t next_renew = mono_ms() + RENEW_EVERY_MS;
	int failures = 0, st = 0;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return st;
		if (stop_signal) {
			child_stop(pid);
			return -2;
		}
		if (mono_ms() >= next_renew) {
			if (session_renew(l) == 0) {
				fprintf(l->ctx->err, "Lock lost: the session was invalidated\n");
				child_stop(pid);
				return -1;
			}
			next_renew = mono_ms() + RENEW_EVERY_MS;
		}
		int held = l->limit > 1 ? sem_held(l) : lock_held(l);
		failures = held < 0 ? failures + 1 : 0;
		if (held == 0 || failures > l->monitor_retry) {
			fprintf(l->ctx->err, "Lock lost%s\n",
			        held == 0 ? "" : ": the agent stopped answering");
			child_stop(pid);
			return -1;
		}
		if (held < 0)
			pause_ms(1000);
	}
}

static int run(struct lk *l, const struct opts *o, char **child, int nchild)
{
	int64_t timeout_ms = 0;
	if (o->timeout && rumor_parse_duration(o->timeout, &timeout_ms) < 0)
		return cli_usage_error(l->ctx, "Error: invalid -timeout");
	char name[300];
	snprintf(name, sizeof(name), "%s", o->name ? o->name : "");
	if (name[0] == '\0')
		snprintf(name, sizeof(name), "rumor lock (%d) on %s", (int)getpid(), l->prefix_esc);
	if (session_create(l, name) < 0)
		return 1;
	snprintf(l->sem_path, sizeof(l->sem_path), "/v1/kv/%s/%s", l->prefix_esc, l->sid);
	int got = acquire(l, timeout_ms);
	int rc = 1;
	if (got == 1) {
		if (l->verbose)
			fprintf(l->ctx->err, "Lock acquired (session %s)\n", l->sid);
		pid_t pid = child_start(child, nchild, o->shell);
		int st = pid < 0 ? -1 : hold(l, pid);
		rc = st == -1 ? 1 : st == -2 ? 1 : 0;
		if (st >= 0 && o->child_exit && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
			rc = 2;
	} else if (got == 0 && !stop_signal) {
		fprintf(l->ctx->err, "Shutdown triggered or timeout during lock acquisition\n");
	}
	if (l->limit > 1)
		sem_release(l);
	else
		lock_release(l);
	session_destroy(l);
	if (l->verbose)
		fprintf(l->ctx->err, "Cleanup succeeded\n");
	return rc;
}

/* How many leading arguments are ours: flags, then PREFIX; the rest is the
 * child's command, which keeps its own flags. */
static int split_args(int argc, char **argv)
{
	static const char *const valued[] = {"n",    "timeout",   "monitor-retry",
	                                     "name", "http-addr", "token"};
	int i = 0;
	while (i < argc) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			return i + 1 < argc ? i + 2 : argc;
		if (a[0] != '-')
			return i + 1;
		a += a[1] == '-' ? 2 : 1;
		bool takes = false;
		if (strchr(a, '=') == NULL)
			for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
				takes = takes || strcmp(a, valued[k]) == 0;
		i += takes ? 2 : 1;
	}
	return argc;
}

int cli_cmd_lock(struct cli_ctx *ctx, int argc, char **argv)
{
	struct opts o = {NULL, NULL, NULL, NULL, 1, 0, 0};
	struct cli_flag fl[] = {
	        CLI_HTTP_FLAGS(ctx),
	        {"n", CLI_FLAG_STRING, &o.n, "<limit>", "Holders allowed at once (1: a lock)."},
	        {"timeout", CLI_FLAG_STRING, &o.timeout, "<duration>",
	         "Give up acquiring after this long (default: wait forever)."},
	        {"monitor-retry", CLI_FLAG_STRING, &o.retry, "<count>",
	         "Failed reads of the lock tolerated before it counts as lost (default 3)."},
	        {"name", CLI_FLAG_STRING, &o.name, "<name>", "Name of the session."},
	        {"shell", CLI_FLAG_BOOL, &o.shell, "", "Run the command through /bin/sh -c."},
	        {"child-exit-code", CLI_FLAG_BOOL, &o.child_exit, "",
	         "Exit 2 when the child exits with an error."},
	        {"verbose", CLI_FLAG_BOOL, &o.verbose, "", "Say what the lock does."},
	};
	int ours = split_args(argc, argv);
	char **args;
	int nargs;
	int p = cli_cmd_parse(ctx, fl, sizeof(fl) / sizeof(fl[0]), ours, argv, &args, &nargs);
	if (p >= 0)
		return p;
	if (nargs != 1 || ours >= argc) {
		free(args);
		return cli_usage_error(ctx, "Error: expected PREFIX and a COMMAND");
	}
	struct lk l;
	memset(&l, 0, sizeof(l));
	l.ctx = ctx;
	l.limit = o.n ? atoi(o.n) : 1;
	l.monitor_retry = o.retry ? atoi(o.retry) : 3;
	l.verbose = o.verbose;
	const char *prefix = args[0];
	while (*prefix == '/')
		prefix++;
	size_t plen = strlen(prefix);
	while (plen > 0 && prefix[plen - 1] == '/')
		plen--;
	if (l.limit < 1 || l.monitor_retry < 0 || plen == 0 || plen > 400) {
		free(args);
		return cli_usage_error(ctx,
		                       "Error: -n must be at least 1 and PREFIX 1 to 400 bytes");
	}
	char pbuf[401];
	memcpy(pbuf, prefix, plen);
	pbuf[plen] = '\0';
	l.prefix_esc = xcalloc(1, plen * 3 + 1);
	httpc_escape(l.prefix_esc, plen * 3 + 1, pbuf, HTTPC_ESCAPE_KEEP_SLASH);
	snprintf(l.lock_path, sizeof(l.lock_path), "/v1/kv/%s/.lock", l.prefix_esc);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int rc = run(&l, &o, argv + ours, argc - ours);
	free(l.prefix_esc);
	free(args);
	return rc;
}
