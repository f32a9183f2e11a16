/*
 * agent/metrics.h — the agent's metrics: a fixed registry of named counters,
 * gauges and samples, and two renderers (Consul's /v1/agent/metrics JSON and
 * Prometheus text exposition format 0.0.4).
 *
 * Owns: one process-wide table of values (the agent is one process with one
 * libev loop; nothing here is thread-safe, and nothing needs to be).  A bump
 * is an array index and a few arithmetic operations: no allocation, no
 * lookup, no locks.  The only allocation is in the renderers.
 *
 * Kinds (go-metrics' vocabulary, which Consul's JSON uses):
 *   counter  cumulative since the agent started.  Tracks Count (number of
 *            bumps), Sum (total added), Min/Max of one bump, and the sum of
 *            squares for Stddev.  Prometheus shows Sum as <name>_total.
 *            Consul resets its counters every 10 s interval; rumor does not
 *            (rates are what Prometheus' rate() is for).
 *   gauge    a value set from time to time (members, queue depth, RSS).
 *   sample   observations of a quantity (loop latency in ms): the same
 *            aggregates as a counter; Prometheus shows it as a summary
 *            (<name>_sum, <name>_count) without quantiles.
 *
 * Values that a module already counts itself (swim_stats, transport stats)
 * are copied in by a collector function just before rendering
 * (metrics_collector_add, metrics_set_counter, metrics_set_gauge): the hot
 * path of those modules is untouched.
 *
 * Labels: a row of the table may carry one fixed label (key and value:
 * serf.members{status="alive"}); rows of one family share a name and must
 * be adjacent in the table.  A row with a label key and a NULL value is
 * dynamic: its series are created on first use by metrics_*_label() (e.g.
 * http.requests{code="404"}), up to METRICS_DYN_MAX series in all; past that
 * bumps are counted in the row itself (no label), never lost.
 *
 * ADDING A METRIC is one line in METRICS_TABLE below:
 *     X(ID, KIND, "dotted.name", "label key" or NULL, "label value" or NULL,
 *       "help text")
 * then bump it where the event happens: metrics_inc(METRIC_ID),
 * metrics_add(METRIC_ID, n), metrics_set_gauge(METRIC_ID, v),
 * metrics_sample(METRIC_ID, ms), metrics_inc_label(METRIC_ID, "404").
 * The dotted name is Consul-style; the JSON shows it as "rumor.<name>",
 * Prometheus as rumor_<name with . and - turned into _> (+ "_total" for
 * counters).  Names: lower case letters, digits, '.', '_'.  Units: a
 * duration is bumped in milliseconds and its name ends in "_ms" (the JSON
 * shows ms, as Consul's does); Prometheus shows it in base units, "_ms"
 * turned into "_seconds" and the values divided by 1000.  Other names end
 * in their base unit already (_bytes, _seconds) or count things.
 *
 * Error convention: bumps cannot fail (an out-of-range id is ignored);
 * renderers return malloc'd text or NULL on allocation failure.
 */
#ifndef RUMOR_AGENT_METRICS_H
#define RUMOR_AGENT_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum metrics_kind { METRICS_COUNTER, METRICS_GAUGE, METRICS_SAMPLE };

