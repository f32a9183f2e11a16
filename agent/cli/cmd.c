/*
 * agent/cli/cmd.c — see cmd.h.
 *
 * Paranoia: everything that came from the agent (error bodies here, member
 * names and tags in the renderers) is printed with control characters
 * replaced, so a hostile node name or a proxy's error page cannot drive
 * the user's terminal.
 */
#include "agent/cli/cmd.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "agent/http/httpc.h"
#include "lib/xalloc.h"
#include "lib/err.h"

/*
 * Replaces in place rather than escaping, so the text never grows and fits the
 * buffer it came in; a '?' is enough to show that something was there.
 */
void cli_text_clean(char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			s[i] = '?';
	}
}

/* The usage text comes from ctx (cli_run copied it from the command
 * table), so a command never looks itself up in the table: the table is
 * above the commands, not beside them. */
int cli_cmd_parse(struct cli_ctx *ctx, const struct cli_flag *flags, size_t nflags, int argc,
                  char **argv, char ***args, int *nargs)
{
	char err[CLI_ERRLEN];
	int r;

	*args = xcalloc((size_t)argc + 1, sizeof(**args));
	r = cli_flags_parse(flags, nflags, argc, argv, *args, nargs, err, sizeof(err));
	if (r == CLI_FLAGS_HELP) {
		if (ctx->usage != NULL)
			fputs(ctx->usage, ctx->out);
		cli_flags_usage(ctx->out, flags, nflags);
		return 0;
	}
	if (r != 0) {
		fprintf(ctx->err, "%s\nRun 'rumor %s -h' for usage.\n", err, ctx->name);
		return 1;
	}
	if (cli_normalize_http_addr(ctx->http_addr, ctx->addr, sizeof(ctx->addr), err,
	                            sizeof(err)) != 0) {
		fprintf(ctx->err, "Error: %s\n", err);
		return 1;
	}
	return -1;
}

int cli_usage_error(struct cli_ctx *ctx, const char *msg)
{
	fprintf(ctx->err, "%s\nRun 'rumor %s -h' for usage.\n", msg, ctx->name);
	return 1;
}

/* The token goes in a header, so CR or LF in it would let a shell
 * variable inject headers: refused before anything is sent.  Connection
 * errors read as Go's ("connection refused", lower case) because scripts
 * match consul's wording. */
enum cli_api_result cli_api_call(struct cli_ctx *ctx, const char *method, const char *path,
                                 const void *body, size_t body_len, int timeout_ms,
                                 struct httpc_response *resp, char *msg, size_t msglen)
{
	char err[CLI_ERRLEN], tokhdr[600];
	const char *hdrs[2] = {NULL, NULL};
	struct httpc_options opts = {.timeout_ms = timeout_ms};

	if (ctx->token != NULL && *ctx->token != '\0') {
		if (strpbrk(ctx->token, "\r\n") != NULL ||
		    (size_t)snprintf(tokhdr, sizeof(tokhdr), "X-Consul-Token: %s", ctx->token) >=
		            sizeof(tokhdr)) {
			memset(resp, 0, sizeof(*resp));
			err_set(msg, msglen, "Error: invalid -token value");
			return CLI_API_CONN;
		}
		hdrs[0] = tokhdr;
		opts.headers = hdrs;
	}
	if (httpc_request_opts(ctx->addr, method, path, body, body_len, &opts, resp, err,
	                       sizeof(err)) != 0) {
		if (resp->error == HTTPC_E_CONNECT && resp->sys_errno != 0) {
			char why[128];

			snprintf(why, sizeof(why), "%s", strerror(resp->sys_errno));
			if (why[0] >= 'A' && why[0] <= 'Z')
				why[0] = (char)tolower((unsigned char)why[0]);
			err_set(msg, msglen, "Error connecting to agent at %s: %s", ctx->addr, why);
		} else {
			err_set(msg, msglen, "Error connecting to agent at %s: %s", ctx->addr, err);
		}
		return CLI_API_CONN;
	}
	if (resp->status < 200 || resp->status > 299) {
		size_t n = resp->body_len;

		while (n > 0 && isspace((unsigned char)resp->body[n - 1]))
			n--;
		resp->body[n] = '\0';
		resp->body_len = n;
		if (resp->body[0] != '\0')
			err_set(msg, msglen, "Unexpected response code: %d (%s)", resp->status,
			        resp->body);
		else
			err_set(msg, msglen, "Unexpected response code: %d", resp->status);
		if (msg != NULL && msglen > 0)
			cli_text_clean(msg, strlen(msg));
		return CLI_API_STATUS;
	}
	return CLI_API_OK;
}

/*
 * The serf-style commands print "<what>: <reason>" and exit 1, as serf's CLI does;
 * for an HTTP error the reason is the agent's own body, which is what the user
 * needs, rather than our "Unexpected response code".
 */
int cli_serf_call(struct cli_ctx *ctx, const char *what, const char *method, const char *path,
                  const void *body, size_t body_len, int timeout_ms, struct httpc_response *resp)
{
	char msg[CLI_ERRLEN];
	enum cli_api_result ar =
	        cli_api_call(ctx, method, path, body, body_len, timeout_ms, resp, msg, sizeof(msg));

	if (ar == CLI_API_OK)
		return 0;
	if (ar == CLI_API_STATUS)
		cli_status_text(resp, msg, sizeof(msg));
	fprintf(ctx->err, "%s: %s\n", what, msg);
	return 1;
}

void cli_status_text(const struct httpc_response *resp, char *out, size_t outlen)
{
	const char *body = resp->body ? resp->body : "";

	if (*body != '\0') {
		snprintf(out, outlen, "%s", body);
		cli_text_clean(out, strlen(out));
	} else {
		snprintf(out, outlen, "Unexpected response code: %d", resp->status);
	}
}

/*
 * One path segment (a member name, a check ID): '/' is escaped too, so a name
 * with a slash cannot reach a different endpoint.
 */
char *cli_escape_segment(const char *s)
{
	size_t n = httpc_escape(NULL, 0, s, HTTPC_ESCAPE_SEGMENT);
	char *p = xmalloc(n + 1);

	httpc_escape(p, n + 1, s, HTTPC_ESCAPE_SEGMENT);
	return p;
}
