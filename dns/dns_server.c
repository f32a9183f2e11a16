/*
 * dns/dns_server.c — see dns_server.h.
 *
 * UDP: on readable, up to BATCH datagrams are taken with one recvmmsg(),
 * each answered into its own slot of a fixed answer area, and all answers
 * leave with one sendmmsg(); repeated while the socket has data (bounded per
 * wake-up so TCP and timers are not starved).  No allocation per query.
 *
 * TCP: each connection reads 2-byte-length-framed queries into a 64 KiB+2
 * buffer (allocated once per connection), answers every complete one into
 * the server's shared answer buffer and writes it; what the kernel does not
 * take at once is kept in a per-connection pending buffer and the read side
 * pauses until it drains.  A connection idle for DNS_SERVER_TCP_IDLE_S is
 * closed.  A connection's buffers are plain malloc: when they cannot be had
 * the connection is refused, and the server goes on.
 *
 * Forwarding: a query outside the domain goes to a recursor under a fresh
 * ID whose low 10 bits are its slot in a fixed table, so an answer finds its
 * client in O(1) and one that matches no slot (late, spoofed) is dropped.
 */
#define _GNU_SOURCE
#include "dns/dns_server.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/dns.h"
#include "lib/cursor.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#define BATCH 32
#define UDP_IN_MAX 4096
#define UDP_OUT_MAX 4096
#define ROUNDS_PER_WAKEUP 16
#define TCP_BUF (DNS_MSG_MAX + 2)

struct dns_conn {
	struct dns_server *srv;
	int fd;
	ev_io rio, wio;
	ev_timer idle;
	uint8_t *in;
	size_t inlen;
	uint8_t *pend;
	size_t pendlen, pendoff;
	struct dns_conn *next, *prev;
};

/* One query out at a recursor: the upstream ID's low bits are the slot. */
#define FWD_MAX 1024
#define FWD_MASK 0x3FF
struct fwd {
	bool used;
	uint16_t up_id, client_id;
	struct sockaddr_storage client;
	socklen_t clen;
	size_t rec;
	ev_tstamp deadline;
};

struct dns_server {
	struct ev_loop *loop;
	struct dns_responder *r;
	const struct dns_source *src;
	int ufd, tfd;
	uint16_t port;
	ev_io uio, tio;
	uint64_t rng;
	struct dns_conn *conns;
	size_t nconns;
	/* UDP batch */
	uint8_t in[BATCH][UDP_IN_MAX];
	uint8_t out[BATCH][UDP_OUT_MAX];
	struct sockaddr_storage from[BATCH];
	struct iovec iov_in[BATCH], iov_out[BATCH];
	struct mmsghdr msg_in[BATCH], msg_out[BATCH];
	uint8_t tcp_out[TCP_BUF];
	/* forwarding to recursors (UDP clients only) */
	int ffd;
	ev_io fio;
	ev_timer fsweep;
	struct sockaddr_storage rec[DNS_SERVER_MAX_RECURSORS];
	socklen_t reclen[DNS_SERVER_MAX_RECURSORS];
	size_t nrec;
	size_t next_rec;
	struct fwd fwd[FWD_MAX];
	size_t nfwd;
};

/* xorshift64, seeded from libsodium once: the responder's shuffle and the
 * upstream IDs need to be unpredictable to others, not cryptographic per
 * query (a syscall per query would cost more than the answer). */
static uint64_t next_seed(struct dns_server *s)
{
	uint64_t x = s->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	s->rng = x;
	return x;
}

/* ----------------------------------------------------------- forwarding */

/* A header-only SERVFAIL for a query we could not forward or that timed out. */
static void send_servfail(struct dns_server *s, uint16_t id, const struct sockaddr_storage *to,
                          socklen_t tolen)
{
	uint8_t h[12] = {0, 0, 0x81, 0x82, 0, 0, 0, 0, 0, 0, 0, 0};
	be16_put(h, id);
	sendto(s->ufd, h, sizeof(h), MSG_DONTWAIT, (const struct sockaddr *)to, tolen);
}

