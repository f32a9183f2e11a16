/*
 * Unit tests for agent/config: flags, JSON files, precedence, validation,
 * durations, -dev and reload.  Every file and directory is created under one
 * mkdtemp() directory that is removed at the end.
 */
#define _GNU_SOURCE
#include "agent/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "tests/unit/check.h"

static char g_base[256]; /* temp dir for this run */
static char g_data[300]; /* a data dir inside it */

/* ---- helpers ------------------------------------------------------------ */

/* Parses a NULL-terminated list of arguments (argv[0] "agent" is added),
 * then logs the config notices as the agent does once its log is set up. */
static int parse(struct rumor_config *c, char *err, size_t errlen, ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;
	const char *a;

	argv[argc++] = "agent";
	va_start(ap, errlen);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	rumor_config_init(c);
	err[0] = '\0';
	int rc = rumor_config_parse(c, argc, argv, err, errlen);
	if (rc == 0)
		rumor_config_log_notices(c);
	return rc;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

/* A fresh file name under g_base, created with mkstemps. */
static void temp_json(char *out, size_t outlen, const char *text)
{
	snprintf(out, outlen, "%s/cfg-XXXXXX.json", g_base);
	int fd = mkstemps(out, 5);
	if (fd < 0) {
		perror("mkstemps");
		exit(2);
	}
	close(fd);
	write_file(out, text);
}

static void temp_dir(char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/dir-XXXXXX", g_base);
	if (mkdtemp(out) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs f with stdout sent to /dev/null. */
static int quietly(int (*f)(void *), void *arg)
{
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, STDOUT_FILENO);
	close(devnull);
	int rc = f(arg);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	return rc;
}

/* ---- defaults and flag syntax ------------------------------------------ */

static void defaults_are_consuls(void)
{
	struct rumor_config c;
	char err[512], host[256] = "";

	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, NULL);
	CHECK_INT(0, rc);
	CHECK(err[0] == '\0', "unexpected error \"%s\"", err);
	gethostname(host, sizeof(host));
	CHECK_STR(host, c.node_name);
	CHECK_STR("dc1", c.datacenter);
	CHECK_STR("consul.", c.domain);
	CHECK_STR("0.0.0.0", c.bind_addr);
	CHECK_STR("127.0.0.1", c.client_addr);
	CHECK(c.advertise_addr != NULL && strcmp(c.advertise_addr, "0.0.0.0"),
	      "advertise should be a concrete address, got %s",
	      c.advertise_addr ? c.advertise_addr : "(null)");
	CHECK_INT(8301, c.serf_lan_port);
	CHECK_INT(8500, c.http_port);
	CHECK_INT(8600, c.dns_port);
	CHECK_STR(g_data, c.data_dir);
	CHECK_INT(0, c.data_dir_is_temp);
	CHECK_INT(0, c.start_join.n);
	CHECK_INT(0, c.retry_join.n);
	CHECK_INT(30000, c.retry_interval_ms);
	CHECK_INT(0, c.retry_max);
	CHECK_INT(72LL * 3600 * 1000, c.reconnect_timeout_ms);
	CHECK_INT(0, c.rejoin_after_leave);
	CHECK_INT(0, c.dev);
	CHECK_INT(RUMOR_CONFIG_PROFILE_LAN, c.profile);
	CHECK_INT(RUMOR_CONFIG_LOG_INFO, c.log_level);
	CHECK_INT(1, c.leave_on_terminate);
	CHECK_INT(0, c.skip_leave_on_interrupt);
	CHECK_INT(0, c.encrypt_key_len);
	CHECK_INT(0, c.node_meta_n);
	CHECK(c.pid_file == NULL && c.log_file == NULL, "pid/log file set");
	CHECK_INT(0, c.syslog);
	rumor_config_free(&c);
}

static void flag_accepts_all_four_forms(void)
{
	static const char *const forms[][2] = {
	        {"-node=n1", NULL},
	        {"-node", "n1"},
	        {"--node=n1", NULL},
	        {"--node", "n1"},
	};
	for (size_t i = 0; i < 4; i++) {
		struct rumor_config c;
		char err[512];
		int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, forms[i][0], forms[i][1],
		               NULL);
		CHECK_INT(0, rc);
		CHECK_STR("n1", c.node_name);
		rumor_config_free(&c);
	}
}

static void value_may_contain_equals_and_dashes(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", "k:a=b", "-node",
	               "-n-", NULL);
	CHECK_INT(0, rc);
	CHECK_STR("a=b", rumor_config_meta_get(&c, "k"));
	CHECK_STR("-n-", c.node_name);
	rumor_config_free(&c);
}

static void repeatable_flags_accumulate_in_order(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-join", "a", "--join=b:8301",
	               "-join", "[::1]:8301", "-retry-join", "x", "-retry-join=y", "-node-meta",
	               "k1:v1", "-node-meta=k2:v2", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(3, c.start_join.n);
	if (c.start_join.n == 3) {
		CHECK_STR("a", c.start_join.items[0]);
		CHECK_STR("b:8301", c.start_join.items[1]);
		CHECK_STR("[::1]:8301", c.start_join.items[2]);
	}
	CHECK_INT(2, c.retry_join.n);
	if (c.retry_join.n == 2) {
		CHECK_STR("x", c.retry_join.items[0]);
		CHECK_STR("y", c.retry_join.items[1]);
	}
	CHECK_INT(2, c.node_meta_n);
	CHECK_STR("v1", rumor_config_meta_get(&c, "k1"));
	CHECK_STR("v2", rumor_config_meta_get(&c, "k2"));
	rumor_config_free(&c);
}

static void scalar_flags_last_one_wins(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node", "a", "-node", "b",
	               "-http-port", "1", "-http-port=-1", NULL);
	CHECK_INT(0, rc);
	CHECK_STR("b", c.node_name);
	CHECK_INT(-1, c.http_port);
	rumor_config_free(&c);
}

