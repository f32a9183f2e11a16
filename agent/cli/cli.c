/*
 * cli — client subcommands; see cli.h for the contract.
 *
 * Every command follows one shape: declare its flags (plus the two HTTP
 * flags every command takes), parse, validate positional arguments, make the
 * HTTP calls through api_call(), render with a pure function, print.  Output
 * wording follows `consul` where the command exists there, so scripts that
 * grep consul's output keep working.
 *
 * Paranoia: everything that came from the agent (member names, tags, error
 * bodies) is printed with control characters replaced, so a hostile node
 * name cannot drive the user's terminal.
 */
#include "agent/cli/cli.h"

#include "agent/cli/cli_ops.h"
#include "agent/config.h"
#include "agent/http/httpc.h"
#include "agent/cli/cli_kv.h"

#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef RUMOR_VERSION
#define RUMOR_VERSION "0.0.0"
#endif

#define CLI_ERRLEN 512
#define CLI_LEAVE_TIMEOUT_MS 30000

struct cli_ctx {
	FILE *out;
	FILE *err;
	const char *name;      /* subcommand name */
	const char *http_addr; /* as given */
	const char *token;
	char addr[300];        /* normalized host:port */
};

struct cli_command {
	const char *name;
	const char *synopsis;
	const char *usage; /* "Usage: ..." and a description, '\n'-ended */
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
};

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

/* Copies s with control characters (and DEL) replaced by '?'. */
static void sb_add_clean(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char ch = (c < 0x20 || c == 0x7f) ? '?' : (char)c;

		sb_add(b, &ch, 1);
	}
}

/* ---- flags ----------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE",
		                           "True" };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE",
		                          "False" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

int cli_flags_parse(const struct cli_flag *flags, size_t nflags, int argc,
                    char **argv, char **args, int *nargs, char *err,
                    size_t errlen)
{
	int i, only_args = 0;

	*nargs = 0;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *name, *eq;
		const struct cli_flag *f = NULL;
		size_t nlen, k;

		if (only_args || a[0] != '-' || a[1] == '\0') {
			args[(*nargs)++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_args = 1;
			continue;
		}
		name = a + 1;
		if (*name == '-')
			name++;
		eq = strchr(name, '=');
		nlen = eq ? (size_t)(eq - name) : strlen(name);
		if (nlen == 0 || name[0] == '-' || name[0] == '=') {
			set_err(err, errlen, "bad flag syntax: %s", a);
			return -1;
		}
		for (k = 0; k < nflags; k++) {
			if (strlen(flags[k].name) == nlen &&
			    strncmp(flags[k].name, name, nlen) == 0) {
				f = &flags[k];
				break;
			}
		}
		if (f == NULL) {
			if ((nlen == 1 && strncmp(name, "h", 1) == 0) ||
			    (nlen == 4 && strncmp(name, "help", 4) == 0))
				return CLI_FLAGS_HELP;
			set_err(err, errlen, "flag provided but not defined: -%.*s",
			        (int)nlen, name);
			return -1;
		}
		if (f->type == CLI_FLAG_BOOL) {
			int v = 1;

			if (eq != NULL && parse_bool(eq + 1, &v) != 0) {
				set_err(err, errlen,
				        "invalid boolean value \"%s\" for -%s",
				        eq + 1, f->name);
				return -1;
			}
			*(int *)f->value = v;
		} else {
			if (eq != NULL) {
				*(const char **)f->value = eq + 1;
			} else if (i + 1 < argc) {
				*(const char **)f->value = argv[++i];
			} else {
				set_err(err, errlen, "flag needs an argument: -%s",
				        f->name);
				return -1;
			}
		}
	}
	return 0;
}

/* Prints text word-wrapped at `width` columns, each line indented. */
static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
	const char *p = text;

	while (*p) {
		const char *end = p, *brk = NULL;
		int col = indent;

		while (*end && (col < width || brk == NULL)) {
			if (*end == ' ')
				brk = end;
			end++;
			col++;
		}
		if (*end == '\0' || brk == NULL)
			brk = end;
		fprintf(out, "%*s%.*s\n", indent, "", (int)(brk - p), p);
		p = brk;
		while (*p == ' ')
			p++;
	}
}

static void print_flags(FILE *out, const struct cli_flag *flags,
                        size_t nflags)
{
	size_t i;

	if (nflags == 0)
		return;
	fprintf(out, "\nOptions:\n\n");
	for (i = 0; i < nflags; i++) {
		if (flags[i].type == CLI_FLAG_STRING)
			fprintf(out, "  -%s=%s\n", flags[i].name,
			        flags[i].arg ? flags[i].arg : "<value>");
		else
			fprintf(out, "  -%s\n", flags[i].name);
		print_wrapped(out, flags[i].help, 5, 76);
		fputc('\n', out);
	}
}

/* The flags every command takes; `ctx` is a struct cli_ctx *. */
#define CLI_HTTP_FLAGS(ctx)                                                   \
	{ "http-addr", CLI_FLAG_STRING, &(ctx)->http_addr, "<address>",       \
	  "Address of the agent's HTTP API (host:port, optional http://). "   \
	  "Default: $RUMOR_HTTP_ADDR, $CONSUL_HTTP_ADDR or "                  \
	  CLI_DEFAULT_HTTP_ADDR "." },                                        \
	{ "token", CLI_FLAG_STRING, &(ctx)->token, "<value>",                 \
	  "ACL token sent as X-Consul-Token. Default: $RUMOR_HTTP_TOKEN or "  \
	  "$CONSUL_HTTP_TOKEN." }

static const struct cli_command *find_command(const char *name);

/* Parses flags and the HTTP address; returns -1 to go on, with *args
 * (allocated here; the caller frees it) holding *nargs positional
 * arguments, or the exit code (0 after printing help, 1 after an error). */
