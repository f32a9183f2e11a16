/*
 * agent/cli/cli_services.h — `rumor services register|deregister`, consul's
 * services command over /v1/agent/service/register and .../deregister.
 * A row in agent/cli/cli.c's table; returns the exit code (cmd.h).
 */
#ifndef RUMOR_AGENT_CLI_SERVICES_H
#define RUMOR_AGENT_CLI_SERVICES_H

struct cli_ctx;

int cli_cmd_services(struct cli_ctx *ctx, int argc, char **argv);

#endif
