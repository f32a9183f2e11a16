/*
 * config — flags and JSON config files for `rumor agent`.
 *
 * One table (`opts` below) describes every setting: its flag name, its JSON
 * key (Consul's; nested keys such as "ports.http" are written with a dot),
 * its kind and the field it fills.  Flag values and JSON values go through
 * the same setter, `opt_set()`, which takes the value as a string: JSON
 * scalars are type-checked first (so a file gets "must be an integer, got
 * string") and then turned into their text form.  That keeps validation in
 * one place and makes a new setting one row plus one struct field.
 *
 * Order of application: defaults, -dev defaults, files in command-line order
 * (a directory's *.json sorted by name), then flags in command-line order.
 * Lists and node_meta accumulate; scalars are overwritten.
 *
 * Departures from Consul: no HCL, no go-sockaddr templates in addresses; a
 * bare integer is accepted as a duration in seconds; a boolean flag also
 * accepts the next argument when it is a boolean word ("-dev true").
 */
#include "agent/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "lib/err.h"
#include "lib/log.h"
#include "lib/xalloc.h"

/* ---- small helpers ------------------------------------------------------ */

static void set_str(char **field, const char *s)
{
	char *n = s ? xstrdup(s) : NULL;
	free(*field);
	*field = n;
}

/* Writes s into out as a double-quoted string with control bytes escaped,
 * cut at about 80 bytes of input.  Returns out. */
static const char *quote(const char *s, char *out, size_t outlen)
{
	size_t o = 0, i;
	if (outlen < 16) {
		if (outlen)
			out[0] = '\0';
		return out;
	}
	out[o++] = '"';
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (o + 8 >= outlen || i >= 80) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static void list_push(struct rumor_config_list *l, const char *s)
{
	l->items = xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
	l->items[l->n++] = xstrdup(s);
}

static void list_free(struct rumor_config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

/* Strict integer: optional '-', digits, nothing else. */
static int parse_ll(const char *s, long long *out)
{
	char *end;
	const char *p = s;
	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/*
 * The spellings Go's strconv.ParseBool accepts, and no others ("yes" and "on" are
 * refused), so a value valid for Consul means the same here.
 */
static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool is_any_addr(const char *s)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, s, &a4) == 1)
		return a4.s_addr == htonl(INADDR_ANY);
	if (inet_pton(AF_INET6, s, &a6) == 1)
		return memcmp(&a6, &in6addr_any, sizeof(a6)) == 0;
	return false;
}

/* ---- durations ---------------------------------------------------------- */

/*
 * Go's time.ParseDuration units, both micro signs included: durations are written
 * for Consul and must parse the same way here.
 */
