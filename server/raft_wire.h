/*
 * server/raft_wire.h — the bytes of libraft's RPC messages between rumor
 * servers, and of a Raft configuration, sans-I/O.
 *
 * Owns: one compact binary form for each struct raft_message type
 * (AppendEntries with its batch of entries, its result, RequestVote, its
 * result, InstallSnapshot, TimeoutNow) and for struct raft_configuration
 * (used inside InstallSnapshot and by server/raft_store.c for a snapshot's
 * configuration). It holds no state and does no I/O: server/raft_io.c
 * encodes what libraft sends and decodes what the transport delivers.
 *
 * Layout (every integer an unsigned LEB128 varint, minimal: a decoder
 * refuses a padded one, so a message that decodes re-encodes to exactly the
 * same bytes):
 *   message := version(1 byte, RAFT_WIRE_VERSION) type(1 byte, libraft's
 *              RAFT_IO_* code) body
 *   APPEND_ENTRIES        term prev_log_index prev_log_term leader_commit n
 *                         n x (term type(1 byte: 1..3) len) then the n
 *                         payloads back to back
 *   APPEND_ENTRIES_RESULT term rejected last_log_index
 *   REQUEST_VOTE          term candidate_id last_log_index last_log_term
 *                         flags(1 byte: 1 disrupt_leader, 2 pre_vote)
 *   REQUEST_VOTE_RESULT   term vote_granted(1 byte: 0/1) pre_vote(1 byte: 0..2,
 *                         raft_tribool)
 *   INSTALL_SNAPSHOT      term last_index last_term conf_index conf len data
 *   TIMEOUT_NOW           term last_log_index last_log_term
 *   conf := n n x (id(!= 0) role(1 byte: 0..2) addr_len(1..255) addr)
 * The sender's id and address are not in the message: the transport knows
 * them from its authenticated connection and passes them to
 * raft_io_deliver().
 *
 * Decoders are paranoid: every read is bounds-checked first, counts are
 * checked against the bytes that remain before anything is allocated, and
 * trailing bytes are an error. A failure names the field ("append_entries:
 * entry 3: len: runs past the end").
 *
 * Error convention: encoders return the number of bytes (0 when the message
 * cannot be encoded: unknown type, an address over RAFT_WIRE_MAX_ADDRESS);
 * decoders return 0, or -1 with a message in err.
 */
#ifndef RUMOR_SERVER_RAFT_WIRE_H
#define RUMOR_SERVER_RAFT_WIRE_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_WIRE_VERSION 1
/* Longest server address (a host:port fits many times over). */
#define RAFT_WIRE_MAX_ADDRESS 255
/* Most servers a configuration may name (Consul runs 3 or 5 voters). */
#define RAFT_WIRE_MAX_SERVERS 256

/* Bytes m encodes to, or 0 if it cannot be encoded. */
size_t raft_wire_size(const struct raft_message *m);
/* Encodes m into buf (cap >= raft_wire_size(m)); bytes written, or 0. */
size_t raft_wire_encode(const struct raft_message *m, uint8_t *buf, size_t cap);
/*
 * Decodes one whole message. On success *m holds memory from raft_malloc()
 * laid out as libraft's recv callback takes it over (AppendEntries: one
 * entries array and one batch holding every payload; InstallSnapshot: the
 * configuration and the data buffer); m->server_id and m->server_address
 * are left 0/NULL for the caller. Hand m to libraft, or release it with
 * raft_wire_message_release(). Returns 0, or -1 with err (nothing held).
 */
int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_message *m, char *err,
                     size_t errlen);
/* Frees what raft_wire_decode() allocated in m. */
void raft_wire_message_release(struct raft_message *m);

/* Bytes c encodes to, or 0 if it cannot be encoded. */
size_t raft_wire_conf_size(const struct raft_configuration *c);
/* Writes c at p (room for raft_wire_conf_size(c)); returns the end. */
uint8_t *raft_wire_conf_put(uint8_t *p, const struct raft_configuration *c);
/* Reads a configuration at *pos (advanced past it) into c, which must be
 * initialized and empty; 0, or -1 with err (c left empty). */
int raft_wire_conf_get(const uint8_t **pos, const uint8_t *end, struct raft_configuration *c,
                       char *err, size_t errlen);

#endif
