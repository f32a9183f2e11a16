/*
 * agent/events.c — see events.h.
 *
 * A job is one handler run: script, extra environment, stdin bytes and, for
 * a query, where the response goes. Jobs wait in a FIFO; one runs at a time.
 * The child's stdout and stderr share one pipe; stdin is a second pipe that
 * the loop fills as the child reads it. A job ends when the child has exited
 * and its output pipe reached EOF (or the child exited and the pipe is
 * still held open by a grandchild: then we stop reading after the exit).
 */
#define _GNU_SOURCE
#include "agent/events.h"

#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"

#define COALESCE_MS 3000
#define QUIESCENT_MS 1000
#define SLOW_MS 1000

struct spec {
	char *script;
	/* filters: event kind (SERF_EV_NONE = any) and optional name */
	struct {
		enum serf_event ev;
		char *name; /* user:NAME / query:NAME, or NULL */
	} f[16];
	int nf;
};

struct job {
	enum serf_event ev;
	const struct spec *spec;
	char *env[4]; /* "SERF_USER_EVENT=..." etc., NULL-terminated */
	uint8_t *in;
	size_t in_len;
	bool is_query;
	struct serf_query_in q; /* name/payload/source_node not kept */
	struct job *next;
};

struct cmember {
	char *name;
	struct ml_addr addr;
	uint8_t meta[ML_META_MAX];
	size_t meta_len;
	enum serf_event ev;
};

struct cuser {
	char *name;
	uint64_t ltime;
	uint8_t *payload;
	size_t len;
};

struct coalescer {
	ev_timer quiet, max;
	bool armed;
};

struct agent_events {
	struct ev_loop *loop;
	struct spec *specs;
	size_t nspecs;
	agent_events_respond_cb respond;
	void *ud;
	char *self;
	struct tag *tags;
	size_t ntags;
	struct job *head, *tail;
	size_t queued;
	uint64_t completed;
	/* running job */
	struct job *cur;
	pid_t pid;
	bool exited;
	int status;
	int in_fd, out_fd;
	size_t in_off;
	ev_io in_io, out_io;
	ev_child child;
	ev_timer slow;
	int64_t started;
	uint8_t out[EVENTS_OUTPUT_MAX];
	size_t out_len, out_total;
	/* coalescing */
	struct cmember *cm;
	size_t ncm;
	struct cuser *cu;
	size_t ncu;
	struct coalescer mco, uco;
};

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

static enum serf_event event_by_name(const char *s, size_t n)
{
	static const enum serf_event all[] = {SERF_EV_MEMBER_JOIN,   SERF_EV_MEMBER_LEAVE,
	                                      SERF_EV_MEMBER_FAILED, SERF_EV_MEMBER_UPDATE,
	                                      SERF_EV_MEMBER_REAP,   SERF_EV_USER,
	                                      SERF_EV_QUERY};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *name = serf_event_name(all[i]);
		if (strlen(name) == n && memcmp(name, s, n) == 0)
			return all[i];
	}
	return SERF_EV_NONE;
}

