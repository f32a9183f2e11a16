/*
 * agent/cli/cli.c — see cli.h.
 *
 * This file is the dispatcher and nothing else: the command table (name,
 * synopsis, usage text, function) and the lookup.  The commands live in
 * the command files (cli_members.c, cli_services.c, cli_ops.c, cli_serf.c,
 * cli_maint.c, cli_kv.c, cli_operator.c), which see only cmd.h, flags.h,
 * the HTTP client and shared renderers, never this file; `version` stays
 * here because it is the binary's own answer.
 */
#include "agent/cli/cli.h"

#include <stdlib.h>
#include <string.h>

#include "agent/cli/cli_kv.h"
#include "agent/cli/cli_lock.h"
#include "agent/cli/cli_maint.h"
#include "agent/cli/cli_members.h"
#include "agent/cli/cli_rtt.h"
#include "agent/cli/cli_operator.h"
#include "agent/cli/cli_ops.h"
#include "agent/cli/cli_serf.h"
#include "agent/cli/cli_snapshot.h"
#include "agent/cli/cli_services.h"
#include "agent/cli/cmd.h"
#include "lib/xalloc.h"

#ifndef RUMOR_VERSION
#define RUMOR_VERSION "0.0.0"
#endif

struct cli_command {
	const char *name;
	const char *synopsis;
	const char *usage; /* "Usage: ..." and a description, '\n'-ended */
	cli_cmd_fn *run;
};

static int cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	char **args = xcalloc((size_t)argc + 1, sizeof(*args));
	char err[CLI_ERRLEN];

	r = cli_flags_parse(NULL, 0, argc, argv, args, &nargs, err, sizeof(err));
	free(args);
	if (r == CLI_FLAGS_HELP) {
		fputs(ctx->usage, ctx->out);
		return 0;
	}
	if (r != 0)
		return cli_usage_error(ctx, err);
	if (nargs > 0)
		return cli_usage_error(ctx, "The version command takes no arguments.");
	fprintf(ctx->out, "rumor v%s\n", RUMOR_VERSION);
	fprintf(ctx->out, "Protocol 2 spoken by default, understands 2 to 5 "
	                  "(agent will automatically use protocol >2 when "
	                  "speaking to compatible agents)\n");
	return 0;
}

/* ---- command table --------------------------------------------------- */

/* `rumor kv ...`: agent/cli/cli_kv.c parses its own subcommands. */
static int cmd_kv(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_kv_run(argc, argv, ctx->http_addr, ctx->token, ctx->out, ctx->err);
}

