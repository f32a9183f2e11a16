/*
 * agent/cli/cli_services.c — see cli_services.h.
 *
 * register takes a service either from flags (-name, -id, -address, -port,
 * -tag) or from files in any of consul's three shapes (a bare definition,
 * {"service": {...}}, {"services": [...]}); each definition is one PUT, in
 * file order, stopping at the first failure as consul does.
 */
#include "agent/cli/cli_services.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

/* The register flags, as parsed. */
struct service_flags {
	const char *name, *id, *address, *port, *tags;
};

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
	if (cli_api_call(ctx, "PUT", "/v1/agent/service/register", body, strlen(body),
	                 CLI_LEAVE_TIMEOUT_MS, &resp, msg, sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error registering service \"%s\": %s\n", name ? name : "?", msg);
		r = 1;
	} else {
		fprintf(ctx->out, "Registered service: %s\n", name ? name : "?");
	}
	httpc_response_free(&resp);
	free(body);
	return r;
}

/* The ID is the one positional argument, or -id. */
static int services_deregister(struct cli_ctx *ctx, char **args, int nargs, const char *id)
{
	struct httpc_response resp;
	char msg[CLI_ERRLEN], path[1200], esc[1000];
	const char *sid = nargs == 1 ? args[0] : id;
	int r = 0;

	if (sid == NULL || nargs > 1)
		return cli_usage_error(ctx, "deregister takes one service ID.");
	httpc_escape(esc, sizeof(esc), sid, 0);
	snprintf(path, sizeof(path), "/v1/agent/service/deregister/%s", esc);
	if (cli_api_call(ctx, "PUT", path, NULL, 0, CLI_LEAVE_TIMEOUT_MS, &resp, msg,
	                 sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error deregistering service \"%s\": %s\n", sid, msg);
		r = 1;
	} else {
		fprintf(ctx->out, "Deregistered service: %s\n", sid);
	}
	httpc_response_free(&resp);
	return r;
}

/* register -name ...: one definition built from the flags.  The port is
 * checked here, not by the agent, so a typo fails before any request. */
static int services_register_flags(struct cli_ctx *ctx, const struct service_flags *f, int nargs)
{
	json_t *def;
	int r;

	if (nargs > 0)
		return cli_usage_error(ctx, "Give either -name or FILE, not both.");
	def = json_pack("{s:s}", "Name", f->name);
	if (f->id != NULL)
		json_object_set_new(def, "ID", json_string(f->id));
	if (f->address != NULL)
		json_object_set_new(def, "Address", json_string(f->address));
	if (f->port != NULL) {
		char *end;
		long p = strtol(f->port, &end, 10);

		if (*end != '\0' || p < 0 || p > 65535) {
			json_decref(def);
			return cli_usage_error(ctx, "Invalid -port.");
		}
		json_object_set_new(def, "Port", json_integer(p));
	}
	if (f->tags != NULL) {
		json_t *arr = json_array();
		char *copy = xstrdup(f->tags), *save = NULL;

		for (char *t = strtok_r(copy, ",", &save); t != NULL;
		     t = strtok_r(NULL, ",", &save))
			json_array_append_new(arr, json_string(t));
		free(copy);
		json_object_set_new(def, "Tags", arr);
	}
	r = register_one(ctx, def);
	json_decref(def);
	return r;
}

/* register FILE...: every definition of every file, stopping at the first
 * unreadable file or failed registration. */
static int services_register_files(struct cli_ctx *ctx, char **args, int nargs)
{
	int r = 0;

	if (nargs == 0)
		return cli_usage_error(ctx, "register needs -name or a FILE.");
	for (int i = 0; i < nargs && r == 0; i++) {
		json_error_t je;
		json_t *root = json_load_file(args[i], 0, &je);
		json_t *one, *many;

		if (root == NULL) {
			fprintf(ctx->err, "Error reading %s: line %d: %s\n", args[i], je.line,
			        je.text);
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

			json_array_foreach(many, k, d)
			{
				if (r == 0)
					r = register_one(ctx, d);
			}
		} else {
			r = register_one(ctx, root);
		}
		json_decref(root);
	}
	return r;
}

int cli_cmd_services(struct cli_ctx *ctx, int argc, char **argv)
{
	struct service_flags f = {0};
	int nargs = 0, r;
	struct cli_flag flags[] = {
	        {"name", CLI_FLAG_STRING, &f.name, "<name>",
	         "register: name of the service (instead of a FILE)."},
	        {"id", CLI_FLAG_STRING, &f.id, "<id>",
	         "register: ID of the service. Default: the name."},
	        {"address", CLI_FLAG_STRING, &f.address, "<addr>",
	         "register: address of the service. Default: the node's."},
	        {"port", CLI_FLAG_STRING, &f.port, "<port>", "register: port of the service."},
	        {"tag", CLI_FLAG_STRING, &f.tags, "<tag,...>", "register: comma-separated tags."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;
	const char *sub;

	if (argc < 1 || (strcmp(argv[0], "register") != 0 && strcmp(argv[0], "deregister") != 0)) {
		if (argc >= 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "-help") == 0 ||
		                  strcmp(argv[0], "--help") == 0)) {
			fputs(ctx->usage, ctx->out);
			return 0;
		}
		return cli_usage_error(ctx, "Usage: rumor services register|deregister ...");
	}
	sub = argv[0];
	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc - 1, argv + 1, &args,
	                  &nargs);
	if (r >= 0)
		goto out;
	if (strcmp(sub, "deregister") == 0)
		r = services_deregister(ctx, args, nargs, f.id);
	else if (f.name != NULL)
		r = services_register_flags(ctx, &f, nargs);
	else
		r = services_register_files(ctx, args, nargs);
out:
	free(args);
	return r;
}