/* "[TYPE[,TYPE]=]SCRIPT" as serf's ParseEventFilter. */
static int parse_spec(const char *v, struct spec *sp, char *err, size_t errlen)
{
	memset(sp, 0, sizeof(*sp));
	const char *eq = strchr(v, '=');
	/* a '=' after a space belongs to the script (e.g. "x=1 sh ...") */
	if (eq != NULL && memchr(v, ' ', (size_t)(eq - v)) != NULL)
		eq = NULL;
	const char *script = eq ? eq + 1 : v;
	if (script[0] == '\0') {
		snprintf(err, errlen, "event handler %s: empty script", v);
		return -1;
	}
	sp->script = xstrdup(script);
	if (eq == NULL || eq == v) {
		sp->nf = 1;
		sp->f[0].ev = SERF_EV_NONE; /* "*" */
		return 0;
	}
	const char *p = v;
	while (p < eq) {
		const char *comma = memchr(p, ',', (size_t)(eq - p));
		const char *e = comma ? comma : eq;
		size_t n = (size_t)(e - p);
		if (sp->nf == 16) {
			snprintf(err, errlen, "event handler %s: too many event types", v);
			goto fail;
		}
		if (n == 1 && p[0] == '*') {
			sp->f[sp->nf++].ev = SERF_EV_NONE;
		} else if (n > 5 && memcmp(p, "user:", 5) == 0) {
			sp->f[sp->nf].ev = SERF_EV_USER;
			sp->f[sp->nf++].name = strndup(p + 5, n - 5);
		} else if (n > 6 && memcmp(p, "query:", 6) == 0) {
			sp->f[sp->nf].ev = SERF_EV_QUERY;
			sp->f[sp->nf++].name = strndup(p + 6, n - 6);
		} else {
			enum serf_event ev = event_by_name(p, n);
			if (ev == SERF_EV_NONE) {
				snprintf(
				        err, errlen,
				        "event handler %s: unknown event type '%.*s' (member-join, "
				        "member-leave, member-failed, member-update, member-reap, "
				        "user, user:NAME, query, query:NAME, *)",
				        v, (int)n, p);
				goto fail;
			}
			sp->f[sp->nf++].ev = ev;
		}
		p = e + 1;
	}
	return 0;
fail:
	free(sp->script);
	for (int i = 0; i < sp->nf; i++)
		free(sp->f[i].name);
	return -1;
}

/*
 * A bare "user" or "query" filter matches every name; "user:NAME" matches that
 * name exactly, as serf's EventFilter does. Member events never carry a name.
 */
static bool spec_matches(const struct spec *sp, enum serf_event ev, const char *name)
{
	for (int i = 0; i < sp->nf; i++) {
		if (sp->f[i].ev == SERF_EV_NONE)
			return true;
		if (sp->f[i].ev != ev)
			continue;
		if (sp->f[i].name != NULL && (name == NULL || strcmp(sp->f[i].name, name) != 0))
			continue;
		return true;
	}
	return false;
}

/* ------------------------------------------------------------- running */

static void start_next(struct agent_events *e);

static void job_free(struct job *j)
{
	for (int i = 0; i < 4; i++)
		free(j->env[i]);
	free(j->in);
	free(j);
}

static void close_fd(struct agent_events *e, int *fd, ev_io *w)
{
	if (*fd >= 0) {
		ev_io_stop(e->loop, w);
		close(*fd);
		*fd = -1;
	}
}

/*
 * A query is answered only by a handler that exited 0 and printed something, as
 * serf does; a failed handler is logged and the query left to time out. The next
 * job starts from here, so the queue never stalls behind a finished one.
 */
static void finish(struct agent_events *e)
{
	struct job *j = e->cur;
	ev_timer_stop(e->loop, &e->slow);
	close_fd(e, &e->in_fd, &e->in_io);
	close_fd(e, &e->out_fd, &e->out_io);
	if (e->out_total > e->out_len)
		log_warn("agent: Script '%s' generated %zu bytes of output, truncated to %d",
		         j->spec->script, e->out_total, EVENTS_OUTPUT_MAX);
	if (e->out_len > 0)
		log_debug("agent: Event '%s' script output: %.*s", serf_event_name(j->ev),
		          (int)e->out_len, (const char *)e->out);
	if (WIFEXITED(e->status) && WEXITSTATUS(e->status) != 0)
		log_err("agent: Error invoking script '%s': exit status %d", j->spec->script,
		        WEXITSTATUS(e->status));
	else if (WIFSIGNALED(e->status))
		log_err("agent: Error invoking script '%s': killed by signal %d", j->spec->script,
		        WTERMSIG(e->status));
	else if (j->is_query && e->out_len > 0 && e->respond != NULL)
		e->respond(e->ud, &j->q, e->out, e->out_len);
	e->completed++;
	e->cur = NULL;
	e->pid = 0;
	job_free(j);
	start_next(e);
}

/*
 * Keeps reading past EVENTS_OUTPUT_MAX and counts what it discards: the child must
 * never block on a full pipe, and the log reports how much was cut.
 */
