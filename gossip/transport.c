/*
 * gossip/transport.c — see transport.h.
 *
 * One struct stream per TCP connection. Outgoing streams are created by the
 * core (push_pull, tcp_ping) or by a join; they connect non-blocking, write
 * their request, then read until swim_stream_recv() says the reply is whole.
 * Incoming streams read until the request is whole, write the core's reply
 * (if any) and close. Every stream has a timer for its deadline.
 *
 * Memory. A peer decides how much we read, so every byte a stream holds is
 * bounded three ways: at most GOSSIP_STREAMS_IN_MAX incoming streams at
 * once (one more is accepted and closed at once), at most
 * ML_PUSH_STATE_MAX + 4 KiB read per stream (memberlist's limit), and at
 * most GOSSIP_STREAM_BYTES_MAX for the read buffers and replies of all
 * streams together (a stream that would go over is closed). A read buffer
 * is handed to the core once per readable event, with a swim_stream_scan
 * so that nothing is decoded twice; compressed and encrypted streams are
 * decompressed or decrypted once, when whole. Large push-pull states are
 * then merged by swim_merge_step(), one slice per turn of the loop (an
 * ev_check, with an ev_idle so that the loop polls without sleeping while
 * a merge waits): timers, datagrams and HTTP run between slices. The bound
 * is GOSSIP_STREAM_BYTES_MAX (64 MiB) for streams, plus the core's merge
 * queue (SWIM_MERGE_QUEUE_BYTES, 40 MiB), plus one decompression buffer of
 * at most ML_PUSH_STATE_MAX while a compressed stream is handled.
 */
#define _GNU_SOURCE
#include "gossip/transport.h"

#include "gossip/keyring.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STREAM_READ_CHUNK 65536
#define STREAM_IN_MAX (ML_PUSH_STATE_MAX + 4096) /* bytes one stream may send us */
#define WARN_INTERVAL_MS 1000                    /* at most one warning line a second */
#define GOSSIP_TICK_LATE_MS 20 /* a tick this late reads the socket first (tick_cb) */

static uint8_t *compress_state(uint8_t *msg, size_t *len);
static uint8_t *compress_reply(struct gossip_transport *t, uint8_t *msg, size_t *len,
                               uint64_t stamp);

enum stream_kind { ST_IN, ST_PUSH_PULL, ST_JOIN, ST_PING };

struct stream {
	struct gossip_transport *t;
	enum stream_kind kind;
	int fd;
	struct ml_addr peer; /* outgoing streams */
	bool connected;
	ev_io io;
	ev_timer timer;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_off;
	size_t charged;               /* bytes of in and out counted in t->buf_bytes */
	struct swim_stream_scan scan; /* how far the core has read `in` */
	bool done_reading;            /* in: request handled, now flushing the reply */
	uint32_t ping_seq;
	gossip_join_cb join_cb;
	void *join_ud;
	struct stream *next, *prev;
};

/* Datagrams taken per recvmmsg: one system call per wake-up in the steady
 * state (a read loop pays a second recvfrom that returns EAGAIN). */
#define UDP_BATCH 4

struct gossip_transport {
	struct ev_loop *loop;
	struct swim *swim;
	int udp_fd, tcp_fd;
	uint16_t port;
	int64_t tcp_timeout_ms;
	ev_io udp_io, tcp_io;
	ev_timer tick;
	int64_t tick_due; /* gossip_now_ms() the tick timer was set for */
	/* the compressed form of the push-pull reply stamped zstamp (0: none),
	 * kept while the core reuses that reply (compress_reply) */
	uint8_t *zbuf;
	size_t zlen;
	uint64_t zstamp;
	int sched_fd;          /* /proc/self/schedstat, or -1 (sched_run_delay) */
	uint64_t run_delay_ns; /* its run_delay at the last tick */
	ev_check merge_check;  /* one swim_merge_step per loop turn ... */
	ev_idle merge_idle;    /* ... without sleeping in between */
	uint32_t merge_max;    /* members the next step may merge */
	uint32_t merge_slice;  /* ... at most (swim_config.merge_slice) */
	struct stream *streams;
	size_t streams_in;     /* incoming streams open */
	size_t buf_bytes;      /* read buffers and replies of all streams */
	int64_t warn_at;       /* when the last warning was logged */
	uint64_t warn_dropped; /* warnings not logged since (rate limit) */
	void (*on_warn)(void *ud, const char *msg);
	struct gossip_transport_stats stats;
	void (*on_event)(void *ud, enum swim_event_type type, const struct swim_member *m);
	void (*on_user_msg)(void *ud, const uint8_t *p, size_t len);
	uint8_t *(*local_state)(void *ud, bool join, size_t *len);
	void (*merge_state)(void *ud, const uint8_t *p, size_t len, bool join);
	void *ud;
	const struct keyring *keyring;
	uint64_t rng[2]; /* xorshift128+ state for the protocol's random choices */
	/* datagrams read by one recvmmsg; pages never written stay unmapped */
	uint8_t rxbuf[UDP_BATCH][ML_UDP_RECV_MAX];
	uint8_t cryptbuf[ML_UDP_RECV_MAX]; /* decrypted datagram being handled */
	uint8_t sealbuf[ML_UDP_RECV_MAX];  /* encrypted datagram being sent: separate,
					    * since handling a packet sends others */
};

