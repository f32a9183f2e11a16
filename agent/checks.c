/*
 * agent/checks.c — see checks.h.
 *
 * One probe at a time per runner: `busy` is set while a socket or a child
 * is out, and cleared by finish(), the only place that reports a result and
 * releases the probe's resources.
 */
#define _GNU_SOURCE
#include "agent/checks.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/net.h"

#define DEFAULT_TIMEOUT_MS 10000

struct check_runner {
	struct ev_loop *loop;
	enum check_kind kind;
	check_result_fn fn;
	void *ud;
	int64_t interval_ms, timeout_ms, ttl_ms;
	/* target */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char target[512];
	char host[300];
	char path[1024];
	char **args;
	/* probe in flight */
	bool busy;
	int fd;
	pid_t pid;
	ev_timer tick, timeout;
	ev_io io;
	ev_child child;
	char out[CHECK_OUTPUT_MAX + 1];
	size_t outlen;
	bool sent;
	size_t reqoff;
	char req[1600];
	size_t reqlen;
};

const char *check_status_name(enum catalog_health h)
{
	return h == CATALOG_PASSING ? "passing" : h == CATALOG_WARNING ? "warning" : "critical";
}

int check_status_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "passing") == 0)
		return CATALOG_PASSING;
	if (strcmp(s, "warning") == 0)
		return CATALOG_WARNING;
	if (strcmp(s, "critical") == 0)
		return CATALOG_CRITICAL;
	return -1;
}

/* host may be an IPv4/IPv6 literal ("[v6]" too) or "localhost". */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	char h[300];
	snprintf(h, sizeof(h), "%s", host);
	size_t hl = strlen(h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		memmove(h, h + 1, hl - 2);
		h[hl - 2] = '\0';
	}
	if (strcmp(h, "localhost") == 0)
		snprintf(h, sizeof(h), "127.0.0.1");
	return net_addr_parse(h, port, ss, len) < 0 ? -1 : 0;
}

/* "host:port" / "[v6]:port" */
static int split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s)
		return -1;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p <= 0 || p > 65535)
		return -1;
	size_t n = (size_t)(colon - s);
	if (n >= hostlen)
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	*port = (uint16_t)p;
	return 0;
}

/*
 * The one way a probe ends, whatever ended it (result, error or timeout): every
 * watcher is stopped and the fd closed before the result is reported, since the
 * callback may free this runner.
 */
static void finish(struct check_runner *r, enum catalog_health st, const char *output)
{
	ev_timer_stop(r->loop, &r->timeout);
	ev_io_stop(r->loop, &r->io);
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	if (r->pid > 0) {
		ev_child_stop(r->loop, &r->child);
		r->pid = 0;
	}
	r->busy = false;
	r->fn(r->ud, st, output);
}

/* ---------------------------------------------------------------- TCP/HTTP */

/*
 * Consul's mapping of an HTTP check: 2xx passing, 429 (Too Many Requests)
 * warning, anything else critical; the output keeps Consul's wording, because
 * people grep for it.
 */
