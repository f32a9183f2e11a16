/*
 * agent/cli/cli_serf.c — see cli_serf.h.
 *
 * Wording follows serf's own CLI (`serf event`, `serf query`, `serf
 * keys`), which consul does not have: "Event 'x' dispatched! Coalescing
 * enabled: true", "Query 'x' dispatched", "==> Installing key on all
 * members...".  keygen needs no agent: it draws the key from libsodium.
 */
#include "agent/cli/cli_serf.h"

#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/cmd.h"
#include "agent/config.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

/*
 * The payload goes as the raw request body, as serf/consul event send it, so any
 * bytes reach the handlers unchanged; the name is one escaped path segment.
 */
int cli_cmd_event(struct cli_ctx *ctx, int argc, char **argv)
{
	int coalesce = 1, nargs = 0, r;
	struct cli_flag flags[] = {
	        {"coalesce", CLI_FLAG_BOOL, &coalesce, NULL,
	         "Whether handlers may coalesce this event with others of "
	         "the same name. Default: true."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char path[1024];
	char **args = NULL;
	char *seg = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs < 1 || nargs > 2) {
		r = cli_usage_error(ctx, "An event name and an optional payload "
		                         "must be specified.");
		goto out;
	}
	seg = cli_escape_segment(args[0]);
	if (seg == NULL || (size_t)snprintf(path, sizeof(path), "/v1/event/fire/%s%s", seg,
	                                    coalesce ? "" : "?coalesce=false") >= sizeof(path)) {
		r = cli_usage_error(ctx, "Event name too long.");
		goto out;
	}
	memset(&resp, 0, sizeof(resp));
	r = cli_serf_call(ctx, "Error sending event", "PUT", path, nargs > 1 ? args[1] : NULL,
	                  nargs > 1 ? strlen(args[1]) : 0, 10000, &resp);
	if (r == 0)
		fprintf(ctx->out, "Event '%s' dispatched! Coalescing enabled: %s\n", args[0],
		        coalesce ? "true" : "false");
	httpc_response_free(&resp);
out:
	free(seg);
	free(args);
	return r;
}

/* Appends "&name=<escaped v>" for each comma-separated item of list. */
static int add_params(char *path, size_t cap, const char *name, const char *list)
{
	char *copy, *tok, *save = NULL;

	if (list == NULL || *list == '\0')
		return 0;
	copy = xstrdup(list);
	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		size_t n = strlen(path);
		if (n + 3 + strlen(name) >= cap) {
			free(copy);
			return -1;
		}
		snprintf(path + n, cap - n, "&%s=", name);
		n = strlen(path);
		if (httpc_escape(path + n, cap - n, tok, HTTPC_ESCAPE_SEGMENT) >= cap - n) {
			free(copy);
			return -1;
		}
	}
	free(copy);
	return 0;
}

int cli_cmd_query(struct cli_ctx *ctx, int argc, char **argv)
{
	int no_ack = 0, nargs = 0, r;
	const char *timeout = NULL, *node = NULL, *tag = NULL;
	struct cli_flag flags[] = {
	        {"timeout", CLI_FLAG_STRING, &timeout, "<duration>",
	         "How long to wait for responses. Default: serf's "
	         "(gossip interval x 16 x log10(N+1))."},
	        {"node", CLI_FLAG_STRING, &node, "<names>",
	         "Only these nodes (comma-separated) answer."},
	        {"tag", CLI_FLAG_STRING, &tag, "<key=regexp>",
	         "Only nodes whose tag matches answer (comma-separated "
	         "key=regexp pairs)."},
	        {"no-ack", CLI_FLAG_BOOL, &no_ack, NULL,
	         "Do not ask members to acknowledge the query."},
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

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs < 1 || nargs > 2) {
		r = cli_usage_error(ctx, "A query name and an optional payload "
		                         "must be specified.");
		goto out;
	}
	if (timeout != NULL && rumor_parse_duration(timeout, &wait_ms) != 0) {
		r = cli_usage_error(ctx, "Invalid -timeout.");
		goto out;
	}
	seg = cli_escape_segment(args[0]);
	if (seg == NULL ||
	    (size_t)snprintf(path, sizeof(path), "/v1/event/query/%s?%s", seg,
	                     no_ack ? "x=1" : "ack=1") >= sizeof(path) ||
	    (timeout != NULL && add_params(path, sizeof(path), "timeout", timeout) != 0) ||
	    add_params(path, sizeof(path), "node", node) != 0 ||
	    add_params(path, sizeof(path), "tag", tag) != 0) {
		r = cli_usage_error(ctx, "Query too long.");
		goto out;
	}
	memset(&resp, 0, sizeof(resp));
	fprintf(ctx->out, "Query '%s' dispatched\n", args[0]);
	fflush(ctx->out);
	r = cli_serf_call(ctx, "Error sending query", "PUT", path, nargs > 1 ? args[1] : NULL,
	                  nargs > 1 ? strlen(args[1]) : 0,
	                  (int)(wait_ms > 0 ? wait_ms + 10000 : 60000), &resp);
	if (r == 0) {
		j = json_loadb(resp.body, resp.body_len, 0, NULL);
		acks = json_object_get(j, "Acks");
		resps = json_object_get(j, "Responses");
		json_array_foreach(acks, i, v)
		        fprintf(ctx->out, "Ack from '%s'\n", json_string_value(v));
		json_object_foreach(resps, k, v)
		        fprintf(ctx->out, "Response from '%s': %s\n", k, json_string_value(v));
		fprintf(ctx->out, "Total Acks: %zu\nTotal Responses: %zu\n", json_array_size(acks),
		        json_object_size(resps));
		json_decref(j);
	}
	httpc_response_free(&resp);
out:
	free(seg);
	free(args);
	return r;
}

