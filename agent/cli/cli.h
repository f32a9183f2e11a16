/*
 * cli — the `rumor` client subcommands (join, leave, force-leave, members,
 * version, ...), which talk to the local agent's Consul-compatible HTTP API
 * through httpc.
 *
 * Owns: the command table, a Go-flag-style option parser, and the pure
 * rendering functions (members JSON -> table / JSON text, status filter,
 * address formatting).  The pure parts take and return memory and never do
 * I/O, so tests drive them directly; the commands themselves are thin
 * wrappers that make one or more HTTP calls and print.
 *
 * Adding a command: write `static int cmd_x(struct cli_ctx *, int, char **)`
 * in cli.c and add a row to the `commands` table there (name, one-line
 * synopsis, usage text, function).  Sub-sub-commands (`kv put`) dispatch
 * inside their own function.
 *
 * Error convention: commands return process exit codes (0 ok, 1 error, 2 "no
 * results" where Consul uses it) and print errors to the error stream;
 * helpers return 0/-1 (or NULL) with a message in a caller-supplied buffer.
 */
#ifndef RUMOR_AGENT_CLI_H
#define RUMOR_AGENT_CLI_H

#include <stddef.h>
#include <stdio.h>

struct json_t;

#define CLI_DEFAULT_HTTP_ADDR "127.0.0.1:8500"

/* Runs the client subcommand argv[0] with its arguments (stdout/stderr);
 * returns the process exit code. */
int cli_main(int argc, char **argv);

/* As cli_main, writing normal output to out and errors to err. */
int cli_run(int argc, char **argv, FILE *out, FILE *err);

/* Prints the top-level usage (every subcommand, agent included) to out. */
void cli_usage(FILE *out);

/* ---- flag parsing ---------------------------------------------------- */

enum cli_flag_type {
	CLI_FLAG_BOOL,   /* value is int *: -f, -f=true, -f=false */
	CLI_FLAG_STRING, /* value is const char **: -f=v, -f v */
};

struct cli_flag {
	const char *name; /* without dashes: "http-addr" */
	enum cli_flag_type type;
	void *value;      /* where the parsed value goes */
	const char *arg;  /* placeholder for usage text, e.g. "<address>" */
	const char *help; /* one line for usage text */
};

#define CLI_FLAGS_HELP 1 /* cli_flags_parse: -h/-help was given */

/* Parses argv[0..argc-1] (the arguments after the subcommand name) Go-style:
 * -name, --name, -name=value, -name value; flags may appear between
 * positional arguments; "--" ends flags.  Positional arguments are stored
 * in args (capacity argc; pointers into argv) and counted in *nargs.
 * Returns 0, CLI_FLAGS_HELP, or -1 with a message in err. */
int cli_flags_parse(const struct cli_flag *flags, size_t nflags, int argc,
                    char **argv, char **args, int *nargs, char *err,
                    size_t errlen);

/* Address of the agent's HTTP API: RUMOR_HTTP_ADDR, else CONSUL_HTTP_ADDR,
 * else CLI_DEFAULT_HTTP_ADDR.  The string is owned by the environment. */
const char *cli_default_http_addr(void);

/* Turns "http://host:port/" into "host:port" in out.  Returns 0, or -1 with
 * a message (https://, unix://, empty or too long). */
int cli_normalize_http_addr(const char *in, char *out, size_t outlen,
                            char *err, size_t errlen);

/* ---- members rendering (pure) ---------------------------------------- */

/* "none", "alive", "leaving", "left", "failed" or "unknown". */
const char *cli_member_status_name(long long status);

/* host:port, with IPv6 hosts in brackets; snprintf-style return. */
size_t cli_format_hostport(char *out, size_t outlen, const char *host,
                           long long port);

/* The members of `members` (a JSON array as /v1/agent/members returns) whose
 * status name matches the POSIX extended regex status_regex (NULL or ""
 * matches all), sorted by Name.  Returns a new array (caller json_decref's)
 * or NULL with a message in err (invalid regex, not an array). */
struct json_t *cli_members_select(const struct json_t *members,
                                  const char *status_regex, char *err,
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
