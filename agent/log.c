/* agent/log.c — see log.h. */
#include "agent/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum log_level threshold = LOG_INFO;
static FILE *logfile;

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

void log_set_level(enum log_level l)
{
	threshold = l;
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

void log_msg(enum log_level l, const char *fmt, ...)
{
	if (l < threshold)
		return;
	static const char *tags[] = {"[TRACE]", "[DEBUG]", "[INFO] ", "[WARN] ", "[ERROR]"};
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[40];
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	FILE *outs[2] = {stderr, logfile};
	for (int i = 0; i < 2; i++) {
		if (outs[i] == NULL)
			continue;
		fprintf(outs[i], "%s.%03dZ %s %s\n", ts, (int)(tv.tv_usec / 1000), tags[l], line);
		fflush(outs[i]);
	}
}
