/*
 * agent/cli/cli_rtt.h — `rumor rtt [-wan] NODE [NODE]`, as `consul rtt`:
 * the estimated round trip between two nodes from their network
 * coordinates (/v1/coordinate/nodes, or /v1/coordinate/datacenters with
 * -wan), printed as
 *   Estimated a <-> b rtt: 1.234 ms (using LAN coordinates)
 * The second node defaults to the agent's own. Exit 0, or 1 with consul's
 * messages ("Could not find a coordinate for node \"x\"", ...).
 *
 * The estimate itself is a pure function over the JSON the agent returns,
 * so tests drive it without an agent.
 *
 * Error convention: the command returns exit codes (cmd.h);
 * cli_rtt_estimate returns 0 with the line in out, or 1 with consul's
 * error text in out.
 */
#ifndef RUMOR_AGENT_CLI_RTT_H
#define RUMOR_AGENT_CLI_RTT_H

#include <stdbool.h>
#include <stddef.h>

struct cli_ctx;
struct json_t;

int cli_cmd_rtt(struct cli_ctx *ctx, int argc, char **argv);

/* From `entries` (a JSON array of {"Node","Coord"} as /v1/coordinate/nodes
 * returns; node names match case-insensitively, as consul's EqualFold),
 * the line for n1 <-> n2 into out[outlen]; `wan` only names the source in
 * the text. 0, or 1 with the error text in out. */
int cli_rtt_estimate(const struct json_t *entries, const char *n1, const char *n2, bool wan,
                     char *out, size_t outlen);

#endif
