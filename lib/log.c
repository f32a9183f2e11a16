/* lib/log.c — see log.h.  Single-threaded, as the agent is: the
 * threshold, the sinks and the ring of recent records are plain statics. */
#include "lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* lib/log_syslog.c */
void log__syslog_open(bool on);
void log__syslog_line(int level, const char *msg);

struct sink {
	log_sink_fn fn;
	void *ud;
	enum log_level min;
};

static enum log_level threshold = LOG_INFO;
static bool json_out;
static FILE *logfile;
static char *logpath;
static unsigned long long file_bytes, rot_bytes;
static long long rot_age_ms;
static int rot_files;
static time_t file_opened;
static bool to_syslog;
static struct sink sinks[LOG_MAX_SINKS];
static enum log_level sinks_min = LOG_ERR + 1; /* lowest level any sink wants */
static bool in_sink;

/* The ring of recent records: ring[(ring_next + i) % LOG_RING_LINES] for
 * i < ring_len, oldest first.  A slot keeps its message buffer across
 * reuse (cap bytes), so a steady stream of lines does not allocate. */
struct ring_slot {
	enum log_level level;
	char ts[32];
	char *msg;
	size_t cap;
};
static struct ring_slot ring[LOG_RING_LINES];
static size_t ring_next, ring_len;
static unsigned long long ring_pushes; /* replay stops if this moves under it */
static bool replaying;                 /* lines fn logs in log_replay stay out */

int log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		enum log_level l;
	} names[] = {{"trace", LOG_TRACE}, {"debug", LOG_DEBUG},  {"info", LOG_INFO},
	             {"warn", LOG_WARN},   {"warning", LOG_WARN}, {"err", LOG_ERR},
	             {"error", LOG_ERR}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return (int)names[i].l;
	return -1;
}

const char *log_level_name(enum log_level l)
{
	static const char *n[] = {"trace", "debug", "info", "warn", "error"};
	return (unsigned)l <= LOG_ERR ? n[l] : "info";
}

void log_set_level(enum log_level l)
{
	threshold = l;
}

void log_set_json(bool on)
{
	json_out = on;
}

/*
 * Append mode, and the size is taken from the file as it is: a restarted agent
 * keeps writing to the same log and rotates it by its real size, not from zero.
 */
static int open_file(void)
{
	logfile = fopen(logpath, "a");
	if (logfile == NULL)
		return -errno;
	struct stat st;
	file_bytes = fstat(fileno(logfile), &st) == 0 ? (unsigned long long)st.st_size : 0;
	file_opened = time(NULL);
	return 0;
}

int log_set_file(const char *path)
{
	if (logfile != NULL)
		fclose(logfile);
	logfile = NULL;
	free(logpath);
	logpath = NULL;
	if (path == NULL)
		return 0;
	logpath = strdup(path);
	if (logpath == NULL)
		return -ENOMEM;
	int rc = open_file();
	if (rc < 0) {
		free(logpath);
		logpath = NULL;
	}
	return rc;
}

void log_set_rotation(unsigned long long max_bytes, long long max_age_ms, int max_files)
{
	rot_bytes = max_bytes;
	rot_age_ms = max_age_ms > 0 ? max_age_ms : 0;
	rot_files = max_files > 0 ? max_files : 0;
}