/* clang-format off */
#define METRICS_TABLE(X)                                                                         \
	/* membership (collected from the SWIM core) */                                      \
	X(MEMBERS_ALIVE, GAUGE, "serf.members", "status", "alive", "Members in this agent's view, by status (self included)") \
	X(MEMBERS_SUSPECT, GAUGE, "serf.members", "status", "suspect", NULL)                  \
	X(MEMBERS_FAILED, GAUGE, "serf.members", "status", "failed", NULL)                    \
	X(MEMBERS_LEFT, GAUGE, "serf.members", "status", "left", NULL)                        \
	X(HEALTH_SCORE, GAUGE, "memberlist.health.score", NULL, NULL, "Lifeguard local health score (0 is healthy; higher means slower probing)") \
	X(BCAST_QUEUE, GAUGE, "memberlist.queue.broadcasts", NULL, NULL, "Messages waiting in the gossip broadcast queue") \
	X(PROBES, COUNTER, "memberlist.probe", NULL, NULL, "Direct probes (pings) sent")      \
	X(PROBE_FAILURES, COUNTER, "memberlist.probe.failed", NULL, NULL, "Probes that got no ack in time") \
	X(PROBES_INCONCLUSIVE, COUNTER, "memberlist.probe.inconclusive", NULL, NULL, "Of the failed probes, those that accused nobody: this agent itself ran a probe timeout late meanwhile") \
	X(LATE_WAKEUPS, COUNTER, "memberlist.late_wakeups", NULL, NULL, "Times this agent's gossip timer ran a probe timeout or more late (starved of CPU)") \
	X(DEATHS_DEFERRED, COUNTER, "memberlist.dead.deferred", NULL, NULL, "Suspicions that ran out while this agent was starved and waited another probe interval (up to the longest suspicion timeout)") \
	X(CPU_WAIT, COUNTER, "memberlist.cpu_wait_ms", NULL, NULL, "Milliseconds this agent was ready to run but waited for a CPU (Linux schedstat run_delay, read at each gossip tick)") \
	X(INDIRECT_PROBES, COUNTER, "memberlist.probe.indirect", NULL, NULL, "Indirect probe requests sent") \
	X(TCP_PINGS, COUNTER, "memberlist.probe.tcp", NULL, NULL, "TCP fallback pings started") \
	X(SUSPICIONS, COUNTER, "memberlist.msg.suspect", NULL, NULL, "Members this node started suspecting") \
	X(REFUTATIONS, COUNTER, "memberlist.msg.refute", NULL, NULL, "Suspicions of this node it refuted") \
	X(DEATHS, COUNTER, "memberlist.msg.dead", NULL, NULL, "Members declared dead")        \
	X(PACKETS_SENT, COUNTER, "memberlist.packets.sent", NULL, NULL, "Gossip packets sent") \
	X(PACKETS_COMPRESSED, COUNTER, "memberlist.packets.compressed", NULL, NULL, "Gossip packets sent LZW-compressed (of those sent)") \
	X(PACKETS_SPLIT, COUNTER, "memberlist.packets.split", NULL, NULL, "Gossip packets whose compressed form overshot the UDP budget and were split in two (each half compressed again)") \
	X(PACKETS_RECV, COUNTER, "memberlist.packets.received", NULL, NULL, "Gossip packets received") \
	X(BYTES_SENT, COUNTER, "memberlist.bytes.sent", NULL, NULL, "Gossip bytes sent (before encryption)") \
	X(BYTES_RECV, COUNTER, "memberlist.bytes.received", NULL, NULL, "Gossip bytes received (after decryption)") \
	X(BAD_PACKETS, COUNTER, "memberlist.packets.bad", NULL, NULL, "Received gossip packets that failed to decode") \
	X(BCAST_DROPPED, COUNTER, "memberlist.queue.dropped", NULL, NULL, "Broadcasts dropped because the queue was full") \
	X(STREAMS_IN, COUNTER, "memberlist.tcp.streams", "direction", "in", "Gossip TCP streams (push-pull, join, fallback ping), by direction") \
	X(STREAMS_OUT, COUNTER, "memberlist.tcp.streams", "direction", "out", NULL)           \
	X(STREAM_ERRORS, COUNTER, "memberlist.tcp.errors", NULL, NULL, "Gossip TCP streams that failed or timed out") \
	X(STREAMS_REFUSED, COUNTER, "memberlist.tcp.refused", NULL, NULL, "Gossip TCP streams refused at accept: over 128 at once, or over the 64 MiB buffer budget") \
	X(PUSH_PULLS_REFUSED, COUNTER, "memberlist.push_pull.refused", NULL, NULL, "Push-pulls refused: more than 20,000 members announced, or the merge queue full") \
	X(PUSH_PULL_REPLIES_REUSED, COUNTER, "memberlist.push_pull.reused", NULL, NULL, "Push-pull replies that reused the state made for another less than a second before, while gossip was crowded") \
	X(UDP_ERRORS, COUNTER, "memberlist.udp.errors", NULL, NULL, "Gossip UDP send/receive errors") \
	X(UDP_HOLDS, COUNTER, "memberlist.udp.holds", NULL, NULL, "Times the gossip socket was left to the agent's ticks because over 64 gossip messages waited (a join storm)") \
	X(UDP_HELD, GAUGE, "memberlist.udp.held", NULL, NULL, "1 while the gossip socket is read at the agent's ticks (crowded queue), else 0") \
	X(DECRYPT_FAILURES, COUNTER, "memberlist.decrypt_failures", NULL, NULL, "Gossip packets and streams no installed key could open") \
	X(KEYRING_KEYS, GAUGE, "memberlist.keyring.keys", NULL, NULL, "Gossip encryption keys installed (0: gossip is plain text)") \
	X(PUSH_PULLS, COUNTER, "memberlist.push_pull", NULL, NULL, "Push-pull state exchanges completed (either side, joins included)") \
	X(BROADCASTS_CREDITED, COUNTER, "memberlist.queue.echoes", NULL, NULL, "Queued alives heard back from others while over 64 member messages waited; each counts as two sends") \
	X(RUMORS_CREDITED, COUNTER, "memberlist.queue.rumor_echoes", NULL, NULL, "Queued KV records heard back at the version held while over 64 KV messages waited; each counts as two sends") \
	X(MERGED_QUIETLY, COUNTER, "memberlist.push_pull.quiet", NULL, NULL, "Alive entries push-pulls taught this agent that it did not rebroadcast (a fresh join's state; news beyond the first 8 of a state)") \
	X(DIGESTS_SENT, COUNTER, "memberlist.digest.sent", NULL, NULL, "Member-table digests sent beside pings to rumor agents (table settled)") \
	X(DIGESTS_DIFFERED, COUNTER, "memberlist.digest.differed", NULL, NULL, "Digests received that differed from this agent's settled table") \
	X(REPAIRS, COUNTER, "memberlist.repair", NULL, NULL, "Push-pulls opened because a settled peer's digest differed (table repair)") \
	X(COORD_UPDATES, COUNTER, "serf.coordinate.updates", NULL, NULL, "Network coordinate updates from direct probes' RTTs") \
	X(COORD_REJECTED, COUNTER, "serf.coordinate.rejected", NULL, NULL, "RTT samples the coordinate client refused (RTT or coordinate out of range)") \
	X(COORD_BAD_PAYLOADS, COUNTER, "serf.coordinate.bad_payload", NULL, NULL, "Ack payloads that were not a coordinate (ignored)") \
	/* key-value store (collected from kv_stats) */                                      \
	X(KV_KEYS, GAUGE, "kv.keys", NULL, NULL, "Keys in this agent's KV replica (the catalog's records included)") \
	X(KV_TOMBSTONES, GAUGE, "kv.tombstones", NULL, NULL, "Deleted keys remembered until kv_tombstone_ttl") \
	X(KV_WATCHES, GAUGE, "kv.blocking_queries", NULL, NULL, "Blocking queries and internal watches (catalog) waiting on the KV store") \
	X(KV_WRITES, COUNTER, "kv.writes", NULL, NULL, "Writes (puts and deletes) made through this agent") \
	X(KV_COMMITS, COUNTER, "kv.commits", NULL, NULL, "Group commits to the KV store's log") \
	X(KV_COMMITS_UNSYNCED, COUNTER, "kv.commits.unsynced", NULL, NULL, "Of those, commits of peers' records only, logged without fdatasync") \
	X(KV_GOSSIP_OUT, COUNTER, "kv.gossip", "direction", "out", "KV replication messages broadcast (out) and received (in)") \
	X(KV_GOSSIP_IN, COUNTER, "kv.gossip", "direction", "in", NULL)                         \
	X(KV_GOSSIP_APPLIED, COUNTER, "kv.gossip.applied", NULL, NULL, "Received KV replication messages that changed the replica") \
	X(KV_GOSSIP_ECHOES, COUNTER, "kv.gossip.echoes", NULL, NULL, "Received KV records whose very version the replica stored already") \
	X(KV_RELAYS_HELD, COUNTER, "kv.gossip.relays_held", NULL, NULL, "Peers' KV records applied but not passed on by gossip, because over 64 gossip messages were queued") \
	X(KV_SYNCS_OK, COUNTER, "kv.anti_entropy.syncs", "result", "ok", "Anti-entropy sessions with a peer, by result") \
	X(KV_SYNCS_FAILED, COUNTER, "kv.anti_entropy.syncs", "result", "failed", NULL)        \
	X(KV_SYNC_IN, COUNTER, "kv.anti_entropy.records", "direction", "in", "Records transferred by anti-entropy, by direction") \
	X(KV_SYNC_OUT, COUNTER, "kv.anti_entropy.records", "direction", "out", NULL)          \
	X(KV_SYNC_CHAINS, COUNTER, "kv.anti_entropy.chains", "result", "started", "Rounds that brought late records: quick rounds started (started), or none because gossip had a backlog and late records were expected (held)") \
	X(KV_SYNC_CHAINS_HELD, COUNTER, "kv.anti_entropy.chains", "result", "held", NULL)     \
	X(KV_SYNC_JOIN_ROUNDS_HELD, COUNTER, "kv.anti_entropy.join_rounds_held", NULL, NULL, "Joins that brought no anti-entropy round forward because gossip had more than 64 messages queued (a join storm)") \
	X(KV_SYNC_REFUSED_PLAIN, COUNTER, "kv.anti_entropy.refused", "reason", "plaintext", "Sync connections closed unanswered: a plaintext frame to an agent with a keyring, a frame no installed key opens, a sealed frame to an agent without a keyring") \
	X(KV_SYNC_REFUSED_DECRYPT, COUNTER, "kv.anti_entropy.refused", "reason", "undecryptable", NULL) \
	X(KV_SYNC_REFUSED_SEALED, COUNTER, "kv.anti_entropy.refused", "reason", "no_keyring", NULL) \
	X(KV_SYNC_BUDGET_CLOSED, COUNTER, "kv.anti_entropy.budget_closed", NULL, NULL, "Sync connections closed because all sync buffers together would pass their 16 MiB budget") \
	X(KV_VERSIONS_AHEAD, COUNTER, "kv.versions_ahead", NULL, NULL, "Remote versions refused for being further ahead of this agent's clock than kv_max_clock_offset") \
	X(KV_STORE_BAD_READS, COUNTER, "kv.store.bad_reads", NULL, NULL, "Reads and scans that met a stored record failing its checksum (shown as absent)") \
	X(KV_STORE_BAD_RECORDS, GAUGE, "kv.store.bad_records", NULL, NULL, "Stored records failing their checksum at the last full scan (open, rebuild)") \
	X(KV_WAL_DROPPED, GAUGE, "kv.wal.dropped_records", NULL, NULL, "Records of the write-ahead log's damaged tail dropped at start") \
	X(KV_COMMIT_FAILURES, COUNTER, "kv.store.failures", "op", "commit", "Failed log appends (writes answered with an error) and failed checkpoints") \
	X(KV_CHECKPOINT_FAILURES, COUNTER, "kv.store.failures", "op", "checkpoint", NULL) \
	X(KV_STORE_FAILING, GAUGE, "kv.store.failing", NULL, NULL, "1 while the last commit or checkpoint failed (a full disk), 0 once one succeeds") \
	/* DNS and the local services/checks (agent/api_catalog.c) */                         \
	X(DNS_NOERROR, COUNTER, "dns.queries", "rcode", "noerror", "DNS queries answered, by response code; dropped: malformed or unanswerable, no response sent") \
	X(DNS_NXDOMAIN, COUNTER, "dns.queries", "rcode", "nxdomain", NULL)                  \
	X(DNS_REFUSED, COUNTER, "dns.queries", "rcode", "refused", NULL)                    \
	X(DNS_FORMERR, COUNTER, "dns.queries", "rcode", "formerr", NULL)                    \
	X(DNS_DROPPED, COUNTER, "dns.queries", "rcode", "dropped", NULL)                    \
	X(DNS_TRUNCATED, COUNTER, "dns.truncated", NULL, NULL, "UDP answers that did not fit and were truncated (TC bit)") \
	X(CATALOG_RESYNC_SCAN, COUNTER, "catalog.resyncs", "kind", "scan", "Times the catalog caught up with the KV store: by a scan of every node's record, or by re-reading only the records commits changed") \
	X(CATALOG_RESYNC_CHANGED, COUNTER, "catalog.resyncs", "kind", "changed", NULL) \
	X(CATALOG_REREAD, COUNTER, "catalog.records_reread", NULL, NULL, "Node records re-read by the catalog's resyncs of changed records") \
	X(SERVICES, GAUGE, "agent.services", NULL, NULL, "Services registered on this agent") \
	X(CHECKS_PASSING, GAUGE, "agent.checks", "status", "passing", "Health checks run by this agent, by status") \
	X(CHECKS_WARNING, GAUGE, "agent.checks", "status", "warning", NULL)                  \
	X(CHECKS_CRITICAL, GAUGE, "agent.checks", "status", "critical", NULL)                \
	/* HTTP API */                                                                       \
	X(HTTP_REFUSED_PER_CLIENT, COUNTER, "http.connections.refused", "reason", "per_client", "HTTP connections refused at accept: over limits.http_max_conns_per_client (429), over the agent's 4096 (503)") \
	X(HTTP_REFUSED_MAX_CONNS, COUNTER, "http.connections.refused", "reason", "max_conns", NULL) \
	X(HTTP_REQUESTS, COUNTER, "http.requests", "code", NULL, "HTTP API responses, by status code") \
	X(HTTP_LATENCY, SAMPLE, "http.request_ms", NULL, NULL, "Time from a complete HTTP request to the start of its response, ms (blocking queries included)") \
	/* the agent process */                                                              \
	X(LOOP_BUSY, SAMPLE, "runtime.loop.busy_ms", NULL, NULL, "Time the event loop spent running callbacks per iteration, ms") \
	X(LOOP_LAG, SAMPLE, "runtime.loop.lag_ms", NULL, NULL, "How late a 1 s timer fired, ms (loop latency)") \
	X(RSS, GAUGE, "runtime.resident_memory_bytes", NULL, NULL, "Resident set size of the agent process") \
	X(UPTIME, GAUGE, "runtime.uptime_seconds", NULL, NULL, "Seconds since the agent started")
