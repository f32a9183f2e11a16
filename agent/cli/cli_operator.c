/*
 * agent/cli/cli_operator.c — see cli_operator.h.
 *
 * Only `operator raft` exists (Consul's autopilot, keyring-less area and
 * usage subcommands have no counterpart yet); `rumor operator` without a
 * known subcommand prints the usage and exits 1, as Consul's help-only
 * commands do.  Each leaf runs with ctx->name and ctx->usage set to its own
 * ("operator raft list-peers"), so cli_cmd_parse's messages name it.
 */
#include "agent/cli/cli_operator.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/cli_members.h"
#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

static const char OPERATOR_USAGE[] =
        "Usage: rumor operator <subcommand> [options]\n\n"
        "  Cluster-level tools for operators of the server tier "
        "(docs/SERVERS.md).\n\n"
        "Subcommands:\n"
        "    raft list-peers     Display the current Raft peer configuration\n"
        "    raft remove-peer    Remove a server from the Raft configuration\n";

static const char RAFT_USAGE[] =
        "Usage: rumor operator raft <subcommand> [options]\n\n"
        "  Looks at or changes the servers' Raft configuration: which servers "
        "take\n  part in consensus, and which of them leads.\n\n"
        "Subcommands:\n"
        "    list-peers     Display the current Raft peer configuration\n"
        "    remove-peer    Remove a server from the Raft configuration\n";

static const char LIST_USAGE[] =
        "Usage: rumor operator raft list-peers [options]\n\n"
        "  Displays the current Raft peer configuration: one row per server "
        "with\n  its node name, Raft ID, server RPC address, whether it leads, "
        "whether it\n  votes, and its Raft protocol version.\n";

static const char REMOVE_USAGE[] =
        "Usage: rumor operator raft remove-peer [options]\n\n"
        "  Removes the server with the given -id or -address (IP:port of its "
        "server\n  RPC, as list-peers shows it) from the Raft configuration.\n\n"
        "  A failed server is normally removed by autopilot once gossip "
        "declares it\n  dead or it leaves; this is for the rare case where one "
        "stays behind in\n  the configuration. If the server still shows in "
        "`rumor members`,\n  `rumor force-leave` is the better tool.\n";

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s != NULL ? s : dflt;
}

char *cli_operator_peers_table(const json_t *config, char *err, size_t errlen)
{
	static const char *const head[] = {"Node",  "ID",    "Address",
	                                   "State", "Voter", "RaftProtocol"};
	const size_t ncols = sizeof(head) / sizeof(head[0]);
	const json_t *servers = json_object_get(config, "Servers");
	const json_t *s;
	size_t i, n;

	if (!json_is_array(servers)) {
		snprintf(err, errlen, "the answer has no Servers array");
		return NULL;
	}
	n = json_array_size(servers);
	const char **cells = xcalloc((n + 1) * ncols, sizeof(*cells));
	memcpy(cells, head, sizeof(head));
	json_array_foreach(servers, i, s)
	{
		const char **row = cells + (i + 1) * ncols;
		const char *proto = str_or(s, "ProtocolVersion", "");

		row[0] = str_or(s, "Node", "");
		row[1] = str_or(s, "ID", "");
		row[2] = str_or(s, "Address", "");
		row[3] = json_is_true(json_object_get(s, "Leader")) ? "leader" : "follower";
		row[4] = json_is_true(json_object_get(s, "Voter")) ? "true" : "false";
		row[5] = proto[0] != '\0' ? proto : "<=1";
	}
	char *text = cli_table_render(cells, n + 1, ncols);
	free(cells);
	if (text == NULL)
		snprintf(err, errlen, "out of memory");
	return text;
}

/* s as Go's %q writes it, for ASCII: quotes and backslashes escaped,
 * control characters as \n, \t, \r or \xNN; malloc'd. */
static char *go_quote(const char *s)
{
	char *out = xmalloc(strlen(s) * 4 + 3), *p = out;

	*p++ = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			*p++ = '\\';
			*p++ = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
		} else if (c < 0x20 || c == 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p++ = '"';
	*p = '\0';
	return out;
}