static int64_t unit_ns(const char *u, size_t n)
{
	static const struct {
		const char *name;
		int64_t ns;
	} units[] = {
	        {"ns", 1},
	        {"us", 1000},
	        {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
	        {"\xce\xbcs", 1000}, /* U+03BC Greek mu */
	        {"ms", 1000000},
	        {"s", 1000000000LL},
	        {"m", 60LL * 1000000000LL},
	        {"h", 3600LL * 1000000000LL},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
			return units[i].ns;
	return 0;
}

/*
 * Go's duration grammar ("1h30m", "1.5s", "+10s") plus one departure: a bare
 * integer means seconds. Every step checks for overflow, so a huge value is an
 * error rather than a wrapped negative; the result is truncated to milliseconds.
 */
int rumor_parse_duration(const char *s, int64_t *ms)
{
	const char *p = s;
	int64_t total = 0;

	if (s == NULL || *s == '\0')
		return -1;
	if (*p == '+')
		p++;
	if (*p == '\0')
		return -1;

	/* A bare integer means seconds; "0" is zero either way. */
	bool all_digits = true;
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			all_digits = false;
	if (all_digits) {
		uint64_t v = 0;
		for (; *p; p++) {
			if (v > (uint64_t)INT64_MAX / 10)
				return -1;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (v > (uint64_t)(INT64_MAX / 1000000000LL))
			return -1;
		*ms = (int64_t)v * 1000;
		return 0;
	}

	while (*p) {
		uint64_t whole = 0, frac = 0, scale = 1;
		bool digits = false;
		while (isdigit((unsigned char)*p)) {
			if (whole > (uint64_t)INT64_MAX / 10)
				return -1;
			whole = whole * 10 + (uint64_t)(*p - '0');
			if (whole > (uint64_t)INT64_MAX)
				return -1;
			digits = true;
			p++;
		}
		if (*p == '.') {
			p++;
			while (isdigit((unsigned char)*p)) {
				if (scale < 1000000000000000000ULL) {
					frac = frac * 10 + (uint64_t)(*p - '0');
					scale *= 10;
				}
				digits = true;
				p++;
			}
		}
		if (!digits)
			return -1;
		const char *u = p;
		while (*p && *p != '.' && !isdigit((unsigned char)*p))
			p++;
		int64_t unit = unit_ns(u, (size_t)(p - u));
		if (unit == 0)
			return -1;
		if (whole > (uint64_t)(INT64_MAX / unit))
			return -1;
		int64_t part = (int64_t)whole * unit;
		int64_t fp = 0;
		if (frac > 0)
			fp = (int64_t)((long double)frac / (long double)scale * (long double)unit);
		if (part > INT64_MAX - fp)
			return -1;
		part += fp;
		if (total > INT64_MAX - part)
			return -1;
		total += part;
	}
	*ms = total / 1000000;
	return 0;
}

/* ---- the option table --------------------------------------------------- */

enum opt_kind {
	K_STR,      /* non-empty string (paths) */
	K_NODE,     /* node name */
	K_ADDR,     /* IPv4 or IPv6 literal */
	K_PORT,     /* 1-65535 */
	K_PORT_OFF, /* 1-65535 or -1 */
	K_COUNT,    /* integer >= 0 */
	K_DUR,      /* duration, stored in ms, >= min_ms */
	K_BOOL,
	K_LOGLEVEL,
	K_PROFILE,
	K_DC,
	K_DOMAIN,
	K_ENCRYPT,
	K_TOKEN,   /* ACL token: 1-256 printable ASCII bytes, secret */
	K_LIST,    /* join addresses, appended */
	K_STRLIST, /* any strings, appended (event handlers) */
	K_META,    /* key:value, merged */
	K_SVCDEF,  /* JSON only: service definition(s), kept as JSON text */
	K_CFGFILE, /* flag only: a config source */
	K_CFGDIR,
	K_HELP,
	K_IGNORE,      /* Consul's, no effect here: any JSON value; flag takes a value */
	K_IGNORE_BOOL, /* the same for a boolean flag (-ui) */
	K_ACLPOLICY,   /* "allow" or "deny", into a bool (true = deny) */
};

struct opt {
	const char *flag; /* without dashes; NULL if only a JSON key */
	const char *key;  /* JSON key, "a.b" for nested; NULL if flag only */
	enum opt_kind kind;
	size_t off;      /* field in struct rumor_config */
	int64_t min_ms;  /* K_DUR only */
	const char *arg; /* argument name in usage */
	const char *help;
};

#define OFF(f) offsetof(struct rumor_config, f)

static const struct opt opts[] = {
        {"node", "node_name", K_NODE, OFF(node_name), 0, "NAME",
         "Name of this node, unique in the cluster. Default: the hostname."},
        {"datacenter", "datacenter", K_DC, OFF(datacenter), 0, "NAME",
         "Datacenter (lowercase letters, digits, - and _). Default: dc1."},
        {"domain", "domain", K_DOMAIN, OFF(domain), 0, "DOMAIN",
         "DNS domain the DNS interface answers for. Default: consul."},
        {"bind", "bind_addr", K_ADDR, OFF(bind_addr), 0, "ADDR",
         "Address gossip binds to (UDP and TCP). Default: 0.0.0.0."},
        {"serf-lan-bind", NULL, K_ADDR, OFF(bind_addr), 0, "ADDR", "Alias of -bind."},
        {"advertise", "advertise_addr", K_ADDR, OFF(advertise_addr), 0, "ADDR",
         "Address advertised to other members. Default: the bind address, or\n"
         "the first non-loopback IPv4 address if binding to 0.0.0.0/::."},
        {"serf-lan-port", "ports.serf_lan", K_PORT, OFF(serf_lan_port), 0, "PORT",
         "Gossip port (UDP and TCP). Default: 8301."},
        {"client", "client_addr", K_ADDR, OFF(client_addr), 0, "ADDR",
         "Address the HTTP and DNS interfaces bind to. Default: 127.0.0.1."},
        {"http-port", "ports.http", K_PORT_OFF, OFF(http_port), 0, "PORT",
         "HTTP API port, -1 to disable. Default: 8500."},
        {"dns-port", "ports.dns", K_PORT_OFF, OFF(dns_port), 0, "PORT",
         "DNS port (UDP and TCP), -1 to disable. Default: 8600."},
        {"data-dir", "data_dir", K_STR, OFF(data_dir), 0, "PATH",
         "Directory for agent state; created (mode 0700) if missing.\n"
         "Required unless -dev."},
        {"join", "start_join", K_LIST, OFF(start_join), 0, "ADDR",
         "Address of an agent to join at start. Repeatable."},
        {"retry-join", "retry_join", K_LIST, OFF(retry_join), 0, "ADDR",
         "Like -join, but retried until it succeeds. Repeatable."},
        {"retry-interval", "retry_interval", K_DUR, OFF(retry_interval_ms), 1, "DURATION",
         "Time between -retry-join attempts. Default: 30s."},
        {"retry-max", "retry_max", K_COUNT, OFF(retry_max), 0, "N",
         "Number of -retry-join attempts, 0 for no limit. Default: 0."},
        {"rejoin-after-leave", "rejoin_after_leave", K_BOOL, OFF(rejoin_after_leave), 0, "",
         "Rejoin the cluster after a previous leave. Default: false."},
        {"reconnect-timeout", "reconnect_timeout", K_DUR, OFF(reconnect_timeout_ms), 1000,
         "DURATION",
         "How long a failed node is kept before it is reaped (>= 1s).\n"
         "Default: 72h."},
        {"server-port", "ports.server", K_PORT_OFF, OFF(server_port), 0, "PORT",
         "TCP port of the KV anti-entropy listener (advertised in the\n"
         "rpc_port tag), -1 to disable. Default: 8300."},
        {"kv-tombstone-ttl", "kv_tombstone_ttl", K_DUR, OFF(kv_tombstone_ttl_ms), 1000, "DURATION",
         "How long KV deletes are remembered; a replica away longer is\n"
         "rebuilt from peers. Default: 72h."},
        {"kv-sync-interval", "kv_sync_interval", K_DUR, OFF(kv_sync_interval_ms), 100, "DURATION",
         "Period of KV anti-entropy with a random peer. Default: 10s."},
        {"kv-max-clock-offset", "kv_max_clock_offset", K_DUR, OFF(kv_max_clock_offset_ms), 1000,
         "DURATION",
         "Refuse replicated versions further ahead of this agent's clock\n"
         "(a far-off clock or a forged record). At least 1s. Default: 30s."},
        {"config-file", NULL, K_CFGFILE, 0, 0, "PATH", "JSON config file to load. Repeatable."},
        {"config-dir", NULL, K_CFGDIR, 0, 0, "PATH",
         "Directory whose *.json files are loaded in name order. Repeatable."},
        {"log-level", "log_level", K_LOGLEVEL, OFF(log_level), 0, "LEVEL",
         "trace, debug, info, warn or err. Default: info."},
        {"node-meta", "node_meta", K_META, 0, 0, "KEY:VALUE",
         "Metadata for this node. Repeatable; at most 64 pairs."},
        {"tag", NULL, K_META, 0, 0, "KEY=VALUE",
         "Serf's spelling of -node-meta: a tag KEY=VALUE. Repeatable."},
        {"dev", NULL, K_BOOL, OFF(dev), 0, "",
         "Development mode: everything on 127.0.0.1, temporary data dir."},
        {"ui", "ui", K_BOOL, OFF(ui), 0, "",
         "Serve the web UI at /ui/ on the HTTP port (docs/UI.md).\n"
         "Default: false, true with -dev."},
        {NULL, "ui_config.enabled", K_BOOL, OFF(ui), 0, "", NULL},
        {"profile", "profile", K_PROFILE, OFF(profile), 0, "PROFILE",
         "Gossip timing profile: lan, wan or local. Default: lan."},
        {"encrypt", "encrypt", K_ENCRYPT, 0, 0, "KEY",
         "Base64 gossip encryption key (32 bytes, as `rumor keygen` or\n"
         "`serf keygen` make; 16/24-byte keys are refused at start)."},
        {"event-handler", "event_handlers", K_STRLIST, OFF(event_handlers), 0, "[TYPE=]SCRIPT",
         "Run SCRIPT for serf events (member-join, member-leave,\n"
         "member-failed, member-update, member-reap, user[:NAME],\n"
         "query[:NAME]; comma-separated TYPEs). Repeatable."},
        {"leave-on-terminate", "leave_on_terminate", K_BOOL, OFF(leave_on_terminate), 0, "",
         "Leave the cluster gracefully on SIGTERM. Default: true."},
        {"skip-leave-on-interrupt", "skip_leave_on_interrupt", K_BOOL, OFF(skip_leave_on_interrupt),
         0, "", "Skip the graceful leave on SIGINT. Default: false."},
        {"pid-file", "pid_file", K_STR, OFF(pid_file), 0, "PATH",
         "Write the agent's PID to this file."},
        {"log-json", "log_json", K_BOOL, OFF(log_json), 0, "",
         "Write log lines as JSON objects ({\"@level\", \"@message\",\n"
         "\"@module\", \"@timestamp\"}). Default: false."},
        {"log-file", "log_file", K_STR, OFF(log_file), 0, "PATH", "Also write logs to this file."},
        {"log-rotate-bytes", "log_rotate_bytes", K_COUNT, OFF(log_rotate_bytes), 0, "N",
         "Rotate -log-file once it holds N bytes; 0 for no size limit.\n"
         "Default: 0."},
        {"log-rotate-duration", "log_rotate_duration", K_DUR, OFF(log_rotate_duration_ms), 0,
         "DURATION", "Rotate -log-file once it is this old; 0 never. Default: 24h."},
        {"log-rotate-max-files", "log_rotate_max_files", K_COUNT, OFF(log_rotate_max_files), 0, "N",
         "Rotated log files to keep (older ones are deleted); 0 keeps\n"
         "all. Default: 0."},
        {"syslog", "enable_syslog", K_BOOL, OFF(syslog), 0, "",
         "Also log to syslog (facility daemon, ident rumor). Default: false."},
        {"enable-script-checks", "enable_script_checks", K_BOOL, OFF(enable_script_checks), 0, "",
         "Allow checks that run programs (Args/ScriptArgs). Default: false."},
        {"recursor", "recursors", K_LIST, OFF(recursors), 0, "ADDR",
         "Upstream DNS server (ip or ip:port) for names outside the domain;\n"
         "UDP queries are forwarded, 2s timeout. Repeatable. Default: none\n"
         "(such names are REFUSED)."},
        {"dns-truncate", "dns_config.enable_truncate", K_BOOL, OFF(dns_truncate), 0, "",
         "Set the TC bit when a UDP answer does not fit. false: drop\n"
         "records silently (at most 3 without EDNS), as Consul. Default: true."},
        {"dns-udp-max-size", "dns_config.udp_max_size", K_COUNT, OFF(dns_udp_max_size), 0, "BYTES",
         "Largest UDP answer, whatever size a client's EDNS0 asks for\n"
         "(bounds reflection through spoofed queries; TCP is not limited).\n"
         "512-65535. Default: 1232 (DNS Flag Day 2020)."},
        {"dns-node-ttl", "dns_config.node_ttl", K_DUR, OFF(dns_node_ttl_ms), 0, "DURATION",
         "TTL of node records (A/AAAA/TXT of <node>.node). Default: 0s."},
        {"dns-service-ttl", "dns_config.service_ttl_default", K_DUR, OFF(dns_service_ttl_ms), 0,
         "DURATION", "TTL of service records (A/AAAA/SRV), every service. Default: 0s."},
        {"dns-only-passing", "dns_config.only_passing", K_BOOL, OFF(dns_only_passing), 0, "",
         "DNS leaves out instances in warning too. Default: false."},
        {"dns-nearest-first", "dns_config.nearest_first", K_BOOL, OFF(dns_nearest_first), 0, "",
         "Service answers (SRV, A, AAAA) nearest first from this agent by\n"
         "network coordinates; false: shuffled, as Consul. Default: true."},
        {"disable-coordinates", "disable_coordinates", K_BOOL, OFF(disable_coordinates), 0, "",
         "No network coordinates: acks carry none, ?near and DNS do not\n"
         "sort, /v1/coordinate answers 401 (Consul's). Default: false."},
        {"alt-domain", "alt_domain", K_DOMAIN, OFF(alt_domain), 0, "DOMAIN",
         "A second DNS domain answered like -domain. Default: none."},
        {NULL, "service", K_SVCDEF, OFF(service_defs), 0, "", NULL},
        {NULL, "services", K_SVCDEF, OFF(service_defs), 0, "", NULL},
        {"acl-token", "acl_token", K_TOKEN, OFF(acl_token), 0, "TOKEN",
         "Token required for writes (PUT/POST/DELETE) and for join, leave,\n"
         "force-leave and keyring; also grants reads. Default: none (open on\n"
         "a loopback HTTP address; remote writes refused otherwise)."},
        {"acl-read-token", "acl_read_token", K_TOKEN, OFF(acl_read_token), 0, "TOKEN",
         "Token required for reads when set. Default: none."},
        {"http-max-conns-per-client", "limits.http_max_conns_per_client", K_COUNT,
         OFF(http_max_conns_per_client), 0, "N",
         "Open HTTP connections one client IP address may hold; more are\n"
         "answered 429 and closed. At most half of the 4096 connections\n"
         "the agent takes in all; 0 for no per-address cap. Default: 200."},
        {"h", NULL, K_HELP, 0, 0, "", NULL},
        /* The server tier (docs/SERVERS.md). */
        {"server", "server", K_BOOL, OFF(server), 0, "",
         "Run as a server: a member of the Raft group that makes the KV\n"
         "store CP (see docs/SERVERS.md). Default: a client."},
        {"bootstrap", "bootstrap", K_BOOL, OFF(bootstrap), 0, "",
         "With -server: bootstrap a group of this one server (dev, tests)."},
        {"bootstrap-expect", "bootstrap_expect", K_COUNT, OFF(bootstrap_expect), 0, "N",
         "With -server: bootstrap once N servers see each other (3 or 5)."},
        /* Consul's Raft log compaction settings (config file only) */
        {NULL, "raft_snapshot_threshold", K_COUNT, OFF(raft_snapshot_threshold), 0, "", NULL},
        {NULL, "raft_trailing_logs", K_COUNT, OFF(raft_trailing_logs), 0, "", NULL},
        /* Consul's ACL settings: the management token maps to acl_token. */
        {NULL, "acl.enabled", K_BOOL, OFF(consul_acl_enabled), 0, "", NULL},
        {NULL, "acl.default_policy", K_ACLPOLICY, OFF(consul_acl_deny), 0, "", NULL},
        {NULL, "acl_default_policy", K_ACLPOLICY, OFF(consul_acl_deny), 0, "", NULL},
        {NULL, "acl.tokens.initial_management", K_TOKEN, OFF(consul_mgmt_token), 0, "", NULL},
        {NULL, "acl.tokens.master", K_TOKEN, OFF(consul_mgmt_token), 0, "", NULL},
        {NULL, "acl_master_token", K_TOKEN, OFF(consul_mgmt_token), 0, "", NULL},
        {NULL, "addresses.http", K_ADDR, OFF(consul_addr_http), 0, "", NULL},
        {NULL, "addresses.dns", K_ADDR, OFF(consul_addr_dns), 0, "", NULL},
/* Consul's settings rumor accepts and ignores (help: the reason). */
#define IGN(flag, key, why)                                                                        \
	{                                                                                          \
		flag, key, K_IGNORE, 0, 0, "", why                                                 \
	}
#define IGNB(flag, key, why)                                                                       \
	{                                                                                          \
		flag, key, K_IGNORE_BOOL, 0, 0, "", why                                            \
	}
#define NO_WAN "rumor has no WAN pool"
#define NO_UI "rumor serves its own UI, built into the binary (-ui)"
#define NO_TLS "rumor serves no TLS; HTTP is plain"
#define NO_SRV "rumor's servers do not take this setting (docs/SERVERS.md)"
#define NO_CONNECT "rumor has no service mesh"
#define NO_TOKEN "no such token in rumor; acl_token and acl_read_token are its only tokens"
        IGN("ui-dir", "ui_dir", NO_UI),
        IGN("ui-content-path", "ui_content_path", NO_UI),
        IGN(NULL, "ui_config.dir", NO_UI),
        IGN(NULL, "ui_config.content_path", NO_UI),
        IGN(NULL, "ui_config.metrics_provider", NO_UI),
        IGN(NULL, "ui_config.metrics_provider_files", NO_UI),
        IGN(NULL, "ui_config.metrics_provider_options_json", NO_UI),
        IGN(NULL, "ui_config.metrics_proxy", NO_UI),
        IGN(NULL, "ui_config.dashboard_url_templates", NO_UI),
        IGN("primary-datacenter", "primary_datacenter", "rumor has one datacenter"),
        IGN(NULL, "acl_datacenter", "rumor has one datacenter"),
        IGN(NULL, "telemetry", "rumor's metrics are at /v1/agent/metrics"),
        IGN(NULL, "performance", "rumor's timing is -profile"),
        IGN(NULL, "autopilot", NO_SRV),
        IGN("raft-protocol", "raft_protocol", NO_SRV),
        IGN(NULL, "raft_snapshot_interval", NO_SRV),
        IGNB("non-voting-server", "non_voting_server", NO_SRV),
        IGNB("read-replica", "read_replica", NO_SRV),
        IGN("segment", "segment", NO_SRV),
        IGN(NULL, "segments", NO_SRV),
        IGN(NULL, "server_name", NO_SRV),
        IGN(NULL, "connect", NO_CONNECT),
        IGN(NULL, "config_entries", NO_CONNECT),
        IGN(NULL, "enable_central_service_config", NO_CONNECT),
        IGN("grpc-port", "ports.grpc", "rumor opens no gRPC port"),
        IGN("grpc-tls-port", "ports.grpc_tls", "rumor opens no gRPC port"),
        IGN("https-port", "ports.https", NO_TLS),
        IGN("serf-wan-port", "ports.serf_wan", NO_WAN),
        IGN(NULL, "ports.sidecar_min_port", NO_CONNECT),
        IGN(NULL, "ports.sidecar_max_port", NO_CONNECT),
        IGN(NULL, "ports.expose_min_port", NO_CONNECT),
        IGN(NULL, "ports.expose_max_port", NO_CONNECT),
        IGN(NULL, "addresses.https", NO_TLS),
        IGN(NULL, "addresses.grpc", "rumor opens no gRPC port"),
        IGN(NULL, "addresses.grpc_tls", "rumor opens no gRPC port"),
        IGN("serf-wan-bind", "serf_wan", NO_WAN),
        IGN("advertise-wan", "advertise_addr_wan", NO_WAN),
        IGN("join-wan", "start_join_wan", NO_WAN),
        IGN("retry-join-wan", "retry_join_wan", NO_WAN),
        IGN("retry-interval-wan", "retry_interval_wan", NO_WAN),
        IGN("retry-max-wan", "retry_max_wan", NO_WAN),
        IGN(NULL, "translate_wan_addrs", NO_WAN),
        IGN("node-id", "node_id", "rumor derives its node ID itself"),
        IGNB("disable-host-node-id", "disable_host_node_id", "rumor derives its node ID itself"),
        IGNB("disable-keyring-file", "disable_keyring_file", "no effect in rumor"),
        IGN(NULL, "disable_update_check", "rumor never checks for updates"),
        IGN(NULL, "disable_remote_exec", "rumor has no remote exec"),
        IGNB("enable-local-script-checks", "enable_local_script_checks",
             "use enable_script_checks"),
        IGN(NULL, "enable_debug", "no effect in rumor"),
        IGN(NULL, "encrypt_verify_incoming", "rumor always verifies gossip when encrypt is set"),
        IGN(NULL, "encrypt_verify_outgoing", "rumor always encrypts gossip when encrypt is set"),
        IGN(NULL, "verify_incoming", NO_TLS),
        IGN(NULL, "verify_outgoing", NO_TLS),
        IGN(NULL, "verify_server_hostname", NO_TLS),
        IGN(NULL, "ca_file", NO_TLS),
        IGN(NULL, "cert_file", NO_TLS),
        IGN(NULL, "key_file", NO_TLS),
        IGN(NULL, "tls", NO_TLS),
        IGN(NULL, "auto_encrypt", NO_TLS),
        IGN(NULL, "auto_config", NO_SRV),
        IGN(NULL, "http_config", "no effect in rumor"),
        IGN(NULL, "syslog_facility", "rumor logs to facility daemon"),
        IGN(NULL, "check_update_interval", "no effect in rumor"),
        IGN(NULL, "discard_check_output", "no effect in rumor"),
        IGN(NULL, "session_ttl_min", "no effect in rumor"),
        IGN(NULL, "default_query_time", "no effect in rumor"),
        IGN(NULL, "max_query_time", "no effect in rumor"),
        IGN(NULL, "acl.down_policy", NO_SRV),
        IGN(NULL, "acl.enable_token_persistence", "rumor's tokens come from its config"),
        IGN(NULL, "acl.enable_token_replication", NO_SRV),
        IGN(NULL, "acl.enable_key_list_policy", "rumor has no ACL policies"),
        IGN(NULL, "acl.token_ttl", NO_SRV),
        IGN(NULL, "acl.policy_ttl", NO_SRV),
        IGN(NULL, "acl.role_ttl", NO_SRV),
        IGN(NULL, "acl.tokens.agent", "rumor's agent needs no token of its own"),
        IGN(NULL, "acl.tokens.agent_recovery", NO_TOKEN),
        IGN(NULL, "acl.tokens.agent_master", NO_TOKEN),
        IGN(NULL, "acl.tokens.default", NO_TOKEN),
        IGN(NULL, "acl.tokens.replication", NO_SRV),
        IGN(NULL, "acl.tokens.config_file_service_registration", NO_TOKEN),
        IGN(NULL, "acl.tokens.dns", NO_TOKEN),
        IGN(NULL, "acl_agent_token", "rumor's agent needs no token of its own"),
        IGN(NULL, "acl_agent_master_token", NO_TOKEN),
        IGN(NULL, "acl_replication_token", NO_SRV),
        IGN(NULL, "acl_down_policy", NO_SRV),
        IGN(NULL, "acl_ttl", NO_SRV),
        IGN(NULL, "dns_config.allow_stale", "rumor answers from its replica"),
        IGN(NULL, "dns_config.max_stale", "rumor answers from its replica"),
        IGN(NULL, "dns_config.service_ttl", "use dns_config.service_ttl_default"),
        IGN(NULL, "dns_config.recursor_timeout", "rumor's recursor timeout is 2s"),
        IGN(NULL, "dns_config.recursor_strategy", "no effect in rumor"),
        IGN(NULL, "dns_config.disable_compression", "no effect in rumor"),
        IGN(NULL, "dns_config.a_record_limit", "no effect in rumor"),
        IGN(NULL, "dns_config.udp_answer_limit", "no effect in rumor"),
        IGN(NULL, "dns_config.enable_additional_node_meta_txt", "no effect in rumor"),
        IGN(NULL, "dns_config.soa", "no effect in rumor"),
        IGN(NULL, "dns_config.use_cache", "no effect in rumor"),
        IGN(NULL, "dns_config.cache_max_age", "no effect in rumor"),
        IGN(NULL, "limits.https_handshake_timeout", NO_TLS),
        IGN(NULL, "limits.rpc_handshake_timeout", NO_SRV),
        IGN(NULL, "limits.rpc_client_timeout", NO_SRV),
        IGN(NULL, "limits.rpc_max_conns_per_client", NO_SRV),
        IGN(NULL, "limits.rpc_rate", NO_SRV),
        IGN(NULL, "limits.rpc_max_burst", NO_SRV),
        IGN(NULL, "limits.kv_max_value_size", "rumor's KV limit is fixed"),
        IGN(NULL, "limits.txn_max_req_len", "rumor's KV limit is fixed"),
        IGN(NULL, "limits.request_limits", NO_SRV),
#undef IGN
#undef IGNB
        {"help", NULL, K_HELP, 0, 0, "", "Show this help."},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

#define FIELD(c, o, type) (*(type *)((char *)(c) + (o)->off))

/*
 * A linear scan: the table has a few dozen rows and is read only at start-up
 * and reload, so there is no index to keep in step with it.
 */
static const struct opt *find_flag(const char *name, size_t n)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].flag && strlen(opts[i].flag) == n && memcmp(opts[i].flag, name, n) == 0)
			return &opts[i];
	return NULL;
}

static const struct opt *find_key(const char *key)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].key && strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