static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct agent_events *e = w->data;
	(void)loop;
	(void)revents;
	for (;;) {
		uint8_t buf[4096];
		ssize_t n = read(e->out_fd, buf, sizeof(buf));
		if (n > 0) {
			size_t room = EVENTS_OUTPUT_MAX - e->out_len;
			size_t take = (size_t)n < room ? (size_t)n : room;
			memcpy(e->out + e->out_len, buf, take);
			e->out_len += take;
			e->out_total += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* EOF or error */
		close_fd(e, &e->out_fd, &e->out_io);
		if (e->exited)
			finish(e);
		return;
	}
}

/*
 * A script that exits without reading stdin gives EPIPE: that is normal, not an
 * error. stdin is closed once written, so a script reading to EOF terminates.
 */
static void in_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct agent_events *e = w->data;
	(void)loop;
	(void)revents;
	struct job *j = e->cur;
	while (e->in_off < j->in_len) {
		ssize_t n = write(e->in_fd, j->in + e->in_off, j->in_len - e->in_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			break; /* EPIPE: the script does not read stdin */
		}
		e->in_off += (size_t)n;
	}
	close_fd(e, &e->in_fd, &e->in_io);
}

/*
 * The job ends at the child's exit even if a grandchild still holds the output
 * pipe open: a backgrounded process must not hang the queue. What is already in
 * the pipe is read first; out_cb may finish the job itself, hence the check.
 */
static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct agent_events *e = w->data;
	(void)loop;
	(void)revents;
	ev_child_stop(e->loop, w);
	e->exited = true;
	e->status = w->rstatus;
	/* drain what is there; a grandchild holding the pipe must not hang us */
	if (e->out_fd >= 0) {
		uint64_t before = e->completed;
		out_cb(e->loop, &e->out_io, EV_READ);
		if (e->completed != before)
			return; /* finished inside out_cb */
		close_fd(e, &e->out_fd, &e->out_io);
	}
	finish(e);
}

static void slow_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_events *e = w->data;
	(void)loop;
	(void)revents;
	if (e->cur != NULL)
		log_warn("agent: Script '%s' slow, execution exceeding 1s", e->cur->spec->script);
}

/*
 * Serf's SERF_TAG_<KEY>: the key upper-cased, anything not [A-Z0-9_] replaced by
 * '_', so any tag yields a valid environment name.
 */
static void tag_env_name(const char *key, char *out, size_t cap)
{
	size_t o = snprintf(out, cap, "SERF_TAG_");
	for (const char *p = key; *p && o + 1 < cap; p++) {
		int c = toupper((unsigned char)*p);
		out[o++] = (char)((isupper(c) || isdigit(c) || c == '_') ? c : '_');
	}
	out[o] = '\0';
}

/*
 * One handler at a time, in arrival order, as serf runs them. A job that cannot
 * be started (pipe or fork failure) is logged and dropped, and the next one is
 * tried, so one failure does not stop the queue. The child only sets its
 * environment and execs: nothing here may touch the parent's loop.
 */
