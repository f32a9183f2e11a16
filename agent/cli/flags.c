/*
 * agent/cli/flags.c — see flags.h.
 *
 * Go's flag package is the model because consul's users type its syntax:
 * one or two dashes, "=value" or the next argument, booleans only with
 * "=", and flags after positional arguments (Go stops there; consul's
 * commands do not, and neither do we).  -h and -help are answered only
 * when a command does not define them itself.
 */
#include "agent/cli/flags.h"
#include "lib/err.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Go's strconv.ParseBool spellings and no others, so "-detailed=T" means the same
 * to us as to consul's CLI.
 */
static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
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

/* A flag's value is set where it is found, so a flag given twice keeps the
 * last value (Go's rule); positional arguments keep their order.  Never
 * writes past args[argc - 1]: each argument lands in at most one slot. */
int cli_flags_parse(const struct cli_flag *flags, size_t nflags, int argc, char **argv, char **args,
                    int *nargs, char *err, size_t errlen)
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
			err_set(err, errlen, "bad flag syntax: %s", a);
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
			err_set(err, errlen, "flag provided but not defined: -%.*s", (int)nlen,
			        name);
			return -1;
		}
		if (f->type == CLI_FLAG_BOOL) {
			int v = 1;

			if (eq != NULL && parse_bool(eq + 1, &v) != 0) {
				err_set(err, errlen, "invalid boolean value \"%s\" for -%s", eq + 1,
				        f->name);
				return -1;
			}
			*(int *)f->value = v;
		} else {
			if (eq != NULL) {
				*(const char **)f->value = eq + 1;
			} else if (i + 1 < argc) {
				*(const char **)f->value = argv[++i];
			} else {
				err_set(err, errlen, "flag needs an argument: -%s", f->name);
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

void cli_flags_usage(FILE *out, const struct cli_flag *flags, size_t nflags)
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

/*
 * RUMOR_HTTP_ADDR first, then CONSUL_HTTP_ADDR, so an environment already set
 * up for consul works unchanged and ours can still override it.
 */
const char *cli_default_http_addr(void)
{
	const char *v = getenv("RUMOR_HTTP_ADDR");

	if (v == NULL || *v == '\0')
		v = getenv("CONSUL_HTTP_ADDR");
	if (v == NULL || *v == '\0')
		v = CLI_DEFAULT_HTTP_ADDR;
	return v;
}

/*
 * Same order as the address; an empty variable counts as unset, so exporting
 * an empty token never sends an empty X-Consul-Token header.
 */
const char *cli_default_token(void)
{
	const char *v = getenv("RUMOR_HTTP_TOKEN");

	if (v == NULL || *v == '\0')
		v = getenv("CONSUL_HTTP_TOKEN");
	return (v != NULL && *v != '\0') ? v : NULL;
}

/* Only the http:// scheme is stripped: httpc speaks plain HTTP, and an
 * https:// address silently sent in clear would leak the token. */
int cli_normalize_http_addr(const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *s = in ? in : "";
	size_t n;

	if (strncasecmp(s, "http://", 7) == 0) {
		s += 7;
	} else if (strstr(s, "://") != NULL) {
		err_set(err, errlen,
		        "unsupported scheme in HTTP address \"%s\" (only "
		        "http:// is supported)",
		        s);
		return -1;
	}
	n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		n--;
	if (n == 0) {
		err_set(err, errlen, "empty HTTP address");
		return -1;
	}
	if (memchr(s, '/', n) != NULL) {
		err_set(err, errlen, "HTTP address \"%s\" must be host:port without a path", s);
		return -1;
	}
	if (n >= outlen) {
		err_set(err, errlen, "HTTP address too long");
		return -1;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}