/* True if some key is nested under `prefix` ("ports" -> "ports.http"). */
static bool is_key_prefix(const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].key && strncmp(opts[i].key, prefix, n) == 0 && opts[i].key[n] == '.')
			return true;
	return false;
}

/* ---- validators --------------------------------------------------------- */

/*
 * The name goes into gossip, DNS labels and log lines: whitespace and control
 * bytes would break all three, so they are refused here, once, for every source.
 */
static const char *check_node_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "want a non-empty node name";
	if (n > RUMOR_CONFIG_NODE_NAME_MAX)
		return "want a node name of at most 128 bytes";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f)
			return "want a node name without whitespace or control "
			       "characters";
	}
	return NULL;
}

/*
 * Only a shape check: join addresses may be names, resolved later at join time,
 * so nothing here may block on DNS.
 */
static const char *check_join_addr(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return "want an address of 1-255 bytes";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch == 0x7f)
			return "want an address without whitespace or control "
			       "characters";
	}
	return NULL;
}

/* Validates and normalizes a DNS domain into out (lowercase, trailing dot). */
static const char *norm_domain(const char *s, char *out, size_t outlen)
{
	size_t n = strlen(s), label = 0;
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0)
		return "want a DNS domain such as consul.";
	if (n + 2 > outlen || n > 253)
		return "want a DNS domain of at most 253 bytes";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.') {
			if (label == 0)
				return "want a DNS domain without empty labels";
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			if (++label > 63)
				return "want DNS labels of at most 63 bytes";
		} else {
			return "want a DNS domain of letters, digits, - and _";
		}
		out[i] = (char)tolower(ch);
	}
	if (label == 0)
		return "want a DNS domain without empty labels";
	out[n] = '.';
	out[n + 1] = '\0';
	return NULL;
}