static void bool_flags_take_bare_and_explicit_forms(void)
{
	struct rumor_config c;
	char err[512];
	int rc =
	        parse(&c, err, sizeof(err), "-data-dir", g_data, "-rejoin-after-leave",
	              "-leave-on-terminate=false", "--skip-leave-on-interrupt=1", "--syslog", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(1, c.rejoin_after_leave);
	CHECK_INT(0, c.leave_on_terminate);
	CHECK_INT(1, c.skip_leave_on_interrupt);
	CHECK_INT(1, c.syslog);
	rumor_config_free(&c);

	/* "-flag false" as two arguments, and a bare bool before another flag */
	rc = parse(&c, err, sizeof(err), "-leave-on-terminate", "false", "-rejoin-after-leave",
	           "-data-dir", g_data, NULL);
	CHECK_INT(0, rc);
	CHECK_INT(0, c.leave_on_terminate);
	CHECK_INT(1, c.rejoin_after_leave);
	rumor_config_free(&c);
}

static void unknown_flag_is_named(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-foo", NULL);
	CHECK_INT(-1, rc);
	CHECK_STR("unknown flag -foo", err);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "--foo=1", NULL);
	CHECK_INT(-1, rc);
	CHECK_STR("unknown flag -foo", err);
	rumor_config_free(&c);
}

static void missing_value_and_stray_argument_are_errors(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node", NULL);
	CHECK_INT(-1, rc);
	CHECK_STR("flag needs a value: -node", err);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "stray", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "unexpected argument \"stray\"");
	rumor_config_free(&c);
}

static int parse_help(void *arg)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-node", "x", (const char *)arg, NULL);
	rumor_config_free(&c);
	return rc;
}

static void help_flag_returns_one(void)
{
	CHECK_INT(1, quietly(parse_help, "-h"));
	CHECK_INT(1, quietly(parse_help, "-help"));
	CHECK_INT(1, quietly(parse_help, "--help"));
}

static void usage_lists_every_flag(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	rumor_config_usage(f);
	fclose(f);
	static const char *const flags[] = {"-node=",
	                                    "-bind=",
	                                    "-advertise=",
	                                    "-serf-lan-port=",
	                                    "-serf-lan-bind=",
	                                    "-client=",
	                                    "-http-port=",
	                                    "-dns-port=",
	                                    "-data-dir=",
	                                    "-join=",
	                                    "-retry-join=",
	                                    "-retry-interval=",
	                                    "-retry-max=",
	                                    "-config-file=",
	                                    "-config-dir=",
	                                    "-log-level=",
	                                    "-datacenter=",
	                                    "-domain=",
	                                    "-node-meta=",
	                                    "-dev\n",
	                                    "-profile=",
	                                    "-encrypt=",
	                                    "-leave-on-terminate\n",
	                                    "-skip-leave-on-interrupt\n",
	                                    "-reconnect-timeout=",
	                                    "-rejoin-after-leave\n",
	                                    "-pid-file=",
	                                    "-log-file=",
	                                    "-syslog\n",
	                                    "-help"};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		CHECK_HAS(buf, flags[i]);
	free(buf);
}

/* ---- durations ---------------------------------------------------------- */

static void durations_parse_go_syntax(void)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
	        {"0", 0},          {"30", 30000},      {"10s", 10000},
	        {"500ms", 500},    {"1h30m", 5400000}, {"2h", 7200000},
	        {"1.5s", 1500},    {".5s", 500},       {"1m0.25s", 60250},
	        {"+5s", 5000},     {"1500us", 1},      {"999999ns", 0},
	        {"1\xc2\xb5s", 0}, {"72h", 259200000}, {"2562047h", 2562047LL * 3600000},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t ms = -7;
		int rc = rumor_parse_duration(good[i].s, &ms);
		CHECK(rc == 0 && ms == good[i].ms,
		      "\"%s\": expected rc 0 and %lld ms, got rc %d and %lld", good[i].s,
		      (long long)good[i].ms, rc, (long long)ms);
	}
}

static void durations_reject_garbage_negative_and_overflow(void)
{
	static const char *const bad[] = {
	        "",
	        "-1s",
	        "-5",
	        "abc",
	        "5x",
	        "1h30",
	        "s",
	        ".",
	        ".s",
	        "1.2.3s",
	        "10 s",
	        " 10s",
	        "1e3s",
	        "+",
	        "9999999999999999999s",
	        "2562048h",
	        "9223372036854775808",
	        "10000000000",
	        "5sec",
	        "1H",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ms = -7;
		int rc = rumor_parse_duration(bad[i], &ms);
		CHECK(rc == -1 && ms == -7, "\"%s\": expected rejection, got rc %d and %lld",
		      bad[i], rc, (long long)ms);
	}
}

static void duration_flags_fill_milliseconds(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-retry-interval", "1m30s",
	               "-reconnect-timeout=8h", "-retry-max", "5", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(90000, c.retry_interval_ms);
	CHECK_INT(8LL * 3600 * 1000, c.reconnect_timeout_ms);
	CHECK_INT(5, c.retry_max);
	rumor_config_free(&c);
}

/* ---- validation --------------------------------------------------------- */

