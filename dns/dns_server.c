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
 * closed.
 */
#define _GNU_SOURCE
#include "dns/dns_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/dns.h"

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

struct dns_server {
	struct ev_loop *loop;
	struct dns_responder *r;
	const struct catalog *cat;
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
};

static uint64_t next_seed(struct dns_server *s)
{
	uint64_t x = s->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	s->rng = x;
	return x;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ------------------------------------------------------------------ UDP */

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
				dns_process(s->r, s->cat, s->in[i], s->msg_in[i].msg_len, false, now,
					    next_seed(s), s->out[nout], UDP_OUT_MAX, &len);
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
			int k = sendmmsg(s->ufd, s->msg_out + sent, (unsigned)(nout - sent), MSG_DONTWAIT);
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

/* Answers every complete query in the buffer; -1 to close. */
static int conn_process(struct dns_conn *c)
{
	struct dns_server *s = c->srv;
	size_t off = 0;
	while (c->inlen - off >= 2 && c->pendlen == 0) {
		size_t ql = (size_t)(c->in[off] << 8 | c->in[off + 1]);
		if (c->inlen - off - 2 < ql)
			break;
		size_t len = 0;
		enum dns_action act = dns_process(s->r, s->cat, c->in + off + 2, ql, true,
						  (uint32_t)ev_now(s->loop), next_seed(s),
						  s->tcp_out + 2, TCP_BUF - 2, &len);
		off += 2 + ql;
		if (act != DNS_ACT_REPLY)
			return -1; /* nothing to say to garbage on a stream: close it */
		s->tcp_out[0] = (uint8_t)(len >> 8);
		s->tcp_out[1] = (uint8_t)len;
		if (conn_write(c, s->tcp_out, len + 2) < 0)
			return -1;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return 0;
}

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

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_conn *c = w->data;
	while (c->pendoff < c->pendlen) {
		ssize_t k = send(c->fd, c->pend + c->pendoff, c->pendlen - c->pendoff, MSG_NOSIGNAL);
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

static int mkaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -1;
}

struct dns_server *dns_server_new(struct ev_loop *loop, struct dns_responder *r,
				  const struct catalog *cat, const char *addr, uint16_t port,
				  char *err, size_t errlen)
{
	struct dns_server *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->loop = loop;
	s->r = r;
	s->cat = cat;
	s->ufd = s->tfd = -1;
	randombytes_buf(&s->rng, sizeof(s->rng));
	s->rng |= 1;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (mkaddr(addr, port, &ss, &sl) < 0) {
		snprintf(err, errlen, "invalid DNS address %s", addr);
		goto fail;
	}
	s->ufd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->ufd < 0 || bind(s->ufd, (struct sockaddr *)&ss, sl) < 0) {
		snprintf(err, errlen, "DNS UDP listen on %s:%u: %s", addr, port, strerror(errno));
		goto fail;
	}
	int big = 4 << 20;
	setsockopt(s->ufd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(s->ufd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	struct sockaddr_storage bound;
	socklen_t bl = sizeof(bound);
	getsockname(s->ufd, (struct sockaddr *)&bound, &bl);
	s->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
						    : ((struct sockaddr_in6 *)&bound)->sin6_port);
	mkaddr(addr, s->port, &ss, &sl);
	s->tfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (s->tfd >= 0)
		setsockopt(s->tfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->tfd < 0 || bind(s->tfd, (struct sockaddr *)&ss, sl) < 0 || listen(s->tfd, 128) < 0) {
		snprintf(err, errlen, "DNS TCP listen on %s:%u: %s", addr, s->port, strerror(errno));
		goto fail;
	}
	if (set_nonblock(s->ufd) < 0 || set_nonblock(s->tfd) < 0) {
		snprintf(err, errlen, "DNS sockets: %s", strerror(errno));
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
	if (s->tfd >= 0)
		close(s->tfd);
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
	close(s->ufd);
	close(s->tfd);
	free(s);
}