/*
 * Consul's node_meta limits (key alphabet, lengths, 64 pairs, "consul-" reserved)
 * are enforced here, where flags and files both pass, so neither can publish meta
 * a Consul client would refuse. A repeated key replaces its value.
 */
static const char *meta_put(struct rumor_config *c, const char *key, const char *value)
{
	size_t kn = strlen(key);
	if (kn == 0)
		return "node_meta key must not be empty";
	if (kn > RUMOR_CONFIG_META_KEY_MAX)
		return "node_meta key longer than 128 bytes";
	for (size_t i = 0; i < kn; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (!isalnum(ch) && ch != '_' && ch != '-')
			return "node_meta key may only contain letters, digits, "
			       "- and _";
	}
	if (strncmp(key, "consul-", 7) == 0)
		return "node_meta keys starting with \"consul-\" are reserved";
	if (strlen(value) > RUMOR_CONFIG_META_VALUE_MAX)
		return "node_meta value longer than 512 bytes";
	for (size_t i = 0; i < c->node_meta_n; i++) {
		if (strcmp(c->node_meta[i].key, key) == 0) {
			set_str(&c->node_meta[i].value, value);
			return NULL;
		}
	}
	if (c->node_meta_n >= RUMOR_CONFIG_META_MAX_PAIRS)
		return "too many node_meta pairs (at most 64)";
	c->node_meta = xrealloc(c->node_meta, (c->node_meta_n + 1) * sizeof(*c->node_meta));
	c->node_meta[c->node_meta_n].key = xstrdup(key);
	c->node_meta[c->node_meta_n].value = xstrdup(value);
	c->node_meta_n++;
	return NULL;
}

/* -log-level: Consul's names, and "warning"/"error" as Go's hclog takes. */
static const char *set_log_level(struct rumor_config *c, const char *s)
{
	static const struct {
		const char *name;
		enum rumor_config_log_level l;
	} lv[] = {
	        {"trace", RUMOR_CONFIG_LOG_TRACE},  {"debug", RUMOR_CONFIG_LOG_DEBUG},
	        {"info", RUMOR_CONFIG_LOG_INFO},    {"warn", RUMOR_CONFIG_LOG_WARN},
	        {"warning", RUMOR_CONFIG_LOG_WARN}, {"err", RUMOR_CONFIG_LOG_ERR},
	        {"error", RUMOR_CONFIG_LOG_ERR},
	};
	for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++) {
		if (strcasecmp(s, lv[i].name) == 0) {
			c->log_level = lv[i].l;
			return NULL;
		}
	}
	return "want trace, debug, info, warn or err";
}

static const char *set_profile(struct rumor_config *c, const char *s)
{
	if (strcasecmp(s, "lan") == 0)
		c->profile = RUMOR_CONFIG_PROFILE_LAN;
	else if (strcasecmp(s, "wan") == 0)
		c->profile = RUMOR_CONFIG_PROFILE_WAN;
	else if (strcasecmp(s, "local") == 0)
		c->profile = RUMOR_CONFIG_PROFILE_LOCAL;
	else
		return "want lan, wan or local";
	return NULL;
}

/* The datacenter is a DNS label in answers (node.dc.consul), hence the
 * lowercase alphabet and the 63-byte cap. */
