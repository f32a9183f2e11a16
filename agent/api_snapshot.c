/*
 * agent/api_snapshot.c — see api_snapshot.h.
 */
#include "agent/api_snapshot.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/api_reply.h"
#include "agent/api_server.h"
#include "agent/env.h"
#include "agent/http/http.h"
#include "kv/repl.h"
#include "lib/cursor.h"
#include "lib/xalloc.h"

uint8_t *snapshot_encode(uint64_t index, uint64_t saved_ms, const uint8_t *body, size_t body_len,
                         size_t *len)
{
	*len = SNAPSHOT_HEADER_LEN + body_len + SNAPSHOT_TRAILER_LEN;
	uint8_t *p = xmalloc(*len);
	memcpy(p, SNAPSHOT_MAGIC, 9);
	p[9] = 1;
	be64_put(p + 10, index);
	be64_put(p + 18, saved_ms);
	be32_put(p + 26, (uint32_t)body_len);
	if (body_len)
		memcpy(p + SNAPSHOT_HEADER_LEN, body, body_len);
	crypto_hash_sha256(p + SNAPSHOT_HEADER_LEN + body_len, p, SNAPSHOT_HEADER_LEN + body_len);
	return p;
}

static int count_rec(void *ctx, const char *key, size_t key_len, const struct kv_rec *r)
{
	(void)key, (void)key_len, (void)r;
	(*(uint32_t *)ctx)++;
	return 0;
}

int snapshot_decode(const uint8_t *p, size_t n, struct snapshot_info *out, char *err, size_t errlen)
{
	if (n < SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN || memcmp(p, SNAPSHOT_MAGIC, 9) != 0) {
		snprintf(err, errlen, "not a rumor snapshot (no RUMORSNAP header)");
		return -1;
	}
	if (p[9] != 1) {
		snprintf(err, errlen, "snapshot format version %u; this agent reads 1", p[9]);
		return -1;
	}
	out->index = be64_get(p + 10);
	out->saved_ms = be64_get(p + 18);
	out->body_len = be32_get(p + 26);
	if (out->body_len != n - SNAPSHOT_HEADER_LEN - SNAPSHOT_TRAILER_LEN) {
		snprintf(err, errlen,
		         "snapshot is %zu bytes, its header says %zu: truncated or padded", n,
		         out->body_len + SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN);
		return -1;
	}
	uint8_t sum[32];
	crypto_hash_sha256(sum, p, SNAPSHOT_HEADER_LEN + out->body_len);
	if (sodium_memcmp(sum, p + SNAPSHOT_HEADER_LEN + out->body_len, 32) != 0) {
		snprintf(err, errlen, "snapshot checksum mismatch: the file is damaged");
		return -1;
	}
	out->body = p + SNAPSHOT_HEADER_LEN;
	out->records = 0;
	char e2[200];
	if (kv_records_decode(out->body, out->body_len, count_rec, &out->records, e2, sizeof(e2)) <
	    0) {
		snprintf(err, errlen, "snapshot records do not decode: %s", e2);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- save */

struct save {
	struct agent *a;
	struct http_conn *c;
	bool gone;
};

static void save_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct save *)ud)->gone = true;
}

static void saved(void *ud, int status, uint64_t index, const uint8_t *body, size_t len)
{
	struct save *q = ud;
	if (!q->gone) {
		http_conn_on_close(q->c, NULL, NULL);
		if (status == 0) {
			size_t n;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint8_t *f = snapshot_encode(
			        index, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
			        body, len, &n);
			char idx[24];
			snprintf(idx, sizeof(idx), "%" PRIu64, index ? index : 1);
			http_add_header(q->c, "X-Consul-Index", idx);
			api_server_headers(q->a, q->c);
			http_respond(q->c, 200, "application/octet-stream", f, n);
			free(f);
		} else if (status == -2) {
			api_reply_text(q->c, 500,
			               "the store is larger than one snapshot can carry (48 MiB)");
		} else {
			api_reply_text(q->c, 500, "No cluster leader");
		}
	}
	free(q);
}

/* --------------------------------------------------------- restore */

struct restore {
	struct http_conn *c;
};

static void restore_closed(struct http_conn *c, void *ud)
{
	(void)c;
	((struct restore *)ud)->c = NULL;
}

static void restored(void *ud, enum kv_result r, int failed_op)
{
	(void)failed_op;
	struct restore *q = ud;
	if (q->c != NULL) {
		http_conn_on_close(q->c, NULL, NULL);
		if (r == KV_OK)
			http_respond(q->c, 200, "text/plain", "", 0);
		else if (r == KV_NO_LEADER)
			api_reply_text(q->c, 500, "No cluster leader");
		else if (r == KV_UNKNOWN)
			api_reply_text(q->c, 500,
			               "rpc error: the leader was lost: the restore may or may not "
			               "have been applied");
		else
			api_reply_text(q->c, 500, "the restore was not applied (storage error)");
	}
	free(q);
}

static void h_restore(struct agent *a, struct http_conn *c, const struct http_request *req)
{
	struct snapshot_info si;
	char err[300];
	if (snapshot_decode((const uint8_t *)req->body, req->body_len, &si, err, sizeof(err)) < 0) {
		char msg[400];
		snprintf(msg, sizeof(msg), "Error restoring snapshot: %s", err);
		api_reply_text(c, 400, msg);
		return;
	}
	struct restore *q = xcalloc(1, sizeof(*q));
	q->c = c;
	http_conn_on_close(c, restore_closed, q);
	if (server_restore(a->server, si.body, si.body_len, restored, q, err, sizeof(err)) < 0) {
		http_conn_on_close(c, NULL, NULL);
		free(q);
		api_reply_text(c, 500, err);
	}
}

void api_snapshot_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                         const char *rest)
{
	(void)rest;
	if (a->kv == NULL || !server_cp(a->server)) {
		api_server_headers(a, c);
		api_reply_text(c, 501, "snapshots need servers (-server): this cluster has none");
		return;
	}
	if (strcmp(req->method, "PUT") == 0) {
		h_restore(a, c, req);
		return;
	}
	struct save *q = xcalloc(1, sizeof(*q));
	q->a = a;
	q->c = c;
	http_conn_on_close(c, save_closed, q);
	if (server_snapshot(a->server, saved, q) < 0) {
		http_conn_on_close(c, NULL, NULL);
		free(q);
		api_reply_text(c, 500, "No cluster leader");
	}
}