static bool encrypting(const struct gossip_transport *t)
{
	return t->keyring != NULL && keyring_count(t->keyring) > 0;
}

int64_t gossip_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The probe RTT clock (swim_io.clock_us): loopback and LAN round trips are
 * well under the millisecond `now` the core runs on. */
static int64_t io_clock_us(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ----------------------------------------------------- address helpers */

static socklen_t to_sockaddr(const struct ml_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->len == 4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		memcpy(&sin->sin_addr, a->ip, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(a->port);
	memcpy(&sin6->sin6_addr, a->ip, 16);
	return sizeof(*sin6);
}

static void from_sockaddr(const struct sockaddr_storage *ss, struct ml_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		a->len = 4;
		memcpy(a->ip, &sin->sin_addr, 4);
		a->port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		/* v4-mapped back to 4 bytes, as Go's To4() */
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(&sin6->sin6_addr, mapped, 12) == 0) {
			a->len = 4;
			memcpy(a->ip, (const uint8_t *)&sin6->sin6_addr + 12, 4);
		} else {
			a->len = 16;
			memcpy(a->ip, &sin6->sin6_addr, 16);
		}
		a->port = ntohs(sin6->sin6_port);
	}
}

/* Resolve "host[:port]" (names through getaddrinfo, IPv4 first). */
static int resolve(const char *spec, uint16_t default_port, struct ml_addr *out, char *err,
                   size_t errlen)
{
	if (ml_addr_parse(spec, default_port, out) == 0)
		return 0;
	char host[256];
	uint16_t port = default_port;
	const char *colon = strrchr(spec, ':');
	size_t hlen = colon ? (size_t)(colon - spec) : strlen(spec);
	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "invalid address %s", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (colon) {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		if (*end != '\0' || p < 1 || p > 65535) {
			snprintf(err, errlen, "invalid port in address %s", spec);
			return -1;
		}
		port = (uint16_t)p;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "lookup %s: %s", host, gai_strerror(rc));
		return -1;
	}
	const struct addrinfo *pick = res;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(res);
	from_sockaddr(&ss, out);
	out->port = port;
	return 0;
}