static const char *set_datacenter(struct rumor_config *c, const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > RUMOR_CONFIG_DATACENTER_MAX)
		return "want 1-63 lowercase letters, digits, - and _";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!(ch >= 'a' && ch <= 'z') && !isdigit(ch) && ch != '-' && ch != '_')
			return "want 1-63 lowercase letters, digits, - and _";
	}
	set_str(&c->datacenter, s);
	return NULL;
}

/* The gossip key: AES-128/192/256 as memberlist allows.  The decoded key
 * never outlives this function outside the config (zeroed on every path). */
static const char *set_encrypt(struct rumor_config *c, const char *s)
{
	unsigned char key[64];
	size_t len = 0;
	if (sodium_base642bin(key, sizeof(key), s, strlen(s), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    (len != 16 && len != 24 && len != 32)) {
		sodium_memzero(key, sizeof(key));
		return "want base64 of a 16, 24 or 32-byte key";
	}
	memcpy(c->encrypt_key, key, len);
	c->encrypt_key_len = len;
	sodium_memzero(key, sizeof(key));
	return NULL;
}

/* A token travels in an HTTP header: no spaces or control bytes. */
static const char *check_token(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 256)
		return "want 1 to 256 characters";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return "want printable ASCII without spaces";
	return NULL;
}

/* -node-meta key:value (Consul: split at the first ':'; no ':' means an
 * empty value) or serf's -tag key=value. */
static const char *set_meta_flag(struct rumor_config *c, const struct opt *o, const char *s)
{
	const char *colon = strchr(s, o->flag != NULL && strcmp(o->flag, "tag") == 0 ? '=' : ':');
	size_t kn = colon ? (size_t)(colon - s) : strlen(s);
	if (kn > RUMOR_CONFIG_META_KEY_MAX)
		return "node_meta key longer than 128 bytes";
	char key[RUMOR_CONFIG_META_KEY_MAX + 1];
	memcpy(key, s, kn);
	key[kn] = '\0';
	return meta_put(c, key, colon ? colon + 1 : "");
}

/* Sets a numeric option (K_PORT, K_PORT_OFF, K_COUNT, K_DUR, K_BOOL). */
static const char *set_number(struct rumor_config *c, const struct opt *o, const char *s)
{
	long long v;
	int64_t ms;
	bool b;

	switch (o->kind) {
	case K_PORT:
		if (parse_ll(s, &v) != 0 || v < 1 || v > 65535)
			return "want a port 1-65535";
		FIELD(c, o, int) = (int)v;
		return NULL;
	case K_PORT_OFF:
		if (parse_ll(s, &v) != 0 || (v != -1 && (v < 1 || v > 65535)))
			return "want a port 1-65535 or -1 to disable";
		FIELD(c, o, int) = (int)v;
		return NULL;
	case K_COUNT:
		if (parse_ll(s, &v) != 0 || v < 0 || v > INT_MAX)
			return "want an integer >= 0";
		FIELD(c, o, int) = (int)v;
		return NULL;
	case K_DUR:
		if (rumor_parse_duration(s, &ms) != 0)
			return "want a duration such as 30s, 1h30m or 500ms";
		if (ms < o->min_ms)
			return o->min_ms >= 1000 ? "want a duration of at least 1s"
			                         : "want a duration above zero";
		FIELD(c, o, int64_t) = ms;
		return NULL;
	case K_BOOL:
		if (parse_bool(s, &b) != 0)
			return "want true or false";
		FIELD(c, o, bool) = b;
		return NULL;
	default:
		return NULL;
	}
}

/* Sets option o from its text form.  Returns NULL or the reason the value
 * is not acceptable ("want ..."). */
static const char *opt_set(struct rumor_config *c, const struct opt *o, const char *s)
{
	const char *why;

	switch (o->kind) {
	case K_STR:
		if (*s == '\0')
			return "want a non-empty path";
		set_str(&FIELD(c, o, char *), s);
		return NULL;
	case K_NODE:
		if ((why = check_node_name(s)) != NULL)
			return why;
		set_str(&FIELD(c, o, char *), s);
		return NULL;
	case K_ADDR:
		if (!is_ip_literal(s))
			return "want an IPv4 or IPv6 address";
		set_str(&FIELD(c, o, char *), s);
		return NULL;
	case K_PORT:
	case K_PORT_OFF:
	case K_COUNT:
	case K_DUR:
	case K_BOOL:
		return set_number(c, o, s);
	case K_LOGLEVEL:
		return set_log_level(c, s);
	case K_PROFILE:
		return set_profile(c, s);
	case K_DC:
		return set_datacenter(c, s);
	case K_DOMAIN: {
		char buf[256];
		if ((why = norm_domain(s, buf, sizeof(buf))) != NULL)
			return why;
		set_str(&FIELD(c, o, char *), buf);
		return NULL;
	}
	case K_ENCRYPT:
		return set_encrypt(c, s);
	case K_TOKEN:
		if ((why = check_token(s)) != NULL)
			return why;
		set_str(&FIELD(c, o, char *), s);
		return NULL;
	case K_LIST:
		if ((why = check_join_addr(s)) != NULL)
			return why;
		list_push(&FIELD(c, o, struct rumor_config_list), s);
		return NULL;
	case K_SVCDEF:
		list_push(&FIELD(c, o, struct rumor_config_list), s);
		return NULL;
	case K_STRLIST:
		if (s[0] == '\0')
			return "must not be empty";
		list_push(&FIELD(c, o, struct rumor_config_list), s);
		return NULL;
	case K_META:
		return set_meta_flag(c, o, s);
	case K_IGNORE_BOOL: {
		bool b;
		return parse_bool(s, &b) != 0 ? "want true or false" : NULL;
	}
	case K_ACLPOLICY:
		if (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0)
			return "want allow or deny";
		FIELD(c, o, bool) = strcmp(s, "deny") == 0;
		return NULL;
	case K_IGNORE:
	case K_CFGFILE:
	case K_CFGDIR:
	case K_HELP:
		break;
	}
	return NULL;
}

/* Adds line to l unless it is there already (a key in two files, a flag
 * given twice): each notice is logged once. */
static void list_push_once(struct rumor_config_list *l, const char *line)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], line) == 0)
			return;
	list_push(l, line);
}

/* Records that a Consul setting (a key, or a flag with its dash) was
 * accepted without effect; o->help holds the reason. */
static void note_ignored(struct rumor_config *c, const char *name, const struct opt *o)
{
	char line[256];
	snprintf(line, sizeof(line),
	         "%s: accepted for Consul compatibility, no effect in rumor (%s)", name,
	         o->help ? o->help : "not supported");
	list_push_once(&c->notices, line);
}

/* ---- defaults ----------------------------------------------------------- */

void rumor_config_init(struct rumor_config *c)
{
	char host[256];

	memset(c, 0, sizeof(*c));
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	c->node_name = xstrdup(host);
	c->datacenter = xstrdup("dc1");
	c->domain = xstrdup("consul.");
	c->bind_addr = xstrdup("0.0.0.0");
	c->advertise_addr = NULL;
	c->client_addr = xstrdup("127.0.0.1");
	c->serf_lan_port = 8301;
	c->http_port = 8500;
	c->dns_port = 8600;
	c->dns_truncate = true;
	c->dns_nearest_first = true;
	c->http_max_conns_per_client = 200;
	c->dns_udp_max_size = 1232;
	c->retry_interval_ms = 30 * 1000;
	c->retry_max = 0;
	c->reconnect_timeout_ms = 72LL * 3600 * 1000;
	c->server_port = 8300;
	c->log_rotate_duration_ms = 24LL * 3600 * 1000;
	c->kv_tombstone_ttl_ms = 72LL * 3600 * 1000;
	c->kv_sync_interval_ms = 10000;
	c->kv_max_clock_offset_ms = 30000;
	c->profile = RUMOR_CONFIG_PROFILE_LAN;
	c->log_level = RUMOR_CONFIG_LOG_INFO;
	c->leave_on_terminate = true;
	c->skip_leave_on_interrupt = false;
}