/* Sends q to the next recursor with a fresh ID; SERVFAIL at once if the
 * table is full or the query cannot be sent. */
static void forward(struct dns_server *s, const uint8_t *q, size_t len,
                    const struct sockaddr_storage *from, socklen_t fromlen)
{
	uint16_t cid = be16_get(q);
	if (s->nfwd >= FWD_MAX || len > UDP_IN_MAX) {
		send_servfail(s, cid, from, fromlen);
		return;
	}
	size_t slot = (size_t)(next_seed(s) & FWD_MASK);
	while (s->fwd[slot].used)
		slot = (slot + 1) & FWD_MASK;
	struct fwd *f = &s->fwd[slot];
	f->up_id = (uint16_t)((next_seed(s) & ~(uint64_t)FWD_MASK) | slot);
	f->client_id = cid;
	f->client = *from;
	f->clen = fromlen;
	f->rec = s->next_rec++ % s->nrec;
	f->deadline = ev_now(s->loop) + DNS_SERVER_RECURSOR_TIMEOUT_S;
	uint8_t buf[UDP_IN_MAX];
	memcpy(buf, q, len);
	be16_put(buf, f->up_id);
	if (sendto(s->ffd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&s->rec[f->rec],
	           s->reclen[f->rec]) < 0) {
		send_servfail(s, cid, from, fromlen);
		return;
	}
	f->used = true;
	s->nfwd++;
}

/*
 * Compares address and port only (not flow info or scope): those are what a
 * spoofer would have to match, and the recursor's answer carries nothing else.
 */
static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* An upstream answer: relay it to the client under the client's ID, but
 * only when ID and source address match what was sent (an off-path
 * attacker must guess both, and cannot answer for a slot that is free). */
static void fwd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_server *s = w->data;
	for (int i = 0; i < 64; i++) {
		uint8_t buf[UDP_IN_MAX];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s->ffd, buf, sizeof(buf), MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (n < 12 || !(buf[2] & 0x80))
			continue;
		uint16_t id = be16_get(buf);
		struct fwd *f = &s->fwd[id & FWD_MASK];
		if (!f->used || f->up_id != id || !same_addr(&from, &s->rec[f->rec]))
			continue; /* late, unknown or spoofed */
		be16_put(buf, f->client_id);
		sendto(s->ufd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&f->client,
		       f->clen);
		f->used = false;
		s->nfwd--;
	}
}

/* Every 250 ms: queries whose recursor did not answer in time get
 * SERVFAIL, so a client never waits on a dead upstream longer than it
 * would on us. */
static void fsweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_server *s = w->data;
	ev_tstamp now = ev_now(loop);
	for (size_t i = 0; i < FWD_MAX && s->nfwd > 0; i++) {
		struct fwd *f = &s->fwd[i];
		if (f->used && f->deadline <= now) {
			send_servfail(s, f->client_id, &f->client, f->clen);
			f->used = false;
			s->nfwd--;
		}
	}
}

/* "ip", "ip:port", "[v6]" or "[v6]:port"; a bare IPv6 address (more than one
 * colon) has no port. */
static int parse_recursor(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	unsigned long port = 53;
	snprintf(host, sizeof(host), "%s", spec);
	char *colon = strrchr(host, ':');
	if (host[0] == '[') {
		char *rb = strchr(host, ']');
		if (rb == NULL)
			return -1;
		*rb = '\0';
		if (rb[1] == ':')
			port = strtoul(rb + 2, NULL, 10);
		memmove(host, host + 1, strlen(host));
	} else if (colon != NULL && strchr(host, ':') == colon) {
		*colon = '\0';
		port = strtoul(colon + 1, NULL, 10);
	}
	if (port == 0 || port > 65535)
		return -1;
	return net_addr_parse(host, (uint16_t)port, ss, len);
}

