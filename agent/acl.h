/*
 * acl — who may call which HTTP endpoint: two optional shared-secret tokens.
 *
 * Owns: the decision for one request. The tokens themselves live in the
 * agent's configuration (-acl-token / acl_token and -acl-read-token /
 * acl_read_token); this module only reads them.
 *
 * Classes of requests:
 *   - write: any PUT, POST or DELETE, and every request (any method) to
 *     /v1/agent/join/, /v1/agent/leave, /v1/agent/force-leave/ and
 *     /v1/operator/keyring — membership and keys change state even when a
 *     client uses GET for them.
 *   - read: everything else (GET, HEAD).
 *
 * Rules, in order:
 *   1. a write needs the write token when one is set;
 *   2. a read needs the read token or the write token when a read token is
 *      set (the write token grants everything);
 *   3. with no write token, the API is open only where it cannot be reached
 *      from other hosts: when the HTTP listener is on a loopback address, or
 *      the client connects from a loopback address. A write from another
 *      host to a non-loopback listener without a write token configured is
 *      refused; the agent warns loudly at start in that configuration.
 * The token comes from the X-Consul-Token header, an "Authorization: Bearer"
 * header, or the ?token= query parameter, in that order, as Consul takes
 * it. Tokens are compared in constant time (sodium_memcmp over a fixed
 * length, so neither content nor length leaks through timing).
 *
 * A refused request is answered 403 "Permission denied", as Consul does.
 *
 * Error convention: pure functions; no allocation, no I/O.
 */
#ifndef RUMOR_AGENT_ACL_H
#define RUMOR_AGENT_ACL_H

#include <stdbool.h>

struct http_request;

#define ACL_TOKEN_MAX 256 /* longer tokens are refused by config */

enum acl_class { ACL_READ = 0, ACL_WRITE = 1 };

/* The class of a request with this method and (decoded) path. */
enum acl_class acl_classify(const char *method, const char *path);

/* The token the request presents, or NULL. Owned by the request. */
const char *acl_request_token(const struct http_request *req);

/* True if `a` equals `b` (either may be NULL, which matches nothing);
 * constant time in the contents and the lengths up to ACL_TOKEN_MAX. */
bool acl_token_equal(const char *a, const char *b);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z, with or without a
 * ":port" / "[...]:port" suffix. */
bool acl_addr_is_loopback(const char *addr);

/* The decision for one request. write_token / read_token: configured
 * tokens, NULL or "" when unset. listen_loopback: the HTTP listener is on
 * loopback. remote: the client's "ip:port". presented: acl_request_token().
 * Returns true if the request may proceed. */
bool acl_allow(enum acl_class cls, const char *write_token, const char *read_token,
               bool listen_loopback, const char *remote, const char *presented);

#endif