void rumor_config_free(struct rumor_config *c)
{
	free(c->node_name);
	free(c->datacenter);
	free(c->domain);
	free(c->bind_addr);
	free(c->advertise_addr);
	free(c->client_addr);
	free(c->data_dir);
	list_free(&c->start_join);
	list_free(&c->retry_join);
	list_free(&c->event_handlers);
	list_free(&c->recursors);
	list_free(&c->service_defs);
	free(c->alt_domain);
	for (size_t i = 0; i < c->node_meta_n; i++) {
		free(c->node_meta[i].key);
		free(c->node_meta[i].value);
	}
	free(c->node_meta);
	free(c->pid_file);
	free(c->log_file);
	if (c->acl_token != NULL)
		sodium_memzero(c->acl_token, strlen(c->acl_token));
	free(c->acl_token);
	if (c->acl_read_token != NULL)
		sodium_memzero(c->acl_read_token, strlen(c->acl_read_token));
	free(c->acl_read_token);
	if (c->consul_mgmt_token != NULL)
		sodium_memzero(c->consul_mgmt_token, strlen(c->consul_mgmt_token));
	free(c->consul_mgmt_token);
	free(c->consul_addr_http);
	free(c->consul_addr_dns);
	list_free(&c->notices);
	list_free(&c->warnings);
	for (size_t i = 0; i < c->sources_n; i++)
		free(c->sources[i].path);
	free(c->sources);
	for (int i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	sodium_memzero(c->encrypt_key, sizeof(c->encrypt_key));
	memset(c, 0, sizeof(*c));
}

/* ---- JSON files --------------------------------------------------------- */

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* "prefix.key" (or "key") into out; a long result ends in "...". */
static void join_key(char *out, size_t outlen, const char *prefix, const char *key)
{
	int n = prefix ? snprintf(out, outlen, "%s.%s", prefix, key)
	               : snprintf(out, outlen, "%s", key);
	if (n < 0 || (size_t)n >= outlen)
		memcpy(out + outlen - 4, "...", 4);
}

/* The value as shown in an error: quoted, or hidden for secrets. */
static const char *shown(const struct opt *o, const char *val, char *q, size_t qlen)
{
	if (o->kind == K_ENCRYPT || o->kind == K_TOKEN)
		return "(hidden)";
	return quote(val, q, qlen);
}

/*
 * The same rule as shown(), for values found in files: secrets print as
 * "(hidden)", the rest quoted with control bytes escaped.
 */
static int json_bad_value(const char *file, const char *key, const char *val, bool is_string,
                          const char *why, char *err, size_t errlen)
{
	char q[128];
	const struct opt *o = find_key(key);
	err_set(err, errlen, "config file %s: invalid value for %s: %s (%s)", file, key,
	        o && (o->kind == K_ENCRYPT || o->kind == K_TOKEN) ? "(hidden)"
	        : is_string                                       ? quote(val, q, sizeof(q))
	                                                          : val,
	        why);
	return -1;
}

/* "retry_join": [...] and the like: every element a string, each set in
 * order, so a bad one names its index. */
static int json_apply_list(struct rumor_config *c, const struct opt *o, const char *key, json_t *v,
                           const char *file, char *err, size_t errlen)
{
	const char *why;
	size_t i;
	json_t *e;

	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e)) {
			err_set(err, errlen,
			        "config file %s: key \"%s\" must be an "
			        "array of strings, got %s at index %zu",
			        file, key, json_type_name(e), i);
			return -1;
		}
		if ((why = opt_set(c, o, json_string_value(e))) != NULL)
			return json_bad_value(file, key, json_string_value(e), true, why, err,
			                      errlen);
	}
	return 0;
}

/* "service": {...} or "services": [{...}, ...]: kept as compact JSON text
 * for the services module, which validates the definitions itself. */
static int json_apply_services(struct rumor_config *c, const struct opt *o, const char *key,
                               json_t *v, const char *file, char *err, size_t errlen)
{
	size_t i, n = json_is_array(v) ? json_array_size(v) : 1;

	for (i = 0; i < n; i++) {
		json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		if (!json_is_object(e)) {
			err_set(err, errlen,
			        "config file %s: key \"%s\" must hold service "
			        "definition objects, got %s",
			        file, key, json_type_name(e));
			return -1;
		}
		char *txt = json_dumps(e, JSON_COMPACT);
		if (txt == NULL)
			abort();
		opt_set(c, o, txt);
		free(txt);
	}
	return 0;
}

/* "node_meta": {"k": "v", ...}: errors name the nested key. */
static int json_apply_meta(struct rumor_config *c, const char *key, json_t *v, const char *file,
                           char *err, size_t errlen)
{
	const char *mk, *why;
	json_t *e;

	json_object_foreach(v, mk, e)
	{
		char full[256];
		join_key(full, sizeof(full), key, mk);
		if (!json_is_string(e)) {
			err_set(err, errlen,
			        "config file %s: key \"%s\" must be a "
			        "string, got %s",
			        file, full, json_type_name(e));
			return -1;
		}
		if ((why = meta_put(c, mk, json_string_value(e))) != NULL)
			return json_bad_value(file, full, json_string_value(e), true, why, err,
			                      errlen);
	}
	return 0;
}

/* Type-checks one JSON value against its option's kind, then hands its
 * text form to opt_set, so files and flags share one validation. */
static int json_apply(struct rumor_config *c, const struct opt *o, const char *key, json_t *v,
                      const char *file, char *err, size_t errlen)
{
	char num[32];
	const char *s, *why;
	const char *want = NULL;

	switch (o->kind) {
	case K_IGNORE:
	case K_IGNORE_BOOL:
		/* any value, objects included (telemetry {...}) */
		note_ignored(c, key, o);
		return 0;
	case K_LIST:
	case K_STRLIST:
		if (!json_is_array(v)) {
			want = "an array of strings";
			break;
		}
		return json_apply_list(c, o, key, v, file, err, errlen);
	case K_SVCDEF:
		return json_apply_services(c, o, key, v, file, err, errlen);
	case K_META:
		if (!json_is_object(v)) {
			want = "an object of strings";
			break;
		}
		return json_apply_meta(c, key, v, file, err, errlen);
	case K_BOOL:
		if (!json_is_boolean(v)) {
			want = "a boolean";
			break;
		}
		s = json_is_true(v) ? "true" : "false";
		if ((why = opt_set(c, o, s)) != NULL)
			return json_bad_value(file, key, s, false, why, err, errlen);
		return 0;
	case K_PORT:
	case K_PORT_OFF:
	case K_COUNT:
		if (!json_is_integer(v)) {
			want = "an integer";
			break;
		}
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		if ((why = opt_set(c, o, num)) != NULL)
			return json_bad_value(file, key, num, false, why, err, errlen);
		return 0;
	case K_DUR:
		if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			if ((why = opt_set(c, o, num)) != NULL)
				return json_bad_value(file, key, num, false, why, err, errlen);
			return 0;
		}
		if (!json_is_string(v)) {
			want = "a duration string such as \"30s\"";
			break;
		}
		s = json_string_value(v);
		if ((why = opt_set(c, o, s)) != NULL)
			return json_bad_value(file, key, s, true, why, err, errlen);
		return 0;
	default:
		if (!json_is_string(v)) {
			want = "a string";
			break;
		}
		s = json_string_value(v);
		if ((why = opt_set(c, o, s)) != NULL)
			return json_bad_value(file, key, s, true, why, err, errlen);
		return 0;
	}
	err_set(err, errlen, "config file %s: key \"%s\" must be %s, got %s", file, key, want,
	        json_type_name(v));
	return -1;
}

/*
 * Unknown keys are errors, not warnings: a misspelled key silently ignored is a
 * setting that never took effect. Nested objects are walked only for prefixes
 * the table knows.
 */
static int json_walk(struct rumor_config *c, json_t *obj, const char *prefix, const char *file,
                     char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v)
	{
		char full[256];
		const struct opt *o;
		join_key(full, sizeof(full), prefix, k);
		if ((o = find_key(full)) != NULL) {
			if (json_apply(c, o, full, v, file, err, errlen) != 0)
				return -1;
		} else if (is_key_prefix(full)) {
			if (!json_is_object(v)) {
				err_set(err, errlen,
				        "config file %s: key \"%s\" must be an "
				        "object, got %s",
				        file, full, json_type_name(v));
				return -1;
			}
			if (json_walk(c, v, full, file, err, errlen) != 0)
				return -1;
		} else {
			char q[128];
			err_set(err, errlen, "config file %s: unknown key %s", file,
			        quote(full, q, sizeof(q)));
			return -1;
		}
	}
	return 0;
}

/*
 * Duplicate keys are rejected (jansson would keep the last): in a config file
 * they are almost always a mistake, and which one wins should not be a guess.
 */