/* strerror() in Go's lower-case style: "connection refused". */
static const char *errtext(int e, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* -------------------------------------------------------------- ticking */

/* Crowded: the socket is not watched, ticks read it (udp_cb). */
static bool udp_held(const struct gossip_transport *t)
{
	return t->udp_fd >= 0 && !ev_is_active(&t->udp_io);
}

static void schedule(struct gossip_transport *t)
{
	int64_t now = gossip_now_ms();
	int64_t next = swim_next_deadline(t->swim);
	if (next <= now)
		next = swim_tick(t->swim, now);
	double after = (double)(next - now) / 1000.0;
	if (after < 0.001)
		after = 0.001;
	double hold = (double)swim_gossip_every_ms(t->swim) / 1000.0;
	if (udp_held(t) && after > hold)
		after = hold; /* the longest datagrams wait unread: udp_cb */
	/* libev counts `after` from the loop's cached time, taken before this
	 * iteration's work: refresh it, or the timer fires early, swim_tick
	 * finds nothing due and the loop sleeps once more for the rest */
	ev_now_update(t->loop);
	ev_timer_stop(t->loop, &t->tick);
	t->tick_due = now + (int64_t)(after * 1000.0);
	ev_timer_set(&t->tick, after, 0.);
	ev_timer_start(t->loop, &t->tick);
}

static void udp_drain(struct gossip_transport *t);

/*
 * Nanoseconds this process has spent runnable but waiting for a CPU (the
 * kernel's schedstat run_delay), or 0 when the kernel does not say. One
 * pread of a file kept open, once per tick.
 */
static uint64_t sched_run_delay(struct gossip_transport *t)
{
	char buf[96];
	if (t->sched_fd < 0)
		return 0;
	ssize_t n = pread(t->sched_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strchr(buf, ' '); /* after sum_exec_runtime */
	return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

/*
 * A tick that comes late (the process did not get the CPU: 1,000 agents on
 * 2 cores, a stopped process) first reads the datagrams already queued: libev
 * runs an expired timer before the socket's callback of the same loop turn,
 * so a probe whose ack sat unread in our own socket was declared failed, and
 * a starved agent accused the members that had answered it (memberlist reads
 * its socket on its own goroutine, so an ack that arrived in time counts).
 * Bounded as udp_cb is; an ack still not there after that is a failure.
 * Every tick first tells the core how long the process waited for a CPU
 * since the last one (swim_note_run_delay: a starved agent does not accuse).
 */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct gossip_transport *t = w->data;
	uint64_t rd = sched_run_delay(t);
	if (rd > t->run_delay_ns) {
		swim_note_run_delay(t->swim, (int64_t)((rd - t->run_delay_ns) / 1000000));
		t->run_delay_ns = rd - (rd - t->run_delay_ns) % 1000000; /* keep the rest */
	}
	int64_t now = gossip_now_ms();
	bool late = now - t->tick_due > GOSSIP_TICK_LATE_MS && t->udp_fd >= 0;
	if (late) {
		t->stats.late_ticks++;
		swim_note_late(t->swim, now - t->tick_due);
	}
	if (late || udp_held(t)) {
		udp_drain(t);
		now = gossip_now_ms();
	}
	swim_tick(t->swim, now);
	if (udp_held(t) && !swim_crowded(t->swim)) {
		t->stats.udp_held = 0;
		ev_io_start(loop, &t->udp_io);
	}
	schedule(t);
}

void gossip_transport_kick(struct gossip_transport *t)
{
	swim_tick(t->swim, gossip_now_ms());
	schedule(t);
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One slice of a large push-pull merge per loop turn. The check watcher
 * runs after every poll, so I/O and timers are served between slices; the
 * idle watcher only keeps the poll from sleeping while work waits. The
 * slice adapts to what a member costs (see GOSSIP_MERGE_STEP_US). */
static void merge_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct gossip_transport *t = w->data;
	int64_t t0 = now_us();
	bool more = swim_merge_step(t->swim, gossip_now_ms(), t->merge_max);
	int64_t took = now_us() - t0;
	if (took > GOSSIP_MERGE_STEP_US && t->merge_max > 1)
		t->merge_max /= 2;
	else if (took < GOSSIP_MERGE_STEP_US / 2 && t->merge_max < t->merge_slice)
		t->merge_max =
		        t->merge_max * 2 < t->merge_slice ? t->merge_max * 2 : t->merge_slice;
	if (!more) {
		ev_check_stop(loop, &t->merge_check);
		ev_idle_stop(loop, &t->merge_idle);
	}
	schedule(t);
}

static void merge_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
}

static void merge_kick(struct gossip_transport *t)
{
	if (swim_merge_pending(t->swim) && !ev_is_active(&t->merge_check)) {
		ev_check_start(t->loop, &t->merge_check);
		ev_idle_start(t->loop, &t->merge_idle);
	}
}

/* Tell the agent about a refused or failed incoming stream, at most once
 * a second: whoever reaches the port can make these as fast as it likes,
 * and the log must not become the next thing it fills. */
static void warn(struct gossip_transport *t, const char *what, const struct ml_addr *peer)
{
	if (t->on_warn == NULL)
		return;
	int64_t now = gossip_now_ms();
	if (t->warn_at != 0 && now - t->warn_at < WARN_INTERVAL_MS) {
		t->warn_dropped++;
		return;
	}
	char msg[512], a[64], more[64] = "";
	if (t->warn_dropped > 0)
		snprintf(more, sizeof(more), " (and %llu more in %.1f s)",
		         (unsigned long long)t->warn_dropped, (double)(now - t->warn_at) / 1000.0);
	snprintf(msg, sizeof(msg), "memberlist: Failed to handle stream from %s: %s%s",
	         ml_addr_str(peer, a, sizeof(a)), what, more);
	t->warn_at = now;
	t->warn_dropped = 0;
	t->on_warn(t->ud, msg);
}

/* Move a stream's charge against the memory budget from its old size to
 * `bytes`; false (nothing changed) if that would go over the budget. */
static bool charge(struct gossip_transport *t, size_t *charged, size_t bytes)
{
	if (bytes > *charged && t->buf_bytes + (bytes - *charged) > GOSSIP_STREAM_BYTES_MAX)
		return false;
	t->buf_bytes = t->buf_bytes - *charged + bytes;
	*charged = bytes;
	return true;
}

/* ---------------------------------------------------------------- UDP */

static void udp_packet(struct gossip_transport *t, const struct sockaddr_storage *ss,
                       const uint8_t *p, size_t n)
{
	struct ml_addr from;
	from_sockaddr(ss, &from);
	if (encrypting(t)) {
		int pl = keyring_decrypt(t->keyring, p, n, NULL, 0, t->cryptbuf,
		                         sizeof(t->cryptbuf));
		if (pl < 0) {
			t->stats.decrypt_failures++;
			return;
		}
		p = t->cryptbuf;
		n = (size_t)pl;
	}
	swim_recv_packet(t->swim, gossip_now_ms(), &from, p, n);
}

static void udp_drain(struct gossip_transport *t)
{
	/* MSG_WAITFORONE: take what is queued, up to UDP_BATCH, in one call;
	 * fewer than UDP_BATCH means the queue is drained. Bounded: at most
	 * 16 batches per wake-up, then the loop serves its other watchers. */
	for (int round = 0; round < 16; round++) {
		struct mmsghdr mm[UDP_BATCH];
		struct iovec iov[UDP_BATCH];
		struct sockaddr_storage ss[UDP_BATCH];
		for (int i = 0; i < UDP_BATCH; i++) {
			iov[i].iov_base = t->rxbuf[i];
			iov[i].iov_len = sizeof(t->rxbuf[i]);
			memset(&mm[i], 0, sizeof(mm[i]));
			mm[i].msg_hdr.msg_name = &ss[i];
			mm[i].msg_hdr.msg_namelen = sizeof(ss[i]);
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		int got = recvmmsg(t->udp_fd, mm, UDP_BATCH, MSG_WAITFORONE, NULL);
		if (got < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				t->stats.udp_errors++;
			break;
		}
		for (int i = 0; i < got; i++) {
			if (mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
				t->stats.udp_errors++; /* larger than any memberlist packet */
				continue;
			}
			udp_packet(t, &ss[i], t->rxbuf[i], mm[i].msg_len);
		}
		if (got < UDP_BATCH)
			break;
	}
}

/*
 * Crowded: while more than 64 messages wait to be sent (a join storm, or
 * the storm of KV records the new agents write: swim_crowded), the socket
 * is not watched; each tick reads what came since the last one, and ticks
 * come at least every gossip round (swim_gossip_every_ms: 0.2 s, or 0.4 s
 * while the agent is also starved of the CPU, when nothing else wakes it:
 * swim.c, squeezed). An agent in a storm of 1,000 received 10-15 datagrams
 * a second and woke for each, on a machine where a wake-up of a process
 * among 1,000 costs ~100 us before any work; read at its ticks, it woke 5-8
 * times a second, and 2-3 times once squeezed. A ping then waits up to one
 * round for its ack (a squeezed prober's timeout is stretched to match, and
 * a prober reads its socket at the tick that would time the probe out), and
 * a crowded node feeds no RTT to its coordinates (swim.c, probe_rtt). The
 * socket is watched again at the first tick that finds the queue short.
 */
static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gossip_transport *t = w->data;
	udp_drain(t);
	if (swim_crowded(t->swim)) {
		ev_io_stop(loop, &t->udp_io);
		t->stats.udp_holds++;
		t->stats.udp_held = 1;
	}
	schedule(t);
}

static void io_send(void *ctx, const struct ml_addr *to, const uint8_t *pkt, size_t len)
{
	struct gossip_transport *t = ctx;
	struct sockaddr_storage ss;
	socklen_t sl = to_sockaddr(to, &ss);
	if (t->udp_fd < 0)
		return;
	if (encrypting(t)) {
		int n = keyring_encrypt(t->keyring, pkt, len, NULL, 0, t->sealbuf,
		                        sizeof(t->sealbuf));
		if (n < 0) {
			t->stats.udp_errors++;
			return;
		}
		pkt = t->sealbuf;
		len = (size_t)n;
	}
	if (sendto(t->udp_fd, pkt, len, 0, (struct sockaddr *)&ss, sl) < 0)
		t->stats.udp_errors++;
}

/* The protocol's random choices (probe order, gossip and indirect-probe
 * peers, stagger) need no cryptographic strength, as memberlist's math/rand
 * does not: xorshift128+ seeded once from the kernel, instead of a
 * getrandom system call per draw. Keys and nonces still come from
 * libsodium. */
static uint32_t io_rand32(void *ctx)
{
	struct gossip_transport *t = ctx;
	uint64_t a = t->rng[0];
	const uint64_t b = t->rng[1];
	t->rng[0] = b;
	a ^= a << 23;
	t->rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
	return (uint32_t)((t->rng[1] + b) >> 32);
}

/* ------------------------------------------------------------- streams */

static void stream_close(struct stream *st, bool ok, const char *why)
{
	struct gossip_transport *t = st->t;
	ev_io_stop(t->loop, &st->io);
	ev_timer_stop(t->loop, &st->timer);
	if (st->fd >= 0)
		close(st->fd);
	if (!ok)
		t->stats.stream_errors++;
	if (st->kind == ST_IN) {
		t->streams_in--;
		if (!ok)
			warn(t, why, &st->peer);
	}
	t->buf_bytes -= st->charged;
	if (st->kind == ST_PING)
		swim_tcp_ping_done(t->swim, gossip_now_ms(), st->ping_seq, ok);
	if (st->kind == ST_JOIN && st->join_cb != NULL)
		st->join_cb(st->join_ud, ok, ok ? NULL : why);
	if (st->prev)
		st->prev->next = st->next;
	else
		t->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	free(st->in);
	free(st->out);
	free(st);
	schedule(t);
}

static void stream_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stream *st = w->data;
	char why[160], a[64];
	snprintf(why, sizeof(why), "%s %s: i/o timeout", st->connected ? "read tcp" : "dial tcp",
	         ml_addr_str(&st->peer, a, sizeof(a)));
	stream_close(st, false, why);
}

