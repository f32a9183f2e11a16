/*
 * agent/cli/cli_members.c — see cli_members.h.
 *
 * Output wording and columns follow `consul members`, so scripts that
 * grep consul's output keep working: the summary table shows consul's
 * Type/Build/Protocol/DC/Partition/Segment from serf tags, -detailed
 * shows every tag sorted by key.
 */
#include "agent/cli/cli_members.h"

#include <jansson.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "lib/err.h"

/* ---- small string builder -------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_pad(struct sbuf *b, size_t n)
{
	while (n-- > 0)
		sb_add(b, " ", 1);
}

/* Appends s with control characters (and DEL) replaced by '?'. */
static void sb_add_clean(struct sbuf *b, const char *s)
{
	size_t n = strlen(s), at = b->len;

	sb_add(b, s, n);
	if (!b->oom && n > 0)
		cli_text_clean(b->p + at, n);
}

static char *sb_finish(struct sbuf *b)
{
	if (b->oom) {
		free(b->p);
		return NULL;
	}
	if (b->p == NULL)
		return calloc(1, 1);
	return b->p;
}

size_t cli_format_hostport(char *out, size_t outlen, const char *host, long long port)
{
	int n;

	if (host == NULL)
		host = "";
	if (strchr(host, ':') != NULL)
		n = snprintf(out, outlen, "[%s]:%lld", host, port);
	else
		n = snprintf(out, outlen, "%s:%lld", host, port);
	return n < 0 ? 0 : (size_t)n;
}

/* ---- members rendering ----------------------------------------------- */

const char *cli_member_status_name(long long status)
{
	switch (status) {
	case 0:
		return "none";
	case 1:
		return "alive";
	case 2:
		return "leaving";
	case 3:
		return "left";
	case 4:
		return "failed";
	default:
		return "unknown";
	}
}

static const char *member_str(const json_t *m, const char *key)
{
	const char *s = json_string_value(json_object_get(m, key));

	return s ? s : "";
}

static const char *member_tag(const json_t *m, const char *key)
{
	const char *s = json_string_value(json_object_get(json_object_get(m, "Tags"), key));

	return s ? s : "";
}

/* The status of a member as a name; accepts Consul's integer or a string. */
static const char *member_status(const json_t *m)
{
	const json_t *st = json_object_get(m, "Status");

	if (json_is_integer(st))
		return cli_member_status_name(json_integer_value(st));
	if (json_is_string(st))
		return json_string_value(st);
	return "unknown";
}

static int cmp_member_name(const void *a, const void *b)
{
	const json_t *const *x = a, *const *y = b;

	return strcmp(member_str(*x, "Name"), member_str(*y, "Name"));
}

/*
 * Filters and sorts by name, as consul members does, so the output is stable
 * from run to run whatever order gossip holds members in. The regex is not
 * anchored, like Go's MatchString: "a" matches "alive" and "failed".
 */
json_t *cli_members_select(const json_t *members, const char *status_regex, char *err,
                           size_t errlen)
{
	regex_t re;
	int use_re = status_regex != NULL && *status_regex != '\0';
	json_t **items = NULL, *out = NULL;
	size_t i, n = 0, cnt;

	if (!json_is_array(members)) {
		err_set(err, errlen,
		        "unexpected response: members is not a "
		        "JSON array");
		return NULL;
	}
	if (use_re) {
		int rc = regcomp(&re, status_regex, REG_EXTENDED | REG_NOSUB);

		if (rc != 0) {
			char why[256];

			regerror(rc, &re, why, sizeof(why));
			err_set(err, errlen, "invalid status regex \"%s\": %s", status_regex, why);
			return NULL;
		}
	}
	cnt = json_array_size(members);
	items = calloc(cnt ? cnt : 1, sizeof(*items));
	if (items == NULL)
		goto oom;
	for (i = 0; i < cnt; i++) {
		json_t *m = json_array_get(members, i);

		if (!json_is_object(m))
			continue;
		if (use_re && regexec(&re, member_status(m), 0, NULL, 0) != 0)
			continue;
		items[n++] = m;
	}
	qsort(items, n, sizeof(*items), cmp_member_name);
	out = json_array();
	if (out == NULL)
		goto oom;
	for (i = 0; i < n; i++)
		if (json_array_append(out, items[i]) != 0)
			goto oom;
	free(items);
	if (use_re)
		regfree(&re);
	return out;
oom:
	json_decref(out);
	free(items);
	if (use_re)
		regfree(&re);
	err_set(err, errlen, "out of memory");
	return NULL;
}

