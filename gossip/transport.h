/*
 * gossip/transport.h — drives the SWIM core on libev with real sockets.
 *
 * Owns: the gossip UDP socket and TCP listener (same port, memberlist's
 * layout), the TCP streams (push-pull in both directions, join, fallback
 * pings, user messages), the one libev timer that wakes the core at its next
 * deadline, the monotonic clock and libsodium's RNG handed to the core, and
 * the swim instance itself (created here, freed here).
 *
 * Each TCP stream has a deadline (tcp_timeout, memberlist's TCPTimeout) and
 * a size cap (memberlist's 20 MiB push state limit); a stream that breaks
 * either is closed and, for an outgoing one, reported as failed. Memory is
 * bounded for all streams together (GOSSIP_STREAM_BYTES_MAX, and at most
 * GOSSIP_STREAMS_IN_MAX incoming at once), and a large push-pull state is
 * merged GOSSIP_MERGE_SLICE members per loop turn (see transport.c).
 *
 * Error convention: functions return 0 or -1 and write a message to err.
 */
#ifndef RUMOR_GOSSIP_TRANSPORT_H
#define RUMOR_GOSSIP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/swim.h"

struct ev_loop;
struct gossip_transport;
struct keyring;

/* swim_config.merge_slice when the caller leaves it 0: a push-pull state
 * of up to 512 members (a normal cluster's) merges at once, a larger one
 * at most 512 members per loop turn. */
#define GOSSIP_MERGE_SLICE 512
/* What one turn's slice should cost. The cost of a member depends on the
 * layers above (the agent's join handling is O(members) per join today:
 * 3 us a member at 500 members, 220 us at 34,000), so the driver measures
 * each step and halves the slice when it ran over this, doubles it (up to
 * GOSSIP_MERGE_SLICE) when it took under half: the loop is never held
 * longer than about this between polls, whatever a member costs. */
#define GOSSIP_MERGE_STEP_US 5000
/* Incoming streams open at once; one more is accepted and closed. A stream
 * lives for one exchange (milliseconds on a LAN): 128 is far above what a
 * 1,000-agent cluster's push-pulls, joins and TCP pings need together. */
#define GOSSIP_STREAMS_IN_MAX 128
/* Read buffers and replies of all streams together: three streams of the
 * largest state memberlist sends (20 MiB) can be in flight at once. */
#define GOSSIP_STREAM_BYTES_MAX (64u * 1024 * 1024)

struct gossip_transport_config {
	const char *bind_addr;    /* "0.0.0.0", "127.0.0.1", "::" */
	uint16_t port;            /* 0: pick one (tests) */
	struct ml_addr advertise; /* port 0: use the bound port */
	int64_t tcp_timeout_ms;
	struct swim_config swim; /* addr is filled from advertise */
	/* membership events and user messages, passed through from the core */
	void (*on_event)(void *ud, enum swim_event_type type, const struct swim_member *m);
	void (*on_user_msg)(void *ud, const uint8_t *p, size_t len);
	/* optional push-pull user state hooks (see struct swim_io) */
	uint8_t *(*local_state)(void *ud, bool join, size_t *len);
	void (*merge_state)(void *ud, const uint8_t *p, size_t len, bool join);
	/* optional: one line about an incoming stream that was refused or
	 * failed ("memberlist: ..."), at most one a second (the next one says
	 * how many were left out) */
	void (*on_warn)(void *ud, const char *msg);
	void *ud;
	/* Gossip encryption: borrowed, may be NULL or empty (plain text). The
	 * caller may change its keys at run time. With keys, every datagram and
	 * stream is encrypted with the primary key; what no key opens is
	 * dropped and counted (decrypt_failures). */
	const struct keyring *keyring;
};

struct gossip_transport *gossip_transport_new(struct ev_loop *loop,
                                              const struct gossip_transport_config *cfg, char *err,
                                              size_t errlen);
/* Closes sockets and streams (pending joins are reported failed) and frees the core. */
void gossip_transport_free(struct gossip_transport *t);

struct swim *gossip_transport_swim(struct gossip_transport *t);
/* The monotonic clock the core runs on (ms). */
int64_t gossip_now_ms(void);
/* The port the gossip sockets are bound to. */
uint16_t gossip_transport_port(const struct gossip_transport *t);

/*
 * Join: a push-pull with join=true to addr ("host", "host:port"; port
 * defaults to default_port). cb is called exactly once, from the loop, with
 * ok and an error message when not ok. Returns -1 (and does not call cb)
 * only when addr cannot be parsed.
 */
typedef void (*gossip_join_cb)(void *ud, bool ok, const char *error);
int gossip_transport_join(struct gossip_transport *t, const char *addr, uint16_t default_port,
                          gossip_join_cb cb, void *ud, char *err, size_t errlen);

/* After changing the core from outside (leave, set_meta): run it now. */
void gossip_transport_kick(struct gossip_transport *t);

struct gossip_transport_stats {
	uint64_t streams_in, streams_out, stream_errors, udp_errors;
	uint64_t decrypt_failures; /* datagrams and streams no key opened */
	/* of stream_errors: closed for a limit (too many incoming streams, the
	 * memory budget, the size cap, or refused by the core: push-pull
	 * member cap, merge queue full) */
	uint64_t streams_refused;
	uint64_t late_ticks; /* ticks that came late and read the socket first */
	uint64_t udp_holds;  /* times the socket was left to the ticks (crowded) */
	uint64_t udp_held;   /* 1 while it is (udp_cb in transport.c), else 0 */
};
const struct gossip_transport_stats *gossip_transport_stats(const struct gossip_transport *t);

#endif
