/*
 * agent/cli/cli_members.h — the membership commands (`rumor join`,
 * `leave`, `force-leave`, `members`) and the pure renderers behind
 * `rumor members`: members JSON -> table or JSON text, status filter,
 * address formatting.
 *
 * The renderers take and return memory and never do I/O, so tests drive
 * them directly; the commands are rows in agent/cli/cli.c's table.
 *
 * Error convention: commands return exit codes (cmd.h); renderers return
 * malloc'd text or NULL (no memory), cli_members_select NULL with a
 * message in err.
 */
#ifndef RUMOR_AGENT_CLI_MEMBERS_H
#define RUMOR_AGENT_CLI_MEMBERS_H

#include <stddef.h>

struct cli_ctx;
struct json_t;

int cli_cmd_join(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_leave(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_force_leave(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_members(struct cli_ctx *ctx, int argc, char **argv);

/* "none", "alive", "leaving", "left", "failed" or "unknown". */
const char *cli_member_status_name(long long status);

/* host:port, with IPv6 hosts in brackets; snprintf-style return. */
size_t cli_format_hostport(char *out, size_t outlen, const char *host, long long port);

/* The members of `members` (a JSON array as /v1/agent/members returns) whose
 * status name matches the POSIX extended regex status_regex (NULL or ""
 * matches all), sorted by Name.  Returns a new array (caller json_decref's)
 * or NULL with a message in err (invalid regex, not an array). */
struct json_t *cli_members_select(const struct json_t *members, const char *status_regex, char *err,
                                  size_t errlen);

/* Renders members as the `rumor members` table (detailed: Node, Address,
 * Status, Tags).  Returns malloc'd text ending in '\n', or NULL (no memory).
 * Rows are printed in array order. */
char *cli_members_table(const struct json_t *members, int detailed);

/* Renders members as an indented JSON array with a final '\n'; malloc'd. */
char *cli_members_json(const struct json_t *members);

/* Renders nrows x ncols cells (row-major; row 0 is the header) as columns
 * padded to the longest cell + 2, the last column unpadded, one '\n'-ended
 * line per row; control characters in cells print as '?'.  malloc'd. */
char *cli_table_render(const char *const *cells, size_t nrows, size_t ncols);

#endif
