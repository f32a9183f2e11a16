/*
 * agent/cli/cli_snapshot.c — see cli_snapshot.h.
 *
 * save writes to FILE.part and renames it into place only once the whole
 * snapshot arrived and its checksum held, so a failed save never leaves a
 * truncated FILE behind (nor destroys an older one).
 */
#define _GNU_SOURCE
#include "agent/cli/cli_snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/api_snapshot.h"
#include "agent/cli/cmd.h"
#include "agent/cli/flags.h"
#include "agent/http/httpc.h"
#include "lib/xalloc.h"

#define SNAPSHOT_TIMEOUT_MS 120000

static int save(struct cli_ctx *ctx, const char *file)
{
	struct httpc_response r;
	char msg[CLI_ERRLEN], part[4200], err[300];
	if (cli_api_call(ctx, "GET", "/v1/snapshot", NULL, 0, SNAPSHOT_TIMEOUT_MS, &r, msg,
	                 sizeof(msg)) != CLI_API_OK) {
		fprintf(ctx->err, "Error saving snapshot: %s\n", msg);
		httpc_response_free(&r);
		return 1;
	}
	struct snapshot_info si;
	if (snapshot_decode((const uint8_t *)r.body, r.body_len, &si, err, sizeof(err)) < 0) {
		fprintf(ctx->err, "Error saving snapshot: the agent sent a bad snapshot: %s\n",
		        err);
		httpc_response_free(&r);
		return 1;
	}
	snprintf(part, sizeof(part), "%s.part", file);
	FILE *f = fopen(part, "wb");
	int rc = 1;
	if (f == NULL) {
		fprintf(ctx->err, "Error saving snapshot: %s: %s\n", part, strerror(errno));
	} else if (fwrite(r.body, 1, r.body_len, f) != r.body_len || fflush(f) != 0 ||
	           fsync(fileno(f)) != 0) {
		fprintf(ctx->err, "Error saving snapshot: writing %s: %s\n", part, strerror(errno));
		fclose(f);
		remove(part);
	} else if (fclose(f) != 0 || rename(part, file) != 0) {
		fprintf(ctx->err, "Error saving snapshot: %s: %s\n", file, strerror(errno));
		remove(part);
	} else {
		fprintf(ctx->out, "Saved and verified snapshot to index %" PRIu64 " (%u records)\n",
		        si.index, si.records);
		rc = 0;
	}
	httpc_response_free(&r);
	return rc;
}

static uint8_t *read_file(struct cli_ctx *ctx, const char *file, size_t *len)
{
	FILE *f = fopen(file, "rb");
	if (f == NULL) {
		fprintf(ctx->err, "Error opening snapshot file: %s: %s\n", file, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *p = xmalloc(cap);
	for (;;) {
		if (n == cap) {
			if (cap >= API_SNAPSHOT_MAX_BYTES) {
				fprintf(ctx->err, "Error: %s is larger than a snapshot can be\n",
				        file);
				free(p);
				fclose(f);
				return NULL;
			}
			cap *= 2;
			p = xrealloc(p, cap);
		}
		size_t got = fread(p + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad) {
		fprintf(ctx->err, "Error reading %s\n", file);
		free(p);
		return NULL;
	}
	*len = n;
	return p;
}

static int inspect_or_restore(struct cli_ctx *ctx, const char *file, bool restore)
{
	size_t n;
	uint8_t *p = read_file(ctx, file, &n);
	if (p == NULL)
		return 1;
	struct snapshot_info si;
	char err[300], msg[CLI_ERRLEN];
	int rc = 1;
	if (snapshot_decode(p, n, &si, err, sizeof(err)) < 0) {
		fprintf(ctx->err, "Error verifying snapshot file: %s\n", err);
	} else if (!restore) {
		time_t t = (time_t)(si.saved_ms / 1000);
		char when[64];
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		fprintf(ctx->out, "%-10s %" PRIu64 "\n%-10s %s\n%-10s %u\n%-10s %zu\n", "Index",
		        si.index, "Saved", when, "Records", si.records, "Size", n);
		rc = 0;
	} else {
		struct httpc_response r;
		if (cli_api_call(ctx, "PUT", "/v1/snapshot", p, n, SNAPSHOT_TIMEOUT_MS, &r, msg,
		                 sizeof(msg)) != CLI_API_OK)
			fprintf(ctx->err, "Error restoring snapshot: %s\n", msg);
		else {
			fprintf(ctx->out, "Restored snapshot (%u records)\n", si.records);
			rc = 0;
		}
		httpc_response_free(&r);
	}
	free(p);
	return rc;
}

int cli_cmd_snapshot(struct cli_ctx *ctx, int argc, char **argv)
{
	struct cli_flag fl[] = {CLI_HTTP_FLAGS(ctx)};
	if (argc < 1)
		return cli_usage_error(ctx, "Error: expected save, restore or inspect");
	const char *sub = argv[0];
	char **args;
	int nargs;
	int p = cli_cmd_parse(ctx, fl, sizeof(fl) / sizeof(fl[0]), argc - 1, argv + 1, &args,
	                      &nargs);
	if (p >= 0)
		return p;
	int rc;
	if (nargs != 1)
		rc = cli_usage_error(ctx, "Error: expected one FILE");
	else if (strcmp(sub, "save") == 0)
		rc = save(ctx, args[0]);
	else if (strcmp(sub, "restore") == 0)
		rc = inspect_or_restore(ctx, args[0], true);
	else if (strcmp(sub, "inspect") == 0)
		rc = inspect_or_restore(ctx, args[0], false);
	else
		rc = cli_usage_error(ctx, "Error: expected save, restore or inspect");
	free(args);
	return rc;
}
