/*
 * config — the agent's configuration: command-line flags with Consul's names
 * and JSON config files with Consul's keys (read with jansson).
 *
 * Owns: struct rumor_config and every heap string and list inside it.
 *
 * Data flow of rumor_config_parse():
 *   1. argv is tokenized against one option table (config.c) into a list of
 *      (option, value) pairs; -h/-help stops here and prints usage.
 *   2. if -dev was given, dev-mode defaults are applied (bind, advertise and
 *      client 127.0.0.1);
 *   3. each -config-file / -config-dir is loaded in the order given (a
 *      directory's *.json files sorted by name); every key goes through the
 *      same table as the flags, so a file's value and a flag's value are
 *      validated by the same code;
 *   4. the flags are applied over the files: scalars, last one wins; lists
 *      (start_join, retry_join) and node_meta are concatenated, files first;
 *   5. final checks and derived defaults: node name, advertise address,
 *      data directory (created 0700, or a fresh temporary one under -dev).
 * Adding a setting means one row in the option table plus a field here.
 *
 * Error convention: functions return 0 on success and -1 on failure with a
 * one-line message in the caller's `err` buffer that names the flag or key,
 * the file when there is one, and the bad value, e.g.
 *   invalid value for -http-port: "abc" (want a port 1-65535 or -1 to disable)
 *   config file /etc/rumor/a.json: line 3: ...
 * Whatever the result, the caller releases the struct with
 * rumor_config_free().
 */
#ifndef RUMOR_AGENT_CONFIG_H
#define RUMOR_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RUMOR_CONFIG_NODE_NAME_MAX 128  /* bytes */
#define RUMOR_CONFIG_META_KEY_MAX 128   /* Consul: metaKeyMaxLength */
#define RUMOR_CONFIG_META_VALUE_MAX 512 /* Consul: metaValueMaxLength */
#define RUMOR_CONFIG_META_MAX_PAIRS 64  /* Consul: metaMaxKeyPairs */
#define RUMOR_CONFIG_DATACENTER_MAX 63  /* one DNS label */
#define RUMOR_CONFIG_KEY_MAX 32         /* largest gossip key, bytes */

/* Ordered from most to least verbose, in the same order as lib/log.h's
 * enum log_level, so the agent may cast one to the other. */
enum rumor_config_log_level {
	RUMOR_CONFIG_LOG_TRACE = 0,
	RUMOR_CONFIG_LOG_DEBUG,
	RUMOR_CONFIG_LOG_INFO,
	RUMOR_CONFIG_LOG_WARN,
	RUMOR_CONFIG_LOG_ERR,
};

/* memberlist timing profiles (DefaultLANConfig, DefaultWANConfig,
 * DefaultLocalConfig). */
enum rumor_config_profile {
	RUMOR_CONFIG_PROFILE_LAN = 0,
	RUMOR_CONFIG_PROFILE_WAN,
	RUMOR_CONFIG_PROFILE_LOCAL,
};

/* A list of heap strings; the config owns the strings and the array. */
struct rumor_config_list {
	char **items;
	size_t n;
};

/* One node_meta pair; keys are unique within a config. */
struct rumor_config_meta {
	char *key;
	char *value;
};

/* A -config-file or -config-dir argument, kept in command-line order so
 * rumor_config_reload() can read the same files again. */
struct rumor_config_source {
	char *path;
	bool is_dir;
};

struct rumor_config {
	/* identity */
	char *node_name;  /* -node / node_name; default hostname */
	char *datacenter; /* -datacenter / datacenter; "dc1" */
	char *domain;     /* -domain / domain; "consul.", lowercased,
	                             * always ends in '.' */

	/* addresses: IP literals as strings; the agent parses them itself */
	char *bind_addr;      /* -bind, -serf-lan-bind; "0.0.0.0" */
	char *advertise_addr; /* -advertise; always filled after parse */
	char *client_addr;    /* -client; "127.0.0.1" (HTTP and DNS) */
	int serf_lan_port;    /* -serf-lan-port / ports.serf_lan; 8301 */
	int http_port;        /* -http-port / ports.http; 8500; -1 off */
	int dns_port;         /* -dns-port / ports.dns; 8600; -1 off */