static void start_next(struct agent_events *e)
{
	while (e->cur == NULL && e->head != NULL) {
		struct job *j = e->head;
		e->head = j->next;
		if (e->head == NULL)
			e->tail = NULL;
		e->queued--;
		int inp[2], outp[2];
		if (pipe2(inp, O_CLOEXEC) < 0) {
			log_err("agent: cannot run event handler: pipe: %s", strerror(errno));
			job_free(j);
			continue;
		}
		if (pipe2(outp, O_CLOEXEC) < 0) {
			log_err("agent: cannot run event handler: pipe: %s", strerror(errno));
			close(inp[0]);
			close(inp[1]);
			job_free(j);
			continue;
		}
		pid_t pid = fork();
		if (pid < 0) {
			log_err("agent: cannot run event handler: fork: %s", strerror(errno));
			close(inp[0]);
			close(inp[1]);
			close(outp[0]);
			close(outp[1]);
			job_free(j);
			continue;
		}
		if (pid == 0) {
			/* child: only async-signal-safe work until exec, plus setenv
			 * (this process is single-threaded) */
			signal(SIGPIPE, SIG_DFL);
			dup2(inp[0], 0);
			dup2(outp[1], 1);
			dup2(outp[1], 2);
			setenv("SERF_EVENT", serf_event_name(j->ev), 1);
			setenv("SERF_SELF_NAME", e->self ? e->self : "", 1);
			const char *role = "";
			for (size_t i = 0; i < e->ntags; i++) {
				char name[TAG_KEY_MAX + 16];
				tag_env_name(e->tags[i].key, name, sizeof(name));
				setenv(name, e->tags[i].value, 1);
				if (strcmp(e->tags[i].key, "role") == 0)
					role = e->tags[i].value;
			}
			setenv("SERF_SELF_ROLE", role, 1);
			for (int i = 0; i < 4 && j->env[i] != NULL; i++)
				putenv(j->env[i]);
			execl("/bin/sh", "sh", "-c", j->spec->script, (char *)NULL);
			_exit(127);
		}
		close(inp[0]);
		close(outp[1]);
		fcntl(inp[1], F_SETFL, O_NONBLOCK);
		fcntl(outp[0], F_SETFL, O_NONBLOCK);
		e->cur = j;
		e->pid = pid;
		e->exited = false;
		e->status = 0;
		e->in_fd = inp[1];
		e->out_fd = outp[0];
		e->in_off = 0;
		e->out_len = e->out_total = 0;
		ev_child_init(&e->child, child_cb, pid, 0);
		e->child.data = e;
		ev_child_start(e->loop, &e->child);
		ev_io_init(&e->in_io, in_cb, e->in_fd, EV_WRITE);
		e->in_io.data = e;
		ev_io_start(e->loop, &e->in_io);
		ev_io_init(&e->out_io, out_cb, e->out_fd, EV_READ);
		e->out_io.data = e;
		ev_io_start(e->loop, &e->out_io);
		ev_timer_init(&e->slow, slow_cb, SLOW_MS / 1000.0, 0.);
		e->slow.data = e;
		ev_timer_start(e->loop, &e->slow);
	}
}

/*
 * The queue is bounded: a flood of events drops the newest with a warning rather
 * than growing without limit behind a slow handler.
 */
static void enqueue(struct agent_events *e, struct job *j)
{
	if (e->queued >= EVENTS_QUEUE_MAX) {
		log_warn("agent: event handler queue full (%d): dropping %s event",
		         EVENTS_QUEUE_MAX, serf_event_name(j->ev));
		job_free(j);
		return;
	}
	if (e->tail)
		e->tail->next = j;
	else
		e->head = j;
	e->tail = j;
	e->queued++;
	start_next(e);
}

static struct job *job_new(const struct spec *sp, enum serf_event ev, const uint8_t *in, size_t len)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		abort();
	j->spec = sp;
	j->ev = ev;
	j->in = xmalloc(len);
	memcpy(j->in, in, len);
	j->in_len = len;
	return j;
}

/* serf's streamPayload: the payload, with a newline added if missing */
static uint8_t *payload_stdin(const uint8_t *p, size_t len, size_t *out_len)
{
	uint8_t *b = xmalloc(len + 1);
	memcpy(b, p, len);
	*out_len = len;
	if (len > 0 && p[len - 1] != '\n')
		b[(*out_len)++] = '\n';
	return b;
}

/* ---------------------------------------------------------- coalescing */

static void esc_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	for (; *s; s++) {
		if (*len + 3 >= *cap) {
			*cap = *cap * 2 + 64;
			*buf = realloc(*buf, *cap);
			if (*buf == NULL)
				abort();
		}
		if (*s == '\t') {
			(*buf)[(*len)++] = '\\';
			(*buf)[(*len)++] = 't';
		} else if (*s == '\n') {
			(*buf)[(*len)++] = '\\';
			(*buf)[(*len)++] = 'n';
		} else {
			(*buf)[(*len)++] = *s;
		}
	}
}

static void raw_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);
	if (*len + n + 1 >= *cap) {
		*cap = *cap * 2 + n + 64;
		*buf = realloc(*buf, *cap);
		if (*buf == NULL)
			abort();
	}
	memcpy(*buf + *len, s, n);
	*len += n;
}

