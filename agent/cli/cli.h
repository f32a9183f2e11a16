/*
 * agent/cli/cli.h — the `rumor` client subcommands (join, leave,
 * force-leave, members, kv, ...), which talk to the local agent's
 * Consul-compatible HTTP API through agent/http/httpc.h.
 *
 * The folder, lowest first: flags.h (the flag parser, where the agent is),
 * cmd.h (a command's context and its calls to the agent), the command files
 * (cli_members, cli_services, cli_ops, cli_serf, cli_kv), and this file's
 * dispatcher on top.  Nothing below includes what is above it.
 *
 * Adding a command: write `int cli_cmd_x(struct cli_ctx *, int, char **)` in
 * the command file it belongs to (or a new one), declare it in that file's
 * header, and add a row to the `commands` table in cli.c (name, one-line
 * synopsis, usage text, function).  Sub-sub-commands (`kv put`) dispatch
 * inside their own function.
 *
 * Error convention: commands return process exit codes (0 ok, 1 error, 2 "no
 * results" where Consul uses it) and print errors to the error stream.
 */
#ifndef RUMOR_AGENT_CLI_CLI_H
#define RUMOR_AGENT_CLI_CLI_H

#include <stdio.h>

/* Runs the client subcommand argv[0] with its arguments (stdout/stderr);
 * returns the process exit code. */
int cli_main(int argc, char **argv);

/* As cli_main, writing normal output to out and errors to err. */
int cli_run(int argc, char **argv, FILE *out, FILE *err);

/* Prints the top-level usage (every subcommand, agent included) to out. */
void cli_usage(FILE *out);

#endif
