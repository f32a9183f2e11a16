/*
 * agent/cli/cli_kv.c — see cli_kv.h.
 */
#define _GNU_SOURCE
#include "agent/cli/cli_kv.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/cli/flags.h"
#include "agent/http/httpc.h"
#include "kv/store.h"
#include "lib/xalloc.h"

struct kvctx {
	const char *http_addr;
	const char *token;
	FILE *out, *err;
	char addr[300];
};

static const char KV_USAGE[] =
        "Usage: rumor kv <subcommand> [options] [args]\n\n"
        "  Interact with the key-value store.\n\n"
        "Subcommands:\n"
        "    get     [-recurse] [-detailed] [-keys] [-separator=/] KEY\n"
        "    put     [-flags=N] [-cas -modify-index=N] [-acquire|-release -session=ID]\n"
        "            KEY [VALUE|@file|-]\n"
        "    delete  [-recurse] [-cas -modify-index=N] KEY\n"
        "    export  [PREFIX]\n"
        "    import  [@file|-|JSON]\n"
        "    verify  [-data-dir=]DIR   (offline check of the replica's files)\n\n"
        "Every subcommand but verify takes -http-addr=<address> and -token=<value>.\n";

/*
 * The key is escaped with its slashes kept, so "a/b" stays a path under /v1/kv/
 * but '?', '#' and spaces in a key cannot change the request. Error wording
 * follows consul's CLI, which scripts match.
 */
static int request(struct kvctx *k, const char *method, const char *key, const char *query,
                   const void *body, size_t len, struct httpc_response *resp)
{
	char path[4096], esc[3072], msg[512];
	memset(resp, 0, sizeof(*resp)); /* the caller frees it on every path */
	httpc_escape(esc, sizeof(esc), key, HTTPC_ESCAPE_KEEP_SLASH);
	snprintf(path, sizeof(path), "/v1/kv/%s%s%s", esc, query && *query ? "?" : "",
	         query ? query : "");
	char tok[600];
	const char *hdrs[2] = {NULL, NULL};
	if (k->token != NULL && *k->token) {
		/* a CR or LF would end the header and start another one */
		if (strpbrk(k->token, "\r\n") != NULL ||
		    (size_t)snprintf(tok, sizeof(tok), "X-Consul-Token: %s", k->token) >=
		            sizeof(tok)) {
			fprintf(k->err, "Error: invalid -token value\n");
			return -1;
		}
		hdrs[0] = tok;
	}
	struct httpc_options o = {0, hdrs, 0};
	if (httpc_request_opts(k->addr, method, path, body, len, &o, resp, msg, sizeof(msg)) < 0) {
		fprintf(k->err, "Error querying Consul agent: %s\n", msg);
		return -1;
	}
	return 0;
}

/*
 * Parse a command's flags and the HTTP address. Returns -1 to go on, with
 * *args (allocated here, the caller frees it) holding *nargs positional
 * arguments; else the exit code (0 after printing help, 1 after an error)
 * and nothing to free.
 */
static int parse(struct kvctx *k, struct cli_flag *fl, size_t nfl, int argc, char **argv,
                 char ***args, int *nargs, const char *usage)
{
	char msg[512];
	*args = xcalloc((size_t)argc + 1, sizeof(**args));
	int r = cli_flags_parse(fl, nfl, argc, argv, *args, nargs, msg, sizeof(msg));
	if (r == CLI_FLAGS_HELP) {
		fputs(usage, k->out);
		r = 0;
	} else if (r < 0) {
		fprintf(k->err, "%s\n\n%s", msg, usage);
		r = 1;
	} else if (cli_normalize_http_addr(k->http_addr, k->addr, sizeof(k->addr), msg,
	                                   sizeof(msg)) < 0) {
		fprintf(k->err, "%s\n", msg);
		r = 1;
	} else {
		return -1;
	}
	free(*args);
	*args = NULL;
	return r;
}

#define COMMON_FLAGS(k)                                                                            \
	{"http-addr", CLI_FLAG_STRING, &(k)->http_addr, "<address>",                               \
	 "Address of the agent's HTTP API."},                                                      \
	{                                                                                          \
		"token", CLI_FLAG_STRING, &(k)->token, "<value>", "ACL token."                     \
	}

static void print_value(FILE *out, const char *b64)
{
	if (b64 == NULL)
		return;
	size_t n = strlen(b64), bl = 0;
	uint8_t *bin = malloc(n + 1);
	if (bin == NULL)
		return;
	if (sodium_base642bin(bin, n + 1, b64, n, NULL, &bl, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) == 0)
		fwrite(bin, 1, bl, out);
	free(bin);
}