static void invalid_values_name_the_flag(void)
{
	char long_node[200];
	memset(long_node, 'n', 129);
	long_node[129] = '\0';
	static struct {
		const char *flag, *value, *want;
	} cases[] = {
	        {"-node", "", "(want a non-empty node name)"},
	        {"-node", "a b", "whitespace"},
	        {"-node", "a\tb", "whitespace"},
	        {"-node", NULL /* long_node */, "at most 128 bytes"},
	        {"-bind", "foo", "want an IPv4 or IPv6 address"},
	        {"-serf-lan-bind", "1.2.3", "want an IPv4 or IPv6 address"},
	        {"-advertise", "0.0.0.0.0", "want an IPv4 or IPv6 address"},
	        {"-client", "localhost", "want an IPv4 or IPv6 address"},
	        {"-serf-lan-port", "0", "want a port 1-65535"},
	        {"-serf-lan-port", "-1", "want a port 1-65535"},
	        {"-http-port", "abc", "want a port 1-65535"},
	        {"-http-port", "70000", "want a port 1-65535"},
	        {"-http-port", "80x", "want a port 1-65535"},
	        {"-dns-port", "-2", "want a port 1-65535"},
	        {"-data-dir", "", "want a non-empty path"},
	        {"-join", "", "want an address"},
	        {"-retry-join", "a b", "whitespace"},
	        {"-retry-interval", "soon", "want a duration"},
	        {"-retry-interval", "0s", "above zero"},
	        {"-retry-max", "-1", "want an integer >= 0"},
	        {"-retry-max", "many", "want an integer >= 0"},
	        {"-reconnect-timeout", "500ms", "at least 1s"},
	        {"-reconnect-timeout", "-72h", "want a duration"},
	        {"-log-level", "loud", "want trace, debug, info, warn or err"},
	        {"-datacenter", "DC1", "lowercase"},
	        {"-datacenter", "", "lowercase"},
	        {"-datacenter", "dc.1", "lowercase"},
	        {"-domain", "a..b", "empty labels"},
	        {"-domain", "bad domain", "letters, digits"},
	        {"-node-meta", "bad key:v", "letters, digits"},
	        {"-node-meta", ":v", "must not be empty"},
	        {"-profile", "moon", "want lan, wan or local"},
	        {"-encrypt", "c2hvcnQ=", "16, 24 or 32-byte key"},
	        {"-encrypt", "not base64!", "16, 24 or 32-byte key"},
	        {"-leave-on-terminate=maybe", NULL, "want true or false"},
	        {"-dev=maybe", NULL, "want true or false"},
	        {"-pid-file", "", "want a non-empty path"},
	        {"-log-file", "", "want a non-empty path"},
	        {"-config-file", "", "want a path"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rumor_config c;
		char err[512], want_prefix[128];
		const char *value = cases[i].value;
		int rc;
		if (value == NULL && strchr(cases[i].flag, '=') == NULL)
			value = long_node;
		rc = parse(&c, err, sizeof(err), "-data-dir", g_data, cases[i].flag, value, NULL);
		CHECK(rc == -1, "%s %s: expected -1, got %d", cases[i].flag, value ? value : "",
		      rc);
		/* "invalid value for -flag: ..." — the flag without "=..." */
		snprintf(want_prefix, sizeof(want_prefix),
		         "invalid value for %.*s: ", (int)strcspn(cases[i].flag, "="),
		         cases[i].flag);
		CHECK_HAS(err, want_prefix);
		CHECK_HAS(err, cases[i].want);
		rumor_config_free(&c);
	}
}

static void http_port_error_message_is_exact(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-http-port", "abc", NULL);
	CHECK_INT(-1, rc);
	CHECK_STR("invalid value for -http-port: \"abc\" "
	          "(want a port 1-65535 or -1 to disable)",
	          err);
	rumor_config_free(&c);
}

static void error_message_escapes_control_characters(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node", "a\nb", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "\"a\\x0ab\"");
	CHECK(strchr(err, '\n') == NULL, "newline leaked into \"%s\"", err);
	rumor_config_free(&c);
}

static void disabled_ports_and_values_within_limits_pass(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-http-port", "-1", "-dns-port",
	               "-1", "-serf-lan-port", "65535", "-datacenter", "eu-west_1", "-domain",
	               "Example.COM", "-log-level", "WARNING", "-profile", "WAN", "-bind", "::1",
	               "-client", "0.0.0.0", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(-1, c.http_port);
	CHECK_INT(-1, c.dns_port);
	CHECK_INT(65535, c.serf_lan_port);
	CHECK_STR("eu-west_1", c.datacenter);
	CHECK_STR("example.com.", c.domain);
	CHECK_INT(RUMOR_CONFIG_LOG_WARN, c.log_level);
	CHECK_INT(RUMOR_CONFIG_PROFILE_WAN, c.profile);
	CHECK_STR("::1", c.bind_addr);
	CHECK_STR("::1", c.advertise_addr);
	rumor_config_free(&c);

	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-log-level", "Error", "-profile",
	           "local", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(RUMOR_CONFIG_LOG_ERR, c.log_level);
	CHECK_STR("err", rumor_config_log_level_name(c.log_level));
	CHECK_STR("local", rumor_config_profile_name(c.profile));
	rumor_config_free(&c);
}

static void advertise_follows_bind_unless_set(void)
{
	struct rumor_config c;
	char err[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-bind", "10.1.2.3", NULL);
	CHECK_INT(0, rc);
	CHECK_STR("10.1.2.3", c.advertise_addr);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-bind", "10.1.2.3", "-advertise",
	           "192.0.2.7", NULL);
	CHECK_INT(0, rc);
	CHECK_STR("192.0.2.7", c.advertise_addr);
	rumor_config_free(&c);
}

static void encrypt_key_is_decoded(void)
{
	struct rumor_config c;
	char err[512];
	/* 32 bytes 0x00..0x1f and 16 bytes of 'A' */
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-encrypt",
	               "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(32, c.encrypt_key_len);
	for (int i = 0; i < 32; i++)
		CHECK(c.encrypt_key[i] == i, "byte %d: expected %d, got %d", i, i,
		      c.encrypt_key[i]);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-encrypt",
	           "QUFBQUFBQUFBQUFBQUFBQQ==", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(16, c.encrypt_key_len);
	CHECK(c.encrypt_key[15] == 'A', "expected 'A', got %d", c.encrypt_key[15]);
	rumor_config_free(&c);

	/* a bad key is not echoed into the message (it may be a near-secret) */
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-encrypt", "c2VjcmV0c2VjcmV0", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "invalid value for -encrypt: (hidden)");
	CHECK(strstr(err, "c2VjcmV0") == NULL, "key echoed in \"%s\"", err);
	rumor_config_free(&c);
}

/* ---- node meta ---------------------------------------------------------- */

static void node_meta_enforces_consuls_limits(void)
{
	struct rumor_config c;
	char err[512];
	char key128[130], key129[131], val512[600], val513[600], arg[800];

	memset(key128, 'k', 128);
	key128[128] = '\0';
	memset(key129, 'k', 129);
	key129[129] = '\0';
	memset(val512, 'v', 512);
	val512[512] = '\0';
	memset(val513, 'v', 513);
	val513[513] = '\0';

	rumor_config_init(&c);
	/* via flags, building argv with 64 pairs */
	char *argv[70];
	char pairs[65][24];
	int argc = 0;
	argv[argc++] = "agent";
	argv[argc++] = "-data-dir";
	argv[argc++] = g_data;
	for (int i = 0; i < 64; i++) {
		snprintf(pairs[i], sizeof(pairs[i]), "-node-meta=k%d:v", i);
		argv[argc++] = pairs[i];
	}
	argv[argc++] = "-node-meta=k0:again"; /* replaces, does not count */
	int rc = rumor_config_parse(&c, argc, argv, err, sizeof(err));
	CHECK_INT(0, rc);
	CHECK_INT(64, c.node_meta_n);
	CHECK_STR("again", rumor_config_meta_get(&c, "k0"));
	rumor_config_free(&c);

	rumor_config_init(&c);
	snprintf(pairs[64], sizeof(pairs[64]), "-node-meta=k64:v");
	argv[argc - 1] = pairs[64];
	rc = rumor_config_parse(&c, argc, argv, err, sizeof(err));
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "invalid value for -node-meta: \"k64:v\"");
	CHECK_HAS(err, "at most 64");
	rumor_config_free(&c);

	snprintf(arg, sizeof(arg), "%s:%s", key128, val512);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", arg, NULL);
	CHECK_INT(0, rc);
	CHECK_STR(val512, rumor_config_meta_get(&c, key128));
	rumor_config_free(&c);

	snprintf(arg, sizeof(arg), "%s:v", key129);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", arg, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "-node-meta");
	CHECK_HAS(err, "longer than 128");
	rumor_config_free(&c);

	snprintf(arg, sizeof(arg), "k:%s", val513);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", arg, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "-node-meta");
	CHECK_HAS(err, "longer than 512");
	rumor_config_free(&c);

	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", "consul-version:1",
	           NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "reserved");
	rumor_config_free(&c);

	/* Consul: split at the first ':'; no ':' means an empty value */
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-node-meta", "a:b:c", "-node-meta",
	           "flag", NULL);
	CHECK_INT(0, rc);
	CHECK_STR("b:c", rumor_config_meta_get(&c, "a"));
	CHECK_STR("", rumor_config_meta_get(&c, "flag"));
	CHECK(rumor_config_meta_get(&c, "nope") == NULL, "unexpected key");
	rumor_config_free(&c);
}

