/*
 * agent/checks.h — health check runners on the agent's libev loop.
 *
 * Owns: one runner per check this agent runs: its timers, the socket of a
 * TCP connect or HTTP GET in flight, the child process and pipe of a script
 * check.  A runner reports each result through its callback; it never
 * blocks the loop (non-blocking connect and I/O; fork/exec with an ev_child
 * watcher; no name resolution: targets are IP literals or "localhost").
 *
 *   TCP     connect to host:port within the timeout: passing, else critical
 *   HTTP    GET http://host[:port]/path (HTTP/1.0, Connection: close):
 *           2xx passing, 429 warning, anything else or no answer critical
 *   script  argv run with stdout+stderr captured (4 KiB kept): exit 0
 *           passing, 1 warning, else critical; killed (whole process group)
 *           at the timeout
 *   TTL     no probe: critical with "TTL expired" unless
 *           check_runner_ttl_reset() is called at least every ttl
 * Interval checks run once right away, then every interval; a probe still
 * in flight when the next is due is not doubled.  timeout defaults to 10 s
 * (Consul's), capped at the interval.
 *
 * Error convention: check_runner_new() returns NULL with a message in err
 * (bad target, no interval); results carry their own text.
 */
#ifndef RUMOR_AGENT_CHECKS_H
#define RUMOR_AGENT_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/catalog.h"

struct ev_loop;
struct check_runner;

enum check_kind { CHECK_TTL, CHECK_TCP, CHECK_HTTP, CHECK_SCRIPT };

struct check_def {
	enum check_kind kind;
	const char *target;  /* TCP "host:port", HTTP URL */
	char *const *args;   /* script argv, NULL-terminated */
	int64_t interval_ms; /* TCP/HTTP/script */
	int64_t timeout_ms;  /* 0: 10 s */
	int64_t ttl_ms;      /* TTL */
};

#define CHECK_OUTPUT_MAX 4096

/* A result: status and a human-readable output (valid during the call). */
typedef void (*check_result_fn)(void *ud, enum catalog_health status, const char *output);

/* Starts a runner (copies what it keeps from d).  NULL with err on failure. */
struct check_runner *check_runner_new(struct ev_loop *loop, const struct check_def *d,
                                      check_result_fn fn, void *ud, char *err, size_t errlen);
/* Stops everything (kills a running script) and frees; NULL is a no-op.
 * The callback is not called afterwards. */
void check_runner_free(struct check_runner *r);
/* TTL checks: a status update arrived; the TTL starts again. */
void check_runner_ttl_reset(struct check_runner *r);

/* "passing", "warning", "critical". */
const char *check_status_name(enum catalog_health h);
/* Parses a status name; -1 if unknown. */
int check_status_parse(const char *s);

#endif
