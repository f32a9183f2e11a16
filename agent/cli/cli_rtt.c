/*
 * agent/cli/cli_rtt.c — see cli_rtt.h.
 *
 * The distance is Serf's DistanceTo through gossip/coord.h, the same
 * function the agent's ?near sorting and DNS use, so `rumor rtt` prints
 * what the agent would sort by.
 */
#include "agent/cli/cli_rtt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/cli/cmd.h"
#include "agent/http/httpc.h"
#include "gossip/coord.h"

/* A Coord object ({"Vec","Error","Adjustment","Height"}) into *c; false
 * when it is not one (missing fields, a Vec of another length). */
static bool coord_from_json(const json_t *j, struct coord *c)
{
	const json_t *vec = json_object_get(j, "Vec");
	if (!json_is_array(vec) || json_array_size(vec) != COORD_DIM)
		return false;
	for (size_t i = 0; i < COORD_DIM; i++) {
		const json_t *x = json_array_get(vec, i);
		if (!json_is_number(x))
			return false;
		c->vec[i] = json_number_value(x);
	}
	c->error = json_number_value(json_object_get(j, "Error"));
	c->adjustment = json_number_value(json_object_get(j, "Adjustment"));
	c->height = json_number_value(json_object_get(j, "Height"));
	return coord_valid(c);
}

static bool find_coord(const json_t *entries, const char *node, struct coord *c)
{
	size_t i;
	const json_t *e;
	json_array_foreach(entries, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "Node"));
		if (name != NULL && strcasecmp(name, node) == 0 &&
		    coord_from_json(json_object_get(e, "Coord"), c))
			return true;
	}
	return false;
}

int cli_rtt_estimate(const json_t *entries, const char *n1, const char *n2, bool wan, char *out,
                     size_t outlen)
{
	struct coord c1, c2;
	if (!find_coord(entries, n1, &c1)) {
		snprintf(out, outlen, "Could not find a coordinate for node \"%s\"", n1);
		return 1;
	}
	if (!find_coord(entries, n2, &c2)) {
		snprintf(out, outlen, "Could not find a coordinate for node \"%s\"", n2);
		return 1;
	}
	double ms = (double)coord_distance_ns(&c1, &c2) / 1e6;
	snprintf(out, outlen, "Estimated %s <-> %s rtt: %.3f ms (using %s coordinates)", n1, n2, ms,
	         wan ? "WAN" : "LAN");
	return 0;
}

/* GET path and parse it as JSON; NULL after printing "<what>: <error>". */
static json_t *get_json(struct cli_ctx *ctx, const char *what, const char *path)
{
	struct httpc_response resp;
	memset(&resp, 0, sizeof(resp));
	json_t *j = NULL;
	if (cli_serf_call(ctx, what, "GET", path, NULL, 0, 0, &resp) == 0) {
		json_error_t jerr;
		j = json_loadb(resp.body, resp.body_len, 0, &jerr);
		if (j == NULL)
			fprintf(ctx->err, "%s: invalid JSON from agent: %s\n", what, jerr.text);
	}
	httpc_response_free(&resp);
	return j;
}

/* -wan: the node.dc names' coordinates, flattened into one entries array
 * of the nodes of the right datacenters ("node.dc" as Node). */
static json_t *wan_entries(const json_t *dcs)
{
	json_t *out = json_array();
	size_t i, k;
	const json_t *dc, *e;
	json_array_foreach(dcs, i, dc)
	{
		const char *name = json_string_value(json_object_get(dc, "Datacenter"));
		json_array_foreach(json_object_get(dc, "Coordinates"), k, e)
		{
			const char *node = json_string_value(json_object_get(e, "Node"));
			if (name == NULL || node == NULL)
				continue;
			char full[600];
			snprintf(full, sizeof(full), "%s.%s", node, name);
			json_array_append_new(out, json_pack("{s:s, s:O}", "Node", full, "Coord",
			                                     json_object_get(e, "Coord")));
		}
	}
	return out;
}

static bool dc_qualified(const char *n)
{
	const char *dot = strchr(n, '.');
	return dot != NULL && dot != n && dot[1] != '\0' && strchr(dot + 1, '.') == NULL;
}

/* The second node when none was given: the agent's NodeName (with .dc
 * under -wan); malloc'd, or NULL after printing the error. */
static char *self_name(struct cli_ctx *ctx, bool wan)
{
	json_t *self = get_json(ctx, "Unable to look up agent info", "/v1/agent/self");
	if (self == NULL)
		return NULL;
	const json_t *cfg = json_object_get(self, "Config");
	const char *node = json_string_value(json_object_get(cfg, "NodeName"));
	const char *dc = json_string_value(json_object_get(cfg, "Datacenter"));
	char buf[600];
	snprintf(buf, sizeof(buf), wan ? "%s.%s" : "%s", node ? node : "", dc ? dc : "");
	json_decref(self);
	return strdup(buf);
}

int cli_cmd_rtt(struct cli_ctx *ctx, int argc, char **argv)
{
	int wan = 0, nargs = 0, r;
	struct cli_flag flags[] = {
	        {"wan", CLI_FLAG_BOOL, &wan, NULL,
	         "Use WAN coordinates instead of LAN coordinates (rumor has no WAN "
	         "pool: no node has one)."},
	        CLI_HTTP_FLAGS(ctx),
	};
	char **args = NULL, *second = NULL;
	json_t *entries = NULL;

	r = cli_cmd_parse(ctx, flags, sizeof(flags) / sizeof(flags[0]), argc, argv, &args, &nargs);
	if (r >= 0)
		goto out;
	r = 1;
	if (nargs < 1 || nargs > 2) {
		fprintf(ctx->err, "One or two node names must be specified\n\n%s", ctx->usage);
		goto out;
	}
	second = nargs == 2 ? strdup(args[1]) : self_name(ctx, wan);
	if (second == NULL)
		goto out;
	if (wan && (!dc_qualified(args[0]) || !dc_qualified(second))) {
		fprintf(ctx->err,
		        "Node names must be specified as <node name>.<datacenter> with -wan\n");
		goto out;
	}
	json_t *got = get_json(ctx, "Error getting coordinates",
	                       wan ? "/v1/coordinate/datacenters" : "/v1/coordinate/nodes");
	if (got == NULL)
		goto out;
	entries = wan ? wan_entries(got) : json_incref(got);
	json_decref(got);
	char line[1400];
	r = cli_rtt_estimate(entries, args[0], second, wan, line, sizeof(line));
	fprintf(r == 0 ? ctx->out : ctx->err, "%s\n", line);
out:
	json_decref(entries);
	free(second);
	free(args);
	return r;
}