/* ---- files -------------------------------------------------------------- */

static void file_values_apply_and_flags_override(void)
{
	struct rumor_config c;
	char err[512], path[512];
	temp_json(path, sizeof(path),
	          "{\n"
	          "  \"node_name\": \"from-file\",\n"
	          "  \"datacenter\": \"east\",\n"
	          "  \"ports\": {\"http\": 9000, \"dns\": -1, \"serf_lan\": 7301},\n"
	          "  \"start_join\": [\"f1\", \"f2\"],\n"
	          "  \"retry_join\": [\"r1\"],\n"
	          "  \"node_meta\": {\"rack\": \"r1\", \"zone\": \"a\"},\n"
	          "  \"log_level\": \"debug\",\n"
	          "  \"retry_interval\": \"5s\",\n"
	          "  \"reconnect_timeout\": 3600,\n"
	          "  \"retry_max\": 3,\n"
	          "  \"leave_on_terminate\": false,\n"
	          "  \"rejoin_after_leave\": true,\n"
	          "  \"bind_addr\": \"127.0.0.2\",\n"
	          "  \"client_addr\": \"127.0.0.3\",\n"
	          "  \"domain\": \"rumor\",\n"
	          "  \"profile\": \"local\",\n"
	          "  \"enable_syslog\": true,\n"
	          "  \"pid_file\": \"/run/r.pid\",\n"
	          "  \"encrypt\": \"QUFBQUFBQUFBQUFBQUFBQQ==\"\n"
	          "}\n");
	int rc =
	        parse(&c, err, sizeof(err), "-node", "from-flag", "-config-file", path, "-data-dir",
	              g_data, "-join", "j1", "-node-meta", "zone:b", "-log-level=warn", NULL);
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	CHECK_STR("from-flag", c.node_name);
	CHECK_STR("east", c.datacenter);
	CHECK_INT(9000, c.http_port);
	CHECK_INT(-1, c.dns_port);
	CHECK_INT(7301, c.serf_lan_port);
	CHECK_INT(3, c.start_join.n);
	if (c.start_join.n == 3) {
		CHECK_STR("f1", c.start_join.items[0]);
		CHECK_STR("f2", c.start_join.items[1]);
		CHECK_STR("j1", c.start_join.items[2]);
	}
	CHECK_INT(1, c.retry_join.n);
	CHECK_STR("r1", rumor_config_meta_get(&c, "rack"));
	CHECK_STR("b", rumor_config_meta_get(&c, "zone"));
	CHECK_INT(RUMOR_CONFIG_LOG_WARN, c.log_level);
	CHECK_INT(5000, c.retry_interval_ms);
	CHECK_INT(3600000, c.reconnect_timeout_ms);
	CHECK_INT(3, c.retry_max);
	CHECK_INT(0, c.leave_on_terminate);
	CHECK_INT(1, c.rejoin_after_leave);
	CHECK_STR("127.0.0.2", c.bind_addr);
	CHECK_STR("127.0.0.2", c.advertise_addr);
	CHECK_STR("127.0.0.3", c.client_addr);
	CHECK_STR("rumor.", c.domain);
	CHECK_INT(RUMOR_CONFIG_PROFILE_LOCAL, c.profile);
	CHECK_INT(1, c.syslog);
	CHECK_STR("/run/r.pid", c.pid_file);
	CHECK_INT(16, c.encrypt_key_len);
	CHECK_INT(1, c.sources_n);
	rumor_config_free(&c);
	unlink(path);
}

static void data_dir_from_file_is_used(void)
{
	struct rumor_config c;
	char err[512], path[512], text[600];
	snprintf(text, sizeof(text), "{\"data_dir\": \"%s/fromfile\"}", g_base);
	temp_json(path, sizeof(path), text);
	int rc = parse(&c, err, sizeof(err), "-config-file", path, NULL);
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	CHECK(c.data_dir && strstr(c.data_dir, "/fromfile"), "expected .../fromfile, got %s",
	      c.data_dir ? c.data_dir : "(null)");
	rumor_config_free(&c);
	unlink(path);
}

static void config_dir_loads_json_in_name_order(void)
{
	struct rumor_config c;
	char err[512], dir[512], p[700], file[512];

	temp_dir(dir, sizeof(dir));
	snprintf(p, sizeof(p), "%s/20-b.json", dir);
	write_file(p, "{\"node_name\": \"b\", \"start_join\": [\"b\"]}");
	snprintf(p, sizeof(p), "%s/10-a.json", dir);
	write_file(p, "{\"node_name\": \"a\", \"start_join\": [\"a\"]}");
	snprintf(p, sizeof(p), "%s/30-c.txt", dir);
	write_file(p, "this is not json");
	snprintf(p, sizeof(p), "%s/40-d.json.bak", dir);
	write_file(p, "{\"nonsense\": 1}");
	snprintf(p, sizeof(p), "%s/25-sub.json", dir);
	mkdir(p, 0700);

	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-dir", dir, NULL);
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	CHECK_STR("b", c.node_name);
	CHECK_INT(2, c.start_join.n);
	if (c.start_join.n == 2) {
		CHECK_STR("a", c.start_join.items[0]);
		CHECK_STR("b", c.start_join.items[1]);
	}
	rumor_config_free(&c);

	/* Sources apply in command-line order, file and dir interleaved. */
	temp_json(file, sizeof(file), "{\"node_name\": \"x\"}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-dir", dir, "-config-file",
	           file, NULL);
	CHECK_INT(0, rc);
	CHECK_STR("x", c.node_name);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", file, "-config-dir",
	           dir, NULL);
	CHECK_INT(0, rc);
	CHECK_STR("b", c.node_name);
	rumor_config_free(&c);
	unlink(file);
	rm_rf(dir);
}