/*
 * One forwarding socket serves every recursor, so they must share a family;
 * mixing v4 and v6 is refused at start rather than failing per query. Extra
 * recursors beyond the table's size are ignored, not an error.
 */
int dns_server_set_recursors(struct dns_server *s, const char *const *addrs, size_t n, char *err,
                             size_t errlen)
{
	if (n > DNS_SERVER_MAX_RECURSORS)
		n = DNS_SERVER_MAX_RECURSORS;
	for (size_t i = 0; i < n; i++) {
		if (parse_recursor(addrs[i], &s->rec[i], &s->reclen[i]) < 0) {
			snprintf(err, errlen,
			         "invalid recursor address \"%s\" (want ip or ip:port)", addrs[i]);
			return -1;
		}
	}
	if (n == 0)
		return 0;
	int fam = s->rec[0].ss_family;
	for (size_t i = 1; i < n; i++)
		if (s->rec[i].ss_family != fam) {
			snprintf(err, errlen, "recursors must all be IPv4 or all IPv6");
			return -1;
		}
	s->ffd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->ffd < 0) {
		snprintf(err, errlen, "recursor socket: %s", strerror(errno));
		return -1;
	}
	s->nrec = n;
	ev_io_init(&s->fio, fwd_cb, s->ffd, EV_READ);
	s->fio.data = s;
	ev_io_start(s->loop, &s->fio);
	ev_timer_init(&s->fsweep, fsweep_cb, 0.25, 0.25);
	s->fsweep.data = s;
	ev_timer_start(s->loop, &s->fsweep);
	return 0;
}

/* ------------------------------------------------------------------ UDP */

/*
 * One wake-up answers up to ROUNDS_PER_WAKEUP batches of BATCH datagrams:
 * recvmmsg, dns_process each into its own slot, one sendmmsg.  Bounded, so
 * a flood cannot starve TCP clients and timers; what is left stays in the
 * socket buffer for the next wake-up.  Answers the kernel refuses (a full
 * send buffer) are lost, as UDP answers may be.
 */
