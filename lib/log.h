/*
 * lib/log.h — the agent's log lines, to stderr (and optionally a file),
 * and to subscribers (GET /v1/agent/monitor).
 *
 * Owns: the level threshold, the output format (text or JSON), the output
 * streams (stderr, an optional file with size/age rotation, optional
 * syslog) and the subscriber list. Text lines look like Consul's:
 *   2026-11-28T03:13:00.123Z [INFO]  memberlist: Member joined: node2 127.0.0.1:8302
 * JSON lines (-log-json) look like hclog's:
 *   {"@level":"info","@message":"Member joined: ...","@module":"memberlist","@timestamp":"..."}
 * The module is the message's leading "word: " when there is one.
 *
 * Subscribers get every record at or above their own level, even below the
 * stderr threshold (`rumor monitor -log-level=debug` on an info agent), so
 * log_msg formats a record when either wants it. A subscriber must not log
 * from its callback (such records are dropped, not recursed into).
 *
 * Recent lines: the last LOG_RING_LINES records at or above the threshold
 * (what stderr got) are kept in a ring, as Consul's and Serf's log writers
 * keep 512, so that a monitor that connects to an idle agent sees how it
 * got there (log_replay). Memory is bounded: one slot per line holding the
 * timestamp and the message, which grows to the longest message it held
 * (at most LOG_MSG_MAX), so at most 512 x ~2.1 KiB = ~1.05 MiB, and about
 * 512 x 150 bytes = 75 KiB for the agent's usual lines. A slot allocates
 * only when a longer message than it ever held arrives; when that fails
 * the line is left out of the ring (still written to stderr).
 */
#ifndef RUMOR_LIB_LOG_H
#define RUMOR_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

#define LOG_MAX_SINKS 32
#define LOG_RING_LINES 512 /* recent records kept for log_replay */
#define LOG_MSG_MAX 2048   /* bytes of a message, NUL included; longer is cut */

/* "trace".."err" (also "warning", "error"); -1 if unknown. */
int log_level_parse(const char *s);
/* "trace", "debug", "info", "warn", "error". */
const char *log_level_name(enum log_level l);
void log_set_level(enum log_level l);
/* Lines to stderr and the file as JSON objects (true) or text (false). */
void log_set_json(bool on);
/* Also append lines to this file (NULL closes). 0 or -errno. */
int log_set_file(const char *path);
/* Rotate the log file once it holds max_bytes (0: no size limit) or is
 * older than max_age_ms (0: no age limit): it is renamed to
 * <path>.<UTC time, e.g. 20261128T031300.123456> and a new file is started;
 * only the newest max_files rotated files are kept (0: keep all). */
void log_set_rotation(unsigned long long max_bytes, long long max_age_ms, int max_files);
/* Also send lines to syslog (facility daemon, ident "rumor"); false stops. */
void log_set_syslog(bool on);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One log event as subscribers see it; pointers valid during the callback. */
struct log_record {
	enum log_level level;
	const char *timestamp; /* "2026-11-28T03:13:00.123Z" */
	const char *msg;       /* "memberlist: Member joined: ..." */
};
typedef void (*log_sink_fn)(void *ud, const struct log_record *r);

/* Adds a subscriber for records at `min` and above. 0, or -1 when
 * LOG_MAX_SINKS are registered. */
int log_subscribe(log_sink_fn fn, void *ud, enum log_level min);
/* Removes the (fn, ud) subscriber; unknown pairs are ignored. */
void log_unsubscribe(log_sink_fn fn, void *ud);
/* Calls fn(ud, r) for each kept recent record at `min` or above, oldest
 * first (see "Recent lines" above). What fn logs goes to stderr only, not
 * to subscribers nor into the ring. Returns how many records fn got. */
size_t log_replay(log_sink_fn fn, void *ud, enum log_level min);
/* Forgets the recent records and frees the ring's memory (tests, exit). */
void log_ring_clear(void);
/* r as one '\n'-terminated line, text or JSON, into buf (always
 * NUL-terminated when cap > 0); snprintf-style return. */
size_t log_format(char *buf, size_t cap, const struct log_record *r, bool json);

#define log_trace(...) log_msg(LOG_TRACE, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)

#endif