/* clang-format on */

/* an X-macro expansion is not a statement clang-format can indent */
/* clang-format off */
enum metrics_id {
#define METRICS_X_ENUM(id, kind, name, lk, lv, help) METRIC_##id,
	METRICS_TABLE(METRICS_X_ENUM)
#undef METRICS_X_ENUM
	METRICS__COUNT
};
/* clang-format on */

#define METRICS_DYN_MAX 128  /* dynamic-label series, all rows together */
#define METRICS_LABEL_MAX 48 /* bytes of a dynamic label value, NUL included */
#define METRICS_MAX_COLLECTORS 16

/* ---- bumping (hot path) ---- */

/* counter += 1 / counter += v / one sample observation v. */
void metrics_inc(enum metrics_id id);
void metrics_add(enum metrics_id id, double v);
void metrics_sample(enum metrics_id id, double v);
/* gauge = v. */
void metrics_set_gauge(enum metrics_id id, double v);
/* Copies a total a module keeps itself: Count = count, Sum = sum (for a
 * plain event counter pass the same number twice).  Min/Max report the mean. */
void metrics_set_counter(enum metrics_id id, uint64_t count, double sum);
/* The same for the series of a dynamic row with label value `label`. */
void metrics_inc_label(enum metrics_id id, const char *label);
void metrics_add_label(enum metrics_id id, const char *label, double v);
void metrics_set_gauge_label(enum metrics_id id, const char *label, double v);