/*
 * Column widths are computed on the cells as given and control bytes replaced
 * while copying, so a member name from the network cannot break the table or
 * drive the terminal.
 */
char *cli_table_render(const char *const *cells, size_t nrows, size_t ncols)
{
	struct sbuf b = {0};
	size_t *width, r, c;

	if (ncols == 0)
		return calloc(1, 1);
	width = calloc(ncols, sizeof(*width));
	if (width == NULL)
		return NULL;
	for (r = 0; r < nrows; r++)
		for (c = 0; c < ncols; c++) {
			const char *s = cells[r * ncols + c];
			size_t l = s ? strlen(s) : 0;

			if (l > width[c])
				width[c] = l;
		}
	for (r = 0; r < nrows; r++) {
		for (c = 0; c < ncols; c++) {
			const char *s = cells[r * ncols + c];

			if (s == NULL)
				s = "";
			sb_add_clean(&b, s);
			if (c + 1 < ncols)
				sb_pad(&b, width[c] + 2 - strlen(s));
		}
		sb_puts(&b, "\n");
	}
	free(width);
	return sb_finish(&b);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "k=v,k=v" sorted by key; malloc'd. */
static char *tags_text(const json_t *tags)
{
	struct sbuf b = {0};
	const char **keys;
	const char *k;
	json_t *v;
	size_t n = 0, i;

	if (!json_is_object(tags))
		return calloc(1, 1);
	keys = calloc(json_object_size(tags) + 1, sizeof(*keys));
	if (keys == NULL)
		return NULL;
	json_object_foreach((json_t *)tags, k, v) keys[n++] = k;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++) {
		const char *val = json_string_value(json_object_get(tags, keys[i]));

		if (i > 0)
			sb_puts(&b, ",");
		sb_puts(&b, keys[i]);
		sb_puts(&b, "=");
		sb_puts(&b, val ? val : "");
	}
	free(keys);
	return sb_finish(&b);
}

char *cli_members_table(const json_t *members, int detailed)
{
	static const char *const head[] = {"Node",     "Address", "Status",    "Type",   "Build",
	                                   "Protocol", "DC",      "Partition", "Segment"};
	static const char *const dhead[] = {"Node", "Address", "Status", "Tags"};
	size_t ncols = detailed ? 4 : 9;
	size_t nrows = json_array_size(members) + 1;
	size_t r, c, row;
	char **owned = NULL; /* cells we allocated, freed at the end */
	const char **cells;
	char *text = NULL;

	cells = calloc(nrows * ncols, sizeof(*cells));
	owned = calloc(nrows * ncols, sizeof(*owned));
	if (cells == NULL || owned == NULL)
		goto done;
	for (c = 0; c < ncols; c++)
		cells[c] = detailed ? dhead[c] : head[c];
	row = 1;
	for (r = 0; r + 1 < nrows; r++) {
		const json_t *m = json_array_get(members, r);
		const char **cell = cells + row * ncols;
		char **own = owned + row * ncols;
		const json_t *port = json_object_get(m, "Port");
		size_t alen;

		if (!json_is_object(m))
			continue;
		cell[0] = member_str(m, "Name");
		alen = cli_format_hostport(NULL, 0, member_str(m, "Addr"),
		                           json_integer_value(port)) +
		       1;
		own[1] = malloc(alen);
		if (own[1] == NULL)
			goto done;
		cli_format_hostport(own[1], alen, member_str(m, "Addr"), json_integer_value(port));
		cell[1] = own[1];
		cell[2] = member_status(m);
		if (detailed) {
			own[3] = tags_text(json_object_get(m, "Tags"));
			if (own[3] == NULL)
				goto done;
			cell[3] = own[3];
		} else {
			const char *build = member_tag(m, "build");
			const char *colon = strchr(build, ':');
			const char *vsn = member_tag(m, "vsn");

			cell[3] =
			        strcmp(member_tag(m, "role"), "consul") == 0 ? "server" : "client";
			own[4] = colon ? strndup(build, (size_t)(colon - build)) : strdup(build);
			if (own[4] == NULL)
				goto done;
			cell[4] = own[4];
			if (*vsn != '\0') {
				cell[5] = vsn;
			} else {
				own[5] = malloc(24);
				if (own[5] == NULL)
					goto done;
				snprintf(own[5], 24, "%lld",
				         (long long)json_integer_value(
				                 json_object_get(m, "ProtocolCur")));
				cell[5] = own[5];
			}
			cell[6] = member_tag(m, "dc");
			cell[7] = "default";
			cell[8] = "<default>";
		}
		row++;
	}
	text = cli_table_render(cells, row, ncols);
done:
	if (owned != NULL)
		for (r = 0; r < nrows * ncols; r++)
			free(owned[r]);
	free(owned);
	free(cells);
	return text;
}

