/*
 * agent/main.c — `rumor`: one binary, subcommands.
 *
 * `rumor agent ...` runs the agent (agent/agent.c); every other subcommand
 * is a client of the agent's HTTP API (agent/cli/).
 */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/cli/cli.h"

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "-help") == 0 ||
	    strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		cli_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	if (strcmp(argv[1], "agent") == 0)
		return agent_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "-version") == 0 ||
	    strcmp(argv[1], "--version") == 0) {
		char *v[] = {"version", NULL};
		return cli_main(1, v);
	}
	return cli_main(argc - 1, argv + 1);
}