static int load_file(struct rumor_config *c, const char *path, char *err, size_t errlen)
{
	struct stat st;
	json_error_t jerr;
	json_t *root;
	int rc;

	if (stat(path, &st) != 0) {
		err_set(err, errlen, "config file %s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		err_set(err, errlen, "config file %s: is a directory (use -config-dir)", path);
		return -1;
	}
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		if (jerr.line > 0)
			err_set(err, errlen, "config file %s: line %d: %s", path, jerr.line,
			        jerr.text);
		else
			err_set(err, errlen, "config file %s: %s", path, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		err_set(err, errlen, "config file %s: top level must be an object, got %s", path,
		        json_type_name(root));
		json_decref(root);
		return -1;
	}
	rc = json_walk(c, root, NULL, path, err, errlen);
	json_decref(root);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Only *.json, in byte order of the name, so the order of overrides is the same
 * on every machine whatever readdir returns; subdirectories are skipped.
 */
static int load_dir(struct rumor_config *c, const char *dir, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (d == NULL) {
		err_set(err, errlen, "config dir %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct stat st;
		size_t plen = strlen(dir) + strlen(names[i]) + 2;
		char *path = xmalloc(plen);
		snprintf(path, plen, "%s/%s", dir, names[i]);
		/* Skip subdirectories and other non-files, as Consul does. */
		if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		rc = load_file(c, path, err, errlen);
		free(path);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* ---- final checks ------------------------------------------------------- */

/*
 * The advertise address when bound to the any-address: the first IPv4 address
 * of an interface that is up and not loopback. Peers must be able to reach it,
 * so 0.0.0.0 itself is never advertised; no interface at all gives NULL.
 */
static char *first_ipv4(void)
{
	struct ifaddrs *ifa, *i;
	char buf[INET_ADDRSTRLEN];
	char *res = NULL;

	if (getifaddrs(&ifa) != 0)
		return NULL;
	for (i = ifa; i != NULL && res == NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
			continue;
		if ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
			continue;
		const struct sockaddr_in *sin =
		        (const struct sockaddr_in *)(const void *)i->ifa_addr;
		if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
			continue;
		if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)))
			res = xstrdup(buf);
	}
	freeifaddrs(ifa);
	return res;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int mkdir_all(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;
	for (char *s = p + 1; *s && rc == 0; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

/*
 * Fails at start-up, with the reason, rather than when the store first writes:
 * a data dir that cannot be created or written is a configuration error.
 */
static int check_data_dir(struct rumor_config *c, char *err, size_t errlen)
{
	struct stat st;
	char q[128];

	if (c->data_dir == NULL) {
		if (!c->dev) {
			err_set(err, errlen,
			        "-data-dir is required (or use -dev for a "
			        "temporary one)");
			return -1;
		}
		const char *tmp = getenv("TMPDIR");
		if (tmp == NULL || *tmp == '\0')
			tmp = "/tmp";
		size_t n = strlen(tmp) + sizeof("/rumor-dev-XXXXXX");
		char *tpl = xmalloc(n);
		snprintf(tpl, n, "%s/rumor-dev-XXXXXX", tmp);
		if (mkdtemp(tpl) == NULL) {
			err_set(err, errlen, "-dev: cannot create a data dir in %s: %s", tmp,
			        strerror(errno));
			free(tpl);
			return -1;
		}
		c->data_dir = tpl;
		c->data_dir_is_temp = true;
		return 0;
	}
	if (stat(c->data_dir, &st) != 0) {
		if (errno != ENOENT || mkdir_all(c->data_dir) != 0) {
			err_set(err, errlen, "invalid value for -data-dir: %s (cannot create: %s)",
			        quote(c->data_dir, q, sizeof(q)), strerror(errno));
			return -1;
		}
		if (stat(c->data_dir, &st) != 0) {
			err_set(err, errlen, "invalid value for -data-dir: %s (%s)",
			        quote(c->data_dir, q, sizeof(q)), strerror(errno));
			return -1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		err_set(err, errlen, "invalid value for -data-dir: %s (not a directory)",
		        quote(c->data_dir, q, sizeof(q)));
		return -1;
	}
	if (access(c->data_dir, W_OK | X_OK) != 0) {
		err_set(err, errlen, "invalid value for -data-dir: %s (directory is not writable)",
		        quote(c->data_dir, q, sizeof(q)));
		return -1;
	}
	return 0;
}

/* ---- parsing ------------------------------------------------------------ */

struct flagval {
	const struct opt *o;
	const char *val;
};

/* Step 1 of parse_args: turns argv into flag/value pairs in fv (capacity
 * argc) and the config sources, in order.  Nothing is applied yet, so a
 * flag's value can override the files that come after it on the line.
 * Returns 0, 1 after -h (usage printed unless reloading), or -1. */
static int tokenize_args(struct rumor_config *c, int argc, char **argv, bool reload,
                         struct flagval *fv, size_t *nfv, char *err, size_t errlen)
{
	char q[128];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0') {
			err_set(err, errlen, "unexpected argument %s (the agent takes only flags)",
			        quote(a, q, sizeof(q)));
			return -1;
		}
		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc) {
				err_set(err, errlen,
				        "unexpected argument %s (the agent takes "
				        "only flags)",
				        quote(argv[i + 1], q, sizeof(q)));
				return -1;
			}
			break;
		}
		const char *name = a + 1 + (a[1] == '-');
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct opt *o = find_flag(name, nlen);
		if (o == NULL) {
			err_set(err, errlen, "unknown flag -%.*s", (int)nlen, name);
			return -1;
		}
		const char *val = eq ? eq + 1 : NULL;
		if (o->kind == K_HELP) {
			if (!reload)
				rumor_config_usage(stdout);
			return 1;
		}
		if (val == NULL && (o->kind == K_BOOL || o->kind == K_IGNORE_BOOL)) {
			bool b;
			if (i + 1 < argc && parse_bool(argv[i + 1], &b) == 0)
				val = argv[++i];
			else
				val = "true";
		}
		if (val == NULL) {
			if (i + 1 >= argc) {
				err_set(err, errlen, "flag needs a value: -%s", o->flag);
				return -1;
			}
			val = argv[++i];
		}
		if (o->kind == K_CFGFILE || o->kind == K_CFGDIR) {
			if (*val == '\0') {
				err_set(err, errlen, "invalid value for -%s: \"\" (want a path)",
				        o->flag);
				return -1;
			}
			c->sources = xrealloc(c->sources, (c->sources_n + 1) * sizeof(*c->sources));
			c->sources[c->sources_n].path = xstrdup(val);
			c->sources[c->sources_n].is_dir = o->kind == K_CFGDIR;
			c->sources_n++;
			continue;
		}
		fv[*nfv].o = o;
		fv[*nfv].val = val;
		(*nfv)++;
	}
	return 0;
}

/* Sets the flags in fv: only -dev when dev_only (its defaults must sit
 * beneath the files), else every one (flags over files). */
static int apply_flags(struct rumor_config *c, const struct flagval *fv, size_t nfv, bool dev_only,
                       char *err, size_t errlen)
{
	char q[128];
	const char *why;

	for (size_t i = 0; i < nfv; i++) {
		if (dev_only && !(fv[i].o->off == OFF(dev) && fv[i].o->kind == K_BOOL))
			continue;
		if ((why = opt_set(c, fv[i].o, fv[i].val)) != NULL) {
			if (dev_only)
				err_set(err, errlen, "invalid value for -%s: %s (%s)",
				        fv[i].o->flag, quote(fv[i].val, q, sizeof(q)), why);
			else
				err_set(err, errlen, "invalid value for -%s: %s (%s)",
				        fv[i].o->flag, shown(fv[i].o, fv[i].val, q, sizeof(q)),
				        why);
			return -1;
		}
		if (fv[i].o->kind == K_IGNORE || fv[i].o->kind == K_IGNORE_BOOL) {
			char name[64];
			snprintf(name, sizeof(name), "-%s", fv[i].o->flag);
			note_ignored(c, name, fv[i].o);
		}
	}
	return 0;
}

/* The config files and directories, in command-line order. */
static int load_sources(struct rumor_config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->sources_n; i++) {
		int r = c->sources[i].is_dir ? load_dir(c, c->sources[i].path, err, errlen)
		                             : load_file(c, c->sources[i].path, err, errlen);
		if (r != 0)
			return -1;
	}
	return 0;
}

/* Consul's addresses.http/addresses.dns: rumor binds HTTP and DNS to one
 * address, so two different ones cannot be honoured and are refused. */
static int finish_consul_addresses(struct rumor_config *c, char *err, size_t errlen)
{
	const char *h = c->consul_addr_http, *d = c->consul_addr_dns;
	if (h != NULL && d != NULL && strcmp(h, d) != 0) {
		err_set(err, errlen,
		        "addresses.http (%s) and addresses.dns (%s) differ: rumor binds HTTP and "
		        "DNS to one address (client_addr); make them equal or use client_addr",
		        h, d);
		return -1;
	}
	if (h != NULL || d != NULL) {
		set_str(&c->client_addr, h != NULL ? h : d);
		list_push_once(&c->notices, h != NULL ? "addresses.http: used as client_addr"
		                                      : "addresses.dns: used as client_addr");
	}
	return 0;
}

/*
 * Consul's ACL block.  Under default_policy "deny" nothing is allowed without
 * a token, so the management token becomes rumor's acl_token and reads need
 * it too (acl_read_token); without a token rumor could enforce, the agent
 * would serve what Consul refuses, so that is an error.  Under "allow" (or
 * acl.enabled false) Consul's tokens grant nothing extra: they are ignored.
 */
static int finish_consul_acl(struct rumor_config *c, char *err, size_t errlen)
{
	bool deny = c->consul_acl_enabled && c->consul_acl_deny;
	if (c->consul_mgmt_token != NULL && !deny)
		list_push_once(&c->notices,
		               "acl.tokens.initial_management: no effect in rumor "
		               "unless acl.enabled is true and default_policy is deny");
	if (!deny) {
		if (c->consul_acl_enabled)
			list_push_once(&c->notices,
			               "acl: default_policy allow, rumor enforces only "
			               "acl_token and acl_read_token");
		return 0;
	}
	if (c->acl_token == NULL && c->consul_mgmt_token != NULL)
		set_str(&c->acl_token, c->consul_mgmt_token);
	if (c->acl_token == NULL) {
		err_set(err, errlen,
		        "acl.default_policy is deny but there is no token rumor can enforce: set "
		        "acl.tokens.initial_management or acl_token (without one rumor would "
		        "answer requests Consul refuses)");
		return -1;
	}
	if (c->acl_read_token == NULL) {
		set_str(&c->acl_read_token, c->acl_token);
		list_push_once(&c->notices, "acl: default_policy deny, reads need the management "
		                            "token too (acl_read_token)");
	}
	list_push_once(&c->notices, "acl: management token used as acl_token");
	return 0;
}

static int finish_consul(struct rumor_config *c, char *err, size_t errlen)
{
	if (finish_consul_addresses(c, err, errlen) != 0 || finish_consul_acl(c, err, errlen) != 0)
		return -1;
	if ((c->bootstrap || c->bootstrap_expect > 0) && !c->server) {
		snprintf(err, errlen, "-bootstrap and -bootstrap-expect need -server");
		return -1;
	}
	if (c->bootstrap && c->bootstrap_expect > 0) {
		snprintf(err, errlen, "-bootstrap and -bootstrap-expect cannot be given together");
		return -1;
	}
	if (c->server && c->server_port < 0) {
		snprintf(err, errlen, "-server needs the server RPC port (-server-port is -1)");
		return -1;
	}
	if (c->bootstrap_expect == 2 || c->bootstrap_expect == 4)
		list_push_once(&c->warnings,
		               "bootstrap_expect is even: a group of 2 or 4 servers tolerates no "
		               "more failures than one of 1 or 3");
	return 0;
}

void rumor_config_log_notices(const struct rumor_config *c)
{
	for (size_t i = 0; i < c->warnings.n; i++)
		if (c->log_level <= RUMOR_CONFIG_LOG_WARN)
			log_msg(LOG_WARN, "config: %s", c->warnings.items[i]);
	for (size_t i = 0; i < c->notices.n; i++)
		if (c->log_level <= RUMOR_CONFIG_LOG_INFO)
			log_msg(LOG_INFO, "config: %s", c->notices.items[i]);
}

/* The checks that need every source applied, and the derived values: the
 * node name (a hostname may not be a valid one), the advertise address, the
 * data dir (created, or on reload kept from the running config). */
static int finish_config(struct rumor_config *c, const char *keep_dir, char *err, size_t errlen)
{
	char q[128];
	const char *why;

	if (finish_consul(c, err, errlen) != 0)
		return -1;
	if (c->node_name == NULL || c->node_name[0] == '\0') {
		err_set(err, errlen, "node name is empty (this host has no hostname); set -node");
		return -1;
	}
	if ((why = check_node_name(c->node_name)) != NULL) {
		err_set(err, errlen, "invalid node name %s from the hostname (%s); set -node",
		        quote(c->node_name, q, sizeof(q)), why);
		return -1;
	}
	if (c->advertise_addr == NULL) {
		if (!is_any_addr(c->bind_addr))
			c->advertise_addr = xstrdup(c->bind_addr);
		else if ((c->advertise_addr = first_ipv4()) == NULL)
			c->advertise_addr = xstrdup("127.0.0.1");
	}
	if (keep_dir != NULL) {
		set_str(&c->data_dir, keep_dir);
		c->data_dir_is_temp = false;
		return 0;
	}
	return check_data_dir(c, err, errlen);
}

/* keep_dir != NULL means reload: nothing is created on disk, the data dir is
 * taken from the running config.  Order: tokenize, -dev, files, flags over
 * files, final checks; the argv is kept for rumor_config_reload(). */
static int parse_args(struct rumor_config *c, int argc, char **argv, const char *keep_dir,
                      char *err, size_t errlen)
{
	struct flagval *fv = NULL;
	size_t nfv = 0;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (argc > 0)
		fv = xmalloc((size_t)argc * sizeof(*fv));
	rc = tokenize_args(c, argc, argv, keep_dir != NULL, fv, &nfv, err, errlen);
	if (rc != 0)
		goto out;
	rc = -1;
	if (apply_flags(c, fv, nfv, true, err, errlen) != 0)
		goto out;
	if (c->dev) {
		set_str(&c->bind_addr, "127.0.0.1");
		set_str(&c->client_addr, "127.0.0.1");
		c->ui = true;
	}
	if (load_sources(c, err, errlen) != 0 || apply_flags(c, fv, nfv, false, err, errlen) != 0 ||
	    finish_config(c, keep_dir, err, errlen) != 0)
		goto out;
	if (keep_dir == NULL && c->argv == NULL && argc > 0) {
		c->argv = xmalloc((size_t)argc * sizeof(*c->argv));
		for (int i = 0; i < argc; i++)
			c->argv[i] = xstrdup(argv[i]);
		c->argc = argc;
	}
	rc = 0;
out:
	free(fv);
	return rc;
}

int rumor_config_parse(struct rumor_config *c, int argc, char **argv, char *err, size_t errlen)
{
	return parse_args(c, argc, argv, NULL, err, errlen);
}

int rumor_config_reload(const struct rumor_config *cur, struct rumor_config *out, char *err,
                        size_t errlen)
{
	rumor_config_init(out);
	int rc = parse_args(out, cur->argc, cur->argv, cur->data_dir ? cur->data_dir : "", err,
	                    errlen);
	if (rc == 1) {
		err_set(err, errlen, "reload: help flag in saved arguments");
		return -1;
	}
	if (rc == 0) {
		/* The saved argv belongs to cur; out needs its own copy only if
		 * it is reloaded again. */
		out->argv = xmalloc((size_t)(cur->argc > 0 ? cur->argc : 1) * sizeof(*out->argv));
		for (int i = 0; i < cur->argc; i++)
			out->argv[i] = xstrdup(cur->argv[i]);
		out->argc = cur->argc;
	}
	return rc;
}

void rumor_config_usage(FILE *out)
{
	fputs("Usage: rumor agent [options]\n\n"
	      "Starts the rumor agent. Flags take -flag=value or -flag value\n"
	      "(also with --); boolean flags may be given alone to mean true.\n"
	      "Flags override values from config files.\n\nOptions:\n\n",
	      out);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		if (o->help == NULL || o->flag == NULL || o->kind == K_IGNORE ||
		    o->kind == K_IGNORE_BOOL)
			continue;
		if (o->kind == K_HELP)
			fprintf(out, "  -h, -help\n");
		else if (o->arg[0])
			fprintf(out, "  -%s=<%s>\n", o->flag, o->arg);
		else
			fprintf(out, "  -%s\n", o->flag);
		const char *h = o->help;
		while (*h) {
			const char *nl = strchr(h, '\n');
			int n = nl ? (int)(nl - h) : (int)strlen(h);
			fprintf(out, "      %.*s\n", n, h);
			h += n + (nl != NULL);
		}
		fputc('\n', out);
	}
}

/* ---- small accessors ---------------------------------------------------- */

const char *rumor_config_log_level_name(enum rumor_config_log_level l)
{
	static const char *const names[] = {"trace", "debug", "info", "warn", "err"};
	if ((unsigned)l >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[l];
}

const char *rumor_config_profile_name(enum rumor_config_profile p)
{
	static const char *const names[] = {"lan", "wan", "local"};
	if ((unsigned)p >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[p];
}

const char *rumor_config_meta_get(const struct rumor_config *c, const char *key)
{
	for (size_t i = 0; i < c->node_meta_n; i++)
		if (strcmp(c->node_meta[i].key, key) == 0)
			return c->node_meta[i].value;
	return NULL;
}