static int raft_list_peers(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, stale = 0, r;
	struct cli_flag flags[] = {
	        {"stale", CLI_FLAG_BOOL, &stale, NULL,
	         "Let any server answer from its own view, even without a leader. "
	         "Default: false."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char **args = NULL, *text = NULL;
	json_t *j = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0) {
		r = cli_usage_error(ctx, "The list-peers command takes no arguments.");
		goto out;
	}
	if (cli_api_call(ctx, "GET",
	                 stale ? "/v1/operator/raft/configuration?stale"
	                       : "/v1/operator/raft/configuration",
	                 NULL, 0, 0, &resp, msg, sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err,
		        "Error getting peers: Failed to retrieve raft configuration: %s\n", msg);
		httpc_response_free(&resp);
		goto out;
	}
	j = json_loadb(resp.body, resp.body_len, 0, NULL);
	httpc_response_free(&resp);
	text = j != NULL ? cli_operator_peers_table(j, msg, sizeof(msg)) : NULL;
	if (text == NULL) {
		fprintf(ctx->err,
		        "Error getting peers: Failed to retrieve raft configuration: "
		        "invalid answer from the agent at %s: %s\n",
		        ctx->addr, j == NULL ? "not JSON" : msg);
		goto out;
	}
	fputs(text, ctx->out);
	r = 0;
out:
	free(text);
	json_decref(j);
	free(args);
	return r;
}

/* Consul checks the pair after the flags parsed, with these words, and
 * prints them as "Error removing peer: ..." like an API error. */
static int remove_peer_call(struct cli_ctx *ctx, const char *id, const char *address)
{
	const char *key = address[0] != '\0' ? "address" : "id";
	const char *val = address[0] != '\0' ? address : id;
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	size_t el = httpc_escape(NULL, 0, val, 0) + 1;
	char *esc = xmalloc(el), *path = xmalloc(el + 64), *q;
	int r = 1;

	httpc_escape(esc, el, val, 0);
	snprintf(path, el + 64, "/v1/operator/raft/peer?%s=%s", key, esc);
	if (cli_api_call(ctx, "DELETE", path, NULL, 0, 0, &resp, msg, sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error removing peer: %s\n", msg);
	} else {
		q = go_quote(val);
		fprintf(ctx->out, "Removed peer with %s %s\n", key, q);
		free(q);
		r = 0;
	}
	httpc_response_free(&resp);
	free(path);
	free(esc);
	return r;
}

static int raft_remove_peer(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	const char *id = "", *address = "";
	struct cli_flag flags[] = {
	        {"address", CLI_FLAG_STRING, &address, "<ip:port>",
	         "The address to remove from the Raft configuration."},
	        {"id", CLI_FLAG_STRING, &id, "<id>",
	         "The ID to remove from the Raft configuration."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0)
		r = cli_usage_error(ctx, "The remove-peer command takes no arguments.");
	else if (address[0] == '\0' && id[0] == '\0')
		fprintf(ctx->err, "Error removing peer: an address or id is required for the "
		                  "peer to remove\n");
	else if (address[0] != '\0' && id[0] != '\0')
		fprintf(ctx->err, "Error removing peer: cannot give both an address and id\n");
	else
		r = remove_peer_call(ctx, id, address);
out:
	free(args);
	return r;
}

static int is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0;
}

/* No subcommand: the usage on stderr, exit 1; -h: on stdout, exit 0; an
 * unknown one: named, then the usage, exit 1. */
static int help_or_unknown(struct cli_ctx *ctx, const char *usage, int argc, char **argv)
{
	if (argc >= 1 && is_help(argv[0])) {
		fputs(usage, ctx->out);
		return 0;
	}
	if (argc >= 1)
		fprintf(ctx->err, "Unknown subcommand: %s\n\n", argv[0]);
	fputs(usage, ctx->err);
	return 1;
}

int cli_cmd_operator(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "raft") != 0)
		return help_or_unknown(ctx, OPERATOR_USAGE, argc, argv);
	argc--;
	argv++;
	if (argc >= 1 && strcmp(argv[0], "list-peers") == 0) {
		ctx->name = "operator raft list-peers";
		ctx->usage = LIST_USAGE;
		return raft_list_peers(ctx, argc - 1, argv + 1);
	}
	if (argc >= 1 && strcmp(argv[0], "remove-peer") == 0) {
		ctx->name = "operator raft remove-peer";
		ctx->usage = REMOVE_USAGE;
		return raft_remove_peer(ctx, argc - 1, argv + 1);
	}
	return help_or_unknown(ctx, RAFT_USAGE, argc, argv);
}
