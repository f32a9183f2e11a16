/*
 * agent/cli/cli_serf.h — the serf commands: `rumor event`, `query`, `tags`,
 * `keygen` and `keyring`, over /v1/event/fire and /v1/event/query, /v1/agent/tags and
 * /v1/operator/keyring.  Rows in agent/cli/cli.c's table; each returns the
 * exit code (cmd.h).
 */
#ifndef RUMOR_AGENT_CLI_SERF_H
#define RUMOR_AGENT_CLI_SERF_H

struct cli_ctx;

int cli_cmd_event(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_query(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_tags(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_keygen(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_keyring(struct cli_ctx *ctx, int argc, char **argv);

#endif
