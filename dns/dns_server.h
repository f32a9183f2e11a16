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
 * Names outside the domain can be forwarded to recursors (see
 * dns_server_set_recursors), asynchronously and bounded.
 *
 * Every query is answered from a struct dns_source (dns/dns.h) the caller
 * fills in; the driver knows nothing of where names come from.  Sockets
 * are opened with lib/net.h's helpers (non-blocking, close-on-exec, IPv6
 * sockets V6ONLY).
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
struct dns_source;
struct dns_server;

#define DNS_SERVER_MAX_CONNS 256
#define DNS_SERVER_TCP_IDLE_S 10.0
#define DNS_SERVER_MAX_RECURSORS 8
#define DNS_SERVER_RECURSOR_TIMEOUT_S 2.0 /* Consul's recursor_timeout */

/* Listens on addr:port (UDP and TCP; port 0 picks one, the same for both
 * where possible).  r and src are borrowed and must outlive the server.
 * Returns a server the caller frees with dns_server_free(), or NULL with a
 * message in err; aborts on OOM. */
struct dns_server *dns_server_new(struct ev_loop *loop, struct dns_responder *r,
                                  const struct dns_source *src, const char *addr, uint16_t port,
                                  char *err, size_t errlen);
/* Forwards queries the responder does not own (it must have been created
 * with cfg.recursor) to these servers ("ip" or "ip:port", port 53 by
 * default; all IPv4 or all IPv6), round-robin, over UDP, for UDP clients:
 * at most 1024 in flight (more get SERVFAIL at once), each answered with
 * SERVFAIL after DNS_SERVER_RECURSOR_TIMEOUT_S; answers are checked
 * against the upstream ID and address before being relayed.  TCP clients
 * get SERVFAIL.  0 or -1 with err. */
int dns_server_set_recursors(struct dns_server *s, const char *const *addrs, size_t n, char *err,
                             size_t errlen);
/* The bound port. */
uint16_t dns_server_port(const struct dns_server *s);
/* Closes every socket and frees; NULL is a no-op. */
void dns_server_free(struct dns_server *s);

#endif