void log_set_syslog(bool on)
{
	to_syslog = on;
	log__syslog_open(on);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Deletes the oldest rotated files beyond rot_files. Names sort by time. */
static void prune_rotated(void)
{
	if (rot_files <= 0)
		return;
	const char *slash = strrchr(logpath, '/');
	char dir[4096];
	const char *base = logpath;
	if (slash != NULL) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - logpath), logpath);
		if (dir[0] == '\0')
			snprintf(dir, sizeof(dir), "/");
		base = slash + 1;
	} else {
		snprintf(dir, sizeof(dir), ".");
	}
	size_t bl = strlen(base);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		/* <base>.<8 digits>T<6 digits>.<6 digits> */
		if (strncmp(e->d_name, base, bl) != 0 || e->d_name[bl] != '.' ||
		    strlen(e->d_name + bl + 1) != 22 || e->d_name[bl + 9] != 'T')
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nn = realloc(names, nc * sizeof(*nn));
			if (nn == NULL)
				break;
			names = nn;
			cap = nc;
		}
		names[n] = strdup(e->d_name);
		if (names[n] != NULL)
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i + (size_t)rot_files < n; i++) {
		char p[8192];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/*
 * Rotation is a rename and a reopen, never a copy: a line is never lost or
 * written twice. The new name carries the time to the microsecond, so rotated
 * files sort by age and two rotations never overwrite each other.
 */
static void maybe_rotate(void)
{
	if (logfile == NULL || logpath == NULL)
		return;
	bool big = rot_bytes > 0 && file_bytes >= rot_bytes;
	bool old = rot_age_ms > 0 && (long long)(time(NULL) - file_opened) * 1000 >= rot_age_ms;
	if (!big && !old)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char stamp[32];
	size_t sl = strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	char rotated[8192];
	struct stat st;
	/* microseconds in the name; two rotations in one microsecond take the next */
	for (long us = tv.tv_usec; us < 1000000; us++) {
		snprintf(stamp + sl, sizeof(stamp) - sl, ".%06ld", us);
		snprintf(rotated, sizeof(rotated), "%s.%s", logpath, stamp);
		if (stat(rotated, &st) != 0)
			break;
	}
	fclose(logfile);
	logfile = NULL;
	rename(logpath, rotated);
	if (open_file() < 0)
		fprintf(stderr, "cannot reopen log file %s after rotating it: %s\n", logpath,
		        strerror(errno));
	prune_rotated();
}

/*
 * The lowest level any subscriber wants is cached, so log_msg can drop a debug
 * line with one comparison when no monitor is listening.
 */
static void sinks_recompute(void)
{
	sinks_min = LOG_ERR + 1;
	for (size_t i = 0; i < LOG_MAX_SINKS; i++)
		if (sinks[i].fn != NULL && sinks[i].min < sinks_min)
			sinks_min = sinks[i].min;
}

int log_subscribe(log_sink_fn fn, void *ud, enum log_level min)
{
	for (size_t i = 0; i < LOG_MAX_SINKS; i++) {
		if (sinks[i].fn == NULL) {
			sinks[i].fn = fn;
			sinks[i].ud = ud;
			sinks[i].min = min;
			sinks_recompute();
			return 0;
		}
	}
	return -1;
}

void log_unsubscribe(log_sink_fn fn, void *ud)
{
	for (size_t i = 0; i < LOG_MAX_SINKS; i++)
		if (sinks[i].fn == fn && sinks[i].ud == ud)
			sinks[i].fn = NULL;
	sinks_recompute();
}

/* Appends s JSON-escaped; returns the new length (may exceed cap). */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char tmp[8];
		const char *out = tmp;
		size_t k;
		if (ch == '"' || ch == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)ch;
			k = 2;
		} else if (ch == '\n') {
			out = "\\n";
			k = 2;
		} else if (ch == '\t') {
			out = "\\t";
			k = 2;
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
			k = 6;
		} else {
			tmp[0] = (char)ch;
			k = 1;
		}
		for (size_t j = 0; j < k; j++, n++)
			if (n + 1 < cap)
				buf[n] = out[j];
	}
	return n;
}

static size_t append(char *buf, size_t cap, size_t n, const char *s)
{
	for (; *s; s++, n++)
		if (n + 1 < cap)
			buf[n] = *s;
	return n;
}

/* Length of a leading "module: " word ([a-z0-9._-], up to 32), or 0. */
static size_t module_len(const char *msg)
{
	size_t i = 0;
	while (i < 32 && ((msg[i] >= 'a' && msg[i] <= 'z') || (msg[i] >= '0' && msg[i] <= '9') ||
	                  msg[i] == '.' || msg[i] == '_' || msg[i] == '-'))
		i++;
	return (i > 0 && msg[i] == ':' && msg[i + 1] == ' ') ? i : 0;
}

/*
 * Consul's line format (timestamp, [LEVEL] padded to one width) or hclog's JSON
 * keys, so tools that parse Consul's logs parse ours. A line cut at cap still
 * ends in a newline: a reader never sees two lines run together.
 */