/* Close a stream for breaking a limit: counted apart from other errors. */
static void stream_refuse(struct stream *st, const char *why)
{
	st->t->stats.streams_refused++;
	stream_close(st, false, why);
}

/* Handle what has been read; returns false if the stream was closed. */
static bool stream_consume(struct stream *st)
{
	struct gossip_transport *t = st->t;
	struct swim_stream_result res;
	bool initiator = st->kind != ST_IN;
	const uint8_t *data = st->in;
	size_t dlen = st->in_len;
	uint8_t *plain = NULL;
	if (encrypting(t)) {
		size_t used;
		int d = keyring_decrypt_stream(t->keyring, st->in, st->in_len, &plain, &dlen,
		                               &used);
		if (d == ML_AGAIN)
			return true;
		if (d == ML_BAD) {
			t->stats.decrypt_failures++;
			stream_close(st, false,
			             st->in[0] == KEYRING_ENCRYPT_MSG
			                     ? "No installed keys could decrypt the message"
			                     : "Encryption is configured but remote state is not "
			                       "encrypted");
			return false;
		}
		data = plain;
	}
	memset(&res, 0, sizeof(res));
	uint64_t refused = swim_stats(t->swim)->push_pulls_refused;
	/* a decrypted message is whole and new each time: no scan */
	int rc = swim_stream_recv_scan(t->swim, gossip_now_ms(), data, dlen, initiator,
	                               plain == NULL ? &st->scan : NULL, &res);
	free(plain);
	if (swim_stats(t->swim)->push_pulls_refused != refused)
		t->stats.streams_refused++;
	if (rc == ML_OK)
		merge_kick(t);
	if (rc == ML_AGAIN && plain != NULL) {
		free(res.reply);
		stream_close(st, false, "encrypted stream message is incomplete");
		return false;
	}
	if (rc == ML_AGAIN)
		return true;
	if (rc == ML_BAD) {
		free(res.reply);
		stream_close(st, false, res.error);
		return false;
	}
	if (st->kind == ST_IN) {
		if (res.reply != NULL && res.type == ML_PUSH_PULL)
			res.reply = compress_reply(t, res.reply, &res.reply_len, res.reply_stamp);
		if (res.reply != NULL && encrypting(t)) {
			uint8_t *sealed;
			size_t slen;
			int e = keyring_encrypt_stream(t->keyring, res.reply, res.reply_len,
			                               &sealed, &slen);
			free(res.reply);
			res.reply = NULL;
			if (e < 0) {
				stream_close(st, false, "cannot encrypt reply");
				return false;
			}
			res.reply = sealed;
			res.reply_len = slen;
		}
		if (res.reply != NULL && !charge(t, &st->charged, st->in_cap + res.reply_len)) {
			free(res.reply);
			stream_refuse(st, "reply over the gossip streams' memory budget");
			return false;
		}
		if (res.reply != NULL) {
			st->out = res.reply;
			st->out_len = res.reply_len;
			st->out_off = 0;
			st->done_reading = true;
			ev_io_stop(t->loop, &st->io);
			ev_io_set(&st->io, st->fd, EV_WRITE);
			ev_io_start(t->loop, &st->io);
			return true;
		}
		stream_close(st, true, NULL);
		return false;
	}
	free(res.reply);
	if (st->kind == ST_PING && res.type != ML_ACK) {
		stream_close(st, false, "tcp ping: unexpected reply");
		return false;
	}
	if ((st->kind == ST_JOIN || st->kind == ST_PUSH_PULL) && res.type != ML_PUSH_PULL) {
		stream_close(st, false, "push-pull: unexpected reply type");
		return false;
	}
	stream_close(st, true, NULL);
	return false;
}