	/* storage */
	char *data_dir;        /* -data-dir; an existing writable dir after
	                             * a successful parse */
	bool data_dir_is_temp; /* created by -dev: the agent removes it at
	                             * exit (recursively) */

	/* joining */
	struct rumor_config_list start_join; /* -join / start_join */
	struct rumor_config_list retry_join; /* -retry-join / retry_join */
	int64_t retry_interval_ms;           /* -retry-interval; 30s */
	int retry_max;                       /* -retry-max; 0 = retry forever */
	bool rejoin_after_leave;             /* -rejoin-after-leave; false */
	int64_t reconnect_timeout_ms;        /* -reconnect-timeout; 72h, >= 1s */
	int server_port;                /* -server-port / ports.server: KV sync TCP; 8300; -1 off */
	int64_t kv_tombstone_ttl_ms;    /* -kv-tombstone-ttl; 72h, >= 1s */
	int64_t kv_sync_interval_ms;    /* -kv-sync-interval; 10s, >= 100ms */
	int64_t kv_max_clock_offset_ms; /* -kv-max-clock-offset; 30s, >= 1s */

	/* behaviour */
	bool dev;                              /* -dev */
	enum rumor_config_profile profile;     /* -profile; lan */
	enum rumor_config_log_level log_level; /* -log-level; info */
	bool leave_on_terminate;               /* true (Consul's client default) */
	bool skip_leave_on_interrupt;          /* false (Consul's client default) */
	bool ui; /* -ui / ui / ui_config.enabled: serve the web UI at /ui/; on with -dev */

	/* gossip encryption: key_len is 0 (off), 16, 24 or 32 */
	uint8_t encrypt_key[RUMOR_CONFIG_KEY_MAX];
	size_t encrypt_key_len;

	/* HTTP ACL (agent/acl.h): NULL when unset */
	char *acl_token;               /* -acl-token / acl_token: writes + reads */
	char *acl_read_token;          /* -acl-read-token / acl_read_token */
	int http_max_conns_per_client; /* -http-max-conns-per-client /
	                             * limits.http_max_conns_per_client; 200;
	                             * 0 = no per-address cap */

	struct rumor_config_list event_handlers; /* -event-handler / event_handlers */

	/* services, checks and DNS (agent/api_catalog.c) */
	bool enable_script_checks;          /* -enable-script-checks; false */
	struct rumor_config_list recursors; /* -recursor / recursors */
	int dns_udp_max_size;               /* -dns-udp-max-size / dns_config.udp_max_size; 4096 */
	bool dns_truncate;                  /* -dns-truncate /
	                             * dns_config.enable_truncate; true */
	char *alt_domain;                   /* -alt-domain / alt_domain; NULL */
	int64_t dns_node_ttl_ms;            /* -dns-node-ttl / dns_config.node_ttl; 0 */
	int64_t dns_service_ttl_ms;         /* -dns-service-ttl /
	                             * dns_config.service_ttl_default; 0 */
	bool dns_only_passing;              /* -dns-only-passing /
	                             * dns_config.only_passing; false */
	bool dns_nearest_first;             /* -dns-nearest-first /
	                             * dns_config.nearest_first; true */
	bool disable_coordinates;           /* -disable-coordinates /
	                             * disable_coordinates; false */
	struct rumor_config_list service_defs; /* "service"/"services" in
	                             * config files, one JSON object each */

	struct rumor_config_meta *node_meta; /* -node-meta / node_meta */
	size_t node_meta_n;

	/* files */
	char *pid_file;                 /* -pid-file; NULL if not set */
	char *log_file;                 /* -log-file; NULL if not set */
	bool log_json;                  /* -log-json; false */
	int log_rotate_bytes;           /* -log-rotate-bytes; 0 = no size limit */
	int64_t log_rotate_duration_ms; /* -log-rotate-duration; 24h, 0 = never */
	int log_rotate_max_files;       /* -log-rotate-max-files; 0 = keep all */
	bool syslog;                    /* -syslog / enable_syslog; false */