static void missing_config_sources_are_errors(void)
{
	struct rumor_config c;
	char err[512], p[512];
	snprintf(p, sizeof(p), "%s/does-not-exist.json", g_base);
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", p, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, p);
	CHECK_HAS(err, "No such file");
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-dir", p, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "config dir");
	CHECK_HAS(err, p);
	rumor_config_free(&c);
}

static void unknown_key_names_key_and_file(void)
{
	struct rumor_config c;
	char err[512], path[512];
	temp_json(path, sizeof(path), "{\"node_name\": \"a\", \"node_nam\": \"x\"}");
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, path);
	CHECK_HAS(err, "unknown key \"node_nam\"");
	rumor_config_free(&c);
	unlink(path);

	temp_json(path, sizeof(path), "{\"ports\": {\"htp\": 1}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "unknown key \"ports.htp\"");
	rumor_config_free(&c);
	unlink(path);
}

static void wrong_type_names_key_file_and_type(void)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	        {"{\"ports\": {\"http\": \"8500\"}}",
	         "key \"ports.http\" must be an integer, got string"},
	        {"{\"ports\": {\"http\": 85.5}}",
	         "key \"ports.http\" must be an integer, got number"},
	        {"{\"ports\": 8500}", "key \"ports\" must be an object, got integer"},
	        {"{\"start_join\": \"a\"}",
	         "key \"start_join\" must be an array of strings, got string"},
	        {"{\"start_join\": [\"a\", 1]}",
	         "key \"start_join\" must be an array of strings, got integer at "
	         "index 1"},
	        {"{\"leave_on_terminate\": \"yes\"}",
	         "key \"leave_on_terminate\" must be a boolean, got string"},
	        {"{\"node_name\": 5}", "key \"node_name\" must be a string, got integer"},
	        {"{\"node_meta\": {\"a\": 1}}",
	         "key \"node_meta.a\" must be a string, got integer"},
	        {"{\"node_meta\": [\"a\"]}",
	         "key \"node_meta\" must be an object of strings, got array"},
	        {"{\"retry_interval\": true}", "key \"retry_interval\" must be a duration string"},
	        {"[1]", "top level must be an object, got array"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rumor_config c;
		char err[512], path[512];
		temp_json(path, sizeof(path), cases[i].json);
		int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path,
		               NULL);
		CHECK_INT(-1, rc);
		CHECK_HAS(err, path);
		CHECK_HAS(err, cases[i].want);
		rumor_config_free(&c);
		unlink(path);
	}
}

static void invalid_file_values_name_key_and_file(void)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	        {"{\"ports\": {\"http\": 70000}}",
	         "invalid value for ports.http: 70000 (want a port 1-65535"},
	        {"{\"bind_addr\": \"nope\"}",
	         "invalid value for bind_addr: \"nope\" (want an IPv4"},
	        {"{\"retry_interval\": \"10parsecs\"}",
	         "invalid value for retry_interval: \"10parsecs\""},
	        {"{\"reconnect_timeout\": 0}",
	         "invalid value for reconnect_timeout: 0 (want a duration of at "
	         "least 1s)"},
	        {"{\"node_meta\": {\"bad key\": \"v\"}}", "invalid value for node_meta.bad key"},
	        {"{\"datacenter\": \"DC\"}", "invalid value for datacenter: \"DC\""},
	        {"{\"start_join\": [\"\"]}", "invalid value for start_join: \"\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rumor_config c;
		char err[512], path[512];
		temp_json(path, sizeof(path), cases[i].json);
		int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path,
		               NULL);
		CHECK_INT(-1, rc);
		CHECK_HAS(err, path);
		CHECK_HAS(err, cases[i].want);
		rumor_config_free(&c);
		unlink(path);
	}
}

static void syntax_error_reports_line(void)
{
	struct rumor_config c;
	char err[512], path[512], want[600];
	temp_json(path, sizeof(path), "{\n  \"node_name\": \"a\",\n  oops\n}\n");
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	snprintf(want, sizeof(want), "config file %s: line 3: ", path);
	CHECK_HAS(err, want);
	rumor_config_free(&c);
	unlink(path);

	temp_json(path, sizeof(path), "{\"node_name\": \"a\", \"node_name\": \"b\"}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "duplicate");
	rumor_config_free(&c);
	unlink(path);
}

/* ---- data dir and -dev -------------------------------------------------- */

static void data_dir_is_required_created_and_checked(void)
{
	struct rumor_config c;
	char err[512], p[512];

	int rc = parse(&c, err, sizeof(err), NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "-data-dir is required");
	rumor_config_free(&c);

	snprintf(p, sizeof(p), "%s/new/nested/data", g_base);
	rc = parse(&c, err, sizeof(err), "-data-dir", p, NULL);
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	struct stat st;
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode), "%s not created", p);
	CHECK((st.st_mode & 0777) == 0700, "expected mode 0700, got %o", st.st_mode & 0777);
	rumor_config_free(&c);

	snprintf(p, sizeof(p), "%s/a-file", g_base);
	write_file(p, "x");
	rc = parse(&c, err, sizeof(err), "-data-dir", p, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "invalid value for -data-dir: ");
	CHECK_HAS(err, "not a directory");
	rumor_config_free(&c);

	snprintf(p, sizeof(p), "%s/a-file/below", g_base);
	rc = parse(&c, err, sizeof(err), "-data-dir", p, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "invalid value for -data-dir: ");
	rumor_config_free(&c);

	if (geteuid() != 0) { /* root may write anywhere */
		snprintf(p, sizeof(p), "%s/readonly", g_base);
		mkdir(p, 0500);
		rc = parse(&c, err, sizeof(err), "-data-dir", p, NULL);
		CHECK_INT(-1, rc);
		CHECK_HAS(err, "not writable");
		rumor_config_free(&c);
		chmod(p, 0700);
	}
}

