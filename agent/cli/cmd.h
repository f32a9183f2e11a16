/*
 * agent/cli/cmd.h — what every client command shares: its context, the two
 * HTTP flags, argument parsing with consul's messages, and one call to the
 * agent with consul's error wording.
 *
 * Owns: nothing long-lived; a struct cli_ctx lives on cli_run's stack for
 * one command.  Data flow: agent/cli/cli.c finds the command and fills the
 * context; the command (agent/cli/cli_*.c) parses with cli_cmd_parse, calls
 * cli_api_call one or more times and prints.  This file sits below the
 * command files and above flags.h and httpc: it never includes a command.
 *
 * Error convention: commands return process exit codes (0 ok, 1 error, 2
 * "no results" where consul uses it) and print errors to ctx->err; helpers
 * return what their comment says, with a message in a caller's buffer.
 */
#ifndef RUMOR_AGENT_CLI_CMD_H
#define RUMOR_AGENT_CLI_CMD_H

#include <stddef.h>
#include <stdio.h>

#include "agent/cli/flags.h"

struct httpc_response;

#define CLI_ERRLEN 512
#define CLI_LEAVE_TIMEOUT_MS 30000

struct cli_ctx {
	FILE *out;
	FILE *err;
	const char *name;      /* subcommand name */
	const char *usage;     /* its "Usage: ..." text, '\n'-ended */
	const char *http_addr; /* as given */
	const char *token;
	char addr[300]; /* normalized host:port */
};

/* A command: argv holds the arguments after its name; returns the exit code. */
typedef int cli_cmd_fn(struct cli_ctx *ctx, int argc, char **argv);

/* The flags every command takes; `ctx` is a struct cli_ctx *. */
#define CLI_HTTP_FLAGS(ctx)                                                                        \
	{"http-addr", CLI_FLAG_STRING, &(ctx)->http_addr, "<address>",                             \
	 "Address of the agent's HTTP API (host:port, optional http://). "                         \
	 "Default: $RUMOR_HTTP_ADDR, $CONSUL_HTTP_ADDR or " CLI_DEFAULT_HTTP_ADDR "."},            \
	{                                                                                          \
		"token", CLI_FLAG_STRING, &(ctx)->token, "<value>",                                \
		        "ACL token sent as X-Consul-Token. Default: $RUMOR_HTTP_TOKEN or "         \
		        "$CONSUL_HTTP_TOKEN."                                                      \
	}

/* Replaces control characters (and DEL) in s[0..n-1] by '?'. */
void cli_text_clean(char *s, size_t n);

/* Parses flags and the HTTP address into ctx->addr; returns -1 to go on,
 * with *args (allocated here; the caller frees it) holding *nargs
 * positional arguments, or the exit code (0 after printing help, 1 after
 * an error, which it printed). */
int cli_cmd_parse(struct cli_ctx *ctx, const struct cli_flag *flags, size_t nflags, int argc,
                  char **argv, char ***args, int *nargs);

/* Prints "msg\nRun 'rumor <name> -h' for usage." to ctx->err; returns 1. */
int cli_usage_error(struct cli_ctx *ctx, const char *msg);

enum cli_api_result { CLI_API_OK = 0, CLI_API_CONN = -1, CLI_API_STATUS = 1 };

/* Makes one call to ctx->addr with ctx->token.  CLI_API_OK: 2xx and *resp
 * holds the answer.  CLI_API_CONN: no answer; msg says "Error connecting
 * to agent at ...".  CLI_API_STATUS: non-2xx; msg says "Unexpected
 * response code: N (body)" and *resp holds it too.  The caller frees resp
 * with httpc_response_free in every case. */
enum cli_api_result cli_api_call(struct cli_ctx *ctx, const char *method, const char *path,
                                 const void *body, size_t body_len, int timeout_ms,
                                 struct httpc_response *resp, char *msg, size_t msglen);

/* As cli_api_call; on failure prints "<what>: <error>" (the agent's own
 * error text after a non-2xx) and returns 1, else 0. */
int cli_serf_call(struct cli_ctx *ctx, const char *what, const char *method, const char *path,
                  const void *body, size_t body_len, int timeout_ms, struct httpc_response *resp);

/* The server's error text, cleaned, or "Unexpected response code: N". */
void cli_status_text(const struct httpc_response *resp, char *out, size_t outlen);

/* s percent-encoded as one path segment; malloc'd (never NULL). */
char *cli_escape_segment(const char *s);

#endif
