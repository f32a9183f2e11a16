/*
 * dns/dns_server.h — the DNS responder's libev driver: UDP and TCP sockets.
 *
 * Owns: one UDP socket and one TCP listener on the same address and port,
 * the accepted TCP connections (at most DNS_SERVER_MAX_CONNS, each with an
 * idle timeout), and the receive/answer buffers.  Every query goes to
 * dns_process() (dns/dns.h) together with the loop's clock and a random
 * seed from this driver's generator; UDP datagrams are read and answered in
 * batches (recvmmsg/sendmmsg) so one wake-up serves many queries.
 *
 * Error convention: dns_server_new() returns NULL with a message in err;
 * socket errors at run time are counted and the datagram or connection is
 * dropped.
 */
#ifndef RUMOR_DNS_DNS_SERVER_H
#define RUMOR_DNS_DNS_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct dns_responder;
struct catalog;
struct dns_server;

#define DNS_SERVER_MAX_CONNS 256
#define DNS_SERVER_TCP_IDLE_S 10.0

/* Listens on addr:port (UDP and TCP; port 0 picks one, the same for both
 * where possible).  r and cat are borrowed and must outlive the server. */
struct dns_server *dns_server_new(struct ev_loop *loop, struct dns_responder *r,
				  const struct catalog *cat, const char *addr, uint16_t port,
				  char *err, size_t errlen);
/* The bound port. */
uint16_t dns_server_port(const struct dns_server *s);
/* Closes every socket and frees; NULL is a no-op. */
void dns_server_free(struct dns_server *s);

#endif