static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_server *s = w->data;
	uint32_t now = (uint32_t)ev_now(loop);
	for (int round = 0; round < ROUNDS_PER_WAKEUP; round++) {
		for (int i = 0; i < BATCH; i++) {
			s->iov_in[i].iov_base = s->in[i];
			s->iov_in[i].iov_len = UDP_IN_MAX;
			memset(&s->msg_in[i].msg_hdr, 0, sizeof(s->msg_in[i].msg_hdr));
			s->msg_in[i].msg_hdr.msg_name = &s->from[i];
			s->msg_in[i].msg_hdr.msg_namelen = sizeof(s->from[i]);
			s->msg_in[i].msg_hdr.msg_iov = &s->iov_in[i];
			s->msg_in[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(s->ufd, s->msg_in, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		int nout = 0;
		for (int i = 0; i < n; i++) {
			size_t len = 0;
			if (s->msg_in[i].msg_hdr.msg_flags & MSG_TRUNC)
				continue; /* larger than any sane query */
			enum dns_action act =
			        dns_process(s->r, s->src, s->in[i], s->msg_in[i].msg_len, false,
			                    now, next_seed(s), s->out[nout], UDP_OUT_MAX, &len);
			if (act == DNS_ACT_FORWARD && s->nrec > 0) {
				forward(s, s->in[i], s->msg_in[i].msg_len, &s->from[i],
				        s->msg_in[i].msg_hdr.msg_namelen);
				continue;
			}
			if (act != DNS_ACT_REPLY || len == 0)
				continue;
			s->iov_out[nout].iov_base = s->out[nout];
			s->iov_out[nout].iov_len = len;
			memset(&s->msg_out[nout].msg_hdr, 0, sizeof(s->msg_out[nout].msg_hdr));
			s->msg_out[nout].msg_hdr.msg_name = &s->from[i];
			s->msg_out[nout].msg_hdr.msg_namelen = s->msg_in[i].msg_hdr.msg_namelen;
			s->msg_out[nout].msg_hdr.msg_iov = &s->iov_out[nout];
			s->msg_out[nout].msg_hdr.msg_iovlen = 1;
			nout++;
		}
		int sent = 0;
		while (sent < nout) {
			int k = sendmmsg(s->ufd, s->msg_out + sent, (unsigned)(nout - sent),
			                 MSG_DONTWAIT);
			if (k <= 0)
				break; /* full socket buffer: UDP answers may be lost */
			sent += k;
		}
		if (n < BATCH)
			return;
	}
}

/* ------------------------------------------------------------------ TCP */

static void conn_close(struct dns_conn *c)
{
	struct dns_server *s = c->srv;
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	ev_timer_stop(s->loop, &c->idle);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c->in);
	free(c->pend);
	free(c);
}

/* Writes buf, keeping what the kernel refuses; -1 if the connection died. */
static int conn_write(struct dns_conn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;
	if (c->pendlen == 0) {
		while (off < len) {
			ssize_t k = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
			if (k < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				return -1;
			}
			off += (size_t)k;
		}
	}
	if (off == len)
		return 0;
	uint8_t *p = realloc(c->pend, c->pendlen + len - off);
	if (p == NULL)
		return -1;
	c->pend = p;
	memcpy(c->pend + c->pendlen, buf + off, len - off);
	c->pendlen += len - off;
	ev_io_stop(c->srv->loop, &c->rio);
	ev_io_start(c->srv->loop, &c->wio);
	return 0;
}

/* Answers every complete query in the buffer (pipelining), in order; stops
 * while an answer is still pending so one slow reader cannot make us
 * buffer unbounded answers.  -1 to close. */
static int conn_process(struct dns_conn *c)
{
	struct dns_server *s = c->srv;
	size_t off = 0;
	while (c->inlen - off >= 2 && c->pendlen == 0) {
		size_t ql = be16_get(c->in + off);
		if (c->inlen - off - 2 < ql)
			break;
		size_t len = 0;
		enum dns_action act = dns_process(s->r, s->src, c->in + off + 2, ql, true,
		                                  (uint32_t)ev_now(s->loop), next_seed(s),
		                                  s->tcp_out + 2, TCP_BUF - 2, &len);
		off += 2 + ql;
		if (act == DNS_ACT_FORWARD && ql >= 12) {
			/* forwarding is for UDP clients; TCP ones get SERVFAIL */
			uint8_t *h = s->tcp_out + 2;
			memset(h, 0, 12);
			h[0] = c->in[off - ql];
			h[1] = c->in[off - ql + 1];
			h[2] = 0x81;
			h[3] = 0x82;
			len = 12;
			act = DNS_ACT_REPLY;
		}
		if (act != DNS_ACT_REPLY)
			return -1; /* nothing to say to garbage on a stream: close it */
		be16_put(s->tcp_out, (uint16_t)len);
		if (conn_write(c, s->tcp_out, len + 2) < 0)
			return -1;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return 0;
}

/*
 * Any activity restarts the idle timer. EOF or a hard error closes at once,
 * answers still pending included: unlike the HTTP server, this one does not
 * serve a client that half-closes and then waits for its answers.
 */
static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_conn *c = w->data;
	ssize_t k = recv(c->fd, c->in + c->inlen, TCP_BUF - c->inlen, 0);
	if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
		conn_close(c);
		return;
	}
	if (k < 0)
		return;
	c->inlen += (size_t)k;
	ev_timer_again(loop, &c->idle);
	if (conn_process(c) < 0)
		conn_close(c);
}