static void http_done(struct check_runner *r)
{
	r->out[r->outlen] = '\0';
	int code = 0;
	if (strncmp(r->out, "HTTP/", 5) == 0) {
		const char *sp = strchr(r->out, ' ');
		if (sp)
			code = atoi(sp + 1);
	}
	char msg[CHECK_OUTPUT_MAX + 700];
	const char *body = strstr(r->out, "\r\n\r\n");
	body = body ? body + 4 : "";
	if (code == 0) {
		snprintf(msg, sizeof(msg), "Get \"%s\": no HTTP response", r->target);
		finish(r, CATALOG_CRITICAL, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "HTTP GET %s: %d Output: %s", r->target, code, body);
	enum catalog_health st = code >= 200 && code < 300 ? CATALOG_PASSING
	                         : code == 429             ? CATALOG_WARNING
	                                                   : CATALOG_CRITICAL;
	finish(r, st, msg);
}

/*
 * One callback for the whole probe: connect completion (SO_ERROR), then the
 * request, then the reply read until EOF or the output cap. The reply is never
 * read past CHECK_OUTPUT_MAX; what is cut off cannot change the status line.
 */
static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct check_runner *r = w->data;
	char msg[800];
	if (!r->sent) {
		int e = 0;
		socklen_t el = sizeof(e);
		getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &e, &el);
		if (e != 0) {
			snprintf(msg, sizeof(msg), "dial tcp %s: connect: %s", r->host,
			         strerror(e));
			finish(r, CATALOG_CRITICAL, msg);
			return;
		}
		if (r->kind == CHECK_TCP) {
			snprintf(msg, sizeof(msg), "TCP connect %s: Success", r->target);
			finish(r, CATALOG_PASSING, msg);
			return;
		}
		while (r->reqoff < r->reqlen) {
			ssize_t k = send(r->fd, r->req + r->reqoff, r->reqlen - r->reqoff,
			                 MSG_NOSIGNAL);
			if (k < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return;
				snprintf(msg, sizeof(msg), "Get \"%s\": %s", r->target,
				         strerror(errno));
				finish(r, CATALOG_CRITICAL, msg);
				return;
			}
			r->reqoff += (size_t)k;
		}
		r->sent = true;
		ev_io_stop(loop, &r->io);
		ev_io_set(&r->io, r->fd, EV_READ);
		ev_io_start(loop, &r->io);
		return;
	}
	for (;;) {
		if (r->outlen >= CHECK_OUTPUT_MAX) {
			http_done(r);
			return;
		}
		ssize_t k = recv(r->fd, r->out + r->outlen, CHECK_OUTPUT_MAX - r->outlen, 0);
		if (k == 0) {
			http_done(r);
			return;
		}
		if (k < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			http_done(r);
			return;
		}
		r->outlen += (size_t)k;
	}
}

static void start_connect(struct check_runner *r)
{
	char msg[800];
	int fd = net_tcp_connect(&r->addr, r->addrlen, NULL);
	if (fd < 0) {
		snprintf(msg, sizeof(msg), "dial tcp %s: connect: %s", r->host, strerror(-fd));
		finish(r, CATALOG_CRITICAL, msg);
		return;
	}
	r->fd = fd;
	r->sent = false;
	r->reqoff = 0;
	ev_io_init(&r->io, io_cb, r->fd, EV_WRITE);
	r->io.data = r;
	ev_io_start(r->loop, &r->io);
}

/* ------------------------------------------------------------------ script */

/*
 * Reads past the cap into a scratch buffer and throws it away: a child whose pipe
 * fills would block forever, and its timeout would then report the wrong cause.
 */
static void drain_pipe(struct check_runner *r)
{
	for (;;) {
		if (r->outlen >= CHECK_OUTPUT_MAX) {
			char junk[512];
			if (read(r->fd, junk, sizeof(junk)) > 0)
				continue;
			return;
		}
		ssize_t k = read(r->fd, r->out + r->outlen, CHECK_OUTPUT_MAX - r->outlen);
		if (k <= 0)
			return;
		r->outlen += (size_t)k;
	}
}

static void pipe_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct check_runner *r = w->data;
	size_t before = r->outlen;
	drain_pipe(r);
	if (r->outlen == before && r->outlen < CHECK_OUTPUT_MAX)
		ev_io_stop(loop, w); /* EOF: wait for the child watcher */
}

/*
 * Consul's script exit codes: 0 passing, 1 warning, anything else (a signal
 * included) critical. The pipe is drained first, so output written just before
 * exit is not lost.
 */
static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct check_runner *r = w->data;
	if (r->fd >= 0)
		drain_pipe(r);
	r->out[r->outlen] = '\0';
	int st = w->rstatus;
	enum catalog_health h = CATALOG_CRITICAL;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		h = CATALOG_PASSING;
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
		h = CATALOG_WARNING;
	char out[CHECK_OUTPUT_MAX + 1];
	memcpy(out, r->out, r->outlen + 1);
	ev_child_stop(loop, w);
	r->pid = 0;
	finish(r, h, out);
}

/*
 * The child gets its own process group, so a timeout kills the whole tree it
 * spawned, not just the shell; stdin is /dev/null and SIGPIPE is back to default,
 * as a script expects.
 */