static void stream_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream *st = w->data;
	if (revents & EV_WRITE) {
		if (!st->connected) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (soerr != 0) {
				char why[200], a[64], e[96];
				snprintf(why, sizeof(why), "dial tcp %s: connect: %s",
				         ml_addr_str(&st->peer, a, sizeof(a)),
				         errtext(soerr, e, sizeof(e)));
				stream_close(st, false, why);
				return;
			}
			st->connected = true;
		}
		while (st->out_off < st->out_len) {
			ssize_t n = write(st->fd, st->out + st->out_off, st->out_len - st->out_off);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return;
				char why[160];
				snprintf(why, sizeof(why), "write: %s", strerror(errno));
				stream_close(st, false, why);
				return;
			}
			st->out_off += (size_t)n;
		}
		if (st->kind == ST_IN && st->done_reading) {
			stream_close(st, true, NULL);
			return;
		}
		/* request written: now read the reply */
		ev_io_stop(loop, &st->io);
		ev_io_set(&st->io, st->fd, EV_READ);
		ev_io_start(loop, &st->io);
		return;
	}
	if (revents & EV_READ) {
		for (;;) {
			if (st->in_cap - st->in_len < STREAM_READ_CHUNK &&
			    st->in_cap < STREAM_IN_MAX) {
				size_t ncap = st->in_cap ? st->in_cap * 2 : STREAM_READ_CHUNK * 2;
				if (ncap > STREAM_IN_MAX)
					ncap = STREAM_IN_MAX;
				if (!charge(st->t, &st->charged, ncap)) {
					stream_refuse(st, "over the gossip streams' memory budget");
					return;
				}
				st->in = xrealloc(st->in, ncap);
				st->in_cap = ncap;
			}
			if (st->in_len == st->in_cap) {
				/* the most a peer may send, and not whole: refused */
				stream_refuse(st, "stream larger than the push state limit");
				return;
			}
			ssize_t n = read(st->fd, st->in + st->in_len, st->in_cap - st->in_len);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				char why[160];
				snprintf(why, sizeof(why), "read: %s", strerror(errno));
				stream_close(st, false, why);
				return;
			}
			if (n == 0) {
				/* EOF: what was read was handed over already, and
				 * was not whole */
				stream_close(st, false,
				             "connection closed by peer before a whole message");
				return;
			}
			st->in_len += (size_t)n;
			/* after every read, not once the socket is drained: a
			 * header to refuse is refused before the rest is read,
			 * and the scan makes each call cost only the new bytes */
			if (!stream_consume(st) || st->done_reading)
				return;
		}
	}
}

