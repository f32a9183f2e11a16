/*
 * kv/limits.h — the sizes every KV module agrees on: keys, values, writer
 * names, transactions. Here, below the engine, so that the protocol and
 * store code can check them without including the engine's header.
 */
#ifndef RUMOR_KV_LIMITS_H
#define RUMOR_KV_LIMITS_H

#define KV_KEY_MAX 480              /* bytes (LMDB keys are at most 511) */
#define KV_VALUE_MAX (512u * 1024u) /* Consul's kv_max_value_size */
#define KV_TXN_MAX_OPS 64           /* Consul's txn limit */
#define KV_NODE_MAX 128             /* writer node name, bytes */
#define KV_SESSION_MAX 64           /* a lock holder's session ID, bytes */
/* A session is a record under this prefix named by its ID; a lock can be
 * acquired only with a session whose record exists (kv/engine.c). */
#define KV_SESSION_PREFIX "_rumor/session/"

#endif
