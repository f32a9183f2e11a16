/*
 * agent/cli/flags.h — the CLI's one flag parser, Go's `flag` package as
 * consul's commands see it, and where a command finds its agent.
 *
 * Owns: parsing a command's arguments against a table of flags, printing
 * that table as usage text, and the defaults of the two flags every client
 * command takes (-http-addr from RUMOR_HTTP_ADDR / CONSUL_HTTP_ADDR, -token
 * from RUMOR_HTTP_TOKEN / CONSUL_HTTP_TOKEN).  No I/O but the usage text a
 * caller asks for; nothing here knows a command.
 *
 * Error convention: 0 or -1 with a message in the caller's err buffer
 * (cli_flags_parse also returns CLI_FLAGS_HELP).
 */
#ifndef RUMOR_AGENT_CLI_FLAGS_H
#define RUMOR_AGENT_CLI_FLAGS_H

#include <stddef.h>
#include <stdio.h>

#define CLI_DEFAULT_HTTP_ADDR "127.0.0.1:8500"

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
int cli_flags_parse(const struct cli_flag *flags, size_t nflags, int argc, char **argv, char **args,
                    int *nargs, char *err, size_t errlen);

/* Prints "\nOptions:\n\n" and each flag with its help wrapped at 76
 * columns to out; prints nothing when nflags is 0. */
void cli_flags_usage(FILE *out, const struct cli_flag *flags, size_t nflags);

/* Address of the agent's HTTP API: RUMOR_HTTP_ADDR, else CONSUL_HTTP_ADDR,
 * else CLI_DEFAULT_HTTP_ADDR.  The string is owned by the environment. */
const char *cli_default_http_addr(void);

/* ACL token: RUMOR_HTTP_TOKEN, else CONSUL_HTTP_TOKEN, else NULL.  The
 * string is owned by the environment. */
const char *cli_default_token(void);

/* Turns "http://host:port/" into "host:port" in out.  Returns 0, or -1 with
 * a message (https://, unix://, empty or too long). */
int cli_normalize_http_addr(const char *in, char *out, size_t outlen, char *err, size_t errlen);

#endif
