/*
 * agent/api_snapshot.h — Consul's /v1/snapshot on the server tier: GET
 * saves the store as a snapshot file, PUT restores one through Raft.
 *
 * Owns: the snapshot file format and its checks, sans-I/O —
 *   "RUMORSNAP" (9 bytes), u8 version (1), u64 Raft applied index,
 *   u64 time saved (ms since the epoch), u32 body_len, a RECORDS body
 *   (kv/repl.h: u32 n, n x (u16 key_len, key, record)) of every live
 *   record, u8[32] SHA-256 of every byte before it
 * — and the HTTP handler. Not Consul's format (a gzipped tar of Raft's own
 * snapshot): a rumor snapshot restores only into rumor. A restore writes
 * every record as a new version through one Raft entry, so every replica,
 * clients included, converges on it by the usual rule (docs/SERVERS.md
 * "Backups"). Without servers both answer 501.
 */
#ifndef RUMOR_AGENT_API_SNAPSHOT_H
#define RUMOR_AGENT_API_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/server.h"

struct agent;
struct http_conn;
struct http_request;

#define SNAPSHOT_MAGIC "RUMORSNAP"
#define SNAPSHOT_HEADER_LEN (9 + 1 + 8 + 8 + 4)
#define SNAPSHOT_TRAILER_LEN 32
#define API_SNAPSHOT_MAX_BYTES (SERVER_SNAPSHOT_MAX + SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN)

struct snapshot_info {
	uint64_t index, saved_ms;
	uint32_t records;
	const uint8_t *body; /* the RECORDS body, in the file's bytes */
	size_t body_len;
};

/* A file from a RECORDS body (malloc'd; *len set). */
uint8_t *snapshot_encode(uint64_t index, uint64_t saved_ms, const uint8_t *body, size_t body_len,
                         size_t *len);
/* Check a file: magic, version, lengths, checksum, and that every record
 * decodes. 0 with *out pointing into p, or -1 with err. */
int snapshot_decode(const uint8_t *p, size_t n, struct snapshot_info *out, char *err,
                    size_t errlen);

void api_snapshot_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                         const char *rest);

#endif
