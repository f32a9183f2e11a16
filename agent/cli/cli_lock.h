/*
 * agent/cli/cli_lock.h — `rumor lock`, consul's lock command: runs a
 * command while holding a lock (or, with -n N, one of N semaphore slots)
 * under a KV prefix, on a session the command creates and renews; stops
 * the command when the lock is lost; releases and destroys the session on
 * exit. Needs servers (docs/SESSIONS.md). A row in agent/cli/cli.c's
 * table; returns the exit code (cmd.h).
 */
#ifndef RUMOR_AGENT_CLI_LOCK_H
#define RUMOR_AGENT_CLI_LOCK_H

struct cli_ctx;

int cli_cmd_lock(struct cli_ctx *ctx, int argc, char **argv);

#endif