	/* the server tier (docs/SERVERS.md) */
	bool server;                 /* -server / server: a Raft server */
	bool bootstrap;              /* -bootstrap / bootstrap: a group of one */
	int bootstrap_expect;        /* -bootstrap-expect / bootstrap_expect */
	int raft_snapshot_threshold; /* raft_snapshot_threshold: entries between
	                                    * snapshots; 0: 8192 */
	int raft_trailing_logs;      /* raft_trailing_logs: entries kept behind a
	                                    * snapshot; 0: 2048 */

	/* Consul settings rumor accepts without acting on them (see
	 * docs/CONFIGURATION.md, "Consul's settings") */
	bool consul_acl_enabled;           /* acl.enabled */
	bool consul_acl_deny;              /* acl.default_policy / acl_default_policy */
	char *consul_mgmt_token;           /* acl.tokens.initial_management (master),
	                             * acl_master_token: becomes acl_token (and
	                             * acl_read_token) under "deny" */
	char *consul_addr_http;            /* addresses.http: becomes client_addr */
	char *consul_addr_dns;             /* addresses.dns: becomes client_addr */
	struct rumor_config_list notices;  /* one line per ignored setting, info */
	struct rumor_config_list warnings; /* e.g. -server; warn */

	/* where the settings came from (for reload) */
	struct rumor_config_source *sources;
	size_t sources_n;
	char **argv; /* private: copy of the flags, for reload */
	int argc;
};

/* Fills *c with the defaults above (node_name = hostname, or "" if the host
 * has none).  Always succeeds apart from allocation failure, which aborts. */
void rumor_config_init(struct rumor_config *c);

/* Parses argv (argv[0] is the subcommand, e.g. "agent", and is skipped) into
 * *c, which must come from rumor_config_init().  Flags take `-f=v`, `-f v`,
 * `--f=v`, `--f v`; booleans also take a bare `-f` (true) and `-f true`.
 * Returns 0 on success, 1 if -h/-help/--help was given (usage already
 * printed to stdout), -1 with a message in err otherwise.  On success the
 * data directory exists (it may have been created).  Call
 * rumor_config_free() in every case. */
int rumor_config_parse(struct rumor_config *c, int argc, char **argv, char *err, size_t errlen);

/* Logs c->notices at info and c->warnings at warn, each line once, if the
 * configured log level lets them through.  The agent calls it once, after
 * its log sinks (file, syslog, monitor) exist; neither rumor_config_parse()
 * nor reload logs them, so each line is logged once per process, and to
 * the configured log rather than to stderr before it is set up. */
void rumor_config_log_notices(const struct rumor_config *c);

/* Writes the list of flags with their defaults and meaning to out. */
void rumor_config_usage(FILE *out);

/* Frees every string and list owned by c and leaves it zeroed.  Does not
 * remove a temporary data directory: that is the agent's job. */
void rumor_config_free(struct rumor_config *c);

/* Re-reads the config files and directories that cur was built from, applies
 * cur's flags over them again (flags still win) and validates, into *out
 * (which this function initializes; free it with rumor_config_free() in every
 * case).  Only the reloadable fields are meant to be used: log_level and
 * node_meta.  Creates nothing on disk: out->data_dir is a copy of cur's and
 * out->data_dir_is_temp is false.  Returns 0 or -1 with a message in err. */
int rumor_config_reload(const struct rumor_config *cur, struct rumor_config *out, char *err,
                        size_t errlen);

/* Parses a Go duration ("1h30m", "500ms", "1.5s", "10us", "0"), or a bare
 * non-negative integer meaning seconds ("30"), into whole milliseconds
 * (sub-millisecond remainders are truncated).  Rejects negative values,
 * unknown units, garbage and overflow of int64 nanoseconds (~292 years).
 * Returns 0 and sets *ms, or -1 leaving *ms untouched. */
int rumor_parse_duration(const char *s, int64_t *ms);

/* "trace", "debug", "info", "warn", "err"; "?" for an out-of-range value. */
const char *rumor_config_log_level_name(enum rumor_config_log_level l);

/* "lan", "wan", "local"; "?" for an out-of-range value. */
const char *rumor_config_profile_name(enum rumor_config_profile p);

/* Value of a node_meta key, or NULL if it is not set. */
const char *rumor_config_meta_get(const struct rumor_config *c, const char *key);

#endif