static int parse_common(struct cli_ctx *ctx, const struct cli_flag *flags,
                        size_t nflags, int argc, char **argv, char ***args,
                        int *nargs)
{
	const struct cli_command *cmd = find_command(ctx->name);
	char err[CLI_ERRLEN];
	int r;

	*args = calloc((size_t)argc + 1, sizeof(**args));
	if (*args == NULL) {
		fprintf(ctx->err, "Error: out of memory\n");
		return 1;
	}
	r = cli_flags_parse(flags, nflags, argc, argv, *args, nargs, err,
	                    sizeof(err));
	if (r == CLI_FLAGS_HELP) {
		if (cmd != NULL)
			fputs(cmd->usage, ctx->out);
		print_flags(ctx->out, flags, nflags);
		return 0;
	}
	if (r != 0) {
		fprintf(ctx->err, "%s\nRun 'rumor %s -h' for usage.\n", err,
		        ctx->name);
		return 1;
	}
	if (cli_normalize_http_addr(ctx->http_addr, ctx->addr,
	                            sizeof(ctx->addr), err,
	                            sizeof(err)) != 0) {
		fprintf(ctx->err, "Error: %s\n", err);
		return 1;
	}
	return -1;
}

static int usage_error(struct cli_ctx *ctx, const char *msg)
{
	fprintf(ctx->err, "%s\nRun 'rumor %s -h' for usage.\n", msg,
	        ctx->name);
	return 1;
}

/* ---- addresses ------------------------------------------------------- */

const char *cli_default_http_addr(void)
{
	const char *v = getenv("RUMOR_HTTP_ADDR");

	if (v == NULL || *v == '\0')
		v = getenv("CONSUL_HTTP_ADDR");
	if (v == NULL || *v == '\0')
		v = CLI_DEFAULT_HTTP_ADDR;
	return v;
}

static const char *default_token(void)
{
	const char *v = getenv("RUMOR_HTTP_TOKEN");

	if (v == NULL || *v == '\0')
		v = getenv("CONSUL_HTTP_TOKEN");
	return (v != NULL && *v != '\0') ? v : NULL;
}