int cli_cmd_tags(struct cli_ctx *ctx, int argc, char **argv)
{
	int nargs = 0, r;
	const char *set = NULL, *del = NULL;
	struct cli_flag flags[] = {
	        {"set", CLI_FLAG_STRING, &set, "<key=value,...>", "Tags to create or update."},
	        {"delete", CLI_FLAG_STRING, &del, "<key,...>", "Tags to remove."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char **args = NULL;
	json_t *body = json_object(), *s = json_object(), *d = json_array();
	char *text = NULL, *copy = NULL, *tok, *save = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0 || (set == NULL && del == NULL)) {
		r = cli_usage_error(ctx, "At least one of -set or -delete must be "
		                         "given, and no arguments.");
		goto out;
	}
	if (set != NULL && (copy = xstrdup(set)) != NULL) {
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(tok, '=');
			if (eq == NULL || eq == tok) {
				r = cli_usage_error(ctx, "-set wants key=value pairs.");
				goto out;
			}
			*eq = '\0';
			json_object_set_new(s, tok, json_string(eq + 1));
		}
	}
	free(copy);
	copy = NULL;
	if (del != NULL && (copy = xstrdup(del)) != NULL)
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save))
			json_array_append_new(d, json_string(tok));
	json_object_set(body, "Set", s);
	json_object_set(body, "Delete", d);
	text = json_dumps(body, JSON_COMPACT);
	memset(&resp, 0, sizeof(resp));
	r = cli_serf_call(ctx, "Error setting tags", "PUT", "/v1/agent/tags", text,
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

int cli_cmd_keygen(struct cli_ctx *ctx, int argc, char **argv)
{
	uint8_t key[32];
	char b64[64];

	if (argc > 0) {
		fputs(ctx->usage, ctx->out);
		return argc == 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "-help") == 0)
		               ? 0
		               : 1;
	}
	if (sodium_init() < 0) {
		fprintf(ctx->err, "Error: libsodium failed to initialise\n");
		return 1;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	fprintf(ctx->out, "%s\n", b64);
	return 0;
}

/*
 * Exactly one operation per run: the four change the cluster in different ways,
 * and running two in one command would leave it half-changed if the second
 * failed. Per-node messages are printed even when the call failed, since they
 * say which members did not take the change.
 */
int cli_cmd_keyring(struct cli_ctx *ctx, int argc, char **argv)
{
	int list = 0, nargs = 0, r, ops;
	const char *install = NULL, *use = NULL, *remove = NULL;
	struct cli_flag flags[] = {
	        {"list", CLI_FLAG_BOOL, &list, NULL, "List the keys installed on every member."},
	        {"install", CLI_FLAG_STRING, &install, "<key>",
	         "Install a new key on every member."},
	        {"use", CLI_FLAG_STRING, &use, "<key>",
	         "Make an installed key the primary (encrypting) key."},
	        {"remove", CLI_FLAG_STRING, &remove, "<key>", "Remove a key from every member."},
	        CLI_HTTP_FLAGS(ctx),
	};
	struct httpc_response resp;
	char **args = NULL;
	char body[256];
	const char *method = "GET", *key = NULL, *what;
	json_t *j, *o, *keys, *v;
	const char *k;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	ops = list + (install != NULL) + (use != NULL) + (remove != NULL);
	if (nargs > 0 || ops != 1) {
		r = cli_usage_error(ctx, "Exactly one of -list, -install, -use or "
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
	if (key != NULL &&
	    (strpbrk(key, "\"\\") != NULL ||
	     (size_t)snprintf(body, sizeof(body), "{\"Key\":\"%s\"}", key) >= sizeof(body))) {
		r = cli_usage_error(ctx, "Invalid key.");
		goto out;
	}
	fprintf(ctx->out, "==> %s...\n", what);
	fflush(ctx->out);
	memset(&resp, 0, sizeof(resp));
	r = cli_serf_call(ctx, "Error", method, "/v1/operator/keyring", body, strlen(body), 60000,
	                  &resp);
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
		        fprintf(ctx->out, "  %s  [%lld/%lld]\n", k, json_integer_value(v), total);
	} else if (r == 0) {
		fprintf(ctx->out, "==> Done!\n");
	}
	json_decref(j);
	httpc_response_free(&resp);
out:
	free(args);
	return r;
}