size_t log_format(char *buf, size_t cap, const struct log_record *r, bool json)
{
	static const char *tags[] = {"[TRACE]", "[DEBUG]", "[INFO] ", "[WARN] ", "[ERROR]"};
	unsigned l = (unsigned)r->level <= LOG_ERR ? (unsigned)r->level : LOG_INFO;
	size_t n = 0;
	if (!json) {
		n = append(buf, cap, n, r->timestamp);
		n = append(buf, cap, n, " ");
		n = append(buf, cap, n, tags[l]);
		n = append(buf, cap, n, " ");
		n = append(buf, cap, n, r->msg);
	} else {
		size_t ml = module_len(r->msg);
		const char *text = ml ? r->msg + ml + 2 : r->msg;
		n = append(buf, cap, n, "{\"@level\":\"");
		n = append(buf, cap, n, log_level_name((enum log_level)l));
		n = append(buf, cap, n, "\",\"@message\":\"");
		n = json_escape(buf, cap, n, text, strlen(text));
		if (ml) {
			n = append(buf, cap, n, "\",\"@module\":\"");
			n = json_escape(buf, cap, n, r->msg, ml);
		}
		n = append(buf, cap, n, "\",\"@timestamp\":\"");
		n = append(buf, cap, n, r->timestamp);
		n = append(buf, cap, n, "\"}");
	}
	n = append(buf, cap, n, "\n");
	if (cap > 0)
		buf[n < cap ? n : cap - 1] = '\0';
	if (cap > 1 && n >= cap)
		buf[cap - 2] = '\n'; /* a cut line still ends in a newline */
	return n;
}

/* Keeps r as the newest recent record, over the oldest once the ring is
 * full.  Never fails the caller: a message that cannot be stored (no
 * memory for a longer slot) is left out of the ring. */
static void ring_push(const struct log_record *r)
{
	struct ring_slot *s = &ring[ring_next];
	size_t need = strlen(r->msg) + 1;
	if (need > s->cap) {
		char *p = realloc(s->msg, need);
		if (p == NULL)
			return;
		s->msg = p;
		s->cap = need;
	}
	memcpy(s->msg, r->msg, need);
	s->level = r->level;
	snprintf(s->ts, sizeof(s->ts), "%s", r->timestamp);
	ring_next = (ring_next + 1) % LOG_RING_LINES;
	if (ring_len < LOG_RING_LINES)
		ring_len++;
	ring_pushes++;
}

/*
 * Replays the recent lines to a new monitor. Stops if the ring changes under it
 * (fn may log, or clear the ring), and what fn logs meanwhile is kept out of the
 * sinks and the ring, so a replay can never feed itself.
 */
size_t log_replay(log_sink_fn fn, void *ud, enum log_level min)
{
	size_t start = (ring_next + LOG_RING_LINES - ring_len) % LOG_RING_LINES, n = 0;
	unsigned long long pushes = ring_pushes;
	bool was_in_sink = in_sink;
	in_sink = true; /* as for subscribers: what fn logs is not sent to sinks */
	replaying = true;
	for (size_t i = 0; i < ring_len && ring_pushes == pushes; i++) {
		const struct ring_slot *s = &ring[(start + i) % LOG_RING_LINES];
		if (s->level < min)
			continue;
		struct log_record r = {s->level, s->ts, s->msg};
		fn(ud, &r);
		n++;
	}
	in_sink = was_in_sink;
	replaying = false;
	return n;
}

void log_ring_clear(void)
{
	for (size_t i = 0; i < LOG_RING_LINES; i++) {
		free(ring[i].msg);
		ring[i].msg = NULL;
		ring[i].cap = 0;
	}
	ring_next = ring_len = 0;
	ring_pushes++;
}

/*
 * Formats only if someone will read the line. A sink that logs from inside its
 * callback is not called again (in_sink): a monitor writing about its own
 * stream must not recurse without end.
 */
void log_msg(enum log_level l, const char *fmt, ...)
{
	bool to_out = l >= threshold;
	bool to_sinks = l >= sinks_min && !in_sink;
	if (!to_out && !to_sinks)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[48];
	size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(tv.tv_usec / 1000));
	char msg[LOG_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct log_record r = {l, ts, msg};
	if (to_out) {
		char line[4096];
		log_format(line, sizeof(line), &r, json_out);
		fputs(line, stderr);
		fflush(stderr);
		if (logfile != NULL) {
			fputs(line, logfile);
			fflush(logfile);
			file_bytes += strlen(line);
			maybe_rotate();
		}
		if (to_syslog)
			log__syslog_line((int)l, msg);
		if (!replaying)
			ring_push(&r);
	}
	if (to_sinks) {
		in_sink = true;
		for (size_t i = 0; i < LOG_MAX_SINKS; i++)
			if (sinks[i].fn != NULL && l >= sinks[i].min)
				sinks[i].fn(sinks[i].ud, &r);
		in_sink = false;
	}
}