static void dev_mode_uses_loopback_and_a_temp_dir(void)
{
	struct rumor_config c;
	char err[512], prefix[400], host[256] = "";
	const char *old = getenv("TMPDIR");
	char *saved = old ? strdup(old) : NULL;

	setenv("TMPDIR", g_base, 1);
	int rc = parse(&c, err, sizeof(err), "-dev", NULL);
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	gethostname(host, sizeof(host));
	CHECK_STR(host, c.node_name);
	CHECK_INT(1, c.dev);
	CHECK_STR("127.0.0.1", c.bind_addr);
	CHECK_STR("127.0.0.1", c.advertise_addr);
	CHECK_STR("127.0.0.1", c.client_addr);
	CHECK_INT(1, c.data_dir_is_temp);
	snprintf(prefix, sizeof(prefix), "%s/rumor-dev-", g_base);
	CHECK(c.data_dir && strncmp(c.data_dir, prefix, strlen(prefix)) == 0 &&
	              strlen(c.data_dir) == strlen(prefix) + 6,
	      "expected %sXXXXXX, got %s", prefix, c.data_dir ? c.data_dir : "(null)");
	struct stat st;
	CHECK(c.data_dir && stat(c.data_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	              (st.st_mode & 0777) == 0700,
	      "temp dir missing or not 0700");

	/* A second -dev run gets a different directory. */
	struct rumor_config c2;
	rc = parse(&c2, err, sizeof(err), "-dev=true", NULL);
	CHECK_INT(0, rc);
	CHECK(c.data_dir && c2.data_dir && strcmp(c.data_dir, c2.data_dir),
	      "two -dev runs share %s", c.data_dir ? c.data_dir : "(null)");
	if (c.data_dir)
		rmdir(c.data_dir);
	if (c2.data_dir)
		rmdir(c2.data_dir);
	rumor_config_free(&c);
	rumor_config_free(&c2);

	/* Explicit settings beat -dev's defaults; an explicit dir is kept. */
	rc = parse(&c, err, sizeof(err), "-dev", "-bind", "127.0.0.5", "-client=0.0.0.0",
	           "-data-dir", g_data, NULL);
	CHECK_INT(0, rc);
	CHECK_STR("127.0.0.5", c.bind_addr);
	CHECK_STR("127.0.0.5", c.advertise_addr);
	CHECK_STR("0.0.0.0", c.client_addr);
	CHECK_STR(g_data, c.data_dir);
	CHECK_INT(0, c.data_dir_is_temp);
	rumor_config_free(&c);

	/* -dev=false is not dev mode */
	rc = parse(&c, err, sizeof(err), "-dev=false", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "-data-dir is required");
	rumor_config_free(&c);

	if (saved) {
		setenv("TMPDIR", saved, 1);
		free(saved);
	} else {
		unsetenv("TMPDIR");
	}
}

/* ---- reload ------------------------------------------------------------- */

static void reload_rereads_files_and_keeps_flags(void)
{
	struct rumor_config c, r;
	char err[512], path[512];
	temp_json(path, sizeof(path), "{\"log_level\": \"debug\", \"node_meta\": {\"a\": \"1\"}}");
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path,
	               "-node-meta", "f:flag", NULL);
	CHECK_INT(0, rc);
	CHECK_INT(RUMOR_CONFIG_LOG_DEBUG, c.log_level);

	write_file(path, "{\"log_level\": \"err\", \"node_meta\": {\"b\": \"2\"}}");
	rc = rumor_config_reload(&c, &r, err, sizeof(err));
	CHECK(rc == 0, "expected 0, got %d (%s)", rc, err);
	CHECK_INT(RUMOR_CONFIG_LOG_ERR, r.log_level);
	CHECK(rumor_config_meta_get(&r, "a") == NULL, "stale key a");
	CHECK_STR("2", rumor_config_meta_get(&r, "b"));
	CHECK_STR("flag", rumor_config_meta_get(&r, "f"));
	CHECK_STR(g_data, r.data_dir);
	CHECK_INT(0, r.data_dir_is_temp);

	/* reloading the reloaded config works too */
	struct rumor_config r2;
	rc = rumor_config_reload(&r, &r2, err, sizeof(err));
	CHECK_INT(0, rc);
	CHECK_INT(RUMOR_CONFIG_LOG_ERR, r2.log_level);
	rumor_config_free(&r2);
	rumor_config_free(&r);

	write_file(path, "{\"log_level\": \"loud\"}");
	rc = rumor_config_reload(&c, &r, err, sizeof(err));
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "invalid value for log_level");
	rumor_config_free(&r);
	rumor_config_free(&c);

	/* a flag still overrides the file after reload */
	write_file(path, "{\"log_level\": \"err\"}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, "-log-level",
	           "trace", NULL);
	CHECK_INT(0, rc);
	write_file(path, "{\"log_level\": \"warn\"}");
	rc = rumor_config_reload(&c, &r, err, sizeof(err));
	CHECK_INT(0, rc);
	CHECK_INT(RUMOR_CONFIG_LOG_TRACE, r.log_level);
	rumor_config_free(&r);
	rumor_config_free(&c);
	unlink(path);
}

/* ---- Consul's settings -------------------------------------------------- */

/* Log lines seen by the capture sink while a test runs. */
static struct {
	int n, info, warn;
	char text[4096];
} g_log;

static void capture(void *ud, const struct log_record *r)
{
	(void)ud;
	g_log.n++;
	g_log.info += r->level == LOG_INFO;
	g_log.warn += r->level == LOG_WARN;
	size_t used = strlen(g_log.text);
	snprintf(g_log.text + used, sizeof(g_log.text) - used, "%s\n", r->msg);
}

static void capture_start(void)
{
	memset(&g_log, 0, sizeof(g_log));
	log_subscribe(capture, NULL, LOG_TRACE);
}