/* ---- collectors ---- */

/* fn(ud) runs in metrics_collect(), before each rendering; it copies a
 * module's own totals in.  Returns 0, or -1 when METRICS_MAX_COLLECTORS are
 * registered. */
int metrics_collector_add(void (*fn)(void *ud), void *ud);
/* Removes the (fn, ud) pair; unknown pairs are ignored. */
void metrics_collector_remove(void (*fn)(void *ud), void *ud);
void metrics_collect(void);

/* ---- reading and rendering ---- */

/* Zeroes every value and forgets dynamic series (tests; agent start). */
void metrics_reset(void);
/* Sum of a counter/sample, value of a gauge (base row, no dynamic series). */
double metrics_value(enum metrics_id id);
/* Sum of a dynamic series; 0 if it does not exist. */
double metrics_value_label(enum metrics_id id, const char *label);

/* Consul's JSON: {"Timestamp","Gauges","Points","Counters","Samples"};
 * unix_ms is the timestamp shown.  Compact unless pretty.  malloc'd. */
char *metrics_render_json(int64_t unix_ms, int pretty);
/* Prometheus text format 0.0.4 (serve it as METRICS_PROMETHEUS_TYPE).  malloc'd. */
char *metrics_render_prometheus(void);
#define METRICS_PROMETHEUS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Prometheus name of a dotted name: "rumor_" + name with every character
 * outside [a-zA-Z0-9_] turned into '_', and a final "_ms" as "_seconds".
 * snprintf-style return. */
size_t metrics_prom_name(char *out, size_t outlen, const char *dotted);

#endif