static void print_detailed(FILE *out, json_t *e)
{
	fprintf(out, "%-16s %.0f\n", "CreateIndex",
	        json_number_value(json_object_get(e, "CreateIndex")));
	json_t *fl = json_object_get(e, "Flags");
	if (json_is_real(fl)) /* past INT64_MAX: a double, nearest value */
		fprintf(out, "%-16s %.0f\n", "Flags", json_real_value(fl));
	else
		fprintf(out, "%-16s %" JSON_INTEGER_FORMAT "\n", "Flags", json_integer_value(fl));
	fprintf(out, "%-16s %s\n", "Key", json_string_value(json_object_get(e, "Key")));
	fprintf(out, "%-16s %.0f\n", "LockIndex",
	        json_number_value(json_object_get(e, "LockIndex")));
	fprintf(out, "%-16s %.0f\n", "ModifyIndex",
	        json_number_value(json_object_get(e, "ModifyIndex")));
	const char *sess = json_string_value(json_object_get(e, "Session"));
	fprintf(out, "%-16s %s\n", "Session", sess != NULL && *sess ? sess : "-");
	fprintf(out, "%-16s ", "Value");
	print_value(out, json_string_value(json_object_get(e, "Value")));
	fputc('\n', out);
}

static const char GET_USAGE[] = "Usage: rumor kv get [options] [KEY_OR_PREFIX]\n\n"
                                "  -recurse  all keys with the prefix, as key:value lines\n"
                                "  -keys     key names only (with -separator, rolled up)\n"
                                "  -detailed every field\n";

static int kv_get(struct kvctx *k, int argc, char **argv)
{
	int recurse = 0, detailed = 0, keys = 0, nargs = 0, rc = 1;
	const char *sep = NULL;
	struct cli_flag fl[] = {
	        COMMON_FLAGS(k),
	        {"recurse", CLI_FLAG_BOOL, &recurse, "", "Recursive lookup."},
	        {"detailed", CLI_FLAG_BOOL, &detailed, "", "All fields."},
	        {"keys", CLI_FLAG_BOOL, &keys, "", "Key names only."},
	        {"separator", CLI_FLAG_STRING, &sep, "<string>", "Roll up keys (with -keys)."},
	};
	char **args;
	int p = parse(k, fl, sizeof(fl) / sizeof(fl[0]), argc, argv, &args, &nargs, GET_USAGE);
	if (p >= 0)
		return p;
	const char *key = nargs > 0 ? args[0] : "";
	if (nargs > 1 || (key[0] == '\0' && !recurse && !keys)) {
		fprintf(k->err, "Error! Missing KEY argument\n\n%s", GET_USAGE);
		free(args);
		return 1;
	}
	if (key[0] == '/')
		key++;
	char q[256] = "";
	if (keys)
		snprintf(q, sizeof(q), "keys%s%s", sep ? "&separator=" : "", sep ? sep : "");
	else if (recurse)
		snprintf(q, sizeof(q), "recurse");
	struct httpc_response resp;
	if (request(k, "GET", key, q, NULL, 0, &resp) < 0)
		goto out;
	if (resp.status == 404) {
		if (keys || recurse)
			rc = 0;
		else
			fprintf(k->err, "Error! No key exists at: %s\n", key);
		goto out;
	}
	if (resp.status != 200) {
		fprintf(k->err, "Error querying Consul agent: Unexpected response code: %d (%s)\n",
		        resp.status, resp.body ? resp.body : "");
		goto out;
	}
	json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
	if (j == NULL) /* Flags past INT64_MAX (consul lock's semaphore keys) */
		j = json_loadb(resp.body, resp.body_len, JSON_DECODE_INT_AS_REAL, NULL);
	if (!json_is_array(j)) {
		fprintf(k->err, "Error! Malformed answer from the agent\n");
		json_decref(j);
		goto out;
	}
	size_t i;
	json_t *e;
	json_array_foreach(j, i, e)
	{
		if (keys) {
			fprintf(k->out, "%s\n", json_string_value(e));
		} else if (detailed) {
			if (i > 0)
				fputc('\n', k->out);
			print_detailed(k->out, e);
		} else if (recurse) {
			fprintf(k->out, "%s:", json_string_value(json_object_get(e, "Key")));
			print_value(k->out, json_string_value(json_object_get(e, "Value")));
			fputc('\n', k->out);
		} else {
			print_value(k->out, json_string_value(json_object_get(e, "Value")));
			fputc('\n', k->out);
		}
	}
	json_decref(j);
	rc = 0;
out:
	httpc_response_free(&resp);
	free(args);
	return rc;
}