/* How many times needle occurs in hay. */
static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void consul_keys_are_accepted_and_logged_once(void)
{
	struct rumor_config c;
	char err[512], a[512], b[512];
	temp_json(a, sizeof(a),
	          "{\"primary_datacenter\": \"dc1\", \"ui_config\": {\"enabled\": true},"
	          " \"ui\": true, \"telemetry\": {\"prometheus_retention_time\": \"24h\","
	          " \"disable_hostname\": true}, \"performance\": {\"raft_multiplier\": 1},"
	          " \"ports\": {\"http\": 8501, \"grpc\": 8502, \"https\": -1, \"serf_wan\": 8302},"
	          " \"addresses\": {\"https\": \"0.0.0.0\"},"
	          " \"limits\": {\"rpc_rate\": 100, \"http_max_conns_per_client\": 7},"
	          " \"dns_config\": {\"soa\": {\"min_ttl\": 5}, \"only_passing\": true},"
	          " \"disable_update_check\": true, \"node_id\": \"x\"}");
	temp_json(b, sizeof(b), "{\"primary_datacenter\": \"dc2\"}");
	capture_start();
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", a, "-config-file",
	               b, "-ui", "-grpc-port", "8502", "-ui=true", "-serf-wan-port=8302", NULL);
	log_unsubscribe(capture, NULL);
	CHECK_INT(0, rc, "%s", err);
	/* rumor's own keys in the same blocks still apply */
	CHECK_INT(8501, c.http_port);
	CHECK_INT(7, c.http_max_conns_per_client);
	CHECK_BOOL(true, c.dns_only_passing);
	static const char *const want[] = {
	        "primary_datacenter: accepted",
	        "telemetry:",
	        "performance:",
	        "ports.grpc:",
	        "ports.https:",
	        "ports.serf_wan:",
	        "addresses.https:",
	        "limits.rpc_rate:",
	        "dns_config.soa:",
	        "disable_update_check:",
	        "node_id:",
	        "-grpc-port:",
	        "-serf-wan-port:",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "config: %s", want[i]);
		CHECK_INT(1, count_of(g_log.text, needle), "%s in:\n%s", want[i], g_log.text);
	}
	CHECK_INT(13, (int)c.notices.n);
	CHECK_INT(13, g_log.info);
	CHECK_BOOL(true, c.ui); /* ui, ui_config.enabled and -ui are settings, not notices */
	CHECK_INT(0, g_log.warn);
	rumor_config_free(&c);
	unlink(a);
	unlink(b);
}

static void consul_notices_follow_log_level(void)
{
	struct rumor_config c;
	char err[512];
	capture_start();
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-ui", "-server",
	               "-bootstrap-expect=2", "-log-level", "warn", NULL);
	log_unsubscribe(capture, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_INT(0, g_log.info);
	CHECK_INT(1, g_log.warn);
	rumor_config_free(&c);
}

/* Parsing logs nothing: the notices wait until the agent's log sinks exist
 * (agent.c calls rumor_config_log_notices after start_logging). */
static void consul_notices_not_logged_by_parse(void)
{
	struct rumor_config c;
	char err[512];
	char *argv[] = {"agent",   "-data-dir",           g_data, "-disable-keyring-file",
	                "-server", "-bootstrap-expect=2", NULL};
	rumor_config_init(&c);
	capture_start();
	int rc = rumor_config_parse(&c, 6, argv, err, sizeof(err));
	CHECK_INT(0, rc, "%s", err);
	CHECK_INT(0, g_log.info);
	CHECK_INT(0, g_log.warn);
	CHECK_INT(1, (int)c.notices.n);
	CHECK_INT(1, (int)c.warnings.n);
	rumor_config_log_notices(&c);
	log_unsubscribe(capture, NULL);
	CHECK_INT(1, g_log.info);
	CHECK_INT(1, g_log.warn);
	rumor_config_free(&c);
}

/* The web UI: off by default, on with -dev, and -ui, "ui" and Consul's
 * ui_config.enabled all set it; ui_config's other keys are accepted and
 * logged, a typo under ui_config is refused. */