/*
 * Reading resumes only once everything pending is written: a client that
 * pipelines queries but never reads answers stalls itself, not our memory.
 */
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_conn *c = w->data;
	while (c->pendoff < c->pendlen) {
		ssize_t k =
		        send(c->fd, c->pend + c->pendoff, c->pendlen - c->pendoff, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_close(c);
			return;
		}
		c->pendoff += (size_t)k;
	}
	c->pendlen = c->pendoff = 0;
	ev_timer_again(loop, &c->idle);
	ev_io_stop(loop, &c->wio);
	ev_io_start(loop, &c->rio);
	if (conn_process(c) < 0)
		conn_close(c);
}

static void conn_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	conn_close(w->data);
}

/* Accepts up to 64 connections per wake-up; beyond DNS_SERVER_MAX_CONNS
 * they are closed at once, so the TCP side holds at most that many 64 KiB
 * buffers however many clients connect. */
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_server *s = w->data;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(s->tfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (s->nconns >= DNS_SERVER_MAX_CONNS) {
			close(fd);
			continue;
		}
		struct dns_conn *c = calloc(1, sizeof(*c));
		uint8_t *in = malloc(TCP_BUF);
		if (c == NULL || in == NULL) {
			free(c);
			free(in);
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->in = in;
		ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
		ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
		c->rio.data = c->wio.data = c;
		ev_timer_init(&c->idle, conn_idle_cb, 0., DNS_SERVER_TCP_IDLE_S);
		c->idle.data = c;
		ev_timer_again(loop, &c->idle);
		ev_io_start(loop, &c->rio);
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->nconns++;
	}
}

/* ------------------------------------------------------------ lifecycle */

/*
 * UDP is bound first and TCP on the port UDP got, so that with port 0
 * (tests) both share one port, as a resolver retrying a truncated answer
 * over TCP expects.  lib/net.h sets SO_REUSEADDR on both; two UDP sockets
 * may then share a port, two listeners may not, so a second agent on the
 * same DNS port still fails here, on the TCP side.
 */
struct dns_server *dns_server_new(struct ev_loop *loop, struct dns_responder *r,
                                  const struct dns_source *src, const char *addr, uint16_t port,
                                  char *err, size_t errlen)
{
	struct dns_server *s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->r = r;
	s->src = src;
	s->ufd = s->tfd = s->ffd = -1;
	randombytes_buf(&s->rng, sizeof(s->rng));
	s->rng |= 1;
	char e[256];
	s->ufd = net_udp_bind(addr, port, e, sizeof(e));
	if (s->ufd < 0) {
		snprintf(err, errlen, "DNS %s", e);
		goto fail;
	}
	int big = 4 << 20;
	setsockopt(s->ufd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(s->ufd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	int bound = net_bound_port(s->ufd);
	s->port = bound > 0 ? (uint16_t)bound : port;
	s->tfd = net_tcp_listen(addr, s->port, 128, e, sizeof(e));
	if (s->tfd < 0) {
		snprintf(err, errlen, "DNS %s", e);
		goto fail;
	}
	ev_io_init(&s->uio, udp_cb, s->ufd, EV_READ);
	ev_io_init(&s->tio, accept_cb, s->tfd, EV_READ);
	s->uio.data = s->tio.data = s;
	ev_io_start(loop, &s->uio);
	ev_io_start(loop, &s->tio);
	return s;
fail:
	if (s->ufd >= 0)
		close(s->ufd);
	free(s);
	return NULL;
}

uint16_t dns_server_port(const struct dns_server *s)
{
	return s->port;
}

void dns_server_free(struct dns_server *s)
{
	if (s == NULL)
		return;
	while (s->conns)
		conn_close(s->conns);
	ev_io_stop(s->loop, &s->uio);
	ev_io_stop(s->loop, &s->tio);
	if (s->ffd >= 0) {
		ev_io_stop(s->loop, &s->fio);
		ev_timer_stop(s->loop, &s->fsweep);
		close(s->ffd);
	}
	close(s->ufd);
	close(s->tfd);
	free(s);
}
