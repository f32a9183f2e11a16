/*
 * lib/log_syslog.c — the syslog output of lib/log.c, in its own file
 * because <syslog.h> defines LOG_INFO, LOG_ERR... which are also the names
 * of log.h's levels. Internal to the log module (log__ prefix).
 */
#include <stdbool.h>
#include <syslog.h>

void log__syslog_open(bool on);
void log__syslog_line(int level, const char *msg);

static bool opened;

void log__syslog_open(bool on)
{
	if (on && !opened)
		openlog("rumor", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!on && opened)
		closelog();
	opened = on;
}

/* level is log.h's: 0 trace, 1 debug, 2 info, 3 warn, 4 err */
void log__syslog_line(int level, const char *msg)
{
	static const int prio[] = {LOG_DEBUG, LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
	if (!opened)
		return;
	syslog(prio[level >= 0 && level <= 4 ? level : 2], "%s", msg);
}