static void ui_is_off_by_default_and_on_in_dev(void)
{
	struct rumor_config c;
	char err[512], path[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_BOOL(false, c.ui);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-dev", NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_BOOL(true, c.ui);
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-dev", "-ui=false", NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_BOOL(false, c.ui);
	rumor_config_free(&c);
	temp_json(path, sizeof(path),
	          "{\"ui_config\": {\"enabled\": true, \"content_path\": \"/ui/\"}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_BOOL(true, c.ui);
	CHECK_INT(1, (int)c.notices.n);
	rumor_config_free(&c);
	unlink(path);
	temp_json(path, sizeof(path), "{\"ui_config\": {\"enable\": true}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "ui_config.enable");
	rumor_config_free(&c);
	unlink(path);
}

static void server_flags_are_checked(void)
{
	struct rumor_config c;
	char err[512], path[512];
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-server", "-bootstrap-expect=3",
	               NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_BOOL(true, c.server);
	CHECK_INT(3, c.bootstrap_expect);
	CHECK_INT(0, (int)c.warnings.n);
	rumor_config_free(&c);

	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-server", "-bootstrap-expect=3",
	           "-bootstrap", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "cannot be given together");
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-bootstrap-expect=3", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "need -server");
	rumor_config_free(&c);

	temp_json(path, sizeof(path),
	          "{\"server\": true, \"bootstrap\": false, \"bootstrap_expect\": 4}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_INT(1, (int)c.warnings.n);
	CHECK_HAS(c.warnings.items[0], "even");
	CHECK_INT(4, c.bootstrap_expect);
	rumor_config_free(&c);

	/* -server=false is a client: nothing to warn about */
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-server=false", NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_INT(0, (int)c.warnings.n);
	rumor_config_free(&c);
	unlink(path);
}

static void consul_acl_maps_the_management_token(void)
{
	struct rumor_config c;
	char err[512], path[512];
	temp_json(path, sizeof(path),
	          "{\"acl\": {\"enabled\": true, \"default_policy\": \"deny\","
	          " \"down_policy\": \"extend-cache\", \"enable_token_persistence\": true,"
	          " \"tokens\": {\"initial_management\": \"mgmt-1\", \"agent\": \"ag\","
	          " \"default\": \"def\"}}}");
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_STR("mgmt-1", c.acl_token);
	CHECK_STR("mgmt-1", c.acl_read_token);
	rumor_config_free(&c);
	unlink(path);

	/* rumor's own acl_token wins; legacy master spelling */
	temp_json(
	        path, sizeof(path),
	        "{\"acl_token\": \"mine\", \"acl_read_token\": \"r\", \"acl\": {\"enabled\": true,"
	        " \"default_policy\": \"deny\", \"tokens\": {\"master\": \"other\"}}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_STR("mine", c.acl_token);
	CHECK_STR("r", c.acl_read_token);
	rumor_config_free(&c);
	unlink(path);

	/* allow: Consul's tokens grant nothing more, rumor stays as configured */
	temp_json(path, sizeof(path),
	          "{\"acl\": {\"enabled\": true, \"default_policy\": \"allow\","
	          " \"tokens\": {\"initial_management\": \"m\"}}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK(c.acl_token == NULL, "acl_token set");
	CHECK(c.acl_read_token == NULL, "acl_read_token set");
	rumor_config_free(&c);
	unlink(path);

	/* deny with no token rumor can enforce would open what Consul closes */
	temp_json(path, sizeof(path),
	          "{\"acl\": {\"enabled\": true, \"default_policy\": \"deny\","
	          " \"tokens\": {\"agent\": \"a\"}}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "default_policy is deny");
	rumor_config_free(&c);
	unlink(path);

	/* a bad policy and a bad token are errors; the token is not echoed */
	temp_json(path, sizeof(path), "{\"acl\": {\"default_policy\": \"maybe\"}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "want allow or deny");
	rumor_config_free(&c);
	unlink(path);
	temp_json(path, sizeof(path),
	          "{\"acl\": {\"tokens\": {\"initial_management\": \"has space\"}}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "(hidden)");
	CHECK(strstr(err, "has space") == NULL, "%s", err);
	rumor_config_free(&c);
	unlink(path);
}

static void consul_addresses_set_client_addr(void)
{
	struct rumor_config c;
	char err[512], path[512];
	temp_json(path, sizeof(path),
	          "{\"addresses\": {\"http\": \"10.1.2.3\", \"dns\": \"10.1.2.3\"}}");
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(0, rc, "%s", err);
	CHECK_STR("10.1.2.3", c.client_addr);
	rumor_config_free(&c);
	unlink(path);

	temp_json(path, sizeof(path),
	          "{\"addresses\": {\"http\": \"10.1.2.3\", \"dns\": \"10.1.2.4\"}}");
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path, NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "differ");
	rumor_config_free(&c);
	unlink(path);
}

static void keys_in_neither_consul_nor_rumor_are_refused(void)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	        {"{\"primary_datacentre\": \"dc1\"}", "unknown key \"primary_datacentre\""},
	        {"{\"ports\": {\"grpcc\": 8502}}", "unknown key \"ports.grpcc\""},
	        {"{\"acl\": {\"tokens\": {\"bogus\": \"x\"}}}", "unknown key \"acl.tokens.bogus\""},
	        {"{\"limits\": {\"rpc_rat\": 1}}", "unknown key \"limits.rpc_rat\""},
	        {"{\"addresses\": {\"htp\": \"1.2.3.4\"}}", "unknown key \"addresses.htp\""},
	};
	struct rumor_config c;
	char err[512], path[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		temp_json(path, sizeof(path), cases[i].json);
		int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", path,
		               NULL);
		CHECK_INT(-1, rc, "%s", cases[i].json);
		CHECK_HAS(err, cases[i].want);
		rumor_config_free(&c);
		unlink(path);
	}
	int rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-uii", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "unknown flag -uii");
	rumor_config_free(&c);
	rc = parse(&c, err, sizeof(err), "-data-dir", g_data, "-ui=maybe", NULL);
	CHECK_INT(-1, rc);
	CHECK_HAS(err, "want true or false");
	rumor_config_free(&c);
}

/* ---- driver ------------------------------------------------------------- */

/* Coordinates: nearest-first DNS on and coordinates on by default; both
 * from a file (Consul's disable_coordinates, dns_config.nearest_first) and
 * from flags. */
static void coordinate_options(void)
{
	struct rumor_config c;
	char err[512], a[512];
	CHECK_INT(0, parse(&c, err, sizeof(err), "-data-dir", g_data, NULL), "%s", err);
	CHECK_BOOL(true, c.dns_nearest_first);
	CHECK_BOOL(false, c.disable_coordinates);
	rumor_config_free(&c);
	temp_json(a, sizeof(a),
	          "{\"dns_config\": {\"nearest_first\": false}, \"disable_coordinates\": true}");
	CHECK_INT(0, parse(&c, err, sizeof(err), "-data-dir", g_data, "-config-file", a, NULL),
	          "%s", err);
	CHECK_BOOL(false, c.dns_nearest_first);
	CHECK_BOOL(true, c.disable_coordinates);
	rumor_config_free(&c);
	CHECK_INT(0,
	          parse(&c, err, sizeof(err), "-data-dir", g_data, "-dns-nearest-first=false",
	                "-disable-coordinates", NULL),
	          "%s", err);
	CHECK_BOOL(false, c.dns_nearest_first);
	CHECK_BOOL(true, c.disable_coordinates);
	rumor_config_free(&c);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(g_base, sizeof(g_base), "%s/test_config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(g_base) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(g_data, sizeof(g_data), "%s/data", g_base);

	RUN(defaults_are_consuls);
	RUN(ui_is_off_by_default_and_on_in_dev);
	RUN(flag_accepts_all_four_forms);
	RUN(value_may_contain_equals_and_dashes);
	RUN(repeatable_flags_accumulate_in_order);
	RUN(scalar_flags_last_one_wins);
	RUN(bool_flags_take_bare_and_explicit_forms);
	RUN(unknown_flag_is_named);
	RUN(missing_value_and_stray_argument_are_errors);
	RUN(help_flag_returns_one);
	RUN(usage_lists_every_flag);
	RUN(durations_parse_go_syntax);
	RUN(durations_reject_garbage_negative_and_overflow);
	RUN(duration_flags_fill_milliseconds);
	RUN(invalid_values_name_the_flag);
	RUN(http_port_error_message_is_exact);
	RUN(error_message_escapes_control_characters);
	RUN(disabled_ports_and_values_within_limits_pass);
	RUN(advertise_follows_bind_unless_set);
	RUN(encrypt_key_is_decoded);
	RUN(node_meta_enforces_consuls_limits);
	RUN(file_values_apply_and_flags_override);
	RUN(data_dir_from_file_is_used);
	RUN(config_dir_loads_json_in_name_order);
	RUN(missing_config_sources_are_errors);
	RUN(unknown_key_names_key_and_file);
	RUN(wrong_type_names_key_file_and_type);
	RUN(invalid_file_values_name_key_and_file);
	RUN(syntax_error_reports_line);
	RUN(data_dir_is_required_created_and_checked);
	RUN(dev_mode_uses_loopback_and_a_temp_dir);
	RUN(reload_rereads_files_and_keeps_flags);
	RUN(consul_keys_are_accepted_and_logged_once);
	RUN(consul_notices_follow_log_level);
	RUN(consul_notices_not_logged_by_parse);
	RUN(server_flags_are_checked);
	RUN(consul_acl_maps_the_management_token);
	RUN(consul_addresses_set_client_addr);
	RUN(keys_in_neither_consul_nor_rumor_are_refused);
	RUN(coordinate_options);

	rm_rf(g_base);
	return check_exit_code();
}
