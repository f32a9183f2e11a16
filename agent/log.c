/* agent/log.c — see log.h. */
#include "agent/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

struct sink {
	log_sink_fn fn;
	void *ud;
	enum log_level min;
};

static enum log_level threshold = LOG_INFO;
static bool json_out;
static FILE *logfile;
static struct sink sinks[LOG_MAX_SINKS];
static enum log_level sinks_min = LOG_ERR + 1; /* lowest level any sink wants */
static bool in_sink;

int log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		enum log_level l;
	} names[] = {{"trace", LOG_TRACE}, {"debug", LOG_DEBUG}, {"info", LOG_INFO},
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

int log_set_file(const char *path)
{
	if (logfile != NULL)
		fclose(logfile);
	logfile = NULL;
	if (path == NULL)
		return 0;
	logfile = fopen(path, "a");
	return logfile ? 0 : -errno;
}

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
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct log_record r = {l, ts, msg};
	if (to_out) {
		char line[4096];
		log_format(line, sizeof(line), &r, json_out);
		FILE *outs[2] = {stderr, logfile};
		for (int i = 0; i < 2; i++) {
			if (outs[i] == NULL)
				continue;
			fputs(line, outs[i]);
			fflush(outs[i]);
		}
	}
	if (to_sinks) {
		in_sink = true;
		for (size_t i = 0; i < LOG_MAX_SINKS; i++)
			if (sinks[i].fn != NULL && l >= sinks[i].min)
				sinks[i].fn(sinks[i].ud, &r);
		in_sink = false;
	}
}
