/*
 * agent/cli/cli_ops.h — the operating side of the CLI: `rumor monitor` (a
 * streamed HTTP GET printed as it arrives) and `rumor info` (the agent's
 * state as `consul info` prints it).  The commands are rows in
 * agent/cli/cli.c's table; the stream and the renderer are here because
 * httpc waits for a whole body and the renderer is tested on its own.
 *
 * Error convention: 0 or -1 with a message in the caller's err buffer; the
 * renderer returns malloc'd text or NULL on allocation failure.
 */
#ifndef RUMOR_AGENT_CLI_CLI_OPS_H
#define RUMOR_AGENT_CLI_CLI_OPS_H

#include <stddef.h>
#include <stdio.h>

struct cli_ctx;
struct json_t;

int cli_cmd_monitor(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_info(struct cli_ctx *ctx, int argc, char **argv);

/* GETs path_and_query from addr ("host:port") as HTTP/1.0 (so the agent ends
 * the body by closing) with an optional X-Consul-Token, and copies the body
 * to out as it arrives, flushing after each read.  Connect and headers are
 * bounded by timeout_ms; the body is not (it ends when the agent closes).
 * Returns 0 when the agent closed the stream after a 200, or -1 with a
 * message: "Error connecting to agent at ...", or the agent's status and
 * error text for a non-200 answer. */
int cli_ops_stream(const char *addr, const char *path_and_query, const char *token, int timeout_ms,
                   FILE *out, char *err, size_t errlen);

/* Renders `rumor info` from the agent's /v1/agent/self and /v1/agent/metrics
 * (JSON) answers, plus optional counts of services and checks (-1: unknown):
 *   agent:\n\tkey = value\n ... one section per area, keys sorted.
 * The consul and raft sections are self's Stats.consul and Stats.raft,
 * printed only when present.  malloc'd. */
char *cli_ops_info_text(const struct json_t *self, const struct json_t *metrics, long long services,
                        long long checks);

#endif
