/*
 * agent/cli/cli_maint.h — `rumor maint`, consul's maint command: puts the
 * node or one service into maintenance (-enable [-reason] [-service ID]),
 * takes it out (-disable [-service ID]), or with no flags lists what is in
 * maintenance. A row in agent/cli/cli.c's table; returns the exit code
 * (cmd.h).
 */
#ifndef RUMOR_AGENT_CLI_MAINT_H
#define RUMOR_AGENT_CLI_MAINT_H

struct cli_ctx;

int cli_cmd_maint(struct cli_ctx *ctx, int argc, char **argv);

#endif