static void start_script(struct check_runner *r)
{
	int p[2];
	char msg[300];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(msg, sizeof(msg), "pipe: %s", strerror(errno));
		finish(r, CATALOG_CRITICAL, msg);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		snprintf(msg, sizeof(msg), "fork: %s", strerror(errno));
		finish(r, CATALOG_CRITICAL, msg);
		return;
	}
	if (pid == 0) {
		setpgid(0, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		signal(SIGPIPE, SIG_DFL);
		execvp(r->args[0], r->args);
		dprintf(2, "exec %s: %s\n", r->args[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	net_set_nonblock(p[0]);
	r->fd = p[0];
	r->pid = pid;
	ev_io_init(&r->io, pipe_cb, r->fd, EV_READ);
	r->io.data = r;
	ev_io_start(r->loop, &r->io);
	ev_child_init(&r->child, child_cb, pid, 0);
	r->child.data = r;
	ev_child_start(r->loop, &r->child);
}

/* ------------------------------------------------------------------ timers */

/*
 * A timed-out script is killed and reported at once, not when it is reaped; an
 * unreaped child is left to a later waitpid rather than blocking the loop.
 */
static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct check_runner *r = w->data;
	char msg[700];
	if (r->kind == CHECK_TTL) {
		finish(r, CATALOG_CRITICAL, "TTL expired");
		return;
	}
	if (r->kind == CHECK_SCRIPT && r->pid > 0) {
		kill(-r->pid, SIGKILL);
		kill(r->pid, SIGKILL);
		/* the child watcher reaps it; report now */
		ev_child_stop(loop, &r->child);
		pid_t pid = r->pid;
		r->pid = 0;
		waitpid(pid, NULL, WNOHANG);
		snprintf(msg, sizeof(msg), "Timed out (%lldms) running check",
		         (long long)r->timeout_ms);
		finish(r, CATALOG_CRITICAL, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "%s %s: timeout after %lldms",
	         r->kind == CHECK_HTTP ? "Get" : "dial tcp", r->target, (long long)r->timeout_ms);
	finish(r, CATALOG_CRITICAL, msg);
}

/*
 * At most one probe per check in flight: a tick that finds the previous probe
 * still running is skipped, not queued.
 */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct check_runner *r = w->data;
	if (r->busy)
		return;
	r->busy = true;
	r->outlen = 0;
	ev_timer_set(&r->timeout, (double)r->timeout_ms / 1000.0, 0.);
	ev_timer_start(loop, &r->timeout);
	if (r->kind == CHECK_SCRIPT)
		start_script(r);
	else
		start_connect(r);
}

void check_runner_ttl_reset(struct check_runner *r)
{
	if (r == NULL || r->kind != CHECK_TTL)
		return;
	ev_timer_stop(r->loop, &r->timeout);
	ev_timer_set(&r->timeout, (double)r->ttl_ms / 1000.0, 0.);
	ev_timer_start(r->loop, &r->timeout);
}

/*
 * All validation happens here, at registration, so a bad check is refused with a
 * message instead of running critical forever. The timeout never exceeds the
 * interval, so probes cannot overlap; the first probe runs right away.
 */
struct check_runner *check_runner_new(struct ev_loop *loop, const struct check_def *d,
                                      check_result_fn fn, void *ud, char *err, size_t errlen)
{
	struct check_runner *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->loop = loop;
	r->kind = d->kind;
	r->fn = fn;
	r->ud = ud;
	r->fd = -1;
	r->interval_ms = d->interval_ms;
	r->timeout_ms = d->timeout_ms > 0 ? d->timeout_ms : DEFAULT_TIMEOUT_MS;
	if (r->interval_ms > 0 && r->timeout_ms > r->interval_ms)
		r->timeout_ms = r->interval_ms;
	r->ttl_ms = d->ttl_ms;
	ev_timer_init(&r->timeout, timeout_cb, 0., 0.);
	r->timeout.data = r;
	ev_timer_init(&r->tick, tick_cb, 0., 0.);
	r->tick.data = r;
	if (d->kind == CHECK_TTL) {
		if (d->ttl_ms <= 0) {
			snprintf(err, errlen, "TTL must be > 0");
			goto fail;
		}
		check_runner_ttl_reset(r);
		return r;
	}
	if (d->interval_ms <= 0) {
		snprintf(err, errlen, "Interval must be > 0 for a %s check",
		         d->kind == CHECK_TCP    ? "TCP"
		         : d->kind == CHECK_HTTP ? "HTTP"
		                                 : "script");
		goto fail;
	}
	if (d->kind == CHECK_TCP || d->kind == CHECK_HTTP) {
		uint16_t port;
		snprintf(r->target, sizeof(r->target), "%s", d->target ? d->target : "");
		if (d->kind == CHECK_TCP) {
			if (split_hostport(r->target, r->host, sizeof(r->host), &port) < 0) {
				snprintf(err, errlen,
				         "invalid TCP check target \"%s\" (want host:port)",
				         r->target);
				goto fail;
			}
		} else {
			const char *u = r->target;
			if (strncmp(u, "http://", 7) != 0) {
				snprintf(err, errlen,
				         "invalid HTTP check URL \"%s\" (only http://)", u);
				goto fail;
			}
			u += 7;
			const char *slash = strchr(u, '/');
			size_t hl = slash ? (size_t)(slash - u) : strlen(u);
			char hp[300];
			if (hl == 0 || hl >= sizeof(hp)) {
				snprintf(err, errlen, "invalid HTTP check URL \"%s\"", r->target);
				goto fail;
			}
			memcpy(hp, u, hl);
			hp[hl] = '\0';
			snprintf(r->path, sizeof(r->path), "%s", slash ? slash : "/");
			if (split_hostport(hp, r->host, sizeof(r->host), &port) < 0 ||
			    (hp[0] == '[' && hp[hl - 1] == ']')) {
				snprintf(r->host, sizeof(r->host), "%s", hp);
				port = 80;
			}
			r->reqlen = (size_t)snprintf(
			        r->req, sizeof(r->req),
			        "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: Consul Health Check\r\n"
			        "Accept: text/plain, text/*, */*\r\nConnection: close\r\n\r\n",
			        r->path, hp);
			if (r->reqlen >= sizeof(r->req)) {
				snprintf(err, errlen, "HTTP check URL too long");
				goto fail;
			}
		}
		if (resolve(r->host, port, &r->addr, &r->addrlen) < 0) {
			snprintf(err, errlen,
			         "check target host \"%s\" must be an IP address or localhost",
			         r->host);
			goto fail;
		}
	} else {
		size_t n = 0;
		while (d->args && d->args[n])
			n++;
		if (n == 0) {
			snprintf(err, errlen, "script check needs Args");
			goto fail;
		}
		r->args = calloc(n + 1, sizeof(char *));
		if (r->args == NULL)
			goto fail;
		for (size_t i = 0; i < n; i++)
			r->args[i] = strdup(d->args[i]);
		snprintf(r->target, sizeof(r->target), "%s", d->args[0]);
	}
	/* first run right away, then every interval */
	ev_timer_set(&r->tick, 0.001, (double)r->interval_ms / 1000.0);
	ev_timer_start(loop, &r->tick);
	return r;
fail:
	free(r);
	return NULL;
}

/*
 * Waits for a killed child with a blocking waitpid: after SIGKILL it is quick,
 * and no zombie may outlive the check that made it.
 */
void check_runner_free(struct check_runner *r)
{
	if (r == NULL)
		return;
	ev_timer_stop(r->loop, &r->tick);
	ev_timer_stop(r->loop, &r->timeout);
	ev_io_stop(r->loop, &r->io);
	if (r->fd >= 0)
		close(r->fd);
	if (r->pid > 0) {
		ev_child_stop(r->loop, &r->child);
		kill(-r->pid, SIGKILL);
		kill(r->pid, SIGKILL);
		waitpid(r->pid, NULL, 0);
	}
	if (r->args) {
		for (size_t i = 0; r->args[i]; i++)
			free(r->args[i]);
		free(r->args);
	}
	free(r);
}