char *cli_members_json(const json_t *members)
{
	char *s = json_dumps(members, JSON_INDENT(2));
	char *out;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	out = realloc(s, n + 2);
	if (out == NULL) {
		free(s);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	return out;
}

/* ---- commands ---------------------------------------------------------- */

/*
 * Tries every address and succeeds if any one worked, as consul join does; each
 * failure is reported with its address, and only "none joined" is exit 1.
 */
int cli_cmd_join(struct cli_ctx *ctx, int argc, char **argv)
{
	int wan = 0, nargs = 0, i, joined = 0, r;
	struct cli_flag flags[] = {
	        {"wan", CLI_FLAG_BOOL, &wan, NULL, "Join the WAN pool instead of the LAN pool."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs == 0) {
		r = cli_usage_error(ctx, "At least one address to join must be "
		                         "specified.");
		goto out;
	}
	for (i = 0; i < nargs; i++) {
		struct httpc_response resp;
		char msg[CLI_ERRLEN], path[1024];
		char *seg = cli_escape_segment(args[i]);
		enum cli_api_result ar;

		if (seg == NULL || (size_t)snprintf(path, sizeof(path), "/v1/agent/join/%s%s", seg,
		                                    wan ? "?wan=1" : "") >= sizeof(path)) {
			free(seg);
			fprintf(ctx->err, "Error joining address '%s': address too long\n",
			        args[i]);
			continue;
		}
		free(seg);
		ar = cli_api_call(ctx, "PUT", path, NULL, 0, CLI_LEAVE_TIMEOUT_MS, &resp, msg,
		                  sizeof(msg));
		if (ar == CLI_API_OK) {
			joined++;
		} else {
			if (ar == CLI_API_STATUS)
				cli_status_text(&resp, msg, sizeof(msg));
			fprintf(ctx->err, "Error joining address '%s': %s\n", args[i], msg);
		}
		httpc_response_free(&resp);
	}
	if (joined == 0) {
		fprintf(ctx->err, "Failed to join any nodes.\n");
		r = 1;
		goto out;
	}
	fprintf(ctx->out, "Successfully joined cluster by contacting %d nodes.\n", joined);
	r = 0;
out:
	free(args);
	return r;
}

int cli_cmd_leave(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	struct cli_flag flags[] = {CLI_HTTP_FLAGS(ctx)};
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char **args = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0) {
		r = cli_usage_error(ctx, "The leave command takes no arguments.");
		goto out;
	}
	if (cli_api_call(ctx, "PUT", "/v1/agent/leave", NULL, 0, CLI_LEAVE_TIMEOUT_MS, &resp, msg,
	                 sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error leaving: %s\n", msg);
		r = 1;
	} else {
		fprintf(ctx->out, "Graceful leave complete\n");
		r = 0;
	}
	httpc_response_free(&resp);
out:
	free(args);
	return r;
}

/*
 * The node name is one escaped path segment, so a name holding '/' or '?' cannot
 * turn into another endpoint or add a query parameter.
 */
int cli_cmd_force_leave(struct cli_ctx *ctx, int argc, char **argv)
{
	int prune = 0, wan = 0, nargs = 0, r;
	struct cli_flag flags[] = {
	        {"prune", CLI_FLAG_BOOL, &prune, NULL,
	         "Remove the node from the member list entirely instead of "
	         "marking it left."},
	        {"wan", CLI_FLAG_BOOL, &wan, NULL, "Act on the WAN pool instead of the LAN pool."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char msg[CLI_ERRLEN], path[1024];
	char **args = NULL;
	char *seg;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs != 1) {
		r = cli_usage_error(ctx, nargs == 0 ? "A node name must be specified to "
		                                      "force leave."
		                                    : "The force-leave command takes "
		                                      "exactly one node name.");
		goto out;
	}
	seg = cli_escape_segment(args[0]);
	if (seg == NULL ||
	    (size_t)snprintf(path, sizeof(path), "/v1/agent/force-leave/%s%s%s", seg,
	                     prune ? "?prune" : "",
	                     wan ? (prune ? "&wan=1" : "?wan=1") : "") >= sizeof(path)) {
		free(seg);
		fprintf(ctx->err, "Error force leaving: node name too long\n");
		r = 1;
		goto out;
	}
	free(seg);
	if (cli_api_call(ctx, "PUT", path, NULL, 0, 0, &resp, msg, sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error force leaving: %s\n", msg);
		r = 1;
	} else {
		r = 0;
	}
	httpc_response_free(&resp);
out:
	free(args);
	return r;
}

int cli_cmd_members(struct cli_ctx *ctx, int argc, char **argv)
{
	int detailed = 0, wan = 0, nargs = 0, r;
	const char *status = NULL, *format = "table";
	struct cli_flag flags[] = {
	        {"detailed", CLI_FLAG_BOOL, &detailed, NULL,
	         "Show every tag of each member instead of the summary "
	         "columns."},
	        {"status", CLI_FLAG_STRING, &status, "<regexp>",
	         "Only members whose status (alive, leaving, left, failed) "
	         "matches this POSIX extended regular expression."},
	        {"format", CLI_FLAG_STRING, &format, "<table|json>",
	         "Output format. Default: table."},
	        {"wan", CLI_FLAG_BOOL, &wan, NULL, "List the WAN pool instead of the LAN pool."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	json_t *all = NULL, *sel = NULL;
	json_error_t jerr;
	char *text = NULL;
	char **args = NULL;

	memset(&resp, 0, sizeof(resp));
	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0) {
		r = cli_usage_error(ctx, "The members command takes no arguments.");
		goto out;
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0) {
		fprintf(ctx->err, "Error: invalid -format \"%s\": want table or json\n", format);
		goto out;
	}
	/* Check the regex before talking to the agent. */
	all = json_array();
	sel = cli_members_select(all, status, msg, sizeof(msg));
	json_decref(all);
	all = NULL;
	if (sel == NULL) {
		fprintf(ctx->err, "Error: %s\n", msg);
		goto out;
	}
	json_decref(sel);
	sel = NULL;
	if (cli_api_call(ctx, "GET", wan ? "/v1/agent/members?wan=1" : "/v1/agent/members", NULL, 0,
	                 0, &resp, msg, sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error retrieving members: %s\n", msg);
		goto out;
	}
	all = json_loadb(resp.body, resp.body_len, 0, &jerr);
	if (all == NULL) {
		fprintf(ctx->err,
		        "Error retrieving members: invalid JSON from agent: %s "
		        "(line %d)\n",
		        jerr.text, jerr.line);
		goto out;
	}
	sel = cli_members_select(all, status, msg, sizeof(msg));
	if (sel == NULL) {
		fprintf(ctx->err, "Error retrieving members: %s\n", msg);
		goto out;
	}
	if (json_array_size(sel) == 0) {
		r = 2;
		goto out;
	}
	text = strcmp(format, "json") == 0 ? cli_members_json(sel)
	                                   : cli_members_table(sel, detailed);
	if (text == NULL) {
		fprintf(ctx->err, "Error: out of memory\n");
		goto out;
	}
	fputs(text, ctx->out);
	r = 0;
out:
	free(text);
	json_decref(sel);
	json_decref(all);
	httpc_response_free(&resp);
	free(args);
	return r;
}