/*
 * Serf's member-event stdin line: name, IP without port, role, tags, tab
 * separated; tabs and newlines in values are escaped so one member stays one line.
 */
static void member_line(char **buf, size_t *len, size_t *cap, const struct cmember *m)
{
	static struct tag tags[TAGS_MAX];
	int nt = tags_decode(m->meta, m->meta_len, tags, TAGS_MAX);
	char addr[64];
	ml_addr_str(&m->addr, addr, sizeof(addr));
	/* the address without the port, as Go's net.IP.String() */
	char *colon = strrchr(addr, ':');
	if (colon != NULL)
		*colon = '\0';
	if (addr[0] == '[') {
		memmove(addr, addr + 1, strlen(addr));
		char *rb = strchr(addr, ']');
		if (rb)
			*rb = '\0';
	}
	esc_append(buf, len, cap, m->name);
	raw_append(buf, len, cap, "\t");
	raw_append(buf, len, cap, addr);
	raw_append(buf, len, cap, "\t");
	const char *role = "";
	for (int i = 0; i < nt; i++)
		if (strcmp(tags[i].key, "role") == 0)
			role = tags[i].value;
	esc_append(buf, len, cap, role);
	raw_append(buf, len, cap, "\t");
	char *pairs = NULL;
	size_t plen = 0, pcap = 0;
	raw_append(&pairs, &plen, &pcap, "");
	for (int i = 0; i < nt; i++) {
		if (i > 0)
			raw_append(&pairs, &plen, &pcap, ",");
		raw_append(&pairs, &plen, &pcap, tags[i].key);
		raw_append(&pairs, &plen, &pcap, "=");
		raw_append(&pairs, &plen, &pcap, tags[i].value);
	}
	pairs[plen] = '\0';
	esc_append(buf, len, cap, pairs);
	free(pairs);
	raw_append(buf, len, cap, "\n");
}

/*
 * One handler run per event type, in serf's order, with one line per member: a
 * burst of joins becomes one script run, not one per member.
 */
static void flush_members(struct agent_events *e)
{
	static const enum serf_event order[] = {SERF_EV_MEMBER_JOIN, SERF_EV_MEMBER_LEAVE,
	                                        SERF_EV_MEMBER_FAILED, SERF_EV_MEMBER_UPDATE,
	                                        SERF_EV_MEMBER_REAP};
	for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
		char *buf = NULL;
		size_t len = 0, cap = 0;
		for (size_t i = 0; i < e->ncm; i++)
			if (e->cm[i].ev == order[o])
				member_line(&buf, &len, &cap, &e->cm[i]);
		if (len == 0) {
			free(buf);
			continue;
		}
		for (size_t s = 0; s < e->nspecs; s++)
			if (spec_matches(&e->specs[s], order[o], NULL))
				enqueue(e, job_new(&e->specs[s], order[o], (uint8_t *)buf, len));
		free(buf);
	}
	for (size_t i = 0; i < e->ncm; i++)
		free(e->cm[i].name);
	free(e->cm);
	e->cm = NULL;
	e->ncm = 0;
}

static void user_jobs(struct agent_events *e, uint64_t ltime, const char *name,
                      const uint8_t *payload, size_t len)
{
	for (size_t s = 0; s < e->nspecs; s++) {
		if (!spec_matches(&e->specs[s], SERF_EV_USER, name))
			continue;
		size_t ilen;
		uint8_t *in = payload_stdin(payload, len, &ilen);
		struct job *j = job_new(&e->specs[s], SERF_EV_USER, in, ilen);
		free(in);
		if (asprintf(&j->env[0], "SERF_USER_EVENT=%s", name) < 0 ||
		    asprintf(&j->env[1], "SERF_USER_LTIME=%llu", (unsigned long long)ltime) < 0)
			abort();
		enqueue(e, j);
	}
}

