/*
 * agent/cli/cli_snapshot.h — `rumor snapshot save|restore|inspect FILE`,
 * consul's snapshot command on rumor's snapshot files (agent/api_snapshot.h):
 * save writes the cluster's store (through the servers) to FILE, restore
 * replaces the store by FILE's contents through Raft, inspect prints what
 * FILE holds without touching any agent. A row in agent/cli/cli.c's table;
 * returns the exit code (cmd.h).
 */
#ifndef RUMOR_AGENT_CLI_SNAPSHOT_H
#define RUMOR_AGENT_CLI_SNAPSHOT_H

struct cli_ctx;

int cli_cmd_snapshot(struct cli_ctx *ctx, int argc, char **argv);

#endif
