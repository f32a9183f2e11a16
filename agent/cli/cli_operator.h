/*
 * agent/cli/cli_operator.h — `rumor operator raft list-peers` and
 * `rumor operator raft remove-peer`, as `consul operator raft` behaves: the
 * Raft configuration from /v1/operator/raft/configuration as Consul's table
 * (Node, ID, Address, State, Voter, RaftProtocol), and one server removed
 * with DELETE /v1/operator/raft/peer?id=|address=.  Messages are Consul's
 * ("Error getting peers: ...", "Removed peer with address \"...\""), exit 1
 * on any error.
 *
 * The command is one row ("operator") in agent/cli/cli.c's table and parses
 * its own subcommands; the table renderer is pure and tested on its own.
 *
 * Error convention: the command returns an exit code (cmd.h); the renderer
 * returns malloc'd text or NULL with a message in err.
 */
#ifndef RUMOR_AGENT_CLI_CLI_OPERATOR_H
#define RUMOR_AGENT_CLI_CLI_OPERATOR_H

#include <stddef.h>

struct cli_ctx;
struct json_t;

/* argv[0] is "raft", argv[1] "list-peers" or "remove-peer". */
int cli_cmd_operator(struct cli_ctx *ctx, int argc, char **argv);

/* Renders a /v1/operator/raft/configuration answer
 * ({"Servers":[{"ID","Node","Address","Leader","Voter","ProtocolVersion"}]})
 * as the list-peers table, servers in the answer's order, State "leader" or
 * "follower", RaftProtocol "<=1" when the server did not say.  malloc'd
 * text ending in '\n'; NULL with a message in err when Servers is missing
 * or not an array (or no memory). */
char *cli_operator_peers_table(const struct json_t *config, char *err, size_t errlen);

#endif
