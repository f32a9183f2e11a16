/*
 * agent/cli/cli_maint.c — see cli_maint.h.
 *
 * Messages and the listing are consul maint's, word for word, so scripts
 * written for consul read rumor's output: enabling or disabling is one PUT
 * to /v1/agent/maintenance or /v1/agent/service/maintenance/<id>; listing
 * reads the agent's checks and prints the maintenance ones
 * (_node_maintenance, _service_maintenance:<id>) with their Notes.
 */
#include "agent/cli/cli_maint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

struct maint_flags {
	int enable, disable;
	const char *reason, *service;
};

/* GET path and parse the answer as JSON; NULL after printing "<what>: <error>". */
static json_t *get_json(struct cli_ctx *ctx, const char *path, const char *what)
{
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	json_t *j = NULL;

	if (cli_api_call(ctx, "GET", path, NULL, 0, 0, &resp, msg, sizeof(msg)) != CLI_API_OK)
		fprintf(ctx->err, "%s: %s\n", what, msg);
	else if ((j = json_loadb(resp.body, resp.body_len, 0, NULL)) == NULL)
		fprintf(ctx->err, "%s: the agent's answer is not JSON\n", what);
	httpc_response_free(&resp);
	return j;
}

/* The node, then each service, in maintenance; nothing when none is. */
static int maint_list(struct cli_ctx *ctx)
{
	json_t *self = get_json(ctx, "/v1/agent/self", "Error querying agent");
	if (self == NULL)
		return 1;
	json_t *checks = get_json(ctx, "/v1/agent/checks", "Error getting checks");
	if (checks == NULL) {
		json_decref(self);
		return 1;
	}
	const char *node =
	        json_string_value(json_object_get(json_object_get(self, "Config"), "NodeName"));
	const char *id, *notes;
	json_t *c = json_object_get(checks, "_node_maintenance");
	if (c != NULL) {
		notes = json_string_value(json_object_get(c, "Notes"));
		fprintf(ctx->out, "Node:\n  Name:   %s\n  Reason: %s\n\n", node ? node : "",
		        notes ? notes : "");
	}
	json_object_foreach(checks, id, c)
	{
		const char *sid = json_string_value(json_object_get(c, "ServiceID"));
		notes = json_string_value(json_object_get(c, "Notes"));
		if (strncmp(id, "_service_maintenance:", 21) == 0)
			fprintf(ctx->out, "Service:\n  ID:     %s\n  Reason: %s\n\n",
			        sid ? sid : "", notes ? notes : "");
	}
	json_decref(checks);
	json_decref(self);
	return 0;
}

/* One PUT that turns maintenance on or off, with consul's messages. */
static int maint_set(struct cli_ctx *ctx, const struct maint_flags *f)
{
	size_t rl = f->reason ? strlen(f->reason) * 3 + 1 : 1;
	size_t sl = f->service ? strlen(f->service) * 3 + 1 : 1;
	char *reason = xmalloc(rl), *sid = xmalloc(sl);
	httpc_escape(reason, rl, f->reason ? f->reason : "", 0);
	httpc_escape(sid, sl, f->service ? f->service : "", 0);
	size_t pl = rl + sl + 100;
	char *path = xmalloc(pl);
	const char *what = f->enable ? "enabling" : "disabling";
	if (f->service != NULL)
		snprintf(path, pl, "/v1/agent/service/maintenance/%s?enable=%s%s%s", sid,
		         f->enable ? "true" : "false", f->reason ? "&reason=" : "",
		         f->reason ? reason : "");
	else
		snprintf(path, pl, "/v1/agent/maintenance?enable=%s%s%s",
		         f->enable ? "true" : "false", f->reason ? "&reason=" : "",
		         f->reason ? reason : "");
	struct httpc_response resp;
	char msg[CLI_ERRLEN];
	int r = 0;
	if (cli_api_call(ctx, "PUT", path, NULL, 0, CLI_LEAVE_TIMEOUT_MS, &resp, msg,
	                 sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error %s %s maintenance: %s\n", what,
		        f->service ? "service" : "node", msg);
		r = 1;
	} else if (f->service != NULL) {
		fprintf(ctx->out, "Service maintenance is now %s for \"%s\"\n",
		        f->enable ? "enabled" : "disabled", f->service);
	} else {
		fprintf(ctx->out, "Node maintenance is now %s\n",
		        f->enable ? "enabled" : "disabled");
	}
	httpc_response_free(&resp);
	free(path);
	free(reason);
	free(sid);
	return r;
}

int cli_cmd_maint(struct cli_ctx *ctx, int argc, char **argv)
{
	struct maint_flags f = {0};
	int nargs = 0, r;
	struct cli_flag flags[] = {
	        {"enable", CLI_FLAG_BOOL, &f.enable, "", "Enable maintenance mode."},
	        {"disable", CLI_FLAG_BOOL, &f.disable, "", "Disable maintenance mode."},
	        {"reason", CLI_FLAG_STRING, &f.reason, "<string>",
	         "Text describing the maintenance reason."},
	        {"service", CLI_FLAG_STRING, &f.service, "<id>",
	         "Control maintenance mode for a specific service ID."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	if (nargs > 0)
		r = cli_usage_error(ctx, "The maint command takes no arguments.");
	else if (f.enable && f.disable)
		r = cli_usage_error(ctx, "Only one of -enable or -disable may be provided");
	else if (!f.enable && f.reason != NULL && f.reason[0] != '\0')
		r = cli_usage_error(ctx, "Reason may only be provided with -enable");
	else if (!f.enable && !f.disable && f.service != NULL && f.service[0] != '\0')
		r = cli_usage_error(ctx, "Service requires either -enable or -disable");
	else if (!f.enable && !f.disable)
		r = maint_list(ctx);
	else
		r = maint_set(ctx, &f);
out:
	free(args);
	return r;
}