static struct stream *stream_new(struct gossip_transport *t, enum stream_kind kind, int fd,
                                 int64_t deadline_ms)
{
	struct stream *st = xcalloc(1, sizeof(*st));
	st->t = t;
	st->kind = kind;
	st->fd = fd;
	ev_io_init(&st->io, stream_io_cb, fd, kind == ST_IN ? EV_READ : EV_WRITE);
	st->io.data = st;
	double after = (double)deadline_ms / 1000.0;
	if (after < 0.001)
		after = 0.001;
	ev_timer_init(&st->timer, stream_timeout_cb, after, 0.);
	st->timer.data = st;
	ev_io_start(t->loop, &st->io);
	ev_timer_start(t->loop, &st->timer);
	st->next = t->streams;
	if (t->streams)
		t->streams->prev = st;
	t->streams = st;
	return st;
}

/* Start an outgoing stream that writes `req` (taken over) to `to`. */
static struct stream *stream_dial(struct gossip_transport *t, enum stream_kind kind,
                                  const struct ml_addr *to, uint8_t *req, size_t len,
                                  int64_t timeout_ms, char *why, size_t whylen)
{
	if (encrypting(t)) {
		uint8_t *sealed;
		size_t slen;
		int e = keyring_encrypt_stream(t->keyring, req, len, &sealed, &slen);
		free(req);
		if (e < 0) {
			snprintf(why, whylen, "cannot encrypt stream");
			return NULL;
		}
		req = sealed;
		len = slen;
	}
	struct sockaddr_storage ss;
	socklen_t sl = to_sockaddr(to, &ss);
	int fd = net_tcp_connect(&ss, sl, NULL);
	if (fd < 0) {
		char a[64], e[96];
		snprintf(why, whylen, "dial tcp %s: connect: %s", ml_addr_str(to, a, sizeof(a)),
		         errtext(-fd, e, sizeof(e)));
		free(req);
		return NULL;
	}
	t->stats.streams_out++;
	struct stream *st = stream_new(t, kind, fd, timeout_ms);
	st->peer = *to;
	st->out = req;
	st->out_len = len;
	return st;
}

/*
 * memberlist compresses the push-pull state it sends (EnableCompression, on
 * by default): LZW shrinks a member list carrying Consul's tags several
 * times over, and push-pull is most of gossip's TCP bytes. Returns msg, or a
 * compressed copy (msg freed, *len updated) when that is smaller.
 */
static uint8_t *compress_state(uint8_t *msg, size_t *len)
{
	if (msg == NULL || *len < 256 || *len > (size_t)INT_MAX / 2)
		return msg;
	size_t cap = *len + *len / 2 + 64;
	uint8_t *z = xmalloc(cap);
	int r = ml_compress_encode(z, cap, msg, *len);
	if (r < 0 || (size_t)r >= *len) {
		free(z);
		return msg;
	}
	free(msg);
	*len = (size_t)r;
	return z;
}

/*
 * A push-pull reply, compressed. The core stamps a reply it reuses while
 * crowded (swim.h, reply_stamp): the first one with a stamp is compressed and
 * its compressed bytes kept; later ones with that stamp are those bytes
 * again, not compressed anew. An unstamped reply drops what was kept.
 * Memory: one compressed state.
 */
static uint8_t *compress_reply(struct gossip_transport *t, uint8_t *msg, size_t *len,
                               uint64_t stamp)
{
	if (stamp != 0 && stamp == t->zstamp) {
		free(msg);
		*len = t->zlen;
		uint8_t *z = xmalloc(t->zlen);
		memcpy(z, t->zbuf, t->zlen);
		return z;
	}
	free(t->zbuf);
	t->zbuf = NULL;
	t->zstamp = 0;
	msg = compress_state(msg, len);
	if (stamp != 0) {
		t->zbuf = xmalloc(*len);
		memcpy(t->zbuf, msg, *len);
		t->zlen = *len;
		t->zstamp = stamp;
	}
	return msg;
}