static void flush_users(struct agent_events *e)
{
	for (size_t i = 0; i < e->ncu; i++) {
		user_jobs(e, e->cu[i].ltime, e->cu[i].name, e->cu[i].payload, e->cu[i].len);
		free(e->cu[i].name);
		free(e->cu[i].payload);
	}
	free(e->cu);
	e->cu = NULL;
	e->ncu = 0;
}

static void coalesce_fire(struct agent_events *e, struct coalescer *c)
{
	ev_timer_stop(e->loop, &c->quiet);
	ev_timer_stop(e->loop, &c->max);
	c->armed = false;
	if (c == &e->mco)
		flush_members(e);
	else
		flush_users(e);
}

static void coalesce_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent_events *e = w->data;
	(void)loop;
	(void)revents;
	struct coalescer *c = (w == &e->mco.quiet || w == &e->mco.max) ? &e->mco : &e->uco;
	coalesce_fire(e, c);
}

/*
 * Serf's coalescing: flush after QUIESCENT_MS without news, or at the latest
 * COALESCE_MS after the first, so a steady stream still gets delivered.
 */
static void coalesce_touch(struct agent_events *e, struct coalescer *c)
{
	ev_timer_stop(e->loop, &c->quiet);
	ev_timer_set(&c->quiet, QUIESCENT_MS / 1000.0, 0.);
	ev_timer_start(e->loop, &c->quiet);
	if (!c->armed) {
		ev_timer_set(&c->max, COALESCE_MS / 1000.0, 0.);
		ev_timer_start(e->loop, &c->max);
		c->armed = true;
	}
}

/* ------------------------------------------------------------------ API */

struct agent_events *agent_events_new(struct ev_loop *loop, const struct rumor_config_list *specs,
                                      agent_events_respond_cb respond, void *ud, char *err,
                                      size_t errlen)
{
	struct agent_events *e = calloc(1, sizeof(*e));
	if (e == NULL)
		abort();
	e->loop = loop;
	e->respond = respond;
	e->ud = ud;
	e->in_fd = e->out_fd = -1;
	size_t n = specs != NULL ? specs->n : 0;
	e->specs = calloc(n ? n : 1, sizeof(*e->specs));
	if (e->specs == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (parse_spec(specs->items[i], &e->specs[i], err, errlen) < 0) {
			agent_events_free(e);
			return NULL;
		}
		e->nspecs++;
	}
	ev_timer_init(&e->mco.quiet, coalesce_cb, 1., 0.);
	ev_timer_init(&e->mco.max, coalesce_cb, 1., 0.);
	ev_timer_init(&e->uco.quiet, coalesce_cb, 1., 0.);
	ev_timer_init(&e->uco.max, coalesce_cb, 1., 0.);
	e->mco.quiet.data = e->mco.max.data = e->uco.quiet.data = e->uco.max.data = e;
	return e;
}

void agent_events_free(struct agent_events *e)
{
	if (e == NULL)
		return;
	ev_timer_stop(e->loop, &e->mco.quiet);
	ev_timer_stop(e->loop, &e->mco.max);
	ev_timer_stop(e->loop, &e->uco.quiet);
	ev_timer_stop(e->loop, &e->uco.max);
	if (e->cur != NULL) {
		if (!e->exited) {
			kill(e->pid, SIGKILL);
			waitpid(e->pid, NULL, 0);
			ev_child_stop(e->loop, &e->child);
		}
		ev_timer_stop(e->loop, &e->slow);
		close_fd(e, &e->in_fd, &e->in_io);
		close_fd(e, &e->out_fd, &e->out_io);
		job_free(e->cur);
	}
	while (e->head != NULL) {
		struct job *j = e->head;
		e->head = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < e->ncm; i++)
		free(e->cm[i].name);
	free(e->cm);
	for (size_t i = 0; i < e->ncu; i++) {
		free(e->cu[i].name);
		free(e->cu[i].payload);
	}
	free(e->cu);
	for (size_t i = 0; i < e->nspecs; i++) {
		free(e->specs[i].script);
		for (int k = 0; k < e->specs[i].nf; k++)
			free(e->specs[i].f[k].name);
	}
	free(e->specs);
	free(e->tags);
	free(e->self);
	free(e);
}

