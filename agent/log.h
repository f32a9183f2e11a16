/*
 * agent/log.h — the agent's log lines, to stderr (and optionally a file).
 *
 * Owns: the level threshold and the output stream. Lines look like Consul's:
 *   2026-11-28T03:13:00.123Z [INFO]  memberlist: Member joined: node2 127.0.0.1:8302
 */
#ifndef RUMOR_AGENT_LOG_H
#define RUMOR_AGENT_LOG_H

#include <stdio.h>

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

/* "trace".."err" (also "warning", "error"); -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(enum log_level l);
/* Also append lines to this file (NULL closes). 0 or -errno. */
int log_set_file(const char *path);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_trace(...) log_msg(LOG_TRACE, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)

#endif