static void io_push_pull(void *ctx, const struct ml_addr *to, const char *name, bool join)
{
	struct gossip_transport *t = ctx;
	size_t len;
	uint8_t *req = swim_local_state_new(t->swim, gossip_now_ms(), join, &len);
	req = compress_state(req, &len);
	char why[160];
	stream_dial(t, ST_PUSH_PULL, to, req, len, t->tcp_timeout_ms, why, sizeof(why));
}

static void io_tcp_ping(void *ctx, const struct ml_addr *to, uint32_t seq, const uint8_t *pkt,
                        size_t len, int64_t deadline)
{
	struct gossip_transport *t = ctx;
	uint8_t *req = xmalloc(len);
	memcpy(req, pkt, len);
	int64_t timeout = deadline - gossip_now_ms();
	char why[160];
	struct stream *st =
	        stream_dial(t, ST_PING, to, req, len, timeout > 0 ? timeout : 1, why, sizeof(why));
	if (st == NULL) {
		swim_tcp_ping_done(t->swim, gossip_now_ms(), seq, false);
		return;
	}
	st->ping_seq = seq;
}

int gossip_transport_join(struct gossip_transport *t, const char *addr, uint16_t default_port,
                          gossip_join_cb cb, void *ud, char *err, size_t errlen)
{
	struct ml_addr to;
	if (resolve(addr, default_port, &to, err, errlen) < 0)
		return -1;
	size_t len;
	uint8_t *req = swim_local_state_new(t->swim, gossip_now_ms(), true, &len);
	req = compress_state(req, &len);
	char why[200];
	struct stream *st =
	        stream_dial(t, ST_JOIN, &to, req, len, t->tcp_timeout_ms, why, sizeof(why));
	if (st == NULL) {
		cb(ud, false, why);
		return 0;
	}
	st->join_cb = cb;
	st->join_ud = ud;
	return 0;
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct gossip_transport *t = w->data;
	for (int i = 0; i < 32; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(t->tcp_fd, (struct sockaddr *)&ss, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		struct ml_addr peer;
		from_sockaddr(&ss, &peer);
		t->stats.streams_in++;
		if (t->streams_in >= GOSSIP_STREAMS_IN_MAX) {
			/* taken off the backlog and closed: counted and told,
			 * where leaving it queued would only hide it */
			close(fd);
			t->stats.stream_errors++;
			t->stats.streams_refused++;
			warn(t, "too many incoming streams open", &peer);
			continue;
		}
		t->streams_in++;
		struct stream *st = stream_new(t, ST_IN, fd, t->tcp_timeout_ms);
		st->connected = true;
		st->peer = peer;
	}
}

/* ------------------------------------------------------------- events */

static void io_event(void *ctx, enum swim_event_type type, const struct swim_member *m)
{
	struct gossip_transport *t = ctx;
	if (t->on_event != NULL)
		t->on_event(t->ud, type, m);
}

static void io_user_msg(void *ctx, const uint8_t *p, size_t len)
{
	struct gossip_transport *t = ctx;
	if (t->on_user_msg != NULL)
		t->on_user_msg(t->ud, p, len);
}

static uint8_t *io_local_state(void *ctx, bool join, size_t *len)
{
	struct gossip_transport *t = ctx;
	return t->local_state != NULL ? t->local_state(t->ud, join, len) : NULL;
}

static void io_merge_state(void *ctx, const uint8_t *p, size_t len, bool join)
{
	struct gossip_transport *t = ctx;
	if (t->merge_state != NULL)
		t->merge_state(t->ud, p, len, join);
}

/* ------------------------------------------------------------ set up */

/*
 * One gossip socket on bind_addr:port through lib/net (non-blocking,
 * close-on-exec, SO_REUSEADDR). The address is read by ml_addr_parse, as
 * the rest of gossip reads addresses, and handed to lib/net in numeric
 * form. What memberlist's Go sockets get and lib/net does not do alone:
 * a 2 MiB receive buffer on UDP (memberlist's udpRecvBufSize), so a burst
 * of gossip is not dropped by the kernel while the loop is busy; the TCP
 * backlog is SOMAXCONN, Go's. Returns the fd, or -1 with err.
 */
static int bind_socket(bool udp, const char *bind_addr, uint16_t port, char *err, size_t errlen)
{
	struct ml_addr a;
	char ip[INET6_ADDRSTRLEN];
	if (ml_addr_parse(bind_addr, port, &a) < 0 ||
	    inet_ntop(a.len == 4 ? AF_INET : AF_INET6, a.ip, ip, sizeof(ip)) == NULL) {
		snprintf(err, errlen, "invalid bind address %s", bind_addr);
		return -1;
	}
	int fd = udp ? net_udp_bind(ip, port, err, errlen)
	             : net_tcp_listen(ip, port, SOMAXCONN, err, errlen);
	if (fd < 0)
		return -1;
	if (udp) {
		int sz = 2 * 1024 * 1024;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	return fd;
}

struct gossip_transport *gossip_transport_new(struct ev_loop *loop,
                                              const struct gossip_transport_config *cfg, char *err,
                                              size_t errlen)
{
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return NULL;
	}
	struct gossip_transport *t = xcalloc(1, sizeof(*t));
	t->sched_fd = open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
	t->run_delay_ns = sched_run_delay(t);
	t->loop = loop;
	t->udp_fd = t->tcp_fd = -1;
	do
		randombytes_buf(t->rng, sizeof(t->rng));
	while (t->rng[0] == 0 && t->rng[1] == 0);
	t->tcp_timeout_ms = cfg->tcp_timeout_ms > 0 ? cfg->tcp_timeout_ms : 10000;
	t->on_event = cfg->on_event;
	t->on_user_msg = cfg->on_user_msg;
	t->local_state = cfg->local_state;
	t->merge_state = cfg->merge_state;
	t->on_warn = cfg->on_warn;
	t->keyring = cfg->keyring;
	t->ud = cfg->ud;
	/* TCP first so that port 0 picks one free for both */
	uint16_t port = cfg->port;
	for (int attempt = 0; attempt < 20; attempt++) {
		t->tcp_fd = bind_socket(false, cfg->bind_addr, port, err, errlen);
		if (t->tcp_fd < 0)
			goto fail;
		int bp = net_bound_port(t->tcp_fd);
		if (bp < 0) {
			snprintf(err, errlen, "gossip tcp socket: getsockname: %s", strerror(-bp));
			goto fail;
		}
		uint16_t p = (uint16_t)bp;
		t->udp_fd = bind_socket(true, cfg->bind_addr, p, err, errlen);
		if (t->udp_fd >= 0) {
			t->port = p;
			break;
		}
		close(t->tcp_fd);
		t->tcp_fd = -1;
		if (cfg->port != 0)
			goto fail;
	}
	if (t->udp_fd < 0)
		goto fail;

	struct swim_config sc = cfg->swim;
	if (sc.merge_slice == 0)
		sc.merge_slice = GOSSIP_MERGE_SLICE;
	t->merge_slice = t->merge_max = sc.merge_slice;
	sc.addr = cfg->advertise;
	if (sc.addr.port == 0)
		sc.addr.port = t->port;
	struct swim_io io = {
	        .ctx = t,
	        .send = io_send,
	        .rand32 = io_rand32,
	        .push_pull = io_push_pull,
	        .tcp_ping = io_tcp_ping,
	        .event = io_event,
	        .user_msg = io_user_msg,
	        .local_state = io_local_state,
	        .merge_state = io_merge_state,
	        .clock_us = io_clock_us,
	};
	t->swim = swim_new(&sc, &io, gossip_now_ms(), err, errlen);
	if (t->swim == NULL)
		goto fail;

	ev_io_init(&t->udp_io, udp_cb, t->udp_fd, EV_READ);
	t->udp_io.data = t;
	ev_io_start(loop, &t->udp_io);
	ev_io_init(&t->tcp_io, tcp_accept_cb, t->tcp_fd, EV_READ);
	t->tcp_io.data = t;
	ev_io_start(loop, &t->tcp_io);
	ev_timer_init(&t->tick, tick_cb, 0.001, 0.);
	t->tick.data = t;
	ev_check_init(&t->merge_check, merge_check_cb);
	t->merge_check.data = t;
	ev_idle_init(&t->merge_idle, merge_idle_cb);
	t->merge_idle.data = t;
	schedule(t);
	return t;
fail:
	if (t->udp_fd >= 0)
		close(t->udp_fd);
	if (t->tcp_fd >= 0)
		close(t->tcp_fd);
	if (t->sched_fd >= 0)
		close(t->sched_fd);
	free(t);
	return NULL;
}

void gossip_transport_free(struct gossip_transport *t)
{
	if (t == NULL)
		return;
	ev_timer_stop(t->loop, &t->tick);
	t->on_warn = NULL; /* closing our own streams is no news */
	while (t->streams != NULL)
		stream_close(t->streams, false, "agent shutting down");
	ev_timer_stop(t->loop, &t->tick);
	ev_check_stop(t->loop, &t->merge_check);
	ev_idle_stop(t->loop, &t->merge_idle);
	ev_io_stop(t->loop, &t->udp_io);
	ev_io_stop(t->loop, &t->tcp_io);
	close(t->udp_fd);
	close(t->tcp_fd);
	if (t->sched_fd >= 0)
		close(t->sched_fd);
	swim_free(t->swim);
	free(t->zbuf);
	free(t);
}

struct swim *gossip_transport_swim(struct gossip_transport *t)
{
	return t->swim;
}

uint16_t gossip_transport_port(const struct gossip_transport *t)
{
	return t->port;
}

const struct gossip_transport_stats *gossip_transport_stats(const struct gossip_transport *t)
{
	return &t->stats;
}