int cli_normalize_http_addr(const char *in, char *out, size_t outlen,
                            char *err, size_t errlen)
{
	const char *s = in ? in : "";
	size_t n;

	if (strncasecmp(s, "http://", 7) == 0) {
		s += 7;
	} else if (strstr(s, "://") != NULL) {
		set_err(err, errlen,
		        "unsupported scheme in HTTP address \"%s\" (only "
		        "http:// is supported)",
		        s);
		return -1;
	}
	n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		n--;
	if (n == 0) {
		set_err(err, errlen, "empty HTTP address");
		return -1;
	}
	if (memchr(s, '/', n) != NULL) {
		set_err(err, errlen,
		        "HTTP address \"%s\" must be host:port without a path", s);
		return -1;
	}
	if (n >= outlen) {
		set_err(err, errlen, "HTTP address too long");
		return -1;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

size_t cli_format_hostport(char *out, size_t outlen, const char *host,
                           long long port)
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

/* ---- HTTP ------------------------------------------------------------ */

enum api_result { API_OK = 0, API_CONN = -1, API_STATUS = 1 };

/* Makes one call.  API_OK: 2xx and *resp holds the answer.  API_CONN: no
 * answer; msg says "Error connecting to agent at ...".  API_STATUS: non-2xx;
 * msg says "Unexpected response code: N (body)" and *resp holds it too.
 * The caller frees resp in every case. */
static enum api_result api_call(struct cli_ctx *ctx, const char *method,
                                const char *path, const void *body,
                                size_t body_len, int timeout_ms,
                                struct httpc_response *resp, char *msg,
                                size_t msglen)
{
	char err[CLI_ERRLEN], tokhdr[600];
	const char *hdrs[2] = { NULL, NULL };
	struct httpc_options opts = { .timeout_ms = timeout_ms };

	if (ctx->token != NULL && *ctx->token != '\0') {
		if (strpbrk(ctx->token, "\r\n") != NULL ||
		    (size_t)snprintf(tokhdr, sizeof(tokhdr),
		                     "X-Consul-Token: %s",
		                     ctx->token) >= sizeof(tokhdr)) {
			memset(resp, 0, sizeof(*resp));
			set_err(msg, msglen, "Error: invalid -token value");
			return API_CONN;
		}
		hdrs[0] = tokhdr;
		opts.headers = hdrs;
	}
	if (httpc_request_opts(ctx->addr, method, path, body, body_len, &opts,
	                       resp, err, sizeof(err)) != 0) {
		if (resp->error == HTTPC_E_CONNECT && resp->sys_errno != 0) {
			char why[128];

			snprintf(why, sizeof(why), "%s",
			         strerror(resp->sys_errno));
			if (why[0] >= 'A' && why[0] <= 'Z')
				why[0] = (char)tolower((unsigned char)why[0]);
			set_err(msg, msglen,
			        "Error connecting to agent at %s: %s", ctx->addr,
			        why);
		} else {
			set_err(msg, msglen,
			        "Error connecting to agent at %s: %s", ctx->addr,
			        err);
		}
		return API_CONN;
	}
	if (resp->status < 200 || resp->status > 299) {
		struct sbuf b = { 0 };
		size_t n = resp->body_len;
		char *text;

		while (n > 0 && isspace((unsigned char)resp->body[n - 1]))
			n--;
		resp->body[n] = '\0';
		resp->body_len = n;
		sb_add_clean(&b, resp->body);
		text = sb_finish(&b);
		if (text != NULL && *text != '\0')
			set_err(msg, msglen, "Unexpected response code: %d (%s)",
			        resp->status, text);
		else
			set_err(msg, msglen, "Unexpected response code: %d",
			        resp->status);
		free(text);
		return API_STATUS;
	}
	return API_OK;
}

/* The server's error text, cleaned, or "Unexpected response code: N". */
static void status_text(const struct httpc_response *resp, char *out,
                        size_t outlen)
{
	struct sbuf b = { 0 };
	char *text;

	sb_add_clean(&b, resp->body ? resp->body : "");
	text = sb_finish(&b);
	if (text != NULL && *text != '\0')
		snprintf(out, outlen, "%s", text);
	else
		snprintf(out, outlen, "Unexpected response code: %d",
		         resp->status);
	free(text);
}

/* Escapes s as one path segment into a malloc'd string. */
static char *escape_segment(const char *s)
{
	size_t n = httpc_escape(NULL, 0, s, HTTPC_ESCAPE_SEGMENT);
	char *p = malloc(n + 1);

	if (p != NULL)
		httpc_escape(p, n + 1, s, HTTPC_ESCAPE_SEGMENT);
	return p;
}

/* ---- members rendering ----------------------------------------------- */

const char *cli_member_status_name(long long status)
{
	switch (status) {
	case 0: return "none";
	case 1: return "alive";
	case 2: return "leaving";
	case 3: return "left";
	case 4: return "failed";
	default: return "unknown";
	}
}

static const char *member_str(const json_t *m, const char *key)
{
	const char *s = json_string_value(json_object_get(m, key));

	return s ? s : "";
}

static const char *member_tag(const json_t *m, const char *key)
{
	const char *s =
	        json_string_value(json_object_get(json_object_get(m, "Tags"),
	                                          key));

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

json_t *cli_members_select(const json_t *members, const char *status_regex,
                           char *err, size_t errlen)
{
	regex_t re;
	int use_re = status_regex != NULL && *status_regex != '\0';
	json_t **items = NULL, *out = NULL;
	size_t i, n = 0, cnt;

	if (!json_is_array(members)) {
		set_err(err, errlen, "unexpected response: members is not a "
		                     "JSON array");
		return NULL;
	}
	if (use_re) {
		int rc = regcomp(&re, status_regex, REG_EXTENDED | REG_NOSUB);

		if (rc != 0) {
			char why[256];

			regerror(rc, &re, why, sizeof(why));
			set_err(err, errlen, "invalid status regex \"%s\": %s",
			        status_regex, why);
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
	set_err(err, errlen, "out of memory");
	return NULL;
}

char *cli_table_render(const char *const *cells, size_t nrows, size_t ncols)
{
	struct sbuf b = { 0 };
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
	struct sbuf b = { 0 };
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
		const char *val = json_string_value(json_object_get(tags,
		                                                    keys[i]));

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
	static const char *const head[] = { "Node",     "Address", "Status",
		                            "Type",     "Build",   "Protocol",
		                            "DC",       "Partition",
		                            "Segment" };
	static const char *const dhead[] = { "Node", "Address", "Status",
		                             "Tags" };
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
		                           json_integer_value(port)) + 1;
		own[1] = malloc(alen);
		if (own[1] == NULL)
			goto done;
		cli_format_hostport(own[1], alen, member_str(m, "Addr"),
		                    json_integer_value(port));
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

			cell[3] = strcmp(member_tag(m, "role"), "consul") == 0
			                  ? "server"
			                  : "client";
			own[4] = colon ? strndup(build, (size_t)(colon - build))
			               : strdup(build);
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

/* ---- commands -------------------------------------------------------- */

static int cmd_join(struct cli_ctx *ctx, int argc, char **argv)
{
	int wan = 0, nargs = 0, i, joined = 0, r;
	struct cli_flag flags[] = {
		{ "wan", CLI_FLAG_BOOL, &wan, NULL,
		  "Join the WAN pool instead of the LAN pool." },
		CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs == 0) {
		r = usage_error(ctx, "At least one address to join must be "
		                     "specified.");
		goto out;
	}
	for (i = 0; i < nargs; i++) {
		struct httpc_response resp;
		char msg[CLI_ERRLEN], path[1024];
		char *seg = escape_segment(args[i]);
		enum api_result ar;

		if (seg == NULL ||
		    (size_t)snprintf(path, sizeof(path), "/v1/agent/join/%s%s",
		                     seg, wan ? "?wan=1" : "") >= sizeof(path)) {
			free(seg);
			fprintf(ctx->err,
			        "Error joining address '%s': address too long\n",
			        args[i]);
			continue;
		}
		free(seg);
		ar = api_call(ctx, "PUT", path, NULL, 0, CLI_LEAVE_TIMEOUT_MS,
		              &resp, msg, sizeof(msg));
		if (ar == API_OK) {
			joined++;
		} else {
			if (ar == API_STATUS)
				status_text(&resp, msg, sizeof(msg));
			fprintf(ctx->err, "Error joining address '%s': %s\n",
			        args[i], msg);
		}
		httpc_response_free(&resp);
	}
	if (joined == 0) {
		fprintf(ctx->err, "Failed to join any nodes.\n");
		r = 1;
		goto out;
	}
	fprintf(ctx->out, "Successfully joined cluster by contacting %d nodes.\n",
	        joined);
	r = 0;
out:
	free(args);
	return r;
}

static int cmd_leave(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	struct cli_flag flags[] = { CLI_HTTP_FLAGS(ctx) };
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char **args = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0) {
		r = usage_error(ctx, "The leave command takes no arguments.");
		goto out;
	}
	if (api_call(ctx, "PUT", "/v1/agent/leave", NULL, 0,
	             CLI_LEAVE_TIMEOUT_MS, &resp, msg, sizeof(msg)) != API_OK) {
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

static int cmd_force_leave(struct cli_ctx *ctx, int argc, char **argv)
{
	int prune = 0, wan = 0, nargs = 0, r;
	struct cli_flag flags[] = {
		{ "prune", CLI_FLAG_BOOL, &prune, NULL,
		  "Remove the node from the member list entirely instead of "
		  "marking it left." },
		{ "wan", CLI_FLAG_BOOL, &wan, NULL,
		  "Act on the WAN pool instead of the LAN pool." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char msg[CLI_ERRLEN], path[1024];
	char **args = NULL;
	char *seg;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs != 1) {
		r = usage_error(ctx, nargs == 0
		                             ? "A node name must be specified to "
		                               "force leave."
		                             : "The force-leave command takes "
		                               "exactly one node name.");
		goto out;
	}
	seg = escape_segment(args[0]);
	if (seg == NULL ||
	    (size_t)snprintf(path, sizeof(path), "/v1/agent/force-leave/%s%s%s",
	                     seg, prune ? "?prune" : "",
	                     wan ? (prune ? "&wan=1" : "?wan=1") : "") >=
	            sizeof(path)) {
		free(seg);
		fprintf(ctx->err, "Error force leaving: node name too long\n");
		r = 1;
		goto out;
	}
	free(seg);
	if (api_call(ctx, "PUT", path, NULL, 0, 0, &resp, msg, sizeof(msg)) !=
	    API_OK) {
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

static int cmd_members(struct cli_ctx *ctx, int argc, char **argv)
{
	int detailed = 0, wan = 0, nargs = 0, r;
	const char *status = NULL, *format = "table";
	struct cli_flag flags[] = {
		{ "detailed", CLI_FLAG_BOOL, &detailed, NULL,
		  "Show every tag of each member instead of the summary "
		  "columns." },
		{ "status", CLI_FLAG_STRING, &status, "<regexp>",
		  "Only members whose status (alive, leaving, left, failed) "
		  "matches this POSIX extended regular expression." },
		{ "format", CLI_FLAG_STRING, &format, "<table|json>",
		  "Output format. Default: table." },
		{ "wan", CLI_FLAG_BOOL, &wan, NULL,
		  "List the WAN pool instead of the LAN pool." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	json_t *all = NULL, *sel = NULL;
	json_error_t jerr;
	char *text = NULL;
	char **args = NULL;

	memset(&resp, 0, sizeof(resp));
	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0) {
		r = usage_error(ctx, "The members command takes no arguments.");
		goto out;
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0) {
		fprintf(ctx->err,
		        "Error: invalid -format \"%s\": want table or json\n",
		        format);
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
	if (api_call(ctx, "GET", wan ? "/v1/agent/members?wan=1"
	                             : "/v1/agent/members",
	             NULL, 0, 0, &resp, msg, sizeof(msg)) != API_OK) {
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

/* ---- services ---------------------------------------------------------- */

/* PUT one service definition (a JSON object) to the agent. */
static int register_one(struct cli_ctx *ctx, json_t *def)
{
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char *body = json_dumps(def, JSON_COMPACT);
	const char *name = json_string_value(json_object_get(def, "Name"));
	int r = 0;

	if (name == NULL)
		name = json_string_value(json_object_get(def, "name"));
	if (body == NULL)
		return 1;
	if (api_call(ctx, "PUT", "/v1/agent/service/register", body, strlen(body),
	             CLI_LEAVE_TIMEOUT_MS, &resp, msg, sizeof(msg)) != API_OK) {
		fprintf(ctx->err, "Error registering service \"%s\": %s\n",
		        name ? name : "?", msg);
		r = 1;
	} else {
		fprintf(ctx->out, "Registered service: %s\n", name ? name : "?");
	}
	httpc_response_free(&resp);
	free(body);
	return r;
}

static int cmd_services(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *name = NULL, *id = NULL, *address = NULL, *port = NULL,
	           *tags = NULL;
	int nargs = 0, r;
	struct cli_flag flags[] = {
		{ "name", CLI_FLAG_STRING, &name, "<name>",
		  "register: name of the service (instead of a FILE)." },
		{ "id", CLI_FLAG_STRING, &id, "<id>",
		  "register: ID of the service. Default: the name." },
		{ "address", CLI_FLAG_STRING, &address, "<addr>",
		  "register: address of the service. Default: the node's." },
		{ "port", CLI_FLAG_STRING, &port, "<port>",
		  "register: port of the service." },
		{ "tag", CLI_FLAG_STRING, &tags, "<tag,...>",
		  "register: comma-separated tags." },
		CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;
	const char *sub;

	if (argc < 1 || (strcmp(argv[0], "register") != 0 &&
	                 strcmp(argv[0], "deregister") != 0)) {
		if (argc >= 1 && (strcmp(argv[0], "-h") == 0 ||
		                  strcmp(argv[0], "-help") == 0 ||
		                  strcmp(argv[0], "--help") == 0)) {
			fputs(find_command("services")->usage, ctx->out);
			return 0;
		}
		return usage_error(ctx, "Usage: rumor services register|deregister ...");
	}
	sub = argv[0];
	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc - 1,
	                 argv + 1, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 0;
	if (strcmp(sub, "deregister") == 0) {
		struct httpc_response resp;
		char msg[CLI_ERRLEN], path[1200], esc[1000];
		const char *sid = nargs == 1 ? args[0] : id;
		if (sid == NULL || nargs > 1) {
			r = usage_error(ctx, "deregister takes one service ID.");
			goto out;
		}
		httpc_escape(esc, sizeof(esc), sid, 0);
		snprintf(path, sizeof(path), "/v1/agent/service/deregister/%s", esc);
		if (api_call(ctx, "PUT", path, NULL, 0, CLI_LEAVE_TIMEOUT_MS, &resp, msg,
		             sizeof(msg)) != API_OK) {
			fprintf(ctx->err, "Error deregistering service \"%s\": %s\n",
			        sid, msg);
			r = 1;
		} else {
			fprintf(ctx->out, "Deregistered service: %s\n", sid);
		}
		httpc_response_free(&resp);
		goto out;
	}
	if (name != NULL) {
		json_t *def = json_pack("{s:s}", "Name", name);
		if (nargs > 0) {
			r = usage_error(ctx, "Give either -name or FILE, not both.");
			json_decref(def);
			goto out;
		}
		if (id != NULL)
			json_object_set_new(def, "ID", json_string(id));
		if (address != NULL)
			json_object_set_new(def, "Address", json_string(address));
		if (port != NULL) {
			char *end;
			long p = strtol(port, &end, 10);
			if (*end != '\0' || p < 0 || p > 65535) {
				r = usage_error(ctx, "Invalid -port.");
				json_decref(def);
				goto out;
			}
			json_object_set_new(def, "Port", json_integer(p));
		}
		if (tags != NULL) {
			json_t *arr = json_array();
			char *copy = strdup(tags), *save = NULL;
			for (char *t = strtok_r(copy, ",", &save); t != NULL;
			     t = strtok_r(NULL, ",", &save))
				json_array_append_new(arr, json_string(t));
			free(copy);
			json_object_set_new(def, "Tags", arr);
		}
		r = register_one(ctx, def);
		json_decref(def);
		goto out;
	}
	if (nargs == 0) {
		r = usage_error(ctx, "register needs -name or a FILE.");
		goto out;
	}
	for (int i = 0; i < nargs && r == 0; i++) {
		json_error_t je;
		json_t *root = json_load_file(args[i], 0, &je);
		json_t *one, *many;
		if (root == NULL) {
			fprintf(ctx->err, "Error reading %s: line %d: %s\n", args[i],
			        je.line, je.text);
			r = 1;
			break;
		}
		one = json_object_get(root, "service");
		many = json_object_get(root, "services");
		if (json_is_object(one)) {
			r = register_one(ctx, one);
		} else if (json_is_array(many)) {
			size_t k;
			json_t *d;
			json_array_foreach(many, k, d) {
				if (r == 0)
					r = register_one(ctx, d);
			}
		} else {
			r = register_one(ctx, root);
		}
		json_decref(root);
	}
out:
	free(args);
	return r;
}

static int cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	char err[CLI_ERRLEN];

	if (args == NULL)
		return 1;
	r = cli_flags_parse(NULL, 0, argc, argv, args, &nargs, err,
	                    sizeof(err));
	free(args);
	if (r == CLI_FLAGS_HELP) {
		fputs(find_command("version")->usage, ctx->out);
		return 0;
	}
	if (r != 0)
		return usage_error(ctx, err);
	if (nargs > 0)
		return usage_error(ctx, "The version command takes no arguments.");
	fprintf(ctx->out, "rumor v%s\n", RUMOR_VERSION);
	fprintf(ctx->out, "Protocol 2 spoken by default, understands 2 to 5 "
	                  "(agent will automatically use protocol >2 when "
	                  "speaking to compatible agents)\n");
	return 0;
}

/* ---- operating: monitor, info (helpers in agent/cli_ops.c) ------------ */

static int cmd_monitor(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r, json = 0;
	const char *level = "info";
	struct cli_flag flags[] = {
		{ "log-level", CLI_FLAG_STRING, &level, "<level>",
		  "Lowest level of the lines to stream: trace, debug, info, warn "
		  "or err. Independent of the agent's own -log-level. Default: "
		  "info." },
		{ "log-json", CLI_FLAG_BOOL, &json, NULL,
		  "Stream the lines as JSON objects." },
		CLI_HTTP_FLAGS(ctx),
	};
	char msg[CLI_ERRLEN], path[256], *lv;
	char **args = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0) {
		r = usage_error(ctx, "The monitor command takes no arguments.");
		goto out;
	}
	lv = escape_segment(level);
	if (lv == NULL) {
		r = 1;
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/agent/monitor?loglevel=%s%s", lv,
	         json ? "&logjson" : "");
	free(lv);
	if (cli_ops_stream(ctx->addr, path, ctx->token, 0, ctx->out, msg,
	                   sizeof(msg)) != 0) {
		fprintf(ctx->err, "%s\n", msg);
		r = 1;
		goto out;
	}
	fprintf(ctx->err, "==> Remote side ended the monitor! This usually "
	                  "means that the\n    remote side has exited or "
	                  "crashed.\n");
	r = 0;
out:
	free(args);
	return r;
}

/* Number of entries in the JSON object at path, or -1 if unavailable. */
static long long count_entries(struct cli_ctx *ctx, const char *path)
{
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	long long n = -1;
	json_t *j;

	if (api_call(ctx, "GET", path, NULL, 0, 0, &resp, msg,
	             sizeof(msg)) == API_OK) {
		j = json_loadb(resp.body, resp.body_len, 0, NULL);
		if (json_is_object(j))
			n = (long long)json_object_size(j);
		json_decref(j);
	}
	httpc_response_free(&resp);
	return n;
}

static int cmd_info(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	struct cli_flag flags[] = { CLI_HTTP_FLAGS(ctx) };
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	char **args = NULL;
	json_t *self = NULL, *metrics = NULL;
	char *text = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs > 0) {
		r = usage_error(ctx, "The info command takes no arguments.");
		goto out;
	}
	if (api_call(ctx, "GET", "/v1/agent/self", NULL, 0, 0, &resp, msg,
	             sizeof(msg)) != API_OK) {
		fprintf(ctx->err, "Error querying agent: %s\n", msg);
		httpc_response_free(&resp);
		goto out;
	}
	self = json_loadb(resp.body, resp.body_len, 0, NULL);
	httpc_response_free(&resp);
	if (api_call(ctx, "GET", "/v1/agent/metrics", NULL, 0, 0, &resp, msg,
	             sizeof(msg)) != API_OK) {
		fprintf(ctx->err, "Error querying agent metrics: %s\n", msg);
		httpc_response_free(&resp);
		goto out;
	}
	metrics = json_loadb(resp.body, resp.body_len, 0, NULL);
	httpc_response_free(&resp);
	if (!json_is_object(self) || !json_is_object(metrics)) {
		fprintf(ctx->err, "Error: the agent at %s sent JSON that is not "
		                  "an object; is it a rumor agent?\n", ctx->addr);
		goto out;
	}
	text = cli_ops_info_text(self, metrics,
	                         count_entries(ctx, "/v1/agent/services"),
	                         count_entries(ctx, "/v1/agent/checks"));
	if (text == NULL)
		goto out;
	fputs(text, ctx->out);
	r = 0;
out:
	free(text);
	json_decref(self);
	json_decref(metrics);
	free(args);
	return r;
}

/* ---- serf: event, query, tags, keygen, keyring ----------------------- */

/* Calls the agent; on failure prints "<what>: <error>" and returns 1. */
static int serf_call(struct cli_ctx *ctx, const char *what, const char *method,
                     const char *path, const void *body, size_t body_len,
                     int timeout_ms, struct httpc_response *resp)
{
	char msg[CLI_ERRLEN];
	enum api_result ar = api_call(ctx, method, path, body, body_len,
	                              timeout_ms, resp, msg, sizeof(msg));

	if (ar == API_OK)
		return 0;
	if (ar == API_STATUS)
		status_text(resp, msg, sizeof(msg));
	fprintf(ctx->err, "%s: %s\n", what, msg);
	return 1;
}

static int cmd_event(struct cli_ctx *ctx, int argc, char **argv)
{
	int coalesce = 1, nargs = 0, r;
	struct cli_flag flags[] = {
		{ "coalesce", CLI_FLAG_BOOL, &coalesce, NULL,
		  "Whether handlers may coalesce this event with others of "
		  "the same name. Default: true." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char path[1024];
	char **args = NULL;
	char *seg = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs < 1 || nargs > 2) {
		r = usage_error(ctx, "An event name and an optional payload "
		                     "must be specified.");
		goto out;
	}
	seg = escape_segment(args[0]);
	if (seg == NULL || (size_t)snprintf(path, sizeof(path),
	                                    "/v1/event/fire/%s%s", seg,
	                                    coalesce ? "" : "?coalesce=false")
	                           >= sizeof(path)) {
		r = usage_error(ctx, "Event name too long.");
		goto out;
	}
	memset(&resp, 0, sizeof(resp));
	r = serf_call(ctx, "Error sending event", "PUT", path,
	              nargs > 1 ? args[1] : NULL,
	              nargs > 1 ? strlen(args[1]) : 0, 10000, &resp);
	if (r == 0)
		fprintf(ctx->out, "Event '%s' dispatched! Coalescing enabled: %s\n",
		        args[0], coalesce ? "true" : "false");
	httpc_response_free(&resp);
out:
	free(seg);
	free(args);
	return r;
}

/* Appends "&name=<escaped v>" for each comma-separated item of list. */
static int add_params(char *path, size_t cap, const char *name,
                      const char *list)
{
	char *copy, *tok, *save = NULL;

	if (list == NULL || *list == '\0')
		return 0;
	copy = strdup(list);
	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		size_t n = strlen(path);
		if (n + 3 + strlen(name) >= cap) {
			free(copy);
			return -1;
		}
		snprintf(path + n, cap - n, "&%s=", name);
		n = strlen(path);
		if (httpc_escape(path + n, cap - n, tok,
		                 HTTPC_ESCAPE_SEGMENT) >= cap - n) {
			free(copy);
			return -1;
		}
	}
	free(copy);
	return 0;
}

static int cmd_query(struct cli_ctx *ctx, int argc, char **argv)
{
	int no_ack = 0, nargs = 0, r;
	const char *timeout = NULL, *node = NULL, *tag = NULL;
	struct cli_flag flags[] = {
		{ "timeout", CLI_FLAG_STRING, &timeout, "<duration>",
		  "How long to wait for responses. Default: serf's "
		  "(gossip interval x 16 x log10(N+1))." },
		{ "node", CLI_FLAG_STRING, &node, "<names>",
		  "Only these nodes (comma-separated) answer." },
		{ "tag", CLI_FLAG_STRING, &tag, "<key=regexp>",
		  "Only nodes whose tag matches answer (comma-separated "
		  "key=regexp pairs)." },
		{ "no-ack", CLI_FLAG_BOOL, &no_ack, NULL,
		  "Do not ask members to acknowledge the query." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char path[4096];
	char **args = NULL;
	char *seg = NULL;
	int64_t wait_ms = 0;
	json_t *j = NULL, *acks, *resps, *v;
	const char *k;
	size_t i;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs < 1 || nargs > 2) {
		r = usage_error(ctx, "A query name and an optional payload "
		                     "must be specified.");
		goto out;
	}
	if (timeout != NULL && rumor_parse_duration(timeout, &wait_ms) != 0) {
		r = usage_error(ctx, "Invalid -timeout.");
		goto out;
	}
	seg = escape_segment(args[0]);
	if (seg == NULL ||
	    (size_t)snprintf(path, sizeof(path), "/v1/event/query/%s?%s", seg,
	                     no_ack ? "x=1" : "ack=1") >= sizeof(path) ||
	    (timeout != NULL && add_params(path, sizeof(path), "timeout",
	                                   timeout) != 0) ||
	    add_params(path, sizeof(path), "node", node) != 0 ||
	    add_params(path, sizeof(path), "tag", tag) != 0) {
		r = usage_error(ctx, "Query too long.");
		goto out;
	}
	memset(&resp, 0, sizeof(resp));
	fprintf(ctx->out, "Query '%s' dispatched\n", args[0]);
	fflush(ctx->out);
	r = serf_call(ctx, "Error sending query", "PUT", path,
	              nargs > 1 ? args[1] : NULL,
	              nargs > 1 ? strlen(args[1]) : 0,
	              (int)(wait_ms > 0 ? wait_ms + 10000 : 60000), &resp);
	if (r == 0) {
		j = json_loadb(resp.body, resp.body_len, 0, NULL);
		acks = json_object_get(j, "Acks");
		resps = json_object_get(j, "Responses");
		json_array_foreach(acks, i, v)
			fprintf(ctx->out, "Ack from '%s'\n", json_string_value(v));
		json_object_foreach(resps, k, v)
			fprintf(ctx->out, "Response from '%s': %s\n", k,
			        json_string_value(v));
		fprintf(ctx->out, "Total Acks: %zu\nTotal Responses: %zu\n",
		        json_array_size(acks), json_object_size(resps));
		json_decref(j);
	}
	httpc_response_free(&resp);
out:
	free(seg);
	free(args);
	return r;
}

static int cmd_tags(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	const char *set = NULL, *del = NULL;
	struct cli_flag flags[] = {
		{ "set", CLI_FLAG_STRING, &set, "<key=value,...>",
		  "Tags to create or update." },
		{ "delete", CLI_FLAG_STRING, &del, "<key,...>",
		  "Tags to remove." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char **args = NULL;
	json_t *body = json_object(), *s = json_object(), *d = json_array();
	char *text = NULL, *copy = NULL, *tok, *save = NULL;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0 || (set == NULL && del == NULL)) {
		r = usage_error(ctx, "At least one of -set or -delete must be "
		                     "given, and no arguments.");
		goto out;
	}
	if (set != NULL && (copy = strdup(set)) != NULL) {
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(tok, '=');
			if (eq == NULL || eq == tok) {
				r = usage_error(ctx, "-set wants key=value pairs.");
				goto out;
			}
			*eq = '\0';
			json_object_set_new(s, tok, json_string(eq + 1));
		}
	}
	free(copy);
	copy = NULL;
	if (del != NULL && (copy = strdup(del)) != NULL)
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save))
			json_array_append_new(d, json_string(tok));
	json_object_set(body, "Set", s);
	json_object_set(body, "Delete", d);
	text = json_dumps(body, JSON_COMPACT);
	memset(&resp, 0, sizeof(resp));
	r = serf_call(ctx, "Error setting tags", "PUT", "/v1/agent/tags", text,
	              text ? strlen(text) : 0, 10000, &resp);
	if (r == 0)
		fprintf(ctx->out, "Successfully updated agent tags\n");
	httpc_response_free(&resp);
out:
	free(copy);
	free(text);
	json_decref(body);
	json_decref(s);
	json_decref(d);
	free(args);
	return r;
}

static int cmd_keygen(struct cli_ctx *ctx, int argc, char **argv)
{
	uint8_t key[32];
	char b64[64];

	if (argc > 0) {
		fputs(find_command("keygen")->usage, ctx->out);
		return argc == 1 && (strcmp(argv[0], "-h") == 0 ||
		                     strcmp(argv[0], "-help") == 0) ? 0 : 1;
	}
	if (sodium_init() < 0) {
		fprintf(ctx->err, "Error: libsodium failed to initialise\n");
		return 1;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(b64, sizeof(b64), key, sizeof(key),
	                  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	fprintf(ctx->out, "%s\n", b64);
	return 0;
}

static int cmd_keyring(struct cli_ctx *ctx, int argc, char **argv)
{
	int list = 0, nargs = 0, r, ops;
	const char *install = NULL, *use = NULL, *remove = NULL;
	struct cli_flag flags[] = {
		{ "list", CLI_FLAG_BOOL, &list, NULL,
		  "List the keys installed on every member." },
		{ "install", CLI_FLAG_STRING, &install, "<key>",
		  "Install a new key on every member." },
		{ "use", CLI_FLAG_STRING, &use, "<key>",
		  "Make an installed key the primary (encrypting) key." },
		{ "remove", CLI_FLAG_STRING, &remove, "<key>",
		  "Remove a key from every member." },
		CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char **args = NULL;
	char body[256];
	const char *method = "GET", *key = NULL, *what;
	json_t *j, *o, *keys, *v;
	const char *k;

	r = parse_common(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc,
	                 argv, &args, &nargs);
	if (r >= 0)
		goto out;
	ops = list + (install != NULL) + (use != NULL) + (remove != NULL);
	if (nargs > 0 || ops != 1) {
		r = usage_error(ctx, "Exactly one of -list, -install, -use or "
		                     "-remove must be given.");
		goto out;
	}
	if (install) {
		method = "POST";
		key = install;
		what = "Installing key on all members";
	} else if (use) {
		method = "PUT";
		key = use;
		what = "Changing primary key on all members";
	} else if (remove) {
		method = "DELETE";
		key = remove;
		what = "Removing key on all members";
	} else {
		what = "Asking all members for installed keys";
	}
	body[0] = '\0';
	if (key != NULL && (strpbrk(key, "\"\\") != NULL ||
	                    (size_t)snprintf(body, sizeof(body), "{\"Key\":\"%s\"}",
	                                     key) >= sizeof(body))) {
		r = usage_error(ctx, "Invalid key.");
		goto out;
	}
	fprintf(ctx->out, "==> %s...\n", what);
	fflush(ctx->out);
	memset(&resp, 0, sizeof(resp));
	r = serf_call(ctx, "Error", method, "/v1/operator/keyring", body,
	              strlen(body), 60000, &resp);
	if (r != 0 && resp.status == 500 && resp.body != NULL)
		r = 1; /* per-node errors: shown below when the body is JSON */
	j = resp.body ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
	o = json_array_get(j, 0);
	json_object_foreach(json_object_get(o, "Messages"), k, v)
		fprintf(ctx->err, "  %s: %s\n", k, json_string_value(v));
	if (r == 0 && list) {
		long long total = json_integer_value(json_object_get(o, "NumNodes"));
		keys = json_object_get(o, "Keys");
		fprintf(ctx->out, "\nKeys:\n");
		json_object_foreach(keys, k, v)
			fprintf(ctx->out, "  %s  [%lld/%lld]\n", k,
			        json_integer_value(v), total);
	} else if (r == 0) {
		fprintf(ctx->out, "==> Done!\n");
	}
	json_decref(j);
	httpc_response_free(&resp);
out:
	free(args);
	return r;
}

/* ---- command table --------------------------------------------------- */

/* `rumor kv ...`: agent/cli_kv.c */
static int cmd_kv(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_kv_run(argc, argv, ctx->http_addr, ctx->token, ctx->out, ctx->err);
}

static const struct cli_command commands[] = {
	{ "agent", "Runs a rumor agent", "Usage: rumor agent [options]\n",
	  NULL /* dispatched by main.c */ },
	{ "event", "Send a custom (user) event to the cluster",
	  "Usage: rumor event [options] NAME [PAYLOAD]\n\n"
	  "  Dispatches a serf user event: every member, rumor or serf, "
	  "runs its\n  event handlers for it once. NAME plus PAYLOAD must "
	  "fit in 512 bytes.\n",
	  cmd_event },
	{ "force-leave",
	  "Forces a member of the cluster to enter the \"left\" state",
	  "Usage: rumor force-leave [options] NODE\n\n"
	  "  Forces a failed member of the cluster to enter the \"left\" "
	  "state, so\n  it stops being reconnected to. With -prune the node "
	  "is removed from\n  the member list entirely. Prints nothing on "
	  "success.\n",
	  cmd_force_leave },
	{ "info", "Provides debugging information for operators",
	  "Usage: rumor info [options]\n\n"
	  "  Prints the local agent's state, one section per area (agent, "
	  "build,\n  runtime, serf_lan), as `consul info` does: member counts "
	  "by status,\n  health score, queue depth, gossip traffic, "
	  "encryption.\n",
	  cmd_info },
	{ "join", "Tell the local agent to join a cluster",
	  "Usage: rumor join [options] ADDRESS...\n\n"
	  "  Tells the local agent to join the cluster by contacting each "
	  "ADDRESS\n  (host or host:port of another agent's gossip port). "
	  "Succeeds if at\n  least one address could be joined.\n",
	  cmd_join },
	{ "keygen", "Generates a new gossip encryption key",
	  "Usage: rumor keygen\n\n"
	  "  Prints a random 32-byte key in base64, for -encrypt and "
	  "`rumor keyring`.\n",
	  cmd_keygen },
	{ "keyring", "Manages gossip encryption keys on every member",
	  "Usage: rumor keyring [options]\n\n"
	  "  Lists, installs, switches (-use) or removes gossip encryption "
	  "keys on\n  every member of the cluster (serf's internal key "
	  "queries, so serf\n  agents take part). Keys are 32 bytes in "
	  "base64.\n",
	  cmd_keyring },
	{ "kv", "Interact with the key-value store",
	  "Usage: rumor kv <get|put|delete|export|import> [options] [args]\n\n"
	  "  Reads and writes the replicated key-value store through the local\n"
	  "  agent, as `consul kv` does. `rumor kv -h` lists the subcommands.\n",
	  cmd_kv },
	{ "leave", "Gracefully leaves the cluster and shuts down the agent",
	  "Usage: rumor leave [options]\n\n"
	  "  Makes the local agent leave the cluster gracefully and shut "
	  "down.\n",
	  cmd_leave },
	{ "members", "Lists the members of the cluster",
	  "Usage: rumor members [options]\n\n"
	  "  Lists the members the local agent knows about and their state.\n"
	  "  Exits 2 when no member matches.\n",
	  cmd_members },
	{ "monitor", "Stream logs from a rumor agent",
	  "Usage: rumor monitor [options]\n\n"
	  "  Streams the local agent's log lines as they are written, at "
	  "-log-level\n  and above (even below the agent's own level), "
	  "until interrupted or\n  until the agent stops.\n",
	  cmd_monitor },
	{ "query", "Sends a query to the cluster and prints the answers",
	  "Usage: rumor query [options] NAME [PAYLOAD]\n\n"
	  "  Dispatches a serf query; members acknowledge it and their "
	  "query\n  handlers' output comes back as responses until the "
	  "timeout.\n",
	  cmd_query },
	{ "services", "Registers or deregisters services on the local agent",
	  "Usage: rumor services register [options] [FILE...]\n"
	  "       rumor services deregister [options] ID\n\n"
	  "  register: each FILE holds a service definition (Consul's JSON: an\n"
	  "  object, or {\"service\": {...}} or {\"services\": [...]}), or the\n"
	  "  service is described with -name, -id, -address, -port and -tag.\n"
	  "  deregister: removes the service with that ID and its checks.\n",
	  cmd_services },
	{ "tags", "Modifies the tags of the local agent",
	  "Usage: rumor tags [options]\n\n"
	  "  Sets or deletes tags (node meta) of the local agent at run "
	  "time; the\n  change spreads with a higher incarnation.\n",
	  cmd_tags },
	{ "version", "Prints the rumor version",
	  "Usage: rumor version\n\n"
	  "  Prints the version of rumor and the protocol versions it "
	  "speaks.\n",
	  cmd_version },
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
		fprintf(out, "    %-*s    %s\n", (int)w, commands[i].name,
		        commands[i].synopsis);
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
	ctx.http_addr = cli_default_http_addr();
	ctx.token = default_token();
	return cmd->run(&ctx, argc - 1, argv + 1);
}

int cli_main(int argc, char **argv)
{
	int r = cli_run(argc, argv, stdout, stderr);

	fflush(stdout);
	return r;
}
