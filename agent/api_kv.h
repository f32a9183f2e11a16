/*
 * agent/api_kv.h — the Consul-compatible /v1/kv and /v1/txn endpoints over
 * the KV engine (kv/kv.h).
 *
 * Owns: request parsing (query flags, limits, key checks), the JSON shapes
 * Consul answers with, blocking queries (a parked request holds a kv_watch
 * and is answered when it fires or when its client goes away), and the
 * 501 answer for sessions (?acquire/?release), which rumor does not have.
 * Keys under KV_RESERVED_PREFIX are invisible here.
 */
#ifndef RUMOR_AGENT_API_KV_H
#define RUMOR_AGENT_API_KV_H

struct agent;
struct http_conn;
struct http_request;

/* GET/PUT/DELETE /v1/kv/<rest> */
void api_kv_handle(struct agent *a, struct http_conn *c, const struct http_request *req,
                   const char *rest);
/* PUT/POST /v1/txn */
void api_kv_txn(struct agent *a, struct http_conn *c, const struct http_request *req,
                const char *rest);

#endif