/*
 * Reads to EOF whatever the size, for stdin and files alike; the agent, not the
 * CLI, enforces the value limit, so the user gets the agent's 413 message.
 */
static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	while (b != NULL) {
		if (n == cap) {
			char *t = realloc(b, cap * 2);
			if (t == NULL) {
				free(b);
				return NULL;
			}
			b = t;
			cap *= 2;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	*len = n;
	return b;
}

/* VALUE, @file or "-" (stdin) into a malloc'd buffer. */
static char *load_value(struct kvctx *k, const char *arg, size_t *len)
{
	if (strcmp(arg, "-") == 0)
		return read_all(stdin, len);
	if (arg[0] == '@') {
		FILE *f = fopen(arg + 1, "rb");
		if (f == NULL) {
			fprintf(k->err, "Error! Failed to read file: %s\n", arg + 1);
			return NULL;
		}
		char *b = read_all(f, len);
		fclose(f);
		return b;
	}
	*len = strlen(arg);
	return strdup(arg);
}

static const char PUT_USAGE[] = "Usage: rumor kv put [options] KEY [VALUE|@file|-]\n\n"
                                "  -flags=N            unsigned integer stored with the key\n"
                                "  -cas -modify-index=N  write only if the key's ModifyIndex is N\n"
                                "                        (0: only if the key does not exist)\n"
                                "  -acquire -session=ID  take the key's lock for the session\n"
                                "  -release -session=ID  give the key's lock back\n";

/*
 * A leading '/' is dropped from the key, as consul's CLI does, since the agent
 * refuses keys that begin with one. The agent's answer "true"/"false" decides
 * between success and a CAS failure, not the status code.
 */
static int kv_put(struct kvctx *k, int argc, char **argv)
{
	int cas = 0, acquire = 0, release = 0, nargs = 0, rc = 1;
	const char *flags = NULL, *mi = NULL, *session = NULL;
	struct cli_flag fl[] = {
	        COMMON_FLAGS(k),
	        {"flags", CLI_FLAG_STRING, &flags, "<uint>", "Flags."},
	        {"cas", CLI_FLAG_BOOL, &cas, "", "Check-and-set."},
	        {"modify-index", CLI_FLAG_STRING, &mi, "<uint>", "Index for -cas."},
	        {"acquire", CLI_FLAG_BOOL, &acquire, "", "Acquire the key's lock (-session)."},
	        {"release", CLI_FLAG_BOOL, &release, "", "Release the key's lock (-session)."},
	        {"session", CLI_FLAG_STRING, &session, "<id>", "Session for -acquire/-release."},
	};
	char **args;
	int p = parse(k, fl, sizeof(fl) / sizeof(fl[0]), argc, argv, &args, &nargs, PUT_USAGE);
	if (p >= 0)
		return p;
	if (nargs < 1 || nargs > 2) {
		fprintf(k->err, "Error! Missing KEY argument\n\n%s", PUT_USAGE);
		free(args);
		return 1;
	}
	if (cas && mi == NULL) {
		fprintf(k->err, "Cannot specify -cas without -modify-index\n");
		free(args);
		return 1;
	}
	if ((acquire || release) && (session == NULL || *session == '\0' || cas ||
	                             (acquire && release) || strlen(session) > 64)) {
		fprintf(k->err, "Error! -acquire and -release need -session=ID, and exclude each "
		                "other and -cas\n");
		free(args);
		return 1;
	}
	const char *key = args[0][0] == '/' ? args[0] + 1 : args[0];
	size_t len = 0;
	char *val = nargs == 2 ? load_value(k, args[1], &len) : strdup("");
	if (val == NULL) {
		free(args);
		return 1;
	}
	char q[256] = "";
	size_t ql = 0;
	if (flags)
		ql += (size_t)snprintf(q + ql, sizeof(q) - ql, "flags=%s", flags);
	if (cas)
		snprintf(q + ql, sizeof(q) - ql, "%scas=%s", ql ? "&" : "", mi);
	if (acquire || release)
		snprintf(q + ql, sizeof(q) - ql, "%s%s=%s", ql ? "&" : "",
		         acquire ? "acquire" : "release", session);
	struct httpc_response resp;
	if (request(k, "PUT", key, q, val, len, &resp) < 0)
		goto out;
	if (resp.status != 200) {
		fprintf(k->err, "Error! Failed writing data: Unexpected response code: %d (%s)\n",
		        resp.status, resp.body ? resp.body : "");
		goto out;
	}
	if (resp.body && strncmp(resp.body, "true", 4) == 0) {
		if (acquire || release)
			fprintf(k->out, "Success! Lock %s on: %s\n",
			        acquire ? "acquired" : "released", key);
		else
			fprintf(k->out, "Success! Data written to: %s\n", key);
		rc = 0;
	} else if (acquire || release) {
		fprintf(k->err, "Error! Did not %s the lock on %s\n",
		        acquire ? "acquire" : "release", key);
	} else {
		fprintf(k->err, "Error! Did not write to %s: CAS failed\n", key);
	}
out:
	httpc_response_free(&resp);
	free(val);
	free(args);
	return rc;
}

static const char DEL_USAGE[] = "Usage: rumor kv delete [options] KEY_OR_PREFIX\n\n"
                                "  -recurse            delete every key with the prefix\n"
                                "  -cas -modify-index=N  delete only if the ModifyIndex is N\n";

static int kv_delete(struct kvctx *k, int argc, char **argv)
{
	int cas = 0, recurse = 0, nargs = 0, rc = 1;
	const char *mi = NULL;
	struct cli_flag fl[] = {
	        COMMON_FLAGS(k),
	        {"recurse", CLI_FLAG_BOOL, &recurse, "", "Delete the prefix."},
	        {"cas", CLI_FLAG_BOOL, &cas, "", "Check-and-set."},
	        {"modify-index", CLI_FLAG_STRING, &mi, "<uint>", "Index for -cas."},
	};
	char **args;
	int p = parse(k, fl, sizeof(fl) / sizeof(fl[0]), argc, argv, &args, &nargs, DEL_USAGE);
	if (p >= 0)
		return p;
	if (nargs > 1 || (nargs == 0 && !recurse)) {
		fprintf(k->err, "Error! Missing KEY argument\n\n%s", DEL_USAGE);
		free(args);
		return 1;
	}
	if (cas && recurse) {
		fprintf(k->err, "Cannot specify both -cas and -recurse!\n");
		free(args);
		return 1;
	}
	if (cas && mi == NULL) {
		fprintf(k->err, "Cannot specify -cas without -modify-index\n");
		free(args);
		return 1;
	}
	const char *key = nargs ? (args[0][0] == '/' ? args[0] + 1 : args[0]) : "";
	char q[64] = "";
	if (recurse)
		snprintf(q, sizeof(q), "recurse");
	else if (cas)
		snprintf(q, sizeof(q), "cas=%s", mi);
	struct httpc_response resp;
	if (request(k, "DELETE", key, q, NULL, 0, &resp) < 0)
		goto out;
	if (resp.status != 200) {
		fprintf(k->err, "Error! Failed deleting: Unexpected response code: %d (%s)\n",
		        resp.status, resp.body ? resp.body : "");
		goto out;
	}
	if (resp.body && strncmp(resp.body, "true", 4) == 0) {
		if (recurse)
			fprintf(k->out, "Success! Deleted keys with prefix: %s\n", key);
		else
			fprintf(k->out, "Success! Deleted key: %s\n", key);
		rc = 0;
	} else {
		fprintf(k->err, "Error! Did not delete key %s: CAS failed\n", key);
	}
out:
	httpc_response_free(&resp);
	free(args);
	return rc;
}

/*
 * Consul's export format exactly (key, flags, base64 value; tab indentation), so
 * a file exported here imports into Consul and back. A missing prefix exports
 * an empty array, not an error.
 */
static int kv_export(struct kvctx *k, int argc, char **argv)
{
	int nargs = 0, rc = 1;
	struct cli_flag fl[] = {COMMON_FLAGS(k)};
	char **args;
	int p = parse(k, fl, 2, argc, argv, &args, &nargs,
	              "Usage: rumor kv export [options] [PREFIX]\n");
	if (p >= 0)
		return p;
	const char *key = nargs ? args[0] : "";
	struct httpc_response resp;
	if (request(k, "GET", key, "recurse", NULL, 0, &resp) < 0)
		goto out;
	json_t *arr = json_array();
	if (resp.status == 200) {
		json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
		size_t i;
		json_t *e;
		json_array_foreach(j, i, e)
		{
			const char *v = json_string_value(json_object_get(e, "Value"));
			json_array_append_new(arr, json_pack("{s:O, s:O, s:s}", "key",
			                                     json_object_get(e, "Key"), "flags",
			                                     json_object_get(e, "Flags"), "value",
			                                     v ? v : ""));
		}
		json_decref(j);
	} else if (resp.status != 404) {
		fprintf(k->err, "Error querying Consul agent: Unexpected response code: %d\n",
		        resp.status);
		json_decref(arr);
		goto out;
	}
	char *s = json_dumps(arr, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(arr);
	if (s != NULL) {
		/* Consul indents with tabs */
		for (char *c = s; *c; c++) {
			if (*c != '\n')
				continue;
			char *d = c + 1;
			while (*d == ' ')
				*d++ = '\t';
		}
		fprintf(k->out, "%s\n", s);
		free(s);
	}
	rc = 0;
out:
	httpc_response_free(&resp);
	free(args);
	return rc;
}

/*
 * Writes one key at a time and stops at the first failure, reporting which key:
 * keys before it stay written, as with consul kv import, so a rerun is safe.
 */
static int kv_import(struct kvctx *k, int argc, char **argv)
{
	int nargs = 0, rc = 1;
	struct cli_flag fl[] = {COMMON_FLAGS(k)};
	char **args;
	int p = parse(k, fl, 2, argc, argv, &args, &nargs,
	              "Usage: rumor kv import [options] [@file|-|JSON]\n");
	if (p >= 0)
		return p;
	size_t len = 0;
	char *data = load_value(k, nargs ? args[0] : "-", &len);
	free(args);
	if (data == NULL)
		return 1;
	json_error_t je;
	json_t *j = json_loadb(data, len, 0, &je);
	free(data);
	if (!json_is_array(j)) {
		fprintf(k->err, "Error! Cannot unmarshal data: %s\n", je.text);
		json_decref(j);
		return 1;
	}
	size_t i;
	json_t *e;
	rc = 0;
	json_array_foreach(j, i, e)
	{
		const char *key = json_string_value(json_object_get(e, "key"));
		const char *v = json_string_value(json_object_get(e, "value"));
		json_t *f = json_object_get(e, "flags");
		if (key == NULL) {
			fprintf(k->err, "Error! Entry %zu has no key\n", i);
			rc = 1;
			break;
		}
		size_t vl = v ? strlen(v) : 0, bl = 0;
		uint8_t *bin = malloc(vl + 1);
		if (bin == NULL || (vl && sodium_base642bin(bin, vl + 1, v, vl, NULL, &bl, NULL,
		                                            sodium_base64_VARIANT_ORIGINAL) != 0)) {
			fprintf(k->err, "Error! Cannot base 64 decode value for key %s\n", key);
			free(bin);
			rc = 1;
			break;
		}
		char q[64] = "";
		if (json_is_integer(f))
			snprintf(q, sizeof(q), "flags=%" JSON_INTEGER_FORMAT,
			         json_integer_value(f));
		struct httpc_response resp;
		int r = request(k, "PUT", key, q, bin, bl, &resp);
		free(bin);
		if (r < 0 || resp.status != 200) {
			if (r == 0)
				fprintf(k->err, "Error! Failed to write %s: %d %s\n", key,
				        resp.status, resp.body ? resp.body : "");
			httpc_response_free(&resp);
			rc = 1;
			break;
		}
		httpc_response_free(&resp);
		fprintf(k->out, "Imported: %s\n", key);
	}
	json_decref(j);
	return rc;
}

static const char VERIFY_USAGE[] =
        "Usage: rumor kv verify [-data-dir=]DIR\n\n"
        "  Checks the key-value replica's files without the HTTP API: every record of\n"
        "  DIR/kv/data.mdb (or DIR/data.mdb) must decode and, when it carries one, match\n"
        "  its checksum; the write-ahead log must end cleanly. Prints the counts and each\n"
        "  bad key; exit 1 if any record is bad or the log has a damaged tail.\n"
        "  LMDB is opened read-only, so the agent may be running; the log is then being\n"
        "  appended to, and a batch caught mid-write shows as a truncated tail.\n";

/* A key as it is printed by verify: printable ASCII as is, the rest \xNN. */
static void print_key(FILE *out, const char *key, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			fputc(c, out);
		else
			fprintf(out, "\\x%02x", c);
	}
}

static void verify_bad(void *ud, const char *key, size_t key_len, const char *why)
{
	FILE *out = ud;
	fputs("bad record: \"", out);
	print_key(out, key, key_len);
	fprintf(out, "\" %s\n", why);
}

/*
 * Reads the files directly, never through the agent, so it works on a stopped
 * agent's data dir (and read-only on a running one). Exit 1 on any bad record or
 * a damaged log tail, so it can gate a restore or a backup in a script.
 */
static int kv_verify(struct kvctx *k, int argc, char **argv)
{
	const char *dir = NULL;
	int nargs = 0;
	struct cli_flag fl[] = {
	        {"data-dir", CLI_FLAG_STRING, &dir, "<path>", "The agent's data directory."},
	};
	char **args;
	int p = parse(k, fl, 1, argc, argv, &args, &nargs, VERIFY_USAGE);
	if (p >= 0)
		return p;
	if (dir == NULL && nargs == 1)
		dir = args[0];
	if (dir == NULL || nargs > (dir == args[0] ? 1 : 0)) {
		fprintf(k->err, "verify takes one data directory\n\n%s", VERIFY_USAGE);
		free(args);
		return 1;
	}
	/* the agent's data dir holds kv/; accept that directory itself too */
	char kvdir[4096];
	struct stat st;
	snprintf(kvdir, sizeof(kvdir), "%s/kv/data.mdb", dir);
	if (stat(kvdir, &st) == 0)
		snprintf(kvdir, sizeof(kvdir), "%s/kv", dir);
	else
		snprintf(kvdir, sizeof(kvdir), "%s", dir);
	free(args);
	struct kv_store_verify_result res;
	char err[512];
	if (kv_store_verify(kvdir, verify_bad, k->out, &res, err, sizeof(err)) < 0) {
		fprintf(k->err, "Error verifying %s: %s\n", kvdir, err);
		return 1;
	}
	fprintf(k->out,
	        "records: %" PRIu64 " (%" PRIu64 " with checksum, %" PRIu64
	        " without (older format), %" PRIu64 " bad)\n",
	        res.records, res.checked, res.legacy, res.bad);
	bool log_bad = false;
	if (res.wal_error == -ENOENT) {
		fprintf(k->out, "log: none\n");
	} else if (res.wal_error < 0) {
		fprintf(k->out, "log: unreadable: %s\n", strerror(-res.wal_error));
		log_bad = true;
	} else if (!res.wal_tail_dropped) {
		fprintf(k->out, "log: %zu batches since the last checkpoint, clean end\n",
		        res.wal_batches);
	} else {
		fprintf(k->out,
		        "log: %zu batches since the last checkpoint, then %u records (%" PRIu64
		        " bytes) at offset %" PRIu64 " would be dropped: %s (%u of them whole)\n",
		        res.wal_batches, res.wal_tail_records, res.wal_tail_bytes,
		        res.wal_tail_offset, res.wal_tail_why, res.wal_tail_intact);
		log_bad = true;
	}
	if (res.bad > 0 || log_bad) {
		fprintf(k->out, "FAILED: %" PRIu64 " bad record%s%s\n", res.bad,
		        res.bad == 1 ? "" : "s", log_bad ? ", damaged log" : "");
		return 1;
	}
	fprintf(k->out, "OK\n");
	return 0;
}

int cli_kv_run(int argc, char **argv, const char *http_addr, const char *token, FILE *out,
               FILE *err)
{
	struct kvctx k = {http_addr, token, out, err, ""};
	if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "-help") == 0 ||
	    strcmp(argv[0], "--help") == 0) {
		fputs(KV_USAGE, argc < 1 ? err : out);
		return argc < 1 ? 1 : 0;
	}
	const char *sub = argv[0];
	if (strcmp(sub, "get") == 0)
		return kv_get(&k, argc - 1, argv + 1);
	if (strcmp(sub, "put") == 0)
		return kv_put(&k, argc - 1, argv + 1);
	if (strcmp(sub, "delete") == 0)
		return kv_delete(&k, argc - 1, argv + 1);
	if (strcmp(sub, "export") == 0)
		return kv_export(&k, argc - 1, argv + 1);
	if (strcmp(sub, "import") == 0)
		return kv_import(&k, argc - 1, argv + 1);
	if (strcmp(sub, "verify") == 0)
		return kv_verify(&k, argc - 1, argv + 1);
	fprintf(err, "Unknown kv subcommand: %s\n\n%s", sub, KV_USAGE);
	return 1;
}