void agent_events_set_self(struct agent_events *e, const char *name, const struct tag *tags,
                           size_t n)
{
	free(e->self);
	e->self = xstrdup(name);
	free(e->tags);
	e->tags = xmalloc(n * sizeof(*tags));
	memcpy(e->tags, tags, n * sizeof(*tags));
	e->ntags = n;
}

/*
 * Only a member's latest event is kept while coalescing, as serf does: a node
 * that joins and fails within the window is reported once, as failed.
 */
void agent_events_member(struct agent_events *e, enum serf_event ev, const char *name,
                         const struct ml_addr *addr, const uint8_t *meta, size_t meta_len)
{
	if (e->nspecs == 0 || ev == SERF_EV_NONE)
		return;
	struct cmember *m = NULL;
	for (size_t i = 0; i < e->ncm; i++)
		if (strcmp(e->cm[i].name, name) == 0)
			m = &e->cm[i];
	if (m == NULL) {
		struct cmember *p = realloc(e->cm, (e->ncm + 1) * sizeof(*p));
		if (p == NULL)
			abort();
		e->cm = p;
		m = &e->cm[e->ncm++];
		m->name = xstrdup(name);
	}
	m->addr = *addr;
	m->meta_len = meta_len <= ML_META_MAX ? meta_len : 0;
	if (m->meta_len)
		memcpy(m->meta, meta, m->meta_len);
	m->ev = ev;
	coalesce_touch(e, &e->mco);
}

/*
 * With coalescing, only the newest event of each name (highest lamport time)
 * runs; an older one arriving late is dropped, never allowed to replace it.
 */
void agent_events_user(struct agent_events *e, uint64_t ltime, const char *name,
                       const uint8_t *payload, size_t len, bool coalesce)
{
	if (e->nspecs == 0)
		return;
	if (!coalesce) {
		user_jobs(e, ltime, name, payload, len);
		return;
	}
	struct cuser *u = NULL;
	for (size_t i = 0; i < e->ncu; i++)
		if (strcmp(e->cu[i].name, name) == 0)
			u = &e->cu[i];
	if (u == NULL) {
		struct cuser *p = realloc(e->cu, (e->ncu + 1) * sizeof(*p));
		if (p == NULL)
			abort();
		e->cu = p;
		u = &e->cu[e->ncu++];
		memset(u, 0, sizeof(*u));
		u->name = xstrdup(name);
	} else if (ltime < u->ltime) {
		return; /* older than what we keep */
	}
	free(u->payload);
	u->ltime = ltime;
	u->payload = xmalloc(len);
	memcpy(u->payload, payload, len);
	u->len = len;
	coalesce_touch(e, &e->uco);
}

/*
 * The job keeps only what the response needs (id, ltime, source address): the
 * name and payload point into a packet buffer that will be gone by the time the
 * handler finishes.
 */
void agent_events_query(struct agent_events *e, const struct serf_query_in *q, int64_t now)
{
	(void)now;
	for (size_t s = 0; s < e->nspecs; s++) {
		if (!spec_matches(&e->specs[s], SERF_EV_QUERY, q->name))
			continue;
		size_t ilen;
		uint8_t *in = payload_stdin(q->payload, q->payload_len, &ilen);
		struct job *j = job_new(&e->specs[s], SERF_EV_QUERY, in, ilen);
		free(in);
		j->is_query = true;
		j->q = *q;
		j->q.name = NULL;
		j->q.payload = NULL;
		j->q.payload_len = 0;
		j->q.source_node = NULL;
		if (asprintf(&j->env[0], "SERF_QUERY_NAME=%s", q->name) < 0 ||
		    asprintf(&j->env[1], "SERF_QUERY_LTIME=%llu", (unsigned long long)q->ltime) < 0)
			abort();
		enqueue(e, j);
	}
}

size_t agent_events_pending(const struct agent_events *e)
{
	return e->queued + (e->cur != NULL ? 1 : 0);
}

uint64_t agent_events_completed(const struct agent_events *e)
{
	return e->completed;
}