static const struct cli_command commands[] = {
        {"agent", "Runs a rumor agent", "Usage: rumor agent [options]\n",
         NULL /* dispatched by main.c */},
        {"event", "Send a custom (user) event to the cluster",
         "Usage: rumor event [options] NAME [PAYLOAD]\n\n"
         "  Dispatches a serf user event: every member, rumor or serf, "
         "runs its\n  event handlers for it once. NAME plus PAYLOAD must "
         "fit in 512 bytes.\n",
         cli_cmd_event},
        {"force-leave", "Forces a member of the cluster to enter the \"left\" state",
         "Usage: rumor force-leave [options] NODE\n\n"
         "  Forces a failed member of the cluster to enter the \"left\" "
         "state, so\n  it stops being reconnected to. With -prune the node "
         "is removed from\n  the member list entirely. Prints nothing on "
         "success.\n",
         cli_cmd_force_leave},
        {"info", "Provides debugging information for operators",
         "Usage: rumor info [options]\n\n"
         "  Prints the local agent's state, one section per area (agent, "
         "build,\n  consul, raft on servers, runtime, serf_lan), as `consul "
         "info` does:\n  the server tier's leader and Raft indexes, member "
         "counts by status,\n  health score, queue depth, gossip traffic, "
         "encryption.\n",
         cli_cmd_info},
        {"join", "Tell the local agent to join a cluster",
         "Usage: rumor join [options] ADDRESS...\n\n"
         "  Tells the local agent to join the cluster by contacting each "
         "ADDRESS\n  (host or host:port of another agent's gossip port). "
         "Succeeds if at\n  least one address could be joined.\n",
         cli_cmd_join},
        {"keygen", "Generates a new gossip encryption key",
         "Usage: rumor keygen\n\n"
         "  Prints a random 32-byte key in base64, for -encrypt and "
         "`rumor keyring`.\n",
         cli_cmd_keygen},
        {"keyring", "Manages gossip encryption keys on every member",
         "Usage: rumor keyring [options]\n\n"
         "  Lists, installs, switches (-use) or removes gossip encryption "
         "keys on\n  every member of the cluster (serf's internal key "
         "queries, so serf\n  agents take part). Keys are 32 bytes in "
         "base64.\n",
         cli_cmd_keyring},
        {"kv", "Interact with the key-value store",
         "Usage: rumor kv <get|put|delete|export|import> [options] [args]\n\n"
         "  Reads and writes the replicated key-value store through the local\n"
         "  agent, as `consul kv` does. `rumor kv -h` lists the subcommands.\n",
         cmd_kv},
        {"leave", "Gracefully leaves the cluster and shuts down the agent",
         "Usage: rumor leave [options]\n\n"
         "  Makes the local agent leave the cluster gracefully and shut "
         "down.\n",
         cli_cmd_leave},
        {"lock", "Execute a command holding a lock",
         "Usage: rumor lock [options] PREFIX COMMAND [ARGS...]\n\n"
         "  Holds a lock (PREFIX/.lock) or, with -n N, one of N semaphore slots\n"
         "  under PREFIX while COMMAND runs, as `consul lock` does: the lock is\n"
         "  tied to a session the command creates and renews; COMMAND is stopped\n"
         "  (SIGTERM) if the lock is lost; the lock is released on exit. Flags come\n"
         "  before PREFIX. Needs servers (docs/SESSIONS.md).\n",
         cli_cmd_lock},
        {"maint", "Controls node or service maintenance mode",
         "Usage: rumor maint [options]\n\n"
         "  Places a node or service into maintenance mode. During maintenance mode,\n"
         "  the node or service will be excluded from all queries through the DNS\n"
         "  or API interfaces, effectively taking it out of the pool of available\n"
         "  nodes. This is done by registering an additional critical health check.\n\n"
         "  -enable [-reason TEXT] [-service ID] enables it (the reason goes in the\n"
         "  check's Notes; without one a default text is used), -disable [-service\n"
         "  ID] disables it. Maintenance is kept in the data directory and restored\n"
         "  when the agent restarts. With no flags, lists what is in maintenance\n"
         "  (nothing when nothing is).\n",
         cli_cmd_maint},
        {"members", "Lists the members of the cluster",
         "Usage: rumor members [options]\n\n"
         "  Lists the members the local agent knows about and their state.\n"
         "  Exits 2 when no member matches.\n",
         cli_cmd_members},
        {"monitor", "Stream logs from a rumor agent",
         "Usage: rumor monitor [options]\n\n"
         "  Streams the local agent's log lines as they are written, at "
         "-log-level\n  and above (even below the agent's own level), "
         "until interrupted or\n  until the agent stops.\n",
         cli_cmd_monitor},
        {"operator", "Provides cluster-level tools for operators",
         "Usage: rumor operator raft <list-peers|remove-peer> [options]\n\n"
         "  Looks at or changes the servers' Raft configuration, as `consul\n"
         "  operator raft` does. `rumor operator -h` lists the subcommands.\n",
         cli_cmd_operator},
        {"query", "Sends a query to the cluster and prints the answers",
         "Usage: rumor query [options] NAME [PAYLOAD]\n\n"
         "  Dispatches a serf query; members acknowledge it and their "
         "query\n  handlers' output comes back as responses until the "
         "timeout.\n",
         cli_cmd_query},
        {"rtt", "Estimates network round trip time between nodes",
         "Usage: rumor rtt [options] NODE [NODE]\n\n"
         "  Estimates the round trip time between two nodes from their network\n"
         "  coordinates (Vivaldi, as Serf and Consul), as the local agent knows\n"
         "  them. The second node defaults to the agent's own. With -wan the\n"
         "  names are <node>.<datacenter> and WAN coordinates are used (rumor has\n"
         "  no WAN pool, so none is found).\n",
         cli_cmd_rtt},
        {"services", "Registers or deregisters services on the local agent",
         "Usage: rumor services register [options] [FILE...]\n"
         "       rumor services deregister [options] ID\n\n"
         "  register: each FILE holds a service definition (Consul's JSON: an\n"
         "  object, or {\"service\": {...}} or {\"services\": [...]}), or the\n"
         "  service is described with -name, -id, -address, -port and -tag.\n"
         "  deregister: removes the service with that ID and its checks.\n",
         cli_cmd_services},
        {"snapshot", "Saves, restores and inspects snapshots of the servers' state",
         "Usage: rumor snapshot <save|restore|inspect> [options] FILE\n\n"
         "  save writes the cluster's key-value store and catalog, as the Raft\n"
         "  leader holds them, to FILE (checked, written whole or not at all);\n"
         "  restore replaces the store by FILE's contents through Raft; inspect\n"
         "  prints what FILE holds. Needs servers (docs/SERVERS.md \"Backups\").\n",
         cli_cmd_snapshot},
        {"tags", "Modifies the tags of the local agent",
         "Usage: rumor tags [options]\n\n"
         "  Sets or deletes tags (node meta) of the local agent at run "
         "time; the\n  change spreads with a higher incarnation.\n",
         cli_cmd_tags},
        {"version", "Prints the rumor version",
         "Usage: rumor version\n\n"
         "  Prints the version of rumor and the protocol versions it "
         "speaks.\n",
         cmd_version},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct cli_command *find_command(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void cli_usage(FILE *out)
{
	size_t i, w = 0;

	for (i = 0; i < NCOMMANDS; i++)
		if (strlen(commands[i].name) > w)
			w = strlen(commands[i].name);
	fprintf(out, "Usage: rumor [--version] [--help] <command> [<args>]\n\n"
	             "Available commands are:\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(out, "    %-*s    %s\n", (int)w, commands[i].name, commands[i].synopsis);
	fprintf(out, "\nRun 'rumor <command> -h' for a command's options.\n");
}

int cli_run(int argc, char **argv, FILE *out, FILE *err)
{
	const struct cli_command *cmd;
	struct cli_ctx ctx;

	if (argc < 1 || argv == NULL || argv[0] == NULL) {
		cli_usage(err);
		return 1;
	}
	cmd = find_command(argv[0]);
	if (cmd == NULL || cmd->run == NULL) {
		fprintf(err, "Unknown command: %s\n\n", argv[0]);
		cli_usage(err);
		return 1;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.out = out;
	ctx.err = err;
	ctx.name = cmd->name;
	ctx.usage = cmd->usage;
	ctx.http_addr = cli_default_http_addr();
	ctx.token = cli_default_token();
	return cmd->run(&ctx, argc - 1, argv + 1);
}

int cli_main(int argc, char **argv)
{
	int r = cli_run(argc, argv, stdout, stderr);

	fflush(stdout);
	return r;
}
